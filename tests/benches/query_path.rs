//! The full query path against raw generation of the same tokens, in one
//! run: a real enclave process (sim TEE) with the model sealed, released by
//! the key broker and loaded by the embedded engine, queried over RA-TLS
//! through cloisterd's relay (attested channel, input and output gates,
//! audit record made durable), beside the same model generating the same
//! answer in this process.
//!
//! On the synthetic model by default; `CLOISTER_BENCH_GGUF` picks a real
//! one (SmolLM2 from scripts/fetch-models). The enclave is the release
//! binary beside this bench, so build them and the standard policy bundle
//! first: `cargo build --release --workspace --bins && scripts/build-policies`,
//! then `cargo bench -p cloister-tests --bench query_path`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ops::ControlFlow;

use cloister::client::AttestedConnection;
use cloister_inference::embedded::{CandleEngine, EngineSettings};
use cloister_inference::synthetic::TinyLlama;
use cloister_inference::{ChatMessage, Engine, GenerationParams};
use cloister_tests::{Broker, Cluster};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

const TOKENS: u32 = 64;

fn bench(c: &mut Criterion) {
    let model = match std::env::var_os("CLOISTER_BENCH_GGUF") {
        Some(path) => std::fs::read(path).expect("CLOISTER_BENCH_GGUF is unreadable"),
        None => TinyLlama::default().gguf().unwrap(),
    };
    let mut broker = Broker::init("bench-query-path").unwrap();
    let extra = format!(
        "{}\n[candle]\nrepeat_penalty = 1.0\n\n[[sealed]]\nname = \"model\"\nkey_id = \"model-key\"\nkind = \"model\"\n",
        broker.enclave_toml()
    );
    let mut cluster = Cluster::prepare_with_engine("bench-query-path", "candle", &extra).unwrap();
    let sealed = broker.seal_for(&cluster, "model", "model", &model).unwrap();
    broker.start().unwrap();
    cluster.launch(&[("model", sealed.as_path())]).unwrap();
    cluster.wait_running().unwrap();
    let claims = cluster.claims();
    let token = std::fs::read_to_string(cluster.token_file("bench.jwt", &claims).unwrap()).unwrap();

    // The same engine, settings and chat in this process: the baseline.
    let engine = CandleEngine::load(
        &model,
        EngineSettings {
            repeat_penalty: 1.0,
            ..EngineSettings::default()
        },
    )
    .unwrap();
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: "You are a helpful assistant.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "What is the first-line treatment for hypertension?".into(),
        },
    ];
    let params = GenerationParams {
        max_tokens: TOKENS,
        ..GenerationParams::default()
    };
    let body = json!({ "messages": messages, "max_tokens": TOKENS });

    let runtime = cloister_tests::runtime();
    let mut connection = runtime
        .block_on(AttestedConnection::connect(
            &cluster.endpoint,
            cluster.policy(),
        ))
        .unwrap();
    // Both sides must do the same work: the same tokens, greedily.
    let raw = engine
        .generate(&messages, &params, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let served = runtime
        .block_on(connection.chat_body(&token, &body))
        .unwrap();
    assert_eq!(
        served.text, raw.text,
        "the enclave and the baseline disagree"
    );
    assert_eq!(
        served
            .raw
            .pointer("/usage/completion_tokens")
            .cloned()
            .unwrap_or_default(),
        json!(raw.completion_tokens)
    );

    let mut group = c.benchmark_group(format!(
        "query_path/{}/{}_tokens",
        engine.model_id(),
        raw.completion_tokens
    ));
    group.sample_size(10);
    // A fresh attested connection per query (RA-TLS handshake and
    // appraisal included): the most a query can cost a client.
    group.bench_function("enclave_via_relay", |b| {
        b.iter(|| {
            runtime
                .block_on(async {
                    let mut connection =
                        AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
                    connection.chat_body(&token, &body).await
                })
                .unwrap()
        });
    });
    group.bench_function("raw_generation", |b| {
        b.iter(|| {
            engine
                .generate(&messages, &params, &mut |_| ControlFlow::Continue(()))
                .unwrap()
        });
    });
    group.finish();
    cluster.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
