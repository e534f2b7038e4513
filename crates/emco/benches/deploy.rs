//! Deploy benchmark (issue #4): `cargo bench -p emco --bench deploy`.
//!
//! A composite app of 5 apps (generated Helm charts of 10 objects each: a Deployment, a Service,
//! a ServiceAccount, four ConfigMaps, a Secret, a Role and a RoleBinding) is instantiated onto
//! 1,000 simulated clusters, and compared with a floor:
//!
//! 1. **Floor.** A fresh `emco sim`; the same charts rendered once with the real Helm (through
//!    `emco_helm::HelmRenderer`, as the hub renders them, with the same profile values and release
//!    name), then every object applied to every cluster by server-side apply (`PATCH` with
//!    `application/apply-patch+yaml`, field manager `emco`, `force=true`) from one plain HTTP
//!    client: `concurrency` clusters at a time, the objects of one cluster one after another in
//!    Helm's install order. Timed until every apply answered, then until every Deployment reports
//!    itself ready.
//! 2. **Hub.** Another fresh `emco sim` and a fresh `emco serve` (release build, embedded store),
//!    onboarded through the real REST API: a cluster provider, every cluster (multipart with the
//!    kubeconfig the simulator wrote) with a label, a project, an admin logical cloud (level 0)
//!    referencing every cluster and instantiated, the composite app (5 apps, multipart chart
//!    archives), a composite profile with one profile per app, a deployment intent group with a
//!    generic placement intent placing every app on the label. Approve, then `POST .../instantiate`
//!    is timed, and `GET .../status?status=deployed&output=summary` (then `status=ready`) polled
//!    until every object counts as Applied (then Ready); each query's latency is kept (p50 and
//!    p99 of the status queries during the rollout). Then the store's size on disk, and
//!    `POST .../terminate` timed until the status says Terminated. The hub's RSS is sampled
//!    all along.
//!
//! The report is a Markdown table, then one JSON line with every figure (the fleet-scale
//! harness of issue #5; `docs/PERFORMANCE.md` has the figures at 100 to 10,000 clusters).
//!
//! Environment knobs:
//! - `DEPLOY_BENCH_CLUSTERS` (default 1000), `DEPLOY_BENCH_APPS` (5), `DEPLOY_BENCH_OBJECTS`
//!   (objects per app, at least and by default 10: extra ones are ConfigMaps);
//! - `DEPLOY_BENCH_UPDATE` (1): once all Ready, update (issue #6): the first app gets a new chart
//!   whose only change is its Deployment's image, then `POST .../update` is timed until the
//!   status says Updated and everything is Ready again; the write requests the simulated
//!   clusters answered meanwhile are counted (`/sim/stats`: one per cluster is the target) and
//!   the hub's RSS read (0 skips);
//! - `DEPLOY_BENCH_TERMINATE` (1): terminate after all Ready and time it (0 skips);
//! - `DEPLOY_BENCH_CONCURRENCY`: clusters worked on at once, the floor's bound and the hub's
//!   `EMCO_MAX_CONCURRENT_CLUSTERS` (default 64, the synchronizer's default);
//! - `DEPLOY_BENCH_ONBOARD_CONCURRENCY`: REST requests in flight while onboarding (32);
//! - `DEPLOY_BENCH_READY_AFTER`: the simulator's `--ready-after` (`1s`);
//! - `DEPLOY_BENCH_POLL_MS`: status poll interval (1000) until 95% of the objects are counted,
//!   then every 100 ms, so the interval does not blur the time measured (more often, the
//!   queries themselves slow down the end of the rollout);
//! - `DEPLOY_BENCH_PROGRESS_MS`: how often the wait prints its counts (5000; 0 prints every
//!   poll, for a timeline of the rollout);
//! - `DEPLOY_BENCH_TIMEOUT_SECS`: longest wait for Applied plus Ready (900);
//! - `DEPLOY_BENCH_PHASES`: `floor,hub` by default; `floor`, `hub`, or `onboard` (stop the hub
//!   phase before instantiating);
//! - `DEPLOY_BENCH_HUB_ARGS`: extra `emco serve` arguments, whitespace-separated;
//! - `DEPLOY_BENCH_KEEP=1`: keep the scratch directory with the processes' logs (the hub and the
//!   simulator inherit `RUST_LOG`);
//! - Helm: `EMCO_HELM_BIN`, else `helm` on `PATH`, else the workspace's `.tools/bin/helm`; the hub
//!   gets the same binary through `EMCO_HELM` and `EMCO_HELM_BIN`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does nothing: it is far too heavy
//! for a test suite.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use emco_helm::archive::{ArchiveLimits, read_chart, read_profile};
use emco_helm::{HelmConfig, HelmRenderer, RenderRequest, Renderer};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

#[path = "../tests/e2e/support/archive.rs"]
mod archive;
use archive::tar_gz;
#[path = "support/proc_usage.rs"]
mod proc_usage;
use proc_usage::{Usage, usage};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Status poll interval once 95% of the objects are counted.
const FINAL_POLL: Duration = Duration::from_millis(100);
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Prefix of the simulated clusters' names (`emco sim --prefix`), also their names in the hub.
const CLUSTER_PREFIX: &str = "edge-";
const PROVIDER: &str = "sim";
const CLUSTER_LABEL: &str = "bench";
const PROJECT: &str = "bench";
const LOGICAL_CLOUD: &str = "admin";
const COMPOSITE_APP: &str = "fleet";
const COMPOSITE_APP_VERSION: &str = "v1";
const COMPOSITE_PROFILE: &str = "fleet-profile";
const DEPLOYMENT_INTENT_GROUP: &str = "fleet-dig";
const PLACEMENT_INTENT: &str = "fleet-placement";
/// The group's `spec.version`, which is also the Helm release name.
const RELEASE: &str = "r1";
/// The admin logical cloud has no namespace of its own: objects go to `default`.
const NAMESPACE: &str = "default";
/// The field manager the hub's synchronizer applies as; the floor uses the same.
const FIELD_MANAGER: &str = "emco";

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "deploy benchmark skipped (heavy): run it with `cargo bench -p emco --bench deploy`"
        );
        return Ok(());
    }
    let config = Config::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(config))
}

/// What the environment asked for.
struct Config {
    clusters: usize,
    apps: usize,
    /// Objects each app's chart renders to (at least the chart's fixed ten).
    objects: usize,
    /// Terminate after Ready, timed.
    terminate: bool,
    /// Update one app's chart after Ready, timed, with the writes it sent counted.
    update: bool,
    concurrency: usize,
    onboard_concurrency: usize,
    ready_after: String,
    poll: Duration,
    /// How often the wait prints its counts.
    progress: Duration,
    timeout: Duration,
    run_floor: bool,
    run_hub: bool,
    /// Stop the hub phase after onboarding and approval (no instantiate).
    onboard_only: bool,
    hub_args: Vec<String>,
    helm: PathBuf,
    /// Keep the scratch directory (process logs, kubeconfigs, the hub's store) after the run.
    keep_logs: bool,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let clusters: usize = env_or("DEPLOY_BENCH_CLUSTERS", 1000)?;
        ensure!(clusters >= 1, "DEPLOY_BENCH_CLUSTERS must be at least 1");
        let apps: usize = env_or("DEPLOY_BENCH_APPS", 5)?;
        let objects: usize = env_or("DEPLOY_BENCH_OBJECTS", FIXED_OBJECTS)?;
        ensure!(
            objects >= FIXED_OBJECTS,
            "DEPLOY_BENCH_OBJECTS must be at least {FIXED_OBJECTS} (the chart's fixed objects)"
        );
        ensure!(
            (1..=50).contains(&apps),
            "DEPLOY_BENCH_APPS must be in 1..=50"
        );
        let concurrency: usize = env_or("DEPLOY_BENCH_CONCURRENCY", 64)?;
        ensure!(
            concurrency >= 1,
            "DEPLOY_BENCH_CONCURRENCY must be at least 1"
        );
        let onboard_concurrency: usize = env_or("DEPLOY_BENCH_ONBOARD_CONCURRENCY", 32)?;
        ensure!(
            onboard_concurrency >= 1,
            "DEPLOY_BENCH_ONBOARD_CONCURRENCY must be at least 1"
        );
        let phases: String = env_or("DEPLOY_BENCH_PHASES", "floor,hub".to_owned())?;
        let phases: Vec<&str> = phases.split(',').map(str::trim).collect();
        for phase in &phases {
            ensure!(
                ["floor", "hub", "onboard"].contains(phase),
                "DEPLOY_BENCH_PHASES: unknown phase {phase:?} (floor, hub, onboard)"
            );
        }
        let onboard_only = phases.contains(&"onboard") && !phases.contains(&"hub");
        Ok(Self {
            clusters,
            apps,
            objects,
            terminate: env_or("DEPLOY_BENCH_TERMINATE", 1u8)? != 0,
            update: env_or("DEPLOY_BENCH_UPDATE", 1u8)? != 0,
            concurrency,
            onboard_concurrency,
            ready_after: env_or("DEPLOY_BENCH_READY_AFTER", "1s".to_owned())?,
            poll: Duration::from_millis(env_or::<u64>("DEPLOY_BENCH_POLL_MS", 1000)?.max(10)),
            progress: Duration::from_millis(env_or("DEPLOY_BENCH_PROGRESS_MS", 5000)?),
            timeout: Duration::from_secs(env_or("DEPLOY_BENCH_TIMEOUT_SECS", 900)?),
            run_floor: phases.contains(&"floor"),
            run_hub: phases.contains(&"hub") || onboard_only,
            onboard_only,
            hub_args: std::env::var("DEPLOY_BENCH_HUB_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            helm: helm_binary()?,
            keep_logs: env_or("DEPLOY_BENCH_KEEP", 0u8)? != 0,
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// `EMCO_HELM_BIN`, `helm` on `PATH`, or the workspace's pinned copy in `.tools/bin`.
fn helm_binary() -> anyhow::Result<PathBuf> {
    if let Some(found) = emco_helm::find_helm() {
        return Ok(found);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
    ensure!(
        pinned.is_file(),
        "no helm binary: set EMCO_HELM_BIN, put helm on PATH, or install it as {}",
        pinned.display()
    );
    Ok(pinned)
}

// ---------------------------------------------------------------------------------------------
// The workload: generated charts and profiles.
// ---------------------------------------------------------------------------------------------

/// One app of the composite app: its chart and profile archives.
struct AppArchives {
    name: String,
    chart: Vec<u8>,
    profile: Vec<u8>,
}

const HELPERS_TPL: &str = r#"{{- define "bench.fullname" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}
{{- define "bench.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
"#;

const VALUES_YAML: &str = r#"extraConfigMaps: 0
replicaCount: 1
image: registry.example/bench/server:1.4.2
greeting: hello from the chart defaults
logLevel: info
port: 8080
features:
  cache: true
  metrics: true
  tracing: false
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {cpu: 200m, memory: 128Mi}
"#;

/// Template files of every chart (the same text; the names come from `.Chart.Name`).
const TEMPLATES: &[(&str, &str)] = &[
    ("_helpers.tpl", HELPERS_TPL),
    (
        "configmap-extra.yaml",
        r#"{{- range $i := until (int .Values.extraConfigMaps) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" $ }}-extra-{{ $i }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "bench.labels" $ | nindent 4 }}
data:
  index: {{ $i | quote }}
{{- end }}
"#,
    ),
    (
        "serviceaccount.yaml",
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "bench.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
"#,
    ),
    (
        "configmap-settings.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" . }}-settings
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
data:
  greeting: {{ .Values.greeting | quote }}
  logLevel: {{ .Values.logLevel | quote }}
  port: {{ .Values.port | quote }}
"#,
    ),
    (
        "configmap-features.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" . }}-features
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
data:
  {{- range $name, $enabled := .Values.features }}
  {{ $name }}: {{ $enabled | quote }}
  {{- end }}
"#,
    ),
    (
        "configmap-config.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" . }}-config
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
data:
  server.yaml: |
    listen: ":{{ .Values.port }}"
    log:
      level: {{ .Values.logLevel }}
      format: json
    upstreams:
      - name: primary
        url: http://{{ include "bench.fullname" . }}-primary:{{ .Values.port }}
        timeout: 5s
      - name: fallback
        url: http://{{ include "bench.fullname" . }}-fallback:{{ .Values.port }}
        timeout: 10s
"#,
    ),
    (
        "configmap-scripts.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "bench.fullname" . }}-scripts
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
data:
  healthcheck.sh: |
    #!/bin/sh
    wget -q -O- http://127.0.0.1:{{ .Values.port }}/healthz || exit 1
  warmup.sh: |
    #!/bin/sh
    for i in 1 2 3; do wget -q -O- http://127.0.0.1:{{ .Values.port }}/warmup; done
"#,
    ),
    (
        "secret.yaml",
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {{ include "bench.fullname" . }}-credentials
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
type: Opaque
data:
  username: {{ printf "%s-user" .Chart.Name | b64enc | quote }}
  password: {{ printf "%s-secret-%s" .Chart.Name .Release.Name | b64enc | quote }}
"#,
    ),
    (
        "role.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "bench.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["configmaps", "secrets"]
    verbs: ["get", "list", "watch"]
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list"]
"#,
    ),
    (
        "rolebinding.yaml",
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "bench.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "bench.fullname" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "bench.fullname" . }}
    namespace: {{ .Release.Namespace }}
"#,
    ),
    (
        "service.yaml",
        r#"apiVersion: v1
kind: Service
metadata:
  name: {{ include "bench.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
  ports:
    - name: http
      port: 80
      targetPort: {{ .Values.port }}
      protocol: TCP
"#,
    ),
    (
        "deployment.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "bench.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "bench.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Chart.Name }}
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        {{- include "bench.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ include "bench.fullname" . }}
      containers:
        - name: server
          image: {{ .Values.image }}
          args: ["--config", "/etc/bench/server.yaml"]
          ports:
            - name: http
              containerPort: {{ .Values.port }}
          envFrom:
            - configMapRef:
                name: {{ include "bench.fullname" . }}-settings
          env:
            - name: BENCH_USER
              valueFrom:
                secretKeyRef:
                  name: {{ include "bench.fullname" . }}-credentials
                  key: username
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 5
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/bench
            - name: scripts
              mountPath: /opt/bench
      volumes:
        - name: config
          configMap:
            name: {{ include "bench.fullname" . }}-config
        - name: scripts
          configMap:
            name: {{ include "bench.fullname" . }}-scripts
            defaultMode: 0755
"#,
    ),
];

/// Objects each chart renders to without extra ConfigMaps (every template but the helpers and
/// the extra ConfigMaps).
const FIXED_OBJECTS: usize = TEMPLATES.len() - 2;

/// An app's chart and profile; the profile asks for `extra` ConfigMaps beyond the fixed ten.
fn app_archives(name: &str, extra: usize) -> anyhow::Result<AppArchives> {
    let mut chart_files = vec![
        (
            format!("{name}/Chart.yaml"),
            format!(
                "apiVersion: v2\nname: {name}\ndescription: deploy benchmark app\ntype: application\nversion: 0.1.0\nappVersion: \"1.4.2\"\n"
            )
            .into_bytes(),
        ),
        (format!("{name}/values.yaml"), VALUES_YAML.as_bytes().to_vec()),
    ];
    for (file, text) in TEMPLATES {
        chart_files.push((format!("{name}/templates/{file}"), text.as_bytes().to_vec()));
    }
    let profile_files = vec![
        (
            "manifest.yaml".to_owned(),
            b"version: v1\ntype:\n  values: \"override_values.yaml\"\n".to_vec(),
        ),
        (
            "override_values.yaml".to_owned(),
            format!(
                "replicaCount: 2\ngreeting: hello from the {name} profile\nlogLevel: debug\nextraConfigMaps: {extra}\n"
            )
            .into_bytes(),
        ),
    ];
    Ok(AppArchives {
        name: name.to_owned(),
        chart: tar_gz(&chart_files)?,
        profile: tar_gz(&profile_files)?,
    })
}

/// One object ready to be server-side applied: its path under a cluster's server URL and body.
struct ApplyObject {
    path: String,
    body: bytes::Bytes,
}

/// Plural resource names of the kinds the charts render (the floor needs no discovery).
fn resource_path(api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<String> {
    let plural = match kind {
        "ServiceAccount" => "serviceaccounts",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Service" => "services",
        "Deployment" => "deployments",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        _ => return None,
    };
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Some(format!(
        "{prefix}/namespaces/{namespace}/{plural}/{name}?fieldManager={FIELD_MANAGER}&force=true"
    ))
}

/// Renders every app once with the real Helm, as the hub does, in Helm's install order.
async fn render_all(
    helm: &Path,
    apps: &[AppArchives],
    per_app: usize,
) -> anyhow::Result<Vec<ApplyObject>> {
    let renderer = HelmRenderer::new(HelmConfig::new(helm));
    let limits = ArchiveLimits::default();
    let mut objects = Vec::new();
    for app in apps {
        let chart = read_chart(&app.chart, &limits)
            .with_context(|| format!("reading the chart of {}", app.name))?;
        let profile = read_profile(&app.profile, &limits)
            .with_context(|| format!("reading the profile of {}", app.name))?;
        let release = renderer
            .render_release(&RenderRequest {
                chart: &chart,
                profile: Some(&profile),
                release_name: RELEASE,
                namespace: NAMESPACE,
                override_values: &[],
            })
            .await
            .with_context(|| format!("rendering {}", app.name))?;
        ensure!(
            release.crds.is_empty() && release.hooks.is_empty(),
            "{}: the floor applies plain resources only",
            app.name
        );
        ensure!(
            release.resources.len() == per_app,
            "{} rendered {} objects, expected {per_app}",
            app.name,
            release.resources.len()
        );
        for object in &release.resources {
            let namespace = object.namespace.as_deref().unwrap_or(NAMESPACE);
            let path = resource_path(&object.api_version, &object.kind, namespace, &object.name)
                .with_context(|| format!("no resource path for kind {}", object.kind))?;
            objects.push(ApplyObject {
                path,
                body: bytes::Bytes::from(serde_json::to_vec(&object.object)?),
            });
        }
    }
    Ok(objects)
}

// ---------------------------------------------------------------------------------------------
// Processes.
// ---------------------------------------------------------------------------------------------

/// A child process (`emco sim` or `emco serve`) with its output in files; killed when dropped.
struct Process {
    child: Child,
    label: &'static str,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Process {
    fn spawn(
        label: &'static str,
        binary: &Path,
        args: &[String],
        envs: &[(&str, std::ffi::OsString)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let stdout_path = log_dir.join(format!("{label}.stdout"));
        let stderr_path = log_dir.join(format!("{label}.stderr"));
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            // files, not pipes: nobody drains a pipe during the run and a full one would block
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        for (name, value) in envs {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawning {} {}", binary.display(), args.join(" ")))?;
        Ok(Self {
            child,
            label,
            stdout_path,
            stderr_path,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.stderr_path.display()));
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("{} stderr (tail):\n{}", self.label, &text[start..])
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(exit) = self.child.try_wait()? {
            bail!("{} exited ({exit}); {}", self.label, self.stderr_tail());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // the process may already be gone; nothing useful to do with either error here
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `emco sim`: the process, its base URL and where it wrote the kubeconfigs.
struct Sim {
    process: Process,
    kubeconfig_dir: PathBuf,
}

impl Sim {
    async fn start(
        binary: &Path,
        config: &Config,
        scratch: &Path,
        label: &'static str,
    ) -> anyhow::Result<Self> {
        let kubeconfig_dir = scratch.join(format!("{label}-kubeconfigs"));
        let args: Vec<String> = [
            "sim",
            "--clusters",
            &config.clusters.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--prefix",
            CLUSTER_PREFIX,
            "--ready-after",
            &config.ready_after,
            "--kubeconfig-dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([kubeconfig_dir.to_string_lossy().into_owned()])
        .collect();
        let mut process = Process::spawn(label, binary, &args, &[], scratch)?;
        let started = Instant::now();
        loop {
            process.ensure_running()?;
            let stdout = std::fs::read_to_string(&process.stdout_path).unwrap_or_default();
            if stdout.contains("clusters ready on http://") {
                return Ok(Self {
                    process,
                    kubeconfig_dir,
                });
            }
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "emco sim did not report ready within {START_TIMEOUT:?}; {}",
                process.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kubeconfig(&self, cluster: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.kubeconfig_dir.join(format!("{cluster}.kubeconfig"));
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The `server:` URL of `cluster`'s kubeconfig.
    fn server_url(&self, cluster: &str) -> anyhow::Result<String> {
        let text = String::from_utf8(self.kubeconfig(cluster)?)?;
        text.lines()
            .find_map(|line| line.trim().strip_prefix("server:"))
            .map(|server| server.trim().to_owned())
            .with_context(|| format!("no server: line in {cluster}'s kubeconfig"))
    }
}

fn cluster_name(i: usize) -> String {
    format!("{CLUSTER_PREFIX}{i}")
}

/// Asks the OS for a free port; the small window before the hub binds it is acceptable here.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn start_hub(
    binary: &Path,
    config: &Config,
    scratch: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<(Process, String)> {
    let data_dir = scratch.join("hub-data");
    std::fs::create_dir_all(&data_dir)?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut args = vec![
        "serve".to_owned(),
        "--listen".to_owned(),
        listen.clone(),
        "--data".to_owned(),
        data_dir.to_string_lossy().into_owned(),
    ];
    args.extend(config.hub_args.iter().cloned());
    let mut process = Process::spawn(
        "hub",
        binary,
        &args,
        &[
            // `--helm` and the synchronizer's `--max-concurrent-clusters` through their
            // environment variables, so older hub builds without the flags still start.
            ("EMCO_HELM", config.helm.clone().into_os_string()),
            ("EMCO_HELM_BIN", config.helm.clone().into_os_string()),
            (
                "EMCO_MAX_CONCURRENT_CLUSTERS",
                config.concurrency.to_string().into(),
            ),
        ],
        scratch,
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
            && response.status() == reqwest::StatusCode::OK
        {
            return Ok((process, base));
        }
        ensure!(
            started.elapsed() < START_TIMEOUT,
            "the hub did not answer /healthz within {START_TIMEOUT:?}; {}",
            process.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The `p`th percentile (0..=100) of `samples`, nearest rank.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples a process's VmRSS until stopped; returns (elapsed, KiB) pairs.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Duration, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(now) = usage(pid) {
                    samples.push((started.elapsed(), now.rss_kib));
                }
                tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
            }
            samples
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Prints a report section as soon as it is measured (a full run takes minutes).
fn emit(text: &str) {
    print!("{text}");
    // Progress only: a closed stdout must not fail the run.
    let _ = std::io::stdout().flush();
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The floor.
// ---------------------------------------------------------------------------------------------

struct FloorResult {
    applies: usize,
    applied: Duration,
    ready: Duration,
    ready_rounds: usize,
    sim_usage: Usage,
    /// CPU seconds of this process (the plain client) and of the simulator while applying.
    client_cpu: f64,
    sim_cpu: f64,
}

async fn apply_object(
    client: &reqwest::Client,
    server: &str,
    object: &ApplyObject,
) -> anyhow::Result<()> {
    let url = format!("{server}{}", object.path);
    let response = client
        .patch(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/apply-patch+yaml",
        )
        .body(object.body.clone())
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("PATCH {url} answered {status}: {body}");
    }
    // Read the answer as a real client does.
    response.bytes().await?;
    Ok(())
}

/// Whether every Deployment of the release on one cluster reports all its replicas ready.
async fn deployments_ready(
    client: &reqwest::Client,
    server: &str,
    expected: usize,
) -> anyhow::Result<bool> {
    let url = format!("{server}/apis/apps/v1/namespaces/{NAMESPACE}/deployments");
    let list: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await?;
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let ready = items
        .iter()
        .filter(|d| {
            let wanted = d["spec"]["replicas"].as_u64().unwrap_or(1);
            let generation = d["metadata"]["generation"].as_u64().unwrap_or(0);
            d["status"]["observedGeneration"].as_u64().unwrap_or(0) >= generation
                && d["status"]["readyReplicas"].as_u64().unwrap_or(0) >= wanted
        })
        .count();
    Ok(ready >= expected)
}

async fn run_floor(
    binary: &Path,
    config: &Config,
    scratch: &Path,
    objects: &[ApplyObject],
) -> anyhow::Result<FloorResult> {
    let mut sim = Sim::start(binary, config, scratch, "floor-sim").await?;
    let servers: Vec<String> = (1..=config.clusters)
        .map(|i| sim.server_url(&cluster_name(i)))
        .collect::<anyhow::Result<_>>()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()?;

    let client_before = usage(std::process::id())?;
    let sim_before = usage(sim.process.pid())?;
    let started = Instant::now();
    stream::iter(servers.iter())
        .map(|server| {
            let client = &client;
            async move {
                for object in objects {
                    apply_object(client, server, object).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(config.concurrency)
        .try_collect::<()>()
        .await
        .with_context(|| format!("floor apply; {}", sim.process.stderr_tail()))?;
    let applied = started.elapsed();
    let client_cpu = usage(std::process::id())?.cpu_seconds - client_before.cpu_seconds;
    let sim_cpu = usage(sim.process.pid())?.cpu_seconds - sim_before.cpu_seconds;

    // Readiness: rounds over every cluster not yet ready, with the same concurrency.
    let mut pending: Vec<&String> = servers.iter().collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        ensure!(
            started.elapsed() < config.timeout,
            "floor: {} clusters still not ready after {:?}",
            pending.len(),
            config.timeout
        );
        rounds += 1;
        let states: Vec<bool> = stream::iter(pending.iter())
            .map(|server| deployments_ready(&client, server, config.apps))
            .buffered(config.concurrency)
            .try_collect()
            .await?;
        pending = pending
            .into_iter()
            .zip(states)
            .filter_map(|(server, ready)| (!ready).then_some(server))
            .collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ready = started.elapsed();
    sim.process.ensure_running()?;
    let sim_usage = usage(sim.process.pid())?;
    Ok(FloorResult {
        applies: servers.len() * objects.len(),
        applied,
        ready,
        ready_rounds: rounds,
        sim_usage,
        client_cpu,
        sim_cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// The hub.
// ---------------------------------------------------------------------------------------------

enum Body {
    Json(Value),
    /// `metadata` JSON part plus one `file` part.
    Multipart {
        metadata: Value,
        file_name: &'static str,
        file: Vec<u8>,
    },
    Empty,
}

/// `POST base+path`, expecting `expected`; returns the answer's latency.
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Body,
    expected: reqwest::StatusCode,
) -> anyhow::Result<Duration> {
    let url = format!("{base}{path}");
    let request = match body {
        Body::Json(body) => client.post(&url).json(&body),
        Body::Multipart {
            metadata,
            file_name,
            file,
        } => {
            let form = reqwest::multipart::Form::new()
                .text("metadata", metadata.to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(file).file_name(file_name),
                );
            client.post(&url).multipart(form)
        }
        Body::Empty => client.post(&url),
    };
    let started = Instant::now();
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer = response.bytes().await?;
    let elapsed = started.elapsed();
    if status != expected {
        bail!(
            "POST {url} answered {status} (expected {expected}): {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(elapsed)
}

/// One onboarding step and how long it took.
struct Step {
    what: String,
    count: usize,
    wall: Duration,
}

const CREATED: reqwest::StatusCode = reqwest::StatusCode::CREATED;
const ACCEPTED: reqwest::StatusCode = reqwest::StatusCode::ACCEPTED;

fn project_path() -> String {
    format!("/v2/projects/{PROJECT}")
}

fn composite_app_path() -> String {
    format!(
        "{}/composite-apps/{COMPOSITE_APP}/{COMPOSITE_APP_VERSION}",
        project_path()
    )
}

fn dig_path() -> String {
    format!(
        "{}/deployment-intent-groups/{DEPLOYMENT_INTENT_GROUP}",
        composite_app_path()
    )
}

/// Runs the onboarding requests step by step, recording how long each step took.
struct Onboarder<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    concurrency: usize,
    steps: Vec<Step>,
}

impl Onboarder<'_> {
    /// Creates (201) with the configured number in flight.
    async fn create(&mut self, what: &str, requests: Vec<(String, Body)>) -> anyhow::Result<()> {
        let count = requests.len();
        let wall = post_many(self.client, self.base, requests, self.concurrency).await?;
        self.steps.push(Step {
            what: what.to_owned(),
            count,
            wall,
        });
        Ok(())
    }

    /// One create (201).
    async fn create_one(
        &mut self,
        what: &str,
        collection: String,
        body: Value,
    ) -> anyhow::Result<()> {
        self.create(what, vec![(collection, Body::Json(body))])
            .await
    }

    /// An action answered with 202.
    async fn action(&mut self, what: &str, path: String) -> anyhow::Result<()> {
        let wall = post(self.client, self.base, &path, Body::Empty, ACCEPTED).await?;
        self.steps.push(Step {
            what: what.to_owned(),
            count: 1,
            wall,
        });
        Ok(())
    }
}

/// Everything before instantiate: returns the steps' timings.
async fn onboard(
    client: &reqwest::Client,
    base: &str,
    sim: &Sim,
    config: &Config,
    apps: &[AppArchives],
) -> anyhow::Result<Vec<Step>> {
    let mut run = Onboarder {
        client,
        base,
        concurrency: config.onboard_concurrency,
        steps: Vec::new(),
    };
    let clusters_path = format!("/v2/cluster-providers/{PROVIDER}/clusters");
    let names: Vec<String> = (1..=config.clusters).map(cluster_name).collect();

    run.create_one(
        "cluster provider",
        "/v2/cluster-providers".to_owned(),
        json!({"metadata": {"name": PROVIDER, "description": "emco sim"}}),
    )
    .await?;
    let mut clusters = Vec::with_capacity(names.len());
    for name in &names {
        clusters.push((
            clusters_path.clone(),
            Body::Multipart {
                metadata: json!({"metadata": {"name": name}}),
                file_name: "kubeconfig",
                file: sim.kubeconfig(name)?,
            },
        ));
    }
    run.create("clusters (multipart with kubeconfig)", clusters)
        .await?;
    let labels = names
        .iter()
        .map(|name| {
            (
                format!("{clusters_path}/{name}/labels"),
                Body::Json(json!({"clusterLabel": CLUSTER_LABEL})),
            )
        })
        .collect();
    run.create("cluster labels", labels).await?;
    run.create_one(
        "project",
        "/v2/projects".to_owned(),
        json!({"metadata": {"name": PROJECT}}),
    )
    .await?;
    let cloud_path = format!("{}/logical-clouds/{LOGICAL_CLOUD}", project_path());
    run.create_one(
        "logical cloud (level 0)",
        format!("{}/logical-clouds", project_path()),
        json!({"metadata": {"name": LOGICAL_CLOUD}, "spec": {"level": "0"}}),
    )
    .await?;
    let references = names
        .iter()
        .map(|name| {
            (
                format!("{cloud_path}/cluster-references"),
                Body::Json(json!({
                    "metadata": {"name": format!("ref-{name}")},
                    "spec": {"clusterProvider": PROVIDER, "cluster": name, "loadBalancerIP": "0.0.0.0"}
                })),
            )
        })
        .collect();
    run.create("cluster references", references).await?;
    run.action(
        "logical cloud instantiate",
        format!("{cloud_path}/instantiate"),
    )
    .await?;

    run.create_one(
        "composite app",
        format!("{}/composite-apps", project_path()),
        json!({
            "metadata": {"name": COMPOSITE_APP},
            "spec": {"compositeAppVersion": COMPOSITE_APP_VERSION}
        }),
    )
    .await?;
    let charts = apps
        .iter()
        .map(|app| {
            (
                format!("{}/apps", composite_app_path()),
                Body::Multipart {
                    metadata: json!({"metadata": {"name": app.name, "description": "deploy benchmark app"}}),
                    file_name: "chart.tgz",
                    file: app.chart.clone(),
                },
            )
        })
        .collect();
    run.create("apps (multipart with chart)", charts).await?;
    run.create_one(
        "composite profile",
        format!("{}/composite-profiles", composite_app_path()),
        json!({"metadata": {"name": COMPOSITE_PROFILE}}),
    )
    .await?;
    let profile_path = format!(
        "{}/composite-profiles/{COMPOSITE_PROFILE}",
        composite_app_path()
    );
    let profiles = apps
        .iter()
        .map(|app| {
            (
                format!("{profile_path}/profiles"),
                Body::Multipart {
                    metadata: json!({"metadata": {"name": format!("{}-profile", app.name)}, "spec": {"app": app.name}}),
                    file_name: "profile.tgz",
                    file: app.profile.clone(),
                },
            )
        })
        .collect();
    run.create("app profiles (multipart)", profiles).await?;
    run.create_one(
        "deployment intent group",
        format!("{}/deployment-intent-groups", composite_app_path()),
        json!({
            "metadata": {"name": DEPLOYMENT_INTENT_GROUP},
            "spec": {
                "compositeProfile": COMPOSITE_PROFILE,
                "version": RELEASE,
                "logicalCloud": LOGICAL_CLOUD,
                "overrideValues": []
            }
        }),
    )
    .await?;
    run.create_one(
        "generic placement intent",
        format!("{}/generic-placement-intents", dig_path()),
        json!({"metadata": {"name": PLACEMENT_INTENT}}),
    )
    .await?;
    run.create_one(
        "group intents",
        format!("{}/intents", dig_path()),
        json!({
            "metadata": {"name": "intents"},
            "spec": {"intent": {"genericPlacementIntent": PLACEMENT_INTENT}}
        }),
    )
    .await?;
    let placements = apps
        .iter()
        .map(|app| {
            (
                format!(
                    "{}/generic-placement-intents/{PLACEMENT_INTENT}/app-intents",
                    dig_path()
                ),
                Body::Json(json!({
                    "metadata": {"name": format!("{}-placement", app.name)},
                    "spec": {
                        "app": app.name,
                        "intent": {"allOf": [{"clusterProvider": PROVIDER, "clusterLabel": CLUSTER_LABEL}]}
                    }
                })),
            )
        })
        .collect();
    run.create("app placement intents (allOf by label)", placements)
        .await?;
    run.action("approve", format!("{}/approve", dig_path()))
        .await?;
    Ok(run.steps)
}

/// Sends `requests` (each expecting 201) with `concurrency` in flight; returns the wall time.
async fn post_many(
    client: &reqwest::Client,
    base: &str,
    requests: Vec<(String, Body)>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    stream::iter(requests)
        .map(|(path, body)| async move { post(client, base, &path, body, CREATED).await })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<Duration>>()
        .await?;
    Ok(started.elapsed())
}

/// The counts of one status query, e.g. `{"Applied": 49000, "Pending": 1000}`.
fn counts(status: &Value, key: &str) -> BTreeMap<String, u64> {
    status[key]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn counts_text(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "(none)".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn get_status(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> anyhow::Result<(Value, Duration)> {
    let url = format!("{base}{}/status?{query}", dig_path());
    let started = Instant::now();
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = started.elapsed();
    ensure!(
        status == reqwest::StatusCode::OK,
        "GET {url} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((serde_json::from_slice(&body)?, elapsed))
}

struct HubResult {
    steps: Vec<Step>,
    onboard_wall: Duration,
    before: Usage,
    deploy: Option<DeployResult>,
    end: Usage,
    sim_usage: Usage,
    rss_samples: Vec<(Duration, u64)>,
}

struct DeployResult {
    instantiate_latency: Duration,
    applied: Duration,
    ready: Duration,
    applied_counts: BTreeMap<String, u64>,
    ready_counts: BTreeMap<String, u64>,
    status_polls: usize,
    status_latency_max: Duration,
    status_latency_sum: Duration,
    /// Every status query's latency while the rollout ran (until all Ready).
    status_latencies: Vec<Duration>,
    /// The hub's data directory after all Ready.
    store_bytes: u64,
    /// The update of one app's chart, when measured.
    update: Option<UpdateResult>,
    /// `POST .../terminate` until the status says Terminated.
    terminated: Option<Duration>,
    hub_cpu: f64,
    sim_cpu: f64,
}

/// What the update of one app's chart (one Deployment's image) took.
struct UpdateResult {
    /// `POST .../update` until its 202 (renders every chart, builds and stores the revision).
    answered: Duration,
    /// Until the status said Updated.
    updated: Duration,
    /// Until everything was Ready again.
    ready: Duration,
    /// Write requests the simulated clusters answered from the update's request to Ready.
    writes: u64,
    /// The hub's RSS once everything was Ready again.
    rss_kib: u64,
}

/// The first app's chart with its Deployment's image changed, nothing else.
fn updated_chart(name: &str) -> anyhow::Result<Vec<u8>> {
    let values = VALUES_YAML.replace(
        "image: registry.example/bench/server:1.4.2",
        "image: registry.example/bench/server:1.4.3",
    );
    ensure!(values != VALUES_YAML, "the chart's image line moved");
    let mut files = vec![
        (
            format!("{name}/Chart.yaml"),
            format!(
                "apiVersion: v2\nname: {name}\ndescription: deploy benchmark app\ntype: application\nversion: 0.1.0\nappVersion: \"1.4.2\"\n"
            )
            .into_bytes(),
        ),
        (format!("{name}/values.yaml"), values.into_bytes()),
    ];
    for (file, text) in TEMPLATES {
        files.push((format!("{name}/templates/{file}"), text.as_bytes().to_vec()));
    }
    tar_gz(&files)
}

/// Write requests every simulated cluster answered so far.
async fn sim_writes(client: &reqwest::Client, sim: &Sim) -> anyhow::Result<u64> {
    let server = sim.server_url(&cluster_name(1))?;
    let base = server
        .split_once("/clusters/")
        .map_or(server.as_str(), |(base, _)| base);
    let stats: Value = client
        .get(format!("{base}/sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    stats["writes"].as_u64().context("/sim/stats has no writes")
}

/// Replaces the first app's chart, then updates and waits for Updated and Ready.
async fn update_and_wait(
    client: &reqwest::Client,
    base: &str,
    config: &Config,
    hub: &mut Process,
    sim: &Sim,
) -> anyhow::Result<UpdateResult> {
    let app = "app-1";
    let url = format!("{base}{}/apps/{app}", composite_app_path());
    let form = reqwest::multipart::Form::new()
        .text("metadata", json!({"metadata": {"name": app}}).to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(updated_chart(app)?).file_name("chart.tgz"),
        );
    let response = client.put(&url).multipart(form).send().await?;
    ensure!(
        response.status().is_success(),
        "PUT {url}: {}",
        response.status()
    );
    let writes_before = sim_writes(client, sim).await?;
    let started = Instant::now();
    let answered = post(
        client,
        base,
        &format!("{}/update", dig_path()),
        Body::Empty,
        ACCEPTED,
    )
    .await?;
    emit(&format!(
        "update answered 202 after {:.3} s\n",
        secs(answered)
    ));
    let mut updated = None;
    let ready = loop {
        hub.ensure_running()?;
        if updated.is_none() {
            let (status, _) = get_status(client, base, "status=deployed&output=summary").await?;
            if status["deployedStatus"] == "Updated" {
                updated = Some(started.elapsed());
                emit(&format!("Updated after {:.2} s\n", secs(started.elapsed())));
            }
        } else {
            let (status, _) = get_status(client, base, "status=ready&output=summary").await?;
            if status["readyStatus"] == "Ready" {
                break started.elapsed();
            }
        }
        ensure!(
            started.elapsed() < config.timeout,
            "the update did not finish within {:?}",
            config.timeout
        );
        tokio::time::sleep(FINAL_POLL).await;
    };
    let writes = sim_writes(client, sim).await? - writes_before;
    let rss_kib = usage(hub.pid())?.rss_kib;
    emit(&format!(
        "update Ready after {:.2} s; {writes} write requests reached the clusters ({:.2} per cluster)\n",
        secs(ready),
        writes as f64 / config.clusters as f64
    ));
    Ok(UpdateResult {
        answered,
        updated: updated.unwrap_or(ready),
        ready,
        writes,
        rss_kib,
    })
}

async fn run_hub(
    binary: &Path,
    config: &Config,
    scratch: &Path,
    apps: &[AppArchives],
    expected: u64,
) -> anyhow::Result<HubResult> {
    let mut sim = Sim::start(binary, config, scratch, "hub-sim").await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let (mut hub, base) = start_hub(binary, config, scratch, &client).await?;
    let hub_pid = hub.pid();
    let sampler = RssSampler::start(hub_pid);

    let started = Instant::now();
    let steps = onboard(&client, &base, &sim, config, apps)
        .await
        .with_context(|| format!("onboarding; {}", hub.stderr_tail()))?;
    let onboard_wall = started.elapsed();
    let before = usage(hub_pid)?;
    let sim_before = usage(sim.process.pid())?;
    emit(&format!(
        "onboarded {} clusters in {:.2} s; hub RSS {:.1} MiB\n",
        config.clusters,
        secs(onboard_wall),
        kib_to_mib(before.rss_kib)
    ));

    let deploy = if config.onboard_only {
        None
    } else {
        Some(
            instantiate_and_wait(
                &client,
                &base,
                config,
                expected,
                &scratch.join("hub-data"),
                &mut hub,
                &mut sim,
            )
            .await
            .with_context(|| hub.stderr_tail())?,
        )
    };
    let end = usage(hub_pid)?;
    let sim_end = usage(sim.process.pid())?;
    let rss_samples = sampler.finish().await;
    let deploy = deploy.map(|mut d| {
        d.hub_cpu = end.cpu_seconds - before.cpu_seconds;
        d.sim_cpu = sim_end.cpu_seconds - sim_before.cpu_seconds;
        d
    });
    Ok(HubResult {
        steps,
        onboard_wall,
        before,
        deploy,
        end,
        sim_usage: sim_end,
        rss_samples,
    })
}

async fn instantiate_and_wait(
    client: &reqwest::Client,
    base: &str,
    config: &Config,
    expected: u64,
    data_dir: &Path,
    hub: &mut Process,
    sim: &mut Sim,
) -> anyhow::Result<DeployResult> {
    let started = Instant::now();
    let instantiate_latency = post(
        client,
        base,
        &format!("{}/instantiate", dig_path()),
        Body::Empty,
        ACCEPTED,
    )
    .await?;
    emit(&format!(
        "instantiate answered 202 after {:.3} s; waiting for {expected} objects Applied\n",
        secs(instantiate_latency)
    ));

    let mut polls = 0usize;
    let mut latency_max = Duration::ZERO;
    let mut latency_sum = Duration::ZERO;
    let mut latencies = Vec::new();
    let mut last_progress = Instant::now();
    let mut wait_for = async |query: &str, key: &str, done: &dyn Fn(&Value) -> bool| {
        loop {
            hub.ensure_running()?;
            sim.process.ensure_running()?;
            let (status, latency) = get_status(client, base, query).await?;
            polls += 1;
            latency_max = latency_max.max(latency);
            latency_sum += latency;
            latencies.push(latency);
            let elapsed = started.elapsed();
            if done(&status) {
                return anyhow::Ok((elapsed, counts(&status, key)));
            }
            if last_progress.elapsed() >= config.progress {
                last_progress = Instant::now();
                emit(&format!(
                    "  {:>7.1} s  {key}: {} (answered in {:.1} ms)\n",
                    secs(elapsed),
                    counts_text(&counts(&status, key)),
                    secs(latency) * 1e3
                ));
            }
            ensure!(
                elapsed < config.timeout,
                "not done after {:?}: {key} {}",
                config.timeout,
                counts_text(&counts(&status, key))
            );
            // Near the end, poll often: the poll interval must not blur the time measured.
            let target = if key == "readyCounts" {
                "Ready"
            } else {
                "Applied"
            };
            let finished = counts(&status, key).get(target).copied().unwrap_or(0);
            let nearly_done = finished.saturating_mul(100) >= expected.saturating_mul(95);
            tokio::time::sleep(if nearly_done {
                config.poll.min(FINAL_POLL)
            } else {
                config.poll
            })
            .await;
        }
    };
    let all_applied = |status: &Value| {
        let counts = counts(status, "deployedCounts");
        counts.get("Applied").copied().unwrap_or(0) >= expected
            && counts.iter().all(|(k, v)| k == "Applied" || *v == 0)
    };
    let (applied, applied_counts) = wait_for(
        "status=deployed&output=summary",
        "deployedCounts",
        &all_applied,
    )
    .await?;
    emit(&format!("all Applied after {:.2} s\n", secs(applied)));
    let all_ready = |status: &Value| {
        let counts = counts(status, "readyCounts");
        status["readyStatus"] == "Ready" && counts.get("Ready").copied().unwrap_or(0) >= expected
    };
    let (ready, ready_counts) =
        wait_for("status=ready&output=summary", "readyCounts", &all_ready).await?;
    emit(&format!("all Ready after {:.2} s\n", secs(ready)));
    let store_bytes = dir_size(data_dir)?;
    let update = if config.update {
        Some(update_and_wait(client, base, config, hub, sim).await?)
    } else {
        None
    };
    let terminated = if config.terminate {
        let started = Instant::now();
        post(
            client,
            base,
            &format!("{}/terminate", dig_path()),
            Body::Empty,
            ACCEPTED,
        )
        .await?;
        loop {
            hub.ensure_running()?;
            let (status, _) = get_status(client, base, "status=deployed&output=summary").await?;
            if status["deployedStatus"] == "Terminated" {
                break;
            }
            ensure!(
                started.elapsed() < config.timeout,
                "not terminated after {:?}: {}",
                config.timeout,
                status["deployedStatus"]
            );
            tokio::time::sleep(FINAL_POLL.max(config.poll / 10)).await;
        }
        let took = started.elapsed();
        emit(&format!("terminated after {:.2} s\n", secs(took)));
        Some(took)
    } else {
        None
    };
    emit("\n");
    Ok(DeployResult {
        instantiate_latency,
        applied,
        ready,
        applied_counts,
        ready_counts,
        status_polls: polls,
        status_latency_max: latency_max,
        status_latency_sum: latency_sum,
        status_latencies: latencies,
        store_bytes,
        update,
        terminated,
        hub_cpu: 0.0,
        sim_cpu: 0.0,
    })
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

async fn run(config: Config) -> anyhow::Result<()> {
    let binary = Path::new(env!("CARGO_BIN_EXE_emco"));
    let scratch = tempfile::Builder::new()
        .prefix("emco-deploy-bench")
        .tempdir()?;
    let apps: Vec<AppArchives> = (1..=config.apps)
        .map(|a| app_archives(&format!("app-{a}"), config.objects - FIXED_OBJECTS))
        .collect::<anyhow::Result<_>>()?;
    let render_started = Instant::now();
    let objects = render_all(&config.helm, &apps, config.objects).await?;
    let render_time = render_started.elapsed();
    let expected = (objects.len() * config.clusters) as u64;
    emit(&format!(
        "emco binary: {}\nhelm: {}\n{} clusters, {} apps x {} objects = {} objects per cluster, {expected} in all; \
         floor concurrency {} clusters; simulator --ready-after {}\n\
         rendering the {} charts once took {:.3} s\n\n",
        binary.display(),
        config.helm.display(),
        config.clusters,
        config.apps,
        config.objects,
        objects.len(),
        config.concurrency,
        config.ready_after,
        config.apps,
        secs(render_time),
    ));

    let floor = if config.run_floor {
        let floor = run_floor(binary, &config, scratch.path(), &objects).await?;
        emit(&format!(
            "floor: {} applies in {:.2} s ({:.0}/s); every Deployment ready after {:.2} s ({} rounds); sim peak RSS {:.1} MiB\n\n",
            floor.applies,
            secs(floor.applied),
            floor.applies as f64 / secs(floor.applied).max(1e-9),
            secs(floor.ready),
            floor.ready_rounds,
            kib_to_mib(floor.sim_usage.peak_rss_kib),
        ));
        Some(floor)
    } else {
        None
    };

    let hub = if config.run_hub {
        Some(run_hub(binary, &config, scratch.path(), &apps, expected).await?)
    } else {
        None
    };

    emit(&report(&config, expected, floor.as_ref(), hub.as_ref()));
    // Last, one line for machines.
    emit(&format!(
        "{}\n",
        summary_json(&config, expected, floor.as_ref(), hub.as_ref())
    ));
    if config.keep_logs {
        emit(&format!("\nlogs kept in {}\n", scratch.keep().display()));
    }
    Ok(())
}

/// The run's figures as one JSON object (`null` for what was not measured).
fn summary_json(
    config: &Config,
    expected: u64,
    floor: Option<&FloorResult>,
    hub: Option<&HubResult>,
) -> Value {
    let deploy = hub.and_then(|hub| hub.deploy.as_ref());
    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    let ms = |d: Duration| round(secs(d) * 1e3, 1);
    json!({
        "clusters": config.clusters,
        "apps": config.apps,
        "objects_per_app": config.objects,
        "objects": expected,
        "concurrency": config.concurrency,
        "applied_s": deploy.map(|d| round(secs(d.applied), 2)),
        "ready_s": deploy.map(|d| round(secs(d.ready), 2)),
        "floor_applied_s": floor.map(|f| round(secs(f.applied), 2)),
        "floor_ready_s": floor.map(|f| round(secs(f.ready), 2)),
        "ratio": deploy.zip(floor).map(|(d, f)| round(secs(d.applied) / secs(f.applied).max(1e-9), 2)),
        "hub_peak_rss_mib": hub.map(|h| round(kib_to_mib(h.end.peak_rss_kib), 1)),
        "sim_peak_rss_mib": hub.map(|h| round(kib_to_mib(h.sim_usage.peak_rss_kib), 1)),
        "status_p50_ms": deploy.map(|d| ms(percentile(&d.status_latencies, 50.0))),
        "status_p99_ms": deploy.map(|d| ms(percentile(&d.status_latencies, 99.0))),
        "status_queries": deploy.map(|d| d.status_latencies.len()),
        "store_bytes": deploy.map(|d| d.store_bytes),
        "store_bytes_per_object": deploy.map(|d| round(d.store_bytes as f64 / expected.max(1) as f64, 0)),
        "update_answered_s": deploy.and_then(|d| d.update.as_ref()).map(|u| round(secs(u.answered), 3)),
        "update_updated_s": deploy.and_then(|d| d.update.as_ref()).map(|u| round(secs(u.updated), 2)),
        "update_ready_s": deploy.and_then(|d| d.update.as_ref()).map(|u| round(secs(u.ready), 2)),
        "update_writes": deploy.and_then(|d| d.update.as_ref()).map(|u| u.writes),
        "update_writes_per_cluster": deploy.and_then(|d| d.update.as_ref()).map(|u| round(u.writes as f64 / config.clusters as f64, 2)),
        "update_hub_rss_mib": deploy.and_then(|d| d.update.as_ref()).map(|u| round(kib_to_mib(u.rss_kib), 1)),
        "terminate_s": deploy.and_then(|d| d.terminated).map(|t| round(secs(t), 2)),
        "hub_cpu_s": deploy.map(|d| round(d.hub_cpu, 1)),
        "sim_cpu_s": deploy.map(|d| round(d.sim_cpu, 1)),
    })
}

fn report(
    config: &Config,
    expected: u64,
    floor: Option<&FloorResult>,
    hub: Option<&HubResult>,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    if let Some(hub) = hub {
        line(format!(
            "#### Onboarding through REST ({} requests in flight)\n",
            config.onboard_concurrency
        ));
        line("| step | requests | wall s |".to_owned());
        line("|---|--:|--:|".to_owned());
        for step in &hub.steps {
            line(format!(
                "| {} | {} | {:.2} |",
                step.what,
                step.count,
                secs(step.wall)
            ));
        }
        line(format!(
            "| **all** | {} | {:.2} |\n",
            hub.steps.iter().map(|s| s.count).sum::<usize>(),
            secs(hub.onboard_wall)
        ));
    }
    line(format!(
        "#### Deploy: {} clusters x {} apps x {} objects = {expected} objects\n",
        config.clusters, config.apps, config.objects
    ));
    line("| measure | value |".to_owned());
    line("|---|--:|".to_owned());
    if let Some(floor) = floor {
        line(format!(
            "| floor: server-side apply of every object, {} clusters in flight | {:.2} s ({:.0} applies/s) |",
            config.concurrency,
            secs(floor.applied),
            floor.applies as f64 / secs(floor.applied).max(1e-9)
        ));
        line(format!(
            "| floor: until every Deployment is ready | {:.2} s |",
            secs(floor.ready)
        ));
        line(format!(
            "| floor: client / simulator CPU time while applying | {:.1} s / {:.1} s |",
            floor.client_cpu, floor.sim_cpu
        ));
        line(format!(
            "| floor: simulator peak RSS | {:.1} MiB |",
            kib_to_mib(floor.sim_usage.peak_rss_kib)
        ));
    }
    if let Some(hub) = hub {
        if let Some(deploy) = &hub.deploy {
            line(format!(
                "| hub: `POST .../instantiate` latency (202) | {:.3} s |",
                secs(deploy.instantiate_latency)
            ));
            line(format!(
                "| hub: instantiate to all Applied | {:.2} s |",
                secs(deploy.applied)
            ));
            line(format!(
                "| hub: instantiate to all Ready | {:.2} s |",
                secs(deploy.ready)
            ));
            if let Some(floor) = floor {
                line(format!(
                    "| **ratio: hub Applied / floor** (target <= 1.5) | **{:.2}x** |",
                    secs(deploy.applied) / secs(floor.applied).max(1e-9)
                ));
                line(format!(
                    "| ratio: hub Ready / floor Ready | {:.2}x |",
                    secs(deploy.ready) / secs(floor.ready).max(1e-9)
                ));
            }
            line(format!(
                "| hub: final deployedCounts / readyCounts | {} / {} |",
                counts_text(&deploy.applied_counts),
                counts_text(&deploy.ready_counts)
            ));
            line(format!(
                "| hub: status polls (every {} ms): count, mean / max latency, total time answering | {} polls, {:.1} / {:.1} ms, {:.1} s |",
                config.poll.as_millis(),
                deploy.status_polls,
                secs(deploy.status_latency_sum) * 1e3 / deploy.status_polls.max(1) as f64,
                secs(deploy.status_latency_max) * 1e3,
                secs(deploy.status_latency_sum)
            ));
            line(format!(
                "| hub: status summary latency during the rollout, p50 / p99 (target p99 <= 100 ms) | {:.1} / {:.1} ms |",
                secs(percentile(&deploy.status_latencies, 50.0)) * 1e3,
                secs(percentile(&deploy.status_latencies, 99.0)) * 1e3
            ));
            line(format!(
                "| hub / simulator CPU time during the deploy | {:.1} s / {:.1} s |",
                deploy.hub_cpu, deploy.sim_cpu
            ));
            line(format!(
                "| hub store on disk after all Ready (target <= 2 KiB per object) | {:.1} MiB, {:.0} bytes per object |",
                deploy.store_bytes as f64 / (1024.0 * 1024.0),
                deploy.store_bytes as f64 / expected.max(1) as f64
            ));
            if let Some(terminated) = deploy.terminated {
                line(format!(
                    "| hub: terminate until Terminated | {:.2} s |",
                    secs(terminated)
                ));
            }
        }
        let sampled_max = hub
            .rss_samples
            .iter()
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0);
        line(format!(
            "| hub RSS after onboarding (before instantiate) | {:.1} MiB |",
            kib_to_mib(hub.before.rss_kib)
        ));
        line(format!(
            "| **hub peak RSS** (VmHWM; target < 512 MiB) | **{:.1} MiB** |",
            kib_to_mib(hub.end.peak_rss_kib)
        ));
        line(format!(
            "| hub RSS: highest of {} samples every {} ms / at the end | {:.1} / {:.1} MiB |",
            hub.rss_samples.len(),
            RSS_SAMPLE_INTERVAL.as_millis(),
            kib_to_mib(sampled_max),
            kib_to_mib(hub.end.rss_kib)
        ));
        line(format!(
            "| simulator peak RSS (hub run) | {:.1} MiB |",
            kib_to_mib(hub.sim_usage.peak_rss_kib)
        ));
    }
    out
}
