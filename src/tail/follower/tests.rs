//! The follower without a gateway, frame in, actions out: what it
//! subscribes with after each `hello`, the events it drops as already
//! printed, its acks, its presence requests and its answers to a refresh.

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
    let asked: Vec<(&Value, &Value)> = frames.iter().map(|f| (&f["type"], &f["channel"])).collect();
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
