//! Multi-head scaled dot-product attention in f32, one (sequence, head) pair per task:
//! `softmax(Q_h K_hᵀ / √d + mask) V_h`, built from the dispatched GEMM and softmax kernels.

use crate::dispatch::{self, Table};
use crate::gemm_f32::{BView, Epilogue, GemmF32Args, NR, PackedF32};
use crate::par::{self, SendPtr};
use std::cell::RefCell;

/// Shape of a batched attention problem. Q, K, V and the output hold `batch · seq` rows (sequence `b`
/// at rows `b·seq ..`), head `h` at columns `h·head_dim ..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence (padded length).
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
}

struct Scratch {
    k: PackedF32,
    v: PackedF32,
    scores: Vec<f32>,
    bias: Vec<f32>,
    inv_sum: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        k: PackedF32::empty(),
        v: PackedF32::empty(),
        scores: Vec::new(),
        bias: Vec::new(),
        inv_sum: Vec::new(),
    });
}

#[allow(clippy::too_many_arguments)]
fn check(q: &[f32], k: &[f32], v: &[f32], ld: usize, mask: Option<&[u8]>, s: AttentionShape, out: &[f32], ldo: usize) {
    let width = s.heads * s.head_dim;
    let rows = s.batch * s.seq;
    assert!(ld >= width && ldo >= width, "attention: strides smaller than heads × head_dim");
    if rows > 0 {
        let need = (rows - 1) * ld + width;
        assert!(q.len() >= need && k.len() >= need && v.len() >= need, "attention: Q, K or V too short");
        assert!(out.len() >= (rows - 1) * ldo + width, "attention: output too short");
    }
    if let Some(m) = mask {
        assert_eq!(m.len(), rows, "attention: mask must have batch × seq entries");
    }
}

/// Attention over all sequences and heads, split across the current rayon pool.
/// `mask[b·seq + j] == 0` removes key `j` of sequence `b`; `None` attends to every key.
#[allow(clippy::too_many_arguments)]
pub fn attention_f32(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    mask: Option<&[u8]>,
    shape: AttentionShape,
    out: &mut [f32],
    ldo: usize,
) {
    check(q, k, v, ld, mask, shape, out, ldo);
    let table = dispatch::table();
    let outp = SendPtr(out.as_mut_ptr());
    par::for_each_chunk(shape.batch * shape.heads, |tasks| {
        for t in tasks {
            // SAFETY: shapes checked; task t = (b, h) writes only rows of sequence b, columns of head h.
            unsafe { head(table, q, k, v, ld, mask, shape, t / shape.heads, t % shape.heads, outp, ldo) };
        }
    });
}

/// Single-threaded attention with the kernels of `table` (tests and benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn attention_f32_with(
    table: &Table,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    mask: Option<&[u8]>,
    shape: AttentionShape,
    out: &mut [f32],
    ldo: usize,
) {
    check(q, k, v, ld, mask, shape, out, ldo);
    let outp = SendPtr(out.as_mut_ptr());
    for t in 0..shape.batch * shape.heads {
        // SAFETY: shapes checked; tasks run one after another.
        unsafe { head(table, q, k, v, ld, mask, shape, t / shape.heads, t % shape.heads, outp, ldo) };
    }
}

/// One (sequence `b`, head `h`) pair.
///
/// # Safety
/// Shapes passed `check`; no other thread writes the output block of (b, h).
#[allow(clippy::too_many_arguments)]
unsafe fn head(
    table: &Table,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    mask: Option<&[u8]>,
    s: AttentionShape,
    b: usize,
    h: usize,
    out: SendPtr<f32>,
    ldo: usize,
) {
    let (n, d) = (s.seq, s.head_dim);
    if n == 0 {
        return;
    }
    let off = b * n * ld + h * d;
    SCRATCH.with_borrow_mut(|sc| {
        sc.scores.resize(n * n, 0.0);
        sc.inv_sum.resize(n, 0.0);
        sc.k.repack_rows(&k[off..], ld, n, d);
        let scale = Epilogue { alpha: 1.0 / (d as f32).sqrt(), ..Epilogue::default() };
        let args = GemmF32Args {
            a: &q[off..],
            lda: ld,
            b: sc.k.view(),
            c: SendPtr(sc.scores.as_mut_ptr()),
            ldc: n,
            epi: scale,
        };
        // SAFETY: Q block n × d at stride ld, scores n × n owned by this thread.
        unsafe { (table.gemm_f32)(&args, 0..sc.k.panels(), 0..n) };

        let bias = mask.map(|m| {
            sc.bias.clear();
            sc.bias.extend(m[b * n..(b + 1) * n].iter().map(|&x| if x != 0 { 0.0 } else { f32::NEG_INFINITY }));
            &sc.bias[..]
        });
        for (row, inv) in sc.scores.chunks_exact_mut(n).zip(sc.inv_sum.iter_mut()) {
            // SAFETY: the table's kernels match this CPU; bias has n values.
            let sum = unsafe { (table.softmax)(row, bias) };
            *inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        }

        // V is read in place when its head width fills whole panels, else packed.
        let vb = if d.is_multiple_of(NR) {
            BView::strided(&v[off..], n, d, ld)
        } else {
            sc.v.repack_cols(&v[off..], ld, n, d);
            sc.v.view()
        };
        let args = GemmF32Args {
            a: &sc.scores,
            lda: n,
            b: vb,
            // SAFETY: the output block of (b, h) starts inside `out` (checked shapes).
            c: SendPtr(unsafe { out.get().add(b * n * ldo + h * d) }),
            ldc: ldo,
            // The softmax division happens here, one factor per row.
            epi: Epilogue { row_scale: Some(&sc.inv_sum), ..Epilogue::default() },
        };
        // SAFETY: probabilities n × n; output block n × d at stride ldo, written by this task only.
        unsafe { (table.gemm_f32)(&args, 0..vb.panels(), 0..n) };
    });
}

/// One query row attending to `n` cached positions (decoding): `out = softmax(scale · K·q) · V`,
/// row `p` of K and V at `p · ld ..`; `scores` is scratch of at least `n` floats.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel; slices checked by
/// [`attend_row_f32`].
pub(crate) type AttendRowKernel =
    unsafe fn(q: &[f32], k: &[f32], v: &[f32], ld: usize, n: usize, scale: f32, scores: &mut [f32], out: &mut [f32]);

/// [`AttendRowKernel`] with the dispatched kernels, checked.
#[allow(clippy::too_many_arguments)]
pub fn attend_row_f32(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_row_f32_with(dispatch::table(), q, k, v, ld, n, scale, scores, out)
}

/// [`attend_row_f32`] with the kernels of `table`.
#[allow(clippy::too_many_arguments)]
pub fn attend_row_f32_with(
    table: &Table,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    ld: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = q.len();
    assert!(ld >= d && out.len() == d && scores.len() >= n, "attend_row: shapes");
    assert!(n == 0 || (k.len() >= (n - 1) * ld + d && v.len() >= (n - 1) * ld + d), "attend_row: K or V too short");
    // SAFETY: shapes checked; tables are only built for tiers this CPU has.
    unsafe { (table.attend_row)(q, k, v, ld, n, scale, scores, out) }
}
