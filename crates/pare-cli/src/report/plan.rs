//! The sweep: which variants a report builds, and building each with pare's own compress commands.

use anyhow::{Context, Result};
use pare_compress::prune::{Method, PruneOptions};
use pare_compress::quantize::QuantizeOptions;
use pare_formats::ModelDir;
use pare_report::Kind;
use std::path::{Path, PathBuf};

/// How a variant is made.
#[derive(Clone, Debug, PartialEq)]
pub enum Recipe {
    /// The model as given.
    Original,
    /// `pare quantize --scheme int8` of the original, or of the variant named.
    Int8 { of: Option<String> },
    /// `pare quantize --scheme int8 --activations static` of the original.
    Int8Static,
    /// `pare prune` of the original.
    Prune { method: Method, sparsity: f64 },
}

/// One variant of the sweep.
#[derive(Clone, Debug)]
pub struct Spec {
    pub id: String,
    pub label: String,
    pub kind: Kind,
    pub method: String,
    pub sparsity: Option<f64>,
    pub recipe: Recipe,
}

fn method_name(m: Method) -> &'static str {
    m.name()
}

fn prune(method: Method, sparsity: f64) -> Spec {
    let pct = (sparsity * 100.0).round();
    let (id, label) = match method {
        Method::Nm => ("nm-2-4".to_string(), "2:4".to_string()),
        _ => (
            format!("{}-{pct:.0}", method_name(method)),
            format!("{} {pct:.0}%", pare_eval::analysis::method_label(method_name(method))),
        ),
    };
    Spec {
        id,
        label,
        kind: Kind::Pruned,
        method: method_name(method).into(),
        sparsity: Some(sparsity),
        recipe: Recipe::Prune { method, sparsity },
    }
}

fn int8_of(base: &Spec) -> Spec {
    Spec {
        id: format!("{}-int8", base.id),
        label: format!("{} + int8", base.label),
        kind: Kind::Combined,
        method: format!("{}+int8", base.method),
        sparsity: base.sparsity,
        recipe: Recipe::Int8 { of: Some(base.id.clone()) },
    }
}

/// The variants of a sweep, in build order (every variant after those it is made from).
pub fn sweep(quick: bool) -> Vec<Spec> {
    let mut v = vec![
        Spec {
            id: "original".into(),
            label: "Original".into(),
            kind: Kind::Original,
            method: "original".into(),
            sparsity: None,
            recipe: Recipe::Original,
        },
        Spec {
            id: "int8".into(),
            label: "int8".into(),
            kind: Kind::Quantized,
            method: "int8".into(),
            sparsity: None,
            recipe: Recipe::Int8 { of: None },
        },
    ];
    if quick {
        v.push(prune(Method::SparseGpt, 0.5));
        v.push(prune(Method::SparseGpt, 0.9));
        v.push(prune(Method::Magnitude, 0.5));
        v.push(prune(Method::Magnitude, 0.9));
        v.push(prune(Method::Structured, 0.5));
        let sg50 = v[2].clone();
        v.push(int8_of(&sg50));
        return v;
    }
    v.push(Spec {
        id: "int8-static".into(),
        label: "int8 static".into(),
        kind: Kind::Quantized,
        method: "int8-static".into(),
        sparsity: None,
        recipe: Recipe::Int8Static,
    });
    for s in [0.1, 0.3, 0.5, 0.7, 0.9] {
        v.push(prune(Method::SparseGpt, s));
    }
    for s in [0.1, 0.3, 0.5, 0.7, 0.9] {
        v.push(prune(Method::Magnitude, s));
    }
    v.push(prune(Method::Wanda, 0.5));
    v.push(prune(Method::Nm, 0.5));
    v.push(prune(Method::Structured, 0.5));
    let combos: Vec<Spec> = v
        .iter()
        .filter(|s| ["sparsegpt-30", "sparsegpt-50", "structured-50"].contains(&s.id.as_str()))
        .cloned()
        .collect();
    for c in &combos {
        v.push(int8_of(c));
    }
    v
}

/// Estimated cost of building a variant, in seconds on 2 cores (for the progress estimate).
pub fn build_cost(spec: &Spec, samples: usize) -> f64 {
    let per_k = samples as f64 / 1000.0;
    match &spec.recipe {
        Recipe::Original => 0.0,
        Recipe::Int8 { .. } | Recipe::Int8Static => 1.5,
        Recipe::Prune { method: Method::Magnitude, .. } => 1.0,
        Recipe::Prune { method: Method::Wanda, .. } => 1.5 + 2.0 * per_k,
        Recipe::Prune { method: Method::Structured, .. } => 7.0 + 4.0 * per_k,
        Recipe::Prune { .. } => 5.5 + 3.5 * per_k,
    }
}

/// The command line that makes a variant, for the report.
pub fn command(spec: &Spec, model: &str, samples: usize, dir: &Path) -> String {
    match &spec.recipe {
        Recipe::Original => format!("the model as given ({model})"),
        Recipe::Int8 { of } => format!(
            "pare quantize {} --scheme int8 -o {}",
            of.as_ref().map_or(model.to_string(), |o| dir.join(o).display().to_string()),
            dir.join(&spec.id).display()
        ),
        Recipe::Int8Static => {
            format!("pare quantize {model} --scheme int8 --activations static -o {}", dir.join(&spec.id).display())
        }
        Recipe::Prune { method, sparsity } => {
            let what = match method {
                Method::Nm => "--nm 2:4".to_string(),
                _ => format!("--sparsity {sparsity}"),
            };
            let cal = if *method == Method::Magnitude { String::new() } else { format!(" --samples {samples}") };
            format!("pare prune {model} --method {} {what}{cal} -o {}", method.name(), dir.join(&spec.id).display())
        }
    }
}

/// Builds `spec` into `models/<id>` (the original is used in place) and returns its directory.
pub fn build(spec: &Spec, src: &ModelDir, models: &Path, samples: usize, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let out = models.join(&spec.id);
    match &spec.recipe {
        Recipe::Original => return Ok(src.root.clone()),
        Recipe::Int8 { of } => {
            let from = match of {
                Some(base) => ModelDir::open(models.join(base))?,
                None => src.clone(),
            };
            let opts = QuantizeOptions { force: true, ..QuantizeOptions::default() };
            pare_compress::quantize::quantize(&from, &out, &opts, log)
                .with_context(|| format!("building {}", spec.label))?;
        }
        Recipe::Int8Static => {
            let opts = QuantizeOptions {
                activations: pare_compress::quantize::ActivationMode::Static,
                force: true,
                ..QuantizeOptions::default()
            };
            pare_compress::quantize::quantize(src, &out, &opts, log)
                .with_context(|| format!("building {}", spec.label))?;
        }
        Recipe::Prune { method, sparsity } => {
            let opts =
                PruneOptions { method: *method, sparsity: *sparsity, samples, force: true, ..PruneOptions::default() };
            pare_compress::prune::prune(src, &out, &opts, log).with_context(|| format!("building {}", spec.label))?;
        }
    }
    Ok(out)
}
