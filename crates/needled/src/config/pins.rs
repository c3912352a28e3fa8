//! Pins of the GPIO backends: a number with Klipper-style marks (`"^!17"`), and the map of
//! every pin a backend drives or reads.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Pull resistor of an input pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pull {
    /// None (external resistor, or a push-pull sensor).
    #[default]
    None,
    /// Pull-up (`^` in the pin string).
    Up,
    /// Pull-down (`~` in the pin string).
    Down,
}

/// A pin: a number (BCM GPIO for rppal, line offset for linux) with Klipper-style marks.
///
/// In the file either an integer (`17`) or a string: `"!17"` is active-low (the input reads
/// active, or the output drives active, at a low level), `"^17"` enables the pull-up, `"~17"`
/// the pull-down; marks combine as `"^!17"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinSpec {
    /// BCM GPIO number or line offset.
    pub pin: u32,
    /// Active-low wiring.
    pub active_low: bool,
    /// Pull resistor (inputs only).
    pub pull: Pull,
}

impl PinSpec {
    /// An active-high pin without pull resistor.
    pub const fn plain(pin: u32) -> Self {
        Self {
            pin,
            active_low: false,
            pull: Pull::None,
        }
    }
}

impl fmt::Display for PinSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pull {
            Pull::None => {}
            Pull::Up => f.write_str("^")?,
            Pull::Down => f.write_str("~")?,
        }
        if self.active_low {
            f.write_str("!")?;
        }
        write!(f, "{}", self.pin)
    }
}

impl std::str::FromStr for PinSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || {
            format!(
                "expected a pin number or a string like \"!17\" (active-low), \"^17\" (pull-up) \
                 or \"~17\" (pull-down), got \"{s}\""
            )
        };
        let mut spec = PinSpec::plain(0);
        let mut rest = s.trim();
        loop {
            let mut chars = rest.chars();
            match chars.next() {
                Some('!') if !spec.active_low => spec.active_low = true,
                Some('^') if spec.pull == Pull::None => spec.pull = Pull::Up,
                Some('~') if spec.pull == Pull::None => spec.pull = Pull::Down,
                _ => break,
            }
            rest = chars.as_str().trim_start();
        }
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        spec.pin = rest.parse().map_err(|_| expected())?;
        Ok(spec)
    }
}

impl<'de> Deserialize<'de> for PinSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PinVisitor;

        impl Visitor<'_> for PinVisitor {
            type Value = PinSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pin number or a string like \"!17\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PinSpec, E> {
                u32::try_from(v)
                    .map(PinSpec::plain)
                    .map_err(|_| E::custom(format!("expected a pin number 0 or above, got {v}")))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PinSpec, E> {
                u32::try_from(v)
                    .map(PinSpec::plain)
                    .map_err(|_| E::custom(format!("pin number {v} is too large")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PinSpec, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(PinVisitor)
    }
}

/// Whether a pin is read or driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRole {
    /// Read by the controller.
    Input,
    /// Driven by the controller.
    Output,
}

/// The pins every GPIO backend maps, by key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMap {
    /// `motor_enable`: stroke motor driver enable (output; low is the safe state).
    pub motor_enable: PinSpec,
    /// `depth_step`: STEP of the depth stepper driver (output).
    pub depth_step: PinSpec,
    /// `depth_dir`: DIR of the depth stepper driver (output; active moves deeper).
    pub depth_dir: PinSpec,
    /// `charge_pump`: toggled every control tick while no fault is latched (output). It feeds
    /// the retriggerable monostable the motor driver's enable is ANDed with (README, "Charge
    /// pump"), so the driver loses power when the ticks stop.
    pub charge_pump: PinSpec,
    /// `home_switch`: depth axis home switch (input).
    pub home_switch: PinSpec,
    /// `cartridge_switch`: cartridge-seated switch (input).
    pub cartridge_switch: PinSpec,
    /// `estop`: emergency stop (input; active when pressed).
    pub estop: PinSpec,
    /// `pedal`: foot pedal (input).
    pub pedal: PinSpec,
    /// `stroke_sensor`: stroke sensor on the cam (input with edge events).
    pub stroke_sensor: PinSpec,
}

impl PinMap {
    /// Every pin with its key name and role.
    pub fn all(&self) -> [(&'static str, PinSpec, PinRole); 9] {
        [
            ("motor_enable", self.motor_enable, PinRole::Output),
            ("depth_step", self.depth_step, PinRole::Output),
            ("depth_dir", self.depth_dir, PinRole::Output),
            ("charge_pump", self.charge_pump, PinRole::Output),
            ("home_switch", self.home_switch, PinRole::Input),
            ("cartridge_switch", self.cartridge_switch, PinRole::Input),
            ("estop", self.estop, PinRole::Input),
            ("pedal", self.pedal, PinRole::Input),
            ("stroke_sensor", self.stroke_sensor, PinRole::Input),
        ]
    }
}
