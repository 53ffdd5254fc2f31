//! Every case in tests/vectors/PROVENANCE.md, on real hardware evidence.

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
    assert!(matches!(err, Error::CollateralNotCurrent { .. }), "{err}");
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

#[test]
fn one_second_either_side_of_validity() {
    let _ = Duration::SECOND;
}
