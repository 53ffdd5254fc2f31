//! The key broker service: decides releases ([`Broker`]) and serves the
//! protocol over HTTPS ([`serve`]). Run by the data owner on their own
//! machine, never on the untrusted host.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use cloister_attestation::ratls::RaTlsError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::bundle::BundleHeader;
use crate::error::VaultError;
use crate::kbs::cache::EndorsementCache;
use crate::kbs::log::{Outcome, Record, ReleaseLog};
use crate::kbs::protocol::{
    release_binding, AttestRequest, Challenge, ChallengeRequest, Refusal, RefusalBody, RefusalCode,
    Release, ATTEST_PATH, CHALLENGE_PATH, MAX_REQUEST_BYTES, NONCE_LEN,
};
use crate::kbs::store::{KeyStore, MasterKey};
use crate::wrap::{wrap, ReleaseContext, PUBLIC_KEY_LEN};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most challenges outstanding at once (each is 64 bytes; this bounds a flood).
pub const MAX_PENDING: usize = 4096;
/// Longest key ID (as in a bundle header).
const MAX_KEY_ID_LEN: usize = 64;
/// The release log's file name in the store directory.
pub const RELEASE_LOG: &str = "releases.log";
const TLS_KEY: &str = "tls.key.der";
const TLS_CERT: &str = "tls.crt.der";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 256;

/// The clock the broker judges validity periods by.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

struct Pending {
    key_id: String,
    nonce: [u8; NONCE_LEN],
    expires: Instant,
}

/// The broker: its keys, its log, its cache and its outstanding challenges.
pub struct Broker {
    store: KeyStore,
    log: ReleaseLog,
    cache: Option<EndorsementCache>,
    pending: Mutex<HashMap<String, Pending>>,
    clock: Clock,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store)
            .field("log", &self.log)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over the store in `dir`, logging to `dir/releases.log`.
    pub fn open(
        dir: &Path,
        master: MasterKey,
        cache: Option<EndorsementCache>,
        clock: Clock,
    ) -> Result<Self, VaultError> {
        let store = KeyStore::open(dir, master)?;
        // Every key must open now: a broken store is found at start, not at
        // the first release.
        let keys = store.list()?;
        tracing::info!(keys = keys.len(), store = %dir.display(), "key store opened");
        Ok(Self {
            store,
            log: ReleaseLog::open(&dir.join(RELEASE_LOG))?,
            cache,
            pending: Mutex::new(HashMap::new()),
            clock,
        })
    }

    /// Step 2: a fresh, single-use challenge.
    pub fn challenge(&self, request: &ChallengeRequest) -> Result<Challenge, Refusal> {
        // Key IDs follow the bundle header's rule; checking here also bounds
        // what each outstanding challenge holds.
        let id = request.key_id.as_bytes();
        if id.is_empty() || id.len() > MAX_KEY_ID_LEN || !id.iter().all(u8::is_ascii_graphic) {
            return Err(refusal(
                RefusalCode::Malformed,
                format!("key_id must be 1 to {MAX_KEY_ID_LEN} printable ASCII characters without spaces"),
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        let mut session = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce)
            .and_then(|()| aws_lc_rs::rand::fill(&mut session))
            .map_err(|_| refusal(RefusalCode::Internal, "no randomness".into()))?;
        let session = hex::encode(session);
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| refusal(RefusalCode::Internal, "session table poisoned".into()))?;
        let now = Instant::now();
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            return Err(refusal(
                RefusalCode::Busy,
                format!("{MAX_PENDING} challenges are outstanding; try again shortly"),
            ));
        }
        pending.insert(
            session.clone(),
            Pending {
                key_id: request.key_id.clone(),
                nonce,
                expires: now + CHALLENGE_TTL,
            },
        );
        Ok(Challenge {
            session,
            nonce: nonce.to_vec(),
            expires_in_s: CHALLENGE_TTL.as_secs(),
        })
    }

    /// Steps 3 and 4: judge evidence, log the decision durably, and release
    /// the wrapped key or say why not.
    pub fn attest(&self, body: &[u8], peer: &str) -> Result<Release, Refusal> {
        let now = (self.clock)();
        let mut record = Record::new(peer);
        let outcome = self.decide(body, now, &mut record);
        match &outcome {
            Ok(release) => {
                record.outcome = Outcome::Released;
                record.code = "released".into();
                record.reason = format!(
                    "released (policy minimum bundle version {})",
                    release.min_bundle_version
                );
            }
            Err(r) => {
                record.code = r.code.as_str().to_owned();
                record.reason = r.message.clone();
            }
        }
        let time = now.format(&Rfc3339).unwrap_or_default();
        match self.log.append(record, time) {
            Ok(entry) => {
                let r = &entry.record;
                if r.outcome == Outcome::Released {
                    tracing::info!(seq = entry.seq, key_id = %r.key_id, tee = %r.tee, measurement = ?r.measurement, %peer, "key released");
                } else {
                    tracing::warn!(seq = entry.seq, key_id = %r.key_id, code = %r.code, reason = %r.reason, %peer, "release refused");
                }
                outcome
            }
            Err(e) => {
                tracing::error!(error = %e, "release log write failed; refusing");
                Err(refusal(
                    RefusalCode::Internal,
                    "the broker cannot make its release log durable; nothing is released".into(),
                ))
            }
        }
    }

    fn decide(
        &self,
        body: &[u8],
        now: OffsetDateTime,
        record: &mut Record,
    ) -> Result<Release, Refusal> {
        let request: AttestRequest = serde_json::from_slice(body).map_err(|e| {
            refusal(
                RefusalCode::Malformed,
                format!("not an attestation request: {e}"),
            )
        })?;
        record.tee = request.evidence.tee.clone();
        record.evidence_sha256 = hex::encode(Sha256::digest(&request.evidence.evidence));

        let pending = self
            .pending
            .lock()
            .map_err(|_| refusal(RefusalCode::Internal, "session table poisoned".into()))?
            .remove(&request.session);
        let Some(pending) = pending.filter(|p| p.expires > Instant::now()) else {
            return Err(refusal(
                RefusalCode::UnknownSession,
                format!(
                    "challenge {:?} is unknown, expired or already used: each challenge answers one attestation, so a replayed one is refused",
                    request.session
                ),
            ));
        };
        record.key_id = pending.key_id.clone();
        let key_id = pending.key_id.as_str();

        let (entry, key) = match self.store.get(key_id) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(refusal(
                    RefusalCode::UnknownKey,
                    format!("this broker holds no key {key_id:?}"),
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "key store unusable");
                return Err(refusal(
                    RefusalCode::Internal,
                    format!("key store unusable: {e}"),
                ));
            }
        };
        if let Some(when) = &entry.revoked {
            return Err(refusal(
                RefusalCode::Revoked,
                format!("key {key_id:?} was revoked at {when}"),
            ));
        }
        if request.public_key.len() != PUBLIC_KEY_LEN {
            return Err(refusal(
                RefusalCode::Malformed,
                format!(
                    "public_key must be a {PUBLIC_KEY_LEN}-byte X25519 key, got {} bytes",
                    request.public_key.len()
                ),
            ));
        }

        let expected = release_binding(
            &pending.nonce,
            key_id,
            &request.public_key,
            &request.evidence.bindings,
        );
        let fallback = self
            .cache
            .as_ref()
            .map(|c| c.lookup(&request.evidence.evidence))
            .unwrap_or_default();
        let appraisal = request
            .evidence
            .verify_bound(&expected, &fallback, &entry.policy.appraisal, now)
            .map_err(|e| match e {
                RaTlsError::BindingMismatch { .. } => refusal(
                    RefusalCode::BindingMismatch,
                    format!("{e}: it was not made for this challenge and enclave key (replayed from an earlier release?)"),
                ),
                other => refusal(RefusalCode::AttestationRejected, other.to_string()),
            })?;
        record.measurement = appraisal
            .result()
            .claims
            .get("measurement")
            .and_then(|m| m.as_str())
            .map(str::to_owned);

        let digest = &request.evidence.bindings.policy_digest;
        if !entry.policy.allows_policy_digest(digest) {
            return Err(refusal(
                RefusalCode::PolicyDigestNotAllowed,
                format!(
                    "the enclave runs policy bundle {}, which the release policy for {key_id:?} does not allow",
                    if digest.is_empty() {
                        "(none)".to_owned()
                    } else {
                        hex::encode(digest)
                    }
                ),
            ));
        }
        let header = match BundleHeader::verify(&request.bundle_header, &key) {
            Ok(header) => header,
            Err(VaultError::Malformed(why)) => {
                return Err(refusal(RefusalCode::Malformed, format!("bundle_header: {why}")))
            }
            Err(e) => {
                return Err(refusal(
                    RefusalCode::BundleHeaderInvalid,
                    format!("the bundle header does not authenticate under key {key_id:?} ({e}): modified on the host, or sealed under another key"),
                ))
            }
        };
        record.bundle_version = Some(header.bundle_version);
        let minimum = entry.policy.min_bundle_version;
        if header.bundle_version < minimum {
            return Err(refusal(
                RefusalCode::BundleVersionTooLow,
                format!(
                    "bundle version {} is below the release policy's minimum {minimum}: a rolled-back bundle",
                    header.bundle_version
                ),
            ));
        }

        let context = ReleaseContext {
            key_id,
            nonce: &pending.nonce,
            min_bundle_version: minimum,
        };
        let wrapped = wrap(&key, &request.public_key, &context)
            .map_err(|e| refusal(RefusalCode::Internal, e.to_string()))?;
        Ok(Release {
            key_id: key_id.to_owned(),
            min_bundle_version: minimum,
            wrapped,
        })
    }
}

fn refusal(code: RefusalCode, message: String) -> Refusal {
    Refusal { code, message }
}

/// The broker's TLS key and certificate (self-signed; enclaves pin the
/// SHA-256 of its SubjectPublicKeyInfo in their measured configuration).
pub struct TlsIdentity {
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    spki_sha256: [u8; 32],
}

impl core::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("spki_sha256", &hex::encode(self.spki_sha256))
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads the identity from the store directory, creating one on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, VaultError> {
        let (key_path, cert_path) = (dir.join(TLS_KEY), dir.join(TLS_CERT));
        if !key_path.exists() && !cert_path.exists() {
            Self::create(dir, &key_path, &cert_path)?;
        }
        let key = std::fs::read(&key_path).map_err(|e| store_error(&key_path, e.to_string()))?;
        let cert = std::fs::read(&cert_path).map_err(|e| store_error(&cert_path, e.to_string()))?;
        let spki_sha256 =
            crate::kbs::client::spki_sha256(&cert).map_err(|e| store_error(&cert_path, e))?;
        Ok(Self {
            certificate: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
            spki_sha256,
        })
    }

    fn create(dir: &Path, key_path: &Path, cert_path: &Path) -> Result<(), VaultError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir)?;
        let tls_error =
            |e: rcgen::Error| store_error(dir, format!("cannot make the TLS identity: {e}"));
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls_error)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["cloister-kbs".to_owned()]).map_err(tls_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cloister key broker");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).map_err(tls_error)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(key_path)?;
        file.write_all(&key.serialize_der())?;
        file.sync_all()?;
        std::fs::write(cert_path, cert.der())?;
        Ok(())
    }

    /// SHA-256 of the certificate's SubjectPublicKeyInfo: the pin.
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }

    /// A rustls configuration: TLS 1.3 only.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, VaultError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .and_then(|b| {
                b.with_no_client_auth().with_single_cert(
                    vec![self.certificate.clone()],
                    PrivateKeyDer::Pkcs8(self.key.clone_key()),
                )
            })
            .map_err(|_| VaultError::Crypto("TLS configuration"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn store_error(path: &Path, detail: String) -> VaultError {
    VaultError::Store {
        path: path.display().to_string(),
        detail,
    }
}

fn http_error(refusal: Refusal) -> Response {
    let status = match refusal.code {
        RefusalCode::Malformed => StatusCode::BAD_REQUEST,
        RefusalCode::UnknownSession => StatusCode::GONE,
        RefusalCode::UnknownKey => StatusCode::NOT_FOUND,
        RefusalCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        RefusalCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        RefusalCode::Revoked
        | RefusalCode::BindingMismatch
        | RefusalCode::AttestationRejected
        | RefusalCode::PolicyDigestNotAllowed
        | RefusalCode::BundleHeaderInvalid
        | RefusalCode::BundleVersionTooLow => StatusCode::FORBIDDEN,
    };
    (status, Json(RefusalBody { error: refusal })).into_response()
}

async fn challenge_handler(State(broker): State<Arc<Broker>>, body: Bytes) -> Response {
    let request: ChallengeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return http_error(refusal(
                RefusalCode::Malformed,
                format!("not a challenge request: {e}"),
            ))
        }
    };
    match broker.challenge(&request) {
        Ok(challenge) => Json(challenge).into_response(),
        Err(r) => http_error(r),
    }
}

async fn attest_handler(
    State(broker): State<Arc<Broker>>,
    Extension(peer): Extension<SocketAddr>,
    body: Bytes,
) -> Response {
    // Signature checks and the fsync are blocking work.
    let outcome =
        tokio::task::spawn_blocking(move || broker.attest(&body, &peer.to_string())).await;
    match outcome {
        Ok(Ok(release)) => Json(release).into_response(),
        Ok(Err(r)) => http_error(r),
        Err(_) => http_error(refusal(RefusalCode::Internal, "release task failed".into())),
    }
}

/// The protocol's routes.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route(CHALLENGE_PATH, post(challenge_handler))
        .route(ATTEST_PATH, post(attest_handler))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(broker)
}

/// Serves the broker over TLS until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let routes = router(broker);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; refusing");
            continue;
        };
        let acceptor = acceptor.clone();
        let service = routes.clone().layer(Extension(peer));
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::bundle::DataKey;
    use crate::kbs::log::read_chain;
    use std::path::PathBuf;

    fn broker(tag: &str) -> (PathBuf, Broker) {
        let dir =
            std::env::temp_dir().join(format!("cloister-broker-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let master = dir.join("master.key");
        MasterKey::generate(&master).unwrap();
        KeyStore::open(&dir, MasterKey::load(&master).unwrap())
            .unwrap()
            .add(
                "k",
                &DataKey::generate().unwrap(),
                "min_bundle_version = 1\npolicy_digests = \"any\"\n[appraisal]\nallow_simulated = true\n[appraisal.sim]\nmeasurements = \"any\"\n",
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        let broker = Broker::open(
            &dir,
            MasterKey::load(&master).unwrap(),
            None,
            Arc::new(OffsetDateTime::now_utc),
        )
        .unwrap();
        (dir, broker)
    }

    #[test]
    fn bad_key_ids_and_floods_of_challenges_are_refused() {
        let (dir, broker) = broker("flood");
        for bad in ["", "has space", &"x".repeat(65)] {
            let r = broker.challenge(&ChallengeRequest { key_id: bad.into() });
            assert_eq!(r.unwrap_err().code, RefusalCode::Malformed, "{bad:?}");
        }
        for _ in 0..MAX_PENDING {
            broker
                .challenge(&ChallengeRequest { key_id: "k".into() })
                .unwrap();
        }
        let r = broker.challenge(&ChallengeRequest { key_id: "k".into() });
        assert_eq!(r.unwrap_err().code, RefusalCode::Busy);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn malformed_attestations_are_refused_and_logged() {
        let (dir, broker) = broker("malformed");
        for body in [&b"not json"[..], b"{}", b"{\"session\": 1}"] {
            let r = broker.attest(body, "127.0.0.1:1");
            assert_eq!(r.unwrap_err().code, RefusalCode::Malformed);
        }
        let challenge = broker
            .challenge(&ChallengeRequest { key_id: "k".into() })
            .unwrap();
        let request = serde_json::json!({
            "session": challenge.session,
            "evidence": {"tee": "sim", "nonce": "00", "evidence": "00", "bindings": {"policy_digest": "", "audit_key": ""}},
            "public_key": "0011",
            "bundle_header": "00",
        });
        let r = broker.attest(request.to_string().as_bytes(), "127.0.0.1:1");
        assert_eq!(
            r.unwrap_err().code,
            RefusalCode::Malformed,
            "a 2-byte public key"
        );
        // The session was spent on that attempt: a retry is a replay.
        let r = broker.attest(request.to_string().as_bytes(), "127.0.0.1:1");
        assert_eq!(r.unwrap_err().code, RefusalCode::UnknownSession);

        let chain = read_chain(&dir.join(RELEASE_LOG)).unwrap();
        let codes: Vec<&str> = chain
            .entries
            .iter()
            .map(|(e, _)| e.record.code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "malformed",
                "malformed",
                "malformed",
                "malformed",
                "unknown_session"
            ]
        );
        assert_eq!(chain.entries[3].0.record.key_id, "k");
        let _ = std::fs::remove_dir_all(dir);
    }
}
