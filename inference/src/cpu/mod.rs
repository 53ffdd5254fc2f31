//! Cloister's own CPU forward pass for GGUF llama models.
//!
//! candle 0.11 runs Q4_1 without SIMD on x86 and its Q8_0 product on one
//! row at a time, which left SmolLM2 decoding well below llama.cpp's speed
//! on the same file (figures in README). This module keeps the file's
//! 4-bit weights, interleaves rows so one activation load serves four of
//! them, and runs the whole layer without allocating tensors. candle still
//! parses the GGUF, dequantizes types without a layout here, samples, and
//! runs everything this pass refuses ([`llama::LoadError::Unsupported`]):
//! GPUs, mixture-of-experts, scaled RoPE, safetensors.

pub(crate) mod llama;
pub(crate) mod quant;
