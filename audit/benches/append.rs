//! Durable audit appends, beside their baselines in the same run:
//!
//! - `append/one_writer`: one query record at a time through the log (seal,
//!   encode, write, `fdatasync`, sign and publish a checkpoint), against
//!   `raw_write_fdatasync` (the same bytes appended and synced, nothing
//!   else) and `raw_write` (no sync: what durability costs).
//! - `group_commit/N`: N threads appending at once; criterion's time per
//!   element is the time per record, so records/s = 1 / that. Against the
//!   baseline of one `fdatasync` per record.
//! - `query_path`: the in-process query path (standard policy bundle's
//!   input gate, an echo answer, its output gate) with and without its
//!   audit record, for the audit's share of a query. Needs the built bundle
//!   (`scripts/build-policies`); skipped with a note if it is missing.
//!
//! The log is written to `$CLOISTER_BENCH_DIR` or the system temp dir: run
//! it on the filesystem the deployment will use, fsync cost is the figure.
//! Run: `cargo bench -p cloister-audit --bench append`

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_audit::record::Outcome;
use cloister_audit::{AuditLog, AuditorKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn scratch() -> tempfile::TempDir {
    match std::env::var_os("CLOISTER_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn record_line(log: &AuditLog) -> Vec<u8> {
    let (event, _) = common::query(log, "dr-bench", "MRN-1", Outcome::Answered);
    let mut line = serde_json::to_vec(&event).unwrap();
    // About the size of a sealed query record.
    line.resize(line.len() + 200, b' ');
    line.push(b'\n');
    line
}

fn bench(c: &mut Criterion) {
    let auditor = AuditorKey::generate().unwrap();
    let dir = scratch();
    let log = Arc::new(common::start(dir.path(), &auditor));
    let line = record_line(&log);

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_writer", |b| {
        b.iter(|| {
            let (event, sealed) = common::query(&log, "dr-bench", "MRN-1", Outcome::Answered);
            black_box(log.append(event, sealed).unwrap())
        });
    });
    let raw_dir = scratch();
    let mut raw = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(raw_dir.path().join("raw.jsonl"))
        .unwrap();
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter(|| {
            raw.write_all(&line).unwrap();
            raw.sync_data().unwrap();
        });
    });
    group.bench_function("raw_write", |b| {
        b.iter(|| raw.write_all(&line).unwrap());
    });
    group.finish();

    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for threads in [1usize, 8, 32] {
        group.bench_function(threads.to_string(), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64).max(1);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        let log = log.clone();
                        scope.spawn(move || {
                            for _ in 0..per_thread {
                                let (event, sealed) =
                                    common::query(&log, "dr-bench", "MRN-1", Outcome::Answered);
                                log.append(event, sealed).unwrap();
                            }
                        });
                    }
                });
                // Time per record appended.
                let elapsed = started.elapsed();
                elapsed.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
            });
        });
    }
    group.finish();

    query_path(c, &log);
}

fn bundle_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_POLICY_BUNDLE") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("policy-bundles/standard")
}

fn query_path(c: &mut Criterion, log: &Arc<AuditLog>) {
    use cloister_policy::abi::{Gate, Request};
    let Ok(bundle) = cloister_policy::Bundle::read(&bundle_dir()) else {
        eprintln!(
            "query_path skipped: no standard policy bundle at {} (run scripts/build-policies)",
            bundle_dir().display()
        );
        return;
    };
    let engine =
        cloister_policy::PolicyEngine::new(cloister_policy::EngineSettings::default()).unwrap();
    let loaded = engine.load(&bundle).unwrap();
    let request = Request {
        issuer: "https://idp.hospital.example".into(),
        principal: "dr-lee".into(),
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        caller_patient: Some("pt-1".into()),
        patient: Some("pt-1".into()),
        task: "chat".into(),
        time: "2026-12-01T09:00:00Z".into(),
        text: "68-year-old with type 2 diabetes, eGFR 48, BP 152/94: which antihypertensive first?"
            .into(),
        ..Request::default()
    };
    let gated = |request: &Request| {
        let input = loaded.evaluate(Gate::Input, request);
        let mut answer = request.clone();
        answer.text = format!("You asked: {}", input.text);
        let output = loaded.evaluate(Gate::Output, &answer);
        (input, output)
    };
    let mut group = c.benchmark_group("query_path");
    group.bench_function("gates_and_echo", |b| b.iter(|| black_box(gated(&request))));
    group.bench_function("gates_echo_and_audit", |b| {
        b.iter(|| {
            let outcome = gated(&request);
            let (event, sealed) = common::query(log, "dr-lee", "pt-1", Outcome::Answered);
            black_box((outcome, log.append(event, sealed).unwrap()))
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
