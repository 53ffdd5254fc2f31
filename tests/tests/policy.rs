//! The policy gate end to end: real `cloisterd`, a real sim enclave running
//! the standard bundle (built by scripts/build-policies), `cloister query`
//! and the client library over the attested channel.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use cloister::client::{AttestedConnection, ClientError};
use cloister::dev::standard_policy_bundle;
use cloister_attestation::ratls::RaTlsError;
use cloister_attestation::AppraisalPolicy;
use cloister_policy::Bundle;
use cloister_tests::{bin_dir, runtime, text, Cluster};
use serde_json::{json, Value};

fn standard_digest() -> String {
    hex::encode(
        Bundle::read(&standard_policy_bundle(&bin_dir()))
            .unwrap()
            .digest(),
    )
}

/// The modules that ran at `gate`, as (name, effect) pairs.
fn decisions(policy: &Value, gate: &str) -> Vec<(String, String)> {
    policy[gate]["modules"]
        .as_array()
        .map(|modules| {
            modules
                .iter()
                .map(|m| {
                    (
                        m["module"].as_str().unwrap().to_owned(),
                        m["effect"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn allowed_denied_and_redacted_queries() {
    let cluster = Cluster::start("policy-gates").unwrap();
    let policy = cluster.policy();
    let rt = runtime();

    // Allowed: a clinician, treatment, about their own patient.
    let clinician = cluster.idp.mint(&cluster.claims()).unwrap();
    let body = json!({
        "messages": [{"role": "user", "content": "Mr. Alan Turner, DOB 02/11/1950: summarise the admission."}],
        "cloister": {"task": "summarize", "patient": "Patient/e2e"},
    });
    let answer = rt
        .block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, policy.clone()).await?;
            c.chat_body(&clinician, &body).await
        })
        .unwrap();
    assert!(
        answer.text.contains("Mr. Alan Turner"),
        "treatment sees the name: {}",
        answer.text
    );
    let report = &answer.raw["cloister"]["policy"];
    assert_eq!(report["bundle"], standard_digest());
    assert_eq!(
        decisions(report, "input"),
        [
            ("size-limit".into(), "allow".into()),
            ("access".into(), "allow".into()),
            ("phi-guard".into(), "allow".into())
        ]
    );
    assert_eq!(
        decisions(report, "output"),
        [
            ("phi-guard".into(), "allow".into()),
            ("citations".into(), "allow".into())
        ]
    );

    // Denied by access: another clinician's patient. Nothing is generated.
    let other_patient = json!({
        "messages": [{"role": "user", "content": "Summarise the admission."}],
        "cloister": {"task": "summarize", "patient": "Patient/someone-else"},
    });
    let denied = rt.block_on(async {
        let mut c = AttestedConnection::connect(&cluster.endpoint, policy.clone()).await?;
        c.chat_body(&clinician, &other_patient).await
    });
    match denied {
        Err(ClientError::Api {
            status,
            code,
            message,
            cloister,
        }) => {
            assert_eq!(status, 403);
            assert_eq!(code, "not_treating_patient");
            assert!(message.contains("access"), "{message}");
            assert_eq!(
                decisions(&cloister["policy"], "input").last().unwrap(),
                &("access".to_owned(), "deny".to_owned())
            );
            assert!(
                cloister["policy"]["output"].is_null(),
                "no answer was judged"
            );
        }
        other => panic!("expected a 403 from the access module, got {other:?}"),
    }

    // Redacted by phi-guard: a researcher's prompt is de-identified before
    // the model sees it (the echo engine repeats what it was given).
    let mut research = cluster.claims();
    research.role = "researcher".into();
    research.purpose_of_use = "HRESCH".into();
    research.patient = None;
    let researcher = cluster.idp.mint(&research).unwrap();
    let answer = rt
        .block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, policy.clone()).await?;
            c.chat(
                &researcher,
                "Mrs. Maria Garcia, MRN 4471298, called 555-867-5309: typical HbA1c target?",
                None,
            )
            .await
        })
        .unwrap();
    assert!(!answer.text.contains("Garcia"), "{}", answer.text);
    assert!(!answer.text.contains("4471298"), "{}", answer.text);
    assert!(!answer.text.contains("867-5309"), "{}", answer.text);
    assert!(
        answer.text.contains("[NAME]") && answer.text.contains("[MRN]"),
        "{}",
        answer.text
    );
    let input = &answer.raw["cloister"]["policy"]["input"];
    assert_eq!(input["redacted"], true);
    let phi = &input["modules"][2];
    assert_eq!(phi["module"], "phi-guard");
    assert_eq!(phi["effect"], "redact");
    let labels: Vec<&str> = phi["redacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["name", "medical_record_number", "phone"]);

    // The host-visible logs carry codes, never the text.
    let log = cluster.log();
    assert!(log.contains("policy gate denied the query"), "{log}");
    for secret in ["Garcia", "4471298", "Alan Turner"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into cloisterd's log"
        );
    }
}

#[test]
fn the_output_gate_stops_an_answer_citing_what_was_not_retrieved() {
    let cluster = Cluster::start("policy-output").unwrap();
    let clinician = cluster.idp.mint(&cluster.claims()).unwrap();
    // The echo engine repeats the prompt, so the answer "cites" [S1] while
    // no source was retrieved: a fabricated citation.
    let body = json!({
        "messages": [{"role": "user", "content": "Is a thiazide first line? [S1]"}],
        "cloister": {"task": "guideline_qa"},
    });
    let rt = runtime();
    for stream in [false, true] {
        let outcome = rt.block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
            if stream {
                c.chat_stream_body(&clinician, &body, |_| {}).await
            } else {
                c.chat_body(&clinician, &body).await
            }
        });
        match outcome {
            Err(ClientError::Api {
                status,
                code,
                cloister,
                ..
            }) => {
                assert_eq!(status, 403, "stream={stream}");
                assert_eq!(code, "unknown_citation");
                assert_eq!(
                    decisions(&cloister["policy"], "output").last().unwrap(),
                    &("citations".to_owned(), "deny".to_owned())
                );
            }
            other => {
                panic!("stream={stream}: expected the citations module to deny, got {other:?}")
            }
        }
    }
    // A streamed answer that passes carries the decisions in its last event.
    let answer = rt
        .block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
            c.chat_stream(&clinician, "Is a thiazide first line?", |_| {})
                .await
        })
        .unwrap();
    assert!(answer.text.contains("thiazide"));
    assert_eq!(
        answer.raw["cloister"]["policy"]["bundle"],
        standard_digest()
    );
}

#[test]
fn the_enclave_commits_to_its_bundle_and_clients_can_require_it() {
    let cluster = Cluster::start("policy-digest").unwrap();
    let digest = standard_digest();
    let token = cluster.token_file("token.jwt", &cluster.claims()).unwrap();

    // Required and matching: the query goes through.
    let pinned = cluster.dir.join("pinned.toml");
    let base = std::fs::read_to_string(cluster.policy_path()).unwrap();
    std::fs::write(&pinned, format!("policy_digests = [\"{digest}\"]\n{base}")).unwrap();
    let out = cluster
        .query(&pinned, &token, &["--json", "hello"])
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Required and different: refused before anything is sent (exit 1).
    let other = cluster.dir.join("other-bundle.toml");
    std::fs::write(
        &other,
        format!("policy_digests = [\"{}\"]\n{base}", "ab".repeat(32)),
    )
    .unwrap();
    let out = cluster.query(&other, &token, &["hello"]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("REFUSED, nothing was sent"), "{stderr}");
    assert!(
        stderr.contains(&digest),
        "names the bundle the enclave runs: {stderr}"
    );

    let policy = AppraisalPolicy::from_toml(&std::fs::read_to_string(&other).unwrap()).unwrap();
    let refused = runtime().block_on(AttestedConnection::connect(&cluster.endpoint, policy));
    match refused {
        Err(ClientError::Attestation(RaTlsError::UnexpectedCommitment { what, found, .. })) => {
            assert_eq!(what, "policy bundle");
            assert_eq!(found, digest);
        }
        Err(e) => panic!("expected a policy bundle refusal, got {e}"),
        Ok(_) => panic!("a client requiring another bundle connected"),
    }

    // The enclave reports it in fresh evidence and on /healthz.
    let rt = runtime();
    let (document, health) = rt
        .block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
            let document = c.attestation_document(&[7u8; 32]).await?;
            let health = c.healthz().await?;
            Ok::<_, ClientError>((document, health))
        })
        .unwrap();
    assert_eq!(hex::encode(&document.bindings.policy_digest), digest);
    assert_eq!(health["policy"]["digest"], digest);
    assert_eq!(
        health["policy"]["modules"],
        json!(["size-limit", "access", "phi-guard", "citations"])
    );
}

#[test]
fn an_enclave_refuses_to_start_on_a_bundle_its_configuration_does_not_pin() {
    let bundle = standard_policy_bundle(&bin_dir());
    let pinned = "cd".repeat(32);
    let mut cluster =
        Cluster::prepare_with_policy("policy-mismatch", &bundle, Some(&pinned), "").unwrap();
    cluster.launch(&[]).unwrap();
    let log = cluster
        .wait_for_log("refusing to start on a bundle nobody approved")
        .unwrap();
    assert!(log.contains(&pinned), "{log}");
    assert!(log.contains(&standard_digest()), "{log}");
    let status = cluster.status().unwrap();
    assert_ne!(status["enclaves"][0]["state"], "running", "{status}");
}

#[test]
fn a_bundle_without_an_output_gate_streams_live_after_the_input_gate() {
    // A one-module bundle built from the hand-written WAT module.
    let work = cloister_tests::scratch("policy-live-src");
    let wat = &format!(
        "{}/../policies/modules/size-limit/size-limit.wat",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
    );
    std::fs::write(
        work.join("policy.toml"),
        format!("abi = 1\nname = \"input-only\"\n[[modules]]\nname = \"size-limit\"\nfile = {wat:?}\ngates = [\"input\"]\n"),
    )
    .unwrap();
    let bundle = work.join("bundle");
    let out = std::process::Command::new(cloister_tests::bin("cloister"))
        .args(["policy", "build"])
        .arg(work.join("policy.toml"))
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut cluster = Cluster::prepare_with_policy("policy-live", &bundle, None, "").unwrap();
    cluster.launch(&[]).unwrap();
    cluster.wait_running().unwrap();
    let token = cluster.idp.mint(&cluster.claims()).unwrap();
    let rt = runtime();
    let mut pieces = 0;
    let answer = rt
        .block_on(async {
            let mut c = AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
            c.chat_stream(&token, "one two three four", |_| pieces += 1)
                .await
        })
        .unwrap();
    assert!(answer.text.contains("one two three four"));
    assert!(pieces > 1, "streamed in {pieces} piece(s)");
    let report = &answer.raw["cloister"]["policy"];
    assert_eq!(
        decisions(report, "input"),
        [("size-limit".into(), "allow".into())]
    );
    assert!(report["output"].is_null());

    // The input gate still decides before anything streams.
    let huge = "x".repeat(70_000);
    let denied = rt.block_on(async {
        let mut c = AttestedConnection::connect(&cluster.endpoint, cluster.policy()).await?;
        c.chat_stream(&token, &huge, |_| {}).await
    });
    match denied {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!(status, 403);
            assert_eq!(code, "input_too_large");
        }
        other => panic!("expected the size limit to deny, got {other:?}"),
    }
}

#[test]
fn a_configuration_a_module_cannot_use_refuses_the_bundle_at_build() {
    let work = cloister_tests::scratch("policy-bad-config");
    let wasm = bin_dir()
        .parent()
        .unwrap()
        .join("wasm32-unknown-unknown/policy");
    let manifest = |glass_role: &str| {
        format!(
            "abi = 1\nname = \"t\"\n[[modules]]\nname = \"access\"\nfile = \"cloister_access.wasm\"\ngates = [\"input\"]\n[modules.config.roles.clinician]\npurposes = [\"TREAT\"]\ntasks = [\"chat\"]\n[modules.config.break_glass]\npurpose = \"ETREAT\"\nroles = [\"{glass_role}\"]\n"
        )
    };
    let build = |text: String| {
        std::fs::write(work.join("policy.toml"), text).unwrap();
        std::process::Command::new(cloister_tests::bin("cloister"))
            .args(["policy", "build"])
            .arg(work.join("policy.toml"))
            .arg("--modules")
            .arg(&wasm)
            .arg("--out")
            .arg(work.join("bundle"))
            .output()
            .unwrap()
    };
    let good = build(manifest("clinician"));
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    let bad = build(manifest("surgeon"));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("refuses its configuration") && stderr.contains("surgeon"),
        "{stderr}"
    );
}
