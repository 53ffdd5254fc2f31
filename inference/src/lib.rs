//! Cloister's inference engines and the interface the enclave drives them by.
//!
//! The enclave owns transport, identity, policy and audit; an engine only
//! turns chat messages into tokens. Keeping the boundary this narrow lets the
//! embedded candle engine ([`embedded::CandleEngine`]) and an
//! OpenAI-compatible engine in the same CVM ([`openai::OpenAiEngine`]) slot in
//! without the enclave knowing which it drives.
//!
//! [`retrieval`] embeds guideline passages and finds the ones a question
//! rests on, so answers can cite them; [`tasks`] builds the clinical
//! tasks' prompts around them.
//!
//! With the `test-engine` feature this crate also has [`echo::EchoEngine`],
//! a deterministic stand-in for tests of everything around inference. It
//! refuses to compile in a build without debug assertions.

pub mod bundle;
mod cpu;
#[cfg(feature = "test-engine")]
pub mod echo;
pub mod embedded;
pub mod openai;
pub mod retrieval;
pub mod synthetic;
pub mod tasks;
mod template;
mod text;
mod tokenizer;

use core::ops::ControlFlow;

use serde::{Deserialize, Serialize};

/// One message of a chat, as in the OpenAI API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text.
    pub content: String,
}

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus sampling: sample from the smallest set of tokens whose
    /// probabilities add up to this; 1 samples from all.
    pub top_p: f32,
    /// Seed for sampling, so a run can be reproduced; `None` draws one.
    pub seed: Option<u64>,
    /// Text that ends the answer where it appears (it is not returned).
    pub stop: Vec<String>,
    /// Generate `max_tokens` even past the end of the answer: for
    /// benchmarks, which must compare equal work.
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation stopped, named as in the OpenAI API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The consumer asked to stop (client went away).
    Cancelled,
}

impl FinishReason {
    /// The name the OpenAI API gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Tokens in the prompt, as the engine counts them.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// Why an engine could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request cannot be served (empty chat, prompt too long).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The engine failed.
    #[error("inference failed: {0}")]
    Failed(String),
    /// A model, tokenizer, embedder or corpus cannot be loaded: the message
    /// names the part and what is wrong with it.
    #[error("{0}")]
    Unloadable(String),
}

impl EngineError {
    /// The error as a loading function reports it: a failure while loading
    /// is the input's fault, not inference's.
    pub(crate) fn at_load(self) -> Self {
        match self {
            Self::Failed(m) => Self::Unloadable(m),
            other => other,
        }
    }
}

/// An inference engine. Generation is blocking and CPU- or GPU-bound: the
/// caller runs it off the async executor.
pub trait Engine: Send + Sync + 'static {
    /// The model's identifier, as `/v1/models` lists it.
    fn model_id(&self) -> &str;

    /// Whether this engine is a stand-in rather than a model (shown to users).
    fn is_test_engine(&self) -> bool {
        false
    }

    /// Generates a reply to `messages`, handing each piece of text to
    /// `on_text` as it is produced; `ControlFlow::Break` stops generation.
    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError>;
}
