//! The typed client (needle-client) against the real service: every answer decodes as the
//! contract's type, refusals carry their `ErrorCode`, the SSE stream reads as
//! `TelemetryEvent`s, and the harness restarts needled on the same port.

mod common;

use needle_api::{CreateSession, ErrorCode, SessionState, SimAction};

fn checklist() -> std::collections::BTreeMap<String, bool> {
    let config = needled::config::parse("", "defaults").unwrap();
    config
        .session
        .checklist
        .iter()
        .map(|c| (c.id.clone(), true))
        .collect()
}

#[test]
fn typed_client_decodes_every_answer_and_refusals_carry_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    let op = n.operator_client();
    let tech = n.technician_client();

    assert_eq!(op.health().unwrap().status, needle_api::HealthStatus::Ok);
    let status = op.status().unwrap();
    assert_eq!(status.backend, needle_api::Backend::Sim);
    assert!(status.session.is_none());
    assert_eq!(op.version().unwrap().backend, "sim");
    assert_eq!(op.openapi().unwrap()["openapi"], "3.1.0");

    // A refusal: the code as the enum, and nothing changed.
    let e = op
        .create_session(&CreateSession {
            operator: Some("dr-test".into()),
            subject_ref: "subj-1".into(),
            area: "elbow".into(),
            checklist: checklist(),
            override_reason: None,
            plan_id: None,
        })
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(400), Some(ErrorCode::UnknownArea))
    );
    assert!(op.status().unwrap().session.is_none());

    let session = op
        .create_session(&CreateSession {
            operator: Some("dr-test".into()),
            subject_ref: "subj-1".into(),
            area: "face".into(),
            checklist: checklist(),
            override_reason: None,
            plan_id: None,
        })
        .unwrap();
    assert_eq!(session.state, SessionState::Created);
    assert_eq!(op.session(session.id).unwrap(), session);
    // No cartridge is seated: binding is refused with its code.
    let e = op.bind_cartridge(session.id).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::CartridgeMissing), "{e}");
    // Operators may not drive the sim.
    let e = op.sim_truth().unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(403), Some(ErrorCode::Forbidden))
    );

    let injected = tech
        .sim_inject(&SimAction::Pedal { pressed: false })
        .unwrap();
    assert!(injected.ok);
    let truth = tech.sim_truth().unwrap();
    assert_eq!(truth.strokes, 0);
    assert!(truth.sim_time_us >= injected.applied_at_us);

    let ended = op.end(session.id, Some("test over")).unwrap();
    assert!(matches!(
        ended.state,
        SessionState::Ended | SessionState::Aborted
    ));
    let report = op.report(session.id).unwrap();
    assert_eq!(report.session_id, session.id);
    assert!(!report.post_care.is_empty());
    let events = op.events(0, 1000).unwrap();
    assert!(events
        .events
        .iter()
        .any(|e| e.session_id == Some(session.id)));

    // The SSE stream: typed events from the controller's clock, in order.
    let mut stream = op.telemetry().unwrap();
    let first = stream.next().unwrap().unwrap();
    let second = stream.next().unwrap().unwrap();
    assert!(second.telemetry.controller_time_us > first.telemetry.controller_time_us);
    assert_eq!(first.session, None);
}

#[test]
fn typed_client_covers_plans_numbing_records_and_people() {
    let dir = tempfile::tempdir().unwrap();
    let n = common::start(dir.path(), common::CI_CONFIG);
    let op = n.operator_client();
    let tech = n.technician_client();

    let planned = needle_api::PlannedSession {
        depth_um: 500,
        rate_mhz: 120_000,
    };
    let create = needle_api::CreatePlan {
        subject_ref: "subj plan/1".into(),
        areas: vec!["face".into()],
        min_days: 28,
        max_days: 42,
        sessions: vec![planned; 3],
        reason: Some("acne scars, series of three".into()),
    };
    // Plans are a technician's: the operator's refusal carries its code.
    let e = op.create_plan(&create).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(403), Some(ErrorCode::Forbidden))
    );
    let plan = tech.create_plan(&create).unwrap();
    assert_eq!(plan.plan.subject_ref, "subj plan/1");
    assert_eq!((plan.done, plan.total), (0, 3));
    assert_eq!(op.plan(plan.plan.id).unwrap(), plan);
    // The subject reference travels escaped in the query.
    assert_eq!(op.plans("subj plan/1").unwrap().plans, vec![plan.clone()]);
    assert!(op.plans("someone else").unwrap().plans.is_empty());
    let changed = tech
        .change_plan(
            plan.plan.id,
            &needle_api::ChangePlan {
                reason: "a longer window".into(),
                min_days: None,
                max_days: Some(56),
                sessions: None,
            },
        )
        .unwrap();
    assert_eq!(changed.plan.max_days, 56);

    // A session of the plan: its numbing wait, and its printed record.
    let session = op
        .create_session(&CreateSession {
            operator: None,
            subject_ref: "subj plan/1".into(),
            area: "face".into(),
            checklist: checklist(),
            override_reason: None,
            plan_id: Some(plan.plan.id),
        })
        .unwrap();
    assert_eq!(op.numbing(session.id).unwrap().ready_at_ms, None);
    let numbing = op.apply_numbing(session.id).unwrap();
    assert_eq!(numbing.session_id, session.id);
    assert!(
        numbing.ready_at_ms.is_some() && numbing.wait_left_ms > 0,
        "{numbing:?}"
    );
    assert!(op
        .session_record(session.id)
        .unwrap()
        .starts_with("<!doctype html>"));
    assert!(op
        .plan_record(plan.plan.id)
        .unwrap()
        .starts_with("<!doctype html>"));
    op.end(session.id, Some("test over")).unwrap();
    let stopped = tech.stop_plan(plan.plan.id, "series cancelled").unwrap();
    assert_eq!(stopped.plan.state, needle_api::PlanState::Stopped);
    let e = op.numbing(999_999).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), Some(ErrorCode::NotFound)),
        "{e}"
    );

    // People: a new person's token works, and revoking them is final.
    let new = tech
        .add_person(&needle_api::NewPerson {
            name: "dr anna".into(),
            role: needle_api::Role::Operator,
        })
        .unwrap();
    assert!(tech
        .people()
        .unwrap()
        .people
        .iter()
        .any(|p| p.name == "dr anna"));
    let anna = op.as_token(new.token.clone());
    assert!(anna.status().is_ok());
    let revoked = tech.revoke_person("dr anna").unwrap();
    assert_eq!((revoked.name.as_str(), revoked.revoked), ("dr anna", true));
    assert_eq!(anna.status().unwrap_err().status(), Some(401));
    let e = op.people().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
}

#[test]
fn harness_restarts_needled_on_the_same_port_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = common::start(dir.path(), common::CI_CONFIG);
    let base = n.running.base();
    let first_pid = n.pid();
    let id = n
        .operator_client()
        .create_session(&CreateSession {
            operator: Some("dr-test".into()),
            subject_ref: "subj-restart".into(),
            area: "face".into(),
            checklist: checklist(),
            override_reason: None,
            plan_id: None,
        })
        .unwrap()
        .id;
    // SIGKILL, then the same launch on the same address.
    n.running.restart().unwrap();
    assert_eq!(n.running.base(), base);
    assert_ne!(n.pid(), first_pid, "a new process");
    // The session left open by the kill is aborted on start, and still there.
    let s = n.operator_client().session(id).unwrap();
    assert_eq!(s.state, SessionState::Aborted);
    // SIGTERM: a clean stop, exit status 0; stopping twice is refused.
    let status = n.running.terminate().unwrap();
    assert!(status.success(), "needled's exit on SIGTERM: {status}");
    assert!(n.running.terminate().is_err());
    assert!(n.running.kill().is_none());
}

#[test]
fn harness_starts_needled_off_loopback_with_an_https_base_and_a_pinned_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("test.toml");
    std::fs::write(&config, common::CI_CONFIG).unwrap();
    let log = dir.path().join("needled.log");
    let running =
        needle_client::harness::Launch::new(env!("CARGO_BIN_EXE_needled"), &config, dir.path())
            .bind("0.0.0.0:0")
            .log(&log)
            .start()
            .unwrap();
    assert_eq!(running.scheme, "https");
    assert!(
        running.address.starts_with("0.0.0.0:"),
        "{}",
        running.address
    );
    // Bound to all interfaces, reached through loopback.
    let https = format!("https://127.0.0.1:{}", running.port().unwrap());
    assert_eq!(running.base(), https);
    let fp = running
        .tls_sha256
        .clone()
        .expect("its certificate's fingerprint");
    assert_eq!(
        fp,
        needled::tls::file_fingerprint(&dir.path().join("tls-cert.pem")).unwrap()
    );
    assert_eq!(running.log_path(), Some(log.as_path()));
    // The harness's own client is pinned to that fingerprint; so is one made here.
    assert!(running.client("operator").unwrap().status().is_ok());
    let token = running.token("technician").unwrap();
    let pinned = needle_client::Client::builder(&https, &token)
        .tls(needle_client::Tls::Sha256(fp))
        .build()
        .unwrap();
    assert!(pinned.status().is_ok());
    // Another pin is refused before any request is sent.
    let wrong = needle_client::Client::builder(&https, &token)
        .tls(needle_client::Tls::Sha256("00".repeat(32)))
        .build()
        .unwrap();
    assert!(matches!(
        wrong.status(),
        Err(needle_client::Error::Transport(_))
    ));
}
