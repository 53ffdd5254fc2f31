//! The enclave's configuration: `enclave.toml` in the image it was launched
//! with. In a CVM the image is measured, so every setting here (trusted
//! identity providers, engine, limits) is covered by the attestation; in the
//! simulated TEE the file's digest is folded into the sim measurement.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cloister_policy::identity::IdentityConfig;
use cloister_vault::kbs::client::BrokerEndpoint;
use cloister_vault::ContentKind;
use serde::Deserialize;

/// Name of the configuration file inside an image directory.
pub(crate) const CONFIG_FILE: &str = "enclave.toml";

/// Which TEE to take evidence from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TeeChoice {
    /// Whatever hardware interface this guest has; an error if none.
    #[default]
    Auto,
    /// AMD SEV-SNP, and fail if the guest is anything else.
    Snp,
    /// Intel TDX, and fail if the guest is anything else.
    Tdx,
    /// The INSECURE simulated TEE.
    Sim,
}

/// Which engine answers queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EngineChoice {
    /// No engine: queries get 503 until a model is configured.
    #[default]
    None,
    /// The echo engine, compiled only into test builds.
    TestEcho,
    /// The embedded candle engine, on the sealed model bundle (`[candle]`
    /// tunes it).
    Candle,
    /// An OpenAI-compatible engine in this CVM (`[openai]` says where).
    Openai,
}

/// Request limits; every one bounds what a client can make the enclave do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    /// Largest request body, bytes.
    pub(crate) max_request_bytes: usize,
    /// Most simultaneous TLS connections.
    pub(crate) max_connections: usize,
    /// Most messages in one chat request.
    pub(crate) max_messages: usize,
    /// Upper bound on `max_tokens`; also the default.
    pub(crate) max_tokens: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_connections: 512,
            max_messages: 256,
            max_tokens: 512,
        }
    }
}

/// The data owner's key broker. Its key is pinned here, in the measured
/// configuration, so the host cannot stand in for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BrokerConfig {
    /// HOST:PORT.
    pub(crate) address: String,
    /// SHA-256 of the broker's TLS SubjectPublicKeyInfo (`cloister kbs init` prints it).
    pub(crate) spki_sha256: String,
}

/// A sealed bundle the enclave needs before it serves. The host supplies
/// the ciphertext (`--sealed NAME=PATH`); which key it needs and what it
/// must hold are fixed here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SealedConfig {
    /// The name the host supplies it under.
    pub(crate) name: String,
    /// The key it must be sealed under.
    pub(crate) key_id: String,
    /// What it must hold.
    pub(crate) kind: ContentKind,
}

/// The policy bundle every query passes. Its digest is pinned here, in the
/// measured configuration, so the host cannot swap the bundle's files; the
/// enclave refuses to start on any other bundle and commits to the digest in
/// its attestation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyConfig {
    /// The bundle directory, relative to the image directory.
    pub(crate) bundle: PathBuf,
    /// Its digest, 64 hex digits (`cloister policy hash` prints it).
    pub(crate) digest: String,
    /// Most gate evaluations at once (each holds one module instance; the
    /// pool reserves this many times the largest module memory up front).
    #[serde(default = "default_policy_instances")]
    pub(crate) max_instances: u32,
}

fn default_policy_instances() -> u32 {
    32
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnclaveConfig {
    /// Evidence source.
    #[serde(default)]
    pub(crate) tee: TeeChoice,
    /// Inference engine.
    #[serde(default)]
    pub(crate) engine: EngineChoice,
    /// The embedded engine's settings (with `engine = "candle"`).
    #[serde(default)]
    pub(crate) candle: cloister_inference::embedded::EngineSettings,
    /// The in-CVM engine to forward to (with `engine = "openai"`).
    #[serde(default)]
    pub(crate) openai: Option<cloister_inference::openai::OpenAiSettings>,
    /// Grounding: the sealed guideline corpus answers are drawn from.
    #[serde(default)]
    pub(crate) retrieval: Option<crate::grounding::RetrievalConfig>,
    /// Trusted identity providers.
    pub(crate) identity: IdentityConfig,
    /// The policy bundle (required: no query goes ungated).
    pub(crate) policy: PolicyConfig,
    /// The audit log (required: no query goes unrecorded).
    pub(crate) audit: crate::audit::AuditSettings,
    /// Request limits.
    #[serde(default)]
    pub(crate) limits: Limits,
    /// The key broker; required when there are sealed bundles.
    #[serde(default)]
    pub(crate) broker: Option<BrokerConfig>,
    /// Sealed bundles to unseal before serving.
    #[serde(default)]
    pub(crate) sealed: Vec<SealedConfig>,
}

impl EnclaveConfig {
    /// The broker endpoint, checked; `None` when no bundle needs one.
    pub(crate) fn broker_endpoint(&self) -> anyhow::Result<Option<BrokerEndpoint>> {
        let mut names = std::collections::BTreeSet::new();
        for bundle in &self.sealed {
            if !names.insert(bundle.name.as_str()) {
                bail!("sealed bundle name {:?} appears twice", bundle.name);
            }
        }
        match (&self.broker, self.sealed.is_empty()) {
            (None, true) => Ok(None),
            (None, false) => bail!(
                "sealed bundles are configured but no [broker] is: nobody could release their keys"
            ),
            (Some(broker), _) => {
                let mut pin = [0u8; 32];
                hex::decode_to_slice(broker.spki_sha256.trim(), &mut pin).with_context(|| {
                    format!(
                        "broker.spki_sha256 must be 64 hex digits, got {:?}",
                        broker.spki_sha256
                    )
                })?;
                Ok(Some(BrokerEndpoint {
                    address: broker.address.clone(),
                    spki_sha256: pin,
                }))
            }
        }
    }
}

/// The configuration and its exact bytes (which the sim measurement covers).
pub(crate) struct LoadedConfig {
    pub(crate) config: EnclaveConfig,
    pub(crate) bytes: Vec<u8>,
    pub(crate) path: PathBuf,
}

pub(crate) fn load(image: &Path) -> anyhow::Result<LoadedConfig> {
    let path = image.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let config: EnclaveConfig =
        toml::from_str(text).with_context(|| format!("{} is invalid", path.display()))?;
    Ok(LoadedConfig {
        config,
        bytes,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str =
        "[policy]\nbundle = \"policy\"\ndigest = \"00\"\n[audit]\nauditor_key = \"00\"\n";

    #[test]
    fn the_example_parses_and_its_identity_config_loads() {
        let text = include_str!("../enclave.example.toml");
        let config: EnclaveConfig = toml::from_str(text).unwrap();
        assert_eq!(config.tee, TeeChoice::Auto);
        assert_eq!(config.engine, EngineChoice::None);
        cloister_policy::identity::TokenVerifier::new(&config.identity).unwrap();
        let broker = config.broker_endpoint().unwrap().unwrap();
        assert_eq!(broker.address, "kbs.research.hospital.example:7443");
        assert_eq!(config.sealed.len(), 1);
        cloister_audit::AuditorPublicKey::from_hex(&config.audit.auditor_key).unwrap();
        assert!(toml::from_str::<EnclaveConfig>(&format!(
            "tee = \"sgx\"\n[identity]\naudience = \"a\"\nissuers = []\n{POLICY}"
        ))
        .is_err());
        assert!(
            toml::from_str::<EnclaveConfig>("[identity]\naudience = \"a\"\nissuers = []\n")
                .is_err(),
            "a configuration without a policy bundle is refused"
        );
        assert!(
            toml::from_str::<EnclaveConfig>(
                "[identity]\naudience = \"a\"\nissuers = []\n[policy]\nbundle = \"p\"\ndigest = \"00\"\n"
            )
            .is_err(),
            "a configuration without an audit log is refused"
        );
    }

    #[test]
    fn the_embedded_engine_names_its_kernels() {
        use cloister_inference::embedded::CpuKernels;
        let base = &format!("[identity]\naudience = \"a\"\nissuers = []\n{POLICY}");
        let parse = |extra: &str| toml::from_str::<EnclaveConfig>(&format!("{base}{extra}"));
        assert_eq!(parse("").unwrap().candle.kernels, CpuKernels::Cloister);
        let candle = parse("[candle]\nkernels = \"candle\"\n").unwrap();
        assert_eq!(candle.candle.kernels, CpuKernels::Candle);
        assert!(parse("[candle]\nkernels = \"fast\"\n").is_err());
    }

    #[test]
    fn sealed_bundles_need_a_broker_and_unique_names() {
        let base = &format!("[identity]\naudience = \"a\"\nissuers = []\n{POLICY}");
        let bundle = "[[sealed]]\nname = \"model\"\nkey_id = \"k\"\nkind = \"model\"\n";
        let broker = format!(
            "[broker]\naddress = \"127.0.0.1:1\"\nspki_sha256 = \"{}\"\n",
            "ab".repeat(32)
        );
        let parse = |text: &str| toml::from_str::<EnclaveConfig>(text).unwrap();
        assert!(parse(base).broker_endpoint().unwrap().is_none());
        assert!(parse(&format!("{base}{bundle}")).broker_endpoint().is_err());
        assert!(parse(&format!("{base}{broker}{bundle}"))
            .broker_endpoint()
            .unwrap()
            .is_some());
        assert!(parse(&format!("{base}{broker}{bundle}{bundle}"))
            .broker_endpoint()
            .is_err());
        let bad_pin = "[broker]\naddress = \"x:1\"\nspki_sha256 = \"00\"\n";
        assert!(parse(&format!("{base}{bad_pin}"))
            .broker_endpoint()
            .is_err());
        assert!(toml::from_str::<EnclaveConfig>(&format!(
            "{base}[[sealed]]\nname = \"m\"\nkey_id = \"k\"\nkind = \"weights\"\n"
        ))
        .is_err());
    }
}
