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
mod tests {
    use super::*;

    const C: &str = "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
    const S: &str = "9f0b2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";

    fn options(channels: &[&str], start: Option<Start>) -> TailOptions {
        TailOptions {
            url: "ws://127.0.0.1:8080/v1/ws".into(),
            token: super::super::token::TokenSource::Fixed("t".into()),
            channels: channels
                .iter()
                .map(|c| Channel::parse(c).unwrap())
                .collect(),
            start,
            session: None,
            max_events: None,
            presence: false,
        }
    }

    fn hello(resumed: bool, channels: &[&str]) -> String {
        json!({"type": "hello", "timestamp": "2025-01-15T10:30:00.000Z", "data": {
            "session_id": S, "user_id": S, "heartbeat_ms": 1000, "reconnect_ms": 50,
            "resumed": resumed, "channels": channels}})
        .to_string()
    }

    fn event(channel: &str, seq: u64) -> String {
        json!({"type": "channel_created", "timestamp": "2025-01-15T10:30:01.000Z",
               "data": {}, "channel": channel, "seq": seq, "id": "x"})
        .to_string()
    }

    fn sent(actions: &[Action]) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(f) => serde_json::from_str(f).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hello_subscribes_every_channel_with_its_start() {
        let mut f = Follower::new(&options(&[C, "global"], Some(Start::Seq(3))));
        let actions = f.on_text(&hello(false, &[]));
        assert!(matches!(&actions[0], Action::Print(l) if l.contains("hello")));
        let frames = sent(&actions);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["channel"], C);
        assert_eq!(frames[0]["since_seq"], 3);
        assert_eq!(frames[1]["channel"], "global");
        assert_eq!(f.session().unwrap().to_string(), S);
        assert_eq!(f.reconnect_ms(), 50);
    }

    #[test]
    fn a_resumed_session_subscribes_only_what_it_lacks() {
        let mut f = Follower::new(&options(&[C, "global"], None));
        let frames = sent(&f.on_text(&hello(true, &[C])));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["channel"], "global");
        assert!(frames[0].get("since_seq").is_none() && frames[0].get("since").is_none());
    }

    #[test]
    fn events_at_or_below_the_last_printed_seq_are_dropped_and_resubscribe_from_it() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        assert_eq!(f.on_text(&event(C, 5)).len(), 1);
        assert_eq!(f.on_text(&event(C, 5)), vec![]);
        assert_eq!(f.on_text(&event(C, 4)), vec![]);
        assert_eq!(f.on_text(&event(C, 7)).len(), 1);
        // Other channels have their own seqs.
        assert_eq!(f.on_text(&event("global", 1)).len(), 1);
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames[0]["since_seq"], 7);
    }

    #[test]
    fn acks_go_once_per_new_seq_and_again_on_a_new_connection() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        assert!(f.acks().is_empty());
        f.on_text(&event(C, 5));
        f.on_text(&event(C, 6));
        let acks: Vec<Value> = f
            .acks()
            .iter()
            .map(|a| serde_json::from_str(a).unwrap())
            .collect();
        assert_eq!(acks, vec![json!({"type": "ack", "channel": C, "seq": 6})]);
        assert!(f.acks().is_empty());
        f.on_text(&hello(true, &[C]));
        assert_eq!(f.acks().len(), 1);
    }

    #[test]
    fn a_live_subscription_resubscribes_from_when_it_went_live() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        f.on_text(
            &json!({"type": "subscribed", "timestamp": "2025-01-15T10:30:00.500Z",
                    "data": {"channel": C, "complete": true, "request_id": format!("subscribe {C}")}})
            .to_string(),
        );
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames[0]["since"], "2025-01-15T10:30:00.500Z");
    }

    #[test]
    fn incomplete_history_forgets_the_seq() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        f.on_text(&event(C, 50));
        f.on_text(
            &json!({"type": "subscribed", "timestamp": "t",
                    "data": {"channel": C, "complete": false, "first_seq": 1}})
            .to_string(),
        );
        assert_eq!(f.on_text(&event(C, 2)).len(), 1);
    }

    #[test]
    fn max_events_refused_subscriptions_and_ended_channels_finish() {
        let mut o = options(&[C], None);
        o.max_events = Some(2);
        let mut f = Follower::new(&o);
        f.on_text(&hello(false, &[]));
        assert_eq!(f.on_text(&event(C, 1)).len(), 1);
        assert_eq!(f.on_text(&event(C, 2)).last(), Some(&Action::Done));

        let mut f = Follower::new(&options(&[C], None));
        let error = json!({"type": "error", "timestamp": "t", "data": {
            "code": "forbidden", "message": "not a member", "request_id": format!("subscribe {C}")}});
        let actions = f.on_text(&error.to_string());
        assert!(matches!(actions.last(), Some(Action::Fail(m)) if m.contains("not a member")));

        let mut f = Follower::new(&options(&[C], None));
        let ended = json!({"type": "unsubscribed", "timestamp": "t",
                           "data": {"channel": C, "reason": "banned"}});
        assert_eq!(f.on_text(&ended.to_string()).last(), Some(&Action::Done));
    }

    #[test]
    fn hello_says_connected_with_the_gateway_clock() {
        let mut f = Follower::new(&options(&[C], None));
        let actions = f.on_text(&hello(false, &[]));
        assert!(matches!(&actions[0], Action::Print(_)));
        let expected = parse_timestamp("2025-01-15T10:30:00.000Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            actions[1],
            Action::Connected {
                server_time_ms: Some(expected)
            }
        );
        let odd = json!({"type": "hello", "timestamp": "noon", "data": {"session_id": S}});
        let actions = f.on_text(&odd.to_string());
        assert!(actions.contains(&Action::Connected {
            server_time_ms: None
        }));
    }

    #[test]
    fn answers_to_the_refresh_are_read_and_printed() {
        let mut f = Follower::new(&options(&[C], None));
        f.on_text(&hello(false, &[]));
        let refreshed = json!({"type": "refreshed", "timestamp": "t",
                               "data": {"exp": 1_700_000_000, "request_id": REFRESH_REQUEST_ID}});
        let actions = f.on_text(&refreshed.to_string());
        assert!(matches!(&actions[0], Action::Print(l) if l.contains("refreshed")));
        assert_eq!(actions[1..], [Action::Refreshed { exp: 1_700_000_000 }]);
        // Someone else's refresh (not ours), or no exp: printed only.
        let theirs = json!({"type": "refreshed", "timestamp": "t",
                            "data": {"exp": 1_700_000_000, "request_id": "r1"}});
        assert_eq!(f.on_text(&theirs.to_string()).len(), 1);
        let no_exp = json!({"type": "refreshed", "timestamp": "t",
                            "data": {"request_id": REFRESH_REQUEST_ID}});
        assert_eq!(f.on_text(&no_exp.to_string()).len(), 1);

        // A refusal keeps the connection: no Fail, no Reconnect.
        let refused = json!({"type": "error", "timestamp": "t", "data": {
            "code": "forbidden", "message": "the token is for another user",
            "request_id": REFRESH_REQUEST_ID}});
        let actions = f.on_text(&refused.to_string());
        assert!(matches!(&actions[0], Action::Print(l) if l.contains("another user")));
        assert_eq!(
            actions[1..],
            [Action::RefreshRefused(
                "forbidden: the token is for another user".into()
            )]
        );
    }

    #[test]
    fn a_revoked_subscription_ends_like_the_other_server_side_ends() {
        let mut f = Follower::new(&options(&[C, "global"], None));
        f.on_text(&hello(false, &[]));
        let revoked = json!({"type": "unsubscribed", "timestamp": "t",
                             "data": {"channel": C, "reason": "revoked"}});
        let actions = f.on_text(&revoked.to_string());
        assert_eq!(actions.len(), 1, "printed; global is still followed");
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames.len(), 1, "not subscribed again after a reconnect");
        assert_eq!(frames[0]["channel"], "global");
        let revoked = json!({"type": "unsubscribed", "timestamp": "t",
                             "data": {"channel": "global", "reason": "revoked"}});
        assert_eq!(f.on_text(&revoked.to_string()).last(), Some(&Action::Done));
    }

    fn presence_options(channels: &[&str]) -> TailOptions {
        TailOptions {
            presence: true,
            ..options(channels, None)
        }
    }

    #[test]
    fn presence_is_asked_of_chat_channels_only() {
        let mut f = Follower::new(&presence_options(&[C, "global"]));
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert_eq!(frames[0]["channel"], C);
        assert_eq!(frames[0]["presence"], true);
        assert_eq!(frames[1]["channel"], "global");
        assert!(frames[1].get("presence").is_none(), "{}", frames[1]);
        // Without --presence, never.
        let mut f = Follower::new(&options(&[C], None));
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert!(frames[0].get("presence").is_none(), "{}", frames[0]);
    }

    #[test]
    fn presence_frames_are_printed_as_they_come_and_are_not_events() {
        let mut o = presence_options(&[C]);
        o.max_events = Some(1);
        let mut f = Follower::new(&o);
        f.on_text(&hello(false, &[]));
        let snapshot = json!({"type": "presence", "timestamp": "t", "data": {
            "channel": C, "count": 1, "truncated": false,
            "members": [{"user_id": S, "username": "ann", "connections": 1}]}})
        .to_string();
        let online = json!({"type": "user_presence", "timestamp": "t", "data": {
            "channel_id": &C[8..], "user_id": S, "username": "ann", "online": true},
            "channel": C, "id": "x"})
        .to_string();
        for frame in [&snapshot, &online, &online] {
            assert_eq!(f.on_text(frame), vec![Action::Print(frame.clone())]);
        }
        assert!(f.acks().is_empty(), "nothing to ack");
        assert_eq!(f.on_text(&event(C, 1)).last(), Some(&Action::Done));
    }

    #[test]
    fn a_resumed_session_keeps_presence_and_asks_a_snapshot_where_it_is_unknown() {
        const D: &str = "channel:1b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
        let mut o = presence_options(&[C]);
        o.session = Some(Id::parse(S).unwrap());
        let mut f = Follower::new(&o);
        // The session (of another run) restores C and D: tail never
        // subscribed them, so it asks both for their snapshot.
        let frames = sent(&f.on_text(&hello(true, &[C, D])));
        let asked: Vec<(&Value, &Value)> =
            frames.iter().map(|f| (&f["type"], &f["channel"])).collect();
        assert_eq!(
            asked,
            [
                (&json!("presence"), &json!(C)),
                (&json!("presence"), &json!(D))
            ]
        );
        assert_eq!(frames[0]["request_id"], format!("presence {C}"));
        // A fresh session: tail subscribes them with presence itself...
        let frames = sent(&f.on_text(&hello(false, &[])));
        assert!(frames
            .iter()
            .all(|f| f["type"] == "subscribe" && f["presence"] == true));
        // ... and once the session restores them, the gateway sends their
        // snapshot: nothing to ask.
        assert_eq!(sent(&f.on_text(&hello(true, &[C, D]))), Vec::<Value>::new());
    }
}
