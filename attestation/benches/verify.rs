//! Verification cost of one SNP report and one TDX quote, with endorsements
//! cached and fresh, each beside the bare cost of the signature checks it
//! needs (aws-lc-rs, on the same real vectors). The gap between a path and its
//! baseline is what parsing, chain logic and TCB evaluation cost.
//!
//! Run: `cargo bench -p cloister-attestation --bench verify`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use cloister_attestation::snp::{SnpEndorsements, SnpReport};
use cloister_attestation::tdx::{TdxCollateral, TdxQuote};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use der::{Decode, Encode};
use time::macros::datetime;

const MILAN_REPORT: &[u8] = include_bytes!("../tests/vectors/snp/milan-v2-virtee/report.bin");
const MILAN_VCEK: &[u8] = include_bytes!("../tests/vectors/snp/milan-v2-virtee/vcek.der");
const MILAN_CHAIN: &[u8] = include_bytes!("../tests/vectors/trust/amd/ask_ark_milan.pem");
const TDX_QUOTE: &[u8] = include_bytes!("../tests/vectors/tdx/v4-phala/quote.bin");
const TDX_COLLATERAL: &[u8] = include_bytes!("../tests/vectors/tdx/v4-phala/collateral.json");

/// One signature check: algorithm, public key, message, signature.
struct Check {
    alg: &'static dyn VerificationAlgorithm,
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Check {
    fn run(&self) -> bool {
        UnparsedPublicKey::new(self.alg, &self.key)
            .verify(&self.message, &self.signature)
            .is_ok()
    }
}

fn pem_chain(pem: &[u8]) -> Vec<x509_cert::Certificate> {
    x509_cert::Certificate::load_pem_chain(pem).unwrap()
}

fn spki_bits(cert: &x509_cert::Certificate) -> Vec<u8> {
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

/// `issuer` signed `cert` (the TBS re-encodes to the wire bytes for these
/// DER-canonical vectors; setup asserts every check passes).
fn cert_check(
    alg: &'static dyn VerificationAlgorithm,
    cert: &x509_cert::Certificate,
    issuer: &x509_cert::Certificate,
) -> Check {
    Check {
        alg,
        key: spki_bits(issuer),
        message: cert.tbs_certificate.to_der().unwrap(),
        signature: cert.signature.raw_bytes().to_vec(),
    }
}

fn crl_check(crl_der: &[u8], issuer: &x509_cert::Certificate) -> Check {
    let crl = x509_cert::crl::CertificateList::from_der(crl_der).unwrap();
    Check {
        alg: &signature::ECDSA_P256_SHA256_ASN1,
        key: spki_bits(issuer),
        message: crl.tbs_cert_list.to_der().unwrap(),
        signature: crl.signature.raw_bytes().to_vec(),
    }
}

fn snp_checks() -> Vec<Check> {
    let vcek = x509_cert::Certificate::from_der(MILAN_VCEK).unwrap();
    let chain = pem_chain(MILAN_CHAIN);
    let (ask, ark) = (&chain[0], &chain[1]);
    let be = |le: &[u8]| le.iter().rev().copied().collect::<Vec<u8>>();
    let mut sig = be(&MILAN_REPORT[0x2A0..0x2A0 + 48]);
    sig.extend(be(&MILAN_REPORT[0x2E8..0x2E8 + 48]));
    let pss = &signature::RSA_PSS_2048_8192_SHA384;
    vec![
        Check {
            alg: &signature::ECDSA_P384_SHA384_FIXED,
            key: spki_bits(&vcek),
            message: MILAN_REPORT[..0x2A0].to_vec(),
            signature: sig,
        },
        cert_check(pss, &vcek, ask),
        cert_check(pss, ask, ark),
        cert_check(pss, ark, ark),
    ]
}

fn tdx_checks() -> (Vec<Check>, Vec<Check>) {
    let q = TDX_QUOTE;
    let mut attestation_key = vec![4u8];
    attestation_key.extend_from_slice(&q[700..764]);
    let qe_report = 636 + 128 + 6;
    let begin = q.windows(10).position(|w| w == b"-----BEGIN").unwrap();
    let end = q[begin..].iter().position(|b| *b == 0).unwrap() + begin;
    let chain = pem_chain(&q[begin..end]);
    let (leaf, inter, root) = (&chain[0], &chain[1], &chain[2]);
    let fixed = &signature::ECDSA_P256_SHA256_FIXED;
    let asn1 = &signature::ECDSA_P256_SHA256_ASN1;

    let file: serde_json::Value = serde_json::from_slice(TDX_COLLATERAL).unwrap();
    let text = |k: &str| file[k].as_str().unwrap().to_owned();
    let pck_crl = hex::decode(text("pck_crl")).unwrap();
    let root_crl = hex::decode(text("root_ca_crl")).unwrap();
    let signing = pem_chain(text("tcb_info_issuer_chain").as_bytes());
    let pck_ca = pem_chain(text("pck_crl_issuer_chain").as_bytes());

    // What every quote needs, collateral cached.
    let per_quote = vec![
        Check {
            alg: fixed,
            key: attestation_key,
            message: q[..632].to_vec(),
            signature: q[636..700].to_vec(),
        },
        Check {
            alg: fixed,
            key: spki_bits(leaf),
            message: q[qe_report..qe_report + 384].to_vec(),
            signature: q[qe_report + 384..qe_report + 448].to_vec(),
        },
        cert_check(asn1, leaf, inter),
        cert_check(asn1, inter, root),
        crl_check(&pck_crl, inter),
    ];
    // What verifying the collateral adds.
    let collateral = vec![
        crl_check(&root_crl, root),
        cert_check(asn1, &signing[0], root),
        Check {
            alg: fixed,
            key: spki_bits(&signing[0]),
            message: text("tcb_info").into_bytes(),
            signature: hex::decode(text("tcb_info_signature")).unwrap(),
        },
        cert_check(asn1, &signing[0], root),
        Check {
            alg: fixed,
            key: spki_bits(&signing[0]),
            message: text("qe_identity").into_bytes(),
            signature: hex::decode(text("qe_identity_signature")).unwrap(),
        },
        cert_check(asn1, &pck_ca[0], root),
        crl_check(&pck_crl, &pck_ca[0]),
    ];
    (per_quote, collateral)
}

fn snp(c: &mut Criterion) {
    let now = datetime!(2025-10-01 00:00:00 UTC);
    let checks = snp_checks();
    assert!(checks.iter().all(Check::run), "baseline checks must pass");
    let chain = SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), None)
        .unwrap()
        .verify(now)
        .unwrap();

    let mut g = c.benchmark_group("snp_milan_report");
    g.throughput(Throughput::Bytes(MILAN_REPORT.len() as u64));
    g.bench_function("verify/chain_cached", |b| {
        b.iter(|| {
            SnpReport::parse(black_box(MILAN_REPORT))
                .unwrap()
                .verify(&chain, now)
                .unwrap()
        })
    });
    g.bench_function("baseline/report_signature_p384", |b| {
        b.iter(|| assert!(checks[0].run()))
    });
    g.bench_function("verify/fresh", |b| {
        b.iter(|| {
            let chain = SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), None)
                .unwrap()
                .verify(now)
                .unwrap();
            SnpReport::parse(black_box(MILAN_REPORT))
                .unwrap()
                .verify(&chain, now)
                .unwrap()
        })
    });
    g.bench_function("baseline/all_signatures_p384_3xrsa4096", |b| {
        b.iter(|| assert!(checks.iter().all(Check::run)))
    });
    g.finish();
}

fn tdx(c: &mut Criterion) {
    let now = datetime!(2025-06-25 00:00:00 UTC);
    let (per_quote, collateral_checks) = tdx_checks();
    assert!(per_quote.iter().chain(&collateral_checks).all(Check::run));
    let collateral = TdxCollateral::from_json(TDX_COLLATERAL)
        .unwrap()
        .verify(now)
        .unwrap();

    let mut g = c.benchmark_group("tdx_phala_quote");
    g.throughput(Throughput::Bytes(TDX_QUOTE.len() as u64));
    g.bench_function("verify/collateral_cached", |b| {
        b.iter(|| {
            TdxQuote::parse(black_box(TDX_QUOTE))
                .unwrap()
                .verify(Some(&collateral), now)
                .unwrap()
        })
    });
    g.bench_function("baseline/per_quote_signatures_5xp256", |b| {
        b.iter(|| assert!(per_quote.iter().all(Check::run)))
    });
    g.bench_function("verify/fresh", |b| {
        b.iter(|| {
            let collateral = TdxCollateral::from_json(black_box(TDX_COLLATERAL))
                .unwrap()
                .verify(now)
                .unwrap();
            TdxQuote::parse(black_box(TDX_QUOTE))
                .unwrap()
                .verify(Some(&collateral), now)
                .unwrap()
        })
    });
    g.bench_function("baseline/all_signatures_12xp256", |b| {
        b.iter(|| assert!(per_quote.iter().chain(&collateral_checks).all(Check::run)))
    });
    g.finish();
}

criterion_group!(benches, snp, tdx);
criterion_main!(benches);
