//! Scale figures (a benchmark, not a test): resident memory with 10,000 idle clusters, after
//! each was used once, and with 20 objects in each; then server-side apply throughput of a
//! small Deployment over HTTP with 64 concurrent requests.
//!
//! `cargo bench -p emco-sim --bench scale` (set `SIM_CLUSTERS`, `SIM_OBJECTS`,
//! `SIM_APPLY_SECONDS` to change the sizes). With `SIM_EMCO_BIN=path/to/emco` the same figures
//! are also taken from a real `emco sim` process: its RSS idle and after 20 ConfigMaps per
//! cluster created over HTTP (64 in flight), then the apply throughput against it.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use emco_sim::api::{ApiRequest, serve};
use emco_sim::{Sim, SimOptions};
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn report(label: &str, before: u64, clusters: usize) {
    let now = rss_kib();
    let per_cluster = (now.saturating_sub(before) * 1024) as f64 / clusters as f64;
    println!(
        "{label:<44} RSS {:>8.1} MiB   {:>8.0} bytes/cluster over baseline",
        now as f64 / 1024.0,
        per_cluster
    );
}

fn request(method: Method, path: String, content_type: &str, body: Vec<u8>) -> ApiRequest {
    ApiRequest {
        method,
        path,
        query: HashMap::new(),
        accept: "application/json".into(),
        content_type: content_type.into(),
        user_agent: "scale-bench/1".into(),
        body: Bytes::from(body),
        user: None,
    }
}

#[tokio::main]
async fn main() {
    let clusters = env_number("SIM_CLUSTERS", 10_000);
    let objects = env_number("SIM_OBJECTS", 20);
    let apply_seconds = env_number("SIM_APPLY_SECONDS", 5);
    let baseline = rss_kib();
    println!("baseline RSS {:.1} MiB", baseline as f64 / 1024.0);

    let sim = Sim::new(SimOptions::default());
    sim.add_clusters("edge-", clusters).unwrap();
    report(&format!("{clusters} idle clusters"), baseline, clusters);

    let started = Instant::now();
    for name in sim.cluster_names() {
        let cluster = sim.cluster(&name).unwrap();
        drop(cluster.lock());
    }
    report(
        &format!("{clusters} clusters used once (namespaces)"),
        baseline,
        clusters,
    );
    println!("  (touching took {:?})", started.elapsed());

    let started = Instant::now();
    let options = sim.options().clone();
    for name in sim.cluster_names() {
        let cluster = sim.cluster(&name).unwrap();
        for index in 0..objects {
            let body = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("config-{index}"), "labels": {"app": "bench"}},
                "data": {"key": "value", "index": index.to_string()}
            });
            let response = serve(
                &cluster,
                &options,
                &format!("/clusters/{name}"),
                request(
                    Method::POST,
                    "/api/v1/namespaces/default/configmaps".into(),
                    "application/json",
                    body.to_string().into_bytes(),
                ),
            );
            assert_eq!(response.status().as_u16(), 201);
        }
    }
    let elapsed = started.elapsed();
    report(
        &format!("{clusters} clusters with {objects} ConfigMaps each"),
        baseline,
        clusters,
    );
    println!(
        "  ({} creates in {:?}: {:.0}/s in-process)",
        clusters * objects,
        elapsed,
        (clusters * objects) as f64 / elapsed.as_secs_f64()
    );

    // Server-side apply over HTTP, 64 requests in flight, one client.
    let running = emco_sim::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    apply_throughput(&running.url, apply_seconds).await;
    report("after the apply run", baseline, clusters);
    running.stop().await.unwrap();
    drop(sim);

    if let Ok(binary) = std::env::var("SIM_EMCO_BIN") {
        measure_process(&binary, clusters, objects, apply_seconds).await;
    }
}

/// Server-side apply of a small Deployment against the simulator at `base`, from one client
/// with 64 requests in flight, spread over 8 clusters and 8 Deployments each (as a fleet
/// rollout would) for `seconds`.
async fn apply_throughput(base: &str, seconds: usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let mut workers = Vec::new();
    for worker in 0..64 {
        let client = client.clone();
        let done = done.clone();
        let failed = failed.clone();
        let cluster = format!("edge-{}", worker % 8 + 1);
        let url = format!(
            "{base}/clusters/{cluster}/apis/apps/v1/namespaces/default/deployments/app-{worker}?fieldManager=bench&force=true"
        );
        workers.push(tokio::spawn(async move {
            let mut replicas = 1;
            while Instant::now() < deadline {
                replicas = replicas % 5 + 1;
                let body = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": format!("app-{worker}"), "namespace": "default", "labels": {"app": "bench"}},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": "bench"}},
                        "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}}
                    }
                });
                let response = client
                    .patch(&url)
                    .header("content-type", "application/apply-patch+yaml")
                    .body(body.to_string())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "server-side apply, 64 concurrent: {} ok, {} failed in {elapsed:.1}s = {:.0} requests/s",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed) as f64 / elapsed
    );
}

/// `(VmRSS, VmHWM)` of a process, in KiB.
fn process_memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report_process(label: &str, pid: u32) {
    let (rss, peak) = process_memory_kib(pid);
    println!(
        "emco sim: {label:<34} RSS {:>8.1} MiB   (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

/// The same figures from a real `emco sim` process.
async fn measure_process(binary: &str, clusters: usize, objects: usize, apply_seconds: usize) {
    use tokio::io::AsyncBufReadExt;

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(["sim", "--clusters", &clusters.to_string()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(at) = line.find("http://") {
            base = Some(line[at..].trim().to_owned());
            break;
        }
    }
    let base = base.expect("emco sim printed its URL");
    println!(
        "emco sim: ready with {clusters} clusters in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    report_process(&format!("{clusters} idle clusters"), pid);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..64 {
        let client = client.clone();
        let base = base.clone();
        workers.push(tokio::spawn(async move {
            for cluster in (worker + 1..=clusters).step_by(64) {
                let url =
                    format!("{base}/clusters/edge-{cluster}/api/v1/namespaces/default/configmaps");
                for index in 0..objects {
                    let body = json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("config-{index}"), "labels": {"app": "bench"}},
                        "data": {"key": "value", "index": index.to_string()}
                    });
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 201);
                    let _ = response.bytes().await;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "emco sim: {} creates over HTTP in {elapsed:?}: {:.0}/s",
        clusters * objects,
        (clusters * objects) as f64 / elapsed.as_secs_f64()
    );
    report_process(&format!("{objects} ConfigMaps in each cluster"), pid);
    print!("emco sim: ");
    apply_throughput(&base, apply_seconds).await;
    report_process("after the apply run", pid);
    let _ = child.kill().await;
}
