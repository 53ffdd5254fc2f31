//! The full query path against raw generation of the same tokens, in one
//! run: a real enclave process (sim TEE) with the model and a guideline
//! corpus sealed, released by the key broker and loaded by the embedded
//! engine, queried over RA-TLS through cloisterd's relay (attested channel,
//! input and output gates, audit record made durable), beside the same model
//! generating the same answer in this process.
//!
//! Two queries: `chat` (no retrieval) and `guideline_qa`, where the enclave
//! also embeds the question, ranks the corpus and quotes the top passages;
//! its baseline generates from the very prompt the enclave builds (the
//! passages retrieved once, up front, and quoted by
//! `cloister_inference::tasks`), so the difference is the path's cost,
//! retrieval included.
//!
//! On the synthetic model and corpus by default; `CLOISTER_BENCH_GGUF` and
//! `CLOISTER_BENCH_CORPUS` pick real ones (SmolLM2 and open-medicine from
//! scripts/fetch-models). The enclave is the release binary beside this
//! bench, so build them and the standard policy bundle first:
//! `cargo build --release --workspace --bins && scripts/build-policies`,
//! then `cargo bench -p cloister-tests --bench query_path`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ops::ControlFlow;

use cloister::client::{AttestedConnection, ClientError};
use cloister_inference::embedded::{CandleEngine, EngineSettings};
use cloister_inference::retrieval::Index;
use cloister_inference::synthetic::{tiny_corpus, TinyLlama};
use cloister_inference::{tasks, ChatMessage, Completion, Engine, GenerationParams};
use cloister_tests::{Broker, Cluster};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

const TOKENS: u32 = 64;
const TOP_K: usize = 3;
const MIN_SCORE: f32 = 0.2;
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

fn user(content: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: content.into(),
    }
}

/// One query: what the client sends, and the messages the engine is given
/// after the enclave has grounded it.
struct Query {
    task: &'static str,
    body: Value,
    grounded: Vec<ChatMessage>,
    /// The corpus passages quoted in `grounded`, which the enclave must
    /// list as its citations: a refusal carries no text to compare, so
    /// this is what shows the enclave retrieved what the baseline quotes.
    sources: Vec<String>,
}

/// Whether the enclave's verdict on a query agrees with the baseline's
/// answer: the same sources retrieved, and the same text where it is
/// allowed or a refusal by the `citations` module (the standard bundle's
/// `on_missing = "deny"`) where the answer cites none of them.
fn agrees(
    served: &Result<cloister::client::ChatAnswer, ClientError>,
    raw: &Completion,
    sources: &[String],
) -> bool {
    let same_sources = |cloister: Option<&Value>| {
        let listed: Option<Vec<&str>> = cloister
            .and_then(|c| c.get("citations"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["passage"].as_str()).collect());
        listed.is_some_and(|listed| listed == sources)
    };
    match served {
        Ok(answer) => {
            answer.text == raw.text
                && answer.raw.pointer("/usage/completion_tokens")
                    == Some(&json!(raw.completion_tokens))
                && same_sources(answer.raw.get("cloister"))
        }
        Err(ClientError::Api { code, cloister, .. }) => {
            code == "no_citation" && !raw.text.contains("[S") && same_sources(Some(cloister))
        }
        Err(_) => false,
    }
}

fn bench(c: &mut Criterion) {
    let model = model();
    let corpus = corpus();
    let mut broker = Broker::init("bench-query-path").unwrap();
    let extra = format!(
        "{}\n[candle]\nrepeat_penalty = 1.0\n\n[retrieval]\nbundle = \"guidelines\"\ntop_k = {TOP_K}\nmin_score = {MIN_SCORE}\n\n[[sealed]]\nname = \"model\"\nkey_id = \"model-key\"\nkind = \"model\"\n\n[[sealed]]\nname = \"guidelines\"\nkey_id = \"guidelines-key\"\nkind = \"data\"\n",
        broker.enclave_toml()
    );
    let mut cluster = Cluster::prepare_with_engine("bench-query-path", "candle", &extra).unwrap();
    let sealed_model = broker.seal_for(&cluster, "model", "model", &model).unwrap();
    let sealed_corpus = broker
        .seal_for(&cluster, "guidelines", "data", &corpus)
        .unwrap();
    broker.start().unwrap();
    cluster
        .launch(&[
            ("model", sealed_model.as_path()),
            ("guidelines", sealed_corpus.as_path()),
        ])
        .unwrap();
    cluster.wait_running().unwrap();
    let claims = cluster.claims();
    let token = std::fs::read_to_string(cluster.token_file("bench.jwt", &claims).unwrap()).unwrap();

    // The same engine, settings and prompts in this process: the baseline.
    let engine = CandleEngine::load(
        &model,
        EngineSettings {
            repeat_penalty: 1.0,
            ..EngineSettings::default()
        },
    )
    .unwrap();
    let index = Index::load(&corpus).unwrap();
    let hits = index.search(QUESTION, TOP_K, MIN_SCORE).unwrap();
    let sources: Vec<String> = hits.iter().map(|hit| hit.passage.id.clone()).collect();
    let passages: Vec<String> = hits
        .iter()
        .enumerate()
        .map(|(i, hit)| tasks::quote(&format!("S{}", i + 1), hit.passage))
        .collect();
    let mut grounded = vec![user(QUESTION)];
    tasks::apply("guideline_qa", &mut grounded, None, &passages);
    let chat = vec![
        ChatMessage {
            role: "system".into(),
            content: "You are a helpful assistant.".into(),
        },
        user("What is the first-line treatment for hypertension?"),
    ];
    let queries = [
        Query {
            task: "chat",
            body: json!({ "messages": chat, "max_tokens": TOKENS }),
            grounded: chat.clone(),
            sources: Vec::new(),
        },
        Query {
            task: "guideline_qa",
            body: json!({
                "messages": [user(QUESTION)],
                "max_tokens": TOKENS,
                "cloister": { "task": "guideline_qa" },
            }),
            grounded,
            sources,
        },
    ];
    let params = GenerationParams {
        max_tokens: TOKENS,
        ..GenerationParams::default()
    };
    let runtime = cloister_tests::runtime();
    let ask = |body: &Value| {
        runtime.block_on(async {
            let mut connection =
                AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
            connection.chat_body(&token, body).await
        })
    };

    for query in &queries {
        // Both sides must do the same work: the same prompt and tokens,
        // greedily.
        let raw = engine
            .generate(&query.grounded, &params, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let served = ask(&query.body);
        assert!(
            agrees(&served, &raw, &query.sources),
            "{}: the enclave and the baseline disagree: {served:?} against {:?}",
            query.task,
            raw.text
        );
        let verdict = if served.is_ok() { "allowed" } else { "denied" };
        let mut group = c.benchmark_group(format!(
            "query_path/{}/{}/{}_tokens_{verdict}",
            engine.model_id(),
            query.task,
            raw.completion_tokens
        ));
        group.sample_size(10);
        // A fresh attested connection per query (RA-TLS handshake and
        // appraisal included): the most a query can cost a client.
        group.bench_function("enclave_via_relay", |b| {
            b.iter(|| assert!(agrees(&ask(&query.body), &raw, &query.sources)));
        });
        group.bench_function("raw_generation", |b| {
            b.iter(|| {
                engine
                    .generate(&query.grounded, &params, &mut |_| ControlFlow::Continue(()))
                    .unwrap()
            });
        });
        group.finish();
    }
    cluster.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
