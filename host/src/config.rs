//! `host.toml`: which enclaves to run and how to reach them. Relative paths
//! are resolved against the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// How the enclave is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TeeKind {
    /// A local child process. INSECURE: the host can read its memory.
    Sim,
    /// The enclave image in an ordinary VM under QEMU, carrying sim
    /// evidence. INSECURE: for development and CI.
    Vm,
    /// An SEV-SNP confidential VM.
    Snp,
    /// A TDX trust domain.
    Tdx,
}

/// Daemon-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    /// The admin API's unix socket.
    #[serde(default = "default_socket")]
    pub(crate) admin_socket: PathBuf,
    /// The enclave agent binary for sim enclaves (default: `cloister-enclave`
    /// beside `cloisterd`).
    #[serde(default)]
    pub(crate) enclave_binary: Option<PathBuf>,
    /// Time between health checks, milliseconds.
    #[serde(default = "default_health_interval")]
    pub(crate) health_interval_ms: u64,
    /// Consecutive failed health checks before a restart.
    #[serde(default = "default_health_failures")]
    pub(crate) health_failures: u32,
    /// How long an enclave may take to become healthy, seconds.
    #[serde(default = "default_startup_timeout")]
    pub(crate) startup_timeout_s: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            admin_socket: default_socket(),
            enclave_binary: None,
            health_interval_ms: default_health_interval(),
            health_failures: default_health_failures(),
            startup_timeout_s: default_startup_timeout(),
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("cloisterd.sock")
}
fn default_health_interval() -> u64 {
    2000
}
fn default_health_failures() -> u32 {
    3
}
fn default_startup_timeout() -> u64 {
    30
}

/// What an enclave may use.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resources {
    /// vCPUs (sim: runtime worker threads).
    #[serde(default)]
    pub(crate) vcpus: Option<usize>,
    /// Memory, MiB (sim: address-space limit of the process).
    #[serde(default)]
    pub(crate) memory_mib: Option<u64>,
}

impl TeeKind {
    /// Its name in the configuration.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Vm => "vm",
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        }
    }
}

/// Which QEMU accelerator an ordinary VM uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Accel {
    /// KVM where QEMU can use it, otherwise TCG (software emulation).
    #[default]
    Auto,
    /// KVM only.
    Kvm,
    /// TCG only.
    Tcg,
}

/// 32 bytes the host binds into an SNP launch (`HOST_DATA` in the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostData(pub(crate) [u8; 32]);

impl<'de> Deserialize<'de> for HostData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|e| {
            serde::de::Error::custom(format!("host_data is 64 hex digits (32 bytes): {e}"))
        })?;
        Ok(Self(out))
    }
}

/// An SNP ID block and its authentication structure, base64 as QEMU takes
/// them (`snpguest generate id-block` makes them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdBlock {
    /// The ID block.
    pub(crate) block: String,
    /// The ID authentication information structure.
    pub(crate) auth: String,
}

/// SEV-SNP launch settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SnpSettings {
    /// QEMU CPU model; part of the launch measurement (VMSA), so it must be
    /// what the expected measurement was computed for.
    pub(crate) vcpu_type: String,
    /// Allow SMT on the host (guest policy bit 17).
    pub(crate) allow_smt: bool,
    /// The C-bit position (CPUID 0x8000001F EBX[5:0]; 51 on Milan and Genoa).
    pub(crate) cbitpos: u32,
    /// Physical address bits lost to memory encryption.
    pub(crate) reduced_phys_bits: u32,
    /// HOST_DATA, hex.
    pub(crate) host_data: Option<HostData>,
    /// An ID block to launch with.
    pub(crate) id_block: Option<IdBlock>,
}

impl Default for SnpSettings {
    fn default() -> Self {
        Self {
            vcpu_type: "EPYC-v4".into(),
            allow_smt: false,
            cbitpos: 51,
            reduced_phys_bits: 1,
            host_data: None,
            id_block: None,
        }
    }
}

/// TDX launch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TdxSettings {
    /// Set MRCONFIGID to the SHA-384 of the image's enclave.toml, so the
    /// quote names the configuration directly.
    pub(crate) mrconfigid_from_config: bool,
}

/// How the relay reaches a VM's enclave port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RelayTransport {
    /// virtio-vsock through the kernel's vhost-vsock where `/dev/vhost-vsock`
    /// can be opened, otherwise QEMU user-mode networking on loopback.
    #[default]
    Auto,
    /// QEMU user-mode networking: a forward bound to host loopback.
    UserNet,
    /// virtio-vsock through the host kernel's vhost-vsock (`guest_cid`).
    VhostVsock,
    /// virtio-vsock through a vhost-user device backend process
    /// (`vhost_user_vsock`, rust-vmm's vhost-device-vsock), which cloisterd
    /// starts beside QEMU; for hosts without vhost-vsock (tee = "vm" only).
    VhostUserVsock,
}

/// How a VM enclave (tee = "vm", "snp" or "tdx") is launched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct VmSettings {
    /// The QEMU binary.
    pub(crate) qemu: PathBuf,
    /// tee = "vm" only: the accelerator.
    pub(crate) accel: Accel,
    /// How long the VM may take to boot and answer its first health check,
    /// seconds (software emulation boots in tens of seconds).
    pub(crate) boot_timeout_s: u64,
    /// Where cloisterd keeps the VM's working files (the sealed-bundle
    /// share); default `vm/<name>` beside this file.
    pub(crate) state_dir: Option<PathBuf>,
    /// SEV-SNP settings.
    pub(crate) snp: SnpSettings,
    /// TDX settings.
    pub(crate) tdx: TdxSettings,
    /// How the relay reaches the guest.
    pub(crate) relay_transport: RelayTransport,
    /// The guest's vsock context ID (3 or more; unique on the host for
    /// vhost-vsock).
    pub(crate) guest_cid: u32,
    /// The vhost-user vsock backend program, for `relay_transport =
    /// "vhost-user-vsock"` (looked up on PATH when a bare name).
    pub(crate) vhost_user_vsock: PathBuf,
}

impl Default for VmSettings {
    fn default() -> Self {
        Self {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Auto,
            boot_timeout_s: 300,
            state_dir: None,
            snp: SnpSettings::default(),
            tdx: TdxSettings::default(),
            relay_transport: RelayTransport::Auto,
            guest_cid: 3,
            vhost_user_vsock: "vhost-device-vsock".into(),
        }
    }
}

/// One enclave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnclaveConfig {
    /// A name for logs and status.
    pub(crate) name: String,
    /// How it is isolated.
    pub(crate) tee: TeeKind,
    /// The image directory: for sim, one holding enclave.toml; for vm, snp
    /// and tdx, one `cloister image build` wrote.
    pub(crate) image: PathBuf,
    /// The public address clients connect to; cloisterd relays from here.
    pub(crate) listen: SocketAddr,
    /// Policy bundle (policy modules arrive in a later release).
    #[serde(default)]
    pub(crate) policy_bundle: Option<PathBuf>,
    /// Sealed bundles the enclave needs, by the names its configuration
    /// gives them. Ciphertext only: the enclave gets each key from the data
    /// owner's key broker.
    #[serde(default)]
    pub(crate) sealed: std::collections::BTreeMap<String, PathBuf>,
    /// Resources.
    #[serde(default)]
    pub(crate) resources: Resources,
    /// Where the enclave's audit log is kept (default: `audit/<name>` beside
    /// this file). The host stores it but cannot read its sealed fields or
    /// forge its records; back it up, and keep its checkpoints elsewhere too.
    #[serde(default)]
    pub(crate) audit_dir: Option<PathBuf>,
    /// Append every relayed byte to this file: shows what the host can see
    /// (only TLS ciphertext). For tests and forensics; off by default.
    #[serde(default)]
    pub(crate) relay_capture: Option<PathBuf>,
    /// VM launch settings (tee = "vm", "snp", "tdx").
    #[serde(default)]
    pub(crate) vm: VmSettings,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostConfig {
    /// Daemon settings.
    #[serde(default)]
    pub(crate) daemon: DaemonConfig,
    /// The enclaves.
    #[serde(default, rename = "enclave")]
    pub(crate) enclaves: Vec<EnclaveConfig>,
}

impl HostConfig {
    /// Reads, resolves and checks a configuration file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        config.check()?;
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.daemon.admin_socket);
        if let Some(p) = &mut self.daemon.enclave_binary {
            fix(p);
        }
        for e in &mut self.enclaves {
            fix(&mut e.image);
            let audit = e
                .audit_dir
                .get_or_insert_with(|| PathBuf::from("audit").join(&e.name));
            fix(audit);
            if let Some(p) = &mut e.relay_capture {
                fix(p);
            }
            let state =
                e.vm.state_dir
                    .get_or_insert_with(|| PathBuf::from("vm").join(&e.name));
            fix(state);
            // A bare program name is looked up on PATH; a path is resolved.
            if e.vm.qemu.components().count() > 1 {
                fix(&mut e.vm.qemu);
            }
            if e.vm.vhost_user_vsock.components().count() > 1 {
                fix(&mut e.vm.vhost_user_vsock);
            }
            for p in e.sealed.values_mut() {
                fix(p);
            }
        }
    }

    /// Refuses what this release cannot do, rather than doing less than asked.
    fn check(&self) -> anyhow::Result<()> {
        if self.enclaves.is_empty() {
            bail!("no [[enclave]] is configured");
        }
        let mut names = std::collections::HashSet::new();
        let mut listens = std::collections::HashSet::new();
        // A vsock context ID names one guest on the host: two VMs with the
        // same one would collide (vhost-vsock) or be confused.
        let mut guest_cids = std::collections::HashSet::new();
        for e in &self.enclaves {
            if e.tee != TeeKind::Sim
                && e.vm.relay_transport != RelayTransport::UserNet
                && !guest_cids.insert(e.vm.guest_cid)
            {
                bail!(
                    "enclave {:?}: vm.guest_cid = {} is already another enclave's; give each VM its own",
                    e.name,
                    e.vm.guest_cid
                );
            }
        }
        for e in &self.enclaves {
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "enclave name {:?} must be letters, digits, '-' and '_' (it names the audit log's directory)",
                    e.name
                );
            }
            if !names.insert(&e.name) {
                bail!("enclave name {:?} is used twice", e.name);
            }
            if !listens.insert(e.listen) {
                bail!("listen address {} is used twice", e.listen);
            }
            if e.tee != TeeKind::Sim && e.resources.memory_mib.is_none() {
                bail!(
                    "enclave {:?}: tee = \"{}\" needs resources.memory_mib (the VM's memory)",
                    e.name,
                    e.tee.name()
                );
            }
            if e.vm.guest_cid < 3 || e.vm.guest_cid == u32::MAX {
                bail!(
                    "enclave {:?}: vm.guest_cid = {} is reserved (0-2 are the hypervisor, local and host; u32::MAX is any)",
                    e.name,
                    e.vm.guest_cid
                );
            }
            if e.vm.relay_transport == RelayTransport::VhostUserVsock && e.tee != TeeKind::Vm {
                bail!(
                    "enclave {:?}: relay_transport = \"vhost-user-vsock\" needs guest memory shared with a host process, which this release does only for tee = \"vm\"",
                    e.name
                );
            }
            if e.policy_bundle.is_some() {
                bail!(
                    "enclave {:?}: policy_bundle is set, but policy bundles are not supported by this release; refusing to run the enclave without the policy you asked for",
                    e.name
                );
            }
            for (name, path) in &e.sealed {
                if name.is_empty() || name.contains('=') {
                    bail!(
                        "enclave {:?}: sealed bundle name {name:?} is empty or contains '='",
                        e.name
                    );
                }
                if !path.is_file() {
                    bail!(
                        "enclave {:?}: sealed bundle {name:?} ({}) does not exist",
                        e.name,
                        path.display()
                    );
                }
            }
            let wanted = if e.tee == TeeKind::Sim {
                "enclave.toml"
            } else {
                cloister_image::MANIFEST_FILE
            };
            if !e.image.join(wanted).is_file() {
                bail!(
                    "enclave {:?}: image {} has no {wanted}{}",
                    e.name,
                    e.image.display(),
                    if e.tee == TeeKind::Sim {
                        ""
                    } else {
                        " (build one with `cloister image build`)"
                    }
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let text = include_str!("../host.example.toml");
        let config: HostConfig = toml::from_str(text).unwrap();
        assert_eq!(config.enclaves.len(), 1);
        assert_eq!(config.enclaves[0].tee, TeeKind::Sim);
        assert_eq!(config.daemon.health_failures, 3);
    }
}
