//! GPTQ (Frantar et al. 2023) onto llama.cpp's 32-value block formats: each Linear's weight is
//! quantized column by column, every column's rounding error spread over the columns not yet
//! quantized through the upper Cholesky factor of the damped inverse Hessian `H = XᵀX` of its
//! calibration inputs, with lazy updates in blocks of 128 columns. A block's grid (its f16 scale, and
//! minimum) is chosen when GPTQ reaches the block's first column, from the weights as updated so far,
//! by the format's importance-weighted search with `diag(H)` as the importance; the block's columns
//! are then rounded onto that grid one at a time. Layers are quantized in order, each calibrated on
//! the outputs of the already-quantized ones, through the model seam.

use crate::error::{CompressError, Result};
use crate::ggml_quant;
use crate::prune::obs;
use crate::prune::{Calibration, gram};
use pare_formats::gguf::GgmlType;
use pare_models::{Architecture, Weight};
use std::collections::BTreeMap;

/// Columns per lazy-update block.
const LAZY: usize = 128;

/// Values per block of the formats GPTQ writes.
const QK: usize = 32;

/// The formats GPTQ writes.
pub fn supports(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0)
}

/// The formats whose every block holds an exact zero (symmetric grids), so pruned weights stay
/// pruned: Q4_0, Q5_0, Q8_0 (Q4_1 and Q5_1 store a minimum, and their grid rarely holds 0).
pub fn holds_zero(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0)
}

/// Options of [`quantize_model`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GptqOptions {
    /// Weights that are exactly zero (pruned) stay zero: they are stored as the grid's zero code
    /// and their removal error is spread like any rounding error (joint pruning and quantization).
    pub keep_zeros: bool,
    /// Act-order: columns quantized by decreasing input energy `diag(H)`, every block's grid chosen
    /// first ([`gptq`]).
    pub act_order: bool,
}

/// The grid of one block: value of code `q` is `d·q + m`, codes in `lo..=hi`.
#[derive(Clone, Copy, Debug)]
struct Grid {
    d: f32,
    m: f32,
    lo: i32,
    hi: i32,
}

impl Grid {
    fn code(&self, w: f32) -> i32 {
        if self.d == 0.0 {
            // Every code holds `m`.
            return self.lo.max(0);
        }
        (((w - self.m) / self.d).round() as i32).clamp(self.lo, self.hi)
    }

    fn value(&self, q: i32) -> f32 {
        self.d * q as f32 + self.m
    }

    /// The code of an exact zero, on a symmetric grid.
    fn zero(&self) -> i32 {
        if self.d == 0.0 { self.lo.max(0) } else { (-self.m / self.d).round() as i32 }
    }
}

fn f16(b: &[u8]) -> f32 {
    pare_kernels::qblock::f16_to_f32([b[0], b[1]])
}

/// The grid the format's own search picks for `x` (one block of a row whose mean square is
/// `sigma2`) weighted by `imp`.
fn grid(ty: GgmlType, x: &[f32], imp: &[f32], sigma2: f32) -> Grid {
    let mut bytes = vec![0u8; ty.block().expect("a block format").1];
    ggml_quant::quantize_blocks(ty, x, Some(imp), sigma2, &mut bytes);
    match ty {
        // Codes are stored offset by 8 / 16; the grid works on the offset codes.
        GgmlType::Q4_0 => Grid { d: f16(&bytes), m: -8.0 * f16(&bytes), lo: 0, hi: 15 },
        GgmlType::Q5_0 => Grid { d: f16(&bytes), m: -16.0 * f16(&bytes), lo: 0, hi: 31 },
        GgmlType::Q4_1 => Grid { d: f16(&bytes), m: f16(&bytes[2..]), lo: 0, hi: 15 },
        GgmlType::Q5_1 => Grid { d: f16(&bytes), m: f16(&bytes[2..]), lo: 0, hi: 31 },
        GgmlType::Q8_0 => Grid { d: f16(&bytes), m: 0.0, lo: -127, hi: 127 },
        _ => unreachable!("checked by supports"),
    }
}

/// The stored block of `codes` on grid `g`.
fn pack(ty: GgmlType, g: &Grid, codes: &[i32], out: &mut [u8]) {
    let h = |v: f32| half::f16::from_f32(v).to_le_bytes();
    match ty {
        GgmlType::Q8_0 => {
            out[..2].copy_from_slice(&h(g.d));
            for (o, &q) in out[2..34].iter_mut().zip(codes) {
                *o = q as i8 as u8;
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            out[..2].copy_from_slice(&h(g.d));
            let at = if ty == GgmlType::Q4_1 {
                out[2..4].copy_from_slice(&h(g.m));
                4
            } else {
                2
            };
            for j in 0..16 {
                out[at + j] = codes[j] as u8 | ((codes[j + 16] as u8) << 4);
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            out[..2].copy_from_slice(&h(g.d));
            let at = if ty == GgmlType::Q5_1 {
                out[2..4].copy_from_slice(&h(g.m));
                4
            } else {
                2
            };
            let mut qh = 0u32;
            for j in 0..16 {
                let (a, b) = (codes[j] as u32, codes[j + 16] as u32);
                out[at + 4 + j] = (a & 0xF) as u8 | (((b & 0xF) as u8) << 4);
                qh |= ((a >> 4) & 1) << j;
                qh |= ((b >> 4) & 1) << (j + 16);
            }
            out[at..at + 4].copy_from_slice(&qh.to_le_bytes());
        }
        _ => unreachable!("checked by supports"),
    }
}

/// GPTQ of `w` (`n × k`) to `ty` with the prepared inverse-Hessian factor `p` and importance `imp`
/// (`diag(H)`): returns the stored bytes and, in `w`, the values they hold. Entries `pinned` (pruned
/// weights) are stored as zero, which needs a format that [`holds_zero`].
///
/// With `order` (act-order: `order[i]` is the column quantized `i`-th, `p` prepared from `H` with
/// rows and columns in that order), every block's grid is chosen first, from the weights as given
/// ("static groups": blocks are no longer reached column after column), and the columns are then
/// rounded onto their block's grid in that order.
#[allow(clippy::too_many_arguments)]
pub fn gptq(
    ty: GgmlType,
    w: &mut [f32],
    n: usize,
    k: usize,
    p: &obs::Prepared,
    imp: &[f32],
    pinned: Option<&[bool]>,
    order: Option<&[usize]>,
) -> Vec<u8> {
    assert!(supports(ty) && k.is_multiple_of(QK) && p.k == k);
    assert!(pinned.is_none() || holds_zero(ty), "pinned zeros need a grid holding 0");
    assert!(order.is_none_or(|o| o.len() == k), "act-order needs one position per column");
    let pin = |i: usize| pinned.is_some_and(|p| p[i]);
    let (_, bb) = ty.block().expect("a block format");
    let nb = k / QK;
    let hinv = &p.hinv;
    let mut out = vec![0u8; n * nb * bb];
    // Column `i` of the working copy is column `pos[i]` of `w`.
    let pos: Vec<usize> = order.map_or_else(|| (0..k).collect(), <[usize]>::to_vec);
    let mut wd: Vec<f64> = (0..n * k).map(|i| f64::from(w[i / k * k + pos[i % k]])).collect();
    // Each row's mean square, for the search's weights (as the format's own row quantizer has it).
    let sigma2: Vec<f32> = w.chunks_exact(k).map(|r| r.iter().map(|v| v * v).sum::<f32>() / k as f32).collect();
    let block_grid = |r: usize, b: usize, x: &dyn Fn(usize) -> f32| {
        let v: Vec<f32> = (b * QK..(b + 1) * QK).map(|c| if pin(r * k + c) { 0.0 } else { x(c) }).collect();
        grid(ty, &v, &imp[b * QK..(b + 1) * QK], sigma2[r])
    };
    // Static grids (act-order): every block's, from the weights as given.
    let fixed: Vec<Grid> = if order.is_some() {
        (0..n * nb).map(|i| block_grid(i / nb, i % nb, &|c| w[i / nb * k + c])).collect()
    } else {
        Vec::new()
    };
    let mut grids = vec![Grid { d: 0.0, m: 0.0, lo: 0, hi: 0 }; n];
    let mut codes = vec![0i32; n * k];
    let mut i1 = 0;
    while i1 < k {
        let i2 = (i1 + LAZY).min(k);
        let cnt = i2 - i1;
        let mut err = vec![0f64; n * cnt];
        for i in 0..cnt {
            let col = i1 + i;
            let orig = pos[col];
            if order.is_none() && col % QK == 0 {
                // The block's grid, from its weights as updated so far.
                for (r, g) in grids.iter_mut().enumerate() {
                    *g = block_grid(r, col / QK, &|c| wd[r * k + c] as f32);
                }
            }
            let d = hinv[col * k + col];
            let hrow = &hinv[col * k + i1..col * k + i2];
            for r in 0..n {
                let g = if order.is_some() { fixed[r * nb + orig / QK] } else { grids[r] };
                let wv = wd[r * k + col];
                let q = if pin(r * k + orig) { g.zero() } else { g.code(wv as f32) };
                codes[r * k + orig] = q;
                let qv = f64::from(g.value(q));
                let e = (wv - qv) / d;
                err[r * cnt + i] = e;
                wd[r * k + col] = qv;
                if e != 0.0 {
                    let row = &mut wd[r * k + col + 1..r * k + i2];
                    for (x, hv) in row.iter_mut().zip(&hrow[i + 1..]) {
                        *x -= e * hv;
                    }
                }
            }
            if order.is_none() && (col + 1) % QK == 0 {
                let b = col / QK;
                for r in 0..n {
                    let at = (r * nb + b) * bb;
                    pack(ty, &grids[r], &codes[r * k + col + 1 - QK..r * k + col + 1], &mut out[at..at + bb]);
                }
            }
        }
        obs::spread_right(&mut wd, &err, hinv, n, k, i1..i2);
        i1 = i2;
    }
    if order.is_some() {
        for r in 0..n {
            for b in 0..nb {
                let at = (r * nb + b) * bb;
                pack(ty, &fixed[r * nb + b], &codes[r * k + b * QK..r * k + (b + 1) * QK], &mut out[at..at + bb]);
            }
        }
    }
    for (i, v) in wd.iter().enumerate() {
        w[i / k * k + pos[i % k]] = *v as f32;
    }
    out
}

/// Act-order: columns by decreasing `diag(H)` (ties by index), and `H` with rows and columns in
/// that order.
pub fn act_order(h: &[f64], k: usize) -> (Vec<usize>, Vec<f64>) {
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| h[b * k + b].total_cmp(&h[a * k + a]).then(a.cmp(&b)));
    let hp = (0..k * k).map(|i| h[order[i / k] * k + order[i % k]]).collect();
    (order, hp)
}

/// GPTQ of every Linear of `model` (held in f32) to the type `types` gives it by checkpoint name
/// (Linears it leaves out stay as they are), layer by layer on `cal`. Returns the stored bytes by
/// checkpoint name; the model ends holding the quantized values.
pub fn quantize_model(
    model: &mut dyn Architecture,
    cal: &mut Calibration,
    types: &dyn Fn(&str) -> Option<GgmlType>,
    opts: &GptqOptions,
    log: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, (GgmlType, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    for l in 0..model.layers() {
        for group in model.input_groups() {
            // Linears whose rows are not whole blocks are left to the plan (its fallback, or its error).
            let todo: Vec<(&str, GgmlType)> = group
                .iter()
                .filter(|n| model.linear(l, n).in_features().is_multiple_of(QK))
                .filter_map(|n| types(&model.linear_name(l, n)).map(|t| (*n, t)))
                .collect();
            if todo.is_empty() {
                continue;
            }
            let (x, k) = cal.capture_reaching(model, l, group[0])?;
            let h = gram(&x, x.len() / k, k);
            let imp: Vec<f32> = (0..k).map(|i| h[i * k + i] as f32).collect();
            let (order, prepared) = if opts.act_order {
                let (order, hp) = act_order(&h, k);
                (Some(order), obs::prepare(&hp, k)?)
            } else {
                (None, obs::prepare(&h, k)?)
            };
            for (name, ty) in todo {
                if !supports(ty) {
                    return Err(CompressError::Invalid(format!(
                        "GPTQ writes Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, not {}",
                        ty.name()
                    )));
                }
                let full = model.linear_name(l, name);
                let lin = model.linear_mut(l, name);
                let (n, kk) = (lin.out_features(), lin.in_features());
                let mut w = lin.weight.to_dense();
                let pinned: Option<Vec<bool>> = opts.keep_zeros.then(|| w.iter().map(|v| *v == 0.0).collect());
                if pinned.is_some() && !holds_zero(ty) {
                    return Err(CompressError::Invalid(format!(
                        "{full}: {} cannot store pruned weights as zeros (its grid has a minimum); use Q4_0, Q5_0 or Q8_0",
                        ty.name()
                    )));
                }
                let bytes = gptq(ty, &mut w, n, kk, &prepared, &imp, pinned.as_deref(), order.as_deref());
                lin.weight = Weight::dense_f32(&w, n, kk);
                log(&format!("{full}: GPTQ to {}{}", ty.name(), if opts.act_order { ", act-order" } else { "" }));
                out.insert(full, (ty, bytes));
            }
        }
        cal.advance(model, l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pare_formats::gguf::dequantize;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    /// ‖X(W − Q)ᵀ‖² for inputs `x` (`t × k`).
    fn output_error(x: &[f32], t: usize, k: usize, w: &[f32], q: &[f32], n: usize) -> f64 {
        let mut e = 0f64;
        for r in 0..t {
            for o in 0..n {
                let d: f64 = (0..k).map(|c| f64::from(x[r * k + c]) * f64::from(w[o * k + c] - q[o * k + c])).sum();
                e += d * d;
            }
        }
        e
    }

    #[test]
    fn gptq_stores_what_it_computes_and_beats_rounding_on_correlated_inputs() {
        let (n, k, t) = (16, 128, 512);
        let w = data(n * k, 3);
        // Correlated inputs with uneven scales: where error feedback pays.
        let base = data(t * 8, 5);
        let x: Vec<f32> = (0..t * k)
            .map(|i| {
                let (r, c) = (i / k, i % k);
                base[r * 8 + c % 8] * (1.0 + (c % 5) as f32) + 0.05 * base[(r * 8 + c) % (t * 8)]
            })
            .collect();
        let h = gram(&x, t, k);
        let p = obs::prepare(&h, k).unwrap();
        let imp: Vec<f32> = (0..k).map(|i| h[i * k + i] as f32).collect();
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
            let mut q = w.clone();
            let bytes = gptq(ty, &mut q, n, k, &p, &imp, None, None);
            let mut back = vec![0f32; n * k];
            dequantize(ty, &bytes, &mut back).unwrap();
            let worst = back.iter().zip(&q).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{}: stored values differ from GPTQ's by {worst}", ty.name());
            let rtn = ggml_quant::quantize(ty, &w, n, k, None).unwrap();
            let mut r = vec![0f32; n * k];
            dequantize(ty, &rtn, &mut r).unwrap();
            let (eg, er) = (output_error(&x, t, k, &w, &q, n), output_error(&x, t, k, &w, &r, n));
            assert!(eg < 0.8 * er, "{}: GPTQ output error {eg:.3e} vs nearest {er:.3e}", ty.name());
            // Act-order: the same guarantees, columns visited by decreasing input energy.
            let (order, hp) = act_order(&h, k);
            assert!(order.windows(2).all(|o| h[o[0] * k + o[0]] >= h[o[1] * k + o[1]]));
            let pa = obs::prepare(&hp, k).unwrap();
            let mut qa = w.clone();
            let bytes = gptq(ty, &mut qa, n, k, &pa, &imp, None, Some(&order));
            dequantize(ty, &bytes, &mut back).unwrap();
            let worst = back.iter().zip(&qa).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{} act-order: stored values differ from GPTQ's by {worst}", ty.name());
            let ea = output_error(&x, t, k, &w, &qa, n);
            assert!(ea < 0.8 * er, "{}: act-order output error {ea:.3e} vs nearest {er:.3e}", ty.name());
        }
    }

    #[test]
    fn pinned_zeros_stay_zero_and_gptq_recovers_part_of_the_pruning_error() {
        let (n, k, t) = (16, 128, 512);
        let w = data(n * k, 7);
        let base = data(t * 8, 9);
        let x: Vec<f32> = (0..t * k)
            .map(|i| {
                let (r, c) = (i / k, i % k);
                base[r * 8 + c % 8] * (1.0 + (c % 3) as f32) + 0.05 * base[(r * 8 + c) % (t * 8)]
            })
            .collect();
        let h = gram(&x, t, k);
        let p = obs::prepare(&h, k).unwrap();
        let imp: Vec<f32> = (0..k).map(|i| h[i * k + i] as f32).collect();
        // Half of every row pruned (the smaller magnitudes).
        let mut pruned = w.clone();
        crate::prune::magnitude(&mut pruned, 0.5);
        let pinned: Vec<bool> = pruned.iter().map(|v| *v == 0.0).collect();
        for ty in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
            let mut q = pruned.clone();
            let bytes = gptq(ty, &mut q, n, k, &p, &imp, Some(&pinned), None);
            let mut back = vec![0f32; n * k];
            dequantize(ty, &bytes, &mut back).unwrap();
            for (i, (&b, &pin)) in back.iter().zip(&pinned).enumerate() {
                assert!(!pin || b == 0.0, "{}: pinned weight {i} stored as {b}", ty.name());
                assert_eq!(b, q[i], "{}: stored value {i} differs from GPTQ's", ty.name());
            }
            // Rounding the pruned weights to nearest, against GPTQ from the same input.
            let rtn = ggml_quant::quantize(ty, &pruned, n, k, None).unwrap();
            let mut r = vec![0f32; n * k];
            dequantize(ty, &rtn, &mut r).unwrap();
            let (eg, er) = (output_error(&x, t, k, &pruned, &q, n), output_error(&x, t, k, &pruned, &r, n));
            assert!(eg < 0.8 * er, "{}: GPTQ error {eg:.3e} vs nearest {er:.3e}", ty.name());
            // From the dense weights with the mask pinned, the pruning error is spread too.
            let mut j = w.clone();
            gptq(ty, &mut j, n, k, &p, &imp, Some(&pinned), None);
            assert!(j.iter().zip(&pinned).all(|(v, &pin)| !pin || *v == 0.0));
            let (order, hp) = act_order(&h, k);
            let mut ja = w.clone();
            let bytes = gptq(ty, &mut ja, n, k, &obs::prepare(&hp, k).unwrap(), &imp, Some(&pinned), Some(&order));
            dequantize(ty, &bytes, &mut back).unwrap();
            for (i, (&b, &pin)) in back.iter().zip(&pinned).enumerate() {
                assert!(!pin || b == 0.0, "{} act-order: pinned weight {i} stored as {b}", ty.name());
                assert_eq!(b, ja[i], "{} act-order: stored value {i} differs from GPTQ's", ty.name());
            }
            let (eg, er) = (output_error(&x, t, k, &w, &j, n), output_error(&x, t, k, &w, &r, n));
            assert!(eg < 0.8 * er, "{}: joint error {eg:.3e} vs prune-then-round {er:.3e}", ty.name());
        }
    }
}
