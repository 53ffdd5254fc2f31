//! Launching an enclave image as a VM under QEMU: the capability checks
//! before launch, the host's shares (audit log, sealed ciphertext), and the
//! QEMU command. The image's kernel, initramfs and command line are checked
//! against its manifest at every launch.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cloister_image::{Image, ImageTee, GUEST_IP};

use crate::capability::{self, Host};
use crate::config::{Accel, EnclaveConfig, TeeKind};
use crate::qemu::{self, Launch, VmKind};

fn image_tee(tee: TeeKind) -> Option<ImageTee> {
    match tee {
        TeeKind::Sim => None,
        TeeKind::Vm => Some(ImageTee::Vm),
        TeeKind::Snp => Some(ImageTee::Snp),
        TeeKind::Tdx => Some(ImageTee::Tdx),
    }
}

/// Opens the image and checks it is one this enclave may launch.
fn open_image(config: &EnclaveConfig) -> anyhow::Result<Image> {
    let image = Image::open(&config.image)?;
    if Some(image.manifest.tee) != image_tee(config.tee) {
        bail!(
            "enclave {:?}: tee = {:?} but the image {} was built for tee {:?}; rebuild it with `cloister image build --tee {}`",
            config.name,
            config.tee.name(),
            config.image.display(),
            image.manifest.tee.name(),
            config.tee.name()
        );
    }
    if config.tee == TeeKind::Snp {
        if let Some(vcpus) = config.resources.vcpus {
            if vcpus as u64 != u64::from(image.manifest.vcpus) {
                bail!(
                    "enclave {:?}: resources.vcpus = {vcpus} but the image's expected SNP measurement is for {} vCPUs (one VMSA each); they must agree",
                    config.name,
                    image.manifest.vcpus
                );
            }
        }
    }
    Ok(image)
}

/// Everything that must hold before this enclave is launched; a refusal
/// names each missing piece.
pub(crate) fn preflight(config: &EnclaveConfig) -> anyhow::Result<()> {
    let image = open_image(config)?;
    let host = Host::real();
    let version = capability::qemu_version(&config.vm.qemu);
    let firmware = image.firmware();
    let refused = |what: &str, missing: capability::Missing| {
        anyhow::anyhow!(
            "enclave {:?}: this host cannot launch {what} guests, and cloisterd will not launch a weaker TEE in its place: {missing}",
            config.name
        )
    };
    match config.tee {
        TeeKind::Sim => {}
        TeeKind::Vm => {
            if version.is_none() {
                bail!(
                    "enclave {:?}: {} does not run (install Debian's qemu-system-x86)",
                    config.name,
                    config.vm.qemu.display()
                );
            }
            if config.vm.accel == Accel::Kvm && !host.kvm_openable() {
                bail!(
                    "enclave {:?}: accel = \"kvm\" but /dev/kvm cannot be opened",
                    config.name
                );
            }
        }
        TeeKind::Snp => host
            .check_snp(version, firmware.as_deref())
            .map_err(|m| refused("SEV-SNP", m))?,
        TeeKind::Tdx => host
            .check_tdx(version, firmware.as_deref())
            .map_err(|m| refused("TDX", m))?,
    }
    if host.has_vhost_vsock() {
        tracing::info!(enclave = %config.name, "/dev/vhost-vsock is present, but this release relays over QEMU user-mode networking bound to loopback");
    } else {
        tracing::info!(enclave = %config.name, "no /dev/vhost-vsock: relaying over QEMU user-mode networking bound to loopback");
    }
    Ok(())
}

/// Links (or, across filesystems, copies) each sealed bundle into the
/// VM's read-only share under the name its configuration gives it. The
/// share exists even when empty: the image's command line mounts it.
fn stage_sealed(config: &EnclaveConfig, state: &Path) -> anyhow::Result<PathBuf> {
    let dir = state.join("sealed");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, source) in &config.sealed {
        let target = dir.join(name);
        if std::fs::hard_link(source, &target).is_err() {
            std::fs::copy(source, &target).with_context(|| {
                format!("cannot put {} into {}", source.display(), dir.display())
            })?;
        }
    }
    Ok(dir)
}

/// The QEMU command for one launch, relaying `relay` (host loopback) to
/// the guest's enclave port.
pub(crate) fn command(
    config: &EnclaveConfig,
    relay: SocketAddr,
) -> anyhow::Result<tokio::process::Command> {
    let image = open_image(config)?;
    // Both are filled in or required when the configuration is loaded.
    let state = config
        .vm
        .state_dir
        .clone()
        .context("no VM state directory is configured")?;
    let memory_mib = config
        .resources
        .memory_mib
        .context("resources.memory_mib is not set")?;
    let audit_dir = config
        .audit_dir
        .clone()
        .context("no audit directory is configured")?;
    std::fs::create_dir_all(&audit_dir)
        .with_context(|| format!("cannot create {}", audit_dir.display()))?;
    let sealed_dir = stage_sealed(config, &state)?;
    let kind = match config.tee {
        TeeKind::Vm => VmKind::Plain {
            accel: config.vm.accel,
        },
        TeeKind::Snp => VmKind::Snp(config.vm.snp.clone()),
        TeeKind::Tdx => {
            let mrconfigid = if config.vm.tdx.mrconfigid_from_config {
                let mut id = [0u8; 48];
                hex::decode_to_slice(&image.manifest.config_sha384, &mut id)
                    .context("the image manifest's config_sha384 is not 48 bytes of hex")?;
                Some(id)
            } else {
                None
            };
            VmKind::Tdx { mrconfigid }
        }
        TeeKind::Sim => bail!("a sim enclave is not a VM"),
    };
    let launch = Launch {
        kind,
        kernel: image.kernel(),
        initrd: image.initrd(),
        cmdline: image.manifest.cmdline.clone(),
        firmware: image.firmware(),
        vcpus: config
            .resources
            .vcpus
            .map(|v| v as u32)
            .unwrap_or(image.manifest.vcpus),
        memory_mib,
        relay,
        guest: SocketAddr::V4(SocketAddrV4::new(GUEST_IP, image.manifest.guest_port)),
        audit_dir,
        sealed_dir: Some(sealed_dir),
    };
    let mut command = tokio::process::Command::new(&config.vm.qemu);
    command.args(qemu::arguments(&launch));
    Ok(command)
}
