//! What a model bundle holds, once unsealed: the bytes of one GGUF file, or
//! an uncompressed tar of Hugging Face files. Everything is read from
//! memory: the plaintext never touches the host's disk.
//!
//! A tar holds either `model.gguf` (and optionally `tokenizer.json` and
//! `tokenizer_config.json`, which then replace the GGUF's own tokenizer), or
//! `config.json`, `tokenizer.json` and `model.safetensors` (and optionally
//! `tokenizer_config.json`, which carries the chat template). `cloister
//! model pack` writes one reproducibly.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Cursor, Read as _};

use crate::EngineError;

/// GGUF files start with these bytes.
pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// Names a tar bundle may hold; anything else is refused, so a bundle
/// cannot carry files nobody reviewed.
pub const BUNDLE_FILES: [&str; 5] = [
    "model.gguf",
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
];

/// The files of a model bundle. A bare GGUF is borrowed from the bundle,
/// not copied: it is most of the enclave's memory.
#[derive(Debug)]
pub enum ModelFiles<'a> {
    /// A quantized (or not) GGUF model.
    Gguf {
        /// The GGUF file.
        gguf: Cow<'a, [u8]>,
        /// A tokenizer to use instead of the GGUF's.
        tokenizer_json: Option<Vec<u8>>,
        /// Special tokens and chat template for that tokenizer.
        tokenizer_config: Option<Vec<u8>>,
    },
    /// A llama-architecture model in safetensors.
    Safetensors {
        /// `config.json`.
        config: Vec<u8>,
        /// `tokenizer.json`.
        tokenizer_json: Vec<u8>,
        /// `tokenizer_config.json`.
        tokenizer_config: Option<Vec<u8>>,
        /// `model.safetensors`.
        weights: Vec<u8>,
    },
}

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::Failed(format!("model bundle: {}", message.into()))
}

/// Reads the files of an uncompressed tar held in memory: regular files
/// only, each named once, and only the names in `allowed`.
pub fn read_tar(bytes: &[u8], allowed: &[&str]) -> Result<BTreeMap<String, Vec<u8>>, EngineError> {
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    let mut files = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("damaged tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map_err(|e| bad(format!("a member's name is unreadable: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("{path:?} is not a regular file")));
        }
        if !allowed.contains(&path.as_str()) {
            return Err(bad(format!(
                "unexpected member {path:?} (allowed: {})",
                allowed.join(", ")
            )));
        }
        let mut data =
            Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(bytes.len()));
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        if files.insert(path.clone(), data).is_some() {
            return Err(bad(format!("{path:?} appears twice")));
        }
    }
    Ok(files)
}

impl<'a> ModelFiles<'a> {
    /// Recognises what `bytes` hold.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EngineError> {
        if bytes.starts_with(GGUF_MAGIC) {
            return Ok(Self::Gguf {
                gguf: Cow::Borrowed(bytes),
                tokenizer_json: None,
                tokenizer_config: None,
            });
        }
        let mut files = read_tar(bytes, &BUNDLE_FILES)?;
        let tokenizer_config = files.remove("tokenizer_config.json");
        if let Some(gguf) = files.remove("model.gguf") {
            if !gguf.starts_with(GGUF_MAGIC) {
                return Err(bad("model.gguf is not a GGUF file"));
            }
            if let Some(other) = files.keys().find(|k| *k != "tokenizer.json") {
                return Err(bad(format!("{other} does not belong beside model.gguf")));
            }
            return Ok(Self::Gguf {
                gguf: Cow::Owned(gguf),
                tokenizer_json: files.remove("tokenizer.json"),
                tokenizer_config,
            });
        }
        let mut take = |name: &str| {
            files
                .remove(name)
                .ok_or_else(|| bad(format!("neither model.gguf nor {name} is in the bundle")))
        };
        Ok(Self::Safetensors {
            config: take("config.json")?,
            tokenizer_json: take("tokenizer.json")?,
            weights: take("model.safetensors")?,
            tokenizer_config,
        })
    }
}

/// Writes `files` as an uncompressed tar that depends only on the names and
/// bytes: sorted, mode 0644, owner 0, time 0.
pub fn write_tar(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, EngineError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header
            .set_path(name)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        header.set_cksum();
        builder
            .append(&header, data.as_slice())
            .map_err(|e| bad(format!("{name}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| bad(format!("cannot finish the tar: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn files(names: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        names
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.to_vec()))
            .collect()
    }

    #[test]
    fn recognises_each_layout_and_refuses_others() {
        assert!(matches!(
            ModelFiles::parse(b"GGUF\x03\0\0\0rest").unwrap(),
            ModelFiles::Gguf { .. }
        ));
        let st = write_tar(&files(&[
            ("config.json", b"{}"),
            ("tokenizer.json", b"{}"),
            ("model.safetensors", b"w"),
        ]))
        .unwrap();
        assert!(matches!(
            ModelFiles::parse(&st).unwrap(),
            ModelFiles::Safetensors { .. }
        ));
        // Reproducible: the same files give the same bytes.
        assert_eq!(
            st,
            write_tar(&files(&[
                ("model.safetensors", b"w"),
                ("config.json", b"{}"),
                ("tokenizer.json", b"{}"),
            ]))
            .unwrap()
        );
        let g = write_tar(&files(&[
            ("model.gguf", b"GGUF...."),
            ("tokenizer.json", b"{}"),
        ]))
        .unwrap();
        assert!(matches!(
            ModelFiles::parse(&g).unwrap(),
            ModelFiles::Gguf {
                tokenizer_json: Some(_),
                ..
            }
        ));

        for (layout, why) in [
            (vec![("model.gguf", &b"nope"[..])], "not a GGUF"),
            (vec![("config.json", &b"{}"[..])], "tokenizer.json"),
            (vec![("evil.sh", &b"x"[..])], "unexpected member"),
            (
                vec![("model.gguf", &b"GGUF"[..]), ("config.json", &b"{}"[..])],
                "does not belong",
            ),
        ] {
            let e = ModelFiles::parse(&write_tar(&files(&layout)).unwrap()).unwrap_err();
            assert!(e.to_string().contains(why), "{e} lacks {why}");
        }
        assert!(ModelFiles::parse(b"garbage that is no archive").is_err());
        assert!(ModelFiles::parse(&[]).is_err());
    }
}
