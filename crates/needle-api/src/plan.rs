//! Treatment plans: the requests that create, change and stop them, a plan as its view shows
//! it (status, slots, window, history, log), and a session's numbing wait.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::session::Session;

/// A plan's id (never reused).
pub type PlanId = i64;

/// The planned depth and stroke rate of one session of a plan (the ledger stores this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedSession {
    /// Planned needle depth, µm: arming deeper needs a technician's override. Must be within
    /// every area's ceiling (`depth_above_area_ceiling`).
    pub depth_um: u32,
    /// Planned stroke rate, mHz, within the rates the core takes.
    pub rate_mhz: u32,
}

/// A request to create a plan (technicians only; the creator is the caller's token, never
/// the body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    /// Opaque subject reference (never a name).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub subject_ref: String,
    /// Treatment areas, each a configured area (1 to 8).
    #[schema(min_items = 1, max_items = 8)]
    pub areas: Vec<String>,
    /// Interval window, earliest days after the previous session.
    #[schema(maximum = 365)]
    pub min_days: u32,
    /// Interval window, latest days after the previous session (`min_days <= max_days`).
    #[schema(maximum = 365)]
    pub max_days: u32,
    /// Planned depth and rate of each session, in order (1 to 12).
    #[schema(min_items = 1, max_items = 12)]
    pub sessions: Vec<PlannedSession>,
    /// Why (optional on creation; not blank when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// A request to change a plan (technicians only): a reason and what changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlan {
    /// Why.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
    /// New window, earliest days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 365)]
    pub min_days: Option<u32>,
    /// New window, latest days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 365)]
    pub max_days: Option<u32>,
    /// New planned sessions (those already done must stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 12)]
    pub sessions: Option<Vec<PlannedSession>>,
}

/// The query of `GET /v1/plans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlansQuery {
    /// The subject whose plans to list.
    pub subject_ref: String,
}

/// Whether a plan goes on, as the ledger stores it (complete is derived: see
/// [`Plan::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Sessions may be given.
    Active,
    /// Stopped with a reason; frozen.
    Stopped,
}

/// Where a plan stands, derived from its stored state and its sessions: `active` (sessions
/// may still be given), `complete` (every planned session done) or `stopped` (stopped with a
/// reason first; frozen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Sessions may still be given.
    Active,
    /// Every planned session is done.
    Complete,
    /// Stopped with a reason before it was complete; frozen.
    Stopped,
}

impl PlanStatus {
    /// The name on the wire (`active`, `complete`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Complete => "complete",
            PlanStatus::Stopped => "stopped",
        }
    }
}

impl core::fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one planned session of a plan stands: `done`, `in_progress` (a session for it is
/// open), `due`, `overdue` or `upcoming` (the next one, its window open, closed or not open
/// yet), `planned` (after the next one) or `not_given` (the plan stopped first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Given and ended.
    Done,
    /// A session for it is open.
    InProgress,
    /// The next one, and its window is open.
    Due,
    /// The next one, and its window has closed.
    Overdue,
    /// The next one, and its window is not open yet.
    Upcoming,
    /// After the next one.
    Planned,
    /// The plan stopped before it was given.
    NotGiven,
}

impl SlotStatus {
    /// The name on the wire (`done`, `in_progress`, `due`, `overdue`, `upcoming`, `planned`,
    /// `not_given`).
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Done => "done",
            SlotStatus::InProgress => "in_progress",
            SlotStatus::Due => "due",
            SlotStatus::Overdue => "overdue",
            SlotStatus::Upcoming => "upcoming",
            SlotStatus::Planned => "planned",
            SlotStatus::NotGiven => "not_given",
        }
    }
}

impl core::fmt::Display for SlotStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The next session's window, unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanWindow {
    /// Its number in the plan.
    pub n: u32,
    /// From when it may be given without an override.
    pub opens_at_ms: i64,
    /// After this it is overdue (none for the first session).
    pub closes_at_ms: Option<i64>,
}

/// One planned session as the plan view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSlot {
    /// Number in the plan.
    pub n: u32,
    /// Planned depth and rate.
    pub planned: PlannedSession,
    /// Where it stands.
    pub status: SlotStatus,
    /// The session that did it, once done or in progress.
    pub session_id: Option<i64>,
}

/// A session of a plan: its number and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSession {
    /// Session number within the plan, from 1.
    pub n: u32,
    /// The session.
    pub session: Session,
}

/// One event of a plan's log (the ledger stores this type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanEvent {
    /// Order in the plan log.
    pub seq: i64,
    /// The plan.
    pub plan_id: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What (`plan_created`, `plan_changed`, ...).
    pub kind: String,
    /// Why, if given.
    pub reason: Option<String>,
    /// Details (JSON).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A plan as the ledger stores it (the ledger's own type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanRecord {
    /// Plan id.
    pub id: i64,
    /// Opaque subject reference.
    pub subject_ref: String,
    /// Treatment areas.
    pub areas: Vec<String>,
    /// Interval window, earliest days.
    pub min_days: u32,
    /// Interval window, latest days.
    pub max_days: u32,
    /// Planned sessions.
    pub sessions: Vec<PlannedSession>,
    /// Active or stopped, as stored.
    pub state: PlanState,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Stopped, unix ms.
    pub stopped_at_ms: Option<i64>,
    /// Why it was stopped.
    pub stop_reason: Option<String>,
}

/// A plan with its status, slots, window and log: the stored plan's fields beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// The plan as stored.
    #[serde(flatten)]
    pub plan: PlanRecord,
    /// Where the plan stands.
    pub status: PlanStatus,
    /// Sessions done.
    pub done: u32,
    /// Sessions planned.
    pub total: u32,
    /// The next session's window while the plan goes on.
    pub next_window: Option<PlanWindow>,
    /// Every planned session.
    pub slots: Vec<PlanSlot>,
    /// Every session created in the plan (aborted ones too), in order: its history.
    pub history: Vec<PlanSession>,
    /// The plan's log.
    pub events: Vec<PlanEvent>,
}

/// A subject's plans, oldest first (`GET /v1/plans`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plans {
    /// The plans.
    pub plans: Vec<Plan>,
}

/// A session's numbing wait (`GET`/`POST /v1/sessions/{id}/numbing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Numbing {
    /// The session.
    pub session_id: i64,
    /// When the numbing will have acted, unix ms: none if no numbing was recorded or no
    /// wait is configured.
    pub ready_at_ms: Option<i64>,
    /// How long arming still waits, ms (0 once it has acted or without a wait).
    pub wait_left_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` (the report and record text) spells the names serde puts on the wire.
    #[test]
    fn statuses_serialize_as_their_wire_names_and_parse_back() {
        use PlanStatus as P;
        use SlotStatus as S;
        for status in [P::Active, P::Complete, P::Stopped] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<PlanStatus>(&json).unwrap(), status);
        }
        let slots = [
            S::Done,
            S::InProgress,
            S::Due,
            S::Overdue,
            S::Upcoming,
            S::Planned,
            S::NotGiven,
        ];
        for status in slots {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<SlotStatus>(&json).unwrap(), status);
        }
    }
}
