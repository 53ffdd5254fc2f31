//! The policy gate inside the enclave: the bundle pinned in the measured
//! configuration, loaded once at start, evaluated at the input gate (before
//! inference) and the output gate (before the answer leaves) of every query.

use std::path::Path;

use anyhow::{bail, Context as _};
use cloister_policy::identity::Caller;
use cloister_policy::{Bundle, EngineSettings, LoadedBundle, PolicyEngine};

use crate::config::PolicyConfig;

/// Load the bundle `config` names, refusing any whose digest is not the
/// pinned one, and compile its modules.
pub(crate) fn load(image: &Path, config: &PolicyConfig) -> anyhow::Result<LoadedBundle> {
    let mut pinned = [0u8; 32];
    hex::decode_to_slice(config.digest.trim(), &mut pinned).with_context(|| {
        format!(
            "policy.digest must be 64 hex digits, got {:?}",
            config.digest
        )
    })?;
    let dir = image.join(&config.bundle);
    let bundle = Bundle::read(&dir).context("the policy bundle cannot be read")?;
    if bundle.digest() != pinned {
        bail!(
            "the policy bundle in {} has digest {}, but enclave.toml pins {}: refusing to start on a bundle nobody approved",
            dir.display(),
            hex::encode(bundle.digest()),
            hex::encode(pinned)
        );
    }
    let engine = PolicyEngine::new(EngineSettings::for_bundle(&bundle, config.max_instances))?;
    let loaded = engine
        .load(&bundle)
        .context("the policy bundle is refused")?;
    tracing::info!(
        bundle = loaded.name(),
        digest = %hex::encode(loaded.digest()),
        modules = ?loaded.module_names().collect::<Vec<_>>(),
        "policy bundle loaded; every query passes it"
    );
    Ok(loaded)
}

/// What a chat request may add, in its `cloister` object, to what the
/// token says.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryContext {
    /// The clinical task (`chat` if absent).
    #[serde(default)]
    pub(crate) task: Option<String>,
    /// The patient the query is about.
    #[serde(default)]
    pub(crate) patient: Option<String>,
    /// Why emergency access is needed (with purpose of use ETREAT).
    #[serde(default)]
    pub(crate) break_glass_reason: Option<String>,
    /// The patient's record, a FHIR R4 Bundle (for `summarize`, `prior_auth`).
    #[serde(default)]
    pub(crate) fhir: Option<serde_json::Value>,
}

/// The request modules see, before its text is filled in.
pub(crate) fn request_for(
    caller: &Caller,
    context: &QueryContext,
    now: time::OffsetDateTime,
) -> cloister_policy::abi::Request {
    cloister_policy::abi::Request {
        issuer: caller.issuer.clone(),
        principal: caller.subject.clone(),
        role: caller.role.clone(),
        purpose_of_use: caller.purpose_of_use.clone(),
        caller_patient: caller.patient.clone(),
        patient: context.patient.clone(),
        break_glass_reason: context.break_glass_reason.clone(),
        task: context.task.clone().unwrap_or_else(|| "chat".into()),
        time: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        text: String::new(),
        sources: Vec::new(),
    }
}
