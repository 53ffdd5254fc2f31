//! Verification of confidential-computing attestation evidence for Cloister:
//! AMD SEV-SNP attestation reports and Intel TDX DCAP quotes, checked against
//! vendor roots pinned in this crate, then appraised against an operator's
//! policy.
//!
//! Three steps, three types, as in go-sev-guest and webpki: *parse*
//! (structure only, strict), *verify* (signatures, chains, validity at an
//! explicit `now`, revocation) and *appraise* (reference values, TCB, debug).
//! [`evidence::VerifiedEvidence`] and [`evidence::Appraisal`] can only be made
//! by this crate, so code that releases a key or accepts a channel can demand
//! one as proof.
//!
//! ```
//! use cloister_attestation::evidence::{EndorsementInputs, Evidence};
//! use cloister_attestation::policy::AppraisalPolicy;
//! use time::macros::datetime;
//!
//! let report = include_bytes!("../tests/vectors/snp/milan-v2-virtee/report.bin");
//! let vcek = include_bytes!("../tests/vectors/snp/milan-v2-virtee/vcek.der");
//! let now = datetime!(2025-10-01 00:00:00 UTC);
//!
//! let evidence = Evidence::parse(report)?;
//! let inputs = EndorsementInputs { vek: Some(vcek), ..Default::default() };
//! let verified = evidence.verify(&inputs, now)?;
//! let appraisal = verified.appraise(&AppraisalPolicy::report_only(), now)?;
//! assert!(appraisal.result().verified);
//! # Ok::<(), cloister_attestation::error::Error>(())
//! ```

pub(crate) mod bytes;
pub mod collect;
pub mod error;
pub mod evidence;
pub mod measure;
pub mod policy;
pub mod ratls;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod types;
pub(crate) mod x509;

pub use error::{Error, Result};
pub use evidence::{attest, AttestationResult, EndorsementInputs, Evidence, Verdict};
pub use policy::AppraisalPolicy;
