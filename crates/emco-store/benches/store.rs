//! Throughput and latency of the embedded redb store: `cargo bench -p emco-store --bench store`.
//!
//! Measures, on a fresh store in a temporary directory: sequential puts (each its own durable
//! transaction), puts from concurrent tasks (group commit), gets in random order, and listing
//! 10k keys under a prefix. `EMCO_BENCH_KEYS` overrides the key count (default 100 000). Run
//! without `--bench` (as `cargo test --all-targets` does) it only does a quick smoke run.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use emco_store::{Op, RedbStore, Store, Txn};

const LIST_KEYS: usize = 10_000;
const LIST_ROUNDS: usize = 20;
const WRITER_TASKS: usize = 16;

fn main() {
    // Test runners list a binary's tests first (nextest: `--list`); this one has none to list.
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let full = std::env::args().any(|arg| arg == "--bench");
    let keys = std::env::var("EMCO_BENCH_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if full { 100_000 } else { 1_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(keys, if full { LIST_KEYS } else { 1_000 }));
}

/// A resource-like key, spread over projects as the hub's would be.
fn key(i: usize) -> String {
    format!(
        "/resources/project/p{:03}/composite-app/app-{i:07}",
        i % 100
    )
}

/// A JSON-sized value.
fn value(i: usize) -> Vec<u8> {
    format!(r#"{{"metadata":{{"name":"app-{i:07}","description":"benchmark resource","userData1":"","userData2":""}},"spec":{{"version":"v1"}}}}"#).into_bytes()
}

async fn run(keys: usize, list_keys: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    println!(
        "redb store in {}, {keys} keys, values of {} bytes",
        dir.path().display(),
        value(0).len()
    );

    let mut latencies = Vec::with_capacity(keys);
    let started = Instant::now();
    for i in 0..keys {
        let began = Instant::now();
        store.put(&key(i), value(i)).await.unwrap();
        latencies.push(began.elapsed());
    }
    report(
        "put, one durable txn each, sequential",
        keys,
        started.elapsed(),
        &mut latencies,
    );

    let per_task = keys / WRITER_TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITER_TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let began = Instant::now();
                    store
                        .put(&key(task * per_task + i), value(i))
                        .await
                        .unwrap();
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(keys);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let label = format!("put (overwrite), {WRITER_TASKS} concurrent tasks");
    report(
        &label,
        per_task * WRITER_TASKS,
        started.elapsed(),
        &mut latencies,
    );

    let mut latencies = Vec::with_capacity(keys);
    let started = Instant::now();
    for i in shuffled(keys) {
        let began = Instant::now();
        let entry = store.get(&key(i)).await.unwrap();
        latencies.push(began.elapsed());
        assert!(entry.is_some());
    }
    report("get, random order", keys, started.elapsed(), &mut latencies);

    for chunk in (0..list_keys).collect::<Vec<_>>().chunks(1_000) {
        let ops = chunk
            .iter()
            .map(|&i| Op::Put {
                key: format!("/list/p/app-{i:07}"),
                value: value(i),
            })
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
    }
    let mut latencies = Vec::with_capacity(LIST_ROUNDS);
    for _ in 0..LIST_ROUNDS {
        let began = Instant::now();
        let entries = store.list("/list/p/").await.unwrap();
        latencies.push(began.elapsed());
        assert_eq!(entries.len(), list_keys);
    }
    report(
        &format!("list {list_keys} entries"),
        LIST_ROUNDS,
        sum(&latencies),
        &mut latencies,
    );
    let mut latencies = Vec::with_capacity(LIST_ROUNDS);
    for _ in 0..LIST_ROUNDS {
        let began = Instant::now();
        let listed = store.list_keys("/list/p/", None).await.unwrap();
        latencies.push(began.elapsed());
        assert_eq!(listed.len(), list_keys);
    }
    report(
        &format!("list_keys {list_keys} keys"),
        LIST_ROUNDS,
        sum(&latencies),
        &mut latencies,
    );
    let size = std::fs::metadata(dir.path().join("emco.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("database file: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
}

fn sum(latencies: &[Duration]) -> Duration {
    latencies.iter().sum()
}

/// `0..n` in a fixed pseudo-random order (a full-period linear congruential walk).
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(state >> 33).unwrap() % (i + 1);
        order.swap(i, j);
    }
    order
}

fn report(what: &str, operations: usize, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    println!(
        "{what:<45} {operations:>7} ops in {:>8.2?}: {:>9.0} ops/s, p50 {:>9.1?}, p99 {:>9.1?}",
        elapsed,
        operations as f64 / elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
    );
}
