//! `cloister verify`: one piece of evidence in, one verdict out. Other tools
//! script against its flags, its `--json` object and its exit codes, so they
//! change only compatibly.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use cloister_attestation::evidence::{
    attest, EndorsementInputs, Evidence, Tee, Verdict, MAX_EVIDENCE_LEN,
};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::AttestationResult;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Arguments of `cloister verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 accepted, 1 rejected (including malformed or truncated evidence), \
2 usage error or unreadable file.

Without --policy, the default policy forbids debug and reports everything else.")]
pub(crate) struct VerifyArgs {
    /// Evidence: a raw SEV-SNP report (binary or hex) or a TDX DCAP quote;
    /// the kind is detected from the content.
    #[arg(long, value_name = "FILE")]
    evidence: PathBuf,
    /// SNP: the VCEK or VLEK certificate, DER or PEM.
    #[arg(long, value_name = "FILE")]
    vek: Option<PathBuf>,
    /// SNP: ASK (or ASVK) then ARK, PEM, as AMD's key server serves
    /// cert_chain. The ARK must be a pinned AMD root. Default: AMD's
    /// published intermediates, built in.
    #[arg(long, value_name = "FILE")]
    cert_chain: Option<PathBuf>,
    /// SNP: AMD's CRL for the product (DER or PEM); revoked ASKs/ASVKs are rejected.
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// TDX: collateral JSON (TCB info, QE identity, CRLs, signing chains).
    /// Without it, signatures and the PCK chain are verified and the TCB
    /// status is unknown.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,
    /// Appraisal policy (TOML).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Accept evidence from a TEE in debug mode, whose memory the host can read.
    #[arg(long)]
    allow_debug: bool,
    /// Verification time (RFC 3339). Default: now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    now: Option<OffsetDateTime>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// Evidence and endorsement files are small; refuse anything absurd before
/// reading it into memory.
fn read_bounded(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?
        .len();
    if len > MAX_EVIDENCE_LEN as u64 {
        bail!(
            "{what} {} is {len} bytes, more than the {MAX_EVIDENCE_LEN}-byte limit",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn read_optional(path: Option<&PathBuf>, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| read_bounded(p, what)).transpose()
}

/// Runs the command; `Err` means a usage error (exit 2).
pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let evidence = read_bounded(&args.evidence, "evidence")?;
    let vek = read_optional(args.vek.as_ref(), "VEK certificate")?;
    let cert_chain = read_optional(args.cert_chain.as_ref(), "certificate chain")?;
    let crl = read_optional(args.crl.as_ref(), "CRL")?;
    let collateral = read_optional(args.collateral.as_ref(), "collateral")?;
    let mut policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read policy {}", path.display()))?;
            AppraisalPolicy::from_toml(&text)
                .with_context(|| format!("policy {}", path.display()))?
        }
        None => AppraisalPolicy::report_only(),
    };
    if args.allow_debug {
        policy.allow_debug = true;
    }
    if policy.policy_digests.is_some() {
        // The same appraisal policy serves `cloister query`, which checks
        // it; raw evidence holds only a hash of the commitments.
        eprintln!(
            "cloister verify: note: policy_digests is not checked here (raw evidence carries only a hash of the enclave's commitments); cloister query checks it on the RA-TLS connection"
        );
    }
    // Endorsements for the other TEE would be silently unused: say so instead.
    match Evidence::detect(&evidence) {
        Some(Tee::Snp) => {
            if args.collateral.is_some() {
                bail!("--collateral is for TDX quotes; the evidence is an SEV-SNP report");
            }
            if vek.is_none() && Evidence::parse(&evidence).is_ok() {
                bail!(
                    "the evidence is an SEV-SNP report: --vek FILE (its VCEK or VLEK) is required"
                );
            }
        }
        Some(Tee::Tdx) if args.vek.is_some() || args.cert_chain.is_some() || args.crl.is_some() => {
            bail!("--vek, --cert-chain and --crl are for SEV-SNP reports; the evidence is a TDX quote");
        }
        Some(Tee::Sim)
            if args.vek.is_some()
                || args.cert_chain.is_some()
                || args.crl.is_some()
                || args.collateral.is_some() =>
        {
            bail!("the evidence is from the INSECURE simulated TEE, which has no endorsements");
        }
        Some(Tee::Tdx | Tee::Sim) | None => {}
    }
    let now = args.now.unwrap_or_else(OffsetDateTime::now_utc);
    tracing::debug!(evidence = %args.evidence.display(), %now, "verifying");

    let inputs = EndorsementInputs {
        vek: vek.as_deref(),
        cert_chain: cert_chain.as_deref(),
        amd_crl: crl.as_deref(),
        collateral: collateral.as_deref(),
    };
    let result = attest(&evidence, &inputs, &policy, now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", summary(&result));
    }
    Ok(match result.verdict {
        Verdict::Accept => ExitCode::SUCCESS,
        Verdict::Reject => ExitCode::from(1),
    })
}

/// A readable summary that names the failing check first.
fn summary(result: &AttestationResult) -> String {
    let mut out = String::new();
    let verdict = match result.verdict {
        Verdict::Accept => "ACCEPT",
        Verdict::Reject => "REJECT",
    };
    let tee = match result.tee {
        Some(tee) if tee.is_insecure() => {
            format!(
                "{} (INSECURE: simulated TEE, proves nothing)",
                tee.name().to_uppercase()
            )
        }
        Some(tee) => tee.name().to_uppercase(),
        None => "unrecognised evidence".into(),
    };
    let _ = writeln!(out, "{verdict}: {tee}");
    for reason in &result.reasons {
        let _ = writeln!(out, "  reason: {reason}");
    }
    let _ = writeln!(
        out,
        "  verified: {}",
        if result.verified {
            "yes (signatures, certificate chain, bindings, validity)"
        } else {
            "no"
        }
    );
    if let Some(status) = &result.tcb_status {
        let _ = writeln!(out, "  TCB status: {status}");
    }
    let c = &result.claims;
    let field = |key: &str| c.get(key).filter(|v| !v.is_null());
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (label, key) in [
        ("product", "product"),
        ("signed by", "vek"),
        ("measurement", "measurement"),
        ("MRTD", "mrtd"),
        ("RTMR0", "rtmr0"),
        ("RTMR1", "rtmr1"),
        ("RTMR2", "rtmr2"),
        ("RTMR3", "rtmr3"),
        ("report_data", "report_data"),
        ("chip_id", "chip_id"),
        ("FMSPC", "fmspc"),
        ("debug", "debug"),
    ] {
        if let Some(v) = field(key) {
            let _ = writeln!(out, "  {label}: {}", show(v));
        }
    }
    if let Some(tcb) = field("reported_tcb") {
        let _ = writeln!(out, "  reported TCB: {tcb}");
    }
    if let Some(Value::Array(ids)) = field("advisory_ids") {
        if !ids.is_empty() {
            let ids: Vec<String> = ids.iter().map(show).collect();
            let _ = writeln!(out, "  advisories: {}", ids.join(", "));
        }
    }
    out
}
