//! The embedded engine on synthetic llama models (random weights, real
//! shapes): loading both bundle layouts, tokenization, sampling, stop
//! sequences, streaming, concurrency and refusals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use cloister_inference::embedded::{CandleEngine, EngineSettings};
use cloister_inference::synthetic::TinyLlama;
use cloister_inference::{ChatMessage, Engine, EngineError, FinishReason, GenerationParams};

fn gguf() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| TinyLlama::default().gguf().unwrap())
}

fn engine() -> Arc<CandleEngine> {
    static ENGINE: OnceLock<Arc<CandleEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(CandleEngine::load(gguf(), EngineSettings::default()).unwrap()))
        .clone()
}

fn chat(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: "system".into(),
            content: "You are terse.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        },
    ]
}

fn params(max_tokens: u32) -> GenerationParams {
    GenerationParams {
        max_tokens,
        ..GenerationParams::default()
    }
}

fn run(
    engine: &dyn Engine,
    text: &str,
    p: &GenerationParams,
) -> (String, cloister_inference::Completion) {
    let mut streamed = String::new();
    let c = engine
        .generate(&chat(text), p, &mut |t| {
            streamed.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    (streamed, c)
}

#[test]
fn greedy_generation_is_deterministic_and_streams_what_it_returns() {
    let e = engine();
    assert_eq!(e.model_id(), "tiny-random-llama");
    let (streamed, a) = run(e.as_ref(), "Hello", &params(24));
    let (_, b) = run(e.as_ref(), "Hello", &params(24));
    assert_eq!(a.text, b.text);
    assert_eq!(streamed, a.text);
    assert!(a.completion_tokens <= 24);
    if a.finish_reason == FinishReason::Length {
        assert_eq!(a.completion_tokens, 24);
    }
    // The prompt is the ChatML rendering, each control token one id.
    let prompt = e.prompt(&chat("Hello")).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = e.tokenize(&prompt).unwrap();
    assert_eq!(a.prompt_tokens as usize, ids.len());
    assert_eq!(ids[0], 1, "<|im_start|> is one token");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2, "two <|im_end|>");
}

#[test]
fn the_gguf_tokenizer_splits_like_llama_cpps_smollm() {
    let e = engine();
    // No prefix space: "system" starts with 's', not 'Ġ'; each digit alone.
    let ids = e.tokenize("system 2024").unwrap();
    assert_eq!(ids.len(), "system 2024".len());
    let plain = e.tokenize("<|im_start|>").unwrap();
    assert_eq!(plain, vec![1]);
}

#[test]
fn sampling_is_reproducible_by_seed() {
    let e = engine();
    let sampled = |seed| GenerationParams {
        max_tokens: 32,
        temperature: 1.0,
        top_p: 0.9,
        seed: Some(seed),
        ..GenerationParams::default()
    };
    let a = run(e.as_ref(), "Hi", &sampled(1)).1.text;
    let b = run(e.as_ref(), "Hi", &sampled(1)).1.text;
    let c = run(e.as_ref(), "Hi", &sampled(2)).1.text;
    let d = run(e.as_ref(), "Hi", &sampled(3)).1.text;
    assert_eq!(a, b);
    assert!(a != c || a != d, "three seeds gave one answer: {a:?}");
}

#[test]
fn stop_sequences_cut_the_answer_and_are_not_streamed() {
    let e = engine();
    let (_, full) = run(e.as_ref(), "Hello", &params(40));
    let text = full.text.clone();
    // Stop at a piece of the greedy answer from its middle.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 8, "answer too short to test: {text:?}");
    let stop: String = chars[4..7].iter().collect();
    let expected: String = text[..text.find(&stop).unwrap()].to_owned();
    let p = GenerationParams {
        stop: vec![stop.clone()],
        ..params(40)
    };
    let (streamed, c) = run(e.as_ref(), "Hello", &p);
    assert_eq!(c.text, expected);
    assert_eq!(streamed, expected);
    assert_eq!(c.finish_reason, FinishReason::Stop);
}

#[test]
fn a_consumer_can_cancel() {
    let e = engine();
    let mut pieces = 0;
    let c = e
        .generate(&chat("Hello"), &params(40), &mut |_| {
            pieces += 1;
            if pieces == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Cancelled);
    assert_eq!(pieces, 3);
}

#[test]
fn concurrent_requests_get_the_answers_they_would_alone() {
    let e = engine();
    let prompts = ["one", "two", "three", "four"];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| run(e.as_ref(), p, &params(16)).1.text)
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let e = e.clone();
                s.spawn(move || run(e.as_ref(), p, &params(16)).1.text)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);
}

#[test]
fn a_prompt_beyond_the_context_is_refused() {
    let e = engine();
    let long = "x".repeat(2100);
    let err = e
        .generate(&chat(&long), &params(8), &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest(m) if m.contains("context of 2048")),
        "{err}"
    );
    assert!(matches!(
        e.generate(&[], &params(8), &mut |_| ControlFlow::Continue(())),
        Err(EngineError::InvalidRequest(_))
    ));
}

#[test]
fn safetensors_bundles_load_and_generate() {
    let bundle = TinyLlama::default().safetensors_bundle().unwrap();
    let e = CandleEngine::load(
        &bundle,
        EngineSettings {
            model_id: Some("tiny-st".into()),
            ..EngineSettings::default()
        },
    )
    .unwrap();
    assert_eq!(e.model_id(), "tiny-st");
    assert!(e.description().contains("safetensors"));
    let (streamed, a) = run(&e, "Hello", &params(12));
    let (_, b) = run(&e, "Hello", &params(12));
    assert_eq!(a.text, b.text);
    assert_eq!(streamed, a.text);
}

#[test]
fn malformed_bundles_are_refused_without_panicking() {
    let good = gguf();
    for cut in [4, 16, 200, good.len() / 2, good.len() - 1] {
        let r = CandleEngine::load(&good[..cut], EngineSettings::default());
        assert!(r.is_err(), "a GGUF cut at {cut} loaded");
    }
    // A flipped byte in the header's tensor table.
    let mut bad = good.to_vec();
    bad[30] ^= 0xff;
    let _ = CandleEngine::load(&bad, EngineSettings::default());
    let Err(e) = CandleEngine::load(b"not a model", EngineSettings::default()) else {
        panic!("a bundle that is no model loaded");
    };
    assert!(matches!(e, EngineError::Unloadable(_)), "{e:?}");
    assert!(e.to_string().starts_with("model bundle: "), "{e}");
    let mut st = TinyLlama::default().safetensors_bundle().unwrap();
    let n = st.len();
    st.truncate(n / 2);
    assert!(CandleEngine::load(&st, EngineSettings::default()).is_err());
}
