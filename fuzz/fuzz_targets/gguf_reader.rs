//! Any bytes as a GGUF file: opening either fails with an error or yields a file whose metadata can
//! be summarised, whose tensors (up to a size) dequantize, and whose tokenizer metadata either builds
//! a tokenizer or fails with an error. Never a panic, an abort or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pare_formats::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("pare-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    if let Ok(f) = GgufFile::open(&path) {
        for (_, v) in &f.metadata {
            let _ = v.summary();
        }
        for t in &f.tensors {
            if t.numel() <= 1 << 20 {
                let _ = f.dequantize(&t.name);
            }
        }
        let _ = pare_formats::tokenizer::TextTokenizer::from_gguf(&f);
    }
});
