//! Writing GGUF v3 files that llama.cpp and the `gguf` Python package read: the metadata, the tensor
//! index, then each tensor's bytes at an aligned offset. The index is written first from the tensors'
//! shapes and types, so the data can be produced one tensor at a time (a model larger than memory
//! streams through). The file goes to a temporary name and is renamed when complete.

use crate::error::{FormatError, Result};
use crate::gguf::{GgmlType, MetaValue};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Alignment of the data section and of every tensor unless the metadata sets `general.alignment`.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// A tensor to write: its name, GGML dimensions (fastest first: a `[rows][cols]` matrix is
/// `[cols, rows]`) and stored type.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Dimensions, fastest first.
    pub dims: Vec<usize>,
    /// Stored type.
    pub ty: GgmlType,
}

impl TensorSpec {
    /// Bytes of its data, or an error when the type is unknown or the first dimension is not a whole
    /// number of blocks.
    pub fn bytes(&self) -> std::result::Result<usize, String> {
        let (be, bb) =
            self.ty.block().ok_or_else(|| format!("{}: GGML {} cannot be written", self.name, self.ty.name()))?;
        let first = self.dims.first().copied().unwrap_or(1);
        if !first.is_multiple_of(be) {
            return Err(format!(
                "{}: rows of {first} values are not whole blocks of {be} for {}",
                self.name,
                self.ty.name()
            ));
        }
        Ok(self.dims.iter().product::<usize>() / be * bb)
    }
}

fn put_str(o: &mut Vec<u8>, s: &str) {
    o.extend_from_slice(&(s.len() as u64).to_le_bytes());
    o.extend_from_slice(s.as_bytes());
}

/// GGUF's number of a value's type.
fn type_of(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(..) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(o: &mut Vec<u8>, v: &MetaValue) -> std::result::Result<(), String> {
    match v {
        MetaValue::U8(x) => o.push(*x),
        MetaValue::I8(x) => o.push(*x as u8),
        MetaValue::U16(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => o.push(u8::from(*x)),
        MetaValue::String(s) => put_str(o, s),
        MetaValue::Array(t, items) => {
            o.extend_from_slice(&t.to_le_bytes());
            o.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if type_of(item) != *t {
                    return Err(format!("array of type {t} holds a value of type {}", type_of(item)));
                }
                put_value(o, item)?;
            }
        }
        MetaValue::U64(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => o.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => o.extend_from_slice(&x.to_le_bytes()),
    }
    Ok(())
}

/// The alignment `metadata` asks for (`general.alignment`), or the default.
fn alignment(metadata: &[(String, MetaValue)]) -> std::result::Result<usize, String> {
    Ok(match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a as usize,
            _ => return Err(format!("general.alignment {} is not a power of two", v.summary())),
        },
        None => DEFAULT_ALIGNMENT,
    })
}

/// Header, metadata and tensor index of a file, padded to the data section; and each tensor's
/// offset in the data section.
pub fn header(
    metadata: &[(String, MetaValue)],
    tensors: &[TensorSpec],
) -> std::result::Result<(Vec<u8>, Vec<usize>), String> {
    let alignment = alignment(metadata)?;
    let mut seen = std::collections::HashSet::new();
    let mut o = Vec::new();
    o.extend_from_slice(b"GGUF");
    o.extend_from_slice(&3u32.to_le_bytes());
    o.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    o.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        if !seen.insert(k.as_str()) {
            return Err(format!("metadata key {k} appears twice"));
        }
        put_str(&mut o, k);
        o.extend_from_slice(&type_of(v).to_le_bytes());
        put_value(&mut o, v).map_err(|e| format!("metadata {k}: {e}"))?;
    }
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut names = std::collections::HashSet::new();
    let mut at = 0usize;
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(format!("tensor {} appears twice", t.name));
        }
        put_str(&mut o, &t.name);
        o.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for &d in &t.dims {
            o.extend_from_slice(&(d as u64).to_le_bytes());
        }
        o.extend_from_slice(&t.ty.to_u32().to_le_bytes());
        o.extend_from_slice(&(at as u64).to_le_bytes());
        offsets.push(at);
        at = (at + t.bytes()?).next_multiple_of(alignment);
    }
    o.resize(o.len().next_multiple_of(alignment), 0);
    Ok((o, offsets))
}

/// Writes a GGUF v3 file: `metadata` in order, then `tensors`, the data of tensor `i` coming from
/// `data(i)` (exactly [`TensorSpec::bytes`] bytes, checked). The file is complete or absent.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorSpec],
    data: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<()> {
    let bad = |msg: String| FormatError::Config { path: path.to_path_buf(), msg };
    let (head, offsets) = header(metadata, tensors).map_err(bad)?;
    let alignment = alignment(metadata).map_err(bad)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |e: std::io::Error| FormatError::io(path, e);
    let result = (|| -> Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io)?);
        w.write_all(&head).map_err(io)?;
        let mut at = 0usize;
        for (i, t) in tensors.iter().enumerate() {
            let bytes = data(i)?;
            let want = t.bytes().map_err(bad)?;
            if bytes.len() != want {
                return Err(bad(format!(
                    "tensor {}: {} bytes of data, its shape and type need {want}",
                    t.name,
                    bytes.len()
                )));
            }
            w.write_all(&vec![0u8; offsets[i] - at]).map_err(io)?;
            w.write_all(&bytes).map_err(io)?;
            at = offsets[i] + bytes.len();
        }
        // The data section ends padded, as llama.cpp sizes it (the sum of padded tensor sizes).
        w.write_all(&vec![0u8; at.next_multiple_of(alignment) - at]).map_err(io)?;
        w.flush().map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn what_is_written_reads_back() {
        let dir = std::env::temp_dir().join(format!("pare-gguf-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.gguf");
        let meta = vec![
            ("general.architecture".to_string(), MetaValue::String("llama".into())),
            ("llama.block_count".to_string(), MetaValue::U32(2)),
            ("x.f".to_string(), MetaValue::F32(1.5)),
            ("x.flag".to_string(), MetaValue::Bool(true)),
            (
                "x.names".to_string(),
                MetaValue::Array(8, vec![MetaValue::String("a".into()), MetaValue::String("bc".into())]),
            ),
            ("x.big".to_string(), MetaValue::I64(-5)),
        ];
        let tensors = vec![
            TensorSpec { name: "a".into(), dims: vec![3], ty: GgmlType::F32 },
            TensorSpec { name: "b".into(), dims: vec![64, 2], ty: GgmlType::Q8_0 },
            TensorSpec { name: "c".into(), dims: vec![5, 1], ty: GgmlType::F16 },
        ];
        let data = |i: usize| -> Vec<u8> {
            match i {
                0 => [1f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
                1 => (0..4 * 34).map(|b| if b % 34 < 2 { 0 } else { b as u8 }).collect(),
                _ => (0..10).map(|b| b as u8).collect(),
            }
        };
        write_gguf(&path, &meta, &tensors, &mut |i| Ok(data(i))).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.metadata, meta);
        for (i, t) in tensors.iter().enumerate() {
            let got = f.tensor(&t.name).unwrap();
            assert_eq!((&got.dims, got.ty), (&t.dims, t.ty));
            assert_eq!(got.offset % DEFAULT_ALIGNMENT, 0);
            assert_eq!(f.bytes(got).unwrap(), &data(i)[..]);
        }
        // Wrong data length: an error, and no file left behind.
        let bad = dir.join("bad.gguf");
        let err = write_gguf(&bad, &meta, &tensors, &mut |_| Ok(vec![0u8; 3])).unwrap_err();
        assert!(err.to_string().contains("tensor b") || err.to_string().contains("tensor a"), "{err}");
        assert!(!bad.exists());
        assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-")));
        // Rows that are not whole blocks.
        let odd = [TensorSpec { name: "q".into(), dims: vec![48, 2], ty: GgmlType::Q4_0 }];
        assert!(header(&[], &odd).unwrap_err().contains("not whole blocks"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
