//! The sim backend's endpoints: the rig's truth, its tick log and fault injections. On any
//! other backend they answer 404 `not_found`; all need a technician token.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cartridge::Needles;

/// `GET /v1/sim/truth`: the simulated rig's physics, apart from what its sensors say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimTruth {
    /// Sim time, µs.
    pub sim_time_us: u64,
    /// Actual needle depth, µm.
    pub depth_um: f64,
    /// Actual stroke rate, Hz.
    pub rate_hz: f64,
    /// Strokes made.
    pub strokes: u64,
    /// Whether the motor's power stage is on.
    pub motor_powered: bool,
    /// PWM duty applied, 0..=1.
    pub duty: f64,
    /// Motor current, A.
    pub current_a: f64,
    /// Motor temperature, °C.
    pub temperature_c: f64,
    /// Supply voltage, V.
    pub supply_v: f64,
    /// When the motor last lost power, sim µs.
    pub motor_off_at_us: Option<u64>,
    /// Whether a cartridge is seated.
    pub cartridge_seated: bool,
    /// Control ticks the rig has seen.
    pub ticks: u64,
}

/// The query of `GET /v1/sim/ticks`: an interval of sim time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicksQuery {
    /// Start (exclusive), sim µs.
    pub after_us: u64,
    /// End (inclusive), sim µs; not before `after_us`.
    pub until_us: u64,
}

/// `GET /v1/sim/ticks`: the control ticks the rig saw in the interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ticks {
    /// How many.
    pub ticks: u64,
}

/// `POST /v1/sim/inject`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Injected {
    /// Always true.
    pub ok: bool,
    /// The sim time it was applied at, µs: jigs time reactions from it.
    pub applied_at_us: u64,
    /// `pull_cartridge` only: the pulled chip, as a jig would carry it to another pen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<PulledChip>,
}

/// A pulled cartridge's chip: its memory, its key (if it has one) and its use counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PulledChip {
    /// The readable memory (the tag), hex.
    pub tag_hex: String,
    /// The chip's private key, hex (a sim chip's; absent for a copy).
    pub chip_secret_hex: Option<String>,
    /// The use counter.
    pub counter: u32,
}

/// How ledger writes fail (`storage_fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageFailMode {
    /// Writes succeed.
    Off,
    /// Writes fail as on a full disk.
    Write,
    /// The WAL's fsync fails at commit.
    Fsync,
}

/// A sim control, as a technician or jig sends it: `{"action": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimAction {
    /// Seat a cartridge: `tag_hex` is its chip's readable memory; `chip_secret_hex` its
    /// private key (a genuine chip; without one the part is a memory-only copy that answers
    /// no challenge); `replay_answer_hex` a forger's part that answers every challenge with
    /// that recorded answer; `counter` the chip's use counter (default 0).
    SeatCartridge {
        /// The tag's bytes, hex; none for an unreadable tag.
        #[serde(default)]
        tag_hex: Option<String>,
        /// The chip's P-256 private key, hex (a genuine chip).
        #[serde(default)]
        chip_secret_hex: Option<String>,
        /// A recorded answer the part gives to every challenge, hex (a replaying forgery).
        #[serde(default)]
        replay_answer_hex: Option<String>,
        /// The chip's use counter.
        #[serde(default)]
        counter: Option<u32>,
    },
    /// Seat a fresh cartridge provisioned with the published test factory key (sim only: a
    /// jig or the console need no factory tool). Every field has a default.
    SeatNewCartridge {
        /// Cartridge id, `[A-Za-z0-9-]{1,16}` (default: a random `SIM-` id).
        #[serde(default)]
        id: Option<String>,
        /// Lot, `[A-Za-z0-9-]{1,16}`.
        #[serde(default)]
        lot: Option<String>,
        /// Needle configuration.
        #[serde(default)]
        needles: Option<Needles>,
        /// Expiry date, `YYYY-MM-DD`.
        #[serde(default)]
        #[schema(format = Date)]
        expiry: Option<String>,
    },
    /// Pull the seated cartridge out.
    PullCartridge,
    /// Press or release the E-stop.
    Estop {
        /// Pressed.
        pressed: bool,
    },
    /// Press or release the foot pedal.
    Pedal {
        /// Pressed.
        pressed: bool,
    },
    /// Jam the cam or free it.
    Jam {
        /// Jammed.
        on: bool,
    },
    /// Set the motor's temperature.
    Heat {
        /// °C, -40..=200.
        temperature_c: f64,
    },
    /// Drop the supply or restore it.
    Brownout {
        /// Dropped.
        on: bool,
    },
    /// Make the stroke sensor drop out or restore it.
    SensorDropout {
        /// Dropped out.
        on: bool,
    },
    /// Make the home switch stick closed or open, or free it (null).
    StuckHomeSwitch {
        /// Stuck closed (true), open (false), or free (null).
        closed: Option<bool>,
    },
    /// Cut (`on`) or restore the host link: the service stops refreshing the dead-man.
    HostSilence {
        /// Cut.
        on: bool,
    },
    /// Block every async worker for `ms` (a deadlock or a very slow fsync), to prove the
    /// dead-man's progress check.
    StallService {
        /// At most 10000.
        ms: u64,
    },
    /// Make every cartridge tag read take `ms` (a slow I2C bus; 0 restores it).
    SlowTag {
        /// At most 10000.
        ms: u64,
    },
    /// Make every ledger write wait `ms` before it starts (a slow fsync; 0 restores it).
    SlowLedger {
        /// At most 10000.
        ms: u64,
    },
    /// Make ledger writes fail, or succeed again.
    StorageFail {
        /// How.
        mode: StorageFailMode,
    },
    /// Make the service's next monitor pass panic (the dead-man must stop the needles).
    PanicMonitor,
    /// Make the service's next monitor pass hang for `ms` while the rest of the runtime
    /// carries on.
    StallMonitor {
        /// At most 10000.
        ms: u64,
    },
    /// Step the wall clock the service records with by `ms` (an NTP step), at most 30 days
    /// either way.
    StepWallClock {
        /// Signed ms.
        ms: i64,
    },
    /// Make the service's next `times` disarms fail, as a full command queue would.
    FailDisarm {
        /// At most 1000.
        times: u32,
    },
}
