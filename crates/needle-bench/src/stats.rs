//! Percentiles the way needled's control loop computes them (nearest rank), and medians.

use serde_json::{json, Value};

/// p50, p99 and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        let count = samples.len();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Summary {
            count,
            p50: percentile(samples, 500),
            p99: percentile(samples, 990),
            p999: percentile(samples, 999),
            max: samples.last().copied().unwrap_or(0),
            #[allow(clippy::cast_precision_loss)]
            mean: if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64
            },
        }
    }

    /// As JSON, with the unit in the keys.
    pub fn json(&self, unit: &str) -> Value {
        json!({
            "count": self.count,
            format!("p50_{unit}"): self.p50,
            format!("p99_{unit}"): self.p99,
            format!("p999_{unit}"): self.p999,
            format!("max_{unit}"): self.max,
            format!("mean_{unit}"): (self.mean * 10.0).round() / 10.0,
        })
    }
}

/// Nearest-rank percentile of sorted samples, `per_mille` in 0..=1000 (the rank is
/// `ceil(n * per_mille / 1000)`, at least 1: the same rule as needled's lateness histogram).
pub fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
    sorted
        .get(usize::try_from(rank - 1).unwrap_or(0))
        .copied()
        .unwrap_or(0)
}

/// Median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_the_control_loops_rule() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let sum = Summary::of(&mut s);
        assert_eq!((sum.p50, sum.p99, sum.max, sum.count), (50, 99, 100, 100));
        assert!((sum.mean - 50.5).abs() < 1e-9);
        assert_eq!(percentile(&[], 990), 0);
        assert_eq!(percentile(&[7], 990), 7);
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 999), 999);
        assert_eq!(percentile(&thousand, 1000), 1000);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
