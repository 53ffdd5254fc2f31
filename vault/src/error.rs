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
    /// Every chunk authenticated but the plaintext digest differs (only
    /// possible if the sealer itself was faulty).
    #[error("plaintext SHA-256 does not match the header")]
    DigestMismatch,
    /// Parameters that cannot make a valid bundle.
    #[error("invalid sealing parameters: {0}")]
    InvalidParams(String),
    /// The cryptographic library failed (no randomness, bad key length).
    #[error("cryptography failed: {0}")]
    Crypto(&'static str),
}
