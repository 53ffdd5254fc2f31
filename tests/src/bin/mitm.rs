//! `cloister-mitm`: the relay a compromised host would run. It terminates
//! TLS itself, presenting either a plain certificate of its own
//! (`substitute`) or a certificate of its own carrying the genuine enclave's
//! evidence, copied from upstream (`replay`). Clients must refuse both.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use cloister::client::AttestedConnection;
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::{EVIDENCE_EXTENSION_ARCS, EVIDENCE_EXTENSION_OID};
use der::Decode as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, mode] = args.as_slice() else {
        bail!("usage: cloister-mitm LISTEN UPSTREAM substitute|replay");
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(listen, upstream, mode))
}

async fn run(listen: &str, upstream: &str, mode: &str) -> anyhow::Result<()> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["cloister-enclave".to_owned()])?;
    match mode {
        "substitute" => {}
        "replay" => {
            // Attest the genuine enclave like any client, then steal its evidence.
            let mut permissive = AppraisalPolicy::report_only();
            permissive.allow_simulated = true;
            let genuine = AttestedConnection::connect(upstream, permissive).await?;
            let cert = x509_cert::Certificate::from_der(&genuine.peer().certificate)?;
            let extension = cert
                .tbs_certificate
                .extensions
                .iter()
                .flatten()
                .find(|e| e.extn_id == EVIDENCE_EXTENSION_OID)
                .context("upstream certificate has no evidence")?;
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    EVIDENCE_EXTENSION_ARCS,
                    extension.extn_value.as_bytes().to_vec(),
                ));
        }
        other => bail!("unknown mode {other}"),
    }
    let cert = params.self_signed(&key)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ready");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // Whatever a client sends after accepting us would be readable here.
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut sink = Vec::new();
                let _ = tls.read_to_end(&mut sink).await;
            }
        });
    }
}
