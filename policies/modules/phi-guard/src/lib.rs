//! `phi-guard`: protected health information in prompts and answers.
//!
//! [`detect`] finds the 18 HIPAA Safe Harbor identifier kinds
//! (45 CFR 164.514(b)(2)); this module then acts by the caller's purpose of
//! use, at both gates: `allow` (treatment and payment need the patient's
//! identifiers; what was seen is still recorded), `redact` (each span
//! replaced by a placeholder such as `[NAME]`, before the model sees the
//! prompt or the client sees the answer), or `deny`.
//!
//! ```toml
//! [modules.config]
//! default = "deny"                 # for purposes not listed
//! kinds = ["name", "date"]         # optional: only these kinds (default: all)
//! [modules.config.purposes]
//! TREAT = "allow"
//! HRESCH = "redact"
//! ```
//!
//! Reasons name the kinds and counts found, never the text.

pub mod detect;

use std::collections::BTreeMap;

use cloister_policy_sdk::{export_policy, ConfigInput, Decision, Input, Redaction, Request};
use serde::Deserialize;

use crate::detect::{Finding, IdentifierKind};

/// The module's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What PHI gets under a purpose not listed.
    pub default: Action,
    /// What PHI gets, by HL7 PurposeOfUse code.
    #[serde(default)]
    pub purposes: BTreeMap<String, Action>,
    /// The kinds to act on (labels as in [`IdentifierKind::label`]); all if absent.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
}

/// What text carrying PHI gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Through unchanged (recorded as seen).
    Allow,
    /// Through with each identifier replaced.
    Redact,
    /// Stopped.
    Deny,
}

/// The policy.
pub fn evaluate(input: &Input) -> Decision {
    match input.config::<Config>() {
        Ok(config) => match kinds(&config) {
            Ok(kinds) => decide(&config, &kinds, &input.request),
            Err(e) => Decision::deny("bad_config", e),
        },
        Err(e) => Decision::deny("bad_config", format!("phi-guard configuration: {e}")),
    }
}

/// The kinds a configuration acts on.
pub fn kinds(config: &Config) -> Result<Vec<IdentifierKind>, String> {
    match &config.kinds {
        None => Ok(IdentifierKind::ALL.to_vec()),
        Some(labels) => labels
            .iter()
            .map(|l| {
                IdentifierKind::from_label(l).ok_or_else(|| {
                    format!("phi-guard configuration: unknown identifier kind {l:?}")
                })
            })
            .collect(),
    }
}

/// The check, over typed configuration.
pub fn decide(config: &Config, kinds: &[IdentifierKind], request: &Request) -> Decision {
    let found: Vec<Finding> = detect::detect(&request.text)
        .into_iter()
        .filter(|f| kinds.contains(&f.kind))
        .collect();
    if found.is_empty() {
        return Decision::allow().because("no_phi", "no Safe Harbor identifiers found");
    }
    let summary = summarize(&found);
    let action = config
        .purposes
        .get(&request.purpose_of_use)
        .copied()
        .unwrap_or(config.default);
    let purpose = &request.purpose_of_use;
    match action {
        Action::Allow => Decision::allow().because(
            "phi_permitted",
            format!("identifiers permitted for purpose {purpose:?}: {summary}"),
        ),
        Action::Deny => Decision::deny(
            "phi_present",
            format!("identifiers are not permitted for purpose {purpose:?}: {summary}"),
        ),
        Action::Redact => Decision::redact(
            found
                .iter()
                .map(|f| Redaction {
                    start: f.start,
                    end: f.end,
                    replacement: f.kind.placeholder().to_owned(),
                    label: f.kind.label().to_owned(),
                })
                .collect(),
        )
        .because(
            "phi_redacted",
            format!("identifiers redacted for purpose {purpose:?}: {summary}"),
        ),
    }
}

/// `name×2, date×1`: kinds and counts, no text.
fn summarize(found: &[Finding]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in found {
        *counts.entry(f.kind.label()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{kind}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The load-time check: the configuration parses and names only known
/// identifier kinds.
pub fn check_config(input: &ConfigInput) -> Decision {
    match input.config::<Config>() {
        Ok(config) => match kinds(&config) {
            Ok(_) => Decision::allow(),
            Err(e) => Decision::deny("bad_config", e),
        },
        Err(e) => Decision::deny("bad_config", format!("phi-guard configuration: {e}")),
    }
}

export_policy!(evaluate, check_config);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use cloister_policy_sdk::{Effect, Gate};

    use super::*;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "default": "deny",
            "purposes": {"TREAT": "allow", "HRESCH": "redact"},
        }))
        .unwrap()
    }

    fn request(purpose: &str, text: &str) -> Request {
        Request {
            purpose_of_use: purpose.into(),
            text: text.into(),
            ..Request::default()
        }
    }

    const NOTE: &str = "Mr. John Smith, DOB 03/14/1952, MRN 4471298, seen for chest pain.";

    #[test]
    fn acts_by_purpose_of_use() {
        let c = config();
        let k = kinds(&c).unwrap();
        assert_eq!(
            decide(&c, &k, &request("TREAT", NOTE)).effect,
            Effect::Allow
        );
        let denied = decide(&c, &k, &request("PUBHLTH", NOTE));
        assert_eq!(denied.effect, Effect::Deny);
        assert_eq!(denied.reasons[0].code, "phi_present");
        assert!(
            !denied.reasons[0].message.contains("Smith"),
            "reasons carry no PHI"
        );
        let redacted = decide(&c, &k, &request("HRESCH", NOTE));
        assert_eq!(redacted.effect, Effect::Redact);
        let labels: Vec<_> = redacted
            .redactions
            .iter()
            .map(|r| r.label.as_str())
            .collect();
        assert_eq!(labels, ["name", "date", "medical_record_number"]);
        assert!(redacted
            .redactions
            .iter()
            .all(|r| r.replacement.starts_with('[')));
    }

    #[test]
    fn text_without_phi_passes_under_any_purpose() {
        let c = config();
        let k = kinds(&c).unwrap();
        let clean = "BP 150/95 on two readings; start amlodipine 5 mg daily, HbA1c 7.2% in 2019.";
        for purpose in ["TREAT", "HRESCH", "PUBHLTH", ""] {
            let d = decide(&c, &k, &request(purpose, clean));
            assert_eq!(d.effect, Effect::Allow, "{purpose}");
            assert_eq!(d.reasons[0].code, "no_phi");
        }
    }

    #[test]
    fn kinds_narrow_what_it_acts_on() {
        let mut c = config();
        c.kinds = Some(vec!["date".into()]);
        let k = kinds(&c).unwrap();
        let d = decide(&c, &k, &request("HRESCH", NOTE));
        assert_eq!(d.redactions.len(), 1);
        assert_eq!(d.redactions[0].label, "date");
        c.kinds = Some(vec!["shoe_size".into()]);
        assert!(kinds(&c).is_err());
        let input = Input::for_test(
            Gate::Input,
            "phi-guard",
            &serde_json::json!({"default": "deny", "kinds": ["shoe_size"]}),
            request("TREAT", NOTE),
        );
        assert_eq!(evaluate(&input).reasons[0].code, "bad_config");
    }
}
