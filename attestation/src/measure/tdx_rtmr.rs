//! Intel TDX `RTMR[1]` and `RTMR[2]` of a QEMU direct boot through TDVF: the
//! runtime measurements that pin the kernel, the initrd and the command
//! line, which MRTD (the firmware only) does not cover.
//!
//! An RTMR starts at 48 zero bytes and each event extends it:
//! `RTMR = SHA-384(RTMR || SHA-384(event data))` (`TDG.MR.RTMR.EXTEND`;
//! the UEFI CC measurement protocol maps TCG PCR 4–5 to `RTMR[1]` and PCR
//! 8–15 to `RTMR[2]`, UEFI 2.10 section 38.4.1). For `-kernel/-initrd/-append`
//! the events, in order, are:
//!
//! - `RTMR[1]`, from the firmware: the kernel's PE Authenticode SHA-384 when
//!   it loads the kernel (`EV_EFI_BOOT_SERVICES_APPLICATION`); the
//!   `EV_EFI_ACTION` "Calling EFI Application from Boot Option"; the
//!   `EV_SEPARATOR` (four zero bytes); the `EV_EFI_ACTION`s "Exit Boot
//!   Services Invocation" and "Exit Boot Services Returned with Success".
//! - `RTMR[2]`, from the kernel's EFI stub: its load options (the command line
//!   the firmware passes, UTF-16LE with the terminating NUL), then the
//!   initrd's bytes (`EV_EVENT_TAG`s "LOADED_IMAGE::LoadOptions" and "Linux
//!   initrd", `drivers/firmware/efi/libstub`).
//!
//! Three properties of the launch stack decide these values, and this code
//! models one combination, which it states rather than guesses:
//!
//! - The firmware hashes the kernel file as it is. QEMU 10.0 and later
//!   export the unmodified file as fw_cfg `etc/boot/kernel`, which edk2
//!   since edk2-stable202502 loads in preference to the legacy kernel blob
//!   (and QEMU 10.2 stopped patching a confidential guest's setup header
//!   altogether). Older stacks hash a kernel whose header QEMU patched with
//!   the initrd's address, which makes `RTMR[1]` depend on memory and initrd
//!   size; such a launch reports a different `RTMR[1]`.
//! - The firmware passes `"initrd=initrd " + cmdline` as load options when
//!   there is an initrd (edk2 commit a2ac0fea, first in edk2-stable202508;
//!   earlier builds appended `" initrd=initrd"` instead).
//! - The kernel's EFI stub measures through the CC measurement protocol
//!   when there is no TPM (Linux 6.9 and later, or a backport). An older
//!   stub measures nothing into `RTMR[2]` in a TD, which would leave the
//!   initrd and command line unmeasured: [`tdx_direct_boot_rtmrs`] refuses
//!   such a kernel.
//!
//! A firmware that enforces Secure Boot adds nothing to `RTMR[1]` or `RTMR[2]`
//! for a kernel its `db` authorises (the authority events go to `RTMR[0]`),
//! but in a TD it refuses any other kernel outright
//! ([`super::TdvfFirmware::secure_boot_enrolled`]).
//!
//! `RTMR[0]` (TD HOB, firmware variables, ACPI tables QEMU generates) is not
//! computed: the ACPI tables depend on the QEMU version and the whole
//! machine configuration. `RTMR[3]` is the guest's own.

use sha2::{Digest, Sha384};

use super::{MeasureError, Result};
use crate::types::Measurement;

/// `EFI_CC_MEASUREMENT_PROTOCOL_GUID`, `96751a3d-72f4-41a6-a794-ed5d0e67ae6b`,
/// as the kernel's `EFI_GUID()` stores it. A kernel whose EFI stub can
/// measure into a TD's RTMRs carries it (Linux `include/linux/efi.h`).
const CC_MEASUREMENT_PROTOCOL_GUID: [u8; 16] = [
    0x3d, 0x1a, 0x75, 0x96, 0xf4, 0x72, 0xa6, 0x41, 0xa7, 0x94, 0xed, 0x5d, 0x0e, 0x67, 0xae, 0x6b,
];

/// The firmware's `EV_EFI_ACTION` strings, measured without a terminator
/// (TCG PC Client Platform Firmware Profile 1.05, section 10.4.4).
const CALLING_EFI_APPLICATION: &[u8] = b"Calling EFI Application from Boot Option";
const EXIT_BOOT_SERVICES_INVOCATION: &[u8] = b"Exit Boot Services Invocation";
const EXIT_BOOT_SERVICES_SUCCEEDED: &[u8] = b"Exit Boot Services Returned with Success";
/// `EV_SEPARATOR` data: four zero bytes.
const SEPARATOR: [u8; 4] = [0; 4];
/// What the firmware puts before the command line when there is an initrd.
const INITRD_OPTION: &str = "initrd=initrd ";

/// The direct-boot inputs QEMU hands the firmware.
#[derive(Debug, Clone, Copy)]
pub struct TdxDirectBoot<'a> {
    /// The kernel (`-kernel`): an x86-64 EFI-stub bzImage.
    pub kernel: &'a [u8],
    /// The initrd (`-initrd`).
    pub initrd: &'a [u8],
    /// The command line (`-append`).
    pub cmdline: &'a str,
}

/// One event the model extends into an RTMR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmrEvent {
    /// Which RTMR (1 or 2).
    pub rtmr: u8,
    /// The event, as an event log would name it.
    pub event: String,
    /// The digest extended.
    pub digest: Measurement,
}

/// `RTMR[1]` and `RTMR[2]` of a direct boot, with the events that make them, so
/// that an operator can compare them with a TD's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxBootRtmrs {
    /// Kernel and boot-services events.
    pub rtmr1: Measurement,
    /// Command line and initrd.
    pub rtmr2: Measurement,
    /// The events, in the order they are extended.
    pub events: Vec<RtmrEvent>,
}

/// Whether the kernel's EFI stub knows the CC measurement protocol, and so
/// measures its command line and initrd into `RTMR[2]` in a TD.
///
/// The stub sits uncompressed in a bzImage, and compilers embed a GUID it
/// compares against as two 64-bit immediates (`movabs`), so the test is that
/// both halves of `EFI_CC_MEASUREMENT_PROTOCOL_GUID` occur in the image.
/// Debian's 6.12 kernel has both, twice; its 6.1 kernel has neither. A
/// false match would need a chance 64-bit collision twice over; a miss
/// refuses the kernel, which fails closed.
pub fn kernel_measures_into_rtmrs(kernel: &[u8]) -> bool {
    let (first, second) = CC_MEASUREMENT_PROTOCOL_GUID.split_at(8);
    let contains = |needle: &[u8]| kernel.windows(needle.len()).any(|w| w == needle);
    contains(first) && contains(second)
}

/// The kernel's PE Authenticode SHA-384, as UEFI firmware measures an
/// image it loads.
pub fn kernel_authenticode_sha384(kernel: &[u8]) -> Result<Measurement> {
    let pe =
        object::read::pe::PeFile64::parse(kernel).map_err(|e| MeasureError::InvalidKernel {
            detail: format!("not a 64-bit PE image (an EFI-stub bzImage): {e}"),
        })?;
    let mut hasher = Sha384::new();
    authenticode::authenticode_digest(&pe, &mut hasher).map_err(|_| {
        MeasureError::InvalidKernel {
            detail: "its PE headers point outside the file".into(),
        }
    })?;
    Ok(Measurement(hasher.finalize().into()))
}

/// `RTMR[1]` and `RTMR[2]` for a direct boot of `boot`, under the model in the
/// module documentation. Refuses a kernel whose stub would not measure the
/// initrd and command line, an empty initrd (the firmware then passes none,
/// which this code does not model), an empty command line (likewise), and a
/// command line with a NUL (the firmware would cut it there).
pub fn tdx_direct_boot_rtmrs(boot: &TdxDirectBoot<'_>) -> Result<TdxBootRtmrs> {
    if !kernel_measures_into_rtmrs(boot.kernel) {
        return Err(MeasureError::KernelCannotMeasureRtmrs);
    }
    if boot.initrd.is_empty() {
        return Err(MeasureError::InvalidKernel {
            detail: "the initrd is empty: the firmware would pass none, and no initrd event would pin it".into(),
        });
    }
    if boot.cmdline.is_empty() {
        return Err(MeasureError::InvalidKernel {
            detail: "the command line is empty, which this code does not model".into(),
        });
    }
    if boot.cmdline.contains('\0') {
        return Err(MeasureError::InvalidKernel {
            detail: "the command line contains a NUL, where the firmware would end it".into(),
        });
    }
    let kernel = kernel_authenticode_sha384(boot.kernel)?;
    let load_options = load_options(boot.cmdline);
    let mut events = vec![
        event(
            1,
            "EV_EFI_BOOT_SERVICES_APPLICATION kernel (Authenticode)",
            kernel,
        ),
        event(
            1,
            "EV_EFI_ACTION \"Calling EFI Application from Boot Option\"",
            sha384(CALLING_EFI_APPLICATION),
        ),
        event(1, "EV_SEPARATOR", sha384(&SEPARATOR)),
        event(
            1,
            "EV_EFI_ACTION \"Exit Boot Services Invocation\"",
            sha384(EXIT_BOOT_SERVICES_INVOCATION),
        ),
        event(
            1,
            "EV_EFI_ACTION \"Exit Boot Services Returned with Success\"",
            sha384(EXIT_BOOT_SERVICES_SUCCEEDED),
        ),
    ];
    events.push(event(
        2,
        &format!(
            "EV_EVENT_TAG LOADED_IMAGE::LoadOptions {:?}",
            format!("{INITRD_OPTION}{}", boot.cmdline)
        ),
        sha384(&load_options),
    ));
    events.push(event(2, "EV_EVENT_TAG Linux initrd", sha384(boot.initrd)));
    let replay = |rtmr: u8| {
        events
            .iter()
            .filter(|e| e.rtmr == rtmr)
            .fold(Measurement([0; 48]), |acc, e| extend(&acc, &e.digest))
    };
    Ok(TdxBootRtmrs {
        rtmr1: replay(1),
        rtmr2: replay(2),
        events,
    })
}

/// `"initrd=initrd " + cmdline`, UTF-16LE with the terminating NUL: the
/// buffer the firmware hands the kernel as load options.
fn load_options(cmdline: &str) -> Vec<u8> {
    INITRD_OPTION
        .encode_utf16()
        .chain(cmdline.encode_utf16())
        .chain(core::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn event(rtmr: u8, name: &str, digest: Measurement) -> RtmrEvent {
    RtmrEvent {
        rtmr,
        event: name.to_owned(),
        digest,
    }
}

fn sha384(data: &[u8]) -> Measurement {
    Measurement(Sha384::digest(data).into())
}

/// One `TDG.MR.RTMR.EXTEND`.
fn extend(rtmr: &Measurement, digest: &Measurement) -> Measurement {
    let mut h = Sha384::new();
    h.update(rtmr.0);
    h.update(digest.0);
    Measurement(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guid_is_the_cc_measurement_protocol() {
        // 96751a3d-72f4-41a6-a794-ed5d0e67ae6b, first three fields little-endian.
        assert_eq!(
            &CC_MEASUREMENT_PROTOCOL_GUID[..4],
            &0x9675_1a3du32.to_le_bytes()
        );
        assert_eq!(
            &CC_MEASUREMENT_PROTOCOL_GUID[4..6],
            &0x72f4u16.to_le_bytes()
        );
        assert_eq!(
            &CC_MEASUREMENT_PROTOCOL_GUID[6..8],
            &0x41a6u16.to_le_bytes()
        );
    }

    #[test]
    fn load_options_are_utf16_with_the_initrd_option_and_a_nul() {
        let options = load_options("a");
        let expected: Vec<u8> = "initrd=initrd a\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(options, expected);
        assert_eq!(&options[options.len() - 4..], &[b'a', 0, 0, 0]);
    }

    #[test]
    fn action_digests_match_the_reference_event_logs() {
        // The digests dstack-mr and Fraunhofer's calculate-tdx-mrs log.
        assert_eq!(
            sha384(CALLING_EFI_APPLICATION).to_string(),
            "77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71"
        );
        assert_eq!(
            sha384(&SEPARATOR).to_string(),
            "394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0"
        );
        assert_eq!(
            sha384(EXIT_BOOT_SERVICES_INVOCATION).to_string(),
            "214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0"
        );
        assert_eq!(
            sha384(EXIT_BOOT_SERVICES_SUCCEEDED).to_string(),
            "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74"
        );
    }
}
