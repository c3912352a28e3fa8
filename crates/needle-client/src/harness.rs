//! needled as a child process, for tests, benches and jigs: bound to port 0 (or a given
//! address, for a restart on the same port), a data directory the caller owns, and ready
//! when the file `needled --ready-file` writes appears (the bound address, the scheme and the
//! TLS certificate's fingerprint as JSON), never by reading its log.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use needle_client::harness::Launch;
//! let dir = std::path::Path::new("/tmp/needled-data");
//! let mut needled = Launch::new("target/debug/needled", dir.join("test.toml"), dir)
//!     .arg("--log-format=json")
//!     .log(dir.join("needled.log"))
//!     .start()?;
//! let client = needled.client("operator")?;
//! needled.restart()?; // the same port, the same records
//! let status = needled.terminate()?; // SIGTERM, then its exit status
//! # let _ = (client, status); Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where needled's stdout and stderr go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Output {
    /// Discarded.
    #[default]
    Discard,
    /// Appended to this file (a restart appends to the same file).
    File(PathBuf),
    /// The caller's own stdout and stderr (a VM guest's console, say).
    Inherit,
}

/// How to start needled.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The needled binary.
    pub binary: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// The data directory (ledger, key, tokens).
    pub data_dir: PathBuf,
    /// Address to bind: `127.0.0.1:0` for a free port, or the address of a previous run.
    pub bind: String,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Environment variables removed from what it inherits.
    pub env_remove: Vec<String>,
    /// Where needled's stdout and stderr go.
    pub output: Output,
    /// How long it may take to be ready.
    pub ready_within: Duration,
}

impl Launch {
    /// needled `binary` with `config` and `data_dir`, on a free loopback port, ready within
    /// 30 s, its output discarded.
    pub fn new(binary: impl Into<PathBuf>, config: impl Into<PathBuf>, data_dir: &Path) -> Self {
        Self {
            binary: binary.into(),
            config: config.into(),
            data_dir: data_dir.to_path_buf(),
            bind: "127.0.0.1:0".to_string(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            output: Output::Discard,
            ready_within: Duration::from_secs(30),
        }
    }

    /// Binds `address` (`0.0.0.0:0` off loopback, where needled serves TLS only).
    pub fn bind(mut self, address: impl Into<String>) -> Self {
        self.bind = address.into();
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// One environment variable not inherited.
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Appends its stdout and stderr to `file` (for a test that reads the log; never for
    /// readiness).
    pub fn log(mut self, file: impl Into<PathBuf>) -> Self {
        self.output = Output::File(file.into());
        self
    }

    /// Its stdout and stderr are the caller's.
    pub fn inherit_output(mut self) -> Self {
        self.output = Output::Inherit;
        self
    }

    /// How long it may take to be ready.
    pub fn ready_within(mut self, within: Duration) -> Self {
        self.ready_within = within;
        self
    }

    /// The ready file needled is told to write (in the data directory).
    pub fn ready_file(&self) -> PathBuf {
        self.data_dir.join("needled.ready.json")
    }

    /// Starts the process and returns at once, not waiting until it is ready (for a test
    /// that kills it during its start-up recovery); [`Launch::start`] for everything else.
    pub fn spawn(&self) -> Result<Child, String> {
        let ready = self.ready_file();
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--bind")
            .arg(&self.bind)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.args)
            .stdin(Stdio::null());
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        match &self.output {
            Output::File(file) => {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                let err = out.try_clone().map_err(|e| e.to_string())?;
                cmd.stdout(out).stderr(err);
            }
            Output::Discard => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
            Output::Inherit => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
        }
        cmd.spawn()
            .map_err(|e| format!("start {}: {e}", self.binary.display()))
    }

    /// Starts it and waits until it is ready.
    pub fn start(&self) -> Result<Running, String> {
        let ready = self.ready_file();
        let mut child = self.spawn()?;
        let deadline = Instant::now() + self.ready_within;
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                match Ready::parse(&text) {
                    Ok(r) => break r,
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(e);
                    }
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("needled exited before it was ready: {status}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "needled was not ready within {:?}",
                    self.ready_within
                ));
            }
            // Polling a file the child writes once; not a synchronisation by sleeping.
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Running {
            child: Some(child),
            address: ready.address,
            scheme: ready.scheme,
            tls_sha256: ready.tls_sha256,
            data_dir: self.data_dir.clone(),
            launch: self.clone(),
        })
    }
}

/// What the ready file says.
struct Ready {
    address: String,
    scheme: String,
    tls_sha256: Option<String>,
}

impl Ready {
    fn parse(text: &str) -> Result<Ready, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("ready file: {e}"))?;
        let address = v["address"]
            .as_str()
            .ok_or("ready file without an address")?
            .to_string();
        Ok(Ready {
            address,
            // A needled older than the scheme in its ready file served plain HTTP only here.
            scheme: v["scheme"].as_str().unwrap_or("http").to_string(),
            tls_sha256: v["tls_sha256"].as_str().map(str::to_string),
        })
    }
}

/// A running needled; killed when dropped.
#[derive(Debug)]
pub struct Running {
    /// The process (always there until [`Running::into_child`] takes it or it is stopped).
    child: Option<Child>,
    /// The bound address, `IP:PORT`.
    pub address: String,
    /// `http` or `https` (needled off loopback, or with `[tls]`).
    pub scheme: String,
    /// The SHA-256 fingerprint of its TLS certificate (hex), when it serves TLS.
    pub tls_sha256: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// How it was started (for [`Running::restart`]).
    launch: Launch,
}

impl Running {
    /// `http://IP:PORT`, or `https://IP:PORT` when it serves TLS; bound to all interfaces
    /// (`0.0.0.0`, `[::]`), the loopback address of that family.
    pub fn base(&self) -> String {
        let address = match self.address.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => {
                let lo: std::net::IpAddr = if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                };
                std::net::SocketAddr::new(lo, a.port()).to_string()
            }
            _ => self.address.clone(),
        };
        format!("{}://{address}", self.scheme)
    }

    /// The port it listens on.
    pub fn port(&self) -> Option<u16> {
        self.address.rsplit(':').next().and_then(|p| p.parse().ok())
    }

    /// The token of the first entry with `role` (`operator`, `technician`) in the data
    /// directory's `tokens.json`.
    pub fn token(&self, role: &str) -> Result<String, String> {
        token(&self.data_dir, role)
    }

    /// A client of it with the token of `role`; over TLS, pinned to its certificate's
    /// fingerprint.
    pub fn client(&self, role: &str) -> Result<crate::Client, String> {
        let token = self.token(role)?;
        match &self.tls_sha256 {
            None => Ok(crate::Client::new(self.base(), token)),
            Some(fp) => crate::Client::builder(self.base(), token)
                .tls(crate::Tls::Sha256(fp.clone()))
                .build()
                .map_err(|e| e.to_string()),
        }
    }

    /// The file its output goes to, if it goes to one.
    pub fn log_path(&self) -> Option<&Path> {
        match &self.launch.output {
            Output::File(f) => Some(f),
            _ => None,
        }
    }

    /// Its process id (`None` once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process, for a caller that kills it itself (it is no longer killed on drop).
    pub fn into_child(mut self) -> Option<Child> {
        self.child.take()
    }

    /// Kills it (SIGKILL: no chance to clean up) and waits for it; its exit status (`None`
    /// if it was stopped already).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Asks it to stop (SIGTERM, as systemd does) and waits for it to exit, at most 30 s
    /// (then SIGKILL and an error); its exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus, String> {
        self.terminate_within(Duration::from_secs(30))
    }

    /// As [`Running::terminate`], waiting at most `within`.
    pub fn terminate_within(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let mut child = self.child.take().ok_or("needled was stopped already")?;
        let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .map_err(|e| format!("SIGTERM {pid}: {e}"))?;
        let deadline = Instant::now() + within;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for {pid}: {e}")),
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("needled did not exit within {within:?} of SIGTERM"));
            }
            // Polling the child's exit; not a synchronisation by sleeping.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again with the same launch on the same address (its clients' base URL
    /// stays true), killing the old process first if it still runs; waits until it is ready.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let again = self.launch.clone().bind(self.address.clone()).start()?;
        *self = again;
        Ok(())
    }

    /// How it was started, bound to its current address: start it with this after it
    /// stopped for a run on the same port.
    pub fn relaunch(&self) -> Launch {
        self.launch.clone().bind(self.address.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The token of the first entry with `role` in `<data_dir>/tokens.json`.
pub fn token(data_dir: &Path, role: &str) -> Result<String, String> {
    let file = data_dir.join("tokens.json");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let tokens: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    tokens
        .iter()
        .find(|t| t["role"] == role)
        .and_then(|t| t["token"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no {role} token in {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_names_the_scheme_and_fingerprint_and_defaults_to_http() {
        let r = Ready::parse(
            r#"{"address":"0.0.0.0:4431","pid":7,"scheme":"https","tls_sha256":"ab12"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.address.as_str(), r.scheme.as_str()),
            ("0.0.0.0:4431", "https")
        );
        assert_eq!(r.tls_sha256.as_deref(), Some("ab12"));
        let r = Ready::parse(r#"{"address":"127.0.0.1:9","pid":7}"#).unwrap();
        assert_eq!((r.scheme.as_str(), r.tls_sha256), ("http", None));
        assert!(Ready::parse(r#"{"pid":7}"#).is_err());
    }
}
