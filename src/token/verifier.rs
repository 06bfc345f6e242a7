//! [`Verifier`]: a token in, its [`Claims`] or the reason it is refused.
//!
//! The header is read first, by hand: `alg: none` and unknown algorithms
//! are named. A `kid` selects its key directly; keys without an id
//! (secrets, PEM files) are tried for any token of their algorithms. A key
//! never verifies an algorithm of another family. A `kid` no key has makes
//! the JWKS be fetched again (rate-limited) once. Then the signature, the
//! claims each read by hand, the clock (`exp`; `nbf` and `iat` within a
//! leeway), the issuer and the audience.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::claims::{excerpt, numeric_date};
use super::jwks::{Jwks, JwksError};
use super::keys::{self, Key, KeyError};
use super::{Claims, TokenError, DEFAULT_USER_CLAIM};

/// Where a gateway's keys come from, and what it checks besides the
/// signature.
#[derive(Clone, Debug, Default)]
pub struct KeySources {
    /// HS secrets; a token verified by any of them is accepted.
    pub secrets: Vec<String>,
    /// PEM files of public keys.
    pub public_keys: Vec<PathBuf>,
    /// A JWKS URL, or an OpenID Connect discovery document's.
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    /// Where the last good JWKS is kept for a restart.
    pub jwks_cache: Option<PathBuf>,
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` must name one of these, when any is set.
    pub audience: Vec<String>,
    /// How far ahead `nbf` and `iat` may be.
    pub leeway: Duration,
    /// The claim that holds the user's id (`sub`, unless set).
    pub user_claim: String,
}

/// Why the keys cannot be had at start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error(
        "no token key: set SWITCHBOARD_JWT_SECRET, SWITCHBOARD_JWT_PUBLIC_KEYS or \
         SWITCHBOARD_JWKS_URL (or pass --dev)"
    )]
    None,
}

/// Verifies tokens with every configured key.
pub struct Verifier {
    /// Secrets and PEM keys: fixed for the process's life.
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Vec<String>,
    leeway: Duration,
    user_claim: String,
    /// One validation per algorithm: the library checks the signature and
    /// the algorithm; the claims and the clock are checked here, to name
    /// what is wrong.
    validations: Vec<(Algorithm, Validation)>,
}

const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Verifier {
    /// Loads every source: reads the PEM files, fetches the JWKS (or reads
    /// its cache). A source that cannot be read is an error.
    pub async fn load(sources: &KeySources) -> Result<Verifier, SourceError> {
        let mut keys: Vec<Key> = sources
            .secrets
            .iter()
            .enumerate()
            .map(|(n, s)| Key::secret(s.as_bytes(), n + 1))
            .collect();
        for path in &sources.public_keys {
            keys.push(Key::public_pem(path)?);
        }
        let jwks = match &sources.jwks_url {
            Some(url) => Some(
                Jwks::load(
                    url.clone(),
                    sources.jwks_refresh,
                    sources.jwks_cache.clone(),
                )
                .await?,
            ),
            None => None,
        };
        if keys.is_empty() && jwks.is_none() {
            return Err(SourceError::None);
        }
        Ok(Verifier::new(keys, jwks, sources))
    }

    /// HS secrets only, with the checks of `sources` (which has no URL to
    /// fetch nor file to read).
    pub fn secrets(secrets: &[&[u8]], leeway: Duration) -> Verifier {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(n, s)| Key::secret(s, n + 1))
            .collect();
        let sources = KeySources {
            leeway,
            ..KeySources::default()
        };
        Verifier::new(keys, None, &sources)
    }

    pub(super) fn new(keys: Vec<Key>, jwks: Option<Arc<Jwks>>, sources: &KeySources) -> Verifier {
        super::crypto::install();
        let validations = ALGORITHMS
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = 0;
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.validate_aud = false;
                validation.set_required_spec_claims::<&str>(&[]);
                (alg, validation)
            })
            .collect();
        Verifier {
            keys,
            jwks,
            issuer: sources.issuer.clone(),
            audience: sources.audience.clone(),
            leeway: sources.leeway,
            user_claim: if sources.user_claim.is_empty() {
                DEFAULT_USER_CLAIM.to_string()
            } else {
                sources.user_claim.clone()
            },
            validations,
        }
    }

    /// The JWKS source, to run its refresh and report its age.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// What verifies tokens, for the start-up log.
    pub fn describe(&self) -> String {
        let mut parts = self.fixed_keys();
        if let Some(jwks) = &self.jwks {
            parts.push(format!(
                "the JWKS at {} ({} keys)",
                jwks.url(),
                jwks.keys().len()
            ));
        }
        if let Some(iss) = &self.issuer {
            parts.push(format!("issuer {iss}"));
        }
        if !self.audience.is_empty() {
            parts.push(format!("audience {}", self.audience.join(" or ")));
        }
        parts.join(", ")
    }

    /// The claims of `token`, or why it is refused. Waits only when the
    /// token names a `kid` no key has and the JWKS may be fetched again.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let looked = Instant::now();
        let now = chrono::Utc::now().timestamp();
        match self.verify_at(token, now) {
            Err(TokenError::UnknownKid(kid)) => match &self.jwks {
                Some(jwks) if jwks.refetch_for_unknown_kid(looked).await => {
                    self.verify_at(token, now)
                }
                _ => Err(TokenError::UnknownKid(kid)),
            },
            other => other,
        }
    }

    /// [`verify`](Self::verify) with the keys as they are (no JWKS fetch),
    /// now.
    pub fn verify_cached(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// [`verify`](Self::verify) with the keys as they are, the clock at
    /// `now` (seconds since the epoch).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (alg, kid) = read_header(token)?;
        let jwks_keys = self.jwks.as_ref().map(|j| j.keys());
        let all = || {
            self.keys
                .iter()
                .chain(jwks_keys.iter().flat_map(|keys| keys.iter()))
        };
        let candidates: Vec<&Key> = match &kid {
            Some(kid) if all().any(|k| k.kid.as_deref() == Some(kid)) => {
                let named: Vec<&Key> = all()
                    .filter(|k| k.kid.as_deref() == Some(kid) && k.verifies(alg))
                    .collect();
                if named.is_empty() {
                    return Err(TokenError::WrongAlgorithm {
                        alg: keys::name(alg),
                        kid: excerpt(kid),
                    });
                }
                named
            }
            Some(kid) => {
                let unnamed: Vec<&Key> = all()
                    .filter(|k| k.kid.is_none() && k.verifies(alg))
                    .collect();
                if unnamed.is_empty() {
                    if all().any(|k| k.verifies(alg)) || self.jwks.is_some() {
                        return Err(TokenError::UnknownKid(excerpt(kid)));
                    }
                    return Err(self.no_key_for(alg));
                }
                unnamed
            }
            None => {
                let fitting: Vec<&Key> = all().filter(|k| k.verifies(alg)).collect();
                if fitting.is_empty() {
                    return Err(self.no_key_for(alg));
                }
                fitting
            }
        };
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(keys::name(alg).into()))?;
        let mut payload = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
                Ok(data) => {
                    payload = Some(data.claims);
                    break;
                }
                Err(e) if is_signature_failure(e.kind()) => continue,
                Err(e) => return Err(library_error(e.kind())),
            }
        }
        let Some(payload) = payload else {
            return Err(TokenError::BadSignature {
                keys: self.summary(),
            });
        };
        self.check_claims(&payload, now)
    }

    fn check_claims(&self, payload: &Map<String, Value>, now: i64) -> Result<Claims, TokenError> {
        let claims = Claims::from_payload_with(payload, &self.user_claim)?;
        if claims.exp <= now {
            return Err(TokenError::Expired {
                seconds_ago: now.saturating_sub(claims.exp).unsigned_abs(),
            });
        }
        let leeway = self.leeway.as_secs();
        let latest = now.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX));
        let ahead = |t: i64| t.saturating_sub(now).unsigned_abs();
        if let Some(nbf) = numeric_date(payload, "nbf")? {
            if nbf > latest {
                let ahead = ahead(nbf);
                return Err(TokenError::NotYetValid { ahead, leeway });
            }
        }
        if let Some(iat) = numeric_date(payload, "iat")? {
            if iat > latest {
                let ahead = ahead(iat);
                return Err(TokenError::IssuedInFuture { ahead, leeway });
            }
        }
        if let Some(expected) = &self.issuer {
            match payload.get("iss") {
                None | Some(Value::Null) => {
                    return Err(TokenError::missing(
                        "iss",
                        "the issuer this gateway accepts",
                    ))
                }
                Some(Value::String(iss)) if iss == expected => {}
                Some(other) => {
                    return Err(TokenError::WrongIssuer {
                        found: quoted(other),
                        expected: format!("`{}`", excerpt(expected)),
                    })
                }
            }
        }
        self.check_audience(payload.get("aud"))?;
        Ok(claims)
    }

    fn check_audience(&self, aud: Option<&Value>) -> Result<(), TokenError> {
        let named: Vec<&str> = match aud {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(TokenError::bad(
                    "aud",
                    "a string or a list of strings",
                    "found another type".into(),
                ))
            }
        };
        let present = !matches!(aud, None | Some(Value::Null));
        if self.audience.is_empty() {
            return if present {
                Err(TokenError::Audience)
            } else {
                Ok(())
            };
        }
        if !present {
            return Err(TokenError::missing("aud", "the audience this gateway is"));
        }
        if named
            .iter()
            .any(|a| self.audience.iter().any(|ours| ours == a))
        {
            return Ok(());
        }
        let ours: Vec<String> = self
            .audience
            .iter()
            .map(|a| format!("`{}`", excerpt(a)))
            .collect();
        Err(TokenError::WrongAudience {
            found: aud.map(quoted).unwrap_or_default(),
            expected: ours.join(" or "),
        })
    }

    fn no_key_for(&self, alg: Algorithm) -> TokenError {
        TokenError::NoKeyFor {
            alg: keys::name(alg),
            keys: self.summary(),
        }
    }

    /// The keys, counted by kind, for messages.
    fn summary(&self) -> String {
        let mut parts = self.fixed_keys();
        if let Some(jwks) = &self.jwks {
            let keys = jwks.keys();
            let mut algs: Vec<&str> = keys
                .iter()
                .flat_map(|k| k.algorithms.iter().map(|&a| keys::name(a)))
                .collect();
            algs.sort_unstable();
            algs.dedup();
            parts.push(format!(
                "{} ({})",
                plural(keys.len(), "JWKS key"),
                algs.join("/")
            ));
        }
        parts.join(", ")
    }

    /// The secrets and the PEM keys, counted: `2 HS secrets`, `1 public
    /// key file`.
    fn fixed_keys(&self) -> Vec<String> {
        let secrets = self.keys.iter().filter(|k| is_hmac(k)).count();
        let files = self.keys.len() - secrets;
        let mut parts = Vec::new();
        if secrets > 0 {
            parts.push(plural(secrets, "HS secret"));
        }
        if files > 0 {
            parts.push(plural(files, "public key file"));
        }
        parts
    }
}

fn is_hmac(key: &Key) -> bool {
    key.verifies(Algorithm::HS256)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn quoted(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{}`", excerpt(s)),
        Value::Array(items) => {
            let names: Vec<String> = items.iter().take(4).map(quoted).collect();
            names.join(", ")
        }
        _ => "not a string".into(),
    }
}

/// The header's algorithm and key id, read before the library does: its
/// own error for an algorithm it does not know (`none`) names its enum's
/// variants.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
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
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            return Err(TokenError::Unsigned)
        }
        Some(Value::String(alg)) => ALGORITHMS
            .into_iter()
            .find(|a| keys::name(*a) == alg)
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(excerpt(alg)))?,
        _ => return Err(TokenError::Malformed("the header has no `alg`")),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("the header's `kid` is not a string")),
    };
    Ok((alg, kid))
}

/// A refusal that means "not this key": try the next one.
fn is_signature_failure(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidAlgorithm
    )
}

/// The library's refusal, in the words of [`TokenError`].
fn library_error(kind: &ErrorKind) -> TokenError {
    match kind {
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
