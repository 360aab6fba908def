//! Writing safetensors files and whole model directories atomically: everything goes to a temporary
//! name beside the target and is renamed into place only when complete.

use crate::error::{FormatError, Result};
pub use safetensors::tensor::Dtype;
use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One tensor to write.
#[derive(Clone, Debug)]
pub struct TensorData {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// An F32 tensor.
    pub fn f32(name: impl Into<String>, shape: &[usize], values: &[f32]) -> Self {
        TensorData {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An I8 tensor.
    pub fn i8(name: impl Into<String>, shape: &[usize], values: &[i8]) -> Self {
        TensorData {
            name: name.into(),
            dtype: Dtype::I8,
            shape: shape.to_vec(),
            bytes: values.iter().map(|&v| v as u8).collect(),
        }
    }

    /// A U8 tensor.
    pub fn u8(name: impl Into<String>, shape: &[usize], values: &[u8]) -> Self {
        TensorData { name: name.into(), dtype: Dtype::U8, shape: shape.to_vec(), bytes: values.to_vec() }
    }

    /// An I32 tensor.
    pub fn i32(name: impl Into<String>, shape: &[usize], values: &[i32]) -> Self {
        TensorData {
            name: name.into(),
            dtype: Dtype::I32,
            shape: shape.to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An F16 tensor from the values' bits.
    pub fn f16_bits(name: impl Into<String>, shape: &[usize], bits: &[u16]) -> Self {
        TensorData {
            name: name.into(),
            dtype: Dtype::F16,
            shape: shape.to_vec(),
            bytes: bits.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An I64 tensor.
    pub fn i64(name: impl Into<String>, shape: &[usize], values: &[i64]) -> Self {
        TensorData {
            name: name.into(),
            dtype: Dtype::I64,
            shape: shape.to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The bytes of a safetensors file holding `tensors` (sorted by name) and `metadata`.
pub fn serialize(tensors: &[TensorData], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|v| (t.name.clone(), v)).map_err(|e| {
                FormatError::Safetensors { path: PathBuf::from(&t.name), msg: format!("cannot serialise tensor: {e}") }
            })
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, metadata)
        .map_err(|e| FormatError::Safetensors { path: PathBuf::from("<memory>"), msg: e.to_string() })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(FormatError::io(path, e));
    }
    Ok(())
}

/// Writes a safetensors file atomically.
pub fn write_safetensors(path: &Path, tensors: &[TensorData], metadata: Option<HashMap<String, String>>) -> Result<()> {
    write_atomic(path, &serialize(tensors, metadata)?)
}

/// A model directory being written: files go into a hidden staging directory beside `dest`, which
/// [`StagedDir::commit`] renames to `dest`. Dropping it uncommitted removes the staging directory.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl StagedDir {
    /// Starts writing `dest` (which must not exist, or be an empty directory).
    pub fn new(dest: &Path) -> Result<Self> {
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        std::fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
        let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging).map_err(|e| FormatError::io(&staging, e))?;
        Ok(StagedDir { staging, dest: dest.to_path_buf(), done: false })
    }

    /// Path of a file inside the staging directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Renames the staging directory to the destination, replacing an existing one.
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.dest.exists() {
            let old = self.staging.with_extension("old");
            std::fs::rename(&self.dest, &old).map_err(|e| FormatError::io(&self.dest, e))?;
            if let Err(e) = std::fs::rename(&self.staging, &self.dest) {
                let _ = std::fs::rename(&old, &self.dest);
                return Err(FormatError::io(&self.dest, e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.staging, &self.dest).map_err(|e| FormatError::io(&self.dest, e))?;
        }
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}
