//! The append-only event log: every command, state change, fault and override, with time,
//! actor and reason. Rows are never updated or deleted (SQLite triggers refuse it).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{validate, LedgerError, SessionId, Store};

/// Event kinds. The ledger writes the first group itself, in the same transaction as the state
/// change they record, and [`Store::append_event`] refuses them, so that the log cannot claim a
/// change that did not happen. The service appends the others (and kinds of its own).
pub mod kinds {
    /// A cartridge was seen for the first time and registered as new.
    pub const CARTRIDGE_REGISTERED: &str = "cartridge_registered";
    /// A cartridge was bound to a session (detail: lot, needles, expiry).
    pub const CARTRIDGE_BOUND: &str = "cartridge_bound";
    /// A cartridge was spent (reason says why).
    pub const CARTRIDGE_SPENT: &str = "cartridge_spent";
    /// A lot was recalled.
    pub const LOT_RECALLED: &str = "lot_recalled";
    /// A session was created (detail: subject_ref, area, checklist).
    pub const SESSION_CREATED: &str = "session_created";
    /// A session changed state (detail: from, to; for "ended" also run_ms, strokes).
    pub const SESSION_STATE: &str = "session_state";
    /// The minimum interval between a subject's sessions was overridden (actor, reason).
    pub const INTERVAL_OVERRIDE: &str = "interval_override";
    /// New depth and stroke-rate setpoints (detail: depth_um, rate_mhz).
    pub const SETPOINTS: &str = "setpoints";

    /// Checklist answers of a created or bound session were confirmed or withdrawn after it
    /// was created (actor; detail: the answers given, the checklist after them).
    pub const CHECKLIST_UPDATED: &str = "checklist_updated";

    /// Kinds only the ledger itself writes.
    pub const LEDGER_OWNED: [&str; 9] = [
        CARTRIDGE_REGISTERED,
        CARTRIDGE_BOUND,
        CARTRIDGE_SPENT,
        LOT_RECALLED,
        SESSION_CREATED,
        SESSION_STATE,
        INTERVAL_OVERRIDE,
        SETPOINTS,
        CHECKLIST_UPDATED,
    ];

    /// A fault (appended by the service; listed in session reports).
    pub const FAULT: &str = "fault";
    /// A command received (appended by the service).
    pub const COMMAND: &str = "command";
    /// Any other override of a rule with a recorded reason (appended by the service; listed in
    /// session reports with interval overrides).
    pub const OVERRIDE: &str = "override";
    /// The cartridge chip's use counter was advanced before a session's first arming
    /// (appended by the service; detail: counter, the value the chip returned).
    pub const CARTRIDGE_COUNTER_ADVANCED: &str = "cartridge_counter_advanced";
}

/// Largest page [`Store::events_after`] returns.
pub const MAX_EVENTS_PAGE: u32 = 1000;

/// One event, as appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, unix ms.
    pub at_ms: i64,
    /// Who did it (operator, technician, token name, or [`SYSTEM_ACTOR`](super::SYSTEM_ACTOR)).
    pub actor: String,
    /// What happened: `[a-z0-9_]{1,64}`, see [`kinds`].
    pub kind: String,
    /// The session it concerns, if any (must exist).
    pub session_id: Option<SessionId>,
    /// The cartridge it concerns, if any (as read from its tag; need not be registered).
    pub cartridge_id: Option<String>,
    /// Why, if anyone said.
    pub reason: Option<String>,
    /// Anything else, as JSON (at most [`MAX_DETAIL_BYTES`](super::MAX_DETAIL_BYTES)).
    pub detail: serde_json::Value,
}

impl Event {
    /// An event with no session, cartridge or reason and an empty JSON object as detail.
    pub fn new(at_ms: i64, actor: impl Into<String>, kind: impl Into<String>) -> Event {
        Event {
            at_ms,
            actor: actor.into(),
            kind: kind.into(),
            session_id: None,
            cartridge_id: None,
            reason: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// This event, about `session_id`.
    pub fn session(mut self, session_id: SessionId) -> Event {
        self.session_id = Some(session_id);
        self
    }

    /// This event, about `cartridge_id`.
    pub fn cartridge(mut self, cartridge_id: impl Into<String>) -> Event {
        self.cartridge_id = Some(cartridge_id.into());
        self
    }

    /// This event, with `reason`.
    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    /// This event, with `detail`.
    pub fn detail(mut self, detail: serde_json::Value) -> Event {
        self.detail = detail;
        self
    }
}

/// A stored event with its sequence number (strictly increasing, never reused).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Position in the log.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Columns read by [`event_from_row`], in order.
pub(super) const EVENT_COLUMNS: &str =
    "seq, at_ms, actor, kind, session_id, cartridge_id, reason, detail";

/// Appends `event` as part of the caller's transaction; returns its seq. No input checks:
/// for the ledger's own events.
pub(super) fn insert(conn: &Connection, event: &Event) -> Result<i64, LedgerError> {
    conn.execute(
        "INSERT INTO events (at_ms, actor, kind, session_id, cartridge_id, reason, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            event.at_ms,
            event.actor,
            event.kind,
            event.session_id,
            event.cartridge_id,
            event.reason,
            event.detail.to_string(),
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Reads a row selected with [`EVENT_COLUMNS`].
pub(super) fn event_from_row(row: &Row<'_>) -> Result<EventRecord, LedgerError> {
    let detail: String = row.get(7)?;
    let detail = serde_json::from_str(&detail)
        .map_err(|e| LedgerError::Corrupt(format!("events.detail: {e}")))?;
    Ok(EventRecord {
        seq: row.get(0)?,
        event: Event {
            at_ms: row.get(1)?,
            actor: row.get(2)?,
            kind: row.get(3)?,
            session_id: row.get(4)?,
            cartridge_id: row.get(5)?,
            reason: row.get(6)?,
            detail,
        },
    })
}

/// The events of one session, in log order.
pub(super) fn for_session(
    conn: &Connection,
    session_id: SessionId,
) -> Result<Vec<EventRecord>, LedgerError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE session_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([session_id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(event_from_row(row)?);
    }
    Ok(out)
}

impl Store {
    /// Appends an event from the service (a fault, a command, a controller state change, an
    /// override...) in its own transaction and returns its seq. Refuses, changing nothing:
    /// an empty or over-long actor or reason, a malformed kind, a kind in
    /// [`kinds::LEDGER_OWNED`], a negative time, an over-large detail, a session that does not
    /// exist.
    pub fn append_event(&mut self, event: &Event) -> Result<i64, LedgerError> {
        validate::time("at_ms", event.at_ms)?;
        validate::text("actor", &event.actor)?;
        validate::kind(&event.kind)?;
        if kinds::LEDGER_OWNED.contains(&event.kind.as_str()) {
            return Err(LedgerError::InvalidInput(format!(
                "event kind {} is written by the ledger itself",
                event.kind
            )));
        }
        if let Some(reason) = &event.reason {
            validate::reason("reason", reason)?;
        }
        if let Some(cartridge_id) = &event.cartridge_id {
            validate::identifier("cartridge_id", cartridge_id)?;
        }
        if event.detail.to_string().len() > validate::MAX_DETAIL_BYTES {
            return Err(LedgerError::InvalidInput(format!(
                "event detail is larger than {} bytes",
                validate::MAX_DETAIL_BYTES
            )));
        }
        self.write(|tx| {
            if let Some(session_id) = event.session_id {
                let exists = tx
                    .query_row("SELECT 1 FROM sessions WHERE id = ?1", [session_id], |_| {
                        Ok(())
                    })
                    .optional()?;
                if exists.is_none() {
                    return Err(LedgerError::NotFound {
                        what: "session",
                        id: session_id.to_string(),
                    });
                }
            }
            insert(tx, event)
        })
    }

    /// Up to `limit` (at most [`MAX_EVENTS_PAGE`]) events with seq greater than `after_seq`,
    /// in log order. Start with `after_seq = 0`.
    pub fn events_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, LedgerError> {
        let limit = limit.min(MAX_EVENTS_PAGE);
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![after_seq, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(event_from_row(row)?);
            }
            Ok(out)
        })
    }
}
