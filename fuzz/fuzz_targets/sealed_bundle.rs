//! Sealed bundle unsealing under the key the seed was sealed with, through
//! all three paths (into a new buffer, streaming, in place — the enclave's):
//! no input may panic, the paths must agree, a failed in-place unseal must
//! leave nothing behind, and nothing but the genuine seed may unseal.
#![no_main]

use cloister_vault::{unseal, unseal_in_place, unseal_to_vec, DataKey};
use libfuzzer_sys::fuzz_target;

const SEED: &[u8] = include_bytes!("../seeds/sealed_bundle/three-chunks.sealed");

fuzz_target!(|data: &[u8]| {
    let key = DataKey::from_bytes([7; 32]);
    let in_memory = unseal_to_vec(data, &key, true);
    let mut out = Vec::new();
    let streamed = unseal(&mut &data[..], &mut out, &key, true, &mut |_| {});
    let mut buffer = data.to_vec();
    let in_place = unseal_in_place(&mut buffer, &key, true);
    assert_eq!(in_memory.is_ok(), streamed.is_ok(), "{in_memory:?} vs {streamed:?}");
    assert_eq!(in_memory.is_ok(), in_place.is_ok(), "{in_memory:?} vs {in_place:?}");
    match in_memory {
        Ok((_, plaintext)) => {
            assert_eq!(data, SEED, "only the genuine bundle unseals");
            assert_eq!(plaintext, out);
            assert_eq!(plaintext, buffer);
        }
        Err(_) => assert!(buffer.is_empty(), "a failed in-place unseal kept bytes"),
    }
});
