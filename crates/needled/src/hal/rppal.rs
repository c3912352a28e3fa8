//! The Raspberry Pi backend through rppal 0.22 (cargo feature `rppal`).
//!
//! - GPIO: rppal's memory-mapped GPIO (`/dev/gpiomem`), wrapped here in embedded-hal 1.0
//!   traits ([`GpioOut`], [`GpioIn`]) so rppal's optional `hal` feature is not needed.
//!   Inputs may use the SoC's pull resistors (`"^17"`, `"~17"`).
//! - Motor PWM: the hardware PWM channel (`pwm_channel` 0 = GPIO18, 1 = GPIO19) through rppal's
//!   sysfs PWM, wrapped in [`RppalPwm`] as a `SetDutyCycle`. On a Pi 5, hardware PWM needs
//!   `dtoverlay=pwm-2chan` in `/boot/firmware/config.txt`.
//! - ADC and tag EEPROM: `/dev/i2c-<i2c_bus>` through [`RppalI2c`], which maps a write
//!   followed by a read to one combined transfer (repeated start).
//! - Stroke sensor: rppal's asynchronous interrupt, whose events carry the kernel's
//!   CLOCK_MONOTONIC timestamp and sequence number (gpio-cdev v2); rppal's interrupt thread
//!   calls [`EdgeTimestamps::record`]. If that thread stops (rppal ends it silently on an
//!   error), edges stop and the controller faults `StrokeStall` while running.
//!
//! rppal was retired by its author in 2025; the [`linux`](super) backend covers the same rig
//! with gpio-cdev, sysfs PWM and i2c-dev.
//!
//! Outputs are driven to their safe level (logical low) as they are claimed, the motor enable
//! first. When the process ends, rppal returns the pins to inputs and disables the PWM: the
//! rig's wiring must pull the motor enable to its disabled level.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::i2c::{self, I2c, Operation};
use embedded_hal::pwm::{self, SetDutyCycle};
use needle_core::units::Micros;
use rppal::gpio::{Gpio, Pin, Trigger};
use rppal::pwm::{Channel, Polarity, Pwm};

use super::edges::EdgeTimestamps;
use super::safe::{gpio_safe_steps, SafeStep};
use super::wiring::{open_rig, tag_reader, Backend, Rig, Wiring};
use super::{CartridgeChip, HalError};
use crate::config::{Config, PinSpec, Pull, RppalConfig};
use crate::control::monotonic_now;

const KEY: &str = "hardware.rppal";

/// An rppal GPIO output as an embedded-hal [`OutputPin`].
#[derive(Debug)]
pub struct GpioOut(rppal::gpio::OutputPin);

impl digital::ErrorType for GpioOut {
    type Error = Infallible;
}

impl OutputPin for GpioOut {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set_high();
        Ok(())
    }

    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set_low();
        Ok(())
    }
}

/// An rppal GPIO input as an embedded-hal [`InputPin`].
#[derive(Debug)]
pub struct GpioIn(rppal::gpio::InputPin);

impl digital::ErrorType for GpioIn {
    type Error = Infallible;
}

impl InputPin for GpioIn {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.is_high())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.is_low())
    }
}

/// The rppal hardware PWM as an embedded-hal [`SetDutyCycle`]: duty in parts per ten
/// thousand, written as a pulse width in nanoseconds only when it changes.
#[derive(Debug)]
pub struct RppalPwm {
    pwm: Pwm,
    period_ns: u64,
    duty: Option<u16>,
}

/// The maximum duty of [`RppalPwm`].
pub const RPPAL_PWM_MAX_DUTY: u16 = 10_000;

/// An error of [`RppalPwm`].
#[derive(Debug)]
pub struct RppalPwmError(pub rppal::pwm::Error);

impl pwm::Error for RppalPwmError {
    fn kind(&self) -> pwm::ErrorKind {
        pwm::ErrorKind::Other
    }
}

impl pwm::ErrorType for RppalPwm {
    type Error = RppalPwmError;
}

impl SetDutyCycle for RppalPwm {
    fn max_duty_cycle(&self) -> u16 {
        RPPAL_PWM_MAX_DUTY
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), RppalPwmError> {
        let duty = duty.min(RPPAL_PWM_MAX_DUTY);
        if self.duty == Some(duty) {
            return Ok(());
        }
        let ns = self.period_ns * u64::from(duty) / u64::from(RPPAL_PWM_MAX_DUTY);
        self.duty = None;
        self.pwm
            .set_pulse_width(Duration::from_nanos(ns))
            .map_err(RppalPwmError)?;
        self.duty = Some(duty);
        Ok(())
    }
}

/// rppal's I2C bus as an embedded-hal [`I2c`].
///
/// A write followed by a read is one combined transfer (repeated start, as register reads of
/// the ADS1115 and EEPROM need); other sequences run operation by operation.
#[derive(Debug)]
pub struct RppalI2c(rppal::i2c::I2c);

/// An error of [`RppalI2c`].
#[derive(Debug)]
pub enum RppalI2cError {
    /// rppal's error.
    Bus(rppal::i2c::Error),
    /// Fewer bytes were transferred than asked for.
    Short {
        /// Bytes asked for.
        expected: usize,
        /// Bytes transferred.
        got: usize,
    },
}

impl i2c::Error for RppalI2cError {
    fn kind(&self) -> i2c::ErrorKind {
        let RppalI2cError::Bus(rppal::i2c::Error::Io(e)) = self else {
            return i2c::ErrorKind::Other;
        };
        match e.raw_os_error() {
            Some(libc::ENXIO) => i2c::ErrorKind::NoAcknowledge(i2c::NoAcknowledgeSource::Address),
            // i2c-bcm2835 reports a missing acknowledge as EREMOTEIO.
            Some(libc::EREMOTEIO | libc::ENODEV) => {
                i2c::ErrorKind::NoAcknowledge(i2c::NoAcknowledgeSource::Unknown)
            }
            Some(libc::EAGAIN) => i2c::ErrorKind::ArbitrationLoss,
            Some(libc::EIO | libc::EBUSY) => i2c::ErrorKind::Bus,
            _ => i2c::ErrorKind::Other,
        }
    }
}

impl i2c::ErrorType for RppalI2c {
    type Error = RppalI2cError;
}

impl I2c for RppalI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), RppalI2cError> {
        let bus = &mut self.0;
        bus.set_slave_address(u16::from(address))
            .map_err(RppalI2cError::Bus)?;
        if let [Operation::Write(w), Operation::Read(r)] = operations {
            return bus.write_read(w, r).map_err(RppalI2cError::Bus);
        }
        for op in operations {
            let (expected, got) = match op {
                Operation::Read(buf) => (buf.len(), bus.read(buf).map_err(RppalI2cError::Bus)?),
                Operation::Write(buf) => (buf.len(), bus.write(buf).map_err(RppalI2cError::Bus)?),
            };
            if got != expected {
                return Err(RppalI2cError::Short { expected, got });
            }
        }
        Ok(())
    }
}

/// The rig on a Raspberry Pi, as needle-core's [`Hardware`](needle_core::hal::Hardware).
pub type RppalRig = Rig<RppalGpio>;

/// rppal's GPIO, hardware PWM and I2C as a [`Backend`] of the rig's [`wiring`](super::wiring).
#[derive(Debug)]
pub struct RppalGpio {
    gpio: Gpio,
    table: RppalConfig,
}

impl Backend for RppalGpio {
    type Output = GpioOut;
    type Input = GpioIn;
    type MotorPwm = RppalPwm;
    type Bus = RppalI2c;
    /// The stroke sensor's pin: rppal's interrupt thread runs as long as it is held.
    type EdgeSource = rppal::gpio::InputPin;

    fn output(
        &mut self,
        name: &'static str,
        spec: PinSpec,
        high: bool,
    ) -> Result<GpioOut, HalError> {
        claim_output(&self.gpio, name, spec, high).map(GpioOut)
    }

    fn input(&mut self, name: &'static str, spec: PinSpec) -> Result<GpioIn, HalError> {
        input_pin(&self.gpio, name, spec).map(GpioIn)
    }

    fn motor_pwm(&mut self) -> Result<RppalPwm, HalError> {
        let rc = &self.table;
        let pwm = Pwm::with_frequency(
            pwm_channel(rc),
            f64::from(rc.pwm_frequency_hz),
            0.0,
            Polarity::Normal,
            true,
        )
        .map_err(|e| {
            HalError::open(
                format!(
                    "hardware PWM channel {} (on a Pi 5 add dtoverlay=pwm-2chan to config.txt)",
                    rc.pwm_channel
                ),
                format!("{KEY}.pwm_channel"),
                e,
            )
        })?;
        Ok(RppalPwm {
            pwm,
            period_ns: 1_000_000_000 / u64::from(rc.pwm_frequency_hz.max(1)),
            duty: Some(0),
        })
    }

    fn stroke_edges(
        &mut self,
        spec: PinSpec,
        rising: bool,
        edges: Arc<EdgeTimestamps>,
    ) -> Result<rppal::gpio::InputPin, HalError> {
        let mut stroke_pin = input_pin(&self.gpio, "stroke_sensor", spec)?;
        let trigger = if rising {
            Trigger::RisingEdge
        } else {
            Trigger::FallingEdge
        };
        stroke_pin
            .set_async_interrupt(trigger, None, move |event| {
                let at = Micros(u64::try_from(event.timestamp.as_micros()).unwrap_or(u64::MAX));
                edges.record(at, Some(event.seqno), monotonic_now());
            })
            .map_err(|e| {
                HalError::open(
                    format!("GPIO{} edge events", spec.pin),
                    format!("{KEY}.stroke_sensor"),
                    e,
                )
            })?;
        Ok(stroke_pin)
    }

    fn adc_bus(&mut self) -> Result<RppalI2c, HalError> {
        open_bus(&self.table)
    }
}

fn section(config: &Config) -> Result<&RppalConfig, HalError> {
    config
        .hardware
        .rppal
        .as_ref()
        .ok_or(HalError::MissingSection { backend: "rppal" })
}

/// What `[hardware.rppal]` shares with the other GPIO backends.
fn wiring(rc: &RppalConfig) -> Wiring<'_> {
    Wiring {
        key: KEY,
        pins: rc.pins(),
        step_pulse_us: rc.step_pulse_us,
        dir_setup_us: rc.dir_setup_us,
        bus: format!("/dev/i2c-{}", rc.i2c_bus),
        adc: &rc.adc,
        tag_eeprom_address: rc.tag_eeprom_address,
        tag_eeprom_address_bytes: rc.tag_eeprom_address_bytes,
        cartridge_chip: rc.cartridge_chip,
        atecc608: rc.atecc608,
    }
}

fn pwm_channel(rc: &RppalConfig) -> Channel {
    if rc.pwm_channel == 0 {
        Channel::Pwm0
    } else {
        Channel::Pwm1
    }
}

fn claim(gpio: &Gpio, name: &str, spec: PinSpec) -> Result<Pin, HalError> {
    let key = format!("{KEY}.{name}");
    let number = u8::try_from(spec.pin)
        .map_err(|_| HalError::device(format!("GPIO{}", spec.pin), &key, "no such pin"))?;
    gpio.get(number)
        .map_err(|e| HalError::open(format!("GPIO{number}"), key, e))
}

/// Claims `spec` as an output driving electrical level `high` from the start.
fn claim_output(
    gpio: &Gpio,
    name: &str,
    spec: PinSpec,
    high: bool,
) -> Result<rppal::gpio::OutputPin, HalError> {
    let pin = claim(gpio, name, spec)?;
    Ok(if high {
        pin.into_output_high()
    } else {
        pin.into_output_low()
    })
}

fn input_pin(gpio: &Gpio, name: &str, spec: PinSpec) -> Result<rppal::gpio::InputPin, HalError> {
    let pin = claim(gpio, name, spec)?;
    Ok(match spec.pull {
        Pull::None => pin.into_input(),
        Pull::Up => pin.into_input_pullup(),
        Pull::Down => pin.into_input_pulldown(),
    })
}

fn open_bus(rc: &RppalConfig) -> Result<RppalI2c, HalError> {
    rppal::i2c::I2c::with_bus(rc.i2c_bus)
        .map(RppalI2c)
        .map_err(|e| {
            HalError::open(
                format!("/dev/i2c-{}", rc.i2c_bus),
                format!("{KEY}.i2c_bus"),
                e,
            )
        })
}

/// Opens the rig described by `[hardware.rppal]` in the safe order of
/// [`wiring`](super::wiring): every pin, the motor PWM (off), the stroke sensor's interrupt
/// and the ADC (read once before this returns).
///
/// Every device that cannot be opened is named with its configuration key. Tick the
/// controller with [`crate::control::monotonic_now`]: stroke edges carry CLOCK_MONOTONIC.
pub fn open(config: &Config) -> Result<RppalRig, HalError> {
    let rc = section(config)?;
    let gpio = Gpio::new().map_err(|e| {
        HalError::open(
            "the Raspberry Pi GPIO (/dev/gpiomem)",
            "hardware.backend",
            e,
        )
    })?;
    let backend = RppalGpio {
        gpio,
        table: rc.clone(),
    };
    open_rig(backend, &wiring(rc), &config.stroke)
}

/// Drives the outputs of `[hardware.rppal]` to their safe levels for `needled --safe-outputs`
/// (see [`super::safe`]), in [`super::safe::ORDER`]: each pin is made an output at the
/// electrical level of logical low and left so when this returns (rppal's reset on drop is
/// turned off: it would make the pins inputs again), and the hardware PWM channel is set to
/// duty 0 and disabled.
pub fn drive_outputs_safe(rc: &RppalConfig) -> Vec<SafeStep> {
    let gpio =
        Gpio::new().map_err(|e| format!("cannot open the Raspberry Pi GPIO (/dev/gpiomem): {e}"));
    let pwm_off = || SafeStep {
        output: "motor_pwm",
        device: format!("hardware PWM channel {}", rc.pwm_channel),
        key: format!("{KEY}.pwm_channel"),
        outcome: Pwm::new(pwm_channel(rc))
            .and_then(|pwm| {
                pwm.set_duty_cycle(0.0)?;
                pwm.disable()
            })
            .map(|()| "duty 0, disabled".to_owned())
            .map_err(|e| e.to_string()),
    };
    let drive_low = |name: &'static str, spec: PinSpec, high: bool| match &gpio {
        Err(e) => Err(e.clone()),
        Ok(gpio) => claim_output(gpio, name, spec, high)
            .map(|mut out| out.set_reset_on_drop(false))
            .map_err(|e| e.to_string()),
    };
    gpio_safe_steps(
        KEY,
        rc.pins(),
        |spec| format!("GPIO{}", spec.pin),
        drive_low,
        pwm_off,
    )
}

/// The cartridge reader on `/dev/i2c-<i2c_bus>` (its own file descriptor: the kernel
/// serializes it with the ADC's transfers): the ATECC608 driver or the tag EEPROM, as
/// `cartridge_chip` says.
pub fn open_tag_reader(config: &Config) -> Result<Box<dyn CartridgeChip>, HalError> {
    let rc = section(config)?;
    Ok(tag_reader(open_bus(rc)?, &wiring(rc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fakes::example_config;

    use crate::hal::atecc608::{Atecc608, StdDelay};
    use crate::hal::tag_eeprom::TagEeprom;

    fn is_send<T: Send + 'static>() {}

    #[test]
    fn rig_and_tag_reader_can_move_to_their_threads() {
        is_send::<RppalRig>();
        is_send::<TagEeprom<RppalI2c>>();
        is_send::<Atecc608<RppalI2c, StdDelay>>();
    }

    #[test]
    fn missing_section_and_missing_gpio_are_named() {
        let config = Config::default();
        assert!(matches!(
            open(&config),
            Err(HalError::MissingSection { backend: "rppal" })
        ));
        let config = example_config("pi-rig.toml");
        if std::path::Path::new("/dev/gpiomem").exists() {
            return; // on a Pi: do not touch the rig from a unit test
        }
        let err = open(&config).unwrap_err().to_string();
        assert!(err.starts_with("cannot open "), "{err}");
        assert!(err.contains("(hardware."), "{err}");
    }

    #[test]
    fn safe_outputs_off_a_pi_name_every_output_they_could_not_drive() {
        if std::path::Path::new("/dev/gpiomem").exists() {
            return; // on a Pi: do not touch the rig from a unit test
        }
        let config = example_config("pi-rig.toml");
        let report = crate::hal::safe::drive_outputs_safe(&config.hardware);
        let order: Vec<_> = report.steps.iter().map(|s| s.output).collect();
        assert_eq!(order, crate::hal::safe::ORDER);
        assert!(!report.is_safe());
        assert_eq!(report.failures().count(), 5, "{report}");
        assert!(
            report
                .to_string()
                .contains("GPIO23, hardware.rppal.motor_enable"),
            "{report}"
        );
    }
}
