//! The calendar the service records with and judges plan windows and numbing waits by.
//!
//! Durations that keep needles safe (session time limit, run-time budget, dead-man) are on
//! the monotonic clock and never read this. The wall clock is for records and for rules that
//! are about dates: a treatment plan's interval window, the numbing wait after the checklist.
//! The service takes it from a [`Clock`], so tests fake dates: [`FakeClock`] stands still until
//! the test moves it, and the sim backend's `step_wall_clock` injection steps the installed
//! clock as an NTP step would.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, unix ms.
pub trait Clock: Send + Sync {
    /// Now, unix ms.
    fn unix_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until it is moved: for tests that follow a plan over weeks.
#[derive(Debug, Default)]
pub struct FakeClock {
    ms: AtomicI64,
}

impl FakeClock {
    /// A fake clock at `unix_ms`.
    pub fn at(unix_ms: i64) -> Self {
        Self {
            ms: AtomicI64::new(unix_ms),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the clock to `unix_ms`.
    pub fn set(&self, unix_ms: i64) {
        self.ms.store(unix_ms, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn unix_ms(&self) -> i64 {
        self.ms.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn unix_ms(&self) -> i64 {
        (**self).unix_ms()
    }
}

/// The clock the process records with: the system's unless one is installed.
static INSTALLED: RwLock<Option<Arc<dyn Clock>>> = RwLock::new(None);
/// What the sim has stepped the wall clock by, ms (only the sim backend sets it).
static STEP_MS: AtomicI64 = AtomicI64::new(0);

/// Installs `clock` as the process's calendar (one service per process; tests that build a
/// service in-process install a [`FakeClock`] before they create it).
pub fn install(clock: Arc<dyn Clock>) {
    if let Ok(mut slot) = INSTALLED.write() {
        *slot = Some(clock);
    }
}

/// Steps the installed clock by `ms` (the sim's NTP step).
pub fn step(ms: i64) {
    STEP_MS.fetch_add(ms, Ordering::Relaxed);
}

/// Now on the installed clock plus the sim's steps, unix ms, never negative.
pub fn unix_ms() -> i64 {
    let base = match INSTALLED.read() {
        Ok(slot) => slot
            .as_ref()
            .map_or_else(|| SystemClock.unix_ms(), |c| c.unix_ms()),
        Err(_) => SystemClock.unix_ms(),
    };
    base.saturating_add(STEP_MS.load(Ordering::Relaxed)).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_stands_still_until_moved() {
        let c = FakeClock::at(1_000);
        assert_eq!(c.unix_ms(), 1_000);
        c.advance(Duration::from_secs(86_400));
        assert_eq!(c.unix_ms(), 1_000 + 86_400_000);
        c.set(5);
        assert_eq!(c.unix_ms(), 5);
    }
}
