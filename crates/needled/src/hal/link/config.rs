//! `[link]` and the handshake's refusals.

use std::path::PathBuf;

use nix::sys::termios::BaudRate;
use serde::Deserialize;

/// `[link]`: the serial link to a pen MCU (with `hardware.backend = "link"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// `device`: the pen's serial device, e.g. `/dev/ttyACM0` (USB-CDC) or a pty's path.
    pub device: PathBuf,
    /// `baud`: line rate (ignored by USB-CDC and ptys). Default 1,000,000.
    pub baud: u32,
    /// `retransmit_ms`: resend unanswered commands after this long. Default 20.
    pub retransmit_ms: u32,
    /// `sync_ms`: clock probe period, 1 to 1,000. Default 100 (Klipper probes about once a
    /// second). The probes feed the clock fit only: the pen's dead-man is refreshed by the
    /// commands its controller accepts.
    pub sync_ms: u32,
    /// `lost_after_ms`: no frame from the pen for this long is a lost link. Default 100.
    pub lost_after_ms: u32,
    /// `telemetry_every`: the pen sends telemetry every this many ticks. Default 1 (1 kHz,
    /// for 1,000,000 baud); use 10 at 115,200 baud.
    pub telemetry_every: u16,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::new(),
            baud: 1_000_000,
            retransmit_ms: 20,
            sync_ms: 100,
            lost_after_ms: 100,
            telemetry_every: 1,
        }
    }
}

/// The baud rates the link accepts.
pub fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        1_000_000 => BaudRate::B1000000,
        2_000_000 => BaudRate::B2000000,
        _ => return None,
    })
}

/// Why the host will not drive the pen on the other end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// The pen speaks another protocol version.
    #[error("the pen speaks link protocol version {pen}, this needled version {host}: update one of them")]
    Version {
        /// The pen's.
        pen: u16,
        /// Ours.
        host: u16,
    },
    /// The pen runs another controller configuration.
    #[error(
        "the pen runs a controller configuration with hash {pen:08x}, not this needled's \
         {host:08x}: restart the pen, or fix the configuration"
    )]
    Config {
        /// The pen's.
        pen: u32,
        /// Ours.
        host: u32,
    },
    /// The pen found the configuration invalid.
    #[error("the pen refused the controller configuration as invalid")]
    Invalid,
}

impl LinkRefusal {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            LinkRefusal::Version { .. } => "version",
            LinkRefusal::Config { .. } => "config_hash",
            LinkRefusal::Invalid => "config_invalid",
        }
    }
}
