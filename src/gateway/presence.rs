//! Presence to the clients: each batch of the node's presence
//! ([`crate::presence::node::Batch`]) encoded once per channel and handed
//! to the hub, which queues it for the subscriptions that asked for
//! presence. A change is a `user_presence` event; a channel's many changes
//! in one batch are its `presence` snapshot, one frame.

use std::sync::Arc;

use chrono::Utc;

use super::hub::Delivery;
use super::protocol;
use super::Node;
use crate::channel::Channel;
use crate::envelope::Text;
use crate::event::write_timestamp;
use crate::metrics::Metrics;
use crate::presence::node::{Announcement, Batch};
use crate::presence::view::Change;

/// Queues a batch's announcements for the local presence subscriptions.
pub fn fan_out(node: &Node, batch: Batch) {
    let now = Utc::now();
    for announcement in batch.announcements {
        let (channel, frame) = match announcement {
            Announcement::Change(change) => (change.channel, user_presence(&change, &now)),
            Announcement::Snapshot(channel, snapshot) => (
                channel,
                Text::from(protocol::presence(None, snapshot.json(channel))),
            ),
        };
        let delivery = Delivery {
            channel: Channel::Chat(channel),
            seq: None,
            frame,
            deflated: Default::default(),
            cut: None,
            log_time_ms: now.timestamp_millis(),
            from_user: None,
            presence: Some(batch.generation),
        };
        let fanout = node.hub.dispatch(Arc::new(delivery));
        if fanout.presence_dropped > 0 {
            Metrics::get()
                .presence_dropped
                .increment(fanout.presence_dropped as u64);
        }
    }
}

/// The `user_presence` envelope: like `user_typing`, with the channel and
/// an id, never a `seq`.
pub fn user_presence(change: &Change, time: &chrono::DateTime<Utc>) -> Text {
    let data = serde_json::json!({
        "channel_id": change.channel,
        "user_id": change.user,
        "username": change.username,
        "online": change.online,
    });
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"type":""#);
    out.push_str(crate::presence::USER_PRESENCE);
    out.push_str(r#"","timestamp":""#);
    write_timestamp(&mut out, time);
    out.push_str(r#"","data":"#);
    out.push_str(&data.to_string());
    out.push_str(r#","channel":""#);
    Channel::Chat(change.channel).write_to(&mut out);
    out.push_str(r#"","id":""#);
    out.push_str(&uuid::Uuid::new_v4().to_string());
    out.push_str(r#""}"#);
    Text::from(out)
}
