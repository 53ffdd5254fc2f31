//! The TLS listener: accepts TCP (and, in a VM, vsock), completes the RA-TLS
//! handshake inside the enclave (the host only ever relays ciphertext), and
//! serves HTTP/1.1.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

/// A client that has not finished the handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the host's relay reaches the enclave.
pub(crate) enum Listener {
    /// TCP: the sim process's loopback port, or a VM's user-mode network.
    Tcp(TcpListener),
    /// AF_VSOCK: a VM with a virtio-vsock device.
    Vsock(tokio_vsock::VsockListener),
}

/// A connection from either listener.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Box<dyn Connection>, String)> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((Box::new(stream), peer.to_string()))
            }
            Self::Vsock(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((
                    Box::new(stream),
                    format!("vsock:{}:{}", peer.cid(), peer.port()),
                ))
            }
        }
    }
}

pub(crate) async fn serve(
    listeners: Vec<Listener>,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(max_connections));
    // One accept loop per listener; connections meet here.
    let (accepted_tx, mut accepted_rx) = mpsc::channel::<(Box<dyn Connection>, String)>(16);
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        let accepted_tx = accepted_tx.clone();
        accept_loops.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(pair) => {
                        if accepted_tx.send(pair).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accepted_rx.recv() => match accepted {
                Some(pair) => pair,
                None => break,
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection limit reached; refusing");
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router));
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
