//! The presence rules without NATS: merging nodes, the grace, ends that
//! skip it, a dead node, coalescing, snapshots.

use super::*;

const GRACE: Duration = Duration::from_secs(5);

fn ids<const N: usize>() -> [Id; N] {
    std::array::from_fn(|_| Id::new_v4())
}

fn online(changes: &[Change]) -> Vec<(Id, bool)> {
    changes.iter().map(|c| (c.user, c.online)).collect()
}

#[test]
fn a_present_user_costs_32_bytes_beside_its_id() {
    assert_eq!(std::mem::size_of::<UserState>(), 32);
}

#[test]
fn a_name_that_is_the_user_id_is_not_kept_but_shown() {
    let [node, channel, ann, bob] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), &ann.to_string(), 1, Left::Dropped, t0);
    view.report(node, (channel, bob), "bob", 1, Left::Dropped, t0);
    let kept = |user: Id| {
        view.channels[&channel]
            .get(&user)
            .map(|s| s.username.0.clone())
    };
    assert_eq!(kept(ann), Some(None), "the id is made again, not kept");
    assert_eq!(kept(bob), Some(Some("bob".into())));
    assert_eq!(view.username_of(channel, ann), Some(ann.to_string()));
    let mut shown: Vec<(Id, String)> = view
        .poll(t0)
        .into_iter()
        .map(|c| (c.user, c.username))
        .collect();
    shown.sort();
    let mut expected = vec![(ann, ann.to_string()), (bob, "bob".to_string())];
    expected.sort();
    assert_eq!(shown, expected);
    // A name in upper case is not the id's text: it is kept as given.
    let upper = ann.to_string().to_uppercase();
    view.report(node, (channel, ann), &upper, 1, Left::Dropped, t0);
    assert_eq!(view.username_of(channel, ann), Some(upper));
}

#[test]
fn going_online_is_announced_at_the_next_poll_and_once_for_many_tabs() {
    let [node, channel, ann] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.report(node, (channel, ann), "ann", 3, Left::Dropped, t0);
    let changes = view.poll(t0);
    assert_eq!(online(&changes), [(ann, true)]);
    assert_eq!(changes[0].username, "ann");
    assert!(view.poll(t0).is_empty(), "announced once");
    let snapshot = view.snapshot(channel, 10, None);
    assert_eq!(snapshot.count, 1);
    assert_eq!(snapshot.members[0].connections, 3);
}

#[test]
fn a_drop_is_offline_only_after_the_grace_and_a_return_within_it_shows_nothing() {
    let [node, other, channel, ann] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.poll(t0);
    // A reload: dropped here, back on another node within the grace.
    view.report(node, (channel, ann), "ann", 0, Left::Dropped, t0);
    assert!(view.poll(t0 + Duration::from_secs(1)).is_empty());
    view.report(
        other,
        (channel, ann),
        "ann",
        1,
        Left::Dropped,
        t0 + Duration::from_secs(2),
    );
    assert!(
        view.poll(t0 + GRACE * 2).is_empty(),
        "no offline/online pair"
    );
    // Gone for good: offline once the grace ran out.
    let t1 = t0 + GRACE * 3;
    view.report(other, (channel, ann), "ann", 0, Left::Dropped, t1);
    assert!(view.poll(t1 + GRACE - Duration::from_millis(1)).is_empty());
    assert_eq!(view.next_deadline(), Some(t1 + GRACE));
    assert_eq!(online(&view.poll(t1 + GRACE)), [(ann, false)]);
    assert_eq!(view.snapshot(channel, 10, None).count, 0);
    assert_eq!(view.next_deadline(), None);
}

#[test]
fn an_ended_subscription_is_offline_at_once_even_within_a_grace() {
    let [node, channel, ann, bob] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.report(node, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.poll(t0);
    // Banned: no grace.
    view.report(node, (channel, ann), "ann", 0, Left::Ended, t0);
    // Dropped, then banned while in the grace: offline at once too.
    view.report(node, (channel, bob), "bob", 0, Left::Dropped, t0);
    view.report(node, (channel, bob), "bob", 0, Left::Ended, t0);
    let mut changes = online(&view.poll(t0));
    changes.sort();
    let mut want = vec![(ann, false), (bob, false)];
    want.sort();
    assert_eq!(changes, want);
}

#[test]
fn a_user_who_goes_and_comes_back_within_one_poll_produces_nothing() {
    let [node, channel, ann, bob] = ids();
    let t0 = Instant::now();
    let mut view = View::new(Duration::ZERO);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.poll(t0);
    view.report(node, (channel, ann), "ann", 0, Left::Ended, t0);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    // And one who comes and goes unseen.
    view.report(node, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.report(node, (channel, bob), "bob", 0, Left::Ended, t0);
    assert!(view.poll(t0).is_empty());
    assert_eq!(view.snapshot(channel, 10, None).count, 1);
}

#[test]
fn a_dead_nodes_users_go_offline_after_the_grace_unless_another_node_holds_them() {
    let [dead, alive, channel, ann, bob] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(dead, (channel, ann), "ann", 2, Left::Dropped, t0);
    view.report(dead, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.report(alive, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.poll(t0);
    view.node_gone(dead, t0);
    assert!(view.poll(t0).is_empty());
    assert_eq!(online(&view.poll(t0 + GRACE)), [(ann, false)]);
    let snapshot = view.snapshot(channel, 10, None);
    assert_eq!(snapshot.count, 1);
    assert_eq!(snapshot.members[0].user, bob);
    assert_eq!(snapshot.members[0].connections, 1);
}

#[test]
fn a_sync_replaces_what_a_node_held() {
    let [node, other, channel, ann, bob, cat] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.report(node, (channel, bob), "bob", 2, Left::Dropped, t0);
    view.report(other, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.poll(t0);
    // The node now holds bob once and cat; ann is gone (dropped).
    let entries = vec![
        (channel, bob, "bob".to_string(), 1),
        (channel, cat, "cat".to_string(), 1),
    ];
    view.replace_node(node, entries, t0);
    assert_eq!(online(&view.poll(t0)), [(cat, true)]);
    assert_eq!(online(&view.poll(t0 + GRACE)), [(ann, false)]);
    let snapshot = view.snapshot(channel, 10, None);
    let bob_member = snapshot
        .members
        .iter()
        .find(|m| m.user == bob)
        .expect("bob");
    assert_eq!(bob_member.connections, 2, "one here, one on the other node");
}

#[test]
fn a_snapshot_holds_at_most_the_limit_and_the_full_count() {
    let [node, channel] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    for _ in 0..25 {
        view.report(node, (channel, Id::new_v4()), "u", 1, Left::Dropped, t0);
    }
    assert_eq!(view.poll(t0).len(), 25, "one change each, in one poll");
    let snapshot = view.snapshot(channel, 10, None);
    assert_eq!(
        (snapshot.count, snapshot.members.len(), snapshot.truncated),
        (25, 10, true)
    );
    assert!(snapshot.members.windows(2).all(|w| w[0].user < w[1].user));
    let all = view.snapshot(channel, 25, None);
    assert!(!all.truncated);
    assert_eq!(all.generation, 1);
}

#[test]
fn a_snapshot_is_what_was_announced_and_the_asker() {
    let [node, channel, ann, bob] = ids();
    let t0 = Instant::now();
    let mut view = View::new(GRACE);
    view.report(node, (channel, ann), "ann", 1, Left::Dropped, t0);
    view.poll(t0);
    // Bob came, ann left: not announced yet, so not in a snapshot, but a
    // user asking is in their own.
    view.report(node, (channel, bob), "bob", 1, Left::Dropped, t0);
    view.report(node, (channel, ann), "ann", 0, Left::Ended, t0);
    let users = |s: &Snapshot| s.members.iter().map(|m| m.user).collect::<Vec<_>>();
    assert_eq!(users(&view.snapshot(channel, 10, None)), [ann]);
    let mut both = vec![ann, bob];
    both.sort();
    assert_eq!(users(&view.snapshot(channel, 10, Some(bob))), both);
    // The next poll's changes are the changes to it.
    let changes = view.poll(t0);
    assert_eq!(changes.len(), 2);
    assert_eq!(users(&view.snapshot(channel, 10, None)), [bob]);
}

mod property {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Clone, Debug)]
    enum Op {
        Report {
            node: usize,
            user: usize,
            connections: u32,
            ended: bool,
        },
        NodeGone(usize),
        Wait(u64),
        Poll,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..3usize, 0..4usize, 0..3u32, any::<bool>()).prop_map(
                |(node, user, connections, ended)| Op::Report { node, user, connections, ended }
            ),
            1 => (0..3usize).prop_map(Op::NodeGone),
            2 => (0..8_000u64).prop_map(Op::Wait),
            3 => Just(Op::Poll),
        ]
    }

    /// The rules written plainly: per user, each node's connections and
    /// when their grace ends; online while connected or within it.
    #[derive(Default)]
    struct Model {
        nodes: BTreeMap<usize, BTreeMap<usize, u32>>,
        grace_until: BTreeMap<usize, Instant>,
    }

    impl Model {
        fn connections(&self, user: usize) -> u32 {
            self.nodes
                .values()
                .filter_map(|users| users.get(&user))
                .sum()
        }
        fn online(&self, user: usize, now: Instant) -> bool {
            self.connections(user) > 0 || self.grace_until.get(&user).is_some_and(|t| now < *t)
        }
    }

    proptest! {
        /// After every poll, what was announced is who is online, every
        /// change announced flips a user, and a snapshot agrees with it.
        #[test]
        fn announcements_follow_the_rules(ops in prop::collection::vec(op(), 1..80)) {
            let nodes: Vec<Id> = (0..3).map(|_| Id::new_v4()).collect();
            let users: Vec<Id> = (0..4).map(|_| Id::new_v4()).collect();
            let channel = Id::new_v4();
            let grace = Duration::from_secs(5);
            let mut now = Instant::now();
            let mut view = View::new(grace);
            let mut model = Model::default();
            let mut announced: BTreeSet<usize> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Report { node, user, connections, ended } => {
                        let before = model.connections(user);
                        model.nodes.entry(node).or_default().insert(user, connections);
                        let after = model.connections(user);
                        if after > 0 {
                            model.grace_until.remove(&user);
                        } else if before > 0 && !ended {
                            model.grace_until.insert(user, now + grace);
                        } else if ended {
                            model.grace_until.remove(&user);
                        }
                        let left = if ended { Left::Ended } else { Left::Dropped };
                        view.report(nodes[node], (channel, users[user]), "u", connections, left, now);
                    }
                    Op::NodeGone(node) => {
                        let held: Vec<usize> = model.nodes.get(&node).map(|m| m.keys().copied().collect()).unwrap_or_default();
                        let before: BTreeMap<usize, u32> = held.iter().map(|u| (*u, model.connections(*u))).collect();
                        model.nodes.remove(&node);
                        for user in held {
                            if before[&user] > 0 && model.connections(user) == 0 {
                                model.grace_until.insert(user, now + grace);
                            }
                        }
                        view.node_gone(nodes[node], now);
                    }
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                    Op::Poll => {
                        let changes = view.poll(now);
                        let online: BTreeSet<usize> = (0..4).filter(|u| model.online(*u, now)).collect();
                        for change in &changes {
                            let u = users.iter().position(|x| *x == change.user).expect("a known user");
                            prop_assert_eq!(change.online, !announced.contains(&u), "a change flips");
                            if change.online { announced.insert(u); } else { announced.remove(&u); }
                        }
                        prop_assert_eq!(&announced, &online);
                        let snapshot = view.snapshot(channel, 10, None);
                        prop_assert_eq!(snapshot.count, online.len());
                    }
                }
            }
        }
    }
}
