//! The connection's rules without a socket, a runtime or NATS: unit tests
//! of planning beside live delivery, stale answers, restores, receipts and
//! a recreated stream, and a property test that drives a connection with
//! two subscriptions through random interleavings of publishes, live
//! deliveries, lag, reads, late log answers and resubscribes against a
//! model node, and checks that every subscription gets every event of its
//! channel after its start exactly once, in order. Over 600 lines on
//! purpose: the model node and driver the property test needs, beside a
//! unit test per rule; they are read together.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::access::Standing;
use crate::envelope::StoredEvent;
use crate::event::{ChannelMessage, EventData};
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
    fn join(&mut self, channel: Channel) -> u64 {
        self.joined.insert(channel);
        self.last_seq()
    }
    fn leave(&mut self, channel: Channel) {
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

fn message(channel: Channel, seq: u64) -> StoredEvent {
    let channel_id = match channel {
        Channel::Chat(id) => id,
        _ => Id::new_v4(),
    };
    StoredEvent {
        seq,
        time: Utc::now(),
        id: Id::new_v4(),
        channel,
        data: EventData::ChannelMessage(ChannelMessage {
            channel_id,
            message_id: Id::new_v4(),
            user_id: Id::new_v4(),
            username: None,
            content: format!("m{seq}"),
        }),
        raw_data: None,
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
    State::new(1, claims, bounds, 20)
}

fn subscribe(channel: Channel, since_seq: Option<u64>, request_id: &str) -> ClientFrame {
    ClientFrame::Subscribe {
        channel,
        since: since_seq.map(Since::Seq),
        epoch: None,
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
            .map(|(channel, seq)| (channel, Cursor { seq, epoch: None }))
            .collect(),
        legacy: false,
        written_at: Some(Utc::now().timestamp()),
    }
}

#[test]
fn a_replay_the_log_must_plan_waits_while_the_other_subscription_goes_on() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let (live, old) = (chat(), chat());
    for _ in 0..3 {
        node.publish(old);
    }
    conn.on_frame(&mut node, subscribe(live, None, "live"))
        .unwrap();
    conn.on_frame(&mut node, subscribe(old, Some(0), "old"))
        .unwrap();
    let plan = effects(&mut conn)
        .into_iter()
        .find_map(|e| match e {
            Effect::Plan {
                channel,
                ticket,
                request,
                ..
            } => Some((channel, ticket, request)),
            _ => None,
        })
        .expect("the replay's plan is asked of the log");
    written(&mut conn);

    // Meanwhile: live events of both channels, and a ping.
    let l = node.publish(live);
    let o = node.publish(old);
    while let Some(d) = node.queue.pop_front() {
        conn.on_delivery(&mut node, d);
    }
    conn.on_frame(&mut node, ClientFrame::Ping { request_id: None })
        .unwrap();
    let meanwhile = written(&mut conn);
    assert_eq!(seqs_of(&meanwhile, live), [l]);
    assert!(seqs_of(&meanwhile, old).is_empty(), "{meanwhile:?}");
    assert!(meanwhile.iter().any(|f| f["type"] == "pong"));

    // The plan comes back: `subscribed`, then the replay reads the log.
    let (channel, ticket, request) = plan;
    let planned = node.plan(&request);
    conn.on_answer(
        &mut node,
        Answer::Planned {
            channel,
            ticket,
            result: Ok(planned),
        },
    )
    .unwrap();
    let frames = written(&mut conn);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["data"]["request_id"], "old");
    let read = effects(&mut conn).into_iter().find_map(|e| match e {
        Effect::Read { channel, after } => Some((channel, after)),
        _ => None,
    });
    assert_eq!(read, Some((old, 0)));
    for event in node.of_channel_after(old, 0).cloned().collect::<Vec<_>>() {
        let pending = node.of_channel_after(old, event.seq).count() as u64;
        let step = Step::Window(Arc::new(Recent::encode(event)), pending);
        conn.on_read_step(&mut node, old, Ok(step)).unwrap();
    }
    let frames = written(&mut conn);
    // Every event once: the one that came live meanwhile is not repeated.
    assert_eq!(seqs_of(&frames, old), [1, 2, 3, o]);
    assert!(frames.iter().any(|f| f["type"] == "replayed"));
}

#[test]
fn an_answer_for_a_subscription_that_is_gone_is_dropped() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let c = chat();
    node.publish(c);
    conn.on_frame(&mut node, subscribe(c, Some(0), "first"))
        .unwrap();
    let first = effects(&mut conn);
    conn.on_frame(
        &mut node,
        ClientFrame::Unsubscribe {
            channel: c,
            request_id: None,
        },
    )
    .unwrap();
    assert!(!node.joined.contains(&c), "left the hub");
    conn.on_frame(&mut node, subscribe(c, None, "again"))
        .unwrap();
    written(&mut conn);
    for effect in first {
        if let Effect::Plan {
            channel,
            ticket,
            request,
            ..
        } = effect
        {
            let planned = node.plan(&request);
            conn.on_answer(
                &mut node,
                Answer::Planned {
                    channel,
                    ticket,
                    result: Ok(planned),
                },
            )
            .unwrap();
        }
    }
    assert!(
        written(&mut conn).is_empty(),
        "the old plan started nothing"
    );
    assert!(node.joined.contains(&c), "the new subscription stays");
}

#[test]
fn restores_go_on_in_the_background_and_keep_their_cursors_meanwhile() {
    let mut node = Model::new(false);
    let (kept, banned, foreign) = (chat(), chat(), Channel::User(Id::new_v4()));
    for c in [kept, banned, kept] {
        node.publish(c);
    }
    if let Channel::Chat(id) = banned {
        node.standings.insert(
            id,
            Standing {
                member: false,
                banned: true,
                channel_deleted: false,
            },
        );
    }
    let mut conn = state();
    let cursors = BTreeMap::from([(kept, 1), (banned, 0), (foreign, 0)]);
    node.session = cursors.clone();
    conn.open(&mut node, opened(cursors));
    let frames = written(&mut conn);
    assert_eq!(frames[0]["type"], "hello", "hello first, at once");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["data"]["code"] == "forbidden"),
        "another user's channel is not restored: {frames:?}"
    );
    let plans: Vec<Effect> = effects(&mut conn)
        .into_iter()
        .filter(|e| matches!(e, Effect::Plan { .. }))
        .collect();
    assert_eq!(plans.len(), 2, "both chat channels are planned");
    // What the connection wrote removed the foreign channel and left the
    // others (still being planned).
    node.saves.clear();
    conn.on_frame(&mut node, subscribe(Channel::Global, None, "g"))
        .unwrap();
    assert!(!node.saves.is_empty(), "a subscribe is saved at once");
    assert_eq!(node.session.get(&kept), Some(&1));
    assert_eq!(node.session.get(&banned), Some(&0));
    assert_eq!(node.session.get(&foreign), None);
    assert_eq!(node.session.get(&Channel::Global), Some(&node.last_seq()));

    let mut driver = Driver::default();
    for effect in plans {
        if let Effect::Plan {
            channel,
            ticket,
            request,
            ..
        } = effect
        {
            driver
                .plans
                .push_back((channel, ticket, node.plan(&request)));
        }
    }
    settle(&mut conn, &mut node, &mut driver);
    let frames = written(&mut conn);
    assert_eq!(seqs_of(&frames, kept), [3]);
    // The banned one replays up to its end, then ends.
    assert_eq!(seqs_of(&frames, banned), [2]);
    assert!(frames.iter().any(|f| f["type"] == "unsubscribed"
        && f["data"]["channel"] == banned.to_string()
        && f["data"]["reason"] == "banned"));
}

#[test]
fn a_cursor_is_saved_once_the_client_confirmed_it() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let c = chat();
    conn.on_frame(&mut node, subscribe(c, None, "s")).unwrap();
    written(&mut conn);
    let seq = node.publish(c);
    let delivery = node.queue.pop_front().expect("queued");
    conn.on_delivery(&mut node, delivery);
    let (_, touched) = conn.outbox().take_written();
    conn.on_flushed(touched);
    // Written, not confirmed: the session keeps the old cursor.
    let now = tokio::time::Instant::now() + Duration::from_secs(1);
    conn.on_timeout(&mut node, now).unwrap();
    assert_eq!(node.session.get(&c), Some(&0));
    // The probe (a ping after the frame) went out; its pong confirms.
    let (frames, _) = conn.outbox().take_written();
    let probe = frames
        .iter()
        .find(|(opcode, payload)| *opcode == 0x9 && payload.len() == 8)
        .expect("a receipt probe")
        .1
        .clone();
    conn.on_pong(&probe);
    conn.on_timeout(&mut node, now + Duration::from_secs(1))
        .unwrap();
    assert_eq!(node.session.get(&c), Some(&seq));
}

#[test]
fn a_recreated_stream_restarts_every_subscription_a_planning_one_too() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let (live, planning) = (chat(), chat());
    node.publish(planning);
    conn.on_frame(&mut node, subscribe(live, None, "live"))
        .unwrap();
    conn.on_frame(&mut node, subscribe(planning, Some(0), "planning"))
        .unwrap();
    let stale = effects(&mut conn);
    written(&mut conn);
    node.log.clear();
    node.epoch = Epoch::created_at(Utc::now() + chrono::Duration::seconds(1));
    conn.on_stream_recreated(&mut node);
    let frames = written(&mut conn);
    for (channel, request_id) in [(live, None), (planning, Some("planning"))] {
        let subscribed = frames
            .iter()
            .find(|f| f["type"] == "subscribed" && f["data"]["channel"] == channel.to_string())
            .expect("told subscribed again");
        assert_eq!(subscribed["data"]["complete"], false);
        assert_eq!(subscribed["data"]["epoch"], node.epoch.to_string());
        assert_eq!(subscribed["data"]["request_id"].as_str(), request_id);
    }
    // The old plan's answer changes nothing now.
    for effect in stale {
        if let Effect::Plan {
            channel,
            ticket,
            request,
            ..
        } = effect
        {
            let planned = node.plan(&request);
            conn.on_answer(
                &mut node,
                Answer::Planned {
                    channel,
                    ticket,
                    result: Ok(planned),
                },
            )
            .unwrap();
        }
    }
    assert!(written(&mut conn).is_empty());
}

// ---------------------------------------------------------------------------
// the property test
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Move {
    /// An event is stored on channel 0, 1, or another one.
    Publish(u8),
    /// The connection takes one delivery from its queue.
    TakeLive,
    /// The connection sees the lag flag.
    Lagged,
    /// A read of channel 0 or 1 returns its next step.
    TakeRead(u8),
    /// The oldest plan in flight is answered (the log plans it now).
    AnswerPlan,
    /// The oldest probe in flight is answered (with the log as it was when
    /// it was asked).
    AnswerProbe,
    /// The client unsubscribes channel 0 or 1, if subscribed.
    Unsubscribe(u8),
    /// The client subscribes channel 0 or 1 from `back` events before the
    /// end, if not subscribed.
    Subscribe(u8, u8),
    /// The outbox is written to the client.
    Flush,
}

fn a_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (0u8..3).prop_map(Move::Publish),
        3 => Just(Move::TakeLive),
        1 => Just(Move::Lagged),
        3 => (0u8..2).prop_map(Move::TakeRead),
        2 => Just(Move::AnswerPlan),
        2 => Just(Move::AnswerProbe),
        1 => (0u8..2).prop_map(Move::Unsubscribe),
        1 => (0u8..2, 0u8..6).prop_map(|(c, back)| Move::Subscribe(c, back)),
        2 => Just(Move::Flush),
    ]
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
                Effect::PublishTyping(_) => {}
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

/// What the client saw: per channel, the subscription in progress (its
/// start) and the seqs it got; finished ones are checked as they end.
#[derive(Default)]
struct Client {
    /// request id → start (`since_seq`).
    asked: HashMap<String, u64>,
    current: HashMap<Channel, (u64, Vec<u64>)>,
    /// Subscriptions that ended: (channel, start, seqs).
    ended: Vec<(Channel, u64, Vec<u64>)>,
}

impl Client {
    fn read(&mut self, frames: Vec<Value>) -> Result<(), TestCaseError> {
        for frame in frames {
            let kind = frame["type"].as_str().unwrap_or_default();
            match kind {
                "subscribed" => {
                    let channel =
                        Channel::parse(frame["data"]["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let id = frame["data"]["request_id"].as_str().unwrap_or_default();
                    let start = self.asked.remove(id).unwrap_or(0);
                    prop_assert!(
                        !self.current.contains_key(&channel),
                        "subscribed twice: {}",
                        frame
                    );
                    self.current.insert(channel, (start, Vec::new()));
                }
                "unsubscribed" => {
                    let channel =
                        Channel::parse(frame["data"]["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if let Some((start, seqs)) = self.current.remove(&channel) {
                        self.ended.push((channel, start, seqs));
                    }
                }
                _ => {
                    if let Some(seq) = frame["seq"].as_u64() {
                        let channel = Channel::parse(frame["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let current = self.current.get_mut(&channel);
                        prop_assert!(
                            current.is_some(),
                            "an event outside a subscription: {}",
                            frame
                        );
                        if let Some((_, seqs)) = current {
                            seqs.push(seq);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_subscription_gets_its_events_exactly_once_in_order(
        window in any::<bool>(),
        queue_capacity in 1usize..6,
        history in proptest::collection::vec(0u8..3, 0..12),
        moves in proptest::collection::vec(a_move(), 0..250),
    ) {
        let mut node = Model::new(window);
        node.queue_capacity = queue_capacity;
        let channels = [chat(), chat()];
        let pick = |i: u8| if i < 2 { channels[i as usize] } else { chat() };
        for c in history {
            node.publish(pick(c));
        }
        let mut conn = state();
        conn.open(&mut node, opened(BTreeMap::new()));
        let (mut driver, mut client) = (Driver::default(), Client::default());
        let mut requests = 0u64;
        for next in moves {
            match next {
                Move::Publish(c) => {
                    node.publish(pick(c));
                }
                Move::TakeLive => {
                    if let Some(d) = node.queue.pop_front() {
                        conn.on_delivery(&mut node, d);
                    }
                }
                Move::Lagged => {
                    if std::mem::take(&mut node.lagged) {
                        conn.on_lagged(&mut node);
                    }
                }
                Move::TakeRead(c) => {
                    driver.read(&mut conn, &mut node, channels[c as usize]);
                }
                Move::AnswerPlan => {
                    if let Some((channel, ticket, planned)) = driver.plans.pop_front() {
                        conn.on_answer(&mut node, Answer::Planned { channel, ticket, result: Ok(planned) })
                            .expect("a plan's answer never closes");
                    }
                }
                Move::AnswerProbe => {
                    if let Some((channel, ticket, from, target, next)) = driver.probes.pop_front() {
                        conn.on_answer(&mut node, Answer::Probed { channel, ticket, from, target, result: Ok(next) })
                            .expect("a probe's answer never closes");
                    }
                }
                Move::Unsubscribe(c) => {
                    let channel = channels[c as usize];
                    if node.joined.contains(&channel) {
                        conn.on_frame(&mut node, ClientFrame::Unsubscribe { channel, request_id: None })
                            .expect("unsubscribe");
                    }
                }
                Move::Subscribe(c, back) => {
                    let channel = channels[c as usize];
                    if !node.joined.contains(&channel) {
                        requests += 1;
                        let id = format!("r{requests}");
                        let start = node.last_seq().saturating_sub(u64::from(back));
                        client.asked.insert(id.clone(), start);
                        conn.on_frame(&mut node, subscribe(channel, Some(start), &id)).expect("subscribe");
                    }
                }
                Move::Flush => {
                    client.read(written(&mut conn))?;
                }
            }
            driver.run(&mut conn, &node);
        }
        // Publishing stops; everything in flight is answered and read.
        settle(&mut conn, &mut node, &mut driver);
        client.read(written(&mut conn))?;
        prop_assert!(driver.reads.is_empty(), "every replay ends: {:?}", driver.reads);
        for (channel, (start, seqs)) in &client.current {
            let expected: Vec<u64> = node.of_channel_after(*channel, *start).map(|e| e.seq).collect();
            prop_assert_eq!(seqs, &expected, "channel {} from {}", channel, start);
        }
        for (channel, start, seqs) in &client.ended {
            let all: Vec<u64> = node.of_channel_after(*channel, *start).map(|e| e.seq).collect();
            prop_assert_eq!(seqs.as_slice(), &all[..seqs.len()], "ended {} from {}", channel, start);
        }
    }
}
