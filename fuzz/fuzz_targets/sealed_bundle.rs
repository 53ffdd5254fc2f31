//! Sealed bundle unsealing, in memory and streaming, under the key the seed
//! was sealed with: no input may panic, both paths must agree, and nothing
//! but the genuine seed bundle may unseal.
#![no_main]

use cloister_vault::{unseal, unseal_to_vec, DataKey};
use libfuzzer_sys::fuzz_target;

const SEED: &[u8] = include_bytes!("../seeds/sealed_bundle/three-chunks.sealed");

fuzz_target!(|data: &[u8]| {
    let key = DataKey::from_bytes([7; 32]);
    let in_memory = unseal_to_vec(data, &key, true);
    let mut out = Vec::new();
    let streamed = unseal(&mut &data[..], &mut out, &key, true, &mut |_| {});
    assert_eq!(in_memory.is_ok(), streamed.is_ok(), "{in_memory:?} vs {streamed:?}");
    if let Ok((_, plaintext)) = in_memory {
        assert_eq!(data, SEED, "only the genuine bundle unseals");
        assert_eq!(plaintext, out);
    }
});
