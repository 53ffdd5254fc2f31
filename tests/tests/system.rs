//! The whole system as separate processes on loopback: `cloisterd`
//! launching a sim enclave and relaying to it, `cloister` querying through
//! the relay, and the attacks the design says must fail.

// A failed unwrap or index here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use cloister::client::{AttestedConnection, ClientError};
use cloister_attestation::policy::Violation;
use cloister_attestation::ratls::RaTlsError;
use cloister_attestation::AppraisalPolicy;
use cloister_policy::identity::DevIdp;
use cloister_tests::{alive, bin, mitm, runtime, scratch, text, Cluster};
use serde_json::Value;

#[test]
fn query_gets_an_answer_through_the_relay() {
    let cluster = Cluster::start("query").unwrap();
    let token = cluster.token_file("token.jwt", &cluster.claims()).unwrap();
    let out = cluster
        .query(
            &cluster.policy_path(),
            &token,
            &["--json", "What is the patient's latest potassium?"],
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["answer"].as_str().unwrap().contains("latest potassium?"));
    assert_eq!(v["attestation"]["tee"], "sim");
    assert_eq!(v["attestation"]["verdict"], "accept");
    assert_eq!(
        v["attestation"]["claims"]["measurement"],
        cluster.measurement.to_string()
    );
    assert_eq!(v["insecure"], true);
    assert_eq!(v["fresh"], true);

    // The human form says what was trusted, and that sim is insecure.
    let out = cluster
        .query(&cluster.policy_path(), &token, &["--stream", "hello"])
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("INSECURE"), "{stdout}");
    assert!(
        stdout.contains(&cluster.measurement.to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("You said: hello"), "{stdout}");
}

#[test]
fn policy_demanding_another_measurement_is_refused() {
    let cluster = Cluster::start("measurement").unwrap();
    let token = cluster.token_file("token.jwt", &cluster.claims()).unwrap();
    let other = cluster.dir.join("other.toml");
    std::fs::write(
        &other,
        format!(
            "allow_simulated = true\n[sim]\nmeasurements = [\"{}\"]\n",
            "ab".repeat(48)
        ),
    )
    .unwrap();
    let out = cluster.query(&other, &token, &["hello"]).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("REFUSED"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "MEASUREMENT {} is not an allowed value",
            cluster.measurement
        )),
        "{stderr}"
    );
}

#[test]
fn sim_evidence_is_refused_unless_the_policy_allows_it() {
    let cluster = Cluster::start("nosim").unwrap();
    let strict = cluster.dir.join("strict.toml");
    std::fs::write(
        &strict,
        format!("[sim]\nmeasurements = [\"{}\"]\n", cluster.measurement),
    )
    .unwrap();
    let token = cluster.token_file("token.jwt", &cluster.claims()).unwrap();
    let out = cluster.query(&strict, &token, &["hello"]).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("INSECURE (simulated TEE) evidence is not allowed by the policy"),
        "{stderr}"
    );

    let rt = runtime();
    let mut policy =
        AppraisalPolicy::from_toml(&std::fs::read_to_string(&strict).unwrap()).unwrap();
    let err = rt
        .block_on(AttestedConnection::connect(
            &cluster.endpoint,
            policy.clone(),
        ))
        .unwrap_err();
    match err {
        ClientError::Attestation(RaTlsError::Rejected { source, .. }) => assert!(
            matches!(source, cloister_attestation::Error::PolicyRejected(ref v) if v == &[Violation::SimulatedNotAllowed]),
            "{source}"
        ),
        other => panic!("expected a policy rejection, got {other}"),
    }
    policy.allow_simulated = true;
    assert!(rt
        .block_on(AttestedConnection::connect(&cluster.endpoint, policy))
        .is_ok());
}

#[test]
fn a_relay_with_its_own_certificate_is_refused() {
    let cluster = Cluster::start("substitute").unwrap();
    let (mut attacker, endpoint) = mitm(&cluster.endpoint, "substitute").unwrap();
    let err = runtime()
        .block_on(AttestedConnection::connect(&endpoint, cluster.policy()))
        .unwrap_err();
    let _ = attacker.kill();
    assert!(
        matches!(err, ClientError::Attestation(RaTlsError::NoEvidence)),
        "{err}"
    );
}

#[test]
fn evidence_replayed_under_another_key_is_refused() {
    let cluster = Cluster::start("replay").unwrap();
    let (mut attacker, endpoint) = mitm(&cluster.endpoint, "replay").unwrap();
    let err = runtime()
        .block_on(AttestedConnection::connect(&endpoint, cluster.policy()))
        .unwrap_err();
    let _ = attacker.kill();
    assert!(
        matches!(
            err,
            ClientError::Attestation(RaTlsError::KeyBindingMismatch { .. })
        ),
        "{err}"
    );
}

#[test]
fn fresh_evidence_must_answer_our_nonce_on_our_connection() {
    let cluster = Cluster::start("nonce").unwrap();
    let rt = runtime();
    let policy = cluster.policy();
    rt.block_on(async {
        let mut conn = AttestedConnection::connect(&cluster.endpoint, policy.clone())
            .await
            .unwrap();
        conn.check_freshness().await.unwrap();
        let now = time::OffsetDateTime::now_utc();

        // A document for an earlier nonce, offered as the answer to a new one.
        let stale = conn.attestation_document(&[1; 32]).await.unwrap();
        let err = stale
            .verify_fresh(conn.peer(), &[2; 32], &policy, now)
            .unwrap_err();
        assert!(matches!(err, RaTlsError::StaleNonce { .. }), "{err}");
        stale
            .verify_fresh(conn.peer(), &[1; 32], &policy, now)
            .unwrap();

        // Too short a nonce is refused by the enclave itself.
        let err = conn.attestation_document(&[1; 4]).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Api { status, .. } if status == 400),
            "{err}"
        );
    });
}

#[test]
fn bad_tokens_get_401_with_the_reason() {
    let cluster = Cluster::start("jwt").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut expired = cluster.claims();
    expired.exp = (now - time::Duration::minutes(10)).unix_timestamp();
    let stranger = DevIdp::generate(cluster.idp.issuer(), "other-key").unwrap();
    let cases = [
        (
            "expired",
            cluster.idp.mint(&expired).unwrap(),
            "token expired",
        ),
        (
            "stranger",
            stranger.mint(&cluster.claims()).unwrap(),
            "unknown key",
        ),
        ("garbage", "not.a.jwt".to_owned(), "malformed"),
    ];
    for (name, token, reason) in cases {
        let path = cluster.dir.join(format!("{name}.jwt"));
        std::fs::write(&path, token).unwrap();
        let out = cluster
            .query(&cluster.policy_path(), &path, &["hello"])
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{name}: {stderr}");
        assert!(stderr.contains("401"), "{name}: {stderr}");
        assert!(stderr.contains(reason), "{name}: {stderr}");
    }
    // No token at all, and the model list needs one too.
    runtime().block_on(async {
        let mut conn = AttestedConnection::connect(&cluster.endpoint, cluster.policy())
            .await
            .unwrap();
        for path in ["/v1/models", "/v1/chat/completions"] {
            let method = if path.ends_with("models") {
                hyper::Method::GET
            } else {
                hyper::Method::POST
            };
            let (status, body) = conn.request(method, path, None, None).await.unwrap();
            assert_eq!(status, 401, "{path}");
            assert!(
                text(&body).contains("no bearer token"),
                "{path}: {}",
                text(&body)
            );
        }
        let token = cluster.idp.mint(&cluster.claims()).unwrap();
        let (status, body) = conn
            .request(hyper::Method::GET, "/v1/models", Some(&token), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(text(&body).contains("cloister-test-echo"));
    });
}

#[test]
fn a_killed_enclave_is_restarted_with_a_new_key_and_clients_reattest() {
    let cluster = Cluster::start("restart").unwrap();
    let rt = runtime();
    let token = cluster.idp.mint(&cluster.claims()).unwrap();
    let first = rt
        .block_on(AttestedConnection::connect(
            &cluster.endpoint,
            cluster.policy(),
        ))
        .unwrap();
    let old_key = first.peer().tls_key_sha256();
    let pid = cluster.kill_enclave().unwrap();
    let status = cluster
        .wait_for(|s| {
            s["enclaves"][0]["state"] == "running"
                && s["enclaves"][0]["restarts"].as_u64() >= Some(1)
                && s["enclaves"][0]["pid"].as_i64() != Some(i64::from(pid))
        })
        .unwrap();
    assert!(!alive(pid));
    assert!(status["enclaves"][0]["last_exit"]
        .as_str()
        .unwrap()
        .contains("exited"));

    rt.block_on(async {
        // The old connection died with the old enclave.
        let mut first = first;
        assert!(first.chat(&token, "still there?", None).await.is_err());
        // A new one attests a new key, and works.
        let mut second = AttestedConnection::connect(&cluster.endpoint, cluster.policy())
            .await
            .unwrap();
        assert_ne!(second.peer().tls_key_sha256(), old_key);
        second.check_freshness().await.unwrap();
        let answer = second.chat(&token, "back again", None).await.unwrap();
        assert!(answer.text.contains("back again"));
    });
}

#[test]
fn the_relay_sees_only_ciphertext() {
    let cluster = Cluster::start("canary").unwrap();
    let canary = "CANARY-7f3a9c-potassium-5.9-mmol";
    let rt = runtime();
    let token = cluster.idp.mint(&cluster.claims()).unwrap();
    rt.block_on(async {
        let mut conn = AttestedConnection::connect(&cluster.endpoint, cluster.policy())
            .await
            .unwrap();
        let answer = conn.chat(&token, canary, None).await.unwrap();
        assert!(
            answer.text.contains(canary),
            "the canary must have crossed the relay"
        );
        let streamed = conn.chat_stream(&token, canary, |_| {}).await.unwrap();
        assert!(streamed.text.contains(canary));
    });
    // Let the relay flush what it copied.
    std::thread::sleep(Duration::from_millis(200));
    let seen = std::fs::read(&cluster.capture).unwrap();
    assert!(
        seen.len() > 2000,
        "the capture recorded the traffic ({} bytes)",
        seen.len()
    );
    // TLS application-data records, and nothing readable inside them.
    assert!(seen.windows(3).any(|w| w == [0x17, 0x03, 0x03]));
    for needle in [
        canary.as_bytes(),
        b"CANARY",
        b"potassium",
        b"Bearer",
        b"chat/completions",
    ] {
        assert!(
            !seen.windows(needle.len()).any(|w| w == needle),
            "the relay saw plaintext {:?}",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn status_reports_state_and_claimed_evidence() {
    let cluster = Cluster::start("status").unwrap();
    let out = std::process::Command::new(bin("cloisterd"))
        .args(["status", "--json", "--config"])
        .arg(cluster.dir.join("host.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["enclaves"][0];
    assert_eq!(e["name"], "e2e");
    assert_eq!(e["tee"], "sim");
    assert_eq!(e["state"], "running");
    assert_eq!(e["restarts"], 0);
    assert!(e["uptime_s"].is_u64());
    assert_eq!(
        e["evidence"]["measurement"],
        cluster.measurement.to_string()
    );
    assert_eq!(e["evidence"]["insecure"], true);
    assert_eq!(e["evidence"]["verified_by_host"], false);

    let human = std::process::Command::new(bin("cloisterd"))
        .args(["status", "--config"])
        .arg(cluster.dir.join("host.toml"))
        .output()
        .unwrap();
    let stdout = text(&human.stdout);
    assert!(
        stdout.contains("running") && stdout.contains("INSECURE"),
        "{stdout}"
    );

    let missing = std::process::Command::new(bin("cloisterd"))
        .args(["status", "--socket"])
        .arg(cluster.dir.join("nope.sock"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
}

#[test]
fn sigterm_stops_everything_cleanly() {
    let mut cluster = Cluster::start("sigterm").unwrap();
    let pid = cluster.status().unwrap()["enclaves"][0]["pid"]
        .as_i64()
        .unwrap() as i32;
    assert_eq!(cluster.shutdown().unwrap(), Some(0));
    assert!(!alive(pid), "the enclave outlived cloisterd");
    assert!(!cluster.dir.join("cloisterd.sock").exists());
}

#[test]
fn cloisterd_refuses_what_it_cannot_do_safely() {
    let dir = scratch("refuse");
    std::fs::create_dir_all(dir.join("image")).unwrap();
    std::fs::write(dir.join("image/enclave.toml"), "").unwrap();
    let cases = [
        ("tee = \"snp\"", "needs resources.memory_mib"),
        (
            "tee = \"tdx\"\nresources = { memory_mib = 1024 }",
            "has no image.json (build one with `cloister image build`)",
        ),
        (
            "tee = \"vm\"\nresources = { memory_mib = 1024 }\nvm = { accel = \"fast\" }",
            "unknown variant `fast`",
        ),
        (
            "tee = \"sim\"\npolicy_bundle = \"p.bundle\"",
            "policy bundles are not supported",
        ),
        (
            "tee = \"sim\"\nsealed = { model = \"missing.sealed\" }",
            "sealed bundle \"model\" (",
        ),
        ("tee = \"sim\"\nbogus = 1", "unknown field"),
        (
            "tee = \"vm\"\nresources = { memory_mib = 1024 }\nvm = { guest_cid = 2 }",
            "vm.guest_cid = 2 is reserved",
        ),
        (
            "tee = \"snp\"\nresources = { memory_mib = 1024 }\nvm = { relay_transport = \"vhost-user-vsock\" }",
            "which this release does only for tee = \"vm\"",
        ),
        (
            "tee = \"vm\"\nresources = { memory_mib = 1024 }\nvm = { relay_transport = \"vsock\" }",
            "unknown variant `vsock`",
        ),
        (
            "tee = \"vm\"\nresources = { memory_mib = 1024 }\n[[enclave]]\nname = \"y\"\ntee = \"vm\"\nimage = \"image\"\nlisten = \"127.0.0.1:2\"\nresources = { memory_mib = 1024 }",
            "vm.guest_cid = 3 is already another enclave's",
        ),
    ];
    for (extra, reason) in cases {
        let host = dir.join("host.toml");
        std::fs::write(
            &host,
            format!(
                "[[enclave]]\nname = \"x\"\nimage = \"image\"\nlisten = \"127.0.0.1:1\"\n{extra}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin("cloisterd"))
            .arg("--config")
            .arg(&host)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(reason), "{extra}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn measure_predicts_what_the_enclave_reports() {
    let cluster = Cluster::start("measure").unwrap();
    let out = cluster
        .cloister(&[
            "measure",
            "--tee",
            "sim",
            "--enclave-binary",
            bin("cloister-enclave").to_str().unwrap(),
            "--image",
            cluster.dir.join("image").to_str().unwrap(),
            "--json",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reported = cluster.status().unwrap()["enclaves"][0]["evidence"]["measurement"].clone();
    assert_eq!(v["measurement"], reported);
    assert_eq!(v["insecure"], true);
}

#[test]
fn the_demo_runs_end_to_end() {
    let dir = scratch("demo");
    let out = std::process::Command::new(bin("cloister"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for expected in [
        "INSECURE",
        "[sealed model: demo model sealed by the data owner, unsealed only inside the enclave] You said: Summarise the discharge plan",
        "refused before sending anything",
        "(committed in the evidence)",
        "refused (task_not_permitted): denied by policy module access at the input gate",
        "You said: Mr. [NAME], DOB [DATE], MRN [MRN]: typical HbA1c target?",
        "input  phi-guard    redact   phi_redacted",
        "RELEASED demo-model",
        "REFUSED  demo-model",
        "refused: key broker refused key \"demo-model\"",
        "Demo complete",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
