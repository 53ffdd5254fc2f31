//! The SEV hashes table QEMU writes into OVMF's kernel-hashes page for
//! measured direct boot (QEMU `target/i386/sev.c`, `SevHashTable`; OVMF
//! `OvmfPkg/Library/BlobVerifierLib/BlobVerifierSevHashes.c` reads it).
//! Launching with `-kernel` then measures the kernel, initrd and command line
//! through this page, so the digest covers them.
//!
//! Layout (packed, little-endian): a header `{ GUID; u16 length }` followed by
//! three entries `{ GUID; u16 length; u8 sha256[32] }` for the command line,
//! the initrd and the kernel, padded with zeros to a multiple of 16 bytes.

use sha2::{Digest, Sha256};

use super::ovmf::Guid;

/// `9438d606-4f22-4cc9-b479-a793d411fd21`.
const TABLE_HEADER: Guid = Guid::new(
    0x9438_d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// `97d02dd8-bd20-4c94-aa78-e7714d36ab2a`.
const CMDLINE_ENTRY: Guid = Guid::new(
    0x97d0_2dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);
/// `44baf731-3a2f-4bd7-9af1-41e29169781d`.
const INITRD_ENTRY: Guid = Guid::new(
    0x44ba_f731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// `4de79437-abd2-427f-b835-d5b172d2045b`.
const KERNEL_ENTRY: Guid = Guid::new(
    0x4de7_9437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);

/// GUID and length.
const HEADER_LEN: usize = 16 + 2;
/// GUID, length and a SHA-256.
const ENTRY_LEN: usize = 16 + 2 + 32;
/// The table without padding.
const TABLE_LEN: usize = HEADER_LEN + 3 * ENTRY_LEN;
/// The table as QEMU writes it, padded to 16 bytes.
pub(crate) const PADDED_TABLE_LEN: usize = TABLE_LEN.next_multiple_of(16);

/// The SHA-256 digests of the kernel, initrd and command line a guest is
/// launched with, as QEMU records them for OVMF to check; the launch digest
/// covers them through the kernel-hashes page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the kernel image.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of no bytes when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line and its terminating NUL.
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// The hashes of a kernel, an optional initrd and an optional command
    /// line, as QEMU computes them: a missing initrd hashes as empty, a
    /// missing command line as the empty string (a single NUL).
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or_default()).into(),
            cmdline: Self::cmdline_sha256(cmdline),
        }
    }

    /// SHA-256 of the command line as QEMU passes it: its UTF-8 bytes and a
    /// terminating NUL; `None` is the empty command line.
    pub fn cmdline_sha256(cmdline: Option<&str>) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(cmdline.unwrap_or_default().as_bytes());
        hasher.update([0u8]);
        hasher.finalize().into()
    }

    /// The padded table QEMU writes at the hashes-table address.
    pub(crate) fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut bytes = Vec::with_capacity(PADDED_TABLE_LEN);
        bytes.extend_from_slice(TABLE_HEADER.bytes());
        bytes.extend_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        for (guid, hash) in [
            (CMDLINE_ENTRY, &self.cmdline),
            (INITRD_ENTRY, &self.initrd),
            (KERNEL_ENTRY, &self.kernel),
        ] {
            bytes.extend_from_slice(guid.bytes());
            bytes.extend_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            bytes.extend_from_slice(hash);
        }
        let mut out = [0u8; PADDED_TABLE_LEN];
        for (dst, src) in out.iter_mut().zip(bytes) {
            *dst = src;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout() {
        assert_eq!(TABLE_LEN, 168);
        assert_eq!(PADDED_TABLE_LEN, 176);
        let hashes = KernelHashes {
            kernel: [0x4b; 32],
            initrd: [0x11; 32],
            cmdline: [0xcc; 32],
        };
        let t = hashes.table();
        assert_eq!(&t[..16], TABLE_HEADER.bytes());
        assert_eq!(&t[16..18], &168u16.to_le_bytes());
        assert_eq!(&t[18..34], CMDLINE_ENTRY.bytes());
        assert_eq!(&t[34..36], &50u16.to_le_bytes());
        assert_eq!(&t[36..68], &[0xcc; 32]);
        assert_eq!(&t[68..84], INITRD_ENTRY.bytes());
        assert_eq!(&t[86..118], &[0x11; 32]);
        assert_eq!(&t[118..134], KERNEL_ENTRY.bytes());
        assert_eq!(&t[136..168], &[0x4b; 32]);
        assert_eq!(&t[168..], &[0u8; 8]);
    }

    #[test]
    fn missing_cmdline_is_a_nul() {
        assert_eq!(
            KernelHashes::cmdline_sha256(None),
            <[u8; 32]>::from(Sha256::digest([0u8]))
        );
        assert_eq!(
            KernelHashes::cmdline_sha256(Some("")),
            KernelHashes::cmdline_sha256(None)
        );
    }
}
