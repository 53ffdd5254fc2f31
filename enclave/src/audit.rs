//! The enclave's use of the audit log: take over the log the host keeps,
//! bind a fresh audit key into the start record's evidence, and turn each
//! query's caller, gate decisions and answer into its record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cloister_attestation::collect::EvidenceSource;
use cloister_attestation::ratls::RaTlsIdentity;
use cloister_audit::record::{
    Event, Hex32, KeyRelease, ModuleDecision, Outcome, PolicyDecisions, PolicyLoad, Query,
};
use cloister_audit::{
    AuditLog, AuditSigner, AuditorPublicKey, LogConfig, Recovered, SealedFields, StartInfo,
};
use cloister_inference::ChatMessage;
use cloister_policy::identity::Caller;
use cloister_policy::{GateOutcome, LoadedBundle};
use serde::Deserialize;

use crate::policy::QueryContext;

/// `[audit]` in enclave.toml: measured, so the host cannot change who can
/// read the sealed fields or whether text is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSettings {
    /// The auditor's X25519 public key, 64 hex digits (`cloister audit keygen`).
    pub(crate) auditor_key: String,
    /// Keep each prompt and answer in its record, sealed to the auditor.
    #[serde(default)]
    pub(crate) keep_text: bool,
    /// Also publish every checkpoint into this directory (a witness's).
    #[serde(default)]
    pub(crate) witness_dir: Option<PathBuf>,
}

/// Locks and recovers the log in `dir` (host storage).
pub(crate) fn recover(dir: &Path, settings: &AuditSettings) -> anyhow::Result<Recovered> {
    let auditor = AuditorPublicKey::from_hex(&settings.auditor_key)
        .context("audit.auditor_key in enclave.toml")?;
    let mut config = LogConfig::new(dir.to_path_buf(), auditor);
    config.keep_text = settings.keep_text;
    config.witness_dir.clone_from(&settings.witness_dir);
    let recovered = Recovered::open(config)
        .with_context(|| format!("cannot take over the audit log in {}", dir.display()))?;
    tracing::info!(
        origin = recovered.origin(),
        records = recovered.size(),
        truncated_bytes = recovered.truncated().map(|t| t.dropped_bytes),
        "audit log recovered"
    );
    Ok(recovered)
}

/// Writes the start record, with fresh evidence bound to the audit key and
/// to the record's place in the log, then the policy bundle and key
/// releases this start saw.
pub(crate) fn start(
    recovered: Recovered,
    signer: AuditSigner,
    identity: &RaTlsIdentity,
    source: &dyn EvidenceSource,
    policy: &LoadedBundle,
    releases: Vec<KeyRelease>,
) -> anyhow::Result<Arc<AuditLog>> {
    let evidence = identity
        .attest_fresh(source, &recovered.start_nonce())
        .context("cannot collect evidence for the audit log's start record")?;
    // The start record, the bundle loaded and the keys released, in one
    // commit.
    let mut also = vec![Event::PolicyLoad(PolicyLoad {
        bundle: Hex32(policy.digest()),
        name: policy.name().to_owned(),
        modules: policy.module_names().map(str::to_owned).collect(),
    })];
    also.extend(releases.into_iter().map(Event::KeyRelease));
    let log = recovered
        .start(
            signer,
            StartInfo {
                tls_spki: identity.spki().to_vec(),
                evidence,
                software: format!("cloister-enclave {}", env!("CARGO_PKG_VERSION")),
            },
            also,
        )
        .context("cannot write the audit log's start record")?;
    tracing::info!(origin = log.origin(), enclave = %log.enclave(), "audit log started");
    Ok(Arc::new(log))
}

/// A query's record, filled in as the query goes.
pub(crate) struct Draft {
    started: Instant,
    query: Query,
    sealed: SealedFields,
}

impl Draft {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            query: Query::default(),
            sealed: SealedFields::default(),
        }
    }

    /// Who asked (as soon as the token verified, so a malformed request is
    /// still attributed).
    pub(crate) fn caller(&mut self, log: &AuditLog, caller: &Caller) {
        self.query.principal = Some(caller.subject.clone());
        self.query.issuer = Some(caller.issuer.clone());
        self.query.role = Some(caller.role.clone());
        self.query.purpose_of_use = Some(caller.purpose_of_use.clone());
        self.query.patient = caller.patient.as_deref().map(|p| log.pseudonym(p));
        self.sealed.patient.clone_from(&caller.patient);
    }

    /// About whom, for what: the request's own context.
    pub(crate) fn context(&mut self, log: &AuditLog, caller: &Caller, context: &QueryContext) {
        self.query.task = Some(context.task.clone().unwrap_or_else(|| "chat".into()));
        let patient = context.patient.clone().or_else(|| caller.patient.clone());
        self.query.patient = patient.as_deref().map(|p| log.pseudonym(p));
        self.sealed.patient = patient;
        self.query.break_glass = context.break_glass_reason.is_some();
        self.sealed
            .break_glass_reason
            .clone_from(&context.break_glass_reason);
    }

    /// The prompt as received (before any redaction).
    pub(crate) fn prompt(
        &mut self,
        log: &AuditLog,
        model: &str,
        id: &str,
        messages: &[ChatMessage],
    ) {
        self.query.model = Some(model.to_owned());
        self.query.request_id = id.to_owned();
        let value = serde_json::to_value(messages).unwrap_or_default();
        self.query.prompt_digest = Some(log.digest("prompt", value.to_string().as_bytes()));
        if log.keeps_text() {
            self.sealed.prompt = Some(value);
        }
    }

    /// Both gates' decisions: codes in clear, messages sealed.
    pub(crate) fn gates(
        &mut self,
        bundle: [u8; 32],
        input: &GateOutcome,
        output: Option<&GateOutcome>,
    ) {
        let decisions = |gate: &GateOutcome, sealed: &mut Vec<String>| {
            gate.modules
                .iter()
                .map(|m| {
                    for r in &m.reasons {
                        sealed.push(format!("{}: {}: {}", m.module, r.code, r.message));
                    }
                    ModuleDecision {
                        module: m.module.clone(),
                        effect: m.effect.as_str().to_owned(),
                        reasons: m.reasons.iter().map(|r| r.code.clone()).collect(),
                    }
                })
                .collect::<Vec<_>>()
        };
        let input = decisions(input, &mut self.sealed.reasons);
        let output = output.map(|o| decisions(o, &mut self.sealed.reasons));
        self.query.policy = Some(PolicyDecisions {
            bundle: Hex32(bundle),
            input,
            output,
        });
    }

    /// The answer as released.
    pub(crate) fn answer(
        &mut self,
        log: &AuditLog,
        text: &str,
        prompt_tokens: u32,
        completion_tokens: u32,
    ) {
        self.query.answer_digest = Some(log.digest("answer", text.as_bytes()));
        self.query.prompt_tokens = Some(prompt_tokens);
        self.query.completion_tokens = Some(completion_tokens);
        if log.keeps_text() {
            self.sealed.answer = Some(text.to_owned());
        }
    }

    /// The finished record.
    pub(crate) fn finish(
        mut self,
        outcome: Outcome,
        status: u16,
        reason: Option<&str>,
    ) -> (Event, SealedFields) {
        self.query.outcome = outcome;
        self.query.status = status;
        self.query.reason = reason.map(str::to_owned);
        self.query.latency_us =
            u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        (Event::Query(Box::new(self.query)), self.sealed)
    }
}
