//! `access`: who may ask what.
//!
//! A role × purpose-of-use × task matrix from the bundle manifest, with two
//! rules on top: a role may be limited to its own patients (the query's
//! patient must be the one the caller's token is scoped to) or to
//! de-identified work (the query may not name a patient at all); and
//! emergency ("break-glass") access lets listed roles past the own-patient
//! rule only with a stated reason, and is always flagged for review.
//!
//! ```toml
//! [modules.config.roles.clinician]
//! purposes = ["TREAT"]
//! tasks = ["chat", "summarize", "guideline_qa", "prior_auth"]
//! own_patients_only = true
//! [modules.config.roles.billing]
//! purposes = ["HPAYMT"]
//! tasks = ["prior_auth"]
//! [modules.config.roles.researcher]
//! purposes = ["HRESCH"]
//! tasks = ["guideline_qa", "chat"]
//! deidentified_only = true
//! [modules.config.break_glass]
//! purpose = "ETREAT"
//! roles = ["clinician"]
//! min_reason_chars = 12
//! ```
//!
//! It decides at the input gate and allows at the output gate (who asked
//! does not change once the answer exists).

use std::collections::BTreeMap;

use cloister_policy_sdk::{export_policy, ConfigInput, Decision, Gate, Input, Request};
use serde::Deserialize;

/// The module's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What each role may do. A role not listed may do nothing.
    pub roles: BTreeMap<String, RoleRule>,
    /// Emergency access, if the deployment allows it.
    #[serde(default)]
    pub break_glass: Option<BreakGlass>,
}

/// One role's row of the matrix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    /// Purpose-of-use codes it may act under.
    pub purposes: Vec<String>,
    /// Tasks it may run.
    pub tasks: Vec<String>,
    /// Only about the patient its token is scoped to.
    #[serde(default)]
    pub own_patients_only: bool,
    /// Never about an identified patient.
    #[serde(default)]
    pub deidentified_only: bool,
}

/// Emergency access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// The purpose-of-use code that invokes it (HL7 `ETREAT`).
    pub purpose: String,
    /// Roles that may invoke it.
    pub roles: Vec<String>,
    /// Shortest acceptable reason.
    #[serde(default = "default_min_reason")]
    pub min_reason_chars: usize,
}

fn default_min_reason() -> usize {
    12
}

/// The requirement raised on every break-glass query.
pub const BREAK_GLASS_REVIEW: &str = "break_glass_review";

/// The policy.
pub fn evaluate(input: &Input) -> Decision {
    if input.gate == Gate::Output {
        return Decision::allow();
    }
    match input.config::<Config>() {
        Ok(config) => decide(&config, &input.request),
        Err(e) => Decision::deny("bad_config", format!("access configuration: {e}")),
    }
}

/// The matrix, over typed configuration (what the benchmark's native
/// baseline calls).
pub fn decide(config: &Config, request: &Request) -> Decision {
    let role = request.role.as_str();
    let Some(rule) = config.roles.get(role) else {
        return Decision::deny(
            "role_not_permitted",
            format!("role {role:?} may not query this enclave"),
        );
    };
    let task = request.task.as_str();
    if !rule.tasks.iter().any(|t| t == task) {
        return Decision::deny(
            "task_not_permitted",
            format!("role {role:?} may not run task {task:?}"),
        );
    }
    let purpose = request.purpose_of_use.as_str();
    if let Some(glass) = config.break_glass.as_ref().filter(|g| g.purpose == purpose) {
        if !glass.roles.iter().any(|r| r == role) {
            return Decision::deny(
                "break_glass_not_permitted",
                format!("role {role:?} may not invoke emergency access"),
            );
        }
        let reason = request.break_glass_reason.as_deref().unwrap_or("").trim();
        if reason.chars().count() < glass.min_reason_chars {
            return Decision::deny(
                "break_glass_reason_missing",
                format!(
                    "emergency access needs a reason of at least {} characters",
                    glass.min_reason_chars
                ),
            );
        }
        return Decision::require(BREAK_GLASS_REVIEW).because(
            "break_glass",
            "emergency access: permitted, and flagged for review",
        );
    }
    if !rule.purposes.iter().any(|p| p == purpose) {
        return Decision::deny(
            "purpose_not_permitted",
            format!("role {role:?} may not act for purpose {purpose:?}"),
        );
    }
    if let Some(patient) = &request.patient {
        if rule.deidentified_only {
            return Decision::deny(
                "identified_patient_not_permitted",
                format!("role {role:?} may work only on de-identified data"),
            );
        }
        if rule.own_patients_only && request.caller_patient.as_ref() != Some(patient) {
            return Decision::deny(
                "not_treating_patient",
                "the query's patient is not the one the caller's token is scoped to",
            );
        }
    }
    Decision::allow().because(
        "role_permits",
        format!("role {role:?} may run {task:?} for {purpose:?}"),
    )
}

/// The load-time check: the configuration parses, and break-glass names
/// only roles the matrix has.
pub fn check_config(input: &ConfigInput) -> Decision {
    let config = match input.config::<Config>() {
        Ok(c) => c,
        Err(e) => return Decision::deny("bad_config", format!("access configuration: {e}")),
    };
    if let Some(glass) = &config.break_glass {
        if let Some(role) = glass.roles.iter().find(|r| !config.roles.contains_key(*r)) {
            return Decision::deny(
                "bad_config",
                format!("break_glass names role {role:?}, which has no row in roles"),
            );
        }
    }
    Decision::allow()
}

export_policy!(evaluate, check_config);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use cloister_policy_sdk::Effect;

    use super::*;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "roles": {
                "clinician": {"purposes": ["TREAT"], "tasks": ["chat", "summarize", "prior_auth"], "own_patients_only": true},
                "billing": {"purposes": ["HPAYMT"], "tasks": ["prior_auth"]},
                "researcher": {"purposes": ["HRESCH"], "tasks": ["chat"], "deidentified_only": true},
            },
            "break_glass": {"purpose": "ETREAT", "roles": ["clinician"], "min_reason_chars": 12},
        }))
        .unwrap()
    }

    fn request(role: &str, purpose: &str, task: &str) -> Request {
        Request {
            role: role.into(),
            purpose_of_use: purpose.into(),
            task: task.into(),
            ..Request::default()
        }
    }

    fn code(decision: &Decision) -> &str {
        &decision.reasons[0].code
    }

    #[test]
    fn clinicians_treat_their_own_patients() {
        let mut r = request("clinician", "TREAT", "summarize");
        r.caller_patient = Some("p1".into());
        r.patient = Some("p1".into());
        assert_eq!(decide(&config(), &r).effect, Effect::Allow);
        r.patient = Some("p2".into());
        assert_eq!(code(&decide(&config(), &r)), "not_treating_patient");
        r.caller_patient = None;
        assert_eq!(code(&decide(&config(), &r)), "not_treating_patient");
        r.patient = None;
        assert_eq!(
            decide(&config(), &r).effect,
            Effect::Allow,
            "no patient named"
        );
    }

    #[test]
    fn billing_writes_prior_authorizations_only() {
        assert_eq!(
            decide(&config(), &request("billing", "HPAYMT", "prior_auth")).effect,
            Effect::Allow
        );
        assert_eq!(
            code(&decide(
                &config(),
                &request("billing", "HPAYMT", "summarize")
            )),
            "task_not_permitted"
        );
        assert_eq!(
            code(&decide(
                &config(),
                &request("billing", "TREAT", "prior_auth")
            )),
            "purpose_not_permitted"
        );
    }

    #[test]
    fn researchers_never_name_a_patient() {
        let mut r = request("researcher", "HRESCH", "chat");
        assert_eq!(decide(&config(), &r).effect, Effect::Allow);
        r.patient = Some("p1".into());
        assert_eq!(
            code(&decide(&config(), &r)),
            "identified_patient_not_permitted"
        );
    }

    #[test]
    fn unknown_roles_are_denied() {
        assert_eq!(
            code(&decide(&config(), &request("janitor", "TREAT", "chat"))),
            "role_not_permitted"
        );
        assert_eq!(
            code(&decide(&config(), &request("", "", ""))),
            "role_not_permitted"
        );
    }

    #[test]
    fn break_glass_needs_a_reason_and_is_always_flagged() {
        let mut r = request("clinician", "ETREAT", "summarize");
        r.patient = Some("someone-else".into());
        assert_eq!(code(&decide(&config(), &r)), "break_glass_reason_missing");
        r.break_glass_reason = Some("   short   ".into());
        assert_eq!(code(&decide(&config(), &r)), "break_glass_reason_missing");
        r.break_glass_reason = Some("unconscious patient in ED, no chart access".into());
        let decision = decide(&config(), &r);
        assert_eq!(decision.effect, Effect::Require);
        assert_eq!(decision.requirements, vec![BREAK_GLASS_REVIEW.to_owned()]);
        let billing = request("billing", "ETREAT", "prior_auth");
        assert_eq!(
            code(&decide(&config(), &billing)),
            "break_glass_not_permitted"
        );
    }

    #[test]
    fn the_load_time_check_refuses_unusable_configurations() {
        let check = |config: serde_json::Value| {
            let input = ConfigInput {
                abi: 1,
                module: "access".into(),
                config: serde_json::value::to_raw_value(&config).unwrap(),
            };
            check_config(&input)
        };
        assert_eq!(
            check(serde_json::json!({"roles": {"clinician": {"purposes": ["TREAT"], "tasks": ["chat"]}}})).effect,
            Effect::Allow
        );
        assert_eq!(
            check(serde_json::json!({"roles": {"clinician": {"tasks": []}}})).effect,
            Effect::Deny
        );
        assert_eq!(check(serde_json::json!({"rolez": {}})).effect, Effect::Deny);
        let glass = check(serde_json::json!({
            "roles": {"clinician": {"purposes": ["TREAT"], "tasks": ["chat"]}},
            "break_glass": {"purpose": "ETREAT", "roles": ["surgeon"]},
        }));
        assert_eq!(glass.effect, Effect::Deny);
        assert!(glass.reasons[0].message.contains("surgeon"));
    }

    #[test]
    fn bad_configuration_denies() {
        let input = Input::for_test(
            Gate::Input,
            "access",
            &serde_json::json!({"roles": {"clinician": {"tasks": []}}}),
            request("clinician", "TREAT", "chat"),
        );
        assert_eq!(code(&evaluate(&input)), "bad_config");
        let output = Input {
            gate: Gate::Output,
            ..input
        };
        assert_eq!(evaluate(&output).effect, Effect::Allow);
    }
}
