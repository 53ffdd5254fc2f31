//! The broker's release log: one JSON line per release or refusal, appended
//! and fsynced before the answer is sent. A release whose record cannot be
//! made durable is not made.
//!
//! Each line carries a sequence number and the SHA-256 of the previous line
//! (`prev`), so a line removed or edited in the middle breaks the chain.
//! (The broker runs on the data owner's own machine; this guards against
//! mistakes and casual edits, not against the machine's owner.)

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::VaultError;

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The key was released.
    Released,
    /// The request was refused.
    Refused,
}

/// One line of the log: its place in the chain and what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When, RFC 3339.
    pub time: String,
    /// SHA-256 of the previous line (all zeros for the first), hex.
    pub prev: String,
    /// The decision.
    #[serde(flatten)]
    pub record: Record,
}

/// The facts of one request, before the log numbers and chains them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key asked for ("" when the request named none).
    pub key_id: String,
    /// Released or refused.
    pub outcome: Outcome,
    /// The refusal code, or "released".
    pub code: String,
    /// Why.
    pub reason: String,
    /// The TEE the evidence claims ("" when unknown).
    pub tee: String,
    /// The evidence's measurement, if it verified.
    pub measurement: Option<String>,
    /// SHA-256 of the evidence presented, hex ("" when none).
    pub evidence_sha256: String,
    /// The bundle version the enclave reported.
    pub bundle_version: Option<u64>,
    /// Where the request came from.
    pub peer: String,
}

impl Record {
    /// A record of a request from `peer`, refused with `internal` until the
    /// broker decides otherwise.
    pub fn new(peer: &str) -> Self {
        Self {
            key_id: String::new(),
            outcome: Outcome::Refused,
            code: "internal".into(),
            reason: String::new(),
            tee: String::new(),
            measurement: None,
            evidence_sha256: String::new(),
            bundle_version: None,
            peer: peer.to_owned(),
        }
    }
}

struct Tail {
    file: File,
    len: u64,
    next_seq: u64,
    prev: [u8; 32],
}

/// An append-only, fsynced, hash-chained log file.
pub struct ReleaseLog {
    path: PathBuf,
    tail: Mutex<Tail>,
}

impl core::fmt::Debug for ReleaseLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReleaseLog")
            .field("path", &self.path)
            .finish()
    }
}

impl ReleaseLog {
    /// Opens the log, checking the chain of what is there. A last line cut
    /// short by a crash (written, never fsynced, so never answered) is
    /// truncated away.
    pub fn open(path: &Path) -> Result<Self, VaultError> {
        let store_error = |detail: String| VaultError::Store {
            path: path.display().to_string(),
            detail,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| store_error(format!("cannot open the release log: {e}")))?;
        let chain = read_chain(path)?;
        if chain.torn {
            tracing::warn!(log = %path.display(), valid_bytes = chain.valid_len, "release log ends in a torn line; truncating it");
            file.set_len(chain.valid_len)?;
            file.sync_all()?;
        }
        let entries = &chain.entries;
        let (next_seq, prev) = match entries.last() {
            Some((entry, hash)) => (entry.seq + 1, *hash),
            None => (0, [0u8; 32]),
        };
        Ok(Self {
            path: path.to_path_buf(),
            tail: Mutex::new(Tail {
                file,
                len: chain.valid_len,
                next_seq,
                prev,
            }),
        })
    }

    /// Appends a record and makes it durable.
    pub fn append(&self, record: Record, time: String) -> Result<LogEntry, VaultError> {
        let mut tail = self
            .tail
            .lock()
            .map_err(|_| VaultError::Crypto("release log lock poisoned"))?;
        let entry = LogEntry {
            seq: tail.next_seq,
            time,
            prev: hex::encode(tail.prev),
            record,
        };
        let line = serde_json::to_string(&entry).map_err(|e| VaultError::Store {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        let bytes = format!("{line}\n");
        if let Err(e) = tail
            .file
            .write_all(bytes.as_bytes())
            .and_then(|()| tail.file.sync_data())
        {
            // Take back whatever part of the line reached the file, so the
            // next record starts on a clean line; the caller refuses.
            let _ = tail.file.set_len(tail.len);
            return Err(e.into());
        }
        tail.len += bytes.len() as u64;
        tail.next_seq += 1;
        tail.prev = Sha256::digest(line.as_bytes()).into();
        Ok(entry)
    }
}

/// A log as read back.
#[derive(Debug)]
pub struct Chain {
    /// Each entry with the SHA-256 of its line.
    pub entries: Vec<(LogEntry, [u8; 32])>,
    /// Bytes up to the end of the last complete line.
    pub valid_len: u64,
    /// Whether bytes without a final newline follow.
    pub torn: bool,
}

/// Reads a log and checks its chain.
pub fn read_chain(path: &Path) -> Result<Chain, VaultError> {
    let bad = |detail: String| VaultError::Store {
        path: path.display().to_string(),
        detail,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chain {
                entries: Vec::new(),
                valid_len: 0,
                torn: false,
            })
        }
        Err(e) => return Err(bad(format!("cannot read: {e}"))),
    };
    let mut entries: Vec<(LogEntry, [u8; 32])> = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut prev = [0u8; 32];
    let mut torn = false;
    let mut valid_len = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let Some(text) = line.strip_suffix('\n') else {
            torn = true;
            break;
        };
        let entry: LogEntry = serde_json::from_str(text)
            .map_err(|e| bad(format!("line {}: not a log entry: {e}", entries.len() + 1)))?;
        let expected_seq = entries.last().map_or(0, |(e, _)| e.seq + 1);
        if entry.seq != expected_seq || entry.prev != hex::encode(prev) {
            return Err(bad(format!(
                "entry {} breaks the chain (expected seq {expected_seq} after {}): a line was removed, reordered or edited",
                entry.seq,
                hex::encode(prev)
            )));
        }
        prev = Sha256::digest(text.as_bytes()).into();
        valid_len += line.len() as u64;
        entries.push((entry, prev));
    }
    Ok(Chain {
        entries,
        valid_len,
        torn,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chain_survives_reopen_and_catches_edits_and_torn_tails() {
        let dir = std::env::temp_dir().join(format!("cloister-kbslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("releases.log");
        let log = ReleaseLog::open(&path).unwrap();
        let refused = Record {
            key_id: "k".into(),
            code: "revoked".into(),
            reason: "key k was revoked".into(),
            ..Record::new("test")
        };
        log.append(refused.clone(), "t0".into()).unwrap();
        let released = Record {
            outcome: Outcome::Released,
            code: "released".into(),
            ..refused.clone()
        };
        log.append(released, "t1".into()).unwrap();
        drop(log);

        // A crash mid-line: truncated, and the chain goes on.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"ti").unwrap();
        drop(f);
        let log = ReleaseLog::open(&path).unwrap();
        let third = log.append(refused, "t2".into()).unwrap();
        assert_eq!(third.seq, 2);
        let chain = read_chain(&path).unwrap();
        assert!(!chain.torn);
        assert_eq!(chain.entries.len(), 3);
        assert_eq!(chain.entries[1].0.record.outcome, Outcome::Released);

        // Removing the middle line breaks the chain.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(matches!(read_chain(&path), Err(VaultError::Store { .. })));
        assert!(matches!(
            ReleaseLog::open(&path),
            Err(VaultError::Store { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
