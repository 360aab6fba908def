//! `Weight`: the storage of one matmul's right-hand side, and `Linear` (weight + bias). Model code
//! calls [`Linear::forward`] with an [`Input`] and never looks at how the weight is stored.

use crate::costs::{self, Family};
use pare_formats::gguf::MappedBytes;
use pare_formats::sparse::{Matrix, SparseRows};
use pare_kernels::gemm_f32::{gemm_f32_group, gemm_f32_with};
use pare_kernels::gemm_i8::{gemm_u8s8_group, gemm_u8s8_with};
use pare_kernels::qblock::{self, Q8Kind, Q8Rows, gemm_blocks_q8, gemm_blocks_q8_group};
use pare_kernels::quant::quantize_rows_with;
use pare_kernels::spmm::{spmm_f32_group, spmm_f32_with};
use pare_kernels::spmm_i8::spmm_u8s8_with;
use pare_kernels::{
    ActQuant, Activation, CsrF32, CsrI8, Epilogue, I8Out, PackedF32, PackedI8, QuantRows, Split, gemm_f32, gemm_u8s8,
    quantize_rows, spmm_f32, spmm_u8s8,
};
use pare_kernels::{BlockRows, BlockType, gemm_blocks_f32};
use std::cell::RefCell;

/// Why a pruned weight runs sparse or dense: its density and what the kernel cost model of this
/// machine predicts for both kernels ([`crate::costs`]; one thread, [`costs::TOKENS`] tokens).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossover {
    /// Fraction of nonzero weights.
    pub density: f64,
    /// Predicted sparse kernel time, µs (`NAN` when the choice was not the model's).
    pub sparse_us: f64,
    /// Predicted dense kernel time, µs (`NAN` when the choice was not the model's).
    pub dense_us: f64,
    /// Density below which the model predicts the sparse kernel faster for this shape (`NAN` when
    /// the choice was not the model's).
    pub crossover: f64,
    /// What decided.
    pub rule: ChoiceRule,
}

/// What decided between the dense and sparse kernels of a pruned weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceRule {
    /// The calibrated cost model.
    CostModel,
    /// Density above [`ALWAYS_DENSE_ABOVE`]: dense without consulting the model.
    TooDense,
    /// `PARE_SPARSE=always|never`.
    Override,
}

/// Densities above this run dense without consulting the cost model (the sparse kernels are slower
/// there on every machine measured so far).
pub const ALWAYS_DENSE_ABOVE: f64 = 0.75;

/// How a weight of a given density runs, decided before building either form.
enum Rule {
    /// Not pruned (or too wide for the sparse kernel's column indices): dense.
    Dense,
    /// Pruned; dense or sparse as the crossover says.
    Pruned { sparse: bool, why: Crossover },
}

/// What block-quantized weights are multiplied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockActivations {
    /// 8-bit activations (as [`BlockActivations::Q8`]) for few tokens, where the product streams the
    /// weights once (decode); f32 activations for more, where dequantized panels feed the f32 GEMM
    /// (prefill), which is faster than integer row products on AVX2.
    #[default]
    Q8Decode,
    /// Activations rounded to 8 bits as llama.cpp rounds them for each weight type (Q8_0/Q8_1 per
    /// 32 values, Q8_K per 256) and integer dot products, at every token count: llama.cpp's arithmetic.
    Q8,
    /// f32 activations at every token count: the products of the dequantized model.
    F32,
}

impl BlockActivations {
    /// The choice set by `PARE_BLOCK_ACT` (`q8`, `q8-all` or `f32`), if any; an error names a bad value.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var("PARE_BLOCK_ACT") {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => {
                Self::parse(v.trim()).map(Some).ok_or_else(|| format!("PARE_BLOCK_ACT={v}: expected q8, q8-all or f32"))
            }
            Err(_) => Ok(None),
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        [BlockActivations::Q8Decode, BlockActivations::Q8, BlockActivations::F32].into_iter().find(|a| a.name() == s)
    }

    /// [`BlockActivations::from_env`], else the default; a bad value is ignored here (front ends
    /// report it first).
    pub fn active() -> Self {
        Self::from_env().ok().flatten().unwrap_or_default()
    }

    /// Its name as `PARE_BLOCK_ACT` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BlockActivations::Q8Decode => "q8",
            BlockActivations::Q8 => "q8-all",
            BlockActivations::F32 => "f32",
        }
    }

    /// Whether a product over `rows` tokens rounds them to 8 bits.
    pub fn rounds(self, rows: usize) -> bool {
        match self {
            BlockActivations::Q8Decode => rows <= pare_kernels::qblock::GEMV_MAX_TOKENS,
            BlockActivations::Q8 => true,
            BlockActivations::F32 => false,
        }
    }
}

fn sparse_rule(family: Family, density: f64, n: usize, k: usize) -> Rule {
    if density >= 0.99 || k > 1 << 16 {
        return Rule::Dense;
    }
    let fixed = |sparse, rule| Rule::Pruned {
        sparse,
        why: Crossover { density, sparse_us: f64::NAN, dense_us: f64::NAN, crossover: f64::NAN, rule },
    };
    match std::env::var("PARE_SPARSE").as_deref() {
        Ok("always") => fixed(true, ChoiceRule::Override),
        Ok("never") => fixed(false, ChoiceRule::Override),
        _ if density > ALWAYS_DENSE_ABOVE => fixed(false, ChoiceRule::TooDense),
        _ => {
            let p = costs::costs().predict(family, n, k, density);
            Rule::Pruned {
                sparse: p.sparse_us < p.dense_us,
                why: Crossover {
                    density,
                    sparse_us: p.sparse_us,
                    dense_us: p.dense_us,
                    crossover: p.crossover,
                    rule: ChoiceRule::CostModel,
                },
            }
        }
    }
}

/// The storage format of a Linear layer's weight `W[out][in]`.
#[derive(Clone, Debug)]
pub enum Weight {
    /// Dense float32, packed in column panels for the f32 GEMM.
    DenseF32(PackedF32),
    /// A pruned float32 weight in compressed rows, for the sparse kernel.
    SparseF32 {
        /// The nonzeros.
        csr: CsrF32,
        /// Why it runs sparse.
        why: Crossover,
    },
    /// A pruned float32 weight that runs dense because that is predicted faster.
    PrunedDenseF32 {
        /// Packed panels.
        packed: PackedF32,
        /// Why it runs dense.
        why: Crossover,
    },
    /// A pruned int8 weight in compressed rows, for the sparse integer kernel.
    SparseI8 {
        /// The nonzeros, scales and outlier columns.
        csr: CsrI8,
        /// How this layer's input activations are quantized.
        act: ActQuant,
        /// Why it runs sparse.
        why: Crossover,
    },
    /// int8, one scale per output channel; inputs quantized to u8 as `act` says.
    Int8 {
        /// Packed weights, scales and column sums.
        packed: PackedI8,
        /// How this layer's input activations are quantized.
        act: ActQuant,
        /// When pruned, why it runs dense.
        why: Option<Crossover>,
    },
    /// Blocks in llama.cpp's layouts, read in place from the mapped file (or laid out anew at load:
    /// see [`Weight::lay_out_blocks`]), multiplied with activations as `act` says.
    Blocks {
        /// Block type.
        ty: BlockType,
        /// `n` rows of `k / 32` blocks, as stored, or interleaved by eight rows when `x8`.
        data: MappedBytes,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
        /// What the blocks are multiplied with.
        act: BlockActivations,
        /// Rows interleaved by eight ([`pare_kernels::qblock::interleave8`]).
        x8: bool,
    },
}

impl Weight {
    /// A dense f32 weight from row-major `W[out][in]`.
    pub fn dense_f32(w: &[f32], out_features: usize, in_features: usize) -> Self {
        Weight::DenseF32(PackedF32::from_rows(w, out_features, in_features))
    }

    /// An f32 weight from row-major `W[out][in]`: dense when it has no zeros worth skipping; when pruned,
    /// sparse or dense, whichever kernel this machine's cost model predicts faster for its shape and
    /// density (`PARE_SPARSE=always|never` overrides it). Only the form that runs is built.
    pub fn f32_auto(w: &[f32], n: usize, k: usize) -> Self {
        let density = w.iter().filter(|v| **v != 0.0).count() as f64 / (n * k).max(1) as f64;
        match sparse_rule(Family::F32, density, n, k) {
            Rule::Dense => Weight::dense_f32(w, n, k),
            Rule::Pruned { sparse: true, why } => Weight::SparseF32 { csr: CsrF32::from_dense(w, n, k), why },
            Rule::Pruned { sparse: false, why } => {
                Weight::PrunedDenseF32 { packed: PackedF32::from_rows(w, n, k), why }
            }
        }
    }

    /// An f32 weight stored as compressed rows (a pruned checkpoint): kept as compressed rows when the
    /// cost model picks the sparse kernel, else densified and packed; the dense matrix exists only in
    /// the second case, and only while packing.
    pub fn f32_from_sparse(s: SparseRows) -> Self {
        let (n, k, density) = (s.rows, s.cols, s.density());
        let SparseRows { row_ptr, col_idx, values: Matrix::F32(vals), .. } = s else {
            panic!("f32_from_sparse on int8 values")
        };
        match sparse_rule(Family::F32, density, n, k) {
            Rule::Pruned { sparse: true, why } => {
                Weight::SparseF32 { csr: CsrF32::from_parts(n, k, row_ptr, col_idx, vals), why }
            }
            rule => {
                let csr = CsrF32::from_parts(n, k, row_ptr, col_idx, vals);
                let packed = PackedF32::from_rows(&csr.to_dense(), n, k);
                match rule {
                    Rule::Pruned { why, .. } => Weight::PrunedDenseF32 { packed, why },
                    Rule::Dense => Weight::DenseF32(packed),
                }
            }
        }
    }

    /// An int8 weight stored as compressed rows with per-row `scales`: compressed rows when the cost
    /// model picks the sparse kernel, else densified and packed.
    pub fn i8_from_sparse(s: SparseRows, scales: &[f32], act: ActQuant, outliers: &[u32]) -> Self {
        let (n, k, density) = (s.rows, s.cols, s.density());
        let SparseRows { row_ptr, col_idx, values: Matrix::I8(vals), .. } = s else {
            panic!("i8_from_sparse on f32 values")
        };
        let csr = CsrI8::from_parts(n, k, row_ptr, col_idx, vals, scales).with_outliers(outliers);
        match sparse_rule(Family::Int8, density, n, k) {
            Rule::Pruned { sparse: true, why } => Weight::SparseI8 { csr, act, why },
            rule => Weight::Int8 {
                packed: PackedI8::from_rows(&csr.to_rows(), scales, n, k).with_outliers(outliers),
                act,
                why: match rule {
                    Rule::Pruned { why, .. } => Some(why),
                    Rule::Dense => None,
                },
            },
        }
    }

    /// An int8 weight `q[n][k]` with per-row `scales`: dense, or — when pruned and predicted faster —
    /// sparse (`PARE_SPARSE=always|never` overrides the prediction). Only the form that runs is built.
    pub fn i8_auto(q: &[i8], scales: &[f32], n: usize, k: usize, act: ActQuant, outliers: &[u32]) -> Self {
        let density = q.iter().filter(|v| **v != 0).count() as f64 / (n * k).max(1) as f64;
        match sparse_rule(Family::Int8, density, n, k) {
            Rule::Pruned { sparse: true, why } => {
                Weight::SparseI8 { csr: CsrI8::from_dense(q, scales, n, k).with_outliers(outliers), act, why }
            }
            rule => Weight::Int8 {
                packed: PackedI8::from_rows(q, scales, n, k).with_outliers(outliers),
                act,
                why: match rule {
                    Rule::Pruned { why, .. } => Some(why),
                    Rule::Dense => None,
                },
            },
        }
    }

    /// Block-quantized rows read in place from a file map; an error when the bytes do not hold
    /// `n` rows of `k` weights of `ty`.
    pub fn blocks(ty: BlockType, data: MappedBytes, n: usize, k: usize) -> Result<Self, String> {
        BlockRows::new(ty, &data, n, k)?;
        Ok(Weight::Blocks { ty, data, n, k, act: BlockActivations::active(), x8: false })
    }

    /// Lays out a block weight's rows for the kernels that will multiply it: interleaved by eight
    /// ([`pare_kernels::qblock::interleave8`], for the 8-bit row kernels of decode) when its
    /// activations are rounded to 8 bits and its type and rows allow it, one after another otherwise.
    /// A new layout is an anonymous copy; the file pages it was made from are released. Rows stay
    /// readable one by one ([`Weight::dequantize_row`]). Other weights are left as they are.
    pub fn lay_out_blocks(&mut self) -> Result<(), String> {
        let Weight::Blocks { ty, data, n, k, act, x8 } = self else { return Ok(()) };
        let want = *act != BlockActivations::F32 && ty.interleaves() && n.is_multiple_of(qblock::X8);
        if want == *x8 {
            return Ok(());
        }
        let bytes = if want {
            qblock::interleave8(*ty, data, *n, *k)?
        } else {
            let mut v = vec![0u8; data.len()];
            qblock::deinterleave8(*ty, data, *k, &mut v);
            v
        };
        let copy = MappedBytes::owned(&bytes).map_err(|e| format!("cannot hold its blocks: {e}"))?;
        data.release();
        (*data, *x8) = (copy, want);
        Ok(())
    }

    /// Sets what a [`Weight::Blocks`] is multiplied with (other variants are left as they are).
    pub fn set_block_activations(&mut self, to: BlockActivations) {
        if let Weight::Blocks { act, .. } = self {
            *act = to;
        }
    }

    /// Row `j` of a [`Weight::Blocks`] dequantized into `out` (`k` values), whatever its layout
    /// (panics on other variants).
    pub fn dequantize_row(&self, j: usize, out: &mut [f32]) {
        let w = self.block_rows();
        let g0 = if w.is_interleaved() { j - j % qblock::X8 } else { j };
        let group = if w.is_interleaved() { qblock::X8 } else { 1 };
        let mut scratch = Vec::new();
        let rows = w.rows_in(g0..g0 + group, &mut scratch);
        let rb = w.row_bytes();
        pare_kernels::qblock::dequantize_blocks(w.ty(), &rows[(j - g0) * rb..(j - g0 + 1) * rb], out);
    }

    /// The rows of a [`Weight::Blocks`] as the kernels read them (panics on other variants).
    fn block_rows(&self) -> BlockRows<'_> {
        match self {
            Weight::Blocks { ty, data, n, k, x8: false, .. } => {
                BlockRows::new(*ty, data, *n, *k).expect("checked at construction")
            }
            Weight::Blocks { ty, data, n, k, x8: true, .. } => {
                BlockRows::interleaved(*ty, data, *n, *k).expect("checked when laid out")
            }
            _ => unreachable!("block_rows of a weight that is not block-quantized"),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        match self {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => p.n(),
            Weight::SparseF32 { csr, .. } => csr.n(),
            Weight::SparseI8 { csr, .. } => csr.n(),
            Weight::Int8 { packed, .. } => packed.n(),
            Weight::Blocks { n, .. } => *n,
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        match self {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => p.k(),
            Weight::SparseF32 { csr, .. } => csr.k(),
            Weight::SparseI8 { csr, .. } => csr.k(),
            Weight::Int8 { packed, .. } => packed.k(),
            Weight::Blocks { k, .. } => *k,
        }
    }

    /// Why a pruned weight runs the way it does.
    pub fn crossover(&self) -> Option<Crossover> {
        match self {
            Weight::SparseF32 { why, .. } | Weight::PrunedDenseF32 { why, .. } | Weight::SparseI8 { why, .. } => {
                Some(*why)
            }
            Weight::Int8 { why, .. } => *why,
            Weight::DenseF32(_) | Weight::Blocks { .. } => None,
        }
    }

    /// Short name of the format, for `inspect` and reports, with the reason for a pruned weight's kernel.
    pub fn format(&self) -> String {
        let times = |w: &Crossover| match w.rule {
            ChoiceRule::CostModel => format!(
                "density {:.2}, below {:.2} runs sparse here; predicted sparse {:.0} µs vs dense {:.0} µs",
                w.density, w.crossover, w.sparse_us, w.dense_us
            ),
            ChoiceRule::TooDense => format!("density {:.2}, above {ALWAYS_DENSE_ABOVE}", w.density),
            ChoiceRule::Override => format!("density {:.2}, PARE_SPARSE", w.density),
        };
        match self {
            Weight::DenseF32(_) => "f32 dense".into(),
            Weight::Blocks { ty, act, x8, .. } => {
                let x = match act {
                    BlockActivations::Q8Decode => "8-bit (decode) or f32",
                    BlockActivations::Q8 => "8-bit",
                    BlockActivations::F32 => "f32",
                };
                let rows = if *x8 { ", rows interleaved by 8" } else { "" };
                format!("{} blocks × {x} activations ({} bits/weight{rows})", ty.name(), ty.bits_per_weight())
            }
            Weight::SparseF32 { why, .. } => format!("f32 sparse ({})", times(why)),
            Weight::PrunedDenseF32 { why, .. } => format!("f32 dense, pruned ({})", times(why)),
            Weight::SparseI8 { why, .. } => format!("int8 sparse ({})", times(why)),
            Weight::Int8 { act, packed, why } => format!(
                "int8 × u8 {}{}{}",
                match act {
                    ActQuant::DynamicAsymmetric => "dynamic asym/token",
                    ActQuant::DynamicSymmetric => "dynamic sym/token",
                    ActQuant::Static { .. } => "static/tensor",
                },
                match packed.outliers().len() {
                    0 => String::new(),
                    n => format!(" + {n} f32 channels"),
                },
                why.map_or_else(String::new, |w| format!(", pruned, dense ({})", times(&w)))
            ),
        }
    }

    /// Bytes the weight occupies in memory.
    pub fn bytes(&self) -> usize {
        match self {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => p.bytes(),
            Weight::SparseF32 { csr, .. } => csr.bytes(),
            Weight::SparseI8 { csr, .. } => csr.bytes(),
            Weight::Int8 { packed, .. } => packed.bytes(),
            Weight::Blocks { data, .. } => data.len(),
        }
    }

    /// The integer form of an int8 weight as it runs (`None` for other formats).
    pub fn int8_parts(&self) -> Option<Int8Parts> {
        match self {
            Weight::Int8 { packed, act, .. } => Some(Int8Parts {
                q: packed.to_rows(),
                scales: packed.scales().to_vec(),
                act: *act,
                outliers: packed.outliers().to_vec(),
            }),
            Weight::SparseI8 { csr, act, .. } => Some(Int8Parts {
                q: csr.to_rows(),
                scales: csr.scales().to_vec(),
                act: *act,
                outliers: csr.outliers().to_vec(),
            }),
            _ => None,
        }
    }

    /// Back to row-major f32 `W[out][in]` (dequantised / densified where applicable).
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => p.to_rows(),
            Weight::SparseF32 { csr, .. } => csr.to_dense(),
            Weight::SparseI8 { csr, .. } => csr.dequantize(),
            Weight::Int8 { packed, .. } => packed.dequantize(),
            Weight::Blocks { ty, n, k, .. } => {
                let mut w = vec![0f32; n * k];
                let mut rows = Vec::new();
                pare_kernels::qblock::dequantize_blocks(*ty, self.block_rows().rows_in(0..*n, &mut rows), &mut w);
                w
            }
        }
    }
}

/// An int8 weight in plain arrays: `W[j][c] ≈ q[j·k + c] · scales[j]`; the input channels in
/// `outliers` enter in float (their activations are not quantized), the rest as `act` says.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Parts {
    /// Codes, row-major `[out][in]`, in [−127, 127].
    pub q: Vec<i8>,
    /// Scale of each output row.
    pub scales: Vec<f32>,
    /// How the input activations are quantized.
    pub act: ActQuant,
    /// Input channels kept in float, ascending.
    pub outliers: Vec<u32>,
}

/// The input of one or more Linear layers: f32 rows, plus their quantized form computed on first use
/// and shared by every integer layer that reads the same input (e.g. query, key and value).
pub struct Input<'a> {
    x: &'a [f32],
    rows: usize,
    cols: usize,
    cache: &'a RefCell<QuantCache>,
}

/// Storage for the quantized form of an [`Input`], kept across calls to avoid reallocation.
#[derive(Debug, Default)]
pub struct QuantCache {
    mode: Option<(ActQuant, Vec<u32>)>,
    rows: QuantRows,
    /// Q8 forms for block weights: [`Q8Kind::Blocks32`], [`Q8Kind::Super256`], and whether each is current.
    q8: [Q8Rows; 2],
    q8_fresh: [bool; 2],
}

impl<'a> Input<'a> {
    /// `rows × cols` f32 values; `cache` is reset.
    pub fn new(x: &'a [f32], rows: usize, cols: usize, cache: &'a RefCell<QuantCache>) -> Self {
        assert!(x.len() >= rows * cols, "Input: {} values for {rows}×{cols}", x.len());
        let mut c = cache.borrow_mut();
        c.mode = None;
        c.q8_fresh = [false; 2];
        drop(c);
        Input { x: &x[..rows * cols], rows, cols, cache }
    }

    /// The rows rounded to 8 bits as `kind` says, computed on first use.
    fn q8(&self, kind: Q8Kind) -> std::cell::Ref<'_, Q8Rows> {
        let at = usize::from(kind == Q8Kind::Super256);
        if !self.cache.borrow().q8_fresh[at] {
            let mut c = self.cache.borrow_mut();
            c.q8[at].quantize_as(kind, self.x, self.cols, self.rows, self.cols);
            c.q8_fresh[at] = true;
        }
        std::cell::Ref::map(self.cache.borrow(), |c| &c.q8[at])
    }

    /// The f32 values.
    pub fn values(&self) -> &'a [f32] {
        self.x
    }

    /// Rows (tokens).
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn quantized(&self, mode: ActQuant, outliers: &[u32]) -> std::cell::Ref<'_, QuantRows> {
        let fresh = matches!(&self.cache.borrow().mode, Some((m, o)) if *m == mode && o == outliers);
        if !fresh {
            let mut c = self.cache.borrow_mut();
            quantize_rows(self.x, self.rows, self.cols, self.cols, mode, outliers, &mut c.rows);
            c.mode = Some((mode, outliers.to_vec()));
        }
        std::cell::Ref::map(self.cache.borrow(), |c| &c.rows)
    }
}

/// `y = act(x·Wᵀ + b) (+ residual)`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The weight.
    pub weight: Weight,
    /// The bias, `out_features` values.
    pub bias: Vec<f32>,
}

impl Linear {
    /// Multiplies column `j` of the weight by `s[j]` (the weight becomes dense f32).
    pub fn scale_columns(&mut self, s: &[f32]) {
        let (n, k) = (self.out_features(), self.in_features());
        assert_eq!(s.len(), k, "scale_columns: {} scales for {k} columns", s.len());
        let mut w = self.weight.to_dense();
        for row in w.chunks_exact_mut(k) {
            row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
        self.weight = Weight::dense_f32(&w, n, k);
    }

    /// Multiplies row `r` of the weight and the bias by `s[r]` (the weight becomes dense f32).
    pub fn scale_rows(&mut self, s: &[f32]) {
        let (n, k) = (self.out_features(), self.in_features());
        assert_eq!(s.len(), n, "scale_rows: {} scales for {n} rows", s.len());
        let mut w = self.weight.to_dense();
        for (row, &f) in w.chunks_exact_mut(k).zip(s) {
            row.iter_mut().for_each(|v| *v *= f);
        }
        self.bias.iter_mut().zip(s).for_each(|(b, f)| *b *= f);
        self.weight = Weight::dense_f32(&w, n, k);
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.out_features()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.in_features()
    }

    /// `out[rows][out_features] = act(x · Wᵀ + b) + residual`, on the kernel threads.
    pub fn forward(&self, x: &Input, out: &mut [f32], act: Activation, residual: Option<&[f32]>) {
        self.forward_split(x, out, act, residual, Split::Rows);
    }

    /// [`Linear::forward`] with a preferred way of sharing the work among threads: by rows (tokens),
    /// or by columns (output features, e.g. whole attention heads for the attention that follows).
    /// Dense f32 weights are always split by columns, so each thread streams half of them.
    pub fn forward_split(&self, x: &Input, out: &mut [f32], act: Activation, residual: Option<&[f32]>, split: Split) {
        let (n, k, rows) = (self.out_features(), self.in_features(), x.rows());
        assert_eq!(x.cols, k, "Linear: input has {} features, weight {k}", x.cols);
        let epi = Epilogue { bias: Some(&self.bias), act, residual: residual.map(|r| (r, n)), ..Epilogue::default() };
        let out = &mut out[..rows * n];
        match &self.weight {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => {
                gemm_f32(x.values(), k, rows, p, out, n, &epi)
            }
            Weight::SparseF32 { csr, .. } => spmm_f32(x.values(), k, rows, csr, out, n, &epi),
            Weight::Int8 { packed, act: mode, .. } => {
                let q = x.quantized(*mode, packed.outliers());
                gemm_u8s8(&q, packed, I8Out::F32 { c: out, ldc: n, epi }, split);
            }
            Weight::SparseI8 { csr, act: mode, .. } => {
                let q = x.quantized(*mode, csr.outliers());
                spmm_u8s8(&q, csr, out, n, &epi);
            }
            Weight::Blocks { ty, act, .. } if act.rounds(rows) => {
                let q = x.q8(ty.q8_kind());
                gemm_blocks_q8(&q, &self.weight.block_rows(), out, n, &epi)
            }
            Weight::Blocks { .. } => gemm_blocks_f32(x.values(), k, rows, &self.weight.block_rows(), out, n, &epi),
        }
    }
}

/// Several Linears applied to the same input in one parallel section, each thread computing the same
/// share of every output's columns (whole attention heads when the outputs are query, key and value).
/// Falls back to one call per Linear when their formats differ.
pub fn forward_group(lins: &[&Linear], x: &Input, outs: Vec<&mut [f32]>) {
    let rows = x.rows();
    fn epi(l: &Linear) -> Epilogue<'_> {
        Epilogue::bias(&l.bias)
    }
    let all_f32 = lins.iter().all(|l| matches!(l.weight, Weight::DenseF32(_) | Weight::PrunedDenseF32 { .. }));
    let all_sparse = lins.iter().all(|l| matches!(l.weight, Weight::SparseF32 { .. }));
    let first_i8 = match &lins.first().map(|l| &l.weight) {
        Some(Weight::Int8 { packed, act, .. }) => Some((*act, packed.outliers())),
        _ => None,
    };
    let same_i8 = first_i8.as_ref().is_some_and(|(m0, o0)| {
        lins.iter()
            .all(|l| matches!(&l.weight, Weight::Int8 { packed, act, .. } if act == m0 && packed.outliers() == *o0))
    });
    let all_blocks = lins.iter().all(|l| matches!(l.weight, Weight::Blocks { act, .. } if !act.rounds(rows)));
    let all_q8 = lins.iter().all(|l| matches!(l.weight, Weight::Blocks { act, .. } if act.rounds(rows)));
    if all_q8 {
        let kinds: Vec<Q8Kind> = lins
            .iter()
            .map(|l| match &l.weight {
                Weight::Blocks { ty, .. } => ty.q8_kind(),
                _ => unreachable!("checked: all blocks"),
            })
            .collect();
        // Both roundings first (each computed once), then the shared section.
        let x32 = kinds.contains(&Q8Kind::Blocks32).then(|| x.q8(Q8Kind::Blocks32));
        let x256 = kinds.contains(&Q8Kind::Super256).then(|| x.q8(Q8Kind::Super256));
        let jobs = lins
            .iter()
            .zip(outs)
            .zip(&kinds)
            .map(|((l, o), kind)| {
                let n = l.out_features();
                let q: &Q8Rows = match kind {
                    Q8Kind::Blocks32 => x32.as_deref().expect("computed above"),
                    Q8Kind::Super256 => x256.as_deref().expect("computed above"),
                };
                (q, l.weight.block_rows(), &mut o[..rows * n], n, epi(l))
            })
            .collect();
        gemm_blocks_q8_group(jobs);
    } else if all_blocks {
        let jobs = lins
            .iter()
            .zip(outs)
            .map(|(l, o)| {
                let n = l.out_features();
                (l.weight.block_rows(), &mut o[..rows * n], n, epi(l))
            })
            .collect();
        pare_kernels::qblock::gemm_blocks_f32_group(x.values(), x.cols, rows, jobs);
    } else if all_f32 {
        let k = x.cols;
        let jobs = lins
            .iter()
            .zip(outs)
            .map(|(l, o)| match &l.weight {
                Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => {
                    let n = p.n();
                    (p, &mut o[..rows * n], n, epi(l))
                }
                _ => unreachable!("checked: all dense f32"),
            })
            .collect();
        gemm_f32_group(x.values(), k, rows, jobs);
    } else if all_sparse {
        let jobs = lins
            .iter()
            .zip(outs)
            .map(|(l, o)| match &l.weight {
                Weight::SparseF32 { csr, .. } => {
                    let n = csr.n();
                    (csr, &mut o[..rows * n], n, epi(l))
                }
                _ => unreachable!("checked: all sparse f32"),
            })
            .collect();
        spmm_f32_group(x.values(), x.cols, rows, jobs);
    } else if let (true, Some((mode, outliers))) = (same_i8, first_i8) {
        let q = x.quantized(mode, outliers);
        let jobs = lins
            .iter()
            .zip(outs)
            .map(|(l, o)| match &l.weight {
                Weight::Int8 { packed, .. } => {
                    let n = packed.n();
                    (packed, I8Out::F32 { c: &mut o[..rows * n], ldc: n, epi: epi(l) })
                }
                _ => unreachable!("checked: all int8"),
            })
            .collect();
        gemm_u8s8_group(&q, jobs);
    } else {
        for (l, o) in lins.iter().zip(outs) {
            l.forward_split(x, o, Activation::None, None, Split::Columns);
        }
    }
}

impl Linear {
    /// [`Linear::forward`] on one block of rows, on the calling thread only: for sections where every
    /// thread carries its own rows through several layers. `scratch` holds the quantized input.
    pub fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        act: Activation,
        residual: Option<&[f32]>,
        scratch: &mut QuantRows,
    ) {
        let (n, k) = (self.out_features(), self.in_features());
        let table = pare_kernels::dispatch::table();
        let epi = Epilogue { bias: Some(&self.bias), act, residual: residual.map(|r| (r, n)), ..Epilogue::default() };
        let out = &mut out[..rows * n];
        match &self.weight {
            Weight::DenseF32(p) | Weight::PrunedDenseF32 { packed: p, .. } => {
                gemm_f32_with(table, &x[..rows * k], k, rows, p, out, n, &epi)
            }
            Weight::SparseF32 { csr, .. } => spmm_f32_with(table, &x[..rows * k], k, rows, csr, out, n, &epi, false),
            Weight::Int8 { packed, act: mode, .. } => {
                quantize_rows_with(table, x, rows, k, k, *mode, packed.outliers(), scratch);
                gemm_u8s8_with(table, scratch, packed, I8Out::F32 { c: out, ldc: n, epi });
            }
            Weight::SparseI8 { csr, act: mode, .. } => {
                quantize_rows_with(table, x, rows, k, k, *mode, csr.outliers(), scratch);
                spmm_u8s8_with(table, scratch, csr, out, n, &epi, false);
            }
            Weight::Blocks { ty, act, .. } if act.rounds(rows) => {
                let mut q = Q8Rows::default();
                q.quantize_as(ty.q8_kind(), x, k, rows, k);
                pare_kernels::qblock::gemm_blocks_q8_with(table, &q, &self.weight.block_rows(), out, n, &epi)
            }
            Weight::Blocks { .. } => pare_kernels::qblock::gemm_blocks_f32_with(
                table,
                &x[..rows * k],
                k,
                rows,
                &self.weight.block_rows(),
                out,
                n,
                &epi,
                rows > pare_kernels::qblock::GEMV_MAX_TOKENS,
            ),
        }
    }
}

/// An embedding table: one row per token id (or position, or token type).
#[derive(Clone, Debug)]
pub enum Embedding {
    /// float32 rows.
    F32 {
        /// `[rows][dim]`.
        table: Vec<f32>,
        /// Row width.
        dim: usize,
    },
    /// int8 rows, one symmetric scale per row.
    Int8 {
        /// `[rows][dim]`.
        table: Vec<i8>,
        /// Scale per row.
        scales: Vec<f32>,
        /// Row width.
        dim: usize,
    },
}

impl Embedding {
    /// Row `i` added into `out` (`out += row`).
    #[inline]
    pub fn add_row(&self, i: usize, out: &mut [f32]) {
        match self {
            Embedding::F32 { table, dim } => {
                for (o, v) in out.iter_mut().zip(&table[i * dim..(i + 1) * dim]) {
                    *o += v;
                }
            }
            Embedding::Int8 { table, scales, dim } => {
                let s = scales[i];
                for (o, &v) in out.iter_mut().zip(&table[i * dim..(i + 1) * dim]) {
                    *o += v as f32 * s;
                }
            }
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Embedding::F32 { table, dim } => table.len() / dim,
            Embedding::Int8 { table, dim, .. } => table.len() / dim,
        }
    }

    /// The table as f32 (dequantised when int8).
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Embedding::F32 { table, .. } => table.clone(),
            Embedding::Int8 { table, scales, dim } => {
                table.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / dim]).collect()
            }
        }
    }

    /// Short name of the format.
    pub fn format(&self) -> &'static str {
        match self {
            Embedding::F32 { .. } => "f32",
            Embedding::Int8 { .. } => "int8 rows",
        }
    }
}
