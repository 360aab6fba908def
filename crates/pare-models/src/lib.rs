//! pare-models: model architectures written once, with every matmul going through a [`Weight`], so
//! that compressed weight formats plug in without touching the model code.

pub mod arch;
pub mod bert;
pub mod checkpoint;
pub mod costs;
pub mod error;
pub mod llama;
pub mod sentence;
pub mod testing;
pub mod weight;

pub use arch::{Architecture, Batch, LinearHook, Task, UnitKind, Units};
pub use bert::{Bert, Workspace};
pub use error::{ModelError, Result};
pub use sentence::SentenceEncoder;
pub use weight::{Embedding, Input, Int8Parts, Linear, QuantCache, Weight};
