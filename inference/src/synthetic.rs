//! Tiny llama-architecture models with random weights, for tests: the whole
//! engine (GGUF and safetensors loading, tokenizer, chat template, KV cache,
//! sampling) runs on them without downloading anything. Their answers are
//! noise; their shape is real.
//!
//! The vocabulary is GPT-2's 256 byte tokens plus ChatML's three control
//! tokens, so any text tokenizes.

use std::collections::BTreeMap;
use std::io::Cursor;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::bundle::write_tar;
use crate::EngineError;

/// The shape of a synthetic model.
#[derive(Debug, Clone, Copy)]
pub struct TinyLlama {
    /// Hidden size.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Feed-forward size.
    pub ffn: usize,
    /// Context length.
    pub context: usize,
    /// Seed for the weights.
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        Self {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            context: 2048,
            seed: 7,
        }
    }
}

/// The control tokens, first in the vocabulary.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The vocabulary: control tokens, then the 256 byte-level tokens.
pub fn vocabulary() -> Vec<String> {
    let mut bytes: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    bytes.sort_unstable();
    SPECIAL_TOKENS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(bytes.into_iter().map(String::from))
        .collect()
}

fn err(e: candle_core::Error) -> EngineError {
    EngineError::Failed(format!("synthetic model: {e}"))
}

/// Deterministic weights in [-scale, scale): a 64-bit LCG, so the same seed
/// gives the same model on every machine.
fn random(shape: &[usize], seed: u64, scale: f32) -> Result<Tensor, EngineError> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            (unit * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).map_err(err)
}

/// `tensors` in the safetensors format. candle writes safetensors only to a
/// file, so this goes through a uniquely named one in the temp directory.
fn safetensors_bytes(
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<Vec<u8>, EngineError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "cloister-synthetic-{}-{}.safetensors",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    candle_core::safetensors::save(tensors, &path).map_err(err)?;
    let bytes =
        std::fs::read(&path).map_err(|e| EngineError::Failed(format!("synthetic model: {e}")));
    let _ = std::fs::remove_file(&path);
    bytes
}

fn ones(n: usize) -> Result<Tensor, EngineError> {
    Tensor::ones(n, DType::F32, &Device::Cpu).map_err(err)
}

impl TinyLlama {
    /// (name in GGUF, name in safetensors, shape as candle holds it).
    fn tensors(&self) -> Vec<(String, String, Vec<usize>)> {
        let head_dim = self.hidden / self.heads;
        let kv = self.kv_heads * head_dim;
        let vocab = vocabulary().len();
        let mut out = vec![
            (
                "token_embd.weight".into(),
                "model.embed_tokens.weight".into(),
                vec![vocab, self.hidden],
            ),
            (
                "output_norm.weight".into(),
                "model.norm.weight".into(),
                vec![self.hidden],
            ),
            (
                "output.weight".into(),
                "lm_head.weight".into(),
                vec![vocab, self.hidden],
            ),
        ];
        for i in 0..self.layers {
            let g = |n: &str| format!("blk.{i}.{n}.weight");
            let s = |n: &str| format!("model.layers.{i}.{n}.weight");
            out.extend([
                (g("attn_norm"), s("input_layernorm"), vec![self.hidden]),
                (
                    g("ffn_norm"),
                    s("post_attention_layernorm"),
                    vec![self.hidden],
                ),
                (
                    g("attn_q"),
                    s("self_attn.q_proj"),
                    vec![self.hidden, self.hidden],
                ),
                (g("attn_k"), s("self_attn.k_proj"), vec![kv, self.hidden]),
                (g("attn_v"), s("self_attn.v_proj"), vec![kv, self.hidden]),
                (
                    g("attn_output"),
                    s("self_attn.o_proj"),
                    vec![self.hidden, self.hidden],
                ),
                (
                    g("ffn_gate"),
                    s("mlp.gate_proj"),
                    vec![self.ffn, self.hidden],
                ),
                (g("ffn_up"), s("mlp.up_proj"), vec![self.ffn, self.hidden]),
                (
                    g("ffn_down"),
                    s("mlp.down_proj"),
                    vec![self.hidden, self.ffn],
                ),
            ]);
        }
        out
    }

    fn weights(&self) -> Result<Vec<(String, String, Tensor)>, EngineError> {
        self.tensors()
            .into_iter()
            .enumerate()
            .map(|(i, (gguf, st, shape))| {
                let t = if shape.len() == 1 {
                    ones(shape.iter().product())?
                } else {
                    random(&shape, self.seed ^ (i as u64) << 8, 0.5)?
                };
                Ok((gguf, st, t))
            })
            .collect()
    }

    /// The model as a GGUF file (F32 tensors), with a ChatML template and
    /// SmolLM's tokenizer settings.
    pub fn gguf(&self) -> Result<Vec<u8>, EngineError> {
        self.gguf_with(candle_core::quantized::GgmlDType::F32)
    }

    /// The model as a GGUF file with its weight matrices quantized to
    /// `matrices` (norms stay F32), for tests of quantized kernels.
    pub fn gguf_with(
        &self,
        matrices: candle_core::quantized::GgmlDType,
    ) -> Result<Vec<u8>, EngineError> {
        use gguf_file::Value;
        let tokens = vocabulary();
        let u32v = |n: usize| Value::U32(u32::try_from(n).unwrap_or(u32::MAX));
        let metadata: Vec<(&str, Value)> = vec![
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String("tiny-random-llama".into())),
            ("llama.attention.head_count", u32v(self.heads)),
            ("llama.attention.head_count_kv", u32v(self.kv_heads)),
            ("llama.block_count", u32v(self.layers)),
            ("llama.embedding_length", u32v(self.hidden)),
            ("llama.feed_forward_length", u32v(self.ffn)),
            ("llama.context_length", u32v(self.context)),
            ("llama.rope.dimension_count", u32v(self.hidden / self.heads)),
            ("llama.rope.freq_base", Value::F32(10_000.0)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("smollm".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.iter().cloned().map(Value::String).collect()),
            ),
            ("tokenizer.ggml.merges", Value::Array(Vec::new())),
            (
                "tokenizer.ggml.token_type",
                Value::Array(
                    (0..tokens.len())
                        .map(|i| Value::I32(if i < SPECIAL_TOKENS.len() { 3 } else { 1 }))
                        .collect(),
                ),
            ),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
            ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
        ];
        let weights = self.weights()?;
        let tensors = weights
            .iter()
            .map(|(name, _, t)| {
                let dtype = if t.rank() == 2 {
                    matrices
                } else {
                    candle_core::quantized::GgmlDType::F32
                };
                Ok((name.as_str(), QTensor::quantize(t, dtype).map_err(err)?))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &md, &ts).map_err(err)?;
        Ok(out.into_inner())
    }

    /// The same model as a safetensors bundle (a tar of `config.json`,
    /// `tokenizer.json`, `tokenizer_config.json`, `model.safetensors`).
    pub fn safetensors_bundle(&self) -> Result<Vec<u8>, EngineError> {
        let weights: std::collections::HashMap<String, Tensor> = self
            .weights()?
            .into_iter()
            .map(|(_, name, t)| (name, t))
            .collect();
        let bytes = safetensors_bytes(&weights);
        let config = serde_json::json!({
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "vocab_size": vocabulary().len(),
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": self.context,
            "tie_word_embeddings": false,
            "eos_token_id": 2,
        });
        let tokenizer = {
            let gguf = self.gguf()?;
            let content =
                gguf_file::Content::read(&mut Cursor::new(gguf.as_slice())).map_err(err)?;
            crate::tokenizer::from_gguf(&content)?
                .tokenizer
                .to_string(false)
                .map_err(|e| EngineError::Failed(format!("synthetic tokenizer: {e}")))?
        };
        let tokenizer_config = serde_json::json!({
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        });
        let files: BTreeMap<String, Vec<u8>> = [
            ("config.json".to_owned(), config.to_string().into_bytes()),
            ("tokenizer.json".to_owned(), tokenizer.into_bytes()),
            (
                "tokenizer_config.json".to_owned(),
                tokenizer_config.to_string().into_bytes(),
            ),
            ("model.safetensors".to_owned(), bytes?),
        ]
        .into_iter()
        .collect();
        write_tar(&files)
    }
}

/// An embedder's `config.json`, `tokenizer.json` and `model.safetensors`.
pub type EmbedderFiles = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A tiny BERT sentence embedder with random weights and a WordPiece
/// vocabulary of lowercase letters, digits and common clinical words:
/// `(config.json, tokenizer.json, model.safetensors)`. Its embeddings carry
/// no meaning, but equal texts embed equally and different texts differently.
pub fn tiny_embedder() -> Result<EmbedderFiles, EngineError> {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::template::TemplateProcessing;

    const HIDDEN: usize = 32;
    const FFN: usize = 64;
    const LAYERS: usize = 2;
    const MAX_POSITIONS: usize = 512;
    let words = [
        "dose", "renal", "warfarin", "apixaban", "stroke", "sepsis", "fluid", "insulin", "asthma",
        "burn", "heart", "failure", "kidney", "the", "is", "for", "of", "and", "what",
    ];
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    vocab.extend(('a'..='z').chain('0'..='9').map(String::from));
    vocab.extend(('a'..='z').chain('0'..='9').map(|c| format!("##{c}")));
    vocab.extend(words.iter().map(|w| (*w).to_owned()));
    for p in ".,;:()-/%".chars() {
        vocab.push(p.to_string());
    }
    let ids: tokenizers::models::bpe::Vocab = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    let wordpiece = WordPiece::builder()
        .vocab(ids)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| EngineError::Failed(format!("synthetic embedder: {e}")))?;
    let mut tokenizer = tokenizers::Tokenizer::new(wordpiece);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(|e| EngineError::Failed(format!("synthetic embedder: {e}")))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .map_err(|e| EngineError::Failed(format!("synthetic embedder: {e}")))?
        .special_tokens(vec![("[CLS]", 2), ("[SEP]", 3)])
        .build()
        .map_err(|e| EngineError::Failed(format!("synthetic embedder: {e}")))?;
    tokenizer.with_post_processor(Some(template));
    let tokenizer_json = tokenizer
        .to_string(false)
        .map_err(|e| EngineError::Failed(format!("synthetic embedder: {e}")))?;

    let mut tensors = std::collections::HashMap::new();
    let mut seed = 11u64;
    let mut add = |name: String, shape: &[usize]| -> Result<(), EngineError> {
        seed += 1;
        let t = if name.ends_with("LayerNorm.weight") {
            ones(shape.iter().product())?
        } else if name.ends_with("bias") {
            Tensor::zeros(shape, DType::F32, &Device::Cpu).map_err(err)?
        } else {
            random(shape, seed, 0.3)?
        };
        tensors.insert(name, t);
        Ok(())
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        &[vocab.len(), HIDDEN],
    )?;
    add(
        "embeddings.position_embeddings.weight".into(),
        &[MAX_POSITIONS, HIDDEN],
    )?;
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, HIDDEN],
    )?;
    add("embeddings.LayerNorm.weight".into(), &[HIDDEN])?;
    add("embeddings.LayerNorm.bias".into(), &[HIDDEN])?;
    for i in 0..LAYERS {
        let p = |n: &str| format!("encoder.layer.{i}.{n}");
        for name in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            add(p(&format!("{name}.weight")), &[HIDDEN, HIDDEN])?;
            add(p(&format!("{name}.bias")), &[HIDDEN])?;
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(p(&format!("{name}.weight")), &[HIDDEN])?;
            add(p(&format!("{name}.bias")), &[HIDDEN])?;
        }
        add(p("intermediate.dense.weight"), &[FFN, HIDDEN])?;
        add(p("intermediate.dense.bias"), &[FFN])?;
        add(p("output.dense.weight"), &[HIDDEN, FFN])?;
        add(p("output.dense.bias"), &[HIDDEN])?;
    }
    let weights = safetensors_bytes(&tensors);
    let config = serde_json::json!({
        "vocab_size": vocab.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "intermediate_size": FFN,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    });
    Ok((
        config.to_string().into_bytes(),
        tokenizer_json.into_bytes(),
        weights?,
    ))
}

/// A corpus bundle of `passages` near-identical passages about apixaban,
/// embedded with [`tiny_embedder`]: for benchmarks of retrieval's cost,
/// which depends on the corpus's size and not on what it says.
pub fn tiny_corpus(passages: usize) -> Result<Vec<u8>, EngineError> {
    let (config, tokenizer, weights) = tiny_embedder()?;
    let passages = (0..passages)
        .map(|i| crate::retrieval::Passage {
            id: format!("g/s#{i}"),
            guideline: "g".into(),
            title: "Guideline".into(),
            section: "s".into(),
            doi: String::new(),
            year: None,
            text: format!("passage {i} about the dose of apixaban, renal function and stroke"),
        })
        .collect();
    crate::retrieval::build_bundle(
        "synthetic",
        passages,
        (&config, &tokenizer, weights),
        &mut |_| {},
    )
}
