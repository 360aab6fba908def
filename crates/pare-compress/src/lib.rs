//! pare-compress: turning a model directory into a compressed one — int8 quantization with dynamic or
//! calibrated static activations — written in the compressed-tensors layout so other tools can read it.

pub mod awq;
pub mod calibration;
pub mod decompress;
pub mod encode;
pub mod error;
pub mod ggml_quant;
pub mod gguf_quant;
pub mod gptq;
pub mod int4;
pub mod linalg;
pub mod mixed;
pub mod onnx;
pub mod output;
pub mod prune;
pub mod quantize;
pub mod source;

pub use encode::Summary;
pub use error::{CompressError, Result};
pub use quantize::{QuantizeOptions, quantize};
