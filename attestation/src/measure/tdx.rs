//! Intel TDX MRTD: the build-time measurement the TDX module folds up while
//! the VMM adds the firmware's pages to a TD (Intel TDX Module Base
//! Architecture Specification, document 348549, section 12.1 "MRTD";
//! TDX Module ABI Specification, `TDH.MEM.PAGE.ADD` and `TDH.MR.EXTEND`).
//!
//! MRTD is one SHA-384 over a stream of 128-byte blocks, finalised by
//! `TDH.MR.FINALIZE`:
//!
//! - `TDH.MEM.PAGE.ADD` of a 4 KiB page appends one block: the ASCII
//!   `"MEM.PAGE.ADD"` at offset 0, the page's GPA (little-endian `u64`) at
//!   offset 16, zeros elsewhere;
//! - `TDH.MR.EXTEND` of a 256-byte chunk appends three: `"MR.EXTEND"` at
//!   offset 0 and the chunk's GPA at offset 16, then the chunk's 256 bytes.
//!
//! The VMM adds the TDVF sections in metadata order, page by page; for a
//! section with [`super::tdvf::ATTRIBUTE_MR_EXTEND`] it extends each page's
//! sixteen chunks right after adding it. That is Linux KVM's
//! `KVM_TDX_INIT_MEM_REGION` (`arch/x86/kvm/vmx/tdx.c`, Linux 6.16 and
//! later) driven by QEMU's `tdx_finalize_vm` (`target/i386/kvm/tdx.c`,
//! QEMU 10.1 and later). Some pre-upstream TDX stacks added every page
//! before extending any; they give a different MRTD, and this code does not
//! model them.
//!
//! MRTD depends only on the firmware: the TD HOB and temporary memory are
//! added without being extended, so memory size and vCPU count do not
//! enter it. The kernel, initrd and command line are measured later, by
//! the firmware into RTMRs; see [`super::tdx_direct_boot_rtmrs`].

use sha2::{Digest, Sha384};

use super::tdvf::{TdvfFirmware, PAGE_SIZE};
use super::Result;
use crate::types::Measurement;

/// One block of the MRTD stream.
const BLOCK: usize = 128;
/// `TDH.MR.EXTEND` measures 256 bytes at a time.
const EXTEND_CHUNK: usize = 256;

/// The MRTD a TD launched by QEMU and KVM from `firmware` reports.
pub fn tdx_mrtd(firmware: &TdvfFirmware<'_>) -> Result<Measurement> {
    let mut mrtd = Sha384::new();
    for section in firmware.sections() {
        let data = section.raw_data(firmware.data());
        let pages = section.memory_data_size / PAGE_SIZE;
        for page in 0..pages {
            let gpa = section.memory_address + page * PAGE_SIZE;
            mrtd.update(header(b"MEM.PAGE.ADD", gpa));
            if section.extends_mrtd() {
                // Parsing checked that a measured section's raw data is its
                // whole memory, so every page is in `data`.
                let start = usize::try_from(page * PAGE_SIZE).unwrap_or(usize::MAX);
                let page_bytes = data
                    .get(start..)
                    .and_then(|d| d.get(..PAGE_SIZE as usize))
                    .unwrap_or_default();
                for (i, chunk) in page_bytes.chunks(EXTEND_CHUNK).enumerate() {
                    mrtd.update(header(b"MR.EXTEND", gpa + (i * EXTEND_CHUNK) as u64));
                    mrtd.update(chunk);
                }
            }
        }
    }
    Ok(Measurement(mrtd.finalize().into()))
}

/// A 128-byte block naming an operation and the GPA it applies to.
fn header(operation: &[u8], gpa: u64) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    if let Some(name) = block.get_mut(..operation.len()) {
        name.copy_from_slice(operation);
    }
    if let Some(at) = block.get_mut(16..24) {
        at.copy_from_slice(&gpa.to_le_bytes());
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_the_abi_layout() {
        let block = header(b"MEM.PAGE.ADD", 0xffc8_4000);
        assert_eq!(&block[..12], b"MEM.PAGE.ADD");
        assert_eq!(&block[12..16], &[0; 4]);
        assert_eq!(&block[16..24], &0xffc8_4000u64.to_le_bytes());
        assert!(block[24..].iter().all(|&b| b == 0));
        let block = header(b"MR.EXTEND", 0x100);
        assert_eq!(&block[..9], b"MR.EXTEND");
        assert_eq!(&block[16..24], &0x100u64.to_le_bytes());
    }
}
