//! The SQLite ledger: cartridges, treatment sessions and the append-only event log.
//!
//! One [`Store`] wraps one SQLite connection (WAL journal, `synchronous=FULL`, foreign keys
//! on). Every state change runs in ONE `BEGIN IMMEDIATE` transaction together with the event
//! rows that record it, so after a crash or a power cut at any point either both are on disk
//! or neither is: no cartridge can be used twice and no event is lost. Several `Store`s may
//! open the same file (other processes, tools); writers queue on SQLite's lock for up to
//! [`BUSY_TIMEOUT`].
//!
//! The database backs the code's rules with its own (see `schema.rs`): cartridge states only
//! move forward (new -> in_use -> spent), a cartridge's binding to a session is final and
//! unique, usage counters never decrease, finished sessions are frozen, nothing is ever
//! deleted, and events can be neither updated nor deleted.
//!
//! Time is always passed in by the caller (`now_ms`: unix milliseconds; [`Now`] where the
//! calendar date matters too), so behaviour is deterministic under test.
//!
//! Refusals are typed ([`LedgerError`], with stable codes) and change nothing.

mod cartridges;
mod error;
mod events;
mod people;
mod plans;
mod report;
mod schema;
mod sessions;
mod validate;

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::cartridge::Date;

pub use cartridges::{CartridgeLimits, CartridgeRecord, CartridgeState, InUseCartridge};
pub use error::{LedgerError, StoreError};
pub use events::{kinds, Event, EventRecord, MAX_EVENTS_PAGE};
pub use people::{
    same_hash, token_hash, PeopleError, Person, TokenHash, PERSON_ADDED, PERSON_REVOKED,
};
pub use plans::{
    active_window, done as plan_done, next_window, plan_kinds, session_time,
    status as plan_state_now, NewPlan, PlanChange, PlanEvent, PlanId, PlanRecord, PlanSession,
    PlanState, PlanStatus, PlannedSession, MAX_PLAN_AREAS, MAX_PLAN_DAYS, MAX_PLAN_SESSIONS,
};
pub use report::{
    report_csv, ReportCartridge, ReportPlan, SessionReport, SetpointEntry, TimelineEntry,
    CSV_HEADER, CSV_POST_CARE_KIND,
};
pub use schema::SCHEMA_VERSION;
pub use sessions::{ChecklistItem, NewSession, Override, SessionId, SessionRecord, SessionState};
pub use validate::{
    is_blank, MAX_CHECKLIST_ITEMS, MAX_DETAIL_BYTES, MAX_REASON_CHARS, MAX_TEXT_CHARS,
};

/// Checks `reason` as the ledger checks a reason (not blank, at most [`MAX_REASON_CHARS`], no
/// control characters but newline and tab), so the service can refuse before it acts.
pub fn check_reason(reason: &str) -> Result<(), LedgerError> {
    validate::reason("reason", reason)
}

/// The actor recorded for changes the store or the service makes on its own (registration
/// of a cartridge on first sight, crash recovery).
pub const SYSTEM_ACTOR: &str = "system";

/// How long a write waits for another connection's write transaction before giving up with a
/// storage error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The current time as the ledger needs it where expiry dates are checked: unix milliseconds
/// and the calendar date the expiry is compared with (the caller decides the time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix time in milliseconds.
    pub unix_ms: i64,
    /// Today's date; a cartridge may be used up to and including its expiry date.
    pub today: Date,
}

impl Now {
    /// `unix_ms` with its UTC date, if the date is in [`Date`]'s range.
    pub fn utc(unix_ms: i64) -> Option<Now> {
        Date::from_unix_ms(unix_ms).map(|today| Now { unix_ms, today })
    }
}

/// How an injected storage failure shows itself (sim only: see [`WriteFaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Writes succeed.
    Off = 0,
    /// Every write transaction fails to start, as on a full disk (`SQLITE_FULL`).
    Write = 1,
    /// Every write runs, then its commit fails as when the fsync of the WAL fails
    /// (`SQLITE_IOERR_FSYNC`); the transaction is rolled back.
    Fsync = 2,
}

/// Injected faults of the write path, shared between the sim's controls and the store: a
/// full disk, failing fsyncs, slow writes. Only the sim backend installs one.
#[derive(Debug, Default)]
pub struct WriteFaults {
    mode: AtomicU8,
    delay_ms: AtomicU64,
}

impl WriteFaults {
    /// Makes writes fail (or succeed again, with [`FailMode::Off`]).
    pub fn set_mode(&self, mode: FailMode) {
        self.mode.store(mode as u8, Ordering::Release);
    }

    /// Makes every write transaction wait `ms` before it starts (0: no delay).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::Release);
    }

    fn mode(&self) -> FailMode {
        match self.mode.load(Ordering::Acquire) {
            1 => FailMode::Write,
            2 => FailMode::Fsync,
            _ => FailMode::Off,
        }
    }
}

fn injected(code: std::os::raw::c_int, what: &str) -> LedgerError {
    LedgerError::Db(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(code),
        Some(format!("injected: {what}")),
    ))
}

/// The ledger: one SQLite connection. Use it from one thread at a time (e.g. behind a
/// mutex); open more `Store`s on the same file for concurrent users.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    faults: Option<Arc<WriteFaults>>,
}

impl Store {
    /// Opens (creating if needed) the ledger at `path`, configures the connection
    /// (`journal_mode=WAL`, `synchronous=FULL`, `foreign_keys=ON`, busy timeout) and creates or
    /// migrates the schema, tracked in `PRAGMA user_version`. A database written by a newer
    /// program is refused rather than touched.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal { mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        Ok(Store { conn, faults: None })
    }

    /// Opens another connection on this store's file (for a reader beside the writer).
    pub fn reopen(&self) -> Result<Store, StoreError> {
        let path = self.conn.path().unwrap_or_default().to_string();
        Store::open(Path::new(&path))
    }

    /// Installs injected write faults (the sim's full disk, failing fsync, slow writes).
    pub fn inject_write_faults(&mut self, faults: Arc<WriteFaults>) {
        self.faults = Some(faults);
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits only if it succeeds; any
    /// error rolls everything back.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let mode = match &self.faults {
            Some(faults) => {
                let delay = faults.delay_ms.load(Ordering::Acquire);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                faults.mode()
            }
            None => FailMode::Off,
        };
        if mode == FailMode::Write {
            return Err(injected(rusqlite::ffi::SQLITE_FULL, "disk full"));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        if mode == FailMode::Fsync {
            // Dropping the transaction rolls it back.
            drop(tx);
            return Err(injected(rusqlite::ffi::SQLITE_IOERR_FSYNC, "fsync failed"));
        }
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in one read transaction, so it sees a single consistent snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// A stored value that does not parse: the database was changed behind the ledger's back.
fn parse_stored<T>(column: &str, value: &str) -> Result<T, LedgerError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| LedgerError::Corrupt(format!("{column} = {value:?}: {e}")))
}

/// A stored counter as `u64` (the schema's CHECKs keep them non-negative).
fn stored_u64(column: &str, value: i64) -> Result<u64, LedgerError> {
    u64::try_from(value).map_err(|_| LedgerError::Corrupt(format!("{column} = {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_configures_wal_full_sync_foreign_keys_and_busy_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("ledger.db")).expect("open");
        let pragma = |name: &str| -> i64 {
            store
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .expect("pragma")
        };
        // synchronous: 2 = FULL.
        assert_eq!(pragma("synchronous"), 2);
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("busy_timeout"), 5_000);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn injected_write_faults_fail_writes_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("ledger.db")).expect("open");
        let faults = Arc::new(WriteFaults::default());
        store.inject_write_faults(Arc::clone(&faults));
        let event = Event::new(1, SYSTEM_ACTOR, "probe");
        for mode in [FailMode::Write, FailMode::Fsync] {
            faults.set_mode(mode);
            let err = store.append_event(&event).expect_err("injected failure");
            assert_eq!(err.code(), "storage_error");
            assert!(err.is_unavailable(), "{err}");
        }
        assert!(store.events_after(0, 10).expect("read").is_empty());
        faults.set_mode(FailMode::Off);
        store.append_event(&event).expect("writes again");
        assert_eq!(store.events_after(0, 10).expect("read").len(), 1);
    }

    #[test]
    fn now_utc_derives_the_calendar_date() {
        let now = Now::utc(1_777_593_600_000).expect("in range");
        assert_eq!(now.today, Date::new(2026, 5, 1).expect("valid"));
        assert_eq!(Now::utc(-1), None);
    }

    #[test]
    fn unparsable_stored_values_are_reported_as_corrupt_storage() {
        let err = parse_stored::<SessionState>("sessions.state", "flying").expect_err("bad");
        assert_eq!(err.code(), "storage_error");
        assert!(err.to_string().contains("flying"));
        assert_eq!(
            stored_u64("run_ms", -1).expect_err("bad").code(),
            "storage_error"
        );
    }
}
