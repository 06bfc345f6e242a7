//! The claims switchboard reads from a verified token (`sub`, `exp`,
//! `name`, `channels`, `roles`), each read by hand so that a malformed one
//! is named with what it should hold.

use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::TokenError;
use crate::channel::Id;

/// Characters of a token's own text quoted in an error, at most.
const MAX_QUOTED: usize = 40;

/// Which chat channels a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Grant {
    /// No `channels` claim: membership alone decides.
    #[default]
    None,
    /// `"*"`: every channel (bans and deletions still deny).
    All,
    /// A list of channel ids.
    Some(Vec<Id>),
}

/// What the `channels` claim may hold, as error messages say it.
const CHANNELS_EXPECTED: &str = "\"*\" or a list of channel ids (hyphenated UUIDs, with or \
without the `channel:` prefix; a \"*\" in the list means every channel)";

impl Grant {
    pub fn allows(&self, channel: Id) -> bool {
        match self {
            Grant::None => false,
            Grant::All => true,
            Grant::Some(ids) => ids.contains(&channel),
        }
    }

    /// Reads the `channels` claim: absent or `null` is no grant, `"*"` is
    /// every channel, and so is a list that contains `"*"`; otherwise a list
    /// of channel ids, each with or without the `channel:` prefix. The error
    /// says what is wrong, for [`TokenError::BadClaim`].
    pub fn from_claim(value: Option<&Value>) -> Result<Grant, String> {
        let items = match value {
            None | Some(Value::Null) => return Ok(Grant::None),
            Some(Value::String(s)) if s == "*" => return Ok(Grant::All),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(describe(other)),
        };
        let mut all = false;
        let mut ids = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            let item_n = n + 1;
            match item {
                Value::String(s) if s == "*" => all = true,
                Value::String(s) => {
                    let id = s.strip_prefix("channel:").unwrap_or(s);
                    ids.push(Id::parse(id).map_err(|e| format!("item {item_n}: {e}"))?);
                }
                other => return Err(format!("item {item_n}: {}", describe(other))),
            }
        }
        Ok(if all { Grant::All } else { Grant::Some(ids) })
    }
}

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Grant::None => s.serialize_none(),
            Grant::All => s.serialize_str("*"),
            Grant::Some(ids) => ids.serialize(s),
        }
    }
}

/// What a token may do besides reading its own channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May use `POST /v1/events`.
    Publisher,
    /// May use `GET /v1/history/{channel}`.
    Auditor,
    /// May use the operator routes (`POST /v1/users/{user_id}/disconnect`).
    Admin,
}

impl Role {
    /// Every role, in the order messages list them.
    pub const ALL: [Role; 3] = [Role::Publisher, Role::Auditor, Role::Admin];

    /// The role named `name` in a token's `roles` claim.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }

    /// The role's name in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// The claims switchboard reads; others are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The user.
    pub sub: Id,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The username shown with this user's typing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "is_none_grant")]
    pub channels: Grant,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

fn is_none_grant(g: &Grant) -> bool {
    *g == Grant::None
}

pub(super) const SUB_EXPECTED: &str = "the user's id, a hyphenated UUID string";
const TIME_EXPECTED: &str = "seconds since the epoch, a number";
const NAME_EXPECTED: &str = "a string, the username shown with typing";
const ROLES_EXPECTED: &str =
    "a list of role names (`publisher`, `auditor`, `admin`; other names are ignored)";

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The name typing shows: the token's `name`, else the user id.
    pub fn username(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.sub.to_string())
    }

    /// Time left before expiry (zero when past).
    pub fn time_left(&self) -> Duration {
        let now = chrono::Utc::now().timestamp();
        Duration::from_secs(self.exp.saturating_sub(now).max(0) as u64)
    }

    /// Reads the claims from a verified payload, each one checked on its
    /// own so that an error names the claim and what it should hold. Roles
    /// this gateway does not know are ignored, not an error: tokens are
    /// often shared with other services.
    pub fn from_payload(payload: &Map<String, Value>) -> Result<Claims, TokenError> {
        let sub = match payload.get("sub") {
            None | Some(Value::Null) => return Err(TokenError::missing("sub", SUB_EXPECTED)),
            Some(Value::String(s)) => {
                Id::parse(s).map_err(|e| TokenError::bad("sub", SUB_EXPECTED, e.to_string()))?
            }
            Some(other) => return Err(TokenError::bad("sub", SUB_EXPECTED, describe(other))),
        };
        let exp = numeric_date(payload, "exp")?
            .ok_or_else(|| TokenError::missing("exp", "the expiry, in seconds since the epoch"))?;
        let name = match payload.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(TokenError::bad("name", NAME_EXPECTED, describe(other))),
        };
        let channels = Grant::from_claim(payload.get("channels"))
            .map_err(|found| TokenError::bad("channels", CHANNELS_EXPECTED, found))?;
        let roles = match payload.get("roles") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => {
                let mut roles = Vec::new();
                for (n, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => roles.extend(Role::parse(s)),
                        other => {
                            let found = format!("item {}: {}", n + 1, describe(other));
                            return Err(TokenError::bad("roles", ROLES_EXPECTED, found));
                        }
                    }
                }
                roles
            }
            Some(other) => return Err(TokenError::bad("roles", ROLES_EXPECTED, describe(other))),
        };
        Ok(Claims {
            sub,
            exp,
            name,
            channels,
            roles,
        })
    }
}

/// A NumericDate claim (`exp`, `nbf`, `iat`): seconds since the epoch, a
/// fraction rounded down; `None` when absent or `null`.
pub(super) fn numeric_date(
    payload: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, TokenError> {
    match payload.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            // Beyond i64 the cast saturates; NaN and infinities are not JSON.
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| TokenError::bad(claim, TIME_EXPECTED, "found an odd number".into())),
        Some(other) => Err(TokenError::bad(claim, TIME_EXPECTED, describe(other))),
    }
}

/// What a JSON value is, for an error, quoting at most a short excerpt.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "found null".into(),
        Value::Bool(b) => format!("found {b}"),
        Value::Number(_) => "found a number".into(),
        Value::String(s) if s.is_empty() => "found an empty string".into(),
        Value::String(s) => format!("found the string `{}`", excerpt(s)),
        Value::Array(_) => "found a list".into(),
        Value::Object(_) => "found an object".into(),
    }
}

/// At most [`MAX_QUOTED`] characters of `s`, with `…` when cut.
pub(super) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}
