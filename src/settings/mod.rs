//! Settings: each declared once (in `declared.rs`), read from command-line
//! flags, then `SWITCHBOARD_*` environment variables, then the TOML file
//! named by `--config`, then its default. A wrong value, or one outside its
//! bounds, stops the command at once with a message naming the setting, its
//! flag and its variable.
//!
//! This module owns the value parsers, the bounds check, the file, the
//! precedence and [`SettingError`], and resolves the flags into what the
//! commands are given ([`ServeSettings`], the stream's [`StreamSettings`]),
//! with the few rules that join settings: the duplicate window is capped at
//! the retention, and `--dev` supplies the secret and allows any origin when
//! none is set. It parses into the types of the modules the settings drive
//! (the allowed origins, the session store's kind), but what each setting
//! does is the business of the module that uses it. The README's settings
//! tables are generated here ([`readme_tables`]).

mod declare;
mod declared;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use declared::{
    FileSettings, LimitFlags, Limits, LogFlags, LogSettings, ServeFlags, ServeOptions, DECLARED,
};

use crate::log::StreamSettings;

/// The precedence, as `--help` states it.
pub const PRECEDENCE: &str = "Settings come from, in order of precedence: command-line flags, \
SWITCHBOARD_* environment variables, the TOML file named by --config / SWITCHBOARD_CONFIG \
(keys are the flag names with underscores, e.g. `listen = \"0.0.0.0:8080\"`), then defaults.";

/// A setting with a bad value.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{name}` (--{flag} / {env}): {reason}")]
pub struct SettingError {
    pub name: &'static str,
    pub flag: String,
    pub env: String,
    pub reason: String,
}

/// An error for the setting `name`, whose flag and variable follow the rule
/// every declared setting follows (`--name-with-dashes`, `SWITCHBOARD_NAME`).
pub fn error(name: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        name,
        flag: name.replace('_', "-"),
        env: format!("SWITCHBOARD_{}", name.to_uppercase()),
        reason: reason.into(),
    }
}

/// One setting as declared: what `--help`, the README table and the errors
/// say about it.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The key in the TOML file; the flag is the name with dashes.
    pub name: &'static str,
    pub env: &'static str,
    /// The default, written as a user would write it; empty: unset.
    pub default: &'static str,
    /// The smallest and the largest value allowed, written the same way.
    pub range: Option<(&'static str, &'static str)>,
    /// What the setting does.
    pub meaning: &'static str,
}

impl Setting {
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    pub fn error(&self, reason: impl Into<String>) -> SettingError {
        SettingError {
            name: self.name,
            flag: self.flag(),
            env: self.env.to_string(),
            reason: reason.into(),
        }
    }

    /// The flag's `--help` line.
    pub fn help(&self) -> String {
        let mut help = self.meaning.to_string();
        if !self.default.is_empty() {
            help.push_str(&format!(" [default: {}]", self.default));
        }
        if let Some((min, max)) = self.range {
            help.push_str(&format!(" [range: {min} to {max}]"));
        }
        help
    }
}

/// `--config`: not a key of the file it names.
pub const CONFIG: Setting = Setting {
    name: "config",
    env: "SWITCHBOARD_CONFIG",
    default: "",
    range: None,
    meaning: "TOML settings file.",
};

/// A setting's type: parsed from a flag, a variable, a value of the file
/// or a declared default, all as text.
pub trait Value: Clone + PartialOrd + Send + Sync + 'static {
    /// The value, or what was expected instead.
    fn parse(text: &str) -> Result<Self, String>;

    /// An unset [`Optional`] setting: no bounds apply to it.
    fn is_unset(&self) -> bool {
        false
    }
}

/// A setting that may be unset (written as an empty value). An alias and
/// not `Option<T>` in the declarations, since clap reads a field of type
/// `Option<Option<T>>` as a flag whose value may be left out.
pub type Optional<T> = Option<T>;

impl<T: Value> Value for Option<T> {
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            Ok(None)
        } else {
            T::parse(text).map(Some)
        }
    }

    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

/// Durations such as `500ms`, `90s`, `2h`, `7d`.
impl Value for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map_err(|e| format!("`{text}` is not a duration like 90s, 2h or 7d: {e}"))
    }
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a whole number"))
            }
        }
    )*};
}
whole_number!(u32, u64, usize);

impl Value for bool {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            other => Err(format!("`{other}` is not true or false")),
        }
    }
}

impl Value for SocketAddr {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:8080"))
    }
}

impl Value for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
}

impl Value for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
}

/// A stream name NATS accepts: no spaces, `.`, `*`, `>`, or path separators.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamName(pub String);

impl Value for StreamName {
    fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|c| !c.is_whitespace() && !matches!(c, '.' | '*' | '>' | '/' | '\\'));
        if ok {
            Ok(StreamName(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is not a stream name (no spaces, `.`, `*`, `>` or slashes)"
            ))
        }
    }
}

/// A key-value bucket name NATS accepts: letters, digits, `_` and `-`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BucketName(pub String);

impl Value for BucketName {
    fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if ok {
            Ok(BucketName(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is not a bucket name (letters, digits, `_` and `-` only)"
            ))
        }
    }
}

impl Value for crate::origins::Origins {
    fn parse(text: &str) -> Result<Self, String> {
        crate::origins::Origins::parse(text)
    }
}

impl Value for crate::diagnostics::LogFormat {
    fn parse(text: &str) -> Result<Self, String> {
        crate::diagnostics::LogFormat::parse(text)
    }
}

impl Value for crate::session::StoreKind {
    fn parse(text: &str) -> Result<Self, String> {
        use crate::session::StoreKind;
        match text.trim() {
            "sled" => Ok(StoreKind::Sled),
            "kv" => Ok(StoreKind::Kv),
            other => Err(format!("`{other}` is not a session store: sled or kv")),
        }
    }
}

/// One NATS server's URL, or a comma-separated list of a cluster's servers
/// (the client connects to one and fails over to the others): each
/// `nats://`, `tls://`, `ws://`, `wss://` or `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatsUrl(pub String);

impl NatsUrl {
    /// The servers, in the order given.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').map(str::trim)
    }
}

impl Value for NatsUrl {
    fn parse(text: &str) -> Result<Self, String> {
        let servers: Vec<&str> = text.split(',').map(str::trim).collect();
        if let Some(bad) = servers.iter().find(|v| !is_server_url(v)) {
            return Err(if servers.len() == 1 {
                format!("`{text}` is not a NATS URL like nats://127.0.0.1:4222")
            } else if bad.is_empty() {
                format!(
                    "`{text}` has an empty server in its list (servers are separated by one comma)"
                )
            } else {
                format!(
                    "`{bad}` (in the list `{text}`) is not a NATS URL like nats://127.0.0.1:4222"
                )
            });
        }
        Ok(NatsUrl(servers.join(",")))
    }
}

fn is_server_url(v: &str) -> bool {
    ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|p| v.starts_with(p))
        || (!v.contains("://") && v.contains(':'))
}

/// Parses `text` and checks it against the bounds.
fn parse_within<T: Value>(text: &str, range: Option<(&str, &str)>) -> Result<T, String> {
    let value = T::parse(text)?;
    if let Some((min, max)) = range.filter(|_| !value.is_unset()) {
        if T::parse(min).is_ok_and(|min| value < min) {
            return Err(format!("`{}` is below the minimum {min}", text.trim()));
        }
        if T::parse(max).is_ok_and(|max| value > max) {
            return Err(format!("`{}` is above the maximum {max}", text.trim()));
        }
    }
    Ok(value)
}

/// The clap value parser of a setting: its type's parser and its bounds.
pub fn parser<T: Value>(
    range: Option<(&'static str, &'static str)>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| parse_within(text, range)
}

/// A setting's value: the flag or variable (already parsed and checked by
/// clap), else the file's, else the default.
fn pick<T: Value>(
    given: &Option<T>,
    file: Option<&toml::Value>,
    setting: &Setting,
) -> Result<T, SettingError> {
    if let Some(value) = given {
        return Ok(value.clone());
    }
    let Some(value) = file else {
        return parse_within(setting.default, setting.range)
            .map_err(|reason| setting.error(format!("the declared default is wrong: {reason}")));
    };
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(setting.error(format!(
                "expected a string or a number in the config file, found {other}"
            )))
        }
    };
    parse_within(&text, setting.range)
        .map_err(|reason| setting.error(format!("{reason} (in the config file)")))
}

impl FileSettings {
    /// Reads the file, if one is named. One file serves every command: it
    /// may hold the keys of every group.
    pub fn load(path: Option<&Path>) -> Result<FileSettings, SettingError> {
        let Some(path) = path else {
            return Ok(FileSettings::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| CONFIG.error(format!("cannot read {}: {e}", path.display())))?;
        FileSettings::parse(&text)
            .map_err(|reason| CONFIG.error(format!("{}: {reason}", path.display())))
    }

    fn parse(text: &str) -> Result<FileSettings, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())
    }
}

/// A clap error about a declared setting's value, as a [`SettingError`]
/// (clap's own message names the flag only); `None` for any other error.
pub fn from_clap(error: &clap::Error) -> Option<SettingError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let setting = DECLARED
        .iter()
        .flat_map(|group| group.iter())
        .find(|s| s.flag() == flag)?;
    let reason = std::error::Error::source(error)?.to_string();
    Some(setting.error(reason))
}

impl LogSettings {
    /// The stream's configuration. NATS refuses a duplicate window longer
    /// than the max age, so the window is capped at the retention.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            name: self.stream.0.clone(),
            retention: self.retention,
            replicas: self.replicas,
            duplicate_window: self.duplicate_window.min(self.retention),
        }
    }
}

/// Where `serve` records the URL of the nats-server it started, so that
/// `publish`, `replay` and `projection` find it with no setting.
pub fn local_url_file(data_dir: &Path) -> PathBuf {
    data_dir.join("nats").join("url")
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    /// The address of `/metrics` (and of a second `/healthz` and
    /// `/readyz`); `None`: they are on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `None`: start a local nats-server under the data directory.
    pub nats_url: Option<String>,
    pub data_dir: PathBuf,
    /// The token keys and checks.
    pub tokens: crate::token::KeySources,
    pub dev: bool,
    pub stream: StreamSettings,
    pub limits: Limits,
    pub session_ttl: Duration,
    /// Where sessions are kept.
    pub session_store: crate::session::StoreKind,
    /// The `kv` session store's bucket.
    pub session_bucket: String,
    /// How often a connection writes its moved cursors (the store's own
    /// default when the setting is unset: [`StoreKind::flush_interval`](crate::session::StoreKind::flush_interval)).
    pub session_flush_interval: Duration,
    /// Sessions one user keeps (the newest).
    pub max_sessions_per_user: usize,
    /// Web origins allowed besides the gateway's own (any, in `--dev` when
    /// none are set).
    pub allowed_origins: crate::origins::Origins,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
    /// How far in the future a token's `nbf` and `iat` may be.
    pub token_leeway: Duration,
    /// A dropped user's presence grace.
    pub presence_grace: Duration,
    /// The most users a presence snapshot lists.
    pub presence_limit: usize,
}

impl ServeSettings {
    /// Resolves every `serve` setting from its three groups of flags and
    /// the file.
    pub fn resolve(
        log: &LogFlags,
        serve: &ServeFlags,
        limits: &LimitFlags,
        file: &FileSettings,
    ) -> Result<ServeSettings, SettingError> {
        let log = LogSettings::resolve(log, file)?;
        let serve = ServeOptions::resolve(serve, file)?;
        let limits = Limits::resolve(limits, file)?;
        let list = |value: Option<String>| -> Vec<String> {
            value
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut secrets = list(serve.jwt_secret);
        let public_keys: Vec<PathBuf> = list(serve.jwt_public_keys)
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let jwks_url = serve.jwks_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(error(
                    "jwks_url",
                    "must be an http:// or https:// URL (the JWKS, or the OpenID Connect \
                     discovery document ending in /.well-known/openid-configuration)",
                ));
            }
        }
        if secrets.is_empty() && public_keys.is_empty() && jwks_url.is_none() {
            if !serve.dev {
                return Err(error(
                    "jwt_secret",
                    "not set: serve refuses to start without a token key: a secret, public keys \
                     (SWITCHBOARD_JWT_PUBLIC_KEYS) or a JWKS URL (SWITCHBOARD_JWKS_URL); or pass \
                     --dev for a development secret",
                ));
            }
            secrets.push(DEV_SECRET.to_string());
        }
        if serve.metrics_listen == Some(serve.listen) && serve.listen.port() != 0 {
            return Err(error(
                "metrics_listen",
                format!(
                    "is the main address ({}): give it another port, or leave it unset to \
                     serve /metrics on the main address",
                    serve.listen
                ),
            ));
        }
        let tokens = crate::token::KeySources {
            secrets,
            public_keys,
            jwks_url,
            jwks_refresh: serve.jwks_refresh,
            jwks_cache: Some(log.data_dir.join("jwks.json")),
            issuer: serve.jwt_issuer.filter(|i| !i.is_empty()),
            audience: list(serve.jwt_audience),
            leeway: serve.token_leeway,
            user_claim: serve.jwt_user_claim,
        };
        Ok(ServeSettings {
            listen: serve.listen,
            metrics_listen: serve.metrics_listen,
            stream: log.stream_settings(),
            nats_url: log.nats_url.map(|url| url.0),
            data_dir: log.data_dir,
            tokens,
            dev: serve.dev,
            limits,
            session_ttl: serve.session_ttl,
            session_store: serve.session_store,
            session_bucket: serve.session_bucket.0,
            session_flush_interval: serve
                .session_flush_interval
                .unwrap_or_else(|| serve.session_store.flush_interval()),
            max_sessions_per_user: serve.max_sessions_per_user,
            allowed_origins: match serve.allowed_origins {
                none if none.is_empty() && serve.dev => crate::origins::Origins::any(),
                origins => origins,
            },
            shutdown_timeout: serve.shutdown_timeout,
            token_leeway: serve.token_leeway,
            presence_grace: serve.presence_grace,
            presence_limit: serve.presence_limit,
        })
    }
}

/// The development secret `--dev` uses when none is set.
pub const DEV_SECRET: &str = "switchboard-dev-secret-do-not-use-in-production";

/// The README's settings tables, generated from the declarations: the log's
/// (with `--config`), then `serve`'s own and the connections' limits. Each
/// is `(name, table)`; the README marks each table with its name. Public
/// because the declarations are this module's: `tests/readme_settings.rs`
/// checks the README against them (and rewrites it, `UPDATE_README=1`).
pub fn readme_tables() -> [(&'static str, String); 2] {
    let log = std::iter::once(&CONFIG).chain(LogSettings::SETTINGS);
    let serve = ServeOptions::SETTINGS.iter().chain(Limits::SETTINGS);
    [
        ("log", markdown_table(log)),
        ("serve", markdown_table(serve)),
    ]
}

fn markdown_table<'a>(settings: impl Iterator<Item = &'a Setting>) -> String {
    let mut table = String::from(
        "| flag | environment | default | bounds | meaning |\n|---|---|---|---|---|\n",
    );
    for s in settings {
        let default = match s.default {
            "" => "unset".to_string(),
            d => format!("`{d}`"),
        };
        let bounds = match s.range {
            Some((min, max)) => format!("`{min}` to `{max}`"),
            None => String::new(),
        };
        table.push_str(&format!(
            "| `--{}` | `{}` | {default} | {bounds} | {} |\n",
            s.flag(),
            s.env,
            s.meaning.replace('|', "\\|"),
        ));
    }
    table
}

#[cfg(test)]
mod tests;
