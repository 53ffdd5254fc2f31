//! Chat templates: the Jinja template a model ships with (GGUF
//! `tokenizer.chat_template`, or `chat_template` in `tokenizer_config.json`)
//! turns chat messages into the exact prompt text the model was tuned on.
//! A model without one gets ChatML.

use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::{ChatMessage, EngineError};

/// ChatML, for models that ship no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

#[derive(Serialize)]
struct Context<'a> {
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
}

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`).
    pub(crate) fn new(
        source: Option<&str>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        // Templates written for Hugging Face's renderer call this to refuse
        // a chat they cannot format (e.g. roles out of order).
        env.add_function("raise_exception", |message: String| -> Result<String, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_owned())
            .map_err(|e| EngineError::Failed(format!("the model's chat template: {e}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The prompt for `messages`, ending where the assistant's turn begins.
    pub(crate) fn render(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Failed(format!("chat template: {e}")))?;
        template
            .render(Context {
                messages,
                add_generation_prompt: true,
                bos_token: &self.bos_token,
                eos_token: &self.eos_token,
            })
            .map_err(|e| EngineError::InvalidRequest(format!("the chat cannot be formatted: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chat() -> Vec<ChatMessage> {
        vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            },
        ]
    }

    #[test]
    fn chatml_by_default() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        assert_eq!(
            t.render(&chat()).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_models_template_and_its_refusals() {
        // Shaped like Llama 2's: system folded into the first user turn,
        // and a chat out of order refused by the template itself.
        let source = "{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' and loop.first %}{{ raise_exception('must start with user') }}{% endif %}[{{ m.role }}] {{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
        let t = ChatTemplate::new(Some(source), "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&chat()).unwrap(),
            "<s>[system] Be brief.\n[user] Hi\n[assistant]"
        );
        let wrong = vec![ChatMessage {
            role: "assistant".into(),
            content: "x".into(),
        }];
        let e = t.render(&wrong).unwrap_err();
        assert!(e.to_string().contains("must start with user"), "{e}");
        assert!(ChatTemplate::new(Some("{% for %}"), "", "").is_err());
    }
}
