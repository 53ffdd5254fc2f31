//! The key release protocol's messages, shared by the broker and the
//! enclave. JSON over HTTPS; hex for bytes.
//!
//! ```text
//! enclave                                          broker
//!   POST /kbs/v1/challenge {key_id}            ──►
//!                                              ◄──  {session, nonce, expires_in_s}
//!   fresh X25519 key pair (HPKE recipient)
//!   evidence with report_data = release_binding(nonce, key_id, public key, commitments)
//!   POST /kbs/v1/attest {session, evidence, public_key, bundle_header}
//!                                              ──►  one use of the session; verify, appraise,
//!                                                   release policy (on the header, authenticated
//!                                                   under the key); log; wrap to public key
//!                                              ◄──  {key_id, min_bundle_version, wrapped}
//!                                                   or {error: {code, message}}
//! ```

use cloister_attestation::ratls::{binding, AttestationDocument, Bindings};
use cloister_attestation::types::ReportData;
use serde::{Deserialize, Serialize};

use crate::wrap::WrappedKey;

/// Where the enclave asks for a challenge.
pub const CHALLENGE_PATH: &str = "/kbs/v1/challenge";
/// Where the enclave answers it with evidence.
pub const ATTEST_PATH: &str = "/kbs/v1/attest";
/// Length of the broker's nonce.
pub const NONCE_LEN: usize = 32;
/// Largest request body the broker reads (evidence with a VCEK chain or TDX
/// collateral is well under this).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Step 1: which key the enclave wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The key ID from the sealed bundle's header.
    pub key_id: String,
}

/// Step 2: the broker's challenge, good for one attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Names this challenge in the attestation.
    pub session: String,
    /// What the evidence must bind, hex.
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    /// Seconds the challenge stays valid.
    pub expires_in_s: u64,
}

/// Step 3: evidence answering the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The challenge answered.
    pub session: String,
    /// Evidence, its endorsements (optional: the broker has a cache), the
    /// enclave's commitments and the nonce it answers.
    pub evidence: AttestationDocument,
    /// The enclave's ephemeral X25519 public key, hex.
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// The header of the sealed bundle the host gave the enclave, hex. The
    /// broker holds the key, so it authenticates the header and judges the
    /// bundle version it really carries (the enclave checks again after
    /// unsealing, on the header that decrypted).
    #[serde(with = "hex::serde")]
    pub bundle_header: Vec<u8>,
}

/// Step 4: the key, wrapped to the enclave's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The key released.
    pub key_id: String,
    /// The release policy's minimum bundle version; bound into the wrapping,
    /// and enforced by the enclave on the bundle it unseals.
    pub min_bundle_version: u64,
    /// The data key, HPKE-sealed.
    pub wrapped: WrappedKey,
}

/// Why the broker refused, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The request is not a valid protocol message.
    Malformed,
    /// The session is unknown, expired or already used: a replay, or too slow.
    UnknownSession,
    /// The broker holds no key with this ID.
    UnknownKey,
    /// The key has been revoked.
    Revoked,
    /// The evidence does not bind this challenge's nonce and the enclave key.
    BindingMismatch,
    /// The evidence did not verify or did not satisfy the appraisal policy.
    AttestationRejected,
    /// The enclave runs a policy bundle the release policy does not allow.
    PolicyDigestNotAllowed,
    /// The bundle header does not authenticate under this key: modified by
    /// the host, or sealed under another key.
    BundleHeaderInvalid,
    /// The bundle is older than the release policy's minimum (rollback).
    BundleVersionTooLow,
    /// Too many challenges outstanding.
    Busy,
    /// The broker failed (its log could not be written, for instance).
    Internal,
}

impl RefusalCode {
    /// The code as it appears on the wire and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownSession => "unknown_session",
            Self::UnknownKey => "unknown_key",
            Self::Revoked => "revoked",
            Self::BindingMismatch => "binding_mismatch",
            Self::AttestationRejected => "attestation_rejected",
            Self::PolicyDigestNotAllowed => "policy_digest_not_allowed",
            Self::BundleHeaderInvalid => "bundle_header_invalid",
            Self::BundleVersionTooLow => "bundle_version_too_low",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }
}

/// A refusal body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalBody {
    /// The refusal.
    pub error: Refusal,
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Stable code.
    pub code: RefusalCode,
    /// Human-readable reason.
    pub message: String,
}

/// report_data of evidence for a key release: it binds the broker's nonce,
/// the key asked for, the enclave's ephemeral public key and the enclave's
/// commitments (policy bundle digest, audit key), so evidence made for one
/// release, or for RA-TLS, never serves another.
pub fn release_binding(
    nonce: &[u8],
    key_id: &str,
    public_key: &[u8],
    bindings: &Bindings,
) -> ReportData {
    binding(
        b"cloister/kbs/v1\0",
        &[
            nonce,
            key_id.as_bytes(),
            public_key,
            &bindings.policy_digest,
            &bindings.audit_key,
        ],
    )
}
