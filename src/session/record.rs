//! What a session is made of in either store, and the changes a connection
//! hands over.
//!
//! A session is a **header** (its user and expiry) and one **subscription
//! record** per subscription (its cursor and the stream epoch the cursor
//! counts in), each under a key of its own: sled keys them by the session
//! id's 16 bytes, followed by the channel for a subscription
//! ([`super::sled`]); the bucket by `{session}` and
//! `{session}.{channel token}` ([`super::kv`]). A subscribe, an unsubscribe
//! or a moved cursor therefore writes one small record, whatever the number
//! of the session's subscriptions. Issue 20: with the whole session in one
//! record, 1,024 subscriptions cost quadratic work (767 MiB written by 64
//! connections subscribing to 1,024 channels each).
//!
//! The previous format kept the whole session in the header's key: a
//! [`Header`] with its subscriptions inline and one epoch for all of them.
//! Such a record still reads (its inline subscriptions, under any
//! subscription record of the same channel), and the connection that
//! resumes it writes the session again in the new format, subscriptions
//! first and then the header without them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Id};
use crate::position::Epoch;

/// A session's header: who owns it and until when. Written when a
/// session first has something to restore, at least every
/// `SESSION_REFRESH` while connected, and never for a session without a
/// subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub user: Option<Id>,
    /// Unix seconds after which the session is gone.
    pub expires_at: i64,
    /// The previous format's subscriptions and cursors; always empty in a
    /// header written now (kept in the JSON so that the previous version
    /// still reads it, as a session with nothing to restore).
    #[serde(default)]
    pub subscriptions: BTreeMap<Channel, u64>,
    /// The previous format's epoch of every inline cursor. Absent in
    /// records written before epochs existed: those belong to the stream
    /// they were written beside, the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

/// One subscription's record: its cursor, the stream epoch it counts in
/// (`None` only for the previous format's records written before epochs),
/// and whether it asked for presence (absent: it did not; a gateway that
/// predates presence ignores the field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
}

/// A session as read from a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub header: Header,
    /// Every subscription: the header's inline ones (previous format), with
    /// the subscription records over them.
    pub subscriptions: BTreeMap<Channel, Cursor>,
    /// Whether the header still holds subscriptions inline: the session is
    /// written whole in the new format at its next save.
    pub legacy: bool,
}

impl Stored {
    /// The session from its header and its subscription records.
    pub fn assemble(
        header: Header,
        records: impl IntoIterator<Item = (Channel, Cursor)>,
    ) -> Stored {
        let legacy = !header.subscriptions.is_empty();
        let mut subscriptions: BTreeMap<Channel, Cursor> = header
            .subscriptions
            .iter()
            .map(|(channel, seq)| {
                let cursor = Cursor {
                    seq: *seq,
                    epoch: header.epoch,
                    presence: false,
                };
                (*channel, cursor)
            })
            .collect();
        subscriptions.extend(records);
        Stored {
            header,
            subscriptions,
            legacy,
        }
    }
}

/// What a connection hands to the store: a session's records to remove,
/// write or leave alone. Applied in this order: `remove_all`, then the
/// subscriptions, then the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub user: Id,
    /// Remove every record of the session first (its last subscription
    /// ended): with no header written after, the session is gone.
    pub remove_all: bool,
    /// Subscription records to write (`Some`) or remove (`None`).
    pub subscriptions: BTreeMap<Channel, Option<Cursor>>,
    /// Write the header with this expiry (unix seconds).
    pub header: Option<i64>,
}

impl Change {
    /// A change that touches nothing yet.
    pub fn new(user: Id) -> Change {
        Change {
            user,
            remove_all: false,
            subscriptions: BTreeMap::new(),
            header: None,
        }
    }

    /// The whole session, written: its header and every subscription.
    pub fn whole(user: Id, expires_at: i64, subscriptions: BTreeMap<Channel, Cursor>) -> Change {
        Change {
            user,
            remove_all: false,
            subscriptions: subscriptions
                .into_iter()
                .map(|(channel, cursor)| (channel, Some(cursor)))
                .collect(),
            header: Some(expires_at),
        }
    }

    /// The session removed: every record of it.
    pub fn remove(user: Id) -> Change {
        Change {
            remove_all: true,
            ..Change::new(user)
        }
    }

    /// Folds a newer change of the same session into this one, as if both
    /// were applied in turn: its subscriptions win, and a removal drops
    /// everything before it.
    pub fn absorb(&mut self, newer: Change) {
        if newer.remove_all {
            *self = newer;
            return;
        }
        self.subscriptions.extend(newer.subscriptions);
        if newer.header.is_some() {
            self.header = newer.header;
        }
    }

    /// Records this change writes or removes, at most (a removal of the
    /// whole session counts as one).
    pub fn records(&self) -> usize {
        usize::from(self.remove_all) + self.subscriptions.len() + usize::from(self.header.is_some())
    }
}

/// When a header is written, for the users' indexes: unix milliseconds,
/// and never the same twice in this process (two sessions of one user
/// written in the same millisecond still have an order).
pub fn index_stamp() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_millis();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// What applying a change did to a store: records written or removed,
/// and their bytes (a record written counts its key and value, one removed
/// its key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub records: u64,
    pub bytes: u64,
    /// Sessions removed as their user's oldest beyond the bound.
    pub evicted: usize,
}

impl Applied {
    pub(crate) fn written(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
    }

    pub(crate) fn removed(&mut self, key_bytes: usize) {
        self.records += 1;
        self.bytes += key_bytes as u64;
    }

    pub(crate) fn add(&mut self, other: Applied) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.evicted += other.evicted;
    }
}

/// A subscription's key token in the bucket: the channel with `=` for
/// `:` (`channel=…`, `user=…`, `global`), as bucket keys allow no `:`.
pub fn channel_token(channel: Channel) -> String {
    let mut out = String::with_capacity(44);
    channel.write_to(&mut out);
    out.replace(':', "=")
}

/// The channel of a bucket key token ([`channel_token`]).
pub fn channel_of_token(token: &str) -> Option<Channel> {
    Channel::parse(&token.replacen('=', ":", 1)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_the_previous_format_reads_with_its_subscriptions_inline() {
        let old = r#"{"user":null,"expires_at":5,"subscriptions":{"global":3},"epoch":"2026-01-01T00:00:00.000000000Z"}"#;
        let header: Header = serde_json::from_str(old).unwrap();
        let c = Channel::Chat(Id::new_v4());
        let newer = Cursor {
            seq: 9,
            epoch: Some("2026-01-02T00:00:00.000000000Z".into()),
            presence: true,
        };
        let stored = Stored::assemble(header, [(c, newer)]);
        assert!(stored.legacy);
        assert_eq!(
            stored.subscriptions.get(&Channel::Global),
            Some(&Cursor {
                seq: 3,
                epoch: Some("2026-01-01T00:00:00.000000000Z".into()),
                presence: false,
            })
        );
        assert_eq!(stored.subscriptions.get(&c), Some(&newer));
        // Before epochs: no epoch at all.
        let older = r#"{"user":null,"expires_at":5,"subscriptions":{"global":3}}"#;
        let stored = Stored::assemble(serde_json::from_str(older).unwrap(), []);
        assert_eq!(stored.subscriptions[&Channel::Global].epoch, None);
    }

    #[test]
    fn a_header_written_now_reads_in_the_previous_version() {
        let header = Header {
            user: Some(Id::new_v4()),
            expires_at: 7,
            ..Default::default()
        };
        let json = serde_json::to_string(&header).unwrap();
        assert!(json.contains(r#""subscriptions":{}"#), "{json}");
        assert!(!Stored::assemble(header, []).legacy);
    }

    #[test]
    fn changes_fold_in_order() {
        let user = Id::new_v4();
        let (a, b) = (Channel::Chat(Id::new_v4()), Channel::Global);
        let at = |seq| {
            Some(Cursor {
                seq,
                epoch: Some("2026-01-03T00:00:00.000000000Z".into()),
                presence: false,
            })
        };
        let mut change = Change::new(user);
        change.subscriptions.insert(a, at(1));
        change.header = Some(10);
        let mut newer = Change::new(user);
        newer.subscriptions.insert(a, None);
        newer.subscriptions.insert(b, at(2));
        change.absorb(newer);
        assert_eq!(change.subscriptions[&a], None);
        assert_eq!(change.subscriptions[&b], at(2));
        assert_eq!(change.header, Some(10), "kept: the newer left it alone");
        change.absorb(Change::remove(user));
        assert_eq!(change, Change::remove(user));
        let mut again = Change::new(user);
        again.subscriptions.insert(b, at(3));
        again.header = Some(20);
        change.absorb(again);
        assert!(change.remove_all, "the removal still goes first");
        assert_eq!(change.records(), 3);
    }

    #[test]
    fn index_stamps_always_grow() {
        let stamps: Vec<i64> = (0..1000).map(|_| index_stamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn channel_tokens_round_trip() {
        for channel in [
            Channel::Chat(Id::new_v4()),
            Channel::User(Id::new_v4()),
            Channel::Global,
        ] {
            let token = channel_token(channel);
            assert!(!token.contains(':') && !token.contains('.'), "{token}");
            assert_eq!(channel_of_token(&token), Some(channel));
        }
        assert_eq!(channel_of_token("channel=nope"), None);
    }
}
