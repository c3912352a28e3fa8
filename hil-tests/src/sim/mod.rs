//! The simulated bench: [`SimRig`] starts the real `needled` binary on the sim backend as a
//! child process (port 0, a temporary data directory); [`SimJig`] measures it through the sim
//! endpoints only: `GET /v1/sim/truth` (the physics' truth) and `POST /v1/sim/inject` (the
//! jig's actuators). It never reads the controller's telemetry.
//!
//! The link rig (`NEEDLE_RIG=link`, [`SimRig::start_link`]) is the same with the controller
//! across a serial line: the pen firmware's host build (`needle-pen`, the sim's physics) on a
//! pseudo-terminal, `needled` on `hardware.backend = "link"` driving it, and the jig on the
//! pen's truth socket (the same truth and actuators, a Unix socket instead of the API).
//!
//! - [`workspace`]: the `needled` binary under test.
//! - [`jig`]: the sim jig and the truth it reads.

pub mod jig;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use needle_client::harness::{Launch, Running};
use needled::cartridge::FactoryKey;
use serde_json::Value;

pub use jig::{SimJig, Truth};
pub use workspace::{
    git_revision, needled_binary, pen_binary, target_dir, workspace_root, NEEDLED_BIN_ENV,
    PEN_BIN_ENV,
};

use crate::api::{Api, Endpoint};
use crate::config::RigSettings;
use crate::error::{HilError, Result};
use crate::rig::{Rig, RigOptions, Versions};

/// Timeout of one HTTP request to the service.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The sim rig's dead-man timeout unless a scenario asks for another, ms: the product default.
pub const SIM_HOST_TIMEOUT_MS: u32 = 100;

/// The link rig's, unless a scenario asks for another (the dead-man scenario asks for 100):
/// its heartbeats cross two processes and a pty, which this shared machine sometimes leaves
/// unscheduled for longer than 100 ms, and a dead-man rightly tripped in the middle of an
/// unrelated scenario proves nothing about that scenario.
pub const LINK_HOST_TIMEOUT_MS: u32 = 500;

/// Overrides where the sim rig's data directories are made.
pub const SIM_TMPDIR_ENV: &str = "HIL_SIM_TMPDIR";

/// A fresh data directory for the sim rig's service: under `HIL_SIM_TMPDIR`, else in
/// `/dev/shm` where it exists, else in the system's temp directory.
///
/// Why tmpfs: speed. The suite also passes with the ledger on a real disk
/// (`HIL_SIM_TMPDIR=/tmp`), where SQLite's fsync (synchronous=FULL) can stall for hundreds of
/// milliseconds on a shared CI machine; needled's dead-man heartbeat runs on its own thread
/// and rides such stalls out. A SIGKILL loses nothing on tmpfs, so the crash scenario is
/// unaffected.
pub fn sim_data_dir() -> Result<tempfile::TempDir> {
    let parent = std::env::var_os(SIM_TMPDIR_ENV)
        .map(PathBuf::from)
        .or_else(|| {
            Path::new("/dev/shm")
                .is_dir()
                .then(|| PathBuf::from("/dev/shm"))
        });
    let mut builder = tempfile::Builder::new();
    builder.prefix("hil-needled-");
    match parent {
        Some(dir) => builder.tempdir_in(&dir).map_err(|e| HilError::io(&dir, e)),
        None => builder.tempdir().map_err(|e| HilError::io("tempdir", e)),
    }
}

/// The configuration the sim rig's service runs with.
pub fn sim_config_text(options: &RigOptions) -> String {
    let mut text = String::from(
        "# hil-tests: the sim rig's service configuration; defaults for every other key.\n\
         [control]\n\
         # The shared CI machine is noisy: a tick up to 500 ms late is not an overrun here.\n\
         max_tick_gap_ms = 500\n",
    );
    let host_timeout = options.host_timeout_ms.unwrap_or(SIM_HOST_TIMEOUT_MS);
    text.push_str(&format!("host_timeout_ms = {host_timeout}\n"));
    if let Some(min) = options.session_time_limit_min {
        text.push_str(&format!(
            "\n[session]\ntime_limit_min = {min}\nwarning_before_min = 0\n"
        ));
    }
    if let Some(ma) = options.max_current_ma {
        text.push_str(&format!("\n[safety]\nmax_current_ma = {ma}\n"));
    }
    text
}

/// The factory key the link rig's service trusts (the sim's own test key is refused off the
/// sim backend).
fn link_factory_key() -> Result<FactoryKey> {
    FactoryKey::from_secret("hil-link-1", &[0x4C; 32]).map_err(|e| HilError::Config(e.to_string()))
}

/// The link rig's pen: a `needle-pen` child process on a pty, its truth on a Unix socket.
struct LinkPen {
    child: Child,
    truth: PathBuf,
}

/// The service under test on the sim: a real `needled` child process (and on the link rig
/// the pen it drives, another).
pub struct SimRig {
    data: tempfile::TempDir,
    pen: Option<LinkPen>,
    binary: PathBuf,
    config_path: PathBuf,
    settings: RigSettings,
    child: Option<Running>,
    endpoint: Arc<RwLock<Endpoint>>,
    firmware: String,
}

impl std::fmt::Debug for SimRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRig")
            .field("data", &self.data.path())
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

impl SimRig {
    /// Starts `needled` on the sim with a fresh data directory and waits until it answers.
    pub fn start(options: RigOptions) -> Result<(SimRig, SimJig)> {
        Self::start_with(options, false)
    }

    /// Starts `needle-pen` on a pty and `needled` driving it over the link, and waits until
    /// needled drives the pen.
    pub fn start_link(options: RigOptions) -> Result<(SimRig, SimJig)> {
        Self::start_with(options, true)
    }

    fn start_with(options: RigOptions, link: bool) -> Result<(SimRig, SimJig)> {
        let binary = needled_binary()?;
        let data = sim_data_dir()?;
        let mut text = if link {
            sim_config_text(&RigOptions {
                host_timeout_ms: options.host_timeout_ms.or(Some(LINK_HOST_TIMEOUT_MS)),
                ..options
            })
        } else {
            sim_config_text(&options)
        };
        let pen = if link {
            let pen = spawn_pen(data.path())?;
            // As max_tick_gap_ms above: this shared machine stalls whole processes for
            // hundreds of milliseconds at times; a silence that short is not a lost link here.
            text.push_str(&format!(
                "\n[hardware]\nbackend = \"link\"\n\n[link]\ndevice = \"{}\"\nlost_after_ms = 1000\n",
                data.path().join("pen.tty").display()
            ));
            // The pen relays the chip's commands; a rig may not trust the test key.
            text.push_str(&format!(
                "\n[cartridge]\nchip_required = true\n\n[cartridge.trusted_keys]\n\"hil-link-1\" = \"{}\"\n",
                hex::encode(link_factory_key()?.public_key())
            ));
            Some(pen)
        } else {
            None
        };
        let config_path = data.path().join("needled.toml");
        std::fs::write(&config_path, &text).map_err(|e| HilError::io(&config_path, e))?;
        let settings = RigSettings::from_needled_config(&text, &config_path.display().to_string())?;
        let firmware = match Command::new(&binary).arg("--version").output() {
            Ok(o) if o.status.success() => {
                format!(
                    "{} (git {})",
                    String::from_utf8_lossy(&o.stdout).trim(),
                    git_revision()
                )
            }
            _ => format!("unknown (git {})", git_revision()),
        };
        let endpoint = Arc::new(RwLock::new(Endpoint {
            base: String::new(),
            operator_token: String::new(),
            technician_token: String::new(),
        }));
        let truth = pen.as_ref().map(|p| p.truth.clone());
        let mut rig = SimRig {
            data,
            pen,
            binary,
            config_path,
            settings,
            child: None,
            endpoint: Arc::clone(&endpoint),
            firmware,
        };
        rig.start_service()?;
        let jig = SimJig::new(endpoint, truth);
        Ok((rig, jig))
    }

    /// The service's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The last lines of the service's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.data.path().join("needled.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts needled on needle-client's harness (ready by its ready file, never by its
    /// log), its output appended to `needled.log`; its base URL.
    fn spawn(&mut self) -> Result<String> {
        let log_path = self.data.path().join("needled.log");
        let running = Launch::new(&self.binary, &self.config_path, self.data.path())
            .log(log_path)
            .ready_within(START_TIMEOUT)
            .start()
            .map_err(|e| {
                HilError::Service(format!(
                    "cannot start {}: {e}; its log ends:\n{}",
                    self.binary.display(),
                    self.log_tail(20)
                ))
            })?;
        let base = running.base();
        self.child = Some(running);
        Ok(base)
    }
}

impl Drop for SimRig {
    fn drop(&mut self) {
        let _ = self.kill_service();
        if let Some(mut pen) = self.pen.take() {
            let _ = pen.child.kill();
            let _ = pen.child.wait();
        }
    }
}

/// Starts the pen firmware's host build with its pty at `<dir>/pen.tty` and its truth socket
/// at `<dir>/pen.truth`, and waits until both exist.
fn spawn_pen(dir: &Path) -> Result<LinkPen> {
    let binary = pen_binary()?;
    let (tty, truth) = (dir.join("pen.tty"), dir.join("pen.truth"));
    let log_path = dir.join("needle-pen.log");
    let log = std::fs::File::create(&log_path).map_err(|e| HilError::io(&log_path, e))?;
    let mut child = Command::new(&binary)
        .arg("--pty")
        .arg(&tty)
        .arg("--truth")
        .arg(&truth)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| HilError::Service(format!("cannot start {}: {e}", binary.display())))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !(tty.exists() && truth.exists()) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HilError::Service(format!(
                "needle-pen made no pty and truth socket within {START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(LinkPen { child, truth })
}

impl Rig for SimRig {
    fn kind(&self) -> &'static str {
        if self.pen.is_some() {
            "link"
        } else {
            "sim"
        }
    }

    fn api(&self) -> Api {
        Api::new(
            self.endpoint
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            REQUEST_TIMEOUT,
        )
    }

    fn settings(&self) -> &RigSettings {
        &self.settings
    }

    fn factory_key(&self) -> Result<FactoryKey> {
        if self.pen.is_some() {
            link_factory_key()
        } else {
            Ok(needled::cartridge::test_factory_key())
        }
    }

    fn kill_service(&mut self) -> Result<()> {
        if let Some(mut running) = self.child.take() {
            // SIGKILL: no chance to clean up, as a crash or a power cut.
            if running.kill().is_none() {
                return Err(HilError::Service("needled could not be killed".into()));
            }
        }
        Ok(())
    }

    fn start_service(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(HilError::Service("needled is already running".into()));
        }
        let base = self.spawn()?;
        let tokens_path = self.data.path().join("tokens.json");
        let text =
            std::fs::read_to_string(&tokens_path).map_err(|e| HilError::io(&tokens_path, e))?;
        let tokens: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| HilError::Service(format!("tokens.json: {e}")))?;
        let token = |role: &str| {
            tokens
                .iter()
                .find(|t| t["role"] == role)
                .and_then(|t| t["token"].as_str())
                .map(str::to_string)
                .ok_or_else(|| HilError::Service(format!("tokens.json has no {role} token")))
        };
        let endpoint = Endpoint {
            base,
            operator_token: token("operator")?,
            technician_token: token("technician")?,
        };
        *self.endpoint.write().unwrap_or_else(|p| p.into_inner()) = endpoint;
        let api = self.api();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match api.call(None, "GET", "/v1/health", None) {
                // On the link rig, once needled drives the pen.
                Ok(r)
                    if r.status == 200
                        && r.body["status"] == "ok"
                        && (self.pen.is_none() || r.body["link"]["state"] == "up") =>
                {
                    return Ok(())
                }
                _ if Instant::now() > deadline => {
                    return Err(HilError::Service(format!(
                        "needled did not become healthy; log:\n{}",
                        self.log_tail(20)
                    )))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn log_tail(&self) -> Option<String> {
        Some(SimRig::log_tail(self, 40))
    }

    fn versions(&self) -> Versions {
        Versions {
            rig: self.kind().into(),
            firmware: self.firmware.clone(),
            rig_config_sha256: self.settings.config_sha256.clone(),
            suite: format!(
                "hil-tests {} (git {})",
                env!("CARGO_PKG_VERSION"),
                git_revision()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_config_sets_only_what_a_scenario_needs() {
        let plain = sim_config_text(&RigOptions::default());
        assert!(!plain.contains("[session]") && !plain.contains("[safety]"));
        let s = RigSettings::from_needled_config(
            &sim_config_text(&RigOptions {
                session_time_limit_min: Some(1),
                max_current_ma: Some(100_000),
                host_timeout_ms: Some(100),
            }),
            "t",
        )
        .unwrap();
        assert_eq!(
            (
                s.session_time_limit_min,
                s.max_current_ma,
                s.host_timeout_ms
            ),
            (1, 100_000, 100)
        );
        let default = RigSettings::from_needled_config(&plain, "t").unwrap();
        assert_eq!(default.host_timeout_ms, u64::from(SIM_HOST_TIMEOUT_MS));
    }
}
