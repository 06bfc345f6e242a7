//! A JWKS URL's key set: fetched at start, refreshed on an interval and
//! when a token names a `kid` the set lacks (at most once per
//! [`UNKNOWN_KID_REFETCH`], so forged `kid`s cannot make the gateway hammer
//! the provider), and kept on disk so that a restart while the provider is
//! down still has keys. The last good set serves until a fetch succeeds.
//!
//! The URL may be the JWKS itself or an OpenID Connect discovery document
//! (`…/.well-known/openid-configuration`), whose `jwks_uri` is followed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::keys::{parse_jwks, Key};

/// At most one refetch for an unknown `kid` in this long; tokens naming an
/// unknown `kid` in between are refused at once (a genuinely new key is
/// accepted within this much of its first use, or the next refresh).
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);

/// A fetch that takes longer fails (the last good set keeps serving).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWKS or discovery document larger than this is refused.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// After a failed refresh, the next try comes this soon (or at the refresh
/// interval, if shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The discovery document's path, from which `jwks_uri` is read.
const DISCOVERY: &str = "/.well-known/openid-configuration";

/// The key set of one JWKS URL.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    /// Where the last good set is kept (the raw document), if anywhere.
    cache: Option<PathBuf>,
    refresh: Duration,
    set: RwLock<KeySet>,
    /// One fetch at a time; a token waiting for it sees its result.
    fetching: tokio::sync::Mutex<()>,
    /// When the last refetch for an unknown `kid` started.
    last_unknown_kid: Mutex<Option<Instant>>,
    /// The provider did not answer at start: the set came from the cache,
    /// so the first refresh is a retry after a failure.
    from_cache: bool,
}

/// The keys in use, and when they were fetched.
#[derive(Clone)]
struct KeySet {
    keys: Arc<Vec<Key>>,
    /// When the provider last answered with this set (for a set read from
    /// the cache, when the cache was written).
    fetched_at: SystemTime,
    /// When this process last finished a fetch, good or not.
    tried: Option<Instant>,
}

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: {reason}")]
    Document { url: String, reason: String },
}

impl Jwks {
    /// The key set at `url`: fetched now, or, when the provider does not
    /// answer, read from `cache` as a previous run left it. Without either
    /// the gateway cannot verify a token, and this says why.
    pub async fn load(
        url: String,
        refresh: Duration,
        cache: Option<PathBuf>,
    ) -> Result<Arc<Jwks>, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Fetch {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let fetched = fetch(&client, &url).await;
        let from_cache = fetched.is_err();
        let result = if from_cache { "failed" } else { "ok" };
        metrics::counter!("switchboard_jwks_fetches_total", "result" => result).increment(1);
        let (set, body) = match fetched {
            Ok((keys, body)) => (
                KeySet {
                    keys: Arc::new(keys),
                    fetched_at: SystemTime::now(),
                    tried: Some(Instant::now()),
                },
                Some(body),
            ),
            Err(error) => match cache.as_deref().map(|path| read_cache(path, &url)) {
                Some(Some((keys, written))) => {
                    let age = SystemTime::now()
                        .duration_since(written)
                        .unwrap_or_default()
                        .as_secs();
                    tracing::warn!(%error, age_s = age, keys = keys.len(),
                        "the JWKS provider does not answer: serving the cached key set");
                    let set = KeySet {
                        keys: Arc::new(keys),
                        fetched_at: written,
                        tried: Some(Instant::now()),
                    };
                    (set, None)
                }
                _ => {
                    let kept = match &cache {
                        Some(path) => format!(
                            "no usable cached key set for this URL in {}",
                            path.display()
                        ),
                        None => "no cached key set".into(),
                    };
                    return Err(JwksError::Fetch {
                        url,
                        reason: format!(
                            "{error}; and {kept}: without keys no token can be verified"
                        ),
                    });
                }
            },
        };
        let jwks = Arc::new(Jwks {
            url,
            client,
            cache,
            refresh,
            set: RwLock::new(set),
            fetching: tokio::sync::Mutex::new(()),
            last_unknown_kid: Mutex::new(None),
            from_cache,
        });
        if let Some(body) = body {
            jwks.keep(&body);
        }
        jwks.record();
        Ok(jwks)
    }

    fn read(&self) -> KeySet {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.read().keys
    }

    /// How long ago the provider last answered with the set in use.
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.read().fetched_at)
            .unwrap_or_default()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refreshes the set every `refresh`, sooner after a failure (the
    /// start's included, when the set came from the cache), until the
    /// future is dropped.
    pub async fn run(self: Arc<Self>) {
        let after_failure = self.refresh.min(RETRY_AFTER_FAILURE);
        let mut wait = if self.from_cache {
            after_failure
        } else {
            self.refresh
        };
        loop {
            tokio::time::sleep(wait).await;
            wait = match self.refetch().await {
                Ok(()) => self.refresh,
                Err(_) => after_failure,
            };
        }
    }

    /// A token names `kid`, not in the set looked at `since`: fetch again,
    /// unless a fetch finished after `since` already or one ran within
    /// [`UNKNOWN_KID_REFETCH`]. Whether the set may have changed.
    pub async fn refetch_for_unknown_kid(&self, since: Instant) -> bool {
        let fetched_since = |set: &KeySet| set.tried.is_some_and(|t| t > since);
        if fetched_since(&self.read()) {
            return true;
        }
        if !self.unknown_kid_turn(false) {
            return false;
        }
        let _one = self.fetching.lock().await;
        if fetched_since(&self.read()) {
            return true;
        }
        if !self.unknown_kid_turn(true) {
            return false;
        }
        metrics::counter!("switchboard_jwks_refetches_total", "reason" => "unknown_kid")
            .increment(1);
        let _ = self.fetch_now().await;
        true
    }

    /// Whether no refetch for an unknown `kid` started within
    /// [`UNKNOWN_KID_REFETCH`]; with `take`, one starts now.
    fn unknown_kid_turn(&self, take: bool) -> bool {
        let mut last = self
            .last_unknown_kid
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH) {
            return false;
        }
        if take {
            *last = Some(Instant::now());
        }
        true
    }

    /// Fetches now (one fetch at a time).
    pub async fn refetch(&self) -> Result<(), JwksError> {
        let _one = self.fetching.lock().await;
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> Result<(), JwksError> {
        let result = fetch(&self.client, &self.url).await;
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        set.tried = Some(Instant::now());
        match result {
            Ok((keys, body)) => {
                set.keys = Arc::new(keys);
                set.fetched_at = SystemTime::now();
                drop(set);
                self.keep(&body);
                self.record();
                metrics::counter!("switchboard_jwks_fetches_total", "result" => "ok").increment(1);
                Ok(())
            }
            Err(error) => {
                drop(set);
                tracing::warn!(%error, age_s = self.age().as_secs(),
                    "JWKS refresh failed: the last good key set keeps serving");
                metrics::counter!("switchboard_jwks_fetches_total", "result" => "failed")
                    .increment(1);
                Err(error)
            }
        }
    }

    /// Keeps the document for a restart while the provider is down, with
    /// the URL it came from (a restart with another URL does not use it).
    fn keep(&self, body: &[u8]) {
        let Some(path) = &self.cache else { return };
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(body) else {
            return; // parse_jwks read it already: never here
        };
        let kept = serde_json::json!({ "url": self.url, "jwks": document }).to_string();
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, kept.as_bytes())?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "cannot keep the JWKS on disk");
        }
    }

    /// The set's size and age as gauges (also set when `/metrics` is read).
    pub fn record(&self) {
        let set = self.read();
        metrics::gauge!("switchboard_jwks_keys").set(set.keys.len() as f64);
        let age = SystemTime::now()
            .duration_since(set.fetched_at)
            .unwrap_or_default();
        metrics::gauge!("switchboard_jwks_age_seconds").set(age.as_secs_f64());
    }
}

/// The keys at `url` (following a discovery document), and the JWKS
/// document they were read from.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<(Vec<Key>, Vec<u8>), JwksError> {
    let jwks_url = if url.trim_end_matches('/').ends_with(DISCOVERY) {
        let body = get(client, url).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| JwksError::Document {
                url: url.into(),
                reason: "the discovery document is not JSON".into(),
            })?;
        match doc.get("jwks_uri").and_then(|v| v.as_str()) {
            Some(uri) => uri.to_string(),
            None => {
                return Err(JwksError::Document {
                    url: url.into(),
                    reason: "the discovery document has no `jwks_uri`".into(),
                })
            }
        }
    } else {
        url.to_string()
    };
    let body = get(client, &jwks_url).await?;
    let (keys, skipped) = parse_jwks(&body).map_err(|e| JwksError::Document {
        url: jwks_url.clone(),
        reason: e.0,
    })?;
    for reason in &skipped {
        tracing::debug!(url = %jwks_url, %reason, "a JWKS key skipped");
    }
    if keys.is_empty() {
        return Err(JwksError::Document {
            url: jwks_url,
            reason: format!(
                "no signing key this gateway can use ({} skipped)",
                skipped.len()
            ),
        });
    }
    Ok((keys, body))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, JwksError> {
    let failed = |reason: String| JwksError::Fetch {
        url: url.into(),
        reason,
    };
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| failed(without_url(&e)))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(failed(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's error, without the URL it repeats (the caller names it).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut detail = None;
    while let Some(s) = source {
        detail = Some(s.to_string());
        source = s.source();
    }
    match detail {
        Some(d) => format!("{kind} ({d})"),
        None => kind,
    }
}

/// The key set kept for `url` and when it was written, if there is a
/// usable one (a set kept for another URL is not).
fn read_cache(path: &std::path::Path, url: &str) -> Option<(Vec<Key>, SystemTime)> {
    let body = std::fs::read(path).ok()?;
    let written = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let kept: serde_json::Value = serde_json::from_slice(&body).ok()?;
    if kept["url"].as_str() != Some(url) {
        tracing::warn!(path = %path.display(), kept_for = kept["url"].as_str().unwrap_or("?"),
            "the kept JWKS is another URL's: not used");
        return None;
    }
    match serde_json::to_vec(&kept["jwks"]).map(|jwks| parse_jwks(&jwks)) {
        Ok(Ok((keys, _))) if !keys.is_empty() => Some((keys, written)),
        _ => {
            tracing::warn!(path = %path.display(), "the kept JWKS is unusable");
            None
        }
    }
}
