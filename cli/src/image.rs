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
    Build(BuildArgs),
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
    if let Some(path) = &args.appraisal_policy {
        let policy = appraisal_policy(&manifest, &args.enclave_dir, &args.out)?;
        std::fs::write(path, policy).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.json {
            eprintln!("appraisal policy written to {}", path.display());
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
    if let Some(why) = &manifest.expected.not_computed {
        println!("  expected measurement: not computed: {why}");
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

/// An appraisal policy accepting this image and its policy bundle, checked
/// by parsing it back before it is written.
fn appraisal_policy(
    manifest: &ImageManifest,
    enclave_dir: &Path,
    dir: &Path,
) -> anyhow::Result<String> {
    let mut text = format!(
        "# Appraisal policy for the enclave image {} (tee {}), written by `cloister image build`.\n",
        dir.display(),
        manifest.tee.name()
    );
    if let Some(digest) = policy_digest(enclave_dir)? {
        text.push_str(&format!("policy_digests = [\"{digest}\"]\n"));
    }
    match (&manifest.expected.sim, &manifest.expected.snp) {
        (Some(sim), _) => {
            text.push_str(
                "# INSECURE: a vm image carries simulated evidence, which proves nothing.\n",
            );
            text.push_str("allow_simulated = true\n\n[sim]\n");
            text.push_str(&format!("measurements = [\"{sim}\"]\n"));
        }
        (None, Some(snp)) => {
            text.push_str(&format!(
                "\n[snp]\nmeasurements = [\"{snp}\"]\n# Pin your own hosts' chip IDs, and raise the minimum TCB to the one AMD currently\n# publishes for your processors: the values below accept any chip and any TCB.\nchip_ids = \"any\"\nminimum_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\n"
            ));
        }
        (None, None) => anyhow::bail!(
            "this image has no computed launch measurement, so no appraisal policy can pin it: {}",
            manifest
                .expected
                .not_computed
                .as_deref()
                .unwrap_or("unknown reason")
        ),
    }
    cloister_attestation::policy::AppraisalPolicy::from_toml(&text)
        .context("the appraisal policy written for this image does not parse (a bug)")?;
    Ok(text)
}
