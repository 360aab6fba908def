//! SparseGPT (Frantar & Alistarh 2023): one-shot pruning with optimal-brain-surgeon weight updates.
//! Columns are visited left to right in blocks of [`BLOCK`]; removing a weight spreads its error over
//! the not-yet-visited columns of its row through the upper Cholesky factor of the damped inverse
//! Hessian `H = XᵀX` of the layer input. Masks are chosen per block and row (unstructured: the
//! smallest `w²/[H⁻¹]ᵢᵢ²` of each row within the block, the comparison group Wanda found best for
//! transformers; measured on MiniLM, +0.004–0.006 mean cosine over SparseGPT's block-wide choice) or
//! per group of M columns (N:M). [`refine`] then solves the least-squares problem of the final mask
//! exactly, which SparseGPT's one-pass updates only approximate.

use crate::error::{CompressError, Result};
use crate::linalg::inverse_cholesky_upper;

/// Columns per block of the lazy updates and of the unstructured mask selection.
pub const BLOCK: usize = 128;

/// Dampening added to the Hessian's diagonal, relative to its mean.
pub const PERCDAMP: f64 = 0.01;

/// Which weights go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mask {
    /// This fraction of every block, wherever the score is smallest.
    Unstructured(f64),
    /// N kept of every M consecutive inputs.
    NM(usize, usize),
}

/// The factor SparseGPT works with, computed once per layer input (shared by query, key and value).
pub struct Prepared {
    /// Upper Cholesky factor of `(H + λI)⁻¹`, `k × k` row-major.
    pub hinv: Vec<f64>,
    /// Inputs that never fire (zero Hessian diagonal): their weights are set to zero.
    pub dead: Vec<bool>,
    /// Inputs.
    pub k: usize,
}

/// Mean of the diagonal of `h` (`k × k`).
fn diag_mean(h: &[f64], k: usize) -> f64 {
    (0..k).map(|i| h[i * k + i]).sum::<f64>() / k.max(1) as f64
}

/// Makes the Hessian `h` (`k × k`) safely invertible: a zero diagonal entry (an input that never
/// fires) becomes 1, and [`PERCDAMP`] of the mean diagonal is added to every diagonal entry.
pub fn dampen(h: &mut [f64], k: usize) {
    dampen_by(h, k, PERCDAMP);
}

fn dampen_by(h: &mut [f64], k: usize, frac: f64) {
    let mean = diag_mean(h, k);
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            h[i * k + i] = 1.0;
        }
        h[i * k + i] += frac * mean;
    }
}

/// Dampens `h` and factors its inverse. A Hessian that is still not positive definite after
/// [`PERCDAMP`] (rounding in a rank-deficient `XᵀX`, inputs that are copies of each other) is
/// dampened ten times more, up to the mean diagonal itself, before it counts as unusable.
pub fn prepare(h: &[f64], k: usize) -> Result<Prepared> {
    let dead: Vec<bool> = (0..k).map(|i| h[i * k + i] == 0.0).collect();
    let mut base = h.to_vec();
    // Dead inputs first get a unit diagonal, so they count as 1 in the mean the damping scales with.
    for i in (0..k).filter(|&i| dead[i]) {
        base[i * k + i] = 1.0;
    }
    let mut frac = PERCDAMP;
    loop {
        let mut h = base.clone();
        dampen_by(&mut h, k, frac);
        match inverse_cholesky_upper(&h, k) {
            Ok(hinv) => return Ok(Prepared { hinv, dead, k }),
            Err(e) if frac >= 1.0 => return Err(e),
            Err(_) => frac *= 10.0,
        }
    }
}

/// Prunes `w` (`n × k`, row-major) in place.
pub fn sparsegpt(w: &mut [f32], n: usize, k: usize, p: &Prepared, mask: Mask) -> Result<()> {
    assert_eq!(p.k, k);
    let block = match mask {
        Mask::NM(_, m) => {
            if !k.is_multiple_of(m) {
                return Err(CompressError::Invalid(format!(
                    "N:M with M={m} needs the {k} inputs to be a multiple of M"
                )));
            }
            (BLOCK / m).max(1) * m
        }
        Mask::Unstructured(_) => BLOCK,
    };
    let hinv = &p.hinv;
    let mut wd: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    for (i, _) in p.dead.iter().enumerate().filter(|(_, d)| **d) {
        for r in 0..n {
            wd[r * k + i] = 0.0;
        }
    }
    let mut i1 = 0;
    while i1 < k {
        let i2 = (i1 + block).min(k);
        let cnt = i2 - i1;
        let mut w1 = vec![0f64; n * cnt];
        for r in 0..n {
            w1[r * cnt..(r + 1) * cnt].copy_from_slice(&wd[r * k + i1..r * k + i2]);
        }
        let mut pruned = vec![false; n * cnt];
        if let Mask::Unstructured(s) = mask {
            let per_row = (s * cnt as f64).floor() as usize;
            for r in 0..n {
                let mut score: Vec<(f64, usize)> = (0..cnt)
                    .map(|c| {
                        let d = hinv[(i1 + c) * k + i1 + c];
                        let v = w1[r * cnt + c];
                        (v * v / (d * d), c)
                    })
                    .collect();
                if per_row > 0 {
                    score.select_nth_unstable_by(per_row - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for &(_, c) in &score[..per_row] {
                        pruned[r * cnt + c] = true;
                    }
                }
            }
        }
        let mut err = vec![0f64; n * cnt];
        for i in 0..cnt {
            let col = i1 + i;
            let d = hinv[col * k + col];
            if let Mask::NM(keep, m) = mask
                && i % m == 0
            {
                for r in 0..n {
                    let mut g: Vec<(f64, usize)> = (0..m)
                        .map(|t| {
                            let dd = hinv[(col + t) * k + col + t];
                            let v = w1[r * cnt + i + t];
                            (v * v / (dd * dd), t)
                        })
                        .collect();
                    g.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for &(_, t) in &g[..m - keep] {
                        pruned[r * cnt + i + t] = true;
                    }
                }
            }
            let hrow = &hinv[col * k + i1..col * k + i2];
            for r in 0..n {
                let wv = w1[r * cnt + i];
                let q = if pruned[r * cnt + i] { 0.0 } else { wv };
                let e = (wv - q) / d;
                err[r * cnt + i] = e;
                let row = &mut w1[r * cnt..(r + 1) * cnt];
                row[i] = q;
                if e != 0.0 {
                    for (x, hv) in row[i + 1..].iter_mut().zip(&hrow[i + 1..]) {
                        *x -= e * hv;
                    }
                }
            }
        }
        // The block's final values, then its error spread over the columns to its right.
        for r in 0..n {
            wd[r * k + i1..r * k + i2].copy_from_slice(&w1[r * cnt..(r + 1) * cnt]);
        }
        spread_right(&mut wd, &err, hinv, n, k, i1..i2);
        i1 = i2;
    }
    for (o, v) in w.iter_mut().zip(&wd) {
        *o = *v as f32;
    }
    // Pruned entries are exactly zero; reconstruction never revives them (their columns were visited).
    Ok(())
}

/// The lazy update of a block of columns `cols` of `wd` (`n × k`): each row's errors `err`
/// (`n × cols.len()`, already divided by the inverse-Hessian diagonal) spread over the columns to the
/// block's right through the upper factor `hinv`.
pub fn spread_right(wd: &mut [f64], err: &[f64], hinv: &[f64], n: usize, k: usize, cols: std::ops::Range<usize>) {
    let (i1, i2) = (cols.start, cols.end);
    let cnt = i2 - i1;
    for r in 0..n {
        let right = &mut wd[r * k + i2..(r + 1) * k];
        for c in 0..cnt {
            let e = err[r * cnt + c];
            if e != 0.0 {
                let hrow = &hinv[(i1 + c) * k + i2..(i1 + c + 1) * k];
                for (x, hv) in right.iter_mut().zip(hrow) {
                    *x -= e * hv;
                }
            }
        }
    }
}

/// Least-squares refinement of a pruned weight: for every row, the kept weights that minimise
/// `‖X(w′ − w)‖² + λ‖w′ − w‖²` (the damped Hessian `hd = H + λI`), found by conjugate gradient on all
/// rows at once — one GEMM with `hd` per iteration — starting from `w` (SparseGPT's answer). `orig` is
/// the weight before pruning; zeros of `w` stay zero.
pub fn refine(w: &mut [f32], orig: &[f32], n: usize, k: usize, hd: &[f32], iters: usize) {
    use pare_kernels::{Epilogue, PackedF32, gemm_f32};
    let hp = PackedF32::from_rows(hd, k, k);
    let mask: Vec<f32> = w.iter().map(|&v| if v != 0.0 { 1.0 } else { 0.0 }).collect();
    let mul = |v: &[f32], out: &mut [f32]| {
        gemm_f32(v, k, n, &hp, out, k, &Epilogue::default());
        for (o, m) in out.iter_mut().zip(&mask) {
            *o *= m;
        }
    };
    let mut b = vec![0f32; n * k];
    mul(orig, &mut b);
    let mut ax = vec![0f32; n * k];
    mul(w, &mut ax);
    let mut r: Vec<f32> = b.iter().zip(&ax).map(|(b, a)| b - a).collect();
    let mut p = r.clone();
    let dots = |a: &[f32], b: &[f32]| -> Vec<f64> {
        a.chunks_exact(k)
            .zip(b.chunks_exact(k))
            .map(|(x, y)| x.iter().zip(y).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum())
            .collect()
    };
    let mut rs = dots(&r, &r);
    let mut ap = vec![0f32; n * k];
    for _ in 0..iters {
        mul(&p, &mut ap);
        let pap = dots(&p, &ap);
        for row in 0..n {
            if rs[row] <= 1e-30 || pap[row] <= 0.0 {
                continue;
            }
            let alpha = (rs[row] / pap[row]) as f32;
            let s = row * k..(row + 1) * k;
            for ((x, rr), (pp, aa)) in
                w[s.clone()].iter_mut().zip(r[s.clone()].iter_mut()).zip(p[s.clone()].iter().zip(&ap[s]))
            {
                *x += alpha * pp;
                *rr -= alpha * aa;
            }
        }
        let rs_new = dots(&r, &r);
        for row in 0..n {
            let beta = if rs[row] > 1e-30 { (rs_new[row] / rs[row]) as f32 } else { 0.0 };
            let s = row * k..(row + 1) * k;
            for (pp, rr) in p[s.clone()].iter_mut().zip(&r[s]) {
                *pp = rr + beta * *pp;
            }
        }
        rs = rs_new;
    }
    for (x, m) in w.iter_mut().zip(&mask) {
        *x *= m;
    }
}

/// `H + λI` in f32, the damping of [`prepare`].
pub fn damped(h: &[f64], k: usize) -> Vec<f32> {
    // In f32, as the refinement runs: the matrix rounded first, then the damping added.
    let add = (PERCDAMP * diag_mean(h, k)) as f32;
    let mut out: Vec<f32> = h.iter().map(|&v| v as f32).collect();
    for i in 0..k {
        if h[i * k + i] == 0.0 {
            out[i * k + i] = 1.0;
        }
        out[i * k + i] += add;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indefinite_hessian_is_dampened_until_it_factors() {
        // Eigenvalues 3 and −0.5 (mean diagonal 1.25): 1% damping leaves it indefinite, 100% does not.
        let h = [1.25, 1.75, 1.75, 1.25];
        let p = prepare(&h, 2).unwrap();
        assert!(p.hinv.iter().all(|v| v.is_finite()));
        assert!(p.hinv[0] > 0.0 && p.hinv[3] > 0.0);
        // Beyond what damping by the mean diagonal repairs: an error, not a panic.
        assert!(prepare(&[1.0, 5.0, 5.0, 1.0], 2).is_err());
    }
}
