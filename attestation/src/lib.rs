//! wip
pub(crate) mod bytes;
pub mod error;
pub mod snp;
pub mod tdx;
pub mod types;
pub(crate) mod x509;
pub mod policy {
    //! wip
    /// wip
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("x")]
    pub struct Violation;
}
