//! TDVF's self-description for TDX: the metadata OVMF's IntelTdx build
//! points to from its GUIDed footer table (TDVF Design Guide, Intel
//! document 733585, section 11 "TDVF Metadata"; edk2
//! `OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm`).
//!
//! The footer table entry `e47a6535-984a-4798-865e-4685a7bf8ec2` holds a
//! `u32` offset, counted back from the end of the image, of a `"TDVF"`
//! descriptor (`u32 signature; u32 length; u32 version = 1; u32 count`)
//! followed by `count` sections of 32 bytes:
//! `{ u32 data_offset; u32 raw_data_size; u64 memory_address;
//! u64 memory_data_size; u32 type; u32 attributes }`. The VMM copies each
//! section's raw data (if any) from the image to `memory_address` and adds
//! the pages to the TD before it starts; that is what MRTD measures
//! ([`super::tdx`]).
//!
//! Parsing is as strict as QEMU's `hw/i386/tdvf.c`, and stricter where QEMU
//! would launch something this code does not model: anything it cannot
//! measure exactly is refused rather than guessed.

use super::ovmf::{
    entry_data_u32, metadata_header, parse_footer_table, Guid, MetadataHeader, MetadataNames,
};
use super::{read_le, MeasureError, Result};

/// `e47a6535-984a-4798-865e-4685a7bf8ec2`: offset of the TDVF metadata.
const TDX_METADATA_OFFSET: Guid = Guid::new(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);
#[cfg(test)]
const TDX_METADATA_OFFSET_STR: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";

/// `"TDVF"`, `u32 length`, `u32 version`, `u32 number_of_section_entries`.
const DESCRIPTOR_HEADER: usize = 16;
/// One section entry.
const SECTION_ENTRY: usize = 32;
/// TDX pages are 4 KiB.
pub(crate) const PAGE_SIZE: u64 = 0x1000;
/// Attribute bit 0: the VMM extends MRTD with the section's contents
/// (`TDH.MR.EXTEND`) as well as adding its pages.
pub const ATTRIBUTE_MR_EXTEND: u32 = 1 << 0;
/// Attribute bit 1: the pages are added after launch with `TDH.MEM.PAGE.AUG`
/// (accepted by the guest), not before it with `TDH.MEM.PAGE.ADD`.
pub const ATTRIBUTE_PAGE_AUG: u32 = 1 << 1;
/// The most guest memory the sections may cover in total. Every TDVF this
/// code has seen declares under 8 MiB; the cap stops a crafted image from
/// demanding billions of page additions.
const MAX_SECTIONS_MEMORY: u64 = 1 << 30;

/// What a TDVF section holds (TDVF Design Guide, table 11-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TdvfSectionKind {
    /// 0, Boot Firmware Volume: the firmware code, measured into MRTD.
    Bfv,
    /// 1, Configuration Firmware Volume: the UEFI variable store. Its pages
    /// are added but its contents are not in MRTD (OVMF measures them into
    /// RTMR0 at boot).
    Cfv,
    /// 2, the TD Hand-Off Block the VMM writes (memory map).
    TdHob,
    /// 3, temporary memory for the firmware's early stack and heap.
    TempMem,
    /// 4, permanent memory (TDVF metadata version 1 with TD-Shim).
    PermMem,
    /// 5, a payload image (TD-Shim).
    Payload,
    /// 6, the payload's parameters (TD-Shim).
    PayloadParam,
}

impl TdvfSectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Bfv),
            1 => Some(Self::Cfv),
            2 => Some(Self::TdHob),
            3 => Some(Self::TempMem),
            4 => Some(Self::PermMem),
            5 => Some(Self::Payload),
            6 => Some(Self::PayloadParam),
            _ => None,
        }
    }

    /// Sections whose contents come from the image.
    fn carries_image_data(self) -> bool {
        matches!(self, Self::Bfv | Self::Cfv)
    }
}

/// One TDVF metadata section: a range of guest memory the VMM adds before
/// launch, and where in the image its contents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the raw data in the image.
    pub data_offset: u32,
    /// Bytes of raw data (0 for memory the VMM provides).
    pub raw_data_size: u32,
    /// Guest-physical address of the first byte.
    pub memory_address: u64,
    /// Bytes of guest memory.
    pub memory_data_size: u64,
    /// What it holds.
    pub kind: TdvfSectionKind,
    /// [`ATTRIBUTE_MR_EXTEND`] and [`ATTRIBUTE_PAGE_AUG`] bits.
    pub attributes: u32,
}

impl TdvfSection {
    /// Whether its contents are extended into MRTD.
    pub fn extends_mrtd(&self) -> bool {
        self.attributes & ATTRIBUTE_MR_EXTEND != 0
    }

    /// Its raw data within `image` (checked at parse time).
    pub(crate) fn raw_data<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        let start = usize::try_from(self.data_offset).unwrap_or(usize::MAX);
        let len = usize::try_from(self.raw_data_size).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| image.get(start..end))
            .unwrap_or_default()
    }
}

/// A TDVF image with its metadata parsed, borrowed from the caller's bytes;
/// what [`super::tdx_mrtd`] measures.
#[derive(Clone)]
pub struct TdvfFirmware<'a> {
    data: &'a [u8],
    sections: Vec<TdvfSection>,
}

impl core::fmt::Debug for TdvfFirmware<'_> {
    /// The image's size rather than its megabytes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TdvfFirmware")
            .field("size", &self.data.len())
            .field("sections", &self.sections)
            .finish()
    }
}

impl<'a> TdvfFirmware<'a> {
    /// Parses and checks the TDVF metadata of `data`, a whole TDVF image
    /// (e.g. Debian's `OVMF.inteltdx.ms.fd`).
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if data.is_empty() || data.len() % 0x1000 != 0 {
            return Err(MeasureError::FirmwareSize {
                size: data.len(),
                detail: "a TDVF image is a non-empty whole number of 4 KiB pages",
            });
        }
        let entries = parse_footer_table(data)?;
        let offset_entry = entries
            .iter()
            .find(|(g, _)| *g == TDX_METADATA_OFFSET)
            .map(|(_, d)| *d)
            .ok_or(MeasureError::NoTdvfMetadata)?;
        let offset_from_end = entry_data_u32(offset_entry, "TDX metadata offset")?;
        let MetadataHeader {
            bytes: descriptor,
            start,
            length,
            count,
        } = metadata_header(
            data,
            offset_from_end,
            b"TDVF",
            &MetadataNames {
                structure: "TDVF metadata",
                header: "TDVF metadata header",
                signature_field: "TDVF signature",
                version_field: "TDVF version",
            },
        )?;
        let len = data.len();
        // QEMU requires the declared length to be exactly the header and the
        // entries; anything else is a malformed (or foreign) descriptor.
        let expected_length = u64::from(count)
            .checked_mul(SECTION_ENTRY as u64)
            .and_then(|n| n.checked_add(DESCRIPTOR_HEADER as u64));
        if count == 0 || expected_length != Some(u64::from(length)) {
            return Err(MeasureError::InvalidMetadata {
                field: "TDVF length",
                expected: format!(
                    "{DESCRIPTOR_HEADER} + 32 × number_of_section_entries, with at least one section"
                ),
                found: format!("length {length} for {count} sections"),
            });
        }
        let body = usize::try_from(length)
            .ok()
            .and_then(|l| descriptor.get(DESCRIPTOR_HEADER..l))
            .ok_or(MeasureError::FirmwareTruncated {
                structure: "TDVF metadata",
                needed: start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX)),
                found: len,
            })?;
        let mut sections = Vec::with_capacity(body.len() / SECTION_ENTRY);
        for (index, entry) in body.chunks_exact(SECTION_ENTRY).enumerate() {
            let section = parse_section(entry, index)?;
            check_section(&section, index, len)?;
            sections.push(section);
        }
        check_layout(&sections)?;
        Ok(Self { data, sections })
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The sections, in the order the VMM adds them.
    pub fn sections(&self) -> &[TdvfSection] {
        &self.sections
    }

    /// Whether the variable store (the CFV) has a Platform Key enrolled, so
    /// that the firmware enforces UEFI Secure Boot: in a TD, edk2 since
    /// edk2-stable202511 then refuses to direct-boot a kernel its `db`
    /// does not authorise (`X86QemuLoadImageLib`, no legacy-loader
    /// fallback in confidential guests), and Debian's kernels are signed
    /// for shim, not for Microsoft's `db`. `None` when the store is not
    /// the edk2 authenticated-variable format this reads. Advisory only:
    /// it decides a warning, never a measurement.
    pub fn secure_boot_enrolled(&self) -> Option<bool> {
        let cfv = self
            .sections
            .iter()
            .find(|s| s.kind == TdvfSectionKind::Cfv)?;
        variable_store_has_pk(cfv.raw_data(self.data))
    }
}

/// `8be4df61-93ca-11d2-aa0d-00e098032b8c`, EFI_GLOBAL_VARIABLE: PK's vendor.
const EFI_GLOBAL_VARIABLE: Guid = Guid::new(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// `aaf32c78-947b-439a-a180-2e144ec37792`: an authenticated variable store.
const AUTHENTICATED_VARIABLE_STORE: Guid = Guid::new(
    0xaaf3_2c78,
    0x947b,
    0x439a,
    [0xa1, 0x80, 0x2e, 0x14, 0x4e, 0xc3, 0x77, 0x92],
);

/// Walks an edk2 variable firmware volume (`EFI_FIRMWARE_VOLUME_HEADER`,
/// then `VARIABLE_STORE_HEADER`, then `AUTHENTICATED_VARIABLE_HEADER`s,
/// edk2 `MdeModulePkg/Include/Guid/VariableFormat.h`) looking for an
/// added (state `VAR_ADDED`) `PK`.
fn variable_store_has_pk(fv: &[u8]) -> Option<bool> {
    const VARIABLE_STORE_HEADER: usize = 28;
    const VARIABLE_HEADER: usize = 60;
    const START_ID: u16 = 0x55aa;
    const VAR_ADDED: u8 = 0x3f;
    let signature: [u8; 4] = read_le(fv, 0x28, "FV header").ok()?;
    if &signature != b"_FVH" {
        return None;
    }
    let header_length = usize::from(u16::from_le_bytes(read_le(fv, 0x30, "FV header").ok()?));
    let store_guid: [u8; 16] = read_le(fv, header_length, "variable store").ok()?;
    if &store_guid != AUTHENTICATED_VARIABLE_STORE.bytes() {
        return None;
    }
    let store_size = u32::from_le_bytes(read_le(fv, header_length + 16, "variable store").ok()?);
    let store_end = header_length
        .checked_add(usize::try_from(store_size).ok()?)?
        .min(fv.len());
    let pk_name: Vec<u8> = "PK\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let align = |offset: usize| offset.checked_add(3).map(|o| o & !3);
    let mut at = align(header_length + VARIABLE_STORE_HEADER)?;
    while at.checked_add(VARIABLE_HEADER)? <= store_end {
        let start_id = u16::from_le_bytes(read_le(fv, at, "variable").ok()?);
        if start_id != START_ID {
            // The first slot without a header: the end of the variables.
            return Some(false);
        }
        let [state] = read_le::<1>(fv, at + 2, "variable").ok()?;
        let name_size =
            usize::try_from(u32::from_le_bytes(read_le(fv, at + 36, "variable").ok()?)).ok()?;
        let data_size =
            usize::try_from(u32::from_le_bytes(read_le(fv, at + 40, "variable").ok()?)).ok()?;
        let vendor: [u8; 16] = read_le(fv, at + 44, "variable").ok()?;
        let name_at = at + VARIABLE_HEADER;
        let name = fv.get(name_at..name_at.checked_add(name_size)?)?;
        if state == VAR_ADDED
            && &vendor == EFI_GLOBAL_VARIABLE.bytes()
            && name == pk_name.as_slice()
        {
            return Some(true);
        }
        at = align(name_at.checked_add(name_size)?.checked_add(data_size)?)?;
    }
    Some(false)
}

fn parse_section(entry: &[u8], index: usize) -> Result<TdvfSection> {
    let structure = "TDVF metadata section";
    let kind = u32::from_le_bytes(read_le(entry, 24, structure)?);
    Ok(TdvfSection {
        data_offset: u32::from_le_bytes(read_le(entry, 0, structure)?),
        raw_data_size: u32::from_le_bytes(read_le(entry, 4, structure)?),
        memory_address: u64::from_le_bytes(read_le(entry, 8, structure)?),
        memory_data_size: u64::from_le_bytes(read_le(entry, 16, structure)?),
        kind: TdvfSectionKind::from_u32(kind)
            .ok_or(MeasureError::UnknownTdvfSectionType { index, found: kind })?,
        attributes: u32::from_le_bytes(read_le(entry, 28, structure)?),
    })
}

/// One section on its own: alignment, bounds, and only what QEMU's
/// upstream TDX support (and this code) knows how to add.
fn check_section(s: &TdvfSection, index: usize, image_len: usize) -> Result<()> {
    let invalid = |detail: String| MeasureError::InvalidTdvfSection { index, detail };
    if s.attributes & !(ATTRIBUTE_MR_EXTEND | ATTRIBUTE_PAGE_AUG) != 0 {
        return Err(invalid(format!(
            "unknown attribute bits {:#x}",
            s.attributes & !(ATTRIBUTE_MR_EXTEND | ATTRIBUTE_PAGE_AUG)
        )));
    }
    if s.attributes & ATTRIBUTE_PAGE_AUG != 0 {
        return Err(invalid(
            "PAGE.AUG sections are added after launch by a protocol this code does not model"
                .into(),
        ));
    }
    if s.memory_data_size == 0
        || s.memory_address % PAGE_SIZE != 0
        || s.memory_data_size % PAGE_SIZE != 0
    {
        return Err(invalid(format!(
            "{:?} at {:#x} of {:#x} bytes is not a non-empty run of whole 4 KiB pages",
            s.kind, s.memory_address, s.memory_data_size
        )));
    }
    if s.memory_address.checked_add(s.memory_data_size).is_none() {
        return Err(invalid(format!(
            "{:?} at {:#x} of {:#x} bytes wraps the address space",
            s.kind, s.memory_address, s.memory_data_size
        )));
    }
    if s.kind.carries_image_data() {
        // QEMU maps a firmware volume straight from the image, so its
        // memory is its raw data; a volume with zero-filled tail pages
        // would be measured differently by different VMMs.
        if u64::from(s.raw_data_size) != s.memory_data_size {
            return Err(invalid(format!(
                "{:?} has {:#x} bytes of raw data for {:#x} bytes of memory; only equal sizes are supported",
                s.kind, s.raw_data_size, s.memory_data_size
            )));
        }
        let end = u64::from(s.data_offset) + u64::from(s.raw_data_size);
        if end > image_len as u64 {
            return Err(MeasureError::FirmwareTruncated {
                structure: "TDVF section data",
                needed: usize::try_from(end).unwrap_or(usize::MAX),
                found: image_len,
            });
        }
    } else {
        match s.kind {
            TdvfSectionKind::TdHob | TdvfSectionKind::TempMem => {}
            other => {
                return Err(invalid(format!(
                    "{other:?} sections belong to TD-Shim payload launches, which this code does not model"
                )))
            }
        }
        if s.raw_data_size != 0 || s.extends_mrtd() {
            return Err(invalid(format!(
                "{:?} is memory the VMM provides: it can carry no raw data and no MR.EXTEND",
                s.kind
            )));
        }
    }
    Ok(())
}

/// The sections together: one boot volume, at most one TD HOB, no
/// overlaps (a page added twice is a TDX module error), a bounded total.
fn check_layout(sections: &[TdvfSection]) -> Result<()> {
    let count = |kind| sections.iter().filter(|s| s.kind == kind).count();
    if count(TdvfSectionKind::Bfv) == 0 {
        return Err(MeasureError::InvalidTdvfLayout {
            detail: "no BFV (boot firmware volume) section".into(),
        });
    }
    if count(TdvfSectionKind::TdHob) > 1 {
        return Err(MeasureError::InvalidTdvfLayout {
            detail: "more than one TD HOB section".into(),
        });
    }
    let total: u64 = sections
        .iter()
        .map(|s| s.memory_data_size)
        .fold(0, u64::saturating_add);
    if total > MAX_SECTIONS_MEMORY {
        return Err(MeasureError::SectionsTooLarge {
            found: total,
            max: MAX_SECTIONS_MEMORY,
        });
    }
    let mut ranges: Vec<(u64, u64)> = sections
        .iter()
        .map(|s| (s.memory_address, s.memory_address + s.memory_data_size))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if let [(a_start, a_end), (b_start, _)] = pair {
            if b_start < a_end {
                return Err(MeasureError::InvalidTdvfLayout {
                    detail: format!(
                        "sections at {a_start:#x}..{a_end:#x} and {b_start:#x} overlap"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_guid_prints_as_written() {
        assert_eq!(TDX_METADATA_OFFSET.to_string(), TDX_METADATA_OFFSET_STR);
    }
}
