//! BERT against a naive f64 implementation on small generated weights, layer by layer and whole.

use pare_formats::{BertConfig, ModelDir, TensorFile};
use pare_models::SentenceEncoder;
use pare_models::bert::{Batch, Bert, Workspace};
use pare_models::testing::{TinySpec, tiny_tensors, write_tiny_bert};
use std::collections::BTreeMap;

/// f32 pipeline against f64 naive: absolute tolerance on LayerNorm-scaled activations (order 1).
const TOL: f64 = 2e-4;

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn get<'a>(t: &'a Tensors, name: &str) -> &'a [f32] {
    &t[name].1
}

fn ln(x: &mut [f64], g: &[f32], b: &[f32]) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    for (j, v) in x.iter_mut().enumerate() {
        *v = (*v - mean) / (var + 1e-12).sqrt() * g[j] as f64 + b[j] as f64;
    }
}

fn linear(x: &[Vec<f64>], w: &[f32], b: &[f32]) -> Vec<Vec<f64>> {
    let n = b.len();
    let k = x[0].len();
    x.iter()
        .map(|row| (0..n).map(|j| b[j] as f64 + (0..k).map(|p| row[p] * w[j * k + p] as f64).sum::<f64>()).collect())
        .collect()
}

fn naive_embed(t: &Tensors, ids: &[u32], h: usize) -> Vec<Vec<f64>> {
    let (w, p, ty) = (
        get(t, "embeddings.word_embeddings.weight"),
        get(t, "embeddings.position_embeddings.weight"),
        get(t, "embeddings.token_type_embeddings.weight"),
    );
    ids.iter()
        .enumerate()
        .map(|(s, &id)| {
            let mut row: Vec<f64> =
                (0..h).map(|j| w[id as usize * h + j] as f64 + ty[j] as f64 + p[s * h + j] as f64).collect();
            ln(&mut row, get(t, "embeddings.LayerNorm.weight"), get(t, "embeddings.LayerNorm.bias"));
            row
        })
        .collect()
}

fn naive_layer(t: &Tensors, l: usize, x: &[Vec<f64>], heads: usize) -> Vec<Vec<f64>> {
    let p = |n: &str| format!("encoder.layer.{l}.{n}");
    let lin = |x: &[Vec<f64>], n: &str| linear(x, get(t, &p(&format!("{n}.weight"))), get(t, &p(&format!("{n}.bias"))));
    let (q, k, v) = (lin(x, "attention.self.query"), lin(x, "attention.self.key"), lin(x, "attention.self.value"));
    let (s, h) = (x.len(), x[0].len());
    let d = h / heads;
    let mut ctx = vec![vec![0.0; h]; s];
    for hd in 0..heads {
        for i in 0..s {
            let sc: Vec<f64> = (0..s)
                .map(|j| (0..d).map(|e| q[i][hd * d + e] * k[j][hd * d + e]).sum::<f64>() / (d as f64).sqrt())
                .collect();
            let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
            for e in 0..d {
                ctx[i][hd * d + e] = (0..s).map(|j| (sc[j] - mx).exp() / z * v[j][hd * d + e]).sum();
            }
        }
    }
    let mut a = lin(&ctx, "attention.output.dense");
    for (r, xr) in a.iter_mut().zip(x) {
        for (v, xv) in r.iter_mut().zip(xr) {
            *v += xv;
        }
        ln(r, get(t, &p("attention.output.LayerNorm.weight")), get(t, &p("attention.output.LayerNorm.bias")));
    }
    let u: Vec<Vec<f64>> = lin(&a, "intermediate.dense")
        .into_iter()
        .map(|r| r.into_iter().map(|v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))).collect())
        .collect();
    let mut o = lin(&u, "output.dense");
    for (r, ar) in o.iter_mut().zip(&a) {
        for (v, av) in r.iter_mut().zip(ar) {
            *v += av;
        }
        ln(r, get(t, &p("output.LayerNorm.weight")), get(t, &p("output.LayerNorm.bias")));
    }
    o
}

fn setup(spec: &TinySpec) -> (tempfile::TempDir, Bert, Tensors) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), spec).unwrap();
    let cfg = BertConfig::load(&dir.path().join("config.json")).unwrap();
    let file = TensorFile::open(dir.path().join("model.safetensors")).unwrap();
    let bert = Bert::load(&file, &cfg, &Default::default()).unwrap();
    (dir, bert, tiny_tensors(spec))
}

fn assert_close(got: &[f32], want: &[Vec<f64>], what: &str) {
    let h = want[0].len();
    for (i, row) in want.iter().enumerate() {
        for (j, w) in row.iter().enumerate() {
            let g = got[i * h + j] as f64;
            assert!((g - w).abs() <= TOL, "{what}: [{i}][{j}] = {g}, naive {w}");
        }
    }
}

const IDS: [u32; 9] = [2, 40, 7, 12, 60, 19, 33, 61, 3];

#[test]
fn embeddings_match_naive() {
    let spec = TinySpec::default();
    let (_d, bert, t) = setup(&spec);
    let b = Batch::repeat(&IDS, 1);
    let mut x = vec![0.0; IDS.len() * spec.hidden];
    bert.embed(&b, &mut x);
    assert_close(&x, &naive_embed(&t, &IDS, spec.hidden), "embeddings");
}

#[test]
fn each_layer_matches_naive() {
    let spec = TinySpec { layers: 3, ..TinySpec::default() };
    let (_d, bert, t) = setup(&spec);
    let mut want = naive_embed(&t, &IDS, spec.hidden);
    let b = Batch::repeat(&IDS, 1);
    for l in 0..spec.layers {
        // Feed the layer the naive input, so each layer is checked on its own.
        let input: Vec<f32> = want.iter().flatten().map(|&v| v as f32).collect();
        let mut ws = Workspace::default();
        // Size the workspace through a forward pass, then overwrite its input.
        bert.forward(&b, &mut ws).unwrap();
        let layer = &bert.layers[l];
        let out = {
            let ws_x = workspace_x(&mut ws);
            ws_x[..input.len()].copy_from_slice(&input);
            layer.forward(&b, &mut ws);
            workspace_x(&mut ws)[..input.len()].to_vec()
        };
        want = naive_layer(&t, l, &want, spec.heads);
        assert_close(&out, &want, &format!("layer {l}"));
    }
}

/// The hidden-state buffer of a workspace, reached through a public forward's output contract:
/// `forward` returns `ws.x`, so a layer's input is written there.
fn workspace_x(ws: &mut Workspace) -> &mut [f32] {
    ws.hidden_mut()
}

#[test]
fn whole_model_matches_naive() {
    for spec in [
        TinySpec::default(),
        TinySpec { hidden: 48, heads: 3, layers: 2, intermediate: 80, max_positions: 40, seed: 9 },
    ] {
        let (_d, bert, t) = setup(&spec);
        let mut want = naive_embed(&t, &IDS, spec.hidden);
        for l in 0..spec.layers {
            want = naive_layer(&t, l, &want, spec.heads);
        }
        let mut ws = Workspace::default();
        let got = bert.forward(&Batch::repeat(&IDS, 1), &mut ws).unwrap();
        assert_close(got, &want, "forward");
    }
}

#[test]
fn padding_does_not_change_real_tokens() {
    let spec = TinySpec::default();
    let (_d, bert, _t) = setup(&spec);
    let short: Vec<u32> = IDS[..4].to_vec();
    let long: Vec<u32> = IDS.to_vec();
    let h = spec.hidden;
    pare_kernels::par::set_threads(2);
    let mut ws = Workspace::default();
    let alone_s = bert.forward(&Batch::repeat(&short, 1), &mut ws).unwrap().to_vec();
    let alone_l = bert.forward(&Batch::repeat(&long, 1), &mut ws).unwrap().to_vec();
    let batched = bert.forward(&Batch::pad(&[short.clone(), long.clone()], 0), &mut ws).unwrap().to_vec();
    let seq = long.len();
    for i in 0..short.len() * h {
        assert!((batched[i] - alone_s[i]).abs() < 1e-5, "short sequence, element {i}");
    }
    for i in 0..seq * h {
        assert!((batched[seq * h + i] - alone_l[i]).abs() < 1e-5, "long sequence, element {i}");
    }
}

#[test]
fn sentence_embedding_is_normalised_mean() {
    let spec = TinySpec::default();
    let dir = tempfile::tempdir().unwrap();
    write_tiny_bert(dir.path(), &spec).unwrap();
    let enc = SentenceEncoder::load(&ModelDir::open(dir.path()).unwrap()).unwrap();
    assert_eq!(enc.max_len, spec.max_positions / 2, "max length from sentence_bert_config.json");
    let texts: Vec<String> =
        ["the model is small", "fast", "", "a small, fast model!"].iter().map(|s| s.to_string()).collect();
    let embs = enc.embed(&texts).unwrap();
    let mut ws = Workspace::default();
    for (text, e) in texts.iter().zip(&embs) {
        let ids = enc.tokenize(text).unwrap();
        assert_eq!(ids.first(), Some(&2));
        assert_eq!(ids.last(), Some(&3));
        let b = Batch::repeat(&ids, 1);
        let states = enc.model.forward(&b, &mut ws).unwrap();
        let h = spec.hidden;
        let mut mean = vec![0.0f64; h];
        for row in states.chunks_exact(h) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / ids.len() as f64;
            }
        }
        let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (g, m) in e.iter().zip(&mean) {
            assert!((*g as f64 - m / norm).abs() < 1e-5, "{text:?}");
        }
    }
    // Long input is truncated to max_len tokens.
    let long = "the model is small and fast ".repeat(40);
    assert_eq!(enc.tokenize(&long).unwrap().len(), enc.max_len);
}
