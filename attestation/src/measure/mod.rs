//! Expected launch measurements, computed before launch from the launch
//! inputs, so that an operator can put them into an appraisal policy
//! ([`crate::policy`]) without first booting the guest on trusted hardware.
//!
//! For AMD SEV-SNP the measurement is the *launch digest* the PSP folds up
//! while the hypervisor adds pages to the guest (SNP Firmware ABI, AMD
//! publication 56860, section 8.17 `SNP_LAUNCH_UPDATE`, PAGE_INFO structure,
//! Table 67 in revision 1.55): the OVMF image, the pages OVMF's SEV metadata
//! declares (zero, secrets, CPUID, kernel hashes), then one VMSA per vCPU.
//! [`snp`] computes it for a QEMU (or EC2, GCE) launch the way virtee's
//! `sev-snp-measure --mode snp` does, and the tests hold golden values that
//! tool produced.
//!
//! ```
//! use cloister_attestation::measure::{snp_launch_digest, OvmfFirmware, SnpLaunchConfig, VcpuType};
//!
//! // The last 4 KiB of an edk2 OvmfPkgX64 build (sev-snp-measure's own fixture).
//! let image = include_bytes!("../../tests/fixtures/measure/ovmf_OvmfX64_suffix.bin");
//! let firmware = OvmfFirmware::parse(image)?;
//! let config = SnpLaunchConfig::qemu(1, VcpuType::EpycV4);
//! let digest = snp_launch_digest(&firmware, &config)?;
//! assert_eq!(
//!     digest.to_string(),
//!     "da0296de8193586a5512078dcd719eccecbd87e2b825ad41\
//!      48c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"
//! );
//! # Ok::<(), cloister_attestation::measure::MeasureError>(())
//! ```

mod hashes;
mod ovmf;
pub mod snp;
mod tdvf;
pub mod tdx;
mod tdx_rtmr;
mod vmsa;

pub use hashes::KernelHashes;
pub use ovmf::{MetadataSection, OvmfFirmware, SectionKind};
pub use snp::{
    snp_firmware_digest, snp_launch_digest, snp_launch_digest_from_firmware_digest, SnpLaunchConfig,
};
pub use tdvf::{
    TdvfFirmware, TdvfSection, TdvfSectionKind, ATTRIBUTE_MR_EXTEND, ATTRIBUTE_PAGE_AUG,
};
pub use tdx::tdx_mrtd;
pub use tdx_rtmr::{
    kernel_authenticode_sha384, kernel_measures_into_rtmrs, tdx_direct_boot_rtmrs, RtmrEvent,
    TdxBootRtmrs, TdxDirectBoot,
};
pub use vmsa::{CpuSignature, VcpuType, VmmType};

/// Why a launch measurement cannot be computed from the inputs given.
///
/// A separate enum from [`crate::Error`], which describes evidence: these
/// errors are about launch inputs (firmware images, launch parameters) an
/// operator supplies, and none of them is a verdict on a TEE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The firmware image ends before a structure it declares.
    #[error("firmware {structure} is truncated: needs {needed} bytes, image has {found}")]
    FirmwareTruncated {
        /// The structure being read.
        structure: &'static str,
        /// Bytes needed (an offset from the start of the image or a length).
        needed: usize,
        /// Bytes available.
        found: usize,
    },
    /// The image cannot be mapped below 4 GiB in whole pages.
    #[error("firmware image is {size} bytes: {detail}")]
    FirmwareSize {
        /// The image's size.
        size: usize,
        /// Which rule it breaks.
        detail: &'static str,
    },
    /// The image does not end with OVMF's GUIDed footer table, so it is not
    /// an SEV-capable OVMF (or it is not OVMF at all).
    #[error(
        "firmware has no OVMF footer table (GUID 96b582de-1fb2-45f7-baea-a366c55a082d \
         50 bytes before the end): not an OVMF image built for SEV or TDX"
    )]
    NoFooterTable,
    /// The footer table's framing is inconsistent.
    #[error("OVMF footer table is invalid: {detail}")]
    InvalidFooterTable {
        /// What is wrong with it.
        detail: String,
    },
    /// The same GUID appears twice in the footer table.
    #[error("OVMF footer table lists GUID {guid} twice")]
    DuplicateFooterEntry {
        /// The repeated GUID.
        guid: String,
    },
    /// An entry the launch needs is not in the footer table.
    #[error("OVMF footer table has no {entry} entry (GUID {guid})")]
    MissingFooterEntry {
        /// The entry's name.
        entry: &'static str,
        /// Its GUID.
        guid: &'static str,
    },
    /// A footer table entry is shorter than the value it must hold.
    #[error("OVMF footer table entry {entry} has {found} data bytes, needs {needed}")]
    FooterEntryTooShort {
        /// The entry's name.
        entry: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// The firmware has no SEV metadata, so it cannot launch as an SNP guest.
    #[error(
        "firmware has no OVMF SEV metadata (GUID dc886566-984a-4798-a75e-5585a7bf67cc): \
         it cannot launch as an SEV-SNP guest"
    )]
    NoSnpMetadata,
    /// The SEV metadata header is not the one OVMF writes.
    #[error("OVMF SEV metadata {field} is invalid: expected {expected}, found {found}")]
    InvalidMetadata {
        /// The header field.
        field: &'static str,
        /// What it must be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// A metadata section has a type this code does not know how to measure.
    #[error("OVMF SEV metadata section {index} has unknown type {found:#x}")]
    UnknownSectionType {
        /// The section's index in the metadata.
        index: usize,
        /// Its type.
        found: u32,
    },
    /// A metadata section is not a whole number of pages.
    #[error("OVMF SEV metadata section {kind:?} at {gpa:#x} has size {size:#x}: {detail}")]
    InvalidSection {
        /// The section's type.
        kind: SectionKind,
        /// Its guest-physical address.
        gpa: u32,
        /// Its size.
        size: u32,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The metadata sections add up to more memory than any OVMF declares;
    /// refused so that a crafted image cannot demand millions of page
    /// updates.
    #[error(
        "the firmware metadata sections cover {found:#x} bytes, more than the {max:#x} accepted"
    )]
    SectionsTooLarge {
        /// Bytes the sections cover in total.
        found: u64,
        /// The most accepted.
        max: u64,
    },
    /// The firmware has no TDVF metadata, so it cannot launch as a TD.
    #[error(
        "firmware has no TDVF metadata (GUID e47a6535-984a-4798-865e-4685a7bf8ec2): \
         it is not a TDVF (OVMF IntelTdx) build and cannot launch as a TDX guest"
    )]
    NoTdvfMetadata,
    /// A TDVF section has a type the TDVF Design Guide does not define.
    #[error("TDVF metadata section {index} has unknown type {found:#x}")]
    UnknownTdvfSectionType {
        /// The section's index in the metadata.
        index: usize,
        /// Its type.
        found: u32,
    },
    /// A TDVF section that cannot be added (or measured) as declared.
    #[error("TDVF metadata section {index}: {detail}")]
    InvalidTdvfSection {
        /// The section's index in the metadata.
        index: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// The TDVF sections do not make a launchable layout together.
    #[error("TDVF metadata is invalid: {detail}")]
    InvalidTdvfLayout {
        /// What is wrong.
        detail: String,
    },
    /// The kernel cannot be measured as the firmware would measure it.
    #[error("the kernel cannot be measured: {detail}")]
    InvalidKernel {
        /// Why.
        detail: String,
    },
    /// The kernel's EFI stub does not know the CC measurement protocol, so in
    /// a TD it would not measure its initrd and command line into `RTMR[2]`:
    /// anything could be booted with them and still match.
    #[error(
        "the kernel's EFI stub cannot measure into TDX RTMRs (it lacks the CC measurement \
         protocol, added in Linux 6.9): its initrd and command line would go unmeasured"
    )]
    KernelCannotMeasureRtmrs,
    /// A kernel was given, but the firmware has no `SNP_KERNEL_HASHES`
    /// section in which QEMU could place the kernel/initrd/cmdline hashes
    /// (e.g. a stock OvmfPkgX64 build such as Debian's `OVMF.fd`; the AmdSev
    /// build, `OvmfPkg/AmdSev/AmdSevX64.dsc`, has one).
    #[error(
        "a kernel was given, but the firmware's SEV metadata has no SNP_KERNEL_HASHES section \
         (measured direct boot needs an AmdSev OVMF build)"
    )]
    KernelHashesUnsupported,
    /// The vCPU count is outside what a launch can have.
    #[error("vCPU count {found} is out of range (1 to {max})")]
    InvalidVcpuCount {
        /// The count given.
        found: u32,
        /// The largest count accepted.
        max: u32,
    },
    /// A vCPU type name this code has no CPUID signature for.
    #[error("unknown vCPU type {found:?} (supported: {supported})")]
    UnknownVcpuType {
        /// The name given.
        found: String,
        /// The names accepted.
        supported: String,
    },
    /// A VMM name this code does not model.
    #[error("unknown VMM type {found:?} (supported: QEMU, ec2, gce)")]
    UnknownVmmType {
        /// The name given.
        found: String,
    },
    /// QEMU puts the vCPU's CPUID signature into RDX, so it must be known.
    #[error("a vCPU type (or signature) is required for VMM {vmm}")]
    VcpuTypeRequired {
        /// The VMM.
        vmm: VmmType,
    },
    /// More than one vCPU, but the firmware gives no AP reset vector.
    #[error(
        "{vcpus} vCPUs need an AP reset vector, but the firmware's SEV-ES reset block gives 0"
    )]
    NoApResetVector {
        /// The vCPU count.
        vcpus: u32,
    },
    /// The guest features lack SNPActive (bit 0), which every SNP VMSA has.
    #[error("guest features {found:#x} lack SNPActive (bit 0), which an SEV-SNP guest must set")]
    GuestFeaturesNotSnp {
        /// The features given.
        found: u64,
    },
}

/// This module's result type.
pub type Result<T, E = MeasureError> = core::result::Result<T, E>;

/// Reads a little-endian `u16`/`u32` at `offset` of `data`, naming
/// `structure` when it is out of bounds.
pub(crate) fn read_le<const N: usize>(
    data: &[u8],
    offset: usize,
    structure: &'static str,
) -> Result<[u8; N]> {
    let end = offset
        .checked_add(N)
        .ok_or(MeasureError::FirmwareTruncated {
            structure,
            needed: usize::MAX,
            found: data.len(),
        })?;
    let bytes = data
        .get(offset..end)
        .ok_or(MeasureError::FirmwareTruncated {
            structure,
            needed: end,
            found: data.len(),
        })?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}
