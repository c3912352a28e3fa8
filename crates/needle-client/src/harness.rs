//! needled as a child process, for tests, benches and jigs: bound to port 0 (or a given
//! address, for a restart on the same port), a data directory the caller owns, and ready
//! when the file `needled --ready-file` writes appears (the bound address as JSON), never
//! by reading its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Where needled's stdout and stderr go (`None`: discarded).
    pub log: Option<PathBuf>,
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
            log: None,
            ready_within: Duration::from_secs(30),
        }
    }

    /// Starts it and waits until it is ready.
    pub fn start(&self) -> Result<Running, String> {
        let ready = self.data_dir.join("needled.ready.json");
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        match &self.log {
            Some(file) => {
                let out =
                    std::fs::File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
                let err = out.try_clone().map_err(|e| e.to_string())?;
                cmd.stdout(out).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + self.ready_within;
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("ready file: {e}"))?;
                break v["address"]
                    .as_str()
                    .ok_or("ready file without an address")?
                    .to_string();
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
            address,
            data_dir: self.data_dir.clone(),
        })
    }
}

/// A running needled; killed when dropped.
#[derive(Debug)]
pub struct Running {
    /// The process (always there until [`Running::into_child`] takes it).
    child: Option<Child>,
    /// The bound address, `IP:PORT`.
    pub address: String,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Running {
    /// `http://IP:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The token of the first entry with `role` (`operator`, `technician`) in the data
    /// directory's `tokens.json`.
    pub fn token(&self, role: &str) -> Result<String, String> {
        token(&self.data_dir, role)
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process, for a caller that kills it itself (it is no longer killed on drop).
    pub fn into_child(mut self) -> Option<Child> {
        self.child.take()
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
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
