//! What can go wrong with a bundle. Each failure has its own variant so an
//! operator can tell a wrong key from tampering from truncation; none says
//! anything about the plaintext.

/// Why a bundle could not be sealed or unsealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not a bundle, or a header this version cannot read.
    #[error("not a sealed bundle: {0}")]
    Malformed(String),
    /// A format version this build does not know.
    #[error("bundle format version {0} is not supported (supported: 1)")]
    UnsupportedVersion(u16),
    /// The key is not the one the bundle was sealed with.
    #[error("wrong key: this bundle was sealed under another key (key ID {key_id:?})")]
    WrongKey {
        /// The key ID the header names.
        key_id: String,
    },
    /// The header was modified after sealing.
    #[error("bundle header was modified after sealing (header MAC does not verify)")]
    HeaderModified,
    /// A chunk does not authenticate: modified, reordered, or from another bundle.
    #[error("chunk {index} does not authenticate: the bundle was modified, reordered or spliced")]
    ChunkRejected {
        /// The chunk's position.
        index: u64,
    },
    /// The bundle ends before its last chunk.
    #[error("bundle is truncated: {found} of {expected} bytes of sealed content")]
    Truncated {
        /// Bytes of chunks (with tags) the header promises.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes follow the last chunk.
    #[error("bundle has data after its last chunk")]
    TrailingData,
    /// Every chunk authenticated but the plaintext MAC differs (only
    /// possible if the sealer itself was faulty).
    #[error("plaintext MAC does not match the header")]
    DigestMismatch,
    /// Parameters that cannot make a valid bundle.
    #[error("invalid sealing parameters: {0}")]
    InvalidParams(String),
    /// The cryptographic library failed (no randomness, bad key length).
    #[error("cryptography failed: {0}")]
    Crypto(&'static str),
    /// A wrapped key does not open with this enclave key and release
    /// context (one opaque variant: no oracle on which part was wrong).
    #[error("the wrapped key does not open for this enclave key and release")]
    UnwrapFailed,
    /// The key broker refused to release a key, with its reason.
    #[error("key broker refused key {key_id:?}: {message} ({code})")]
    Refused {
        /// The key asked for.
        key_id: String,
        /// The broker's refusal code (`attestation_rejected`, `bundle_version_too_low`, ...).
        code: String,
        /// The broker's reason.
        message: String,
    },
    /// The key broker could not be reached or spoke something else.
    #[error("key broker {address}: {detail}")]
    Broker {
        /// Where.
        address: String,
        /// What went wrong.
        detail: String,
    },
    /// A released key or bundle that the enclave must not use.
    #[error("{0}")]
    ReleaseViolation(String),
    /// The broker's key store is unusable (missing, modified, wrong master key).
    #[error("key store {path}: {detail}")]
    Store {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A release policy that cannot be used.
    #[error("release policy: {0}")]
    Policy(String),
}
