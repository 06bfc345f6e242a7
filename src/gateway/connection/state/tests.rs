//! The connection's rules without a socket, a runtime or NATS: unit tests
//! of planning beside live delivery, stale answers, restores, receipts and
//! a recreated stream, and a property test that drives a connection with
//! two subscriptions through random interleavings of publishes, live
//! deliveries, lag, reads, late log answers and resubscribes against a
//! model node, and checks that every subscription gets every event of its
//! channel after its start exactly once, in order.
//!
//! This file holds the model node and the driver, modelled, that both use;
//! the unit tests, one per rule, are [`rules`], the property test
//! [`property`].

mod presence;
mod property;
mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::access::Standing;
use crate::envelope::test_message as message;
use crate::envelope::StoredEvent;
use crate::gateway::window::Recent;
use crate::log::{Epoch, Extent};
use crate::session::record::{Change, Cursor};
use crate::token::{dev_claims, Grant};

/// A node in memory: the log, the hub's joins and queue, the window (all
/// of the log, or none of it), the projection's standings and the saved
/// sessions.
struct Model {
    log: Vec<StoredEvent>,
    joined: BTreeSet<Channel>,
    /// The connection's queue, as the hub fills it.
    queue: VecDeque<Arc<Delivery>>,
    queue_capacity: usize,
    lagged: bool,
    window: bool,
    standings: HashMap<Id, Standing>,
    epoch: Epoch,
    /// What the store holds of the session: each subscription's cursor.
    session: BTreeMap<Channel, u64>,
    saves: Vec<Change>,
}

impl Model {
    fn new(window: bool) -> Model {
        Model {
            log: Vec::new(),
            joined: BTreeSet::new(),
            queue: VecDeque::new(),
            queue_capacity: 1024,
            lagged: false,
            window,
            standings: HashMap::new(),
            epoch: Epoch::created_at(Utc::now()),
            session: BTreeMap::new(),
            saves: Vec::new(),
        }
    }

    fn last_seq(&self) -> u64 {
        self.log.last().map_or(0, |e| e.seq)
    }

    /// Stores an event of `channel` and routes it, as the router and hub do.
    fn publish(&mut self, channel: Channel) -> u64 {
        let event = message(channel, self.last_seq() + 1);
        if self.joined.contains(&channel) {
            if !self.lagged && self.queue.len() < self.queue_capacity {
                self.queue
                    .push_back(Arc::new(crate::gateway::router::deliver(&event)));
            } else {
                self.lagged = true;
            }
        }
        self.log.push(event);
        self.last_seq()
    }

    fn of_channel_after(&self, channel: Channel, after: u64) -> impl Iterator<Item = &StoredEvent> {
        self.log
            .iter()
            .filter(move |e| e.channel == channel && e.seq > after)
    }

    /// The plan the log would make now.
    fn plan(&self, request: &PlanRequest) -> Planned {
        let Since::Seq(n) = request.since else {
            unreachable!("the model plans since_seq only")
        };
        Planned {
            after: n,
            target: self.last_seq(),
            first_seq: None,
            epoch: self.epoch,
            following: None,
        }
    }
}

impl Env for Model {
    fn join(&mut self, channel: Channel, _presence: bool) -> u64 {
        self.joined.insert(channel);
        self.last_seq()
    }
    fn presence(&self, _channel: Id) -> crate::presence::view::Snapshot {
        crate::presence::view::Snapshot {
            count: 0,
            members: vec![],
            truncated: false,
            generation: 7,
        }
    }
    fn leave(&mut self, channel: Channel, _how: crate::presence::view::Left) {
        self.joined.remove(&channel);
    }
    fn last_routed(&self) -> u64 {
        self.last_seq()
    }
    fn standing(&self, channel: Id, _user: Id) -> Standing {
        self.standings.get(&channel).copied().unwrap_or(Standing {
            member: true,
            banned: false,
            channel_deleted: false,
        })
    }
    fn window_holds_after(&self, _after: u64) -> bool {
        self.window
    }
    fn window_standing_changes(&self, _: Id, _: Id, _: u64, _: u64) -> Option<bool> {
        self.window.then_some(false)
    }
    fn window_next_of(&self, channel: Channel, from: u64) -> Option<Option<u64>> {
        self.window.then(|| {
            self.of_channel_after(channel, from.saturating_sub(1))
                .next()
                .map(|e| e.seq)
        })
    }
    fn epoch(&self) -> Epoch {
        self.epoch
    }
    fn last_extent(&self) -> Extent {
        Extent {
            first_seq: 1,
            last_seq: self.last_seq(),
            messages: self.log.len() as u64,
            epoch: self.epoch,
        }
    }
    fn save_session(
        &mut self,
        _id: Id,
        change: Change,
        _written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), SessionError> {
        if change.remove_all {
            self.session.clear();
        }
        for (channel, cursor) in &change.subscriptions {
            match cursor {
                Some(cursor) => self.session.insert(*channel, cursor.seq),
                None => self.session.remove(channel),
            };
        }
        self.saves.push(change);
        Ok(())
    }
    fn session_expires_at(&self) -> i64 {
        Utc::now().timestamp() + 86_400
    }
    fn session_ttl(&self) -> Duration {
        Duration::from_secs(86_400)
    }
}

fn chat() -> Channel {
    Channel::Chat(Id::new_v4())
}

fn state() -> State {
    let claims = dev_claims(
        Id::new_v4(),
        Duration::from_secs(3600),
        None,
        Grant::All,
        Vec::new(),
    );
    let bounds = Bounds {
        max_subscriptions: 16,
        typing_per_second: 2,
        heartbeat: Duration::from_secs(25),
        reconnect_base: Duration::from_secs(2),
        flush_interval: Duration::from_millis(500),
    };
    State::new(1, claims, std::sync::Arc::new(bounds), 20)
}

fn subscribe(channel: Channel, since_seq: Option<u64>, request_id: &str) -> ClientFrame {
    ClientFrame::Subscribe {
        channel,
        since: since_seq.map(Since::Seq),
        epoch: None,
        presence: false,
        request_id: Some(request_id.to_string()),
    }
}

/// The text frames the state queued since the last call, as JSON.
fn written(state: &mut State) -> Vec<Value> {
    let (frames, _) = state.outbox().take_written();
    frames
        .into_iter()
        .filter(|(opcode, _)| *opcode == 0x1)
        .map(|(_, payload)| serde_json::from_slice(&payload).expect("frames are JSON"))
        .collect()
}

fn effects(state: &mut State) -> Vec<Effect> {
    std::iter::from_fn(|| state.poll_effect()).collect()
}

fn seqs_of(frames: &[Value], channel: Channel) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["channel"] == channel.to_string())
        .filter_map(|f| f["seq"].as_u64())
        .collect()
}

/// A session opened with these subscriptions and cursors (written
/// before epochs: they count in the current stream).
fn opened(subscriptions: BTreeMap<Channel, u64>) -> Opened {
    Opened {
        id: Id::new_v4(),
        resumed: !subscriptions.is_empty(),
        subscriptions: subscriptions
            .into_iter()
            .map(|(channel, seq)| {
                (
                    channel,
                    Cursor {
                        seq,
                        epoch: None,
                        presence: false,
                    },
                )
            })
            .collect(),
        legacy: false,
        written_at: Some(Utc::now().timestamp()),
    }
}

/// The driver, modelled: reads by channel, plans and probes in flight.
#[derive(Default)]
struct Driver {
    /// channel → (read position, whether the read told it is idle).
    reads: BTreeMap<Channel, (u64, bool)>,
    /// Plans in flight, made (the log's end measured) when asked: events
    /// stored later reach the subscription live, through its buffer.
    plans: VecDeque<(Channel, u64, Planned)>,
    probes: VecDeque<(Channel, u64, u64, u64, Option<u64>)>,
}

impl Driver {
    fn run(&mut self, conn: &mut State, node: &Model) {
        while let Some(effect) = conn.poll_effect() {
            match effect {
                Effect::Read { channel, after } => {
                    self.reads.insert(channel, (after, false));
                }
                Effect::StopRead { channel } => {
                    self.reads.remove(&channel);
                }
                Effect::Plan {
                    channel,
                    ticket,
                    request,
                    ..
                } => self.plans.push_back((channel, ticket, node.plan(&request))),
                Effect::Probe {
                    channel,
                    ticket,
                    from,
                    target,
                } => {
                    let next = node
                        .of_channel_after(channel, from.saturating_sub(1))
                        .next()
                        .map(|e| e.seq);
                    self.probes.push_back((channel, ticket, from, target, next));
                }
                Effect::PublishTyping(_) | Effect::Verify { .. } => {}
            }
        }
    }

    /// One step of `channel`'s read, as `reads::Read` gives them.
    fn read(&mut self, conn: &mut State, node: &mut Model, channel: Channel) -> bool {
        let Some((at, told_idle)) = self.reads.get_mut(&channel) else {
            return false;
        };
        let step = match node.of_channel_after(channel, *at).next().cloned() {
            Some(event) => {
                let pending = node.of_channel_after(channel, event.seq).count() as u64;
                *at = event.seq;
                *told_idle = pending == 0;
                Step::Window(Arc::new(Recent::encode(event)), pending)
            }
            None if !*told_idle => {
                *told_idle = true;
                Step::Idle
            }
            None => return false,
        };
        conn.on_read_step(node, channel, Ok(step))
            .expect("no log failure here");
        true
    }
}

/// Takes every delivery, answers every request and reads every read to
/// its end, until nothing moves.
fn settle(conn: &mut State, node: &mut Model, driver: &mut Driver) {
    driver.run(conn, node);
    for _ in 0..100_000 {
        let progressed = if let Some(d) = node.queue.pop_front() {
            conn.on_delivery(node, d);
            true
        } else if std::mem::take(&mut node.lagged) {
            conn.on_lagged(node);
            true
        } else if let Some((channel, ticket, planned)) = driver.plans.pop_front() {
            conn.on_answer(
                node,
                Answer::Planned {
                    channel,
                    ticket,
                    result: Ok(planned),
                },
            )
            .expect("a plan's answer never closes");
            true
        } else if let Some((channel, ticket, from, target, next)) = driver.probes.pop_front() {
            conn.on_answer(
                node,
                Answer::Probed {
                    channel,
                    ticket,
                    from,
                    target,
                    result: Ok(next),
                },
            )
            .expect("a probe's answer never closes");
            true
        } else {
            let channels: Vec<Channel> = driver.reads.keys().copied().collect();
            channels.into_iter().any(|c| driver.read(conn, node, c))
        };
        driver.run(conn, node);
        if !progressed {
            return;
        }
    }
}
