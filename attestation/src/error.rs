//! The one error type of this crate.
//!
//! Every variant names the check that failed and carries what was expected and
//! what was found, so that a denial can be explained to an operator without a
//! debugger. Signature failures stay a single variant per signed object: there
//! is nothing useful to say about *why* a signature does not verify, and saying
//! more would only help an attacker probe.

use time::OffsetDateTime;

/// Which structure a parse error happened in.
pub type Structure = &'static str;

/// Everything that can make evidence unacceptable, from malformed bytes to a
/// policy violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the structure did.
    #[error("{structure} is truncated: needs {needed} bytes, found {found}")]
    Truncated {
        /// The structure being read.
        structure: Structure,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were available.
        found: usize,
    },
    /// Bytes follow the structure where none may.
    #[error("{structure} has {extra} unexpected trailing bytes")]
    TrailingData {
        /// The structure being read.
        structure: Structure,
        /// How many bytes are left over.
        extra: usize,
    },
    /// A version this verifier does not understand.
    #[error("{structure} version {found} is not supported (supported: {supported})")]
    UnsupportedVersion {
        /// The structure being read.
        structure: Structure,
        /// The version found.
        found: u32,
        /// Human-readable list of supported versions.
        supported: &'static str,
    },
    /// A reserved field is not zero (or a must-be-one bit is not one).
    #[error("{structure}: reserved field at offset {offset:#x} is not as required")]
    ReservedNotZero {
        /// The structure being read.
        structure: Structure,
        /// Offset of the first offending byte (or of the field).
        offset: usize,
    },
    /// A field holds a value that is structurally impossible.
    #[error("{structure}: field {field} is invalid: {detail}")]
    InvalidField {
        /// The structure being read.
        structure: Structure,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The evidence is neither an SNP report nor a DCAP quote.
    #[error("evidence format not recognised: {detail}")]
    UnknownEvidenceFormat {
        /// What was seen.
        detail: String,
    },
    /// A certificate or CRL could not be decoded.
    #[error("{which}: cannot be decoded: {detail}")]
    Malformed {
        /// Which certificate, CRL or document.
        which: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// A certificate uses an algorithm we do not accept for its role.
    #[error("{which}: algorithm {found} is not accepted (expected {expected})")]
    UnexpectedAlgorithm {
        /// Which certificate or key.
        which: String,
        /// The expected algorithm.
        expected: &'static str,
        /// The algorithm found (an OID or a name).
        found: String,
    },
    /// A signature did not verify.
    #[error("{what}: signature does not verify")]
    SignatureInvalid {
        /// The signed object and its signer, e.g. "SNP report signed by VCEK".
        what: String,
    },
    /// A certificate is not valid yet at `now`.
    #[error("{which} is not valid before {} (now {})", rfc3339(.not_before), rfc3339(.now))]
    CertificateNotYetValid {
        /// Which certificate.
        which: String,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// A certificate has expired at `now`.
    #[error("{which} expired at {} (now {})", rfc3339(.not_after), rfc3339(.now))]
    CertificateExpired {
        /// Which certificate.
        which: String,
        /// End of validity.
        not_after: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// The chain's root is not one of the roots pinned in this crate.
    #[error("{which} is not a pinned root (SubjectPublicKeyInfo SHA-256 {spki_sha256})")]
    UntrustedRoot {
        /// Which certificate claimed to be the root.
        which: String,
        /// The fingerprint of its key, to compare with the published ones.
        spki_sha256: String,
    },
    /// A certificate's issuer is not the next certificate's subject.
    #[error("{which} was issued by \"{issuer}\", but the next certificate is \"{found}\"")]
    IssuerMismatch {
        /// Which certificate.
        which: String,
        /// Its issuer name.
        issuer: String,
        /// The subject of the certificate that should have issued it.
        found: String,
    },
    /// A certificate that must be a CA is not one.
    #[error("{which} is not a CA certificate")]
    NotCa {
        /// Which certificate.
        which: String,
    },
    /// A chain is longer or shorter than the format allows.
    #[error("{which}: chain has {found} certificates, expected {expected}")]
    ChainLength {
        /// Which chain.
        which: &'static str,
        /// Expected length (or range), in words.
        expected: &'static str,
        /// Certificates found.
        found: usize,
    },
    /// The evidence, its certificates or its pinned root disagree about the
    /// processor product (Milan, Genoa, Turin).
    #[error("product mismatch: {expected} expected, but {source_of_claim} says {found}")]
    ProductMismatch {
        /// The product the root or report establishes.
        expected: String,
        /// What disagrees.
        source_of_claim: &'static str,
        /// The product it names.
        found: String,
    },
    /// The VCEK was issued to a different chip than the one that signed the report.
    #[error("VCEK hwID does not match report chip_id (hwID {vek}, chip_id {report})")]
    HwIdMismatch {
        /// hwID from the VCEK, hex.
        vek: String,
        /// chip_id from the report, hex.
        report: String,
    },
    /// The VEK was issued for another TCB than the one the report claims.
    #[error("VEK {component} SPL is {certificate} but the report's reported_tcb says {report}")]
    TcbMismatch {
        /// The TCB component.
        component: &'static str,
        /// The value in the certificate.
        certificate: u8,
        /// The value in the report.
        report: u8,
    },
    /// The report says it was signed with one kind of key, the certificate is another.
    #[error("report was signed by a {report}, but the certificate given is a {certificate}")]
    SigningKeyMismatch {
        /// Key kind named in the report.
        report: &'static str,
        /// Key kind of the certificate.
        certificate: &'static str,
    },
    /// A certificate is listed in a CRL.
    #[error("{which} (serial {serial}) is revoked by {crl}")]
    CertificateRevoked {
        /// Which certificate.
        which: String,
        /// Its serial number, hex.
        serial: String,
        /// Which CRL revoked it.
        crl: String,
    },
    /// A CRL, TCB info or QE identity is outside its validity window at `now`.
    #[error(
        "{which} is not current: valid {} to {}, now {}",
        rfc3339(.issued),
        rfc3339(.next_update),
        rfc3339(.now)
    )]
    CollateralNotCurrent {
        /// Which document.
        which: String,
        /// Its issue (thisUpdate) time.
        issued: OffsetDateTime,
        /// Its nextUpdate time.
        next_update: OffsetDateTime,
        /// The verification time.
        now: OffsetDateTime,
    },
    /// The QE report does not bind the attestation key.
    #[error("QE report_data does not equal SHA-256(attestation key || QE auth data)")]
    QeReportDataMismatch,
    /// Collateral was issued for another platform than the PCK certificate's.
    #[error("{field} mismatch: PCK certificate says {pck}, collateral says {collateral}")]
    CollateralMismatch {
        /// FMSPC or PCE ID.
        field: &'static str,
        /// From the PCK certificate.
        pck: String,
        /// From the collateral.
        collateral: String,
    },
    /// No TCB level in the TCB info matches the platform. Never guessed.
    #[error("no TCB level in {which} matches this platform")]
    NoMatchingTcbLevel {
        /// TCB info, QE identity or TDX module identity.
        which: &'static str,
    },
    /// The quoting enclave is not the one Intel's QE identity describes.
    #[error("QE report does not match QE identity: {field} found {found}, expected {expected}")]
    QeIdentityMismatch {
        /// The field that differs.
        field: &'static str,
        /// What the QE report holds.
        found: String,
        /// What the identity expects.
        expected: String,
    },
    /// The TDX module is not the one the TCB info describes.
    #[error("TDX module does not match TCB info: {field} found {found}, expected {expected}")]
    TdxModuleMismatch {
        /// The field that differs.
        field: &'static str,
        /// What the quote holds.
        found: String,
        /// What the TCB info expects.
        expected: String,
    },
    /// Evidence of this kind cannot be verified without this endorsement.
    #[error("{tee} evidence cannot be verified without {what}")]
    MissingEndorsement {
        /// The TEE.
        tee: &'static str,
        /// What must be supplied.
        what: &'static str,
    },
    /// The appraisal policy file is malformed.
    #[error("appraisal policy is invalid: {detail}")]
    InvalidPolicy {
        /// What is wrong with it.
        detail: String,
    },
    /// The evidence verified but the policy rejects it.
    #[error("policy rejects the evidence: {}", join_violations(.0))]
    PolicyRejected(Vec<crate::policy::Violation>),
}

/// RFC 3339, as the CLI's `--now` takes it, for messages.
pub(crate) fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn join_violations(violations: &[crate::policy::Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// This crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
