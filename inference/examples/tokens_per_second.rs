//! Time to first token and decode speed of the embedded engine on a model
//! file, in the same shape as `scripts/bench-inference`'s llama.cpp run, so
//! the two can be compared in one run.
//!
//! `cargo run --release -p cloister-inference --example tokens_per_second -- MODEL.gguf [RUNS]`
//!
//! The prompt is the ChatML text both engines are given; generation is
//! greedy, exactly 64 tokens (end-of-turn ignored), no repeat penalty.
//! `KERNELS=candle` runs candle's kernels instead of Cloister's, and
//! `KEEP_QUANTIZATION=1` keeps the file's types on candle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ops::ControlFlow;
use std::time::Instant;

use cloister_inference::embedded::{CandleEngine, CpuKernels, EngineSettings};
use cloister_inference::GenerationParams;

const PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the first-line treatment for hypertension?<|im_end|>\n<|im_start|>assistant\n";
const TOKENS: u32 = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: tokens_per_second MODEL [RUNS]");
    let runs: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("RUNS is a number"))
        .max(1);
    let keep = std::env::var("KEEP_QUANTIZATION").is_ok();
    let kernels = match std::env::var("KERNELS").as_deref() {
        Ok("candle") => CpuKernels::Candle,
        Ok("cloister") | Err(_) => CpuKernels::Cloister,
        Ok(other) => {
            eprintln!("KERNELS={other}: expected cloister or candle");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(&path).expect("cannot read the model");
    let loaded = Instant::now();
    let engine = CandleEngine::load(
        &bytes,
        EngineSettings {
            repeat_penalty: 1.0,
            keep_quantization: keep,
            kernels,
            ..EngineSettings::default()
        },
    )
    .expect("cannot load the model");
    let load_ms = loaded.elapsed().as_secs_f64() * 1e3;
    let ids = engine.tokenize(PROMPT).unwrap();
    let params = GenerationParams {
        max_tokens: TOKENS,
        ignore_eos: true,
        ..GenerationParams::default()
    };
    let (mut ttft, mut decode, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut text = String::new();
    for run in 0..=runs {
        let start = Instant::now();
        let mut first = None;
        let mut pieces = 0u32;
        let c = engine
            .generate_tokens(&ids, &params, &mut |_| {
                pieces += 1;
                first.get_or_insert_with(|| start.elapsed());
                ControlFlow::Continue(())
            })
            .unwrap();
        let all = start.elapsed();
        assert_eq!(c.completion_tokens, TOKENS);
        if run == 0 {
            text = c.text;
            continue; // warm-up
        }
        let first = first.unwrap_or(all);
        ttft.push(first.as_secs_f64() * 1e3);
        decode.push(f64::from(TOKENS - 1) / (all - first).as_secs_f64());
        total.push(f64::from(TOKENS) / all.as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": match kernels {
                CpuKernels::Cloister => "cloister (Cloister's kernels)",
                CpuKernels::Candle => "cloister (candle 0.11's kernels)",
            },
            "model": engine.description(),
            "threads": match kernels {
                CpuKernels::Cloister => rayon::current_num_threads(),
                CpuKernels::Candle => candle_core::utils::get_num_threads(),
            },
            "load_ms": load_ms,
            "prompt_tokens": ids.len(),
            "prompt_ids": ids,
            "runs": runs,
            "ttft_ms_median": median(ttft),
            "decode_tok_s_median": median(decode),
            "total_tok_s_median": median(total),
            "text": text,
        })
    );
}
