//! The calendar date of a cartridge's expiry, on [`jiff::civil::Date`].
//!
//! The calendar itself (month lengths, leap years, day counts) is jiff's; this type only
//! narrows it to the years a tag may carry and fixes the text form, `YYYY-MM-DD`.

use std::fmt;
use std::str::FromStr;

use jiff::civil;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

/// Why a [`Date`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The text is not of the form `YYYY-MM-DD`.
    #[error("date must be written YYYY-MM-DD")]
    Format,
    /// Year, month or day out of range.
    #[error("no such date: {year:04}-{month:02}-{day:02} (years {min}..={max})", min = Date::MIN_YEAR, max = Date::MAX_YEAR)]
    OutOfRange {
        /// The year given.
        year: u16,
        /// The month given.
        month: u8,
        /// The day given.
        day: u8,
    },
}

/// A calendar date (proleptic Gregorian), always valid, between [`Date::MIN_YEAR`] and
/// [`Date::MAX_YEAR`]. Ordering is chronological. Text and serde form: `YYYY-MM-DD`.
///
/// ```
/// use needled::cartridge::Date;
///
/// let leap_day = Date::new(2024, 2, 29)?;
/// assert_eq!(leap_day.to_string(), "2024-02-29");
/// assert_eq!("2024-02-29".parse::<Date>()?, leap_day);
/// assert_eq!(leap_day.days_since_epoch(), 19_782);
/// assert!(Date::new(2023, 2, 29).is_err());
/// # Ok::<(), needled::cartridge::DateError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(civil::Date);

/// Day 0 of [`Date::days_since_epoch`].
const EPOCH: civil::Date = civil::date(1970, 1, 1);

const SECONDS_PER_DAY: i64 = 86_400;

impl Date {
    /// Earliest year accepted.
    pub const MIN_YEAR: u16 = 1970;
    /// Latest year accepted.
    pub const MAX_YEAR: u16 = 9999;

    /// A date, if it exists in the calendar and its year is in range.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date, DateError> {
        let out_of_range = DateError::OutOfRange { year, month, day };
        if !(Self::MIN_YEAR..=Self::MAX_YEAR).contains(&year) {
            return Err(out_of_range);
        }
        let (Ok(y), Ok(m), Ok(d)) = (i16::try_from(year), i8::try_from(month), i8::try_from(day))
        else {
            return Err(out_of_range);
        };
        civil::Date::new(y, m, d)
            .map(Date)
            .map_err(|_| out_of_range)
    }

    /// A jiff date, if its year is in range.
    fn from_civil(date: civil::Date) -> Option<Date> {
        let year = u16::try_from(date.year()).ok()?;
        (Self::MIN_YEAR..=Self::MAX_YEAR)
            .contains(&year)
            .then_some(Date(date))
    }

    /// The year.
    pub fn year(self) -> u16 {
        // MIN_YEAR..=MAX_YEAR: never negative.
        self.0.year().unsigned_abs()
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.0.month().unsigned_abs()
    }

    /// The day of the month, 1..=31.
    pub fn day(self) -> u8 {
        self.0.day().unsigned_abs()
    }

    /// Days since 1970-01-01 (which is day 0).
    pub fn days_since_epoch(self) -> i64 {
        // Civil dates have no time zone, so every day is exactly 86,400 s long.
        self.0.duration_since(EPOCH).as_secs() / SECONDS_PER_DAY
    }

    /// The date `days` days after 1970-01-01, if its year is in range.
    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        let seconds = days.checked_mul(SECONDS_PER_DAY)?;
        let date = EPOCH.checked_add(SignedDuration::from_secs(seconds)).ok()?;
        Date::from_civil(date)
    }

    /// The UTC calendar date of a unix time in milliseconds, if its year is in range.
    pub fn from_unix_ms(unix_ms: i64) -> Option<Date> {
        // Not through `jiff::Timestamp`: its range ends on 9999-12-30, a day short of ours.
        // UTC has no leap seconds in unix time, so a UTC day is 86,400,000 ms.
        Date::from_days_since_epoch(unix_ms.div_euclid(SECONDS_PER_DAY * 1000))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out rather than jiff's ISO form so the text form cannot drift with it.
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.year(),
            self.month(),
            self.day()
        )
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl FromStr for Date {
    type Err = DateError;

    /// Parses exactly `YYYY-MM-DD` (ASCII digits, four-two-two). Stricter than jiff's
    /// parser, which also takes other ISO 8601 forms (`20260309`, `+002026-03-09`).
    fn from_str(text: &str) -> Result<Date, DateError> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes.get(4) == Some(&b'-')
            && bytes.get(7) == Some(&b'-')
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(DateError::Format);
        }
        let number = |range: std::ops::Range<usize>| -> Result<u16, DateError> {
            text.get(range)
                .and_then(|part| part.parse::<u16>().ok())
                .ok_or(DateError::Format)
        };
        let year = number(0..4)?;
        let month = u8::try_from(number(5..7)?).map_err(|_| DateError::Format)?;
        let day = u8::try_from(number(8..10)?).map_err(|_| DateError::Format)?;
        Date::new(year, month, day)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: u16, m: u8, d: u8) -> Date {
        Date::new(y, m, d).expect("valid date")
    }

    /// Day number of 9999-12-31, the last date in range.
    const LAST_DAY: i64 = 2_932_896;

    #[test]
    fn date_validation_knows_month_lengths_and_leap_years() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert!(Date::new(1900 + 200, 2, 29).is_err());
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(2023, 4, 31).is_err());
        assert!(Date::new(2023, 0, 1).is_err());
        assert!(Date::new(2023, 1, 0).is_err());
        assert!(Date::new(1969, 12, 31).is_err());
        assert!(Date::new(10_000, 1, 1).is_err());
    }

    #[test]
    fn bytes_beyond_jiffs_signed_range_are_out_of_range() {
        for (m, d) in [(200, 1), (1, 200), (u8::MAX, u8::MAX)] {
            assert_eq!(
                Date::new(2026, m, d),
                Err(DateError::OutOfRange {
                    year: 2026,
                    month: m,
                    day: d
                })
            );
        }
        assert!(Date::new(u16::MAX, 1, 1).is_err());
    }

    #[test]
    fn date_text_form_is_strict_iso() {
        assert_eq!("2026-03-09".parse::<Date>(), Ok(date(2026, 3, 9)));
        assert_eq!(date(2026, 3, 9).to_string(), "2026-03-09");
        for bad in [
            "2026-3-09",
            "2026-03-9",
            "20260309",
            "2026/03/09",
            "+026-03-09",
            "",
        ] {
            assert_eq!(bad.parse::<Date>(), Err(DateError::Format), "{bad:?}");
        }
        assert!(matches!(
            "2026-02-30".parse::<Date>(),
            Err(DateError::OutOfRange { .. })
        ));
    }

    #[test]
    fn serde_form_is_the_text_form() {
        let d = date(2028, 2, 29);
        assert_eq!(
            serde_json::to_string(&d).expect("serializes"),
            "\"2028-02-29\""
        );
        assert_eq!(
            serde_json::from_str::<Date>("\"2028-02-29\"").expect("parses"),
            d
        );
        assert!(serde_json::from_str::<Date>("\"2027-02-29\"").is_err());
        assert!(serde_json::from_str::<Date>("\"20280229\"").is_err());
    }

    #[test]
    fn days_since_epoch_matches_known_dates() {
        assert_eq!(date(1970, 1, 1).days_since_epoch(), 0);
        assert_eq!(date(2000, 3, 1).days_since_epoch(), 11_017);
        assert_eq!(date(2024, 2, 29).days_since_epoch(), 19_782);
        assert_eq!(date(9999, 12, 31).days_since_epoch(), LAST_DAY);
        assert_eq!(Date::from_days_since_epoch(19_782), Some(date(2024, 2, 29)));
        assert_eq!(
            Date::from_days_since_epoch(LAST_DAY),
            Some(date(9999, 12, 31))
        );
        assert_eq!(Date::from_days_since_epoch(LAST_DAY + 1), None);
        assert_eq!(Date::from_days_since_epoch(-1), None);
        assert_eq!(Date::from_days_since_epoch(i64::MAX), None);
        assert_eq!(Date::from_days_since_epoch(i64::MIN), None);
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(
            Date::from_unix_ms(1_709_251_199_999),
            Some(date(2024, 2, 29))
        );
        assert_eq!(
            Date::from_unix_ms(1_709_251_200_000),
            Some(date(2024, 3, 1))
        );
    }

    #[test]
    fn unix_times_outside_the_years_in_range_have_no_date() {
        assert_eq!(Date::from_unix_ms(0), Some(date(1970, 1, 1)));
        assert_eq!(Date::from_unix_ms(-1), None);
        assert_eq!(Date::from_unix_ms(i64::MIN), None);
        assert_eq!(Date::from_unix_ms(i64::MAX), None);
        let last_ms = (LAST_DAY + 1) * 86_400_000 - 1;
        assert_eq!(Date::from_unix_ms(last_ms), Some(date(9999, 12, 31)));
        assert_eq!(Date::from_unix_ms(last_ms + 1), None);
    }

    fn arb_date() -> impl Strategy<Value = Date> {
        (0i64..=LAST_DAY).prop_map(|d| Date::from_days_since_epoch(d).expect("in range"))
    }

    proptest! {
        #[test]
        fn days_since_epoch_round_trips(days in 0i64..=LAST_DAY) {
            let d = Date::from_days_since_epoch(days).expect("in range");
            prop_assert_eq!(d.days_since_epoch(), days);
            prop_assert_eq!(d.to_string().parse::<Date>(), Ok(d));
        }

        #[test]
        fn date_order_is_chronological(a in arb_date(), b in arb_date()) {
            prop_assert_eq!(a.cmp(&b), a.days_since_epoch().cmp(&b.days_since_epoch()));
        }

        #[test]
        fn unix_ms_date_is_the_day_number_of_the_ms(ms in 0i64..(LAST_DAY + 1) * 86_400_000) {
            let d = Date::from_unix_ms(ms).expect("in range");
            prop_assert_eq!(d.days_since_epoch(), ms.div_euclid(86_400_000));
        }

        #[test]
        fn fields_round_trip_through_new(days in 0i64..=LAST_DAY) {
            let d = Date::from_days_since_epoch(days).expect("in range");
            prop_assert_eq!(Date::new(d.year(), d.month(), d.day()), Ok(d));
        }
    }
}
