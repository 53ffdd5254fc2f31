//! `cloister_image::build` on real inputs: Debian's kernel package
//! (`$CLOISTER_KERNEL_TREE`, from scripts/fetch-kernel) and the static guest
//! enclave (`$CLOISTER_GUEST_ENCLAVE`); scripts/test sets both. Without them
//! the tests that need them say so and return.
//!
//! The SNP case is cross-checked against the reference implementation,
//! sev-snp-measure (scripts/sev-snp-measure, which scripts/setup installs),
//! on the image's own kernel, initramfs and command line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use cloister_image::{build, Image, ImageError, ImageSpec, ImageTee, DEFAULT_MODULES};

fn env_path(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(name)?);
    path.exists().then_some(path)
}

/// The kernel tree and guest binary, or None (with a message) when absent.
fn inputs() -> Option<(PathBuf, PathBuf)> {
    match (
        env_path("CLOISTER_KERNEL_TREE"),
        env_path("CLOISTER_GUEST_ENCLAVE"),
    ) {
        (Some(tree), Some(guest)) => Some((tree, guest)),
        _ => {
            eprintln!(
                "CLOISTER_KERNEL_TREE and CLOISTER_GUEST_ENCLAVE are not both set: skipping (scripts/test sets them)"
            );
            None
        }
    }
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn enclave_dir(dir: &Path, tee: &str) -> PathBuf {
    let enclave = dir.join("enclave");
    std::fs::create_dir_all(enclave.join("policy")).unwrap();
    std::fs::write(
        enclave.join("enclave.toml"),
        format!("tee = \"{tee}\"\nengine = \"none\"\n"),
    )
    .unwrap();
    std::fs::write(enclave.join("policy/policy.toml"), "# a policy file\n").unwrap();
    enclave
}

fn spec(tee: ImageTee, tree: &Path, guest: &Path, enclave: &Path) -> ImageSpec {
    ImageSpec {
        tee,
        kernel_tree: tree.to_owned(),
        modules: DEFAULT_MODULES.iter().map(|m| (*m).to_owned()).collect(),
        enclave_binary: guest.to_owned(),
        enclave_dir: enclave.to_owned(),
        firmware: None,
        extra_kernel_args: vec![],
        vcpus: 2,
        vcpu_type: "EPYC-v4".into(),
    }
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_the_manifest_checks_them() {
    let Some((tree, guest)) = inputs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let enclave = enclave_dir(dir.path(), "sim");
    let spec = spec(ImageTee::Vm, &tree, &guest, &enclave);
    let one = build(&spec, &dir.path().join("one")).unwrap();
    let two = build(&spec, &dir.path().join("two")).unwrap();
    assert_eq!(one, two);
    for file in ["vmlinuz", "initrd.img", "image.json"] {
        assert_eq!(
            std::fs::read(dir.path().join("one").join(file)).unwrap(),
            std::fs::read(dir.path().join("two").join(file)).unwrap(),
            "{file}"
        );
    }
    // Every module comes after the modules it depends on.
    let position = |m: &str| one.modules.iter().position(|x| x == m).unwrap();
    assert!(position("virtio") < position("virtio_pci"));
    assert!(position("net_failover") < position("virtio_net"));
    assert!(position("9pnet") < position("9pnet_virtio"));
    assert!(position("netfs") < position("9p"));
    assert!(one.expected.sim.is_some());
    assert!(one.cmdline.contains(" -- --guest-init "), "{}", one.cmdline);

    // A changed file is refused when the image is opened.
    let image = Image::open(&dir.path().join("one")).unwrap();
    assert_eq!(image.manifest, one);
    let initrd = dir.path().join("two/initrd.img");
    let mut bytes = std::fs::read(&initrd).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&initrd, bytes).unwrap();
    let err = Image::open(&dir.path().join("two"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("initrd.img does not match the manifest"),
        "{err}"
    );
}

#[test]
fn a_dynamic_binary_and_a_mismatched_tee_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let enclave = enclave_dir(dir.path(), "sim");
    let tree = dir.path().join("no-kernel");
    // /bin/sh is dynamically linked on Debian.
    let err = build(
        &spec(ImageTee::Vm, &tree, Path::new("/bin/sh"), &enclave),
        &dir.path().join("out"),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Binary { .. }), "{err}");
    assert!(err.to_string().contains("dynamically linked"), "{err}");

    let Some((tree, guest)) = inputs() else {
        return;
    };
    let err = build(
        &spec(ImageTee::Tdx, &tree, &guest, &enclave),
        &dir.path().join("out"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs --firmware"), "{err}");
    let mut tdx = spec(ImageTee::Tdx, &tree, &guest, &enclave);
    tdx.firmware = Some(repo("attestation/tests/fixtures/measure/empty.bin"));
    let err = build(&tdx, &dir.path().join("out")).unwrap_err();
    assert!(
        err.to_string()
            .contains("sim evidence must never come from a CVM image"),
        "{err}"
    );
    let sim_in_vm = enclave_dir(&dir.path().join("snp"), "snp");
    let err = build(
        &spec(ImageTee::Vm, &tree, &guest, &sim_in_vm),
        &dir.path().join("out"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("use tee = \"sim\""), "{err}");
    let mut missing = spec(ImageTee::Vm, &tree, &guest, &enclave);
    missing.modules = vec!["no_such_module".into()];
    let err = build(&missing, &dir.path().join("out")).unwrap_err();
    assert!(
        err.to_string()
            .contains("module no_such_module (needed by the image)"),
        "{err}"
    );
}

#[test]
fn an_snp_image_carries_the_digest_sev_snp_measure_computes() {
    let Some((tree, guest)) = inputs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let enclave = enclave_dir(dir.path(), "snp");

    // Debian's OVMF has SNP metadata but no kernel-hashes table: refused.
    let mut debian = spec(ImageTee::Snp, &tree, &guest, &enclave);
    debian.firmware = Some(repo(
        "attestation/tests/fixtures/measure/debian-bookworm-2022.11-OVMF.fd.tail",
    ));
    let err = build(&debian, &dir.path().join("debian")).unwrap_err();
    assert!(
        err.to_string().contains("no SNP kernel-hashes section"),
        "{err}"
    );

    // sev-snp-measure's AmdSev fixture has one.
    let firmware = repo("attestation/tests/fixtures/measure/ovmf_AmdSev_suffix.bin");
    let mut snp = spec(ImageTee::Snp, &tree, &guest, &enclave);
    snp.firmware = Some(firmware.clone());
    snp.vcpus = 4;
    snp.vcpu_type = "EPYC-Milan".into();
    let out = dir.path().join("snp");
    let manifest = build(&snp, &out).unwrap();
    let digest = manifest.expected.snp.expect("an snp image has a digest");
    assert_eq!(manifest.vcpu_type.as_deref(), Some("EPYC-Milan"));
    assert!(manifest.expected.sim.is_none());

    let reference = repo("scripts/sev-snp-measure");
    let run = std::process::Command::new(&reference)
        .args([
            "--mode",
            "snp",
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
        ])
        .arg(&firmware)
        .arg("--kernel")
        .arg(out.join("vmlinuz"))
        .arg("--initrd")
        .arg(out.join("initrd.img"))
        .arg("--append")
        .arg(&manifest.cmdline)
        .output();
    match run {
        Ok(o) if o.status.success() => {
            let theirs = String::from_utf8(o.stdout).unwrap();
            assert_eq!(theirs.trim(), digest.to_string());
        }
        other => {
            panic!("scripts/sev-snp-measure did not run ({other:?}); scripts/setup installs it")
        }
    }
}

const TDVF: &str = "attestation/tests/fixtures/measure/tdx/debian-sid-2026.08-OVMF.inteltdx.ms.fd";

/// Debian's 6.1 kernel cannot measure its initramfs into a TD's RTMRs, so
/// a tdx image on it would leave the enclave unmeasured: refused.
#[test]
fn a_tdx_image_on_a_kernel_that_cannot_measure_its_initramfs_is_refused() {
    let Some((tree, guest)) = inputs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let enclave = enclave_dir(dir.path(), "tdx");
    let mut tdx = spec(ImageTee::Tdx, &tree, &guest, &enclave);
    tdx.firmware = Some(repo(TDVF));
    let err = build(&tdx, &dir.path().join("out")).unwrap_err();
    assert!(
        err.to_string().contains(
            "the TDX RTMRs cannot be computed: the kernel's EFI stub cannot measure into TDX RTMRs"
        ),
        "{err}"
    );
    assert!(!dir.path().join("out/image.json").exists());
}

/// A tdx image on a kernel whose stub can measure into RTMRs (Debian's 6.1
/// with the CC measurement protocol's GUID appended, standing in for a
/// 6.9+ kernel): MRTD is the fixture's (three references agree on it), and
/// RTMR[1]/[2] are re-derived here from the image's own files.
#[test]
fn a_tdx_image_carries_mrtd_and_the_rtmrs_of_its_own_files() {
    use sha2::{Digest, Sha384};
    let Some((tree, guest)) = inputs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake_tree = dir.path().join("kernel");
    std::fs::create_dir_all(fake_tree.join("boot")).unwrap();
    let boot = tree.join("boot");
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
    let mut kernel = std::fs::read(&vmlinuz).unwrap();
    kernel.extend_from_slice(&[
        0x3d, 0x1a, 0x75, 0x96, 0xf4, 0x72, 0xa6, 0x41, 0xa7, 0x94, 0xed, 0x5d, 0x0e, 0x67, 0xae,
        0x6b,
    ]);
    std::fs::write(
        fake_tree.join("boot").join(vmlinuz.file_name().unwrap()),
        &kernel,
    )
    .unwrap();
    std::os::unix::fs::symlink(tree.join("lib"), fake_tree.join("lib")).unwrap();

    let enclave = enclave_dir(dir.path(), "tdx");
    let mut tdx = spec(ImageTee::Tdx, &fake_tree, &guest, &enclave);
    tdx.firmware = Some(repo(TDVF));
    let out = dir.path().join("out");
    let manifest = build(&tdx, &out).unwrap();
    let expected = manifest.expected.tdx.as_ref().unwrap();
    assert_eq!(
        expected.mrtd.to_string(),
        "a7a1f751abc454f9cbab198ca8d2edb2821935df525c74182b5e776cb0929e8c\
         59aefecce725b0d08a5e9d3d3183bd08"
    );
    assert!(manifest
        .expected
        .not_computed
        .as_deref()
        .unwrap()
        .contains("RTMR[0]"));
    assert_eq!(Image::open(&out).unwrap().manifest, manifest);

    let extend = |rtmr: [u8; 48], event: &[u8]| -> [u8; 48] {
        let mut h = Sha384::new();
        h.update(rtmr);
        h.update(event);
        h.finalize().into()
    };
    let image_kernel = std::fs::read(out.join("vmlinuz")).unwrap();
    assert_eq!(image_kernel, kernel);
    let authenticode =
        cloister_attestation::measure::kernel_authenticode_sha384(&image_kernel).unwrap();
    let mut rtmr1 = extend([0; 48], &authenticode.0);
    for action in [
        &b"Calling EFI Application from Boot Option"[..],
        &[0, 0, 0, 0],
        b"Exit Boot Services Invocation",
        b"Exit Boot Services Returned with Success",
    ] {
        rtmr1 = extend(rtmr1, &Sha384::digest(action));
    }
    assert_eq!(expected.rtmr1.0, rtmr1);

    let options: Vec<u8> = format!("initrd=initrd {}\0", manifest.cmdline)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let initrd = std::fs::read(out.join("initrd.img")).unwrap();
    let rtmr2 = extend(
        extend([0; 48], &Sha384::digest(&options)),
        &Sha384::digest(&initrd),
    );
    assert_eq!(expected.rtmr2.0, rtmr2);
}
