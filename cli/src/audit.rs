//! `cloister audit`: the compliance team's tools for the enclave's audit
//! log: make the auditor key, verify the log, read and search it with the
//! key, export it as FHIR AuditEvents, and prove a record to a third party.
//!
//! Exit codes: 0 valid (or done), 1 invalid (the log, a proof, or a sealed
//! field failed its check), 2 usage error or unreadable input.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_audit::record::{Event, Record};
use cloister_audit::verify::{verify, VerifyOptions};
use cloister_audit::view::{
    check_consistency, check_proof, prove, prove_consistency, select, Filter, LogView, Proof,
    RecordView,
};
use cloister_audit::{AuditError, AuditorKey};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Exit status when the log, a proof or a sealed field fails its check.
const EXIT_INVALID: u8 = 1;

/// Arguments of `cloister audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// Record filters shared by `search` and `export`.
#[derive(Debug, Args, Default)]
struct FilterArgs {
    /// Only this record type (query, start, stop, policy_load, key_release, stream_end, truncation).
    #[arg(long)]
    kind: Option<String>,
    /// Only queries by this principal (token subject).
    #[arg(long)]
    principal: Option<String>,
    /// Only queries by this role.
    #[arg(long)]
    role: Option<String>,
    /// Only queries about this patient reference (needs --key).
    #[arg(long)]
    patient: Option<String>,
    /// Only queries with this outcome (answered, denied, unauthenticated, rejected, failed, streaming).
    #[arg(long)]
    outcome: Option<String>,
    /// Only queries this module decided on, as NAME or NAME:EFFECT (access:deny).
    #[arg(long)]
    module: Option<String>,
    /// Only queries with this reason code (a module's, or the error's).
    #[arg(long)]
    reason: Option<String>,
    /// Not before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Not after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            kind: self.kind.clone(),
            principal: self.principal.clone(),
            role: self.role.clone(),
            patient: self.patient.clone(),
            outcome: self.outcome.clone(),
            module: self.module.clone(),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
            from: None,
            to: None,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// A FHIR R4 Bundle of AuditEvent resources (IHE BALP style).
    Fhir,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Make the auditor's key pair; the public half goes in enclave.toml's [audit] auditor_key.
    Keygen {
        /// Where to write the private key file (created with mode 0600; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Verify a log: chain, Merkle tree, checkpoint signatures and consistency, evidence.
    Verify {
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        log: PathBuf,
        /// A checkpoint kept elsewhere (a witness's), repeatable.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Appraise every start record's evidence against this appraisal policy.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show records (all, a range, or one in full).
    Show {
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        log: PathBuf,
        /// The auditor key file, to read sealed fields.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Only this record, in full.
        #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"])]
        record: Option<u64>,
        /// From this record.
        #[arg(long, value_name = "N")]
        from: Option<u64>,
        /// To this record (inclusive).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// JSON on stdout (one array).
        #[arg(long)]
        json: bool,
    },
    /// Search records by principal, role, patient, time, outcome or module decision.
    Search {
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        log: PathBuf,
        /// The auditor key file, to read sealed fields and search by patient.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        filters: FilterArgs,
        /// JSON on stdout (one array).
        #[arg(long)]
        json: bool,
    },
    /// Export records for an audit repository.
    Export {
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        log: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value = "fhir")]
        format: ExportFormat,
        /// The auditor key file (required by --include-phi).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Put patient references, break-glass reasons and kept text in clear.
        #[arg(long, requires = "key")]
        include_phi: bool,
        #[command(flatten)]
        filters: FilterArgs,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a proof against the log's last checkpoint: that a record is in
    /// the log, or that the log a witness saw is a prefix of it.
    Prove {
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        log: PathBuf,
        /// Prove this record (its sequence number) is in the log.
        #[arg(
            long,
            value_name = "N",
            required_unless_present = "since",
            conflicts_with = "since"
        )]
        record: Option<u64>,
        /// Prove the log at this older checkpoint (a witness's file) is a prefix of the log now.
        #[arg(long, value_name = "FILE")]
        since: Option<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an inclusion or consistency proof (what a third party runs).
    CheckProof {
        /// The proof `cloister audit prove` wrote.
        proof: PathBuf,
        /// An audit key you trust (hex; repeatable), instead of the ones the proof names.
        #[arg(long, value_name = "HEX")]
        audit_key: Vec<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AuditCommand::Keygen { out, json } => keygen(out, *json),
        AuditCommand::Verify {
            log,
            checkpoint,
            policy,
            json,
        } => run_verify(log, checkpoint, policy.as_deref(), *json),
        AuditCommand::Show {
            log,
            key,
            record,
            from,
            to,
            json,
        } => {
            let filter = Filter {
                from: record.or(*from),
                to: record.or(*to),
                ..Filter::default()
            };
            list(log, key.as_deref(), &filter, *json, record.is_some())
        }
        AuditCommand::Search {
            log,
            key,
            filters,
            json,
        } => list(log, key.as_deref(), &filters.filter(), *json, false),
        AuditCommand::Export {
            log,
            format: ExportFormat::Fhir,
            key,
            include_phi,
            filters,
            out,
        } => export(
            log,
            key.as_deref(),
            *include_phi,
            &filters.filter(),
            out.as_deref(),
        ),
        AuditCommand::Prove {
            log,
            record,
            since,
            out,
        } => run_prove(log, *record, since.as_deref(), out.as_deref()),
        AuditCommand::CheckProof {
            proof,
            audit_key,
            json,
        } => run_check_proof(proof, audit_key, *json),
    }
}

fn keygen(out: &Path, json: bool) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = AuditorKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let public = key.public().to_hex();
    if json {
        println!(
            "{}",
            json!({ "key_file": out.display().to_string(), "auditor_key": public })
        );
    } else {
        println!("auditor key written to {} (keep it secret and backed up: without it the sealed fields cannot be read)", out.display());
        println!("put this in enclave.toml:\n\n[audit]\nauditor_key = \"{public}\"");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_key(path: Option<&Path>) -> anyhow::Result<Option<AuditorKey>> {
    path.map(|p| {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        AuditorKey::from_file_text(&text)
            .with_context(|| format!("{} is not an auditor key file", p.display()))
    })
    .transpose()
}

fn run_verify(
    log: &Path,
    checkpoints: &[PathBuf],
    policy: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !log.join(cloister_audit::segment::SEGMENTS).is_dir() {
        bail!(
            "{} is not an audit log directory (it has no segments/)",
            log.display()
        );
    }
    let policy = policy
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            AppraisalPolicy::from_toml(&text)
                .with_context(|| format!("{} is not an appraisal policy", p.display()))
        })
        .transpose()?;
    let checkpoints = checkpoints
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| (p.display().to_string(), t))
                .with_context(|| format!("cannot read {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = verify(
        log,
        &VerifyOptions {
            checkpoints,
            policy,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let origin = report.origin.as_deref().unwrap_or(if report.records == 0 {
            "(empty log)"
        } else {
            "(origin unknown)"
        });
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        match &report.finding {
            None => {
                println!(
                    "VALID  {origin}: {} records, root {}",
                    report.records, report.root
                );
                for e in &report.epochs {
                    println!(
                        "  enclave {}… ({}{}) from record {}: {} records, audit key {}…{}",
                        e.enclave.get(..16).unwrap_or_default(),
                        e.tee,
                        if e.tee == "sim" {
                            ", INSECURE simulated TEE"
                        } else {
                            ""
                        },
                        e.seq,
                        e.records,
                        e.audit_key.get(..16).unwrap_or_default(),
                        if report.evidence_appraised {
                            ", evidence appraised"
                        } else {
                            ""
                        },
                    );
                }
                for c in &report.checkpoints {
                    println!(
                        "  checkpoint {} (size {}) signed by the enclave of record {}",
                        c.checkpoint, c.size, c.signed_by_epoch
                    );
                }
            }
            Some(finding) => {
                println!("INVALID  {origin}: {finding}");
                if let Some(seq) = finding.seq() {
                    println!("  first bad record: {seq}");
                }
            }
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}

/// Failures that mean the log or a record failed a check (exit 1), not a
/// usage error.
fn invalid(e: &AuditError) -> bool {
    matches!(
        e,
        AuditError::Damaged(_) | AuditError::SealedFieldsAltered { .. }
    )
}

fn list(
    log: &Path,
    key: Option<&Path>,
    filter: &Filter,
    json: bool,
    full: bool,
) -> anyhow::Result<ExitCode> {
    let key = read_key(key)?;
    let records = match LogView::open(log).and_then(|view| select(&view, key.as_ref(), filter)) {
        Ok(records) => records,
        Err(e) if invalid(&e) => {
            eprintln!("cloister audit: {e} (run `cloister audit verify`)");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    if json || full {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        eprintln!("no records match");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:<20}  {:<11}  {:<14}  {:<11}  {:<6}  {:<18}  {:<10}  {:<15}  DECISIONS",
        "SEQ", "TIME", "TYPE", "PRINCIPAL", "ROLE", "PURPOSE", "PATIENT", "TASK", "OUTCOME"
    );
    for r in &records {
        println!("{}", row(r));
    }
    Ok(ExitCode::SUCCESS)
}

fn row(view: &RecordView) -> String {
    let record: &Record = &view.record;
    let time = record
        .time
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let kind = record.event.kind();
    let (principal, role, purpose, patient, task, outcome, decisions) = match &record.event {
        Event::Query(q) => {
            let patient = view
                .unsealed
                .as_ref()
                .and_then(|s| s.patient.clone())
                .or_else(|| {
                    q.patient
                        .as_ref()
                        .map(|p| format!("~{}", p.get(..12).unwrap_or(p)))
                })
                .unwrap_or_default();
            let decision = |d: &cloister_audit::record::ModuleDecision| {
                if d.reasons.is_empty() {
                    format!("{}:{}", d.module, d.effect)
                } else {
                    format!("{}:{}({})", d.module, d.effect, d.reasons.join(","))
                }
            };
            let mut decisions: Vec<String> = Vec::new();
            if let Some(p) = &q.policy {
                decisions.extend(p.input.iter().map(decision));
                if let Some(output) = &p.output {
                    decisions.push("|".into());
                    decisions.extend(output.iter().map(decision));
                }
            }
            let outcome = match &q.reason {
                Some(reason) => format!("{} {reason}", q.outcome.as_str()),
                None => q.outcome.as_str().to_owned(),
            };
            (
                q.principal.clone().unwrap_or_default(),
                q.role.clone().unwrap_or_default(),
                q.purpose_of_use.clone().unwrap_or_default(),
                patient,
                q.task.clone().unwrap_or_default(),
                outcome,
                decisions.join(" "),
            )
        }
        other => {
            let (what, detail) = event_summary(other);
            let none = String::new;
            (none(), none(), none(), none(), none(), what, detail)
        }
    };
    format!(
        "{:>6}  {:<20}  {:<11}  {:<14}  {:<11}  {:<6}  {:<18}  {:<10}  {:<15}  {}",
        record.seq, time, kind, principal, role, purpose, patient, task, outcome, decisions
    )
}

/// What a table row says of a record that is not a query.
fn event_summary(event: &Event) -> (String, String) {
    match event {
        Event::Start(s) => (format!("{} evidence", s.evidence.tee), s.software.clone()),
        Event::StreamEnd(s) => (
            format!("ends {}", s.query),
            if s.completed {
                "completed"
            } else {
                "ended early"
            }
            .to_owned(),
        ),
        Event::Truncation(t) => (
            format!("cut {} records", t.dropped_records),
            format!("{} bytes from {}", t.dropped_bytes, t.segment),
        ),
        Event::KeyRelease(k) => (k.bundle.clone(), format!("key {} v{}", k.key_id, k.version)),
        Event::PolicyLoad(p) => (p.name.clone(), p.modules.join(",")),
        Event::Stop(s) => (s.reason.clone(), String::new()),
        Event::Checkpoint(c) => (
            c.note
                .lines()
                .nth(1)
                .map(|size| format!("size {size}"))
                .unwrap_or_default(),
            String::new(),
        ),
        Event::Query(_) => (String::new(), String::new()),
    }
}

fn export(
    log: &Path,
    key: Option<&Path>,
    include_phi: bool,
    filter: &Filter,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let key = read_key(key)?;
    let view = match LogView::open(log) {
        Ok(view) => view,
        Err(e) if invalid(&e) => {
            eprintln!("cloister audit: {e} (run `cloister audit verify`)");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    let records = match select(&view, key.as_ref(), filter) {
        Ok(records) => records,
        Err(e) if invalid(&e) => {
            eprintln!("cloister audit: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    let origin = view.summary.origin.clone().unwrap_or_default();
    let bundle = cloister_audit::fhir::bundle(&origin, &records, include_phi);
    write_out(out, &serde_json::to_string_pretty(&bundle)?)?;
    Ok(ExitCode::SUCCESS)
}

fn write_out(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn run_prove(
    log: &Path,
    record: Option<u64>,
    since: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let older = since
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let proof = LogView::open(log).and_then(|view| match (&older, record) {
        (Some(older), _) => prove_consistency(&view, older).map(Proof::Consistency),
        (None, Some(seq)) => prove(&view, seq).map(Proof::Inclusion),
        (None, None) => Err(AuditError::CannotProve(
            "--record or --since is required".into(),
        )),
    });
    let proof = match proof {
        Ok(proof) => proof,
        Err(e) if invalid(&e) => {
            eprintln!("cloister audit prove: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(e) => return Err(e.into()),
    };
    write_out(out, &serde_json::to_string_pretty(&proof)?)?;
    Ok(ExitCode::SUCCESS)
}

fn run_check_proof(path: &Path, audit_keys: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let proof: Proof = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a proof `cloister audit prove` wrote",
            path.display()
        )
    })?;
    let keys = audit_keys
        .iter()
        .map(|k| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(k.trim(), &mut key)
                .map(|()| key)
                .context("--audit-key must be 64 hex digits")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (outcome, summary) = match &proof {
        Proof::Inclusion(p) => (
            if keys.is_empty() {
                check_proof(p, None)
            } else {
                keys.iter()
                    .map(|k| check_proof(p, Some(k)))
                    .find(Result::is_ok)
                    .unwrap_or_else(|| check_proof(p, keys.first()))
            },
            json!({ "kind": "inclusion", "record": p.seq, "tree_size": p.tree_size, "origin": p.origin, "audit_key": p.audit_key }),
        ),
        Proof::Consistency(p) => (
            check_consistency(p, &keys),
            json!({ "kind": "consistency", "old_size": p.old_size, "new_size": p.new_size, "origin": p.origin, "audit_keys": [p.old_audit_key, p.new_audit_key] }),
        ),
    };
    if json {
        let mut out = summary;
        if let Some(o) = out.as_object_mut() {
            o.insert("valid".into(), json!(outcome.is_ok()));
            o.insert(
                "error".into(),
                json!(outcome.as_ref().err().map(ToString::to_string)),
            );
        }
        println!("{out}");
    } else {
        match (&outcome, &proof) {
            (Ok(()), Proof::Inclusion(p)) => println!(
                "VALID  record {} is in {} at tree size {} (checkpoint signed by audit key {}; check that key against the evidence with `cloister audit verify --policy`)",
                p.seq, p.origin, p.tree_size, p.audit_key
            ),
            (Ok(()), Proof::Consistency(p)) => println!(
                "VALID  {} at size {} is a prefix of the log at size {}: nothing before record {} was changed or removed",
                p.origin, p.old_size, p.new_size, p.old_size
            ),
            (Err(e), _) => println!("INVALID  {e}"),
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID)
    })
}
