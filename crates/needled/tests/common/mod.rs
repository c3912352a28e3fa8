//! Shared by the integration tests: the real `needled` binary started as a child process on a
//! free port with a temporary data directory, as a jig or the console would meet it.
#![allow(dead_code)] // each test file uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use needle_client::harness::Launch;

/// A margin for a loaded CI machine's late ticks; the product's defaults for the rest,
/// including its 100 ms dead-man (`host_timeout_ms`), which the tests must live with.
pub const CI_CONFIG: &str =
    "# test configuration: a tick-gap margin for a loaded CI machine, defaults for the rest\n\
                             [control]\nmax_tick_gap_ms = 500\n";

/// A running needled; killed when dropped.
pub struct Needled {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The generated operator token.
    pub operator: String,
    /// The generated technician token.
    pub technician: String,
    /// The data directory.
    pub data: PathBuf,
}

impl Drop for Needled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Needled {
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
    let mut launch = Launch::new(env!("CARGO_BIN_EXE_needled"), &file, data);
    launch.bind = bind.to_string();
    let running = launch.start().expect("start needled");
    let base = running.base();
    let operator = running.token("operator").expect("operator token");
    let technician = running.token("technician").expect("technician token");
    // The test owns the process from here (its Drop kills it).
    let child = running.into_child().expect("the process");
    Needled {
        child,
        base,
        operator,
        technician,
        data: data.to_path_buf(),
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
    let req = ureq::request(method, &format!("{}{}", n.base, path))
        .timeout(Duration::from_secs(10))
        .set("Authorization", &format!("Bearer {token}"));
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
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
