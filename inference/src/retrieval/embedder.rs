//! Sentence embeddings with a BERT-family model (all-MiniLM-L6-v2): mean of
//! the token vectors over the attention mask, scaled to unit length, as
//! sentence-transformers computes them.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::EngineError;

/// Longest input, in word pieces (all-MiniLM-L6-v2's `max_seq_length`).
const MAX_TOKENS: usize = 256;

/// A sentence-embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
    device: Device,
}

fn failed(what: &'static str) -> impl Fn(candle_core::Error) -> EngineError {
    move |e| EngineError::Failed(format!("embedder: {what}: {e}"))
}

impl Embedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors`.
    pub fn load(config: &[u8], tokenizer: &[u8], weights: &[u8]) -> Result<Self, EngineError> {
        Self::load_files(config, tokenizer, weights).map_err(EngineError::at_load)
    }

    fn load_files(config: &[u8], tokenizer: &[u8], weights: &[u8]) -> Result<Self, EngineError> {
        let config: Config = serde_json::from_slice(config)
            .map_err(|e| EngineError::Failed(format!("embedder config.json: {e}")))?;
        let dimension = config.hidden_size;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer)
            .map_err(|e| EngineError::Failed(format!("embedder tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EngineError::Failed(format!("embedder truncation: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let device = Device::Cpu;
        let vb = candle_nn::VarBuilder::from_slice_safetensors(weights, DType::F32, &device)
            .map_err(failed("reading model.safetensors"))?;
        let model = BertModel::load(vb, &config).map_err(failed("loading the weights"))?;
        Ok(Self {
            model,
            tokenizer,
            dimension,
            device,
        })
    }

    /// Embedding width.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EngineError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EngineError::Failed(format!("embedder: tokenizing: {e}")))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor, EngineError> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e).as_slice(), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(failed("input"))?;
            Tensor::stack(&rows, 0).map_err(failed("input"))
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let types = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(failed("running the model"))?;
        let mask = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(failed("mask"))?;
        let summed = hidden
            .broadcast_mul(&mask)
            .and_then(|h| h.sum(1))
            .map_err(failed("pooling"))?;
        let counts = mask.sum(1).map_err(failed("pooling"))?;
        let mean = summed.broadcast_div(&counts).map_err(failed("pooling"))?;
        let norm = mean
            .sqr()
            .and_then(|s| s.sum_keepdim(1))
            .and_then(|s| s.sqrt())
            .and_then(|n| n.clamp(1e-12, f32::MAX))
            .map_err(failed("normalising"))?;
        mean.broadcast_div(&norm)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(failed("normalising"))
    }
}
