//! `cloister corpus build`: the data owner cuts a guideline collection into
//! passages, embeds each with the retrieval model, and writes a corpus
//! bundle to seal (`cloister seal --kind data`). Embedding happens here,
//! once, so the enclave only embeds questions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use cloister_inference::retrieval::{build_bundle, guideline_passages};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sha2::Digest as _;

/// Arguments of `cloister corpus`.
#[derive(Debug, Args)]
pub(crate) struct CorpusArgs {
    #[command(subcommand)]
    command: CorpusCommand,
}

#[derive(Debug, Subcommand)]
enum CorpusCommand {
    /// Cut, embed and bundle a guideline collection.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The collection: `registry.json` and `content/<id>/<section>.md`
    /// (open-medicine's layout; scripts/fetch-models unpacks one).
    #[arg(long, value_name = "DIR")]
    guidelines: PathBuf,
    /// The embedder: `config.json`, `tokenizer.json`, `model.safetensors`.
    #[arg(long, value_name = "DIR")]
    embedder: PathBuf,
    /// What to call the collection in the bundle, e.g. `open-medicine==0.12.0`.
    #[arg(long, default_value = "guidelines")]
    source: String,
    /// The corpus bundle to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// One JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &CorpusArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CorpusCommand::Build(b) => build(b),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let passages = guideline_passages(&args.guidelines).with_context(|| {
        format!(
            "cannot read the guidelines in {}",
            args.guidelines.display()
        )
    })?;
    let read = |name: &str| {
        let path = args.embedder.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let (config, tokenizer, weights) = (
        read("config.json")?,
        read("tokenizer.json")?,
        read("model.safetensors")?,
    );
    let guidelines: std::collections::BTreeSet<&str> =
        passages.iter().map(|p| p.guideline.as_str()).collect();
    let guideline_count = guidelines.len();
    let count = passages.len();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(count as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("embedding {bar:40} {pos}/{len} passages, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let bundle = build_bundle(
        &args.source,
        passages,
        (&config, &tokenizer, weights),
        &mut |n| bar.set_position(n as u64),
    )?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let tmp = args.out.with_extension("part");
    std::fs::write(&tmp, &bundle).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let digest = hex::encode(sha2::Sha256::digest(&bundle));
    if args.json {
        println!(
            "{}",
            json!({
                "out": args.out, "guidelines": guideline_count, "passages": count,
                "bytes": bundle.len(), "sha256": digest, "embed_seconds": seconds,
            })
        );
    } else {
        println!(
            "{}: {count} passages from {guideline_count} guidelines, embedded in {seconds:.1} s; {} bytes, sha256 {digest}",
            args.out.display(),
            bundle.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
