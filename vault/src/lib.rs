//! Sealed bundles: how model weights and patient data travel and rest on
//! hosts that must never read them.
//!
//! A bundle is a 224-byte header followed by AES-256-GCM chunks in the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár, "Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO
//! 2015): chunk *i* is sealed under nonce `prefix ‖ i ‖ last`, so chunks
//! cannot be reordered, dropped from the end, or moved between bundles. Both
//! directions stream in bounded memory (one chunk), so bundles larger than RAM
//! seal and unseal.
//!
//! Header, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `CLVAULT\0` |
//! | 8 | 2 | format version = 1 |
//! | 10 | 1 | content kind (1 model, 2 data, 3 other) |
//! | 11 | 1 | reserved, 0 |
//! | 12 | 1 | log2 of the chunk size (12 to 24: 4 KiB to 16 MiB) |
//! | 13 | 1 | key ID length (1 to 64) |
//! | 14 | 2 | reserved, 0 |
//! | 16 | 8 | bundle version (rollback protection: release policies set a minimum) |
//! | 24 | 8 | plaintext length |
//! | 32 | 32 | plaintext MAC: HMAC-SHA-256 of the plaintext under a derived key (a bare hash would let the host confirm a guess) |
//! | 64 | 32 | salt (random per bundle) |
//! | 96 | 32 | key check (commits to the key: a wrong key is told apart from tampering) |
//! | 128 | 64 | key ID, zero-padded |
//! | 192 | 32 | header MAC: HMAC-SHA-256 over bytes `[0, 192)` |
//!
//! Keys: HKDF-SHA-256 with the salt extracts from the 256-bit data key, then
//! expands the AES key, the 7-byte nonce prefix, the key check, the header
//! MAC key and the plaintext MAC key under distinct labels. Each chunk's associated data is the whole
//! header, so a modified header breaks every chunk as well as the MAC.

//!
//! Around the format: [`wrap`] seals a data key to an attested enclave's
//! ephemeral key (HPKE), and [`kbs`] is the key broker that decides who gets
//! one.
//!
//! ```
//! use cloister_vault::{seal_to_vec, unseal_to_vec, ContentKind, DataKey, SealParams};
//!
//! let key = DataKey::generate()?;
//! let params = SealParams {
//!     key_id: "notes-2026".into(),
//!     kind: ContentKind::Data,
//!     bundle_version: 3,
//!     chunk_log2: 12,
//! };
//! let (header, sealed) = seal_to_vec(b"patient notes", &key, &params)?;
//! assert_eq!(header.bundle_version, 3);
//! let (_, plaintext) = unseal_to_vec(&sealed, &key, true)?;
//! assert_eq!(plaintext, b"patient notes");
//! # Ok::<(), cloister_vault::VaultError>(())
//! ```

mod bundle;
mod error;
pub mod kbs;
pub mod wrap;

pub use bundle::{
    seal, seal_to_vec, unseal, unseal_in_place, unseal_to_vec, BundleHeader, ContentKind, DataKey,
    SealParams, Unsealed, DEFAULT_CHUNK_LOG2, HEADER_LEN, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2,
};
pub use error::VaultError;
