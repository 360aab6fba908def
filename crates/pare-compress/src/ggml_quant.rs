//! Quantization of weight rows to llama.cpp's block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
//! Q6_K), byte for byte in llama.cpp's layouts so llama.cpp and the `gguf` package read the result.
//!
//! Without importance weights each format is quantized as llama.cpp's reference quantizer does
//! (`quantize_row_*_ref` in ggml-quants.c), operation for operation in f32, so the bytes equal
//! llama-quantize's. With importance weights (mean x² of each input column over calibration text,
//! llama.cpp's imatrix) each block's scale (and minimum) is searched to minimise the weighted squared
//! error, as llama.cpp's `quantize_row_*_impl` do.
//!
//! Dequantization is [`pare_formats::gguf::dequantize`].

// Index loops mirror the reference quantizers operation for operation (their float results depend
// on the order).
#![allow(clippy::needless_range_loop)]

use pare_formats::gguf::GgmlType;

/// Values per K-quant super-block.
pub const QK_K: usize = 256;

const GROUP_MAX_EPS: f32 = 1e-15;

/// llama.cpp's `nearest_int`: round half to even through the float adder (valid for |f| ≤ 4194303).
fn nearest_int(f: f32) -> i32 {
    ((f + 12_582_912.0f32).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

fn f16_val(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// The formats this module writes.
pub const TYPES: [GgmlType; 8] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Whether rows can be written as `ty`: a block format of [`TYPES`], or F32 / F16.
fn writes(ty: GgmlType) -> bool {
    TYPES.contains(&ty) || ty == GgmlType::F32 || ty == GgmlType::F16
}

/// Quantizes `rows × cols` values (row-major) to `ty`, with optional importance weights (`cols`
/// values, one per input column, the same for every row). Errors when `cols` is not a whole number of
/// blocks of `ty`, or `ty` is not a block format written here.
pub fn quantize(
    ty: GgmlType,
    w: &[f32],
    rows: usize,
    cols: usize,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, String> {
    let (be, bb) =
        ty.block().filter(|_| writes(ty)).ok_or_else(|| format!("pare does not write GGML {}", ty.name()))?;
    if !cols.is_multiple_of(be) {
        return Err(format!("rows of {cols} values are not whole blocks of {be} for {}", ty.name()));
    }
    assert_eq!(w.len(), rows * cols, "quantize: {} values for {rows}×{cols}", w.len());
    if let Some(q) = importance {
        assert_eq!(q.len(), cols, "quantize: {} importance weights for {cols} columns", q.len());
    }
    let rb = cols / be * bb;
    let mut out = vec![0u8; rows * rb];
    // Rows are independent: split over the kernels' threads.
    let shared = pare_kernels::par::SharedRows::new(&mut out, rows, rb);
    pare_kernels::par::for_each_row_block(rows, 1, rows >= 16, |b| {
        let o = b.rows_mut(&shared);
        for (x, o) in w[b.range().start * cols..b.range().end * cols].chunks_exact(cols).zip(o.chunks_exact_mut(rb)) {
            quantize_row(ty, x, importance, o);
        }
    });
    Ok(out)
}

/// One row into `out` (its bytes).
fn quantize_row(ty: GgmlType, x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    // Row variance of the legacy formats' importance weighting.
    let sigma2 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    quantize_blocks(ty, x, qw, sigma2, out);
}

/// Whole blocks `x` of a row whose mean square is `sigma2` (the legacy formats' importance weights
/// are `importance · √(σ²_row + x²)`) into `out`.
pub fn quantize_blocks(ty: GgmlType, x: &[f32], qw: Option<&[f32]>, sigma2: f32, out: &mut [u8]) {
    let (be, bb) = ty.block().expect("a written type");
    assert!(writes(ty), "quantize_blocks: {}", ty.name());
    assert!(x.len().is_multiple_of(be) && out.len() == x.len() / be * bb, "quantize_blocks: sizes");
    for (b, (xb, ob)) in x.chunks_exact(be).zip(out.chunks_exact_mut(bb)).enumerate() {
        let qb = qw.map(|q| &q[b * be..(b + 1) * be]);
        match ty {
            GgmlType::F32 => ob.copy_from_slice(&xb[0].to_le_bytes()),
            GgmlType::F16 => ob.copy_from_slice(&f16_bits(xb[0])),
            GgmlType::Q8_0 => q8_0(xb, ob),
            GgmlType::Q4_0 => match qb {
                None => q4_0_ref(xb, ob),
                Some(q) => q4_0_weighted(xb, &weights(q, xb, sigma2), ob),
            },
            GgmlType::Q4_1 => match qb {
                None => qn_1_ref(xb, 15, ob),
                Some(q) => qn_1_weighted(xb, 15, &weights(q, xb, sigma2), ob),
            },
            GgmlType::Q5_0 => match qb {
                None => q5_0_ref(xb, ob),
                Some(q) => q5_0_weighted(xb, &weights(q, xb, sigma2), ob),
            },
            GgmlType::Q5_1 => match qb {
                None => qn_1_ref(xb, 31, ob),
                Some(q) => qn_1_weighted(xb, 31, &weights(q, xb, sigma2), ob),
            },
            GgmlType::Q4_K => qn_k(xb, 15, qb, ob),
            GgmlType::Q5_K => qn_k(xb, 31, qb, ob),
            GgmlType::Q6_K => q6_k(xb, qb, ob),
            _ => unreachable!("checked"),
        }
    }
}

/// Per-value weights of the legacy formats: importance × √(σ²_row + x²).
fn weights(q: &[f32], x: &[f32], sigma2: f32) -> Vec<f32> {
    q.iter().zip(x).map(|(q, x)| q * (sigma2 + x * x).sqrt()).collect()
}

fn q8_0(x: &[f32], o: &mut [u8]) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    o[..2].copy_from_slice(&f16_bits(d));
    for (q, v) in o[2..34].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

/// The value of largest magnitude, sign kept (first of equals).
fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn q4_0_ref(x: &[f32], o: &mut [u8]) {
    let d = signed_max(x) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    o[..2].copy_from_slice(&f16_bits(d));
    for j in 0..16 {
        let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let hi = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        o[2 + j] = lo | (hi << 4);
    }
}

fn q4_0_weighted(x: &[f32], w: &[f32], o: &mut [u8]) {
    let mut l = [0i8; 32];
    let d = make_qx_quants(x, 8, &mut l, Some(w));
    o[..2].copy_from_slice(&f16_bits(d));
    for j in 0..16 {
        o[2 + j] = l[j] as u8 | ((l[j + 16] as u8) << 4);
    }
}

fn pack_q5(l: &[u8; 32], o: &mut [u8]) {
    let mut qh = 0u32;
    for j in 0..16 {
        o[4 + j] = (l[j] & 0xF) | ((l[j + 16] & 0xF) << 4);
        qh |= u32::from((l[j] & 0x10) >> 4) << j;
        qh |= u32::from((l[j + 16] & 0x10) >> 4) << (j + 16);
    }
    o[..4].copy_from_slice(&qh.to_le_bytes());
}

fn q5_0_ref(x: &[f32], o: &mut [u8]) {
    let d = signed_max(x) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    o[..2].copy_from_slice(&f16_bits(d));
    let mut l = [0u8; 32];
    for (l, v) in l.iter_mut().zip(x) {
        *l = ((v * id + 16.5) as i8).min(31) as u8;
    }
    pack_q5(&l, &mut o[2..]);
}

fn q5_0_weighted(x: &[f32], w: &[f32], o: &mut [u8]) {
    let mut l = [0i8; 32];
    let d = make_qx_quants(x, 16, &mut l, Some(w));
    o[..2].copy_from_slice(&f16_bits(d));
    pack_q5(&l.map(|v| v as u8), &mut o[2..]);
}

/// Q4_1 (`nmax` 15) and Q5_1 (31), reference: the block's range in `nmax` steps.
fn qn_1_ref(x: &[f32], nmax: u8, o: &mut [u8]) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / f32::from(nmax);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    o[..2].copy_from_slice(&f16_bits(d));
    o[2..4].copy_from_slice(&f16_bits(min));
    let mut l = [0u8; 32];
    for (l, v) in l.iter_mut().zip(x) {
        let q = ((v - min) * id + 0.5) as u8;
        // Q4_1 clamps to 15; Q5_1's reference does not clamp (only its low 5 bits are stored).
        *l = if nmax == 15 { q.min(15) } else { q };
    }
    pack_n_1(&l, nmax, o);
}

fn pack_n_1(l: &[u8; 32], nmax: u8, o: &mut [u8]) {
    if nmax == 15 {
        for j in 0..16 {
            o[4 + j] = l[j] | (l[j + 16] << 4);
        }
    } else {
        pack_q5(l, &mut o[4..]);
    }
}

fn qn_1_weighted(x: &[f32], nmax: u8, w: &[f32], o: &mut [u8]) {
    let mut l = [0u8; 32];
    let mut aux = [0u8; 32];
    let (d, the_min) = make_qkx3_quants(x, i32::from(nmax), Some(w), &mut l, &mut aux, -0.9, 0.05, 36);
    o[..2].copy_from_slice(&f16_bits(d));
    o[2..4].copy_from_slice(&f16_bits(-the_min));
    pack_n_1(&l, nmax, o);
}

/// llama.cpp's `make_qx_quants` (rmse_type 1): a symmetric scale searched around `-nmax/max`
/// minimising the weighted error (weights `x²` when none are given). `L = l + nmax`.
fn make_qx_quants(x: &[f32], nmax: i32, l_out: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let w = |i: usize| qw.map_or(x[i] * x[i], |q| q[i]);
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        sumlx += w(i) * x[i] * l as f32;
        suml2 += w(i) * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (mut slx, mut sl2) = (0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            slx += w(i) * x[i] * l as f32;
            sl2 += w(i) * l as f32 * l as f32;
        }
        if sl2 > 0.0 && slx * slx > best * sl2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (l + nmax) as i8;
            }
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    scale
}

/// llama.cpp's `make_qkx2_quants` (with weights) or `make_qkx3_quants` (`v3`): an asymmetric scale
/// and minimum searched over `nstep + 1` candidate ranges, keeping the least weighted squared error.
/// Returns `(scale, -min)`.
#[allow(clippy::too_many_arguments)]
fn make_qkx_quants(
    x: &[f32],
    nmax: i32,
    weights: &[f32],
    l_out: &mut [u8],
    aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    v3: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min || (v3 && max <= min) {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best += weights[i] * (diff * diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = if v3 {
                let v = iscale * (x[i] - min);
                if v > 0.0 { nearest_int(v.min(nmax as f32)) } else { 0 }
            } else {
                nearest_int(iscale * (x[i] - min)).clamp(0, nmax)
            };
            aux[i] = l as u8;
            let w = weights[i];
            sum_l += w * l as f32;
            sum_l2 += w * l as f32 * l as f32;
            sum_xl += w * l as f32 * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur += weights[i] * (diff * diff);
            }
            if cur < best {
                l_out[..n].copy_from_slice(&aux[..n]);
                best = cur;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[allow(clippy::too_many_arguments)]
fn make_qkx3_quants(
    x: &[f32],
    nmax: i32,
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let w: Vec<f32> = match weights {
        Some(w) => w.to_vec(),
        None => x.iter().map(|v| v * v).collect(),
    };
    make_qkx_quants(x, nmax, &w, l_out, aux, rmin, rdelta, nstep, true)
}

/// llama.cpp's `make_qp_quants`: non-negative values (sub-block scales) on `0..=nmax` steps of one
/// scale, searched and then refined coordinate by coordinate.
fn make_qp_quants(x: &[f32], nmax: i32, l_out: &mut [u8], qw: &[f32]) -> f32 {
    let n = x.len();
    let max = x.iter().fold(0f32, |a, &v| a.max(v));
    if max < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        l_out[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..n {
        let diff = x[i] - scale * l_out[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        sumlx += qw[i] * x[i] * l as f32;
        suml2 += qw[i] * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = l_out[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l_out[i] as i32 {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// The 12 bytes of Q4_K/Q5_K's eight 6-bit scales and minima.
fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K (`nmax` 15) and Q5_K (31): one super-block of 256.
fn qn_k(x: &[f32], nmax: i32, qw: Option<&[f32]>, o: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut aux = [0u8; 32];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (d, dmin, packed);
    match qw {
        None => {
            let (mut max_scale, mut max_min) = (0f32, 0f32);
            let (rmin, nstep) = if nmax == 15 { (-1.0, 20) } else { (-0.5, 15) };
            for j in 0..8 {
                let xs = &x[32 * j..32 * (j + 1)];
                let av_x = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
                let w: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
                let (s, m) =
                    make_qkx_quants(xs, nmax, &w, &mut l[32 * j..32 * (j + 1)], &mut aux, rmin, 0.1, nstep, false);
                scales[j] = s;
                mins[j] = m;
                if s > max_scale {
                    max_scale = s;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
            for j in 0..8 {
                ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
            }
            packed = pack_scales_k4(&ls, &lm);
            d = max_scale / 63.0;
            dmin = max_min / 63.0;
        }
        Some(q) => {
            let sigma2 = 2.0 * x.iter().map(|v| v * v).sum::<f32>() / QK_K as f32;
            let mut sw = [0f32; 8];
            for j in 0..8 {
                let xs = &x[32 * j..32 * (j + 1)];
                let w: Vec<f32> =
                    q[32 * j..32 * (j + 1)].iter().zip(xs).map(|(q, v)| q * (sigma2 + v * v).sqrt()).collect();
                sw[j] = w.iter().sum();
                let (s, m) =
                    make_qkx3_quants(xs, nmax, Some(&w), &mut l[32 * j..32 * (j + 1)], &mut aux, -0.9, 0.05, 36);
                scales[j] = s;
                mins[j] = m;
            }
            let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
            d = make_qp_quants(&scales, 63, &mut ls, &sw);
            dmin = make_qp_quants(&mins, 63, &mut lm, &sw);
            for j in 0..8 {
                ls[j] = ls[j].min(63);
                lm[j] = lm[j].min(63);
            }
            packed = pack_scales_k4(&ls, &lm);
        }
    }
    o[..2].copy_from_slice(&f16_bits(d));
    o[2..4].copy_from_slice(&f16_bits(dmin));
    o[4..16].copy_from_slice(&packed);
    // Requantized with the stored (f16-rounded) scales.
    let (dd, dm) = (f16_val(d), f16_val(dmin));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let d = dd * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dmj = dm * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dmj) / d).clamp(0, nmax) as u8;
        }
    }
    if nmax == 15 {
        let qs = &mut o[16..144];
        for (c, chunk) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                qs[32 * c + i] = l[chunk + i] | (l[chunk + i + 32] << 4);
            }
        }
    } else {
        let (qh, qs) = o[16..176].split_at_mut(32);
        qh.fill(0);
        for (c, chunk) in (0..QK_K).step_by(64).enumerate() {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for i in 0..32 {
                let (mut l1, mut l2) = (l[chunk + i], l[chunk + i + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[i] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[i] |= m2;
                }
                qs[32 * c + i] = l1 | (l2 << 4);
            }
        }
    }
}

/// Q6_K: one super-block of 256 in 16 sub-blocks of 16, int8 sub-scales.
fn q6_k(x: &[f32], qw: Option<&[f32]>, o: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(
            &x[16 * ib..16 * (ib + 1)],
            32,
            &mut l[16 * ib..16 * (ib + 1)],
            qw.map(|q| &q[16 * ib..16 * (ib + 1)]),
        );
        scales[ib] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        o[..210].fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = 1.0 / iscale;
    o[208..210].copy_from_slice(&f16_bits(d));
    let mut sc = [0i8; 16];
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        o[192 + ib] = sc[ib] as u8;
    }
    let dd = f16_val(d);
    let mut lu = [0u8; QK_K];
    for j in 0..16 {
        let d = dd * f32::from(sc[j]);
        for ii in 0..16 {
            let i = 16 * j + ii;
            lu[i] = if d == 0.0 { l[i] as u8 } else { (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8 };
        }
    }
    let (ql, rest) = o.split_at_mut(128);
    let qh = &mut rest[..64];
    for h in 0..2 {
        let (j, ql, qh) = (128 * h, &mut ql[64 * h..64 * (h + 1)], &mut qh[32 * h..32 * (h + 1)]);
        for i in 0..32 {
            let (q1, q2, q3, q4) = (lu[j + i], lu[j + i + 32], lu[j + i + 64], lu[j + i + 96]);
            ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pare_formats::gguf::dequantize;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f32 / (1u64 << 53) as f32;
                // Mostly small values with a few outliers, like trained weights.
                let v = (u - 0.5) * 0.1;
                if i % 97 == 0 { v * 12.0 } else { v }
            })
            .collect()
    }

    fn rel_rmse(a: &[f32], b: &[f32]) -> f64 {
        let e: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let s: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
        (e / s).sqrt()
    }

    #[test]
    fn every_format_round_trips_within_its_precision() {
        let (rows, cols) = (6, 512);
        let x = data(rows * cols, 7);
        let imp: Vec<f32> = (0..cols).map(|c| 0.2 + (c % 17) as f32 / 4.0).collect();
        // Bound on the relative RMS error by bits (generous; real errors are printed).
        for (ty, bound) in [
            (GgmlType::Q8_0, 0.02),
            (GgmlType::Q6_K, 0.05),
            (GgmlType::Q5_0, 0.1),
            (GgmlType::Q5_1, 0.1),
            (GgmlType::Q5_K, 0.1),
            (GgmlType::Q4_0, 0.2),
            (GgmlType::Q4_1, 0.2),
            (GgmlType::Q4_K, 0.2),
        ] {
            for q in [None, Some(&imp[..])] {
                let bytes = quantize(ty, &x, rows, cols, q).unwrap();
                let mut back = vec![0f32; x.len()];
                dequantize(ty, &bytes, &mut back).unwrap();
                let e = rel_rmse(&x, &back);
                eprintln!("{}: relative RMS error {e:.4} (importance: {})", ty.name(), q.is_some());
                assert!(e < bound, "{}: relative RMS error {e:.4} (importance: {})", ty.name(), q.is_some());
            }
        }
    }

    #[test]
    fn importance_lowers_the_weighted_error() {
        // Columns weighted 1 and 100: the weighted search trades error on the light columns for
        // error on the heavy ones.
        let (rows, cols) = (32, 256);
        let x = data(rows * cols, 11);
        let imp: Vec<f32> = (0..cols).map(|c| if c % 8 == 0 { 100.0 } else { 1.0 }).collect();
        // Q8_0 has no importance-weighted search (llama.cpp's has none either).
        for ty in TYPES.into_iter().filter(|t| *t != GgmlType::Q8_0) {
            let err = |q: Option<&[f32]>| {
                let bytes = quantize(ty, &x, rows, cols, q).unwrap();
                let mut back = vec![0f32; x.len()];
                dequantize(ty, &bytes, &mut back).unwrap();
                x.iter()
                    .zip(&back)
                    .enumerate()
                    .map(|(i, (a, b))| f64::from(imp[i % cols]) * f64::from(a - b).powi(2))
                    .sum::<f64>()
            };
            let (plain, weighted) = (err(None), err(Some(&imp)));
            assert!(weighted < plain, "{}: weighted error {weighted:.3e} vs {plain:.3e}", ty.name());
        }
    }

    #[test]
    fn zero_blocks_and_bad_shapes() {
        for ty in TYPES {
            let bytes = quantize(ty, &vec![0f32; 256], 1, 256, None).unwrap();
            let mut back = vec![1f32; 256];
            dequantize(ty, &bytes, &mut back).unwrap();
            assert!(back.iter().all(|v| *v == 0.0), "{}", ty.name());
        }
        assert!(
            quantize(GgmlType::Q4_K, &vec![0f32; 576], 1, 576, None).unwrap_err().contains("not whole blocks of 256")
        );
        assert!(quantize(GgmlType::Other(20), &[0.0; 32], 1, 32, None).is_err());
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (f, want) in [(0.5f32, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-7.6, -8)] {
            assert_eq!(nearest_int(f), want, "{f}");
        }
    }
}
