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

/// Roles of API tokens (the contract's type).
pub use needle_api::Role;

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
    /// The numbing wait: arming waits this long after numbing was recorded applied.
    pub numbing: Option<Numbing>,
}

/// Numbing as a timed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbing {
    /// How long the numbing takes to act: arming waits this long after numbing was recorded
    /// applied (`POST /v1/sessions/{id}/numbing`).
    pub wait: Duration,
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

// The requests are the API contract's own types: what the wire carries is what the
// session owner receives.
pub use needle_api::{CreateSession, Setpoints, UpdateChecklist};

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
