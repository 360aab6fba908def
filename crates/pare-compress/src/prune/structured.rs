//! Structured pruning: whole attention heads and FFN neurons removed, leaving smaller dense matrices
//! that the ordinary dense kernels run faster. The units are the model's own
//! ([`pare_models::Architecture::units`]): for BERT a head is 32 columns of the attention output
//! projection and 32 rows of each of query, key and value; for grouped-query attention a unit is one
//! key/value head with the query heads that read it.
//!
//! Selection and reconstruction follow the optimal-brain-surgeon approach for structures (as in
//! ZipLM, Kurtic et al. 2023, and OBC, Frantar & Alistarh 2022) rather than the Fisher-based mask search
//! of Kwon et al. 2022, which needs gradients: the projection reading a structure's output — the
//! attention output projection for a head (32 input columns), the FFN down projection for a neuron (one
//! input column) — is pruned greedily, always removing the structure whose removal raises the
//! calibration error ‖XWᵀ − XW′ᵀ‖² least, and updating the remaining weights (and the bias, treated as
//! an input that is always 1, when the model stores biases) to compensate. Layers are processed in order, each calibrated on the outputs
//! of the already-pruned ones. The same fraction of heads and of neurons goes in every layer.

use super::{Calibration, PruneOptions, Tokenize, gram};
use crate::encode::Structure;
use crate::error::{CompressError, Result};
use crate::linalg::spd_inverse;
use pare_formats::quant_config::LayerShape;
use pare_models::{Architecture, Linear, UnitKind, Weight};
use std::collections::BTreeMap;

/// `[XᵀX, Xᵀ1; 1ᵀX, t]`: the Hessian of `x` (`t × k`) with a constant input appended (for the bias;
/// without `bias`, `XᵀX` alone), dampened, and its inverse.
fn inverse_hessian(x: &[f32], t: usize, k: usize, bias: bool) -> Result<Vec<f64>> {
    let h = gram(x, t, k);
    if !bias {
        let mut a = h;
        super::obs::dampen(&mut a, k);
        return spd_inverse(&a, k);
    }
    let ka = k + 1;
    let mut a = vec![0f64; ka * ka];
    for i in 0..k {
        a[i * ka..i * ka + k].copy_from_slice(&h[i * k..(i + 1) * k]);
    }
    for j in 0..k {
        let s: f64 = (0..t).map(|i| f64::from(x[i * k + j])).sum();
        a[j * ka + k] = s;
        a[k * ka + j] = s;
    }
    a[k * ka + k] = t as f64;
    super::obs::dampen(&mut a, ka);
    spd_inverse(&a, ka)
}

/// Greedy group OBS on `w` (`n × k`) with bias `b` (`hinv` then includes the bias input; without
/// one, it does not): removes `remove` of the `groups` (each a set of input columns), updating the
/// other weights and the bias. Returns the removed group indices.
fn obs_remove_groups(
    w: &mut [f32],
    mut b: Option<&mut [f32]>,
    n: usize,
    k: usize,
    hinv: &mut [f64],
    groups: &[Vec<usize>],
    remove: usize,
) -> Result<Vec<usize>> {
    let ka = k + usize::from(b.is_some());
    // Augmented weights [W | b] in f64.
    let mut wa = vec![0f64; n * ka];
    for r in 0..n {
        for c in 0..k {
            wa[r * ka + c] = f64::from(w[r * k + c]);
        }
        if let Some(b) = b.as_deref() {
            wa[r * ka + k] = f64::from(b[r]);
        }
    }
    let mut alive: Vec<bool> = vec![true; groups.len()];
    // Columns still in play (the bias column always is); removed ones are zero in W and never read.
    let mut live_col = vec![true; ka];
    let mut removed = Vec::new();
    let mut gram = Vec::new();
    let mut colsq = vec![0f64; ka];
    let single = groups.iter().all(|g| g.len() == 1);
    for _ in 0..remove {
        if single {
            colsq.iter_mut().for_each(|v| *v = 0.0);
            for row in wa.chunks_exact(ka).take(n) {
                for (q, &x) in colsq.iter_mut().zip(row) {
                    *q += x * x;
                }
            }
        }
        // Cost of each remaining group: Σ_rows w_G · (H⁻¹_GG)⁻¹ · w_Gᵀ = trace((H⁻¹_GG)⁻¹ · W_Gᵀ W_G).
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for (g, cols) in groups.iter().enumerate().filter(|(g, _)| alive[*g]) {
            let m = cols.len();
            let (cost, inv) = if m == 1 {
                let inv = 1.0 / hinv[cols[0] * ka + cols[0]];
                (colsq[cols[0]] * inv, vec![inv])
            } else {
                let mut blk = vec![0f64; m * m];
                for (a, &ca) in cols.iter().enumerate() {
                    for (bb, &cb) in cols.iter().enumerate() {
                        blk[a * m + bb] = hinv[ca * ka + cb];
                    }
                }
                let inv = spd_inverse(&blk, m)?;
                gram.clear();
                gram.resize(m * m, 0f64);
                for row in wa.chunks_exact(ka).take(n) {
                    for (a, &ca) in cols.iter().enumerate() {
                        let x = row[ca];
                        if x != 0.0 {
                            for (gv, &cb) in gram[a * m..(a + 1) * m].iter_mut().zip(cols) {
                                *gv += x * row[cb];
                            }
                        }
                    }
                }
                (inv.iter().zip(&gram).map(|(i, g)| i * g).sum(), inv)
            };
            if best.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                best = Some((cost, g, inv));
            }
        }
        let (_, g, inv) = best.ok_or_else(|| CompressError::Invalid("no structure left to remove".into()))?;
        let cols = &groups[g];
        let m = cols.len();
        let live: Vec<usize> = (0..ka).filter(|&c| live_col[c]).collect();
        // W ← W − W_G (H⁻¹_GG)⁻¹ H⁻¹_{G,:};  H⁻¹ ← H⁻¹ − H⁻¹_{:,G} (H⁻¹_GG)⁻¹ H⁻¹_{G,:}, on live columns.
        let mut coef = vec![0f64; m * ka]; // (H⁻¹_GG)⁻¹ H⁻¹_{G,:}
        for a in 0..m {
            for (bb, &cb) in cols.iter().enumerate() {
                let f = inv[a * m + bb];
                if f != 0.0 {
                    let h = &hinv[cb * ka..(cb + 1) * ka];
                    let c = &mut coef[a * ka..(a + 1) * ka];
                    for &j in &live {
                        c[j] += f * h[j];
                    }
                }
            }
        }
        let mut wg = vec![0f64; m];
        for r in 0..n {
            for (x, &c) in wg.iter_mut().zip(cols) {
                *x = wa[r * ka + c];
            }
            let row = &mut wa[r * ka..(r + 1) * ka];
            for (a, &x) in wg.iter().enumerate() {
                if x != 0.0 {
                    let c = &coef[a * ka..(a + 1) * ka];
                    for &j in &live {
                        row[j] -= x * c[j];
                    }
                }
            }
            for &c in cols {
                row[c] = 0.0;
            }
        }
        let mut hig = vec![0f64; m];
        for &i in &live {
            for (x, &c) in hig.iter_mut().zip(cols) {
                *x = hinv[i * ka + c];
            }
            let row = &mut hinv[i * ka..(i + 1) * ka];
            for (a, &x) in hig.iter().enumerate() {
                if x != 0.0 {
                    let c = &coef[a * ka..(a + 1) * ka];
                    for &j in &live {
                        row[j] -= x * c[j];
                    }
                }
            }
        }
        for &c in cols {
            live_col[c] = false;
        }
        alive[g] = false;
        removed.push(g);
    }
    for r in 0..n {
        for c in 0..k {
            w[r * k + c] = wa[r * ka + c] as f32;
        }
        if let Some(b) = b.as_deref_mut() {
            b[r] = wa[r * ka + k] as f32;
        }
    }
    removed.sort_unstable();
    Ok(removed)
}

/// Keeps the rows of `lin` (output features) listed in `keep`.
fn keep_rows(lin: &Linear, keep: &[usize]) -> Linear {
    let (n, k) = (lin.out_features(), lin.in_features());
    let w = lin.weight.to_dense();
    debug_assert!(keep.iter().all(|&r| r < n));
    let nw: Vec<f32> = keep.iter().flat_map(|&r| w[r * k..(r + 1) * k].to_vec()).collect();
    Linear { weight: Weight::dense_f32(&nw, keep.len(), k), bias: keep.iter().map(|&r| lin.bias[r]).collect() }
}

/// Keeps the columns of `w` (`n × k`, row-major) listed in `keep`.
fn keep_cols(w: &[f32], n: usize, k: usize, keep: &[usize]) -> Vec<f32> {
    (0..n).flat_map(|r| keep.iter().map(move |&c| w[r * k + c])).collect()
}

/// Number removed out of `total` for `sparsity` (rounded to nearest).
fn to_remove(total: usize, sparsity: f64) -> usize {
    (sparsity * total as f64).round() as usize
}

/// Prunes heads and neurons of `model` in place: the same fraction of each kind of unit in every layer.
pub fn prune(
    model: &mut dyn Architecture,
    tokenize: Tokenize,
    opts: &PruneOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Structure> {
    let layers = model.layers();
    for l in 0..layers {
        for u in model.units(l) {
            if to_remove(u.count, opts.sparsity) >= u.count {
                return Err(CompressError::Invalid(format!(
                    "--sparsity {} would remove all {} {} of layer {l}; a layer keeps at least one",
                    opts.sparsity,
                    u.count,
                    if u.kind == UnitKind::Head { "attention heads" } else { "FFN neurons" }
                )));
            }
        }
    }
    let bias = model.has_bias();
    let mut cal = Calibration::new(model, tokenize, opts)?;
    log(&format!("calibrating on {} samples ({} tokens) of {}", cal.samples, cal.tokens(), cal.source));
    let mut shapes = Vec::with_capacity(layers);
    let mut removed_heads = BTreeMap::new();
    let mut removed_neurons = BTreeMap::new();
    for l in 0..layers {
        let mut counts = Vec::new();
        for u in model.units(l) {
            // Group OBS on the Linear reading the units, then the producers' rows follow.
            let (x, width) = cal.capture(model, l, u.reader);
            let t = x.len() / width.max(1);
            if t == 0 || width != u.count * u.width {
                return Err(CompressError::Invalid(format!(
                    "layer {l}: calibration gave {width} inputs of {} for {} units of {}",
                    u.reader, u.count, u.width
                )));
            }
            let mut hinv = inverse_hessian(&x, t, width, bias)?;
            let reader = model.linear_mut(l, u.reader);
            let n = reader.out_features();
            let mut w = reader.weight.to_dense();
            let mut b = reader.bias.clone();
            let groups: Vec<Vec<usize>> = (0..u.count).map(|g| (g * u.width..(g + 1) * u.width).collect()).collect();
            let gone = obs_remove_groups(
                &mut w,
                bias.then_some(&mut b[..]),
                n,
                width,
                &mut hinv,
                &groups,
                to_remove(u.count, opts.sparsity),
            )?;
            let kept: Vec<usize> = (0..u.count).filter(|g| gone.binary_search(g).is_err()).collect();
            let cols: Vec<usize> = kept.iter().flat_map(|&g| g * u.width..(g + 1) * u.width).collect();
            *reader = Linear { weight: Weight::dense_f32(&keep_cols(&w, n, width, &cols), n, cols.len()), bias: b };
            for &(writer, rows_per) in &u.writers {
                let rows: Vec<usize> = kept.iter().flat_map(|&g| g * rows_per..(g + 1) * rows_per).collect();
                let lin = model.linear_mut(l, writer);
                *lin = keep_rows(lin, &rows);
            }
            model.set_unit_count(l, u.kind, kept.len())?;
            let name = if u.kind == UnitKind::Head { "heads" } else { "FFN neurons" };
            log(&format!(
                "{}: {name} {} → {}{}",
                model.linear_name(l, u.reader),
                u.count,
                kept.len(),
                if u.kind == UnitKind::Head { format!(" (removed {gone:?})") } else { String::new() }
            ));
            counts.push(kept.len());
            match u.kind {
                UnitKind::Head => removed_heads.insert(l, gone),
                UnitKind::Neuron => removed_neurons.insert(l, gone),
            };
        }
        let count = |k: UnitKind| model.units(l).iter().find(|u| u.kind == k).map_or(0, |u| u.count);
        shapes.push(LayerShape { heads: count(UnitKind::Head), intermediate_size: count(UnitKind::Neuron) });
        cal.advance(model, l);
    }
    Ok(Structure { layers: shapes, removed_heads, removed_neurons })
}
