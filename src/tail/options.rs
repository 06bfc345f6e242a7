//! `switchboard tail`'s command line: the arguments ([`TailArgs`]) and what
//! they mean once checked ([`TailOptions`]). Every problem found here is a
//! usage error (exit 2); nothing here touches the network.

use std::path::PathBuf;

use clap::Args;

use super::token::TokenSource;
use crate::channel::{Channel, Id};
use crate::event::{format_timestamp, parse_timestamp};
use crate::failure::Failure;
use tokio_tungstenite::tungstenite::http::Uri;

/// The gateway's address when `--url` is not given: `serve`'s default
/// `listen` address (127.0.0.1:8080).
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8080";

/// The WebSocket endpoint's path, added to a URL that has none.
pub const WS_PATH: &str = "/v1/ws";

/// The end of `switchboard tail --help`.
pub const AFTER_HELP: &str = "\
The token comes from exactly one of --token, --token-command or --token-file.
With a command or a file, tail refreshes the connection's token before it
expires (a `refresh` frame a fifth of the token's lifetime before `exp`, at
most 60 s and at least 1 s before; a failed attempt is tried again after a
third of the time left, three attempts per token) and, should the gateway close with 4001
anyway, reconnects with a fresh token and resumes its session. A fixed
--token is never refreshed.

With --presence, the chat channels are subscribed with `presence: true`:
each one's `presence` snapshot (count, members, truncated) is printed after
its `subscribed` (and `replayed`), and again after a reconnect; then a
`user_presence` line for each user who comes online or goes offline, or a
new snapshot when many changed at once. They have no seq: --max-events does
not count them. global and user: channels have no presence (a warning; with
no chat channel at all, --presence is a usage error).

Exit codes: 0 done (--max-events reached, Ctrl-C or SIGTERM); 1 the work \
failed (token refused, a fixed --token expired, no token from the source at \
start, a subscription refused, disconnected by the operator); 2 bad arguments.";

/// `switchboard tail`'s arguments.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// Channels to follow: global, channel:<uuid>, user:<uuid> (one or more;
    /// optional with --session).
    #[arg(value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// The gateway: ws://host:port (the path /v1/ws is added if missing).
    #[arg(long, env = "SWITCHBOARD_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// The JWT to connect with (sent as `Authorization: Bearer`); never
    /// refreshed: tail exits 1 when it expires (close 4001).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A shell command (run with `sh -c`) that prints a fresh JWT on
    /// stdout; run before each connection and each in-band refresh.
    #[arg(
        long,
        env = "SWITCHBOARD_TOKEN_COMMAND",
        value_name = "CMD",
        hide_env_values = true
    )]
    pub token_command: Option<String>,
    /// A file holding the JWT, read again before each connection and each
    /// in-band refresh (rewrite it atomically: write, then rename).
    #[arg(long, env = "SWITCHBOARD_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Replay the events whose timestamp is at or after this RFC 3339 time, then follow.
    #[arg(long, conflicts_with = "since_seq")]
    pub since: Option<String>,
    /// Replay the events with a seq greater than this, then follow.
    #[arg(long)]
    pub since_seq: Option<u64>,
    /// Resume this session (a `hello.session_id`): its subscriptions and cursors.
    #[arg(long)]
    pub session: Option<String>,
    /// Exit 0 after printing this many events (frames with a `seq`).
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Ask the chat channels (channel:<uuid>) for presence: print each one's
    /// `presence` snapshot (who is online) after it is subscribed, again
    /// after a reconnect, and a `user_presence` line when someone comes
    /// online or goes offline. global and user: channels have no presence.
    #[arg(long)]
    pub presence: bool,
}

/// Where a subscription starts when no event of its channel was printed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// `since_seq`: the events after this `seq`.
    Seq(u64),
    /// `since`: the events at or after this time (RFC 3339).
    Time(String),
}

/// What `tail` does, checked.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The WebSocket URL with its path (see [`gateway_url`]).
    pub url: String,
    pub token: TokenSource,
    pub channels: Vec<Channel>,
    pub start: Option<Start>,
    pub session: Option<Id>,
    pub max_events: Option<u64>,
    /// `--presence`: the chat channels are subscribed with `presence: true`.
    pub presence: bool,
}

impl TailArgs {
    /// Checks the arguments; every problem is a usage error (exit 2).
    pub fn options(self) -> Result<TailOptions, Failure> {
        let channels = self
            .channels
            .iter()
            .map(|c| Channel::parse(c).map_err(|e| Failure::Usage(format!("CHANNEL: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let session = self
            .session
            .as_deref()
            .map(|s| Id::parse(s).map_err(|e| Failure::Usage(format!("--session: {e}"))))
            .transpose()?;
        if channels.is_empty() && session.is_none() {
            return Err(Failure::Usage(
                "no channel: give one or more of global, channel:<uuid>, user:<uuid> (or --session)"
                    .into(),
            ));
        }
        let start = match (self.since, self.since_seq) {
            (Some(_), Some(_)) => {
                return Err(Failure::Usage(
                    "--since and --since-seq cannot be used together".into(),
                ))
            }
            (Some(t), None) => Some(Start::Time(format_timestamp(
                &parse_timestamp(&t).map_err(|e| {
                    Failure::Usage(format!("--since: `{t}` is not an RFC 3339 time: {e}"))
                })?,
            ))),
            (None, Some(n)) => Some(Start::Seq(n)),
            (None, None) => None,
        };
        if self.max_events == Some(0) {
            return Err(Failure::Usage("--max-events must be at least 1".into()));
        }
        if self.presence {
            presence_channels(&channels, session.is_some())?;
        }
        let token = token_source(self.token, self.token_command, self.token_file)?;
        let options = TailOptions {
            url: gateway_url(&self.url).map_err(|e| Failure::Usage(format!("--url: {e}")))?,
            token,
            channels,
            start,
            session,
            max_events: self.max_events,
            presence: self.presence,
        };
        // The request is built the same way on every attempt: check it once
        // (with the token when it is fixed).
        let token = match &options.token {
            TokenSource::Fixed(token) => token.as_str(),
            _ => "checked-when-fetched",
        };
        super::request(&options.url, options.session, token).map_err(Failure::Usage)?;
        Ok(options)
    }
}

/// `--presence` is for chat channels: with none given (and no `--session`
/// that may restore some) it is a usage error; other channels beside chat
/// ones are followed without it, with a warning.
fn presence_channels(channels: &[Channel], session: bool) -> Result<(), Failure> {
    let (chat, other): (Vec<&Channel>, Vec<&Channel>) =
        channels.iter().partition(|c| matches!(c, Channel::Chat(_)));
    if chat.is_empty() && !session {
        return Err(Failure::Usage(
            "--presence: presence is only for chat channels (channel:<uuid>); none was given"
                .into(),
        ));
    }
    for channel in other {
        tracing::warn!(
            %channel,
            "--presence: presence is only for chat channels (channel:<uuid>); \
             this one is followed without it"
        );
    }
    Ok(())
}

/// The one token source given; a blank value counts as not given.
fn token_source(
    token: Option<String>,
    command: Option<String>,
    file: Option<PathBuf>,
) -> Result<TokenSource, Failure> {
    let blank = |s: &str| s.trim().is_empty();
    let mut given = Vec::new();
    if let Some(token) = token.filter(|t| !blank(t)) {
        given.push((
            "--token (SWITCHBOARD_TOKEN)",
            TokenSource::Fixed(token.trim().to_string()),
        ));
    }
    if let Some(command) = command.filter(|c| !blank(c)) {
        given.push((
            "--token-command (SWITCHBOARD_TOKEN_COMMAND)",
            TokenSource::Command(command),
        ));
    }
    if let Some(file) = file.filter(|f| !blank(&f.to_string_lossy())) {
        given.push((
            "--token-file (SWITCHBOARD_TOKEN_FILE)",
            TokenSource::File(file),
        ));
    }
    match given.len() {
        0 => Err(Failure::Usage(
            "no token: pass --token, --token-command or --token-file \
             (or set SWITCHBOARD_TOKEN, SWITCHBOARD_TOKEN_COMMAND or SWITCHBOARD_TOKEN_FILE)"
                .into(),
        )),
        1 => Ok(given.remove(0).1),
        _ => {
            let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
            Err(Failure::Usage(format!(
                "more than one token source: {}; give exactly one",
                names.join(" and ")
            )))
        }
    }
}

/// The WebSocket URL for `url`: `ws://` (also for `http://` or no scheme),
/// with [`WS_PATH`] when the URL has no path. TLS is not built in.
pub fn gateway_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        None | Some("ws") | Some("http") => {}
        Some("wss") | Some("https") => {
            return Err(format!(
                "`{url}`: TLS is not built into `switchboard tail`; use a ws:// URL"
            ))
        }
        Some(other) => return Err(format!("`{url}`: `{other}` is not ws://")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host, as in {DEFAULT_URL}"))?;
    let path = match uri.path() {
        "" | "/" => WS_PATH,
        path => path,
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!("ws://{authority}{path}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_path_and_lose_nothing_else() {
        assert_eq!(
            gateway_url("ws://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/v1/ws"
        );
        assert_eq!(gateway_url("http://h:1/").unwrap(), "ws://h:1/v1/ws");
        assert_eq!(gateway_url("h:1").unwrap(), "ws://h:1/v1/ws");
        assert_eq!(
            gateway_url("ws://h:1/x/v1/ws?a=b").unwrap(),
            "ws://h:1/x/v1/ws?a=b"
        );
        assert!(gateway_url("wss://h:1").unwrap_err().contains("TLS"));
        assert!(gateway_url("ftp://h:1").is_err());
        assert!(gateway_url("not a url").is_err());
    }

    #[test]
    fn presence_needs_a_chat_channel() {
        let chat = Channel::parse("channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d").unwrap();
        assert!(presence_channels(&[chat, Channel::Global], false).is_ok());
        let none = presence_channels(&[Channel::Global], false)
            .unwrap_err()
            .to_string();
        assert!(none.contains("only for chat channels"), "{none}");
        // A session may restore chat channels.
        assert!(presence_channels(&[], true).is_ok());
    }

    #[test]
    fn exactly_one_token_source() {
        let s = |t: Option<&str>, c: Option<&str>, f: Option<&str>| {
            token_source(t.map(Into::into), c.map(Into::into), f.map(Into::into))
        };
        assert_eq!(
            s(Some(" t "), None, None).unwrap(),
            TokenSource::Fixed("t".into())
        );
        assert_eq!(
            s(Some(" "), Some("mint"), None).unwrap(),
            TokenSource::Command("mint".into())
        );
        assert_eq!(
            s(None, None, Some("/run/token")).unwrap(),
            TokenSource::File("/run/token".into())
        );
        let none = s(None, Some(""), None).unwrap_err().to_string();
        assert!(none.contains("no token"), "{none}");
        let two = s(Some("t"), None, Some("/run/token"))
            .unwrap_err()
            .to_string();
        assert!(
            two.contains("--token (SWITCHBOARD_TOKEN) and --token-file"),
            "{two}"
        );
    }
}
