//! `cloister-enclave`: the agent inside the confidential VM. It reads its
//! measured configuration, takes evidence from the TEE, creates its RA-TLS
//! identity and serves the query API. It composes the libraries; it owns no
//! format of its own.

mod api;
mod audit;
mod config;
mod fhir;
mod grounding;
mod guest;
mod policy;
mod sealed;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;
use cloister_attestation::collect::{self, EvidenceSource};
use cloister_attestation::evidence::Tee;
use cloister_attestation::ratls::{Bindings, RaTlsIdentity};
use cloister_attestation::sim::{sim_measurement, SimTee};
use cloister_attestation::types::HostData;
use cloister_inference::Engine;
use cloister_policy::identity::TokenVerifier;
use sha2::{Digest, Sha384};

use crate::config::{EngineChoice, TeeChoice};

/// Exit status when the configuration or image is unusable.
const EXIT_CONFIG: u8 = 2;
/// Exit status when the TEE cannot produce evidence.
const EXIT_TEE: u8 = 3;
/// Exit status for any other failure.
const EXIT_FAILURE: u8 = 1;
/// Exit status when the audit log cannot be taken over (damaged, locked,
/// unwritable): nothing is served without it.
const EXIT_AUDIT: u8 = 4;
/// Exit status when, as a VM's /init, the guest could not be prepared
/// (modules, network, the host's shares).
const EXIT_GUEST: u8 = 5;

/// The Cloister enclave agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The image directory this enclave was launched with (holds enclave.toml).
    #[arg(long)]
    image: PathBuf,
    /// Address to serve RA-TLS on (the host relays clients here).
    #[arg(long)]
    listen: SocketAddr,
    /// Also serve RA-TLS on this AF_VSOCK port (any CID), for a VM whose
    /// host relays over virtio-vsock. Without a vsock device the guest
    /// serves TCP only, and says so.
    #[arg(long, value_name = "PORT")]
    listen_vsock: Option<u32>,
    /// Runtime worker threads (the VM's vCPUs; default: all CPUs).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Cap this process's address space, MiB (the simulated TEE's memory size).
    #[arg(long)]
    memory_limit_mib: Option<u64>,
    /// A sealed bundle the host supplies, NAME=PATH (repeat for each bundle
    /// the configuration names). Only ciphertext: the key comes from the broker.
    #[arg(
        long = "sealed",
        value_name = "NAME=PATH",
        conflicts_with = "sealed_dir"
    )]
    sealed: Vec<String>,
    /// A directory holding each sealed bundle the configuration names, as a
    /// file of that name (the VM image's read-only share from the host).
    #[arg(long, value_name = "DIR")]
    sealed_dir: Option<PathBuf>,
    /// Run as the VM's /init: mount the kernel filesystems and the host's
    /// shares, load the image's modules and configure the network first.
    #[arg(long)]
    guest_init: bool,
    /// The guest's address on the host's relay network, with `--guest-init`.
    #[arg(long, value_name = "IPV4/PREFIX", requires = "guest_init")]
    guest_address: Option<guest::GuestAddress>,
    /// The audit log directory (host storage; records are signed, and
    /// their sensitive fields encrypted to the auditor, inside the enclave).
    #[arg(long)]
    audit_dir: PathBuf,
    /// More logging (-v debug, -vv trace). Prompts are never logged.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let guest_init = args.guest_init;
    let code = match run(args) {
        Ok(()) => 0,
        Err(failure) => {
            tracing::error!("{:#}", failure.error);
            failure.code
        }
    };
    if guest_init {
        guest::power_off(code);
    }
    std::process::ExitCode::from(code)
}

struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn with_code(code: u8) -> impl Fn(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

fn run(mut args: Args) -> Result<(), Failure> {
    if args.guest_init {
        let address = args
            .guest_address
            .context("--guest-init needs --guest-address")
            .map_err(with_code(EXIT_CONFIG))?;
        guest::init(address, &args.audit_dir, args.sealed_dir.as_deref())
            .context("the guest could not be prepared")
            .map_err(with_code(EXIT_GUEST))?;
    }
    if let Some(mib) = args.memory_limit_mib {
        let bytes = mib.saturating_mul(1024 * 1024);
        rustix::process::setrlimit(
            rustix::process::Resource::As,
            rustix::process::Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )
        .context("cannot apply the memory limit")
        .map_err(with_code(EXIT_CONFIG))?;
    }
    let loaded = config::load(&args.image).map_err(with_code(EXIT_CONFIG))?;
    let config = loaded.config;
    tracing::info!(config = %loaded.path.display(), "configuration loaded");

    let source: Arc<dyn EvidenceSource> =
        Arc::from(evidence_source(config.tee, &loaded.bytes).map_err(with_code(EXIT_TEE))?);
    let tokens = TokenVerifier::new(&config.identity)
        .map_err(anyhow::Error::from)
        .map_err(with_code(EXIT_CONFIG))?;
    let broker = config.broker_endpoint().map_err(with_code(EXIT_CONFIG))?;
    if let Some(dir) = &args.sealed_dir {
        args.sealed = config
            .sealed
            .iter()
            .map(|b| format!("{}={}", b.name, dir.join(&b.name).display()))
            .collect();
    }
    let bundles = sealed::supplied(&config.sealed, &args.sealed).map_err(with_code(EXIT_CONFIG))?;
    let policy = policy::load(&args.image, &config.policy).map_err(with_code(EXIT_CONFIG))?;
    // A log that cannot be taken over stops the start before anything is
    // unsealed or served.
    let recovered =
        audit::recover(&args.audit_dir, &config.audit).map_err(with_code(EXIT_AUDIT))?;
    let audit_signer = cloister_audit::AuditSigner::generate()
        .map_err(anyhow::Error::from)
        .map_err(with_code(EXIT_AUDIT))?;
    // The enclave commits to its policy bundle and its audit key in every
    // piece of evidence, for RA-TLS and key release alike.
    let bindings = Bindings {
        policy_digest: policy.digest().to_vec(),
        audit_key: audit_signer.public_key().to_vec(),
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(with_code(EXIT_FAILURE))?;

    let unsealed = match &broker {
        Some(broker) if !bundles.is_empty() => {
            let work = sealed::unseal_all(broker, &bundles, source.clone(), &bindings);
            let stopped = runtime.block_on(async {
                tokio::select! {
                    unsealed = work => Some(unsealed),
                    () = shutdown_signal() => None,
                }
            });
            match stopped {
                Some(unsealed) => unsealed,
                None => {
                    tracing::info!("stopped before the sealed bundles were unsealed");
                    return Ok(());
                }
            }
        }
        _ => Vec::new(),
    };
    let engine = engine(&config, &unsealed).map_err(with_code(EXIT_CONFIG))?;
    let grounding = grounding(&config, &unsealed).map_err(with_code(EXIT_CONFIG))?;
    let identity = RaTlsIdentity::generate(source.as_ref(), bindings)
        .context("cannot create the RA-TLS identity")
        .map_err(with_code(EXIT_TEE))?;
    tracing::info!(
        tee = identity.tee().name(),
        spki_sha256 = %hex::encode(sha2::Sha256::digest(identity.spki())),
        "RA-TLS identity created; its key never leaves this process"
    );
    let tls = Arc::new(
        identity
            .server_config()
            .map_err(anyhow::Error::from)
            .map_err(with_code(EXIT_FAILURE))?,
    );
    let releases = unsealed
        .iter()
        .map(|b| cloister_audit::record::KeyRelease {
            bundle: b.name.clone(),
            key_id: b.header.key_id.clone(),
            kind: b.header.kind.as_str().to_owned(),
            version: b.header.bundle_version,
            broker: broker
                .as_ref()
                .map(|e| e.address.clone())
                .unwrap_or_default(),
        })
        .collect();
    let audit_log = audit::start(
        recovered,
        audit_signer,
        &identity,
        source.as_ref(),
        &policy,
        releases,
    )
    .map_err(with_code(EXIT_AUDIT))?;
    let enclave_summary = serde_json::json!({
        "tee": identity.tee().name(),
        "insecure": identity.tee().is_insecure(),
        "spki_sha256": hex::encode(sha2::Sha256::digest(identity.spki())),
        "policy_bundle": hex::encode(policy.digest()),
        "audit_log": audit_log.origin(),
        "model": engine.as_ref().map(|e| e.model_id().to_owned()),
        "corpus_passages": grounding.as_ref().map(grounding::Grounding::passages),
    });
    let state = Arc::new(api::AppState {
        engine,
        grounding,
        enclave_summary,
        tokens,
        identity: Arc::new(identity),
        source,
        limits: config.limits,
        sealed: unsealed.iter().map(api::SealedSummary::of).collect(),
        policy,
        audit: audit_log.clone(),
    });
    // Nothing uses the plaintext past this point (the engine has what it
    // loaded): wipe it rather than leave it to the allocator.
    for mut bundle in unsealed {
        zeroize::Zeroize::zeroize(&mut bundle.bytes);
    }

    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))
            .map_err(with_code(EXIT_FAILURE))?;
        tracing::info!(listen = %args.listen, "serving");
        let mut listeners = vec![server::Listener::Tcp(listener)];
        if let Some(port) = args.listen_vsock {
            let address = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
            match tokio_vsock::VsockListener::bind(address) {
                Ok(listener) => {
                    tracing::info!(vsock_port = port, "serving on vsock");
                    listeners.push(server::Listener::Vsock(listener));
                }
                // The host chooses the transport; without a vsock device it
                // relays over TCP, which is already served.
                Err(e) => {
                    tracing::info!(vsock_port = port, error = %e, "no vsock; serving TCP only")
                }
            }
        }
        let max_connections = state.limits.max_connections;
        server::serve(
            listeners,
            tls,
            api::router(state),
            max_connections,
            shutdown_signal(),
        )
        .await;
        let stopped = tokio::task::spawn_blocking(move || {
            audit_log.append(
                cloister_audit::Event::Stop(cloister_audit::record::Stop {
                    reason: "shutdown signal".into(),
                }),
                cloister_audit::SealedFields::default(),
            )
        })
        .await;
        match stopped
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(receipt) => tracing::info!(record = receipt.seq, "shut down; stop recorded"),
            Err(e) => {
                tracing::error!(error = %e, "shut down; the stop record could not be written")
            }
        }
        Ok(())
    })
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn evidence_source(
    choice: TeeChoice,
    config_bytes: &[u8],
) -> anyhow::Result<Box<dyn EvidenceSource>> {
    if choice == TeeChoice::Sim {
        let exe = std::env::current_exe().context("cannot locate this binary to measure it")?;
        let binary = std::fs::read(&exe)
            .with_context(|| format!("cannot read {} to measure it", exe.display()))?;
        let measurement = sim_measurement(&Sha384::digest(&binary).into(), config_bytes);
        tracing::warn!(
            %measurement,
            "INSECURE: running on the simulated TEE; its evidence proves nothing and verifiers reject it unless their policy sets allow_simulated = true"
        );
        return Ok(Box::new(SimTee::new(measurement, HostData([0; 32]))?));
    }
    let source = collect::detect()?;
    let wanted = match choice {
        TeeChoice::Snp => Some(Tee::Snp),
        TeeChoice::Tdx => Some(Tee::Tdx),
        TeeChoice::Auto | TeeChoice::Sim => None,
    };
    if let Some(wanted) = wanted {
        if source.tee() != wanted {
            bail!(
                "the configuration requires {} but this guest offers {}",
                wanted.name(),
                source.tee().name()
            );
        }
    }
    tracing::info!(tee = source.tee().name(), "hardware TEE found");
    Ok(source)
}

/// The guideline corpus, from the sealed bundle `[retrieval]` names.
fn grounding(
    config: &config::EnclaveConfig,
    unsealed: &[sealed::UnsealedBundle],
) -> anyhow::Result<Option<grounding::Grounding>> {
    let Some(retrieval) = &config.retrieval else {
        return Ok(None);
    };
    let bundle = unsealed
        .iter()
        .find(|b| b.name == retrieval.bundle)
        .with_context(|| {
            format!(
                "[retrieval] bundle {:?} is not among the sealed bundles this enclave unsealed",
                retrieval.bundle
            )
        })?;
    let index = cloister_inference::retrieval::Index::load(&bundle.bytes)
        .context("the guideline corpus cannot be loaded")?;
    Ok(Some(grounding::Grounding::new(index, retrieval.clone())))
}

/// The engine, built from the unsealed model bundle where there is one.
fn engine(
    config: &config::EnclaveConfig,
    unsealed: &[sealed::UnsealedBundle],
) -> anyhow::Result<Option<Arc<dyn Engine>>> {
    let models: Vec<_> = unsealed
        .iter()
        .filter(|b| b.header.kind == cloister_vault::ContentKind::Model)
        .collect();
    let model = models.first().copied();
    match config.engine {
        EngineChoice::Candle => {
            let [model] = models.as_slice() else {
                bail!(
                    "engine = \"candle\" needs exactly one sealed bundle of kind \"model\"; {} were unsealed",
                    models.len()
                );
            };
            let started = std::time::Instant::now();
            let engine = cloister_inference::embedded::CandleEngine::load(
                &model.bytes,
                config.candle.clone(),
            )
            .with_context(|| format!("the model in sealed bundle {:?} cannot be loaded", model.name))?;
            tracing::info!(
                model = engine.description(),
                context = engine.context_length(),
                millis = started.elapsed().as_millis() as u64,
                "model loaded into enclave memory"
            );
            Ok(Some(Arc::new(engine)))
        }
        EngineChoice::Openai => {
            let settings = config
                .openai
                .as_ref()
                .context("engine = \"openai\" needs an [openai] table (address, model)")?;
            let engine = cloister_inference::openai::OpenAiEngine::new(settings)?;
            tracing::info!(address = %settings.address, model = %settings.model, "forwarding to the OpenAI-compatible engine in this CVM");
            Ok(Some(Arc::new(engine)))
        }
        EngineChoice::None => {
            if let Some(model) = model {
                tracing::warn!(bundle = %model.name, "a model bundle is unsealed but no engine is configured to load it");
            }
            tracing::warn!("no inference engine configured: chat completions answer 503");
            Ok(None)
        }
        #[cfg(feature = "test-engine")]
        EngineChoice::TestEcho => {
            tracing::warn!("TEST ENGINE: answers echo the prompt; this is not a model");
            Ok(Some(Arc::new(match model {
                Some(model) => cloister_inference::echo::EchoEngine::with_model(&model.bytes),
                None => cloister_inference::echo::EchoEngine::new(),
            })))
        }
        #[cfg(not(feature = "test-engine"))]
        EngineChoice::TestEcho => bail!(
            "engine = \"test-echo\" is only compiled into test builds (feature test-engine); this build has no such engine"
        ),
    }
}
