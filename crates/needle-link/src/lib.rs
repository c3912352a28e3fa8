//! needle-link: the serial link between the host (needled on the Raspberry Pi) and the pen's
//! microcontroller running needle-core, after the split Klipper makes between klippy and its
//! MCU firmware.
//!
//! `#![no_std]`, no heap: both ends are plain state machines fed one byte at a time, which
//! queue their frames for the caller to write to the serial port.
//!
//! - [`frame`]: Klipper's framing: a length, a sequence number, the payload, a CRC-32C and
//!   a `0x7E` sync byte, with no byte stuffing; a receiver that loses its place discards up
//!   to the next sync byte, so it resynchronises after noise.
//! - [`telemetry`]: the compact layout of the telemetry sent every pen tick.
//! - [`message`]: what travels inside: the handshake (protocol version, pen identity,
//!   [`config_hash`]), numbered commands and their verdicts, telemetry, clock probes.
//! - [`pen`]: [`PenLink`], the pen's end: in order, exactly once, verdicts kept for repeats.
//! - [`host`]: [`HostLink`], the host's end: a bounded window with go-back-N retransmission,
//!   newest-wins telemetry.
//! - [`clock`]: [`ClockSync`], the pen's clock on the host's, fitted from sync probes.
//! - [`crc32c`]: the frames' CRC-32C, slice-by-8.
//! - [`counters`]: [`Counters`], every frame received and every rejection by reason.
//! - [`queue`]: [`queue::TxQueue`], the bytes waiting for the serial port.
//!
//! The pen's dead-man is the core's own, refreshed by each command the controller accepts
//! (needle-pen), so when the host dies, hangs or the line is cut, the core faults
//! `HostTimeout` within `host_timeout` and stops the needles. A [`pen::Received`] is only
//! ever a valid frame from an identified host of our version.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod clock;
pub mod counters;
pub mod crc32c;
pub mod frame;
mod hash;
pub mod host;
pub mod message;
pub mod pen;
pub mod queue;
pub mod telemetry;

pub use clock::ClockSync;
pub use counters::Counters;
pub use hash::config_hash;
pub use host::{FromPen, HostLink, SendError};
pub use message::{
    ChipAnswer, ChipCommand, ConfigRefusal, HostMessage, Outcome, PenId, PenMessage, Reliable,
    TagImage, PROTOCOL_VERSION, TAG_BYTES, TELEMETRY_TAG,
};
pub use pen::{PenLink, Received};
