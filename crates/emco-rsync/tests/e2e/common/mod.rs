//! Test harness for the synchronizer engine: a redb store in a temporary directory, an
//! in-process `emco sim` whose clusters' kubeconfigs are stored as the REST API stores them, a
//! recording connector, and builders of contexts and objects.

#![allow(dead_code, clippy::unwrap_used)] // Shared with benches/gitops.rs, which uses part of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use emco_core::appcontext::{
    self, AppContext, AppContextBuilder, AppInput, ClusterId, ContextObject, DeletePolicy,
    Dependency, DigRef, HookEvents, OpStatus, Phase,
};
use emco_core::status::AppContextStatus;
use emco_rsync::engine::kubeconfig_key;
use emco_rsync::{
    ApplyRequest, ClusterApi, ClusterError, ClusterOptions, Connector, ContextReport, Deleted,
    KubeCluster, StoreConnector, SyncConfig, Synchronizer,
};
use emco_sim::{RunningSim, Sim, SimOptions};
use emco_store::{Op, RedbStore, Store, Txn};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const PROVIDER: &str = "prov";

pub fn cluster(index: usize) -> ClusterId {
    ClusterId::new(PROVIDER, &format!("edge-{index}"))
}

/// One call a cluster received through the recording connector.
#[derive(Debug, Clone)]
pub struct Call {
    pub cluster: String,
    pub verb: &'static str,
    pub kind: String,
    pub name: String,
    pub at: Instant,
}

pub type CallLog = Arc<Mutex<Vec<Call>>>;

/// A cluster client that logs every call before passing it on.
struct Recording {
    inner: Arc<dyn ClusterApi>,
    cluster: String,
    log: CallLog,
}

impl Recording {
    fn note(&self, verb: &'static str, kind: &str, name: &str) {
        self.log.lock().unwrap().push(Call {
            cluster: self.cluster.clone(),
            verb,
            kind: kind.to_owned(),
            name: name.to_owned(),
            at: Instant::now(),
        });
    }
}

#[async_trait]
impl ClusterApi for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn apply_request(&self, apply: &ApplyRequest) -> Result<Option<Value>, ClusterError> {
        let result = self.inner.apply_request(apply).await;
        if result.is_ok() {
            self.note("apply", &apply.kind, &apply.name);
        }
        result
    }

    async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClusterError> {
        let result = self.inner.delete(api_version, kind, namespace, name).await;
        if result.is_ok() {
            self.note("delete", kind, name);
        }
        result
    }

    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        self.inner.get(api_version, kind, namespace, name).await
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        self.inner
            .list(api_version, kind, namespace, label_selector)
            .await
    }

    async fn approve(&self, name: &str, reason: &str, message: &str) -> Result<(), ClusterError> {
        self.note("approve", "CertificateSigningRequest", name);
        self.inner.approve(name, reason, message).await
    }
}

/// The store connector, with every client wrapped in a recorder.
pub struct RecordingConnector {
    inner: StoreConnector,
    pub log: CallLog,
}

#[async_trait]
impl Connector for RecordingConnector {
    async fn connect(&self, cluster: &ClusterId) -> Result<Arc<dyn ClusterApi>, ClusterError> {
        let inner = self.inner.connect(cluster).await?;
        Ok(Arc::new(Recording {
            inner,
            cluster: cluster.cluster.clone(),
            log: self.log.clone(),
        }))
    }
}

pub struct Hub {
    pub dir: TempDir,
    pub store: Arc<dyn Store>,
    pub sim: RunningSim,
    pub sync: Arc<Synchronizer>,
    pub log: CallLog,
}

/// Fast timings so the tests run in seconds.
pub fn fast_config() -> SyncConfig {
    SyncConfig {
        max_concurrent_clusters: 8,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ready_poll_initial: Duration::from_millis(50),
        ready_poll_max: Duration::from_millis(300),
        hook_timeout: Duration::from_secs(20),
        delete_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(5),
        unknown_kind_attempts: 4,
        store_retry: Duration::from_millis(100),
        record_linger: Duration::from_millis(2),
    }
}

pub fn client_options() -> ClusterOptions {
    ClusterOptions {
        request_timeout: Duration::from_secs(1),
    }
}

/// Stores the kubeconfig of sim cluster `edge-{index}` as the REST API stores a cluster's
/// multipart `file` part.
pub async fn register(store: &dyn Store, sim: &RunningSim, index: usize) {
    let kubeconfig = sim.sim.kubeconfig(&format!("edge-{index}"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let blob = json!([{"field": "file", "filename": "edge.kubeconfig", "content": b64.encode(kubeconfig)}]);
    store
        .put(
            &kubeconfig_key(&cluster(index)),
            serde_json::to_vec(&blob).unwrap(),
        )
        .await
        .unwrap();
}

pub async fn start_sim(clusters: usize, ready_after: Duration) -> RunningSim {
    let sim = Sim::new(SimOptions {
        ready_after,
        ..SimOptions::default()
    });
    sim.add_clusters("edge-", clusters).unwrap();
    emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A synchronizer on `store` reaching the sim's clusters through a recording store connector.
pub fn synchronizer(store: Arc<dyn Store>, config: SyncConfig) -> (Arc<Synchronizer>, CallLog) {
    synchronizer_with(store, config, client_options())
}

pub fn synchronizer_with(
    store: Arc<dyn Store>,
    config: SyncConfig,
    options: ClusterOptions,
) -> (Arc<Synchronizer>, CallLog) {
    let log = CallLog::default();
    let connector = RecordingConnector {
        inner: StoreConnector::new(store.clone(), options),
        log: log.clone(),
    };
    (Synchronizer::new(store, Arc::new(connector), config), log)
}

pub async fn hub(clusters: usize, ready_after: Duration) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    hub_on(store, dir, clusters, ready_after).await
}

/// A hub on a given store (`dir` lives as long as the hub).
pub async fn hub_on(
    store: Arc<dyn Store>,
    dir: TempDir,
    clusters: usize,
    ready_after: Duration,
) -> Hub {
    let sim = start_sim(clusters, ready_after).await;
    for index in 1..=clusters {
        register(store.as_ref(), &sim, index).await;
    }
    let (sync, log) = synchronizer(store.clone(), fast_config());
    Hub {
        dir,
        store,
        sim,
        sync,
        log,
    }
}

impl Hub {
    /// Stores the context (meta last, as the orchestrator does).
    pub async fn store_context(&self, context: &AppContext) {
        let pairs = appcontext::encode(context).unwrap();
        for chunk in pairs.chunks(50) {
            let ops = chunk
                .iter()
                .map(|(key, value)| Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            self.store
                .txn(Txn {
                    compares: vec![],
                    ops,
                })
                .await
                .unwrap();
        }
    }

    /// Records the operation as the orchestrator would (in its own transaction), then kicks.
    pub async fn run_ops(&self, ops: Vec<Op>, context_id: &str) {
        let outcome = self
            .store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
        assert!(outcome.succeeded);
        self.sync.kick(context_id);
    }

    pub async fn instantiate(&self, context: &AppContext) {
        self.store_context(context).await;
        self.run_ops(Synchronizer::instantiate_ops(&context.id), &context.id)
            .await;
    }

    pub async fn terminate(&self, context_id: &str) {
        self.run_ops(
            Synchronizer::terminate_ops(context_id, context_id),
            context_id,
        )
        .await;
    }

    /// Updates the deployment of context `from` to `to` (stored here), objects labelled with
    /// context `label`'s id (the group's first).
    pub async fn update(&self, from: &str, to: &AppContext, label: &str, rollback: bool) {
        self.store_context(to).await;
        self.run_ops(
            Synchronizer::update_ops(from, &to.id, label, rollback),
            &to.id,
        )
        .await;
        self.sync.kick(from);
    }

    pub async fn report(&self, context_id: &str) -> ContextReport {
        self.sync.context_status(context_id).await.unwrap().unwrap()
    }

    /// Polls the report until `done` holds.
    pub async fn wait_for(
        &self,
        context_id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ContextReport) -> bool,
    ) -> ContextReport {
        wait_report(&self.sync, context_id, timeout, what, done).await
    }

    pub async fn wait_status(&self, context_id: &str, status: AppContextStatus) -> ContextReport {
        self.wait_for(
            context_id,
            Duration::from_secs(30),
            &format!("{status:?}"),
            |report| report.status == status,
        )
        .await
    }

    /// A direct client of sim cluster `edge-{index}`, for checking what is there.
    pub async fn client(&self, index: usize) -> KubeCluster {
        let name = format!("edge-{index}");
        KubeCluster::from_kubeconfig(&name, self.sim.sim.kubeconfig(&name).as_bytes())
            .await
            .unwrap()
    }

    /// The calls `verb` made to `cluster` on objects named `name`.
    pub fn calls(&self, cluster: &str) -> Vec<Call> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.cluster == cluster)
            .cloned()
            .collect()
    }
}

pub async fn wait_report(
    sync: &Synchronizer,
    context_id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&ContextReport) -> bool,
) -> ContextReport {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(report) = sync.context_status(context_id).await.unwrap()
            && done(&report)
        {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            sync.context_status(context_id).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- objects -------------------------------------------------------------------------------

fn object(value: Value, phase: Phase) -> ContextObject {
    let kind = value["kind"].as_str().unwrap().to_owned();
    let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
    ContextObject {
        api_version: value["apiVersion"].as_str().unwrap().to_owned(),
        kind,
        name: value["metadata"]["name"].as_str().unwrap().to_owned(),
        namespace,
        phase,
        delete_policies: vec![],
        keep_on_uninstall: false,
        object: value,
    }
}

/// Resources in the given install order.
pub fn resources(values: Vec<Value>) -> Vec<ContextObject> {
    values
        .into_iter()
        .enumerate()
        .map(|(order, value)| {
            object(
                value,
                Phase::Resource {
                    order: order as u32,
                },
            )
        })
        .collect()
}

pub fn hook(
    value: Value,
    weight: i64,
    events: HookEvents,
    policies: Vec<DeletePolicy>,
) -> ContextObject {
    let mut hook = object(value, Phase::Hook { weight, events });
    hook.delete_policies = policies;
    hook
}

pub fn pre_install() -> HookEvents {
    HookEvents {
        pre_install: true,
        ..HookEvents::default()
    }
}

pub fn post_install() -> HookEvents {
    HookEvents {
        post_install: true,
        ..HookEvents::default()
    }
}

pub fn pre_delete() -> HookEvents {
    HookEvents {
        pre_delete: true,
        ..HookEvents::default()
    }
}

pub fn pre_upgrade() -> HookEvents {
    HookEvents {
        pre_upgrade: true,
        ..HookEvents::default()
    }
}

pub fn post_upgrade() -> HookEvents {
    HookEvents {
        post_upgrade: true,
        ..HookEvents::default()
    }
}

pub fn pre_rollback() -> HookEvents {
    HookEvents {
        pre_rollback: true,
        ..HookEvents::default()
    }
}

pub fn post_delete() -> HookEvents {
    HookEvents {
        post_delete: true,
        ..HookEvents::default()
    }
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn config_map(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"key": name},
    })
}

pub fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]},
            },
        },
    })
}

pub fn service(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    })
}

/// A Job; the simulator completes it after `ready_after`, or fails it when `fail`.
pub fn job(namespace: &str, name: &str, fail: bool) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "run", "image": "busybox"}]},
            },
        },
    });
    if fail {
        job["metadata"]["annotations"] = json!({"sim.emco.io/fail": "true"});
    }
    job
}

// ---- contexts ------------------------------------------------------------------------------

/// An app on clusters `edge-{i}` for each `i` in `clusters`.
pub fn app(name: &str, clusters: &[usize], objects: Vec<ContextObject>) -> AppInput {
    AppInput {
        name: name.to_owned(),
        dependencies: vec![],
        clusters: clusters
            .iter()
            .map(|index| (cluster(*index), None))
            .collect::<BTreeMap<_, _>>(),
        objects,
    }
}

pub fn depends(app: AppInput, on: &str, op_status: OpStatus, wait_seconds: u32) -> AppInput {
    let mut dependencies = app.dependencies.clone();
    dependencies.push(Dependency {
        app: on.to_owned(),
        op_status,
        wait_seconds,
    });
    app.with_dependencies(dependencies)
}

pub fn context(id: &str, apps: Vec<AppInput>) -> AppContext {
    let mut builder = AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id(id);
    for app in apps {
        builder = builder.app(app);
    }
    builder.build().unwrap()
}
