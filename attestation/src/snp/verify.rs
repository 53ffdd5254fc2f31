//! Verification of an SNP report: the VEK chain to a pinned ARK, then the
//! report's signature and its bindings to the VEK certificate.
//!
//! The chain step ([`SnpEndorsements::verify`]) is the expensive part (three
//! RSA-4096 signatures) and depends only on the certificates, so its result
//! ([`VerifiedSnpChain`]) can be cached and reused for every report signed by
//! the same VEK; validity periods are re-checked against each report's `now`.

use der::asn1::{Ia5StringRef, ObjectIdentifier, OctetStringRef};
use der::Decode;
use serde::Serialize;
use time::OffsetDateTime;

use super::report::{Product, SigningKey, SnpReport, TcbVersion};
use super::roots::{product_for_ark, EMBEDDED_CHAINS};
use crate::error::{Error, Result};
use crate::x509::{parse_pem_chain, Certificate, Crl, PublicKey};

const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// Which kind of versioned endorsement key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VekKind {
    /// Versioned Chip Endorsement Key: unique to one chip and TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: provisioned by a cloud provider.
    Vlek,
}

impl VekKind {
    fn name(self) -> &'static str {
        match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        }
    }
}

/// The certificates that vouch for an SNP report, not yet verified.
#[derive(Debug, Clone)]
pub struct SnpEndorsements {
    vek: Certificate,
    intermediate: Certificate,
    ark: Certificate,
    crl: Option<Crl>,
}

impl SnpEndorsements {
    /// `vek` is the VCEK or VLEK (DER or PEM). `cert_chain` is the ASK (or
    /// ASVK) then the ARK in PEM, as AMD's KDS serves `cert_chain`; without it
    /// the intermediate AMD publishes for the VEK's issuer is used. `crl` is
    /// AMD's CRL for the product (DER or PEM), checked when given.
    pub fn new(vek: &[u8], cert_chain: Option<&[u8]>, crl: Option<&[u8]>) -> Result<Self> {
        let vek = Certificate::from_pem_or_der("VEK", vek)?;
        let (intermediate, ark) = match cert_chain {
            Some(pem) => {
                let ders = parse_pem_chain("AMD certificate chain", pem)?;
                let [ask, ark] = ders.as_slice() else {
                    return Err(Error::ChainLength {
                        which: "AMD certificate chain",
                        expected: "2 (ASK or ASVK, then ARK)",
                        found: ders.len(),
                    });
                };
                (
                    Certificate::from_der("ASK", ask)?,
                    Certificate::from_der("ARK", ark)?,
                )
            }
            None => embedded_chain_for(&vek)?,
        };
        let intermediate = if vek.common_name().as_deref() == Some("SEV-VLEK") {
            intermediate.relabel("ASVK")
        } else {
            intermediate
        };
        let crl = crl
            .map(|bytes| Crl::from_pem_or_der("AMD CRL", bytes))
            .transpose()?;
        Ok(Self {
            vek,
            intermediate,
            ark,
            crl,
        })
    }

    /// Verifies the chain at `now`: the ARK is a pinned AMD root, it signed the
    /// intermediate, the intermediate signed the VEK, all are valid at `now`,
    /// the products agree, and (with a CRL) the intermediate is not revoked.
    pub fn verify(&self, now: OffsetDateTime) -> Result<VerifiedSnpChain> {
        let product =
            product_for_ark(&self.ark.spki_sha256()).ok_or_else(|| Error::UntrustedRoot {
                which: "ARK".into(),
                spki_sha256: hex::encode(self.ark.spki_sha256()),
            })?;
        self.ark.verify_issued_by(&self.ark)?;
        self.intermediate.verify_issued_by(&self.ark)?;
        self.vek.verify_issued_by(&self.intermediate)?;

        let kind = match self.vek.common_name().as_deref() {
            Some("SEV-VCEK") => VekKind::Vcek,
            Some("SEV-VLEK") => VekKind::Vlek,
            other => {
                return Err(Error::InvalidField {
                    structure: "VEK certificate",
                    field: "subject CN",
                    detail: format!("{other:?} is neither SEV-VCEK nor SEV-VLEK"),
                })
            }
        };
        let expected_cn = match kind {
            VekKind::Vcek => format!("SEV-{product}"),
            VekKind::Vlek => format!("SEV-VLEK-{product}"),
        };
        let found_cn = self.intermediate.common_name().unwrap_or_default();
        if found_cn != expected_cn {
            return Err(Error::ProductMismatch {
                expected: expected_cn,
                source_of_claim: "the intermediate certificate's subject",
                found: found_cn,
            });
        }
        let product_name = self
            .vek
            .extension(&OID_PRODUCT_NAME)
            .and_then(|v| Ia5StringRef::from_der(v).ok())
            .map(|s| s.as_str().to_owned())
            .ok_or_else(|| missing_extension(kind, "productName"))?;
        // "Milan-B0": the stepping after the dash is informational.
        if product_name.split('-').next() != Some(product.name()) {
            return Err(Error::ProductMismatch {
                expected: product.name().into(),
                source_of_claim: "the VEK productName extension",
                found: product_name,
            });
        }
        if !matches!(self.vek.public_key(), PublicKey::P384(_)) {
            return Err(Error::UnexpectedAlgorithm {
                which: kind.name().into(),
                expected: "EC P-384 public key",
                found: "another key type".into(),
            });
        }
        if let Some(crl) = &self.crl {
            crl.verify_signature(&self.ark)?;
            crl.check_not_revoked(&self.intermediate)?;
        }
        tracing::debug!(%product, kind = kind.name(), %product_name, crl = self.crl.is_some(), "SNP VEK chain verified to pinned ARK");
        let chain = VerifiedSnpChain {
            product,
            kind,
            product_name,
            vek: self.vek.clone(),
            intermediate: self.intermediate.clone(),
            ark: self.ark.clone(),
            crl: self.crl.clone(),
        };
        chain.check_current(now)?;
        Ok(chain)
    }
}

/// Picks the AMD-published intermediate and ARK whose intermediate subject is
/// the VEK's issuer.
fn embedded_chain_for(vek: &Certificate) -> Result<(Certificate, Certificate)> {
    for pem in EMBEDDED_CHAINS {
        let ders = parse_pem_chain("embedded AMD chain", pem)?;
        let (Some(ask), Some(ark)) = (ders.first(), ders.get(1)) else {
            continue;
        };
        let ask = Certificate::from_der("ASK", ask)?;
        if vek.issuer_is(&ask) {
            return Ok((ask, Certificate::from_der("ARK", ark)?));
        }
    }
    Err(Error::IssuerMismatch {
        which: "VEK".into(),
        issuer: vek.issuer(),
        found: "no AMD-published ASK or ASVK".into(),
    })
}

fn missing_extension(kind: VekKind, name: &'static str) -> Error {
    Error::InvalidField {
        structure: "VEK certificate",
        field: name,
        detail: format!(
            "the {} lacks this extension or it is malformed",
            kind.name()
        ),
    }
}

/// A VEK chain that ended in a pinned AMD root. Cache it per VEK; every
/// report verified with it re-checks validity at its own `now`.
#[derive(Debug, Clone)]
pub struct VerifiedSnpChain {
    product: Product,
    kind: VekKind,
    product_name: String,
    vek: Certificate,
    intermediate: Certificate,
    ark: Certificate,
    crl: Option<Crl>,
}

impl VerifiedSnpChain {
    /// The processor generation the ARK belongs to.
    pub fn product(&self) -> Product {
        self.product
    }

    /// VCEK or VLEK.
    pub fn kind(&self) -> VekKind {
        self.kind
    }

    fn check_current(&self, now: OffsetDateTime) -> Result<()> {
        self.ark.check_validity(now)?;
        self.intermediate.check_validity(now)?;
        self.vek.check_validity(now)?;
        if let Some(crl) = &self.crl {
            crl.check_current(now)?;
        }
        Ok(())
    }

    fn spl(&self, oid: &ObjectIdentifier, name: &'static str) -> Result<u8> {
        self.vek
            .extension(oid)
            .and_then(|v| u8::from_der(v).ok())
            .ok_or_else(|| missing_extension(self.kind, name))
    }

    /// The hwID extension: the raw CHIP_ID bytes (KDS does not wrap them in
    /// an OCTET STRING; a wrapped value is accepted too).
    fn hw_id(&self) -> Result<Vec<u8>> {
        let value = self
            .vek
            .extension(&OID_HW_ID)
            .ok_or_else(|| missing_extension(self.kind, "hwID"))?;
        if matches!(value.len(), 8 | 64) {
            return Ok(value.to_vec());
        }
        OctetStringRef::from_der(value)
            .map(|o| o.as_bytes().to_vec())
            .map_err(|_| missing_extension(self.kind, "hwID"))
    }

    fn check_tcb(&self, reported: &TcbVersion) -> Result<()> {
        let mut pairs = vec![
            (
                "boot loader",
                self.spl(&OID_BL_SPL, "blSPL")?,
                reported.bootloader,
            ),
            ("TEE", self.spl(&OID_TEE_SPL, "teeSPL")?, reported.tee),
            ("SNP", self.spl(&OID_SNP_SPL, "snpSPL")?, reported.snp),
            (
                "microcode",
                self.spl(&OID_UCODE_SPL, "ucodeSPL")?,
                reported.microcode,
            ),
        ];
        if let Some(fmc) = reported.fmc {
            pairs.push(("FMC", self.spl(&OID_FMC_SPL, "fmcSPL")?, fmc));
        }
        for (component, certificate, report) in pairs {
            if certificate != report {
                return Err(Error::TcbMismatch {
                    component,
                    certificate,
                    report,
                });
            }
        }
        Ok(())
    }

    fn check_hw_id(&self, report: &SnpReport) -> Result<()> {
        let hw_id = self.hw_id()?;
        let chip = report.chip_id.as_bytes();
        // Turin's hwID is the 8 significant bytes; the rest of CHIP_ID is zero.
        let (significant, rest) = chip.split_at(hw_id.len().min(chip.len()));
        if hw_id.as_slice() != significant || rest.iter().any(|b| *b != 0) {
            return Err(Error::HwIdMismatch {
                vek: hex::encode(&hw_id),
                report: report.chip_id.to_string(),
            });
        }
        Ok(())
    }
}

impl SnpReport {
    /// Verifies this report against a verified VEK chain at `now`: product,
    /// key kind, chip and TCB bindings, then the ECDSA P-384 signature over
    /// the first 0x2A0 bytes exactly as received.
    pub fn verify(
        self,
        chain: &VerifiedSnpChain,
        now: OffsetDateTime,
    ) -> Result<VerifiedSnpReport> {
        chain.check_current(now)?;
        if let Some(product) = self.product {
            if product != chain.product {
                return Err(Error::ProductMismatch {
                    expected: chain.product.name().into(),
                    source_of_claim: "the report's CPUID",
                    found: product.name().into(),
                });
            }
        }
        let report_key = match self.signing_key {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
            SigningKey::None => "no key",
        };
        if report_key != chain.kind.name() {
            return Err(Error::SigningKeyMismatch {
                report: report_key,
                certificate: chain.kind.name(),
            });
        }
        if chain.kind == VekKind::Vcek {
            chain.check_hw_id(&self)?;
        }
        chain.check_tcb(&self.reported_tcb)?;

        // The chain step established that the VEK key is on P-384.
        let mut signature = [0u8; 96];
        let (r, s) = signature.split_at_mut(48);
        r.copy_from_slice(&self.signature_r);
        s.copy_from_slice(&self.signature_s);
        chain.vek.public_key().verify_fixed(
            self.signed_bytes(),
            &signature,
            &format!("SNP report signed by {}", chain.kind.name()),
        )?;
        tracing::debug!(version = self.version, measurement = %self.measurement, "SNP report verified");
        Ok(VerifiedSnpReport {
            report: self,
            product: chain.product,
            kind: chain.kind,
            product_name: chain.product_name.clone(),
        })
    }
}

/// An SNP report whose signature, chain and bindings verified. Only
/// [`SnpReport::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedSnpReport {
    report: SnpReport,
    product: Product,
    kind: VekKind,
    product_name: String,
}

impl VerifiedSnpReport {
    /// A verified report made without verification, for policy unit tests
    /// that need evidence no real chip would sign (debug mode, say).
    #[cfg(test)]
    pub(crate) fn for_policy_test(report: SnpReport) -> Self {
        Self {
            report,
            product: Product::Milan,
            kind: VekKind::Vcek,
            product_name: "Milan-B0".into(),
        }
    }

    /// The verified report.
    pub fn report(&self) -> &SnpReport {
        &self.report
    }
    /// The processor generation, established by the pinned root.
    pub fn product(&self) -> Product {
        self.product
    }
    /// Which key signed it.
    pub fn kind(&self) -> VekKind {
        self.kind
    }
    /// The VEK's productName extension (e.g. "Milan-B0").
    pub fn product_name(&self) -> &str {
        &self.product_name
    }
}
