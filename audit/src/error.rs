//! Why the log could not be written or read.

use crate::verify::Finding;

/// An audit log failure. On the enclave's side every one of these withholds
/// the answer it was recording.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file could not be read, written or synced.
    #[error("audit log I/O on {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The log on disk fails its own checks; nothing is appended to it.
    #[error("the audit log is damaged: {0}")]
    Damaged(Box<Finding>),
    /// Another process holds the log.
    #[error("the audit log in {0} is in use by another process")]
    Locked(String),
    /// A key is missing or malformed, or a cryptographic operation failed.
    #[error("audit key: {0}")]
    Key(String),
    /// A record's sealed fields do not decrypt: altered, or moved from
    /// another record.
    #[error("record {seq}: its sealed fields do not decrypt under the auditor key (altered, moved, or sealed to another auditor)")]
    SealedFieldsAltered {
        /// The record.
        seq: u64,
    },
    /// An earlier write or sync failed; after a failed fsync the file's
    /// state is unknown, so the log accepts nothing more until the enclave
    /// restarts and recovers it.
    #[error("the audit log stopped accepting records after a durability failure: {0}")]
    Poisoned(String),
    /// The writer has stopped.
    #[error("the audit log is closed")]
    Closed,
    /// A proof was asked for something the log cannot prove.
    #[error("{0}")]
    CannotProve(String),
    /// A record could not be encoded.
    #[error("audit record encoding: {0}")]
    Encoding(String),
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
