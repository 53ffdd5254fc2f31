//! `cloister measure`: the launch measurement an enclave image will report,
//! computed before launch so it can go into an appraisal policy.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use cloister_attestation::sim::sim_measurement;
use cloister_attestation::types::Measurement;
use sha2::{Digest, Sha384};

/// TEEs whose measurement this release can compute.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MeasuredTee {
    /// The INSECURE simulated TEE (SNP and TDX arrive with the CVM launcher).
    Sim,
}

/// Arguments of `cloister measure`.
#[derive(Debug, Args)]
pub(crate) struct MeasureArgs {
    /// Which TEE's measurement to compute.
    #[arg(long, value_enum)]
    tee: MeasuredTee,
    /// The `cloister-enclave` binary the image runs.
    #[arg(long, value_name = "FILE")]
    enclave_binary: PathBuf,
    /// The image directory (holds enclave.toml).
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// SHA-384 of a file, streamed.
pub(crate) fn sha384_file(path: &std::path::Path) -> anyhow::Result<[u8; 48]> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        match buf.get(..n) {
            Some(chunk) if n > 0 => hasher.update(chunk),
            _ => break,
        }
    }
    Ok(hasher.finalize().into())
}

/// The sim measurement of `binary` running `image`.
pub(crate) fn sim_image_measurement(
    binary: &std::path::Path,
    image: &std::path::Path,
) -> anyhow::Result<Measurement> {
    let config_path = image.join("enclave.toml");
    let config = std::fs::read(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    Ok(sim_measurement(&sha384_file(binary)?, &config))
}

pub(crate) fn run(args: &MeasureArgs) -> anyhow::Result<()> {
    let MeasuredTee::Sim = args.tee;
    let measurement = sim_image_measurement(&args.enclave_binary, &args.image)?;
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({ "tee": "sim", "insecure": true, "measurement": measurement })
        );
    } else {
        println!("{measurement}");
        eprintln!("(sim measurement: INSECURE, for development policies only)");
    }
    Ok(())
}
