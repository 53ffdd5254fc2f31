//! The relay: clients connect to the enclave's public address and cloisterd
//! copies bytes both ways to wherever the enclave currently listens. It never
//! terminates TLS, so it only ever holds ciphertext.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::backend::{Backend, Stream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters for `status`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RelayStats {
    pub(crate) connections: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) bytes_to_enclave: AtomicU64,
    pub(crate) bytes_from_enclave: AtomicU64,
}

/// Appends relayed bytes to a file, to show what the host can see.
pub(crate) struct Capture(Mutex<File>);

impl Capture {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self(Mutex::new(file)))
    }

    fn record(&self, bytes: &[u8]) {
        if let Ok(mut f) = self.0.lock() {
            if let Err(e) = f.write_all(bytes) {
                tracing::warn!(error = %e, "relay capture write failed");
            }
        }
    }
}

pub(crate) async fn run(
    name: String,
    listener: TcpListener,
    backend: watch::Receiver<Option<Backend>>,
    capture: Option<Arc<Capture>>,
    stats: Arc<RelayStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (client, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(enclave = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(target) = backend.borrow().clone() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(enclave = %name, %peer, "enclave not up; closing client connection");
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let capture = capture.clone();
        let stats = stats.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let server = match tokio::time::timeout(CONNECT_TIMEOUT, target.connect()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(enclave = %name, %target, error = %e, "cannot reach enclave");
                    return;
                }
                Err(_) => return,
            };
            let _ = client.set_nodelay(true);
            pump(client, server, capture, &stats).await;
        });
    }
}

/// Copies both directions until both are closed.
async fn pump(
    client: TcpStream,
    server: Box<dyn Stream>,
    capture: Option<Arc<Capture>>,
    stats: &RelayStats,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let upstream = copy(
        &mut client_read,
        &mut server_write,
        capture.as_deref(),
        &stats.bytes_to_enclave,
    );
    let downstream = copy(
        &mut server_read,
        &mut client_write,
        capture.as_deref(),
        &stats.bytes_from_enclave,
    );
    let _ = tokio::join!(upstream, downstream);
}

async fn copy(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    capture: Option<&Capture>,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // A reset (an enclave killed mid-connection) must reach the
                // other side too, or a client waits forever for an answer
                // that cannot come.
                let _ = to.shutdown().await;
                return Err(e);
            }
        };
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            // EOF: pass the half-close on.
            return to.shutdown().await;
        };
        if let Some(capture) = capture {
            capture.record(chunk);
        }
        to.write_all(chunk).await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
