//! How a command fails, and its exit code: 2 for bad arguments, settings or
//! input (nothing was done), 1 for work that failed. Every command's error
//! is printed once, each cause said once.

use crate::settings::SettingError;

/// How a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad arguments, settings or input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The work failed: exit 1.
    #[error("{}", causes(.0))]
    Work(#[from] anyhow::Error),
}

/// An error and its causes, each said once: many errors quote their cause
/// in their own message, so a cause whose words are already there is left
/// out (not `IO error: refused: IO error: refused: refused`).
pub fn causes(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.iter().any(|earlier| earlier.contains(&text)) {
            continue;
        }
        said.push(text);
    }
    said.join(": ")
}

impl From<SettingError> for Failure {
    fn from(e: SettingError) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Work(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("IO error: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = anyhow::Error::new(Quoting(io)).context("cannot connect to NATS");
        assert_eq!(
            Failure::Work(error).to_string(),
            "cannot connect to NATS: IO error: refused"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(Failure::Work(plain).to_string(), "outer: inner");
    }
}
