//! Summary statistics of repeated measurements.

use serde::{Deserialize, Serialize};

/// Statistics of a sample of run times, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub runs: usize,
    /// Median (mean of the two middle samples when `runs` is even).
    pub median_ms: f64,
    /// 90th percentile, nearest rank.
    pub p90_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Population standard deviation.
    pub stddev_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
    /// Every sample, in the order measured.
    pub samples_ms: Vec<f64>,
}

impl Summary {
    /// Statistics of `samples_ms` (which must not be empty).
    pub fn from_samples(samples_ms: Vec<f64>) -> Self {
        assert!(!samples_ms.is_empty(), "no samples");
        let mut s = samples_ms.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) };
        let rank = (0.9 * n as f64).ceil() as usize;
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = s.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        Summary {
            runs: n,
            median_ms: median,
            p90_ms: s[rank.clamp(1, n) - 1],
            mean_ms: mean,
            stddev_ms: var.sqrt(),
            min_ms: s[0],
            max_ms: s[n - 1],
            samples_ms,
        }
    }

    /// Interquartile range divided by the median: a robust measure of noise.
    pub fn relative_iqr(&self) -> f64 {
        let mut s = self.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((p * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)];
        (q(0.75) - q(0.25)) / self.median_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_known_sample() {
        let s = Summary::from_samples(vec![5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(s.runs, 10);
        assert_eq!(s.median_ms, 5.5);
        assert_eq!(s.p90_ms, 9.0);
        assert_eq!(s.mean_ms, 5.5);
        assert!((s.stddev_ms - 8.25f64.sqrt()).abs() < 1e-12);
        assert_eq!((s.min_ms, s.max_ms), (1.0, 10.0));
        assert_eq!(s.samples_ms[0], 5.0, "samples keep their order");
        let one = Summary::from_samples(vec![2.0]);
        assert_eq!((one.median_ms, one.p90_ms, one.stddev_ms), (2.0, 2.0, 0.0));
    }
}
