//! Signed tree heads in the C2SP `tlog-checkpoint` format, as C2SP
//! `signed-note`s with Ed25519 signatures, so existing witnesses and
//! verifiers (Go's `sumdb/note`, sigsum, transparency-dev) can read them.
//!
//! ```text
//! cloister.audit/3f1c…            origin: the log's name
//! 42                              tree size
//! qfXk…=                          base64 of the RFC 6962 root
//!                                 blank line
//! — cloister.audit/3f1c… AbCd…    em dash, key name, base64(key ID || signature)
//! ```
//!
//! The key ID is the first four bytes of SHA-256(name || 0x0A || 0x01 ||
//! public key) (signed-note's Ed25519 signature type 0x01), and the
//! signature covers the note text up to and including its final newline.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Notes larger than this are refused unread.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines a note may carry (Go's `note.Open` has the same cap).
const MAX_SIGNATURES: usize = 100;
/// signed-note's signature type byte for Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// U+2014 EM DASH and a space: how every signature line starts.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not a well-formed signed note or checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature by the given key.
    #[error("checkpoint carries no signature by key {name} ({key_id})")]
    NotSignedBy {
        /// Key name.
        name: String,
        /// Key ID, hex.
        key_id: String,
    },
    /// A signature by the key that does not verify.
    #[error("checkpoint signature by key {name} ({key_id}) does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key ID, hex.
        key_id: String,
    },
}

/// The C2SP signed-note key ID of an Ed25519 key.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let digest = h.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    id
}

/// A tree head: the log's name, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of records.
    pub size: u64,
    /// RFC 6962 root over them.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: three lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// The signed note, signed with `key` under the name `origin`.
    pub fn sign(&self, key: &Ed25519KeyPair) -> String {
        let body = self.body();
        let signature = key.sign(body.as_bytes());
        let public: [u8; 32] = key.public_key().as_ref().try_into().unwrap_or([0; 32]);
        let id = key_id(&self.origin, &public);
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&id);
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.origin,
            BASE64.encode(blob)
        )
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID the line claims.
    pub key_id: [u8; 4],
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// A parsed, not yet verified, signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head it states.
    pub checkpoint: Checkpoint,
    /// Extension lines after the root, as written.
    pub extensions: Vec<String>,
    /// Its signature lines.
    pub signatures: Vec<NoteSignature>,
    body: String,
}

impl SignedCheckpoint {
    /// Parses a signed note holding a checkpoint. Nothing is trusted yet:
    /// call [`verify`](Self::verify) with the key you expect.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_owned());
        if text.len() > MAX_NOTE_BYTES {
            return Err(bad("larger than 64 KiB"));
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(bad("contains control characters"));
        }
        let split = text
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let body = text.get(..=split).unwrap_or_default();
        let signature_block = text.get(split + 2..).unwrap_or_default();
        if !signature_block.ends_with('\n') {
            return Err(bad("the last signature line does not end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in signature_block.lines() {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line has no signature"))?;
            if name.is_empty() || name.contains('+') {
                return Err(bad("a signature line has an invalid key name"));
            }
            let blob = BASE64
                .decode(blob)
                .map_err(|_| bad("a signature is not base64"))?;
            let (id, signature) = blob
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("a signature is shorter than its key ID"))?;
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: *id,
                signature: signature.to_vec(),
            });
        }
        if signatures.is_empty() || signatures.len() > MAX_SIGNATURES {
            return Err(bad("a note needs 1 to 100 signatures"));
        }
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("no size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("the size line is not a decimal number"));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| bad("the size does not fit 64 bits"))?;
        let root_line = lines.next().ok_or_else(|| bad("no root line"))?;
        let root: Hash = BASE64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("an empty extension line"));
        }
        Ok(Self {
            checkpoint: Checkpoint {
                origin: origin.to_owned(),
                size,
                root,
            },
            extensions,
            signatures,
            body: body.to_owned(),
        })
    }

    /// Checks the signature by the Ed25519 key `public_key` named `name`.
    /// Signatures by other keys are ignored, as signed-note requires.
    pub fn verify(&self, name: &str, public_key: &[u8; 32]) -> Result<(), CheckpointError> {
        let id = key_id(name, public_key);
        let describe = || (name.to_owned(), hex::encode(id));
        let line = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.key_id == id)
            .ok_or_else(|| {
                let (name, key_id) = describe();
                CheckpointError::NotSignedBy { name, key_id }
            })?;
        let bad = || {
            let (name, key_id) = describe();
            CheckpointError::BadSignature { name, key_id }
        };
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(self.body.as_bytes(), &line.signature)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn public_of(seed: u8) -> [u8; 32] {
        key(seed).public_key().as_ref().try_into().unwrap()
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_only_its_key_verifies_it() {
        let checkpoint = Checkpoint {
            origin: "cloister.audit/test".into(),
            size: 42,
            root: [7; 32],
        };
        let note = checkpoint.sign(&key(1));
        assert!(note.starts_with("cloister.audit/test\n42\nBwcH"));
        assert!(note.contains("\n\n\u{2014} cloister.audit/test "));
        let parsed = SignedCheckpoint::parse(&note).unwrap();
        assert_eq!(parsed.checkpoint, checkpoint);
        let public = public_of(1);
        parsed.verify("cloister.audit/test", &public).unwrap();
        let other = public_of(2);
        assert!(matches!(
            parsed.verify("cloister.audit/test", &other),
            Err(CheckpointError::NotSignedBy { .. })
        ));
        // The same key ID, a changed body.
        let forged = note.replacen("\n42\n", "\n43\n", 1);
        let forged = SignedCheckpoint::parse(&forged).unwrap();
        assert!(matches!(
            forged.verify("cloister.audit/test", &public),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        let good = Checkpoint {
            origin: "o".into(),
            size: 1,
            root: [0; 32],
        }
        .sign(&key(3));
        for (bad, what) in [
            (good.replace("\n\n", "\n"), "blank line"),
            (good.replace('\u{2014}', "-"), "em dash"),
            (good.replacen("\n1\n", "\n01\n", 1), "decimal"),
            (good.replacen("\n1\n", "\n-1\n", 1), "decimal"),
            (good.replacen("AAAA", "!!!!", 1), "32 bytes"),
            (good.trim_end().to_owned(), "newline"),
            (format!("\x07{good}"), "control"),
            ("x".repeat(MAX_NOTE_BYTES + 1), "64 KiB"),
        ] {
            match SignedCheckpoint::parse(&bad) {
                Err(CheckpointError::Malformed(m)) => assert!(m.contains(what), "{m} vs {what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
