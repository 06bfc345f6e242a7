//! The asymmetric test keys committed in `harness/keys/` ([`TestKey`]):
//! their PEM files, the algorithms each signs, tokens signed with them and
//! their public JWKs, for tests of tokens from an identity provider.
//!
//! A JWK made here never carries a private part: it is built from the
//! public key alone (RSA and EC through `Jwk::from_encoding_key`, which
//! only reads the public components; Ed25519 from the SPKI's raw key).

use std::fmt::Display;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header};
use serde_json::{json, Value};

/// One of the committed test key pairs (`harness/keys/NAME.pem`, PKCS#8,
/// and `NAME.pub.pem`, SPKI). Test-only keys: never trust them anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestKey {
    /// RSA 2048 (`rsa-a`).
    RsaA,
    /// RSA 2048, a second one (`rsa-b`), for rotations between RSA keys.
    RsaB,
    /// EC P-256 (`ec256`).
    Ec256,
    /// EC P-384 (`ec384`).
    Ec384,
    /// Ed25519 (`ed25519`).
    Ed25519,
}

impl TestKey {
    /// Every test key, RSA first.
    pub const ALL: [TestKey; 5] = [
        TestKey::RsaA,
        TestKey::RsaB,
        TestKey::Ec256,
        TestKey::Ec384,
        TestKey::Ed25519,
    ];

    /// The file name stem in `harness/keys/`, also the default `kid`.
    pub fn name(self) -> &'static str {
        match self {
            TestKey::RsaA => "rsa-a",
            TestKey::RsaB => "rsa-b",
            TestKey::Ec256 => "ec256",
            TestKey::Ec384 => "ec384",
            TestKey::Ed25519 => "ed25519",
        }
    }

    /// The algorithms this key signs with.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            TestKey::RsaA | TestKey::RsaB => AlgorithmFamily::Rsa.algorithms(),
            TestKey::Ec256 => &[Algorithm::ES256],
            TestKey::Ec384 => &[Algorithm::ES384],
            TestKey::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    /// Whether this key signs with `alg`.
    pub fn signs(self, alg: Algorithm) -> bool {
        self.algorithms().contains(&alg)
    }

    /// The first key that signs with `alg` (`rsa-a` for the RSA ones); a
    /// failure for HMAC, which has no key file.
    pub fn for_algorithm(alg: Algorithm) -> TestKey {
        TestKey::ALL
            .into_iter()
            .find(|key| key.signs(alg))
            .unwrap_or_else(|| panic!("no test key signs with {alg:?}"))
    }

    /// `harness/keys/NAME.pem`: the PKCS#8 private key.
    pub fn private_pem_path(self) -> PathBuf {
        keys_dir().join(format!("{}.pem", self.name()))
    }

    /// `harness/keys/NAME.pub.pem`: the SPKI public key.
    pub fn public_pem_path(self) -> PathBuf {
        keys_dir().join(format!("{}.pub.pem", self.name()))
    }

    pub fn private_pem(self) -> Vec<u8> {
        read(self.private_pem_path())
    }

    pub fn public_pem(self) -> Vec<u8> {
        read(self.public_pem_path())
    }

    /// The private key as jsonwebtoken signs with it.
    pub fn encoding_key(self) -> EncodingKey {
        let pem = self.private_pem();
        match self {
            TestKey::RsaA | TestKey::RsaB => EncodingKey::from_rsa_pem(&pem),
            TestKey::Ec256 | TestKey::Ec384 => EncodingKey::from_ec_pem(&pem),
            TestKey::Ed25519 => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap_or_else(|e| panic!("{} loads as a private key: {e}", self.name()))
    }

    /// The public key as jsonwebtoken verifies with it.
    pub fn decoding_key(self) -> DecodingKey {
        let pem = self.public_pem();
        match self {
            TestKey::RsaA | TestKey::RsaB => DecodingKey::from_rsa_pem(&pem),
            TestKey::Ec256 | TestKey::Ec384 => DecodingKey::from_ec_pem(&pem),
            TestKey::Ed25519 => DecodingKey::from_ed_pem(&pem),
        }
        .unwrap_or_else(|e| panic!("{} loads as a public key: {e}", self.name()))
    }

    /// A JWT of `claims` signed with `alg`, with `kid` in its header when
    /// given; a failure when this key does not sign with `alg`.
    pub fn sign(self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        self.assert_signs(alg);
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding_key())
            .unwrap_or_else(|e| panic!("{} signs with {alg:?}: {e}", self.name()))
    }

    /// The public JWK for `alg` with `kid`, `alg` and `use: "sig"`, as an
    /// identity provider's JWKS lists it. It has no private part.
    pub fn jwk(self, alg: Algorithm, kid: &str) -> Value {
        self.assert_signs(alg);
        let mut jwk = match self {
            TestKey::Ed25519 => {
                // Jwk::from_encoding_key has no Ed25519 case (it panics).
                let public = self.decoding_key();
                let DecodingKeyKind::SecretOrDer(raw) = public.kind() else {
                    panic!("the Ed25519 public key is its raw bytes");
                };
                json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(raw) })
            }
            _ => {
                let jwk = Jwk::from_encoding_key(&self.encoding_key(), alg)
                    .unwrap_or_else(|e| panic!("{}'s JWK: {e}", self.name()));
                serde_json::to_value(jwk).expect("a JWK serializes")
            }
        };
        let fields = jwk.as_object_mut().expect("a JWK is an object");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            fields.remove(private);
        }
        fields.insert("kid".into(), kid.into());
        fields.insert("alg".into(), algorithm_name(alg).into());
        fields.insert("use".into(), "sig".into());
        jwk
    }

    fn assert_signs(self, alg: Algorithm) {
        assert!(
            self.signs(alg),
            "test key {} does not sign with {alg:?} (it signs with {:?})",
            self.name(),
            self.algorithms()
        );
    }
}

/// A JWS `alg` name as a JWK or header carries it (`"RS256"`, `"EdDSA"`).
pub fn algorithm_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("an algorithm serializes as its name")
}

/// Claims a gateway accepts for `user` (a hyphenated UUID, e.g. a
/// `switchboard::channel::Id`): `sub`, `iat` now, `exp` in `ttl`, and
/// `channels: "*"`. Tests add or replace fields (`iss`, `aud`, `roles`,
/// `name`) on the returned object.
pub fn claims(user: impl Display, ttl: Duration) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    json!({
        "sub": user.to_string(),
        "iat": now,
        "exp": now + ttl.as_secs(),
        "channels": "*",
    })
}

/// `harness/keys/`, found from this crate's manifest directory.
pub fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
