//! ONNX export of a BERT encoder as pare runs it, for ONNX Runtime and other ONNX engines.
//!
//! Float weights become `MatMul` on the transposed matrix. int8 weights stay int8 in the file and run
//! as integer products (`MatMulInteger`, u8 activations × s8 weights, i32 sums), with the activations
//! quantized exactly as pare does:
//! - dynamic, per token: each row's range (asymmetric: `[min(x, 0), max(x, 0)]` onto [0, 255];
//!   symmetric: `±max|x|` onto [1, 255] around 128) is computed in the graph, the sums are corrected by
//!   `zero · Σ_c q[j][c]` and scaled by the row's scale times the weight row's scale;
//! - static, per tensor: `QuantizeLinear` with the calibrated scale and zero point, then
//!   `MatMulInteger` with that zero point;
//! - input channels pare keeps in float (outliers) are zeroed before quantization and enter through a
//!   second, float `MatMul` over those channels alone, as pare's kernels do.
//!
//! Per-token scales cannot be written as standard QuantizeLinear/DequantizeLinear pairs around a float
//! `MatMul` without runtimes executing them as float (dequantize, then multiply): the integer form
//! keeps the arithmetic integer in ONNX Runtime.
//!
//! int8 embedding rows are gathered as int8 and scaled per row. Pruned weights are written dense.

use crate::error::{CompressError, Result};
use pare_formats::onnx::{Attr, DataType, Dim, GraphBuilder, Model, Tensor};
use pare_formats::sentence::{Pooling, SentenceConfig};
use pare_kernels::ActQuant;
use pare_models::bert::{Bert, LayerNorm};
use pare_models::weight::{Int8Parts, Linear};
use pare_models::{Embedding, Weight};

/// Operator set of the default domain the graph uses (17: `LayerNormalization`).
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// What to export.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnnxOptions {
    /// Write int8 weights and embedding rows as the float values they stand for (the graph of
    /// `pare decompress`).
    pub dequantize: bool,
}

/// What an exported graph holds.
#[derive(Clone, Copy, Debug)]
pub struct Contents {
    /// Linear layers written as integer products.
    pub int8_linears: usize,
    /// Linear layers written in float.
    pub float_linears: usize,
    /// Input channels entering int8 layers in float, summed over layers.
    pub outlier_channels: usize,
    /// Whether the graph ends with a `sentence_embedding` output.
    pub sentence_output: bool,
}

/// An exported model and what it holds.
#[derive(Debug)]
pub struct Exported {
    /// The ONNX model.
    pub model: Model,
    /// What it holds.
    pub contents: Contents,
}

struct Export {
    g: GraphBuilder,
    opts: OnnxOptions,
    int8: usize,
    float: usize,
    outliers: usize,
    /// Dynamically quantized inputs already in the graph, by (input, mode and outliers): the
    /// u8 values, scale and zero point, shared by the layers that read the same input (query, key
    /// and value), as pare quantizes such an input once.
    quantized: std::collections::HashMap<(String, String), (String, String, String)>,
}

fn dyn_dims(rest: &[i64]) -> Vec<Dim> {
    let mut d = vec![Dim::Named("batch".into()), Dim::Named("sequence".into())];
    d.extend(rest.iter().map(|&n| Dim::Fixed(n)));
    d
}

impl Export {
    fn op(&mut self, op: &str, inputs: &[&str]) -> String {
        self.g.node(op, inputs, vec![])
    }

    fn op_with(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.g.node(op, inputs, attrs)
    }

    fn cast(&mut self, x: &str, to: DataType) -> String {
        self.op_with("Cast", &[x], vec![("to", Attr::Int(to as i64))])
    }

    /// Rows `ids` of an embedding table, `[.., dim]`.
    fn lookup(&mut self, name: &str, table: &Embedding, ids: &str) -> String {
        match table {
            Embedding::Int8 { table: q, scales, dim } if !self.opts.dequantize => {
                let rows = q.len() / dim;
                let t = self.g.constant(Tensor::i8(&format!("{name}.weight"), &[rows, *dim], q));
                let s = self.g.constant(Tensor::f32(&format!("{name}.weight_scale"), &[rows, 1], scales));
                let codes = self.op("Gather", &[&t, ids]);
                let codes = self.cast(&codes, DataType::F32);
                let scale = self.op("Gather", &[&s, ids]);
                self.op("Mul", &[&codes, &scale])
            }
            _ => {
                let dense = table.to_dense();
                let t = self.g.constant(Tensor::f32(
                    &format!("{name}.weight"),
                    &[table.rows(), dense.len() / table.rows()],
                    &dense,
                ));
                self.op("Gather", &[&t, ids])
            }
        }
    }

    fn layer_norm(&mut self, x: &str, n: &LayerNorm, name: &str) -> String {
        let h = n.gamma.len();
        let gamma = self.g.constant(Tensor::f32(&format!("{name}.weight"), &[h], &n.gamma));
        let beta = self.g.constant(Tensor::f32(&format!("{name}.bias"), &[h], &n.beta));
        self.op_with(
            "LayerNormalization",
            &[x, &gamma, &beta],
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(n.eps))],
        )
    }

    fn linear(&mut self, x: &str, lin: &Linear, name: &str) -> String {
        let (n, k) = (lin.out_features(), lin.in_features());
        match lin.weight.int8_parts() {
            Some(p) if !self.opts.dequantize => {
                self.int8 += 1;
                self.outliers += p.outliers.len();
                let y = self.int8_product(x, &p, n, k, name);
                // Shaped [1, 1, n]: a MatMul followed by a 1-D bias is merged into a float Gemm by
                // ONNX Runtime before its QDQ fusion could see the pattern.
                let bias = self.g.constant(Tensor::f32(&format!("{name}.bias"), &[1, 1, n], &lin.bias));
                self.op("Add", &[&y, &bias])
            }
            _ => {
                self.float += 1;
                let w = transpose(&lin.weight.to_dense(), n, k);
                let wt = self.g.constant(Tensor::f32(&format!("{name}.weight_t"), &[k, n], &w));
                let bias = self.g.constant(Tensor::f32(&format!("{name}.bias"), &[n], &lin.bias));
                let y = self.op("MatMul", &[x, &wt]);
                self.op("Add", &[&y, &bias])
            }
        }
    }

    /// `x · Wᵀ` of an int8 weight, without the bias.
    fn int8_product(&mut self, x: &str, p: &Int8Parts, n: usize, k: usize, name: &str) -> String {
        // Stored as u8 `q + 128` with zero point 128: ONNX Runtime's u8×s8 kernels on CPUs without
        // VNNI add pairs of products in 16 bits with saturation (`vpmaddubsw`), which clips large
        // activations times large weights; its u8×u8 kernels widen first and are exact.
        let qt: Vec<u8> = transpose(&p.q, n, k).iter().map(|&v| (v as i16 + 128) as u8).collect();
        let w = self.g.constant(Tensor::u8(&format!("{name}.weight_t_u8"), &[k, n], &qt));
        let wscale = self.g.constant(Tensor::f32(&format!("{name}.weight_scale"), &[n], &p.scales));
        let y = match p.act {
            ActQuant::Static { scale, zero } => {
                // Standard QDQ: the calibrated per-tensor range on the activations, the per-row
                // scales on the weights (axis 1 of Wᵀ), then MatMul; engines fuse the pattern into an
                // integer product (ONNX Runtime: MatMulIntegerToFloat).
                let s = self.g.constant(Tensor::f32(&format!("{name}.input_scale"), &[], &[scale]));
                let z = self.g.constant(Tensor::u8(&format!("{name}.input_zero_point"), &[], &[zero as u8]));
                let xm = self.without_float_channels(x, &p.outliers, k);
                let xq = self.op("QuantizeLinear", &[&xm, &s, &z]);
                let xd = self.op("DequantizeLinear", &[&xq, &s, &z]);
                let wz = self.g.constant_once(Tensor::u8("c.weight_zero_points", &[n], &vec![128u8; n]));
                let wd = self.op_with("DequantizeLinear", &[&w, &wscale, &wz], vec![("axis", Attr::Int(1))]);
                self.op("MatMul", &[&xd, &wd])
            }
            mode => {
                let (xq, scale, zero) = self.quantize_tokens(x, mode, &p.outliers, k, name);
                let wzero = self.g.constant_once(Tensor::u8("c.weight_zero_point", &[], &[128]));
                let acc = self.op("MatMulInteger", &[&xq, &w, "", &wzero]);
                // Σ_c (xq − z)·q = acc − z·Σ_c q, in int32 as pare sums: the two terms reach 2²⁵
                // and more, past float32's exact integers.
                let sums: Vec<i32> = p.q.chunks_exact(k.max(1)).map(|r| r.iter().map(|&v| v as i32).sum()).collect();
                let sums = self.g.constant(Tensor::i32(&format!("{name}.weight_row_sums"), &[n], &sums));
                let zero_i = self.cast(&zero, DataType::I32);
                let offset = self.op("Mul", &[&zero_i, &sums]);
                let acc = self.op("Sub", &[&acc, &offset]);
                let acc = self.cast(&acc, DataType::F32);
                let acc = self.op("Mul", &[&acc, &scale]);
                self.op("Mul", &[&acc, &wscale])
            }
        };
        if p.outliers.is_empty() {
            return y;
        }
        let idx: Vec<i64> = p.outliers.iter().map(|&c| c as i64).collect();
        let idx = self.g.constant(Tensor::i64(&format!("{name}.float_channels"), &[idx.len()], &idx));
        // Rows of Wᵀ for the outlier channels: q[j][c]·scale[j], as pare dequantizes them.
        let mut wo = Vec::with_capacity(p.outliers.len() * n);
        for &c in &p.outliers {
            wo.extend((0..n).map(|j| p.q[j * k + c as usize] as f32 * p.scales[j]));
        }
        let wo = self.g.constant(Tensor::f32(&format!("{name}.float_channels_weight_t"), &[p.outliers.len(), n], &wo));
        let xo = self.op_with("Gather", &[x, &idx], vec![("axis", Attr::Int(-1))]);
        let yo = self.op("MatMul", &[&xo, &wo]);
        self.op("Add", &[&y, &yo])
    }

    /// `x` with the channels `outliers` (of `k`) zeroed: they quantize to the zero point and add
    /// nothing to the integer product; they enter through a float product of their own.
    fn without_float_channels(&mut self, x: &str, outliers: &[u32], k: usize) -> String {
        if outliers.is_empty() {
            return x.to_string();
        }
        let mut keep = vec![1f32; k];
        outliers.iter().for_each(|&c| keep[c as usize] = 0.0);
        let keep = self.g.constant_once(Tensor::f32("c.quantized_channels", &[k], &keep));
        self.op("Mul", &[x, &keep])
    }

    /// `x` (of `k` channels, `outliers` kept in float) quantized per token: u8 values, scale and zero
    /// point; built once per input, mode and float channels.
    fn quantize_tokens(
        &mut self,
        x: &str,
        mode: ActQuant,
        outliers: &[u32],
        k: usize,
        name: &str,
    ) -> (String, String, String) {
        let key = (x.to_string(), format!("{mode:?} {outliers:?}"));
        if let Some(q) = self.quantized.get(&key) {
            return q.clone();
        }
        let xm = self.without_float_channels(x, outliers, k);
        let (scale, zero) = self.token_ranges(&xm, mode, name);
        let inv = self.op("Reciprocal", &[&scale]);
        let v = self.op("Mul", &[&xm, &inv]);
        let v = self.op("Round", &[&v]);
        let v = self.op("Add", &[&v, &zero]);
        let (lo, hi) = (self.g.scalar("c.zero", 0.0), self.g.scalar("c.u8_max", 255.0));
        let v = self.op("Clip", &[&v, &lo, &hi]);
        let xq = self.cast(&v, DataType::U8);
        let q = (xq, scale, zero);
        self.quantized.insert(key, q.clone());
        q
    }

    /// Per-token scale and zero point (both `[.., 1]`, float) of `x` under `mode`, as
    /// [`pare_kernels::quant::row_params`] computes them.
    fn token_ranges(&mut self, x: &str, mode: ActQuant, name: &str) -> (String, String) {
        let last = || vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))];
        // A row of zeros would give scale 0; any positive scale quantizes it to the zero point.
        let tiny = self.g.scalar("c.tiny_scale", f32::MIN_POSITIVE);
        match mode {
            ActQuant::DynamicSymmetric => {
                let a = self.op("Abs", &[x]);
                let m = self.op_with("ReduceMax", &[&a], last());
                let d = self.g.scalar("c.s8_max", 127.0);
                let s = self.op("Div", &[&m, &d]);
                let s = self.op("Max", &[&s, &tiny]);
                let z = self.g.scalar(&format!("{name}.c.zero_point"), 128.0);
                (s, z)
            }
            _ => {
                let zero = self.g.scalar("c.zero", 0.0);
                let lo = self.op_with("ReduceMin", &[x], last());
                let lo = self.op("Min", &[&lo, &zero]);
                let hi = self.op_with("ReduceMax", &[x], last());
                let hi = self.op("Max", &[&hi, &zero]);
                let span = self.op("Sub", &[&hi, &lo]);
                let d = self.g.scalar("c.u8_max", 255.0);
                let s = self.op("Div", &[&span, &d]);
                let s = self.op("Max", &[&s, &tiny]);
                let neg = self.op("Neg", &[&lo]);
                let z = self.op("Div", &[&neg, &s]);
                let z = self.op("Round", &[&z]);
                let hi = self.g.scalar("c.u8_max", 255.0);
                let z = self.op("Clip", &[&z, &zero, &hi]);
                (s, z)
            }
        }
    }
}

fn transpose<T: Copy + Default>(w: &[T], n: usize, k: usize) -> Vec<T> {
    let mut t = vec![T::default(); n * k];
    for j in 0..n {
        for c in 0..k {
            t[c * n + j] = w[j * k + c];
        }
    }
    t
}

/// The graph of `model`: inputs `input_ids`, `attention_mask`, `token_type_ids` (int64,
/// `[batch, sequence]`), output `last_hidden_state` (`[batch, sequence, hidden]`) and, when `sentence`
/// is given, `sentence_embedding` (`[batch, hidden]`, pooled over the mask and normalised as it says).
pub fn export_bert(model: &Bert, sentence: Option<&SentenceConfig>, opts: OnnxOptions) -> Result<Exported> {
    if model.linears().iter().any(|(_, lin)| matches!(lin.weight, Weight::Blocks { .. })) {
        return Err(CompressError::Invalid(
            "ONNX export covers float and int8 weights; this model holds llama.cpp blocks".into(),
        ));
    }
    let h = model.hidden();
    let mut e = Export {
        g: GraphBuilder::new("pare_bert"),
        opts,
        int8: 0,
        float: 0,
        outliers: 0,
        quantized: Default::default(),
    };
    let ids = e.g.input("input_ids", DataType::I64, dyn_dims(&[]));
    let mask = e.g.input("attention_mask", DataType::I64, dyn_dims(&[]));
    let types = e.g.input("token_type_ids", DataType::I64, dyn_dims(&[]));

    // (word + type) + position, then LayerNorm: the order pare and Hugging Face sum in.
    let emb = &model.embeddings;
    let word = e.lookup("embeddings.word_embeddings", &emb.word, &ids);
    let ty = e.lookup("embeddings.token_type_embeddings", &emb.token_type, &types);
    let shape = e.op("Shape", &[&ids]);
    let one = e.g.ints("c.index1", &[1]);
    let seq = e.op_with("Gather", &[&shape, &one], vec![("axis", Attr::Int(0))]);
    let seq = e.op_with("Squeeze", &[&seq], vec![]);
    let start = e.g.int("c.start", 0);
    let step = e.g.int("c.step", 1);
    let positions = e.op("Range", &[&start, &seq, &step]);
    let pos = e.lookup("embeddings.position_embeddings", &emb.position, &positions);
    let x = e.op("Add", &[&word, &ty]);
    let x = e.op("Add", &[&x, &pos]);
    let mut x = e.layer_norm(&x, &emb.norm, "embeddings.LayerNorm");

    // Additive attention mask: 0 for tokens, −10⁴ for padding (exp underflows to 0), [batch, 1, 1, seq].
    let m = e.cast(&mask, DataType::F32);
    let one_f = e.g.scalar("c.one", 1.0);
    let big = e.g.scalar("c.mask_bias", 1e4);
    let bias = e.op("Sub", &[&m, &one_f]);
    let bias = e.op("Mul", &[&bias, &big]);
    let axes = e.g.ints("c.axes_1_2", &[1, 2]);
    let bias = e.op("Unsqueeze", &[&bias, &axes]);

    for (i, l) in model.layers.iter().enumerate() {
        let p = format!("encoder.layer.{i}");
        let to_heads = e.g.ints("c.to_heads", &[0, 0, l.heads as i64, l.head_dim as i64]);
        let to_hidden = e.g.ints("c.to_hidden", &[0, 0, h as i64]);
        let heads = |e: &mut Export, lin: &Linear, name: &str, perm: [i64; 4]| {
            let y = e.linear(&x, lin, name);
            let y = e.op("Reshape", &[&y, &to_heads]);
            e.op_with("Transpose", &[&y], vec![("perm", Attr::Ints(perm.to_vec()))])
        };
        let q = heads(&mut e, &l.query, &format!("{p}.attention.self.query"), [0, 2, 1, 3]);
        let k = heads(&mut e, &l.key, &format!("{p}.attention.self.key"), [0, 2, 3, 1]);
        let v = heads(&mut e, &l.value, &format!("{p}.attention.self.value"), [0, 2, 1, 3]);
        let scale = e.g.scalar("c.attention_scale", 1.0 / (l.head_dim as f32).sqrt());
        let s = e.op("MatMul", &[&q, &k]);
        let s = e.op("Mul", &[&s, &scale]);
        let s = e.op("Add", &[&s, &bias]);
        let probs = e.op_with("Softmax", &[&s], vec![("axis", Attr::Int(-1))]);
        let ctx = e.op("MatMul", &[&probs, &v]);
        let ctx = e.op_with("Transpose", &[&ctx], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let ctx = e.op("Reshape", &[&ctx, &to_hidden]);
        let y = e.linear(&ctx, &l.attn_out, &format!("{p}.attention.output.dense"));
        let y = e.op("Add", &[&y, &x]);
        x = e.layer_norm(&y, &l.attn_norm, &format!("{p}.attention.output.LayerNorm"));
        // Exact GELU: 0.5·u·(1 + erf(u/√2)).
        let u = e.linear(&x, &l.ffn_up, &format!("{p}.intermediate.dense"));
        let r = e.g.scalar("c.rsqrt2", std::f32::consts::FRAC_1_SQRT_2);
        let half = e.g.scalar("c.half", 0.5);
        let t = e.op("Mul", &[&u, &r]);
        let t = e.op("Erf", &[&t]);
        let t = e.op("Add", &[&t, &one_f]);
        let uh = e.op("Mul", &[&u, &half]);
        let gelu = e.op("Mul", &[&uh, &t]);
        let y = e.linear(&gelu, &l.ffn_down, &format!("{p}.output.dense"));
        let y = e.op("Add", &[&y, &x]);
        x = e.layer_norm(&y, &l.ffn_norm, &format!("{p}.output.LayerNorm"));
    }
    e.g.output(&x, "last_hidden_state", DataType::F32, dyn_dims(&[h as i64]));

    if let Some(st) = sentence {
        let keep = e.cast(&mask, DataType::F32);
        let last = e.g.ints("c.axis_last", &[-1]);
        let keep = e.op("Unsqueeze", &[&keep, &last]);
        let seq_axis = e.g.ints("c.axis_1", &[1]);
        let pooled = match st.pooling {
            Pooling::Mean => {
                let masked = e.op("Mul", &[&x, &keep]);
                let sum = e.op_with("ReduceSum", &[&masked, &seq_axis], vec![("keepdims", Attr::Int(0))]);
                let n = e.op_with("ReduceSum", &[&keep, &seq_axis], vec![("keepdims", Attr::Int(0))]);
                let n = e.op("Max", &[&n, &one_f]);
                e.op("Div", &[&sum, &n])
            }
            Pooling::Cls => {
                let first = e.g.int("c.first", 0);
                e.op_with("Gather", &[&x, &first], vec![("axis", Attr::Int(1))])
            }
            Pooling::Max => {
                // Padding moved far below any value before the maximum.
                let huge = e.g.scalar("c.pad_low", 1e30);
                let pad = e.op("Sub", &[&keep, &one_f]);
                let pad = e.op("Mul", &[&pad, &huge]);
                let y = e.op("Add", &[&x, &pad]);
                e.op_with("ReduceMax", &[&y], vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))])
            }
        };
        let out = if st.normalize {
            // v / max(‖v‖, 1e-12), as pare normalises.
            let sq = e.op("Mul", &[&pooled, &pooled]);
            let ss = e.op_with("ReduceSum", &[&sq, &last], vec![("keepdims", Attr::Int(1))]);
            let norm = e.op("Sqrt", &[&ss]);
            let eps = e.g.scalar("c.norm_eps", 1e-12);
            let norm = e.op("Max", &[&norm, &eps]);
            e.op("Div", &[&pooled, &norm])
        } else {
            pooled
        };
        e.g.output(&out, "sentence_embedding", DataType::F32, vec![Dim::Named("batch".into()), Dim::Fixed(h as i64)]);
    }

    let (int8, float, outliers) = (e.int8, e.float, e.outliers);
    let model = Model {
        ir_version: IR_VERSION,
        opsets: vec![(String::new(), OPSET)],
        producer: "pare".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        metadata: vec![
            ("pare.architecture".into(), "bert".into()),
            ("pare.int8_linears".into(), int8.to_string()),
            ("pare.float_linears".into(), float.to_string()),
        ],
        graph: e.g.finish(),
    };
    let contents = Contents {
        int8_linears: int8,
        float_linears: float,
        outlier_channels: outliers,
        sentence_output: sentence.is_some(),
    };
    Ok(Exported { model, contents })
}

/// What [`export_dir`] wrote.
#[derive(Debug)]
pub struct ExportSummary {
    /// The output directory.
    pub out_dir: std::path::PathBuf,
    /// Bytes of `model.onnx`.
    pub onnx_bytes: u64,
    /// What the graph holds.
    pub contents: Contents,
}

/// Exports the BERT model directory `src` to `out`: `model.onnx`, config.json without its
/// `quantization_config` (the weights live in the graph), and the tokenizer and sentence-transformers
/// files copied. Staged and renamed into place when complete.
pub fn export_dir(
    src: &pare_formats::ModelDir,
    out: &std::path::Path,
    force: bool,
    opts: OnnxOptions,
    log: &mut dyn FnMut(&str),
) -> Result<ExportSummary> {
    crate::output::check_destination(&src.root, out, force)?;
    let enc = pare_models::SentenceEncoder::load(src)?;
    let exported = export_bert(&enc.model, Some(&enc.sentence), opts)?;
    let bytes = exported.model.encode().map_err(CompressError::Invalid)?;
    let mut cfg: serde_json::Value = pare_formats::read_json(&src.file("config.json"))?;
    if let Some(o) = cfg.as_object_mut() {
        o.remove("quantization_config");
    }
    let out_dir = crate::output::write_dir_with(&src.root, out, &cfg, |dir| {
        Ok(pare_formats::writer::write_atomic(&dir.join("model.onnx"), &bytes)?)
    })?;
    let c = exported.contents;
    log(&format!(
        "wrote {} ({:.1} MB): {} int8 Linear layers as integer products{}, {} in float; opset {OPSET}",
        out_dir.join("model.onnx").display(),
        bytes.len() as f64 / 1e6,
        c.int8_linears,
        match c.outlier_channels {
            0 => String::new(),
            n => format!(" ({n} input channels in float)"),
        },
        c.float_linears,
    ));
    Ok(ExportSummary { out_dir, onnx_bytes: bytes.len() as u64, contents: c })
}
