//! The enclave's side of the key release protocol: ask for a key, answer
//! the challenge with fresh evidence binding a fresh key pair, open the
//! wrapped key. The broker is reached over TLS 1.3 and authenticated by the
//! SHA-256 of its public key, pinned in the enclave's measured
//! configuration (the host in between sees only ciphertext, and cannot
//! stand in for the broker).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloister_attestation::collect::EvidenceSource;
use cloister_attestation::ratls::{AttestationDocument, Bindings};
use der::{Decode as _, Encode as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bundle::{BundleHeader, DataKey};
use crate::error::VaultError;
use crate::kbs::protocol::{
    release_binding, AttestRequest, Challenge, ChallengeRequest, RefusalBody, Release, ATTEST_PATH,
    CHALLENGE_PATH, NONCE_LEN,
};
use crate::wrap::{RecipientKey, ReleaseContext};

const TIMEOUT: Duration = Duration::from_secs(15);
const MAX_RESPONSE: usize = 64 * 1024;

/// Where the broker is and which key it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// HOST:PORT.
    pub address: String,
    /// SHA-256 of the broker's TLS SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
}

/// A key the broker released, and the minimum bundle version its release
/// policy demands (authenticated by the wrapping).
pub struct Released {
    /// The data key.
    pub key: DataKey,
    /// Bundles below this version must not be used.
    pub min_bundle_version: u64,
}

impl core::fmt::Debug for Released {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Released")
            .field("key", &self.key)
            .field("min_bundle_version", &self.min_bundle_version)
            .finish()
    }
}

/// Runs the whole protocol for the key of the bundle whose header is
/// `header`: challenge, evidence from `source` binding the broker's nonce, a
/// fresh recipient key and `bindings`, then unwraps the released key.
pub async fn request_key(
    broker: &BrokerEndpoint,
    header: &BundleHeader,
    source: &dyn EvidenceSource,
    bindings: &Bindings,
) -> Result<Released, VaultError> {
    let key_id = header.key_id.as_str();
    let mut connection = Connection::open(broker).await?;
    let challenge: Challenge = connection
        .post(
            CHALLENGE_PATH,
            &ChallengeRequest {
                key_id: key_id.to_owned(),
            },
            key_id,
        )
        .await?;
    if challenge.nonce.len() != NONCE_LEN {
        return Err(connection.protocol(format!(
            "challenge nonce is {} bytes, expected {NONCE_LEN}",
            challenge.nonce.len()
        )));
    }
    let recipient = RecipientKey::generate()?;
    let report_data = release_binding(&challenge.nonce, key_id, recipient.public_key(), bindings);
    let collected = source.collect(&report_data).map_err(|e| {
        VaultError::ReleaseViolation(format!("cannot collect evidence for the key broker: {e}"))
    })?;
    let request = AttestRequest {
        session: challenge.session.clone(),
        evidence: AttestationDocument::new(&collected, bindings, &challenge.nonce),
        public_key: recipient.public_key().to_vec(),
        bundle_header: header.as_bytes().to_vec(),
    };
    let release: Release = connection.post(ATTEST_PATH, &request, key_id).await?;
    if release.key_id != key_id {
        return Err(connection.protocol(format!(
            "broker released key {:?} when {key_id:?} was asked for",
            release.key_id
        )));
    }
    let context = ReleaseContext {
        key_id,
        nonce: &challenge.nonce,
        min_bundle_version: release.min_bundle_version,
    };
    let key = recipient.unwrap(&release.wrapped, &context)?;
    Ok(Released {
        key,
        min_bundle_version: release.min_bundle_version,
    })
}

/// Posts `request` to `path` on a fresh connection, exactly as given: for
/// tests and tools that show what the broker does with a replayed or
/// altered request. Refusals come back as [`VaultError::Refused`].
pub async fn post_raw<T: Serialize>(
    broker: &BrokerEndpoint,
    path: &str,
    request: &T,
) -> Result<serde_json::Value, VaultError> {
    let mut connection = Connection::open(broker).await?;
    connection.post(path, request, "").await
}

struct Connection {
    address: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(broker: &BrokerEndpoint) -> Result<Self, VaultError> {
        let fail = |detail: String| VaultError::Broker {
            address: broker.address.clone(),
            detail,
        };
        let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&broker.address))
            .await
            .map_err(|_| fail(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(PinnedBroker {
            spki_sha256: broker.spki_sha256,
            provider: provider.clone(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| fail(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from("cloister-kbs").map_err(|e| fail(e.to_string()))?;
        let tls = tokio::time::timeout(
            TIMEOUT,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .map_err(|_| fail(format!("no TLS handshake within {TIMEOUT:?}")))?
        .map_err(|e| {
            fail(format!(
                "TLS handshake failed (is this the pinned broker?): {e}"
            ))
        })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let address = broker.address.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(broker = %address, error = %e, "broker connection ended with an error");
            }
        });
        Ok(Self {
            address: broker.address.clone(),
            sender,
        })
    }

    fn protocol(&self, detail: String) -> VaultError {
        VaultError::Broker {
            address: self.address.clone(),
            detail,
        }
    }

    async fn post<T: Serialize, R: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &T,
        key_id: &str,
    ) -> Result<R, VaultError> {
        let body = serde_json::to_vec(body).map_err(|e| self.protocol(e.to_string()))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, "cloister-kbs")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.protocol(e.to_string()))?;
        // On a kept-alive connection the previous exchange may not be
        // fully retired yet; sending before the connection is ready fails
        // the request as "canceled" (hyper's "connection was not ready").
        tokio::time::timeout(TIMEOUT, self.sender.ready())
            .await
            .map_err(|_| self.protocol(format!("connection not ready within {TIMEOUT:?}")))?
            .map_err(|e| self.protocol(format!("HTTP: {e}")))?;
        let response = tokio::time::timeout(TIMEOUT, self.sender.send_request(request))
            .await
            .map_err(|_| self.protocol(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| self.protocol(format!("HTTP: {e}")))?;
        let status = response.status();
        let bytes = tokio::time::timeout(
            TIMEOUT,
            Limited::new(response.into_body(), MAX_RESPONSE).collect(),
        )
        .await
        .map_err(|_| self.protocol(format!("response not complete within {TIMEOUT:?}")))?
        .map_err(|e| self.protocol(format!("response body: {e}")))?
        .to_bytes();
        if !status.is_success() {
            return Err(match serde_json::from_slice::<RefusalBody>(&bytes) {
                Ok(refusal) => VaultError::Refused {
                    key_id: key_id.to_owned(),
                    code: refusal.error.code.as_str().to_owned(),
                    message: refusal.error.message,
                },
                Err(_) => self.protocol(format!("HTTP {status} without a refusal body")),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| self.protocol(format!("unexpected answer: {e}")))
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32], String> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    Ok(Sha256::digest(spki).into())
}

/// Accepts exactly the broker whose public key hashes to the pin; names and
/// validity dates do not matter, the key is the identity.
#[derive(Debug)]
struct PinnedBroker {
    spki_sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedBroker {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = spki_sha256(end_entity).map_err(rustls::Error::General)?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(&found, &self.spki_sha256).is_ok() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "broker key {} is not the pinned {}",
                hex::encode(found),
                hex::encode(self.spki_sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
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
