//! `pare prune` on generated models: the requested sparsity and N:M pattern hold exactly, packed
//! storage round-trips, the portable (dense) storage runs as the packed one, sparse and dense kernels
//! agree, structured models equal their dense twins with the same heads and neurons zeroed, pruning
//! composes with int8, and bad input is refused.

mod common;

use common::{parse_embeddings, s};
use pare_formats::TensorFile;
use pare_formats::writer::{TensorData, write_safetensors};
use pare_models::testing::{TinySpec, tiny_config, tiny_tensors, write_tiny_bert};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPEC: TinySpec = TinySpec { hidden: 64, heads: 4, layers: 2, intermediate: 128, max_positions: 64, seed: 7 };

const LINEARS: [&str; 6] = pare_models::bert::LINEAR_NAMES;

fn pare_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pare"));
    c.args(args).env_remove("PARE_ISA").env_remove("PARE_SPARSE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pare")
}

fn pare(args: &[&str]) -> Output {
    pare_env(args, &[])
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn model() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_tiny_bert(&d.path().join("dense"), &SPEC).unwrap();
    std::fs::write(
        d.path().join("in.txt"),
        "the model is small\nfast and small!\na small model, and a fast one?\nthe end\n",
    )
    .unwrap();
    d
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn prune(d: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = d.join(name);
    let mut a = vec!["prune", s(&d.join("dense")).to_string().leak() as &str];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", s(&out).to_string().leak()]);
    let r = ok(pare(&a));
    assert_eq!(String::from_utf8_lossy(&r.stdout).lines().last(), Some(s(&out)));
    out
}

/// The Linear weights of a model after `pare decompress` (plain float32), by `layer.module`.
fn linear_weights(model: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let plain = model.with_extension("plain");
    ok(pare(&["decompress", s(model), "-o", s(&plain), "--force"]));
    let f = TensorFile::open(plain.join("model.safetensors")).unwrap();
    let mut out = BTreeMap::new();
    for l in 0..SPEC.layers {
        for m in LINEARS {
            let name = format!("encoder.layer.{l}.{m}.weight");
            let (shape, _) = f.shape(&name).unwrap();
            let v = f.f32(&name, &shape).unwrap();
            out.insert(format!("{l}.{m}"), (shape, v));
        }
    }
    out
}

fn embeddings(model: &Path, input: &Path, env: &[(&str, &str)]) -> Vec<Vec<f64>> {
    parse_embeddings(&ok(pare_env(&["embed", s(model), "--input", s(input)], env)).stdout)
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f64::max)
}

fn size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("model.safetensors")).unwrap().len()
}

#[test]
fn magnitude_keeps_exact_values_and_counts() {
    let d = model();
    let orig = tiny_tensors(&SPEC);
    for (scope, sparsity) in [("layer", 0.5), ("layer", 0.7), ("layer", 0.9), ("global", 0.6)] {
        let out = prune(
            d.path(),
            &format!("mag-{scope}-{sparsity}"),
            &["--method", "magnitude", "--scope", scope, "--sparsity", &sparsity.to_string()],
        );
        let cfg = config(&out);
        assert_eq!(cfg["quantization_config"]["sparsity_config"]["format"], "sparse-bitmask");
        assert_eq!(cfg["pare_compression"]["method"], "magnitude");
        assert!(size(&out) < size(&d.path().join("dense")), "{scope} {sparsity}: packed file is not smaller");
        let w = linear_weights(&out);
        let (mut zeros, mut total) = (0usize, 0usize);
        for (key, (_, v)) in &w {
            let (l, m) = key.split_once('.').unwrap();
            let (_, o) = &orig[&format!("encoder.layer.{l}.{m}.weight")];
            // Packed storage round-trips exactly: every kept weight is the original, bit for bit.
            for (a, b) in v.iter().zip(o) {
                assert!(*a == 0.0 || a.to_bits() == b.to_bits(), "{key}: kept weight changed");
            }
            // The smallest are the ones removed.
            let kept_min = v.iter().filter(|x| **x != 0.0).map(|x| x.abs()).fold(f32::INFINITY, f32::min);
            let removed_max = v.iter().zip(o).filter(|(a, _)| **a == 0.0).map(|(_, b)| b.abs()).fold(0.0, f32::max);
            if scope == "layer" {
                assert!(removed_max <= kept_min, "{key}: removed {removed_max} > kept {kept_min}");
                let z = v.iter().filter(|x| **x == 0.0).count();
                assert_eq!(z, (sparsity * v.len() as f64).floor() as usize, "{key}: sparsity");
            }
            zeros += v.iter().filter(|x| **x == 0.0).count();
            total += v.len();
        }
        if scope == "global" {
            assert_eq!(zeros, (sparsity * total as f64).floor() as usize, "global sparsity");
        }
    }
}

#[test]
fn calibrated_methods_hold_the_requested_sparsity_per_row() {
    let d = model();
    let dense_emb = embeddings(&d.path().join("dense"), &d.path().join("in.txt"), &[]);
    for (method, sparsity) in [("wanda", 0.5), ("sparsegpt", 0.5), ("sparsegpt", 0.7)] {
        let out = prune(
            d.path(),
            &format!("{method}-{sparsity}"),
            &["--method", method, "--sparsity", &sparsity.to_string()],
        );
        let cfg = config(&out);
        assert_eq!(cfg["quantization_config"]["sparsity_config"]["format"], "sparse-bitmask");
        assert_eq!(cfg["pare_compression"]["pruning_calibration"]["source"], "builtin:wordnet");
        assert_eq!(cfg["pare_compression"]["pruning_calibration"]["samples"], 4096);
        for (key, (shape, v)) in linear_weights(&out) {
            let k = shape[1];
            for (r, row) in v.chunks_exact(k).enumerate() {
                let z = row.iter().filter(|x| **x == 0.0).count();
                // Per row and per block of 128 inputs (every row here has one block).
                assert_eq!(z, (sparsity * k as f64).floor() as usize, "{method} {key} row {r}");
            }
        }
        // Still a model of the same sentences.
        let e = embeddings(&out, &d.path().join("in.txt"), &[]);
        for (a, b) in e.iter().zip(&dense_emb) {
            let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cos > 0.5, "{method} {sparsity}: cosine {cos}");
        }
    }
}

#[test]
fn calibration_sets_and_sample_counts() {
    let d = model();
    let cal = d.path().join("cal.txt");
    std::fs::write(&cal, "the model is small\n\nfast and small!\na small model, and a fast one?\n").unwrap();
    for (spec, samples, want) in
        [("builtin:kjv", "4096", 1024), ("builtin:wordnet", "100", 100), (s(&cal), "4096", 3), (s(&cal), "2", 2)]
    {
        let out =
            prune(d.path(), &format!("cal-{want}"), &["--method", "wanda", "--calibrate", spec, "--samples", samples]);
        let c = &config(&out)["pare_compression"]["pruning_calibration"];
        assert_eq!(c["source"], spec);
        assert_eq!(c["samples"], want, "{spec} --samples {samples}");
    }
}

#[test]
fn nm_pattern_holds() {
    let d = model();
    for (nm, layout) in [("2:4", "sparse-24-bitmask"), ("1:4", "sparse-bitmask"), ("4:8", "sparse-bitmask")] {
        let out = prune(d.path(), &format!("nm-{}", nm.replace(':', "-")), &["--method", "nm", "--nm", nm]);
        let cfg = config(&out);
        assert_eq!(cfg["quantization_config"]["sparsity_config"]["format"], layout, "{nm}");
        assert_eq!(cfg["pare_compression"]["nm"], nm);
        let (n, m): (usize, usize) = {
            let (a, b) = nm.split_once(':').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        for (key, (_, v)) in linear_weights(&out) {
            for g in v.chunks_exact(m) {
                let nz = g.iter().filter(|x| **x != 0.0).count();
                assert!(nz <= n, "{nm} {key}: {nz} nonzeros in a group of {m}");
            }
            let zeros = v.iter().filter(|x| **x == 0.0).count();
            assert_eq!(zeros, v.len() / m * (m - n), "{nm} {key}: exactly M−N zeros per group");
        }
    }
}

#[test]
fn sparse_and_dense_kernels_agree() {
    let d = model();
    let inp = d.path().join("in.txt");
    let sp = prune(d.path(), "sp", &["--method", "magnitude", "--sparsity", "0.8"]);
    let sparse = embeddings(&sp, &inp, &[("PARE_SPARSE", "always")]);
    let dense = embeddings(&sp, &inp, &[("PARE_SPARSE", "never")]);
    assert!(max_diff(&sparse, &dense) < 1e-5, "f32 sparse vs dense: {}", max_diff(&sparse, &dense));
    // inspect says which way each layer runs.
    let o = ok(pare_env(&["inspect", s(&sp), "--json"], &[("PARE_SPARSE", "always")]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["layers"].as_array().unwrap().iter().any(|l| l["format"].as_str().unwrap().starts_with("f32 sparse")));
    // Sparse int8: the integer kernels are bit-exact with each other.
    let q = d.path().join("sp-q8");
    ok(pare(&["quantize", s(&sp), "--scheme", "int8", "-o", s(&q)]));
    let cfg = config(&q);
    assert_eq!(cfg["quantization_config"]["format"], "int-quantized");
    assert_eq!(cfg["quantization_config"]["sparsity_config"]["format"], "sparse-bitmask");
    assert!(size(&q) < size(&sp));
    let sparse = embeddings(&q, &inp, &[("PARE_SPARSE", "always")]);
    let dense = embeddings(&q, &inp, &[("PARE_SPARSE", "never")]);
    assert_eq!(max_diff(&sparse, &dense), 0.0, "int8 sparse vs dense");
    let o = ok(pare_env(&["inspect", s(&q), "--json"], &[("PARE_SPARSE", "always")]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["layers"].as_array().unwrap().iter().any(|l| l["format"].as_str().unwrap().starts_with("int8 sparse")));
    // Quantized weights keep the pruned zeros.
    for (key, (_, w)) in linear_weights(&q) {
        let z = w.iter().filter(|x| **x == 0.0).count();
        assert!(z >= (0.8 * w.len() as f64).floor() as usize, "{key}: zeros lost in quantization");
    }
}

#[test]
fn pruning_an_int8_model_gives_sparse_int8() {
    let d = model();
    let q = d.path().join("q8");
    ok(pare(&["quantize", s(&d.path().join("dense")), "--scheme", "int8", "-o", s(&q)]));
    let out = d.path().join("q8-pruned");
    ok(pare(&["prune", s(&q), "--method", "wanda", "--sparsity", "0.5", "-o", s(&out)]));
    let cfg = config(&out);
    assert_eq!(cfg["quantization_config"]["format"], "int-quantized");
    assert_eq!(cfg["quantization_config"]["sparsity_config"]["format"], "sparse-bitmask");
    assert!(size(&out) < size(&q));
    let o = ok(pare(&["inspect", s(&out), "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = v["tensors"].as_array().unwrap();
    assert!(t.iter().any(|x| x["name"] == "encoder.layer.0.attention.self.query.bitmask"));
    assert!(t.iter().any(|x| x["name"] == "encoder.layer.0.attention.self.query.compressed" && x["dtype"] == "I8"));
    let e = embeddings(&out, &d.path().join("in.txt"), &[]);
    assert!(e.iter().all(|v| v.iter().all(|x| x.is_finite())));
}

#[test]
fn structured_model_equals_dense_model_with_the_same_units_zeroed() {
    let d = model();
    let st = prune(d.path(), "st", &["--method", "structured", "--sparsity", "0.5"]);
    let cfg = config(&st);
    let ext = &cfg["pare_compression"];
    let (dh, h) = (SPEC.hidden / SPEC.heads, SPEC.hidden);
    let f = TensorFile::open(st.join("model.safetensors")).unwrap();
    let mut full: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for info in f.infos() {
        let (shape, _) = f.shape(&info.name).unwrap();
        full.insert(info.name.clone(), (shape.clone(), f.f32(&info.name, &shape).unwrap()));
    }
    assert!(size(&st) < size(&d.path().join("dense")));
    for l in 0..SPEC.layers {
        let layer = &ext["layers"][l];
        assert_eq!(layer["heads"], 2, "layer {l}");
        assert_eq!(layer["intermediate_size"], 64, "layer {l}");
        let gone_heads: Vec<usize> = cfg["pruned_heads"][l.to_string()]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_u64().unwrap() as usize).collect())
            .unwrap_or_default();
        let gone_neurons: Vec<usize> = ext["removed_neurons"][l.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(gone_heads.len(), 2);
        assert_eq!(gone_neurons.len(), 64);
        let kept_cols: Vec<usize> =
            (0..SPEC.heads).filter(|g| !gone_heads.contains(g)).flat_map(|g| g * dh..(g + 1) * dh).collect();
        let kept_neurons: Vec<usize> = (0..SPEC.intermediate).filter(|c| !gone_neurons.contains(c)).collect();
        let p = format!("encoder.layer.{l}");
        // Rows of Q, K, V (and their biases) and of the FFN up projection; columns of the projections after.
        let mut expand_rows = |name: String, kept: &[usize], total: usize| {
            let (shape, v) = full.remove(&name).unwrap();
            let width = if shape.len() == 2 { shape[1] } else { 1 };
            assert_eq!(shape[0], kept.len(), "{name}");
            let mut out = vec![0.0f32; total * width];
            for (i, &r) in kept.iter().enumerate() {
                out[r * width..(r + 1) * width].copy_from_slice(&v[i * width..(i + 1) * width]);
            }
            let shape = if shape.len() == 2 { vec![total, width] } else { vec![total] };
            full.insert(name, (shape, out));
        };
        for m in ["attention.self.query", "attention.self.key", "attention.self.value"] {
            expand_rows(format!("{p}.{m}.weight"), &kept_cols, h);
            expand_rows(format!("{p}.{m}.bias"), &kept_cols, h);
        }
        expand_rows(format!("{p}.intermediate.dense.weight"), &kept_neurons, SPEC.intermediate);
        expand_rows(format!("{p}.intermediate.dense.bias"), &kept_neurons, SPEC.intermediate);
        for (m, kept, total) in
            [("attention.output.dense", &kept_cols, h), ("output.dense", &kept_neurons, SPEC.intermediate)]
        {
            let name = format!("{p}.{m}.weight");
            let (shape, v) = full.remove(&name).unwrap();
            assert_eq!(shape, vec![h, kept.len()], "{name}");
            let mut out = vec![0.0f32; h * total];
            for r in 0..h {
                for (i, &c) in kept.iter().enumerate() {
                    out[r * total + c] = v[r * kept.len() + i];
                }
            }
            full.insert(name, (vec![h, total], out));
        }
    }
    // The zero-filled full-size model, written with the original config.
    let twin = d.path().join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    for entry in std::fs::read_dir(d.path().join("dense")).unwrap() {
        let e = entry.unwrap();
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(twin.join(e.file_name())).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), twin.join(e.file_name()).join(f.file_name())).unwrap();
            }
        } else if e.file_name() != "model.safetensors" {
            std::fs::copy(e.path(), twin.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(twin.join("config.json"), serde_json::to_vec(&tiny_config(&SPEC)).unwrap()).unwrap();
    let tensors: Vec<TensorData> =
        full.iter().map(|(name, (shape, v))| TensorData::f32(name.clone(), shape, v)).collect();
    write_safetensors(&twin.join("model.safetensors"), &tensors, None).unwrap();
    let inp = d.path().join("in.txt");
    let a = embeddings(&st, &inp, &[]);
    let b = embeddings(&twin, &inp, &[]);
    assert!(max_diff(&a, &b) < 1e-5, "structured vs zero-filled twin: {}", max_diff(&a, &b));
    // And the structured model is a model of the same sentences.
    let dense = embeddings(&d.path().join("dense"), &inp, &[]);
    for (x, y) in a.iter().zip(&dense) {
        let cos: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        assert!(cos > 0.5, "cosine {cos}");
    }
    // Quantizing a structured model keeps its shapes.
    let q = d.path().join("st-q8");
    ok(pare(&["quantize", s(&st), "--scheme", "int8", "-o", s(&q)]));
    let qc = config(&q);
    assert_eq!(qc["pare_compression"]["layers"], ext["layers"]);
    assert_eq!(qc["pare_compression"]["removed_neurons"], ext["removed_neurons"]);
    assert_eq!(qc["pruned_heads"], cfg["pruned_heads"]);
    let e = embeddings(&q, &inp, &[]);
    for (x, y) in e.iter().zip(&a) {
        let cos: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        assert!(cos > 0.99, "int8 of structured: cosine {cos}");
    }
}

/// The lines of a command's stderr that warn about a bitmask layout.
fn bitmask_warnings(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("warning:")).map(str::to_string).collect()
}

/// Tensor names of a model directory.
fn tensor_names(dir: &Path) -> Vec<String> {
    TensorFile::open(dir.join("model.safetensors")).unwrap().infos().iter().map(|i| i.name.clone()).collect()
}

fn inspect_json(dir: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    serde_json::from_slice(&ok(pare_env(&["inspect", s(dir), "--json"], env)).stdout).unwrap()
}

/// How each Linear runs, by name, as `pare inspect --json` says.
fn runs_as(dir: &Path, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let v = inspect_json(dir, env);
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_string(), l["format"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn portable_storage_is_dense_and_runs_as_the_packed_one() {
    let d = model();
    let p = d.path();
    let inp = p.join("in.txt");
    let dense = p.join("dense");
    let dense_size = size(&dense);
    for (what, args, layout) in [
        ("mag", &["--method", "magnitude", "--sparsity", "0.8"][..], "sparse-bitmask"),
        ("nm", &["--method", "nm", "--nm", "2:4", "--samples", "64"][..], "sparse-24-bitmask"),
    ] {
        // Packed: the warning, once, naming the layout and the flag.
        let packed = p.join(format!("{what}-packed"));
        let mut a = vec!["prune", s(&dense)];
        a.extend_from_slice(args);
        let o = ok(pare(&[&a[..], &["-o", s(&packed)]].concat()));
        let w = bitmask_warnings(&o);
        assert_eq!(w.len(), 1, "{what}: {w:?}");
        assert!(w[0].contains(layout) && w[0].contains("--portable") && w[0].contains("random weights"), "{w:?}");
        // Portable: no warning, dense tensors, the same sparsity description.
        let portable = p.join(format!("{what}-portable"));
        let o = ok(pare(&[&a[..], &["--portable", "-o", s(&portable)]].concat()));
        assert!(bitmask_warnings(&o).is_empty(), "{what}: {:?}", bitmask_warnings(&o));
        let names = tensor_names(&portable);
        for suffix in [".bitmask", ".compressed", ".shape", ".row_offsets"] {
            assert!(!names.iter().any(|n| n.ends_with(suffix)), "{what}: a {suffix} tensor in {names:?}");
        }
        for l in 0..SPEC.layers {
            for m in LINEARS {
                assert!(names.contains(&format!("encoder.layer.{l}.{m}.weight")), "{what}: {l}.{m}");
            }
        }
        // The zeros are stored: no saving on disk (the header differs a little).
        assert!(size(&portable) > size(&packed) && size(&portable) * 100 >= dense_size * 99, "{what}: size");
        let (cp, cd) = (config(&packed), config(&portable));
        let (sp, sd) = (&cp["quantization_config"]["sparsity_config"], &cd["quantization_config"]["sparsity_config"]);
        assert_eq!(sp["format"], layout);
        assert_eq!(sd["format"], "dense");
        for k in ["sparsity_structure", "global_sparsity", "targets"] {
            assert_eq!(sd[k], sp[k], "{what}: {k}");
        }
        assert_eq!(cd["pare_compression"]["method"], cp["pare_compression"]["method"]);
        // The same weights, run the same way, to the same embeddings.
        assert_eq!(linear_weights(&portable), linear_weights(&packed), "{what}: weights");
        assert_eq!(runs_as(&portable, &[]), runs_as(&packed, &[]), "{what}: kernel choices");
        let always = [("PARE_SPARSE", "always")];
        assert!(runs_as(&portable, &always).iter().all(|(_, f)| f.starts_with("f32 sparse")), "{what}: sparse");
        for env in [&[][..], &always[..]] {
            let (a, b) = (embeddings(&portable, &inp, env), embeddings(&packed, &inp, env));
            assert!(max_diff(&a, &b) <= 1e-6, "{what} {env:?}: {}", max_diff(&a, &b));
        }
        assert_eq!(inspect_json(&portable, &[])["storage"]["sparsity"]["format"], "dense");
        assert_eq!(inspect_json(&packed, &[])["storage"]["sparsity"]["format"], layout);
        ok(pare(&["bench", s(&portable), "--runs", "2", "--warmup", "0", "--seq", "8"]));
        // int8 of either, portable: dense int8 with scales, the same integer model; without the flag
        // the packed layout and its warning.
        let q_packed = p.join(format!("{what}-q8-packed"));
        let o = ok(pare(&["quantize", s(&portable), "--scheme", "int8", "-o", s(&q_packed)]));
        assert_eq!(bitmask_warnings(&o).len(), 1, "{what}: int8 without --portable");
        assert_eq!(config(&q_packed)["quantization_config"]["sparsity_config"]["format"], layout);
        let e_packed = embeddings(&q_packed, &inp, &[]);
        for from in [&packed, &portable] {
            let q = p.join(format!("{what}-q8-portable-from-{}", from.file_name().unwrap().to_str().unwrap()));
            let o = ok(pare(&["quantize", s(from), "--scheme", "int8", "--portable", "-o", s(&q)]));
            assert!(bitmask_warnings(&o).is_empty(), "{what}: {:?}", bitmask_warnings(&o));
            let qc = config(&q);
            assert_eq!(qc["quantization_config"]["format"], "int-quantized");
            assert_eq!(qc["quantization_config"]["sparsity_config"]["format"], "dense");
            assert_eq!(qc["quantization_config"]["sparsity_config"]["sparsity_structure"], sp["sparsity_structure"]);
            let f = TensorFile::open(q.join("model.safetensors")).unwrap();
            let name = "encoder.layer.0.attention.self.query";
            assert_eq!(f.shape(&format!("{name}.weight")).unwrap(), (vec![SPEC.hidden, SPEC.hidden], "I8".into()));
            assert!(f.contains(&format!("{name}.weight_scale")) && !f.contains(&format!("{name}.bitmask")));
            assert_eq!(max_diff(&embeddings(&q, &inp, &[]), &e_packed), 0.0, "{what}: int8 portable vs packed");
        }
    }
    // Nothing pruned, nothing to warn about; --portable is refused where it means nothing.
    let q = p.join("q8");
    let o = ok(pare(&["quantize", s(&p.join("dense")), "--scheme", "int8", "--portable", "-o", s(&q)]));
    assert!(bitmask_warnings(&o).is_empty() && config(&q)["quantization_config"].get("sparsity_config").is_none());
    common::one_line(
        pare(&["quantize", s(&p.join("dense")), "--scheme", "q4_0", "--portable", "-o", s(&p.join("x.gguf"))]),
        "--portable applies to --scheme int8",
    );
}

#[test]
fn unused_modules_are_kept_in_float_and_ignored_through_prune_and_quantize() {
    // A checkpoint with BERT's pooler, which sentence embeddings never run: pruning and then
    // quantizing keep it as it was, in float, and list it in `ignore`, so that a loader builds it in
    // float from these weights rather than quantized, or random.
    let d = model();
    let dense = d.path().join("dense");
    let h = SPEC.hidden;
    let mut tensors: Vec<TensorData> =
        tiny_tensors(&SPEC).into_iter().map(|(n, (shape, v))| TensorData::f32(n, &shape, &v)).collect();
    tensors.push(TensorData::f32("pooler.dense.weight", &[h, h], &vec![0.5; h * h]));
    tensors.push(TensorData::f32("pooler.dense.bias", &[h], &vec![0.25; h]));
    write_safetensors(&dense.join("model.safetensors"), &tensors, None).unwrap();
    let pruned = prune(d.path(), "mag", &["--method", "magnitude", "--portable"]);
    assert_eq!(
        config(&pruned)["quantization_config"]["sparsity_config"]["ignore"],
        serde_json::json!(["pooler.dense"])
    );
    let q = d.path().join("mag-q8");
    ok(pare(&["quantize", s(&pruned), "--scheme", "int8", "--portable", "-o", s(&q)]));
    let cfg = config(&q);
    assert_eq!(cfg["quantization_config"]["ignore"], serde_json::json!(["pooler.dense"]));
    assert!(cfg["pare_compression"].get("dropped_unused").is_none(), "nothing is dropped");
    let f = pare_formats::TensorFile::open(q.join("model.safetensors")).unwrap();
    assert_eq!(f.dtype("pooler.dense.weight").unwrap(), pare_formats::Dtype::F32);
    let bias: Vec<u8> = vec![0.25f32; h].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(f.bytes("pooler.dense.bias").unwrap(), &bias[..]);
}

/// Asserts failure with exactly one stderr line that contains `needle`, and no output directory.
fn refused(d: &Path, args: &[&str], needle: &str) {
    let out = d.join("refused");
    let mut a = vec!["prune", s(&d.join("dense")).to_string().leak() as &str];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", s(&out).to_string().leak()]);
    let r = pare(&a);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{args:?}: expected failure");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "{args:?}: output written");
}

#[test]
fn prune_bad_input() {
    let d = model();
    let p = d.path();
    for sp in ["1", "1.5", "-0.1", "NaN"] {
        refused(p, &["--method", "magnitude", "--sparsity", sp], "outside [0, 1)");
    }
    refused(p, &["--method", "magnitude", "--sparsity", "half"], "--sparsity");
    for nm in ["4:2", "2:2", "0:4", "2-4", "2:", "a:b", "2:4:8"] {
        refused(p, &["--method", "nm", "--nm", nm], "--nm");
    }
    // N:M whose M does not divide the inputs of every Linear (64 and 128 here).
    refused(p, &["--method", "nm", "--nm", "2:3"], "multiple of M");
    // 4 heads: 0.9 of them rounds to all four.
    refused(p, &["--method", "structured", "--sparsity", "0.9"], "would remove all 4 attention heads");
    let empty = p.join("empty.txt");
    std::fs::write(&empty, "\n   \n\n").unwrap();
    refused(p, &["--method", "sparsegpt", "--calibrate", s(&empty)], "holds no text");
    refused(p, &["--method", "wanda", "--calibrate", s(&p.join("missing.txt"))], "cannot read calibration file");
    refused(p, &["--method", "wanda", "--scope", "global"], "--scope global");
    refused(p, &["--method", "wanda", "--calibrate", "builtin:gutenberg"], "unknown calibration set");
    refused(p, &["--method", "wanda", "--samples", "0"], "--samples 0");
    refused(p, &["--method", "lottery"], "lottery");
    // A pruned model is not pruned again.
    let once = prune(p, "once", &["--method", "magnitude"]);
    let again = p.join("again");
    let r = pare(&["prune", s(&once), "--method", "magnitude", "-o", s(&again)]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("already pruned"));
    assert!(!again.exists());
}
