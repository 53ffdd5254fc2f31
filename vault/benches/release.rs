//! The key broker's decision for one release, in process: the request's
//! JSON, the single-use session, the key store read and opened under the
//! master key, the evidence verified and appraised, the bundle header
//! authenticated under the key, the HPKE wrap and the
//! fsynced log line — beside the baseline of verifying and appraising the
//! same evidence alone. Sim evidence (one Ed25519 verify); real SNP evidence
//! adds the ~165 µs of `cargo bench -p cloister-attestation --bench verify`
//! to both.
//!
//! Run: `cargo bench -p cloister-vault --bench release`

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use cloister_attestation::collect::{Endorsements, EvidenceSource};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::{AttestationDocument, Bindings};
use cloister_attestation::sim::SimTee;
use cloister_attestation::types::{HostData, Measurement};
use cloister_vault::kbs::policy::ReleasePolicy;
use cloister_vault::kbs::protocol::{release_binding, AttestRequest, ChallengeRequest};
use cloister_vault::kbs::server::Broker;
use cloister_vault::kbs::store::{KeyStore, MasterKey};
use cloister_vault::wrap::RecipientKey;
use cloister_vault::{seal_to_vec, ContentKind, DataKey, SealParams};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use time::OffsetDateTime;

const POLICY: &str = "min_bundle_version = 1\npolicy_digests = \"any\"\n[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = [\"424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242424242\"]\n";

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("cloister-bench-release-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let master = dir.join("master.key");
    MasterKey::generate(&master).unwrap();
    let store = dir.join("store");
    let key = DataKey::generate().unwrap();
    KeyStore::open(&store, MasterKey::load(&master).unwrap())
        .unwrap()
        .add("k", &key, POLICY, OffsetDateTime::now_utc())
        .unwrap();
    let params = SealParams {
        key_id: "k".into(),
        kind: ContentKind::Model,
        bundle_version: 1,
        chunk_log2: 12,
    };
    let (header, _) = seal_to_vec(b"model", &key, &params).unwrap();
    let broker = Broker::open(
        &store,
        MasterKey::load(&master).unwrap(),
        None,
        Arc::new(OffsetDateTime::now_utc),
    )
    .unwrap();
    let tee = SimTee::new(Measurement([0x42; 48]), HostData([0; 32])).unwrap();
    let recipient = RecipientKey::generate().unwrap();
    let bindings = Bindings::default();
    let appraisal: AppraisalPolicy = ReleasePolicy::from_toml(POLICY).unwrap().appraisal;

    // An answer to a challenge (session, nonce): what the broker is handed.
    let answer = |session: String, nonce: Vec<u8>| {
        let report_data = release_binding(&nonce, "k", recipient.public_key(), &bindings);
        let collected = tee.collect(&report_data).unwrap();
        let request = AttestRequest {
            session,
            evidence: AttestationDocument::new(&collected, &bindings, &nonce),
            public_key: recipient.public_key().to_vec(),
            bundle_header: header.as_bytes().to_vec(),
        };
        (report_data, request)
    };

    let mut g = c.benchmark_group("key-release");
    g.bench_function("baseline: verify and appraise the evidence alone", |b| {
        let mut counter = 0u64;
        b.iter_batched(
            || {
                counter += 1;
                answer(String::new(), [counter.to_be_bytes(); 4].concat())
            },
            |(report_data, request)| {
                black_box(
                    request
                        .evidence
                        .verify_bound(
                            &report_data,
                            &Endorsements::default(),
                            &appraisal,
                            OffsetDateTime::now_utc(),
                        )
                        .unwrap(),
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function(
        "broker attest: JSON, session, store, verify, HPKE, fsynced log",
        |b| {
            b.iter_batched(
                || {
                    let challenge = broker
                        .challenge(&ChallengeRequest { key_id: "k".into() })
                        .unwrap();
                    serde_json::to_vec(&answer(challenge.session, challenge.nonce).1).unwrap()
                },
                |body| {
                    black_box(broker.attest(&body, "bench").unwrap());
                },
                BatchSize::SmallInput,
            )
        },
    );
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
