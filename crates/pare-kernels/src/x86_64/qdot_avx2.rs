//! Block weights × Q8 activations on AVX2, for every block type: each stored row is read once and
//! dotted with every token's activation quants in 256-bit integer arithmetic (`vpmaddubsw` into i16
//! pair sums, `vpmaddwd` into i32), then scaled in f32 once per block of 32 (or once per super-block
//! of 256 for the K-quants, whose sub-block scales are applied in integers).
//!
//! Saturation: `vpmaddubsw` multiplies an unsigned byte by a signed one and adds pairs into i16.
//! Every operand pair here stays below 2¹⁵: signed weights (Q4_0, Q5_0, Q8_0: |w| ≤ 128) enter as |w|
//! with their sign moved onto the activation (|x| ≤ 127, so 2 · 128 · 127 < 32767); unsigned quants
//! enter as they are (at most 63, for Q6_K: 2 · 63 · 127 < 32767). Q6_K's offset of 32 is removed
//! afterwards through the activation sums per 16, the K-quant minima through the sums per 32.

use super::avx2::half256;
use crate::qblock::{BlockQ8Args, BlockType, QK, QK_K};
use std::arch::x86_64::*;
use std::ops::Range;

#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
}

/// Eight i32 sums of four products of unsigned `u` and signed `s` bytes.
#[target_feature(enable = "avx2")]
#[inline]
fn dot_us(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// As [`dot_us`] for two signed operands, `|w| ≤ 128`, `|x| ≤ 127`.
#[target_feature(enable = "avx2")]
#[inline]
fn dot_ss(w: __m256i, x: __m256i) -> __m256i {
    dot_us(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

/// Byte `j` (0..32) is 0xff where bit `j` of `bits` is set, else 0.
#[target_feature(enable = "avx2")]
#[inline]
fn bit_bytes(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let sel = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let b = _mm256_and_si256(_mm256_shuffle_epi8(v, spread), sel);
    _mm256_cmpeq_epi8(b, sel)
}

/// The 32 nibbles of a 32-weight block (weight `j < 16` in the low nibble of byte `j`, weight
/// `j + 16` in its high nibble) as bytes 0..=15.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller's block holds 16 bytes at p.
    let qs = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(qs), qs), _mm256_set1_epi8(0x0f))
}

/// A 32-weight block dotted with one token: `d_w · d_x · dot` added to `acc` in eight lanes, and
/// the minimum term `m_w · s_x` to every lane of `mins` (Q4_1, Q5_1).
/// `TY`: 0 Q4_0, 1 Q4_1, 2 Q8_0, 3 Q5_0, 4 Q5_1.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block32<const TY: u8>(p: *const u8, xv: __m256i, dx: f32, sx: f32, acc: __m256, mins: &mut __m256) -> __m256 {
    // SAFETY: the caller's block holds the type's bytes at p.
    unsafe {
        let dot = match TY {
            0 => dot_ss(_mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)), xv),
            1 => dot_us(nibbles(p.add(4)), xv),
            2 => dot_ss(_mm256_loadu_si256(p.add(2) as *const __m256i), xv),
            3 => {
                // Fifth bit clear: q − 16 = nibble − 16, the nibble with its high bits set.
                let bits = (p.add(2) as *const u32).read_unaligned();
                let clear = _mm256_andnot_si256(bit_bytes(bits), _mm256_set1_epi8(-16));
                dot_ss(_mm256_or_si256(nibbles(p.add(6)), clear), xv)
            }
            _ => {
                let bits = (p.add(4) as *const u32).read_unaligned();
                let set = _mm256_and_si256(bit_bytes(bits), _mm256_set1_epi8(16));
                dot_us(_mm256_or_si256(nibbles(p.add(8)), set), xv)
            }
        };
        let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(half256(p), _mm256_set1_ps(dx)), acc);
        if TY == 1 || TY == 4 {
            *mins = _mm256_fmadd_ps(half256(p.add(2)), _mm256_set1_ps(sx), *mins);
        }
        acc
    }
}

/// One row of 32-weight blocks dotted with one token: `Σ_b d_w · d_x · dot_b (+ m_w · s_x)`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row32<const TY: u8>(w: *const u8, bytes: usize, nb: usize, xq: *const i8, xd: &[f32], xs: &[f32]) -> f32 {
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut mins = _mm256_setzero_ps();
    let mut b = 0;
    // SAFETY: blocks b, b + 1 of the row and their activation quants, scales and sums (checked shapes).
    unsafe {
        while b + 2 <= nb {
            let x0 = _mm256_loadu_si256(xq.add(QK * b) as *const __m256i);
            let x1 = _mm256_loadu_si256(xq.add(QK * b + QK) as *const __m256i);
            let (d0, s0) = (*xd.get_unchecked(b), *xs.get_unchecked(b));
            let (d1, s1) = (*xd.get_unchecked(b + 1), *xs.get_unchecked(b + 1));
            a0 = block32::<TY>(w.add(b * bytes), x0, d0, s0, a0, &mut mins);
            a1 = block32::<TY>(w.add(b * bytes + bytes), x1, d1, s1, a1, &mut mins);
            b += 2;
        }
        if b < nb {
            let x0 = _mm256_loadu_si256(xq.add(QK * b) as *const __m256i);
            a0 = block32::<TY>(w.add(b * bytes), x0, *xd.get_unchecked(b), *xs.get_unchecked(b), a0, &mut mins);
        }
    }
    hsum(_mm256_add_ps(a0, a1)) + _mm256_cvtss_f32(mins)
}

/// The eight 6-bit scales and minima of a Q4_K/Q5_K super-block from its 12 packed bytes, each as
/// eight i16 in a 128-bit register (scales) and eight bytes (minima).
#[inline]
unsafe fn scales_mins_k4(p: *const u8) -> (u64, u64) {
    // SAFETY: the caller's block holds 12 bytes at p.
    let (w0, w1, w2) = unsafe {
        (
            (p as *const u32).read_unaligned(),
            (p.add(4) as *const u32).read_unaligned(),
            (p.add(8) as *const u32).read_unaligned(),
        )
    };
    let sc_lo = w0 & 0x3f3f3f3f;
    let mn_lo = w1 & 0x3f3f3f3f;
    let sc_hi = (w2 & 0x0f0f0f0f) | (((w0 >> 6) & 0x03030303) << 4);
    let mn_hi = ((w2 >> 4) & 0x0f0f0f0f) | (((w1 >> 6) & 0x03030303) << 4);
    (sc_lo as u64 | (sc_hi as u64) << 32, mn_lo as u64 | (mn_hi as u64) << 32)
}

/// Lane-wise i16 element `e` of each 128-bit half of `v`, in all eight i16 lanes of that half.
#[target_feature(enable = "avx2")]
#[inline]
fn pick16(v: __m256i, lo: i32, hi: i32) -> __m256i {
    let m = |e: i32| _mm_set1_epi16((((2 * e + 1) << 8) | (2 * e)) as i16);
    _mm256_shuffle_epi8(v, _mm256_set_m128i(m(hi), m(lo)))
}

/// One row of Q4_K (`FIVE` false) or Q5_K super-blocks dotted with one token's Q8_K activations:
/// `Σ_sb d_x · (d · Σ_j s_j · dot_j − dmin · Σ_j m_j · Σ_{32} q_x)`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_k45<const FIVE: bool>(w: *const u8, nsb: usize, xq: *const i8, xd: &[f32], bs: *const i16) -> f32 {
    let bytes = if FIVE { 176 } else { 144 };
    let qs_at = if FIVE { 48 } else { 16 };
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm_setzero_ps();
    for sb in 0..nsb {
        // SAFETY: super-block sb of the row, its 256 activation quants and 16 sums (checked shapes).
        unsafe {
            let p = w.add(sb * bytes);
            let dx = *xd.get_unchecked(sb * 8);
            let (d, dmin) =
                (_mm256_mul_ps(half256(p), _mm256_set1_ps(dx)), _mm256_mul_ps(half256(p.add(2)), _mm256_set1_ps(dx)));
            let (sc, mn) = scales_mins_k4(p.add(4));
            let sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            let mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64));
            let b = bs.add(16 * sb);
            let s32 = _mm_hadd_epi16(_mm_loadu_si128(b as *const __m128i), _mm_loadu_si128(b.add(8) as *const __m128i));
            accm = _mm_fmadd_ps(_mm256_castps256_ps128(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mn, s32)), accm);
            let hb = if FIVE { _mm256_loadu_si256(p.add(16) as *const __m256i) } else { _mm256_setzero_si256() };
            let mut hm = _mm256_set1_epi8(1);
            let mut sumi = _mm256_setzero_si256();
            let x = xq.add(QK_K * sb);
            for c in 0..4 {
                let q4 = _mm256_loadu_si256(p.add(qs_at + 32 * c) as *const __m256i);
                let mut lo = _mm256_and_si256(q4, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
                if FIVE {
                    let b0 = _mm256_cmpeq_epi8(_mm256_and_si256(hb, hm), hm);
                    hm = _mm256_slli_epi16::<1>(hm);
                    let b1 = _mm256_cmpeq_epi8(_mm256_and_si256(hb, hm), hm);
                    hm = _mm256_slli_epi16::<1>(hm);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(b0, _mm256_set1_epi8(16)));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(b1, _mm256_set1_epi8(16)));
                }
                let xl = _mm256_loadu_si256(x.add(64 * c) as *const __m256i);
                let xh = _mm256_loadu_si256(x.add(64 * c + 32) as *const __m256i);
                let e = 2 * c as i32;
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), pick16(sc, e, e));
                let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), pick16(sc, e + 1, e + 1));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
            }
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    let m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    hsum(acc) - _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
}

/// One row of Q6_K super-blocks dotted with one token's Q8_K activations:
/// `Σ_sb d_x · d · Σ_16 s · (Σ q · q_x − 32 · Σ q_x)`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_q6k(w: *const u8, nsb: usize, xq: *const i8, xd: &[f32], bs: *const i16) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    let mut acc = _mm256_setzero_ps();
    for sb in 0..nsb {
        // SAFETY: super-block sb of the row, its 256 activation quants and 16 sums (checked shapes).
        unsafe {
            let p = w.add(sb * 210);
            let d = _mm256_mul_ps(half256(p.add(208)), _mm256_set1_ps(*xd.get_unchecked(sb * 8)));
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
            let corr = _mm256_madd_epi16(sc, _mm256_loadu_si256(bs.add(16 * sb) as *const __m256i));
            let mut sumi = _mm256_setzero_si256();
            let x = xq.add(QK_K * sb);
            for h in 0..2 {
                let scv = if h == 0 {
                    _mm256_permute2x128_si256::<0x00>(sc, sc)
                } else {
                    _mm256_permute2x128_si256::<0x11>(sc, sc)
                };
                let qa = _mm256_loadu_si256(p.add(64 * h) as *const __m256i);
                let qb = _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i);
                let q = [
                    _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30)),
                    _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4), _mm256_and_si256(qh, m30)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                    ),
                ];
                for (part, q) in q.into_iter().enumerate() {
                    let xv = _mm256_loadu_si256(x.add(128 * h + 32 * part) as *const __m256i);
                    let e = 2 * part as i32;
                    let p16 = _mm256_maddubs_epi16(q, xv);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, pick16(scv, e, e + 1)));
                }
            }
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(corr));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum(acc)
}

/// Tokens whose activation quants are kept close while every row passes over them: 16 rows of up to
/// 1536 quants stay in L1 beside the weight row.
const TOKEN_TILE: usize = 16;

/// Block weights × Q8 activations, every type: for each tile of tokens, each stored row is read once
/// and dotted with every token of the tile.
///
/// # Safety
/// As [`crate::qblock::GemvBlocksQ8Kernel`]; installed only on CPUs with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn gemv_blocks_q8(args: &BlockQ8Args<'_>, rows: Range<usize>) {
    assert!(rows.end <= args.w.n());
    if args.w.is_interleaved() {
        // SAFETY: the caller's contract.
        return unsafe { gemv_x8(args, rows) };
    }
    let ty = args.w.ty();
    let (k, bytes) = (args.w.k(), ty.block_bytes());
    for t0 in (0..args.x.rows).step_by(TOKEN_TILE) {
        for j in rows.clone() {
            let w = args.w.row(j).as_ptr();
            for i in t0..(t0 + TOKEN_TILE).min(args.x.rows) {
                let (xq, xd, xs) = args.x.row(i);
                let bs = args.x.row_bsums(i).as_ptr();
                let x = xq.as_ptr();
                // SAFETY: the row holds k / weights blocks and the token k quants, k / 32 scales and
                // k / 16 sums (checked shapes and activation kind).
                let s = unsafe {
                    match ty {
                        BlockType::Q4_0 => row32::<0>(w, bytes, k / QK, x, xd, xs),
                        BlockType::Q4_1 => row32::<1>(w, bytes, k / QK, x, xd, xs),
                        BlockType::Q8_0 => row32::<2>(w, bytes, k / QK, x, xd, xs),
                        BlockType::Q5_0 => row32::<3>(w, bytes, k / QK, x, xd, xs),
                        BlockType::Q5_1 => row32::<4>(w, bytes, k / QK, x, xd, xs),
                        BlockType::Q4_K => row_k45::<false>(w, k / QK_K, x, xd, bs),
                        BlockType::Q5_K => row_k45::<true>(w, k / QK_K, x, xd, bs),
                        BlockType::Q6_K => row_q6k(w, k / QK_K, x, xd, bs),
                    }
                };
                // SAFETY: element (i, j) of C is this call's (rows are disjoint between callers).
                unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(s, i, j) };
            }
        }
    }
}

/// One group block of eight interleaved rows dotted with one token's block of 32 quants `x` (sum
/// `isum`, scale `dx`, scaled sum `sx`): lane `r` of the result gains row `r`'s `d_w · dx · dot`,
/// lane `r` of `mins` its `m_w · sx` (Q4_1, Q5_1). `TY` as [`block32`].
///
/// The 4- and 5-bit quants enter `vpmaddubsw` unsigned (at most 15, resp. 31), so the pair sums of a
/// whole block (4-bit: 8 · 2 · 15 · 127), resp. of its low and of its high halves (5-bit:
/// 4 · 2 · 31 · 127), stay below 2¹⁵ and add in i16; the offset of Q4_0 (8) and Q5_0 (16) comes off
/// as `offset · Σ x`. The fifth bits of chunk `c` are one byte per row, spread to the four bytes of
/// the row's lane and tested bit by bit. Q8_0's signed quants move their sign onto the activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn x8_block<const TY: u8>(
    p: *const u8,
    x: *const i8,
    isum: i32,
    dx: f32,
    sx: f32,
    acc: __m256,
    mins: &mut __m256,
) -> __m256 {
    const TYPES: [BlockType; 5] = [BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0, BlockType::Q5_0, BlockType::Q5_1];
    let (xm, xh, xq) = crate::qblock::x8_offsets(TYPES[TY as usize]);
    // SAFETY: the caller's group block holds the type's 8 · block_bytes bytes at p, the token 32
    // quants at x.
    unsafe {
        let quad = |o: usize| _mm256_set1_epi32((x.add(o) as *const i32).read_unaligned());
        let dot = if TY == 2 {
            let mut dot = _mm256_setzero_si256();
            for c in 0..8 {
                dot = _mm256_add_epi32(
                    dot,
                    dot_ss(_mm256_loadu_si256(p.add(xq + 32 * c) as *const __m256i), quad(4 * c)),
                );
            }
            dot
        } else {
            let m = _mm256_set1_epi8(0x0f);
            let five = TY == 3 || TY == 4;
            let spread =
                _mm256_set_epi64x(0x0707070706060606, 0x0505050504040404, 0x0303030302020202, 0x0101010100000000);
            let (lo_sel, hi_sel) = (_mm256_set1_epi32(0x08040201), _mm256_set1_epi32(0x80402010u32 as i32));
            let b16 = _mm256_set1_epi8(16);
            let (mut sl, mut sh) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for c in 0..4 {
                let v = _mm256_loadu_si256(p.add(xq + 32 * c) as *const __m256i);
                let (mut lo, mut hi) = (_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16::<4>(v), m));
                if five {
                    let h = _mm256_set1_epi64x((p.add(xh + 8 * c) as *const i64).read_unaligned());
                    let h = _mm256_shuffle_epi8(h, spread);
                    lo = _mm256_or_si256(
                        lo,
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, lo_sel), lo_sel), b16),
                    );
                    hi = _mm256_or_si256(
                        hi,
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, hi_sel), hi_sel), b16),
                    );
                }
                sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(lo, quad(4 * c)));
                sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(hi, quad(16 + 4 * c)));
            }
            let one = _mm256_set1_epi16(1);
            let dot = if five {
                _mm256_add_epi32(_mm256_madd_epi16(sl, one), _mm256_madd_epi16(sh, one))
            } else {
                _mm256_madd_epi16(_mm256_add_epi16(sl, sh), one)
            };
            match TY {
                0 => _mm256_sub_epi32(dot, _mm256_set1_epi32(8 * isum)),
                3 => _mm256_sub_epi32(dot, _mm256_set1_epi32(16 * isum)),
                _ => dot,
            }
        };
        if TY == 1 || TY == 4 {
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(p.add(xm) as *const __m128i));
            *mins = _mm256_fmadd_ps(mw, _mm256_set1_ps(sx), *mins);
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc)
    }
}

/// Rows interleaved by eight ([`crate::qblock::interleave8`]) × Q8 activations: for each group of
/// eight rows, its group blocks (a few KB, kept in L1) are dotted with every token, the eight rows'
/// sums in the eight lanes of one accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_x8(args: &BlockQ8Args<'_>, rows: Range<usize>) {
    // SAFETY: the caller's contract.
    unsafe {
        match args.w.ty() {
            BlockType::Q4_0 => gemv_x8_typed::<0>(args, rows),
            BlockType::Q4_1 => gemv_x8_typed::<1>(args, rows),
            BlockType::Q8_0 => gemv_x8_typed::<2>(args, rows),
            BlockType::Q5_0 => gemv_x8_typed::<3>(args, rows),
            BlockType::Q5_1 => gemv_x8_typed::<4>(args, rows),
            ty => unreachable!("{} rows are never interleaved", ty.name()),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_x8_typed<const TY: u8>(args: &BlockQ8Args<'_>, rows: Range<usize>) {
    use crate::qblock::X8;
    assert!(rows.start.is_multiple_of(X8) && rows.end.is_multiple_of(X8), "rows {rows:?} split a group of {X8}");
    let (nb, gb) = (args.w.k() / QK, X8 * args.w.ty().block_bytes());
    let data = args.w.data();
    for g in rows.start / X8..rows.end / X8 {
        let wg = data[g * nb * gb..(g + 1) * nb * gb].as_ptr();
        for i in 0..args.x.rows {
            let (xq, xd, xs) = args.x.row(i);
            let bs = args.x.row_bsums(i);
            let x = xq.as_ptr();
            // One accumulator, blocks in order: the sums llama.cpp's kernels on rows interleaved by
            // eight form, so the products agree with its own to the last bit where the types meet.
            let (mut acc, mut mins) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            // SAFETY: block b of the group lies at wg + b · gb (checked shape); the token holds
            // nb blocks of 32 quants, nb scales and scaled sums, and 2 · nb sums per 16.
            unsafe {
                for b in 0..nb {
                    let isum = *bs.get_unchecked(2 * b) as i32 + *bs.get_unchecked(2 * b + 1) as i32;
                    let (dx, sx) = (*xd.get_unchecked(b), *xs.get_unchecked(b));
                    acc = x8_block::<TY>(wg.add(b * gb), x.add(b * QK), isum, dx, sx, acc, &mut mins);
                }
            }
            let mut s = [0f32; X8];
            // SAFETY: s holds eight floats.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), _mm256_add_ps(acc, mins)) };
            for (r, v) in s.into_iter().enumerate() {
                let j = g * X8 + r;
                // SAFETY: element (i, j) of C is this call's (rows are disjoint between callers).
                unsafe { *args.c.get().add(i * args.ldc + j) = args.epi.apply(v, i, j) };
            }
        }
    }
}

/// Dequantizes a group of eight interleaved rows straight into the transposed panel form
/// ([`crate::qblock::DequantX8Kernel`]): lane `r` of a 32-bit word of a chunk holds four
/// consecutive quants of row `r`, so each byte position (and nibble) of the eight words is one
/// input index across the eight rows, i.e. eight consecutive floats of the panel. The values are
/// those of the reference (`d · (q − offset)`, `d · q + m`), bit for bit.
///
/// # Safety
/// As [`crate::qblock::DequantX8Kernel`]; installed only on CPUs with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_x8(ty: BlockType, group: &[u8], k: usize, out: *mut f32, ld: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        match ty {
            BlockType::Q4_0 => dequant_x8_typed::<0>(group, k, out, ld),
            BlockType::Q4_1 => dequant_x8_typed::<1>(group, k, out, ld),
            BlockType::Q8_0 => dequant_x8_typed::<2>(group, k, out, ld),
            BlockType::Q5_0 => dequant_x8_typed::<3>(group, k, out, ld),
            BlockType::Q5_1 => dequant_x8_typed::<4>(group, k, out, ld),
            ty => unreachable!("{} rows are never interleaved", ty.name()),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequant_x8_typed<const TY: u8>(group: &[u8], k: usize, out: *mut f32, ld: usize) {
    const TYPES: [BlockType; 5] = [BlockType::Q4_0, BlockType::Q4_1, BlockType::Q8_0, BlockType::Q5_0, BlockType::Q5_1];
    let ty = TYPES[TY as usize];
    let (xm, xh, xq) = crate::qblock::x8_offsets(ty);
    let (gb, nb) = (crate::qblock::X8 * ty.block_bytes(), k / QK);
    assert_eq!(group.len(), nb * gb, "dequant_x8: group bytes");
    let shift = |n: i32| _mm_cvtsi32_si128(n);
    // SAFETY: block b's group block lies at b · gb of `group` (checked length); the caller's `out`
    // holds (k − 1) · ld + 8 floats.
    unsafe {
        for b in 0..nb {
            let p = group.as_ptr().add(b * gb);
            let o = out.add(b * QK * ld);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let m = _mm256_cvtph_ps(_mm_loadu_si128(p.add(xm) as *const __m128i));
            let value = |q: __m256i| {
                let q = match TY {
                    0 => _mm256_sub_epi32(q, _mm256_set1_epi32(8)),
                    3 => _mm256_sub_epi32(q, _mm256_set1_epi32(16)),
                    _ => q,
                };
                let v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q));
                if TY == 1 || TY == 4 { _mm256_add_ps(v, m) } else { v }
            };
            if TY == 2 {
                for c in 0..8 {
                    let v = _mm256_loadu_si256(p.add(xq + 32 * c) as *const __m256i);
                    for t in 0..4 {
                        let q = _mm256_sra_epi32(_mm256_sll_epi32(v, shift(24 - 8 * t)), shift(24));
                        _mm256_storeu_ps(o.add((4 * c + t as usize) * ld), value(q));
                    }
                }
                continue;
            }
            let nib = _mm256_set1_epi32(0x0f);
            for c in 0..4 {
                let v = _mm256_loadu_si256(p.add(xq + 32 * c) as *const __m256i);
                let h = if TY == 3 || TY == 4 {
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(xh + 8 * c) as *const __m128i))
                } else {
                    _mm256_setzero_si256()
                };
                for t in 0..4 {
                    let mut lo = _mm256_and_si256(_mm256_srl_epi32(v, shift(8 * t)), nib);
                    let mut hi = _mm256_and_si256(_mm256_srl_epi32(v, shift(8 * t + 4)), nib);
                    if TY == 3 || TY == 4 {
                        // Bit t of the row's byte is the fifth bit of weight 4c + t, bit 4 + t of 16 + 4c + t.
                        let b16 = _mm256_set1_epi32(16);
                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_sll_epi32(h, shift(4 - t)), b16));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srl_epi32(h, shift(t)), b16));
                    }
                    _mm256_storeu_ps(o.add((4 * c + t as usize) * ld), value(lo));
                    _mm256_storeu_ps(o.add((16 + 4 * c + t as usize) * ld), value(hi));
                }
            }
        }
    }
}
