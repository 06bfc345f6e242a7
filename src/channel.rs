//! Subscription channels (`channel:{id}`, `user:{id}`, `global`) and the ids
//! they are made of. Pure domain: this module knows nothing of NATS subjects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An id in the product: a UUID of any version, accepted only in its
/// hyphenated form (either case) and always written lower-case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub Uuid);

/// Why a string is not an id or a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("`{0}` is not a hyphenated UUID")]
    BadId(String),
    #[error("`{0}` is not a channel (expected `channel:{{uuid}}`, `user:{{uuid}}` or `global`)")]
    BadChannel(String),
}

impl Id {
    pub fn new_v4() -> Id {
        Id(Uuid::new_v4())
    }

    /// Parses the hyphenated form only: `Uuid::parse_str` also takes braced,
    /// URN and simple forms, which would give one id several spellings.
    pub fn parse(s: &str) -> Result<Id, ParseError> {
        // Bytes, not chars: this runs for every id of every event read
        // back from the log. A non-ASCII byte is no hyphen and no hex
        // digit, so `Uuid::parse_str` refuses it below.
        let hyphens_ok = s.len() == 36
            && s.bytes()
                .enumerate()
                .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
        if !hyphens_ok {
            return Err(ParseError::BadId(truncate(s)));
        }
        Uuid::parse_str(s)
            .map(Id)
            .map_err(|_| ParseError::BadId(truncate(s)))
    }
}

impl Id {
    /// Appends the lower-case hyphenated form.
    pub fn write_to(&self, out: &mut String) {
        let mut buf = Uuid::encode_buffer();
        out.push_str(self.0.hyphenated().encode_lower(&mut buf));
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Id {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Id, ParseError> {
        Id::parse(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Uuid::encode_buffer();
        s.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A subscription channel: what a client subscribes to and what every
/// delivered frame names in its `channel` field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `channel:{id}`: a chat channel's events, for its members.
    Chat(Id),
    /// `user:{id}`: moderation notices for one user only.
    User(Id),
    /// `global`: channel creation, for everyone.
    Global,
}

impl Channel {
    pub fn parse(s: &str) -> Result<Channel, ParseError> {
        let bad = || ParseError::BadChannel(truncate(s));
        if s == "global" {
            return Ok(Channel::Global);
        }
        let (kind, id) = s.split_once(':').ok_or_else(bad)?;
        let id = Id::parse(id).map_err(|_| bad())?;
        match kind {
            "channel" => Ok(Channel::Chat(id)),
            "user" => Ok(Channel::User(id)),
            _ => Err(bad()),
        }
    }

    /// Appends the channel's string form.
    pub fn write_to(&self, out: &mut String) {
        match self {
            Channel::Chat(id) => {
                out.push_str("channel:");
                id.write_to(out);
            }
            Channel::User(id) => {
                out.push_str("user:");
                id.write_to(out);
            }
            Channel::Global => out.push_str("global"),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Chat(id) => write!(f, "channel:{id}"),
            Channel::User(id) => write!(f, "user:{id}"),
            Channel::Global => f.write_str("global"),
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Channel {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Channel, ParseError> {
        Channel::parse(s)
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Channel, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Channel::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Error messages quote client input; a bounded quote keeps them small.
fn truncate(s: &str) -> String {
    const MAX_QUOTED: usize = 80;
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";

    #[test]
    fn channels_round_trip_lower_case() {
        for s in [
            format!("channel:{ID}"),
            format!("user:{ID}"),
            "global".to_string(),
        ] {
            assert_eq!(Channel::parse(&s).unwrap().to_string(), s);
        }
        let upper = format!("channel:{}", ID.to_uppercase());
        assert_eq!(
            Channel::parse(&upper).unwrap().to_string(),
            format!("channel:{ID}")
        );
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "global:",
            "channel:",
            "channel:*",
            "channel:>",
            "channel:0b6f2c1e.3d4a-4f5b-8c9d-0e1f2a3b4c5d",
            "channel:0b6f2c1e3d4a4f5b8c9d0e1f2a3b4c5d",
            "channel:{0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d}",
            "urn:uuid:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d",
            "room:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d",
            "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d.x",
            "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5g",
        ] {
            assert!(Channel::parse(s).is_err(), "{s:?} must be refused");
        }
    }

    #[test]
    fn error_quotes_are_bounded() {
        let long = "x".repeat(10_000);
        let msg = Channel::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 300);
    }
}
