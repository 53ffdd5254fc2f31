//! The AMD SEV-SNP launch digest of a QEMU/KVM (or EC2, GCE) guest booting
//! OVMF, computed as the PSP computes it during `SNP_LAUNCH_UPDATE`.
//!
//! For each page the hypervisor adds, the PSP replaces the digest with
//! SHA-384 of a PAGE_INFO structure (SNP Firmware ABI, AMD publication
//! 56860, section 8.17 `SNP_LAUNCH_UPDATE`, "PAGE_INFO Structure", Table 67 in
//! revision 1.55), 0x70 bytes:
//!
//! | offset | field                                       |
//! |--------|---------------------------------------------|
//! | 0x00   | DIGEST_CUR: the digest so far (48 bytes)     |
//! | 0x30   | CONTENTS: SHA-384 of the page, or zeros      |
//! | 0x60   | LENGTH: 0x70 (u16)                           |
//! | 0x62   | PAGE_TYPE (u8)                               |
//! | 0x63   | IMI_PAGE (u8): 0, not an in-migration image  |
//! | 0x64   | VMPL3/VMPL2/VMPL1 permissions: 0, reserved   |
//! | 0x68   | GPA (u64)                                    |
//!
//! The digest starts as 48 zero bytes; the order is QEMU's: the OVMF image
//! as normal pages mapped to end at 4 GiB, then OVMF's SEV metadata sections
//! in the image's order, then one VMSA per vCPU. This is what virtee's
//! `sev-snp-measure --mode snp` computes; `tests/snp_measure.rs` holds its
//! outputs as golden values.

use sha2::{Digest, Sha384};

use super::hashes::{KernelHashes, PADDED_TABLE_LEN};
use super::ovmf::{OvmfFirmware, SectionKind};
use super::vmsa::{vmsa_page, CpuSignature, VcpuType, VmmType, BSP_EIP, PAGE};
use super::{MeasureError, Result};
use crate::types::Measurement;

/// The most vCPUs accepted: KVM's `KVM_MAX_VCPUS` on x86-64. It bounds the
/// work an input can ask for.
pub const MAX_VCPUS: u32 = 4096;

/// The most memory the SEV metadata sections may cover together: OVMF's
/// cover well under 1 MiB; this bounds the work a crafted image can demand.
pub const MAX_SECTIONS_BYTES: u64 = 64 << 20;

/// SNPActive, bit 0 of SEV_FEATURES.
const SNP_ACTIVE: u64 = 1;

/// 4 GiB: OVMF is mapped to end here.
const FOUR_GIB: u64 = 1 << 32;

/// The RMP records VMSA pages at GPA `u64::MAX`, page-aligned with bits
/// above 51 cleared.
const VMSA_GPA: u64 = 0xffff_ffff_f000;

/// PAGE_INFO.PAGE_TYPE values (SNP Firmware ABI, Table 68 "PAGE_TYPE
/// Field Encodings" in revision 1.55).
#[derive(Clone, Copy)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// The parameters of an SNP launch, besides the firmware, that change its
/// digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpLaunchConfig {
    /// Number of vCPUs (`-smp`), 1 to [`MAX_VCPUS`].
    pub vcpus: u32,
    /// The vCPUs' CPUID signature, which QEMU puts in RDX; required for QEMU,
    /// ignored on EC2 and GCE (which put 0x600 there). See
    /// [`VcpuType::signature`].
    pub vcpu_signature: Option<CpuSignature>,
    /// The VMM that launches the guest.
    pub vmm: VmmType,
    /// The VMSA SEV_FEATURES (QEMU's `sev-snp-guest` default is 0x1,
    /// SNPActive; bit 0 must be set).
    pub guest_features: u64,
    /// Kernel/initrd/cmdline hashes for measured direct boot (`-kernel`);
    /// needs a firmware with an `SNP_KERNEL_HASHES` section.
    pub kernel_hashes: Option<KernelHashes>,
}

impl SnpLaunchConfig {
    /// A QEMU launch of `vcpus` vCPUs of `vcpu_type` with the default guest
    /// features (0x1) and no kernel: the common case.
    pub fn qemu(vcpus: u32, vcpu_type: VcpuType) -> Self {
        Self {
            vcpus,
            vcpu_signature: Some(vcpu_type.signature()),
            vmm: VmmType::Qemu,
            guest_features: SNP_ACTIVE,
            kernel_hashes: None,
        }
    }

    /// Checks what can be checked without the firmware.
    fn validate(&self) -> Result<()> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(MeasureError::InvalidVcpuCount {
                found: self.vcpus,
                max: MAX_VCPUS,
            });
        }
        if self.vmm == VmmType::Qemu && self.vcpu_signature.is_none() {
            return Err(MeasureError::VcpuTypeRequired { vmm: self.vmm });
        }
        if self.guest_features & SNP_ACTIVE == 0 {
            return Err(MeasureError::GuestFeaturesNotSnp {
                found: self.guest_features,
            });
        }
        Ok(())
    }
}

/// The digest the PSP keeps while pages are added (the SNP guest context's
/// launch digest).
struct LaunchDigest([u8; 48]);

impl LaunchDigest {
    /// One `SNP_LAUNCH_UPDATE` of one page: hash the PAGE_INFO structure.
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut h = Sha384::new();
        h.update(self.0);
        h.update(contents);
        h.update(0x70u16.to_le_bytes()); // LENGTH
        h.update([page_type as u8, 0, 0, 0, 0, 0]); // PAGE_TYPE, IMI_PAGE, VMPL3..1, reserved
        h.update(gpa.to_le_bytes());
        self.0 = h.finalize().into();
    }

    /// Normal (measured) pages: CONTENTS is SHA-384 of each page. `data` is a
    /// whole number of pages (checked by the callers).
    fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (page, offset) in data.chunks_exact(PAGE).zip((0u64..).step_by(PAGE)) {
            self.update(PageType::Normal, gpa + offset, &Sha384::digest(page).into());
        }
    }

    /// Pages whose contents are not measured (zero, unmeasured): CONTENTS is
    /// zero.
    fn empty_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        for offset in (0..len).step_by(PAGE) {
            self.update(page_type, gpa + offset, &[0u8; 48]);
        }
    }
}

/// The SNP launch digest, i.e. the report's MEASUREMENT, of `firmware`
/// launched with `config`.
pub fn snp_launch_digest(
    firmware: &OvmfFirmware<'_>,
    config: &SnpLaunchConfig,
) -> Result<Measurement> {
    config.validate()?;
    let plan = Plan::new(firmware, config)?;
    let seed = snp_firmware_digest(firmware)?;
    Ok(plan.finish(seed))
}

/// The launch digest after only the firmware pages: what
/// `sev-snp-measure --mode snp:ovmf-hash` prints. It lets a verifier that
/// trusts a published firmware digest compute launch digests from the
/// image's tail alone (see [`snp_launch_digest_from_firmware_digest`]).
pub fn snp_firmware_digest(firmware: &OvmfFirmware<'_>) -> Result<Measurement> {
    let data = firmware.data();
    let size = data.len();
    if size == 0 || size % PAGE != 0 {
        return Err(MeasureError::FirmwareSize {
            size,
            detail: "not a non-zero multiple of 4096",
        });
    }
    let gpa = u64::try_from(size)
        .ok()
        .and_then(|s| FOUR_GIB.checked_sub(s))
        .ok_or(MeasureError::FirmwareSize {
            size,
            detail: "larger than 4 GiB",
        })?;
    let mut ld = LaunchDigest([0u8; 48]);
    ld.normal_pages(gpa, data);
    Ok(Measurement(ld.0))
}

/// The launch digest from a firmware digest computed earlier
/// ([`snp_firmware_digest`], `sev-snp-measure --snp-ovmf-hash`): `firmware`
/// supplies only the footer table and SEV metadata, so it may be the last
/// pages of the image rather than all of it.
pub fn snp_launch_digest_from_firmware_digest(
    firmware_digest: &Measurement,
    firmware: &OvmfFirmware<'_>,
    config: &SnpLaunchConfig,
) -> Result<Measurement> {
    config.validate()?;
    Ok(Plan::new(firmware, config)?.finish(*firmware_digest))
}

/// What is measured after the firmware, checked in full before any hashing.
struct Plan {
    steps: Vec<Step>,
    bsp_vmsa: [u8; 48],
    ap_vmsa: Option<[u8; 48]>,
    vcpus: u32,
}

enum Step {
    Empty(PageType, u64, u64),
    OnePage(PageType, u64),
    KernelHashes(u64, Box<[u8; PAGE]>),
}

impl Plan {
    fn new(firmware: &OvmfFirmware<'_>, config: &SnpLaunchConfig) -> Result<Self> {
        let sections = firmware.sections().ok_or(MeasureError::NoSnpMetadata)?;
        if config.kernel_hashes.is_some() && !firmware.supports_kernel_hashes() {
            return Err(MeasureError::KernelHashesUnsupported);
        }
        let total = sections
            .iter()
            .fold(0u64, |t, s| t.saturating_add(u64::from(s.size)));
        if total > MAX_SECTIONS_BYTES {
            return Err(MeasureError::SectionsTooLarge {
                found: total,
                max: MAX_SECTIONS_BYTES,
            });
        }
        let mut steps = Vec::with_capacity(sections.len() + 1);
        for s in sections {
            let gpa = u64::from(s.gpa);
            let size = u64::from(s.size);
            if gpa + size > FOUR_GIB {
                return Err(MeasureError::InvalidSection {
                    kind: s.kind,
                    gpa: s.gpa,
                    size: s.size,
                    detail: "ends above 4 GiB",
                });
            }
            let whole_pages = || {
                if s.size % PAGE as u32 == 0 {
                    Ok(size)
                } else {
                    Err(MeasureError::InvalidSection {
                        kind: s.kind,
                        gpa: s.gpa,
                        size: s.size,
                        detail: "not a whole number of pages",
                    })
                }
            };
            match s.kind {
                SectionKind::SnpSecMem if config.vmm == VmmType::Gce => {
                    steps.push(Step::Empty(PageType::Unmeasured, gpa, whole_pages()?));
                }
                SectionKind::SnpSecMem | SectionKind::SvsmCaa => {
                    steps.push(Step::Empty(PageType::Zero, gpa, whole_pages()?));
                }
                SectionKind::SnpSecrets => steps.push(Step::OnePage(PageType::Secrets, gpa)),
                // EC2 adds the CPUID page after all the others (below).
                SectionKind::Cpuid if config.vmm == VmmType::Ec2 => {}
                SectionKind::Cpuid => steps.push(Step::OnePage(PageType::Cpuid, gpa)),
                SectionKind::SnpKernelHashes => match &config.kernel_hashes {
                    None => steps.push(Step::Empty(PageType::Zero, gpa, whole_pages()?)),
                    Some(hashes) => {
                        steps.push(Step::KernelHashes(
                            gpa,
                            kernel_hashes_page(firmware, s.kind, s.gpa, s.size, hashes)?,
                        ));
                    }
                },
            }
        }
        if config.vmm == VmmType::Ec2 {
            for s in sections.iter().filter(|s| s.kind == SectionKind::Cpuid) {
                steps.push(Step::OnePage(PageType::Cpuid, u64::from(s.gpa)));
            }
        }

        let ap_eip = firmware.sev_es_reset_eip()?;
        if config.vcpus > 1 && ap_eip == 0 {
            return Err(MeasureError::NoApResetVector {
                vcpus: config.vcpus,
            });
        }
        // Ignored by EC2 and GCE; present for QEMU (validated).
        let signature = config.vcpu_signature.unwrap_or(CpuSignature(0));
        let vmsa = |eip| {
            Sha384::digest(vmsa_page(eip, config.guest_features, signature, config.vmm)).into()
        };
        Ok(Self {
            steps,
            bsp_vmsa: vmsa(BSP_EIP),
            ap_vmsa: (config.vcpus > 1).then(|| vmsa(ap_eip)),
            vcpus: config.vcpus,
        })
    }

    fn finish(self, seed: Measurement) -> Measurement {
        let mut ld = LaunchDigest(seed.0);
        for step in &self.steps {
            match step {
                Step::Empty(page_type, gpa, len) => ld.empty_pages(*page_type, *gpa, *len),
                Step::OnePage(page_type, gpa) => ld.update(*page_type, *gpa, &[0u8; 48]),
                Step::KernelHashes(gpa, page) => ld.normal_pages(*gpa, page.as_slice()),
            }
        }
        ld.update(PageType::Vmsa, VMSA_GPA, &self.bsp_vmsa);
        if let Some(ap) = &self.ap_vmsa {
            for _ in 1..self.vcpus {
                ld.update(PageType::Vmsa, VMSA_GPA, ap);
            }
        }
        Measurement(ld.0)
    }
}

/// The kernel-hashes page as QEMU fills it: the table at the offset within
/// the page of the address the firmware's footer table gives.
fn kernel_hashes_page(
    firmware: &OvmfFirmware<'_>,
    kind: SectionKind,
    gpa: u32,
    size: u32,
    hashes: &KernelHashes,
) -> Result<Box<[u8; PAGE]>> {
    let invalid = |detail| MeasureError::InvalidSection {
        kind,
        gpa,
        size,
        detail,
    };
    if size as usize != PAGE {
        return Err(invalid("a kernel-hashes section must be exactly one page"));
    }
    let table_gpa = firmware
        .sev_hashes_table_gpa()?
        .ok_or(MeasureError::MissingFooterEntry {
            entry: "SEV hash table (non-zero address)",
            guid: super::ovmf::SEV_HASH_TABLE_RV_STR,
        })?;
    let offset = (table_gpa as usize) % PAGE;
    let mut page = Box::new([0u8; PAGE]);
    page.get_mut(offset..offset + PADDED_TABLE_LEN)
        .ok_or(invalid(
            "the SEV hash table address leaves no room for the table in the page",
        ))?
        .copy_from_slice(&hashes.table());
    Ok(page)
}
