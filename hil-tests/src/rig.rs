//! The two halves of a bench: a [`Rig`] is the device under test, driven only through the
//! service's public API with the tokens a jig uses; a [`Jig`] measures it with its own
//! instruments and works its actuators. Scenarios judge the rig by the jig, never by the
//! controller's own telemetry ("the fox watching the hen-house").

use std::time::Duration;

use needled::cartridge::{FactoryKey, Provisioned};
use serde::Serialize;

use crate::api::Api;
use crate::config::RigSettings;
use crate::error::Result;

/// What a scenario needs from the rig's service configuration. The sim rig writes a config
/// with these; a real rig runs its installed config and refuses a scenario whose needs its
/// config does not meet (with the reason), rather than pretending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RigOptions {
    /// `session.time_limit_min` (and `warning_before_min = 0`).
    pub session_time_limit_min: Option<u32>,
    /// `safety.max_current_ma`: a high limit stands for a driver that limits current itself,
    /// so only the stall detector can see a jam.
    pub max_current_ma: Option<u32>,
    /// `control.host_timeout_ms` on the sim. Unset, the sim rig uses
    /// [`SIM_HOST_TIMEOUT_MS`](crate::sim::SIM_HOST_TIMEOUT_MS): on the shared CI machine
    /// normal-priority processes were seen unscheduled for up to 0.74 s, long enough for the
    /// dead-man to (rightly) stop the needles in the middle of an unrelated scenario. The
    /// dead-man scenario asks for the product default (100 ms). A real rig runs its own
    /// setting, and the scenarios' limits follow whatever it is.
    pub host_timeout_ms: Option<u32>,
}

/// Versions of what is under test, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// `sim` or `pi`.
    pub rig: String,
    /// The service's version (and build), as far as the bench can tell.
    pub firmware: String,
    /// SHA-256 of the service's configuration file.
    pub rig_config_sha256: String,
    /// The suite's version and the checkout it runs from.
    pub suite: String,
}

/// The device under test.
pub trait Rig {
    /// `sim` or `pi`.
    fn kind(&self) -> &'static str;
    /// A client of the service's API with the jig's tokens (its address may change when the
    /// service restarts: ask again after [`Rig::start_service`]).
    fn api(&self) -> Api;
    /// What the service is configured with.
    fn settings(&self) -> &RigSettings;
    /// The factory key the rig's service trusts, to provision test cartridges as the factory
    /// would.
    fn factory_key(&self) -> Result<FactoryKey>;
    /// Kills the service without any chance to clean up (SIGKILL).
    fn kill_service(&mut self) -> Result<()>;
    /// Starts the service again after [`Rig::kill_service`] and waits until it answers.
    fn start_service(&mut self) -> Result<()>;
    /// Versions for the report.
    fn versions(&self) -> Versions;
    /// What the service logged lately, to diagnose a failure (if the bench can tell).
    fn log_tail(&self) -> Option<String> {
        None
    }
}

/// A depth reading of the jig's displacement instrument.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DepthReading {
    /// Needle depth, µm.
    pub depth_um: f64,
    /// When, on the jig's clock, µs.
    pub at_us: u64,
}

/// The stroke rate of the latest stroke (period between the last two stroke edges).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateReading {
    /// Strokes per second.
    pub rate_hz: f64,
    /// When, on the jig's clock, µs.
    pub at_us: u64,
}

/// A stroke rate counted over a window, as an optical counter does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateMeasurement {
    /// Strokes per second over the window.
    pub rate_hz: f64,
    /// Half-width of the interval the true rate is certainly in, Hz.
    pub uncertainty_hz: f64,
    /// Length of the window, s.
    pub window_s: f64,
    /// Strokes counted.
    pub strokes: u64,
}

/// A duration known to lie in `[lo_ms, hi_ms]`: exact when the jig timestamps both events,
/// a bracket when it can only poll.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower bound, ms.
    pub lo_ms: f64,
    /// Upper bound, ms.
    pub hi_ms: f64,
    /// The rig's own times of the actuation and of the motor-off, µs on the control clock,
    /// where the rig reports both exactly (the sim does). With them a reaction is judged in
    /// control ticks ([`Jig::control_ticks`]) instead of wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_us: Option<(u64, u64)>,
}

impl Interval {
    /// An exactly known duration.
    pub fn exact(ms: f64) -> Self {
        Self {
            lo_ms: ms,
            hi_ms: ms,
            span_us: None,
        }
    }

    /// A duration known to lie in `[lo_ms, hi_ms]`.
    pub fn bracket(lo_ms: f64, hi_ms: f64) -> Self {
        Self {
            lo_ms,
            hi_ms,
            span_us: None,
        }
    }

    /// How well the duration is known, ms.
    pub fn width_ms(&self) -> f64 {
        self.hi_ms - self.lo_ms
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.width_ms() == 0.0 {
            write!(f, "{:.3} ms", self.lo_ms)
        } else {
            write!(f, "[{:.3}, {:.3}] ms", self.lo_ms, self.hi_ms)
        }
    }
}

/// What the jig's actuators can do to the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actuation<'a> {
    /// Press (`true`) or release the E-stop.
    EStop(bool),
    /// Seat this cartridge: its chip's tag and key (a jig that can only write a tag, such as
    /// the Pi's EEPROM, writes the tag alone).
    SeatCartridge(&'a Provisioned),
    /// Pull the cartridge out.
    PullCartridge,
    /// Jam the needle (`true`) or free it.
    Jam(bool),
    /// Cut (`true`) or restore the link between the host and the controller (the dead-man).
    CutHostLink(bool),
}

/// The jig: independent instruments and actuators.
pub trait Jig {
    /// The instruments, for the report.
    fn describe(&self) -> String;
    /// The jig's clock, µs (the clock of every reading).
    fn now_us(&mut self) -> Result<u64>;
    /// Needle depth.
    fn depth(&mut self) -> Result<DepthReading>;
    /// The rate of the latest stroke.
    fn instant_rate(&mut self) -> Result<RateReading>;
    /// Strokes counted over at least `window`.
    fn stroke_rate(&mut self, window: Duration) -> Result<RateMeasurement>;
    /// Strokes counted since the jig started.
    fn strokes(&mut self) -> Result<u64>;
    /// Whether the motor is powered.
    fn motor_powered(&mut self) -> Result<bool>;
    /// Works an actuator.
    fn actuate(&mut self, action: Actuation<'_>) -> Result<()>;
    /// Works an actuator while the motor runs and times how long until the motor loses
    /// power. Errors if the motor was not powered first, or stays powered past `timeout`.
    fn time_motor_off(&mut self, action: Actuation<'_>, timeout: Duration) -> Result<Interval>;
    /// How many control ticks the rig saw in `(after_us, until_us]` of its control clock,
    /// where the rig itself can count them (the sim counts every advance of its clock by the
    /// control thread). `None` where it cannot: a reaction is then judged in wall time.
    fn control_ticks(&mut self, after_us: u64, until_us: u64) -> Result<Option<u64>> {
        let _ = (after_us, until_us);
        Ok(None)
    }
}
