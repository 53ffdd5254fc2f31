//! AMD SEV-SNP: attestation reports, the VCEK/VLEK certificate chain to the
//! pinned AMD roots, and the bindings between the report and its certificate.
//!
//! Layouts follow AMD's SEV-SNP Firmware ABI Specification (publication 56860),
//! "ATTESTATION_REPORT Structure", and the VCEK extensions AMD's Versioned Chip
//! Endorsement Key specification (publication 57230) defines.

mod cert_table;
mod report;
mod roots;
mod verify;

pub use cert_table::{CertTableKind, SnpCertTable, MAX_CERT_TABLE_LEN};
pub use report::{
    FirmwareVersion, GuestPolicy, PlatformInfo, Product, SigningKey, SnpReport, TcbVersion,
};
pub use roots::{pinned_ark_fingerprints, PINNED_ARKS};
pub use verify::{SnpEndorsements, VekKind, VerifiedSnpChain, VerifiedSnpReport};
