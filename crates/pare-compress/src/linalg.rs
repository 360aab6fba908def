//! Small dense linear algebra in f64 for the second-order pruning methods: Cholesky factorisation and
//! the inverse of a symmetric positive definite matrix. Row-major `n × n`; inner loops are dot products
//! and axpys over contiguous rows, run by the dispatched f64 kernels.

use crate::error::{CompressError, Result};

/// In place: the lower Cholesky factor `L` of `a` (`a = L·Lᵀ`), upper triangle zeroed.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    assert_eq!(a.len(), n * n);
    for j in 0..n {
        let (upto, rest) = a.split_at_mut((j + 1) * n);
        let row_j = &mut upto[j * n..];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d.is_nan() || d <= 0.0 {
            return Err(CompressError::Invalid(format!(
                "Cholesky: the matrix is not positive definite at column {j} (pivot {d:.3e})"
            )));
        }
        let ljj = d.sqrt();
        row_j[j] = ljj;
        row_j[j + 1..].fill(0.0);
        let row_j = &upto[j * n..];
        // Rows below j: L[i][j] = (a[i][j] − L[i][..j]·L[j][..j]) / L[j][j].
        for row_i in rest.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], &row_j[..j])) / ljj;
        }
    }
    Ok(())
}

use pare_kernels::blas::{axpy_f64, dot_f64 as dot};

/// `L⁻¹` of a lower triangular `l` with positive diagonal (lower), row by row:
/// `M[i][..i] = −(Σ_k L[i][k]·M[k][..]) / L[i][i]`, as axpys on rows.
fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut m = vec![0f64; n * n];
    let mut row = vec![0f64; n];
    for i in 0..n {
        row[..i].fill(0.0);
        for k in 0..i {
            let c = l[i * n + k];
            if c != 0.0 {
                axpy_f64(&mut row[..=k], c, &m[k * n..k * n + k + 1]);
            }
        }
        let d = l[i * n + i];
        for j in 0..i {
            m[i * n + j] = -row[j] / d;
        }
        m[i * n + i] = 1.0 / d;
    }
    m
}

/// The inverse of the symmetric positive definite `a` through its Cholesky factor.
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = a.to_vec();
    cholesky(&mut l, n)?;
    let m = lower_inverse(&l, n);
    // A⁻¹ = Mᵀ·M: entry (i, j) is the dot product of columns i and j of M; use Mᵀ rows for contiguity.
    let mut mt = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            mt[j * n + i] = m[i * n + j];
        }
    }
    let mut inv = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            // Column i of M is zero above row i, so the sum starts at max(i, j) = i.
            let v = dot(&mt[i * n + i..(i + 1) * n], &mt[j * n + i..(j + 1) * n]);
            inv[i * n + j] = v;
            inv[j * n + i] = v;
        }
    }
    Ok(inv)
}

/// The upper Cholesky factor `U` of `a⁻¹` (`a⁻¹ = Uᵀ·U`) for a symmetric positive definite `a`, at half
/// the cost of inverting and factoring again. With `J` the order reversal and `J·a·J = K·Kᵀ` (K lower),
/// `a = R·Rᵀ` with `R = J·K·J` upper, so `a⁻¹ = (R⁻¹)ᵀ·R⁻¹` and `U = R⁻¹ = J·K⁻¹·J`.
pub fn inverse_cholesky_upper(a: &[f64], n: usize) -> Result<Vec<f64>> {
    assert_eq!(a.len(), n * n);
    let rev = |i: usize| n - 1 - i;
    let mut b: Vec<f64> = (0..n * n).map(|x| a[rev(x / n) * n + rev(x % n)]).collect();
    cholesky(&mut b, n)?;
    let m = lower_inverse(&b, n);
    Ok((0..n * n).map(|x| m[rev(x / n) * n + rev(x % n)]).collect())
}

/// The upper Cholesky factor `U` of `a` (`a = Uᵀ·U`), row-major.
pub fn cholesky_upper(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = a.to_vec();
    cholesky(&mut l, n)?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            u[j * n + i] = l[i * n + j];
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> Vec<f64> {
        // B·Bᵀ + n·I from a deterministic B.
        let b: Vec<f64> = (0..n * n).map(|i| ((i * 7919 % 101) as f64 - 50.0) / 50.0).collect();
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>() + if i == j { n as f64 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn factor_and_inverse() {
        for n in [1, 2, 5, 17, 64] {
            let a = spd(n);
            let mut l = a.clone();
            cholesky(&mut l, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..n).map(|k| l[i * n + k] * l[j * n + k]).sum();
                    assert!((v - a[i * n + j]).abs() < 1e-9 * a[i * n + i].abs(), "LLᵀ n={n}");
                }
            }
            let inv = spd_inverse(&a, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                    assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9, "A·A⁻¹ n={n}");
                }
            }
            let iu = inverse_cholesky_upper(&a, n).unwrap();
            let iu_ref = cholesky_upper(&inv, n).unwrap();
            for (x, y) in iu.iter().zip(&iu_ref) {
                assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "inverse_cholesky_upper n={n}");
            }
            let u = cholesky_upper(&a, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..n).map(|k| u[k * n + i] * u[k * n + j]).sum();
                    assert!((v - a[i * n + j]).abs() < 1e-9 * a[i * n + i].abs(), "UᵀU n={n}");
                }
            }
        }
        let mut not_pd = vec![1.0, 2.0, 2.0, 1.0];
        assert!(cholesky(&mut not_pd, 2).is_err());
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore = "timing, run by hand"]
    fn inverse_1536() {
        let n = 1536;
        let a: Vec<f64> =
            (0..n * n).map(|i| if i / n == i % n { n as f64 } else { ((i * 31 % 97) as f64 - 48.0) / 97.0 }).collect();
        let t = std::time::Instant::now();
        let inv = super::spd_inverse(&a, n).unwrap();
        let u = super::cholesky_upper(&inv, n).unwrap();
        eprintln!("inverse + upper Cholesky of {n}×{n}: {:.2} s ({})", t.elapsed().as_secs_f64(), u[0]);
        let t = std::time::Instant::now();
        let u2 = super::inverse_cholesky_upper(&a, n).unwrap();
        eprintln!("inverse_cholesky_upper of {n}×{n}: {:.2} s ({})", t.elapsed().as_secs_f64(), u2[0]);
    }
}
