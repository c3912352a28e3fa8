//! Configuration of the controller, one struct per concern, each with a `Default`.
//!
//! The host builds these from its TOML file; [`ControllerConfig::validate`] refuses values
//! the controller cannot run safely with, naming the field.
//!
//! ```
//! use needle_core::config::ControllerConfig;
//! let config = ControllerConfig::default();
//! assert!(config.validate().is_ok());
//! ```

use serde::{Deserialize, Serialize};

use crate::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};

/// The stroke motor and its rate loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrokeConfig {
    /// Stroke sensor edges per stroke (per cam revolution).
    pub edges_per_stroke: u32,
    /// Lowest rate an operator may set.
    pub rate_min: MilliHertz,
    /// Highest rate an operator may set.
    pub rate_max: MilliHertz,
    /// Hard ceiling: `rate_max` may not exceed it.
    pub rate_ceiling: MilliHertz,
    /// Soft start: time for the rate setpoint to ramp from 0 to the target.
    pub ramp_time: Micros,
    /// Feedforward: duty per hertz of setpoint.
    pub feedforward_permyriad_per_hz: u32,
    /// Proportional gain: duty per hertz of rate error.
    pub kp_permyriad_per_hz: u32,
    /// Integral gain: duty per hertz of rate error per second.
    pub ki_permyriad_per_hz_s: u32,
    /// Largest duty the loop may command.
    pub max_duty: Permyriad,
    /// After the ramp, a measured rate under this share of the setpoint (per mille) counts as
    /// stalling.
    pub stall_ratio_permille: u32,
    /// How long stalling must last before `StrokeStall` latches, timed from when the stroke
    /// sensor's edge timestamps put the rate under the floor (not from the tick that first
    /// saw it), and never from before the ramp reached the setpoint.
    pub stall_window: Micros,
}

impl Default for StrokeConfig {
    fn default() -> Self {
        Self {
            edges_per_stroke: 1,
            rate_min: MilliHertz::from_hz(80),
            rate_max: MilliHertz::from_hz(160),
            rate_ceiling: MilliHertz::from_hz(160),
            ramp_time: Micros::from_millis(80),
            feedforward_permyriad_per_hz: 50,
            kp_permyriad_per_hz: 40,
            ki_permyriad_per_hz_s: 2_000,
            max_duty: Permyriad(9_500),
            stall_ratio_permille: 500,
            stall_window: Micros::from_millis(150),
        }
    }
}

/// The depth axis: a STEP/DIR stepper on a lead screw moving the depth stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepthConfig {
    /// Steps per millimetre of depth.
    pub steps_per_mm: u32,
    /// Hard maximum depth; no arming ceiling may exceed it.
    pub max_depth: Micrometers,
    /// Nominal lash of the lead screw. Homing measures the real lash and the axis compensates
    /// by the measured value, never this one; `homing_backoff` must exceed it so that the
    /// back-off leaves the switch and the lash can be measured within it.
    pub backlash: Micrometers,
    /// Speed of moves while the motor is off.
    pub speed_um_per_s: u32,
    /// Speed of depth changes while the motor runs (the needles are in skin).
    pub running_speed_um_per_s: u32,
    /// Acceleration and deceleration of moves.
    pub accel_um_per_s2: u32,
    /// Homing: speed of the first approach to the switch.
    pub homing_fast_um_per_s: u32,
    /// Homing: speed of the slow re-approach that sets zero.
    pub homing_slow_um_per_s: u32,
    /// Homing: how far to back off the switch before the slow re-approach.
    pub homing_backoff: Micrometers,
    /// Homing fails if the switch is not found within this travel.
    pub homing_travel_limit: Micrometers,
    /// Deeper than this, the home switch must be released, or the axis faults.
    pub home_switch_window: Micrometers,
    /// Most STEP pulses the controller emits in one tick.
    pub max_steps_per_tick: u32,
}

impl Default for DepthConfig {
    fn default() -> Self {
        Self {
            steps_per_mm: 400,
            max_depth: Micrometers(2_500),
            backlash: Micrometers(20),
            speed_um_per_s: 4_000,
            running_speed_um_per_s: 500,
            accel_um_per_s2: 40_000,
            homing_fast_um_per_s: 3_000,
            homing_slow_um_per_s: 400,
            homing_backoff: Micrometers(200),
            homing_travel_limit: Micrometers(4_000),
            home_switch_window: Micrometers(100),
            max_steps_per_tick: 8,
        }
    }
}

/// The supervisor's limits and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyConfig {
    /// The period the controller is ticked at.
    pub tick_period: Micros,
    /// A gap between ticks longer than this while the axis or motor may move latches
    /// `ControlOverrun`.
    pub max_tick_gap: Micros,
    /// Dead-man: while armed or running the host must send a command within this time.
    pub host_timeout: Micros,
    /// Motor current limit.
    pub max_current: MilliAmps,
    /// How long the current may stay above its limit.
    pub over_current_time: Micros,
    /// Temperature limit.
    pub max_temperature: MilliCelsius,
    /// The temperature must fall this far under the limit before the fault can be cleared.
    pub temperature_hysteresis: MilliCelsius,
    /// Lowest supply voltage.
    pub min_supply: MilliVolts,
    /// How long the supply may stay under its minimum.
    pub under_voltage_time: Micros,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            tick_period: Micros(1_000),
            max_tick_gap: Micros::from_millis(50),
            host_timeout: Micros::from_millis(100),
            max_current: MilliAmps(3_000),
            over_current_time: Micros::from_millis(20),
            max_temperature: MilliCelsius(70_000),
            temperature_hysteresis: MilliCelsius(5_000),
            min_supply: MilliVolts(10_500),
            under_voltage_time: Micros::from_millis(5),
        }
    }
}

/// Everything the controller is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// Stroke motor.
    pub stroke: StrokeConfig,
    /// Depth axis.
    pub depth: DepthConfig,
    /// Supervisor.
    pub safety: SafetyConfig,
}

/// A configuration value the controller refuses: which field, and what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, such as `stroke.rate_max`.
    pub field: &'static str,
    /// What the value must be.
    pub expected: &'static str,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: expected {}", self.field, self.expected)
    }
}

fn check(ok: bool, field: &'static str, expected: &'static str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, expected })
    }
}

impl ControllerConfig {
    /// Checks every value the controller relies on; the first bad one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.stroke;
        check(
            (1..=64).contains(&s.edges_per_stroke),
            "stroke.edges_per_stroke",
            "1 to 64",
        )?;
        check(s.rate_min.0 > 0, "stroke.rate_min", "above 0")?;
        check(
            s.rate_max >= s.rate_min,
            "stroke.rate_max",
            "at least rate_min",
        )?;
        check(
            s.rate_ceiling >= s.rate_max,
            "stroke.rate_max",
            "at most rate_ceiling",
        )?;
        check(
            s.rate_ceiling <= MilliHertz::from_hz(1_000),
            "stroke.rate_ceiling",
            "at most 1000 Hz",
        )?;
        check(
            s.ramp_time.0 > 0 && s.ramp_time <= Micros::from_millis(10_000),
            "stroke.ramp_time",
            "above 0 and at most 10 s",
        )?;
        check(
            s.max_duty.0 > 0 && s.max_duty <= Permyriad::FULL,
            "stroke.max_duty",
            "1 to 10000 permyriad",
        )?;
        check(
            s.feedforward_permyriad_per_hz <= 10_000
                && s.kp_permyriad_per_hz <= 10_000
                && s.ki_permyriad_per_hz_s <= 1_000_000,
            "stroke.gains",
            "feedforward and kp at most 10000, ki at most 1000000",
        )?;
        check(
            (1..1_000).contains(&s.stall_ratio_permille),
            "stroke.stall_ratio_permille",
            "1 to 999",
        )?;
        check(
            s.stall_window >= self.safety.tick_period,
            "stroke.stall_window",
            "at least one tick period",
        )?;

        let d = &self.depth;
        check(
            (1..=100_000).contains(&d.steps_per_mm),
            "depth.steps_per_mm",
            "1 to 100000",
        )?;
        check(
            d.max_depth.0 > 0 && d.max_depth.0 <= 5_000,
            "depth.max_depth",
            "above 0 and at most 5 mm",
        )?;
        check(
            (0..=500).contains(&d.backlash.0),
            "depth.backlash",
            "0 to 500 um",
        )?;
        for (speed, field) in [
            (d.speed_um_per_s, "depth.speed_um_per_s"),
            (d.running_speed_um_per_s, "depth.running_speed_um_per_s"),
            (d.homing_fast_um_per_s, "depth.homing_fast_um_per_s"),
            (d.homing_slow_um_per_s, "depth.homing_slow_um_per_s"),
        ] {
            check((1..=50_000).contains(&speed), field, "1 to 50000 um/s")?;
        }
        check(
            (1..=10_000_000).contains(&d.accel_um_per_s2),
            "depth.accel_um_per_s2",
            "1 to 10000000 um/s2",
        )?;
        check(
            d.homing_backoff.0 > 0 && d.homing_backoff < d.homing_travel_limit,
            "depth.homing_backoff",
            "above 0 and under homing_travel_limit",
        )?;
        check(
            d.homing_backoff > d.backlash,
            "depth.homing_backoff",
            "more than backlash, so backing off leaves the switch and measures the lash",
        )?;
        check(
            d.homing_travel_limit.0 > 0 && d.homing_travel_limit.0 <= 20_000,
            "depth.homing_travel_limit",
            "above 0 and at most 20 mm",
        )?;
        check(
            d.home_switch_window.0 >= 0 && d.home_switch_window < d.max_depth,
            "depth.home_switch_window",
            "0 to under max_depth",
        )?;
        check(
            (1..=64).contains(&d.max_steps_per_tick),
            "depth.max_steps_per_tick",
            "1 to 64",
        )?;
        // The fastest move must fit in the step budget of one tick.
        let fastest = d
            .speed_um_per_s
            .max(d.homing_fast_um_per_s)
            .max(d.running_speed_um_per_s);
        let steps_per_tick =
            u64::from(fastest) * u64::from(d.steps_per_mm) * self.safety.tick_period.0
                / 1_000_000_000;
        check(
            steps_per_tick < u64::from(d.max_steps_per_tick),
            "depth.speed_um_per_s",
            "slow enough that one tick needs fewer than max_steps_per_tick steps",
        )?;

        let f = &self.safety;
        check(
            (100..=100_000).contains(&f.tick_period.0),
            "safety.tick_period",
            "100 us to 100 ms",
        )?;
        check(
            f.max_tick_gap > f.tick_period,
            "safety.max_tick_gap",
            "longer than tick_period",
        )?;
        check(
            f.host_timeout > f.tick_period && f.host_timeout <= Micros::from_millis(5_000),
            "safety.host_timeout",
            "longer than tick_period and at most 5 s",
        )?;
        check(f.max_current.0 > 0, "safety.max_current", "above 0")?;
        check(
            f.temperature_hysteresis.0 >= 0,
            "safety.temperature_hysteresis",
            "at least 0",
        )?;
        check(f.min_supply.0 >= 0, "safety.min_supply", "at least 0")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(ControllerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn rate_max_above_ceiling_is_refused_by_name() {
        let mut c = ControllerConfig::default();
        c.stroke.rate_max = MilliHertz::from_hz(200);
        assert_eq!(c.validate().unwrap_err().field, "stroke.rate_max");
    }

    #[test]
    fn too_fast_axis_for_step_budget_is_refused() {
        let mut c = ControllerConfig::default();
        c.depth.speed_um_per_s = 40_000;
        assert_eq!(c.validate().unwrap_err().field, "depth.speed_um_per_s");
    }

    #[test]
    fn homing_backoff_not_above_backlash_is_refused() {
        let mut c = ControllerConfig::default();
        c.depth.backlash = Micrometers(200);
        c.depth.homing_backoff = Micrometers(200);
        assert_eq!(c.validate().unwrap_err().field, "depth.homing_backoff");
        c.depth.homing_backoff = Micrometers(201);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn zero_steps_per_mm_is_refused() {
        let mut c = ControllerConfig::default();
        c.depth.steps_per_mm = 0;
        assert_eq!(c.validate().unwrap_err().field, "depth.steps_per_mm");
    }
}
