//! Appraisal of the real vectors against policies: every policy knob has a
//! case that accepts and one that rejects with the exact violation.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_attestation::evidence::{
    attest, EndorsementInputs, Evidence, Tee, Verdict, VerifiedEvidence,
};
use cloister_attestation::policy::{AppraisalPolicy, Violation};
use cloister_attestation::Error;
use time::macros::datetime;
use time::OffsetDateTime;

const MILAN_REPORT: &[u8] = include_bytes!("vectors/snp/milan-v2-virtee/report.bin");
const MILAN_VCEK: &[u8] = include_bytes!("vectors/snp/milan-v2-virtee/vcek.der");
const TDX_QUOTE: &[u8] = include_bytes!("vectors/tdx/v4-phala/quote.bin");
const TDX_COLLATERAL: &[u8] = include_bytes!("vectors/tdx/v4-phala/collateral.json");
const SNP_NOW: OffsetDateTime = datetime!(2025-10-01 00:00:00 UTC);
const TDX_NOW: OffsetDateTime = datetime!(2025-06-25 00:00:00 UTC);

const MILAN_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const PHALA_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";

fn snp() -> VerifiedEvidence {
    let inputs = EndorsementInputs {
        vek: Some(MILAN_VCEK),
        ..Default::default()
    };
    Evidence::parse(MILAN_REPORT)
        .unwrap()
        .verify(&inputs, SNP_NOW)
        .unwrap()
}

fn tdx(with_collateral: bool) -> VerifiedEvidence {
    let inputs = EndorsementInputs {
        collateral: with_collateral.then_some(TDX_COLLATERAL),
        ..Default::default()
    };
    Evidence::parse(TDX_QUOTE)
        .unwrap()
        .verify(&inputs, TDX_NOW)
        .unwrap()
}

fn snp_policy(body: &str) -> AppraisalPolicy {
    AppraisalPolicy::from_toml(&format!("[snp]\n{body}")).unwrap()
}

const SNP_BASE: &str = "chip_ids = \"any\"\nminimum_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }\nallow_smt = true\n";

#[test]
fn snp_policy_accepts_the_right_measurement_and_rejects_others() {
    let good = snp_policy(&format!(
        "measurements = [\"{MILAN_MEASUREMENT}\"]\n{SNP_BASE}"
    ));
    let appraisal = snp().appraise(&good, SNP_NOW).unwrap();
    assert_eq!(appraisal.result().verdict, Verdict::Accept);
    assert_eq!(appraisal.result().tee, Some(Tee::Snp));

    let other = "00".repeat(48);
    let bad = snp_policy(&format!("measurements = [\"{other}\"]\n{SNP_BASE}"));
    assert_eq!(
        snp().appraise(&bad, SNP_NOW).unwrap_err(),
        Error::PolicyRejected(vec![Violation::MeasurementNotAllowed {
            register: "MEASUREMENT",
            found: MILAN_MEASUREMENT.into()
        }])
    );
}

#[test]
fn snp_tcb_smt_chip_abi_and_report_data_knobs() {
    let p = snp_policy("measurements = \"any\"\nchip_ids = \"any\"\nminimum_tcb = { bootloader = 3, tee = 0, snp = 9, microcode = 116 }\n");
    assert_eq!(
        snp().violations(&p, SNP_NOW),
        vec![
            Violation::TcbTooLow {
                component: "SNP",
                found: 8,
                minimum: 9
            },
            Violation::TcbTooLow {
                component: "microcode",
                found: 115,
                minimum: 116
            },
            // allow_smt defaults to false and the Milan guest policy allows SMT.
            Violation::SmtNotAllowed,
        ]
    );
    let p = snp_policy(&format!(
        "measurements = \"any\"\nchip_ids = [\"{}\"]\nminimum_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nallow_smt = true\nminimum_abi = {{ major = 1, minor = 51 }}\n",
        "ab".repeat(64)
    ));
    let v = snp().violations(&p, SNP_NOW);
    assert!(matches!(v[0], Violation::ChipIdNotAllowed { .. }));
    assert_eq!(
        v[1],
        Violation::AbiTooLow {
            found: "0.0".into(),
            minimum: "1.51".into()
        }
    );

    let p = AppraisalPolicy::from_toml(&format!(
        "report_data = \"{}\"\n[snp]\nmeasurements = \"any\"\n{SNP_BASE}",
        "00".repeat(64)
    ))
    .unwrap();
    assert!(matches!(
        snp().violations(&p, SNP_NOW)[..],
        [Violation::ReportDataMismatch { .. }]
    ));
}

#[test]
fn a_policy_without_a_tee_section_rejects_that_tee() {
    let p = snp_policy(&format!("measurements = \"any\"\n{SNP_BASE}"));
    assert_eq!(
        tdx(true).violations(&p, TDX_NOW),
        vec![Violation::TeeNotAllowed { tee: "tdx" }]
    );
}

const TDX_ANY: &str = "rtmr0 = \"any\"\nrtmr1 = \"any\"\nrtmr2 = \"any\"\nrtmr3 = \"any\"\nmr_config_id = \"any\"\nmr_owner = \"any\"\n";

#[test]
fn tdx_policy_registers_and_tcb_status() {
    let p = AppraisalPolicy::from_toml(&format!(
        "[tdx]\nmrtd = [\"{PHALA_MRTD}\"]\n{TDX_ANY}accepted_tcb_statuses = [\"UpToDate\"]\n"
    ))
    .unwrap();
    let appraisal = tdx(true).appraise(&p, TDX_NOW).unwrap();
    assert_eq!(appraisal.result().tcb_status.as_deref(), Some("UpToDate"));

    // Without collateral the status is unknown, which a status list cannot accept.
    assert_eq!(
        tdx(false).violations(&p, TDX_NOW),
        vec![Violation::TcbStatusNotAccepted {
            found: "unknown (no collateral)".into()
        }]
    );

    let p = AppraisalPolicy::from_toml(&format!(
        "[tdx]\nmrtd = [\"{}\"]\n{TDX_ANY}accepted_tcb_statuses = [\"OutOfDate\"]\n",
        "11".repeat(48)
    ))
    .unwrap();
    assert_eq!(
        tdx(true).violations(&p, TDX_NOW),
        vec![
            Violation::MeasurementNotAllowed {
                register: "MRTD",
                found: PHALA_MRTD.into()
            },
            Violation::TcbStatusNotAccepted {
                found: "UpToDate".into()
            },
        ]
    );
}

#[test]
fn collateral_age_limit() {
    let p = |days: u32| {
        AppraisalPolicy::from_toml(&format!(
            "max_collateral_age_days = {days}\n[tdx]\nmrtd = \"any\"\n{TDX_ANY}accepted_tcb_statuses = \"any\"\n"
        ))
        .unwrap()
    };
    // TCB info issued 2025-06-19T10:16:03Z; now is 2025-06-25: under 6 days old.
    assert!(tdx(true).violations(&p(6), TDX_NOW).is_empty());
    assert!(matches!(
        tdx(true).violations(&p(5), TDX_NOW)[..],
        [Violation::CollateralTooOld {
            issued: Some(_),
            max_age_days: 5
        }]
    ));
    assert!(matches!(
        tdx(false).violations(&p(6), TDX_NOW)[..],
        [Violation::CollateralTooOld { issued: None, .. }]
    ));
}

#[test]
fn attest_reports_failures_as_rejections_with_reasons() {
    let policy = AppraisalPolicy::report_only();
    let r = attest(
        &MILAN_REPORT[..100],
        &EndorsementInputs::default(),
        &policy,
        SNP_NOW,
    );
    assert!(!r.verified);
    assert_eq!(r.verdict, Verdict::Reject);
    assert_eq!(r.tee, Some(Tee::Snp));
    assert_eq!(
        r.reasons,
        vec!["SNP report is truncated: needs 1184 bytes, found 100".to_owned()]
    );
    assert_eq!(r.claims, serde_json::json!({}));

    let r = attest(b"hello", &EndorsementInputs::default(), &policy, SNP_NOW);
    assert_eq!(r.tee, None);
    assert!(r.reasons[0].starts_with("evidence format not recognised"));

    let r = attest(
        MILAN_REPORT,
        &EndorsementInputs::default(),
        &policy,
        SNP_NOW,
    );
    assert_eq!(
        r.reasons,
        vec!["SNP evidence cannot be verified without the VCEK or VLEK certificate".to_owned()]
    );

    let inputs = EndorsementInputs {
        vek: Some(MILAN_VCEK),
        ..Default::default()
    };
    let r = attest(MILAN_REPORT, &inputs, &policy, SNP_NOW);
    assert!(r.verified);
    assert_eq!(r.claims["measurement"], MILAN_MEASUREMENT);
    assert_eq!(r.claims["vek"], "VCEK");
}

#[test]
fn the_example_policy_approves_exactly_the_example_evidence() {
    let policy = AppraisalPolicy::from_toml(include_str!("../policy.example.toml")).unwrap();
    assert!(snp().violations(&policy, SNP_NOW).is_empty());
    assert!(tdx(true).violations(&policy, TDX_NOW).is_empty());
    // Without collateral the TDX TCB status is unknown, so it is refused.
    assert_eq!(
        tdx(false).violations(&policy, TDX_NOW),
        vec![
            Violation::TcbStatusNotAccepted {
                found: "unknown (no collateral)".into()
            },
            Violation::CollateralTooOld {
                issued: None,
                max_age_days: 30
            },
        ]
    );
    // The Turin guest is genuine, but not an approved image on an approved chip.
    let turin = Evidence::parse(include_bytes!("vectors/snp/turin-v5-oak/report.bin"))
        .unwrap()
        .verify(
            &EndorsementInputs {
                vek: Some(include_bytes!("vectors/snp/turin-v5-oak/vcek.der")),
                ..Default::default()
            },
            SNP_NOW,
        )
        .unwrap();
    let v = turin.violations(&policy, SNP_NOW);
    assert!(matches!(
        v[0],
        Violation::MeasurementNotAllowed {
            register: "MEASUREMENT",
            ..
        }
    ));
    assert!(matches!(v[1], Violation::ChipIdNotAllowed { .. }));
    assert!(v.contains(&Violation::TcbTooLow {
        component: "boot loader",
        found: 1,
        minimum: 3
    }));
}
