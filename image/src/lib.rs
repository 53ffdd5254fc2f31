//! Enclave VM images: what `cloister image build` writes and `cloisterd`
//! boots. An image is a directory holding a kernel, an initramfs whose
//! `/init` is a static `cloister-enclave` with its measured configuration and
//! policy bundle, the kernel command line, optionally the firmware, and
//! `image.json` describing all of them with their digests and the launch
//! measurements the hardware will report.
//!
//! Images are reproducible: the same inputs give byte-identical files, so a
//! data owner can rebuild one and compare before trusting its measurement.
//! Sealed bundles are not part of an image; the enclave gets them from the
//! host as ciphertext.

pub mod cpio;
pub mod kernel;
mod walk;

use std::path::{Path, PathBuf};

use cloister_attestation::sim::sim_measurement;
use cloister_attestation::types::Measurement;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

pub use kernel::{Kernel, KernelError, DEFAULT_MODULES};

/// `image.json`'s format tag.
pub const FORMAT: &str = "cloister-image/1";
/// Names of the files in an image directory.
pub const MANIFEST_FILE: &str = "image.json";
/// The kernel.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs.
pub const INITRD_FILE: &str = "initrd.img";
/// The firmware, when the image names one.
pub const FIRMWARE_FILE: &str = "firmware.fd";
/// The enclave's port inside the guest; the host forwards a loopback port here.
pub const GUEST_PORT: u16 = 8443;
/// The guest's address on QEMU's user-mode network (QEMU's default for
/// the first guest; the host's loopback is 10.0.2.2 from inside).
pub const GUEST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 15);
/// The user network's prefix length.
pub const GUEST_PREFIX: u8 = 24;
/// Where, inside the guest, the host's 9p shares are mounted.
pub const GUEST_AUDIT_DIR: &str = "/audit";
/// The read-only share holding the sealed bundles, one file per bundle name.
pub const GUEST_SEALED_DIR: &str = "/sealed";
/// The 9p mount tags the host must export.
pub const AUDIT_TAG: &str = "cloister-audit";
/// The sealed-bundle share's tag.
pub const SEALED_TAG: &str = "cloister-sealed";
/// The module load order inside the initramfs.
pub const MODULE_LIST: &str = "lib/modules/cloister.load";

/// How the image will be isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageTee {
    /// An ordinary VM carrying INSECURE sim evidence: development and CI.
    Vm,
    /// An AMD SEV-SNP guest, measured direct boot.
    Snp,
    /// An Intel TDX trust domain.
    Tdx,
}

impl ImageTee {
    /// Its name in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vm => "vm",
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        }
    }
}

/// Why an image cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// "read", "write", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel tree is unusable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The initramfs could not be assembled.
    #[error(transparent)]
    Cpio(#[from] cpio::CpioError),
    /// The enclave binary would not run as `/init`.
    #[error("{path} cannot be the guest's /init: {reason}")]
    Binary {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The inputs do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// `image.json` is missing, malformed, or does not describe the files.
    #[error("image {dir}: {reason}")]
    Manifest {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What to build an image from.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// How the image will be isolated.
    pub tee: ImageTee,
    /// The extracted `linux-image-*` package.
    pub kernel_tree: PathBuf,
    /// Modules to load at boot (dependencies are added).
    pub modules: Vec<String>,
    /// The static `cloister-enclave` binary.
    pub enclave_binary: PathBuf,
    /// The enclave's image directory: `enclave.toml` and its policy bundle.
    pub enclave_dir: PathBuf,
    /// Firmware to boot with (OVMF for SNP, TDVF for TDX; optional for vm,
    /// which boots the kernel directly under QEMU's default BIOS).
    pub firmware: Option<PathBuf>,
    /// Extra kernel parameters (before the enclave's own arguments).
    pub extra_kernel_args: Vec<String>,
    /// vCPUs the launch measurement is computed for.
    pub vcpus: u32,
    /// QEMU CPU model of an SNP launch (part of its VMSAs).
    pub vcpu_type: String,
}

/// A file of the image and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Its name in the image directory.
    pub file: String,
    /// SHA-256 of its bytes (what SNP kernel hashes and TDX RTMRs use).
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

impl FileDigest {
    fn of(file: &str, bytes: &[u8]) -> Self {
        Self {
            file: file.to_owned(),
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        }
    }
}

/// The launch measurements the image will report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedMeasurements {
    /// `vm`: the sim measurement of the enclave binary and configuration
    /// (INSECURE evidence; it only catches the wrong image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<Measurement>,
    /// `snp`: the launch digest for `vcpus` vCPUs of `vcpu_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<Measurement>,
    /// `tdx`: MRTD (the firmware) and `RTMR[1]/[2]` (kernel; command line and
    /// initramfs) of the direct boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxMeasurements>,
    /// What could not be computed for this TEE, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_computed: Option<String>,
}

/// The TDX registers an image's launch determines; `RTMR[0]` is not among
/// them (see [`TDX_RTMR0_NOT_COMPUTED`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxMeasurements {
    /// The TDVF firmware, as QEMU and KVM add it.
    pub mrtd: Measurement,
    /// The kernel's Authenticode digest and the boot-services events.
    pub rtmr1: Measurement,
    /// The command line and the initramfs, as the kernel's EFI stub
    /// measures them.
    pub rtmr2: Measurement,
}

/// Why a tdx image's manifest has no `RTMR[0]`.
pub const TDX_RTMR0_NOT_COMPUTED: &str = "RTMR[0] (the TD HOB, the firmware's variables and the ACPI tables QEMU generates) depends on the QEMU version and the whole machine configuration, not on the image: pin it from a reference launch's quote";

/// `image.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// [`FORMAT`].
    pub format: String,
    /// How it is to be isolated.
    pub tee: ImageTee,
    /// The kernel release.
    pub kernel_release: String,
    /// The kernel.
    pub kernel: FileDigest,
    /// The initramfs.
    pub initrd: FileDigest,
    /// The firmware, if any.
    pub firmware: Option<FileDigest>,
    /// The complete kernel command line (measured with the kernel on SNP
    /// and TDX: the host cannot change it).
    pub cmdline: String,
    /// SHA-384 of the enclave binary (`/init`).
    pub enclave_sha384: String,
    /// SHA-384 of `enclave.toml`.
    pub config_sha384: String,
    /// Modules loaded at boot, in order.
    pub modules: Vec<String>,
    /// vCPUs the measurements are for.
    pub vcpus: u32,
    /// The QEMU CPU model the SNP measurement is for (`snp` images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_type: Option<String>,
    /// The guest's port for the relay.
    pub guest_port: u16,
    /// The measurements.
    pub expected: ExpectedMeasurements,
}

/// An image read back from its directory, its files checked against the
/// manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ImageManifest,
}

impl Image {
    /// Path of the kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(KERNEL_FILE)
    }
    /// Path of the initramfs.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(INITRD_FILE)
    }
    /// Path of the firmware, when the image has one.
    pub fn firmware(&self) -> Option<PathBuf> {
        self.manifest
            .firmware
            .as_ref()
            .map(|_| self.dir.join(FIRMWARE_FILE))
    }

    /// Reads `dir/image.json` and checks every file it names has the digest
    /// it records: a swapped kernel or initramfs is refused here, before a
    /// launch that would only fail attestation later.
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::Manifest {
            dir: dir.to_owned(),
            reason,
        };
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read(&path).map_err(|e| bad(format!("cannot read {MANIFEST_FILE}: {e}")))?;
        let manifest: ImageManifest = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("{MANIFEST_FILE} is invalid: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "format {:?} is not {FORMAT:?}",
                manifest.format
            )));
        }
        let mut files = vec![&manifest.kernel, &manifest.initrd];
        files.extend(manifest.firmware.as_ref());
        for expected in files {
            let file = dir.join(&expected.file);
            let bytes = std::fs::read(&file)
                .map_err(|e| bad(format!("cannot read {}: {e}", expected.file)))?;
            let actual = FileDigest::of(&expected.file, &bytes);
            if &actual != expected {
                return Err(bad(format!(
                    "{} does not match the manifest (sha256 {} is not {})",
                    expected.file, actual.sha256, expected.sha256
                )));
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
        })
    }
}

/// The kernel command line of an image: the console, no reboot loops, and
/// after `--` the enclave's own arguments (the kernel hands those to /init).
pub fn cmdline(extra_kernel_args: &[String]) -> String {
    let mut parts: Vec<String> = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    parts.extend(extra_kernel_args.iter().cloned());
    parts.push("--".into());
    for arg in [
        "--guest-init".to_owned(),
        format!("--guest-address={GUEST_IP}/{GUEST_PREFIX}"),
        "--image=/image".to_owned(),
        format!("--listen=0.0.0.0:{GUEST_PORT}"),
        format!("--listen-vsock={GUEST_PORT}"),
        format!("--audit-dir={GUEST_AUDIT_DIR}"),
        format!("--sealed-dir={GUEST_SEALED_DIR}"),
    ] {
        parts.push(arg);
    }
    parts.join(" ")
}

/// Checks the binary is a static x86-64 ELF executable: the initramfs has
/// no dynamic loader or libraries.
fn check_static(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let bad = |reason: String| ImageError::Binary {
        path: path.to_owned(),
        reason,
    };
    let elf = ElfFile64::<object::Endianness>::parse(bytes)
        .map_err(|e| bad(format!("not a 64-bit ELF file: {e}")))?;
    let endian = elf.endian();
    if elf.elf_header().e_machine.get(endian) != object::elf::EM_X86_64 {
        return Err(bad("not an x86-64 binary".into()));
    }
    for header in elf.elf_program_headers() {
        if header.p_type(endian) == object::elf::PT_INTERP {
            return Err(bad(
                "it is dynamically linked (build it for x86_64-unknown-linux-musl)".into(),
            ));
        }
    }
    Ok(())
}

/// The `tee` an enclave.toml asks for, checked against the image's TEE: a
/// `vm` image carries sim evidence, a CVM image must not.
fn check_config_tee(tee: ImageTee, config: &[u8]) -> Result<(), ImageError> {
    let text = std::str::from_utf8(config)
        .map_err(|_| ImageError::Invalid("enclave.toml is not UTF-8".into()))?;
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ImageError::Invalid(format!("enclave.toml is invalid: {e}")))?;
    let configured = table.get("tee").and_then(|v| v.as_str()).unwrap_or("auto");
    let fits = match tee {
        ImageTee::Vm => configured == "sim",
        ImageTee::Snp => configured == "snp" || configured == "auto",
        ImageTee::Tdx => configured == "tdx" || configured == "auto",
    };
    if fits {
        Ok(())
    } else {
        Err(ImageError::Invalid(format!(
            "enclave.toml has tee = {configured:?}, which a {} image cannot carry ({})",
            tee.name(),
            match tee {
                ImageTee::Vm => "an ordinary VM has no hardware TEE: use tee = \"sim\", INSECURE",
                _ =>
                    "use the image's TEE or \"auto\"; sim evidence must never come from a CVM image",
            }
        )))
    }
}

/// Every regular file under `dir`, relative paths sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let entries = walk::entries_below(dir).map_err(|(path, source)| ImageError::Io {
        action: "read",
        path,
        source,
    })?;
    let mut out = Vec::new();
    for (path, kind) in entries {
        if !kind.is_file() {
            return Err(ImageError::Invalid(format!(
                "{} is neither a file nor a directory; an image holds only those",
                path.display()
            )));
        }
        let relative = path
            .strip_prefix(dir)
            .map_err(|_| {
                ImageError::Invalid(format!("{} escapes {}", path.display(), dir.display()))
            })?
            .to_str()
            .ok_or_else(|| ImageError::Invalid(format!("{} is not a UTF-8 path", path.display())))?
            .to_owned();
        out.push((relative, path));
    }
    out.sort();
    Ok(out)
}

/// The initramfs for `spec`, with the kernel's modules.
fn initramfs(spec: &ImageSpec, kernel: &Kernel, binary: Vec<u8>) -> Result<Vec<u8>, ImageError> {
    let mut archive = cpio::Archive::new();
    archive.file("init", binary, true)?;
    // The kernel opens /dev/console for /init's stdio before devtmpfs exists.
    archive.char_device("dev/console", 5, 1)?;
    for dir in ["proc", "sys", "tmp", "audit", "sealed"] {
        archive.directory(dir)?;
    }
    for (relative, path) in files_under(&spec.enclave_dir)? {
        let bytes = std::fs::read(&path).map_err(io("read", &path))?;
        archive.file(&format!("image/{relative}"), bytes, false)?;
    }
    let mut order = String::new();
    for module in &kernel.modules {
        let path = format!("lib/modules/{}/{}", kernel.release, module.relative);
        order.push_str(&path);
        order.push('\n');
        archive.file(&path, module.bytes.clone(), false)?;
    }
    archive.file(MODULE_LIST, order.into_bytes(), false)?;
    Ok(archive.to_bytes())
}

/// The SNP launch digest of measured direct boot: the firmware, the hashes
/// table of kernel, initramfs and command line, one VMSA per vCPU.
fn snp_measurement(
    spec: &ImageSpec,
    firmware: Option<&[u8]>,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<Measurement, ImageError> {
    use cloister_attestation::measure::{
        snp_launch_digest, KernelHashes, OvmfFirmware, SnpLaunchConfig, VcpuType,
    };
    let invalid = |e: cloister_attestation::measure::MeasureError| {
        ImageError::Invalid(format!(
            "the SNP launch measurement cannot be computed: {e}"
        ))
    };
    let firmware =
        firmware.ok_or_else(|| ImageError::Invalid("an snp image needs --firmware".into()))?;
    let firmware = OvmfFirmware::parse(firmware).map_err(invalid)?;
    if !firmware.supports_kernel_hashes() {
        return Err(ImageError::Invalid(
            "the firmware has no SNP kernel-hashes section, so QEMU's kernel-hashes=on cannot measure the kernel, initramfs and command line (Debian's OVMF.fd is such a build; use an AmdSev OVMF)".into(),
        ));
    }
    let vcpu_type: VcpuType = spec.vcpu_type.parse().map_err(invalid)?;
    let mut config = SnpLaunchConfig::qemu(spec.vcpus, vcpu_type);
    config.kernel_hashes = Some(KernelHashes::new(kernel, Some(initrd), Some(cmdline)));
    snp_launch_digest(&firmware, &config).map_err(invalid)
}

/// MRTD of the TDVF and `RTMR[1]/[2]` of the direct boot. A kernel whose EFI
/// stub cannot measure into RTMRs is refused: its initramfs (the enclave)
/// and command line would be unmeasured on TDX.
fn tdx_measurements(
    firmware: Option<&[u8]>,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<TdxMeasurements, ImageError> {
    use cloister_attestation::measure::{
        tdx_direct_boot_rtmrs, tdx_mrtd, TdvfFirmware, TdxDirectBoot,
    };
    let invalid = |what: &str| {
        let what = what.to_owned();
        move |e: cloister_attestation::measure::MeasureError| {
            ImageError::Invalid(format!("the TDX {what} cannot be computed: {e}"))
        }
    };
    let firmware =
        firmware.ok_or_else(|| ImageError::Invalid("a tdx image needs --firmware".into()))?;
    let firmware = TdvfFirmware::parse(firmware).map_err(invalid("MRTD"))?;
    let mrtd = tdx_mrtd(&firmware).map_err(invalid("MRTD"))?;
    let rtmrs = tdx_direct_boot_rtmrs(&TdxDirectBoot {
        kernel,
        initrd,
        cmdline,
    })
    .map_err(invalid("RTMRs"))?;
    Ok(TdxMeasurements {
        mrtd,
        rtmr1: rtmrs.rtmr1,
        rtmr2: rtmrs.rtmr2,
    })
}

/// Builds the image into `out` (created if needed; the files it writes are
/// replaced) and returns its manifest.
pub fn build(spec: &ImageSpec, out: &Path) -> Result<ImageManifest, ImageError> {
    if spec.vcpus == 0 {
        return Err(ImageError::Invalid("vcpus must be at least 1".into()));
    }
    if matches!(spec.tee, ImageTee::Snp | ImageTee::Tdx) && spec.firmware.is_none() {
        return Err(ImageError::Invalid(format!(
            "a {} image needs --firmware ({}): the firmware is part of the launch measurement",
            spec.tee.name(),
            if spec.tee == ImageTee::Snp {
                "an AmdSev OVMF build with a kernel-hashes table"
            } else {
                "TDVF"
            }
        )));
    }
    let binary = std::fs::read(&spec.enclave_binary).map_err(io("read", &spec.enclave_binary))?;
    check_static(&spec.enclave_binary, &binary)?;
    let config_path = spec.enclave_dir.join("enclave.toml");
    let config = std::fs::read(&config_path).map_err(io("read", &config_path))?;
    check_config_tee(spec.tee, &config)?;
    let wanted: Vec<&str> = spec.modules.iter().map(String::as_str).collect();
    let kernel = Kernel::from_tree(&spec.kernel_tree, &wanted)?;

    let binary_sha384: [u8; 48] = Sha384::digest(&binary).into();
    let config_sha384 = hex::encode(Sha384::digest(&config));
    let initrd = initramfs(spec, &kernel, binary)?;
    let cmdline = cmdline(&spec.extra_kernel_args);
    let firmware = match &spec.firmware {
        Some(path) => Some(std::fs::read(path).map_err(io("read", path))?),
        None => None,
    };

    let expected = match spec.tee {
        ImageTee::Vm => ExpectedMeasurements {
            sim: Some(sim_measurement(&binary_sha384, &config)),
            snp: None,
            tdx: None,
            not_computed: None,
        },
        ImageTee::Snp => ExpectedMeasurements {
            sim: None,
            snp: Some(snp_measurement(
                spec,
                firmware.as_deref(),
                &kernel.vmlinuz,
                &initrd,
                &cmdline,
            )?),
            tdx: None,
            not_computed: None,
        },
        ImageTee::Tdx => ExpectedMeasurements {
            sim: None,
            snp: None,
            tdx: Some(tdx_measurements(
                firmware.as_deref(),
                &kernel.vmlinuz,
                &initrd,
                &cmdline,
            )?),
            not_computed: Some(TDX_RTMR0_NOT_COMPUTED.into()),
        },
    };

    std::fs::create_dir_all(out).map_err(io("create", out))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), ImageError> {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(io("write", &path))
    };
    write(KERNEL_FILE, &kernel.vmlinuz)?;
    write(INITRD_FILE, &initrd)?;
    if let Some(firmware) = &firmware {
        write(FIRMWARE_FILE, firmware)?;
    }
    let manifest = ImageManifest {
        format: FORMAT.into(),
        tee: spec.tee,
        kernel_release: kernel.release.clone(),
        kernel: FileDigest::of(KERNEL_FILE, &kernel.vmlinuz),
        initrd: FileDigest::of(INITRD_FILE, &initrd),
        firmware: firmware
            .as_deref()
            .map(|f| FileDigest::of(FIRMWARE_FILE, f)),
        cmdline,
        enclave_sha384: hex::encode(binary_sha384),
        config_sha384,
        modules: kernel.modules.iter().map(|m| m.name.clone()).collect(),
        vcpus: spec.vcpus,
        vcpu_type: (spec.tee == ImageTee::Snp).then(|| spec.vcpu_type.clone()),
        guest_port: GUEST_PORT,
        expected,
    };
    let mut json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| ImageError::Invalid(format!("cannot encode the manifest: {e}")))?;
    json.push('\n');
    write(MANIFEST_FILE, json.as_bytes())?;
    Ok(manifest)
}
