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
