//! A real OpenID Connect provider for a test ([`OidcProvider`]): the npm
//! package `oidc-provider` run by `harness/oidc/provider.mjs` on a free
//! loopback port, in a process group of its own, killed on drop. Tokens come
//! from its token endpoint (client credentials with a resource indicator),
//! as JWT access tokens signed with the committed test keys ([`TestKey`]);
//! its JWKS is at its discovery document's `jwks_uri`.
//!
//! A user is a client of the provider: the client id is the user's id, so
//! it is the token's `sub`. [`OidcProvider::token`] registers that client
//! with the claims and lifetime the test asks for (a harness route of the
//! script, `PUT /harness/clients/<id>`), then asks for the token.
//!
//! Keys change while it runs (`PUT /harness/keys`): oidc-provider's key
//! store is fixed when it is built, so the script builds a new provider on
//! the same issuer and swaps it in; the port, the issuer, the JWKS URL and
//! the clients stay, as a real provider's do across a key rotation.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::keys::{algorithm_name, TestKey};
use crate::{kill_group, own_process_group, PATIENCE};

/// The resource indicator [`OidcProvider::token`] asks for: the tokens'
/// `aud`, what `SWITCHBOARD_JWT_AUDIENCE` is set to. oidc-provider takes
/// only an absolute URI as a resource indicator.
pub const OIDC_AUDIENCE: &str = "https://switchboard.test";

/// Every test user's client secret at the provider.
pub const OIDC_CLIENT_SECRET: &str = "switchboard-harness-client-secret";

/// The line the script prints once it answers: `ISSUER <url>`.
const ISSUER_LINE: &str = "ISSUER ";

/// How long one HTTP request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A key in the provider's key set: which test key, the algorithm it signs
/// with there, and its `kid` (the key's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderKey {
    pub key: TestKey,
    pub alg: Algorithm,
    pub kid: String,
}

impl ProviderKey {
    pub fn new(key: TestKey, alg: Algorithm) -> ProviderKey {
        assert!(key.signs(alg), "{} does not sign with {alg:?}", key.name());
        ProviderKey {
            key,
            alg,
            kid: key.name().to_string(),
        }
    }

    /// Its public JWK, as the provider's JWKS lists it.
    pub fn jwk(&self) -> Value {
        self.key.jwk(self.alg, &self.kid)
    }

    fn config(&self) -> Value {
        json!({
            "kid": self.kid,
            "alg": algorithm_name(self.alg),
            "pem": self.key.private_pem_path(),
        })
    }
}

/// The key set and the signer, as the script has them.
#[derive(Clone, Debug)]
struct KeySet {
    keys: Vec<ProviderKey>,
    /// The kid of the key that signs when a token does not ask for an
    /// algorithm of another key.
    signer: String,
}

impl KeySet {
    fn config(&self) -> Value {
        json!({
            "keys": self.keys.iter().map(ProviderKey::config).collect::<Vec<_>>(),
            "signer": self.signer,
        })
    }
}

/// oidc-provider, running.
pub struct OidcProvider {
    child: Child,
    /// Held open: the script exits when it closes (the test process died).
    _stdin: ChildStdin,
    issuer: String,
    http: reqwest::Client,
    /// The key set; held while a token is asked for, so a client's
    /// registration and its token request are one step.
    state: tokio::sync::Mutex<KeySet>,
    log: PathBuf,
    _temp: tempfile::TempDir,
}

impl OidcProvider {
    /// A provider signing with `alg` (the first test key that signs with it).
    pub fn start(alg: Algorithm) -> OidcProvider {
        OidcProvider::start_with(&[alg])
    }

    /// A provider with a key for each of `algs` (each a different test key,
    /// RSA ones `rsa-a` then `rsa-b`); the first signs by default.
    pub fn start_with(algs: &[Algorithm]) -> OidcProvider {
        assert!(!algs.is_empty(), "a provider needs a signing algorithm");
        let mut keys: Vec<ProviderKey> = Vec::new();
        for &alg in algs {
            let key = unused_key(&keys, alg);
            keys.push(ProviderKey::new(key, alg));
        }
        let set = KeySet {
            signer: keys[0].kid.clone(),
            keys,
        };
        let script = script();
        let temp = tempfile::Builder::new()
            .prefix("switchboard-oidc-")
            .tempdir()
            .expect("temp dir");
        let log = temp.path().join("oidc.log");
        let stderr = std::fs::File::create(&log).expect("oidc log file");
        let mut config = set.config();
        config["port"] = json!(0);
        let mut command = Command::new("node");
        command
            .arg(&script)
            .arg(config.to_string())
            .current_dir(script.parent().expect("harness/oidc"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        own_process_group(&mut command);
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "node {} does not start: {e} (install Node.js >= 20)",
                script.display()
            )
        });
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let Some(issuer) = issuer_line(stdout, PATIENCE) else {
            kill_group(&mut child);
            panic!(
                "oidc-provider did not start within {PATIENCE:?}; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        OidcProvider {
            child,
            _stdin: stdin,
            issuer,
            http,
            state: tokio::sync::Mutex::new(set),
            log,
            _temp: temp,
        }
    }

    /// `http://127.0.0.1:PORT`: the `iss` of its tokens, what
    /// `SWITCHBOARD_JWT_ISSUER` is set to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// Where its JWKS is: oidc-provider's route, the discovery document's
    /// `jwks_uri` (the self-test checks they agree).
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The discovery document.
    pub async fn discovery(&self) -> Value {
        self.get_json(&self.discovery_url()).await
    }

    /// The JWKS it serves now.
    pub async fn jwks(&self) -> Value {
        self.get_json(&self.jwks_uri()).await
    }

    /// The key set (in the order given, rotated keys last).
    pub async fn keys(&self) -> Vec<ProviderKey> {
        self.state.lock().await.keys.clone()
    }

    /// The key that signs by default now.
    pub async fn signer(&self) -> ProviderKey {
        let state = self.state.lock().await;
        signer_of(&state).clone()
    }

    /// A JWT access token for `user` (a hyphenated UUID: the client id, so
    /// the token's `sub`) from the token endpoint, for [`OIDC_AUDIENCE`],
    /// valid for `ttl` (whole seconds, at least 1), with `extra_claims` (an
    /// object: `channels`, `roles`, `name`, ...) beside the provider's own,
    /// signed with `alg`: by the signer when it signs with `alg`, else by
    /// the newest key in the set that does; a failure when none does.
    pub async fn token(
        &self,
        user: impl Display,
        extra_claims: Value,
        ttl: Duration,
        alg: Algorithm,
    ) -> String {
        self.token_for(OIDC_AUDIENCE, user, extra_claims, ttl, alg)
            .await
    }

    /// [`token`](Self::token) for another audience (an absolute URI).
    pub async fn token_for(
        &self,
        audience: &str,
        user: impl Display,
        extra_claims: Value,
        ttl: Duration,
        alg: Algorithm,
    ) -> String {
        let user = user.to_string();
        assert!(
            extra_claims.is_object(),
            "extra claims are a JSON object, not {extra_claims}"
        );
        let ttl = ttl.as_secs();
        assert!(ttl >= 1, "oidc-provider issues tokens for at least 1 s");
        let state = self.state.lock().await;
        let key = signing_key(&state, alg);
        let registration = json!({
            "secret": OIDC_CLIENT_SECRET,
            "claims": extra_claims,
            "ttl": ttl,
            "kid": key.kid,
        });
        self.harness_put(&format!("/harness/clients/{user}"), &registration)
            .await;
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(&user, Some(OIDC_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials"), ("resource", audience)])
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON token response");
        assert!(
            status.is_success(),
            "token request refused: {status} {body}"
        );
        drop(state);
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string()
    }

    /// Adds a key for `alg` (a test key not in the set yet) and makes it the
    /// signer; the old keys stay in the JWKS. Returns the new key's kid.
    pub async fn rotate(&self, alg: Algorithm) -> String {
        let mut state = self.state.lock().await;
        let key = ProviderKey::new(unused_key(&state.keys, alg), alg);
        let kid = key.kid.clone();
        let mut next = state.clone();
        next.keys.push(key);
        next.signer = kid.clone();
        self.harness_put("/harness/keys", &next.config()).await;
        *state = next;
        kid
    }

    /// Drops every key but the signer from the set and the JWKS; returns
    /// the kids dropped.
    pub async fn retire(&self) -> Vec<String> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let retired = next
            .keys
            .iter()
            .filter(|k| k.kid != next.signer)
            .map(|k| k.kid.clone())
            .collect();
        next.keys.retain(|k| k.kid == next.signer);
        self.harness_put("/harness/keys", &next.config()).await;
        *state = next;
        retired
    }

    /// What the provider wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get_json(&self, url: &str) -> Value {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }

    async fn harness_put(&self, path: &str, body: &Value) {
        let url = format!("{}{path}", self.issuer);
        let response = self
            .http
            .put(&url)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {url}: {status} {text}");
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- oidc-provider log ---\n{}", self.log_text());
        }
    }
}

fn signer_of(state: &KeySet) -> &ProviderKey {
    state
        .keys
        .iter()
        .find(|k| k.kid == state.signer)
        .expect("the signer is in the key set")
}

/// The key that signs a token asked for with `alg`: the signer when it
/// signs with `alg`, else the newest key in the set that does.
fn signing_key(state: &KeySet, alg: Algorithm) -> &ProviderKey {
    let signer = signer_of(state);
    if signer.alg == alg {
        return signer;
    }
    state
        .keys
        .iter()
        .rev()
        .find(|k| k.alg == alg)
        .unwrap_or_else(|| {
            panic!(
                "the provider has no {alg:?} key (its keys: {:?})",
                state.keys
            )
        })
}

/// The first test key that signs with `alg` and is not in `keys` yet.
fn unused_key(keys: &[ProviderKey], alg: Algorithm) -> TestKey {
    TestKey::ALL
        .into_iter()
        .find(|key| key.signs(alg) && keys.iter().all(|k| k.key != *key))
        .unwrap_or_else(|| {
            panic!("no test key for {alg:?} is left unused (the provider's keys: {keys:?})")
        })
}

/// `harness/oidc/provider.mjs`, once its `node_modules` is installed.
fn script() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc");
    assert!(
        dir.join("node_modules/oidc-provider/package.json")
            .is_file(),
        "{} not found: run npm ci in harness/oidc (just test does)",
        dir.join("node_modules/oidc-provider").display()
    );
    dir.join("provider.mjs")
}

/// Reads the script's stdout until its `ISSUER` line, and keeps draining
/// it afterwards so the script never blocks on a full pipe.
fn issuer_line(stdout: std::process::ChildStdout, timeout: Duration) -> Option<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(issuer) = line.strip_prefix(ISSUER_LINE) {
                let _ = tx.send(issuer.trim().to_string());
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}
