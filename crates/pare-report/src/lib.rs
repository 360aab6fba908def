//! pare-report: the Report value (plain serde data, versioned) and its renderers. It computes
//! nothing: every figure, finding and recommendation arrives in the Report.

mod model;
pub mod render;

pub use model::*;
