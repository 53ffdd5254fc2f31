//! The broker's offline endorsement cache: vendor certificates and
//! collateral kept on the data owner's machine, so a release never waits on
//! AMD's or Intel's servers. Used only where the enclave's evidence arrives
//! without them; everything found here is verified against the pinned vendor
//! roots like anything an enclave sends.
//!
//! Layout of the cache directory:
//!
//! | path | holds |
//! |---|---|
//! | `snp/vek/<CHIP_ID hex>/<REPORTED_TCB as 16 hex>.der` | the VCEK (or VLEK) for that chip at that TCB |
//! | `snp/cert_chain.pem` | optional ASK/ASVK then ARK (default: the intermediates built into the verifier) |
//! | `tdx/collateral.json` | TDX collateral for the platform (the PCK chain travels in the quote) |
//!
//! `cloister kbs cache add` files a VCEK under the report it signed and
//! refreshes the TDX collateral from a file the operator fetched.

use std::path::{Path, PathBuf};

use cloister_attestation::collect::Endorsements;
use cloister_attestation::evidence::{EndorsementInputs, Evidence};
use cloister_attestation::policy::AppraisalPolicy;
use time::OffsetDateTime;

use crate::error::VaultError;

/// Largest cached file read (a VCEK is ~1.4 KB, TDX collateral ~20 KB).
const MAX_CACHED_FILE: u64 = 1024 * 1024;

/// An endorsement cache directory.
#[derive(Debug, Clone)]
pub struct EndorsementCache {
    dir: PathBuf,
}

impl EndorsementCache {
    /// A cache rooted at `dir` (which need not exist yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// What the cache holds for `evidence` (nothing for evidence it cannot
    /// parse, or for the simulated TEE, which has no endorsements).
    pub fn lookup(&self, evidence: &[u8]) -> Endorsements {
        match Evidence::parse(evidence) {
            Ok(Evidence::Snp(report)) => Endorsements {
                vek: read_capped(
                    &self.vek_path(&report.chip_id.to_string(), report.reported_tcb.raw),
                ),
                cert_chain: read_capped(&self.dir.join("snp/cert_chain.pem")),
                collateral: None,
            },
            Ok(Evidence::Tdx(_)) => Endorsements {
                vek: None,
                cert_chain: None,
                collateral: read_capped(&self.dir.join("tdx/collateral.json")),
            },
            _ => Endorsements::default(),
        }
    }

    /// Files `vek` under the SNP report it endorses, after checking that it
    /// does: the report must verify with it at `now`.
    pub fn add_vek(
        &self,
        report: &[u8],
        vek: &[u8],
        now: OffsetDateTime,
    ) -> Result<PathBuf, VaultError> {
        let Ok(Evidence::Snp(parsed)) = Evidence::parse(report) else {
            return Err(VaultError::InvalidParams(
                "not an SNP attestation report".into(),
            ));
        };
        let inputs = EndorsementInputs {
            vek: Some(vek),
            ..EndorsementInputs::default()
        };
        let result =
            cloister_attestation::attest(report, &inputs, &AppraisalPolicy::report_only(), now);
        if !result.verified {
            return Err(VaultError::InvalidParams(format!(
                "the certificate does not verify this report: {}",
                result.reasons.join("; ")
            )));
        }
        let path = self.vek_path(&parsed.chip_id.to_string(), parsed.reported_tcb.raw);
        write_file(&path, vek)?;
        Ok(path)
    }

    /// Replaces the cached TDX collateral (checked to parse first).
    pub fn set_collateral(&self, collateral: &[u8]) -> Result<PathBuf, VaultError> {
        cloister_attestation::tdx::TdxCollateral::from_json(collateral)
            .map_err(|e| VaultError::InvalidParams(format!("not TDX collateral: {e}")))?;
        let path = self.dir.join("tdx/collateral.json");
        write_file(&path, collateral)?;
        Ok(path)
    }

    fn vek_path(&self, chip_id_hex: &str, tcb_raw: u64) -> PathBuf {
        self.dir
            .join("snp/vek")
            .join(chip_id_hex)
            .join(format!("{tcb_raw:016x}.der"))
    }
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_CACHED_FILE {
        tracing::warn!(path = %path.display(), "cached endorsement too large; ignored");
        return None;
    }
    std::fs::read(path).ok()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
