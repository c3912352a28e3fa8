//! The scenarios. Each is a function of a [`Bench`] that records checks with the jig's
//! measurements in a [`Recorder`]; `tests/scenarios.rs` runs each as one test.
//!
//! - [`motion`]: homing repeatability, depth accuracy, stroke-rate accuracy and settling.
//! - [`safety`]: E-stop, stall, cartridge pulled, host link cut, service killed.
//! - [`rules`]: refused cartridges, the area depth ceiling, the session time limit.

pub mod motion;
pub mod rules;
pub mod safety;

use crate::bench::Bench;
use crate::report::Recorder;
use crate::rig::Interval;

/// The treatment area with the deepest ceiling, and that ceiling.
pub fn deepest_area(b: &Bench) -> (String, u32) {
    b.rig
        .settings()
        .areas
        .iter()
        .max_by_key(|(_, d)| **d)
        .map_or_else(|| ("body".into(), 2_500), |(k, d)| (k.clone(), *d))
}

/// A mid-range stroke rate, Hz.
pub fn mid_rate(b: &Bench) -> u32 {
    let s = b.rig.settings();
    (s.rate_min_hz + s.rate_max_hz) / 2
}

/// One control period plus the control thread's allowed wake-up lateness plus the HAL's write
/// latency, ms: how soon the motor must lose power after a safety input changes.
pub fn motor_off_limit_ms(b: &Bench) -> f64 {
    let t = &b.config.tolerances;
    b.rig.settings().control_period_us as f64 / 1_000.0
        + t.tick_lateness_us / 1_000.0
        + t.hal_write_latency_us / 1_000.0
}

/// Motor-off timings of one kind. A timing is an interval; one wider than the timing
/// resolution cannot show that the limit is met (the jig could not tell), so the scenario
/// measures again, up to three times as often as it wanted, until it has `wanted` resolved
/// timings. Every timing, resolved or not, still counts against the limit by its lower bound.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Every timing taken.
    pub all: Vec<Interval>,
    wanted: usize,
    resolution_ms: f64,
}

impl Timings {
    /// Wants `wanted` timings no wider than `resolution_ms`.
    pub fn new(wanted: u32, resolution_ms: f64) -> Self {
        Self {
            all: Vec::new(),
            wanted: wanted.max(1) as usize,
            resolution_ms,
        }
    }

    /// Adds a timing.
    pub fn push(&mut self, t: Interval) {
        self.all.push(t);
    }

    /// The timings no wider than the resolution.
    pub fn resolved(&self) -> Vec<Interval> {
        self.all
            .iter()
            .copied()
            .filter(|t| t.width_ms() <= self.resolution_ms)
            .collect()
    }

    /// Whether to measure again: too few resolved timings, and attempts left.
    pub fn more(&self) -> bool {
        self.resolved().len() < self.wanted && self.all.len() < self.wanted * 3
    }

    /// Judges the timings against `limit_ms`: the limit fails if any timing's lower bound is
    /// over it; the measurement fails if fewer than `wanted` timings were resolved.
    pub fn judge(&self, r: &mut Recorder, what: &str, limit_ms: f64, limit_label: &str) {
        let key = what
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("_");
        r.figure(&format!("{key}_motor_off_ms"), &self.all);
        if self.all.is_empty() {
            r.check(
                &format!("{what}: motor off within {limit_label}"),
                false,
                "no timing",
                format!("<= {limit_ms:.3} ms"),
            );
            return;
        }
        let resolved = self.resolved();
        let worst_lo = self.all.iter().map(|t| t.lo_ms).fold(0.0, f64::max);
        let judged = if resolved.is_empty() {
            &self.all
        } else {
            &resolved
        };
        let worst_hi = judged.iter().map(|t| t.hi_ms).fold(0.0, f64::max);
        let shown: Vec<String> = self.all.iter().map(ToString::to_string).collect();
        let measured = if resolved.iter().all(|t| t.width_ms() == 0.0) && !resolved.is_empty() {
            format!("worst {worst_hi:.3} ms ({})", shown.join(", "))
        } else {
            format!(
                "at most {worst_hi:.3} ms, at least {worst_lo:.3} ms ({})",
                shown.join(", ")
            )
        };
        r.check(
            &format!("{what}: motor off within {limit_label}"),
            worst_lo <= limit_ms,
            measured,
            format!("<= {limit_ms:.3} ms"),
        );
        let widest = resolved.iter().map(Interval::width_ms).fold(0.0, f64::max);
        r.check(
            &format!("{what}: timings resolved by the jig"),
            resolved.len() >= self.wanted,
            format!(
                "{} of {} attempts resolved (widest {widest:.3} ms)",
                resolved.len(),
                self.all.len()
            ),
            format!(
                "{} resolved to <= {:.3} ms (tolerances.timing_resolution_ms)",
                self.wanted, self.resolution_ms
            ),
        );
    }
}
