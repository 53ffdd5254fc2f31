//! The enclave's side: recover the log at start, then append records with
//! group commit.
//!
//! [`Recovered::open`] reads the log the host kept and checks it as the
//! verifier does (without appraising evidence). Whatever follows the last
//! checkpoint record — a commit a crash interrupted, torn bytes, records the
//! host appended — was never acknowledged and is cut off; damage before it
//! is refused, so nothing is ever appended to a history the enclave did not
//! verify. The caller then makes evidence binding its audit key and the
//! [`Recovered::start_nonce`], and [`Recovered::start`] writes the start
//! record (and, if a tail was cut, a truncation record) and starts the
//! writer.
//!
//! The writer thread takes every record waiting, appends a checkpoint
//! record signed over all of them, writes it all in one `write`, calls
//! `fdatasync` once, and only then answers each caller: an answer is
//! released only after its record and a signature covering it are durable,
//! and under load one sync serves many records. After a failed write or
//! sync the log accepts nothing more (the file's state is unknown after a
//! failed fsync); the enclave denies queries, and fails its health check,
//! until it is restarted and recovers the log.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand_core::{OsRng, TryRngCore as _};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::merkle::Frontier;
use crate::record::{
    enclave_id, start_nonce, CheckpointRecord, Event, Hex32, Record, SealedFields, Start,
    Truncation,
};
use crate::seal::{AuditorPublicKey, EpochKeys};
use crate::segment::{read_dir, segment_name, CHECKPOINT, SEGMENTS};
use crate::verify::{check_chain, Finding};

/// The most records one sync covers.
const MAX_BATCH: usize = 1024;
/// Records waiting for the writer before appenders block.
const QUEUE: usize = 4096;
/// A new segment starts past this size.
const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The lock file that keeps a second writer out.
const LOCK: &str = "lock";

/// The enclave's audit signing key: generated inside the enclave at each
/// start, its public half bound into the evidence, never written anywhere.
pub struct AuditSigner(Ed25519KeyPair);

impl core::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AuditSigner({})", hex::encode(self.public_key()))
    }
}

impl AuditSigner {
    /// A fresh key.
    pub fn generate() -> Result<Self, AuditError> {
        Ed25519KeyPair::generate()
            .map(Self)
            .map_err(|_| AuditError::Key("cannot generate an Ed25519 key".into()))
    }

    /// The public key, for the evidence's bindings.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.public_key().as_ref().try_into().unwrap_or([0; 32])
    }
}

/// Where the log goes and what it keeps.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The log directory (host storage: it sees only what the records show
    /// in clear).
    pub dir: PathBuf,
    /// The key sealed fields are encrypted to.
    pub auditor: AuditorPublicKey,
    /// Keep prompt and answer text (sealed) in the records.
    pub keep_text: bool,
    /// Also write each checkpoint here (a witness's directory).
    pub witness_dir: Option<PathBuf>,
    /// Start a new segment past this size.
    pub max_segment_bytes: u64,
}

impl LogConfig {
    /// Defaults for the rest.
    pub fn new(dir: PathBuf, auditor: AuditorPublicKey) -> Self {
        Self {
            dir,
            auditor,
            keep_text: false,
            witness_dir: None,
            max_segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// A log read back and checked, ready for a new enclave to take over.
#[derive(Debug)]
pub struct Recovered {
    config: LogConfig,
    lock: File,
    origin: String,
    frontier: Frontier,
    prev: Hex32,
    cut: Option<Truncation>,
}

/// What the enclave says of itself in its start record.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// Its RA-TLS SubjectPublicKeyInfo.
    pub tls_spki: Vec<u8>,
    /// Fresh evidence answering [`Recovered::start_nonce`], with
    /// `bindings.audit_key` the signer's public key.
    pub evidence: cloister_attestation::ratls::AttestationDocument,
    /// Software version.
    pub software: String,
}

impl Recovered {
    /// Locks, reads and checks the log in `config.dir` (creating an empty
    /// one), and cuts off what follows its last checkpoint.
    pub fn open(config: LogConfig) -> Result<Self, AuditError> {
        let dir = &config.dir;
        let segments = dir.join(SEGMENTS);
        std::fs::create_dir_all(&segments).map_err(|e| AuditError::io(&segments, &e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io(&lock_path, &e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| AuditError::Locked(dir.display().to_string()))?;
        let contents = read_dir(dir)?;
        let (summary, finding) = check_chain(&contents);
        let acknowledged = summary.acknowledged() as usize;
        let tail = contents.records.get(acknowledged..).unwrap_or_default();
        // What follows the last checkpoint was never acknowledged: at most
        // the records of one commit a crash interrupted (which cannot hold
        // a complete checkpoint), or records the host added. Anything else
        // wrong is damage to the acknowledged history: refuse.
        let tail_holds_checkpoint = tail
            .iter()
            .any(|r| matches!(&r.record, Ok(rec) if matches!(rec.event, Event::Checkpoint(_))));
        if let Some(finding) = finding {
            let in_tail = finding.seq().is_some_and(|seq| seq >= acknowledged as u64)
                && !matches!(
                    finding,
                    Finding::StrayFile { .. } | Finding::SegmentMisplaced { .. }
                );
            if !in_tail || tail_holds_checkpoint {
                return Err(AuditError::Damaged(Box::new(finding)));
            }
        } else if tail_holds_checkpoint {
            return Err(AuditError::Damaged(Box::new(Finding::UnsignedTail {
                from: acknowledged as u64,
                to: contents.records.len() as u64,
            })));
        }
        let cut = cut_tail(&contents, tail)?;
        let frontier = summary.acknowledged_frontier.clone();
        let origin = match summary.origin {
            Some(origin) => origin,
            None => {
                let mut id = [0u8; 16];
                OsRng
                    .try_fill_bytes(&mut id)
                    .map_err(|_| AuditError::Key("no randomness".into()))?;
                format!("cloister.audit/{}", hex::encode(id))
            }
        };
        let prev = acknowledged
            .checked_sub(1)
            .and_then(|i| contents.records.get(i))
            .map(|r| Hex32(r.leaf))
            .unwrap_or_default();
        Ok(Self {
            config,
            lock,
            origin,
            frontier,
            prev,
            cut,
        })
    }

    /// The log's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Records already in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The nonce the start record's evidence must answer.
    pub fn start_nonce(&self) -> [u8; 32] {
        start_nonce(&self.origin, self.frontier.size(), &self.prev)
    }

    /// What was cut off after the last checkpoint, if anything.
    pub fn truncated(&self) -> Option<&Truncation> {
        self.cut.as_ref()
    }

    /// Writes the start record (then the truncation record, if a tail was
    /// cut, and `also`: what the enclave did before its log started) in one
    /// durable commit, and starts the writer.
    pub fn start(
        self,
        signer: AuditSigner,
        info: StartInfo,
        also: Vec<Event>,
    ) -> Result<AuditLog, AuditError> {
        let audit_key = signer.public_key();
        if info.evidence.bindings.audit_key != audit_key {
            return Err(AuditError::Key(
                "the start evidence does not bind this audit key".into(),
            ));
        }
        if info.evidence.nonce != self.start_nonce() {
            return Err(AuditError::Key(
                "the start evidence does not answer this log's start nonce".into(),
            ));
        }
        let (enc, keys) = EpochKeys::new(&self.config.auditor, &audit_key)?;
        let enclave = enclave_id(&info.evidence);
        let segment_path = self
            .config
            .dir
            .join(SEGMENTS)
            .join(segment_name(self.frontier.size()));
        let segment = open_segment(&segment_path)?;
        let mut writer = Writer {
            segment,
            segment_path,
            segment_bytes: 0,
            frontier: self.frontier,
            prev: self.prev,
            enclave,
            keys,
            signer: signer.0,
            origin: self.origin.clone(),
            config: self.config.clone(),
            poisoned: Poison::default(),
            witness: None,
        };
        let witness_thread = match &self.config.witness_dir {
            Some(dir) => {
                let (tx, thread) =
                    spawn_witness(dir.clone()).map_err(|e| AuditError::io(dir, &e))?;
                writer.witness = Some(tx);
                Some(thread)
            }
            None => None,
        };
        let start = Event::Start(Box::new(Start {
            origin: self.origin.clone(),
            audit_key: Hex32(audit_key),
            tls_spki: info.tls_spki,
            evidence: info.evidence,
            auditor_key: Hex32(self.config.auditor.0),
            enc,
            keeps_text: self.config.keep_text,
            software: info.software,
        }));
        let mut first = vec![(start, SealedFields::default(), OffsetDateTime::now_utc())];
        let now = OffsetDateTime::now_utc();
        first.extend(
            self.cut
                .map(Event::Truncation)
                .into_iter()
                .chain(also)
                .map(|event| (event, SealedFields::default(), now)),
        );
        writer.commit(first)?;
        let keys_for_callers = writer.keys.clone();
        let poisoned = writer.poisoned.clone();
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| AuditError::io(&self.config.dir, &e))?;
        Ok(AuditLog {
            tx: Some(tx),
            thread: Some(thread),
            keys: keys_for_callers,
            enclave,
            keep_text: self.config.keep_text,
            origin: self.origin.clone(),
            witness_thread,
            poisoned,
            _lock: self.lock,
        })
    }
}

/// Removes the unacknowledged records `tail` and the torn bytes after them,
/// durably, and describes what went.
fn cut_tail(
    contents: &crate::segment::LogContents,
    tail: &[crate::segment::StoredRecord],
) -> Result<Option<Truncation>, AuditError> {
    let (path, offset) = match (tail.first(), &contents.torn) {
        (Some(first), _) => (first.path.clone(), first.offset),
        (None, Some(torn)) => (torn.path.clone(), torn.offset),
        (None, None) => return Ok(None),
    };
    let mut dropped = Vec::new();
    for r in tail {
        dropped.extend_from_slice(&r.raw);
        dropped.push(b'\n');
    }
    if let Some(torn) = &contents.torn {
        dropped.extend_from_slice(&torn.bytes);
    }
    // Segments after the one the cut starts in hold only cut records.
    for (_, name, _) in &contents.segments {
        let segment = path.with_file_name(name);
        if segment > path {
            std::fs::remove_file(&segment).map_err(|e| AuditError::io(&segment, &e))?;
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, &e))?;
    file.set_len(offset)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&path, &e))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io(parent, &e))?;
    }
    tracing::warn!(
        segment = %path.display(),
        records = tail.len(),
        bytes = dropped.len(),
        "audit log: cut off a tail after the last checkpoint (a crash interrupted its commit; never acknowledged)"
    );
    Ok(Some(Truncation {
        segment: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dropped_records: tail.len() as u64,
        dropped_bytes: dropped.len() as u64,
        dropped_sha256: Hex32(Sha256::digest(&dropped).into()),
    }))
}

fn open_segment(path: &Path) -> Result<File, AuditError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io(path, &e))?;
    // The new directory entry must survive a crash as well as the data.
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io(parent, &e))?;
    }
    Ok(file)
}

/// A record made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Its sequence number.
    pub seq: u64,
}

struct Job {
    event: Event,
    sealed: SealedFields,
    time: OffsetDateTime,
    reply: mpsc::SyncSender<Result<Receipt, AuditError>>,
}

/// The open log. Appends block until the record is durable.
pub struct AuditLog {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    keys: EpochKeys,
    enclave: Hex32,
    keep_text: bool,
    origin: String,
    witness_thread: Option<JoinHandle<()>>,
    poisoned: Poison,
    _lock: File,
}

impl core::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enclave", &self.enclave.to_string())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Appends `event` (with `sealed` encrypted to the auditor) and returns
    /// once it is durable. Blocks: call it from a blocking thread.
    pub fn append(&self, event: Event, sealed: SealedFields) -> Result<Receipt, AuditError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(AuditError::Closed)?;
        tx.send(Job {
            event,
            sealed,
            time: OffsetDateTime::now_utc(),
            reply,
        })
        .map_err(|_| AuditError::Closed)?;
        answer.recv().map_err(|_| AuditError::Closed)?
    }

    /// Whether the log still accepts records: after a failed write or sync it
    /// does not, until the enclave restarts and recovers it. The enclave's
    /// health check reports this, so the host restarts it.
    pub fn health(&self) -> Result<(), AuditError> {
        match self.poisoned.get() {
            Some(why) => Err(AuditError::Poisoned(why)),
            None => Ok(()),
        }
    }

    /// This epoch's pseudonym of a patient reference.
    pub fn pseudonym(&self, patient: &str) -> String {
        self.keys.pseudonym(patient)
    }

    /// This epoch's keyed digest of a prompt or answer.
    pub fn digest(&self, label: &str, text: &[u8]) -> String {
        self.keys.digest(label, text)
    }

    /// Whether the deployment keeps prompt and answer text.
    pub fn keeps_text(&self) -> bool {
        self.keep_text
    }

    /// The log's name (the checkpoints' origin).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The enclave identity every record of this epoch carries.
    pub fn enclave(&self) -> Hex32 {
        self.enclave
    }

    /// Appends the stop record and waits for the writer to finish.
    pub fn close(mut self, reason: &str) -> Result<Receipt, AuditError> {
        let receipt = self.append(
            Event::Stop(crate::record::Stop {
                reason: reason.to_owned(),
            }),
            SealedFields::default(),
        );
        self.finish();
        receipt
    }

    /// Stops the writer (it drains what is queued) and the witness.
    fn finish(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(thread) = self.witness_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Set once a write or sync has failed; shared by the writer and the
/// handle callers hold.
#[derive(Debug, Clone, Default)]
struct Poison(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Poison {
    fn get(&self) -> Option<String> {
        match self.0.lock() {
            Ok(why) => why.clone(),
            Err(_) => Some("the audit writer panicked".into()),
        }
    }

    fn set(&self, why: String) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(why);
        }
    }
}

struct Writer {
    segment: File,
    segment_path: PathBuf,
    segment_bytes: u64,
    frontier: Frontier,
    prev: Hex32,
    enclave: Hex32,
    keys: EpochKeys,
    signer: Ed25519KeyPair,
    origin: String,
    config: LogConfig,
    poisoned: Poison,
    witness: Option<mpsc::Sender<String>>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let (batch, replies): (Vec<_>, Vec<_>) = jobs
                .into_iter()
                .map(|j| ((j.event, j.sealed, j.time), j.reply))
                .unzip();
            let outcome = self.commit(batch);
            for (i, reply) in replies.into_iter().enumerate() {
                let answer = match &outcome {
                    Ok(first_seq) => Ok(Receipt {
                        seq: first_seq + i as u64,
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Writes a batch durably, followed by a checkpoint record over
    /// everything before it, in one write and one sync: a record is
    /// acknowledged only with a signed checkpoint covering it. Returns the
    /// first record's sequence number.
    fn commit(
        &mut self,
        batch: Vec<(Event, SealedFields, OffsetDateTime)>,
    ) -> Result<u64, AuditError> {
        if let Some(why) = self.poisoned.get() {
            return Err(AuditError::Poisoned(why));
        }
        let first_seq = self.frontier.size();
        let mut buffer = Vec::new();
        let mut frontier = self.frontier.clone();
        let mut prev = self.prev;
        let mut append = |record: Record, frontier: &mut Frontier, prev: &mut Hex32| {
            let line =
                serde_json::to_vec(&record).map_err(|e| AuditError::Encoding(e.to_string()))?;
            let leaf = crate::merkle::leaf_hash(&line);
            frontier.push(leaf);
            *prev = Hex32(leaf);
            buffer.extend_from_slice(&line);
            buffer.push(b'\n');
            Ok::<(), AuditError>(())
        };
        let mut last_time = OffsetDateTime::now_utc();
        for (mut event, sealed, time) in batch {
            let seq = frontier.size();
            self.seal_into(&mut event, seq, &sealed)?;
            last_time = time;
            let record = Record {
                seq,
                prev,
                time,
                enclave: self.enclave,
                event,
            };
            append(record, &mut frontier, &mut prev)?;
        }
        let note = Checkpoint {
            origin: self.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
        }
        .sign(&self.signer);
        let checkpoint = Record {
            seq: frontier.size(),
            prev,
            time: last_time,
            enclave: self.enclave,
            event: Event::Checkpoint(CheckpointRecord { note: note.clone() }),
        };
        append(checkpoint, &mut frontier, &mut prev)?;
        if self.segment_bytes > 0
            && self.segment_bytes + buffer.len() as u64 > self.config.max_segment_bytes
        {
            self.rotate(first_seq)?;
        }
        let written = self
            .segment
            .write_all(&buffer)
            .and_then(|()| self.segment.sync_data());
        if let Err(e) = written {
            let why = format!("{}: {e}", self.segment_path.display());
            tracing::error!(error = %why, "audit log write or sync failed; no more records are accepted");
            self.poisoned.set(why.clone());
            return Err(AuditError::Poisoned(why));
        }
        self.segment_bytes += buffer.len() as u64;
        self.frontier = frontier;
        self.prev = prev;
        if let Some(witness) = &self.witness {
            // Latest wins; the witness thread never holds up a commit.
            let _ = witness.send(note);
        }
        Ok(first_seq)
    }

    fn rotate(&mut self, first_seq: u64) -> Result<(), AuditError> {
        let path = self.config.dir.join(SEGMENTS).join(segment_name(first_seq));
        match open_segment(&path) {
            Ok(file) => {
                self.segment = file;
                self.segment_path = path;
                self.segment_bytes = 0;
                Ok(())
            }
            Err(e) => {
                self.poisoned.set(e.to_string());
                Err(e)
            }
        }
    }

    fn seal_into(
        &self,
        event: &mut Event,
        seq: u64,
        sealed: &SealedFields,
    ) -> Result<(), AuditError> {
        if sealed.is_empty() {
            return Ok(());
        }
        let plaintext =
            serde_json::to_vec(sealed).map_err(|e| AuditError::Encoding(e.to_string()))?;
        let blob = BASE64.encode(self.keys.seal(seq, &self.enclave.0, &plaintext)?);
        match event {
            Event::Query(q) => q.sealed = Some(blob),
            Event::StreamEnd(s) => s.sealed = Some(blob),
            _ => {
                return Err(AuditError::Encoding(format!(
                    "a {} record has no sealed fields",
                    event.kind()
                )))
            }
        }
        Ok(())
    }
}

/// Publishes checkpoints into a witness directory from its own thread, so
/// a slow or failing witness never holds up a commit; when several are
/// waiting only the newest is written.
fn spawn_witness(dir: PathBuf) -> std::io::Result<(mpsc::Sender<String>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<String>();
    let thread = std::thread::Builder::new()
        .name("audit-witness".into())
        .spawn(move || {
            while let Ok(mut note) = rx.recv() {
                while let Ok(newer) = rx.try_recv() {
                    note = newer;
                }
                if let Err(e) = replace_file(&dir.join(CHECKPOINT), note.as_bytes()) {
                    tracing::warn!(dir = %dir.display(), error = %e, "audit checkpoint not published to the witness");
                }
            }
        })?;
    Ok((tx, thread))
}

/// Writes `path` by rename, so a reader sees the old file or the new one.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
