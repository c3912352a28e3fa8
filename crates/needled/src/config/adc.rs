//! The ADS1115 converter of the GPIO backends: its address, rate and each channel's
//! calibration.

use serde::Deserialize;

/// An ADS1115 analog-to-digital converter reading motor current, temperature and supply.
///
/// Its channels need an explicit calibration: a wrong default scale could hide an
/// over-current.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcConfig {
    /// `address`: 7-bit I2C address, 0x48 to 0x4B. Default 0x48.
    #[serde(default = "default_adc_address")]
    pub address: u8,
    /// `data_rate_sps`: conversions per second: 8, 16, 32, 64, 128, 250, 475 or 860 (default).
    #[serde(default = "default_adc_data_rate_sps")]
    pub data_rate_sps: u32,
    /// `max_age_ms`: a reading older than this is a sensor fault. Default 50.
    #[serde(default = "default_adc_max_age_ms")]
    pub max_age_ms: u32,
    /// `[...adc.current]`: motor current, mA.
    pub current: AdcChannelConfig,
    /// `[...adc.temperature]`: motor or driver temperature, m°C.
    pub temperature: AdcChannelConfig,
    /// `[...adc.supply]`: supply voltage, mV.
    pub supply: AdcChannelConfig,
}

impl AdcConfig {
    /// The channels in the order of the core's parts: current, temperature, supply.
    pub fn channels(&self) -> [AdcChannelConfig; 3] {
        [self.current, self.temperature, self.supply]
    }
}

fn default_adc_address() -> u8 {
    0x48
}
fn default_adc_data_rate_sps() -> u32 {
    860
}
fn default_adc_max_age_ms() -> u32 {
    50
}

/// One single-ended ADS1115 input and its calibration:
/// `reading (thousandths of the unit) = volts at the input * milli_per_volt + offset_milli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcChannelConfig {
    /// `input`: AIN0 to AIN3 (0 to 3), measured against GND.
    pub input: u8,
    /// `full_scale_mv`: programmable gain range: 6144, 4096 (default), 2048, 1024, 512 or 256.
    #[serde(default = "default_full_scale_mv")]
    pub full_scale_mv: u32,
    /// `milli_per_volt`: thousandths of the channel's unit per volt at the input (mA/V,
    /// m°C/V, mV/V); may be negative.
    pub milli_per_volt: i32,
    /// `offset_milli`: reading at 0 V, in thousandths of the unit. Default 0.
    #[serde(default)]
    pub offset_milli: i32,
}

fn default_full_scale_mv() -> u32 {
    4_096
}

impl AdcChannelConfig {
    /// The reading at `microvolts` at the input, in thousandths of the channel's unit, if it
    /// fits in an `i32`.
    pub fn milli_at_microvolts(&self, microvolts: i64) -> Option<i32> {
        let scaled = i128::from(microvolts) * i128::from(self.milli_per_volt) / 1_000_000;
        i32::try_from(scaled + i128::from(self.offset_milli)).ok()
    }

    /// The lowest and highest readings the channel can produce (0 V to full scale).
    pub fn reading_range(&self) -> (i64, i64) {
        let at = |uv: i64| {
            i64::from(self.offset_milli) + uv * i64::from(self.milli_per_volt) / 1_000_000
        };
        let a = at(0);
        let b = at(i64::from(self.full_scale_mv) * 1_000);
        (a.min(b), a.max(b))
    }
}

/// ADS1115 full-scale ranges, mV.
pub const ADS1115_FULL_SCALES_MV: [u32; 6] = [6_144, 4_096, 2_048, 1_024, 512, 256];
/// ADS1115 data rates, samples per second.
pub const ADS1115_DATA_RATES_SPS: [u32; 8] = [8, 16, 32, 64, 128, 250, 475, 860];
