//! `[cartridge]`: a cartridge's run time and stroke budgets and the device key file.

use std::path::PathBuf;

use serde::Deserialize;

/// `[cartridge]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartridgeConfig {
    /// `max_run_min`: run time budget of one cartridge. Default 30.
    pub max_run_min: u32,
    /// `max_strokes`: stroke budget of one cartridge. Default 300000.
    pub max_strokes: u64,
    /// `key_file`: the device key that authenticates tags; relative to `service.data_dir`.
    /// Default `device.key`.
    pub key_file: PathBuf,
}

impl Default for CartridgeConfig {
    fn default() -> Self {
        Self {
            max_run_min: 30,
            max_strokes: 300_000,
            key_file: PathBuf::from("device.key"),
        }
    }
}
