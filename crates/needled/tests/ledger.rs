//! Integration tests of the cartridge tag format and the SQLite ledger, on temporary files.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::thread;

use needled::cartridge::{self, Date, FactoryKey, Needles, Tag, TagData, TrustStore};
use needled::store::{
    kinds, report_csv, CartridgeLimits, CartridgeState, ChecklistItem, Event, LedgerError,
    NewSession, Now, Override, SessionId, SessionState, Store, StoreError, CSV_HEADER,
    SCHEMA_VERSION,
};
use serde_json::json;
use tempfile::TempDir;

/// 2026-05-01T00:00:00Z.
const T0: i64 = 1_777_593_600_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
const INTERVAL_28_DAYS: i64 = 28 * DAY;

/// The pen's trust store: the test factory key only.
fn key() -> TrustStore {
    let f = cartridge::test_factory_key();
    let mut t = TrustStore::new();
    t.trust(f.id(), &f.public_key()).expect("valid");
    t
}

/// `data` signed by the test factory key.
fn encode(data: &TagData) -> Vec<u8> {
    cartridge::provision_test(data).expect("provisions").tag
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).expect("valid date")
}

fn today() -> Date {
    date(2026, 5, 1)
}

fn now(unix_ms: i64) -> Now {
    Now {
        unix_ms,
        today: today(),
    }
}

fn make_tag(id: &str, lot: &str, needles: Needles, expiry: Date) -> Tag {
    let data = TagData::new(id, lot, needles, expiry).expect("valid tag data");
    cartridge::parse(&encode(&data), &key()).expect("authentic tag")
}

fn cart(id: &str) -> Tag {
    make_tag(id, "LOT-1", Needles::Pins36, date(2027, 1, 31))
}

fn limits() -> CartridgeLimits {
    CartridgeLimits::default()
}

fn new_session(subject: &str) -> NewSession {
    NewSession {
        operator: "op-anna".to_owned(),
        stated_operator: None,
        subject_ref: subject.to_owned(),
        area: "face".to_owned(),
        checklist: vec![
            ChecklistItem {
                item: "no active acne".to_owned(),
                confirmed: true,
            },
            ChecklistItem {
                item: "numbing applied".to_owned(),
                confirmed: false,
            },
        ],
    }
}

struct Ledger {
    _dir: TempDir,
    path: PathBuf,
    store: Store,
}

fn ledger() -> Ledger {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.db");
    let store = Store::open(&path).expect("open ledger");
    Ledger {
        _dir: dir,
        path,
        store,
    }
}

impl Ledger {
    fn reopen(&mut self) {
        // Replace first so the old connection is dropped (closed) before the new one opens.
        let fresh = Store::open(&self.path).expect("reopen ledger");
        self.store = fresh;
    }

    fn session(&mut self, subject: &str) -> SessionId {
        self.store
            .create_session(&new_session(subject), T0, 0, None)
            .expect("session created")
            .id
    }

    fn bound_session(&mut self, subject: &str, tag: &Tag) -> SessionId {
        let id = self.session(subject);
        self.store
            .bind(id, tag, now(T0), &limits(), "op-anna")
            .expect("bound");
        id
    }

    fn running_session(&mut self, subject: &str, tag: &Tag) -> SessionId {
        let id = self.bound_session(subject, tag);
        for to in [SessionState::Armed, SessionState::Running] {
            self.store
                .set_session_state(id, to, "op-anna", None, T0 + MINUTE)
                .expect("state change");
        }
        id
    }

    fn event_count(&self) -> usize {
        self.store.events_after(0, 1000).expect("events").len()
    }

    fn kinds_of(&self, session: SessionId) -> Vec<String> {
        self.store
            .events_after(0, 1000)
            .expect("events")
            .into_iter()
            .filter(|e| e.event.session_id == Some(session))
            .map(|e| e.event.kind)
            .collect()
    }
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

fn code<T: std::fmt::Debug>(result: Result<T, LedgerError>) -> &'static str {
    result.expect_err("operation must be refused").code()
}

// --- tags -------------------------------------------------------------------------------------

#[test]
fn tag_hex_form_round_trips_into_the_same_cartridge() {
    let mut l = ledger();
    let original = cart("C-HEX");
    let read_back = cartridge::parse_hex(&original.to_hex(), &key()).expect("parses");
    assert_eq!(read_back, original);
    let record = l
        .store
        .check_and_register(&read_back, now(T0), &limits())
        .expect("registered");
    assert_eq!(record.id, "C-HEX");
    assert_eq!(record.needles, Needles::Pins36);
}

#[test]
fn every_tag_refusal_has_its_stable_code() {
    let data = TagData::new("C-1", "LOT-1", Needles::Nano, date(2027, 1, 1)).expect("valid");
    let good = encode(&data);

    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xFF;
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    let mut bad_length = good.clone();
    bad_length[5] = 0;
    let forged = cartridge::provision(
        &data,
        &FactoryKey::from_secret(cartridge::TEST_FACTORY_KEY_ID, &[1; 32]).expect("valid"),
    )
    .expect("signs")
    .tag;
    let unknown = cartridge::provision(
        &data,
        &FactoryKey::from_secret("forger", &[1; 32]).expect("valid"),
    )
    .expect("signs")
    .tag;
    let mut v1 = good.clone();
    v1[4] = 1;
    let mut revoked = key();
    revoked.revoke(cartridge::TEST_FACTORY_KEY_ID);
    assert_eq!(
        cartridge::parse(&good, &revoked)
            .expect_err("refused")
            .code(),
        "tag_signer_revoked"
    );

    let cases: [(&[u8], &str); 8] = [
        (&bad_magic, "tag_unknown_format"),
        (&bad_version, "tag_unknown_format"),
        (&good[..good.len() - 1], "tag_truncated"),
        (&bad_length, "tag_invalid_field"),
        (&forged, "tag_bad_signature"),
        (&unknown, "tag_signer_unknown"),
        (&v1, "tag_v1_unsupported"),
        (&[0xFF; 256], "tag_unknown_format"),
    ];
    for (bytes, expected) in cases {
        let err = cartridge::parse(bytes, &key()).expect_err("refused");
        assert_eq!(err.code(), expected, "{err}");
    }
}

// --- cartridges -------------------------------------------------------------------------------

#[test]
fn first_sight_registers_cartridge_as_new_once() {
    let mut l = ledger();
    let record = l
        .store
        .check_and_register(&cart("C-1"), now(T0), &limits())
        .expect("registered");
    assert_eq!(record.state, CartridgeState::New);
    assert_eq!(record.session_id, None);
    assert_eq!(record.registered_at_ms, T0);
    assert_eq!(record.remaining_run_ms, 30 * MINUTE as u64);
    assert_eq!(record.remaining_strokes, 300_000);

    let again = l
        .store
        .check_and_register(&cart("C-1"), now(T0 + MINUTE), &limits())
        .expect("still acceptable");
    assert_eq!(again, record, "a second sight changes nothing");
    let events = l.store.events_after(0, 100).expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.kind, kinds::CARTRIDGE_REGISTERED);
    assert_eq!(events[0].event.cartridge_id.as_deref(), Some("C-1"));
}

#[test]
fn expired_cartridge_is_refused_and_not_registered() {
    let mut l = ledger();
    let expired = make_tag("C-OLD", "LOT-1", Needles::Pins12, date(2026, 4, 30));
    let err = l
        .store
        .check_and_register(&expired, now(T0), &limits())
        .expect_err("expired");
    assert_eq!(err.code(), "cartridge_expired");
    assert!(err.to_string().contains("2026-04-30"));
    assert_eq!(l.store.cartridge("C-OLD", &limits()).expect("read"), None);
    assert_eq!(l.event_count(), 0);
}

#[test]
fn cartridge_is_usable_on_its_expiry_day() {
    let mut l = ledger();
    let last_day = make_tag("C-LAST", "LOT-1", Needles::Pins12, today());
    assert!(l
        .store
        .check_and_register(&last_day, now(T0), &limits())
        .is_ok());
}

#[test]
fn registered_cartridge_is_refused_once_expired() {
    let mut l = ledger();
    let tag = make_tag("C-AGE", "LOT-1", Needles::Pins12, today());
    l.store
        .check_and_register(&tag, now(T0), &limits())
        .expect("fine today");
    let tomorrow = Now {
        unix_ms: T0 + DAY,
        today: date(2026, 5, 2),
    };
    assert_eq!(
        code(l.store.check_and_register(&tag, tomorrow, &limits())),
        "cartridge_expired"
    );
}

#[test]
fn recalled_lot_is_refused_at_check_and_at_bind() {
    let mut l = ledger();
    l.store
        .check_and_register(&cart("C-KNOWN"), now(T0), &limits())
        .expect("registered before the recall");
    let in_use = l
        .store
        .recall_lot("LOT-1", "sterility breach at supplier", "tech-bo", T0)
        .expect("recalled");
    assert!(in_use.is_empty());

    assert_eq!(
        code(
            l.store
                .check_and_register(&cart("C-KNOWN"), now(T0), &limits())
        ),
        "lot_recalled"
    );
    assert_eq!(
        code(
            l.store
                .check_and_register(&cart("C-NEW"), now(T0), &limits())
        ),
        "lot_recalled"
    );
    let session = l.session("subj-1");
    let err = l
        .store
        .bind(session, &cart("C-KNOWN"), now(T0), &limits(), "op-anna")
        .expect_err("recalled");
    assert_eq!(err.code(), "lot_recalled");
    let record = l
        .store
        .cartridge("C-KNOWN", &limits())
        .expect("read")
        .expect("exists");
    assert!(record.lot_recalled);
    assert_eq!(record.state, CartridgeState::New);
}

#[test]
fn recall_reports_in_use_cartridges_and_blocks_resuming() {
    let mut l = ledger();
    let session = l.running_session("subj-1", &cart("C-RUN"));
    l.store
        .set_session_state(
            session,
            SessionState::Paused,
            "op-anna",
            None,
            T0 + 2 * MINUTE,
        )
        .expect("paused");
    let other_lot = make_tag("C-OTHER", "LOT-2", Needles::Pins12, date(2027, 1, 1));
    l.running_session("subj-2", &other_lot);

    let in_use = l
        .store
        .recall_lot("LOT-1", "supplier recall", "tech-bo", T0 + 3 * MINUTE)
        .expect("recalled");
    assert_eq!(in_use.len(), 1);
    assert_eq!(in_use[0].cartridge_id, "C-RUN");
    assert_eq!(in_use[0].session_id, session);
    assert_eq!(l.store.recalled_in_use().expect("query"), in_use);

    let err = l
        .store
        .set_session_state(
            session,
            SessionState::Running,
            "op-anna",
            None,
            T0 + 4 * MINUTE,
        )
        .expect_err("recalled");
    assert_eq!(err.code(), "lot_recalled");
    assert_eq!(
        l.store
            .session(session)
            .expect("read")
            .expect("exists")
            .state,
        SessionState::Paused
    );
}

#[test]
fn cartridge_in_use_is_refused_for_another_session() {
    let mut l = ledger();
    let first = l.bound_session("subj-1", &cart("C-1"));
    let second = l.session("subj-2");
    let err = l
        .store
        .bind(second, &cart("C-1"), now(T0), &limits(), "op-anna")
        .expect_err("in use");
    match &err {
        LedgerError::CartridgeInUse { id, session_id } => {
            assert_eq!(id, "C-1");
            assert_eq!(*session_id, first);
        }
        other => panic!("expected cartridge_in_use, got {other:?}"),
    }
    assert_eq!(err.code(), "cartridge_in_use");
    assert_eq!(
        code(l.store.check_and_register(&cart("C-1"), now(T0), &limits())),
        "cartridge_in_use"
    );
}

#[test]
fn spent_cartridge_refused_after_reopen() {
    let mut l = ledger();
    let session = l.running_session("subj-1", &cart("C-1"));
    l.store
        .end_session(
            session,
            T0 + 20 * MINUTE,
            1_000,
            500,
            "completed",
            "op-anna",
        )
        .expect("ended");
    l.reopen();

    let record = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(record.state, CartridgeState::Spent);
    assert_eq!(record.spent_reason.as_deref(), Some("session_ended"));
    assert_eq!(
        code(l.store.check_and_register(&cart("C-1"), now(T0), &limits())),
        "cartridge_spent"
    );
    let next = l
        .store
        .create_session(&new_session("subj-2"), T0 + DAY, 0, None)
        .expect("created")
        .id;
    assert_eq!(
        code(
            l.store
                .bind(next, &cart("C-1"), now(T0 + DAY), &limits(), "op-anna")
        ),
        "cartridge_spent"
    );
}

#[test]
fn cloned_tag_with_other_lot_needles_or_expiry_is_a_mismatch() {
    let mut l = ledger();
    l.store
        .check_and_register(&cart("C-1"), now(T0), &limits())
        .expect("registered");
    let clones = [
        make_tag("C-1", "LOT-9", Needles::Pins36, date(2027, 1, 31)),
        make_tag("C-1", "LOT-1", Needles::Pins12, date(2027, 1, 31)),
        make_tag("C-1", "LOT-1", Needles::Pins36, date(2029, 1, 31)),
    ];
    for clone in &clones {
        assert_eq!(
            code(l.store.check_and_register(clone, now(T0), &limits())),
            "cartridge_mismatch"
        );
        let session = l.session("subj-clone");
        assert_eq!(
            code(l.store.bind(session, clone, now(T0), &limits(), "op-anna")),
            "cartridge_mismatch"
        );
    }
    let record = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(record.lot, "LOT-1");
    assert_eq!(record.state, CartridgeState::New);
}

#[test]
fn add_usage_accumulates_and_reports_the_remaining_budget() {
    let mut l = ledger();
    let small = CartridgeLimits {
        max_run_ms: 10_000,
        max_strokes: 1_000,
    };
    l.bound_session("subj-1", &cart("C-1"));
    let after_one = l.store.add_usage("C-1", 4_000, 300, &small).expect("usage");
    assert_eq!((after_one.run_ms, after_one.strokes), (4_000, 300));
    assert_eq!(after_one.remaining_run_ms, 6_000);
    assert_eq!(after_one.remaining_strokes, 700);
    assert!(!after_one.budget_exhausted());

    let after_two = l.store.add_usage("C-1", 7_000, 100, &small).expect("usage");
    assert_eq!((after_two.run_ms, after_two.strokes), (11_000, 400));
    assert_eq!(after_two.remaining_run_ms, 0);
    assert!(after_two.budget_exhausted());
}

#[test]
fn cartridge_over_its_budget_is_refused() {
    let mut l = ledger();
    let small = CartridgeLimits {
        max_run_ms: 60_000,
        max_strokes: 1_000,
    };
    let session = l.bound_session("subj-1", &cart("C-1"));
    assert!(l
        .store
        .verify_bound(session, &cart("C-1"), now(T0), &small)
        .is_ok());
    l.store
        .add_usage("C-1", 1_000, 1_000, &small)
        .expect("usage");
    assert_eq!(
        code(l.store.verify_bound(session, &cart("C-1"), now(T0), &small)),
        "cartridge_budget_exhausted"
    );
    // Limits of zero exhaust even a fresh cartridge.
    let none = CartridgeLimits {
        max_run_ms: 0,
        max_strokes: 1,
    };
    assert_eq!(
        code(l.store.check_and_register(&cart("C-2"), now(T0), &none)),
        "cartridge_budget_exhausted"
    );
}

#[test]
fn verify_bound_refuses_a_different_seated_cartridge() {
    let mut l = ledger();
    let session = l.bound_session("subj-1", &cart("C-1"));
    let err = l
        .store
        .verify_bound(session, &cart("C-2"), now(T0), &limits())
        .expect_err("other cartridge");
    assert_eq!(err.code(), "cartridge_mismatch");
    assert_eq!(
        l.store.cartridge("C-2", &limits()).expect("read"),
        None,
        "nothing registered"
    );
    assert_eq!(
        code(l.store.verify_bound(999, &cart("C-1"), now(T0), &limits())),
        "not_found"
    );
}

#[test]
fn add_usage_refuses_unknown_and_unbound_cartridges() {
    let mut l = ledger();
    assert_eq!(
        code(l.store.add_usage("C-NOPE", 1, 1, &limits())),
        "not_found"
    );
    l.store
        .check_and_register(&cart("C-1"), now(T0), &limits())
        .expect("registered");
    assert_eq!(
        code(l.store.add_usage("C-1", 1, 1, &limits())),
        "invalid_input"
    );
    assert_eq!(
        code(l.store.add_usage("C-1", u64::MAX, 1, &limits())),
        "invalid_input"
    );
}

#[test]
fn spending_is_final() {
    let mut l = ledger();
    l.store
        .check_and_register(&cart("C-1"), now(T0), &limits())
        .expect("registered");
    l.store
        .spend("C-1", "dropped on the floor", "op-anna", T0)
        .expect("spent");
    assert_eq!(
        code(l.store.spend("C-1", "again", "op-anna", T0)),
        "cartridge_spent"
    );
    let session = l.session("subj-1");
    assert_eq!(
        code(
            l.store
                .bind(session, &cart("C-1"), now(T0), &limits(), "op-anna")
        ),
        "cartridge_spent"
    );
    // Not even SQL written by hand can bring it back.
    let conn = raw(&l.path);
    assert!(conn
        .execute("UPDATE cartridges SET state = 'new', spent_at_ms = NULL, spent_reason = NULL WHERE id = 'C-1'", [])
        .is_err());
    assert!(conn
        .execute(
            "UPDATE cartridges SET state = 'in_use' WHERE id = 'C-1'",
            []
        )
        .is_err());
    assert!(conn
        .execute(
            "UPDATE cartridges SET spent_reason = 'other' WHERE id = 'C-1'",
            []
        )
        .is_err());
    let record = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(record.state, CartridgeState::Spent);
    assert_eq!(record.spent_reason.as_deref(), Some("dropped on the floor"));
}

#[test]
fn cartridge_removed_mid_session_is_spent_and_the_session_cannot_run_again() {
    let mut l = ledger();
    let session = l.running_session("subj-1", &cart("C-1"));
    l.store
        .set_session_state(
            session,
            SessionState::Paused,
            "system",
            Some("cartridge removed"),
            T0 + 2 * MINUTE,
        )
        .expect("paused");
    l.store
        .spend("C-1", "removed mid-session", "system", T0 + 2 * MINUTE)
        .expect("spent");
    let events = l.store.events_after(0, 1000).expect("events");
    let spent = events
        .iter()
        .find(|e| e.event.kind == kinds::CARTRIDGE_SPENT)
        .expect("spent event");
    assert_eq!(spent.event.session_id, Some(session));
    assert_eq!(spent.event.reason.as_deref(), Some("removed mid-session"));

    let err = l
        .store
        .set_session_state(
            session,
            SessionState::Running,
            "op-anna",
            None,
            T0 + 3 * MINUTE,
        )
        .expect_err("cartridge spent");
    assert_eq!(err.code(), "cartridge_spent");
    // It can still be ended (or aborted) for the record.
    let ended = l
        .store
        .end_session(
            session,
            T0 + 4 * MINUTE,
            90_000,
            12_000,
            "cartridge removed",
            "op-anna",
        )
        .expect("ended");
    assert_eq!(ended.state, SessionState::Ended);
}

#[test]
fn refused_operations_change_nothing() {
    let mut l = ledger();
    let session = l.bound_session("subj-1", &cart("C-1"));
    let before_events = l.event_count();
    let before_cartridge = l.store.cartridge("C-1", &limits()).expect("read");
    let before_session = l.store.session(session).expect("read");

    let refusals = [
        code(l.store.spend("C-1", "  ", "op-anna", T0)),
        code(l.store.spend("C-1", "reason", "", T0)),
        code(l.store.spend("C-1", "reason", "op-anna", -1)),
        code(l.store.recall_lot("LOT 1", "reason", "tech-bo", T0)),
        code(l.store.recall_lot("LOT-1", "", "tech-bo", T0)),
        code(
            l.store
                .set_session_state(session, SessionState::Running, "op-anna", None, T0),
        ),
        code(
            l.store
                .set_session_state(session, SessionState::Ended, "op-anna", None, T0),
        ),
        code(
            l.store
                .set_session_state(session, SessionState::Armed, "op\nanna", None, T0),
        ),
        code(l.store.end_session(session, T0, 1, 1, "", "op-anna")),
        code(l.store.record_setpoints(session, 500, 100_000, T0, "")),
        code(
            l.store
                .bind(session, &cart("C-2"), now(T0), &limits(), "op-anna"),
        ),
        code(l.store.abort_open_sessions(T0, "")),
    ];
    assert_eq!(
        refusals,
        [
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "session_wrong_state",
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "invalid_input",
            "session_wrong_state",
            "invalid_input",
        ]
    );
    assert_eq!(l.event_count(), before_events);
    assert_eq!(
        l.store.cartridge("C-1", &limits()).expect("read"),
        before_cartridge
    );
    assert_eq!(l.store.session(session).expect("read"), before_session);
    assert_eq!(l.store.cartridge("C-2", &limits()).expect("read"), None);
}

// --- binding ----------------------------------------------------------------------------------

#[test]
fn bind_moves_cartridge_and_session_together_with_events() {
    let mut l = ledger();
    let session = l.session("subj-1");
    let record = l
        .store
        .bind(session, &cart("C-1"), now(T0 + 5), &limits(), "op-anna")
        .expect("bound");
    assert_eq!(record.state, CartridgeState::InUse);
    assert_eq!(record.session_id, Some(session));
    assert_eq!(record.bound_at_ms, Some(T0 + 5));
    let s = l.store.session(session).expect("read").expect("exists");
    assert_eq!(s.state, SessionState::Bound);
    assert_eq!(s.cartridge_id.as_deref(), Some("C-1"));
    assert_eq!(
        l.kinds_of(session),
        [
            kinds::SESSION_CREATED,
            kinds::CARTRIDGE_REGISTERED,
            kinds::CARTRIDGE_BOUND,
            kinds::SESSION_STATE
        ]
    );
}

#[test]
fn bind_is_refused_unless_the_session_is_created() {
    let mut l = ledger();
    let session = l.bound_session("subj-1", &cart("C-1"));
    let err = l
        .store
        .bind(session, &cart("C-2"), now(T0), &limits(), "op-anna")
        .expect_err("already bound");
    match err {
        LedgerError::SessionWrongState {
            session_id,
            current,
            ..
        } => {
            assert_eq!(session_id, session);
            assert_eq!(current, SessionState::Bound);
        }
        other => panic!("expected session_wrong_state, got {other:?}"),
    }
    assert_eq!(
        code(
            l.store
                .bind(12345, &cart("C-3"), now(T0), &limits(), "op-anna")
        ),
        "not_found"
    );
}

#[test]
fn racing_binds_from_two_handles_bind_the_cartridge_once() {
    let l = ledger();
    let mut a = Store::open(&l.path).expect("handle a");
    let mut b = Store::open(&l.path).expect("handle b");
    for round in 0..16 {
        let sa = a
            .create_session(&new_session(&format!("subj-a{round}")), T0, 0, None)
            .expect("created")
            .id;
        let sb = b
            .create_session(&new_session(&format!("subj-b{round}")), T0, 0, None)
            .expect("created")
            .id;
        let tag = cart(&format!("RACE-{round}"));
        let barrier = Barrier::new(2);
        let (ra, rb) = thread::scope(|s| {
            let ha = s.spawn(|| {
                barrier.wait();
                a.bind(sa, &tag, now(T0), &limits(), "op-a")
            });
            let hb = s.spawn(|| {
                barrier.wait();
                b.bind(sb, &tag, now(T0), &limits(), "op-b")
            });
            (ha.join().expect("thread a"), hb.join().expect("thread b"))
        });
        let (winner, loser, lost) = match (ra, rb) {
            (Ok(_), Err(e)) => (sa, sb, e),
            (Err(e), Ok(_)) => (sb, sa, e),
            (ra, rb) => panic!("exactly one bind must win: {ra:?} / {rb:?}"),
        };
        assert_eq!(lost.code(), "cartridge_in_use", "{lost}");
        let record = a
            .cartridge(tag.id(), &limits())
            .expect("read")
            .expect("exists");
        assert_eq!(record.session_id, Some(winner));
        let loser = b.session(loser).expect("read").expect("exists");
        assert_eq!(loser.state, SessionState::Created);
        assert_eq!(loser.cartridge_id, None);
    }
}

#[test]
fn schema_refuses_double_binding_even_from_raw_sql() {
    let mut l = ledger();
    let first = l.bound_session("subj-1", &cart("C-1"));
    let second = l.session("subj-2");
    let conn = raw(&l.path);
    let attempts = [
        format!("UPDATE cartridges SET session_id = {second} WHERE id = 'C-1'"),
        format!("UPDATE sessions SET state = 'bound', cartridge_id = 'C-1' WHERE id = {second}"),
        "INSERT INTO sessions (operator, subject_ref, area, checklist, state, cartridge_id, \
         created_at_ms) VALUES ('x', 'y', 'z', '[]', 'bound', 'C-1', 0)"
            .to_owned(),
        format!("UPDATE sessions SET cartridge_id = NULL WHERE id = {first}"),
        "UPDATE cartridges SET state = 'new', session_id = NULL, bound_at_ms = NULL \
         WHERE id = 'C-1'"
            .to_owned(),
    ];
    for sql in &attempts {
        assert!(conn.execute(sql, []).is_err(), "must be refused: {sql}");
    }
    let record = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(record.session_id, Some(first));
    assert_eq!(
        l.store
            .session(second)
            .expect("read")
            .expect("exists")
            .cartridge_id,
        None
    );
}

#[test]
fn failed_bind_leaves_no_trace() {
    let mut l = ledger();
    let session = l.session("subj-1");
    let before = l.event_count();
    let expired = make_tag("C-OLD", "LOT-1", Needles::Pins12, date(2020, 1, 1));
    assert_eq!(
        code(
            l.store
                .bind(session, &expired, now(T0), &limits(), "op-anna")
        ),
        "cartridge_expired"
    );
    assert_eq!(l.event_count(), before);
    assert_eq!(l.store.cartridge("C-OLD", &limits()).expect("read"), None);
    assert_eq!(
        l.store
            .session(session)
            .expect("read")
            .expect("exists")
            .state,
        SessionState::Created
    );
}

// --- sessions ---------------------------------------------------------------------------------

#[test]
fn session_lifecycle_ends_with_totals_and_spends_the_cartridge() {
    let mut l = ledger();
    let session = l.running_session("subj-1", &cart("C-1"));
    for (to, at) in [(SessionState::Paused, 2), (SessionState::Running, 3)] {
        l.store
            .set_session_state(session, to, "op-anna", None, T0 + at * MINUTE)
            .expect("state change");
    }
    l.store
        .add_usage("C-1", 60_000, 9_000, &limits())
        .expect("usage");
    let ended = l
        .store
        .end_session(
            session,
            T0 + 25 * MINUTE,
            120_000,
            18_000,
            "completed",
            "op-anna",
        )
        .expect("ended");
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(
        ended.started_at_ms,
        Some(T0 + MINUTE),
        "first run sets start"
    );
    assert_eq!(ended.ended_at_ms, Some(T0 + 25 * MINUTE));
    assert_eq!((ended.run_ms, ended.strokes), (120_000, 18_000));
    assert_eq!(ended.end_reason.as_deref(), Some("completed"));

    let c = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(c.state, CartridgeState::Spent);
    assert_eq!(
        (c.run_ms, c.strokes),
        (120_000, 18_000),
        "raised to session totals"
    );

    let states: Vec<(String, String)> = l
        .store
        .events_after(0, 1000)
        .expect("events")
        .into_iter()
        .filter(|e| e.event.kind == kinds::SESSION_STATE)
        .map(|e| {
            (
                e.event.detail["from"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e.event.detail["to"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("created", "bound"),
        ("bound", "armed"),
        ("armed", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "ended"),
    ];
    assert_eq!(states, expected.map(|(f, t)| (f.to_owned(), t.to_owned())));
}

#[test]
fn wrong_transition_is_refused_with_the_current_state() {
    let mut l = ledger();
    let session = l.bound_session("subj-1", &cart("C-1"));
    let before = l.event_count();
    for to in [
        SessionState::Running,
        SessionState::Paused,
        SessionState::Created,
    ] {
        let err = l
            .store
            .set_session_state(session, to, "op-anna", None, T0)
            .expect_err("not allowed from bound");
        assert_eq!(err.code(), "session_wrong_state");
        assert!(err.to_string().contains("is bound"), "{err}");
    }
    assert_eq!(l.event_count(), before);
    let created = l.session("subj-2");
    assert_eq!(
        code(
            l.store
                .end_session(created, T0, 0, 0, "nothing done", "op-anna")
        ),
        "session_wrong_state"
    );
    assert_eq!(
        code(
            l.store
                .set_session_state(777, SessionState::Armed, "op-anna", None, T0)
        ),
        "not_found"
    );
}

#[test]
fn finished_sessions_accept_no_further_change() {
    let mut l = ledger();
    let session = l.running_session("subj-1", &cart("C-1"));
    l.store
        .end_session(session, T0 + MINUTE, 1, 1, "completed", "op-anna")
        .expect("ended");
    assert_eq!(
        code(
            l.store
                .set_session_state(session, SessionState::Aborted, "op-anna", None, T0)
        ),
        "session_wrong_state"
    );
    assert_eq!(
        code(l.store.end_session(session, T0, 1, 1, "again", "op-anna")),
        "session_wrong_state"
    );
    assert_eq!(
        code(
            l.store
                .record_setpoints(session, 500, 100_000, T0, "op-anna")
        ),
        "session_wrong_state"
    );
    let conn = raw(&l.path);
    assert!(conn
        .execute(
            &format!("UPDATE sessions SET state = 'running' WHERE id = {session}"),
            []
        )
        .is_err());
}

#[test]
fn abort_spends_the_bound_cartridge() {
    let mut l = ledger();
    let session = l.bound_session("subj-1", &cart("C-1"));
    let aborted = l
        .store
        .set_session_state(
            session,
            SessionState::Aborted,
            "op-anna",
            Some("subject left"),
            T0,
        )
        .expect("aborted");
    assert_eq!(aborted.state, SessionState::Aborted);
    assert_eq!(aborted.end_reason.as_deref(), Some("subject left"));
    let c = l
        .store
        .cartridge("C-1", &limits())
        .expect("read")
        .expect("exists");
    assert_eq!(c.state, CartridgeState::Spent);
    assert_eq!(c.spent_reason.as_deref(), Some("session_aborted"));
}

#[test]
fn abort_open_sessions_after_reopen_aborts_them_and_spends_their_cartridges() {
    let mut l = ledger();
    let created = l.session("subj-created");
    let bound = l.bound_session("subj-bound", &cart("C-B"));
    let armed = l.bound_session("subj-armed", &cart("C-A"));
    l.store
        .set_session_state(armed, SessionState::Armed, "op-anna", None, T0)
        .expect("armed");
    let running = l.running_session("subj-running", &cart("C-R"));
    let paused = l.running_session("subj-paused", &cart("C-P"));
    l.store
        .set_session_state(
            paused,
            SessionState::Paused,
            "op-anna",
            None,
            T0 + 2 * MINUTE,
        )
        .expect("paused");
    let ended = l.running_session("subj-ended", &cart("C-E"));
    l.store
        .end_session(ended, T0 + 3 * MINUTE, 1, 1, "completed", "op-anna")
        .expect("ended");
    let untouched = l.store.session(ended).expect("read");

    // The service "crashes" here; it restarts on the same file.
    l.reopen();
    let aborted = l
        .store
        .abort_open_sessions(T0 + DAY, "service restarted")
        .expect("recovery");
    assert_eq!(aborted, vec![created, bound, armed, running, paused]);

    for id in &aborted {
        let s = l.store.session(*id).expect("read").expect("exists");
        assert_eq!(s.state, SessionState::Aborted);
        assert_eq!(s.end_reason.as_deref(), Some("service restarted"));
        assert_eq!(s.ended_at_ms, Some(T0 + DAY));
        let kinds = l.kinds_of(*id);
        assert_eq!(
            kinds.last().map(String::as_str),
            if s.cartridge_id.is_some() {
                Some(kinds::CARTRIDGE_SPENT)
            } else {
                Some(kinds::SESSION_STATE)
            }
        );
    }
    for id in ["C-B", "C-A", "C-R", "C-P"] {
        let c = l
            .store
            .cartridge(id, &limits())
            .expect("read")
            .expect("exists");
        assert_eq!(c.state, CartridgeState::Spent, "{id}");
        assert_eq!(c.spent_reason.as_deref(), Some("session_aborted"));
    }
    assert_eq!(l.store.session(ended).expect("read"), untouched);
    // Recovery is idempotent.
    assert_eq!(
        l.store
            .abort_open_sessions(T0 + DAY, "service restarted")
            .expect("recovery"),
        Vec::<SessionId>::new()
    );
}

#[test]
fn interval_rule_refuses_a_second_session_until_the_interval_passed() {
    let mut l = ledger();
    let first = l.running_session("subj-1", &cart("C-1"));
    let started = l
        .store
        .session(first)
        .expect("read")
        .expect("exists")
        .started_at_ms;
    assert_eq!(started, Some(T0 + MINUTE));
    assert_eq!(
        l.store.last_session_start("subj-1").expect("query"),
        started
    );

    let earliest = T0 + MINUTE + INTERVAL_28_DAYS;
    let before = l.event_count();
    let err = l
        .store
        .create_session(&new_session("subj-1"), earliest - 1, INTERVAL_28_DAYS, None)
        .expect_err("too soon");
    match err {
        LedgerError::SessionInterval {
            earliest_allowed_ms,
            last_started_at_ms,
        } => {
            assert_eq!(earliest_allowed_ms, earliest);
            assert_eq!(last_started_at_ms, T0 + MINUTE);
        }
        other => panic!("expected session_interval, got {other:?}"),
    }
    assert_eq!(l.event_count(), before);
    // Another subject is not affected; the same subject may come back exactly on time.
    assert!(l
        .store
        .create_session(&new_session("subj-2"), earliest - 1, INTERVAL_28_DAYS, None)
        .is_ok());
    assert!(l
        .store
        .create_session(&new_session("subj-1"), earliest, INTERVAL_28_DAYS, None)
        .is_ok());
}

#[test]
fn interval_counts_only_sessions_that_reached_running() {
    let mut l = ledger();
    let never_ran = l.bound_session("subj-1", &cart("C-1"));
    l.store
        .set_session_state(
            never_ran,
            SessionState::Aborted,
            "op-anna",
            Some("changed mind"),
            T0,
        )
        .expect("aborted");
    assert!(l
        .store
        .create_session(&new_session("subj-1"), T0 + MINUTE, INTERVAL_28_DAYS, None)
        .is_ok());
}

#[test]
fn interval_override_records_actor_and_reason() {
    let mut l = ledger();
    l.running_session("subj-1", &cart("C-1"));
    let over = Override {
        actor: "dr-chen".to_owned(),
        reason: "touch-up agreed with dermatologist".to_owned(),
    };
    let session = l
        .store
        .create_session(
            &new_session("subj-1"),
            T0 + DAY,
            INTERVAL_28_DAYS,
            Some(&over),
        )
        .expect("overridden");
    let events = l.store.events_after(0, 1000).expect("events");
    let recorded = events
        .iter()
        .find(|e| e.event.kind == kinds::INTERVAL_OVERRIDE)
        .expect("override event");
    assert_eq!(recorded.event.session_id, Some(session.id));
    assert_eq!(recorded.event.actor, "dr-chen");
    assert_eq!(
        recorded.event.reason.as_deref(),
        Some("touch-up agreed with dermatologist")
    );
    assert_eq!(
        recorded.event.detail["earliest_allowed_ms"],
        json!(T0 + MINUTE + INTERVAL_28_DAYS)
    );
    // An override that is not needed records nothing.
    let free = l
        .store
        .create_session(&new_session("subj-9"), T0, INTERVAL_28_DAYS, Some(&over))
        .expect("created");
    assert_eq!(l.kinds_of(free.id), [kinds::SESSION_CREATED]);
}

#[test]
fn override_without_a_reason_is_refused() {
    let mut l = ledger();
    l.running_session("subj-1", &cart("C-1"));
    let before = l.event_count();
    for over in [
        Override {
            actor: "dr-chen".to_owned(),
            reason: "   ".to_owned(),
        },
        Override {
            actor: String::new(),
            reason: "agreed".to_owned(),
        },
    ] {
        assert_eq!(
            code(l.store.create_session(
                &new_session("subj-1"),
                T0 + DAY,
                INTERVAL_28_DAYS,
                Some(&over)
            )),
            "invalid_input"
        );
    }
    assert_eq!(l.event_count(), before);
}

#[test]
fn malformed_session_input_is_refused() {
    let mut l = ledger();
    let mut cases = Vec::new();
    let mut empty_operator = new_session("subj-1");
    empty_operator.operator = " ".to_owned();
    cases.push(empty_operator);
    let mut long_area = new_session("subj-1");
    long_area.area = "a".repeat(129);
    cases.push(long_area);
    let mut duplicate = new_session("subj-1");
    duplicate.checklist.push(duplicate.checklist[0].clone());
    cases.push(duplicate);
    let mut control = new_session("subj\u{7}");
    control.subject_ref = "subj\u{7}".to_owned();
    cases.push(control);
    for new in &cases {
        assert_eq!(
            code(l.store.create_session(new, T0, 0, None)),
            "invalid_input",
            "{new:?}"
        );
    }
    assert_eq!(
        code(l.store.create_session(&new_session("s"), T0, -1, None)),
        "invalid_input"
    );
    assert_eq!(l.event_count(), 0);
}

// --- events -----------------------------------------------------------------------------------

#[test]
fn events_cannot_be_updated_or_deleted() {
    let mut l = ledger();
    let seq = l
        .store
        .append_event(&Event::new(T0, "system", "fault").reason("stroke stall"))
        .expect("appended");
    let conn = raw(&l.path);
    for sql in [
        format!("UPDATE events SET reason = 'nothing happened' WHERE seq = {seq}"),
        format!("UPDATE events SET at_ms = 0 WHERE seq = {seq}"),
        format!("DELETE FROM events WHERE seq = {seq}"),
        "DELETE FROM events".to_owned(),
    ] {
        let err = conn.execute(&sql, []).expect_err("append-only");
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let events = l.store.events_after(0, 10).expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.reason.as_deref(), Some("stroke stall"));
}

#[test]
fn ledger_records_cannot_be_deleted() {
    let mut l = ledger();
    l.bound_session("subj-1", &cart("C-1"));
    l.store
        .recall_lot("LOT-7", "supplier recall", "tech-bo", T0)
        .expect("recalled");
    let conn = raw(&l.path);
    for sql in [
        "DELETE FROM cartridges",
        "DELETE FROM sessions",
        "DELETE FROM recalled_lots",
        "UPDATE recalled_lots SET lot = 'LOT-8'",
        "UPDATE cartridges SET run_ms = 0, strokes = 0",
    ] {
        // The last one is a no-op for an unused cartridge, so give it usage first.
        if sql.starts_with("UPDATE cartridges") {
            l.store.add_usage("C-1", 10, 10, &limits()).expect("usage");
        }
        assert!(conn.execute(sql, []).is_err(), "must be refused: {sql}");
    }
    assert!(l.store.cartridge("C-1", &limits()).expect("read").is_some());
}

#[test]
fn appended_events_get_increasing_seqs_and_page_in_order() {
    let mut l = ledger();
    let session = l.session("subj-1");
    let mut seqs = Vec::new();
    for i in 0..5 {
        let event = Event::new(T0 + i, "op-anna", kinds::COMMAND)
            .session(session)
            .detail(json!({ "command": "set_depth", "i": i }));
        seqs.push(l.store.append_event(&event).expect("appended"));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let first_page = l.store.events_after(0, 3).expect("page");
    assert_eq!(first_page.len(), 3);
    let next = l.store.events_after(first_page[2].seq, 100).expect("page");
    assert_eq!(next.len(), 3, "1 session_created + 5 commands = 6 events");
    assert_eq!(next.last().map(|e| e.seq), seqs.last().copied());
    assert_eq!(next[2].event.detail["i"], json!(4));
    assert!(l.store.events_after(i64::MAX, 10).expect("page").is_empty());
}

#[test]
fn append_event_refuses_ledger_kinds_bad_fields_and_unknown_sessions() {
    let mut l = ledger();
    let cases = [
        Event::new(T0, "op-anna", kinds::CARTRIDGE_SPENT),
        Event::new(T0, "op-anna", kinds::SESSION_STATE),
        Event::new(T0, "op-anna", "Fault"),
        Event::new(T0, "op-anna", ""),
        Event::new(T0, "", kinds::FAULT),
        Event::new(-5, "op-anna", kinds::FAULT),
        Event::new(T0, "op-anna", kinds::FAULT).reason(""),
        Event::new(T0, "op-anna", kinds::FAULT).cartridge("bad id"),
        Event::new(T0, "op-anna", kinds::FAULT).detail(json!("x".repeat(17_000))),
    ];
    for event in &cases {
        assert_eq!(
            code(l.store.append_event(event)),
            "invalid_input",
            "{event:?}"
        );
    }
    assert_eq!(
        code(
            l.store
                .append_event(&Event::new(T0, "op-anna", kinds::FAULT).session(42))
        ),
        "not_found"
    );
    assert_eq!(l.event_count(), 0);
}

// --- reports ----------------------------------------------------------------------------------

fn reported_session(l: &mut Ledger) -> SessionId {
    let over = Override {
        actor: "dr-chen".to_owned(),
        reason: "follow-up, agreed".to_owned(),
    };
    l.running_session("subj-1", &cart("C-1"));
    let session = l
        .store
        .create_session(
            &new_session("subj-1"),
            T0 + DAY,
            INTERVAL_28_DAYS,
            Some(&over),
        )
        .expect("created")
        .id;
    let now2 = Now {
        unix_ms: T0 + DAY,
        today: date(2026, 5, 2),
    };
    l.store
        .bind(session, &cart("C-2"), now2, &limits(), "op-anna")
        .expect("bound");
    l.store
        .record_setpoints(session, 500, 120_000, T0 + DAY + 1, "op-anna")
        .expect("setpoints");
    for to in [SessionState::Armed, SessionState::Running] {
        l.store
            .set_session_state(session, to, "op-anna", None, T0 + DAY + 2)
            .expect("state");
    }
    l.store
        .record_setpoints(session, 750, 150_000, T0 + DAY + 3, "op-anna")
        .expect("setpoints");
    l.store
        .append_event(
            &Event::new(T0 + DAY + 4, "system", kinds::FAULT)
                .session(session)
                .reason("stroke stall, \"jam\" at cam")
                .detail(json!({ "fault": "stroke_stall" })),
        )
        .expect("fault");
    l.store
        .end_session(
            session,
            T0 + DAY + 5,
            240_000,
            36_000,
            "completed",
            "op-anna",
        )
        .expect("ended");
    session
}

#[test]
fn session_report_json_holds_the_whole_session() {
    let mut l = ledger();
    let session = reported_session(&mut l);
    let report = l.store.session_report(session).expect("report");
    let v = serde_json::to_value(&report).expect("json");
    assert_eq!(v["session_id"], json!(session));
    assert_eq!(v["operator"], json!("op-anna"));
    assert_eq!(v["subject_ref"], json!("subj-1"));
    assert_eq!(v["area"], json!("face"));
    assert_eq!(
        v["checklist"],
        json!([
            { "item": "no active acne", "confirmed": true },
            { "item": "numbing applied", "confirmed": false }
        ])
    );
    assert_eq!(v["state"], json!("ended"));
    assert_eq!(
        v["cartridge"],
        json!({
            "id": "C-2", "lot": "LOT-1", "needles": "pins36", "expiry": "2027-01-31",
            "state": "spent", "spent_reason": "session_ended"
        })
    );
    assert_eq!(v["created_at_ms"], json!(T0 + DAY));
    assert_eq!(v["started_at_ms"], json!(T0 + DAY + 2));
    assert_eq!(v["ended_at_ms"], json!(T0 + DAY + 5));
    assert_eq!(v["run_ms"], json!(240_000));
    assert_eq!(v["strokes"], json!(36_000));
    assert_eq!(v["end_reason"], json!("completed"));
    let setpoints: Vec<(u32, u32)> = report
        .setpoints
        .iter()
        .map(|s| (s.depth_um, s.rate_mhz))
        .collect();
    assert_eq!(setpoints, [(500, 120_000), (750, 150_000)]);
    assert_eq!(report.faults.len(), 1);
    assert_eq!(v["faults"][0]["detail"]["fault"], json!("stroke_stall"));
    assert_eq!(report.overrides.len(), 1);
    assert_eq!(v["overrides"][0]["actor"], json!("dr-chen"));
    assert_eq!(v["overrides"][0]["reason"], json!("follow-up, agreed"));
    let timeline: Vec<&str> = report.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(
        timeline,
        [
            "session_created",
            "interval_override",
            "cartridge_registered",
            "cartridge_bound",
            "session_state",
            "setpoints",
            "session_state",
            "session_state",
            "setpoints",
            "fault",
            "session_state",
            "cartridge_spent",
        ]
    );
}

#[test]
fn session_report_csv_has_a_header_and_one_quoted_row_per_event() {
    let mut l = ledger();
    let session = reported_session(&mut l);
    let report = l.store.session_report(session).expect("report");
    let csv = report_csv(&report, "No makeup for 24 hours; sunscreen.");
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], CSV_HEADER);
    assert_eq!(
        CSV_HEADER,
        "at_ms,kind,depth_um,rate_mhz,actor,reason,plan_id,plan_session,plan_sessions,\
         next_window_opens_at_ms,next_window_closes_at_ms"
    );
    assert_eq!(
        lines.len(),
        1 + report.timeline.len() + 1 + 1,
        "rows + the after-care row + trailing CRLF"
    );
    assert_eq!(
        lines[lines.len() - 2],
        ",post_care,,,,No makeup for 24 hours; sunscreen.,,,,,"
    );
    assert_eq!(lines.last(), Some(&""));
    // Outside a plan, the plan context's five cells are empty.
    assert_eq!(
        lines[2],
        format!(
            "{},interval_override,,,dr-chen,\"follow-up, agreed\",,,,,",
            T0 + DAY
        )
    );
    assert_eq!(
        lines[6],
        format!("{},setpoints,500,120000,op-anna,,,,,,", T0 + DAY + 1)
    );
    assert_eq!(
        lines[10],
        format!(
            "{},fault,,,system,\"stroke stall, \"\"jam\"\" at cam\",,,,,",
            T0 + DAY + 4
        )
    );
    assert_eq!(
        lines[11],
        format!("{},session_state,,,op-anna,completed,,,,,", T0 + DAY + 5)
    );
}

#[test]
fn session_report_csv_neutralises_spreadsheet_formulas() {
    let mut l = ledger();
    let session = l
        .store
        .create_session(&new_session("subj-csv"), T0, INTERVAL_28_DAYS, None)
        .expect("created")
        .id;
    l.store
        .append_event(
            &Event::new(T0 + 1, "@evil", kinds::OVERRIDE)
                .session(session)
                .reason("=HYPERLINK(\"http://x\",\"click\")"),
        )
        .expect("event");
    l.store
        .append_event(
            &Event::new(T0 + 2, "+op", kinds::OVERRIDE)
                .session(session)
                .reason("-1+1"),
        )
        .expect("event");
    let report = l.store.session_report(session).expect("report");
    let csv = report_csv(&report, "=cmd|' /C calc'!A0");
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[2],
        format!(
            "{},override,,,'@evil,\"'=HYPERLINK(\"\"http://x\"\",\"\"click\"\")\",,,,,",
            T0 + 1
        )
    );
    assert_eq!(lines[3], format!("{},override,,,'+op,'-1+1,,,,,", T0 + 2));
    assert_eq!(lines[4], ",post_care,,,,'=cmd|' /C calc'!A0,,,,,");
    // No cell of any row starts with a formula character.
    for line in &lines {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t']),
                "{cell:?} in {line:?}"
            );
        }
    }
}

#[test]
fn report_of_an_unknown_session_is_not_found() {
    let l = ledger();
    assert_eq!(code(l.store.session_report(404)), "not_found");
}

// --- opening ----------------------------------------------------------------------------------

#[test]
fn ledger_file_is_in_wal_mode_at_the_current_schema_version() {
    let l = ledger();
    let conn = raw(&l.path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn database_from_a_newer_program_is_refused_untouched() {
    let l = ledger();
    drop(l.store);
    raw(&l.path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("pragma");
    match Store::open(&l.path) {
        Err(e @ StoreError::UnsupportedSchema { .. }) => {
            assert_eq!(e.code(), "storage_schema_unsupported");
        }
        other => panic!("expected unsupported schema, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_a_storage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42; 4096]).expect("write");
    let err = Store::open(&path).expect_err("not a database");
    assert_eq!(err.code(), "storage_error");
}

// --- crash safety -----------------------------------------------------------------------------

/// Environment variable naming the ledger file the crash child writes to.
const CRASH_DB_ENV: &str = "NEEDLED_LEDGER_CRASH_DB";

/// Helper process for `killed_writer_leaves_a_consistent_ledger`: writes session after session
/// (ended, aborted after a cartridge removal, or left running) until it is killed. Ignored, so
/// it only runs when that test starts it; without the variable it does nothing.
#[test]
#[ignore = "helper process started by killed_writer_leaves_a_consistent_ledger"]
fn crash_child_writes_until_killed() {
    let Some(path) = std::env::var_os(CRASH_DB_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&path)).expect("open");
    for i in 0i64.. {
        let at = T0 + i * 10;
        let s = store
            .create_session(&new_session(&format!("subj-{i}")), at, 0, None)
            .expect("create")
            .id;
        let tag = cart(&format!("K-{i}"));
        store.bind(s, &tag, now(at), &limits(), "op").expect("bind");
        for to in [SessionState::Armed, SessionState::Running] {
            store
                .set_session_state(s, to, "op", None, at + 1)
                .expect("state");
        }
        store
            .record_setpoints(s, 500, 120_000, at + 2, "op")
            .expect("setpoints");
        store
            .add_usage(tag.id(), 1_000, 150, &limits())
            .expect("usage");
        match i % 3 {
            0 => {
                store
                    .end_session(s, at + 3, 1_000, 150, "completed", "op")
                    .expect("end");
            }
            1 => {
                store
                    .spend(tag.id(), "removed mid-session", "system", at + 3)
                    .expect("spend");
                store
                    .set_session_state(s, SessionState::Aborted, "system", Some("removed"), at + 3)
                    .expect("abort");
            }
            _ => {} // left running, as if the service died during treatment
        }
    }
}

/// Invariants that must hold after a crash at any point: every state is backed by its events
/// and every binding is consistent on both sides.
fn assert_ledger_consistent(path: &Path) {
    let conn = raw(path);
    let violations = [
        (
            "spent cartridge without exactly one cartridge_spent event",
            "SELECT count(*) FROM cartridges c WHERE c.state = 'spent' AND (SELECT count(*) \
             FROM events e WHERE e.kind = 'cartridge_spent' AND e.cartridge_id = c.id) <> 1",
        ),
        (
            "cartridge_spent event for a cartridge that is not spent",
            "SELECT count(*) FROM events e JOIN cartridges c ON c.id = e.cartridge_id \
             WHERE e.kind = 'cartridge_spent' AND c.state <> 'spent'",
        ),
        (
            "cartridge without exactly one cartridge_registered event",
            "SELECT count(*) FROM cartridges c WHERE (SELECT count(*) FROM events e \
             WHERE e.kind = 'cartridge_registered' AND e.cartridge_id = c.id) <> 1",
        ),
        (
            "bound cartridge whose session does not name it, or without its bound event",
            "SELECT count(*) FROM cartridges c WHERE c.session_id IS NOT NULL AND (NOT EXISTS \
             (SELECT 1 FROM sessions s WHERE s.id = c.session_id AND s.cartridge_id = c.id) \
             OR (SELECT count(*) FROM events e WHERE e.kind = 'cartridge_bound' \
                 AND e.cartridge_id = c.id) <> 1)",
        ),
        (
            "session without exactly one session_created event",
            "SELECT count(*) FROM sessions s WHERE (SELECT count(*) FROM events e \
             WHERE e.kind = 'session_created' AND e.session_id = s.id) <> 1",
        ),
        (
            "session whose state is not the last state its events recorded",
            "SELECT count(*) FROM sessions s WHERE s.state <> coalesce((SELECT \
             json_extract(e.detail, '$.to') FROM events e WHERE e.session_id = s.id \
             AND e.kind = 'session_state' ORDER BY e.seq DESC LIMIT 1), 'created')",
        ),
    ];
    for (what, sql) in violations {
        let count: i64 = conn.query_row(sql, [], |r| r.get(0)).expect(what);
        assert_eq!(count, 0, "{what}");
    }
}

#[test]
fn killed_writer_leaves_a_consistent_ledger() {
    let exe = std::env::current_exe().expect("test binary");
    for kill_after_events in [15_i64, 120, 400] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.db");
        drop(Store::open(&path).expect("create ledger"));
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "crash_child_writes_until_killed", "--ignored"])
            .env(CRASH_DB_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn writer");
        let poll = raw(&path);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let events: i64 = poll
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap_or(0);
            if events >= kill_after_events {
                break;
            }
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("writer exited on its own: {status}");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("writer too slow: {events} events in 60 s");
            }
            thread::sleep(std::time::Duration::from_millis(1));
        }
        child.kill().expect("kill writer");
        child.wait().expect("reap writer");
        drop(poll);

        assert_ledger_consistent(&path);
        let mut store = Store::open(&path).expect("reopen after crash");
        let sessions_before: i64 = raw(&path)
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("count");
        assert!(sessions_before > 0);
        store
            .abort_open_sessions(T0 + DAY, "service restarted")
            .expect("recovery");
        assert_ledger_consistent(&path);
        let open: i64 = raw(&path)
            .query_row(
                "SELECT (SELECT count(*) FROM cartridges WHERE state <> 'spent' \
                 AND session_id IS NOT NULL) + (SELECT count(*) FROM sessions \
                 WHERE state NOT IN ('ended', 'aborted'))",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            open, 0,
            "recovery leaves no open session and no usable bound cartridge"
        );
    }
}
