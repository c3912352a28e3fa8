//! What the control thread was granted (memory locked, its CPU, its priority) is what
//! `/v1/status` reports, checked against what the kernel says the process really has
//! (`/proc/<pid>/status` VmLck, each thread's `Cpus_allowed_list`), and every other thread is
//! kept off the control thread's CPU.

mod common;

use std::time::Duration;

use serde_json::Value;

fn status(n: &common::Needled) -> Value {
    n.operator_client()
        .json("GET", "/v1/status", None)
        .expect("GET /v1/status")
}

/// A `Key:` line of a `/proc/.../status` file.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// Every thread of `pid`: (name, Cpus_allowed_list).
fn threads(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/<pid>/task")
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| (field(&s, "Name:"), field(&s, "Cpus_allowed_list:")))
        .collect()
}

/// The control section of `/v1/status` once the loop has published its statistics.
fn control_stats(n: &common::Needled) -> Value {
    for _ in 0..100 {
        let c = status(n)["control"].clone();
        if c["ticks"].as_u64().unwrap_or(0) > 0 {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the control loop never reported");
}

#[test]
fn status_reports_the_memory_lock_cpu_and_priority_the_process_really_has() {
    let cpus = needled::realtime::online_cpus().unwrap();
    let cpu = *cpus.last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pinned = cpus.len() >= 2;
    let config = if pinned {
        format!("{}cpu = {cpu}\n", common::CI_CONFIG)
    } else {
        common::CI_CONFIG.to_string()
    };
    let n = common::start(dir.path(), &config);
    let c = control_stats(&n);
    let pid = n.pid();

    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kb: u64 = field(&proc_status, "VmLck:")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        c["memory_locked"],
        locked_kb > 0,
        "VmLck {locked_kb} kB, {c}"
    );

    let threads = threads(pid);
    let control = threads
        .iter()
        .find(|(name, _)| name == "needle-control")
        .expect("a needle-control thread");
    if pinned {
        assert_eq!(c["cpu"], cpu, "{c}");
        assert_eq!(control.1, cpu.to_string());
        for (name, allowed) in threads.iter().filter(|(name, _)| name != "needle-control") {
            let allowed = needled::realtime::parse_cpu_list(allowed).unwrap();
            assert!(
                !allowed.contains(&cpu),
                "thread {name} may run on the control CPU {cpu}: {allowed:?}"
            );
        }
    } else {
        assert_eq!(c["cpu"], Value::Null, "{c}");
    }

    // The priority: what the kernel's scheduler says of the control thread (field 40 of
    // /proc/<pid>/task/<tid>/stat, rt_priority; 0 for a normal thread).
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|s| s.trim() == "needle-control")
        })
        .expect("the control thread's task")
        .path();
    let stat = std::fs::read_to_string(tid.join("stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    // Fields after "(comm)" start at field 3 (state); rt_priority is field 40.
    let rt_priority: u64 = after_name
        .split_whitespace()
        .nth(40 - 3)
        .unwrap()
        .parse()
        .unwrap();
    match c["priority"].as_u64() {
        Some(p) => {
            assert_eq!(p, rt_priority, "{c}");
            assert_eq!(c["realtime"], true);
        }
        None => {
            assert_eq!(rt_priority, 0, "{c}");
            assert_eq!(c["realtime"], false);
        }
    }
}

/// Whether this test process runs as root (`Uid:` of `/proc/self/status`, effective uid).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    field(&status, "Uid:").split_whitespace().nth(1) == Some("0")
}

#[test]
fn require_memory_lock_refuses_to_start_when_memory_cannot_be_locked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.toml");
    std::fs::write(
        &file,
        format!("{}require_memory_lock = true\n", common::CI_CONFIG),
    )
    .unwrap();
    // A finite memlock limit and, as root, no CAP_IPC_LOCK: what an unprivileged service
    // without LimitMEMLOCK=infinity has (util-linux's prlimit and setpriv).
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--memlock=65536:65536");
    if is_root() {
        cmd.args([
            "setpriv",
            "--bounding-set=-ipc_lock",
            "--inh-caps=-ipc_lock",
        ]);
    }
    let out = cmd
        .arg(env!("CARGO_BIN_EXE_needled"))
        .args(["--config", file.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("prlimit (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("control.require_memory_lock is set but memory cannot be locked"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}
