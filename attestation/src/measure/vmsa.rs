//! The initial VMSA (VM save area, AMD APM Vol. 2, Table B-4) of each vCPU,
//! as KVM/QEMU (or EC2, GCE) set it up for an SEV-SNP launch. The PSP
//! measures every VMSA page, so the register state at reset is part of the
//! launch digest: the reset vector, the CPUID signature QEMU leaves in RDX,
//! the SEV features, and a few values each VMM initialises differently.

use core::fmt;
use core::str::FromStr;

use super::MeasureError;

/// The page size of everything the launch measures.
pub(crate) const PAGE: usize = 4096;

/// The bootstrap processor starts at the architectural reset vector.
pub(crate) const BSP_EIP: u32 = 0xffff_fff0;

/// Which VMM launches the guest: they initialise some VMSA registers and
/// order some pages differently, which changes the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VmmType {
    /// QEMU/KVM (the default).
    #[default]
    Qemu,
    /// Amazon EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl VmmType {
    /// The name `sev-snp-measure --vmm-type` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qemu => "QEMU",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VmmType {
    type Err = MeasureError;
    /// `QEMU`, `ec2` or `gce`, in any case.
    fn from_str(s: &str) -> Result<Self, MeasureError> {
        [Self::Qemu, Self::Ec2, Self::Gce]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| MeasureError::UnknownVmmType { found: s.into() })
    }
}

/// A CPUID Fn0000_0001_EAX signature (family, model, stepping), which QEMU
/// puts in each vCPU's RDX at reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSignature(pub u32);

impl CpuSignature {
    /// The signature of `family`/`model`/`stepping`, encoded as AMD's CPUID
    /// Specification (publication 25481, Fn0000_0001_EAX) describes:
    /// families above 0xf put 0xf in the base field and the rest in the
    /// extended field.
    pub const fn from_family_model_stepping(family: u32, model: u32, stepping: u32) -> Self {
        let (family_low, family_high) = if family > 0xf {
            (0xf, (family - 0xf) & 0xff)
        } else {
            (family, 0)
        };
        Self(
            (family_high << 20)
                | (((model >> 4) & 0xf) << 16)
                | ((family_low & 0xf) << 8)
                | ((model & 0xf) << 4)
                | (stepping & 0xf),
        )
    }
}

macro_rules! vcpu_types {
    ($($variant:ident = $name:literal ($family:literal, $model:literal, $stepping:literal),)+) => {
        /// The QEMU CPU models whose signature this code knows: those
        /// `sev-snp-measure` 0.0.13 lists (from QEMU's `builtin_x86_defs`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum VcpuType {
            $(
                #[doc = concat!("`-cpu ", $name, "`: family ", $family, ", model ", $model, ", stepping ", $stepping, ".")]
                $variant,
            )+
        }

        impl VcpuType {
            /// Every known type, in the order `sev-snp-measure` lists them.
            pub const ALL: &'static [VcpuType] = &[$(Self::$variant),+];

            /// The QEMU `-cpu` name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The CPUID signature QEMU reports for this model.
            pub fn signature(self) -> CpuSignature {
                match self {
                    $(Self::$variant => CpuSignature::from_family_model_stepping($family, $model, $stepping),)+
                }
            }
        }
    };
}

vcpu_types! {
    Epyc = "EPYC" (23, 1, 2),
    EpycV1 = "EPYC-v1" (23, 1, 2),
    EpycV2 = "EPYC-v2" (23, 1, 2),
    EpycIbpb = "EPYC-IBPB" (23, 1, 2),
    EpycV3 = "EPYC-v3" (23, 1, 2),
    EpycV4 = "EPYC-v4" (23, 1, 2),
    EpycRome = "EPYC-Rome" (23, 49, 0),
    EpycRomeV1 = "EPYC-Rome-v1" (23, 49, 0),
    EpycRomeV2 = "EPYC-Rome-v2" (23, 49, 0),
    EpycRomeV3 = "EPYC-Rome-v3" (23, 49, 0),
    EpycMilan = "EPYC-Milan" (25, 1, 1),
    EpycMilanV1 = "EPYC-Milan-v1" (25, 1, 1),
    EpycMilanV2 = "EPYC-Milan-v2" (25, 1, 1),
    EpycGenoa = "EPYC-Genoa" (25, 17, 0),
    EpycGenoaV1 = "EPYC-Genoa-v1" (25, 17, 0),
    EpycTurin = "EPYC-Turin" (26, 0, 0),
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VcpuType {
    type Err = MeasureError;
    /// The exact QEMU `-cpu` name, e.g. `EPYC-Milan-v2`.
    fn from_str(s: &str) -> Result<Self, MeasureError> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| MeasureError::UnknownVcpuType {
                found: s.into(),
                supported: Self::ALL
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A VMSA page under construction: named fields at the offsets of APM Vol. 2
/// Table B-4 (and Linux's `struct sev_es_save_area`).
struct Vmsa([u8; PAGE]);

// Field offsets in the save area.
const ES: usize = 0x00;
const CS: usize = 0x10;
const SS: usize = 0x20;
const DS: usize = 0x30;
const FS: usize = 0x40;
const GS: usize = 0x50;
const GDTR: usize = 0x60;
const LDTR: usize = 0x70;
const IDTR: usize = 0x80;
const TR: usize = 0x90;
const EFER: usize = 0xd0;
const CR4: usize = 0x148;
const CR0: usize = 0x158;
const DR7: usize = 0x160;
const DR6: usize = 0x168;
const RFLAGS: usize = 0x170;
const RIP: usize = 0x178;
const G_PAT: usize = 0x268;
const RDX: usize = 0x310;
const SEV_FEATURES: usize = 0x3b0;
const XCR0: usize = 0x3e8;
const MXCSR: usize = 0x408;
const X87_FCW: usize = 0x410;

impl Vmsa {
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        // Offsets are the constants above, all inside the page; a field that
        // did not fit would be a bug caught by the golden-digest tests.
        if let Some(dst) = self.0.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// A VMCB segment: `u16 selector, u16 attrib, u32 limit, u64 base`.
    fn segment(&mut self, offset: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.put(offset, &selector.to_le_bytes());
        self.put(offset + 2, &attrib.to_le_bytes());
        self.put(offset + 4, &limit.to_le_bytes());
        self.put(offset + 8, &base.to_le_bytes());
    }

    fn u64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }
}

/// The VMSA page of a vCPU that starts at `eip`, as `vmm` sets it up (KVM's
/// reset state; on EC2 and GCE their own), with `sev_features` and, for
/// QEMU, `signature` in RDX.
pub(crate) fn vmsa_page(
    eip: u32,
    sev_features: u64,
    signature: CpuSignature,
    vmm: VmmType,
) -> [u8; PAGE] {
    // PAT MSR reset value, APM Vol. 2 section A.3.
    let mut g_pat = 0x0007_0406_0007_0406;
    let (cs_flags, ss_flags, tr_flags, rdx, mxcsr, fcw) = match vmm {
        VmmType::Qemu => (0x9b, 0x93, 0x8b, u64::from(signature.0), 0x1f80, 0x37f),
        VmmType::Ec2 => {
            let cs_flags = if eip == BSP_EIP { 0x9a } else { 0x9b };
            (cs_flags, 0x92, 0x83, 0x600, 0, 0)
        }
        VmmType::Gce => {
            g_pat = 0x0007_0106;
            (0x9b, 0x93, 0x8b, 0x600, 0, 0)
        }
    };
    let mut v = Vmsa([0u8; PAGE]);
    v.segment(ES, 0, 0x93, 0xffff, 0);
    v.segment(CS, 0xf000, cs_flags, 0xffff, u64::from(eip & 0xffff_0000));
    v.segment(SS, 0, ss_flags, 0xffff, 0);
    v.segment(DS, 0, 0x93, 0xffff, 0);
    v.segment(FS, 0, 0x93, 0xffff, 0);
    v.segment(GS, 0, 0x93, 0xffff, 0);
    v.segment(GDTR, 0, 0, 0xffff, 0);
    v.segment(IDTR, 0, 0, 0xffff, 0);
    v.segment(LDTR, 0, 0x82, 0xffff, 0);
    v.segment(TR, 0, tr_flags, 0xffff, 0);
    v.u64(EFER, 0x1000); // EFER.SVME, which KVM sets
    v.u64(CR4, 0x40); // CR4.MCE, which KVM sets
    v.u64(CR0, 0x10); // CR0.ET
    v.u64(DR7, 0x400);
    v.u64(DR6, 0xffff_0ff0);
    v.u64(RFLAGS, 0x2);
    v.u64(RIP, u64::from(eip & 0xffff));
    v.u64(G_PAT, g_pat);
    v.u64(RDX, rdx);
    v.u64(SEV_FEATURES, sev_features);
    v.u64(XCR0, 0x1);
    v.put(MXCSR, &u32::to_le_bytes(mxcsr));
    v.put(X87_FCW, &u16::to_le_bytes(fcw));
    v.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_cpuid() {
        // Milan: family 19h, model 01h, stepping 1 -> 0x00a00f11.
        assert_eq!(VcpuType::EpycMilan.signature(), CpuSignature(0x00a0_0f11));
        // Rome: family 17h, model 31h, stepping 0 -> 0x00830f10.
        assert_eq!(VcpuType::EpycRome.signature(), CpuSignature(0x0083_0f10));
        // Genoa: family 19h, model 11h -> 0x00a10f10.
        assert_eq!(VcpuType::EpycGenoa.signature(), CpuSignature(0x00a1_0f10));
        assert_eq!(VcpuType::EpycV4.signature(), CpuSignature(0x0080_0f12));
        assert_eq!(VcpuType::EpycTurin.signature(), CpuSignature(0x00b0_0f00));
    }

    #[test]
    fn names_round_trip() {
        for t in VcpuType::ALL {
            assert_eq!(t.name().parse::<VcpuType>().unwrap(), *t);
        }
        assert!(matches!(
            "epyc-milan".parse::<VcpuType>(),
            Err(MeasureError::UnknownVcpuType { .. })
        ));
        assert_eq!("qemu".parse::<VmmType>().unwrap(), VmmType::Qemu);
        assert_eq!("EC2".parse::<VmmType>().unwrap(), VmmType::Ec2);
        assert!(matches!(
            "xen".parse::<VmmType>(),
            Err(MeasureError::UnknownVmmType { .. })
        ));
    }
}
