//! GGUF (versions 2 and 3), the container of llama.cpp: the header, metadata of every value type, the
//! tensor index, and the dequantization of the block formats pare reads. The file stays mmapped and
//! tensors stay in their stored format; [`dequantize`] is the scalar definition of each block format
//! (after ggml-quants.c's `dequantize_row_*`), the oracle of faster kernels.
//!
//! Layout: magic `GGUF`, version (u32), tensor count and metadata count (u64), the metadata
//! (`key: string, type: u32, value`), the tensor infos (`name: string, n_dims: u32, dims: u64 ×
//! n_dims` with the fastest dimension first, `type: u32, offset: u64` from the data start), then the
//! data, which starts at the next multiple of `general.alignment` (default 32). Strings are a u64 byte
//! length and UTF-8 bytes. Every count, length, dimension and offset is checked against the file
//! before use, so a corrupt file is an error, never a panic or a huge allocation.

use crate::error::{FormatError, Result};
pub use crate::source::MappedBytes;
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The GGML tensor types pare knows (named as llama.cpp names them). Block formats store a fixed number
/// of values in a fixed number of bytes ([`GgmlType::block`]).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
    /// 32 × 4-bit, one f16 scale: `x = d·(q − 8)` (4.5 bits per weight).
    Q4_0,
    /// 32 × 4-bit, f16 scale and minimum: `x = d·q + m` (5.0 bits).
    Q4_1,
    /// 32 × 5-bit, one f16 scale: `x = d·(q − 16)` (5.5 bits).
    Q5_0,
    /// 32 × 5-bit, f16 scale and minimum (6.0 bits).
    Q5_1,
    /// 32 × int8, one f16 scale (8.5 bits).
    Q8_0,
    /// Super-blocks of 256: 8 sub-blocks of 32 × 4-bit with 6-bit scales and minimums (4.5 bits).
    Q4_K,
    /// Super-blocks of 256: 8 sub-blocks of 32 × 5-bit with 6-bit scales and minimums (5.5 bits).
    Q5_K,
    /// Super-blocks of 256: 16 sub-blocks of 16 × 6-bit with 8-bit scales (6.5625 bits).
    Q6_K,
    /// Any other GGML type (by number): listed, not dequantized.
    Other(u32),
}

impl GgmlType {
    /// The type of GGML's number `t`.
    pub fn from_u32(t: u32) -> Self {
        match t {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            t => GgmlType::Other(t),
        }
    }

    /// GGML's number of the type.
    pub fn to_u32(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
            GgmlType::Other(t) => t,
        }
    }

    /// The name llama.cpp prints.
    pub fn name(self) -> String {
        match self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::BF16 => "BF16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q5_0 => "Q5_0".into(),
            GgmlType::Q5_1 => "Q5_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
            GgmlType::Q4_K => "Q4_K".into(),
            GgmlType::Q5_K => "Q5_K".into(),
            GgmlType::Q6_K => "Q6_K".into(),
            GgmlType::Other(t) => format!("type {t}"),
        }
    }

    /// Values per block and bytes per block; `None` for types pare does not know.
    pub fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_K => (256, 144),
            GgmlType::Q5_K => (256, 176),
            GgmlType::Q6_K => (256, 210),
            GgmlType::Other(_) => return None,
        })
    }

    /// Bits per weight of the stored form.
    pub fn bits_per_weight(self) -> Option<f64> {
        self.block().map(|(e, b)| 8.0 * b as f64 / e as f64)
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type number and the elements.
    Array(u32, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, when it is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// A short rendering for listings (arrays summarised by type and length).
    pub fn summary(&self) -> String {
        match self {
            MetaValue::String(s) if s.chars().count() > 60 => format!("{:?}…", s.chars().take(60).collect::<String>()),
            MetaValue::String(s) => format!("{s:?}"),
            MetaValue::Array(t, v) => format!("[{} × {}]", v.len(), type_name(*t)),
            MetaValue::Bool(b) => b.to_string(),
            MetaValue::F32(f) => f.to_string(),
            MetaValue::F64(f) => f.to_string(),
            v => v.as_u64().map(|x| x.to_string()).unwrap_or_else(|| format!("{v:?}")),
        }
    }
}

fn type_name(t: u32) -> &'static str {
    match t {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "?",
    }
}

/// One tensor of the index.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    /// Name.
    pub name: String,
    /// Dimensions, fastest first (GGML's `ne`): a `[rows][cols]` matrix is `[cols, rows]`.
    pub dims: Vec<usize>,
    /// Stored type.
    pub ty: GgmlType,
    /// Offset of its bytes in the file.
    pub offset: usize,
    /// Bytes it occupies (`None` for types pare does not know).
    pub bytes: Option<usize>,
}

impl GgufTensor {
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Arc<Mmap>,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    /// Tensors in file order.
    pub tensors: Vec<GgufTensor>,
    tensor_index: HashMap<String, usize>,
    /// Alignment of the data section and of every tensor.
    pub alignment: usize,
    /// Offset of the data section.
    pub data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile").field("path", &self.path).field("tensors", &self.tensors.len()).finish()
    }
}

/// Dimensions a tensor may have (GGML's limit).
const MAX_DIMS: u32 = 4;
/// Nesting of arrays in metadata pare accepts.
const MAX_ARRAY_DEPTH: usize = 4;

/// A bounds-checked reader over the header bytes.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: String) -> FormatError {
        FormatError::Gguf { path: self.path.to_path_buf(), msg }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.b.len() - self.at {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                self.at,
                self.b.len()
            )));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A count of items at least `min_size` bytes each, bounded by what remains of the file.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.b.len() - self.at) as u64;
        if n.saturating_mul(min_size.max(1) as u64) > left {
            return Err(self.err(format!(
                "{what} is {n}, more than the {left} bytes left in the file can hold: a truncated or corrupt file"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(&format!("length of {what}"), 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, t: u32, key: &str, depth: usize) -> Result<MetaValue> {
        Ok(match t {
            0 => MetaValue::U8(self.take(1, key)?[0]),
            1 => MetaValue::I8(self.take(1, key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.take(2, key)?.try_into().expect("2 bytes"))),
            3 => MetaValue::I16(i16::from_le_bytes(self.take(2, key)?.try_into().expect("2 bytes"))),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(self.u32(key)? as i32),
            6 => MetaValue::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.take(1, key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.err(format!("metadata {key}: boolean byte {b}"))),
            },
            8 => MetaValue::String(self.string(&format!("metadata {key}"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("metadata {key}: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let et = self.u32(key)?;
                let size = match et {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => return Err(self.err(format!("metadata {key}: unknown array element type {t}"))),
                };
                let n = self.count(&format!("length of metadata array {key}"), size)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(et, key, depth + 1)?);
                }
                MetaValue::Array(et, v)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(self.u64(key)? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64(key)?)),
            t => return Err(self.err(format!("metadata {key}: unknown value type {t}"))),
        })
    }
}

impl GgufFile {
    /// Maps and parses `path`, checking the header, every metadata value, and every tensor's type,
    /// dimensions, alignment and extent against the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| FormatError::io(&path, e))?;
        // SAFETY: the map is read-only; pare never writes model files in place (outputs go to a
        // temporary name and are renamed), so the bytes do not change under us in normal use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(&path, e))?;
        let mut c = Cursor { b: &map, at: 0, path: &path };
        let magic = c.take(4, "the magic")?;
        if magic != b"GGUF" {
            return Err(c.err(format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("GGUF version {version}; pare reads versions 2 and 3")));
        }
        // A tensor info is at least 8 + 4 + 4 + 8 bytes; a metadata entry at least 8 + 4 + 1.
        let n_tensors = c.count("the tensor count", 24)?;
        let n_meta = c.count("the metadata count", 13)?;
        let mut metadata = Vec::with_capacity(n_meta);
        let mut meta_index = HashMap::new();
        for _ in 0..n_meta {
            let key = c.string("a metadata key")?;
            let t = c.u32(&key)?;
            let v = c.value(t, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.err(format!("metadata key {key} appears twice")));
            }
            metadata.push((key, v));
        }
        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a as usize,
                _ => return Err(c.err(format!("general.alignment {v:?} is not a power of two up to 65536"))),
            },
        };
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let nd = c.u32(&name)?;
            if nd == 0 || nd > MAX_DIMS {
                return Err(c.err(format!("tensor {name}: {nd} dimensions (GGUF allows 1 to {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                let d = c.u64(&name)?;
                if d == 0 || d > 1 << 40 {
                    return Err(c.err(format!("tensor {name}: dimension {d}")));
                }
                dims.push(d as usize);
            }
            if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 1 << 48) {
                return Err(c.err(format!("tensor {name}: {dims:?} values is too many")));
            }
            let ty = GgmlType::from_u32(c.u32(&name)?);
            let offset = c.u64(&name)?;
            infos.push((name, dims, ty, offset));
        }
        let data_start = c.at.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::new();
        for (name, dims, ty, offset) in infos {
            let bytes = match ty.block() {
                Some((be, bb)) => {
                    if dims[0] % be != 0 {
                        return Err(c.err(format!(
                            "tensor {name}: {} blocks of {be} values do not tile its rows of {}",
                            ty.name(),
                            dims[0]
                        )));
                    }
                    Some(dims.iter().product::<usize>() / be * bb)
                }
                None => None,
            };
            if offset % alignment as u64 != 0 {
                return Err(
                    c.err(format!("tensor {name}: offset {offset} is not a multiple of the alignment {alignment}"))
                );
            }
            let start = (data_start as u64).checked_add(offset).filter(|&s| s <= map.len() as u64);
            let end = start.and_then(|s| s.checked_add(bytes.unwrap_or(0) as u64));
            match (start, end) {
                (Some(s), Some(e)) if e <= map.len() as u64 => {
                    if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                        return Err(c.err(format!("tensor {name} appears twice")));
                    }
                    tensors.push(GgufTensor { name, dims, ty, offset: s as usize, bytes });
                }
                _ => {
                    return Err(c.err(format!(
                        "tensor {name}: its {} bytes at data offset {offset} run past the end of the file ({} bytes)",
                        bytes.unwrap_or(0),
                        map.len()
                    )));
                }
            }
        }
        let map = Arc::new(map);
        Ok(GgufFile { path, map, version, metadata, meta_index, tensors, tensor_index, alignment, data_start })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A tensor of the index.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor's stored bytes (an error for types pare does not know).
    pub fn bytes(&self, t: &GgufTensor) -> Result<&[u8]> {
        let n = t.bytes.ok_or_else(|| self.unknown_type(t))?;
        Ok(&self.map[t.offset..t.offset + n])
    }

    /// A tensor's stored bytes as a handle that keeps the file mapped while anything holds it.
    pub fn shared_bytes(&self, t: &GgufTensor) -> Result<MappedBytes> {
        let n = t.bytes.ok_or_else(|| self.unknown_type(t))?;
        Ok(MappedBytes::new(Arc::clone(&self.map), t.offset, n))
    }

    fn unknown_type(&self, t: &GgufTensor) -> FormatError {
        FormatError::Gguf {
            path: self.path.clone(),
            msg: format!(
                "tensor {} has GGML {}, which pare does not read (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)",
                t.name,
                t.ty.name()
            ),
        }
    }

    /// A tensor dequantized to f32 (row-major, fastest dimension last).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor { path: self.path.clone(), name: name.to_string() })?;
        let mut out = vec![0f32; t.numel()];
        dequantize(t.ty, self.bytes(t)?, &mut out).map_err(|msg| FormatError::Gguf { path: self.path.clone(), msg })?;
        Ok(out)
    }
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Scale and minimum `j` (0..8) of a Q4_K / Q5_K super-block's 12 packed 6-bit values.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Dequantizes `bytes` of type `ty` into `out` (whose length is the number of values): the scalar
/// definition of each format, operation for operation as ggml's reference (f32 arithmetic).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> std::result::Result<(), String> {
    let Some((be, bb)) = ty.block() else { return Err(format!("GGML {} is not a format pare reads", ty.name())) };
    if !out.len().is_multiple_of(be) || bytes.len() != out.len() / be * bb {
        return Err(format!("{} bytes of {} for {} values", bytes.len(), ty.name(), out.len()));
    }
    let blocks = bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be));
    match ty {
        GgmlType::F32 => {
            for (b, y) in blocks {
                y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, y) in blocks {
                y[0] = f16(b);
            }
        }
        GgmlType::BF16 => {
            for (b, y) in blocks {
                y[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => {
            for (b, y) in blocks {
                let (d, qs) = (f16(b), &b[2..18]);
                for j in 0..16 {
                    y[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
                    y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (b, y) in blocks {
                let (d, m, qs) = (f16(b), f16(&b[2..]), &b[4..20]);
                for j in 0..16 {
                    y[j] = (qs[j] & 0xF) as f32 * d + m;
                    y[j + 16] = (qs[j] >> 4) as f32 * d + m;
                }
            }
        }
        GgmlType::Q5_0 => {
            for (b, y) in blocks {
                let (d, qh, qs) = (f16(b), u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..22]);
                for j in 0..16 {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    y[j] = ((((qs[j] & 0xF) as u32) | h0) as i32 - 16) as f32 * d;
                    y[j + 16] = ((((qs[j] >> 4) as u32) | h1) as i32 - 16) as f32 * d;
                }
            }
        }
        GgmlType::Q5_1 => {
            for (b, y) in blocks {
                let (d, m) = (f16(b), f16(&b[2..]));
                let (qh, qs) = (u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..24]);
                for j in 0..16 {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    y[j] = (((qs[j] & 0xF) as u32) | h0) as f32 * d + m;
                    y[j + 16] = (((qs[j] >> 4) as u32) | h1) as f32 * d + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (b, y) in blocks {
                let d = f16(b);
                for (y, &q) in y.iter_mut().zip(&b[2..34]) {
                    *y = (q as i8) as f32 * d;
                }
            }
        }
        GgmlType::Q4_K => {
            for (b, y) in blocks {
                let (d, min, sc, qs) = (f16(b), f16(&b[2..]), &b[4..16], &b[16..144]);
                for (c, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
                    let (s1, m1) = scale_min_k4(2 * c, sc);
                    let (s2, m2) = scale_min_k4(2 * c + 1, sc);
                    let (d1, d2, m1, m2) = (d * s1 as f32, d * s2 as f32, min * m1 as f32, min * m2 as f32);
                    for l in 0..32 {
                        y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                        y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q5_K => {
            for (b, y) in blocks {
                let (d, min, sc, qh, qs) = (f16(b), f16(&b[2..]), &b[4..16], &b[16..48], &b[48..176]);
                for (c, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
                    let (s1, m1) = scale_min_k4(2 * c, sc);
                    let (s2, m2) = scale_min_k4(2 * c + 1, sc);
                    let (d1, d2, m1, m2) = (d * s1 as f32, d * s2 as f32, min * m1 as f32, min * m2 as f32);
                    let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        y[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                        y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            for (b, y) in blocks {
                let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], f16(&b[208..]));
                for n in 0..2 {
                    let (ql, qh, sc, y) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..], &mut y[128 * n..]);
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let s = |i: usize| d * (sc[i] as i8) as f32;
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
            }
        }
        GgmlType::Other(_) => unreachable!("no block size"),
    }
    Ok(())
}
