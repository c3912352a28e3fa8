//! The conversion of the validated file to needle-core's [`ControllerConfig`], in the core's
//! units.

use needle_core::config::{ControllerConfig, DepthConfig, SafetyConfig, StrokeConfig};
use needle_core::units::{
    Micrometers, Micros, MilliAmps, MilliCelsius, MilliHertz, MilliVolts, Permyriad,
};

use super::Config;

impl Config {
    /// needle-core's configuration: `[stroke]`, `[depth]`, `[safety]` in the core's units,
    /// with the tick period, tick gap and host timeout from `[control]`.
    ///
    /// Meaningful for a configuration that passed [`Config::validate`]; out-of-range values
    /// saturate instead of panicking.
    pub fn controller_config(&self) -> ControllerConfig {
        let ms = |v: u32| Micros::from_millis(u64::from(v));
        let um = |v: u32| Micrometers(i32::try_from(v).unwrap_or(i32::MAX));
        let signed = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let s = &self.stroke;
        let d = &self.depth;
        let f = &self.safety;
        ControllerConfig {
            stroke: StrokeConfig {
                edges_per_stroke: s.edges_per_stroke,
                rate_min: MilliHertz::from_hz(s.rate_min_hz),
                rate_max: MilliHertz::from_hz(s.rate_max_hz),
                rate_ceiling: MilliHertz::from_hz(s.rate_ceiling_hz),
                ramp_time: ms(s.ramp_time_ms),
                feedforward_permyriad_per_hz: s.feedforward_permyriad_per_hz,
                kp_permyriad_per_hz: s.kp_permyriad_per_hz,
                ki_permyriad_per_hz_s: s.ki_permyriad_per_hz_s,
                max_duty: Permyriad(u16::try_from(s.max_duty_permyriad).unwrap_or(u16::MAX)),
                stall_ratio_permille: s.stall_ratio_permille,
                stall_window: ms(s.stall_window_ms),
            },
            depth: DepthConfig {
                steps_per_mm: d.steps_per_mm,
                max_depth: um(d.max_depth_um),
                backlash: um(d.backlash_um),
                speed_um_per_s: d.speed_um_per_s,
                running_speed_um_per_s: d.running_speed_um_per_s,
                accel_um_per_s2: d.accel_um_per_s2,
                homing_fast_um_per_s: d.homing_fast_um_per_s,
                homing_slow_um_per_s: d.homing_slow_um_per_s,
                homing_backoff: um(d.homing_backoff_um),
                homing_travel_limit: um(d.homing_travel_limit_um),
                home_switch_window: um(d.home_switch_window_um),
                max_steps_per_tick: d.max_steps_per_tick,
            },
            safety: SafetyConfig {
                tick_period: self.control.tick_period(),
                max_tick_gap: ms(self.control.max_tick_gap_ms),
                host_timeout: ms(self.control.host_timeout_ms),
                max_current: MilliAmps(signed(f.max_current_ma)),
                over_current_time: ms(f.over_current_time_ms),
                max_temperature: MilliCelsius(signed(f.max_temperature_c).saturating_mul(1000)),
                temperature_hysteresis: MilliCelsius(
                    signed(f.temperature_hysteresis_c).saturating_mul(1000),
                ),
                min_supply: MilliVolts(signed(f.min_supply_mv)),
                under_voltage_time: ms(f.under_voltage_time_ms),
            },
        }
    }
}
