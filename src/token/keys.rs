//! Verification keys, parsed once: HS secrets, public keys from PEM files,
//! and the keys of a JWKS document. Each knows the algorithms it may verify,
//! so a token is never checked with a key of another family (an HS token
//! against an RSA public key is the classic algorithm confusion).

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

/// One key a token may be verified with.
#[derive(Clone)]
pub struct Key {
    /// The key id a token's `kid` names it by; secrets and PEM files have
    /// none, and are tried for any `kid`.
    pub kid: Option<String>,
    /// The algorithms this key verifies.
    pub algorithms: Vec<Algorithm>,
    pub decoding: DecodingKey,
    /// Where the key comes from, for messages: `secret 2`, a file, `JWKS`.
    pub origin: String,
}

/// A key that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// DER of the named-curve OIDs in an EC key (SPKI or PKCS#8).
pub(super) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

impl Key {
    /// An HS secret (HS256, HS384 and HS512); `n` counts from 1.
    pub fn secret(secret: &[u8], n: usize) -> Key {
        Key {
            kid: None,
            algorithms: AlgorithmFamily::Hmac.algorithms().to_vec(),
            decoding: DecodingKey::from_secret(secret),
            origin: format!("secret {n}"),
        }
    }

    /// A public key in a PEM file: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`),
    /// EC P-256 or P-384, or Ed25519.
    pub fn public_pem(path: &Path) -> Result<Key, KeyError> {
        let shown = path.display();
        let text = std::fs::read(path)
            .map_err(|e| KeyError(format!("cannot read the public key {shown}: {e}")))?;
        let block = pem::parse(&text).map_err(|_| {
            KeyError(format!(
                "{shown} is not a PEM file (expected -----BEGIN PUBLIC KEY-----)"
            ))
        })?;
        let origin = shown.to_string();
        let der = block.contents();
        let (decoding, algorithms) = match block.tag() {
            "RSA PUBLIC KEY" => (
                DecodingKey::from_rsa_der(der),
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            ),
            "PUBLIC KEY" if contains(der, P256_OID) => {
                (ec_key(&text, &origin)?, vec![Algorithm::ES256])
            }
            "PUBLIC KEY" if contains(der, P384_OID) => {
                (ec_key(&text, &origin)?, vec![Algorithm::ES384])
            }
            "PUBLIC KEY" => match DecodingKey::from_rsa_pem(&text) {
                Ok(key) => (key, AlgorithmFamily::Rsa.algorithms().to_vec()),
                Err(_) => match DecodingKey::from_ed_pem(&text) {
                    Ok(key) => (key, vec![Algorithm::EdDSA]),
                    Err(_) => {
                        return Err(KeyError(format!(
                            "{shown}: not an RSA, EC P-256/P-384 or Ed25519 public key"
                        )))
                    }
                },
            },
            tag if tag.contains("PRIVATE") => {
                return Err(KeyError(format!(
                    "{shown} holds a private key: give the gateway the public key only \
                     (`openssl pkey -in key.pem -pubout`)"
                )))
            }
            tag => {
                return Err(KeyError(format!(
                "{shown} holds a `{tag}`, not a public key (expected -----BEGIN PUBLIC KEY-----)"
            )))
            }
        };
        Ok(Key {
            kid: None,
            algorithms,
            decoding,
            origin,
        })
    }

    /// A key of a JWKS document, or why it is skipped: an encryption key,
    /// a symmetric one, an unsupported curve or algorithm.
    pub fn from_jwk(value: &Value) -> Result<Key, KeyError> {
        let mut value = value.clone();
        // The fully-specified name of EdDSA over Ed25519 (RFC 9864), which
        // some providers publish.
        if value.get("alg").and_then(Value::as_str) == Some("Ed25519") {
            value["alg"] = Value::from("EdDSA");
        }
        let jwk: Jwk = serde_json::from_value(value)
            .map_err(|e| KeyError(format!("not a JWK this gateway reads ({e})")))?;
        let kid = jwk.common.key_id.clone();
        let named = || kid.as_deref().unwrap_or("(no kid)").to_string();
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError(format!("key {}: for encryption", named())));
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(KeyError(format!("key {}: unsupported curve", named()))),
            },
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError(format!(
                    "key {}: a symmetric key in a JWKS is not used (configure secrets instead)",
                    named()
                )))
            }
        };
        let algorithms = match jwk.common.key_algorithm {
            None => family,
            Some(alg) => match algorithm_of(alg) {
                Some(alg) if family.contains(&alg) => vec![alg],
                _ => {
                    return Err(KeyError(format!(
                        "key {}: its `alg` does not fit its key type",
                        named()
                    )))
                }
            },
        };
        let decoding = DecodingKey::from_jwk(&jwk)
            .map_err(|_| KeyError(format!("key {}: its parameters are malformed", named())))?;
        Ok(Key {
            kid,
            algorithms,
            decoding,
            origin: "JWKS".into(),
        })
    }

    pub fn verifies(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

fn ec_key(text: &[u8], origin: &str) -> Result<DecodingKey, KeyError> {
    DecodingKey::from_ec_pem(text)
        .map_err(|_| KeyError(format!("{origin}: a malformed EC public key")))
}

/// Whether DER `haystack` holds `needle` (an OID).
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The signing algorithm a JWK's `alg` names (encryption ones are `None`).
fn algorithm_of(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The keys of a JWKS document (`{"keys": [...]}`), and what was skipped
/// with the reason. A document that is not a JWKS is an error.
pub fn parse_jwks(body: &[u8]) -> Result<(Vec<Key>, Vec<String>), KeyError> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| KeyError("the JWKS is not JSON".to_string()))?;
    let Some(Value::Array(items)) = doc.get("keys") else {
        return Err(KeyError(
            "the JWKS is not a key set (no `keys` list)".to_string(),
        ));
    };
    let mut keys = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for item in items {
        match Key::from_jwk(item) {
            Ok(key) => keys.push(key),
            Err(e) => skipped.push(e.0),
        }
    }
    Ok((keys, skipped))
}

/// The name of an algorithm as tokens write it.
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}
