//! safetensors files through mmap: the tensor index, raw bytes, and checked f32 views.

use crate::error::{FormatError, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One tensor of the file's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name as stored.
    pub name: String,
    /// dtype as safetensors names it (`F32`, `I8`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Bytes of data.
    pub bytes: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An open safetensors file, mapped into memory and validated (header, offsets, file length).
pub struct TensorFile {
    path: PathBuf,
    map: std::sync::Arc<Mmap>,
    data_start: usize,
    index: HashMap<String, (Dtype, Vec<usize>, usize, usize)>,
    order: Vec<String>,
    metadata: HashMap<String, String>,
}

impl std::fmt::Debug for TensorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorFile").field("path", &self.path).field("tensors", &self.order.len()).finish()
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

impl TensorFile {
    /// Maps and validates `path`. A truncated or corrupt file is an error naming it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| FormatError::io(&path, e))?;
        // SAFETY: the map is read-only; pare never writes model files in place (outputs go to a
        // temporary name and are renamed), so the bytes do not change under us in normal use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(&path, e))?;
        let (header, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| FormatError::Safetensors { path: path.clone(), msg: describe_error(&e, map.len()) })?;
        let mut index = HashMap::new();
        let mut order: Vec<(usize, String)> = Vec::new();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            order.push((s, name.clone()));
            index.insert(name, (info.dtype, info.shape.clone(), s, e));
        }
        order.sort();
        Ok(TensorFile {
            path,
            map: std::sync::Arc::new(map),
            data_start: 8 + header,
            index,
            order: order.into_iter().map(|(_, n)| n).collect(),
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }

    /// The `__metadata__` string map of the header.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Every tensor, in file order.
    pub fn infos(&self) -> Vec<TensorInfo> {
        self.order.iter().filter_map(|n| self.info(n)).collect()
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// One tensor's index entry.
    pub fn info(&self, name: &str) -> Option<TensorInfo> {
        self.index.get(name).map(|(d, shape, s, e)| TensorInfo {
            name: name.to_string(),
            dtype: dtype_name(*d),
            shape: shape.clone(),
            bytes: e - s,
        })
    }

    /// A tensor's bytes as a handle that keeps the file mapped while anything holds it.
    pub fn shared_bytes(&self, name: &str) -> Result<crate::source::MappedBytes> {
        let (_, _, s, e) = *self.entry(name)?;
        Ok(crate::source::MappedBytes::new(std::sync::Arc::clone(&self.map), self.data_start + s, e - s))
    }

    /// Raw little-endian bytes of a tensor.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let (_, _, s, e) = self.entry(name)?;
        Ok(&self.map[self.data_start + s..self.data_start + e])
    }

    fn entry(&self, name: &str) -> Result<&(Dtype, Vec<usize>, usize, usize)> {
        self.index
            .get(name)
            .ok_or_else(|| FormatError::MissingTensor { path: self.path.clone(), name: name.to_string() })
    }

    /// Checks that a tensor exists with exactly this shape.
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        let (_, got, _, _) = self.entry(name)?;
        if got != shape {
            return Err(FormatError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                got: got.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(())
    }

    /// A floating-point tensor (F32, F16 or BF16) as f32, checked to have shape `shape` and only
    /// finite values.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.expect_shape(name, shape)?;
        let (dtype, _, _, _) = self.entry(name)?;
        let v: Vec<f32> = match dtype {
            Dtype::F32 => self.copy_out(name, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))?,
            Dtype::F16 => self.copy_out(name, 2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())?,
            Dtype::BF16 => self.copy_out(name, 2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())?,
            d => return Err(self.dtype_error(name, *d, "floating point")),
        };
        self.check_finite(name, &v)?;
        Ok(v)
    }

    /// An I8 tensor of shape `shape`.
    pub fn i8(&self, name: &str, shape: &[usize]) -> Result<Vec<i8>> {
        self.expect_shape(name, shape)?;
        match self.entry(name)?.0 {
            Dtype::I8 => self.copy_out(name, 1, |b| b[0] as i8),
            d => Err(self.dtype_error(name, d, "I8")),
        }
    }

    /// A U8 tensor of shape `shape`.
    pub fn u8(&self, name: &str, shape: &[usize]) -> Result<Vec<u8>> {
        self.expect_shape(name, shape)?;
        match self.entry(name)?.0 {
            Dtype::U8 => self.copy_out(name, 1, |b| b[0]),
            d => Err(self.dtype_error(name, d, "U8")),
        }
    }

    /// The values of a tensor, converted element by element (`size` bytes each) a megabyte at a time,
    /// each megabyte's pages given back once copied ([`TensorFile::release_range`]): loading holds at
    /// most a megabyte of a tensor twice. At the end the whole file's pages go: the kernel maps pages
    /// around each one read (fault-around, large folios), so neighbouring tensors' pages are resident
    /// too, and a copied-out model needs none of them.
    fn copy_out<T>(&self, name: &str, size: usize, conv: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
        const CHUNK: usize = 1 << 20;
        let (_, _, s, e) = *self.entry(name)?;
        let bytes = self.bytes(name)?;
        let mut v = Vec::with_capacity(bytes.len() / size);
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            v.extend(chunk.chunks_exact(size).map(&conv));
            let start = self.data_start + s + i * CHUNK;
            self.release_range(start, (start + CHUNK).min(self.data_start + e));
        }
        self.release_range(0, self.map.len());
        Ok(v)
    }

    /// Gives back this process's resident pages of a tensor (the whole pages inside its bytes) once
    /// they have been copied out, so a loaded model does not also hold its file in memory. Reading the
    /// tensor again maps the pages in again from the page cache; nothing changes but residency.
    pub fn release(&self, name: &str) {
        if let Some(&(_, _, s, e)) = self.index.get(name) {
            self.release_range(self.data_start + s, self.data_start + e);
        }
    }

    /// [`TensorFile::release`] of the whole pages inside bytes `start .. end` of the file.
    fn release_range(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let (a, b) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if b > a {
            // SAFETY: the map is a read-only, shared mapping of a file: MADV_DONTNEED only drops this
            // process's page-table entries, and later reads fault the same file contents back in, so
            // slices borrowed from the map keep their values. A failure (e.g. another page size)
            // changes nothing and is ignored.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
        }
    }

    /// The safetensors dtype of a tensor.
    pub fn dtype(&self, name: &str) -> Result<Dtype> {
        Ok(self.entry(name)?.0)
    }

    /// Shape and dtype of a tensor.
    pub fn shape(&self, name: &str) -> Result<(Vec<usize>, String)> {
        let (d, s, _, _) = self.entry(name)?;
        Ok((s.clone(), dtype_name(*d)))
    }

    fn dtype_error(&self, name: &str, d: Dtype, wanted: &str) -> FormatError {
        FormatError::Dtype {
            path: self.path.clone(),
            name: name.to_string(),
            dtype: dtype_name(d),
            wanted: wanted.into(),
        }
    }

    /// Rejects NaN and infinities.
    pub fn check_finite(&self, name: &str, v: &[f32]) -> Result<()> {
        if let Some(first) = v.iter().position(|x| !x.is_finite()) {
            let count = v.iter().filter(|x| !x.is_finite()).count();
            return Err(FormatError::NonFinite { path: self.path.clone(), name: name.to_string(), count, first });
        }
        Ok(())
    }
}

fn describe_error(e: &safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => {
            format!("the header's tensors do not end where the file ends ({len} bytes): truncated or padded file")
        }
        E::HeaderTooSmall => format!("only {len} bytes, too short for a header"),
        E::InvalidHeaderLength => "header length points past the end of the file (truncated or not safetensors)".into(),
        E::InvalidHeaderDeserialization(err) => format!("header is not valid safetensors JSON ({err})"),
        other => other.to_string(),
    }
}
