//! Collateral JSON parsing and verification, and TCB evaluation of the real
//! quote against whatever verifies: no panics.
#![no_main]

use cloister_attestation::tdx::{TdxCollateral, TdxQuote};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

const QUOTE: &[u8] = include_bytes!("../../attestation/tests/vectors/tdx/v4-phala/quote.bin");

fuzz_target!(|data: &[u8]| {
    let now = datetime!(2025-06-25 00:00:00 UTC);
    if let Ok(collateral) = TdxCollateral::from_json(data) {
        if let Ok(verified) = collateral.verify(now) {
            let quote = TdxQuote::parse(QUOTE).expect("the real quote parses");
            let _ = quote.verify(Some(&verified), now);
        }
    }
});
