//! QEMU command lines for enclave VMs, built as data so they can be
//! reviewed and tested without launching anything.
//!
//! References (QEMU documentation): `docs/system/i386/amd-memory-encryption.rst`
//! (SEV-SNP: `sev-snp-guest`, `kernel-hashes`, `host-data`, `id-block`,
//! memfd-backed memory, QEMU >= 9.1), `docs/system/i386/tdx.rst` (TDX:
//! `tdx-guest`, `mrconfigid`, split irqchip, TDVF firmware, QEMU >= 10.1),
//! `docs/system/invocation` for `-netdev user,hostfwd=` and `-fsdev`/
//! `virtio-9p-pci`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;

use crate::config::{Accel, SnpSettings};

/// What the guest's image and the host supply to one launch.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The kind of VM.
    pub(crate) kind: VmKind,
    /// The image's kernel, initramfs and measured command line.
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: PathBuf,
    pub(crate) cmdline: String,
    /// Firmware, where the image has one.
    pub(crate) firmware: Option<PathBuf>,
    pub(crate) vcpus: u32,
    pub(crate) memory_mib: u64,
    /// How the relay reaches the guest's enclave port.
    pub(crate) relay: RelayPath,
    /// The guest's address and port on QEMU's user network.
    pub(crate) guest: SocketAddr,
    /// The audit log directory, shared read-write.
    pub(crate) audit_dir: PathBuf,
    /// The sealed bundles' directory, shared read-only.
    pub(crate) sealed_dir: Option<PathBuf>,
}

/// How the relay reaches the guest; the guest's user-mode network (its
/// way out to the key broker) exists in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayPath {
    /// QEMU's user network forwards this host loopback address to the
    /// guest's enclave port.
    HostForward(SocketAddr),
    /// A vhost-vsock device with this guest CID (the host kernel's vhost).
    VhostVsock { guest_cid: u32 },
    /// A vhost-user vsock device whose backend listens on `socket`; guest
    /// memory is a shared memfd so the backend can map the virtqueues.
    VhostUserVsock { socket: PathBuf },
}

/// Which VM.
#[derive(Debug, Clone)]
pub(crate) enum VmKind {
    /// An ordinary VM (sim evidence): KVM or TCG as configured.
    Plain { accel: Accel },
    /// An SEV-SNP guest.
    Snp(SnpSettings),
    /// A TDX trust domain; `mrconfigid` already resolved to its 48 bytes.
    Tdx { mrconfigid: Option<[u8; 48]> },
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The SNP guest policy (SEV-SNP Firmware ABI, "Guest Policy"): bit 16 is
/// reserved and must be 1; SMT (17) as configured; the migration agent (18)
/// and debugging (19) are never allowed.
pub(crate) fn snp_policy(settings: &SnpSettings) -> u64 {
    let mut policy = 1 << 16;
    if settings.allow_smt {
        policy |= 1 << 17;
    }
    policy
}

/// The argument list (without the program name).
pub(crate) fn arguments(launch: &Launch) -> Vec<OsString> {
    let mut args = Vec::new();
    let confidential = !matches!(launch.kind, VmKind::Plain { .. });
    // Devices a confidential guest shares with the host must use the
    // platform IOMMU path (bounce buffers in shared memory).
    let virtio_opts = if confidential {
        ",disable-legacy=on,iommu_platform=on"
    } else {
        ""
    };
    let memory = format!("{}M", launch.memory_mib);
    push(
        &mut args,
        &["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"],
    );
    let vhost_user = matches!(launch.relay, RelayPath::VhostUserVsock { .. });
    match &launch.kind {
        VmKind::Plain { accel } => {
            if vhost_user {
                push(
                    &mut args,
                    &[
                        "-machine",
                        "q35,memory-backend=ram0",
                        "-object",
                        &format!("memory-backend-memfd,id=ram0,size={memory},share=on"),
                    ],
                );
            } else {
                push(&mut args, &["-machine", "q35"]);
            }
            match accel {
                Accel::Kvm => push(&mut args, &["-accel", "kvm", "-cpu", "host"]),
                Accel::Tcg => push(&mut args, &["-accel", "tcg", "-cpu", "max"]),
                // QEMU tries each accelerator in order.
                Accel::Auto => push(
                    &mut args,
                    &["-accel", "kvm", "-accel", "tcg", "-cpu", "max"],
                ),
            }
            push(&mut args, &["-m", &memory]);
        }
        VmKind::Snp(snp) => {
            let mut guest = format!(
                "sev-snp-guest,id=sev0,cbitpos={},reduced-phys-bits={},policy={:#x},kernel-hashes=on",
                snp.cbitpos,
                snp.reduced_phys_bits,
                snp_policy(snp)
            );
            if let Some(host_data) = &snp.host_data {
                guest.push_str(",host-data=");
                guest.push_str(&base64::engine::general_purpose::STANDARD.encode(host_data.0));
            }
            if let Some(id) = &snp.id_block {
                guest.push_str(&format!(",id-block={},id-auth={}", id.block, id.auth));
            }
            push(
                &mut args,
                &[
                    "-machine",
                    "q35,confidential-guest-support=sev0,memory-backend=ram0",
                    "-accel",
                    "kvm",
                    "-cpu",
                    &snp.vcpu_type,
                    "-object",
                    &format!("memory-backend-memfd,id=ram0,size={memory},share=true"),
                    "-m",
                    &memory,
                    "-object",
                    &guest,
                ],
            );
        }
        VmKind::Tdx { mrconfigid, .. } => {
            let mut guest = "tdx-guest,id=tdx0".to_owned();
            if let Some(id) = mrconfigid {
                guest.push_str(",mrconfigid=");
                guest.push_str(&base64::engine::general_purpose::STANDARD.encode(id));
            }
            push(
                &mut args,
                &[
                    "-machine",
                    "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                    "-accel",
                    "kvm",
                    "-cpu",
                    "host",
                    "-m",
                    &memory,
                    "-object",
                    &guest,
                ],
            );
        }
    }
    push(&mut args, &["-smp", &launch.vcpus.to_string()]);
    if let Some(firmware) = &launch.firmware {
        args.push("-bios".into());
        args.push(firmware.into());
    }
    args.push("-kernel".into());
    args.push(launch.kernel.clone().into());
    args.push("-initrd".into());
    args.push(launch.initrd.clone().into());
    push(&mut args, &["-append", &launch.cmdline]);
    // The serial console is QEMU's stdout, which cloisterd logs.
    push(&mut args, &["-serial", "stdio", "-monitor", "none"]);
    let netdev = match &launch.relay {
        RelayPath::HostForward(relay) => format!(
            "user,id=relay,hostfwd=tcp:{}:{}-{}:{}",
            relay.ip(),
            relay.port(),
            launch.guest.ip(),
            launch.guest.port()
        ),
        // No forward: nothing reaches the guest over its network.
        RelayPath::VhostVsock { .. } | RelayPath::VhostUserVsock { .. } => "user,id=relay".into(),
    };
    push(
        &mut args,
        &[
            "-netdev",
            &netdev,
            "-device",
            &format!("virtio-net-pci,netdev=relay,romfile={virtio_opts}"),
        ],
    );
    match &launch.relay {
        RelayPath::HostForward(_) => {}
        RelayPath::VhostVsock { guest_cid } => push(
            &mut args,
            &[
                "-device",
                &format!("vhost-vsock-pci,guest-cid={guest_cid}{virtio_opts}"),
            ],
        ),
        RelayPath::VhostUserVsock { socket } => {
            let mut chardev = OsString::from("socket,id=vsock0,path=");
            chardev.push(socket);
            args.push("-chardev".into());
            args.push(chardev);
            push(
                &mut args,
                &["-device", "vhost-user-vsock-pci,chardev=vsock0"],
            );
        }
    }
    let mut share = |id: &str, tag: &str, path: &PathBuf, read_only: bool| {
        let mut fsdev = OsString::from(format!("local,id={id},security_model=none,path="));
        fsdev.push(path);
        if read_only {
            fsdev.push(",readonly=on");
        }
        args.push("-fsdev".into());
        args.push(fsdev);
        args.push("-device".into());
        args.push(format!("virtio-9p-pci,fsdev={id},mount_tag={tag}{virtio_opts}").into());
    };
    share("audit", cloister_image::AUDIT_TAG, &launch.audit_dir, false);
    if let Some(sealed) = &launch.sealed_dir {
        share("sealed", cloister_image::SEALED_TAG, sealed, true);
    }
    args
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{HostData, IdBlock};

    fn launch(kind: VmKind) -> Launch {
        Launch {
            kind,
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initrd.img".into(),
            cmdline: "console=ttyS0 -- --guest-init".into(),
            firmware: Some("/img/firmware.fd".into()),
            vcpus: 2,
            memory_mib: 2048,
            relay: RelayPath::HostForward("127.0.0.1:40001".parse().unwrap()),
            guest: "10.0.2.15:8443".parse().unwrap(),
            audit_dir: "/var/lib/cloister/audit/scribe".into(),
            sealed_dir: Some("/var/lib/cloister/vm/scribe/sealed".into()),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect()
    }

    /// The tail every VM shares: direct boot, console, relay network, shares.
    fn common_tail(virtio: &str) -> Vec<String> {
        [
            "-smp",
            "2",
            "-bios",
            "/img/firmware.fd",
            "-kernel",
            "/img/vmlinuz",
            "-initrd",
            "/img/initrd.img",
            "-append",
            "console=ttyS0 -- --guest-init",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-netdev",
            "user,id=relay,hostfwd=tcp:127.0.0.1:40001-10.0.2.15:8443",
            "-device",
            &format!("virtio-net-pci,netdev=relay,romfile={virtio}"),
            "-fsdev",
            "local,id=audit,security_model=none,path=/var/lib/cloister/audit/scribe",
            "-device",
            &format!("virtio-9p-pci,fsdev=audit,mount_tag=cloister-audit{virtio}"),
            "-fsdev",
            "local,id=sealed,security_model=none,path=/var/lib/cloister/vm/scribe/sealed,readonly=on",
            "-device",
            &format!("virtio-9p-pci,fsdev=sealed,mount_tag=cloister-sealed{virtio}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    const HEAD: [&str; 4] = ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"];

    #[test]
    fn a_plain_vm_tries_kvm_then_tcg() {
        let got = strings(&arguments(&launch(VmKind::Plain { accel: Accel::Auto })));
        let mut want: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        want.extend(
            [
                "-machine", "q35", "-accel", "kvm", "-accel", "tcg", "-cpu", "max", "-m", "2048M",
            ]
            .map(String::from),
        );
        want.extend(common_tail(""));
        assert_eq!(got, want);
        let tcg = strings(&arguments(&launch(VmKind::Plain { accel: Accel::Tcg })));
        assert!(tcg.windows(2).any(|w| w == ["-accel", "tcg"]));
        assert!(!tcg.iter().any(|a| a == "kvm"));
    }

    /// `common_tail` with the relay's netdev and the vsock device swapped in.
    fn vsock_tail(virtio: &str, device: &[&str]) -> Vec<String> {
        let mut tail = common_tail(virtio);
        let at = tail
            .iter()
            .position(|a| a.starts_with("user,id=relay"))
            .unwrap();
        tail[at] = "user,id=relay".into();
        let after_nic = at + 3;
        for (i, arg) in device.iter().enumerate() {
            tail.insert(after_nic + i, (*arg).to_owned());
        }
        tail
    }

    #[test]
    fn a_vsock_relay_drops_the_forward_and_adds_the_device() {
        let mut vm = launch(VmKind::Plain { accel: Accel::Tcg });
        vm.relay = RelayPath::VhostUserVsock {
            socket: "/var/lib/cloister/vm/scribe/vhost-user-vsock.sock".into(),
        };
        let mut want: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        want.extend(
            [
                "-machine",
                "q35,memory-backend=ram0",
                "-object",
                "memory-backend-memfd,id=ram0,size=2048M,share=on",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-m",
                "2048M",
            ]
            .map(String::from),
        );
        want.extend(vsock_tail(
            "",
            &[
                "-chardev",
                "socket,id=vsock0,path=/var/lib/cloister/vm/scribe/vhost-user-vsock.sock",
                "-device",
                "vhost-user-vsock-pci,chardev=vsock0",
            ],
        ));
        assert_eq!(strings(&arguments(&vm)), want);

        let mut td = launch(VmKind::Tdx { mrconfigid: None });
        td.relay = RelayPath::VhostVsock { guest_cid: 7 };
        let got = strings(&arguments(&td));
        let device = "vhost-vsock-pci,guest-cid=7,disable-legacy=on,iommu_platform=on";
        assert!(got.windows(2).any(|w| w == ["-device", device]), "{got:?}");
        assert!(
            got.windows(2).any(|w| w == ["-netdev", "user,id=relay"]),
            "{got:?}"
        );
        assert!(!got.iter().any(|a| a.contains("hostfwd")), "{got:?}");
    }

    #[test]
    fn an_snp_guest_is_measured_direct_boot_without_debug_or_migration() {
        let settings = SnpSettings {
            vcpu_type: "EPYC-v4".into(),
            allow_smt: false,
            cbitpos: 51,
            reduced_phys_bits: 1,
            host_data: Some(HostData([0xab; 32])),
            id_block: None,
        };
        let got = strings(&arguments(&launch(VmKind::Snp(settings.clone()))));
        let mut want: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        want.extend(
            [
                "-machine",
                "q35,confidential-guest-support=sev0,memory-backend=ram0",
                "-accel",
                "kvm",
                "-cpu",
                "EPYC-v4",
                "-object",
                "memory-backend-memfd,id=ram0,size=2048M,share=true",
                "-m",
                "2048M",
                "-object",
                "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x10000,kernel-hashes=on,host-data=q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
            ]
            .map(String::from),
        );
        want.extend(common_tail(",disable-legacy=on,iommu_platform=on"));
        assert_eq!(got, want);

        // SMT on sets bit 17; debug (19) and migration agent (18) never.
        let smt = SnpSettings {
            allow_smt: true,
            id_block: Some(IdBlock {
                block: "SURCTE9DSw==".into(),
                auth: "QVVUSA==".into(),
            }),
            host_data: None,
            ..settings
        };
        assert_eq!(snp_policy(&smt), 0x30000);
        let got = strings(&arguments(&launch(VmKind::Snp(smt))));
        assert!(got.contains(
            &"sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on,id-block=SURCTE9DSw==,id-auth=QVVUSA==".to_owned()
        ));
    }

    #[test]
    fn a_tdx_guest_gets_split_irqchip_and_its_mrconfigid() {
        let got = strings(&arguments(&launch(VmKind::Tdx {
            mrconfigid: Some([0x11; 48]),
        })));
        let mut want: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        want.extend(
            [
                "-machine",
                "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-m",
                "2048M",
                "-object",
                "tdx-guest,id=tdx0,mrconfigid=ERERERERERERERERERERERERERERERERERERERERERERERERERERERERERERERER",
            ]
            .map(String::from),
        );
        want.extend(common_tail(",disable-legacy=on,iommu_platform=on"));
        assert_eq!(got, want);
    }
}
