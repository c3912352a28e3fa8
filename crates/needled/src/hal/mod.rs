//! Hardware backends: each builds needle-core's [`Hardware`](needle_core::hal::Hardware) from
//! the [`Config`](crate::config::Config).
//!
//! - `sim`: the simulated rig (default).
//! - `link`: a pen MCU running needle-core, over a serial line with needle-link ([`link`]).
//! - `rppal` (cargo feature `rppal`): a Raspberry Pi through rppal: GPIO, hardware PWM, I2C.
//! - `linux` (cargo feature `linux`): any Linux board through gpio-cdev, sysfs PWM, i2c-dev;
//!   the replacement for rppal on a Pi 5 now that rppal is retired.
//! - `wiring` (with either of them): what the rppal and linux backends share: the order the
//!   rig's parts are opened in at their safe levels, the pin wrappers, the ADC scanner and
//!   stroke edge wiring, and the core's `Hardware` they make up. Each backend implements its
//!   `Backend` trait: how to open one line, the PWM, the edge source, the bus.
//! - The drivers both real backends share, one module each, tested without hardware:
//!   [`pins`] (pin inversion, STEP/DIR timing), [`sysfs_pwm`], [`ads1115`] and its scanner
//!   [`analog`], [`edges`] (stroke edge timestamps), [`tag_eeprom`] (the cartridge tag in a plain EEPROM),
//!   [`atecc608`] (the cartridge's ATECC608 authenticator chip);
//!   [`background`] is the background thread of the ADC scanner and the linux edge reader.
//! - [`safe`]: `needled --safe-outputs`, which drives the outputs to their safe levels after
//!   any exit (systemd's `ExecStopPost=`), needing no ledger, key or tokens.
//!
//! The kernel timestamps stroke sensor edges with CLOCK_MONOTONIC, and needle-core compares
//! them with the `now` it is ticked with: with the rppal and linux backends the control loop
//! must tick the controller with [`crate::control::monotonic_now`] (the `Monotonic` clock).
//!
//! Every device a backend cannot open is reported with its path and the configuration key
//! that names it ([`HalError::Open`]).

pub mod ads1115;
pub mod analog;
pub mod atecc608;
pub mod background;
pub mod edges;
#[cfg(test)]
mod fakes;
pub mod link;
#[cfg(feature = "linux")]
pub mod linux;
pub mod pins;
#[cfg(feature = "rppal")]
pub mod rppal;
pub mod safe;
pub mod sim;
pub mod sysfs_pwm;
pub mod tag_eeprom;
#[cfg(any(feature = "linux", feature = "rppal"))]
pub mod wiring;

use std::sync::{Mutex, MutexGuard};

/// Errors of the hardware backends while opening the rig or reading a cartridge tag.
#[derive(Debug, thiserror::Error)]
pub enum HalError {
    /// A device could not be opened or set up.
    #[error("cannot open {device} ({key}): {source}")]
    Open {
        /// The device: a path such as `/dev/gpiochip0`, or a name such as `GPIO17`.
        device: String,
        /// The configuration key that names it, such as `hardware.linux.gpio_chip`.
        key: String,
        /// What the operating system or driver said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A device was opened but did not behave as expected (a bus read failed, a sysfs file did
    /// not appear).
    #[error("{device} ({key}): {message}")]
    Device {
        /// The device.
        device: String,
        /// The configuration key that names it.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// `hardware.backend` names a backend whose section is missing (normally caught by
    /// [`Config::validate`](crate::config::Config::validate)).
    #[error("hardware.backend is \"{backend}\" but [hardware.{backend}] is missing")]
    MissingSection {
        /// The backend.
        backend: &'static str,
    },
    /// `hardware.backend` names a backend this binary was built without.
    #[error(
        "hardware.backend is \"{backend}\" but needled was built without it: rebuild with \
         `--features {backend}`"
    )]
    NotBuiltIn {
        /// The backend.
        backend: &'static str,
    },
}

impl HalError {
    /// Stable error code for the API and logs.
    pub fn code(&self) -> &'static str {
        match self {
            HalError::Open { .. } | HalError::Device { .. } => "hardware_unavailable",
            HalError::MissingSection { .. } | HalError::NotBuiltIn { .. } => "config_invalid",
        }
    }

    /// An [`HalError::Open`] for `device` named by the configuration key `key`.
    pub fn open(
        device: impl Into<String>,
        key: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        HalError::Open {
            device: device.into(),
            key: key.into(),
            source: source.into(),
        }
    }

    /// A [`HalError::Device`] for `device` named by the configuration key `key`.
    pub fn device(
        device: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        HalError::Device {
            device: device.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Why a cartridge chip operation gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ChipFault {
    /// This backend has no driver for a cartridge authenticator chip (the EEPROM-only rigs,
    /// the pen link): only the tag can be read.
    #[error("this backend cannot reach a cartridge authenticator chip")]
    Unsupported,
    /// The seated part did not answer the chip command: a memory-only copy, or no chip.
    #[error("the cartridge did not answer as an authenticator chip")]
    NoAnswer,
    /// The chip answered with an error status (see [`atecc608::status_name`]): 0x01
    /// checkmac miscompare, 0x0F execution error (a counter at its limit, a slot not set up for
    /// the command), 0x11 a command it did not get after wake, 0xEE its watchdog, 0xFF a CRC
    /// or communication error.
    #[error("the cartridge chip answered status {0:#04x} ({name})", name = atecc608::status_name(*.0))]
    Status(u8),
    /// The chip's response had a wrong length or a bad CRC.
    #[error("the cartridge chip's response is corrupt: {0}")]
    Corrupt(&'static str),
    /// The chip did not answer within the command's maximum execution time.
    #[error("the cartridge chip did not answer within the command's execution time")]
    Timeout,
    /// The I2C bus failed in the middle of a chip command.
    #[error("the cartridge chip's bus failed: {0}")]
    Bus(String),
    /// The bus failed.
    #[error(transparent)]
    Hal(#[from] HalError),
}

/// The seated cartridge's authenticator chip, after the ATECC608/ECC204 pattern: readable
/// memory holding the signed tag, a private key that never leaves the chip and signs a
/// challenge, and a monotonic use counter. Backends without a chip driver implement only
/// [`CartridgeChip::read_tag`]; the rest answer [`ChipFault::Unsupported`].
///
/// Used from the service's async side (on the tag thread), never from the control thread.
pub trait CartridgeChip: Send {
    /// The raw tag image, or `None` when no tag answers (no cartridge). Parsing and
    /// authentication are the job of [`crate::cartridge`].
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, HalError>;

    /// The chip's answer to `nonce`: its signature of [`crate::cartridge::challenge_digest`]
    /// with its private key (64 bytes, `r ‖ s`).
    fn sign_challenge(&mut self, nonce: &[u8; 32]) -> Result<Vec<u8>, ChipFault> {
        let _ = nonce;
        Err(ChipFault::Unsupported)
    }

    /// The chip's monotonic use counter.
    fn read_counter(&mut self) -> Result<u32, ChipFault> {
        Err(ChipFault::Unsupported)
    }

    /// Advances the use counter by one and returns the new value.
    fn advance_counter(&mut self) -> Result<u32, ChipFault> {
        Err(ChipFault::Unsupported)
    }
}

impl<T: CartridgeChip + ?Sized> CartridgeChip for Box<T> {
    fn read_tag(&mut self) -> Result<Option<Vec<u8>>, HalError> {
        T::read_tag(self)
    }
    fn sign_challenge(&mut self, nonce: &[u8; 32]) -> Result<Vec<u8>, ChipFault> {
        T::sign_challenge(self, nonce)
    }
    fn read_counter(&mut self) -> Result<u32, ChipFault> {
        T::read_counter(self)
    }
    fn advance_counter(&mut self) -> Result<u32, ChipFault> {
        T::advance_counter(self)
    }
}

/// Locks `mutex` even if a thread panicked holding it: the drivers' shared state is plain
/// readings that a panic cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
