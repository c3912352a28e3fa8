//! The HTTP side of needlectl: the service's URL, the bearer token, requests and the mapping
//! of every answer onto a [`Failure`] class.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use needled::auth::StoredToken;
use needled::session::Role;
use serde_json::Value;

use crate::failure::{Exit, Failure};

/// Where the service listens when nothing else is said (needled's default `service.bind`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:7878";
/// Environment variable with the service's base URL.
pub const URL_ENV: &str = "NEEDLE_URL";
/// Environment variable with the API token.
pub const TOKEN_ENV: &str = "NEEDLE_TOKEN";
/// Environment variable with the pinned SHA-256 of needled's TLS certificate.
pub const TLS_SHA256_ENV: &str = "NEEDLE_TLS_SHA256";
/// Environment variable naming a CA (or the server's certificate) PEM file.
pub const CA_FILE_ENV: &str = "NEEDLE_CA_FILE";

/// How https:// URLs are trusted, set once from the options before any request.
static TLS: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Sets up TLS from `--tls-sha256` / `--ca-file` (or their environment variables); with
/// neither, https:// URLs are refused (usage error `tls_untrusted`).
pub fn init_tls(pin: Option<&str>, ca: Option<&Path>) -> Result<(), Failure> {
    let pin = pin.map(str::to_owned).or_else(|| {
        std::env::var(TLS_SHA256_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    let ca = ca
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CA_FILE_ENV).map(std::path::PathBuf::from));
    let config = match (pin, ca) {
        (Some(pin), _) => needle_client::tls::client_pinned(&pin)
            .map_err(|e| Failure::usage("bad_tls_sha256", e))?,
        (None, Some(ca)) => {
            needle_client::tls::client_with_ca(&ca).map_err(|e| Failure::usage("bad_ca_file", e))?
        }
        (None, None) => return Ok(()),
    };
    let _ = TLS.set(std::sync::Arc::new(config));
    Ok(())
}

/// The base URL: `--url`, else `$NEEDLE_URL`, else [`DEFAULT_URL`]; checked and without a
/// trailing slash.
pub fn base_url(flag: Option<&str>) -> Result<String, Failure> {
    let env = std::env::var(URL_ENV).ok().filter(|v| !v.trim().is_empty());
    let (url, from) = match (flag, env) {
        (Some(u), _) => (u.to_string(), "--url"),
        (None, Some(u)) => (u, URL_ENV),
        (None, None) => (DEFAULT_URL.to_string(), "the default"),
    };
    let url = url.trim().trim_end_matches('/').to_string();
    if url.starts_with("https://") && TLS.get().is_none() {
        return Err(Failure::usage(
            "tls_untrusted",
            format!(
                "{url} (from {from}): say how to trust needled's certificate: --tls-sha256 \
                 with the fingerprint needled logs (or {TLS_SHA256_ENV}), or --ca-file"
            ),
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or_default();
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(Failure::usage(
            "bad_url",
            format!("'{url}' (from {from}) is not a service URL: expected http://HOST:PORT, e.g. {DEFAULT_URL}"),
        ));
    }
    Ok(url)
}

/// Which of the token file's tokens to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Runs sessions.
    Operator,
    /// Everything an operator does, plus overrides, lot recalls and the sim controls.
    Technician,
}

impl TokenRole {
    fn role(self) -> Role {
        match self {
            TokenRole::Operator => Role::Operator,
            TokenRole::Technician => Role::Technician,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TokenRole::Operator => "operator",
            TokenRole::Technician => "technician",
        }
    }
}

fn no_token(message: String) -> Failure {
    Failure::new(Exit::Auth, "no_token", message).hint(format!(
        "needled writes tokens.json into its data directory on first start: pass --token-file \
         <data-dir>/tokens.json, or give the token with {TOKEN_ENV} (or --token) when the tokens \
         are set in the service's configuration"
    ))
}

/// The bearer token: `--token`, else `$NEEDLE_TOKEN`, else the token of `role` in `file`.
pub fn resolve_token(flag: Option<&str>, file: &Path, role: TokenRole) -> Result<String, Failure> {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        return Ok(t);
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(no_token(format!(
                "no API token: --token and {TOKEN_ENV} are not set and the token file {} does not exist",
                file.display()
            )))
        }
        Err(e) => {
            return Err(no_token(format!("no API token: cannot read the token file {}: {e}", file.display())));
        }
    };
    let tokens: Vec<StoredToken> = serde_json::from_str(&text).map_err(|e| {
        no_token(format!(
            "no API token: the token file {} is not a JSON list of {{name, role, token}}: {e}",
            file.display()
        ))
    })?;
    tokens
        .into_iter()
        .find(|t| t.role == role.role())
        .map(|t| t.token)
        .ok_or_else(|| {
            no_token(format!(
                "no API token: the token file {} has no {} token",
                file.display(),
                role.name()
            ))
        })
}

/// Percent-encodes one path segment (ids and lots typed by people).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A successful answer.
#[derive(Debug)]
pub struct Reply {
    /// The body, exactly as received.
    pub text: String,
}

impl Reply {
    /// The body as JSON; an answer that is not JSON is a service failure.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_str(&self.text).map_err(|e| {
            Failure::new(
                Exit::Server,
                "bad_response",
                format!(
                    "the service's answer is not JSON ({e}): {}",
                    snippet(&self.text)
                ),
            )
        })
    }
}

fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}...", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// A client of one needled, with or without a token: needle-client underneath, its errors
/// mapped onto needlectl's failure classes and messages.
pub struct Api {
    base: String,
    client: needle_client::Client,
    timeout: Duration,
}

impl Api {
    /// A client of the service at `base` (checked by [`base_url`]); every request must be
    /// answered within `timeout`.
    pub fn new(base: String, timeout: Duration, token: Option<String>) -> Self {
        let builder = match token {
            Some(t) => needle_client::Client::builder(&base, t),
            None => needle_client::Client::anonymous(&base),
        };
        let mut builder = builder
            .timeout(timeout)
            .user_agent(concat!("needlectl/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = TLS.get() {
            builder = builder.tls(needle_client::Tls::Config(std::sync::Arc::clone(tls)));
        }
        // Only a Tls::Sha256 or Tls::CaFile can fail to build; a ready rustls config cannot.
        let client = builder
            .build()
            .unwrap_or_else(|_| needle_client::Client::new(&base, ""));
        Self {
            base,
            client,
            timeout,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply, Failure> {
        self.send("GET", path, None)
    }

    /// `POST path`, with a JSON body or none.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Reply, Failure> {
        self.send("POST", path, body)
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Reply, Failure> {
        self.send("PUT", path, Some(body))
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, Failure> {
        let text = self
            .client
            .text(method, path, body)
            .map_err(|e| self.failure(method, path, e))?;
        Ok(Reply { text })
    }

    /// `GET path` as a server-sent event stream: the body, read line by line, with the
    /// timeout applying to each read rather than to the whole stream.
    pub fn stream(&self, path: &str) -> Result<impl BufRead, Failure> {
        let body = self
            .client
            .stream(path)
            .map_err(|e| self.failure("GET", path, e))?;
        Ok(BufReader::new(body))
    }

    /// needle-client's error as needlectl's failure.
    fn failure(&self, method: &str, path: &str, e: needle_client::Error) -> Failure {
        use needle_client::Error as E;
        match e {
            E::Api { status, body, .. } => api_failure(status, &body, method, path),
            E::Timeout(_) => self.timed_out(method, path),
            E::Lost(e) => Failure::new(
                Exit::Connection,
                "connection_failed",
                format!(
                    "lost the connection to needled at {} ({method} {path}): {e}",
                    self.base
                ),
            ),
            E::Transport(detail) | E::Tls(detail) | E::Decode(detail) => Failure::new(
                Exit::Connection,
                "connection_failed",
                format!(
                    "cannot reach needled at {} ({method} {path}): {detail}",
                    self.base
                ),
            )
            .hint(format!(
                "is needled running and listening there? Set the address with --url or {URL_ENV}"
            )),
        }
    }

    fn timed_out(&self, method: &str, path: &str) -> Failure {
        Failure::new(
            Exit::Connection,
            "timeout",
            format!(
                "needled at {} did not answer {method} {path} within {} ms",
                self.base,
                self.timeout.as_millis()
            ),
        )
        .hint("the service may be overloaded or hung; raise --timeout-ms only if it is known to be slow")
    }

    /// A failure reading a body (the connection broke or stalled).
    pub fn transport_io(&self, method: &str, path: &str, e: &std::io::Error) -> Failure {
        if matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            return self.timed_out(method, path);
        }
        Failure::new(
            Exit::Connection,
            "connection_failed",
            format!(
                "lost the connection to needled at {} ({method} {path}): {e}",
                self.base
            ),
        )
    }
}

/// The failure for an HTTP error answer: the API's `{"error": {"code", "message"}}` when the
/// body is one, else `http_<status>` with the start of the body.
pub fn api_failure(status: u16, text: &str, method: &str, path: &str) -> Failure {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let fields = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        Some((
            e.get("code")?.as_str()?.to_string(),
            e.get("message")?.as_str()?.to_string(),
        ))
    });
    let exit = match status {
        401 | 403 => Exit::Auth,
        400..=499 => Exit::Refused,
        _ => Exit::Server,
    };
    let mut failure = match fields {
        Some((code, message)) => {
            let mut f = Failure::new(exit, &code, message);
            f.body = Some(text.to_string());
            f
        }
        None => Failure::new(
            exit,
            &format!("http_{status}"),
            format!("{method} {path}: HTTP {status}: {}", snippet(text)),
        ),
    };
    failure.hint = match status {
        401 => Some(format!(
            "the service did not accept the token: check --token, {TOKEN_ENV} or --token-file (tokens.json of the \
             service's data directory)"
        )),
        403 => Some("use --role technician, or give a technician's token with NEEDLE_TOKEN or --token".to_string()),
        _ => None,
    };
    failure
}

/// Reads one server-sent event's `data` (lines joined by `\n`); `None` at the end of the
/// stream. Comments (keep-alives) and other fields are skipped.
pub fn next_event(reader: &mut impl BufRead) -> std::io::Result<Option<(String, String)>> {
    let mut event = String::new();
    let mut data: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() {
                return Ok(Some((std::mem::take(&mut event), data.join("\n"))));
            }
            event.clear();
            continue;
        }
        if l.starts_with(':') {
            continue;
        }
        let (field, value) = l
            .split_once(':')
            .map_or((l, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
}

/// Reads a whole file as text or bytes, as a usage failure naming the file when it cannot.
pub fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| {
            Failure::usage(
                "unreadable_file",
                format!("cannot read the {what} {}: {e}", path.display()),
            )
        })?;
    Ok(bytes)
}
