//! Launching an enclave image as a VM under QEMU: the capability checks
//! before launch, the host's shares (audit log, sealed ciphertext), how the
//! relay reaches the guest (user-mode forward, vhost-vsock, or a vhost-user
//! vsock backend started beside QEMU), and the QEMU command. The image's
//! kernel, initramfs and command line are checked against its manifest at
//! every launch.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cloister_image::{Image, ImageTee, GUEST_IP};

use crate::backend::Backend;
use crate::capability::{self, Host};
use crate::config::{Accel, EnclaveConfig, RelayTransport, TeeKind};
use crate::qemu::{self, Launch, RelayPath, VmKind};

/// The vhost-user backend's control socket (QEMU connects to it), and the
/// host-side socket the relay dials, in the VM's state directory.
const VHOST_USER_SOCKET: &str = "vhost-user-vsock.sock";
const VSOCK_UNIX_SOCKET: &str = "vsock.sock";

/// `relay_transport`, with `auto` resolved against this host.
fn relay_transport(config: &EnclaveConfig, host: &Host) -> RelayTransport {
    match config.vm.relay_transport {
        RelayTransport::Auto if host.vhost_vsock_openable() => RelayTransport::VhostVsock,
        RelayTransport::Auto => RelayTransport::UserNet,
        chosen => chosen,
    }
}

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
    match (config.vm.relay_transport, relay_transport(config, &host)) {
        (RelayTransport::Auto, RelayTransport::UserNet) => {
            let why = if host.has_vhost_vsock() {
                "/dev/vhost-vsock cannot be opened"
            } else {
                "no /dev/vhost-vsock"
            };
            tracing::info!(enclave = %config.name, "{why}: relaying over QEMU user-mode networking bound to loopback");
        }
        (_, RelayTransport::VhostVsock) => {
            if !host.vhost_vsock_openable() {
                bail!(
                    "enclave {:?}: relay_transport = \"vhost-vsock\" but /dev/vhost-vsock cannot be opened (load vhost_vsock, or use \"user-net\")",
                    config.name
                );
            }
            tracing::info!(enclave = %config.name, guest_cid = config.vm.guest_cid, "relaying over virtio-vsock (vhost-vsock)");
        }
        (_, RelayTransport::VhostUserVsock) => {
            let runs = std::process::Command::new(&config.vm.vhost_user_vsock)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !runs {
                bail!(
                    "enclave {:?}: relay_transport = \"vhost-user-vsock\" but {} does not run (scripts/setup installs vhost-device-vsock)",
                    config.name,
                    config.vm.vhost_user_vsock.display()
                );
            }
            tracing::info!(enclave = %config.name, backend = %config.vm.vhost_user_vsock.display(), "relaying over virtio-vsock (vhost-user backend)");
        }
        (_, _) => {
            tracing::info!(enclave = %config.name, "relaying over QEMU user-mode networking bound to loopback")
        }
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

/// One launch: QEMU, how the relay reaches the guest, and the vhost-user
/// vsock backend to start (and see listening) before QEMU, if any.
pub(crate) struct VmLaunch {
    pub(crate) qemu: tokio::process::Command,
    pub(crate) backend: Backend,
    pub(crate) vsock_backend: Option<VsockBackend>,
}

/// The vhost-user vsock device backend process for one launch.
pub(crate) struct VsockBackend {
    pub(crate) command: tokio::process::Command,
    /// The socket QEMU connects to; it exists once the backend is ready.
    pub(crate) control_socket: PathBuf,
}

/// The commands for one launch. `loopback` is a free host loopback address,
/// used when the relay goes over QEMU's user network.
pub(crate) fn launch(config: &EnclaveConfig, loopback: SocketAddr) -> anyhow::Result<VmLaunch> {
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
    let guest_port = u32::from(image.manifest.guest_port);
    let (relay, backend, vsock_backend) = match relay_transport(config, &Host::real()) {
        RelayTransport::VhostVsock => (
            RelayPath::VhostVsock {
                guest_cid: config.vm.guest_cid,
            },
            Backend::Vsock {
                cid: config.vm.guest_cid,
                port: guest_port,
            },
            None,
        ),
        RelayTransport::VhostUserVsock => {
            let control_socket = state.join(VHOST_USER_SOCKET);
            let relay_socket = state.join(VSOCK_UNIX_SOCKET);
            // A previous launch's sockets would make the backend's bind fail.
            for stale in [&control_socket, &relay_socket] {
                match std::fs::remove_file(stale) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", stale.display()))
                    }
                }
            }
            let mut command = tokio::process::Command::new(&config.vm.vhost_user_vsock);
            command
                .arg("--guest-cid")
                .arg(config.vm.guest_cid.to_string())
                .arg("--socket")
                .arg(&control_socket)
                .arg("--uds-path")
                .arg(&relay_socket);
            (
                RelayPath::VhostUserVsock {
                    socket: control_socket.clone(),
                },
                Backend::VsockUnix {
                    path: relay_socket,
                    port: guest_port,
                },
                Some(VsockBackend {
                    command,
                    control_socket,
                }),
            )
        }
        RelayTransport::UserNet | RelayTransport::Auto => (
            RelayPath::HostForward(loopback),
            Backend::Tcp(loopback),
            None,
        ),
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
    let mut qemu = tokio::process::Command::new(&config.vm.qemu);
    qemu.args(qemu::arguments(&launch));
    Ok(VmLaunch {
        qemu,
        backend,
        vsock_backend,
    })
}
