//! Evidence collection inside a guest: "give me evidence whose report_data is
//! these 64 bytes", from whichever TEE interface the kernel offers.
//!
//! Backends, in the order [`detect`] tries them:
//! - [`ConfigfsTsm`]: the kernel's configfs-tsm report interface (Linux ≥ 6.7),
//!   `sev_guest` or `tdx_guest` provider; SNP certificates come in `auxblob`.
//! - [`SevGuestDevice`]: `/dev/sev-guest` extended reports, through the `sev` crate.
//! - `/dev/tdx_guest` alone is recognised but refused: a TDREPORT is only
//!   MAC'd for the local platform, and remote parties need a quote, which
//!   Linux produces through configfs-tsm.
//! - [`SimTee`]: the INSECURE simulated TEE. Never chosen by detection; a
//!   caller has to ask for it by name.

mod configfs;
mod sev_guest;

use std::path::{Path, PathBuf};

pub use configfs::ConfigfsTsm;
pub use sev_guest::SevGuestDevice;

use crate::evidence::{EndorsementInputs, Tee};
use crate::sim::SimTee;
use crate::types::ReportData;

/// The default configfs-tsm report directory.
pub const CONFIGFS_TSM_REPORT: &str = "/sys/kernel/config/tsm/report";
/// The SEV-SNP guest device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";
/// The TDX guest device.
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Evidence as collected, with whatever endorsements the platform supplied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Which TEE produced it.
    pub tee: Tee,
    /// The raw report, quote or simulated evidence.
    pub evidence: Vec<u8>,
    /// Endorsements that came with it.
    pub endorsements: Endorsements,
}

/// Endorsements a platform hands its guest, in the form the verifier takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endorsements {
    /// SNP: VCEK or VLEK certificate, DER.
    pub vek: Option<Vec<u8>>,
    /// SNP: ASK (or ASVK) then ARK, PEM.
    pub cert_chain: Option<Vec<u8>>,
    /// TDX: collateral JSON (the PCK chain travels inside the quote).
    pub collateral: Option<Vec<u8>>,
}

impl Endorsements {
    /// Borrows them as verifier inputs.
    pub fn inputs(&self) -> EndorsementInputs<'_> {
        EndorsementInputs {
            vek: self.vek.as_deref(),
            cert_chain: self.cert_chain.as_deref(),
            amd_crl: None,
            collateral: self.collateral.as_deref(),
        }
    }
}

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// An I/O operation on a TEE interface failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Someone else wrote to the same configfs-tsm entry while we read it.
    #[error("configfs-tsm generation changed from {before} to {after}: a concurrent writer; the report may not be ours")]
    GenerationChanged {
        /// Generation after our write.
        before: u64,
        /// Generation after our read.
        after: u64,
    },
    /// The interface answered with something that is not what was asked for.
    #[error("{interface} returned unusable output: {detail}")]
    BadOutput {
        /// The interface.
        interface: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The SEV guest firmware refused the request.
    #[error("/dev/sev-guest: {0}")]
    SevGuest(String),
    /// No hardware TEE interface exists here.
    #[error("no TEE interface found ({CONFIGFS_TSM_REPORT}, {SEV_GUEST_DEVICE} and {TDX_GUEST_DEVICE} are all absent); this is not a confidential VM. To run without one, ask for the INSECURE simulated TEE explicitly (tee = \"sim\")")]
    NoTee,
    /// A TEE exists but not through an interface that can produce remotely
    /// verifiable evidence.
    #[error("{0}")]
    Unsupported(String),
}

/// Produces evidence binding caller-chosen data.
pub trait EvidenceSource: Send + Sync + std::fmt::Debug {
    /// The TEE this source speaks for.
    fn tee(&self) -> Tee;

    /// Collects fresh evidence whose report_data is `report_data`.
    fn collect(&self, report_data: &ReportData) -> Result<Collected, CollectError>;
}

impl EvidenceSource for SimTee {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn collect(&self, report_data: &ReportData) -> Result<Collected, CollectError> {
        Ok(Collected {
            tee: Tee::Sim,
            evidence: self.report(report_data),
            endorsements: Endorsements::default(),
        })
    }
}

/// Picks the hardware TEE interface of this guest. Never returns the
/// simulated TEE: without hardware it is an error ([`CollectError::NoTee`]).
pub fn detect() -> Result<Box<dyn EvidenceSource>, CollectError> {
    detect_in(
        Path::new(CONFIGFS_TSM_REPORT),
        Path::new(SEV_GUEST_DEVICE),
        Path::new(TDX_GUEST_DEVICE),
    )
}

fn detect_in(
    configfs: &Path,
    sev_guest: &Path,
    tdx_guest: &Path,
) -> Result<Box<dyn EvidenceSource>, CollectError> {
    if configfs.is_dir() {
        let hint = if sev_guest.exists() {
            Some(Tee::Snp)
        } else if tdx_guest.exists() {
            Some(Tee::Tdx)
        } else {
            None
        };
        if let Some(tee) = hint {
            return Ok(Box::new(ConfigfsTsm::new(configfs, tee)));
        }
    }
    if sev_guest.exists() {
        return Ok(Box::new(SevGuestDevice::new(sev_guest)));
    }
    if tdx_guest.exists() {
        return Err(CollectError::Unsupported(format!(
            "{} exists but {} does not: TDX quotes need the kernel's configfs-tsm interface (Linux ≥ 6.7 with CONFIG_TSM_REPORTS and configfs mounted)",
            tdx_guest.display(),
            configfs.display()
        )));
    }
    Err(CollectError::NoTee)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_never_falls_back_to_sim() {
        let dir = std::env::temp_dir().join(format!("cloister-detect-{}", std::process::id()));
        let missing = dir.join("missing");
        assert!(matches!(
            detect_in(&missing, &missing, &missing),
            Err(CollectError::NoTee)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let tdx = dir.join("tdx_guest");
        std::fs::write(&tdx, b"").unwrap();
        assert!(matches!(
            detect_in(&missing, &missing, &tdx),
            Err(CollectError::Unsupported(_))
        ));
        let sev = dir.join("sev-guest");
        std::fs::write(&sev, b"").unwrap();
        assert_eq!(detect_in(&missing, &sev, &tdx).unwrap().tee(), Tee::Snp);
        assert_eq!(detect_in(&dir, &missing, &tdx).unwrap().tee(), Tee::Tdx);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
