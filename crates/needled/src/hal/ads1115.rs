//! The TI ADS1115 16-bit ADC for motor current, temperature and supply: [`Ads1115`] converts
//! one single-ended input at a time; [`super::analog`] scans it from a background thread.

use std::fmt;
use std::time::{Duration, Instant};

use embedded_hal::i2c::{self, I2c};
use needle_core::hal::ErrorKind;

use crate::config::{ADS1115_DATA_RATES_SPS, ADS1115_FULL_SCALES_MV};

const ADS_REG_CONVERSION: u8 = 0x00;
const ADS_REG_CONFIG: u8 = 0x01;
/// Config register: write 1 to start a single conversion; reads 0 while converting.
pub(crate) const ADS_OS: u16 = 1 << 15;
const ADS_MODE_SINGLE: u16 = 1 << 8;
const ADS_COMP_DISABLE: u16 = 0b11;

/// An error of the ADS1115.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdcError {
    /// The bus transaction failed.
    Bus {
        /// embedded-hal's kind of the failure.
        kind: i2c::ErrorKind,
        /// The bus driver's error, for the log.
        detail: String,
    },
    /// The conversion did not finish in time.
    Timeout,
    /// The finished conversion is of another input than the one started.
    WrongInput {
        /// The input started.
        expected: u8,
        /// The multiplexer setting read back.
        got: u16,
    },
    /// A setting the ADS1115 does not have.
    Setting(String),
    /// The scanner thread could not be started.
    Thread(String),
}

impl AdcError {
    fn bus<E: i2c::Error>(e: E) -> Self {
        AdcError::Bus {
            kind: e.kind(),
            detail: format!("{e:?}"),
        }
    }

    /// The kind of this error for the controller.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AdcError::Bus {
                kind: i2c::ErrorKind::NoAcknowledge(_),
                ..
            } => ErrorKind::Disconnected,
            AdcError::Timeout => ErrorKind::Timeout,
            AdcError::WrongInput { .. } => ErrorKind::OutOfRange,
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for AdcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdcError::Bus { kind, detail } => write!(f, "I2C error ({kind}): {detail}"),
            AdcError::Timeout => f.write_str("the conversion did not finish in time"),
            AdcError::WrongInput { expected, got } => write!(
                f,
                "conversion of input AIN{expected} read back multiplexer setting {got:#05b}"
            ),
            AdcError::Setting(s) => f.write_str(s),
            AdcError::Thread(s) => write!(f, "cannot start the ADC thread: {s}"),
        }
    }
}

impl std::error::Error for AdcError {}

/// A TI ADS1115 16-bit ADC on an I2C bus, read in single-shot mode, one single-ended input
/// (AINx against GND) at a time.
#[derive(Debug)]
pub struct Ads1115<I2C> {
    i2c: I2C,
    address: u8,
    data_rate_bits: u16,
    conversion_time: Duration,
}

impl<I2C: I2c> Ads1115<I2C> {
    /// An ADS1115 at 7-bit `address` converting at `data_rate_sps` samples per second.
    pub fn new(i2c: I2C, address: u8, data_rate_sps: u32) -> Result<Self, AdcError> {
        let index = ADS1115_DATA_RATES_SPS
            .iter()
            .position(|r| *r == data_rate_sps)
            .ok_or_else(|| {
                AdcError::Setting(format!(
                    "data rate {data_rate_sps} SPS: expected one of {ADS1115_DATA_RATES_SPS:?}"
                ))
            })?;
        // The internal oscillator may run 10 % slow.
        let conversion_us = 1_000_000 / u64::from(data_rate_sps) * 11 / 10 + 20;
        Ok(Self {
            i2c,
            address,
            data_rate_bits: (index as u16) << 5,
            conversion_time: Duration::from_micros(conversion_us),
        })
    }

    /// Converts `input` (0 to 3) with the gain of `full_scale_mv`; blocks for one conversion
    /// (1.2 ms at 860 SPS). Returns the raw signed count.
    pub fn read_single(&mut self, input: u8, full_scale_mv: u32) -> Result<i16, AdcError> {
        if input > 3 {
            return Err(AdcError::Setting(format!("input {input}: expected 0 to 3")));
        }
        let pga = ADS1115_FULL_SCALES_MV
            .iter()
            .position(|fs| *fs == full_scale_mv)
            .ok_or_else(|| {
                AdcError::Setting(format!(
                    "full scale {full_scale_mv} mV: expected one of {ADS1115_FULL_SCALES_MV:?}"
                ))
            })? as u16;
        let mux = 0b100 | u16::from(input);
        let config = ADS_OS
            | (mux << 12)
            | (pga << 9)
            | ADS_MODE_SINGLE
            | self.data_rate_bits
            | ADS_COMP_DISABLE;
        let [hi, lo] = config.to_be_bytes();
        self.i2c
            .write(self.address, &[ADS_REG_CONFIG, hi, lo])
            .map_err(AdcError::bus)?;
        std::thread::sleep(self.conversion_time);
        let deadline = Instant::now() + self.conversion_time * 4 + Duration::from_millis(5);
        loop {
            let status = self.read_register(ADS_REG_CONFIG)?;
            if status & ADS_OS != 0 {
                let got = (status >> 12) & 0b111;
                if got != mux {
                    return Err(AdcError::WrongInput {
                        expected: input,
                        got,
                    });
                }
                let raw = self.read_register(ADS_REG_CONVERSION)?;
                return Ok(i16::from_be_bytes(raw.to_be_bytes()));
            }
            if Instant::now() > deadline {
                return Err(AdcError::Timeout);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn read_register(&mut self, register: u8) -> Result<u16, AdcError> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[register], &mut buf)
            .map_err(AdcError::bus)?;
        Ok(u16::from_be_bytes(buf))
    }

    /// The bus, back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// Microvolts at the input for a raw count at `full_scale_mv`.
pub fn ads1115_microvolts(raw: i16, full_scale_mv: u32) -> i64 {
    i64::from(raw) * i64::from(full_scale_mv) * 1_000 / 32_768
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fakes::fake_ads;

    #[test]
    fn ads1115_single_shot_writes_the_config_and_waits_for_the_conversion() {
        let bus = fake_ads([0, 0, 16_384, 0]);
        let mut adc = Ads1115::new(bus.clone(), 0x48, 860).unwrap();
        assert_eq!(adc.read_single(2, 4_096), Ok(16_384));
        // OS | AIN2 vs GND | +-4.096 V | single shot | 860 SPS | comparator off.
        assert_eq!(bus.0.lock().unwrap().configs_written, vec![0xE3E3]);
        assert_eq!(ads1115_microvolts(16_384, 4_096), 2_048_000);
        assert_eq!(ads1115_microvolts(-32_768, 256), -256_000);
    }

    #[test]
    fn ads1115_refuses_a_conversion_of_another_input_and_bad_settings() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().force_mux = Some(0b101);
        let mut adc = Ads1115::new(bus, 0x48, 860).unwrap();
        assert_eq!(
            adc.read_single(0, 4_096),
            Err(AdcError::WrongInput {
                expected: 0,
                got: 0b101
            })
        );
        assert!(matches!(
            adc.read_single(4, 4_096),
            Err(AdcError::Setting(_))
        ));
        assert!(matches!(
            adc.read_single(0, 5_000),
            Err(AdcError::Setting(_))
        ));
        assert!(Ads1115::new(fake_ads([0; 4]), 0x48, 100).is_err());
    }

    #[test]
    fn ads1115_conversion_that_never_finishes_times_out() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().busy_polls = u32::MAX;
        let mut adc = Ads1115::new(bus, 0x48, 860).unwrap();
        assert_eq!(adc.read_single(0, 4_096), Err(AdcError::Timeout));
        assert_eq!(AdcError::Timeout.kind(), ErrorKind::Timeout);
    }
}
