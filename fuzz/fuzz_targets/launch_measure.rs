//! Launch-measurement inputs an operator supplies: firmware parsed as a
//! TDVF and as an SEV OVMF, measured when it parses, and the same bytes as
//! a kernel for Authenticode and the TDX direct-boot RTMRs. No input may
//! panic or run unbounded.
#![no_main]

use cloister_attestation::measure::{
    kernel_authenticode_sha384, snp_launch_digest, tdx_direct_boot_rtmrs, tdx_mrtd,
    OvmfFirmware, SnpLaunchConfig, TdvfFirmware, TdxDirectBoot, VcpuType,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(firmware) = TdvfFirmware::parse(data) {
        let _ = tdx_mrtd(&firmware);
        let _ = firmware.secure_boot_enrolled();
    }
    if let Ok(firmware) = OvmfFirmware::parse(data) {
        let _ = snp_launch_digest(&firmware, &SnpLaunchConfig::qemu(2, VcpuType::EpycV4));
    }
    let _ = kernel_authenticode_sha384(data);
    let _ = tdx_direct_boot_rtmrs(&TdxDirectBoot {
        kernel: data,
        initrd: b"initrd",
        cmdline: "console=ttyS0",
    });
});
