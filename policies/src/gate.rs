//! What a gate decided, module by module: the shape the enclave answers
//! with and the audit record keeps.

use std::time::Duration;

use serde::Serialize;

use cloister_policy_sdk::{Effect, Gate, Reason};

/// Why a module produced no decision. Every one denies the query: a policy
/// that cannot be evaluated has not allowed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "failure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModuleFailure {
    /// The module trapped (`unreachable`, a Rust panic, out-of-bounds
    /// access, stack overflow, …).
    #[error("module trapped: {trap}")]
    Trap {
        /// Wasmtime's description of the trap.
        trap: String,
    },
    /// It used up its fuel.
    #[error("module ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// It ran past its wall-clock deadline.
    #[error("module ran past its {timeout_ms} ms deadline")]
    Timeout {
        /// The deadline.
        timeout_ms: u32,
    },
    /// It tried to grow its memory past the limit.
    #[error("module tried to grow its memory past {limit_mib} MiB")]
    MemoryLimit {
        /// The limit.
        limit_mib: u32,
    },
    /// Its output is not a valid decision.
    #[error("module returned a malformed decision: {detail}")]
    MalformedOutput {
        /// What is wrong with it.
        detail: String,
    },
    /// No instance could be made (instance pool exhausted, or the host
    /// refused resources).
    #[error("module could not be instantiated: {detail}")]
    Instantiation {
        /// Why.
        detail: String,
    },
}

impl ModuleFailure {
    /// Stable snake_case code, for logs and clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Trap { .. } => "trap",
            Self::OutOfFuel { .. } => "out_of_fuel",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::MalformedOutput { .. } => "malformed_output",
            Self::Instantiation { .. } => "instantiation",
        }
    }
}

/// One module's part in a gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleOutcome {
    /// Its name in the manifest.
    pub module: String,
    /// What it decided; `deny` when it failed.
    pub effect: Effect,
    /// Its reasons (for a failure, one reason naming the failure).
    pub reasons: Vec<Reason>,
    /// Labels and byte spans of what it redacted, in the text it saw.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<RedactedSpan>,
    /// What it required.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<String>,
    /// Set when it produced no decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<ModuleFailure>,
    /// Diagnostic lines it wrote through the `log` capability.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// Fuel it used.
    pub fuel_used: u64,
    /// Wall time, instantiation included, microseconds.
    pub micros: u64,
}

/// A span a module redacted: where and what kind, never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedactedSpan {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it was, e.g. `name`.
    pub label: String,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateOutcome {
    /// Which gate.
    pub gate: Gate,
    /// Whether the text may go on (to inference, or to the client).
    pub allowed: bool,
    /// The text after every redaction (the input text when none applied).
    #[serde(skip)]
    pub text: String,
    /// For a multi-part evaluation, each part after redaction.
    #[serde(skip)]
    pub parts: Vec<String>,
    /// Whether any module redacted.
    pub redacted: bool,
    /// Requirements every module raised, deduplicated, in order.
    pub requirements: Vec<String>,
    /// Each module that ran, in order; modules after a denial do not run.
    pub modules: Vec<ModuleOutcome>,
    /// Wall time of the whole gate, microseconds.
    pub micros: u64,
}

impl GateOutcome {
    /// The module that denied, if one did.
    pub fn denied_by(&self) -> Option<&ModuleOutcome> {
        self.modules.iter().find(|m| m.effect == Effect::Deny)
    }

    /// Every reason, as `module: code`, for logs that must carry no text.
    pub fn reason_codes(&self) -> Vec<String> {
        self.modules
            .iter()
            .flat_map(|m| {
                m.reasons
                    .iter()
                    .map(move |r| format!("{}:{}", m.module, r.code))
            })
            .collect()
    }
}

pub(crate) fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}
