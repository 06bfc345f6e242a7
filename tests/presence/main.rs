//! Presence end to end: real nats-servers (one, or the three-node
//! cluster), real gateway processes, real WebSockets.
//!
//! - [`nodes`]: two nodes' presence tasks on one NATS, without gateways.
//! - [`http`]: `GET /v1/presence/{channel}` across two gateways.
//! - [`frames`]: the snapshot and live events across two gateways, tabs
//!   counted once, the `presence` frame, nothing without asking.
//! - [`grace`]: a reset and a reconnect within the grace show nothing; a
//!   drop is offline after it; a ban or an unsubscribe at once.
//! - [`faults`]: a gateway SIGKILLed, a NATS node killed.
//!
//! A [`Watch`] is a client that keeps what it was told of one channel's
//! presence. Absence (no offline/online pair) is checked behind a barrier:
//! another user's change made later on the same node, once seen, comes
//! after anything announced before it.

mod faults;
mod frames;
mod grace;
mod http;
mod nodes;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::token::Grant;
use switchboard_harness::*;

/// A user: id and token (every channel granted, named `name`).
#[derive(Clone)]
struct User {
    id: Id,
    token: String,
}

fn user(name: &str) -> User {
    let id = Id::new_v4();
    User {
        id,
        token: token_named(id, Grant::All, &[], Some(name), TOKEN_TTL),
    }
}

/// Subscribes `client` to `channel`, with presence or not; returns the
/// `subscribed` frame.
async fn subscribe(client: &mut Client, channel: Id, presence: bool) -> Value {
    let frame = json!({
        "type": "subscribe",
        "channel": Channel::Chat(channel).to_string(),
        "presence": presence,
    });
    client.send(frame).await;
    let reply = client.next().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

/// A client subscribed with presence to one channel, and what it was told:
/// the set (each snapshot replaces it, each event changes it), every
/// change in order, and how many snapshots came.
struct Watch {
    client: Client,
    channel: Id,
    /// user id → connections (as the last snapshot said; 0 when an event
    /// added the user).
    online: BTreeMap<String, u64>,
    /// Each change, from an event or from the difference a snapshot made.
    changes: Vec<(String, bool)>,
    snapshots: usize,
}

impl Watch {
    /// Connects as `user` to `gateway`, subscribes with presence, and reads
    /// the first snapshot.
    async fn start(gateway: &Gateway, user: &User, channel: Id) -> Watch {
        let mut client = Client::connect(gateway, &user.token).await;
        subscribe(&mut client, channel, true).await;
        let mut watch = Watch {
            client,
            channel,
            online: BTreeMap::new(),
            changes: Vec::new(),
            snapshots: 0,
        };
        watch
            .until("the first snapshot", |w| w.snapshots == 1)
            .await;
        watch
    }

    /// Takes one frame into account; returns it.
    async fn read(&mut self) -> Value {
        let frame = self.client.next().await;
        let chat = Channel::Chat(self.channel).to_string();
        match frame["type"].as_str() {
            Some("presence") if frame["data"]["channel"] == chat => {
                assert_schema(&frame);
                self.snapshots += 1;
                let online: BTreeMap<String, u64> = frame["data"]["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(|m| {
                        let id = m["user_id"].as_str().expect("user_id").to_string();
                        (id, m["connections"].as_u64().expect("connections"))
                    })
                    .collect();
                // A snapshot stands for the changes it holds (a batch of
                // many comes as one).
                for id in online.keys().filter(|id| !self.online.contains_key(*id)) {
                    self.changes.push((id.clone(), true));
                }
                for id in self.online.keys().filter(|id| !online.contains_key(*id)) {
                    self.changes.push((id.clone(), false));
                }
                self.online = online;
            }
            Some("user_presence") if frame["channel"] == chat => {
                assert_schema(&frame);
                let id = frame["data"]["user_id"]
                    .as_str()
                    .expect("user_id")
                    .to_string();
                let online = frame["data"]["online"].as_bool().expect("online");
                if online {
                    self.online.entry(id.clone()).or_insert(0);
                } else {
                    self.online.remove(&id);
                }
                self.changes.push((id, online));
            }
            _ => {}
        }
        frame
    }

    /// Reads frames until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&Watch) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            self.read().await;
        }
    }

    fn is_online(&self, user: &User) -> bool {
        self.online.contains_key(&user.id.to_string())
    }

    /// The changes seen of `user`, in order.
    fn changes_of(&self, user: &User) -> Vec<bool> {
        let id = user.id.to_string();
        self.changes
            .iter()
            .filter(|(u, _)| *u == id)
            .map(|(_, online)| *online)
            .collect()
    }
}

/// Two gateways on one NATS, sessions in the bucket, with `args`.
fn two_gateways(nats: &NatsServer, args: &[&str]) -> (Gateway, Gateway) {
    let mut all = vec!["--session-store", "kv"];
    all.extend_from_slice(args);
    (
        Gateway::start_on(&nats.url(), &all),
        Gateway::start_on(&nats.url(), &all),
    )
}

/// `user` comes online in `channel` through `gateway`; returns the client.
async fn join(gateway: &Gateway, user: &User, channel: Id) -> Client {
    let mut client = Client::connect(gateway, &user.token).await;
    subscribe(&mut client, channel, false).await;
    client
}

/// The grace of these tests, as an argument and as a duration.
const GRACE_ARG: &str = "2s";
const GRACE: Duration = Duration::from_secs(2);
