//! needlectl as a bench engineer or jig script uses it: the real service started as a child
//! process on the sim backend (free port, temporary data directory), and the real `needlectl`
//! binary run against it. Judged by exit codes, stdout/stderr, and the rig's own truth.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use needled::cartridge::{self, Needles, TagData};
use serde_json::Value;

use common::Needled;

fn start(data: &Path) -> Needled {
    common::start(data, common::CI_CONFIG)
}

/// What one needlectl run did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs needlectl with exactly `args`, in `cwd`, with no NEEDLE_* variables but `env`.
fn needlectl_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_needlectl"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("NEEDLE_URL")
        .env_remove("NEEDLE_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run needlectl");
    Run {
        code: out.status.code().expect("needlectl was killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs needlectl against `n` with the tokens needled generated in its data directory.
fn ctl(n: &Needled, args: &[&str]) -> Run {
    let tokens = n.data.join("tokens.json");
    let mut all = vec![
        "--url",
        n.base.as_str(),
        "--token-file",
        tokens.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    needlectl_in(&n.data, &all, &[])
}

/// Runs needlectl, which must succeed; its stdout.
fn ok(n: &Needled, args: &[&str]) -> String {
    let r = ctl(n, args);
    assert_eq!(r.code, 0, "needlectl {args:?} failed: {r:?}");
    r.stdout
}

/// Runs needlectl with --json, which must succeed; its stdout as JSON.
fn ok_json(n: &Needled, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(n, &all);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("needlectl {args:?}: stdout is not JSON ({e}): {out}"))
}

/// Asserts a failure: the exit code, and `error: <code>:` first on stderr.
fn assert_fails(r: &Run, exit: i32, code: &str) {
    assert_eq!(r.code, exit, "{r:?}");
    assert!(
        r.stderr.starts_with(&format!("error: {code}: ")),
        "expected error code {code}: {r:?}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_whole_session_through_the_cli_runs_the_motor_and_spends_the_cartridge() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let health = ok_json(&n, &["health"]);
    assert_eq!(health["status"], "ok", "{health}");

    assert!(ok(&n, &["home"]).contains("homing started"));
    let idle = ok_json(&n, &["wait", "--state", "Idle", "--timeout-ms", "15000"]);
    assert_eq!(
        (idle["state"].as_str(), idle["homed"].as_bool()),
        (Some("Idle"), Some(true)),
        "{idle}"
    );

    // A cartridge provisioned with the test factory key (as `needle-factory provision` does),
    // its tag in a file, its chip's key on the command line.
    let data = TagData::new(
        "C-0101",
        "LOT-CLI",
        Needles::Pins24,
        "2099-12-31".parse().unwrap(),
    )
    .unwrap();
    let made = cartridge::provision_test(&data).unwrap();
    let tag_file = n.data.join("C-0101.tag");
    std::fs::write(&tag_file, format!("{}\n", made.tag_hex())).unwrap();
    let secret = made.chip_secret_hex();
    assert!(ok(
        &n,
        &[
            "sim",
            "seat",
            "--tag-file",
            path(&tag_file),
            "--chip-secret",
            &secret
        ]
    )
    .contains("seated"));

    // The service runs on test.toml, so that is the checklist --all-checked confirms.
    let config = n.data.join("test.toml");
    let created = ok_json(
        &n,
        &[
            "session",
            "create",
            "--operator",
            "dr-cli",
            "--subject",
            "subject-cli-1",
            "--area",
            "face",
            "--all-checked",
            "--checklist-config",
            path(&config),
        ],
    );
    assert_eq!(created["state"], "created", "{created}");
    let checklist = created["checklist"].as_array().unwrap();
    assert!(
        !checklist.is_empty() && checklist.iter().all(|c| c["confirmed"] == true),
        "{created}"
    );
    let id_num = created["id"].as_i64().unwrap();
    let id = id_num.to_string();

    let bound = ok_json(&n, &["session", "bind", &id]);
    assert_eq!(
        (bound["id"].as_str(), bound["state"].as_str()),
        (Some("C-0101"), Some("in_use")),
        "{bound}"
    );

    let armed = ok_json(
        &n,
        &[
            "session",
            "arm",
            &id,
            "--depth-um",
            "1000",
            "--rate-hz",
            "120",
        ],
    );
    assert_eq!(armed["state"], "armed", "{armed}");
    ok(
        &n,
        &[
            "wait",
            "--state",
            "Armed",
            "--settled",
            "--timeout-ms",
            "15000",
        ],
    );
    let status = ok_json(&n, &["status"]);
    assert_eq!(status["state"], "Armed", "{status}");
    assert_eq!(status["depth"]["moving"], false, "{status}");
    let position = status["depth"]["position_um"].as_i64().unwrap();
    assert!(
        (position - 1000).abs() <= 5,
        "depth position {position} um: {status}"
    );
    assert_eq!(
        status["rate"]["setpoint_mhz"], 120_000,
        "--rate-hz 120 is 120000 mHz: {status}"
    );
    assert_eq!(
        status["motor_enabled"], false,
        "armed is not running: {status}"
    );
    assert_eq!(status["session"]["id"], id_num, "{status}");
    assert_eq!(status["cartridge"]["id"], "C-0101", "{status}");

    // The human view: aligned key/value lines for the fields a bench engineer reads.
    let human = ok(&n, &["status"]);
    for key in [
        "state",
        "faults",
        "interlocks",
        "depth",
        "rate",
        "motor",
        "session",
        "cartridge",
    ] {
        assert!(
            human.lines().any(|l| l.starts_with(key)),
            "no '{key}' line in:\n{human}"
        );
    }
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("state") && l.contains("Armed")),
        "{human}"
    );
    assert!(human.contains("setpoint 120.000 Hz"), "{human}");

    ok(&n, &["session", "start", &id]);
    ok(&n, &["wait", "--state", "Running", "--timeout-ms", "5000"]);
    std::thread::sleep(Duration::from_millis(800));
    // Judge by the rig's truth, not the controller's telemetry.
    let truth = ok_json(&n, &["sim", "truth"]);
    assert_eq!(truth["motor_powered"], true, "{truth}");
    let rate = truth["rate_hz"].as_f64().unwrap();
    assert!((rate - 120.0).abs() < 2.4, "true rate {rate} Hz: {truth}");

    let ended = ok_json(
        &n,
        &["session", "end", &id, "--reason", "treatment complete"],
    );
    assert_eq!(
        (ended["state"].as_str(), ended["end_reason"].as_str()),
        (Some("ended"), Some("treatment complete"))
    );
    assert_eq!(
        ok_json(&n, &["sim", "truth"])["motor_powered"],
        false,
        "motor still powered after end"
    );

    let cartridge = ok_json(&n, &["cartridge", "show", "C-0101"]);
    assert_eq!(cartridge["state"], "spent", "{cartridge}");
    let human = ok(&n, &["cartridge", "show", "C-0101"]);
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("state") && l.contains("spent")),
        "{human}"
    );

    let csv_file = n.data.join("report.csv");
    ok(
        &n,
        &[
            "session",
            "report",
            &id,
            "--format",
            "csv",
            "--output",
            path(&csv_file),
        ],
    );
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(needled::store::CSV_HEADER),
        "{csv}"
    );
    assert!(
        lines.iter().any(|l| l.contains(",setpoints,1000,120000,")),
        "no setpoint row: {csv}"
    );
    assert!(
        lines.iter().any(|l| l.contains("treatment complete")),
        "no end reason: {csv}"
    );

    let events = ok(&n, &["events", "--limit", "1000"]);
    assert!(
        events.starts_with("SEQ"),
        "events are a table with a header: {events}"
    );
    assert!(
        events.contains("session_created") && events.contains("cartridge_spent"),
        "{events}"
    );
}

#[test]
fn refusals_exit_4_with_the_api_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let created = ok_json(
        &n,
        &[
            "session",
            "create",
            "--operator",
            "dr-cli",
            "--subject",
            "subject-cli-2",
            "--area",
            "face",
        ],
    );
    let id = created["id"].as_i64().unwrap().to_string();

    // Arming a session that holds no cartridge: 409 from the service.
    let arm = [
        "session",
        "arm",
        id.as_str(),
        "--depth-um",
        "500",
        "--rate-hz",
        "100",
    ];
    let r = ctl(&n, &arm);
    assert_fails(&r, 4, "session_not_active");
    assert!(
        r.stdout.is_empty(),
        "human mode prints errors on stderr only: {r:?}"
    );
    let mut json_arm = vec!["--json"];
    json_arm.extend_from_slice(&arm);
    let r = ctl(&n, &json_arm);
    assert_fails(&r, 4, "session_not_active");
    let body: Value =
        serde_json::from_str(&r.stdout).expect("--json prints the error JSON on stdout");
    assert_eq!(body["error"]["code"], "session_not_active", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        ok_json(&n, &["session", "show", &id])["state"],
        "created",
        "a refusal changed the session"
    );
    assert_eq!(
        ok_json(&n, &["status"])["state"],
        "Boot",
        "a refusal moved the controller"
    );

    // A 400 is a refusal too.
    let r = ctl(
        &n,
        &[
            "session",
            "create",
            "--operator",
            "x",
            "--subject",
            "s",
            "--area",
            "elbow",
        ],
    );
    assert_fails(&r, 4, "unknown_area");

    // Technician-only calls with the operator's token: an auth failure, not a refusal.
    assert_fails(
        &ctl(
            &n,
            &[
                "--role", "operator", "lot", "recall", "LOT-Z", "--reason", "test",
            ],
        ),
        6,
        "forbidden",
    );
    assert_fails(
        &ctl(&n, &["--role", "operator", "sim", "truth"]),
        6,
        "forbidden",
    );
    // A token the service does not know, from NEEDLE_TOKEN.
    let r = needlectl_in(
        &n.data,
        &["--url", &n.base, "status"],
        &[("NEEDLE_TOKEN", "not-a-token")],
    );
    assert_fails(&r, 6, "unauthorized");

    // E-stop: a wait for another state fails early, clearing is refused while it is pressed.
    ok(&n, &["sim", "estop", "on"]);
    ok(&n, &["wait", "--state", "EStop", "--timeout-ms", "5000"]);
    assert_fails(
        &ctl(&n, &["wait", "--state", "Idle", "--timeout-ms", "10000"]),
        7,
        "wait_faulted",
    );
    assert_fails(
        &ctl(&n, &["faults", "clear", "--reason", "still pressed"]),
        4,
        "fault_cause_present",
    );
    ok(&n, &["sim", "estop", "off"]);
    ok(&n, &["wait", "--state", "Fault", "--timeout-ms", "5000"]);
    ok(&n, &["faults", "clear", "--reason", "E-stop test finished"]);
    let state = ok_json(&n, &["status"])["state"].clone();
    assert!(
        state != "Fault" && state != "EStop",
        "faults not cleared: {state}"
    );

    // A state that never comes: exit 7 after the timeout.
    let started = Instant::now();
    assert_fails(
        &ctl(&n, &["wait", "--state", "Running", "--timeout-ms", "300"]),
        7,
        "wait_timeout",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "wait overran its timeout"
    );

    // Telemetry: --count events from the SSE stream, one JSON document per line.
    let out = ok(&n, &["--json", "telemetry", "--count", "3"]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a telemetry line is JSON"))
        .collect();
    assert_eq!(events.len(), 3, "{out}");
    assert!(
        events
            .iter()
            .all(|e| e["state"].is_string() && e["depth"]["position_um"].is_i64()),
        "{out}"
    );
    let out = ok(&n, &["telemetry", "--count", "2"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn an_unreachable_service_exits_3_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let r = needlectl_in(dir.path(), &["--url", &url, "--token", "x", "status"], &[]);
    assert_fails(&r, 3, "connection_failed");
    assert!(r.stderr.contains(&url), "the message names the URL: {r:?}");
    // From NEEDLE_URL, with --json: the error JSON on stdout as well.
    let r = needlectl_in(dir.path(), &["--json", "health"], &[("NEEDLE_URL", &url)]);
    assert_fails(&r, 3, "connection_failed");
    assert!(r.stderr.contains(&url), "{r:?}");
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["error"]["code"], "connection_failed", "{body}");
}

#[test]
fn a_missing_token_is_an_auth_error_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tokens.json");
    let r = needlectl_in(
        dir.path(),
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            path(&missing),
            "status",
        ],
        &[],
    );
    assert_fails(&r, 6, "no_token");
    assert!(
        r.stderr.contains(path(&missing)),
        "the message names the token file: {r:?}"
    );
    // The default token file is data/tokens.json under the current directory.
    let r = needlectl_in(
        dir.path(),
        &["--url", "http://127.0.0.1:9", "session", "show", "1"],
        &[],
    );
    assert_fails(&r, 6, "no_token");
    assert!(r.stderr.contains("data/tokens.json"), "{r:?}");
    // A token file without a technician token, for a technician-only command.
    std::fs::write(
        &missing,
        r#"[{"name": "op", "role": "operator", "token": "0123456789abcdef0123"}]"#,
    )
    .unwrap();
    let r = needlectl_in(
        dir.path(),
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            path(&missing),
            "sim",
            "truth",
        ],
        &[],
    );
    assert_fails(&r, 6, "no_token");
    assert!(r.stderr.contains("technician"), "{r:?}");
}

#[test]
fn usage_errors_exit_2_without_contacting_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = "http://127.0.0.1:9";
    for args in [
        &[
            "--url",
            unreachable,
            "--token",
            "x",
            "session",
            "arm",
            "1",
            "--depth-um",
            "500",
        ][..],
        &[
            "--url",
            unreachable,
            "--token",
            "x",
            "session",
            "arm",
            "1",
            "--depth-um",
            "500",
            "--rate-hz",
            "120.0001",
        ],
        &[
            "--url",
            unreachable,
            "--token",
            "x",
            "session",
            "setpoints",
            "1",
        ],
        &[
            "--url",
            unreachable,
            "--token",
            "x",
            "sim",
            "estop",
            "maybe",
        ],
        &[
            "--url",
            unreachable,
            "--token",
            "x",
            "wait",
            "--state",
            "Sleeping",
        ],
    ] {
        let r = needlectl_in(dir.path(), args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
    }
    let r = needlectl_in(
        dir.path(),
        &["--url", "https://127.0.0.1:7878", "--token", "x", "status"],
        &[],
    );
    // https needs a pinned fingerprint or a CA file: never a certificate trusted blindly.
    assert_fails(&r, 2, "tls_untrusted");
    let r = needlectl_in(
        dir.path(),
        &["--url", "127.0.0.1:7878", "--token", "x", "status"],
        &[],
    );
    assert_fails(&r, 2, "bad_url");
}

#[test]
fn tag_verify_checks_the_factory_signature_offline_and_tag_make_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let data = TagData::new(
        "C-0200",
        "LOT-T",
        Needles::Nano,
        "2001-01-01".parse().unwrap(),
    )
    .unwrap();
    let hex = cartridge::provision_test(&data).unwrap().tag_hex();
    // Without --config, the built-in defaults: the test factory key.
    let verified = needlectl_in(dir.path(), &["--json", "tag", "verify", "--hex", &hex], &[]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let v: Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(
        (
            v["authentic"].as_bool(),
            v["id"].as_str(),
            v["needles"].as_str(),
            v["signer_key_id"].as_str()
        ),
        (
            Some(true),
            Some("C-0200"),
            Some("nano"),
            Some("test-factory-1")
        )
    );
    assert_eq!(v["expired"], true, "expiry 2001-01-01 is past: {v}");

    // A rig's configuration does not trust the test key: refused, exit 4.
    let rig = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/linux-rig.toml");
    let refused = needlectl_in(
        dir.path(),
        &["tag", "verify", "--hex", &hex, "--config", path(&rig)],
        &[],
    );
    assert_fails(&refused, 4, "tag_signer_unknown");
    // A forger's key under the trusted id: the signature fails.
    let forger = cartridge::FactoryKey::from_secret("test-factory-1", &[1; 32]).unwrap();
    let forged = cartridge::provision(&data, &forger).unwrap().tag_hex();
    let refused = needlectl_in(dir.path(), &["tag", "verify", "--hex", &forged], &[]);
    assert_fails(&refused, 4, "tag_bad_signature");
    // Signing belongs to the factory tool: needlectl has no `tag make` any more.
    let make = needlectl_in(
        dir.path(),
        &[
            "tag",
            "make",
            "--id",
            "C-1",
            "--lot",
            "L",
            "--needles",
            "nano",
            "--expiry",
            "2099-01-01",
        ],
        &[],
    );
    assert_eq!(make.code, 2, "{make:?}");
}

#[test]
fn plans_through_the_cli_create_show_change_stop_and_write_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    // An operator token cannot create a plan: exit 6 (403), nothing created.
    let r = ctl(
        &n,
        &[
            "--role",
            "operator",
            "plan",
            "create",
            "--subject",
            "S-CLI",
            "--area",
            "face",
            "--session",
            "500:100",
        ],
    );
    assert_fails(&r, 6, "forbidden");
    let plan = ok_json(
        &n,
        &[
            "--role",
            "technician",
            "plan",
            "create",
            "--subject",
            "S-CLI",
            "--area",
            "face",
            "--session",
            "500:100",
            "--session",
            "750:110",
            "--reason",
            "acne scars",
        ],
    );
    let id = plan["id"].as_i64().unwrap().to_string();
    assert_eq!(
        plan["sessions"][1],
        serde_json::json!({ "depth_um": 750, "rate_mhz": 110_000 })
    );
    let shown = ok(&n, &["plan", "show", &id]);
    assert!(shown.contains("active (0 of 2 done)"), "{shown}");
    assert!(shown.contains("1. 500 um at 100000 mHz: due"), "{shown}");
    let r = ctl(
        &n,
        &[
            "plan",
            "create",
            "--subject",
            "S",
            "--area",
            "face",
            "--session",
            "500",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("expected DEPTH_UM:RATE_HZ"), "{r:?}");
    let changed = ok_json(
        &n,
        &[
            "--role",
            "technician",
            "plan",
            "change",
            &id,
            "--reason",
            "slower healing",
            "--max-days",
            "56",
        ],
    );
    assert_eq!(changed["max_days"], 56);
    let listed = ok_json(&n, &["plan", "list", "--subject", "S-CLI"]);
    assert_eq!(listed["plans"].as_array().unwrap().len(), 1);
    let file = dir.path().join("plan.html");
    ok(&n, &["plan", "record", &id, "--output", path(&file)]);
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(
        html.contains("Treatment plan") && html.contains("slower healing"),
        "{html}"
    );
    let stopped = ok_json(
        &n,
        &[
            "--role",
            "technician",
            "plan",
            "stop",
            &id,
            "--reason",
            "subject moved away",
        ],
    );
    assert_eq!(stopped["status"], "stopped");
    let r = ctl(
        &n,
        &[
            "--role",
            "technician",
            "plan",
            "stop",
            &id,
            "--reason",
            "again",
        ],
    );
    assert_fails(&r, 4, "plan_stopped");
}
