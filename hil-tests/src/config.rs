//! The jig configuration (`NEEDLE_JIG_CONFIG`, TOML): tolerances, scenario ranges, and for
//! the real rig the service's address, tokens and the jig's instrument pins.
//!
//! Every key has a default: the tolerances are the goals of `BENCHMARKS.md`. The sim needs no
//! file at all. What the rig's service is configured with (control period, host timeout,
//! treatment areas, ...) is not repeated here: it is read from the rig's own `needled.toml`
//! with needled's parser, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{HilError, Result};

/// Environment variable that selects the rig: unset or `sim`, or `pi`.
pub const RIG_ENV: &str = "NEEDLE_RIG";
/// Environment variable with the path of the jig configuration file.
pub const JIG_CONFIG_ENV: &str = "NEEDLE_JIG_CONFIG";

/// The whole jig configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigConfig {
    /// `[tolerances]`: pass/fail limits.
    pub tolerances: Tolerances,
    /// `[scenarios]`: ranges and repetitions.
    pub scenarios: ScenarioSettings,
    /// `[pi]`: the real rig and the jig's instruments (only with `NEEDLE_RIG=pi`).
    pub pi: Option<crate::pi::PiConfig>,
}

/// Pass/fail limits. Defaults: the goals in `BENCHMARKS.md`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tolerances {
    /// Needle depth within this of the setpoint, µm (goal: +-0.02 mm).
    pub depth_um: f64,
    /// Stroke rate within this share of the setpoint, % (goal: +-1 %).
    pub rate_percent: f64,
    /// The stroke rate must be inside the band this long after a setpoint change, ms.
    pub rate_settle_ms: f64,
    /// Write latency of the HAL's motor-enable output, µs: motor off must follow a safety
    /// input within one control period plus this. 0 on the sim.
    pub hal_write_latency_us: f64,
    /// Wake-up lateness of the rig's control thread allowed on top of the control period,
    /// µs: a fault is seen at the next tick, which comes one period plus the OS's scheduling
    /// lateness after the previous one. Default 500 (a shared VM; a Pi with an RT kernel
    /// should set its own measured p99, see BENCHMARKS.md).
    pub tick_lateness_us: f64,
    /// Widest time bracket accepted for a motor-off timing, ms. A jig that timestamps edges
    /// (the Pi jig) measures exactly; the sim jig polls over HTTP and brackets the moment.
    pub timing_resolution_ms: f64,
    /// Spread of the home position over the homing runs, µm. Default: one depth step.
    pub homing_spread_um: Option<f64>,
    /// The session time limit must stop the motor at most this late, ms.
    pub time_limit_late_ms: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            depth_um: 20.0,
            rate_percent: 1.0,
            rate_settle_ms: 200.0,
            hal_write_latency_us: 0.0,
            tick_lateness_us: 500.0,
            timing_resolution_ms: 5.0,
            homing_spread_um: None,
            time_limit_late_ms: 500.0,
        }
    }
}

/// Ranges and repetitions of the scenarios.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScenarioSettings {
    /// Homing runs for the repeatability scenario.
    pub homing_runs: u32,
    /// Depth sweep: first and last setpoint and step, µm.
    pub sweep_from_um: u32,
    /// Last setpoint of the depth sweep, µm.
    pub sweep_to_um: u32,
    /// Step of the depth sweep, µm.
    pub sweep_step_um: u32,
    /// Treatment area used for the sweep (its ceiling must reach `sweep_to_um`).
    pub sweep_area: String,
    /// Stroke-rate step across the configured rate range, Hz.
    pub rate_step_hz: u32,
    /// Window of one stroke-rate measurement, ms (at least 500).
    pub rate_window_ms: u64,
    /// Repetitions of each motor-off timing (E-stop, cartridge pull); the worst is judged.
    pub timing_repeats: u32,
}

impl Default for ScenarioSettings {
    fn default() -> Self {
        Self {
            homing_runs: 5,
            sweep_from_um: 250,
            sweep_to_um: 2_500,
            sweep_step_um: 50,
            sweep_area: "body".into(),
            rate_step_hz: 10,
            rate_window_ms: 1_000,
            timing_repeats: 3,
        }
    }
}

impl JigConfig {
    /// Reads and checks a jig configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HilError::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a jig configuration.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let config: JigConfig =
            toml::from_str(text).map_err(|e| HilError::Config(format!("{origin}: {e}")))?;
        config
            .check()
            .map_err(|e| HilError::Config(format!("{origin}: {e}")))?;
        Ok(config)
    }

    /// The configuration named by `NEEDLE_JIG_CONFIG`, or the defaults if it is unset.
    pub fn from_env() -> Result<(Self, Option<PathBuf>)> {
        match std::env::var_os(JIG_CONFIG_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                Ok((Self::load(&path)?, Some(path)))
            }
            None => Ok((Self::default(), None)),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        let t = &self.tolerances;
        let positive = [
            ("tolerances.depth_um", t.depth_um),
            ("tolerances.rate_percent", t.rate_percent),
            ("tolerances.rate_settle_ms", t.rate_settle_ms),
            ("tolerances.timing_resolution_ms", t.timing_resolution_ms),
            ("tolerances.time_limit_late_ms", t.time_limit_late_ms),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key}: expected a positive number, got {v}"));
            }
        }
        if !(t.tick_lateness_us.is_finite() && t.tick_lateness_us >= 0.0) {
            return Err(format!(
                "tolerances.tick_lateness_us: expected >= 0, got {}",
                t.tick_lateness_us
            ));
        }
        if !(t.hal_write_latency_us.is_finite() && t.hal_write_latency_us >= 0.0) {
            return Err(format!(
                "tolerances.hal_write_latency_us: expected >= 0, got {}",
                t.hal_write_latency_us
            ));
        }
        let s = &self.scenarios;
        if s.homing_runs < 2 {
            return Err("scenarios.homing_runs: expected at least 2 (a spread needs two)".into());
        }
        if s.sweep_step_um == 0 || s.sweep_from_um > s.sweep_to_um {
            return Err(
                "scenarios.sweep_*: expected sweep_from_um <= sweep_to_um and sweep_step_um > 0"
                    .into(),
            );
        }
        if s.rate_step_hz == 0 {
            return Err("scenarios.rate_step_hz: expected > 0".into());
        }
        if s.rate_window_ms < 500 {
            return Err(format!(
                "scenarios.rate_window_ms: expected at least 500, got {}",
                s.rate_window_ms
            ));
        }
        if s.timing_repeats == 0 {
            return Err("scenarios.timing_repeats: expected at least 1".into());
        }
        Ok(())
    }
}

/// What the rig's service is configured with, read from its `needled.toml` by needled's own
/// parser: the limits the scenarios derive their expectations from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RigSettings {
    /// Control tick period, µs.
    pub control_period_us: u64,
    /// Dead-man timeout, ms.
    pub host_timeout_ms: u64,
    /// Stall window, ms.
    pub stall_window_ms: u64,
    /// Current limit, mA.
    pub max_current_ma: u32,
    /// Stroke rates the operator may choose, Hz.
    pub rate_min_hz: u32,
    /// Highest selectable stroke rate, Hz.
    pub rate_max_hz: u32,
    /// One depth step, µm.
    pub depth_step_um: f64,
    /// Device depth ceiling, µm.
    pub max_depth_um: u32,
    /// Treatment areas and their depth ceilings, µm.
    pub areas: BTreeMap<String, u32>,
    /// Checklist item ids (the scenarios confirm them all).
    pub checklist: Vec<String>,
    /// Session time limit, minutes.
    pub session_time_limit_min: u32,
    /// SHA-256 of the configuration text, hex.
    pub config_sha256: String,
}

impl RigSettings {
    /// From a needled configuration text.
    pub fn from_needled_config(text: &str, origin: &str) -> Result<Self> {
        let c =
            needled::config::parse(text, origin).map_err(|e| HilError::Config(e.to_string()))?;
        Ok(Self {
            control_period_us: 1_000_000 / u64::from(c.control.rate_hz.max(1)),
            host_timeout_ms: u64::from(c.control.host_timeout_ms),
            stall_window_ms: u64::from(c.stroke.stall_window_ms),
            max_current_ma: c.safety.max_current_ma,
            rate_min_hz: c.stroke.rate_min_hz,
            rate_max_hz: c.stroke.rate_max_hz,
            depth_step_um: 1_000.0 / f64::from(c.depth.steps_per_mm.max(1)),
            max_depth_um: c.depth.max_depth_um,
            areas: c
                .areas
                .iter()
                .map(|(k, a)| (k.clone(), a.max_depth_um))
                .collect(),
            checklist: c.session.checklist.iter().map(|i| i.id.clone()).collect(),
            session_time_limit_min: c.session.time_limit_min,
            config_sha256: sha256_hex(text.as_bytes()),
        })
    }

    /// The deepest area ceiling below the device's, and its name: for the ceiling scenario.
    pub fn shallowest_area(&self) -> Option<(&str, u32)> {
        self.areas
            .iter()
            .min_by_key(|(_, d)| **d)
            .map(|(k, d)| (k.as_str(), *d))
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_benchmark_goals() {
        let c = JigConfig::parse("", "empty").unwrap();
        assert_eq!(c.tolerances.depth_um, 20.0);
        assert_eq!(c.tolerances.rate_percent, 1.0);
        assert_eq!(
            (
                c.scenarios.sweep_from_um,
                c.scenarios.sweep_to_um,
                c.scenarios.sweep_step_um
            ),
            (250, 2_500, 50)
        );
        assert!(c.pi.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        let e = JigConfig::parse("[tolerances]\ndepth_mm = 0.02\n", "jig.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jig.toml") && e.contains("depth_mm"), "{e}");
        let e = JigConfig::parse("[tolerances]\ndepth_um = -1.0\n", "jig.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tolerances.depth_um"), "{e}");
        let e = JigConfig::parse("[scenarios]\nrate_window_ms = 100\n", "jig.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rate_window_ms"), "{e}");
    }

    #[test]
    fn rig_settings_come_from_needleds_own_parser() {
        let s = RigSettings::from_needled_config(
            "[control]\nrate_hz = 2000\n[session]\ntime_limit_min = 1\nwarning_before_min = 0\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.control_period_us, 500);
        assert_eq!(s.session_time_limit_min, 1);
        assert_eq!(s.areas.get("body"), Some(&2_500));
        assert!(s.checklist.iter().any(|c| c == "consent"));
        assert_eq!(s.depth_step_um, 2.5);
        assert_eq!(s.shallowest_area().map(|a| a.1), Some(1_000));
        assert!(RigSettings::from_needled_config("[control]\nrate_hz = 5\n", "t").is_err());
    }
}
