//! The window's bounds and reads: what it holds after pushes, evictions,
//! holes and a start-up fill, and what a read or probe may conclude.

use chrono::Utc;

use super::*;
use crate::event::{ChannelMessage, EventData, Member};

fn message(channel: Id, seq: u64) -> Arc<Recent> {
    Arc::new(Recent::encode(StoredEvent {
        seq,
        time: Utc::now(),
        id: Id::new_v4(),
        channel: Channel::Chat(channel),
        data: EventData::ChannelMessage(ChannelMessage {
            channel_id: channel,
            message_id: Id::new_v4(),
            user_id: Id::new_v4(),
            username: None,
            content: format!("m{seq}"),
        }),
        raw_data: None,
    }))
}

const DAY: Duration = Duration::from_secs(86_400);

fn seqs(batch: &Batch) -> Vec<u64> {
    batch.events.iter().map(|e| e.event.seq).collect()
}

#[test]
fn reads_one_channel_in_order_and_skips_holes() {
    let (a, b) = (Id::new_v4(), Id::new_v4());
    let window = Window::new(10, 100, usize::MAX, DAY);
    window.push(message(a, 11));
    window.push(message(b, 12));
    window.skip(13);
    window.push(message(a, 14));
    window.skip(15);
    assert!(window.holds_after(10));
    assert!(window.holds_after(15));
    assert!(!window.holds_after(9));
    assert!(
        !window.holds_after(16),
        "past the end is the stream's business"
    );

    let batch = window.read_after(Channel::Chat(a), 10, 10, 0).unwrap();
    assert_eq!(seqs(&batch), vec![11, 14]);
    assert!(batch.at_end);
    assert_eq!(batch.through, 15, "the hole at the end is read too");

    let batch = window.read_after(Channel::Chat(a), 10, 1, 0).unwrap();
    assert_eq!(seqs(&batch), vec![11]);
    assert!(!batch.at_end);
    assert_eq!(batch.through, 11);

    assert_eq!(window.next_of(Channel::Chat(a), 12), Some(Some(14)));
    assert_eq!(window.next_of(Channel::Chat(b), 13), Some(None));
    assert_eq!(window.next_of(Channel::Chat(a), 99), Some(None));
    assert_eq!(window.next_of(Channel::Chat(a), 10), None);
}

#[test]
fn evicts_by_count_and_bytes_and_sends_old_reads_to_the_stream() {
    let a = Id::new_v4();
    let window = Window::new(0, 3, usize::MAX, DAY);
    for seq in 1..=5 {
        window.push(message(a, seq));
    }
    assert!(window.holds_after(2));
    assert!(!window.holds_after(1));
    assert!(window.read_after(Channel::Chat(a), 1, 10, 0).is_none());
    assert_eq!(
        seqs(&window.read_after(Channel::Chat(a), 2, 10, 0).unwrap()),
        vec![3, 4, 5]
    );

    let small = Window::new(0, 100, 3 * cost(message(a, 1).frame.len()), DAY);
    for seq in 1..=5 {
        small.push(message(a, seq));
    }
    assert!(small.holds_after(2) && !small.holds_after(1));
}

#[test]
fn a_fill_goes_in_front_as_far_as_the_bounds_allow() {
    let a = Id::new_v4();
    let window = Window::new(10, 4, usize::MAX, DAY);
    window.push(message(a, 11));
    let older: Vec<_> = (5..=10).map(|seq| message(a, seq)).collect();
    window.prepend(4, older);
    // Room for three more: 8, 9, 10; 7 did not fit, so the window starts after it.
    assert!(window.holds_after(7));
    assert!(!window.holds_after(6));
    let batch = window.read_after(Channel::Chat(a), 7, 10, 0).unwrap();
    assert_eq!(seqs(&batch), vec![8, 9, 10, 11]);

    let roomy = Window::new(10, 100, usize::MAX, DAY);
    roomy.prepend(2, vec![message(a, 4), message(a, 9)]);
    assert!(
        roomy.holds_after(2),
        "a read with holes covers its whole range"
    );
    assert_eq!(
        seqs(&roomy.read_after(Channel::Chat(a), 2, 10, 0).unwrap()),
        vec![4, 9]
    );

    // Not older than the window: refused.
    roomy.prepend(0, vec![message(a, 11)]);
    assert!(!roomy.holds_after(1));
}

#[test]
fn a_restart_forgets_everything_and_stales_reads() {
    let a = Id::new_v4();
    let window = Window::new(0, 10, usize::MAX, DAY);
    window.push(message(a, 1));
    let generation = window.generation();
    window.restart(3);
    assert!(window
        .read_after(Channel::Chat(a), 0, 10, generation)
        .is_none());
    assert_ne!(window.generation(), generation);
    assert!(window.holds_after(3));
    assert!(!window.holds_after(2));
}

#[test]
fn standing_changes_are_the_users_membership_events_in_range() {
    let (a, user) = (Id::new_v4(), Id::new_v4());
    let window = Window::new(0, 10, usize::MAX, DAY);
    window.push(message(a, 1));
    let joined = Arc::new(Recent::encode(StoredEvent {
        seq: 2,
        time: Utc::now(),
        id: Id::new_v4(),
        channel: Channel::Chat(a),
        data: EventData::MemberJoined(Member {
            channel_id: a,
            user_id: user,
            username: None,
        }),
        raw_data: None,
    }));
    window.push(joined);
    window.push(message(a, 3));
    assert_eq!(window.standing_changes(a, user, 0, 3), Some(true));
    assert_eq!(window.standing_changes(a, user, 2, 3), Some(false));
    assert_eq!(window.standing_changes(a, Id::new_v4(), 0, 3), Some(false));
    assert_eq!(window.standing_changes(a, user, 0, 4), None, "past the end");
}

#[test]
fn nothing_the_stream_may_have_dropped_is_served() {
    let a = Id::new_v4();
    let window = Window::new(0, 100, usize::MAX, Duration::from_secs(60));
    let mut old = message(a, 1).event.clone();
    old.time = Utc::now() - chrono::Duration::seconds(61);
    window.push(Arc::new(Recent::encode(old)));
    window.push(message(a, 2));
    assert!(!window.holds_after(0), "seq 1 is past the retention");
    assert!(window.holds_after(1));
    assert_eq!(window.next_of(Channel::Chat(a), 1), None);

    window.drop_before(3);
    assert!(!window.holds_after(1));
    assert!(window.holds_after(2));
}
