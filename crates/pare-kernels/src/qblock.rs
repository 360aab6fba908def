//! Block-quantized weights in llama.cpp's layouts (as GGUF stores them), multiplied by float
//! activations without ever holding the float matrix:
//!
//! - few tokens (decode): every stored row is dotted with the activations block by block, each block
//!   widened to f32 in registers ([`GemvBlocksKernel`]);
//! - many tokens (prefill): 32 rows at a time are dequantized into one packed panel and the f32 GEMM
//!   kernel runs on it, so the dequantization is paid once per weight and amortized over the tokens.
//!
//! Activations stay in f32: the products are those of the dequantized float model, up to summation
//! order.

use crate::aligned::AlignedVec;
use crate::dispatch;
use crate::gemm_f32::{BView, Epilogue, GemmF32Args, NR};
use crate::par::{self, SendPtr};
use std::cell::RefCell;
use std::ops::Range;

/// Weights per block of the 32-weight types, and per sub-block that the kernels widen at a time.
pub const QK: usize = 32;

/// Weights per K-quant super-block.
pub const QK_K: usize = 256;

/// A block-quantized weight type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum BlockType {
    /// `w = d · (q − 8)`, 4-bit `q`: 4.5 bits per weight ([`BlockQ4_0`]).
    Q4_0,
    /// `w = d · q + m`, 4-bit `q`: 5 bits per weight ([`BlockQ4_1`]).
    Q4_1,
    /// `w = d · q`, 8-bit signed `q`: 8.5 bits per weight ([`BlockQ8_0`]).
    Q8_0,
    /// `w = d · (q − 16)`, 5-bit `q`: 5.5 bits per weight ([`BlockQ5_0`]).
    Q5_0,
    /// `w = d · q + m`, 5-bit `q`: 6 bits per weight ([`BlockQ5_1`]).
    Q5_1,
    /// Super-blocks of 256: `w = d · s · (q − 32)`, 6-bit `q`, a signed 8-bit scale `s` per 16
    /// weights: 6.5625 bits per weight ([`BlockQ6_K`]).
    Q6_K,
    /// Super-blocks of 256: `w = d · s · q − dmin · m`, 4-bit `q`, 6-bit scale `s` and minimum `m`
    /// per 32 weights: 4.5 bits per weight ([`BlockQ4_K`]).
    Q4_K,
    /// As [`BlockType::Q4_K`] with 5-bit `q`: 5.5 bits per weight ([`BlockQ5_K`]).
    Q5_K,
}

impl BlockType {
    /// Every type, in the order above.
    pub const ALL: [BlockType; 8] = [
        BlockType::Q4_0,
        BlockType::Q4_1,
        BlockType::Q8_0,
        BlockType::Q5_0,
        BlockType::Q5_1,
        BlockType::Q6_K,
        BlockType::Q4_K,
        BlockType::Q5_K,
    ];

    /// Bytes of one block ([`BlockType::weights`] weights).
    pub const fn block_bytes(self) -> usize {
        match self {
            BlockType::Q4_0 => size_of::<BlockQ4_0>(),
            BlockType::Q4_1 => size_of::<BlockQ4_1>(),
            BlockType::Q8_0 => size_of::<BlockQ8_0>(),
            BlockType::Q5_0 => size_of::<BlockQ5_0>(),
            BlockType::Q5_1 => size_of::<BlockQ5_1>(),
            BlockType::Q6_K => size_of::<BlockQ6_K>(),
            BlockType::Q4_K => size_of::<BlockQ4_K>(),
            BlockType::Q5_K => size_of::<BlockQ5_K>(),
        }
    }

    /// Weights per block: [`QK`], or [`QK_K`] for the K-quant super-blocks.
    pub const fn weights(self) -> usize {
        match self {
            BlockType::Q6_K | BlockType::Q4_K | BlockType::Q5_K => QK_K,
            _ => QK,
        }
    }

    /// Byte offsets of the block's f16 values (scale, and minimum where there is one).
    pub const fn f16_offsets(self) -> &'static [usize] {
        match self {
            BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q5_K => &[0, 2],
            BlockType::Q6_K => &[208],
            _ => &[0],
        }
    }

    /// Storage bits per weight.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.weights() as f64
    }

    /// llama.cpp's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Q4_0 => "Q4_0",
            BlockType::Q4_1 => "Q4_1",
            BlockType::Q8_0 => "Q8_0",
            BlockType::Q5_0 => "Q5_0",
            BlockType::Q5_1 => "Q5_1",
            BlockType::Q6_K => "Q6_K",
            BlockType::Q4_K => "Q4_K",
            BlockType::Q5_K => "Q5_K",
        }
    }
}

/// `Q4_0` block, 4.5 bits per weight: f16 scale `d`; `qs[j]` holds weight `j` in its low nibble and
/// weight `j + 16` in its high nibble; `w = d · (q − 8)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Nibbles.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// `Q4_1` block, 5 bits per weight: f16 scale `d` and minimum `m`; nibbles as [`BlockQ4_0`];
/// `w = d · q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Minimum, f16 little-endian.
    pub m: [u8; 2],
    /// Nibbles.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// `Q8_0` block, 8.5 bits per weight: f16 scale `d`, 32 signed bytes; `w = d · q`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// `Q5_0` block, 5.5 bits per weight: f16 scale `d`; bit `j` of `qh` is the fifth bit of weight `j`,
/// whose low four bits are stored as in [`BlockQ4_0`]; `w = d · (q − 16)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles: weight `j` and `j + 16` in byte `j`.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// `Q5_1` block, 6 bits per weight: f16 scale `d` and minimum `m`, then quants as [`BlockQ5_0`];
/// `w = d · q + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Minimum, f16 little-endian.
    pub m: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// `Q6_K` super-block of 256 weights, 6.5625 bits per weight, in two halves of 128: the low four bits
/// of half `h` in `ql[64h..64h + 64]` (weight `l`, `l + 32` in the low nibbles of bytes `l`, `l + 32`;
/// `l + 64`, `l + 96` in their high nibbles, `l < 32`), the top two bits in `qh[32h..32h + 32]` (bits
/// 0–1, 2–3, 4–5, 6–7 of byte `l` for weights `l`, `l + 32`, `l + 64`, `l + 96`); a signed scale
/// per 16 weights; `w = d · scales[i / 16] · (q − 32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6_K {
    /// Low four bits.
    pub ql: [u8; 128],
    /// High two bits.
    pub qh: [u8; 64],
    /// Scale of each 16 weights.
    pub scales: [i8; 16],
    /// Super-block scale, f16 little-endian.
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6_K>() == 210);

/// `Q4_K` super-block of 256 weights, 4.5 bits per weight: f16 `d` and `dmin`; eight 6-bit scales and
/// minima packed in 12 bytes ([`scale_min_k4`]); quants in four runs of 32 bytes, run `c` holding
/// weights `64c + l` in its low nibbles and `64c + 32 + l` in its high ones. Weight `i` of sub-block
/// `j = i / 32`: `d · s_j · q − dmin · m_j`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_K {
    /// Scale of the scales, f16 little-endian.
    pub d: [u8; 2],
    /// Scale of the minima, f16 little-endian.
    pub dmin: [u8; 2],
    /// Packed 6-bit scales and minima.
    pub scales: [u8; 12],
    /// Nibbles.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockQ4_K>() == 144);

/// `Q5_K` super-block, 5.5 bits per weight: as [`BlockQ4_K`], with the fifth bit of weight
/// `32j + l` in bit `j` of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_K {
    /// Scale of the scales, f16 little-endian.
    pub d: [u8; 2],
    /// Scale of the minima, f16 little-endian.
    pub dmin: [u8; 2],
    /// Packed 6-bit scales and minima.
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; 32],
    /// Nibbles.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockQ5_K>() == 176);

/// Scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block from its 12 packed bytes.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `n` rows of `k` weights (`k` a multiple of the type's block), each row `k / weights` consecutive
/// blocks: a GGUF tensor of shape `[k, n]` as stored.
///
/// Or, built with [`BlockRows::interleaved`], the same rows in the layout of [`interleave8`].
#[derive(Clone, Copy, Debug)]
pub struct BlockRows<'a> {
    ty: BlockType,
    data: &'a [u8],
    n: usize,
    k: usize,
    x8: bool,
}

impl<'a> BlockRows<'a> {
    /// Checks that `data` holds exactly `n` rows of `k` weights of type `ty`.
    pub fn new(ty: BlockType, data: &'a [u8], n: usize, k: usize) -> Result<Self, String> {
        let bw = ty.weights();
        if !k.is_multiple_of(bw) {
            return Err(format!("{} rows of {k} weights: not a multiple of the block of {bw}", ty.name()));
        }
        let want = n * (k / bw) * ty.block_bytes();
        if data.len() != want {
            return Err(format!("{} {n}×{k}: {} bytes, expected {want}", ty.name(), data.len()));
        }
        Ok(BlockRows { ty, data, n, k, x8: false })
    }

    /// Checks that `data` holds `n` rows of `k` weights of type `ty` interleaved by [`interleave8`].
    pub fn interleaved(ty: BlockType, data: &'a [u8], n: usize, k: usize) -> Result<Self, String> {
        if !ty.interleaves() || !n.is_multiple_of(X8) {
            return Err(format!("{} {n}×{k}: no layout interleaved by {X8} rows", ty.name()));
        }
        Ok(BlockRows { x8: true, ..BlockRows::new(ty, data, n, k)? })
    }

    /// Whether the rows are interleaved by [`X8`] ([`interleave8`]).
    pub fn is_interleaved(&self) -> bool {
        self.x8
    }

    /// The stored bytes, in whichever layout.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The block type.
    pub fn ty(&self) -> BlockType {
        self.ty
    }

    /// Rows (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Weights per row (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.k / self.ty.weights() * self.ty.block_bytes()
    }

    /// The stored bytes of row `j` (rows stored one after another only: see [`BlockRows::rows_in`]).
    pub fn row(&self, j: usize) -> &'a [u8] {
        assert!(!self.x8, "row {j} of rows interleaved by {X8}: read it with rows_in");
        let rb = self.row_bytes();
        &self.data[j * rb..(j + 1) * rb]
    }

    /// The bytes of rows `rows` one after another in the type's own layout: the stored bytes, or
    /// for interleaved rows (`rows` then starting and ending on a group of [`X8`]) their copy in
    /// `scratch`.
    pub fn rows_in<'s>(&self, rows: Range<usize>, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        let rb = self.row_bytes();
        if !self.x8 {
            return &self.data[rows.start * rb..rows.end * rb];
        }
        assert!(rows.start.is_multiple_of(X8) && rows.end.is_multiple_of(X8), "rows {rows:?} split a group of {X8}");
        scratch.resize(rows.len() * rb, 0);
        deinterleave8(self.ty, &self.data[rows.start * rb..rows.end * rb], self.k, scratch);
        scratch
    }
}

/// Rows per group of [`interleave8`].
pub const X8: usize = 8;

impl BlockType {
    /// Whether [`interleave8`] has a layout for the type (the 32-weight types).
    pub const fn interleaves(self) -> bool {
        self.weights() == QK
    }
}

/// Where the parts of a 32-weight block lie: in the block as stored, and in a group block of
/// [`interleave8`].
#[derive(Clone, Copy)]
struct Parts {
    /// Whether the block has an f16 minimum after its scale.
    min: bool,
    /// Offset of the 32 fifth bits (Q5_0, Q5_1) in the stored block.
    qh: Option<usize>,
    /// Offset and length of the quant bytes in the stored block.
    qs: usize,
    qs_len: usize,
}

impl Parts {
    const fn of(ty: BlockType) -> Parts {
        match ty {
            BlockType::Q4_1 => Parts { min: true, qh: None, qs: 4, qs_len: 16 },
            BlockType::Q5_0 => Parts { min: false, qh: Some(2), qs: 6, qs_len: 16 },
            BlockType::Q5_1 => Parts { min: true, qh: Some(4), qs: 8, qs_len: 16 },
            BlockType::Q8_0 => Parts { min: false, qh: None, qs: 2, qs_len: 32 },
            _ => Parts { min: false, qh: None, qs: 2, qs_len: 16 },
        }
    }

    /// Offsets in a group block: eight scales at 0, eight minima, fifth bits, quants.
    const fn x8(self) -> (usize, usize, usize) {
        let mins = 16;
        let qh = mins + if self.min { 16 } else { 0 };
        (mins, qh, qh + if self.qh.is_some() { 32 } else { 0 })
    }
}

/// Byte offsets in a group block of [`interleave8`] of type `ty`: `(minima, fifth bits, quants)`.
pub const fn x8_offsets(ty: BlockType) -> (usize, usize, usize) {
    Parts::of(ty).x8()
}

/// Rows of a 32-weight type regrouped for matrix-vector products: every eight rows (a group), block
/// by block, become one group block of `8 × block_bytes` bytes, so that one 256-bit load holds four
/// consecutive quant bytes of each of the eight rows and one 128-bit load their eight scales.
///
/// A group block ([`x8_offsets`]): the eight f16 scales (row `r` at byte `2r`); for Q4_1 and Q5_1
/// the eight f16 minima likewise; for Q5_0 and Q5_1, 32 bytes of fifth bits, byte `8c + r` holding
/// bits `4c .. 4c + 4` of row `r`'s `qh` in its low nibble and bits `16 + 4c .. 20 + 4c` in its
/// high nibble (`c < 4`); then the quant bytes, byte `32c + 4r + t` being byte `4c + t` of row
/// `r`'s quants (`t < 4`; `c < 4`, or `c < 8` for Q8_0). The size is unchanged. Errors when the
/// type has no such layout or `n` is not a multiple of eight.
pub fn interleave8(ty: BlockType, src: &[u8], n: usize, k: usize) -> Result<Vec<u8>, String> {
    let w = BlockRows::interleaved(ty, src, n, k)?;
    let (bb, nb, p) = (ty.block_bytes(), k / QK, Parts::of(ty));
    let (xm, xh, xq) = p.x8();
    let mut out = vec![0u8; src.len()];
    for g in 0..n / X8 {
        for b in 0..nb {
            let dst = &mut out[(g * nb + b) * X8 * bb..][..X8 * bb];
            for r in 0..X8 {
                let blk = &w.data[((g * X8 + r) * nb + b) * bb..][..bb];
                dst[2 * r..2 * r + 2].copy_from_slice(&blk[..2]);
                if p.min {
                    dst[xm + 2 * r..xm + 2 * r + 2].copy_from_slice(&blk[2..4]);
                }
                if let Some(h) = p.qh {
                    let qh = u32::from_le_bytes([blk[h], blk[h + 1], blk[h + 2], blk[h + 3]]);
                    for c in 0..4 {
                        dst[xh + 8 * c + r] = ((qh >> (4 * c)) & 0xf | ((qh >> (16 + 4 * c)) & 0xf) << 4) as u8;
                    }
                }
                for c in 0..p.qs_len / 4 {
                    dst[xq + 32 * c + 4 * r..][..4].copy_from_slice(&blk[p.qs + 4 * c..][..4]);
                }
            }
        }
    }
    Ok(out)
}

/// The inverse of [`interleave8`] for whole groups: `src` holds `out.len()` bytes of groups of rows
/// of `k` weights, written to `out` one row after another.
pub fn deinterleave8(ty: BlockType, src: &[u8], k: usize, out: &mut [u8]) {
    let (bb, nb, p) = (ty.block_bytes(), k / QK, Parts::of(ty));
    assert!(ty.interleaves() && src.len() == out.len() && src.len().is_multiple_of(X8 * bb * nb.max(1)));
    let (xm, xh, xq) = p.x8();
    for g in 0..src.len() / (X8 * bb * nb.max(1)) {
        for b in 0..nb {
            let grp = &src[(g * nb + b) * X8 * bb..][..X8 * bb];
            for r in 0..X8 {
                let blk = &mut out[((g * X8 + r) * nb + b) * bb..][..bb];
                blk[..2].copy_from_slice(&grp[2 * r..2 * r + 2]);
                if p.min {
                    blk[2..4].copy_from_slice(&grp[xm + 2 * r..xm + 2 * r + 2]);
                }
                if let Some(h) = p.qh {
                    let qh = (0..4).fold(0u32, |q, c| {
                        let v = grp[xh + 8 * c + r] as u32;
                        q | (v & 0xf) << (4 * c) | (v >> 4) << (16 + 4 * c)
                    });
                    blk[h..h + 4].copy_from_slice(&qh.to_le_bytes());
                }
                for c in 0..p.qs_len / 4 {
                    blk[p.qs + 4 * c..][..4].copy_from_slice(&grp[xq + 32 * c + 4 * r..][..4]);
                }
            }
        }
    }
}

/// Dequantizes whole blocks: `src` holds `out.len() / ty.weights()` blocks of type `ty`.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel; `src.len()` is
/// `out.len() / ty.weights() · ty.block_bytes()` and `out.len()` a multiple of `ty.weights()`.
pub(crate) type DequantBlocksKernel = unsafe fn(ty: BlockType, src: &[u8], out: &mut [f32]);

/// Dequantizes one group of eight rows interleaved by [`interleave8`] (`k` weights each, `group`
/// holding their `8 · k / 32` group blocks) straight into the transposed form the f32 GEMM packs:
/// `out[kk · ld + r] = w[r][kk]` for `r < 8`, `kk < k`.
///
/// # Safety
/// The CPU has the features of the tier that provided the kernel; `ty` interleaves, `group` holds
/// exactly the group's bytes, and `out` points at `(k − 1) · ld + 8` writable floats (`ld ≥ 8`)
/// that no other thread accesses meanwhile.
pub(crate) type DequantX8Kernel = unsafe fn(ty: BlockType, group: &[u8], k: usize, out: *mut f32, ld: usize);

/// One block-weight product as the per-ISA row kernels see it: `c[i][j] = epi(Σ_k a[i][k] · w[j][k])`
/// for `i < m`. `c` is raw because threads write disjoint columns of it concurrently.
#[derive(Clone, Copy)]
pub(crate) struct BlockGemvArgs<'a> {
    pub a: &'a [f32],
    pub lda: usize,
    pub m: usize,
    pub w: BlockRows<'a>,
    pub c: SendPtr<f32>,
    pub ldc: usize,
    pub epi: Epilogue<'a>,
}

/// A per-ISA row kernel: computes columns `rows` of `C` for all `m` tokens.
///
/// # Safety
/// `args` passed [`check`], `rows ⊆ 0..n`; concurrent calls on the same `C` get disjoint `rows`.
pub(crate) type GemvBlocksKernel = unsafe fn(args: &BlockGemvArgs<'_>, rows: Range<usize>);

/// Up to this many tokens the row kernel runs; above it, dequantized panels and the f32 GEMM.
pub const GEMV_MAX_TOKENS: usize = 4;

/// f16 (IEEE binary16, little-endian bytes) to f32, exactly.
#[inline]
pub fn f16_to_f32(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b) as u32;
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let man = h & 0x3ff;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalise the mantissa.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (man << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn check(a: &[f32], lda: usize, m: usize, w: &BlockRows, c: &[f32], ldc: usize, epi: &Epilogue) {
    let k = w.k();
    assert!(lda >= k, "gemm_blocks: stride lda={lda} smaller than k={k}");
    if m > 0 {
        assert!(a.len() >= (m - 1) * lda + k, "gemm_blocks: A holds {} values, needs {m}×{k}", a.len());
    }
    check_output("gemm_blocks", m, w.n(), c, ldc, epi);
}

/// Checks an `m × n` output with stride `ldc` and its epilogue's operands.
fn check_output(what: &str, m: usize, n: usize, c: &[f32], ldc: usize, epi: &Epilogue) {
    assert!(ldc >= n, "{what}: ldc={ldc} smaller than n={n}");
    if m > 0 {
        assert!(c.len() >= (m - 1) * ldc + n, "{what}: C holds {} values, needs {m}×{n}", c.len());
        if let Some((r, ld)) = epi.residual {
            assert!(ld >= n && r.len() >= (m - 1) * ld + n, "{what}: residual too short");
        }
        if let Some(r) = epi.row_scale {
            assert!(r.len() >= m, "{what}: row_scale too short");
        }
    }
    if let Some(bias) = epi.bias {
        assert_eq!(bias.len(), n, "{what}: bias has {} values for n={n}", bias.len());
    }
}

/// Dequantizes `src` (whole blocks of `ty`) into `out` with the dispatched kernel.
pub fn dequantize_blocks(ty: BlockType, src: &[u8], out: &mut [f32]) {
    assert!(whole_blocks(ty, src, out), "dequantize_blocks: sizes");
    // SAFETY: sizes checked; the table only holds kernels of tiers this CPU has.
    unsafe { (dispatch::table().dequant_blocks)(ty, src, out) }
}

/// Whether `src` is exactly the blocks of `ty` that dequantize into `out`.
pub(crate) fn whole_blocks(ty: BlockType, src: &[u8], out: &[f32]) -> bool {
    out.len().is_multiple_of(ty.weights()) && src.len() == out.len() / ty.weights() * ty.block_bytes()
}

struct PanelScratch {
    rows: Vec<f32>,
    panel: AlignedVec<f32>,
}

thread_local! {
    static PANEL: RefCell<PanelScratch> =
        RefCell::new(PanelScratch { rows: Vec::new(), panel: AlignedVec::zeroed(0) });
}

/// `C = act(alpha · A·Wᵀ + bias) + residual` for a block-quantized `W` (`n × k`) and row-major f32
/// `A` (`m × k`), on the current pool with the dispatched kernels: the row kernel up to
/// [`GEMV_MAX_TOKENS`] tokens, dequantized panels and the f32 GEMM above.
pub fn gemm_blocks_f32(a: &[f32], lda: usize, m: usize, w: &BlockRows, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    check(a, lda, m, w, c, ldc, epi);
    if m == 0 || w.n() == 0 {
        return;
    }
    let table = dispatch::table();
    // Interleaved rows (laid out for the Q8 kernels) go through the panels at any size.
    if m <= GEMV_MAX_TOKENS && !w.is_interleaved() {
        let args = BlockGemvArgs { a, lda, m, w: *w, c: SendPtr(c.as_mut_ptr()), ldc, epi: *epi };
        let kernel = table.gemv_blocks;
        // Pairs of rows per task unit: the kernels interleave two rows.
        par::for_each_chunk(w.n().div_ceil(2), |pairs| {
            let rows = pairs.start * 2..(pairs.end * 2).min(w.n());
            // SAFETY: shapes checked; the chunks are disjoint ranges of rows, i.e. of C's columns.
            unsafe { kernel(&args, rows) }
        });
        return;
    }
    let (n, k) = (w.n(), w.k());
    let cp = SendPtr(c.as_mut_ptr());
    par::for_each_chunk(n.div_ceil(NR), |panels| {
        PANEL.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.rows.resize(NR * k, 0.0);
            if s.panel.len() != NR * k {
                s.panel = AlignedVec::zeroed(NR * k);
            }
            for p in panels {
                // SAFETY: shapes checked above; panel p's columns of C are this thread's only.
                unsafe { panel_product(table, a, lda, m, w, p * NR, &mut s.rows, &mut s.panel, cp, ldc, epi) };
            }
        })
    });
}

/// Single-threaded product with the kernels of `table` (tests and benchmarks); `panels` forces the
/// dequantized-panel path whatever `m`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_blocks_f32_with(
    table: &dispatch::Table,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &BlockRows,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    panels: bool,
) {
    check(a, lda, m, w, c, ldc, epi);
    if m == 0 || w.n() == 0 {
        return;
    }
    let (n, k) = (w.n(), w.k());
    if !panels && !w.is_interleaved() {
        let args = BlockGemvArgs { a, lda, m, w: *w, c: SendPtr(c.as_mut_ptr()), ldc, epi: *epi };
        // SAFETY: shapes checked; one caller covers all rows.
        unsafe { (table.gemv_blocks)(&args, 0..n) };
        return;
    }
    let mut rows = vec![0f32; NR * k];
    let mut panel = AlignedVec::<f32>::zeroed(NR * k);
    let cp = SendPtr(c.as_mut_ptr());
    for j0 in (0..n).step_by(NR) {
        // SAFETY: shapes checked; one caller covers every panel.
        unsafe { panel_product(table, a, lda, m, w, j0, &mut rows, &mut panel, cp, ldc, epi) };
    }
}

/// Columns `j0 .. j0 + 32` of `C`: rows `j0 ..` of `W` dequantized into `rows` (32 × k), transposed
/// into one packed panel, then the f32 GEMM kernel of `table` over all `m` rows of `A`. Interleaved
/// rows are dequantized group by group straight into the panel.
///
/// # Safety
/// The shapes passed [`check`]; `rows` holds 32 × k floats and `panel` 32 × k; no other thread
/// writes columns `j0 .. j0 + 32` of `C` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    table: &dispatch::Table,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &BlockRows,
    j0: usize,
    rows: &mut [f32],
    panel: &mut AlignedVec<f32>,
    c: SendPtr<f32>,
    ldc: usize,
    epi: &Epilogue,
) {
    let k = w.k();
    let width = NR.min(w.n() - j0);
    let rb = w.row_bytes();
    let data = &w.data()[j0 * rb..(j0 + width) * rb];
    if w.is_interleaved() {
        // Groups of eight rows straight into the panel's columns (width is a multiple of eight).
        for (g, group) in data.chunks_exact(rb * X8).enumerate() {
            // SAFETY: the panel holds k × 32 floats, columns 8g .. 8g + 8 < 32 of it.
            unsafe { (table.dequant_x8)(w.ty(), group, k, panel.as_mut_slice().as_mut_ptr().add(g * X8), NR) };
        }
        if width < NR {
            for row in panel.as_mut_slice().chunks_exact_mut(NR) {
                row[width..].fill(0.0);
            }
        }
    } else {
        // SAFETY: the row bytes of `width` rows are exactly `width · k / 32` blocks.
        unsafe { (table.dequant_blocks)(w.ty(), data, &mut rows[..width * k]) };
        rows[width * k..NR * k].fill(0.0);
        // SAFETY: `panel` holds k × 32 floats, written by this call only.
        unsafe { (table.transpose_f32)(rows, k, NR, k, panel.as_mut_slice().as_mut_ptr(), NR) };
    }
    let b = BView::packed(panel, k, width);
    // SAFETY: column j0 < n lies inside C (checked shapes).
    let cj = SendPtr(unsafe { c.get().add(j0) });
    let args = GemmF32Args { a, lda, b, c: cj, ldc, epi: epi.columns(j0) };
    // SAFETY: one panel of width ≤ 32 over rows 0..m, shapes checked by the caller.
    unsafe { (table.gemm_f32)(&args, 0..1, 0..m) };
}

/// One group of eight interleaved rows ([`interleave8`], `k` weights each) dequantized transposed
/// with the kernels of `table`: `out[kk · 8 + r] = w[r][kk]` (tests and benchmarks).
pub fn dequantize_group_with(table: &dispatch::Table, ty: BlockType, group: &[u8], k: usize, out: &mut [f32]) {
    assert!(ty.interleaves() && k.is_multiple_of(QK) && group.len() == X8 * k / QK * ty.block_bytes());
    assert_eq!(out.len(), X8 * k, "dequantize_group: output size");
    // SAFETY: sizes checked; tables are only built for tiers this CPU has.
    unsafe { (table.dequant_x8)(ty, group, k, out.as_mut_ptr(), X8) }
}

/// [`dequantize_blocks`] with the kernels of `table` (tests and benchmarks).
pub fn dequantize_blocks_with(table: &dispatch::Table, ty: BlockType, src: &[u8], out: &mut [f32]) {
    assert!(whole_blocks(ty, src, out), "dequantize_blocks: sizes");
    // SAFETY: sizes checked; tables are only built for tiers this CPU has.
    unsafe { (table.dequant_blocks)(ty, src, out) }
}

/// Several block-weight products reading the same `A` (query, key and value; gate and up) in one
/// parallel section when `m` is small: the rows of all outputs, taken in pairs, are shared among the
/// threads as one range. Above [`GEMV_MAX_TOKENS`], one [`gemm_blocks_f32`] per output.
pub fn gemm_blocks_f32_group(a: &[f32], lda: usize, m: usize, jobs: Vec<(BlockRows, &mut [f32], usize, Epilogue)>) {
    for (w, c, ldc, epi) in &jobs {
        check(a, lda, m, w, c, *ldc, epi);
    }
    if m > GEMV_MAX_TOKENS || jobs.iter().any(|j| j.0.is_interleaved()) {
        for (w, c, ldc, epi) in jobs {
            gemm_blocks_f32(a, lda, m, &w, c, ldc, &epi);
        }
        return;
    }
    if m == 0 {
        return;
    }
    let args: Vec<BlockGemvArgs> = jobs
        .into_iter()
        .map(|(w, c, ldc, epi)| BlockGemvArgs { a, lda, m, w, c: SendPtr(c.as_mut_ptr()), ldc, epi })
        .collect();
    let kernel = dispatch::table().gemv_blocks;
    let ns: Vec<usize> = args.iter().map(|g| g.w.n()).collect();
    // SAFETY: shapes checked; the shares are disjoint row ranges of each output.
    for_each_row_share(&ns, 2, |j, rows| unsafe { kernel(&args[j], rows) });
}

/// Shares the rows of several outputs (`ns[j]` rows each), taken in units of `unit` rows and
/// concatenated, among the threads of the current pool: `f(j, rows)` for each output `j` and range
/// of its rows that a thread's share covers. The ranges of one output never overlap.
fn for_each_row_share(ns: &[usize], unit: usize, f: impl Fn(usize, Range<usize>) + Sync) {
    let mut starts = Vec::with_capacity(ns.len() + 1);
    let mut total = 0;
    for n in ns {
        starts.push(total);
        total += n.div_ceil(unit);
    }
    starts.push(total);
    par::for_each_chunk(total, |units| {
        for (j, &n) in ns.iter().enumerate() {
            let (lo, hi) = (units.start.max(starts[j]), units.end.min(starts[j + 1]));
            if lo < hi {
                f(j, (lo - starts[j]) * unit..((hi - starts[j]) * unit).min(n));
            }
        }
    });
}

/// How activations are rounded to 8 bits for integer dot products with a block type: the pairing
/// llama.cpp uses, so that the products equal its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Q8Kind {
    /// Blocks of 32 (llama.cpp's Q8_0 / Q8_1, for the 32-weight types): `d = max|x| / 127` rounded
    /// to f16, quants `round_half_even(x · 127 / max|x|)`, and `s = d · Σ q` rounded to f16.
    Blocks32,
    /// Super-blocks of 256 (llama.cpp's Q8_K, for the K-quants): `x_m` the value of largest
    /// magnitude, quants `min(127, round_half_even(−127 · x / x_m))`, `d = −x_m / 127` in f32.
    Super256,
}

impl Q8Kind {
    /// Values per activation scale: 32, or 256.
    pub const fn block(self) -> usize {
        match self {
            Q8Kind::Blocks32 => QK,
            Q8Kind::Super256 => QK_K,
        }
    }
}

impl BlockType {
    /// The activation rounding that pairs with this weight type.
    pub const fn q8_kind(self) -> Q8Kind {
        match self {
            BlockType::Q6_K | BlockType::Q4_K | BlockType::Q5_K => Q8Kind::Super256,
            _ => Q8Kind::Blocks32,
        }
    }
}

/// Activations quantized to 8 bits for integer dot products with block weights, in one of the
/// two [`Q8Kind`] layouts. Whatever the kind, the scale is kept per 32 values (repeated across a
/// super-block), with `d · Σ q` per 32 values and `Σ q` per 16 values, so that every kernel reads
/// the same fields.
#[derive(Clone, Debug)]
pub struct Q8Rows {
    /// Quants, `rows × k`.
    pub q: Vec<i8>,
    /// Scale per 32 values, `rows × k / 32`.
    pub d: Vec<f32>,
    /// `d · Σ q` per 32 values.
    pub s: Vec<f32>,
    /// `Σ q` per 16 values, `rows × k / 16`.
    pub bsums: Vec<i16>,
    /// Rows (tokens).
    pub rows: usize,
    /// Values per row.
    pub k: usize,
    /// The rounding used.
    pub kind: Q8Kind,
}

impl Default for Q8Rows {
    fn default() -> Self {
        Q8Rows { q: Vec::new(), d: Vec::new(), s: Vec::new(), bsums: Vec::new(), rows: 0, k: 0, kind: Q8Kind::Blocks32 }
    }
}

/// `v` rounded to the nearest integer, ties to even, for |v| < 2²²: the float addition rounds in the
/// default mode (as llama.cpp's `nearest_int`; `f32::round_ties_even` is a libm call here).
#[inline]
fn round_even(v: f32) -> i32 {
    ((v + 12582912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

impl Q8Rows {
    /// Quantizes `m` rows of `k` values (`k` a multiple of 32; row stride `lda`) as [`Q8Kind::Blocks32`].
    pub fn quantize(&mut self, x: &[f32], lda: usize, m: usize, k: usize) {
        self.quantize_as(Q8Kind::Blocks32, x, lda, m, k);
    }

    /// Quantizes `m` rows of `k` values (row stride `lda`) with the rounding `kind`; `k` must be a
    /// multiple of its block (32 or 256).
    pub fn quantize_as(&mut self, kind: Q8Kind, x: &[f32], lda: usize, m: usize, k: usize) {
        let block = kind.block();
        assert!(k.is_multiple_of(block), "Q8 activations: {k} values per row is not a multiple of {block}");
        assert!(m == 0 || x.len() >= (m - 1) * lda + k, "Q8 activations: input too short");
        let nb = k / QK;
        self.q.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        self.s.resize(m * nb, 0.0);
        self.bsums.resize(m * k / 16, 0);
        self.rows = m;
        self.k = k;
        self.kind = kind;
        for i in 0..m {
            let row = &x[i * lda..i * lda + k];
            let q = &mut self.q[i * k..(i + 1) * k];
            let d = &mut self.d[i * nb..(i + 1) * nb];
            match kind {
                Q8Kind::Blocks32 => {
                    for (b, (xb, qb)) in row.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
                        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
                        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                        for (q, &v) in qb.iter_mut().zip(xb) {
                            *q = round_even(v * id) as i8;
                        }
                        d[b] = amax / 127.0;
                    }
                }
                Q8Kind::Super256 => {
                    for (b, (xb, qb)) in row.chunks_exact(QK_K).zip(q.chunks_exact_mut(QK_K)).enumerate() {
                        let (mut amax, mut max) = (0f32, 0f32);
                        for &v in xb {
                            if v.abs() > amax {
                                amax = v.abs();
                                max = v;
                            }
                        }
                        let iscale = if amax == 0.0 { 0.0 } else { -127.0 / max };
                        for (q, &v) in qb.iter_mut().zip(xb) {
                            *q = round_even(iscale * v).min(127) as i8;
                        }
                        d[b * 8..(b + 1) * 8].fill(if amax == 0.0 { 0.0 } else { 1.0 / iscale });
                    }
                }
            }
            let bsums = &mut self.bsums[i * k / 16..(i + 1) * k / 16];
            for (s, qb) in bsums.iter_mut().zip(q.chunks_exact(16)) {
                *s = qb.iter().map(|&v| v as i16).sum();
            }
            for ((d, s), pair) in d.iter_mut().zip(&mut self.s[i * nb..(i + 1) * nb]).zip(bsums.chunks_exact(2)) {
                let sum = (pair[0] as i32 + pair[1] as i32) as f32;
                // llama.cpp's Q8_1 computes the sum with the f32 scale, then stores both in f16.
                *s = match kind {
                    Q8Kind::Blocks32 => f16_round(*d * sum),
                    Q8Kind::Super256 => *d * sum,
                };
                if kind == Q8Kind::Blocks32 {
                    *d = f16_round(*d);
                }
            }
        }
    }

    /// Row `i`'s quants, scales per 32 and scaled sums per 32.
    pub fn row(&self, i: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.k / QK;
        (&self.q[i * self.k..(i + 1) * self.k], &self.d[i * nb..(i + 1) * nb], &self.s[i * nb..(i + 1) * nb])
    }

    /// Row `i`'s sums of quants per 16.
    pub fn row_bsums(&self, i: usize) -> &[i16] {
        &self.bsums[i * self.k / 16..(i + 1) * self.k / 16]
    }
}

/// One block-weight product with Q8 activations, as the per-ISA kernels see it.
#[derive(Clone, Copy)]
pub(crate) struct BlockQ8Args<'a> {
    pub x: &'a Q8Rows,
    pub w: BlockRows<'a>,
    pub c: SendPtr<f32>,
    pub ldc: usize,
    pub epi: Epilogue<'a>,
}

/// A per-ISA kernel of block weights × Q8 activations: columns `rows` of `C` for every token.
///
/// # Safety
/// `args` passed [`check_q8`], `rows ⊆ 0..n`; concurrent calls on the same `C` get disjoint `rows`.
pub(crate) type GemvBlocksQ8Kernel = unsafe fn(args: &BlockQ8Args<'_>, rows: Range<usize>);

fn check_q8(x: &Q8Rows, w: &BlockRows, c: &[f32], ldc: usize, epi: &Epilogue) {
    assert_eq!(x.k, w.k(), "gemm_blocks_q8: activations have {} values, weights {}", x.k, w.k());
    assert_eq!(
        x.kind,
        w.ty().q8_kind(),
        "gemm_blocks_q8: {} weights need {:?} activations",
        w.ty().name(),
        w.ty().q8_kind()
    );
    check_output("gemm_blocks_q8", x.rows, w.n(), c, ldc, epi);
}

/// `C = epi(A·Wᵀ)` with `A` quantized to Q8 blocks: integer dot products per block, scaled in f32.
/// Rows of `W` are shared among the threads of the current pool.
pub fn gemm_blocks_q8(x: &Q8Rows, w: &BlockRows, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    gemm_blocks_q8_group(vec![(x, *w, c, ldc, *epi)]);
}

/// Several [`gemm_blocks_q8`] (each with its activations, which may be shared) in one parallel section.
pub fn gemm_blocks_q8_group(jobs: Vec<(&Q8Rows, BlockRows, &mut [f32], usize, Epilogue)>) {
    for (x, w, c, ldc, epi) in &jobs {
        check_q8(x, w, c, *ldc, epi);
    }
    if jobs.iter().all(|j| j.0.rows == 0) {
        return;
    }
    let args: Vec<BlockQ8Args> = jobs
        .into_iter()
        .map(|(x, w, c, ldc, epi)| BlockQ8Args { x, w, c: SendPtr(c.as_mut_ptr()), ldc, epi })
        .collect();
    let kernel = dispatch::table().gemv_blocks_q8;
    let ns: Vec<usize> = args.iter().map(|g| g.w.n()).collect();
    // Whole groups of rows when any weight is interleaved (its rows then are a multiple of X8).
    let unit = if args.iter().any(|g| g.w.is_interleaved()) { X8 } else { 2 };
    // SAFETY: shapes checked; the shares are disjoint row ranges of each output.
    for_each_row_share(&ns, unit, |j, rows| unsafe { kernel(&args[j], rows) });
}

/// [`gemm_blocks_q8`] on the calling thread with the kernels of `table` (tests and benchmarks).
pub fn gemm_blocks_q8_with(
    table: &dispatch::Table,
    x: &Q8Rows,
    w: &BlockRows,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
) {
    check_q8(x, w, c, ldc, epi);
    let args = BlockQ8Args { x, w: *w, c: SendPtr(c.as_mut_ptr()), ldc, epi: *epi };
    // SAFETY: shapes checked; one caller covers all rows.
    unsafe { (table.gemv_blocks_q8)(&args, 0..w.n()) };
}
