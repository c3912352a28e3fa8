//! What the link backend tells `GET /v1/health` (the `link` object): the link's state, the
//! last handshake refusal, losses and pen restarts, and pen-side event times on the host's
//! clock (CLOCK_MONOTONIC, as [`crate::control::monotonic_now`]), mapped by the link's clock
//! sync.
//!
//! The link thread publishes it into one process-wide slot ([`current`]): needled runs at
//! most one link backend.

use std::sync::Mutex;

use needle_core::units::Micros;
use needle_core::Telemetry;
use needle_link::{ClockSync, Counters};
use serde::Serialize;

/// The link as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkHealth {
    /// `closed` (the device is not open), `identifying`, `configuring`, `up` (driving the
    /// pen) or `refused` (will not drive the pen on the other end).
    pub state: &'static str,
    /// The serial device.
    pub device: String,
    /// The pen's serial number, once one answered.
    pub pen: Option<String>,
    /// The last handshake refusal, if any since needled started.
    pub refusal: Option<Refusal>,
    /// Times the pen fell silent while driven.
    pub losses: u32,
    /// Times the pen came back restarted (or another pen answered) after needled drove one.
    pub pen_restarts: u32,
    /// The last of those.
    pub last_restart: Option<PenEvent>,
    /// Whether a restart is latched as a fault: until the operator clears faults, the
    /// status shows a latched `host_timeout` and every command but a heartbeat or a fault
    /// clear is refused, so nothing resumes by itself.
    pub restart_latched: bool,
    /// The latest fault the pen latched, with its time on both clocks.
    pub last_fault: Option<PenEvent>,
    /// The latest time the pen's motor went off, with its time on both clocks.
    pub last_stop: Option<PenEvent>,
    /// The fit of the pen's clock to the host's.
    pub clock: Option<ClockFit>,
    /// What the host received from the pen and rejected, by reason.
    pub received: Counters,
    /// Host messages sent again for want of a verdict.
    pub retransmissions: u32,
}

/// Why the host will not drive the pen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `version`, `config_hash` or `config_invalid`.
    pub code: &'static str,
    /// What to do about it.
    pub message: String,
    /// When (host clock, µs).
    pub host_time_us: u64,
}

/// Something that happened on the pen, on its clock and on the host's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PenEvent {
    /// What: a fault's code, `motor_off`, `restarted` or `replaced`.
    pub what: &'static str,
    /// The pen's clock (µs): for a fault or a stop, the time of the first telemetry that
    /// showed it (the tick it happened in, at `telemetry_every = 1`).
    pub pen_time_us: u64,
    /// The same instant on the host's monotonic clock (µs), once the clock sync has a fit.
    pub host_time_us: Option<u64>,
}

/// The clock fit, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClockFit {
    /// Pen µs per host µs.
    pub rate: f64,
    /// How far off one mapped time may be (half the shortest probe round trip), µs.
    pub uncertainty_us: u64,
}

static CURRENT: Mutex<Option<LinkHealth>> = Mutex::new(None);

/// The link's health, when the link backend runs.
pub fn current() -> Option<LinkHealth> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl LinkHealth {
    /// A link on `device`, not open yet.
    pub(super) fn new(device: String) -> Self {
        Self {
            state: "closed",
            device,
            pen: None,
            refusal: None,
            losses: 0,
            pen_restarts: 0,
            last_restart: None,
            restart_latched: false,
            last_fault: None,
            last_stop: None,
            clock: None,
            received: Counters::default(),
            retransmissions: 0,
        }
    }

    /// Puts this where [`current`] finds it.
    pub(super) fn publish(&self) {
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.clone());
    }

    /// Notes the faults and stops `t` shows that `before` did not; returns whether it did.
    pub(super) fn observe(&mut self, before: &Telemetry, t: &Telemetry, clock: &ClockSync) -> bool {
        let event = |what| PenEvent::at(what, t.now, clock);
        let new_fault = t.faults.without(before.faults).first();
        let fault = new_fault.or(t.last_fault.filter(|f| before.last_fault != Some(*f)));
        if let Some(f) = fault {
            self.last_fault = Some(event(f.code()));
        }
        let stopped = before.motor_enabled && !t.motor_enabled;
        if stopped {
            self.last_stop = Some(event("motor_off"));
        }
        fault.is_some() || stopped
    }

    /// Takes the clock fit.
    pub(super) fn clock(&mut self, clock: &ClockSync) {
        self.clock = clock.fit().map(|f| ClockFit {
            rate: f.rate,
            uncertainty_us: f.uncertainty.0,
        });
    }
}

impl PenEvent {
    /// `what` at pen time `pen`, mapped to the host's clock by `clock`.
    pub(super) fn at(what: &'static str, pen: Micros, clock: &ClockSync) -> Self {
        Self {
            what,
            pen_time_us: pen.0,
            host_time_us: clock.to_host(pen).map(|h| h.0),
        }
    }
}
