//! `Weight`: the storage of one matmul's right-hand side, and `Linear` (weight + bias). Model code
//! calls [`Linear::forward`] and never looks at how the weight is stored.

use pare_kernels::{Activation, Epilogue, PackedF32, gemm_f32};

/// The storage format of a Linear layer's weight `W[out][in]`.
#[derive(Clone, Debug)]
pub enum Weight {
    /// Dense float32, packed in column panels for the f32 GEMM.
    DenseF32(PackedF32),
}

impl Weight {
    /// A dense f32 weight from row-major `W[out][in]`.
    pub fn dense_f32(w: &[f32], out_features: usize, in_features: usize) -> Self {
        Weight::DenseF32(PackedF32::from_rows(w, out_features, in_features))
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        match self {
            Weight::DenseF32(p) => p.n(),
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        match self {
            Weight::DenseF32(p) => p.k(),
        }
    }

    /// Short name of the format, for `inspect` and reports.
    pub fn format(&self) -> &'static str {
        match self {
            Weight::DenseF32(_) => "f32 dense",
        }
    }

    /// Bytes the weight occupies in memory.
    pub fn bytes(&self) -> usize {
        match self {
            Weight::DenseF32(p) => p.bytes(),
        }
    }

    /// Back to row-major f32 `W[out][in]` (dequantised / densified where applicable).
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Weight::DenseF32(p) => p.to_rows(),
        }
    }
}

/// `y = act(x·Wᵀ + b) (+ residual)`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The weight.
    pub weight: Weight,
    /// The bias, `out_features` values.
    pub bias: Vec<f32>,
}

impl Linear {
    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.out_features()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.in_features()
    }

    /// `out[rows][out_features] = act(x[rows][in_features] · Wᵀ + b) + residual`, on the current pool.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], act: Activation, residual: Option<&[f32]>) {
        let (n, k) = (self.out_features(), self.in_features());
        let epi = Epilogue { bias: Some(&self.bias), act, residual: residual.map(|r| (r, n)), ..Epilogue::default() };
        match &self.weight {
            Weight::DenseF32(p) => gemm_f32(&x[..rows * k], k, rows, p, &mut out[..rows * n], n, &epi),
        }
    }
}
