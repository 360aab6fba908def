//! Timing a closure: warm-up runs, then timed runs, each measured on its own.

use crate::stats::Summary;
use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `runs` times timed; `progress` is told after each timed run.
pub fn time_runs<E>(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<(), E>,
    mut progress: impl FnMut(usize),
) -> Result<Summary, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        progress(i + 1);
    }
    Ok(Summary::from_samples(samples))
}
