//! The synchronizer's Git target against real `git` repositories: a GitOps cluster's objects
//! become files in upstream's layout with the agent's objects beside them, readiness and
//! deletes follow the agent's reports, an update rewrites only what changed, terminate removes
//! the files, concurrent writers lose nothing, and a repository that cannot be reached leaves
//! the cluster Retrying until it can.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use emco_core::appcontext::{AppContext, AppContextBuilder, DigRef};
use emco_core::status::{AppContextStatus, Connectivity};
use emco_rsync::gitops::repo::{Change, GitRepo, RepoSpec};
use emco_rsync::{StoreConnector, Synchronizer};
use emco_store::{RedbStore, Store};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const CLUSTER_DIR: &str = "clusters/prov+flux-1";

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
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

fn bare_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    git(path, &["init", "--quiet", "--bare", "-b", "main"]);
}

/// The files on `main` under `prefix`.
fn tree(repo: &Path, prefix: &str) -> Vec<String> {
    if !repo.exists() {
        return Vec::new();
    }
    let output = Command::new("git")
        .current_dir(repo)
        .args(["ls-tree", "-r", "--name-only", "main"])
        .args(if prefix.is_empty() {
            vec![]
        } else {
            vec!["--", prefix]
        })
        .output()
        .unwrap();
    // No branch yet: nothing was pushed.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the files on `main` under `prefix` satisfy `done` (the test fails after
/// [`LONG`], showing them).
async fn wait_tree(repo: &Path, prefix: &str, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let files = tree(repo, prefix);
        if done(&files) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {files:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn show(repo: &Path, path: &str) -> Value {
    serde_json::from_str(&git(repo, &["show", &format!("main:{path}")])).unwrap()
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

/// Registers `flux-1` of provider `prov` as a Flux cluster writing `url`, as the REST API
/// stores it (cluster and sync object documents).
async fn register_gitops_cluster(store: &dyn Store, url: &str) {
    put_doc(
        store,
        "d/cluster/prov/flux-1",
        json!({"metadata": {"name": "flux-1"}, "spec": {"gitOps": {"gitOpsType": "fluxcd",
            "gitOpsReferenceObject": "repo", "gitOpsResourceObject": "times"}}}),
    )
    .await;
    put_doc(
        store,
        "d/clusterSyncObject/prov/repo",
        json!({"metadata": {"name": "repo"}, "spec": {"kv": [{"userName": "emco"},
            {"gitToken": "t0ken"}, {"repoName": "fleet"}, {"branch": "main"}, {"url": url}]}}),
    )
    .await;
    put_doc(
        store,
        "d/clusterSyncObject/prov/times",
        json!({"metadata": {"name": "times"}, "spec": {"kv": [{"syncInterval": "5"}]}}),
    )
    .await;
}

fn revision(id: &str, config_value: &str) -> AppContext {
    let mut config = config_map("default", "web-config");
    config["data"] = json!({"greeting": config_value});
    AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id(id)
    .app(app_on(
        "web",
        resources(vec![deployment("default", "web"), config]),
    ))
    .build()
    .unwrap()
}

fn app_on(
    name: &str,
    objects: Vec<emco_core::appcontext::ContextObject>,
) -> emco_core::appcontext::AppInput {
    let mut input = app(name, &[], objects);
    input.clusters.insert(
        emco_core::appcontext::ClusterId::new("prov", "flux-1"),
        None,
    );
    input
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the cluster's agent would report at `reported_ms`: the committed objects of the
/// cluster, with the status a ready cluster gives them.
async fn report_as_agent_at(store: &dyn Store, repo: &Path, reported_ms: u64) {
    let mut objects = Vec::new();
    for path in tree(repo, &format!("{CLUSTER_DIR}/context")) {
        if !path.ends_with(".yaml") {
            continue;
        }
        let mut object = show(repo, &path);
        if object["kind"] == "Deployment" {
            object["metadata"]["generation"] = json!(1);
            object["status"] = json!({"observedGeneration": 1, "replicas": 1,
                "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}]});
        }
        objects.push(object);
    }
    store
        .put(
            &emco_core::gitops::report_key("prov", "flux-1"),
            serde_json::to_vec(&json!({"objects": objects, "reportedMs": reported_ms})).unwrap(),
        )
        .await
        .unwrap();
}

struct GitHub {
    _dir: tempfile::TempDir,
    remote: std::path::PathBuf,
    store: Arc<dyn Store>,
    sync: Arc<Synchronizer>,
}

async fn git_hub(create_remote: bool) -> GitHub {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("fleet.git");
    if create_remote {
        bare_repo(&remote);
    }
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("store")).unwrap());
    register_gitops_cluster(store.as_ref(), remote.to_str().unwrap()).await;
    let connector = StoreConnector::new(store.clone(), client_options())
        .with_git_dir(dir.path().join("clones"));
    let sync = Synchronizer::new(store.clone(), Arc::new(connector), fast_config());
    GitHub {
        _dir: dir,
        remote,
        store,
        sync,
    }
}

impl GitHub {
    async fn run(&self, ops: Vec<emco_store::Op>, id: &str) {
        let outcome = self
            .store
            .txn(emco_store::Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
        assert!(outcome.succeeded);
        self.sync.kick(id);
    }

    /// Stores `context` and instantiates it.
    async fn instantiate(&self, context: &AppContext) {
        self.store_context(context).await;
        self.run(Synchronizer::instantiate_ops(&context.id), &context.id)
            .await;
    }

    async fn terminate(&self, id: &str) {
        self.run(Synchronizer::terminate_ops(id, id), id).await;
    }

    /// The cluster's agent reports what is committed now.
    async fn agent_reports(&self) {
        report_as_agent_at(self.store.as_ref(), &self.remote, now_ms()).await;
    }

    async fn store_context(&self, context: &AppContext) {
        for (key, value) in emco_core::appcontext::encode(context).unwrap() {
            self.store.put(&key, value).await.unwrap();
        }
    }

    async fn wait(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&emco_rsync::ContextReport) -> bool,
    ) -> emco_rsync::ContextReport {
        wait_report(&self.sync, id, LONG, what, done).await
    }
}

#[tokio::test]
async fn a_flux_cluster_gets_files_and_follows_its_agent() {
    let hub = git_hub(true).await;
    let first = revision("00000000000000a1", "hello");
    hub.instantiate(&first).await;
    // Committed in upstream's layout, the Flux Kustomization beside the deployment.
    let context_dir = format!("{CLUSTER_DIR}/context/{}", first.id);
    wait_tree(&hub.remote, CLUSTER_DIR, "committed", |files| {
        files.len() >= 4
    })
    .await;
    let files = tree(&hub.remote, CLUSTER_DIR);
    assert_eq!(
        files,
        vec![
            format!("{CLUSTER_DIR}/{}.yaml", first.id),
            format!("{context_dir}/app/web/web+Deployment.yaml"),
            format!("{context_dir}/app/web/web-config+ConfigMap.yaml"),
            format!("{CLUSTER_DIR}/kust{}.yaml", first.id),
        ]
    );
    let kustomization = show(&hub.remote, &format!("{CLUSTER_DIR}/kust{}.yaml", first.id));
    assert_eq!(kustomization["spec"]["path"], context_dir);
    assert_eq!(kustomization["spec"]["interval"], "5s");
    let deployment = show(
        &hub.remote,
        &format!("{context_dir}/app/web/web+Deployment.yaml"),
    );
    assert_eq!(
        deployment["metadata"]["labels"]["emco/deployment-id"],
        format!("{}-web", first.id)
    );
    // One commit for the app, with a message saying what it did.
    let log = git(&hub.remote, &["log", "--format=%s", "main"]);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("prov+flux-1: 2 written, 0 removed (app web)"),
        "{log}"
    );

    // Not ready until the agent says so.
    let report = hub.sync.context_status(&first.id).await.unwrap().unwrap();
    assert!(!report.all_ready);
    hub.agent_reports().await;
    hub.wait(&first.id, "ready", |report| report.all_ready)
        .await;

    // An update changing the ConfigMap rewrites that file only.
    let second = revision("00000000000000a2", "bonjour");
    hub.store_context(&second).await;
    hub.run(
        Synchronizer::update_ops(&first.id, &second.id, &first.id, false),
        &second.id,
    )
    .await;
    hub.sync.kick(&first.id);
    let deadline = std::time::Instant::now() + LONG;
    while git(&hub.remote, &["rev-list", "--count", "main"]).trim() != "2" {
        assert!(std::time::Instant::now() < deadline, "no update commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changed = git(&hub.remote, &["diff", "--name-only", "main~1", "main"]);
    assert_eq!(
        changed.trim(),
        format!("{context_dir}/app/web/web-config+ConfigMap.yaml")
    );
    hub.agent_reports().await;
    hub.wait(&second.id, "updated and ready", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;

    // Terminate removes the files and the Kustomization; done once the agent no longer
    // reports the objects (Flux pruned them).
    hub.terminate(&second.id).await;
    let deadline = std::time::Instant::now() + LONG;
    while !tree(&hub.remote, CLUSTER_DIR).is_empty() {
        assert!(std::time::Instant::now() < deadline, "files not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.agent_reports().await;
    hub.wait(&second.id, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
}

/// A revision whose one app holds `objects`.
fn revision_of(id: &str, objects: Vec<Value>) -> AppContext {
    revision_in("dig", id, objects)
}

/// [`revision_of`], of deployment intent group `dig`.
fn revision_in(dig: &str, id: &str, objects: Vec<Value>) -> AppContext {
    AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", dig),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id(id)
    .app(app_on("web", resources(objects)))
    .build()
    .unwrap()
}

/// Deletes look files up in a listing of the cluster's folders made once per commit: a file
/// committed after one listing must be found by the next terminate.
#[tokio::test]
async fn a_terminate_finds_files_committed_after_an_update_deleted_others() {
    let hub = git_hub(true).await;
    let first = revision_of("00000000000000f1", vec![deployment("default", "web")]);
    hub.instantiate(&first).await;
    let app_dir = |id: &str| format!("{CLUSTER_DIR}/context/{id}/app/web");
    let first_dir = app_dir(&first.id);
    wait_tree(&hub.remote, CLUSTER_DIR, "instantiated", |files| {
        files.contains(&format!("{first_dir}/web+Deployment.yaml"))
    })
    .await;
    hub.agent_reports().await;
    hub.wait(&first.id, "ready", |report| report.all_ready)
        .await;

    // The update swaps the Deployment for a ConfigMap: one delete, one write.
    let second = revision_of(
        "00000000000000f2",
        vec![config_map("default", "web-config")],
    );
    hub.store_context(&second).await;
    hub.run(
        Synchronizer::update_ops(&first.id, &second.id, &first.id, false),
        &second.id,
    )
    .await;
    hub.sync.kick(&first.id);
    wait_tree(&hub.remote, CLUSTER_DIR, "updated", |files| {
        files.contains(&format!("{first_dir}/web-config+ConfigMap.yaml"))
            && !files.contains(&format!("{first_dir}/web+Deployment.yaml"))
    })
    .await;
    hub.agent_reports().await;
    hub.wait(&second.id, "updated and ready", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;

    // The ConfigMap was committed after the update's listing: terminate still removes it.
    hub.terminate(&second.id).await;
    wait_tree(&hub.remote, CLUSTER_DIR, "everything removed", |files| {
        files.is_empty()
    })
    .await;
    hub.agent_reports().await;
    hub.wait(&second.id, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
}

/// Two deployments on one cluster share its staged changes and its listing of files: both
/// instantiated at once, then one updated (a delete and a write) while the other terminates,
/// then the first terminated; nothing of either is left.
#[tokio::test]
async fn two_deployments_on_one_cluster_come_and_go_together() {
    let hub = git_hub(true).await;
    let one = revision_of(
        "00000000000000e1",
        vec![deployment("default", "web"), config_map("default", "one-a")],
    );
    let two = revision_in(
        "other-dig",
        "00000000000000e2",
        vec![
            config_map("default", "two-a"),
            config_map("default", "two-b"),
        ],
    );
    for context in [&one, &two] {
        hub.instantiate(context).await;
    }
    wait_tree(&hub.remote, CLUSTER_DIR, "both instantiated", |files| {
        files
            .iter()
            .filter(|file| file.ends_with("+ConfigMap.yaml"))
            .count()
            == 3
    })
    .await;
    hub.agent_reports().await;
    for context in [&one, &two] {
        hub.wait(&context.id, "ready", |report| report.all_ready)
            .await;
    }

    let updated = revision_of(
        "00000000000000e3",
        vec![deployment("default", "web"), config_map("default", "one-b")],
    );
    hub.store_context(&updated).await;
    hub.run(
        Synchronizer::update_ops(&one.id, &updated.id, &one.id, false),
        &updated.id,
    )
    .await;
    hub.sync.kick(&one.id);
    hub.terminate(&two.id).await;
    let one_dir = format!("{CLUSTER_DIR}/context/{}/app/web", one.id);
    wait_tree(
        &hub.remote,
        CLUSTER_DIR,
        "updated and other gone",
        |files| {
            files.contains(&format!("{one_dir}/one-b+ConfigMap.yaml"))
                && !files.contains(&format!("{one_dir}/one-a+ConfigMap.yaml"))
                && !files.iter().any(|file| file.contains(&two.id))
        },
    )
    .await;
    hub.agent_reports().await;
    hub.wait(&two.id, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
    hub.wait(&updated.id, "updated", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;

    hub.terminate(&updated.id).await;
    wait_tree(&hub.remote, CLUSTER_DIR, "everything removed", |files| {
        files.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_repository_that_cannot_be_reached_leaves_the_cluster_retrying_until_it_can() {
    let hub = git_hub(false).await;
    let first = revision("00000000000000b1", "hello");
    hub.instantiate(&first).await;
    let report = hub
        .wait(&first.id, "retrying", |report| {
            report.apps[0].clusters[0].connectivity == Connectivity::Retrying
        })
        .await;
    assert_eq!(report.status, AppContextStatus::Instantiating);
    // The server comes back: nothing was lost.
    bare_repo(&hub.remote);
    wait_tree(
        &hub.remote,
        CLUSTER_DIR,
        "committed after recovery",
        |files| files.len() >= 4,
    )
    .await;
    hub.agent_reports().await;
    let report = hub
        .wait(&first.id, "ready", |report| report.all_ready)
        .await;
    assert_eq!(
        report.apps[0].clusters[0].connectivity,
        Connectivity::Available
    );
}

#[tokio::test]
async fn a_silent_agent_leaves_the_cluster_retrying_until_it_reports_again() {
    let hub = git_hub(true).await;
    let first = revision("00000000000000c1", "hello");
    hub.instantiate(&first).await;
    wait_tree(&hub.remote, CLUSTER_DIR, "committed", |files| {
        files.len() >= 4
    })
    .await;
    // The last report is older than the agent's allowed silence: nothing it says is trusted.
    let stale = now_ms() - emco_rsync::gitops::cluster::AGENT_SILENCE.as_millis() as u64 - 5_000;
    report_as_agent_at(hub.store.as_ref(), &hub.remote, stale).await;
    let report = hub
        .wait(&first.id, "retrying", |report| {
            report.apps[0].clusters[0].connectivity == Connectivity::Retrying
        })
        .await;
    let cluster = &report.apps[0].clusters[0];
    assert!(!report.all_ready);
    assert!(
        cluster
            .error
            .as_deref()
            .is_some_and(|error| error.contains("agent (emco agent) last reported 12")),
        "{cluster:?}"
    );
    // It reports again: ready.
    hub.agent_reports().await;
    let report = hub
        .wait(&first.id, "ready", |report| report.all_ready)
        .await;
    assert_eq!(
        report.apps[0].clusters[0].connectivity,
        Connectivity::Available
    );
}

/// A revision whose app has one ConfigMap `settings` in the group's namespace and, when
/// `both`, another of the same name in `kube-system`.
fn same_names(id: &str, revision: u64, both: bool) -> AppContext {
    let mut objects = vec![config_map("default", "settings")];
    if both {
        objects.push(config_map("kube-system", "settings"));
    }
    AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        revision,
        "2026-01-01T00:00:00Z",
    )
    .id(id)
    .namespace("default")
    .app(app_on("web", resources(objects)))
    .build()
    .unwrap()
}

#[tokio::test]
async fn objects_of_one_name_in_two_namespaces_get_a_file_each() {
    let hub = git_hub(true).await;
    let first = same_names("00000000000000d1", 1, true);
    hub.instantiate(&first).await;
    let app_dir = format!("{CLUSTER_DIR}/context/{}/app/web", first.id);
    wait_tree(&hub.remote, &app_dir, "a file per object", |files| {
        files.len() >= 2
    })
    .await;
    assert_eq!(
        tree(&hub.remote, &app_dir),
        vec![
            format!("{app_dir}/settings+ConfigMap+kube-system.yaml"),
            format!("{app_dir}/settings+ConfigMap.yaml"),
        ]
    );
    let other = show(
        &hub.remote,
        &format!("{app_dir}/settings+ConfigMap+kube-system.yaml"),
    );
    assert_eq!(other["metadata"]["namespace"], "kube-system");
    hub.agent_reports().await;
    hub.wait(&first.id, "ready", |report| report.all_ready)
        .await;

    // An update dropping the kube-system one removes its file only.
    let second = same_names("00000000000000d2", 2, false);
    hub.store_context(&second).await;
    hub.run(
        Synchronizer::update_ops(&first.id, &second.id, &first.id, false),
        &second.id,
    )
    .await;
    hub.sync.kick(&first.id);
    wait_tree(
        &hub.remote,
        &app_dir,
        "the kube-system file removed",
        |files| files.len() == 1,
    )
    .await;
    assert_eq!(
        tree(&hub.remote, &app_dir),
        vec![format!("{app_dir}/settings+ConfigMap.yaml")]
    );
}

#[tokio::test]
async fn an_object_whose_file_name_is_unsafe_fails_alone() {
    let hub = git_hub(true).await;
    let context = AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id("00000000000000e1")
    .app(app_on(
        "web",
        resources(vec![
            deployment("default", "web"),
            config_map("default", "quoted\"name"),
        ]),
    ))
    .build()
    .unwrap();
    hub.instantiate(&context).await;
    let report = hub
        .wait(&context.id, "the unsafe object failed", |report| {
            report.apps[0].clusters[0]
                .resources
                .iter()
                .any(|r| r.deployed == emco_core::status::DeployedStatus::Failed)
        })
        .await;
    let failed = report.apps[0].clusters[0]
        .resources
        .iter()
        .find(|r| r.name == "quoted\"name")
        .unwrap();
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("not a plain relative path")),
        "{failed:?}"
    );
    // The rest of the app reached the repository.
    let app_dir = format!("{CLUSTER_DIR}/context/{}/app/web", context.id);
    wait_tree(
        &hub.remote,
        &app_dir,
        "only the Deployment committed",
        |files| files == vec![format!("{app_dir}/web+Deployment.yaml")],
    )
    .await;
}

#[tokio::test]
async fn concurrent_writers_of_one_repository_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("shared.git");
    bare_repo(&remote);
    let spec = RepoSpec {
        url: remote.to_str().unwrap().to_owned(),
        branch: "main".into(),
        user: "emco".into(),
        token: "s3cret-token".into(),
    };
    // Two hubs, each with its own clone.
    let writers = [
        GitRepo::start(spec.clone(), dir.path().join("a")),
        GitRepo::start(spec, dir.path().join("b")),
    ];
    let mut tasks = Vec::new();
    for (index, writer) in writers.iter().enumerate() {
        for n in 0..10 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut files = std::collections::BTreeMap::new();
                files.insert(format!("w{index}/f{n}.yaml"), Some(b"{}\n".to_vec()));
                writer
                    .commit(Change {
                        message: format!("writer {index} file {n}"),
                        files,
                        derived: Vec::new(),
                    })
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(tree(&remote, "").len(), 20);
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "20");
}

/// A stand-in Azure: issues a token, accepts the extension and Flux configuration calls, and
/// records `METHOD path` of each (the client's own tests check every field of each request).
async fn stand_in_azure() -> (String, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use axum::extract::{Request, State};
    type Log = Arc<std::sync::Mutex<Vec<(String, Value)>>>;
    let log: Log = Arc::default();
    async fn answer(State(log): State<Log>, request: Request) -> axum::Json<Value> {
        let line = format!("{} {}", request.method(), request.uri());
        let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        log.lock().unwrap().push((line, body));
        axum::Json(json!({"access_token": "stand-in-token", "expires_in": "3600"}))
    }
    let app = axum::Router::new().fallback(answer).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

#[tokio::test]
async fn an_azure_arc_cluster_gets_a_flux_configuration_per_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("fleet.git");
    bare_repo(&remote);
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("store")).unwrap());
    register_gitops_cluster(store.as_ref(), remote.to_str().unwrap()).await;
    put_doc(
        store.as_ref(),
        "d/cluster/prov/flux-1",
        json!({"metadata": {"name": "flux-1"}, "spec": {"gitOps": {"gitOpsType": "azureArcV2",
            "gitOpsReferenceObject": "repo", "gitOpsResourceObject": "azure"}}}),
    )
    .await;
    put_doc(
        store.as_ref(),
        "d/clusterSyncObject/prov/azure",
        json!({"metadata": {"name": "azure"}, "spec": {"kv": [{"clientID": "app"},
            {"tenantID": "tenant"}, {"clientSecret": "secret"}, {"subscriptionID": "sub"},
            {"arcCluster": "arc1"}, {"arcResourceGroup": "rg"}]}}),
    )
    .await;
    let (azure, log) = stand_in_azure().await;
    let connector = StoreConnector::new(store.clone(), client_options())
        .with_git_dir(dir.path().join("clones"))
        .with_azure_endpoints(emco_rsync::gitops::azure::ArcEndpoints {
            login: azure.clone(),
            management: azure,
            ca_pem: None,
        });
    let hub = GitHub {
        _dir: dir,
        remote,
        store: store.clone(),
        sync: Synchronizer::new(store, Arc::new(connector), fast_config()),
    };
    let first = revision("00000000000000c1", "hello");
    hub.instantiate(&first).await;
    let flux_config = format!(
        "PUT /subscriptions/sub/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/arc1/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/config-{}?api-version=2022-03-01",
        first.id
    );
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .find(|(line, _)| *line == flux_config)
            .map(|(_, body)| body.clone());
        if let Some(body) = found {
            let kustomization = &body["properties"]["kustomizations"]["kustomization-1"];
            assert_eq!(
                kustomization["path"],
                format!("./{CLUSTER_DIR}/context/{}", first.id)
            );
            assert_eq!(body["properties"]["gitRepository"]["httpsUser"], "emco");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no flux configuration: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No Kustomization file in Git: Azure holds the configuration.
    assert!(
        tree(&hub.remote, CLUSTER_DIR)
            .iter()
            .all(|path| path.contains("/context/"))
    );
    hub.agent_reports().await;
    hub.wait(&first.id, "ready", |report| report.all_ready)
        .await;
    hub.terminate(&first.id).await;
    let delete = flux_config.replacen("PUT", "DELETE", 1);
    let deadline = std::time::Instant::now() + LONG;
    while !log.lock().unwrap().iter().any(|(line, _)| *line == delete) {
        assert!(std::time::Instant::now() < deadline, "no delete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.agent_reports().await;
    hub.wait(&first.id, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
}
