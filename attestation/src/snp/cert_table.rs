//! The SNP certificate table a host hands its guest with an extended report
//! (GHCB specification, "SNP Extended Guest Request"; Linux configfs-tsm
//! `auxblob`): GUID-tagged entries locating the VCEK or VLEK, the ASK (or
//! ASVK) and the ARK in one buffer. The host is untrusted, so the table is
//! parsed strictly and its certificates are verified like any others.

use crate::bytes::Cursor;
use crate::error::{Error, Result};

const STRUCTURE: &str = "SNP certificate table";
/// Largest table accepted; real ones hold three certificates, ~4 KiB.
pub const MAX_CERT_TABLE_LEN: usize = 64 * 1024;
/// Most entries accepted before the all-zero terminator.
const MAX_ENTRIES: usize = 16;

/// A certificate's role, from its table GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertTableKind {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (or ASVK) signed by the ARK.
    Ask,
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// A CRL, or a GUID this verifier does not use.
    Other,
}

impl CertTableKind {
    /// GUIDs in RFC 4122 byte order, as the table stores them.
    fn from_guid(guid: &[u8; 16]) -> Self {
        match hex::encode(guid).as_str() {
            "c0b406a4a803495297433fb6014cd0ae" => Self::Ark,
            "4ab7b379bbac4fe4a02f05aef327c782" => Self::Ask,
            "63da758de6644564adc5f4b93be8accd" => Self::Vcek,
            "a8074bc2a25a483eaae639c045a0b8a1" => Self::Vlek,
            _ => Self::Other,
        }
    }
}

/// The certificates found in a table, DER.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpCertTable {
    /// VCEK or VLEK (whichever the host supplied).
    pub vek: Option<Vec<u8>>,
    /// ASK or ASVK.
    pub ask: Option<Vec<u8>>,
    /// ARK.
    pub ark: Option<Vec<u8>>,
}

impl SnpCertTable {
    /// Parses the table: 24-byte entries (GUID, u32 offset, u32 length)
    /// ending with an all-zero entry, each locating a blob inside `bytes`.
    /// Zero bytes after the last blob are allowed (the kernel pads to pages).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_CERT_TABLE_LEN {
            return Err(Error::InvalidField {
                structure: STRUCTURE,
                field: "length",
                detail: format!("{} bytes exceeds {MAX_CERT_TABLE_LEN}", bytes.len()),
            });
        }
        let mut c = Cursor::new(bytes, STRUCTURE);
        let mut table = Self::default();
        for _ in 0..=MAX_ENTRIES {
            let guid: [u8; 16] = c.array()?;
            let offset = c.u32()? as usize;
            let length = c.u32()? as usize;
            if guid == [0; 16] {
                if offset != 0 || length != 0 {
                    return Err(Error::ReservedNotZero {
                        structure: STRUCTURE,
                        offset: c.position() - 8,
                    });
                }
                return Ok(table);
            }
            let blob = offset
                .checked_add(length)
                .and_then(|end| bytes.get(offset..end))
                .ok_or_else(|| Error::InvalidField {
                    structure: STRUCTURE,
                    field: "entry",
                    detail: format!(
                        "offset {offset} + length {length} is outside the {}-byte table",
                        bytes.len()
                    ),
                })?;
            let slot = match CertTableKind::from_guid(&guid) {
                CertTableKind::Ark => &mut table.ark,
                CertTableKind::Ask => &mut table.ask,
                CertTableKind::Vcek | CertTableKind::Vlek => &mut table.vek,
                CertTableKind::Other => continue,
            };
            if slot.replace(blob.to_vec()).is_some() {
                return Err(Error::InvalidField {
                    structure: STRUCTURE,
                    field: "entry",
                    detail: "a certificate role appears twice".into(),
                });
            }
        }
        Err(Error::InvalidField {
            structure: STRUCTURE,
            field: "entries",
            detail: format!("more than {MAX_ENTRIES} entries, or no terminator"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(guid: &str, offset: u32, len: u32) -> Vec<u8> {
        let mut e = hex::decode(guid).unwrap();
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    fn table(vcek: &[u8]) -> Vec<u8> {
        let header = 3 * 24;
        let mut t = entry(
            "63da758de6644564adc5f4b93be8accd",
            header,
            vcek.len() as u32,
        );
        t.extend(entry("92f81bc358114d3d97ffd19f88dc67ea", header, 1));
        t.extend([0; 24]);
        t.extend_from_slice(vcek);
        t.extend([0; 100]);
        t
    }

    #[test]
    fn finds_the_vcek_in_a_table() {
        let vcek = include_bytes!("../../tests/vectors/snp/milan-v2-virtee/vcek.der");
        let parsed = SnpCertTable::parse(&table(vcek)).unwrap();
        assert_eq!(parsed.vek.as_deref(), Some(&vcek[..]));
        assert!(parsed.ask.is_none() && parsed.ark.is_none());
    }

    #[test]
    fn rejects_out_of_range_and_unterminated_tables() {
        let vcek = include_bytes!("../../tests/vectors/snp/milan-v2-virtee/vcek.der");
        let mut t = table(vcek);
        t[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SnpCertTable::parse(&t).is_err());
        assert!(SnpCertTable::parse(&entry("63da758de6644564adc5f4b93be8accd", 0, 4)).is_err());
        let mut dup = entry("63da758de6644564adc5f4b93be8accd", 0, 4);
        dup.extend(entry("63da758de6644564adc5f4b93be8accd", 0, 4));
        dup.extend([0; 24]);
        assert!(SnpCertTable::parse(&dup).is_err());
    }
}
