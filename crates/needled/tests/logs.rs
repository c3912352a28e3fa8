//! needled's human-format log: colours on a terminal only. A file, a pipe or journald must get
//! plain text, never ANSI escape sequences.

use std::time::Duration;

use needle_client::harness::Launch;

#[test]
fn human_log_to_a_file_has_no_ansi_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("needled.log");
    let config = dir.path().join("test.toml");
    std::fs::write(&config, "[control]\nmax_tick_gap_ms = 500\n").unwrap();
    // needle-client's harness: ready by its ready file; the log is what the test reads.
    let mut running = Launch::new(env!("CARGO_BIN_EXE_needled"), &config, dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .log(&log)
        .ready_within(Duration::from_secs(60))
        .start()
        .expect("start needled");
    let health = needle_client::Client::new(running.base(), "")
        .health()
        .expect("health");
    assert_eq!(health.status, needle_api::HealthStatus::Ok);
    assert!(running.kill().is_some());
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
