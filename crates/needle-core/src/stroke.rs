//! The stroke motor's rate loop: rate measurement, soft-start ramp, PI with anti-windup and
//! stall detection. Pure logic: the controller feeds it samples and applies its duty.

use crate::config::StrokeConfig;
use crate::hal::StrokeSample;
use crate::units::{Micros, MilliHertz, Permyriad};

/// Integration steps longer than this are shortened, so a late tick cannot jump the duty.
const MAX_DT: Micros = Micros(10_000);

/// Scale of the integral accumulator: permyriad × 10⁹ (mHz·µs·gain).
const INTEGRAL_SCALE: i64 = 1_000_000_000;

/// The stroke rate from the sensor's timestamps.
///
/// The rate is that of the last full period, bounded by the time since the last edge: if no
/// edge has come for longer than a period, the rate can be at most one period per that time.
/// So a jammed motor reads as slowing at once, not as its last good rate.
///
/// ```
/// use needle_core::hal::StrokeSample;
/// use needle_core::stroke::measured_rate;
/// use needle_core::units::{MilliHertz, Micros};
/// let s = StrokeSample { edges: 10, last_edge: Some(Micros(100_000)), last_period: Some(Micros(8_000)) };
/// assert_eq!(measured_rate(&s, Micros(101_000), 1), MilliHertz(125_000));
/// // 40 ms without an edge: at most 25 Hz.
/// assert_eq!(measured_rate(&s, Micros(140_000), 1), MilliHertz(25_000));
/// ```
pub fn measured_rate(sample: &StrokeSample, now: Micros, edges_per_stroke: u32) -> MilliHertz {
    let (Some(period), Some(last_edge)) = (sample.last_period, sample.last_edge) else {
        return MilliHertz::ZERO;
    };
    let effective = period.0.max(now.since(last_edge).0);
    let denominator = effective.saturating_mul(u64::from(edges_per_stroke.max(1)));
    if denominator == 0 {
        return MilliHertz::ZERO;
    }
    let rate = 1_000_000_000u64 / denominator;
    MilliHertz(u32::try_from(rate).unwrap_or(u32::MAX))
}

/// What the rate loop decided in one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrokeOutput {
    /// Duty to apply to the motor.
    pub duty: Permyriad,
    /// Whether stalling has lasted the whole stall window.
    pub stalled: bool,
}

/// The stroke rate loop.
#[derive(Debug, Clone)]
pub struct StrokeLoop {
    config: StrokeConfig,
    target: MilliHertz,
    ramp: MilliHertz,
    running: bool,
    integral: i64,
    last_update: Micros,
    stalling_since: Option<Micros>,
    measured: MilliHertz,
    duty: Permyriad,
}

impl StrokeLoop {
    /// A stopped loop.
    pub fn new(config: StrokeConfig) -> Self {
        Self {
            config,
            target: MilliHertz::ZERO,
            ramp: MilliHertz::ZERO,
            running: false,
            integral: 0,
            last_update: Micros::ZERO,
            stalling_since: None,
            measured: MilliHertz::ZERO,
            duty: Permyriad(0),
        }
    }

    /// Sets the rate to reach; while running, the ramp slews to it.
    pub fn set_target(&mut self, rate: MilliHertz) {
        self.target = rate;
    }

    /// The rate setpoint.
    #[inline]
    pub fn target(&self) -> MilliHertz {
        self.target
    }

    /// The ramped setpoint the loop follows right now.
    pub fn ramp(&self) -> MilliHertz {
        self.ramp
    }

    /// The latest measured rate.
    #[inline]
    pub fn measured(&self) -> MilliHertz {
        self.measured
    }

    /// The duty of the latest update.
    pub fn duty(&self) -> Permyriad {
        self.duty
    }

    /// Starts a soft start from zero.
    pub fn start(&mut self, now: Micros) {
        self.running = true;
        self.ramp = MilliHertz::ZERO;
        self.integral = 0;
        self.last_update = now;
        self.stalling_since = None;
    }

    /// Stops: duty 0, ramp and integral reset.
    pub fn stop(&mut self) {
        self.running = false;
        self.ramp = MilliHertz::ZERO;
        self.integral = 0;
        self.stalling_since = None;
        self.duty = Permyriad(0);
    }

    /// Takes a new sample; returns the duty to apply and whether the motor stalled.
    pub fn update(&mut self, now: Micros, sample: &StrokeSample) -> StrokeOutput {
        self.measured = measured_rate(sample, now, self.config.edges_per_stroke);
        if !self.running {
            self.duty = Permyriad(0);
            return StrokeOutput {
                duty: self.duty,
                stalled: false,
            };
        }
        let dt = now.since(self.last_update).0.min(MAX_DT.0);
        self.last_update = now;
        self.advance_ramp(dt);

        let c = &self.config;
        let max_duty = i64::from(c.max_duty.0);
        let setpoint = i64::from(self.ramp.0);
        let error = setpoint - i64::from(self.measured.0);
        let feedforward = setpoint * i64::from(c.feedforward_permyriad_per_hz) / 1000;
        let proportional = error * i64::from(c.kp_permyriad_per_hz) / 1000;
        // error (mHz) × dt (µs) × ki (permyriad/Hz/s) = permyriad × 10⁹.
        let step = error
            .saturating_mul(dt as i64)
            .saturating_mul(i64::from(c.ki_permyriad_per_hz_s));
        // The integral term alone keeps feedforward + integral within 0..=max_duty, so the
        // output leaves saturation as soon as the error changes sign.
        let high = (max_duty - feedforward)
            .max(0)
            .saturating_mul(INTEGRAL_SCALE);
        let low = -feedforward.saturating_mul(INTEGRAL_SCALE);
        let candidate = self.integral.saturating_add(step).clamp(low, high);
        let unclamped = feedforward + proportional + candidate / INTEGRAL_SCALE;
        // Anti-windup: integrate only when the output is not saturated in the error's direction.
        let winding_up = (unclamped > max_duty && error > 0) || (unclamped < 0 && error < 0);
        self.integral = if winding_up {
            self.integral.clamp(low, high)
        } else {
            candidate
        };
        let output =
            (feedforward + proportional + self.integral / INTEGRAL_SCALE).clamp(0, max_duty);
        // output is within 0..=max_duty <= 10_000.
        self.duty = Permyriad(u16::try_from(output).unwrap_or(0));

        StrokeOutput {
            duty: self.duty,
            stalled: self.check_stall(now),
        }
    }

    fn advance_ramp(&mut self, dt: u64) {
        let c = &self.config;
        // Slope: the full rate range in one ramp time.
        let step = u64::from(c.rate_max.0).saturating_mul(dt) / c.ramp_time.0.max(1);
        let step = u32::try_from(step).unwrap_or(u32::MAX).max(1);
        self.ramp = if self.ramp < self.target {
            MilliHertz(self.ramp.0.saturating_add(step).min(self.target.0))
        } else {
            MilliHertz(self.ramp.0.saturating_sub(step).max(self.target.0))
        };
    }

    fn check_stall(&mut self, now: Micros) -> bool {
        let c = &self.config;
        let ramp_done = self.ramp == self.target;
        let floor = u64::from(self.target.0) * u64::from(c.stall_ratio_permille) / 1000;
        if ramp_done && u64::from(self.measured.0) < floor {
            let since = *self.stalling_since.get_or_insert(now);
            now.since(since) >= c.stall_window
        } else {
            self.stalling_since = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(last_edge: u64, period: u64) -> StrokeSample {
        StrokeSample {
            edges: 100,
            last_edge: Some(Micros(last_edge)),
            last_period: Some(Micros(period)),
        }
    }

    #[test]
    fn rate_is_zero_before_two_edges() {
        let s = StrokeSample {
            edges: 1,
            last_edge: Some(Micros(5)),
            last_period: None,
        };
        assert_eq!(measured_rate(&s, Micros(10), 1), MilliHertz::ZERO);
        assert_eq!(
            measured_rate(&StrokeSample::default(), Micros(10), 1),
            MilliHertz::ZERO
        );
    }

    #[test]
    fn rate_counts_edges_per_stroke() {
        // Two edges per stroke, 4 ms between edges: 125 Hz.
        assert_eq!(
            measured_rate(&sample(1000, 4000), Micros(1000), 2),
            MilliHertz(125_000)
        );
    }

    #[test]
    fn zero_period_reads_as_zero_rate_not_a_panic() {
        assert_eq!(
            measured_rate(&sample(1000, 0), Micros(1000), 1),
            MilliHertz::ZERO
        );
    }

    #[test]
    fn ramp_rises_to_target_in_ramp_time() {
        let cfg = StrokeConfig::default();
        let mut l = StrokeLoop::new(cfg);
        l.set_target(cfg.rate_max);
        l.start(Micros(0));
        let mut t = 0;
        while l.ramp() < cfg.rate_max {
            t += 1000;
            l.update(Micros(t), &StrokeSample::default());
            assert!(t <= cfg.ramp_time.0 + 1000, "ramp too slow");
        }
        assert!(t >= cfg.ramp_time.0 - 1000, "ramp too fast");
    }

    #[test]
    fn duty_never_exceeds_max_and_integral_does_not_wind_up() {
        let cfg = StrokeConfig::default();
        let mut l = StrokeLoop::new(cfg);
        l.set_target(cfg.rate_max);
        l.start(Micros(0));
        // Motor jammed for 5 s: duty pinned at max, integral must not grow past it.
        for t in 1..5000u64 {
            let out = l.update(Micros(t * 1000), &StrokeSample::default());
            assert!(out.duty <= cfg.max_duty);
        }
        let feedforward =
            i64::from(cfg.rate_max.0) * i64::from(cfg.feedforward_permyriad_per_hz) / 1000;
        assert!(l.integral / INTEGRAL_SCALE <= i64::from(cfg.max_duty.0) - feedforward);
        // Once the motor runs 1 % over the rate, the duty leaves saturation in the same update.
        let t = 5_001_000u64;
        let period = 1_000_000_000 / (u64::from(cfg.rate_max.0) * 101 / 100);
        l.update(Micros(t), &sample(t, period));
        assert!(l.duty() < cfg.max_duty);
    }

    #[test]
    fn stall_latches_only_after_window_and_ramp() {
        let cfg = StrokeConfig::default();
        let mut l = StrokeLoop::new(cfg);
        l.set_target(MilliHertz::from_hz(100));
        l.start(Micros(0));
        let mut stalled_at = None;
        for t in 1..2000u64 {
            if l.update(Micros(t * 1000), &StrokeSample::default()).stalled {
                stalled_at = Some(t * 1000);
                break;
            }
        }
        let at = stalled_at.expect("stall must be detected");
        // Ramp to 100 Hz takes ramp_time * 100/160; then the window.
        let ramp_end = cfg.ramp_time.0 * 100 / 160;
        assert!(
            at >= ramp_end + cfg.stall_window.0,
            "stalled too early at {at}"
        );
        assert!(
            at <= ramp_end + cfg.stall_window.0 + 2000,
            "stalled too late at {at}"
        );
    }

    #[test]
    fn stopped_loop_commands_zero_duty() {
        let mut l = StrokeLoop::new(StrokeConfig::default());
        l.set_target(MilliHertz::from_hz(100));
        assert_eq!(
            l.update(Micros(1000), &sample(1000, 10_000)).duty,
            Permyriad(0)
        );
    }
}
