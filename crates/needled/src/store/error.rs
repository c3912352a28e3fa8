//! The ledger's errors, each with a stable machine code.

use crate::cartridge::Date;

use super::{SessionId, SessionState};

/// Why [`Store::open`](super::Store::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused (file not openable, not a database, locked past the busy timeout...).
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file's schema version is not one this program knows (e.g. written by a newer one).
    #[error("database schema version {found} is not supported (this program knows {supported})")]
    UnsupportedSchema {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The version this program creates.
        supported: i64,
    },
    /// SQLite would not switch the file to WAL mode (e.g. an in-memory database).
    #[error("database could not be put in WAL journal mode (it is in {mode} mode)")]
    NotWal {
        /// The journal mode SQLite reported.
        mode: String,
    },
}

impl StoreError {
    /// The stable machine code: `storage_schema_unsupported` or `storage_error`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::UnsupportedSchema { .. } => "storage_schema_unsupported",
            StoreError::Sqlite(_) | StoreError::NotWal { .. } => "storage_error",
        }
    }
}

/// Why a ledger operation was refused. A refusal changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The cartridge is spent; spending is final.
    #[error("cartridge {id} is spent")]
    CartridgeSpent {
        /// Cartridge id.
        id: String,
    },
    /// The cartridge's expiry date is before today.
    #[error("cartridge {id} expired on {expiry}")]
    CartridgeExpired {
        /// Cartridge id.
        id: String,
        /// Its expiry date.
        expiry: Date,
    },
    /// The cartridge's lot is recalled.
    #[error("lot {lot} is recalled")]
    LotRecalled {
        /// The recalled lot.
        lot: String,
    },
    /// The cartridge is bound to another session.
    #[error("cartridge {id} is in use by session {session_id}")]
    CartridgeInUse {
        /// Cartridge id.
        id: String,
        /// The session it is bound to.
        session_id: SessionId,
    },
    /// The cartridge has used up its run-time or stroke budget.
    #[error("cartridge {id} has used up its run-time or stroke budget")]
    BudgetExhausted {
        /// Cartridge id.
        id: String,
    },
    /// A tag names a known cartridge id but its lot, needles or expiry differ from the
    /// registered cartridge: a cloned or re-labelled tag.
    #[error("tag of cartridge {id} does not match the registered cartridge")]
    CartridgeMismatch {
        /// Cartridge id.
        id: String,
    },
    /// The seated cartridge is not the one bound to the session.
    #[error(
        "session {session_id} is bound to cartridge {bound:?}, but cartridge {seated} is seated"
    )]
    WrongCartridge {
        /// The session.
        session_id: SessionId,
        /// The cartridge bound to it, if any.
        bound: Option<String>,
        /// The cartridge whose tag was read.
        seated: String,
    },
    /// No such record.
    #[error("{what} {id} not found")]
    NotFound {
        /// "session" or "cartridge".
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The subject had a session that reached running less than the minimum interval ago.
    #[error(
        "subject had a session started at {}; the next may start at {} unless overridden \
         with a reason",
        utc(*.last_started_at_ms),
        utc(*.earliest_allowed_ms)
    )]
    SessionInterval {
        /// Earliest unix ms at which a session may be created without an override.
        earliest_allowed_ms: i64,
        /// When the subject's last session started running.
        last_started_at_ms: i64,
    },
    /// The session's state does not allow the operation.
    #[error("session {session_id} is {current}; cannot {action}")]
    SessionWrongState {
        /// The session.
        session_id: SessionId,
        /// Its current state.
        current: SessionState,
        /// What was asked, in words ("bind a cartridge", "move to running", ...).
        action: String,
    },
    /// A treatment plan's rule refuses the request (`code`: `plan_stopped`, `plan_complete`,
    /// `plan_session_open`, `plan_window_not_open`, `plan_area`, `plan_subject_mismatch`,
    /// `plan_session_done`).
    #[error("{message}")]
    Plan {
        /// The stable code.
        code: &'static str,
        /// What was refused and why.
        message: String,
    },
    /// The input is malformed or out of range; the message says which field and why.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// SQLite refused (I/O error, lock held past the busy timeout, a schema constraint).
    #[error("storage error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored value does not parse: the database was changed outside the ledger.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A unix-ms wall-clock time as a UTC RFC 3339 date and time (`2026-12-02T05:17:35Z`), for
/// people reading a refusal; the raw number where it is outside jiff's range.
pub(crate) fn utc(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map_or_else(|_| format!("{unix_ms} ms after 1970"), |t| t.to_string())
}

impl LedgerError {
    /// Whether the ledger could not write (or read) at all: a full disk, an I/O or fsync
    /// error, a read-only or corrupt file, a lock held past the busy timeout. Unlike a
    /// refusal, retrying later may succeed, and the service must not act meanwhile.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            LedgerError::Db(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DiskFull
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::ReadOnly
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::OutOfMemory
                    | C::NoLargeFileSupport
                    | C::FileLockingProtocolFailed
                    | C::PermissionDenied
            ),
            LedgerError::Corrupt(_) => true,
            _ => false,
        }
    }

    /// The stable machine code of this error, for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::CartridgeSpent { .. } => "cartridge_spent",
            LedgerError::CartridgeExpired { .. } => "cartridge_expired",
            LedgerError::LotRecalled { .. } => "lot_recalled",
            LedgerError::CartridgeInUse { .. } => "cartridge_in_use",
            LedgerError::BudgetExhausted { .. } => "cartridge_budget_exhausted",
            LedgerError::CartridgeMismatch { .. } | LedgerError::WrongCartridge { .. } => {
                "cartridge_mismatch"
            }
            LedgerError::NotFound { .. } => "not_found",
            LedgerError::SessionInterval { .. } => "session_interval",
            LedgerError::SessionWrongState { .. } => "session_wrong_state",
            LedgerError::Plan { code, .. } => code,
            LedgerError::InvalidInput(_) => "invalid_input",
            LedgerError::Db(_) | LedgerError::Corrupt(_) => "storage_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_interval_refusal_names_utc_times_not_unix_ms() {
        let e = LedgerError::SessionInterval {
            earliest_allowed_ms: 1_767_225_600_000,
            last_started_at_ms: 1_764_806_400_123,
        };
        let text = e.to_string();
        assert!(text.contains("2026-01-01T00:00:00Z"), "{text}");
        assert!(text.contains("2025-12-04T00:00:00.123Z"), "{text}");
        assert!(!text.contains("1767225600000"), "{text}");
        assert_eq!(e.code(), "session_interval");
    }

    #[test]
    fn a_time_outside_the_calendar_is_still_shown() {
        assert_eq!(utc(i64::MAX), format!("{} ms after 1970", i64::MAX));
    }
}
