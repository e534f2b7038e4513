//! Git target benchmark (issue #9): `cargo bench -p emco-rsync --bench gitops`.
//!
//! N Flux clusters share one repository, served over HTTP by an in-process `emco sim` (the real
//! `git http-backend`, token checked). One app of K objects (a Deployment and K-1 ConfigMaps)
//! goes to every cluster:
//!
//! 1. **Floor.** One clone, every file of every cluster written, one commit, one push: the least
//!    any writer of that content can do.
//! 2. **Synchronizer.** A redb store holding the N cluster documents and their sync objects, as
//!    the REST API stores them, and the synchronizer writing through its Git target: instantiate
//!    is timed until every cluster's objects are committed and pushed (the report's `applied`
//!    time of every cluster), with the commits and pushes counted on the server (one commit per
//!    cluster is the design: a readable history per cluster). Then an update changing one
//!    ConfigMap everywhere (N files rewritten) and a terminate (every file removed), each timed
//!    the same way.
//!
//! Knobs: `GITOPS_BENCH_CLUSTERS` (default 200), `GITOPS_BENCH_OBJECTS` (K, default 10),
//! `GITOPS_BENCH_CONCURRENCY` (clusters worked on at once, default 64). Without `--bench` (as
//! `cargo test --all-targets` runs it) it does nothing.

#![allow(clippy::unwrap_used, dead_code)] // A benchmark: a panic is the failure report.

#[path = "../tests/e2e/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config_map, deployment, resources};
use emco_core::appcontext::{AppContext, AppContextBuilder, AppInput, ClusterId, DigRef};
use emco_rsync::{ClusterOptions, StoreConnector, SyncConfig, Synchronizer};
use emco_sim::{Sim, SimOptions};
use emco_store::{RedbStore, Store};
use serde_json::{Value, json};

const USER: &str = "emco";
const TOKEN: &str = "bench-token";
const PROVIDER: &str = "prov";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let basic = base64_basic();
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            &format!("http.extraHeader=Authorization: Basic {basic}"),
        ])
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn base64_basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"))
}

fn cluster_name(index: usize) -> String {
    format!("flux-{index:05}")
}

fn objects(objects: usize, value: &str) -> Vec<Value> {
    let mut list = vec![deployment("default", "web")];
    for n in 1..objects {
        let mut config = config_map("default", &format!("web-config-{n}"));
        if n == 1 {
            config["data"] = json!({"greeting": value});
        }
        list.push(config);
    }
    list
}

fn context(id: &str, clusters: usize, count: usize, value: &str) -> AppContext {
    let input = AppInput {
        name: "web".into(),
        dependencies: vec![],
        clusters: (0..clusters)
            .map(|index| (ClusterId::new(PROVIDER, &cluster_name(index)), None))
            .collect(),
        objects: resources(objects(count, value)),
    };
    AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id(id)
    .app(input)
    .build()
    .unwrap()
}

async fn put_doc(store: &dyn Store, key: &str, body: Value) {
    store
        .put(
            key,
            serde_json::to_vec(&json!({"data": body, "refs": []})).unwrap(),
        )
        .await
        .unwrap();
}

/// Waits until every cluster of `id` has its objects committed (`applied`); returns the time.
async fn wait_applied(sync: &Synchronizer, id: &str, started: Instant) -> Duration {
    let deadline = started + Duration::from_secs(1800);
    loop {
        if let Some(report) = sync.context_status(id).await.unwrap() {
            let clusters = &report.apps[0].clusters;
            if clusters.iter().all(|cluster| cluster.applied_ms.is_some()) {
                return started.elapsed();
            }
        }
        assert!(Instant::now() < deadline, "not applied in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_terminated(sync: &Synchronizer, id: &str, started: Instant) -> Duration {
    let deadline = started + Duration::from_secs(1800);
    loop {
        if let Some(report) = sync.context_status(id).await.unwrap()
            && report.status == emco_core::status::AppContextStatus::Terminated
        {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "not terminated in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Commits on the branch and pushes received (the bare repository's reflog).
fn server_counts(bare: &Path) -> (usize, usize) {
    let commits = git(bare, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .unwrap_or(0);
    let pushes = git(bare, &["reflog", "show", "main"]).lines().count();
    (commits, pushes)
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let clusters = knob("GITOPS_BENCH_CLUSTERS", 200);
    let count = knob("GITOPS_BENCH_OBJECTS", 10).max(2);
    let concurrency = knob("GITOPS_BENCH_CONCURRENCY", 64);
    let scratch = tempfile::tempdir().unwrap();
    let git_root = scratch.path().join("git-root");
    let sim = Sim::new(SimOptions {
        git_root: Some(git_root.clone()),
        git_users: vec![format!("{USER}:{TOKEN}").parse().unwrap()],
        ..Default::default()
    });
    let running = emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let mut urls = Vec::new();
    for name in ["floor", "fleet"] {
        let repo: Value = client
            .post(format!("{}/sim/git/repos/{name}", running.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        urls.push(repo["url"].as_str().unwrap().to_owned());
    }
    println!(
        "# Git target: {clusters} Flux clusters in one repository, {count} objects each, \
         {concurrency} clusters at a time\n"
    );

    // 1. Floor: everything in one commit and one push.
    let floor_clone = scratch.path().join("floor-clone");
    let started = Instant::now();
    git(
        scratch.path(),
        &["clone", "--quiet", &urls[0], floor_clone.to_str().unwrap()],
    );
    let mut files = 0;
    for index in 0..clusters {
        let dir = floor_clone.join(format!(
            "clusters/{PROVIDER}+{}/context/00000000000000f1/app/web",
            cluster_name(index)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for object in objects(count, "hello") {
            let name = format!(
                "{}+{}.yaml",
                object["metadata"]["name"].as_str().unwrap(),
                object["kind"].as_str().unwrap()
            );
            std::fs::write(dir.join(name), serde_json::to_vec_pretty(&object).unwrap()).unwrap();
            files += 1;
        }
    }
    git(&floor_clone, &["checkout", "--quiet", "-b", "main"]);
    git(&floor_clone, &["add", "--all"]);
    git(&floor_clone, &["commit", "--quiet", "-m", "everything"]);
    git(&floor_clone, &["push", "--quiet", "origin", "main"]);
    let floor = started.elapsed();
    println!(
        "floor: {files} files, 1 commit, 1 push in {:.2} s",
        floor.as_secs_f64()
    );

    // 2. The synchronizer's Git target.
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&scratch.path().join("store")).unwrap());
    put_doc(
        store.as_ref(),
        &format!("d/clusterSyncObject/{PROVIDER}/repo"),
        json!({"metadata": {"name": "repo"}, "spec": {"kv": [{"userName": USER},
            {"gitToken": TOKEN}, {"repoName": "fleet"}, {"branch": "main"}, {"url": urls[1]}]}}),
    )
    .await;
    for index in 0..clusters {
        let name = cluster_name(index);
        put_doc(
            store.as_ref(),
            &format!("d/cluster/{PROVIDER}/{name}"),
            json!({"metadata": {"name": name}, "spec": {"gitOps": {"gitOpsType": "fluxcd",
                "gitOpsReferenceObject": "repo", "gitOpsResourceObject": "repo"}}}),
        )
        .await;
    }
    let connector = StoreConnector::new(
        store.clone(),
        ClusterOptions {
            request_timeout: Duration::from_secs(30),
        },
    )
    .with_git_dir(scratch.path().join("clones"));
    let sync = Synchronizer::new(
        store.clone(),
        Arc::new(connector),
        SyncConfig {
            max_concurrent_clusters: concurrency,
            call_timeout: Duration::from_secs(120),
            ..SyncConfig::default()
        },
    );
    let bare = git_root.join("fleet.git");
    let store_context = |context: AppContext| {
        let store = store.clone();
        async move {
            for (key, value) in emco_core::appcontext::encode(&context).unwrap() {
                store.put(&key, value).await.unwrap();
            }
        }
    };
    let run_ops = |ops: Vec<emco_store::Op>, id: String| {
        let store = store.clone();
        let sync = sync.clone();
        async move {
            let outcome = store
                .txn(emco_store::Txn {
                    compares: vec![],
                    ops,
                })
                .await
                .unwrap();
            assert!(outcome.succeeded);
            sync.kick(&id);
        }
    };
    // The bare repository logs each push to the branch.
    git(&bare, &["config", "core.logAllRefUpdates", "always"]);

    let first = context("00000000000000a1", clusters, count, "hello");
    store_context(first.clone()).await;
    let started = Instant::now();
    run_ops(Synchronizer::instantiate_ops(&first.id), first.id.clone()).await;
    let instantiate = wait_applied(&sync, &first.id, started).await;
    let (commits, pushes) = server_counts(&bare);
    let tree = git(&bare, &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .count();
    println!(
        "instantiate: {tree} files ({} per cluster with the GitRepository and Kustomization), \
         {commits} commits, {pushes} pushes in {:.2} s ({:.1}x the floor; {:.1} ms per cluster)",
        tree / clusters.max(1),
        instantiate.as_secs_f64(),
        instantiate.as_secs_f64() / floor.as_secs_f64(),
        instantiate.as_secs_f64() * 1000.0 / clusters as f64,
    );

    let second = context("00000000000000a2", clusters, count, "bonjour");
    store_context(second.clone()).await;
    let started = Instant::now();
    run_ops(
        Synchronizer::update_ops(&first.id, &second.id, &first.id, false),
        second.id.clone(),
    )
    .await;
    sync.kick(&first.id);
    let update = wait_applied(&sync, &second.id, started).await;
    let (after_commits, after_pushes) = server_counts(&bare);
    let changed = git(&bare, &["diff", "--name-only", "main~1", "main"])
        .lines()
        .count();
    println!(
        "update (one ConfigMap per cluster): {} commits ({changed} file per commit), {} pushes \
         in {:.2} s",
        after_commits - commits,
        after_pushes - pushes,
        update.as_secs_f64(),
    );

    let started = Instant::now();
    run_ops(
        Synchronizer::terminate_ops(&second.id, &second.id),
        second.id.clone(),
    )
    .await;
    let terminate = wait_terminated(&sync, &second.id, started).await;
    let (end_commits, end_pushes) = server_counts(&bare);
    let left = git(&bare, &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .count();
    println!(
        "terminate: {} commits, {} pushes in {:.2} s; {left} files left",
        end_commits - after_commits,
        end_pushes - after_pushes,
        terminate.as_secs_f64(),
    );
    println!(
        "{}",
        json!({"clusters": clusters, "objects": count, "concurrency": concurrency,
            "floor_s": floor.as_secs_f64(), "instantiate_s": instantiate.as_secs_f64(),
            "instantiate_commits": commits, "instantiate_pushes": pushes,
            "update_s": update.as_secs_f64(), "terminate_s": terminate.as_secs_f64()})
    );
}
