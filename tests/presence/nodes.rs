//! Presence between nodes over a real nats-server, without gateways: two nodes' `Presence` tasks on one NATS agree
//! on who is online; a drop within the grace shows nothing; a node whose
//! task dies (its heartbeats stop) has its users announced offline after
//! the detection time and the grace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::channel::Id;
use switchboard::presence::node::{Announcement, Presence, DETECTION_TIME};
use switchboard::presence::view::{Change, Left};
use switchboard_harness::*;

const GRACE: Duration = Duration::from_secs(1);

/// A node's presence task, and the changes it announced.
struct Node {
    presence: Arc<Presence>,
    announced: Arc<Mutex<Vec<Change>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn node(nats: &NatsServer) -> Node {
    let presence = Presence::new(Id::new_v4(), GRACE, 10);
    let announced = Arc::new(Mutex::new(Vec::new()));
    let log = log(nats).await;
    let sink = announced.clone();
    let task = tokio::spawn(presence.clone().run(log, move |batch| {
        let mut sink = sink.lock().expect("changes");
        for announcement in batch.announcements {
            match announcement {
                Announcement::Change(change) => sink.push(change),
                Announcement::Snapshot(..) => panic!("one change per batch here"),
            }
        }
    }));
    Node {
        presence,
        announced,
        task,
    }
}

fn seen(node: &Node, user: Id) -> Vec<bool> {
    let announced = node.announced.lock().expect("changes");
    announced
        .iter()
        .filter(|c| c.user == user)
        .map(|c| c.online)
        .collect()
}

#[tokio::test]
async fn two_nodes_agree_a_drop_within_the_grace_shows_nothing_and_a_dead_nodes_users_go() {
    let nats = nats();
    let (a, b) = (node(&nats).await, node(&nats).await);
    let (channel, ann) = (Id::new_v4(), Id::new_v4());
    // Both tasks have subscribed once each has sent a heartbeat and seen
    // the other's.
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.presence.join(channel, ann, "ann");
    wait_until("b to announce ann online", || async {
        seen(&b, ann) == [true]
    })
    .await;
    let snapshot = b.presence.snapshot(channel, None);
    assert_eq!((snapshot.count, snapshot.members[0].connections), (1, 1));
    assert_eq!(snapshot.members[0].username, "ann");

    // A reload: dropped and back within the grace.
    a.presence.leave(channel, ann, Left::Dropped);
    tokio::time::sleep(GRACE / 4).await;
    a.presence.join(channel, ann, "ann");
    tokio::time::sleep(GRACE * 2).await;
    assert_eq!(seen(&b, ann), [true], "no offline/online pair");
    assert_eq!(seen(&a, ann), [true]);

    // Node a dies: b announces ann offline after the detection time and
    // the grace (waited for with room to spare; the bound is the bench's).
    a.task.abort();
    wait_until("b to announce ann offline", || async {
        seen(&b, ann) == [true, false]
    })
    .await;
    assert_eq!(b.presence.snapshot(channel, None).count, 0);
    assert!(DETECTION_TIME + GRACE < PATIENCE);
}

#[tokio::test]
async fn an_ended_subscription_is_offline_on_every_node_without_the_grace() {
    let nats = nats();
    let (a, b) = (node(&nats).await, node(&nats).await);
    let (channel, ann) = (Id::new_v4(), Id::new_v4());
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.presence.join(channel, ann, "ann");
    wait_until("b to see ann", || async { seen(&b, ann) == [true] }).await;
    a.presence.leave(channel, ann, Left::Ended);
    wait_until("b to see ann go", || async {
        seen(&b, ann) == [true, false]
    })
    .await;
    assert_eq!(seen(&a, ann), [true, false]);
}
