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
use cloister::dev::{
    audit_table, install_policy_bundle, policy_table, sim_enclave_toml_with_engine,
    standard_policy_bundle,
};
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

/// The static (musl) `cloister-enclave` a VM image runs as its /init:
/// `$CLOISTER_GUEST_ENCLAVE`, or the `guest` profile's musl build in the
/// target directory of the workspace binaries (`scripts/test` builds it).
pub fn guest_enclave() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("CLOISTER_GUEST_ENCLAVE") {
        Some(path) => PathBuf::from(path),
        None => {
            let bins = bin_dir();
            bins.parent()
                .unwrap_or(&bins)
                .join("x86_64-unknown-linux-musl/guest/cloister-enclave")
        }
    };
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build -p cloister-enclave --profile guest --target x86_64-unknown-linux-musl` first (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A multi-threaded runtime for a test's client calls.
// A test cannot go on without a runtime: failing it is the right outcome.
#[allow(clippy::expect_used)]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
}

/// Process output as text, for assertions and failure messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
    /// The auditor key the enclave seals audit records to (its file is
    /// `auditor.key` in `dir`); the enclave keeps prompt and answer text.
    pub auditor: cloister_audit::AuditorKey,
    daemon: Option<Child>,
}

impl Cluster {
    /// Writes an image, a host configuration and a policy, starts
    /// `cloisterd`, and waits until the enclave is running.
    pub fn start(tag: &str) -> anyhow::Result<Self> {
        let mut cluster = Self::prepare(tag, "")?;
        cluster.launch(&[])?;
        cluster.wait_running()?;
        Ok(cluster)
    }

    /// Writes the image (the dev `enclave.toml` with the standard policy
    /// bundle, followed by `enclave_extra`) and an appraisal policy for its
    /// measurement; starts nothing.
    pub fn prepare(tag: &str, enclave_extra: &str) -> anyhow::Result<Self> {
        Self::prepare_with_policy(
            tag,
            &standard_policy_bundle(&bin_dir()),
            None,
            enclave_extra,
        )
    }

    /// As [`prepare`](Self::prepare) with the policy bundle in `bundle`,
    /// and `enclave.toml` pinning `pinned_digest` instead of the bundle's
    /// own digest where given.
    pub fn prepare_with_policy(
        tag: &str,
        bundle: &Path,
        pinned_digest: Option<&str>,
        enclave_extra: &str,
    ) -> anyhow::Result<Self> {
        Self::prepare_image(tag, bundle, pinned_digest, "test-echo", enclave_extra)
    }

    /// As [`prepare`](Self::prepare) with inference engine `engine`
    /// (`candle`, `openai`) instead of the echo engine.
    pub fn prepare_with_engine(
        tag: &str,
        engine: &str,
        enclave_extra: &str,
    ) -> anyhow::Result<Self> {
        Self::prepare_image(
            tag,
            &standard_policy_bundle(&bin_dir()),
            None,
            engine,
            enclave_extra,
        )
    }

    fn prepare_image(
        tag: &str,
        bundle: &Path,
        pinned_digest: Option<&str>,
        engine: &str,
        enclave_extra: &str,
    ) -> anyhow::Result<Self> {
        let dir = scratch(tag);
        let idp = DevIdp::generate("https://idp.test.invalid", "test-key")?;
        let image = dir.join("image");
        std::fs::create_dir_all(&image)?;
        let installed = hex::encode(install_policy_bundle(bundle, &image)?.digest());
        let policy = policy_table(pinned_digest.unwrap_or(&installed));
        let auditor = cloister_audit::AuditorKey::generate()?;
        std::fs::write(dir.join("auditor.key"), auditor.to_file_text())?;
        let audit = audit_table(&auditor.public().to_hex(), true);
        let config = format!(
            "{}{policy}{audit}{enclave_extra}",
            sim_enclave_toml_with_engine(&idp, engine)?
        );
        std::fs::write(image.join("enclave.toml"), &config)?;
        let binary = std::fs::read(bin("cloister-enclave"))?;
        let measurement = sim_measurement(&sha2_384(&binary), config.as_bytes());
        let endpoint = format!("127.0.0.1:{}", free_port());
        let capture = dir.join("relay.capture");
        std::fs::write(
            dir.join("appraisal.toml"),
            format!("allow_simulated = true\n[sim]\nmeasurements = [\"{measurement}\"]\n"),
        )?;
        Ok(Self {
            dir,
            endpoint,
            idp,
            measurement,
            capture,
            auditor,
            daemon: None,
        })
    }

    /// Writes `host.toml` (with `sealed` bundles, NAME and PATH) and starts
    /// `cloisterd`; does not wait for the enclave.
    pub fn launch(&mut self, sealed: &[(&str, &Path)]) -> anyhow::Result<()> {
        self.launch_as(
            "health_interval_ms = 200\nhealth_failures = 2\n",
            "tee = \"sim\"\nimage = \"image\"\n",
            sealed,
        )
    }

    /// As [`launch`](Self::launch), with the VM image
    /// [`build_vm_image`](Self::build_vm_image) wrote, under QEMU with
    /// software emulation (tee = "vm").
    pub fn launch_vm(&mut self, sealed: &[(&str, &Path)]) -> anyhow::Result<()> {
        // Health checks are TLS handshakes with an emulated CPU: on a loaded
        // 2-core machine one can take seconds, so a VM gets more slack.
        self.launch_as(
            "health_interval_ms = 1000\nhealth_failures = 5\n",
            "tee = \"vm\"\nimage = \"vm-image\"\nvm = { accel = \"tcg\", boot_timeout_s = 600 }\n",
            sealed,
        )
    }

    /// [`Cluster::launch_vm`], with the relay over virtio-vsock through a
    /// vhost-user backend (`$CLOISTER_VHOST_USER_VSOCK`, which scripts/test
    /// sets to the vhost-device-vsock scripts/setup installs) instead of
    /// QEMU's user-mode forward.
    pub fn launch_vm_over_vsock(&mut self, sealed: &[(&str, &Path)]) -> anyhow::Result<()> {
        let backend = std::env::var_os("CLOISTER_VHOST_USER_VSOCK").context(
            "CLOISTER_VHOST_USER_VSOCK is not set: scripts/test sets it to the vhost-device-vsock scripts/setup installs",
        )?;
        self.launch_as(
            "health_interval_ms = 1000\nhealth_failures = 5\n",
            &format!(
                "tee = \"vm\"\nimage = \"vm-image\"\nvm = {{ accel = \"tcg\", boot_timeout_s = 600, relay_transport = \"vhost-user-vsock\", guest_cid = 7, vhost_user_vsock = {:?} }}\n",
                PathBuf::from(backend).display().to_string()
            ),
            sealed,
        )
    }

    fn launch_as(
        &mut self,
        health: &str,
        tee: &str,
        sealed: &[(&str, &Path)],
    ) -> anyhow::Result<()> {
        let sealed: Vec<String> = sealed
            .iter()
            .map(|(name, path)| format!("{name} = {:?}", path.display().to_string()))
            .collect();
        std::fs::write(
            self.dir.join("host.toml"),
            format!(
                "[daemon]\nadmin_socket = \"cloisterd.sock\"\nenclave_binary = {:?}\n{health}\n[[enclave]]\nname = \"e2e\"\n{tee}listen = \"{}\"\nrelay_capture = \"relay.capture\"\nresources = {{ vcpus = 2, memory_mib = 2048 }}\nsealed = {{ {} }}\n",
                bin("cloister-enclave"),
                self.endpoint,
                sealed.join(", ")
            ),
        )?;
        let log = std::fs::File::create(self.dir.join("cloisterd.log"))?;
        let daemon = Command::new(bin("cloisterd"))
            .arg("--config")
            .arg(self.dir.join("host.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.daemon = Some(daemon);
        Ok(())
    }

    /// Builds a VM image (`cloister image build --tee vm`) from the prepared
    /// image directory with the static guest enclave ([`guest_enclave`]) and
    /// the kernel tree in `$CLOISTER_KERNEL_TREE`; the cluster's measurement
    /// and appraisal policy become the image's, and its release-policy
    /// fragment is `release-fragment.toml`. Returns the manifest.
    pub fn build_vm_image(&mut self) -> anyhow::Result<Value> {
        let kernel_tree = std::env::var_os("CLOISTER_KERNEL_TREE").context(
            "CLOISTER_KERNEL_TREE is not set: scripts/test sets it to the tree scripts/fetch-kernel extracts",
        )?;
        let out = self.cloister(&[
            "image",
            "build",
            "--json",
            "--tee",
            "vm",
            "--kernel-tree",
            &PathBuf::from(kernel_tree).display().to_string(),
            "--enclave-binary",
            &guest_enclave()?.display().to_string(),
            "--enclave-dir",
            &self.dir.join("image").display().to_string(),
            "--out",
            &self.dir.join("vm-image").display().to_string(),
            "--appraisal-policy",
            &self.policy_path().display().to_string(),
            "--release-policy",
            &self.dir.join("release-fragment.toml").display().to_string(),
        ])?;
        if !out.status.success() {
            bail!("cloister image build failed: {}", text(&out.stderr));
        }
        let manifest: Value = serde_json::from_slice(&out.stdout)?;
        let sim = manifest
            .pointer("/expected/sim")
            .and_then(Value::as_str)
            .context("the vm image has no expected sim measurement")?;
        self.measurement = sim.parse()?;
        Ok(manifest)
    }

    /// The enclave's audit log directory (cloisterd's default for it).
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.join("audit").join("e2e")
    }

    /// Waits until `cloisterd` reports the enclave running.
    pub fn wait_running(&self) -> anyhow::Result<Value> {
        self.wait_for(|s| s.pointer("/enclaves/0/state").and_then(Value::as_str) == Some("running"))
    }

    /// Waits until cloisterd's log (which carries the enclave's) contains `text`.
    pub fn wait_for_log(&self, text: &str) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(text) {
                return Ok(log);
            }
            if start.elapsed() > PATIENCE {
                bail!("cloisterd's log never said {text:?}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
        self.wait_for_within(PATIENCE, ready)
    }

    /// As [`wait_for`](Self::wait_for), waiting up to `patience` (a VM
    /// under software emulation takes far longer to boot than a process).
    pub fn wait_for_within(
        &self,
        patience: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            if let Ok(status) = self.status() {
                if ready(&status) {
                    return Ok(status);
                }
            }
            if start.elapsed() > patience {
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

    /// SIGKILLs the running enclave, as a crash would; returns its pid.
    pub fn kill_enclave(&self) -> anyhow::Result<i32> {
        let pid = self
            .status()?
            .pointer("/enclaves/0/pid")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .context("cloisterd reports no enclave pid")?;
        let target = rustix::process::Pid::from_raw(pid).context("pid 0")?;
        rustix::process::kill_process(target, rustix::process::Signal::KILL)?;
        Ok(pid)
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

/// The data owner's key broker, `cloister kbs serve`, as a process with its
/// own store directory (which stands for the data owner's machine: nothing
/// in it is visible to the host).
pub struct Broker {
    /// The data owner's directory: the broker store, master key, data keys
    /// and plaintexts.
    pub dir: PathBuf,
    /// Where it listens.
    pub address: String,
    /// SHA-256 of its TLS public key.
    pub pin: String,
    child: Option<Child>,
}

impl Broker {
    /// Creates the store (`cloister kbs init`); does not serve yet.
    pub fn init(tag: &str) -> anyhow::Result<Self> {
        let dir = scratch(&format!("{tag}-owner"));
        let out = Command::new(bin("cloister"))
            .args(["kbs", "init", "--json", "--store"])
            .arg(dir.join("store"))
            .arg("--master-key")
            .arg(dir.join("master.key"))
            .output()?;
        if !out.status.success() {
            bail!("kbs init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let pin = v
            .get("spki_sha256")
            .and_then(Value::as_str)
            .context("kbs init printed no pin")?
            .to_owned();
        Ok(Self {
            dir,
            address: format!("127.0.0.1:{}", free_port()),
            pin,
            child: None,
        })
    }

    /// The `[broker]` table for an enclave configuration.
    pub fn enclave_toml(&self) -> String {
        format!(
            "\n[broker]\naddress = \"{}\"\nspki_sha256 = \"{}\"\n",
            self.address, self.pin
        )
    }

    /// The `[broker]` table for an enclave in a VM on QEMU's user network,
    /// where the host's loopback is 10.0.2.2.
    pub fn enclave_toml_for_vm(&self) -> String {
        self.enclave_toml().replace("127.0.0.1:", "10.0.2.2:")
    }

    /// Runs `cloister kbs SUBCOMMAND --store .. --master-key .. ARGS`.
    pub fn kbs(&self, subcommand: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(bin("cloister"))
            .args(["kbs", subcommand, "--store"])
            .arg(self.dir.join("store"))
            .arg("--master-key")
            .arg(self.dir.join("master.key"))
            .args(args)
            .output()
            .context("cannot run cloister kbs")
    }

    /// Seals `plain` as bundle `name` of `kind` with `cloister seal` under a
    /// fresh key `NAME-key`, which the broker releases (version 1 and up)
    /// to `cluster`'s measurement; the sealed bundle is `NAME.sealed` in the
    /// cluster's directory, where the host keeps it.
    pub fn seal_for(
        &self,
        cluster: &Cluster,
        name: &str,
        kind: &str,
        plain: &[u8],
    ) -> anyhow::Result<PathBuf> {
        let policy = format!(
            "min_bundle_version = 1\npolicy_digests = \"any\"\n[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = [\"{}\"]\n",
            cluster.measurement
        );
        self.seal_with_policy(cluster, name, kind, plain, &policy)
    }

    /// As [`seal_for`](Self::seal_for), with the key's release policy
    /// `policy` (TOML text).
    pub fn seal_with_policy(
        &self,
        cluster: &Cluster,
        name: &str,
        kind: &str,
        plain: &[u8],
        policy: &str,
    ) -> anyhow::Result<PathBuf> {
        let plain_path = self.dir.join(format!("{name}.plain"));
        std::fs::write(&plain_path, plain)?;
        let key = self.dir.join(format!("{name}.key"));
        let bundle = cluster.dir.join(format!("{name}.sealed"));
        let key_id = format!("{name}-key");
        let out = cluster.cloister(&[
            "seal",
            "--generate-key",
            "--key",
            &key.display().to_string(),
            "--key-id",
            &key_id,
            "--version",
            "1",
            "--kind",
            kind,
            &plain_path.display().to_string(),
            &bundle.display().to_string(),
        ])?;
        if !out.status.success() {
            bail!("cloister seal failed: {}", text(&out.stderr));
        }
        self.add_key(&key_id, &key, policy)?;
        Ok(bundle)
    }

    /// Adds `key_id` from `key_file` with `policy` (TOML text).
    pub fn add_key(&self, key_id: &str, key_file: &Path, policy: &str) -> anyhow::Result<()> {
        let policy_path = self.dir.join(format!("{key_id}.release.toml"));
        std::fs::write(&policy_path, policy)?;
        let out = self.kbs(
            "add-key",
            &[
                "--key-id",
                key_id,
                "--key",
                &key_file.display().to_string(),
                "--policy",
                &policy_path.display().to_string(),
            ],
        )?;
        if !out.status.success() {
            bail!(
                "kbs add-key failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts `cloister kbs serve` and waits until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("kbs.log"))?;
        let child = Command::new(bin("cloister"))
            .args(["-v", "kbs", "serve", "--store"])
            .arg(self.dir.join("store"))
            .arg("--master-key")
            .arg(self.dir.join("master.key"))
            .args(["--listen", &self.address])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(&self.address).is_err() {
            if start.elapsed() > PATIENCE {
                bail!("the key broker never listened; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The broker's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kbs.log")).unwrap_or_default()
    }

    /// The release log's entries so far.
    pub fn releases(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("store/releases.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a release-log entry that satisfies `matches`.
    pub fn wait_for_release(&self, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            if let Some(entry) = self.releases().into_iter().find(|e| matches(e)) {
                return Ok(entry);
            }
            if start.elapsed() > PATIENCE {
                bail!(
                    "no such release-log entry; entries: {:?}\nbroker log:\n{}",
                    self.releases(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
