//! The router's verdict on its consumer from its probes of the stream: a
//! small state machine, each probe's answer (or its silence) in, "lost, and
//! why" out, with no I/O, so its rules are tested without a cluster.

use std::time::{Duration, Instant};

/// How long the router's consumer may deliver nothing while the stream
/// holds events from `next_seq` on (seen by two probes this far apart, or
/// by the first answer after probes went unanswered this long) before the
/// router takes it for lost and replaces it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the router takes its consumer for lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lost {
    /// The stream has a new leader: the consumer (one replica) may have
    /// gone with the old leader's server, and it is never moved; async-nats
    /// would only find it gone after missed heartbeats, and recreate it
    /// with requests that wait up to 10 s each while the cluster elects.
    LeaderChanged,
    /// It delivered nothing for [`STALL_TIMEOUT`] while the stream held more.
    Stalled,
}

/// What the router knows of the stream from its probes, across consumers:
/// a small state machine, answers and silences in, a verdict out.
#[derive(Debug, Default)]
pub(super) struct Probed {
    /// The server leading the stream at the last answer.
    pub(super) leader: Option<String>,
    /// `next_seq`, and since when answers have shown the stream holding it.
    waiting: Option<(u64, Instant)>,
    /// `next_seq`, and when the first probe since the last answer went
    /// unanswered.
    unanswered: Option<(u64, Instant)>,
}

impl Probed {
    /// Notes an answer at `now`; whether it shows the consumer lost.
    pub(super) fn answered(
        &mut self,
        leader: Option<String>,
        last_seq: u64,
        next_seq: u64,
        now: Instant,
    ) -> Option<Lost> {
        let changed = matches!((&self.leader, &leader), (Some(old), Some(new)) if old != new);
        if leader.is_some() {
            self.leader = leader;
        }
        let stuck_since = |at: Option<(u64, Instant)>| match at {
            Some((seq, since)) if seq == next_seq => Some(since),
            _ => None,
        };
        let waiting = last_seq >= next_seq;
        let since = [stuck_since(self.waiting), stuck_since(self.unanswered)]
            .into_iter()
            .flatten()
            .min();
        let stalled = waiting && since.is_some_and(|since| now - since >= STALL_TIMEOUT);
        self.waiting = waiting.then(|| (next_seq, stuck_since(self.waiting).unwrap_or(now)));
        self.unanswered = None;
        if changed {
            Some(Lost::LeaderChanged)
        } else if stalled {
            Some(Lost::Stalled)
        } else {
            None
        }
    }

    /// Notes a probe that went unanswered at `now`.
    pub(super) fn unanswered(&mut self, next_seq: u64, now: Instant) {
        self.unanswered.get_or_insert((next_seq, now));
    }

    pub(super) fn in_doubt(&self) -> bool {
        self.unanswered.is_some()
    }

    /// A new consumer starts: what was waiting is its to route.
    pub(super) fn restart(&mut self) {
        self.waiting = None;
        self.unanswered = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_new_leader_means_a_new_consumer_the_first_one_is_learnt() {
        let t = Instant::now();
        let mut p = Probed::default();
        assert_eq!(p.answered(Some("n0".into()), 10, 11, t), None);
        assert_eq!(p.answered(Some("n0".into()), 10, 11, at(t, 1000)), None);
        // No leader named (a single server): nothing changes.
        assert_eq!(p.answered(None, 10, 11, at(t, 2000)), None);
        assert_eq!(
            p.answered(Some("n1".into()), 10, 11, at(t, 3000)),
            Some(Lost::LeaderChanged)
        );
        assert_eq!(p.answered(Some("n1".into()), 10, 11, at(t, 4000)), None);
    }

    #[test]
    fn events_waiting_with_no_progress_for_the_stall_timeout_is_a_stall() {
        let t = Instant::now();
        let mut p = Probed::default();
        assert_eq!(p.answered(None, 20, 11, t), None);
        // Quick probes (while in doubt) see no stall before the timeout.
        assert_eq!(p.answered(None, 20, 11, at(t, 100)), None);
        assert_eq!(p.answered(None, 25, 11, at(t, 999)), None);
        assert_eq!(p.answered(None, 25, 11, at(t, 1000)), Some(Lost::Stalled));
        // Progress starts the count again.
        let mut p = Probed::default();
        assert_eq!(p.answered(None, 20, 11, t), None);
        assert_eq!(p.answered(None, 30, 21, at(t, 1500)), None);
        // Caught up: nothing waits, no stall however long.
        assert_eq!(p.answered(None, 30, 31, at(t, 9000)), None);
        assert_eq!(p.answered(None, 30, 31, at(t, 19000)), None);
    }

    #[test]
    fn probes_unanswered_then_events_waiting_unrouted_is_a_stall() {
        let t = Instant::now();
        let mut p = Probed::default();
        p.unanswered(11, t);
        assert!(p.in_doubt());
        p.unanswered(11, at(t, 500));
        assert_eq!(p.answered(None, 40, 11, at(t, 1200)), Some(Lost::Stalled));
        assert!(!p.in_doubt());
        // A short silence with events waiting is not one yet.
        let mut p = Probed::default();
        p.unanswered(11, t);
        assert_eq!(p.answered(None, 40, 11, at(t, 300)), None);
        // Routed meanwhile: not stalled.
        let mut p = Probed::default();
        p.unanswered(11, t);
        assert_eq!(p.answered(None, 40, 30, at(t, 5000)), None);
    }

    #[test]
    fn a_new_consumer_starts_with_a_clean_slate() {
        let t = Instant::now();
        let mut p = Probed::default();
        assert_eq!(p.answered(Some("n0".into()), 20, 11, t), None);
        p.restart();
        assert_eq!(p.answered(Some("n0".into()), 20, 11, at(t, 1500)), None);
        assert_eq!(
            p.answered(Some("n0".into()), 20, 11, at(t, 2500)),
            Some(Lost::Stalled)
        );
    }
}
