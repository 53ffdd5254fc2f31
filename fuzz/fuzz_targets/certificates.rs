//! Certificate, chain and CRL parsing through the public SNP endorsement API.
//! Input: `u16 LE vek_len, vek, u16 LE chain_len, chain, crl`. No panics.
#![no_main]

use cloister_attestation::snp::SnpEndorsements;
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fn take<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let len = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => return &[],
    };
    let rest = &data[2..];
    let (head, tail) = rest.split_at(len.min(rest.len()));
    *data = tail;
    head
}

fuzz_target!(|data: &[u8]| {
    let now = datetime!(2025-10-01 00:00:00 UTC);
    let mut rest = data;
    let vek = take(&mut rest);
    let chain = take(&mut rest);
    let crl = rest;
    for (chain, crl) in [(None, None), (Some(chain), None), (Some(chain), Some(crl))] {
        if let Ok(e) = SnpEndorsements::new(vek, chain, crl) {
            let _ = e.verify(now);
        }
    }
});
