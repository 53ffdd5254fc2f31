//! Reading a FHIR R4 Bundle sent with a request into the compact patient
//! record a prompt quotes: demographics, conditions, medications,
//! allergies, procedures, encounters and observations, one line each.
//!
//! Only the elements a clinical summary needs are read; anything else in
//! the bundle is ignored. A bundle that is not a Bundle, or has more than
//! one Patient, is refused: the record must be about one patient.

use serde_json::Value;

/// Most entries read from one bundle.
const MAX_ENTRIES: usize = 2000;

/// The patient record a bundle describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatientRecord {
    /// The patient's id (`Patient.id`, else its first identifier's value).
    pub(crate) patient: Option<String>,
    /// The record as prompt text.
    pub(crate) text: String,
    /// Resources read.
    pub(crate) resources: usize,
}

fn text_of(concept: &Value) -> Option<String> {
    concept
        .get("text")
        .and_then(Value::as_str)
        .or_else(|| {
            concept
                .get("coding")?
                .as_array()?
                .iter()
                .find_map(|c| c.get("display").and_then(Value::as_str))
        })
        .map(str::to_owned)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn date(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| {
            v.get(k).and_then(|d| {
                d.as_str()
                    .or_else(|| d.get("start").and_then(Value::as_str))
            })
        })
        .map(|d| d.get(..10).unwrap_or(d).to_owned())
}

fn quantity(v: &Value) -> Option<String> {
    let q = v.get("valueQuantity")?;
    let value = q.get("value")?;
    let unit = q
        .get("unit")
        .or_else(|| q.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!("{value} {unit}").trim().to_owned())
}

/// Reads `bundle`.
pub(crate) fn read(bundle: &Value) -> Result<PatientRecord, String> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("cloister.fhir must be a FHIR R4 Bundle (resourceType \"Bundle\")".into());
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "the bundle has {} entries; at most {MAX_ENTRIES} are read",
            entries.len()
        ));
    }
    let mut patient = None;
    let mut demographics = None;
    let (mut conditions, mut medications, mut allergies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut procedures, mut encounters, mut observations) = (Vec::new(), Vec::new(), Vec::new());
    let mut resources = 0;
    for resource in entries.iter().filter_map(|e| e.get("resource")) {
        resources += 1;
        let when = |keys: &[&str]| {
            date(resource, keys)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        };
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => {
                if demographics.is_some() {
                    return Err("the bundle holds more than one Patient".into());
                }
                patient = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .or_else(|| str_at(resource.get("identifier")?.get(0)?, &["value"]))
                    .map(str::to_owned);
                demographics = Some(format!(
                    "{}, born {}",
                    resource
                        .get("gender")
                        .and_then(Value::as_str)
                        .unwrap_or("gender unknown"),
                    resource
                        .get("birthDate")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown"),
                ));
            }
            Some("Condition") => {
                if let Some(name) = resource.get("code").and_then(text_of) {
                    let status = resource
                        .get("clinicalStatus")
                        .and_then(text_of)
                        .map(|s| format!(", {}", s.to_lowercase()))
                        .unwrap_or_default();
                    let since = date(resource, &["onsetDateTime", "recordedDate"])
                        .map(|d| format!(", since {d}"))
                        .unwrap_or_default();
                    conditions.push(format!("{name}{status}{since}"));
                }
            }
            Some("MedicationRequest" | "MedicationStatement") => {
                if let Some(name) = resource.get("medicationCodeableConcept").and_then(text_of) {
                    let status = resource
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    let dosage = resource
                        .get("dosageInstruction")
                        .and_then(|d| d.get(0))
                        .and_then(|d| d.get("text"))
                        .and_then(Value::as_str)
                        .map(|t| format!(", {t}"))
                        .unwrap_or_default();
                    medications.push(format!("{name} ({status}{dosage})"));
                }
            }
            Some("AllergyIntolerance") => {
                if let Some(name) = resource.get("code").and_then(text_of) {
                    allergies.push(name);
                }
            }
            Some("Procedure") => {
                if let Some(name) = resource.get("code").and_then(text_of) {
                    procedures.push(format!(
                        "{name}{}",
                        when(&["performedDateTime", "performedPeriod"])
                    ));
                }
            }
            Some("Encounter") => {
                let kind = resource
                    .get("type")
                    .and_then(|t| t.get(0))
                    .and_then(text_of)
                    .or_else(|| str_at(resource, &["class", "display"]).map(str::to_owned))
                    .unwrap_or_else(|| "Encounter".into());
                encounters.push(format!("{kind}{}", when(&["period"])));
            }
            Some("Observation") => {
                if let Some(name) = resource.get("code").and_then(text_of) {
                    let value = quantity(resource)
                        .or_else(|| resource.get("valueCodeableConcept").and_then(text_of))
                        .or_else(|| {
                            resource
                                .get("valueString")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        });
                    if let Some(value) = value {
                        observations
                            .push(format!("{name}: {value}{}", when(&["effectiveDateTime"])));
                    }
                }
            }
            _ => {}
        }
    }
    let Some(demographics) = demographics else {
        return Err("the bundle holds no Patient".into());
    };
    let mut text = format!("Patient: {demographics}.\n");
    for (title, items) in [
        ("Conditions", &conditions),
        ("Medications", &medications),
        ("Allergies", &allergies),
        ("Procedures", &procedures),
        ("Encounters", &encounters),
        ("Observations", &observations),
    ] {
        if !items.is_empty() {
            text.push_str(title);
            text.push_str(":\n");
            for item in items {
                text.push_str("- ");
                text.push_str(item);
                text.push('\n');
            }
        }
    }
    Ok(PatientRecord {
        patient,
        text,
        resources,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CKD: &str = include_str!("../../tests/fixtures/fhir/ckd_stage3-7.json");

    #[test]
    fn a_carebundle_record_reads_into_a_summary() {
        let record = read(&serde_json::from_str(CKD).unwrap()).unwrap();
        assert_eq!(record.patient.as_deref(), Some("6D367230"));
        assert_eq!(record.resources, 16);
        let t = &record.text;
        assert!(t.starts_with("Patient: female, born 1961-06-03.\n"), "{t}");
        assert!(t.contains("- Chronic kidney disease, stage 3b"), "{t}");
        assert!(t.contains("- amlodipine 5 MG Oral Tablet (active"), "{t}");
        assert!(t.contains("Hemoglobin A1c"), "{t}");
        assert!(t.contains("Ambulatory visit (2026-01-01)"), "{t}");
        // The patient's name is not part of the summary.
        assert!(!t.contains("Dummett"), "{t}");
    }

    #[test]
    fn bundles_about_no_one_or_two_people_are_refused() {
        assert!(read(&serde_json::json!({"resourceType": "Patient"})).is_err());
        assert!(read(&serde_json::json!({"resourceType": "Bundle", "entry": []})).is_err());
        let two = serde_json::json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}},
            {"resource": {"resourceType": "Patient", "id": "b"}},
        ]});
        assert!(read(&two).unwrap_err().contains("more than one Patient"));
    }
}
