//! `cloister policy build|hash|test|eval`: outputs and exit codes, on the
//! hand-written WAT module (no wasm toolchain needed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The WAT module, found at run time: a test binary the shared build cache
/// kept from a checkout elsewhere must not look there.
fn wat() -> String {
    format!(
        "{}/../policies/modules/size-limit/size-limit.wat",
        manifest_dir()
    )
}

fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .unwrap()
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloister-policy-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A source manifest using the WAT module, and the bundle built from it.
fn built(d: &Path) -> (PathBuf, String) {
    std::fs::write(
        d.join("policy.toml"),
        format!("abi = 1\nname = \"cli\"\n[[modules]]\nname = \"size-limit\"\nfile = {:?}\ngates = [\"input\"]\n", wat()),
    )
    .unwrap();
    let bundle = d.join("bundle");
    let out = cloister(&[
        "policy",
        "build",
        &s(&d.join("policy.toml")),
        "--out",
        &s(&bundle),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["modules"][0]["file"], "size-limit.wasm");
    (bundle, v["digest"].as_str().unwrap().to_owned())
}

#[test]
fn build_then_hash_give_the_same_digest_and_tampering_is_refused() {
    let d = dir("hash");
    let (bundle, digest) = built(&d);
    assert_eq!(digest.len(), 64);
    let out = cloister(&["policy", "hash", &s(&bundle), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["digest"], digest.as_str());
    let human = cloister(&["policy", "hash", &s(&bundle)]);
    assert!(String::from_utf8_lossy(&human.stdout).contains(&digest));

    let module = bundle.join("size-limit.wasm");
    let mut bytes = std::fs::read(&module).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&module, bytes).unwrap();
    let out = cloister(&["policy", "hash", &s(&bundle), "--json"]);
    assert_eq!(out.status.code(), Some(1), "a tampered module is refused");
    assert!(json(&out)["error"].as_str().unwrap().contains("pins"));

    let out = cloister(&["policy", "hash", &s(&d.join("nowhere"))]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn build_refuses_what_the_engine_would() {
    let d = dir("refuse");
    std::fs::write(d.join("bad.wat"), "(module (memory (export \"memory\") 1))").unwrap();
    std::fs::write(
        d.join("policy.toml"),
        "abi = 1\nname = \"bad\"\n[[modules]]\nname = \"bad\"\nfile = \"bad.wat\"\n",
    )
    .unwrap();
    let out = cloister(&[
        "policy",
        "build",
        &s(&d.join("policy.toml")),
        "--out",
        &s(&d.join("b")),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["error"]
        .as_str()
        .unwrap()
        .contains("cloister_policy_abi_v1"));
    assert!(
        !d.join("b").exists(),
        "nothing is written for a refused bundle"
    );

    std::fs::write(
        d.join("policy.toml"),
        "abi = 2\nname = \"x\"\nmodules = []\n",
    )
    .unwrap();
    let out = cloister(&[
        "policy",
        "build",
        &s(&d.join("policy.toml")),
        "--out",
        &s(&d.join("b")),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn eval_exits_by_the_decision_and_reports_timing() {
    let d = dir("eval");
    let (bundle, digest) = built(&d);
    let request = d.join("request.json");
    std::fs::write(
        &request,
        r#"{"role":"clinician","purpose_of_use":"TREAT","task":"chat","text":"hello"}"#,
    )
    .unwrap();
    let out = cloister(&[
        "policy",
        "eval",
        &s(&bundle),
        "--request",
        &s(&request),
        "--repeat",
        "50",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["bundle"], digest.as_str());
    assert_eq!(v["timing"]["evaluations"], 50);
    assert!(v["timing"]["p99_us"].as_f64().unwrap() > 0.0);

    let big = format!(
        r#"{{"role":"clinician","purpose_of_use":"TREAT","task":"chat","text":"{}"}}"#,
        "x".repeat(70_000)
    );
    std::fs::write(&request, big).unwrap();
    let out = cloister(&["policy", "eval", &s(&bundle), "--request", &s(&request)]);
    assert_eq!(out.status.code(), Some(1), "denied");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DENIED") && text.contains("input_too_large"),
        "{text}"
    );

    std::fs::write(&request, "not json").unwrap();
    let out = cloister(&["policy", "eval", &s(&bundle), "--request", &s(&request)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn test_runs_cases_and_fails_on_a_wrong_expectation() {
    let d = dir("cases");
    let cases = &format!(
        "{}/../policies/modules/size-limit/cases.toml",
        manifest_dir()
    );
    let out = cloister(&["policy", "test", &wat(), "--cases", cases, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["failed"], 0);

    let wrong = d.join("wrong.toml");
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"expects a denial it will not get\"\nexpect = \"deny\"\nrequest = { role = \"r\", purpose_of_use = \"p\", task = \"t\", time = \"2026-12-01T00:00:00Z\", text = \"short\" }\n",
    )
    .unwrap();
    let out = cloister(&["policy", "test", &wat(), "--cases", &s(&wrong)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("expected deny, got allow"));
}
