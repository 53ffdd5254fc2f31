//! `cloister demo`: the whole flow on this machine, on the INSECURE
//! simulated TEE: a development identity provider, an enclave image, an
//! appraisal policy pinned to the image's measurement, `cloisterd`
//! launching the enclave and relaying to it, and a client that attests the
//! enclave, proves it is live, and asks a question, then watches a policy
//! that refuses simulated TEEs refuse it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use cloister::client::{AttestedConnection, ClientError};
use cloister::dev::{sim_enclave_toml, DEV_AUDIENCE};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_policy::identity::DevIdp;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use time::OffsetDateTime;

use crate::measure::sim_image_measurement;
use crate::query::print_trust;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `cloister demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Work directory for the generated files (default: a fresh temporary
    /// directory, removed afterwards unless --keep).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the work directory and print how to use it by hand.
    #[arg(long)]
    keep: bool,
    /// The question to ask.
    #[arg(long, default_value = "Summarise the discharge plan for bed 12.")]
    prompt: String,
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot locate cloister")?;
    let bin_dir = exe.parent().context("cloister has no directory")?;
    let cloisterd = bin_dir.join("cloisterd");
    let enclave = bin_dir.join("cloister-enclave");
    for binary in [&cloisterd, &enclave] {
        if !binary.is_file() {
            bail!(
                "{} is missing: build the workspace (scripts/run does) so cloisterd and cloister-enclave sit beside cloister",
                binary.display()
            );
        }
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("cloister-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(dir.join("image"))
        .with_context(|| format!("cannot create {}", dir.display()))?;

    println!("Cloister demo: the INSECURE simulated TEE, on this machine\n");
    step("1. A development identity provider (a hospital would use its own)");
    let idp = DevIdp::generate("https://idp.demo.invalid", "demo-key-1")?;

    step("2. The enclave image: enclave.toml trusts that IdP and uses the test engine");
    let image = dir.join("image");
    std::fs::write(image.join("enclave.toml"), sim_enclave_toml(&idp)?)?;
    let measurement = sim_image_measurement(&enclave, &image)?;
    println!("   sim launch measurement {measurement}");

    step("3. An appraisal policy that accepts exactly that measurement");
    let policy_path = dir.join("appraisal.toml");
    std::fs::write(
        &policy_path,
        format!(
            "# Development only: accepts the INSECURE simulated TEE.\nallow_simulated = true\n\n[sim]\nmeasurements = [\"{measurement}\"]\n"
        ),
    )?;

    step("4. cloisterd launches the enclave and relays to it");
    let port = free_port()?;
    let endpoint = format!("127.0.0.1:{port}");
    let host_path = dir.join("host.toml");
    std::fs::write(
        &host_path,
        format!(
            "[daemon]\nadmin_socket = \"cloisterd.sock\"\nenclave_binary = {enclave:?}\nhealth_interval_ms = 500\n\n[[enclave]]\nname = \"scribe\"\ntee = \"sim\"\nimage = \"image\"\nlisten = \"{endpoint}\"\nresources = {{ vcpus = 2 }}\n"
        ),
    )?;
    let log_path = dir.join("cloisterd.log");
    let log = std::fs::File::create(&log_path)?;
    let daemon = Command::new(&cloisterd)
        .arg("--config")
        .arg(&host_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", cloisterd.display()))?;
    let mut daemon = Daemon(daemon);
    wait_until_running(&cloisterd, &host_path, &mut daemon.0)?;
    println!(
        "   cloisterd's log: {} (kept if the demo fails)",
        log_path.display()
    );

    step("5. A clinician's token, signed by the IdP");
    let now = OffsetDateTime::now_utc();
    let mut claims = idp.claims(
        DEV_AUDIENCE,
        "dr.grey",
        "clinician",
        "TREAT",
        now,
        time::Duration::minutes(15),
    );
    claims.patient = Some("Patient/demo-12".into());
    let token = idp.mint(&claims)?;
    let token_path = dir.join("token.jwt");
    std::fs::write(&token_path, &token)?;

    step("6. The client attests the enclave, checks it is live, and asks");
    let policy = AppraisalPolicy::from_toml(&std::fs::read_to_string(&policy_path)?)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer = runtime.block_on(async {
        let mut connection = AttestedConnection::connect(&endpoint, policy).await?;
        connection.check_freshness().await?;
        print_trust(&endpoint, connection.peer());
        connection.chat(&token, &args.prompt, None).await
    });
    match answer {
        Ok(answer) => println!(
            "\n   Q: {}\n   A ({}): {}\n",
            args.prompt, answer.model, answer.text
        ),
        Err(e) => bail!("the demo query failed: {e}"),
    }

    step("7. A production policy (allow_simulated = false) refuses the same enclave");
    let strict = AppraisalPolicy::report_only();
    let refused = runtime.block_on(AttestedConnection::connect(&endpoint, strict));
    match refused {
        Err(e @ ClientError::Attestation(_)) => {
            println!("   refused before sending anything: {e}\n")
        }
        Err(e) => bail!("expected an attestation refusal, got: {e}"),
        Ok(_) => bail!("a policy without allow_simulated accepted a simulated TEE"),
    }

    step("8. What the host sees (`cloisterd status`)");
    let status = Command::new(&cloisterd)
        .args(["status", "--config"])
        .arg(&host_path)
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&status.stdout)));

    drop(daemon);
    if args.keep || args.dir.is_some() {
        println!("\nFiles kept in {}. Try it by hand:", dir.display());
        println!("  cloisterd --config {}", host_path.display());
        println!(
            "  cloister query --endpoint {endpoint} --policy {} --token {} \"your question\"",
            policy_path.display(),
            token_path.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "\nDemo complete. Everything above ran on the simulated TEE: INSECURE, development only."
    );
    Ok(ExitCode::SUCCESS)
}

fn step(title: &str) {
    println!("{title}");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Stops cloisterd (SIGTERM, then SIGKILL) however the demo ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until_running(cloisterd: &Path, host: &Path, daemon: &mut Child) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("   {spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message("waiting for the enclave to come up");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let outcome = loop {
        if let Ok(Some(status)) = daemon.try_wait() {
            break Err(anyhow::anyhow!("cloisterd exited: {status}; see its log"));
        }
        let output = Command::new(cloisterd)
            .args(["status", "--json", "--config"])
            .arg(host)
            .output();
        if let Ok(output) = output {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&output.stdout) {
                if value.pointer("/enclaves/0/state").and_then(Value::as_str) == Some("running") {
                    break Ok(());
                }
            }
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            break Err(anyhow::anyhow!(
                "the enclave did not come up within {STARTUP_TIMEOUT:?}; see cloisterd's log"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    spinner.finish_and_clear();
    if outcome.is_ok() {
        println!(
            "   enclave running after {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    outcome
}
