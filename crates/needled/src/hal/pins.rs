//! Digital pins as the rig wires them.
//!
//! - [`Inverted`]: a pin whose logical level is the opposite of its electrical level
//!   (Klipper's `!`), for inputs and outputs; [`electrical_level`] gives the level to claim an
//!   output at.
//! - [`HoldOutput`]: holds each level change of an output for a minimum time: STEP pulse
//!   width and DIR setup time of a stepper driver ([`spin_for`]).

use std::time::{Duration, Instant};

use embedded_hal::digital::{self, InputPin, OutputPin};

/// A pin whose logical level is the opposite of its electrical level when `inverted` is set:
/// active-low wiring (`"!17"` in the configuration), such as a normally closed E-stop or a
/// driver enable that enables at low.
///
/// For an output, build the underlying pin at the electrical level of logical low (see
/// [`electrical_level`]) so that it never passes through the active level at start.
#[derive(Debug)]
pub struct Inverted<P> {
    pin: P,
    inverted: bool,
}

impl<P> Inverted<P> {
    /// Wraps `pin`; inverts when `inverted` is true, passes through otherwise.
    pub fn new(pin: P, inverted: bool) -> Self {
        Self { pin, inverted }
    }

    /// Whether levels are inverted.
    pub fn is_inverted(&self) -> bool {
        self.inverted
    }

    /// The underlying pin.
    pub fn into_inner(self) -> P {
        self.pin
    }
}

/// The electrical level (true = high) that gives logical level `logical_high` on a pin wired
/// active-low when `active_low` is set.
pub fn electrical_level(logical_high: bool, active_low: bool) -> bool {
    logical_high != active_low
}

impl<P: digital::ErrorType> digital::ErrorType for Inverted<P> {
    type Error = P::Error;
}

impl<P: InputPin> InputPin for Inverted<P> {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        let inverted = self.inverted;
        self.pin.is_high().map(|high| high != inverted)
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.is_high().map(|high| !high)
    }
}

impl<P: OutputPin> OutputPin for Inverted<P> {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        if self.inverted {
            self.pin.set_low()
        } else {
            self.pin.set_high()
        }
    }

    fn set_low(&mut self) -> Result<(), Self::Error> {
        if self.inverted {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
    }
}

/// An output that, after each change of level, waits `hold` before returning, so the next
/// edge on this or any other pin comes at least `hold` later. Writing the level it already has
/// does nothing.
///
/// needle-core sets DIR and then pulses STEP high and low back to back within one tick; a
/// memory-mapped GPIO (rppal) would make pulses of tens of nanoseconds, shorter than stepper
/// drivers accept (A4988: 1 us, DRV8825: 1.9 us high and low, 650 ns DIR setup). Wrap STEP
/// with the pulse width and DIR with the setup time. The wait is a bounded busy-wait of a few
/// microseconds: sleeping would take far longer.
#[derive(Debug)]
pub struct HoldOutput<P> {
    pin: P,
    hold: Duration,
    level: Option<bool>,
}

impl<P> HoldOutput<P> {
    /// Wraps `pin`, whose current level is `level` (`None` if unknown).
    pub fn new(pin: P, hold: Duration, level: Option<bool>) -> Self {
        Self { pin, hold, level }
    }

    /// The underlying pin.
    pub fn into_inner(self) -> P {
        self.pin
    }
}

impl<P: OutputPin> HoldOutput<P> {
    fn set(&mut self, high: bool) -> Result<(), P::Error> {
        if self.level == Some(high) {
            return Ok(());
        }
        if high {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        self.level = Some(high);
        spin_for(self.hold);
        Ok(())
    }
}

impl<P: digital::ErrorType> digital::ErrorType for HoldOutput<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for HoldOutput<P> {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.set(true)
    }

    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.set(false)
    }
}

/// Busy-waits for `duration` (microseconds at most: a thread sleep would take far longer).
pub fn spin_for(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[derive(Debug, Default)]
    struct FakePin {
        high: bool,
        writes: u32,
    }

    impl digital::ErrorType for FakePin {
        type Error = Infallible;
    }

    impl InputPin for FakePin {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(self.high)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(!self.high)
        }
    }

    impl OutputPin for FakePin {
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.high = true;
            self.writes += 1;
            Ok(())
        }
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.high = false;
            self.writes += 1;
            Ok(())
        }
    }

    #[test]
    fn inverted_pin_reads_and_drives_the_opposite_level() {
        let mut pin = Inverted::new(FakePin::default(), true);
        assert!(pin.is_high().unwrap());
        pin.set_high().unwrap();
        assert!(!pin.into_inner().high);

        let mut plain = Inverted::new(FakePin::default(), false);
        assert!(plain.is_low().unwrap());
        plain.set_high().unwrap();
        assert!(plain.into_inner().high);

        // An active-low enable starts electrically high, which is logically off.
        assert!(electrical_level(false, true));
        assert!(!electrical_level(false, false));
    }

    #[test]
    fn hold_output_holds_each_change_and_skips_repeats() {
        let hold = Duration::from_micros(200);
        let mut step = HoldOutput::new(FakePin::default(), hold, Some(false));
        let start = Instant::now();
        step.set_high().unwrap();
        step.set_low().unwrap();
        assert!(start.elapsed() >= hold * 2);
        step.set_low().unwrap();
        assert_eq!(step.into_inner().writes, 2);
    }
}
