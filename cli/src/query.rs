//! `cloister query`: attest an enclave, prove it is live, ask it one
//! question, and say exactly what was trusted.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use cloister::client::{AttestedConnection, ClientError};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::AttestedPeer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Exit status: the enclave's attestation was refused; nothing was sent.
pub(crate) const EXIT_REFUSED: u8 = 1;
/// Exit status: the endpoint could not be reached or TLS/HTTP failed.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;
/// Exit status: the enclave refused the request (401, 4xx, 5xx).
pub(crate) const EXIT_REQUEST_REFUSED: u8 = 4;

/// Arguments of `cloister query`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 answered, 1 attestation or freshness refused (nothing was sent), \
2 usage error or unreadable file, 3 endpoint unreachable or TLS/HTTP failure, \
4 the enclave refused the request (e.g. 401 for a bad token).")]
pub(crate) struct QueryArgs {
    /// The enclave's address (cloisterd's relay), HOST:PORT.
    #[arg(long)]
    endpoint: String,
    /// Appraisal policy the enclave must satisfy (TOML).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// File holding your bearer token (a JWT from the hospital's IdP).
    #[arg(long, value_name = "FILE")]
    token: PathBuf,
    /// Stream the answer as it is generated.
    #[arg(long)]
    stream: bool,
    /// Most tokens to generate.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// The clinical task, for the policy gate (e.g. summarize, prior_auth,
    /// guideline_qa; the enclave assumes chat).
    #[arg(long)]
    task: Option<String>,
    /// The patient the question is about (e.g. a FHIR Patient id).
    #[arg(long)]
    patient: Option<String>,
    /// Why emergency access is needed (with a token whose purpose of use is ETREAT).
    #[arg(long, value_name = "REASON")]
    break_glass_reason: Option<String>,
    /// The patient's record, a FHIR R4 Bundle (JSON), for summarize and prior_auth.
    #[arg(long, value_name = "FILE")]
    fhir: Option<PathBuf>,
    /// Sampling temperature (0, the default, is greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Sampling seed, to reproduce an answer.
    #[arg(long)]
    seed: Option<u64>,
    /// Text that ends the answer (repeatable, up to 4).
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// The question.
    prompt: String,
}

impl QueryArgs {
    /// The chat completion request body.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = json!({ "messages": [{ "role": "user", "content": self.prompt }] });
        let mut context = serde_json::Map::new();
        for (key, value) in [
            ("task", &self.task),
            ("patient", &self.patient),
            ("break_glass_reason", &self.break_glass_reason),
        ] {
            if let Some(value) = value {
                context.insert(key.into(), json!(value));
            }
        }
        if let Some(path) = &self.fhir {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let bundle: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            context.insert("fhir".into(), bundle);
        }
        if let Some(map) = body.as_object_mut() {
            if let Some(n) = self.max_tokens {
                map.insert("max_tokens".into(), json!(n));
            }
            if let Some(t) = self.temperature {
                map.insert("temperature".into(), json!(t));
            }
            if let Some(seed) = self.seed {
                map.insert("seed".into(), json!(seed));
            }
            if !self.stop.is_empty() {
                map.insert("stop".into(), json!(self.stop));
            }
            if !context.is_empty() {
                map.insert("cloister".into(), Value::Object(context));
            }
        }
        Ok(body)
    }
}

pub(crate) fn run(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let policy_text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read policy {}", args.policy.display()))?;
    let policy = AppraisalPolicy::from_toml(&policy_text)
        .with_context(|| format!("policy {}", args.policy.display()))?;
    let token = std::fs::read_to_string(&args.token)
        .with_context(|| format!("cannot read token {}", args.token.display()))?;
    let body = args.body()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok(runtime.block_on(query(args, &body, policy, token.trim())))
}

async fn query(args: &QueryArgs, body: &Value, policy: AppraisalPolicy, token: &str) -> ExitCode {
    let outcome = async {
        let mut connection = AttestedConnection::connect(&args.endpoint, policy).await?;
        connection.check_freshness().await?;
        if !args.json {
            print_trust(&args.endpoint, connection.peer());
        }
        let answer = if args.stream && !args.json {
            println!("Answer:");
            let answer = connection
                .chat_stream_body(token, body, |piece| {
                    print!("{piece}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                })
                .await?;
            println!();
            answer
        } else {
            connection.chat_body(token, body).await?
        };
        Ok::<_, ClientError>((connection, answer))
    }
    .await;
    match outcome {
        Ok((connection, answer)) => {
            if args.json {
                let peer = connection.peer();
                let out = json!({
                    "endpoint": args.endpoint,
                    "attestation": peer.appraisal.result(),
                    "insecure": peer.tee().is_some_and(|t| t.is_insecure()),
                    "tls_key_sha256": hex::encode(Sha256::digest(&peer.spki)),
                    "fresh": true,
                    "model": answer.model,
                    "answer": answer.text,
                    "response": answer.raw,
                });
                println!("{out:#}");
            } else {
                if !args.stream {
                    println!("Answer ({}):\n{}", answer.model, answer.text);
                }
                print_citations(answer.raw.pointer("/cloister/citations"));
                print_policy(answer.raw.pointer("/cloister/policy"));
                print_audit(answer.raw.pointer("/cloister/audit"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = match &e {
                ClientError::Attestation(_) => EXIT_REFUSED,
                ClientError::Api { .. } => EXIT_REQUEST_REFUSED,
                _ => EXIT_UNREACHABLE,
            };
            if args.json {
                let (code, cloister) = match &e {
                    ClientError::Api { code, cloister, .. } => (json!(code), cloister.clone()),
                    _ => (Value::Null, Value::Null),
                };
                let out = json!({ "endpoint": args.endpoint, "error": e.to_string(), "refused": e.is_attestation(), "code": code, "cloister": cloister });
                println!("{out:#}");
            } else if let ClientError::Api { cloister, .. } = &e {
                print_policy(cloister.pointer("/policy"));
                print_audit(cloister.pointer("/audit"));
            }
            if e.is_attestation() {
                eprintln!("cloister query: REFUSED, nothing was sent: {e}");
            } else {
                eprintln!("cloister query: {e}");
            }
            ExitCode::from(code)
        }
    }
}

/// Where the enclave recorded the request, so an auditor can find it.
fn print_audit(audit: Option<&Value>) {
    if let Some(audit) = audit {
        println!(
            "Audit record {} in {}",
            audit
                .get("record")
                .and_then(Value::as_u64)
                .map_or("?".into(), |r| r.to_string()),
            audit.get("log").and_then(Value::as_str).unwrap_or("?")
        );
    }
}

/// The policy gates' decisions, one line per module that ran.
pub(crate) fn print_policy(policy: Option<&Value>) {
    let Some(policy) = policy else { return };
    let bundle = policy.get("bundle").and_then(Value::as_str).unwrap_or("?");
    println!("Policy bundle {bundle}:");
    for gate in ["input", "output"] {
        let Some(modules) = policy
            .pointer(&format!("/{gate}/modules"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for module in modules {
            let text = |key: &str| module.get(key).and_then(Value::as_str).unwrap_or("");
            let reasons: Vec<&str> = module
                .get("reasons")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r.get("code").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  {gate:<6} {:<12} {:<8} {}",
                text("module"),
                text("effect"),
                reasons.join(", ")
            );
        }
    }
    if let Some(required) = policy
        .get("requirements")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    {
        let names: Vec<&str> = required.iter().filter_map(Value::as_str).collect();
        println!("  requires: {}", names.join(", "));
    }
}

/// What the user is trusting, before the answer.
pub(crate) fn print_trust(endpoint: &str, peer: &AttestedPeer) {
    let result = peer.appraisal.result();
    let claims = &result.claims;
    let tee = result.tee.map_or("?", |t| t.name());
    println!("Attested enclave at {endpoint}");
    if peer.tee().is_some_and(|t| t.is_insecure()) {
        println!(
            "  TEE          {tee}   INSECURE: simulated TEE, proves nothing about the platform"
        );
    } else {
        println!("  TEE          {tee}");
    }
    let measurement = claims
        .get("measurement")
        .or_else(|| claims.get("mrtd"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    println!("  measurement  {measurement}");
    if let Some(tcb) = claims.get("reported_tcb") {
        println!("  TCB          {tcb}");
    }
    if let Some(status) = &result.tcb_status {
        println!("  TCB status   {status}");
    }
    println!(
        "  TLS key      sha256:{}",
        hex::encode(Sha256::digest(&peer.spki))
    );
    let bundle = &peer.bindings.policy_digest;
    println!(
        "  policy       {}",
        if bundle.is_empty() {
            "none committed".to_owned()
        } else {
            format!("bundle {} (committed in the evidence)", hex::encode(bundle))
        }
    );
    let audit_key = &peer.bindings.audit_key;
    if !audit_key.is_empty() {
        println!(
            "  audit key    {} (committed in the evidence; it signs the audit log)",
            hex::encode(audit_key)
        );
    }
    println!("  freshness    fresh evidence bound to our nonce and this TLS key: verified");
}

/// The guideline passages the answer was given, and which it cites.
pub(crate) fn print_citations(citations: Option<&Value>) {
    let Some(list) = citations
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return;
    };
    println!("Sources retrieved for this answer:");
    for c in list {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let cited = if c.get("cited").and_then(Value::as_bool) == Some(true) {
            "cited"
        } else {
            "not cited"
        };
        println!(
            "  [{}] {} — {} (doi:{}, similarity {:.2}, {cited})",
            s("id"),
            s("title"),
            s("section"),
            s("doi"),
            c.get("score").and_then(Value::as_f64).unwrap_or(0.0)
        );
    }
}
