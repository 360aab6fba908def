//! pare-eval: measuring what compression costs and gains: latency statistics, memory, fidelity.

pub mod memory;
pub mod stats;
pub mod timing;

pub use stats::Summary;
pub use timing::time_runs;
