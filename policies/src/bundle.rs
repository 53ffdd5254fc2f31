//! A policy bundle on disk and its digest.
//!
//! The digest is what clients and the key broker pin, so it covers exactly
//! what decides: the manifest (module order, gates, limits, capabilities,
//! configuration) and every module's bytes.
//!
//! ```text
//! digest = SHA-256( "cloister-policy-bundle/v1" ‖ 0x00
//!                   ‖ u64be(len(C)) ‖ C
//!                   ‖ SHA-256(module 1) ‖ … ‖ SHA-256(module n) )
//! C      = canonical JSON of the manifest with defaults filled in:
//!          object keys sorted by their UTF-8 bytes, no whitespace,
//!          strings escaped as serde_json does
//! ```
//!
//! Comments, key order and formatting in `policy.toml` therefore do not
//! change the digest; anything that changes behaviour does.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// Largest module file accepted.
pub const MAX_MODULE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

const DOMAIN: &[u8] = b"cloister-policy-bundle/v1\0";

/// A bundle read from disk, every module's bytes checked against the
/// manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// Module bytes, in manifest order.
    pub modules: Vec<Vec<u8>>,
    digest: [u8; 32],
}

/// Why a bundle is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file could not be read.
    #[error("policy bundle {path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bigger than the limit for its kind.
    #[error("policy bundle {path}: {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Which file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The manifest is refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A built bundle must pin every module's digest.
    #[error("module {module:?} has no sha256 in policy.toml: build the bundle with `cloister policy build`")]
    UnpinnedModule {
        /// The module.
        module: String,
    },
    /// The file is not the one the manifest pins.
    #[error("module {module:?}: {file} has SHA-256 {actual}, policy.toml pins {pinned}")]
    ModuleDigestMismatch {
        /// The module.
        module: String,
        /// Its file.
        file: String,
        /// What the manifest says.
        pinned: String,
        /// What the file hashes to.
        actual: String,
    },
}

impl Bundle {
    /// Read `dir/policy.toml` and the modules it names.
    pub fn read(dir: &Path) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = read_limited(&manifest_path, MAX_MANIFEST_BYTES)?;
        let text = String::from_utf8(text).map_err(|_| {
            BundleError::Manifest(ManifestError::Syntax("policy.toml is not UTF-8".into()))
        })?;
        let manifest = Manifest::parse(&text)?;
        let mut modules = Vec::with_capacity(manifest.modules.len());
        for spec in &manifest.modules {
            let bytes = read_limited(&dir.join(&spec.file), MAX_MODULE_BYTES)?;
            let pinned = spec
                .sha256
                .as_deref()
                .ok_or_else(|| BundleError::UnpinnedModule {
                    module: spec.name.clone(),
                })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if !actual.eq_ignore_ascii_case(pinned) {
                return Err(BundleError::ModuleDigestMismatch {
                    module: spec.name.clone(),
                    file: spec.file.clone(),
                    pinned: pinned.to_owned(),
                    actual,
                });
            }
            modules.push(bytes);
        }
        Ok(Self::from_parts(manifest, modules))
    }

    /// A bundle from a manifest and module bytes already in memory (the
    /// manifest's `sha256` fields are filled in from the bytes).
    pub fn from_parts(mut manifest: Manifest, modules: Vec<Vec<u8>>) -> Self {
        for (spec, bytes) in manifest.modules.iter_mut().zip(&modules) {
            spec.sha256 = Some(hex::encode(Sha256::digest(bytes)));
        }
        let digest = digest_of(&manifest, &modules);
        Self {
            manifest,
            modules,
            digest,
        }
    }

    /// The bundle digest (see the module documentation).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Write the bundle into `dir` (created if missing): `policy.toml` and
    /// the modules, each file written beside its final name and renamed.
    pub fn write(&self, dir: &Path) -> Result<(), BundleError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (spec, bytes) in self.manifest.modules.iter().zip(&self.modules) {
            write_replacing(&dir.join(&spec.file), bytes).map_err(io(&dir.join(&spec.file)))?;
        }
        let text = format!(
            "# Cloister policy bundle. Digest: {}\n# (`cloister policy hash` recomputes it; the digest covers this\n# manifest's content, not its comments or layout.)\n{}",
            hex::encode(self.digest),
            self.manifest.to_toml()?
        );
        let manifest_path = dir.join(MANIFEST_FILE);
        write_replacing(&manifest_path, text.as_bytes()).map_err(io(&manifest_path))
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limit {
        return Err(BundleError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    std::fs::read(path).map_err(io)
}

fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

fn digest_of(manifest: &Manifest, modules: &[Vec<u8>]) -> [u8; 32] {
    let canonical = canonical_json(manifest);
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((canonical.len() as u64).to_be_bytes());
    hasher.update(&canonical);
    for module in modules {
        hasher.update(Sha256::digest(module));
    }
    hasher.finalize().into()
}

/// The manifest's canonical JSON (sorted keys, no whitespace), independent
/// of whether serde_json preserves insertion order in this build.
pub fn canonical_json(manifest: &Manifest) -> Vec<u8> {
    // A Manifest always serializes (its fields are plain data and TOML
    // values); Null would still hash deterministically.
    canonical_json_value(&serde_json::to_value(manifest).unwrap_or(Value::Null))
}

/// Any JSON value in the same canonical form.
pub(crate) fn canonical_json_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serializing a scalar Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text).unwrap()
    }

    const A: &str = "abi = 1\nname = \"t\"\n[[modules]]\nname = \"m\"\nfile = \"m.wasm\"\n[modules.config]\nb = 1\na = [1, 2]\n";

    #[test]
    fn layout_and_comments_do_not_change_the_digest() {
        let reordered = "# a comment\nname = \"t\"\nabi = 1\n[[modules]]\nfile = \"m.wasm\"\nname = \"m\"\ngates = [\"input\", \"output\"]\n[modules.config]\na = [1, 2]\nb = 1\n";
        let one = Bundle::from_parts(manifest(A), vec![b"wasm".to_vec()]);
        let two = Bundle::from_parts(manifest(reordered), vec![b"wasm".to_vec()]);
        assert_eq!(one.digest(), two.digest());
    }

    #[test]
    fn behaviour_changes_the_digest() {
        let base = Bundle::from_parts(manifest(A), vec![b"wasm".to_vec()]).digest();
        let variants = [
            A.replace("b = 1", "b = 2"),
            A.replace("[modules.config]", "gates = [\"input\"]\n[modules.config]"),
            A.replace(
                "[modules.config]",
                "[modules.limits]\nfuel = 7\n[modules.config]",
            ),
            A.replace(
                "[modules.config]",
                "capabilities = [\"log\"]\n[modules.config]",
            ),
        ];
        for variant in variants {
            let digest = Bundle::from_parts(manifest(&variant), vec![b"wasm".to_vec()]).digest();
            assert_ne!(digest, base, "{variant}");
        }
        let other_bytes = Bundle::from_parts(manifest(A), vec![b"wasn".to_vec()]).digest();
        assert_ne!(other_bytes, base);
    }

    #[test]
    fn read_checks_each_module_against_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::from_parts(manifest(A), vec![b"wasm".to_vec()]);
        bundle.write(dir.path()).unwrap();
        let read = Bundle::read(dir.path()).unwrap();
        assert_eq!(read.digest(), bundle.digest());

        std::fs::write(dir.path().join("m.wasm"), b"evil").unwrap();
        match Bundle::read(dir.path()) {
            Err(BundleError::ModuleDigestMismatch { module, .. }) => assert_eq!(module, "m"),
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join(MANIFEST_FILE), A).unwrap();
        assert!(matches!(
            Bundle::read(dir.path()),
            Err(BundleError::UnpinnedModule { .. })
        ));
        std::fs::remove_file(dir.path().join("m.wasm")).unwrap();
        assert!(matches!(
            Bundle::read(dir.path()),
            Err(BundleError::Io { .. })
        ));
    }
}
