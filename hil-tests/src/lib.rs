//! hil-tests: one scenario suite for the simulated rig in CI and the real rig on a bench jig.
//!
//! A [`Rig`] is the device under test, driven only through the service's public HTTP API with
//! the tokens a jig uses. A [`Jig`] measures it with its own instruments: on the sim, the
//! physics' truth (`GET /v1/sim/truth`); on the bench, an optical stroke sensor, a motor power
//! sense input and a displacement gauge on a second Raspberry Pi. Verdicts rest on the jig's
//! measurements only, never on the controller's telemetry.
//!
//! Module map:
//! - [`rig`]: the `Rig` and `Jig` traits and what they measure.
//! - [`sim`]: `SimRig` (the real `needled` binary on the sim backend, or on the link backend
//!   driving the pen firmware over a pty: `NEEDLE_RIG=link`) and `SimJig`.
//! - [`pi`]: `PiRig`, `PiJig`, and the jig's instrument adapters (drivers behind `pi`).
//! - [`bench`](mod@bench): a rig and a jig opened from `NEEDLE_RIG` / `NEEDLE_JIG_CONFIG`,
//!   and the steps scenarios share.
//! - [`scenarios`]: the scenarios; `tests/scenarios.rs` runs each as a test.
//! - [`report`]: `target/hil-report/` (summary JSON, points CSV); `hil-report` prints it.
//! - [`config`], [`api`], [`error`]: the jig config, the HTTP client, errors.
//!
//! ```
//! // Tolerances default to the goals in BENCHMARKS.md.
//! let config = hil_tests::config::JigConfig::parse("[tolerances]\ndepth_um = 15.0\n", "jig.toml").unwrap();
//! assert_eq!(config.tolerances.depth_um, 15.0);
//! assert_eq!(config.tolerances.rate_percent, 1.0);
//! ```

pub mod api;
pub mod bench;
pub mod config;
pub mod error;
pub mod pi;
pub mod report;
pub mod rig;
pub mod scenarios;
pub mod sim;

pub use bench::Bench;
pub use error::{HilError, Result};
pub use report::{run_scenario, Recorder};
pub use rig::{Actuation, Jig, Rig, RigOptions};
