//! The generic Linux backend (cargo feature `linux`): gpio-cdev lines, sysfs PWM and i2c-dev
//! through linux-embedded-hal 0.4. Runs on a Pi 5 (`/dev/gpiochip4` on older Pi 5 kernels,
//! `/dev/gpiochip0` on newer ones) and any other board with these kernel interfaces.
//!
//! - GPIO: [`CdevPin`] lines of `gpio_chip`, requested at their safe level. The gpio-cdev v1
//!   interface used here has no bias flags: pull resistors (`^`, `~`) are refused by the
//!   configuration; set them in the device tree or wire them.
//! - Motor PWM: [`SysfsPwm`] on `pwm_chip`/`pwm<pwm_channel>`.
//! - ADC and tag EEPROM: [`I2cdev`] on `i2c_device`, wrapped in [`LinuxI2c`] so a missing
//!   acknowledge reported as EREMOTEIO (i2c-bcm2835, i2c-designware) reads as one.
//! - Stroke sensor: gpio-cdev line events read by a thread (`needled-stroke`). Their
//!   timestamps are CLOCK_MONOTONIC since Linux 5.7 (CLOCK_REALTIME before, refused by
//!   [`open`]); tick the controller with [`crate::control::monotonic_now`].

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::i2c::{self, I2c, Operation};
use linux_embedded_hal::gpio_cdev::{
    Chip, Error as GpioError, EventRequestFlags, LineEventHandle, LineHandle, LineRequestFlags,
};
use linux_embedded_hal::i2cdev::linux::LinuxI2CError;
use linux_embedded_hal::{CdevPin, I2CError, I2cdev};
use needle_core::hal::ErrorKind;
use needle_core::units::Micros;

use super::background::Background;
use super::edges::EdgeTimestamps;
use super::safe::{gpio_safe_steps, SafeStep};
use super::sysfs_pwm::{sysfs_pwm_off, SysfsPwm};
use super::wiring::{open_rig, tag_reader, Backend, Rig, Wiring};
use super::{CartridgeChip, HalError};
use crate::config::{Config, LinuxConfig, PinSpec};
use crate::control::monotonic_now;

const KEY: &str = "hardware.linux";
const CONSUMER: &str = "needled";

/// linux-embedded-hal's [`I2cdev`], with EREMOTEIO read as a missing acknowledge.
pub struct LinuxI2c(pub I2cdev);

impl std::fmt::Debug for LinuxI2c {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinuxI2c")
    }
}

/// An error of [`LinuxI2c`].
#[derive(Debug)]
pub struct LinuxI2cError(pub I2CError);

impl i2c::Error for LinuxI2cError {
    fn kind(&self) -> i2c::ErrorKind {
        let errno = match self.0.inner() {
            LinuxI2CError::Errno(e) => Some(*e),
            LinuxI2CError::Io(e) => e.raw_os_error(),
        };
        if errno == Some(libc::EREMOTEIO) {
            return i2c::ErrorKind::NoAcknowledge(i2c::NoAcknowledgeSource::Unknown);
        }
        i2c::Error::kind(&self.0)
    }
}

impl i2c::ErrorType for LinuxI2c {
    type Error = LinuxI2cError;
}

impl I2c for LinuxI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), LinuxI2cError> {
        // One I2C_RDWR transfer: repeated starts between the operations.
        self.0
            .transaction(address, operations)
            .map_err(LinuxI2cError)
    }
}

/// The rig on gpio-cdev, sysfs PWM and i2c-dev, as needle-core's
/// [`Hardware`](needle_core::hal::Hardware).
pub type LinuxRig = Rig<Cdev>;

/// A gpio-cdev chip, sysfs PWM and i2c-dev as a [`Backend`] of the rig's
/// [`wiring`](super::wiring).
pub struct Cdev {
    chip: Chip,
    table: LinuxConfig,
}

impl std::fmt::Debug for Cdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdev")
            .field("gpio_chip", &self.table.gpio_chip)
            .finish_non_exhaustive()
    }
}

impl Backend for Cdev {
    type Output = CdevPin;
    type Input = CdevPin;
    type MotorPwm = SysfsPwm;
    type Bus = LinuxI2c;
    /// The stroke sensor's event thread, `needled-stroke`: dropping it stops the thread
    /// within 100 ms and releases the line.
    type EdgeSource = Background;

    fn output(
        &mut self,
        name: &'static str,
        spec: PinSpec,
        high: bool,
    ) -> Result<CdevPin, HalError> {
        request_output(&mut self.chip, spec, high)
            .and_then(CdevPin::new)
            .map_err(|e| self.line_error(name, spec, e))
    }

    fn input(&mut self, name: &'static str, spec: PinSpec) -> Result<CdevPin, HalError> {
        self.chip
            .get_line(spec.pin)
            .and_then(|line| line.request(LineRequestFlags::INPUT, 0, CONSUMER))
            .and_then(CdevPin::new)
            .map_err(|e| self.line_error(name, spec, e))
    }

    fn motor_pwm(&mut self) -> Result<SysfsPwm, HalError> {
        let lc = &self.table;
        SysfsPwm::open(
            &lc.pwm_chip,
            lc.pwm_channel,
            lc.pwm_frequency_hz,
            Duration::from_secs(2),
        )
        .map_err(|e| {
            HalError::open(
                e.path.display().to_string(),
                format!("{KEY}.pwm_chip"),
                e.source,
            )
        })
    }

    fn stroke_edges(
        &mut self,
        spec: PinSpec,
        rising: bool,
        edges: Arc<EdgeTimestamps>,
    ) -> Result<Background, HalError> {
        check_kernel()?;
        let edge = if rising {
            EventRequestFlags::RISING_EDGE
        } else {
            EventRequestFlags::FALLING_EDGE
        };
        let events = self
            .chip
            .get_line(spec.pin)
            .and_then(|line| line.events(LineRequestFlags::INPUT, edge, "needled-stroke"))
            .map_err(|e| self.line_error("stroke_sensor", spec, e))?;
        spawn_edge_thread(events, edges).map_err(|e| self.line_error("stroke_sensor", spec, e))
    }

    fn adc_bus(&mut self) -> Result<LinuxI2c, HalError> {
        open_bus(&self.table)
    }
}

impl Cdev {
    /// The line of pin `name` could not be opened.
    fn line_error(
        &self,
        name: &str,
        spec: PinSpec,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> HalError {
        HalError::open(
            line_name(&self.table.gpio_chip, spec),
            format!("{KEY}.{name}"),
            e,
        )
    }
}

fn section(config: &Config) -> Result<&LinuxConfig, HalError> {
    config
        .hardware
        .linux
        .as_ref()
        .ok_or(HalError::MissingSection { backend: "linux" })
}

/// Names a line in errors: `/dev/gpiochip0 line 17`.
fn line_name(chip: &Path, spec: PinSpec) -> String {
    format!("{} line {}", chip.display(), spec.pin)
}

/// Requests `spec` as an output driving electrical level `high` from the start.
fn request_output(chip: &mut Chip, spec: PinSpec, high: bool) -> Result<LineHandle, GpioError> {
    chip.get_line(spec.pin)
        .and_then(|line| line.request(LineRequestFlags::OUTPUT, u8::from(high), CONSUMER))
}

/// What `[hardware.linux]` shares with the other GPIO backends.
fn wiring(lc: &LinuxConfig) -> Wiring<'_> {
    Wiring {
        key: KEY,
        pins: lc.pins(),
        step_pulse_us: lc.step_pulse_us,
        dir_setup_us: lc.dir_setup_us,
        bus: lc.i2c_device.display().to_string(),
        adc: &lc.adc,
        tag_eeprom_address: lc.tag_eeprom_address,
        tag_eeprom_address_bytes: lc.tag_eeprom_address_bytes,
        cartridge_chip: lc.cartridge_chip,
        atecc608: lc.atecc608,
    }
}

fn open_bus(lc: &LinuxConfig) -> Result<LinuxI2c, HalError> {
    I2cdev::new(&lc.i2c_device).map(LinuxI2c).map_err(|e| {
        HalError::open(
            lc.i2c_device.display().to_string(),
            format!("{KEY}.i2c_device"),
            e,
        )
    })
}

/// `(major, minor)` of a kernel release string such as `6.6.31+rpt-rpi-v8`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Refuses kernels whose gpio-cdev v1 event timestamps are CLOCK_REALTIME (before 5.7).
fn check_kernel() -> Result<(), HalError> {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        // Unknown: EdgeTimestamps still refuses timestamps of another clock at run time.
        return Ok(());
    };
    match kernel_version(&release) {
        Some(v) if v < (5, 7) => Err(HalError::device(
            format!("Linux {}", release.trim()),
            format!("{KEY}.stroke_sensor"),
            "gpio-cdev event timestamps are CLOCK_MONOTONIC only from Linux 5.7: upgrade the \
             kernel",
        )),
        _ => Ok(()),
    }
}

/// Waits up to `timeout_ms` for `fd` to be readable; `Ok(false)` on timeout or a signal.
#[allow(unsafe_code)]
fn wait_readable(fd: &impl AsRawFd, timeout_ms: i32) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd for the duration of the call (nfds = 1),
    // and its descriptor stays open because `fd` is borrowed across the call. std and the
    // nix features this crate enables offer no poll; it lets the thread see `stop`.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Err(std::io::Error::other("the line's event descriptor failed"));
    }
    Ok(rc > 0)
}

/// Reads the stroke sensor's line events on a thread named `needled-stroke` into `edges`;
/// dropping the worker stops the thread within 100 ms and releases the line. A failed read
/// fails `edges` (`Disconnected`) and ends the thread.
fn spawn_edge_thread(
    mut events: LineEventHandle,
    edges: Arc<EdgeTimestamps>,
) -> std::io::Result<Background> {
    Background::spawn("needled-stroke", move |stop| {
        while !stop.load(Ordering::Relaxed) {
            match wait_readable(&events, 100) {
                Ok(false) => {}
                Ok(true) => match events.get_event() {
                    Ok(event) => {
                        let at = Micros(event.timestamp() / 1_000);
                        edges.record(at, None, monotonic_now());
                    }
                    Err(_) => return edges.fail(ErrorKind::Disconnected),
                },
                Err(_) => return edges.fail(ErrorKind::Disconnected),
            }
        }
    })
}

/// Opens the rig described by `[hardware.linux]`: every line, the motor PWM (off), the ADC
/// (read once before this returns) and the stroke sensor's event thread.
///
/// Every device that cannot be opened is named with its configuration key, such as
/// `cannot open /dev/gpiochip0 (hardware.linux.gpio_chip): No such file or directory`.
pub fn open(config: &Config) -> Result<LinuxRig, HalError> {
    let lc = section(config)?;
    let path = lc.gpio_chip.as_path();
    let chip = Chip::new(path)
        .map_err(|e| HalError::open(path.display().to_string(), format!("{KEY}.gpio_chip"), e))?;
    let backend = Cdev {
        chip,
        table: lc.clone(),
    };
    open_rig(backend, &wiring(lc), &config.stroke)
}

/// Drives the outputs of `[hardware.linux]` to their safe levels for `needled --safe-outputs`
/// (see [`super::safe`]), in [`super::safe::ORDER`]: each line is requested as an output at
/// the electrical level of logical low, which drives it there, and the PWM channel is set to
/// duty 0 and disabled. The lines are released when this returns; the gpio-cdev interface does
/// not promise a level after release, though the Pi's GPIO (and most SoCs') keeps it.
pub fn drive_outputs_safe(lc: &LinuxConfig) -> Vec<SafeStep> {
    let path = lc.gpio_chip.as_path();
    let mut chip = Chip::new(path)
        .map_err(|e| format!("cannot open {} ({KEY}.gpio_chip): {e}", path.display()));
    let mut held = Vec::new();
    let pwm_off = || SafeStep {
        output: "motor_pwm",
        device: format!("{} channel {}", lc.pwm_chip.display(), lc.pwm_channel),
        key: format!("{KEY}.pwm_chip"),
        outcome: sysfs_pwm_off(&lc.pwm_chip, lc.pwm_channel)
            .map(str::to_owned)
            .map_err(|e| e.to_string()),
    };
    let drive_low = |_name: &'static str, spec: PinSpec, high: bool| match &mut chip {
        Err(e) => Err(e.clone()),
        Ok(chip) => request_output(chip, spec, high)
            .map(|handle| held.push(handle))
            .map_err(|e| e.to_string()),
    };
    let steps = gpio_safe_steps(
        KEY,
        lc.pins(),
        |spec| line_name(path, spec),
        drive_low,
        pwm_off,
    );
    drop(held);
    steps
}

/// The cartridge reader on `i2c_device` (its own file descriptor; the kernel serializes its
/// transfers with the ADC's): the ATECC608 driver or the tag EEPROM, as `cartridge_chip` says.
pub fn open_tag_reader(config: &Config) -> Result<Box<dyn CartridgeChip>, HalError> {
    let lc = section(config)?;
    Ok(tag_reader(open_bus(lc)?, &wiring(lc)))
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
        is_send::<LinuxRig>();
        is_send::<TagEeprom<LinuxI2c>>();
        is_send::<Atecc608<LinuxI2c, StdDelay>>();
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.6.31+rpt-rpi-v8\n"), Some((6, 6)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("5.10"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((5, 4) < (5, 7) && (5, 10) >= (5, 7));
    }

    #[test]
    fn missing_gpio_chip_is_named_with_its_key() {
        let mut config = example_config("linux-rig.toml");
        if let Some(lc) = config.hardware.linux.as_mut() {
            lc.gpio_chip = "/nonexistent/gpiochip9".into();
        }
        let err = open(&config).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot open /nonexistent/gpiochip9 (hardware.linux.gpio_chip): "),
            "{err}"
        );
    }

    #[test]
    fn safe_outputs_without_the_gpio_chip_still_turn_the_pwm_off_and_name_the_chip() {
        let mut config = example_config("linux-rig.toml");
        // A PWM channel left running at 60 % by a killed process.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("duty_cycle"), "30000").unwrap();
        std::fs::write(dir.join("enable"), "1").unwrap();
        let lc = config.hardware.linux.as_mut().unwrap();
        lc.gpio_chip = "/nonexistent/gpiochip9".into();
        lc.pwm_chip = root.path().to_path_buf();

        let report = crate::hal::safe::drive_outputs_safe(&config.hardware);
        let order: Vec<_> = report.steps.iter().map(|s| s.output).collect();
        assert_eq!(order, crate::hal::safe::ORDER);
        assert!(!report.is_safe());
        assert_eq!(
            std::fs::read_to_string(dir.join("duty_cycle")).unwrap(),
            "0"
        );
        assert_eq!(std::fs::read_to_string(dir.join("enable")).unwrap(), "0");
        let pwm = &report.steps[1];
        assert_eq!(pwm.outcome.as_deref(), Ok("duty 0, disabled"));
        let failed: Vec<_> = report.failures().map(|s| s.output).collect();
        assert_eq!(
            failed,
            ["motor_enable", "depth_step", "depth_dir", "charge_pump"]
        );
        let text = report.to_string();
        assert!(
            text.contains("motor_enable (/nonexistent/gpiochip9 line 23, hardware.linux.motor_enable): NOT SAFE: cannot open /nonexistent/gpiochip9"),
            "{text}"
        );
    }

    #[test]
    fn missing_i2c_device_is_named_with_its_key() {
        let mut config = example_config("linux-rig.toml");
        if let Some(lc) = config.hardware.linux.as_mut() {
            lc.i2c_device = "/nonexistent/i2c-9".into();
        }
        let err = open_tag_reader(&config)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot open /nonexistent/i2c-9 (hardware.linux.i2c_device): "),
            "{err}"
        );
    }
}
