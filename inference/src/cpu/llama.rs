//! The llama forward pass on [`QMatrix`] weights: the same arithmetic as
//! candle's `quantized_llama` (RMSNorm, interleaved RoPE, grouped-query
//! attention, SwiGLU), with the matrix products done by [`super::quant`]
//! and no per-operation tensor allocation.
//!
//! Only the matrix products and attention are spread over threads; the
//! rest of a layer is a few thousand floats, cheaper done in place than
//! handed to another core.

use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Device;
use rayon::prelude::*;

use super::quant::{Kernels, PackError, QActs, QMatrix};

/// Why a GGUF was not loaded by this engine.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// A model this forward pass does not implement; candle may run it.
    #[error("{0}")]
    Unsupported(String),
    /// A model that is malformed: no engine should run it.
    #[error("{0}")]
    Invalid(String),
}

/// The shape of a llama model, from its GGUF metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LlamaShape {
    pub(crate) layers: usize,
    pub(crate) hidden: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) ffn: usize,
    pub(crate) vocab: usize,
    pub(crate) rope_base: f32,
    pub(crate) eps: f32,
}

impl LlamaShape {
    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    q: QMatrix,
    k: QMatrix,
    v: QMatrix,
    o: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// A loaded model: read-only, shared by every request.
pub(crate) struct CpuLlama {
    shape: LlamaShape,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None`: the output projection is the embedding (tied weights).
    output: Option<QMatrix>,
    /// RoPE's inverse frequencies, one per pair of dimensions.
    inv_freq: Vec<f32>,
    kernels: Kernels,
}

/// Tensors a llama block may have; anything else (biases, experts) is a
/// model this pass would run wrongly.
const BLOCK_TENSORS: [&str; 9] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

fn meta_u32(content: &gguf_file::Content, key: &str) -> Option<usize> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
}

fn meta_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Reads tensors out of an in-memory GGUF.
struct Reader<'a> {
    content: &'a gguf_file::Content,
    gguf: &'a [u8],
    /// Whether types without a layout here may become Q8_0.
    requantize: bool,
}

impl Reader<'_> {
    fn tensor(&self, name: &str) -> Result<candle_core::quantized::QTensor, LoadError> {
        self.content
            .tensor(&mut Cursor::new(self.gguf), name, &Device::Cpu)
            .map_err(|e| LoadError::Invalid(format!("tensor {name}: {e}")))
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A weight matrix that must be `rows × cols`.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, LoadError> {
        let t = self.tensor(name)?;
        let dims = t.shape().dims().to_vec();
        if dims != [rows, cols] {
            return Err(LoadError::Invalid(format!(
                "tensor {name} is {dims:?}, expected [{rows}, {cols}]"
            )));
        }
        let packed = match t.dtype() {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q8_0 => {
                let raw = t
                    .data()
                    .map_err(|e| LoadError::Invalid(format!("tensor {name}: {e}")))?;
                match t.dtype() {
                    GgmlDType::Q4_0 => QMatrix::from_q4_0(rows, cols, &raw),
                    GgmlDType::Q4_1 => QMatrix::from_q4_1(rows, cols, &raw),
                    _ => QMatrix::from_q8_0(rows, cols, &raw),
                }
            }
            other if !self.requantize => {
                return Err(LoadError::Unsupported(format!(
                    "tensor {name} is {other:?}, which Cloister's kernels run only requantized to Q8_0 (keep_quantization is set)"
                )))
            }
            _ => {
                let values = t
                    .dequantize(&Device::Cpu)
                    .and_then(|v| v.flatten_all())
                    .and_then(|v| v.to_vec1::<f32>())
                    .map_err(|e| LoadError::Invalid(format!("tensor {name}: {e}")))?;
                QMatrix::quantize_q8_0(rows, cols, &values)
            }
        };
        packed.map_err(|e: PackError| match e {
            PackError::Columns(_) => LoadError::Unsupported(format!("tensor {name} {e}")),
            _ => LoadError::Invalid(format!("tensor {name} {e}")),
        })
    }

    /// A vector of `len` values (norm weights).
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let values = self
            .tensor(name)?
            .dequantize(&Device::Cpu)
            .and_then(|v| v.flatten_all())
            .and_then(|v| v.to_vec1::<f32>())
            .map_err(|e| LoadError::Invalid(format!("tensor {name}: {e}")))?;
        if values.len() != len {
            return Err(LoadError::Invalid(format!(
                "tensor {name} has {} values, expected {len}",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(LoadError::Invalid(format!(
                "tensor {name} has a non-finite value"
            )));
        }
        Ok(values)
    }
}

impl CpuLlama {
    /// Loads a `llama` GGUF already in memory.
    pub(crate) fn from_gguf(
        content: &gguf_file::Content,
        gguf: &[u8],
        kernels: Kernels,
        requantize: bool,
    ) -> Result<Self, LoadError> {
        let need = |key: &str| {
            meta_u32(content, key)
                .filter(|&v| v > 0)
                .ok_or_else(|| LoadError::Invalid(format!("the GGUF has no usable {key}")))
        };
        if meta_u32(content, "llama.expert_count").is_some_and(|n| n > 0) {
            return Err(LoadError::Unsupported(
                "mixture-of-experts models run on candle's kernels".into(),
            ));
        }
        let layers = need("llama.block_count")?;
        let hidden = need("llama.embedding_length")?;
        let heads = need("llama.attention.head_count")?;
        let kv_heads = meta_u32(content, "llama.attention.head_count_kv").unwrap_or(heads);
        if hidden % heads != 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(LoadError::Invalid(format!(
                "{heads} attention heads and {kv_heads} key/value heads do not divide a hidden size of {hidden}"
            )));
        }
        let head_dim = hidden / heads;
        if head_dim % 2 != 0 {
            return Err(LoadError::Invalid(format!(
                "head size {head_dim} is odd; RoPE rotates pairs"
            )));
        }
        let rope_dim = meta_u32(content, "llama.rope.dimension_count").unwrap_or(head_dim);
        if rope_dim != head_dim {
            return Err(LoadError::Unsupported(format!(
                "RoPE over {rope_dim} of {head_dim} head dimensions"
            )));
        }
        if content.tensor_infos.contains_key("rope_freqs.weight")
            || content.metadata.contains_key("llama.rope.scaling.type")
        {
            return Err(LoadError::Unsupported("scaled RoPE".into()));
        }
        let reader = Reader {
            content,
            gguf,
            requantize,
        };
        for name in content.tensor_infos.keys() {
            let known = match name.strip_prefix("blk.") {
                Some(rest) => rest
                    .split_once('.')
                    .and_then(|(n, t)| Some((n.parse::<usize>().ok()?, t)))
                    .is_some_and(|(n, t)| {
                        n < layers
                            && t.strip_suffix(".weight")
                                .is_some_and(|t| BLOCK_TENSORS.contains(&t))
                    }),
                None => matches!(
                    name.as_str(),
                    "token_embd.weight" | "output_norm.weight" | "output.weight"
                ),
            };
            if !known {
                return Err(LoadError::Unsupported(format!("tensor {name}")));
            }
        }
        let embed_dims = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|i| i.shape.dims().to_vec())
            .ok_or_else(|| LoadError::Invalid("the GGUF has no token_embd.weight".into()))?;
        let vocab = match embed_dims.as_slice() {
            [v, h] if *h == hidden && *v > 0 => *v,
            d => {
                return Err(LoadError::Invalid(format!(
                    "token_embd.weight is {d:?}, expected [vocabulary, {hidden}]"
                )))
            }
        };
        let ffn = content
            .tensor_infos
            .get("blk.0.ffn_up.weight")
            .and_then(|i| i.shape.dims().first().copied())
            .ok_or_else(|| LoadError::Invalid("the GGUF has no blk.0.ffn_up.weight".into()))?;
        let shape = LlamaShape {
            layers,
            hidden,
            heads,
            kv_heads,
            head_dim,
            ffn,
            vocab,
            rope_base: meta_f32(content, "llama.rope.freq_base").unwrap_or(10_000.0),
            eps: meta_f32(content, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        };
        if !(shape.rope_base.is_finite() && shape.rope_base > 0.0 && shape.eps.is_finite()) {
            return Err(LoadError::Invalid(
                "the GGUF's RoPE base or norm epsilon is not a positive number".into(),
            ));
        }
        let kv_dim = shape.kv_dim();
        let mut blocks = Vec::with_capacity(layers);
        for l in 0..layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            blocks.push(Layer {
                attn_norm: reader.vector(&name("attn_norm"), hidden)?,
                q: reader.matrix(&name("attn_q"), hidden, hidden)?,
                k: reader.matrix(&name("attn_k"), kv_dim, hidden)?,
                v: reader.matrix(&name("attn_v"), kv_dim, hidden)?,
                o: reader.matrix(&name("attn_output"), hidden, hidden)?,
                ffn_norm: reader.vector(&name("ffn_norm"), hidden)?,
                gate: reader.matrix(&name("ffn_gate"), ffn, hidden)?,
                up: reader.matrix(&name("ffn_up"), ffn, hidden)?,
                down: reader.matrix(&name("ffn_down"), hidden, ffn)?,
            });
        }
        let output = if reader.has("output.weight") {
            Some(reader.matrix("output.weight", vocab, hidden)?)
        } else {
            None
        };
        // As candle computes them, in f32: 1 / base^(2i / head_dim).
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / shape.rope_base.powf(i as f32 / head_dim as f32))
            .collect();
        Ok(Self {
            shape,
            embed: reader.matrix("token_embd.weight", vocab, hidden)?,
            layers: blocks,
            norm: reader.vector("output_norm.weight", hidden)?,
            output,
            inv_freq,
            kernels,
        })
    }
}

/// One request's state: its KV cache and position.
pub(crate) struct CpuSession {
    model: Arc<CpuLlama>,
    /// Keys per layer: position-major, `kv_dim` values per position.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, w) in x.iter_mut().zip(weight) {
        *v *= scale * w;
    }
}

/// Rotates each adjacent pair `(x[2i], x[2i+1])` of every head by
/// `position × inv_freq[i]` (GGUF llama's interleaved RoPE).
fn rope(x: &mut [f32], head_dim: usize, cos_sin: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cos_sin) {
            if let [a, b] = pair {
                let (x0, x1) = (*a, *b);
                *a = x0 * cos - x1 * sin;
                *b = x0 * sin + x1 * cos;
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl CpuSession {
    /// A session with an empty cache.
    pub(crate) fn new(model: Arc<CpuLlama>) -> Self {
        let layers = model.shape.layers;
        Self {
            model,
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
        }
    }

    /// Tokens in the cache: the position the next token takes.
    pub(crate) fn position(&self) -> usize {
        self.len
    }

    /// Runs `tokens` (appended after those already seen) and returns the
    /// logits for the last of them.
    pub(crate) fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        // On one of rayon's threads, so that thread takes its share of every
        // product instead of sleeping while the pool works (and waking the
        // caller once per product).
        rayon::scope(|_| self.run(tokens))
    }

    fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        let model = Arc::clone(&self.model);
        let s = model.shape;
        let kernels = model.kernels;
        let m = tokens.len();
        if m == 0 {
            return Err("no tokens to run".into());
        }
        let mut x = Vec::with_capacity(m * s.hidden);
        for &t in tokens {
            let row = model.embed.row(t as usize).ok_or_else(|| {
                format!(
                    "token id {t} is outside the vocabulary of {} tokens",
                    s.vocab
                )
            })?;
            x.extend_from_slice(&row);
        }
        let cos_sin: Vec<Vec<(f32, f32)>> = (self.len..self.len + m)
            .map(|p| {
                model
                    .inv_freq
                    .iter()
                    .map(|f| {
                        let angle = p as f32 * f;
                        (angle.cos(), angle.sin())
                    })
                    .collect()
            })
            .collect();
        let kv_dim = s.kv_dim();
        let mut normed = vec![0f32; m * s.hidden];
        let mut q = vec![0f32; m * s.hidden];
        let mut k = vec![0f32; m * kv_dim];
        let mut v = vec![0f32; m * kv_dim];
        let mut attended = vec![0f32; m * s.hidden];
        let mut projected = vec![0f32; m * s.hidden];
        let mut gate = vec![0f32; m * s.ffn];
        let mut up = vec![0f32; m * s.ffn];
        for ((layer, keys), values) in model
            .layers
            .iter()
            .zip(&mut self.keys)
            .zip(&mut self.values)
        {
            normed.copy_from_slice(&x);
            for row in normed.chunks_exact_mut(s.hidden) {
                rms_norm(row, &layer.attn_norm, s.eps);
            }
            let acts = QActs::quantize(&normed, s.hidden, kernels);
            layer.q.matmul(&acts, &mut q, kernels);
            layer.k.matmul(&acts, &mut k, kernels);
            layer.v.matmul(&acts, &mut v, kernels);
            for ((qr, kr), cs) in q
                .chunks_exact_mut(s.hidden)
                .zip(k.chunks_exact_mut(kv_dim))
                .zip(&cos_sin)
            {
                rope(qr, s.head_dim, cs);
                rope(kr, s.head_dim, cs);
            }
            keys.extend_from_slice(&k);
            values.extend_from_slice(&v);
            attention(&s, self.len, &q, keys, values, &mut attended);
            let acts = QActs::quantize(&attended, s.hidden, kernels);
            layer.o.matmul(&acts, &mut projected, kernels);
            for (a, b) in x.iter_mut().zip(&projected) {
                *a += b;
            }
            normed.copy_from_slice(&x);
            for row in normed.chunks_exact_mut(s.hidden) {
                rms_norm(row, &layer.ffn_norm, s.eps);
            }
            let acts = QActs::quantize(&normed, s.hidden, kernels);
            layer.gate.matmul(&acts, &mut gate, kernels);
            layer.up.matmul(&acts, &mut up, kernels);
            for (g, u) in gate.iter_mut().zip(&up) {
                // SwiGLU: silu(gate) × up.
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            let acts = QActs::quantize(&gate, s.ffn, kernels);
            layer.down.matmul(&acts, &mut projected, kernels);
            for (a, b) in x.iter_mut().zip(&projected) {
                *a += b;
            }
        }
        self.len += m;
        let mut last = x
            .get((m - 1) * s.hidden..)
            .map(<[f32]>::to_vec)
            .unwrap_or_default();
        rms_norm(&mut last, &model.norm, s.eps);
        let acts = QActs::quantize(&last, s.hidden, kernels);
        let mut logits = vec![0f32; s.vocab];
        model
            .output
            .as_ref()
            .unwrap_or(&model.embed)
            .matmul(&acts, &mut logits, kernels);
        Ok(logits)
    }
}

/// Causal grouped-query attention of the `q.len() / hidden` new positions
/// (starting at `start`) over the cache, into `out`.
fn attention(
    s: &LlamaShape,
    start: usize,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    out: &mut [f32],
) {
    let kv_dim = s.kv_dim();
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    // One task per (position, head): each reads its prefix of the cache.
    let task = |(i, (qh, oh)): (usize, (&[f32], &mut [f32]))| {
        let (pos, head) = (i / s.heads, i % s.heads);
        let kv_head = head / group;
        let seen = start + pos + 1;
        let at = |t: usize| t * kv_dim + kv_head * s.head_dim;
        let mut scores: Vec<f32> = (0..seen)
            .map(|t| {
                keys.get(at(t)..at(t) + s.head_dim)
                    .map_or(0.0, |k| dot(qh, k) * scale)
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for sc in &mut scores {
            *sc = (*sc - max).exp();
            total += *sc;
        }
        oh.fill(0.0);
        for (t, w) in scores.iter().enumerate() {
            if let Some(v) = values.get(at(t)..at(t) + s.head_dim) {
                let w = w / total;
                for (o, v) in oh.iter_mut().zip(v) {
                    *o += w * v;
                }
            }
        }
    };
    let work = q.len() / s.hidden * s.heads * (start + q.len() / s.hidden) * s.head_dim;
    let pairs = q
        .chunks_exact(s.head_dim)
        .zip(out.chunks_exact_mut(s.head_dim));
    // Below this much work, handing heads to other threads costs more
    // than it saves.
    if work < 1 << 16 {
        pairs.enumerate().for_each(task);
    } else {
        pairs
            .enumerate()
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(task);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;

    use super::*;
    use crate::synthetic::TinyLlama;

    const PROMPT: [u32; 7] = [1, 40, 77, 5, 200, 131, 2];

    /// Logits for the prompt and then three single tokens, teacher-forced.
    fn ours(gguf: &[u8], kernels: Kernels) -> Vec<Vec<f32>> {
        let content = gguf_file::Content::read(&mut Cursor::new(gguf)).unwrap();
        let model = Arc::new(CpuLlama::from_gguf(&content, gguf, kernels, true).unwrap());
        let mut session = CpuSession::new(model);
        let mut out = vec![session.forward(&PROMPT).unwrap()];
        for t in [9, 250, 3] {
            out.push(session.forward(&[t]).unwrap());
        }
        out
    }

    fn candles(gguf: &[u8]) -> Vec<Vec<f32>> {
        let mut reader = Cursor::new(gguf);
        let content = gguf_file::Content::read(&mut reader).unwrap();
        let mut model = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
        let mut run = |ids: &[u32], pos| -> Vec<f32> {
            let input = Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input, pos).unwrap();
            logits.squeeze(0).unwrap().to_vec1().unwrap()
        };
        let mut out = vec![run(&PROMPT, 0)];
        for (i, t) in [9u32, 250, 3].into_iter().enumerate() {
            out.push(run(&[t], PROMPT.len() + i));
        }
        out
    }

    /// Largest difference relative to the largest logit.
    fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    #[test]
    fn logits_match_candles_quantized_llama() {
        let tiny = TinyLlama {
            layers: 3,
            heads: 4,
            kv_heads: 2,
            ..TinyLlama::default()
        };
        // This random model is sensitive: candle's own Q8_0 and F32 runs
        // of it differ by 3–5 % of the largest logit, its Q4 runs by 25–70 %.
        // Both engines quantize activations per block, but round and add
        // in different orders; measured here: 2–9 % for Q4_0, 2–3 % for the
        // rest, 4–5 % for F32 (which this pass requantizes to Q8_0). A
        // RoPE turned the wrong way or a wrong key/value head gives errors
        // above 1, a norm 5 % off gives 0.1 (each tried).
        for (dtype, tolerance) in [
            (GgmlDType::Q4_0, 0.15),
            (GgmlDType::Q4_1, 0.06),
            (GgmlDType::Q8_0, 0.06),
            (GgmlDType::F32, 0.08),
        ] {
            let gguf = tiny.gguf_with(dtype).unwrap();
            let want = candles(&gguf);

            for kernels in [Kernels::scalar(), Kernels::detect()] {
                for (step, (got, want)) in ours(&gguf, kernels).iter().zip(&want).enumerate() {
                    let err = relative_error(got, want);
                    assert!(
                        err < tolerance,
                        "{dtype:?} on {} kernels, step {step}: relative error {err}",
                        kernels.name()
                    );
                }
            }
        }
    }

    #[test]
    fn simd_and_scalar_passes_agree_closely() {
        let gguf = TinyLlama::default().gguf_with(GgmlDType::Q4_1).unwrap();
        let a = ours(&gguf, Kernels::scalar());
        let b = ours(&gguf, Kernels::detect());
        for (x, y) in a.iter().zip(&b) {
            assert!(relative_error(x, y) < 1e-4);
        }
    }

    #[test]
    fn models_this_pass_cannot_run_are_told_apart_from_broken_ones() {
        let gguf = TinyLlama::default().gguf().unwrap();
        let mut content = gguf_file::Content::read(&mut Cursor::new(&gguf)).unwrap();
        let load = |c: &gguf_file::Content| CpuLlama::from_gguf(c, &gguf, Kernels::detect(), true);
        assert!(load(&content).is_ok());

        let mut experts = gguf_file::Content::read(&mut Cursor::new(&gguf)).unwrap();
        experts
            .metadata
            .insert("llama.expert_count".into(), gguf_file::Value::U32(8));
        assert!(matches!(load(&experts), Err(LoadError::Unsupported(_))));

        // F32 matrices cannot run unless requantizing is allowed.
        assert!(matches!(
            CpuLlama::from_gguf(&content, &gguf, Kernels::detect(), false),
            Err(LoadError::Unsupported(_))
        ));

        // A tensor the model needs, missing: broken, not unsupported.
        content.tensor_infos.remove("blk.1.ffn_down.weight");
        assert!(matches!(load(&content), Err(LoadError::Invalid(_))));

        // Heads that do not divide the hidden size.
        let mut heads = gguf_file::Content::read(&mut Cursor::new(&gguf)).unwrap();
        heads.metadata.insert(
            "llama.attention.head_count".into(),
            gguf_file::Value::U32(5),
        );
        assert!(matches!(load(&heads), Err(LoadError::Invalid(_))));
    }

    #[test]
    fn out_of_vocabulary_tokens_are_errors() {
        let gguf = TinyLlama::default().gguf_with(GgmlDType::Q8_0).unwrap();
        let content = gguf_file::Content::read(&mut Cursor::new(&gguf)).unwrap();
        let model =
            Arc::new(CpuLlama::from_gguf(&content, &gguf, Kernels::detect(), true).unwrap());
        let mut session = CpuSession::new(model);
        let err = session.forward(&[1, 100_000]).unwrap_err();
        assert!(err.contains("100000"), "{err}");
        assert!(session.forward(&[]).is_err());
        // Nothing was cached by the failed call.
        assert_eq!(session.position(), 0);
    }
}
