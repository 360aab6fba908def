//! Any bytes as a safetensors file: opening either fails with an error or yields a file whose
//! tensors can be listed and read as f32 with their own shapes (or fail with an error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pare_formats::TensorFile;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("pare-fuzz-{}.safetensors", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    if let Ok(f) = TensorFile::open(&path) {
        let _ = f.metadata();
        for info in f.infos() {
            if info.shape.iter().product::<usize>() <= 1 << 20 {
                let _ = f.f32(&info.name, &info.shape);
                let _ = f.bytes(&info.name);
            }
        }
    }
});
