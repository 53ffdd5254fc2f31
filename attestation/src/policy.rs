//! Appraisal policy: what a verified piece of evidence must show to be
//! accepted, read from TOML.
//!
//! Reference values an operator must decide on are required fields: a policy
//! that forgets `measurements` does not parse, rather than silently accepting
//! any image. Where "any value" is a legitimate choice it must be written out
//! as `"any"`. Permissive switches (`allow_debug`, `allow_simulated`,
//! `allow_smt`, `allow_migration_agent`) default to false.
//!
//! ```toml
//! allow_debug = false
//! report_data = "00…"              # optional: exact 64-byte value, hex
//! max_collateral_age_days = 30     # optional: TDX collateral freshness
//!
//! [snp]                            # absent: SNP evidence is rejected
//! measurements = ["<96 hex digits>"]
//! chip_ids = "any"                 # or a list of 128-hex-digit CHIP_IDs
//! minimum_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! allow_smt = true
//! minimum_abi = { major = 0, minor = 0 }
//!
//! [tdx]                            # absent: TDX evidence is rejected
//! mrtd = ["<96 hex digits>"]
//! rtmr0 = "any"
//! rtmr1 = ["<96 hex digits>"]
//! rtmr2 = "any"
//! rtmr3 = "any"
//! mr_config_id = "any"
//! mr_owner = "any"
//! accepted_tcb_statuses = ["UpToDate"]
//!
//! [sim]                            # INSECURE simulated TEE; needs allow_simulated
//! measurements = ["<96 hex digits>"]
//! ```

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::sim::VerifiedSimEvidence;
use crate::snp::VerifiedSnpReport;
use crate::tdx::{TcbStatus, VerifiedTdxQuote};
use crate::types::{ChipId, Measurement, ReportData};

/// Either an explicit list of accepted values, or an explicit "any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<T> {
    /// Any value is accepted (written `"any"`).
    Any,
    /// Only these values are accepted.
    OneOf(Vec<T>),
}

impl<T: PartialEq> Reference<T> {
    /// Whether `value` is accepted.
    pub fn accepts(&self, value: &T) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(allowed) => allowed.contains(value),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Reference<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct ReferenceVisitor<T>(core::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ReferenceVisitor<T> {
            type Value = Reference<T>;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a list of accepted values, or \"any\"")
            }

            fn visit_str<E: serde::de::Error>(
                self,
                word: &str,
            ) -> core::result::Result<Self::Value, E> {
                if word == "any" {
                    Ok(Reference::Any)
                } else {
                    Err(E::custom(format!(
                        "expected a list of values or \"any\", found {word:?}"
                    )))
                }
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> core::result::Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                if values.is_empty() {
                    return Err(A::Error::custom(
                        "an empty list would accept nothing; list values or write \"any\"",
                    ));
                }
                Ok(Reference::OneOf(values))
            }
        }

        d.deserialize_any(ReferenceVisitor(core::marker::PhantomData))
    }
}

/// Minimum security patch level per SNP TCB component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumSnpTcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin only; ignored for products without FMC).
    #[serde(default)]
    pub fmc: u8,
}

/// An SNP ABI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbiVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
}

/// What SNP evidence must show.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPolicy {
    /// Accepted launch measurements.
    pub measurements: Reference<Measurement>,
    /// Accepted chips (pin to your own hosts to defeat relaying to another machine).
    pub chip_ids: Reference<ChipId>,
    /// Minimum reported TCB.
    pub minimum_tcb: MinimumSnpTcb,
    /// Accept a guest policy that allows SMT on the host.
    #[serde(default)]
    pub allow_smt: bool,
    /// Accept a guest policy that allows a migration agent.
    #[serde(default)]
    pub allow_migration_agent: bool,
    /// Minimum ABI version the guest policy must require.
    #[serde(default = "zero_abi")]
    pub minimum_abi: AbiVersion,
}

fn zero_abi() -> AbiVersion {
    AbiVersion { major: 0, minor: 0 }
}

/// What TDX evidence must show.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxPolicy {
    /// Accepted build-time TD measurements.
    pub mrtd: Reference<Measurement>,
    /// Accepted RTMR0 (firmware configuration).
    pub rtmr0: Reference<Measurement>,
    /// Accepted RTMR1 (kernel).
    pub rtmr1: Reference<Measurement>,
    /// Accepted RTMR2 (command line, initrd).
    pub rtmr2: Reference<Measurement>,
    /// Accepted RTMR3 (application).
    pub rtmr3: Reference<Measurement>,
    /// Accepted MRCONFIGID.
    pub mr_config_id: Reference<Measurement>,
    /// Accepted MROWNER.
    pub mr_owner: Reference<Measurement>,
    /// TCB statuses accepted (Intel's names). Without collateral the status
    /// is unknown and only `"any"` accepts it.
    pub accepted_tcb_statuses: Reference<TcbStatusName>,
}

/// A TCB status name as written in a policy, validated against Intel's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbStatusName(pub TcbStatus);

impl<'de> Deserialize<'de> for TcbStatusName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        TcbStatus::from_name(&name).map(Self).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown TCB status {name:?} (UpToDate, SWHardeningNeeded, ConfigurationNeeded, \
                 ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked)"
            ))
        })
    }
}

/// A complete appraisal policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppraisalPolicy {
    /// Accept evidence from a TEE in debug mode (its memory is readable by the host).
    #[serde(default)]
    pub allow_debug: bool,
    /// Accept evidence from the simulated TEE, which proves nothing. INSECURE.
    #[serde(default)]
    pub allow_simulated: bool,
    /// Exact report_data the evidence must carry (e.g. a nonce binding).
    #[serde(default)]
    pub report_data: Option<ReportData>,
    /// Maximum age of TDX collateral, in days, from its oldest issue time.
    #[serde(default)]
    pub max_collateral_age_days: Option<u32>,
    /// SNP requirements; absent means SNP evidence is rejected.
    #[serde(default)]
    pub snp: Option<SnpPolicy>,
    /// TDX requirements; absent means TDX evidence is rejected.
    #[serde(default)]
    pub tdx: Option<TdxPolicy>,
    /// Simulated-TEE requirements; only consulted when `allow_simulated`.
    #[serde(default)]
    pub sim: Option<SimPolicy>,
    /// Policy bundles the enclave may run (`"any"`, or digests as
    /// `cloister policy hash` prints them). Checked against the commitment
    /// in a Cloister enclave's RA-TLS certificate; absent means not checked.
    /// Raw evidence (`cloister verify`) carries no such commitment.
    #[serde(default)]
    pub policy_digests: Option<Reference<PolicyDigest>>,
}

/// The SHA-256 digest of a policy bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyDigest(pub [u8; 32]);

impl<'de> Deserialize<'de> for PolicyDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|e| {
            serde::de::Error::custom(format!(
                "a policy bundle digest is 64 hex digits: {e} (got {text:?})"
            ))
        })?;
        Ok(Self(out))
    }
}

impl Reference<PolicyDigest> {
    /// Whether an enclave committed to `digest` (empty: no bundle) is
    /// accepted.
    pub fn accepts_committed(&self, digest: &[u8]) -> bool {
        match self {
            Reference::Any => true,
            Reference::OneOf(_) => <[u8; 32]>::try_from(digest)
                .map(|d| self.accepts(&PolicyDigest(d)))
                .unwrap_or(false),
        }
    }
}

/// What simulated evidence must show (it is INSECURE whatever it shows; this
/// only lets development setups catch the wrong binary or configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPolicy {
    /// Accepted launch measurements (`cloister measure --tee sim`).
    pub measurements: Reference<Measurement>,
}

impl AppraisalPolicy {
    /// Parses a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::InvalidPolicy {
            detail: e.to_string(),
        })
    }

    /// The policy used when the operator gives none: debug is forbidden,
    /// everything else is reported but accepted. Fit for inspection, not for
    /// releasing secrets.
    pub fn report_only() -> Self {
        Self {
            allow_debug: false,
            allow_simulated: false,
            report_data: None,
            max_collateral_age_days: None,
            policy_digests: None,
            snp: Some(SnpPolicy {
                measurements: Reference::Any,
                chip_ids: Reference::Any,
                minimum_tcb: MinimumSnpTcb {
                    bootloader: 0,
                    tee: 0,
                    snp: 0,
                    microcode: 0,
                    fmc: 0,
                },
                allow_smt: true,
                allow_migration_agent: true,
                minimum_abi: zero_abi(),
            }),
            tdx: Some(TdxPolicy {
                mrtd: Reference::Any,
                rtmr0: Reference::Any,
                rtmr1: Reference::Any,
                rtmr2: Reference::Any,
                rtmr3: Reference::Any,
                mr_config_id: Reference::Any,
                mr_owner: Reference::Any,
                accepted_tcb_statuses: Reference::Any,
            }),
            sim: Some(SimPolicy {
                measurements: Reference::Any,
            }),
        }
    }

    /// Every way simulated evidence falls short of this policy. Without
    /// `allow_simulated` that is always at least [`Violation::SimulatedNotAllowed`].
    pub fn check_sim(&self, verified: &VerifiedSimEvidence) -> Vec<Violation> {
        let mut out = Vec::new();
        if !self.allow_simulated {
            out.push(Violation::SimulatedNotAllowed);
        }
        let Some(p) = &self.sim else {
            out.push(Violation::TeeNotAllowed { tee: "sim" });
            return out;
        };
        let e = verified.evidence();
        if e.debug && !self.allow_debug {
            out.push(Violation::DebugNotAllowed);
        }
        if !p.measurements.accepts(&e.measurement) {
            out.push(Violation::MeasurementNotAllowed {
                register: "MEASUREMENT",
                found: e.measurement.to_string(),
            });
        }
        self.check_report_data(&e.report_data, &mut out);
        out
    }

    /// Every way SNP evidence falls short of this policy (empty: accepted).
    pub fn check_snp(&self, verified: &VerifiedSnpReport) -> Vec<Violation> {
        let mut out = Vec::new();
        let Some(p) = &self.snp else {
            out.push(Violation::TeeNotAllowed { tee: "snp" });
            return out;
        };
        let r = verified.report();
        if r.policy.debug_allowed() && !self.allow_debug {
            out.push(Violation::DebugNotAllowed);
        }
        if !p.measurements.accepts(&r.measurement) {
            out.push(Violation::MeasurementNotAllowed {
                register: "MEASUREMENT",
                found: r.measurement.to_string(),
            });
        }
        if !p.chip_ids.accepts(&r.chip_id) {
            out.push(Violation::ChipIdNotAllowed {
                found: r.chip_id.to_string(),
            });
        }
        let t = r.reported_tcb;
        let m = p.minimum_tcb;
        let mut components = vec![
            ("boot loader", t.bootloader, m.bootloader),
            ("TEE", t.tee, m.tee),
            ("SNP", t.snp, m.snp),
            ("microcode", t.microcode, m.microcode),
        ];
        if let Some(fmc) = t.fmc {
            components.push(("FMC", fmc, m.fmc));
        }
        for (component, found, minimum) in components {
            if found < minimum {
                out.push(Violation::TcbTooLow {
                    component,
                    found,
                    minimum,
                });
            }
        }
        if r.policy.smt_allowed() && !p.allow_smt {
            out.push(Violation::SmtNotAllowed);
        }
        if r.policy.migration_agent_allowed() && !p.allow_migration_agent {
            out.push(Violation::MigrationAgentNotAllowed);
        }
        let abi = AbiVersion {
            major: r.policy.abi_major(),
            minor: r.policy.abi_minor(),
        };
        if abi < p.minimum_abi {
            out.push(Violation::AbiTooLow {
                found: format!("{}.{}", abi.major, abi.minor),
                minimum: format!("{}.{}", p.minimum_abi.major, p.minimum_abi.minor),
            });
        }
        self.check_report_data(&r.report_data, &mut out);
        out
    }

    /// Every way TDX evidence falls short of this policy (empty: accepted).
    pub fn check_tdx(&self, verified: &VerifiedTdxQuote, now: OffsetDateTime) -> Vec<Violation> {
        let mut out = Vec::new();
        let Some(p) = &self.tdx else {
            out.push(Violation::TeeNotAllowed { tee: "tdx" });
            return out;
        };
        let td = &verified.quote().td_report;
        if td.debug() && !self.allow_debug {
            out.push(Violation::DebugNotAllowed);
        }
        let registers = [
            ("MRTD", &p.mrtd, &td.mr_td),
            ("RTMR0", &p.rtmr0, &td.rtmr[0]),
            ("RTMR1", &p.rtmr1, &td.rtmr[1]),
            ("RTMR2", &p.rtmr2, &td.rtmr[2]),
            ("RTMR3", &p.rtmr3, &td.rtmr[3]),
            ("MRCONFIGID", &p.mr_config_id, &td.mr_config_id),
            ("MROWNER", &p.mr_owner, &td.mr_owner),
        ];
        for (register, reference, value) in registers {
            if !reference.accepts(value) {
                out.push(Violation::MeasurementNotAllowed {
                    register,
                    found: value.to_string(),
                });
            }
        }
        match (verified.tcb(), &p.accepted_tcb_statuses) {
            (_, Reference::Any) => {}
            (None, Reference::OneOf(_)) => out.push(Violation::TcbStatusNotAccepted {
                found: "unknown (no collateral)".into(),
            }),
            (Some(tcb), Reference::OneOf(accepted)) => {
                if !accepted.contains(&TcbStatusName(tcb.status)) {
                    out.push(Violation::TcbStatusNotAccepted {
                        found: tcb.status.to_string(),
                    });
                }
            }
        }
        if let Some(days) = self.max_collateral_age_days {
            match verified.collateral_issued() {
                None => out.push(Violation::CollateralTooOld {
                    issued: None,
                    max_age_days: days,
                }),
                Some(issued) if now - issued > Duration::days(i64::from(days)) => {
                    out.push(Violation::CollateralTooOld {
                        issued: Some(issued),
                        max_age_days: days,
                    })
                }
                Some(_) => {}
            }
        }
        self.check_report_data(&td.report_data, &mut out);
        out
    }

    fn check_report_data(&self, found: &ReportData, out: &mut Vec<Violation>) {
        if let Some(expected) = &self.report_data {
            if expected != found {
                out.push(Violation::ReportDataMismatch {
                    expected: expected.to_string(),
                    found: found.to_string(),
                });
            }
        }
    }
}

/// One way verified evidence falls short of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The policy has no section for this TEE.
    #[error("the policy does not accept {tee} evidence")]
    TeeNotAllowed {
        /// "snp", "tdx" or "sim".
        tee: &'static str,
    },
    /// Simulated evidence without `allow_simulated`.
    #[error("INSECURE (simulated TEE) evidence is not allowed by the policy")]
    SimulatedNotAllowed,
    /// The TEE runs in debug mode and the policy forbids it.
    #[error("debug mode is enabled and the policy forbids it")]
    DebugNotAllowed,
    /// A measurement register holds an unapproved value.
    #[error("{register} {found} is not an allowed value")]
    MeasurementNotAllowed {
        /// MEASUREMENT, MRTD, RTMR0..3, MRCONFIGID, MROWNER.
        register: &'static str,
        /// The value found, hex.
        found: String,
    },
    /// The chip is not one of the pinned chips.
    #[error("chip_id {found} is not an allowed chip")]
    ChipIdNotAllowed {
        /// The CHIP_ID, hex.
        found: String,
    },
    /// A TCB component is below the minimum.
    #[error("{component} SPL {found} is below the minimum {minimum}")]
    TcbTooLow {
        /// The component.
        component: &'static str,
        /// Reported SPL.
        found: u8,
        /// Required SPL.
        minimum: u8,
    },
    /// The guest policy allows SMT and the appraisal policy does not.
    #[error("the guest policy allows SMT and the appraisal policy does not")]
    SmtNotAllowed,
    /// The guest policy allows a migration agent and the appraisal policy does not.
    #[error("the guest policy allows a migration agent and the appraisal policy does not")]
    MigrationAgentNotAllowed,
    /// The guest policy's ABI is too old.
    #[error("guest policy ABI {found} is below the minimum {minimum}")]
    AbiTooLow {
        /// ABI in the guest policy.
        found: String,
        /// Minimum required.
        minimum: String,
    },
    /// report_data differs from the expected value.
    #[error("report_data {found} does not equal the expected {expected}")]
    ReportDataMismatch {
        /// Expected, hex.
        expected: String,
        /// Found, hex.
        found: String,
    },
    /// The TCB status is not accepted.
    #[error("TCB status {found} is not accepted by the policy")]
    TcbStatusNotAccepted {
        /// The status found.
        found: String,
    },
    /// The collateral is older than the policy allows (or absent).
    #[error("collateral {} is older than the {max_age_days}-day limit", .issued.map_or("(none supplied)".to_owned(), |t| format!("issued {}", crate::error::rfc3339(&t))))]
    CollateralTooOld {
        /// When the oldest part was issued, if there was collateral.
        issued: Option<OffsetDateTime>,
        /// The limit.
        max_age_days: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_are_required_and_any_is_explicit() {
        let missing = "[snp]\nchip_ids = \"any\"\nminimum_tcb = { bootloader = 0, tee = 0, snp = 0, microcode = 0 }\n";
        let err = AppraisalPolicy::from_toml(missing).unwrap_err();
        assert!(err.to_string().contains("measurements"), "{err}");

        let empty = format!("[snp]\nmeasurements = []\n{}", &missing[6..]);
        assert!(AppraisalPolicy::from_toml(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty list"));

        let ok = format!("[snp]\nmeasurements = \"any\"\n{}", &missing[6..]);
        let p = AppraisalPolicy::from_toml(&ok).unwrap();
        assert!(!p.allow_debug && !p.allow_simulated);
        assert_eq!(p.snp.unwrap().measurements, Reference::Any);
        assert!(p.tdx.is_none());
    }

    #[test]
    fn unknown_keys_and_statuses_are_rejected() {
        assert!(AppraisalPolicy::from_toml("allow_debugg = true").is_err());
        let bad_status = "[tdx]\nmrtd = \"any\"\nrtmr0 = \"any\"\nrtmr1 = \"any\"\nrtmr2 = \"any\"\nrtmr3 = \"any\"\nmr_config_id = \"any\"\nmr_owner = \"any\"\naccepted_tcb_statuses = [\"Fine\"]\n";
        let err = AppraisalPolicy::from_toml(bad_status).unwrap_err();
        assert!(err.to_string().contains("unknown TCB status"), "{err}");
    }

    #[test]
    fn debug_evidence_is_rejected_unless_allowed() {
        use crate::snp::{GuestPolicy, SnpReport};
        use crate::tdx::TdxQuote;

        let mut report = SnpReport::parse(include_bytes!(
            "../tests/vectors/snp/milan-v2-virtee/report.bin"
        ))
        .unwrap();
        report.policy = GuestPolicy(report.policy.0 | 1 << 19);
        let snp = VerifiedSnpReport::for_policy_test(report);
        let mut policy = AppraisalPolicy::report_only();
        assert_eq!(policy.check_snp(&snp), vec![Violation::DebugNotAllowed]);
        policy.allow_debug = true;
        assert!(policy.check_snp(&snp).is_empty());

        let mut quote =
            TdxQuote::parse(include_bytes!("../tests/vectors/tdx/v4-phala/quote.bin")).unwrap();
        quote.td_report.td_attributes[0] |= 1;
        let tdx = VerifiedTdxQuote::for_policy_test(quote);
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            AppraisalPolicy::report_only().check_tdx(&tdx, now),
            vec![Violation::DebugNotAllowed]
        );
        assert!(policy.check_tdx(&tdx, now).is_empty());
    }

    #[test]
    fn migration_agent_is_rejected_unless_allowed() {
        use crate::snp::{GuestPolicy, SnpReport};

        let mut report = SnpReport::parse(include_bytes!(
            "../tests/vectors/snp/milan-v2-virtee/report.bin"
        ))
        .unwrap();
        report.policy = GuestPolicy(report.policy.0 | 1 << 18);
        let snp = VerifiedSnpReport::for_policy_test(report);
        let mut policy = AppraisalPolicy::report_only();
        policy.snp.as_mut().unwrap().allow_migration_agent = false;
        assert_eq!(
            policy.check_snp(&snp),
            vec![Violation::MigrationAgentNotAllowed]
        );
    }
}
