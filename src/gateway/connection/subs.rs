//! A connection's subscriptions by channel: a vector sorted by channel.
//!
//! Most connections hold one to a few subscriptions (at most
//! `max_subscriptions_per_connection`): a hash map's smallest table is four
//! slots and a control group, about 370 bytes for one subscription, where
//! this holds exactly what it has. Lookups are a binary search.

use crate::channel::Channel;
use crate::gateway::subscription::Subscription;

/// Up to this many subscriptions, the storage is exactly their size.
const EXACT_UP_TO: usize = 4;

/// A subscription, and the cursor its session record holds as far as this
/// connection knows (`None`: none written by it yet).
type Entry = (Channel, Subscription, Option<u64>);

#[derive(Default)]
pub(super) struct Subs {
    entries: Vec<Entry>,
}

impl Subs {
    fn find(&self, channel: &Channel) -> Result<usize, usize> {
        self.entries.binary_search_by(|(c, _, _)| c.cmp(channel))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn contains_key(&self, channel: &Channel) -> bool {
        self.find(channel).is_ok()
    }

    pub(super) fn get_mut(&mut self, channel: &Channel) -> Option<&mut Subscription> {
        let i = self.find(channel).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Adds or replaces the subscription of `channel` (a replaced one keeps
    /// what its record holds). The first few grow the vector one slot at a
    /// time (most connections stop there), then it doubles.
    pub(super) fn insert(&mut self, channel: Channel, sub: Subscription) {
        match self.find(&channel) {
            Ok(i) => self.entries[i].1 = sub,
            Err(i) => {
                if self.entries.len() < EXACT_UP_TO {
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (channel, sub, None));
            }
        }
    }

    /// The cursor `channel`'s session record holds (from the store read,
    /// or the last write handed over).
    pub(super) fn set_saved(&mut self, channel: &Channel, saved: Option<u64>) {
        if let Ok(i) = self.find(channel) {
            self.entries[i].2 = saved;
        }
    }

    /// Removes a subscription; gives the storage back when none is left.
    pub(super) fn remove(&mut self, channel: &Channel) -> Option<Subscription> {
        let i = self.find(channel).ok()?;
        let (_, sub, _) = self.entries.remove(i);
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        Some(sub)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &Channel> + '_ {
        self.entries.iter().map(|(c, _, _)| c)
    }

    /// Every subscription's record now holds its session cursor (a save
    /// was handed over).
    pub(super) fn mark_saved(&mut self) {
        for (_, sub, saved) in &mut self.entries {
            *saved = Some(sub.session_cursor());
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each subscription with its session cursor and what its record holds.
    pub(super) fn cursors(&self) -> impl Iterator<Item = (Channel, u64, Option<u64>)> + '_ {
        self.entries
            .iter()
            .map(|(c, s, saved)| (*c, s.session_cursor(), *saved))
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
            subs.insert(*c, Subscription::live(*c, i as u64));
        }
        subs.insert(Channel::Global, Subscription::live(Channel::Global, 0));
        assert_eq!(subs.len(), 11);
        let keys: Vec<Channel> = subs.keys().copied().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "kept sorted");
        for c in &channels {
            assert!(subs.contains_key(c));
            assert!(subs.get_mut(c).is_some());
        }
        assert!(subs.remove(&Channel::User(Id::new_v4())).is_none());
        for c in channels.iter().chain([&Channel::Global]) {
            assert!(subs.remove(c).is_some());
            assert!(!subs.contains_key(c));
        }
        assert_eq!(subs.entries.capacity(), 0, "nothing kept once empty");
    }
}
