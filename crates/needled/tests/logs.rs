//! needled's human-format log: colours on a terminal only. A file, a pipe or journald must get
//! plain text, never ANSI escape sequences.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn human_log_to_a_file_has_no_ansi_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let config = dir.path().join("test.toml");
    std::fs::write(&config, "[control]\nmax_tick_gap_ms = 500\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_needled"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start needled");
    // needled prints its address on stdout once it serves; the log goes to stderr.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.contains("http://") {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "needled exited before serving");
        assert!(Instant::now() < deadline, "needled did not start");
    }
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    let health = ureq::get(&format!("{base}/v1/health"))
        .timeout(Duration::from_secs(10))
        .call()
        .expect("health");
    assert_eq!(health.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("INFO"),
        "the log has info lines: {}",
        String::from_utf8_lossy(&text)
    );
    assert!(
        !text.contains(&0x1b),
        "ESC in a log written to a file: {:?}",
        String::from_utf8_lossy(&text)
    );
}
