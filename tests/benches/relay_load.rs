//! Load through cloisterd's relay versus straight to the enclave: N
//! concurrent attested clients (default 64) asking short questions for a
//! fixed time (default 60 s) against one sim enclave with the echo engine.
//! Reports requests/s, p50/p99 latency, errors, and the resident memory of
//! cloisterd and the enclave sampled every second (flat is the goal).
//!
//! Not a test: nothing is asserted about time. Run it with
//! `scripts/bench-relay` (it builds the debug binaries the echo engine
//! needs). `LOAD_SECONDS` and `LOAD_CLIENTS` override the defaults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister::client::AttestedConnection;
use cloister_tests::Cluster;
use serde_json::Value;

struct Run {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    rss_kib: Vec<(String, u64, u64, u64)>,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn load(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    endpoint: &str,
    clients: u64,
    seconds: u64,
    watched: &[(String, u64)],
) -> Run {
    let token = cluster.idp.mint(&cluster.claims()).unwrap_or_default();
    let policy = cluster.policy();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<Vec<u64>>::new()));
    let sampler = {
        let (stop, samples, watched) = (stop.clone(), samples.clone(), watched.to_vec());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let row = watched
                    .iter()
                    .map(|(_, pid)| rss_kib(*pid).unwrap_or(0))
                    .collect();
                if let Ok(mut s) = samples.lock() {
                    s.push(row);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (latencies, errors, token, policy) = (
                latencies.clone(),
                errors.clone(),
                token.clone(),
                policy.clone(),
            );
            let endpoint = endpoint.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut connection = None;
                while Instant::now() < deadline {
                    if connection.is_none() {
                        match AttestedConnection::connect(&endpoint, policy.clone()).await {
                            Ok(c) => connection = Some(c),
                            Err(e) => {
                                eprintln!("connect: {e}");
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                    }
                    let Some(c) = connection.as_mut() else {
                        continue;
                    };
                    let t = Instant::now();
                    match c
                        .chat(&token, "vitals stable, continue current plan", Some(16))
                        .await
                    {
                        Ok(_) => mine.push(t.elapsed().as_micros() as u64),
                        Err(e) => {
                            eprintln!("request: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            connection = None;
                        }
                    }
                }
                if let Ok(mut all) = latencies.lock() {
                    all.extend(mine);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let rss_kib = watched
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let column: Vec<u64> = samples.iter().filter_map(|r| r.get(i).copied()).collect();
            (
                name.clone(),
                column.first().copied().unwrap_or(0),
                column.iter().copied().max().unwrap_or(0),
                column.last().copied().unwrap_or(0),
            )
        })
        .collect();
    let mut latencies_us = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies_us.sort_unstable();
    Run {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        rss_kib,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

fn report(name: &str, run: &Run) {
    let n = run.latencies_us.len();
    println!(
        "{name:<8} requests {n:>8}  errors {:>4}  {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        run.errors,
        n as f64 / run.elapsed.as_secs_f64(),
        percentile(&run.latencies_us, 0.50),
        percentile(&run.latencies_us, 0.99),
    );
    for (process, first, max, last) in &run.rss_kib {
        println!(
            "         RSS {process:<10} first {first:>7} KiB  max {max:>7} KiB  last {last:>7} KiB"
        );
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would run us too.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let seconds = env_or("LOAD_SECONDS", 60);
    let clients = env_or("LOAD_CLIENTS", 64);
    let cluster = Cluster::start("load")?;
    let status = cluster.status()?;
    let backend = status
        .pointer("/enclaves/0/backend")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let enclave_pid = status
        .pointer("/enclaves/0/pid")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let daemon_pid = status
        .pointer("/daemon/pid")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let watched = vec![
        ("cloisterd".to_owned(), daemon_pid),
        ("enclave".to_owned(), enclave_pid),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{clients} clients x {seconds} s each, echo engine, max_tokens 16, binaries from {}",
        cloister_tests::bin_dir().display()
    );
    let relay = load(
        &runtime,
        &cluster,
        &cluster.endpoint,
        clients,
        seconds,
        &watched,
    );
    report("relay", &relay);
    let direct = load(&runtime, &cluster, &backend, clients, seconds, &watched);
    report("direct", &direct);
    let overhead =
        |p: f64| percentile(&relay.latencies_us, p) - percentile(&direct.latencies_us, p);
    println!(
        "relay overhead: p50 {:+.2} ms, p99 {:+.2} ms, throughput {:+.1}%",
        overhead(0.5),
        overhead(0.99),
        100.0
            * (relay.latencies_us.len() as f64
                / relay.elapsed.as_secs_f64()
                / (direct.latencies_us.len() as f64 / direct.elapsed.as_secs_f64())
                - 1.0)
    );
    let restarts = cluster
        .status()?
        .pointer("/enclaves/0/restarts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    println!("enclave restarts during the run: {restarts}");
    Ok(())
}
