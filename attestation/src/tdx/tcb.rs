//! The TCB status of a TDX platform: Intel's matching rules for the platform
//! TCB level, the TDX module identity and the QE identity, and how the three
//! statuses combine. The rules follow Intel's Quote Verification Library
//! (`TcbLevelCheck`, `TdxModuleCheck`, `EnclaveReportVerifier`,
//! `convergeTcbStatusWith*`). A platform that matches no level is an error:
//! there is no default status.

use serde::Serialize;

use super::collateral::{
    IsvTcbLevel, QeIdentity, TcbInfo, TcbLevel, TcbStatus, VerifiedTdxCollateral,
};
use super::pck::PckExtensions;
use super::quote::{QeReport, TdReport};
use crate::error::{Error, Result};

/// The outcome of TCB evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcbEvaluation {
    /// The combined status.
    pub status: TcbStatus,
    /// Intel security advisories that apply (platform, TDX module, QE).
    pub advisory_ids: Vec<String>,
    /// Status of the matched platform TCB level alone.
    pub platform_status: TcbStatus,
    /// Status of the TDX module identity, when the module has one.
    pub tdx_module_status: Option<TcbStatus>,
    /// Status of the quoting enclave.
    pub qe_status: TcbStatus,
}

pub(crate) fn evaluate(
    collateral: &VerifiedTdxCollateral,
    pck: &PckExtensions,
    td: &TdReport,
    qe: &QeReport,
) -> Result<TcbEvaluation> {
    evaluate_with(collateral.tcb_info(), collateral.qe_identity(), pck, td, qe)
}

fn evaluate_with(
    info: &TcbInfo,
    qe_identity: &QeIdentity,
    pck: &PckExtensions,
    td: &TdReport,
    qe: &QeReport,
) -> Result<TcbEvaluation> {
    if pck.fmspc.0 != info.fmspc {
        return Err(Error::CollateralMismatch {
            field: "FMSPC",
            pck: pck.fmspc.to_string(),
            collateral: hex::encode(info.fmspc),
        });
    }
    if pck.pce_id != info.pce_id {
        return Err(Error::CollateralMismatch {
            field: "PCE ID",
            pck: hex::encode(pck.pce_id),
            collateral: hex::encode(info.pce_id),
        });
    }
    let platform = match_platform_level(info, pck, td)?;
    let module = check_tdx_module(info, td)?;
    let (qe_status, qe_advisories) = check_qe_identity(qe_identity, qe)?;

    let mut status = platform.tcb_status;
    if let Some((module_status, _)) = &module {
        status = converge(status, *module_status);
    }
    status = converge(status, qe_status);

    let mut advisory_ids = Vec::new();
    let module_advisories = module
        .as_ref()
        .map(|(_, a)| a.as_slice())
        .unwrap_or_default();
    for id in platform
        .advisory_ids
        .iter()
        .chain(module_advisories)
        .chain(qe_advisories.iter())
    {
        if !advisory_ids.contains(id) {
            advisory_ids.push(id.clone());
        }
    }
    Ok(TcbEvaluation {
        status,
        advisory_ids,
        platform_status: platform.tcb_status,
        tdx_module_status: module.map(|(s, _)| s),
        qe_status,
    })
}

/// Intel's ordering of TCB levels, highest first: SGX components, then PCE
/// SVN, then TDX components, each compared lexicographically. The JSON order
/// is not trusted.
fn sorted_levels(info: &TcbInfo) -> Vec<&TcbLevel> {
    let key = |l: &TcbLevel| {
        (
            l.tcb
                .sgxtcbcomponents
                .iter()
                .map(|c| c.svn)
                .collect::<Vec<_>>(),
            l.tcb.pcesvn,
            l.tcb
                .tdxtcbcomponents
                .iter()
                .map(|c| c.svn)
                .collect::<Vec<_>>(),
        )
    };
    let mut levels: Vec<&TcbLevel> = info.tcb_levels.iter().collect();
    levels.sort_by_cached_key(|l| core::cmp::Reverse(key(l)));
    levels
}

/// The highest level whose SGX components and PCE SVN the PCK certificate
/// meets and whose TDX components the TD's TEE_TCB_SVN meets. When the TDX
/// module's major version (TEE_TCB_SVN[1]) is non-zero, its first two bytes
/// are judged by the module identity instead and skipped here.
fn match_platform_level<'a>(
    info: &'a TcbInfo,
    pck: &PckExtensions,
    td: &TdReport,
) -> Result<&'a TcbLevel> {
    let skip = if td.tee_tcb_svn[1] > 0 { 2 } else { 0 };
    sorted_levels(info)
        .into_iter()
        .find(|level| {
            let sgx_ok = level
                .tcb
                .sgxtcbcomponents
                .iter()
                .zip(pck.sgx_components)
                .all(|(required, have)| have >= required.svn)
                && pck.pce_svn >= level.tcb.pcesvn;
            let tdx_ok = level
                .tcb
                .tdxtcbcomponents
                .iter()
                .zip(td.tee_tcb_svn)
                .skip(skip)
                .all(|(required, have)| have >= required.svn);
            sgx_ok && tdx_ok
        })
        .ok_or(Error::NoMatchingTcbLevel { which: "TCB info" })
}

/// The first level (by descending ISV SVN) that `svn` meets.
fn isv_level(levels: &[IsvTcbLevel], svn: u16) -> Option<&IsvTcbLevel> {
    let mut sorted: Vec<&IsvTcbLevel> = levels.iter().collect();
    sorted.sort_by_key(|l| core::cmp::Reverse(l.tcb.isvsvn));
    sorted.into_iter().find(|l| svn >= l.tcb.isvsvn)
}

/// Checks MRSIGNERSEAM and SEAMATTRIBUTES against the TDX module (identity)
/// and, for a module with a major version, returns its TCB status.
fn check_tdx_module(info: &TcbInfo, td: &TdReport) -> Result<Option<(TcbStatus, Vec<String>)>> {
    let major = td.tee_tcb_svn[1];
    let (mrsigner, attributes, mask, identity) = if major > 0 {
        let id = format!("TDX_{major:02X}");
        let identity = info
            .tdx_module_identities
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&id))
            .ok_or_else(|| Error::TdxModuleMismatch {
                field: "module identity",
                found: id.clone(),
                expected: "an identity in the TCB info's tdxModuleIdentities".into(),
            })?;
        (
            identity.module.mrsigner,
            identity.module.attributes,
            identity.module.attributes_mask,
            Some(identity),
        )
    } else {
        (
            info.tdx_module.mrsigner,
            info.tdx_module.attributes,
            info.tdx_module.attributes_mask,
            None,
        )
    };
    if td.mr_signer_seam != mrsigner {
        return Err(Error::TdxModuleMismatch {
            field: "MRSIGNERSEAM",
            found: td.mr_signer_seam.to_string(),
            expected: mrsigner.to_string(),
        });
    }
    let masked: Vec<u8> = td
        .seam_attributes
        .iter()
        .zip(mask)
        .map(|(a, m)| a & m)
        .collect();
    if masked != attributes {
        return Err(Error::TdxModuleMismatch {
            field: "SEAMATTRIBUTES",
            found: hex::encode(td.seam_attributes),
            expected: hex::encode(attributes),
        });
    }
    let Some(identity) = identity else {
        return Ok(None);
    };
    let level = isv_level(&identity.tcb_levels, u16::from(td.tee_tcb_svn[0])).ok_or(
        Error::NoMatchingTcbLevel {
            which: "TDX module identity",
        },
    )?;
    Ok(Some((level.tcb_status, level.advisory_ids.clone())))
}

/// Checks the QE report against Intel's QE identity and returns the QE's TCB
/// status: UpToDate, Revoked, or OutOfDate for any other level status.
fn check_qe_identity(id: &QeIdentity, qe: &QeReport) -> Result<(TcbStatus, Vec<String>)> {
    let masked_eq = |have: &[u8], mask: &[u8], want: &[u8]| {
        have.len() == want.len()
            && have
                .iter()
                .zip(mask)
                .map(|(h, m)| h & m)
                .eq(want.iter().copied())
    };
    if !masked_eq(&qe.miscselect, &id.miscselect_mask, &id.miscselect) {
        return Err(Error::QeIdentityMismatch {
            field: "MISCSELECT",
            found: hex::encode(qe.miscselect),
            expected: hex::encode(id.miscselect),
        });
    }
    if !masked_eq(&qe.attributes, &id.attributes_mask, &id.attributes) {
        return Err(Error::QeIdentityMismatch {
            field: "ATTRIBUTES",
            found: hex::encode(qe.attributes),
            expected: hex::encode(id.attributes),
        });
    }
    if qe.mr_signer != id.mrsigner {
        return Err(Error::QeIdentityMismatch {
            field: "MRSIGNER",
            found: hex::encode(qe.mr_signer),
            expected: hex::encode(id.mrsigner),
        });
    }
    if qe.isv_prod_id != id.isvprodid {
        return Err(Error::QeIdentityMismatch {
            field: "ISVPRODID",
            found: qe.isv_prod_id.to_string(),
            expected: id.isvprodid.to_string(),
        });
    }
    let level = isv_level(&id.tcb_levels, qe.isv_svn).ok_or(Error::NoMatchingTcbLevel {
        which: "QE identity",
    })?;
    let status = match level.tcb_status {
        TcbStatus::UpToDate => TcbStatus::UpToDate,
        TcbStatus::Revoked => TcbStatus::Revoked,
        _ => TcbStatus::OutOfDate,
    };
    Ok((status, level.advisory_ids.clone()))
}

/// Folds a component's status (TDX module or QE) into the platform's, as
/// Intel's QVL does: an out-of-date component makes the platform out of date
/// (keeping "configuration needed"), a revoked one revokes it.
fn converge(platform: TcbStatus, component: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    match component {
        Revoked => Revoked,
        OutOfDate | OutOfDateConfigurationNeeded => match platform {
            UpToDate | SWHardeningNeeded => OutOfDate,
            ConfigurationNeeded | ConfigurationAndSWHardeningNeeded => OutOfDateConfigurationNeeded,
            other => other,
        },
        _ => platform,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::TdxQuote;
    use crate::x509::Certificate;
    use TcbStatus::*;

    const QUOTE: &[u8] = include_bytes!("../../tests/vectors/tdx/v4-phala/quote.bin");
    const COLLATERAL: &[u8] = include_bytes!("../../tests/vectors/tdx/v4-phala/collateral.json");

    /// The real TCB info, QE identity, PCK extensions, TD report and QE report.
    fn real() -> (TcbInfo, QeIdentity, PckExtensions, TdReport, QeReport) {
        let file: serde_json::Value = serde_json::from_slice(COLLATERAL).unwrap();
        let info = serde_json::from_str(file["tcb_info"].as_str().unwrap()).unwrap();
        let qe_identity = serde_json::from_str(file["qe_identity"].as_str().unwrap()).unwrap();
        let quote = TdxQuote::parse(QUOTE).unwrap();
        let pck = Certificate::from_der("PCK", &quote.pck_chain[0]).unwrap();
        let pck = PckExtensions::from_certificate(&pck).unwrap();
        (info, qe_identity, pck, quote.td_report, quote.qe_report)
    }

    #[test]
    fn real_platform_is_up_to_date() {
        let (info, qe_id, pck, td, qe) = real();
        let e = evaluate_with(&info, &qe_id, &pck, &td, &qe).unwrap();
        assert_eq!(e.status, UpToDate);
        assert_eq!(e.tdx_module_status, Some(UpToDate));
        assert_eq!(e.qe_status, UpToDate);
    }

    #[test]
    fn lower_pce_svn_matches_the_out_of_date_level() {
        let (info, qe_id, mut pck, td, qe) = real();
        // Levels: UpToDate at pcesvn 11, OutOfDate at pcesvn 5.
        pck.pce_svn = 10;
        let e = evaluate_with(&info, &qe_id, &pck, &td, &qe).unwrap();
        assert_eq!((e.status, e.platform_status), (OutOfDate, OutOfDate));
        assert!(
            !e.advisory_ids.is_empty(),
            "the OutOfDate level lists advisories"
        );
    }

    #[test]
    fn no_matching_level_is_an_error_not_a_guess() {
        let (info, qe_id, mut pck, td, qe) = real();
        pck.pce_svn = 4;
        assert_eq!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::NoMatchingTcbLevel { which: "TCB info" })
        );
        let (info, qe_id, mut pck, td, qe) = real();
        pck.sgx_components = [0; 16];
        assert_eq!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::NoMatchingTcbLevel { which: "TCB info" })
        );
    }

    #[test]
    fn old_tdx_module_makes_the_platform_out_of_date() {
        let (info, qe_id, pck, mut td, qe) = real();
        // TDX_01 levels: UpToDate from isvsvn 4, OutOfDate from 2.
        td.tee_tcb_svn[0] = 3;
        let e = evaluate_with(&info, &qe_id, &pck, &td, &qe).unwrap();
        assert_eq!(
            (e.status, e.platform_status, e.tdx_module_status),
            (OutOfDate, UpToDate, Some(OutOfDate))
        );
        td.tee_tcb_svn[0] = 1;
        assert_eq!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::NoMatchingTcbLevel {
                which: "TDX module identity"
            })
        );
    }

    #[test]
    fn unknown_module_and_wrong_module_signer_are_rejected() {
        let (info, qe_id, pck, mut td, qe) = real();
        td.tee_tcb_svn[1] = 9;
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::TdxModuleMismatch {
                field: "module identity",
                ..
            })
        ));
        let (info, qe_id, pck, mut td, qe) = real();
        td.mr_signer_seam.0[0] = 1;
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::TdxModuleMismatch {
                field: "MRSIGNERSEAM",
                ..
            })
        ));
    }

    #[test]
    fn quoting_enclave_must_match_its_identity() {
        let (info, qe_id, pck, td, mut qe) = real();
        qe.isv_svn = 3;
        assert_eq!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::NoMatchingTcbLevel {
                which: "QE identity"
            })
        );
        let (info, qe_id, pck, td, mut qe) = real();
        qe.mr_signer[0] ^= 1;
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::QeIdentityMismatch {
                field: "MRSIGNER",
                ..
            })
        ));
        let (info, qe_id, pck, td, mut qe) = real();
        qe.isv_prod_id = 1;
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::QeIdentityMismatch {
                field: "ISVPRODID",
                ..
            })
        ));
    }

    #[test]
    fn collateral_for_another_platform_is_rejected() {
        let (info, qe_id, mut pck, td, qe) = real();
        pck.fmspc.0[0] ^= 1;
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::CollateralMismatch { field: "FMSPC", .. })
        ));
        let (info, qe_id, mut pck, td, qe) = real();
        pck.pce_id = [0, 1];
        assert!(matches!(
            evaluate_with(&info, &qe_id, &pck, &td, &qe),
            Err(Error::CollateralMismatch {
                field: "PCE ID",
                ..
            })
        ));
    }

    #[test]
    fn convergence_follows_intel() {
        assert_eq!(converge(UpToDate, UpToDate), UpToDate);
        assert_eq!(converge(SWHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            converge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(
            converge(ConfigurationAndSWHardeningNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(converge(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(converge(ConfigurationNeeded, Revoked), Revoked);
        assert_eq!(converge(ConfigurationNeeded, UpToDate), ConfigurationNeeded);
    }
}
