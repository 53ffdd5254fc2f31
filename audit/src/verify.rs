//! The auditor's side: is this log complete, unaltered, and written by
//! attested enclaves?
//!
//! [`verify`] checks, in order, and names the first record or checkpoint
//! that fails:
//! 1. the segments: contiguous, each named for its first record;
//! 2. every record: parses, sits at its own position, names its
//!    predecessor's leaf hash (the chain), and was written by the enclave
//!    whose start record last took over the log;
//! 3. every start record: its evidence answers the nonce of its own place in
//!    this log, binds the audit key it announces, and — with an appraisal
//!    policy — satisfies that policy;
//! 4. every checkpoint record: signed by the key of the enclave holding the
//!    log, over exactly the records before it;
//! 5. the last checkpoint record and every checkpoint a witness kept: well
//!    formed, signed by an audit key some start record's evidence binds,
//!    covering that start record, no larger than the log, with the root the
//!    log's first `size` records give; and each consistent with the next;
//! 6. that the log ends with a checkpoint record: nothing after the last
//!    one was acknowledged.
//!
//! The writer runs steps 1–4 ([`check_chain`]) before it appends anything.

use std::collections::BTreeMap;
use std::path::Path;

use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::freshness_binding;
use serde::Serialize;

use crate::checkpoint::SignedCheckpoint;
use crate::error::AuditError;
use crate::merkle::{self, Hash};
use crate::record::{enclave_id, start_nonce, Event, Hex32, Record, Start};
use crate::segment::{read_dir, LogContents};

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A file in the segments folder that is not a segment.
    #[error("segments/{name} is not a segment file")]
    StrayFile {
        /// Its name.
        name: String,
    },
    /// A segment whose name does not match its place.
    #[error("segment {segment} should start at record {expected}: records before it are missing, or it was renamed")]
    SegmentMisplaced {
        /// Its name.
        segment: String,
        /// The record it should start with.
        expected: u64,
    },
    /// A line that is not a record.
    #[error("record {seq} (in {segment}) is not a valid record: {what}")]
    Unreadable {
        /// Its position.
        seq: u64,
        /// Its segment.
        segment: String,
        /// The parser's complaint.
        what: String,
    },
    /// A record deleted: the next one sits in its place.
    #[error("record {seq} is missing: record {found} sits in its place (deleted)")]
    Deleted {
        /// The missing record.
        seq: u64,
        /// The record found there.
        found: u64,
    },
    /// Records out of order.
    #[error(
        "record {seq} is out of place: position {seq} holds record {found} (records reordered)"
    )]
    Reordered {
        /// The position.
        seq: u64,
        /// The record found there.
        found: u64,
    },
    /// A record's content no longer hashes to what its successor names.
    #[error("record {seq} was altered: its hash is not the one record {} names as its predecessor", seq + 1)]
    Altered {
        /// The altered record.
        seq: u64,
    },
    /// A record that does not name the record before it.
    #[error("record {seq} does not follow record {}: its prev hash names another record (inserted or copied from another log)", seq.saturating_sub(1))]
    ChainBroken {
        /// The record.
        seq: u64,
    },
    /// The log does not begin with a start record.
    #[error("record 0 is a {found} record: a log begins with a start record")]
    NoStart {
        /// What it is.
        found: String,
    },
    /// A record from an enclave that does not hold the log.
    #[error("record {seq} names enclave {enclave}, which does not hold the log at that point (spliced from another enclave's log?)")]
    ForeignEnclave {
        /// The record.
        seq: u64,
        /// The enclave it names.
        enclave: String,
    },
    /// A start record whose evidence does not fit it.
    #[error("start record {seq}: {what}")]
    BadStart {
        /// The record.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// Evidence that fails the appraisal policy.
    #[error("start record {seq}: its evidence fails the appraisal policy: {why}")]
    EvidenceRejected {
        /// The record.
        seq: u64,
        /// Why.
        why: String,
    },
    /// A checkpoint record that does not verify.
    #[error("record {seq} is a checkpoint that does not verify: {what}")]
    BadCheckpointRecord {
        /// The record.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint that cannot be used.
    #[error("checkpoint {checkpoint}: {what}")]
    BadCheckpoint {
        /// Where it came from.
        checkpoint: String,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint not signed by any attested audit key of this log.
    #[error("checkpoint {checkpoint} is not signed by any audit key bound into this log's evidence (it is signed by key IDs {key_ids:?})")]
    UnknownSigner {
        /// Where it came from.
        checkpoint: String,
        /// The key IDs it is signed by, hex.
        key_ids: Vec<String>,
    },
    /// The log holds fewer records than a signed checkpoint commits to.
    #[error("checkpoint {checkpoint} commits to {size} records but the log holds {records}: records {records}..{size} were deleted")]
    Truncated {
        /// Where it came from.
        checkpoint: String,
        /// Its size.
        size: u64,
        /// Records in the log.
        records: u64,
    },
    /// The log's first records differ from what a checkpoint signed.
    #[error("checkpoint {checkpoint} signed a different history: the log's first {size} records do not hash to its root (first record that can differ: {first_suspect})")]
    Diverged {
        /// Where it came from.
        checkpoint: String,
        /// Its size.
        size: u64,
        /// The lowest record not covered by an agreeing checkpoint.
        first_suspect: u64,
    },
    /// Two checkpoints whose consistency proof fails.
    #[error("checkpoints of sizes {old} and {new} are not consistent: {why}")]
    Inconsistent {
        /// Smaller size.
        old: u64,
        /// Larger size.
        new: u64,
        /// Why.
        why: String,
    },
    /// Records after the last checkpoint record.
    #[error("records {from}..{to} follow the last checkpoint: never acknowledged (a crash interrupted their commit) or not written by an enclave; the enclave cuts them off, and records that, when it restarts")]
    UnsignedTail {
        /// First unsigned record.
        from: u64,
        /// One past the last.
        to: u64,
    },
}

impl Finding {
    /// The first bad record, where the finding names one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Unreadable { seq, .. }
            | Self::Deleted { seq, .. }
            | Self::Reordered { seq, .. }
            | Self::Altered { seq }
            | Self::ChainBroken { seq }
            | Self::ForeignEnclave { seq, .. }
            | Self::BadStart { seq, .. }
            | Self::EvidenceRejected { seq, .. }
            | Self::BadCheckpointRecord { seq, .. } => Some(*seq),
            Self::Truncated { records, .. } => Some(*records),
            Self::Diverged { first_suspect, .. } => Some(*first_suspect),
            Self::UnsignedTail { from, .. } => Some(*from),
            Self::NoStart { .. } => Some(0),
            _ => None,
        }
    }
}

/// One enclave's tenure over the log.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// Its start record.
    pub seq: u64,
    /// The record's time.
    pub time: time::OffsetDateTime,
    /// Its enclave identity.
    pub enclave: Hex32,
    /// Its start record's content.
    pub start: Start,
}

/// What [`check_chain`] learned.
#[derive(Debug, Clone, Default)]
pub struct ChainSummary {
    /// The log's origin, from its first start record.
    pub origin: Option<String>,
    /// Every epoch, in order.
    pub epochs: Vec<Epoch>,
    /// The last checkpoint record that verified: its position and note.
    pub last_checkpoint: Option<(u64, String)>,
    /// The tree over the acknowledged prefix (through that checkpoint
    /// record), from which the writer continues.
    pub acknowledged_frontier: crate::merkle::Frontier,
}

impl ChainSummary {
    /// Records up to and including the last verified checkpoint record:
    /// the acknowledged prefix of the log.
    pub fn acknowledged(&self) -> u64 {
        self.last_checkpoint.as_ref().map_or(0, |(seq, _)| seq + 1)
    }
}

/// Steps 1 and 2 and the structural part of 3: segments, positions, chain,
/// enclave identities, start nonces, and every checkpoint record's
/// signature and root. Returns what it learned up to the first finding.
pub fn check_chain(contents: &LogContents) -> (ChainSummary, Option<Finding>) {
    let mut summary = ChainSummary::default();
    let finding = scan(contents, &mut summary).err();
    (summary, finding)
}

fn scan(contents: &LogContents, summary: &mut ChainSummary) -> Result<(), Finding> {
    if let Some(name) = contents.strays.first() {
        return Err(Finding::StrayFile { name: name.clone() });
    }
    for (first, name, index) in &contents.segments {
        if *first != *index as u64 {
            return Err(Finding::SegmentMisplaced {
                segment: name.clone(),
                expected: *index as u64,
            });
        }
    }
    let records = &contents.records;
    let mut frontier = crate::merkle::Frontier::default();
    for (i, stored) in records.iter().enumerate() {
        let position = i as u64;
        let record = stored.record.as_ref().map_err(|what| Finding::Unreadable {
            seq: position,
            segment: stored.segment.clone(),
            what: what.clone(),
        })?;
        if record.seq != position {
            let next_seq = records
                .get(i + 1)
                .and_then(|r| r.record.as_ref().ok())
                .map(|r| r.seq);
            return Err(if record.seq > position && next_seq != Some(position) {
                Finding::Deleted {
                    seq: position,
                    found: record.seq,
                }
            } else {
                Finding::Reordered {
                    seq: position,
                    found: record.seq,
                }
            });
        }
        let expected_prev = match i.checked_sub(1).and_then(|p| records.get(p)) {
            Some(before) => Hex32(before.leaf),
            None => Hex32::default(),
        };
        if !matches!(record.event, Event::Start(_)) {
            check_enclave(record, summary)?;
        }
        if record.prev != expected_prev {
            // Either the predecessor changed (this record and its successor
            // still agree), or this record does not belong here.
            let successor_agrees = records
                .get(i + 1)
                .and_then(|r| r.record.as_ref().ok())
                .is_none_or(|next| next.prev.0 == stored.leaf);
            return Err(if i > 0 && successor_agrees {
                Finding::Altered { seq: position - 1 }
            } else {
                Finding::ChainBroken { seq: position }
            });
        }
        match &record.event {
            Event::Start(_) => check_enclave(record, summary)?,
            Event::Checkpoint(c) => {
                check_checkpoint_record(position, &c.note, summary, &frontier)?;
                summary.last_checkpoint = Some((position, c.note.clone()));
                frontier.push(stored.leaf);
                summary.acknowledged_frontier = frontier.clone();
                continue;
            }
            _ => {}
        }
        frontier.push(stored.leaf);
    }
    Ok(())
}

/// A checkpoint record must be signed by the key of the epoch that wrote
/// it, over exactly the records before it.
fn check_checkpoint_record(
    seq: u64,
    note: &str,
    summary: &ChainSummary,
    before: &crate::merkle::Frontier,
) -> Result<(), Finding> {
    let bad = |what: String| Finding::BadCheckpointRecord { seq, what };
    let parsed = SignedCheckpoint::parse(note).map_err(|e| bad(e.to_string()))?;
    let origin = summary.origin.as_deref().unwrap_or_default();
    if parsed.checkpoint.origin != origin {
        return Err(bad(format!("it is for log {:?}", parsed.checkpoint.origin)));
    }
    let epoch = summary
        .epochs
        .last()
        .ok_or_else(|| bad("no enclave holds the log".into()))?;
    parsed
        .verify(origin, &epoch.start.audit_key.0)
        .map_err(|e| {
            bad(format!(
                "{e} (the key of the enclave that started at record {})",
                epoch.seq
            ))
        })?;
    if parsed.checkpoint.size != seq {
        return Err(bad(format!(
            "it covers {} records, not the {seq} before it",
            parsed.checkpoint.size
        )));
    }
    if parsed.checkpoint.root != before.root() {
        return Err(bad(
            "its root is not the root of the records before it".into()
        ));
    }
    Ok(())
}

fn check_enclave(record: &Record, summary: &mut ChainSummary) -> Result<(), Finding> {
    let seq = record.seq;
    match &record.event {
        Event::Start(start) => {
            let bad = |what: String| Finding::BadStart { seq, what };
            let origin = summary.origin.get_or_insert_with(|| start.origin.clone());
            if *origin != start.origin {
                return Err(bad(format!(
                    "it names log {:?}, but this log is {origin:?} (spliced from another log)",
                    start.origin
                )));
            }
            if record.enclave != enclave_id(&start.evidence) {
                return Err(bad(
                    "its enclave identity is not the digest of its evidence".into(),
                ));
            }
            if start.evidence.nonce != start_nonce(&start.origin, seq, &record.prev) {
                return Err(bad(
                    "its evidence answers another nonce: it was made for another log or another position".into(),
                ));
            }
            if start.evidence.bindings.audit_key != start.audit_key.0 {
                return Err(bad(
                    "its evidence binds another audit key than the one it announces".into(),
                ));
            }
            summary.epochs.push(Epoch {
                seq,
                time: record.time,
                enclave: record.enclave,
                start: (**start).clone(),
            });
            Ok(())
        }
        other => match summary.epochs.last() {
            None => Err(Finding::NoStart {
                found: other.kind().to_owned(),
            }),
            Some(epoch) if epoch.enclave == record.enclave => Ok(()),
            Some(_) => Err(Finding::ForeignEnclave {
                seq,
                enclave: record.enclave.to_string(),
            }),
        },
    }
}

/// What to verify a log against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Checkpoints kept elsewhere (witnesses), with a label for each.
    pub checkpoints: Vec<(String, String)>,
    /// Appraise every start record's evidence against this policy.
    pub policy: Option<AppraisalPolicy>,
}

/// An epoch as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    /// Start record.
    pub seq: u64,
    /// Records in the epoch.
    pub records: u64,
    /// Enclave identity.
    pub enclave: String,
    /// Audit key.
    pub audit_key: String,
    /// TEE kind.
    pub tee: String,
    /// The appraisal's summary, when a policy was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appraisal: Option<String>,
}

/// A checkpoint that verified.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointReport {
    /// Where it came from.
    pub checkpoint: String,
    /// Its size.
    pub size: u64,
    /// Its root, hex.
    pub root: String,
    /// The start record of the epoch whose key signed it.
    pub signed_by_epoch: u64,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether the log is valid.
    pub valid: bool,
    /// The log's origin.
    pub origin: Option<String>,
    /// Records read.
    pub records: u64,
    /// The tree head over all of them, hex.
    pub root: String,
    /// Each epoch.
    pub epochs: Vec<EpochReport>,
    /// Each checkpoint that verified.
    pub checkpoints: Vec<CheckpointReport>,
    /// Whether start evidence was appraised against a policy.
    pub evidence_appraised: bool,
    /// The first problem, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
    /// What is worth knowing but not invalid.
    pub warnings: Vec<String>,
}

impl Report {
    fn fail(mut self, finding: Finding) -> Self {
        self.valid = false;
        self.finding = Some(finding);
        self
    }
}

/// Reads and verifies the log in `dir`.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<Report, AuditError> {
    let contents = read_dir(dir)?;
    Ok(verify_contents(&contents, options))
}

/// Verifies what [`read_dir`] read.
pub fn verify_contents(contents: &LogContents, options: &VerifyOptions) -> Report {
    let leaves: Vec<Hash> = contents.records.iter().map(|r| r.leaf).collect();
    let mut report = Report {
        valid: true,
        origin: None,
        records: leaves.len() as u64,
        root: hex::encode(merkle::root(&leaves)),
        epochs: Vec::new(),
        checkpoints: Vec::new(),
        evidence_appraised: options.policy.is_some(),
        finding: None,
        warnings: Vec::new(),
    };
    if let Some(torn) = &contents.torn {
        report.warnings.push(format!(
            "{} bytes after the last complete record in {}: a write interrupted by a crash, never acknowledged; the enclave cuts it off and records that when it restarts",
            torn.bytes.len(),
            torn.path.display()
        ));
    }
    let (summary, finding) = check_chain(contents);
    if let Some(finding) = finding {
        return report.fail(finding);
    }
    report.origin.clone_from(&summary.origin);
    for (i, epoch) in summary.epochs.iter().enumerate() {
        let end = summary
            .epochs
            .get(i + 1)
            .map_or(report.records, |next| next.seq);
        let mut entry = EpochReport {
            seq: epoch.seq,
            records: end - epoch.seq,
            enclave: epoch.enclave.to_string(),
            audit_key: epoch.start.audit_key.to_string(),
            tee: epoch.start.evidence.tee.clone(),
            appraisal: None,
        };
        if let Some(policy) = &options.policy {
            let doc = &epoch.start.evidence;
            if let Some(bundles) = &policy.policy_digests {
                if !bundles.accepts_committed(&doc.bindings.policy_digest) {
                    return report.fail(Finding::EvidenceRejected {
                        seq: epoch.seq,
                        why: format!(
                            "the enclave ran policy bundle {}, which the policy's policy_digests do not allow",
                            hex::encode(&doc.bindings.policy_digest)
                        ),
                    });
                }
            }
            let expected = freshness_binding(&epoch.start.tls_spki, &doc.bindings, &doc.nonce);
            match doc.verify_bound(
                &expected,
                &cloister_attestation::collect::Endorsements::default(),
                policy,
                epoch.time,
            ) {
                Ok(appraisal) => entry.appraisal = Some(format!("{appraisal:?}")),
                Err(e) => {
                    return report.fail(Finding::EvidenceRejected {
                        seq: epoch.seq,
                        why: e.to_string(),
                    })
                }
            }
        }
        report.epochs.push(entry);
    }
    if options.policy.is_none() && !summary.epochs.is_empty() {
        report.warnings.push(
            "start evidence was not appraised (pass --policy): the audit keys are bound to evidence, but nothing says that evidence is from an approved enclave".into(),
        );
    }
    let mut sources: Vec<(String, String)> = Vec::new();
    if let Some((seq, note)) = &summary.last_checkpoint {
        sources.push((format!("record {seq}"), note.clone()));
    }
    sources.extend(options.checkpoints.iter().cloned());
    let mut agreeing: BTreeMap<u64, Hash> = BTreeMap::new();
    for (source, text) in &sources {
        match check_checkpoint(source, text, &summary, &leaves) {
            Ok((accepted, root)) => {
                agreeing.insert(accepted.size, root);
                report.checkpoints.push(accepted);
            }
            Err(mut finding) => {
                if let Finding::Diverged {
                    first_suspect,
                    size,
                    ..
                } = &mut finding
                {
                    // The smallest size this checkpoint and an agreeing one
                    // leave in doubt.
                    *first_suspect = agreeing.range(..*size).next_back().map_or(0, |(s, _)| *s);
                }
                return report.fail(finding);
            }
        }
    }
    let sizes: Vec<(u64, Hash)> = agreeing.iter().map(|(s, r)| (*s, *r)).collect();
    for pair in sizes.windows(2) {
        if let [(old, old_root), (new, new_root)] = pair {
            let proof = match merkle::consistency_proof(
                *old as usize,
                leaves.get(..*new as usize).unwrap_or_default(),
            ) {
                Ok(proof) => proof,
                Err(e) => {
                    return report.fail(Finding::Inconsistent {
                        old: *old,
                        new: *new,
                        why: e.to_string(),
                    })
                }
            };
            if let Err(e) = merkle::verify_consistency(*old, *new, old_root, new_root, &proof) {
                return report.fail(Finding::Inconsistent {
                    old: *old,
                    new: *new,
                    why: e.to_string(),
                });
            }
        }
    }
    let acknowledged = summary.acknowledged();
    let records = report.records;
    if acknowledged < records {
        return report.fail(Finding::UnsignedTail {
            from: acknowledged,
            to: records,
        });
    }
    report
}

/// Checks one checkpoint against the log; returns it with its root.
fn check_checkpoint(
    source: &str,
    text: &str,
    summary: &ChainSummary,
    leaves: &[Hash],
) -> Result<(CheckpointReport, Hash), Finding> {
    let bad = |what: String| Finding::BadCheckpoint {
        checkpoint: source.to_owned(),
        what,
    };
    let note = SignedCheckpoint::parse(text).map_err(|e| bad(e.to_string()))?;
    let checkpoint = &note.checkpoint;
    let origin = summary.origin.as_deref().unwrap_or_default();
    if checkpoint.origin != origin {
        return Err(bad(format!(
            "it is for log {:?}, not this log ({origin:?})",
            checkpoint.origin
        )));
    }
    let mut signer = None;
    for epoch in &summary.epochs {
        match note.verify(origin, &epoch.start.audit_key.0) {
            Ok(()) => {
                signer = Some(epoch);
                break;
            }
            Err(crate::checkpoint::CheckpointError::NotSignedBy { .. }) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    let Some(signer) = signer else {
        return Err(Finding::UnknownSigner {
            checkpoint: source.to_owned(),
            key_ids: note
                .signatures
                .iter()
                .map(|s| format!("{} {}", s.name, hex::encode(s.key_id)))
                .collect(),
        });
    };
    if checkpoint.size <= signer.seq {
        return Err(bad(format!(
            "it is signed by the enclave that started at record {}, but covers only {} records",
            signer.seq, checkpoint.size
        )));
    }
    let records = leaves.len() as u64;
    if checkpoint.size > records {
        return Err(Finding::Truncated {
            checkpoint: source.to_owned(),
            size: checkpoint.size,
            records,
        });
    }
    let root = merkle::root(leaves.get(..checkpoint.size as usize).unwrap_or_default());
    if root != checkpoint.root {
        return Err(Finding::Diverged {
            checkpoint: source.to_owned(),
            size: checkpoint.size,
            first_suspect: 0,
        });
    }
    Ok((
        CheckpointReport {
            checkpoint: source.to_owned(),
            size: checkpoint.size,
            root: hex::encode(root),
            signed_by_epoch: signer.seq,
        },
        root,
    ))
}
