//! OVMF's self-description for SEV: the GUIDed footer table at the end of the
//! image and the SEV metadata it points to (edk2
//! `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` and
//! `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).
//!
//! The footer table ends 32 bytes before the end of the image with an entry
//! `{ u16 size; GUID guid }` whose `size` covers the whole table; entries are
//! laid out the same way, each ending with its size and GUID, and are read
//! from the end towards the start. The SEV metadata (`"ASEV"`, version 1) is
//! a list of `{ u32 gpa; u32 size; u32 type }` sections the hypervisor must
//! add to the guest before launch.

use core::fmt;

use super::{read_le, MeasureError, Result};

/// A GUID in its on-disk (mixed-endian, `EFI_GUID`) byte order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guid([u8; 16]);

impl Guid {
    /// The GUID `d1-d2-d3-d4[0..2]-d4[2..8]`, stored as EFI does.
    pub(crate) const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    pub(crate) const fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7] = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{d0:02x}{d1:02x}-{d2:02x}{d3:02x}{d4:02x}{d5:02x}{d6:02x}{d7:02x}",
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1]),
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: the footer table itself.
const FOOTER_TABLE: Guid = Guid::new(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: SEV-ES AP reset vector.
const SEV_ES_RESET_BLOCK: Guid = Guid::new(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
const SEV_ES_RESET_BLOCK_NAME: &str = "SEV-ES reset block";
const SEV_ES_RESET_BLOCK_STR: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
/// `7255371f-3a3b-4b04-927b-1da6efa8d454`: where QEMU puts the SEV hashes table.
const SEV_HASH_TABLE_RV: Guid = Guid::new(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);
const SEV_HASH_TABLE_RV_NAME: &str = "SEV hash table";
pub(crate) const SEV_HASH_TABLE_RV_STR: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: offset of the SEV metadata.
const SEV_METADATA: Guid = Guid::new(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);
const SEV_METADATA_NAME: &str = "SEV metadata";

/// Size of a footer table entry's trailer: `u16 size` then the GUID.
const ENTRY_HEADER: usize = 18;
/// The footer table's own entry ends this many bytes before the image does.
const FOOTER_GAP: usize = 32;
/// `"ASEV"`, `u32 size`, `u32 version`, `u32 num_items`.
const METADATA_HEADER: usize = 16;
/// `u32 gpa`, `u32 size`, `u32 type`.
const SECTION_DESC: usize = 12;

/// What OVMF asks the hypervisor to do with a range of guest memory before
/// launch; each kind enters the SNP launch digest differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `OVMF_SECTION_TYPE_SNP_SEC_MEM` (1): memory SEC uses, added as zero
    /// pages (unmeasured on GCE).
    SnpSecMem,
    /// `OVMF_SECTION_TYPE_SNP_SECRETS` (2): the PSP's secrets page.
    SnpSecrets,
    /// `OVMF_SECTION_TYPE_CPUID` (3): the PSP-checked CPUID page.
    Cpuid,
    /// `OVMF_SECTION_TYPE_SVSM_CAA` (4): the SVSM calling area, zero pages.
    SvsmCaa,
    /// `OVMF_SECTION_TYPE_KERNEL_HASHES` (0x10): the page QEMU fills with the
    /// kernel/initrd/cmdline hashes for measured direct boot.
    SnpKernelHashes,
}

impl SectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::SnpSecMem),
            2 => Some(Self::SnpSecrets),
            3 => Some(Self::Cpuid),
            4 => Some(Self::SvsmCaa),
            0x10 => Some(Self::SnpKernelHashes),
            _ => None,
        }
    }
}

/// One range of the SEV metadata: what the launch must put where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataSection {
    /// Guest-physical address of the first byte.
    pub gpa: u32,
    /// Length in bytes.
    pub size: u32,
    /// What goes there.
    pub kind: SectionKind,
}

/// An OVMF image with its SEV footer table and metadata parsed, borrowed
/// from the caller's bytes; what [`super::snp_launch_digest`] measures.
#[derive(Clone)]
pub struct OvmfFirmware<'a> {
    data: &'a [u8],
    entries: Vec<(Guid, &'a [u8])>,
    sections: Option<Vec<MetadataSection>>,
}

impl fmt::Debug for OvmfFirmware<'_> {
    /// The image's size rather than its megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OvmfFirmware")
            .field("size", &self.data.len())
            .field(
                "entries",
                &self.entries.iter().map(|(g, _)| g).collect::<Vec<_>>(),
            )
            .field("sections", &self.sections)
            .finish()
    }
}

impl<'a> OvmfFirmware<'a> {
    /// Parses the footer table and the SEV metadata of `data`, a whole OVMF
    /// image (or, for [`super::snp_launch_digest_from_firmware_digest`], its
    /// tail holding both). Strict: every declared length must fit.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        let entries = parse_footer_table(data)?;
        let mut firmware = Self {
            data,
            entries,
            sections: None,
        };
        firmware.sections = firmware.parse_metadata()?;
        Ok(firmware)
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The SEV metadata sections, in the order the image lists them; `None`
    /// when the image has no SEV metadata (not SNP-capable).
    pub fn sections(&self) -> Option<&[MetadataSection]> {
        self.sections.as_deref()
    }

    /// Whether the firmware has a page for QEMU's kernel hashes table.
    pub fn supports_kernel_hashes(&self) -> bool {
        self.sections()
            .is_some_and(|s| s.iter().any(|s| s.kind == SectionKind::SnpKernelHashes))
    }

    /// The SEV-ES reset vector at which application processors start.
    pub fn sev_es_reset_eip(&self) -> Result<u32> {
        self.entry_u32(
            SEV_ES_RESET_BLOCK,
            SEV_ES_RESET_BLOCK_NAME,
            SEV_ES_RESET_BLOCK_STR,
        )
    }

    /// Guest-physical address of the SEV hashes table, `None` when the image
    /// gives none (or gives 0, as OvmfPkgX64 builds do).
    pub fn sev_hashes_table_gpa(&self) -> Result<Option<u32>> {
        match self.entry(SEV_HASH_TABLE_RV) {
            None => Ok(None),
            Some(_) => self
                .entry_u32(
                    SEV_HASH_TABLE_RV,
                    SEV_HASH_TABLE_RV_NAME,
                    SEV_HASH_TABLE_RV_STR,
                )
                .map(|gpa| (gpa != 0).then_some(gpa)),
        }
    }

    fn entry(&self, guid: Guid) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|(g, _)| *g == guid)
            .map(|(_, data)| *data)
    }

    /// The first four bytes of an entry, little-endian.
    fn entry_u32(&self, guid: Guid, entry: &'static str, guid_str: &'static str) -> Result<u32> {
        let data = self.entry(guid).ok_or(MeasureError::MissingFooterEntry {
            entry,
            guid: guid_str,
        })?;
        entry_data_u32(data, entry)
    }

    fn parse_metadata(&self) -> Result<Option<Vec<MetadataSection>>> {
        if self.entry(SEV_METADATA).is_none() {
            return Ok(None);
        }
        let offset_from_end = self.entry_u32(
            SEV_METADATA,
            SEV_METADATA_NAME,
            "dc886566-984a-4798-a75e-5585a7bf67cc",
        )?;
        let MetadataHeader {
            bytes: header,
            start,
            length: size,
            count,
        } = metadata_header(
            self.data,
            offset_from_end,
            b"ASEV",
            &MetadataNames {
                structure: "SEV metadata",
                header: "SEV metadata header",
                signature_field: "signature",
                version_field: "version",
            },
        )?;
        let len = self.data.len();
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size < METADATA_HEADER {
            return Err(MeasureError::InvalidMetadata {
                field: "size",
                expected: format!("at least {METADATA_HEADER}"),
                found: size.to_string(),
            });
        }
        let body = header
            .get(..size)
            .and_then(|h| h.get(METADATA_HEADER..))
            .ok_or(MeasureError::FirmwareTruncated {
                structure: "SEV metadata",
                needed: start.saturating_add(size),
                found: len,
            })?;
        // The count is bounded by the declared size, which is bounded by the
        // image, before anything is allocated.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > body.len() / SECTION_DESC {
            return Err(MeasureError::InvalidMetadata {
                field: "num_items",
                expected: format!(
                    "at most {} sections in {size} bytes",
                    body.len() / SECTION_DESC
                ),
                found: count.to_string(),
            });
        }
        let mut sections = Vec::with_capacity(count);
        for (index, desc) in body.chunks_exact(SECTION_DESC).take(count).enumerate() {
            let gpa = u32::from_le_bytes(read_le(desc, 0, "SEV metadata section")?);
            let size = u32::from_le_bytes(read_le(desc, 4, "SEV metadata section")?);
            let found = u32::from_le_bytes(read_le(desc, 8, "SEV metadata section")?);
            let kind = SectionKind::from_u32(found)
                .ok_or(MeasureError::UnknownSectionType { index, found })?;
            sections.push(MetadataSection { gpa, size, kind });
        }
        Ok(Some(sections))
    }
}

/// The first four bytes of a footer table entry, little-endian (an offset
/// or an address).
pub(crate) fn entry_data_u32(data: &[u8], entry: &'static str) -> Result<u32> {
    match data.get(..4) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(MeasureError::FooterEntryTooShort {
            entry,
            needed: 4,
            found: data.len(),
        }),
    }
}

/// What the errors about one metadata format call its parts.
pub(crate) struct MetadataNames {
    /// The whole structure ("SEV metadata").
    pub(crate) structure: &'static str,
    /// Its header.
    pub(crate) header: &'static str,
    /// The signature and version fields.
    pub(crate) signature_field: &'static str,
    pub(crate) version_field: &'static str,
}

/// The header OVMF's SEV metadata (`"ASEV"`) and TDVF metadata (`"TDVF"`)
/// share, `offset_from_end` bytes before the end of the image: the
/// signature, then `u32` length, version (which must be 1) and count.
pub(crate) struct MetadataHeader<'a> {
    /// From the header's first byte to the end of the image.
    pub(crate) bytes: &'a [u8],
    /// The header's offset in the image.
    pub(crate) start: usize,
    /// The declared length of header and entries.
    pub(crate) length: u32,
    /// The declared number of entries.
    pub(crate) count: u32,
}

pub(crate) fn metadata_header<'a>(
    data: &'a [u8],
    offset_from_end: u32,
    signature: &[u8; 4],
    names: &MetadataNames,
) -> Result<MetadataHeader<'a>> {
    let len = data.len();
    let start = usize::try_from(offset_from_end)
        .ok()
        .and_then(|o| len.checked_sub(o))
        .ok_or(MeasureError::FirmwareTruncated {
            structure: names.structure,
            needed: usize::try_from(offset_from_end).unwrap_or(usize::MAX),
            found: len,
        })?;
    let bytes = data.get(start..).unwrap_or_default();
    let found: [u8; 4] = read_le(bytes, 0, names.header)?;
    if &found != signature {
        return Err(MeasureError::InvalidMetadata {
            field: names.signature_field,
            expected: format!("{:?}", String::from_utf8_lossy(signature)),
            found: format!("{:?}", String::from_utf8_lossy(&found)),
        });
    }
    let length = u32::from_le_bytes(read_le(bytes, 4, names.header)?);
    let version = u32::from_le_bytes(read_le(bytes, 8, names.header)?);
    let count = u32::from_le_bytes(read_le(bytes, 12, names.header)?);
    if version != 1 {
        return Err(MeasureError::InvalidMetadata {
            field: names.version_field,
            expected: "1".into(),
            found: version.to_string(),
        });
    }
    Ok(MetadataHeader {
        bytes,
        start,
        length,
        count,
    })
}

/// The footer table's entries, from the last (nearest the footer) to the first.
pub(crate) fn parse_footer_table(data: &[u8]) -> Result<Vec<(Guid, &[u8])>> {
    let len = data.len();
    let footer_start =
        len.checked_sub(FOOTER_GAP + ENTRY_HEADER)
            .ok_or(MeasureError::FirmwareTruncated {
                structure: "OVMF footer table",
                needed: FOOTER_GAP + ENTRY_HEADER,
                found: len,
            })?;
    let footer_size = u16::from_le_bytes(read_le(data, footer_start, "OVMF footer table")?);
    let footer_guid: [u8; 16] = read_le(data, footer_start + 2, "OVMF footer table")?;
    if &footer_guid != FOOTER_TABLE.bytes() {
        return Err(MeasureError::NoFooterTable);
    }
    let table_size = usize::from(footer_size).checked_sub(ENTRY_HEADER).ok_or(
        MeasureError::InvalidFooterTable {
            detail: format!(
                "footer size {footer_size} is less than its own {ENTRY_HEADER}-byte header"
            ),
        },
    )?;
    let table_start =
        footer_start
            .checked_sub(table_size)
            .ok_or(MeasureError::InvalidFooterTable {
                detail: format!("footer size {footer_size} reaches before the start of the image"),
            })?;
    let mut table = data
        .get(table_start..footer_start)
        .ok_or(MeasureError::FirmwareTruncated {
            structure: "OVMF footer table",
            needed: footer_start,
            found: len,
        })?;
    let mut entries: Vec<(Guid, &[u8])> = Vec::new();
    while !table.is_empty() {
        let header_at =
            table
                .len()
                .checked_sub(ENTRY_HEADER)
                .ok_or(MeasureError::InvalidFooterTable {
                    detail: format!(
                        "{} bytes left before the first entry, less than an entry header",
                        table.len()
                    ),
                })?;
        let size = usize::from(u16::from_le_bytes(read_le(
            table,
            header_at,
            "OVMF footer table entry",
        )?));
        let guid = Guid(read_le(table, header_at + 2, "OVMF footer table entry")?);
        if size < ENTRY_HEADER || size > table.len() {
            return Err(MeasureError::InvalidFooterTable {
                detail: format!(
                    "entry {guid} has size {size}, outside {ENTRY_HEADER}..={}",
                    table.len()
                ),
            });
        }
        let entry_start = table.len() - size;
        let (rest, entry) = table.split_at(entry_start);
        let entry_data = entry.get(..size - ENTRY_HEADER).unwrap_or_default();
        if entries.iter().any(|(g, _)| *g == guid) {
            return Err(MeasureError::DuplicateFooterEntry {
                guid: guid.to_string(),
            });
        }
        entries.push((guid, entry_data));
        table = rest;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_as_written() {
        assert_eq!(
            FOOTER_TABLE.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(SEV_ES_RESET_BLOCK.to_string(), SEV_ES_RESET_BLOCK_STR);
        assert_eq!(SEV_HASH_TABLE_RV.to_string(), SEV_HASH_TABLE_RV_STR);
        assert_eq!(
            SEV_METADATA.to_string(),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
        assert_eq!(
            &FOOTER_TABLE.bytes()[..4],
            &[0xde, 0x82, 0xb5, 0x96],
            "EFI GUIDs store the first field little-endian"
        );
    }
}
