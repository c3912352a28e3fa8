//! `[service]`: the HTTP API's address, the data directory, logs and the API tokens.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[service]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// `bind`: address and port of the HTTP API. Default `127.0.0.1:7878`.
    pub bind: SocketAddr,
    /// `data_dir`: database, device key, generated tokens. Default `data`; after
    /// [`parse`](super::parse) it is absolute (a relative path is resolved against the
    /// current directory).
    pub data_dir: PathBuf,
    /// `log_format`: `"human"` (default) or `"json"`.
    pub log_format: LogFormat,
    /// `telemetry_hz`: rate of the SSE telemetry stream, 1 to 100. Default 20.
    pub telemetry_hz: u32,
    /// `[[service.tokens]]`: API bearer tokens. Required for a non-loopback `bind`.
    pub tokens: Vec<TokenConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Human,
            telemetry_hz: 20,
            tokens: Vec::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// One API token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `token`: the bearer token, at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub token: String,
    /// `role`: `"operator"` or `"technician"`.
    pub role: Role,
    /// `name`: who holds it, recorded as the actor of every event.
    pub name: String,
}

impl fmt::Debug for TokenConfig {
    // Never print the secret into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// Shortest accepted API token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Tokens starting with this are placeholders from the shipped example files.
pub const PLACEHOLDER_TOKEN_PREFIX: &str = "CHANGE-ME";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs treatment sessions.
    Operator,
    /// Also services the rig: calibration, overrides, fault injection on the sim.
    Technician,
}
