//! [`Signer`]: mints tokens, for development and tests (`switchboard
//! token`, the console in `--dev`): an HS secret, or a private key in a PEM
//! file for RS*, PS*, ES256/384 or EdDSA.

use std::path::Path;

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

use super::keys::{self, KeyError};
use super::{Claims, TokenError};

/// A key to sign with, its algorithm and its `kid`.
pub struct Signer {
    alg: Algorithm,
    key: EncodingKey,
    kid: Option<String>,
}

/// DER of algorithm OIDs in a PKCS#8 private key (the curves' are
/// [`keys`]'s).
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// What kind of private key a PEM file holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Signer {
    /// HS256 with `secret`.
    pub fn hs256(secret: &[u8]) -> Signer {
        super::crypto::install();
        Signer {
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(secret),
            kid: None,
        }
    }

    /// An HS algorithm with `secret`.
    pub fn secret(secret: &[u8], alg: Algorithm) -> Result<Signer, KeyError> {
        super::crypto::install();
        if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(KeyError(format!(
                "{} signs with a private key, not a secret (--key FILE)",
                keys::name(alg)
            )));
        }
        Ok(Signer {
            alg,
            key: EncodingKey::from_secret(secret),
            kid: None,
        })
    }

    /// The private key in the PEM file at `path`, signing with `alg`, or
    /// the key's usual algorithm (RS256, ES256, ES384, EdDSA) when `None`.
    pub fn private_pem(path: &Path, alg: Option<Algorithm>) -> Result<Signer, KeyError> {
        super::crypto::install();
        let shown = path.display();
        let text = std::fs::read(path)
            .map_err(|e| KeyError(format!("cannot read the key {shown}: {e}")))?;
        let block =
            pem::parse(&text).map_err(|_| KeyError(format!("{shown} is not a PEM file")))?;
        let der = block.contents();
        let has = |oid: &[u8]| keys::contains(der, oid);
        let kind = match block.tag() {
            "RSA PRIVATE KEY" => Kind::Rsa,
            "EC PRIVATE KEY" | "PRIVATE KEY" if has(keys::P256_OID) => Kind::P256,
            "EC PRIVATE KEY" | "PRIVATE KEY" if has(keys::P384_OID) => Kind::P384,
            "PRIVATE KEY" if has(RSA_OID) => Kind::Rsa,
            "PRIVATE KEY" if has(ED25519_OID) => Kind::Ed25519,
            tag => {
                return Err(KeyError(format!(
                    "{shown}: a `{tag}`, not an RSA, EC P-256/P-384 or Ed25519 private key"
                )))
            }
        };
        let fits: &[Algorithm] = match kind {
            Kind::Rsa => AlgorithmFamily::Rsa.algorithms(),
            Kind::P256 => &[Algorithm::ES256],
            Kind::P384 => &[Algorithm::ES384],
            Kind::Ed25519 => &[Algorithm::EdDSA],
        };
        let alg = match alg {
            None => fits[0],
            Some(alg) if fits.contains(&alg) => alg,
            Some(alg) => {
                return Err(KeyError(format!(
                    "{shown} is a {kind:?} key: it cannot sign {}",
                    keys::name(alg)
                )))
            }
        };
        let key = match kind {
            Kind::Rsa => EncodingKey::from_rsa_pem(&text),
            Kind::P256 | Kind::P384 => EncodingKey::from_ec_pem(&text),
            Kind::Ed25519 => EncodingKey::from_ed_pem(&text),
        }
        .map_err(|_| KeyError(format!("{shown}: a malformed {kind:?} private key")))?;
        Ok(Signer {
            alg,
            key,
            kid: None,
        })
    }

    /// Names the key in the token's header.
    pub fn with_kid(mut self, kid: Option<String>) -> Signer {
        self.kid = kid;
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, TokenError> {
        self.mint_with(claims, Map::new())
    }

    /// Mints `claims` with `extra` claims beside them (`iss`, `aud`, ...).
    pub fn mint_with(
        &self,
        claims: &Claims,
        extra: Map<String, Value>,
    ) -> Result<String, TokenError> {
        let mut payload = match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => map,
            _ => return Err(TokenError::Mint("the claims are not an object".into())),
        };
        payload.extend(extra);
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &payload, &self.key)
            .map_err(|e| TokenError::Mint(e.to_string()))
    }
}
