//! The real service on the sim backend: started as a child process on a free port with a
//! temporary data directory, driven over HTTP as a jig or the console would.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use needled::cartridge::{self, Needles, TagData};
use serde_json::{json, Value};

use common::Needled;

fn start(data: &Path) -> Needled {
    common::start(data, common::CI_CONFIG)
}

/// The status and stable error code of an answer (an empty code when there is none).
fn refusal(answer: (u16, Value)) -> (u16, String) {
    let code = answer.1["error"]["code"].as_str().unwrap_or("").to_string();
    (answer.0, code)
}

/// (status, body)
fn call(
    n: &Needled,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    common::call_as(n, method, path, token, body, Duration::from_secs(10))
}

fn op(n: &Needled, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(n, method, path, Some(&n.operator), body);
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

fn tech(n: &Needled, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(n, method, path, Some(&n.technician), body);
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

fn wait_for(n: &Needled, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = op(n, "GET", "/v1/status", None);
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sim injection that seats a fresh cartridge (test factory key, chip unused).
fn make_tag(_n: &Needled, id: &str, lot: &str, expiry: &str) -> Value {
    let data = TagData::new(id, lot, Needles::Pins12, expiry.parse().unwrap()).unwrap();
    cartridge::provision_test(&data).unwrap().seat_json(0)
}

fn seat(n: &Needled, body: &Value) {
    tech(n, "POST", "/v1/sim/inject", Some(body.clone()));
}

fn create(n: &Needled, subject: &str, area: &str) -> i64 {
    let checklist = op(n, "GET", "/v1/status", None); // warm-up; keeps the call pattern simple
    let _ = checklist;
    let v = op(
        n,
        "POST",
        "/v1/sessions",
        Some(json!({
            "operator": "dr-test", "subject_ref": subject, "area": area, "checklist": checklist_answers(n)
        })),
    );
    v["id"].as_i64().unwrap()
}

/// Confirms every configured checklist item (read from the default config's ids).
fn checklist_answers(_n: &Needled) -> Value {
    let config = needled::config::parse("", "defaults").unwrap();
    let map: serde_json::Map<String, Value> = config
        .session
        .checklist
        .iter()
        .map(|c| (c.id.clone(), Value::Bool(true)))
        .collect();
    Value::Object(map)
}

fn homed(n: &Needled) {
    op(n, "POST", "/v1/home", None);
    wait_for(n, "homing", |s| s["state"] == "Idle" && s["homed"] == true);
}

/// Homes, creates a session, seats and binds a fresh cartridge, arms and starts; returns the
/// session id and the cartridge's tag.
fn running_session(
    n: &Needled,
    subject: &str,
    area: &str,
    cartridge: &str,
    lot: &str,
    depth_um: i32,
    rate_mhz: u32,
) -> (i64, Value) {
    homed(n);
    let id = create(n, subject, area);
    let tag = make_tag(n, cartridge, lot, "2099-12-31");
    seat(n, &tag);
    op(n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    op(
        n,
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(json!({ "depth_um": depth_um, "rate_mhz": rate_mhz })),
    );
    wait_for(n, "armed and settled", |s| {
        s["state"] == "Armed" && s["depth"]["moving"] == false
    });
    op(n, "POST", &format!("/v1/sessions/{id}/start"), None);
    (id, tag)
}

#[test]
fn full_session_on_the_sim_runs_at_setpoint_and_spends_the_cartridge() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    let id = create(&n, "subject-001", "face");
    seat(&n, &make_tag(&n, "C-0001", "LOT-A", "2099-12-31"));
    let c = op(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(c["state"], "in_use");
    op(
        &n,
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(json!({ "depth_um": 1000, "rate_mhz": 120000 })),
    );
    wait_for(&n, "depth settled", |s| {
        s["depth"]["moving"] == false && s["state"] == "Armed"
    });
    op(&n, "POST", &format!("/v1/sessions/{id}/start"), None);
    std::thread::sleep(Duration::from_millis(800));
    // Judge by the rig's truth, not the controller's telemetry.
    let truth = tech(&n, "GET", "/v1/sim/truth", None);
    assert_eq!(truth["motor_powered"], true, "{truth}");
    let rate = truth["rate_hz"].as_f64().unwrap();
    assert!((rate - 120.0).abs() < 2.4, "true rate {rate}");
    assert!(
        (truth["depth_um"].as_f64().unwrap() - 1000.0).abs() <= 2.5,
        "{truth}"
    );
    op(&n, "POST", &format!("/v1/sessions/{id}/pause"), None);
    let s = op(&n, "GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(s["state"], "paused");
    let ended = op(
        &n,
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(json!({ "reason": "treatment complete" })),
    );
    assert_eq!(ended["state"], "ended");
    assert!(!tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"]
        .as_bool()
        .unwrap());
    let cart = op(&n, "GET", "/v1/cartridges/C-0001", None);
    assert_eq!(cart["state"], "spent");
    let report = op(
        &n,
        "GET",
        &format!("/v1/sessions/{id}/report?format=json"),
        None,
    );
    assert_eq!(report["cartridge"]["id"], "C-0001", "{report}");
    assert!(
        report["post_care"]
            .as_str()
            .unwrap()
            .contains("24 to 48 hours"),
        "{report}"
    );
    let (status, csv) = call(
        &n,
        "GET",
        &format!("/v1/sessions/{id}/report?format=csv"),
        Some(&n.operator),
        None,
    );
    assert_eq!(status, 200);
    assert!(csv.as_str().unwrap().lines().count() > 2, "{csv}");
    // The CSV carries the after-care advice as the JSON does, in its last row.
    let last = csv.as_str().unwrap().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(",post_care,") && last.contains("24 to 48 hours"),
        "{csv}"
    );
    // Reuse is refused: a new session cannot bind the spent cartridge.
    let id2 = create(&n, "subject-002", "face");
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id2}/cartridge"),
            Some(&n.operator),
            None
        )),
        (409, "cartridge_spent".into())
    );
}

#[test]
fn refusals_have_stable_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    assert_eq!(
        refusal(call(&n, "GET", "/v1/status", None, None)),
        (401, "unauthorized".into())
    );
    assert_eq!(
        refusal(call(&n, "GET", "/v1/status", Some("nope"), None)),
        (401, "unauthorized".into())
    );
    assert_eq!(call(&n, "GET", "/v1/health", None, None).0, 200);
    let sim = json!({ "action": "estop", "pressed": true });
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            "/v1/sim/inject",
            Some(&n.operator),
            Some(sim)
        )),
        (403, "forbidden".into())
    );
    let bad = json!({ "operator": "x", "subject_ref": "s", "area": "face", "colour": "red" });
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            "/v1/sessions",
            Some(&n.operator),
            Some(bad)
        ))
        .1,
        "invalid_request"
    );
    let area = json!({ "operator": "x", "subject_ref": "s", "area": "elbow" });
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            "/v1/sessions",
            Some(&n.operator),
            Some(area)
        )),
        (400, "unknown_area".into())
    );
    // Arming before homing, with no cartridge: refused, nothing changes.
    let id = create(&n, "subject-003", "forehead");
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/cartridge"),
            Some(&n.operator),
            None
        ))
        .1,
        "cartridge_missing"
    );
    homed(&n);
    seat(&n, &make_tag(&n, "C-0002", "LOT-B", "2099-12-31"));
    op(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    // Forehead's ceiling is below 2 mm.
    let deep = json!({ "depth_um": 2000, "rate_mhz": 120000 });
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/arm"),
            Some(&n.operator),
            Some(deep)
        )),
        (400, "depth_above_area_ceiling".into())
    );
    let s = op(&n, "GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(s["state"], "bound");
    assert_eq!(op(&n, "GET", "/v1/status", None)["state"], "Idle");
    let rate = json!({ "depth_um": 500, "rate_mhz": 900000 });
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/arm"),
            Some(&n.operator),
            Some(rate)
        ))
        .1,
        "rate_out_of_range"
    );
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"],
        "bound"
    );
    // Counterfeit: a tag signed with another key.
    // Counterfeit: a tag signed by a forger's key under the trusted key id, on a chip that
    // answers for its own key (so only the factory signature is wrong).
    let forged = {
        let forger = cartridge::FactoryKey::from_secret("test-factory-1", &[7u8; 32]).unwrap();
        let data = TagData::new(
            "C-0666",
            "LOT-X",
            Needles::Nano,
            "2099-01-01".parse().unwrap(),
        )
        .unwrap();
        cartridge::provision(&data, &forger).unwrap().seat_json(0)
    };
    let id2 = create(&n, "subject-004", "face");
    op(&n, "POST", &format!("/v1/sessions/{id}/end"), None);
    seat(&n, &forged);
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id2}/cartridge"),
            Some(&n.operator),
            None
        ))
        .1,
        "tag_bad_signature"
    );
    seat(&n, &make_tag(&n, "C-0003", "LOT-C", "2001-01-01"));
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id2}/cartridge"),
            Some(&n.operator),
            None
        ))
        .1,
        "cartridge_expired"
    );
}

#[test]
fn estop_while_running_stops_motor_and_returns_session_to_bound() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let (id, _) = running_session(&n, "subject-005", "body", "C-0004", "LOT-D", 500, 100000);
    std::thread::sleep(Duration::from_millis(300));
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "estop", "pressed": true })),
    );
    let s = wait_for(&n, "estop", |s| s["state"] == "EStop");
    assert!(s["faults"].as_array().unwrap().iter().any(|f| f == "estop"));
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"] != "bound" {
        assert!(Instant::now() < deadline, "session did not return to bound");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = call(
        &n,
        "POST",
        "/v1/faults/clear",
        Some(&n.operator),
        Some(json!({ "reason": "test" })),
    );
    assert_eq!(status, 409, "cleared while the E-stop is still pressed");
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "estop", "pressed": false })),
    );
    wait_for(&n, "fault after release", |s| s["state"] == "Fault");
    op(
        &n,
        "POST",
        "/v1/faults/clear",
        Some(json!({ "reason": "E-stop test finished" })),
    );
    let events = op(&n, "GET", "/v1/events?after=0&limit=1000", None);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "fault"),
        "no fault event"
    );
}

#[test]
fn killed_mid_session_restarts_with_session_aborted_and_cartridge_spent() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    let events_before;
    {
        let n = start(dir.path());
        (id, _) = running_session(&n, "subject-006", "face", "C-0005", "LOT-E", 800, 120000);
        std::thread::sleep(Duration::from_millis(300));
        events_before = op(&n, "GET", "/v1/events?after=0&limit=1000", None)["events"]
            .as_array()
            .unwrap()
            .len();
        // SIGKILL: no chance to clean up.
        let mut n = n;
        n.kill();
    }
    let n = start(dir.path());
    let s = op(&n, "GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(s["state"], "aborted", "{s}");
    assert_eq!(
        op(&n, "GET", "/v1/cartridges/C-0005", None)["state"],
        "spent"
    );
    let events = op(&n, "GET", "/v1/events?after=0&limit=1000", None)["events"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        events >= events_before,
        "events lost: {events} < {events_before}"
    );
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false
    );
}

/// Cutting the host link stops the needles within the product's 100 ms dead-man (the
/// service tests run with it), by the rig's truth in sim time.
#[test]
fn cut_host_link_faults_host_timeout_and_stops_motor() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let _ = running_session(&n, "subject-007", "face", "C-0007", "LOT-F", 600, 120000);
    std::thread::sleep(Duration::from_millis(300));
    let cut = tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "host_silence", "on": true })),
    )["applied_at_us"]
        .as_u64()
        .unwrap();
    // The product's dead-man, in sim time: the last heartbeat came before the cut.
    let off = motor_off_at_us(&n, "the host link was cut");
    let bound_us = (HOST_TIMEOUT_MS + STOP_MARGIN_MS) * 1_000;
    assert!(
        off.saturating_sub(cut) <= bound_us,
        "motor off {} ms of sim time after the cut (bound {} ms)",
        off.saturating_sub(cut) / 1_000,
        bound_us / 1_000
    );
    let s = wait_for(&n, "host timeout", |s| s["state"] == "Fault");
    assert!(
        s["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "host_timeout"),
        "{s}"
    );
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false
    );
}

#[test]
fn cartridge_pulled_mid_session_is_spent_and_refused_when_reseated() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let (id, tag) = running_session(&n, "subject-008", "face", "C-0008", "LOT-G", 600, 120000);
    std::thread::sleep(Duration::from_millis(200));
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "pull_cartridge" })),
    );
    wait_for(&n, "cartridge fault", |s| {
        s["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "cartridge_removed")
    });
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"] != "ended" {
        assert!(
            Instant::now() < deadline,
            "session not ended after the pull"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        op(&n, "GET", "/v1/cartridges/C-0008", None)["state"],
        "spent"
    );
    // Re-seating the same cartridge for a new session is refused (electronic lockout).
    seat(&n, &tag);
    let id2 = create(&n, "subject-009", "face");
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id2}/cartridge"),
            Some(&n.operator),
            None
        )),
        (409, "cartridge_spent".into())
    );
}

#[test]
fn recall_needs_technician_and_stops_a_running_session() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let (id, _) = running_session(&n, "subject-010", "face", "C-0010", "LOT-R", 600, 120000);
    let (status, _) = call(
        &n,
        "POST",
        "/v1/lots/LOT-R/recall",
        Some(&n.operator),
        Some(json!({ "reason": "supplier notice" })),
    );
    assert_eq!(status, 403);
    let r = tech(
        &n,
        "POST",
        "/v1/lots/LOT-R/recall",
        Some(json!({ "reason": "supplier notice 42" })),
    );
    assert_eq!(r["in_use"], json!(["C-0010"]));
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"],
        "ended"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"] == true {
        assert!(
            Instant::now() < deadline,
            "motor still powered after the recall"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A fresh cartridge of the recalled lot is refused.
    seat(&n, &make_tag(&n, "C-0011", "LOT-R", "2099-12-31"));
    let id2 = create(&n, "subject-011", "face");
    let (_, err) = call(
        &n,
        "POST",
        &format!("/v1/sessions/{id2}/cartridge"),
        Some(&n.operator),
        None,
    );
    assert_eq!(err["error"]["code"], "lot_recalled");
}

#[test]
fn subject_interval_needs_technician_override_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let (id, _) = running_session(&n, "subject-012", "face", "C-0012", "LOT-H", 600, 120000);
    op(&n, "POST", &format!("/v1/sessions/{id}/end"), None);
    let body = json!({ "operator": "dr-test", "subject_ref": "subject-012", "area": "face", "checklist": checklist_answers(&n) });
    let (status, err) = call(
        &n,
        "POST",
        "/v1/sessions",
        Some(&n.operator),
        Some(body.clone()),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("session_interval")),
        "{err}"
    );
    let mut with_reason = body.clone();
    with_reason["override_reason"] = json!("scar protocol, physician order 17");
    assert_eq!(
        call(
            &n,
            "POST",
            "/v1/sessions",
            Some(&n.operator),
            Some(with_reason.clone())
        )
        .0,
        403
    );
    let (status, s) = call(
        &n,
        "POST",
        "/v1/sessions",
        Some(&n.technician),
        Some(with_reason),
    );
    assert_eq!(status, 201, "{s}");
    let events = op(&n, "GET", "/v1/events?after=0&limit=1000", None);
    assert!(events["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "interval_override"));
}

#[test]
fn version_names_the_build_and_the_exact_config_file() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let v = op(&n, "GET", "/v1/version", None);
    assert_eq!(v["needled"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["backend"], "sim");
    assert!(!v["git"].as_str().unwrap().is_empty());
    let config = std::fs::read(dir.path().join("test.toml")).unwrap();
    assert_eq!(
        v["config_sha256"],
        hex::encode(sha2::Sha256::digest(&config))
    );
    assert_eq!(call(&n, "GET", "/v1/version", None, None).0, 401);
}

/// The heartbeat thread refreshes the dead-man only while the async service makes progress:
/// a stall shorter than `service_stall_ms` (a slow fsync) is ridden out, a longer one (a hung
/// service) stops the needles.
#[test]
fn hung_service_stops_needles_but_a_short_stall_does_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("test.toml"),
        "[control]\nmax_tick_gap_ms = 500\nservice_stall_ms = 1000\n",
    )
    .unwrap();
    let n = start(dir.path());
    let _ = running_session(&n, "subject-013", "face", "C-0013", "LOT-S", 600, 120000);
    std::thread::sleep(Duration::from_millis(300));
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "stall_service", "ms": 400 })),
    );
    std::thread::sleep(Duration::from_millis(900));
    let s = op(&n, "GET", "/v1/status", None);
    assert_eq!(
        s["state"], "Running",
        "a 400 ms stall tripped the dead-man: {s}"
    );
    let t0 = Instant::now();
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "stall_service", "ms": 3000 })),
    );
    // During the stall the API cannot answer either; the jig's truth comes after it.
    let s = wait_for(&n, "host timeout", |s| s["state"] == "Fault");
    assert!(
        s["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "host_timeout"),
        "{s}"
    );
    let truth = tech(&n, "GET", "/v1/sim/truth", None);
    assert_eq!(truth["motor_powered"], false);
    assert!(
        t0.elapsed() >= Duration::from_millis(1_000),
        "stopped before the stall limit"
    );
}

#[test]
fn sim_seats_a_new_cartridge_signed_by_the_service_for_technicians_only() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    let (status, _) = call(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(&n.operator),
        Some(json!({ "action": "seat_new_cartridge" })),
    );
    assert_eq!(status, 403);
    let reply = tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "seat_new_cartridge", "lot": "LOT-NEW" })),
    );
    assert!(reply["applied_at_us"].as_u64().is_some(), "{reply}");
    let id = create(&n, "subject-014", "face");
    let c = op(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    assert_eq!(
        (c["lot"].as_str(), c["state"].as_str()),
        (Some("LOT-NEW"), Some("in_use")),
        "{c}"
    );
    assert!(c["id"].as_str().unwrap().starts_with("SIM-"));
    let bad = json!({ "action": "seat_new_cartridge", "expiry": "2001-02-30" });
    assert_eq!(
        call(&n, "POST", "/v1/sim/inject", Some(&n.technician), Some(bad)).0,
        400
    );
}

/// The service's stall limit in the monitor tests, ms.
const MONITOR_STALL_MS: u64 = 300;
/// The product's dead-man, ms (the default `control.host_timeout_ms`).
const HOST_TIMEOUT_MS: u64 = 100;
/// Slack for the control thread's late ticks on a loaded machine, ms of sim time.
const STOP_MARGIN_MS: u64 = 250;

fn start_with_monitor_stall(data: &Path) -> Needled {
    common::start(
        data,
        &format!("[control]\nmax_tick_gap_ms = 500\nservice_stall_ms = {MONITOR_STALL_MS}\n"),
    )
}

/// Waits for the rig's truth to show the motor unpowered; returns the sim time it went off.
fn motor_off_at_us(n: &Needled, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let truth = tech(n, "GET", "/v1/sim/truth", None);
        if truth["motor_powered"] == false {
            return truth["motor_off_at_us"]
                .as_u64()
                .expect("the motor went off");
        }
        assert!(
            Instant::now() < deadline,
            "motor still powered after {what}: {truth}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The dead-man follows the monitor, not merely the runtime: a monitor pass that hangs while
/// the rest of the runtime answers stops the needles within `service_stall_ms + host_timeout`
/// of sim time (plus a margin for late ticks), by the rig's truth; `/v1/health` says the
/// monitor is stalled meanwhile, and ok again once it resumes.
#[test]
fn stuck_monitor_stops_the_needles_within_the_stall_limit() {
    let dir = tempfile::tempdir().unwrap();
    let n = start_with_monitor_stall(dir.path());
    let _ = running_session(&n, "subject-015", "face", "C-0015", "LOT-M", 600, 120000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        true
    );
    let applied = tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "stall_monitor", "ms": 4000 })),
    )["applied_at_us"]
        .as_u64()
        .unwrap();
    let off = motor_off_at_us(&n, "the monitor hung");
    let bound_us = (MONITOR_STALL_MS + HOST_TIMEOUT_MS + STOP_MARGIN_MS) * 1_000;
    assert!(
        off.saturating_sub(applied) <= bound_us,
        "motor off {} ms of sim time after the monitor hung (bound {} ms)",
        off.saturating_sub(applied) / 1_000,
        bound_us / 1_000
    );
    // The runtime still answers: it is the monitor alone that hangs.
    let (status, health) = call(&n, "GET", "/v1/health", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        (health["status"].as_str(), health["monitor"].as_str()),
        (Some("monitor_stalled"), Some("stalled")),
        "{health}"
    );
    let s = op(&n, "GET", "/v1/status", None);
    assert!(
        s["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "host_timeout"),
        "{s}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&n, "GET", "/v1/health", None, None).1["status"] != "ok" {
        assert!(Instant::now() < deadline, "the monitor did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A monitor that panics is not silent: the needles stop at once (within the stall limit and
/// the dead-man at worst, by the rig's truth), `/v1/health` reports `monitor_failed`, and
/// nothing can be started until the service is restarted.
#[test]
fn panicked_monitor_stops_the_needles_and_health_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = start_with_monitor_stall(dir.path());
    let (id, _) = running_session(&n, "subject-016", "face", "C-0016", "LOT-P", 600, 120000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        true
    );
    let applied = tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "panic_monitor" })),
    )["applied_at_us"]
        .as_u64()
        .unwrap();
    let off = motor_off_at_us(&n, "the monitor panicked");
    let bound_us = (MONITOR_STALL_MS + HOST_TIMEOUT_MS + STOP_MARGIN_MS) * 1_000;
    assert!(
        off.saturating_sub(applied) <= bound_us,
        "motor off {} ms of sim time after the monitor panicked (bound {} ms)",
        off.saturating_sub(applied) / 1_000,
        bound_us / 1_000
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = call(&n, "GET", "/v1/health", None, None).1;
        if health["status"] == "monitor_failed" {
            assert_eq!(health["monitor"], "failed", "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health does not report it: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/start"),
            Some(&n.operator),
            None
        )),
        (503, "monitor_unavailable".into())
    );
    tech(
        &n,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "pedal", "pressed": true })),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false,
        "the needles ran again without a monitor"
    );
}

/// A disarm that fails (a full command queue) is never ignored: a recall or an end that
/// cannot stop the needles is refused and changes nothing (the session stays open and
/// watched, the lot is not recalled, the rig's truth shows the motor still powered), and
/// succeeds when tried again.
#[test]
fn failed_disarm_refuses_recall_and_end_and_forgets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let (id, _) = running_session(&n, "subject-017", "face", "C-0017", "LOT-Q", 600, 120000);
    std::thread::sleep(Duration::from_millis(200));
    let fail_once = json!({ "action": "fail_disarm", "times": 1 });
    tech(&n, "POST", "/v1/sim/inject", Some(fail_once.clone()));
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            "/v1/lots/LOT-Q/recall",
            Some(&n.technician),
            Some(json!({ "reason": "supplier notice 43" })),
        )),
        (503, "control_busy".into())
    );
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"],
        "running"
    );
    assert_eq!(op(&n, "GET", "/v1/status", None)["session"]["id"], id);
    assert_eq!(
        op(&n, "GET", "/v1/cartridges/C-0017", None)["lot_recalled"],
        false
    );
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        true
    );
    tech(&n, "POST", "/v1/sim/inject", Some(fail_once));
    assert_eq!(
        refusal(call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/end"),
            Some(&n.operator),
            Some(json!({ "reason": "treatment complete" })),
        )),
        (503, "control_busy".into())
    );
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"],
        "running"
    );
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        true
    );
    let r = tech(
        &n,
        "POST",
        "/v1/lots/LOT-Q/recall",
        Some(json!({ "reason": "supplier notice 43" })),
    );
    assert_eq!(r["in_use"], json!(["C-0017"]));
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{id}"), None)["state"],
        "ended"
    );
    assert_eq!(
        tech(&n, "GET", "/v1/sim/truth", None)["motor_powered"],
        false
    );
}

/// Clearing faults with a reason the ledger refuses for the override event clears nothing:
/// the fault stays latched and no event claims an override; a good reason then clears it and
/// the override is on record.
#[test]
fn clear_faults_with_a_reason_the_ledger_refuses_clears_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    // Released only once the controller has latched the press: a press and a release both
    // injected between two control ticks (a late tick on a busy machine) are never seen.
    let estop = |pressed: bool| {
        tech(
            &n,
            "POST",
            "/v1/sim/inject",
            Some(json!({ "action": "estop", "pressed": pressed })),
        )
    };
    estop(true);
    wait_for(&n, "the E-stop seen", |s| s["state"] == "EStop");
    estop(false);
    wait_for(&n, "the latched E-stop fault", |s| s["state"] == "Fault");
    let overrides = |n: &Needled| {
        op(n, "GET", "/v1/events?after=0&limit=1000", None)["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "override")
            .count()
    };
    let long = "r".repeat(needled::store::MAX_REASON_CHARS + 1);
    for reason in [long.as_str(), "bell\u{7}"] {
        assert_eq!(
            refusal(call(
                &n,
                "POST",
                "/v1/faults/clear",
                Some(&n.operator),
                Some(json!({ "reason": reason })),
            )),
            (400, "invalid_input".into())
        );
        let s = op(&n, "GET", "/v1/status", None);
        assert_eq!(s["state"], "Fault", "cleared by a refused request: {s}");
        assert!(
            s["faults"].as_array().unwrap().iter().any(|f| f == "estop"),
            "{s}"
        );
        assert_eq!(overrides(&n), 0);
    }
    op(
        &n,
        "POST",
        "/v1/faults/clear",
        Some(json!({ "reason": "E-stop test finished" })),
    );
    assert_ne!(op(&n, "GET", "/v1/status", None)["state"], "Fault");
    assert_eq!(overrides(&n), 1);
}

#[test]
fn incomplete_checklist_is_completed_before_arming_and_keeps_the_cartridge() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    // Created with one answer of the seven required: bound, but arming is refused.
    let id = op(
        &n,
        "POST",
        "/v1/sessions",
        Some(json!({
            "operator": "dr-test", "subject_ref": "subject-chk", "area": "face",
            "checklist": { "consent": true }
        })),
    )["id"]
        .as_i64()
        .unwrap();
    seat(&n, &make_tag(&n, "C-CHK", "LOT-CHK", "2099-12-31"));
    op(&n, "POST", &format!("/v1/sessions/{id}/cartridge"), None);
    let arm = || {
        call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/arm"),
            Some(&n.operator),
            Some(json!({ "depth_um": 500, "rate_mhz": 120000 })),
        )
    };
    assert_eq!(refusal(arm()), (409, "checklist_incomplete".into()));
    let put = |token: &str, body: Value| {
        call(
            &n,
            "PUT",
            &format!("/v1/sessions/{id}/checklist"),
            Some(token),
            Some(body),
        )
    };
    // Refusals change nothing: an unknown item, no answers, an unknown session.
    let before = op(&n, "GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(
        refusal(put(
            &n.operator,
            json!({ "checklist": { "no_eczema": true, "bogus": true } })
        )),
        (400, "unknown_checklist_item".into())
    );
    assert_eq!(
        refusal(put(&n.operator, json!({ "checklist": {} }))),
        (400, "invalid_request".into())
    );
    assert_eq!(
        refusal(call(
            &n,
            "PUT",
            "/v1/sessions/999999/checklist",
            Some(&n.operator),
            Some(json!({ "checklist": { "consent": true } })),
        )),
        (404, "not_found".into())
    );
    assert_eq!(op(&n, "GET", &format!("/v1/sessions/{id}"), None), before);
    // Part of the rest: still refused; then the rest, by another person: armed.
    let (status, partial) = put(&n.operator, json!({ "checklist": { "no_eczema": true } }));
    assert_eq!(status, 200, "{partial}");
    assert_eq!(refusal(arm()), (409, "checklist_incomplete".into()));
    let rest: serde_json::Map<String, Value> = [
        "no_active_acne",
        "no_rosacea",
        "no_keloid_history",
        "no_sunburn_or_tan",
        "no_recent_actives",
    ]
    .iter()
    .map(|id| (id.to_string(), Value::Bool(true)))
    .collect();
    let (status, done) = put(&n.technician, json!({ "checklist": rest }));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "bound", "{done}");
    let (status, armed) = arm();
    assert_eq!(status, 200, "{armed}");
    assert_eq!(armed["state"], "armed", "{armed}");
    // Each update is an event with its actor; armed, the checklist is frozen.
    let events = op(&n, "GET", "/v1/events?after=0&limit=1000", None)["events"].clone();
    let updates: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "checklist_updated" && e["session_id"] == id)
        .collect();
    assert_eq!(updates.len(), 2, "{events}");
    assert_ne!(updates[0]["actor"], updates[1]["actor"], "{updates:?}");
    assert_eq!(
        refusal(put(
            &n.operator,
            json!({ "checklist": { "numbing": true } })
        )),
        (409, "session_wrong_state".into())
    );
}

/// Found by schemathesis: the document says the end body is optional, and JSON `null` is the
/// absence of one; it was refused with 400 `invalid_request`.
#[test]
fn end_with_a_null_body_ends_the_session_as_with_none() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let id = create(&n, "subj-null-end", "face");
    let (status, v) = call(
        &n,
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(&n.operator),
        Some(Value::Null),
    );
    assert_eq!(status, 200, "{v}");
    let other = create(&n, "subj-none-end", "face");
    let w = op(&n, "POST", &format!("/v1/sessions/{other}/end"), None);
    assert_eq!(v["state"], w["state"]);
    assert_eq!(v["end_reason"], "ended by the operator");
    assert_eq!(w["end_reason"], "ended by the operator");
}

/// serde reads a struct from an array of its fields too; the API takes objects only, so an
/// array body is refused and changes nothing (schemathesis found `[]` ending a session).
#[test]
fn a_body_that_is_not_an_object_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let id = create(&n, "subj-array-end", "face");
    for body in [json!([]), json!(["changed my mind"]), json!(7)] {
        let (status, v) = call(
            &n,
            "POST",
            &format!("/v1/sessions/{id}/end"),
            Some(&n.operator),
            Some(body.clone()),
        );
        assert_eq!(status, 400, "end with {body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        let (status, v) = call(
            &n,
            "POST",
            "/v1/faults/clear",
            Some(&n.operator),
            Some(body.clone()),
        );
        assert_eq!(status, 400, "faults/clear with {body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    }
    let s = op(&n, "GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(
        s["state"], "created",
        "a refused end changed the session: {s}"
    );
    assert!(s["end_reason"].is_null());
}
