//! Activation-aware weight scaling (AWQ, Lin et al. 2024) before block quantization: the input
//! channels of a group of Linears that read the same input are scaled by `s = a^α` (`a` the mean
//! |x| of the channel over the calibration tokens, normalised so that `max(s)·min(s) = 1`), the
//! Linears' columns multiplied by `s` and the producer of the input (the RMSNorm before attention
//! and before the feed-forward, or `ffn_up`'s rows before `ffn_down`) divided by it, so the float
//! model computes the same function while the channels that carry large activations get more of
//! each block's grid. `α` is searched on a grid in `[0, 1]` (step 0.1, refined to 0.05) per group, minimising the group's
//! output error after quantization to its planned format, `Σ tr(Δ H Δᵀ)` over its Linears with
//! `Δ = Q(W·diag(s))·diag(s)⁻¹ − W` and `H = XᵀX` of the calibration inputs; `α = 0` (no scaling)
//! is on the grid, so scaling never raises that error. Layers are scaled in order, each calibrated
//! on the outputs of the already-scaled ones (in float: the scaling itself does not change them).

use crate::error::{CompressError, Result};
use crate::ggml_quant;
use crate::prune::{Calibration, gram};
use pare_formats::gguf::GgmlType;
use pare_kernels::{PackedF32, gemm_f32};
use pare_models::Architecture;

/// Points of the coarse `α` grid: `0, 1/(GRID−1), …, 1`; the best one is then refined by half a
/// step on each side (13 evaluations for a resolution of 0.05).
pub const GRID: usize = 11;

/// What scaling did to one group of Linears.
#[derive(Clone, Debug)]
pub struct GroupScale {
    /// Checkpoint names of the group's Linears.
    pub linears: Vec<String>,
    /// The chosen exponent (0: left unscaled).
    pub alpha: f32,
    /// The group's output error after quantization with the chosen scale, over the error without.
    pub error_ratio: f64,
}

/// `tr(Δ H Δᵀ)` for `Δ` (`n × k`) and `H` packed.
fn quadratic(delta: &[f32], n: usize, k: usize, h: &PackedF32, scratch: &mut Vec<f32>) -> f64 {
    scratch.resize(n * k, 0.0);
    gemm_f32(delta, k, n, h, scratch, k, &Default::default());
    delta.iter().zip(scratch.iter()).map(|(d, e)| f64::from(*d) * f64::from(*e)).sum()
}

/// What the search needs of a group's calibration inputs.
struct Inputs {
    /// Mean square of every input channel (the rounding's importance).
    imp: Vec<f32>,
    /// `XᵀX`, packed.
    h: PackedF32,
}

impl Inputs {
    fn new(h: &[f64], k: usize, t: usize) -> Self {
        let imp = (0..k).map(|i| (h[i * k + i] / t as f64) as f32).collect();
        Inputs { imp, h: PackedF32::from_cols(&h.iter().map(|v| *v as f32).collect::<Vec<_>>(), k, k) }
    }
}

/// Output error of `w` (`n × k`) quantized to `ty` after its columns are scaled by `s`.
fn scaled_error(
    ty: GgmlType,
    w: &[f32],
    n: usize,
    k: usize,
    s: &[f32],
    x: &Inputs,
    scratch: &mut Vec<f32>,
) -> Result<f64> {
    let (imp, h) = (&x.imp, &x.h);
    let ws: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * s[i % k]).collect();
    // Inputs divided by s: their mean square by s².
    let imp_s: Vec<f32> = imp.iter().zip(s).map(|(q, s)| q / (s * s)).collect();
    let bytes = ggml_quant::quantize(ty, &ws, n, k, Some(&imp_s)).map_err(CompressError::Invalid)?;
    let mut q = vec![0f32; n * k];
    pare_formats::gguf::dequantize(ty, &bytes, &mut q).map_err(CompressError::Invalid)?;
    let delta: Vec<f32> = q.iter().enumerate().map(|(i, v)| v / s[i % k] - w[i]).collect();
    Ok(quadratic(&delta, n, k, h, scratch))
}

/// The scale of exponent `alpha` for channel magnitudes `a`, normalised to `max·min = 1`.
pub fn scales(a: &[f32], alpha: f32) -> Vec<f32> {
    let floor = a.iter().copied().fold(0f32, f32::max) * 1e-5 + f32::MIN_POSITIVE;
    let s: Vec<f32> = a.iter().map(|v| v.max(floor).powf(alpha)).collect();
    let (lo, hi) = s.iter().fold((f32::INFINITY, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let norm = lo.sqrt() * hi.sqrt();
    s.iter().map(|v| v / norm).collect()
}

/// Scales every group of `model` whose input can take a scale ([`Architecture::input_scalable`])
/// and whose Linears `types` gives a block format to (by checkpoint name), layer by layer on `cal`.
/// The model is changed in place (its function is unchanged up to rounding).
pub fn scale_model(
    model: &mut dyn Architecture,
    cal: &mut Calibration,
    types: &dyn Fn(&str) -> Option<GgmlType>,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<GroupScale>> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for l in 0..model.layers() {
        for group in model.input_groups() {
            if !model.input_scalable(group[0]) {
                continue;
            }
            let todo: Vec<(&str, GgmlType)> = group
                .iter()
                .filter_map(|n| types(&model.linear_name(l, n)).map(|t| (*n, t)))
                .filter(|(n, t)| {
                    t.block().is_some_and(|(be, _)| be > 1 && model.linear(l, n).in_features().is_multiple_of(be))
                })
                .collect();
            if todo.is_empty() {
                continue;
            }
            let (x, k) = cal.capture_reaching(model, l, group[0])?;
            let t = x.len() / k;
            let mut a = vec![0f64; k];
            for row in x.chunks_exact(k) {
                a.iter_mut().zip(row).for_each(|(a, v)| *a += f64::from(v.abs()));
            }
            let a: Vec<f32> = a.iter().map(|v| (v / t as f64) as f32).collect();
            let h = gram(&x, t, k);
            drop(x);
            let inputs = Inputs::new(&h, k, t);
            drop(h);
            let ws: Vec<(Vec<f32>, usize, GgmlType)> = todo
                .iter()
                .map(|(n, ty)| {
                    let lin = model.linear(l, n);
                    (lin.weight.to_dense(), lin.out_features(), *ty)
                })
                .collect();
            let mut eval = |alpha: f32| -> Result<f64> {
                let s = scales(&a, alpha);
                let mut e = 0.0;
                for (w, n, ty) in &ws {
                    e += scaled_error(*ty, w, *n, k, &s, &inputs, &mut scratch)?;
                }
                Ok(e)
            };
            let step = 1.0 / (GRID - 1) as f32;
            let mut tried = Vec::with_capacity(GRID + 2);
            for g in 0..GRID {
                let alpha = g as f32 * step;
                tried.push((alpha, eval(alpha)?));
            }
            let coarse = tried.iter().copied().min_by(|x, y| x.1.total_cmp(&y.1)).expect("a grid");
            for alpha in [coarse.0 - step / 2.0, coarse.0 + step / 2.0] {
                if (0.0..=1.0).contains(&alpha) {
                    tried.push((alpha, eval(alpha)?));
                }
            }
            let unscaled = tried[0].1;
            let (alpha, best) = tried.iter().copied().min_by(|x, y| x.1.total_cmp(&y.1)).expect("a grid");
            if alpha > 0.0 && !model.fold_input_scale(l, group[0], &scales(&a, alpha)) {
                return Err(CompressError::Invalid(format!(
                    "{}: the model did not take the input scale it offered",
                    model.linear_name(l, group[0])
                )));
            }
            let names: Vec<String> = todo.iter().map(|(n, _)| model.linear_name(l, n)).collect();
            let ratio = if unscaled > 0.0 { best / unscaled } else { 1.0 };
            log(&format!("{}: AWQ α {alpha:.2}, output error {ratio:.3}× unscaled", names.join(", ")));
            out.push(GroupScale { linears: names, alpha, error_ratio: ratio });
        }
        cal.advance(model, l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_normalised_and_alpha_zero_is_one() {
        let a = [0.5f32, 2.0, 8.0, 0.0];
        assert!(scales(&a, 0.0).iter().all(|v| (*v - 1.0).abs() < 1e-6));
        let s = scales(&a, 0.5);
        let (lo, hi) = s.iter().fold((f32::INFINITY, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!((lo * hi - 1.0).abs() < 1e-4 && s.iter().all(|v| v.is_finite() && *v > 0.0));
        assert!(s[2] > s[1] && s[1] > s[0]);
    }

    #[test]
    fn quadratic_is_the_output_error() {
        let (n, k, t) = (5, 64, 40);
        let x = pare_models::testing::random(t * k, 3, 1.0);
        let d = pare_models::testing::random(n * k, 4, 0.1);
        let h = gram(&x, t, k);
        let hp = PackedF32::from_cols(&h.iter().map(|v| *v as f32).collect::<Vec<_>>(), k, k);
        let got = quadratic(&d, n, k, &hp, &mut Vec::new());
        let mut want = 0f64;
        for r in 0..t {
            for o in 0..n {
                let y: f64 = (0..k).map(|c| f64::from(x[r * k + c]) * f64::from(d[o * k + c])).sum();
                want += y * y;
            }
        }
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    }

    #[test]
    fn scaling_helps_when_a_few_channels_carry_large_inputs() {
        // Inputs with a few channels 20× the others: a scale cuts the error (less where the format's
        // minimum already adapts its grid).
        let (n, k, t) = (32, 128, 256);
        let mut x = pare_models::testing::random(t * k, 5, 1.0);
        for row in x.chunks_exact_mut(k) {
            for c in (0..k).step_by(16) {
                row[c] *= 20.0;
            }
        }
        let w = pare_models::testing::random(n * k, 6, 0.05);
        let mut a = vec![0f32; k];
        for row in x.chunks_exact(k) {
            a.iter_mut().zip(row).for_each(|(a, v)| *a += v.abs() / t as f32);
        }
        let h = gram(&x, t, k);
        let inputs = Inputs::new(&h, k, t);
        let mut sc = Vec::new();
        for (ty, bound) in [(GgmlType::Q4_0, 0.8), (GgmlType::Q4_1, 0.95)] {
            let e0 = scaled_error(ty, &w, n, k, &scales(&a, 0.0), &inputs, &mut sc).unwrap();
            let best = (1..GRID)
                .map(|g| {
                    scaled_error(ty, &w, n, k, &scales(&a, g as f32 / (GRID - 1) as f32), &inputs, &mut sc).unwrap()
                })
                .fold(f64::INFINITY, f64::min);
            assert!(best < bound * e0, "{}: best scaled error {best:.3e} vs unscaled {e0:.3e}", ty.name());
        }
    }
}
