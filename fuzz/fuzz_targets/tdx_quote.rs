//! DCAP quote parsing and verification (without collateral): no panics, and
//! nothing but the real signed header and body verifies.
#![no_main]

use cloister_attestation::tdx::TdxQuote;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

const QUOTE: &[u8] = include_bytes!("../../attestation/tests/vectors/tdx/v4-phala/quote.bin");

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = TdxQuote::parse(data) {
        if quote.verify(None, datetime!(2025-06-25 00:00:00 UTC)).is_ok() {
            assert_eq!(&data[..632], &QUOTE[..632]);
        }
    }
});
