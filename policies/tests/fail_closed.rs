//! A policy module that misbehaves in any way denies, with a reason that
//! names what it did. The modules are written in WAT so each misbehaviour is
//! exactly the one under test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use cloister_policy::abi::{Effect, Gate, Request};
use cloister_policy::manifest::Manifest;
use cloister_policy::{
    Bundle, EngineSettings, GateOutcome, LoadError, ModuleFailure, ModuleRejection, PolicyEngine,
};

/// A module whose `cloister_evaluate` body is `body` (it must leave an i64
/// on the stack); the static decision `{"effect":"allow"}` sits at 16 and
/// `extra` is spliced into the module (imports, more data).
fn module(imports: &str, body: &str, extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 16) "{{\"effect\":\"allow\"}}")
  {extra}
  (func (export "cloister_policy_abi_v1"))
  (func (export "cloister_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "cloister_evaluate") (param i32 i32) (result i64) {body}))"#
    );
    wat::parse_str(text).expect("test module is valid WAT")
}

/// `(ptr << 32) | len` as WAT.
fn packed(ptr: u32, len: u32) -> String {
    format!("i64.const {}", (u64::from(ptr) << 32) | u64::from(len))
}

const ALLOW: &str = "i64.const 68719476754"; // 16 << 32 | 18

fn bundle_of(wasm: Vec<u8>, module_toml: &str) -> Bundle {
    let manifest = Manifest::parse(&format!(
        "abi = 1\nname = \"test\"\n[[modules]]\nname = \"m\"\nfile = \"m.wasm\"\n{module_toml}"
    ))
    .unwrap();
    Bundle::from_parts(manifest, vec![wasm])
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(EngineSettings {
        max_instances: 8,
        max_memory_mib: 64,
    })
    .unwrap()
}

fn request() -> Request {
    Request {
        issuer: "https://idp.example".into(),
        principal: "dr-alice".into(),
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        task: "chat".into(),
        time: "2026-12-01T00:00:00Z".into(),
        text: "What is the first-line treatment for hypertension?".into(),
        ..Request::default()
    }
}

fn evaluate(wasm: Vec<u8>, module_toml: &str) -> GateOutcome {
    let engine = engine();
    let loaded = engine.load(&bundle_of(wasm, module_toml)).unwrap();
    let started = Instant::now();
    let outcome = loaded.evaluate(Gate::Input, &request());
    eprintln!("decided in {:?}: {:?}", started.elapsed(), outcome.modules);
    outcome
}

fn failure_of(outcome: &GateOutcome) -> ModuleFailure {
    assert!(!outcome.allowed, "a failing module must deny");
    let module = outcome.denied_by().expect("the module is recorded");
    assert_eq!(module.effect, Effect::Deny);
    let failure = module.failure.clone().expect("the failure is typed");
    assert_eq!(module.reasons[0].code, format!("module_{}", failure.code()));
    failure
}

fn rejection_of(wasm: Vec<u8>, module_toml: &str) -> ModuleRejection {
    match engine().load(&bundle_of(wasm, module_toml)) {
        Err(LoadError { module, rejection }) => {
            assert_eq!(module, "m");
            rejection
        }
        Ok(_) => panic!("the bundle must be refused"),
    }
}

#[test]
fn a_well_behaved_module_allows() {
    let outcome = evaluate(module("", ALLOW, ""), "");
    assert!(outcome.allowed);
    assert_eq!(outcome.modules.len(), 1);
    assert_eq!(outcome.modules[0].effect, Effect::Allow);
    assert!(outcome.modules[0].fuel_used > 0);
}

#[test]
fn a_trap_denies() {
    let failure = failure_of(&evaluate(module("", "unreachable", ""), ""));
    assert!(
        matches!(&failure, ModuleFailure::Trap { trap } if trap.contains("unreachable")),
        "{failure:?}"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let body = "(loop $forever (br $forever)) i64.const 0";
    let failure = failure_of(&evaluate(
        module("", body, ""),
        "[modules.limits]\nfuel = 1000000\ntimeout_ms = 5000\n",
    ));
    assert_eq!(failure, ModuleFailure::OutOfFuel { fuel: 1_000_000 });
}

#[test]
fn an_endless_loop_with_ample_fuel_hits_the_deadline() {
    let body = "(loop $forever (br $forever)) i64.const 0";
    let failure = failure_of(&evaluate(
        module("", body, ""),
        "[modules.limits]\nfuel = 1000000000\ntimeout_ms = 20\n",
    ));
    assert_eq!(failure, ModuleFailure::Timeout { timeout_ms: 20 });
}

#[test]
fn unbounded_memory_growth_hits_the_limit() {
    // Grow a page at a time until refused; a refusal would return -1, so
    // the loop only ends by the host stopping it.
    let body = "(loop $more (drop (memory.grow (i32.const 1))) (br $more)) i64.const 0";
    let failure = failure_of(&evaluate(
        module("", body, ""),
        "[modules.limits]\nmemory_mib = 2\n",
    ));
    assert_eq!(failure, ModuleFailure::MemoryLimit { limit_mib: 2 });
}

#[test]
fn garbage_output_denies() {
    let garbage = r#"(data (i32.const 100) "certainly, allow it")"#;
    let failure = failure_of(&evaluate(module("", &packed(100, 19), garbage), ""));
    assert!(
        matches!(&failure, ModuleFailure::MalformedOutput { detail } if detail.contains("not a decision")),
        "{failure:?}"
    );

    let failure = failure_of(&evaluate(module("", &packed(0xffff_fff0, 64), ""), ""));
    assert!(
        matches!(&failure, ModuleFailure::MalformedOutput { detail } if detail.contains("outside memory")),
        "{failure:?}"
    );

    let huge = packed(0, 10 * 1024 * 1024);
    assert!(matches!(
        failure_of(&evaluate(module("", &huge, ""), "")),
        ModuleFailure::MalformedOutput { .. }
    ));
}

#[test]
fn decisions_that_break_the_rules_deny() {
    let cases = [
        (r#"{"effect":"deny"}"#, "must give a reason"),
        (
            r#"{"effect":"allow","requirements":["x"]}"#,
            "allow carries",
        ),
        (
            r#"{"effect":"redact","redactions":[{"start":0,"end":9999,"replacement":"x"}]}"#,
            "not a span",
        ),
        (
            r#"{"effect":"redact","redactions":[{"start":0,"end":4,"replacement":"x"},{"start":2,"end":6,"replacement":"y"}]}"#,
            "overlaps",
        ),
        (
            r#"{"effect":"deny","reasons":[{"code":"Has Spaces","message":"m"}]}"#,
            "reason code",
        ),
        (r#"{"effect":"maybe"}"#, "not a decision"),
    ];
    for (json, expected) in cases {
        let escaped = json.replace('"', "\\\"");
        let data = format!(r#"(data (i32.const 200) "{escaped}")"#);
        let len = u32::try_from(json.len()).unwrap();
        let failure = failure_of(&evaluate(module("", &packed(200, len), &data), ""));
        assert!(
            matches!(&failure, ModuleFailure::MalformedOutput { detail } if detail.contains(expected)),
            "{json}: {failure:?}"
        );
    }
}

#[test]
fn a_missing_export_is_refused_at_load() {
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "cloister_policy_abi_v1"))
             (func (export "cloister_alloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    assert_eq!(
        rejection_of(wasm, ""),
        ModuleRejection::MissingExport {
            name: "cloister_evaluate".into()
        }
    );
    let no_marker = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "cloister_alloc") (param i32) (result i32) i32.const 0)
             (func (export "cloister_evaluate") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    assert_eq!(
        rejection_of(no_marker, ""),
        ModuleRejection::MissingExport {
            name: "cloister_policy_abi_v1".into()
        }
    );
    let wrong_type = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "cloister_policy_abi_v1"))
             (func (export "cloister_alloc") (param i32) (result i32) i32.const 0)
             (func (export "cloister_evaluate") (param i32 i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    assert!(matches!(
        rejection_of(wrong_type, ""),
        ModuleRejection::WrongExportType { .. }
    ));
}

#[test]
fn an_ungranted_capability_is_refused_at_load() {
    let imports = r#"(import "cloister" "log" (func $log (param i32 i32)))"#;
    let body = format!("(call $log (i32.const 16) (i32.const 18)) {ALLOW}");
    assert_eq!(
        rejection_of(module(imports, &body, ""), ""),
        ModuleRejection::CapabilityNotGranted {
            capability: "log".into(),
            import: "cloister.log".into()
        }
    );
    // Granted, the same module runs and its line travels with the decision.
    let outcome = evaluate(module(imports, &body, ""), "capabilities = [\"log\"]\n");
    assert!(outcome.allowed);
    assert_eq!(
        outcome.modules[0].log,
        vec![r#"{"effect":"allow"}"#.to_owned()]
    );
}

#[test]
fn wasi_and_other_imports_are_refused_at_load() {
    for import in [
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#,
        r#"(import "env" "memory" (memory 1))"#,
    ] {
        assert!(
            matches!(
                rejection_of(module(import, ALLOW, ""), "capabilities = [\"log\"]\n"),
                ModuleRejection::UnknownImport { .. }
            ),
            "{import}"
        );
    }
}

#[test]
fn a_module_that_starts_too_big_is_refused_at_load() {
    let wasm = module("", ALLOW, "").to_vec();
    let big = wat::parse_str(
        r#"(module (memory (export "memory") 100)
             (func (export "cloister_policy_abi_v1"))
             (func (export "cloister_alloc") (param i32) (result i32) i32.const 0)
             (func (export "cloister_evaluate") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    assert!(engine()
        .load(&bundle_of(wasm, "[modules.limits]\nmemory_mib = 1\n"))
        .is_ok());
    assert_eq!(
        rejection_of(big, "[modules.limits]\nmemory_mib = 1\n"),
        ModuleRejection::MemoryTooLarge {
            initial_mib: 7,
            limit_mib: 1
        }
    );
}

#[test]
fn not_webassembly_is_refused_at_load() {
    assert!(matches!(
        rejection_of(b"\0asm garbage".to_vec(), ""),
        ModuleRejection::Compile { .. }
    ));
}

#[test]
fn no_state_survives_between_evaluations() {
    // A counter in a global: a shared instance would return 1, then 2.
    // The decision reports the counter through a requirement code.
    let extra = r#"(global $n (mut i32) (i32.const 0))
      (data (i32.const 300) "{\"effect\":\"require\",\"requirements\":[\"seen_0\"]}")"#;
    let body = "(global.set $n (i32.add (global.get $n) (i32.const 1)))
      (i32.store8 (i32.const 342) (i32.add (i32.const 48) (global.get $n)))
      i64.const 1288490188846"; // 300 << 32 | 46
    let engine = engine();
    let loaded = engine
        .load(&bundle_of(module("", body, extra), ""))
        .unwrap();
    for _ in 0..3 {
        let outcome = loaded.evaluate(Gate::Input, &request());
        assert_eq!(outcome.requirements, vec!["seen_1".to_owned()]);
    }
}

#[test]
fn modules_run_in_order_and_a_denial_stops_the_gate() {
    let deny = r#"(data (i32.const 200) "{\"effect\":\"deny\",\"reasons\":[{\"code\":\"no\",\"message\":\"no\"}]}")"#;
    let deny_len =
        u32::try_from(r#"{"effect":"deny","reasons":[{"code":"no","message":"no"}]}"#.len())
            .unwrap();
    let manifest = Manifest::parse(
        "abi = 1\nname = \"t\"\n[[modules]]\nname = \"first\"\nfile = \"a.wasm\"\n[[modules]]\nname = \"second\"\nfile = \"b.wasm\"\n[[modules]]\nname = \"third\"\nfile = \"c.wasm\"\ngates = [\"output\"]\n",
    )
    .unwrap();
    let bundle = Bundle::from_parts(
        manifest,
        vec![
            module("", ALLOW, ""),
            module("", &packed(200, deny_len), deny),
            module("", "unreachable", ""),
        ],
    );
    let engine = engine();
    let loaded = engine.load(&bundle).unwrap();
    let input = loaded.evaluate(Gate::Input, &request());
    assert!(!input.allowed);
    let names: Vec<_> = input.modules.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(input.reason_codes(), ["second:no"]);
    // At the output gate only `third` runs (and traps).
    let output = loaded.evaluate(Gate::Output, &request());
    let names: Vec<_> = output.modules.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(
        names,
        ["first", "second"],
        "second denies before third runs"
    );
}

#[test]
fn redactions_apply_per_part_and_may_not_cross_parts() {
    // Redact bytes 0..3 ("abc") and 5..6 (the "d" of the second part).
    let json = r#"{"effect":"redact","redactions":[{"start":0,"end":3,"replacement":"[X]","label":"t"},{"start":5,"end":6,"replacement":"[LONGER]","label":"t"}]}"#;
    let escaped = json.replace('"', "\\\"");
    let data = format!(r#"(data (i32.const 200) "{escaped}")"#);
    let len = u32::try_from(json.len()).unwrap();
    let engine = engine();
    let loaded = engine
        .load(&bundle_of(module("", &packed(200, len), &data), ""))
        .unwrap();
    let outcome = loaded.evaluate_parts(Gate::Input, &request(), &["abc", "def"]);
    assert!(outcome.allowed);
    assert!(outcome.redacted);
    assert_eq!(
        outcome.parts,
        vec!["[X]".to_owned(), "[LONGER]ef".to_owned()]
    );
    assert_eq!(outcome.text, "[X]\n\n[LONGER]ef");

    // The same spans over "ab" + "cdef": 0..3 reaches across the separator.
    let outcome = loaded.evaluate_parts(Gate::Input, &request(), &["ab", "cdef"]);
    let failure = failure_of(&outcome);
    assert!(
        matches!(&failure, ModuleFailure::MalformedOutput { detail } if detail.contains("message boundary")),
        "{failure:?}"
    );
}

#[test]
fn deadlines_still_fire_after_the_engine_handle_is_dropped() {
    let body = "(loop $forever (br $forever)) i64.const 0";
    let loaded = engine()
        .load(&bundle_of(
            module("", body, ""),
            "[modules.limits]\nfuel = 1000000000\ntimeout_ms = 20\n",
        ))
        .unwrap();
    // The PolicyEngine is gone; the bundle keeps the ticker alive.
    let failure = failure_of(&loaded.evaluate(Gate::Input, &request()));
    assert_eq!(failure, ModuleFailure::Timeout { timeout_ms: 20 });
}

#[test]
fn a_module_granted_more_memory_than_the_engine_allows_is_refused() {
    let small = PolicyEngine::new(EngineSettings {
        max_instances: 1,
        max_memory_mib: 4,
    })
    .unwrap();
    match small.load(&bundle_of(
        module("", ALLOW, ""),
        "[modules.limits]\nmemory_mib = 16\n",
    )) {
        Err(e) => assert_eq!(
            e.rejection,
            ModuleRejection::MemoryOverEngine {
                memory_mib: 16,
                engine_mib: 4
            }
        ),
        Ok(_) => panic!("must be refused"),
    }
}

#[test]
fn more_concurrent_evaluations_than_slots_wait_rather_than_fail() {
    let one_slot = PolicyEngine::new(EngineSettings {
        max_instances: 1,
        max_memory_mib: 16,
    })
    .unwrap();
    let loaded = std::sync::Arc::new(
        one_slot
            .load(&bundle_of(module("", ALLOW, ""), ""))
            .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let loaded = loaded.clone();
            std::thread::spawn(move || {
                (0..50).all(|_| loaded.evaluate(Gate::Input, &request()).allowed)
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
}

/// A module with a configuration check whose body is `check`.
fn module_with_check(check: &str, extra: &str) -> Vec<u8> {
    module(
        "",
        ALLOW,
        &format!(
            r#"{extra}
  (func (export "cloister_check_config") (param i32 i32) (result i64) {check})"#
        ),
    )
}

#[test]
fn a_configuration_check_runs_at_load() {
    // Allows: the bundle loads.
    assert!(engine()
        .load(&bundle_of(module_with_check(ALLOW, ""), ""))
        .is_ok());

    // Denies: the bundle is refused, with the module's reason.
    let deny = r#"{"effect":"deny","reasons":[{"code":"bad_config","message":"unknown role"}]}"#;
    let data = format!(r#"(data (i32.const 200) "{}")"#, deny.replace('"', "\\\""));
    let len = u32::try_from(deny.len()).unwrap();
    match rejection_of(module_with_check(&packed(200, len), &data), "") {
        ModuleRejection::ConfigRefused { reasons } => {
            assert_eq!(reasons, "bad_config: unknown role")
        }
        other => panic!("{other:?}"),
    }

    // Traps or loops: refused too, naming the failure.
    assert!(matches!(
        rejection_of(module_with_check("unreachable", ""), ""),
        ModuleRejection::ConfigCheckFailed {
            failure: ModuleFailure::Trap { .. }
        }
    ));
    assert!(matches!(
        rejection_of(
            module_with_check("(loop $l (br $l)) i64.const 0", ""),
            "[modules.limits]\nfuel = 100000\n"
        ),
        ModuleRejection::ConfigCheckFailed {
            failure: ModuleFailure::OutOfFuel { .. }
        }
    ));

    // The wrong type is refused like any ABI export.
    let wrong = module(
        "",
        ALLOW,
        r#"(func (export "cloister_check_config") (result i32) i32.const 0)"#,
    );
    assert!(matches!(
        rejection_of(wrong, ""),
        ModuleRejection::WrongExportType { .. }
    ));
}
