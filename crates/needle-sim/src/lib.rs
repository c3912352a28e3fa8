//! needle-sim: the simulated needle pen rig.
//!
//! A deterministic rig with a virtual clock that implements every trait the core uses: a DC
//! stroke motor with inertia, friction and skin load turning a cam (one stroke a revolution,
//! hall edges timestamped like a timer capture), current and heating; a depth stepper on a
//! lead screw with lash and missed steps under overload; home, cartridge, E-stop and pedal
//! switches; supply voltage. Faults are injected by API, now or at a chosen time. The rig
//! reports its physical [`Truth`] apart from what its sensors say, so tests judge the
//! controller by the truth.
//!
//! ```
//! use needle_core::{Command, Controller, ControllerConfig, State};
//! use needle_core::units::Micros;
//! use needle_sim::SimRig;
//!
//! let rig = SimRig::new(Default::default());
//! let mut ctrl = Controller::new(rig.hardware(), ControllerConfig::default()).unwrap();
//! ctrl.tick(rig.now());
//! ctrl.handle(Command::Home).unwrap();
//! rig.run(&mut ctrl, Micros::from_millis(3_000), |c| c.state() == State::Idle);
//! assert_eq!(ctrl.state(), State::Idle);
//! assert!(rig.truth().depth_um.abs() < 2.5); // within a step of the switch
//! ```

#[cfg(feature = "chip")]
pub mod chip;
mod hardware;
mod physics;
mod rig;
mod ticks;

pub use hardware::{SimError, SimHardware, SimPart};
pub use physics::{Injection, Part, SimParams, Truth, World, PHYSICS_STEP};
pub use rig::SimRig;
pub use ticks::{TickLog, TICKS_KEPT};
