//! Physical quantities as integer newtypes.
//!
//! The control path never uses floats: every quantity is an integer in a named unit, and
//! arithmetic saturates instead of wrapping or panicking.
//!
//! ```
//! use needle_core::units::{Micrometers, MilliHertz};
//! assert_eq!(Micrometers::from_mm_hundredths(125), Micrometers(1250));
//! assert_eq!(MilliHertz::from_hz(120).as_hz(), 120);
//! ```

use serde::{Deserialize, Serialize};

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// Zero in this unit.
            pub const ZERO: Self = Self(0);

            /// Sum, saturating at the numeric bounds.
            #[must_use]
            pub const fn saturating_add(self, other: Self) -> Self {
                Self(self.0.saturating_add(other.0))
            }

            /// Difference, saturating at the numeric bounds.
            #[must_use]
            pub const fn saturating_sub(self, other: Self) -> Self {
                Self(self.0.saturating_sub(other.0))
            }
        }
    };
}

unit!(
    /// A length in micrometres (needle depth, positions of the depth axis). Signed so that a
    /// position below the home switch can be represented.
    Micrometers(i32)
);
unit!(
    /// A frequency in millihertz (stroke rate: 120 Hz is `MilliHertz(120_000)`).
    MilliHertz(u32)
);
unit!(
    /// A time in microseconds: an instant on the controller's monotonic clock, or a duration.
    Micros(u64)
);
unit!(
    /// A position or distance of the depth stepper, in (micro)steps.
    Steps(i32)
);
unit!(
    /// An electric current in milliamperes.
    MilliAmps(i32)
);
unit!(
    /// A temperature in thousandths of a degree Celsius.
    MilliCelsius(i32)
);
unit!(
    /// A voltage in millivolts.
    MilliVolts(i32)
);
unit!(
    /// A ratio in parts per ten thousand (PWM duty: `Permyriad(10_000)` is full on).
    Permyriad(u16)
);

impl Micrometers {
    /// From hundredths of a millimetre, the resolution operators set depth in.
    pub const fn from_mm_hundredths(hundredths: i32) -> Self {
        Self(hundredths.saturating_mul(10))
    }
}

impl MilliHertz {
    /// From whole hertz.
    pub const fn from_hz(hz: u32) -> Self {
        Self(hz.saturating_mul(1000))
    }

    /// Whole hertz, rounded down.
    pub const fn as_hz(self) -> u32 {
        self.0 / 1000
    }
}

impl Micros {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1000))
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later (a clock never runs
    /// backwards for the controller).
    #[must_use]
    pub const fn since(self, earlier: Micros) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }
}

impl Permyriad {
    /// Full scale (100 %).
    pub const FULL: Self = Self(10_000);

    /// Scales this ratio onto `0..=max`, as a PWM peripheral's duty register wants it.
    pub const fn scale(self, max: u16) -> u16 {
        let ratio = if self.0 > 10_000 { 10_000 } else { self.0 };
        // ratio <= 10_000 and max <= u16::MAX, so the quotient fits in u16.
        ((max as u32 * ratio as u32) / 10_000) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(
            Micrometers(i32::MAX).saturating_add(Micrometers(1)),
            Micrometers(i32::MAX)
        );
        assert_eq!(MilliHertz(0).saturating_sub(MilliHertz(5)), MilliHertz(0));
        assert_eq!(Micros(3).since(Micros(10)), Micros(0));
        assert_eq!(
            Micrometers::from_mm_hundredths(i32::MAX),
            Micrometers(i32::MAX)
        );
    }

    #[test]
    fn duty_scales_onto_register_range() {
        assert_eq!(Permyriad(5_000).scale(1000), 500);
        assert_eq!(Permyriad::FULL.scale(u16::MAX), u16::MAX);
        assert_eq!(Permyriad(20_000).scale(100), 100);
        assert_eq!(Permyriad(0).scale(u16::MAX), 0);
    }
}
