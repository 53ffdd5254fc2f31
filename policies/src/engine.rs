//! The wasmtime host that runs a policy bundle.
//!
//! Each module is compiled once, when its bundle loads, and checked there
//! against the ABI and the capabilities its manifest entry grants; a module
//! that does not fit is refused and the bundle with it. Every evaluation
//! then gets a fresh instance (`InstancePre` + the pooling allocator keep
//! that cheap), so nothing a module saw for one query or patient survives
//! into the next, and runs under three budgets: fuel, an epoch deadline
//! driven by a 1 ms ticker thread, and a memory ceiling. Whatever goes
//! wrong while it runs is a [`ModuleFailure`], and a failure denies.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{
    Caller, Config, Engine, Extern, ExternType, InstanceAllocationStrategy, InstancePre, Linker,
    Module, ModuleExport, OptLevel, PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};

use cloister_policy_sdk::{Decision, Effect, Gate, Reason, Request, ABI_VERSION};

use crate::bundle::{canonical_json_value, Bundle};
use crate::gate::{micros, GateOutcome, ModuleFailure, ModuleOutcome, RedactedSpan};
use crate::manifest::{Capability, ModuleLimits, ModuleSpec, MAX_MEMORY_MIB};

/// Exports ABI version 1 requires.
pub const EXPORT_ABI_MARKER: &str = "cloister_policy_abi_v1";
/// See [`EXPORT_ABI_MARKER`].
pub const EXPORT_ALLOC: &str = "cloister_alloc";
/// See [`EXPORT_ABI_MARKER`].
pub const EXPORT_EVALUATE: &str = "cloister_evaluate";
/// See [`EXPORT_ABI_MARKER`].
pub const EXPORT_MEMORY: &str = "memory";
/// Optional: `(ptr, len) -> (out_ptr << 32) | out_len` over
/// `{"abi", "module", "config"}`, answering allow or deny (with reasons)
/// for the configuration alone. Called once when the bundle loads, so a
/// configuration the module cannot use refuses the bundle then, rather than
/// denying every query later.
pub const EXPORT_CHECK_CONFIG: &str = "cloister_check_config";

/// Largest decision a module may return.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Most lines one evaluation may log, and the longest line kept.
const MAX_LOG_LINES: usize = 16;
const MAX_LOG_LINE: usize = 1024;
/// What joins the parts of a multi-part text (see
/// [`LoadedBundle::evaluate_parts`]).
pub const PART_SEPARATOR: &str = "\n\n";
/// Bytes of each memory and table slot reset by memset rather than
/// madvise when an instance ends: a fresh instance then finds them mapped
/// instead of taking a page fault per page it touches.
const KEEP_RESIDENT: usize = 256 * 1024;
/// How often the deadline clock ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Settings for the process-wide policy engine. The instance pool reserves
/// `max_instances × max_memory_mib` of address space up front, which counts
/// against a CVM's (or a sim enclave's RLIMIT_AS) budget.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Most gate evaluations running at once (each uses one instance at a
    /// time); more wait for a free slot.
    pub max_instances: u32,
    /// Largest memory any module may be given (its manifest `memory_mib`).
    pub max_memory_mib: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_instances: 32,
            max_memory_mib: 64,
        }
    }
}

impl EngineSettings {
    /// Settings sized for `bundle`: memory for its largest module.
    pub fn for_bundle(bundle: &Bundle, max_instances: u32) -> Self {
        Self {
            max_instances: max_instances.max(1),
            max_memory_mib: bundle
                .manifest
                .modules
                .iter()
                .map(|m| m.limits.memory_mib)
                .max()
                .unwrap_or(1),
        }
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("policy engine: {0}")]
pub struct EngineError(String);

/// Why a module, and so its bundle, is refused at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "rejection", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModuleRejection {
    /// Not valid WebAssembly, or it does not compile.
    #[error("does not compile: {detail}")]
    Compile {
        /// Wasmtime's message.
        detail: String,
    },
    /// An ABI export is missing.
    #[error("lacks the export {name:?} that policy ABI {ABI_VERSION} requires")]
    MissingExport {
        /// The export.
        name: String,
    },
    /// An ABI export has the wrong type.
    #[error("export {name:?} must be {expected}")]
    WrongExportType {
        /// The export.
        name: String,
        /// What the ABI says it is.
        expected: String,
    },
    /// It imports a host function its manifest entry does not grant.
    #[error(
        "imports {import} (capability {capability:?}), which its manifest entry does not grant"
    )]
    CapabilityNotGranted {
        /// The capability.
        capability: String,
        /// `module.name` of the import.
        import: String,
    },
    /// It imports something no capability provides (WASI, clocks,
    /// randomness, files and sockets are not offered at all).
    #[error("imports {import}, which the Cloister host does not provide (no WASI, clocks, randomness, files or network)")]
    UnknownImport {
        /// `module.name` of the import.
        import: String,
    },
    /// Its configuration check denied the configuration in the manifest.
    #[error("refuses its configuration: {reasons}")]
    ConfigRefused {
        /// The module's reasons, `code: message`, joined.
        reasons: String,
    },
    /// Its configuration check failed to run.
    #[error("configuration check failed: {failure}")]
    ConfigCheckFailed {
        /// What went wrong.
        failure: ModuleFailure,
    },
    /// Its manifest grants more memory than this engine was built for.
    #[error("is granted {memory_mib} MiB of memory; this engine allows at most {engine_mib} MiB")]
    MemoryOverEngine {
        /// The grant.
        memory_mib: u32,
        /// The engine's maximum.
        engine_mib: u32,
    },
    /// Its initial memory alone is over its limit.
    #[error("starts with {initial_mib} MiB of memory, over its {limit_mib} MiB limit")]
    MemoryTooLarge {
        /// Declared initial size.
        initial_mib: u64,
        /// The limit.
        limit_mib: u32,
    },
}

/// A bundle that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("policy module {module:?} is refused: {rejection}")]
pub struct LoadError {
    /// The module.
    pub module: String,
    /// Why.
    pub rejection: ModuleRejection,
}

/// The process-wide engine: compiler settings, the instance pool, and the
/// deadline ticker.
pub struct PolicyEngine {
    engine: Engine,
    settings: EngineSettings,
    /// The pool's slots, shared by every bundle loaded on this engine.
    slots: Arc<Slots>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Build the engine and start its deadline ticker.
    pub fn new(settings: EngineSettings) -> Result<Self, EngineError> {
        if settings.max_memory_mib == 0 || settings.max_memory_mib > MAX_MEMORY_MIB {
            return Err(EngineError(format!(
                "max_memory_mib must be 1 to {MAX_MEMORY_MIB}"
            )));
        }
        let max_memory = usize::try_from(settings.max_memory_mib)
            .map_err(|e| EngineError(e.to_string()))?
            * 1024
            * 1024;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(settings.max_instances)
            .total_memories(settings.max_instances)
            .total_tables(settings.max_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(max_memory)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            // Reserve only what the largest permitted memory needs, so the
            // pool's address-space footprint is bounded (explicit bounds
            // checks are the cost); a guard region still catches overruns.
            .memory_reservation(max_memory as u64)
            .memory_guard_size(64 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))?;
        // The ticker holds the engine weakly: it runs while any loaded
        // bundle (each holds the engine) can still evaluate, and ends after.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("policy-deadline".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(|e| EngineError(format!("cannot start the deadline ticker: {e}")))?;
        Ok(Self {
            engine,
            settings,
            slots: Arc::new(Slots::new(settings.max_instances)),
        })
    }

    /// Compile and check every module of `bundle`.
    pub fn load(&self, bundle: &Bundle) -> Result<LoadedBundle, LoadError> {
        let mut modules = Vec::with_capacity(bundle.modules.len());
        for (spec, bytes) in bundle.manifest.modules.iter().zip(&bundle.modules) {
            let loaded = self
                .load_module(spec, bytes)
                .map_err(|rejection| LoadError {
                    module: spec.name.clone(),
                    rejection,
                })?;
            modules.push(loaded);
        }
        Ok(LoadedBundle {
            engine: self.engine.clone(),
            slots: self.slots.clone(),
            digest: bundle.digest(),
            name: bundle.manifest.name.clone(),
            modules,
        })
    }

    fn load_module(
        &self,
        spec: &ModuleSpec,
        bytes: &[u8],
    ) -> Result<LoadedModule, ModuleRejection> {
        if spec.limits.memory_mib > self.settings.max_memory_mib {
            return Err(ModuleRejection::MemoryOverEngine {
                memory_mib: spec.limits.memory_mib,
                engine_mib: self.settings.max_memory_mib,
            });
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| ModuleRejection::Compile {
            detail: format!("{e:#}"),
        })?;
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let capability = [Capability::Log]
                .into_iter()
                .find(|c| c.import() == (import.module(), import.name()));
            match capability {
                None => return Err(ModuleRejection::UnknownImport { import: name }),
                Some(c) if !spec.capabilities.contains(&c) => {
                    return Err(ModuleRejection::CapabilityNotGranted {
                        capability: format!("{c:?}").to_lowercase(),
                        import: name,
                    })
                }
                Some(Capability::Log) => {
                    linker.func_wrap("cloister", "log", host_log).map_err(|e| {
                        ModuleRejection::Compile {
                            detail: format!("{e:#}"),
                        }
                    })?;
                }
            }
        }
        let exports = Exports::find(&module)?;
        check_initial_memory(&module, spec.limits)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleRejection::Compile {
                detail: format!("{e:#}"),
            })?;
        let config = canonical_json_value(&serde_json::to_value(&spec.config).unwrap_or_default());
        let mut prefix = format!("{{\"abi\":{ABI_VERSION},\"module\":").into_bytes();
        prefix.extend_from_slice(&serde_json::to_vec(&spec.name).unwrap_or_default());
        prefix.extend_from_slice(b",\"config\":");
        prefix.extend_from_slice(&config);
        // `{"abi":1,"module":…,"config":…}`: the prefix so far, closed.
        let check_input = [prefix.as_slice(), b"}"].concat();
        prefix.extend_from_slice(b",\"gate\":");
        let loaded = LoadedModule {
            name: spec.name.clone(),
            gates: spec.gates.clone(),
            limits: spec.limits,
            pre,
            exports,
            input_prefix: prefix,
        };
        if let Some(check) = &loaded.exports.check_config {
            let decision = run(&self.engine, &loaded, check, &check_input)
                .decision
                .map_err(|failure| ModuleRejection::ConfigCheckFailed { failure })?;
            if decision.effect != Effect::Allow {
                let reasons: Vec<String> = decision
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {}", r.code, r.message))
                    .collect();
                return Err(ModuleRejection::ConfigRefused {
                    reasons: if reasons.is_empty() {
                        format!("it answered {}", decision.effect.as_str())
                    } else {
                        reasons.join("; ")
                    },
                });
            }
        }
        Ok(loaded)
    }
}

/// The ABI exports, resolved once per module.
struct Exports {
    memory: ModuleExport,
    alloc: ModuleExport,
    evaluate: ModuleExport,
    check_config: Option<ModuleExport>,
}

impl Exports {
    fn find(module: &Module) -> Result<Self, ModuleRejection> {
        let get = |name: &str| {
            module
                .get_export_index(name)
                .ok_or_else(|| ModuleRejection::MissingExport { name: name.into() })
        };
        let wrong = |name: &str, expected: &str| ModuleRejection::WrongExportType {
            name: name.into(),
            expected: expected.into(),
        };
        let ty = |name: &str| module.get_export(name);
        match ty(EXPORT_ABI_MARKER) {
            Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
            Some(_) => return Err(wrong(EXPORT_ABI_MARKER, "a function () -> ()")),
            None => {
                return Err(ModuleRejection::MissingExport {
                    name: EXPORT_ABI_MARKER.into(),
                })
            }
        }
        let memory = get(EXPORT_MEMORY)?;
        if !matches!(ty(EXPORT_MEMORY), Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared())
        {
            return Err(wrong(EXPORT_MEMORY, "a 32-bit, unshared memory"));
        }
        let alloc = get(EXPORT_ALLOC)?;
        match ty(EXPORT_ALLOC) {
            Some(ExternType::Func(f))
                if f.params().map(|p| p.is_i32()).eq([true])
                    && f.results().map(|r| r.is_i32()).eq([true]) => {}
            _ => return Err(wrong(EXPORT_ALLOC, "a function (i32) -> i32")),
        }
        let evaluate = get(EXPORT_EVALUATE)?;
        match ty(EXPORT_EVALUATE) {
            Some(ExternType::Func(f))
                if f.params().map(|p| p.is_i32()).eq([true, true])
                    && f.results().map(|r| r.is_i64()).eq([true]) => {}
            _ => return Err(wrong(EXPORT_EVALUATE, "a function (i32, i32) -> i64")),
        }
        let check_config = match ty(EXPORT_CHECK_CONFIG) {
            None => None,
            Some(ExternType::Func(f))
                if f.params().map(|p| p.is_i32()).eq([true, true])
                    && f.results().map(|r| r.is_i64()).eq([true]) =>
            {
                module.get_export_index(EXPORT_CHECK_CONFIG)
            }
            Some(_) => return Err(wrong(EXPORT_CHECK_CONFIG, "a function (i32, i32) -> i64")),
        };
        Ok(Self {
            memory,
            alloc,
            evaluate,
            check_config,
        })
    }
}

fn check_initial_memory(module: &Module, limits: ModuleLimits) -> Result<(), ModuleRejection> {
    for ty in module
        .exports()
        .map(|e| e.ty())
        .chain(module.imports().map(|i| i.ty()))
    {
        if let ExternType::Memory(memory) = ty {
            let initial = memory.minimum().saturating_mul(memory.page_size());
            if initial > u64::from(limits.memory_mib) * 1024 * 1024 {
                return Err(ModuleRejection::MemoryTooLarge {
                    initial_mib: initial.div_ceil(1024 * 1024),
                    limit_mib: limits.memory_mib,
                });
            }
        }
    }
    Ok(())
}

/// A module ready to evaluate.
struct LoadedModule {
    name: String,
    gates: Vec<Gate>,
    limits: ModuleLimits,
    pre: InstancePre<HostState>,
    exports: Exports,
    /// `{"abi":1,"module":…,"config":…,"gate":` — the part of every input
    /// that does not change per query.
    input_prefix: Vec<u8>,
}

/// A loaded bundle: evaluate a gate with [`LoadedBundle::evaluate`].
pub struct LoadedBundle {
    engine: Engine,
    slots: Arc<Slots>,
    digest: [u8; 32],
    name: String,
    modules: Vec<LoadedModule>,
}

impl std::fmt::Debug for LoadedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedBundle")
            .field("name", &self.name)
            .field("digest", &hex::encode(self.digest))
            .field(
                "modules",
                &self.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl LoadedBundle {
    /// The bundle digest the enclave binds into its attestation.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The bundle's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Module names, in evaluation order.
    pub fn module_names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|m| m.name.as_str())
    }

    /// Run every module listed for `gate`, in order, on `request`.
    ///
    /// A denial or failure stops the gate (later modules do not run); a
    /// redaction is applied before the next module sees the text.
    pub fn evaluate(&self, gate: Gate, request: &Request) -> GateOutcome {
        self.evaluate_parts(gate, request, &[request.text.as_str()])
    }

    /// As [`evaluate`](Self::evaluate), for text in several parts (a chat's
    /// messages): modules see the parts joined by [`PART_SEPARATOR`] as
    /// `text`, and [`GateOutcome::parts`] holds each part after redaction.
    /// A redaction reaching across a separator is a malformed decision.
    pub fn evaluate_parts(&self, gate: Gate, request: &Request, parts: &[&str]) -> GateOutcome {
        let started = Instant::now();
        let _slot = self.slots.acquire();
        let mut current = request.clone();
        current.text = parts.join(PART_SEPARATOR);
        let mut ranges = Vec::with_capacity(parts.len());
        let mut at = 0;
        for part in parts {
            ranges.push((at, at + part.len()));
            at += part.len() + PART_SEPARATOR.len();
        }
        let mut outcome = GateOutcome {
            gate,
            allowed: true,
            text: String::new(),
            parts: Vec::new(),
            redacted: false,
            requirements: Vec::new(),
            modules: Vec::new(),
            micros: 0,
        };
        let mut request_json = serde_json::to_vec(&current).unwrap_or_default();
        for module in self.modules.iter().filter(|m| m.gates.contains(&gate)) {
            let mut input = Vec::with_capacity(module.input_prefix.len() + request_json.len() + 32);
            input.extend_from_slice(&module.input_prefix);
            input.extend_from_slice(match gate {
                Gate::Input => b"\"input\",\"request\":",
                Gate::Output => b"\"output\",\"request\":",
            });
            input.extend_from_slice(&request_json);
            input.push(b'}');
            let module_started = Instant::now();
            let run = run(&self.engine, module, &module.exports.evaluate, &input);
            let mut record = ModuleOutcome {
                module: module.name.clone(),
                effect: Effect::Deny,
                reasons: Vec::new(),
                redacted: Vec::new(),
                requirements: Vec::new(),
                failure: None,
                log: run.log,
                fuel_used: run.fuel_used,
                micros: 0,
            };
            let checked = run.decision.and_then(|d| {
                let d = check_decision(d, &current.text).map_err(malformed)?;
                let redacted = if d.effect == Effect::Redact {
                    Some(
                        apply_redactions(&current.text, &ranges, &d.redactions)
                            .map_err(malformed)?,
                    )
                } else {
                    None
                };
                Ok((d, redacted))
            });
            record.micros = micros(module_started.elapsed());
            match checked {
                Err(failure) => {
                    record.reasons.push(Reason {
                        code: format!("module_{}", failure.code()),
                        message: failure.to_string(),
                    });
                    record.failure = Some(failure);
                    outcome.allowed = false;
                    outcome.modules.push(record);
                    break;
                }
                Ok((decision, redacted)) => {
                    record.effect = decision.effect;
                    record.reasons = decision.reasons;
                    match decision.effect {
                        Effect::Allow => {}
                        Effect::Deny => outcome.allowed = false,
                        Effect::Require => {
                            for r in &decision.requirements {
                                if !outcome.requirements.contains(r) {
                                    outcome.requirements.push(r.clone());
                                }
                            }
                            record.requirements = decision.requirements;
                        }
                        Effect::Redact => {
                            if let Some((text, new_ranges)) = redacted {
                                current.text = text;
                                ranges = new_ranges;
                            }
                            request_json = serde_json::to_vec(&current).unwrap_or_default();
                            outcome.redacted = true;
                            record.redacted = decision
                                .redactions
                                .into_iter()
                                .map(|r| RedactedSpan {
                                    start: r.start,
                                    end: r.end,
                                    label: r.label,
                                })
                                .collect();
                        }
                    }
                    outcome.modules.push(record);
                    if !outcome.allowed {
                        break;
                    }
                }
            }
        }
        outcome.parts = ranges
            .iter()
            .map(|&(start, end)| current.text.get(start..end).unwrap_or_default().to_owned())
            .collect();
        outcome.text = current.text;
        outcome.micros = micros(started.elapsed());
        outcome
    }

    /// Whether any module runs at `gate`.
    pub fn has_gate(&self, gate: Gate) -> bool {
        self.modules.iter().any(|m| m.gates.contains(&gate))
    }
}

/// One call of `entry` in a fresh instance of `module`, under its budgets.
fn run(engine: &Engine, module: &LoadedModule, entry: &ModuleExport, input: &[u8]) -> RunResult {
    let limits = module.limits;
    let mut store = Store::new(
        engine,
        HostState {
            limiter: Limiter {
                max_bytes: usize::try_from(limits.memory_mib)
                    .unwrap_or(0)
                    .saturating_mul(1024 * 1024),
                exceeded: false,
            },
            log: Vec::new(),
        },
    );
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(u64::from(limits.timeout_ms));
    let decision = match store.set_fuel(limits.fuel) {
        Ok(()) => call(&mut store, module, entry, input),
        Err(e) => Err(ModuleFailure::Instantiation {
            detail: format!("{e:#}"),
        }),
    };
    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    RunResult {
        decision,
        fuel_used,
        log: std::mem::take(&mut store.data_mut().log),
    }
}

struct RunResult {
    decision: Result<Decision, ModuleFailure>,
    fuel_used: u64,
    log: Vec<String>,
}

fn call(
    store: &mut Store<HostState>,
    module: &LoadedModule,
    entry: &ModuleExport,
    input: &[u8],
) -> Result<Decision, ModuleFailure> {
    let limits = module.limits;
    let instance = module
        .pre
        .instantiate(&mut *store)
        .map_err(|e| classify(e, store, limits, true))?;
    let export = |store: &mut Store<HostState>, which: &ModuleExport| {
        instance
            .get_module_export(&mut *store, which)
            .ok_or_else(|| ModuleFailure::Instantiation {
                detail: "an ABI export checked at load is gone".into(),
            })
    };
    let memory = export(store, &module.exports.memory)?
        .into_memory()
        .ok_or_else(|| malformed("memory export is not a memory".into()))?;
    let alloc = export(store, &module.exports.alloc)?
        .into_func()
        .and_then(|f| f.typed::<i32, i32>(&*store).ok())
        .ok_or_else(|| malformed("cloister_alloc changed type".into()))?;
    let evaluate = export(store, entry)?
        .into_func()
        .and_then(|f| f.typed::<(i32, i32), i64>(&*store).ok())
        .ok_or_else(|| malformed("an entry point changed type".into()))?;

    let len = i32::try_from(input.len())
        .map_err(|_| malformed("the request is too large for a 32-bit module".into()))?;
    let ptr = alloc
        .call(&mut *store, len)
        .map_err(|e| classify(e, store, limits, false))?;
    let offset = usize::try_from(ptr as u32).unwrap_or(usize::MAX);
    memory.write(&mut *store, offset, input).map_err(|_| {
        malformed(format!(
            "cloister_alloc({len}) returned {ptr}, outside memory"
        ))
    })?;
    let packed = evaluate
        .call(&mut *store, (ptr, len))
        .map_err(|e| classify(e, store, limits, false))?;
    let packed = packed as u64;
    let out_ptr = usize::try_from(packed >> 32).unwrap_or(usize::MAX);
    let out_len = usize::try_from(packed & 0xffff_ffff).unwrap_or(usize::MAX);
    if out_len > MAX_OUTPUT_BYTES {
        return Err(malformed(format!(
            "decision is {out_len} bytes, over the {MAX_OUTPUT_BYTES}-byte limit"
        )));
    }
    let bytes = out_ptr
        .checked_add(out_len)
        .and_then(|end| memory.data(&*store).get(out_ptr..end))
        .ok_or_else(|| malformed(format!("decision at {out_ptr}+{out_len} is outside memory")))?;
    serde_json::from_slice::<Decision>(bytes).map_err(|e| malformed(format!("not a decision: {e}")))
}

fn malformed(detail: String) -> ModuleFailure {
    ModuleFailure::MalformedOutput { detail }
}

fn classify(
    error: wasmtime::Error,
    store: &Store<HostState>,
    limits: ModuleLimits,
    instantiating: bool,
) -> ModuleFailure {
    if store.data().limiter.exceeded {
        return ModuleFailure::MemoryLimit {
            limit_mib: limits.memory_mib,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ModuleFailure::OutOfFuel { fuel: limits.fuel },
        Some(Trap::Interrupt) => ModuleFailure::Timeout {
            timeout_ms: limits.timeout_ms,
        },
        Some(trap) => ModuleFailure::Trap {
            trap: trap.to_string(),
        },
        None if instantiating => ModuleFailure::Instantiation {
            detail: format!("{error:#}"),
        },
        None => ModuleFailure::Trap {
            trap: format!("{error:#}"),
        },
    }
}

/// Check a decision is well formed for the text it was made on, and put
/// its redactions in order.
fn check_decision(mut decision: Decision, text: &str) -> Result<Decision, String> {
    if decision.reasons.len() > 32 {
        return Err("more than 32 reasons".into());
    }
    for reason in &decision.reasons {
        if !is_code(&reason.code) {
            return Err(format!(
                "reason code {:?} must be 1-64 characters of a-z, 0-9, _ and -",
                reason.code
            ));
        }
        if reason.message.len() > 2048 {
            return Err("a reason message is over 2048 bytes".into());
        }
    }
    let has_redactions = !decision.redactions.is_empty();
    let has_requirements = !decision.requirements.is_empty();
    match decision.effect {
        Effect::Allow if has_redactions || has_requirements => {
            return Err("an allow carries redactions or requirements".into())
        }
        Effect::Deny if decision.reasons.is_empty() => {
            return Err("a denial must give a reason".into())
        }
        Effect::Deny if has_redactions || has_requirements => {
            return Err("a denial carries redactions or requirements".into())
        }
        Effect::Redact if !has_redactions || has_requirements => {
            return Err("a redaction must list spans and nothing else".into())
        }
        Effect::Require if !has_requirements || has_redactions => {
            return Err("a requirement must list requirements and nothing else".into())
        }
        _ => {}
    }
    for requirement in &decision.requirements {
        if !is_code(requirement) {
            return Err(format!("requirement {requirement:?} is not a code"));
        }
    }
    decision.redactions.sort_by_key(|r| (r.start, r.end));
    let mut previous_end = 0;
    for r in &decision.redactions {
        if r.start >= r.end
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            return Err(format!(
                "redaction {}..{} is not a span of the {}-byte text",
                r.start,
                r.end,
                text.len()
            ));
        }
        if r.start < previous_end {
            return Err(format!("redaction {}..{} overlaps another", r.start, r.end));
        }
        if r.replacement.len() > 256 || r.label.len() > 64 {
            return Err("a redaction's replacement or label is too long".into());
        }
        previous_end = r.end;
    }
    Ok(decision)
}

fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `text` with each (sorted, non-overlapping, checked) span replaced, and
/// the parts' byte ranges moved to match. Each span must lie within one part.
fn apply_redactions(
    text: &str,
    ranges: &[(usize, usize)],
    redactions: &[cloister_policy_sdk::Redaction],
) -> Result<(String, Vec<(usize, usize)>), String> {
    for r in redactions {
        if !ranges
            .iter()
            .any(|&(start, end)| start <= r.start && r.end <= end)
        {
            return Err(format!(
                "redaction {}..{} reaches across a message boundary",
                r.start, r.end
            ));
        }
    }
    // New position of an old offset that is not inside any redaction.
    let shift = |offset: usize| -> usize {
        let before = redactions.iter().filter(|r| r.end <= offset);
        let removed: usize = before.clone().map(|r| r.end - r.start).sum();
        let added: usize = before.map(|r| r.replacement.len()).sum();
        // Every removed span lies within [0, offset), so this cannot underflow.
        offset + added - removed
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in redactions {
        out.push_str(text.get(at..r.start).unwrap_or_default());
        out.push_str(&r.replacement);
        at = r.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    let ranges = ranges
        .iter()
        .map(|&(start, end)| (shift(start), shift(end)))
        .collect();
    Ok((out, ranges))
}

/// A counting semaphore over the instance pool: a gate evaluation waits for
/// a slot rather than fail for want of one. Each holder finishes within its
/// modules' deadlines, so the wait is bounded.
struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl Slots {
    fn new(count: u32) -> Self {
        Self {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// Per-evaluation host state.
struct HostState {
    limiter: Limiter,
    log: Vec<String>,
}

struct Limiter {
    max_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            // Trap at once, so the failure is named rather than surfacing
            // later as whatever the module's allocator does on failure.
            self.exceeded = true;
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// `cloister.log(ptr, len)`, for modules granted [`Capability::Log`].
fn host_log(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export(EXPORT_MEMORY) else {
        return;
    };
    let start = usize::try_from(ptr as u32).unwrap_or(usize::MAX);
    let len = usize::try_from(len as u32).unwrap_or(0).min(MAX_LOG_LINE);
    let line = start
        .checked_add(len)
        .and_then(|end| memory.data(&caller).get(start..end))
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    let state = caller.data_mut();
    if let Some(line) = line {
        if state.log.len() < MAX_LOG_LINES {
            state.log.push(line);
        }
    }
}
