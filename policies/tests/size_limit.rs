//! The hand-written WAT module speaks the same ABI as the SDK's modules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_policy::abi::{Effect, Gate, Request};
use cloister_policy::manifest::Manifest;
use cloister_policy::{Bundle, EngineSettings, PolicyEngine};

const WAT: &str = include_str!("../modules/size-limit/size-limit.wat");

fn request(text: String) -> Request {
    Request {
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        task: "chat".into(),
        time: "2026-12-01T00:00:00Z".into(),
        text,
        ..Request::default()
    }
}

#[test]
fn allows_ordinary_prompts_and_denies_oversized_ones() {
    let manifest = Manifest::parse(
        "abi = 1\nname = \"t\"\n[[modules]]\nname = \"size-limit\"\nfile = \"s.wasm\"\ngates = [\"input\"]\n[modules.limits]\nfuel = 1000\nmemory_mib = 2\n",
    )
    .unwrap();
    let bundle = Bundle::from_parts(manifest, vec![wat::parse_str(WAT).unwrap()]);
    let engine = PolicyEngine::new(EngineSettings {
        max_instances: 2,
        max_memory_mib: 4,
    })
    .unwrap();
    let loaded = engine.load(&bundle).unwrap();

    let small = loaded.evaluate(
        Gate::Input,
        &request("What is first-line for hypertension?".into()),
    );
    assert!(small.allowed);
    assert_eq!(small.modules[0].effect, Effect::Allow);

    let large = loaded.evaluate(Gate::Input, &request("x".repeat(70_000)));
    assert!(!large.allowed);
    assert_eq!(large.modules[0].reasons[0].code, "input_too_large");
    assert!(
        large.modules[0].failure.is_none(),
        "a decision, not a failure"
    );

    // Past its 2 MiB memory the module cannot take the input at all: still a
    // denial, now for the failure.
    let huge = loaded.evaluate(Gate::Input, &request("x".repeat(3 * 1024 * 1024)));
    assert!(!huge.allowed);
    assert!(huge.modules[0].failure.is_some());
}
