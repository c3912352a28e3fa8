//! Treatment plans: a series of sessions for one subject, with the interval window between
//! them and the planned depth and rate of each. Every change is a plan event with its actor
//! and reason; plans are never deleted and a stopped plan is frozen (schema version 2).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::events::{self, Event};
use super::sessions::{self, NewSession, Override, SessionId, SessionRecord, SessionState};
use super::{validate, LedgerError, Store};

/// A plan's id (SQLite rowid; never reused).
pub type PlanId = i64;

/// Most sessions one plan may hold.
pub const MAX_PLAN_SESSIONS: usize = 12;
/// Most areas one plan may name.
pub const MAX_PLAN_AREAS: usize = 8;
/// Longest interval window, days.
pub const MAX_PLAN_DAYS: u32 = 365;

/// Event kinds of the plan log.
pub mod plan_kinds {
    /// A plan was created.
    pub const CREATED: &str = "plan_created";
    /// A plan's planned sessions or window were changed.
    pub const CHANGED: &str = "plan_changed";
    /// A plan was stopped with a reason.
    pub const STOPPED: &str = "plan_stopped";
    /// A session of the plan was created (its number n in the detail).
    pub const SESSION_CREATED: &str = "plan_session_created";
    /// A plan rule was overridden by a technician with a reason.
    pub const OVERRIDE: &str = "plan_override";
}

/// Where a plan stands (the contract's type).
pub use needle_api::PlanStatus;
/// The planned depth and stroke rate of one session of a plan (the contract's type).
pub use needle_api::PlannedSession;

/// What a new plan records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPlan {
    /// Opaque subject reference (never a name).
    pub subject_ref: String,
    /// Treatment areas; each session is in one of them.
    pub areas: Vec<String>,
    /// Earliest days after the previous session's start that the next may be created.
    pub min_days: u32,
    /// Latest days after the previous session's start before the next is overdue.
    pub max_days: u32,
    /// The planned sessions, in order.
    pub sessions: Vec<PlannedSession>,
}

/// Whether a plan goes on (the contract's type).
pub use needle_api::PlanState;

/// A plan as the ledger stores it (the contract's type).
pub use needle_api::PlanRecord;

/// One event of a plan's log (the contract's type).
pub use needle_api::PlanEvent;

/// A session of a plan: its number and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSession {
    /// Session number within the plan, from 1.
    pub n: u32,
    /// The session.
    pub session: SessionRecord,
}

/// A change to a plan's window or planned sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    /// New window, earliest days.
    pub min_days: Option<u32>,
    /// New window, latest days.
    pub max_days: Option<u32>,
    /// New planned sessions (those already done must stay as they were).
    pub sessions: Option<Vec<PlannedSession>>,
}

const PLAN_COLUMNS: &str = "id, subject_ref, areas, sessions, min_days, max_days, state, \
     created_at_ms, created_by, stopped_at_ms, stop_reason";

fn corrupt(column: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(format!("plans.{column}: {e}"))
}

fn from_row(row: &Row<'_>) -> Result<PlanRecord, LedgerError> {
    let areas: String = row.get(2)?;
    let planned: String = row.get(3)?;
    let state: String = row.get(6)?;
    let days = |i: usize, c: &str| -> Result<u32, LedgerError> {
        u32::try_from(row.get::<_, i64>(i)?).map_err(|e| corrupt(c, e))
    };
    Ok(PlanRecord {
        id: row.get(0)?,
        subject_ref: row.get(1)?,
        areas: serde_json::from_str(&areas).map_err(|e| corrupt("areas", e))?,
        sessions: serde_json::from_str(&planned).map_err(|e| corrupt("sessions", e))?,
        min_days: days(4, "min_days")?,
        max_days: days(5, "max_days")?,
        state: match state.as_str() {
            "active" => PlanState::Active,
            "stopped" => PlanState::Stopped,
            other => return Err(corrupt("state", other)),
        },
        created_at_ms: row.get(7)?,
        created_by: row.get(8)?,
        stopped_at_ms: row.get(9)?,
        stop_reason: row.get(10)?,
    })
}

fn refuse(code: &'static str, message: impl Into<String>) -> LedgerError {
    LedgerError::Plan {
        code,
        message: message.into(),
    }
}

fn load(conn: &Connection, id: PlanId) -> Result<Option<PlanRecord>, LedgerError> {
    conn.query_row(
        &format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = ?1"),
        [id],
        |row| Ok(from_row(row)),
    )
    .optional()?
    .transpose()
}

fn require(conn: &Connection, id: PlanId) -> Result<PlanRecord, LedgerError> {
    load(conn, id)?.ok_or_else(|| LedgerError::NotFound {
        what: "plan",
        id: id.to_string(),
    })
}

fn require_active(plan: &PlanRecord) -> Result<(), LedgerError> {
    match plan.state {
        PlanState::Active => Ok(()),
        PlanState::Stopped => Err(refuse(
            "plan_stopped",
            format!("plan {} is stopped", plan.id),
        )),
    }
}

fn links(conn: &Connection, id: PlanId) -> Result<Vec<PlanSession>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT session_id, n FROM plan_sessions WHERE plan_id = ?1 ORDER BY n, session_id",
    )?;
    let rows: Vec<(SessionId, i64)> = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(sid, n)| {
            Ok(PlanSession {
                n: u32::try_from(n).map_err(|e| corrupt("plan_sessions.n", e))?,
                session: sessions::require(conn, sid)?,
            })
        })
        .collect()
}

fn insert_event(
    conn: &Connection,
    plan: PlanId,
    at_ms: i64,
    actor: &str,
    kind: &str,
    reason: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), LedgerError> {
    conn.execute(
        "INSERT INTO plan_events (plan_id, at_ms, actor, kind, reason, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![plan, at_ms, actor, kind, reason, detail.to_string()],
    )?;
    Ok(())
}

fn validate_shape(
    min_days: u32,
    max_days: u32,
    planned: &[PlannedSession],
) -> Result<(), LedgerError> {
    if planned.is_empty() || planned.len() > MAX_PLAN_SESSIONS {
        return Err(LedgerError::InvalidInput(format!(
            "a plan has 1 to {MAX_PLAN_SESSIONS} sessions"
        )));
    }
    if min_days > max_days || max_days > MAX_PLAN_DAYS {
        return Err(LedgerError::InvalidInput(format!(
            "the window needs min_days <= max_days <= {MAX_PLAN_DAYS}"
        )));
    }
    Ok(())
}

fn validate_new(plan: &NewPlan) -> Result<(), LedgerError> {
    validate::text("subject_ref", &plan.subject_ref)?;
    if plan.areas.is_empty() || plan.areas.len() > MAX_PLAN_AREAS {
        return Err(LedgerError::InvalidInput(format!(
            "a plan names 1 to {MAX_PLAN_AREAS} areas"
        )));
    }
    for a in &plan.areas {
        validate::text("area", a)?;
    }
    validate_shape(plan.min_days, plan.max_days, &plan.sessions)
}

/// The checks every recorded change of a plan starts with: an actor, a reason, a time.
fn check_change(actor: &str, reason: &str, now_ms: i64) -> Result<(), LedgerError> {
    validate::text("actor", actor)?;
    validate::reason("reason", reason)?;
    validate::time("now_ms", now_ms)
}

/// When a session's time counts for the window: when it first ran, else when it was created.
pub fn session_time(s: &SessionRecord) -> i64 {
    s.started_at_ms.unwrap_or(s.created_at_ms)
}

/// The sessions of a plan that are done (ended), in order.
pub fn done(links: &[PlanSession]) -> impl Iterator<Item = &PlanSession> {
    links
        .iter()
        .filter(|l| l.session.state == SessionState::Ended)
}

/// When the next session's window opens and closes, unix ms: after the last done session,
/// `min_days` and `max_days` later; the first session's window is open from the plan's
/// creation and never closes.
pub fn next_window(plan: &PlanRecord, links: &[PlanSession]) -> (i64, Option<i64>) {
    const DAY_MS: i64 = 86_400_000;
    match done(links).map(|l| session_time(&l.session)).max() {
        Some(last) => (
            last.saturating_add(i64::from(plan.min_days) * DAY_MS),
            Some(last.saturating_add(i64::from(plan.max_days) * DAY_MS)),
        ),
        None => (plan.created_at_ms, None),
    }
}

/// The next session's window (as [`next_window`]) while the plan is active, whose status is
/// `status` ([`status`] of the same plan and links); `None` when it is stopped or complete.
pub fn active_window(
    plan: &PlanRecord,
    links: &[PlanSession],
    status: PlanStatus,
) -> Option<(i64, Option<i64>)> {
    (status == PlanStatus::Active).then(|| next_window(plan, links))
}

/// The plan context of session `id` for its report, inside a read transaction.
pub(super) fn report_context(
    conn: &Connection,
    id: SessionId,
) -> Result<Option<super::ReportPlan>, LedgerError> {
    let link: Option<(PlanId, i64)> = conn
        .query_row(
            "SELECT plan_id, n FROM plan_sessions WHERE session_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((plan_id, n)) = link else {
        return Ok(None);
    };
    let plan = require(conn, plan_id)?;
    let linked = links(conn, plan_id)?;
    let n = u32::try_from(n).map_err(|e| corrupt("plan_sessions.n", e))?;
    let planned = plan
        .sessions
        .get(usize::try_from(n).unwrap_or(usize::MAX).wrapping_sub(1));
    let status = status(&plan, &linked);
    let window = active_window(&plan, &linked, status);
    let (opens, closes) = (window.map(|(o, _)| o), window.and_then(|(_, c)| c));
    Ok(Some(super::ReportPlan {
        plan_id,
        n,
        total: u32::try_from(plan.sessions.len()).unwrap_or(u32::MAX),
        planned_depth_um: planned.map(|p| p.depth_um),
        planned_rate_mhz: planned.map(|p| p.rate_mhz),
        plan_status: status,
        next_window_opens_at_ms: opens,
        next_window_closes_at_ms: closes,
    }))
}

/// A plan's status: stopped, complete (every planned session done) or active.
pub fn status(plan: &PlanRecord, links: &[PlanSession]) -> PlanStatus {
    if plan.state == PlanState::Stopped {
        PlanStatus::Stopped
    } else if done(links).count() >= plan.sessions.len() {
        PlanStatus::Complete
    } else {
        PlanStatus::Active
    }
}

impl Store {
    /// Creates a plan (plan event `plan_created`). Refuses `invalid_input` for empty or
    /// over-long text, no or too many sessions or areas, a window with min over max.
    pub fn create_plan(
        &mut self,
        plan: &NewPlan,
        actor: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<PlanRecord, LedgerError> {
        validate_new(plan)?;
        validate::text("actor", actor)?;
        validate::time("now_ms", now_ms)?;
        if let Some(r) = reason {
            validate::reason("reason", r)?;
        }
        let areas = serde_json::to_string(&plan.areas)
            .map_err(|e| LedgerError::InvalidInput(format!("areas: {e}")))?;
        let planned = serde_json::to_string(&plan.sessions)
            .map_err(|e| LedgerError::InvalidInput(format!("sessions: {e}")))?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO plans (subject_ref, areas, sessions, min_days, max_days, state,
                                    created_at_ms, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7)",
                params![
                    plan.subject_ref,
                    areas,
                    planned,
                    plan.min_days,
                    plan.max_days,
                    now_ms,
                    actor
                ],
            )?;
            let id = tx.last_insert_rowid();
            insert_event(
                tx,
                id,
                now_ms,
                actor,
                plan_kinds::CREATED,
                reason,
                json!(plan),
            )?;
            require(tx, id)
        })
    }

    /// Changes an active plan's window or planned sessions, with a reason (plan event
    /// `plan_changed` with the plan before and after). Refuses `plan_stopped`,
    /// `plan_session_done` (a done session's plan changed or dropped), `invalid_input`.
    pub fn change_plan(
        &mut self,
        id: PlanId,
        change: &PlanChange,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<PlanRecord, LedgerError> {
        check_change(actor, reason, now_ms)?;
        self.write(|tx| {
            let before = require(tx, id)?;
            require_active(&before)?;
            let min_days = change.min_days.unwrap_or(before.min_days);
            let max_days = change.max_days.unwrap_or(before.max_days);
            let planned = change.sessions.clone().unwrap_or(before.sessions.clone());
            validate_shape(min_days, max_days, &planned)?;
            let linked = links(tx, id)?;
            for l in done(&linked) {
                let i = usize::try_from(l.n).unwrap_or(usize::MAX) - 1;
                if planned.get(i) != before.sessions.get(i) {
                    return Err(refuse(
                        "plan_session_done",
                        format!("session {} of plan {id} is done: its plan stays", l.n),
                    ));
                }
            }
            let text = serde_json::to_string(&planned)
                .map_err(|e| LedgerError::InvalidInput(format!("sessions: {e}")))?;
            tx.execute(
                "UPDATE plans SET sessions = ?2, min_days = ?3, max_days = ?4 WHERE id = ?1",
                params![id, text, min_days, max_days],
            )?;
            let after = require(tx, id)?;
            insert_event(
                tx,
                id,
                now_ms,
                actor,
                plan_kinds::CHANGED,
                Some(reason),
                json!({
                    "before": { "min_days": before.min_days, "max_days": before.max_days,
                                "sessions": before.sessions },
                    "after": { "min_days": after.min_days, "max_days": after.max_days,
                               "sessions": after.sessions },
                }),
            )?;
            Ok(after)
        })
    }

    /// Stops an active plan with a reason (plan event `plan_stopped`). Refuses
    /// `plan_stopped`, `plan_complete` (every session done), `plan_session_open` (a session
    /// of the plan is still open: end it first).
    pub fn stop_plan(
        &mut self,
        id: PlanId,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<PlanRecord, LedgerError> {
        check_change(actor, reason, now_ms)?;
        self.write(|tx| {
            let plan = require(tx, id)?;
            require_active(&plan)?;
            let linked = links(tx, id)?;
            if done(&linked).count() >= plan.sessions.len() {
                return Err(refuse("plan_complete", format!("plan {id} is complete")));
            }
            if let Some(open) = linked.iter().find(|l| !l.session.state.is_terminal()) {
                return Err(refuse(
                    "plan_session_open",
                    format!(
                        "session {} of plan {id} is open: end it first",
                        open.session.id
                    ),
                ));
            }
            tx.execute(
                "UPDATE plans SET state = 'stopped', stopped_at_ms = ?2, stop_reason = ?3
                 WHERE id = ?1",
                params![id, now_ms, reason],
            )?;
            insert_event(
                tx,
                id,
                now_ms,
                actor,
                plan_kinds::STOPPED,
                Some(reason),
                json!({}),
            )?;
            require(tx, id)
        })
    }

    /// Creates the next session of plan `plan_id`, in one transaction: the plan is active
    /// and not complete, no session of it is open, the subject and area are the plan's, and
    /// the interval window is open, or `window_override` (a technician's, with a reason) is
    /// given, recorded as event `override` on the session and `plan_override` on the plan.
    /// The subject's minimum interval is checked as for any session, with the same override.
    /// Returns the session and its number.
    pub fn create_plan_session(
        &mut self,
        plan_id: PlanId,
        new: &NewSession,
        now_ms: i64,
        min_interval_ms: i64,
        window_override: Option<&Override>,
    ) -> Result<(SessionRecord, u32), LedgerError> {
        sessions::validate_new_session(new)?;
        validate::time("now_ms", now_ms)?;
        if let Some(o) = window_override {
            validate::text("override actor", &o.actor)?;
            validate::reason("override reason", &o.reason)?;
        }
        self.write(|tx| {
            let plan = require(tx, plan_id)?;
            require_active(&plan)?;
            if plan.subject_ref != new.subject_ref {
                return Err(refuse(
                    "plan_subject_mismatch",
                    format!("plan {plan_id} is for another subject"),
                ));
            }
            if !plan.areas.contains(&new.area) {
                return Err(refuse(
                    "plan_area",
                    format!("plan {plan_id} treats {:?}, not '{}'", plan.areas, new.area),
                ));
            }
            let linked = links(tx, plan_id)?;
            if let Some(open) = linked.iter().find(|l| !l.session.state.is_terminal()) {
                return Err(refuse(
                    "plan_session_open",
                    format!("session {} of plan {plan_id} is open", open.session.id),
                ));
            }
            let n_done = done(&linked).count();
            if n_done >= plan.sessions.len() {
                return Err(refuse(
                    "plan_complete",
                    format!("plan {plan_id} is complete"),
                ));
            }
            let n = u32::try_from(n_done + 1).unwrap_or(u32::MAX);
            let (opens, closes) = next_window(&plan, &linked);
            let early = now_ms < opens;
            if early && window_override.is_none() {
                return Err(refuse(
                    "plan_window_not_open",
                    format!(
                        "session {n} of plan {plan_id} may start from {opens} ms (unix); \
                         earlier needs a technician's override with a reason"
                    ),
                ));
            }
            let session =
                sessions::insert_checked(tx, new, now_ms, min_interval_ms, window_override)?;
            tx.execute(
                "INSERT INTO plan_sessions (session_id, plan_id, n) VALUES (?1, ?2, ?3)",
                params![session.id, plan_id, n],
            )?;
            insert_event(
                tx,
                plan_id,
                now_ms,
                &new.operator,
                plan_kinds::SESSION_CREATED,
                None,
                json!({ "session_id": session.id, "n": n }),
            )?;
            if let (true, Some(o)) = (early, window_override) {
                let detail = json!({
                    "action": "plan_window", "plan_id": plan_id, "n": n,
                    "opens_at_ms": opens, "closes_at_ms": closes,
                });
                let event = Event::new(now_ms, o.actor.as_str(), super::kinds::OVERRIDE)
                    .session(session.id)
                    .reason(o.reason.as_str())
                    .detail(detail.clone());
                events::insert(tx, &event)?;
                insert_event(
                    tx,
                    plan_id,
                    now_ms,
                    &o.actor,
                    plan_kinds::OVERRIDE,
                    Some(&o.reason),
                    detail,
                )?;
            }
            Ok((session, n))
        })
    }

    /// When the last event of `kind` for session `session` happened, unix ms.
    pub fn last_event_at(
        &self,
        session: SessionId,
        kind: &str,
    ) -> Result<Option<i64>, LedgerError> {
        self.read(|tx| {
            Ok(tx.query_row(
                "SELECT max(at_ms) FROM events WHERE session_id = ?1 AND kind = ?2",
                params![session, kind],
                |r| r.get(0),
            )?)
        })
    }

    /// Plan `id`, if any.
    pub fn plan(&self, id: PlanId) -> Result<Option<PlanRecord>, LedgerError> {
        self.read(|tx| load(tx, id))
    }

    /// The plans of a subject, oldest first.
    pub fn plans_for_subject(&self, subject_ref: &str) -> Result<Vec<PlanRecord>, LedgerError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {PLAN_COLUMNS} FROM plans WHERE subject_ref = ?1 ORDER BY id"
            ))?;
            let mut rows = stmt.query([subject_ref])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(from_row(row)?);
            }
            Ok(out)
        })
    }

    /// A plan with its sessions and its log, from one snapshot. Refuses `not_found`.
    pub fn plan_detail(
        &self,
        id: PlanId,
    ) -> Result<(PlanRecord, Vec<PlanSession>, Vec<PlanEvent>), LedgerError> {
        self.read(|tx| {
            let plan = require(tx, id)?;
            let linked = links(tx, id)?;
            let mut stmt = tx.prepare(
                "SELECT seq, plan_id, at_ms, actor, kind, reason, detail FROM plan_events
                 WHERE plan_id = ?1 ORDER BY seq",
            )?;
            let mut rows = stmt.query([id])?;
            let mut log = Vec::new();
            while let Some(r) = rows.next()? {
                let detail: String = r.get(6)?;
                log.push(PlanEvent {
                    seq: r.get(0)?,
                    plan_id: r.get(1)?,
                    at_ms: r.get(2)?,
                    actor: r.get(3)?,
                    kind: r.get(4)?,
                    reason: r.get(5)?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| corrupt("plan_events.detail", e))?,
                });
            }
            Ok((plan, linked, log))
        })
    }

    /// The plan a session belongs to, with its sessions and the session's number.
    pub fn plan_of_session(
        &self,
        session: SessionId,
    ) -> Result<Option<(PlanRecord, Vec<PlanSession>, u32)>, LedgerError> {
        self.read(|tx| {
            let link: Option<(PlanId, i64)> = tx
                .query_row(
                    "SELECT plan_id, n FROM plan_sessions WHERE session_id = ?1",
                    [session],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((plan_id, n)) = link else {
                return Ok(None);
            };
            let n = u32::try_from(n).map_err(|e| corrupt("plan_sessions.n", e))?;
            Ok(Some((require(tx, plan_id)?, links(tx, plan_id)?, n)))
        })
    }
}
