//! `cloister verify` as a user runs it: the real binary, the real vectors,
//! the documented exit codes and JSON contract.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn vectors() -> PathBuf {
    // Found at run time: a test binary the shared build cache kept from a
    // checkout elsewhere must not look there.
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../attestation/tests/vectors")
}

fn v(path: &str) -> String {
    vectors().join(path).display().to_string()
}

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

const SNP_NOW: &str = "2025-10-01T00:00:00Z";
const TDX_NOW: &str = "2025-06-25T00:00:00Z";

#[test]
fn milan_hex_report_is_accepted_with_the_json_contract() {
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("snp/milan-v2-virtee/report_milan.hex"),
        "--vek",
        &v("snp/milan-v2-virtee/vcek.der"),
        "--cert-chain",
        &v("trust/amd/ask_ark_milan.pem"),
        "--now",
        SNP_NOW,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6);
    for key in [
        "tee",
        "verified",
        "verdict",
        "tcb_status",
        "reasons",
        "claims",
    ] {
        assert!(keys.contains(&key), "missing {key}");
    }
    assert_eq!(j["tee"], "snp");
    assert_eq!(j["verified"], true);
    assert_eq!(j["verdict"], "accept");
    assert_eq!(j["tcb_status"], Value::Null);
    assert_eq!(j["reasons"], serde_json::json!([]));
    assert_eq!(j["claims"]["policy"]["raw"], "0x30000");
    assert_eq!(j["claims"]["reported_tcb"]["microcode"], 115);
}

#[test]
fn turin_report_is_accepted_with_the_builtin_amd_chain() {
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("snp/turin-v5-oak/report.bin"),
        "--vek",
        &v("snp/turin-v5-oak/vcek.der"),
        "--now",
        SNP_NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["claims"]["reported_tcb"]["fmc"], 0);
}

#[test]
fn genoa_and_vlek_reports_are_accepted_and_say_so() {
    for (report, vek, product, kind) in [
        (
            "snp/genoa-v3-trustee-azure/report.bin",
            "snp/genoa-v3-trustee-azure/vcek.pem",
            "Genoa",
            "VCEK",
        ),
        (
            "snp/milan-vlek-v3-trustee-aws/report.bin",
            "snp/milan-vlek-v3-trustee-aws/vlek.der",
            "Milan",
            "VLEK",
        ),
    ] {
        let out = cloister(&[
            "verify",
            "--evidence",
            &v(report),
            "--vek",
            &v(vek),
            "--now",
            "2025-06-01T00:00:00Z",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{report}");
        let j = json(&out);
        assert_eq!(j["claims"]["product"], product);
        assert_eq!(j["claims"]["vek"], kind);
    }
}

#[test]
fn tdx_with_collateral_reports_its_tcb_status() {
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("tdx/v4-phala/quote.bin"),
        "--collateral",
        &v("tdx/v4-phala/collateral.json"),
        "--now",
        TDX_NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["tee"], "tdx");
    assert_eq!(j["tcb_status"], "UpToDate");

    let out = cloister(&[
        "verify",
        "--evidence",
        &v("tdx/v4-phala/quote.bin"),
        "--now",
        TDX_NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["tcb_status"], Value::Null);
}

#[test]
fn expired_collateral_is_a_rejection() {
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("tdx/v4-phala/quote.bin"),
        "--collateral",
        &v("tdx/v4-phala/collateral.json"),
        "--now",
        "2025-07-20T00:00:00Z",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["verified"], false);
    assert_eq!(j["verdict"], "reject");
    assert!(j["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("TCB info is not current"));
}

#[test]
fn negative_vectors_are_rejected_naming_the_signature() {
    for (evidence, extra, now) in [
        (
            "negative/snp-milan-v2-virtee-sigflip.bin",
            "snp/milan-v2-virtee/vcek.der",
            SNP_NOW,
        ),
        (
            "negative/snp-milan-v2-virtee-measurement-flip.bin",
            "snp/milan-v2-virtee/vcek.der",
            SNP_NOW,
        ),
        ("negative/tdx-v4-phala-quote-sigflip.bin", "", TDX_NOW),
        ("negative/tdx-v4-phala-mrtd-flip.bin", "", TDX_NOW),
    ] {
        let evidence = v(evidence);
        let vek = v(extra);
        let mut args = vec!["verify", "--evidence", &evidence, "--now", now];
        if !extra.is_empty() {
            args.extend(["--vek", &vek]);
        }
        let out = cloister(&args);
        assert_eq!(out.status.code(), Some(1), "{evidence}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("REJECT"), "{text}");
        assert!(text.contains("signature does not verify"), "{text}");
    }
}

#[test]
fn readable_summary_names_the_failing_check() {
    // A genuine Turin VCEK presented for the Milan chip's report.
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("snp/milan-v2-virtee/report.bin"),
        "--vek",
        &v("snp/turin-v5-oak/vcek.der"),
        "--cert-chain",
        &v("trust/amd/ask_ark_turin_vcek.pem"),
        "--now",
        SNP_NOW,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VCEK hwID does not match report chip_id"),
        "{text}"
    );
}

#[test]
fn truncated_evidence_is_a_rejection_not_a_usage_error() {
    let dir = tempdir();
    let path = dir.join("short.bin");
    std::fs::write(
        &path,
        &std::fs::read(v("snp/milan-v2-virtee/report.bin")).unwrap()[..600],
    )
    .unwrap();
    let out = cloister(&["verify", "--evidence", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["verified"], false);
    assert_eq!(j["tee"], "snp");
}

#[test]
fn policy_rejection_keeps_verified_true() {
    let dir = tempdir();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[snp]\nmeasurements = [\"{}\"]\nchip_ids = \"any\"\nminimum_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nallow_smt = true\n",
            "00".repeat(48)
        ),
    )
    .unwrap();
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("snp/milan-v2-virtee/report.bin"),
        "--vek",
        &v("snp/milan-v2-virtee/vcek.der"),
        "--policy",
        policy.to_str().unwrap(),
        "--now",
        SNP_NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(
        (j["verified"].clone(), j["verdict"].clone()),
        (Value::Bool(true), "reject".into())
    );
    assert!(j["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("MEASUREMENT 7a1e5c26"));
}

#[test]
fn usage_errors_exit_2() {
    let report = v("snp/milan-v2-virtee/report.bin");
    // Missing file.
    assert_eq!(
        cloister(&["verify", "--evidence", "/nonexistent/evidence"])
            .status
            .code(),
        Some(2)
    );
    // SNP evidence without its VEK.
    let out = cloister(&["verify", "--evidence", &report]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vek"));
    // Endorsements for the other TEE are refused rather than ignored.
    let out = cloister(&[
        "verify",
        "--evidence",
        &report,
        "--vek",
        &v("snp/milan-v2-virtee/vcek.der"),
        "--collateral",
        &v("tdx/v4-phala/collateral.json"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--collateral is for TDX"));
    let out = cloister(&[
        "verify",
        "--evidence",
        &v("tdx/v4-phala/quote.bin"),
        "--vek",
        &v("snp/milan-v2-virtee/vcek.der"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Bad time.
    assert_eq!(
        cloister(&["verify", "--evidence", &report, "--now", "yesterday"])
            .status
            .code(),
        Some(2)
    );
    // No evidence flag at all.
    assert_eq!(cloister(&["verify"]).status.code(), Some(2));
    // A policy that does not parse.
    let dir = tempdir();
    let policy = dir.join("bad.toml");
    std::fs::write(&policy, "[snp]\nmeasurements = []\n").unwrap();
    let out = cloister(&[
        "verify",
        "--evidence",
        &report,
        "--vek",
        &v("snp/milan-v2-virtee/vcek.der"),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_the_contract() {
    let out = cloister(&["verify", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--evidence",
        "--vek",
        "--cert-chain",
        "--collateral",
        "--policy",
        "--allow-debug",
        "--now",
        "--json",
        "Exit status",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cloister-cli-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn simulated_evidence_is_insecure_and_refused_by_default() {
    use cloister_attestation::sim::SimTee;
    use cloister_attestation::types::{HostData, Measurement, ReportData};

    let dir = tempdir();
    let tee = SimTee::new(Measurement([0x42; 48]), HostData([0; 32])).unwrap();
    let evidence = dir.join("sim.bin");
    std::fs::write(&evidence, tee.report(&ReportData([7; 64]))).unwrap();

    let out = cloister(&["verify", "--evidence", evidence.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("REJECT: SIM (INSECURE"), "{text}");
    assert!(
        text.contains("INSECURE (simulated TEE) evidence is not allowed"),
        "{text}"
    );

    let policy = dir.join("sim.toml");
    std::fs::write(
        &policy,
        format!(
            "allow_simulated = true\n[sim]\nmeasurements = [\"{}\"]\n",
            "42".repeat(48)
        ),
    )
    .unwrap();
    let out = cloister(&[
        "verify",
        "--evidence",
        evidence.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["tee"], "sim");
    assert_eq!(v["claims"]["report_data"], "07".repeat(64));

    let out = cloister(&[
        "verify",
        "--evidence",
        evidence.to_str().unwrap(),
        "--collateral",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}
