//! The enclave as a real VM: `cloister image build --tee vm` makes a
//! reproducible image (Debian's kernel, an initramfs whose /init is the
//! static enclave), `cloisterd` boots it under QEMU with software emulation,
//! the key broker releases a sealed model to the attested guest, a client
//! attests it through the relay and gets an answer from the model; then the
//! QEMU process is killed, cloisterd restarts the VM and the client
//! re-attests. Those two boots relay over QEMU's user-mode forward; a third
//! relays over virtio-vsock through a vhost-user device backend.
//!
//! Needs `qemu-system-x86_64`, the musl guest enclave,
//! `$CLOISTER_KERNEL_TREE` and `$CLOISTER_VHOST_USER_VSOCK` (scripts/test
//! provides them all). The VM carries
//! INSECURE sim evidence: no hardware TEE is involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use cloister_inference::synthetic::TinyLlama;
use cloister_tests::{text, Broker, Cluster};
use serde_json::Value;

/// A bound on one boot under software emulation, not a measurement.
const BOOT_PATIENCE: Duration = Duration::from_secs(600);

fn running(status: &Value) -> bool {
    status.pointer("/enclaves/0/state").and_then(Value::as_str) == Some("running")
}

fn answer(cluster: &Cluster, token: &std::path::Path) -> Value {
    let out = cluster
        .query(
            &cluster.policy_path(),
            token,
            &["--json", "--max-tokens", "8", "Hello from the relay"],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "query failed: {}\n{}\ncloisterd log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        cluster.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_vm_image_boots_attests_answers_and_comes_back_after_qemu_is_killed() {
    let mut broker = Broker::init("vm").unwrap();
    let extra = format!(
        "{}\n[candle]\nrepeat_penalty = 1.0\n\n[[sealed]]\nname = \"model\"\nkey_id = \"model-key\"\nkind = \"model\"\n",
        broker.enclave_toml_for_vm()
    );
    let mut cluster = Cluster::prepare_with_engine("vm", "candle", &extra).unwrap();
    let manifest = cluster.build_vm_image().unwrap();
    assert_eq!(manifest["tee"], "vm");
    assert_eq!(
        manifest["modules"],
        serde_json::json!([
            "virtio_ring",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio",
            "virtio_pci",
            "failover",
            "net_failover",
            "virtio_net",
            "vsock",
            "vmw_vsock_virtio_transport_common",
            "vmw_vsock_virtio_transport",
            "9pnet",
            "9pnet_virtio",
            "netfs",
            "fscache",
            "9p"
        ]),
        "{manifest:#}"
    );

    // Building again from the same inputs gives the same bytes.
    let first: Vec<Vec<u8>> = ["vmlinuz", "initrd.img", "image.json"]
        .iter()
        .map(|f| std::fs::read(cluster.dir.join("vm-image").join(f)).unwrap())
        .collect();
    let again = cluster.build_vm_image().unwrap();
    assert_eq!(again, manifest);
    for (name, bytes) in ["vmlinuz", "initrd.img", "image.json"].iter().zip(&first) {
        assert_eq!(
            &std::fs::read(cluster.dir.join("vm-image").join(name)).unwrap(),
            bytes,
            "{name} differs between two builds"
        );
    }

    // The same image is refused as an SNP guest: it was built for a plain
    // VM, and this host could not launch SNP anyway.
    let snp_host = cluster.dir.join("snp-host.toml");
    std::fs::write(
        &snp_host,
        "[[enclave]]\nname = \"x\"\ntee = \"snp\"\nimage = \"vm-image\"\nlisten = \"127.0.0.1:1\"\nresources = { memory_mib = 1024 }\n",
    )
    .unwrap();
    let refused = std::process::Command::new(cloister_tests::bin("cloisterd"))
        .arg("--config")
        .arg(&snp_host)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("was built for tee \"vm\""),
        "{}",
        text(&refused.stderr)
    );

    // Kernel vhost-vsock asked for on a host without it: refused, not
    // quietly relayed some other way.
    let vsock_host = cluster.dir.join("vsock-host.toml");
    std::fs::write(
        &vsock_host,
        "[[enclave]]\nname = \"x\"\ntee = \"vm\"\nimage = \"vm-image\"\nlisten = \"127.0.0.1:1\"\nresources = { memory_mib = 1024 }\nvm = { relay_transport = \"vhost-vsock\" }\n",
    )
    .unwrap();
    let refused = std::process::Command::new(cloister_tests::bin("cloisterd"))
        .arg("--config")
        .arg(&vsock_host)
        .output()
        .unwrap();
    if std::path::Path::new("/dev/vhost-vsock").exists() {
        eprintln!("this host has /dev/vhost-vsock: not checking the refusal");
    } else {
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
        assert!(
            text(&refused.stderr).contains("/dev/vhost-vsock cannot be opened"),
            "{}",
            text(&refused.stderr)
        );
    }

    // The broker releases the model under the fragment the build wrote.
    let fragment = std::fs::read_to_string(cluster.dir.join("release-fragment.toml")).unwrap();
    let model = broker
        .seal_with_policy(
            &cluster,
            "model",
            "model",
            &TinyLlama::default().gguf().unwrap(),
            &format!("min_bundle_version = 1\n{fragment}"),
        )
        .unwrap();
    broker.start().unwrap();
    cluster.launch_vm(&[("model", model.as_path())]).unwrap();
    let status = cluster.wait_for_within(BOOT_PATIENCE, running).unwrap();
    let enclave = &status["enclaves"][0];
    assert_eq!(enclave["tee"], "vm");
    eprintln!(
        "boot to ready (QEMU start to first answered health check, TCG): {} ms",
        enclave["ready_after_ms"]
    );
    let log = cluster.log();
    assert!(
        log.contains("guest ready: network up, host shares mounted"),
        "{log}"
    );
    assert!(log.contains("model loaded into enclave memory"), "{log}");

    // Attested through the relay, answered by the model in the VM.
    let claims = cluster.claims();
    let token = cluster.token_file("token", &claims).unwrap();
    let out = answer(&cluster, &token);
    assert_eq!(out["model"], "tiny-random-llama", "{out:#}");
    let response = &out["response"];
    assert!(response["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(response["cloister"]["enclave"]["tee"], "sim");
    assert_eq!(response["cloister"]["enclave"]["insecure"], true);
    // The audit record reached the host's directory through the 9p share,
    // and the start record's evidence appraises against the image's policy.
    let record = response["cloister"]["audit"]["record"].as_u64().unwrap();
    let verified = verify_audit(&cluster);
    assert!(
        verified["records"].as_u64().unwrap() > record,
        "{verified:#}"
    );

    // Kill QEMU as a crash would: cloisterd restarts the VM, clients re-attest.
    let restarts = |s: &Value| s.pointer("/enclaves/0/restarts").and_then(Value::as_u64);
    let before = restarts(&cluster.status().unwrap());
    let killed = i64::from(cluster.kill_enclave().unwrap());
    let restarted = cluster
        .wait_for_within(BOOT_PATIENCE, |s| {
            restarts(s) > before
                && running(s)
                && s.pointer("/enclaves/0/pid").and_then(Value::as_i64) != Some(killed)
        })
        .unwrap();
    assert!(
        restarted["enclaves"][0]["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal: 9"),
        "{restarted:#}"
    );
    eprintln!(
        "boot to ready after the restart: {} ms",
        restarted["enclaves"][0]["ready_after_ms"]
    );
    let again = answer(&cluster, &token);
    assert_eq!(again["model"], "tiny-random-llama");
    // The log was taken over by the new VM: a second epoch, still valid.
    let verified = verify_audit(&cluster);
    assert_eq!(
        verified["epochs"].as_array().unwrap().len(),
        2,
        "{verified:#}"
    );

    // The same image with the relay over virtio-vsock (a vhost-user device
    // backend beside QEMU): no port is forwarded into the guest, so the
    // answer can only have come over vsock.
    cluster.shutdown().unwrap();
    cluster
        .launch_vm_over_vsock(&[("model", model.as_path())])
        .unwrap();
    let status = cluster.wait_for_within(BOOT_PATIENCE, running).unwrap();
    let backend = status["enclaves"][0]["backend"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(backend.starts_with("vsock-unix:"), "{status:#}");
    eprintln!(
        "boot to ready over vsock: {} ms",
        status["enclaves"][0]["ready_after_ms"]
    );
    let log = cluster.log();
    assert!(log.contains("serving on vsock"), "{log}");
    assert!(
        log.contains("relaying over virtio-vsock (vhost-user backend)"),
        "{log}"
    );
    let over_vsock = answer(&cluster, &token);
    assert_eq!(over_vsock["model"], "tiny-random-llama", "{over_vsock:#}");
    let verified = verify_audit(&cluster);
    assert_eq!(
        verified["epochs"].as_array().unwrap().len(),
        3,
        "{verified:#}"
    );
}

fn verify_audit(cluster: &Cluster) -> Value {
    let out = cluster
        .cloister(&[
            "audit",
            "verify",
            "--json",
            "--log",
            &cluster.audit_dir().display().to_string(),
            "--policy",
            &cluster.policy_path().display().to_string(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["finding"].is_null(), "{report:#}");
    report
}
