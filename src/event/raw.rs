//! The `data` object as its publisher wrote it, kept beside the typed
//! [`EventData`] so that fields this version does not know reach clients
//! unchanged (tolerant reading: README "Publishers can be newer than the gateway").
//!
//! Architecture invariant: the typed data stays the authority (it is what
//! is validated, routed and authorized); the kept text only travels.

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{EventData, EventError};

/// The JSON text of one event's `data` object, as given.
///
/// Invariant: the text is one JSON object, the same the typed data beside
/// it was decoded from, except that every id field the typed data reads is
/// written in its canonical form (lower-case, no escapes), as the gateway
/// writes ids. The only constructors are [`EventData::decode_kept`] and
/// [`RawData::without`], so a `RawData` always agrees with its typed data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawData(Arc<str>);

impl RawData {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An added type's text, canonical since it was decoded (it is the
    /// kept text: an added type has no typed form beside it).
    pub(super) fn of_added(data: &super::AddedData) -> RawData {
        RawData(data.text.clone())
    }

    /// Keeps `json`, which `data` was just decoded from. Ids given in any
    /// other form than the canonical one are rewritten in it, the other
    /// fields stay as they were given (byte for byte).
    pub(super) fn keep(json: &str, data: &EventData) -> Result<RawData, EventError> {
        // Without an upper-case hex digit or an escape, every id the typed
        // decoder accepted is already canonical: the common case, no second
        // parse.
        if !json.bytes().any(|b| matches!(b, b'A'..=b'F' | b'\\')) {
            return Ok(RawData(Arc::from(json)));
        }
        let ids = data.id_fields();
        let canonical = |key: &str| {
            ids.iter()
                .find(|(name, _)| *name == key)
                .map(|(_, id)| format!("\"{id}\""))
        };
        let Fields(fields) = serde_json::from_str(json).map_err(|source| EventError::Data {
            kind: data.kind().as_str(),
            source,
        })?;
        let all_canonical = fields.iter().all(|(key, value)| match canonical(key) {
            Some(id) => value.get() == id,
            None => true,
        });
        if all_canonical {
            return Ok(RawData(Arc::from(json)));
        }
        let mut out = String::with_capacity(json.len());
        write_object(
            &mut out,
            fields.iter().map(|(key, value)| {
                let value = match canonical(key) {
                    Some(id) => Cow::Owned(id),
                    None => Cow::Borrowed(value.get()),
                };
                (key.as_ref(), value)
            }),
        );
        Ok(RawData(Arc::from(out)))
    }

    /// The same object without the field `key` (every occurrence), the
    /// other fields as they were; `None` if the text does not parse, which
    /// the invariant rules out.
    pub fn without(&self, key: &str) -> Option<RawData> {
        let Fields(fields) = serde_json::from_str(&self.0).ok()?;
        let mut out = String::with_capacity(self.0.len());
        write_object(
            &mut out,
            fields
                .iter()
                .filter(|(k, _)| k != key)
                .map(|(k, v)| (k.as_ref(), Cow::Borrowed(v.get()))),
        );
        Some(RawData(Arc::from(out)))
    }
}

fn write_object<'a>(out: &mut String, fields: impl Iterator<Item = (&'a str, Cow<'a, str>)>) {
    out.push('{');
    for (n, (key, value)) in fields.enumerate() {
        if n > 0 {
            out.push(',');
        }
        // A string always serializes; the fallback keeps the text JSON.
        match serde_json::to_string(key) {
            Ok(key) => out.push_str(&key),
            Err(_) => out.push_str("\"\""),
        }
        out.push(':');
        out.push_str(&value);
    }
    out.push('}');
}

/// A JSON object's top-level fields in their order, each value as its text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(key)) = map.next_key()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Object)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{EventData, EventType};

    const C: &str = "0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
    const U: &str = "11111111-2222-4333-8444-555555555555";

    fn kept(kind: EventType, json: &str) -> String {
        let (_, raw) = EventData::decode_kept(kind, json).unwrap();
        raw.as_str().to_owned()
    }

    #[test]
    fn unknown_fields_are_kept_byte_for_byte() {
        let json = format!(
            r#"{{"channel_id":"{C}", "message_id" : "{U}","content":"Ab\"c","x":[1.50, {{"y":null}}],"n":12345678901234567890123}}"#
        );
        assert_eq!(kept(EventType::MessageUpdated, &json), json);
    }

    #[test]
    fn ids_are_written_canonically_and_the_rest_as_given() {
        let upper = C.to_uppercase();
        let json = format!(
            r#"{{"channel_id":"{upper}","message_id":"{U}","content":"é\u00e9","other_id":"{upper}"}}"#
        );
        let expected = format!(
            r#"{{"channel_id":"{C}","message_id":"{U}","content":"é\u00e9","other_id":"{upper}"}}"#
        );
        assert_eq!(kept(EventType::MessageUpdated, &json), expected);
        let escaped = format!(r#"{{"channel_id":"\u0030{}","message_id":"{U}"}}"#, &C[1..]);
        assert_eq!(
            kept(EventType::MessageDeleted, &escaped),
            format!(r#"{{"channel_id":"{C}","message_id":"{U}"}}"#)
        );
    }

    #[test]
    fn without_drops_one_field_and_keeps_the_others() {
        let json = format!(r#"{{"channel_id":"{C}","user_id":"{U}","motive":"spam","x":{{}}}}"#);
        let (_, raw) = EventData::decode_kept(EventType::UserBanned, &json).unwrap();
        assert_eq!(
            raw.without("user_id").unwrap().as_str(),
            format!(r#"{{"channel_id":"{C}","motive":"spam","x":{{}}}}"#)
        );
    }
}
