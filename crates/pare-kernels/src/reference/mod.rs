//! Scalar reference kernels: short, obviously correct, the specification and the test oracle of
//! every SIMD kernel. They also serve as the `scalar` tier.

use crate::gemm_f32::{GemmF32Args, NR};
use crate::gemm_i8::GemmI8Args;
use crate::quant::{ActQuant, quantize_value, row_params};
use std::ops::Range;

/// Exact GELU, `x/2 · (1 + erf(x/√2))`.
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Reference GEMM over the panels `panels` of `C` (see [`crate::gemm_f32`]).
///
/// # Safety
/// `args` were checked by `gemm_f32::check`; no other thread writes these panels of `C`.
pub(crate) unsafe fn gemm_f32_kernel(args: &GemmF32Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let (k, n) = (args.b.k(), args.b.n());
    for j in panels.start * NR..(panels.end * NR).min(n) {
        for i in rows.clone() {
            let mut s = 0.0f32;
            for kk in 0..k {
                s += args.a[i * args.lda + kk] * args.b.get(kk, j);
            }
            // SAFETY: (i, j) lies inside the m × n block of C that `check` validated.
            unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(s, i, j) };
        }
    }
}

/// Reference LayerNorm over whole rows.
///
/// # Safety
/// None beyond the shape contract of [`crate::norm::LayerNormKernel`]; `unsafe` only to share its type.
pub(crate) unsafe fn layer_norm_kernel(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    layer_norm(x, gamma, beta, eps)
}

/// Reference LayerNorm (safe form).
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    for row in x.chunks_exact_mut(cols) {
        let mean = row.iter().sum::<f32>() / cols as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * gamma[j] + beta[j];
        }
    }
}

/// Reference softmax numerator of one row.
///
/// # Safety
/// None beyond the shape contract of [`crate::norm::SoftmaxKernel`]; `unsafe` only to share its type.
pub(crate) unsafe fn softmax_kernel(row: &mut [f32], bias: Option<&[f32]>) -> f32 {
    softmax_numerator(row, bias)
}

/// Reference softmax numerator: `row = exp(row + bias − max)`, returning the sum.
pub fn softmax_numerator(row: &mut [f32], bias: Option<&[f32]>) -> f32 {
    if let Some(b) = bias {
        for (v, b) in row.iter_mut().zip(b) {
            *v += b;
        }
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return 0.0;
    }
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// Reference softmax (safe form; all −∞ gives zeros).
pub fn softmax(row: &mut [f32], bias: Option<&[f32]>) {
    let sum = softmax_numerator(row, bias);
    if sum > 0.0 {
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Reference integer GEMM over the panels `panels`.
///
/// # Safety
/// `args` were checked by `gemm_i8::check`; no other thread writes these panels.
pub(crate) unsafe fn gemm_u8s8_kernel(args: &GemmI8Args<'_>, panels: Range<usize>, rows: Range<usize>) {
    let (a, b) = (args.a, args.b);
    for j in panels.start * crate::gemm_i8::NR..(panels.end * crate::gemm_i8::NR).min(b.n()) {
        for i in rows.clone() {
            let mut acc = 0i32;
            for kk in 0..b.k() {
                acc += a.q[i * a.ld + kk] as i32 * b.get(kk, j) as i32;
            }
            // SAFETY: (i, j) inside the checked output, in our panels.
            unsafe { args.store_scalar(acc, i, j) };
        }
    }
}

/// Reference activation quantizer for one row.
///
/// # Safety
/// None beyond the contract of [`crate::quant::QuantizeRowKernel`]; `unsafe` only to share its type.
pub(crate) unsafe fn quantize_row_kernel(row: &[f32], q: &mut [u8], mode: ActQuant, skip: &[u32]) -> (f32, i32) {
    quantize_row(row, q, mode, skip)
}

/// Reference activation quantizer (safe form): channels in `skip` are left out of the range and get
/// the zero point.
pub fn quantize_row(row: &[f32], q: &mut [u8], mode: ActQuant, skip: &[u32]) -> (f32, i32) {
    let kept = || row.iter().enumerate().filter(|(c, _)| !skip.contains(&(*c as u32))).map(|(_, &v)| v);
    let lo = kept().fold(f32::INFINITY, f32::min);
    let hi = kept().fold(f32::NEG_INFINITY, f32::max);
    let (scale, zero) = row_params(lo, hi, mode);
    let inv = 1.0 / scale;
    for (o, &x) in q.iter_mut().zip(row) {
        *o = quantize_value(x, inv, zero);
    }
    q[row.len()..].fill(zero as u8);
    for &c in skip {
        q[c as usize] = zero as u8;
    }
    (scale, zero)
}

/// Reference sparse kernel: rows `rows` of `Cᵀ`, nonzeros in stored order.
///
/// # Safety
/// As [`crate::spmm::SpmmKernel`].
pub(crate) unsafe fn spmm_f32_kernel(args: &crate::spmm::SpmmArgs<'_>, rows: Range<usize>) {
    for j in rows {
        let (cols, vals) = args.w.row(j);
        for i in 0..args.mp {
            let mut s = 0f32;
            for (&c, &v) in cols.iter().zip(vals) {
                s += v * args.at[c as usize * args.mp + i];
            }
            // SAFETY: row j of Cᵀ (mp floats) is ours.
            unsafe { *args.ct.get().add(j * args.mp + i) = s };
        }
    }
}

/// Reference transpose `at[c][i] = a[i][c]`.
///
/// # Safety
/// As [`crate::spmm::TransposeKernel`].
pub(crate) unsafe fn transpose_f32(a: &[f32], lda: usize, m: usize, k: usize, at: *mut f32, mp: usize) {
    assert!(mp >= m);
    for i in 0..m {
        for c in 0..k {
            // SAFETY: element (c, i < m) of the caller's `at`.
            unsafe { *at.add(c * mp + i) = a[i * lda + c] };
        }
    }
}

/// Reference transpose back with the epilogue: `c[i][j] = epi(ct[j][i])`.
///
/// # Safety
/// As [`crate::spmm::UntransposeKernel`].
pub(crate) unsafe fn untranspose_f32(
    ct: &[f32],
    mp: usize,
    n: usize,
    m: usize,
    c: *mut f32,
    ldc: usize,
    epi: &crate::gemm_f32::Epilogue,
) {
    assert!(mp >= m && ldc >= n);
    for i in 0..m {
        for j in 0..n {
            // SAFETY: element (i, j < n) of the caller's `c`.
            unsafe { *c.add(i * ldc + j) = epi.apply(ct[j * mp + i], i, j) };
        }
    }
}

/// Reference sparse integer kernel: rows `rows` of the dequantized `Cᵀ`.
///
/// # Safety
/// As [`crate::spmm_i8::SpmmI8Kernel`].
pub(crate) unsafe fn spmm_u8s8_kernel(args: &crate::spmm_i8::SpmmI8Args<'_>, rows: Range<usize>) {
    for j in rows {
        let (cols, vals) = args.w.row(j);
        for i in 0..args.mp {
            let acc: i32 =
                cols.iter().zip(vals).map(|(&c, &v)| args.qt[c as usize * args.mp + i] as i32 * v as i32).sum();
            // SAFETY: row j of Cᵀ (mp floats) is ours.
            unsafe { *args.ct.get().add(j * args.mp + i) = args.finish(acc, j, i) };
        }
    }
}

/// Reference f64 dot product: four interleaved partial sums (so the compiler vectorises it), then
/// the tail.
pub fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..4 {
            s[t] += x[t] * y[t];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// Reference `y += alpha·x`.
pub fn axpy_f64(y: &mut [f64], alpha: f64, x: &[f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Reference dequantization of one block: llama.cpp's definition, the scale (and minimum) converted
/// from f16, then `d · q` (plus `m`) rounded as two operations.
pub fn dequantize_block(ty: crate::qblock::BlockType, b: &[u8], out: &mut [f32]) {
    use crate::qblock::{BlockType, f16_to_f32};
    let d = f16_to_f32([b[0], b[1]]);
    match ty {
        BlockType::Q6_K => {
            let d = f16_to_f32([b[208], b[209]]);
            for (i, o) in out[..256].iter_mut().enumerate() {
                let (q, s) = q6k(b, i);
                *o = d * s as f32 * q as f32;
            }
        }
        BlockType::Q4_K | BlockType::Q5_K => {
            let dmin = f16_to_f32([b[2], b[3]]);
            for (i, o) in out[..256].iter_mut().enumerate() {
                let (q, s, m) = qk(ty, b, i);
                let (d1, m1) = (d * s as f32, dmin * m as f32);
                *o = d1 * q as f32 - m1;
            }
        }
        BlockType::Q4_0 => {
            for j in 0..16 {
                out[j] = d * ((b[2 + j] & 0x0f) as i32 - 8) as f32;
                out[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
            }
        }
        BlockType::Q4_1 => {
            let m = f16_to_f32([b[2], b[3]]);
            for j in 0..16 {
                out[j] = d * (b[4 + j] & 0x0f) as f32 + m;
                out[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
            }
        }
        BlockType::Q8_0 => {
            for j in 0..32 {
                out[j] = d * (b[2 + j] as i8) as f32;
            }
        }
        BlockType::Q5_0 => {
            for (j, o) in out[..32].iter_mut().enumerate() {
                *o = d * (q5(b, 2, j) - 16) as f32;
            }
        }
        BlockType::Q5_1 => {
            let m = f16_to_f32([b[2], b[3]]);
            for (j, o) in out[..32].iter_mut().enumerate() {
                *o = d * q5(b, 4, j) as f32 + m;
            }
        }
    }
}

/// The 5-bit quant of weight `j` of a Q5 block whose `qh` starts at byte `at` (nibbles follow it).
fn q5(b: &[u8], at: usize, j: usize) -> i32 {
    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let nib = if j < 16 { b[at + 4 + j] & 0x0f } else { b[at + 4 + j - 16] >> 4 };
    (nib as i32) | ((((qh >> j) & 1) as i32) << 4)
}

/// Weight `i` of a Q6_K super-block: its 6-bit quant less 32, and its 16-weight scale.
fn q6k(b: &[u8], i: usize) -> (i32, i32) {
    let (h, l, part) = (i / 128, i % 32, (i % 128) / 32);
    let low = b[64 * h + l + 32 * (part & 1)];
    let low = if part < 2 { low & 0x0f } else { low >> 4 };
    let high = (b[128 + 32 * h + l] >> (2 * part)) & 3;
    ((low | (high << 4)) as i32 - 32, (b[192 + i / 16] as i8) as i32)
}

/// Weight `i` of a Q4_K or Q5_K super-block: its quant, and its sub-block's scale and minimum.
fn qk(ty: crate::qblock::BlockType, b: &[u8], i: usize) -> (i32, i32, i32) {
    let (j, l) = (i / 32, i % 32);
    let (s, m) = crate::qblock::scale_min_k4(j, &b[4..16]);
    let qs = if ty == crate::qblock::BlockType::Q5_K { 48 } else { 16 };
    let byte = b[qs + 32 * (j / 2) + l];
    let mut q = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 } as i32;
    if ty == crate::qblock::BlockType::Q5_K && b[16 + l] & (1 << j) != 0 {
        q += 16;
    }
    (q, s as i32, m as i32)
}

/// Reference dequantization of whole blocks.
///
/// # Safety
/// As [`crate::qblock::DequantBlocksKernel`] (safe here: everything is checked).
pub(crate) unsafe fn dequant_blocks_kernel(ty: crate::qblock::BlockType, src: &[u8], out: &mut [f32]) {
    let bb = ty.block_bytes();
    assert!(crate::qblock::whole_blocks(ty, src, out));
    for (b, o) in src.chunks_exact(bb).zip(out.chunks_exact_mut(ty.weights())) {
        dequantize_block(ty, b, o);
    }
}

/// Reference dequantization of a group of eight interleaved rows: put back one after another,
/// dequantized row by row, and written transposed.
///
/// # Safety
/// As [`crate::qblock::DequantX8Kernel`].
pub(crate) unsafe fn dequant_x8_kernel(ty: crate::qblock::BlockType, group: &[u8], k: usize, out: *mut f32, ld: usize) {
    use crate::qblock::X8;
    let mut rows = vec![0u8; group.len()];
    crate::qblock::deinterleave8(ty, group, k, &mut rows);
    let mut w = vec![0f32; X8 * k];
    // SAFETY: `rows` holds the group's 8 · k / 32 whole blocks.
    unsafe { dequant_blocks_kernel(ty, &rows, &mut w) };
    for r in 0..X8 {
        for kk in 0..k {
            // SAFETY: element (kk, r) of the caller's `out`.
            unsafe { *out.add(kk * ld + r) = w[r * k + kk] };
        }
    }
}

/// Reference block product: each stored row dequantized, then dotted with every token in f32.
///
/// # Safety
/// As [`crate::qblock::GemvBlocksKernel`].
pub(crate) unsafe fn gemv_blocks_kernel(args: &crate::qblock::BlockGemvArgs<'_>, rows: Range<usize>) {
    let k = args.w.k();
    let mut wrow = vec![0f32; k];
    for j in rows {
        // SAFETY: the row's bytes are whole blocks of its type.
        unsafe { dequant_blocks_kernel(args.w.ty(), args.w.row(j), &mut wrow) };
        for i in 0..args.m {
            let x = &args.a[i * args.lda..i * args.lda + k];
            let acc: f32 = x.iter().zip(&wrow).map(|(a, b)| a * b).sum();
            // SAFETY: column j of row i of C is this call's (rows are disjoint between callers).
            unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(acc, i, j) };
        }
    }
}

/// Reference block weights × Q8 activations: per block of 32 the integer dot product of the weight
/// quants (offset removed: `q − 8` for Q4_0; times the 16-weight scales for Q6_K) with the activation
/// quants, then `d_w · d_x · dot (+ m_w · d_x · Σ q_x for Q4_1)`, summed over blocks in f32.
///
/// # Safety
/// As [`crate::qblock::GemvBlocksQ8Kernel`].
pub(crate) unsafe fn gemv_blocks_q8_kernel(args: &crate::qblock::BlockQ8Args<'_>, rows: Range<usize>) {
    use crate::qblock::{BlockType, QK, f16_to_f32};
    let (ty, bb) = (args.w.ty(), args.w.ty().block_bytes());
    let (rb, mut group) = (args.w.row_bytes(), Vec::new());
    for j in rows {
        let wrow = if args.w.is_interleaved() {
            let g0 = j - j % crate::qblock::X8;
            &args.w.rows_in(g0..g0 + crate::qblock::X8, &mut group)[(j - g0) * rb..][..rb]
        } else {
            args.w.row(j)
        };
        for i in 0..args.x.rows {
            let (xq, xd, xs) = args.x.row(i);
            let mut acc = 0f32;
            if matches!(ty, BlockType::Q4_K | BlockType::Q5_K) {
                for (sb, blk) in wrow.chunks_exact(bb).enumerate() {
                    let (d, dmin) = (f16_to_f32([blk[0], blk[1]]), f16_to_f32([blk[2], blk[3]]));
                    for sub in 0..8 {
                        let b = sb * 8 + sub;
                        let (_, s, m) = qk(ty, blk, sub * QK);
                        let dot: i32 = (0..QK).map(|t| qk(ty, blk, sub * QK + t).0 * xq[b * QK + t] as i32).sum();
                        acc += d * xd[b] * (s * dot) as f32 - dmin * m as f32 * xs[b];
                    }
                }
                // SAFETY: column j of row i of C is this call's (rows are disjoint between callers).
                unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(acc, i, j) };
                continue;
            }
            if ty == BlockType::Q6_K {
                for (sb, blk) in wrow.chunks_exact(bb).enumerate() {
                    let d = f16_to_f32([blk[208], blk[209]]);
                    for c in 0..8 {
                        let b = sb * 8 + c;
                        let dot: i32 = (0..QK)
                            .map(|t| {
                                let (q, s) = q6k(blk, c * QK + t);
                                q * s * xq[b * QK + t] as i32
                            })
                            .sum();
                        acc += d * xd[b] * dot as f32;
                    }
                }
                // SAFETY: column j of row i of C is this call's (rows are disjoint between callers).
                unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(acc, i, j) };
                continue;
            }
            for (b, blk) in wrow.chunks_exact(bb).enumerate() {
                let xb = &xq[b * QK..(b + 1) * QK];
                let d = f16_to_f32([blk[0], blk[1]]);
                let (dot, min) = match ty {
                    BlockType::Q4_0 => {
                        let q = |t: usize| {
                            if t < 16 { (blk[2 + t] & 15) as i32 - 8 } else { (blk[2 + t - 16] >> 4) as i32 - 8 }
                        };
                        ((0..QK).map(|t| q(t) * xb[t] as i32).sum::<i32>(), 0.0)
                    }
                    BlockType::Q4_1 => {
                        let q =
                            |t: usize| if t < 16 { (blk[4 + t] & 15) as i32 } else { (blk[4 + t - 16] >> 4) as i32 };
                        ((0..QK).map(|t| q(t) * xb[t] as i32).sum::<i32>(), f16_to_f32([blk[2], blk[3]]) * xs[b])
                    }
                    BlockType::Q8_0 => ((0..QK).map(|t| (blk[2 + t] as i8) as i32 * xb[t] as i32).sum::<i32>(), 0.0),
                    BlockType::Q5_0 => ((0..QK).map(|t| (q5(blk, 2, t) - 16) * xb[t] as i32).sum::<i32>(), 0.0),
                    BlockType::Q5_1 => (
                        (0..QK).map(|t| q5(blk, 4, t) * xb[t] as i32).sum::<i32>(),
                        f16_to_f32([blk[2], blk[3]]) * xs[b],
                    ),
                    BlockType::Q6_K | BlockType::Q4_K | BlockType::Q5_K => unreachable!("super-blocks above"),
                };
                acc += d * xd[b] * dot as f32 + min;
            }
            // SAFETY: column j of row i of C is this call's (rows are disjoint between callers).
            unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(acc, i, j) };
        }
    }
}

/// Reference decode attention of one query row.
///
/// # Safety
/// As [`crate::attention::AttendRowKernel`] (safe here: slices are indexed).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend_row(
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
    for (p, s) in scores[..n].iter_mut().enumerate() {
        *s = q.iter().zip(&k[p * ld..p * ld + d]).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
    let sum = softmax_numerator(&mut scores[..n], None);
    out.fill(0.0);
    for (p, &s) in scores[..n].iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(&v[p * ld..p * ld + d]) {
            *o += s * x;
        }
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    out.iter_mut().for_each(|o| *o *= inv);
}
