//! Health checks. cloisterd is outside the trust boundary: it does not
//! verify an enclave's attestation (clients do), it only checks that the
//! enclave answers, and reads what its certificate *claims* for `status`.

use std::sync::Arc;
use std::time::Duration;

use cloister_attestation::evidence::Evidence;
use cloister_attestation::ratls::CertificateEvidence;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::Backend;

const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What an enclave's certificate claims, unverified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClaimedEvidence {
    /// "snp", "tdx" or "sim".
    pub(crate) tee: String,
    /// The launch measurement it claims.
    pub(crate) measurement: String,
    /// SHA-256 of its TLS public key (changes on every restart).
    pub(crate) tls_key_sha256: String,
    /// Simulated TEE: proves nothing.
    pub(crate) insecure: bool,
    /// Always false: cloisterd is not a verifier; clients are.
    pub(crate) verified_by_host: bool,
}

/// Accepts any certificate: the host is not the party that trusts the
/// enclave. It still checks the handshake signature, so the certificate it
/// reports is the one whose key the enclave holds.
#[derive(Debug)]
struct ObserveOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ObserveOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A reusable health prober.
#[derive(Clone)]
pub(crate) struct Prober {
    connector: tokio_rustls::TlsConnector,
}

impl Prober {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ObserveOnly(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// `GET /healthz` over TLS; the certificate's claims on success.
    pub(crate) async fn probe(&self, backend: &Backend) -> Result<ClaimedEvidence, String> {
        tokio::time::timeout(PROBE_TIMEOUT, self.probe_inner(backend))
            .await
            .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
    }

    async fn probe_inner(&self, backend: &Backend) -> Result<ClaimedEvidence, String> {
        let tcp = backend
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("cloister-enclave").map_err(|e| e.to_string())?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or("no certificate")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get("/healthz")
            .header(hyper::header::HOST, "cloister-enclave")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        driver.abort();
        if !status.is_success() {
            return Err(format!("/healthz answered {status}"));
        }
        Ok(claims(&cert))
    }
}

fn claims(cert: &[u8]) -> ClaimedEvidence {
    let tls_key_sha256 = hex::encode(Sha256::digest(cert));
    let decoded = CertificateEvidence::from_certificate(cert)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            Evidence::parse(&d.collected.evidence)
                .map(|e| (d.spki, e))
                .map_err(|e| e.to_string())
        });
    match decoded {
        Ok((spki, evidence)) => ClaimedEvidence {
            tee: evidence.tee().name().to_owned(),
            measurement: evidence.claimed_measurement().to_string(),
            tls_key_sha256: hex::encode(Sha256::digest(spki)),
            insecure: evidence.tee().is_insecure(),
            verified_by_host: false,
        },
        Err(e) => ClaimedEvidence {
            tee: format!("unreadable ({e})"),
            measurement: String::new(),
            tls_key_sha256,
            insecure: true,
            verified_by_host: false,
        },
    }
}
