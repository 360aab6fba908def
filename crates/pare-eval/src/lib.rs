//! pare-eval: measuring what compression costs and gains: latency statistics, memory, fidelity, task
//! metrics, and the analysis a report states.

pub mod analysis;
pub mod memory;
pub mod metrics;
pub mod stats;
pub mod tasks;
pub mod timing;

pub use stats::Summary;
pub use timing::time_runs;
