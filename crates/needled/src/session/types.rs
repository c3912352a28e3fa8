//! The session module's public types: who calls, the clinical policy, the requests, and the
//! health the dead-man heartbeat and `/v1/health` read.

use std::collections::BTreeMap;
use std::time::Duration;

use needle_core::units::{Micrometers, MilliHertz};
use serde::{Deserialize, Serialize};

use crate::store::CartridgeLimits;

/// Who is calling, from their bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Roles of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs sessions.
    Operator,
    /// Everything an operator does, plus overrides, recalls and the sim controls.
    Technician,
}

/// A checklist item every session must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistSpec {
    /// Stable id.
    pub id: String,
    /// What the operator confirms.
    pub text: String,
    /// Whether arming requires it confirmed.
    pub required: bool,
}

/// The clinical rules the service enforces, from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Depth ceiling per treatment area.
    pub areas: BTreeMap<String, Micrometers>,
    /// Pre-treatment checklist.
    pub checklist: Vec<ChecklistSpec>,
    /// Session time limit, from the first start.
    pub time_limit: Duration,
    /// Per-area time limits that replace `time_limit` for sessions in that area.
    pub area_time_limits: BTreeMap<String, Duration>,
    /// Warning this long before the time limit.
    pub warning_before: Duration,
    /// Minimum interval between a subject's sessions.
    pub min_interval: Duration,
    /// Run-time and stroke budget of a cartridge.
    pub limits: CartridgeLimits,
    /// After-care advice printed in every session report.
    pub post_care: String,
    /// Stroke rates an operator may set (the core refuses others), lowest and highest.
    pub rate_range: (MilliHertz, MilliHertz),
}

/// The ledger's health, as `/v1/health` and `/v1/status` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageHealth {
    /// Whether the ledger writes.
    pub ok: bool,
    /// When the ledger first failed to write (unix ms), while degraded.
    pub failed_at_ms: Option<i64>,
    /// The first write error, while degraded.
    pub error: Option<String>,
    /// Records kept in memory, waiting for the ledger.
    pub pending: usize,
}

/// A request to create a session.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Who the client says performs it: optional, kept for compatibility, recorded as
    /// `stated_operator` in the `session_created` detail. The session's operator and every
    /// event's actor is the authenticated person, never this string.
    #[serde(default)]
    pub operator: Option<String>,
    /// Opaque subject reference (never a name).
    pub subject_ref: String,
    /// Treatment area, one of the configured areas.
    pub area: String,
    /// Checklist answers by item id.
    #[serde(default)]
    pub checklist: BTreeMap<String, bool>,
    /// Reason to override the minimum interval (technicians only).
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// Setpoints to arm with or change to.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setpoints {
    /// Needle depth, µm.
    pub depth_um: Option<i32>,
    /// Stroke rate, mHz.
    pub rate_mhz: Option<u32>,
}

/// How the monitor is doing, as the dead-man heartbeat and `/v1/health` judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorHealth {
    /// A monitor pass completed within the service stall limit.
    Ok,
    /// No monitor pass completed for this long (more than the stall limit): the monitor is
    /// stuck, or the runtime that runs it is.
    Stalled(Duration),
    /// The session owner, which runs the monitor, ended (it panicked); the service must be
    /// restarted.
    Failed,
}

impl MonitorHealth {
    /// Stable code: `ok`, `stalled` or `failed`.
    pub fn code(&self) -> &'static str {
        match self {
            MonitorHealth::Ok => "ok",
            MonitorHealth::Stalled(_) => "stalled",
            MonitorHealth::Failed => "failed",
        }
    }
}

/// A failure of the monitor the sim can inject, to prove the dead-man follows the
/// monitor and not merely the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorFault {
    /// The next monitor pass panics.
    Panic,
    /// The next monitor pass hangs this long, and the session owner with it, while the rest
    /// of the runtime carries on.
    Stall(Duration),
}
