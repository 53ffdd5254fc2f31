//! The key broker: releases a sealed bundle's data key only to an enclave
//! whose attestation satisfies the data owner's release policy, wrapped to a
//! key that exists only inside that enclave.
//!
//! A request–challenge–attestation–response exchange in the spirit of
//! Trustee's KBS ([`protocol`]): the enclave names a key, the broker answers
//! with a single-use nonce, the enclave returns evidence whose report_data
//! binds that nonce, the key ID, a fresh X25519 public key and its
//! commitments, and the broker — after verifying and appraising the evidence
//! with `cloister-attestation`, checking the policy bundle digest and the
//! bundle version, and logging the decision durably — answers with the key
//! HPKE-sealed to that public key ([`crate::wrap`]).

pub mod cache;
pub mod client;
pub mod log;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod store;
