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
