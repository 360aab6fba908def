//! pare-kernels: the CPU kernels of pare. Every optimised kernel has a scalar twin in
//! [`reference`]; [`dispatch`] picks the best tier the CPU offers (capped by `PARE_ISA`) once.
//!
//! This is the only crate of pare with `unsafe` code and `core::arch` intrinsics.

pub mod aligned;
pub mod attention;
pub mod blas;
pub mod dispatch;
pub mod gemm_f32;
pub mod gemm_i8;
pub mod isa;
pub mod norm;
pub mod par;
pub mod peak;
pub mod qblock;
pub mod quant;
pub mod reference;
pub mod spmm;
pub mod spmm_i8;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use aligned::AlignedVec;
pub use attention::{AttentionShape, attention_f32};
pub use gemm_f32::{Activation, Epilogue, PackedF32, gemm_f32};
pub use gemm_i8::{I8Out, PackedI8, QuantRows, Split, gemm_u8s8};
pub use isa::Isa;
pub use norm::layer_norm;
pub use qblock::{BlockRows, BlockType, gemm_blocks_f32};
pub use quant::{ActQuant, quantize_rows};
pub use spmm::{CsrF32, spmm_f32};
pub use spmm_i8::{CsrI8, spmm_u8s8};
