//! The enclave's configuration: `enclave.toml` in the image it was launched
//! with. In a CVM the image is measured, so every setting here (trusted
//! identity providers, engine, limits) is covered by the attestation; in the
//! simulated TEE the file's digest is folded into the sim measurement.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cloister_policy::identity::IdentityConfig;
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
    /// Trusted identity providers.
    pub(crate) identity: IdentityConfig,
    /// Request limits.
    #[serde(default)]
    pub(crate) limits: Limits,
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

    #[test]
    fn the_example_parses_and_its_identity_config_loads() {
        let text = include_str!("../enclave.example.toml");
        let config: EnclaveConfig = toml::from_str(text).unwrap();
        assert_eq!(config.tee, TeeChoice::Auto);
        assert_eq!(config.engine, EngineChoice::None);
        cloister_policy::identity::TokenVerifier::new(&config.identity).unwrap();
        assert!(toml::from_str::<EnclaveConfig>(
            "tee = \"sgx\"\n[identity]\naudience = \"a\"\nissuers = []"
        )
        .is_err());
    }
}
