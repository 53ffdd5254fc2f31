//! The cost of attestation on the connection path: a full in-memory TLS 1.3
//! handshake with the RA-TLS verifier against the same handshake with a
//! verifier that accepts the certificate without looking (the baseline),
//! and certificate verification alone against the one signature check it
//! contains. Sim evidence: the signature is Ed25519; for SNP/TDX add the
//! `verify` bench's figures.
//!
//! Run: `cargo bench -p cloister-attestation --bench ratls`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::{
    verify_certificate, Bindings, CertificateEvidence, RaTlsIdentity, RaTlsVerifier,
};
use cloister_attestation::sim::{SimEvidence, SimTee};
use cloister_attestation::types::{HostData, Measurement};
use criterion::{criterion_group, criterion_main, Criterion};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme,
};
use time::OffsetDateTime;

/// Accepts any certificate; still checks the handshake signature.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn policy() -> AppraisalPolicy {
    let mut p = AppraisalPolicy::report_only();
    p.allow_simulated = true;
    p
}

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = ServerName::try_from("cloister-enclave").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let tee = SimTee::new(Measurement([5; 48]), HostData([0; 32])).unwrap();
    let identity = RaTlsIdentity::generate(&tee, Bindings::default()).unwrap();
    let server = Arc::new(identity.server_config().unwrap());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut plain = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    plain.alpn_protocols = vec![b"http/1.1".to_vec()];
    plain.resumption = rustls::client::Resumption::disabled();
    let plain = Arc::new(plain);
    let attested = Arc::new(
        Arc::new(RaTlsVerifier::new(policy()))
            .client_config()
            .unwrap(),
    );

    let mut g = c.benchmark_group("tls13-handshake");
    g.bench_function("baseline: certificate accepted unseen", |b| {
        b.iter(|| handshake(&plain, &server))
    });
    g.bench_function("RA-TLS: evidence verified and bound (sim)", |b| {
        b.iter(|| handshake(&attested, &server))
    });
    g.finish();

    let cert = identity.certificate().to_vec();
    let decoded = CertificateEvidence::from_certificate(&cert).unwrap();
    let sim = SimEvidence::parse(&decoded.collected.evidence).unwrap();
    let signed = decoded.collected.evidence[..256].to_vec();
    let now = OffsetDateTime::now_utc();
    let policy = policy();
    let mut g = c.benchmark_group("ra-tls-certificate");
    g.bench_function("baseline: one Ed25519 verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ED25519, &sim.public_key)
                .verify(black_box(&signed), &sim.signature)
                .unwrap()
        })
    });
    g.bench_function("verify_certificate (decode, bind, verify, appraise)", |b| {
        b.iter(|| verify_certificate(black_box(&cert), &policy, now).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
