//! `cloister demo`: the whole flow on this machine, on the INSECURE
//! simulated TEE: a development identity provider, an enclave image, an
//! appraisal policy pinned to the image's measurement, `cloisterd`
//! launching the enclave and relaying to it, and a client that attests the
//! enclave, proves it is live, and asks a question, then watches a policy
//! that refuses simulated TEEs refuse it. The enclave's model comes sealed:
//! the data owner seals it and runs a key broker, and the enclave gets the
//! key only after the broker appraised its evidence.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use cloister::client::{AttestedConnection, ClientError};
use cloister::dev::{
    audit_table, install_policy_bundle, policy_table, sim_enclave_toml_with_engine,
    standard_policy_bundle, DEV_AUDIENCE,
};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::Bindings;
use cloister_attestation::sim::SimTee;
use cloister_attestation::types::{HostData, Measurement};
use cloister_policy::identity::DevIdp;
use cloister_vault::kbs::client::{request_key, BrokerEndpoint};
use cloister_vault::kbs::server::TlsIdentity;
use cloister_vault::kbs::store::{KeyStore, MasterKey};
use cloister_vault::{seal_to_vec, ContentKind, DataKey, SealParams, DEFAULT_CHUNK_LOG2};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use time::OffsetDateTime;

use crate::measure::sim_image_measurement;
use crate::query::{print_policy, print_trust};

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
    /// The policy bundle to put in the image (default: the standard bundle
    /// `scripts/build-policies` builds, beside the binaries' target directory).
    #[arg(long, value_name = "DIR")]
    policy_bundle: Option<PathBuf>,
    /// A model bundle (a GGUF file, e.g. SmolLM2-135M-Instruct from
    /// scripts/fetch-models) for the embedded engine; without it the demo
    /// runs the echo test engine.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// A guideline corpus bundle (`cloister corpus build`) to ground
    /// guideline questions in; needs --model.
    #[arg(long, value_name = "FILE", requires = "model")]
    corpus: Option<PathBuf>,
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

    step("2. The data owner seals the model and sets up a key broker (on their own machine)");
    let owner = dir.join("owner");
    let host_files = dir.join("host");
    std::fs::create_dir_all(&owner)?;
    std::fs::create_dir_all(&host_files)?;
    let master_path = owner.join("master.key");
    let store = owner.join("kbs");
    MasterKey::generate(&master_path)?;
    let pin = TlsIdentity::load_or_create(&store)?.spki_sha256();
    let model_key = DataKey::generate()?;
    let model_bytes = match &args.model {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => DEMO_MODEL.to_vec(),
    };
    let bundle_path = host_files.join("model.sealed");
    let (header, sealed) = seal_to_vec(
        &model_bytes,
        &model_key,
        &SealParams {
            key_id: DEMO_KEY_ID.into(),
            kind: ContentKind::Model,
            bundle_version: 1,
            chunk_log2: DEFAULT_CHUNK_LOG2,
        },
    )?;
    std::fs::write(&bundle_path, sealed)?;
    println!(
        "   sealed {} bytes under key {DEMO_KEY_ID} (version 1) -> {}; the host gets only this",
        header.plaintext_len,
        bundle_path.display()
    );
    // The guideline corpus is sealed the same way, under its own key.
    let corpus_key = DataKey::generate()?;
    let corpus_path = host_files.join("guidelines.sealed");
    if let Some(path) = &args.corpus {
        let corpus =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (corpus_header, sealed) = seal_to_vec(
            &corpus,
            &corpus_key,
            &SealParams {
                key_id: DEMO_CORPUS_KEY_ID.into(),
                kind: ContentKind::Data,
                bundle_version: 1,
                chunk_log2: DEFAULT_CHUNK_LOG2,
            },
        )?;
        std::fs::write(&corpus_path, sealed)?;
        println!(
            "   sealed the guideline corpus, {} bytes, under key {DEMO_CORPUS_KEY_ID} -> {}",
            corpus_header.plaintext_len,
            corpus_path.display()
        );
    }
    let broker_address = format!("127.0.0.1:{}", free_port()?);
    println!(
        "   key broker {broker_address}, TLS key pin {}",
        hex::encode(pin)
    );

    step("3. The enclave image: enclave.toml trusts that IdP, pins the policy bundle and the broker, names the sealed model");
    let image = dir.join("image");
    let bundle_dir = args
        .policy_bundle
        .clone()
        .unwrap_or_else(|| standard_policy_bundle(bin_dir));
    let policy_bundle = install_policy_bundle(&bundle_dir, &image)?;
    let policy_digest = hex::encode(policy_bundle.digest());
    let policy_table = policy_table(&policy_digest);
    println!(
        "   policy bundle {:?} ({}), digest {policy_digest}",
        policy_bundle.manifest.name,
        policy_bundle
            .manifest
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    let auditor = cloister_audit::AuditorKey::generate()?;
    let auditor_path = dir.join("auditor.key");
    std::fs::write(&auditor_path, auditor.to_file_text())?;
    println!(
        "   audit records sealed to the compliance team's key {}… (`cloister audit keygen`; private half in {})",
        auditor.public().to_hex().get(..16).unwrap_or_default(),
        auditor_path.display()
    );
    let audit_table = audit_table(&auditor.public().to_hex(), false);
    let engine = if args.model.is_some() {
        "candle"
    } else {
        "test-echo"
    };
    let mut enclave_toml = format!(
        "{}{policy_table}{audit_table}\n[broker]\naddress = \"{broker_address}\"\nspki_sha256 = \"{}\"\n\n[[sealed]]\nname = \"model\"\nkey_id = \"{DEMO_KEY_ID}\"\nkind = \"model\"\n",
        sim_enclave_toml_with_engine(&idp, engine)?,
        hex::encode(pin)
    );
    if args.corpus.is_some() {
        enclave_toml.push_str(&format!(
            "\n[[sealed]]\nname = \"guidelines\"\nkey_id = \"{DEMO_CORPUS_KEY_ID}\"\nkind = \"data\"\n\n[retrieval]\nbundle = \"guidelines\"\ntop_k = 3\n"
        ));
    }
    println!("   engine: {engine}");
    std::fs::write(image.join("enclave.toml"), enclave_toml)?;
    let measurement = sim_image_measurement(&enclave, &image)?;
    println!("   sim launch measurement {measurement}");

    step("4. Policies that accept exactly that measurement and policy bundle: the client's, and the data owner's release policy");
    let policy_path = dir.join("appraisal.toml");
    std::fs::write(
        &policy_path,
        format!(
            "# Development only: accepts the INSECURE simulated TEE.\nallow_simulated = true\npolicy_digests = [\"{policy_digest}\"]\n\n[sim]\nmeasurements = [\"{measurement}\"]\n"
        ),
    )?;
    let release_policy = format!(
        "# Development only: releases to the INSECURE simulated TEE.\nmin_bundle_version = 1\npolicy_digests = [\"{policy_digest}\"]\n\n[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = [\"{measurement}\"]\n"
    );
    let keys = KeyStore::open(&store, MasterKey::load(&master_path)?)?;
    keys.add(
        DEMO_KEY_ID,
        &model_key,
        &release_policy,
        OffsetDateTime::now_utc(),
    )?;
    if args.corpus.is_some() {
        keys.add(
            DEMO_CORPUS_KEY_ID,
            &corpus_key,
            &release_policy,
            OffsetDateTime::now_utc(),
        )?;
    }
    let broker_log = std::fs::File::create(owner.join("kbs.log"))?;
    let broker = Command::new(&exe)
        .args(["kbs", "serve", "--store"])
        .arg(&store)
        .arg("--master-key")
        .arg(&master_path)
        .args(["--listen", &broker_address])
        .stdin(Stdio::null())
        .stdout(broker_log.try_clone()?)
        .stderr(broker_log)
        .spawn()
        .context("cannot start the key broker")?;
    let _broker = Daemon(broker);
    wait_for_port(&broker_address)?;

    step(
        "5. cloisterd launches the enclave, which gets its key from the broker, unseals and serves",
    );
    let port = free_port()?;
    let endpoint = format!("127.0.0.1:{port}");
    let host_path = dir.join("host.toml");
    std::fs::write(
        &host_path,
        format!(
            "[daemon]\nadmin_socket = \"cloisterd.sock\"\nenclave_binary = {enclave:?}\nhealth_interval_ms = 500\n\n[[enclave]]\nname = \"scribe\"\ntee = \"sim\"\nimage = \"image\"\nlisten = \"{endpoint}\"\nresources = {{ vcpus = 2 }}\nsealed = {{ model = {:?}{} }}\n",
            bundle_path.display().to_string(),
            if args.corpus.is_some() {
                format!(", guidelines = {:?}", corpus_path.display().to_string())
            } else {
                String::new()
            }
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

    step("6. A clinician's token, signed by the IdP");
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

    step("7. The client attests the enclave (measurement and policy bundle), checks it is live, and asks");
    let policy = AppraisalPolicy::from_toml(&std::fs::read_to_string(&policy_path)?)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer = runtime.block_on(async {
        let mut connection = AttestedConnection::connect(&endpoint, policy.clone()).await?;
        connection.check_freshness().await?;
        print_trust(&endpoint, connection.peer());
        connection.chat(&token, &args.prompt, None).await
    });
    match answer {
        Ok(answer) => {
            println!(
                "\n   Q: {}\n   A ({}): {}\n",
                args.prompt, answer.model, answer.text
            );
            print_policy(answer.raw.pointer("/cloister/policy"));
            println!();
        }
        Err(e) => bail!("the demo query failed: {e}"),
    }
    if args.corpus.is_some() {
        step("7a. A guideline question: the enclave retrieves passages from the sealed corpus, quotes them to the model, and the citations module checks the answer cites them");
        let question = "How should the dose of apixaban be reduced in atrial fibrillation?";
        let body = serde_json::json!({
            "messages": [{ "role": "user", "content": question }],
            "max_tokens": 96,
            "cloister": { "task": "guideline_qa", "patient": "Patient/demo-12" },
        });
        let outcome = runtime.block_on(async {
            let mut connection = AttestedConnection::connect(&endpoint, policy.clone()).await?;
            connection.chat_body(&token, &body).await
        });
        let (text, cloister) = match outcome {
            Ok(answer) => (Some(answer.text), answer.raw.get("cloister").cloned()),
            Err(ClientError::Api {
                code,
                message,
                cloister,
                ..
            }) => {
                println!("   refused ({code}): {message}");
                (None, Some(cloister))
            }
            Err(e) => bail!("the guideline question failed: {e}"),
        };
        println!("\n   Q: {question}");
        if let Some(text) = text {
            println!("   A: {text}");
        }
        crate::query::print_citations(cloister.as_ref().and_then(|c| c.pointer("/citations")));
        print_policy(cloister.as_ref().and_then(|c| c.pointer("/policy")));
        println!();
    }

    step(
        "7b. The policy gate: a billing clerk may not chat; a researcher's prompt is de-identified",
    );
    let billing = idp.mint(&idp.claims(
        DEV_AUDIENCE,
        "billing.office",
        "billing",
        "HPAYMT",
        now,
        time::Duration::minutes(15),
    ))?;
    let denied = runtime.block_on(async {
        let mut connection = AttestedConnection::connect(&endpoint, policy.clone()).await?;
        connection
            .chat(&billing, "What is the patient's diagnosis?", None)
            .await
    });
    match denied {
        Err(ClientError::Api {
            status,
            code,
            message,
            cloister,
        }) if status == 403 => {
            println!("   billing, chat: refused ({code}): {message}");
            print_policy(cloister.pointer("/policy"));
        }
        Err(e) => bail!("expected a policy denial, got: {e}"),
        Ok(_) => bail!("the access module let a billing clerk chat"),
    }
    let researcher = idp.mint(&idp.claims(
        DEV_AUDIENCE,
        "research.fellow",
        "researcher",
        "HRESCH",
        now,
        time::Duration::minutes(15),
    ))?;
    let research_prompt = "Mr. John Smith, DOB 03/14/1952, MRN 4471298: typical HbA1c target?";
    let redacted = runtime.block_on(async {
        let mut connection = AttestedConnection::connect(&endpoint, policy.clone()).await?;
        connection.chat(&researcher, research_prompt, None).await
    });
    match redacted {
        Ok(answer) => {
            println!("\n   researcher asks: {research_prompt}");
            if args.model.is_some() {
                println!("   the model answered (its prompt was de-identified first, see phi-guard below): {}", answer.text);
            } else {
                println!(
                    "   the model saw and answered (the echo engine repeats its prompt): {}",
                    answer.text
                );
            }
            print_policy(answer.raw.pointer("/cloister/policy"));
            println!();
        }
        Err(e) => bail!("the researcher's query failed: {e}"),
    }

    step("8. A production policy (allow_simulated = false) refuses the same enclave");
    let strict = AppraisalPolicy::report_only();
    let refused = runtime.block_on(AttestedConnection::connect(&endpoint, strict));
    match refused {
        Err(e @ ClientError::Attestation(_)) => {
            println!("   refused before sending anything: {e}\n")
        }
        Err(e) => bail!("expected an attestation refusal, got: {e}"),
        Ok(_) => bail!("a policy without allow_simulated accepted a simulated TEE"),
    }

    step("9. An enclave with another measurement asks the broker for the model key");
    let impostor = SimTee::new(Measurement([0x66; 48]), HostData([0; 32]))?;
    let broker_endpoint = BrokerEndpoint {
        address: broker_address.clone(),
        spki_sha256: pin,
    };
    let refused = runtime.block_on(request_key(
        &broker_endpoint,
        &header,
        &impostor,
        &Bindings::default(),
    ));
    match refused {
        Err(e @ cloister_vault::VaultError::Refused { .. }) => println!("   refused: {e}\n"),
        Err(e) => bail!("expected the broker to refuse, got: {e}"),
        Ok(_) => bail!("the broker released the key to an enclave its policy does not name"),
    }

    step("10. What the host sees (`cloisterd status`)");
    let status = Command::new(&cloisterd)
        .args(["status", "--config"])
        .arg(&host_path)
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&status.stdout)));

    step("11. The key broker's release log (`cloister kbs log`)");
    let releases = Command::new(&exe)
        .args(["kbs", "log", "--store"])
        .arg(&store)
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&releases.stdout)));

    drop(daemon);
    step("12. The compliance team verifies the audit log the host kept (`cloister audit verify`), then reads it with their key (`cloister audit search`)");
    let audit_dir = dir.join("audit").join("scribe");
    let verified = Command::new(&exe)
        .args(["audit", "verify", "--log"])
        .arg(&audit_dir)
        .arg("--policy")
        .arg(&policy_path)
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&verified.stdout)));
    if !verified.status.success() {
        bail!(
            "the audit log did not verify: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    let searched = Command::new(&exe)
        .args(["audit", "search", "--kind", "query", "--log"])
        .arg(&audit_dir)
        .arg("--key")
        .arg(&auditor_path)
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&searched.stdout)));
    if args.keep || args.dir.is_some() {
        println!("\nFiles kept in {}. Try it by hand:", dir.display());
        println!(
            "  cloister kbs serve --store {} --master-key {} --listen {broker_address}",
            store.display(),
            master_path.display()
        );
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

/// The demo's stand-in "model": the echo test engine quotes its first line,
/// which shows the unsealed bytes reached the answer. The real model
/// arrives with the inference issue.
const DEMO_MODEL: &[u8] = b"demo model sealed by the data owner, unsealed only inside the enclave\n(a stand-in for SmolLM2 until the embedded engine lands)\n";
const DEMO_KEY_ID: &str = "demo-model";
/// The key the demo seals the guideline corpus under.
const DEMO_CORPUS_KEY_ID: &str = "demo-guidelines";

fn wait_for_port(address: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!("the key broker did not listen on {address} within {STARTUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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
