//! The handover rules without I/O: unit tests for each rule, and a
//! property test that drives one subscription through random interleavings
//! of publishes, live deliveries, lag, log reads and flushes against a model
//! log, and checks that every event arrives exactly once, in order, with a
//! bounded buffer. Over 500 lines: a test per rule, the model world of the
//! property test, and the standing-over-time cases.

use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::access::Standing;
use crate::envelope::test_message as message;
use crate::event::{ChannelDeleted, EventData, Member};

fn chat() -> (Channel, Id) {
    let id = Id::new_v4();
    (Channel::Chat(id), id)
}

/// The hub's delivery of `event`, as the router makes it.
fn delivery(event: &StoredEvent) -> Arc<Delivery> {
    Arc::new(crate::gateway::router::deliver(event))
}

fn rules(user: Id) -> Rules {
    Rules {
        user,
        replay_buffer: REPLAY_BUFFER,
    }
}

/// The `seq`s of the event frames among `actions`, in order.
fn written_seqs(actions: &Actions) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Write(Frame::Live(d)) => d.seq,
            Action::Write(Frame::Replayed(text)) => seq_of(text),
            _ => None,
        })
        .collect()
}

fn seq_of(text: &Text) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(text.as_bytes()).ok()?;
    v["seq"].as_u64()
}

fn frame_types(actions: &Actions) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Write(Frame::Plain(text)) => {
                let v: serde_json::Value = serde_json::from_slice(text.as_bytes()).ok()?;
                v["type"].as_str().map(str::to_string)
            }
            Action::Write(_) => Some("event".into()),
            _ => None,
        })
        .collect()
}

#[test]
fn live_writes_each_seq_once_and_moves_the_cursor() {
    let (ch, _) = chat();
    let r = rules(Id::new_v4());
    let mut sub = Subscription::live(ch, 10);
    let mut out = Actions::new();
    for seq in [9, 10, 11, 11, 12, 5, 13] {
        sub.on_live(&r, delivery(&message(ch, seq)), &mut out);
    }
    assert_eq!(written_seqs(&out), vec![11, 12, 13]);
    assert_eq!(sub.cursor(), 13);
    // Written is not received: the session keeps what the client confirmed.
    assert_eq!(sub.session_cursor(), 10);
    sub.on_probe_sent();
    sub.on_live(&r, delivery(&message(ch, 14)), &mut out);
    assert_eq!(sub.session_cursor(), 10, "the probe is not answered yet");
    sub.on_probe_answered();
    assert_eq!(sub.session_cursor(), 13, "14 was written after the probe");
    // An ack wins over the stack's confirmation.
    sub.on_ack(11);
    assert_eq!(sub.session_cursor(), 11);
}

#[test]
fn acks_are_capped_at_the_cursor_and_never_go_back() {
    let (ch, _) = chat();
    let mut sub = Subscription::live(ch, 7);
    assert!(sub.on_ack(100));
    assert_eq!(sub.session_cursor(), 7);
    assert!(!sub.on_ack(3));
    assert!(!sub.on_ack(7));
    assert_eq!(sub.session_cursor(), 7);
}

#[test]
fn a_replay_hands_over_to_the_buffer_without_gap_or_duplicate() {
    let (ch, _) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::replaying(ch, 2, 5, &mut out);
    assert!(matches!(out.pop_front(), Some(Action::Read { after: 2 })));
    // Live events arrive while the replay runs: 5 overlaps it, 6 and 7 follow.
    for seq in [5, 6, 7] {
        sub.on_live(&r, delivery(&message(ch, seq)), &mut out);
    }
    assert!(out.is_empty(), "buffered while replaying");
    for seq in [3, 4, 5] {
        sub.on_read(&r, seq, 5 - seq, Some(&message(ch, seq)), &mut out);
    }
    assert!(!sub.is_replaying());
    assert_eq!(written_seqs(&out), vec![3, 4, 5, 6, 7]);
    assert_eq!(
        frame_types(&out),
        ["event", "event", "event", "replayed", "event", "event"]
    );
    assert!(out.iter().any(|a| matches!(a, Action::StopRead)));
}

#[test]
fn an_idle_read_probes_then_finishes_past_the_target() {
    let (ch, _) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::replaying(ch, 0, 40, &mut out);
    out.clear();
    sub.on_read(&r, 10, 0, Some(&message(ch, 10)), &mut out);
    assert!(matches!(
        out.back(),
        Some(Action::Probe {
            from: 11,
            target: 40
        })
    ));
    // A stale answer (the read moved on) is ignored.
    sub.on_probe(&r, 5, 40, None, &mut out);
    assert!(sub.is_replaying());
    // So is one asked under another target: the idle read asks again.
    out.clear();
    sub.on_probe(&r, 11, 39, None, &mut out);
    assert!(sub.is_replaying());
    assert!(matches!(
        out.back(),
        Some(Action::Probe {
            from: 11,
            target: 40
        })
    ));
    // The channel's next event is past the target: done.
    sub.on_probe(&r, 11, 40, Some(41), &mut out);
    assert!(!sub.is_replaying());
}

#[test]
fn an_empty_replay_with_an_unknown_target_measures_it() {
    let (ch, _) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::live(ch, 4);
    sub.on_lagged(&mut out);
    assert!(matches!(out.pop_front(), Some(Action::Read { after: 4 })));
    sub.on_read_idle(&r, &mut out);
    assert!(matches!(out.pop_front(), Some(Action::MeasureTarget)));
    sub.on_target(&r, 4, &mut out);
    assert!(!sub.is_replaying());
    // An unannounced replay ends without `replayed`.
    assert!(frame_types(&out).is_empty());
}

#[test]
fn a_full_buffer_is_dropped_and_the_target_measured_again() {
    let (ch, _) = chat();
    let r = Rules {
        user: Id::new_v4(),
        replay_buffer: 2,
    };
    let mut out = Actions::new();
    let mut sub = Subscription::replaying(ch, 0, 1, &mut out);
    out.clear();
    for seq in 2..=4 {
        sub.on_live(&r, delivery(&message(ch, seq)), &mut out);
    }
    // The target (1) is forgotten: reading 1 does not end the replay.
    sub.on_read(&r, 1, 0, Some(&message(ch, 1)), &mut out);
    assert!(sub.is_replaying());
    assert!(matches!(out.back(), Some(Action::MeasureTarget)));
    sub.on_target(&r, 4, &mut out);
    assert!(matches!(
        out.back(),
        Some(Action::Probe { from: 2, target: 4 })
    ));
    for seq in 2..=4 {
        sub.on_read(&r, seq, 4 - seq, Some(&message(ch, seq)), &mut out);
    }
    assert!(!sub.is_replaying());
    assert_eq!(written_seqs(&out), vec![1, 2, 3, 4]);
}

#[test]
fn typing_passes_through_and_nothing_follows_a_cut() {
    let (ch, channel_id) = chat();
    let user = Id::new_v4();
    let r = rules(user);
    let mut out = Actions::new();
    let mut sub = Subscription::live(ch, 0);
    let typing = Arc::new(Delivery::bare(ch, None, Text::from_static("{}")));
    sub.on_live(&r, typing.clone(), &mut out);
    assert!(matches!(
        out.pop_front(),
        Some(Action::Write(Frame::Plain(_)))
    ));
    let mut left = message(ch, 1);
    left.data = EventData::MemberLeft(Member {
        channel_id,
        user_id: user,
        username: None,
    });
    sub.on_live(&r, delivery(&left), &mut out);
    sub.on_live(&r, delivery(&message(ch, 2)), &mut out);
    sub.on_live(&r, typing, &mut out);
    assert_eq!(frame_types(&out), ["event", "unsubscribed"]);
    assert!(matches!(out.back(), Some(Action::End(EndReason::Left))));
    assert!(sub.is_ended());
}

#[test]
fn another_users_leave_does_not_cut() {
    let (ch, channel_id) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::live(ch, 0);
    let mut left = message(ch, 1);
    left.data = EventData::MemberLeft(Member {
        channel_id,
        user_id: Id::new_v4(),
        username: None,
    });
    sub.on_live(&r, delivery(&left), &mut out);
    assert!(!sub.is_ended());
}

#[test]
fn a_cut_in_a_replay_stops_the_read_and_ends() {
    let (ch, channel_id) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::replaying(ch, 0, 9, &mut out);
    out.clear();
    let mut deleted = message(ch, 3);
    deleted.data = EventData::ChannelDeleted(ChannelDeleted { channel_id });
    sub.on_read(&r, 3, 6, Some(&deleted), &mut out);
    let kinds: Vec<_> = out.iter().map(std::mem::discriminant).collect();
    assert_eq!(kinds.len(), 4, "{out:?}");
    assert!(matches!(out[1], Action::StopRead));
    assert!(matches!(out[3], Action::End(EndReason::ChannelDeleted)));
    sub.on_read(&r, 4, 5, Some(&message(ch, 4)), &mut out);
    assert!(matches!(out.back(), Some(Action::StopRead)));
}

#[test]
fn a_pending_cut_ends_a_restored_subscription_when_its_replay_does() {
    let (ch, _) = chat();
    let r = rules(Id::new_v4());
    let mut out = Actions::new();
    let mut sub = Subscription::replaying(ch, 0, 2, &mut out);
    sub.cut_when_replayed(EndReason::Banned, &mut out);
    assert!(sub.is_replaying());
    out.clear();
    sub.on_read(&r, 2, 0, Some(&message(ch, 2)), &mut out);
    assert_eq!(frame_types(&out), ["event", "replayed", "unsubscribed"]);
    assert!(matches!(out.back(), Some(Action::End(EndReason::Banned))));
    // Without a replay, the cut is immediate.
    let mut live = Subscription::live(ch, 0);
    live.cut_when_replayed(EndReason::ChannelDeleted, &mut out);
    assert!(live.is_ended());
}

/// One step of the simulation.
#[derive(Clone, Debug)]
enum Step {
    /// Append an event to the log; `ours`: of the subscription's channel.
    Publish { ours: bool },
    /// The connection takes one delivery from its queue.
    TakeLive,
    /// The read returns its next item, if it has one.
    TakeRead,
    /// The connection sees the lag flag.
    Lagged,
    /// A receipt probe (ping) is queued after what was written so far.
    Probe,
    /// The client, having read everything before the probe, answers it.
    Pong,
    /// The oldest log probe in flight is answered (with what the log held
    /// when it was asked).
    AnswerProbe,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(|ours| Step::Publish { ours }),
        3 => Just(Step::TakeLive),
        3 => Just(Step::TakeRead),
        1 => Just(Step::Lagged),
        1 => Just(Step::Probe),
        1 => Just(Step::Pong),
        2 => Just(Step::AnswerProbe),
    ]
}

/// The driver and the log, modelled: a log of events (some of another
/// channel), a bounded queue with a lag flag like the hub's mailbox, and an
/// ordered read of the channel.
struct World {
    channel: Channel,
    log: Vec<StoredEvent>,
    queue: VecDeque<Arc<Delivery>>,
    queue_capacity: usize,
    lagged: bool,
    /// The read in progress: the last `seq` it returned.
    read: Option<u64>,
    written: Vec<u64>,
    ended: bool,
    /// Log probes asked and not answered yet: `(from, target, next)`, the
    /// answer as the log had it when asked; half are answered at once.
    probes: VecDeque<(u64, u64, Option<u64>)>,
    answer_probes_at_once: bool,
}

impl World {
    fn last_seq(&self) -> u64 {
        self.log.last().map_or(0, |e| e.seq)
    }

    fn ours_after(&self, after: u64) -> impl Iterator<Item = &StoredEvent> {
        self.log
            .iter()
            .filter(move |e| e.channel == self.channel && e.seq > after)
    }

    fn publish(&mut self, ours: bool) {
        let channel = if ours {
            self.channel
        } else {
            Channel::Chat(Id::new_v4())
        };
        let event = message(channel, self.last_seq() + 1);
        if ours {
            // As the hub does: once a stored event was dropped, none is
            // queued until the connection has taken the lag flag, so the
            // queue never holds events past a gap.
            if !self.lagged && self.queue.len() < self.queue_capacity {
                self.queue.push_back(delivery(&event));
            } else {
                self.lagged = true;
            }
        }
        self.log.push(event);
    }

    /// Carries out the machine's actions, answering its requests at once.
    fn settle(&mut self, sub: &mut Subscription, r: &Rules, out: &mut Actions) {
        while let Some(action) = out.pop_front() {
            match action {
                Action::Write(Frame::Live(d)) => self.written.extend(d.seq),
                Action::Write(Frame::Replayed(text)) => self.written.extend(seq_of(&text)),
                Action::Write(Frame::Plain(_)) => {}
                Action::Read { after } => {
                    self.read = Some(after);
                    if self.ours_after(after).next().is_none() {
                        sub.on_read_idle(r, out);
                    }
                }
                Action::StopRead => self.read = None,
                Action::Presence => sub.on_presence_sent(0),
                Action::MeasureTarget => {
                    let last = self.last_seq();
                    sub.on_target(r, last, out);
                }
                Action::Probe { from, target } => {
                    let next = self
                        .ours_after(from.saturating_sub(1))
                        .next()
                        .map(|e| e.seq);
                    if self.answer_probes_at_once {
                        sub.on_probe(r, from, target, next, out);
                    } else {
                        self.probes.push_back((from, target, next));
                    }
                }
                Action::End(_) => self.ended = true,
            }
        }
    }

    /// Feeds the read's next item, if the log has one.
    fn take_read(&mut self, sub: &mut Subscription, r: &Rules, out: &mut Actions) -> bool {
        let Some(after) = self.read else {
            return false;
        };
        let Some(event) = self.ours_after(after).next().cloned() else {
            return false;
        };
        let pending = self.ours_after(event.seq).count() as u64;
        self.read = Some(event.seq);
        sub.on_read(r, event.seq, pending, Some(&event), out);
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every event of the channel after the start arrives exactly once and
    /// in order, whatever the interleaving, and the buffer stays bounded.
    #[test]
    fn every_seq_exactly_once_in_order(
        history in proptest::collection::vec(any::<bool>(), 0..30),
        start_back in 0usize..40,
        replay in any::<bool>(),
        queue_capacity in 1usize..6,
        replay_buffer in 1usize..6,
        answer_probes_at_once in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..300),
    ) {
        let (channel, _) = chat();
        let r = Rules { user: Id::new_v4(), replay_buffer };
        let mut world = World {
            channel,
            log: Vec::new(),
            queue: VecDeque::new(),
            queue_capacity,
            lagged: false,
            read: None,
            written: Vec::new(),
            ended: false,
            probes: VecDeque::new(),
            answer_probes_at_once,
        };
        for ours in history {
            world.publish(ours);
        }
        // The subscription joins the hub now: later events reach the queue.
        let joined = world.last_seq();
        let after = if replay { joined.saturating_sub(start_back as u64) } else { joined };
        let mut out = Actions::new();
        let mut sub = if replay {
            Subscription::replaying(channel, after, joined, &mut out)
        } else {
            Subscription::live(channel, joined)
        };
        world.settle(&mut sub, &r, &mut out);
        // What the client confirmed: its start, then what it read before
        // the last answered probe; `probe`: frames written before the
        // probe in flight.
        let mut confirmed = after;
        let mut probe: Option<usize> = None;

        for step in steps {
            match step {
                Step::Publish { ours } => world.publish(ours),
                Step::TakeLive => {
                    if let Some(d) = world.queue.pop_front() {
                        sub.on_live(&r, d, &mut out);
                    }
                }
                Step::TakeRead => {
                    world.take_read(&mut sub, &r, &mut out);
                }
                Step::Lagged => {
                    if std::mem::take(&mut world.lagged) {
                        sub.on_lagged(&mut out);
                    }
                }
                // One probe in flight at a time, as the connection does.
                Step::Probe if probe.is_none() => {
                    sub.on_probe_sent();
                    probe = Some(world.written.len());
                }
                Step::Probe => {}
                Step::Pong => {
                    if let Some(read) = probe.take() {
                        sub.on_probe_answered();
                        confirmed = world.written[..read].last().copied().unwrap_or(confirmed);
                    }
                }
                Step::AnswerProbe => {
                    if let Some((from, target, next)) = world.probes.pop_front() {
                        sub.on_probe(&r, from, target, next, &mut out);
                    }
                }
            }
            // The session never keeps a seq the client was not shown to have.
            prop_assert_eq!(sub.session_cursor(), confirmed);
            world.settle(&mut sub, &r, &mut out);
            if let Phase::Replaying(replay) = &sub.phase {
                prop_assert!(replay.buffer.len() <= replay_buffer);
            }
        }
        // Publishing stops; the connection drains everything.
        for _ in 0..10_000 {
            let progressed = if let Some(d) = world.queue.pop_front() {
                sub.on_live(&r, d, &mut out);
                true
            } else if std::mem::take(&mut world.lagged) {
                sub.on_lagged(&mut out);
                true
            } else if let Some((from, target, next)) = world.probes.pop_front() {
                sub.on_probe(&r, from, target, next, &mut out);
                true
            } else {
                world.take_read(&mut sub, &r, &mut out)
            };
            world.settle(&mut sub, &r, &mut out);
            if !progressed {
                break;
            }
        }
        prop_assert!(!sub.is_replaying(), "the replay ends once the log is read");
        prop_assert!(!world.ended);
        let expected: Vec<u64> = world.ours_after(after).map(|e| e.seq).collect();
        prop_assert_eq!(&world.written, &expected);
    }
}

fn about(channel: Channel, seq: u64, data: EventData) -> StoredEvent {
    let mut event = message(channel, seq);
    event.data = data;
    event
}

#[test]
fn a_following_replay_withholds_the_time_away_and_goes_on() {
    let (ch, channel_id) = chat();
    let user = Id::new_v4();
    let r = rules(user);
    let member = |user_id| Member {
        channel_id,
        user_id,
        username: None,
    };
    let ban = |on: bool| {
        let change = crate::event::BanChange {
            channel_id,
            user_id: Some(user),
            motive: "m".into(),
        };
        if on {
            EventData::UserBanned(change)
        } else {
            EventData::UserUnbanned(change)
        }
    };
    let log = vec![
        message(ch, 1), // before joining: withheld
        about(ch, 2, EventData::MemberJoined(member(user))),
        message(ch, 3),                                              // shown
        about(ch, 4, ban(true)),                                     // about the user: shown
        message(ch, 5),                                              // banned: withheld
        about(ch, 6, EventData::MemberJoined(member(Id::new_v4()))), // another user: withheld
        about(ch, 7, ban(false)),                                    // shown
        message(ch, 8), // unbanned but not a member: withheld
        about(ch, 9, EventData::MemberJoined(member(user))),
        message(ch, 10), // shown
    ];
    let following = Following {
        standing: Standing::default(),
        granted: false,
        final_cut: None,
    };
    let mut out = Actions::new();
    let mut sub = Subscription::replaying_following(ch, 0, 10, Some(following), &mut out);
    out.clear();
    for event in &log {
        sub.on_read(&r, event.seq, 10 - event.seq, Some(event), &mut out);
    }
    assert_eq!(written_seqs(&out), vec![2, 3, 4, 7, 9, 10]);
    assert!(!sub.is_replaying() && !sub.is_ended(), "on to live");
    assert_eq!(
        frame_types(&out).last().map(String::as_str),
        Some("replayed")
    );

    // The same range when the ban at 4 is the user's current standing: the
    // replay ends there.
    let following = Following {
        final_cut: Some(4),
        ..following
    };
    let mut out = Actions::new();
    let mut sub = Subscription::replaying_following(ch, 0, 10, Some(following), &mut out);
    out.clear();
    for event in &log {
        sub.on_read(&r, event.seq, 10 - event.seq, Some(event), &mut out);
    }
    assert_eq!(written_seqs(&out), vec![2, 3, 4]);
    assert!(matches!(out.back(), Some(Action::StopRead)));
    assert!(sub.is_ended());

    // A token grant shows what came before joining and after the unban.
    let granted = Following {
        granted: true,
        final_cut: None,
        ..following
    };
    let mut out = Actions::new();
    let mut sub = Subscription::replaying_following(ch, 0, 10, Some(granted), &mut out);
    out.clear();
    for event in &log {
        sub.on_read(&r, event.seq, 10 - event.seq, Some(event), &mut out);
    }
    assert_eq!(written_seqs(&out), vec![1, 2, 3, 4, 7, 8, 9, 10]);
}
