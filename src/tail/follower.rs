//! The tail client's state across connections, as a sans-IO machine: text
//! frames from the gateway in; lines to print, frames to send and the end of
//! a connection out. It decides what to subscribe after each `hello` (from
//! the last printed `seq`, else the start asked for), drops events already
//! printed, and says which acks are due. It also reads the answers to the
//! driver's token refreshes (`refreshed`, or an `error` with the refresh's
//! `request_id`); when to refresh is [`super::token`]'s. With `--presence`
//! it asks the chat channels it subscribes for presence; the `presence` and
//! `user_presence` frames that follow are printed as every frame is (they
//! have no `seq`: never dropped, counted or acked). No sockets, no clocks,
//! no stdout.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::token::REFRESH_REQUEST_ID;
use super::{Start, TailOptions, DEFAULT_HEARTBEAT_MS, DEFAULT_RECONNECT_MS};
use crate::channel::{Channel, Id};
use crate::event::parse_timestamp;

/// What the driver does after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this line (one JSON frame) on stdout.
    Print(String),
    /// Send this text frame.
    Send(String),
    /// `hello`: the connection is established; the gateway's clock read
    /// this (milliseconds since the epoch) when it sent it.
    Connected { server_time_ms: Option<i64> },
    /// `refreshed` answered the driver's `refresh`: the connection's token
    /// now expires at `exp` (seconds since the epoch).
    Refreshed { exp: i64 },
    /// The gateway refused the driver's `refresh` (the code and message);
    /// the connection keeps its token.
    RefreshRefused(String),
    /// Drop this connection and reconnect (after the back-off).
    Reconnect(String),
    /// Close cleanly and exit 0.
    Done,
    /// Close and exit 1 with this message.
    Fail(String),
}

/// The client's state across connections: the channels it follows, the
/// last printed `seq` of each (events at or below it are dropped), what was
/// acked, and the session to resume.
#[derive(Debug)]
pub struct Follower {
    followed: Vec<Channel>,
    start: Option<Start>,
    seen: HashMap<Channel, u64>,
    acked: HashMap<Channel, u64>,
    /// For a live subscription (no `--since`): the gateway's time when it was
    /// first confirmed, to resubscribe from if the session is lost before any
    /// event was printed.
    live_from: HashMap<Channel, String>,
    session: Option<Id>,
    reconnect_ms: u64,
    heartbeat_ms: u64,
    events: u64,
    max_events: Option<u64>,
    /// `--presence`: subscribe the chat channels with `presence: true`.
    presence: bool,
    /// The chat channels subscribed with `presence: true` on some
    /// connection: a session that restores them restores that too (and the
    /// gateway sends their snapshot again).
    presence_asked: HashSet<Channel>,
    /// Chat channels a session restored that tail never subscribed itself
    /// (`--session`): whether they asked for presence is not known.
    presence_unknown: HashSet<Channel>,
}

impl Follower {
    pub fn new(options: &TailOptions) -> Follower {
        let mut followed = Vec::new();
        for c in &options.channels {
            if !followed.contains(c) {
                followed.push(*c);
            }
        }
        Follower {
            followed,
            start: options.start.clone(),
            seen: HashMap::new(),
            acked: HashMap::new(),
            live_from: HashMap::new(),
            session: options.session,
            reconnect_ms: DEFAULT_RECONNECT_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            events: 0,
            max_events: options.max_events,
            presence: options.presence,
            presence_asked: HashSet::new(),
            presence_unknown: HashSet::new(),
        }
    }

    /// The session to resume on the next connection.
    pub fn session(&self) -> Option<Id> {
        self.session
    }

    pub fn reconnect_ms(&self) -> u64 {
        self.reconnect_ms
    }

    /// A connection silent for this long (not even the server's pings) is
    /// taken as broken.
    pub fn silence_limit(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.saturating_mul(2)) + Duration::from_secs(10)
    }

    /// Whether `channel` is asked for presence: `--presence` and a chat
    /// channel (the gateway refuses presence for the others).
    fn wants_presence(&self, channel: Channel) -> bool {
        self.presence && matches!(channel, Channel::Chat(_))
    }

    /// The `subscribe` frame for `channel`: from its last printed `seq`,
    /// else from `--since`/`--since-seq`, else from when it first went live;
    /// with `presence: true` when it [wants presence](Self::wants_presence).
    fn subscribe(&mut self, channel: Channel) -> String {
        let mut frame = json!({
            "type": "subscribe",
            "channel": channel,
            "request_id": format!("subscribe {channel}"),
        });
        if self.wants_presence(channel) {
            frame["presence"] = true.into();
            self.presence_asked.insert(channel);
            self.presence_unknown.remove(&channel);
        }
        let start = match self.seen.get(&channel) {
            Some(&seq) => Some(Start::Seq(seq)),
            None => self
                .start
                .clone()
                .or_else(|| self.live_from.get(&channel).cloned().map(Start::Time)),
        };
        match start {
            Some(Start::Seq(n)) => frame["since_seq"] = n.into(),
            Some(Start::Time(t)) => frame["since"] = t.into(),
            None => {}
        }
        frame.to_string()
    }

    /// The `ack` frames due: one per channel whose last printed `seq` is
    /// past the last ack.
    pub fn acks(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.followed {
            let Some(&seq) = self.seen.get(c) else {
                continue;
            };
            if self.acked.get(c).is_some_and(|&a| a >= seq) {
                continue;
            }
            self.acked.insert(*c, seq);
            out.push(json!({"type": "ack", "channel": c, "seq": seq}).to_string());
        }
        out
    }

    /// One text frame from the gateway.
    pub fn on_text(&mut self, text: &str) -> Vec<Action> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::warn!("the gateway sent a frame that is not JSON; skipped");
            return vec![];
        };
        // One frame, one line, as the gateway wrote it.
        let line = if text.contains('\n') {
            frame.to_string()
        } else {
            text.to_string()
        };
        let channel = frame
            .get("channel")
            .or_else(|| frame["data"].get("channel"))
            .and_then(Value::as_str)
            .and_then(|c| Channel::parse(c).ok());
        if let (Some(seq), Some(c)) = (frame.get("seq").and_then(Value::as_u64), channel) {
            return self.on_event(c, seq, line);
        }
        let data = &frame["data"];
        match frame["type"].as_str().unwrap_or("") {
            "hello" => {
                let server_time_ms = frame["timestamp"]
                    .as_str()
                    .and_then(|t| parse_timestamp(t).ok())
                    .map(|t| t.timestamp_millis());
                let mut out = self.on_hello(data, line);
                out.insert(1, Action::Connected { server_time_ms });
                out
            }
            "refreshed" if data["request_id"] == REFRESH_REQUEST_ID => {
                let mut out = vec![Action::Print(line)];
                match data["exp"].as_i64() {
                    Some(exp) => out.push(Action::Refreshed { exp }),
                    // The answer timer counts it as failed.
                    None => tracing::warn!("the gateway's `refreshed` has no exp; ignored"),
                }
                out
            }
            "subscribed" => {
                if let Some(c) = channel {
                    if data["complete"] == Value::Bool(false) {
                        tracing::warn!(
                            channel = %c,
                            first_seq = data["first_seq"].as_u64(),
                            "history incomplete: events before first_seq are gone from the log"
                        );
                        self.seen.remove(&c);
                        self.acked.remove(&c);
                    }
                    if self.start.is_none() && !self.seen.contains_key(&c) {
                        if let Some(t) = frame["timestamp"].as_str() {
                            self.live_from.entry(c).or_insert_with(|| t.to_string());
                        }
                    }
                }
                vec![Action::Print(line)]
            }
            "unsubscribed" => {
                let reason = data["reason"].as_str().unwrap_or("unknown");
                let mut out = vec![Action::Print(line)];
                if let Some(c) = channel {
                    tracing::warn!(channel = %c, reason, "subscription ended");
                    self.followed.retain(|f| *f != c);
                    if self.followed.is_empty() {
                        tracing::warn!("no channel left to follow");
                        out.push(Action::Done);
                    }
                }
                out
            }
            "error" => {
                let code = data["code"].as_str().unwrap_or("unknown");
                let message = data["message"].as_str().unwrap_or("");
                let mut out = vec![Action::Print(line)];
                if data["request_id"] == REFRESH_REQUEST_ID {
                    out.push(Action::RefreshRefused(format!("{code}: {message}")));
                    return out;
                }
                let subscribe = data["request_id"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("subscribe "));
                match (subscribe, code) {
                    (Some(c), "forbidden" | "not_found" | "bad_request") => out.push(Action::Fail(
                        format!("cannot subscribe to {c}: {code}: {message}"),
                    )),
                    (Some(c), _) => out.push(Action::Reconnect(format!(
                        "subscribing to {c} failed: {code}: {message}"
                    ))),
                    (None, _) => tracing::warn!(code, message, "the gateway reported an error"),
                }
                out
            }
            _ => vec![Action::Print(line)],
        }
    }

    fn on_event(&mut self, channel: Channel, seq: u64, line: String) -> Vec<Action> {
        if self.seen.get(&channel).is_some_and(|&last| seq <= last) {
            tracing::debug!(%channel, seq, "already printed; dropped");
            return vec![];
        }
        self.seen.insert(channel, seq);
        self.events += 1;
        let mut out = vec![Action::Print(line)];
        if self.max_events.is_some_and(|max| self.events >= max) {
            out.push(Action::Done);
        }
        out
    }

    fn on_hello(&mut self, data: &Value, line: String) -> Vec<Action> {
        let asked = self.session;
        self.session = data["session_id"].as_str().and_then(|s| Id::parse(s).ok());
        if let Some(ms) = data["reconnect_ms"].as_u64() {
            self.reconnect_ms = ms;
        }
        if let Some(ms) = data["heartbeat_ms"].as_u64() {
            self.heartbeat_ms = ms;
        }
        // A new connection: ack again what was printed, so that this
        // session's cursors are exact.
        self.acked.clear();
        let resumed = data["resumed"] == Value::Bool(true);
        let restored: Vec<Channel> = if resumed {
            data["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().and_then(|c| Channel::parse(c).ok()))
                .collect()
        } else {
            if let Some(id) = asked {
                tracing::warn!(session = %id, "session not restored (unknown or expired): subscribing afresh");
            }
            vec![]
        };
        if resumed {
            tracing::info!(channels = restored.len(), "session resumed");
        }
        for c in &restored {
            if !self.followed.contains(c) {
                self.followed.push(*c);
            }
        }
        let mut out = vec![Action::Print(line)];
        if self.followed.is_empty() {
            out.push(Action::Fail(
                "nothing to follow: the session has no subscription and no channel was given"
                    .into(),
            ));
            return out;
        }
        for c in self.followed.clone() {
            if !restored.contains(&c) {
                out.push(Action::Send(self.subscribe(c)));
            } else if self.wants_presence(c) && !self.presence_asked.contains(&c) {
                out.push(Action::Send(self.ask_presence(c)));
            }
        }
        out
    }

    /// A chat channel the session restored though tail never subscribed it
    /// (`--session`): its subscription gets presence only if it asked for
    /// it when it was made, which `hello` does not say. Its snapshot is
    /// asked for (a `presence` frame), on every connection, and the first
    /// time a warning says why the changes may not follow.
    fn ask_presence(&mut self, channel: Channel) -> String {
        if self.presence_unknown.insert(channel) {
            tracing::warn!(
                %channel,
                "--presence: this subscription was restored from the session; it gets \
                 presence changes only if it asked for presence when it was made; \
                 its snapshot is asked for"
            );
        }
        json!({
            "type": "presence",
            "channel": channel,
            "request_id": format!("presence {channel}"),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests;
