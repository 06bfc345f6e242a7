//! Event-sourced membership and moderation: the projection decides who may
//! subscribe, and bans, kicks, leaves and deletions cut subscriptions live,
//! in replays and in resumed sessions, on every node.
//!
//! This file holds the membership events and the waits the modules share;
//! each module is one concept.

mod live;
mod projection;
mod replay;
mod standing;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{BanChange, ChannelDeleted, Event, EventData, Member, UserKicked};
use switchboard::log::Log;
use switchboard::token::Grant;
use switchboard_harness::*;

fn joined(c: Id, u: Id) -> Event {
    Event::new(EventData::MemberJoined(Member {
        channel_id: c,
        user_id: u,
        username: None,
    }))
}

fn left(c: Id, u: Id) -> Event {
    Event::new(EventData::MemberLeft(Member {
        channel_id: c,
        user_id: u,
        username: None,
    }))
}

fn banned(c: Id, u: Id) -> Event {
    Event::new(EventData::UserBanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "spam".into(),
    }))
}

fn unbanned(c: Id, u: Id) -> Event {
    Event::new(EventData::UserUnbanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "appeal".into(),
    }))
}

fn kicked(c: Id, u: Id) -> Event {
    Event::new(EventData::UserKicked(UserKicked {
        channel_id: c,
        user_id: Some(u),
    }))
}

fn deleted(c: Id) -> Event {
    Event::new(EventData::ChannelDeleted(ChannelDeleted { channel_id: c }))
}

/// Subscribes until the reply is `expected` (the projection follows the
/// log asynchronously); returns the final reply.
async fn subscribe_until(client: &mut Client, channel: Channel, expected: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        client
            .send(json!({"type": "subscribe", "channel": channel.to_string(), "request_id": "s"}))
            .await;
        let reply = client.next().await;
        let outcome = match reply["type"].as_str() {
            Some("subscribed") => "subscribed",
            _ => reply["data"]["code"].as_str().unwrap_or("?"),
        };
        if outcome == expected {
            return reply;
        }
        if reply["type"] == "subscribed" {
            client
                .send(json!({"type": "unsubscribe", "channel": channel.to_string()}))
                .await;
            assert_eq!(client.next().await["type"], "unsubscribed");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got {expected} for {channel}: last {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Expects `event` (by id) and then `unsubscribed` with `reason`. A
/// subscription made right after a join may still get the join itself (the
/// projection folds an event just before the hub fans it out): a
/// `member_joined` may come first.
async fn expect_cut(client: &mut Client, event: &Event, reason: &str) {
    let mut frame = client.next().await;
    while frame["type"] == "member_joined" && frame["id"] != event.id.to_string() {
        frame = client.next().await;
    }
    assert_eq!(
        frame["id"],
        event.id.to_string(),
        "the cutting event first: {frame}"
    );
    let end = client.next().await;
    assert_schema(&end);
    assert_eq!(end["type"], "unsubscribed", "{end}");
    assert_eq!(end["data"]["reason"], reason);
    assert!(end["data"].get("request_id").is_none());
}

async fn store(log: &Log, event: &Event) -> u64 {
    log.store(event).await.expect("stored").seq
}
