//! The signature check of public-key tokens (RS*, PS*, ES256/384, EdDSA)
//! on `ring`, which the TLS stack already compiles in: measured with
//! `cargo bench --bench upgrades`, it costs a fraction of jsonwebtoken's
//! RustCrypto default (docs/performance.md). Signing and HMAC stay the
//! RustCrypto provider's.
//!
//! jsonwebtoken takes one process-wide provider; [`install`] sets this one
//! before the first token is verified or minted (a process that used
//! jsonwebtoken before, a test for instance, keeps the default: slower, the
//! same answers).

use std::sync::Once;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: rsa_components,
        extract_ec_public_key_coordinates: ec_coordinates,
        compute_digest: digest,
    },
};

/// Makes this module's provider jsonwebtoken's, once per process.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("jsonwebtoken's crypto provider was chosen already");
        }
    });
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

fn rsa_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .jwk_utils
        .extract_rsa_public_key_components)(der)
}

fn ec_coordinates(der: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    (rust_crypto::DEFAULT_PROVIDER
        .jwk_utils
        .extract_ec_public_key_coordinates)(der, alg)
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    (rust_crypto::DEFAULT_PROVIDER.jwk_utils.compute_digest)(data, hash)
}

/// `ring`'s parameters for an RSA algorithm; `None` for the others.
fn rsa_parameters(alg: Algorithm) -> Option<&'static ring_sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// `ring`'s check for a public-key algorithm; `None` for HMAC.
fn ring_algorithm(alg: Algorithm) -> Option<&'static dyn ring_sig::VerificationAlgorithm> {
    if let Some(rsa) = rsa_parameters(alg) {
        return Some(rsa);
    }
    match alg {
        Algorithm::ES256 => Some(&ring_sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&ring_sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Some(&ring_sig::ED25519),
        _ => None,
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let Some(check) = ring_algorithm(*alg) else {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    };
    if !key.family().algorithms().contains(alg) {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => PublicKey::Bytes(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKey::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        check,
        key,
    }))
}

/// A public key as the decoding key holds it: a PKCS#1 RSA key, an EC
/// point or an Ed25519 key as bytes, or an RSA key's components (a JWK's).
enum PublicKey {
    Bytes(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

struct RingVerifier {
    alg: Algorithm,
    check: &'static dyn ring_sig::VerificationAlgorithm,
    key: PublicKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        let checked = match &self.key {
            PublicKey::Bytes(bytes) => {
                UnparsedPublicKey::new(self.check, bytes).verify(message, sig)
            }
            PublicKey::Rsa { n, e } => {
                let Some(params) = rsa_parameters(self.alg) else {
                    return Err(jsonwebtoken::signature::Error::new());
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, sig)
            }
        };
        checked.map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;
    use crate::token::keys::Key;
    use crate::token::{dev_claims, Grant, Signer};

    /// `ring`'s checks directly (whatever provider the test process holds):
    /// a token's signature verifies with its key, and not with another's
    /// nor over another message. Keys from PEM files and from JWK
    /// components (RSA's `n`, `e`) alike.
    #[test]
    fn ring_verifies_each_algorithm_with_its_key_only() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/keys");
        let claims = dev_claims(
            crate::channel::Id::new_v4(),
            std::time::Duration::from_secs(60),
            None,
            Grant::All,
            vec![],
        );
        let cases = [
            ("rsa-a", "rsa-b", Algorithm::RS256),
            ("rsa-a", "rsa-b", Algorithm::RS384),
            ("rsa-a", "rsa-b", Algorithm::PS512),
            ("ec256", "ec256", Algorithm::ES256),
            ("ec384", "ec384", Algorithm::ES384),
            ("ed25519", "ed25519", Algorithm::EdDSA),
        ];
        for (key, other, alg) in cases {
            let public = Key::public_pem(&dir.join(format!("{key}.pub.pem"))).unwrap();
            let token = Signer::private_pem(&dir.join(format!("{key}.pem")), Some(alg))
                .unwrap()
                .mint(&claims)
                .unwrap();
            let (message, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let check = verifier(&alg, &public.decoding).unwrap();
            assert!(check.verify(message.as_bytes(), &sig).is_ok(), "{alg:?}");
            let changed = format!("{message}x");
            assert!(check.verify(changed.as_bytes(), &sig).is_err(), "{alg:?}");
            if other != key {
                let other = Key::public_pem(&dir.join(format!("{other}.pub.pem"))).unwrap();
                let check = verifier(&alg, &other.decoding).unwrap();
                assert!(check.verify(message.as_bytes(), &sig).is_err(), "{alg:?}");
            }
        }
        // An RSA key as a JWK gives its components.
        let jwk = serde_json::json!({
            "kty": "RSA", "kid": "a", "alg": "RS256",
            "n": rsa_n(&dir.join("rsa-a.pub.pem")), "e": "AQAB"
        });
        let key = Key::from_jwk(&jwk).unwrap();
        let token = Signer::private_pem(&dir.join("rsa-a.pem"), Some(Algorithm::RS256))
            .unwrap()
            .mint(&claims)
            .unwrap();
        let (message, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let check = verifier(&Algorithm::RS256, &key.decoding).unwrap();
        assert!(check.verify(message.as_bytes(), &sig).is_ok());
        // A key of another family is refused before any check.
        assert!(verifier(&Algorithm::RS256, &DecodingKey::from_secret(b"s")).is_err());
    }

    /// The base64url modulus of an RSA public key file (SPKI).
    fn rsa_n(path: &std::path::Path) -> String {
        // jsonwebtoken keeps the PKCS#1 key the SPKI file wraps.
        let key = DecodingKey::from_rsa_pem(&std::fs::read(path).unwrap()).unwrap();
        let DecodingKeyKind::SecretOrDer(pkcs1) = key.kind() else {
            panic!("{} is not read as DER", path.display());
        };
        let (n, _e) = rsa_components_of_pkcs1(pkcs1);
        URL_SAFE_NO_PAD.encode(n)
    }

    /// `n` and `e` of a PKCS#1 `RSAPublicKey` (a SEQUENCE of two INTEGERs).
    fn rsa_components_of_pkcs1(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn read(der: &[u8]) -> (&[u8], &[u8]) {
            // tag, length (short or long form), value
            let (len, at) = match der[1] {
                l if l < 0x80 => (l as usize, 2),
                l => {
                    let n = (l & 0x7f) as usize;
                    let len = der[2..2 + n]
                        .iter()
                        .fold(0usize, |a, b| (a << 8) | *b as usize);
                    (len, 2 + n)
                }
            };
            (&der[at..at + len], &der[at + len..])
        }
        let (seq, _) = read(der);
        let (n, rest) = read(seq);
        let (e, _) = read(rest);
        let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect();
        (strip(n), strip(e))
    }
}
