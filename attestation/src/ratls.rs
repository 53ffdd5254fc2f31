//! RA-TLS: TLS whose server certificate carries attestation evidence bound to
//! the certificate's own key, so that a client which verifies the evidence
//! knows the TLS peer *is* the attested enclave, with no CA in between.
//!
//! The enclave generates its key inside, asks its TEE for evidence whose
//! report_data is [`tls_binding`] of the key's SubjectPublicKeyInfo and of
//! what else it commits to ([`Bindings`]: the policy bundle digest and the
//! audit public key), and puts evidence and endorsements in a certificate
//! extension ([`EVIDENCE_EXTENSION_OID`]). A client's [`RaTlsVerifier`]
//! parses, verifies and appraises the evidence with the client's own policy,
//! recomputes the binding from the certificate it was actually shown, and
//! only then lets rustls check the handshake signature with that key. A relay
//! that substitutes its own certificate either has no evidence, or evidence
//! bound to another key; either way the handshake fails.
//!
//! Evidence in a certificate is as old as the certificate. To prove the
//! enclave is live *now*, a client sends a nonce and checks fresh evidence
//! bound by [`freshness_binding`] to that nonce and the same TLS key
//! ([`AttestationDocument::verify_fresh`]).
//!
//! Extension value (DER):
//! ```text
//! CloisterEvidence ::= SEQUENCE {
//!     version       INTEGER (1),
//!     evidence      OCTET STRING,                -- SNP report, TDX quote, or sim
//!     vek           [0] IMPLICIT OCTET STRING OPTIONAL,  -- SNP VCEK/VLEK, DER
//!     certChain     [1] IMPLICIT OCTET STRING OPTIONAL,  -- SNP ASK+ARK, PEM
//!     collateral    [2] IMPLICIT OCTET STRING OPTIONAL,  -- TDX collateral JSON
//!     policyDigest  OCTET STRING,                -- empty until policy bundles
//!     auditKey      OCTET STRING                 -- empty until the audit log
//! }
//! ```

use std::sync::{Arc, Mutex};

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use time::OffsetDateTime;

use crate::collect::{Collected, EvidenceSource};
use crate::evidence::{Appraisal, EndorsementInputs, Evidence, Tee};
use crate::policy::{AppraisalPolicy, Reference};
use crate::types::ReportData;

/// The certificate extension that carries Cloister evidence.
///
/// Under a private-enterprise arc. Cloister has not yet registered a Private
/// Enterprise Number with IANA; `99999` is a placeholder that a registered
/// number must replace before the first release (a wire-format change, which
/// is why the extension also carries a version).
pub const EVIDENCE_EXTENSION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1.1");
/// The same OID as arcs, for certificate generation.
pub const EVIDENCE_EXTENSION_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 99999, 1, 1];
/// The only extension version this crate writes and reads.
pub const EXTENSION_VERSION: u8 = 1;
/// Shortest nonce accepted for freshness (128 bits).
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce accepted for freshness.
pub const MAX_NONCE_LEN: usize = 64;

/// What an enclave commits to besides its TLS key. Both parts are bound into
/// the evidence, so a client that checks them knows which policy bundle gates
/// its queries and which key signs the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    /// SHA-256 of the policy bundle the enclave runs (empty until it has one).
    #[serde(with = "hex::serde")]
    pub policy_digest: Vec<u8>,
    /// The audit log's public signing key (empty until it has one).
    #[serde(with = "hex::serde")]
    pub audit_key: Vec<u8>,
}

/// Why an RA-TLS certificate or attestation document was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RaTlsError {
    /// The certificate cannot be decoded.
    #[error("server certificate cannot be decoded: {0}")]
    MalformedCertificate(String),
    /// The certificate has no Cloister evidence: not an enclave, or a relay
    /// presenting its own certificate.
    #[error("server certificate carries no Cloister evidence extension ({EVIDENCE_EXTENSION_OID}): it is not an attested enclave")]
    NoEvidence,
    /// The extension (or attestation document) cannot be decoded.
    #[error("attestation evidence container cannot be decoded: {0}")]
    MalformedEvidence(String),
    /// An extension version this verifier does not know.
    #[error("evidence extension version {0} is not supported (supported: 1)")]
    UnsupportedVersion(u64),
    /// The evidence failed verification or appraisal.
    #[error("{}attestation rejected: {source}", if *.tee == Some(Tee::Sim) { "INSECURE simulated " } else { "" })]
    Rejected {
        /// Which TEE, if known.
        tee: Option<Tee>,
        /// Why.
        source: crate::error::Error,
    },
    /// The evidence verified but binds another key (or other commitments):
    /// it was copied from another enclave or another instance.
    #[error("evidence is bound to a different TLS key or commitments: report_data is {found}, this certificate requires {expected}")]
    KeyBindingMismatch {
        /// report_data this certificate requires.
        expected: String,
        /// report_data the evidence carries.
        found: String,
    },
    /// Evidence does not bind what the verifier asked it to bind (a key
    /// release's nonce and key, for instance): made for another request.
    #[error("evidence does not bind this request: report_data is {found}, expected {expected}")]
    BindingMismatch {
        /// report_data the request requires.
        expected: String,
        /// report_data the evidence carries.
        found: String,
    },
    /// The fresh evidence does not bind the nonce the client sent.
    #[error("fresh evidence does not bind our nonce {nonce}: stale or replayed (report_data {found}, expected {expected})")]
    StaleNonce {
        /// The client's nonce.
        nonce: String,
        /// Expected report_data.
        expected: String,
        /// Found report_data.
        found: String,
    },
    /// The nonce is too short or too long.
    #[error("nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes, got {0}")]
    BadNonce(usize),
    /// The peer's commitments are not the ones the client requires.
    #[error("enclave commits to {what} {found}, but {expected} is required")]
    UnexpectedCommitment {
        /// "policy bundle" or "audit key".
        what: &'static str,
        /// Required, hex.
        expected: String,
        /// Found, hex.
        found: String,
    },
    /// Evidence could not be collected (enclave side).
    #[error("cannot collect evidence: {0}")]
    Collect(String),
    /// A certificate or TLS configuration could not be made (enclave side).
    #[error("cannot build the RA-TLS identity: {0}")]
    Identity(String),
    /// The handshake ended without a verified peer.
    #[error("TLS handshake did not reach certificate verification: {0}")]
    Handshake(String),
}

/// Domain-separated, length-prefixed SHA-512 of the parts: no two different
/// inputs can collide by shifting bytes between parts. Every report_data
/// Cloister asks for (RA-TLS, freshness, key release) is one of these, each
/// under its own label, so evidence made for one purpose never serves another.
pub fn binding(label: &[u8], parts: &[&[u8]]) -> ReportData {
    let mut h = Sha512::new();
    h.update(label);
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    ReportData(h.finalize().into())
}

/// report_data for the evidence in an RA-TLS certificate.
pub fn tls_binding(spki_der: &[u8], bindings: &Bindings) -> ReportData {
    binding(
        b"cloister/ra-tls/v1\0",
        &[spki_der, &bindings.policy_digest, &bindings.audit_key],
    )
}

/// report_data for fresh evidence answering a client's nonce.
pub fn freshness_binding(spki_der: &[u8], bindings: &Bindings, nonce: &[u8]) -> ReportData {
    binding(
        b"cloister/freshness/v1\0",
        &[
            spki_der,
            &bindings.policy_digest,
            &bindings.audit_key,
            nonce,
        ],
    )
}

/// The DER extension value.
#[derive(Debug, Clone, PartialEq, Eq, der::Sequence)]
struct EvidenceExtension {
    version: u64,
    evidence: OctetString,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    vek: Option<OctetString>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    cert_chain: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    collateral: Option<OctetString>,
    policy_digest: OctetString,
    audit_key: OctetString,
}

fn octets(bytes: &[u8]) -> Result<OctetString, RaTlsError> {
    OctetString::new(bytes).map_err(|e| RaTlsError::Identity(e.to_string()))
}

/// What an RA-TLS certificate says, decoded but not verified. The host uses
/// it to *display* what an enclave claims; only [`verify_certificate`]
/// makes it trustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateEvidence {
    /// The certificate's SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// Evidence and endorsements.
    pub collected: Collected,
    /// The enclave's other commitments.
    pub bindings: Bindings,
}

impl CertificateEvidence {
    /// Decodes an RA-TLS certificate.
    pub fn from_certificate(cert_der: &[u8]) -> Result<Self, RaTlsError> {
        let cert = x509_cert::Certificate::from_der(cert_der)
            .map_err(|e| RaTlsError::MalformedCertificate(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| RaTlsError::MalformedCertificate(e.to_string()))?;
        let mut found = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == EVIDENCE_EXTENSION_OID);
        let ext = found.next().ok_or(RaTlsError::NoEvidence)?;
        if found.next().is_some() {
            return Err(RaTlsError::MalformedEvidence(
                "the evidence extension appears twice".into(),
            ));
        }
        let value = EvidenceExtension::from_der(ext.extn_value.as_bytes())
            .map_err(|e| RaTlsError::MalformedEvidence(e.to_string()))?;
        if value.version != u64::from(EXTENSION_VERSION) {
            return Err(RaTlsError::UnsupportedVersion(value.version));
        }
        let evidence = value.evidence.as_bytes().to_vec();
        let tee = Evidence::detect(&evidence)
            .ok_or_else(|| RaTlsError::MalformedEvidence("evidence of an unknown kind".into()))?;
        Ok(Self {
            spki,
            collected: Collected {
                tee,
                evidence,
                endorsements: crate::collect::Endorsements {
                    vek: value.vek.map(OctetString::into_bytes),
                    cert_chain: value.cert_chain.map(OctetString::into_bytes),
                    collateral: value.collateral.map(OctetString::into_bytes),
                },
            },
            bindings: Bindings {
                policy_digest: value.policy_digest.into_bytes(),
                audit_key: value.audit_key.into_bytes(),
            },
        })
    }
}

/// A peer whose RA-TLS certificate verified and satisfied the client policy.
#[derive(Debug, Clone)]
pub struct AttestedPeer {
    /// The accepted appraisal (what was trusted: TEE, measurement, TCB).
    pub appraisal: Appraisal,
    /// The peer's TLS SubjectPublicKeyInfo, DER: the key fresh evidence
    /// must bind too.
    pub spki: Vec<u8>,
    /// The peer's commitments.
    pub bindings: Bindings,
    /// The peer certificate, DER (a restarted enclave has a new one).
    pub certificate: Vec<u8>,
}

impl AttestedPeer {
    /// Which TEE the peer runs in.
    pub fn tee(&self) -> Option<Tee> {
        self.appraisal.result().tee
    }

    /// SHA-256 of the peer's TLS public key (SubjectPublicKeyInfo).
    pub fn tls_key_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.spki).into()
    }
}

/// Verifies an RA-TLS certificate: evidence, endorsements, policy and the
/// binding of evidence to this certificate's key.
pub fn verify_certificate(
    cert_der: &[u8],
    policy: &AppraisalPolicy,
    now: OffsetDateTime,
) -> Result<AttestedPeer, RaTlsError> {
    let decoded = CertificateEvidence::from_certificate(cert_der)?;
    let expected = tls_binding(&decoded.spki, &decoded.bindings);
    let appraisal = appraise(&decoded.collected, &expected, policy, now).map_err(|e| match e {
        Mismatch::Binding { expected, found } => RaTlsError::KeyBindingMismatch { expected, found },
        Mismatch::Rejected(e) => e,
    })?;
    if let Some(accepted) = &policy.policy_digests {
        let found = &decoded.bindings.policy_digest;
        if !accepted.accepts_committed(found) {
            let expected = match accepted {
                Reference::Any => "any".to_owned(),
                Reference::OneOf(list) => format!(
                    "one of [{}]",
                    list.iter()
                        .map(|d| hex::encode(d.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(RaTlsError::UnexpectedCommitment {
                what: "policy bundle",
                expected,
                found: if found.is_empty() {
                    "(none)".to_owned()
                } else {
                    hex::encode(found)
                },
            });
        }
    }
    Ok(AttestedPeer {
        appraisal,
        spki: decoded.spki,
        bindings: decoded.bindings,
        certificate: cert_der.to_vec(),
    })
}

enum Mismatch {
    Binding { expected: String, found: String },
    Rejected(RaTlsError),
}

/// Parse, check the binding (cheap, before any signature), verify, appraise.
fn appraise(
    collected: &Collected,
    expected: &ReportData,
    policy: &AppraisalPolicy,
    now: OffsetDateTime,
) -> Result<Appraisal, Mismatch> {
    let rejected = |tee, source| Mismatch::Rejected(RaTlsError::Rejected { tee, source });
    let evidence =
        Evidence::parse(&collected.evidence).map_err(|e| rejected(Some(collected.tee), e))?;
    let tee = Some(evidence.tee());
    if evidence.report_data() != expected {
        return Err(Mismatch::Binding {
            expected: expected.to_string(),
            found: evidence.report_data().to_string(),
        });
    }
    let inputs: EndorsementInputs<'_> = collected.endorsements.inputs();
    let verified = evidence
        .verify(&inputs, now)
        .map_err(|e| rejected(tee, e))?;
    verified.appraise(policy, now).map_err(|e| rejected(tee, e))
}

/// The enclave's side of RA-TLS: a key that never leaves the process and a
/// certificate whose evidence binds it.
pub struct RaTlsIdentity {
    certificate: CertificateDer<'static>,
    private_key: PrivatePkcs8KeyDer<'static>,
    spki: Vec<u8>,
    bindings: Bindings,
    tee: Tee,
}

impl core::fmt::Debug for RaTlsIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RaTlsIdentity")
            .field("tee", &self.tee)
            .field("spki", &hex::encode(&self.spki))
            .field("private_key", &"<never printed>")
            .finish()
    }
}

impl RaTlsIdentity {
    /// Generates a P-256 key, collects evidence binding it and `bindings`,
    /// and self-signs a certificate carrying both.
    pub fn generate(source: &dyn EvidenceSource, bindings: Bindings) -> Result<Self, RaTlsError> {
        let identity = |e: rcgen::Error| RaTlsError::Identity(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(identity)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let collected = source
            .collect(&tls_binding(&spki, &bindings))
            .map_err(|e| RaTlsError::Collect(e.to_string()))?;
        let extension = EvidenceExtension {
            version: u64::from(EXTENSION_VERSION),
            evidence: octets(&collected.evidence)?,
            vek: collected
                .endorsements
                .vek
                .as_deref()
                .map(octets)
                .transpose()?,
            cert_chain: collected
                .endorsements
                .cert_chain
                .as_deref()
                .map(octets)
                .transpose()?,
            collateral: collected
                .endorsements
                .collateral
                .as_deref()
                .map(octets)
                .transpose()?,
            policy_digest: octets(&bindings.policy_digest)?,
            audit_key: octets(&bindings.audit_key)?,
        }
        .to_der()
        .map_err(|e| RaTlsError::Identity(e.to_string()))?;

        let mut params =
            rcgen::CertificateParams::new(vec!["cloister-enclave".to_owned()]).map_err(identity)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cloister enclave (RA-TLS)");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(365);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                EVIDENCE_EXTENSION_ARCS,
                extension,
            ));
        let cert = params.self_signed(&key).map_err(identity)?;
        Ok(Self {
            certificate: cert.der().clone(),
            private_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            spki,
            bindings,
            tee: collected.tee,
        })
    }

    /// The certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The TLS key's SubjectPublicKeyInfo, DER.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The commitments bound into the evidence.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// The TEE that vouched for this identity.
    pub fn tee(&self) -> Tee {
        self.tee
    }

    /// A rustls server configuration presenting this identity: TLS 1.3 only,
    /// ALPN `http/1.1`.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, RaTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RaTlsError::Identity(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.certificate.clone()],
                PrivateKeyDer::Pkcs8(self.private_key.clone_key()),
            )
            .map_err(|e| RaTlsError::Identity(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Fresh evidence answering `nonce`, bound to this identity's key.
    pub fn attest_fresh(
        &self,
        source: &dyn EvidenceSource,
        nonce: &[u8],
    ) -> Result<AttestationDocument, RaTlsError> {
        check_nonce(nonce)?;
        let collected = source
            .collect(&freshness_binding(&self.spki, &self.bindings, nonce))
            .map_err(|e| RaTlsError::Collect(e.to_string()))?;
        Ok(AttestationDocument::new(&collected, &self.bindings, nonce))
    }
}

fn check_nonce(nonce: &[u8]) -> Result<(), RaTlsError> {
    if (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(RaTlsError::BadNonce(nonce.len()))
    }
}

/// The body of `GET /v1/attestation?nonce=HEX`: fresh evidence and its
/// endorsements, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationDocument {
    /// "snp", "tdx" or "sim".
    pub tee: String,
    /// The nonce answered, hex.
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    /// The evidence, hex.
    #[serde(with = "hex::serde")]
    pub evidence: Vec<u8>,
    /// SNP VCEK/VLEK, hex DER.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub vek: Option<Vec<u8>>,
    /// SNP ASK+ARK PEM, hex.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub cert_chain: Option<Vec<u8>>,
    /// TDX collateral JSON, hex.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub collateral: Option<Vec<u8>>,
    /// The commitments bound with the nonce.
    pub bindings: Bindings,
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| hex::decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl AttestationDocument {
    /// Packs collected evidence, the commitments it binds and the nonce it
    /// answers.
    pub fn new(collected: &Collected, bindings: &Bindings, nonce: &[u8]) -> Self {
        Self {
            tee: collected.tee.name().to_owned(),
            nonce: nonce.to_vec(),
            evidence: collected.evidence.clone(),
            vek: collected.endorsements.vek.clone(),
            cert_chain: collected.endorsements.cert_chain.clone(),
            collateral: collected.endorsements.collateral.clone(),
            bindings: bindings.clone(),
        }
    }

    /// Verifies that this document is fresh evidence from the peer already
    /// attested over TLS: it must bind `our_nonce` (the one the client sent,
    /// not the one the document names), the peer's TLS key and the same
    /// commitments, and satisfy `policy`.
    pub fn verify_fresh(
        &self,
        peer: &AttestedPeer,
        our_nonce: &[u8],
        policy: &AppraisalPolicy,
        now: OffsetDateTime,
    ) -> Result<Appraisal, RaTlsError> {
        check_nonce(our_nonce)?;
        let expected = freshness_binding(&peer.spki, &peer.bindings, our_nonce);
        self.verify_bound(
            &expected,
            &crate::collect::Endorsements::default(),
            policy,
            now,
        )
        .map_err(|e| match e {
            RaTlsError::BindingMismatch { expected, found } => RaTlsError::StaleNonce {
                nonce: hex::encode(our_nonce),
                expected,
                found,
            },
            other => other,
        })
    }

    /// Verifies that this document's evidence carries exactly `expected` as
    /// report_data and satisfies `policy` at `now`. Endorsements the document
    /// lacks are taken from `fallback` (a verifier's own offline cache);
    /// those it carries are used as sent (they are checked against the pinned
    /// vendor roots either way). A wrong binding is
    /// [`RaTlsError::BindingMismatch`], found before any signature is checked.
    pub fn verify_bound(
        &self,
        expected: &ReportData,
        fallback: &crate::collect::Endorsements,
        policy: &AppraisalPolicy,
        now: OffsetDateTime,
    ) -> Result<Appraisal, RaTlsError> {
        let tee = Evidence::detect(&self.evidence)
            .ok_or_else(|| RaTlsError::MalformedEvidence("evidence of an unknown kind".into()))?;
        let pick = |own: &Option<Vec<u8>>, cached: &Option<Vec<u8>>| {
            own.clone().or_else(|| cached.clone())
        };
        let collected = Collected {
            tee,
            evidence: self.evidence.clone(),
            endorsements: crate::collect::Endorsements {
                vek: pick(&self.vek, &fallback.vek),
                cert_chain: pick(&self.cert_chain, &fallback.cert_chain),
                collateral: pick(&self.collateral, &fallback.collateral),
            },
        };
        appraise(&collected, expected, policy, now).map_err(|e| match e {
            Mismatch::Binding { expected, found } => {
                RaTlsError::BindingMismatch { expected, found }
            }
            Mismatch::Rejected(e) => e,
        })
    }
}

/// The client's side of RA-TLS: a rustls certificate verifier that accepts
/// exactly the enclaves `policy` accepts, and records what it accepted.
#[derive(Debug)]
pub struct RaTlsVerifier {
    policy: AppraisalPolicy,
    required: Option<Bindings>,
    now: Option<OffsetDateTime>,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<Result<AttestedPeer, RaTlsError>>>,
}

impl RaTlsVerifier {
    /// A verifier for one connection (it remembers that connection's peer).
    pub fn new(policy: AppraisalPolicy) -> Self {
        Self {
            policy,
            required: None,
            now: None,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            outcome: Mutex::new(None),
        }
    }

    /// Also require these exact commitments (policy bundle, audit key).
    pub fn require_bindings(mut self, bindings: Bindings) -> Self {
        self.required = Some(bindings);
        self
    }

    /// Verify as of `now` rather than the system clock (for tests and for
    /// re-checking old evidence).
    pub fn at(mut self, now: OffsetDateTime) -> Self {
        self.now = Some(now);
        self
    }

    /// A TLS 1.3 client configuration using this verifier, ALPN `http/1.1`,
    /// without session resumption.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, RaTlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RaTlsError::Identity(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A resumed session skips certificate verification, and with it the
        // attestation: every connection attests afresh.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// What the last handshake through this verifier concluded: the attested
    /// peer, or the specific reason it was refused. `None` if no certificate
    /// was seen.
    pub fn outcome(&self) -> Option<Result<AttestedPeer, RaTlsError>> {
        self.outcome.lock().ok().and_then(|slot| slot.clone())
    }

    fn check(&self, cert_der: &[u8]) -> Result<AttestedPeer, RaTlsError> {
        let now = self.now.unwrap_or_else(OffsetDateTime::now_utc);
        let peer = verify_certificate(cert_der, &self.policy, now)?;
        if let Some(required) = &self.required {
            for (what, expected, found) in [
                (
                    "policy bundle",
                    &required.policy_digest,
                    &peer.bindings.policy_digest,
                ),
                ("audit key", &required.audit_key, &peer.bindings.audit_key),
            ] {
                if expected != found {
                    return Err(RaTlsError::UnexpectedCommitment {
                        what,
                        expected: hex::encode(expected),
                        found: hex::encode(found),
                    });
                }
            }
        }
        Ok(peer)
    }
}

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Identity comes from the evidence, not from names or CAs; the
        // server name is deliberately not checked.
        let outcome = if intermediates.is_empty() {
            self.check(end_entity)
        } else {
            Err(RaTlsError::MalformedCertificate(
                "an RA-TLS peer presents exactly one self-signed certificate".into(),
            ))
        };
        let result = match &outcome {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(e.clone())),
            ))),
        };
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client configuration offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimTee;
    use crate::types::{HostData, Measurement};

    fn sim() -> SimTee {
        SimTee::new(Measurement([3; 48]), HostData([0; 32])).unwrap()
    }

    fn policy() -> AppraisalPolicy {
        let mut p = AppraisalPolicy::report_only();
        p.allow_simulated = true;
        p
    }

    #[test]
    fn certificate_round_trip_and_binding() {
        let identity = RaTlsIdentity::generate(&sim(), Bindings::default()).unwrap();
        let now = OffsetDateTime::now_utc();
        let peer = verify_certificate(identity.certificate(), &policy(), now).unwrap();
        assert_eq!(peer.spki, identity.spki());
        assert_eq!(peer.tee(), Some(Tee::Sim));

        let err = verify_certificate(identity.certificate(), &AppraisalPolicy::report_only(), now)
            .unwrap_err();
        assert!(err.to_string().contains("INSECURE"), "{err}");
    }

    #[test]
    fn evidence_moved_to_another_key_is_refused() {
        let genuine = RaTlsIdentity::generate(&sim(), Bindings::default()).unwrap();
        let decoded = CertificateEvidence::from_certificate(genuine.certificate()).unwrap();
        // An impostor with its own key, replaying the genuine evidence.
        struct Replay(Collected);
        impl std::fmt::Debug for Replay {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Replay")
            }
        }
        impl EvidenceSource for Replay {
            fn tee(&self) -> Tee {
                self.0.tee
            }
            fn collect(&self, _: &ReportData) -> Result<Collected, crate::collect::CollectError> {
                Ok(self.0.clone())
            }
        }
        let impostor =
            RaTlsIdentity::generate(&Replay(decoded.collected), Bindings::default()).unwrap();
        let err = verify_certificate(impostor.certificate(), &policy(), OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(
            matches!(err, RaTlsError::KeyBindingMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn freshness_needs_our_nonce() {
        let tee = sim();
        let identity = RaTlsIdentity::generate(&tee, Bindings::default()).unwrap();
        let now = OffsetDateTime::now_utc();
        let peer = verify_certificate(identity.certificate(), &policy(), now).unwrap();
        let doc = identity.attest_fresh(&tee, &[1; 32]).unwrap();
        doc.verify_fresh(&peer, &[1; 32], &policy(), now).unwrap();
        let err = doc
            .verify_fresh(&peer, &[2; 32], &policy(), now)
            .unwrap_err();
        assert!(matches!(err, RaTlsError::StaleNonce { .. }), "{err}");
        assert!(matches!(
            identity.attest_fresh(&tee, &[1; 8]),
            Err(RaTlsError::BadNonce(8))
        ));
        let json = serde_json::to_string(&doc).unwrap();
        let back: AttestationDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn plain_certificates_have_no_evidence() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            CertificateEvidence::from_certificate(cert.der()).unwrap_err(),
            RaTlsError::NoEvidence
        );
    }
}
