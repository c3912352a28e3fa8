//! needle-core: the control core of the needle pen.
//!
//! `#![no_std]`, no heap, no panics on any input. The host (or, later, a microcontroller's
//! main loop) calls [`Controller::tick`] at a fixed period and [`Controller::handle`] with
//! host commands; the controller reads its inputs through [`hal::Hardware`], decides, and
//! writes its outputs. It never blocks, allocates or sleeps.
//!
//! - [`units`]: integer units with names (`Micrometers`, `MilliHertz`, `Micros`...).
//! - [`hal`]: the hardware the core needs, on embedded-hal 1.0 plus two small own traits.
//! - [`config`]: `StrokeConfig`, `DepthConfig`, `SafetyConfig`, each with a `Default`.
//! - [`stroke`]: the stroke rate loop (soft start, PI with anti-windup, stall detection).
//! - [`depth`]: the depth axis (homing, trapezoid moves, backlash, soft limits).
//! - [`safety`]: the supervisor's rules (faults, causes, interlocks).
//! - [`controller`]: [`Controller`], which ties them to the pins.
//! - [`protocol`]: `Command`, `Telemetry`, `Fault`, `State`, serde-ready for a serial link.

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

pub mod config;
pub mod controller;
pub mod depth;
pub mod hal;
pub mod protocol;
pub mod safety;
pub mod stroke;
pub mod units;

pub use config::{ControllerConfig, DepthConfig, SafetyConfig, StrokeConfig};
pub use controller::Controller;
pub use protocol::{
    ArmingLimit, Command, Fault, Faults, Interlock, Interlocks, Rejected, State, Telemetry,
};
