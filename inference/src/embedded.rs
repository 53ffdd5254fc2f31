//! The embedded engine: a llama-architecture model run in this process's
//! memory, from the bytes of an unsealed model bundle.
//!
//! Requests share the weights (reference-counted) and each gets its own KV
//! cache, so concurrent requests do not wait for each other beyond the CPU
//! (or GPU) they share.
//!
//! GGUF models on the CPU run on Cloister's own forward pass
//! ([`crate::cpu`]): candle 0.11's x86 kernels left SmolLM2 at about 0.6×
//! llama.cpp's decoding speed. Everything else runs on candle: GPUs,
//! safetensors, models that pass does not implement, and `kernels =
//! "candle"`. On candle, quantizations it has no SIMD kernel for on x86
//! (Q4_1, Q5_0, Q5_1) are converted to Q8_0 at load unless
//! `keep_quantization` is set.

use std::collections::HashSet;
use std::io::Cursor;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{llama, quantized_llama};
use serde::Deserialize;

use crate::bundle::ModelFiles;
use crate::cpu::llama::{CpuLlama, CpuSession, LoadError};
use crate::cpu::quant::Kernels;
use crate::template::ChatTemplate;
use crate::text::{Detokenizer, Matched, StopMatcher};
use crate::tokenizer::{self, TokenizerInfo};
use crate::{ChatMessage, Completion, Engine, EngineError, FinishReason, GenerationParams};

/// The longest context candle's quantized llama supports.
const QUANTIZED_MAX_CONTEXT: usize = quantized_llama::MAX_SEQ_LEN;

/// Tokens that end a turn in the chat formats we know, besides the
/// tokenizer's EOS.
const END_OF_TURN: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
];

/// How the embedded engine runs, from the enclave's measured configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// The id `/v1/models` lists (default: the GGUF's `general.name`, or
    /// "model").
    pub model_id: Option<String>,
    /// Penalise tokens seen in the last `repeat_last_n` tokens by this
    /// factor (1 = off). Small models loop without it.
    pub repeat_penalty: f32,
    /// How far back the repeat penalty looks.
    pub repeat_last_n: usize,
    /// Keep the bundle's quantization: never requantize a tensor to Q8_0
    /// (models whose types Cloister's kernels lack then run on candle's).
    pub keep_quantization: bool,
    /// Whose CPU kernels run GGUF models.
    pub kernels: CpuKernels,
    /// Run on the first CUDA GPU (builds with the `cuda` feature only).
    pub gpu: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            model_id: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            keep_quantization: false,
            kernels: CpuKernels::Cloister,
            gpu: false,
        }
    }
}

/// Whose kernels run a GGUF model on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuKernels {
    /// Cloister's forward pass (`cpu` module): the fast one, for llama
    /// models without experts or scaled RoPE; others fall back to candle.
    Cloister,
    /// candle's `quantized_llama`: for comparison, and for models the
    /// Cloister pass does not implement.
    Candle,
}

/// The weights, in the form their engine runs them.
#[derive(Clone)]
enum Weights {
    Cpu(Arc<CpuLlama>),
    Quantized(Box<quantized_llama::ModelWeights>),
    Full {
        model: Arc<llama::Llama>,
        config: Arc<llama::Config>,
    },
}

/// One request's copy of the model: shared weights, its own KV cache.
enum Session {
    Cpu(CpuSession),
    Quantized(Box<quantized_llama::ModelWeights>),
    Full {
        model: Arc<llama::Llama>,
        cache: llama::Cache,
    },
}

impl Session {
    fn forward(&mut self, input: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Cpu(session) => {
                if position != session.position() {
                    candle_core::bail!(
                        "position {position} given to a session at {}",
                        session.position()
                    );
                }
                let ids = input.flatten_all()?.to_vec1::<u32>()?;
                let logits = session.forward(&ids).map_err(candle_core::Error::Msg)?;
                let n = logits.len();
                Tensor::from_vec(logits, (1, n), &Device::Cpu)
            }
            Self::Quantized(m) => m.forward(input, position),
            Self::Full { model, cache } => model.forward(input, position, cache),
        }
    }
}

/// A llama-architecture model loaded from a bundle.
pub struct CandleEngine {
    model_id: String,
    weights: Weights,
    device: Device,
    tokenizer: TokenizerInfo,
    template: ChatTemplate,
    /// Token ids that end the answer.
    stop_tokens: HashSet<u32>,
    context: usize,
    settings: EngineSettings,
    description: String,
}

fn failed(what: &str) -> impl Fn(candle_core::Error) -> EngineError + '_ {
    move |e| EngineError::Failed(format!("{what}: {e}"))
}

/// Runs model-loading code that may panic on malformed input (some of
/// candle's loaders index without checking), turning a panic into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(EngineError::Failed(format!(
            "{what}: the model bundle is malformed (the loader gave up)"
        )))
    })
}

fn device(settings: &EngineSettings) -> Result<Device, EngineError> {
    if settings.gpu {
        return Device::new_cuda(0).map_err(|e| {
            EngineError::Failed(format!(
                "gpu = true but no CUDA device is usable (build with the `cuda` feature on a machine with a GPU): {e}"
            ))
        });
    }
    Ok(Device::Cpu)
}

/// Rewrites tensors whose quantization has no fast CPU kernel as Q8_0.
fn widen_slow_quantizations(
    content: &gguf_file::Content,
    gguf: &[u8],
    device: &Device,
) -> Result<Option<Vec<u8>>, EngineError> {
    let slow = |t: GgmlDType| matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
    if !content.tensor_infos.values().any(|i| slow(i.ggml_dtype)) {
        return Ok(None);
    }
    let mut reader = Cursor::new(gguf);
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let tensor = content
            .tensor(&mut reader, name, device)
            .map_err(failed("reading the GGUF"))?;
        let tensor =
            if slow(tensor.dtype()) && tensor.shape().dims().last().is_some_and(|d| d % 32 == 0) {
                let values = tensor.dequantize(device).map_err(failed("dequantizing"))?;
                QTensor::quantize(&values, GgmlDType::Q8_0).map_err(failed("requantizing"))?
            } else {
                tensor
            };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs).map_err(failed("rewriting the GGUF"))?;
    Ok(Some(out.into_inner()))
}

/// What a loader read from a bundle, before the engine is assembled.
struct Loaded {
    model_id: String,
    weights: Weights,
    tokenizer: TokenizerInfo,
    template: Option<String>,
    context: usize,
    description: String,
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Failed(format!("{what}: {e}")))
}

impl CandleEngine {
    /// Loads the model in an unsealed bundle (see [`crate::bundle`]).
    pub fn load(bundle: &[u8], settings: EngineSettings) -> Result<Self, EngineError> {
        Self::load_bundle(bundle, settings).map_err(EngineError::at_load)
    }

    fn load_bundle(bundle: &[u8], settings: EngineSettings) -> Result<Self, EngineError> {
        let files = ModelFiles::parse(bundle)?;
        let device = device(&settings)?;
        let loaded = match files {
            ModelFiles::Gguf {
                gguf,
                tokenizer_json,
                tokenizer_config,
            } => Self::load_gguf(&gguf, tokenizer_json, tokenizer_config, &device, &settings)?,
            ModelFiles::Safetensors {
                config,
                tokenizer_json,
                tokenizer_config,
                weights,
            } => Self::load_safetensors(
                &config,
                &tokenizer_json,
                tokenizer_config.as_deref(),
                weights,
                &device,
                &settings,
            )?,
        };
        Self::assemble(loaded, device, settings)
    }

    fn load_gguf(
        gguf: &[u8],
        tokenizer_json: Option<Vec<u8>>,
        tokenizer_config: Option<Vec<u8>>,
        device: &Device,
        settings: &EngineSettings,
    ) -> Result<Loaded, EngineError> {
        guarded("loading the GGUF model", || {
            let content = gguf_file::Content::read(&mut Cursor::new(gguf))
                .map_err(failed("reading the GGUF header"))?;
            let arch = metadata_string(&content, "general.architecture").unwrap_or_default();
            if arch != "llama" {
                return Err(EngineError::Failed(format!(
                    "the GGUF model's architecture is {arch:?}; this engine runs \"llama\" (Llama, SmolLM, TinyLlama, Mistral-style)"
                )));
            }
            let config = tokenizer_config
                .as_deref()
                .map(|c| json(c, "tokenizer_config.json"))
                .transpose()?;
            let tokenizer = match &tokenizer_json {
                Some(t) => tokenizer::from_json(t, config.as_ref())?,
                None => tokenizer::from_gguf(&content)?,
            };
            let template_source = config
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .or_else(|| metadata_string(&content, "tokenizer.chat_template"));
            let context = metadata_u32(&content, "llama.context_length")
                .map_or(QUANTIZED_MAX_CONTEXT, |c| c as usize)
                .min(QUANTIZED_MAX_CONTEXT);
            let quantization = content
                .tensor_infos
                .get("blk.0.attn_q.weight")
                .map(|i| format!("{:?}", i.ggml_dtype))
                .unwrap_or_default();
            let name = settings
                .model_id
                .clone()
                .or_else(|| metadata_string(&content, "general.name"))
                .unwrap_or_else(|| "model".into());
            let layers = metadata_u32(&content, "llama.block_count").unwrap_or(0);
            if device.is_cpu() && settings.kernels == CpuKernels::Cloister {
                let kernels = Kernels::detect();
                match CpuLlama::from_gguf(&content, gguf, kernels, !settings.keep_quantization) {
                    Ok(model) => {
                        return Ok(Loaded {
                            model_id: name.clone(),
                            weights: Weights::Cpu(Arc::new(model)),
                            tokenizer,
                            template: template_source,
                            context,
                            description: format!(
                                "{name}: GGUF llama, {layers} layers, {quantization} on Cloister's {} kernels",
                                kernels.name()
                            ),
                        })
                    }
                    Err(LoadError::Unsupported(why)) => {
                        tracing::info!(reason = %why, "the model runs on candle's kernels");
                    }
                    Err(LoadError::Invalid(e)) => {
                        return Err(EngineError::Failed(format!(
                            "loading the GGUF weights: {e}"
                        )))
                    }
                }
            }
            let widened = if settings.keep_quantization {
                None
            } else {
                widen_slow_quantizations(&content, gguf, device)?
            };
            let description = format!(
                "{name}: GGUF llama, {layers} layers, {quantization}{} on candle's kernels",
                if widened.is_some() {
                    " run as Q8_0"
                } else {
                    ""
                }
            );
            let weights = match &widened {
                Some(bytes) => {
                    let mut reader = Cursor::new(bytes.as_slice());
                    let content = gguf_file::Content::read(&mut reader)
                        .map_err(failed("reading the rewritten GGUF"))?;
                    quantized_llama::ModelWeights::from_gguf(content, &mut reader, device)
                }
                None => quantized_llama::ModelWeights::from_gguf(
                    content,
                    &mut Cursor::new(gguf),
                    device,
                ),
            }
            .map_err(failed("loading the GGUF weights"))?;
            Ok(Loaded {
                model_id: name,
                weights: Weights::Quantized(Box::new(weights)),
                tokenizer,
                template: template_source,
                context,
                description,
            })
        })
    }

    fn load_safetensors(
        config: &[u8],
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
        weights: Vec<u8>,
        device: &Device,
        settings: &EngineSettings,
    ) -> Result<Loaded, EngineError> {
        guarded("loading the safetensors model", move || {
            let llama_config: llama::LlamaConfig = serde_json::from_slice(config)
                .map_err(|e| EngineError::Failed(format!("config.json: {e}")))?;
            let config = llama_config.into_config(false);
            let tokenizer_config = tokenizer_config
                .map(|c| json(c, "tokenizer_config.json"))
                .transpose()?;
            let mut tokenizer = tokenizer::from_json(tokenizer_json, tokenizer_config.as_ref())?;
            if tokenizer.eos.is_none() {
                let id = match &config.eos_token_id {
                    Some(llama::LlamaEosToks::Single(id)) => Some(*id),
                    Some(llama::LlamaEosToks::Multiple(ids)) => ids.first().copied(),
                    None => None,
                };
                tokenizer.eos = id.and_then(|id| Some((id, tokenizer.tokenizer.id_to_token(id)?)));
            }
            let template_source = tokenizer_config
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            let dtype = if device.is_cuda() {
                DType::BF16
            } else {
                DType::F32
            };
            let vb = candle_nn::VarBuilder::from_buffered_safetensors(weights, dtype, device)
                .map_err(failed("reading model.safetensors"))?;
            let model = llama::Llama::load(vb, &config).map_err(failed("loading the weights"))?;
            let name = settings.model_id.clone().unwrap_or_else(|| "model".into());
            let description = format!(
                "{name}: safetensors llama, {} layers, {dtype:?}",
                config.num_hidden_layers
            );
            let context = config.max_position_embeddings;
            Ok(Loaded {
                model_id: name,
                weights: Weights::Full {
                    model: Arc::new(model),
                    config: Arc::new(config),
                },
                tokenizer,
                template: template_source,
                context,
                description,
            })
        })
    }

    /// The engine from what a loader read: chat template and stop tokens.
    fn assemble(
        loaded: Loaded,
        device: Device,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let Loaded {
            model_id,
            weights,
            tokenizer,
            template,
            context,
            description,
        } = loaded;
        let token_text =
            |t: &Option<(u32, String)>| t.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        let template = ChatTemplate::new(
            template.as_deref(),
            &token_text(&tokenizer.bos),
            &token_text(&tokenizer.eos),
        )?;
        let mut stop_tokens: HashSet<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| tokenizer.tokenizer.token_to_id(t))
            .collect();
        if let Some((id, _)) = &tokenizer.eos {
            stop_tokens.insert(*id);
        }
        if stop_tokens.is_empty() {
            return Err(EngineError::Failed(
                "the tokenizer names no end-of-sequence token, so answers would never end".into(),
            ));
        }
        Ok(Self {
            model_id,
            weights,
            device,
            tokenizer,
            template,
            stop_tokens,
            context,
            settings,
            description,
        })
    }

    /// One line saying what was loaded, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Tokens the model can attend to, prompt and answer together.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The prompt text `messages` become.
    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        self.template.render(messages)
    }

    /// The token ids of a prompt, as the model reads it.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>, EngineError> {
        let encoding = self
            .tokenizer
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| EngineError::Failed(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if let (true, Some((bos, text))) = (self.tokenizer.add_bos, &self.tokenizer.bos) {
            if !prompt.starts_with(text.as_str()) {
                ids.push(*bos);
            }
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    fn session(&self) -> Result<Session, EngineError> {
        Ok(match &self.weights {
            Weights::Cpu(model) => Session::Cpu(CpuSession::new(Arc::clone(model))),
            Weights::Quantized(w) => {
                let mut w = w.clone();
                w.clear_kv_cache();
                Session::Quantized(w)
            }
            Weights::Full { model, config } => Session::Full {
                model: model.clone(),
                cache: llama::Cache::new(true, DType::F32, config, &self.device)
                    .map_err(failed("allocating the KV cache"))?,
            },
        })
    }

    /// Generates from prompt token ids: the engine without the chat layer,
    /// used by benchmarks as the raw-generation baseline.
    pub fn generate_tokens(
        &self,
        prompt: &[u32],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        let max_tokens = params.max_tokens as usize;
        if prompt.len() + max_tokens > self.context {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt is {} tokens; with max_tokens {max_tokens} that exceeds the model's context of {} tokens",
                prompt.len(),
                self.context
            )));
        }
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else if params.top_p < 1.0 {
            Sampling::TopP {
                p: f64::from(params.top_p.max(0.0)),
                temperature: f64::from(params.temperature),
            }
        } else {
            Sampling::All {
                temperature: f64::from(params.temperature),
            }
        };
        let seed = params.seed.unwrap_or_else(random_seed);
        let mut sampler = LogitsProcessor::from_sampling(seed, sampling);
        let mut session = self.session()?;
        let mut detok = Detokenizer::new(&self.tokenizer.tokenizer);
        let mut stop = StopMatcher::new(&params.stop);
        let mut context: Vec<u32> = prompt.to_vec();
        let mut input = Tensor::new(prompt, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(failed("preparing the prompt"))?;
        let mut position = 0;
        let mut generated = 0u32;
        let mut finish_reason = FinishReason::Length;
        while (generated as usize) < max_tokens {
            let logits = session
                .forward(&input, position)
                .and_then(|l| l.squeeze(0))
                .and_then(|l| l.to_dtype(DType::F32))
                .map_err(failed("running the model"))?;
            position += input.dim(1).map_err(failed("input shape"))?;
            let logits = if self.settings.repeat_penalty == 1.0 {
                logits
            } else {
                let start = context.len().saturating_sub(self.settings.repeat_last_n);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    self.settings.repeat_penalty,
                    context.get(start..).unwrap_or_default(),
                )
                .map_err(failed("repeat penalty"))?
            };
            let next = sampler.sample(&logits).map_err(failed("sampling"))?;
            if self.stop_tokens.contains(&next) && !params.ignore_eos {
                finish_reason = FinishReason::Stop;
                break;
            }
            generated += 1;
            context.push(next);
            let piece = detok.push(next)?;
            let (release, stopped) = match stop.push(&piece) {
                Matched::Release(t) => (t, false),
                Matched::Stop(t) => (t, true),
            };
            if !release.is_empty() && on_text(&release).is_break() {
                finish_reason = FinishReason::Cancelled;
                break;
            }
            if stopped {
                finish_reason = FinishReason::Stop;
                break;
            }
            input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(failed("preparing the next token"))?;
        }
        if finish_reason != FinishReason::Cancelled {
            let rest = stop.finish();
            if !rest.is_empty() {
                let _ = on_text(&rest);
            }
        }
        Ok(Completion {
            text: stop.text().to_owned(),
            prompt_tokens: u32::try_from(prompt.len()).unwrap_or(u32::MAX),
            completion_tokens: generated,
            finish_reason,
        })
    }
}

/// A seed for a request that did not give one. Sampling needs variety, not
/// secrecy: the standard library's per-process random hash keys suffice.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn metadata_string(content: &gguf_file::Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .cloned()
}

fn metadata_u32(content: &gguf_file::Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl Engine for CandleEngine {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the chat has no messages".into(),
            ));
        }
        let prompt = self.prompt(messages)?;
        let ids = self.tokenize(&prompt)?;
        self.generate_tokens(&ids, params, on_text)
    }
}
