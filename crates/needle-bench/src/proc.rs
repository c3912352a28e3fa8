//! The real needled as a child process on 127.0.0.1:0 with a temporary data directory (as
//! `crates/needled/tests/service.rs` starts it, on needle-client's harness), and the API
//! calls the benches need, on needle-client.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use needle_client::harness::{Launch, Running};
use needle_client::Client;

use needled::cartridge::{self, Needles, TagData};
use serde_json::{json, Value};

/// A running needled (needle-client's harness: ready by its ready file), and typed clients
/// with its operator's and technician's tokens.
pub struct Needled {
    running: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The generated operator token.
    pub operator: String,
    /// The generated technician token.
    pub technician: String,
    /// The data directory.
    pub data: PathBuf,
    /// A client with the operator's token.
    pub op: Client,
    /// A client with the technician's token.
    pub tech: Client,
    _dir: tempfile::TempDir,
}

/// The needled binary next to this one (`target/<profile>/needled`), or `NEEDLED_BIN`.
pub fn sibling_binary(name: &str) -> PathBuf {
    if name == "needled" {
        if let Ok(p) = std::env::var("NEEDLED_BIN") {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

impl Needled {
    /// Starts `bin` with a configuration of `config` (TOML; empty for the defaults) on a free
    /// loopback port and waits until it listens.
    pub fn start(bin: &Path, config: &str) -> Result<Needled, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().to_path_buf();
        let config_path = data.join("bench.toml");
        std::fs::write(
            &config_path,
            format!("# needle-bench configuration\n{config}\n"),
        )
        .map_err(|e| e.to_string())?;
        let running = Launch::new(bin, &config_path, &data).start()?;
        let base = running.base();
        let operator = running.token("operator")?;
        let technician = running.token("technician")?;
        let op = Client::new(&base, &operator);
        let tech = op.as_token(&technician);
        Ok(Needled {
            running,
            base,
            operator,
            technician,
            data,
            op,
            tech,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.running.pid().unwrap_or_default()
    }

    /// One call; returns (status, JSON body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        self.op
            .as_token(token)
            .call(method, path, body.as_ref())
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// A call that must succeed (2xx).
    pub fn ok(
        &self,
        method: &str,
        path: &str,
        technician: bool,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let token = if technician {
            &self.technician
        } else {
            &self.operator
        };
        let (status, v) = self.call(method, path, token, body)?;
        if status >= 300 {
            return Err(format!("{method} {path}: {status} {v}"));
        }
        Ok(v)
    }

    /// GET /v1/status.
    pub fn status(&self) -> Result<Value, String> {
        self.ok("GET", "/v1/status", false, None)
    }

    /// Polls the status until `f` holds, for at most `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status()?;
            if f(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}: {s}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sim injection that seats a new cartridge, provisioned with the test factory key.
    pub fn seat_body(&self, id: &str) -> Result<Value, String> {
        let data = TagData::new(
            id,
            "LOT-BENCH",
            Needles::Pins12,
            "2099-12-31".parse().map_err(|_| "date")?,
        )
        .map_err(|e| e.to_string())?;
        Ok(cartridge::provision_test(&data)
            .map_err(|e| e.to_string())?
            .seat_json(0))
    }

    /// Homes, creates a session, seats and binds a fresh cartridge, arms at `depth_um` and
    /// `rate_hz` and starts the motor; returns the session id once the motor runs.
    pub fn start_running_session(&self, depth_um: i32, rate_hz: u32) -> Result<i64, String> {
        self.ok("POST", "/v1/home", false, None)?;
        self.wait_for("homing", Duration::from_secs(20), |s| {
            s["state"] == "Idle" && s["homed"] == true
        })?;
        let checklist = all_checked()?;
        let s = self.ok(
            "POST",
            "/v1/sessions",
            false,
            Some(json!({ "operator": "bench", "subject_ref": "bench-subject", "area": "body", "checklist": checklist })),
        )?;
        let id = s["id"].as_i64().ok_or("no session id")?;
        let seat = self.seat_body("C-BENCH-1")?;
        self.ok("POST", "/v1/sim/inject", true, Some(seat))?;
        self.ok("POST", &format!("/v1/sessions/{id}/cartridge"), false, None)?;
        self.ok(
            "POST",
            &format!("/v1/sessions/{id}/arm"),
            false,
            Some(json!({ "depth_um": depth_um, "rate_mhz": rate_hz * 1000 })),
        )?;
        self.wait_for("armed and settled", Duration::from_secs(20), |s| {
            s["state"] == "Armed" && s["depth"]["moving"] == false
        })?;
        self.ok("POST", &format!("/v1/sessions/{id}/start"), false, None)?;
        self.wait_for("running", Duration::from_secs(5), |s| {
            s["state"] == "Running"
        })?;
        Ok(id)
    }

    /// The rig's truth (technician).
    pub fn truth(&self) -> Result<Value, String> {
        self.ok("GET", "/v1/sim/truth", true, None)
    }
}

/// Every checklist item of the default configuration, confirmed.
pub fn all_checked() -> Result<serde_json::Map<String, Value>, String> {
    let defaults = needled::config::parse("", "defaults").map_err(|e| e.to_string())?;
    Ok(defaults
        .session
        .checklist
        .iter()
        .map(|c| (c.id.clone(), Value::Bool(true)))
        .collect())
}
