//! The inputs: ids, channel names, timestamps and JSON values, each mostly
//! valid and sometimes slightly wrong, and frames close to real ones.

use super::*;

const FIELDS: &[&str] = &[
    "type",
    "channel",
    "since",
    "since_seq",
    "is_typing",
    "seq",
    "request_id",
    "epoch",
    "token",
    "presence",
];
const TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "typing",
    "ack",
    "ping",
    "refresh",
    "presence",
];

pub(crate) fn uuid_text() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<bool>()).prop_map(|(n, upper)| {
        let s = Uuid::from_u128(n).hyphenated().to_string();
        if upper {
            s.to_uppercase()
        } else {
            s
        }
    })
}

/// A string with one character replaced, inserted or removed.
pub(crate) fn mangled(s: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (s, any::<prop::sample::Index>(), any::<char>(), 0..3u8).prop_map(|(s, at, c, how)| {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len() + 1);
        match how {
            0 if i < chars.len() => chars[i] = c,
            1 => chars.insert(i, c),
            _ if i < chars.len() => {
                chars.remove(i);
            }
            _ => chars.push(c),
        }
        chars.into_iter().collect()
    })
}

pub(crate) fn valid_channel_text() -> impl Strategy<Value = String> {
    prop_oneof![
        uuid_text().prop_map(|u| format!("channel:{u}")),
        uuid_text().prop_map(|u| format!("user:{u}")),
        Just("global".to_string()),
    ]
}

pub(crate) fn channel_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => valid_channel_text(),
        2 => mangled(valid_channel_text()),
        1 => (
            prop::sample::select(vec!["channel", "user", "global", "Channel", "room", "", "chat"]),
            prop::sample::select(vec![":", "", "::", ": ", "."]),
            prop_oneof![uuid_text(), mangled(uuid_text()), ".{0,40}"],
        )
            .prop_map(|(k, sep, id)| format!("{k}{sep}{id}")),
        1 => any::<String>(),
    ]
}

pub(crate) fn rfc3339_text() -> impl Strategy<Value = String> {
    (
        1970i32..2200,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::option::of("[0-9]{1,9}"),
        prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            (any::<bool>(), 0u32..24, 0u32..60)
                .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
        ],
        prop::sample::select(vec!["T", "t", " "]),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off, sep)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

pub(crate) fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z_:.0-9-]{0,40}".prop_map(Value::String),
    ]
}

pub(crate) fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        1 => "[a-zA-Z_]{1,12}",
        1 => any::<String>(),
    ]
}

/// Any JSON value, nested up to a few levels.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Values of a field, present with probability `p`: usually the right
/// shape, sometimes anything.
pub(crate) fn field<S>(p: f64, good: S) -> impl Strategy<Value = Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop::option::weighted(p, prop_oneof![6 => good, 1 => json_leaf()])
}

/// A frame close to a real one: a real type (mostly), each field present or
/// not, with the right shape or not, plus unknown fields.
pub(crate) fn near_valid_frame() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        8 => prop::sample::select(TYPES.to_vec()).prop_map(Value::from),
        1 => prop_oneof![Just("Subscribe"), Just("pong"), Just(""), Just("subscribe ")]
            .prop_map(Value::from),
        1 => json_leaf(),
    ];
    let since = field(
        0.3,
        prop_oneof![
            3 => rfc3339_text().prop_map(Value::from),
            1 => mangled(rfc3339_text()).prop_map(Value::from),
        ],
    );
    let seq_like = |p| {
        field(
            p,
            prop_oneof![
                3 => any::<u64>().prop_map(Value::from),
                1 => any::<i64>().prop_map(Value::from),
                1 => (0.0f64..1e6).prop_map(|f| json!(f)),
                1 => any::<u64>().prop_map(|n| Value::from(n.to_string())),
            ],
        )
    };
    let request_id = field(
        0.5,
        prop_oneof![
            3 => ".{0,20}".prop_map(Value::from),
            1 => Just(Value::from("r".repeat(MAX_REQUEST_ID_LEN))),
            1 => Just(Value::from("r".repeat(MAX_REQUEST_ID_LEN + 1))),
            1 => Just(Value::from("é".repeat(MAX_REQUEST_ID_LEN / 2 + 1))),
            1 => Just(Value::Null),
        ],
    );
    (
        prop::option::weighted(0.95, kind),
        field(0.9, channel_text().prop_map(Value::from)),
        since,
        seq_like(0.3),
        field(0.7, any::<bool>().prop_map(Value::from)),
        seq_like(0.7),
        request_id,
        field(0.5, prop_oneof![3 => "[A-Za-z0-9_.-]{0,60}".prop_map(Value::from), 1 => Just(Value::from(""))]),
        prop::collection::vec((json_key(), json_value()), 0..3),
        field(
            0.3,
            prop_oneof![
                3 => any::<bool>().prop_map(Value::from),
                1 => Just(Value::Null),
                1 => Just(Value::from(1)),
            ],
        ),
    )
        .prop_map(
            |(kind, channel, since, since_seq, is_typing, seq, request_id, token, extra, presence)| {
                let mut obj = Map::new();
                for (k, v) in extra {
                    obj.insert(k, v);
                }
                let fields = [
                    ("type", kind),
                    ("channel", channel),
                    ("since", since),
                    ("since_seq", since_seq),
                    ("is_typing", is_typing),
                    ("seq", seq),
                    ("request_id", request_id),
                    ("token", token),
                    ("presence", presence),
                ];
                for (name, value) in fields {
                    if let Some(v) = value {
                        obj.insert(name.to_string(), v);
                    }
                }
                Value::Object(obj)
            },
        )
}
