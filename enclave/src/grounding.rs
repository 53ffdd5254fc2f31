//! Clinical tasks and grounding: what the enclave adds to a chat before the
//! model sees it.
//!
//! Each task has a system prompt (`cloister_inference::tasks`).
//! `guideline_qa` and `prior_auth` retrieve guideline passages from the
//! sealed corpus and quote them, numbered `[S1]`…, so the answer can cite
//! them and the `citations` policy module can check it did; `summarize`
//! (when given one) and `prior_auth` quote the patient record read from the
//! request's FHIR bundle. `chat` adds nothing.

use cloister_inference::retrieval::Index;
use cloister_inference::tasks;
use cloister_inference::EngineError;
use cloister_policy::abi::Source;
use serde::Deserialize;

/// `[retrieval]` in enclave.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetrievalConfig {
    /// The sealed bundle (`[[sealed]]` name) holding the corpus.
    pub(crate) bundle: String,
    /// Passages quoted per question.
    #[serde(default = "default_top_k")]
    pub(crate) top_k: usize,
    /// Passages less similar than this (cosine) are not quoted.
    #[serde(default = "default_min_score")]
    pub(crate) min_score: f32,
    /// Tasks that retrieve.
    #[serde(default = "default_tasks")]
    pub(crate) tasks: Vec<String>,
}

fn default_top_k() -> usize {
    3
}
fn default_min_score() -> f32 {
    0.2
}
fn default_tasks() -> Vec<String> {
    vec!["guideline_qa".into(), "prior_auth".into()]
}

/// A retrieved passage as the response lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Citation {
    pub(crate) id: String,
    pub(crate) passage: String,
    pub(crate) title: String,
    pub(crate) section: String,
    pub(crate) doi: String,
    pub(crate) url: Option<String>,
    pub(crate) score: f32,
    /// Whether the answer cites it.
    pub(crate) cited: bool,
}

/// The corpus and how to use it.
pub(crate) struct Grounding {
    index: Index,
    config: RetrievalConfig,
}

/// What grounding added to a query.
#[derive(Debug, Default, Clone)]
pub(crate) struct Grounded {
    /// The sources, as the policy modules see them.
    pub(crate) sources: Vec<Source>,
    /// The sources, as the response lists them.
    pub(crate) citations: Vec<Citation>,
    /// The passages as the prompt quotes them.
    pub(crate) passages_text: Vec<String>,
}

impl Grounding {
    pub(crate) fn new(index: Index, config: RetrievalConfig) -> Self {
        tracing::info!(
            passages = index.corpus().passages.len(),
            source = %index.corpus().source,
            top_k = config.top_k,
            "guideline corpus loaded"
        );
        Self { index, config }
    }

    pub(crate) fn passages(&self) -> usize {
        self.index.corpus().passages.len()
    }

    /// The passages `question` rests on, for `task`.
    pub(crate) fn retrieve(&self, task: &str, question: &str) -> Result<Grounded, EngineError> {
        if !self.config.tasks.iter().any(|t| t == task) || question.trim().is_empty() {
            return Ok(Grounded::default());
        }
        let hits = self
            .index
            .search(question, self.config.top_k, self.config.min_score)?;
        let mut grounded = Grounded::default();
        for (i, hit) in hits.iter().enumerate() {
            let id = format!("S{}", i + 1);
            let p = hit.passage;
            grounded.sources.push(Source {
                id: id.clone(),
                title: p.title.clone(),
                section: p.section.clone(),
                doi: (!p.doi.is_empty()).then(|| p.doi.clone()),
            });
            grounded.citations.push(Citation {
                id,
                passage: p.id.clone(),
                title: p.title.clone(),
                section: p.section.clone(),
                doi: p.doi.clone(),
                url: (!p.doi.is_empty()).then(|| format!("https://doi.org/{}", p.doi)),
                score: hit.score,
                cited: false,
            });
        }
        // The passage text goes only into the prompt.
        grounded.passages_text = hits
            .iter()
            .zip(&grounded.citations)
            .map(|(h, c)| tasks::quote(&c.id, h.passage))
            .collect();
        Ok(grounded)
    }
}

impl Grounded {
    /// Marks the citations the answer makes.
    pub(crate) fn mark_cited(&mut self, answer: &str) {
        let cited = cited_ids(answer);
        for c in &mut self.citations {
            c.cited = cited.contains(&c.id.as_str());
        }
    }
}

/// The IDs an answer cites: `[S1]`, `[S1, S3]` (the `citations` module's
/// marker syntax).
fn cited_ids(answer: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find(']') else { break };
        let inside = after.get(..close).unwrap_or_default();
        let parts: Vec<&str> = inside.split(',').map(str::trim).collect();
        let is_marker = parts.iter().all(|p| {
            let letters = p.trim_end_matches(|c: char| c.is_ascii_digit());
            !letters.is_empty()
                && letters.len() < p.len()
                && letters.chars().all(|c| c.is_ascii_alphabetic())
        });
        if is_marker {
            ids.extend(parts);
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    ids
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn markers_are_read_as_the_citations_module_reads_them() {
        assert_eq!(
            cited_ids("Use a DOAC [S1]. Dose by CrCl [S2, S3]."),
            vec!["S1", "S2", "S3"]
        );
        assert!(cited_ids("[sic] and [1-2] are prose").is_empty());
        assert!(cited_ids("unclosed [S1").is_empty());
    }
}
