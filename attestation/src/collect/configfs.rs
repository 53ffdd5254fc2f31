//! A client for the kernel's configfs-tsm report interface
//! (Documentation/ABI/testing/configfs-tsm): make an entry directory, write
//! up to 64 bytes to `inblob`, read `outblob` (SNP report or TDX quote) and
//! `auxblob` (SNP certificate table), check `generation` did not move, then
//! remove the entry.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use der::pem::LineEnding;

use super::{CollectError, Collected, Endorsements, EvidenceSource};
use crate::evidence::{Evidence, Tee};
use crate::snp::{SnpCertTable, MAX_CERT_TABLE_LEN};
use crate::types::ReportData;

/// Largest `outblob` read (a DCAP quote with its PCK chain is ~5 KiB).
const MAX_OUTBLOB_LEN: u64 = 1024 * 1024;

/// Evidence through `/sys/kernel/config/tsm/report`.
#[derive(Debug)]
pub struct ConfigfsTsm {
    root: PathBuf,
    tee: Tee,
    entries_made: AtomicU64,
}

impl ConfigfsTsm {
    /// A client for the report directory `root` whose provider is `tee`.
    pub fn new(root: &Path, tee: Tee) -> Self {
        Self {
            root: root.to_owned(),
            tee,
            entries_made: AtomicU64::new(0),
        }
    }
}

impl EvidenceSource for ConfigfsTsm {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn collect(&self, report_data: &ReportData) -> Result<Collected, CollectError> {
        let name = format!(
            "cloister-{}-{}",
            std::process::id(),
            self.entries_made.fetch_add(1, Ordering::Relaxed)
        );
        let entry = Entry::create(self.root.join(name))?;
        read_entry(&entry.0, self.tee, report_data)
    }
}

/// An entry directory, removed when dropped: each report request leaves
/// nothing behind even when it fails.
struct Entry(PathBuf);

impl Entry {
    fn create(path: PathBuf) -> Result<Self, CollectError> {
        fs::create_dir(&path).map_err(|source| CollectError::Io {
            operation: "mkdir",
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove configfs-tsm entry");
        }
    }
}

/// The request/response exchange on an existing entry directory.
pub(super) fn read_entry(
    dir: &Path,
    tee: Tee,
    report_data: &ReportData,
) -> Result<Collected, CollectError> {
    let expected_provider = match tee {
        Tee::Snp => "sev_guest",
        Tee::Tdx => "tdx_guest",
        Tee::Sim => {
            return Err(CollectError::Unsupported(
                "configfs-tsm has no simulated provider".into(),
            ))
        }
    };
    let provider = read_limited(&dir.join("provider"), 64)?;
    let provider = String::from_utf8_lossy(&provider);
    if provider.trim() != expected_provider {
        return Err(CollectError::BadOutput {
            interface: "configfs-tsm",
            detail: format!(
                "provider is {:?}, expected {expected_provider}",
                provider.trim()
            ),
        });
    }
    let inblob = dir.join("inblob");
    fs::write(&inblob, report_data.as_bytes()).map_err(|source| CollectError::Io {
        operation: "write",
        path: inblob,
        source,
    })?;
    let before = generation(dir)?;
    let outblob = read_limited(&dir.join("outblob"), MAX_OUTBLOB_LEN)?;
    let auxblob = match tee {
        Tee::Snp => read_optional(&dir.join("auxblob"), MAX_CERT_TABLE_LEN as u64)?,
        _ => None,
    };
    let after = generation(dir)?;
    if before != after {
        return Err(CollectError::GenerationChanged { before, after });
    }

    let parsed = Evidence::parse(&outblob).map_err(|e| CollectError::BadOutput {
        interface: "configfs-tsm outblob",
        detail: e.to_string(),
    })?;
    if parsed.tee() != tee || parsed.report_data() != report_data {
        return Err(CollectError::BadOutput {
            interface: "configfs-tsm outblob",
            detail: format!(
                "{} evidence binding {}, but {} evidence binding {} was requested",
                parsed.tee().name(),
                parsed.report_data(),
                tee.name(),
                report_data
            ),
        });
    }
    let endorsements = match auxblob {
        Some(table) => snp_endorsements(&table)?,
        None => Endorsements::default(),
    };
    Ok(Collected {
        tee,
        evidence: outblob,
        endorsements,
    })
}

/// The VEK and its chain from an SNP certificate table.
pub(super) fn snp_endorsements(table: &[u8]) -> Result<Endorsements, CollectError> {
    let table = SnpCertTable::parse(table).map_err(|e| CollectError::BadOutput {
        interface: "SNP certificate table",
        detail: e.to_string(),
    })?;
    let cert_chain = match (table.ask, table.ark) {
        (Some(ask), Some(ark)) => pem_chain([ask, ark])?,
        _ => None,
    };
    Ok(Endorsements {
        vek: table.vek,
        cert_chain,
        collateral: None,
    })
}

/// ASK then ARK, DER in, PEM out: the form `SnpEndorsements` takes.
pub(super) fn pem_chain(ders: [Vec<u8>; 2]) -> Result<Option<Vec<u8>>, CollectError> {
    let mut pem = String::new();
    for der in ders {
        let block = der::pem::encode_string("CERTIFICATE", LineEnding::LF, &der).map_err(|e| {
            CollectError::BadOutput {
                interface: "SNP certificate table",
                detail: format!("cannot PEM-encode a certificate: {e}"),
            }
        })?;
        pem.push_str(&block);
    }
    Ok(Some(pem.into_bytes()))
}

fn generation(dir: &Path) -> Result<u64, CollectError> {
    let text = read_limited(&dir.join("generation"), 32)?;
    String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .map_err(|e| CollectError::BadOutput {
            interface: "configfs-tsm generation",
            detail: format!("not a number: {e}"),
        })
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, CollectError> {
    read_optional(path, limit)?.ok_or_else(|| CollectError::Io {
        operation: "read",
        path: path.to_owned(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// Reads at most `limit` bytes; a missing or empty file is `None`, a larger
/// one an error.
fn read_optional(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, CollectError> {
    let io = |source| CollectError::Io {
        operation: "read",
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out).map_err(io)?;
    if out.len() as u64 > limit {
        return Err(CollectError::BadOutput {
            interface: "configfs-tsm",
            detail: format!("{} is larger than {limit} bytes", path.display()),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &[u8] = include_bytes!("../../tests/vectors/snp/milan-v2-virtee/report.bin");
    const VCEK: &[u8] = include_bytes!("../../tests/vectors/snp/milan-v2-virtee/vcek.der");

    /// A directory laid out as the kernel lays out a configfs-tsm entry after
    /// the hardware answered (the kernel itself cannot be run here).
    fn fake_entry(name: &str, provider: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cloister-tsm-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
        fs::write(dir.join("generation"), "1\n").unwrap();
        fs::write(dir.join("outblob"), REPORT).unwrap();
        let mut table = Vec::new();
        table.extend(hex::decode("63da758de6644564adc5f4b93be8accd").unwrap());
        table.extend(48u32.to_le_bytes());
        table.extend((VCEK.len() as u32).to_le_bytes());
        table.extend([0; 24]);
        table.extend_from_slice(VCEK);
        fs::write(dir.join("auxblob"), table).unwrap();
        dir
    }

    fn report_data() -> ReportData {
        crate::snp::SnpReport::parse(REPORT).unwrap().report_data
    }

    #[test]
    fn reads_report_and_certificates() {
        let dir = fake_entry("ok", "sev_guest");
        let got = read_entry(&dir, Tee::Snp, &report_data()).unwrap();
        assert_eq!(fs::read(dir.join("inblob")).unwrap(), report_data().0);
        assert_eq!(got.evidence, REPORT);
        assert_eq!(got.endorsements.vek.as_deref(), Some(VCEK));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_wrong_provider_and_unbound_output() {
        let dir = fake_entry("provider", "tdx_guest");
        let err = read_entry(&dir, Tee::Snp, &report_data()).unwrap_err();
        assert!(err.to_string().contains("provider"), "{err}");
        fs::remove_dir_all(dir).unwrap();

        let dir = fake_entry("binding", "sev_guest");
        let err = read_entry(&dir, Tee::Snp, &ReportData([0; 64])).unwrap_err();
        assert!(err.to_string().contains("was requested"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
