//! A sim enclave's side of the log, for tests: evidence from the INSECURE
//! simulated TEE, bound to a fresh audit key and the log's start nonce.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cloister_attestation::ratls::{Bindings, RaTlsIdentity};
use cloister_attestation::sim::SimTee;
use cloister_attestation::types::{HostData, Measurement};
use cloister_audit::record::{Event, ModuleDecision, Outcome, PolicyDecisions, Query};
use cloister_audit::{
    AuditLog, AuditSigner, AuditorKey, LogConfig, Recovered, SealedFields, StartInfo,
};

pub fn measurement() -> Measurement {
    "ab".repeat(48).parse().unwrap()
}

pub fn appraisal() -> cloister_attestation::policy::AppraisalPolicy {
    cloister_attestation::policy::AppraisalPolicy::from_toml(&format!(
        "allow_simulated = true\n[sim]\nmeasurements = [\"{}\"]\n",
        measurement()
    ))
    .unwrap()
}

/// Opens (recovering) the log in `dir` as a new sim enclave.
pub fn start(dir: &Path, auditor: &AuditorKey) -> AuditLog {
    start_with(LogConfig::new(dir.to_path_buf(), auditor.public())).unwrap()
}

pub fn start_with(config: LogConfig) -> Result<AuditLog, cloister_audit::AuditError> {
    let recovered = Recovered::open(config)?;
    let signer = AuditSigner::generate().unwrap();
    let source = SimTee::new(measurement(), HostData([0; 32])).unwrap();
    let identity = RaTlsIdentity::generate(
        &source,
        Bindings {
            policy_digest: vec![7; 32],
            audit_key: signer.public_key().to_vec(),
        },
    )
    .unwrap();
    let evidence = identity
        .attest_fresh(&source, &recovered.start_nonce())
        .unwrap();
    recovered.start(
        signer,
        StartInfo {
            tls_spki: identity.spki().to_vec(),
            evidence,
            software: "test".into(),
        },
        Vec::new(),
    )
}

/// A query record as the enclave would make it.
pub fn query(
    log: &AuditLog,
    principal: &str,
    patient: &str,
    outcome: Outcome,
) -> (Event, SealedFields) {
    let event = Event::Query(Box::new(Query {
        request_id: format!("chatcmpl-{principal}"),
        principal: Some(principal.into()),
        issuer: Some("https://idp.test.invalid".into()),
        role: Some("physician".into()),
        purpose_of_use: Some("TREAT".into()),
        patient: Some(log.pseudonym(patient)),
        task: Some("chat".into()),
        policy: Some(PolicyDecisions {
            bundle: cloister_audit::record::Hex32([7; 32]),
            input: vec![ModuleDecision {
                module: "access".into(),
                effect: if outcome == Outcome::Denied {
                    "deny"
                } else {
                    "allow"
                }
                .into(),
                reasons: if outcome == Outcome::Denied {
                    vec!["not_treating_patient".into()]
                } else {
                    vec![]
                },
            }],
            output: None,
        }),
        model: Some("echo".into()),
        prompt_digest: Some(log.digest("prompt", b"hello")),
        outcome,
        status: if outcome == Outcome::Denied { 403 } else { 200 },
        latency_us: 10,
        ..Query::default()
    }));
    let sealed = SealedFields {
        patient: Some(patient.into()),
        prompt: Some(serde_json::json!([{"role": "user", "content": "hello"}])),
        ..SealedFields::default()
    };
    (event, sealed)
}
