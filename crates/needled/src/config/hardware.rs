//! `[hardware]`: which backend drives the rig, the sections of the GPIO backends
//! (`[hardware.rppal]`, `[hardware.linux]`) with their defaults, and `[sim]`, the simulated
//! rig. Pins are in `pins.rs`, the ADC in `adc.rs`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::adc::AdcConfig;
use super::pins::{PinMap, PinSpec};

/// `[hardware]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareConfig {
    /// `backend`: `"sim"` (default), `"rppal"`, `"linux"` or `"link"`.
    pub backend: Backend,
    /// `[hardware.rppal]`: required when `backend = "rppal"`.
    pub rppal: Option<RppalConfig>,
    /// `[hardware.linux]`: required when `backend = "linux"`.
    pub linux: Option<LinuxConfig>,
}

/// Which hardware backend builds the rig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The simulated rig (needle-sim).
    #[default]
    Sim,
    /// A Raspberry Pi through rppal (cargo feature `rppal`).
    Rppal,
    /// Any Linux board through gpio-cdev, sysfs PWM and i2c-dev (cargo feature `linux`).
    Linux,
    /// A pen MCU running needle-core, over the serial link in `[link]`.
    Link,
}

impl Backend {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sim => "sim",
            Backend::Rppal => "rppal",
            Backend::Linux => "linux",
            Backend::Link => "link",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[hardware.rppal]`: a Raspberry Pi through rppal. Pins are BCM GPIO numbers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // pin keys: see PinMap
pub struct RppalConfig {
    pub motor_enable: PinSpec,
    pub depth_step: PinSpec,
    pub depth_dir: PinSpec,
    pub charge_pump: PinSpec,
    pub home_switch: PinSpec,
    pub cartridge_switch: PinSpec,
    pub estop: PinSpec,
    pub pedal: PinSpec,
    pub stroke_sensor: PinSpec,
    /// `pwm_channel`: hardware PWM channel of the motor driver, 0 (GPIO18) or 1 (GPIO19).
    #[serde(default)]
    pub pwm_channel: u8,
    /// `pwm_frequency_hz`: motor PWM frequency. Default 20000.
    #[serde(default = "default_pwm_frequency_hz")]
    pub pwm_frequency_hz: u32,
    /// `i2c_bus`: I2C bus number (`/dev/i2c-N`). Default 1 (GPIO2/3).
    #[serde(default = "default_i2c_bus")]
    pub i2c_bus: u8,
    /// `tag_eeprom_address`: 7-bit I2C address of the cartridge tag EEPROM. Default 0x50.
    #[serde(default = "default_tag_eeprom_address")]
    pub tag_eeprom_address: u8,
    /// `tag_eeprom_address_bytes`: word address width of the EEPROM: 1 (24C01/02, default)
    /// or 2 (24C32 and larger).
    #[serde(default = "default_tag_eeprom_address_bytes")]
    pub tag_eeprom_address_bytes: u8,
    /// `cartridge_chip`: what the cartridge carries on the bus: `"eeprom"` (default: a plain
    /// 24Cxx tag, no authenticator chip, so `cartridge.chip_required` refuses every
    /// cartridge) or `"atecc608"` (the tag in an ATECC608's data slot, its challenge and use
    /// counter: `[hardware.rppal.atecc608]`).
    #[serde(default)]
    pub cartridge_chip: CartridgeChipKind,
    /// `[hardware.rppal.atecc608]`: the ATECC608's address, slots and counter (defaults: 0x60, 8, 0, 0).
    #[serde(default)]
    pub atecc608: Atecc608Config,
    /// `step_pulse_us`: minimum STEP high and low time. Default 2.
    #[serde(default = "default_step_pulse_us")]
    pub step_pulse_us: u32,
    /// `dir_setup_us`: minimum time from a DIR change to the next STEP edge. Default 1.
    #[serde(default = "default_dir_setup_us")]
    pub dir_setup_us: u32,
    /// `[hardware.rppal.adc]`: the ADS1115 for current, temperature and supply.
    pub adc: AdcConfig,
}

impl RppalConfig {
    /// The pin map.
    pub fn pins(&self) -> PinMap {
        PinMap {
            motor_enable: self.motor_enable,
            depth_step: self.depth_step,
            depth_dir: self.depth_dir,
            charge_pump: self.charge_pump,
            home_switch: self.home_switch,
            cartridge_switch: self.cartridge_switch,
            estop: self.estop,
            pedal: self.pedal,
            stroke_sensor: self.stroke_sensor,
        }
    }
}

/// `[hardware.linux]`: any Linux board through gpio-cdev, sysfs PWM and i2c-dev. Pins are
/// line offsets of `gpio_chip`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // pin keys: see PinMap
pub struct LinuxConfig {
    /// `gpio_chip`: the GPIO character device. Default `/dev/gpiochip0`.
    #[serde(default = "default_gpio_chip")]
    pub gpio_chip: PathBuf,
    pub motor_enable: PinSpec,
    pub depth_step: PinSpec,
    pub depth_dir: PinSpec,
    pub charge_pump: PinSpec,
    pub home_switch: PinSpec,
    pub cartridge_switch: PinSpec,
    pub estop: PinSpec,
    pub pedal: PinSpec,
    pub stroke_sensor: PinSpec,
    /// `pwm_chip`: the sysfs PWM chip. Default `/sys/class/pwm/pwmchip0`.
    #[serde(default = "default_pwm_chip")]
    pub pwm_chip: PathBuf,
    /// `pwm_channel`: channel of `pwm_chip`. Default 0.
    #[serde(default)]
    pub pwm_channel: u32,
    /// `pwm_frequency_hz`: motor PWM frequency. Default 20000.
    #[serde(default = "default_pwm_frequency_hz")]
    pub pwm_frequency_hz: u32,
    /// `i2c_device`: the I2C bus device. Default `/dev/i2c-1`.
    #[serde(default = "default_i2c_device")]
    pub i2c_device: PathBuf,
    /// `tag_eeprom_address`: see [`RppalConfig::tag_eeprom_address`].
    #[serde(default = "default_tag_eeprom_address")]
    pub tag_eeprom_address: u8,
    /// `tag_eeprom_address_bytes`: see [`RppalConfig::tag_eeprom_address_bytes`].
    #[serde(default = "default_tag_eeprom_address_bytes")]
    pub tag_eeprom_address_bytes: u8,
    /// `cartridge_chip`: what the cartridge carries on the bus: `"eeprom"` (default: a plain
    /// 24Cxx tag, no authenticator chip, so `cartridge.chip_required` refuses every
    /// cartridge) or `"atecc608"` (the tag in an ATECC608's data slot, its challenge and use
    /// counter: `[hardware.linux.atecc608]`).
    #[serde(default)]
    pub cartridge_chip: CartridgeChipKind,
    /// `[hardware.linux.atecc608]`: the ATECC608's address, slots and counter (defaults: 0x60, 8, 0, 0).
    #[serde(default)]
    pub atecc608: Atecc608Config,
    /// `step_pulse_us`: see [`RppalConfig::step_pulse_us`].
    #[serde(default = "default_step_pulse_us")]
    pub step_pulse_us: u32,
    /// `dir_setup_us`: see [`RppalConfig::dir_setup_us`].
    #[serde(default = "default_dir_setup_us")]
    pub dir_setup_us: u32,
    /// `[hardware.linux.adc]`: the ADS1115 for current, temperature and supply.
    pub adc: AdcConfig,
}

impl LinuxConfig {
    /// The pin map.
    pub fn pins(&self) -> PinMap {
        PinMap {
            motor_enable: self.motor_enable,
            depth_step: self.depth_step,
            depth_dir: self.depth_dir,
            charge_pump: self.charge_pump,
            home_switch: self.home_switch,
            cartridge_switch: self.cartridge_switch,
            estop: self.estop,
            pedal: self.pedal,
            stroke_sensor: self.stroke_sensor,
        }
    }
}

/// What the cartridge carries on the I2C bus (`cartridge_chip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CartridgeChipKind {
    /// A plain 24Cxx EEPROM holding the tag: no challenge, no use counter.
    #[default]
    Eeprom,
    /// A Microchip ATECC608(A/B): the tag in a data slot, a P-256 key that signs the pen's
    /// challenge, a monotonic use counter.
    Atecc608,
}

impl CartridgeChipKind {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            CartridgeChipKind::Eeprom => "eeprom",
            CartridgeChipKind::Atecc608 => "atecc608",
        }
    }
}

/// `[hardware.<backend>.atecc608]`: where the cartridge's ATECC608 is and which of its slots
/// and counters the pen uses (what the factory configured and locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Atecc608Config {
    /// `i2c_address`: 7-bit I2C address. Default 0x60 (the factory's).
    pub i2c_address: u8,
    /// `tag_slot`: the data slot holding the signed tag image, readable in the clear; it must
    /// hold the whole tag image, which only slot 8 (416 bytes) does. Default 8.
    pub tag_slot: u8,
    /// `key_slot`: the slot of the chip's P-256 private key, set up for Sign external.
    /// Default 0.
    pub key_slot: u8,
    /// `counter`: the monotonic counter used as the cartridge's use counter, 0 or 1.
    /// Default 0.
    pub counter: u8,
}

impl Default for Atecc608Config {
    fn default() -> Self {
        Self {
            i2c_address: 0x60,
            tag_slot: 8,
            key_slot: 0,
            counter: 0,
        }
    }
}

impl Atecc608Config {
    /// The driver's view of it.
    pub fn slots(&self) -> crate::hal::atecc608::AteccSlots {
        crate::hal::atecc608::AteccSlots {
            address: self.i2c_address,
            tag_slot: self.tag_slot,
            key_slot: self.key_slot,
            counter: self.counter,
        }
    }
}

fn default_pwm_frequency_hz() -> u32 {
    20_000
}
fn default_i2c_bus() -> u8 {
    1
}
fn default_tag_eeprom_address() -> u8 {
    0x50
}
fn default_tag_eeprom_address_bytes() -> u8 {
    1
}
fn default_step_pulse_us() -> u32 {
    2
}
fn default_dir_setup_us() -> u32 {
    1
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_pwm_chip() -> PathBuf {
    PathBuf::from("/sys/class/pwm/pwmchip0")
}
fn default_i2c_device() -> PathBuf {
    PathBuf::from("/dev/i2c-1")
}

/// `[sim]`: the simulated rig (only used with `hardware.backend = "sim"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// `cartridge_seated_at_start`: start with a cartridge in place. Default false.
    pub cartridge_seated_at_start: bool,
    /// `motor_load_permille`: mechanical load on the stroke motor, 1000 = nominal.
    pub motor_load_permille: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            cartridge_seated_at_start: false,
            motor_load_permille: 1_000,
        }
    }
}
