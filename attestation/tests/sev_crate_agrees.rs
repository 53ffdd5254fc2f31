//! Differential check: virtee's `sev` crate, an independent SNP report parser,
//! reads the same values from the real reports as ours does.

// Test helpers may unwrap and panic: a failure is the test failing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloister_attestation::snp::{SnpReport, TcbVersion};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

fn same_tcb(ours: &TcbVersion, theirs: &sev::firmware::host::TcbVersion, what: &str) {
    assert_eq!(
        (
            ours.fmc,
            ours.bootloader,
            ours.tee,
            ours.snp,
            ours.microcode
        ),
        (
            theirs.fmc,
            theirs.bootloader,
            theirs.tee,
            theirs.snp,
            theirs.microcode
        ),
        "{what}"
    );
}

fn compare(bytes: &[u8]) {
    let ours = SnpReport::parse(bytes).unwrap();
    let theirs = AttestationReport::from_bytes(bytes).unwrap();
    assert_eq!(ours.version, theirs.version);
    assert_eq!(ours.guest_svn, theirs.guest_svn);
    assert_eq!(ours.policy.0, u64::from(theirs.policy));
    assert_eq!(ours.family_id, theirs.family_id);
    assert_eq!(ours.image_id, theirs.image_id);
    assert_eq!(ours.vmpl, theirs.vmpl);
    assert_eq!(ours.report_data.0, theirs.report_data);
    assert_eq!(ours.measurement.0, theirs.measurement);
    assert_eq!(ours.host_data.0, theirs.host_data);
    assert_eq!(ours.id_key_digest.0, theirs.id_key_digest);
    assert_eq!(ours.author_key_digest.0, theirs.author_key_digest);
    assert_eq!(ours.report_id, theirs.report_id);
    assert_eq!(ours.report_id_ma, theirs.report_id_ma);
    assert_eq!(ours.chip_id.0, theirs.chip_id);
    same_tcb(&ours.current_tcb, &theirs.current_tcb, "current_tcb");
    same_tcb(&ours.reported_tcb, &theirs.reported_tcb, "reported_tcb");
    same_tcb(&ours.committed_tcb, &theirs.committed_tcb, "committed_tcb");
    same_tcb(&ours.launch_tcb, &theirs.launch_tcb, "launch_tcb");
    assert_eq!(
        ours.cpuid,
        theirs
            .cpuid_fam_id
            .map(|f| (f, theirs.cpuid_mod_id.unwrap(), theirs.cpuid_step.unwrap()))
    );
    assert_eq!(ours.launch_mit_vector, theirs.launch_mit_vector);
    assert_eq!(ours.current_mit_vector, theirs.current_mit_vector);
    assert_eq!(
        (
            ours.current_version.major,
            ours.current_version.minor,
            ours.current_version.build
        ),
        (
            theirs.current.major,
            theirs.current.minor,
            theirs.current.build
        )
    );
}

#[test]
fn milan_v2_fields_agree() {
    compare(include_bytes!("vectors/snp/milan-v2-virtee/report.bin"));
}

#[test]
fn turin_v5_fields_agree() {
    compare(include_bytes!("vectors/snp/turin-v5-oak/report.bin"));
}

#[test]
fn genoa_v3_fields_agree() {
    compare(include_bytes!(
        "vectors/snp/genoa-v3-trustee-azure/report.bin"
    ));
}

#[test]
fn milan_vlek_v3_fields_agree() {
    compare(include_bytes!(
        "vectors/snp/milan-vlek-v3-trustee-aws/report.bin"
    ));
}
