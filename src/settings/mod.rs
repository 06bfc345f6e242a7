//! Settings: flags, then `SWITCHBOARD_*` environment, then an optional TOML
//! file, then defaults. A wrong value stops the command at once with a
//! message naming the setting, its flag and its variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::gateway::Limits;
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

/// One setting as given on the command line or in the environment (clap
/// reads both), before the file and the default are consulted.
pub struct Given<'a> {
    pub name: &'static str,
    pub value: &'a Option<String>,
}

/// The TOML file's table, if any.
#[derive(Default)]
pub struct File {
    table: toml::Table,
}

impl File {
    pub fn load(path: Option<&Path>) -> Result<File, SettingError> {
        let Some(path) = path else {
            return Ok(File::default());
        };
        let err = |reason: String| SettingError {
            name: "config",
            flag: "config".into(),
            env: "SWITCHBOARD_CONFIG".into(),
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| err(format!("{} is not valid TOML: {e}", path.display())))?;
        Ok(File { table })
    }

    /// The value of a setting: flag or environment, else the file.
    pub fn pick(&self, given: Given<'_>) -> Result<Option<String>, SettingError> {
        if let Some(v) = given.value {
            return Ok(Some(v.clone()));
        }
        match self.table.get(given.name) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(i)) => Ok(Some(i.to_string())),
            Some(toml::Value::Boolean(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(error(
                given.name,
                format!("expected a string or a number in the config file, found {other}"),
            )),
        }
    }

    /// Keys in the file that are not settings: a typo must not pass silently.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        self.table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

pub fn error(name: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        name,
        flag: name.replace('_', "-"),
        env: format!("SWITCHBOARD_{}", name.to_uppercase()),
        reason: reason.into(),
    }
}

/// Parses a duration such as `90s`, `2h`, `7d`, `500ms`.
pub fn duration(name: &'static str, value: &str) -> Result<Duration, SettingError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        error(
            name,
            format!("`{value}` is not a duration like 90s, 2h or 7d: {e}"),
        )
    })
}

pub fn number<T>(name: &'static str, value: &str, min: T) -> Result<T, SettingError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| error(name, format!("`{value}` is not a whole number")))?;
    if n < min {
        return Err(error(name, format!("{n} is below the minimum {min}")));
    }
    Ok(n)
}

pub fn boolean(name: &'static str, value: &str) -> Result<bool, SettingError> {
    match value.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(error(name, format!("`{other}` is not true or false"))),
    }
}

/// A stream name NATS accepts: no spaces, `.`, `*`, `>`, or path separators.
pub fn stream_name(value: &str) -> Result<String, SettingError> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(error(
            "stream",
            format!("`{value}` is not a stream name (no spaces, `.`, `*`, `>` or slashes)"),
        ))
    }
}

pub fn nats_url(value: &str) -> Result<String, SettingError> {
    let v = value.trim();
    let ok = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|p| v.starts_with(p))
        || (!v.contains("://") && v.contains(':'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(error(
            "nats_url",
            format!("`{value}` is not a NATS URL like nats://127.0.0.1:4222"),
        ))
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
    /// `None`: start a local nats-server under the data directory.
    pub nats_url: Option<String>,
    pub data_dir: PathBuf,
    pub jwt_secret: String,
    pub dev: bool,
    pub stream: StreamSettings,
    pub limits: Limits,
    pub session_ttl: Duration,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
}

/// The development secret `--dev` uses when none is set.
pub const DEV_SECRET: &str = "switchboard-dev-secret-do-not-use-in-production";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_names() {
        assert_eq!(
            duration("retention", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            duration("retention", "90s").unwrap(),
            Duration::from_secs(90)
        );
        let err = duration("retention", "7x").unwrap_err().to_string();
        assert!(
            err.contains("retention") && err.contains("SWITCHBOARD_RETENTION"),
            "{err}"
        );
        assert!(stream_name("CHAT_EVENTS").is_ok());
        assert!(stream_name("a.b").is_err());
        assert!(number::<usize>("replicas", "0", 1).is_err());
        assert!(nats_url("nats://127.0.0.1:4222").is_ok());
        assert!(nats_url("http://x").is_err());
    }

    #[test]
    fn file_values_fill_in_and_flags_win() {
        let file = File {
            table: "listen = \"0.0.0.0:9\"\nsend_queue = 10\n".parse().unwrap(),
        };
        let none = None;
        let flag = Some("127.0.0.1:1".to_string());
        assert_eq!(
            file.pick(Given {
                name: "listen",
                value: &none
            })
            .unwrap()
            .as_deref(),
            Some("0.0.0.0:9")
        );
        assert_eq!(
            file.pick(Given {
                name: "listen",
                value: &flag
            })
            .unwrap()
            .as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            file.pick(Given {
                name: "send_queue",
                value: &none
            })
            .unwrap()
            .as_deref(),
            Some("10")
        );
        assert_eq!(
            file.unknown_keys(&["listen"]),
            vec!["send_queue".to_string()]
        );
    }
}
