//! DCAP collateral: TCB info, QE identity, their signing chain, and the CRLs,
//! in the JSON layout used by dcap-qvl's `QuoteCollateralV3` (the signed JSON
//! documents are kept as the exact strings Intel's PCS served, because the
//! signatures cover those bytes and no re-serialisation).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::roots::intel_root;
use crate::error::{Error, Result};
use crate::types::Measurement;
use crate::x509::{parse_pem_chain, Certificate, Crl};

/// Largest collateral document accepted (real ones are ~16 KiB).
const MAX_COLLATERAL_LEN: usize = 1024 * 1024;

/// Intel's TCB status values. An unknown value fails to parse: we never guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software mitigations are needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Missing security patches.
    OutOfDate,
    /// Missing patches and the configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// The TCB level is revoked.
    Revoked,
}

impl TcbStatus {
    /// The name Intel uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
            Self::ConfigurationNeeded => "ConfigurationNeeded",
            Self::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            Self::OutOfDate => "OutOfDate",
            Self::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            Self::Revoked => "Revoked",
        }
    }

    /// Parses Intel's name.
    pub fn from_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

impl core::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Svn {
    pub(crate) svn: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlatformTcb {
    pub(crate) sgxtcbcomponents: Vec<Svn>,
    pub(crate) pcesvn: u16,
    pub(crate) tdxtcbcomponents: Vec<Svn>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IsvSvn {
    pub(crate) isvsvn: u16,
}

/// One entry of a `tcbLevels` list: the TCB it requires, its status and
/// the advisories that apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Level<T> {
    pub(crate) tcb: T,
    pub(crate) tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub(crate) advisory_ids: Vec<String>,
}

/// A platform TCB level of the TCB info.
pub(crate) type TcbLevel = Level<PlatformTcb>;
/// A TCB level of the QE identity or a TDX module identity.
pub(crate) type IsvTcbLevel = Level<IsvSvn>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModule {
    pub(crate) mrsigner: Measurement,
    #[serde(with = "hex::serde")]
    pub(crate) attributes: [u8; 8],
    #[serde(with = "hex::serde")]
    pub(crate) attributes_mask: [u8; 8],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModuleIdentity {
    pub(crate) id: String,
    #[serde(flatten)]
    pub(crate) module: TdxModule,
    pub(crate) tcb_levels: Vec<IsvTcbLevel>,
}

/// The fields every signed Intel collateral document starts with.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DocumentHeader {
    pub(crate) id: String,
    pub(crate) version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) issue_date: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) next_update: OffsetDateTime,
}

impl DocumentHeader {
    /// Fails unless issueDate <= `now` <= nextUpdate.
    fn check_current(&self, label: &str, now: OffsetDateTime) -> Result<()> {
        if now < self.issue_date || now > self.next_update {
            return Err(Error::CollateralNotCurrent {
                which: label.to_owned(),
                issued: self.issue_date,
                next_update: self.next_update,
                now,
            });
        }
        Ok(())
    }
}

/// A signed document's body exposes its header.
trait Document {
    fn header(&self) -> &DocumentHeader;
}

/// Intel's TCB info for one FMSPC (version 3, id "TDX").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcbInfo {
    #[serde(flatten)]
    pub(crate) header: DocumentHeader,
    #[serde(with = "hex::serde")]
    pub(crate) fmspc: [u8; 6],
    #[serde(with = "hex::serde")]
    pub(crate) pce_id: [u8; 2],
    pub(crate) tcb_type: u32,
    pub(crate) tcb_evaluation_data_number: u32,
    pub(crate) tdx_module: TdxModule,
    #[serde(default)]
    pub(crate) tdx_module_identities: Option<Vec<TdxModuleIdentity>>,
    pub(crate) tcb_levels: Vec<TcbLevel>,
}

/// Intel's identity of the TD quoting enclave (version 2, id "TD_QE").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QeIdentity {
    #[serde(flatten)]
    pub(crate) header: DocumentHeader,
    #[serde(with = "hex::serde")]
    pub(crate) miscselect: [u8; 4],
    #[serde(with = "hex::serde")]
    pub(crate) miscselect_mask: [u8; 4],
    #[serde(with = "hex::serde")]
    pub(crate) attributes: [u8; 16],
    #[serde(with = "hex::serde")]
    pub(crate) attributes_mask: [u8; 16],
    #[serde(with = "hex::serde")]
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isvprodid: u16,
    pub(crate) tcb_levels: Vec<IsvTcbLevel>,
}

/// The JSON file as it is stored.
#[derive(Deserialize)]
struct CollateralFile {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
}

/// A signed JSON document with the chain of its signer.
#[derive(Debug, Clone)]
struct SignedDocument<T> {
    label: &'static str,
    raw: String,
    body: T,
    signature: [u8; 64],
    signer: Certificate,
    chain_root: Certificate,
}

/// Parsed, *unverified* DCAP collateral for one platform.
#[derive(Debug, Clone)]
pub struct TdxCollateral {
    tcb_info: SignedDocument<TcbInfo>,
    qe_identity: SignedDocument<QeIdentity>,
    root_ca_crl: Crl,
    pck_crl: Crl,
    pck_crl_chain: Vec<Certificate>,
}

fn malformed(which: &str, detail: impl ToString) -> Error {
    Error::Malformed {
        which: which.to_owned(),
        detail: detail.to_string(),
    }
}

fn signed_document<T: for<'de> Deserialize<'de>>(
    label: &'static str,
    raw: String,
    signature_hex: &str,
    chain_pem: &str,
) -> Result<SignedDocument<T>> {
    let body: T = serde_json::from_str(&raw).map_err(|e| malformed(label, e))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex.trim(), &mut signature)
        .map_err(|e| malformed(label, format!("signature: {e}")))?;
    let chain = parse_pem_chain(label, chain_pem.as_bytes())?;
    let [signer, root] = chain.as_slice() else {
        return Err(Error::ChainLength {
            which: "collateral signing chain",
            expected: "2 (TCB signing certificate, root CA)",
            found: chain.len(),
        });
    };
    Ok(SignedDocument {
        label,
        raw,
        body,
        signature,
        signer: Certificate::from_der("TCB signing certificate", signer)?,
        chain_root: Certificate::from_der("collateral root CA", root)?,
    })
}

impl TdxCollateral {
    /// Parses the collateral JSON. Structure only: nothing is trusted until
    /// [`TdxCollateral::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_COLLATERAL_LEN {
            return Err(malformed(
                "collateral",
                format!("{} bytes exceeds {MAX_COLLATERAL_LEN}", bytes.len()),
            ));
        }
        let file: CollateralFile =
            serde_json::from_slice(bytes).map_err(|e| malformed("collateral", e))?;
        let crl = |label: &str, hex_der: &str| -> Result<Crl> {
            let der = hex::decode(hex_der.trim()).map_err(|e| malformed(label, e))?;
            Crl::from_der(label, &der)
        };
        let pck_crl_chain =
            parse_pem_chain("PCK CRL issuer chain", file.pck_crl_issuer_chain.as_bytes())?
                .iter()
                .map(|der| Certificate::from_der("PCK CRL issuer", der))
                .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            tcb_info: signed_document(
                "TCB info",
                file.tcb_info,
                &file.tcb_info_signature,
                &file.tcb_info_issuer_chain,
            )?,
            qe_identity: signed_document(
                "QE identity",
                file.qe_identity,
                &file.qe_identity_signature,
                &file.qe_identity_issuer_chain,
            )?,
            root_ca_crl: crl("root CA CRL", &file.root_ca_crl)?,
            pck_crl: crl("PCK CRL", &file.pck_crl)?,
            pck_crl_chain,
        })
    }

    /// Verifies every signature and chain in the collateral against the
    /// pinned Intel root, and that it is all current at `now`. The result can
    /// be cached and reused for every quote from the same FMSPC until the
    /// earliest nextUpdate.
    pub fn verify(&self, now: OffsetDateTime) -> Result<VerifiedTdxCollateral> {
        let root = intel_root()?;
        self.root_ca_crl.verify(root, now)?;
        verify_document(&self.tcb_info, root, &self.root_ca_crl, now)?;
        verify_document(&self.qe_identity, root, &self.root_ca_crl, now)?;

        let info = &self.tcb_info.body;
        if info.header.id != "TDX" || info.header.version != 3 {
            return Err(Error::InvalidField {
                structure: "TCB info",
                field: "id/version",
                detail: format!(
                    "{} v{}, expected TDX v3",
                    info.header.id, info.header.version
                ),
            });
        }
        if info.tcb_type != 0 {
            return Err(Error::InvalidField {
                structure: "TCB info",
                field: "tcbType",
                detail: format!("{}, expected 0", info.tcb_type),
            });
        }
        if info.tcb_levels.is_empty() {
            return Err(Error::NoMatchingTcbLevel { which: "TCB info" });
        }
        for level in &info.tcb_levels {
            if level.tcb.sgxtcbcomponents.len() != 16 || level.tcb.tdxtcbcomponents.len() != 16 {
                return Err(Error::InvalidField {
                    structure: "TCB info",
                    field: "tcbLevels",
                    detail: "every level needs 16 SGX and 16 TDX components".into(),
                });
            }
        }
        let qe = &self.qe_identity.body;
        if qe.header.id != "TD_QE" || qe.header.version != 2 {
            return Err(Error::InvalidField {
                structure: "QE identity",
                field: "id/version",
                detail: format!("{} v{}, expected TD_QE v2", qe.header.id, qe.header.version),
            });
        }
        // The PCK CRL's own chain must reach the pinned root too; which
        // intermediate signed it is checked against each quote's PCK chain.
        let [pck_ca, chain_root] = self.pck_crl_chain.as_slice() else {
            return Err(Error::ChainLength {
                which: "PCK CRL issuer chain",
                expected: "2 (PCK CA, root CA)",
                found: self.pck_crl_chain.len(),
            });
        };
        check_pinned(chain_root)?;
        pck_ca.verify_issued_by(root)?;
        pck_ca.check_validity(now)?;
        self.root_ca_crl.check_not_revoked(pck_ca)?;
        self.pck_crl.verify(pck_ca, now)?;

        tracing::debug!(
            fmspc = %hex::encode(info.fmspc),
            tcb_evaluation_data_number = info.tcb_evaluation_data_number,
            "TDX collateral verified to pinned Intel root"
        );
        Ok(VerifiedTdxCollateral {
            collateral: self.clone(),
        })
    }
}

/// Fails unless `cert` carries the pinned Intel SGX Root CA key.
pub(crate) fn check_pinned(cert: &Certificate) -> Result<()> {
    let root = intel_root()?;
    if cert.spki_sha256() != root.spki_sha256() {
        return Err(Error::UntrustedRoot {
            which: cert.label().to_owned(),
            spki_sha256: hex::encode(cert.spki_sha256()),
        });
    }
    Ok(())
}

fn verify_document<T>(
    doc: &SignedDocument<T>,
    root: &Certificate,
    root_crl: &Crl,
    now: OffsetDateTime,
) -> Result<()>
where
    T: Document,
{
    check_pinned(&doc.chain_root)?;
    doc.signer.verify_issued_by(root)?;
    doc.signer.check_validity(now)?;
    root_crl.check_not_revoked(&doc.signer)?;
    doc.signer.public_key().verify_fixed(
        doc.raw.as_bytes(),
        &doc.signature,
        &format!("{} signed by the TCB signing certificate", doc.label),
    )?;
    doc.body.header().check_current(doc.label, now)
}

impl Document for TcbInfo {
    fn header(&self) -> &DocumentHeader {
        &self.header
    }
}

impl Document for QeIdentity {
    fn header(&self) -> &DocumentHeader {
        &self.header
    }
}

/// Collateral whose signatures and chains verified. Only
/// [`TdxCollateral::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedTdxCollateral {
    collateral: TdxCollateral,
}

impl VerifiedTdxCollateral {
    /// Re-checks every validity window at `now` (for a cached value).
    pub(crate) fn check_current(&self, now: OffsetDateTime) -> Result<()> {
        let c = &self.collateral;
        c.root_ca_crl.check_current(now)?;
        c.pck_crl.check_current(now)?;
        c.tcb_info.signer.check_validity(now)?;
        c.qe_identity.signer.check_validity(now)?;
        c.tcb_info.body.header.check_current("TCB info", now)?;
        c.qe_identity.body.header.check_current("QE identity", now)
    }

    pub(crate) fn tcb_info(&self) -> &TcbInfo {
        &self.collateral.tcb_info.body
    }

    pub(crate) fn qe_identity(&self) -> &QeIdentity {
        &self.collateral.qe_identity.body
    }

    pub(crate) fn root_ca_crl(&self) -> &Crl {
        &self.collateral.root_ca_crl
    }

    pub(crate) fn pck_crl(&self) -> &Crl {
        &self.collateral.pck_crl
    }

    /// When the TCB assessment was issued: the older of the TCB info and QE
    /// identity issue dates. (CRLs are excluded: Intel reissues the root CA
    /// CRL about yearly, and its own nextUpdate already bounds it.)
    pub fn issued(&self) -> OffsetDateTime {
        let c = &self.collateral;
        c.tcb_info
            .body
            .header
            .issue_date
            .min(c.qe_identity.body.header.issue_date)
    }

    /// The TCB evaluation data number: lets a policy demand recent collateral.
    pub fn tcb_evaluation_data_number(&self) -> u32 {
        self.collateral.tcb_info.body.tcb_evaluation_data_number
    }
}
