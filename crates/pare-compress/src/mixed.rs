//! Mixed precision under a size budget, for decoders. The sensitivity of every matrix is measured:
//! the mean KL divergence of the next-token distributions (against the float model, on calibration
//! windows) that quantizing that matrix alone to a probe format costs. For the other formats the
//! divergence is estimated from the probe's, scaled by each format's importance-weighted squared
//! error on that matrix (`Σ_rows Σ_j imp_j (w − ŵ)²`, the second-order term that a small weight
//! change adds to the loss). Divergences of separate matrices are taken as additive, and one format
//! per matrix is chosen to minimise their sum at a target bits per weight over every matrix,
//! embeddings included: a multiple-choice knapsack solved by its Lagrangian relaxation, then
//! filled greedily by the best divergence saved per bit.

use crate::error::{CompressError, Result};
use crate::ggml_quant;
use pare_formats::gguf::{GgmlType, dequantize};
use pare_models::llama::Llama;
use pare_models::{Architecture, Batch, Weight};
use std::collections::BTreeMap;

/// The GGUF name of the token embeddings.
pub const EMBEDDINGS: &str = "token_embd.weight";
/// The GGUF name of an untied output projection.
pub const OUTPUT: &str = "output.weight";

/// One matrix's sensitivity.
#[derive(Clone, Debug)]
pub struct Sensitivity {
    /// GGUF name.
    pub name: String,
    /// Weights in the matrix.
    pub weights: usize,
    /// Mean KL divergence with this matrix alone at the probe format (measured).
    pub measured: f64,
    /// Every candidate format with its divergence (the probe's measured, the others estimated).
    pub options: Vec<(GgmlType, f64)>,
}

/// A mixed-precision plan.
#[derive(Clone, Debug)]
pub struct MixedPlan {
    /// Bits per weight asked for.
    pub target_bpw: f64,
    /// Bits per weight of the plan (every matrix, embeddings included).
    pub bpw: f64,
    /// Sum of the chosen formats' divergences (the additive estimate of the model's).
    pub estimated_kld: f64,
    /// The format of every matrix, by GGUF name.
    pub types: BTreeMap<String, GgmlType>,
    /// The measurements it was chosen from.
    pub sensitivities: Vec<Sensitivity>,
}

impl MixedPlan {
    /// The plan as JSON (types by lower-case name, as `--plan` reads them, and the measurements).
    pub fn to_json(&self) -> serde_json::Value {
        let lower = |t: &GgmlType| t.name().to_lowercase();
        serde_json::json!({
            "target_bpw": self.target_bpw,
            "bpw": self.bpw,
            "estimated_kld": self.estimated_kld,
            "types": self.types.iter().map(|(k, t)| (k.clone(), lower(t))).collect::<BTreeMap<_, _>>(),
            "sensitivity": self.sensitivities.iter().map(|s| serde_json::json!({
                "name": s.name,
                "weights": s.weights,
                "measured_kld": s.measured,
                "options": s.options.iter().map(|(t, d)| (lower(t), *d)).collect::<BTreeMap<_, _>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The measurements of a plan's JSON ([`MixedPlan::to_json`]), to choose again at another budget.
pub fn sensitivities_from_json(v: &serde_json::Value) -> Result<Vec<Sensitivity>> {
    let bad = |m: &str| CompressError::Invalid(format!("stored sensitivities: {m}"));
    let list = v["sensitivity"].as_array().ok_or_else(|| bad("no \"sensitivity\" list"))?;
    list.iter()
        .map(|e| {
            let name = e["name"].as_str().ok_or_else(|| bad("an entry without a name"))?.to_string();
            let weights = e["weights"].as_u64().ok_or_else(|| bad(&format!("{name}: no weight count")))? as usize;
            let measured = e["measured_kld"].as_f64().ok_or_else(|| bad(&format!("{name}: no measured KLD")))?;
            let opts = e["options"].as_object().ok_or_else(|| bad(&format!("{name}: no options")))?;
            let options = opts
                .iter()
                .map(|(t, d)| {
                    let ty =
                        crate::gguf_quant::parse_type(t).ok_or_else(|| bad(&format!("{name}: unknown type {t}")))?;
                    let d = d
                        .as_f64()
                        .filter(|d| d.is_finite())
                        .ok_or_else(|| bad(&format!("{name}: {t}: not a number")))?;
                    Ok((ty, d))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Sensitivity { name, weights, measured, options })
        })
        .collect()
}

/// Bits per weight of a block format.
fn bits(ty: GgmlType) -> f64 {
    ty.bits_per_weight().expect("a written type")
}

/// Calibration tokens as `window`-token sequences (the text's tokens concatenated and cut; at most
/// `max_tokens` of them). Errors when the text does not fill one window.
pub fn windows(tokens: &[u32], window: usize, max_tokens: usize) -> Result<Batch> {
    if window == 0 || max_tokens < window {
        return Err(CompressError::Invalid(format!(
            "{max_tokens} calibration tokens asked: less than one window of {window}"
        )));
    }
    let n = (tokens.len().min(max_tokens) / window) * window;
    if n == 0 {
        return Err(CompressError::Invalid(format!(
            "the calibration text gives {} tokens, shorter than one window of {window}",
            tokens.len()
        )));
    }
    let seqs: Vec<Vec<u32>> = tokens[..n].chunks_exact(window).map(<[u32]>::to_vec).collect();
    Ok(Batch::pad(&seqs, 0))
}

/// Row-wise log-softmax of `rows × v` logits.
fn log_softmax_rows(logits: &mut [f32], v: usize) {
    let rows = logits.len() / v;
    let shared = pare_kernels::par::SharedRows::new(logits, rows, v);
    pare_kernels::par::for_each_row_block(rows, 1, rows >= 2, |b| {
        for row in b.rows_mut(&shared).chunks_exact_mut(v) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + row.iter().map(|&x| f64::from((x - m).exp())).sum::<f64>().ln() as f32;
            for x in row.iter_mut() {
                *x -= lse;
            }
        }
    });
}

/// The float model's next-token distributions on a batch, and the states entering each layer.
struct Reference {
    /// `states[l]`: hidden states entering layer `l` (`states[layers]`: the last layer's output).
    states: Vec<Vec<f32>>,
    /// Log-probabilities of the real (unpadded) rows, `rows × vocab`.
    logp: Vec<f32>,
    /// Their probabilities.
    p: Vec<f32>,
}

/// The real rows of `hidden` (`batch.tokens() × h`).
fn real_rows(batch: &Batch, hidden: &[f32], h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(hidden.len());
    for (r, _) in batch.mask.iter().enumerate().filter(|(_, m)| **m != 0) {
        out.extend_from_slice(&hidden[r * h..(r + 1) * h]);
    }
    out
}

impl Reference {
    fn new(model: &Llama, batch: &Batch) -> Self {
        let h = model.hidden();
        let mut x = model.embed_batch(batch);
        let mut states = vec![x.clone()];
        for l in 0..model.layers() {
            model.run_layer(l, batch, &mut x, None);
            states.push(x.clone());
        }
        let mut logp = model.output_logits(&real_rows(batch, &x, h));
        log_softmax_rows(&mut logp, model.config.vocab);
        let p = logp.iter().map(|v| v.exp()).collect();
        Reference { states, logp, p }
    }

    /// Mean KL(reference ‖ model) over the real rows, the model run from layer `from` (its input
    /// state taken from the reference) or, with `None`, from the embeddings.
    fn kld(&self, model: &Llama, batch: &Batch, from: Option<usize>) -> f64 {
        let (h, v) = (model.hidden(), model.config.vocab);
        let (mut x, start) = match from {
            Some(l) => (self.states[l].clone(), l),
            None => (model.embed_batch(batch), 0),
        };
        for l in start..model.layers() {
            model.run_layer(l, batch, &mut x, None);
        }
        let mut lq = model.output_logits(&real_rows(batch, &x, h));
        log_softmax_rows(&mut lq, v);
        let rows = lq.len() / v;
        let parts = std::sync::Mutex::new(0f64);
        pare_kernels::par::for_each_chunk(rows, |range| {
            let sum: f64 = range
                .map(|r| {
                    let at = r * v..(r + 1) * v;
                    let (p, lp, lq) = (&self.p[at.clone()], &self.logp[at.clone()], &lq[at]);
                    p.iter().zip(lp).zip(lq).map(|((&p, &a), &b)| f64::from(p) * f64::from(a - b)).sum::<f64>().max(0.0)
                })
                .sum();
            *parts.lock().unwrap_or_else(|e| e.into_inner()) += sum;
        });
        parts.into_inner().unwrap_or_else(|e| e.into_inner()) / rows.max(1) as f64
    }
}

/// `Σ_rows Σ_j imp_j (w − ŵ)²` of `w` (`rows × cols`) quantized to `ty` (importance-weighted when
/// `imp` is given; its weights are also the error's), and the dequantized values.
fn weighted_error(ty: GgmlType, w: &[f32], rows: usize, cols: usize, imp: Option<&[f32]>) -> Result<(f64, Vec<f32>)> {
    let bytes = ggml_quant::quantize(ty, w, rows, cols, imp).map_err(CompressError::Invalid)?;
    let mut back = vec![0f32; w.len()];
    dequantize(ty, &bytes, &mut back).map_err(CompressError::Invalid)?;
    let mut e = 0f64;
    for (a, b) in w.chunks_exact(cols).zip(back.chunks_exact(cols)) {
        for j in 0..cols {
            let d = f64::from(a[j] - b[j]);
            e += imp.map_or(1.0, |q| f64::from(q[j])) * d * d;
        }
    }
    Ok((e, back))
}

/// Where a matrix of the model lives: a Linear of a layer, the token embeddings (also the output
/// when it is tied), or an untied output projection.
#[derive(Clone, Copy)]
enum Site {
    Linear(usize, &'static str),
    Embeddings,
    Output,
}

fn weight_of(model: &Llama, s: Site) -> &Weight {
    match s {
        Site::Linear(l, n) => &model.linear(l, n).weight,
        Site::Embeddings => model.token_embeddings(),
        Site::Output => &model.output().weight,
    }
}

fn set_weight(model: &mut Llama, s: Site, w: Weight) {
    match s {
        Site::Linear(l, n) => model.linear_mut(l, n).weight = w,
        Site::Embeddings => model.set_token_embeddings(w),
        Site::Output => model.output_mut().weight = w,
    }
}

/// Measures every matrix of `model` (held in f32): the divergence of `probe` measured on `batch`,
/// the other `candidates(name, cols)` estimated. `importance` (mean x² per input column, by GGUF
/// name) weighs both the rounding and the error.
pub fn sensitivities(
    model: &mut Llama,
    batch: &Batch,
    importance: &BTreeMap<String, Vec<f32>>,
    probe: GgmlType,
    candidates: &dyn Fn(&str, usize) -> Vec<GgmlType>,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Sensitivity>> {
    model.check_batch(batch)?;
    let reference = Reference::new(model, batch);
    let mut sites: Vec<(String, Site)> = model
        .linear_ids()
        .into_iter()
        .map(|(l, n)| (format!("{}.weight", model.linear_name(l, n)), Site::Linear(l, n)))
        .collect();
    sites.push((EMBEDDINGS.to_string(), Site::Embeddings));
    if !model.is_tied() {
        sites.push((OUTPUT.to_string(), Site::Output));
    }
    let mut out = Vec::with_capacity(sites.len());
    for (i, (name, site)) in sites.iter().enumerate() {
        let original = weight_of(model, *site).clone();
        let (rows, cols) = (original.out_features(), original.in_features());
        let w = original.to_dense();
        let imp = importance.get(name).map(Vec::as_slice);
        let keep = candidates(name, cols);
        let mut options = Vec::new();
        let mut probe_error = None;
        for ty in keep.iter().copied().chain((!keep.contains(&probe)).then_some(probe)) {
            let (e, back) = weighted_error(ty, &w, rows, cols, imp)?;
            if ty == probe {
                set_weight(model, *site, Weight::dense_f32(&back, rows, cols));
                let from = match site {
                    Site::Linear(l, _) => Some(*l),
                    Site::Embeddings => None,
                    Site::Output => Some(model.layers()),
                };
                probe_error = Some((e, reference.kld(model, batch, from)));
                set_weight(model, *site, original.clone());
            }
            options.push((ty, e));
        }
        let (pe, measured) = probe_error.expect("the probe was measured");
        let options = options
            .into_iter()
            .filter(|(t, _)| keep.contains(t))
            .map(|(t, e)| (t, if pe > 0.0 { measured * e / pe } else { 0.0 }))
            .collect();
        if (i + 1) % 16 == 0 || i + 1 == sites.len() {
            log(&format!("sensitivity: {}/{} matrices", i + 1, sites.len()));
        }
        out.push(Sensitivity { name: name.clone(), weights: rows * cols, measured, options });
    }
    Ok(out)
}

/// Checks that `target_bpw` is a positive budget that the smallest candidate of every matrix
/// (`(weights, candidates)`) fits: the error names the least reachable bits per weight.
pub fn check_budget(items: &[(usize, Vec<GgmlType>)], target_bpw: f64) -> Result<()> {
    if !(target_bpw.is_finite() && target_bpw > 0.0) {
        return Err(CompressError::Invalid(format!(
            "--bpw {target_bpw}: a bits-per-weight budget is a positive number"
        )));
    }
    if items.iter().any(|(_, c)| c.is_empty()) {
        return Err(CompressError::Invalid("a matrix has no candidate format that fits its rows".into()));
    }
    let total: f64 = items.iter().map(|(w, _)| *w as f64).sum();
    let smallest = |c: &[GgmlType]| c.iter().copied().min_by(|a, b| bits(*a).total_cmp(&bits(*b))).unwrap();
    let floor: f64 = items.iter().map(|(w, c)| *w as f64 * bits(smallest(c))).sum();
    if floor > target_bpw * total * (1.0 + 1e-12) {
        let mut kinds: Vec<String> = items.iter().map(|(_, c)| smallest(c).name()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        return Err(CompressError::Invalid(format!(
            "--bpw {target_bpw}: below the {:.3} bits per weight of the smallest formats that fit every matrix ({})",
            floor / total,
            kinds.join(", ")
        )));
    }
    Ok(())
}

/// The formats of least summed divergence at `target_bpw` bits per weight (every matrix counted).
/// Errors when even the smallest candidates exceed the budget.
pub fn allocate(sens: &[Sensitivity], target_bpw: f64) -> Result<MixedPlan> {
    if let Some(s) = sens.iter().find(|s| s.options.is_empty()) {
        return Err(CompressError::Invalid(format!("{}: no candidate format fits its rows", s.name)));
    }
    let items: Vec<(usize, Vec<GgmlType>)> =
        sens.iter().map(|s| (s.weights, s.options.iter().map(|o| o.0).collect())).collect();
    check_budget(&items, target_bpw)?;
    let total: f64 = sens.iter().map(|s| s.weights as f64).sum();
    let budget = target_bpw * total;
    let cost = |s: &Sensitivity, k: usize| s.weights as f64 * bits(s.options[k].0);
    let cheapest = |s: &Sensitivity| {
        (0..s.options.len())
            .min_by(|&a, &b| cost(s, a).total_cmp(&cost(s, b)).then(s.options[a].1.total_cmp(&s.options[b].1)))
            .unwrap()
    };
    // Lagrangian relaxation: each matrix minimises divergence + λ·bits; the smallest λ within budget.
    let pick = |lambda: f64| -> Vec<usize> {
        sens.iter()
            .map(|s| {
                (0..s.options.len())
                    .min_by(|&a, &b| {
                        (s.options[a].1 + lambda * cost(s, a))
                            .total_cmp(&(s.options[b].1 + lambda * cost(s, b)))
                            .then(cost(s, a).total_cmp(&cost(s, b)))
                    })
                    .unwrap()
            })
            .collect()
    };
    let spent = |c: &[usize]| -> f64 { sens.iter().zip(c).map(|(s, &k)| cost(s, k)).sum() };
    let mut choice = pick(0.0);
    if spent(&choice) > budget {
        let (mut lo, mut hi) = (0f64, 1f64);
        while spent(&pick(hi)) > budget {
            hi *= 2.0;
            if hi > 1e30 {
                break;
            }
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if spent(&pick(mid)) > budget { lo = mid } else { hi = mid }
        }
        choice = pick(hi);
        if spent(&choice) > budget {
            choice = sens.iter().map(cheapest).collect();
        }
        // Fill what is left: the change saving most divergence per added bit, while one fits.
        loop {
            let left = budget - spent(&choice);
            let mut best: Option<(usize, usize, f64)> = None;
            for (i, s) in sens.iter().enumerate() {
                let (c0, d0) = (cost(s, choice[i]), s.options[choice[i]].1);
                for k in 0..s.options.len() {
                    let (dc, dd) = (cost(s, k) - c0, d0 - s.options[k].1);
                    if dd > 0.0 && dc <= left {
                        let gain = if dc <= 0.0 { f64::INFINITY } else { dd / dc };
                        if best.is_none_or(|b| gain > b.2) {
                            best = Some((i, k, gain));
                        }
                    }
                }
            }
            match best {
                Some((i, k, _)) => choice[i] = k,
                None => break,
            }
        }
    }
    Ok(MixedPlan {
        target_bpw,
        bpw: spent(&choice) / total,
        estimated_kld: sens.iter().zip(&choice).map(|(s, &k)| s.options[k].1).sum(),
        types: sens.iter().zip(&choice).map(|(s, &k)| (s.name.clone(), s.options[k].0)).collect(),
        sensitivities: sens.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, weights: usize, opts: &[(GgmlType, f64)]) -> Sensitivity {
        Sensitivity { name: name.into(), weights, measured: opts[0].1, options: opts.to_vec() }
    }

    /// Every assignment, by brute force: the least divergence within budget.
    fn brute(sens: &[Sensitivity], budget_bpw: f64) -> f64 {
        let total: f64 = sens.iter().map(|s| s.weights as f64).sum();
        let mut best = f64::INFINITY;
        let n: usize = sens.iter().map(|s| s.options.len()).product();
        for mut code in 0..n {
            let (mut b, mut d) = (0.0, 0.0);
            for s in sens {
                let k = code % s.options.len();
                code /= s.options.len();
                b += s.weights as f64 * bits(s.options[k].0);
                d += s.options[k].1;
            }
            if b <= budget_bpw * total * (1.0 + 1e-12) {
                best = best.min(d);
            }
        }
        best
    }

    #[test]
    fn allocation_is_within_budget_and_near_the_best_assignment() {
        use GgmlType::*;
        let sens = vec![
            s("a", 1000, &[(Q4_0, 0.30), (Q5_0, 0.12), (Q6_K, 0.05), (Q8_0, 0.01)]),
            s("b", 4000, &[(Q4_0, 0.02), (Q5_0, 0.008), (Q6_K, 0.003), (Q8_0, 0.0005)]),
            s("c", 2000, &[(Q4_0, 0.10), (Q5_0, 0.04), (Q8_0, 0.004)]),
            s("d", 500, &[(Q4_0, 0.50), (Q5_0, 0.2), (Q8_0, 0.02)]),
        ];
        for target in [4.5, 4.8, 5.0, 5.5, 6.0, 7.0, 8.5] {
            let p = allocate(&sens, target).unwrap();
            assert!(p.bpw <= target + 1e-9, "{target}: {}", p.bpw);
            let best = brute(&sens, target);
            assert!(p.estimated_kld <= best * 1.15 + 1e-12, "{target}: {} vs best {best}", p.estimated_kld);
        }
        // More budget never costs divergence.
        let a = allocate(&sens, 5.0).unwrap().estimated_kld;
        let b = allocate(&sens, 6.0).unwrap().estimated_kld;
        assert!(b <= a);
        // The most sensitive per bit gets the bits first.
        let p = allocate(&sens, 4.7).unwrap();
        assert_ne!(p.types["d"], Q4_0);
        assert_eq!(p.types["b"], Q4_0);
        let e = allocate(&sens, 4.4).unwrap_err().to_string();
        assert!(e.contains("below the 4.500 bits per weight") && e.contains("Q4_0"), "{e}");
        assert!(allocate(&sens, f64::NAN).is_err());
        // The stored measurements give the same plan again.
        let back = sensitivities_from_json(&allocate(&sens, 5.0).unwrap().to_json()).unwrap();
        assert_eq!(allocate(&back, 5.0).unwrap().types, allocate(&sens, 5.0).unwrap().types);
    }

    #[test]
    fn windows_cut_the_text_and_refuse_less_than_one() {
        let t: Vec<u32> = (0..300).collect();
        let b = windows(&t, 128, 1000).unwrap();
        assert_eq!((b.batch, b.seq), (2, 128));
        assert_eq!(b.ids[128], 128);
        let b = windows(&t, 128, 200).unwrap();
        assert_eq!(b.batch, 1);
        let e = windows(&t[..100], 128, 1000).unwrap_err().to_string();
        assert!(e.contains("100 tokens, shorter than one window of 128"), "{e}");
        assert!(windows(&t, 128, 64).unwrap_err().to_string().contains("64 calibration tokens asked"));
    }
}
