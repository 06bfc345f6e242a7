//! Live subscriptions: membership grants and bans deny whatever the token
//! says, kicks, leaves and deletions cut, and every node enforces a ban.

use super::*;

#[tokio::test]
async fn membership_grants_and_bans_deny_whatever_the_token_says() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let mut plain = Client::connect(&gateway, &token(u, Grant::None, &[])).await;
    let mut starred = Client::connect(&gateway, &token(u, Grant::All, &[])).await;
    let mut other = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    other.subscribe(chat(c)).await;

    subscribe_until(&mut plain, chat(c), "forbidden").await;
    // The grant needs no membership: subscribed before the join, it gets
    // the join (had it subscribed after, it might or might not, as the
    // projection folds an event just before the hub fans it out).
    starred.subscribe(chat(c)).await;
    let join = joined(c, u);
    store(&log, &join).await;
    subscribe_until(&mut plain, chat(c), "subscribed").await;
    assert_eq!(starred.events(1).await[0]["id"], join.id.to_string());
    other.events(1).await;

    let ban = banned(c, u);
    store(&log, &ban).await;
    expect_cut(&mut plain, &ban, "banned").await;
    expect_cut(&mut starred, &ban, "banned").await;
    let after = store(&log, &message(c, "after the ban")).await;
    assert_eq!(other.events(2).await[1]["seq"], after, "others go on");
    plain.assert_silent(Duration::from_millis(300)).await;
    starred.assert_silent(Duration::from_millis(100)).await;

    // Banned: refused even with a `*` grant.
    subscribe_until(&mut starred, chat(c), "forbidden").await;
    subscribe_until(&mut plain, chat(c), "forbidden").await;

    // An unban lifts the ban but restores no membership.
    store(&log, &unbanned(c, u)).await;
    subscribe_until(&mut starred, chat(c), "subscribed").await;
    let reply = subscribe_until(&mut plain, chat(c), "forbidden").await;
    assert!(reply["data"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("not a member"));
    store(&log, &joined(c, u)).await;
    subscribe_until(&mut plain, chat(c), "subscribed").await;
}

#[tokio::test]
async fn kicks_leaves_and_deletions_cut_live_subscriptions() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u, v) = (Id::new_v4(), Id::new_v4(), Id::new_v4());
    let grant = Grant::Some(vec![c]);
    let mut a = Client::connect(&gateway, &token(u, grant.clone(), &[])).await;
    let mut b = Client::connect(&gateway, &token(v, grant, &[])).await;
    a.subscribe(chat(c)).await;
    b.subscribe(chat(c)).await;

    let kick = kicked(c, u);
    store(&log, &kick).await;
    expect_cut(&mut a, &kick, "kicked").await;
    assert_eq!(b.events(1).await[0]["id"], kick.id.to_string());

    // The grant still allows a new subscription after a kick.
    subscribe_until(&mut a, chat(c), "subscribed").await;
    let leave = left(c, u);
    store(&log, &leave).await;
    expect_cut(&mut a, &leave, "left").await;
    assert_eq!(b.events(1).await[0]["id"], leave.id.to_string());

    subscribe_until(&mut a, chat(c), "subscribed").await;
    let gone = deleted(c);
    store(&log, &gone).await;
    expect_cut(&mut a, &gone, "channel_deleted").await;
    expect_cut(&mut b, &gone, "channel_deleted").await;
    subscribe_until(&mut a, chat(c), "forbidden").await;
}

#[tokio::test]
async fn two_gateways_on_one_nats_both_enforce_a_ban() {
    let nats = nats();
    let first = Gateway::start(&nats);
    let second = Gateway::start(&nats);
    let log = log(&nats).await;
    let (c, u) = (Id::new_v4(), Id::new_v4());
    let user = token(u, Grant::None, &[]);
    store(&log, &joined(c, u)).await;
    let mut on_first = Client::connect(&first, &user).await;
    let mut on_second = Client::connect(&second, &user).await;
    subscribe_until(&mut on_first, chat(c), "subscribed").await;
    subscribe_until(&mut on_second, chat(c), "subscribed").await;
    let ban = banned(c, u);
    store(&log, &ban).await;
    expect_cut(&mut on_first, &ban, "banned").await;
    expect_cut(&mut on_second, &ban, "banned").await;
    subscribe_until(&mut on_first, chat(c), "forbidden").await;
    subscribe_until(&mut on_second, chat(c), "forbidden").await;
}
