//! Release policies: which enclaves may have a key.
//!
//! ```toml
//! min_bundle_version = 2          # refuse older bundles (rollback protection)
//! policy_digests = "any"          # or ["<64 hex>", ...]: policy bundles the enclave may run
//!
//! [appraisal]                     # an appraisal policy, as `cloister verify --policy` takes
//! allow_simulated = false
//! [appraisal.snp]
//! measurements = ["…"]
//! # …
//! ```
//!
//! Every field is required: forgetting one is a parse error, never "any".

use cloister_attestation::policy::{AppraisalPolicy, Reference};
use serde::Deserialize;

use crate::error::VaultError;

pub use cloister_attestation::policy::PolicyDigest;

/// What an enclave must show to be given a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    /// Oldest bundle version the key may unseal.
    pub min_bundle_version: u64,
    /// Policy bundles the enclave may be running.
    pub policy_digests: Reference<PolicyDigest>,
    /// What the evidence must satisfy.
    pub appraisal: AppraisalPolicy,
}

impl ReleasePolicy {
    /// Parses a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Self, VaultError> {
        toml::from_str(text).map_err(|e| VaultError::Policy(e.to_string()))
    }

    /// Whether an enclave committed to `digest` (empty: no policy bundle)
    /// may have the key: the release policy's `policy_digests` and, where
    /// it sets one, its appraisal policy's.
    pub fn allows_policy_digest(&self, digest: &[u8]) -> bool {
        self.policy_digests.accepts_committed(digest)
            && self
                .appraisal
                .policy_digests
                .as_ref()
                .is_none_or(|accepted| accepted.accepts_committed(digest))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SIM: &str =
        "[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = \"any\"\n";

    #[test]
    fn every_field_is_required_and_digests_are_checked() {
        let policy = ReleasePolicy::from_toml(&format!(
            "min_bundle_version = 3\npolicy_digests = \"any\"\n{SIM}"
        ))
        .unwrap();
        assert_eq!(policy.min_bundle_version, 3);
        assert!(policy.allows_policy_digest(&[]));

        let pinned = ReleasePolicy::from_toml(&format!(
            "min_bundle_version = 1\npolicy_digests = [\"{}\"]\n{SIM}",
            "ab".repeat(32)
        ))
        .unwrap();
        assert!(pinned.allows_policy_digest(&[0xab; 32]));
        assert!(!pinned.allows_policy_digest(&[0xac; 32]));
        assert!(
            !pinned.allows_policy_digest(&[]),
            "no bundle is not an allowed bundle"
        );

        for missing in [
            format!("policy_digests = \"any\"\n{SIM}"),
            format!("min_bundle_version = 1\n{SIM}"),
            "min_bundle_version = 1\npolicy_digests = \"any\"\n".to_owned(),
            format!("min_bundle_version = 1\npolicy_digests = []\n{SIM}"),
            format!("min_bundle_version = 1\npolicy_digests = [\"00\"]\n{SIM}"),
            format!("min_bundle_version = 1\npolicy_digests = \"any\"\nextra = 1\n{SIM}"),
        ] {
            assert!(
                matches!(
                    ReleasePolicy::from_toml(&missing),
                    Err(VaultError::Policy(_))
                ),
                "{missing}"
            );
        }
    }
}
