//! `cloister measure`: the launch measurement an enclave image will report,
//! computed before launch so it can go into an appraisal policy.
//!
//! `--tee sim` measures a `cloister-enclave` binary and image (INSECURE
//! simulated TEE); `--tee snp` computes the AMD SEV-SNP launch digest of an
//! OVMF guest from its launch inputs, as virtee's `sev-snp-measure --mode
//! snp` does (`scripts/sev-snp-measure` runs that reference to cross-check);
//! `--tee tdx` computes the Intel TDX MRTD of a TDVF image as QEMU and KVM
//! add it to a trust domain.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use cloister_attestation::measure::{
    snp_firmware_digest, snp_launch_digest, tdx_direct_boot_rtmrs, tdx_mrtd, CpuSignature,
    KernelHashes, OvmfFirmware, SnpLaunchConfig, TdvfFirmware, TdxDirectBoot, VcpuType, VmmType,
};
use cloister_attestation::sim::sim_measurement;
use cloister_attestation::types::Measurement;
use serde_json::json;
use sha2::{Digest, Sha256, Sha384};

/// TEEs whose measurement this release can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MeasuredTee {
    /// The INSECURE simulated TEE: needs --enclave-binary and --image.
    Sim,
    /// AMD SEV-SNP launch digest of an OVMF guest: needs --firmware, --vcpus
    /// and (for QEMU) --vcpu-type or --vcpu-sig.
    Snp,
    /// Intel TDX MRTD of a TDVF (OVMF IntelTdx) image: needs --firmware;
    /// with --kernel, --initrd and --append also `RTMR[1]` and `RTMR[2]` of
    /// that direct boot.
    Tdx,
}

/// Arguments of `cloister measure`.
#[derive(Debug, Args)]
pub(crate) struct MeasureArgs {
    /// Which TEE's measurement to compute.
    #[arg(long, value_enum)]
    tee: MeasuredTee,
    /// sim: the `cloister-enclave` binary the image runs.
    #[arg(
        long,
        value_name = "FILE",
        required_if_eq("tee", "sim"),
        help_heading = "--tee sim"
    )]
    enclave_binary: Option<PathBuf>,
    /// sim: the image directory (holds enclave.toml).
    #[arg(
        long,
        value_name = "DIR",
        required_if_eq("tee", "sim"),
        help_heading = "--tee sim"
    )]
    image: Option<PathBuf>,
    /// snp: the OVMF firmware image (e.g. OVMF.fd) the guest boots; tdx:
    /// the TDVF image (e.g. OVMF.inteltdx.ms.fd).
    #[arg(
        long,
        value_name = "FILE",
        required_if_eq_any([("tee", "snp"), ("tee", "tdx")]),
        help_heading = "--tee snp, --tee tdx"
    )]
    firmware: Option<PathBuf>,
    /// snp: kernel for measured direct boot (-kernel); needs an AmdSev OVMF
    /// build, whose metadata has a kernel-hashes page. tdx: the kernel
    /// whose boot `RTMR[1]` and `RTMR[2]` record (with --initrd and --append).
    #[arg(long, value_name = "FILE", help_heading = "--tee snp, --tee tdx")]
    kernel: Option<PathBuf>,
    /// snp, tdx: initrd (-initrd); needs --kernel.
    #[arg(
        long,
        value_name = "FILE",
        requires = "kernel",
        help_heading = "--tee snp, --tee tdx"
    )]
    initrd: Option<PathBuf>,
    /// snp, tdx: kernel command line (-append); needs --kernel.
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        help_heading = "--tee snp, --tee tdx"
    )]
    append: Option<String>,
    /// snp: number of vCPUs (-smp).
    #[arg(
        long,
        value_name = "N",
        required_if_eq("tee", "snp"),
        help_heading = "--tee snp"
    )]
    vcpus: Option<u32>,
    /// snp: QEMU CPU model (-cpu), e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa-v1.
    #[arg(
        long,
        value_name = "TYPE",
        value_parser = parse_vcpu_type,
        conflicts_with = "vcpu_sig",
        help_heading = "--tee snp"
    )]
    vcpu_type: Option<VcpuType>,
    /// snp: CPUID signature instead of --vcpu-type, for models not listed
    /// (0x-prefixed hex, or decimal).
    #[arg(long, value_name = "HEX", value_parser = parse_u32, help_heading = "--tee snp")]
    vcpu_sig: Option<u32>,
    /// snp: the VMM: QEMU, ec2 or gce.
    #[arg(long, value_name = "VMM", default_value = "QEMU", value_parser = parse_vmm, help_heading = "--tee snp")]
    vmm_type: VmmType,
    /// snp: VMSA SEV_FEATURES (0x-prefixed hex, or decimal, as
    /// sev-snp-measure takes it); bit 0 (SNPActive) must be set.
    #[arg(long, value_name = "HEX", value_parser = parse_u64, help_heading = "--tee snp")]
    guest_features: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_vcpu_type(s: &str) -> Result<VcpuType, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_vmm(s: &str) -> Result<VmmType, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// `0x`-prefixed hex or decimal, like Python's `int(s, 0)`.
fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{s:?} is not a 0x-prefixed hex or decimal number: {e}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_u64(s)?;
    u32::try_from(v).map_err(|_| format!("{s} does not fit in 32 bits"))
}

/// SHA-384 of a file, streamed.
pub(crate) fn sha384_file(path: &Path) -> anyhow::Result<[u8; 48]> {
    Ok(digest_file(path)?.sha384)
}

/// A launch input's size and digests, for the JSON report.
struct FileDigests {
    size: u64,
    sha256: [u8; 32],
    sha384: [u8; 48],
}

impl FileDigests {
    fn json(&self, path: &Path) -> serde_json::Value {
        json!({
            "path": path.display().to_string(),
            "size": self.size,
            "sha256": hex::encode(self.sha256),
            "sha384": hex::encode(self.sha384),
        })
    }
}

/// SHA-256 and SHA-384 of a file in one streamed pass.
fn digest_file(path: &Path) -> anyhow::Result<FileDigests> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut sha256 = Sha256::new();
    let mut sha384 = Sha384::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        match buf.get(..n) {
            Some(chunk) if n > 0 => {
                sha256.update(chunk);
                sha384.update(chunk);
                size += n as u64;
            }
            _ => break,
        }
    }
    Ok(FileDigests {
        size,
        sha256: sha256.finalize().into(),
        sha384: sha384.finalize().into(),
    })
}

/// The sim measurement of `binary` running `image`.
pub(crate) fn sim_image_measurement(binary: &Path, image: &Path) -> anyhow::Result<Measurement> {
    let config_path = image.join("enclave.toml");
    let config = std::fs::read(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    Ok(sim_measurement(&sha384_file(binary)?, &config))
}

pub(crate) fn run(args: &MeasureArgs) -> anyhow::Result<()> {
    match args.tee {
        MeasuredTee::Sim => run_sim(args),
        MeasuredTee::Snp => run_snp(args),
        MeasuredTee::Tdx => run_tdx(args),
    }
}

/// Options that belong to the other TEE are an error, not silently ignored.
fn reject_foreign(tee: &str, given: &[(&str, bool)]) -> anyhow::Result<()> {
    let foreign: Vec<&str> = given
        .iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| *name)
        .collect();
    if !foreign.is_empty() {
        bail!("{} cannot be used with --tee {tee}", foreign.join(", "));
    }
    Ok(())
}

fn run_sim(args: &MeasureArgs) -> anyhow::Result<()> {
    reject_foreign(
        "sim",
        &[
            ("--firmware", args.firmware.is_some()),
            ("--kernel", args.kernel.is_some()),
            ("--initrd", args.initrd.is_some()),
            ("--append", args.append.is_some()),
            ("--vcpus", args.vcpus.is_some()),
            ("--vcpu-type", args.vcpu_type.is_some()),
            ("--vcpu-sig", args.vcpu_sig.is_some()),
            ("--guest-features", args.guest_features.is_some()),
            ("--vmm-type", args.vmm_type != VmmType::Qemu),
        ],
    )?;
    let (Some(binary), Some(image)) = (&args.enclave_binary, &args.image) else {
        bail!("--tee sim needs --enclave-binary FILE and --image DIR");
    };
    let measurement = sim_image_measurement(binary, image)?;
    if args.json {
        println!(
            "{:#}",
            json!({ "tee": "sim", "insecure": true, "measurement": measurement })
        );
    } else {
        println!("{measurement}");
        eprintln!("(sim measurement: INSECURE, for development policies only)");
    }
    Ok(())
}

/// The largest image mapped below 4 GiB; read into memory only if smaller.
const MAX_FIRMWARE_BYTES: u64 = 1 << 32;

/// Reads a firmware image, refusing one too large to map below 4 GiB
/// before reading it.
fn read_firmware(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .len();
    if size > MAX_FIRMWARE_BYTES {
        bail!(
            "{} is {size} bytes, larger than the 4 GiB below which firmware is mapped",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn run_tdx(args: &MeasureArgs) -> anyhow::Result<()> {
    reject_foreign(
        "tdx",
        &[
            ("--enclave-binary", args.enclave_binary.is_some()),
            ("--image", args.image.is_some()),
            ("--vcpus", args.vcpus.is_some()),
            ("--vcpu-type", args.vcpu_type.is_some()),
            ("--vcpu-sig", args.vcpu_sig.is_some()),
            ("--guest-features", args.guest_features.is_some()),
            ("--vmm-type", args.vmm_type != VmmType::Qemu),
        ],
    )?;
    let Some(firmware_path) = &args.firmware else {
        bail!("--tee tdx needs --firmware FILE");
    };
    let image = read_firmware(firmware_path)?;
    let firmware = TdvfFirmware::parse(&image)
        .with_context(|| format!("{} is not a TDVF image", firmware_path.display()))?;
    let mrtd = tdx_mrtd(&firmware)
        .with_context(|| format!("cannot measure {}", firmware_path.display()))?;
    warn_if_secure_boot(&firmware, firmware_path);
    // RTMR[1] and [2] need the whole direct boot: a kernel alone would pin
    // neither the initrd nor the command line.
    let boot = match (&args.kernel, &args.initrd, &args.append) {
        (None, None, None) => None,
        (Some(kernel), Some(initrd), Some(append)) => Some((kernel, initrd, append)),
        _ => bail!("--tee tdx measures a direct boot with all of --kernel, --initrd and --append, or none of them"),
    };
    let rtmrs = match boot {
        None => None,
        Some((kernel_path, initrd_path, append)) => {
            let kernel = std::fs::read(kernel_path)
                .with_context(|| format!("cannot read {}", kernel_path.display()))?;
            let initrd = std::fs::read(initrd_path)
                .with_context(|| format!("cannot read {}", initrd_path.display()))?;
            let rtmrs = tdx_direct_boot_rtmrs(&TdxDirectBoot {
                kernel: &kernel,
                initrd: &initrd,
                cmdline: append,
            })
            .with_context(|| {
                format!(
                    "cannot compute RTMR[1] and RTMR[2] for {}",
                    kernel_path.display()
                )
            })?;
            Some((rtmrs, digest_file(kernel_path)?, digest_file(initrd_path)?))
        }
    };
    if args.json {
        let sections: Vec<_> = firmware
            .sections()
            .iter()
            .map(|s| {
                json!({
                    "kind": format!("{:?}", s.kind),
                    "gpa": format!("{:#x}", s.memory_address),
                    "size": s.memory_data_size,
                    "mr_extend": s.extends_mrtd(),
                })
            })
            .collect();
        let mut report = json!({
            "tee": "tdx",
            "mrtd": mrtd,
            "inputs": { "firmware": digest_file(firmware_path)?.json(firmware_path) },
            "tdvf_sections": sections,
            "secure_boot_enrolled": firmware.secure_boot_enrolled(),
            "rtmr0": serde_json::Value::Null,
            "rtmr0_not_computed": RTMR0_NOT_COMPUTED,
        });
        if let (Some((rtmrs, kernel, initrd)), Some(obj)) = (&rtmrs, report.as_object_mut()) {
            obj.insert("rtmr1".into(), json!(rtmrs.rtmr1));
            obj.insert("rtmr2".into(), json!(rtmrs.rtmr2));
            obj.insert(
                "events".into(),
                json!(rtmrs
                    .events
                    .iter()
                    .map(|e| json!({ "rtmr": e.rtmr, "event": e.event, "digest": e.digest }))
                    .collect::<Vec<_>>()),
            );
            if let (Some(k), Some(i), Some(inputs)) = (
                &args.kernel,
                &args.initrd,
                obj.get_mut("inputs").and_then(|v| v.as_object_mut()),
            ) {
                inputs.insert("kernel".into(), kernel.json(k));
                inputs.insert("initrd".into(), initrd.json(i));
                inputs.insert("cmdline".into(), json!(args.append));
            }
        }
        println!("{report:#}");
    } else if let Some((rtmrs, _, _)) = &rtmrs {
        println!("mrtd  {mrtd}");
        println!("rtmr1 {}", rtmrs.rtmr1);
        println!("rtmr2 {}", rtmrs.rtmr2);
        eprintln!("(rtmr0 not computed: {RTMR0_NOT_COMPUTED})");
    } else {
        println!("{mrtd}");
    }
    Ok(())
}

/// Warns when a TDVF enforces Secure Boot: the measurements are still
/// right, but in a TD such firmware refuses to direct-boot a kernel its db
/// does not authorise, so the guest would never reach them.
pub(crate) fn warn_if_secure_boot(firmware: &TdvfFirmware<'_>, path: &Path) {
    if firmware.secure_boot_enrolled() == Some(true) {
        eprintln!(
            "warning: {} enforces UEFI Secure Boot (a Platform Key is enrolled). In a TD, edk2 refuses to \
             direct-boot a kernel its db does not authorise (Debian's kernels are signed for shim, not for \
             Microsoft's db): use a TDVF built without Secure Boot, or a kernel signed with a key in its db.",
            path.display()
        );
    }
}

/// Why `cloister measure` prints no `RTMR[0]`.
pub(crate) const RTMR0_NOT_COMPUTED: &str = "it holds the TD HOB, the firmware's variables and the ACPI tables QEMU generates for the whole machine configuration; pin it from a reference launch's quote";

fn run_snp(args: &MeasureArgs) -> anyhow::Result<()> {
    reject_foreign(
        "snp",
        &[
            ("--enclave-binary", args.enclave_binary.is_some()),
            ("--image", args.image.is_some()),
        ],
    )?;
    let (Some(firmware_path), Some(vcpus)) = (&args.firmware, args.vcpus) else {
        bail!("--tee snp needs --firmware FILE and --vcpus N");
    };
    let vcpu_signature = match (args.vcpu_type, args.vcpu_sig) {
        (Some(t), _) => Some(t.signature()),
        (None, Some(sig)) => Some(CpuSignature(sig)),
        (None, None) if args.vmm_type == VmmType::Qemu => bail!(
            "--tee snp with QEMU needs --vcpu-type TYPE (one of {}) or --vcpu-sig HEX",
            VcpuType::ALL
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => None,
    };

    let image = read_firmware(firmware_path)?;
    let firmware = OvmfFirmware::parse(&image).with_context(|| {
        format!(
            "{} is not an SEV-capable OVMF image",
            firmware_path.display()
        )
    })?;

    let kernel = args.kernel.as_deref().map(digest_file).transpose()?;
    let initrd = args.initrd.as_deref().map(digest_file).transpose()?;
    let kernel_hashes = kernel.as_ref().map(|k| KernelHashes {
        kernel: k.sha256,
        initrd: initrd
            .as_ref()
            .map_or_else(|| Sha256::digest([]).into(), |i| i.sha256),
        cmdline: KernelHashes::cmdline_sha256(args.append.as_deref()),
    });
    let config = SnpLaunchConfig {
        vcpus,
        vcpu_signature,
        vmm: args.vmm_type,
        guest_features: args.guest_features.unwrap_or(0x1),
        kernel_hashes,
    };
    let measurement = snp_launch_digest(&firmware, &config)
        .with_context(|| format!("cannot measure {}", firmware_path.display()))?;

    if args.json {
        let firmware_digests = digest_file(firmware_path)?;
        let mut firmware_json = firmware_digests.json(firmware_path);
        if let Some(obj) = firmware_json.as_object_mut() {
            // The seed sev-snp-measure's --snp-ovmf-hash takes.
            let seed = snp_firmware_digest(&firmware)?;
            obj.insert("snp_firmware_digest".into(), json!(seed));
        }
        let file_json =
            |path: &Option<PathBuf>, digests: &Option<FileDigests>| match (path, digests) {
                (Some(p), Some(d)) => d.json(p),
                _ => serde_json::Value::Null,
            };
        println!(
            "{:#}",
            json!({
                "tee": "snp",
                "measurement": measurement,
                "vcpus": vcpus,
                "vcpu_type": args.vcpu_type.map(|t| t.name()),
                "vcpu_sig": vcpu_signature.map(|s| format!("{:#x}", s.0)),
                "vmm_type": args.vmm_type.name(),
                "guest_features": format!("{:#x}", config.guest_features),
                "inputs": {
                    "firmware": firmware_json,
                    "kernel": file_json(&args.kernel, &kernel),
                    "initrd": file_json(&args.initrd, &initrd),
                    "cmdline": args.kernel.as_ref().map(|_| json!({
                        "value": args.append.clone().unwrap_or_default(),
                        "sha256": hex::encode(KernelHashes::cmdline_sha256(args.append.as_deref())),
                    })),
                },
            })
        );
    } else {
        println!("{measurement}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        measure: MeasureArgs,
    }

    fn parse(args: &[&str]) -> Result<MeasureArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("measure").chain(args.iter().copied()))
            .map(|c| c.measure)
    }

    const FW: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../attestation/tests/fixtures/measure/ovmf_AmdSev_suffix.bin"
    );

    #[test]
    fn each_tee_requires_its_own_inputs() {
        let e = parse(&["--tee", "sim"]).err().unwrap().to_string();
        assert!(
            e.contains("--enclave-binary") && e.contains("--image"),
            "{e}"
        );
        let e = parse(&["--tee", "snp"]).err().unwrap().to_string();
        assert!(e.contains("--firmware") && e.contains("--vcpus"), "{e}");
        assert!(parse(&["--tee", "snp", "--firmware", FW, "--vcpus", "1"]).is_ok());
        let e = parse(&[
            "--tee",
            "snp",
            "--firmware",
            FW,
            "--vcpus",
            "1",
            "--append",
            "x",
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("--kernel"), "{e}");
        let e = parse(&[
            "--tee",
            "snp",
            "--firmware",
            FW,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-Zen9",
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("EPYC-Milan-v2"), "{e}");
    }

    #[test]
    fn foreign_and_missing_options_are_errors() {
        let args = parse(&[
            "--tee",
            "sim",
            "--enclave-binary",
            "b",
            "--image",
            "i",
            "--vcpus",
            "2",
        ])
        .unwrap();
        let e = run(&args).unwrap_err().to_string();
        assert_eq!(e, "--vcpus cannot be used with --tee sim");
        let args = parse(&[
            "--tee",
            "snp",
            "--firmware",
            FW,
            "--vcpus",
            "1",
            "--image",
            "i",
        ])
        .unwrap();
        assert_eq!(
            run(&args).unwrap_err().to_string(),
            "--image cannot be used with --tee snp"
        );
        let args = parse(&["--tee", "snp", "--firmware", FW, "--vcpus", "1"]).unwrap();
        assert!(run(&args).unwrap_err().to_string().contains("--vcpu-type"));
        let args = parse(&[
            "--tee",
            "snp",
            "--firmware",
            FW,
            "--vcpus",
            "1",
            "--vmm-type",
            "gce",
        ])
        .unwrap();
        assert!(run(&args).is_ok());
    }

    #[test]
    fn numbers_parse_as_sev_snp_measure_parses_them() {
        assert_eq!(parse_u64("0x21"), Ok(0x21));
        assert_eq!(parse_u64("33"), Ok(33));
        assert!(parse_u64("0xzz").is_err());
        assert!(parse_u32("0x1_0000_0000").is_err());
        assert!(parse_u32("0x100000000").is_err());
    }
}
