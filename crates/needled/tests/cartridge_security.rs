//! Cartridges no one can forge, clone or reuse (`docs/cartridge-security.md`): the real
//! needled on the sim backend, as child processes with their own data directories, driven over
//! HTTP. Every refusal has its stable code and leaves no trace: nothing bound, no ledger row,
//! the chip's use counter where it was.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use needled::cartridge::{self, FactoryKey, Needles, Provisioned, TagData};
use serde_json::{json, Value};

use common::{call, Needled};

fn start(data: &Path) -> Needled {
    common::start(data, common::CI_CONFIG)
}

fn op(n: &Needled, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(n, method, path, &n.operator, body);
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

fn tech(n: &Needled, body: Value) -> Value {
    let (status, v) = call(n, "POST", "/v1/sim/inject", &n.technician, Some(body));
    assert!(status < 300, "inject: {status} {v}");
    v
}

/// The stable code of a refused call.
fn refused(n: &Needled, method: &str, path: &str, body: Option<Value>) -> String {
    let (status, v) = call(n, method, path, &n.operator, body);
    assert!(status >= 400, "{method} {path} was not refused: {v}");
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Waits until session `id` is in `state`.
fn wait_session(n: &Needled, id: i64, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = op(n, "GET", &format!("/v1/sessions/{id}"), None);
        if s["state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "session {id} never {state}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(n: &Needled, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = op(n, "GET", "/v1/status", None);
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

fn data(id: &str) -> TagData {
    TagData::new(
        id,
        "LOT-SEC",
        Needles::Pins12,
        "2099-12-31".parse().unwrap(),
    )
    .unwrap()
}

/// A new session in the face area, every checklist item confirmed.
fn create(n: &Needled, subject: &str) -> i64 {
    let checklist = common::all_checked();
    let body = json!({ "operator": "dr-sec", "subject_ref": subject, "area": "face", "checklist": checklist });
    op(n, "POST", "/v1/sessions", Some(body))["id"]
        .as_i64()
        .unwrap()
}

fn homed(n: &Needled) {
    op(n, "POST", "/v1/home", None);
    wait_for(n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
}

fn bind(n: &Needled, id: i64) -> (u16, Value) {
    call(
        n,
        "POST",
        &format!("/v1/sessions/{id}/cartridge"),
        &n.operator,
        None,
    )
}

/// Setpoints the face area accepts.
fn arm_body() -> Value {
    json!({ "depth_um": 300, "rate_mhz": 120_000 })
}

/// The ledger's record of cartridge `id`, or its refusal code (`not_found`).
fn ledger_row(n: &Needled, id: &str) -> Result<Value, String> {
    let (status, v) = call(n, "GET", &format!("/v1/cartridges/{id}"), &n.operator, None);
    if status < 300 {
        Ok(v)
    } else {
        Err(v["error"]["code"].as_str().unwrap_or_default().to_owned())
    }
}

/// A bind refused with `code`: nothing bound, no ledger row for `cartridge`.
fn assert_bind_refused_and_nothing_changed(n: &Needled, session: i64, cartridge: &str, code: &str) {
    let (status, v) = bind(n, session);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some(code)),
        "{v}"
    );
    let s = op(n, "GET", &format!("/v1/sessions/{session}"), None);
    assert_eq!(s["state"], "created", "{s}");
    assert_eq!(ledger_row(n, cartridge), Err("not_found".to_owned()));
}

/// Uses `made` on `n`: binds it, arms (the chip's counter goes to 1), ends the session and
/// pulls the cartridge; returns the pulled chip as the sim reports it.
fn use_and_pull(n: &Needled, made: &Provisioned, id: &str) -> Value {
    homed(n);
    let session = create(n, "subject-used");
    tech(n, made.seat_json(0));
    let (status, v) = bind(n, session);
    assert!(status < 300, "bind: {v}");
    op(
        n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(arm_body()),
    );
    op(n, "POST", &format!("/v1/sessions/{session}/end"), None);
    assert_eq!(ledger_row(n, id).unwrap()["state"], "spent");
    let pulled = tech(n, json!({ "action": "pull_cartridge" }))["pulled"].clone();
    assert_eq!(
        pulled["counter"], 1,
        "the first arming advanced the chip: {pulled}"
    );
    pulled
}

/// The injection that seats a pulled chip again, as it is (key and counter).
fn reseat(pulled: &Value) -> Value {
    json!({
        "action": "seat_cartridge",
        "tag_hex": pulled["tag_hex"],
        "chip_secret_hex": pulled["chip_secret_hex"],
        "counter": pulled["counter"],
    })
}

#[test]
fn forged_identity_without_the_factory_key_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let session = create(&n, "subject-forged");
    // A forger's key under the trusted key id, on a chip that answers for its own key.
    let forger = FactoryKey::from_secret("test-factory-1", &[0x66; 32]).unwrap();
    tech(
        &n,
        cartridge::provision(&data("C-FORGED"), &forger)
            .unwrap()
            .seat_json(0),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-FORGED", "tag_bad_signature");
    // The same forger under its own key id: an unknown signer.
    let forger = FactoryKey::from_secret("forger-1", &[0x66; 32]).unwrap();
    tech(
        &n,
        cartridge::provision(&data("C-FORGED"), &forger)
            .unwrap()
            .seat_json(0),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-FORGED", "tag_signer_unknown");
    // A version-1 (HMAC) tag of before: refused with its own code.
    let mut v1 = cartridge::provision_test(&data("C-V1")).unwrap();
    v1.tag[4] = 1;
    tech(&n, v1.seat_json(0));
    assert_bind_refused_and_nothing_changed(&n, session, "C-V1", "tag_v1_unsupported");
}

#[test]
fn tag_signed_by_a_revoked_key_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[cartridge]\nrevoked_keys = [\"test-factory-1\"]\n",
        common::CI_CONFIG
    );
    let n = common::start(dir.path(), &config);
    let session = create(&n, "subject-revoked");
    tech(
        &n,
        cartridge::provision_test(&data("C-REVOKED"))
            .unwrap()
            .seat_json(0),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-REVOKED", "tag_signer_revoked");
}

#[test]
fn cloned_chip_memory_without_the_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let session = create(&n, "subject-clone");
    let genuine = cartridge::provision_test(&data("C-CLONED")).unwrap();
    // A byte-for-byte copy of the readable memory on a part without a key.
    tech(
        &n,
        json!({ "action": "seat_cartridge", "tag_hex": genuine.tag_hex() }),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-CLONED", "chip_challenge_failed");
    // The copy on a chip with a key of its own (not the one the factory signed).
    let other = cartridge::provision_test(&data("C-OTHER")).unwrap();
    tech(
        &n,
        json!({ "action": "seat_cartridge", "tag_hex": genuine.tag_hex(), "chip_secret_hex": other.chip_secret_hex() }),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-CLONED", "chip_challenge_failed");
    // The genuine chip binds.
    tech(&n, genuine.seat_json(0));
    assert!(bind(&n, session).0 < 300);
}

#[test]
fn replayed_challenge_answer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    let session = create(&n, "subject-replay");
    let genuine = cartridge::provision_test(&data("C-REPLAY")).unwrap();
    // The genuine chip's answer to one challenge, recorded (here: asked directly).
    let recorded_nonce = [0x5A; cartridge::NONCE_LEN];
    let chip = genuine.sim_chip(0).unwrap();
    let recorded = chip.answer(&recorded_nonce).unwrap();
    let chip_key = cartridge::parse(&genuine.tag, &{
        let f = cartridge::test_factory_key();
        let mut t = cartridge::TrustStore::new();
        t.trust(f.id(), &f.public_key()).unwrap();
        t
    })
    .unwrap()
    .chip_key()
    .to_vec();
    assert_eq!(
        cartridge::verify_answer(&chip_key, &recorded_nonce, &recorded),
        Ok(()),
        "the recorded answer is genuine"
    );
    // A part that replays it to every challenge: the pen's fresh nonce is another one.
    tech(
        &n,
        json!({ "action": "seat_cartridge", "tag_hex": genuine.tag_hex(), "replay_answer_hex": hex::encode(&recorded) }),
    );
    assert_bind_refused_and_nothing_changed(&n, session, "C-REPLAY", "chip_challenge_failed");
}

#[test]
fn used_cartridge_is_refused_on_a_second_pen_whatever_its_ledger_says() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pen_a, pen_b) = (start(dir_a.path()), start(dir_b.path()));
    let made = cartridge::provision_test(&data("C-TRAVEL")).unwrap();
    let pulled = use_and_pull(&pen_a, &made, "C-TRAVEL");
    // Pen B has never seen it: its ledger has no row, yet the chip counts the use.
    assert_eq!(ledger_row(&pen_b, "C-TRAVEL"), Err("not_found".to_owned()));
    let session = create(&pen_b, "subject-second-pen");
    tech(&pen_b, reseat(&pulled));
    assert_bind_refused_and_nothing_changed(&pen_b, session, "C-TRAVEL", "cartridge_used_on_chip");
    // A fresh cartridge still works on pen B.
    tech(
        &pen_b,
        cartridge::provision_test(&data("C-FRESH"))
            .unwrap()
            .seat_json(0),
    );
    assert!(bind(&pen_b, session).0 < 300);
}

#[test]
fn a_rolled_back_ledger_cannot_revive_a_used_cartridge() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = tempfile::tempdir().unwrap();
    let files = ["needled.db", "needled.db-wal", "needled.db-shm"];
    // The ledger before the cartridge was used, copied aside while needled is stopped.
    drop(start(dir.path()));
    for f in files {
        if dir.path().join(f).exists() {
            std::fs::copy(dir.path().join(f), snapshot.path().join(f)).unwrap();
        }
    }
    let made = cartridge::provision_test(&data("C-ROLLBACK")).unwrap();
    let pulled = {
        let n = start(dir.path());
        use_and_pull(&n, &made, "C-ROLLBACK")
    };
    // Roll the ledger back: the cartridge's record is gone.
    for f in files {
        let _ = std::fs::remove_file(dir.path().join(f));
        if snapshot.path().join(f).exists() {
            std::fs::copy(snapshot.path().join(f), dir.path().join(f)).unwrap();
        }
    }
    let n = start(dir.path());
    assert_eq!(ledger_row(&n, "C-ROLLBACK"), Err("not_found".to_owned()));
    let session = create(&n, "subject-rolled-back");
    tech(&n, reseat(&pulled));
    assert_bind_refused_and_nothing_changed(&n, session, "C-ROLLBACK", "cartridge_used_on_chip");
}

#[test]
fn a_refused_arm_leaves_the_chip_counter_and_the_first_arm_advances_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    let made = cartridge::provision_test(&data("C-COUNT")).unwrap();
    let session = create(&n, "subject-count");
    tech(&n, made.seat_json(0));
    assert!(bind(&n, session).0 < 300);
    // Too deep for the face: refused, and the chip was not touched.
    let code = refused(
        &n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(json!({ "depth_um": 2_400, "rate_mhz": 120_000 })),
    );
    assert!(!code.is_empty());
    assert_eq!(
        op(&n, "GET", &format!("/v1/sessions/{session}"), None)["state"],
        "bound"
    );
    // A copied tag seated in its place fails the arm's own fresh challenge.
    let genuine = tech(&n, json!({ "action": "pull_cartridge" }))["pulled"].clone();
    assert_eq!(
        genuine["counter"], 0,
        "a refused arm advanced the counter: {genuine}"
    );
    // Pulled while bound: the monitor ends the session and spends the cartridge.
    wait_session(&n, session, "ended");
    let session = create(&n, "subject-count-2");
    let made = cartridge::provision_test(&data("C-COUNT-2")).unwrap();
    tech(&n, made.seat_json(0));
    assert!(bind(&n, session).0 < 300);
    tech(
        &n,
        json!({ "action": "seat_cartridge", "tag_hex": made.tag_hex() }),
    );
    let code = refused(
        &n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(arm_body()),
    );
    assert_eq!(code, "chip_challenge_failed");
    // The genuine chip again: the arm advances it to 1, once.
    tech(&n, made.seat_json(0));
    op(
        &n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(arm_body()),
    );
    op(&n, "POST", &format!("/v1/sessions/{session}/end"), None);
    let pulled = tech(&n, json!({ "action": "pull_cartridge" }))["pulled"].clone();
    assert_eq!(pulled["counter"], 1, "{pulled}");
}

/// Every event of kind `kind` in the log.
fn events_of(n: &Needled, kind: &str) -> Vec<Value> {
    let (mut after, mut out) = (0, vec![]);
    loop {
        let v = op(
            n,
            "GET",
            &format!("/v1/events?after={after}&limit=1000"),
            None,
        );
        let page = v["events"].as_array().cloned().unwrap_or_default();
        if let Some(last) = page.last() {
            after = last["seq"].as_i64().unwrap();
        }
        out.extend(page.iter().filter(|e| e["kind"] == kind).cloned());
        if page.len() < 1000 {
            return out;
        }
    }
}

#[test]
fn the_first_arm_records_the_chip_counter_advance_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path());
    homed(&n);
    let made = cartridge::provision_test(&data("C-EVENT")).unwrap();
    let session = create(&n, "subject-event");
    tech(&n, made.seat_json(0));
    assert!(bind(&n, session).0 < 300);
    // A refused arm advances nothing and records nothing.
    let code = refused(
        &n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(json!({ "depth_um": 2_400, "rate_mhz": 120_000 })),
    );
    assert!(!code.is_empty());
    // So does a rate the core would refuse: refused before the chip is touched.
    for rate in [0, 900_000] {
        let code = refused(
            &n,
            "POST",
            &format!("/v1/sessions/{session}/arm"),
            Some(json!({ "depth_um": 800, "rate_mhz": rate })),
        );
        assert_eq!(code, "rate_out_of_range");
    }
    assert!(events_of(&n, "cartridge_counter_advanced").is_empty());
    op(
        &n,
        "POST",
        &format!("/v1/sessions/{session}/arm"),
        Some(arm_body()),
    );
    let advanced = events_of(&n, "cartridge_counter_advanced");
    assert_eq!(advanced.len(), 1, "{advanced:?}");
    let event = &advanced[0];
    assert_eq!(event["session_id"], session, "{event}");
    assert_eq!(event["cartridge_id"], "C-EVENT", "{event}");
    assert_eq!(event["detail"]["counter"], 1, "{event}");
    // The person who armed, as the ledger names them in the arm's own state change.
    let armed: Vec<Value> = events_of(&n, "session_state")
        .into_iter()
        .filter(|e| e["session_id"] == session && e["detail"]["to"] == "armed")
        .collect();
    assert_eq!(armed.len(), 1, "{armed:?}");
    assert_eq!(event["actor"], armed[0]["actor"], "{event}");
    assert!(
        event["seq"].as_i64() < armed[0]["seq"].as_i64(),
        "advanced before armed"
    );
    let pulled = tech(&n, json!({ "action": "pull_cartridge" }))["pulled"].clone();
    assert_eq!(pulled["counter"], 1, "{pulled}");
}
