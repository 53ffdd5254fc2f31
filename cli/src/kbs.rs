//! `cloister kbs`: the data owner's key broker. It runs on the data owner's
//! machine, never on the untrusted host, and releases a sealed bundle's key
//! only to an enclave whose fresh evidence satisfies that key's release
//! policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use cloister_vault::kbs::cache::EndorsementCache;
use cloister_vault::kbs::log::{read_chain, Outcome};
use cloister_vault::kbs::server::{Broker, TlsIdentity, RELEASE_LOG};
use cloister_vault::kbs::store::{KeyEntry, KeyStore, MasterKey};
use serde_json::json;
use time::OffsetDateTime;

use crate::seal::load_key;

/// Arguments of `cloister kbs`.
#[derive(Debug, Args)]
pub(crate) struct KbsArgs {
    #[command(subcommand)]
    command: KbsCommand,
}

/// Where the broker keeps its state.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The broker's state directory (keys, TLS identity, release log).
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// The operator's master key file (64 hex digits); the keys at rest are
    /// encrypted under it. Keep it off the store's disk where you can.
    #[arg(long, value_name = "FILE")]
    master_key: PathBuf,
}

#[derive(Debug, Subcommand)]
enum KbsCommand {
    /// Create the store: a master key file (if FILE does not exist) and the
    /// broker's TLS identity; prints the pin enclaves put in their config.
    Init {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Serve the key release protocol over HTTPS until SIGTERM or SIGINT.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Offline endorsement cache (VCEKs, TDX collateral), used when an
        /// enclave's evidence arrives without them.
        #[arg(long, value_name = "DIR")]
        endorsements: Option<PathBuf>,
    },
    /// Add a data key with its release policy.
    AddKey {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's ID (as sealed into the bundle header).
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// The data key file (as `cloister seal --key` used).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The release policy (TOML: min_bundle_version, policy_digests, [appraisal]).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the keys and their release policies.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: every later release is refused.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key to revoke.
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the release log, checking its hash chain.
    Log {
        /// The broker's state directory.
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// File endorsements into the offline cache.
    Cache {
        /// The cache directory.
        #[arg(long, value_name = "DIR")]
        endorsements: PathBuf,
        /// An SNP report the VEK endorses (with --vek).
        #[arg(long, value_name = "FILE", requires = "vek")]
        report: Option<PathBuf>,
        /// A VCEK or VLEK certificate (with --report).
        #[arg(long, value_name = "FILE", requires = "report")]
        vek: Option<PathBuf>,
        /// TDX collateral JSON, replacing the cached one.
        #[arg(long, value_name = "FILE")]
        collateral: Option<PathBuf>,
    },
}

fn open_store(args: &StoreArgs) -> anyhow::Result<KeyStore> {
    Ok(KeyStore::open(
        &args.store,
        MasterKey::load(&args.master_key)?,
    )?)
}

fn entry_json(e: &KeyEntry) -> serde_json::Value {
    json!({
        "key_id": e.key_id,
        "created": e.created,
        "revoked": e.revoked,
        "min_bundle_version": e.policy.min_bundle_version,
        "allow_simulated": e.policy.appraisal.allow_simulated,
        "release_policy": e.policy_text,
    })
}

pub(crate) fn run(args: &KbsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        KbsCommand::Init { store, json } => {
            let created = !store.master_key.exists();
            if created {
                MasterKey::generate(&store.master_key)?;
            } else {
                MasterKey::load(&store.master_key)?;
            }
            let identity = TlsIdentity::load_or_create(&store.store)?;
            let pin = hex::encode(identity.spki_sha256());
            if *json {
                println!(
                    "{}",
                    json!({"store": store.store, "master_key": store.master_key, "master_key_created": created, "spki_sha256": pin})
                );
            } else {
                println!("key broker store {}", store.store.display());
                if created {
                    println!(
                        "  new master key {} (mode 0600): back it up; without it the keys are lost",
                        store.master_key.display()
                    );
                }
                println!("  TLS key pin (enclave.toml [broker] spki_sha256): {pin}");
            }
            Ok(ExitCode::SUCCESS)
        }
        KbsCommand::Serve {
            store,
            listen,
            endorsements,
        } => serve(store, *listen, endorsements.clone()),
        KbsCommand::AddKey {
            store,
            key_id,
            key,
            policy,
            json,
        } => {
            let keys = open_store(store)?;
            let text = std::fs::read_to_string(policy)
                .with_context(|| format!("cannot read {}", policy.display()))?;
            let entry = keys.add(key_id, &load_key(key)?, &text, OffsetDateTime::now_utc())?;
            if *json {
                println!("{}", entry_json(&entry));
            } else {
                println!(
                    "added key {} (minimum bundle version {}{})",
                    entry.key_id,
                    entry.policy.min_bundle_version,
                    if entry.policy.appraisal.allow_simulated {
                        "; releases to the INSECURE simulated TEE"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KbsCommand::List { store, json } => {
            let entries = open_store(store)?.list()?;
            if *json {
                println!(
                    "{}",
                    serde_json::Value::Array(entries.iter().map(entry_json).collect())
                );
            } else if entries.is_empty() {
                println!("no keys");
            } else {
                println!("{:<40} {:<8} {:<12} created", "key ID", "min ver", "state");
                for e in &entries {
                    let state = match (&e.revoked, e.policy.appraisal.allow_simulated) {
                        (Some(_), _) => "revoked",
                        (None, true) => "active SIM",
                        (None, false) => "active",
                    };
                    println!(
                        "{:<40} {:<8} {:<12} {}",
                        e.key_id, e.policy.min_bundle_version, state, e.created
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KbsCommand::Revoke {
            store,
            key_id,
            json,
        } => {
            let entry = open_store(store)?.revoke(key_id, OffsetDateTime::now_utc())?;
            if *json {
                println!("{}", entry_json(&entry));
            } else {
                println!(
                    "revoked key {} at {}",
                    entry.key_id,
                    entry.revoked.as_deref().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KbsCommand::Log { store, json } => {
            let chain = match read_chain(&store.join(RELEASE_LOG)) {
                Ok(chain) => chain,
                Err(e) => {
                    eprintln!("cloister kbs log: INVALID: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            for (entry, _) in &chain.entries {
                if *json {
                    println!("{}", serde_json::to_string(entry)?);
                } else {
                    let r = &entry.record;
                    println!(
                        "{:>5} {} {:<8} {:<30} {:<26} {}",
                        entry.seq,
                        entry.time,
                        match r.outcome {
                            Outcome::Released => "RELEASED",
                            Outcome::Refused => "REFUSED",
                        },
                        r.key_id,
                        r.code,
                        r.reason
                    );
                }
            }
            if !*json {
                println!(
                    "{} entries, hash chain intact{}",
                    chain.entries.len(),
                    if chain.torn {
                        " (a torn last line follows)"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KbsCommand::Cache {
            endorsements,
            report,
            vek,
            collateral,
        } => {
            let cache = EndorsementCache::new(endorsements);
            let mut filed = Vec::new();
            if let (Some(report), Some(vek)) = (report, vek) {
                let report = std::fs::read(report)
                    .with_context(|| format!("cannot read {}", report.display()))?;
                let vek =
                    std::fs::read(vek).with_context(|| format!("cannot read {}", vek.display()))?;
                filed.push(cache.add_vek(&report, &vek, OffsetDateTime::now_utc())?);
            }
            if let Some(collateral) = collateral {
                let bytes = std::fs::read(collateral)
                    .with_context(|| format!("cannot read {}", collateral.display()))?;
                filed.push(cache.set_collateral(&bytes)?);
            }
            if filed.is_empty() {
                anyhow::bail!("nothing to file: give --report and --vek, or --collateral");
            }
            for path in filed {
                println!("cached {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(
    store: &StoreArgs,
    listen: SocketAddr,
    endorsements: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let identity = TlsIdentity::load_or_create(&store.store)?;
    let tls = Arc::new(identity.server_config()?);
    let broker = Arc::new(Broker::open(
        &store.store,
        MasterKey::load(&store.master_key)?,
        endorsements.as_deref().map(EndorsementCache::new),
        Arc::new(OffsetDateTime::now_utc),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!(
            "key broker listening on {listen}; TLS key pin {}",
            hex::encode(identity.spki_sha256())
        );
        tracing::info!(%listen, "key broker serving");
        cloister_vault::kbs::server::serve(listener, tls, broker, shutdown()).await;
        tracing::info!("key broker stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
