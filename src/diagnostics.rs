//! The process's own diagnostics: `tracing` records written to stderr,
//! filtered by `SWITCHBOARD_LOG`, as text for people or as JSON lines for a
//! log collector (`log_format`). Not the event log, which is [`crate::log`].

/// How records are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogFormat {
    /// One line per record: time, level, target, message, `key=value`
    /// fields (colored when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp` (RFC 3339, UTC), `level`,
    /// `target`, `message` and each field of the record under its own name
    /// (`error`, `next_seq`, …), plus the spans it was recorded in.
    Json,
}

impl LogFormat {
    /// The format named `text` or `json`.
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format: text or json")),
        }
    }
}

/// The variable holding the filter (`tracing`'s `EnvFilter` syntax, for
/// example `info,switchboard=debug`).
pub const FILTER_VARIABLE: &str = "SWITCHBOARD_LOG";

/// Installs the process's subscriber: the `SWITCHBOARD_LOG` filter (else
/// `default_level`), writing `format` to stderr. Called once, first thing.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(FILTER_VARIABLE)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}
