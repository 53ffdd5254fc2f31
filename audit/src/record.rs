//! The record format: one JSON object per line of a segment file.
//!
//! A record's Merkle leaf is its line's exact bytes (without the newline),
//! so verification never depends on re-serialising JSON. Every record
//! names the one before it (`prev`, the previous leaf hash: the hash
//! chain), its position (`seq`), and the enclave that wrote it (`enclave`,
//! the SHA-256 of the evidence in that enclave's start record).
//!
//! Fields the host may read are in clear: who asked (principal, role,
//! purpose of use), the task, the policy decisions as module and reason
//! codes, digests, outcome, timing. What it must not read — the patient
//! reference, break-glass justifications, module reason messages, and the
//! prompt and answer where the deployment keeps them — is in `sealed`,
//! encrypted to the auditor (see [`crate::seal`]).

use cloister_attestation::ratls::AttestationDocument;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::merkle::Hash;

/// The longest line a reader accepts; longer is damage, not a record.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// A 32-byte hash, written as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex32(pub [u8; 32]);

impl Serialize for Hex32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Self(out))
    }
}

impl std::fmt::Display for Hex32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl From<Hash> for Hex32 {
    fn from(h: Hash) -> Self {
        Self(h)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Leaf hash of record `seq - 1` (zeros for record 0).
    pub prev: Hex32,
    /// When the enclave wrote it (the enclave's clock; not a trusted time).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// SHA-256 of the evidence in the writing enclave's start record.
    pub enclave: Hex32,
    /// What happened.
    pub event: Event,
}

/// What a record records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An enclave started and took over the log: its attested audit key.
    Start(Box<Start>),
    /// The policy bundle it loaded.
    PolicyLoad(PolicyLoad),
    /// A key the broker released to it.
    KeyRelease(KeyRelease),
    /// A chat query, answered or denied.
    Query(Box<Query>),
    /// The end of a query streamed as it was generated.
    StreamEnd(StreamEnd),
    /// The signed tree head over every record before this one, written in
    /// the same write and sync as the records it follows.
    Checkpoint(CheckpointRecord),
    /// A torn or unacknowledged tail found and cut off at start.
    Truncation(Truncation),
    /// An orderly stop.
    Stop(Stop),
}

impl Event {
    /// The `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start(_) => "start",
            Self::PolicyLoad(_) => "policy_load",
            Self::KeyRelease(_) => "key_release",
            Self::Query(_) => "query",
            Self::StreamEnd(_) => "stream_end",
            Self::Checkpoint(_) => "checkpoint",
            Self::Truncation(_) => "truncation",
            Self::Stop(_) => "stop",
        }
    }
}

/// An enclave's first record: the key that signs its checkpoints, bound
/// into fresh evidence whose nonce is this record's place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The log's name, the checkpoints' origin line.
    pub origin: String,
    /// The Ed25519 key this enclave signs checkpoints with.
    pub audit_key: Hex32,
    /// The enclave's RA-TLS SubjectPublicKeyInfo, hex (the evidence binds it).
    #[serde(with = "hex::serde")]
    pub tls_spki: Vec<u8>,
    /// Fresh evidence; `bindings.audit_key` is `audit_key` and the nonce is
    /// [`start_nonce`] of this record.
    pub evidence: AttestationDocument,
    /// The auditor key the sealed fields are encrypted to.
    pub auditor_key: Hex32,
    /// HPKE encapsulated key of this epoch, hex.
    #[serde(with = "hex::serde")]
    pub enc: Vec<u8>,
    /// Whether this enclave keeps prompt and answer text (sealed).
    pub keeps_text: bool,
    /// The enclave software version.
    pub software: String,
}

/// The nonce a start record's evidence must answer: its own place in its
/// log, so it cannot be spliced into another log or position.
pub fn start_nonce(origin: &str, seq: u64, prev: &Hex32) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"cloister/audit/v1 start\0");
    h.update(origin.as_bytes());
    h.update([0]);
    h.update(seq.to_be_bytes());
    h.update(prev.0);
    h.finalize().into()
}

/// The identity records carry: SHA-256 of the start record's evidence.
pub fn enclave_id(evidence: &AttestationDocument) -> Hex32 {
    use sha2::{Digest as _, Sha256};
    Hex32(Sha256::digest(&evidence.evidence).into())
}

/// The policy bundle an enclave runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLoad {
    /// Bundle digest.
    pub bundle: Hex32,
    /// Bundle name.
    pub name: String,
    /// Module names, in order.
    pub modules: Vec<String>,
}

/// A sealed bundle whose key the broker released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRelease {
    /// The bundle's name in the configuration.
    pub bundle: String,
    /// The released key.
    pub key_id: String,
    /// What the bundle holds.
    pub kind: String,
    /// The bundle's version.
    pub version: u64,
    /// The broker that released it.
    pub broker: String,
}

/// What became of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The answer was released.
    Answered,
    /// Admitted and streamed as generated; a `stream_end` follows.
    Streaming,
    /// A policy module denied it.
    Denied,
    /// No valid identity token.
    Unauthenticated,
    /// A malformed or out-of-limits request (the default until a query
    /// gets further).
    #[default]
    Rejected,
    /// Inference failed.
    Failed,
}

impl Outcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Streaming => "streaming",
            Self::Denied => "denied",
            Self::Unauthenticated => "unauthenticated",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// One module's decision, in clear: codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDecision {
    /// Module name.
    pub module: String,
    /// allow, deny, redact or require.
    pub effect: String,
    /// Its reason codes.
    pub reasons: Vec<String>,
}

/// Both gates' decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecisions {
    /// Bundle digest.
    pub bundle: Hex32,
    /// Input gate, each module that ran.
    pub input: Vec<ModuleDecision>,
    /// Output gate, if it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<ModuleDecision>>,
}

/// A chat query.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The response id the client saw (`chatcmpl-…`), empty when none was made.
    pub request_id: String,
    /// Token subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Token issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Purpose of use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// Keyed pseudonym of the patient reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Whether break-glass access was claimed.
    #[serde(default)]
    pub break_glass: bool,
    /// Policy decisions, when the gates ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDecisions>,
    /// The model asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Keyed digest of the prompt as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_digest: Option<String>,
    /// Keyed digest of the answer as released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_digest: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// The error or denial code, when not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// Prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    /// Completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Time from request to record, microseconds.
    pub latency_us: u64,
    /// Encrypted [`SealedFields`], base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// The end of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEnd {
    /// The `query` record it ends.
    pub query: u64,
    /// Keyed digest of the text streamed.
    pub answer_digest: String,
    /// Completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Whether generation finished (false: failed or the client left).
    pub completed: bool,
    /// Encrypted [`SealedFields`] (the answer, when kept), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// A checkpoint in the log: the C2SP signed note over records `0..seq`,
/// signed by the writing enclave's audit key. Every commit ends with one,
/// so a record is acknowledged only once a signed checkpoint covering it
/// is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRecord {
    /// The signed note.
    pub note: String,
}

/// A tail cut off when the log was opened: bytes a crash tore, and complete
/// records after the last checkpoint (never acknowledged, or not written by
/// the enclave at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncation {
    /// The segment file the cut starts in.
    pub segment: String,
    /// Complete records removed (they followed the last checkpoint).
    pub dropped_records: u64,
    /// Bytes removed in all.
    pub dropped_bytes: u64,
    /// SHA-256 of the bytes removed.
    pub dropped_sha256: Hex32,
}

/// An orderly stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Why.
    pub reason: String,
}

/// What only the auditor may read of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedFields {
    /// The patient reference as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The break-glass justification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_reason: Option<String>,
    /// Each module reason's message, `module: code: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The prompt messages as received (when the deployment keeps text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<serde_json::Value>,
    /// The answer as released (when the deployment keeps text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl SealedFields {
    /// Whether there is anything to seal.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
