//! The broker's offline endorsement cache, on real hardware evidence (the
//! attestation crate's vectors; provenance in
//! `attestation/tests/vectors/PROVENANCE.md`): a VCEK filed under the report
//! it signed and TDX collateral are found again and make evidence that
//! arrives without endorsements verify, with no vendor server involved.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use cloister_attestation::collect::Endorsements;
use cloister_attestation::evidence::Evidence;
use cloister_attestation::policy::AppraisalPolicy;
use cloister_attestation::ratls::{AttestationDocument, Bindings, RaTlsError};
use cloister_vault::kbs::cache::EndorsementCache;
use cloister_vault::VaultError;
use time::macros::datetime;
use time::OffsetDateTime;

const MILAN_REPORT: &[u8] =
    include_bytes!("../../attestation/tests/vectors/snp/milan-v2-virtee/report.bin");
const MILAN_VCEK: &[u8] =
    include_bytes!("../../attestation/tests/vectors/snp/milan-v2-virtee/vcek.der");
const TURIN_REPORT: &[u8] =
    include_bytes!("../../attestation/tests/vectors/snp/turin-v5-oak/report.bin");
const TURIN_VCEK: &[u8] =
    include_bytes!("../../attestation/tests/vectors/snp/turin-v5-oak/vcek.der");
const TDX_QUOTE: &[u8] = include_bytes!("../../attestation/tests/vectors/tdx/v4-phala/quote.bin");
const TDX_COLLATERAL: &[u8] =
    include_bytes!("../../attestation/tests/vectors/tdx/v4-phala/collateral.json");
const SNP_NOW: OffsetDateTime = datetime!(2025-10-01 00:00:00 UTC);
const TDX_NOW: OffsetDateTime = datetime!(2025-06-25 00:00:00 UTC);

fn cache(tag: &str) -> (std::path::PathBuf, EndorsementCache) {
    let dir = std::env::temp_dir().join(format!("cloister-cache-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (dir.clone(), EndorsementCache::new(&dir))
}

/// A document as an enclave would send it, without endorsements.
fn bare(evidence: &[u8]) -> AttestationDocument {
    AttestationDocument {
        tee: "snp".into(),
        nonce: vec![0; 32],
        evidence: evidence.to_vec(),
        vek: None,
        cert_chain: None,
        collateral: None,
        bindings: Bindings::default(),
    }
}

#[test]
fn a_cached_vcek_verifies_a_report_that_came_without_one() {
    let (dir, cache) = cache("snp");
    assert_eq!(cache.lookup(MILAN_REPORT), Endorsements::default());
    let path = cache.add_vek(MILAN_REPORT, MILAN_VCEK, SNP_NOW).unwrap();
    assert!(path.starts_with(dir.join("snp/vek")));
    let found = cache.lookup(MILAN_REPORT);
    assert_eq!(found.vek.as_deref(), Some(MILAN_VCEK));
    // Filed by chip and TCB: another chip finds nothing.
    assert_eq!(cache.lookup(TURIN_REPORT).vek, None);

    let report_data = *Evidence::parse(MILAN_REPORT).unwrap().report_data();
    let policy = AppraisalPolicy::report_only();
    let document = bare(MILAN_REPORT);
    let appraisal = document
        .verify_bound(&report_data, &found, &policy, SNP_NOW)
        .unwrap();
    assert!(appraisal.result().verified);
    // Without the cache the same document cannot be verified.
    let refused = document.verify_bound(&report_data, &Endorsements::default(), &policy, SNP_NOW);
    assert!(
        matches!(refused, Err(RaTlsError::Rejected { .. })),
        "{refused:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn only_a_vcek_that_signs_the_report_is_filed() {
    let (dir, cache) = cache("wrong");
    assert!(matches!(
        cache.add_vek(MILAN_REPORT, TURIN_VCEK, SNP_NOW),
        Err(VaultError::InvalidParams(_))
    ));
    assert!(matches!(
        cache.add_vek(TDX_QUOTE, MILAN_VCEK, SNP_NOW),
        Err(VaultError::InvalidParams(_))
    ));
    assert_eq!(cache.lookup(MILAN_REPORT).vek, None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cached_tdx_collateral_gives_the_tcb_status() {
    let (dir, cache) = cache("tdx");
    assert!(matches!(
        cache.set_collateral(b"{}"),
        Err(VaultError::InvalidParams(_))
    ));
    cache.set_collateral(TDX_COLLATERAL).unwrap();
    let found = cache.lookup(TDX_QUOTE);
    assert_eq!(found.collateral.as_deref(), Some(TDX_COLLATERAL));
    let report_data = *Evidence::parse(TDX_QUOTE).unwrap().report_data();
    let appraisal = bare(TDX_QUOTE)
        .verify_bound(
            &report_data,
            &found,
            &AppraisalPolicy::report_only(),
            TDX_NOW,
        )
        .unwrap();
    assert_eq!(appraisal.result().tcb_status.as_deref(), Some("UpToDate"));
    let _ = std::fs::remove_dir_all(dir);
}
