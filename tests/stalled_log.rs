//! The connection never waits on the log: while one subscription's replay
//! waits for a JetStream request that answers late (5 s here, about a
//! leader election on these machines), the connection's other
//! subscriptions get their live events, pings are answered, and a
//! shutdown closes it with 1001 at once.
//!
//! The order of frames is the proof, not a clock: a connection that waited
//! inline would send the late subscription's reply before anything that
//! arrived while it waited.
//!
//! And live delivery never waits on the creation of the router's consumer:
//! while no consumer can be created, the router reads by direct get.
//!
//! And a replay given up while its consumer's creation waits (the client
//! dropped) leaves no consumer behind once the creation goes through.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::Id;
use switchboard::log::{Log, StreamSettings, REQUEST_TIMEOUT};
use switchboard::token::Grant;
use switchboard_harness::*;

/// How long the JetStream API's direct gets (what planning a `since`
/// replay asks) are held back.
const STALL: Duration = Duration::from_secs(5);

/// Reads frames until one `is_reply` accepts, and returns the frames
/// before it.
async fn until_reply(client: &mut Client, is_reply: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let frame = client.next().await;
        if is_reply(&frame) {
            return before;
        }
        before.push(frame);
    }
}

fn replies_to(request_id: &'static str) -> impl Fn(&Value) -> bool {
    move |frame: &Value| {
        matches!(frame["type"].as_str(), Some("subscribed" | "error"))
            && frame["data"]["request_id"] == request_id
    }
}

#[tokio::test]
async fn a_stalled_log_request_holds_up_only_its_own_subscription() {
    let nats = nats();
    let proxy = StallProxy::start(&nats.url());
    // No window: a replay plans against the stream itself.
    let mut gateway = Gateway::start_on(&proxy.url, &["--window-events", "0"]);
    let log = log(&nats).await;
    let (live, old, other) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    for i in 0..5 {
        log.store(&message(old, format!("history {i}")))
            .await
            .expect("stored");
    }
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(live)).await;

    // The replay of `old` from a time: planning it asks direct gets, held.
    proxy.hold("$JS.API.DIRECT.GET", STALL);
    client
        .send(
            json!({"type": "subscribe", "channel": chat(old).to_string(),
                     "since": "2000-01-01T00:00:00.000Z", "request_id": "old"}),
        )
        .await;
    let mut published = Vec::new();
    for i in 0..3 {
        let stored = log
            .store(&message(live, format!("live {i}")))
            .await
            .expect("stored");
        published.push(stored.seq);
    }
    client
        .send(json!({"type": "ping", "request_id": "still there?"}))
        .await;
    let before = until_reply(&mut client, replies_to("old")).await;
    let live_seqs: Vec<u64> = before
        .iter()
        .filter(|f| f["channel"] == chat(live).to_string())
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    assert_eq!(
        live_seqs, published,
        "the live subscription's events came while the other's replay waited: {before:?}"
    );
    assert!(
        before
            .iter()
            .any(|f| f["type"] == "pong" && f["data"]["request_id"] == "still there?"),
        "the ping was answered while the replay waited: {before:?}"
    );

    // A shutdown while a replay waits closes at once, with 1001.
    proxy.hold("$JS.API.DIRECT.GET", STALL);
    client
        .send(
            json!({"type": "subscribe", "channel": chat(other).to_string(),
                     "since": "2000-01-01T00:00:00.000Z", "request_id": "other"}),
        )
        .await;
    client
        .send(json!({"type": "ping", "request_id": "sent"}))
        .await;
    // The ping's answer shows the subscribe was read (and is waiting).
    until_reply(&mut client, |f| {
        f["type"] == "pong" && f["data"]["request_id"] == "sent"
    })
    .await;
    let stopping = tokio::task::spawn_blocking(move || {
        gateway.terminate();
        gateway
    });
    let mut reply_before_close = None;
    let code = loop {
        match client.next_message().await {
            tokio_tungstenite::tungstenite::Message::Close(frame) => {
                break frame.map(|f| u16::from(f.code));
            }
            tokio_tungstenite::tungstenite::Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if replies_to("other")(&frame) {
                    reply_before_close = Some(frame);
                }
            }
            _ => {}
        }
    };
    assert_eq!(code, Some(1001));
    assert!(
        reply_before_close.is_none(),
        "the close waited for the stalled replay: {reply_before_close:?}"
    );
    stopping.await.expect("stopped");
}

/// How long consumer creation is held back in the test below: longer than
/// any wait of the test, so only the router's direct-get bridge can carry
/// the events meanwhile.
const CREATE_HELD: Duration = Duration::from_secs(600);

/// The router's consumer is lost and a new one cannot be created (its
/// creation waits on a JetStream API that does not answer, as after a
/// stream leader's death on a loaded cluster): live events still reach the
/// client, every one, in order, read by direct get.
#[tokio::test]
async fn live_delivery_goes_on_by_direct_get_while_the_routers_consumer_cannot_be_created() {
    use futures::StreamExt;

    let nats = nats();
    let proxy = StallProxy::start(&nats.url());
    let gateway = Gateway::start_on(&proxy.url, &[]);
    let log = log(&nats).await;
    let channel = Id::new_v4();
    let mut client = live_client(&gateway, &log, channel).await;

    // No consumer can be created any more; the router's own is deleted.
    proxy.hold("$JS.API.CONSUMER.CREATE", CREATE_HELD);
    let mut stream = the_stream(&nats).await;
    let names: Vec<String> = stream
        .consumer_names()
        .filter_map(|name| async move { name.ok() })
        .collect()
        .await;
    assert!(!names.is_empty(), "the router reads through a consumer");
    for name in &names {
        stream.delete_consumer(name).await.expect("deleted");
    }

    let mut published = Vec::new();
    for i in 0..20 {
        let stored = log
            .store(&message(channel, format!("bridged {i}")))
            .await
            .expect("stored");
        published.push(stored.seq);
    }
    let mut delivered = Vec::new();
    let all = tokio::time::timeout(PATIENCE, async {
        while delivered.len() < published.len() {
            let frame = client.next().await;
            if let Some(seq) = frame["seq"].as_u64() {
                delivered.push(seq);
            }
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "every event arrived while no consumer could be created: {delivered:?} of {published:?}"
    );
    assert_eq!(delivered, published, "every event, once, in order");
    let info = stream.info().await.expect("stream info");
    assert_eq!(
        info.state.consumer_count, 0,
        "no consumer was created: the events came by direct get"
    );
}

/// A client subscribed to `channel`, once an event stored there has
/// reached it through the router's consumer.
async fn live_client(gateway: &Gateway, log: &Log, channel: Id) -> Client {
    let mut client = Client::connect(gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(channel)).await;
    let first = log
        .store(&message(channel, "through the router".to_string()))
        .await
        .expect("stored");
    let frame = client.next().await;
    assert_eq!(frame["seq"].as_u64(), Some(first.seq), "{frame}");
    client
}

/// The gateway's stream, over a connection of the test's own.
async fn the_stream(nats: &NatsServer) -> async_nats::jetstream::stream::Stream {
    let admin = async_nats::jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("admin connection"),
    );
    admin
        .get_stream(StreamSettings::default().name)
        .await
        .expect("the stream")
}

/// The series counting the consumers the gateway's reads created.
const CONSUMERS: &str = "switchboard_log_consumers_created_total";

/// A gateway with no window (a replay reads the stream through a consumer
/// of its own) behind the proxy and a channel `old` with five stored
/// events; [`Replaying::start`] also gives a client whose live
/// subscription has delivered through the router.
struct Replaying {
    proxy: StallProxy,
    gateway: Gateway,
    old: Id,
    /// The seqs of `old`'s events.
    history: Vec<u64>,
    /// The stream, read over a connection of the test's own.
    stream: async_nats::jetstream::stream::Stream,
    /// The stream's consumers before any replay: the router's.
    routers: usize,
    _nats: NatsServer,
}

impl Replaying {
    async fn start() -> (Replaying, Client) {
        let nats = nats();
        let proxy = StallProxy::start(&nats.url());
        let gateway = Gateway::start_on(&proxy.url, &["--window-events", "0"]);
        let log = log(&nats).await;
        let (live, old) = (Id::new_v4(), Id::new_v4());
        let mut history = Vec::new();
        for i in 0..5 {
            let stored = log
                .store(&message(old, format!("history {i}")))
                .await
                .expect("stored");
            history.push(stored.seq);
        }
        let client = live_client(&gateway, &log, live).await;
        let mut stream = the_stream(&nats).await;
        let routers = stream
            .info()
            .await
            .expect("stream info")
            .state
            .consumer_count;
        let replaying = Replaying {
            proxy,
            gateway,
            old,
            history,
            stream,
            routers,
            _nats: nats,
        };
        (replaying, client)
    }

    /// Subscribes to `old` from its start, with consumer creation held
    /// back for `held`, and waits until the creation request is held.
    async fn replay_held_back(&self, client: &mut Client, held: Duration) {
        self.proxy.hold("$JS.API.CONSUMER.CREATE", held);
        client
            .send(
                json!({"type": "subscribe", "channel": chat(self.old).to_string(), "since_seq": 0}),
            )
            .await;
        let proxy = &self.proxy;
        wait_until("the replay's consumer creation to be held back", || async {
            proxy.held() >= 1
        })
        .await;
    }

    /// Waits, `patience` at most (less than the server's inactivity
    /// threshold of 30 s), until the stream has no consumer but the
    /// router's.
    async fn only_the_routers_consumer_left(&mut self, after: &str, patience: Duration) {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = self
                .stream
                .info()
                .await
                .expect("stream info")
                .state
                .consumer_count;
            if left <= self.routers {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{left} consumers {patience:?} after {after}, {} before the replay",
                self.routers
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long consumer creation is held back in the test below: less than a
/// request's timeout ([`REQUEST_TIMEOUT`], 10 s), so the held create is
/// answered.
const CREATE_LATE: Duration = Duration::from_secs(3);

/// A client drops (RST) while its replay's consumer is being created: the
/// server still creates it once the request arrives, and the gateway, which
/// saw the creation through, deletes it, long before the server's own
/// 30 s inactivity threshold would.
#[tokio::test]
async fn a_replay_given_up_while_its_consumer_is_created_leaves_no_consumer() {
    let (mut t, mut client) = Replaying::start().await;
    let created = t.gateway.metric(CONSUMERS).await;
    t.replay_held_back(&mut client, CREATE_LATE).await;
    client.abort();

    let gateway = &t.gateway;
    wait_until("the given-up creation to go through", || async {
        gateway.metric(CONSUMERS).await > created
    })
    .await;
    t.only_the_routers_consumer_left("the creation went through", Duration::from_secs(10))
        .await;
}

/// How long consumer creation is held back in the test below: past a
/// request's timeout, so the gateway tries again before the first try is
/// carried out.
const CREATE_PAST_TIMEOUT: Duration = REQUEST_TIMEOUT.saturating_add(Duration::from_secs(2));

/// A replay's consumer creation times out and is tried again; the server
/// gets both tries once the hold ends and carries out both. The replay
/// delivers every event once, in order, and the first try's consumer is
/// deleted once its request could no longer be waiting (a request's
/// timeout after it timed out), before the server's 30 s would remove it.
#[tokio::test]
async fn a_consumer_creation_that_timed_out_and_was_carried_out_is_deleted() {
    let (mut t, mut client) = Replaying::start().await;
    t.replay_held_back(&mut client, CREATE_PAST_TIMEOUT).await;
    let mut replayed = Vec::new();
    loop {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("replayed") => break,
            Some("error") => panic!("the replay failed: {frame}"),
            _ => replayed.extend(frame["seq"].as_u64()),
        }
    }
    assert_eq!(replayed, t.history, "every event, once, in order");
    assert!(
        t.proxy.held() >= 2,
        "the creation was tried again while the first try was held ({} held)",
        t.proxy.held()
    );
    // The first try's consumer was made as the replay began (the hold's
    // end); its delete comes a request's timeout after the try timed out,
    // about 8 s from now; the server's own threshold is 30 s.
    t.only_the_routers_consumer_left("the replay caught up", REQUEST_TIMEOUT * 2)
        .await;
}
