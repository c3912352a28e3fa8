//! The rules of `[hardware]` and of the backend it names: pins, buses, the ADC's calibration
//! against the safety limits, and the serial link's timing.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use super::error::{in_range, invalid, Invalid};
use super::{
    AdcConfig, Atecc608Config, Backend, Config, HardwareConfig, PinMap, PinRole, Pull,
    ADS1115_DATA_RATES_SPS, ADS1115_FULL_SCALES_MV,
};

/// `[<p>.atecc608]`: an address no other part of the bus uses, a tag slot that holds the whole
/// tag image, a key slot apart from it, counter 0 or 1. Checked whatever `cartridge_chip`
/// says, so a table waiting for the switch is already right.
fn validate_chip(p: &str, chip: &Atecc608Config, adc_address: u8) -> Result<(), Invalid> {
    let p = format!("{p}.atecc608");
    in_range(&format!("{p}.i2c_address"), chip.i2c_address, 0x08..=0x77)?;
    if chip.i2c_address == adc_address {
        return Err(invalid(
            format!("{p}.i2c_address"),
            format!("{:#04x} is the ADC's address", chip.i2c_address),
        ));
    }
    let holds = crate::hal::atecc608::slot_capacity(chip.tag_slot);
    if holds.is_none_or(|bytes| bytes < crate::cartridge::TAG_CAPACITY) {
        return Err(invalid(
            format!("{p}.tag_slot"),
            format!(
                "slot {} cannot hold the {}-byte tag image: only slot 8 (416 bytes) can",
                chip.tag_slot,
                crate::cartridge::TAG_CAPACITY
            ),
        ));
    }
    in_range(&format!("{p}.key_slot"), chip.key_slot, 0..=15)?;
    if chip.key_slot == chip.tag_slot {
        return Err(invalid(
            format!("{p}.key_slot"),
            "must not be the tag slot: the key slot is never readable",
        ));
    }
    in_range(&format!("{p}.counter"), chip.counter, 0..=1)
}

impl Config {
    pub(super) fn validate_hardware(&self) -> Result<(), Invalid> {
        let h = &self.hardware;
        match h.backend {
            Backend::Sim => Ok(()),
            Backend::Link => {
                let l = &self.link;
                if l.device.as_os_str().is_empty() {
                    return Err(invalid(
                        "link.device",
                        "expected the pen's serial device path",
                    ));
                }
                if crate::hal::link::baud_rate(l.baud).is_none() {
                    return Err(invalid("link.baud", format!("unsupported rate {}", l.baud)));
                }
                // Clock probes feed the clock fit only: the pen's dead-man is refreshed by the
                // commands the controller accepts (the service's heartbeats), never by a probe.
                // At least one a second (Klipper's rate) keeps the fit following the drift.
                in_range("link.sync_ms", l.sync_ms, 1..=1_000)?;
                Ok(())
            }
            Backend::Rppal => {
                let Some(r) = &h.rppal else {
                    return Err(missing_backend_section(h.backend));
                };
                let p = "hardware.rppal";
                in_range(&format!("{p}.pwm_channel"), r.pwm_channel, 0..=1)?;
                let mut reserved = vec![(
                    if r.pwm_channel == 0 { 18 } else { 19 },
                    "the hardware PWM pin of pwm_channel",
                )];
                if r.i2c_bus == 1 {
                    reserved.push((2, "I2C1 SDA"));
                    reserved.push((3, "I2C1 SCL"));
                }
                validate_pins(p, &r.pins(), 0..=27, true, &reserved)?;
                in_range(&format!("{p}.i2c_bus"), r.i2c_bus, 0..=22)?;
                validate_chip(p, &r.atecc608, r.adc.address)?;
                self.validate_bus_devices(
                    p,
                    r.pwm_frequency_hz,
                    r.tag_eeprom_address,
                    r.tag_eeprom_address_bytes,
                    r.step_pulse_us,
                    r.dir_setup_us,
                    &r.adc,
                )
            }
            Backend::Linux => {
                let Some(l) = &h.linux else {
                    return Err(missing_backend_section(h.backend));
                };
                let p = "hardware.linux";
                for (key, path) in [
                    ("gpio_chip", &l.gpio_chip),
                    ("pwm_chip", &l.pwm_chip),
                    ("i2c_device", &l.i2c_device),
                ] {
                    if !path.is_absolute() {
                        return Err(invalid(
                            format!("{p}.{key}"),
                            format!("expected an absolute path, got \"{}\"", path.display()),
                        ));
                    }
                }
                validate_pins(p, &l.pins(), 0..=u32::MAX, false, &[])?;
                in_range(&format!("{p}.pwm_channel"), l.pwm_channel, 0..=63)?;
                validate_chip(p, &l.atecc608, l.adc.address)?;
                self.validate_bus_devices(
                    p,
                    l.pwm_frequency_hz,
                    l.tag_eeprom_address,
                    l.tag_eeprom_address_bytes,
                    l.step_pulse_us,
                    l.dir_setup_us,
                    &l.adc,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn validate_bus_devices(
        &self,
        p: &str,
        pwm_frequency_hz: u32,
        tag_address: u8,
        tag_address_bytes: u8,
        step_pulse_us: u32,
        dir_setup_us: u32,
        adc: &AdcConfig,
    ) -> Result<(), Invalid> {
        in_range(
            &format!("{p}.pwm_frequency_hz"),
            pwm_frequency_hz,
            100..=100_000,
        )?;
        in_range(&format!("{p}.tag_eeprom_address"), tag_address, 0x50..=0x57)?;
        in_range(
            &format!("{p}.tag_eeprom_address_bytes"),
            tag_address_bytes,
            1..=2,
        )?;
        in_range(&format!("{p}.step_pulse_us"), step_pulse_us, 1..=50)?;
        in_range(&format!("{p}.dir_setup_us"), dir_setup_us, 0..=50)?;
        // The core emits up to max_steps_per_tick pulses per tick, each taking two
        // step_pulse_us holds; they must fit in a fraction of the tick.
        let pulse_budget = u64::from(self.depth.max_steps_per_tick) * 2 * u64::from(step_pulse_us)
            + u64::from(dir_setup_us);
        let tick = self.control.tick_period().0;
        if pulse_budget * 4 > tick {
            return Err(invalid(
                format!("{p}.step_pulse_us"),
                format!(
                    "expected step pulses to fit in a quarter tick: {} steps x 2 x {step_pulse_us} us \
                     + {dir_setup_us} us is more than {} us",
                    self.depth.max_steps_per_tick,
                    tick / 4
                ),
            ));
        }
        self.validate_adc(&format!("{p}.adc"), adc)
    }

    fn validate_adc(&self, p: &str, adc: &AdcConfig) -> Result<(), Invalid> {
        in_range(&format!("{p}.address"), adc.address, 0x48..=0x4B)?;
        if !ADS1115_DATA_RATES_SPS.contains(&adc.data_rate_sps) {
            return Err(invalid(
                format!("{p}.data_rate_sps"),
                format!(
                    "expected one of {ADS1115_DATA_RATES_SPS:?}, got {}",
                    adc.data_rate_sps
                ),
            ));
        }
        // Two full scans of the three channels must fit in max_age_ms.
        let scan_ms = 2 * 3 * 1_000_u32.div_ceil(adc.data_rate_sps) + 2;
        in_range(&format!("{p}.max_age_ms"), adc.max_age_ms, scan_ms..=1_000)?;
        // Readings are in thousandths of the unit: mA, m°C, mV.
        let f = &self.safety;
        let channels = [
            (
                "current",
                &adc.current,
                i64::from(f.max_current_ma),
                "safety.max_current_ma",
            ),
            (
                "temperature",
                &adc.temperature,
                i64::from(f.max_temperature_c) * 1_000,
                "safety.max_temperature_c",
            ),
            (
                "supply",
                &adc.supply,
                i64::from(f.min_supply_mv),
                "safety.min_supply_mv",
            ),
        ];
        let mut inputs = BTreeSet::new();
        for (name, ch, _, _) in &channels {
            let key = format!("{p}.{name}");
            in_range(&format!("{key}.input"), ch.input, 0..=3)?;
            if !inputs.insert(ch.input) {
                return Err(invalid(
                    format!("{key}.input"),
                    format!(
                        "expected an input not used by another channel, got {}",
                        ch.input
                    ),
                ));
            }
            if !ADS1115_FULL_SCALES_MV.contains(&ch.full_scale_mv) {
                return Err(invalid(
                    format!("{key}.full_scale_mv"),
                    format!(
                        "expected one of {ADS1115_FULL_SCALES_MV:?}, got {}",
                        ch.full_scale_mv
                    ),
                ));
            }
            if ch.milli_per_volt == 0 {
                return Err(invalid(
                    format!("{key}.milli_per_volt"),
                    "expected a non-zero scale, got 0",
                ));
            }
        }
        // A limit outside what a channel can read could never trip: refuse the calibration.
        for (name, ch, limit, limit_key) in &channels {
            let (lo, hi) = ch.reading_range();
            if !(lo < *limit && *limit < hi) {
                return Err(invalid(
                    format!("{p}.{name}.milli_per_volt"),
                    format!(
                        "expected a calibration whose readings from 0 V to full scale ({lo} to \
                         {hi}) include the limit {limit_key} ({limit}), or the limit could \
                         never trip"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl HardwareConfig {
    /// Refuses a GPIO backend without its section (`[hardware.rppal]`, `[hardware.linux]`);
    /// the sim and the link have none.
    pub(super) fn require_backend_section(&self) -> Result<(), Invalid> {
        let missing = match self.backend {
            Backend::Sim | Backend::Link => false,
            Backend::Rppal => self.rppal.is_none(),
            Backend::Linux => self.linux.is_none(),
        };
        if missing {
            return Err(missing_backend_section(self.backend));
        }
        Ok(())
    }
}

fn missing_backend_section(backend: Backend) -> Invalid {
    invalid(
        "hardware.backend",
        format!("backend \"{backend}\" needs a [hardware.{backend}] section with its pin map"),
    )
}

fn validate_pins(
    prefix: &str,
    pins: &PinMap,
    range: RangeInclusive<u32>,
    pull_supported: bool,
    reserved: &[(u32, &str)],
) -> Result<(), Invalid> {
    let mut used: BTreeMap<u32, &str> = BTreeMap::new();
    for (name, spec, role) in pins.all() {
        let key = format!("{prefix}.{name}");
        in_range(&key, spec.pin, range.clone())?;
        if spec.pull != Pull::None {
            if role == PinRole::Output {
                return Err(invalid(
                    key,
                    format!("expected no pull resistor mark (^ or ~) on an output, got \"{spec}\""),
                ));
            }
            if !pull_supported {
                return Err(invalid(
                    key,
                    format!(
                        "pull resistor marks (^ or ~) are not supported by this backend: set the \
                         bias in the device tree or wire a resistor, got \"{spec}\""
                    ),
                ));
            }
        }
        if let Some(other) = used.insert(spec.pin, name) {
            return Err(invalid(
                key,
                format!("pin {} is already used by {prefix}.{other}", spec.pin),
            ));
        }
        if let Some((_, what)) = reserved.iter().find(|(pin, _)| *pin == spec.pin) {
            return Err(invalid(
                key,
                format!("pin {} is reserved for {what}", spec.pin),
            ));
        }
    }
    Ok(())
}
