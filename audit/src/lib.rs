//! Cloister's audit log: one record per query, denial, key release, policy
//! load, start and stop, written by the enclave to storage the host keeps,
//! so that auditors can later prove the log is complete and unaltered and
//! read what only they may read.
//!
//! - [`record`]: the record format (one JSON line each);
//! - [`seal`]: sensitive fields encrypted to the auditor's key, keyed
//!   pseudonyms and digests;
//! - [`merkle`]: the RFC 6962 tree, inclusion and consistency proofs;
//! - [`checkpoint`]: signed tree heads in the C2SP tlog-checkpoint format;
//! - [`log`]: recovery and group-committed durable appends (enclave side);
//! - [`segment`]: the files on disk;
//! - [`verify`]: the auditor's verification;
//! - [`view`]: decrypting, filtering and proving records;
//! - [`fhir`]: FHIR R4 AuditEvent export.

pub mod checkpoint;
pub mod error;
pub mod fhir;
pub mod log;
pub mod merkle;
pub mod record;
pub mod seal;
pub mod segment;
pub mod verify;
pub mod view;

pub use error::AuditError;
pub use log::{AuditLog, AuditSigner, LogConfig, Receipt, Recovered, StartInfo};
pub use record::{Event, Record, SealedFields};
pub use seal::{AuditorKey, AuditorPublicKey};
