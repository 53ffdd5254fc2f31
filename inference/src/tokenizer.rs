//! Tokenizers: built from a GGUF file's own vocabulary, or read from a
//! Hugging Face `tokenizer.json`.
//!
//! A model only answers sensibly when its prompt is split exactly as it was
//! in training, so the GGUF path reproduces llama.cpp's pre-tokenizer for
//! each `tokenizer.ggml.pre` name it knows and refuses the others rather
//! than guess. (candle's own GGUF tokenizer adds a prefix space for every
//! unknown name, which turns SmolLM2's `system` into ` system`.)

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::EngineError;

/// llama.cpp's token types (`llama_token_type`) that are not text.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The Llama 3 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`).
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What the engine needs to know about a tokenizer beyond splitting text.
pub(crate) struct TokenizerInfo {
    pub(crate) tokenizer: Tokenizer,
    pub(crate) bos: Option<(u32, String)>,
    pub(crate) eos: Option<(u32, String)>,
    pub(crate) add_bos: bool,
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::Failed(format!("tokenizer: {}", message.into()))
}

fn strings(ct: &Content, key: &str) -> Result<Vec<String>, EngineError> {
    let value = ct
        .metadata
        .get(key)
        .ok_or_else(|| bad(format!("the GGUF metadata has no {key}")))?;
    value
        .to_vec()
        .map_err(|_| bad(format!("{key} is not an array")))?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| bad(format!("{key} holds a non-string")))
        })
        .collect()
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::U8(v) => Some(i64::from(*v)),
        Value::I8(v) => Some(i64::from(*v)),
        Value::U16(v) => Some(i64::from(*v)),
        Value::I16(v) => Some(i64::from(*v)),
        Value::U32(v) => Some(i64::from(*v)),
        Value::I32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

fn token_id(ct: &Content, key: &str, tokens: &[String]) -> Option<(u32, String)> {
    let id = u32::try_from(integer(ct.metadata.get(key)?)?).ok()?;
    let text = tokens.get(usize::try_from(id).ok()?)?.clone();
    Some((id, text))
}

fn flag(ct: &Content, key: &str) -> Option<bool> {
    ct.metadata.get(key).and_then(|v| v.to_bool().ok())
}

fn split(regex: &str) -> Result<PreTokenizerWrapper, EngineError> {
    let split = Split::new(
        SplitPattern::Regex(regex.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| bad(format!("split pattern: {e}")))?;
    Ok(split.into())
}

/// The pre-tokenizer llama.cpp uses for `pre`, as tokenizers builds it.
fn pre_tokenizer(pre: &str, add_space_prefix: bool) -> Result<PreTokenizerWrapper, EngineError> {
    let byte_level = |regex: bool| ByteLevel::new(add_space_prefix, true, regex);
    Ok(match pre {
        // GPT-2's own regex, inside ByteLevel.
        "gpt2" | "default" => byte_level(true).into(),
        // SmolLM: every digit alone, then GPT-2's regex.
        "smollm" => Sequence::new(vec![
            Digits::new(true).into(),
            byte_level(true).into(),
        ])
        .into(),
        "llama3" | "llama-bpe" | "smaug-bpe" => {
            Sequence::new(vec![split(LLAMA3_SPLIT)?, byte_level(false).into()]).into()
        }
        "qwen2" => Sequence::new(vec![split(QWEN2_SPLIT)?, byte_level(false).into()]).into(),
        other => {
            return Err(bad(format!(
                "the GGUF's pre-tokenizer {other:?} is not one this engine reproduces (gpt2, smollm, llama3, llama-bpe, smaug-bpe, qwen2); supply a tokenizer.json in the model bundle"
            )))
        }
    })
}

/// The byte-level BPE tokenizer a GGUF file describes.
pub(crate) fn from_gguf(ct: &Content) -> Result<TokenizerInfo, EngineError> {
    let model = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| bad("the GGUF metadata has no tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(bad(format!(
            "GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\"); supply a tokenizer.json in the model bundle"
        )));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| bad(format!("merge {m:?} is not two tokens")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok((
                t.clone(),
                u32::try_from(i).map_err(|_| bad("vocabulary too large"))?,
            ))
        })
        .collect::<Result<tokenizers::models::bpe::Vocab, EngineError>>()?;
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("default", String::as_str);
    let ignore_merges = matches!(pre, "llama3" | "llama-bpe" | "smaug-bpe");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| bad(format!("vocabulary: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    if pre == "qwen2" {
        tokenizer
            .with_normalizer(Some(NFC))
            .map_err(|e| bad(format!("normalizer: {e}")))?;
    }
    let add_space_prefix = flag(ct, "tokenizer.ggml.add_space_prefix").unwrap_or(false);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre, add_space_prefix)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control and user-defined tokens are matched whole, never split.
    if let Some(Value::Array(types)) = ct.metadata.get("tokenizer.ggml.token_type") {
        let special: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| {
                matches!(
                    integer(t),
                    Some(TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED)
                )
            })
            .map(|(_, text)| AddedToken::from(text.clone(), true).normalized(false))
            .collect();
        tokenizer
            .add_special_tokens(special)
            .map_err(|e| bad(format!("special tokens: {e}")))?;
    }
    Ok(TokenizerInfo {
        bos: token_id(ct, "tokenizer.ggml.bos_token_id", &tokens),
        eos: token_id(ct, "tokenizer.ggml.eos_token_id", &tokens),
        add_bos: flag(ct, "tokenizer.ggml.add_bos_token").unwrap_or(false),
        tokenizer,
    })
}

/// A Hugging Face `tokenizer.json`, with the special tokens named in
/// `tokenizer_config.json` where there is one.
pub(crate) fn from_json(
    tokenizer_json: &[u8],
    config: Option<&serde_json::Value>,
) -> Result<TokenizerInfo, EngineError> {
    let tokenizer =
        Tokenizer::from_bytes(tokenizer_json).map_err(|e| bad(format!("tokenizer.json: {e}")))?;
    let named = |key: &str| -> Option<(u32, String)> {
        let value = config?.get(key)?;
        let text = value
            .as_str()
            .or_else(|| value.get("content").and_then(|c| c.as_str()))?;
        Some((tokenizer.token_to_id(text)?, text.to_owned()))
    };
    Ok(TokenizerInfo {
        bos: named("bos_token"),
        eos: named("eos_token"),
        add_bos: config
            .and_then(|c| c.get("add_bos_token"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        tokenizer,
    })
}
