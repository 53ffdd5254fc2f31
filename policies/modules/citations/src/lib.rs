//! `citations`: an answer must rest on the sources retrieved for it.
//!
//! At the output gate, an answer cites sources with bracketed markers
//! holding source IDs, `[S1]` or `[S1, S3]`. When sources were retrieved,
//! the answer must cite at least one of them (for the tasks configured),
//! and every marker must name a retrieved source: a citation of something
//! that was not retrieved is a fabricated citation and denies. When no
//! sources were retrieved, an answer that cites anything is denied for the
//! same reason.
//!
//! ```toml
//! [modules.config]
//! tasks = ["guideline_qa"]     # tasks whose answers must cite; default: all
//! on_missing = "deny"          # or "require_review": let it through, flagged
//! ```
//!
//! A marker is `[`, one or more comma-separated IDs of the form letters
//! then digits (`S1`, `REF12`), and `]`; other bracketed text (`[sic]`,
//! `[1-2]`) is prose, not a citation.

use cloister_policy_sdk::{export_policy, ConfigInput, Decision, Gate, Input, Request};
use serde::Deserialize;

/// The module's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tasks whose answers must cite; empty means every task.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// What an uncited answer gets.
    #[serde(default)]
    pub on_missing: OnMissing,
}

/// What an answer without a citation gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// It is not returned.
    #[default]
    Deny,
    /// It is returned, flagged `citation_review`.
    RequireReview,
}

/// The requirement an uncited answer carries under `require_review`.
pub const CITATION_REVIEW: &str = "citation_review";

/// The policy.
pub fn evaluate(input: &Input) -> Decision {
    if input.gate == Gate::Input {
        return Decision::allow();
    }
    match input.config::<Config>() {
        Ok(config) => decide(&config, &input.request),
        Err(e) => Decision::deny("bad_config", format!("citations configuration: {e}")),
    }
}

/// The check, over typed configuration.
pub fn decide(config: &Config, request: &Request) -> Decision {
    let cited = citations(&request.text);
    if let Some(unknown) = cited
        .iter()
        .find(|id| !request.sources.iter().any(|s| s.id == **id))
    {
        return Decision::deny(
            "unknown_citation",
            format!("the answer cites [{unknown}], which was not among the retrieved sources"),
        );
    }
    if request.sources.is_empty() {
        return Decision::allow().because("no_sources", "no sources were retrieved for this query");
    }
    let applies = config.tasks.is_empty() || config.tasks.contains(&request.task);
    if cited.is_empty() && applies {
        return match config.on_missing {
            OnMissing::Deny => Decision::deny(
                "no_citation",
                "the answer cites none of the sources retrieved for it",
            ),
            OnMissing::RequireReview => Decision::require(CITATION_REVIEW).because(
                "no_citation",
                "the answer cites none of the retrieved sources",
            ),
        };
    }
    Decision::allow().because(
        "cited",
        format!("the answer cites {} retrieved source(s)", cited.len()),
    )
}

/// Every source ID cited in `text`, in order of first appearance.
pub fn citations(text: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find(']') else { break };
        let inside = after.get(..close).unwrap_or_default();
        let ids: Vec<&str> = inside.split(',').map(str::trim).collect();
        if ids.iter().all(|id| is_source_id(id)) {
            for id in ids {
                if !found.contains(&id) {
                    found.push(id);
                }
            }
            rest = after.get(close + 1..).unwrap_or_default();
        } else {
            // Not a marker: look again from just after this `[`, so a
            // marker nested in prose (`[see [S1]]`) is still found.
            rest = after;
        }
    }
    found
}

/// Letters, then digits: `S1`, `REF12`.
fn is_source_id(id: &str) -> bool {
    let letters = id.bytes().take_while(u8::is_ascii_alphabetic).count();
    let digits = id.len() - letters;
    letters > 0
        && letters <= 8
        && digits > 0
        && digits <= 6
        && id.bytes().skip(letters).all(|b| b.is_ascii_digit())
}

/// The load-time check: the configuration parses.
pub fn check_config(input: &ConfigInput) -> Decision {
    match input.config::<Config>() {
        Ok(_) => Decision::allow(),
        Err(e) => Decision::deny("bad_config", format!("citations configuration: {e}")),
    }
}

export_policy!(evaluate, check_config);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use cloister_policy_sdk::{Effect, Source};

    use super::*;

    fn request(text: &str, sources: &[&str]) -> Request {
        Request {
            task: "guideline_qa".into(),
            text: text.into(),
            sources: sources
                .iter()
                .map(|id| Source {
                    id: (*id).into(),
                    title: "Hypertension in adults".into(),
                    ..Source::default()
                })
                .collect(),
            ..Request::default()
        }
    }

    fn code(d: &Decision) -> &str {
        &d.reasons[0].code
    }

    #[test]
    fn finds_markers_and_ignores_prose_brackets() {
        assert_eq!(citations("A [S1]. B [S2, S3][S1]."), vec!["S1", "S2", "S3"]);
        assert_eq!(
            citations("[sic] and [1-2] and [] and [S]"),
            Vec::<&str>::new()
        );
        assert_eq!(citations("see [note [S4]]"), vec!["S4"]);
        assert_eq!(citations("unclosed [S1"), Vec::<&str>::new());
        assert_eq!(citations("ünïcode [S1] ✓ [Ü2]"), vec!["S1"]);
    }

    #[test]
    fn an_answer_must_cite_a_retrieved_source() {
        let c = Config::default();
        assert_eq!(
            decide(&c, &request("Start a thiazide [S2].", &["S1", "S2"])).effect,
            Effect::Allow
        );
        assert_eq!(
            code(&decide(&c, &request("Start a thiazide.", &["S1"]))),
            "no_citation"
        );
        assert_eq!(
            code(&decide(&c, &request("Start a thiazide [S9].", &["S1"]))),
            "unknown_citation"
        );
    }

    #[test]
    fn without_sources_any_citation_is_fabricated() {
        let c = Config::default();
        assert_eq!(
            decide(&c, &request("Rest and fluids.", &[])).effect,
            Effect::Allow
        );
        assert_eq!(
            code(&decide(&c, &request("Rest and fluids [S1].", &[]))),
            "unknown_citation"
        );
    }

    #[test]
    fn configuration_scopes_and_softens_the_rule() {
        let other_task = Config {
            tasks: vec!["summarize".into()],
            on_missing: OnMissing::Deny,
        };
        assert_eq!(
            decide(&other_task, &request("No markers.", &["S1"])).effect,
            Effect::Allow
        );
        let review = Config {
            tasks: vec![],
            on_missing: OnMissing::RequireReview,
        };
        let d = decide(&review, &request("No markers.", &["S1"]));
        assert_eq!(d.effect, Effect::Require);
        assert_eq!(d.requirements, vec![CITATION_REVIEW.to_owned()]);
    }

    #[test]
    fn it_judges_only_answers() {
        let input = Input::for_test(
            Gate::Input,
            "citations",
            &serde_json::json!({"on_missing": "never"}),
            request("[S9]", &[]),
        );
        assert_eq!(evaluate(&input).effect, Effect::Allow);
        let output = Input {
            gate: Gate::Output,
            ..input
        };
        assert_eq!(code(&evaluate(&output)), "bad_config");
    }
}
