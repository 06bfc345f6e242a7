//! Maps that give back their room. A `HashMap` keeps the table its busiest
//! moment grew for: after a storm of 5,000 connections has left, the hub,
//! the user registry, the edge's per-user counts and presence would keep
//! tables sized for 5,000 for the process's life. [`give_back`] is called
//! where these maps lose an entry, and by the bucket's session writer on
//! its maps once a burst is written.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Tables this small are not worth shrinking.
const SMALL: usize = 64;

/// Shrinks `map` to twice its length once at most a quarter of its room is
/// used: between the two a map grows and shrinks without rehashing at every
/// insert and removal (each shrink is paid for by the removals before it).
pub fn give_back<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > SMALL && map.len() * 4 <= map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_that_emptied_gives_back_its_room() {
        let mut map: HashMap<u32, u32> = (0..5_000).map(|i| (i, i)).collect();
        for i in 0..5_000 {
            map.remove(&i);
            give_back(&mut map);
        }
        assert!(map.capacity() <= SMALL, "{}", map.capacity());
        // What is left is kept, and the map still works.
        let mut map: HashMap<u32, u32> = (0..1_000).map(|i| (i, i)).collect();
        for i in 0..900 {
            map.remove(&i);
            give_back(&mut map);
        }
        assert!(map.capacity() < 1_000, "{}", map.capacity());
        assert_eq!(map.len(), 100);
        assert!((900..1_000).all(|i| map.get(&i) == Some(&i)));
    }

    #[test]
    fn a_small_map_is_left_alone() {
        let mut map: HashMap<u32, u32> = (0..40).map(|i| (i, i)).collect();
        for i in 0..39 {
            map.remove(&i);
            give_back(&mut map);
        }
        // Shrunk, one entry would leave room for 3; the 64-slot table
        // still has room for at least its 16 free slots.
        assert!(map.capacity() >= 16, "{}", map.capacity());
    }
}
