//! The guest kernel, taken from an extracted Debian `linux-image-*` package
//! (`dpkg-deb -x`, never installed on the host): its `vmlinuz`, and the
//! modules the enclave needs at boot with everything they depend on, in an
//! order the kernel accepts.
//!
//! Debian builds virtio, 9p and vsock as modules, and the package ships no
//! `modules.dep` (depmod writes it at install time), so dependencies are read
//! from each module's own `.modinfo` section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::{Object as _, ObjectSection as _};

/// The modules a `vm`, `snp` or `tdx` enclave loads at boot: virtio PCI
/// transport, the virtio NIC for the relay's user-mode network, virtio-vsock
/// for a relay over vsock, and 9p over virtio for the host's ciphertext and
/// audit directories.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "vmw_vsock_virtio_transport",
    "9pnet_virtio",
    "9p",
];

/// Why the kernel tree cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Reading the tree failed.
    #[error("cannot read {path}")]
    Io {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The tree has no kernel, or several.
    #[error("{tree} must hold exactly one boot/vmlinuz-*; found {found}")]
    Vmlinuz {
        /// The tree.
        tree: PathBuf,
        /// How many.
        found: usize,
    },
    /// A module the image needs is not in the tree.
    #[error("module {name} (needed by {needed_by}) is not under {dir}")]
    MissingModule {
        /// The module.
        name: String,
        /// Who needs it.
        needed_by: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A module file is not an ELF object with a `.modinfo` section.
    #[error("{path} is not a kernel module: {reason}")]
    BadModule {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A dependency cycle (a damaged tree).
    #[error("module dependencies form a cycle through {0}")]
    Cycle(String),
}

/// A module file to put in the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The module's name (underscores).
    pub name: String,
    /// Its path relative to `lib/modules/<release>/`.
    pub relative: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A kernel ready to go into an image.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The release (`6.1.0-48-amd64`).
    pub release: String,
    /// The bzImage.
    pub vmlinuz: Vec<u8>,
    /// Modules in load order: every module after all it depends on.
    pub modules: Vec<Module>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Module names treat `-` and `_` alike; the kernel reports underscores.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

impl Kernel {
    /// Reads the kernel and `wanted` modules (plus dependencies) from an
    /// extracted package tree.
    pub fn from_tree(tree: &Path, wanted: &[&str]) -> Result<Self, KernelError> {
        let boot = tree.join("boot");
        let mut kernels = Vec::new();
        for entry in std::fs::read_dir(&boot).map_err(io(&boot))? {
            let entry = entry.map_err(io(&boot))?;
            if let Some(release) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
            {
                kernels.push((release.to_owned(), entry.path()));
            }
        }
        let [(release, vmlinuz_path)] = kernels.as_slice() else {
            return Err(KernelError::Vmlinuz {
                tree: tree.to_owned(),
                found: kernels.len(),
            });
        };
        let vmlinuz = std::fs::read(vmlinuz_path).map_err(io(vmlinuz_path))?;
        let module_dir = tree.join("lib/modules").join(release);
        let index = index_modules(&module_dir)?;

        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            visit(
                &canonical(name),
                "the image",
                &index,
                &module_dir,
                &mut done,
                &mut Vec::new(),
                &mut order,
            )?;
        }
        Ok(Self {
            release: release.clone(),
            vmlinuz,
            modules: order,
        })
    }
}

/// Every `*.ko` under `dir`, by module name.
fn index_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, KernelError> {
    let entries = crate::walk::entries_below(dir)
        .map_err(|(path, source)| KernelError::Io { path, source })?;
    let mut index = BTreeMap::new();
    for (path, _) in entries {
        if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            index.insert(canonical(stem), path);
        }
    }
    Ok(index)
}

fn visit(
    name: &str,
    needed_by: &str,
    index: &BTreeMap<String, PathBuf>,
    module_dir: &Path,
    done: &mut BTreeSet<String>,
    path: &mut Vec<String>,
    order: &mut Vec<Module>,
) -> Result<(), KernelError> {
    if done.contains(name) {
        return Ok(());
    }
    if path.iter().any(|p| p == name) {
        return Err(KernelError::Cycle(name.to_owned()));
    }
    let file = index.get(name).ok_or_else(|| KernelError::MissingModule {
        name: name.to_owned(),
        needed_by: needed_by.to_owned(),
        dir: module_dir.to_owned(),
    })?;
    let bytes = std::fs::read(file).map_err(io(file))?;
    let depends = depends(&bytes).map_err(|reason| KernelError::BadModule {
        path: file.clone(),
        reason,
    })?;
    path.push(name.to_owned());
    for dependency in depends {
        visit(&dependency, name, index, module_dir, done, path, order)?;
    }
    path.pop();
    let relative = file
        .strip_prefix(module_dir)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned();
    done.insert(name.to_owned());
    order.push(Module {
        name: name.to_owned(),
        relative,
        bytes,
    });
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` section.
pub fn depends(module: &[u8]) -> Result<Vec<String>, String> {
    let file = object::File::parse(module).map_err(|e| e.to_string())?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for entry in data.split(|b| *b == 0) {
        if let Some(list) = entry.strip_prefix(b"depends=") {
            let list = std::str::from_utf8(list).map_err(|e| e.to_string())?;
            found.extend(list.split(',').filter(|d| !d.is_empty()).map(canonical));
        }
    }
    Ok(found)
}
