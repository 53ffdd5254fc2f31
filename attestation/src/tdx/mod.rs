//! Intel TDX: DCAP quotes, the PCK chain to the pinned Intel SGX Root CA,
//! collateral (TCB info, QE identity, CRLs) and the TCB status it yields.

mod collateral;
mod pck;
mod quote;
mod roots;
mod tcb;
mod verify;

pub use collateral::{TcbStatus, TdxCollateral, VerifiedTdxCollateral};
pub use quote::{QeReport, TdReport, TdxQuote};
pub use roots::INTEL_SGX_ROOT_CA_SPKI_SHA256;
pub use tcb::TcbEvaluation;
pub use verify::VerifiedTdxQuote;
