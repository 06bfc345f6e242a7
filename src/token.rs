//! Access tokens: the JWT claims a client presents, their verification with
//! the gateway's keys, and minting development tokens.
//!
//! Layout: `claims` (what a verified token says), `keys` (secrets, PEM
//! public keys, JWKS keys, each with the algorithms it verifies), `jwks`
//! (a JWKS URL's key set: fetched, refreshed, cached on disk), `verifier`
//! (a token in, claims or the reason out), `signer` (minting). Every
//! refusal is a [`TokenError`] whose message says what a person can act
//! on; it never names a parser's internals nor quotes more than a short
//! excerpt of what the token holds.

use std::time::Duration;

mod claims;
mod crypto;
mod jwks;
mod keys;
mod signer;
mod verifier;

pub use claims::{Claims, Grant, Role, DEFAULT_USER_CLAIM};
pub use jwks::{Jwks, JwksError, UNKNOWN_KID_REFETCH};
pub use keys::KeyError;
pub use signer::Signer;
pub use verifier::{KeySources, SourceError, Verifier};

use crate::channel::Id;

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
    #[error("token not signed (`alg: none`): refused")]
    Unsigned,
    #[error(
        "token signed with `{0}`, which this gateway does not verify \
         (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
    )]
    UnsupportedAlgorithm(String),
    #[error(
        "token signed with {alg}, and no key of this gateway is for {alg} (it has: {keys}); \
         a token is never checked with a key of another kind"
    )]
    NoKeyFor { alg: &'static str, keys: String },
    #[error("token signed with {alg}, but its `kid` `{kid}` names a key that is not for {alg}")]
    WrongAlgorithm { alg: &'static str, kid: String },
    #[error(
        "token's `kid` `{0}` names no key of this gateway (nor of its JWKS, fetched again \
         within the last 10 s): is the token from the configured identity provider?"
    )]
    UnknownKid(String),
    #[error(
        "bad signature: the token was not signed with any of this gateway's keys ({keys}); \
         is the secret (SWITCHBOARD_JWT_SECRET) or the key the token's issuer signs with configured?"
    )]
    BadSignature { keys: String },
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
        "token meant for an audience (claim `aud`): this gateway has none configured and \
         accepts only tokens without one (set SWITCHBOARD_JWT_AUDIENCE)"
    )]
    Audience,
    #[error("token for another audience (claim `aud`: {found}): this gateway is {expected}")]
    WrongAudience { found: String, expected: String },
    #[error("token from another issuer (claim `iss`: {found}): this gateway accepts {expected}")]
    WrongIssuer { found: String, expected: String },
    #[error(
        "claim `{claim}` (the user's id, as SWITCHBOARD_JWT_USER_CLAIM says) is not usable \
         ({found}): expected the user's id, a hyphenated UUID string"
    )]
    UserClaim { claim: String, found: String },
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
    pub(super) fn missing(claim: &'static str, expected: &'static str) -> TokenError {
        TokenError::MissingClaim { claim, expected }
    }

    pub(super) fn bad(claim: &'static str, expected: &'static str, found: String) -> TokenError {
        TokenError::BadClaim {
            claim,
            expected,
            found,
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

/// An algorithm by the name tokens give it (`RS256`, `EdDSA`, ...).
pub fn algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    name.parse().ok()
}

#[cfg(test)]
mod tests;
