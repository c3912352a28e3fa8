//! The ledger's SQL schema and its migration, tracked in `PRAGMA user_version`.
//!
//! The schema repeats the ledger's safety rules as constraints and triggers, so that a bug in
//! the Rust code (or a hand-written SQL statement) cannot break them:
//! - cartridges are inserted new and unused, sessions are inserted created and unbound;
//! - a cartridge's state only moves new -> in_use -> spent (or new -> spent);
//! - a cartridge is bound to at most one session, and that binding never changes
//!   (`cartridges.session_id` and `sessions.cartridge_id` are each unique, final, and must
//!   point at each other);
//! - a cartridge's identity (id, lot, needles, expiry) and its spent record are fixed, and its
//!   usage counters never decrease (no budget "refill");
//! - ended and aborted sessions are frozen;
//! - cartridges, sessions and recalled lots are never deleted; events are never updated or
//!   deleted;
//! - (version 2) plans are never deleted, a stopped plan is frozen, a session's plan is final,
//!   plan events are append-only.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// The schema version this code creates and understands.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// The schema's steps: version n is the first n of them. Each step is self-contained (it
/// only adds), so a new one goes at the end.
const STEPS: [&str; 4] = [
    SCHEMA_V1,
    SCHEMA_V2_PLANS,
    SCHEMA_V3_PEOPLE,
    SCHEMA_V4_CARTRIDGE_SIGNER,
];

/// Version 1 of the schema.
const SCHEMA_V1: &str = r#"
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    operator      TEXT    NOT NULL CHECK (length(operator) > 0),
    subject_ref   TEXT    NOT NULL CHECK (length(subject_ref) > 0),
    area          TEXT    NOT NULL CHECK (length(area) > 0),
    checklist     TEXT    NOT NULL CHECK (json_valid(checklist)),
    state         TEXT    NOT NULL CHECK (state IN
                    ('created', 'bound', 'armed', 'running', 'paused', 'ended', 'aborted')),
    cartridge_id  TEXT    REFERENCES cartridges(id),
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    ended_at_ms   INTEGER,
    run_ms        INTEGER NOT NULL DEFAULT 0 CHECK (run_ms >= 0),
    strokes       INTEGER NOT NULL DEFAULT 0 CHECK (strokes >= 0),
    end_reason    TEXT,
    CHECK (state IN ('created', 'aborted') OR cartridge_id IS NOT NULL),
    CHECK ((state IN ('ended', 'aborted')) = (ended_at_ms IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX sessions_one_per_cartridge ON sessions(cartridge_id)
    WHERE cartridge_id IS NOT NULL;
CREATE INDEX sessions_by_subject ON sessions(subject_ref, started_at_ms);

CREATE TABLE cartridges (
    id               TEXT    PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 16),
    lot              TEXT    NOT NULL CHECK (length(lot) BETWEEN 1 AND 16),
    needles          TEXT    NOT NULL CHECK (needles IN
                       ('pins12', 'pins24', 'pins36', 'pins42', 'nano')),
    expiry           TEXT    NOT NULL CHECK (expiry GLOB
                       '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    state            TEXT    NOT NULL CHECK (state IN ('new', 'in_use', 'spent')),
    session_id       INTEGER REFERENCES sessions(id),
    run_ms           INTEGER NOT NULL DEFAULT 0 CHECK (run_ms >= 0),
    strokes          INTEGER NOT NULL DEFAULT 0 CHECK (strokes >= 0),
    registered_at_ms INTEGER NOT NULL,
    bound_at_ms      INTEGER,
    spent_at_ms      INTEGER,
    spent_reason     TEXT,
    CHECK (state <> 'new' OR (session_id IS NULL AND bound_at_ms IS NULL)),
    CHECK (state <> 'in_use' OR (session_id IS NOT NULL AND bound_at_ms IS NOT NULL)),
    CHECK ((state = 'spent') = (spent_at_ms IS NOT NULL AND spent_reason IS NOT NULL))
) STRICT;

CREATE UNIQUE INDEX cartridges_one_per_session ON cartridges(session_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX cartridges_by_lot ON cartridges(lot);

CREATE TABLE recalled_lots (
    lot            TEXT    PRIMARY KEY NOT NULL,
    recalled_at_ms INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    reason         TEXT    NOT NULL
) STRICT;

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL CHECK (length(actor) > 0),
    kind         TEXT    NOT NULL CHECK (length(kind) > 0),
    session_id   INTEGER REFERENCES sessions(id),
    cartridge_id TEXT,
    reason       TEXT,
    detail       TEXT    NOT NULL CHECK (json_valid(detail))
) STRICT;

CREATE INDEX events_by_session ON events(session_id, seq) WHERE session_id IS NOT NULL;

-- Cartridges -------------------------------------------------------------------------------

CREATE TRIGGER cartridges_start_new
BEFORE INSERT ON cartridges
WHEN NEW.state <> 'new' OR NEW.session_id IS NOT NULL OR NEW.run_ms <> 0 OR NEW.strokes <> 0
BEGIN
    SELECT RAISE(ABORT, 'a cartridge is registered new and unused');
END;

CREATE TRIGGER cartridges_state_only_forward
BEFORE UPDATE OF state ON cartridges
WHEN NOT (NEW.state = OLD.state
          OR (OLD.state = 'new' AND NEW.state IN ('in_use', 'spent'))
          OR (OLD.state = 'in_use' AND NEW.state = 'spent'))
BEGIN
    SELECT RAISE(ABORT, 'cartridge state may only move new -> in_use -> spent');
END;

CREATE TRIGGER cartridges_binding_final
BEFORE UPDATE OF session_id, bound_at_ms ON cartridges
WHEN OLD.session_id IS NOT NULL
     AND (NEW.session_id IS NOT OLD.session_id OR NEW.bound_at_ms IS NOT OLD.bound_at_ms)
BEGIN
    SELECT RAISE(ABORT, 'a cartridge binding is final');
END;

CREATE TRIGGER cartridges_identity_fixed
BEFORE UPDATE OF id, lot, needles, expiry, registered_at_ms ON cartridges
WHEN NEW.id IS NOT OLD.id OR NEW.lot IS NOT OLD.lot OR NEW.needles IS NOT OLD.needles
     OR NEW.expiry IS NOT OLD.expiry OR NEW.registered_at_ms IS NOT OLD.registered_at_ms
BEGIN
    SELECT RAISE(ABORT, 'a cartridge identity is fixed');
END;

CREATE TRIGGER cartridges_spent_record_fixed
BEFORE UPDATE OF spent_at_ms, spent_reason ON cartridges
WHEN OLD.state = 'spent'
     AND (NEW.spent_at_ms IS NOT OLD.spent_at_ms OR NEW.spent_reason IS NOT OLD.spent_reason)
BEGIN
    SELECT RAISE(ABORT, 'a spent record is fixed');
END;

CREATE TRIGGER cartridges_usage_never_decreases
BEFORE UPDATE OF run_ms, strokes ON cartridges
WHEN NEW.run_ms < OLD.run_ms OR NEW.strokes < OLD.strokes
BEGIN
    SELECT RAISE(ABORT, 'cartridge usage never decreases');
END;

CREATE TRIGGER cartridges_never_deleted
BEFORE DELETE ON cartridges
BEGIN
    SELECT RAISE(ABORT, 'cartridges are never deleted');
END;

-- Sessions ---------------------------------------------------------------------------------

CREATE TRIGGER sessions_start_created
BEFORE INSERT ON sessions
WHEN NEW.state <> 'created' OR NEW.cartridge_id IS NOT NULL OR NEW.started_at_ms IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a session is created without a cartridge');
END;

CREATE TRIGGER sessions_cartridge_final
BEFORE UPDATE OF cartridge_id ON sessions
WHEN OLD.cartridge_id IS NOT NULL AND NEW.cartridge_id IS NOT OLD.cartridge_id
BEGIN
    SELECT RAISE(ABORT, 'a session cartridge is final');
END;

CREATE TRIGGER sessions_cartridge_bound_to_it
AFTER UPDATE OF cartridge_id ON sessions
WHEN NEW.cartridge_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM cartridges
                     WHERE id = NEW.cartridge_id AND session_id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'a session may only name a cartridge bound to it');
END;

CREATE TRIGGER sessions_finished_frozen
BEFORE UPDATE ON sessions
WHEN OLD.state IN ('ended', 'aborted')
BEGIN
    SELECT RAISE(ABORT, 'a finished session is frozen');
END;

CREATE TRIGGER sessions_never_deleted
BEFORE DELETE ON sessions
BEGIN
    SELECT RAISE(ABORT, 'sessions are never deleted');
END;

-- Recalls ----------------------------------------------------------------------------------

CREATE TRIGGER recalled_lots_final_update
BEFORE UPDATE ON recalled_lots
BEGIN
    SELECT RAISE(ABORT, 'a recall is final');
END;

CREATE TRIGGER recalled_lots_final_delete
BEFORE DELETE ON recalled_lots
BEGIN
    SELECT RAISE(ABORT, 'a recall is final');
END;

-- Events -----------------------------------------------------------------------------------

CREATE TRIGGER events_append_only_update
BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_append_only_delete
BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
"#;

/// Version 2: treatment plans (issue 15), a self-contained step on top of version 1.
/// A plan's planned sessions are a JSON array; a session belongs to at most one plan
/// (`plan_sessions`, final once written); plans are never deleted, a stopped plan is frozen,
/// and plan events are append-only.
const SCHEMA_V2_PLANS: &str = r#"
CREATE TABLE plans (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_ref   TEXT    NOT NULL CHECK (length(subject_ref) > 0),
    areas         TEXT    NOT NULL CHECK (json_valid(areas)),
    sessions      TEXT    NOT NULL CHECK (json_valid(sessions)),
    min_days      INTEGER NOT NULL CHECK (min_days >= 0),
    max_days      INTEGER NOT NULL CHECK (max_days >= min_days),
    state         TEXT    NOT NULL CHECK (state IN ('active', 'stopped')),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL CHECK (length(created_by) > 0),
    stopped_at_ms INTEGER,
    stop_reason   TEXT,
    CHECK ((state = 'stopped') = (stopped_at_ms IS NOT NULL AND stop_reason IS NOT NULL))
) STRICT;

CREATE INDEX plans_by_subject ON plans(subject_ref, id);

CREATE TABLE plan_sessions (
    session_id INTEGER PRIMARY KEY REFERENCES sessions(id),
    plan_id    INTEGER NOT NULL REFERENCES plans(id),
    n          INTEGER NOT NULL CHECK (n >= 1)
) STRICT;

CREATE INDEX plan_sessions_by_plan ON plan_sessions(plan_id, n);

CREATE TABLE plan_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id INTEGER NOT NULL REFERENCES plans(id),
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL CHECK (length(actor) > 0),
    kind    TEXT    NOT NULL CHECK (length(kind) > 0),
    reason  TEXT,
    detail  TEXT    NOT NULL CHECK (json_valid(detail))
) STRICT;

CREATE INDEX plan_events_by_plan ON plan_events(plan_id, seq);

CREATE TRIGGER plans_start_active
BEFORE INSERT ON plans
WHEN NEW.state <> 'active'
BEGIN
    SELECT RAISE(ABORT, 'a plan is created active');
END;

CREATE TRIGGER plans_stopped_frozen
BEFORE UPDATE ON plans
WHEN OLD.state = 'stopped'
BEGIN
    SELECT RAISE(ABORT, 'a stopped plan is frozen');
END;

CREATE TRIGGER plans_identity_fixed
BEFORE UPDATE OF id, subject_ref, created_at_ms, created_by ON plans
WHEN NEW.id IS NOT OLD.id OR NEW.subject_ref IS NOT OLD.subject_ref
     OR NEW.created_at_ms IS NOT OLD.created_at_ms OR NEW.created_by IS NOT OLD.created_by
BEGIN
    SELECT RAISE(ABORT, 'a plan identity is fixed');
END;

CREATE TRIGGER plans_never_deleted
BEFORE DELETE ON plans
BEGIN
    SELECT RAISE(ABORT, 'plans are never deleted');
END;

CREATE TRIGGER plan_sessions_final_update
BEFORE UPDATE ON plan_sessions
BEGIN
    SELECT RAISE(ABORT, 'a session belongs to its plan for good');
END;

CREATE TRIGGER plan_sessions_final_delete
BEFORE DELETE ON plan_sessions
BEGIN
    SELECT RAISE(ABORT, 'a session belongs to its plan for good');
END;

CREATE TRIGGER plan_events_append_only_update
BEFORE UPDATE ON plan_events
BEGIN
    SELECT RAISE(ABORT, 'plan events are append-only');
END;

CREATE TRIGGER plan_events_append_only_delete
BEFORE DELETE ON plan_events
BEGIN
    SELECT RAISE(ABORT, 'plan events are append-only');
END;
"#;

/// Version 3: the people who hold API tokens (`store/people.rs`). Only a SHA-256 of each
/// token is kept; a person is never deleted, only revoked, and a revocation is final.
const SCHEMA_V3_PEOPLE: &str = r#"
CREATE TABLE people (
    name          TEXT    PRIMARY KEY CHECK (length(name) > 0),
    role          TEXT    NOT NULL CHECK (role IN ('operator', 'technician')),
    token_sha256  BLOB    NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL CHECK (length(created_by) > 0),
    revoked_at_ms INTEGER,
    revoked_by    TEXT
);

CREATE TRIGGER people_no_delete
BEFORE DELETE ON people
BEGIN
    SELECT RAISE(ABORT, 'people are revoked, never deleted');
END;

CREATE TRIGGER people_only_revoke
BEFORE UPDATE ON people
WHEN OLD.revoked_at_ms IS NOT NULL
  OR NEW.name IS NOT OLD.name OR NEW.role IS NOT OLD.role
  OR NEW.token_sha256 IS NOT OLD.token_sha256 OR NEW.created_at_ms IS NOT OLD.created_at_ms
  OR NEW.created_by IS NOT OLD.created_by
  OR NEW.revoked_at_ms IS NULL OR NEW.revoked_by IS NULL
BEGIN
    SELECT RAISE(ABORT, 'a person can only be revoked, once');
END;
"#;

/// Version 4: a cartridge's signer (the factory key id) and its chip's public key, as the
/// verified tag named them; fixed once written, like the rest of its identity. Rows from
/// before (version-1 HMAC tags) keep NULL.
const SCHEMA_V4_CARTRIDGE_SIGNER: &str = r#"
ALTER TABLE cartridges ADD COLUMN signer_key_id TEXT;
ALTER TABLE cartridges ADD COLUMN chip_public_key BLOB;

CREATE TRIGGER cartridges_signer_fixed
BEFORE UPDATE OF signer_key_id, chip_public_key ON cartridges
BEGIN
    SELECT RAISE(ABORT, 'a cartridge''s signer and chip key are fixed');
END;
"#;

/// Brings the schema of `conn` to [`SCHEMA_VERSION`] in one immediate transaction (so two
/// processes opening a new file at once cannot both create it).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    // A file at version n gets every step after it, in order, in this one transaction.
    let done = usize::try_from(found)
        .ok()
        .filter(|&n| n <= STEPS.len())
        .ok_or(StoreError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        })?;
    if done < STEPS.len() {
        for step in STEPS.iter().skip(done) {
            tx.execute_batch(step)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conn: &Connection, kind: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .expect("prepare");
        let rows = stmt.query_map([kind], |row| row.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn migration_creates_the_schema_once_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("create");
        let tables = names(&conn, "table");
        let triggers = names(&conn, "trigger");
        assert_eq!(
            tables,
            [
                "cartridges",
                "events",
                "people",
                "plan_events",
                "plan_sessions",
                "plans",
                "recalled_lots",
                "sessions"
            ]
        );
        assert!(triggers.contains(&"events_append_only_update".to_owned()));
        assert!(triggers.contains(&"events_append_only_delete".to_owned()));
        assert!(triggers.contains(&"cartridges_binding_final".to_owned()));
        migrate(&mut conn).expect("second run is a no-op");
        assert_eq!(names(&conn, "table"), tables);
        assert_eq!(names(&conn, "trigger"), triggers);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("pragma");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_file_gains_the_plan_tables_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA_V1).expect("v1");
        conn.pragma_update(None, "user_version", 1).expect("pragma");
        conn.execute(
            "INSERT INTO recalled_lots VALUES ('L1', 1, 'tech', 'notice')",
            [],
        )
        .expect("row");
        migrate(&mut conn).expect("to v2");
        assert!(names(&conn, "table").contains(&"plans".to_owned()));
        let lots: i64 = conn
            .query_row("SELECT count(*) FROM recalled_lots", [], |r| r.get(0))
            .expect("count");
        assert_eq!(lots, 1);
        conn.execute(
            "INSERT INTO plans (subject_ref, areas, sessions, min_days, max_days, state, \
             created_at_ms, created_by) VALUES ('S', '[]', '[]', 28, 42, 'active', 1, 't')",
            [],
        )
        .expect("plan");
        assert!(conn.execute("DELETE FROM plans", []).is_err());
        conn.execute(
            "UPDATE plans SET state = 'stopped', stopped_at_ms = 2, stop_reason = 'r'",
            [],
        )
        .expect("stop");
        assert!(conn
            .execute(
                "UPDATE plans SET state = 'active', stopped_at_ms = NULL",
                []
            )
            .is_err());
    }

    #[test]
    fn a_version_1_ledger_gains_the_signer_columns_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA_V1).expect("v1");
        conn.pragma_update(None, "user_version", 1).expect("pragma");
        conn.execute(
            "INSERT INTO cartridges (id, lot, needles, expiry, state, registered_at_ms)
             VALUES ('OLD-1', 'LOT', 'pins12', '2099-12-31', 'new', 1)",
            [],
        )
        .expect("old row");
        migrate(&mut conn).expect("1 -> latest");
        let signer: Option<String> = conn
            .query_row(
                "SELECT signer_key_id FROM cartridges WHERE id = 'OLD-1'",
                [],
                |r| r.get(0),
            )
            .expect("row kept");
        assert_eq!(signer, None);
        conn.execute(
            "UPDATE cartridges SET signer_key_id = 'k' WHERE id = 'OLD-1'",
            [],
        )
        .expect_err("the signer is fixed");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("pragma");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn unknown_schema_version_is_refused_without_changes() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", -3)
            .expect("pragma");
        match migrate(&mut conn) {
            Err(StoreError::UnsupportedSchema { found, supported }) => {
                assert_eq!((found, supported), (-3, SCHEMA_VERSION));
            }
            other => panic!("expected unsupported schema, got {other:?}"),
        }
        assert!(names(&conn, "table").is_empty());
    }
}
