//! Where an enclave listens, as the host reaches it: the relay and the
//! health probe dial it the same way, and only ever carry TLS ciphertext.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};

/// Longest reply line a vhost-user vsock backend may send to `CONNECT`.
const MAX_REPLY: u64 = 64;
/// How long a backend may take to answer `CONNECT`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the enclave.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach the enclave's RA-TLS port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A host loopback port: the sim process, or QEMU's user-mode forward.
    Tcp(SocketAddr),
    /// AF_VSOCK to the guest's context ID (the kernel's vhost-vsock).
    Vsock { cid: u32, port: u32 },
    /// A vhost-user vsock backend's host-side Unix socket: write
    /// `CONNECT <port>\n`, read `OK <port>\n`, then the stream is the
    /// guest's (the protocol of Firecracker's and rust-vmm's backends).
    VsockUnix { path: PathBuf, port: u32 },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::VsockUnix { path, port } => write!(f, "vsock-unix:{}:{port}", path.display()),
        }
    }
}

impl Backend {
    /// Opens a connection to the enclave.
    pub(crate) async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Self::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                let _ = stream.set_nodelay(true);
                Ok(Box::new(stream))
            }
            Self::Vsock { cid, port } => {
                let stream =
                    tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                        .await?;
                Ok(Box::new(stream))
            }
            Self::VsockUnix { path, port } => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                tokio::time::timeout(HANDSHAKE_TIMEOUT, vsock_unix_handshake(stream, *port))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the vsock backend did not answer CONNECT",
                        )
                    })?
            }
        }
    }
}

/// `CONNECT <port>\n`, then one reply line, which must be `OK <n>`.
async fn vsock_unix_handshake(
    stream: tokio::net::UnixStream,
    port: u32,
) -> std::io::Result<Box<dyn Stream>> {
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(MAX_REPLY)
        .read_until(b'\n', &mut reply)
        .await?;
    let text = String::from_utf8_lossy(&reply);
    if !text.starts_with("OK ") || !text.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "the vsock backend refused CONNECT {port}: {:?}",
                text.trim_end()
            ),
        ));
    }
    // The BufReader may hold bytes the guest sent after the reply; a TLS
    // server speaks only after the client, so there are none, but keep the
    // reader rather than drop them.
    Ok(Box::new(stream))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A fake backend: answers the handshake as `reply`, then echoes.
    async fn fake_backend(reply: &'static str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.vsock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            assert_eq!(line, "CONNECT 8443\n");
            stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
            if !(reply.starts_with("OK ") && reply.ends_with('\n')) {
                return; // hang up
            }
            let mut buf = [0u8; 5];
            if stream.read_exact(&mut buf).await.is_ok() {
                stream.get_mut().write_all(&buf).await.unwrap();
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn the_unix_backend_handshake_connects_to_the_guest_port() {
        let (_dir, path) = fake_backend("OK 1073741824\n").await;
        let backend = Backend::VsockUnix { path, port: 8443 };
        let mut stream = backend.connect().await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn a_refused_or_garbled_handshake_is_an_error() {
        for reply in ["", "NO\n", "OK 1", "OKAY 3\n"] {
            let (_dir, path) = fake_backend(reply).await;
            let backend = Backend::VsockUnix { path, port: 8443 };
            let err = match backend.connect().await {
                Ok(_) => panic!("{reply:?} was accepted"),
                Err(e) => e,
            };
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{reply:?}"
            );
        }
    }

    #[test]
    fn backends_print_as_status_shows_them() {
        assert_eq!(
            Backend::Vsock { cid: 7, port: 8443 }.to_string(),
            "vsock:7:8443"
        );
        assert_eq!(
            Backend::Tcp("127.0.0.1:1".parse().unwrap()).to_string(),
            "tcp:127.0.0.1:1"
        );
    }
}
