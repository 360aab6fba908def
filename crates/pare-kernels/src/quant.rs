//! Quantizing activations to u8 rows for the integer GEMM: per row (token) from the row's own range
//! (dynamic), or with fixed calibrated parameters (static).

use crate::dispatch;
use crate::gemm_i8::QuantRows;
use crate::par::{self, SendPtr};

/// How activation rows are quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActQuant {
    /// Per row, asymmetric: the row's [min, max] (widened to include 0) mapped onto [0, 255].
    DynamicAsymmetric,
    /// Per row, symmetric: `[−max|x|, max|x|]` onto [1, 255] with zero point 128 (s8 shifted by 128).
    DynamicSymmetric,
    /// One calibrated scale and zero point for every row.
    Static {
        /// Scale.
        scale: f32,
        /// Zero point in [0, 255].
        zero: i32,
    },
}

/// Scale and zero point of a row with range `[lo, hi]`.
pub fn row_params(lo: f32, hi: f32, mode: ActQuant) -> (f32, i32) {
    match mode {
        ActQuant::Static { scale, zero } => (scale, zero),
        ActQuant::DynamicAsymmetric => {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let scale = (hi - lo) / 255.0;
            if !(scale > 0.0 && scale.is_finite()) {
                return (1.0, 0);
            }
            (scale, ((-lo / scale).round_ties_even() as i32).clamp(0, 255))
        }
        ActQuant::DynamicSymmetric => {
            let m = lo.abs().max(hi.abs());
            let scale = m / 127.0;
            if !(scale > 0.0 && scale.is_finite()) {
                return (1.0, 128);
            }
            (scale, 128)
        }
    }
}

/// Quantizes one value: `clamp(round(x·inv) + zero, 0, 255)`, with `x·inv` clamped to [−512, 512]
/// first so that the conversion to an integer is exact on every path.
#[inline]
pub fn quantize_value(x: f32, inv: f32, zero: i32) -> u8 {
    let v = (x * inv).clamp(-512.0, 512.0).round_ties_even() as i32 + zero;
    v.clamp(0, 255) as u8
}

/// Quantizes `m` rows of `k` values (row stride `ldx`) into `out`, resizing it; `outliers` are input
/// channels kept in f32 (see [`crate::gemm_i8`]). Rows are split across the kernel threads when there
/// are enough of them.
pub fn quantize_rows(x: &[f32], m: usize, k: usize, ldx: usize, mode: ActQuant, outliers: &[u32], out: &mut QuantRows) {
    let table = dispatch::table();
    if m * k < 1 << 12 {
        quantize_rows_with(table, x, m, k, ldx, mode, outliers, out);
        return;
    }
    assert!(ldx >= k && x.len() >= (m - 1) * ldx + k, "quantize_rows: input too short");
    let ld = resize(out, m, k, outliers);
    let no = outliers.len();
    let ptrs = Ptrs {
        q: SendPtr(out.q.as_mut_ptr()),
        scale: SendPtr(out.scale.as_mut_ptr()),
        zero: SendPtr(out.zero.as_mut_ptr()),
        outliers: SendPtr(out.outliers.as_mut_ptr()),
    };
    par::for_each_chunk(m, |rows| {
        let p = &ptrs;
        for i in rows {
            // SAFETY: row i of `out` (ld bytes, one scale, one zero, `no` outlier values) belongs to
            // this chunk only; `resize` made room for m rows.
            let (qi, si, zi, oi) = unsafe {
                (
                    std::slice::from_raw_parts_mut(p.q.get().add(i * ld), ld),
                    &mut *p.scale.get().add(i),
                    &mut *p.zero.get().add(i),
                    std::slice::from_raw_parts_mut(p.outliers.get().add(i * no), no),
                )
            };
            (*si, *zi) = quantize_one(table, &x[i * ldx..i * ldx + k], qi, mode, outliers, oi);
        }
    });
}

struct Ptrs {
    q: SendPtr<u8>,
    scale: SendPtr<f32>,
    zero: SendPtr<i32>,
    outliers: SendPtr<f32>,
}

/// One row: outlier values copied out, the rest quantized without them.
fn quantize_one(
    table: &dispatch::Table,
    row: &[f32],
    q: &mut [u8],
    mode: ActQuant,
    outliers: &[u32],
    ov: &mut [f32],
) -> (f32, i32) {
    for (t, &o) in outliers.iter().enumerate() {
        ov[t] = row[o as usize];
    }
    // SAFETY: the table's kernels match this CPU; `q` has ≥ row.len() bytes; `outliers` are ascending
    // and below k (checked by `resize`).
    unsafe { (table.quantize_row)(row, q, mode, outliers) }
}

fn resize(out: &mut QuantRows, m: usize, k: usize, outliers: &[u32]) -> usize {
    assert!(outliers.iter().all(|&o| (o as usize) < k), "outlier channel past k={k}");
    assert!(outliers.windows(2).all(|w| w[0] < w[1]), "outlier channels must be ascending");
    let ld = k.div_ceil(4) * 4;
    out.m = m;
    out.k = k;
    out.ld = ld;
    out.q.resize(m * ld, 0);
    out.scale.resize(m, 0.0);
    out.zero.resize(m, 0);
    out.outlier_idx.clear();
    out.outlier_idx.extend_from_slice(outliers);
    out.outliers.resize(m * outliers.len(), 0.0);
    ld
}

/// [`quantize_rows`] with the kernel of a given table, single-threaded.
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows_with(
    table: &dispatch::Table,
    x: &[f32],
    m: usize,
    k: usize,
    ldx: usize,
    mode: ActQuant,
    outliers: &[u32],
    out: &mut QuantRows,
) {
    assert!(ldx >= k && (m == 0 || x.len() >= (m - 1) * ldx + k), "quantize_rows: input too short");
    let ld = resize(out, m, k, outliers);
    let no = outliers.len();
    for i in 0..m {
        let row = &x[i * ldx..i * ldx + k];
        let q = &mut out.q[i * ld..(i + 1) * ld];
        let ov = &mut out.outliers[i * no..(i + 1) * no];
        let (s, z) = quantize_one(table, row, q, mode, outliers, ov);
        out.scale[i] = s;
        out.zero[i] = z;
    }
}

/// Quantizes one row into `q` (`q.len() ≥ row.len()`; bytes past the row get the zero point) and
/// returns its scale and zero point. Channels in `skip` (ascending, `< row.len()`) are left out of the
/// row's range and their bytes hold the zero point.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel.
pub(crate) type QuantizeRowKernel = unsafe fn(row: &[f32], q: &mut [u8], mode: ActQuant, skip: &[u32]) -> (f32, i32);
