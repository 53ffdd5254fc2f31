//! One entry point for evidence of any supported kind: detect, verify,
//! appraise, and express the outcome as a serialisable attestation result.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::policy::{AppraisalPolicy, Violation};
use crate::sim::{SimEvidence, VerifiedSimEvidence};
use crate::snp::{SnpEndorsements, SnpReport, TcbVersion, VerifiedSnpReport};
use crate::tdx::{TdxCollateral, TdxQuote, VerifiedTdxQuote};
use crate::types::{Measurement, ReportData};

/// Largest evidence file accepted (a DCAP quote is ~5 KiB, hex doubles it).
pub const MAX_EVIDENCE_LEN: usize = 1024 * 1024;

/// The kind of TEE that produced evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
    /// The simulated TEE. INSECURE: proves nothing; for development and CI.
    Sim,
}

impl Tee {
    /// Lowercase name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Snp => "snp",
            Self::Tdx => "tdx",
            Self::Sim => "sim",
        }
    }

    /// Whether evidence from this TEE is backed by hardware at all.
    pub fn is_insecure(self) -> bool {
        matches!(self, Self::Sim)
    }
}

/// Parsed, unverified evidence of a detected kind.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// An SEV-SNP attestation report (boxed, like the quote: both are large).
    Snp(Box<SnpReport>),
    /// A TDX DCAP quote.
    Tdx(Box<TdxQuote>),
    /// Simulated evidence. INSECURE.
    Sim(Box<SimEvidence>),
}

/// The endorsements that may accompany evidence, as raw file contents.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndorsementInputs<'a> {
    /// SNP: VCEK or VLEK certificate, DER or PEM.
    pub vek: Option<&'a [u8]>,
    /// SNP: ASK (or ASVK) then ARK, PEM. Default: AMD's published intermediates.
    pub cert_chain: Option<&'a [u8]>,
    /// SNP: AMD's CRL for the product, DER or PEM.
    pub amd_crl: Option<&'a [u8]>,
    /// TDX: collateral JSON.
    pub collateral: Option<&'a [u8]>,
}

impl Evidence {
    /// Detects the kind from the content and parses it. Accepts raw bytes or
    /// their hex encoding (whitespace ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let raw = decode(bytes)?;
        match detect(&raw) {
            Some(Tee::Tdx) => TdxQuote::parse(&raw).map(|q| Self::Tdx(Box::new(q))),
            Some(Tee::Snp) => SnpReport::parse(&raw).map(|r| Self::Snp(Box::new(r))),
            Some(Tee::Sim) => SimEvidence::parse(&raw).map(|e| Self::Sim(Box::new(e))),
            None => Err(Error::UnknownEvidenceFormat {
                detail: format!(
                    "{} bytes starting {} are neither an SNP report, a DCAP quote nor simulated evidence",
                    raw.len(),
                    hex::encode(raw.get(..8).unwrap_or(&raw))
                ),
            }),
        }
    }

    /// Which TEE the content looks like it came from, without parsing it:
    /// lets a failure to parse still say what kind of evidence failed.
    pub fn detect(bytes: &[u8]) -> Option<Tee> {
        decode(bytes).ok().and_then(|raw| detect(&raw))
    }

    /// Which TEE produced it.
    pub fn tee(&self) -> Tee {
        match self {
            Self::Snp(_) => Tee::Snp,
            Self::Tdx(_) => Tee::Tdx,
            Self::Sim(_) => Tee::Sim,
        }
    }

    /// The 64 bytes the evidence binds, before any verification: lets a
    /// caller reject evidence bound to something else without paying for
    /// signature checks. Only trust it after [`Evidence::verify`].
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Snp(r) => &r.report_data,
            Self::Tdx(q) => &q.td_report.report_data,
            Self::Sim(e) => &e.report_data,
        }
    }

    /// The launch measurement as claimed (SNP MEASUREMENT, TDX MRTD, sim
    /// digest), before verification: for display by parties that do not
    /// rely on it, like the host daemon.
    pub fn claimed_measurement(&self) -> &Measurement {
        match self {
            Self::Snp(r) => &r.measurement,
            Self::Tdx(q) => &q.td_report.mr_td,
            Self::Sim(e) => &e.measurement,
        }
    }

    /// Verifies signatures, chains, bindings and validity at `now`.
    pub fn verify(
        self,
        inputs: &EndorsementInputs<'_>,
        now: OffsetDateTime,
    ) -> Result<VerifiedEvidence> {
        match self {
            Self::Snp(report) => {
                let vek = inputs.vek.ok_or(Error::MissingEndorsement {
                    tee: "SNP",
                    what: "the VCEK or VLEK certificate",
                })?;
                let chain =
                    SnpEndorsements::new(vek, inputs.cert_chain, inputs.amd_crl)?.verify(now)?;
                report
                    .verify(&chain, now)
                    .map(|v| VerifiedEvidence::Snp(Box::new(v)))
            }
            Self::Tdx(quote) => {
                let collateral = inputs
                    .collateral
                    .map(|json| TdxCollateral::from_json(json)?.verify(now))
                    .transpose()?;
                quote
                    .verify(collateral.as_ref(), now)
                    .map(|v| VerifiedEvidence::Tdx(Box::new(v)))
            }
            Self::Sim(evidence) => evidence
                .verify()
                .map(|v| VerifiedEvidence::Sim(Box::new(v))),
        }
    }
}

/// Caps the size and undoes a hex encoding.
fn decode(bytes: &[u8]) -> Result<Cow<'_, [u8]>> {
    if bytes.len() > MAX_EVIDENCE_LEN {
        return Err(Error::UnknownEvidenceFormat {
            detail: format!(
                "{} bytes exceeds the {MAX_EVIDENCE_LEN}-byte limit",
                bytes.len()
            ),
        });
    }
    if !looks_like_hex(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(text)
        .map(Cow::Owned)
        .map_err(|e| Error::UnknownEvidenceFormat {
            detail: format!("hex text that does not decode: {e}"),
        })
}

fn looks_like_hex(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
        && bytes.iter().any(u8::is_ascii_hexdigit)
}

/// SNP reports start with a little-endian u32 version; DCAP quotes with a u16
/// version, the u16 attestation key type 2 and the u32 TEE type 0x81.
fn detect(raw: &[u8]) -> Option<Tee> {
    if SimEvidence::looks_like(raw) {
        return Some(Tee::Sim);
    }
    let u16_at = |i: usize| {
        raw.get(i..i + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    if matches!(u16_at(0), Some(4 | 5)) && u16_at(2) == Some(2) {
        return Some(Tee::Tdx);
    }
    let version = raw
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    matches!(version, Some(1..=5)).then_some(Tee::Snp)
}

/// Evidence whose signatures, chains and bindings verified.
#[derive(Debug, Clone)]
pub enum VerifiedEvidence {
    /// A verified SNP report (boxed, like the quote: both are large).
    Snp(Box<VerifiedSnpReport>),
    /// A verified TDX quote.
    Tdx(Box<VerifiedTdxQuote>),
    /// Simulated evidence whose signature verified. INSECURE.
    Sim(Box<VerifiedSimEvidence>),
}

impl VerifiedEvidence {
    /// Which TEE produced it.
    pub fn tee(&self) -> Tee {
        match self {
            Self::Snp(_) => Tee::Snp,
            Self::Tdx(_) => Tee::Tdx,
            Self::Sim(_) => Tee::Sim,
        }
    }

    /// The 64 bytes the evidence binds (verified).
    pub fn report_data(&self) -> &ReportData {
        match self {
            Self::Snp(v) => &v.report().report_data,
            Self::Tdx(v) => &v.quote().td_report.report_data,
            Self::Sim(v) => &v.evidence().report_data,
        }
    }

    /// The launch measurement: SNP MEASUREMENT, TDX MRTD, or the sim digest.
    pub fn measurement(&self) -> &Measurement {
        match self {
            Self::Snp(v) => &v.report().measurement,
            Self::Tdx(v) => &v.quote().td_report.mr_td,
            Self::Sim(v) => &v.evidence().measurement,
        }
    }

    /// Every way this evidence falls short of `policy`.
    pub fn violations(&self, policy: &AppraisalPolicy, now: OffsetDateTime) -> Vec<Violation> {
        match self {
            Self::Snp(v) => policy.check_snp(v),
            Self::Tdx(v) => policy.check_tdx(v, now),
            Self::Sim(v) => policy.check_sim(v),
        }
    }

    /// Appraises against `policy`: the [`Appraisal`] is the proof of
    /// acceptance that key release and channel setup take.
    pub fn appraise(&self, policy: &AppraisalPolicy, now: OffsetDateTime) -> Result<Appraisal> {
        let violations = self.violations(policy, now);
        if violations.is_empty() {
            Ok(Appraisal {
                result: self.result(Vec::new()),
            })
        } else {
            Err(Error::PolicyRejected(violations))
        }
    }

    fn result(&self, violations: Vec<Violation>) -> AttestationResult {
        let verdict = if violations.is_empty() {
            Verdict::Accept
        } else {
            Verdict::Reject
        };
        AttestationResult {
            tee: Some(self.tee()),
            verified: true,
            verdict,
            tcb_status: match self {
                Self::Snp(_) | Self::Sim(_) => None,
                Self::Tdx(v) => v.tcb().map(|t| t.status.to_string()),
            },
            reasons: violations.iter().map(ToString::to_string).collect(),
            claims: self.claims(),
        }
    }

    /// The claims of the verified evidence, as JSON.
    pub fn claims(&self) -> Value {
        match self {
            Self::Snp(v) => snp_claims(v),
            Self::Tdx(v) => tdx_claims(v),
            Self::Sim(v) => sim_claims(v),
        }
    }
}

/// Proof that evidence verified *and* satisfied a policy. Only
/// [`VerifiedEvidence::appraise`] makes one.
#[derive(Debug, Clone)]
pub struct Appraisal {
    result: AttestationResult,
}

impl Appraisal {
    /// The accepted result, for display or logging.
    pub fn result(&self) -> &AttestationResult {
        &self.result
    }
}

/// The verdict on evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Verified and within policy (EAR "affirming").
    Accept,
    /// Not verified, or outside policy (EAR "contraindicated").
    Reject,
}

/// The outcome of verifying and appraising one piece of evidence, in the
/// spirit of an IETF RATS Entity Attestation Result: a verdict, why, and the
/// claims it was based on. This is the `cloister verify --json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttestationResult {
    /// The TEE, or null when the evidence could not be parsed.
    pub tee: Option<Tee>,
    /// Signatures, chains, bindings and validity at `now` all held.
    pub verified: bool,
    /// `verified` and the policy accepted it.
    pub verdict: Verdict,
    /// Intel TCB status (TDX with collateral); null otherwise.
    pub tcb_status: Option<String>,
    /// Why it was rejected: the verification error, or every policy violation.
    pub reasons: Vec<String>,
    /// What the verified evidence says. Empty unless `verified`: claims from
    /// evidence that did not verify are not claims.
    pub claims: Value,
}

/// Parses, verifies and appraises `evidence` in one step. Never fails: a
/// failure is a rejecting result whose `reasons` say why.
pub fn attest(
    evidence: &[u8],
    inputs: &EndorsementInputs<'_>,
    policy: &AppraisalPolicy,
    now: OffsetDateTime,
) -> AttestationResult {
    let parsed = match Evidence::parse(evidence) {
        Ok(parsed) => parsed,
        Err(e) => return rejected(Evidence::detect(evidence), &e),
    };
    let tee = parsed.tee();
    match parsed.verify(inputs, now) {
        Ok(verified) => {
            let violations = verified.violations(policy, now);
            verified.result(violations)
        }
        Err(e) => rejected(Some(tee), &e),
    }
}

fn rejected(tee: Option<Tee>, error: &Error) -> AttestationResult {
    AttestationResult {
        tee,
        verified: false,
        verdict: Verdict::Reject,
        tcb_status: None,
        reasons: vec![error.to_string()],
        claims: json!({}),
    }
}

fn tcb_json(t: &TcbVersion) -> Value {
    let mut v = json!({
        "bootloader": t.bootloader,
        "tee": t.tee,
        "snp": t.snp,
        "microcode": t.microcode,
        "raw": format!("{:016x}", t.raw),
    });
    if let (Some(fmc), Some(map)) = (t.fmc, v.as_object_mut()) {
        map.insert("fmc".into(), json!(fmc));
    }
    v
}

fn snp_claims(v: &VerifiedSnpReport) -> Value {
    let r = v.report();
    json!({
        "evidence_sha256": hex::encode(Sha256::digest(r.as_bytes())),
        "product": v.product(),
        "vek": v.kind(),
        "vek_product_name": v.product_name(),
        "report_version": r.version,
        "cpuid": r.cpuid.map(|(family, model, stepping)| json!({
            "family": family, "model": model, "stepping": stepping
        })),
        "guest_svn": r.guest_svn,
        "policy": {
            "raw": format!("{:#x}", r.policy.0),
            "abi_major": r.policy.abi_major(),
            "abi_minor": r.policy.abi_minor(),
            "smt": r.policy.smt_allowed(),
            "migration_agent": r.policy.migration_agent_allowed(),
            "debug": r.policy.debug_allowed(),
            "single_socket": r.policy.single_socket_required(),
        },
        "debug": r.policy.debug_allowed(),
        "vmpl": r.vmpl,
        "measurement": r.measurement,
        "host_data": r.host_data,
        "report_data": r.report_data,
        "id_key_digest": r.id_key_digest,
        "author_key_digest": r.author_key_digest,
        "author_key_enabled": r.author_key_enabled,
        "family_id": hex::encode(r.family_id),
        "image_id": hex::encode(r.image_id),
        "report_id": hex::encode(r.report_id),
        "chip_id": r.chip_id,
        "chip_id_masked": r.chip_id_masked,
        "reported_tcb": tcb_json(&r.reported_tcb),
        "current_tcb": tcb_json(&r.current_tcb),
        "committed_tcb": tcb_json(&r.committed_tcb),
        "launch_tcb": tcb_json(&r.launch_tcb),
        "platform_info": {
            "raw": format!("{:#x}", r.platform_info.0),
            "smt_enabled": r.platform_info.smt_enabled(),
            "tsme_enabled": r.platform_info.tsme_enabled(),
        },
        "firmware": r.current_version,
        "committed_firmware": r.committed_version,
    })
}

fn tdx_claims(v: &VerifiedTdxQuote) -> Value {
    let q = v.quote();
    let td = &q.td_report;
    json!({
        "evidence_sha256": hex::encode(Sha256::digest(q.as_bytes())),
        "quote_version": q.version,
        "debug": td.debug(),
        "tee_tcb_svn": hex::encode(td.tee_tcb_svn),
        "mr_seam": td.mr_seam,
        "mr_signer_seam": td.mr_signer_seam,
        "seam_attributes": hex::encode(td.seam_attributes),
        "td_attributes": hex::encode(td.td_attributes),
        "xfam": hex::encode(td.xfam),
        "mrtd": td.mr_td,
        "mr_config_id": td.mr_config_id,
        "mr_owner": td.mr_owner,
        "mr_owner_config": td.mr_owner_config,
        "rtmr0": td.rtmr[0],
        "rtmr1": td.rtmr[1],
        "rtmr2": td.rtmr[2],
        "rtmr3": td.rtmr[3],
        "report_data": td.report_data,
        "tee_tcb_svn2": td.tee_tcb_svn2.map(hex::encode),
        "mr_service_td": td.mr_service_td,
        "fmspc": v.fmspc(),
        "pce_id": hex::encode(v.pce_id()),
        "qe_svn": q.qe_report.isv_svn,
        "tcb": v.tcb(),
        "advisory_ids": v.tcb().map(|t| t.advisory_ids.clone()).unwrap_or_default(),
        "collateral_issued": v.collateral_issued().and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
    })
}

fn sim_claims(v: &VerifiedSimEvidence) -> Value {
    let e = v.evidence();
    json!({
        "INSECURE": "simulated TEE: this evidence proves nothing about the platform",
        "evidence_sha256": hex::encode(Sha256::digest(e.as_bytes())),
        "sim_version": e.version,
        "debug": e.debug,
        "guest_svn": e.guest_svn,
        "measurement": e.measurement,
        "host_data": e.host_data,
        "report_data": e.report_data,
        "chip_id": e.chip_id,
    })
}
