//! Listing a directory tree, shared by the kernel-module index and the
//! enclave directory copied into the initramfs.

use std::fs::FileType;
use std::io;
use std::path::{Path, PathBuf};

/// Every entry below `dir` that is not a directory, with its type (not
/// following symbolic links). An error names the path it happened on.
pub(crate) fn entries_below(dir: &Path) -> Result<Vec<(PathBuf, FileType)>, (PathBuf, io::Error)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| (current.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (current.clone(), e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| (path.clone(), e))?;
            if kind.is_dir() {
                pending.push(path);
            } else {
                out.push((path, kind));
            }
        }
    }
    Ok(out)
}
