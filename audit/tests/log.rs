//! The log end to end within one process: an enclave writes, restarts and
//! crashes; an auditor verifies, reads, proves and exports; and every kind
//! of tampering the host could do is detected and named.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::Ed25519KeyPair;
use cloister_audit::checkpoint::Checkpoint;
use cloister_audit::record::Outcome;
use cloister_audit::verify::{verify, Finding, Report, VerifyOptions};
use cloister_audit::view::{
    check_consistency, check_proof, prove, prove_consistency, select, Filter, LogView,
};
use cloister_audit::{AuditError, AuditorKey, LogConfig};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Writes a log of: start, `n` queries (alternating two patients, every
/// third denied), stop.
fn write_log(dir: &Path, auditor: &AuditorKey, n: usize) {
    let log = common::start(dir, auditor);
    let mut last = None;
    for i in 0..n {
        let patient = if i % 2 == 0 { "MRN-1001" } else { "MRN-2002" };
        let outcome = if i % 3 == 2 {
            Outcome::Denied
        } else {
            Outcome::Answered
        };
        let (event, sealed) = common::query(&log, &format!("dr-{i}"), patient, outcome);
        let receipt = log.append(event, sealed).unwrap();
        if let Some(last) = last {
            // One append at a time: each is its own commit, a record and
            // the checkpoint after it.
            assert_eq!(receipt.seq, last + 2);
        }
        last = Some(receipt.seq);
    }
    log.close("test over").unwrap();
}

fn check(dir: &Path, extra: &[(&str, String)]) -> Report {
    let options = VerifyOptions {
        checkpoints: extra
            .iter()
            .map(|(l, t)| ((*l).to_owned(), t.clone()))
            .collect(),
        policy: Some(common::appraisal()),
    };
    verify(dir, &options).unwrap()
}

fn finding(dir: &Path, extra: &[(&str, String)]) -> Finding {
    let report = check(dir, extra);
    assert!(!report.valid, "expected an invalid log: {report:#?}");
    report.finding.unwrap()
}

/// The records of one kind, as an auditor without the key sees them.
fn of_kind(view: &LogView, kind: &str) -> Vec<cloister_audit::view::RecordView> {
    let filter = Filter {
        kind: Some(kind.into()),
        ..Filter::default()
    };
    select(view, None, &filter).unwrap()
}

fn last_checkpoint(dir: &Path) -> String {
    LogView::open(dir)
        .unwrap()
        .summary
        .last_checkpoint
        .unwrap()
        .1
}

fn segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments.into_iter().next().unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn a_written_log_verifies_with_its_evidence_appraised_and_reads_back_with_the_auditor_key() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 9);
    let report = check(dir.path(), &[]);
    assert!(report.valid, "{report:#?}");
    // Each commit is its records and a checkpoint record: start, 9
    // queries and the stop, each committed alone here.
    assert_eq!(report.records, 22);
    assert_eq!(report.epochs.len(), 1);
    assert!(report.epochs[0].appraisal.is_some());
    assert_eq!(report.checkpoints[0].size, 21);

    // The host sees pseudonyms and ciphertext only.
    let raw = std::fs::read_to_string(segment(dir.path())).unwrap();
    assert!(!raw.contains("MRN-1001") && !raw.contains("hello"));
    assert!(raw.contains("dr-0") && raw.contains("not_treating_patient"));

    let view = LogView::open(dir.path()).unwrap();
    let all = select(&view, Some(&auditor), &Filter::default()).unwrap();
    assert_eq!(all.len(), 11);
    let first_query = &all[1];
    assert_eq!(
        first_query.unsealed.as_ref().unwrap().patient.as_deref(),
        Some("MRN-1001")
    );

    // Filters: by patient (needs the key), outcome, module decision, kind.
    let by_patient = Filter {
        patient: Some("MRN-2002".into()),
        ..Filter::default()
    };
    assert_eq!(select(&view, Some(&auditor), &by_patient).unwrap().len(), 4);
    assert!(matches!(
        select(&view, None, &by_patient),
        Err(AuditError::Key(_))
    ));
    let denied = Filter {
        module: Some("access:deny".into()),
        ..Filter::default()
    };
    let denied = select(&view, None, &denied).unwrap();
    assert_eq!(denied.len(), 3);
    assert!(denied
        .iter()
        .all(|r| r.sealed_note.is_some() && r.unsealed.is_none()));
    let by_reason = Filter {
        reason: Some("not_treating_patient".into()),
        outcome: Some("denied".into()),
        ..Filter::default()
    };
    assert_eq!(select(&view, None, &by_reason).unwrap().len(), 3);
    let starts = Filter {
        kind: Some("start".into()),
        ..Filter::default()
    };
    assert_eq!(select(&view, None, &starts).unwrap().len(), 1);

    // Another auditor's key opens nothing.
    let stranger = AuditorKey::generate().unwrap();
    let theirs = select(&view, Some(&stranger), &Filter::default()).unwrap();
    assert!(theirs.iter().all(|r| r.unsealed.is_none()));

    // Every record has an inclusion proof a third party can check; a proof
    // for an altered record, or under another key, fails.
    for seq in 0..21 {
        let proof = prove(&view, seq).unwrap();
        check_proof(&proof, None).unwrap();
        let mut altered = proof.clone();
        altered.record = altered.record.replacen("dr-", "dx-", 1);
        assert!(check_proof(&altered, None).is_err() || !proof.record.contains("dr-"));
        assert!(check_proof(&proof, Some(&[1; 32])).is_err());
    }
    assert!(
        prove(&view, 21).is_err(),
        "the last checkpoint does not cover itself"
    );

    // FHIR: pseudonyms unless PHI is asked for.
    let records = select(&view, Some(&auditor), &Filter::default()).unwrap();
    let origin = view.summary.origin.clone().unwrap();
    let plain = cloister_audit::fhir::bundle(&origin, &records, false).to_string();
    assert!(!plain.contains("MRN-1001") && plain.contains("\"resourceType\":\"AuditEvent\""));
    let phi = cloister_audit::fhir::bundle(&origin, &records, true).to_string();
    assert!(phi.contains("MRN-1001"));
}

#[test]
fn appends_from_many_threads_share_syncs_and_all_land_in_order() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    let log = std::sync::Arc::new(common::start(dir.path(), &auditor));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| {
                        let (event, sealed) =
                            common::query(&log, &format!("t{t}-{i}"), "MRN-9", Outcome::Answered);
                        log.append(event, sealed).unwrap().seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 640);
    drop(log);
    let report = check(dir.path(), &[]);
    assert!(report.valid, "{:?}", report.finding);
    let view = LogView::open(dir.path()).unwrap();
    let queries: Vec<u64> = of_kind(&view, "query")
        .iter()
        .map(|r| r.record.seq)
        .collect();
    assert_eq!(queries, seqs, "every receipt names its query record");
    let commits = report.records - 640 - 1;
    eprintln!("640 appends from 16 threads took {commits} commits");
    assert!(commits < 640, "no commit was shared");
}

#[test]
fn a_restarted_enclave_takes_over_the_log_and_old_checkpoints_stay_consistent() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 3);
    let witness_note = last_checkpoint(dir.path());
    write_log(dir.path(), &auditor, 4);
    let report = check(dir.path(), &[("witness", witness_note.clone())]);
    assert!(report.valid, "{:?}", report.finding);
    assert_eq!(report.epochs.len(), 2);
    assert_eq!(report.epochs[1].seq, 10);
    assert_eq!(report.records, 22);
    assert_eq!(report.checkpoints.len(), 2);
    // A third party checks that the log the witness saw is a prefix of
    // today's, from the proof alone; a bent path or another key fails.
    let view = LogView::open(dir.path()).unwrap();
    let witness = report
        .checkpoints
        .iter()
        .find(|c| c.checkpoint == "witness")
        .unwrap();
    assert_eq!(witness.size, 9);
    let proof = prove_consistency(&view, &witness_note).unwrap();
    assert_eq!((proof.old_size, proof.new_size), (9, 21));
    check_consistency(&proof, &[]).unwrap();
    let mut bent = proof.clone();
    bent.path[0] = hex::encode([0u8; 32]);
    assert!(check_consistency(&bent, &[]).is_err());
    assert!(check_consistency(&proof, &[[1; 32]]).is_err());
    // Both epochs' sealed fields open.
    let view = LogView::open(dir.path()).unwrap();
    let unsealed = select(&view, Some(&auditor), &Filter::default()).unwrap();
    assert_eq!(unsealed.iter().filter(|r| r.unsealed.is_some()).count(), 7);
}

#[test]
fn a_torn_tail_is_reported_then_cut_off_and_recorded_at_restart() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 2);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":4,\"prev\":\"ab");
    std::fs::write(&path, &bytes).unwrap();
    let report = check(dir.path(), &[]);
    assert!(
        report.valid,
        "a torn tail is not tampering: {:?}",
        report.finding
    );
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("interrupted by a crash")));

    let log = common::start(dir.path(), &auditor);
    drop(log);
    let report = check(dir.path(), &[]);
    assert!(report.valid, "{:?}", report.finding);
    assert!(report.warnings.iter().all(|w| !w.contains("crash")));
    let view = LogView::open(dir.path()).unwrap();
    let cuts = of_kind(&view, "truncation");
    assert_eq!(cuts.len(), 1);
    let json = serde_json::to_value(&cuts[0].record).unwrap();
    assert_eq!(json["event"]["dropped_bytes"], 19);
    assert_eq!(json["event"]["dropped_records"], 0);
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    let _first = common::start(dir.path(), &auditor);
    let second = common::start_with(LogConfig::new(dir.path().to_path_buf(), auditor.public()));
    assert!(matches!(second, Err(AuditError::Locked(_))));
}

#[test]
fn a_damaged_log_is_refused_by_the_writer() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 3);
    let path = segment(dir.path());
    let mut all = lines(&path);
    all.remove(2);
    write_lines(&path, &all);
    let refused = common::start_with(LogConfig::new(dir.path().to_path_buf(), auditor.public()));
    match refused {
        Err(AuditError::Damaged(f)) => assert_eq!(*f, Finding::Deleted { seq: 2, found: 3 }),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_edited_record_is_named() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 5);
    let path = segment(dir.path());
    let mut all = lines(&path);
    let at = all.iter().position(|l| l.contains("\"dr-2\"")).unwrap();
    all[at] = all[at].replace("\"dr-2\"", "\"dr-X\"");
    write_lines(&path, &all);
    assert_eq!(
        finding(dir.path(), &[]),
        Finding::Altered { seq: at as u64 }
    );
}

#[test]
fn an_edited_last_record_or_checkpoint_is_named() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 2);
    let path = segment(dir.path());
    let original = lines(&path);
    // The stop record, then the checkpoint record after it.
    let mut all = original.clone();
    all[6] = all[6].replace("test over", "test OVER");
    write_lines(&path, &all);
    assert_eq!(finding(dir.path(), &[]), Finding::Altered { seq: 6 });
    let mut all = original.clone();
    all[7] = all[7].replacen("\\n7\\n", "\\n9\\n", 1);
    assert_ne!(all[7], original[7]);
    write_lines(&path, &all);
    assert!(matches!(
        finding(dir.path(), &[]),
        Finding::BadCheckpointRecord { seq: 7, .. }
    ));
}

#[test]
fn a_deleted_record_is_named() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 5);
    let path = segment(dir.path());
    let mut all = lines(&path);
    all.remove(4);
    write_lines(&path, &all);
    assert_eq!(
        finding(dir.path(), &[]),
        Finding::Deleted { seq: 4, found: 5 }
    );
}

#[test]
fn swapped_records_are_named() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 5);
    let path = segment(dir.path());
    let mut all = lines(&path);
    all.swap(2, 3);
    write_lines(&path, &all);
    assert_eq!(
        finding(dir.path(), &[]),
        Finding::Reordered { seq: 2, found: 3 }
    );
}

#[test]
fn a_tail_deleted_after_a_witnessed_checkpoint_is_named() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    let witness_dir = tmp();
    let mut config = LogConfig::new(dir.path().to_path_buf(), auditor.public());
    config.witness_dir = Some(witness_dir.path().to_path_buf());
    let log = common::start_with(config).unwrap();
    for i in 0..5 {
        let (event, sealed) = common::query(&log, &format!("dr-{i}"), "MRN-1", Outcome::Answered);
        log.append(event, sealed).unwrap();
    }
    drop(log);
    let witnessed = std::fs::read_to_string(witness_dir.path().join("checkpoint")).unwrap();
    assert!(witnessed.contains("\n11\n"), "{witnessed}");
    // The host cuts the last commit (a query and its checkpoint).
    let path = segment(dir.path());
    let all = lines(&path);
    write_lines(&path, &all[..10]);
    assert!(
        check(dir.path(), &[]).valid,
        "without the witness the cut is invisible"
    );
    assert_eq!(
        finding(dir.path(), &[("witness", witnessed.clone())]),
        Finding::Truncated {
            checkpoint: "witness".into(),
            size: 11,
            records: 10
        }
    );
    // Even after a new enclave appends past the cut, the witness's
    // checkpoint no longer fits the log.
    let log = common::start(dir.path(), &auditor);
    for i in 0..2 {
        let (event, sealed) = common::query(&log, &format!("dr-{i}"), "MRN-1", Outcome::Answered);
        log.append(event, sealed).unwrap();
    }
    drop(log);
    let report = check(dir.path(), &[("witness", witnessed)]);
    assert!(
        matches!(report.finding, Some(Finding::Diverged { size: 11, .. })),
        "{:?}",
        report.finding
    );
}

#[test]
fn a_record_spliced_from_another_enclaves_log_is_named() {
    let ours = tmp();
    let theirs = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(ours.path(), &auditor, 4);
    write_log(theirs.path(), &auditor, 4);
    let our_path = segment(ours.path());
    let mut our_lines = lines(&our_path);
    let their_lines = lines(&segment(theirs.path()));
    our_lines[2].clone_from(&their_lines[2]);
    write_lines(&our_path, &our_lines);
    assert!(
        matches!(
            finding(ours.path(), &[]),
            Finding::ForeignEnclave { seq: 2, .. }
        ),
        "{:?}",
        check(ours.path(), &[]).finding
    );
    // Their start record in place of ours: our records no longer belong.
    let mut our_lines = lines(&our_path);
    our_lines[0].clone_from(&their_lines[0]);
    write_lines(&our_path, &our_lines);
    let f = finding(ours.path(), &[]);
    assert!(matches!(f, Finding::ForeignEnclave { seq: 1, .. }), "{f:?}");
}

#[test]
fn a_checkpoint_signed_by_a_key_not_in_the_evidence_is_refused() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 3);
    let view = LogView::open(dir.path()).unwrap();
    let origin = view.summary.origin.clone().unwrap();
    let leaves: Vec<_> = view.contents.records.iter().map(|r| r.leaf).collect();
    let forged = Checkpoint {
        origin,
        size: leaves.len() as u64,
        root: cloister_audit::merkle::root(&leaves),
    }
    .sign(&Ed25519KeyPair::from_seed_unchecked(&[42; 32]).unwrap());
    assert!(matches!(
        finding(dir.path(), &[("forged", forged)]),
        Finding::UnknownSigner { .. }
    ));
}

#[test]
fn records_after_the_last_checkpoint_are_not_taken_on_trust_and_are_cut_at_restart() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 3);
    // The host appends a record that chains correctly (anyone can compute
    // the hashes), then the torn start of a checkpoint, as a crash in the
    // middle of a commit would leave.
    let path = segment(dir.path());
    let all = lines(&path);
    let mut forged: serde_json::Value = serde_json::from_str(&all[2]).unwrap();
    forged["seq"] = serde_json::json!(all.len());
    forged["prev"] = serde_json::json!(hex::encode(cloister_audit::merkle::leaf_hash(
        all.last().unwrap().as_bytes()
    )));
    forged["event"]["principal"] = serde_json::json!("forged-principal");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(forged.to_string().as_bytes());
    bytes.extend_from_slice(b"\n{\"seq\":11,\"prev\":");
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(
        finding(dir.path(), &[]),
        Finding::UnsignedTail { from: 10, to: 11 }
    );

    drop(common::start(dir.path(), &auditor));
    let report = check(dir.path(), &[]);
    assert!(report.valid, "{:?}", report.finding);
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("forged-principal"));
    let view = LogView::open(dir.path()).unwrap();
    let cut = of_kind(&view, "truncation");
    let json = serde_json::to_value(&cut[0].record).unwrap();
    assert_eq!(json["event"]["dropped_records"], 1);
}

#[test]
fn a_policy_that_does_not_accept_the_evidence_fails_verification() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    write_log(dir.path(), &auditor, 1);
    let strict = cloister_attestation::policy::AppraisalPolicy::from_toml(&format!(
        "allow_simulated = true\n[sim]\nmeasurements = [\"{}\"]\n",
        "cd".repeat(48)
    ))
    .unwrap();
    let report = verify(
        dir.path(),
        &VerifyOptions {
            checkpoints: vec![],
            policy: Some(strict),
        },
    )
    .unwrap();
    assert!(matches!(
        report.finding,
        Some(Finding::EvidenceRejected { seq: 0, .. })
    ));
    let unappraised = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(unappraised.valid && !unappraised.evidence_appraised);
    assert!(unappraised
        .warnings
        .iter()
        .any(|w| w.contains("not appraised")));
}

#[test]
fn an_append_that_cannot_be_made_durable_is_refused_and_so_is_every_later_one() {
    let dir = tmp();
    let auditor = AuditorKey::generate().unwrap();
    let mut config = LogConfig::new(dir.path().to_path_buf(), auditor.public());
    // Every commit after the first starts a new segment file.
    config.max_segment_bytes = 1;
    let log = common::start_with(config).unwrap();
    let (event, sealed) = common::query(&log, "dr-0", "MRN-1", Outcome::Answered);
    log.append(event, sealed).unwrap();
    log.health().unwrap();
    // The host takes the segments directory away (root included: a file
    // where the directory was).
    let segments = dir.path().join("segments");
    let moved = dir.path().join("segments.moved");
    std::fs::rename(&segments, &moved).unwrap();
    std::fs::write(&segments, b"not a directory").unwrap();
    let (event, sealed) = common::query(&log, "dr-1", "MRN-1", Outcome::Answered);
    assert!(log.append(event, sealed).is_err());
    assert!(matches!(log.health(), Err(AuditError::Poisoned(_))));
    // Even with the directory back, nothing more is accepted.
    std::fs::remove_file(&segments).unwrap();
    std::fs::rename(&moved, &segments).unwrap();
    let (event, sealed) = common::query(&log, "dr-2", "MRN-1", Outcome::Answered);
    assert!(matches!(
        log.append(event, sealed),
        Err(AuditError::Poisoned(_))
    ));
    drop(log);
    // A restart recovers: the refused records are not there, the log verifies.
    drop(common::start(dir.path(), &auditor));
    let report = check(dir.path(), &[]);
    assert!(report.valid, "{:?}", report.finding);
    let view = LogView::open(dir.path()).unwrap();
    let principals: Vec<_> = of_kind(&view, "query")
        .into_iter()
        .map(|r| serde_json::to_value(&r.record).unwrap()["event"]["principal"].clone())
        .collect();
    assert_eq!(principals, [serde_json::json!("dr-0")]);
}
