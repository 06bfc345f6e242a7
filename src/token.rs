//! Access tokens: the JWT claims a client presents, their verification
//! (HS256 only; `alg: none` and every other algorithm are refused) and
//! minting development tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::Id;

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

impl Grant {
    pub fn allows(&self, channel: Id) -> bool {
        match self {
            Grant::None => false,
            Grant::All => true,
            Grant::Some(ids) => ids.contains(&channel),
        }
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

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Grant, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            List(Vec<Id>),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(Grant::None),
            Some(Raw::Star(s)) if s == "*" => Ok(Grant::All),
            Some(Raw::Star(_)) => Err(serde::de::Error::custom(
                "`channels` must be \"*\" or a list of channel ids",
            )),
            Some(Raw::List(ids)) => Ok(Grant::Some(ids)),
        }
    }
}

/// What a token may do besides reading its own channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May use `POST /v1/events`.
    Publisher,
    /// May use `GET /v1/history/{channel}`.
    Auditor,
}

/// The claims switchboard reads; others are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Id,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// The username shown with this user's typing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "is_none_grant")]
    pub channels: Grant,
    #[serde(
        default,
        deserialize_with = "lenient_roles",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub roles: Vec<Role>,
}

fn is_none_grant(g: &Grant) -> bool {
    *g == Grant::None
}

/// Roles this gateway does not know are ignored, not an error: tokens are
/// often shared with other services.
fn lenient_roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Role>, D::Error> {
    let raw = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .iter()
        .filter_map(|r| serde_json::from_value(serde_json::Value::String(r.clone())).ok())
        .collect())
}

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
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no token: send `Authorization: Bearer <jwt>` or `?token=<jwt>`")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies and mints HS256 tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn hs256(secret: &[u8]) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
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
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::hs256(b"test-secret")
    }

    #[test]
    fn round_trip_with_grants_and_roles() {
        let sub = Id::new_v4();
        let c = Id::new_v4();
        for grant in [Grant::None, Grant::All, Grant::Some(vec![c])] {
            let claims = dev_claims(
                sub,
                Duration::from_secs(60),
                Some("ann".into()),
                grant.clone(),
                vec![Role::Auditor],
            );
            let token = keys().mint(&claims).unwrap();
            let back = keys().verify(&token).unwrap();
            assert_eq!(back, claims);
            assert_eq!(back.channels.allows(c), grant != Grant::None);
        }
    }

    #[test]
    fn refuses_expired_foreign_and_unsigned_tokens() {
        let mut claims = dev_claims(
            Id::new_v4(),
            Duration::from_secs(60),
            None,
            Grant::All,
            vec![],
        );
        claims.exp = chrono::Utc::now().timestamp() - 5;
        let expired = keys().mint(&claims).unwrap();
        assert!(matches!(keys().verify(&expired), Err(TokenError::Expired)));

        claims.exp += 3600;
        let foreign = TokenKeys::hs256(b"other").mint(&claims).unwrap();
        assert!(matches!(
            keys().verify(&foreign),
            Err(TokenError::Invalid(_))
        ));

        // alg: none — header {"alg":"none","typ":"JWT"}, no signature.
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap());
        let unsigned = format!("{header}.{body}.");
        assert!(keys().verify(&unsigned).is_err());
        assert!(keys().verify("garbage").is_err());
    }
}
