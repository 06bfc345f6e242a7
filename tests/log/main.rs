//! The event log (`switchboard::log::Log`) against a real nats-server:
//! idempotent publishing, moderation's two copies, ephemeral typing, time →
//! sequence resolution at millisecond resolution, history paging and
//! filters, invalid stored messages, a replay's read of one channel, the
//! stream's settings, and the refusal of a server without JetStream.
//!
//! This file holds what the modules share (history queries, times in
//! milliseconds, counting stored messages); each module is one concept.

mod channel_read;
mod history;
mod publishing;
mod stream;
mod times;
mod typing;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::StreamExt;
use switchboard::channel::{Channel, Id};
use switchboard::envelope::StoredEvent;
use switchboard::event::{
    format_timestamp, BanChange, ChannelUpdated, Event, EventData, EventError, EventType,
    UserKicked, UserTyping,
};
use switchboard::log::{subject, HistoryQuery, Log, LogError, ReadItem, StreamSettings};
use switchboard_harness::*;

/// Every item of a history query, in order; fails if it does not end.
async fn history_items(log: &Log, query: &HistoryQuery) -> Vec<ReadItem> {
    tokio::time::timeout(PATIENCE, async {
        let mut history = log.history(query).await.expect("history starts");
        let mut out = Vec::new();
        while let Some(item) = history.next().await {
            out.push(item.expect("history reads"));
        }
        out
    })
    .await
    .unwrap_or_else(|_| panic!("history {query:?} did not end"))
}

/// The events of a history query (every stored message must be valid).
async fn history(log: &Log, query: &HistoryQuery) -> Vec<StoredEvent> {
    history_items(log, query)
        .await
        .into_iter()
        .map(|item| item.event.expect("a valid stored event"))
        .collect()
}

fn on(channels: &[Channel]) -> HistoryQuery {
    HistoryQuery {
        channels: channels.to_vec(),
        ..HistoryQuery::default()
    }
}

fn seqs_of(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The envelope's timestamp, as milliseconds: the time clients see.
fn shown_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("a representable time")
}

async fn messages_held(log: &Log) -> u64 {
    log.extent().await.expect("extent").messages
}

fn ban(c: Id, u: Id) -> Event {
    Event::new(EventData::UserBanned(BanChange {
        channel_id: c,
        user_id: Some(u),
        motive: "spam".into(),
    }))
}
