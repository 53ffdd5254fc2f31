//! The embedded engine's hot path against its own baseline, in one run:
//!
//! - `raw`: 64 tokens generated greedily from prompt token ids
//!   (`CandleEngine::generate_tokens`), the work itself;
//! - `raw/candle-kernels`: the same on candle 0.11's CPU kernels
//!   (`kernels = "candle"`), the baseline Cloister's own pass replaced;
//! - `chat`: the same through `Engine::generate`, adding the chat template,
//!   tokenization and streaming decode;
//! - `chat+retrieval`: as `chat`, after embedding the question and ranking
//!   the corpus (`Index::search`), as a `guideline_qa` query does.
//!
//! On the synthetic models by default (so it runs anywhere); set
//! `CLOISTER_BENCH_GGUF` (and `CLOISTER_BENCH_CORPUS`) to a real model (and
//! corpus bundle) to measure those, e.g. SmolLM2 from scripts/fetch-models.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::ops::ControlFlow;

use cloister_inference::embedded::{CandleEngine, CpuKernels, EngineSettings};
use cloister_inference::retrieval::Index;
use cloister_inference::synthetic::{tiny_corpus, TinyLlama};
use cloister_inference::{ChatMessage, Engine, GenerationParams};
use criterion::{criterion_group, criterion_main, Criterion};

const QUESTION: &str = "How should the dose of apixaban be reduced in atrial fibrillation?";

fn model() -> Vec<u8> {
    match std::env::var_os("CLOISTER_BENCH_GGUF") {
        Some(path) => std::fs::read(path).expect("CLOISTER_BENCH_GGUF is unreadable"),
        None => TinyLlama::default().gguf().unwrap(),
    }
}

fn corpus() -> Vec<u8> {
    if let Some(path) = std::env::var_os("CLOISTER_BENCH_CORPUS") {
        return std::fs::read(path).expect("CLOISTER_BENCH_CORPUS is unreadable");
    }
    tiny_corpus(200).unwrap()
}

fn bench(c: &mut Criterion) {
    let engine = CandleEngine::load(
        &model(),
        EngineSettings {
            repeat_penalty: 1.0,
            ..EngineSettings::default()
        },
    )
    .unwrap();
    let on_candle = CandleEngine::load(
        &model(),
        EngineSettings {
            repeat_penalty: 1.0,
            kernels: CpuKernels::Candle,
            ..EngineSettings::default()
        },
    )
    .unwrap();
    let index = Index::load(&corpus()).unwrap();
    let params = GenerationParams {
        max_tokens: 64,
        ignore_eos: true,
        ..GenerationParams::default()
    };
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: "You are a helpful assistant.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: QUESTION.into(),
        },
    ];
    let prompt = engine.tokenize(&engine.prompt(&messages).unwrap()).unwrap();
    let mut group = c.benchmark_group(format!("generate_64/{}", engine.model_id()));
    group.sample_size(10);
    group.bench_function("raw", |b| {
        b.iter(|| {
            engine
                .generate_tokens(&prompt, &params, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        });
    });
    group.bench_function("raw/candle-kernels", |b| {
        b.iter(|| {
            on_candle
                .generate_tokens(&prompt, &params, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        });
    });
    group.bench_function("chat", |b| {
        b.iter(|| {
            engine
                .generate(&messages, &params, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        });
    });
    group.bench_function("chat+retrieval", |b| {
        b.iter(|| {
            let hits = index.search(QUESTION, 3, 0.0).unwrap();
            assert!(hits.len() <= 3);
            engine
                .generate(&messages, &params, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        });
    });
    group.finish();
    c.bench_function("retrieval/search", |b| {
        b.iter(|| index.search(QUESTION, 3, 0.0).unwrap().len());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
