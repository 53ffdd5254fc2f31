//! The library half of the `cloister` tool: an attested HTTPS client for
//! Cloister enclaves, shared by the CLI, the end-to-end tests and the load
//! benchmark so that all three exercise the same verification path.

pub mod client;
pub mod dev;
