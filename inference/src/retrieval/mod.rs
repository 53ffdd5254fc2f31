//! Grounding: a sealed corpus of guideline passages, embedded with a
//! sentence-embedding model (all-MiniLM-L6-v2 by default) run by candle, and
//! searched by cosine similarity for the passages a question rests on.
//!
//! A corpus bundle is an uncompressed tar of `corpus.json` (passages and
//! their embeddings, computed when the data owner built it) and the
//! embedder's `config.json`, `tokenizer.json` and `model.safetensors` (to
//! embed queries the same way). `cloister corpus build` writes one.

mod chunk;
mod embedder;

pub use chunk::{guideline_passages, GuidelineSource};
pub use embedder::Embedder;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{read_tar, write_tar};
use crate::EngineError;

/// The members of a corpus bundle.
pub const CORPUS_FILES: [&str; 4] = [
    "corpus.json",
    "config.json",
    "tokenizer.json",
    "model.safetensors",
];

/// A passage an answer can cite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// Stable identifier: guideline id, section file, passage number.
    pub id: String,
    /// The guideline's identifier in its registry.
    pub guideline: String,
    /// The guideline's title.
    pub title: String,
    /// The section (file) and heading the passage sits under.
    pub section: String,
    /// The guideline's DOI, where it has one.
    #[serde(default)]
    pub doi: String,
    /// Publication year, where known.
    #[serde(default)]
    pub year: Option<u32>,
    /// The passage.
    pub text: String,
}

/// The passages and their embeddings, as `corpus.json` holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Corpus {
    /// What the passages were drawn from, e.g. `open-medicine==0.12.0`.
    pub source: String,
    /// Embedding width.
    pub dimension: usize,
    /// The passages.
    pub passages: Vec<Passage>,
    /// One unit-length embedding per passage.
    pub embeddings: Vec<Vec<f32>>,
}

/// A retrieved passage and how close it is to the question (cosine, −1..1).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    /// The passage.
    pub passage: &'a Passage,
    /// Cosine similarity to the question.
    pub score: f32,
}

/// A corpus ready to search.
pub struct Index {
    corpus: Corpus,
    embedder: Embedder,
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::Failed(format!("corpus bundle: {}", message.into()))
}

impl Index {
    /// Loads an unsealed corpus bundle.
    pub fn load(bundle: &[u8]) -> Result<Self, EngineError> {
        Self::load_bundle(bundle).map_err(EngineError::at_load)
    }

    fn load_bundle(bundle: &[u8]) -> Result<Self, EngineError> {
        let mut files = read_tar(bundle, &CORPUS_FILES)?;
        let mut take = |name: &str| {
            files
                .remove(name)
                .ok_or_else(|| bad(format!("{name} is missing")))
        };
        let corpus: Corpus = serde_json::from_slice(&take("corpus.json")?)
            .map_err(|e| bad(format!("corpus.json: {e}")))?;
        let embedder = Embedder::load(
            &take("config.json")?,
            &take("tokenizer.json")?,
            &take("model.safetensors")?,
        )?;
        if corpus.passages.len() != corpus.embeddings.len() {
            return Err(bad(format!(
                "{} passages but {} embeddings",
                corpus.passages.len(),
                corpus.embeddings.len()
            )));
        }
        if corpus.dimension != embedder.dimension()
            || corpus
                .embeddings
                .iter()
                .any(|e| e.len() != corpus.dimension)
        {
            return Err(bad(format!(
                "the embeddings are not all {} wide, the embedder's width",
                embedder.dimension()
            )));
        }
        Ok(Self { corpus, embedder })
    }

    /// The corpus.
    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// The `k` passages closest to `question` with a similarity of at least
    /// `min_score`, best first.
    pub fn search(
        &self,
        question: &str,
        k: usize,
        min_score: f32,
    ) -> Result<Vec<Hit<'_>>, EngineError> {
        let query = self
            .embedder
            .embed(&[question])?
            .pop()
            .ok_or_else(|| EngineError::Failed("the embedder returned nothing".into()))?;
        let mut hits: Vec<Hit<'_>> = self
            .corpus
            .passages
            .iter()
            .zip(&self.corpus.embeddings)
            .map(|(passage, e)| Hit {
                passage,
                score: e.iter().zip(&query).map(|(a, b)| a * b).sum(),
            })
            .filter(|h| h.score >= min_score)
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }
}

/// Embeds `passages` and writes a corpus bundle with the embedder's files.
/// `progress` is called after each batch with the number embedded so far.
pub fn build_bundle(
    source: &str,
    passages: Vec<Passage>,
    embedder_files: (&[u8], &[u8], Vec<u8>),
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<u8>, EngineError> {
    let (config, tokenizer, weights) = embedder_files;
    let embedder = Embedder::load(config, tokenizer, &weights)?;
    let mut embeddings = Vec::with_capacity(passages.len());
    for batch in passages.chunks(16) {
        let texts: Vec<&str> = batch.iter().map(|p| p.text.as_str()).collect();
        embeddings.extend(embedder.embed(&texts)?);
        progress(embeddings.len());
    }
    let corpus = Corpus {
        source: source.to_owned(),
        dimension: embedder.dimension(),
        passages,
        embeddings,
    };
    let json = serde_json::to_vec(&corpus).map_err(|e| bad(format!("corpus.json: {e}")))?;
    let files: BTreeMap<String, Vec<u8>> = [
        ("corpus.json".to_owned(), json),
        ("config.json".to_owned(), config.to_vec()),
        ("tokenizer.json".to_owned(), tokenizer.to_vec()),
        ("model.safetensors".to_owned(), weights),
    ]
    .into_iter()
    .collect();
    write_tar(&files)
}
