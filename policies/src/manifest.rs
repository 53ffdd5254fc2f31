//! `policy.toml`: the bundle manifest compliance staff read and approve.
//!
//! ```toml
//! abi = 1
//! name = "standard"
//!
//! [[modules]]
//! name = "access"            # unique within the bundle
//! file = "access.wasm"       # beside policy.toml
//! sha256 = "…"               # of the file; `cloister policy build` fills it in
//! gates = ["input"]          # where it runs: input, output, or both (the default)
//! capabilities = []          # host functions it may import: "log"
//! [modules.limits]           # optional; defaults shown
//! fuel = 50000000
//! memory_mib = 16
//! timeout_ms = 50
//! [modules.config]           # handed to the module as `config`
//! …
//! ```
//!
//! Modules run in the order listed. Unknown keys are errors: a typo in a
//! policy must not silently change what it enforces.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use cloister_policy_sdk::{Gate, ABI_VERSION};

/// File name of the manifest inside a bundle directory.
pub const MANIFEST_FILE: &str = "policy.toml";

/// Ceilings on what a manifest may grant one module; a bundle asking for
/// more is refused rather than clamped, so what is approved is what runs.
pub const MAX_FUEL: u64 = 1_000_000_000;
/// See [`MAX_FUEL`].
pub const MAX_MEMORY_MIB: u32 = 256;
/// See [`MAX_FUEL`].
pub const MAX_TIMEOUT_MS: u32 = 5_000;
/// Most modules in one bundle.
pub const MAX_MODULES: usize = 32;

/// A parsed `policy.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Policy ABI the modules speak; must be [`ABI_VERSION`].
    pub abi: u32,
    /// A name for people, e.g. `standard`.
    pub name: String,
    /// Free text for reviewers.
    #[serde(default)]
    pub description: String,
    /// The modules, in evaluation order.
    pub modules: Vec<ModuleSpec>,
}

/// One module's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    /// Unique name, `[a-z0-9-]`.
    pub name: String,
    /// The `.wasm` file, relative to the manifest, no directories.
    pub file: String,
    /// SHA-256 of the file, hex. Required in a built bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The gates it runs at.
    #[serde(default = "both_gates")]
    pub gates: Vec<Gate>,
    /// Host capabilities granted (see [`Capability`]).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Budgets for one evaluation.
    #[serde(default)]
    pub limits: ModuleLimits,
    /// Module configuration, passed through as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
}

fn both_gates() -> Vec<Gate> {
    vec![Gate::Input, Gate::Output]
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

/// Host functions a module may be granted. A module importing anything
/// else, or a capability its entry does not list, is refused at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `cloister.log(ptr, len)`: diagnostic lines that travel with the
    /// decision into the (encrypted) audit record, never into host-visible
    /// logs, which would leak whatever a module chose to write.
    Log,
}

impl Capability {
    /// The import module and name that provide it.
    pub fn import(self) -> (&'static str, &'static str) {
        match self {
            Self::Log => ("cloister", "log"),
        }
    }
}

/// Budgets for one evaluation of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModuleLimits {
    /// Wasmtime fuel (roughly, WebAssembly instructions).
    pub fuel: u64,
    /// Linear memory ceiling, MiB.
    pub memory_mib: u32,
    /// Wall-clock deadline, milliseconds (epoch interruption).
    pub timeout_ms: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000,
            memory_mib: 16,
            timeout_ms: 50,
        }
    }
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not TOML, or not this schema.
    #[error("policy.toml does not parse: {0}")]
    Syntax(String),
    /// Another ABI.
    #[error("policy.toml declares ABI {found}; this enclave speaks ABI {ABI_VERSION}")]
    Abi {
        /// What the manifest said.
        found: u32,
    },
    /// A rule on the content is broken.
    #[error("policy.toml: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parse and check a bundle's manifest.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.message().to_owned()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Parse a source manifest, the input of `cloister policy build`: the
    /// same schema, but `file` may be any path to a `.wasm` or `.wat` file.
    pub fn parse_source(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.message().to_owned()))?;
        manifest.check_rules(false)?;
        Ok(manifest)
    }

    /// The rules `parse` enforces, for manifests built in code.
    pub fn check(&self) -> Result<(), ManifestError> {
        self.check_rules(true)
    }

    fn check_rules(&self, built: bool) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        if self.abi != ABI_VERSION {
            return Err(ManifestError::Abi { found: self.abi });
        }
        if self.modules.is_empty() {
            return invalid("a bundle needs at least one module".into());
        }
        if self.modules.len() > MAX_MODULES {
            return invalid(format!("more than {MAX_MODULES} modules"));
        }
        let mut names = BTreeSet::new();
        for module in &self.modules {
            let name = &module.name;
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return invalid(format!(
                    "module name {name:?} must be 1-64 characters of a-z, 0-9 and -"
                ));
            }
            if !names.insert(name.as_str()) {
                return invalid(format!("module {name:?} is listed twice"));
            }
            let file = &module.file;
            if !built {
                if !(file.ends_with(".wasm") || file.ends_with(".wat")) {
                    return invalid(format!(
                        "module {name:?}: file {file:?} must be a .wasm or .wat file"
                    ));
                }
            } else if file.is_empty()
                || file.starts_with('.')
                || file.contains(['/', '\\'])
                || !file.ends_with(".wasm")
            {
                return invalid(format!(
                    "module {name:?}: file {file:?} must be a .wasm file name beside policy.toml"
                ));
            }
            if let Some(digest) = &module.sha256 {
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return invalid(format!("module {name:?}: sha256 must be 64 hex digits"));
                }
            }
            if module.gates.is_empty() {
                return invalid(format!("module {name:?} runs at no gate"));
            }
            let limits = module.limits;
            if limits.fuel == 0 || limits.fuel > MAX_FUEL {
                return invalid(format!("module {name:?}: fuel must be 1 to {MAX_FUEL}"));
            }
            if limits.memory_mib == 0 || limits.memory_mib > MAX_MEMORY_MIB {
                return invalid(format!(
                    "module {name:?}: memory_mib must be 1 to {MAX_MEMORY_MIB}"
                ));
            }
            if limits.timeout_ms == 0 || limits.timeout_ms > MAX_TIMEOUT_MS {
                return invalid(format!(
                    "module {name:?}: timeout_ms must be 1 to {MAX_TIMEOUT_MS}"
                ));
            }
        }
        Ok(())
    }

    /// The manifest as TOML, for writing a built bundle.
    pub fn to_toml(&self) -> Result<String, ManifestError> {
        toml::to_string(self).map_err(|e| ManifestError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const GOOD: &str = r#"
abi = 1
name = "t"
[[modules]]
name = "access"
file = "access.wasm"
gates = ["input"]
[modules.config]
roles = { clinician = ["chat"] }
"#;

    #[test]
    fn defaults_fill_in() {
        let m = Manifest::parse(GOOD).unwrap();
        let module = &m.modules[0];
        assert_eq!(module.limits, ModuleLimits::default());
        assert!(module.capabilities.is_empty());
        assert_eq!(module.gates, vec![Gate::Input]);
    }

    #[test]
    fn refuses_what_would_change_meaning_silently() {
        let cases = [
            (GOOD.replace("abi = 1", "abi = 2"), "ABI 2"),
            (GOOD.replace("gates", "gatez"), "does not parse"),
            (GOOD.replace("access.wasm", "../access.wasm"), "file name"),
            (GOOD.replace("access.wasm", "access.wat"), "file name"),
            (GOOD.replace("\"access\"", "\"Access\""), "module name"),
            (GOOD.replace("[\"input\"]", "[]"), "no gate"),
            (
                GOOD.replace("gates = [\"input\"]", "capabilities = [\"network\"]"),
                "does not parse",
            ),
            (
                GOOD.replace("gates = [\"input\"]", "[modules.limits]\nfuel = 0"),
                "fuel",
            ),
            (
                format!("{GOOD}\n[[modules]]\nname = \"access\"\nfile = \"b.wasm\"\n"),
                "twice",
            ),
            (
                "abi = 1\nname = \"t\"\nmodules = []\n".to_owned(),
                "at least one",
            ),
        ];
        for (text, expected) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
