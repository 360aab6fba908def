//! Agreement between embeddings and between scores: cosine, Pearson, Spearman.

/// Cosine of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// Mean and minimum cosine between corresponding embeddings of `a` and `b`.
pub fn mean_min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "mean_min_cosine: {} against {} embeddings", a.len(), b.len());
    let cos: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
    (mean, cos.iter().copied().fold(f64::INFINITY, f64::min))
}

/// Pearson correlation of `x` and `y` (NaN when either is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: lengths differ");
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// Ranks from 1, ties given the mean of the ranks they span.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0f64; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman correlation: Pearson of the ranks (ties averaged), as scipy.stats.spearmanr.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0, 10.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // scipy.stats.pearsonr([1,2,3,4,5],[2,1,4,3,7]) = 0.824163383692134
        assert!((pearson(&x, &[2.0, 1.0, 4.0, 3.0, 7.0]) - 0.824163383692134).abs() < 1e-12);
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
        // scipy.stats.spearmanr([1,2,2,3,5],[1,3,2,2,4]) = 0.7631578947368421
        let s = spearman(&[1.0, 2.0, 2.0, 3.0, 5.0], &[1.0, 3.0, 2.0, 2.0, 4.0]);
        assert!((s - 0.7631578947368421).abs() < 1e-12, "{s}");
        let (mean, min) = mean_min_cosine(&[vec![1.0, 0.0], vec![0.0, 1.0]], &[vec![1.0, 0.0], vec![1.0, 1.0]]);
        assert!((mean - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-12 && (min - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
