//! The jig's instruments and actuators as small traits, with the adapters that turn raw
//! hardware readings into measurements. The adapters are pure or generic over embedded-hal,
//! so they are tested here with fakes; [`super::linux`] binds them to a Pi's GPIO and I2C.

use std::collections::VecDeque;

use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;

use crate::error::{HilError, Result};

/// A GPIO edge, timestamped by the kernel (CLOCK_MONOTONIC), never by polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// When, µs on the jig's monotonic clock.
    pub at_us: u64,
    /// Rising (`true`) or falling, after the pin's active-low mark is applied: rising means
    /// "became active".
    pub rising: bool,
}

/// An input that reports its edges with kernel timestamps.
pub trait EdgeInput {
    /// Edges since the last call, oldest first.
    fn drain(&mut self) -> Result<Vec<Edge>>;
    /// The current level (active = `true`).
    fn level(&mut self) -> Result<bool>;
}

/// A relay or other on/off actuator.
pub trait Relay {
    /// Energises (`true`) or releases the relay.
    fn set(&mut self, on: bool) -> Result<()>;
}

/// The jig's monotonic clock, µs: the clock of the kernel's edge timestamps.
pub trait Clock {
    /// Now.
    fn now_us(&mut self) -> u64;
}

/// A displacement sensor reading needle depth.
pub trait Displacement {
    /// Depth, µm.
    fn read_um(&mut self) -> Result<f64>;
}

/// Writes the image of a test cartridge's tag into the fixture's EEPROM.
pub trait TagWriter {
    /// Writes `image` from address 0.
    fn write_tag(&mut self, image: &[u8]) -> Result<()>;
}

/// A relay driven by a GPIO output; `active_low` for relay boards that energise on low.
#[derive(Debug)]
pub struct PinRelay<P> {
    pin: P,
    active_low: bool,
}

impl<P: OutputPin> PinRelay<P> {
    /// A relay on `pin`, released.
    pub fn new(pin: P, active_low: bool) -> Result<Self> {
        let mut relay = Self { pin, active_low };
        relay.set(false)?;
        Ok(relay)
    }
}

impl<P: OutputPin> Relay for PinRelay<P> {
    fn set(&mut self, on: bool) -> Result<()> {
        let high = on != self.active_low;
        let result = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        result.map_err(|e| HilError::Jig(format!("relay output: {e:?}")))
    }
}

/// The optical stroke counter: one edge per stroke, timestamped by the kernel. Keeps the
/// count and the recent edges; rates come from edge timestamps, so no ±1-stroke counting
/// error and no polling error.
#[derive(Debug, Clone, Default)]
pub struct StrokeCounter {
    count: u64,
    recent: VecDeque<(u64, u64)>,
}

/// Edges kept for rate windows (about 25 s at 160 Hz).
const KEEP_EDGES: usize = 4_096;

impl StrokeCounter {
    /// Takes new edges (only rising edges are strokes).
    pub fn feed(&mut self, edges: &[Edge]) {
        for e in edges.iter().filter(|e| e.rising) {
            self.count += 1;
            self.recent.push_back((self.count, e.at_us));
            if self.recent.len() > KEEP_EDGES {
                self.recent.pop_front();
            }
        }
    }

    /// Strokes counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latest edge's count and time.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.recent.back().copied()
    }

    /// Rate of the latest stroke: one over the period between the last two edges, Hz.
    pub fn instant_rate_hz(&self) -> Option<f64> {
        let n = self.recent.len();
        if n < 2 {
            return None;
        }
        let (_, a) = self.recent[n - 2];
        let (_, b) = self.recent[n - 1];
        (b > a).then(|| 1e6 / (b - a) as f64)
    }

    /// Rate over the edges from the first one at or after `from_us` to the last one:
    /// (edges - 1) periods over the time between them. `None` with fewer than two edges.
    /// Returns (rate Hz, strokes, span s).
    pub fn rate_since(&self, from_us: u64) -> Option<(f64, u64, f64)> {
        let first = self.recent.iter().find(|(_, t)| *t >= from_us)?;
        let last = self.recent.back()?;
        let strokes = last.0 - first.0;
        let span_us = last.1.checked_sub(first.1)?;
        (strokes > 0 && span_us > 0).then(|| {
            (
                strokes as f64 * 1e6 / span_us as f64,
                strokes,
                span_us as f64 / 1e6,
            )
        })
    }
}

/// The rate uncertainty from edge timestamp jitter: each end may be off by `jitter_us`.
pub fn rate_uncertainty_hz(rate_hz: f64, span_s: f64, jitter_us: f64) -> f64 {
    if span_s <= 0.0 {
        return f64::INFINITY;
    }
    rate_hz * (2.0 * jitter_us * 1e-6) / span_s
}

/// The displacement sensor: a linear (LVDT or potentiometric) gauge on the depth stop, read
/// by an ADS1115 16-bit ADC on the jig's own I2C bus, in continuous conversion mode.
/// depth_um = (counts - zero_counts) x um_per_count, averaged over `samples` conversions.
#[derive(Debug)]
pub struct Ads1115Gauge<I> {
    i2c: I,
    address: u8,
    config_word: u16,
    calibration: GaugeCalibration,
    samples: u32,
    configured: bool,
}

/// Calibration of the gauge, measured against gauge blocks on the bench.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaugeCalibration {
    /// ADC counts at zero depth (the needle tip flush with the pen's face).
    pub zero_counts: i32,
    /// µm per ADC count (negative if the gauge reads backwards).
    pub um_per_count: f64,
}

impl GaugeCalibration {
    /// Depth of a reading, µm.
    pub fn depth_um(&self, counts: i32) -> f64 {
        f64::from(counts - self.zero_counts) * self.um_per_count
    }
}

/// ADS1115 registers.
const ADS_CONVERSION: u8 = 0x00;
const ADS_CONFIG: u8 = 0x01;

/// The ADS1115 config word: single-ended input 0-3, the programmable gain whose full scale
/// is `full_scale_mv`, continuous mode, `data_rate_sps`, comparator off.
pub fn ads1115_config(input: u8, full_scale_mv: u32, data_rate_sps: u32) -> Result<u16> {
    if input > 3 {
        return Err(HilError::Config(format!(
            "displacement.input: expected 0 to 3, got {input}"
        )));
    }
    let pga = match full_scale_mv {
        6144 => 0,
        4096 => 1,
        2048 => 2,
        1024 => 3,
        512 => 4,
        256 => 5,
        other => {
            return Err(HilError::Config(format!(
            "displacement.full_scale_mv: expected 6144, 4096, 2048, 1024, 512 or 256, got {other}"
        )))
        }
    };
    let rate = match data_rate_sps {
        8 => 0,
        16 => 1,
        32 => 2,
        64 => 3,
        128 => 4,
        250 => 5,
        475 => 6,
        860 => 7,
        other => {
            return Err(HilError::Config(format!(
            "displacement.data_rate_sps: expected 8, 16, 32, 64, 128, 250, 475 or 860, got {other}"
        )))
        }
    };
    // MUX = 0b100 + input (AINx against GND), MODE = 0 (continuous), COMP_QUE = 0b11 (off).
    let mux = 0b100 | u16::from(input);
    Ok((mux << 12) | (pga << 9) | (rate << 5) | 0b11)
}

impl<I: I2c> Ads1115Gauge<I> {
    /// A gauge on `i2c` at `address`.
    pub fn new(
        i2c: I,
        address: u8,
        config_word: u16,
        calibration: GaugeCalibration,
        samples: u32,
    ) -> Self {
        Self {
            i2c,
            address,
            config_word,
            calibration,
            samples: samples.max(1),
            configured: false,
        }
    }

    fn counts(&mut self) -> Result<i32> {
        let err = |e: I::Error| {
            HilError::Jig(format!(
                "displacement gauge (ADS1115 at {:#04x}): {e:?}",
                self.address
            ))
        };
        if !self.configured {
            let [hi, lo] = self.config_word.to_be_bytes();
            self.i2c
                .write(self.address, &[ADS_CONFIG, hi, lo])
                .map_err(err)?;
            self.configured = true;
        }
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[ADS_CONVERSION], &mut buf)
            .map_err(err)?;
        let counts = i16::from_be_bytes(buf);
        if counts == i16::MAX || counts == i16::MIN {
            return Err(HilError::Jig(format!(
                "displacement gauge saturated ({counts} counts): out of its range or disconnected"
            )));
        }
        Ok(i32::from(counts))
    }
}

impl<I: I2c> Displacement for Ads1115Gauge<I> {
    fn read_um(&mut self) -> Result<f64> {
        let mut sum = 0i64;
        for _ in 0..self.samples {
            sum += i64::from(self.counts()?);
        }
        let mean = sum as f64 / f64::from(self.samples);
        Ok((mean - f64::from(self.calibration.zero_counts)) * self.calibration.um_per_count)
    }
}

/// The test cartridge fixture's tag: a 24C02-type EEPROM the jig writes on its own I2C bus
/// while the cartridge is out, one page at a time, waiting out each write cycle.
#[derive(Debug)]
pub struct EepromTagWriter<I> {
    i2c: I,
    address: u8,
    page: usize,
    write_cycle: std::time::Duration,
}

impl<I: I2c> EepromTagWriter<I> {
    /// A writer for the EEPROM at `address` with `page` byte pages.
    pub fn new(i2c: I, address: u8, page: usize, write_cycle: std::time::Duration) -> Self {
        Self {
            i2c,
            address,
            page: page.max(1),
            write_cycle,
        }
    }
}

impl<I: I2c> TagWriter for EepromTagWriter<I> {
    fn write_tag(&mut self, image: &[u8]) -> Result<()> {
        if image.len() > 256 {
            return Err(HilError::Jig(format!(
                "tag image of {} bytes does not fit a 256-byte EEPROM",
                image.len()
            )));
        }
        for (i, chunk) in image.chunks(self.page).enumerate() {
            let start = u8::try_from(i * self.page)
                .map_err(|_| HilError::Jig("tag address overflow".into()))?;
            let mut frame = Vec::with_capacity(chunk.len() + 1);
            frame.push(start);
            frame.extend_from_slice(chunk);
            self.i2c.write(self.address, &frame).map_err(|e| {
                HilError::Jig(format!("tag EEPROM at {:#04x}: {e:?}", self.address))
            })?;
            std::thread::sleep(self.write_cycle);
        }
        // Read back: a tag that did not take would make every cartridge scenario meaningless.
        let mut back = vec![0u8; image.len()];
        self.i2c
            .write_read(self.address, &[0], &mut back)
            .map_err(|e| HilError::Jig(format!("tag EEPROM read-back: {e:?}")))?;
        if back != image {
            return Err(HilError::Jig(
                "tag EEPROM read-back differs from what was written".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{
        Mock as PinMock, State as PinState, Transaction as PinTx,
    };
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};

    fn rising(at_us: u64) -> Edge {
        Edge {
            at_us,
            rising: true,
        }
    }

    #[test]
    fn stroke_counter_rate_comes_from_edge_timestamps() {
        let mut c = StrokeCounter::default();
        // 120 Hz: 8333.33 µs per stroke; falling edges are not strokes.
        let edges: Vec<Edge> = (0..=120)
            .map(|i| rising(1_000_000 + (i as f64 * 1e6 / 120.0).round() as u64))
            .collect();
        c.feed(&edges);
        c.feed(&[Edge {
            at_us: 2_100_000,
            rising: false,
        }]);
        assert_eq!(c.count(), 121);
        let (rate, strokes, span) = c.rate_since(1_000_000).unwrap();
        assert_eq!(strokes, 120);
        assert!((rate - 120.0).abs() < 1e-3, "{rate}");
        assert!((span - 1.0).abs() < 1e-6);
        assert!((c.instant_rate_hz().unwrap() - 120.0).abs() < 0.02);
        // Only edges at or after the start of the window count.
        let (_, strokes, _) = c.rate_since(1_500_000).unwrap();
        assert_eq!(strokes, 60);
        assert!(c.rate_since(3_000_000).is_none());
    }

    #[test]
    fn stroke_counter_needs_two_edges_and_keeps_a_bounded_history() {
        let mut c = StrokeCounter::default();
        assert!(c.instant_rate_hz().is_none());
        c.feed(&[rising(10)]);
        assert!(c.rate_since(0).is_none() && c.instant_rate_hz().is_none());
        let many: Vec<Edge> = (0..10_000).map(|i| rising(20 + i * 100)).collect();
        c.feed(&many);
        assert_eq!(c.count(), 10_001);
        assert!(c.recent.len() <= KEEP_EDGES);
        assert_eq!(c.last().map(|l| l.0), Some(10_001));
    }

    #[test]
    fn rate_uncertainty_shrinks_with_the_window() {
        let u1 = rate_uncertainty_hz(120.0, 1.0, 20.0);
        assert!((u1 - 0.0048).abs() < 1e-9);
        assert!(rate_uncertainty_hz(120.0, 2.0, 20.0) < u1);
        assert!(rate_uncertainty_hz(120.0, 0.0, 20.0).is_infinite());
    }

    #[test]
    fn ads1115_config_word_matches_the_datasheet() {
        // AIN0 vs GND, +-4.096 V, 128 SPS, continuous, comparator off: 0x4283.
        assert_eq!(ads1115_config(0, 4096, 128).unwrap(), 0x4283);
        // AIN3, +-2.048 V, 860 SPS: MUX 111, PGA 010, DR 111.
        assert_eq!(ads1115_config(3, 2048, 860).unwrap(), 0x74E3);
        assert!(ads1115_config(4, 4096, 128).is_err());
        assert!(ads1115_config(0, 5000, 128)
            .unwrap_err()
            .to_string()
            .contains("full_scale_mv"));
        assert!(ads1115_config(0, 4096, 100)
            .unwrap_err()
            .to_string()
            .contains("data_rate_sps"));
    }

    #[test]
    fn gauge_configures_once_then_averages_calibrated_readings() {
        let config = ads1115_config(0, 4096, 860).unwrap();
        let [hi, lo] = config.to_be_bytes();
        let expectations = [
            I2cTx::write(0x48, vec![0x01, hi, lo]),
            I2cTx::write_read(0x48, vec![0x00], 1_100i16.to_be_bytes().to_vec()),
            I2cTx::write_read(0x48, vec![0x00], 1_102i16.to_be_bytes().to_vec()),
            I2cTx::write_read(0x48, vec![0x00], 1_101i16.to_be_bytes().to_vec()),
            I2cTx::write_read(0x48, vec![0x00], 1_101i16.to_be_bytes().to_vec()),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let cal = GaugeCalibration {
            zero_counts: 100,
            um_per_count: 0.5,
        };
        let mut gauge = Ads1115Gauge::new(i2c.clone(), 0x48, config, cal, 2);
        assert!((gauge.read_um().unwrap() - 500.5).abs() < 1e-9);
        assert!((gauge.read_um().unwrap() - 500.5).abs() < 1e-9);
        i2c.done();
        assert_eq!(cal.depth_um(2_100), 1_000.0);
    }

    #[test]
    fn saturated_gauge_is_an_error_not_a_depth() {
        let config = ads1115_config(0, 4096, 860).unwrap();
        let [hi, lo] = config.to_be_bytes();
        let expectations = [
            I2cTx::write(0x48, vec![0x01, hi, lo]),
            I2cTx::write_read(0x48, vec![0x00], i16::MAX.to_be_bytes().to_vec()),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut gauge = Ads1115Gauge::new(
            i2c.clone(),
            0x48,
            config,
            GaugeCalibration {
                zero_counts: 0,
                um_per_count: 1.0,
            },
            1,
        );
        assert!(gauge
            .read_um()
            .unwrap_err()
            .to_string()
            .contains("saturated"));
        i2c.done();
    }

    #[test]
    fn active_low_relay_starts_released_and_inverts() {
        let expectations = [
            PinTx::set(PinState::High),
            PinTx::set(PinState::Low),
            PinTx::set(PinState::High),
        ];
        let mut pin = PinMock::new(&expectations);
        let mut relay = PinRelay::new(pin.clone(), true).unwrap();
        relay.set(true).unwrap();
        relay.set(false).unwrap();
        pin.done();
    }

    #[test]
    fn tag_writer_writes_pages_and_verifies() {
        let image: Vec<u8> = (1..=10).collect();
        let expectations = [
            I2cTx::write(0x50, vec![0, 1, 2, 3, 4, 5, 6, 7, 8]),
            I2cTx::write(0x50, vec![8, 9, 10]),
            I2cTx::write_read(0x50, vec![0], image.clone()),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut w = EepromTagWriter::new(i2c.clone(), 0x50, 8, std::time::Duration::ZERO);
        w.write_tag(&image).unwrap();
        i2c.done();

        let mut bad = image.clone();
        bad[3] = 0;
        let expectations = [
            I2cTx::write(0x50, vec![0, 1, 2, 3, 4, 5, 6, 7, 8]),
            I2cTx::write(0x50, vec![8, 9, 10]),
            I2cTx::write_read(0x50, vec![0], bad),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut w = EepromTagWriter::new(i2c.clone(), 0x50, 8, std::time::Duration::ZERO);
        assert!(w
            .write_tag(&image)
            .unwrap_err()
            .to_string()
            .contains("read-back"));
        i2c.done();
    }
}
