//! Row-wise normalisations: LayerNorm over hidden vectors and the attention softmax.

use crate::{dispatch, par};

/// LayerNorm of whole rows, in place: `x = (x − mean) / sqrt(var + eps) · gamma + beta`.
///
/// # Safety
/// The CPU must have the features of the tier that provided the kernel; `x.len()` is a multiple of
/// `gamma.len() == beta.len()`.
pub(crate) type LayerNormKernel = unsafe fn(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32);

/// The numerator of a softmax, in place: `row = exp(row + bias − max)`, returning the sum (the
/// caller divides). A row whose entries are all −∞ becomes zeros with sum 0.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel; `bias.len() == row.len()`.
pub(crate) type SoftmaxKernel = unsafe fn(row: &mut [f32], bias: Option<&[f32]>) -> f32;

/// LayerNorm over the rows of `x` (`x.len() / gamma.len()` rows), split across the current pool.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    assert!(cols > 0 && beta.len() == cols && x.len().is_multiple_of(cols), "layer_norm: shapes do not match");
    let rows = x.len() / cols;
    let kernel = dispatch::table().layer_norm;
    // Tiny problems are not worth a second thread.
    if rows * cols < 1 << 12 {
        // SAFETY: the dispatched kernel matches this CPU; shapes checked above.
        unsafe { kernel(x, gamma, beta, eps) };
        return;
    }
    let base = par::SendPtr(x.as_mut_ptr());
    par::for_each_chunk(rows, |r| {
        // SAFETY: chunks are disjoint row ranges inside `x`.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(r.start * cols), r.len() * cols) };
        // SAFETY: as above.
        unsafe { kernel(part, gamma, beta, eps) };
    });
}

/// LayerNorm with the kernel of a given table, single-threaded.
pub fn layer_norm_with(table: &dispatch::Table, x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    assert!(cols > 0 && beta.len() == cols && x.len().is_multiple_of(cols), "layer_norm: shapes do not match");
    // SAFETY: tables are only built for tiers this CPU has; shapes checked above.
    unsafe { (table.layer_norm)(x, gamma, beta, eps) }
}

/// Softmax of one row with the kernel of a given table (all −∞ gives zeros).
pub fn softmax_with(table: &dispatch::Table, row: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        assert_eq!(b.len(), row.len(), "softmax: bias length");
    }
    // SAFETY: tables are only built for tiers this CPU has; length checked above.
    let sum = unsafe { (table.softmax)(row, bias) };
    if sum > 0.0 {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}
