//! A deterministic stand-in engine for tests: it answers by repeating the
//! last user message, word by word. It is not a language model and says so
//! in every answer.
//!
//! Given the bytes of a sealed "model" bundle ([`EchoEngine::with_model`]),
//! it quotes the bundle's first line in every answer, so end-to-end tests
//! can see that bytes unsealed inside the enclave reach the client, and
//! only through the attested channel.

#[cfg(not(debug_assertions))]
compile_error!(
    "the `test-engine` feature is for test builds only; a build without debug assertions must not contain the echo engine"
);

use core::ops::ControlFlow;

use crate::{ChatMessage, Completion, Engine, EngineError, FinishReason, GenerationParams};

/// The model id the echo engine reports.
pub const ECHO_MODEL_ID: &str = "cloister-test-echo";
/// Every echo answer starts with this, so nobody mistakes it for a model.
pub const TEST_ENGINE_LABEL: &str = "[test engine, not a model]";
/// How an echo answer without a sealed model begins.
pub const ECHO_PREFIX: &str = "[test engine, not a model] You said:";

/// Longest model line quoted.
const MAX_MODEL_NOTE: usize = 200;

/// Repeats the last user message.
#[derive(Debug, Default, Clone)]
pub struct EchoEngine {
    model_note: Option<String>,
}

impl EchoEngine {
    /// An echo engine with no model.
    pub fn new() -> Self {
        Self::default()
    }

    /// An echo engine that quotes the first line of `model` (lossy UTF-8,
    /// at most 200 characters) in every answer.
    pub fn with_model(model: &[u8]) -> Self {
        let first = model.split(|&b| b == b'\n').next().unwrap_or_default();
        let note: String = String::from_utf8_lossy(first)
            .chars()
            .take(MAX_MODEL_NOTE)
            .collect();
        Self {
            model_note: Some(note),
        }
    }
}

impl Engine for EchoEngine {
    fn model_id(&self) -> &str {
        ECHO_MODEL_ID
    }

    fn is_test_engine(&self) -> bool {
        true
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError> {
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or_else(|| EngineError::InvalidRequest("no user message".into()))?;
        let prompt_tokens = messages
            .iter()
            .map(|m| m.content.split_whitespace().count())
            .sum::<usize>();
        let note = self
            .model_note
            .as_ref()
            .map(|n| format!("[sealed model: {n}]"));
        let words = TEST_ENGINE_LABEL
            .split_whitespace()
            .chain(note.iter().flat_map(|n| n.split_whitespace()))
            .chain(["You", "said:"])
            .chain(last.content.split_whitespace());
        let mut text = String::new();
        let mut generated = 0u32;
        let mut finish_reason = FinishReason::Stop;
        for word in words {
            if generated >= params.max_tokens {
                finish_reason = FinishReason::Length;
                break;
            }
            let piece = if text.is_empty() {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            text.push_str(&piece);
            generated += 1;
            if on_text(&piece).is_break() {
                finish_reason = FinishReason::Cancelled;
                break;
            }
        }
        Ok(Completion {
            text,
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: generated,
            finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<ChatMessage> {
        vec![ChatMessage {
            role: "user".into(),
            content: text.into(),
        }]
    }

    #[test]
    fn echoes_streams_and_stops_at_max_tokens() {
        let params = GenerationParams {
            max_tokens: 100,
            ..GenerationParams::default()
        };
        let mut streamed = String::new();
        let c = EchoEngine::new()
            .generate(&user("hello  there"), &params, &mut |t| {
                streamed.push_str(t);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(c.text, format!("{ECHO_PREFIX} hello there"));
        assert_eq!(streamed, c.text);
        assert_eq!(c.finish_reason, FinishReason::Stop);

        let short = GenerationParams {
            max_tokens: 2,
            ..params.clone()
        };
        let c = EchoEngine::new()
            .generate(&user("hello"), &short, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            (c.completion_tokens, c.finish_reason),
            (2, FinishReason::Length)
        );
        assert!(EchoEngine::new()
            .generate(&[], &params, &mut |_| ControlFlow::Continue(()))
            .is_err());

        let with_model = EchoEngine::with_model(b"canary model v2\nweights...");
        let c = with_model
            .generate(&user("hi"), &params, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            c.text,
            format!("{TEST_ENGINE_LABEL} [sealed model: canary model v2] You said: hi")
        );
    }
}
