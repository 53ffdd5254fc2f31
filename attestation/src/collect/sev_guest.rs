//! Extended SNP reports from `/dev/sev-guest`, through the `sev` crate, for
//! kernels without configfs-tsm.

use super::{CollectError, Collected, Endorsements, EvidenceSource};
use crate::evidence::Tee;
use crate::types::ReportData;

/// Evidence through the SEV guest device.
#[derive(Debug, Default)]
pub struct SevGuestDevice {
    path: std::path::PathBuf,
}

impl SevGuestDevice {
    /// A client for the device at `path` (the `sev` crate opens
    /// `/dev/sev-guest`; the path is kept for messages).
    pub fn new(path: &std::path::Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }
}

impl EvidenceSource for SevGuestDevice {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    #[cfg(target_os = "linux")]
    fn collect(&self, report_data: &ReportData) -> Result<Collected, CollectError> {
        use sev::firmware::guest::Firmware;
        use sev::firmware::host::CertType;

        let mut firmware = Firmware::open().map_err(|source| CollectError::Io {
            operation: "open",
            path: self.path.clone(),
            source,
        })?;
        // VMPL 0: the enclave agent runs in the guest's most privileged level.
        let (report, certificates) = firmware
            .get_ext_report(None, Some(report_data.0), Some(0))
            .map_err(|e| CollectError::SevGuest(e.to_string()))?;
        let mut vek = None;
        let mut ask = None;
        let mut ark = None;
        for entry in certificates.unwrap_or_default() {
            match entry.cert_type {
                CertType::VCEK | CertType::VLEK => vek = Some(entry.data),
                CertType::ASK => ask = Some(entry.data),
                CertType::ARK => ark = Some(entry.data),
                _ => {}
            }
        }
        let mut endorsements = Endorsements {
            vek,
            ..Endorsements::default()
        };
        if let (Some(ask), Some(ark)) = (ask, ark) {
            endorsements.cert_chain = super::configfs::pem_chain([ask, ark])?;
        }
        Ok(Collected {
            tee: Tee::Snp,
            evidence: report,
            endorsements,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn collect(&self, _report_data: &ReportData) -> Result<Collected, CollectError> {
        Err(CollectError::Unsupported(format!(
            "{} is only available on Linux",
            self.path.display()
        )))
    }
}
