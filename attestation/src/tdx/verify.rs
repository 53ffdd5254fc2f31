//! Verification of a TDX quote: the PCK chain to the pinned Intel root, the
//! QE report and its binding of the attestation key, the quote signature,
//! and, with collateral, revocation and the TCB status.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::collateral::{check_pinned, VerifiedTdxCollateral};
use super::pck::PckExtensions;
use super::quote::TdxQuote;
use super::roots::intel_root;
use super::tcb::{evaluate, TcbEvaluation};
use crate::error::{Error, Result};
use crate::types::Fmspc;
use crate::x509::{Certificate, PublicKey};

impl TdxQuote {
    /// Verifies the quote at `now`. Without collateral, signatures, the PCK
    /// chain and the key binding are still verified but revocation and TCB
    /// status are unknown (`tcb()` is `None`).
    pub fn verify(
        self,
        collateral: Option<&VerifiedTdxCollateral>,
        now: OffsetDateTime,
    ) -> Result<VerifiedTdxQuote> {
        let [leaf, intermediate, root] = self.pck_chain.as_slice() else {
            return Err(Error::ChainLength {
                which: "PCK certificate chain",
                expected: "3 (PCK, PCK CA, root CA)",
                found: self.pck_chain.len(),
            });
        };
        let leaf = Certificate::from_der("PCK certificate", leaf)?;
        let intermediate = Certificate::from_der("PCK CA certificate", intermediate)?;
        check_pinned(&Certificate::from_der("PCK chain root", root)?)?;
        let root = intel_root()?;
        leaf.verify_issued_by(&intermediate)?;
        intermediate.verify_issued_by(root)?;
        for cert in [root, &intermediate, &leaf] {
            cert.check_validity(now)?;
        }

        leaf.public_key().verify_fixed(
            &self.qe_report.raw,
            &self.qe_report_signature,
            "QE report signed by PCK certificate",
        )?;
        let mut binding = Sha256::new();
        binding.update(self.attestation_key);
        binding.update(&self.qe_auth_data);
        let expected: [u8; 32] = binding.finalize().into();
        let (bound, padding) = self.qe_report.report_data.split_at(32);
        if bound != expected || padding.iter().any(|b| *b != 0) {
            return Err(Error::QeReportDataMismatch);
        }
        PublicKey::p256_from_raw(&self.attestation_key).verify_fixed(
            self.signed_bytes(),
            &self.signature,
            "TDX quote signed by attestation key",
        )?;

        let pck = PckExtensions::from_certificate(&leaf)?;
        let tcb = match collateral {
            None => None,
            Some(collateral) => {
                collateral.check_current(now)?;
                collateral.root_ca_crl().check_not_revoked(&intermediate)?;
                collateral.pck_crl().verify_signature(&intermediate)?;
                collateral.pck_crl().check_not_revoked(&leaf)?;
                Some(evaluate(
                    collateral,
                    &pck,
                    &self.td_report,
                    &self.qe_report,
                )?)
            }
        };
        tracing::debug!(
            version = self.version,
            mrtd = %self.td_report.mr_td,
            tcb_status = tcb.as_ref().map(|t| t.status.as_str()),
            "TDX quote verified"
        );
        Ok(VerifiedTdxQuote {
            collateral_issued: collateral.map(VerifiedTdxCollateral::issued),
            quote: self,
            fmspc: pck.fmspc,
            pce_id: pck.pce_id,
            tcb,
        })
    }
}

/// A TDX quote whose signatures and chain verified. Only
/// [`TdxQuote::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedTdxQuote {
    quote: TdxQuote,
    fmspc: Fmspc,
    pce_id: [u8; 2],
    tcb: Option<TcbEvaluation>,
    collateral_issued: Option<OffsetDateTime>,
}

impl VerifiedTdxQuote {
    /// A verified quote made without verification, for policy unit tests.
    #[cfg(test)]
    pub(crate) fn for_policy_test(quote: TdxQuote) -> Self {
        Self {
            quote,
            fmspc: Fmspc([0; 6]),
            pce_id: [0; 2],
            tcb: None,
            collateral_issued: None,
        }
    }

    /// The verified quote.
    pub fn quote(&self) -> &TdxQuote {
        &self.quote
    }
    /// The platform's FMSPC, from the PCK certificate.
    pub fn fmspc(&self) -> Fmspc {
        self.fmspc
    }
    /// The PCE ID, from the PCK certificate.
    pub fn pce_id(&self) -> [u8; 2] {
        self.pce_id
    }
    /// TCB status and advisories; `None` when verified without collateral.
    pub fn tcb(&self) -> Option<&TcbEvaluation> {
        self.tcb.as_ref()
    }
    /// When the oldest part of the collateral was issued.
    pub fn collateral_issued(&self) -> Option<OffsetDateTime> {
        self.collateral_issued
    }
}
