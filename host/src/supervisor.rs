//! Launching and supervising one enclave: start it, wait until it answers,
//! health-check it, and restart it with exponential backoff when it exits or
//! stops answering. Its logs are forwarded to cloisterd's, tagged.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::backend::Backend;
use crate::config::{DaemonConfig, EnclaveConfig, TeeKind};
use crate::probe::{ClaimedEvidence, Prober};

/// First restart delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An enclave up this long has its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a stopping enclave gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where an enclave is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    /// Launched, not yet answering.
    Starting,
    /// Answering health checks.
    Running,
    /// Exited or unhealthy; waiting out the backoff.
    Restarting,
    /// Stopped by shutdown.
    Stopped,
}

/// One enclave's status, as `cloisterd status` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EnclaveStatus {
    pub(crate) name: String,
    pub(crate) tee: TeeKind,
    pub(crate) state: State,
    pub(crate) pid: Option<u32>,
    pub(crate) listen: SocketAddr,
    /// How the relay reaches the enclave (`tcp:`, `vsock:` or `vsock-unix:`).
    pub(crate) backend: Option<String>,
    pub(crate) restarts: u64,
    pub(crate) uptime_s: Option<u64>,
    pub(crate) last_exit: Option<String>,
    pub(crate) evidence: Option<ClaimedEvidence>,
    /// From launch to the first answered health check, last launch.
    pub(crate) ready_after_ms: Option<u64>,
    #[serde(skip)]
    pub(crate) started: Option<Instant>,
}

/// Shared between the supervisor, the relay and the admin API.
pub(crate) type SharedStatus = Arc<Mutex<EnclaveStatus>>;

pub(crate) struct Supervisor {
    pub(crate) config: EnclaveConfig,
    pub(crate) daemon: DaemonConfig,
    pub(crate) binary: PathBuf,
    pub(crate) status: SharedStatus,
    pub(crate) backend: watch::Sender<Option<Backend>>,
    pub(crate) prober: Prober,
}

impl Supervisor {
    fn update(&self, f: impl FnOnce(&mut EnclaveStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Runs until `shutdown` turns true.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = self.run_once(&mut shutdown).await;
            self.backend.send_replace(None);
            let (uptime, reason) = match outcome {
                Ended::Shutdown => {
                    self.update(|s| {
                        s.state = State::Stopped;
                        s.pid = None;
                        s.backend = None;
                        s.started = None;
                    });
                    return;
                }
                Ended::Failed { uptime, reason } => (uptime, reason),
            };
            tracing::warn!(enclave = %self.config.name, %reason, ?backoff, "enclave down; restarting");
            if uptime >= STABLE_AFTER {
                backoff = MIN_BACKOFF;
            }
            self.update(|s| {
                s.state = State::Restarting;
                s.restarts += 1;
                s.pid = None;
                s.backend = None;
                s.started = None;
                s.last_exit = Some(reason);
            });
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                self.update(|s| s.state = State::Stopped);
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn run_once(&self, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let started = Instant::now();
        let failed = |reason: String| Ended::Failed {
            uptime: started.elapsed(),
            reason,
        };
        // Killed (kill_on_drop) when this launch ends, whichever way.
        let (backend, mut child, _vsock_backend) = match self.start().await {
            Ok(started) => started,
            Err(e) => return failed(format!("cannot launch: {e:#}")),
        };
        let pid = child.id();
        tracing::info!(enclave = %self.config.name, pid, %backend, "enclave launched");
        self.update(|s| {
            s.state = State::Starting;
            s.pid = pid;
            s.backend = Some(backend.to_string());
            s.evidence = None;
        });

        let interval = Duration::from_millis(self.daemon.health_interval_ms.max(50));
        let startup_timeout = if self.config.tee == TeeKind::Sim {
            self.daemon.startup_timeout_s
        } else {
            self.config.vm.boot_timeout_s
        };
        let startup_deadline = started + Duration::from_secs(startup_timeout);
        let mut healthy = false;
        let mut failures = 0u32;
        loop {
            match self.prober.probe(&backend).await {
                Ok(claims) => {
                    failures = 0;
                    if !healthy {
                        healthy = true;
                        let ready_ms = started.elapsed().as_millis() as u64;
                        tracing::info!(
                            enclave = %self.config.name,
                            tee = %claims.tee,
                            measurement = %claims.measurement,
                            ready_ms,
                            "enclave is up (claims shown unverified: clients verify)"
                        );
                        self.update(|s| s.ready_after_ms = Some(ready_ms));
                        self.backend.send_replace(Some(backend.clone()));
                    }
                    self.update(|s| {
                        if s.state != State::Running {
                            s.started = Some(Instant::now());
                        }
                        s.state = State::Running;
                        s.evidence = Some(claims);
                    });
                }
                Err(e) if healthy => {
                    failures += 1;
                    tracing::warn!(enclave = %self.config.name, failures, error = %e, "health check failed");
                    if failures >= self.daemon.health_failures {
                        stop(&mut child).await;
                        return failed(format!("{failures} health checks failed: {e}"));
                    }
                }
                Err(e) => {
                    if Instant::now() > startup_deadline {
                        stop(&mut child).await;
                        return failed(format!("not healthy within {startup_timeout}s: {e}"));
                    }
                }
            }
            let wait = if healthy {
                interval
            } else {
                Duration::from_millis(100)
            };
            tokio::select! {
                status = child.wait() => {
                    let reason = match status {
                        Ok(s) => format!("exited: {s}"),
                        Err(e) => format!("cannot wait for it: {e}"),
                    };
                    return failed(reason);
                }
                _ = shutdown.changed() => {
                    tracing::info!(enclave = %self.config.name, "stopping enclave");
                    stop(&mut child).await;
                    return Ended::Shutdown;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts the enclave (a process, or QEMU and, for a vhost-user vsock
    /// relay, its device backend first) and says how to reach it.
    async fn start(&self) -> anyhow::Result<(Backend, Child, Option<Child>)> {
        // The host owns the network: it picks the enclave's private port.
        let loopback = free_loopback_port().context("no free loopback port")?;
        if self.config.tee == TeeKind::Sim {
            let child = self.spawn(self.process_command(loopback))?;
            return Ok((Backend::Tcp(loopback), child, None));
        }
        let launch = crate::vm::launch(&self.config, loopback)?;
        let vsock_backend = match launch.vsock_backend {
            Some(vsock) => {
                let mut backend = self.spawn(vsock.command)?;
                wait_for_socket(&mut backend, &vsock.control_socket).await?;
                Some(backend)
            }
            None => None,
        };
        let child = self.spawn(launch.qemu)?;
        Ok((launch.backend, child, vsock_backend))
    }

    fn spawn(&self, mut command: Command) -> anyhow::Result<Child> {
        command
            // Nothing of the host's environment reaches the enclave.
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start {}",
                command.as_std().get_program().to_string_lossy()
            )
        })?;
        if let Some(out) = child.stdout.take() {
            forward_logs(self.config.name.clone(), out);
        }
        if let Some(err) = child.stderr.take() {
            forward_logs(self.config.name.clone(), err);
        }
        Ok(child)
    }

    /// The enclave agent as a local process (tee = "sim").
    fn process_command(&self, backend: SocketAddr) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--image")
            .arg(&self.config.image)
            .arg("--listen")
            .arg(backend.to_string());
        if let Some(dir) = &self.config.audit_dir {
            command.arg("--audit-dir").arg(dir);
        }
        if let Some(vcpus) = self.config.resources.vcpus {
            command.arg("--worker-threads").arg(vcpus.to_string());
        }
        if let Some(mib) = self.config.resources.memory_mib {
            command.arg("--memory-limit-mib").arg(mib.to_string());
        }
        for (name, path) in &self.config.sealed {
            let mut arg = std::ffi::OsString::from(format!("{name}="));
            arg.push(path);
            command.arg("--sealed").arg(arg);
        }
        command
    }
}

enum Ended {
    Shutdown,
    Failed { uptime: Duration, reason: String },
}

/// How long a vhost-user vsock backend may take to create its socket.
const VSOCK_BACKEND_READY: Duration = Duration::from_secs(10);

/// Waits until `backend` has created `socket` (QEMU connects to it at
/// start, and fails if it is not there), or has exited.
async fn wait_for_socket(backend: &mut Child, socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + VSOCK_BACKEND_READY;
    loop {
        if socket.exists() {
            return Ok(());
        }
        if let Some(status) = backend.try_wait()? {
            bail!("the vsock backend exited before listening: {status}");
        }
        if Instant::now() > deadline {
            bail!(
                "the vsock backend did not create {} within {VSOCK_BACKEND_READY:?}",
                socket.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Longest log line; a longer one is logged in pieces of this size.
const MAX_LOG_LINE: usize = 16 * 1024;

/// Forwards the enclave's output (a process's stdout/stderr, a VM's serial
/// console) line by line into cloisterd's log. It keeps reading whatever
/// arrives (invalid UTF-8, control characters, endless lines) so a full pipe
/// never stalls the enclave.
fn forward_logs(name: String, stream: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LOG_LINE as u64)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(text) = printable(&line) {
                tracing::info!(target: "enclave", enclave = %name, "{text}");
            }
        }
    });
}

/// A log line without control characters (firmware escape sequences), or
/// None if nothing printable is left.
fn printable(line: &[u8]) -> Option<String> {
    let text: String = String::from_utf8_lossy(line)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let text = text.trim_end();
    (!text.trim().is_empty()).then(|| text.to_owned())
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn console_lines_lose_escape_sequences_and_bad_bytes_do_not_stop_them() {
        assert_eq!(
            printable(b"\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1.16.2)\r\n").as_deref(),
            Some("c[?7l[2JSeaBIOS (version 1.16.2)")
        );
        assert_eq!(
            printable(b"\xff\xfeok\n").as_deref(),
            Some("\u{fffd}\u{fffd}ok")
        );
        assert_eq!(printable(b"\x1b\r\n"), None);
    }
}
