//! f64 vector kernels for the compressors' dense linear algebra (Cholesky factors and inverses of
//! Hessians): a dot product and an axpy, dispatched like every other kernel family.

use crate::dispatch;

/// `Σ a[i]·b[i]` over the shorter of the two.
pub type DotF64Kernel = fn(a: &[f64], b: &[f64]) -> f64;
/// `y[i] += alpha·x[i]` over the shorter of the two.
pub type AxpyF64Kernel = fn(y: &mut [f64], alpha: f64, x: &[f64]);

/// Dot product with the dispatched kernel.
pub fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    (dispatch::table().dot_f64)(a, b)
}

/// `y += alpha·x` with the dispatched kernel.
pub fn axpy_f64(y: &mut [f64], alpha: f64, x: &[f64]) {
    (dispatch::table().axpy_f64)(y, alpha, x)
}

/// Tolerance of an f64 dot product of length `n` against the reference, relative to `Σ|a·b|`: both
/// round after every operation, in different orders.
pub fn dot_f64_tolerance(n: usize, abs_sum: f64) -> f64 {
    2.0 * (n.max(1) as f64) * f64::EPSILON * abs_sum + 1e-300
}
