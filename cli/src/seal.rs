//! `cloister seal` and `cloister unseal`: the data owner's tools for sealed
//! bundles. Sealing happens on the data owner's machine; the bundle then
//! travels to and rests on the untrusted host. `unseal` is for the data
//! owner's own checks (enclaves unseal in memory with a key from the broker).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Args;
use cloister_vault::{ContentKind, DataKey, SealParams, VaultError, DEFAULT_CHUNK_LOG2};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::EXIT_USAGE;

/// Exit status when a bundle is refused (wrong key, tampered, truncated).
const EXIT_REJECTED: u8 = 1;

/// Arguments of `cloister seal`.
#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    /// The data key file (64 hex digits).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Create the key file with a fresh random key (mode 0600; never overwrites).
    #[arg(long)]
    generate_key: bool,
    /// The key's name, which the key broker releases it under.
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// Bundle version (release policies refuse versions below their minimum).
    #[arg(long = "version", value_name = "N")]
    bundle_version: u64,
    /// What the bundle holds.
    #[arg(long, value_enum, default_value = "model")]
    kind: KindArg,
    /// log2 of the chunk size, 12 (4 KiB) to 24 (16 MiB).
    #[arg(long, default_value_t = DEFAULT_CHUNK_LOG2)]
    chunk_log2: u8,
    /// One JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// The plaintext file.
    input: PathBuf,
    /// The bundle to write (written beside, then renamed: never half a bundle).
    output: PathBuf,
}

/// Arguments of `cloister unseal`.
#[derive(Debug, Args)]
pub(crate) struct UnsealArgs {
    /// The data key file (64 hex digits).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// One JSON object on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// The sealed bundle.
    input: PathBuf,
    /// Where the plaintext goes (written beside, renamed only once every chunk verified).
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Model,
    Data,
    Other,
}

impl From<KindArg> for ContentKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Model => Self::Model,
            KindArg::Data => Self::Data,
            KindArg::Other => Self::Other,
        }
    }
}

/// Reads a data key file.
pub(crate) fn load_key(path: &Path) -> anyhow::Result<DataKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    DataKey::from_hex(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes a fresh key to a new file, mode 0600.
fn generate_key(path: &Path) -> anyhow::Result<DataKey> {
    let key = DataKey::generate()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create key file {} (it is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    file.sync_all()?;
    Ok(key)
}

fn progress(total: u64, json: bool, verb: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{verb} {{msg:>10}} {{bar:40}} {{percent:>3}}% {{binary_bytes_per_sec}} eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

/// A sibling temporary path for atomic writes.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Runs `work` from `input` into `OUT.partial`, syncs it, and renames it to
/// `output` only if `work` succeeded; otherwise removes it, so there is
/// never half an output. `work` gets the buffered input, the buffered
/// output and the input's length. Opening, creating and renaming fail as
/// the outer error; what `work` (or the final sync) refuses is the inner one.
fn atomically<T>(
    input: &Path,
    output: &Path,
    work: impl FnOnce(&mut BufReader<File>, &mut BufWriter<File>, u64) -> Result<T, VaultError>,
) -> anyhow::Result<Result<T, VaultError>> {
    let source = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let total = source.metadata()?.len();
    let tmp = partial(output);
    let sink = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, sink);
    let outcome = work(
        &mut BufReader::with_capacity(1 << 20, source),
        &mut writer,
        total,
    )
    .and_then(|value| {
        let file = writer
            .into_inner()
            .map_err(|e| VaultError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok(value)
    });
    match outcome {
        Ok(value) => {
            std::fs::rename(&tmp, output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            Ok(Ok(value))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(Err(e))
        }
    }
}

pub(crate) fn run_seal(args: &SealArgs) -> anyhow::Result<ExitCode> {
    let key = if args.generate_key {
        generate_key(&args.key)?
    } else {
        load_key(&args.key)?
    };
    let params = SealParams {
        key_id: args.key_id.clone(),
        kind: args.kind.into(),
        bundle_version: args.bundle_version,
        chunk_log2: args.chunk_log2,
    };
    let json = args.json;
    let started = Instant::now();
    let mut bar = None;
    let sealed = atomically(&args.input, &args.output, |input, output, total| {
        // The input is read twice: once for the header's plaintext MAC, once to encrypt.
        let progress_bar = bar.insert(progress(2 * total, json, "sealing"));
        cloister_vault::seal(input, output, &key, &params, &mut |done| {
            progress_bar.set_message(if done <= total {
                "MAC pass"
            } else {
                "encrypting"
            });
            progress_bar.set_position(done);
        })
    })?;
    let bar = bar.unwrap_or_else(ProgressBar::hidden);
    let header = match sealed {
        Ok(h) => h,
        Err(e) => {
            bar.abandon();
            if matches!(e, VaultError::InvalidParams(_)) {
                eprintln!("cloister seal: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            return Err(e.into());
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({
                "output": args.output,
                "header": header,
                "sealed_len": header.sealed_len(),
                "seconds": seconds,
            })
        );
    } else {
        println!(
            "sealed {} ({} bytes) -> {} ({} bytes)\n  key ID {}  kind {}  version {}  chunk {} bytes\n  plaintext MAC {} (keyed: meaningful only with the key)",
            args.input.display(),
            header.plaintext_len,
            args.output.display(),
            header.sealed_len(),
            header.key_id,
            header.kind.as_str(),
            header.bundle_version,
            header.chunk_size,
            hex::encode(header.plaintext_mac),
        );
        if args.generate_key {
            println!(
                "  new key in {}: give it to the key broker (cloister kbs add-key), keep it off the host",
                args.key.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_unseal(args: &UnsealArgs) -> anyhow::Result<ExitCode> {
    let key = load_key(&args.key)?;
    let json = args.json;
    let mut bar = None;
    let result = atomically(&args.input, &args.output, |input, output, total| {
        let progress_bar = bar.insert(progress(total, json, "unsealing"));
        cloister_vault::unseal(input, output, &key, true, &mut |done| {
            progress_bar.set_position(done)
        })
    })?;
    let bar = bar.unwrap_or_else(ProgressBar::hidden);
    let unsealed = match result {
        Ok(u) => u,
        Err(e) => {
            // Nothing unverified is left behind.
            bar.abandon();
            if let VaultError::Io(io) = &e {
                bail!("cannot unseal {}: {io}", args.input.display());
            }
            if args.json {
                println!("{}", json!({"input": args.input, "error": e.to_string()}));
            } else {
                eprintln!("cloister unseal: REJECTED: {e}");
            }
            return Ok(ExitCode::from(EXIT_REJECTED));
        }
    };
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            json!({"input": args.input, "output": args.output, "header": unsealed.header, "digest_verified": unsealed.digest_verified})
        );
    } else {
        println!(
            "unsealed {} -> {} ({} bytes, every chunk and the plaintext MAC verified)\n  key ID {}  kind {}  version {}",
            args.input.display(),
            args.output.display(),
            unsealed.header.plaintext_len,
            unsealed.header.key_id,
            unsealed.header.kind.as_str(),
            unsealed.header.bundle_version
        );
    }
    Ok(ExitCode::SUCCESS)
}
