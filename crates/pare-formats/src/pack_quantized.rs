//! compressed-tensors' `pack-quantized` layout of 4-bit weights: symmetric codes in −8..=7 stored
//! as `q + 8` nibbles, eight per int32 along the input dimension (input `8p + i` in bits `4i..4i + 4`
//! of word `p`), with one scale per group of inputs (`weight_scale`, `[rows, inputs / group]`) and the
//! original shape (`weight_shape`). Groups that are multiples of 32 map exactly onto llama.cpp's Q4_0
//! blocks, each block taking its group's f16 scale.

/// Packs `n × k` codes (−8..=7, `k` a multiple of 8) into `n × k / 8` int32 words.
pub fn pack_int4(codes: &[i8], n: usize, k: usize) -> Vec<i32> {
    assert!(k.is_multiple_of(8) && codes.len() == n * k, "pack_int4: {} codes for {n}×{k}", codes.len());
    codes
        .chunks_exact(8)
        .map(|c| c.iter().enumerate().fold(0u32, |w, (i, &q)| w | (((q + 8) as u32 & 15) << (4 * i))) as i32)
        .collect()
}

/// The codes of [`pack_int4`]'s words.
pub fn unpack_int4(packed: &[i32], n: usize, k: usize) -> Vec<i8> {
    assert!(k.is_multiple_of(8) && packed.len() * 8 == n * k, "unpack_int4: {} words for {n}×{k}", packed.len());
    packed.iter().flat_map(|&w| (0..8).map(move |i| ((w as u32 >> (4 * i)) & 15) as i8 - 8)).collect()
}

/// Group-wise codes with one f16 scale (bits) per `group` inputs, as Q4_0 blocks (`group` a multiple
/// of 32 that divides `k`): weight `d · q` in both.
pub fn int4_to_q4_0(codes: &[i8], scales: &[u16], n: usize, k: usize, group: usize) -> Vec<u8> {
    assert!(group.is_multiple_of(32) && k.is_multiple_of(group), "int4_to_q4_0: group {group}, {k} inputs");
    assert!(codes.len() == n * k && scales.len() == n * (k / group), "int4_to_q4_0: sizes");
    let mut out = Vec::with_capacity(n * k / 32 * 18);
    for (b, q) in codes.chunks_exact(32).enumerate() {
        let (row, col) = (b * 32 / k, b * 32 % k);
        out.extend_from_slice(&scales[row * (k / group) + col / group].to_le_bytes());
        out.extend((0..16).map(|j| ((q[j] + 8) as u8) | (((q[j + 16] + 8) as u8) << 4)));
    }
    out
}

/// One `pack-quantized` int4 tensor as read from a file: `n × k` codes, one f16 scale (bits) per `group`.
#[derive(Clone, Debug)]
pub struct Int4Tensor {
    /// Codes in −8..=7, row-major.
    pub codes: Vec<i8>,
    /// f16 scales, `n × k / group`.
    pub scales: Vec<u16>,
    /// Rows (outputs).
    pub n: usize,
    /// Inputs.
    pub k: usize,
    /// Inputs per scale.
    pub group: usize,
}

impl Int4Tensor {
    /// The weights `d · q`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes
            .chunks_exact(self.group)
            .zip(&self.scales)
            .flat_map(|(qs, &d)| {
                let d = half::f16::from_bits(d).to_f32();
                qs.iter().map(move |&q| d * q as f32)
            })
            .collect()
    }
}

/// Reads `{base}.weight_packed` (I32 `[n, k / 8]`), `{base}.weight_scale` (F16 `[n, groups]`) and
/// `{base}.weight_shape` (two integers, when present) of symmetric int4 weights; an error names what
/// does not fit.
pub fn read_int4(src: &dyn crate::source::TensorSource, base: &str) -> Result<Int4Tensor, String> {
    use crate::source::StoredType;
    let st = |d: &str| Some(StoredType::Safetensors(d.to_string()));
    let (pn, sn, shn) =
        (format!("{base}.weight_packed"), format!("{base}.weight_scale"), format!("{base}.weight_shape"));
    let (n, words) = match (src.shape(&pn).as_deref(), src.stored(&pn)) {
        (Some(&[n, w]), t) if t == st("I32") => (n, w),
        (shape, t) => return Err(format!("weight_packed is {t:?} {shape:?}, expected I32 [rows, inputs / 8]")),
    };
    let mut k = 8 * words;
    if let Some(shape) = src.shape(&shn) {
        let v = src.mapped(&shn).map_err(|e| e.to_string())?;
        let t = src.stored(&shn);
        let dims: Vec<i64> = match shape.as_slice() {
            [2] if t == st("I32") => {
                v.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()
            }
            [2] if t == st("I64") => {
                v.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
            }
            _ => return Err("weight_shape is not two integers".into()),
        };
        if dims[0] != n as i64 || dims[1] <= 0 || (dims[1] as usize).div_ceil(8) != words || dims[1] % 8 != 0 {
            return Err(format!("weight_shape {dims:?} does not fit weight_packed [{n}, {words}]"));
        }
        k = dims[1] as usize;
    }
    let groups = match src.shape(&sn).as_deref() {
        Some(&[r, g]) if r == n && g > 0 && k.is_multiple_of(g) => g,
        other => {
            return Err(format!("weight_scale has shape {other:?}, expected [{n}, a number of groups dividing {k}]"));
        }
    };
    if src.stored(&sn) != st("F16") {
        return Err(format!("weight_scale is {:?}; pare reads f16 scales", src.stored(&sn)));
    }
    let packed: Vec<i32> = src
        .mapped(&pn)
        .map_err(|e| e.to_string())?
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let scales: Vec<u16> =
        src.mapped(&sn).map_err(|e| e.to_string())?.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    if let Some(i) = scales.iter().position(|&d| d & 0x7c00 == 0x7c00) {
        return Err(format!("scale {i} is not finite"));
    }
    Ok(Int4Tensor { codes: unpack_int4(&packed, n, k), scales, n, k, group: k / groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_input_8p_plus_i_in_bits_4i_of_word_p() {
        let codes: Vec<i8> = vec![-8, -7, 0, 1, 2, 3, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0];
        let p = pack_int4(&codes, 1, 16);
        // q + 8: 0 1 8 9 10 11 14 15 → nibbles low to high.
        assert_eq!(p[0] as u32, 0xFEBA_9810);
        assert_eq!(p[1] as u32, 0x89AB_CDEF);
        assert_eq!(unpack_int4(&p, 1, 16), codes);
    }

    #[test]
    fn q4_0_blocks_hold_exactly_the_int4_weights() {
        let (n, k, group) = (3, 128, 64);
        let codes: Vec<i8> = (0..n * k).map(|i| ((i * 7 + i / 5) % 16) as i8 - 8).collect();
        let scales: Vec<u16> =
            (0..n * k / group).map(|i| half::f16::from_f32(0.01 * (i as f32 - 2.5)).to_bits()).collect();
        let t = Int4Tensor { codes: codes.clone(), scales: scales.clone(), n, k, group };
        let blocks = int4_to_q4_0(&codes, &scales, n, k, group);
        let mut w = vec![0f32; n * k];
        crate::gguf::dequantize(crate::gguf::GgmlType::Q4_0, &blocks, &mut w).unwrap();
        assert_eq!(w, t.dequantize());
    }

    #[test]
    fn groups_of_64_become_two_q4_0_blocks_with_the_same_scale() {
        let codes: Vec<i8> = (0..128).map(|i| (i % 16) as i8 - 8).collect();
        let scales = [0x3c00u16, 0x4000]; // 1.0, 2.0
        let b = int4_to_q4_0(&codes, &scales, 1, 128, 64);
        assert_eq!(b.len(), 4 * 18);
        for (blk, want) in b.chunks_exact(18).zip([0x3c00u16, 0x3c00, 0x4000, 0x4000]) {
            assert_eq!(u16::from_le_bytes([blk[0], blk[1]]), want);
        }
        // Block 0: weights 0 and 16 share byte 2.
        assert_eq!(b[2], (codes[0] + 8) as u8 | (((codes[16] + 8) as u8) << 4));
    }
}
