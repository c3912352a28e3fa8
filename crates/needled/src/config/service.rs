//! `[service]`: the HTTP API's address, TLS and allowed Host names, the data directory, logs
//! and the API tokens.

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
    /// `[[service.tokens]]`: API bearer tokens beside the ledger's people (for jigs).
    pub tokens: Vec<TokenConfig>,
    /// `allowed_hosts`: names (or addresses) the `Host` header may carry, besides the
    /// loopback names (`localhost`, `127.0.0.1`, `::1`) and the bind address, which are
    /// always allowed; the port is not compared. Any other Host is refused (421
    /// `host_not_allowed`), so a DNS-rebinding page cannot reach the API or the console.
    pub allowed_hosts: Vec<String>,
    /// `[service.tls]`: HTTPS, always on for a non-loopback `bind`.
    pub tls: TlsConfig,
}

/// `[service.tls]`. Off loopback needled serves HTTPS only (there is no plain-HTTP listener);
/// on loopback only with `on_loopback = true`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `cert_file`: PEM certificate chain. Relative paths are resolved against `data_dir`.
    /// Without it (and `key_file`), needled creates a self-signed certificate on first start
    /// (`tls-cert.pem`, `tls-key.pem` 0600 in `data_dir`) and logs its SHA-256 fingerprint.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: PEM private key of `cert_file`; both or neither.
    pub key_file: Option<PathBuf>,
    /// `on_loopback`: serve HTTPS on a loopback `bind` too. Default false.
    pub on_loopback: bool,
}

impl ServiceConfig {
    /// Whether the API is served over TLS: always off loopback.
    pub fn tls_enabled(&self) -> bool {
        !self.bind.ip().is_loopback() || self.tls.on_loopback
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Human,
            telemetry_hz: 20,
            tokens: Vec::new(),
            allowed_hosts: Vec::new(),
            tls: TlsConfig::default(),
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

/// Tokens starting with this (in any case) are placeholders from the shipped example files,
/// refused at load.
pub const PLACEHOLDER_TOKEN_PREFIX: &str = "CHANGE-ME";

/// The example tokens of the shipped configuration files, refused at load like placeholders.
pub const EXAMPLE_TOKENS: &[&str] = &["a-long-random-secret-string"];

/// Whether `token` is a placeholder or a shipped example: refused wherever needled binds.
pub fn is_placeholder_token(token: &str) -> bool {
    let t = token.trim();
    t.get(..PLACEHOLDER_TOKEN_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PLACEHOLDER_TOKEN_PREFIX))
        || EXAMPLE_TOKENS.iter().any(|e| t.eq_ignore_ascii_case(e))
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs treatment sessions.
    Operator,
    /// Also services the rig: calibration, overrides, fault injection on the sim.
    Technician,
}
