//! `cloisterd`: the host daemon. It launches and supervises enclaves and
//! relays client connections to them byte for byte. It is outside the trust
//! boundary by design: it never holds a TLS key, a plaintext prompt or an
//! answer, and clients verify the enclaves themselves.

mod admin;
mod backend;
mod capability;
mod config;
mod probe;
mod qemu;
mod relay;
mod supervisor;
mod vm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::Value;
use tokio::sync::watch;

use crate::config::HostConfig;
use crate::supervisor::{EnclaveStatus, State, Supervisor};

/// Exit status: bad configuration or arguments.
const EXIT_USAGE: u8 = 2;
/// Exit status: the daemon is not reachable (status).
const EXIT_UNREACHABLE: u8 = 3;
/// Exit status: a runtime failure.
const EXIT_FAILURE: u8 = 1;

/// The Cloister host daemon: runs in the foreground until SIGTERM.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Host configuration (TOML).
    #[arg(long, default_value = "host.toml", global = true)]
    config: PathBuf,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show each enclave's state, restarts, uptime and claimed evidence.
    Status {
        /// The admin socket (default: the one in --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cloisterd: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Some(Command::Status { socket, json }) => status(&cli.config, socket, json).await,
            None => daemon(&cli.config).await,
        }
    });
    std::process::ExitCode::from(code)
}

async fn status(config: &Path, socket: Option<PathBuf>, json: bool) -> u8 {
    let socket = match socket {
        Some(s) => s,
        None => match HostConfig::load(config) {
            Ok(c) => c.daemon.admin_socket,
            Err(e) => {
                eprintln!("cloisterd: {e:#}");
                return EXIT_USAGE;
            }
        },
    };
    let reply = match admin::request(&socket, "status").await {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("cloisterd: {e:#}");
            return EXIT_UNREACHABLE;
        }
    };
    if json {
        println!("{reply:#}");
    } else {
        print_status(&reply);
    }
    0
}

fn print_status(reply: &Value) {
    let d = reply.pointer("/daemon").unwrap_or(&Value::Null);
    println!(
        "cloisterd {} (pid {}, up {}s)",
        d.pointer("/version").and_then(Value::as_str).unwrap_or("?"),
        d.pointer("/pid").unwrap_or(&Value::Null),
        d.pointer("/uptime_s").unwrap_or(&Value::Null)
    );
    for e in reply
        .pointer("/enclaves")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let evidence = e.pointer("/evidence").unwrap_or(&Value::Null);
        let insecure = if evidence
            .pointer("/insecure")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            "  INSECURE (simulated TEE)"
        } else {
            ""
        };
        println!(
            "  {:<16} {:<10} tee={} pid={} listen={} restarts={} uptime={}s{}",
            e.pointer("/name").and_then(Value::as_str).unwrap_or("?"),
            e.pointer("/state").and_then(Value::as_str).unwrap_or("?"),
            e.pointer("/tee").and_then(Value::as_str).unwrap_or("?"),
            e.pointer("/pid").unwrap_or(&Value::Null),
            e.pointer("/listen").and_then(Value::as_str).unwrap_or("?"),
            e.pointer("/restarts").unwrap_or(&Value::Null),
            e.pointer("/uptime_s").unwrap_or(&Value::Null),
            insecure
        );
        if let Some(m) = evidence.pointer("/measurement").and_then(Value::as_str) {
            println!("    claims measurement {m} (unverified by the host; clients verify)");
        }
        if let Some(reason) = e.pointer("/last_exit").and_then(Value::as_str) {
            println!("    last exit: {reason}");
        }
    }
}

async fn daemon(config_path: &Path) -> u8 {
    let config = match HostConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            return EXIT_USAGE;
        }
    };
    // What this host cannot launch is refused before anything starts.
    for enclave in config
        .enclaves
        .iter()
        .filter(|e| e.tee != config::TeeKind::Sim)
    {
        if let Err(e) = vm::preflight(enclave) {
            tracing::error!("{e:#}");
            return EXIT_USAGE;
        }
    }
    match run(config).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            EXIT_FAILURE
        }
    }
}

async fn run(config: HostConfig) -> anyhow::Result<()> {
    let binary = match &config.daemon.enclave_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot locate cloisterd")?
            .with_file_name("cloister-enclave"),
    };
    let has_sim = config
        .enclaves
        .iter()
        .any(|e| e.tee == config::TeeKind::Sim);
    if has_sim && !binary.is_file() {
        anyhow::bail!(
            "enclave binary {} does not exist (set daemon.enclave_binary)",
            binary.display()
        );
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let prober = probe::Prober::new()?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut enclaves = Vec::new();
    for enclave in &config.enclaves {
        let listener = tokio::net::TcpListener::bind(enclave.listen)
            .await
            .with_context(|| {
                format!(
                    "enclave {:?}: cannot listen on {}",
                    enclave.name, enclave.listen
                )
            })?;
        let capture = enclave
            .relay_capture
            .as_deref()
            .map(relay::Capture::open)
            .transpose()
            .context("cannot open relay capture")?
            .map(Arc::new);
        if let Some(path) = &enclave.relay_capture {
            tracing::warn!(enclave = %enclave.name, path = %path.display(), "recording relayed bytes (ciphertext) to a file");
        }
        match enclave.tee {
            config::TeeKind::Sim => {
                tracing::warn!(enclave = %enclave.name, "INSECURE: sim enclave runs as a plain process; the host can read its memory")
            }
            config::TeeKind::Vm => {
                tracing::warn!(enclave = %enclave.name, "INSECURE: tee = vm is an ordinary VM carrying sim evidence; the host can read its memory")
            }
            config::TeeKind::Snp | config::TeeKind::Tdx => {}
        }
        let status = Arc::new(Mutex::new(EnclaveStatus {
            name: enclave.name.clone(),
            tee: enclave.tee,
            state: State::Starting,
            pid: None,
            listen: enclave.listen,
            backend: None,
            restarts: 0,
            uptime_s: None,
            last_exit: None,
            evidence: None,
            ready_after_ms: None,
            started: None,
        }));
        let stats = Arc::new(relay::RelayStats::default());
        let (backend_tx, backend_rx) = watch::channel(None);
        tasks.spawn(relay::run(
            enclave.name.clone(),
            listener,
            backend_rx,
            capture,
            stats.clone(),
            shutdown_rx.clone(),
        ));
        let supervisor = Supervisor {
            config: enclave.clone(),
            daemon: config.daemon.clone(),
            binary: binary.clone(),
            status: status.clone(),
            backend: backend_tx,
            prober: prober.clone(),
        };
        tasks.spawn(supervisor.run(shutdown_rx.clone()));
        tracing::info!(enclave = %enclave.name, listen = %enclave.listen, "relaying");
        enclaves.push((status, stats));
    }
    let admin_listener = admin::bind(&config.daemon.admin_socket).await?;
    let daemon = Arc::new(admin::Daemon {
        started: Instant::now(),
        enclaves,
    });
    tasks.spawn(admin::serve(admin_listener, daemon, shutdown_rx.clone()));
    tracing::info!(socket = %config.daemon.admin_socket.display(), "cloisterd running");

    wait_for_signal().await;
    tracing::info!("shutting down: stopping enclaves");
    shutdown_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&config.daemon.admin_socket);
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
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
