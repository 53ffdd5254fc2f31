//! Cloister's query gate.
//!
//! - [`identity`]: who is asking, for what purpose and about which patient,
//!   from a token the hospital's identity provider signed.
//! - [`manifest`], [`bundle`]: a policy bundle (`policy.toml` and its
//!   WebAssembly modules) and the digest clients and the key broker pin.
//! - [`engine`]: the wasmtime host that runs a bundle's modules at the
//!   input gate (before inference) and the output gate (before the answer
//!   leaves the enclave), each call in a fresh, budgeted instance.
//! - [`gate`]: what a gate decided, module by module.
//!
//! The types modules see and return are the policy SDK's, re-exported as
//! [`abi`].

pub mod bundle;
pub mod engine;
pub mod gate;
pub mod identity;
pub mod manifest;

/// The ABI's message types, shared with the guest SDK.
pub mod abi {
    pub use cloister_policy_sdk::{
        Decision, Effect, Gate, Input, Reason, Redaction, Request, Source, ABI_VERSION,
    };
}

pub use bundle::{Bundle, BundleError};
pub use engine::{EngineSettings, LoadError, LoadedBundle, ModuleRejection, PolicyEngine};
pub use gate::{GateOutcome, ModuleFailure, ModuleOutcome};
