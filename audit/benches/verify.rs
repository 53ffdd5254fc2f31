//! Verifying a log, beside the floor of hashing its bytes: an auditor's
//! `cloister audit verify` on a log of 20 000 query records written by 32
//! concurrent appenders (so commits, and checkpoint records, are shared as
//! under load), against SHA-256 over every line alone.
//!
//! Run: `cargo bench -p cloister-audit --bench verify`

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
use std::sync::Arc;
use std::time::Duration;

use cloister_audit::record::{Event, Outcome};
use cloister_audit::segment::read_dir;
use cloister_audit::verify::{verify_contents, VerifyOptions};
use cloister_audit::AuditorKey;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORDS: u64 = 20_000;
const WRITERS: u64 = 32;

fn bench(c: &mut Criterion) {
    let auditor = AuditorKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(common::start(dir.path(), &auditor));
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let log = log.clone();
            scope.spawn(move || {
                for i in 0..RECORDS / WRITERS {
                    let (event, sealed) =
                        common::query(&log, &format!("dr-{w}-{i}"), "MRN-1", Outcome::Answered);
                    log.append(event, sealed).unwrap();
                }
            });
        }
    });
    drop(log);
    let contents = read_dir(dir.path()).unwrap();
    let bytes: u64 = contents
        .records
        .iter()
        .map(|r| r.raw.len() as u64 + 1)
        .sum();
    let checkpoints = contents
        .records
        .iter()
        .filter(|r| matches!(&r.record, Ok(rec) if matches!(rec.event, Event::Checkpoint(_))))
        .count();
    eprintln!(
        "log: {} records ({checkpoints} of them checkpoints), {bytes} bytes",
        contents.records.len()
    );
    let policy = VerifyOptions {
        checkpoints: Vec::new(),
        policy: Some(common::appraisal()),
    };
    assert!(verify_contents(&contents, &policy).valid);

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(contents.records.len() as u64));
    group.sample_size(10);
    group.bench_function("read_and_verify", |b| {
        b.iter(|| {
            let contents = read_dir(dir.path()).unwrap();
            black_box(verify_contents(&contents, &policy).valid)
        });
    });
    group.bench_function("verify_only", |b| {
        b.iter(|| black_box(verify_contents(&contents, &policy).valid));
    });
    group.bench_function("sha256_of_every_line", |b| {
        use sha2::Digest as _;
        b.iter(|| {
            for r in &contents.records {
                black_box(sha2::Sha256::digest(&r.raw));
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
