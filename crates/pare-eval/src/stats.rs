//! Statistics of repeated measurements: summaries of a sample, and the speed test, a bootstrap of the
//! medians of timed runs grouped by round.

use pare_report::Interval;
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

/// Resamples of the speed test's bootstrap.
pub const RESAMPLES: usize = 2000;
/// Coverage of the speed test's intervals.
pub const LEVEL: f64 = 0.95;
/// Fewest timed runs a variant needs for the speed test: a bootstrap of fewer understates the spread of
/// their median.
pub const MIN_RUNS: usize = 5;
/// Seed of the bootstrap's generator: fixed, so a report's intervals are reproducible from its samples.
const SEED: u64 = 0x7061_7265_2d62_6f6f;

/// SplitMix64 (Steele, Lea & Flood 2014): 64 bits of state, statistically sound for resampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A uniform index below `n` (> 0), by multiply-shift: bias under n / 2⁶⁴.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64's output function: a bijection of u64 with full avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Median of `x` (not empty), reordering it: the middle sample, or the mean of the two middle ones.
fn median_in_place(x: &mut [f64]) -> f64 {
    let (n, m) = (x.len(), x.len() / 2);
    let (lower, mid, _) = x.select_nth_unstable_by(m, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 { mid } else { 0.5 * (mid + lower.iter().copied().fold(f64::NEG_INFINITY, f64::max)) }
}

/// The `p` quantile of sorted `s` (not empty), interpolated linearly between order statistics.
fn quantile(s: &[f64], p: f64) -> f64 {
    let h = p * (s.len() - 1) as f64;
    let (i, f) = (h.floor() as usize, h.fract());
    if i + 1 < s.len() { s[i] + f * (s[i + 1] - s[i]) } else { s[i] }
}

/// One variant's timed runs, as the speed test sees them.
#[derive(Clone, Copy, Debug)]
pub struct Timed<'a> {
    /// `rounds[r]` holds the runs of round r, in run order.
    pub rounds: &'a [Vec<f64>],
    /// The rounds are the sweep's shared rounds: round r of every shared variant ran in the same pass
    /// over the variants, under the same state of the machine. Shared variants are resampled with the
    /// same rounds; the others each on their own.
    pub shared: bool,
}

/// The speed test: a joint bootstrap of the median run time of several variants.
///
/// Each of [`RESAMPLES`] resamples draws as many rounds as there are, with replacement, and the same
/// rounds for every shared variant (paired by round, so a slow phase of the machine weighs on all of
/// them alike); within each drawn round it draws that round's runs with replacement, for each variant
/// on its own; a variant's median is that of all its drawn runs. Resampling rounds alone would give
/// only a handful of distinct draws with 2 to 5 rounds and scale the variance by (R − 1)/R; drawing the
/// runs as well counts the within-round noise a second time, which errs towards no claim, and makes one
/// round a plain bootstrap of the runs. Intervals are percentile intervals at [`LEVEL`] of a statistic
/// of the medians, computed on the same resamples.
///
/// Every variant's draws come from generators seeded by a fixed seed (rounds: by the resample alone
/// when shared) and its own samples (runs), so the result is deterministic, and a variant's resampled
/// medians are the same whichever other variants are tested with it.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// `medians[v][b]`: variant v's median in resample b; `None` with fewer than [`MIN_RUNS`] finite runs.
    medians: Vec<Option<Vec<f64>>>,
}

/// A seed drawn from the bits of `rounds`.
fn fingerprint(rounds: &[Vec<f64>]) -> u64 {
    rounds.iter().flatten().fold(mix(rounds.len() as u64), |h, x| mix(h ^ x.to_bits()))
}

impl Bootstrap {
    /// Resamples the medians of `variants`.
    pub fn new(variants: &[Timed]) -> Self {
        let mut pool = Vec::new();
        let medians = variants
            .iter()
            .map(|t| {
                let runs = t.rounds.iter().map(Vec::len).sum::<usize>();
                if runs < MIN_RUNS || t.rounds.iter().flatten().any(|x| !x.is_finite()) {
                    return None;
                }
                // A shared variant keeps its round indices (pairing is by index), so every round must hold
                // a run; otherwise it is resampled on its own, over the rounds that do.
                let shared = t.shared && t.rounds.iter().all(|r| !r.is_empty());
                let rounds: Vec<&Vec<f64>> = t.rounds.iter().filter(|r| !r.is_empty()).collect();
                let own = fingerprint(t.rounds);
                let mut runs_rng = SplitMix64(SEED ^ own);
                Some(
                    (0..RESAMPLES as u64)
                        .map(|b| {
                            let mut round_rng = SplitMix64(mix(SEED.wrapping_add(b)) ^ if shared { 0 } else { own });
                            pool.clear();
                            for _ in 0..rounds.len() {
                                let r = rounds[round_rng.below(rounds.len())];
                                pool.extend((0..r.len()).map(|_| r[runs_rng.below(r.len())]));
                            }
                            median_in_place(&mut pool)
                        })
                        .collect(),
                )
            })
            .collect();
        Bootstrap { medians }
    }

    /// The interval at [`LEVEL`] of `stat`, a function of the medians of the variants `of` (indices into
    /// those given to [`Bootstrap::new`], passed to `stat` in that order); `None` when one of them has
    /// too few runs or `stat` is not finite on every resample.
    pub fn interval(&self, of: &[usize], stat: impl Fn(&[f64]) -> f64) -> Option<Interval> {
        let cols: Vec<&Vec<f64>> = of.iter().map(|&i| self.medians.get(i)?.as_ref()).collect::<Option<_>>()?;
        let mut m = vec![0.0; cols.len()];
        let mut stats: Vec<f64> = (0..RESAMPLES)
            .map(|b| {
                for (x, c) in m.iter_mut().zip(&cols) {
                    *x = c[b];
                }
                stat(&m)
            })
            .collect();
        if stats.iter().any(|s| !s.is_finite()) {
            return None;
        }
        stats.sort_by(f64::total_cmp);
        let tail = (1.0 - LEVEL) / 2.0;
        Some(Interval { low: quantile(&stats, tail), high: quantile(&stats, 1.0 - tail) })
    }

    /// The interval of median(`a`) / median(`b`): how many times faster `b` runs than `a`.
    pub fn ratio(&self, a: usize, b: usize) -> Option<Interval> {
        self.interval(&[a, b], |m| m[0] / m[1])
    }
}

/// The speed test of one pair: the interval of the original's median / the variant's (its speedup),
/// paired by round when `paired` (both timed in the same rounds). See [`Bootstrap`].
pub fn speedup_interval(original: &[Vec<f64>], variant: &[Vec<f64>], paired: bool) -> Option<Interval> {
    let t = |rounds| Timed { rounds, shared: paired };
    Bootstrap::new(&[t(original), t(variant)]).ratio(0, 1)
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

    /// `rounds` rounds of `runs` samples around `ms`: uniform noise of ±`noise` (relative) on each run,
    /// times `drift[r]` in round r.
    fn sample(rng: &mut SplitMix64, ms: f64, noise: f64, drift: &[f64], runs: usize) -> Vec<Vec<f64>> {
        drift
            .iter()
            .map(|d| {
                (0..runs)
                    .map(|_| {
                        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                        ms * d * (1.0 + noise * (2.0 * u - 1.0))
                    })
                    .collect()
            })
            .collect()
    }

    const STEADY: [f64; 5] = [1.0; 5];

    #[test]
    fn same_distribution_is_no_change() {
        let mut rng = SplitMix64(1);
        for seed in 0..20 {
            rng.0 = seed;
            let a = sample(&mut rng, 10.0, 0.2, &STEADY, 20);
            let b = sample(&mut rng, 10.0, 0.2, &STEADY, 20);
            let ci = speedup_interval(&a, &b, true).unwrap();
            assert!(ci.contains(1.0), "seed {seed}: {ci:?}");
            assert!(ci.high - ci.low < 0.3, "seed {seed}: {ci:?}");
        }
        let a = sample(&mut rng, 10.0, 0.2, &STEADY, 20);
        assert_eq!(speedup_interval(&a, &a, true), Some(Interval { low: 1.0, high: 1.0 }), "a variant against itself");
    }

    #[test]
    fn twice_as_fast_is_faster_and_about_two() {
        let mut rng = SplitMix64(7);
        let a = sample(&mut rng, 10.0, 0.2, &STEADY, 20);
        let b = sample(&mut rng, 5.0, 0.2, &STEADY, 20);
        let ci = speedup_interval(&a, &b, true).unwrap();
        assert!(ci.low > 1.0 && ci.contains(2.0), "{ci:?}");
        let back = speedup_interval(&b, &a, true).unwrap();
        assert!(back.high < 1.0 && back.contains(0.5), "{back:?}");
        // Unpaired (a peer): still clear.
        let ci = speedup_interval(&a, &b, false).unwrap();
        assert!(ci.low > 1.0 && ci.contains(2.0), "{ci:?}");
    }

    #[test]
    fn pairing_by_round_removes_shared_drift() {
        // The machine is 40% slower in some rounds, for every variant alike; b is 5% faster throughout.
        let drift = [1.0, 1.4, 0.9, 1.3, 1.0];
        let mut rng = SplitMix64(3);
        let a = sample(&mut rng, 10.0, 0.02, &drift, 20);
        let b = sample(&mut rng, 10.0 / 1.05, 0.02, &drift, 20);
        let paired = speedup_interval(&a, &b, true).unwrap();
        assert!(paired.low > 1.0 && paired.contains(1.05), "{paired:?}");
        let unpaired = speedup_interval(&a, &b, false).unwrap();
        assert!(unpaired.contains(1.0), "{unpaired:?}");
    }

    #[test]
    fn disagreeing_rounds_are_no_change() {
        // b is much faster in two rounds and slower in the other three: round by round the evidence
        // disagrees, though every round alone is precise.
        let mut rng = SplitMix64(5);
        let a = sample(&mut rng, 10.0, 0.02, &STEADY, 20);
        let b = sample(&mut rng, 10.0, 0.02, &[0.6, 0.65, 1.1, 1.05, 1.08], 20);
        let ci = speedup_interval(&a, &b, true).unwrap();
        assert!(ci.contains(1.0), "{ci:?}");
    }

    #[test]
    fn deterministic_and_the_same_in_any_company() {
        let mut rng = SplitMix64(11);
        let a = sample(&mut rng, 10.0, 0.3, &STEADY, 20);
        let b = sample(&mut rng, 9.0, 0.3, &STEADY, 20);
        let c = sample(&mut rng, 4.0, 0.3, &STEADY, 20);
        let once = speedup_interval(&a, &b, true);
        assert!(once.is_some());
        assert_eq!(once, speedup_interval(&a, &b, true));
        let t = |rounds| Timed { rounds, shared: true };
        let joint = Bootstrap::new(&[t(&c), t(&a), t(&b)]);
        assert_eq!(joint.ratio(1, 2), once, "a pair's interval does not depend on the other variants");
    }

    #[test]
    fn degenerate_inputs() {
        let mut rng = SplitMix64(13);
        // One round: the runs alone are resampled.
        let a = sample(&mut rng, 10.0, 0.2, &[1.0], 20);
        let b = sample(&mut rng, 5.0, 0.2, &[1.0], 20);
        let ci = speedup_interval(&a, &b, true).unwrap();
        assert!(ci.low > 1.0 && ci.contains(2.0), "{ci:?}");
        // Nothing, or too little, to test.
        assert_eq!(speedup_interval(&[], &b, true), None);
        assert_eq!(speedup_interval(&a, &[vec![]], true), None);
        assert_eq!(speedup_interval(&a, &[vec![1.0; MIN_RUNS - 1]], true), None);
        assert_eq!(speedup_interval(&a, &[vec![1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0]], true), None);
        // Unequal rounds, an empty round, constant samples: an answer, no panic.
        let uneven = vec![vec![5.0, 5.1, 4.9], vec![], vec![5.0, 5.2]];
        assert!(speedup_interval(&a, &uneven, true).is_some_and(|ci| ci.low > 1.0));
        let flat = vec![vec![2.0; 10]];
        assert_eq!(speedup_interval(&flat, &flat, true), Some(Interval { low: 1.0, high: 1.0 }));
        assert_eq!(Bootstrap::new(&[]).interval(&[0], |m| m[0]), None);
    }

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_in_place(&mut [7.0]), 7.0);
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!((quantile(&s, 0.0), quantile(&s, 0.5), quantile(&s, 1.0)), (1.0, 3.0, 5.0));
        assert_eq!(quantile(&s, 0.125), 1.5);
        let mut g = SplitMix64(0);
        assert!((0..1000).all(|_| g.below(3) < 3));
    }
}
