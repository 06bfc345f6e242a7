//! The snapshot and live events across two gateways; a user in many tabs
//! counts once; the `presence` frame; no presence traffic without asking.

use super::*;

#[tokio::test]
async fn snapshots_and_events_agree_across_gateways_and_tabs_count_once() {
    let nats = nats();
    let (a, b) = two_gateways(&nats, &["--presence-grace", GRACE_ARG]);
    let channel = Id::new_v4();
    let (ann, bob, carl, dan) = (user("ann"), user("bob"), user("carl"), user("dan"));

    // Ann on a: her own snapshot holds her.
    let mut watch_a = Watch::start(&a, &ann, channel).await;
    assert!(watch_a.is_online(&ann), "{:?}", watch_a.online);
    // Dan on a subscribes without presence: he must hear none of it.
    let mut quiet = join(&a, &dan, channel).await;

    // Bob on b: his snapshot holds him (and ann, or her event follows:
    // b may not have heard of her yet); ann hears him come.
    let mut watch_b = Watch::start(&b, &bob, channel).await;
    assert!(watch_b.is_online(&bob));
    watch_b.until("bob to see ann", |w| w.is_online(&ann)).await;
    watch_a
        .until("ann to see bob online", |w| w.is_online(&bob))
        .await;
    assert_eq!(watch_a.changes_of(&bob), [true]);

    // Bob opens two more tabs, one on each gateway: no event, three
    // connections in a snapshot.
    let _tab_a = join(&a, &bob, channel).await;
    let _tab_b = join(&b, &bob, channel).await;
    // Barrier: carl comes after the tabs, on both gateways' nodes.
    let _carl = join(&b, &carl, channel).await;
    watch_a
        .until("ann to see carl", |w| w.is_online(&carl))
        .await;
    watch_b
        .until("bob to see carl", |w| w.is_online(&carl))
        .await;
    assert_eq!(watch_a.changes_of(&bob), [true], "tabs are not news");
    let chat = Channel::Chat(channel).to_string();
    // Every node counts bob's three tabs (a's view has b's delta soon).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let ask = json!({"type": "presence", "channel": chat, "request_id": "who"});
        watch_a.client.send(ask).await;
        let frame = loop {
            let frame = watch_a.read().await;
            if frame["type"] == "presence" && frame["data"]["request_id"] == "who" {
                break frame;
            }
        };
        assert_eq!(frame["data"]["count"], 4, "{frame}");
        let bob_id = bob.id.to_string();
        let tabs = frame["data"]["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["user_id"] == bob_id.as_str())
            .and_then(|m| m["connections"].as_u64());
        if tabs == Some(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for bob's three tabs: {frame}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Dan, who did not ask, heard nothing of all this (it would have been
    // queued for him when ann's was).
    quiet.assert_silent(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_presence_frame_answers_for_held_channels_only() {
    let nats = nats();
    let gateway = Gateway::start_with(&nats, &[]);
    let (held, other, hidden) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let ann = user("ann");
    // A token for `held` and `other` only.
    let token = token_named(
        ann.id,
        Grant::Some(vec![held, other]),
        &[],
        Some("ann"),
        TOKEN_TTL,
    );
    let mut client = Client::connect(&gateway, &token).await;
    subscribe(&mut client, held, false).await;
    let ask = |channel: Id, id: &str| json!({"type": "presence", "channel": Channel::Chat(channel).to_string(), "request_id": id});

    client.send(ask(held, "held")).await;
    let reply = client.next().await;
    assert_schema(&reply);
    assert_eq!(reply["type"], "presence", "{reply}");
    assert_eq!(reply["data"]["request_id"], "held");
    assert_eq!(reply["data"]["count"], 1, "the asking user is in it");
    assert_eq!(reply["data"]["members"][0]["username"], "ann");

    client.send(ask(other, "other")).await;
    let reply = client.next().await;
    assert_eq!(
        (&reply["type"], &reply["data"]["code"]),
        (&json!("error"), &json!("not_found")),
        "{reply}"
    );

    client.send(ask(hidden, "hidden")).await;
    let reply = client.next().await;
    assert_eq!(
        (&reply["type"], &reply["data"]["code"]),
        (&json!("error"), &json!("forbidden")),
        "{reply}"
    );

    client
        .send(json!({"type": "subscribe", "channel": "global", "presence": true}))
        .await;
    let reply = client.next().await;
    assert_eq!(reply["data"]["code"], "bad_request", "{reply}");
}
