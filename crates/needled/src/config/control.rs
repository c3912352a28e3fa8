//! `[control]`, the real-time control thread, and the core's own sections `[stroke]`,
//! `[depth]` and `[safety]` with units in their key names. Their defaults are the core's.

use needle_core::config::{DepthConfig, SafetyConfig, StrokeConfig};
use needle_core::units::{Micrometers, Micros};
use serde::Deserialize;

use super::error::{invalid, Invalid};

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// `rate_hz`: control ticks per second, 100 to 10000. Default 1000.
    pub rate_hz: u32,
    /// `host_timeout_ms`: dead-man timeout while armed or running. Default 100.
    pub host_timeout_ms: u32,
    /// `max_tick_gap_ms`: a longer gap between ticks latches `ControlOverrun`. Default 50.
    pub max_tick_gap_ms: u32,
    /// `service_stall_ms`: the heartbeat thread refreshes the core's dead-man only while the
    /// service's monitor completed a pass within this time; a hung service or monitor stops
    /// the needles within `service_stall_ms + host_timeout_ms`. Default 1000.
    pub service_stall_ms: u32,
    /// `realtime_priority`: run the control and heartbeat threads with SCHED_FIFO. Default
    /// true.
    pub realtime_priority: bool,
    /// `cpu`: the CPU the control thread runs on, alone: every other thread of needled is kept
    /// off it. One of the CPUs present (`/sys/devices/system/cpu/online`), on a machine with
    /// at least two. Pair it with `isolcpus=`, `nohz_full=` and `rcu_nocbs=` on the kernel
    /// command line so nothing else runs there either. Default: not set, the scheduler
    /// places the thread.
    pub cpu: Option<u32>,
    /// `require_memory_lock`: refuse to start when the process's memory cannot be locked
    /// (`mlockall`; needs root, CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK). Default false:
    /// the failure is logged and reported in `/v1/status`, and needled runs on.
    pub require_memory_lock: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            rate_hz: 1_000,
            host_timeout_ms: 100,
            max_tick_gap_ms: 50,
            service_stall_ms: 1_000,
            realtime_priority: true,
            cpu: None,
            require_memory_lock: false,
        }
    }
}

impl ControlConfig {
    /// The tick period, rounded down to whole microseconds.
    pub fn tick_period(&self) -> Micros {
        Micros(1_000_000 / u64::from(self.rate_hz.max(1)))
    }

    /// `control.cpu` must name a CPU present, on a machine with another one for the rest.
    pub(super) fn validate_cpu(&self) -> Result<(), Invalid> {
        let Some(cpu) = self.cpu else {
            return Ok(());
        };
        let online = crate::realtime::online_cpus()
            .map_err(|e| invalid("control.cpu", format!("cannot list the CPUs present: {e}")))?;
        let list = crate::realtime::format_cpu_list(&online);
        if !online.contains(&cpu) {
            return Err(invalid(
                "control.cpu",
                format!("expected one of the CPUs present ({list}), got {cpu}"),
            ));
        }
        if online.len() < 2 {
            return Err(invalid(
                "control.cpu",
                format!(
                    "this machine has one CPU ({list}): the control thread cannot have one to \
                     itself; leave control.cpu out"
                ),
            ));
        }
        Ok(())
    }
}

// --- [stroke], [depth], [safety] ---------------------------------------------------------------

/// `[stroke]`: needle-core's [`StrokeConfig`] with units in the key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // each field is the core field of the same name; see StrokeConfig
pub struct StrokeSection {
    pub edges_per_stroke: u32,
    pub rate_min_hz: u32,
    pub rate_max_hz: u32,
    pub rate_ceiling_hz: u32,
    pub ramp_time_ms: u32,
    pub feedforward_permyriad_per_hz: u32,
    pub kp_permyriad_per_hz: u32,
    pub ki_permyriad_per_hz_s: u32,
    pub max_duty_permyriad: u32,
    pub stall_ratio_permille: u32,
    pub stall_window_ms: u32,
}

impl Default for StrokeSection {
    fn default() -> Self {
        let c = StrokeConfig::default();
        Self {
            edges_per_stroke: c.edges_per_stroke,
            rate_min_hz: c.rate_min.as_hz(),
            rate_max_hz: c.rate_max.as_hz(),
            rate_ceiling_hz: c.rate_ceiling.as_hz(),
            ramp_time_ms: millis_u32(c.ramp_time),
            feedforward_permyriad_per_hz: c.feedforward_permyriad_per_hz,
            kp_permyriad_per_hz: c.kp_permyriad_per_hz,
            ki_permyriad_per_hz_s: c.ki_permyriad_per_hz_s,
            max_duty_permyriad: u32::from(c.max_duty.0),
            stall_ratio_permille: c.stall_ratio_permille,
            stall_window_ms: millis_u32(c.stall_window),
        }
    }
}

/// `[depth]`: needle-core's [`DepthConfig`] with units in the key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)] // each field is the core field of the same name; see DepthConfig
pub struct DepthSection {
    pub steps_per_mm: u32,
    pub max_depth_um: u32,
    pub backlash_um: u32,
    pub speed_um_per_s: u32,
    pub running_speed_um_per_s: u32,
    pub accel_um_per_s2: u32,
    pub homing_fast_um_per_s: u32,
    pub homing_slow_um_per_s: u32,
    pub homing_backoff_um: u32,
    pub homing_travel_limit_um: u32,
    pub home_switch_window_um: u32,
    pub max_steps_per_tick: u32,
}

impl Default for DepthSection {
    fn default() -> Self {
        let c = DepthConfig::default();
        let um = |m: Micrometers| u32::try_from(m.0).unwrap_or(0);
        Self {
            steps_per_mm: c.steps_per_mm,
            max_depth_um: um(c.max_depth),
            backlash_um: um(c.backlash),
            speed_um_per_s: c.speed_um_per_s,
            running_speed_um_per_s: c.running_speed_um_per_s,
            accel_um_per_s2: c.accel_um_per_s2,
            homing_fast_um_per_s: c.homing_fast_um_per_s,
            homing_slow_um_per_s: c.homing_slow_um_per_s,
            homing_backoff_um: um(c.homing_backoff),
            homing_travel_limit_um: um(c.homing_travel_limit),
            home_switch_window_um: um(c.home_switch_window),
            max_steps_per_tick: c.max_steps_per_tick,
        }
    }
}

/// `[safety]`: needle-core's [`SafetyConfig`] limits with units in the key names. Its timing
/// fields (tick period, maximum tick gap, host timeout) come from `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetySection {
    /// `max_current_ma`: motor current limit.
    pub max_current_ma: u32,
    /// `over_current_time_ms`: how long the current may stay above its limit.
    pub over_current_time_ms: u32,
    /// `max_temperature_c`: temperature limit, whole degrees Celsius.
    pub max_temperature_c: u32,
    /// `temperature_hysteresis_c`: how far under the limit before the fault may be cleared.
    pub temperature_hysteresis_c: u32,
    /// `min_supply_mv`: lowest supply voltage.
    pub min_supply_mv: u32,
    /// `under_voltage_time_ms`: how long the supply may stay under its minimum.
    pub under_voltage_time_ms: u32,
}

impl Default for SafetySection {
    fn default() -> Self {
        let c = SafetyConfig::default();
        let non_negative = |v: i32| u32::try_from(v).unwrap_or(0);
        Self {
            max_current_ma: non_negative(c.max_current.0),
            over_current_time_ms: millis_u32(c.over_current_time),
            max_temperature_c: non_negative(c.max_temperature.0 / 1000),
            temperature_hysteresis_c: non_negative(c.temperature_hysteresis.0 / 1000),
            min_supply_mv: non_negative(c.min_supply.0),
            under_voltage_time_ms: millis_u32(c.under_voltage_time),
        }
    }
}

fn millis_u32(t: Micros) -> u32 {
    u32::try_from(t.as_millis()).unwrap_or(u32::MAX)
}
