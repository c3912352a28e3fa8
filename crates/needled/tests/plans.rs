//! Treatment plans, the numbing wait and the printable record, against the real needled on
//! the sim backend. Dates are faked with the sim's wall-clock step (the service's calendar is
//! its installed clock): a plan is followed over weeks in seconds, and the numbing wait is
//! passed by stepping the clock, never by sleeping 20 minutes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Needled;

const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy)]
enum Who {
    Operator,
    Technician,
}

fn send(n: &Needled, who: Who, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = match who {
        Who::Operator => &n.operator,
        Who::Technician => &n.technician,
    };
    common::call_as(n, method, path, Some(token), body, Duration::from_secs(20))
}

fn ok(n: &Needled, who: Who, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = send(n, who, method, path, body);
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

/// Asserts a refusal with `status` and `code`.
fn refused(
    n: &Needled,
    who: Who,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) {
    let (got, v) = send(n, who, method, path, body);
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (status, Some(code)),
        "{method} {path}: {v}"
    );
}

fn wait_for(n: &Needled, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ok(n, Who::Operator, "GET", "/v1/status", None);
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(data: &Path) -> Needled {
    common::start(data, common::CI_CONFIG)
}

/// Every required checklist item confirmed (numbing is a timed step of its own).
fn checklist() -> Value {
    let config = needled::config::parse("", "defaults").unwrap();
    Value::Object(
        config
            .session
            .checklist
            .iter()
            .filter(|c| c.required)
            .map(|c| (c.id.clone(), Value::Bool(true)))
            .collect(),
    )
}

/// A needled on a fresh data directory, its depth axis homed.
fn homed() -> (tempfile::TempDir, Needled) {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    home(&n);
    (dir, n)
}

fn home(n: &Needled) {
    ok(n, Who::Operator, "POST", "/v1/home", None);
    wait_for(n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
}

fn step_days(n: &Needled, days: i64) {
    ok(
        n,
        Who::Technician,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "step_wall_clock", "ms": days * DAY_MS })),
    );
}

fn plan_body(subject: &str, depths: &[u32]) -> Value {
    let sessions: Vec<Value> = depths
        .iter()
        .map(|d| json!({ "depth_um": d, "rate_mhz": 100_000 }))
        .collect();
    json!({ "subject_ref": subject, "areas": ["face"], "min_days": 28, "max_days": 42,
            "sessions": sessions, "reason": "acne scars, series of three" })
}

fn create_plan(n: &Needled, subject: &str, depths: &[u32]) -> i64 {
    let v = ok(
        n,
        Who::Technician,
        "POST",
        "/v1/plans",
        Some(plan_body(subject, depths)),
    );
    v["id"].as_i64().unwrap()
}

fn session_body(subject: &str, plan: i64) -> Value {
    json!({ "operator": "dr-plan", "subject_ref": subject, "area": "face",
            "checklist": checklist(), "plan_id": plan })
}

/// Creates session in `plan`, binds a fresh cartridge; returns its id.
fn bound(n: &Needled, subject: &str, plan: i64, cartridge: &str) -> i64 {
    let s = ok(
        n,
        Who::Operator,
        "POST",
        "/v1/sessions",
        Some(session_body(subject, plan)),
    );
    let id = s["id"].as_i64().unwrap();
    bind(n, id, cartridge);
    id
}

fn bind(n: &Needled, id: i64, cartridge: &str) {
    ok(
        n,
        Who::Technician,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "seat_new_cartridge", "id": cartridge, "lot": "LOT-P" })),
    );
    ok(
        n,
        Who::Operator,
        "POST",
        &format!("/v1/sessions/{id}/cartridge"),
        None,
    );
}

/// Arms at `depth`, runs until the rig strokes, ends.
fn run_and_end(n: &Needled, id: i64, depth: u32, override_reason: Option<&str>) {
    let mut body = json!({ "depth_um": depth, "rate_mhz": 100_000 });
    let who = match override_reason {
        Some(r) => {
            body["override_reason"] = json!(r);
            Who::Technician
        }
        None => Who::Operator,
    };
    ok(
        n,
        who,
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(body),
    );
    wait_for(n, "armed", |s| {
        s["state"] == "Armed" && s["depth"]["moving"] == false
    });
    ok(
        n,
        Who::Operator,
        "POST",
        &format!("/v1/sessions/{id}/start"),
        None,
    );
    wait_for(n, "running", |s| s["state"] == "Running");
    ok(
        n,
        Who::Operator,
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(json!({ "reason": "treatment complete" })),
    );
}

fn plan(n: &Needled, id: i64) -> Value {
    ok(n, Who::Operator, "GET", &format!("/v1/plans/{id}"), None)
}

fn statuses(p: &Value) -> Vec<String> {
    p["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_plan_is_followed_to_completion_across_faked_dates() {
    let (_dir, n) = homed();
    let depths = [500, 750, 1_000];
    let id = create_plan(&n, "subj-series", &depths);
    let p = plan(&n, id);
    assert_eq!(statuses(&p), ["due", "planned", "planned"]);
    assert_eq!(
        p["created_by"], "technician",
        "the creator is the token's name: {p}"
    );
    for (i, depth) in depths.iter().enumerate() {
        let s = bound(&n, "subj-series", id, &format!("CART-S{i}"));
        run_and_end(&n, s, *depth, None);
        let report = ok(
            &n,
            Who::Operator,
            "GET",
            &format!("/v1/sessions/{s}/report"),
            None,
        );
        assert_eq!(report["plan"]["n"], i + 1, "{report}");
        assert_eq!(report["plan"]["total"], 3);
        assert_eq!(report["plan"]["planned_depth_um"], *depth);
        let p = plan(&n, id);
        assert_eq!(p["done"], i + 1, "{p}");
        if i < 2 {
            // The next window opens 28 days after this session started, closes at 42.
            let started = report["started_at_ms"].as_i64().unwrap();
            assert_eq!(p["next_window"]["opens_at_ms"], started + 28 * DAY_MS);
            assert_eq!(p["next_window"]["closes_at_ms"], started + 42 * DAY_MS);
            assert_eq!(
                report["plan"]["next_window_opens_at_ms"],
                started + 28 * DAY_MS
            );
            assert_eq!(statuses(&p)[i + 1], "upcoming");
            step_days(&n, 30);
            assert_eq!(statuses(&plan(&n, id))[i + 1], "due");
        }
    }
    let p = plan(&n, id);
    assert_eq!(p["status"], "complete", "{p}");
    assert_eq!(statuses(&p), ["done", "done", "done"]);
    assert!(p["next_window"].is_null());
    // The CSV report carries the plan context on every row.
    let last = p["history"][2]["session"]["id"].as_i64().unwrap();
    let csv = n
        .operator_client()
        .text(
            "GET",
            &format!("/v1/sessions/{last}/report?format=csv"),
            None,
        )
        .unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(
        ",plan_id,plan_session,plan_sessions,next_window_opens_at_ms,next_window_closes_at_ms"
    ));
    for row in lines {
        assert!(row.ends_with(&format!(",{id},3,3,,")), "{row}");
    }
    // The plan's printable record: its summary and history, then each session's record.
    // Raw ureq: the test reads the content type, which the client does not return.
    let resp = ureq::get(&format!("{}/v1/plans/{id}/record", n.base))
        .set("Authorization", &format!("Bearer {}", n.operator))
        .call()
        .unwrap();
    assert!(resp.content_type().starts_with("text/html"));
    let html = resp.into_string().unwrap();
    assert!(html.contains("id=\"plan-history\""), "{html}");
    assert!(html.contains("3 of 3 done; plan complete"), "{html}");
    assert_eq!(html.matches("<section class=\"session\"").count(), 3);
    assert_eq!(html.matches("<svg id=\"plot\"").count(), 3);
    assert!(
        html.contains("CART-S2 (LOT-P)"),
        "the history names each cartridge and lot"
    );
    // A complete plan takes no fourth session, and nothing was created by asking.
    step_days(&n, 30);
    refused(
        &n,
        Who::Operator,
        "POST",
        "/v1/sessions",
        Some(session_body("subj-series", id)),
        409,
        "plan_complete",
    );
    assert_eq!(plan(&n, id)["history"].as_array().unwrap().len(), 3);
    // An overdue slot: a second plan whose next window closed.
    let late = create_plan(&n, "subj-late", &[500, 500]);
    let s = bound(&n, "subj-late", late, "CART-L0");
    run_and_end(&n, s, 500, None);
    step_days(&n, 30);
    step_days(&n, 13);
    assert_eq!(statuses(&plan(&n, late)), ["done", "overdue"]);
}

#[test]
fn an_early_session_is_refused_then_overridden_by_a_technician_with_a_reason() {
    let (_dir, n) = homed();
    let id = create_plan(&n, "subj-early", &[500, 600]);
    let s1 = bound(&n, "subj-early", id, "CART-E0");
    run_and_end(&n, s1, 500, None);
    step_days(&n, 10);
    let before = plan(&n, id);
    refused(
        &n,
        Who::Operator,
        "POST",
        "/v1/sessions",
        Some(session_body("subj-early", id)),
        409,
        "plan_window_not_open",
    );
    let mut body = session_body("subj-early", id);
    body["override_reason"] = json!("subject travels abroad next month");
    refused(
        &n,
        Who::Operator,
        "POST",
        "/v1/sessions",
        Some(body.clone()),
        403,
        "forbidden",
    );
    assert_eq!(plan(&n, id), before, "a refusal changes nothing");
    let s2 = ok(&n, Who::Technician, "POST", "/v1/sessions", Some(body));
    let s2 = s2["id"].as_i64().unwrap();
    let report = ok(
        &n,
        Who::Operator,
        "GET",
        &format!("/v1/sessions/{s2}/report"),
        None,
    );
    let overrides = report["overrides"].as_array().unwrap();
    assert!(
        overrides
            .iter()
            .any(|o| o["detail"]["action"] == "plan_window"
                && o["reason"] == "subject travels abroad next month"
                && o["actor"] == "technician"),
        "{report}"
    );
    let p = plan(&n, id);
    assert!(p["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "plan_override"));
    assert_eq!(statuses(&p), ["done", "in_progress"]);
}

#[test]
fn arming_deeper_than_planned_is_refused_and_changes_nothing_without_an_override() {
    let (_dir, n) = homed();
    let id = create_plan(&n, "subj-deep", &[500, 600]);
    let s = bound(&n, "subj-deep", id, "CART-D0");
    let arm = format!("/v1/sessions/{s}/arm");
    let deep = json!({ "depth_um": 800, "rate_mhz": 100_000 });
    refused(
        &n,
        Who::Operator,
        "POST",
        &arm,
        Some(deep.clone()),
        409,
        "depth_above_plan",
    );
    let mut with_reason = deep.clone();
    with_reason["override_reason"] = json!("thicker scar tissue than assessed");
    refused(
        &n,
        Who::Operator,
        "POST",
        &arm,
        Some(with_reason.clone()),
        403,
        "forbidden",
    );
    let session = ok(&n, Who::Operator, "GET", &format!("/v1/sessions/{s}"), None);
    assert_eq!(session["state"], "bound", "{session}");
    let status = ok(&n, Who::Operator, "GET", "/v1/status", None);
    assert_eq!(status["state"], "Idle", "the rig was never armed: {status}");
    // At the planned depth the operator arms alone; deeper later needs the override too.
    ok(&n, Who::Technician, "POST", &arm, Some(with_reason));
    wait_for(&n, "armed", |s| s["state"] == "Armed");
    let report = ok(
        &n,
        Who::Operator,
        "GET",
        &format!("/v1/sessions/{s}/report"),
        None,
    );
    assert!(report["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["detail"]["action"] == "depth_above_plan"
            && o["detail"]["planned_depth_um"] == 500));
    let set = format!("/v1/sessions/{s}/setpoints");
    let (status, v) = send(
        &n,
        Who::Operator,
        "PUT",
        &set,
        Some(json!({ "depth_um": 900 })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("depth_above_plan")),
        "{v}"
    );
}

#[test]
fn a_stopped_plan_is_frozen_and_takes_no_more_sessions() {
    let (_dir, n) = homed();
    let id = create_plan(&n, "subj-stop", &[500, 500, 500]);
    let s = bound(&n, "subj-stop", id, "CART-T0");
    let stop = format!("/v1/plans/{id}/stop");
    refused(
        &n,
        Who::Technician,
        "POST",
        &stop,
        Some(json!({ "reason": "x" })),
        409,
        "plan_session_open",
    );
    run_and_end(&n, s, 500, None);
    refused(
        &n,
        Who::Operator,
        "POST",
        &stop,
        Some(json!({ "reason": "reaction" })),
        403,
        "forbidden",
    );
    refused(
        &n,
        Who::Technician,
        "POST",
        &stop,
        Some(json!({ "reason": "  " })),
        400,
        "reason_required",
    );
    refused(
        &n,
        Who::Technician,
        "POST",
        &stop,
        Some(json!({})),
        400,
        "invalid_request",
    );
    let p = ok(
        &n,
        Who::Technician,
        "POST",
        &stop,
        Some(json!({ "reason": "post-inflammatory pigmentation" })),
    );
    assert_eq!(p["status"], "stopped");
    assert_eq!(p["stop_reason"], "post-inflammatory pigmentation");
    assert_eq!(statuses(&p), ["done", "not_given", "not_given"]);
    step_days(&n, 30);
    refused(
        &n,
        Who::Operator,
        "POST",
        "/v1/sessions",
        Some(session_body("subj-stop", id)),
        409,
        "plan_stopped",
    );
    refused(
        &n,
        Who::Technician,
        "POST",
        &format!("/v1/plans/{id}/change"),
        Some(json!({ "reason": "r", "max_days": 60 })),
        409,
        "plan_stopped",
    );
    refused(
        &n,
        Who::Technician,
        "POST",
        &stop,
        Some(json!({ "reason": "again" })),
        409,
        "plan_stopped",
    );
    assert_eq!(
        plan(&n, id)["events"].as_array().unwrap().len(),
        3,
        "created, session, stopped"
    );
}

#[test]
fn arming_waits_for_the_numbing_unless_a_technician_overrides() {
    let (_dir, n) = homed();
    let create = |subject: &str| {
        let body = json!({ "operator": "dr-numb", "subject_ref": subject, "area": "face", "checklist": checklist() });
        ok(&n, Who::Operator, "POST", "/v1/sessions", Some(body))["id"]
            .as_i64()
            .unwrap()
    };
    let s = create("subj-numb");
    let numbing = format!("/v1/sessions/{s}/numbing");
    let v = ok(&n, Who::Operator, "POST", &numbing, None);
    // The default wait, counted from the recorded moment numbing was applied.
    let report = ok(
        &n,
        Who::Operator,
        "GET",
        &format!("/v1/sessions/{s}/report"),
        None,
    );
    let applied = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "numbing_applied")
        .expect("numbing is on the record")["at_ms"]
        .as_i64()
        .unwrap();
    assert_eq!(
        v["ready_at_ms"].as_i64().unwrap() - applied,
        20 * 60_000,
        "{v}"
    );
    bind(&n, s, "CART-N0");
    let arm = format!("/v1/sessions/{s}/arm");
    let body = json!({ "depth_um": 500, "rate_mhz": 100_000 });
    refused(
        &n,
        Who::Operator,
        "POST",
        &arm,
        Some(body.clone()),
        409,
        "numbing_wait",
    );
    ok(
        &n,
        Who::Technician,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "step_wall_clock", "ms": 19 * 60_000 })),
    );
    refused(
        &n,
        Who::Operator,
        "POST",
        &arm,
        Some(body.clone()),
        409,
        "numbing_wait",
    );
    let left = ok(&n, Who::Operator, "GET", &numbing, None)["wait_left_ms"]
        .as_i64()
        .unwrap();
    assert!(left > 0 && left <= 60_000, "{left}");
    ok(
        &n,
        Who::Technician,
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "step_wall_clock", "ms": 60_000 })),
    );
    ok(&n, Who::Operator, "POST", &arm, Some(body.clone()));
    wait_for(&n, "armed", |s| s["state"] == "Armed");
    refused(
        &n,
        Who::Operator,
        "POST",
        &numbing,
        None,
        409,
        "session_wrong_state",
    );
    ok(
        &n,
        Who::Operator,
        "POST",
        &format!("/v1/sessions/{s}/end"),
        None,
    );

    // A second session: overridden by a technician with a reason, on the record.
    let s = create("subj-numb-2");
    ok(
        &n,
        Who::Operator,
        "POST",
        &format!("/v1/sessions/{s}/numbing"),
        None,
    );
    bind(&n, s, "CART-N1");
    let arm = format!("/v1/sessions/{s}/arm");
    let mut with_reason = body.clone();
    with_reason["override_reason"] =
        json!("numbing applied 25 minutes before, outside the pen's view");
    refused(
        &n,
        Who::Operator,
        "POST",
        &arm,
        Some(with_reason.clone()),
        403,
        "forbidden",
    );
    ok(&n, Who::Technician, "POST", &arm, Some(with_reason));
    let report = ok(
        &n,
        Who::Operator,
        "GET",
        &format!("/v1/sessions/{s}/report"),
        None,
    );
    assert!(
        report["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["detail"]["action"] == "numbing_wait"),
        "{report}"
    );
}

#[test]
fn bad_input_to_the_plan_endpoints_gets_a_stable_code_and_changes_nothing() {
    let (_dir, n) = homed();
    let id = create_plan(&n, "subj-bad", &[500, 600]);
    let s = bound(&n, "subj-bad", id, "CART-B0");
    run_and_end(&n, s, 500, None);
    // The monitor records the controller's return to Idle a pass after the session ends:
    // wait for it, so the only events the cases below could add are their own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let idle_after_the_end = |n: &Needled| {
        let events = ok(n, Who::Operator, "GET", "/v1/events?limit=1000", None);
        let events = events["events"].as_array().unwrap().clone();
        let end = events.iter().rposition(|e| e["kind"] == "cartridge_spent");
        end.is_some_and(|end| {
            events[end..]
                .iter()
                .any(|e| e["kind"] == "controller_state" && e["detail"]["state"] == "Idle")
        })
    };
    while !idle_after_the_end(&n) {
        assert!(
            Instant::now() < deadline,
            "the controller's Idle was never recorded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = |n: &Needled| {
        (
            ok(
                n,
                Who::Operator,
                "GET",
                "/v1/plans?subject_ref=subj-bad",
                None,
            ),
            ok(n, Who::Operator, "GET", "/v1/events?limit=1000", None)["events"]
                .as_array()
                .unwrap()
                .len(),
            ok(n, Who::Operator, "GET", "/v1/plans?subject_ref=other", None),
        )
    };
    let before = snapshot(&n);
    let body = |f: &dyn Fn(&mut Value)| {
        let mut b = plan_body("subj-bad", &[500]);
        f(&mut b);
        Some(b)
    };
    type Case = (Who, &'static str, String, Option<Value>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            Who::Operator,
            "POST",
            "/v1/plans".into(),
            body(&|_| {}),
            403,
            "forbidden",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["bogus"] = json!(1)),
            400,
            "invalid_request",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["areas"] = json!(["elbow"])),
            400,
            "unknown_area",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["sessions"] = json!([{ "depth_um": 1_600, "rate_mhz": 100_000 }])),
            400,
            "depth_above_area_ceiling",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["sessions"] = json!([{ "depth_um": 500, "rate_mhz": 1 }])),
            400,
            "rate_out_of_range",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["sessions"] = json!([])),
            400,
            "invalid_input",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["min_days"] = json!(50)),
            400,
            "invalid_input",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["subject_ref"] = json!("")),
            400,
            "invalid_input",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans".into(),
            body(&|b| b["reason"] = json!(" ")),
            400,
            "reason_required",
        ),
        (
            Who::Operator,
            "GET",
            "/v1/plans/999".into(),
            None,
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "GET",
            "/v1/plans/abc".into(),
            None,
            400,
            "invalid_path",
        ),
        (
            Who::Operator,
            "GET",
            "/v1/plans".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            Who::Technician,
            "POST",
            format!("/v1/plans/{id}/change"),
            Some(json!({ "reason": " ", "max_days": 50 })),
            400,
            "reason_required",
        ),
        (
            Who::Technician,
            "POST",
            format!("/v1/plans/{id}/change"),
            Some(
                json!({ "reason": "r", "sessions": [{ "depth_um": 400, "rate_mhz": 100_000 }, { "depth_um": 600, "rate_mhz": 100_000 }] }),
            ),
            409,
            "plan_session_done",
        ),
        (
            Who::Technician,
            "POST",
            format!("/v1/plans/{id}/change"),
            Some(
                json!({ "reason": "r", "sessions": [{ "depth_um": 500, "rate_mhz": 100_000 }, { "depth_um": 2_000, "rate_mhz": 100_000 }] }),
            ),
            400,
            "depth_above_area_ceiling",
        ),
        (
            Who::Technician,
            "POST",
            format!("/v1/plans/{id}/change"),
            Some(json!({ "reason": "r", "min_days": 60 })),
            400,
            "invalid_input",
        ),
        (
            Who::Operator,
            "POST",
            format!("/v1/plans/{id}/change"),
            Some(json!({ "reason": "r", "max_days": 50 })),
            403,
            "forbidden",
        ),
        (
            Who::Technician,
            "POST",
            "/v1/plans/999/stop".into(),
            Some(json!({ "reason": "r" })),
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "GET",
            "/v1/plans/999/record".into(),
            None,
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "GET",
            "/v1/sessions/999/record".into(),
            None,
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/sessions/999/numbing".into(),
            None,
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/sessions".into(),
            Some(session_body("subj-bad", 999)),
            404,
            "not_found",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/sessions".into(),
            Some(session_body("other", id)),
            409,
            "plan_subject_mismatch",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/sessions".into(),
            Some({
                let mut b = session_body("subj-bad", id);
                b["area"] = json!("neck");
                b
            }),
            409,
            "plan_area",
        ),
        (
            Who::Operator,
            "POST",
            "/v1/sessions".into(),
            Some(session_body("subj-bad", id)),
            409,
            "plan_window_not_open",
        ),
    ];
    for (who, method, path, body, status, code) in cases {
        refused(&n, who, method, &path, body, status, code);
        assert_eq!(snapshot(&n), before, "{method} {path} changed something");
    }
}
