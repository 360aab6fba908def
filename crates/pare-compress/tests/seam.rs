//! The model seam on both architectures, on tiny generated models: per-layer calibration hooks equal
//! each model's own forward pass, structural units slice consistently (grouped-query heads
//! included), the writer's view covers every parameter, and pruning and calibration run on a
//! decoder exactly as on an encoder.

use pare_compress::prune::{Method, PruneOptions, Scope, prune_model};
use pare_compress::quantize::calibrate;
use pare_formats::ModelDir;
use pare_models::llama::Llama;
use pare_models::testing::{TinyLlama, TinySpec, tiny_llama_tensors, write_tiny_bert, write_tiny_llama};
use pare_models::{Architecture, Batch, SentenceEncoder, UnitKind, Workspace};

fn llama(spec: &TinyLlama) -> (tempfile::TempDir, Llama) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(dir.path(), spec).unwrap();
    let m = Llama::load_hf(dir.path()).unwrap();
    (dir, m)
}

fn bert() -> (tempfile::TempDir, SentenceEncoder) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), &TinySpec::default()).unwrap();
    let enc = SentenceEncoder::load(&ModelDir::open(dir.path()).unwrap()).unwrap();
    (dir, enc)
}

fn ids(n: usize, seed: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 97) >> 7) % vocab as u32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The state after every layer, through the seam.
fn through_layers(m: &dyn Architecture, b: &Batch) -> Vec<f32> {
    let mut x = m.embed_batch(b);
    for l in 0..m.layers() {
        m.run_layer(l, b, &mut x, None);
    }
    x
}

/// Logits of a Llama's every position of `seq`, through the seam, against its own forward pass.
fn llama_seam_error(m: &Llama, seqs: &[Vec<u32>]) -> f32 {
    let b = Batch::pad(seqs, 0);
    let x = through_layers(m, &b);
    let h = m.config.hidden;
    let mut worst = 0f32;
    for (s, seq) in seqs.iter().enumerate() {
        let rows = &x[s * b.seq * h..(s * b.seq + seq.len()) * h];
        worst = worst.max(max_diff(&m.output_logits(rows), &m.logits(seq).unwrap()));
    }
    worst
}

#[test]
fn llama_layers_through_the_seam_equal_its_forward_pass() {
    let (_d, m) = llama(&TinyLlama::default());
    // Lengths on both sides of the few-query attention path (≤ 8 positions); padded rows ignored.
    let seqs = vec![ids(13, 1, 80), ids(5, 2, 80), ids(9, 3, 80)];
    let err = llama_seam_error(&m, &seqs);
    assert!(err < 1e-4, "seam vs forward: {err}");
}

#[test]
fn bert_layers_through_the_seam_equal_its_forward_pass() {
    let (_d, enc) = bert();
    let b = Batch::pad(&[ids(11, 1, 60), ids(6, 2, 60)], 0);
    let x = through_layers(&enc.model, &b);
    let mut ws = Workspace::default();
    let want = enc.model.forward(&b, &mut ws).unwrap();
    let h = enc.model.hidden();
    for (r, &m) in b.mask.iter().enumerate().filter(|(_, m)| **m != 0) {
        assert!(m == 1);
        assert!(max_diff(&x[r * h..(r + 1) * h], &want[r * h..(r + 1) * h]) < 1e-4, "row {r}");
    }
}

/// Every Linear's captured input equals what the hook of a full layer run sees, for every group.
fn check_capture(m: &dyn Architecture, b: &Batch) {
    let x = m.embed_batch(b);
    for l in 0..m.layers() {
        let mut seen: Vec<(String, Vec<f32>, usize)> = Vec::new();
        let mut y = x.clone();
        m.run_layer(
            l,
            b,
            &mut y,
            Some(&mut |n: &str, v: &[f32], _r: usize, c: usize| seen.push((n.to_string(), v.to_vec(), c))),
        );
        let all: Vec<&str> = m.input_groups().iter().flat_map(|g| g.iter().copied()).collect();
        assert_eq!(seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), all, "{}", m.family());
        for (name, v, c) in &seen {
            assert_eq!(*c, m.linear(l, name).in_features(), "{name}");
            let mut got = Vec::new();
            m.layer_input_of(l, b, &x, name, &mut |_: &str, v: &[f32], _: usize, _: usize| got = v.to_vec());
            assert!(max_diff(&got, v) < 1e-5, "{} layer {l} {name}", m.family());
        }
        // Linears sharing a group see one input.
        for g in m.input_groups() {
            let first = &seen.iter().find(|s| s.0 == g[0]).unwrap().1;
            for n in g.iter() {
                assert_eq!(&seen.iter().find(|s| s.0 == *n).unwrap().1, first);
            }
        }
    }
}

#[test]
fn captured_inputs_match_the_layer_hooks_on_both_architectures() {
    let (_d, m) = llama(&TinyLlama::default());
    check_capture(&m, &Batch::pad(&[ids(12, 4, 80), ids(7, 5, 80)], 0));
    let (_d2, enc) = bert();
    check_capture(&enc.model, &Batch::pad(&[ids(12, 4, 60), ids(7, 5, 60)], 0));
}

#[test]
fn the_writer_view_of_a_llama_is_its_checkpoint() {
    let spec = TinyLlama::default();
    let (_d, m) = llama(&spec);
    let want = tiny_llama_tensors(&spec);
    let mut got = std::collections::BTreeMap::new();
    for (l, name) in m.linear_ids() {
        let lin = m.linear(l, name);
        let shape = vec![lin.out_features(), lin.in_features()];
        got.insert(format!("{}.weight", m.linear_name(l, name)), (shape, m.export_weight(l, name)));
    }
    for (name, rows, cols, v) in m.embedding_tables() {
        got.insert(format!("{name}.weight"), (vec![rows, cols], v));
    }
    for (name, shape, v) in m.other_parameters() {
        got.insert(name, (shape, v));
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (name, (shape, v)) in &want {
        assert_eq!(&got[name].0, shape, "{name}");
        assert_eq!(&got[name].1, v, "{name}: query/key rows back in the checkpoint's order");
    }
}

/// Tokenizes text for a tiny model: bytes folded into its vocabulary.
fn byte_ids(vocab: usize) -> impl Fn(&str) -> pare_compress::Result<Vec<u32>> {
    move |s: &str| Ok(s.bytes().take(48).map(|b| u32::from(b) % vocab as u32).collect())
}

#[test]
fn structured_pruning_of_grouped_query_heads_and_neurons_keeps_a_llama_exact_when_the_units_are_dead() {
    let spec = TinyLlama::default();
    let (_d, mut m) = llama(&spec);
    let probe = vec![ids(14, 9, 80), ids(6, 10, 80)];
    let before: Vec<Vec<f32>> = probe.iter().map(|s| m.logits(s).unwrap()).collect();
    // Kill key/value group 1 (query heads 2 and 3: columns 32..64 of the output projection) and
    // neurons 0..48 of every block: nothing reads them, so removing them must change nothing.
    for l in 0..spec.layers {
        let units = m.units(l);
        let heads = units.iter().find(|u| u.kind == UnitKind::Head).unwrap();
        assert_eq!((heads.count, heads.width), (2, 32));
        assert_eq!(heads.writers, vec![("attn_q", 32), ("attn_k", 16), ("attn_v", 16)]);
        for (unit_cols, reader) in [(32..64, "attn_output"), (0..48, "ffn_down")] {
            let lin = m.linear_mut(l, reader);
            let (n, k) = (lin.out_features(), lin.in_features());
            let mut w = lin.weight.to_dense();
            for r in 0..n {
                for c in unit_cols.clone() {
                    w[r * k + c] = 0.0;
                }
            }
            lin.weight = pare_models::Weight::dense_f32(&w, n, k);
        }
    }
    let dead: Vec<Vec<f32>> = probe.iter().map(|s| m.logits(s).unwrap()).collect();
    assert!(max_diff(&dead[0], &before[0]) > 1e-3, "the units were alive");
    let opts = PruneOptions { method: Method::Structured, sparsity: 0.5, samples: 64, ..Default::default() };
    let st = prune_model(&mut m, &byte_ids(spec.vocab), &opts, &mut |_| {}).unwrap().structure.unwrap();
    assert_eq!(st.removed_heads[&0], vec![1]);
    assert_eq!(st.removed_heads[&1], vec![1]);
    assert_eq!(st.removed_neurons[&0], (0..48).collect::<Vec<_>>());
    assert_eq!(st.removed_neurons[&1], (0..48).collect::<Vec<_>>());
    assert_eq!((st.layers[0].heads, st.layers[0].intermediate_size), (1, 48));
    assert_eq!(m.linear(0, "attn_q").out_features(), 32);
    assert_eq!(m.linear(0, "attn_k").out_features(), 16);
    for (s, d) in probe.iter().zip(&dead) {
        let after = m.logits(s).unwrap();
        assert!(max_diff(&after, d) < 1e-4, "the pruned model differs: {}", max_diff(&after, d));
    }
    // With one key/value group per block, the seam still agrees with the forward pass.
    assert!(llama_seam_error(&m, &probe) < 1e-4);
}

/// Mean squared logit error of `m` against `reference` on held-out text (KJV verses; calibration
/// reads WordNet sentences), tokenized like the calibration text.
fn logit_mse(m: &Llama, reference: &Llama) -> f64 {
    let tok = byte_ids(m.config.vocab);
    let mut sum = 0f64;
    let mut n = 0usize;
    for line in pare_compress::calibration::KJV_TEXT.lines().take(8) {
        let seq = tok(line).unwrap();
        let (a, b) = (m.logits(&seq).unwrap(), reference.logits(&seq).unwrap());
        sum += a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
        n += a.len();
    }
    sum / n as f64
}

#[test]
fn sparsegpt_wanda_and_2_4_prune_a_decoder_through_the_seam() {
    let spec = TinyLlama::default();
    let (_d, dense) = llama(&spec);
    let tok = byte_ids(spec.vocab);
    let run = |method: Method| {
        let mut m = dense.clone();
        let opts = PruneOptions { method, sparsity: 0.5, samples: 256, scope: Scope::Layer, ..Default::default() };
        let p = prune_model(&mut m, &tok, &opts, &mut |_| {}).unwrap();
        assert!(p.sparsity.is_some());
        for (name, lin) in m.linears() {
            let w = lin.weight.to_dense();
            let zeros = w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64;
            assert!((zeros - 0.5).abs() < 0.01, "{method:?} {name}: {zeros}");
            assert!(lin.bias.iter().all(|b| *b == 0.0), "{name}: a Llama has no bias to shift");
            if method == Method::Nm {
                assert!(w.chunks_exact(4).all(|g| g.iter().filter(|v| **v != 0.0).count() <= 2), "{name}: 2:4");
            }
        }
        logit_mse(&m, &dense)
    };
    let magnitude = run(Method::Magnitude);
    let wanda = run(Method::Wanda);
    let sparsegpt = run(Method::SparseGpt);
    let nm = run(Method::Nm);
    eprintln!("logit MSE at 50%: magnitude {magnitude:.4}, wanda {wanda:.4}, sparsegpt {sparsegpt:.4}, 2:4 {nm:.4}");
    assert!(sparsegpt < 0.7 * magnitude, "SparseGPT {sparsegpt} vs magnitude {magnitude}");
    assert!(nm < magnitude * 1.5, "2:4 {nm} vs unstructured magnitude {magnitude}");
}

#[test]
fn folded_input_scales_keep_a_decoder_and_awq_lowers_its_q4_0_error() {
    let spec = TinyLlama { hidden: 64, ffn: 128, ..TinyLlama::default() };
    let (_d, dense) = llama(&spec);
    // Any positive scales fold without changing the function.
    let mut m = dense.clone();
    for (l, name) in [(0, "attn_q"), (0, "ffn_gate"), (1, "ffn_down")] {
        let k = m.linear(l, name).in_features();
        let s: Vec<f32> = (0..k).map(|j| 0.25 + (j % 7) as f32 * 0.5).collect();
        assert!(m.input_scalable(name) && m.fold_input_scale(l, name, &s), "{name}");
    }
    assert!(!m.input_scalable("attn_output") && !m.fold_input_scale(0, "attn_output", &[1.0; 64]));
    assert!(!m.fold_input_scale(0, "attn_q", &[1.0; 3]), "wrong length");
    assert!(!m.fold_input_scale(0, "attn_q", &[0.0; 64]), "a zero scale");
    let seq = ids(24, 3, spec.vocab);
    let (a, b) = (m.logits(&seq).unwrap(), dense.logits(&seq).unwrap());
    let scale = b.iter().fold(0f32, |x, v| x.max(v.abs()));
    assert!(max_diff(&a, &b) < 1e-4 * scale, "folding changed the logits by {}", max_diff(&a, &b));
    // AWQ picks scales on calibration text; the Q4_0 model it leads to is closer to the float one.
    use pare_formats::gguf::GgmlType;
    let tok = byte_ids(spec.vocab);
    let q4 = |m: &Llama| {
        let mut q = m.clone();
        for (l, name) in q.linear_ids() {
            let lin = q.linear_mut(l, name);
            let (n, k) = (lin.out_features(), lin.in_features());
            let bytes =
                pare_compress::ggml_quant::quantize(GgmlType::Q4_0, &lin.weight.to_dense(), n, k, None).unwrap();
            let mut w = vec![0f32; n * k];
            pare_formats::gguf::dequantize(GgmlType::Q4_0, &bytes, &mut w).unwrap();
            lin.weight = pare_models::Weight::dense_f32(&w, n, k);
        }
        q
    };
    let mut scaled = dense.clone();
    let samples = pare_compress::calibration::default_samples(128);
    let seqs = samples.iter().map(|s| tok(s)).collect::<pare_compress::Result<Vec<_>>>().unwrap();
    let mut cal = pare_compress::prune::Calibration::from_sequences(&scaled, seqs, "wordnet".into()).unwrap();
    let groups =
        pare_compress::awq::scale_model(&mut scaled, &mut cal, &|_| Some(GgmlType::Q4_0), &mut |_| {}).unwrap();
    assert_eq!(groups.len(), 3 * spec.layers, "three scalable groups per block");
    assert!(groups.iter().any(|g| g.alpha > 0.0 && g.error_ratio < 1.0), "no group was scaled");
    assert!(logit_mse(&scaled, &dense) < 1e-8, "AWQ changed the float model");
    let (plain, awq) = (logit_mse(&q4(&dense), &dense), logit_mse(&q4(&scaled), &dense));
    eprintln!("Q4_0 logit MSE: plain {plain:.3e}, after AWQ {awq:.3e}");
    assert!(awq < plain, "AWQ {awq} vs plain {plain}");
}

#[test]
fn activation_ranges_calibrate_on_a_decoder() {
    let spec = TinyLlama::default();
    let (_d, m) = llama(&spec);
    let samples: Vec<String> = ["the cat sat on the mat", "a short line", "x"].iter().map(|s| s.to_string()).collect();
    let ranges = calibrate(&m, &byte_ids(spec.vocab), &samples, &mut |_| {}).unwrap();
    let names: Vec<String> = m.linears().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 14);
    assert!(names[0].starts_with("model.layers.0.self_attn.q_proj"));
    for n in &names {
        let r = &ranges[n];
        assert!(r.lo.iter().zip(&r.hi).all(|(l, h)| l <= h && l.is_finite() && h.is_finite()), "{n}");
    }
}

#[test]
fn the_writer_strips_a_task_head_prefix_keeps_buffers_and_keeps_unused_modules_in_float() {
    use pare_formats::writer::{TensorData, write_safetensors};
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    write_tiny_bert(dir.path(), &spec).unwrap();
    // As a checkpoint saved with a task head: every name under `bert.`, a pooler, an int64 buffer.
    let mut tensors: Vec<TensorData> = pare_models::testing::tiny_tensors(&spec)
        .into_iter()
        .map(|(n, (shape, v))| TensorData::f32(format!("bert.{n}"), &shape, &v))
        .collect();
    let h = spec.hidden;
    tensors.push(TensorData::f32("bert.pooler.dense.weight", &[h, h], &vec![0.5; h * h]));
    tensors.push(TensorData::f32("bert.pooler.dense.bias", &[h], &vec![0.0; h]));
    let positions: Vec<u8> = (0..spec.max_positions as i64).flat_map(|p| p.to_le_bytes()).collect();
    tensors.push(TensorData {
        name: "bert.embeddings.position_ids".into(),
        dtype: pare_formats::writer::Dtype::I64,
        shape: vec![1, spec.max_positions],
        bytes: positions.clone(),
    });
    write_safetensors(&dir.path().join("model.safetensors"), &tensors, None).unwrap();
    let out = dir.path().join("int8");
    let opts = pare_compress::QuantizeOptions { outliers: 0, ..Default::default() };
    pare_compress::quantize(&ModelDir::open(dir.path()).unwrap(), &out, &opts, &mut |_| {}).unwrap();
    let f = pare_formats::TensorFile::open(out.join("model.safetensors")).unwrap();
    let names: Vec<String> = f.infos().iter().map(|i| i.name.clone()).collect();
    assert!(names.iter().all(|n| !n.starts_with("bert.")), "{names:?}");
    // The pooler is kept as it was, in float, and left out of quantization.
    let pooler: Vec<u8> = vec![0.5f32; h * h].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(f.bytes("pooler.dense.weight").unwrap(), &pooler[..]);
    assert_eq!(f.bytes("embeddings.position_ids").unwrap(), &positions[..]);
    assert!(names.contains(&"encoder.layer.1.output.LayerNorm.weight".to_string()));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["ignore"], serde_json::json!(["pooler.dense"]));
    assert!(config["pare_compression"].get("dropped_unused").is_none());
    // And the result runs.
    let enc = SentenceEncoder::load(&ModelDir::open(&out).unwrap()).unwrap();
    assert_eq!(enc.embed(&["a cat".to_string()]).unwrap()[0].len(), h);
}
