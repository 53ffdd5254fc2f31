//! Reading a log as an auditor: records decrypted with the auditor's key,
//! filtered, and proved to a third party.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::checkpoint::SignedCheckpoint;
use crate::error::AuditError;
use crate::merkle::{self, Hash};
use crate::record::{Event, Record, SealedFields};
use crate::seal::{AuditorKey, EpochKeys};
use crate::segment::{read_dir, LogContents};
use crate::verify::{check_chain, ChainSummary};

/// A log read and chain-checked (run [`crate::verify::verify`] for the
/// full verdict; this refuses only logs whose chain is broken).
#[derive(Debug)]
pub struct LogView {
    /// What is on disk.
    pub contents: LogContents,
    /// The chain's summary.
    pub summary: ChainSummary,
}

impl LogView {
    /// Reads `dir`.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let contents = read_dir(dir)?;
        let (summary, finding) = check_chain(&contents);
        if let Some(finding) = finding {
            return Err(AuditError::Damaged(Box::new(finding)));
        }
        Ok(Self { contents, summary })
    }

    /// Each epoch's keys, opened with `auditor`; `None` for an epoch sealed
    /// to another auditor key.
    pub fn epoch_keys(&self, auditor: &AuditorKey) -> Result<Vec<Option<EpochKeys>>, AuditError> {
        self.summary
            .epochs
            .iter()
            .map(|epoch| {
                if epoch.start.auditor_key.0 != auditor.public().0 {
                    return Ok(None);
                }
                auditor
                    .open_epoch(&epoch.start.enc, &epoch.start.audit_key.0)
                    .map(Some)
            })
            .collect()
    }

    fn epoch_index(&self, seq: u64) -> Option<usize> {
        self.summary.epochs.iter().rposition(|e| e.seq <= seq)
    }
}

/// One record as `show` and `search` present it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// The record as stored.
    #[serde(flatten)]
    pub record: Record,
    /// Its sealed fields, decrypted (with the auditor key only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsealed: Option<SealedFields>,
    /// Why sealed fields are not shown, when the record has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_note: Option<String>,
}

/// Which records to show. Every set field must match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Record type (`query`, `start`, …).
    pub kind: Option<String>,
    /// Token subject.
    pub principal: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Patient reference in clear (needs the auditor key).
    pub patient: Option<String>,
    /// Outcome (`answered`, `denied`, …).
    pub outcome: Option<String>,
    /// A module that decided, optionally `module:effect` (`access:deny`).
    pub module: Option<String>,
    /// A reason code any module gave.
    pub reason: Option<String>,
    /// Not before.
    pub since: Option<OffsetDateTime>,
    /// Not after.
    pub until: Option<OffsetDateTime>,
    /// Sequence numbers from.
    pub from: Option<u64>,
    /// Sequence numbers to (inclusive).
    pub to: Option<u64>,
}

impl Filter {
    fn matches(&self, record: &Record, keys: Option<&EpochKeys>) -> Result<bool, AuditError> {
        if self.from.is_some_and(|f| record.seq < f) || self.to.is_some_and(|t| record.seq > t) {
            return Ok(false);
        }
        if self.since.is_some_and(|s| record.time < s)
            || self.until.is_some_and(|u| record.time > u)
        {
            return Ok(false);
        }
        match self.kind.as_deref() {
            Some(kind) if kind != record.event.kind() => return Ok(false),
            // Checkpoint records are the log's own machinery: shown only
            // when asked for.
            None if matches!(record.event, Event::Checkpoint(_)) => return Ok(false),
            _ => {}
        }
        let wants_query = self.principal.is_some()
            || self.role.is_some()
            || self.patient.is_some()
            || self.outcome.is_some()
            || self.module.is_some()
            || self.reason.is_some();
        let Event::Query(q) = &record.event else {
            return Ok(!wants_query);
        };
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        if !same(&self.principal, &q.principal) || !same(&self.role, &q.role) {
            return Ok(false);
        }
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| o != q.outcome.as_str())
        {
            return Ok(false);
        }
        if let Some(patient) = &self.patient {
            let Some(keys) = keys else {
                return Err(AuditError::Key(
                    "searching by patient needs the auditor key (--key)".into(),
                ));
            };
            if q.patient.as_deref() != Some(keys.pseudonym(patient).as_str()) {
                return Ok(false);
            }
        }
        let decisions: Vec<_> = q
            .policy
            .iter()
            .flat_map(|p| p.input.iter().chain(p.output.iter().flatten()))
            .collect();
        if let Some(module) = &self.module {
            let (name, effect) = match module.split_once(':') {
                Some((n, e)) => (n, Some(e)),
                None => (module.as_str(), None),
            };
            if !decisions
                .iter()
                .any(|d| d.module == name && effect.is_none_or(|e| d.effect == e))
            {
                return Ok(false);
            }
        }
        if let Some(reason) = &self.reason {
            let in_decisions = decisions
                .iter()
                .any(|d| d.reasons.iter().any(|r| r == reason));
            if !in_decisions && q.reason.as_deref() != Some(reason.as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The records `filter` selects, decrypted where `auditor` can.
pub fn select(
    view: &LogView,
    auditor: Option<&AuditorKey>,
    filter: &Filter,
) -> Result<Vec<RecordView>, AuditError> {
    let keys = match auditor {
        Some(auditor) => view.epoch_keys(auditor)?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for stored in &view.contents.records {
        let Ok(record) = &stored.record else {
            continue;
        };
        let epoch_keys = view
            .epoch_index(record.seq)
            .and_then(|i| keys.get(i))
            .and_then(Option::as_ref);
        if !filter.matches(record, epoch_keys)? {
            continue;
        }
        let sealed = match &record.event {
            Event::Query(q) => q.sealed.as_deref(),
            Event::StreamEnd(s) => s.sealed.as_deref(),
            _ => None,
        };
        let (unsealed, sealed_note) = match (sealed, auditor, epoch_keys) {
            (None, _, _) => (None, None),
            (Some(_), None, _) => (
                None,
                Some("sealed: pass the auditor key (--key) to read".to_owned()),
            ),
            (Some(_), Some(_), None) => (None, Some("sealed to another auditor key".to_owned())),
            (Some(blob), Some(_), Some(keys)) => {
                let bytes = BASE64
                    .decode(blob)
                    .map_err(|_| AuditError::SealedFieldsAltered { seq: record.seq })?;
                let plaintext = keys.open(record.seq, &record.enclave.0, &bytes)?;
                let fields: SealedFields = serde_json::from_slice(&plaintext)
                    .map_err(|_| AuditError::SealedFieldsAltered { seq: record.seq })?;
                (Some(fields), None)
            }
        };
        out.push(RecordView {
            record: record.clone(),
            unsealed,
            sealed_note,
        });
    }
    Ok(out)
}

/// An inclusion proof anyone can check with the log's checkpoint and an
/// RFC 6962 verifier: the record's line, its audit path, and the signed
/// checkpoint whose root the path leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The log's origin.
    pub origin: String,
    /// The record's sequence number (its leaf index).
    pub seq: u64,
    /// The record's exact line (the leaf's data).
    pub record: String,
    /// The leaf hash, hex.
    pub leaf_hash: String,
    /// Tree size the proof is for.
    pub tree_size: u64,
    /// The audit path, leaf to root, hex.
    pub path: Vec<String>,
    /// The signed checkpoint of that size.
    pub checkpoint: String,
    /// The Ed25519 key that signed it, hex: bound into the evidence of the
    /// start record `signed_by_epoch` (check that with `cloister audit verify --policy`).
    pub audit_key: String,
    /// That start record.
    pub signed_by_epoch: u64,
}

/// Proves record `seq` against the log's last checkpoint record.
pub fn prove(view: &LogView, seq: u64) -> Result<InclusionProof, AuditError> {
    let (text, note, key) = last_signed(view)?;
    let size = note.checkpoint.size;
    let leaves: Vec<Hash> = view.contents.records.iter().map(|r| r.leaf).collect();
    let tree = leaves.get(..size as usize).ok_or_else(|| {
        damaged(format!(
            "it covers {size} records, the log holds {}",
            leaves.len()
        ))
    })?;
    if merkle::root(tree) != note.checkpoint.root {
        return Err(damaged("its root does not match the log".into()));
    }
    if seq >= size {
        return Err(AuditError::CannotProve(format!(
            "record {seq} is not covered by the log's last checkpoint, which covers records 0..{size}"
        )));
    }
    let path = merkle::inclusion_proof(seq as usize, tree)
        .map_err(|e| AuditError::CannotProve(e.to_string()))?;
    let stored = view
        .contents
        .records
        .get(seq as usize)
        .ok_or_else(|| AuditError::CannotProve(format!("the log has no record {seq}")))?;
    let signed_by_epoch = view
        .summary
        .epochs
        .iter()
        .find(|e| e.start.audit_key.0 == key)
        .map_or(0, |e| e.seq);
    Ok(InclusionProof {
        origin: note.checkpoint.origin.clone(),
        seq,
        record: String::from_utf8_lossy(&stored.raw).into_owned(),
        leaf_hash: hex::encode(stored.leaf),
        tree_size: size,
        path: path.iter().map(hex::encode).collect(),
        checkpoint: text,
        audit_key: hex::encode(key),
        signed_by_epoch,
    })
}

/// Why a proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inclusion proof rejected: {0}")]
pub struct ProofRejected(pub String);

/// Checks a proof on its own: the record hashes to the leaf, the path leads
/// to the checkpoint's root, and the checkpoint is signed by `audit_key`
/// (the proof's own key unless the checker supplies the one they trust).
pub fn check_proof(
    proof: &InclusionProof,
    audit_key: Option<&[u8; 32]>,
) -> Result<(), ProofRejected> {
    let reject = |m: String| ProofRejected(m);
    let leaf = merkle::leaf_hash(proof.record.as_bytes());
    if hex::encode(leaf) != proof.leaf_hash {
        return Err(reject("the record does not hash to the leaf hash".into()));
    }
    let record: Record = serde_json::from_str(&proof.record)
        .map_err(|e| reject(format!("the record does not parse: {e}")))?;
    if record.seq != proof.seq {
        return Err(reject(format!(
            "the record is record {}, not {}",
            record.seq, proof.seq
        )));
    }
    let note = SignedCheckpoint::parse(&proof.checkpoint).map_err(|e| reject(e.to_string()))?;
    if note.checkpoint.origin != proof.origin || note.checkpoint.size != proof.tree_size {
        return Err(reject("the checkpoint is for another log or size".into()));
    }
    let own = key_of(&proof.audit_key, "proof's")?;
    note.verify(&proof.origin, audit_key.unwrap_or(&own))
        .map_err(|e| reject(e.to_string()))?;
    let path = decode_path(&proof.path)?;
    merkle::verify_inclusion(
        proof.seq,
        proof.tree_size,
        &leaf,
        &path,
        &note.checkpoint.root,
    )
    .map_err(|e| reject(e.to_string()))
}

/// A consistency proof anyone can check with the two checkpoints: that the
/// log a witness (or an auditor) saw at `old_size` is a prefix of the log
/// at its last checkpoint, so no record before it was changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The log's origin.
    pub origin: String,
    /// The older checkpoint's size.
    pub old_size: u64,
    /// The newer (the log's last) checkpoint's size.
    pub new_size: u64,
    /// RFC 9162 consistency path, hex.
    pub path: Vec<String>,
    /// The older signed checkpoint, as given.
    pub old_checkpoint: String,
    /// The log's last signed checkpoint.
    pub new_checkpoint: String,
    /// The audit key that signed the older one, hex.
    pub old_audit_key: String,
    /// The audit key that signed the newer one, hex.
    pub new_audit_key: String,
}

/// A proof, as `cloister audit prove` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    /// A record is in the log.
    Inclusion(InclusionProof),
    /// An older checkpoint's log is a prefix of the current one.
    Consistency(ConsistencyProof),
}

fn damaged(what: String) -> AuditError {
    AuditError::Damaged(Box::new(crate::verify::Finding::BadCheckpoint {
        checkpoint: "checkpoint".into(),
        what,
    }))
}

/// The log's last checkpoint record: its note, parsed, and the epoch key
/// that signed it.
fn last_signed(view: &LogView) -> Result<(String, SignedCheckpoint, [u8; 32]), AuditError> {
    let text = view
        .summary
        .last_checkpoint
        .as_ref()
        .map(|(_, note)| note.clone())
        .ok_or_else(|| damaged("the log has no checkpoint to prove against".into()))?;
    let note = SignedCheckpoint::parse(&text).map_err(|e| damaged(e.to_string()))?;
    let key = signer_of(view, &note)
        .ok_or_else(|| damaged("it is not signed by any audit key of this log".into()))?;
    Ok((text, note, key))
}

fn signer_of(view: &LogView, note: &SignedCheckpoint) -> Option<[u8; 32]> {
    let origin = view.summary.origin.clone().unwrap_or_default();
    view.summary
        .epochs
        .iter()
        .map(|e| e.start.audit_key.0)
        .find(|key| note.verify(&origin, key).is_ok())
}

/// Proves that the log at the checkpoint `old` (kept by a witness) is a
/// prefix of the log at its last checkpoint.
pub fn prove_consistency(view: &LogView, old: &str) -> Result<ConsistencyProof, AuditError> {
    let (new_text, new_note, new_key) = last_signed(view)?;
    let old_note = SignedCheckpoint::parse(old).map_err(|e| damaged(e.to_string()))?;
    let old_key = signer_of(view, &old_note).ok_or_else(|| {
        damaged("the older checkpoint is not signed by any audit key of this log".into())
    })?;
    let (old_size, new_size) = (old_note.checkpoint.size, new_note.checkpoint.size);
    let leaves: Vec<Hash> = view.contents.records.iter().map(|r| r.leaf).collect();
    let tree = leaves.get(..new_size as usize).ok_or_else(|| {
        damaged(format!(
            "it covers {new_size} records, the log holds {}",
            leaves.len()
        ))
    })?;
    if old_size > new_size {
        return Err(damaged(format!(
            "the older checkpoint commits to {old_size} records, more than the log's last checkpoint ({new_size}): records were deleted"
        )));
    }
    if merkle::root(tree.get(..old_size as usize).unwrap_or_default()) != old_note.checkpoint.root {
        return Err(damaged(format!(
            "the log's first {old_size} records are not the ones the older checkpoint signed"
        )));
    }
    let path = merkle::consistency_proof(old_size as usize, tree)
        .map_err(|e| AuditError::CannotProve(e.to_string()))?;
    Ok(ConsistencyProof {
        origin: new_note.checkpoint.origin.clone(),
        old_size,
        new_size,
        path: path.iter().map(hex::encode).collect(),
        old_checkpoint: old.to_owned(),
        new_checkpoint: new_text,
        old_audit_key: hex::encode(old_key),
        new_audit_key: hex::encode(new_key),
    })
}

/// A proof's path, from hex.
fn decode_path(path: &[String]) -> Result<Vec<Hash>, ProofRejected> {
    path.iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).map(|()| out)
        })
        .collect::<Result<_, _>>()
        .map_err(|_| ProofRejected("a path hash is not 64 hex digits".into()))
}

fn key_of(hex_key: &str, what: &str) -> Result<[u8; 32], ProofRejected> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key)
        .map_err(|_| ProofRejected(format!("the {what} audit key is not 64 hex digits")))?;
    Ok(key)
}

/// Checks a consistency proof on its own: both checkpoints are signed (by
/// the keys the proof names, or by one of `trusted` when given) and the
/// path proves the older tree a prefix of the newer.
pub fn check_consistency(
    proof: &ConsistencyProof,
    trusted: &[[u8; 32]],
) -> Result<(), ProofRejected> {
    let reject = |m: String| ProofRejected(m);
    let mut heads = Vec::new();
    for (text, key, what) in [
        (&proof.old_checkpoint, &proof.old_audit_key, "older"),
        (&proof.new_checkpoint, &proof.new_audit_key, "newer"),
    ] {
        let note = SignedCheckpoint::parse(text)
            .map_err(|e| reject(format!("the {what} checkpoint: {e}")))?;
        if note.checkpoint.origin != proof.origin {
            return Err(reject(format!("the {what} checkpoint is for another log")));
        }
        let own = key_of(key, what)?;
        let keys: Vec<[u8; 32]> = if trusted.is_empty() {
            vec![own]
        } else {
            trusted.to_vec()
        };
        if !keys.iter().any(|k| note.verify(&proof.origin, k).is_ok()) {
            return Err(reject(format!(
                "the {what} checkpoint is not signed by a trusted audit key"
            )));
        }
        heads.push(note.checkpoint);
    }
    let [old, new] = heads.as_slice() else {
        return Err(reject("two checkpoints are needed".into()));
    };
    if (old.size, new.size) != (proof.old_size, proof.new_size) {
        return Err(reject("the sizes do not match the checkpoints".into()));
    }
    let path = decode_path(&proof.path)?;
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &path)
        .map_err(|e| reject(e.to_string()))
}
