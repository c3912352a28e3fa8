//! Shared by the integration tests: the real `needled` binary started as a child process on a
//! free port with a temporary data directory, as a jig or the console would meet it.
#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// Starts needled with `<data>/test.toml`, writing `config` there first unless the file exists
/// (a test may write its own), bound to a free loopback port; waits until it listens.
pub fn start(data: &Path, config: &str) -> Needled {
    let file = data.join("test.toml");
    if !file.exists() {
        std::fs::write(&file, config).expect("write the test config");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_needled"))
        .args([
            "--config",
            file.to_str().expect("utf-8 path"),
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start needled");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !line.contains("listening on") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read needled's stdout") > 0,
            "needled exited before listening"
        );
        assert!(Instant::now() < deadline, "needled did not start");
    }
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let tokens: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(data.join("tokens.json")).expect("tokens.json"),
    )
    .expect("tokens.json is JSON");
    let token = |role: &str| {
        tokens
            .iter()
            .find(|t| t["role"] == role)
            .and_then(|t| t["token"].as_str())
            .unwrap_or_else(|| panic!("no {role} token"))
            .to_string()
    };
    Needled {
        child,
        base,
        operator: token("operator"),
        technician: token("technician"),
        data: data.to_path_buf(),
    }
}

/// One HTTP call with a bearer token: (status, JSON body, or the text as a JSON string).
pub fn call(
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
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
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
