//! The sparse layouts of compressed-tensors, so pruned weights shrink on disk and other tools read them:
//!
//! - `sparse-bitmask` (any pattern): `M.shape` (I64 `[2]`), `M.compressed` (the nonzero values in row-major
//!   order, 1-D), `M.bitmask` (U8 `[rows, ⌈cols/8⌉]`, bit `c % 8` of byte `c / 8` set where
//!   `W[r][c] ≠ 0`, least significant bit first), `M.row_offsets` (I64 `[rows]`, index of each row's first
//!   value in `compressed`).
//! - `sparse-24-bitmask` (2:4): `M.shape` (I64 `[2, 1]`), `M.compressed` (`[rows, cols/2]`: the two kept
//!   values of every group of four, even when a kept value is 0), `M.bitmask` (as above, marking the kept
//!   positions).
//!
//! Values are stored in the weight's own dtype (F32, or I8 for quantized weights).

use crate::error::{FormatError, Result};
use crate::writer::TensorData;
use safetensors::Dtype;

/// A 2-D weight as plain values of one dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Matrix {
    /// float32.
    F32(Vec<f32>),
    /// int8.
    I8(Vec<i8>),
}

impl Matrix {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Matrix::F32(v) => v.len(),
            Matrix::I8(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_zero(&self, i: usize) -> bool {
        match self {
            Matrix::F32(v) => v[i] == 0.0,
            Matrix::I8(v) => v[i] == 0,
        }
    }

    fn gather(&self, idx: &[usize]) -> (Dtype, Vec<u8>) {
        match self {
            Matrix::F32(v) => (Dtype::F32, idx.iter().flat_map(|&i| v[i].to_le_bytes()).collect()),
            Matrix::I8(v) => (Dtype::I8, idx.iter().map(|&i| v[i] as u8).collect()),
        }
    }
}

fn pack_bits(rows: usize, cols: usize, set: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    let bpr = cols.div_ceil(8);
    let mut bits = vec![0u8; rows * bpr];
    for r in 0..rows {
        for c in 0..cols {
            if set(r, c) {
                bits[r * bpr + c / 8] |= 1 << (c % 8);
            }
        }
    }
    bits
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `sparse-bitmask` tensors of module `m` for `w[rows][cols]` (nonzeros kept).
pub fn bitmask_encode(m: &str, w: &Matrix, rows: usize, cols: usize) -> Vec<TensorData> {
    assert_eq!(w.len(), rows * cols);
    let idx: Vec<usize> = (0..rows * cols).filter(|&i| !w.is_zero(i)).collect();
    let mut offsets = Vec::with_capacity(rows);
    let mut count = 0i64;
    for r in 0..rows {
        offsets.push(count);
        count += (0..cols).filter(|&c| !w.is_zero(r * cols + c)).count() as i64;
    }
    let (dtype, bytes) = w.gather(&idx);
    vec![
        TensorData {
            name: format!("{m}.shape"),
            dtype: Dtype::I64,
            shape: vec![2],
            bytes: i64_bytes(&[rows as i64, cols as i64]),
        },
        TensorData { name: format!("{m}.compressed"), dtype, shape: vec![idx.len()], bytes },
        TensorData::u8(
            format!("{m}.bitmask"),
            &[rows, cols.div_ceil(8)],
            &pack_bits(rows, cols, |r, c| !w.is_zero(r * cols + c)),
        ),
        TensorData {
            name: format!("{m}.row_offsets"),
            dtype: Dtype::I64,
            shape: vec![rows],
            bytes: i64_bytes(&offsets),
        },
    ]
}

/// `sparse-24-bitmask` tensors of module `m` for `w[rows][cols]`; `kept[i]` marks the two kept positions
/// of every group of four along a row (a kept value may be 0).
pub fn bitmask24_encode(m: &str, w: &Matrix, kept: &[bool], rows: usize, cols: usize) -> Vec<TensorData> {
    assert!(cols.is_multiple_of(4) && w.len() == rows * cols && kept.len() == rows * cols);
    let idx: Vec<usize> = (0..rows * cols).filter(|&i| kept[i]).collect();
    assert_eq!(idx.len() * 2, rows * cols, "a 2:4 mask keeps exactly half");
    let (dtype, bytes) = w.gather(&idx);
    vec![
        TensorData {
            name: format!("{m}.shape"),
            dtype: Dtype::I64,
            shape: vec![2, 1],
            bytes: i64_bytes(&[rows as i64, cols as i64]),
        },
        TensorData { name: format!("{m}.compressed"), dtype, shape: vec![rows, cols / 2], bytes },
        TensorData::u8(
            format!("{m}.bitmask"),
            &[rows, cols.div_ceil(8)],
            &pack_bits(rows, cols, |r, c| kept[r * cols + c]),
        ),
    ]
}

/// Whether module `m` of `file` is stored in one of the bitmask layouts.
pub fn is_bitmask(file: &crate::TensorFile, m: &str) -> bool {
    file.contains(&format!("{m}.compressed")) && file.contains(&format!("{m}.bitmask"))
}

/// The stored values of a bitmask module, row by row: what a sparse kernel runs, read without ever
/// holding the dense matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseRows {
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// Start of each row in `col_idx` / `values` (`rows + 1` entries).
    pub row_ptr: Vec<u32>,
    /// Column of each stored value (`cols ≤ 65 536`).
    pub col_idx: Vec<u16>,
    /// The stored values, row-major (a 2:4 layout stores kept zeros too).
    pub values: Matrix,
}

impl SparseRows {
    /// Stored values over `rows · cols`.
    pub fn density(&self) -> f64 {
        self.values.len() as f64 / (self.rows * self.cols).max(1) as f64
    }

    /// The dense `[rows][cols]` matrix.
    pub fn to_dense(&self) -> Matrix {
        let at = |r: usize| self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize;
        match &self.values {
            Matrix::F32(v) => {
                let mut w = vec![0f32; self.rows * self.cols];
                for r in 0..self.rows {
                    for i in at(r) {
                        w[r * self.cols + self.col_idx[i] as usize] = v[i];
                    }
                }
                Matrix::F32(w)
            }
            Matrix::I8(v) => {
                let mut w = vec![0i8; self.rows * self.cols];
                for r in 0..self.rows {
                    for i in at(r) {
                        w[r * self.cols + self.col_idx[i] as usize] = v[i];
                    }
                }
                Matrix::I8(w)
            }
        }
    }
}

/// Reads a bitmask-stored module `m` (either layout) of `file` as [`SparseRows`], checking its shape
/// against `(rows, cols)` (`cols ≤ 65 536`) and the layout's consistency.
pub fn bitmask_rows(file: &crate::TensorFile, m: &str, rows: usize, cols: usize) -> Result<SparseRows> {
    let bad = |msg: String| FormatError::Config { path: file.path().to_path_buf(), msg: format!("{m}: {msg}") };
    if cols > 1 << 16 {
        return Err(bad(format!("{cols} columns need column indices wider than 16 bits")));
    }
    let shape_name = format!("{m}.shape");
    let (shape_dims, shape_dtype) = file.shape(&shape_name)?;
    if shape_dtype != "I64" || shape_dims.iter().product::<usize>() != 2 {
        return Err(bad(format!("{shape_name} must hold two I64 values")));
    }
    let sb = file.bytes(&shape_name)?;
    let dims: Vec<i64> = sb.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    if dims != [rows as i64, cols as i64] {
        return Err(FormatError::Shape {
            path: file.path().to_path_buf(),
            name: shape_name,
            got: dims.iter().map(|&d| d.max(0) as usize).collect(),
            expected: vec![rows, cols],
        });
    }
    let bits = file.u8(&format!("{m}.bitmask"), &[rows, cols.div_ceil(8)])?;
    let bpr = cols.div_ceil(8);
    let mut row_ptr = Vec::with_capacity(rows + 1);
    row_ptr.push(0u32);
    let count: usize = bits.iter().map(|b| b.count_ones() as usize).sum();
    let mut col_idx = Vec::with_capacity(count);
    for r in 0..rows {
        for c in 0..cols {
            if bits[r * bpr + c / 8] >> (c % 8) & 1 == 1 {
                col_idx.push(c as u16);
            }
        }
        row_ptr.push(col_idx.len() as u32);
    }
    if col_idx.len() != count {
        return Err(bad("the bitmask marks bits past the last column".into()));
    }
    drop(bits);
    let vname = format!("{m}.compressed");
    let (vshape, vdtype) = file.shape(&vname)?;
    if vshape.iter().product::<usize>() != count {
        return Err(bad(format!(
            "{vname} holds {} values but the bitmask marks {count}",
            vshape.iter().product::<usize>()
        )));
    }
    let values = match vdtype.as_str() {
        "F32" => Matrix::F32(file.f32(&vname, &vshape)?),
        "I8" => Matrix::I8(file.i8(&vname, &vshape)?),
        d => return Err(bad(format!("{vname} has dtype {d}; pare reads F32 or I8 sparse values"))),
    };
    Ok(SparseRows { rows, cols, row_ptr, col_idx, values })
}

/// Decodes a bitmask-stored module `m` (either layout) of `file` into a dense `[rows][cols]` matrix,
/// checking its shape against `(rows, cols)` and the layout's consistency.
pub fn bitmask_decode(file: &crate::TensorFile, m: &str, rows: usize, cols: usize) -> Result<Matrix> {
    Ok(bitmask_rows(file, m, rows, cols)?.to_dense())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::write_safetensors;

    #[test]
    fn round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols) = (5, 13);
        let w: Vec<f32> = (0..rows * cols).map(|i| if i % 3 == 0 { 0.0 } else { i as f32 * 0.5 - 7.0 }).collect();
        let q: Vec<i8> = (0..rows * cols).map(|i| if i % 4 == 1 { 0 } else { (i as i8).wrapping_mul(7) }).collect();
        let mut t = bitmask_encode("a", &Matrix::F32(w.clone()), rows, cols);
        t.extend(bitmask_encode("b", &Matrix::I8(q.clone()), rows, cols));
        let (r4, c4) = (3, 8);
        let w4: Vec<f32> = (0..r4 * c4).map(|i| i as f32 - 3.0).collect();
        // Keep positions 0 and 3 of every group; position 3 of the first group holds 0.0 in w4.
        let kept: Vec<bool> = (0..r4 * c4).map(|i| i % 4 == 0 || i % 4 == 3).collect();
        let w4m: Vec<f32> = w4.iter().zip(&kept).map(|(v, k)| if *k { *v } else { 0.0 }).collect();
        t.extend(bitmask24_encode("c", &Matrix::F32(w4m.clone()), &kept, r4, c4));
        let p = dir.path().join("s.safetensors");
        write_safetensors(&p, &t, None).unwrap();
        let f = crate::TensorFile::open(&p).unwrap();
        assert!(is_bitmask(&f, "a") && is_bitmask(&f, "c"));
        assert_eq!(bitmask_decode(&f, "a", rows, cols).unwrap(), Matrix::F32(w));
        assert_eq!(bitmask_decode(&f, "b", rows, cols).unwrap(), Matrix::I8(q));
        assert_eq!(bitmask_decode(&f, "c", r4, c4).unwrap(), Matrix::F32(w4m));
        assert!(bitmask_decode(&f, "a", rows, cols + 1).is_err(), "shape mismatch is an error");
        // Bit order: least significant bit first.
        assert_eq!(f.u8("c.bitmask", &[3, 1]).unwrap()[0], 0b1001_1001);
    }
}
