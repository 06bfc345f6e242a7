//! Tokens the harness's gateways accept: HS256 with [`SECRET`], minted as
//! `switchboard token` mints them.

use std::time::Duration;

use switchboard::channel::Id;
use switchboard::token::{dev_claims, Grant, Role, Signer};

use crate::SECRET;

/// How long a [`token`] is valid: a day, longer than any test or full
/// bench run (an expired token would close its connection).
pub const TOKEN_TTL: Duration = Duration::from_secs(86_400);

/// A token for `user` with the given grant and roles, valid for
/// [`TOKEN_TTL`].
pub fn token(user: Id, channels: Grant, roles: &[Role]) -> String {
    token_named(user, channels, roles, None, TOKEN_TTL)
}

/// A token with a display name and a time to live of its own.
pub fn token_named(
    user: Id,
    channels: Grant,
    roles: &[Role],
    name: Option<&str>,
    ttl: Duration,
) -> String {
    let claims = dev_claims(
        user,
        ttl,
        name.map(str::to_string),
        channels,
        roles.to_vec(),
    );
    Signer::hs256(SECRET.as_bytes())
        .mint(&claims)
        .expect("mint")
}
