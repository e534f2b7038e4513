//! Crash safety of the deploy path (issue #4 item 7, and #6 for updates): every state change is
//! durable before it is acted on, so a hub killed with SIGKILL anywhere in an instantiate, an
//! update or a terminate resumes after
//! a restart on the same data directory and converges, with no object applied twice under
//! different names and none lost.
//!
//! Each test runs its own `emco sim` (10 clusters; 50–150 ms of latency on every request, so a
//! deploy takes several seconds) and its own `emco serve` on the embedded store (redb),
//! onboarded through the REST API with a composite app of three generated charts: `db` (a
//! pre-install hook Job with the `hook-succeeded` delete policy, a ConfigMap, a Deployment, a
//! Service), `api` (depends on `db` being Ready everywhere) and `web` (depends on `api` being
//! Deployed everywhere), all placed on every cluster. The hub is killed (`Child::kill` is SIGKILL)
//! at the points below and restarted on the same data directory each time; then:
//!
//! - the group converges: status reaches `Instantiated` with every resource Applied (the hook:
//!   Deleted by its policy) and Ready, or `Terminated` with every resource Deleted;
//! - each cluster holds exactly the expected objects (compared with what it held before the
//!   deploy), under the names the chart fixes, each carrying the `emco/deployment-id` label of the
//!   group's one context (`{ctx}-{app}`);
//! - every object was created exactly once over the whole test (and, after a terminate, deleted
//!   exactly once): nothing deleted and re-created, nothing created under a second identity;
//! - the pre-install hook ran once per cluster: in particular a hook whose Job had completed and
//!   been deleted before a kill was not created again after the restart.
//!
//! How the test sees the clusters: one watch per cluster and kind (ConfigMaps, Services,
//! Deployments, Jobs; label selector `emco/deployment-id`), opened before anything is deployed
//! and kept open across every hub restart. Every creation of an object shows as an event carrying
//! a fresh `metadata.uid`, so counting the distinct uids seen per name counts how many times it was
//! created. That is the signal for "the hook ran again": a hook Job created again after its
//! deletion has a new uid, and the watch delivers its ADDED event however briefly it lived (a poll
//! could miss a Job that completed and was deleted between two polls; `creationTimestamp` has a
//! one-second resolution and says nothing about a copy already gone). A re-applied Job that still
//! existed keeps its uid (server-side apply updates it): that is not a second run. The same live
//! view decides when to kill (objects present, readiness, deletions) without polling the
//! simulator through its injected latency.
//!
//! Kill points: `instantiate_survives_kills_at_every_stage` kills (a) right after the instantiate
//! request returned (and checks the group is Instantiated after the restart: the 202 was
//! durable), then the moment a completed hook Job is deleted by its policy on some cluster (the
//! hub is between that cleanup and its next record write: this point found a hook run twice, see
//! below), (b) when some but not all objects are on the clusters, then again as soon as the
//! restarted hub answers (it is resuming the run), (c) in the readiness phase (every object
//! applied, some Deployment not ready yet); `terminate_survives_kills` kills right after the
//! terminate returned and when about half the objects are deleted;
//! `instantiate_killed_during_the_request_is_all_or_nothing` kills while the instantiate request
//! itself runs (rendering, storing the context), at growing delays, and checks that the group is
//! then either still Approved with nothing applied (and instantiate can be retried) or
//! Instantiated and converging.
//!
//! The hook kill point failed every time (5 runs of 5) before the synchronizer recorded a hook's
//! run durably *before* deleting its copy by policy (`emco-rsync` `worker::run_hook`): a hub killed
//! between the deletion and the record write forgot the hook had run, and the resumed run
//! created the Job again (a second uid on that cluster).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::archive::tar_gz;

const CLUSTERS: usize = 10;
const CLUSTER_PREFIX: &str = "edge-";
const PROVIDER: &str = "sim";
const CLUSTER_LABEL: &str = "crash";
const PROJECT: &str = "crash";
const LOGICAL_CLOUD: &str = "admin";
const COMPOSITE_APP: &str = "shop";
const COMPOSITE_APP_VERSION: &str = "v1";
const COMPOSITE_PROFILE: &str = "shop-profile";
const GROUP: &str = "shop-dig";
const PLACEMENT_INTENT: &str = "shop-placement";
/// The group's `spec.version`: the Helm release name, hence the prefix of every object name.
const RELEASE: &str = "r1";
/// The admin logical cloud deploys into `default`.
const NAMESPACE: &str = "default";
const DEPLOYMENT_ID_LABEL: &str = "emco/deployment-id";
/// Latency every simulated cluster adds to every request (seeded: the same draws each run).
const LATENCY_MIN_MS: u64 = 50;
const LATENCY_MAX_MS: u64 = 150;

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a kill point or for convergence after a restart.
const STAGE_TIMEOUT: Duration = Duration::from_secs(60);
const STATUS_POLL: Duration = Duration::from_millis(200);

/// The kinds the charts render, with their list paths (every namespace).
const KINDS: &[(&str, &str)] = &[
    ("ConfigMap", "/api/v1/configmaps"),
    ("Service", "/api/v1/services"),
    ("Deployment", "/apis/apps/v1/deployments"),
    ("Job", "/apis/batch/v1/jobs"),
];

// ---------------------------------------------------------------------------------------------
// The composite app.
// ---------------------------------------------------------------------------------------------

/// One app of the composite app.
struct AppSpec {
    name: &'static str,
    /// Renders the pre-install hook Job `{release}-{app}-migrate`.
    hook: bool,
    service: bool,
    /// `(app, opStatus)` this app waits for.
    depends_on: Option<(&'static str, &'static str)>,
}

const APPS: &[AppSpec] = &[
    AppSpec {
        name: "db",
        hook: true,
        service: true,
        depends_on: None,
    },
    AppSpec {
        name: "api",
        hook: false,
        service: true,
        depends_on: Some(("db", "Ready")),
    },
    AppSpec {
        name: "web",
        hook: false,
        service: false,
        depends_on: Some(("api", "Deployed")),
    },
];

const CONFIGMAP_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
"#;

const DEPLOYMENT_TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app: {{ .Chart.Name }}
  template:
    metadata:
      labels:
        app: {{ .Chart.Name }}
    spec:
      containers:
        - name: main
          image: {{ .Values.image }}
          envFrom:
            - configMapRef:
                name: {{ .Release.Name }}-{{ .Chart.Name }}-config
"#;

const SERVICE_TEMPLATE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
spec:
  selector:
    app: {{ .Chart.Name }}
  ports:
    - port: 80
      targetPort: 8080
"#;

const HOOK_TEMPLATE: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}-migrate
  annotations:
    "helm.sh/hook": pre-install
    "helm.sh/hook-delete-policy": hook-succeeded
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: {{ .Values.image }}
          command: ["/bin/sh", "-c", "echo migrating the schema"]
"#;

fn chart_archive(app: &AppSpec) -> anyhow::Result<Vec<u8>> {
    let name = app.name;
    let mut files = vec![
        (
            format!("{name}/Chart.yaml"),
            format!(
                "apiVersion: v2\nname: {name}\ndescription: crash-safety test app\ntype: application\nversion: 0.1.0\nappVersion: \"1.0\"\n"
            ),
        ),
        (
            format!("{name}/values.yaml"),
            "replicaCount: 1\nimage: registry.example/crash/app:1.0\ngreeting: chart default\n"
                .to_owned(),
        ),
        (
            format!("{name}/templates/configmap.yaml"),
            CONFIGMAP_TEMPLATE.to_owned(),
        ),
        (
            format!("{name}/templates/deployment.yaml"),
            DEPLOYMENT_TEMPLATE.to_owned(),
        ),
    ];
    if app.service {
        files.push((
            format!("{name}/templates/service.yaml"),
            SERVICE_TEMPLATE.to_owned(),
        ));
    }
    if app.hook {
        files.push((
            format!("{name}/templates/migrate-job.yaml"),
            HOOK_TEMPLATE.to_owned(),
        ));
    }
    tar_gz(&files)
}

fn profile_archive(app: &AppSpec) -> anyhow::Result<Vec<u8>> {
    tar_gz(&[
        (
            "manifest.yaml".to_owned(),
            "version: v1\ntype:\n  values: \"override_values.yaml\"\n".to_owned(),
        ),
        (
            "override_values.yaml".to_owned(),
            format!("greeting: hello from the {} profile\n", app.name),
        ),
    ])
}

/// An object's identity on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

fn object_key(kind: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.to_owned(),
        namespace: NAMESPACE.to_owned(),
        name: name.to_owned(),
    }
}

/// One object every cluster must get.
#[derive(Debug, Clone)]
struct ExpectedObject {
    app: &'static str,
    key: ObjectKey,
    hook: bool,
}

/// What the charts render on each cluster (the same everywhere).
fn expected_objects() -> Vec<ExpectedObject> {
    let mut objects = Vec::new();
    for app in APPS {
        let base = format!("{RELEASE}-{}", app.name);
        let mut add = |kind: &str, name: String, hook: bool| {
            objects.push(ExpectedObject {
                app: app.name,
                key: object_key(kind, &name),
                hook,
            });
        };
        if app.hook {
            add("Job", format!("{base}-migrate"), true);
        }
        add("ConfigMap", format!("{base}-config"), false);
        add("Deployment", base.clone(), false);
        if app.service {
            add("Service", base.clone(), false);
        }
    }
    objects
}

fn cluster_names() -> Vec<String> {
    (1..=CLUSTERS)
        .map(|i| format!("{CLUSTER_PREFIX}{i}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------------------------

/// A child process with its output in files; killed (SIGKILL) when dropped.
struct Process {
    child: Child,
    name: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Process {
    fn spawn(
        name: &str,
        args: &[String],
        envs: &[(&str, &Path)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let binary = Path::new(env!("CARGO_BIN_EXE_emco"));
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            // Files, not pipes: nobody drains a pipe and a full one would block the process.
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning emco {}", args.join(" ")))?;
        Ok(Self {
            child,
            name: name.to_owned(),
            stdout_path,
            stderr_path,
        })
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    fn stderr_tail(&self) -> String {
        log_tail(&self.stderr_path, &self.name)
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(exit) = self.child.try_wait()? {
            bail!("{} exited ({exit}); {}", self.name, self.stderr_tail());
        }
        Ok(())
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reaps the process.
    fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .with_context(|| format!("killing {}", self.name))?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // It may be gone already; nothing useful to do with either error here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last few KiB of a process's log, for failure messages.
fn log_tail(path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("--- {name} stderr (tail) ---\n{}", &text[start..])
}

/// `EMCO_HELM_BIN`, `helm` on `PATH`, or the workspace's pinned copy in `.tools/bin`.
fn helm_binary() -> anyhow::Result<PathBuf> {
    if let Some(found) = emco_helm::find_helm() {
        return Ok(found);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
    ensure!(
        pinned.is_file(),
        "no helm binary: set EMCO_HELM_BIN, put helm on PATH, or run scripts/ensure-deps.sh"
    );
    Ok(pinned)
}

/// Asks the OS for a free port; the small window before the hub binds it is fine for a test.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running `emco sim`.
struct Sim {
    process: Process,
    base: String,
    kubeconfig_dir: PathBuf,
}

impl Sim {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let kubeconfig_dir = dir.join("kubeconfigs");
        let args: Vec<String> = [
            "sim",
            "--clusters",
            &CLUSTERS.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--prefix",
            CLUSTER_PREFIX,
            "--ready-after",
            "1s",
            "--watch-history",
            "100000",
            "--kubeconfig-dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([kubeconfig_dir.to_string_lossy().into_owned()])
        .collect();
        let mut process = Process::spawn("sim", &args, &[], dir)?;
        let started = Instant::now();
        loop {
            process.ensure_running()?;
            if let Some(base) = process
                .stdout()
                .lines()
                .find_map(|line| line.split_once("ready on ").map(|(_, url)| url.trim()))
                .filter(|url| url.starts_with("http://"))
            {
                let base = base.to_owned();
                return Ok(Self {
                    process,
                    base,
                    kubeconfig_dir,
                });
            }
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "emco sim did not report ready; {}",
                process.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn server(&self, cluster: &str) -> String {
        format!("{}/clusters/{cluster}", self.base)
    }

    fn kubeconfig(&self, cluster: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.kubeconfig_dir.join(format!("{cluster}.kubeconfig"));
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Latency on every request of every cluster, through the `/sim` control API.
    async fn inject_latency(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        self.set_latency(
            client,
            json!({"all": true}),
            CLUSTERS,
            LATENCY_MIN_MS,
            LATENCY_MAX_MS,
        )
        .await
    }

    /// Latency on every request of the clusters `selector` picks (`count` of them).
    async fn set_latency(
        &self,
        client: &reqwest::Client,
        selector: Value,
        count: usize,
        min_ms: u64,
        max_ms: u64,
    ) -> anyhow::Result<()> {
        let plan = json!({
            "clusters": selector,
            "faults": {"latency": {"minMs": min_ms, "maxMs": max_ms}, "seed": 7}
        });
        let response = client
            .put(format!("{}/sim/faults", self.base))
            .json(&plan)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status == StatusCode::OK, "PUT /sim/faults: {status} {body}");
        ensure!(
            body["clusters"].as_array().map(Vec::len) == Some(count),
            "latency not set on every cluster: {body}"
        );
        Ok(())
    }

    /// Every object of the charts' kinds on `cluster` (every namespace), with its labels.
    async fn objects(
        &self,
        client: &reqwest::Client,
        cluster: &str,
    ) -> anyhow::Result<BTreeMap<ObjectKey, Value>> {
        let mut found = BTreeMap::new();
        for (kind, path) in KINDS {
            let url = format!("{}{path}", self.server(cluster));
            let response = client.get(&url).send().await?;
            let status = response.status();
            let list: Value = response.json().await?;
            ensure!(status == StatusCode::OK, "GET {url}: {status} {list}");
            for item in list["items"].as_array().into_iter().flatten() {
                let key = ObjectKey {
                    kind: (*kind).to_owned(),
                    namespace: str_at(item, "/metadata/namespace").to_owned(),
                    name: str_at(item, "/metadata/name").to_owned(),
                };
                found.insert(key, item.clone());
            }
        }
        Ok(found)
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The hub: one data directory, restarted on a fresh port after each kill.
struct Hub {
    process: Option<Process>,
    base: String,
    data: PathBuf,
    logs: PathBuf,
    helm: PathBuf,
    starts: usize,
}

impl Hub {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("hub-data");
        std::fs::create_dir_all(&data)?;
        Ok(Self {
            process: None,
            base: String::new(),
            data,
            logs: dir.to_owned(),
            helm: helm_binary()?,
            starts: 0,
        })
    }

    async fn start(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        ensure!(self.process.is_none(), "the hub is already running");
        self.starts += 1;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            listen.clone(),
            "--data".to_owned(),
            self.data.to_string_lossy().into_owned(),
        ];
        let name = format!("hub-{}", self.starts);
        let mut process = Process::spawn(
            &name,
            &args,
            &[("EMCO_HELM", &self.helm), ("EMCO_HELM_BIN", &self.helm)],
            &self.logs,
        )?;
        let base = format!("http://{listen}");
        let started = Instant::now();
        loop {
            process.ensure_running()?;
            if let Ok(response) = client
                .get(format!("{base}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && response.status() == StatusCode::OK
            {
                break;
            }
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "the hub did not answer /healthz; {}",
                process.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.base = base;
        self.process = Some(process);
        Ok(())
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        let mut process = self.process.take().context("the hub is not running")?;
        process.ensure_running()?;
        process.kill()
    }

    async fn restart(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        self.start(client).await
    }

    fn stderr_tail(&self) -> String {
        let name = format!("hub-{}", self.starts);
        log_tail(&self.logs.join(format!("{name}.stderr")), &name)
    }
}

// ---------------------------------------------------------------------------------------------
// Watching the clusters.
// ---------------------------------------------------------------------------------------------

/// Everything the watches saw of one object.
#[derive(Debug, Clone, Default)]
struct ObjectHistory {
    /// Distinct `metadata.uid`s, in the order first seen: one per creation.
    uids: Vec<String>,
    /// uids seen deleted.
    deleted: BTreeSet<String>,
    /// The object as it is now, `None` once deleted.
    live: Option<Value>,
}

type ClusterHistory = BTreeMap<ObjectKey, ObjectHistory>;
type Snapshot = BTreeMap<String, ClusterHistory>;

#[derive(Default)]
struct Seen {
    clusters: Snapshot,
    connected: usize,
    /// Watches that had to list again from scratch (their history may have gaps).
    problems: Vec<String>,
}

/// One watch per cluster and kind, started before anything is deployed.
struct Observer {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Observer {
    async fn start(sim: &Sim, clusters: &[String]) -> anyhow::Result<Self> {
        // No overall timeout: a watch lasts the whole test.
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        for cluster in clusters {
            for &(kind, path) in KINDS {
                tasks.push(tokio::spawn(watch_kind(
                    client.clone(),
                    format!("{}{path}", sim.server(cluster)),
                    cluster.clone(),
                    kind,
                    seen.clone(),
                )));
            }
        }
        let observer = Self { seen, tasks };
        let started = Instant::now();
        while lock(&observer.seen).connected < clusters.len() * KINDS.len() {
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "the watches did not all start: {:?}",
                lock(&observer.seen).problems
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(observer)
    }

    fn snapshot(&self) -> Snapshot {
        lock(&self.seen).clusters.clone()
    }

    fn problems(&self) -> Vec<String> {
        lock(&self.seen).problems.clone()
    }

    /// Waits (checking every few milliseconds) until `condition` holds for what was seen;
    /// returns that snapshot.
    async fn wait_for(
        &self,
        what: &str,
        condition: impl Fn(&Snapshot) -> bool,
    ) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        loop {
            let snapshot = self.snapshot();
            if condition(&snapshot) {
                return Ok(snapshot);
            }
            if started.elapsed() > STAGE_TIMEOUT {
                bail!(
                    "timed out waiting until {what}; the clusters hold: {}",
                    describe(&snapshot)
                );
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Follows one kind on one cluster, resuming from the last resourceVersion if the stream ends.
async fn watch_kind(
    client: reqwest::Client,
    url: String,
    cluster: String,
    kind: &'static str,
    seen: Arc<Mutex<Seen>>,
) {
    let selector = DEPLOYMENT_ID_LABEL.replace('/', "%2F");
    let mut resource_version: Option<String> = None;
    let mut connected_once = false;
    loop {
        let mut request = format!("{url}?watch=1&labelSelector={selector}&timeoutSeconds=3600");
        match &resource_version {
            Some(version) => request.push_str(&format!("&resourceVersion={version}")),
            None if connected_once => lock(&seen)
                .problems
                .push(format!("{cluster} {kind}: watch listed again from scratch")),
            None => {}
        }
        match client.get(&request).send().await {
            Ok(mut response) if response.status() == StatusCode::OK => {
                if !connected_once {
                    connected_once = true;
                    lock(&seen).connected += 1;
                }
                let mut buffer: Vec<u8> = Vec::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    buffer.extend_from_slice(&chunk);
                    while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        match record_event(&seen, &cluster, kind, &line) {
                            Ok(Some(version)) => resource_version = Some(version),
                            Ok(None) => {}
                            Err(expired) => {
                                lock(&seen)
                                    .problems
                                    .push(format!("{cluster} {kind}: {expired}"));
                                resource_version = None;
                            }
                        }
                    }
                }
            }
            Ok(response) => lock(&seen).problems.push(format!(
                "{cluster} {kind}: watch answered {}",
                response.status()
            )),
            Err(error) => lock(&seen)
                .problems
                .push(format!("{cluster} {kind}: watch failed: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Records one watch event; returns the resourceVersion to resume from, or `Err` when the
/// watch must start over.
fn record_event(
    seen: &Mutex<Seen>,
    cluster: &str,
    kind: &str,
    line: &[u8],
) -> Result<Option<String>, String> {
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        return Ok(None);
    };
    let object = &event["object"];
    let version = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let event_type = str_at(&event, "/type");
    match event_type {
        "ERROR" => return Err(format!("watch error {object}")),
        "BOOKMARK" => return Ok(version),
        "ADDED" | "MODIFIED" | "DELETED" => {}
        _ => return Ok(None),
    }
    let key = ObjectKey {
        kind: kind.to_owned(),
        namespace: str_at(object, "/metadata/namespace").to_owned(),
        name: str_at(object, "/metadata/name").to_owned(),
    };
    let uid = str_at(object, "/metadata/uid").to_owned();
    let mut seen = lock(seen);
    let history = seen
        .clusters
        .entry(cluster.to_owned())
        .or_default()
        .entry(key)
        .or_default();
    if !history.uids.contains(&uid) {
        history.uids.push(uid.clone());
    }
    if event_type == "DELETED" {
        history.deleted.insert(uid);
        history.live = None;
    } else {
        history.live = Some(object.clone());
    }
    Ok(version)
}

/// A short account of what the clusters hold, for failure messages.
fn describe(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for (cluster, objects) in snapshot {
        let live: Vec<String> = objects
            .iter()
            .filter(|(_, h)| h.live.is_some())
            .map(|(key, h)| {
                let ready = h.live.as_ref().is_none_or(is_ready);
                format!("{}{}", key.name, if ready { "" } else { "(not ready)" })
            })
            .collect();
        out.push_str(&format!("\n  {cluster}: {}", live.join(", ")));
    }
    if out.is_empty() {
        out.push_str("nothing");
    }
    out
}

/// Whether a live workload reports itself done (Deployments: every replica ready for the current
/// generation; Jobs: complete); other kinds are ready when they exist.
fn is_ready(object: &Value) -> bool {
    match str_at(object, "/kind") {
        "Deployment" => {
            let generation = object["metadata"]["generation"].as_u64().unwrap_or(0);
            let observed = object["status"]["observedGeneration"].as_u64().unwrap_or(0);
            let wanted = object["spec"]["replicas"].as_u64().unwrap_or(1);
            let ready = object["status"]["readyReplicas"].as_u64().unwrap_or(0);
            observed >= generation && ready >= wanted
        }
        "Job" => object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        _ => true,
    }
}

/// Live objects that are not hooks, over every cluster.
fn live_resources(snapshot: &Snapshot) -> usize {
    snapshot
        .values()
        .flat_map(|objects| objects.iter())
        .filter(|(key, history)| key.kind != "Job" && history.live.is_some())
        .count()
}

/// Clusters whose hook Job was created, ran to completion and was deleted by its policy.
fn hooks_finished(snapshot: &Snapshot) -> BTreeMap<String, Vec<String>> {
    let hooks: Vec<ObjectKey> = expected_objects()
        .into_iter()
        .filter(|o| o.hook)
        .map(|o| o.key)
        .collect();
    let mut finished = BTreeMap::new();
    for (cluster, objects) in snapshot {
        for hook in &hooks {
            if let Some(history) = objects.get(hook)
                && history.live.is_none()
                && !history.deleted.is_empty()
            {
                finished.insert(cluster.clone(), history.uids.clone());
            }
        }
    }
    finished
}

// ---------------------------------------------------------------------------------------------
// The hub's REST API.
// ---------------------------------------------------------------------------------------------

enum Body {
    Json(Value),
    Multipart { metadata: Value, file: Vec<u8> },
    Empty,
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Body,
    expected: StatusCode,
) -> anyhow::Result<()> {
    let url = format!("{base}{path}");
    let request = match body {
        Body::Json(body) => client.post(&url).json(&body),
        Body::Multipart { metadata, file } => {
            let form = reqwest::multipart::Form::new()
                .text("metadata", metadata.to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(file).file_name("file.tgz"),
                );
            client.post(&url).multipart(form)
        }
        Body::Empty => client.post(&url),
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    ensure!(
        status == expected,
        "POST {url} answered {status} (expected {expected}): {answer}"
    );
    Ok(())
}

fn composite_app_path() -> String {
    format!("/v2/projects/{PROJECT}/composite-apps/{COMPOSITE_APP}/{COMPOSITE_APP_VERSION}")
}

fn group_path() -> String {
    format!("{}/deployment-intent-groups/{GROUP}", composite_app_path())
}

/// Cluster provider, clusters with their kubeconfigs and a label, project, admin logical cloud,
/// composite app (charts, a dependency per app), profiles, group, placement on the label,
/// approval.
async fn onboard(client: &reqwest::Client, base: &str, sim: &Sim) -> anyhow::Result<()> {
    const CREATED: StatusCode = StatusCode::CREATED;
    const ACCEPTED: StatusCode = StatusCode::ACCEPTED;
    let json_post = |path: String, body: Value| async move {
        post(client, base, &path, Body::Json(body), CREATED).await
    };
    json_post(
        "/v2/cluster-providers".to_owned(),
        json!({"metadata": {"name": PROVIDER}}),
    )
    .await?;
    let clusters = format!("/v2/cluster-providers/{PROVIDER}/clusters");
    for cluster in cluster_names() {
        let body = Body::Multipart {
            metadata: json!({"metadata": {"name": cluster}}),
            file: sim.kubeconfig(&cluster)?,
        };
        post(client, base, &clusters, body, CREATED).await?;
        json_post(
            format!("{clusters}/{cluster}/labels"),
            json!({"clusterLabel": CLUSTER_LABEL}),
        )
        .await?;
    }
    json_post(
        "/v2/projects".to_owned(),
        json!({"metadata": {"name": PROJECT}}),
    )
    .await?;
    let clouds = format!("/v2/projects/{PROJECT}/logical-clouds");
    json_post(
        clouds.clone(),
        json!({"metadata": {"name": LOGICAL_CLOUD}, "spec": {"level": "0"}}),
    )
    .await?;
    for cluster in cluster_names() {
        json_post(
            format!("{clouds}/{LOGICAL_CLOUD}/cluster-references"),
            json!({
                "metadata": {"name": format!("ref-{cluster}")},
                "spec": {"clusterProvider": PROVIDER, "cluster": cluster, "loadBalancerIP": "0.0.0.0"}
            }),
        )
        .await?;
    }
    post(
        client,
        base,
        &format!("{clouds}/{LOGICAL_CLOUD}/instantiate"),
        Body::Empty,
        ACCEPTED,
    )
    .await?;

    json_post(
        format!("/v2/projects/{PROJECT}/composite-apps"),
        json!({"metadata": {"name": COMPOSITE_APP}, "spec": {"compositeAppVersion": COMPOSITE_APP_VERSION}}),
    )
    .await?;
    let ca = composite_app_path();
    for app in APPS {
        let body = Body::Multipart {
            metadata: json!({"metadata": {"name": app.name}}),
            file: chart_archive(app)?,
        };
        post(client, base, &format!("{ca}/apps"), body, CREATED).await?;
    }
    for app in APPS {
        if let Some((on, op_status)) = app.depends_on {
            json_post(
                format!("{ca}/apps/{}/dependency", app.name),
                json!({
                    "metadata": {"name": format!("{}-needs-{on}", app.name)},
                    "spec": {"app": on, "opStatus": op_status, "wait": 0}
                }),
            )
            .await?;
        }
    }
    json_post(
        format!("{ca}/composite-profiles"),
        json!({"metadata": {"name": COMPOSITE_PROFILE}}),
    )
    .await?;
    for app in APPS {
        let body = Body::Multipart {
            metadata: json!({"metadata": {"name": format!("{}-profile", app.name)}, "spec": {"app": app.name}}),
            file: profile_archive(app)?,
        };
        post(
            client,
            base,
            &format!("{ca}/composite-profiles/{COMPOSITE_PROFILE}/profiles"),
            body,
            CREATED,
        )
        .await?;
    }
    json_post(
        format!("{ca}/deployment-intent-groups"),
        json!({
            "metadata": {"name": GROUP},
            "spec": {
                "compositeProfile": COMPOSITE_PROFILE,
                "version": RELEASE,
                "logicalCloud": LOGICAL_CLOUD,
                "overrideValues": []
            }
        }),
    )
    .await?;
    let group = group_path();
    json_post(
        format!("{group}/generic-placement-intents"),
        json!({"metadata": {"name": PLACEMENT_INTENT}}),
    )
    .await?;
    json_post(
        format!("{group}/intents"),
        json!({"metadata": {"name": "intents"}, "spec": {"intent": {"genericPlacementIntent": PLACEMENT_INTENT}}}),
    )
    .await?;
    for app in APPS {
        json_post(
            format!("{group}/generic-placement-intents/{PLACEMENT_INTENT}/app-intents"),
            json!({
                "metadata": {"name": format!("{}-placement", app.name)},
                "spec": {
                    "app": app.name,
                    "intent": {"allOf": [{"clusterProvider": PROVIDER, "clusterLabel": CLUSTER_LABEL}]}
                }
            }),
        )
        .await?;
    }
    post(
        client,
        base,
        &format!("{group}/approve"),
        Body::Empty,
        ACCEPTED,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// A scenario: a simulator, its watches, a hub, an onboarded group.
// ---------------------------------------------------------------------------------------------

struct Scenario {
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    client: reqwest::Client,
    sim: Sim,
    observer: Observer,
    hub: Hub,
    /// What each cluster held before anything was deployed.
    baseline: BTreeMap<String, BTreeSet<ObjectKey>>,
}

impl Scenario {
    async fn start(name: &'static str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("crash-safety-{name}-"))
            .tempdir()?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let sim = Sim::start(dir.path()).await?;
        let clusters = cluster_names();
        let observer = Observer::start(&sim, &clusters).await?;
        let mut baseline = BTreeMap::new();
        for cluster in &clusters {
            let objects = sim.objects(&client, cluster).await?;
            baseline.insert(cluster.clone(), objects.into_keys().collect());
        }
        sim.inject_latency(&client).await?;
        let mut hub = Hub::new(dir.path())?;
        hub.start(&client).await?;
        onboard(&client, &hub.base, &sim)
            .await
            .with_context(|| hub.stderr_tail())?;
        Ok(Self {
            name,
            dir: Some(dir),
            client,
            sim,
            observer,
            hub,
            baseline,
        })
    }

    /// On failure: keeps the scratch directory (logs, data) and names it with the hub's log.
    fn explain(&mut self, error: anyhow::Error) -> anyhow::Error {
        let kept = self
            .dir
            .take()
            .map(|dir| dir.keep().display().to_string())
            .unwrap_or_default();
        error.context(format!(
            "scenario {} failed (logs and data kept in {kept}); {}\n{}",
            self.name,
            self.hub.stderr_tail(),
            self.sim.process.stderr_tail()
        ))
    }

    async fn action(&self, action: &str) -> anyhow::Result<()> {
        post(
            &self.client,
            &self.hub.base,
            &format!("{}/{action}", group_path()),
            Body::Empty,
            StatusCode::ACCEPTED,
        )
        .await
    }

    async fn status(&self, query: &str) -> anyhow::Result<Value> {
        let url = format!("{}{}/status?{query}", self.hub.base, group_path());
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status == StatusCode::OK, "GET {url}: {status} {body}");
        Ok(body)
    }

    /// The group's lifecycle state and the context of its last action.
    async fn lifecycle(&self) -> anyhow::Result<(String, String)> {
        let status = self.status("status=deployed&output=summary").await?;
        let last = status
            .pointer("/states/actions")
            .and_then(Value::as_array)
            .and_then(|actions| actions.last())
            .with_context(|| format!("no lifecycle actions in {status}"))?;
        Ok((
            str_at(last, "/state").to_owned(),
            str_at(last, "/instance").to_owned(),
        ))
    }

    /// Kills the hub as soon as the clusters look as `condition` says; returns what they held.
    async fn kill_when(
        &mut self,
        what: &str,
        condition: impl Fn(&Snapshot) -> bool,
    ) -> anyhow::Result<Snapshot> {
        let snapshot = self.observer.wait_for(what, condition).await?;
        self.hub.kill()?;
        println!(
            "[{}] killed the hub when {what}: {} resources live, hooks finished on {:?}",
            self.name,
            live_resources(&snapshot),
            hooks_finished(&snapshot).keys().collect::<Vec<_>>()
        );
        Ok(snapshot)
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.hub.restart(&self.client).await
    }

    /// Polls the hub's status until `done` holds for it.
    async fn wait_status(
        &self,
        query: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < STAGE_TIMEOUT {
            match self.status(query).await {
                Ok(status) if done(&status) => return Ok(status),
                Ok(status) => last = status,
                Err(error) => last = Value::from(error.to_string()),
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
        bail!(
            "status never showed {what} within {STAGE_TIMEOUT:?}; last answer: {last}; the clusters hold: {}",
            describe(&self.observer.snapshot())
        )
    }

    /// Waits for the group to be Instantiated with everything Applied and Ready, then checks the
    /// clusters hold exactly the expected objects, created once each; returns the context id.
    async fn converge_instantiated(&self) -> anyhow::Result<String> {
        let started = Instant::now();
        let ready = self
            .wait_status("status=ready&output=all", "Instantiated and Ready", |s| {
                s["deployedStatus"] == "Instantiated" && s["readyStatus"] == "Ready"
            })
            .await?;
        let (state, context) = self.lifecycle().await?;
        ensure!(state == "Instantiated", "lifecycle state {state}");
        ensure!(!context.is_empty(), "no context id in the lifecycle");
        println!(
            "[{}] Instantiated and Ready after {:.1} s of waiting (context {context})",
            self.name,
            started.elapsed().as_secs_f64()
        );
        let deployed = self.status("status=deployed&output=all").await?;
        let expected = expected_objects();
        // Every resource of every app on every cluster: Applied (the hook: deleted by its
        // policy once it succeeded), and Ready.
        let want_deployed =
            expected_status(&expected, |o| if o.hook { "Deleted" } else { "Applied" });
        let got_deployed = status_resources(&deployed, "deployedStatus")?;
        ensure!(
            got_deployed == want_deployed,
            "deployed status differs: {}",
            diff(&want_deployed, &got_deployed)
        );
        let want_ready = expected_status(&expected, |_| "Ready");
        let got_ready = status_resources(&ready, "readyStatus")?;
        ensure!(
            got_ready == want_ready,
            "ready status differs: {}",
            diff(&want_ready, &got_ready)
        );

        // The clusters as they are (fresh lists, not the watches): exactly the expected
        // objects besides what was there before, each with the label of this context.
        for cluster in cluster_names() {
            let objects = self.sim.objects(&self.client, &cluster).await?;
            let baseline = self.baseline.get(&cluster).cloned().unwrap_or_default();
            let mut want: BTreeMap<ObjectKey, String> = BTreeMap::new();
            for object in expected.iter().filter(|o| !o.hook) {
                want.insert(object.key.clone(), format!("{context}-{}", object.app));
            }
            let got: BTreeMap<ObjectKey, String> = objects
                .iter()
                .filter(|(key, _)| !baseline.contains(key))
                .map(|(key, object)| {
                    let label = object
                        .pointer("/metadata/labels")
                        .and_then(|labels| labels.get(DEPLOYMENT_ID_LABEL))
                        .and_then(Value::as_str)
                        .unwrap_or("(no label)");
                    (key.clone(), label.to_owned())
                })
                .collect();
            ensure!(
                got == want,
                "{cluster} holds other objects than expected (name -> {DEPLOYMENT_ID_LABEL}): {}",
                diff(&want, &got)
            );
        }
        self.check_history(false)?;
        Ok(context)
    }

    /// Waits for the group to be Terminated with every resource deleted, then checks the clusters
    /// hold nothing of it and each object was deleted exactly once.
    async fn converge_terminated(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let deployed = self
            .wait_status("status=deployed&output=all", "Terminated", |s| {
                s["deployedStatus"] == "Terminated"
            })
            .await?;
        let (state, _) = self.lifecycle().await?;
        ensure!(state == "Terminated", "lifecycle state {state}");
        println!(
            "[{}] Terminated after {:.1} s of waiting",
            self.name,
            started.elapsed().as_secs_f64()
        );
        let want = expected_status(&expected_objects(), |_| "Deleted");
        let got = status_resources(&deployed, "deployedStatus")?;
        ensure!(
            got == want,
            "deployed status after terminate differs: {}",
            diff(&want, &got)
        );
        for cluster in cluster_names() {
            let objects = self.sim.objects(&self.client, &cluster).await?;
            let baseline = self.baseline.get(&cluster).cloned().unwrap_or_default();
            let left: Vec<String> = objects
                .keys()
                .filter(|key| !baseline.contains(key))
                .map(ToString::to_string)
                .collect();
            ensure!(left.is_empty(), "{cluster} still holds {left:?}");
        }
        self.check_history(true)
    }

    /// Over the whole test, per cluster: every expected object was created exactly once (one
    /// uid), the hook Job too, and deleted exactly once if it should be gone (the hook always);
    /// nothing else carrying the label was ever created.
    fn check_history(&self, terminated: bool) -> anyhow::Result<()> {
        let problems = self.observer.problems();
        ensure!(
            problems.is_empty(),
            "the watches may have missed events: {problems:?}"
        );
        let snapshot = self.observer.snapshot();
        let expected = expected_objects();
        for cluster in cluster_names() {
            let empty = ClusterHistory::new();
            let objects = snapshot.get(&cluster).unwrap_or(&empty);
            for object in &expected {
                let history = objects.get(&object.key).with_context(|| {
                    format!("{cluster}: {} was never seen on the cluster", object.key)
                })?;
                ensure!(
                    history.uids.len() == 1,
                    "{cluster}: {} was created {} times (uids {:?}){}",
                    object.key,
                    history.uids.len(),
                    history.uids,
                    if object.hook {
                        ": the pre-install hook ran again"
                    } else {
                        ""
                    }
                );
                let gone = object.hook || terminated;
                let deletions = usize::from(gone);
                ensure!(
                    history.deleted.len() == deletions && history.live.is_some() != gone,
                    "{cluster}: {} was deleted {} times, live: {} (expected {deletions} deletion)",
                    object.key,
                    history.deleted.len(),
                    history.live.is_some()
                );
            }
            let strays: Vec<String> = objects
                .keys()
                .filter(|key| !expected.iter().any(|o| o.key == **key))
                .map(ToString::to_string)
                .collect();
            ensure!(
                strays.is_empty(),
                "{cluster}: objects with the {DEPLOYMENT_ID_LABEL} label that the charts do not render: {strays:?}"
            );
        }
        Ok(())
    }
}

/// `(app, cluster, kind, name) -> status` from a status answer with `output=all`.
fn status_resources(
    status: &Value,
    field: &str,
) -> anyhow::Result<BTreeMap<(String, String, String, String), String>> {
    let mut found = BTreeMap::new();
    for app in status["apps"].as_array().into_iter().flatten() {
        for cluster in app["clusters"].as_array().into_iter().flatten() {
            for resource in cluster["resources"].as_array().into_iter().flatten() {
                let key = (
                    str_at(app, "/name").to_owned(),
                    format!(
                        "{}+{}",
                        str_at(cluster, "/clusterProvider"),
                        str_at(cluster, "/cluster")
                    ),
                    str_at(resource, "/GVK/Kind").to_owned(),
                    str_at(resource, "/name").to_owned(),
                );
                let value = str_at(resource, &format!("/{field}")).to_owned();
                ensure!(
                    found.insert(key.clone(), value).is_none(),
                    "status lists {key:?} twice"
                );
            }
        }
    }
    Ok(found)
}

fn expected_status(
    expected: &[ExpectedObject],
    status: impl Fn(&ExpectedObject) -> &'static str,
) -> BTreeMap<(String, String, String, String), String> {
    let mut want = BTreeMap::new();
    for cluster in cluster_names() {
        for object in expected {
            want.insert(
                (
                    object.app.to_owned(),
                    format!("{PROVIDER}+{cluster}"),
                    object.key.kind.clone(),
                    object.key.name.clone(),
                ),
                status(object).to_owned(),
            );
        }
    }
    want
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    want: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
) -> String {
    let mut out = Vec::new();
    for (key, value) in want {
        match got.get(key) {
            None => out.push(format!("missing {key:?}")),
            Some(other) if other != value => {
                out.push(format!("{key:?}: {other:?}, expected {value:?}"))
            }
            Some(_) => {}
        }
    }
    for (key, value) in got {
        if !want.contains_key(key) {
            out.push(format!("unexpected {key:?} = {value:?}"));
        }
    }
    out.truncate(20);
    out.join("; ")
}

/// Every expected resource (not hooks) is live on every cluster.
fn all_resources_live(snapshot: &Snapshot) -> bool {
    live_resources(snapshot) == CLUSTERS * expected_objects().iter().filter(|o| !o.hook).count()
}

fn some_deployment_not_ready(snapshot: &Snapshot) -> bool {
    snapshot
        .values()
        .flat_map(|objects| objects.iter())
        .filter(|(key, _)| key.kind == "Deployment")
        .any(|(_, history)| history.live.as_ref().is_some_and(|o| !is_ready(o)))
}

/// Fails if a hook that had finished (completed and deleted) before a kill was created again.
fn check_finished_hooks_not_rerun(
    before_kill: &BTreeMap<String, Vec<String>>,
    now: &Snapshot,
) -> anyhow::Result<()> {
    let after = hooks_finished(now);
    for (cluster, uids) in before_kill {
        let now_uids = after.get(cluster).cloned().unwrap_or_default();
        ensure!(
            now_uids == *uids,
            "{cluster}: the pre-install hook had completed and been deleted before the kill (uids {uids:?}) and was created again after the restart (uids {now_uids:?})"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

async fn instantiate_with_kills(scenario: &mut Scenario) -> anyhow::Result<()> {
    // (a) Right after the instantiate request returned: the 202 means the state change and the
    // work order are durable.
    scenario.action("instantiate").await?;
    scenario.hub.kill()?;
    println!(
        "[{}] killed the hub right after instantiate returned",
        scenario.name
    );
    scenario.restart().await?;
    let (state, _) = scenario.lifecycle().await?;
    ensure!(
        state == "Instantiated",
        "instantiate answered 202, yet after a restart the group is {state}"
    );

    // The moment a completed hook Job is deleted by its policy on some cluster: the hub is
    // between the cleanup and its next record write there.
    let at_hook = scenario
        .kill_when("a completed hook Job was deleted", |s| {
            !hooks_finished(s).is_empty()
        })
        .await?;
    let finished_at_hook = hooks_finished(&at_hook);
    scenario.restart().await?;

    // (b) Some, not all, resources on the clusters.
    let at_b = scenario
        .kill_when("some but not all resources are on the clusters", |s| {
            live_resources(s) > 0 && !all_resources_live(s)
        })
        .await?;
    let finished_at_b = hooks_finished(&at_b);
    scenario.restart().await?;
    // Killed again at once: the restarted hub is in the middle of resuming the run.
    scenario.hub.kill()?;
    scenario.restart().await?;

    // (c) The readiness phase: everything applied, some Deployment not ready yet.
    let at_c = scenario
        .kill_when(
            "every resource is applied and some Deployment is not ready",
            |s| all_resources_live(s) && some_deployment_not_ready(s),
        )
        .await?;
    let finished_at_c = hooks_finished(&at_c);
    ensure!(
        finished_at_c.len() == CLUSTERS,
        "in the readiness phase every hook should have finished: {finished_at_c:?}"
    );
    scenario.restart().await?;

    scenario.converge_instantiated().await?;
    let now = scenario.observer.snapshot();
    for finished in [&finished_at_hook, &finished_at_b, &finished_at_c] {
        check_finished_hooks_not_rerun(finished, &now)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiate_survives_kills_at_every_stage() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("stages").await?;
    match instantiate_with_kills(&mut scenario).await {
        Ok(()) => Ok(()),
        Err(error) => Err(scenario.explain(error)),
    }
}

async fn terminate_with_kills(scenario: &mut Scenario) -> anyhow::Result<()> {
    scenario.action("instantiate").await?;
    let context = scenario.converge_instantiated().await?;
    let finished = hooks_finished(&scenario.observer.snapshot());

    // Right after the terminate request returned.
    scenario.action("terminate").await?;
    scenario.hub.kill()?;
    println!(
        "[{}] killed the hub right after terminate returned",
        scenario.name
    );
    scenario.restart().await?;
    let (state, _) = scenario.lifecycle().await?;
    ensure!(
        state == "Terminated",
        "terminate answered 202, yet after a restart the group is {state}"
    );

    // (d) Half the resources deleted: some clusters are done with some apps, others not.
    let total = CLUSTERS * expected_objects().iter().filter(|o| !o.hook).count();
    scenario
        .kill_when("about half the resources are deleted", |s| {
            let live = live_resources(s);
            live > 0 && live <= total / 2
        })
        .await?;
    scenario.restart().await?;

    scenario.converge_terminated().await?;
    check_finished_hooks_not_rerun(&finished, &scenario.observer.snapshot())?;
    let (_, last_context) = scenario.lifecycle().await?;
    ensure!(
        last_context == context,
        "terminate acted on {last_context}, instantiate created {context}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_survives_kills() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("terminate").await?;
    match terminate_with_kills(&mut scenario).await {
        Ok(()) => Ok(()),
        Err(error) => Err(scenario.explain(error)),
    }
}

/// Kill delays while the instantiate request runs (it renders three charts with Helm and stores
/// the context before its one state transaction).
const REQUEST_KILL_DELAYS_MS: &[u64] = &[15, 40, 80, 120, 160, 200, 250, 300, 400, 500, 700];

async fn instantiate_request_kills(scenario: &mut Scenario) -> anyhow::Result<()> {
    let mut unanswered_left_approved = 0;
    let mut instantiated = false;
    for &delay in REQUEST_KILL_DELAYS_MS {
        let url = format!("{}{}/instantiate", scenario.hub.base, group_path());
        let request = tokio::spawn(scenario.client.post(url).send());
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let answered_before_kill = request.is_finished();
        scenario.hub.kill()?;
        let answer = request.await?;
        let accepted = matches!(&answer, Ok(response) if response.status() == StatusCode::ACCEPTED);
        if let Ok(response) = &answer {
            ensure!(
                response.status() == StatusCode::ACCEPTED,
                "instantiate answered {}",
                response.status()
            );
        }
        scenario.restart().await?;
        let (state, _) = scenario.lifecycle().await?;
        println!(
            "[{}] killed {delay} ms into instantiate (answered before the kill: {answered_before_kill}, 202: {accepted}): group {state} after the restart",
            scenario.name
        );
        match state.as_str() {
            "Approved" => {
                ensure!(
                    !accepted,
                    "instantiate answered 202 but the group is still Approved after the restart"
                );
                unanswered_left_approved += 1;
                // Nothing may be applied, now or later: no work order was recorded.
                tokio::time::sleep(Duration::from_millis(700)).await;
                let snapshot = scenario.observer.snapshot();
                let seen: usize = snapshot.values().map(BTreeMap::len).sum();
                ensure!(
                    seen == 0,
                    "the group is Approved after the restart but objects reached the clusters: {}",
                    describe(&snapshot)
                );
                let summary = scenario.status("status=deployed&output=summary").await?;
                ensure!(
                    summary.get("deployedStatus").is_none(),
                    "an Approved group reports a deployment: {summary}"
                );
            }
            "Instantiated" => {
                instantiated = true;
                break;
            }
            other => bail!("after a kill during instantiate the group is {other}"),
        }
    }
    ensure!(
        unanswered_left_approved > 0,
        "no kill landed inside the instantiate request (all {} delays were too long)",
        REQUEST_KILL_DELAYS_MS.len()
    );
    if !instantiated {
        // Every kill came before the state change: instantiate can simply be retried.
        scenario.action("instantiate").await?;
    }
    scenario.converge_instantiated().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiate_killed_during_the_request_is_all_or_nothing() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("request").await?;
    match instantiate_request_kills(&mut scenario).await {
        Ok(()) => Ok(()),
        Err(error) => Err(scenario.explain(error)),
    }
}

// ---------------------------------------------------------------------------------------------
// Update (issue #6 item 6).
// ---------------------------------------------------------------------------------------------

/// The image the update gives `web` (through the group's override values).
const UPDATED_IMAGE: &str = "registry.example/crash/web:2.0";

/// The group's document with `web`'s image overridden.
fn updated_group() -> Value {
    json!({
        "metadata": {"name": GROUP},
        "spec": {
            "compositeProfile": COMPOSITE_PROFILE,
            "version": RELEASE,
            "logicalCloud": LOGICAL_CLOUD,
            "overrideValues": [{"app": "web", "values": {"image": UPDATED_IMAGE}}]
        }
    })
}

/// `web`'s Deployment on every cluster where the watches see it with the updated image.
fn updated_webs(snapshot: &Snapshot) -> usize {
    let key = object_key("Deployment", &format!("{RELEASE}-web"));
    snapshot
        .values()
        .filter_map(|cluster| cluster.get(&key)?.live.as_ref())
        .filter(|web| str_at(web, "/spec/template/spec/containers/0/image") == UPDATED_IMAGE)
        .count()
}

/// Kills the hub right after `request` (an update or a rollback, already answered 202), checks
/// the lifecycle after the restart with `check`, kills it again once web's image differs between
/// clusters, and waits for Updated and Ready after the last restart.
async fn converge_after_kills(
    scenario: &mut Scenario,
    request: &str,
    check: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<Value> {
    scenario.hub.kill()?;
    println!(
        "[{}] killed the hub right after {request} returned",
        scenario.name
    );
    // An update sends one write per cluster, all at once: the clusters it reaches late are
    // made slow, so "some but not all" lasts long enough to be seen however loaded the machine.
    let late: Vec<String> = (CLUSTERS / 2 + 1..=CLUSTERS)
        .map(|index| format!("edge-{index}"))
        .collect();
    scenario
        .sim
        .set_latency(
            &scenario.client,
            json!({"names": late}),
            late.len(),
            1500,
            2000,
        )
        .await?;
    scenario.restart().await?;
    let (state, context) = scenario.lifecycle().await?;
    ensure!(
        check(&state, &context),
        "{request} answered 202, yet after a restart the group's last action is {state} on {context}"
    );
    let killed = scenario
        .kill_when(
            &format!("the {request} reached some but not all clusters"),
            |s| {
                let updated = updated_webs(s);
                updated > 0 && updated < CLUSTERS
            },
        )
        .await;
    scenario.sim.inject_latency(&scenario.client).await?;
    killed?;
    scenario.restart().await?;
    scenario
        .wait_status("status=ready&output=all", "Updated and Ready", |s| {
            s["deployedStatus"] == "Updated" && s["readyStatus"] == "Ready"
        })
        .await
}

async fn update_with_kills(scenario: &mut Scenario) -> anyhow::Result<()> {
    scenario.action("instantiate").await?;
    let first = scenario.converge_instantiated().await?;
    let finished = hooks_finished(&scenario.observer.snapshot());

    let url = format!("{}{}", scenario.hub.base, group_path());
    let response = scenario
        .client
        .put(&url)
        .json(&updated_group())
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "PUT {url}: {}",
        response.status()
    );
    // Right after the update request returned: the new revision and the work order are durable.
    scenario.action("update").await?;
    let status = converge_after_kills(scenario, "update", |state, context| {
        state == "Instantiated" && context != first
    })
    .await?;
    ensure!(
        status["states"]["statusctxid"] == first.as_str(),
        "the status context moved: {}",
        status["states"]
    );
    let snapshot = scenario.observer.snapshot();
    ensure!(
        updated_webs(&snapshot) == CLUSTERS,
        "web is not updated everywhere: {}",
        describe(&snapshot)
    );
    // Every object is still the one the instantiate created (an update patches in place, it
    // never deletes and re-creates), labelled with the first context, and the pre-install hook
    // did not run again (an update runs upgrade hooks only).
    scenario.check_history(false)?;
    check_finished_hooks_not_rerun(&finished, &snapshot)?;
    for cluster in cluster_names() {
        let objects = scenario.sim.objects(&scenario.client, &cluster).await?;
        for object in expected_objects().iter().filter(|o| !o.hook) {
            let live = objects
                .get(&object.key)
                .with_context(|| format!("{cluster}: {} is gone", object.key))?;
            let label = str_at(live, "/metadata/labels/emco~1deployment-id");
            ensure!(
                label == format!("{first}-{}", object.app),
                "{cluster}: {} is labelled {label:?}",
                object.key
            );
        }
    }

    // Rollback to revision 1, killed the same way: right after the 202, then mid-rollout.
    post(
        &scenario.client,
        &scenario.hub.base,
        &format!("{}/rollback", group_path()),
        Body::Json(json!({"spec": {"revision": "1"}})),
        StatusCode::ACCEPTED,
    )
    .await?;
    converge_after_kills(scenario, "rollback", |state, context| {
        state == "Instantiated" && context == first
    })
    .await?;
    let snapshot = scenario.observer.snapshot();
    ensure!(
        updated_webs(&snapshot) == 0,
        "web is not rolled back everywhere: {}",
        describe(&snapshot)
    );
    scenario.check_history(false)?;
    check_finished_hooks_not_rerun(&finished, &snapshot)?;
    Ok(())
}

/// Update, then rollback, each killed right after its 202 and in the middle of its rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_survives_kills() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("update").await?;
    match update_with_kills(&mut scenario).await {
        Ok(()) => Ok(()),
        Err(error) => Err(scenario.explain(error)),
    }
}
