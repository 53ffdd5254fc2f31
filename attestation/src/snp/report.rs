//! The SEV-SNP ATTESTATION_REPORT structure (versions 2, 3 and 5).

use serde::Serialize;

use crate::bytes::Cursor;
use crate::error::{Error, Result};
use crate::types::{ChipId, HostData, Measurement, ReportData};

const STRUCTURE: &str = "SNP report";
/// Size of every report version this crate reads.
pub(crate) const REPORT_LEN: usize = 0x4A0;
/// The report signature covers bytes `[0, SIGNED_LEN)`.
pub(crate) const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
const ECDSA_P384_SHA384: u32 = 1;

/// The AMD EPYC generation that produced a report. It fixes the TCB layout
/// and the root key the chain must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Product {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4).
    Genoa,
    /// EPYC 9005 (Zen 5).
    Turin,
}

impl Product {
    /// The name AMD uses in certificate subjects and KDS URLs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// From CPUID family and model (family = base + extended family, model =
    /// extended model << 4 | base model), using the model ranges AMD assigns.
    fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x11) => Some(Self::Turin),
            _ => None,
        }
    }

    fn tcb_layout(self) -> TcbLayout {
        match self {
            Self::Milan | Self::Genoa => TcbLayout::MilanGenoa,
            Self::Turin => TcbLayout::Turin,
        }
    }
}

impl core::fmt::Display for Product {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the eight bytes of a TCB_VERSION are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcbLayout {
    /// byte 0 boot loader, 1 TEE, 2..=5 reserved, 6 SNP, 7 microcode.
    MilanGenoa,
    /// byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 4..=6 reserved, 7 microcode.
    Turin,
}

/// A decoded TCB_VERSION: the security patch level of each firmware component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbVersion {
    /// FMC (Turin and later only).
    pub fmc: Option<u8>,
    /// AMD-SP boot loader.
    pub bootloader: u8,
    /// AMD-SP TEE OS.
    pub tee: u8,
    /// SNP firmware.
    pub snp: u8,
    /// CPU microcode.
    pub microcode: u8,
    /// The raw little-endian value.
    #[serde(skip)]
    pub raw: u64,
}

impl TcbVersion {
    fn decode(raw: u64, layout: TcbLayout, offset: usize) -> Result<Self> {
        let b = raw.to_le_bytes();
        let reserved_nonzero = |range: core::ops::Range<usize>| {
            b.get(range.clone())
                .and_then(|r| r.iter().position(|x| *x != 0))
                .map(|i| Error::ReservedNotZero {
                    structure: STRUCTURE,
                    offset: offset + range.start + i,
                })
        };
        let [b0, b1, b2, b3, _, _, b6, b7] = b;
        match layout {
            TcbLayout::MilanGenoa => match reserved_nonzero(2..6) {
                Some(e) => Err(e),
                None => Ok(Self {
                    fmc: None,
                    bootloader: b0,
                    tee: b1,
                    snp: b6,
                    microcode: b7,
                    raw,
                }),
            },
            TcbLayout::Turin => match reserved_nonzero(4..7) {
                Some(e) => Err(e),
                None => Ok(Self {
                    fmc: Some(b0),
                    bootloader: b1,
                    tee: b2,
                    snp: b3,
                    microcode: b7,
                    raw,
                }),
            },
        }
    }
}

/// The guest policy the VM was launched with (GUEST_POLICY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Minimum ABI minor version the guest requires.
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// Minimum ABI major version the guest requires.
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// Whether SMT may be enabled on the host.
    pub fn smt_allowed(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Whether a migration agent may be associated with the guest.
    pub fn migration_agent_allowed(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    /// Whether the host may debug the guest (and so read its memory).
    pub fn debug_allowed(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    /// Whether the guest is restricted to a single socket.
    pub fn single_socket_required(self) -> bool {
        self.0 & (1 << 20) != 0
    }
}

/// PLATFORM_INFO: what was enabled on the platform when the report was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// SMT is enabled on the host.
    pub fn smt_enabled(self) -> bool {
        self.0 & 1 != 0
    }
    /// Transparent SME is enabled.
    pub fn tsme_enabled(self) -> bool {
        self.0 & 2 != 0
    }
}

/// Which key signed the report (REPORT flags, SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SigningKey {
    /// The chip-unique Versioned Chip Endorsement Key.
    Vcek,
    /// A Versioned Loaded Endorsement Key provisioned by a cloud provider.
    Vlek,
    /// The report is not signed.
    None,
}

/// The firmware version (major.minor, build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

/// A parsed, *unverified* SEV-SNP attestation report. Nothing in it can be
/// trusted until [`SnpReport::verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport {
    raw: Vec<u8>,
    /// Report format version (2, 3 or 5).
    pub version: u32,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Launch policy.
    pub policy: GuestPolicy,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// TCB the platform is running.
    pub current_tcb: TcbVersion,
    /// Platform state.
    pub platform_info: PlatformInfo,
    /// Whether AUTHOR_KEY_DIGEST is present.
    pub author_key_enabled: bool,
    /// Whether CHIP_ID was masked to zero by the guest's request.
    pub chip_id_masked: bool,
    /// Which key signed this report.
    pub signing_key: SigningKey,
    /// Guest-provided data bound into the report.
    pub report_data: ReportData,
    /// Launch measurement.
    pub measurement: Measurement,
    /// Host-provided data.
    pub host_data: HostData,
    /// SHA-384 of the ID key that signed the ID block.
    pub id_key_digest: Measurement,
    /// SHA-384 of the author key.
    pub author_key_digest: Measurement,
    /// Report ID of the guest.
    pub report_id: [u8; 32],
    /// Report ID of the migration agent.
    pub report_id_ma: [u8; 32],
    /// TCB used to derive the VCEK that signed this report.
    pub reported_tcb: TcbVersion,
    /// CPUID family, model and stepping (v3 and later).
    pub cpuid: Option<(u8, u8, u8)>,
    /// The processor generation named by CPUID (v3 and later).
    pub product: Option<Product>,
    /// Unique chip identifier.
    pub chip_id: ChipId,
    /// Committed TCB.
    pub committed_tcb: TcbVersion,
    /// Running firmware version.
    pub current_version: FirmwareVersion,
    /// Committed firmware version.
    pub committed_version: FirmwareVersion,
    /// TCB at launch.
    pub launch_tcb: TcbVersion,
    /// Mitigation vector at launch (v5).
    pub launch_mit_vector: Option<u64>,
    /// Current mitigation vector (v5).
    pub current_mit_vector: Option<u64>,
    /// Signature R, big-endian.
    pub(crate) signature_r: [u8; 48],
    /// Signature S, big-endian.
    pub(crate) signature_s: [u8; 48],
}

impl SnpReport {
    /// Parses the 1184-byte report strictly: known versions only, every
    /// reserved field zero, the must-be-one policy bit set, no trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < REPORT_LEN {
            return Err(Error::Truncated {
                structure: STRUCTURE,
                needed: REPORT_LEN,
                found: bytes.len(),
            });
        }
        let mut c = Cursor::new(bytes, STRUCTURE);
        let version = c.u32()?;
        if !matches!(version, 2 | 3 | 5) {
            return Err(Error::UnsupportedVersion {
                structure: STRUCTURE,
                found: version,
                supported: "2, 3, 5",
            });
        }
        let guest_svn = c.u32()?;
        let policy_raw = c.u64()?;
        // Bit 17 is reserved and must be one; bits 63:26 must be zero.
        if policy_raw & (1 << 17) == 0 || policy_raw >> 26 != 0 {
            return Err(Error::ReservedNotZero {
                structure: STRUCTURE,
                offset: 0x08,
            });
        }
        let family_id = c.array()?;
        let image_id = c.array()?;
        let vmpl = c.u32()?;
        let signature_algo = c.u32()?;
        if signature_algo != ECDSA_P384_SHA384 {
            return Err(Error::UnexpectedAlgorithm {
                which: "SNP report".into(),
                expected: "SIGNATURE_ALGO 1 (ECDSA P-384 with SHA-384)",
                found: signature_algo.to_string(),
            });
        }
        let current_tcb_raw = c.u64()?;
        // PLATFORM_INFO bits are state flags that newer firmware keeps adding
        // (real Turin hardware sets bit 6, which older ABI revisions call
        // reserved), so they are reported, not enforced.
        let platform_info = c.u64()?;
        let flags = c.u32()?;
        if flags >> 5 != 0 {
            return Err(Error::ReservedNotZero {
                structure: STRUCTURE,
                offset: 0x48,
            });
        }
        let signing_key = match (flags >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => {
                return Err(Error::InvalidField {
                    structure: STRUCTURE,
                    field: "SIGNING_KEY",
                    detail: format!("reserved value {other}"),
                })
            }
        };
        c.reserved(4)?;
        let report_data = ReportData(c.array()?);
        let measurement = Measurement(c.array()?);
        let host_data = HostData(c.array()?);
        let id_key_digest = Measurement(c.array()?);
        let author_key_digest = Measurement(c.array()?);
        let report_id = c.array()?;
        let report_id_ma = c.array()?;
        let reported_tcb_raw = c.u64()?;
        let (cpuid, product) = if version >= 3 {
            let family = c.u8()?;
            let model = c.u8()?;
            let stepping = c.u8()?;
            c.reserved(0x1A0 - 0x18B)?;
            let product =
                Product::from_cpuid(family, model).ok_or_else(|| Error::InvalidField {
                    structure: STRUCTURE,
                    field: "CPUID",
                    detail: format!(
                        "family {family:#x} model {model:#x} is not a known SEV-SNP processor"
                    ),
                })?;
            (Some((family, model, stepping)), Some(product))
        } else {
            c.reserved(0x1A0 - 0x188)?;
            (None, None)
        };
        // Version 2 reports come only from Milan and Genoa, which share a layout.
        let layout = product.map_or(TcbLayout::MilanGenoa, Product::tcb_layout);
        let chip_id = ChipId(c.array()?);
        let committed_tcb_raw = c.u64()?;
        let current_version = read_version(&mut c)?;
        let committed_version = read_version(&mut c)?;
        let launch_tcb_raw = c.u64()?;
        let (launch_mit_vector, current_mit_vector) = if version >= 5 {
            let launch = c.u64()?;
            let current = c.u64()?;
            c.reserved(SIGNED_LEN - 0x208)?;
            (Some(launch), Some(current))
        } else {
            c.reserved(SIGNED_LEN - 0x1F8)?;
            (None, None)
        };
        let signature_r = read_le_scalar(&mut c)?;
        let signature_s = read_le_scalar(&mut c)?;
        c.reserved(REPORT_LEN - 0x330)?;
        c.finish()?;

        Ok(Self {
            raw: bytes.to_vec(),
            version,
            guest_svn,
            policy: GuestPolicy(policy_raw),
            family_id,
            image_id,
            vmpl,
            current_tcb: TcbVersion::decode(current_tcb_raw, layout, 0x38)?,
            platform_info: PlatformInfo(platform_info),
            author_key_enabled: flags & 1 != 0,
            chip_id_masked: flags & 2 != 0,
            signing_key,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb: TcbVersion::decode(reported_tcb_raw, layout, 0x180)?,
            cpuid,
            product,
            chip_id,
            committed_tcb: TcbVersion::decode(committed_tcb_raw, layout, 0x1E0)?,
            current_version,
            committed_version,
            launch_tcb: TcbVersion::decode(launch_tcb_raw, layout, 0x1F0)?,
            launch_mit_vector,
            current_mit_vector,
            signature_r,
            signature_s,
        })
    }

    /// The report exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the signature covers, exactly as received.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or_default()
    }
}

fn read_version(c: &mut Cursor<'_>) -> Result<FirmwareVersion> {
    let build = c.u8()?;
    let minor = c.u8()?;
    let major = c.u8()?;
    c.reserved(1)?;
    Ok(FirmwareVersion {
        major,
        minor,
        build,
    })
}

/// Reads a 72-byte little-endian signature component whose value must fit
/// the 48 bytes of a P-384 scalar; returns it big-endian.
fn read_le_scalar(c: &mut Cursor<'_>) -> Result<[u8; 48]> {
    let mut le: [u8; 48] = c.array()?;
    c.reserved(72 - 48)?;
    le.reverse();
    Ok(le)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILAN: &[u8] = include_bytes!("../../tests/vectors/snp/milan-v2-virtee/report.bin");
    const TURIN: &[u8] = include_bytes!("../../tests/vectors/snp/turin-v5-oak/report.bin");

    #[test]
    fn parses_milan_v2() {
        let r = SnpReport::parse(MILAN).unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.policy.0, 0x30000);
        assert!(r.policy.smt_allowed() && !r.policy.debug_allowed());
        assert_eq!(r.product, None);
        assert_eq!(
            (
                r.reported_tcb.bootloader,
                r.reported_tcb.tee,
                r.reported_tcb.snp,
                r.reported_tcb.microcode
            ),
            (3, 0, 8, 115)
        );
        assert_eq!(r.reported_tcb.fmc, None);
        assert!(r.chip_id.to_string().starts_with("d49554ec717f4e5b"));
    }

    #[test]
    fn parses_turin_v5_with_its_tcb_layout() {
        let r = SnpReport::parse(TURIN).unwrap();
        assert_eq!(r.version, 5);
        assert_eq!(r.cpuid, Some((0x1A, 0x02, 0x01)));
        assert_eq!(r.product, Some(Product::Turin));
        let t = r.reported_tcb;
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(0), 1, 0, 2, 71)
        );
        assert_eq!(
            &r.chip_id.0[..8],
            &hex::decode("3b42092f69c656d3").unwrap()[..]
        );
        assert!(r.launch_mit_vector.is_some());
    }

    #[test]
    fn rejects_bad_versions_reserved_bytes_and_lengths() {
        let mut v4 = MILAN.to_vec();
        v4[0] = 4;
        assert_eq!(
            SnpReport::parse(&v4),
            Err(Error::UnsupportedVersion {
                structure: STRUCTURE,
                found: 4,
                supported: "2, 3, 5"
            })
        );
        for offset in [0x4C, 0x190, 0x1EB, 0x1EF, 0x250, 0x2D0, 0x320, 0x400] {
            let mut bad = MILAN.to_vec();
            bad[offset] ^= 1;
            assert_eq!(
                SnpReport::parse(&bad),
                Err(Error::ReservedNotZero {
                    structure: STRUCTURE,
                    offset
                }),
                "offset {offset:#x}"
            );
        }
        let mut long = MILAN.to_vec();
        long.push(0);
        assert_eq!(
            SnpReport::parse(&long),
            Err(Error::TrailingData {
                structure: STRUCTURE,
                extra: 1
            })
        );
        assert_eq!(
            SnpReport::parse(&MILAN[..100]),
            Err(Error::Truncated {
                structure: STRUCTURE,
                needed: REPORT_LEN,
                found: 100
            })
        );
    }

    #[test]
    fn policy_must_be_one_bit_and_tcb_reserved_bytes_are_checked() {
        let mut bad = MILAN.to_vec();
        bad[0x0A] &= !0x02; // clear policy bit 17
        assert_eq!(
            SnpReport::parse(&bad),
            Err(Error::ReservedNotZero {
                structure: STRUCTURE,
                offset: 0x08
            })
        );
        let mut bad = MILAN.to_vec();
        bad[0x180 + 3] = 1; // reserved byte of reported_tcb on Milan
        assert_eq!(
            SnpReport::parse(&bad),
            Err(Error::ReservedNotZero {
                structure: STRUCTURE,
                offset: 0x183
            })
        );
    }
}
