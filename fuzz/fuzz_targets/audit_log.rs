//! An audit log segment and a checkpoint note as the host could hand them
//! to an auditor: verification must never panic, and nothing but a prefix
//! of the genuine log (ending at one of its checkpoint records) may verify
//! — the fuzzer cannot sign, so any other "valid" verdict is a forgery the
//! verifier let through.
#![no_main]

use cloister_audit::checkpoint::SignedCheckpoint;
use cloister_audit::segment::{read_dir, segment_name, SEGMENTS};
use cloister_audit::verify::{verify_contents, VerifyOptions};
use libfuzzer_sys::fuzz_target;

const SEED: &[u8] = include_bytes!("../seeds/audit_log/sim-log.jsonl");

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(note) = SignedCheckpoint::parse(text) {
            let _ = note.verify(&note.checkpoint.origin, &[0; 32]);
        }
    }
    let dir = std::env::temp_dir().join(format!("cloister-fuzz-audit-{}", std::process::id()));
    let segments = dir.join(SEGMENTS);
    std::fs::create_dir_all(&segments).expect("scratch directory");
    std::fs::write(segments.join(segment_name(0)), data).expect("scratch segment");
    let contents = read_dir(&dir).expect("reading the scratch log");
    let report = verify_contents(&contents, &VerifyOptions::default());
    if report.valid {
        let genuine: Vec<&[u8]> = SEED.split(|&b| b == b'\n').collect();
        for (i, record) in contents.records.iter().enumerate() {
            assert_eq!(
                Some(&record.raw.as_slice()),
                genuine.get(i),
                "record {i} verified but is not the genuine record"
            );
        }
    }
});
