//! `cloister image`: build a reproducible enclave VM image and print the
//! launch measurements it will report, optionally as policy files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use cloister_image::{Image, ImageManifest, ImageSpec, ImageTee};

/// `cloister image ...`
#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build an image: kernel, initramfs with the enclave as /init, command
    /// line, firmware, and image.json with the expected measurements.
    Build(Box<BuildArgs>),
    /// Check an image's files against its manifest and print it.
    Inspect {
        /// The image directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The TEE an image is for.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TeeArg {
    /// An ordinary VM with INSECURE sim evidence (development, CI).
    Vm,
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Where to write the image (created; its files are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The TEE the image is for.
    #[arg(long, value_enum, default_value = "vm")]
    tee: TeeArg,
    /// An extracted Debian linux-image-* package (`scripts/fetch-kernel`
    /// prints where it put one).
    #[arg(long, value_name = "DIR")]
    kernel_tree: PathBuf,
    /// The static cloister-enclave (built for x86_64-unknown-linux-musl).
    #[arg(long, value_name = "FILE")]
    enclave_binary: PathBuf,
    /// The enclave's configuration directory: enclave.toml and its policy bundle.
    #[arg(long, value_name = "DIR")]
    enclave_dir: PathBuf,
    /// Firmware: an AmdSev OVMF for snp, TDVF for tdx; optional for vm.
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// A kernel module to load at boot, with its dependencies (repeat;
    /// default: virtio_pci, virtio_net, 9pnet_virtio, 9p).
    #[arg(long = "module", value_name = "NAME")]
    modules: Vec<String>,
    /// An extra kernel parameter (repeat); it becomes part of the measurement.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    kernel_args: Vec<String>,
    /// vCPUs the launch measurement is computed for.
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    /// QEMU CPU model of an SNP launch, part of its measurement (snp only).
    #[arg(long, default_value = "EPYC-v4")]
    vcpu_type: String,
    /// Also write an appraisal policy accepting exactly this image.
    #[arg(long, value_name = "FILE")]
    appraisal_policy: Option<PathBuf>,
    /// Also write a key-broker release-policy fragment for this image (all
    /// but `min_bundle_version`).
    #[arg(long, value_name = "FILE")]
    release_policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &ImageArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ImageCommand::Build(build) => run_build(build),
        ImageCommand::Inspect { dir, json } => {
            let image = Image::open(dir)?;
            print_manifest(&image.manifest, dir, *json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let tee = match args.tee {
        TeeArg::Vm => ImageTee::Vm,
        TeeArg::Snp => ImageTee::Snp,
        TeeArg::Tdx => ImageTee::Tdx,
    };
    let modules = if args.modules.is_empty() {
        cloister_image::DEFAULT_MODULES
            .iter()
            .map(|m| (*m).to_owned())
            .collect()
    } else {
        args.modules.clone()
    };
    let spec = ImageSpec {
        tee,
        kernel_tree: args.kernel_tree.clone(),
        modules,
        enclave_binary: args.enclave_binary.clone(),
        enclave_dir: args.enclave_dir.clone(),
        firmware: args.firmware.clone(),
        extra_kernel_args: args.kernel_args.clone(),
        vcpus: args.vcpus,
        vcpu_type: args.vcpu_type.clone(),
    };
    let manifest = cloister_image::build(&spec, &args.out)?;
    if let (ImageTee::Tdx, Some(path)) = (tee, &args.firmware) {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let firmware = cloister_attestation::measure::TdvfFirmware::parse(&bytes)?;
        crate::measure::warn_if_secure_boot(&firmware, path);
    }
    if let Some(path) = &args.appraisal_policy {
        let policy = appraisal_policy(&manifest, &args.enclave_dir, &args.out)?;
        std::fs::write(path, policy).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            eprintln!("appraisal policy written to {}", path.display());
        }
    }
    if let Some(path) = &args.release_policy {
        let fragment = release_fragment(&manifest, &args.enclave_dir, &args.out)?;
        std::fs::write(path, fragment)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            eprintln!("release-policy fragment written to {}", path.display());
        }
    }
    print_manifest(&manifest, &args.out, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_manifest(manifest: &ImageManifest, dir: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(manifest)?);
        return Ok(());
    }
    println!("image {} (tee {})", dir.display(), manifest.tee.name());
    println!(
        "  kernel   {} {} ({} bytes)",
        manifest.kernel_release, manifest.kernel.sha256, manifest.kernel.bytes
    );
    println!(
        "  initrd   {} ({} bytes; /init is the enclave, sha384 {})",
        manifest.initrd.sha256, manifest.initrd.bytes, manifest.enclave_sha384
    );
    if let Some(fw) = &manifest.firmware {
        println!("  firmware {} ({} bytes)", fw.sha256, fw.bytes);
    }
    println!("  modules  {}", manifest.modules.join(", "));
    println!("  cmdline  {}", manifest.cmdline);
    if let Some(sim) = &manifest.expected.sim {
        println!(
            "  expected sim measurement {sim}  (INSECURE: vm images carry simulated evidence)"
        );
    }
    if let Some(snp) = &manifest.expected.snp {
        println!(
            "  expected SNP launch digest {snp}  ({} vCPUs)",
            manifest.vcpus
        );
    }
    if let Some(tdx) = &manifest.expected.tdx {
        println!("  expected TDX MRTD  {}", tdx.mrtd);
        println!("  expected TDX RTMR1 {}  (kernel)", tdx.rtmr1);
        println!(
            "  expected TDX RTMR2 {}  (command line, initramfs)",
            tdx.rtmr2
        );
    }
    if let Some(why) = &manifest.expected.not_computed {
        println!("  not computed: {why}");
    }
    Ok(())
}

/// The `[policy] digest` of the enclave's configuration: the policy bundle
/// the appraisal policy should accept.
fn policy_digest(enclave_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = enclave_dir.join("enclave.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
    Ok(table
        .get("policy")
        .and_then(|p| p.get("digest"))
        .and_then(|d| d.as_str())
        .map(str::to_owned))
}

/// What pins this image in an appraisal policy: top-level keys, and the
/// TEE's table (name, body).
fn pinning(manifest: &ImageManifest) -> anyhow::Result<(String, &'static str, String)> {
    let expected = &manifest.expected;
    if let Some(sim) = &expected.sim {
        return Ok((
            "# INSECURE: a vm image carries simulated evidence, which proves nothing.\nallow_simulated = true\n".into(),
            "sim",
            format!("measurements = [\"{sim}\"]\n"),
        ));
    }
    if let Some(snp) = &expected.snp {
        return Ok((
            String::new(),
            "snp",
            format!(
                "measurements = [\"{snp}\"]\n# Pin your own hosts' chip IDs, and raise the minimum TCB to the one AMD currently\n# publishes for your processors: the values below accept any chip and any TCB.\nchip_ids = \"any\"\nminimum_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\n"
            ),
        ));
    }
    if let Some(tdx) = &expected.tdx {
        return Ok((
            String::new(),
            "tdx",
            format!(
                "# MRTD pins the TDVF firmware; RTMR1 the kernel; RTMR2 the command line and the\n\
                 # initramfs, which holds the enclave, its configuration and its policy bundle.\n\
                 mrtd = [\"{}\"]\n\
                 rtmr1 = [\"{}\"]\n\
                 rtmr2 = [\"{}\"]\n\
                 # RTMR0 holds the TD HOB, the firmware's variables and the ACPI tables QEMU generates\n\
                 # for the deployment's machine configuration; the host supplies those tables. Replace\n\
                 # \"any\" with the RTMR0 of a reference launch on your QEMU and configuration.\n\
                 rtmr0 = \"any\"\n\
                 # RTMR3 is extended by the guest at run time; MRCONFIGID and MROWNER are chosen by\n\
                 # the host, so they prove nothing here (the configuration is pinned by RTMR2).\n\
                 rtmr3 = \"any\"\n\
                 mr_config_id = \"any\"\n\
                 mr_owner = \"any\"\n\
                 accepted_tcb_statuses = [\"UpToDate\"]\n",
                tdx.mrtd, tdx.rtmr1, tdx.rtmr2
            ),
        ));
    }
    anyhow::bail!(
        "this image has no computed launch measurement, so no policy can pin it: {}",
        expected.not_computed.as_deref().unwrap_or("unknown reason")
    )
}

/// An appraisal policy accepting this image and its policy bundle, checked
/// by parsing it back before it is written.
fn appraisal_policy(
    manifest: &ImageManifest,
    enclave_dir: &Path,
    dir: &Path,
) -> anyhow::Result<String> {
    let (top, table, body) = pinning(manifest)?;
    let mut text = format!(
        "# Appraisal policy for the enclave image {} (tee {}), written by `cloister image build`.\n",
        dir.display(),
        manifest.tee.name()
    );
    if let Some(digest) = policy_digest(enclave_dir)? {
        text.push_str(&format!("policy_digests = [\"{digest}\"]\n"));
    }
    text.push_str(&top);
    text.push_str(&format!("\n[{table}]\n{body}"));
    cloister_attestation::policy::AppraisalPolicy::from_toml(&text)
        .context("the appraisal policy written for this image does not parse (a bug)")?;
    Ok(text)
}

/// A release-policy fragment for the key broker: everything but
/// `min_bundle_version`, which is the data owner's to choose per key.
/// Checked by parsing it back with a placeholder version.
fn release_fragment(
    manifest: &ImageManifest,
    enclave_dir: &Path,
    dir: &Path,
) -> anyhow::Result<String> {
    let (top, table, body) = pinning(manifest)?;
    let digests = match policy_digest(enclave_dir)? {
        Some(digest) => format!("[\"{digest}\"]"),
        None => anyhow::bail!(
            "enclave.toml pins no policy bundle digest ([policy] digest), which a release policy must name"
        ),
    };
    let text = format!(
        "# Release-policy fragment for the enclave image {} (tee {}), written by `cloister image build`.\n# Add min_bundle_version = N above it: the oldest bundle version this key may unseal.\npolicy_digests = {digests}\n\n[appraisal]\n{top}\n[appraisal.{table}]\n{body}",
        dir.display(),
        manifest.tee.name()
    );
    cloister_vault::kbs::policy::ReleasePolicy::from_toml(&format!(
        "min_bundle_version = 1\n{text}"
    ))
    .context("the release-policy fragment written for this image does not parse (a bug)")?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cloister_image::{ExpectedMeasurements, FileDigest};

    fn manifest(tee: ImageTee, expected: ExpectedMeasurements) -> ImageManifest {
        let file = |name: &str| FileDigest {
            file: name.into(),
            sha256: "00".repeat(32),
            bytes: 1,
        };
        ImageManifest {
            format: cloister_image::FORMAT.into(),
            tee,
            kernel_release: "6.1.0-47-amd64".into(),
            kernel: file("vmlinuz"),
            initrd: file("initrd.img"),
            firmware: None,
            cmdline: "console=ttyS0".into(),
            enclave_sha384: "00".repeat(48),
            config_sha384: "00".repeat(48),
            modules: vec![],
            vcpus: 2,
            vcpu_type: None,
            guest_port: 8443,
            expected,
        }
    }

    #[test]
    fn policies_pin_the_measurement_and_bundle_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let digest = "ab".repeat(32);
        std::fs::write(
            dir.path().join("enclave.toml"),
            format!("tee = \"snp\"\n[policy]\nbundle = \"policy\"\ndigest = \"{digest}\"\n"),
        )
        .unwrap();
        let measurement: cloister_attestation::types::Measurement =
            "cd".repeat(48).parse().unwrap();
        let snp = manifest(
            ImageTee::Snp,
            ExpectedMeasurements {
                sim: None,
                snp: Some(measurement),
                tdx: None,
                not_computed: None,
            },
        );
        let appraisal = appraisal_policy(&snp, dir.path(), dir.path()).unwrap();
        let parsed = cloister_attestation::policy::AppraisalPolicy::from_toml(&appraisal).unwrap();
        assert!(!parsed.allow_simulated);
        assert!(parsed.snp.unwrap().measurements.accepts(&measurement));
        let fragment = release_fragment(&snp, dir.path(), dir.path()).unwrap();
        assert!(fragment.contains(&digest));
        assert!(fragment.contains("[appraisal.snp]"));

        let mrtd: cloister_attestation::types::Measurement = "a1".repeat(48).parse().unwrap();
        let rtmr1: cloister_attestation::types::Measurement = "b2".repeat(48).parse().unwrap();
        let rtmr2: cloister_attestation::types::Measurement = "c3".repeat(48).parse().unwrap();
        let tdx = manifest(
            ImageTee::Tdx,
            ExpectedMeasurements {
                sim: None,
                snp: None,
                tdx: Some(cloister_image::TdxMeasurements { mrtd, rtmr1, rtmr2 }),
                not_computed: Some(cloister_image::TDX_RTMR0_NOT_COMPUTED.into()),
            },
        );
        let appraisal = appraisal_policy(&tdx, dir.path(), dir.path()).unwrap();
        let parsed = cloister_attestation::policy::AppraisalPolicy::from_toml(&appraisal)
            .unwrap()
            .tdx
            .unwrap();
        assert!(parsed.mrtd.accepts(&mrtd) && !parsed.mrtd.accepts(&rtmr1));
        assert!(parsed.rtmr1.accepts(&rtmr1) && !parsed.rtmr1.accepts(&rtmr2));
        assert!(parsed.rtmr2.accepts(&rtmr2) && !parsed.rtmr2.accepts(&mrtd));
        let fragment = release_fragment(&tdx, dir.path(), dir.path()).unwrap();
        assert!(fragment.contains("[appraisal.tdx]"), "{fragment}");

        let none = manifest(
            ImageTee::Tdx,
            ExpectedMeasurements {
                sim: None,
                snp: None,
                tdx: None,
                not_computed: Some("not computed".into()),
            },
        );
        let err = appraisal_policy(&none, dir.path(), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("no computed launch measurement"),
            "{err}"
        );
    }
}
