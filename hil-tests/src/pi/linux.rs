//! The jig's instruments on a Raspberry Pi: gpio-cdev lines for relays and edge inputs (the
//! kernel timestamps every edge on CLOCK_MONOTONIC, Linux 5.7 or later), i2c-dev for the
//! displacement gauge and the tag EEPROM. Built with the `pi` feature.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use linux_embedded_hal::gpio_cdev::{Chip, EventRequestFlags, EventType, LineRequestFlags};
use linux_embedded_hal::{CdevPin, I2cdev};

use super::instruments::{
    ads1115_config, Ads1115Gauge, Clock, Edge, EdgeInput, EepromTagWriter, GaugeCalibration,
    PinRelay, Relay, TagWriter,
};
use super::{parse_pin, PiConfig, PiInstruments};
use crate::error::{HilError, Result};

const CONSUMER: &str = "needle-hil-jig";

/// CLOCK_MONOTONIC, the clock of gpio-cdev edge timestamps.
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_us(&mut self) -> u64 {
        // Instant is CLOCK_MONOTONIC on Linux, but opaque; read the clock itself.
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            Ok(ts) => {
                u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000
                    + u64::try_from(ts.tv_nsec()).unwrap_or(0) / 1_000
            }
            Err(_) => 0,
        }
    }
}

#[derive(Default)]
struct Events {
    edges: Vec<Edge>,
    level: bool,
    error: Option<String>,
}

/// An input line whose edges a thread collects as the kernel reports them.
pub struct CdevEdgeInput {
    events: Arc<Mutex<Events>>,
    name: String,
}

impl CdevEdgeInput {
    fn open(chip: &mut Chip, key: &str, spec: &str) -> Result<Self> {
        let pin = parse_pin(key, spec)?;
        let err = |e: linux_embedded_hal::gpio_cdev::Error| {
            HilError::Jig(format!("pi.{key} (line {}): {e}", pin.line))
        };
        let line = chip.get_line(pin.line).map_err(err)?;
        let mut handle = line
            .events(
                LineRequestFlags::INPUT,
                EventRequestFlags::BOTH_EDGES,
                CONSUMER,
            )
            .map_err(err)?;
        let level = (handle.get_value().map_err(err)? != 0) != pin.active_low;
        let events = Arc::new(Mutex::new(Events {
            level,
            ..Events::default()
        }));
        let shared = Arc::clone(&events);
        let name = format!("pi.{key}");
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || loop {
                let event = handle.get_event();
                let mut e = shared.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(ev) => {
                        let rising =
                            matches!(ev.event_type(), EventType::RisingEdge) != pin.active_low;
                        e.level = rising;
                        e.edges.push(Edge {
                            at_us: ev.timestamp() / 1_000,
                            rising,
                        });
                    }
                    Err(err) => {
                        e.error = Some(err.to_string());
                        break;
                    }
                }
            })
            .map_err(|e| HilError::Jig(format!("{name}: cannot start its reader: {e}")))?;
        Ok(Self { events, name })
    }
}

impl EdgeInput for CdevEdgeInput {
    fn drain(&mut self) -> Result<Vec<Edge>> {
        let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(err) = &e.error {
            return Err(HilError::Jig(format!("{}: {err}", self.name)));
        }
        Ok(std::mem::take(&mut e.edges))
    }

    fn level(&mut self) -> Result<bool> {
        let e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(err) = &e.error {
            return Err(HilError::Jig(format!("{}: {err}", self.name)));
        }
        Ok(e.level)
    }
}

fn relay(chip: &mut Chip, key: &str, spec: &str) -> Result<Box<dyn Relay>> {
    let pin = parse_pin(key, spec)?;
    let err = |e: linux_embedded_hal::gpio_cdev::Error| {
        HilError::Jig(format!("pi.{key} (line {}): {e}", pin.line))
    };
    let released = u8::from(pin.active_low);
    let handle = chip
        .get_line(pin.line)
        .map_err(err)?
        .request(LineRequestFlags::OUTPUT, released, CONSUMER)
        .map_err(err)?;
    let out = CdevPin::new(handle).map_err(err)?;
    Ok(Box::new(PinRelay::new(out, pin.active_low)?))
}

fn input(chip: &mut Chip, key: &str, spec: &str) -> Result<Box<dyn EdgeInput>> {
    Ok(Box::new(CdevEdgeInput::open(chip, key, spec)?))
}

fn i2c(config: &PiConfig) -> Result<I2cdev> {
    I2cdev::new(&config.i2c_device).map_err(|e| {
        HilError::Jig(format!(
            "pi.i2c_device {}: {e}",
            config.i2c_device.display()
        ))
    })
}

/// Opens every instrument the configuration names. Any failure is an error with the key.
pub fn open(config: &PiConfig) -> Result<PiInstruments> {
    let mut chip = Chip::new(&config.gpio_chip)
        .map_err(|e| HilError::Jig(format!("pi.gpio_chip {}: {e}", config.gpio_chip.display())))?;
    let d = &config.displacement;
    let gauge = Ads1115Gauge::new(
        i2c(config)?,
        d.address,
        ads1115_config(d.input, d.full_scale_mv, d.data_rate_sps)?,
        GaugeCalibration {
            zero_counts: d.zero_counts,
            um_per_count: d.um_per_count,
        },
        d.samples,
    );
    let tag_writer = match &config.tag_eeprom {
        Some(t) => Some(Box::new(EepromTagWriter::new(
            i2c(config)?,
            t.address,
            t.page_bytes,
            Duration::from_millis(t.write_cycle_ms),
        )) as Box<dyn TagWriter>),
        None => None,
    };
    let optional_input =
        |chip: &mut Chip, key: &str, spec: &Option<String>| -> Result<Option<Box<dyn EdgeInput>>> {
            spec.as_deref().map(|s| input(chip, key, s)).transpose()
        };
    let optional_relay =
        |chip: &mut Chip, key: &str, spec: &Option<String>| -> Result<Option<Box<dyn Relay>>> {
            spec.as_deref().map(|s| relay(chip, key, s)).transpose()
        };
    Ok(PiInstruments {
        clock: Box::new(MonotonicClock),
        stroke_sensor: input(&mut chip, "stroke_sensor", &config.stroke_sensor)?,
        motor_power: input(&mut chip, "motor_power_sense", &config.motor_power_sense)?,
        estop_sense: optional_input(&mut chip, "estop_sense", &config.estop_sense)?,
        cartridge_sense: optional_input(&mut chip, "cartridge_sense", &config.cartridge_sense)?,
        gauge: Box::new(gauge),
        estop_relay: relay(&mut chip, "estop_relay", &config.estop_relay)?,
        cartridge_relay: relay(&mut chip, "cartridge_relay", &config.cartridge_relay)?,
        jam_relay: optional_relay(&mut chip, "jam_relay", &config.jam_relay)?,
        host_link_relay: optional_relay(&mut chip, "host_link_relay", &config.host_link_relay)?,
        tag_writer,
    })
}
