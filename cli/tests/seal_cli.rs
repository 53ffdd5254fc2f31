//! `cloister seal` and `cloister unseal` as a data owner runs them: the real
//! binary, its exit codes, its JSON, and what it leaves on disk when a
//! bundle is refused (nothing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn cloister(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .output()
        .expect("run cloister")
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloister-seal-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn seal(d: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "seal".to_owned(),
        "--key".to_owned(),
        s(&d.join("k.key")),
        "--key-id".to_owned(),
        "notes".to_owned(),
        "--version".to_owned(),
        "7".to_owned(),
        "--kind".to_owned(),
        "data".to_owned(),
        "--chunk-log2".to_owned(),
        "12".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args.push(s(&d.join("plain")));
    args.push(s(&d.join("bundle")));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    cloister(&refs)
}

#[test]
fn seal_then_unseal_round_trips_with_a_json_summary() {
    let d = dir("ok");
    let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("plain"), &plain).unwrap();
    let out = seal(&d, &["--generate-key", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["header"]["key_id"], "notes");
    assert_eq!(v["header"]["kind"], "data");
    assert_eq!(v["header"]["bundle_version"], 7);
    assert_eq!(v["header"]["plaintext_len"], 100_000);
    assert_eq!(v["header"]["chunk_size"], 4096);
    assert_eq!(
        v["sealed_len"].as_u64().unwrap(),
        std::fs::metadata(d.join("bundle")).unwrap().len()
    );
    assert!(!d.join("bundle.partial").exists());

    // The key file is new, private, and never overwritten.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(d.join("k.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key file mode {mode:o}");
    let again = seal(&d, &["--generate-key"]);
    assert_eq!(again.status.code(), Some(2));

    let out = cloister(&[
        "unseal",
        "--key",
        &s(&d.join("k.key")),
        "--json",
        &s(&d.join("bundle")),
        &s(&d.join("out")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest_verified"], true);
    assert_eq!(std::fs::read(d.join("out")).unwrap(), plain);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn refused_bundles_exit_1_and_leave_no_plaintext() {
    let d = dir("refused");
    std::fs::write(d.join("plain"), vec![5u8; 20_000]).unwrap();
    assert_eq!(seal(&d, &["--generate-key"]).status.code(), Some(0));
    let bundle = std::fs::read(d.join("bundle")).unwrap();

    let unseal = |key: &Path, input: &Path| {
        cloister(&["unseal", "--key", &s(key), &s(input), &s(&d.join("out"))])
    };
    // A wrong key.
    std::fs::write(d.join("other.key"), "11".repeat(32)).unwrap();
    let out = unseal(&d.join("other.key"), &d.join("bundle"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"));
    // A flipped byte in the last chunk: earlier chunks decrypt, but nothing
    // is left behind.
    let mut tampered = bundle.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    std::fs::write(d.join("tampered"), &tampered).unwrap();
    let out = unseal(&d.join("k.key"), &d.join("tampered"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chunk 4 does not authenticate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Truncated.
    std::fs::write(d.join("short"), &bundle[..bundle.len() - 100]).unwrap();
    let out = unseal(&d.join("k.key"), &d.join("short"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    // Not a bundle at all.
    let out = unseal(&d.join("k.key"), &d.join("plain"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sealed bundle"));
    assert!(!d.join("out").exists() && !d.join("out.partial").exists());

    // Usage errors: a missing key file, a bad key ID, a bad chunk size.
    let out = unseal(&d.join("missing.key"), &d.join("bundle"));
    assert_eq!(out.status.code(), Some(2));
    let out = cloister(&[
        "seal",
        "--key",
        &s(&d.join("k.key")),
        "--key-id",
        "has space",
        "--version",
        "1",
        &s(&d.join("plain")),
        &s(&d.join("b2")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.join("b2").exists() && !d.join("b2.partial").exists());
    let out = seal(&d, &["--chunk-log2", "30"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(d);
}

/// Bounded memory, shown on the binary: a 256 MiB file seals and unseals
/// under a 160 MiB address-space limit (prlimit), so the whole file is
/// never held in memory.
#[test]
fn a_file_larger_than_the_memory_limit_seals_and_unseals() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("prlimit (util-linux) is not installed; skipping");
        return;
    }
    let d = dir("big");
    let len: u64 = 256 * 1024 * 1024;
    let file = std::fs::File::create(d.join("plain")).unwrap();
    file.set_len(len).unwrap(); // sparse: reads as zeros
    drop(file);
    let limited = |args: &[String]| {
        Command::new("prlimit")
            .arg(format!("--as={}", 160 * 1024 * 1024))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_cloister"))
            .args(args)
            .output()
            .unwrap()
    };
    let key = s(&d.join("k.key"));
    let out = limited(&[
        "seal".into(),
        "--generate-key".into(),
        "--key".into(),
        key.clone(),
        "--key-id".into(),
        "big".into(),
        "--version".into(),
        "1".into(),
        s(&d.join("plain")),
        s(&d.join("bundle")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(d.join("plain")).unwrap();
    let out = limited(&[
        "unseal".into(),
        "--key".into(),
        key,
        "--json".into(),
        s(&d.join("bundle")),
        s(&d.join("out")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(d.join("out")).unwrap().len(), len);
    let _ = std::fs::remove_dir_all(d);
}
