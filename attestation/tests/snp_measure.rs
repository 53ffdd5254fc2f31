//! The SEV-SNP launch digest against the reference implementation: every
//! case in tests/fixtures/measure/golden.toml is an output of virtee's
//! sev-snp-measure 0.0.13 with its exact command line (PROVENANCE.md there),
//! and every one must be reproduced. Then the vectors of sev-snp-measure's
//! own test suite, and malformed inputs, each with its exact error.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use cloister_attestation::measure::{
    snp_firmware_digest, snp_launch_digest, snp_launch_digest_from_firmware_digest, CpuSignature,
    KernelHashes, MeasureError, OvmfFirmware, SectionKind, SnpLaunchConfig, VcpuType, VmmType,
};
use cloister_attestation::types::Measurement;
use serde::Deserialize;
use sha2::{Digest, Sha256};

const AMDSEV: &[u8] = include_bytes!("fixtures/measure/ovmf_AmdSev_suffix.bin");
const OVMFX64: &[u8] = include_bytes!("fixtures/measure/ovmf_OvmfX64_suffix.bin");
const BOOKWORM_TAIL: &[u8] =
    include_bytes!("fixtures/measure/debian-bookworm-2022.11-OVMF.fd.tail");
const GOLDEN: &str = include_str!("fixtures/measure/golden.toml");

#[derive(Deserialize)]
struct Golden {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    firmware: String,
    firmware_digest: Option<Measurement>,
    full_firmware_sha256: Option<String>,
    vcpus: u32,
    vcpu_type: Option<String>,
    vmm: String,
    guest_features: String,
    kernel: Option<String>,
    initrd: Option<String>,
    append: Option<String>,
    #[allow(dead_code)] // documentation: how the digest was produced
    command: String,
    digest: Measurement,
}

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/measure", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden() -> Vec<Case> {
    toml::from_str::<Golden>(GOLDEN).unwrap().case
}

fn config(case: &Case) -> SnpLaunchConfig {
    let kernel_hashes = case.kernel.as_ref().map(|k| {
        let initrd = case.initrd.as_ref().map(|i| fixture(i));
        KernelHashes::new(&fixture(k), initrd.as_deref(), case.append.as_deref())
    });
    SnpLaunchConfig {
        vcpus: case.vcpus,
        vcpu_signature: case
            .vcpu_type
            .as_ref()
            .map(|t| t.parse::<VcpuType>().unwrap().signature()),
        vmm: case.vmm.parse().unwrap(),
        guest_features: u64::from_str_radix(case.guest_features.trim_start_matches("0x"), 16)
            .unwrap(),
        kernel_hashes,
    }
}

#[test]
fn golden_digests_match_sev_snp_measure() {
    let cases = golden();
    assert!(cases.len() >= 50, "golden.toml lost cases: {}", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let image = fixture(&case.firmware);
        let firmware = OvmfFirmware::parse(&image).unwrap();
        let config = config(case);
        let found = match &case.firmware_digest {
            Some(seed) => snp_launch_digest_from_firmware_digest(seed, &firmware, &config),
            None => snp_launch_digest(&firmware, &config),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if found != case.digest {
            mismatches.push(format!(
                "{}: expected {}, found {found}",
                case.name, case.digest
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Every vCPU type sev-snp-measure 0.0.13 accepts has a golden case.
#[test]
fn golden_cases_cover_every_vcpu_type_and_vmm() {
    let cases = golden();
    for t in VcpuType::ALL {
        assert!(
            cases
                .iter()
                .any(|c| c.vcpu_type.as_deref() == Some(t.name())),
            "no golden case for {t}"
        );
    }
    for vmm in ["QEMU", "ec2", "gce"] {
        assert!(
            cases.iter().any(|c| c.vmm == vmm),
            "no golden case for {vmm}"
        );
    }
    for n in [1, 2, 4, 64] {
        assert!(cases.iter().any(|c| c.vcpus == n));
    }
    assert!(cases
        .iter()
        .any(|c| c.kernel.is_some() && c.append.is_some()));
}

/// Whole Debian images, when the environment names one: set
/// CLOISTER_TEST_OVMF to an unpacked `usr/share/ovmf/OVMF.fd` of a Debian
/// ovmf package listed in fixtures/measure/PROVENANCE.md.
#[test]
fn debian_ovmf_from_env() {
    let Some(path) = std::env::var_os("CLOISTER_TEST_OVMF") else {
        eprintln!("skipped: set CLOISTER_TEST_OVMF to a Debian OVMF.fd or OVMF.amdsev.fd to measure a whole image");
        return;
    };
    let image = std::fs::read(Path::new(&path)).unwrap();
    let sha256 = hex::encode(Sha256::digest(&image));
    let firmware = OvmfFirmware::parse(&image).unwrap();
    let cases: Vec<Case> = golden()
        .into_iter()
        .filter(|c| c.full_firmware_sha256.as_deref() == Some(sha256.as_str()))
        .collect();
    assert!(
        !cases.is_empty(),
        "{} (SHA-256 {sha256}) is not an image golden.toml has cases for",
        Path::new(&path).display()
    );
    for case in &cases {
        assert_eq!(
            snp_firmware_digest(&firmware).unwrap(),
            case.firmware_digest.unwrap()
        );
        assert_eq!(
            snp_launch_digest(&firmware, &config(case)).unwrap(),
            case.digest,
            "{}",
            case.name
        );
    }
    // Debian's stock OVMF.fd has SNP metadata but no kernel-hashes page;
    // its ovmf-amdsev build has one.
    let mut with_kernel = config(&cases[0]);
    with_kernel.kernel_hashes = Some(KernelHashes::new(b"kernel", None, None));
    let measured = snp_launch_digest(&firmware, &with_kernel);
    if firmware.supports_kernel_hashes() {
        assert!(measured.is_ok(), "{measured:?}");
    } else {
        assert_eq!(measured, Err(MeasureError::KernelHashesUnsupported));
    }
    eprintln!(
        "checked {} cases against {}",
        cases.len(),
        Path::new(&path).display()
    );
}

fn m(hex: &str) -> Measurement {
    hex.parse().unwrap()
}

/// Expected values from sev-snp-measure's tests/test_guest.py (virtee,
/// commit 8f2b337e38bc83f87cd30f3253cdfe8e3e12cc3a), where kernel and initrd
/// are /dev/null.
#[test]
fn sev_snp_measure_test_suite_vectors() {
    let firmware = OvmfFirmware::parse(AMDSEV).unwrap();
    let empty = |append: Option<&str>| Some(KernelHashes::new(b"", Some(b""), append));
    let qemu = |vcpus, guest_features, kernel_hashes| SnpLaunchConfig {
        guest_features,
        kernel_hashes,
        ..SnpLaunchConfig::qemu(vcpus, VcpuType::EpycV4)
    };
    // test_snp_ovmf_hash_full_default
    let seed = m("086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74");
    assert_eq!(snp_firmware_digest(&firmware).unwrap(), seed);
    let cases = [
        // test_snp_default
        (qemu(1, 0x21, empty(Some("console=ttyS0 loglevel=7"))),
         "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        // test_snp_guest_feature_snp_only
        (qemu(1, 0x1, empty(Some("console=ttyS0 loglevel=7"))),
         "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
        // test_snp_ovmf_hash_gen_default (seeded, below) and unseeded alike
        (qemu(1, 0x21, empty(Some(""))),
         "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198"),
        // test_snp_ovmf_hash_gen_feature_snp_only
        (qemu(1, 0x1, empty(None)),
         "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"),
        // test_snp_without_kernel_default
        (qemu(1, 0x21, None),
         "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
        // test_snp_without_kernel_feature_snp_only
        (qemu(1, 0x1, None),
         "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        // test_snp_with_multiple_vcpus_default
        (qemu(4, 0x21, empty(Some(""))),
         "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
        // test_snp_with_multiple_vcpus_feature_snp_only
        (qemu(4, 0x1, empty(Some(""))),
         "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
        // test_snp_ec2_default
        (SnpLaunchConfig { vmm: VmmType::Ec2, ..qemu(1, 0x21, empty(Some(""))) },
         "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb"),
        // test_snp_ec2_feature_snp_only
        (SnpLaunchConfig { vmm: VmmType::Ec2, ..qemu(1, 0x1, empty(Some(""))) },
         "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056"),
        // test_snp_gce_default (no vCPU signature)
        (SnpLaunchConfig { vmm: VmmType::Gce, vcpu_signature: None, ..qemu(1, 0x1, empty(Some(""))) },
         "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"),
        // test_snp_gce_with_multiple_vcpus_default
        (SnpLaunchConfig { vmm: VmmType::Gce, vcpu_signature: None, ..qemu(4, 0x1, empty(Some(""))) },
         "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d"),
    ];
    for (config, expected) in &cases {
        assert_eq!(
            snp_launch_digest(&firmware, config).unwrap(),
            m(expected),
            "{config:?}"
        );
        assert_eq!(
            snp_launch_digest_from_firmware_digest(&seed, &firmware, config).unwrap(),
            m(expected)
        );
    }
    // test_snp_with_ovmfx64_without_default / _without_kernel_feature_snp_only
    let x64 = OvmfFirmware::parse(OVMFX64).unwrap();
    assert_eq!(
        snp_launch_digest(&x64, &qemu(1, 0x21, None)).unwrap(),
        m("28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385")
    );
    assert_eq!(
        snp_launch_digest(&x64, &qemu(1, 0x1, None)).unwrap(),
        m("da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005")
    );
    // test_snp_with_ovmfx64_and_kernel_should_fail
    assert_eq!(
        snp_launch_digest(&x64, &qemu(1, 0x21, empty(Some("")))),
        Err(MeasureError::KernelHashesUnsupported)
    );
}

#[test]
fn metadata_is_parsed_as_ovmf_declares_it() {
    let firmware = OvmfFirmware::parse(AMDSEV).unwrap();
    assert_eq!(firmware.sev_es_reset_eip().unwrap(), 0x0080_b004);
    assert_eq!(firmware.sev_hashes_table_gpa().unwrap(), Some(0x0081_0c00));
    assert!(firmware.supports_kernel_hashes());
    let kinds: Vec<SectionKind> = firmware
        .sections()
        .unwrap()
        .iter()
        .map(|s| s.kind)
        .collect();
    use SectionKind::*;
    assert_eq!(
        kinds,
        [
            SnpSecMem,
            SnpSecMem,
            SnpSecrets,
            Cpuid,
            SvsmCaa,
            SnpKernelHashes,
            SnpSecMem
        ]
    );
    let debian = OvmfFirmware::parse(BOOKWORM_TAIL).unwrap();
    assert_eq!(debian.sev_hashes_table_gpa().unwrap(), None);
    assert!(!debian.supports_kernel_hashes());
}

// ---- malformed inputs and parameters: each with its exact error ----

fn qemu1() -> SnpLaunchConfig {
    SnpLaunchConfig::qemu(1, VcpuType::EpycMilan)
}

#[test]
fn truncated_firmware() {
    assert_eq!(
        OvmfFirmware::parse(&AMDSEV[..10]).unwrap_err(),
        MeasureError::FirmwareTruncated {
            structure: "OVMF footer table",
            needed: 50,
            found: 10
        }
    );
    // The tail without the start of the SEV metadata (0x554 bytes from the end).
    let tail = &AMDSEV[AMDSEV.len() - 0x500..];
    assert!(matches!(
        OvmfFirmware::parse(tail).unwrap_err(),
        MeasureError::FirmwareTruncated {
            structure: "SEV metadata",
            ..
        }
    ));
    // The end cut off: the footer table is no longer where it must be.
    assert_eq!(
        OvmfFirmware::parse(&AMDSEV[..AMDSEV.len() - 1]).unwrap_err(),
        MeasureError::NoFooterTable
    );
    // Not a whole number of pages: cannot be mapped.
    let mut odd = vec![0u8; 1];
    odd.extend_from_slice(AMDSEV);
    let firmware = OvmfFirmware::parse(&odd).unwrap();
    assert_eq!(
        snp_launch_digest(&firmware, &qemu1()).unwrap_err(),
        MeasureError::FirmwareSize {
            size: 4097,
            detail: "not a non-zero multiple of 4096"
        }
    );
}

#[test]
fn firmware_without_footer_table() {
    assert_eq!(
        OvmfFirmware::parse(&[0u8; 8192]).unwrap_err(),
        MeasureError::NoFooterTable
    );
}

/// The footer table's own entry: 50 bytes before the end.
const FOOTER: usize = 4096 - 50;

#[test]
fn malformed_footer_table() {
    // Footer size smaller than its header.
    let mut bad = AMDSEV.to_vec();
    bad[FOOTER..FOOTER + 2].copy_from_slice(&17u16.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidFooterTable { .. }
    ));
    // Footer size reaching before the start of the image.
    bad[FOOTER..FOOTER + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidFooterTable { .. }
    ));
    // The last entry (just before the footer) claiming more than the table.
    let mut bad = AMDSEV.to_vec();
    bad[FOOTER - 18..FOOTER - 16].copy_from_slice(&0x0fffu16.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidFooterTable { .. }
    ));
}

#[test]
fn malformed_metadata() {
    let start = AMDSEV.len() - 0x554;
    let mut bad = AMDSEV.to_vec();
    bad[start..start + 4].copy_from_slice(b"XSEV");
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidMetadata {
            field: "signature",
            ..
        }
    ));
    let mut bad = AMDSEV.to_vec();
    bad[start + 8..start + 12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidMetadata {
            field: "version",
            expected: "1".into(),
            found: "2".into()
        }
    );
    let mut bad = AMDSEV.to_vec();
    bad[start + 4..start + 8].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidMetadata { field: "size", .. }
    ));
    let mut bad = AMDSEV.to_vec();
    bad[start + 4..start + 8].copy_from_slice(&0x1000u32.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::FirmwareTruncated {
            structure: "SEV metadata",
            ..
        }
    ));
    let mut bad = AMDSEV.to_vec();
    bad[start + 12..start + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::InvalidMetadata {
            field: "num_items",
            ..
        }
    ));
    // Third section's type (after the 16-byte header, 12 bytes a section).
    let mut bad = AMDSEV.to_vec();
    let ty = start + 16 + 2 * 12 + 8;
    bad[ty..ty + 4].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        OvmfFirmware::parse(&bad).unwrap_err(),
        MeasureError::UnknownSectionType { index: 2, found: 7 }
    );
    // A section of 4 GiB - 4 KiB: refused before any hashing.
    let mut bad = AMDSEV.to_vec();
    bad[start + 20..start + 24].copy_from_slice(&0xffff_f000u32.to_le_bytes());
    let firmware = OvmfFirmware::parse(&bad).unwrap();
    assert!(matches!(
        snp_launch_digest(&firmware, &qemu1()).unwrap_err(),
        MeasureError::SectionsTooLarge {
            max: 0x400_0000,
            ..
        }
    ));
    // A section reaching above 4 GiB.
    let mut bad = AMDSEV.to_vec();
    bad[start + 16..start + 20].copy_from_slice(&0xffff_f000u32.to_le_bytes());
    let firmware = OvmfFirmware::parse(&bad).unwrap();
    assert!(matches!(
        snp_launch_digest(&firmware, &qemu1()).unwrap_err(),
        MeasureError::InvalidSection {
            detail: "ends above 4 GiB",
            ..
        }
    ));
    // First section's size not a page multiple.
    let mut bad = AMDSEV.to_vec();
    bad[start + 20..start + 24].copy_from_slice(&0x1001u32.to_le_bytes());
    let firmware = OvmfFirmware::parse(&bad).unwrap();
    assert_eq!(
        snp_launch_digest(&firmware, &qemu1()).unwrap_err(),
        MeasureError::InvalidSection {
            kind: SectionKind::SnpSecMem,
            gpa: 0x0080_0000,
            size: 0x1001,
            detail: "not a whole number of pages"
        }
    );
}

#[test]
fn kernel_with_firmware_lacking_hashes_section() {
    let mut config = qemu1();
    config.kernel_hashes = Some(KernelHashes::new(b"kernel", Some(b"initrd"), Some("quiet")));
    for image in [OVMFX64, BOOKWORM_TAIL] {
        let firmware = OvmfFirmware::parse(image).unwrap();
        assert_eq!(
            snp_launch_digest(&firmware, &config),
            Err(MeasureError::KernelHashesUnsupported)
        );
    }
}

#[test]
fn launch_parameters_out_of_range() {
    let firmware = OvmfFirmware::parse(AMDSEV).unwrap();
    for vcpus in [0, 4097, u32::MAX] {
        assert_eq!(
            snp_launch_digest(&firmware, &SnpLaunchConfig::qemu(vcpus, VcpuType::Epyc)),
            Err(MeasureError::InvalidVcpuCount {
                found: vcpus,
                max: 4096
            })
        );
    }
    assert!(snp_launch_digest(&firmware, &SnpLaunchConfig::qemu(4096, VcpuType::Epyc)).is_ok());
    assert!(matches!(
        "EPYC-Bergamo".parse::<VcpuType>(),
        Err(MeasureError::UnknownVcpuType { found, supported })
            if found == "EPYC-Bergamo" && supported.contains("EPYC-Milan-v2")
    ));
    let mut config = qemu1();
    config.vcpu_signature = None;
    assert_eq!(
        snp_launch_digest(&firmware, &config),
        Err(MeasureError::VcpuTypeRequired { vmm: VmmType::Qemu })
    );
    let mut config = qemu1();
    config.guest_features = 0x20;
    assert_eq!(
        snp_launch_digest(&firmware, &config),
        Err(MeasureError::GuestFeaturesNotSnp { found: 0x20 })
    );
}

#[test]
fn firmware_without_snp_metadata_or_reset_vector() {
    // Remove the metadata entry by renaming its GUID: the table still parses.
    let guid_metadata = [0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47];
    let at = AMDSEV.windows(8).position(|w| w == guid_metadata).unwrap();
    let mut bad = AMDSEV.to_vec();
    bad[at] ^= 0xff;
    let firmware = OvmfFirmware::parse(&bad).unwrap();
    assert!(firmware.sections().is_none());
    assert_eq!(
        snp_launch_digest(&firmware, &qemu1()),
        Err(MeasureError::NoSnpMetadata)
    );
    let guid_reset = [0xde, 0x71, 0xf7, 0x00, 0x7e, 0x1a, 0xcb, 0x4f];
    let at = AMDSEV.windows(8).position(|w| w == guid_reset).unwrap();
    let mut bad = AMDSEV.to_vec();
    bad[at] ^= 0xff;
    let firmware = OvmfFirmware::parse(&bad).unwrap();
    assert!(matches!(
        snp_launch_digest(&firmware, &qemu1()),
        Err(MeasureError::MissingFooterEntry {
            entry: "SEV-ES reset block",
            ..
        })
    ));
    // A zero AP reset vector is fine for one vCPU, not for more.
    let reset_data = at - 4 - 2; // u32 eip, u16 size, then the GUID
    let mut zero_eip = AMDSEV.to_vec();
    zero_eip[reset_data..reset_data + 4].copy_from_slice(&[0; 4]);
    let firmware = OvmfFirmware::parse(&zero_eip).unwrap();
    assert!(snp_launch_digest(&firmware, &qemu1()).is_ok());
    assert_eq!(
        snp_launch_digest(&firmware, &SnpLaunchConfig::qemu(2, VcpuType::Epyc)),
        Err(MeasureError::NoApResetVector { vcpus: 2 })
    );
}

/// No input makes the parser or the digest panic: every tail of the image,
/// and every single-byte corruption of its last 1.5 KiB.
#[test]
fn no_panic_on_any_tail_or_byte_flip() {
    let config = SnpLaunchConfig {
        kernel_hashes: Some(KernelHashes::new(b"k", None, None)),
        ..SnpLaunchConfig::qemu(2, VcpuType::EpycGenoa)
    };
    let seed = Measurement([0; 48]);
    let try_all = |image: &[u8]| {
        if let Ok(firmware) = OvmfFirmware::parse(image) {
            let _ = snp_launch_digest(&firmware, &config);
            let _ = snp_launch_digest_from_firmware_digest(&seed, &firmware, &config);
        }
    };
    for start in 0..=AMDSEV.len() {
        try_all(&AMDSEV[start..]);
        try_all(&AMDSEV[..start]);
    }
    let mut image = AMDSEV.to_vec();
    for i in AMDSEV.len() - 1536..AMDSEV.len() {
        for flip in [0x01, 0x80, 0xff] {
            image[i] ^= flip;
            try_all(&image);
            image[i] ^= flip;
        }
    }
}

#[test]
fn cpu_signature_from_family_model_stepping() {
    assert_eq!(
        CpuSignature::from_family_model_stepping(25, 1, 1),
        VcpuType::EpycMilanV2.signature()
    );
    assert_eq!(
        CpuSignature::from_family_model_stepping(6, 0x55, 4).0,
        0x0005_0654
    );
}
