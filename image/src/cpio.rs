//! The initramfs archive: SVR4 "newc" cpio, the format the Linux kernel
//! unpacks into its root filesystem (`Documentation/driver-api/early-userspace/
//! buffer-format.rst`).
//!
//! Written here rather than with a general cpio crate because every header
//! field is part of the measurement: inode numbers are assigned in entry
//! order, every mtime is zero, owners are root, link counts are fixed and the
//! entries are sorted by path, so the same files always give the same bytes.

use std::collections::BTreeMap;

/// Largest file one newc entry can describe (the size field is 8 hex digits).
const MAX_ENTRY_BYTES: usize = u32::MAX as usize;

/// Why an archive cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    /// Paths are relative, without `.`/`..` components or empty parts.
    #[error("archive path {0:?} is not a plain relative path")]
    BadPath(String),
    /// Two entries claim one path.
    #[error("archive path {0:?} is added twice")]
    Duplicate(String),
    /// newc sizes are 32-bit.
    #[error("{path:?} is {bytes} bytes; a newc entry holds at most 4 GiB")]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        bytes: usize,
    },
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Directory,
    File { executable: bool, data: Vec<u8> },
    CharDevice { major: u32, minor: u32 },
}

/// An initramfs under construction. Parent directories are created
/// implicitly; the archive is written in sorted path order.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (and its parents).
    pub fn directory(&mut self, path: &str) -> Result<(), CpioError> {
        check_path(path)?;
        self.parents(path)?;
        match self.entries.get(path) {
            Some(Node::Directory) => Ok(()),
            Some(_) => Err(CpioError::Duplicate(path.to_owned())),
            None => {
                self.entries.insert(path.to_owned(), Node::Directory);
                Ok(())
            }
        }
    }

    /// Adds a regular file, mode 0755 if `executable` else 0644.
    pub fn file(&mut self, path: &str, data: Vec<u8>, executable: bool) -> Result<(), CpioError> {
        check_path(path)?;
        if data.len() > MAX_ENTRY_BYTES {
            return Err(CpioError::TooLarge {
                path: path.to_owned(),
                bytes: data.len(),
            });
        }
        self.leaf(path, Node::File { executable, data })
    }

    /// Adds a character device node, mode 0600 (the kernel needs
    /// `dev/console` before anything can mount devtmpfs).
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> Result<(), CpioError> {
        check_path(path)?;
        self.leaf(path, Node::CharDevice { major, minor })
    }

    fn leaf(&mut self, path: &str, node: Node) -> Result<(), CpioError> {
        if self.entries.contains_key(path) {
            return Err(CpioError::Duplicate(path.to_owned()));
        }
        self.parents(path)?;
        self.entries.insert(path.to_owned(), node);
        Ok(())
    }

    /// Creates the missing parent directories of `path`; a parent that is
    /// already something else is a conflict.
    fn parents(&mut self, path: &str) -> Result<(), CpioError> {
        let mut end = 0;
        while let Some(slash) = path.get(end..).and_then(|rest| rest.find('/')) {
            end += slash;
            if let Some(parent) = path.get(..end) {
                match self
                    .entries
                    .entry(parent.to_owned())
                    .or_insert(Node::Directory)
                {
                    Node::Directory => {}
                    _ => return Err(CpioError::Duplicate(parent.to_owned())),
                }
            }
            end += 1;
        }
        Ok(())
    }

    /// The archive's bytes, ending with the `TRAILER!!!` entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let total: usize = self
            .entries
            .iter()
            .map(|(path, node)| {
                let data = match node {
                    Node::File { data, .. } => data.len(),
                    Node::Directory | Node::CharDevice { .. } => 0,
                };
                110 + path.len() + 4 + data + 4
            })
            .sum();
        let mut out = Vec::with_capacity(total + 128);
        for (index, (path, node)) in self.entries.iter().enumerate() {
            // Inode 0 is avoided: some unpackers treat it as "no inode".
            let ino = index as u32 + 1;
            match node {
                Node::Directory => write_entry(&mut out, ino, 0o040_755, 2, (0, 0), path, &[]),
                Node::File { executable, data } => {
                    let mode = if *executable { 0o100_755 } else { 0o100_644 };
                    write_entry(&mut out, ino, mode, 1, (0, 0), path, data);
                }
                Node::CharDevice { major, minor } => {
                    write_entry(&mut out, ino, 0o020_600, 1, (*major, *minor), path, &[]);
                }
            }
        }
        write_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn check_path(path: &str) -> Result<(), CpioError> {
    let plain = !path.is_empty()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if plain {
        Ok(())
    } else {
        Err(CpioError::BadPath(path.to_owned()))
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    (rdev_major, rdev_minor): (u32, u32),
    path: &str,
    data: &[u8],
) {
    let name_size = path.len() as u32 + 1;
    // c_magic, then ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
    // devminor, rdevmajor, rdevminor, namesize, check: 8 hex digits each.
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        data.len() as u32,
        0,
        0,
        rdev_major,
        rdev_minor,
        name_size,
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(path.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn entries_are_sorted_parents_implied_and_bytes_fixed() {
        let mut a = Archive::new();
        a.file("lib/modules/x.ko", b"mod".to_vec(), false).unwrap();
        a.file("init", b"\x7fELF".to_vec(), true).unwrap();
        let mut b = Archive::new();
        b.file("init", b"\x7fELF".to_vec(), true).unwrap();
        b.directory("lib").unwrap();
        b.file("lib/modules/x.ko", b"mod".to_vec(), false).unwrap();
        let bytes = a.to_bytes();
        assert_eq!(bytes, b.to_bytes());
        assert_eq!(bytes.len() % 4, 0);
        let names: Vec<_> = a.entries.keys().cloned().collect();
        assert_eq!(names, ["init", "lib", "lib/modules", "lib/modules/x.ko"]);
        // The first header: inode 1, mode 0100755, size 4, name "init".
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        assert_eq!(&header[6..14], "00000001");
        assert_eq!(&header[14..22], "000081ED");
        assert_eq!(&header[54..62], "00000004");
        assert_eq!(&bytes[110..115], b"init\0");
        let trailer = bytes.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert!(trailer > 110);
    }

    #[test]
    fn the_kernel_format_is_followed_by_cpio_itself() {
        // GNU cpio, where installed, lists the archive as we built it.
        let Ok(_) = std::process::Command::new("cpio").arg("--version").output() else {
            eprintln!("cpio is not installed; skipping the cross-check");
            return;
        };
        let mut a = Archive::new();
        a.file("init", vec![1; 5], true).unwrap();
        a.file("image/enclave.toml", b"tee = \"sim\"\n".to_vec(), false)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd");
        std::fs::write(&path, a.to_bytes()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -it --quiet < {}", path.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "image\nimage/enclave.toml\ninit\n"
        );
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/init", "a/../b", "a//b", "./a", "a/"] {
            assert_eq!(
                a.file(bad, vec![], false),
                Err(CpioError::BadPath(bad.into()))
            );
        }
        a.file("init", vec![], true).unwrap();
        assert_eq!(
            a.file("init", vec![], true),
            Err(CpioError::Duplicate("init".into()))
        );
        assert_eq!(
            a.directory("init"),
            Err(CpioError::Duplicate("init".into()))
        );
        assert_eq!(
            a.file("init/x", vec![], false),
            Err(CpioError::Duplicate("init".into()))
        );
    }
}
