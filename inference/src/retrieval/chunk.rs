//! Cutting guideline documents into passages small enough to embed whole
//! (all-MiniLM-L6-v2 reads 256 word pieces) and to quote in a prompt.
//!
//! The source layout is open-medicine's: `registry.json` (a list of
//! guidelines with `id`, `title`, `doi`, `year`, `sections`) and
//! `content/<id>/<section>.md`. A passage is the text under one `##` or
//! `###` heading, split at paragraphs when longer than `MAX_WORDS`.

use std::path::Path;

use serde::Deserialize;

use super::Passage;
use crate::EngineError;

/// Most words in one passage.
const MAX_WORDS: usize = 150;
/// Passages shorter than this join the next one under the same heading.
const MIN_WORDS: usize = 12;

/// One guideline in the registry.
#[derive(Debug, Clone, Deserialize)]
pub struct GuidelineSource {
    /// Identifier, also the content directory's name.
    pub id: String,
    /// Title.
    pub title: String,
    /// DOI.
    #[serde(default)]
    pub doi: Option<String>,
    /// Year.
    #[serde(default)]
    pub year: Option<u32>,
    /// Section files, without `.md`.
    #[serde(default)]
    pub sections: Vec<String>,
}

fn io(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Failed(format!("{}: {e}", path.display()))
}

/// The passages of every guideline under `root` (holding `registry.json`
/// and `content/`), in registry order.
pub fn guideline_passages(root: &Path) -> Result<Vec<Passage>, EngineError> {
    read_guidelines(root).map_err(EngineError::at_load)
}

fn read_guidelines(root: &Path) -> Result<Vec<Passage>, EngineError> {
    let registry_path = root.join("registry.json");
    let registry: Vec<GuidelineSource> =
        serde_json::from_slice(&std::fs::read(&registry_path).map_err(|e| io(&registry_path, e))?)
            .map_err(|e| EngineError::Failed(format!("{}: {e}", registry_path.display())))?;
    let mut passages = Vec::new();
    for guideline in &registry {
        for section in &guideline.sections {
            let path = root
                .join("content")
                .join(&guideline.id)
                .join(format!("{section}.md"));
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            passages.extend(section_passages(guideline, section, &text));
        }
    }
    Ok(passages)
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The passages of one section file.
fn section_passages(guideline: &GuidelineSource, section: &str, markdown: &str) -> Vec<Passage> {
    let section_name = section.replace('_', " ");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut heading = String::new();
    let mut parent = String::new();
    let mut current = String::new();
    let flush = |heading: &str, current: &mut String, out: &mut Vec<(String, String)>| {
        let text = current.trim().to_owned();
        current.clear();
        if text.is_empty() {
            return;
        }
        // Split long text at paragraph (blank-line) boundaries.
        let mut piece = String::new();
        for paragraph in text.split("\n\n") {
            if !piece.is_empty() && words(&piece) + words(paragraph) > MAX_WORDS {
                out.push((heading.to_owned(), piece.trim().to_owned()));
                piece.clear();
            }
            piece.push_str(paragraph);
            piece.push_str("\n\n");
        }
        if !piece.trim().is_empty() {
            out.push((heading.to_owned(), piece.trim().to_owned()));
        }
    };
    for line in markdown.lines() {
        let level = line.chars().take_while(|&c| c == '#').count();
        if (2..=3).contains(&level) && line.chars().nth(level) == Some(' ') {
            if words(&current) >= MIN_WORDS {
                flush(&heading, &mut current, &mut out);
            }
            let title = line.get(level + 1..).unwrap_or_default().trim().to_owned();
            if level == 2 {
                parent.clone_from(&title);
                heading = title;
            } else {
                heading = format!("{parent} › {title}");
            }
            continue;
        }
        if level == 1 {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&heading, &mut current, &mut out);
    // A passage over MAX_WORDS with no paragraph breaks is cut at words.
    let mut cut = Vec::new();
    for (heading, text) in out {
        let all: Vec<&str> = text.split_whitespace().collect();
        if all.len() <= MAX_WORDS * 2 {
            cut.push((heading, text));
        } else {
            for chunk in all.chunks(MAX_WORDS) {
                cut.push((heading.clone(), chunk.join(" ")));
            }
        }
    }
    cut.into_iter()
        .enumerate()
        .map(|(i, (heading, text))| Passage {
            id: format!("{}/{section}#{}", guideline.id, i + 1),
            guideline: guideline.id.clone(),
            title: guideline.title.clone(),
            section: if heading.is_empty() {
                section_name.clone()
            } else {
                format!("{section_name}: {heading}")
            },
            doi: guideline.doi.clone().unwrap_or_default(),
            year: guideline.year,
            text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn passages_follow_headings_and_stay_short() {
        let g = GuidelineSource {
            id: "g1".into(),
            title: "A Guideline".into(),
            doi: Some("10.1/x".into()),
            year: Some(2023),
            sections: vec!["dosing".into()],
        };
        let long_para = "word ".repeat(100);
        let md = format!(
            "# Title\n\n## Dosing\n\nIntro text that is long enough to stand on its own as a passage here.\n\n### Renal\n\n{long_para}\n\n{long_para}\n\n## Tiny\n\nshort\n"
        );
        let p = section_passages(&g, "dosing", &md);
        assert_eq!(p[0].section, "dosing: Dosing");
        assert!(p[0].text.starts_with("Intro text"));
        assert_eq!(p[1].section, "dosing: Dosing › Renal");
        assert!(p.iter().all(|x| words(&x.text) <= MAX_WORDS * 2));
        assert_eq!(p.iter().filter(|x| x.section.contains("Renal")).count(), 2);
        assert_eq!(p.last().unwrap().text, "short");
        assert_eq!(p[0].id, "g1/dosing#1");
        assert_eq!(p[0].doi, "10.1/x");
    }
}
