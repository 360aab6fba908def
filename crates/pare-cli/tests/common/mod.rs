//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs this pare with `args`.
pub fn pare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare")).args(args).output().expect("pare runs")
}

/// `o`, after checking that the command succeeded (its stderr otherwise).
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// One line on stderr containing `needle`, exit code 1.
pub fn one_line(o: Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "{err}");
}

/// The Python of the interoperability tests: `PARE_PYTHON` when set, else the environment
/// scripts/python-env builds (its last line of output).
pub fn python() -> String {
    if let Ok(p) = std::env::var("PARE_PYTHON") {
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let env = Command::new(root.join("scripts/python-env")).output().expect("run scripts/python-env");
    assert!(env.status.success(), "scripts/python-env: {}", String::from_utf8_lossy(&env.stderr));
    String::from_utf8_lossy(&env.stdout).lines().last().expect("python path").trim().to_string()
}

/// A path as the `&str` argument of a command.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The embeddings of `pare embed`'s JSON Lines output, in order.
pub fn parse_embeddings(stdout: &[u8]) -> Vec<Vec<f64>> {
    std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
        })
        .collect()
}

/// [`parse_embeddings`] as f32, the precision pare computes in.
pub fn parse_embeddings_f32(stdout: &[u8]) -> Vec<Vec<f32>> {
    parse_embeddings(stdout).into_iter().map(|e| e.into_iter().map(|x| x as f32).collect()).collect()
}
