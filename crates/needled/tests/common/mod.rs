//! Shared by the integration tests: the real `needled` binary started as a child process on a
//! free port with a temporary data directory, as a jig or the console would meet it.
#![allow(dead_code)] // each test file uses its own part of this module

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use needle_client::harness::{Launch, Running};

/// A margin for a loaded CI machine's late ticks; the product's defaults for the rest,
/// including its 100 ms dead-man (`host_timeout_ms`), which the tests must live with.
pub const CI_CONFIG: &str =
    "# test configuration: a tick-gap margin for a loaded CI machine, defaults for the rest\n\
                             [control]\nmax_tick_gap_ms = 500\n";

/// A running needled; killed when dropped.
pub struct Needled {
    /// The process (needle-client's harness: kill, terminate, restart, pid).
    pub running: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The generated operator token.
    pub operator: String,
    /// The generated technician token.
    pub technician: String,
    /// The data directory.
    pub data: PathBuf,
}

impl Needled {
    /// SIGKILLs it (no chance to clean up) and waits for it.
    pub fn kill(&mut self) {
        assert!(self.running.kill().is_some(), "needled was running");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.running.pid().expect("needled runs")
    }

    /// A client with `token`.
    pub fn client(&self, token: &str) -> needle_client::Client {
        needle_client::Client::new(&self.base, token)
    }

    /// A typed client (needle-client) with the operator's token.
    pub fn operator_client(&self) -> needle_client::Client {
        needle_client::Client::new(&self.base, &self.operator)
    }

    /// A typed client with the technician's token.
    pub fn technician_client(&self) -> needle_client::Client {
        needle_client::Client::new(&self.base, &self.technician)
    }
}

/// Starts needled with `<data>/test.toml`, writing `config` there first unless the file exists
/// (a test may write its own), bound to a free loopback port; ready when the harness's ready
/// file names its address (needle-client's harness, `needled --ready-file`).
pub fn start(data: &Path, config: &str) -> Needled {
    start_on(data, config, "127.0.0.1:0")
}

/// As [`start`], bound to `bind` (a restart on the port of a previous run).
pub fn start_on(data: &Path, config: &str, bind: &str) -> Needled {
    let file = data.join("test.toml");
    if !file.exists() {
        std::fs::write(&file, config).expect("write the test config");
    }
    let running = Launch::new(env!("CARGO_BIN_EXE_needled"), &file, data)
        .bind(bind)
        .log(log_file(data))
        .start()
        .expect("start needled");
    let base = running.base();
    let operator = running.token("operator").expect("operator token");
    let technician = running.token("technician").expect("technician token");
    Needled {
        running,
        base,
        operator,
        technician,
        data: data.to_path_buf(),
    }
}

/// Where the needled of data directory `data` logs: beside the directory, not in it (its
/// files' modes are needled's business), appended to across restarts.
fn log_file(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".needled.log");
    PathBuf::from(name)
}

impl Needled {
    /// The last lines of its log, for a failing assertion's message: what needled said
    /// about a fault the test did not expect (a stalled monitor, a late control thread).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_file(&self.data)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("needled's log ends:\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Needled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(log_file(&self.data));
    }
}

/// `method path` with `token`, answering (status, JSON body or the text as a JSON string).
pub fn call_with(
    n: &Needled,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_as(n, method, path, Some(token), body, Duration::from_secs(10))
}

/// `method path` with `token` (none: an anonymous call) and a JSON body, each call within
/// `timeout`: (status, JSON body or the text as a JSON string), on needle-client. The one
/// untyped call helper of the service tests; only a transport failure panics.
pub fn call_as(
    n: &Needled,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    timeout: Duration,
) -> (u16, Value) {
    // A client of its own per call, a fresh connection each time, as ureq's free functions
    // made: a pooled connection the service closed meanwhile fails a POST (seen here).
    let builder = match token {
        Some(t) => needle_client::Client::builder(&n.base, t),
        None => needle_client::Client::anonymous(&n.base),
    };
    builder
        .timeout(timeout)
        .build()
        .expect("a plain-HTTP client")
        .call(method, path, body.as_ref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Every checklist item of the default configuration, confirmed.
pub fn all_checked() -> Value {
    let config = needled::config::parse("", "defaults").expect("the defaults parse");
    Value::Object(
        config
            .session
            .checklist
            .iter()
            .map(|c| (c.id.clone(), Value::Bool(true)))
            .collect(),
    )
}

/// [`call_with`] under the name the cartridge tests use.
pub fn call(
    n: &Needled,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_with(n, method, path, token, body)
}
