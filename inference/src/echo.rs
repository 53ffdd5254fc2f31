//! A deterministic stand-in engine for tests: it answers by repeating the
//! last user message, word by word. It is not a language model and says so
//! in every answer.

#[cfg(not(debug_assertions))]
compile_error!(
    "the `test-engine` feature is for test builds only; a build without debug assertions must not contain the echo engine"
);

use core::ops::ControlFlow;

use crate::{ChatMessage, Completion, Engine, EngineError, FinishReason, GenerationParams};

/// The model id the echo engine reports.
pub const ECHO_MODEL_ID: &str = "cloister-test-echo";
/// Every echo answer starts with this, so nobody mistakes it for a model.
pub const ECHO_PREFIX: &str = "[test engine, not a model] You said:";

/// Repeats the last user message.
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoEngine;

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
        let words = ECHO_PREFIX
            .split_whitespace()
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
            temperature: 0.0,
        };
        let mut streamed = String::new();
        let c = EchoEngine
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
            ..params
        };
        let c = EchoEngine
            .generate(&user("hello"), &short, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            (c.completion_tokens, c.finish_reason),
            (2, FinishReason::Length)
        );
        assert!(EchoEngine
            .generate(&[], &params, &mut |_| ControlFlow::Continue(()))
            .is_err());
    }
}
