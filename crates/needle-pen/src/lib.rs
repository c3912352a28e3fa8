//! needle-pen: the pen's firmware, between needle-link and needle-core.
//!
//! [`Pen`] is the whole of the firmware's logic and is `#![no_std]`: it feeds received bytes
//! to the link, applies the host's configuration and commands to the controller exactly once
//! (each command the controller accepts refreshes its dead-man timer), ticks the controller,
//! queues telemetry, and relays the host's requests to the cartridge's chip ([`Chip`]). A
//! `main` owns the clock, the serial port and the hardware; the one here
//! (`src/bin/needle-pen.rs`, feature `host`) runs it against needle-sim over a
//! pseudo-terminal. Porting to a microcontroller is a HAL and a `main` (see the README).
//!
//! ```
//! # use needle_core::units::Micros;
//! # fn board() -> needle_sim::SimHardware { needle_sim::SimRig::new(Default::default()).hardware() }
//! use needle_link::PenId;
//! use needle_pen::Pen;
//! let mut pen = Pen::new(board(), PenId(*b"PEN00001"));
//! pen.receive(&[0x00, 0x13, 0x37], Micros(0)); // noise is counted and skipped
//! pen.tick(Micros(1_000));
//! assert!(pen.controller().is_none()); // not configured by a host yet
//! assert_eq!(pen.link().counters().frames, 0);
//! ```

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

mod chip;
mod pen;

pub use chip::{Chip, NoChip};
pub use pen::{Pen, COUNTERS_EVERY};
