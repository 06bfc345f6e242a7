//! Where `switchboard tail` gets its token ([`TokenSource`]: a fixed
//! `--token`, a `--token-command` run on demand, or a `--token-file` read
//! again each time), and when it refreshes the connection's token in band
//! ([`Refresh`], a clock-free schedule: the driver passes the time and sets
//! the one timer it returns).
//!
//! The timing rule is the TypeScript SDK's (`clients/typescript/src/refresh.ts`),
//! on the gateway's clock (the driver measures the offset at `hello`):
//!
//! - a token is refreshed [`REFRESH_SHARE`] (a fifth) of its lifetime
//!   before its `exp`, at most [`REFRESH_MARGIN`] (60 s) and at least
//!   [`REFRESH_MIN_LEAD`] (1 s) before; the lifetime is what it has left
//!   when it becomes the connection's: an hour-long token is refreshed a
//!   minute before its `exp`, a 4 s one a second before;
//! - a failed attempt (the source failed, the gateway refused the token, no
//!   answer within [`answer_within`]) is tried again after a third of the
//!   time left, up to [`REFRESH_ATTEMPTS`] attempts per token; then the
//!   gateway closes with 4001 at `exp`, and `tail` reconnects with a fresh
//!   token from the source and resumes its session.
//!
//! The `exp` is read from the JWT's payload without verifying it (the
//! gateway verifies); a token without a readable numeric `exp` is never
//! refreshed in band. A fixed `--token` is never refreshed at all.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long before its `exp` a token is refreshed, at most (for a token
/// that lives longer than five times this).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The share of its lifetime before its `exp` at which a token is
/// refreshed, within the margin.
pub const REFRESH_SHARE: f64 = 0.2;

/// The least time before `exp` at which a refresh is due: an answer needs
/// a round trip.
pub const REFRESH_MIN_LEAD: Duration = Duration::from_secs(1);

/// Attempts to refresh one token; after as many failures `tail` leaves it
/// to expire (close 4001) and reconnects with a fresh token.
pub const REFRESH_ATTEMPTS: u32 = 3;

/// The longest wait for `refreshed` before an attempt counts as failed
/// (never more than half the time left, see [`answer_within`]).
pub const REFRESH_ANSWER: Duration = Duration::from_secs(10);

/// With less time than this left, no further attempt is started: the 4001
/// and the reconnect come sooner than an answer would.
pub const REFRESH_MIN_LEFT: Duration = Duration::from_millis(100);

/// A `--token-command` still running after this is killed, and the attempt
/// fails.
pub const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest token a command or file may give; a longer output is an
/// error (it is not a token), not a truncated token.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// How much of a failing command's stderr an error quotes.
const STDERR_EXCERPT: usize = 300;

/// The `request_id` of the `refresh` frames `tail` sends.
pub const REFRESH_REQUEST_ID: &str = "tail-refresh";

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token`: the same token for every connection, never refreshed.
    Fixed(String),
    /// `--token-command`: run with `sh -c`; its stdout, trimmed, is the token.
    Command(String),
    /// `--token-file`: read again each time; its content, trimmed, is the token.
    File(PathBuf),
}

/// The source could not give a token; the message names the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl TokenSource {
    /// Whether tokens from this source are refreshed (in band, and at each
    /// reconnect): a command or a file, not a fixed token.
    pub fn refreshes(&self) -> bool {
        !matches!(self, TokenSource::Fixed(_))
    }

    /// The source as the command line names it, for messages.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Fixed(_) => "--token".into(),
            TokenSource::Command(command) => format!("--token-command `{command}`"),
            TokenSource::File(path) => format!("--token-file {}", path.display()),
        }
    }

    /// A token, fresh from the source: non-empty and usable as a header value.
    pub async fn fetch(&self) -> Result<String, SourceError> {
        let token = match self {
            TokenSource::Fixed(token) => token.trim().to_string(),
            TokenSource::Command(command) => run(command).await?,
            TokenSource::File(path) => read(path).await?,
        };
        let what = self.describe();
        if token.is_empty() {
            return Err(SourceError(format!("{what}: no token (empty)")));
        }
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(SourceError(format!(
                "{what}: not a token (it holds characters a token cannot have)"
            )));
        }
        Ok(token)
    }
}

/// Runs `command` with `sh -c`: its stdout, trimmed, or an error quoting
/// its stderr.
async fn run(command: &str) -> Result<String, SourceError> {
    let what = format!("--token-command `{command}`");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SourceError(format!("{what}: cannot run sh: {e}")))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SourceError(format!("{what}: no pipes to read")));
    };
    let finished = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) = (
            stdout.take(MAX_TOKEN_BYTES + 1),
            stderr.take(MAX_TOKEN_BYTES),
        );
        let (read_out, _) =
            tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        if out.len() as u64 > MAX_TOKEN_BYTES {
            // Not a token; the command is killed on drop, not waited for.
            return (read_out.map(|_| None), out, err);
        }
        let status = child.wait().await;
        (read_out.and(status).map(Some), out, err)
    };
    let (status, out, err) = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, finished)
        .await
        .map_err(|_| {
            SourceError(format!(
                "{what}: still running after {} s; killed",
                TOKEN_COMMAND_TIMEOUT.as_secs()
            ))
        })?;
    let Some(status) = status.map_err(|e| SourceError(format!("{what}: {e}")))? else {
        return Err(SourceError(format!(
            "{what}: printed more than {MAX_TOKEN_BYTES} bytes; not a token"
        )));
    };
    let stderr = excerpt(&String::from_utf8_lossy(&err));
    let said = if stderr.is_empty() {
        "nothing on stderr".to_string()
    } else {
        format!("stderr: {stderr}")
    };
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with {code}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(SourceError(format!("{what} {how} ({said})")));
    }
    let token = String::from_utf8(out)
        .map_err(|_| SourceError(format!("{what}: printed something that is not UTF-8")))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(SourceError(format!("{what} printed no token ({said})")));
    }
    Ok(token.to_string())
}

/// The content of `path`, trimmed.
async fn read(path: &PathBuf) -> Result<String, SourceError> {
    let what = format!("--token-file {}", path.display());
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| SourceError(format!("{what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| SourceError(format!("{what}: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(SourceError(format!(
            "{what}: longer than {MAX_TOKEN_BYTES} bytes; not a token"
        )));
    }
    let token =
        String::from_utf8(bytes).map_err(|_| SourceError(format!("{what}: not UTF-8 text")))?;
    Ok(token.trim().to_string())
}

/// The start of `text`, on one line, at most [`STDERR_EXCERPT`] characters.
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(STDERR_EXCERPT) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// The `exp` claim of a JWT (seconds since the epoch, a fraction rounded
/// down), read without verifying the token; `None` when `token` is not a
/// JWT with a numeric `exp`.
pub fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = &claims["exp"];
    exp.as_i64().or_else(|| {
        exp.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

/// How long after `now_ms` a token expiring at `exp_ms` (both on the
/// gateway's clock, milliseconds since the epoch) is refreshed: `exp`
/// minus a fifth of the time left, at most [`REFRESH_MARGIN`] and at least
/// [`REFRESH_MIN_LEAD`] before; at once when that is past.
pub fn refresh_in(exp_ms: i64, now_ms: i64) -> Duration {
    let left = exp_ms.saturating_sub(now_ms);
    if left <= 0 {
        return Duration::ZERO;
    }
    let margin = REFRESH_MARGIN.as_millis() as i64;
    let least = REFRESH_MIN_LEAD.as_millis() as i64;
    let lead = ((left as f64 * REFRESH_SHARE) as i64)
        .min(margin)
        .max(least);
    Duration::from_millis(left.saturating_sub(lead).max(0) as u64)
}

/// How long after `now_ms` to try again after `failures` failed attempts
/// to refresh a token expiring at `exp_ms`: a third of the time left;
/// `None` (give up: the 4001 and a reconnect will do) after
/// [`REFRESH_ATTEMPTS`] failures or with less than three
/// [`REFRESH_MIN_LEFT`] left.
pub fn retry_in(exp_ms: i64, now_ms: i64, failures: u32) -> Option<Duration> {
    let left = exp_ms.saturating_sub(now_ms);
    let min_left = REFRESH_MIN_LEFT.as_millis() as i64;
    if failures >= REFRESH_ATTEMPTS || left < 3 * min_left {
        return None;
    }
    Some(Duration::from_millis((left / 3) as u64))
}

/// How long a `refresh` sent at `now_ms` may wait for its answer, for a
/// token expiring at `exp_ms`: [`REFRESH_ANSWER`], or half the time left
/// when that is shorter (but at least [`REFRESH_MIN_LEFT`]).
pub fn answer_within(exp_ms: i64, now_ms: i64) -> Duration {
    let half = Duration::from_millis((exp_ms.saturating_sub(now_ms).max(0) / 2) as u64);
    REFRESH_ANSWER.min(half.max(REFRESH_MIN_LEFT))
}

/// One connection's in-band refresh, as a schedule with no clock: each
/// call takes the gateway's time (`now_ms`) and returns when the driver's
/// one refresh timer is due next (`None`: no timer). When the timer fires,
/// the driver calls [`Refresh::due`]: it says whether to fetch a token and
/// send it, or that the one sent went unanswered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The connection's token's expiry (ms), when known.
    exp_ms: Option<i64>,
    /// Failed attempts for this token.
    failures: u32,
    /// A `refresh` was sent and not answered yet.
    sent: bool,
}

/// What a due refresh timer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Get a token from the source, then [`Refresh::sent`] or [`Refresh::failed`].
    Fetch,
    /// The `refresh` sent went unanswered; the timer is due again after this
    /// (`None`: given up).
    Unanswered(Option<Duration>),
}

impl Refresh {
    /// A connection made with a token expiring at `exp` (seconds), when
    /// known; and when its first refresh is due.
    pub fn new(exp: Option<i64>, now_ms: i64) -> (Refresh, Option<Duration>) {
        let refresh = Refresh {
            exp_ms: exp.map(|s| s.saturating_mul(1000)),
            failures: 0,
            sent: false,
        };
        let due = refresh.exp_ms.map(|exp| refresh_in(exp, now_ms));
        (refresh, due)
    }

    /// The token's expiry, seconds since the epoch.
    pub fn exp(&self) -> Option<i64> {
        self.exp_ms.map(|ms| ms / 1000)
    }

    /// The timer fired.
    pub fn due(&mut self, now_ms: i64) -> Due {
        if self.sent {
            Due::Unanswered(self.failed(now_ms))
        } else {
            Due::Fetch
        }
    }

    /// A `refresh` frame went out: the timer is due when its answer is late.
    pub fn sent(&mut self, now_ms: i64) -> Option<Duration> {
        self.sent = true;
        self.exp_ms.map(|exp| answer_within(exp, now_ms))
    }

    /// An attempt failed: when to try again (`None`: given up).
    pub fn failed(&mut self, now_ms: i64) -> Option<Duration> {
        self.sent = false;
        self.failures = self.failures.saturating_add(1);
        self.exp_ms
            .and_then(|exp| retry_in(exp, now_ms, self.failures))
    }

    /// `refreshed`: the connection's token now expires at `exp` (seconds);
    /// when its refresh is due.
    pub fn refreshed(&mut self, exp: i64, now_ms: i64) -> Option<Duration> {
        let (fresh, due) = Refresh::new(Some(exp), now_ms);
        *self = fresh;
        due
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"HS256"}"#),
            e.encode(payload)
        )
    }

    #[test]
    fn expiry_is_read_from_the_payload_without_verifying() {
        assert_eq!(
            expiry(&jwt(r#"{"sub":"x","exp":1700000000}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(expiry(&jwt(r#"{"exp":1700000000.9}"#)), Some(1_700_000_000));
        // Padding is tolerated; a missing or odd exp, or no JWT, is None.
        let padded = format!("a.{}==.b", jwt(r#"{"exp":5}"#).split('.').nth(1).unwrap());
        assert_eq!(expiry(&padded), Some(5));
        assert_eq!(expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(expiry(&jwt(r#"{"exp":"tomorrow"}"#)), None);
        assert_eq!(expiry(&jwt("not json")), None);
        assert_eq!(expiry("garbage"), None);
        assert_eq!(expiry("a.!!!.b"), None);
        assert_eq!(expiry(""), None);
    }

    #[test]
    fn a_token_is_refreshed_a_fifth_of_its_lifetime_before_exp_within_a_second_and_a_minute() {
        let now = 1_700_000_000 * S;
        // Long-lived: a minute before.
        assert_eq!(refresh_in(now + 3600 * S, now), Duration::from_secs(3540));
        // The switch: five minutes left is the same either way.
        assert_eq!(refresh_in(now + 300 * S, now), Duration::from_secs(240));
        // Short-lived: a fifth before, at least a second.
        assert_eq!(refresh_in(now + 100 * S, now), Duration::from_secs(80));
        assert_eq!(refresh_in(now + 4 * S, now), Duration::from_secs(3));
        assert_eq!(refresh_in(now + 2 * S, now), Duration::from_secs(1));
        assert_eq!(refresh_in(now + S / 2, now), Duration::ZERO);
        // Expired or expiring now: at once.
        assert_eq!(refresh_in(now, now), Duration::ZERO);
        assert_eq!(refresh_in(now - S, now), Duration::ZERO);
    }

    #[test]
    fn retries_come_after_a_third_of_the_time_left_and_stop() {
        let now = 0;
        assert_eq!(retry_in(3 * S, now, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry_in(3 * S, now, 2), Some(Duration::from_secs(1)));
        assert_eq!(retry_in(3 * S, now, REFRESH_ATTEMPTS), None);
        assert_eq!(retry_in(299, now, 1), None, "too little time left");
        assert_eq!(retry_in(-5, now, 1), None);
        assert_eq!(answer_within(3600 * S, now), REFRESH_ANSWER);
        assert_eq!(answer_within(4 * S, now), Duration::from_secs(2));
        assert_eq!(answer_within(now, now), REFRESH_MIN_LEFT);
    }

    #[test]
    fn the_schedule_fetches_waits_for_the_answer_retries_and_gives_up() {
        let now = 0;
        let (mut r, due) = Refresh::new(Some(4), now);
        assert_eq!(due, Some(Duration::from_secs(3)));
        assert_eq!(r.exp(), Some(4));
        // At 3 s: fetch, send; the answer may take half the second left.
        assert_eq!(r.due(3 * S), Due::Fetch);
        assert_eq!(r.sent(3 * S), Some(Duration::from_millis(500)));
        // Unanswered: a failure, retried after a third of what is left.
        assert_eq!(
            r.due(3500),
            Due::Unanswered(Some(Duration::from_millis(166)))
        );
        assert_eq!(r.due(3666), Due::Fetch);
        // A refused token is the second failure, a failing source the third.
        r.sent(3666);
        assert_eq!(r.failed(3700), Some(Duration::from_millis(100)));
        assert_eq!(r.failed(3800), None, "three attempts: given up");
        assert_eq!(r.failures(), REFRESH_ATTEMPTS);
        // `refreshed` starts afresh from the new exp.
        assert_eq!(r.refreshed(8, 4 * S), Some(Duration::from_secs(3)));
        assert_eq!(r.failures(), 0);
        assert_eq!(r.exp(), Some(8));
        assert_eq!(r.due(7 * S), Due::Fetch);
    }

    #[test]
    fn a_token_without_exp_has_no_timer() {
        let (mut r, due) = Refresh::new(None, 0);
        assert_eq!(due, None);
        assert_eq!(r.sent(0), None);
        assert_eq!(r.failed(0), None);
    }

    #[tokio::test]
    async fn sources_give_a_trimmed_token_or_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc.def.ghi\n").unwrap();
        let file = TokenSource::File(path.clone());
        assert_eq!(file.fetch().await.unwrap(), "abc.def.ghi");
        std::fs::write(&path, "\n").unwrap();
        assert!(file
            .fetch()
            .await
            .unwrap_err()
            .to_string()
            .contains("empty"));
        std::fs::write(&path, "a\u{1}b").unwrap();
        let e = file.fetch().await.unwrap_err().to_string();
        assert!(e.contains("not a token"), "{e}");
        let missing = TokenSource::File(dir.path().join("nope"));
        assert!(missing
            .fetch()
            .await
            .unwrap_err()
            .to_string()
            .contains("nope"));

        let command = TokenSource::Command("echo ' t.o.k '".into());
        assert_eq!(command.fetch().await.unwrap(), "t.o.k");
        let failing = TokenSource::Command("echo no issuer >&2; exit 3".into());
        let e = failing.fetch().await.unwrap_err().to_string();
        assert!(
            e.contains("exited with 3") && e.contains("no issuer"),
            "{e}"
        );
        let silent = TokenSource::Command("true".into());
        let e = silent.fetch().await.unwrap_err().to_string();
        assert!(e.contains("printed no token"), "{e}");

        assert!(!TokenSource::Fixed("t".into()).refreshes());
        assert!(file.refreshes() && command.refreshes());
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("a\n  b\n"), "a b");
        let long = "x".repeat(STDERR_EXCERPT + 10);
        assert_eq!(excerpt(&long).chars().count(), STDERR_EXCERPT + 1);
    }
}
