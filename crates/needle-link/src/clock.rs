//! [`ClockSync`]: relates the pen's clock to the host's from sync probes, so the host can
//! report pen-side event times on its own clock.
//!
//! Each probe gives a sample: the host sent at `t0`, the pen answered with its clock `p`, the
//! host received at `t1`; the pen read `p` somewhere in `[t0, t1]`, best guessed at the middle.
//! Like Klipper's `clocksync.py` we keep the recent samples, trust those whose round trip is
//! near the shortest seen (a slow round trip says little about when `p` was read), and fit a
//! line `pen = offset + rate * host` through them by least squares, which follows the pen's
//! crystal drifting from the host's.

use heapless::Deque;
use needle_core::units::Micros;

/// Samples kept for the fit.
pub const SAMPLES: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Sample {
    host: u64,
    pen: u64,
    rtt: u64,
}

/// The fitted relation between the pen's clock and the host's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// A host time on the line, µs.
    pub host: f64,
    /// The pen time at `host`, µs.
    pub pen: f64,
    /// Pen µs per host µs.
    pub rate: f64,
    /// Half the shortest round trip: how far off a single reading may be, µs.
    pub uncertainty: Micros,
}

/// The clock relation, from sync samples.
#[derive(Debug, Default)]
pub struct ClockSync {
    samples: Deque<Sample, SAMPLES>,
    fit: Option<Fit>,
}

impl ClockSync {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the sample of a probe sent at `sent`, answered with `pen`, received at `received`
    /// (host times), and refits.
    pub fn add(&mut self, sent: Micros, pen: Micros, received: Micros) {
        if received < sent {
            return;
        }
        if self.samples.is_full() {
            self.samples.pop_front();
        }
        let sample = Sample {
            host: sent.0 + (received.0 - sent.0) / 2,
            pen: pen.0,
            rtt: received.0 - sent.0,
        };
        let _ = self.samples.push_back(sample);
        self.fit = self.refit();
    }

    fn refit(&self) -> Option<Fit> {
        let best = self.samples.iter().map(|s| s.rtt).min()?;
        let limit = best.saturating_mul(2).saturating_add(200);
        let good = || self.samples.iter().filter(move |s| s.rtt <= limit);
        let first = good().next()?;
        // Relative to the first good sample, so f64 keeps µs precision.
        let xs = |s: &Sample| s.host as f64 - first.host as f64;
        let ys = |s: &Sample| s.pen as f64 - first.pen as f64;
        let n = good().count() as f64;
        let mx = good().map(xs).sum::<f64>() / n;
        let my = good().map(ys).sum::<f64>() / n;
        let sxx: f64 = good().map(|s| (xs(s) - mx) * (xs(s) - mx)).sum();
        let sxy: f64 = good().map(|s| (xs(s) - mx) * (ys(s) - my)).sum();
        // Less than 10 ms of spread: too short to see drift; assume equal rates.
        let rate = if sxx > 1e10 / n { sxy / sxx } else { 1.0 };
        let rate = if (0.99..=1.01).contains(&rate) {
            rate
        } else {
            1.0
        };
        Some(Fit {
            host: first.host as f64 + mx,
            pen: first.pen as f64 + my,
            rate,
            uncertainty: Micros(best / 2),
        })
    }

    /// The current fit, once a sample came.
    pub fn fit(&self) -> Option<Fit> {
        self.fit
    }

    /// The host time at which the pen's clock read `pen`.
    pub fn to_host(&self, pen: Micros) -> Option<Micros> {
        let f = self.fit?;
        let host = f.host + (pen.0 as f64 - f.pen) / f.rate;
        (host >= 0.0).then_some(Micros(host as u64))
    }

    /// The pen's clock at host time `host`.
    pub fn to_pen(&self, host: Micros) -> Option<Micros> {
        let f = self.fit?;
        let pen = f.pen + (host.0 as f64 - f.host) * f.rate;
        (pen >= 0.0).then_some(Micros(pen as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_pen_clock_is_mapped_within_a_microsecond_or_two() {
        // The pen started 5 s after the host and runs 50 ppm fast.
        let pen_at = |host: u64| Micros(((host as f64 - 5e6) * 1.000_05) as u64);
        let mut sync = ClockSync::new();
        for i in 0..32u64 {
            let sent = 6_000_000 + i * 50_000;
            // Round trips of 300 µs, one in four delayed by a busy host to 3 ms.
            let rtt = if i % 4 == 3 { 3_000 } else { 300 };
            sync.add(Micros(sent), pen_at(sent + rtt / 2), Micros(sent + rtt));
        }
        let host = 7_700_000;
        let got = sync.to_host(pen_at(host)).unwrap().0 as i64;
        assert!((got - host as i64).abs() <= 2, "{got} vs {host}");
        assert!((sync.fit().unwrap().rate - 1.000_05).abs() < 2e-6);
    }

    #[test]
    fn one_sample_gives_an_offset() {
        let mut sync = ClockSync::new();
        sync.add(Micros(1_000), Micros(500), Micros(1_200));
        assert_eq!(sync.to_host(Micros(600)), Some(Micros(1_200)));
        assert_eq!(sync.to_pen(Micros(1_100)), Some(Micros(500)));
    }
}
