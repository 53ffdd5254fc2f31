//! The clinical tasks' prompts: what a task puts before the chat.
//!
//! They live here, beside the engines, rather than in the enclave so that a
//! benchmark or an offline evaluation can build exactly the prompt the
//! enclave builds and compare answers token for token. Retrieval, citations
//! and policy stay in the enclave.

use crate::retrieval::Passage;
use crate::ChatMessage;

/// The tasks the API knows.
pub const TASKS: [&str; 4] = ["chat", "guideline_qa", "summarize", "prior_auth"];

/// A retrieved passage as the prompt quotes it, under the ID (`S1`…) the
/// answer is asked to cite it by.
pub fn quote(id: &str, passage: &Passage) -> String {
    format!(
        "[{id}] {} — {}\n{}",
        passage.title, passage.section, passage.text
    )
}

/// The system prompt for `task`, with the patient record and the quoted
/// sources; `None` for a task that adds none (`chat`, or an unknown task).
pub fn system_prompt(task: &str, record: Option<&str>, passages: &[String]) -> Option<String> {
    let mut prompt = match task {
        "guideline_qa" => "You are a clinical decision-support assistant. Answer the clinician's question using only the guideline sources below. After each statement, cite the source it rests on by its ID in brackets, for example [S1]. If the sources do not answer the question, say so.".to_owned(),
        "summarize" if record.is_some() => "You are a clinical documentation assistant. Summarise the patient's history from the record below for a clinician: active problems, medications, recent results, and anything needing follow-up. Use only the record; do not invent findings.".to_owned(),
        // Without a record, what to summarise is in the chat (a visit
        // transcript, a note).
        "summarize" => "You are a clinical documentation assistant. Summarise the text you are given for a clinician: problems, medications, results and follow-up. Use only that text; do not invent findings.".to_owned(),
        "prior_auth" => "You are drafting a prior-authorization letter to a health insurer for the requested service, on behalf of the treating clinician. Use the patient record and the guideline sources below to justify medical necessity, citing sources by ID in brackets, for example [S1]. Do not invent findings.".to_owned(),
        _ => return None,
    };
    if let Some(record) = record {
        prompt.push_str("\n\nPatient record:\n");
        prompt.push_str(record);
    }
    if !passages.is_empty() {
        prompt.push_str("\n\nSources:\n");
        prompt.push_str(&passages.join("\n\n"));
    }
    Some(prompt)
}

/// Puts the task's system prompt before the chat.
pub fn apply(
    task: &str,
    messages: &mut Vec<ChatMessage>,
    record: Option<&str>,
    passages: &[String],
) {
    if let Some(system) = system_prompt(task, record, passages) {
        messages.insert(
            0,
            ChatMessage {
                role: "system".into(),
                content: system,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn tasks_get_their_prompts() {
        let mut m = vec![ChatMessage {
            role: "user".into(),
            content: "q".into(),
        }];
        apply("chat", &mut m, None, &[]);
        assert_eq!(m.len(), 1);
        apply("summarize", &mut m, Some("Patient: female."), &[]);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.contains("Patient record:\nPatient: female."));
        let passage = Passage {
            id: "g/s#0".into(),
            guideline: "g".into(),
            title: "T".into(),
            section: "s".into(),
            doi: String::new(),
            year: None,
            text: "text".into(),
        };
        let p = system_prompt("guideline_qa", None, &[quote("S1", &passage)]).unwrap_or_default();
        assert!(p.contains("Sources:\n[S1] T — s\ntext"), "{p}");
        assert_eq!(system_prompt("unknown", None, &[]), None);
    }
}
