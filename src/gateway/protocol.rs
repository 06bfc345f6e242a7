//! The WebSocket protocol's frames (README "A WebSocket session", and
//! `schemas/client`, `schemas/server`): decoding client frames, and
//! encoding server control frames in the envelope `{type, timestamp, data}`.
//!
//! Decoding never panics, and every failure is a [`FrameError`] with the
//! code the client gets. It reads straight into the typed frame, skipping
//! unknown fields without building them, so a frame costs no more memory
//! than its own size (a `[0,0,…]` does not become a tree of values).
//!
//! The client frames and the server frames stay in this one file: they are
//! the two halves of one protocol, read side by side with `schemas/client`
//! and `schemas/server`. Their unit tests are in `protocol/tests.rs`.

use chrono::{DateTime, Utc};
use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::access::EndReason;
use crate::channel::{Channel, Id};
use crate::event::{format_timestamp, parse_timestamp};
use crate::position::Epoch;

/// Where a subscription's replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event with `seq > n`.
    Seq(u64),
    /// Every event whose timestamp is at or after this time.
    Time(DateTime<Utc>),
}

/// The client frames' `type`s (`schemas/client`), in the README's order.
/// Every one decodes; any other `type` is refused with this list
/// (`asyncapi.yaml` names the same, `tests/asyncapi.rs` checks it).
pub const CLIENT_FRAME_TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "typing",
    "ack",
    "ping",
    "refresh",
    "presence",
];

/// A decoded client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Subscribe {
        channel: Channel,
        since: Option<Since>,
        /// The stream epoch the client's `since_seq` belongs to, if it said.
        epoch: Option<Epoch>,
        /// Whether the subscription gets the channel's presence.
        presence: bool,
        request_id: Option<String>,
    },
    Unsubscribe {
        channel: Channel,
        request_id: Option<String>,
    },
    Typing {
        channel: Id,
        is_typing: bool,
        request_id: Option<String>,
    },
    Ack {
        channel: Channel,
        seq: u64,
        request_id: Option<String>,
    },
    Ping {
        request_id: Option<String>,
    },
    /// Who is online in a chat channel the connection holds.
    Presence {
        channel: Id,
        request_id: Option<String>,
    },
    /// A new token for the connection (same user).
    Refresh {
        token: String,
        request_id: Option<String>,
    },
}

/// The error codes the gateway sends (the protocol also names `too_large`
/// and `internal`, which it has no use for yet: an oversized frame closes
/// with 1009).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Forbidden,
    NotFound,
    /// More `refresh` frames than `REFRESHES_PER_MINUTE` (typing over its
    /// limit is dropped without an answer).
    RateLimited,
    Unavailable,
}

impl ErrorCode {
    /// Every code the gateway sends (a new variant goes here too:
    /// `tests/asyncapi.rs` checks `asyncapi.yaml` against this list).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Whether this answer counts toward the bad-frame limit: refusals of
    /// well-formed requests (`forbidden`, `not_found`) do not.
    pub fn counts_as_abuse(self) -> bool {
        !matches!(self, ErrorCode::Forbidden | ErrorCode::NotFound)
    }
}

/// Why the server closes a connection, each with its close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// 1001: the node is shutting down (clients reconnect after `reconnect_ms`).
    ShuttingDown,
    /// 1002: the client broke the WebSocket framing (reserved bits or
    /// opcodes, a continuation without a start, a bad close code, …).
    ProtocolError,
    /// 1007: a text frame that is not UTF-8.
    InvalidUtf8,
    /// 1009: a frame over the size limit.
    TooLarge,
    /// 1011: the event log failed mid-replay; the client resumes later.
    LogUnavailable,
    /// 1011: the session store failed.
    SessionStoreUnavailable,
    /// 4001: the token expired.
    TokenExpired,
    /// 4003: the operator disconnected the user (the close frame carries
    /// the operator's reason, when given).
    Disconnected,
    /// 4008: the client read nothing for the stall timeout.
    Stalled,
    /// 4029: too many bad frames.
    Abuse,
}

impl Close {
    /// Every reason the server closes for, two sharing 1011 (a new variant
    /// goes here too: `tests/asyncapi.rs` checks `asyncapi.yaml` against it).
    pub const ALL: &'static [Close] = &[
        Close::ShuttingDown,
        Close::ProtocolError,
        Close::InvalidUtf8,
        Close::TooLarge,
        Close::LogUnavailable,
        Close::SessionStoreUnavailable,
        Close::TokenExpired,
        Close::Disconnected,
        Close::Stalled,
        Close::Abuse,
    ];

    pub fn code(self) -> u16 {
        match self {
            Close::ShuttingDown => 1001,
            Close::ProtocolError => 1002,
            Close::InvalidUtf8 => 1007,
            Close::TooLarge => 1009,
            Close::LogUnavailable | Close::SessionStoreUnavailable => 1011,
            Close::TokenExpired => 4001,
            Close::Disconnected => 4003,
            Close::Stalled => 4008,
            Close::Abuse => 4029,
        }
    }

    /// The close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            Close::ShuttingDown => "server shutting down",
            Close::ProtocolError => "WebSocket protocol error",
            Close::InvalidUtf8 => "invalid UTF-8",
            Close::TooLarge => "frame too large",
            Close::LogUnavailable => "event log unavailable; resume later",
            Close::SessionStoreUnavailable => "session store unavailable",
            Close::TokenExpired => "token expired",
            Close::Disconnected => "disconnected by the operator",
            Close::Stalled => "stalled: the client read nothing for the stall timeout",
            Close::Abuse => "too many bad frames",
        }
    }

    /// An `error` frame that explains the close, sent just before it: a
    /// server fault (1011) is `unavailable`, with the same words.
    pub fn explanation(self) -> Option<FrameError> {
        (self.code() == 1011).then(|| FrameError::new(ErrorCode::Unavailable, self.reason(), None))
    }
}

/// A refused client frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: Option<String>,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: Option<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            request_id,
        }
    }
}

/// A `request_id` is echoed; a bounded one keeps replies small.
pub const MAX_REQUEST_ID_LEN: usize = 256;

/// A `subscribe`'s `epoch` is only compared with the stream's (about 30
/// bytes); a longer one is refused as a bad request.
pub const MAX_EPOCH_LEN: usize = 64;

/// A client frame's fields as they appear in the text, not yet checked:
/// each known field is kept as a slice of the frame (so decoding allocates
/// nothing but what an escaped string needs), unknown fields are skipped
/// without being built, and a key given twice is refused.
#[derive(serde::Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", default, deserialize_with = "present", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    request_id: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    channel: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    since: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    since_seq: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    seq: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    is_typing: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    token: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present", borrow)]
    presence: Option<&'a RawValue>,
}

/// A field that is present, even as `null` (which a plain `Option` would
/// take for absent).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// One field's value, typed, or `None` when it has another type.
fn typed<'a, T: serde::Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// Decodes one text frame. Unknown fields are ignored; a repeated key is
/// refused. The memory decoding takes is bounded by the frame's size.
pub fn decode(text: &str) -> Result<ClientFrame, FrameError> {
    let refuse = |message: String| FrameError::new(ErrorCode::BadRequest, message, None);
    if !text.trim_start().starts_with('{') {
        // Also keeps serde from reading an array positionally as the struct.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => refuse("a frame must be a JSON object".into()),
            Err(e) => refuse(format!("malformed JSON: {e}")),
        });
    }
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            refuse(format!("{e}")) // a repeated key
        } else {
            refuse(format!("malformed JSON: {e}"))
        }
    })?;
    let request_id = match raw.request_id {
        None => None,
        Some(v) if v.get() == "null" => None,
        Some(v) => match typed::<Cow<'_, str>>(v) {
            Some(s) if s.len() <= MAX_REQUEST_ID_LEN => Some(s.into_owned()),
            Some(_) => {
                return Err(refuse(format!(
                    "`request_id` is longer than {MAX_REQUEST_ID_LEN} bytes"
                )))
            }
            None => return Err(refuse("`request_id` must be a string".into())),
        },
    };
    let bad = |message: String| FrameError::new(ErrorCode::BadRequest, message, request_id.clone());
    let kind: Cow<'_, str> = match raw.kind {
        Some(v) => typed(v).ok_or_else(|| bad("`type` must be a string".into()))?,
        None => return Err(bad("missing `type`".into())),
    };
    let channel = || channel_field(raw.channel).map_err(bad);
    let whole_number = |v: &RawValue, name: &str| {
        typed::<u64>(v).ok_or_else(|| bad(format!("`{name}` must be a non-negative integer")))
    };
    match kind.as_ref() {
        "subscribe" => {
            let channel = channel()?;
            let since = match (raw.since, raw.since_seq) {
                (Some(_), Some(_)) => {
                    return Err(bad("give `since` or `since_seq`, not both".into()))
                }
                (Some(v), None) => {
                    let text: Cow<'_, str> =
                        typed(v).ok_or_else(|| bad("`since` must be an RFC 3339 string".into()))?;
                    Some(Since::Time(parse_timestamp(&text).map_err(|e| {
                        bad(format!("`since` is not an RFC 3339 time: {e}"))
                    })?))
                }
                (None, Some(v)) => Some(Since::Seq(whole_number(v, "since_seq")?)),
                (None, None) => None,
            };
            let epoch = match raw.epoch {
                None => None,
                Some(v) if v.get() == "null" => None,
                Some(v) => match typed::<Cow<'_, str>>(v) {
                    Some(s) if s.len() <= MAX_EPOCH_LEN => Some(Epoch::parse(&s)),
                    Some(_) => {
                        return Err(bad(format!("`epoch` is longer than {MAX_EPOCH_LEN} bytes")))
                    }
                    None => return Err(bad("`epoch` must be a string".into())),
                },
            };
            let presence = match raw.presence {
                None => false,
                Some(v) if v.get() == "null" => false,
                Some(v) => typed(v).ok_or_else(|| bad("`presence` must be a boolean".into()))?,
            };
            if presence && !matches!(channel, Channel::Chat(_)) {
                return Err(bad("presence is only for `channel:` channels".into()));
            }
            Ok(ClientFrame::Subscribe {
                channel,
                since,
                epoch,
                presence,
                request_id,
            })
        }
        "unsubscribe" => Ok(ClientFrame::Unsubscribe {
            channel: channel()?,
            request_id,
        }),
        "typing" => {
            let Channel::Chat(id) = channel()? else {
                return Err(bad("typing is only for `channel:` channels".into()));
            };
            let is_typing = match raw.is_typing {
                Some(v) => typed(v).ok_or_else(|| bad("`is_typing` must be a boolean".into()))?,
                None => return Err(bad("missing `is_typing`".into())),
            };
            Ok(ClientFrame::Typing {
                channel: id,
                is_typing,
                request_id,
            })
        }
        "ack" => {
            let channel = channel()?;
            let seq = match raw.seq {
                Some(v) => whole_number(v, "seq")?,
                None => return Err(bad("missing `seq`".into())),
            };
            Ok(ClientFrame::Ack {
                channel,
                seq,
                request_id,
            })
        }
        "ping" => Ok(ClientFrame::Ping { request_id }),
        "presence" => {
            let Channel::Chat(id) = channel()? else {
                return Err(bad("presence is only for `channel:` channels".into()));
            };
            Ok(ClientFrame::Presence {
                channel: id,
                request_id,
            })
        }
        "refresh" => {
            let token: Cow<'_, str> = match raw.token {
                Some(v) => typed(v).ok_or_else(|| bad("`token` must be a string".into()))?,
                None => return Err(bad("missing `token`".into())),
            };
            if token.is_empty() {
                return Err(bad("`token` is empty".into()));
            }
            Ok(ClientFrame::Refresh {
                token: token.into_owned(),
                request_id,
            })
        }
        other => Err(bad(format!(
            "unknown frame type `{}` (expected one of: {})",
            other.chars().take(64).collect::<String>(),
            CLIENT_FRAME_TYPES.join(", ")
        ))),
    }
}

fn channel_field(raw: Option<&RawValue>) -> Result<Channel, String> {
    let Some(raw) = raw else {
        return Err("missing `channel`".into());
    };
    match typed::<Cow<'_, str>>(raw) {
        Some(s) => Channel::parse(&s).map_err(|e| e.to_string()),
        None => Err("`channel` must be a string".into()),
    }
}

/// The server control frames' `type`s (`schemas/server`), each encoded by
/// the function of the same name below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Hello,
    Subscribed,
    Replayed,
    Unsubscribed,
    Pong,
    Error,
    Refreshed,
    Presence,
}

impl ControlType {
    /// Every control frame type, in the README's order.
    pub const ALL: &'static [ControlType] = &[
        ControlType::Hello,
        ControlType::Subscribed,
        ControlType::Replayed,
        ControlType::Unsubscribed,
        ControlType::Pong,
        ControlType::Error,
        ControlType::Refreshed,
        ControlType::Presence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlType::Hello => "hello",
            ControlType::Subscribed => "subscribed",
            ControlType::Replayed => "replayed",
            ControlType::Unsubscribed => "unsubscribed",
            ControlType::Pong => "pong",
            ControlType::Error => "error",
            ControlType::Refreshed => "refreshed",
            ControlType::Presence => "presence",
        }
    }
}

fn frame(kind: ControlType, data: Value) -> String {
    json!({"type": kind.as_str(), "timestamp": format_timestamp(&Utc::now()), "data": data})
        .to_string()
}

fn with_request_id(mut data: Map<String, Value>, request_id: Option<&str>) -> Value {
    if let Some(id) = request_id {
        data.insert("request_id".into(), Value::String(id.to_string()));
    }
    Value::Object(data)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `hello`: the first frame of every connection. `epoch` is the stream's
/// (`crate::log::Epoch`): the seqs the client will see belong to it.
pub fn hello(
    session_id: Id,
    user_id: Id,
    heartbeat_ms: u64,
    reconnect_ms: u64,
    resumed: bool,
    channels: &[Channel],
    epoch: &str,
) -> String {
    frame(
        ControlType::Hello,
        json!({
            "session_id": session_id,
            "user_id": user_id,
            "heartbeat_ms": heartbeat_ms,
            "reconnect_ms": reconnect_ms,
            "resumed": resumed,
            "channels": channels,
            "epoch": epoch,
        }),
    )
}

/// `subscribed`: `first_seq` is given exactly when history is incomplete;
/// `epoch` is the stream's, which the subscription's seqs belong to.
pub fn subscribed(
    request_id: Option<&str>,
    channel: Channel,
    first_seq: Option<u64>,
    epoch: &str,
) -> String {
    let mut data = object(json!({
        "channel": channel,
        "complete": first_seq.is_none(),
        "epoch": epoch,
    }));
    if let Some(first) = first_seq {
        data.insert("first_seq".into(), first.into());
    }
    frame(ControlType::Subscribed, with_request_id(data, request_id))
}

pub fn replayed(channel: Channel, count: u64, last_seq: u64) -> String {
    frame(
        ControlType::Replayed,
        json!({"channel": channel, "count": count, "last_seq": last_seq}),
    )
}

pub fn unsubscribed(request_id: Option<&str>, channel: Channel, reason: EndReason) -> String {
    let data = object(json!({"channel": channel, "reason": reason.as_str()}));
    frame(ControlType::Unsubscribed, with_request_id(data, request_id))
}

pub fn pong(request_id: Option<&str>) -> String {
    frame(ControlType::Pong, with_request_id(Map::new(), request_id))
}

/// `refreshed`: the connection's token is the new one, which expires at
/// `exp` (seconds since the epoch).
pub fn refreshed(request_id: Option<&str>, exp: i64) -> String {
    let data = object(json!({ "exp": exp }));
    frame(ControlType::Refreshed, with_request_id(data, request_id))
}

/// `presence`: a snapshot (`presence::view::Snapshot` as
/// `http::presence::snapshot_json` writes it).
pub fn presence(request_id: Option<&str>, snapshot: Value) -> String {
    frame(
        ControlType::Presence,
        with_request_id(object(snapshot), request_id),
    )
}

pub fn error(error: &FrameError) -> String {
    let data = object(json!({"code": error.code.as_str(), "message": error.message}));
    frame(
        ControlType::Error,
        with_request_id(data, error.request_id.as_deref()),
    )
}

#[cfg(test)]
mod tests;
