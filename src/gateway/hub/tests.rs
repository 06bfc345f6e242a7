//! The hub without sockets: a full queue flags lag for stored events and
//! drops typing, a restart moves the routed position back, and an inbox
//! wakes on a flag or a delivery and closes when its mailbox is dropped.

use super::*;
use std::time::Duration;

fn delivery(channel: Channel, seq: Option<u64>) -> Arc<Delivery> {
    Arc::new(Delivery::bare(channel, seq, Text::from_static("{}")))
}

#[test]
fn full_queues_flag_lag_for_stored_events_and_drop_typing() {
    let hub = Hub::new();
    let (mailbox, mut rx) = Mailbox::new(Id::new_v4(), 1);
    let ch = Channel::Chat(Id::new_v4());
    assert_eq!(hub.subscribe(ch, 1, false, mailbox.clone()), 0);
    assert_eq!(hub.dispatch(delivery(ch, Some(1))).queued, 1);
    assert_eq!(hub.dispatch(delivery(ch, Some(2))).lagged, 1);
    assert_eq!(hub.dispatch(delivery(ch, None)).typing_dropped, 1);
    // Room again, but the flag is up: nothing past the gap is queued.
    assert_eq!(rx.try_recv().unwrap().seq, Some(1));
    assert_eq!(hub.dispatch(delivery(ch, Some(3))).lagged, 1);
    assert!(rx.try_recv().is_none());
    assert!(mailbox.take_lagged());
    assert_eq!(hub.dispatch(delivery(ch, Some(4))).queued, 1);
    assert!(!mailbox.take_lagged());
    assert_eq!(rx.try_recv().unwrap().seq, Some(4));
    assert_eq!(hub.last_routed(), 4);
    // Other channels are not delivered.
    let other = Channel::Chat(Id::new_v4());
    assert_eq!(hub.dispatch(delivery(other, Some(5))).queued, 0);
    hub.unsubscribe(ch, 1);
    assert_eq!(hub.dispatch(delivery(ch, Some(6))).queued, 0);
}

#[test]
fn a_restart_moves_the_routed_position_back_and_flags_subscribers() {
    let hub = Hub::new();
    let (mailbox, _rx) = Mailbox::new(Id::new_v4(), 4);
    let (idle, _idle_rx) = Mailbox::new(Id::new_v4(), 4);
    let ch = Channel::Chat(Id::new_v4());
    hub.subscribe(ch, 1, false, mailbox.clone());
    hub.subscribe(Channel::Global, 1, false, mailbox.clone());
    hub.dispatch(delivery(ch, Some(40)));
    assert_eq!(hub.last_routed(), 40);
    hub.restart(3);
    assert_eq!(hub.last_routed(), 3);
    assert!(mailbox.take_restarted());
    assert!(!mailbox.take_restarted());
    assert!(!idle.take_restarted());
    assert_eq!(hub.subscribe(ch, 2, false, idle), 3);
}

#[tokio::test]
async fn a_flag_wakes_the_inbox_before_its_queued_deliveries() {
    let hub = Hub::new();
    let ch = Channel::Chat(Id::new_v4());
    let (mailbox, mut inbox) = Mailbox::new(Id::new_v4(), 1);
    hub.subscribe(ch, 1, false, mailbox.clone());
    let waiting = tokio::spawn(async move { (inbox.recv().await, inbox) });
    tokio::task::yield_now().await;
    assert_eq!(hub.dispatch(delivery(ch, Some(1))).queued, 1);
    let (first, mut inbox) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("woken")
        .expect("task");
    assert!(matches!(first, Wake::Delivery(_)));
    assert_eq!(hub.dispatch(delivery(ch, Some(2))).queued, 1);
    assert_eq!(
        hub.dispatch(delivery(ch, Some(3))).lagged,
        1,
        "the queue is full"
    );
    let woken = tokio::time::timeout(Duration::from_secs(60), inbox.recv())
        .await
        .expect("woken by the flag");
    assert!(
        matches!(woken, Wake::Flagged),
        "the flag comes before seq 2"
    );
    assert!(mailbox.take_lagged());
    let next = tokio::time::timeout(Duration::from_secs(60), inbox.recv())
        .await
        .expect("the queued delivery");
    assert!(matches!(next, Wake::Delivery(d) if d.seq == Some(2)));
}

#[tokio::test]
async fn an_inbox_wakes_on_a_delivery_gives_back_a_burst_and_closes_when_dropped() {
    let hub = Hub::new();
    let ch = Channel::Chat(Id::new_v4());
    let (mailbox, mut inbox) = Mailbox::new(Id::new_v4(), 1_000);
    hub.subscribe(ch, 1, false, mailbox.clone());
    let waiting = tokio::spawn(async move {
        let first = inbox.recv().await;
        (first, inbox)
    });
    tokio::task::yield_now().await;
    hub.dispatch(delivery(ch, Some(1)));
    let (first, mut inbox) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("woken by the delivery")
        .expect("task");
    let Wake::Delivery(first) = first else {
        panic!("woken by a flag, not the delivery");
    };
    assert_eq!(first.seq, Some(1));

    for seq in 2..=500 {
        assert_eq!(hub.dispatch(delivery(ch, Some(seq))).queued, 1);
    }
    assert!(mailbox.queue().capacity() >= 499);
    for seq in 2..=500 {
        assert_eq!(inbox.try_recv().map(|d| d.seq), Some(Some(seq)));
    }
    assert!(inbox.try_recv().is_none());
    assert_eq!(
        mailbox.queue().capacity(),
        0,
        "the burst's storage is given back"
    );

    drop(inbox);
    assert_eq!(hub.dispatch(delivery(ch, Some(501))).queued, 0);
}

/// Every connection has a mailbox: with the `Arc`'s two counts it fits
/// mimalloc's 128-byte size class (`just bench fanout`, case (d)).
#[test]
fn a_mailbox_stays_small() {
    let size = std::mem::size_of::<Mailbox>();
    assert!(size + 16 <= 128, "a mailbox is {size} bytes");
}
