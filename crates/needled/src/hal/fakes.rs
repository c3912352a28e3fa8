//! Fakes for the hardware drivers' unit tests: a bus error of a chosen kind, an ADS1115
//! register model, and the repository's example configurations.

use std::sync::{Arc, Mutex};

use embedded_hal::i2c::{self, I2c};

use super::ads1115::ADS_OS;

/// A bus error of the given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FakeI2cError(pub(crate) i2c::ErrorKind);

impl i2c::Error for FakeI2cError {
    fn kind(&self) -> i2c::ErrorKind {
        self.0
    }
}

/// A missing acknowledge of the address: no device there.
pub(crate) const NACK: FakeI2cError = FakeI2cError(i2c::ErrorKind::NoAcknowledge(
    i2c::NoAcknowledgeSource::Address,
));

/// An ADS1115 register model: a conversion takes `busy_polls` status reads.
#[derive(Debug, Default)]
pub(crate) struct FakeAds {
    pub(crate) present: bool,
    config: u16,
    busy: u32,
    pub(crate) busy_polls: u32,
    pub(crate) inputs: [i16; 4],
    /// Report this multiplexer setting instead of the one written.
    pub(crate) force_mux: Option<u16>,
    pub(crate) configs_written: Vec<u16>,
}

/// A [`FakeAds`] at address 0x48 that a test keeps a handle to while the driver owns a clone.
#[derive(Debug, Clone)]
pub(crate) struct SharedAds(pub(crate) Arc<Mutex<FakeAds>>);

impl i2c::ErrorType for SharedAds {
    type Error = FakeI2cError;
}

impl I2c for SharedAds {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), FakeI2cError> {
        let mut ads = self.0.lock().unwrap();
        if !ads.present || address != 0x48 {
            return Err(NACK);
        }
        match operations {
            [i2c::Operation::Write([0x01, hi, lo])] => {
                let config = u16::from_be_bytes([*hi, *lo]);
                ads.configs_written.push(config);
                ads.config = config & !ADS_OS;
                ads.busy = ads.busy_polls;
                if let Some(mux) = ads.force_mux {
                    ads.config = (ads.config & !(0b111 << 12)) | (mux << 12);
                }
                Ok(())
            }
            [i2c::Operation::Write([register]), i2c::Operation::Read(buf)] => {
                let value = match *register {
                    0x01 if ads.busy > 0 => {
                        ads.busy -= 1;
                        ads.config
                    }
                    0x01 => ads.config | ADS_OS,
                    0x00 => {
                        let input = usize::from((ads.config >> 12) & 0b11);
                        u16::from_be_bytes(ads.inputs[input].to_be_bytes())
                    }
                    _ => return Err(FakeI2cError(i2c::ErrorKind::Other)),
                };
                buf.copy_from_slice(&value.to_be_bytes());
                Ok(())
            }
            _ => Err(FakeI2cError(i2c::ErrorKind::Other)),
        }
    }
}

/// A present ADS1115 whose conversions take two status polls.
pub(crate) fn fake_ads(inputs: [i16; 4]) -> SharedAds {
    SharedAds(Arc::new(Mutex::new(FakeAds {
        present: true,
        busy_polls: 2,
        inputs,
        ..FakeAds::default()
    })))
}

/// The example configuration `config/<name>` of the repository, parsed.
#[cfg(any(feature = "linux", feature = "rppal"))]
pub(crate) fn example_config(name: &str) -> crate::config::Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    crate::config::parse(&text, name).unwrap()
}
