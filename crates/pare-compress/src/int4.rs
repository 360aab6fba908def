//! Group-wise symmetric int4 weights (compressed-tensors' `pack-quantized` with the `group` strategy):
//! codes in −8..=7, one f16 scale per `group` consecutive inputs of a row, `w ≈ d · q`. Each group's
//! scale is its value of largest magnitude over −8 (the full code range, as llama.cpp's Q4_0), rounded
//! to f16 before the codes are rounded against it, so the stored grid is the one the codes were chosen
//! on. Groups are multiples of 32 so that pare runs them as Q4_0 blocks.

use crate::error::{CompressError, Result};

/// Checks that `group` suits every `(tensor, inputs)`: a positive multiple of 32 dividing the inputs.
pub fn check_group(group: usize, matrices: &[(&str, usize)]) -> Result<()> {
    if group == 0 || !group.is_multiple_of(32) {
        return Err(CompressError::Invalid(format!(
            "--group {group}: int4 groups are multiples of 32 (pare runs them as Q4_0 blocks of 32); try 32 or 64"
        )));
    }
    for (name, k) in matrices {
        if !k.is_multiple_of(group) {
            return Err(CompressError::Invalid(format!(
                "--group {group} does not divide the {k} inputs of {name}; groups that fit every matrix: {}",
                fitting(matrices)
            )));
        }
    }
    Ok(())
}

/// The multiples of 32 that divide every matrix's inputs.
fn fitting(matrices: &[(&str, usize)]) -> String {
    let k = matrices.iter().map(|m| m.1).min().unwrap_or(0);
    let v: Vec<String> =
        (32..=k).step_by(32).filter(|g| matrices.iter().all(|m| m.1 % g == 0)).map(|g| g.to_string()).collect();
    v.join(", ")
}

/// Rounds `n × k` weights to codes and f16 scales (as bits), group by group.
pub fn quantize_groups(w: &[f32], n: usize, k: usize, group: usize) -> (Vec<i8>, Vec<u16>) {
    assert!(w.len() == n * k && k.is_multiple_of(group), "quantize_groups: {}×{k} by {group}", n);
    let mut codes = vec![0i8; n * k];
    let mut scales = Vec::with_capacity(n * k / group);
    for (ws, qs) in w.chunks_exact(group).zip(codes.chunks_exact_mut(group)) {
        let max = ws.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = half::f16::from_f32(max / -8.0);
        let df = d.to_f32();
        if df != 0.0 {
            for (q, &v) in qs.iter_mut().zip(ws) {
                *q = (v / df).round().clamp(-8.0, 7.0) as i8;
            }
        }
        scales.push(d.to_bits());
    }
    (codes, scales)
}

/// The `quantization_config` block of a model whose Linear layers are int4 in groups of `group`.
pub fn quantization_config(group: usize) -> serde_json::Value {
    serde_json::json!({
        "quant_method": pare_formats::quant_config::QUANT_METHOD,
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group",
                        "group_size": group, "dynamic": false, "observer": "minmax"},
            "input_activations": null,
            "output_activations": null
        }},
        "ignore": ["lm_head"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_span_the_range_and_stay_within_a_step() {
        // Half a step inside the grid; a value of the other sign beyond 7·d is clamped there (as Q4_0).
        let w: Vec<f32> = (0..128).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let (codes, scales) = quantize_groups(&w, 2, 64, 32);
        assert_eq!(scales.len(), 4);
        let t = pare_formats::pack_quantized::Int4Tensor {
            codes: codes.clone(),
            scales: scales.clone(),
            n: 2,
            k: 64,
            group: 32,
        };
        let back = t.dequantize();
        for (g, ws) in w.chunks_exact(32).enumerate() {
            let ds = half::f16::from_bits(scales[g]).to_f32();
            let d = ds.abs();
            assert!(codes[g * 32..(g + 1) * 32].contains(&-8), "the extreme takes −8");
            for (a, b) in ws.iter().zip(&back[g * 32..(g + 1) * 32]) {
                let bound = if *a / ds > 7.0 { 1.01 * d } else { 0.5 * d };
                assert!((a - b).abs() <= bound * (1.0 + 1e-3) + 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn groups_must_be_multiples_of_32_that_divide_every_matrix() {
        let m = [("q", 576), ("down", 1536)];
        assert!(check_group(32, &m).is_ok() && check_group(64, &m).is_ok());
        let e = check_group(128, &m).unwrap_err().to_string();
        assert!(e.contains("does not divide the 576 inputs of q") && e.contains("32, 64, 96, 192"), "{e}");
        assert!(check_group(48, &m).unwrap_err().to_string().contains("multiples of 32"));
        assert!(check_group(0, &m).is_err());
    }
}
