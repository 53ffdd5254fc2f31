//! Intel DCAP quotes for TDX, versions 4 and 5 (TDX 1.0 and 1.5 TD reports).
//!
//! Layouts follow Intel's "TDX DCAP Quoting Library API" (quote format
//! appendix), cross-read with the Intel QVL parser.

use serde::Serialize;

use crate::bytes::Cursor;
use crate::error::{Error, Result};
use crate::types::{Measurement, ReportData};
use crate::x509::parse_pem_chain;

const STRUCTURE: &str = "TDX quote";
const HEADER_LEN: usize = 48;
/// Attestation key type 2: ECDSA-256-with-P-256.
const ATT_KEY_ECDSA_P256: u16 = 2;
/// TEE type of a TD.
const TEE_TYPE_TDX: u32 = 0x81;
/// Intel's quoting enclave vendor ID.
pub(crate) const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
const TD10_BODY_LEN: usize = 584;
const TD15_BODY_LEN: usize = 648;
/// SGX report body (the QE report) length.
const SGX_REPORT_LEN: usize = 384;
/// Certification data type: QE report certification data.
const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type: PCK certificate chain (PEM).
const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Upper bound on a quote's signature data; real ones are ~5 KiB.
const MAX_SIGNATURE_DATA: usize = 64 * 1024;

/// The TD report body of a quote: the measured state of the trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport {
    /// TEE TCB SVN (the TDX module and its components).
    #[serde(with = "hex::serde")]
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    pub mr_seam: Measurement,
    /// Signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: Measurement,
    /// TDX module attributes.
    #[serde(with = "hex::serde")]
    pub seam_attributes: [u8; 8],
    /// TD attributes (bit 0: DEBUG).
    #[serde(with = "hex::serde")]
    pub td_attributes: [u8; 8],
    /// Extended features the TD may use.
    #[serde(with = "hex::serde")]
    pub xfam: [u8; 8],
    /// Build-time measurement of the TD.
    pub mr_td: Measurement,
    /// Software-defined configuration ID.
    pub mr_config_id: Measurement,
    /// Software-defined owner ID.
    pub mr_owner: Measurement,
    /// Software-defined owner configuration.
    pub mr_owner_config: Measurement,
    /// Runtime measurement registers 0..=3.
    pub rtmr: [Measurement; 4],
    /// Caller data bound into the report.
    pub report_data: ReportData,
    /// TDX 1.5: second TEE TCB SVN.
    #[serde(with = "opt_hex16")]
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5: measurement of the service TDs.
    pub mr_service_td: Option<Measurement>,
}

impl TdReport {
    /// Whether the TD runs in debug mode (TD_ATTRIBUTES bit 0), which lets
    /// the host read its memory.
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }
}

mod opt_hex16 {
    pub(super) fn serialize<S: serde::Serializer>(
        v: &Option<[u8; 16]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
}

/// The quoting enclave's SGX report, signed by the PCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    pub(crate) raw: Vec<u8>,
    /// MISCSELECT.
    pub miscselect: [u8; 4],
    /// Enclave attributes.
    pub attributes: [u8; 16],
    /// Enclave measurement.
    pub mr_enclave: [u8; 32],
    /// Enclave signer.
    pub mr_signer: [u8; 32],
    /// Product ID.
    pub isv_prod_id: u16,
    /// Security version.
    pub isv_svn: u16,
    /// Report data; the first 32 bytes bind the attestation key.
    pub report_data: [u8; 64],
}

impl QeReport {
    fn parse(c: &mut Cursor<'_>) -> Result<Self> {
        let raw = c.take(SGX_REPORT_LEN)?;
        let mut r = Cursor::new(raw, "QE report");
        let _cpu_svn: [u8; 16] = r.array()?;
        let miscselect = r.array()?;
        r.take(28)?;
        let attributes = r.array()?;
        let mr_enclave = r.array()?;
        r.take(32)?;
        let mr_signer = r.array()?;
        r.take(96)?;
        let isv_prod_id = r.u16()?;
        let isv_svn = r.u16()?;
        r.take(60)?;
        let report_data = r.array()?;
        r.finish()?;
        Ok(Self {
            raw: raw.to_vec(),
            miscselect,
            attributes,
            mr_enclave,
            mr_signer,
            isv_prod_id,
            isv_svn,
            report_data,
        })
    }
}

/// A parsed, *unverified* TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuote {
    raw: Vec<u8>,
    signed_len: usize,
    /// Quote format version (4 or 5).
    pub version: u16,
    /// QE SVN from the header.
    pub qe_svn: u16,
    /// PCE SVN from the header.
    pub pce_svn: u16,
    /// The TD report.
    pub td_report: TdReport,
    pub(crate) signature: [u8; 64],
    pub(crate) attestation_key: [u8; 64],
    /// The quoting enclave's report.
    pub qe_report: QeReport,
    pub(crate) qe_report_signature: [u8; 64],
    pub(crate) qe_auth_data: Vec<u8>,
    /// PCK leaf, intermediate CA, root CA: DER, as embedded in the quote.
    pub(crate) pck_chain: Vec<Vec<u8>>,
}

impl TdxQuote {
    /// Parses a v4 or v5 quote strictly. Zero padding after the signature
    /// data is tolerated (some quote generators pad to a fixed size); any
    /// other trailing byte is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut c = Cursor::new(bytes, STRUCTURE);
        let version = c.u16()?;
        if !matches!(version, 4 | 5) {
            return Err(Error::UnsupportedVersion {
                structure: STRUCTURE,
                found: u32::from(version),
                supported: "4, 5",
            });
        }
        let att_key_type = c.u16()?;
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(Error::UnexpectedAlgorithm {
                which: "quote attestation key".into(),
                expected: "ECDSA-256-with-P-256 (type 2)",
                found: att_key_type.to_string(),
            });
        }
        let tee_type = c.u32()?;
        if tee_type != TEE_TYPE_TDX {
            return Err(Error::InvalidField {
                structure: STRUCTURE,
                field: "tee_type",
                detail: format!("{tee_type:#x} is not TDX (0x81)"),
            });
        }
        let qe_svn = c.u16()?;
        let pce_svn = c.u16()?;
        let qe_vendor_id: [u8; 16] = c.array()?;
        if qe_vendor_id != INTEL_QE_VENDOR_ID {
            return Err(Error::InvalidField {
                structure: STRUCTURE,
                field: "qe_vendor_id",
                detail: format!("{} is not Intel's QE", hex::encode(qe_vendor_id)),
            });
        }
        let _user_data: [u8; 20] = c.array()?;
        debug_assert_eq!(c.position(), HEADER_LEN);

        let body_len = if version == 5 {
            let body_type = c.u16()?;
            let body_size = c.u32()?;
            let expected = match body_type {
                2 => TD10_BODY_LEN,
                3 => TD15_BODY_LEN,
                other => {
                    return Err(Error::InvalidField {
                        structure: STRUCTURE,
                        field: "body type",
                        detail: format!("{other} is not a TD report (2 or 3)"),
                    })
                }
            };
            if body_size as usize != expected {
                return Err(Error::InvalidField {
                    structure: STRUCTURE,
                    field: "body size",
                    detail: format!("{body_size} for body type {body_type}, expected {expected}"),
                });
            }
            expected
        } else {
            TD10_BODY_LEN
        };
        let td_report = parse_td_report(c.take(body_len)?)?;
        let signed_len = c.position();

        let sig_data_len = c.u32()? as usize;
        if sig_data_len > MAX_SIGNATURE_DATA {
            return Err(Error::InvalidField {
                structure: STRUCTURE,
                field: "signature data length",
                detail: format!("{sig_data_len} exceeds {MAX_SIGNATURE_DATA}"),
            });
        }
        let sig_data = c.take(sig_data_len)?;
        if c.remaining().iter().any(|b| *b != 0) {
            return Err(Error::TrailingData {
                structure: STRUCTURE,
                extra: c.remaining().len(),
            });
        }

        let mut s = Cursor::new(sig_data, "TDX quote signature data");
        let signature = s.array()?;
        let attestation_key = s.array()?;
        let cert_data = certification_data(
            &mut s,
            CERT_TYPE_QE_REPORT,
            "certification data type",
            "6 (QE report certification data)",
        )?;
        s.finish()?;

        let mut q = Cursor::new(cert_data, "QE report certification data");
        let qe_report = QeReport::parse(&mut q)?;
        let qe_report_signature = q.array()?;
        let auth_len = q.u16()? as usize;
        let qe_auth_data = q.take(auth_len)?.to_vec();
        let pem = certification_data(
            &mut q,
            CERT_TYPE_PCK_CHAIN,
            "QE certification data type",
            "5 (PCK certificate chain)",
        )?;
        q.finish()?;
        let pck_chain = parse_pem_chain("PCK certificate chain", pem)?;

        Ok(Self {
            raw: bytes.to_vec(),
            signed_len,
            version,
            qe_svn,
            pce_svn,
            td_report,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            pck_chain,
        })
    }

    /// The quote exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Header and body (with the v5 body descriptor): what the attestation
    /// key signed, exactly as received.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..self.signed_len).unwrap_or_default()
    }
}

/// Reads a certification data block (`u16 type, u32 size, data`) whose type
/// must be `expected`.
fn certification_data<'a>(
    c: &mut Cursor<'a>,
    expected: u16,
    field: &'static str,
    expected_name: &str,
) -> Result<&'a [u8]> {
    let found = c.u16()?;
    if found != expected {
        return Err(Error::InvalidField {
            structure: STRUCTURE,
            field,
            detail: format!("{found}, expected {expected_name}"),
        });
    }
    let size = c.u32()? as usize;
    c.take(size)
}

fn parse_td_report(body: &[u8]) -> Result<TdReport> {
    let mut c = Cursor::new(body, "TD report");
    let tee_tcb_svn = c.array()?;
    let mr_seam = Measurement(c.array()?);
    let mr_signer_seam = Measurement(c.array()?);
    let seam_attributes = c.array()?;
    let td_attributes = c.array()?;
    let xfam = c.array()?;
    let mr_td = Measurement(c.array()?);
    let mr_config_id = Measurement(c.array()?);
    let mr_owner = Measurement(c.array()?);
    let mr_owner_config = Measurement(c.array()?);
    let rtmr = [
        Measurement(c.array()?),
        Measurement(c.array()?),
        Measurement(c.array()?),
        Measurement(c.array()?),
    ];
    let report_data = ReportData(c.array()?);
    let (tee_tcb_svn2, mr_service_td) = if body.len() == TD15_BODY_LEN {
        (Some(c.array()?), Some(Measurement(c.array()?)))
    } else {
        (None, None)
    };
    c.finish()?;
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTE: &[u8] = include_bytes!("../../tests/vectors/tdx/v4-phala/quote.bin");

    #[test]
    fn parses_the_phala_v4_quote() {
        let q = TdxQuote::parse(QUOTE).unwrap();
        assert_eq!(q.version, 4);
        assert_eq!(q.signed_bytes().len(), 632);
        assert!(q
            .td_report
            .mr_td
            .to_string()
            .starts_with("91eb2b44d141d4ec"));
        assert_eq!(hex::encode(q.td_report.td_attributes), "0000001000000000");
        assert!(!q.td_report.debug());
        assert_eq!(q.pck_chain.len(), 3);
        assert_eq!(q.qe_auth_data.len(), 32);
        assert_eq!((q.qe_report.isv_prod_id, q.qe_report.isv_svn), (2, 6));
    }

    #[test]
    fn tolerates_zero_padding_only() {
        let mut padded = QUOTE.to_vec();
        padded.extend_from_slice(&[0; 100]);
        TdxQuote::parse(&padded).unwrap();
        let mut junk = QUOTE.to_vec();
        junk.push(1);
        assert_eq!(
            TdxQuote::parse(&junk),
            Err(Error::TrailingData {
                structure: STRUCTURE,
                extra: 71
            })
        );
    }

    #[test]
    fn rejects_wrong_header_fields() {
        for (offset, field) in [(2, "att key"), (4, "tee type"), (12, "vendor")] {
            let mut bad = QUOTE.to_vec();
            bad[offset] ^= 0x40;
            assert!(TdxQuote::parse(&bad).is_err(), "{field}");
        }
        let mut v3 = QUOTE.to_vec();
        v3[0] = 3;
        assert_eq!(
            TdxQuote::parse(&v3),
            Err(Error::UnsupportedVersion {
                structure: STRUCTURE,
                found: 3,
                supported: "4, 5"
            })
        );
    }
}
