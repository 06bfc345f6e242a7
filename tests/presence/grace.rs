//! No flicker: a reset and a reconnect within the grace show nothing; a
//! drop is offline after the grace; a ban or an unsubscribe at once.

use std::time::Instant;

use switchboard::event::{BanChange, Event, EventData};

use super::*;

#[tokio::test]
async fn a_reset_and_a_reconnect_within_the_grace_show_nothing_and_a_drop_is_offline_after_it() {
    let nats = nats();
    let (a, b) = two_gateways(&nats, &["--presence-grace", GRACE_ARG]);
    let channel = Id::new_v4();
    let (ann, bob, carl) = (user("ann"), user("bob"), user("carl"));
    let mut watch = Watch::start(&a, &ann, channel).await;
    let first = join(&b, &bob, channel).await;
    watch.until("bob online", |w| w.is_online(&bob)).await;

    // A page reload: the TCP connection is reset, and bob is back (on the
    // other gateway) within the grace.
    first.abort();
    let second = join(&a, &bob, channel).await;
    // Past the grace, carl comes on b (where bob dropped): anything b
    // announced of bob came before him.
    tokio::time::sleep(GRACE * 2).await;
    let _carl = join(&b, &carl, channel).await;
    watch.until("carl online", |w| w.is_online(&carl)).await;
    assert_eq!(watch.changes_of(&bob), [true], "no offline/online pair");

    // Bob drops for good: offline, but not before the grace.
    let dropped = Instant::now();
    second.abort();
    watch.until("bob offline", |w| !w.is_online(&bob)).await;
    let took = dropped.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(250),
        "offline after {took:?}, within the grace"
    );
    assert_eq!(watch.changes_of(&bob), [true, false]);
}

#[tokio::test]
async fn a_ban_an_unsubscribe_or_the_operators_disconnect_ends_presence_at_once() {
    // A grace far longer than the wait: an offline seen proves no grace.
    let grace = Duration::from_secs(300);
    let nats = nats();
    let (a, b) = two_gateways(&nats, &["--presence-grace", "300s"]);
    let channel = Id::new_v4();
    let (ann, bob, carl, dan) = (user("ann"), user("bob"), user("carl"), user("dan"));
    let mut watch = Watch::start(&a, &ann, channel).await;
    let mut bob_client = join(&b, &bob, channel).await;
    let mut carl_client = join(&b, &carl, channel).await;
    let _dan_client = join(&b, &dan, channel).await;
    watch
        .until("bob, carl and dan online", |w| {
            w.is_online(&bob) && w.is_online(&carl) && w.is_online(&dan)
        })
        .await;

    let started = Instant::now();
    let log = log(&nats).await;
    let ban = Event::new(EventData::UserBanned(BanChange {
        channel_id: channel,
        user_id: Some(bob.id),
        motive: "spam".into(),
    }));
    log.publish(&ban).await.expect("ban published");
    watch.until("bob offline", |w| !w.is_online(&bob)).await;
    loop {
        let frame = bob_client.next().await;
        if frame["type"] == "unsubscribed" {
            assert_eq!(frame["data"]["reason"], "banned");
            break;
        }
    }

    carl_client
        .send(json!({"type": "unsubscribe", "channel": Channel::Chat(channel).to_string()}))
        .await;
    watch.until("carl offline", |w| !w.is_online(&carl)).await;

    // A logout: the operator disconnects dan (through a, his socket is on b).
    let admin = token(
        Id::new_v4(),
        Grant::None,
        &[switchboard::token::Role::Admin],
    );
    let response = http()
        .post(a.http(&format!("/v1/users/{}/disconnect", dan.id)))
        .bearer_auth(admin)
        .send()
        .await
        .expect("disconnect");
    assert_eq!(response.status().as_u16(), 200);
    watch.until("dan offline", |w| !w.is_online(&dan)).await;
    assert!(started.elapsed() < grace, "no grace for an end");
    assert_eq!(watch.changes_of(&bob), [true, false]);
    assert_eq!(watch.changes_of(&carl), [true, false]);
}
