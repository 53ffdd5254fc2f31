//! Real inference inside the enclave, end to end with real processes: a
//! synthetic llama model and a synthetic guideline corpus are sealed,
//! released by the key broker to the attested enclave, loaded into its
//! memory by the candle engine, and queried through cloisterd's relay.
//!
//! The model's weights are random, so its answers are noise; what is
//! checked is everything around them: that the model answers, sampling and
//! stop parameters reach it, sources are retrieved and reach the citations
//! module, FHIR bundles become the patient record, and refusals are clear.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use cloister_inference::retrieval::{build_bundle, Passage};
use cloister_inference::synthetic::{tiny_embedder, TinyLlama};
use cloister_tests::{text, Broker, Cluster};
use serde_json::Value;

const FHIR: &str = "fixtures/fhir/ckd_stage3-7.json";

fn fixture(rel: &str) -> PathBuf {
    // Looked up at run time: the shared build cache reuses test binaries
    // across checkouts.
    std::env::current_dir().unwrap().join(rel)
}

fn passage(id: &str, title: &str, text: &str) -> Passage {
    Passage {
        id: id.into(),
        guideline: id.split('/').next().unwrap().into(),
        title: title.into(),
        section: "recommendations".into(),
        doi: format!("10.9999/{}", id.replace('/', ".")),
        year: Some(2024),
        text: text.into(),
    }
}

fn corpus() -> Vec<u8> {
    let (config, tokenizer, weights) = tiny_embedder().unwrap();
    let passages = vec![
        passage(
            "af/anticoagulation#1",
            "Atrial fibrillation",
            "apixaban dose for stroke prevention",
        ),
        passage(
            "ckd/renal#1",
            "Chronic kidney disease",
            "renal dose of insulin in kidney failure",
        ),
        passage("burn/fluid#1", "Burns", "fluid for burn"),
        passage("asthma/dose#1", "Asthma", "what is the asthma dose"),
    ];
    build_bundle(
        "synthetic",
        passages,
        (&config, &tokenizer, weights),
        &mut |_| {},
    )
    .unwrap()
}

fn seal(cluster: &Cluster, broker: &Broker, name: &str, kind: &str, plain: &[u8]) -> PathBuf {
    broker.seal_for(cluster, name, kind, plain).unwrap()
}

struct System {
    cluster: Cluster,
    _broker: Broker,
}

fn start(tag: &str) -> System {
    let mut broker = Broker::init(tag).unwrap();
    let extra = format!(
        "{}\n[candle]\nrepeat_penalty = 1.0\n\n[retrieval]\nbundle = \"guidelines\"\ntop_k = 3\nmin_score = -1.0\n\n[[sealed]]\nname = \"model\"\nkey_id = \"model-key\"\nkind = \"model\"\n\n[[sealed]]\nname = \"guidelines\"\nkey_id = \"guidelines-key\"\nkind = \"data\"\n",
        broker.enclave_toml()
    );
    let mut cluster = Cluster::prepare_with_engine(tag, "candle", &extra).unwrap();
    let model = seal(
        &cluster,
        &broker,
        "model",
        "model",
        &TinyLlama::default().gguf().unwrap(),
    );
    let guidelines = seal(&cluster, &broker, "guidelines", "data", &corpus());
    broker.start().unwrap();
    cluster
        .launch(&[
            ("model", model.as_path()),
            ("guidelines", guidelines.as_path()),
        ])
        .unwrap();
    cluster.wait_running().unwrap();
    System {
        cluster,
        _broker: broker,
    }
}

impl System {
    fn token(&self, patient: Option<&str>) -> PathBuf {
        let mut claims = self.cluster.claims();
        claims.patient = patient.map(str::to_owned);
        self.cluster
            .token_file(&format!("token-{}", patient.unwrap_or("none")), &claims)
            .unwrap()
    }

    /// `cloister query --json ARGS`: (exit status, output).
    fn query(&self, token: &Path, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self
            .cluster
            .query(&self.cluster.policy_path(), token, &all)
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (code, value)
    }
}

#[test]
fn the_sealed_model_answers_with_sources_and_the_record_inside_the_enclave() {
    let system = start("inference");
    let log = system
        .cluster
        .wait_for_log("model loaded into enclave memory")
        .unwrap();
    assert!(log.contains("tiny-random-llama"), "{log}");
    let token = system.token(Some("6D367230"));

    // A plain chat: the model answers, and says who answered.
    let (code, out) = system.query(&token, &["--max-tokens", "12", "Hello there"]);
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(out["model"], "tiny-random-llama");
    let response = &out["response"];
    let usage = &response["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    assert!(
        usage["completion_tokens"].as_u64().unwrap() <= 12,
        "{usage}"
    );
    assert_eq!(response["cloister"]["task"], "chat");
    assert_eq!(response["cloister"]["citations"], serde_json::json!([]));
    let enclave = &response["cloister"]["enclave"];
    assert_eq!(enclave["tee"], "sim");
    assert_eq!(enclave["insecure"], true);
    assert_eq!(enclave["model"], "tiny-random-llama");
    assert_eq!(enclave["corpus_passages"], 4);
    assert!(response["cloister"]["audit"]["record"].is_u64());

    // Greedy answers repeat; sampled ones repeat under the same seed.
    let again = system
        .query(&token, &["--max-tokens", "12", "Hello there"])
        .1;
    assert_eq!(again["answer"], out["answer"]);
    let sampled = |seed: &str| {
        system
            .query(
                &token,
                &[
                    "--max-tokens",
                    "12",
                    "--temperature",
                    "1.0",
                    "--seed",
                    seed,
                    "Hello there",
                ],
            )
            .1["answer"]
            .clone()
    };
    assert_eq!(sampled("5"), sampled("5"));

    // A question for the guidelines: sources are retrieved, listed with
    // their DOIs, and handed to the citations module, which refuses an
    // answer (this one is noise) that cites none of them.
    let (code, out) = system.query(
        &token,
        &[
            "--task",
            "guideline_qa",
            "--max-tokens",
            "16",
            "apixaban dose for stroke prevention",
        ],
    );
    assert_eq!(code, 4, "{out:#}");
    let cloister = &out["cloister"];
    assert_eq!(out["code"], "no_citation", "{out:#}");
    let output_gate = &cloister["policy"]["output"]["modules"];
    assert!(
        output_gate
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["module"] == "citations" && m["effect"] == "deny"),
        "{cloister:#}"
    );

    // A summary from the patient's FHIR record.
    let fhir = fixture(FHIR);
    let fhir = fhir.display().to_string();
    let (code, out) = system.query(
        &token,
        &[
            "--task",
            "summarize",
            "--fhir",
            &fhir,
            "--max-tokens",
            "16",
            "Summarise this patient's history.",
        ],
    );
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(out["response"]["cloister"]["task"], "summarize");
    // The record is in the prompt: many more prompt tokens than the question.
    assert!(
        out["response"]["usage"]["prompt_tokens"].as_u64().unwrap() > 400,
        "{out:#}"
    );

    // Refusals: a prior authorization without a record, a record of another patient,
    // a task the API does not know.
    let (code, out) = system.query(&token, &["--task", "prior_auth", "Request an MRI."]);
    assert_eq!(
        (code, out["code"].as_str()),
        (4, Some("fhir_required")),
        "{out:#}"
    );
    let (code, out) = system.query(
        &token,
        &[
            "--task",
            "summarize",
            "--patient",
            "someone-else",
            "--fhir",
            &fhir,
            "Summarise.",
        ],
    );
    assert_eq!(
        (code, out["code"].as_str()),
        (4, Some("patient_mismatch")),
        "{out:#}"
    );
    let (code, out) = system.query(&token, &["--task", "poetry", "Hi"]);
    assert_eq!(
        (code, out["code"].as_str()),
        (4, Some("unknown_task")),
        "{out:#}"
    );
    let (code, out) = system.query(&token, &["--max-tokens", "100000", "Hi"]);
    assert_eq!(
        (code, out["code"].as_str()),
        (4, Some("invalid_max_tokens")),
        "{out:#}"
    );

    // Streaming through the output gates arrives whole.
    let out = system
        .cluster
        .query(
            &system.cluster.policy_path(),
            &token,
            &["--stream", "--max-tokens", "8", "Hello there"],
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn an_enclave_whose_model_bundle_is_not_a_model_does_not_serve() {
    let mut broker = Broker::init("inference-bad-model").unwrap();
    let extra = format!(
        "{}\n[[sealed]]\nname = \"model\"\nkey_id = \"model-key\"\nkind = \"model\"\n",
        broker.enclave_toml()
    );
    let mut cluster =
        Cluster::prepare_with_engine("inference-bad-model", "candle", &extra).unwrap();
    let model = seal(
        &cluster,
        &broker,
        "model",
        "model",
        b"these bytes are not a model",
    );
    broker.start().unwrap();
    cluster.launch(&[("model", model.as_path())]).unwrap();
    let log = cluster.wait_for_log("cannot be loaded").unwrap();
    assert!(
        log.contains("the model in sealed bundle \"model\" cannot be loaded"),
        "{log}"
    );
}
