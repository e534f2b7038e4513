//! Figures for the report, not pass/fail benchmarks (ignored by default; run with
//! `cargo test -p emco-rsync --release --test e2e -- scale:: --ignored --nocapture`):
//! - the synchronizer instantiating 5 apps × 10 objects (the deploy bench's kinds) on N simulated clusters against a plain
//!   client applying the same objects with the same concurrency (`EMCO_SCALE_CLUSTERS`, default
//!   200);
//! - the memory of one `KubeCluster` client, idle and after use.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use emco_core::status::AppContextStatus;
use emco_rsync::engine::deployment_id;
use emco_rsync::{ClusterApi, ClusterOptions, KubeCluster, StoreConnector, SyncConfig};
use emco_store::{RedbStore, Store};
use futures::StreamExt;
use serde_json::{Value, json};

/// Resident and peak memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) in a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> f64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds this process used so far.
fn cpu() -> f64 {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU seconds the simulator's threads (named `sim-…`) used so far.
fn sim_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(SIM_THREADS))
        })
        .map(|task| {
            stat_cpu(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default())
        })
        .sum()
}

/// CPU seconds used so far outside the simulator: the client side (the plain client or the
/// synchronizer with its store).
fn client_cpu() -> f64 {
    cpu() - sim_cpu()
}

const SIM_THREADS: &str = "sim-";

/// The simulator on a runtime of its own, whose threads are named `sim-…`, so that the CPU of the
/// client side can be told from the simulator's. Shut the runtime down with
/// `shutdown_background` (it may not be dropped in async code).
fn start_sim_apart(ready_after: Duration) -> (tokio::runtime::Runtime, emco_sim::RunningSim) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{SIM_THREADS}worker"))
        .enable_all()
        .build()
        .unwrap();
    let running = std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(start_sim(0, ready_after)))
            .join()
            .unwrap()
    });
    (runtime, running)
}

const APPS: usize = 5;
const CONCURRENCY: usize = 64;

/// Ten objects of app `app`, as the end-to-end deploy bench's charts render them, in Helm's
/// install order: a ServiceAccount, a Secret, four ConfigMaps, a Role, a RoleBinding, a Service
/// and a Deployment (seven kinds in three group-versions).
fn app_objects(app: usize) -> Vec<Value> {
    let name = |suffix: &str| format!("app{app}-{suffix}");
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name("sa"), "namespace": "default"}}),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name("secret"), "namespace": "default"},
               "stringData": {"password": "hunter2"}}),
    ];
    objects.extend((0..4).map(|index| config_map("default", &name(&format!("cm{index}")))));
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name("role"), "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }));
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name("binding"), "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name("role")},
        "subjects": [{"kind": "ServiceAccount", "name": name("sa"), "namespace": "default"}],
    }));
    objects.push(service("default", &name("web")));
    objects.push(deployment("default", &name("web")));
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly"]
async fn synchronizer_against_a_plain_client() {
    let clusters: usize = std::env::var("EMCO_SCALE_CLUSTERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let (sim_runtime, running) = start_sim_apart(Duration::from_secs(1));
    running.sim.add_clusters("edge-", clusters).unwrap();
    running.sim.add_clusters("base-", clusters).unwrap();
    let (rss_start, _) = memory();

    // The plain client: one KubeCluster per cluster, objects applied one after the other per
    // cluster, CONCURRENCY clusters at a time.
    let labelled: Arc<Vec<Value>> = Arc::new(
        (0..APPS)
            .flat_map(|app| {
                let label = deployment_id("ctxscale", &format!("app{app}"));
                app_objects(app).into_iter().map(move |mut object| {
                    object["metadata"]["labels"] = json!({"emco/deployment-id": label});
                    object
                })
            })
            .collect(),
    );
    let cpu_start = client_cpu();
    let started = Instant::now();
    futures::stream::iter(1..=clusters)
        .map(|index| {
            let kubeconfig = running.sim.kubeconfig(&format!("base-{index}"));
            let objects = labelled.clone();
            async move {
                let client = KubeCluster::from_kubeconfig_with(
                    &format!("base-{index}"),
                    kubeconfig.as_bytes(),
                    ClusterOptions::default(),
                )
                .await
                .unwrap();
                for object in objects.iter() {
                    client.apply(object).await.unwrap();
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let plain = started.elapsed();
    let cpu_plain = client_cpu() - cpu_start;
    let (rss_plain, _) = memory();

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    for index in 1..=clusters {
        register(store.as_ref(), &running, index).await;
    }
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut config = SyncConfig {
        max_concurrent_clusters: CONCURRENCY,
        ..SyncConfig::default()
    };
    if let Some(ms) = env("EMCO_SCALE_POLL_MS") {
        config.ready_poll_initial = Duration::from_millis(ms);
    }
    let mut connector = StoreConnector::new(store.clone(), ClusterOptions::default());
    if let Some(capacity) = env("EMCO_SCALE_CACHE") {
        connector = connector.with_capacity(capacity as usize);
    }
    let sync = emco_rsync::Synchronizer::new(store.clone(), Arc::new(connector), config);
    let members: Vec<usize> = (1..=clusters).collect();
    let apps = (0..APPS)
        .map(|number| {
            app(
                &format!("app{number}"),
                &members,
                resources(app_objects(number)),
            )
        })
        .collect();
    let context = context("ctxscale", apps);
    let hub = HubView {
        store: store.clone(),
    };
    hub.store_context(&context).await;
    let cpu_start = client_cpu();
    let started = Instant::now();
    hub.run(&sync, &context.id).await;
    wait_run(&sync, |run| run.status == AppContextStatus::Instantiated).await;
    let engine = started.elapsed();
    let cpu_engine = client_cpu() - cpu_start;
    let (rss_engine, _) = memory();
    wait_run(&sync, |run| run.all_ready).await;
    let until_ready = started.elapsed();
    let (rss_ready, peak) = memory();
    let queried = Instant::now();
    let report = sync.context_status("ctxscale").await.unwrap().unwrap();
    let query = queried.elapsed();
    const QUERIES: u32 = 10;
    let queried = Instant::now();
    for _ in 0..QUERIES {
        sync.context_status("ctxscale").await.unwrap().unwrap();
    }
    let query_again = queried.elapsed() / QUERIES;
    assert_eq!(report.apps.len(), APPS);
    assert!(report.apps.iter().all(|app| app.clusters.len() == clusters));
    let applies = clusters * APPS * 10;
    eprintln!(
        "{clusters} clusters x {APPS} apps x 10 objects ({applies} applies), concurrency {CONCURRENCY}:\n  \
         plain client: {plain:?} ({:.0} applies/s, {cpu_plain:.1} s CPU outside the sim)\n  \
         synchronizer: {engine:?} to Instantiated ({:.0} applies/s, {cpu_engine:.1} s CPU outside the sim), {until_ready:?} to all ready; ratio {:.2}, CPU ratio {:.2}\n  \
         RSS MiB (sim in the same process): start {rss_start:.0}, after plain {rss_plain:.0}, \
         after sync {rss_engine:.0}, all ready {rss_ready:.0}, peak {peak:.0}\n  \
         one full context_status: {query:?} first, {query_again:?} each of {QUERIES} more",
        applies as f64 / plain.as_secs_f64(),
        applies as f64 / engine.as_secs_f64(),
        engine.as_secs_f64() / plain.as_secs_f64(),
        cpu_engine / cpu_plain,
    );
    drop(running);
    sim_runtime.shutdown_background();
}

/// Polls the cheap run status (the full report of 1,000 clusters is not free).
async fn wait_run(sync: &emco_rsync::Synchronizer, done: impl Fn(&emco_rsync::RunStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(run) = sync.run_status("ctxscale").await.unwrap()
            && done(&run)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Just enough of a hub to store a context and record the operation.
struct HubView {
    store: Arc<dyn Store>,
}

impl HubView {
    async fn store_context(&self, context: &emco_core::appcontext::AppContext) {
        let pairs = emco_core::appcontext::encode(context).unwrap();
        for (key, value) in pairs {
            self.store.put(&key, value).await.unwrap();
        }
    }

    async fn run(&self, sync: &Arc<emco_rsync::Synchronizer>, id: &str) {
        let ops = emco_rsync::Synchronizer::instantiate_ops(id);
        self.store
            .txn(emco_store::Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
        sync.kick(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly"]
async fn kube_cluster_footprint() {
    const CLIENTS: usize = 1000;
    let running = start_sim(CLIENTS, Duration::from_millis(0)).await;
    let kubeconfigs: Vec<String> = (1..=CLIENTS)
        .map(|index| running.sim.kubeconfig(&format!("edge-{index}")))
        .collect();
    let (before, _) = memory();
    let created = Instant::now();
    let mut clients = Vec::with_capacity(CLIENTS);
    for (index, kubeconfig) in kubeconfigs.iter().enumerate() {
        clients.push(
            KubeCluster::from_kubeconfig_with(
                &format!("edge-{}", index + 1),
                kubeconfig.as_bytes(),
                client_options(),
            )
            .await
            .unwrap(),
        );
    }
    let creation = created.elapsed() / CLIENTS as u32;
    let (idle, _) = memory();
    let object = config_map("default", "probe");
    futures::stream::iter(clients.iter())
        .map(|client| client.apply(&object))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let (used, _) = memory();
    drop(clients);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (dropped, _) = memory();
    let per = |mib: f64| mib * 1024.0 / CLIENTS as f64;
    eprintln!(
        "{CLIENTS} KubeClusters: {creation:?} to create each, idle {:.1} KiB each, after one apply each {:.1} KiB each \
         (discovery cache + pooled connection; includes the sim's side of the connection and \
         its new objects), RSS MiB before {before:.0} idle {idle:.0} used {used:.0} dropped {dropped:.0}",
        per(idle - before),
        per(used - before),
    );
}
