//! Access tokens: the JWT claims a client presents, their verification and
//! minting development tokens.
//!
//! Verification goes header, signature, claims, clock: HS256 only (`alg:
//! none` and every other algorithm are refused), then each claim read by hand
//! so that a malformed one is named with what was expected, then `exp`,
//! `nbf` and `iat` against the clock (`nbf` and `iat` within a leeway). Every
//! refusal is a [`TokenError`] whose message says what a person can act on;
//! it never names a parser's internals nor quotes more than a short excerpt
//! of what the token holds.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::channel::Id;

/// The one algorithm tokens may be signed with.
pub const ALGORITHM: &str = "HS256";

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
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        match name {
            "publisher" => Some(Role::Publisher),
            "auditor" => Some(Role::Auditor),
            _ => None,
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

const SUB_EXPECTED: &str = "the user's id, a hyphenated UUID string";
const TIME_EXPECTED: &str = "seconds since the epoch, a number";
const NAME_EXPECTED: &str = "a string, the username shown with typing";
const ROLES_EXPECTED: &str =
    "a list of role names (`publisher`, `auditor`; other names are ignored)";

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
fn numeric_date(
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
fn describe(value: &Value) -> String {
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
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// Why a token was refused; each message says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer <jwt>` or `?token=<jwt>`")]
    Missing,
    /// No token on a route that takes it only from the header (the HTTP API).
    #[error(
        "no token: send `Authorization: Bearer <jwt>` (the `?token=` parameter is only for `/v1/ws`)"
    )]
    MissingHeader,
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    #[error("token signed with `{0}`: this gateway accepts only HS256-signed tokens")]
    Algorithm(String),
    #[error(
        "bad signature: the token was not signed with this gateway's secret \
         (is SWITCHBOARD_JWT_SECRET / --jwt-secret the secret the token's issuer signs with?)"
    )]
    BadSignature,
    #[error("token expired {seconds_ago} s ago (claim `exp`): get a fresh token")]
    Expired { seconds_ago: u64 },
    #[error(
        "token not valid yet: its `nbf` (not before) is {ahead} s ahead of the gateway's clock, \
         beyond the {leeway} s leeway; check the issuer's clock"
    )]
    NotYetValid { ahead: u64, leeway: u64 },
    #[error(
        "token issued in the future: its `iat` is {ahead} s ahead of the gateway's clock, \
         beyond the {leeway} s leeway; check the issuer's clock"
    )]
    IssuedInFuture { ahead: u64, leeway: u64 },
    #[error(
        "token meant for an audience (claim `aud`): this gateway accepts only tokens without one"
    )]
    Audience,
    #[error("claim `{claim}` is missing: expected {expected}")]
    MissingClaim {
        claim: &'static str,
        expected: &'static str,
    },
    #[error("claim `{claim}` is malformed ({found}): expected {expected}")]
    BadClaim {
        claim: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

impl TokenError {
    fn missing(claim: &'static str, expected: &'static str) -> TokenError {
        TokenError::MissingClaim { claim, expected }
    }

    fn bad(claim: &'static str, expected: &'static str, found: String) -> TokenError {
        TokenError::BadClaim {
            claim,
            expected,
            found,
        }
    }
}

/// Verifies and mints HS256 tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    leeway: Duration,
}

impl TokenKeys {
    /// Keys for `secret`, with no leeway for the issuer's clock.
    pub fn hs256(secret: &[u8]) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        // The library checks the signature, the algorithm and `aud`; the
        // claims and the clock are checked here, to name what is wrong.
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims::<&str>(&[]);
        TokenKeys {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            leeway: Duration::ZERO,
        }
    }

    /// How far in the future a token's `nbf` and `iat` may be (the
    /// issuer's clock may run ahead). `exp` has none: a live connection is
    /// closed at `exp` too.
    pub fn with_leeway(mut self, leeway: Duration) -> TokenKeys {
        self.leeway = leeway;
        self
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// [`verify`](Self::verify) with the clock at `now` (seconds since the
    /// epoch).
    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        check_header(token)?;
        let payload =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)
                .map_err(|e| library_error(e.kind()))?
                .claims;
        let claims = Claims::from_payload(&payload)?;
        if claims.exp <= now {
            return Err(TokenError::Expired {
                seconds_ago: now.saturating_sub(claims.exp).unsigned_abs(),
            });
        }
        let leeway = self.leeway.as_secs();
        let latest = now.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX));
        let ahead = |t: i64| t.saturating_sub(now).unsigned_abs();
        if let Some(nbf) = numeric_date(&payload, "nbf")? {
            if nbf > latest {
                let ahead = ahead(nbf);
                return Err(TokenError::NotYetValid { ahead, leeway });
            }
        }
        if let Some(iat) = numeric_date(&payload, "iat")? {
            if iat > latest {
                let ahead = ahead(iat);
                return Err(TokenError::IssuedInFuture { ahead, leeway });
            }
        }
        Ok(claims)
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Mint(e.to_string()))
    }
}

/// Reads the header before the library does: its own error for an
/// algorithm it does not know (`none`) names its enum's variants.
fn check_header(token: &str) -> Result<(), TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three base64url parts separated by dots (header.payload.signature)",
        ));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object"))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM => Ok(()),
        Some(Value::String(alg)) => Err(TokenError::Algorithm(excerpt(alg))),
        _ => Err(TokenError::Malformed("the header has no `alg`")),
    }
}

/// The library's refusal, in the words of [`TokenError`].
fn library_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            TokenError::Algorithm("an algorithm other than HS256".into())
        }
        ErrorKind::Base64(_) => {
            TokenError::Malformed("the payload or the signature is not base64url")
        }
        ErrorKind::Utf8(_) => TokenError::Malformed("the payload is not UTF-8"),
        ErrorKind::Json(_) => {
            TokenError::Malformed("the header or the payload is not the JSON object a JWT holds")
        }
        other => {
            tracing::debug!(error = ?other, "token refused");
            TokenError::Malformed("the token cannot be read")
        }
    }
}

/// Claims for a development token valid for `ttl` from now.
pub fn dev_claims(
    sub: Id,
    ttl: Duration,
    name: Option<String>,
    channels: Grant,
    roles: Vec<Role>,
) -> Claims {
    let exp = chrono::Utc::now().timestamp() + ttl.as_secs().min(i64::MAX as u64 / 2) as i64;
    Claims {
        sub,
        exp,
        name,
        channels,
        roles,
    }
}

#[cfg(test)]
mod tests;
