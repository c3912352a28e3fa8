//! Treatment sessions: created -> bound (a cartridge) -> armed -> running <-> paused ->
//! ended | aborted, with the minimum interval between one subject's sessions.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cartridge::Tag;

use super::cartridges::{self, CartridgeLimits, CartridgeRecord, CartridgeState};
use super::events::{self, kinds, Event};
use super::{parse_stored, stored_u64, validate, LedgerError, Now, Store, SYSTEM_ACTOR};

/// A session's id (SQLite rowid; never reused).
pub type SessionId = i64;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Created; no cartridge yet.
    Created,
    /// A cartridge is bound.
    Bound,
    /// Ready to run.
    Armed,
    /// Needles running.
    Running,
    /// Stopped for now; may resume.
    Paused,
    /// Finished normally. Final.
    Ended,
    /// Stopped for good before finishing (by an operator or crash recovery). Final.
    Aborted,
}

impl SessionState {
    const ALL: [SessionState; 7] = [
        SessionState::Created,
        SessionState::Bound,
        SessionState::Armed,
        SessionState::Running,
        SessionState::Paused,
        SessionState::Ended,
        SessionState::Aborted,
    ];

    /// The stable text name, as stored and serialized (`created`, `bound`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Created => "created",
            SessionState::Bound => "bound",
            SessionState::Armed => "armed",
            SessionState::Running => "running",
            SessionState::Paused => "paused",
            SessionState::Ended => "ended",
            SessionState::Aborted => "aborted",
        }
    }

    /// Whether the session is finished (ended or aborted): nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionState::Ended | SessionState::Aborted)
    }

    /// Whether [`Store::set_session_state`] may move a session from `self` to `to`:
    /// bound -> armed, armed/running/paused -> bound (disarm: by the operator or by a fault
    /// that stopped the controller), armed -> running, running <-> paused, and
    /// any unfinished state -> aborted. (created -> bound is [`Store::bind`]; -> ended is
    /// [`Store::end_session`].)
    pub fn can_set(self, to: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, to),
            (Bound, Armed)
                | (Armed, Bound)
                | (Running, Bound)
                | (Paused, Bound)
                | (Armed, Running)
                | (Running, Paused)
                | (Paused, Running)
        ) || (to == Aborted && !self.is_terminal())
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionState {
    type Err = String;

    fn from_str(text: &str) -> Result<SessionState, String> {
        SessionState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown session state {text:?}"))
    }
}

/// One pre-treatment checklist answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    /// The item, e.g. "no active acne in the area".
    pub item: String,
    /// Whether the operator confirmed it.
    pub confirmed: bool,
}

/// What a new session records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// Who performs it: the authenticated person who created it.
    pub operator: String,
    /// The operator the client's request named, if any: recorded in the `session_created`
    /// detail as `stated_operator`, never as an actor.
    #[serde(default)]
    pub stated_operator: Option<String>,
    /// Opaque reference to the treated person (never a name in this ledger).
    pub subject_ref: String,
    /// Treatment area (from configuration, e.g. "face").
    pub area: String,
    /// Checklist answers, in display order; item names are unique.
    pub checklist: Vec<ChecklistItem>,
}

/// Permission to break the minimum-interval rule, with who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Who takes responsibility.
    pub actor: String,
    /// Why (must not be empty).
    pub reason: String,
}

/// A session as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: SessionId,
    /// Who performs it.
    pub operator: String,
    /// Opaque subject reference.
    pub subject_ref: String,
    /// Treatment area.
    pub area: String,
    /// Checklist answers.
    pub checklist: Vec<ChecklistItem>,
    /// Current state.
    pub state: SessionState,
    /// The bound cartridge.
    pub cartridge_id: Option<String>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// First reached running, unix ms.
    pub started_at_ms: Option<i64>,
    /// Ended or aborted, unix ms.
    pub ended_at_ms: Option<i64>,
    /// Motor run time, ms (set when it ends).
    pub run_ms: u64,
    /// Strokes (set when it ends).
    pub strokes: u64,
    /// Why it ended or was aborted.
    pub end_reason: Option<String>,
}

const SESSION_COLUMNS: &str = "id, operator, subject_ref, area, checklist, state, cartridge_id, \
     created_at_ms, started_at_ms, ended_at_ms, run_ms, strokes, end_reason";

fn from_row(row: &Row<'_>) -> Result<SessionRecord, LedgerError> {
    let checklist: String = row.get(4)?;
    let state: String = row.get(5)?;
    Ok(SessionRecord {
        id: row.get(0)?,
        operator: row.get(1)?,
        subject_ref: row.get(2)?,
        area: row.get(3)?,
        checklist: serde_json::from_str(&checklist)
            .map_err(|e| LedgerError::Corrupt(format!("sessions.checklist: {e}")))?,
        state: parse_stored("sessions.state", &state)?,
        cartridge_id: row.get(6)?,
        created_at_ms: row.get(7)?,
        started_at_ms: row.get(8)?,
        ended_at_ms: row.get(9)?,
        run_ms: stored_u64("sessions.run_ms", row.get(10)?)?,
        strokes: stored_u64("sessions.strokes", row.get(11)?)?,
        end_reason: row.get(12)?,
    })
}

/// The session `id`, if any.
pub(super) fn load(conn: &Connection, id: SessionId) -> Result<Option<SessionRecord>, LedgerError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => from_row(row).map(Some),
        None => Ok(None),
    }
}

/// The session `id`, or [`LedgerError::NotFound`].
pub(super) fn require(conn: &Connection, id: SessionId) -> Result<SessionRecord, LedgerError> {
    load(conn, id)?.ok_or_else(|| LedgerError::NotFound {
        what: "session",
        id: id.to_string(),
    })
}

fn wrong_state(session: &SessionRecord, action: impl Into<String>) -> LedgerError {
    LedgerError::SessionWrongState {
        session_id: session.id,
        current: session.state,
        action: action.into(),
    }
}

/// Records a state change of `session` to `to` with its event.
fn state_event(
    conn: &Connection,
    session: &SessionRecord,
    to: SessionState,
    actor: &str,
    reason: Option<&str>,
    now_ms: i64,
    extra: serde_json::Value,
) -> Result<(), LedgerError> {
    let mut detail = json!({ "from": session.state, "to": to });
    if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        detail.extend(extra);
    }
    let mut event = Event::new(now_ms, actor, kinds::SESSION_STATE)
        .session(session.id)
        .detail(detail);
    event.cartridge_id = session.cartridge_id.clone();
    event.reason = reason.map(str::to_owned);
    events::insert(conn, &event)?;
    Ok(())
}

/// The bound cartridge of a session that wants to arm or run: it must still be in use (not
/// spent, e.g. after removal) and its lot not recalled.
fn require_usable_cartridge(conn: &Connection, session: &SessionRecord) -> Result<(), LedgerError> {
    let Some(id) = session.cartridge_id.as_deref() else {
        return Err(wrong_state(session, "run without a cartridge"));
    };
    let cartridge = cartridges::require(conn, id, &CartridgeLimits::default())?;
    if cartridge.state != CartridgeState::InUse {
        return Err(LedgerError::CartridgeSpent { id: id.to_owned() });
    }
    if cartridge.lot_recalled {
        return Err(LedgerError::LotRecalled { lot: cartridge.lot });
    }
    Ok(())
}

/// Spends the session's cartridge, if it has one that is not spent yet.
fn spend_bound_cartridge(
    conn: &Connection,
    session: &SessionRecord,
    reason: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(), LedgerError> {
    if let Some(id) = session.cartridge_id.as_deref() {
        let cartridge = cartridges::require(conn, id, &CartridgeLimits::default())?;
        if cartridge.state != CartridgeState::Spent {
            cartridges::spend_unchecked(conn, &cartridge, reason, actor, now_ms)?;
        }
    }
    Ok(())
}

/// Aborts an unfinished session and spends its cartridge, if bound (it was out of its
/// sterile package).
fn abort(
    conn: &Connection,
    session: &SessionRecord,
    actor: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(), LedgerError> {
    conn.execute(
        "UPDATE sessions SET state = 'aborted', ended_at_ms = ?2, end_reason = ?3 WHERE id = ?1",
        params![session.id, now_ms, reason.unwrap_or("aborted")],
    )?;
    state_event(
        conn,
        session,
        SessionState::Aborted,
        actor,
        reason,
        now_ms,
        json!({}),
    )?;
    spend_bound_cartridge(conn, session, "session_aborted", actor, now_ms)
}

/// Inserts a checked new session (its text already validated) inside `tx`: the interval
/// rule, the row, event `session_created`, and event `interval_override` when one was used.
/// Treatment plans create their sessions through this too, in their own transaction.
pub(super) fn insert_checked(
    tx: &Connection,
    new: &NewSession,
    now_ms: i64,
    min_interval_ms: i64,
    interval_override: Option<&Override>,
) -> Result<SessionRecord, LedgerError> {
    let checklist = serde_json::to_string(&new.checklist)
        .map_err(|e| LedgerError::InvalidInput(format!("checklist: {e}")))?;
    let last_started: Option<i64> = tx.query_row(
        "SELECT max(started_at_ms) FROM sessions WHERE subject_ref = ?1",
        [&new.subject_ref],
        |row| row.get(0),
    )?;
    let too_soon = last_started.and_then(|last| {
        let earliest = last.saturating_add(min_interval_ms);
        (now_ms < earliest).then_some((last, earliest))
    });
    let used_override = match (too_soon, interval_override) {
        (Some((last, earliest)), None) => {
            return Err(LedgerError::SessionInterval {
                earliest_allowed_ms: earliest,
                last_started_at_ms: last,
            })
        }
        (Some((last, earliest)), Some(o)) => Some((last, earliest, o)),
        (None, _) => None,
    };
    tx.execute(
        "INSERT INTO sessions (operator, subject_ref, area, checklist, state, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, 'created', ?5)",
        params![new.operator, new.subject_ref, new.area, checklist, now_ms],
    )?;
    let id = tx.last_insert_rowid();
    let mut detail = json!({
        "subject_ref": new.subject_ref,
        "area": new.area,
        "checklist": new.checklist,
    });
    if let Some(stated) = &new.stated_operator {
        detail["stated_operator"] = json!(stated);
    }
    let created = Event::new(now_ms, new.operator.as_str(), kinds::SESSION_CREATED)
        .session(id)
        .detail(detail);
    events::insert(tx, &created)?;
    if let Some((last, earliest, o)) = used_override {
        let event = Event::new(now_ms, o.actor.as_str(), kinds::INTERVAL_OVERRIDE)
            .session(id)
            .reason(o.reason.as_str())
            .detail(json!({
                "last_started_at_ms": last,
                "earliest_allowed_ms": earliest,
                "min_interval_ms": min_interval_ms,
            }));
        events::insert(tx, &event)?;
    }
    require(tx, id)
}

pub(super) fn validate_new_session(new: &NewSession) -> Result<(), LedgerError> {
    validate::text("operator", &new.operator)?;
    if let Some(stated) = &new.stated_operator {
        validate::text("stated_operator", stated)?;
    }
    validate::text("subject_ref", &new.subject_ref)?;
    validate::text("area", &new.area)?;
    if new.checklist.len() > validate::MAX_CHECKLIST_ITEMS {
        return Err(LedgerError::InvalidInput(format!(
            "checklist has more than {} items",
            validate::MAX_CHECKLIST_ITEMS
        )));
    }
    let mut seen = HashSet::new();
    for entry in &new.checklist {
        validate::text("checklist item", &entry.item)?;
        if !seen.insert(entry.item.as_str()) {
            return Err(LedgerError::InvalidInput(format!(
                "checklist item {:?} appears twice",
                entry.item
            )));
        }
    }
    Ok(())
}

impl Store {
    /// Creates a session (event `session_created`). Refuses `session_interval` if the same
    /// subject had a session that reached running less than `min_interval_ms` before `now_ms`,
    /// unless `interval_override` is given (then event `interval_override` records its actor
    /// and reason, in the same transaction). Refuses `invalid_input` for empty or over-long
    /// text, duplicate checklist items, a negative interval or time, or an override with an
    /// empty reason (whether or not it is needed).
    pub fn create_session(
        &mut self,
        new: &NewSession,
        now_ms: i64,
        min_interval_ms: i64,
        interval_override: Option<&Override>,
    ) -> Result<SessionRecord, LedgerError> {
        validate_new_session(new)?;
        validate::time("now_ms", now_ms)?;
        if min_interval_ms < 0 {
            return Err(LedgerError::InvalidInput(
                "min_interval_ms must not be negative".to_owned(),
            ));
        }
        if let Some(o) = interval_override {
            validate::text("override actor", &o.actor)?;
            validate::reason("override reason", &o.reason)?;
        }
        self.write(|tx| insert_checked(tx, new, now_ms, min_interval_ms, interval_override))
    }

    /// Binds the cartridge of an authenticated `tag` to a created session, in one
    /// transaction: every check of [`Store::check_and_register`] (registering the cartridge
    /// on first sight), cartridge -> in_use for this session, session -> bound with the
    /// cartridge, events `cartridge_bound` and `session_state`. The schema guarantees no
    /// cartridge is ever bound to two sessions, even if two binds race. Refuses `not_found`,
    /// `session_wrong_state` (not created), and the cartridge refusals.
    pub fn bind(
        &mut self,
        session_id: SessionId,
        tag: &Tag,
        now: Now,
        limits: &CartridgeLimits,
        actor: &str,
    ) -> Result<CartridgeRecord, LedgerError> {
        validate::text("actor", actor)?;
        validate::time("now", now.unix_ms)?;
        self.write(|tx| {
            let session = require(tx, session_id)?;
            if session.state != SessionState::Created {
                return Err(wrong_state(&session, "bind a cartridge"));
            }
            if cartridges::check(tx, tag, now.today, limits, None)?.is_none() {
                cartridges::register(tx, tag, now.unix_ms, Some(session_id))?;
            }
            let changed = tx.execute(
                "UPDATE cartridges SET state = 'in_use', session_id = ?2, bound_at_ms = ?3
                 WHERE id = ?1 AND state = 'new'",
                params![tag.id(), session_id, now.unix_ms],
            )?;
            if changed != 1 {
                // Unreachable after `check`; kept so a logic slip can never double-bind.
                return Err(LedgerError::CartridgeInUse {
                    id: tag.id().to_owned(),
                    session_id,
                });
            }
            tx.execute(
                "UPDATE sessions SET state = 'bound', cartridge_id = ?2 WHERE id = ?1",
                params![session_id, tag.id()],
            )?;
            let bound = Event::new(now.unix_ms, actor, kinds::CARTRIDGE_BOUND)
                .session(session_id)
                .cartridge(tag.id())
                .detail(json!({
                    "lot": tag.lot(),
                    "needles": tag.needles(),
                    "expiry": tag.expiry(),
                }));
            events::insert(tx, &bound)?;
            let session = SessionRecord {
                cartridge_id: Some(tag.id().to_owned()),
                ..session
            };
            state_event(
                tx,
                &session,
                SessionState::Bound,
                actor,
                None,
                now.unix_ms,
                json!({}),
            )?;
            cartridges::require(tx, tag.id(), limits)
        })
    }

    /// Moves a session to `to` (event `session_state` with from, to, actor and reason), if
    /// [`SessionState::can_set`] allows it. Arming or running also requires the bound
    /// cartridge to be in use and its lot not recalled. The first move to running sets the
    /// start time. Aborting spends the bound cartridge. Refuses, changing nothing:
    /// `not_found`, `session_wrong_state` (with the current state), `cartridge_spent`,
    /// `lot_recalled`, `invalid_input` (`to` is ended: use [`Store::end_session`]; empty
    /// actor or reason).
    pub fn set_session_state(
        &mut self,
        session_id: SessionId,
        to: SessionState,
        actor: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<SessionRecord, LedgerError> {
        validate::text("actor", actor)?;
        if let Some(reason) = reason {
            validate::reason("reason", reason)?;
        }
        validate::time("now_ms", now_ms)?;
        if to == SessionState::Ended {
            return Err(LedgerError::InvalidInput(
                "a session is ended with end_session".to_owned(),
            ));
        }
        self.write(|tx| {
            let session = require(tx, session_id)?;
            if !session.state.can_set(to) {
                return Err(wrong_state(&session, format!("move to {to}")));
            }
            match to {
                SessionState::Aborted => abort(tx, &session, actor, reason, now_ms)?,
                _ => {
                    if matches!(to, SessionState::Armed | SessionState::Running) {
                        require_usable_cartridge(tx, &session)?;
                    }
                    tx.execute(
                        "UPDATE sessions SET state = ?2,
                             started_at_ms = CASE WHEN ?2 = 'running'
                                 THEN coalesce(started_at_ms, ?3) ELSE started_at_ms END
                         WHERE id = ?1",
                        params![session_id, to.as_str(), now_ms],
                    )?;
                    state_event(tx, &session, to, actor, reason, now_ms, json!({}))?;
                }
            }
            require(tx, session_id)
        })
    }

    /// Merges checklist `answers` into a created or bound session's checklist (an item given
    /// takes the answer given; the others keep theirs), with event `checklist_updated` naming
    /// the actor, in one transaction. Refuses `not_found`, `session_wrong_state` (armed or
    /// later: the checklist is what arming was allowed on), `invalid_input` (no answers, an
    /// item the session's checklist does not have, an item twice).
    pub fn update_checklist(
        &mut self,
        session_id: SessionId,
        answers: &[ChecklistItem],
        now_ms: i64,
        actor: &str,
    ) -> Result<SessionRecord, LedgerError> {
        validate::text("actor", actor)?;
        validate::time("now_ms", now_ms)?;
        if answers.is_empty() {
            return Err(LedgerError::InvalidInput(
                "no checklist answers given".to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        for a in answers {
            if !seen.insert(a.item.as_str()) {
                return Err(LedgerError::InvalidInput(format!(
                    "checklist item {:?} appears twice",
                    a.item
                )));
            }
        }
        self.write(|tx| {
            let mut session = require(tx, session_id)?;
            if !matches!(session.state, SessionState::Created | SessionState::Bound) {
                return Err(wrong_state(&session, "change its checklist"));
            }
            for a in answers {
                let entry = session
                    .checklist
                    .iter_mut()
                    .find(|c| c.item == a.item)
                    .ok_or_else(|| {
                        LedgerError::InvalidInput(format!(
                            "session {session_id} has no checklist item {:?}",
                            a.item
                        ))
                    })?;
                entry.confirmed = a.confirmed;
            }
            let checklist = serde_json::to_string(&session.checklist)
                .map_err(|e| LedgerError::InvalidInput(format!("checklist: {e}")))?;
            tx.execute(
                "UPDATE sessions SET checklist = ?2 WHERE id = ?1",
                params![session_id, checklist],
            )?;
            let mut event = Event::new(now_ms, actor, kinds::CHECKLIST_UPDATED)
                .session(session_id)
                .detail(json!({ "answers": answers, "checklist": session.checklist }));
            event.cartridge_id = session.cartridge_id.clone();
            events::insert(tx, &event)?;
            require(tx, session_id)
        })
    }

    /// Records new depth (µm) and stroke-rate (mHz) setpoints of an unfinished session
    /// (event `setpoints`); returns the event's seq. Refuses `not_found`,
    /// `session_wrong_state` (finished).
    pub fn record_setpoints(
        &mut self,
        session_id: SessionId,
        depth_um: u32,
        rate_mhz: u32,
        now_ms: i64,
        actor: &str,
    ) -> Result<i64, LedgerError> {
        validate::text("actor", actor)?;
        validate::time("now_ms", now_ms)?;
        self.write(|tx| {
            let session = require(tx, session_id)?;
            if session.state.is_terminal() {
                return Err(wrong_state(&session, "record setpoints"));
            }
            let mut event = Event::new(now_ms, actor, kinds::SETPOINTS)
                .session(session_id)
                .detail(json!({ "depth_um": depth_um, "rate_mhz": rate_mhz }));
            event.cartridge_id = session.cartridge_id;
            events::insert(tx, &event)
        })
    }

    /// Ends a bound, armed, running or paused session with its totals and `reason`, and spends
    /// its cartridge (single use), in one transaction (events `session_state` and
    /// `cartridge_spent`). The cartridge's usage counters are raised to at least the
    /// session's totals. Refuses `not_found`, `session_wrong_state` (created or finished),
    /// `invalid_input`.
    pub fn end_session(
        &mut self,
        session_id: SessionId,
        now_ms: i64,
        run_ms: u64,
        strokes: u64,
        reason: &str,
        actor: &str,
    ) -> Result<SessionRecord, LedgerError> {
        validate::time("now_ms", now_ms)?;
        let run_ms_sql = validate::counter("run_ms", run_ms)?;
        let strokes_sql = validate::counter("strokes", strokes)?;
        validate::reason("reason", reason)?;
        validate::text("actor", actor)?;
        self.write(|tx| {
            let session = require(tx, session_id)?;
            if session.state == SessionState::Created || session.state.is_terminal() {
                return Err(wrong_state(&session, "end"));
            }
            tx.execute(
                "UPDATE sessions SET state = 'ended', ended_at_ms = ?2, run_ms = ?3,
                     strokes = ?4, end_reason = ?5
                 WHERE id = ?1",
                params![session_id, now_ms, run_ms_sql, strokes_sql, reason],
            )?;
            state_event(
                tx,
                &session,
                SessionState::Ended,
                actor,
                Some(reason),
                now_ms,
                json!({ "run_ms": run_ms, "strokes": strokes }),
            )?;
            if let Some(id) = session.cartridge_id.as_deref() {
                cartridges::raise_usage(tx, id, run_ms_sql, strokes_sql)?;
            }
            spend_bound_cartridge(tx, &session, "session_ended", actor, now_ms)?;
            require(tx, session_id)
        })
    }

    /// Crash recovery, run when the service starts: every unfinished session (created,
    /// bound, armed, running or paused) becomes aborted with `reason`, and its cartridge, if
    /// bound, is spent (it was out of its sterile package), all in one transaction with
    /// events for each. Returns the aborted sessions' ids.
    pub fn abort_open_sessions(
        &mut self,
        now_ms: i64,
        reason: &str,
    ) -> Result<Vec<SessionId>, LedgerError> {
        validate::time("now_ms", now_ms)?;
        validate::reason("reason", reason)?;
        self.write(|tx| {
            let open: Vec<SessionId> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM sessions WHERE state NOT IN ('ended', 'aborted') ORDER BY id",
                )?;
                let ids = stmt.query_map([], |row| row.get(0))?;
                ids.collect::<Result<_, _>>()?
            };
            for id in &open {
                let session = require(tx, *id)?;
                abort(tx, &session, SYSTEM_ACTOR, Some(reason), now_ms)?;
            }
            Ok(open)
        })
    }

    /// The session `id`, if any.
    pub fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, LedgerError> {
        self.read(|tx| load(tx, id))
    }

    /// When `subject_ref`'s last session started running, if any did.
    pub fn last_session_start(&self, subject_ref: &str) -> Result<Option<i64>, LedgerError> {
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT max(started_at_ms) FROM sessions WHERE subject_ref = ?1",
                    [subject_ref],
                    |row| row.get(0),
                )
                .optional()?
                .flatten())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState::*;

    #[test]
    fn only_the_documented_transitions_can_be_set() {
        let allowed = [
            (Bound, Armed),
            (Armed, Bound),
            (Running, Bound),
            (Paused, Bound),
            (Armed, Running),
            (Running, Paused),
            (Paused, Running),
            (Created, Aborted),
            (Bound, Aborted),
            (Armed, Aborted),
            (Running, Aborted),
            (Paused, Aborted),
        ];
        for from in SessionState::ALL {
            for to in SessionState::ALL {
                assert_eq!(
                    from.can_set(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn state_names_are_stable_and_parse_back() {
        let names: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["created", "bound", "armed", "running", "paused", "ended", "aborted"]
        );
        for state in SessionState::ALL {
            assert_eq!(state.as_str().parse::<SessionState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).expect("json"),
                serde_json::json!(state.as_str())
            );
        }
        assert!("Running".parse::<SessionState>().is_err());
    }
}
