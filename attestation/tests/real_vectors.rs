//! Every case in tests/vectors/PROVENANCE.md, on real hardware evidence.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_attestation::error::Error;
use cloister_attestation::snp::{Product, SnpEndorsements, SnpReport, VekKind};
use cloister_attestation::tdx::{TcbStatus, TdxCollateral, TdxQuote};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const MILAN_REPORT: &[u8] = include_bytes!("vectors/snp/milan-v2-virtee/report.bin");
const MILAN_HEX: &[u8] = include_bytes!("vectors/snp/milan-v2-virtee/report_milan.hex");
const MILAN_VCEK: &[u8] = include_bytes!("vectors/snp/milan-v2-virtee/vcek.der");
const MILAN_CHAIN: &[u8] = include_bytes!("vectors/trust/amd/ask_ark_milan.pem");
const TURIN_REPORT: &[u8] = include_bytes!("vectors/snp/turin-v5-oak/report.bin");
const TURIN_VCEK: &[u8] = include_bytes!("vectors/snp/turin-v5-oak/vcek.der");
const TURIN_CHAIN: &[u8] = include_bytes!("vectors/trust/amd/ask_ark_turin_vcek.pem");
const TDX_QUOTE: &[u8] = include_bytes!("vectors/tdx/v4-phala/quote.bin");
const TDX_COLLATERAL: &[u8] = include_bytes!("vectors/tdx/v4-phala/collateral.json");
const SNP_SIGFLIP: &[u8] = include_bytes!("vectors/negative/snp-milan-v2-virtee-sigflip.bin");
const SNP_MEASUREMENT_FLIP: &[u8] =
    include_bytes!("vectors/negative/snp-milan-v2-virtee-measurement-flip.bin");
const TDX_SIGFLIP: &[u8] = include_bytes!("vectors/negative/tdx-v4-phala-quote-sigflip.bin");
const TDX_MRTD_FLIP: &[u8] = include_bytes!("vectors/negative/tdx-v4-phala-mrtd-flip.bin");

const SNP_NOW: OffsetDateTime = datetime!(2025-10-01 00:00:00 UTC);
const TDX_NOW: OffsetDateTime = datetime!(2025-06-25 00:00:00 UTC);

fn verify_snp(
    report: &[u8],
    vek: &[u8],
    chain: &[u8],
    now: OffsetDateTime,
) -> Result<cloister_attestation::snp::VerifiedSnpReport, Error> {
    let chain = SnpEndorsements::new(vek, Some(chain), None)?.verify(now)?;
    SnpReport::parse(report)?.verify(&chain, now)
}

fn verify_tdx(
    quote: &[u8],
    now: OffsetDateTime,
) -> Result<cloister_attestation::tdx::VerifiedTdxQuote, Error> {
    let collateral = TdxCollateral::from_json(TDX_COLLATERAL)?.verify(now)?;
    TdxQuote::parse(quote)?.verify(Some(&collateral), now)
}

#[test]
fn milan_v2_report_is_valid() {
    let v = verify_snp(MILAN_REPORT, MILAN_VCEK, MILAN_CHAIN, SNP_NOW).unwrap();
    assert_eq!(v.product(), Product::Milan);
    assert_eq!(v.kind(), VekKind::Vcek);
    assert_eq!(v.product_name(), "Milan-B0");
    assert_eq!(v.report().policy.0, 0x30000);
    // The hex form is the same report.
    let decoded = hex::decode(String::from_utf8_lossy(MILAN_HEX).trim()).unwrap();
    assert_eq!(decoded, MILAN_REPORT);
}

#[test]
fn turin_v5_report_is_valid() {
    let v = verify_snp(TURIN_REPORT, TURIN_VCEK, TURIN_CHAIN, SNP_NOW).unwrap();
    assert_eq!(v.product(), Product::Turin);
    assert_eq!(v.report().policy.0, 0x30000);
}

#[test]
fn embedded_amd_chain_is_used_when_none_is_given() {
    let chain = SnpEndorsements::new(MILAN_VCEK, None, None)
        .unwrap()
        .verify(SNP_NOW)
        .unwrap();
    SnpReport::parse(MILAN_REPORT)
        .unwrap()
        .verify(&chain, SNP_NOW)
        .unwrap();
}

#[test]
fn snp_negative_vectors_fail_on_the_report_signature() {
    for bad in [SNP_SIGFLIP, SNP_MEASUREMENT_FLIP] {
        assert_eq!(
            verify_snp(bad, MILAN_VCEK, MILAN_CHAIN, SNP_NOW).unwrap_err(),
            Error::SignatureInvalid {
                what: "SNP report signed by VCEK".into()
            }
        );
    }
}

#[test]
fn tdx_quote_is_valid_and_up_to_date() {
    let v = verify_tdx(TDX_QUOTE, TDX_NOW).unwrap();
    let tcb = v.tcb().unwrap();
    assert_eq!(tcb.status, TcbStatus::UpToDate);
    assert!(tcb.advisory_ids.is_empty());
    assert_eq!(v.fmspc().to_string(), "b0c06f000000");
}

#[test]
fn tdx_quote_without_collateral_verifies_signatures_only() {
    let v = TdxQuote::parse(TDX_QUOTE)
        .unwrap()
        .verify(None, TDX_NOW)
        .unwrap();
    assert!(v.tcb().is_none());
}

#[test]
fn tdx_collateral_expired_after_next_update() {
    let err = TdxCollateral::from_json(TDX_COLLATERAL)
        .unwrap()
        .verify(datetime!(2025-07-20 00:00:00 UTC))
        .unwrap_err();
    // TCB info, QE identity and PCK CRL all expired on 2025-07-19; the TCB
    // info is checked first.
    match err {
        Error::CollateralNotCurrent {
            which, next_update, ..
        } => {
            assert_eq!(which, "TCB info");
            assert_eq!(next_update, datetime!(2025-07-19 10:16:03 UTC));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn tdx_negative_vectors_fail_on_the_quote_signature() {
    for bad in [TDX_SIGFLIP, TDX_MRTD_FLIP] {
        assert_eq!(
            verify_tdx(bad, TDX_NOW).unwrap_err(),
            Error::SignatureInvalid {
                what: "TDX quote signed by attestation key".into()
            }
        );
    }
}

const SECOND: Duration = Duration::SECOND;

#[test]
fn vcek_validity_is_enforced_to_the_second() {
    // Milan VCEK: 2023-04-03 19:23:43 .. 2030-04-03 19:23:43 (both inclusive).
    let not_before = datetime!(2023-04-03 19:23:43 UTC);
    let not_after = datetime!(2030-04-03 19:23:43 UTC);
    verify_snp(MILAN_REPORT, MILAN_VCEK, MILAN_CHAIN, not_before).unwrap();
    verify_snp(MILAN_REPORT, MILAN_VCEK, MILAN_CHAIN, not_after).unwrap();
    assert_eq!(
        verify_snp(MILAN_REPORT, MILAN_VCEK, MILAN_CHAIN, not_before - SECOND).unwrap_err(),
        Error::CertificateNotYetValid {
            which: "VEK".into(),
            not_before,
            now: not_before - SECOND
        }
    );
    assert_eq!(
        verify_snp(MILAN_REPORT, MILAN_VCEK, MILAN_CHAIN, not_after + SECOND).unwrap_err(),
        Error::CertificateExpired {
            which: "VEK".into(),
            not_after,
            now: not_after + SECOND
        }
    );
    // Turin VCEK: 2025-07-17 17:04:46 .. 2032-07-17 17:04:46.
    let not_before = datetime!(2025-07-17 17:04:46 UTC);
    verify_snp(TURIN_REPORT, TURIN_VCEK, TURIN_CHAIN, not_before).unwrap();
    assert!(matches!(
        verify_snp(TURIN_REPORT, TURIN_VCEK, TURIN_CHAIN, not_before - SECOND),
        Err(Error::CertificateNotYetValid { .. })
    ));
}

#[test]
fn cached_chain_rechecks_validity_for_each_report() {
    let chain = SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), None)
        .unwrap()
        .verify(SNP_NOW)
        .unwrap();
    let later = datetime!(2030-04-03 19:23:44 UTC);
    assert!(matches!(
        SnpReport::parse(MILAN_REPORT)
            .unwrap()
            .verify(&chain, later),
        Err(Error::CertificateExpired { .. })
    ));
}

#[test]
fn tdx_collateral_window_is_enforced_to_the_second() {
    let collateral = TdxCollateral::from_json(TDX_COLLATERAL).unwrap();
    // Latest start: QE identity issueDate. Earliest end: PCK CRL nextUpdate.
    let start = datetime!(2025-06-19 10:32:27 UTC);
    let end = datetime!(2025-07-19 10:00:35 UTC);
    collateral.verify(start).unwrap();
    collateral.verify(end).unwrap();
    match collateral.verify(start - SECOND).unwrap_err() {
        Error::CollateralNotCurrent { which, .. } => assert_eq!(which, "QE identity"),
        other => panic!("unexpected {other}"),
    }
    match collateral.verify(end + SECOND).unwrap_err() {
        Error::CollateralNotCurrent { which, .. } => assert_eq!(which, "PCK CRL"),
        other => panic!("unexpected {other}"),
    }
    // A cached verification is re-checked at each quote's time.
    let verified = collateral.verify(TDX_NOW).unwrap();
    assert!(matches!(
        TdxQuote::parse(TDX_QUOTE)
            .unwrap()
            .verify(Some(&verified), end + SECOND),
        Err(Error::CollateralNotCurrent { .. })
    ));
}

#[test]
fn pck_certificate_validity_is_enforced() {
    // PCK leaf: notBefore 2025-02-06 23:25:51.
    let not_before = datetime!(2025-02-06 23:25:51 UTC);
    TdxQuote::parse(TDX_QUOTE)
        .unwrap()
        .verify(None, not_before)
        .unwrap();
    assert_eq!(
        TdxQuote::parse(TDX_QUOTE)
            .unwrap()
            .verify(None, not_before - SECOND)
            .unwrap_err(),
        Error::CertificateNotYetValid {
            which: "PCK certificate".into(),
            not_before,
            now: not_before - SECOND
        }
    );
}

/// Flips one bit in each field of the Milan report and checks the exact
/// error: structure checks catch what they can, the signature the rest.
#[test]
fn every_snp_field_region_is_protected() {
    let sig = || Error::SignatureInvalid {
        what: "SNP report signed by VCEK".into(),
    };
    let cases: Vec<(usize, &str, Error)> = vec![
        (0x04, "guest_svn", sig()),
        (0x08, "policy ABI minor", sig()),
        (0x10, "family_id", sig()),
        (0x20, "image_id", sig()),
        (0x30, "vmpl", sig()),
        (0x38, "current_tcb", sig()),
        (0x40, "platform_info", sig()),
        (0x48, "flags: author key", sig()),
        (0x50, "report_data", sig()),
        (0x90, "measurement", sig()),
        (0xC0, "host_data", sig()),
        (0xE0, "id_key_digest", sig()),
        (0x110, "author_key_digest", sig()),
        (0x140, "report_id", sig()),
        (0x160, "report_id_ma", sig()),
        (
            0x180,
            "reported_tcb",
            Error::TcbMismatch {
                component: "boot loader",
                certificate: 3,
                report: 2,
            },
        ),
        (
            0x187,
            "reported_tcb microcode",
            Error::TcbMismatch {
                component: "microcode",
                certificate: 115,
                report: 114,
            },
        ),
        (0x1E0, "committed_tcb", sig()),
        (0x1E8, "current build", sig()),
        (0x1EC, "committed build", sig()),
        (0x1F0, "launch_tcb", sig()),
        (0x2A0, "signature R", sig()),
        (0x2E8, "signature S", sig()),
    ];
    for (offset, field, expected) in cases {
        let mut bad = MILAN_REPORT.to_vec();
        bad[offset] ^= 1;
        assert_eq!(
            verify_snp(&bad, MILAN_VCEK, MILAN_CHAIN, SNP_NOW).unwrap_err(),
            expected,
            "{field}"
        );
    }
    let mut bad = MILAN_REPORT.to_vec();
    bad[0x1A0] ^= 1;
    assert!(matches!(
        verify_snp(&bad, MILAN_VCEK, MILAN_CHAIN, SNP_NOW),
        Err(Error::HwIdMismatch { .. })
    ));
    let mut bad = MILAN_REPORT.to_vec();
    bad[0x34] = 2;
    assert!(matches!(
        SnpReport::parse(&bad),
        Err(Error::UnexpectedAlgorithm { .. })
    ));
    let mut bad = MILAN_REPORT.to_vec();
    bad[0x48] = 1 << 2; // signed by a VLEK, says the report
    assert_eq!(
        verify_snp(&bad, MILAN_VCEK, MILAN_CHAIN, SNP_NOW).unwrap_err(),
        Error::SigningKeyMismatch {
            report: "VLEK",
            certificate: "VCEK"
        }
    );
    let mut bad = MILAN_REPORT.to_vec();
    bad[0] = 3; // v3 layout: CPUID bytes are zero, no such processor
    assert!(matches!(
        SnpReport::parse(&bad),
        Err(Error::InvalidField { field: "CPUID", .. })
    ));
    let mut bad = TURIN_REPORT.to_vec();
    bad[0x200] ^= 1; // current_mit_vector, v5 only
    assert_eq!(
        verify_snp(&bad, TURIN_VCEK, TURIN_CHAIN, SNP_NOW).unwrap_err(),
        Error::SignatureInvalid {
            what: "SNP report signed by VCEK".into()
        }
    );
}

#[test]
fn truncated_snp_reports_are_rejected_at_every_boundary() {
    for len in [0, 4, 0x50, 0x90, 0x180, 0x1A0, 0x2A0, 0x2E8, 0x4A0 - 1] {
        assert_eq!(
            SnpReport::parse(&MILAN_REPORT[..len]).unwrap_err(),
            Error::Truncated {
                structure: "SNP report",
                needed: 0x4A0,
                found: len
            }
        );
    }
}

#[test]
fn truncated_tdx_quotes_are_rejected_at_every_length() {
    // Every prefix: parse errors only, never a panic, never a success.
    for len in 0..4936 {
        assert!(TdxQuote::parse(&TDX_QUOTE[..len]).is_err(), "prefix {len}");
    }
    // Structure boundaries name the truncated structure.
    for len in [0, 48, 632, 636] {
        assert!(
            matches!(
                TdxQuote::parse(&TDX_QUOTE[..len]),
                Err(Error::Truncated {
                    structure: "TDX quote",
                    ..
                })
            ),
            "{len}"
        );
    }
}

#[test]
fn wrong_product_chain_is_rejected() {
    // Milan VCEK presented with the Turin ASK/ARK.
    assert!(matches!(
        SnpEndorsements::new(MILAN_VCEK, Some(TURIN_CHAIN), None)
            .unwrap()
            .verify(SNP_NOW),
        Err(Error::IssuerMismatch { .. })
    ));
    // Turin report against a Milan chain: the report's CPUID disagrees.
    assert_eq!(
        verify_snp(TURIN_REPORT, MILAN_VCEK, MILAN_CHAIN, SNP_NOW).unwrap_err(),
        Error::ProductMismatch {
            expected: "Milan".into(),
            source_of_claim: "the report's CPUID",
            found: "Turin".into()
        }
    );
}

#[test]
fn vcek_of_another_chip_is_rejected() {
    // A genuine Turin VCEK cannot vouch for the Milan chip's report.
    let err = verify_snp(MILAN_REPORT, TURIN_VCEK, TURIN_CHAIN, SNP_NOW).unwrap_err();
    assert_eq!(
        err,
        Error::HwIdMismatch {
            vek: "3b42092f69c656d3".into(),
            report: hex::encode(&MILAN_REPORT[0x1A0..0x1E0])
        }
    );
    assert!(err
        .to_string()
        .starts_with("VCEK hwID does not match report chip_id"));
}

#[test]
fn chain_must_end_in_a_pinned_ark() {
    let pem = String::from_utf8(MILAN_CHAIN.to_vec()).unwrap();
    let end = "-----END CERTIFICATE-----";
    let ask = &pem[..pem.find(end).unwrap() + end.len()];
    let doubled = format!("{ask}\n{ask}\n");
    assert!(matches!(
        SnpEndorsements::new(MILAN_VCEK, Some(doubled.as_bytes()), None)
            .unwrap()
            .verify(SNP_NOW),
        Err(Error::UntrustedRoot { .. })
    ));
    assert!(matches!(
        SnpEndorsements::new(MILAN_VCEK, Some(ask.as_bytes()), None),
        Err(Error::ChainLength { found: 1, .. })
    ));
}

#[test]
fn tdx_quote_internal_bindings_are_checked() {
    let q = TdxQuote::parse(TDX_QUOTE).unwrap();
    let sig_data = 636;
    let qe_report = sig_data + 128 + 6;
    let auth = qe_report + 384 + 64 + 2;
    let cases: Vec<(usize, Error)> = vec![
        (
            qe_report + 10,
            Error::SignatureInvalid {
                what: "QE report signed by PCK certificate".into(),
            },
        ),
        (
            qe_report + 384,
            Error::SignatureInvalid {
                what: "QE report signed by PCK certificate".into(),
            },
        ),
        (auth, Error::QeReportDataMismatch),
        (sig_data + 64, Error::QeReportDataMismatch), // attestation key
        (
            48 + 520,
            Error::SignatureInvalid {
                what: "TDX quote signed by attestation key".into(),
            },
        ), // report_data
    ];
    for (offset, expected) in cases {
        let mut bad = TDX_QUOTE.to_vec();
        bad[offset] ^= 1;
        assert_eq!(
            TdxQuote::parse(&bad)
                .unwrap()
                .verify(None, TDX_NOW)
                .unwrap_err(),
            expected,
            "offset {offset}"
        );
    }
    assert_eq!(q.version, 4);
}

#[test]
fn tdx_v5_layout_parses_and_its_descriptor_is_signed() {
    // Re-frame the real v4 quote as v5 with a TD 1.0 body descriptor. The
    // structure parses; the signature, which now covers the descriptor, fails.
    let mut v5 = TDX_QUOTE[..48].to_vec();
    v5[0] = 5;
    v5.extend_from_slice(&2u16.to_le_bytes());
    v5.extend_from_slice(&584u32.to_le_bytes());
    v5.extend_from_slice(&TDX_QUOTE[48..]);
    let parsed = TdxQuote::parse(&v5).unwrap();
    assert_eq!(parsed.version, 5);
    assert_eq!(parsed.td_report.tee_tcb_svn2, None);
    assert_eq!(
        parsed.verify(None, TDX_NOW).unwrap_err(),
        Error::SignatureInvalid {
            what: "TDX quote signed by attestation key".into()
        }
    );
    // A TD 1.5 body (type 3) carries TEE_TCB_SVN2 and MRSERVICETD.
    let mut v15 = TDX_QUOTE[..48].to_vec();
    v15[0] = 5;
    v15.extend_from_slice(&3u16.to_le_bytes());
    v15.extend_from_slice(&648u32.to_le_bytes());
    v15.extend_from_slice(&TDX_QUOTE[48..632]);
    v15.extend_from_slice(&[7u8; 64]);
    v15.extend_from_slice(&TDX_QUOTE[632..]);
    let parsed = TdxQuote::parse(&v15).unwrap();
    assert_eq!(parsed.td_report.tee_tcb_svn2, Some([7; 16]));
    // A descriptor that lies about the body size is refused.
    let mut bad = v5.clone();
    bad[50] = 0;
    assert!(matches!(
        TdxQuote::parse(&bad),
        Err(Error::InvalidField {
            field: "body size",
            ..
        })
    ));
}

/// Verifies the real collateral after `edit` changed its JSON.
fn verify_tampered(edit: impl FnOnce(&mut serde_json::Value)) -> Result<(), Error> {
    let mut file: serde_json::Value = serde_json::from_slice(TDX_COLLATERAL).unwrap();
    edit(&mut file);
    TdxCollateral::from_json(&serde_json::to_vec(&file).unwrap())?
        .verify(TDX_NOW)
        .map(drop)
}

fn replace_in(file: &mut serde_json::Value, key: &str, from: &str, to: &str) {
    let text = file[key].as_str().unwrap().replacen(from, to, 1);
    assert_ne!(
        text,
        file[key].as_str().unwrap(),
        "the edit must change {key}"
    );
    file[key] = text.into();
}

#[test]
fn tdx_collateral_tampering_is_detected() {
    assert_eq!(
        verify_tampered(|f| replace_in(f, "tcb_info", "OutOfDate", "UpToDate")),
        Err(Error::SignatureInvalid {
            what: "TCB info signed by the TCB signing certificate".into()
        })
    );
    assert_eq!(
        verify_tampered(|f| replace_in(f, "qe_identity", "\"isvprodid\":2", "\"isvprodid\":3")),
        Err(Error::SignatureInvalid {
            what: "QE identity signed by the TCB signing certificate".into()
        })
    );
    // Swapping the two signatures breaks both.
    assert!(matches!(
        verify_tampered(|f| {
            let tcb = f["tcb_info_signature"].clone();
            f["tcb_info_signature"] = f["qe_identity_signature"].clone();
            f["qe_identity_signature"] = tcb;
        }),
        Err(Error::SignatureInvalid { .. })
    ));
    // The root CA CRL must be signed by the pinned root: replace it with the PCK CRL.
    assert!(matches!(
        verify_tampered(|f| f["root_ca_crl"] = f["pck_crl"].clone()),
        Err(Error::IssuerMismatch { .. })
    ));

    assert!(matches!(
        TdxCollateral::from_json(b"{}"),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        TdxCollateral::from_json(&TDX_COLLATERAL[..100]),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn amd_crl_must_be_signed_by_the_ark() {
    // No AMD CRL is among the vectors; a genuine CRL from another issuer (the
    // Intel root CA CRL) must be refused, not ignored.
    let file: serde_json::Value = serde_json::from_slice(TDX_COLLATERAL).unwrap();
    let crl = hex::decode(file["root_ca_crl"].as_str().unwrap()).unwrap();
    let err = SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), Some(&crl))
        .unwrap()
        .verify(SNP_NOW)
        .unwrap_err();
    match err {
        Error::IssuerMismatch { which, .. } => assert_eq!(which, "AMD CRL"),
        other => panic!("unexpected {other}"),
    }
    assert!(matches!(
        SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), Some(b"not a crl")),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn root_and_intermediate_validity_are_enforced_too() {
    // The Milan ASK (first in the chain file) is valid from 2020-10-22
    // 18:24:20, an hour after the ARK; one second earlier it is not yet valid.
    let ask_not_before = datetime!(2020-10-22 18:24:20 UTC);
    let endorsements = SnpEndorsements::new(MILAN_VCEK, Some(MILAN_CHAIN), None).unwrap();
    match endorsements.verify(ask_not_before - SECOND).unwrap_err() {
        Error::CertificateNotYetValid { which, .. } => assert_eq!(which, "ASK"),
        other => panic!("unexpected {other}"),
    }
    // The Intel SGX Root CA expires at the end of 2049; the first check of a
    // quote after that names the root.
    let root_not_after = datetime!(2049-12-31 23:59:59 UTC);
    match TdxQuote::parse(TDX_QUOTE)
        .unwrap()
        .verify(None, root_not_after + SECOND)
        .unwrap_err()
    {
        Error::CertificateExpired {
            which, not_after, ..
        } => {
            assert_eq!(which, "Intel SGX Root CA");
            assert_eq!(not_after, root_not_after);
        }
        other => panic!("unexpected {other}"),
    }
    // PCK certificate: notAfter 2032-02-06 23:25:51.
    let pck_not_after = datetime!(2032-02-06 23:25:51 UTC);
    TdxQuote::parse(TDX_QUOTE)
        .unwrap()
        .verify(None, pck_not_after)
        .unwrap();
    match TdxQuote::parse(TDX_QUOTE)
        .unwrap()
        .verify(None, pck_not_after + SECOND)
        .unwrap_err()
    {
        Error::CertificateExpired { which, .. } => assert_eq!(which, "PCK certificate"),
        other => panic!("unexpected {other}"),
    }
}

const GENOA_REPORT: &[u8] = include_bytes!("vectors/snp/genoa-v3-trustee-azure/report.bin");
const GENOA_VCEK: &[u8] = include_bytes!("vectors/snp/genoa-v3-trustee-azure/vcek.pem");
const VLEK_REPORT: &[u8] = include_bytes!("vectors/snp/milan-vlek-v3-trustee-aws/report.bin");
const VLEK: &[u8] = include_bytes!("vectors/snp/milan-vlek-v3-trustee-aws/vlek.der");
const CLOUD_NOW: OffsetDateTime = datetime!(2025-06-01 00:00:00 UTC);

fn verify_with_builtin_chain(
    report: &[u8],
    vek: &[u8],
    now: OffsetDateTime,
) -> Result<cloister_attestation::snp::VerifiedSnpReport, Error> {
    let chain = SnpEndorsements::new(vek, None, None)?.verify(now)?;
    SnpReport::parse(report)?.verify(&chain, now)
}

#[test]
fn genoa_v3_report_is_valid() {
    let v = verify_with_builtin_chain(GENOA_REPORT, GENOA_VCEK, CLOUD_NOW).unwrap();
    assert_eq!(v.product(), Product::Genoa);
    assert_eq!(v.kind(), VekKind::Vcek);
    assert_eq!(v.report().cpuid, Some((0x19, 0x11, 0x01)));
    let mut bad = GENOA_REPORT.to_vec();
    bad[0x90] ^= 1;
    assert_eq!(
        verify_with_builtin_chain(&bad, GENOA_VCEK, CLOUD_NOW).unwrap_err(),
        Error::SignatureInvalid {
            what: "SNP report signed by VCEK".into()
        }
    );
    // A genuine Milan VCEK cannot vouch for a Genoa report.
    assert_eq!(
        verify_snp(GENOA_REPORT, MILAN_VCEK, MILAN_CHAIN, CLOUD_NOW).unwrap_err(),
        Error::ProductMismatch {
            expected: "Milan".into(),
            source_of_claim: "the report's CPUID",
            found: "Genoa".into()
        }
    );
}

#[test]
fn vlek_signed_report_is_valid_until_its_vlek_expires() {
    let v = verify_with_builtin_chain(VLEK_REPORT, VLEK, CLOUD_NOW).unwrap();
    assert_eq!(v.product(), Product::Milan);
    assert_eq!(v.kind(), VekKind::Vlek);
    assert_eq!(v.report().vmpl, 1);

    let not_after = datetime!(2025-12-10 22:14:21 UTC);
    verify_with_builtin_chain(VLEK_REPORT, VLEK, not_after).unwrap();
    assert_eq!(
        verify_with_builtin_chain(VLEK_REPORT, VLEK, not_after + SECOND).unwrap_err(),
        Error::CertificateExpired {
            which: "VEK".into(),
            not_after,
            now: not_after + SECOND
        }
    );
    let mut bad = VLEK_REPORT.to_vec();
    bad[0x50] ^= 1;
    assert_eq!(
        verify_with_builtin_chain(&bad, VLEK, CLOUD_NOW).unwrap_err(),
        Error::SignatureInvalid {
            what: "SNP report signed by VLEK".into()
        }
    );
}

#[test]
fn key_kind_in_the_report_must_match_the_certificate() {
    // A VLEK-signed report presented with a genuine Milan VCEK.
    assert_eq!(
        verify_snp(VLEK_REPORT, MILAN_VCEK, MILAN_CHAIN, CLOUD_NOW).unwrap_err(),
        Error::SigningKeyMismatch {
            report: "VLEK",
            certificate: "VCEK"
        }
    );
    // A VLEK with the VCEK chain (ASK instead of ASVK) does not chain.
    assert!(matches!(
        SnpEndorsements::new(VLEK, Some(MILAN_CHAIN), None)
            .unwrap()
            .verify(CLOUD_NOW),
        Err(Error::IssuerMismatch { .. })
    ));
}
