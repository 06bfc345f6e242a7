//! Faults: a gateway SIGKILLed (its users offline on the other within the
//! detection time and the grace, unless they came back there), and a NATS
//! node killed under a gateway of the three-node cluster (presence goes on,
//! nobody flickers).

use std::time::Instant;

use switchboard::presence::node::{BATCH_INTERVAL, DETECTION_TIME};

use super::*;

#[tokio::test]
async fn a_killed_gateways_users_go_offline_on_the_other_unless_they_came_back() {
    let nats = nats();
    let (a, mut b) = two_gateways(&nats, &["--presence-grace", GRACE_ARG]);
    let channel = Id::new_v4();
    let (ann, bob, carl, dan) = (user("ann"), user("bob"), user("carl"), user("dan"));
    let mut watch = Watch::start(&a, &ann, channel).await;
    let _bob = join(&b, &bob, channel).await;
    let _carl = join(&b, &carl, channel).await;
    watch
        .until("bob and carl online", |w| {
            w.is_online(&bob) && w.is_online(&carl)
        })
        .await;

    let killed = Instant::now();
    b.kill9();
    // Carl reconnects to a at once; bob does not come back.
    let _carl_again = join(&a, &carl, channel).await;
    watch.until("bob offline", |w| !w.is_online(&bob)).await;
    let took = killed.elapsed();
    // The documented bound: detection, grace, a batch, and room for a
    // loaded machine.
    let bound = DETECTION_TIME + GRACE + BATCH_INTERVAL + Duration::from_secs(5);
    assert!(took <= bound, "offline after {took:?}, bound {bound:?}");
    // Barrier: dan on a, after bob went; carl never flickered.
    let _dan = join(&a, &dan, channel).await;
    watch.until("dan online", |w| w.is_online(&dan)).await;
    assert_eq!(watch.changes_of(&carl), [true], "carl came back in time");
    assert_eq!(watch.changes_of(&bob), [true, false]);
}

#[tokio::test]
async fn presence_goes_on_when_the_nats_node_under_a_gateway_dies() {
    let mut cluster = NatsCluster::start_temp().expect("cluster");
    let args = [
        "--session-store",
        "kv",
        "--replicas",
        "3",
        "--presence-grace",
        GRACE_ARG,
    ];
    let a = Gateway::start_on(&cluster.url(0), &args);
    let b = Gateway::start_on(&cluster.url(1), &args);
    let channel = Id::new_v4();
    let (ann, bob, carl) = (user("ann"), user("bob"), user("carl"));
    let mut watch = Watch::start(&a, &ann, channel).await;
    let _bob = join(&b, &bob, channel).await;
    watch.until("bob online", |w| w.is_online(&bob)).await;

    // The server under b dies; b reconnects to another.
    cluster.kill(1);
    // Long enough for b's silence to count, were it silent.
    tokio::time::sleep(DETECTION_TIME + GRACE + Duration::from_secs(1)).await;
    let _carl = join(&b, &carl, channel).await;
    watch
        .until("carl online, through b", |w| w.is_online(&carl))
        .await;
    assert_eq!(watch.changes_of(&bob), [true], "bob never flickered");
}
