//! Task metrics from labelled data: document similarity on the Lee corpus (Pearson against human
//! scores) and word similarity on WordSim-353 (Spearman), as shipped in gensim's test data.

use crate::metrics::{cosine, pearson, spearman};
use std::path::Path;

/// The Lee corpus: 50 news documents and the human similarity of every pair.
#[derive(Clone, Debug)]
pub struct Lee {
    /// The documents, in order.
    pub docs: Vec<String>,
    /// Human similarity in [0, 1] of documents `i < j`, row-major upper triangle.
    pub pairs: Vec<(usize, usize, f64)>,
}

/// WordSim-353: word pairs with a human similarity in [0, 10].
#[derive(Clone, Debug)]
pub struct WordSim {
    /// `(word, word, score)`.
    pub pairs: Vec<(String, String, f64)>,
}

/// Both data sets.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Document similarity.
    pub lee: Lee,
    /// Word similarity.
    pub wordsim: WordSim,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    std::fs::read(dir.join(name)).map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
}

impl TaskData {
    /// Reads `lee.cor` (latin-1, one document per line), `similarities0-1.txt` (a 50 × 50 matrix, upper
    /// triangle used) and `wordsim353.tsv` (`#` comments, then `word<TAB>word<TAB>score`) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        // latin-1: every byte is the code point of the same value.
        let docs: Vec<String> = read(dir, "lee.cor")?
            .split(|&b| b == b'\n')
            .map(|l| l.iter().map(|&b| b as char).collect::<String>().trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let sim = String::from_utf8(read(dir, "similarities0-1.txt")?)
            .map_err(|_| "similarities0-1.txt is not text".to_string())?;
        let matrix: Vec<Vec<f64>> = sim
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .map(|v| v.parse::<f64>().map_err(|_| format!("similarities0-1.txt: {v:?}")))
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        let n = docs.len();
        if matrix.len() != n || matrix.iter().any(|r| r.len() != n) {
            return Err(format!("similarities0-1.txt is not {n} × {n} (lee.cor has {n} documents)"));
        }
        let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).map(|(i, j)| (i, j, matrix[i][j])).collect();
        let ws =
            String::from_utf8(read(dir, "wordsim353.tsv")?).map_err(|_| "wordsim353.tsv is not UTF-8".to_string())?;
        let mut wpairs = Vec::new();
        for line in ws.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let score = f.get(2).and_then(|s| s.trim().parse::<f64>().ok());
            match (f.len(), score) {
                (3, Some(s)) => wpairs.push((f[0].trim().to_string(), f[1].trim().to_string(), s)),
                _ => return Err(format!("wordsim353.tsv: malformed line {line:?}")),
            }
        }
        Ok(TaskData { lee: Lee { docs, pairs }, wordsim: WordSim { pairs: wpairs } })
    }

    /// The distinct words of WordSim-353, sorted.
    pub fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = self.wordsim.pairs.iter().flat_map(|(a, b, _)| [a.clone(), b.clone()]).collect();
        w.sort();
        w.dedup();
        w
    }

    /// Pearson correlation of the embeddings' cosine similarity with the human scores over every
    /// document pair; `doc_emb` holds one embedding per document, in order.
    pub fn lee_pearson(&self, doc_emb: &[Vec<f32>]) -> f64 {
        let (pred, gold): (Vec<f64>, Vec<f64>) =
            self.lee.pairs.iter().map(|&(i, j, s)| (cosine(&doc_emb[i], &doc_emb[j]), s)).unzip();
        pearson(&pred, &gold)
    }

    /// Spearman correlation of the cosine similarity of the words' embeddings with the human scores;
    /// `word_emb` holds one embedding per word of [`TaskData::words`], in that order.
    pub fn wordsim_spearman(&self, word_emb: &[Vec<f32>]) -> f64 {
        let words = self.words();
        let at = |w: &str| words.binary_search_by(|x| x.as_str().cmp(w)).expect("word of the data set");
        let (pred, gold): (Vec<f64>, Vec<f64>) =
            self.wordsim.pairs.iter().map(|(a, b, s)| (cosine(&word_emb[at(a)], &word_emb[at(b)]), *s)).unzip();
        spearman(&pred, &gold)
    }
}

/// The 32 sentences of pare's PyTorch reference fixture (tests/fixtures/minilm): short and long
/// English, punctuation, an empty text, accents, CJK and an emoji. With the Lee documents they are the
/// fidelity texts of reports; none is in a calibration set.
pub fn fidelity_sentences() -> Vec<String> {
    serde_json::from_str(include_str!("../data/fidelity-sentences.json")).expect("embedded JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_scores_a_small_copy() {
        let d = std::env::temp_dir().join(format!("pare-tasks-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("lee.cor"), b"caf\xe9 one\nsecond doc\nthird\n").unwrap();
        std::fs::write(d.join("similarities0-1.txt"), "1 0.5 0.1\n0 1 0.3\n0 0 1\n").unwrap();
        std::fs::write(
            d.join("wordsim353.tsv"),
            "# header\n# Word 1\tWord 2\tHuman\ncat\tdog\t7.0\ncat\tcar\t1.0\ndog\tcar\t2.0\n",
        )
        .unwrap();
        let t = TaskData::load(&d).unwrap();
        assert_eq!(t.lee.docs[0], "café one");
        assert_eq!(t.lee.pairs, vec![(0, 1, 0.5), (0, 2, 0.1), (1, 2, 0.3)]);
        assert_eq!(t.words(), vec!["car", "cat", "dog"]);
        // Document embeddings whose cosines order the pairs as the humans do: correlation 1 in rank.
        let docs = vec![vec![1.0, 0.0], vec![0.8, 0.6], vec![0.0, 1.0]];
        assert!(t.lee_pearson(&docs) > 0.9);
        let words = vec![vec![0.0, 1.0], vec![1.0, 0.1], vec![1.0, 0.3]]; // car, cat, dog
        assert!((t.wordsim_spearman(&words) - 1.0).abs() < 1e-12);
        std::fs::write(d.join("similarities0-1.txt"), "1 0.5\n0 1\n").unwrap();
        assert!(TaskData::load(&d).unwrap_err().contains("not 3 × 3"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
