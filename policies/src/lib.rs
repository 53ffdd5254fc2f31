//! The inputs Cloister's query gate decides on. Today: who is asking, for
//! what purpose and about which patient ([`identity`]), taken from a token
//! the hospital's identity provider signed. The WebAssembly policy engine
//! that consumes it arrives with the policy-module work.

pub mod identity;
