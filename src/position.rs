//! Where an event is in the stream: the stream's [`Epoch`] (which
//! incarnation of it) and a [`StreamPosition`] (a sequence in one epoch).
//! Domain values: they know nothing of NATS; the log measures them, the
//! protocol, the sessions and the projection carry them.

use chrono::{DateTime, Utc};

/// Which incarnation of the stream the log holds: its creation time.
///
/// A stream deleted and created again under the same name (a disaster
/// recovery, a restore into a new cluster) starts its seqs again at 1 and
/// has another epoch: seqs of one epoch mean nothing in another. Every node
/// reading the stream sees the same epoch. On the wire, in session records
/// and in the projection's snapshot it is a string (the creation time in
/// RFC 3339 with nanoseconds); clients compare it, never parse it. Inside
/// the gateway it is this value, compared as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(DateTime<Utc>);

impl Epoch {
    /// The epoch of a stream created at `created`.
    pub fn created_at(created: DateTime<Utc>) -> Epoch {
        Epoch(created)
    }

    /// The epoch a string names. A string that is no epoch's form (a
    /// client's or a record's that this gateway never wrote) names an epoch
    /// no stream has: seqs counted in it mean nothing in any stream here.
    pub fn parse(text: &str) -> Epoch {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Epoch(t.with_timezone(&Utc)))
            .unwrap_or(Epoch::NONE_OF_OURS)
    }

    /// An epoch no stream has (no stream is created at the dawn of time).
    const NONE_OF_OURS: Epoch = Epoch(DateTime::<Utc>::MIN_UTC);
}

impl From<&str> for Epoch {
    fn from(text: &str) -> Epoch {
        Epoch::parse(text)
    }
}

impl serde::Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Epoch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Epoch, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Epoch::parse(&text))
    }
}

/// A position in the stream: a sequence, and the epoch of the stream it
/// counts in (`None` only for what was written before epochs existed: it
/// belongs to the stream it was written beside, the current one). What a
/// client resumes from, and what a session keeps per subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

impl StreamPosition {
    /// Whether the position counts in `epoch` (one with no epoch does: it
    /// was written beside the current stream).
    pub fn counts_in(&self, epoch: Epoch) -> bool {
        self.epoch.is_none_or(|e| e == epoch)
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_round_trips_its_string_and_a_stranger_is_none_of_ours() {
        let created = DateTime::parse_from_rfc3339("2026-12-06T10:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let epoch = Epoch::created_at(created);
        let text = epoch.to_string();
        assert_eq!(text, "2026-12-06T10:00:00.123456789Z");
        assert_eq!(Epoch::parse(&text), epoch);
        let json = serde_json::to_string(&StreamPosition {
            seq: 7,
            epoch: Some(epoch),
        })
        .unwrap();
        assert_eq!(json, format!(r#"{{"seq":7,"epoch":"{text}"}}"#));
        let back: StreamPosition = serde_json::from_str(&json).unwrap();
        assert!(back.counts_in(epoch));
        let stranger: StreamPosition = serde_json::from_str(r#"{"seq":7,"epoch":"e1"}"#).unwrap();
        assert!(!stranger.counts_in(epoch));
        let before_epochs: StreamPosition = serde_json::from_str(r#"{"seq":7}"#).unwrap();
        assert!(before_epochs.counts_in(epoch));
    }
}
