//! The service configuration: a TOML file, deserialized into typed sections and validated.
//!
//! Every key carries its unit in its name (`max_depth_um`, `ramp_time_ms`, `rate_min_hz`),
//! as Klipper's configuration does. Every section and key is optional except where a rig must
//! be described explicitly (pin maps, ADC calibration); defaults are the core's defaults and
//! the clinical defaults of the domain brief. Unknown keys are refused, so a typo never turns
//! into a silently ignored setting.
//!
//! Every error names the file, the line and the key, and what was expected:
//!
//! ```text
//! config/default.toml:12: key 'depth.max_depth_um': expected 1 to 5000, got 9000
//! ```
//!
//! Errors found while deserializing carry toml's span and the key path `serde_path_to_error`
//! tracked; errors found by [`Config::validate`] name a key path, whose line comes from the
//! spans of `toml_edit`'s parse of the same text.
//!
//! `config/default.toml` documents every key for operators.
//!
//! This file is a map: one private module per group of sections with their defaults
//! (`service.rs`; `control.rs` with the core's `[stroke]`, `[depth]` and `[safety]`;
//! `session.rs` with `[areas]`; `cartridge.rs`; `hardware.rs` with `pins.rs` and `adc.rs`),
//! then how text becomes a [`Config`] (`load.rs`, `spans.rs`, `error.rs`), the rules every
//! value must follow (`validate.rs`, `validate_hardware.rs`) and the conversion to
//! needle-core's configuration (`to_core.rs`). Every public item is re-exported here:
//! `needled::config::PinSpec` is its path.
//!
//! ```
//! let config = needled::config::parse("[depth]\nmax_depth_um = 3000\n", "example.toml").unwrap();
//! assert_eq!(config.depth.max_depth_um, 3000);
//! let err = needled::config::parse("[depth]\nmax_depth_um = 9000\n", "example.toml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "example.toml:2: key 'depth.max_depth_um': expected 1 to 5000, got 9000"
//! );
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

mod adc;
mod cartridge;
mod control;
mod error;
mod hardware;
mod load;
mod pins;
mod service;
mod session;
mod spans;
mod to_core;
mod validate;
mod validate_hardware;

pub use adc::{AdcChannelConfig, AdcConfig, ADS1115_DATA_RATES_SPS, ADS1115_FULL_SCALES_MV};
pub use cartridge::CartridgeConfig;
pub use control::{ControlConfig, DepthSection, SafetySection, StrokeSection};
pub use error::{ConfigError, Invalid};
pub use hardware::{
    Atecc608Config, Backend, CartridgeChipKind, HardwareConfig, LinuxConfig, RppalConfig, SimConfig,
};
pub use load::{load, load_hardware, parse};
pub use pins::{PinMap, PinRole, PinSpec, Pull};
pub use service::{
    is_placeholder_token, LogFormat, Role, ServiceConfig, TlsConfig, TokenConfig, EXAMPLE_TOKENS,
    MIN_TOKEN_LEN, PLACEHOLDER_TOKEN_PREFIX,
};
pub use session::{
    default_areas, default_checklist, AreaConfig, ChecklistItem, SessionConfig, DEFAULT_POST_CARE,
};

#[cfg(test)]
mod tests;

/// The whole service configuration. An empty file gives [`Config::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[service]`: network, data directory, logs, API tokens.
    pub service: ServiceConfig,
    /// `[control]`: the real-time control thread.
    pub control: ControlConfig,
    /// `[stroke]`: the stroke motor and its rate loop.
    pub stroke: StrokeSection,
    /// `[depth]`: the depth axis.
    pub depth: DepthSection,
    /// `[safety]`: the supervisor's limits.
    pub safety: SafetySection,
    /// `[areas]`: treatment areas and their depth ceilings. If present in the file it replaces
    /// the whole default list.
    pub areas: BTreeMap<String, AreaConfig>,
    /// `[session]`: treatment session rules.
    pub session: SessionConfig,
    /// `[cartridge]`: cartridge limits, trusted factory keys, the chip requirement.
    pub cartridge: CartridgeConfig,
    /// `[hardware]`: which backend drives the rig, and its pin map.
    pub hardware: HardwareConfig,
    /// `[sim]`: the simulated rig.
    pub sim: SimConfig,
    /// `[link]`: the serial link to a pen MCU (with `hardware.backend = "link"`).
    pub link: crate::hal::link::LinkConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service: ServiceConfig::default(),
            control: ControlConfig::default(),
            stroke: StrokeSection::default(),
            depth: DepthSection::default(),
            safety: SafetySection::default(),
            areas: default_areas(),
            session: SessionConfig::default(),
            cartridge: CartridgeConfig::default(),
            hardware: HardwareConfig::default(),
            sim: SimConfig::default(),
            link: crate::hal::link::LinkConfig::default(),
        }
    }
}

impl Config {
    /// Things that are allowed but deserve a line in the log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        // Placeholder tokens, once warned about here, are refused at load.
        let mut out = Vec::new();
        if !self.cartridge.chip_required {
            out.push(
                "cartridge.chip_required is false: tag signatures are checked, but a copied tag \
                 or a cartridge used on another pen is not detected"
                    .to_owned(),
            );
        }
        out
    }
}
