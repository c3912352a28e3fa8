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
    /// The last update that moved the ramp (the stall window cannot start before the update
    /// that first sees it at the target).
    ramp_moved: Micros,
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
            ramp_moved: Micros::ZERO,
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
        self.ramp_moved = now;
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
        self.advance_ramp(dt, now);

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

        let stalled = self.check_stall(now, sample);
        self.last_update = now;
        StrokeOutput {
            duty: self.duty,
            stalled,
        }
    }

    fn advance_ramp(&mut self, dt: u64, now: Micros) {
        if self.ramp == self.target {
            return;
        }
        self.ramp_moved = now;
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

    /// Whether the rate has been under the stall floor, after the ramp, for the whole stall
    /// window. The window starts when the sensor's timestamps put the rate under the floor
    /// ([`under_floor_since`]), not at the tick that first sees it there: a late tick would
    /// otherwise round the window up twice, once at its start and once at its end.
    /// `self.last_update` is still the previous update's time.
    fn check_stall(&mut self, now: Micros, sample: &StrokeSample) -> bool {
        let c = &self.config;
        let ramp_done = self.ramp == self.target;
        let floor = u64::from(self.target.0) * u64::from(c.stall_ratio_permille) / 1000;
        if !(ramp_done && u64::from(self.measured.0) < floor) {
            self.stalling_since = None;
            return false;
        }
        let since = *self.stalling_since.get_or_insert_with(|| {
            // Not before the previous update, nor before the ramp came to the target.
            let after = self.last_update.max(self.ramp_moved);
            window_start(sample, floor, c.edges_per_stroke, after, now)
        });
        now.since(since) >= c.stall_window
    }
}

/// Where a stall window that `now`'s update is the first to see starts: when the sensor put
/// the rate under `floor` ([`under_floor_since`]). The update before this one saw the rate at
/// or over the floor or the ramp not at the target, and the ramp last moved at or before it:
/// so a time not after `after` (the later of the two) or after `now` is not the sensor's
/// story, and the window starts now (a ramp that came to the target only now is such a
/// case). Out of line: it runs once a stall, not every tick.
#[cold]
#[inline(never)]
fn window_start(
    sample: &StrokeSample,
    floor: u64,
    edges_per_stroke: u32,
    after: Micros,
    now: Micros,
) -> Micros {
    under_floor_since(sample, floor, edges_per_stroke)
        .filter(|&at| at > after && at <= now)
        .unwrap_or(now)
}

/// When the rate [`measured_rate`] reads from `sample` fell under `floor` (millihertz), by
/// the sensor's timestamps: at the last edge when the period it ended was already too long,
/// else when the time since it grew too long. `None` without a period to go by.
fn under_floor_since(sample: &StrokeSample, floor: u64, edges_per_stroke: u32) -> Option<Micros> {
    let (Some(period), Some(last_edge)) = (sample.last_period, sample.last_edge) else {
        return None;
    };
    let per_stroke = u64::from(edges_per_stroke.max(1));
    // The rate 1e9 / (effective × edges per stroke), rounded down, is under `floor` exactly
    // when the effective period is longer than 1e9 / (floor × edges per stroke).
    let longest = 1_000_000_000u64.checked_div(floor.saturating_mul(per_stroke))?;
    let too_long = longest.saturating_add(1);
    Some(if period.0 >= too_long {
        last_edge
    } else {
        Micros(last_edge.0.saturating_add(too_long))
    })
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

    /// Ticks that jitter (as a Linux thread's wake-ups do): the stall window is timed from
    /// when the sensor's timestamps put the rate under the floor, so the stall latches at the
    /// first tick at least `stall_window` after that, never a tick later because the tick
    /// that first saw the rate low came late.
    #[test]
    fn stall_window_runs_from_when_the_rate_fell_under_the_floor_whatever_the_tick_jitter() {
        let cfg = StrokeConfig::default();
        let rate = MilliHertz::from_hz(100);
        let period = 10_000u64;
        // 1 edge a stroke, floor 50 Hz: the rate reads under it once an edge is more than
        // 20_000 µs old (1e9 / (20_001 µs) < 50_000 mHz <= 1e9 / 20_000 µs).
        let under_after = 20_001u64;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        let mut late = 0;
        for _ in 0..200 {
            let mut l = StrokeLoop::new(cfg);
            l.set_target(rate);
            l.start(Micros(0));
            // Jammed at a random time after the ramp; the last edge is the one before it.
            let jam = 200_000 + random(period);
            let last_edge = jam / period * period;
            let stall_from = last_edge + under_after;
            let mut t = 0u64;
            let mut stalled_at = None;
            let mut expected = None;
            while t < stall_from + cfg.stall_window.0 + 10_000 {
                // Gaps of 100 to 1_900 µs: 1 ms on average, never past MAX_DT.
                t += 100 + random(1_801);
                let edges = t.min(jam) / period;
                let s = StrokeSample {
                    edges: edges as u32,
                    last_edge: Some(Micros(edges * period)),
                    last_period: Some(Micros(period)),
                };
                if expected.is_none() && t >= stall_from + cfg.stall_window.0 {
                    expected = Some(t);
                }
                if l.update(Micros(t), &s).stalled {
                    stalled_at = Some(t);
                    break;
                }
            }
            let (Some(at), Some(expected)) = (stalled_at, expected) else {
                panic!("no stall latched for the jam at {jam} (by {t})");
            };
            assert!(
                at >= expected,
                "latched at {at}, before the window from {stall_from}"
            );
            late += usize::from(at > expected);
        }
        assert_eq!(late, 0, "jams whose stall latched a tick late");
    }

    /// A jam during the soft start: the rate fell under the floor before the ramp reached the
    /// setpoint, and the window still starts no earlier than the update that sees it there.
    #[test]
    fn stall_window_never_starts_before_the_ramp_is_at_the_setpoint() {
        let cfg = StrokeConfig::default();
        let period = 10_000u64;
        // Edges at 9_800 + k × period; ticks every 700 µs, so ticks and edges do not line up
        // (the jam at 30_000 puts the rate under the floor at 49_801, between the ramp's last
        // two updates).
        let first = 9_800u64;
        let gap = 700u64;
        for jam in [0u64, 5_000, 20_000, 29_000, 30_000, 45_000, 70_000] {
            let mut l = StrokeLoop::new(cfg);
            l.set_target(MilliHertz::from_hz(100));
            l.start(Micros(0));
            let edges_at = |t: u64| {
                if t < first {
                    0
                } else {
                    (t - first) / period + 1
                }
            };
            let mut ramp_done_at = None;
            let mut stalled_at = None;
            let mut t = 0u64;
            while t < 1_000_000 && stalled_at.is_none() {
                t += gap;
                let edges = edges_at(t.min(jam));
                let s = StrokeSample {
                    edges: edges as u32,
                    last_edge: (edges > 0).then(|| Micros(first + (edges - 1) * period)),
                    last_period: (edges > 1).then_some(Micros(period)),
                };
                if l.update(Micros(t), &s).stalled {
                    stalled_at = Some(t);
                }
                if ramp_done_at.is_none() && l.ramp() == l.target() {
                    ramp_done_at = Some(t);
                }
            }
            let (Some(done), Some(at)) = (ramp_done_at, stalled_at) else {
                panic!("jam at {jam}: ramp done {ramp_done_at:?}, stall {stalled_at:?}");
            };
            // Under the floor (50 Hz) once the last edge is over 20_000 µs old, or from the
            // start without two edges; the window from that or the ramp's end, the later.
            let edges = edges_at(jam);
            let under = if edges > 1 {
                first + (edges - 1) * period + 20_001
            } else {
                0
            };
            let start = under.max(done);
            let expected = (start + cfg.stall_window.0).div_ceil(gap) * gap;
            assert_eq!(
                at, expected,
                "jam at {jam}: the window runs from {start} (ramp at the setpoint at {done})"
            );
        }
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
