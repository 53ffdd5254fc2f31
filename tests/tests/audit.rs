//! The audit log end to end: a real `cloisterd` and sim enclave write it,
//! `cloister audit` verifies, reads, exports and proves it, tampering by the
//! host is caught, and an enclave killed with SIGKILL over and over under
//! load never loses the record of an answer it delivered.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cloister::client::{AttestedConnection, ClientError};
use cloister_audit::record::Event;
use cloister_audit::view::{select, Filter, LogView};
use cloister_tests::{alive, runtime, text, Cluster};
use serde_json::{json, Value};

fn audit_json(cluster: &Cluster, args: &[&str]) -> (Option<i32>, Value) {
    let out = cluster.cloister(args).unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), value)
}

/// `cloister audit prove ARGS --out FILE`, then `check-proof FILE --json`:
/// the checker's exit code and verdict.
fn prove_and_check(
    cluster: &Cluster,
    args: &[&str],
    file: &std::path::Path,
) -> (Option<i32>, Value) {
    let file = file.display().to_string();
    let mut prove = vec!["audit", "prove"];
    prove.extend_from_slice(args);
    prove.extend_from_slice(&["--out", &file]);
    let out = cluster.cloister(&prove).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    audit_json(cluster, &["audit", "check-proof", &file, "--json"])
}

#[test]
fn every_request_is_recorded_and_the_auditor_can_verify_read_export_and_prove_it() {
    let mut cluster = Cluster::start("audit-flow").unwrap();
    let policy = cluster.policy();
    let rt = runtime();
    let mut clinician_claims = cluster.claims();
    clinician_claims.patient = Some("Patient/quill-7".into());
    let clinician = cluster.idp.mint(&clinician_claims).unwrap();
    let mut billing_claims = clinician_claims.clone();
    billing_claims.sub = "billing.office".into();
    billing_claims.role = "billing".into();
    billing_claims.purpose_of_use = "HPAYMT".into();
    let billing = cluster.idp.mint(&billing_claims).unwrap();
    let secret_prompt = "Ms. Ada Quill, DOB 07/04/1961: is the rash a drug reaction?";

    let (answered, denied, unauthenticated, rejected) = rt.block_on(async {
        let mut c = AttestedConnection::connect(&cluster.endpoint, policy.clone())
            .await
            .unwrap();
        let body = json!({
            "messages": [{"role": "user", "content": secret_prompt}],
            "cloister": {"patient": "Patient/quill-7"},
        });
        let answered = c.chat_body(&clinician, &body).await.unwrap();
        let denied = c.chat_body(&billing, &body).await.unwrap_err();
        let unauthenticated = c.chat("not-a-token", "hello", None).await.unwrap_err();
        let rejected = c
            .chat_body(&clinician, &json!({"messages": [], "cloister": {}}))
            .await
            .unwrap_err();
        (answered, denied, unauthenticated, rejected)
    });
    // Each response names its durable record.
    let answered_seq = answered.raw["cloister"]["audit"]["record"]
        .as_u64()
        .unwrap();
    let origin = answered.raw["cloister"]["audit"]["log"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(origin.starts_with("cloister.audit/"));
    let seq_of = |e: &ClientError| match e {
        ClientError::Api { cloister, .. } => cloister["audit"]["record"].as_u64().unwrap(),
        other => panic!("{other:?}"),
    };
    let (denied_seq, unauth_seq, rejected_seq) =
        (seq_of(&denied), seq_of(&unauthenticated), seq_of(&rejected));
    // In order; each commit also writes a checkpoint record.
    assert!(answered_seq < denied_seq && denied_seq < unauth_seq && unauth_seq < rejected_seq);

    // What the host keeps: no prompt, no answer, no patient reference.
    let segments = std::fs::read_dir(cluster.audit_dir().join("segments")).unwrap();
    let stored: String = segments
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for secret in ["Ada Quill", "Patient/quill-7", "rash"] {
        assert!(!stored.contains(secret), "{secret} is in the host's copy");
    }
    assert!(stored.contains("billing.office") && stored.contains("task_not_permitted"));

    // An orderly stop is recorded; then the log verifies against the policy.
    assert_eq!(cluster.shutdown().unwrap(), Some(0));
    let dir = cluster.audit_dir().display().to_string();
    let key = cluster.dir.join("auditor.key").display().to_string();
    let policy_path = cluster.policy_path().display().to_string();
    let (code, report) = audit_json(
        &cluster,
        &[
            "audit",
            "verify",
            "--log",
            &dir,
            "--policy",
            &policy_path,
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["evidence_appraised"], true);
    assert_eq!(report["origin"], origin.as_str());
    let total = report["records"].as_u64().unwrap();
    assert!(total > rejected_seq + 1, "the stop follows the queries");

    // Search with the auditor key: by patient, by module decision, by outcome.
    let (code, found) = audit_json(
        &cluster,
        &[
            "audit",
            "search",
            "--log",
            &dir,
            "--key",
            &key,
            "--patient",
            "Patient/quill-7",
            "--json",
        ],
    );
    assert_eq!(code, Some(0));
    let found = found.as_array().unwrap();
    assert_eq!(
        found.len(),
        3,
        "the answered, denied and rejected queries name the patient"
    );
    assert_eq!(found[0]["unsealed"]["patient"], "Patient/quill-7");
    assert_eq!(found[0]["unsealed"]["prompt"][0]["content"], secret_prompt);
    let (_, by_module) = audit_json(
        &cluster,
        &[
            "audit",
            "search",
            "--log",
            &dir,
            "--module",
            "access:deny",
            "--json",
        ],
    );
    assert_eq!(by_module.as_array().unwrap().len(), 1);
    assert_eq!(by_module[0]["seq"].as_u64(), Some(denied_seq));
    assert_eq!(by_module[0]["event"]["principal"], "billing.office");
    let (_, by_outcome) = audit_json(
        &cluster,
        &[
            "audit",
            "search",
            "--log",
            &dir,
            "--outcome",
            "unauthenticated",
            "--json",
        ],
    );
    assert_eq!(by_outcome[0]["seq"].as_u64(), Some(unauth_seq));
    let table = cluster
        .cloister(&[
            "audit", "search", "--log", &dir, "--key", &key, "--kind", "query",
        ])
        .unwrap();
    assert!(
        text(&table.stdout).contains("Patient/quill-7"),
        "{}",
        text(&table.stdout)
    );
    let (code, _) = audit_json(
        &cluster,
        &[
            "audit",
            "search",
            "--log",
            &dir,
            "--patient",
            "Patient/quill-7",
            "--json",
        ],
    );
    assert_eq!(code, Some(2), "searching by patient needs the key");

    // FHIR: pseudonyms unless PHI is asked for with the key.
    let out = cluster
        .cloister(&[
            "audit", "export", "--log", &dir, "--format", "fhir", "--kind", "query",
        ])
        .unwrap();
    let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 4);
    assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "AuditEvent");
    assert_eq!(bundle["entry"][1]["resource"]["outcome"], "4");
    assert!(!out.stdout.windows(15).any(|w| w == b"Patient/quill-7"));
    let out = cluster
        .cloister(&[
            "audit",
            "export",
            "--log",
            &dir,
            "--key",
            &key,
            "--include-phi",
        ])
        .unwrap();
    assert!(text(&out.stdout).contains("Patient/quill-7"));

    // A third party checks an inclusion proof.
    let proof_path = cluster.dir.join("proof.json");
    let seq = answered_seq.to_string();
    let (code, checked) =
        prove_and_check(&cluster, &["--log", &dir, "--record", &seq], &proof_path);
    assert_eq!(code, Some(0), "{checked}");
    let mut proof: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof_path).unwrap()).unwrap();
    proof["record"] = json!(proof["record"].as_str().unwrap().replace("dr.", "xx."));
    std::fs::write(&proof_path, proof.to_string()).unwrap();
    let (code, _) = audit_json(
        &cluster,
        &[
            "audit",
            "check-proof",
            &proof_path.display().to_string(),
            "--json",
        ],
    );
    assert_eq!(code, Some(1));

    // And that the log at its first checkpoint is a prefix of the log now.
    let (_, checkpoints) = audit_json(
        &cluster,
        &[
            "audit",
            "search",
            "--log",
            &dir,
            "--kind",
            "checkpoint",
            "--json",
        ],
    );
    let older = cluster.dir.join("first.checkpoint");
    std::fs::write(&older, checkpoints[0]["event"]["note"].as_str().unwrap()).unwrap();
    let older = older.display().to_string();
    let (code, checked) = prove_and_check(
        &cluster,
        &["--log", &dir, "--since", &older],
        &cluster.dir.join("consistency.json"),
    );
    assert_eq!(code, Some(0), "{checked}");
    assert_eq!(checked["kind"], "consistency");

    // The host edits the denial into an answer: named, exit 1.
    let segment = first_segment(&cluster);
    let original = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(
        &segment,
        original.replacen("\"outcome\":\"denied\"", "\"outcome\":\"answered\"", 1),
    )
    .unwrap();
    let (code, report) = audit_json(&cluster, &["audit", "verify", "--log", &dir, "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(report["finding"]["kind"], "altered");
    assert_eq!(report["finding"]["seq"].as_u64(), Some(denied_seq));
    let out = cluster
        .cloister(&["audit", "verify", "--log", &dir])
        .unwrap();
    assert!(
        text(&out.stdout).contains(&format!("record {denied_seq} was altered")),
        "{}",
        text(&out.stdout)
    );
    let (code, _) = audit_json(
        &cluster,
        &["audit", "verify", "--log", "/nonexistent", "--json"],
    );
    assert_eq!(code, Some(2));
}

#[test]
fn the_audit_key_is_bound_into_the_enclaves_evidence() {
    let cluster = Cluster::start("audit-binding").unwrap();
    let rt = runtime();
    let peer = rt
        .block_on(AttestedConnection::connect(
            &cluster.endpoint,
            cluster.policy(),
        ))
        .unwrap()
        .peer()
        .clone();
    let view = LogView::open(&cluster.audit_dir()).unwrap();
    let start = view.summary.epochs[0]
        .start
        .evidence
        .bindings
        .audit_key
        .clone();
    assert_eq!(
        peer.bindings.audit_key, start,
        "RA-TLS commits to the key that signs the log"
    );
    assert_eq!(start.len(), 32);
}

#[test]
fn a_log_the_enclave_cannot_take_over_stops_it_from_serving() {
    // A log with acknowledged history, then the host edits a record in it:
    // the policy load, record 1 (the start's commit is start, policy load,
    // checkpoint).
    let mut cluster = Cluster::start("audit-damaged").unwrap();
    cluster.shutdown().unwrap();
    let segment = first_segment(&cluster);
    let original = std::fs::read_to_string(&segment).unwrap();
    let edited = original.replacen("\"name\":\"standard\"", "\"name\":\"lenient\"", 1);
    assert_ne!(original, edited);
    std::fs::write(&segment, edited).unwrap();
    cluster.launch(&[]).unwrap();
    let log = cluster
        .wait_for_log("cannot take over the audit log")
        .unwrap();
    assert!(log.contains("record 1 was altered"), "{log}");
    assert!(cluster.status().unwrap()["enclaves"][0]["state"] != "running");
}

/// SIGKILL the enclave at random moments while clients query; after each
/// restart, every answer a client received has its record in the log.
#[test]
fn no_delivered_answer_loses_its_record_when_the_enclave_is_killed() {
    let mut cluster = Cluster::start("audit-crash").unwrap();
    let cluster_ref = &cluster;
    let rounds: u32 = std::env::var("CLOISTER_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let delivered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let token = cluster.idp.mint(&cluster.claims()).unwrap();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let mut next_random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let delivered = delivered.clone();
            let stop = stop.clone();
            let token = token.clone();
            scope.spawn(move || {
                let rt = runtime();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Bounded, so a bug that leaves a request hanging fails
                    // the test instead of stalling it.
                    let outcome = rt.block_on(async {
                        tokio::time::timeout(std::time::Duration::from_secs(30), async {
                            let mut c = AttestedConnection::connect(
                                &cluster_ref.endpoint,
                                cluster_ref.policy(),
                            )
                            .await?;
                            let mut got = Vec::new();
                            for _ in 0..20 {
                                n += 1;
                                let answer = c
                                    .chat(&token, &format!("worker {worker} question {n}"), None)
                                    .await?;
                                let seq =
                                    answer.raw["cloister"]["audit"]["record"].as_u64().unwrap();
                                let origin = answer.raw["cloister"]["audit"]["log"]
                                    .as_str()
                                    .unwrap()
                                    .to_owned();
                                got.push((
                                    format!("{origin}/{}", answer.raw["id"].as_str().unwrap()),
                                    seq,
                                ));
                            }
                            Ok::<_, ClientError>(got)
                        })
                        .await
                    });
                    let got = match outcome {
                        Ok(Ok(got)) => got,
                        Err(_) => panic!("a request hung for 30 s"),
                        // The enclave died mid-conversation: what was
                        // answered before is what counts; reconnect.
                        Ok(Err(_)) => {
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            continue;
                        }
                    };
                    delivered.lock().unwrap().extend(got);
                }
            });
        }
        for round in 0..rounds {
            std::thread::sleep(std::time::Duration::from_millis(150 + next_random() % 600));
            let pid = cluster_ref.kill_enclave().unwrap();
            cluster_ref
                .wait_for(|s| {
                    s["enclaves"][0]["state"] == "running"
                        && s["enclaves"][0]["pid"].as_i64() != Some(i64::from(pid))
                })
                .unwrap_or_else(|e| panic!("round {round}: the enclave did not come back: {e}"));
            assert!(!alive(pid));
            assert_records_present(cluster_ref, &delivered.lock().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
    });
    let delivered = delivered.lock().unwrap().clone();
    assert!(
        delivered.len() > 20,
        "the load produced only {} answers",
        delivered.len()
    );
    cluster.shutdown().unwrap();
    let dir = cluster.audit_dir().display().to_string();
    let policy = cluster.policy_path().display().to_string();
    let out = cluster
        .cloister(&[
            "audit", "verify", "--log", &dir, "--policy", &policy, "--json",
        ])
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(
        report["epochs"].as_array().unwrap().len() as u32,
        rounds + 1
    );
    assert_records_present(&cluster, &delivered);
    let view = LogView::open(&cluster.audit_dir()).unwrap();
    let cuts = view
        .contents
        .records
        .iter()
        .filter(|r| matches!(&r.record, Ok(rec) if matches!(rec.event, Event::Truncation(_))))
        .count();
    eprintln!(
        "{rounds} kills: {} answers delivered, all recorded; {} records in {} epochs; {cuts} torn tails cut",
        delivered.len(),
        report["records"],
        rounds + 1
    );
}

/// Every (log/request id, seq) a client was given is a query record with
/// that id at that position.
fn assert_records_present(cluster: &Cluster, delivered: &[(String, u64)]) {
    let view = LogView::open(&cluster.audit_dir()).unwrap();
    let origin = view.summary.origin.clone().unwrap();
    let records = select(&view, None, &Filter::default()).unwrap();
    let present: BTreeSet<(String, u64)> = records
        .iter()
        .filter_map(|r| match &r.record.event {
            Event::Query(q) => Some((format!("{origin}/{}", q.request_id), r.record.seq)),
            _ => None,
        })
        .collect();
    for answer in delivered {
        assert!(
            present.contains(answer),
            "answer {answer:?} was delivered but its record is missing"
        );
    }
}

/// The log's first segment file (the tests' logs have one).
fn first_segment(cluster: &Cluster) -> std::path::PathBuf {
    std::fs::read_dir(cluster.audit_dir().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap()
}
