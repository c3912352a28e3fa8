//! `GET /v1/console/config`: what the operator console needs to draw its forms, and who is
//! calling.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::people::Role;

/// What the console draws its forms from (`GET /v1/console/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleConfig {
    /// The caller, as their token says.
    pub you: ConsoleCaller,
    /// `sim` or `hardware`: the sim panel shows only on the sim.
    pub backend: String,
    /// The service's wall clock, unix ms (the console's countdowns correct for skew).
    pub server_time_ms: i64,
    /// How often the telemetry stream sends, ms.
    pub telemetry_period_ms: u64,
    /// The treatment areas with their depth ceilings.
    pub areas: Vec<ConsoleArea>,
    /// The pre-treatment checklist.
    pub checklist: Vec<ConsoleChecklistItem>,
    /// The session's time limits.
    pub session: ConsoleSessionLimits,
    /// A cartridge's budget.
    pub cartridge: ConsoleCartridgeBudget,
    /// The stroke-rate range the rig accepts.
    pub stroke: ConsoleStrokeRange,
    /// Every interlock, with what it means.
    pub interlocks: Vec<ConsoleInterlock>,
    /// Every fault code.
    pub faults: Vec<String>,
}

/// The caller of `GET /v1/console/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleCaller {
    /// The token's person.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Whether they are a technician (the sim panel and overrides need one).
    pub technician: bool,
}

/// A treatment area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleArea {
    /// Its name, as `CreateSession.area` takes it.
    pub name: String,
    /// The deepest the needles may go there, µm.
    pub max_depth_um: i32,
}

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleChecklistItem {
    /// Its stable id, the key in `CreateSession.checklist`.
    pub id: String,
    /// What the operator confirms.
    pub text: String,
    /// Whether arming needs it confirmed.
    pub required: bool,
}

/// The session's time limits, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleSessionLimits {
    /// The longest a session may run.
    pub time_limit_ms: u64,
    /// How long before the limit the console warns.
    pub warning_before_ms: u64,
    /// The least time between two sessions of one subject.
    pub min_interval_ms: u64,
}

/// A cartridge's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleCartridgeBudget {
    /// Run time, ms.
    pub max_run_ms: u64,
    /// Strokes.
    pub max_strokes: u64,
}

/// The stroke-rate range, millihertz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleStrokeRange {
    /// The slowest.
    pub rate_min_mhz: u32,
    /// The fastest.
    pub rate_max_mhz: u32,
}

/// An interlock and what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleInterlock {
    /// Its stable code.
    pub code: String,
    /// Why it holds the pen.
    pub reason: String,
}
