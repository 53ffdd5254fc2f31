//! The Intel SGX Root CA, the one trust anchor for DCAP.
//!
//! Source: Intel's Provisioning Certification Service
//! (`https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem`),
//! as snapshotted verbatim in google/go-tdx-guest `verify/trusted_root.pem` at
//! commit 91f9a52f36c7a6ce140d5f13a2fb4ca03b61349c (Apache-2.0). Certificate
//! SHA-256 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3;
//! valid 2018-05-21..2049-12-31.

use std::sync::OnceLock;

use crate::error::Result;
use crate::x509::Certificate;

/// SHA-256 of the Intel SGX Root CA's SubjectPublicKeyInfo, hex.
pub const INTEL_SGX_ROOT_CA_SPKI_SHA256: &str =
    "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e";

const INTEL_SGX_ROOT_CA_PEM: &[u8] = include_bytes!("../roots/intel_sgx_root_ca.pem");

/// The pinned root as a certificate, parsed once per process.
pub(crate) fn intel_root() -> Result<&'static Certificate> {
    static ROOT: OnceLock<Result<Certificate>> = OnceLock::new();
    ROOT.get_or_init(|| Certificate::from_pem_or_der("Intel SGX Root CA", INTEL_SGX_ROOT_CA_PEM))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_root_matches_the_pin_and_is_self_signed() {
        let root = intel_root().unwrap();
        assert_eq!(
            hex::encode(root.spki_sha256()),
            INTEL_SGX_ROOT_CA_SPKI_SHA256
        );
        root.verify_issued_by(root).unwrap();
    }
}
