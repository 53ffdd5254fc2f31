//! FHIR R4 export: each record as an `AuditEvent` in the shape of IHE
//! Basic Audit Log Patterns (BALP), collected in a `Bundle` of type
//! `collection`, for a hospital's audit repository or SIEM.
//!
//! Codes: DICOM (DCM) audit event types (110112 Query, 110100 Application
//! Activity with 110120/110121 Application Start/Stop, 110113 Security
//! Alert), RFC 3881/DICOM outcomes (0 success, 4 minor failure, 8 serious
//! failure), HL7 v3 ActReason for the purpose of use, HL7 audit entity
//! type and object role for the patient and the query. The patient appears
//! as its keyed pseudonym unless PHI is explicitly asked for (and the
//! auditor key has opened the record).

use serde_json::{json, Value};

use crate::record::{Event, Outcome, Query};
use crate::view::RecordView;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const CLOISTER_EVENT: &str = "https://cloister.invalid/fhir/CodeSystem/audit-event";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

/// A `Bundle` of one `AuditEvent` per record. With `include_phi`, the
/// patient reference, break-glass reason and kept text appear in clear
/// where the records were opened with the auditor key.
pub fn bundle(origin: &str, records: &[RecordView], include_phi: bool) -> Value {
    let entries: Vec<Value> = records
        .iter()
        .map(|r| {
            let id = format!(
                "{}-{}",
                origin.rsplit('/').next().unwrap_or(origin),
                r.record.seq
            );
            json!({
                "fullUrl": format!("urn:cloister:audit:{origin}:{}", r.record.seq),
                "resource": audit_event(origin, &id, r, include_phi),
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "total": entries.len(),
        "entry": entries,
    })
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn audit_event(origin: &str, id: &str, view: &RecordView, include_phi: bool) -> Value {
    let record = &view.record;
    let (event_type, subtype) = match &record.event {
        Event::Query(_) => (coding(DCM, "110112", "Query"), None),
        Event::Start(_) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(DCM, "110120", "Application Start")),
        ),
        Event::Stop(_) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(DCM, "110121", "Application Stop")),
        ),
        Event::Truncation(_) => (
            coding(DCM, "110113", "Security Alert"),
            Some(coding(
                CLOISTER_EVENT,
                "truncation",
                "Torn log tail cut off at start",
            )),
        ),
        Event::KeyRelease(_) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(
                CLOISTER_EVENT,
                "key_release",
                "Sealed bundle key released",
            )),
        ),
        Event::PolicyLoad(_) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(
                CLOISTER_EVENT,
                "policy_load",
                "Policy bundle loaded",
            )),
        ),
        Event::Checkpoint(_) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(
                CLOISTER_EVENT,
                "checkpoint",
                "Signed audit log checkpoint",
            )),
        ),
        Event::StreamEnd(_) => (
            coding(DCM, "110112", "Query"),
            Some(coding(
                CLOISTER_EVENT,
                "stream_end",
                "Streamed answer completed",
            )),
        ),
    };
    let (outcome, outcome_desc) = match &record.event {
        Event::Query(q) => (
            match q.outcome {
                Outcome::Answered | Outcome::Streaming => "0",
                Outcome::Denied | Outcome::Unauthenticated | Outcome::Rejected => "4",
                Outcome::Failed => "8",
            },
            Some(format!(
                "{}{}",
                q.outcome.as_str(),
                q.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        ),
        Event::StreamEnd(s) if !s.completed => ("4", Some("stream ended early".to_owned())),
        Event::Truncation(t) => (
            "4",
            Some(format!("{} bytes cut from {}", t.dropped_bytes, t.segment)),
        ),
        _ => ("0", None),
    };
    let enclave_agent = json!({
        "type": { "coding": [coding(DCM, "110150", "Application")] },
        "who": { "display": format!("cloister-enclave {}", record.enclave) },
        "requestor": false,
    });
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": event_type,
        "action": "E",
        "recorded": record.time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "outcome": outcome,
        "agent": [enclave_agent],
        "source": {
            "observer": { "display": origin },
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": [],
    });
    let Some(object) = event.as_object_mut() else {
        return event;
    };
    if let Some(subtype) = subtype {
        object.insert("subtype".into(), json!([subtype]));
    }
    if let Some(desc) = outcome_desc {
        object.insert("outcomeDesc".into(), json!(desc));
    }
    if let Event::Query(q) = &record.event {
        query_parts(object, q, view, include_phi);
    }
    event
}

fn query_parts(
    object: &mut serde_json::Map<String, Value>,
    q: &Query,
    view: &RecordView,
    include_phi: bool,
) {
    if let Some(purpose) = &q.purpose_of_use {
        object.insert(
            "purposeOfEvent".into(),
            json!([{ "coding": [{ "system": ACT_REASON, "code": purpose }] }]),
        );
    }
    if let Some(Value::Array(agents)) = object.get_mut("agent") {
        let mut user = json!({
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient" }] },
            "who": { "identifier": { "system": q.issuer, "value": q.principal } },
            "requestor": true,
        });
        if let (Some(role), Some(u)) = (&q.role, user.as_object_mut()) {
            u.insert("role".into(), json!([{ "text": role }]));
        }
        agents.insert(0, user);
    }
    let clear = if include_phi {
        view.unsealed.as_ref()
    } else {
        None
    };
    let mut entities = Vec::new();
    if let Some(pseudonym) = &q.patient {
        let identifier = match clear.and_then(|s| s.patient.as_ref()) {
            Some(patient) => json!({ "value": patient }),
            None => json!({
                "system": format!("urn:cloister:patient-pseudonym:{}", view.record.enclave),
                "value": pseudonym,
            }),
        };
        entities.push(json!({
            "what": { "identifier": identifier },
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let mut detail = vec![json!({ "type": "request_id", "valueString": q.request_id })];
    let mut push = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            detail.push(json!({ "type": name, "valueString": value }));
        }
    };
    push("task", q.task.clone());
    push("model", q.model.clone());
    push("prompt_digest", q.prompt_digest.clone());
    push("answer_digest", q.answer_digest.clone());
    push("break_glass", q.break_glass.then(|| "true".to_owned()));
    if let Some(policy) = &q.policy {
        push("policy_bundle", Some(policy.bundle.to_string()));
        for (gate, decisions) in [
            ("input", Some(&policy.input)),
            ("output", policy.output.as_ref()),
        ] {
            for d in decisions.into_iter().flatten() {
                push(
                    "policy_decision",
                    Some(format!(
                        "{gate}:{}:{}:{}",
                        d.module,
                        d.effect,
                        d.reasons.join(",")
                    )),
                );
            }
        }
    }
    if let Some(sealed) = clear {
        push("break_glass_reason", sealed.break_glass_reason.clone());
        push("answer", sealed.answer.clone());
        push("prompt", sealed.prompt.as_ref().map(ToString::to_string));
    }
    entities.push(json!({
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "24", "Query"),
        "description": "chat completion",
        "detail": detail,
    }));
    object.insert("entity".into(), Value::Array(entities));
}
