//! SNP report parsing, then verification against the real Milan VCEK: no
//! input may panic, and none may verify unless it is the real report.
#![no_main]

use cloister_attestation::snp::{SnpEndorsements, SnpReport};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

const VCEK: &[u8] = include_bytes!("../../attestation/tests/vectors/snp/milan-v2-virtee/vcek.der");
const REPORT: &[u8] = include_bytes!("../../attestation/tests/vectors/snp/milan-v2-virtee/report.bin");

fuzz_target!(|data: &[u8]| {
    let now = datetime!(2025-10-01 00:00:00 UTC);
    if let Ok(report) = SnpReport::parse(data) {
        let chain = SnpEndorsements::new(VCEK, None, None)
            .and_then(|e| e.verify(now))
            .expect("the real chain verifies");
        if report.verify(&chain, now).is_ok() {
            // Only the signed bytes matter; the unsigned tail is reserved-zero.
            assert_eq!(&data[..0x2A0], &REPORT[..0x2A0]);
        }
    }
});
