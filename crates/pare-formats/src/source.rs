//! The tensor-source seam: one view of a checkpoint's tensors whatever the container (safetensors
//! or GGUF): names, shapes in PyTorch's order (outermost first), the stored type (block-quantized
//! GGML types included), f32 values (converted or dequantized, checked), and the stored bytes kept
//! mapped for kernels that read them in place.

use crate::error::{FormatError, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::tensors::TensorFile;
use memmap2::Mmap;
use std::path::Path;
use std::sync::Arc;

/// Bytes inside a shared read-only file map (a tensor as stored): cheap to clone; the map lives as
/// long as any handle does.
#[derive(Clone)]
pub struct MappedBytes {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    /// Whether the map reads a file (else it is an anonymous copy).
    file: bool,
}

impl MappedBytes {
    /// `len` bytes from `start` of `map` (which must hold them).
    pub(crate) fn new(map: Arc<Mmap>, start: usize, len: usize) -> Self {
        assert!(start + len <= map.len(), "MappedBytes past the end of the map");
        MappedBytes { map, start, len, file: true }
    }

    /// Tells the kernel that this process no longer needs the resident pages lying wholly inside
    /// these bytes (for bytes copied elsewhere, e.g. laid out anew at load, so that they are not
    /// held twice). The bytes stay readable: a file map reads them again from the file if touched.
    /// No effect on an anonymous copy, whose pages are the only copy.
    pub fn release(&self) {
        const PAGE: usize = 4096;
        let (lo, hi) = (self.start.next_multiple_of(PAGE), (self.start + self.len) / PAGE * PAGE);
        if self.file && lo < hi {
            // SAFETY: the map is a read-only file map (never written through), so dropping its
            // pages only makes the next read fault them in again from the file. A failure (a page
            // size other than 4 KiB) leaves the pages resident, which is harmless.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo) };
        }
    }
}

impl MappedBytes {
    /// A copy of `bytes` in an anonymous read-only map (tensors converted at load, e.g. to blocks).
    pub fn owned(bytes: &[u8]) -> std::io::Result<Self> {
        let mut m = memmap2::MmapMut::map_anon(bytes.len().max(1))?;
        m[..bytes.len()].copy_from_slice(bytes);
        Ok(MappedBytes { map: Arc::new(m.make_read_only()?), start: 0, len: bytes.len(), file: false })
    }
}

impl std::ops::Deref for MappedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for MappedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedBytes({} bytes at {})", self.len, self.start)
    }
}

/// How a tensor is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredType {
    /// A safetensors dtype (`F32`, `F16`, `BF16`, `I8`, ...).
    Safetensors(String),
    /// A GGML type (`F32`, `Q4_1`, `Q8_0`, ...).
    Ggml(GgmlType),
}

impl StoredType {
    /// The GGML type, when the tensor is one.
    pub fn ggml(&self) -> Option<GgmlType> {
        match self {
            StoredType::Ggml(t) => Some(*t),
            StoredType::Safetensors(_) => None,
        }
    }
}

/// A checkpoint's tensors, whatever the container.
pub trait TensorSource {
    /// The file the tensors come from.
    fn path(&self) -> &Path;
    /// Every tensor's name, in file order.
    fn names(&self) -> Vec<String>;
    /// A tensor's shape, outermost dimension first (PyTorch's order), or `None` if absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// How a tensor is stored, or `None` if absent.
    fn stored(&self, name: &str) -> Option<StoredType>;
    /// A tensor's values as f32 (converted or dequantized), checked to have `shape` and finite values.
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// A tensor's stored bytes, kept mapped.
    fn mapped(&self, name: &str) -> Result<MappedBytes>;
}

impl TensorSource for TensorFile {
    fn path(&self) -> &Path {
        TensorFile::path(self)
    }
    fn names(&self) -> Vec<String> {
        self.infos().into_iter().map(|i| i.name).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|i| i.shape)
    }
    fn stored(&self, name: &str) -> Option<StoredType> {
        self.info(name).map(|i| StoredType::Safetensors(i.dtype))
    }
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        TensorFile::f32(self, name, shape)
    }
    fn mapped(&self, name: &str) -> Result<MappedBytes> {
        self.shared_bytes(name)
    }
}

impl TensorSource for GgufFile {
    fn path(&self) -> &Path {
        GgufFile::path(self)
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensor(name).map(|t| t.dims.iter().rev().copied().collect())
    }
    fn stored(&self, name: &str) -> Option<StoredType> {
        self.tensor(name).map(|t| StoredType::Ggml(t.ty))
    }
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let got = TensorSource::shape(self, name)
            .ok_or_else(|| FormatError::MissingTensor { path: self.path().to_path_buf(), name: name.to_string() })?;
        if got != shape {
            return Err(FormatError::Shape {
                path: self.path().to_path_buf(),
                name: name.to_string(),
                got,
                expected: shape.to_vec(),
            });
        }
        let v = self.dequantize(name)?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(FormatError::Gguf {
                path: self.path().to_path_buf(),
                msg: format!("tensor {name} holds a non-finite value at {i}"),
            });
        }
        Ok(v)
    }
    fn mapped(&self, name: &str) -> Result<MappedBytes> {
        let t = self
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor { path: self.path().to_path_buf(), name: name.to_string() })?;
        self.shared_bytes(t)
    }
}
