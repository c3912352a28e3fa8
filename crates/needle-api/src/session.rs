//! Sessions: the requests that create and drive them, the session as the ledger keeps it,
//! and its report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cartridge::{CartridgeState, Needles};
use crate::events::EventRecord;

/// A session's id (never reused).
pub type SessionId = i64;

/// `{"ok": true}`: the command was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ok {
    /// Always true.
    pub ok: bool,
}

impl Ok {
    /// The only value.
    pub const YES: Ok = Ok { ok: true };
}

/// A body with a reason (fault clears, recalls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, recorded in the event log; must not be blank (`reason_required`), at most 1000
    /// characters, no control characters but newline and tab.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

/// The optional body of `POST /v1/sessions/{id}/end`: none, or a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndSession {
    /// Why it ends (default: "ended by the operator").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// A session's place in its treatment plan (in its report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportPlan {
    /// The plan.
    pub plan_id: i64,
    /// This session's number in the plan.
    pub n: u32,
    /// Sessions in the plan.
    pub total: u32,
    /// This session's planned depth, µm.
    pub planned_depth_um: Option<u32>,
    /// This session's planned stroke rate, mHz.
    pub planned_rate_mhz: Option<u32>,
    /// Where the plan stands now.
    pub plan_status: crate::PlanStatus,
    /// The next session's window opens, unix ms (while the plan goes on).
    pub next_window_opens_at_ms: Option<i64>,
    /// The next session's window closes, unix ms.
    pub next_window_closes_at_ms: Option<i64>,
}

/// A request to create a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Who the client says performs it: optional, kept for compatibility, recorded as
    /// `stated_operator` in the `session_created` detail. The session's operator and every
    /// event's actor is the authenticated person, never this string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub operator: Option<String>,
    /// Opaque subject reference (never a name): one line of at most 128 characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub subject_ref: String,
    /// Treatment area, one of the configured areas (`unknown_area`).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub area: String,
    /// Checklist answers by item id, each a configured item (`unknown_checklist_item`).
    #[serde(default)]
    pub checklist: BTreeMap<String, bool>,
    /// Reason to override the minimum interval or the plan's window (technicians only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub override_reason: Option<String>,
    /// The treatment plan this session belongs to; it becomes the plan's next session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<i64>,
}

/// Checklist answers given after a session was created (`PUT /v1/sessions/{id}/checklist`):
/// merged into the session's answers, so a session created with an incomplete checklist can
/// still be completed before it is armed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChecklist {
    /// Answers by item id: `true` confirms an item, `false` withdraws a confirmation.
    pub checklist: BTreeMap<String, bool>,
}

/// Setpoints to arm with or change to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setpoints {
    /// Needle depth, µm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub depth_um: Option<i32>,
    /// Stroke rate, mHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_mhz: Option<u32>,
    /// Reason to arm deeper than the plan's depth or before the numbing has acted
    /// (technicians only); recorded as an `override` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub override_reason: Option<String>,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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
    /// Stopped for good before finishing. Final.
    Aborted,
}

/// One pre-treatment checklist answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChecklistItem {
    /// The item's id.
    pub item: String,
    /// Whether the operator confirmed it.
    pub confirmed: bool,
}

/// A session as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Session id.
    pub id: i64,
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

/// The format of a session report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    /// [`SessionReport`] as JSON.
    #[default]
    Json,
    /// The same as `text/csv`.
    Csv,
}

/// The query of `GET /v1/sessions/{id}/report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (default) or `csv`; anything else is refused with `invalid_format`.
    #[serde(default)]
    #[param(value_type = Option<ReportFormat>)]
    pub format: Option<String>,
}

/// The cartridge used in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportCartridge {
    /// Cartridge id.
    pub id: String,
    /// Production lot.
    pub lot: String,
    /// Needle configuration.
    pub needles: Needles,
    /// Expiry date, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub expiry: String,
    /// Its state now.
    pub state: CartridgeState,
    /// Why it was spent.
    pub spent_reason: Option<String>,
}

/// Depth and stroke-rate setpoints from one moment on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetpointEntry {
    /// Event seq.
    pub seq: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// Needle depth, µm.
    pub depth_um: u32,
    /// Stroke rate, mHz.
    pub rate_mhz: u32,
    /// Who set them.
    pub actor: String,
}

/// One row of a session's timeline (one event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// Event seq.
    pub seq: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// Event kind.
    pub kind: String,
    /// Depth setpoint, µm (setpoint events only).
    pub depth_um: Option<u32>,
    /// Rate setpoint, mHz (setpoint events only).
    pub rate_mhz: Option<u32>,
    /// Who.
    pub actor: String,
    /// Why, if recorded.
    pub reason: Option<String>,
}

/// Everything the ledger recorded about one session, and the after-care advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionReport {
    /// Session id.
    pub session_id: i64,
    /// Who performed it.
    pub operator: String,
    /// Opaque subject reference.
    pub subject_ref: String,
    /// Treatment area.
    pub area: String,
    /// Checklist answers.
    pub checklist: Vec<ChecklistItem>,
    /// State when the report was made.
    pub state: SessionState,
    /// The cartridge used, if one was bound.
    pub cartridge: Option<ReportCartridge>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// First reached running, unix ms.
    pub started_at_ms: Option<i64>,
    /// Ended or aborted, unix ms.
    pub ended_at_ms: Option<i64>,
    /// Motor run time, ms.
    pub run_ms: u64,
    /// Strokes.
    pub strokes: u64,
    /// Why it ended or was aborted.
    pub end_reason: Option<String>,
    /// Setpoints over time.
    pub setpoints: Vec<SetpointEntry>,
    /// Fault events (kind `fault`).
    pub faults: Vec<EventRecord>,
    /// Override events (kinds `interval_override` and `override`).
    pub overrides: Vec<EventRecord>,
    /// Every event of the session, in order.
    pub timeline: Vec<TimelineEntry>,
    /// The session's place in its treatment plan, if it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ReportPlan>,
    /// After-care advice for the treated person.
    pub post_care: String,
}
