//! The Intel SGX extension of a PCK certificate: the platform's TCB
//! components, PCE ID and FMSPC, which select its TCB level in the TCB info.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Sequence};

use crate::error::{Error, Result};
use crate::types::Fmspc;
use crate::x509::Certificate;

const OID_SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
const OID_TCB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
const OID_PCE_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
const OID_FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
/// `.2.17` within the TCB sequence.
const TCB_PCESVN: u32 = 17;

/// One `SEQUENCE { OID, ANY }` entry of the SGX extension.
#[derive(Sequence)]
struct Entry<'a> {
    id: ObjectIdentifier,
    value: AnyRef<'a>,
}

/// What a PCK certificate says about its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PckExtensions {
    pub(crate) sgx_components: [u8; 16],
    pub(crate) pce_svn: u16,
    pub(crate) pce_id: [u8; 2],
    pub(crate) fmspc: Fmspc,
}

fn malformed(detail: impl Into<String>) -> Error {
    Error::Malformed {
        which: "PCK certificate SGX extension".into(),
        detail: detail.into(),
    }
}

impl PckExtensions {
    pub(crate) fn from_certificate(pck: &Certificate) -> Result<Self> {
        let value = pck
            .extension(&OID_SGX_EXTENSION)
            .ok_or_else(|| malformed("missing"))?;
        let entries: Vec<Entry<'_>> = Vec::from_der(value).map_err(|e| malformed(e.to_string()))?;
        let find = |oid: &ObjectIdentifier| {
            entries
                .iter()
                .find(|e| &e.id == oid)
                .ok_or_else(|| malformed(format!("no {oid}")))
        };
        let octets = |oid: &ObjectIdentifier| -> Result<Vec<u8>> {
            find(oid)?
                .value
                .decode_as::<OctetStringRef<'_>>()
                .map(|o| o.as_bytes().to_vec())
                .map_err(|e| malformed(format!("{oid}: {e}")))
        };
        let fmspc: [u8; 6] = octets(&OID_FMSPC)?
            .try_into()
            .map_err(|_| malformed("FMSPC is not 6 bytes"))?;
        let pce_id: [u8; 2] = octets(&OID_PCE_ID)?
            .try_into()
            .map_err(|_| malformed("PCE-ID is not 2 bytes"))?;

        let tcb: Vec<Entry<'_>> = find(&OID_TCB)?
            .value
            .decode_as()
            .map_err(|e| malformed(format!("TCB: {e}")))?;
        let tcb_arcs: Vec<u32> = OID_TCB.arcs().collect();
        let mut sgx_components = [None; 16];
        let mut pce_svn = None;
        for entry in &tcb {
            let arcs: Vec<u32> = entry.id.arcs().collect();
            let Some((last, prefix)) = arcs.split_last() else {
                continue;
            };
            if prefix != tcb_arcs.as_slice() {
                return Err(malformed(format!("unexpected TCB entry {}", entry.id)));
            }
            match *last {
                1..=16 => {
                    let svn: u8 = entry
                        .value
                        .decode_as()
                        .map_err(|e| malformed(format!("TCB component {last}: {e}")))?;
                    if let Some(slot) = sgx_components.get_mut(*last as usize - 1) {
                        *slot = Some(svn);
                    }
                }
                TCB_PCESVN => {
                    pce_svn = Some(
                        entry
                            .value
                            .decode_as::<u16>()
                            .map_err(|e| malformed(format!("PCESVN: {e}")))?,
                    );
                }
                _ => {} // CPUSVN (18) repeats components 1..=16 as bytes.
            }
        }
        let mut components = [0u8; 16];
        for (i, svn) in sgx_components.iter().enumerate() {
            let slot = components.get_mut(i).ok_or_else(|| malformed("index"))?;
            *slot = svn.ok_or_else(|| malformed(format!("TCB component {} missing", i + 1)))?;
        }
        Ok(Self {
            sgx_components: components,
            pce_svn: pce_svn.ok_or_else(|| malformed("PCESVN missing"))?,
            pce_id,
            fmspc: Fmspc(fmspc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::TdxQuote;

    #[test]
    fn reads_the_phala_pck_extensions() {
        let q =
            TdxQuote::parse(include_bytes!("../../tests/vectors/tdx/v4-phala/quote.bin")).unwrap();
        let pck = Certificate::from_der("PCK", &q.pck_chain[0]).unwrap();
        let ext = PckExtensions::from_certificate(&pck).unwrap();
        assert_eq!(ext.fmspc.to_string(), "b0c06f000000");
        assert_eq!(ext.pce_id, [0, 0]);
        assert!(ext.pce_svn >= 11);
    }
}
