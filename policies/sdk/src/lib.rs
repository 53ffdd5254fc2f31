//! Write a Cloister policy module in Rust.
//!
//! A policy is one function from what the enclave knows about a query (an
//! [`Input`]: the gate, the module's configuration from the bundle manifest,
//! and the [`Request`]) to a [`Decision`]. [`export_policy!`] wraps it in the
//! ABI the enclave's policy engine calls, and the crate compiles to
//! `wasm32-unknown-unknown` (`crate-type = ["cdylib", "rlib"]`; the `rlib`
//! lets the same function be unit-tested natively).
//!
//! # The ABI, version 1 (for modules written without this SDK)
//!
//! A core WebAssembly module with no imports (unless the bundle grants a
//! capability; see the host crate) and these exports:
//!
//! | export | type | meaning |
//! |---|---|---|
//! | `memory` | memory | the module's linear memory |
//! | `cloister_policy_abi_v1` | `() -> ()` | marks the ABI version; never called |
//! | `cloister_alloc` | `(len: i32) -> i32` | returns a pointer to `len` writable bytes |
//! | `cloister_evaluate` | `(ptr: i32, len: i32) -> i64` | evaluates the input at `ptr` and returns `(out_ptr << 32) \| out_len` |
//! | `cloister_check_config` (optional) | `(ptr: i32, len: i32) -> i64` | judges a [`ConfigInput`] once, at bundle load: allow, or deny with reasons |
//!
//! The input is UTF-8 JSON ([`Input`]); the output is UTF-8 JSON
//! ([`Decision`]). Every instance is fresh: `cloister_alloc` is called once,
//! then `cloister_evaluate` once, then the instance is discarded, so a module
//! keeps no state between queries or patients.

use serde::{Deserialize, Serialize};

/// The ABI version this SDK speaks; the host refuses modules of another.
pub const ABI_VERSION: u32 = 1;

/// Where in the query a module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Before inference: `text` is the prompt.
    Input,
    /// Before the answer leaves the enclave: `text` is the answer.
    Output,
}

impl Gate {
    /// `input` or `output`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// What a module is asked to judge. Every field comes from the enclave:
/// identity from the caller's verified token, time from the enclave's clock
/// (a module has no clock of its own), text and sources from the query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    /// The identity provider that vouched for the caller.
    pub issuer: String,
    /// The caller (token subject).
    pub principal: String,
    /// The caller's role, e.g. `clinician`, `billing`, `researcher`.
    pub role: String,
    /// HL7 v3 PurposeOfUse code from the token, e.g. `TREAT`, `ETREAT`, `HPAYMT`, `HRESCH`.
    pub purpose_of_use: String,
    /// The patient the caller's token is scoped to (its launch context), if any.
    #[serde(default)]
    pub caller_patient: Option<String>,
    /// The patient this query is about, if it names one.
    #[serde(default)]
    pub patient: Option<String>,
    /// The reason given for emergency (break-glass) access, if any.
    #[serde(default)]
    pub break_glass_reason: Option<String>,
    /// The clinical task, e.g. `chat`, `summarize`, `prior_auth`, `guideline_qa`.
    pub task: String,
    /// The enclave's time, RFC 3339 UTC.
    pub time: String,
    /// The prompt (input gate) or the answer (output gate), after any
    /// redactions earlier modules made.
    pub text: String,
    /// The sources retrieved for this query (empty until grounding exists).
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// A retrieved passage the answer may cite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The identifier an answer cites it by, e.g. `S1`.
    pub id: String,
    /// Guideline title.
    pub title: String,
    /// Section within the guideline.
    #[serde(default)]
    pub section: String,
    /// DOI, where the guideline has one.
    #[serde(default)]
    pub doi: Option<String>,
}

/// Everything a module receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// [`ABI_VERSION`].
    pub abi: u32,
    /// Which gate is running.
    pub gate: Gate,
    /// This module's name in the bundle manifest.
    pub module: String,
    /// This module's `config` table from the bundle manifest (`{}` if
    /// none), kept as JSON text: a fresh instance decodes it straight into
    /// the module's own type, without building a generic tree first.
    #[serde(default = "empty_config")]
    pub config: Box<serde_json::value::RawValue>,
    /// The query.
    pub request: Request,
}

fn empty_config() -> Box<serde_json::value::RawValue> {
    // `{}` is valid JSON, so the fallback (JSON `null`) is never taken.
    serde_json::value::RawValue::from_string("{}".into()).unwrap_or_default()
}

impl Input {
    /// The module's configuration as the module's own type.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.config.get())
    }

    /// An input for native tests of a module: `config` is any JSON value.
    pub fn for_test(
        gate: Gate,
        module: &str,
        config: &serde_json::Value,
        request: Request,
    ) -> Self {
        Self {
            abi: ABI_VERSION,
            gate,
            module: module.to_owned(),
            config: serde_json::value::to_raw_value(config).unwrap_or_else(|_| empty_config()),
            request,
        }
    }
}

/// What `cloister_check_config` receives: the configuration alone, when
/// the bundle loads, so a configuration the module cannot use refuses the
/// bundle instead of denying every query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigInput {
    /// [`ABI_VERSION`].
    pub abi: u32,
    /// This module's name in the bundle manifest.
    pub module: String,
    /// This module's `config` table, as JSON text.
    #[serde(default = "empty_config")]
    pub config: Box<serde_json::value::RawValue>,
}

impl ConfigInput {
    /// The module's configuration as the module's own type.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.config.get())
    }
}

/// A module's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Let the query or answer through unchanged.
    Allow,
    /// Stop it; nothing is generated or returned.
    Deny,
    /// Let it through with the listed spans replaced.
    Redact,
    /// Let it through, flagged with requirements (e.g. `human_review`)
    /// the client and the audit record carry.
    Require,
}

impl Effect {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Redact => "redact",
            Self::Require => "require",
        }
    }
}

/// Replace `text[start..end]` (UTF-8 byte offsets, end exclusive) with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What goes in its place, e.g. `[NAME]`.
    pub replacement: String,
    /// What was found, e.g. `name`, for the audit record.
    #[serde(default)]
    pub label: String,
}

/// Why a module decided as it did; these end up in the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable machine-readable code, e.g. `not_treating_patient`.
    pub code: String,
    /// One sentence for a person.
    pub message: String,
}

/// What a module returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The verdict.
    pub effect: Effect,
    /// For [`Effect::Redact`]: the spans to replace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redaction>,
    /// For [`Effect::Require`]: what must happen, e.g. `human_review`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<String>,
    /// Why. A denial must give at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// Let it through.
    pub fn allow() -> Self {
        Self {
            effect: Effect::Allow,
            redactions: Vec::new(),
            requirements: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// Stop it, saying why.
    pub fn deny(code: &str, message: impl Into<String>) -> Self {
        Self::allow()
            .with_effect(Effect::Deny)
            .because(code, message)
    }

    /// Let it through with `redactions` applied.
    pub fn redact(redactions: Vec<Redaction>) -> Self {
        Self {
            redactions,
            ..Self::allow().with_effect(Effect::Redact)
        }
    }

    /// Let it through, flagged with `requirement`.
    pub fn require(requirement: &str) -> Self {
        Self {
            requirements: vec![requirement.to_owned()],
            ..Self::allow().with_effect(Effect::Require)
        }
    }

    /// Add a reason.
    pub fn because(mut self, code: &str, message: impl Into<String>) -> Self {
        self.reasons.push(Reason {
            code: code.to_owned(),
            message: message.into(),
        });
        self
    }

    fn with_effect(mut self, effect: Effect) -> Self {
        self.effect = effect;
        self
    }
}

/// Export `$evaluate: fn(&Input) -> Decision` as this module's policy,
/// and optionally `$check: fn(&ConfigInput) -> Decision` as its load-time
/// configuration check.
///
/// The exports exist only when compiling for `wasm32`, so native builds of
/// several modules (for their tests and benchmarks) link side by side.
#[macro_export]
macro_rules! export_policy {
    ($evaluate:path, $check:path) => {
        $crate::export_policy!($evaluate);

        /// Judge the configuration the host wrote, once, at bundle load.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn cloister_check_config(ptr: i32, len: i32) -> i64 {
            $crate::__abi::check_config(ptr, len, $check)
        }
    };
    ($evaluate:path) => {
        /// Marks ABI version 1; never called.
        #[cfg(target_arch = "wasm32")]
        // `no_mangle` counts as unsafe only because two exported symbols
        // could collide; these three names are the ABI's, defined once per
        // module by this macro.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn cloister_policy_abi_v1() {}

        /// Room for the host to write the input.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn cloister_alloc(len: i32) -> i32 {
            $crate::__abi::alloc(len)
        }

        /// Evaluate the input the host wrote.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn cloister_evaluate(ptr: i32, len: i32) -> i64 {
            $crate::__abi::evaluate(ptr, len, $evaluate)
        }
    };
}

/// The ABI plumbing [`export_policy!`] expands to. Not a stable interface.
#[doc(hidden)]
pub mod __abi {
    use std::cell::RefCell;

    use crate::{ConfigInput, Decision, Input, ABI_VERSION};

    thread_local! {
        static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// A zeroed buffer of `len` bytes the host fills; its address.
    pub fn alloc(len: i32) -> i32 {
        let len = usize::try_from(len).unwrap_or(0);
        INPUT.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            *buffer = vec![0; len];
            address(buffer.as_ptr())
        })
    }

    /// Parse the input in the buffer, run `policy`, and leave the JSON
    /// decision in a buffer whose address and length are returned.
    pub fn evaluate(ptr: i32, len: i32, policy: fn(&Input) -> Decision) -> i64 {
        respond(&handle(
            ptr,
            len,
            "cloister_evaluate",
            |i: &Input| i.abi,
            policy,
        ))
    }

    /// As [`evaluate`], for `cloister_check_config`.
    pub fn check_config(ptr: i32, len: i32, check: fn(&ConfigInput) -> Decision) -> i64 {
        respond(&handle(
            ptr,
            len,
            "cloister_check_config",
            |i: &ConfigInput| i.abi,
            check,
        ))
    }

    /// Take the input buffer, check it is the one `cloister_alloc` handed
    /// out, decode it, check its ABI version, and run `entry` on it; any
    /// failure is a denial saying which.
    fn handle<I: serde::de::DeserializeOwned>(
        ptr: i32,
        len: i32,
        export: &str,
        abi_of: fn(&I) -> u32,
        entry: fn(&I) -> Decision,
    ) -> Decision {
        let input = INPUT.with(|buffer| buffer.take());
        let matches = address(input.as_ptr()) == ptr && usize::try_from(len) == Ok(input.len());
        if !matches {
            return Decision::deny(
                "abi_misuse",
                format!("{export} was not given the buffer cloister_alloc returned"),
            );
        }
        match serde_json::from_slice::<I>(&input) {
            Ok(input) if abi_of(&input) == ABI_VERSION => entry(&input),
            Ok(input) => Decision::deny(
                "abi_version",
                format!(
                    "module speaks ABI {ABI_VERSION}, host sent {}",
                    abi_of(&input)
                ),
            ),
            Err(e) => Decision::deny("input_not_understood", e.to_string()),
        }
    }

    fn respond(decision: &Decision) -> i64 {
        let encoded = serde_json::to_vec(decision).unwrap_or_default();
        OUTPUT.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            *buffer = encoded;
            pack(address(buffer.as_ptr()), buffer.len())
        })
    }

    /// A pointer as the ABI's i32 (wasm32 addresses are 32 bits).
    fn address(pointer: *const u8) -> i32 {
        pointer as usize as u32 as i32
    }

    fn pack(pointer: i32, len: usize) -> i64 {
        let len = u32::try_from(len).unwrap_or(0);
        (i64::from(pointer as u32) << 32) | i64::from(len)
    }
}
