//! A blocking client of needled's HTTP API, typed on the contract (`needle_api`): every call
//! returns the contract's type, every refusal is an [`Error::Api`] with its [`ErrorCode`],
//! and [`Client::telemetry`] reads the SSE stream as [`needle_api::TelemetryEvent`]s. On
//! `ureq`, as needlectl and hil-tests use.
//!
//! With the `harness` feature, [`harness`] starts needled as a child process on port 0 and
//! knows it is ready from the file `needled --ready-file` writes, not from its log.
//!
//! ```no_run
//! let client = needle_client::Client::new("http://127.0.0.1:7878", "TOKEN");
//! match client.home() {
//!     Ok(_) => println!("homing"),
//!     Err(e) if e.code() == Some(needle_api::ErrorCode::Interlocked) => println!("{e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), needle_client::Error>(())
//! ```

#[cfg(feature = "harness")]
pub mod harness;
mod sse;
pub mod tls;

use std::io::Read;
use std::time::Duration;

pub use needle_api::ErrorCode;

use needle_api::{
    Cartridge, ChangePlan, CreatePlan, CreateSession, EndSession, ErrorBody, Events, Health,
    Injected, NewPerson, NewToken, Numbing, People, Plan, Plans, Reason, Recalled, Revoked,
    Session, SessionReport, Setpoints, SimAction, SimTruth, Status, Ticks, Version,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use sse::Telemetry;

/// What can go wrong with a call.
#[derive(Debug)]
pub enum Error {
    /// The service did not answer (connection refused, reset, TLS refused): what the
    /// transport said, and its cause.
    Transport(String),
    /// The service did not answer within the client's timeout.
    Timeout(String),
    /// The connection broke while the answer was read.
    Lost(String),
    /// The service refused: its status, stable code (`None` for a code this client does not
    /// know: a newer service) and message.
    Api {
        /// HTTP status.
        status: u16,
        /// The code as sent.
        code_text: String,
        /// The message, for people.
        message: String,
        /// The body as received.
        body: String,
    },
    /// The answer was not the contract's type.
    Decode(String),
    /// TLS trust could not be set up (see [`Tls`]).
    Tls(String),
}

impl Error {
    /// The stable code of a refusal, if it is one this client knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code_text, .. } => ErrorCode::from_code(code_text),
            _ => None,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Transport(e) => write!(f, "the service did not answer: {e}"),
            Error::Timeout(e) => write!(f, "the service did not answer in time: {e}"),
            Error::Lost(e) => write!(f, "the connection broke: {e}"),
            Error::Api {
                status,
                code_text,
                message,
                ..
            } => write!(f, "{status} {code_text}: {message}"),
            Error::Decode(e) => write!(f, "unexpected answer: {e}"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// How an `https://` service's certificate is trusted.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Exactly the certificate with this SHA-256 (hex, as needled logs it; colons and case
    /// ignored): `needlectl --tls-sha256`.
    Sha256(String),
    /// The certificates of this PEM file (a CA, or needled's own): `needlectl --ca-file`.
    CaFile(std::path::PathBuf),
    /// A rustls configuration made by the caller.
    Config(std::sync::Arc<rustls::ClientConfig>),
}

/// Builds a [`Client`]: timeouts, TLS trust, user agent.
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    timeout: Duration,
    tls: Option<Tls>,
    user_agent: Option<String>,
}

impl ClientBuilder {
    /// Each call may take at most `timeout` (connect, read and write each).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How an `https://` base's certificate is trusted.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// The client; an [`Error::Tls`] when the trust cannot be set up (a fingerprint that is
    /// not 64 hex digits, an unreadable PEM file).
    pub fn build(self) -> Result<Client, Error> {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .max_idle_connections_per_host(4);
        if let Some(ua) = &self.user_agent {
            agent = agent.user_agent(ua);
        }
        let config = match self.tls {
            None => None,
            Some(Tls::Sha256(pin)) => Some(std::sync::Arc::new(
                tls::client_pinned(&pin).map_err(Error::Tls)?,
            )),
            Some(Tls::CaFile(pem)) => Some(std::sync::Arc::new(
                tls::client_with_ca(&pem).map_err(Error::Tls)?,
            )),
            Some(Tls::Config(c)) => Some(c),
        };
        if let Some(c) = config {
            agent = agent.tls_config(c);
        }
        Ok(Client {
            base: self.base.trim_end_matches('/').to_string(),
            token: self.token,
            agent: agent.build(),
            timeout: self.timeout,
        })
    }
}

/// A client with one token (or none). Cloning shares the connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the service at `base` (`http://IP:PORT`) with `token`; each call may take
    /// at most 10 s.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self::with_timeout(base, token, Duration::from_secs(10))
    }

    /// As [`Client::new`], each call taking at most `timeout`.
    pub fn with_timeout(
        base: impl Into<String>,
        token: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .max_idle_connections_per_host(4)
            .build();
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            token: Some(token.into()),
            agent,
            timeout,
        }
    }

    /// A builder for a client of `base` with `token`: 10 s per call, no TLS trust (an
    /// `https://` base then fails its calls) unless [`ClientBuilder::tls`] says how.
    pub fn builder(base: impl Into<String>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base.into(),
            token: Some(token.into()),
            timeout: Duration::from_secs(10),
            tls: None,
            user_agent: None,
        }
    }

    /// As [`Client::builder`], sending no token (health, or a refusal's test).
    pub fn anonymous(base: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            token: None,
            ..Self::builder(base, "")
        }
    }

    /// The same service with another token (sharing the connection pool).
    pub fn as_token(&self, token: impl Into<String>) -> Self {
        Self {
            base: self.base.clone(),
            token: Some(token.into()),
            agent: self.agent.clone(),
            timeout: self.timeout,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client (the same connection pool) whose calls send no token.
    pub fn without_token(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// The same client (the same connection pool) whose calls each end within `timeout`; the
    /// pool's own connect, read and write timeouts stay as they were built, so a longer
    /// `timeout` than those is cut short by them.
    pub fn with_call_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// The timeout of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A request whose whole exchange must end within the timeout.
    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.request_open(method, path).timeout(self.timeout)
    }

    /// A request without an overall deadline (a stream): connect, each read and each write
    /// still within the timeout.
    fn request_open(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// `method path` with an optional JSON body, for tests of refusals and callers that show
    /// an answer as it came (every route also has a typed call): the HTTP status and the
    /// body as JSON (a body that is not JSON comes back as a JSON string). Only a transport
    /// failure is an `Err`; a refusal is an answer here.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), Error> {
        let result = dispatch(
            self.request(method, path),
            body.map(|b| b as &dyn erased::Body),
        )?;
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport(&t)),
        };
        let status = resp.status();
        let text = resp.into_string().map_err(|e| lost(&e))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    }

    /// As [`Client::call`], but only a 2xx answer is `Ok` (its JSON body); a refusal is an
    /// [`Error::Api`] with its code.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        self.send(
            self.request(method, path),
            body.map(|b| b as &dyn erased::Body),
        )
    }

    fn send<T: DeserializeOwned>(
        &self,
        req: ureq::Request,
        body: Option<&dyn erased::Body>,
    ) -> Result<T, Error> {
        let result = dispatch(req, body)?;
        let text = answer(result)?.into_string().map_err(|e| lost(&e))?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(self.request("GET", path), None)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&dyn erased::Body>,
    ) -> Result<T, Error> {
        self.send(self.request("POST", path), body)
    }

    /// `GET /v1/health` (needs no token).
    pub fn health(&self) -> Result<Health, Error> {
        self.get("/v1/health")
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, Error> {
        self.get("/v1/status")
    }

    /// `GET /v1/version`.
    pub fn version(&self) -> Result<Version, Error> {
        self.get("/v1/version")
    }

    /// `GET /v1/openapi.json`: the document, as JSON.
    pub fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.get("/v1/openapi.json")
    }

    /// `POST /v1/home`.
    pub fn home(&self) -> Result<needle_api::Ok, Error> {
        self.post("/v1/home", None)
    }

    /// `POST /v1/faults/clear`.
    pub fn clear_faults(&self, reason: &str) -> Result<needle_api::Ok, Error> {
        let body = Reason {
            reason: reason.to_string(),
        };
        self.post("/v1/faults/clear", Some(&body))
    }

    /// `POST /v1/sessions`.
    pub fn create_session(&self, req: &CreateSession) -> Result<Session, Error> {
        self.post("/v1/sessions", Some(req))
    }

    /// `GET /v1/sessions/{id}`.
    pub fn session(&self, id: i64) -> Result<Session, Error> {
        self.get(&format!("/v1/sessions/{id}"))
    }

    /// `POST /v1/sessions/{id}/cartridge`: bind the seated cartridge.
    pub fn bind_cartridge(&self, id: i64) -> Result<Cartridge, Error> {
        self.post(&format!("/v1/sessions/{id}/cartridge"), None)
    }

    /// `POST /v1/sessions/{id}/arm`.
    pub fn arm(&self, id: i64, set: Setpoints) -> Result<Session, Error> {
        self.post(&format!("/v1/sessions/{id}/arm"), Some(&set))
    }

    /// `POST /v1/sessions/{id}/start`.
    pub fn start(&self, id: i64) -> Result<Session, Error> {
        self.post(&format!("/v1/sessions/{id}/start"), None)
    }

    /// `POST /v1/sessions/{id}/pause`.
    pub fn pause(&self, id: i64) -> Result<Session, Error> {
        self.post(&format!("/v1/sessions/{id}/pause"), None)
    }

    /// `POST /v1/sessions/{id}/end`, with a reason or the service's default.
    pub fn end(&self, id: i64, reason: Option<&str>) -> Result<Session, Error> {
        let body = EndSession {
            reason: reason.map(str::to_string),
        };
        self.post(&format!("/v1/sessions/{id}/end"), Some(&body))
    }

    /// `PUT /v1/sessions/{id}/setpoints`.
    pub fn set_setpoints(&self, id: i64, set: Setpoints) -> Result<Session, Error> {
        self.send(
            self.request("PUT", &format!("/v1/sessions/{id}/setpoints")),
            Some(&set),
        )
    }

    /// `GET /v1/sessions/{id}/report` as JSON.
    pub fn report(&self, id: i64) -> Result<SessionReport, Error> {
        self.get(&format!("/v1/sessions/{id}/report"))
    }

    /// `POST /v1/sessions/{id}/numbing`: numbing applied now; the wait before arming.
    pub fn apply_numbing(&self, id: i64) -> Result<Numbing, Error> {
        self.post(&format!("/v1/sessions/{id}/numbing"), None)
    }

    /// `GET /v1/sessions/{id}/numbing`: when the session's numbing will have acted.
    pub fn numbing(&self, id: i64) -> Result<Numbing, Error> {
        self.get(&format!("/v1/sessions/{id}/numbing"))
    }

    /// `GET /v1/sessions/{id}/record`: the printable record, HTML as served.
    pub fn session_record(&self, id: i64) -> Result<String, Error> {
        self.text("GET", &format!("/v1/sessions/{id}/record"), None)
    }

    /// `POST /v1/plans` (technicians).
    pub fn create_plan(&self, req: &CreatePlan) -> Result<Plan, Error> {
        self.post("/v1/plans", Some(req))
    }

    /// `GET /v1/plans/{id}`.
    pub fn plan(&self, id: i64) -> Result<Plan, Error> {
        self.get(&format!("/v1/plans/{id}"))
    }

    /// `GET /v1/plans?subject_ref=...`: a subject's plans, oldest first.
    pub fn plans(&self, subject_ref: &str) -> Result<Plans, Error> {
        self.get(&format!(
            "/v1/plans?subject_ref={}",
            query_escape(subject_ref)
        ))
    }

    /// `POST /v1/plans/{id}/change` (technicians, with a reason).
    pub fn change_plan(&self, id: i64, req: &ChangePlan) -> Result<Plan, Error> {
        self.post(&format!("/v1/plans/{id}/change"), Some(req))
    }

    /// `POST /v1/plans/{id}/stop` (technicians, with a reason): for good.
    pub fn stop_plan(&self, id: i64, reason: &str) -> Result<Plan, Error> {
        let body = Reason {
            reason: reason.to_string(),
        };
        self.post(&format!("/v1/plans/{id}/stop"), Some(&body))
    }

    /// `GET /v1/plans/{id}/record`: the plan's printable record, HTML as served.
    pub fn plan_record(&self, id: i64) -> Result<String, Error> {
        self.text("GET", &format!("/v1/plans/{id}/record"), None)
    }

    /// `GET /v1/people` (technicians).
    pub fn people(&self) -> Result<People, Error> {
        self.get("/v1/people")
    }

    /// `POST /v1/people` (technicians): the new person's token, shown this once.
    pub fn add_person(&self, req: &NewPerson) -> Result<NewToken, Error> {
        self.post("/v1/people", Some(req))
    }

    /// `POST /v1/people/{name}/revoke` (technicians): final.
    pub fn revoke_person(&self, name: &str) -> Result<Revoked, Error> {
        self.post(&format!("/v1/people/{}/revoke", path_escape(name)), None)
    }

    /// `GET /v1/cartridges/{id}`.
    pub fn cartridge(&self, id: &str) -> Result<Cartridge, Error> {
        self.get(&format!("/v1/cartridges/{id}"))
    }

    /// `POST /v1/lots/{lot}/recall` (technicians).
    pub fn recall(&self, lot: &str, reason: &str) -> Result<Recalled, Error> {
        let body = Reason {
            reason: reason.to_string(),
        };
        self.post(&format!("/v1/lots/{lot}/recall"), Some(&body))
    }

    /// `GET /v1/events?after=&limit=`.
    pub fn events(&self, after: i64, limit: u32) -> Result<Events, Error> {
        self.get(&format!("/v1/events?after={after}&limit={limit}"))
    }

    /// `GET /v1/sim/truth` (technicians, sim backend).
    pub fn sim_truth(&self) -> Result<SimTruth, Error> {
        self.get("/v1/sim/truth")
    }

    /// `GET /v1/sim/ticks` (technicians, sim backend).
    pub fn sim_ticks(&self, after_us: u64, until_us: u64) -> Result<Ticks, Error> {
        self.get(&format!(
            "/v1/sim/ticks?after_us={after_us}&until_us={until_us}"
        ))
    }

    /// `POST /v1/sim/inject` (technicians, sim backend).
    pub fn sim_inject(&self, action: &SimAction) -> Result<Injected, Error> {
        self.post("/v1/sim/inject", Some(action))
    }

    /// `GET /v1/telemetry`: the SSE stream, one [`needle_api::TelemetryEvent`] per item. The
    /// stream's reads have no timeout of their own beyond the agent's.
    pub fn telemetry(&self) -> Result<Telemetry, Error> {
        Ok(Telemetry::new(Box::new(self.stream("/v1/telemetry")?)))
    }

    /// `method path` with an optional JSON body: the 2xx answer's body exactly as received
    /// (a caller that shows it as the service sent it); a refusal is an [`Error::Api`].
    pub fn text(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, Error> {
        let result = dispatch(
            self.request(method, path),
            body.map(|b| b as &dyn erased::Body),
        )?;
        answer(result)?.into_string().map_err(|e| lost(&e))
    }

    /// `GET path` as a server-sent event stream, the raw body: no overall deadline, each
    /// read within the timeout (an [`std::io::Error`] of kind `TimedOut` or `WouldBlock`
    /// when one is not answered in time).
    pub fn stream(&self, path: &str) -> Result<impl Read + Send + Sync + 'static, Error> {
        let req = self
            .request_open("GET", path)
            .set("Accept", "text/event-stream");
        Ok(answer(req.call())?.into_reader())
    }
}

/// A 2xx response, or the refusal / transport failure as an [`Error`].
fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, Error> {
    match result {
        Ok(r) => Ok(r),
        Err(ureq::Error::Status(status, r)) => {
            let text = r.into_string().unwrap_or_default();
            let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
            Err(match body {
                Some(b) => Error::Api {
                    status,
                    code_text: b.error.code.as_str().to_string(),
                    message: b.error.message,
                    body: text,
                },
                None => {
                    // A code this client does not know still has its text.
                    let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
                    let field = |k: &str| {
                        v.as_ref()
                            .and_then(|v| v["error"][k].as_str())
                            .map(str::to_string)
                    };
                    Error::Api {
                        status,
                        code_text: field("code").unwrap_or_default(),
                        message: field("message").unwrap_or_else(|| text.clone()),
                        body: text,
                    }
                }
            })
        }
        Err(ureq::Error::Transport(t)) => Err(transport(&t)),
    }
}

/// Whether an I/O error is a read or write that did not complete in time.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// No answer: [`Error::Timeout`] when it was the timeout, else [`Error::Transport`] with
/// what the transport said and its cause (`message: cause`).
fn transport(t: &ureq::Transport) -> Error {
    let source = std::error::Error::source(t);
    if source
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(is_timeout)
    {
        return Error::Timeout(t.to_string());
    }
    let detail = t
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| t.kind().to_string());
    let cause = source.map(|s| format!(": {s}")).unwrap_or_default();
    Error::Transport(format!("{detail}{cause}"))
}

/// The connection broke (or stalled past the timeout) while a body was read.
fn lost(e: &std::io::Error) -> Error {
    if is_timeout(e) {
        Error::Timeout(e.to_string())
    } else {
        Error::Lost(e.to_string())
    }
}

/// Bodies as trait objects, so one `send` serves every request type.
/// Sends `req` with `body` as JSON, or with none: ureq's outcome (a refusal is its
/// `Status` error); only a body that cannot be written is an `Err` here.
fn dispatch(
    req: ureq::Request,
    body: Option<&dyn erased::Body>,
) -> Result<Result<ureq::Response, ureq::Error>, Error> {
    Ok(match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.json()?),
        None => req.call(),
    })
}

mod erased {
    use super::{Error, Serialize};

    pub(crate) trait Body {
        fn json(&self) -> Result<String, Error>;
    }

    impl<T: Serialize> Body for T {
        fn json(&self) -> Result<String, Error> {
            serde_json::to_string(self).map_err(|e| Error::Decode(e.to_string()))
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment).
fn path_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query value: as a path segment (a space is `%20`, which every server reads).
fn query_escape(text: &str) -> String {
    path_escape(text)
}

#[cfg(test)]
mod tests {
    use super::path_escape;

    #[test]
    fn path_segments_keep_unreserved_bytes_and_escape_the_rest() {
        assert_eq!(path_escape("dr-anna_1.b~"), "dr-anna_1.b~");
        assert_eq!(path_escape("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(path_escape("Zoë"), "Zo%C3%AB");
    }
}
