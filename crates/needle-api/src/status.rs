//! Health, status, version and the telemetry stream.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cartridge::Cartridge;
use crate::session::Session;

/// `GET /v1/health` (no token needed): is the service fit to drive the rig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The verdict, worst first.
    pub status: HealthStatus,
    /// Whether the control thread ticked within the last 500 ms.
    pub control_alive: bool,
    /// How the session owner's monitor is doing.
    pub monitor: MonitorCode,
    /// The ledger.
    pub storage: StorageHealth,
    /// The link to the pen MCU, with the link backend only: its state, last refusal,
    /// losses, restarts and the pen's fault and stop times (see docs/architecture.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub link: Option<serde_json::Value>,
}

/// The verdict of `GET /v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything runs.
    Ok,
    /// The control thread stopped ticking.
    ControlLoopStalled,
    /// The session owner ended; restart the service.
    MonitorFailed,
    /// No monitor pass completed within the stall limit.
    MonitorStalled,
    /// The ledger cannot write; changes are refused.
    StorageUnavailable,
}

/// How the monitor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MonitorCode {
    /// A pass completed within the stall limit.
    Ok,
    /// No pass completed for longer than the stall limit.
    Stalled,
    /// The session owner ended.
    Failed,
}

/// The ledger's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageHealth {
    /// Whether the ledger writes.
    pub ok: bool,
    /// When the ledger first failed to write (unix ms), while degraded.
    pub failed_at_ms: Option<i64>,
    /// The first write error, while degraded.
    pub error: Option<String>,
    /// Records kept in memory, waiting for the ledger.
    pub pending: u64,
}

/// The controller's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ControllerState {
    /// Starting; the depth axis is not referenced.
    Boot,
    /// Finding the depth axis's home switch.
    Homing,
    /// Homed, motor off.
    Idle,
    /// Ready to run.
    Armed,
    /// Needles running.
    Running,
    /// Stopped by the pedal or the operator; may resume.
    Paused,
    /// A fault is latched.
    Fault,
    /// The E-stop is pressed.
    EStop,
}

/// An interlock that holds: why the controller will not arm or run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InterlockInfo {
    /// Stable code, e.g. `cartridge_missing`.
    pub code: String,
    /// What it means, for people.
    pub reason: String,
}

/// The depth axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Depth {
    /// Commanded depth, µm.
    pub setpoint_um: i32,
    /// Where the axis is, µm.
    pub position_um: i32,
    /// The ceiling the controller enforces, µm.
    pub ceiling_um: i32,
    /// Whether the axis is moving.
    pub moving: bool,
}

/// The stroke rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rate {
    /// Commanded rate, mHz.
    pub setpoint_mhz: u32,
    /// Measured rate, mHz.
    pub measured_mhz: u32,
}

/// The control loop's timing and what the control thread was granted (needled's
/// `control::LoopStats` is this type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ControlStats {
    /// Configured rate, Hz.
    pub rate_hz: u32,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that started more than a whole period late.
    pub overruns: u64,
    /// Median lateness of the wake-up behind its deadline, µs.
    pub lateness_p50_us: u64,
    /// 99th percentile lateness, µs.
    pub lateness_p99_us: u64,
    /// Largest lateness seen, µs.
    pub lateness_max_us: u64,
    /// Whether the thread got real-time priority.
    pub realtime: bool,
    /// The SCHED_FIFO priority granted, if any.
    pub priority: Option<u8>,
    /// Whether the process's memory is locked (`mlockall`).
    pub memory_locked: bool,
    /// The CPU the thread is pinned to, if it is.
    pub cpu: Option<u32>,
}

/// The controller's telemetry, as `GET /v1/status` and the SSE stream carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Telemetry {
    /// The controller's state.
    pub state: ControllerState,
    /// Latched faults, by code (`estop`, `stroke_stall`, ...).
    pub faults: Vec<String>,
    /// The latest fault, by code.
    pub last_fault: Option<String>,
    /// Interlocks that hold.
    pub interlocks: Vec<InterlockInfo>,
    /// Whether the depth axis is homed.
    pub homed: bool,
    /// The depth axis.
    pub depth: Depth,
    /// The stroke rate.
    pub rate: Rate,
    /// Motor PWM duty, 1/10000.
    pub duty_permyriad: u16,
    /// Whether the motor driver is enabled.
    pub motor_enabled: bool,
    /// Strokes counted by the controller.
    pub stroke_count: u32,
    /// Motor current, mA.
    pub current_ma: i32,
    /// Motor temperature, m°C.
    pub temperature_mc: i32,
    /// Supply voltage, mV.
    pub supply_mv: i32,
    /// Whether the foot pedal is pressed.
    pub pedal: bool,
    /// The controller's clock, µs.
    pub controller_time_us: u64,
}

/// Which backend drives the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The simulated rig.
    Sim,
    /// Real hardware (GPIO or a pen over a link).
    Hardware,
}

/// `GET /v1/status`: telemetry, the active session and its cartridge, storage, the loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// The controller's telemetry.
    #[serde(flatten)]
    pub telemetry: Telemetry,
    /// The session that holds the pen, if any.
    pub session: Option<Session>,
    /// Its cartridge, if one is bound.
    pub cartridge: Option<Cartridge>,
    /// The ledger.
    pub storage: StorageHealth,
    /// The control loop.
    pub control: ControlStats,
    /// Which backend drives the rig.
    pub backend: Backend,
}

/// One `telemetry` event of `GET /v1/telemetry` (server-sent events, JSON data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TelemetryEvent {
    /// The controller's telemetry.
    #[serde(flatten)]
    pub telemetry: Telemetry,
    /// The id of the session that holds the pen, if any.
    pub session: Option<i64>,
    /// The control loop.
    pub control: ControlStats,
}

/// `GET /v1/version`: build and configuration identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// needled's version.
    pub needled: String,
    /// The git revision it was built from.
    pub git: String,
    /// SHA-256 of the configuration file, hex.
    pub config_sha256: String,
    /// The configured backend (`sim`, `rppal`, `linux`, `link`).
    pub backend: String,
    /// SHA-256 of the TLS certificate, hex, when the API is served over TLS (off loopback).
    pub tls_sha256: Option<String>,
}
