//! `needled --safe-outputs`: drives the rig's outputs to their safe levels and nothing else.
//!
//! A SIGKILL, the OOM killer or systemd's watchdog abort end needled without running `Drop`:
//! GPIO lines and the sysfs PWM keep their last levels. systemd runs this mode from the unit's
//! `ExecStopPost=` after any exit. It reads only the `[hardware]` table
//! ([`crate::config::load_hardware`]) and opens only the outputs it names: no ledger, no
//! device key, no tokens, no ADC, no inputs.
//!
//! Order: motor enable low first (the safe-state output), then the motor PWM to duty 0 and
//! disabled, then STEP and DIR low, then the charge pump low. A step that fails does not stop
//! the others; the report names every device that could not be driven safe.

use std::fmt;

use crate::config::{Backend, HardwareConfig};
#[cfg(any(feature = "linux", feature = "rppal"))]
use crate::config::{PinMap, PinSpec};

/// One output the safe-outputs step drove, or could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeStep {
    /// The output's pin-map name: `motor_enable`, `motor_pwm`, `depth_step`, `depth_dir`,
    /// `charge_pump`.
    pub output: &'static str,
    /// The device, such as `/dev/gpiochip0 line 23` or `/sys/class/pwm/pwmchip0 channel 0`.
    pub device: String,
    /// The configuration key that names it.
    pub key: String,
    /// What was done (`Ok`), or why the output could not be driven safe (`Err`).
    pub outcome: Result<String, String>,
}

/// What `needled --safe-outputs` did, output by output, in the order it did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeReport {
    /// The backend the configuration names.
    pub backend: Backend,
    /// One step per output; empty for the sim, which has no hardware outputs.
    pub steps: Vec<SafeStep>,
}

impl SafeReport {
    /// Whether every output was driven safe (true for the sim: nothing to drive).
    pub fn is_safe(&self) -> bool {
        self.steps.iter().all(|s| s.outcome.is_ok())
    }

    /// The steps that failed.
    pub fn failures(&self) -> impl Iterator<Item = &SafeStep> {
        self.steps.iter().filter(|s| s.outcome.is_err())
    }
}

impl fmt::Display for SafeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.backend == Backend::Sim {
            return writeln!(
                f,
                "hardware.backend = \"sim\": no hardware outputs to drive, nothing done"
            );
        }
        for s in &self.steps {
            match &s.outcome {
                Ok(done) => writeln!(f, "{} ({}, {}): {done}", s.output, s.device, s.key)?,
                Err(why) => writeln!(f, "{} ({}, {}): NOT SAFE: {why}", s.output, s.device, s.key)?,
            }
        }
        Ok(())
    }
}

/// Drives every output `hardware` names to its safe level and reports what it did.
pub fn drive_outputs_safe(hardware: &HardwareConfig) -> SafeReport {
    let steps = match hardware.backend {
        // The sim has no pins; a pen MCU across the link keeps its own outputs safe (its
        // dead-man stops the needles when this host goes quiet).
        Backend::Sim | Backend::Link => Vec::new(),
        Backend::Linux => linux_steps(hardware),
        Backend::Rppal => rppal_steps(hardware),
    };
    SafeReport {
        backend: hardware.backend,
        steps,
    }
}

/// The outputs in the order they are driven safe.
pub const ORDER: [&str; 5] = [
    "motor_enable",
    "motor_pwm",
    "depth_step",
    "depth_dir",
    "charge_pump",
];

/// The steps of a GPIO backend, in [`ORDER`]: `drive_low(name, spec, high)` drives the pin
/// map's output `name` to electrical level `high`, its logical low; `pwm_off` turns the motor
/// PWM off. `device` names a pin in the report. A step that fails does not stop the others.
#[cfg(any(feature = "linux", feature = "rppal"))]
pub(crate) fn gpio_safe_steps(
    key: &str,
    pins: PinMap,
    device: impl Fn(PinSpec) -> String,
    mut drive_low: impl FnMut(&'static str, PinSpec, bool) -> Result<(), String>,
    pwm_off: impl FnOnce() -> SafeStep,
) -> Vec<SafeStep> {
    let mut pin_step = |name: &'static str, spec: PinSpec| {
        let high = super::pins::electrical_level(false, spec.active_low);
        SafeStep {
            output: name,
            device: device(spec),
            key: format!("{key}.{name}"),
            outcome: drive_low(name, spec, high)
                .map(|()| format!("low (electrically {})", if high { "high" } else { "low" })),
        }
    };
    let mut steps = vec![pin_step("motor_enable", pins.motor_enable)];
    steps.push(pwm_off());
    for (name, spec) in [
        ("depth_step", pins.depth_step),
        ("depth_dir", pins.depth_dir),
        ("charge_pump", pins.charge_pump),
    ] {
        steps.push(pin_step(name, spec));
    }
    steps
}

#[cfg(feature = "linux")]
fn linux_steps(hardware: &HardwareConfig) -> Vec<SafeStep> {
    match &hardware.linux {
        Some(lc) => super::linux::drive_outputs_safe(lc),
        None => vec![missing("linux")],
    }
}

#[cfg(not(feature = "linux"))]
fn linux_steps(_hardware: &HardwareConfig) -> Vec<SafeStep> {
    vec![not_built_in("linux")]
}

#[cfg(feature = "rppal")]
fn rppal_steps(hardware: &HardwareConfig) -> Vec<SafeStep> {
    match &hardware.rppal {
        Some(rc) => super::rppal::drive_outputs_safe(rc),
        None => vec![missing("rppal")],
    }
}

#[cfg(not(feature = "rppal"))]
fn rppal_steps(_hardware: &HardwareConfig) -> Vec<SafeStep> {
    vec![not_built_in("rppal")]
}

#[allow(dead_code)] // unused when both backends are built in
fn not_built_in(backend: &'static str) -> SafeStep {
    SafeStep {
        output: "every output",
        device: format!("the {backend} backend"),
        key: "hardware.backend".into(),
        outcome: Err(super::HalError::NotBuiltIn { backend }.to_string()),
    }
}

#[allow(dead_code)] // unused when neither backend is built in
fn missing(backend: &'static str) -> SafeStep {
    SafeStep {
        output: "every output",
        device: format!("the {backend} backend"),
        key: "hardware.backend".into(),
        outcome: Err(super::HalError::MissingSection { backend }.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_has_nothing_to_drive_and_is_safe() {
        let report = drive_outputs_safe(&HardwareConfig::default());
        assert!(report.is_safe());
        assert!(report.steps.is_empty());
        assert!(
            report.to_string().contains("no hardware outputs"),
            "{report}"
        );
    }

    #[cfg(not(feature = "linux"))]
    #[test]
    fn a_backend_not_built_in_is_not_safe_and_says_so() {
        let hardware = HardwareConfig {
            backend: Backend::Linux,
            ..HardwareConfig::default()
        };
        let report = drive_outputs_safe(&hardware);
        assert!(!report.is_safe());
        assert!(report.to_string().contains("--features linux"), "{report}");
    }
}
