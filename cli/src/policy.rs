//! `cloister policy`: build, hash, test and evaluate policy bundles — the
//! tools compliance staff use to read, test and approve the code that gates
//! every query, and to get the digest they pin.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use cloister_policy::abi::{Effect, Gate, Request};
use cloister_policy::manifest::{Manifest, ModuleSpec, MANIFEST_FILE};
use cloister_policy::{Bundle, EngineSettings, GateOutcome, PolicyEngine};
use serde::Deserialize;
use serde_json::json;

/// Exit status when a bundle is refused, a request denied, or a test fails.
const EXIT_REFUSED: u8 = 1;

/// Arguments of `cloister policy`.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Build a bundle from a source manifest: compile .wat modules, check
    /// every module against the ABI, pin digests, print the bundle digest.
    Build {
        /// The source policy.toml (module files: .wasm or .wat, relative to it).
        manifest: PathBuf,
        /// Also look for module files here (repeatable).
        #[arg(long = "modules", value_name = "DIR")]
        module_dirs: Vec<PathBuf>,
        /// The bundle directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a built bundle's digest (after checking every module's pin).
    Hash {
        /// The bundle directory.
        bundle: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run a module's test cases (a TOML file of requests and expected decisions).
    Test {
        /// The module (.wasm or .wat).
        module: PathBuf,
        /// The cases.
        #[arg(long, value_name = "FILE")]
        cases: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a request (JSON, as modules receive it) against a bundle.
    Eval {
        /// The bundle directory.
        bundle: PathBuf,
        /// The request JSON file, or - for stdin.
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Which gate to run.
        #[arg(long, value_enum, default_value = "input")]
        gate: GateArg,
        /// Evaluate this many times and report timing percentiles.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GateArg {
    Input,
    Output,
}

impl From<GateArg> for Gate {
    fn from(g: GateArg) -> Self {
        match g {
            GateArg::Input => Gate::Input,
            GateArg::Output => Gate::Output,
        }
    }
}

pub(crate) fn run(args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        PolicyCommand::Build {
            manifest,
            module_dirs,
            out,
            json,
        } => build(manifest, module_dirs, out, *json),
        PolicyCommand::Hash { bundle, json } => hash(bundle, *json),
        PolicyCommand::Test {
            module,
            cases,
            json,
        } => test(module, cases, *json),
        PolicyCommand::Eval {
            bundle,
            request,
            gate,
            repeat,
            json,
        } => eval(bundle, request, (*gate).into(), *repeat, *json),
    }
}

fn engine() -> anyhow::Result<PolicyEngine> {
    PolicyEngine::new(EngineSettings {
        max_instances: 4,
        max_memory_mib: cloister_policy::manifest::MAX_MEMORY_MIB,
    })
    .map_err(anyhow::Error::from)
}

/// The bytes of a module file: `.wat` is compiled, `.wasm` taken as is.
fn module_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        return wat::parse_str(&text)
            .with_context(|| format!("{} is not valid WAT", path.display()));
    }
    Ok(bytes)
}

fn refused(what: &str, error: &dyn std::fmt::Display, json: bool) -> ExitCode {
    if json {
        println!("{}", json!({ "ok": false, "error": error.to_string() }));
    } else {
        eprintln!("cloister policy {what}: refused: {error}");
    }
    ExitCode::from(EXIT_REFUSED)
}

fn build(
    source: &Path,
    module_dirs: &[PathBuf],
    out: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut manifest = match Manifest::parse_source(&text) {
        Ok(m) => m,
        Err(e) => return Ok(refused("build", &e, json)),
    };
    let base = source.parent().unwrap_or(Path::new("."));
    let mut modules = Vec::with_capacity(manifest.modules.len());
    for spec in &mut manifest.modules {
        let path = find_module(base, module_dirs, &spec.file)?;
        modules.push(module_bytes(&path)?);
        spec.file = format!("{}.wasm", spec.name);
        spec.sha256 = None;
    }
    if let Err(e) = manifest.check() {
        return Ok(refused("build", &e, json));
    }
    let bundle = Bundle::from_parts(manifest, modules);
    if let Err(e) = engine()?.load(&bundle) {
        return Ok(refused("build", &e, json));
    }
    bundle.write(out)?;
    report_digest(&bundle, out, json);
    Ok(ExitCode::SUCCESS)
}

fn find_module(base: &Path, dirs: &[PathBuf], file: &str) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::iter::once(base.join(file))
        .chain(dirs.iter().map(|d| d.join(file)))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "module file {file:?} not found (looked at {})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn report_digest(bundle: &Bundle, dir: &Path, json: bool) {
    let digest = hex::encode(bundle.digest());
    let modules: Vec<_> = bundle
        .manifest
        .modules
        .iter()
        .map(|m: &ModuleSpec| {
            json!({
                "name": m.name,
                "file": m.file,
                "sha256": m.sha256,
                "gates": m.gates,
                "capabilities": m.capabilities,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({ "ok": true, "bundle": dir, "name": bundle.manifest.name, "digest": digest, "modules": modules })
        );
    } else {
        println!("bundle  {} ({})", dir.display(), bundle.manifest.name);
        for m in &bundle.manifest.modules {
            let gates: Vec<_> = m.gates.iter().map(|g| g.as_str()).collect();
            println!(
                "module  {:<12} {}  gates={}",
                m.name,
                m.sha256.as_deref().unwrap_or(""),
                gates.join(",")
            );
        }
        println!("digest  {digest}");
    }
}

fn hash(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    if !dir.join(MANIFEST_FILE).is_file() {
        bail!("{} has no {MANIFEST_FILE}", dir.display());
    }
    match Bundle::read(dir) {
        Ok(bundle) => {
            report_digest(&bundle, dir, json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused("hash", &e, json)),
    }
}

/// A file of test cases for one module.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// The module's name in the test bundle (the `module` field it sees).
    #[serde(default = "default_module_name")]
    module: String,
    /// The module's configuration for every case.
    #[serde(default)]
    config: toml::Table,
    /// Default request fields, which each case's request overrides.
    #[serde(default)]
    defaults: toml::Table,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

fn default_module_name() -> String {
    "module".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "default_gate")]
    gate: Gate,
    request: toml::Table,
    expect: Effect,
    /// The first reason code expected, if any.
    #[serde(default)]
    code: Option<String>,
    /// For redactions: the text after them.
    #[serde(default)]
    text_after: Option<String>,
}

fn default_gate() -> Gate {
    Gate::Input
}

fn test(module: &Path, cases_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read {}", cases_path.display()))?;
    let file: CaseFile =
        toml::from_str(&text).with_context(|| format!("{} is invalid", cases_path.display()))?;
    let bytes = module_bytes(module)?;
    let manifest = Manifest {
        abi: cloister_policy::abi::ABI_VERSION,
        name: "test".into(),
        description: String::new(),
        modules: vec![ModuleSpec {
            name: file.module.clone(),
            file: format!("{}.wasm", file.module),
            sha256: None,
            gates: vec![Gate::Input, Gate::Output],
            capabilities: Vec::new(),
            limits: Default::default(),
            config: file.config.clone(),
        }],
    };
    manifest.check().map_err(anyhow::Error::from)?;
    let engine = engine()?;
    let loaded = match engine.load(&Bundle::from_parts(manifest, vec![bytes])) {
        Ok(l) => l,
        Err(e) => return Ok(refused("test", &e, json)),
    };
    let mut results = Vec::new();
    for case in &file.cases {
        let mut fields = file.defaults.clone();
        fields.extend(case.request.clone());
        let request: Request = toml::Value::Table(fields)
            .try_into()
            .with_context(|| format!("case {:?}: request", case.name))?;
        let outcome = loaded.evaluate(case.gate, &request);
        let record = outcome.modules.first();
        let effect = record.map(|m| m.effect);
        let code = record
            .and_then(|m| m.reasons.first())
            .map(|r| r.code.clone());
        let mut problems = Vec::new();
        if effect != Some(case.expect) {
            problems.push(format!(
                "expected {}, got {}",
                case.expect.as_str(),
                effect.map(Effect::as_str).unwrap_or("nothing")
            ));
        }
        if let Some(expected) = &case.code {
            if code.as_ref() != Some(expected) {
                problems.push(format!("expected reason {expected:?}, got {code:?}"));
            }
        }
        if let Some(expected) = &case.text_after {
            if &outcome.text != expected {
                problems.push(format!(
                    "expected text {expected:?}, got {:?}",
                    outcome.text
                ));
            }
        }
        results.push((case, outcome.micros, code, problems));
    }
    let failed = results.iter().filter(|r| !r.3.is_empty()).count();
    if json {
        let cases: Vec<_> = results
            .iter()
            .map(|(case, micros, code, problems)| {
                json!({ "name": case.name, "passed": problems.is_empty(), "code": code, "problems": problems, "micros": micros })
            })
            .collect();
        println!(
            "{}",
            json!({ "ok": failed == 0, "module": module, "passed": results.len() - failed, "failed": failed, "cases": cases })
        );
    } else {
        for (case, micros, _, problems) in &results {
            let status = if problems.is_empty() { "ok  " } else { "FAIL" };
            println!("{status} {:<60} {micros:>6} µs", case.name);
            for p in problems {
                println!("       {p}");
            }
        }
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn eval(
    dir: &Path,
    request_path: &Path,
    gate: Gate,
    repeat: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text = if request_path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the request from stdin")?
    } else {
        std::fs::read_to_string(request_path)
            .with_context(|| format!("cannot read {}", request_path.display()))?
    };
    let mut value: serde_json::Value =
        serde_json::from_str(&text).context("the request is not JSON")?;
    if let Some(object) = value.as_object_mut() {
        object.entry("time").or_insert_with(|| {
            json!(time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default())
        });
    }
    let request: Request = serde_json::from_value(value)
        .context("the request does not have the fields modules receive")?;
    let bundle = match Bundle::read(dir) {
        Ok(b) => b,
        Err(e) => return Ok(refused("eval", &e, json)),
    };
    let engine = engine()?;
    let load_started = Instant::now();
    let loaded = match engine.load(&bundle) {
        Ok(l) => l,
        Err(e) => return Ok(refused("eval", &e, json)),
    };
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let mut timings = Vec::with_capacity(usize::try_from(repeat).unwrap_or(1));
    let mut outcome: Option<GateOutcome> = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let this = loaded.evaluate(gate, &request);
        timings.push(started.elapsed().as_secs_f64() * 1e6);
        outcome = Some(this);
    }
    let Some(outcome) = outcome else {
        bail!("no evaluation ran");
    };
    timings.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let index = ((timings.len() as f64 - 1.0) * p).round() as usize;
        timings.get(index).copied().unwrap_or(0.0)
    };
    let (p50, p99) = (percentile(0.50), percentile(0.99));
    if json {
        println!(
            "{}",
            json!({
                "allowed": outcome.allowed,
                "bundle": hex::encode(bundle.digest()),
                "outcome": outcome,
                "text": outcome.text,
                "timing": { "load_ms": load_ms, "evaluations": timings.len(), "p50_us": p50, "p99_us": p99 },
            })
        );
    } else {
        println!(
            "{} gate: {}{}",
            gate.as_str(),
            if outcome.allowed { "ALLOWED" } else { "DENIED" },
            if outcome.redacted { " (redacted)" } else { "" }
        );
        for m in &outcome.modules {
            println!(
                "  {:<12} {:<8} {:>6} µs",
                m.module,
                m.effect.as_str(),
                m.micros
            );
            for r in &m.reasons {
                println!("               {}: {}", r.code, r.message);
            }
            for s in &m.redacted {
                println!(
                    "               redacted {} at {}..{}",
                    s.label, s.start, s.end
                );
            }
        }
        if !outcome.requirements.is_empty() {
            println!("requires: {}", outcome.requirements.join(", "));
        }
        if outcome.redacted {
            println!("text after redaction: {}", outcome.text);
        }
        println!(
            "timing: bundle load {load_ms:.1} ms; gate p50 {p50:.1} µs, p99 {p99:.1} µs over {} evaluation(s)",
            timings.len()
        );
    }
    Ok(if outcome.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}
