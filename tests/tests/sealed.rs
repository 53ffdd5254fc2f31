//! Sealed bundles end to end, as separate processes on loopback: the data
//! owner seals a model with `cloister seal` and runs `cloister kbs serve`;
//! `cloisterd` hands a sim enclave only the ciphertext; the enclave attests
//! to the broker, unseals in memory and serves. Then each way a release
//! must fail: wrong measurement, sim not allowed, a replayed attestation, a
//! rolled-back bundle, tampered chunks, a revoked key, a policy bundle the
//! owner did not approve.

// A failed unwrap or index here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cloister::dev::standard_policy_bundle;
use cloister_attestation::ratls::{AttestationDocument, Bindings};
use cloister_attestation::sim::SimTee;
use cloister_attestation::types::{HostData, Measurement};
use cloister_tests::{bin, bin_dir, text, Broker, Cluster};
use cloister_vault::kbs::client::{post_raw, request_key, BrokerEndpoint};
use cloister_vault::kbs::protocol::{
    release_binding, AttestRequest, Challenge, ChallengeRequest, ATTEST_PATH, CHALLENGE_PATH,
};
use cloister_vault::wrap::RecipientKey;
use cloister_vault::{seal_to_vec, BundleHeader, ContentKind, DataKey, SealParams, VaultError};
use serde_json::Value;

const KEY_ID: &str = "model-key";

/// A canary no file or byte stream could contain by accident.
fn canary() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("CANARY-{:x}-{nanos:x}", std::process::id())
}

/// A "model": the canary line, then 3 MiB of noise (several chunks).
fn model_plaintext(canary: &str) -> Vec<u8> {
    let mut bytes = format!("{canary} sealed test model\n").into_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while bytes.len() < 3 * 1024 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes
}

fn release_policy(
    measurement: &str,
    allow_simulated: bool,
    min_version: u64,
    digests: &str,
) -> String {
    format!(
        "min_bundle_version = {min_version}\npolicy_digests = {digests}\n[appraisal]\nallow_simulated = {allow_simulated}\n[appraisal.sim]\nmeasurements = [\"{measurement}\"]\n"
    )
}

/// The whole system, with one sealed model of `version`, released under
/// the policy `policy(measurement)` returns.
struct Sealed {
    cluster: Cluster,
    broker: Broker,
    canary: String,
    bundle: PathBuf,
    key_file: PathBuf,
}

impl Sealed {
    fn start(tag: &str, version: u64, policy: impl Fn(&Measurement) -> String) -> Self {
        Self::start_with(tag, version, policy, |_| {})
    }

    /// As `start`, with `tamper` applied to the bundle on the host's disk.
    fn start_with(
        tag: &str,
        version: u64,
        policy: impl Fn(&Measurement) -> String,
        tamper: impl Fn(&Path),
    ) -> Self {
        let mut system = Self::prepare(tag, version, policy, tamper);
        system.broker.start().unwrap();
        system.launch();
        system
    }

    fn launch(&mut self) {
        let bundle = self.bundle.clone();
        self.cluster.launch(&[("model", &bundle)]).unwrap();
    }

    /// Everything but the broker and cloisterd running.
    fn prepare(
        tag: &str,
        version: u64,
        policy: impl Fn(&Measurement) -> String,
        tamper: impl Fn(&Path),
    ) -> Self {
        let broker = Broker::init(tag).unwrap();
        let sealed_config = format!(
            "{}\n[[sealed]]\nname = \"model\"\nkey_id = \"{KEY_ID}\"\nkind = \"model\"\n",
            broker.enclave_toml()
        );
        let cluster = Cluster::prepare(tag, &sealed_config).unwrap();

        // The data owner seals on their side; only the bundle goes to the host.
        let canary = canary();
        let plain = broker.dir.join("model.bin");
        std::fs::write(&plain, model_plaintext(&canary)).unwrap();
        let key_file = broker.dir.join("model.key");
        let bundle = cluster.dir.join("model.sealed");
        let out = cluster
            .cloister(&[
                "seal",
                "--generate-key",
                "--key",
                &key_file.display().to_string(),
                "--key-id",
                KEY_ID,
                "--version",
                &version.to_string(),
                "--kind",
                "model",
                "--json",
                &plain.display().to_string(),
                &bundle.display().to_string(),
            ])
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "seal: {}", text(&out.stderr));
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["header"]["bundle_version"], version);
        tamper(&bundle);

        broker
            .add_key(KEY_ID, &key_file, &policy(&cluster.measurement))
            .unwrap();
        Self {
            cluster,
            broker,
            canary,
            bundle,
            key_file,
        }
    }

    /// Waits for the broker to refuse with `code`; checks the enclave told
    /// cloisterd's log why and never came up.
    fn expect_refusal(&self, code: &str, reason_part: &str) -> Value {
        let entry = self
            .broker
            .wait_for_release(|e| e["outcome"] == "refused")
            .unwrap();
        assert_eq!(entry["code"], code, "{entry}");
        assert!(
            entry["reason"].as_str().unwrap().contains(reason_part),
            "{entry}"
        );
        let log = self.cluster.wait_for_log("key broker refused key").unwrap();
        assert!(log.contains(reason_part), "{log}");
        assert!(log.contains("serving nothing until it succeeds"), "{log}");
        self.assert_not_serving();
        entry
    }

    fn assert_not_serving(&self) {
        let status = self.cluster.status().unwrap();
        assert_ne!(status["enclaves"][0]["state"], "running", "{status}");
    }
}

fn strict(measurement: &Measurement) -> String {
    release_policy(&measurement.to_string(), true, 2, "\"any\"")
}

#[test]
fn a_sealed_model_is_released_unsealed_in_memory_and_served() {
    let system = Sealed::start("sealed-ok", 2, strict);
    let cluster = &system.cluster;
    cluster.wait_running().unwrap();

    // The key went to exactly this enclave, and the broker logged it.
    let released = system
        .broker
        .wait_for_release(|e| e["outcome"] == "released")
        .unwrap();
    assert_eq!(released["key_id"], KEY_ID);
    assert_eq!(released["tee"], "sim");
    assert_eq!(released["measurement"], cluster.measurement.to_string());
    assert_eq!(released["bundle_version"], 2);
    assert!(cluster
        .log()
        .contains("sealed bundle unsealed into enclave memory"));

    // The unsealed model answers (the echo engine quotes its first line),
    // through the attested channel only.
    let token = cluster.token_file("token.jwt", &cluster.claims()).unwrap();
    let out = cluster
        .query(
            &cluster.policy_path(),
            &token,
            &["--json", "which model are you?"],
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answer = v["answer"].as_str().unwrap();
    assert!(
        answer.contains(&format!(
            "[sealed model: {} sealed test model]",
            system.canary
        )),
        "{answer}"
    );

    // Nothing the host holds or relays contains the canary: the bundle,
    // its configuration, cloisterd's and the enclave's logs, the relayed bytes.
    let capture = std::fs::read(&cluster.capture).unwrap();
    assert!(!capture.is_empty());
    let mut checked = 0;
    for entry in walk(&cluster.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, system.canary.as_bytes()),
            "{} contains the sealed canary",
            entry.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} host files checked");

    // The data owner can check the bundle themselves.
    let plain = system.broker.dir.join("check.bin");
    let out = cluster
        .cloister(&[
            "unseal",
            "--key",
            &system.key_file.display().to_string(),
            &system.bundle.display().to_string(),
            &plain.display().to_string(),
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read(&plain)
        .unwrap()
        .starts_with(system.canary.as_bytes()));

    // `kbs list` and `kbs log` show what happened.
    let out = system.broker.kbs("list", &["--json"]).unwrap();
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys[0]["key_id"], KEY_ID);
    assert_eq!(keys[0]["min_bundle_version"], 2);
    let out = std::process::Command::new(bin("cloister"))
        .args(["kbs", "log", "--store"])
        .arg(system.broker.dir.join("store"))
        .output()
        .unwrap();
    let log = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("RELEASED") && log.contains("hash chain intact"),
        "{log}"
    );
}

#[test]
fn the_enclave_waits_for_the_broker_and_retries_with_backoff() {
    let mut system = Sealed::prepare("sealed-retry", 2, strict, |_| {});
    system.launch();
    // No broker yet: the enclave says why it cannot start, and keeps trying.
    let log = system
        .cluster
        .wait_for_log("cannot unseal; serving nothing until it succeeds")
        .unwrap();
    assert!(log.contains("cannot connect"), "{log}");
    system.assert_not_serving();
    system.broker.start().unwrap();
    system.cluster.wait_running().unwrap();
    let released = system
        .broker
        .wait_for_release(|e| e["outcome"] == "released")
        .unwrap();
    assert_eq!(
        released["measurement"],
        system.cluster.measurement.to_string()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_enclave_whose_measurement_is_not_in_the_release_policy_gets_nothing() {
    let system = Sealed::start("sealed-measurement", 2, |_| {
        release_policy(&"ab".repeat(48), true, 2, "\"any\"")
    });
    let entry = system.expect_refusal("attestation_rejected", "is not an allowed value");
    assert_eq!(entry["key_id"], KEY_ID);
}

#[test]
fn sim_evidence_gets_nothing_unless_the_release_policy_allows_it() {
    let system = Sealed::start("sealed-nosim", 2, |m| {
        release_policy(&m.to_string(), false, 2, "\"any\"")
    });
    system.expect_refusal("attestation_rejected", "INSECURE");
}

#[test]
fn a_rolled_back_bundle_is_refused() {
    // Version 1 on the host; the owner's policy demands at least 2.
    let system = Sealed::start("sealed-rollback", 1, strict);
    system.expect_refusal(
        "bundle_version_too_low",
        "below the release policy's minimum 2",
    );
}

#[test]
fn tampered_chunks_on_the_host_are_refused_after_release() {
    let system = Sealed::start_with("sealed-tamper", 2, strict, |bundle| {
        let mut bytes = std::fs::read(bundle).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(bundle, bytes).unwrap();
    });
    // The evidence is good, so the key is released; the bundle then fails
    // to authenticate inside the enclave, which serves nothing.
    system
        .broker
        .wait_for_release(|e| e["outcome"] == "released")
        .unwrap();
    let log = system
        .cluster
        .wait_for_log("does not authenticate: the bundle was modified")
        .unwrap();
    assert!(log.contains("chunk 1 does not authenticate"), "{log}");
    system.assert_not_serving();
}

#[test]
fn a_rolled_back_bundle_relabelled_as_newer_is_refused() {
    // The host edits the public header of a version-1 bundle to claim
    // version 2: the broker authenticates the header under the key and
    // refuses before anything is released.
    let system = Sealed::start_with("sealed-relabel", 1, strict, |bundle| {
        let mut bytes = std::fs::read(bundle).unwrap();
        bytes[16..24].copy_from_slice(&2u64.to_le_bytes());
        std::fs::write(bundle, bytes).unwrap();
    });
    system.expect_refusal(
        "bundle_header_invalid",
        "bundle header was modified after sealing",
    );
    assert!(system
        .broker
        .releases()
        .iter()
        .all(|e| e["outcome"] == "refused"));
}

#[test]
fn a_revoked_key_and_an_unapproved_policy_bundle_are_refused() {
    let system = Sealed::start("sealed-revoked", 2, |m| {
        release_policy(
            &m.to_string(),
            true,
            2,
            &format!("[\"{}\"]", "cd".repeat(32)),
        )
    });
    // The enclave runs (and commits to) the standard bundle, not the one
    // the release policy names.
    let standard = cloister_policy::Bundle::read(&standard_policy_bundle(&bin_dir())).unwrap();
    system.expect_refusal("policy_digest_not_allowed", &hex::encode(standard.digest()));

    let out = system.broker.kbs("revoke", &["--key-id", KEY_ID]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    system
        .broker
        .wait_for_release(|e| e["code"] == "revoked")
        .unwrap();
    system.assert_not_serving();
}

/// The protocol against the real broker process, from a client holding a
/// sim TEE: replaying an attestation, or answering a new challenge with old
/// evidence, is refused; a fresh exchange succeeds.
#[test]
fn replayed_attestations_are_refused() {
    let mut broker = Broker::init("sealed-replay").unwrap();
    let plain = broker.dir.join("data.bin");
    std::fs::write(&plain, b"reference data").unwrap();
    let key_file = broker.dir.join("data.key");
    let out = std::process::Command::new(bin("cloister"))
        .args(["seal", "--generate-key", "--key"])
        .arg(&key_file)
        .args(["--key-id", "data-key", "--version", "1", "--kind", "data"])
        .arg(&plain)
        .arg(broker.dir.join("data.sealed"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let measurement = Measurement([0x42; 48]);
    broker
        .add_key(
            "data-key",
            &key_file,
            &release_policy(&measurement.to_string(), true, 1, "\"any\""),
        )
        .unwrap();
    broker.start().unwrap();
    let endpoint = BrokerEndpoint {
        address: broker.address.clone(),
        spki_sha256: hex::decode(&broker.pin).unwrap().try_into().unwrap(),
    };
    let tee = SimTee::new(measurement, HostData([0; 32])).unwrap();
    let bindings = Bindings::default();
    let sealed = std::fs::read(broker.dir.join("data.sealed")).unwrap();
    let header = BundleHeader::parse(&sealed).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    runtime.block_on(async {
        // A genuine exchange releases the very key the owner sealed with.
        let released = request_key(&endpoint, &header, &tee, &bindings)
            .await
            .unwrap();
        let expected = std::fs::read_to_string(&key_file).unwrap();
        assert_eq!(released.key.to_hex(), expected.trim());

        // One attestation, answered twice.
        let challenge: Challenge = new_challenge(&endpoint).await;
        let recipient = RecipientKey::generate().unwrap();
        let request = attestation(
            &tee,
            &challenge,
            &header,
            recipient.public_key(),
            recipient.public_key(),
        );
        post_raw(&endpoint, ATTEST_PATH, &request).await.unwrap();
        let replay = post_raw(&endpoint, ATTEST_PATH, &request).await;
        assert!(
            matches!(&replay, Err(VaultError::Refused { code, .. }) if code == "unknown_session"),
            "{replay:?}"
        );

        // The same evidence under a fresh challenge binds the old nonce.
        let fresh: Challenge = new_challenge(&endpoint).await;
        let stale = AttestRequest {
            session: fresh.session,
            ..request.clone()
        };
        let refused = post_raw(&endpoint, ATTEST_PATH, &stale).await;
        assert!(
            matches!(&refused, Err(VaultError::Refused { code, message, .. })
                if code == "binding_mismatch" && message.contains("not made for this challenge")),
            "{refused:?}"
        );

        // Nor can an attacker swap in their own public key.
        let fresh: Challenge = new_challenge(&endpoint).await;
        let attacker = RecipientKey::generate().unwrap();
        let swapped = attestation(
            &tee,
            &fresh,
            &header,
            recipient.public_key(),
            attacker.public_key(),
        );
        let refused = post_raw(&endpoint, ATTEST_PATH, &swapped).await;
        assert!(
            matches!(&refused, Err(VaultError::Refused { code, .. }) if code == "binding_mismatch"),
            "{refused:?}"
        );

        // An unknown key, and a broker that is not the pinned one.
        let (other, _) = seal_to_vec(
            b"x",
            &DataKey::generate().unwrap(),
            &SealParams {
                key_id: "no-such-key".into(),
                kind: ContentKind::Data,
                bundle_version: 1,
                chunk_log2: 12,
            },
        )
        .unwrap();
        let unknown = request_key(&endpoint, &other, &tee, &bindings).await;
        assert!(
            matches!(&unknown, Err(VaultError::Refused { code, .. }) if code == "unknown_key"),
            "{unknown:?}"
        );
        let impostor = BrokerEndpoint {
            spki_sha256: [0; 32],
            ..endpoint.clone()
        };
        let refused = request_key(&impostor, &header, &tee, &bindings).await;
        assert!(
            matches!(&refused, Err(VaultError::Broker { detail, .. }) if detail.contains("is not the pinned")),
            "{refused:?}"
        );
    });

    // Every decision is in the broker's log, in order, chain intact.
    let codes: Vec<String> = broker
        .releases()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        [
            "released",
            "released",
            "unknown_session",
            "binding_mismatch",
            "binding_mismatch",
            "unknown_key"
        ]
    );
}

async fn new_challenge(endpoint: &BrokerEndpoint) -> Challenge {
    let request = ChallengeRequest {
        key_id: "data-key".into(),
    };
    serde_json::from_value(post_raw(endpoint, CHALLENGE_PATH, &request).await.unwrap()).unwrap()
}

/// An attestation answering `challenge` for the bundle with `header`, whose
/// evidence binds `bound` but which asks for the key to be wrapped to `sent`.
fn attestation(
    tee: &SimTee,
    challenge: &Challenge,
    header: &BundleHeader,
    bound: &[u8],
    sent: &[u8],
) -> AttestRequest {
    let bindings = Bindings::default();
    let report_data = release_binding(&challenge.nonce, "data-key", bound, &bindings);
    let collected =
        cloister_attestation::collect::EvidenceSource::collect(tee, &report_data).unwrap();
    AttestRequest {
        session: challenge.session.clone(),
        evidence: AttestationDocument::new(&collected, &bindings, &challenge.nonce),
        public_key: sent.to_vec(),
        bundle_header: header.as_bytes().to_vec(),
    }
}
