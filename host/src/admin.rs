//! The admin API: a unix socket (mode 0600) answering one command per
//! connection with one JSON document. `cloisterd status` is its client.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::relay::RelayStats;
use crate::supervisor::SharedStatus;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: u64 = 1024;

/// What the status command reports about.
pub(crate) struct Daemon {
    pub(crate) started: Instant,
    pub(crate) enclaves: Vec<(SharedStatus, Arc<RelayStats>)>,
}

impl Daemon {
    pub(crate) fn status(&self) -> Value {
        let enclaves: Vec<Value> = self
            .enclaves
            .iter()
            .map(|(status, relay)| {
                let mut value = status
                    .lock()
                    .map(|s| {
                        let mut snapshot = s.clone();
                        snapshot.uptime_s = s.started.map(|t| t.elapsed().as_secs());
                        serde_json::to_value(snapshot).unwrap_or(Value::Null)
                    })
                    .unwrap_or(Value::Null);
                if let Some(map) = value.as_object_mut() {
                    map.insert(
                        "relay".into(),
                        json!({
                            "connections": relay.connections.load(Ordering::Relaxed),
                            "refused": relay.refused.load(Ordering::Relaxed),
                            "bytes_to_enclave": relay.bytes_to_enclave.load(Ordering::Relaxed),
                            "bytes_from_enclave": relay.bytes_from_enclave.load(Ordering::Relaxed),
                        }),
                    );
                }
                value
            })
            .collect();
        json!({
            "daemon": {
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
            },
            "enclaves": enclaves,
        })
    }
}

/// Binds the socket, refusing to steal one a running daemon is using.
pub(crate) async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "{} is in use: another cloisterd is running with this configuration",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

pub(crate) async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &daemon)).await {
                tracing::debug!(error = %e, "admin request timed out");
            }
        });
    }
}

async fn answer(stream: UnixStream, daemon: &Daemon) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let reply = match line.trim() {
        "status" => daemon.status(),
        other => json!({ "error": format!("unknown command {other:?} (known: status)") }),
    };
    write.write_all(reply.to_string().as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// The client side: sends `command`, returns the JSON answer.
pub(crate) async fn request(path: &Path, command: &str) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("cannot reach cloisterd at {}", path.display()))?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    serde_json::from_str(&reply).context("cloisterd sent an unreadable answer")
}
