//! The analog channels of an [`Ads1115`], scanned round-robin by a background thread
//! ([`start_analog`]) so the control thread never waits on the bus: each [`AnalogChannel`]
//! reads the latest value the scanner stored.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use embedded_hal::i2c::I2c;
use needle_core::hal::{Analog, ErrorKind, ErrorType};

use super::ads1115::{ads1115_microvolts, AdcError, Ads1115};
use super::lock;
use super::worker::Worker;
use crate::config::AdcChannelConfig;

/// The latest reading of one channel, as the scanner left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    reading: Result<i32, ErrorKind>,
    at: Instant,
}

#[derive(Debug)]
struct AnalogShared {
    slots: Mutex<Vec<Option<Slot>>>,
}

/// value the scanner thread stored, never the bus, so it does not block.
///
/// A reading older than `max_age`, or a failed conversion, is an error (the controller turns
/// it into `SensorFault`).
#[derive(Debug)]
pub struct AnalogChannel {
    shared: Arc<AnalogShared>,
    index: usize,
    max_age: Duration,
    cache: Option<Slot>,
}

impl ErrorType for AnalogChannel {
    type Error = ErrorKind;
}

impl Analog for AnalogChannel {
    fn read_milli(&mut self) -> Result<i32, ErrorKind> {
        // try_lock: if the scanner holds the lock this instant, use the previous reading
        // rather than wait.
        match self.shared.slots.try_lock() {
            Ok(slots) => self.cache = slots.get(self.index).copied().flatten(),
            Err(TryLockError::Poisoned(p)) => {
                self.cache = p.into_inner().get(self.index).copied().flatten();
            }
            Err(TryLockError::WouldBlock) => {}
        }
        let slot = self.cache.ok_or(ErrorKind::Timeout)?;
        if slot.at.elapsed() > self.max_age {
            return Err(ErrorKind::Timeout);
        }
        slot.reading
    }
}

/// The thread that scans an [`Ads1115`]'s channels; dropping it stops the thread.
#[derive(Debug)]
pub struct AnalogScanner {
    _worker: Worker,
}

/// Starts scanning `channels` of `adc` round-robin on a thread named `needled-adc`, and
/// returns one [`AnalogChannel`] per channel, in order.
///
/// The first scan runs before this returns, so a missing or silent ADC is an error here, at
/// start-up, and the channels have values before the first control tick.
pub fn start_analog<I2C, const N: usize>(
    mut adc: Ads1115<I2C>,
    channels: [AdcChannelConfig; N],
    max_age: Duration,
) -> Result<(AnalogScanner, [AnalogChannel; N]), AdcError>
where
    I2C: I2c + Send + 'static,
{
    let shared = Arc::new(AnalogShared {
        slots: Mutex::new(vec![None; N]),
    });
    if let Some(e) = scan_once(&mut adc, &channels, &shared) {
        return Err(e);
    }
    let worker = {
        let shared = Arc::clone(&shared);
        Worker::spawn("needled-adc", move |stop| {
            while !stop.load(Ordering::Relaxed) {
                if scan_once(&mut adc, &channels, &shared).is_some() {
                    // Do not spin on a dead bus; the stale readings fault the controller.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
        .map_err(|e| AdcError::Thread(e.to_string()))?
    };
    // Start from the first scan's readings, so a reader never sees "no value yet".
    let first = lock(&shared.slots).clone();
    let readers = std::array::from_fn(|index| AnalogChannel {
        shared: Arc::clone(&shared),
        index,
        max_age,
        cache: first.get(index).copied().flatten(),
    });
    Ok((AnalogScanner { _worker: worker }, readers))
}

/// Converts every channel once and stores the readings; returns the first error.
fn scan_once<I2C: I2c>(
    adc: &mut Ads1115<I2C>,
    channels: &[AdcChannelConfig],
    shared: &AnalogShared,
) -> Option<AdcError> {
    let mut first_error = None;
    for (index, ch) in channels.iter().enumerate() {
        let reading = adc.read_single(ch.input, ch.full_scale_mv).and_then(|raw| {
            ch.milli_at_microvolts(ads1115_microvolts(raw, ch.full_scale_mv))
                .ok_or_else(|| AdcError::Setting("reading does not fit in i32".into()))
        });
        let stored = reading.as_ref().map(|v| *v).map_err(|e| match e {
            AdcError::Setting(_) => ErrorKind::OutOfRange,
            other => other.kind(),
        });
        if let (Err(e), None) = (reading, &first_error) {
            first_error = Some(e);
        }
        if let Some(slot) = lock(&shared.slots).get_mut(index) {
            *slot = Some(Slot {
                reading: stored,
                at: Instant::now(),
            });
        }
    }
    first_error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::fakes::fake_ads;

    fn channel(input: u8, milli_per_volt: i32, offset_milli: i32) -> AdcChannelConfig {
        AdcChannelConfig {
            input,
            full_scale_mv: 4_096,
            milli_per_volt,
            offset_milli,
        }
    }

    #[test]
    fn analog_channels_are_scaled_and_refreshed_by_the_scanner() {
        // 1 V on AIN0 at 2000 mA/V; 0.75 V on AIN1 as a TMP36 (10 mV/degC, 500 mV at 0 degC);
        // 1.2 V on AIN2 behind an 11:1 divider.
        let counts = |mv: i64| i16::try_from(mv * 32_768 / 4_096).unwrap();
        let bus = fake_ads([counts(1_000), counts(750), counts(1_200), 0]);
        let adc = Ads1115::new(bus.clone(), 0x48, 860).unwrap();
        let (scanner, [mut current, mut temperature, mut supply]) = start_analog(
            adc,
            [
                channel(0, 2_000, 0),
                channel(1, 100_000, -50_000),
                channel(2, 11_000, 0),
            ],
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(current.read_milli(), Ok(2_000));
        assert_eq!(temperature.read_milli(), Ok(25_000));
        assert_eq!(supply.read_milli(), Ok(13_200));

        bus.0.lock().unwrap().inputs[0] = counts(500);
        let deadline = Instant::now() + Duration::from_secs(2);
        while current.read_milli() != Ok(1_000) {
            assert!(Instant::now() < deadline, "scanner did not refresh");
            std::thread::sleep(Duration::from_millis(2));
        }

        // The ADC goes away: readings fail (NACK -> Disconnected) or go stale.
        bus.0.lock().unwrap().present = false;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match supply.read_milli() {
                Err(ErrorKind::Disconnected | ErrorKind::Timeout) => break,
                _ => assert!(Instant::now() < deadline, "lost ADC not reported"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(scanner);
    }

    #[test]
    fn analog_start_fails_at_once_without_an_adc() {
        let bus = fake_ads([0; 4]);
        bus.0.lock().unwrap().present = false;
        let adc = Ads1115::new(bus, 0x48, 860).unwrap();
        let err = start_analog(adc, [channel(0, 1_000, 0)], Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected);
    }

    #[test]
    fn stale_analog_reading_is_a_timeout() {
        let shared = Arc::new(AnalogShared {
            slots: Mutex::new(vec![Some(Slot {
                reading: Ok(5),
                at: Instant::now(),
            })]),
        });
        let mut ch = AnalogChannel {
            shared,
            index: 0,
            max_age: Duration::from_millis(5),
            cache: None,
        };
        assert_eq!(ch.read_milli(), Ok(5));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(ch.read_milli(), Err(ErrorKind::Timeout));
    }
}
