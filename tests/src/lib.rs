//! A harness for end-to-end tests: a development IdP, an enclave image, a
//! `cloisterd` process with its own configuration and temporary directory,
//! and helpers to run the `cloister` CLI. Everything is a real process on
//! loopback; the binaries are the workspace's own (`scripts/test` builds
//! them, with the test engine, before running the tests).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cloister::dev::sim_enclave_toml;
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::sim::sim_measurement;
use cloister_attestation::types::Measurement;
use cloister_policy::identity::{CallerClaims, DevIdp};
use serde_json::Value;
use time::OffsetDateTime;

/// The audience every test enclave expects.
pub use cloister::dev::DEV_AUDIENCE as AUDIENCE;
/// How long a test waits for a state before failing (a bound, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Where the workspace binaries are: `$CLOISTER_BIN_DIR`, or the target
/// directory of the running test (`target/<profile>/deps/<test>` ->
/// `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins --features cloister-enclave/test-engine` first (scripts/test does)",
        path.display()
    );
    path
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A unique scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cloister-e2e-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// One `cloisterd` with one sim enclave.
pub struct Cluster {
    /// Scratch directory with every generated file.
    pub dir: PathBuf,
    /// The relay's address clients use.
    pub endpoint: String,
    /// The IdP the enclave trusts.
    pub idp: DevIdp,
    /// The enclave's sim measurement.
    pub measurement: Measurement,
    /// Where relayed bytes are recorded.
    pub capture: PathBuf,
    daemon: Option<Child>,
}

impl Cluster {
    /// Writes an image, a host configuration and a policy, starts
    /// `cloisterd`, and waits until the enclave is running.
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        let dir = scratch(tag);
        let idp = DevIdp::generate("https://idp.test.invalid", "test-key")?;
        let image = dir.join("image");
        std::fs::create_dir_all(&image)?;
        let config = sim_enclave_toml(&idp)?;
        std::fs::write(image.join("enclave.toml"), &config)?;
        let binary = std::fs::read(bin("cloister-enclave"))?;
        let measurement = sim_measurement(&sha2_384(&binary), config.as_bytes());
        let endpoint = format!("127.0.0.1:{}", free_port());
        let capture = dir.join("relay.capture");
        std::fs::write(
            dir.join("host.toml"),
            format!(
                "[daemon]\nadmin_socket = \"cloisterd.sock\"\nenclave_binary = {:?}\nhealth_interval_ms = 200\nhealth_failures = 2\n\n[[enclave]]\nname = \"e2e\"\ntee = \"sim\"\nimage = \"image\"\nlisten = \"{endpoint}\"\nrelay_capture = \"relay.capture\"\nresources = {{ vcpus = 2, memory_mib = 4096 }}\n",
                bin("cloister-enclave")
            ),
        )?;
        std::fs::write(
            dir.join("appraisal.toml"),
            format!("allow_simulated = true\n[sim]\nmeasurements = [\"{measurement}\"]\n"),
        )?;
        let log = std::fs::File::create(dir.join("cloisterd.log"))?;
        let daemon = Command::new(bin("cloisterd"))
            .arg("--config")
            .arg(dir.join("host.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let cluster = Self {
            dir,
            endpoint,
            idp,
            measurement,
            capture,
            daemon: Some(daemon),
        };
        cluster.wait_for(|s| {
            s.pointer("/enclaves/0/state").and_then(Value::as_str) == Some("running")
        })?;
        Ok(cluster)
    }

    /// The admin socket's answer to `status`.
    pub fn status(&self) -> anyhow::Result<Value> {
        let mut stream = UnixStream::connect(self.dir.join("cloisterd.sock"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"status\n")?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply)?;
        Ok(serde_json::from_str(&reply)?)
    }

    /// Polls status until `ready` holds.
    pub fn wait_for(&self, ready: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            if let Ok(status) = self.status() {
                if ready(&status) {
                    return Ok(status);
                }
            }
            if start.elapsed() > PATIENCE {
                bail!(
                    "cloisterd did not reach the expected state; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// cloisterd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("cloisterd.log")).unwrap_or_default()
    }

    /// The appraisal policy that accepts this cluster's enclave.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("appraisal.toml")
    }

    /// That policy, parsed.
    pub fn policy(&self) -> AppraisalPolicy {
        let text = std::fs::read_to_string(self.policy_path()).unwrap_or_default();
        AppraisalPolicy::from_toml(&text).unwrap_or_else(|_| AppraisalPolicy::report_only())
    }

    /// Good claims for a clinician.
    pub fn claims(&self) -> CallerClaims {
        let mut claims = self.idp.claims(
            AUDIENCE,
            "dr.test",
            "clinician",
            "TREAT",
            OffsetDateTime::now_utc(),
            time::Duration::minutes(10),
        );
        claims.patient = Some("Patient/e2e".into());
        claims
    }

    /// A token file for `claims`.
    pub fn token_file(&self, name: &str, claims: &CallerClaims) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, self.idp.mint(claims)?)?;
        Ok(path)
    }

    /// Runs `cloister query` against this cluster with `policy`, `token`,
    /// then `extra` arguments (flags and the prompt).
    pub fn query(&self, policy: &Path, token: &Path, extra: &[&str]) -> anyhow::Result<Output> {
        let mut args = vec![
            "query".to_owned(),
            "--endpoint".to_owned(),
            self.endpoint.clone(),
            "--policy".to_owned(),
            policy.display().to_string(),
            "--token".to_owned(),
            token.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Command::new(bin("cloister"))
            .args(&args)
            .output()
            .context("cannot run cloister query")
    }

    /// Runs `cloister` with `args`.
    pub fn cloister(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(bin("cloister"))
            .args(args)
            .output()
            .context("cannot run cloister")
    }

    /// Sends SIGTERM to cloisterd and waits for it; returns its exit code.
    pub fn shutdown(&mut self) -> anyhow::Result<Option<i32>> {
        let Some(mut daemon) = self.daemon.take() else {
            return Ok(None);
        };
        terminate(&mut daemon)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = terminate(&mut daemon);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM, then SIGKILL if it does not stop in time.
pub fn terminate(child: &mut Child) -> anyhow::Result<Option<i32>> {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    bail!("process did not stop on SIGTERM")
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Starts a hostile relay in `mode` in front of `upstream`.
pub fn mitm(upstream: &str, mode: &str) -> anyhow::Result<(Child, String)> {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin("cloister-mitm"))
        .args([listen.as_str(), upstream, mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let mut reader = BufReader::new(out);
        reader.read_line(&mut line)?;
        // Keep draining so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
    }
    if line.trim() != "ready" {
        let _ = child.kill();
        bail!("cloister-mitm did not start: {line:?}");
    }
    Ok((child, listen))
}

fn sha2_384(bytes: &[u8]) -> [u8; 48] {
    use sha2::Digest as _;
    sha2::Sha384::digest(bytes).into()
}
