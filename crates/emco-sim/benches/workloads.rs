//! Workload readiness at scale (a benchmark, not a test): N clusters with one Deployment each,
//! all created at once; how long until every one reports available, the resident memory, and
//! the CPU the timer queue costs while the never-ready fault holds them all unready.
//!
//! `cargo bench -p emco-sim --bench workloads` (`SIM_CLUSTERS`, default 10,000;
//! `SIM_READY_AFTER_MS`, default 1000).

#![allow(clippy::unwrap_used)] // Benchmarks may unwrap: a panic is the failure report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use emco_sim::api::{ApiRequest, serve};
use emco_sim::faults::FaultPlan;
use emco_sim::{Sim, SimOptions};
use serde_json::{Value, json};

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of this process, in clock ticks (1/100 s).
fn cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn request(method: Method, path: &str, content_type: &str, body: &Value) -> ApiRequest {
    ApiRequest {
        method,
        path: path.to_owned(),
        query: HashMap::new(),
        accept: "application/json".into(),
        content_type: content_type.into(),
        user_agent: "workloads-bench/1".into(),
        body: Bytes::from(body.to_string()),
        user: None,
    }
}

/// How many clusters' Deployment `web` reports `wanted` available replicas at generation `generation`.
fn ready_count(sim: &Sim, wanted: i64, generation: i64) -> usize {
    let deployments = emco_sim::catalog::builtin("apps", "v1", "deployments").unwrap();
    sim.cluster_names()
        .iter()
        .filter(|name| {
            let cluster = sim.cluster(name).unwrap();
            let state = cluster.lock();
            state
                .get(&deployments, "default", "web")
                .and_then(|stored| serde_json::from_slice::<Value>(&stored.json).ok())
                .is_some_and(|object| {
                    object["status"]["observedGeneration"] == generation
                        && object["status"]["availableReplicas"].as_i64().unwrap_or(0) == wanted
                })
        })
        .count()
}

#[tokio::main]
async fn main() {
    let clusters: usize = std::env::var("SIM_CLUSTERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000);
    let ready_after = Duration::from_millis(
        std::env::var("SIM_READY_AFTER_MS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1000),
    );
    let sim = Sim::new(SimOptions {
        ready_after,
        ..SimOptions::default()
    });
    sim.add_clusters("edge-", clusters).unwrap();
    let baseline = proc_status("VmRSS:");
    println!("{clusters} idle clusters: RSS {:.1} MiB", mib(baseline));

    let options = sim.options().clone();
    let started = Instant::now();
    for name in sim.cluster_names() {
        let cluster = sim.cluster(&name).unwrap();
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
            }
        });
        let response = serve(
            &cluster,
            &options,
            &format!("/clusters/{name}"),
            request(
                Method::POST,
                "/apis/apps/v1/namespaces/default/deployments",
                "application/json",
                &body,
            ),
        );
        assert_eq!(response.status().as_u16(), 201);
    }
    let created = started.elapsed();
    println!(
        "created {clusters} Deployments in {created:?}; RSS {:.1} MiB",
        mib(proc_status("VmRSS:"))
    );
    loop {
        let ready = ready_count(&sim, 1, 1);
        if ready == clusters {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_ready = started.elapsed();
    println!(
        "all {clusters} available {:?} after the first create ({:?} after the last; ready-after {ready_after:?}); RSS {:.1} MiB, peak {:.1} MiB",
        all_ready,
        all_ready.saturating_sub(created),
        mib(proc_status("VmRSS:")),
        mib(proc_status("VmHWM:"))
    );

    // Hold every cluster unready, scale every Deployment, and measure the idle cost of the
    // parked entries being re-checked.
    for name in sim.cluster_names() {
        sim.cluster(&name).unwrap().faults.set(Some(FaultPlan {
            never_ready: true,
            ..FaultPlan::default()
        }));
        let cluster = sim.cluster(&name).unwrap();
        let response = serve(
            &cluster,
            &options,
            &format!("/clusters/{name}"),
            request(
                Method::PATCH,
                "/apis/apps/v1/namespaces/default/deployments/web",
                "application/merge-patch+json",
                &json!({"spec": {"replicas": 2}}),
            ),
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    tokio::time::sleep(ready_after + Duration::from_millis(500)).await;
    let ticks = cpu_ticks();
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let used = cpu_ticks() - ticks;
    println!(
        "{clusters} Deployments held unready: {:.1}% of one core re-checking over {window:?}",
        used as f64 / window.as_secs_f64()
    );
    let started = Instant::now();
    for name in sim.cluster_names() {
        sim.cluster(&name).unwrap().faults.set(None);
    }
    while ready_count(&sim, 2, 2) < clusters {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "fault lifted: all available again after {:?}",
        started.elapsed()
    );
}
