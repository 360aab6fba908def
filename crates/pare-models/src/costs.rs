//! Which kernel runs a pruned weight: a cost model of the dense and sparse kernels of the tier in use,
//! calibrated once per machine and cached, so that the same model on the same machine runs the same
//! kernels every time and loading times nothing.
//!
//! Calibration times, on one thread and [`TOKENS`] tokens, the dense kernel and the sparse kernel at
//! four densities on three shapes (MiniLM's `n × k`: 384 × 384, 1536 × 384, 384 × 1536), for f32 and
//! int8, interleaved round by round and taking medians. Sparse time is linear in density,
//! `t(d) = fixed + slope·d` (a least-squares fit), so each shape has a crossover density below which
//! sparse runs faster. A weight takes the crossover of the calibrated shape nearest to its own (in
//! log n, log k); predicted times scale with `n·k`. The result goes to
//! `$PARE_CACHE/kernel-costs/<tier>-<cpu>-<kernels>.json` (written to a temporary name and renamed);
//! later loads read it. Delete the file to calibrate again.

use pare_kernels::dispatch::{self, Table};
use pare_kernels::gemm_f32::gemm_f32_with;
use pare_kernels::gemm_i8::gemm_u8s8_with;
use pare_kernels::quant::{ActQuant, quantize_rows_with};
use pare_kernels::spmm::spmm_f32_with;
use pare_kernels::spmm_i8::spmm_u8s8_with;
use pare_kernels::{CsrF32, CsrI8, Epilogue, I8Out, PackedF32, PackedI8, QuantRows};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// Tokens of the calibration problems (one padded sequence of MiniLM's usual length).
pub const TOKENS: usize = 128;
/// Shapes `(n, k)` calibrated.
const SHAPES: [(usize, usize); 3] = [(384, 384), (1536, 384), (384, 1536)];
/// Densities the sparse kernels are timed at.
const DENSITIES: [f64; 4] = [0.1, 0.25, 0.4, 0.55];
/// Rounds of the interleaved timing; each figure is the median over rounds.
const ROUNDS: usize = 9;
/// Changes whenever the calibration protocol or file layout changes (old files are then ignored).
const FORMAT: u32 = 1;

/// Kernel family of a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// f32 dense against f32 sparse.
    F32,
    /// u8×s8 dense against u8×s8 sparse.
    Int8,
}

impl Family {
    fn key(self) -> &'static str {
        match self {
            Family::F32 => "f32",
            Family::Int8 => "int8",
        }
    }
}

/// Smallest coefficient of determination of a sparse-time fit in a calibration that is cached.
const MIN_R2: f64 = 0.9;

/// One calibrated shape of one family: dense time and the sparse time's linear fit, in µs at
/// [`TOKENS`] tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShapeCost {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Dense kernel.
    pub dense_us: f64,
    /// Sparse kernel at density 0 (transposes, per-call work).
    pub sparse_fixed_us: f64,
    /// Sparse kernel: added time per unit of density.
    pub sparse_slope_us: f64,
    /// Coefficient of determination of the fit (1 when read from the cache).
    pub r2: f64,
}

impl ShapeCost {
    /// The density below which the sparse kernel is predicted faster (0 when never).
    pub fn crossover(&self) -> f64 {
        if self.sparse_slope_us <= 0.0 {
            return if self.sparse_fixed_us < self.dense_us { 1.0 } else { 0.0 };
        }
        ((self.dense_us - self.sparse_fixed_us) / self.sparse_slope_us).clamp(0.0, 1.0)
    }
}

/// The calibration of the tier in use.
#[derive(Clone, Debug)]
pub struct KernelCosts {
    /// Tier and kernels it was measured with.
    pub tier: String,
    /// Per family, the calibrated shapes.
    pub f32: Vec<ShapeCost>,
    /// Integer kernels.
    pub int8: Vec<ShapeCost>,
    /// Where it was read from or written to (`None`: measured in this process, not cached).
    pub file: Option<PathBuf>,
}

/// What the cost model says about one weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Predicted dense time at [`TOKENS`] tokens, one thread, µs.
    pub dense_us: f64,
    /// Predicted sparse time, µs.
    pub sparse_us: f64,
    /// Crossover density of the nearest calibrated shape.
    pub crossover: f64,
}

impl KernelCosts {
    /// Whether every fit explains the measured sparse times well.
    fn clean(&self) -> bool {
        self.f32.iter().chain(&self.int8).all(|s| s.r2 >= MIN_R2 && s.sparse_slope_us > 0.0 && s.dense_us > 0.0)
    }

    /// The cost model's figures for a weight of `n × k` at `density`.
    pub fn predict(&self, family: Family, n: usize, k: usize, density: f64) -> Prediction {
        let shapes = match family {
            Family::F32 => &self.f32,
            Family::Int8 => &self.int8,
        };
        let dist = |s: &ShapeCost| {
            let (dn, dk) = ((n.max(1) as f64 / s.n as f64).ln(), (k.max(1) as f64 / s.k as f64).ln());
            dn * dn + dk * dk
        };
        let s = shapes.iter().min_by(|a, b| dist(a).total_cmp(&dist(b))).expect("calibrated shapes");
        let scale = (n * k) as f64 / (s.n * s.k) as f64;
        Prediction {
            dense_us: s.dense_us * scale,
            sparse_us: (s.sparse_fixed_us + s.sparse_slope_us * density) * scale,
            crossover: s.crossover(),
        }
    }
}

/// The cost model of the dispatched tier: read from the cache, or calibrated now (and cached).
pub fn costs() -> &'static KernelCosts {
    static COSTS: OnceLock<KernelCosts> = OnceLock::new();
    COSTS.get_or_init(|| {
        let table = dispatch::table();
        let path = cache_path(table);
        if let Some(c) = path.as_ref().and_then(|p| read(p, table)) {
            return c;
        }
        // A disturbed calibration (another heavy process, a frequency change) shows as sparse times that
        // do not grow linearly with density: measure again, and cache only a clean one.
        let mut c = calibrate(table);
        if !c.clean() {
            c = calibrate(table);
        }
        if !c.clean() {
            eprintln!("warning: the kernel timings were noisy; the cost model is used for this run but not cached");
            return c;
        }
        if let Some(p) = path {
            match write(&p, &c) {
                Ok(()) => c.file = Some(p),
                Err(e) => eprintln!("warning: cannot cache the kernel cost model in {}: {e}", p.display()),
            }
        }
        c
    })
}

fn tier_key(t: &Table) -> String {
    format!("{} {} {} {} {}", t.isa, t.gemm_f32_name, t.spmm_f32_name, t.gemm_u8s8_name, t.spmm_u8s8_name)
}

/// `<cache>/kernel-costs/<tier>-<cpu>-<hash of the kernel names and format>.json`.
fn cache_path(t: &Table) -> Option<PathBuf> {
    let cpu: String =
        pare_kernels::isa::cpu_model().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    // FNV-1a of what the figures depend on besides the CPU.
    let what = format!("{} {} {FORMAT}", tier_key(t), env!("CARGO_PKG_VERSION"));
    let hash = what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let dir = pare_formats::zoo::cache_dir().join("kernel-costs");
    Some(dir.join(format!("{}-{cpu}-{hash:016x}.json", t.isa)))
}

fn shapes_json(v: &[ShapeCost]) -> Value {
    v.iter()
        .map(|s| {
            json!({"n": s.n, "k": s.k, "dense_us": s.dense_us, "sparse_fixed_us": s.sparse_fixed_us,
                   "sparse_slope_us": s.sparse_slope_us, "crossover_density": s.crossover()})
        })
        .collect()
}

fn write(path: &std::path::Path, c: &KernelCosts) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir)?;
    let v = json!({
        "format": FORMAT, "tier": c.tier, "cpu": pare_kernels::isa::cpu_model(), "tokens": TOKENS,
        "pare": env!("CARGO_PKG_VERSION"), "f32": shapes_json(&c.f32), "int8": shapes_json(&c.int8),
    });
    let tmp =
        dir.join(format!(".{}.{}", path.file_name().and_then(|f| f.to_str()).unwrap_or("costs"), std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&v).expect("plain JSON"))?;
    std::fs::rename(&tmp, path)
}

fn read(path: &std::path::Path, t: &Table) -> Option<KernelCosts> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    if v["format"] != FORMAT || v["tier"] != tier_key(t).as_str() {
        return None;
    }
    let shapes = |f: Family| -> Option<Vec<ShapeCost>> {
        let a = v[f.key()].as_array()?;
        let s: Option<Vec<ShapeCost>> = a
            .iter()
            .map(|s| {
                let num = |k: &str| s[k].as_f64().filter(|x| x.is_finite());
                Some(ShapeCost {
                    n: s["n"].as_u64()? as usize,
                    k: s["k"].as_u64()? as usize,
                    dense_us: num("dense_us")?,
                    sparse_fixed_us: num("sparse_fixed_us")?,
                    sparse_slope_us: num("sparse_slope_us")?,
                    r2: 1.0,
                })
            })
            .collect();
        s.filter(|s| !s.is_empty() && s.iter().all(|x| x.n > 0 && x.k > 0))
    };
    Some(KernelCosts {
        tier: tier_key(t),
        f32: shapes(Family::F32)?,
        int8: shapes(Family::Int8)?,
        file: Some(path.to_path_buf()),
    })
}

/// Deterministic values in [−1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Median of per-round times (µs) of each closure, run round-robin.
fn interleaved(fs: &mut [Box<dyn FnMut() + '_>]) -> Vec<f64> {
    for f in fs.iter_mut() {
        f();
    }
    let mut t = vec![Vec::with_capacity(ROUNDS); fs.len()];
    for _ in 0..ROUNDS {
        for (f, t) in fs.iter_mut().zip(t.iter_mut()) {
            let s = Instant::now();
            f();
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
    }
    t.into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// Least-squares line through `(x, y)`: `(intercept, slope, R²)`.
fn fit(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let syy: f64 = y.iter().map(|b| (b - my) * (b - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let r2 = if sxx > 0.0 && syy > 0.0 { sxy * sxy / (sxx * syy) } else { 0.0 };
    (my - slope * mx, slope, r2)
}

/// Keeps a deterministic `density` fraction of `w` (spread at random over rows and columns).
fn prune(w: &[f32], density: f64, seed: u64) -> Vec<f32> {
    let r = values(w.len(), seed);
    w.iter().zip(&r).map(|(&v, &u)| if ((u + 1.0) / 2.0) as f64 <= density { v } else { 0.0 }).collect()
}

fn calibrate(t: &Table) -> KernelCosts {
    let start = Instant::now();
    let m = TOKENS;
    let mut f32s = Vec::new();
    let mut int8s = Vec::new();
    for (i, &(n, k)) in SHAPES.iter().enumerate() {
        let a = values(m * k, 1 + i as u64);
        let w = values(n * k, 10 + i as u64);
        let epi = Epilogue::default();
        let mut c = vec![0f32; m * n];
        // f32: dense, then sparse at each density.
        let packed = PackedF32::from_rows(&w, n, k);
        let csrs: Vec<CsrF32> = DENSITIES
            .iter()
            .enumerate()
            .map(|(j, &d)| CsrF32::from_dense(&prune(&w, d, 100 + j as u64), n, k))
            .collect();
        let cp = std::cell::RefCell::new(&mut c);
        let mut fs: Vec<Box<dyn FnMut() + '_>> =
            vec![Box::new(|| gemm_f32_with(t, &a, k, m, &packed, &mut cp.borrow_mut()[..], n, &epi))];
        for csr in &csrs {
            fs.push(Box::new(|| spmm_f32_with(t, &a, k, m, csr, &mut cp.borrow_mut()[..], n, &epi, false)));
        }
        let times = interleaved(&mut fs);
        drop(fs);
        f32s.push(shape_cost(n, k, &times));
        // int8: the tier's layout and quantizer.
        let q: Vec<i8> = w.iter().map(|v| (v * 127.0).round() as i8).collect();
        let scales = vec![0.01f32; n];
        let mut qa = QuantRows::default();
        quantize_rows_with(t, &a, m, k, k, ActQuant::DynamicAsymmetric, &[], &mut qa);
        let packed = PackedI8::from_rows_for(t.i8_layout, &q, &scales, n, k);
        let csrs: Vec<CsrI8> = DENSITIES
            .iter()
            .enumerate()
            .map(|(j, &d)| {
                let keep = prune(&vec![1.0; n * k], d, 200 + j as u64);
                let qs: Vec<i8> = q.iter().zip(&keep).map(|(&v, &s)| if s != 0.0 { v } else { 0 }).collect();
                CsrI8::from_dense(&qs, &scales, n, k)
            })
            .collect();
        let (qa, packed) = (&qa, &packed);
        let mut fs: Vec<Box<dyn FnMut() + '_>> =
            vec![Box::new(|| gemm_u8s8_with(t, qa, packed, I8Out::F32 { c: &mut cp.borrow_mut()[..], ldc: n, epi }))];
        for csr in &csrs {
            fs.push(Box::new(|| spmm_u8s8_with(t, qa, csr, &mut cp.borrow_mut()[..], n, &epi, false)));
        }
        let times = interleaved(&mut fs);
        int8s.push(shape_cost(n, k, &times));
    }
    eprintln!("calibrated the {} kernel cost model in {:.1} s", t.isa, start.elapsed().as_secs_f64());
    KernelCosts { tier: tier_key(t), f32: f32s, int8: int8s, file: None }
}

fn shape_cost(n: usize, k: usize, times: &[f64]) -> ShapeCost {
    let (fixed, slope, r2) = fit(&DENSITIES, &times[1..]);
    ShapeCost { n, k, dense_us: times[0], sparse_fixed_us: fixed, sparse_slope_us: slope, r2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossover_and_nearest_shape() {
        let s = ShapeCost { n: 384, k: 384, dense_us: 100.0, sparse_fixed_us: 20.0, sparse_slope_us: 200.0, r2: 1.0 };
        assert!((s.crossover() - 0.4).abs() < 1e-12);
        let never = ShapeCost { sparse_fixed_us: 120.0, ..s };
        assert_eq!(never.crossover(), 0.0);
        let c = KernelCosts {
            tier: "x".into(),
            f32: vec![
                s,
                ShapeCost { n: 1536, k: 384, dense_us: 400.0, sparse_fixed_us: 40.0, sparse_slope_us: 600.0, r2: 1.0 },
            ],
            int8: vec![s],
            file: None,
        };
        let p = c.predict(Family::F32, 1400, 400, 0.5);
        assert!((p.crossover - 0.6).abs() < 1e-12, "nearest shape is 1536 × 384");
        let scale = 1400.0 * 400.0 / (1536.0 * 384.0);
        assert!((p.dense_us - 400.0 * scale).abs() < 1e-9 && (p.sparse_us - 340.0 * scale).abs() < 1e-9);
    }

    #[test]
    fn line_fit() {
        let (a, b, r2) = fit(&[0.1, 0.25, 0.4, 0.55], &[12.0, 15.0, 18.0, 21.0]);
        assert!((a - 10.0).abs() < 1e-9 && (b - 20.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-12);
        let (_, _, r2) = fit(&[0.1, 0.25, 0.4, 0.55], &[12.0, 40.0, 11.0, 13.0]);
        assert!(r2 < MIN_R2, "a disturbed calibration is not clean");
    }
}
