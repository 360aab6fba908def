//! Reading a checkpoint as pare writes it (and as other compressed-tensors producers do): a
//! safetensors file and the compression blocks of its config.json, giving each module in the form it
//! runs in. Architecture files ask for their tensors by name and shape; nothing here knows one.

use crate::error::{ModelError, Result};
use crate::weight::{Embedding, Linear, Weight};
use pare_formats::TensorFile;
use pare_formats::quant_config::{CompressionConfig, ModuleKind, QuantizationConfig};
use pare_formats::sparse::{self, Matrix, SparseRows};
use pare_kernels::ActQuant;

/// Reads a checkpoint's tensors under an optional name prefix (`bert.` in checkpoints saved with a
/// task head), following its quantization config for int8 tensors and its sparsity config for
/// compressed rows: float, int8 per channel (dynamic or static activations, outlier channels) and
/// bitmask-sparse Linears, float or int8-per-row embedding tables.
pub struct Checkpoint<'a> {
    /// The tensor file.
    pub file: &'a TensorFile,
    /// Prefix of every name.
    pub prefix: &'static str,
    /// The compression blocks of its config.json.
    pub compression: &'a CompressionConfig,
}

impl Checkpoint<'_> {
    /// Its quantization config.
    pub fn quant(&self) -> Option<&QuantizationConfig> {
        self.compression.quantization.as_ref()
    }

    /// `name` with the prefix.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Tensor `name` as f32, checked against `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.file.f32(&self.name(name), shape)?)
    }

    /// Stored dtype of tensor `name`.
    pub fn dtype(&self, name: &str) -> Result<String> {
        Ok(self.file.shape(&self.name(name))?.1)
    }

    /// An error about this checkpoint.
    pub fn error(&self, msg: String) -> ModelError {
        ModelError::Format(pare_formats::FormatError::Config { path: self.file.path().to_path_buf(), msg })
    }

    /// Per-row (per-output-channel) scales stored as `[rows, 1]` or `[rows]`.
    pub fn scales(&self, name: &str, rows: usize) -> Result<Vec<f32>> {
        let full = self.name(name);
        let shape = self.file.shape(&full)?.0;
        let v = if shape == [rows] { self.f32(name, &[rows])? } else { self.f32(name, &[rows, 1])? };
        if let Some(i) = v.iter().position(|s| *s < 0.0) {
            return Err(self.error(format!("tensor {full} has a negative scale at row {i}")));
        }
        Ok(v)
    }

    /// Embedding table `name` (`rows × dim`): float, or int8 rows with per-row scales.
    pub fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        let w = format!("{name}.weight");
        if self.dtype(&w)? != "I8" {
            return Ok(Embedding::F32 { table: self.f32(&w, &[rows, dim])?, dim });
        }
        let scheme = self.quant().and_then(|q| q.scheme_for(name, ModuleKind::Embedding));
        let ok =
            scheme.and_then(|s| s.weights.as_ref()).is_some_and(|a| a.num_bits == 8 && a.symmetric && a.kind == "int");
        if !ok {
            return Err(
                self.error(format!("{w} is int8 but no symmetric 8-bit int scheme of quantization_config covers it"))
            );
        }
        Ok(Embedding::Int8 {
            table: self.file.i8(&self.name(&w), &[rows, dim])?,
            scales: self.scales(&format!("{name}.weight_scale"), rows)?,
            dim,
        })
    }

    /// Linear `name` (`out × inp`) with its bias, as stored: float, int8 or sparse.
    pub fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let bias = self.f32(&format!("{name}.bias"), &[out])?;
        self.linear_with_bias(name, out, inp, bias)
    }

    /// Linear `name` (`out × inp`) with the given bias (a model without stored biases passes zeros).
    pub fn linear_with_bias(&self, name: &str, out: usize, inp: usize, bias: Vec<f32>) -> Result<Linear> {
        let w = format!("{name}.weight");
        let full = self.name(name);
        // Pruned checkpoints are read as compressed rows, never densified unless they run dense.
        let stored = if sparse::is_bitmask(self.file, &full) && inp <= 1 << 16 {
            Stored::Sparse(sparse::bitmask_rows(self.file, &full, out, inp)?)
        } else if sparse::is_bitmask(self.file, &full) {
            Stored::Dense(sparse::bitmask_decode(self.file, &full, out, inp)?)
        } else if self.dtype(&w)? == "I8" {
            Stored::Dense(Matrix::I8(self.file.i8(&self.name(&w), &[out, inp])?))
        } else {
            Stored::Dense(Matrix::F32(self.f32(&w, &[out, inp])?))
        };
        let stored = match stored {
            Stored::Dense(Matrix::F32(dense)) => {
                return Ok(Linear { weight: Weight::f32_auto(&dense, out, inp), bias });
            }
            Stored::Sparse(s @ SparseRows { values: Matrix::F32(_), .. }) => {
                return Ok(Linear { weight: Weight::f32_from_sparse(s), bias });
            }
            int8 => int8,
        };
        let scheme = self
            .quant()
            .and_then(|q| q.scheme_for(name, ModuleKind::Linear))
            .ok_or_else(|| self.error(format!("{w} is int8 but no group of quantization_config covers {name}")))?;
        let wa = scheme
            .weights
            .as_ref()
            .ok_or_else(|| self.error(format!("the scheme of {name} has no weight arguments")))?;
        if !(wa.num_bits == 8 && wa.kind == "int" && wa.symmetric && wa.strategy.as_deref() == Some("channel")) {
            return Err(self.error(format!(
                "{name}: pare runs int8 weights quantized symmetrically per channel, not {:?}/{}-bit/{}",
                wa.strategy,
                wa.num_bits,
                if wa.symmetric { "symmetric" } else { "asymmetric" }
            )));
        }
        let scales = self.scales(&format!("{name}.weight_scale"), out)?;
        let Some(ia) = scheme.input_activations.as_ref() else {
            // Weight-only int8: dequantize and run in float.
            let q = stored.into_dense_i8();
            let dense: Vec<f32> = q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / inp]).collect();
            return Ok(Linear { weight: Weight::f32_auto(&dense, out, inp), bias });
        };
        if ia.num_bits != 8 || ia.kind != "int" {
            return Err(
                self.error(format!("{name}: input activations must be 8-bit int, not {}-bit {}", ia.num_bits, ia.kind))
            );
        }
        let act = match (ia.is_dynamic(), ia.strategy.as_deref(), ia.symmetric) {
            (true, Some("token"), false) => ActQuant::DynamicAsymmetric,
            (true, Some("token"), true) => ActQuant::DynamicSymmetric,
            (false, Some("tensor"), sym) => {
                // pare's own range (over the channels it quantizes) when the file records one, else
                // the compressed-tensors tensors.
                let (scale, zp, at) = match self.compression.pare.activation_ranges.get(name) {
                    Some(r) => (
                        r.input_scale,
                        if sym { 0 } else { r.input_zero_point },
                        format!("{}.activation_ranges[{name:?}]", pare_formats::quant_config::PARE_EXTENSION_KEY),
                    ),
                    None => {
                        let scale = self.f32(&format!("{name}.input_scale"), &[1])?[0];
                        let zp = if sym {
                            0
                        } else {
                            self.file.i8(&self.name(&format!("{name}.input_zero_point")), &[1])?[0] as i32
                        };
                        (scale, zp, name.to_string())
                    }
                };
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(self.error(format!("{at}.input_scale must be positive, is {scale}")));
                }
                if !(-128..=127).contains(&zp) {
                    return Err(self.error(format!("{at}.input_zero_point {zp} is outside [−128, 127]")));
                }
                ActQuant::Static { scale, zero: zp + 128 }
            }
            (d, s, _) => {
                return Err(self.error(format!(
                    "{name}: input activations {} per {} are not supported (dynamic per token, or static per tensor)",
                    if d { "dynamic" } else { "static" },
                    s.unwrap_or("?")
                )));
            }
        };
        let outliers = self.compression.pare.activation_outliers.get(name).cloned().unwrap_or_default();
        if let Some(&o) = outliers.iter().find(|&&o| o as usize >= inp) {
            return Err(self.error(format!("{name}: activation outlier channel {o} is not below its {inp} inputs")));
        }
        if outliers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(self.error(format!("{name}: activation outlier channels must be distinct and ascending")));
        }
        let weight = match stored {
            Stored::Sparse(s) => Weight::i8_from_sparse(s, &scales, act, &outliers),
            dense => Weight::i8_auto(&dense.into_dense_i8(), &scales, out, inp, act, &outliers),
        };
        Ok(Linear { weight, bias })
    }
}

/// A Linear weight as read from the checkpoint.
enum Stored {
    Dense(Matrix),
    Sparse(SparseRows),
}

impl Stored {
    /// The int8 codes as a dense matrix (callers have handled f32 values).
    fn into_dense_i8(self) -> Vec<i8> {
        match self {
            Stored::Dense(Matrix::I8(q)) => q,
            Stored::Sparse(s) => match s.to_dense() {
                Matrix::I8(q) => q,
                Matrix::F32(_) => unreachable!("f32 values returned earlier"),
            },
            Stored::Dense(Matrix::F32(_)) => unreachable!("f32 values returned earlier"),
        }
    }
}
