//! Where the `needled` under test (and, on the link rig, the `needle-pen` firmware) comes
//! from: `NEEDLED_BIN` (`NEEDLE_PEN_BIN`), or the workspace's own build, rebuilt first if any
//! of its sources is newer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::error::{HilError, Result};

/// Environment variable naming a `needled` binary to test instead of the workspace's own.
pub const NEEDLED_BIN_ENV: &str = "NEEDLED_BIN";
/// Environment variable naming a `needle-pen` binary (the link rig's pen) instead of the
/// workspace's own.
pub const PEN_BIN_ENV: &str = "NEEDLE_PEN_BIN";

/// A binary of the workspace: its package (and binary) name, the crates it is built from,
/// and the variable that names another build to use.
struct Binary {
    name: &'static str,
    crates: &'static [&'static str],
    env: &'static str,
}

const NEEDLED: Binary = Binary {
    name: "needled",
    crates: &[
        "crates/needled",
        "crates/needle-core",
        "crates/needle-sim",
        "crates/needle-link",
    ],
    env: NEEDLED_BIN_ENV,
};

const PEN: Binary = Binary {
    name: "needle-pen",
    crates: &[
        "crates/needle-pen",
        "crates/needle-core",
        "crates/needle-sim",
        "crates/needle-link",
    ],
    env: PEN_BIN_ENV,
};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The profile directory this executable was built into (`target/debug`, `target/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

fn newest_mtime(path: &Path, newest: &mut SystemTime) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                newest_mtime(&entry.path(), newest);
            }
        }
    } else if let Ok(m) = meta.modified() {
        *newest = (*newest).max(m);
    }
}

/// Whether `binary` is newer than every source of `crates` it is built from.
fn is_fresh(binary: &Path, crates: &[&str]) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    let root = workspace_root();
    let mut sources = vec![root.join("Cargo.lock"), root.join("Cargo.toml")];
    for krate in crates {
        for part in ["Cargo.toml", "src", "assets"] {
            sources.push(root.join(krate).join(part));
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for source in &sources {
        newest_mtime(source, &mut newest);
    }
    built >= newest
}

/// The `needled` binary under test: `NEEDLED_BIN` if set, else the workspace's build in the
/// profile this suite was built with, rebuilt first (`cargo build -p needled`) if any of its
/// sources is newer. The suite never tests a stale service.
pub fn needled_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find_or_build(&NEEDLED))
        .clone()
        .map_err(HilError::Service)
}

/// The `needle-pen` binary for the link rig, as [`needled_binary`] (`NEEDLE_PEN_BIN`).
pub fn pen_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find_or_build(&PEN))
        .clone()
        .map_err(HilError::Service)
}

fn find_or_build(b: &Binary) -> std::result::Result<PathBuf, String> {
    let (name, env) = (b.name, b.env);
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} is not a file", path.display()))
        };
    }
    let dir = profile_dir();
    let binary = dir.join(name);
    if is_fresh(&binary, b.crates) {
        return Ok(binary);
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", name, "--bin", name]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build {name}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "the {name} binary at {} is missing or older than its sources, and `cargo build -p {name}` failed:\n{}",
            binary.display(),
            tail.join("\n")
        ));
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "cargo built {name} but {} does not exist",
            binary.display()
        ))
    }
}

/// The git revision of the checkout, with `-dirty` if it has changes.
pub fn git_revision() -> String {
    static REV: OnceLock<String> = OnceLock::new();
    REV.get_or_init(|| {
        let out = Command::new("git")
            .current_dir(workspace_root())
            .args(["describe", "--always", "--dirty", "--abbrev=12"])
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => "unknown".into(),
        }
    })
    .clone()
}
