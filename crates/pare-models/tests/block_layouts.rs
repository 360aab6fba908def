//! The two readings of llama.cpp's block layouts agree: the kernels' scalar reference (what every
//! tier's block kernel is tested against) and the GGUF reader's dequantization (checked against the
//! `gguf` Python package by the project's GGUF tests), on random blocks of every type the kernels
//! keep, including blocks with every bit set.

use pare_formats::gguf::{GgmlType, dequantize};
use pare_kernels::qblock::{BlockRows, BlockType, dequantize_blocks};
use pare_kernels::reference;

/// Random bytes with the block's f16 values set to finite ones of magnitude 2⁻¹⁴ to 2⁻⁷.
fn blocks(ty: BlockType, n: usize, seed: u64, all_set: bool) -> Vec<u8> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut data: Vec<u8> = (0..n * ty.block_bytes()).map(|_| if all_set { 0xff } else { next() as u8 }).collect();
    for blk in data.chunks_exact_mut(ty.block_bytes()) {
        for &at in ty.f16_offsets() {
            let r = next();
            let h = ((r >> 63) << 15) as u16 | (((1 + (r >> 8) % 8) as u16) << 10) | (r as u16 & 0x3ff);
            blk[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    data
}

fn ggml(ty: BlockType) -> GgmlType {
    match ty {
        BlockType::Q4_0 => GgmlType::Q4_0,
        BlockType::Q4_1 => GgmlType::Q4_1,
        BlockType::Q8_0 => GgmlType::Q8_0,
        BlockType::Q5_0 => GgmlType::Q5_0,
        BlockType::Q5_1 => GgmlType::Q5_1,
        BlockType::Q6_K => GgmlType::Q6_K,
        BlockType::Q4_K => GgmlType::Q4_K,
        BlockType::Q5_K => GgmlType::Q5_K,
    }
}

#[test]
fn kernel_reference_and_gguf_reader_dequantize_alike() {
    for ty in BlockType::ALL {
        assert_eq!(ggml(ty).block(), Some((ty.weights(), ty.block_bytes())), "{}: block geometry", ty.name());
        for (seed, all_set) in [(1, false), (2, false), (3, true)] {
            let n = 9;
            let data = blocks(ty, n, seed, all_set);
            let mut theirs = vec![0f32; n * ty.weights()];
            dequantize(ggml(ty), &data, &mut theirs).unwrap();
            let mut ours = vec![0f32; n * ty.weights()];
            for (b, o) in data.chunks_exact(ty.block_bytes()).zip(ours.chunks_exact_mut(ty.weights())) {
                reference::dequantize_block(ty, b, o);
            }
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{} seed {seed}: weight {i}: {a} vs {b}", ty.name());
            }
            // And the dispatched kernel, as the decoders use it.
            BlockRows::new(ty, &data, n, ty.weights()).unwrap();
            let mut fast = vec![0f32; n * ty.weights()];
            dequantize_blocks(ty, &data, &mut fast);
            assert!(fast.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: dispatched", ty.name());
        }
    }
}
