//! How a WebSocket connection ends and what an `error` frame says: the
//! gateway channel's `x-close-codes` (the client's close, then
//! [`Close::ALL`]) and the `error` message's `x-error-codes`
//! ([`ErrorCode::ALL`], then the reserved ones), each code with its words
//! in a `match` (a new variant does not compile without them).

use super::tree::{list, map, Node};
use crate::gateway::protocol::{Close, ErrorCode};

fn close_description(close: Close) -> &'static str {
    match close {
        Close::ShuttingDown => "The node is shutting down; reconnect after `hello.reconnect_ms` plus jitter.",
        Close::ProtocolError => "The client broke the WebSocket framing (reserved bits or opcodes, a continuation without a start, a bad close code, …).",
        Close::InvalidUtf8 => "A text frame that is not valid UTF-8.",
        Close::TooLarge => "A frame over `max_frame_bytes` (default 64 KiB).",
        Close::LogUnavailable => "The event log failed mid-replay; an `error` frame with code `unavailable` comes first. Resume later from the cursor.",
        Close::SessionStoreUnavailable => "The session store failed; an `error` frame with code `unavailable` comes first.",
        Close::TokenExpired => "The token expired; reconnect with a fresh one (or send `refresh` before `exp`).",
        Close::Disconnected => "The operator disconnected the user (`POST /v1/users/{user_id}/disconnect`: logout, password change, account deletion); the close frame carries the operator's reason, this one when none was given. The user's sessions are gone: do not reconnect on your own, ask the application.",
        Close::Stalled => "The client read nothing for `stall_timeout` (default 60 s); it resumes later and loses nothing.",
        Close::Abuse => "More than `bad_frames_per_minute` (default 20) bad frames within a minute; `forbidden` and `not_found` answers do not count.",
    }
}

/// The close by the client, before the server's ([`Close::ALL`]).
const CLIENT_CLOSE: &str = "The client closed (with 1000 or any code of its own); the gateway answers the Close frame with the same code.";

fn error_description(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "Malformed JSON, an unknown type, a missing or wrongly typed field, a bad id, a binary frame, a subscribe to a channel already subscribed. Counts toward the bad-frame limit.",
        ErrorCode::Forbidden => "A subscription refused (not a member, banned, not your user channel), or a session's subscription not restored.",
        ErrorCode::NotFound => "`unsubscribe`, `ack` or `typing` on a channel this connection is not subscribed to.",
        ErrorCode::RateLimited => "More `refresh` frames than 10 in a minute; the token is not verified. Counts toward the bad-frame limit. (Typing over its limit is dropped, not answered.)",
        ErrorCode::Unavailable => "The log or the session store could not serve the request; try again (before a 1011 close, it explains the close).",
    }
}

/// The codes the protocol names and the gateway does not send yet
/// (schemas/server/error.json lists them with [`ErrorCode::ALL`]).
const RESERVED_ERROR_CODES: &[(&str, &str)] = &[
    (
        "too_large",
        "Reserved; a frame over the size limit closes with 1009.",
    ),
    ("internal", "Reserved for an unexpected server fault."),
];

pub(super) fn close_codes() -> Node {
    let by_client = map([
        ("code", Node::from(1000u16)),
        ("name", "normal".into()),
        ("by", "client".into()),
        ("description", CLIENT_CLOSE.into()),
    ]);
    let by_server = Close::ALL.iter().map(|&close| {
        map([
            ("code", Node::from(close.code())),
            ("name", format!("{close:?}").into()),
            ("by", "server".into()),
            ("reason", close.reason().into()),
            ("description", close_description(close).into()),
        ])
    });
    list(std::iter::once(by_client).chain(by_server))
}

pub(super) fn error_codes() -> Node {
    let sent = ErrorCode::ALL
        .iter()
        .map(|&code| (code.as_str(), error_description(code)));
    list(
        sent.chain(RESERVED_ERROR_CODES.iter().copied())
            .map(|(code, description)| {
                map([
                    ("code", Node::from(code)),
                    ("description", description.into()),
                ])
            }),
    )
}
