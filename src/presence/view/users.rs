//! One channel's present users, by user id: a sorted vector while they
//! are few, a B-tree beyond.
//!
//! Most channels of a node have one or two present users (a direct
//! conversation, a small group), and a node holds one such set per
//! channel its connections hold. A `BTreeMap` allocates a whole node
//! (eleven entries, over 500 bytes here) for its first user; the vector
//! holds exactly what it has, and a lookup in it is a binary search. A
//! channel past [`FEW`] users moves to the tree, where an insertion does
//! not shift every later user, and back once it has half as many.

use std::collections::BTreeMap;

use super::UserState;
use crate::channel::Id;

/// Up to this many users, a channel's are a sorted vector.
const FEW: usize = 16;

#[derive(Debug)]
pub(super) enum Users {
    Few(Vec<(Id, UserState)>),
    Many(BTreeMap<Id, UserState>),
}

impl Default for Users {
    fn default() -> Self {
        Users::Few(Vec::new())
    }
}

impl Users {
    pub(super) fn get(&self, user: &Id) -> Option<&UserState> {
        match self {
            Users::Few(few) => {
                let at = few.binary_search_by(|(u, _)| u.cmp(user)).ok()?;
                Some(&few[at].1)
            }
            Users::Many(many) => many.get(user),
        }
    }

    pub(super) fn get_mut(&mut self, user: &Id) -> Option<&mut UserState> {
        match self {
            Users::Few(few) => {
                let at = few.binary_search_by(|(u, _)| u.cmp(user)).ok()?;
                Some(&mut few[at].1)
            }
            Users::Many(many) => many.get_mut(user),
        }
    }

    /// The user's state, made by `new` if the channel has none for them.
    pub(super) fn get_or_insert_with(
        &mut self,
        user: Id,
        new: impl FnOnce() -> UserState,
    ) -> &mut UserState {
        if let Users::Few(few) = self {
            if few.len() >= FEW && few.binary_search_by(|(u, _)| u.cmp(&user)).is_err() {
                *self = Users::Many(std::mem::take(few).into_iter().collect());
            }
        }
        match self {
            Users::Few(few) => {
                let at = match few.binary_search_by(|(u, _)| u.cmp(&user)) {
                    Ok(at) => at,
                    Err(at) => {
                        // Exact storage: most channels stop at one or two.
                        few.reserve_exact(1);
                        few.insert(at, (user, new()));
                        at
                    }
                };
                &mut few[at].1
            }
            Users::Many(many) => many.entry(user).or_insert_with(new),
        }
    }

    pub(super) fn remove(&mut self, user: &Id) -> Option<UserState> {
        match self {
            Users::Few(few) => {
                let at = few.binary_search_by(|(u, _)| u.cmp(user)).ok()?;
                let (_, state) = few.remove(at);
                if few.is_empty() {
                    *few = Vec::new();
                }
                Some(state)
            }
            Users::Many(many) => {
                let state = many.remove(user);
                if many.len() <= FEW / 2 {
                    let few: Vec<(Id, UserState)> = std::mem::take(many).into_iter().collect();
                    *self = Users::Few(few);
                }
                state
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Users::Few(few) => few.len(),
            Users::Many(many) => many.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every user, by id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Id, &UserState)> + '_ {
        let (few, many) = match self {
            Users::Few(few) => (Some(few.iter().map(|(u, s)| (u, s))), None),
            Users::Many(many) => (None, Some(many.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &UserState> + '_ {
        self.iter().map(|(_, state)| state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compact_str::CompactString;

    fn state(count: u32) -> UserState {
        UserState {
            username: super::super::Name(Some(CompactString::new("u"))),
            count,
            node: 0,
            announced: false,
        }
    }

    #[test]
    fn users_stay_ordered_by_id_across_the_move_to_a_tree_and_back() {
        let mut users = Users::default();
        let ids: Vec<Id> = (0..3 * FEW).map(|_| Id::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            users.get_or_insert_with(*id, || state(i as u32)).count += 1000;
            assert_eq!(users.len(), i + 1);
            assert_eq!(matches!(users, Users::Many(_)), i + 1 > FEW);
        }
        let mut sorted = ids.clone();
        sorted.sort();
        let listed: Vec<Id> = users.iter().map(|(id, _)| *id).collect();
        assert_eq!(listed, sorted);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(users.get(id).map(|s| s.count), Some(1000 + i as u32));
            assert!(users.get_mut(id).is_some());
        }
        for (i, id) in ids.iter().enumerate() {
            assert!(users.remove(id).is_some());
            assert!(users.remove(id).is_none());
            assert_eq!(users.len(), ids.len() - i - 1);
            assert!(users.get(id).is_none());
        }
        assert!(users.is_empty());
        assert!(matches!(&users, Users::Few(few) if few.capacity() == 0));
    }

    #[test]
    fn a_known_user_is_not_inserted_again() {
        let mut users = Users::default();
        let ann = Id::new_v4();
        users.get_or_insert_with(ann, || state(1));
        users.get_or_insert_with(ann, || state(7)).count += 1;
        assert_eq!(users.len(), 1);
        assert_eq!(users.get(&ann).map(|s| s.count), Some(2));
    }
}
