//! Hardware pieces shared by the rppal and linux backends, testable without hardware.
//!
//! - [`Inverted`]: a pin whose logical level is the opposite of its electrical level
//!   (Klipper's `!`), for inputs and outputs.
//! - [`HoldOutput`]: holds each level change of an output for a minimum time: STEP pulse
//!   width and DIR setup time of a stepper driver.
//! - [`SysfsPwm`]: embedded-hal's `SetDutyCycle` on the kernel's sysfs PWM;
//!   [`sysfs_pwm_off`] drives a channel off for `needled --safe-outputs`.
//! - [`Ads1115`], [`start_analog`], [`AnalogChannel`]: the ADC for motor current,
//!   temperature and supply, scanned by a background thread so the control thread never waits
//!   on the bus.
//! - [`EdgeTimestamps`], [`EdgeReader`]: stroke sensor edges timestamped by the kernel.
//! - [`TagEeprom`]: the cartridge tag image from a 24Cxx EEPROM.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_hal::digital::{self, InputPin, OutputPin};
use embedded_hal::i2c::{self, Error as _, I2c};
use embedded_hal::pwm::{self, SetDutyCycle};
use needle_core::hal::{Analog, ErrorKind, ErrorType, StrokeSample, StrokeSensor};
use needle_core::units::Micros;

use super::{HalError, TagReader};
use crate::config::{AdcChannelConfig, ADS1115_DATA_RATES_SPS, ADS1115_FULL_SCALES_MV};

// ---------------------------------------------------------------------------------------------
// Pins
// ---------------------------------------------------------------------------------------------

/// A pin whose logical level is the opposite of its electrical level when `inverted` is set:
/// active-low wiring (`"!17"` in the configuration), such as a normally closed E-stop or a
/// driver enable that enables at low.
///
/// For an output, build the underlying pin at the electrical level of logical low (see
/// [`electrical_level`]) so that it never passes through the active level at start.
#[derive(Debug)]
pub struct Inverted<P> {
    pin: P,
    inverted: bool,
}

impl<P> Inverted<P> {
    /// Wraps `pin`; inverts when `inverted` is true, passes through otherwise.
    pub fn new(pin: P, inverted: bool) -> Self {
        Self { pin, inverted }
    }

    /// Whether levels are inverted.
    pub fn is_inverted(&self) -> bool {
        self.inverted
    }

    /// The underlying pin.
    pub fn into_inner(self) -> P {
        self.pin
    }
}

/// The electrical level (true = high) that gives logical level `logical_high` on a pin wired
/// active-low when `active_low` is set.
pub fn electrical_level(logical_high: bool, active_low: bool) -> bool {
    logical_high != active_low
}

impl<P: digital::ErrorType> digital::ErrorType for Inverted<P> {
    type Error = P::Error;
}

impl<P: InputPin> InputPin for Inverted<P> {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        let inverted = self.inverted;
        self.pin.is_high().map(|high| high != inverted)
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.is_high().map(|high| !high)
    }
}

impl<P: OutputPin> OutputPin for Inverted<P> {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        if self.inverted {
            self.pin.set_low()
        } else {
            self.pin.set_high()
        }
    }

    fn set_low(&mut self) -> Result<(), Self::Error> {
        if self.inverted {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
    }
}

/// An output that, after each change of level, waits `hold` before returning, so the next
/// edge on this or any other pin comes at least `hold` later. Writing the level it already has
/// does nothing.
///
/// needle-core sets DIR and then pulses STEP high and low back to back within one tick; a
/// memory-mapped GPIO (rppal) would make pulses of tens of nanoseconds, shorter than stepper
/// drivers accept (A4988: 1 us, DRV8825: 1.9 us high and low, 650 ns DIR setup). Wrap STEP
/// with the pulse width and DIR with the setup time. The wait is a bounded busy-wait of a few
/// microseconds: sleeping would take far longer.
#[derive(Debug)]
pub struct HoldOutput<P> {
    pin: P,
    hold: Duration,
    level: Option<bool>,
}

impl<P> HoldOutput<P> {
    /// Wraps `pin`, whose current level is `level` (`None` if unknown).
    pub fn new(pin: P, hold: Duration, level: Option<bool>) -> Self {
        Self { pin, hold, level }
    }

    /// The underlying pin.
    pub fn into_inner(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> HoldOutput<P> {
    fn set(&mut self, high: bool) -> Result<(), P::Error> {
        if self.level == Some(high) {
            return Ok(());
        }
        if high {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        self.level = Some(high);
        spin_for(self.hold);
        Ok(())
    }
}

impl<P: digital::ErrorType> digital::ErrorType for HoldOutput<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for HoldOutput<P> {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.set(true)
    }

    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.set(false)
    }
}

/// Busy-waits for `duration` (microseconds at most: a thread sleep would take far longer).
pub fn spin_for(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------------------------
// Sysfs PWM
// ---------------------------------------------------------------------------------------------

/// `max_duty_cycle` of [`SysfsPwm`]: duty in parts per ten thousand, as the core's
/// `Permyriad`.
pub const SYSFS_PWM_MAX_DUTY: u16 = 10_000;

/// A channel of the kernel's sysfs PWM (`/sys/class/pwm/pwmchipN/pwmM`) as an embedded-hal
/// [`SetDutyCycle`]: duty in ns = period × duty / max.
///
/// `open` exports the channel if needed, sets duty 0, the period, and enables it; dropping it
/// sets duty 0 and disables it. Writes go through `std::fs::write` (open, write, close) as
/// `echo value > file` does, and only when the duty changes.
#[derive(Debug)]
pub struct SysfsPwm {
    root: PathBuf,
    channel: u32,
    period_ns: u64,
    duty: Option<u16>,
}

/// A sysfs PWM file that could not be written or did not appear.
#[derive(Debug)]
pub struct SysfsPwmError {
    /// The file.
    pub path: PathBuf,
    /// What the kernel said.
    pub source: io::Error,
}

impl fmt::Display for SysfsPwmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for SysfsPwmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl pwm::Error for SysfsPwmError {
    fn kind(&self) -> pwm::ErrorKind {
        pwm::ErrorKind::Other
    }
}

impl SysfsPwm {
    /// Opens channel `channel` of the PWM chip at `root` (such as `/sys/class/pwm/pwmchip0`)
    /// at `frequency_hz`, output off (duty 0) but enabled. Waits up to `export_timeout` for
    /// the channel directory to appear after an export (udev sets its permissions).
    pub fn open(
        root: &Path,
        channel: u32,
        frequency_hz: u32,
        export_timeout: Duration,
    ) -> Result<Self, SysfsPwmError> {
        let mut pwm = Self {
            root: root.to_path_buf(),
            channel,
            period_ns: 1_000_000_000 / u64::from(frequency_hz.max(1)),
            duty: None,
        };
        let dir = pwm.channel_dir();
        if !dir.exists() {
            write_sysfs(&root.join("export"), &channel.to_string())?;
            let start = Instant::now();
            while !dir.join("enable").exists() {
                if start.elapsed() > export_timeout {
                    return Err(SysfsPwmError {
                        path: dir,
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the channel did not appear after export",
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // The kernel refuses every change while the period is 0 (a freshly exported channel
        // of a driver that reads no state back), so then the period goes first. Otherwise
        // duty first: a period shorter than the old duty would be refused.
        let period_file = dir.join("period");
        let unset = std::fs::read_to_string(&period_file).is_ok_and(|p| p.trim() == "0");
        if unset {
            write_sysfs(&period_file, &pwm.period_ns.to_string())?;
            write_sysfs(&dir.join("duty_cycle"), "0")?;
        } else {
            write_sysfs(&dir.join("duty_cycle"), "0")?;
            write_sysfs(&period_file, &pwm.period_ns.to_string())?;
        }
        write_sysfs(&dir.join("enable"), "1")?;
        pwm.duty = Some(0);
        Ok(pwm)
    }

    /// The PWM period in nanoseconds.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// The duty last written, in parts of [`SYSFS_PWM_MAX_DUTY`].
    pub fn duty(&self) -> Option<u16> {
        self.duty
    }

    fn channel_dir(&self) -> PathBuf {
        self.root.join(format!("pwm{}", self.channel))
    }
}

fn write_sysfs(path: &Path, value: &str) -> Result<(), SysfsPwmError> {
    std::fs::write(path, value).map_err(|source| SysfsPwmError {
        path: path.to_path_buf(),
        source,
    })
}

impl Drop for SysfsPwm {
    fn drop(&mut self) {
        // Best effort: the motor enable is the primary safe state; this is the second.
        let dir = self.channel_dir();
        let _ = write_sysfs(&dir.join("duty_cycle"), "0");
        let _ = write_sysfs(&dir.join("enable"), "0");
    }
}

/// Drives channel `channel` of the sysfs PWM chip at `root` off without opening it for use:
/// duty 0, then disabled. For `needled --safe-outputs`, after the service died and left the
/// PWM at its last duty. A channel that is not exported is not running: it is left alone.
/// Returns what was done.
pub fn sysfs_pwm_off(root: &Path, channel: u32) -> Result<&'static str, SysfsPwmError> {
    if !root.is_dir() {
        return Err(SysfsPwmError {
            path: root.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such PWM chip"),
        });
    }
    let dir = root.join(format!("pwm{channel}"));
    if !dir.exists() {
        return Ok("not exported: off");
    }
    // Duty first, so the output is off even if disabling fails.
    write_sysfs(&dir.join("duty_cycle"), "0")?;
    write_sysfs(&dir.join("enable"), "0")?;
    Ok("duty 0, disabled")
}

impl pwm::ErrorType for SysfsPwm {
    type Error = SysfsPwmError;
}

impl SetDutyCycle for SysfsPwm {
    fn max_duty_cycle(&self) -> u16 {
        SYSFS_PWM_MAX_DUTY
    }

    fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Self::Error> {
        let duty = duty.min(SYSFS_PWM_MAX_DUTY);
        if self.duty == Some(duty) {
            return Ok(());
        }
        let ns = self.period_ns * u64::from(duty) / u64::from(SYSFS_PWM_MAX_DUTY);
        // Forget the cached duty first: after a failed write the real duty is unknown.
        self.duty = None;
        write_sysfs(&self.channel_dir().join("duty_cycle"), &ns.to_string())?;
        self.duty = Some(duty);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ADS1115
// ---------------------------------------------------------------------------------------------

const ADS_REG_CONVERSION: u8 = 0x00;
const ADS_REG_CONFIG: u8 = 0x01;
/// Config register: write 1 to start a single conversion; reads 0 while converting.
const ADS_OS: u16 = 1 << 15;
const ADS_MODE_SINGLE: u16 = 1 << 8;
const ADS_COMP_DISABLE: u16 = 0b11;

/// An error of the ADS1115.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdcError {
    /// The bus transaction failed.
    Bus {
        /// embedded-hal's kind of the failure.
        kind: i2c::ErrorKind,
        /// The bus driver's error, for the log.
        detail: String,
    },
    /// The conversion did not finish in time.
    Timeout,
    /// The finished conversion is of another input than the one started.
    WrongInput {
        /// The input started.
        expected: u8,
        /// The multiplexer setting read back.
        got: u16,
    },
    /// A setting the ADS1115 does not have.
    Setting(String),
    /// The scanner thread could not be started.
    Thread(String),
}

impl AdcError {
    fn bus<E: i2c::Error>(e: E) -> Self {
        AdcError::Bus {
            kind: e.kind(),
            detail: format!("{e:?}"),
        }
    }

    /// The kind of this error for the controller.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AdcError::Bus {
                kind: i2c::ErrorKind::NoAcknowledge(_),
                ..
            } => ErrorKind::Disconnected,
            AdcError::Timeout => ErrorKind::Timeout,
            AdcError::WrongInput { .. } => ErrorKind::OutOfRange,
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for AdcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdcError::Bus { kind, detail } => write!(f, "I2C error ({kind}): {detail}"),
            AdcError::Timeout => f.write_str("the conversion did not finish in time"),
            AdcError::WrongInput { expected, got } => write!(
                f,
                "conversion of input AIN{expected} read back multiplexer setting {got:#05b}"
            ),
            AdcError::Setting(s) => f.write_str(s),
            AdcError::Thread(s) => write!(f, "cannot start the ADC thread: {s}"),
        }
    }
}

impl std::error::Error for AdcError {}

/// A TI ADS1115 16-bit ADC on an I2C bus, read in single-shot mode, one single-ended input
/// (AINx against GND) at a time.
#[derive(Debug)]
pub struct Ads1115<I2C> {
    i2c: I2C,
    address: u8,
    data_rate_bits: u16,
    conversion_time: Duration,
}

impl<I2C: I2c> Ads1115<I2C> {
    /// An ADS1115 at 7-bit `address` converting at `data_rate_sps` samples per second.
    pub fn new(i2c: I2C, address: u8, data_rate_sps: u32) -> Result<Self, AdcError> {
        let index = ADS1115_DATA_RATES_SPS
            .iter()
            .position(|r| *r == data_rate_sps)
            .ok_or_else(|| {
                AdcError::Setting(format!(
                    "data rate {data_rate_sps} SPS: expected one of {ADS1115_DATA_RATES_SPS:?}"
                ))
            })?;
        // The internal oscillator may run 10 % slow.
        let conversion_us = 1_000_000 / u64::from(data_rate_sps) * 11 / 10 + 20;
        Ok(Self {
            i2c,
            address,
            data_rate_bits: (index as u16) << 5,
            conversion_time: Duration::from_micros(conversion_us),
        })
    }

    /// Converts `input` (0 to 3) with the gain of `full_scale_mv`; blocks for one conversion
    /// (1.2 ms at 860 SPS). Returns the raw signed count.
    pub fn read_single(&mut self, input: u8, full_scale_mv: u32) -> Result<i16, AdcError> {
        if input > 3 {
            return Err(AdcError::Setting(format!("input {input}: expected 0 to 3")));
        }
        let pga = ADS1115_FULL_SCALES_MV
            .iter()
            .position(|fs| *fs == full_scale_mv)
            .ok_or_else(|| {
                AdcError::Setting(format!(
                    "full scale {full_scale_mv} mV: expected one of {ADS1115_FULL_SCALES_MV:?}"
                ))
            })? as u16;
        let mux = 0b100 | u16::from(input);
        let config = ADS_OS
            | (mux << 12)
            | (pga << 9)
            | ADS_MODE_SINGLE
            | self.data_rate_bits
            | ADS_COMP_DISABLE;
        let [hi, lo] = config.to_be_bytes();
        self.i2c
            .write(self.address, &[ADS_REG_CONFIG, hi, lo])
            .map_err(AdcError::bus)?;
        std::thread::sleep(self.conversion_time);
        let deadline = Instant::now() + self.conversion_time * 4 + Duration::from_millis(5);
        loop {
            let status = self.read_register(ADS_REG_CONFIG)?;
            if status & ADS_OS != 0 {
                let got = (status >> 12) & 0b111;
                if got != mux {
                    return Err(AdcError::WrongInput {
                        expected: input,
                        got,
                    });
                }
                let raw = self.read_register(ADS_REG_CONVERSION)?;
                return Ok(i16::from_be_bytes(raw.to_be_bytes()));
            }
            if Instant::now() > deadline {
                return Err(AdcError::Timeout);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn read_register(&mut self, register: u8) -> Result<u16, AdcError> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[register], &mut buf)
            .map_err(AdcError::bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// The bus, back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// Microvolts at the input for a raw count at `full_scale_mv`.
pub fn ads1115_microvolts(raw: i16, full_scale_mv: u32) -> i64 {
    i64::from(raw) * i64::from(full_scale_mv) * 1_000 / 32_768
}

/// The latest reading of one channel, as the scanner left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    reading: Result<i32, ErrorKind>,
    at: Instant,
}

#[derive(Debug)]
struct AnalogShared {
    slots: Mutex<Vec<Option<Slot>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave plain readings half-written: use them anyway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One analog channel of a scanned [`Ads1115`], as the core's [`Analog`]: reads the latest
/// value the scanner thread stored, never the bus, so it does not block.
///
/// A reading older than `max_age`, or a failed conversion, is an error (the controller turns
/// it into `SensorFault`).
#[derive(Debug)]
pub struct AnalogChannel {
    shared: Arc<AnalogShared>,
    index: usize,
    max_age: Duration,
    cache: Option<Slot>,
}

impl ErrorType for AnalogChannel {
    type Error = ErrorKind;
}

impl Analog for AnalogChannel {
    fn read_milli(&mut self) -> Result<i32, ErrorKind> {
        // try_lock: if the scanner holds the lock this instant, use the previous reading
        // rather than wait.
        match self.shared.slots.try_lock() {
            Ok(slots) => self.cache = slots.get(self.index).copied().flatten(),
            Err(TryLockError::Poisoned(p)) => {
                self.cache = p.into_inner().get(self.index).copied().flatten();
            }
            Err(TryLockError::WouldBlock) => {}
        }
        let slot = self.cache.ok_or(ErrorKind::Timeout)?;
        if slot.at.elapsed() > self.max_age {
            return Err(ErrorKind::Timeout);
        }
        slot.reading
    }
}

/// The thread that scans an [`Ads1115`]'s channels; dropping it stops the thread.
#[derive(Debug)]
pub struct AnalogScanner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for AnalogScanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts scanning `channels` of `adc` round-robin on a thread named `needled-adc`, and
/// returns one [`AnalogChannel`] per channel, in order.
///
/// The first scan runs before this returns, so a missing or silent ADC is an error here, at
/// start-up, and the channels have values before the first control tick.
pub fn start_analog<I2C, const N: usize>(
    mut adc: Ads1115<I2C>,
    channels: [AdcChannelConfig; N],
    max_age: Duration,
) -> Result<(AnalogScanner, [AnalogChannel; N]), AdcError>
where
    I2C: I2c + Send + 'static,
{
    let shared = Arc::new(AnalogShared {
        slots: Mutex::new(vec![None; N]),
    });
    if let Some(e) = scan_once(&mut adc, &channels, &shared) {
        return Err(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("needled-adc".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if scan_once(&mut adc, &channels, &shared).is_some() {
                        // Do not spin on a dead bus; the stale readings fault the controller.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
            .map_err(|e| AdcError::Thread(e.to_string()))?
    };
    // Start from the first scan's readings, so a reader never sees "no value yet".
    let first = lock(&shared.slots).clone();
    let readers = std::array::from_fn(|index| AnalogChannel {
        shared: Arc::clone(&shared),
        index,
        max_age,
        cache: first.get(index).copied().flatten(),
    });
    Ok((
        AnalogScanner {
            stop,
            thread: Some(thread),
        },
        readers,
    ))
}

/// Converts every channel once and stores the readings; returns the first error.
fn scan_once<I2C: I2c>(
    adc: &mut Ads1115<I2C>,
    channels: &[AdcChannelConfig],
    shared: &AnalogShared,
) -> Option<AdcError> {
    let mut first_error = None;
    for (index, ch) in channels.iter().enumerate() {
        let reading = adc.read_single(ch.input, ch.full_scale_mv).and_then(|raw| {
            ch.milli_at_microvolts(ads1115_microvolts(raw, ch.full_scale_mv))
                .ok_or_else(|| AdcError::Setting("reading does not fit in i32".into()))
        });
        let stored = reading.as_ref().map(|v| *v).map_err(|e| match e {
            AdcError::Setting(_) => ErrorKind::OutOfRange,
            other => other.kind(),
        });
        if let (Err(e), None) = (reading, &first_error) {
            first_error = Some(e);
        }
        if let Some(slot) = lock(&shared.slots).get_mut(index) {
            *slot = Some(Slot {
                reading: stored,
                at: Instant::now(),
            });
        }
    }
    first_error
}

// ---------------------------------------------------------------------------------------------
// Stroke sensor edges
// ---------------------------------------------------------------------------------------------

/// Timestamps further in the future than this are not CLOCK_MONOTONIC.
const CLOCK_TOLERANCE: Micros = Micros(1_000_000);

/// The stroke sensor's shared state: updated by an edge-event source (a thread reading
/// gpio-cdev line events, rppal's interrupt thread) with kernel timestamps, read by the
/// control thread through an [`EdgeReader`].
///
/// Edges closer together than the glitch filter are not stroke edges and are ignored. When
/// the source reports sequence numbers (gpio v2 `line_seqno`), edges the kernel dropped are
/// counted and the period is averaged over them.
#[derive(Debug)]
pub struct EdgeTimestamps {
    state: Mutex<EdgeState>,
    glitch_filter: Micros,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EdgeState {
    sample: StrokeSample,
    seqno: Option<u32>,
    failed: Option<ErrorKind>,
}

impl EdgeState {
    fn record(&mut self, at: Micros, seqno: Option<u32>, glitch_filter: Micros) {
        let seen = match (seqno, self.seqno) {
            (Some(now), Some(before)) => now.wrapping_sub(before),
            _ => 1,
        };
        if seqno.is_some() {
            self.seqno = seqno;
        }
        if seen == 0 {
            return; // the same event twice
        }
        let s = &mut self.sample;
        if let Some(last) = s.last_edge {
            if at <= last || at.since(last) < glitch_filter {
                return; // out of order, or a glitch
            }
            s.last_period = Some(Micros(at.since(last).0 / u64::from(seen)));
        }
        s.edges = s.edges.wrapping_add(seen);
        s.last_edge = Some(at);
    }
}

impl EdgeTimestamps {
    /// Shared state with a glitch filter: edges closer than this to the previous one are
    /// ignored. Choose well under the shortest expected edge period.
    pub fn new(glitch_filter: Micros) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(EdgeState::default()),
            glitch_filter,
        })
    }

    /// A glitch filter of a quarter of the shortest edge period at `rate_ceiling_hz` with
    /// `edges_per_stroke`.
    pub fn glitch_filter_for(rate_ceiling_hz: u32, edges_per_stroke: u32) -> Micros {
        let edges_per_s = u64::from(rate_ceiling_hz.max(1)) * u64::from(edges_per_stroke.max(1));
        Micros(1_000_000 / edges_per_s / 4)
    }

    /// Records an edge at kernel time `at` (CLOCK_MONOTONIC), with the kernel's sequence
    /// number if the source has one; `now` is the current CLOCK_MONOTONIC time, used to
    /// refuse timestamps of another clock (a pre-5.7 kernel's CLOCK_REALTIME).
    pub fn record(&self, at: Micros, seqno: Option<u32>, now: Micros) {
        let mut state = lock(&self.state);
        if at > now.saturating_add(CLOCK_TOLERANCE) {
            state.failed = Some(ErrorKind::OutOfRange);
            return;
        }
        state.record(at, seqno, self.glitch_filter);
    }

    /// Marks the source as failed: every later sample is an error of this kind.
    pub fn fail(&self, kind: ErrorKind) {
        lock(&self.state).failed = Some(kind);
    }

    /// The current sample, or the failure of the source.
    pub fn sample(&self) -> Result<StrokeSample, ErrorKind> {
        let state = lock(&self.state);
        state.failed.map_or(Ok(state.sample), Err)
    }

    /// A reader for the control thread.
    pub fn reader(self: &Arc<Self>) -> EdgeReader {
        EdgeReader {
            shared: Arc::clone(self),
            cache: Ok(StrokeSample::default()),
        }
    }
}

/// The control thread's side of [`EdgeTimestamps`], as the core's [`StrokeSensor`]. Never
/// blocks: if the source holds the lock this instant, the previous sample is returned.
#[derive(Debug)]
pub struct EdgeReader {
    shared: Arc<EdgeTimestamps>,
    cache: Result<StrokeSample, ErrorKind>,
}

impl ErrorType for EdgeReader {
    type Error = ErrorKind;
}

impl StrokeSensor for EdgeReader {
    fn sample(&mut self) -> Result<StrokeSample, ErrorKind> {
        let read = |s: &EdgeState| s.failed.map_or(Ok(s.sample), Err);
        match self.shared.state.try_lock() {
            Ok(state) => self.cache = read(&state),
            Err(TryLockError::Poisoned(p)) => self.cache = read(&p.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        self.cache
    }
}

// ---------------------------------------------------------------------------------------------
// Cartridge tag EEPROM
// ---------------------------------------------------------------------------------------------

/// Size of a cartridge tag image (see `crate::tag`).
pub const TAG_IMAGE_LEN: usize = 128;

/// Bytes read per bus transaction.
const TAG_CHUNK: usize = 16;

/// The cartridge tag: a 24Cxx I2C EEPROM holding a [`TAG_IMAGE_LEN`]-byte image at address 0.
///
/// The image is read twice and compared, so a cartridge moving during the read gives an error
/// rather than a torn image that would fail authentication for the wrong reason.
#[derive(Debug)]
pub struct TagEeprom<I2C> {
    i2c: I2C,
    address: u8,
    address_bytes: u8,
    device: String,
    key: String,
}

/// A failed tag read: where, and what the bus said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagReadError {
    /// Byte offset of the failed read, if a read failed.
    pub offset: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TagReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "read at byte {offset} failed: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TagReadError {}

impl<I2C: I2c> TagEeprom<I2C> {
    /// An EEPROM at 7-bit `address` with 1-byte (24C01/02) or 2-byte (24C32 and up) word
    /// addresses; `device` and `key` name it in errors (such as `/dev/i2c-1 address 0x50` and
    /// `hardware.linux.tag_eeprom_address`).
    pub fn new(
        i2c: I2C,
        address: u8,
        address_bytes: u8,
        device: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            i2c,
            address,
            address_bytes,
            device: device.into(),
            key: key.into(),
        }
    }

    /// Reads the image once: `None` if the EEPROM does not acknowledge its address (no
    /// cartridge).
    pub fn read_image(&mut self) -> Result<Option<Vec<u8>>, TagReadError> {
        let mut image = vec![0u8; TAG_IMAGE_LEN];
        for (i, chunk) in image.chunks_mut(TAG_CHUNK).enumerate() {
            let offset = i * TAG_CHUNK;
            let [.., hi, lo] = (offset as u32).to_be_bytes();
            let word: &[u8] = if self.address_bytes >= 2 {
                &[hi, lo]
            } else {
                &[lo]
            };
            if let Err(e) = self.i2c.write_read(self.address, word, chunk) {
                let absent = matches!(e.kind(), i2c::ErrorKind::NoAcknowledge(_));
                if absent && offset == 0 {
                    return Ok(None);
                }
                return Err(TagReadError {
                    offset: Some(offset),
                    message: format!("{} ({e:?})", e.kind()),
                });
            }
        }
        Ok(Some(image))
    }

    /// Reads the image twice; `None` if no tag answers, an error if the two reads differ.
    pub fn read_stable(&mut self) -> Result<Option<Vec<u8>>, TagReadError> {
        let first = self.read_image()?;
        let second = self.read_image()?;
        if first == second {
            Ok(first)
        } else {
            Err(TagReadError {
                offset: None,
                message: "the tag changed between two reads (cartridge moving?)".into(),
            })
        }
    }

    /// The bus, back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

impl<I2C: I2c + Send> TagReader for TagEeprom<I2C> {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, HalError> {
        self.read_stable()
            .map_err(|e| HalError::device(self.device.clone(), self.key.clone(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicU32;

    // --- pins ---

    #[derive(Debug, Default)]
    struct FakePin {
        high: bool,
        writes: u32,
    }

    impl digital::ErrorType for FakePin {
        type Error = Infallible;
    }

    impl InputPin for FakePin {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(self.high)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(!self.high)
        }
    }

    impl OutputPin for FakePin {
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.high = true;
            self.writes += 1;
            Ok(())
        }
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.high = false;
            self.writes += 1;
            Ok(())
        }
    }

    #[test]
    fn inverted_pin_reads_and_drives_the_opposite_level() {
        let mut pin = Inverted::new(FakePin::default(), true);
        assert!(pin.is_high().unwrap());
        pin.set_high().unwrap();
        assert!(!pin.into_inner().high);

        let mut plain = Inverted::new(FakePin::default(), false);
        assert!(plain.is_low().unwrap());
        plain.set_high().unwrap();
        assert!(plain.into_inner().high);

        // An active-low enable starts electrically high, which is logically off.
        assert!(electrical_level(false, true));
        assert!(!electrical_level(false, false));
    }

    #[test]
    fn hold_output_holds_each_change_and_skips_repeats() {
        let hold = Duration::from_micros(200);
        let mut step = HoldOutput::new(FakePin::default(), hold, Some(false));
        let start = Instant::now();
        step.set_high().unwrap();
        step.set_low().unwrap();
        assert!(start.elapsed() >= hold * 2);
        step.set_low().unwrap();
        assert_eq!(step.into_inner().writes, 2);
    }

    // --- sysfs PWM ---

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn sysfs_pwm_sets_period_then_duty_in_nanoseconds() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        for f in ["period", "duty_cycle", "enable"] {
            std::fs::write(dir.join(f), "0").unwrap();
        }
        let mut pwm = SysfsPwm::open(root.path(), 0, 20_000, Duration::ZERO).unwrap();
        assert_eq!(read(&dir.join("period")), "50000");
        assert_eq!(read(&dir.join("enable")), "1");
        assert_eq!(pwm.max_duty_cycle(), 10_000);
        pwm.set_duty_cycle_percent(25).unwrap();
        assert_eq!(read(&dir.join("duty_cycle")), "12500");
        pwm.set_duty_cycle(u16::MAX).unwrap();
        assert_eq!(read(&dir.join("duty_cycle")), "50000");
        drop(pwm);
        assert_eq!(read(&dir.join("duty_cycle")), "0");
        assert_eq!(read(&dir.join("enable")), "0");
    }

    #[test]
    fn sysfs_pwm_exports_a_missing_channel_and_times_out_clearly() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("export"), "").unwrap();
        let err = SysfsPwm::open(root.path(), 1, 20_000, Duration::from_millis(20)).unwrap_err();
        assert_eq!(read(&root.path().join("export")), "1");
        assert_eq!(err.path, root.path().join("pwm1"));
        assert!(err.to_string().contains("did not appear"), "{err}");
    }

    #[test]
    fn sysfs_pwm_without_chip_names_the_file() {
        let err = SysfsPwm::open(Path::new("/nonexistent/pwmchip9"), 0, 1_000, Duration::ZERO)
            .unwrap_err();
        assert_eq!(err.path, Path::new("/nonexistent/pwmchip9/export"));
    }

    /// A channel left running by a killed process: enabled at a 60 % duty.
    fn running_pwm_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pwm0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("period"), "50000").unwrap();
        std::fs::write(dir.join("duty_cycle"), "30000").unwrap();
        std::fs::write(dir.join("enable"), "1").unwrap();
        root
    }

    #[test]
    fn sysfs_pwm_off_zeroes_the_duty_and_disables_a_running_channel() {
        let root = running_pwm_tree();
        assert_eq!(sysfs_pwm_off(root.path(), 0).unwrap(), "duty 0, disabled");
        assert_eq!(read(&root.path().join("pwm0/duty_cycle")), "0");
        assert_eq!(read(&root.path().join("pwm0/enable")), "0");
        // An unexported channel is not running and is not exported for this.
        std::fs::write(root.path().join("export"), "").unwrap();
        assert_eq!(sysfs_pwm_off(root.path(), 1).unwrap(), "not exported: off");
        assert_eq!(read(&root.path().join("export")), "");
        // A missing chip is an error naming it.
        let err = sysfs_pwm_off(Path::new("/nonexistent/pwmchip9"), 0).unwrap_err();
        assert_eq!(err.path, Path::new("/nonexistent/pwmchip9"));
    }

    #[test]
    fn sysfs_pwm_open_drives_a_running_channel_to_duty_zero_before_anything_else() {
        // What a restart after a SIGKILL finds, and leaves even if it is killed again at once
        // (no Drop).
        let root = running_pwm_tree();
        let pwm = SysfsPwm::open(root.path(), 0, 20_000, Duration::ZERO).unwrap();
        std::mem::forget(pwm);
        assert_eq!(read(&root.path().join("pwm0/duty_cycle")), "0");
    }

    // --- I2C fakes ---

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct FakeI2cError(i2c::ErrorKind);

    impl i2c::Error for FakeI2cError {
        fn kind(&self) -> i2c::ErrorKind {
            self.0
        }
    }

    const NACK: FakeI2cError = FakeI2cError(i2c::ErrorKind::NoAcknowledge(
        i2c::NoAcknowledgeSource::Address,
    ));

    /// An ADS1115 register model: a conversion takes `busy_polls` status reads.
    #[derive(Debug, Default)]
    struct FakeAds {
        present: bool,
        config: u16,
        busy: u32,
        busy_polls: u32,
        inputs: [i16; 4],
        /// Report this multiplexer setting instead of the one written.
        force_mux: Option<u16>,
        configs_written: Vec<u16>,
    }

    #[derive(Debug, Clone)]
    struct SharedAds(Arc<Mutex<FakeAds>>);

    impl i2c::ErrorType for SharedAds {
        type Error = FakeI2cError;
    }

    impl I2c for SharedAds {
        fn transaction(
            &mut self,
            address: u8,
            operations: &mut [i2c::Operation<'_>],
        ) -> Result<(), FakeI2cError> {
            let mut ads = self.0.lock().unwrap();
            if !ads.present || address != 0x48 {
                return Err(NACK);
            }
            match operations {
                [i2c::Operation::Write([0x01, hi, lo])] => {
                    let config = u16::from_be_bytes([*hi, *lo]);
                    ads.configs_written.push(config);
                    ads.config = config & !ADS_OS;
                    ads.busy = ads.busy_polls;
                    if let Some(mux) = ads.force_mux {
                        ads.config = (ads.config & !(0b111 << 12)) | (mux << 12);
                    }
                    Ok(())
                }
                [i2c::Operation::Write([register]), i2c::Operation::Read(buf)] => {
                    let value = match *register {
                        0x01 if ads.busy > 0 => {
                            ads.busy -= 1;
                            ads.config
                        }
                        0x01 => ads.config | ADS_OS,
                        0x00 => {
                            let input = usize::from((ads.config >> 12) & 0b11);
                            u16::from_be_bytes(ads.inputs[input].to_be_bytes())
                        }
                        _ => return Err(FakeI2cError(i2c::ErrorKind::Other)),
                    };
                    buf.copy_from_slice(&value.to_be_bytes());
                    Ok(())
                }
                _ => Err(FakeI2cError(i2c::ErrorKind::Other)),
            }
        }
    }

    fn fake_ads(inputs: [i16; 4]) -> SharedAds {
        SharedAds(Arc::new(Mutex::new(FakeAds {
            present: true,
            busy_polls: 2,
            inputs,
            ..FakeAds::default()
        })))
    }

    fn channel(input: u8, milli_per_volt: i32, offset_milli: i32) -> AdcChannelConfig {
        AdcChannelConfig {
            input,
            full_scale_mv: 4_096,
            milli_per_volt,
            offset_milli,
        }
    }

    #[test]
    fn ads1115_single_shot_writes_the_config_and_waits_for_the_conversion() {
        let bus = fake_ads([0, 0, 16_384, 0]);
        let mut adc = Ads1115::new(bus.clone(), 0x48, 860).unwrap();
        assert_eq!(adc.read_single(2, 4_096), Ok(16_384));
        // OS | AIN2 vs GND | +-4.096 V | single shot | 860 SPS | comparator off.
        assert_eq!(bus.0.lock().unwrap().configs_written, vec![0xE3E3]);
        assert_eq!(ads1115_microvolts(16_384, 4_096), 2_048_000);
        assert_eq!(ads1115_microvolts(-32_768, 256), -256_000);
    }

    #[test]
    fn ads1115_refuses_a_conversion_of_another_input_and_bad_settings() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().force_mux = Some(0b101);
        let mut adc = Ads1115::new(bus, 0x48, 860).unwrap();
        assert_eq!(
            adc.read_single(0, 4_096),
            Err(AdcError::WrongInput {
                expected: 0,
                got: 0b101
            })
        );
        assert!(matches!(
            adc.read_single(4, 4_096),
            Err(AdcError::Setting(_))
        ));
        assert!(matches!(
            adc.read_single(0, 5_000),
            Err(AdcError::Setting(_))
        ));
        assert!(Ads1115::new(fake_ads([0; 4]), 0x48, 100).is_err());
    }

    #[test]
    fn ads1115_conversion_that_never_finishes_times_out() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().busy_polls = u32::MAX;
        let mut adc = Ads1115::new(bus, 0x48, 860).unwrap();
        assert_eq!(adc.read_single(0, 4_096), Err(AdcError::Timeout));
        assert_eq!(AdcError::Timeout.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn analog_channels_are_scaled_and_refreshed_by_the_scanner() {
        // 1 V on AIN0 at 2000 mA/V; 0.75 V on AIN1 as a TMP36 (10 mV/degC, 500 mV at 0 degC);
        // 1.2 V on AIN2 behind an 11:1 divider.
        let counts = |mv: i64| i16::try_from(mv * 32_768 / 4_096).unwrap();
        let bus = fake_ads([counts(1_000), counts(750), counts(1_200), 0]);
        let adc = Ads1115::new(bus.clone(), 0x48, 860).unwrap();
        let (scanner, [mut current, mut temperature, mut supply]) = start_analog(
            adc,
            [
                channel(0, 2_000, 0),
                channel(1, 100_000, -50_000),
                channel(2, 11_000, 0),
            ],
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(current.read_milli(), Ok(2_000));
        assert_eq!(temperature.read_milli(), Ok(25_000));
        assert_eq!(supply.read_milli(), Ok(13_200));

        bus.0.lock().unwrap().inputs[0] = counts(500);
        let deadline = Instant::now() + Duration::from_secs(2);
        while current.read_milli() != Ok(1_000) {
            assert!(Instant::now() < deadline, "scanner did not refresh");
            std::thread::sleep(Duration::from_millis(2));
        }

        // The ADC goes away: readings fail (NACK -> Disconnected) or go stale.
        bus.0.lock().unwrap().present = false;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match supply.read_milli() {
                Err(ErrorKind::Disconnected | ErrorKind::Timeout) => break,
                _ => assert!(Instant::now() < deadline, "lost ADC not reported"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(scanner);
    }

    #[test]
    fn analog_start_fails_at_once_without_an_adc() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().present = false;
        let adc = Ads1115::new(bus, 0x48, 860).unwrap();
        let err = start_analog(adc, [channel(0, 1_000, 0)], Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected);
    }

    #[test]
    fn stale_analog_reading_is_a_timeout() {
        let shared = Arc::new(AnalogShared {
            slots: Mutex::new(vec![Some(Slot {
                reading: Ok(5),
                at: Instant::now(),
            })]),
        });
        let mut ch = AnalogChannel {
            shared,
            index: 0,
            max_age: Duration::from_millis(5),
            cache: None,
        };
        assert_eq!(ch.read_milli(), Ok(5));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(ch.read_milli(), Err(ErrorKind::Timeout));
    }

    // --- stroke edges ---

    fn state_after(edges: &[(u64, Option<u32>)], glitch: u64) -> EdgeState {
        let mut s = EdgeState::default();
        for (at, seqno) in edges {
            s.record(Micros(*at), *seqno, Micros(glitch));
        }
        s
    }

    #[test]
    fn edges_give_count_last_edge_and_period() {
        let s = state_after(&[(1_000, None)], 0).sample;
        assert_eq!(
            (s.edges, s.last_edge, s.last_period),
            (1, Some(Micros(1_000)), None)
        );
        let s = state_after(&[(1_000, None), (9_000, None), (17_500, None)], 0).sample;
        assert_eq!(s.edges, 3);
        assert_eq!(s.last_edge, Some(Micros(17_500)));
        assert_eq!(s.last_period, Some(Micros(8_500)));
    }

    #[test]
    fn glitches_out_of_order_and_duplicate_events_are_ignored() {
        let s = state_after(
            &[
                (10_000, Some(1)),
                (10_050, Some(2)), // glitch: 50 us after the last edge
                (9_000, Some(3)),  // out of order
                (18_000, Some(4)), // real edge
                (18_000, Some(4)), // the same event again
            ],
            1_000,
        )
        .sample;
        assert_eq!(s.edges, 2);
        assert_eq!(s.last_period, Some(Micros(8_000)));
    }

    #[test]
    fn dropped_events_are_counted_and_the_period_averaged() {
        let s = state_after(&[(0, Some(10)), (8_000, Some(11)), (32_000, Some(14))], 0).sample;
        assert_eq!(s.edges, 5);
        assert_eq!(s.last_period, Some(Micros(8_000)));
    }

    #[test]
    fn edge_counter_and_sequence_numbers_wrap() {
        let mut s = EdgeState::default();
        s.sample.edges = u32::MAX - 1;
        s.record(Micros(1_000), Some(u32::MAX), Micros(0));
        s.record(Micros(2_000), Some(0), Micros(0));
        s.record(Micros(3_000), Some(1), Micros(0));
        // MAX - 1, then MAX, then wraps to 0 and 1; sequence numbers wrap from MAX to 0.
        assert_eq!(s.sample.edges, 1);
        assert_eq!(s.sample.last_period, Some(Micros(1_000)));
    }

    #[test]
    fn shared_edges_reach_the_reader_and_a_failure_is_an_error() {
        let edges = EdgeTimestamps::new(Micros(100));
        let mut reader = edges.reader();
        assert_eq!(reader.sample(), Ok(StrokeSample::default()));
        let now = Micros(1_000_000);
        edges.record(Micros(990_000), Some(7), now);
        edges.record(Micros(998_000), Some(8), now);
        let s = reader.sample().unwrap();
        assert_eq!((s.edges, s.last_period), (2, Some(Micros(8_000))));
        assert_eq!(edges.sample(), Ok(s));

        // A CLOCK_REALTIME timestamp (decades ahead of CLOCK_MONOTONIC) fails the source.
        edges.record(Micros(1_700_000_000_000_000), Some(9), now);
        assert_eq!(reader.sample(), Err(ErrorKind::OutOfRange));
        edges.fail(ErrorKind::Disconnected);
        assert_eq!(reader.sample(), Err(ErrorKind::Disconnected));
    }

    #[test]
    fn glitch_filter_is_a_quarter_of_the_shortest_edge_period() {
        assert_eq!(EdgeTimestamps::glitch_filter_for(160, 1), Micros(1_562));
        assert_eq!(EdgeTimestamps::glitch_filter_for(1_000, 64), Micros(3));
        assert_eq!(EdgeTimestamps::glitch_filter_for(0, 0), Micros(250_000));
    }

    // --- tag EEPROM ---

    #[derive(Debug)]
    struct FakeEeprom {
        memory: Vec<u8>,
        present: bool,
        address_bytes: usize,
        reads: Arc<AtomicU32>,
        /// Fail the read of this chunk index with a bus error.
        fail_at: Option<u32>,
        /// Flip a byte on every second full read.
        flaky: bool,
    }

    impl i2c::ErrorType for FakeEeprom {
        type Error = FakeI2cError;
    }

    impl I2c for FakeEeprom {
        fn transaction(
            &mut self,
            address: u8,
            operations: &mut [i2c::Operation<'_>],
        ) -> Result<(), FakeI2cError> {
            if !self.present || address != 0x50 {
                return Err(NACK);
            }
            let n = self.reads.fetch_add(1, Ordering::Relaxed);
            if self.fail_at == Some(n) {
                return Err(FakeI2cError(i2c::ErrorKind::Bus));
            }
            let [i2c::Operation::Write(word), i2c::Operation::Read(buf)] = operations else {
                return Err(FakeI2cError(i2c::ErrorKind::Other));
            };
            assert_eq!(word.len(), self.address_bytes);
            let offset = word.iter().fold(0usize, |a, b| a * 256 + usize::from(*b));
            buf.copy_from_slice(&self.memory[offset..offset + buf.len()]);
            if self.flaky && n >= 8 {
                buf[0] ^= 0xFF;
            }
            Ok(())
        }
    }

    fn eeprom(address_bytes: usize) -> FakeEeprom {
        FakeEeprom {
            memory: (0..=255).collect(),
            present: true,
            address_bytes,
            reads: Arc::new(AtomicU32::new(0)),
            fail_at: None,
            flaky: false,
        }
    }

    #[test]
    fn tag_image_is_read_in_chunks_with_one_or_two_address_bytes() {
        for width in [1u8, 2] {
            let fake = eeprom(usize::from(width));
            let reads = Arc::clone(&fake.reads);
            let mut tag = TagEeprom::new(fake, 0x50, width, "/dev/i2c-1 0x50", "k");
            let image = tag.read_tag().unwrap().unwrap();
            assert_eq!(image, (0..128).collect::<Vec<u8>>());
            assert_eq!(reads.load(Ordering::Relaxed), 16); // 2 x 128 / 16
        }
    }

    #[test]
    fn no_tag_is_none_and_bus_errors_name_the_device_and_key() {
        let mut fake = eeprom(1);
        fake.present = false;
        let mut tag = TagEeprom::new(
            fake,
            0x50,
            1,
            "/dev/i2c-1 0x50",
            "hardware.linux.tag_eeprom_address",
        );
        assert!(tag.read_tag().unwrap().is_none());

        let mut fake = eeprom(1);
        fake.fail_at = Some(3);
        let mut tag = TagEeprom::new(
            fake,
            0x50,
            1,
            "/dev/i2c-1 0x50",
            "hardware.linux.tag_eeprom_address",
        );
        let err = tag.read_tag().unwrap_err().to_string();
        assert!(
            err.starts_with("/dev/i2c-1 0x50 (hardware.linux.tag_eeprom_address): read at byte 48"),
            "{err}"
        );

        let mut fake = eeprom(1);
        fake.flaky = true;
        let mut tag = TagEeprom::new(fake, 0x50, 1, "d", "k");
        assert!(tag.read_tag().unwrap_err().to_string().contains("changed"));
    }
}
