//! What this host can launch, checked before every launch. A missing piece
//! is a refusal naming it: cloisterd never launches a weaker TEE than the
//! configuration asks for.
//!
//! The checks read files under a root directory (`/` in production) so the
//! tests can run them against fake `/sys` and `/dev` trees.

use std::path::{Path, PathBuf};

/// The lowest QEMU versions with upstream support: SEV-SNP guests landed in
/// 9.1, TDX guests in 10.1.
pub(crate) const QEMU_FOR_SNP: (u32, u32) = (9, 1);
/// See [`QEMU_FOR_SNP`].
pub(crate) const QEMU_FOR_TDX: (u32, u32) = (10, 1);

/// Something the host lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing(pub(crate) Vec<String>);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// Where to look.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    root: PathBuf,
}

impl Host {
    /// The real host.
    pub(crate) fn real() -> Self {
        Self { root: "/".into() }
    }

    #[cfg(test)]
    fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn exists(&self, absolute: &str) -> bool {
        self.path(absolute).exists()
    }

    /// A kernel module parameter that reads `Y` or `1`.
    fn parameter_on(&self, module: &str, parameter: &str) -> Option<bool> {
        let text = std::fs::read_to_string(
            self.path(&format!("/sys/module/{module}/parameters/{parameter}")),
        )
        .ok()?;
        Some(matches!(text.trim(), "Y" | "y" | "1"))
    }

    /// Whether the vhost-vsock device node exists (it may still not open:
    /// see [`Host::vhost_vsock_openable`]); only for saying why.
    pub(crate) fn has_vhost_vsock(&self) -> bool {
        self.exists("/dev/vhost-vsock")
    }

    /// What an SEV-SNP launch needs here.
    pub(crate) fn check_snp(
        &self,
        qemu: Option<(u32, u32)>,
        firmware: Option<&Path>,
    ) -> Result<(), Missing> {
        let mut missing = Vec::new();
        if !self.exists("/dev/kvm") {
            missing.push("/dev/kvm is absent (KVM is required for SEV-SNP)".to_owned());
        }
        if !self.exists("/dev/sev") {
            missing.push("/dev/sev is absent (the AMD secure processor driver ccp is not loaded, or this is not an AMD host with SEV enabled in firmware)".to_owned());
        }
        match self.parameter_on("kvm_amd", "sev_snp") {
            Some(true) => {}
            Some(false) => missing.push("kvm_amd is loaded with sev_snp=N (SNP is disabled in BIOS, the host kernel or the module options)".to_owned()),
            None => missing.push("/sys/module/kvm_amd/parameters/sev_snp is absent (kvm_amd is not loaded, or the host kernel predates SNP host support, Linux 6.11)".to_owned()),
        }
        check_qemu(&mut missing, qemu, QEMU_FOR_SNP, "SEV-SNP");
        check_firmware(&mut missing, firmware, "an SNP-capable OVMF (AmdSev build)");
        finish(missing)
    }

    /// What a TDX launch needs here.
    pub(crate) fn check_tdx(
        &self,
        qemu: Option<(u32, u32)>,
        firmware: Option<&Path>,
    ) -> Result<(), Missing> {
        let mut missing = Vec::new();
        if !self.exists("/dev/kvm") {
            missing.push("/dev/kvm is absent (KVM is required for TDX)".to_owned());
        }
        match self.parameter_on("kvm_intel", "tdx") {
            Some(true) => {}
            Some(false) => missing.push("kvm_intel is loaded with tdx=N (TDX is disabled in BIOS or the module options)".to_owned()),
            None => missing.push("/sys/module/kvm_intel/parameters/tdx is absent (kvm_intel is not loaded, or the host kernel has no TDX host support, Linux 6.16)".to_owned()),
        }
        check_qemu(&mut missing, qemu, QEMU_FOR_TDX, "TDX");
        check_firmware(&mut missing, firmware, "TDVF");
        finish(missing)
    }

    /// Whether KVM looks usable (`/dev/kvm` opens read-write); QEMU makes
    /// the final decision with `-accel kvm -accel tcg`.
    pub(crate) fn kvm_openable(&self) -> bool {
        self.openable("/dev/kvm")
    }

    /// Whether QEMU could use the kernel's vhost-vsock here.
    pub(crate) fn vhost_vsock_openable(&self) -> bool {
        self.openable("/dev/vhost-vsock")
    }

    fn openable(&self, device: &str) -> bool {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(device))
            .is_ok()
    }
}

fn check_qemu(missing: &mut Vec<String>, qemu: Option<(u32, u32)>, needed: (u32, u32), what: &str) {
    match qemu {
        Some(version) if version >= needed => {}
        Some((major, minor)) => missing.push(format!(
            "QEMU {major}.{minor} cannot launch {what} guests (needs {}.{} or later)",
            needed.0, needed.1
        )),
        None => missing.push(
            "QEMU's version could not be determined (is qemu-system-x86_64 installed?)".to_owned(),
        ),
    }
}

fn check_firmware(missing: &mut Vec<String>, firmware: Option<&Path>, what: &str) {
    match firmware {
        Some(path) if path.is_file() => {}
        Some(path) => missing.push(format!("the firmware {} does not exist", path.display())),
        None => missing.push(format!("the image names no firmware; it needs {what}")),
    }
}

fn finish(missing: Vec<String>) -> Result<(), Missing> {
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing(missing))
    }
}

/// The version in `qemu-system-x86_64 --version` output ("QEMU emulator
/// version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)").
pub(crate) fn parse_qemu_version(output: &str) -> Option<(u32, u32)> {
    let rest = output.split("version ").nth(1)?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Runs `qemu --version`.
pub(crate) fn qemu_version(qemu: &Path) -> Option<(u32, u32)> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        dir
    }

    #[test]
    fn an_snp_host_passes_and_each_missing_piece_is_named() {
        let fw = tree(&[("OVMF.fd", "fw")]);
        let firmware = fw.path().join("OVMF.fd");
        let good = tree(&[
            ("/dev/kvm", ""),
            ("/dev/sev", ""),
            ("/sys/module/kvm_amd/parameters/sev_snp", "Y\n"),
        ]);
        Host::at(good.path())
            .check_snp(Some((9, 2)), Some(&firmware))
            .unwrap();

        let off = tree(&[
            ("/dev/kvm", ""),
            ("/sys/module/kvm_amd/parameters/sev_snp", "N\n"),
        ]);
        let err = Host::at(off.path())
            .check_snp(Some((7, 2)), None)
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(text.contains("/dev/sev is absent"), "{text}");
        assert!(text.contains("sev_snp=N"), "{text}");
        assert!(
            text.contains("QEMU 7.2 cannot launch SEV-SNP guests (needs 9.1 or later)"),
            "{text}"
        );
        assert!(text.contains("names no firmware"), "{text}");

        let intel = tree(&[
            ("/dev/kvm", ""),
            ("/sys/module/kvm_intel/parameters/tdx", "Y"),
        ]);
        let err = Host::at(intel.path())
            .check_snp(Some((10, 1)), Some(&firmware))
            .unwrap_err();
        assert!(err.to_string().contains("kvm_amd is not loaded"), "{err}");
    }

    #[test]
    fn a_tdx_host_passes_and_each_missing_piece_is_named() {
        let fw = tree(&[("TDVF.fd", "fw")]);
        let firmware = fw.path().join("TDVF.fd");
        let good = tree(&[
            ("/dev/kvm", ""),
            ("/sys/module/kvm_intel/parameters/tdx", "Y\n"),
        ]);
        Host::at(good.path())
            .check_tdx(Some((10, 1)), Some(&firmware))
            .unwrap();
        let err = Host::at(good.path())
            .check_tdx(Some((10, 0)), Some(&fw.path().join("missing.fd")))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("QEMU 10.0 cannot launch TDX guests (needs 10.1 or later)"),
            "{text}"
        );
        assert!(text.contains("missing.fd does not exist"), "{text}");

        let empty = tree(&[]);
        let err = Host::at(empty.path()).check_tdx(None, None).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(err.to_string().contains("kvm_intel is not loaded"), "{err}");
        assert!(!Host::at(empty.path()).has_vhost_vsock());
        assert!(Host::at(tree(&[("/dev/vhost-vsock", "")]).path()).has_vhost_vsock());
    }

    #[test]
    fn qemu_versions_parse() {
        assert_eq!(
            parse_qemu_version(
                "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright"
            ),
            Some((7, 2))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.1.0\n"),
            Some((10, 1))
        );
        assert_eq!(parse_qemu_version("something else"), None);
        assert_eq!(parse_qemu_version("QEMU emulator version x.y"), None);
    }
}
