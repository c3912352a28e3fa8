//! What can go wrong driving a rig or reading a jig.

use std::time::Duration;

/// An error of the suite: the service refused or failed, an instrument failed, or the bench
/// cannot do what a scenario needs. Never a verdict: verdicts are checks in the report.
#[derive(Debug, thiserror::Error)]
pub enum HilError {
    /// The service answered with an error (`{"error": {"code", "message"}}`).
    #[error("{method} {path}: HTTP {status} {code}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The service's stable error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached or answered something unreadable.
    #[error("{method} {path}: {detail}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// What happened.
        detail: String,
    },
    /// An instrument or actuator of the jig failed.
    #[error("jig: {0}")]
    Jig(String),
    /// The rig or jig cannot do this (missing instrument, no restart command, ...).
    #[error("not supported by this bench: {what}: {why}")]
    Unsupported {
        /// What was asked.
        what: String,
        /// Why not, and how to provide it.
        why: String,
    },
    /// The jig configuration is invalid or missing.
    #[error("jig config: {0}")]
    Config(String),
    /// The service under test could not be started or restarted.
    #[error("service: {0}")]
    Service(String),
    /// Waited too long for something.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// A file of the report or the configuration.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl HilError {
    /// The service's error code, if this is an API refusal.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            HilError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        HilError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Results of the suite.
pub type Result<T, E = HilError> = std::result::Result<T, E>;
