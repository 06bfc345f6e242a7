//! A connection's subscriptions by channel: a vector sorted by channel.
//!
//! Most connections hold one to a few subscriptions (at most
//! `max_subscriptions_per_connection`): a hash map's smallest table is four
//! slots and a control group, about 370 bytes for one subscription, where
//! this holds exactly what it has. Lookups are a binary search, by the
//! subscription's own channel (a key beside it was 17 bytes more, which
//! took each entry from 128 bytes to 144, and mimalloc's 160-byte class).

use crate::channel::Channel;
use crate::gateway::subscription::Subscription;

/// Up to this many subscriptions, the storage is exactly their size.
const EXACT_UP_TO: usize = 4;

/// A subscription, the ticket its log requests' answers carry (an answer
/// for an earlier subscription of the same channel is not its own), and
/// the cursor its session record holds as far as this connection knows
/// (`None`: none written by it yet).
struct Entry {
    sub: Subscription,
    ticket: u64,
    saved: Option<u64>,
}

#[derive(Default)]
pub(super) struct Subs {
    entries: Vec<Entry>,
}

impl Subs {
    fn find(&self, channel: &Channel) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|e| e.sub.channel().cmp(channel))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn contains_key(&self, channel: &Channel) -> bool {
        self.find(channel).is_ok()
    }

    pub(super) fn get_mut(&mut self, channel: &Channel) -> Option<&mut Subscription> {
        let i = self.find(channel).ok()?;
        Some(&mut self.entries[i].sub)
    }

    /// The ticket of the channel's subscription.
    pub(super) fn ticket(&self, channel: &Channel) -> Option<u64> {
        let i = self.find(channel).ok()?;
        Some(self.entries[i].ticket)
    }

    /// Adds or replaces the subscription of `channel` (a replaced one keeps
    /// what its record holds). The first few grow the vector one slot at a
    /// time (most connections stop there), then it doubles.
    pub(super) fn insert(&mut self, channel: Channel, sub: Subscription, ticket: u64) {
        debug_assert_eq!(channel, sub.channel());
        match self.find(&channel) {
            Ok(i) => {
                let entry = &mut self.entries[i];
                entry.sub = sub;
                entry.ticket = ticket;
            }
            Err(i) => {
                if self.entries.len() < EXACT_UP_TO {
                    self.entries.reserve_exact(1);
                }
                let entry = Entry {
                    sub,
                    ticket,
                    saved: None,
                };
                self.entries.insert(i, entry);
            }
        }
    }

    /// The cursor `channel`'s session record holds (from the store read,
    /// or the last write handed over).
    pub(super) fn set_saved(&mut self, channel: &Channel, saved: Option<u64>) {
        if let Ok(i) = self.find(channel) {
            self.entries[i].saved = saved;
        }
    }

    /// Removes a subscription; gives the storage back when none is left.
    pub(super) fn remove(&mut self, channel: &Channel) -> Option<Subscription> {
        let i = self.find(channel).ok()?;
        let entry = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(entry.sub)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = Channel> + '_ {
        self.entries.iter().map(|e| e.sub.channel())
    }

    /// Every subscription's record now holds its session cursor (a save
    /// was handed over).
    pub(super) fn mark_saved(&mut self) {
        for entry in &mut self.entries {
            entry.saved = Some(entry.sub.session_cursor());
        }
    }

    /// Each subscription with its session cursor, what its record holds,
    /// and whether it asked for presence.
    pub(super) fn cursors(&self) -> impl Iterator<Item = (Channel, u64, Option<u64>, bool)> + '_ {
        self.entries.iter().map(|e| {
            let sub = &e.sub;
            (
                sub.channel(),
                sub.session_cursor(),
                e.saved,
                sub.wants_presence(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Id;

    #[test]
    fn lookups_find_what_was_inserted_in_any_order_and_storage_goes_with_the_last() {
        let mut subs = Subs::default();
        let channels: Vec<Channel> = (0..10).map(|_| Channel::Chat(Id::new_v4())).collect();
        for (i, c) in channels.iter().enumerate() {
            subs.insert(*c, Subscription::live(*c, i as u64), i as u64);
        }
        subs.insert(Channel::Global, Subscription::live(Channel::Global, 0), 99);
        assert_eq!(subs.len(), 11);
        let keys: Vec<Channel> = subs.keys().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "kept sorted");
        for (i, c) in channels.iter().enumerate() {
            assert!(subs.contains_key(c));
            assert!(subs.get_mut(c).is_some());
            assert_eq!(subs.ticket(c), Some(i as u64));
        }
        assert!(subs.remove(&Channel::User(Id::new_v4())).is_none());
        for c in channels.iter().chain([&Channel::Global]) {
            assert!(subs.remove(c).is_some());
            assert!(!subs.contains_key(c));
        }
        assert_eq!(subs.entries.capacity(), 0, "nothing kept once empty");
    }

    /// Most connections hold one subscription: its entry fits mimalloc's
    /// 128-byte size class (`just bench fanout`, case (d)).
    #[test]
    fn an_entry_stays_small() {
        let size = std::mem::size_of::<Entry>();
        assert!(size <= 128, "an entry is {size} bytes");
    }
}
