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
fn harness_restarts_needled_on_the_same_port_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let first = common::start(dir.path(), common::CI_CONFIG);
    let address = first.base.trim_start_matches("http://").to_string();
    let id = first
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
    drop(first);
    let second = common::start_on(dir.path(), common::CI_CONFIG, &address);
    assert_eq!(second.base, format!("http://{address}"));
    // The session left open by the kill is aborted on start, and still there.
    let s = second.operator_client().session(id).unwrap();
    assert_eq!(s.state, SessionState::Aborted);
}
