//! TDX MRTD from TDVF images and RTMR[1]/[2] of a direct boot, checked
//! against independent implementations
//! (fixtures and their provenance: `tests/fixtures/measure/tdx/PROVENANCE.md`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use cloister_attestation::measure::{
    kernel_authenticode_sha384, kernel_measures_into_rtmrs, tdx_direct_boot_rtmrs, tdx_mrtd,
    MeasureError, TdvfFirmware, TdvfSectionKind, TdxDirectBoot, ATTRIBUTE_MR_EXTEND,
};

const DEBIAN_TDVF: &[u8] =
    include_bytes!("fixtures/measure/tdx/debian-sid-2026.08-OVMF.inteltdx.ms.fd");
const OVMF_SHAPE: &[u8] = include_bytes!("fixtures/measure/tdx/synthetic-ovmf-shape.fd");
const TWO_BFV: &[u8] = include_bytes!("fixtures/measure/tdx/synthetic-two-bfv.fd");
const BFV_ONLY: &[u8] = include_bytes!("fixtures/measure/tdx/synthetic-bfv-only.fd");
/// The last 4 KiB of Debian trixie's generic OVMF.fd, whose reset vector
/// carries TDVF metadata for the whole 4 MiB image.
const TRIXIE_TAIL: &[u8] = include_bytes!("fixtures/measure/debian-trixie-2025.02-OVMF.fd.tail");

fn mrtd(image: &[u8]) -> Result<String, MeasureError> {
    TdvfFirmware::parse(image).and_then(|f| tdx_mrtd(&f).map(|m| m.to_string()))
}

/// Debian's TDVF: the value dstack-mr, Fraunhofer AISEC's
/// calculate-tdx-mrs and td-shim's td_shim_tee_info_hash.py all print.
#[test]
fn debian_tdvf_mrtd_matches_three_reference_implementations() {
    assert_eq!(
        mrtd(DEBIAN_TDVF).unwrap(),
        "a7a1f751abc454f9cbab198ca8d2edb2821935df525c74182b5e776cb0929e8c\
         59aefecce725b0d08a5e9d3d3183bd08"
    );
}

#[test]
fn debian_tdvf_sections_are_read_as_qemu_reads_them() {
    let firmware = TdvfFirmware::parse(DEBIAN_TDVF).unwrap();
    let summary: Vec<_> = firmware
        .sections()
        .iter()
        .map(|s| {
            (
                s.kind,
                s.memory_address,
                s.memory_data_size,
                s.extends_mrtd(),
            )
        })
        .collect();
    use TdvfSectionKind::*;
    assert_eq!(
        summary,
        [
            (Bfv, 0xffc8_4000, 0x37_c000, true),
            (Cfv, 0xffc0_0000, 0x8_4000, false),
            (TempMem, 0x81_0000, 0x1_0000, false),
            (TempMem, 0x80_b000, 0x2000, false),
            (TdHob, 0x80_9000, 0x2000, false),
            (TempMem, 0x80_0000, 0x6000, false),
        ]
    );
}

/// Synthetic images, measured by td_shim_tee_info_hash.py and dstack-mr
/// (both print these values).
#[test]
fn synthetic_images_match_the_references() {
    for (image, expected) in [
        (
            OVMF_SHAPE,
            "10bdf3bbe8537dfdc3e83c7647a3aae010822a50dcfa90dd3d680d92ef3485d0\
             6569918fcc2dbee612693a58f9a22fa3",
        ),
        (
            TWO_BFV,
            "55e8658888d3d43bc39526bca9eff3b43bf106b6094448512f828e2e9bdc550e\
             de9790ceb1a322f309168c21593f7f9f",
        ),
        (
            BFV_ONLY,
            "5e48445c84f72a08b57c906b05a20db088901b32411ddc0a4676d2742bedb6d2\
             99e193d3abe62b5f67bcb70d7b207655",
        ),
    ] {
        assert_eq!(mrtd(image).unwrap(), expected);
    }
}

/// The configuration volume's pages are added, not extended: the variable
/// store does not change MRTD; the code does.
#[test]
fn only_extended_sections_contribute_their_contents() {
    let reference = mrtd(OVMF_SHAPE).unwrap();
    let mut cfv_changed = OVMF_SHAPE.to_vec();
    cfv_changed[0x10] ^= 1; // CFV is the first page
    assert_eq!(mrtd(&cfv_changed).unwrap(), reference);
    let mut bfv_changed = OVMF_SHAPE.to_vec();
    bfv_changed[0x1010] ^= 1; // BFV starts at the second page
    assert_ne!(mrtd(&bfv_changed).unwrap(), reference);
}

// In the synthetic OVMF-shaped image the descriptor is 0x800 bytes before
// the end; sections (32 bytes each) follow its 16-byte header, in the order
// CFV, BFV, TempMem, TempMem, TdHob, TempMem.
const DESCRIPTOR: usize = 0x4000 - 0x800;
fn section(index: usize, field: usize) -> usize {
    DESCRIPTOR + 16 + 32 * index + field
}
const DATA_OFFSET: usize = 0;
const RAW_SIZE: usize = 4;
const GPA: usize = 8;
const MEM_SIZE: usize = 16;
const TYPE: usize = 24;
const ATTRIBUTES: usize = 28;

fn patched(edits: &[(usize, &[u8])]) -> Vec<u8> {
    let mut image = OVMF_SHAPE.to_vec();
    for (at, bytes) in edits {
        image[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    image
}

fn refusal(edits: &[(usize, &[u8])]) -> MeasureError {
    mrtd(&patched(edits)).unwrap_err()
}

#[test]
fn malformed_metadata_is_refused_with_a_specific_error() {
    // The unpatched image is fine.
    assert!(mrtd(&patched(&[])).is_ok());

    assert!(matches!(
        refusal(&[(DESCRIPTOR, b"TDVX")]),
        MeasureError::InvalidMetadata {
            field: "TDVF signature",
            ..
        }
    ));
    assert!(matches!(
        refusal(&[(DESCRIPTOR + 8, &2u32.to_le_bytes())]),
        MeasureError::InvalidMetadata {
            field: "TDVF version",
            ..
        }
    ));
    assert!(matches!(
        refusal(&[(DESCRIPTOR + 4, &(16u32 + 32 * 5).to_le_bytes())]),
        MeasureError::InvalidMetadata {
            field: "TDVF length",
            ..
        }
    ));
    assert!(matches!(
        refusal(&[
            (DESCRIPTOR + 4, &16u32.to_le_bytes()),
            (DESCRIPTOR + 12, &0u32.to_le_bytes())
        ]),
        MeasureError::InvalidMetadata {
            field: "TDVF length",
            ..
        }
    ));
    // A count so large that the descriptor would run past the image.
    assert!(matches!(
        refusal(&[
            (DESCRIPTOR + 4, &(16u32 + 32 * 1000).to_le_bytes()),
            (DESCRIPTOR + 12, &1000u32.to_le_bytes())
        ]),
        MeasureError::FirmwareTruncated {
            structure: "TDVF metadata",
            ..
        }
    ));
    assert!(matches!(
        refusal(&[(section(2, TYPE), &9u32.to_le_bytes())]),
        MeasureError::UnknownTdvfSectionType { index: 2, found: 9 }
    ));
}

#[test]
fn sections_qemu_could_not_add_exactly_are_refused() {
    let invalid = |edits: &[(usize, &[u8])], index: usize, needle: &str| match refusal(edits) {
        MeasureError::InvalidTdvfSection { index: i, detail } => {
            assert_eq!(i, index, "{detail}");
            assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
        }
        other => panic!("expected InvalidTdvfSection for {needle:?}, got {other:?}"),
    };
    invalid(
        &[(section(2, ATTRIBUTES), &2u32.to_le_bytes())],
        2,
        "PAGE.AUG",
    );
    invalid(
        &[(section(1, ATTRIBUTES), &0x11u32.to_le_bytes())],
        1,
        "unknown attribute bits 0x10",
    );
    invalid(
        &[(section(3, GPA), &0x80_b800u64.to_le_bytes())],
        3,
        "whole 4 KiB pages",
    );
    invalid(
        &[(section(3, MEM_SIZE), &0u64.to_le_bytes())],
        3,
        "non-empty",
    );
    invalid(
        &[(section(1, GPA), &0xffff_ffff_ffff_f000u64.to_le_bytes())],
        1,
        "wraps",
    );
    invalid(
        &[(section(1, MEM_SIZE), &0x4000u64.to_le_bytes())],
        1,
        "only equal sizes",
    );
    invalid(
        &[(section(4, ATTRIBUTES), &ATTRIBUTE_MR_EXTEND.to_le_bytes())],
        4,
        "no MR.EXTEND",
    );
    invalid(
        &[(section(5, RAW_SIZE), &0x1000u32.to_le_bytes())],
        5,
        "no raw data",
    );
    invalid(&[(section(5, TYPE), &5u32.to_le_bytes())], 5, "TD-Shim");
    // Raw data past the end of the image.
    assert!(matches!(
        refusal(&[(section(1, DATA_OFFSET), &0x2000u32.to_le_bytes())]),
        MeasureError::FirmwareTruncated {
            structure: "TDVF section data",
            ..
        }
    ));
}

#[test]
fn layouts_that_cannot_launch_are_refused() {
    let layout = |edits: &[(usize, &[u8])], needle: &str| match refusal(edits) {
        MeasureError::InvalidTdvfLayout { detail } => {
            assert!(detail.contains(needle), "{detail:?} lacks {needle:?}")
        }
        other => panic!("expected InvalidTdvfLayout for {needle:?}, got {other:?}"),
    };
    layout(&[(section(1, TYPE), &1u32.to_le_bytes())], "no BFV");
    layout(
        &[(section(3, TYPE), &2u32.to_le_bytes())],
        "more than one TD HOB",
    );
    // The TD HOB moved onto the first temporary-memory section.
    layout(&[(section(4, GPA), &0x81_1000u64.to_le_bytes())], "overlap");
    assert!(matches!(
        refusal(&[(section(2, MEM_SIZE), &(1u64 << 40).to_le_bytes())]),
        MeasureError::SectionsTooLarge { .. }
    ));
}

#[test]
fn images_that_are_not_tdvf_are_refused() {
    // A tail is not measured as if it were the image.
    assert!(matches!(
        mrtd(TRIXIE_TAIL).unwrap_err(),
        MeasureError::FirmwareTruncated {
            structure: "TDVF section data",
            ..
        }
    ));
    assert!(matches!(
        mrtd(&[0u8; 0x1000]).unwrap_err(),
        MeasureError::NoFooterTable
    ));
    assert!(matches!(
        mrtd(&[]).unwrap_err(),
        MeasureError::FirmwareSize { .. }
    ));
    assert!(matches!(
        mrtd(&OVMF_SHAPE[1..]).unwrap_err(),
        MeasureError::FirmwareSize { .. }
    ));
    let mut no_entry = OVMF_SHAPE.to_vec();
    // The TDX metadata offset entry's GUID ends 50 bytes before the end.
    no_entry[0x4000 - 32 - 18 - 1] ^= 0xff;
    assert!(matches!(
        mrtd(&no_entry).unwrap_err(),
        MeasureError::NoTdvfMetadata
    ));
    let mut far_offset = OVMF_SHAPE.to_vec();
    // The entry's u32 offset is 22 bytes before the end of the entry.
    let at = 0x4000 - 32 - 18 - 22;
    far_offset[at..at + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
    assert!(matches!(
        mrtd(&far_offset).unwrap_err(),
        MeasureError::FirmwareTruncated {
            structure: "TDVF metadata",
            ..
        }
    ));
}

/// Every truncation to whole pages, and every single-byte flip of the
/// metadata page, gives a result or an error: never a panic, never an
/// unbounded loop.
#[test]
fn corrupted_images_never_panic() {
    for image in [OVMF_SHAPE, TWO_BFV] {
        for pages in 0..image.len() / 0x1000 {
            let _ = mrtd(&image[image.len() - pages * 0x1000..]);
            let _ = mrtd(&image[..pages * 0x1000]);
        }
        let last_page = image.len() - 0x1000;
        let mut copy = image.to_vec();
        for at in last_page..image.len() {
            for bit in [0x01, 0x80, 0xff] {
                copy[at] ^= bit;
                let _ = mrtd(&copy);
                copy[at] ^= bit;
            }
        }
    }
}

/// Debian's 6.1 kernel from `$CLOISTER_KERNEL_TREE` (scripts/test fetches
/// and sets it); `None`, with a message, when it is unset.
fn debian_kernel() -> Option<Vec<u8>> {
    let Some(tree) = std::env::var_os("CLOISTER_KERNEL_TREE") else {
        eprintln!("CLOISTER_KERNEL_TREE is not set: skipping (scripts/test sets it)");
        return None;
    };
    let boot = std::path::Path::new(&tree).join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap();
    let kernel = std::fs::read(vmlinuz).unwrap();
    // The tests' figures are for exactly this build (PROVENANCE.md).
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&kernel)),
        "1a29e4786a772be2f50482815d02e2d8537c2ad51f8280a95f29ac630f00cac7",
        "not the pinned vmlinuz-6.1.0-47-amd64"
    );
    Some(kernel)
}

use sha2::Digest as _;

/// The 16 bytes of EFI_CC_MEASUREMENT_PROTOCOL_GUID as `EFI_GUID()` lays
/// them out.
const CC_GUID: [u8; 16] = [
    0x3d, 0x1a, 0x75, 0x96, 0xf4, 0x72, 0xa6, 0x41, 0xa7, 0x94, 0xed, 0x5d, 0x0e, 0x67, 0xae, 0x6b,
];

#[test]
fn kernel_authenticode_matches_the_references() {
    let Some(kernel) = debian_kernel() else {
        return;
    };
    // Fraunhofer's calculate-tdx-mrs (raw-kernel configuration) and
    // dstack-mr's Authenticode both print this.
    assert_eq!(
        kernel_authenticode_sha384(&kernel).unwrap().to_string(),
        "37a8f269e2f792876c88427b7a87017e3d3127385a33d4604d57bc2698bf8356\
         09bb45aaa54871a2462d37ce78e5f913"
    );
}

/// Linux 6.1's EFI stub measures only through a TPM, so in a TD it leaves
/// RTMR[2] untouched; such a kernel is refused rather than measured.
#[test]
fn a_kernel_whose_stub_cannot_measure_into_rtmrs_is_refused() {
    let Some(kernel) = debian_kernel() else {
        return;
    };
    assert!(!kernel_measures_into_rtmrs(&kernel));
    let boot = TdxDirectBoot {
        kernel: &kernel,
        initrd: b"cloister-test",
        cmdline: "console=ttyS0",
    };
    assert_eq!(
        tdx_direct_boot_rtmrs(&boot).unwrap_err(),
        MeasureError::KernelCannotMeasureRtmrs
    );
}

/// The same kernel with the CC protocol's GUID appended as trailing data
/// (Authenticode hashes it), standing in for a 6.9+ stub. The values are
/// what Fraunhofer's calculate-tdx-mrs (RTMR[1], raw kernel, and the
/// command-line event) and dstack-mr (RTMR[2] with its initrd event)
/// print for this file, initrd and command line.
#[test]
fn direct_boot_rtmrs_match_the_references() {
    let Some(mut kernel) = debian_kernel() else {
        return;
    };
    kernel.extend_from_slice(&CC_GUID);
    assert!(kernel_measures_into_rtmrs(&kernel));
    let rtmrs = tdx_direct_boot_rtmrs(&TdxDirectBoot {
        kernel: &kernel,
        initrd: b"cloister-test",
        cmdline: "console=ttyS0",
    })
    .unwrap();
    let digests: Vec<(u8, String)> = rtmrs
        .events
        .iter()
        .map(|e| (e.rtmr, e.digest.to_string()))
        .collect();
    assert_eq!(
        digests,
        [
            (1, "dcc3b31a9543fa838d9cbea9784ba055d3803714de24ba0a59572f041191840b5a66acc3d74fbd839050ca8c60d3ebd6"),
            (1, "77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71"),
            (1, "394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0"),
            (1, "214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0"),
            (1, "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74"),
            (2, "f9f8fb4b0e1dce36006d4f4a67381bc02cb5fb2fe7143f3091569254993fb8edfa15f5b55ebdbf24cb189af4c6dbb8ff"),
            (2, "e15563ac70568d982df14c7ab42c623a7fa2da9cf7cc16be39d4ebd6a6230750d1b87757ed6f37994890341d9b1923c6"),
        ]
        .map(|(r, d)| (r, d.to_owned()))
    );
    assert_eq!(
        rtmrs.rtmr1.to_string(),
        "b36ca99e20a3e4a43dfb676d44defef8d67f8cf346abba0a136d4ef217c27f50\
         143cef34dce73da3d5c3ccd2b50114ab"
    );
    assert_eq!(
        rtmrs.rtmr2.to_string(),
        "99b480b2cb645bafda8872fb3d23f1f662573350d56bdf12fa3b295236bc3a37\
         c1e39ba3882f5f3e70bf7039f6b7a506"
    );
}

#[test]
fn direct_boot_inputs_that_cannot_be_modelled_are_refused() {
    let mut kernel = b"MZ not really a kernel".to_vec();
    kernel.extend_from_slice(&CC_GUID);
    let boot = |kernel: &[u8], initrd: &[u8], cmdline: &str| {
        tdx_direct_boot_rtmrs(&TdxDirectBoot {
            kernel,
            initrd,
            cmdline,
        })
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    assert!(boot(&kernel, b"i", "c").contains("not a 64-bit PE image"));
    assert!(boot(&kernel, b"", "c").contains("initrd is empty"));
    assert!(boot(&kernel, b"i", "a\0b").contains("NUL"));
    assert!(boot(&kernel, b"i", "").contains("command line is empty"));
    assert!(boot(b"", b"i", "c").contains("cannot measure into TDX RTMRs"));
}

/// Corrupt PE headers give an error, never a panic: every byte of the
/// first KiB of the kernel flipped three ways, on a 64 KiB prefix (whose
/// sections run past its end).
#[test]
fn corrupt_kernels_never_panic() {
    let Some(kernel) = debian_kernel() else {
        return;
    };
    let mut prefix = kernel[..64 * 1024].to_vec();
    assert!(kernel_authenticode_sha384(&prefix).is_err());
    for at in 0..1024 {
        for bit in [0x01, 0x80, 0xff] {
            prefix[at] ^= bit;
            let _ = kernel_authenticode_sha384(&prefix);
            prefix[at] ^= bit;
        }
    }
}

/// Debian's TDVF has a Platform Key enrolled (Secure Boot enforced);
/// deleting it, or a store this code cannot read, changes the answer, and
/// no corruption of the store panics.
#[test]
fn secure_boot_enrolment_is_read_from_the_variable_store() {
    assert_eq!(
        TdvfFirmware::parse(DEBIAN_TDVF)
            .unwrap()
            .secure_boot_enrolled(),
        Some(true)
    );
    // The PK variable's header is the second in the store, at 0x1090; its
    // state byte is at +2. 0x3c is VAR_ADDED & VAR_DELETED.
    let mut deleted = DEBIAN_TDVF.to_vec();
    assert_eq!(&deleted[0x1090..0x1092], &[0xaa, 0x55]);
    deleted[0x1092] = 0x3c;
    assert_eq!(
        TdvfFirmware::parse(&deleted)
            .unwrap()
            .secure_boot_enrolled(),
        Some(false)
    );
    assert_eq!(
        TdvfFirmware::parse(OVMF_SHAPE)
            .unwrap()
            .secure_boot_enrolled(),
        None
    );
    let mut copy = DEBIAN_TDVF.to_vec();
    for at in (0..0x1200).chain(0x1090..0x1100) {
        for bit in [0x01, 0x80, 0xff] {
            copy[at] ^= bit;
            if let Ok(firmware) = TdvfFirmware::parse(&copy) {
                let _ = firmware.secure_boot_enrolled();
            }
            copy[at] ^= bit;
        }
    }
}
