//! Retrieval on a synthetic embedder: corpus bundles round-trip, a passage's
//! own text finds it first, and damaged bundles are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_inference::retrieval::{build_bundle, Index, Passage};
use cloister_inference::synthetic::tiny_embedder;

fn passage(i: usize, text: &str) -> Passage {
    Passage {
        id: format!("g{i}/s#1"),
        guideline: format!("g{i}"),
        title: format!("Guideline {i}"),
        section: "dosing".into(),
        doi: format!("10.1000/{i}"),
        year: Some(2024),
        text: text.into(),
    }
}

fn bundle() -> Vec<u8> {
    let (config, tokenizer, weights) = tiny_embedder().unwrap();
    let passages = vec![
        passage(1, "warfarin dose for stroke prevention"),
        passage(2, "insulin for kidney failure"),
        passage(3, "fluid for burn and sepsis"),
        passage(4, "what is the asthma dose"),
    ];
    let mut seen = Vec::new();
    build_bundle("test", passages, (&config, &tokenizer, weights), &mut |n| {
        seen.push(n)
    })
    .unwrap()
}

#[test]
fn a_passages_own_text_retrieves_it_first() {
    let index = Index::load(&bundle()).unwrap();
    assert_eq!(index.corpus().passages.len(), 4);
    for p in &index.corpus().passages {
        let hits = index.search(&p.text, 2, -1.0).unwrap();
        assert_eq!(hits[0].passage.id, p.id);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        assert!(hits[1].score < hits[0].score);
    }
    // Case and spacing do not matter to an uncased WordPiece embedder.
    let hits = index
        .search("  INSULIN for Kidney failure ", 1, -1.0)
        .unwrap();
    assert_eq!(hits[0].passage.id, "g2/s#1");
    // A threshold above every score returns nothing.
    assert!(index.search("burn", 4, 1.01).unwrap().is_empty());
}

#[test]
fn damaged_corpus_bundles_are_refused() {
    let good = bundle();
    assert!(Index::load(&good[..good.len() / 2]).is_err());
    assert!(Index::load(b"nothing").is_err());
    // Embeddings that do not match the passages.
    let mut files = std::collections::BTreeMap::new();
    let (config, tokenizer, weights) = tiny_embedder().unwrap();
    files.insert("config.json".to_owned(), config);
    files.insert("tokenizer.json".to_owned(), tokenizer);
    files.insert("model.safetensors".to_owned(), weights);
    files.insert(
        "corpus.json".to_owned(),
        serde_json::to_vec(&serde_json::json!({
            "source": "x", "dimension": 32,
            "passages": [passage(1, "a")], "embeddings": [],
        }))
        .unwrap(),
    );
    let Err(e) = Index::load(&cloister_inference::bundle::write_tar(&files).unwrap()) else {
        panic!("mismatched embeddings loaded");
    };
    assert!(e.to_string().contains("1 passages but 0 embeddings"), "{e}");
}
