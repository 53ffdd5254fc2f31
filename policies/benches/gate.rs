//! The policy gate per query: the standard bundle's input and output gates,
//! each module in a fresh instance, beside a bare native call of the same
//! module logic (the modules' `rlib`s, configuration already parsed).
//!
//! Needs the built standard bundle: run `scripts/build-policies` first (or
//! set CLOISTER_POLICY_BUNDLE to a bundle directory).
//! Run: `cargo bench -p cloister-policy --bench gate`. Before criterion's
//! figures it prints p50/p99 over 20 000 queries of each, as the issue's
//! goal is stated in percentiles.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use cloister_policy::abi::{Gate, Request, Source};
use cloister_policy::{Bundle, EngineSettings, PolicyEngine};
use criterion::{criterion_group, criterion_main, Criterion};

fn bundle_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_POLICY_BUNDLE") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("policy-bundles/standard")
}

fn prompt() -> Request {
    Request {
        issuer: "https://idp.hospital.example".into(),
        principal: "dr-lee".into(),
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        caller_patient: Some("pt-1".into()),
        patient: Some("pt-1".into()),
        task: "guideline_qa".into(),
        time: "2026-12-01T09:00:00Z".into(),
        text: "68-year-old with type 2 diabetes, eGFR 48, BP 152/94 on two visits despite \
               lifestyle changes. Already on metformin 1 g twice daily. Which antihypertensive \
               should be first line, and does the kidney function change the choice?"
            .into(),
        ..Request::default()
    }
}

fn answer(prompt: &Request) -> Request {
    Request {
        text: "For adults with type 2 diabetes and hypertension, offer an ACE inhibitor or an \
               ARB first line [S1]; with CKD and albuminuria this is preferred [S2]. Check \
               potassium and eGFR 1-2 weeks after starting [S1]."
            .into(),
        sources: vec![
            Source {
                id: "S1".into(),
                title: "Hypertension in adults".into(),
                section: "1.4".into(),
                doi: None,
            },
            Source {
                id: "S2".into(),
                title: "Chronic kidney disease".into(),
                section: "1.6".into(),
                doi: None,
            },
        ],
        ..prompt.clone()
    }
}

fn percentiles(name: &str, mut run: impl FnMut()) {
    for _ in 0..2_000 {
        run();
    }
    let mut samples: Vec<f64> = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    eprintln!(
        "{name:<34} p50 {:>7.2} µs   p99 {:>7.2} µs   max {:>8.2} µs",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn bench(c: &mut Criterion) {
    let dir = bundle_dir();
    let bundle = Bundle::read(&dir).unwrap_or_else(|e| {
        panic!(
            "{e}: run scripts/build-policies first (looked in {})",
            dir.display()
        )
    });
    let engine = PolicyEngine::new(EngineSettings::default()).unwrap();
    let loaded = engine.load(&bundle).unwrap();
    let prompt = prompt();
    let answer = answer(&prompt);
    let wasm_query = || {
        let input = loaded.evaluate(Gate::Input, black_box(&prompt));
        assert!(input.allowed, "{:?}", input.modules);
        let output = loaded.evaluate(Gate::Output, black_box(&answer));
        assert!(output.allowed, "{:?}", output.modules);
    };

    // The same logic, natively, configuration parsed once.
    let config = |name: &str| {
        let spec = bundle
            .manifest
            .modules
            .iter()
            .find(|m| m.name == name)
            .unwrap();
        serde_json::to_value(&spec.config).unwrap()
    };
    let access: cloister_access::Config = serde_json::from_value(config("access")).unwrap();
    let phi: cloister_phi_guard::Config = serde_json::from_value(config("phi-guard")).unwrap();
    let phi_kinds = cloister_phi_guard::kinds(&phi).unwrap();
    let citations: cloister_citations::Config =
        serde_json::from_value(config("citations")).unwrap();
    let native_query = || {
        let p = black_box(&prompt);
        black_box(p.text.len() <= 64 * 1024);
        black_box(cloister_access::decide(&access, p));
        black_box(cloister_phi_guard::decide(&phi, &phi_kinds, p));
        let a = black_box(&answer);
        black_box(cloister_phi_guard::decide(&phi, &phi_kinds, a));
        black_box(cloister_citations::decide(&citations, a));
    };

    // Where the time goes: each module's share, averaged.
    let mut per_module: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for _ in 0..2_000 {
        for outcome in [
            loaded.evaluate(Gate::Input, &prompt),
            loaded.evaluate(Gate::Output, &answer),
        ] {
            for m in outcome.modules {
                let entry = per_module
                    .entry(format!("{}@{}", m.module, outcome.gate.as_str()))
                    .or_default();
                entry.0 += m.micros;
                entry.1 += m.fuel_used;
            }
        }
    }
    for (module, (micros, fuel)) in &per_module {
        eprintln!(
            "  {module:<22} mean {:>6.1} µs, {:>8} fuel",
            *micros as f64 / 2_000.0,
            fuel / 2_000
        );
    }
    eprintln!("per query (input gate + output gate), 20 000 queries:");
    percentiles("standard bundle, wasm, fresh", wasm_query);
    percentiles("same logic, native", native_query);

    let mut group = c.benchmark_group("policy_gate_per_query");
    group.bench_function("standard_bundle_wasm_fresh_instances", |b| {
        b.iter(wasm_query)
    });
    group.bench_function("native_same_logic", |b| b.iter(native_query));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
