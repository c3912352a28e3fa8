//! [`TickLog`]: the control ticks the rig has seen, by the time each one advanced its clock.
//!
//! A test or jig judges a reaction against the controller's own schedule with it: "the motor
//! went off in the first tick after the E-stop was pressed" holds on a busy machine where
//! the ticks come late, while "within 1.5 ms of the press" does not. The log counts what the
//! rig saw, not what the controller says about itself.

use std::collections::VecDeque;

use needle_core::units::Micros;

/// Tick times kept: a minute of ticks at 1 kHz.
pub const TICKS_KEPT: usize = 60_000;

/// The times of the latest control ticks, oldest first, and how many there were in all.
#[derive(Debug, Clone, Default)]
pub struct TickLog {
    times: VecDeque<Micros>,
    total: u64,
}

impl TickLog {
    /// Notes a tick at `t`. Times must not go backwards; a tick at the same time as the
    /// previous one still counts (the controller ran twice on one clock reading).
    pub fn push(&mut self, t: Micros) {
        if self.times.len() == TICKS_KEPT {
            self.times.pop_front();
        }
        self.times.push_back(t);
        self.total = self.total.saturating_add(1);
    }

    /// Ticks noted since the rig started.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many ticks fell in `(after, until]`, or `None` when the log no longer reaches back
    /// to `after` (the answer could be too small).
    pub fn between(&self, after: Micros, until: Micros) -> Option<u64> {
        let reaches_back = self.total as usize == self.times.len()
            || self.times.front().is_some_and(|first| *first <= after);
        if !reaches_back {
            return None;
        }
        let n = self
            .times
            .iter()
            .filter(|t| **t > after && **t <= until)
            .count();
        Some(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ticks_in_a_half_open_window() {
        let mut log = TickLog::default();
        for t in [1_000, 2_000, 3_000, 5_500] {
            log.push(Micros(t));
        }
        assert_eq!(log.total(), 4);
        assert_eq!(log.between(Micros(2_000), Micros(3_000)), Some(1));
        assert_eq!(log.between(Micros(1_500), Micros(5_500)), Some(3));
        assert_eq!(log.between(Micros(5_500), Micros(9_000)), Some(0));
        assert_eq!(log.between(Micros(0), Micros(999)), Some(0));
    }

    #[test]
    fn a_window_older_than_the_log_is_unknown() {
        let mut log = TickLog::default();
        for t in 0..(TICKS_KEPT as u64 + 10) {
            log.push(Micros(t * 1_000));
        }
        assert_eq!(log.total(), TICKS_KEPT as u64 + 10);
        assert_eq!(log.between(Micros(0), Micros(5_000)), None);
        assert_eq!(log.between(Micros(10_000), Micros(12_000)), Some(2));
    }
}
