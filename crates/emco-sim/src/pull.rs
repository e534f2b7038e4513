//! What the pull modes ([`crate::flux`], [`crate::configsync`], [`crate::argocd`]) share:
//! talking to a cluster through its own API (server-side apply, patch, delete, status writes),
//! inventory entries, Git checkouts with the real git CLI, and reading manifest files.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sim;
use crate::api::{self, ApiRequest};
use crate::catalog::{self, ResourceDef};
use crate::cluster::Cluster;

/// One inventory entry, `{ns}_{name}_{group}_{kind}` and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub id: String,
    pub v: String,
}

impl Entry {
    /// Namespace (empty when cluster-scoped), name, group and kind.
    pub fn parts(&self) -> Option<(&str, &str, &str, &str)> {
        let mut parts = self.id.splitn(4, '_');
        Some((parts.next()?, parts.next()?, parts.next()?, parts.next()?))
    }
}

/// A control-API error answer, `{"error": "…"}`.
pub(crate) fn error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, Json(json!({"error": message.to_string()}))).into_response()
}

/// A string at `pointer`, empty when absent.
pub(crate) fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A namespaced CRD whose versions all keep unknown fields and have a status subresource.
pub(crate) fn crd(
    group: &str,
    names: (&str, &str, &str, &[&str]),
    versions: &[&str],
    labels: Value,
    columns: Value,
) -> Value {
    let (kind, plural, singular, short_names) = names;
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let mut version = json!({
                "name": name,
                "served": true,
                // The first one listed is stored.
                "storage": index == 0,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            });
            if columns.as_array().is_some_and(|columns| !columns.is_empty()) {
                version["additionalPrinterColumns"] = columns.clone();
            }
            version
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "labels": labels},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular, "shortNames": short_names},
            "scope": "Namespaced",
            "versions": versions,
        },
    })
}

/// The type of `apiVersion`/`kind`: built-in first, then what the cluster's CRDs serve.
pub(crate) fn resolve_kind(
    cluster: &Cluster,
    api_version: &str,
    kind: &str,
) -> Option<Arc<ResourceDef>> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if let Some(def) = catalog::builtin_by_kind(group, kind) {
        return Some(def);
    }
    let state = cluster.lock();
    let custom = state.custom_types();
    custom
        .iter()
        .find(|def| def.group == group && def.kind == kind && def.version == version)
        .or_else(|| {
            custom
                .iter()
                .find(|def| def.group == group && def.kind == kind)
        })
        .cloned()
}

fn object_path(def: &ResourceDef, version: &str, namespace: &str, name: &str) -> String {
    let root = if def.group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{}/{version}", def.group)
    };
    if def.namespaced {
        format!("{root}/namespaces/{namespace}/{}/{name}", def.plural)
    } else {
        format!("{root}/{}/{name}", def.plural)
    }
}

/// One cluster's API as a controller in it sees it: requests go through the same code as
/// kubectl's, so validation, managed fields and watches behave as for any client.
pub(crate) struct Api<'a> {
    pub sim: &'a Sim,
    pub cluster: Arc<Cluster>,
    /// The User-Agent of its requests.
    pub agent: &'static str,
}

impl Api<'_> {
    async fn call(
        &self,
        method: Method,
        path: String,
        query: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, (u16, String)> {
        let request = ApiRequest {
            method,
            path,
            query: query
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            accept: "application/json".into(),
            content_type: content_type.into(),
            user_agent: self.agent.into(),
            body: Bytes::from(body),
            user: None,
        };
        let response = api::serve(
            &self.cluster,
            &self.sim.options,
            &format!("/clusters/{}", self.cluster.name()),
            request,
        );
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status < 300 {
            Ok(value)
        } else {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            Err((status, message))
        }
    }

    /// The type of `apiVersion`/`kind` in this cluster.
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        resolve_kind(&self.cluster, api_version, kind)
    }

    /// Server-side applies `object` as `manager`, forcing conflicts (as Flux and Config Sync
    /// do); answers its inventory entry.
    pub async fn apply(&self, object: &Value, manager: &str) -> Result<Entry, String> {
        let api_version = text(object, "/apiVersion");
        let kind = text(object, "/kind");
        let name = text(object, "/metadata/name");
        let namespace = text(object, "/metadata/namespace");
        let described = format!("{kind}/{name}");
        let def = self.resolve_kind(api_version, kind).ok_or_else(|| {
            format!("{described}: no matches for kind {kind:?} in {api_version:?}")
        })?;
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let path = object_path(&def, version, namespace, name);
        let body = serde_json::to_vec(object).map_err(|problem| problem.to_string())?;
        self.call(
            Method::PATCH,
            path,
            &[("fieldManager", manager), ("force", "true")],
            "application/apply-patch+yaml",
            body,
        )
        .await
        .map_err(|(_, message)| format!("{described} apply failed: {message}"))?;
        Ok(Entry {
            id: format!(
                "{}_{name}_{}_{kind}",
                if def.namespaced { namespace } else { "" },
                def.group
            ),
            v: version.to_owned(),
        })
    }

    /// Deletes an inventory entry's object (gone already is fine).
    pub async fn delete(&self, entry: &Entry) -> Result<(), String> {
        let Some((namespace, name, group, kind)) = entry.parts() else {
            return Err(format!("bad inventory id {:?}", entry.id));
        };
        let api_version = if group.is_empty() {
            entry.v.clone()
        } else {
            format!("{group}/{}", entry.v)
        };
        let Some(def) = self.resolve_kind(&api_version, kind) else {
            return Ok(()); // Its type is gone, so is the object.
        };
        let path = object_path(&def, &entry.v, namespace, name);
        match self
            .call(
                Method::DELETE,
                path,
                &[("propagationPolicy", "Background")],
                "",
                Vec::new(),
            )
            .await
        {
            Ok(_) | Err((404, _)) => Ok(()),
            Err((_, message)) => Err(format!("{kind}/{name} delete failed: {message}")),
        }
    }

    /// The live object of an inventory entry, as stored.
    pub fn get(&self, entry: &Entry) -> Option<Value> {
        let (namespace, name, group, kind) = entry.parts()?;
        let api_version = if group.is_empty() {
            entry.v.clone()
        } else {
            format!("{group}/{}", entry.v)
        };
        let def = self.resolve_kind(&api_version, kind)?;
        self.object_of(&def.store_key, namespace, name)
    }

    /// JSON-merge-patches `object` (its `apiVersion`, `kind`, namespace and name) with `patch`.
    pub async fn merge_patch(&self, object: &Value, patch: &Value) -> Result<(), String> {
        let api_version = text(object, "/apiVersion");
        let kind = text(object, "/kind");
        let name = text(object, "/metadata/name");
        let def = self
            .resolve_kind(api_version, kind)
            .ok_or_else(|| format!("{kind}/{name}: no matches for kind {kind:?}"))?;
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let path = object_path(&def, version, text(object, "/metadata/namespace"), name);
        let body = serde_json::to_vec(patch).map_err(|problem| problem.to_string())?;
        self.call(
            Method::PATCH,
            path,
            &[],
            "application/merge-patch+json",
            body,
        )
        .await
        .map(|_| ())
        .map_err(|(_, message)| format!("{kind}/{name} patch failed: {message}"))
    }

    /// Objects stored under `store_key` (all versions), as JSON.
    pub fn objects_of(&self, store_key: &str) -> Vec<Value> {
        let state = self.cluster.lock();
        state
            .objects_of_key(store_key)
            .into_iter()
            .flat_map(|objects| objects.values())
            .filter_map(|stored| serde_json::from_slice(&stored.json).ok())
            .collect()
    }

    /// One object stored under `store_key`.
    pub fn object_of(&self, store_key: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.cluster.lock();
        let stored = state
            .objects_of_key(store_key)?
            .get(&(namespace.to_owned(), name.to_owned()))?;
        serde_json::from_slice(&stored.json).ok()
    }

    /// A Secret, as stored.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object_of(
            &catalog::builtin_by_kind("", "Secret")?.store_key,
            namespace,
            name,
        )
    }

    /// Writes `status` unless only timestamps would change (a write wakes every watcher).
    pub fn write_status(&self, store_key: &str, object: &Value, mut status: Value) {
        let namespace = text(object, "/metadata/namespace").to_owned();
        let name = text(object, "/metadata/name").to_owned();
        let mut state = self.cluster.lock();
        let Some(def) = state
            .custom_types()
            .iter()
            .find(|def| &*def.store_key == store_key)
            .cloned()
        else {
            return;
        };
        let Some(current) = state
            .get(&def, &namespace, &name)
            .and_then(|stored| serde_json::from_slice::<Value>(&stored.json).ok())
        else {
            return;
        };
        let old = current.get("status").cloned().unwrap_or(Value::Null);
        if let (Some(new), Some(previous)) = (
            status.pointer_mut("/conditions/0"),
            old.pointer("/conditions/0"),
        ) && new.get("status") == previous.get("status")
            && new.get("reason") == previous.get("reason")
            && new.get("message") == previous.get("message")
        {
            new["lastTransitionTime"] = previous["lastTransitionTime"].clone();
        }
        if old == status {
            return;
        }
        api::internal_update_status(&mut state, &def, &namespace, &name, status);
    }
}

/// A key of a Secret's `data` (base64).
pub(crate) fn secret_data(secret: &Value, key: &str) -> Option<String> {
    secret
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
}

/// A key of a Secret's `data`, or of its `stringData` (kept as written: the simulator does not
/// fold it into `data` as a real API server does).
pub(crate) fn secret_value(secret: &Value, key: &str) -> Option<String> {
    secret_data(secret, key).or_else(|| {
        secret
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

/// The `http.extraHeader` that authenticates as `username` with `password`.
pub(crate) fn basic_auth(username: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Runs git with credentials as an `http.extraHeader` in the environment, never on disk or in
/// the arguments, and without prompting.
pub(crate) async fn git(args: &[&str], header: Option<&str>) -> Result<String, String> {
    let mut command = tokio::process::Command::new("git");
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(header) = header {
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    let output = command
        .output()
        .await
        .map_err(|problem| format!("running git: {problem}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "git {} failed: {}",
            args.iter()
                .find(|arg| !arg.starts_with('-') && !arg.contains('/'))
                .unwrap_or(&"?"),
            stderr.trim()
        ))
    }
}

/// Brings the checkout in `dir` to `branch` of `url` (or to `revision`, a ref or commit of it,
/// when given): `git init` once, then fetch and `reset --hard`. Answers the commit's sha.
pub(crate) async fn checkout(
    dir: &Path,
    url: &str,
    branch: &str,
    revision: Option<&str>,
    header: Option<&str>,
) -> Result<String, String> {
    let dir_text = dir.to_string_lossy().into_owned();
    if !dir.join(".git").exists() {
        git(&["init", "--quiet", &dir_text], None).await?;
    }
    let target = match revision {
        Some(revision) => {
            git(
                &[
                    "-C",
                    &dir_text,
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    url,
                    revision,
                ],
                header,
            )
            .await?;
            "FETCH_HEAD".to_owned()
        }
        None => {
            let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
            git(
                &[
                    "-C",
                    &dir_text,
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    url,
                    &refspec,
                ],
                header,
            )
            .await?;
            format!("refs/remotes/origin/{branch}")
        }
    };
    git(
        &["-C", &dir_text, "reset", "--quiet", "--hard", &target],
        None,
    )
    .await?;
    git(&["-C", &dir_text, "clean", "--quiet", "-fdx"], None).await?;
    let sha = git(&["-C", &dir_text, "rev-parse", "HEAD"], None).await?;
    Ok(sha.trim().to_owned())
}

/// A file name that holds manifests: `*.yaml`, `*.yml`, `*.json`.
pub(crate) fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// `path` relative to the checkout, for messages.
pub(crate) fn shown(checkout: &Path, path: &Path) -> String {
    path.strip_prefix(checkout)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The objects of one file: JSON, or YAML with any number of documents; `List`s are unpacked.
/// An error names the file.
pub(crate) fn read_manifests(checkout: &Path, file: &Path) -> Result<Vec<Value>, String> {
    let fail = |problem: String| format!("{}: {problem}", shown(checkout, file));
    let content = std::fs::read_to_string(file).map_err(|problem| fail(problem.to_string()))?;
    let trimmed = content.trim_start();
    let documents: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // EMCO writes JSON (possibly several values) into .yaml files.
        serde_json::Deserializer::from_str(trimmed)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|problem| fail(problem.to_string()))?
    } else {
        serde_saphyr::from_multiple::<Value>(&content)
            .map_err(|problem| fail(problem.to_string()))?
    };
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Array(items) => objects.extend(items),
            Value::Object(_) if text(&document, "/kind").ends_with("List") => {
                if let Some(Value::Array(items)) = document.get("items") {
                    objects.extend(items.iter().cloned());
                }
            }
            Value::Object(_) => objects.push(document),
            _ => return Err(fail("not a Kubernetes object".into())),
        }
    }
    for object in &objects {
        if text(object, "/metadata/name").is_empty() {
            return Err(fail(format!(
                "{} without metadata.name",
                text(object, "/kind")
            )));
        }
    }
    Ok(objects)
}

/// What makes one pull mode (Flux, Config Sync, Argo CD) differ from the others: how it is set
/// up, what it remembers between passes, and one pass. The registry, loop and endpoints are
/// shared ([`PullModes`], [`PullCluster`]).
pub trait Mode: Sized + Send + Sync + 'static {
    /// The mode's name in messages and logs (`flux`, `config sync`, `argo cd`).
    const MODE: &'static str;
    /// Why the endpoints answer 404 without it (`is not set up`).
    const MISSING: &'static str;
    /// The field of the state answer that shows how it was set up.
    const SETUP_FIELD: &'static str;
    /// How it was set up (serialized without credentials).
    type Setup: Serialize + std::fmt::Debug + Send + Sync + 'static;
    /// What a cluster's reconciler remembers between passes.
    type Memory: Default + std::fmt::Debug + Send + 'static;
    /// The field manager of what setup applies.
    const SETUP_MANAGER: &'static str;
    /// The User-Agent of the mode's API requests.
    const AGENT: &'static str;
    /// The mode on every cluster of `sim` that has it.
    fn modes(sim: &Sim) -> &PullModes<Self>;
    /// The setup body, or the status and why it was refused.
    fn parse(body: &[u8]) -> Result<Self::Setup, (StatusCode, String)>;
    /// What setup leaves in the cluster (CRDs, the controllers' namespace, the root sync object).
    fn setup_objects(setup: &Self::Setup) -> Vec<Value>;
    /// One reconcile pass over the cluster (passes are serialized by [`PullCluster::pass`]).
    fn run_pass<'a>(
        sim: &'a Sim,
        state: &'a PullCluster<Self>,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// `POST /sim/clusters/{name}/{mode}`: applies what the mode's install leaves in the cluster,
/// then reconciles every [`crate::SimOptions::flux_interval`].
pub async fn setup<M: Mode>(
    State(sim): State<Arc<Sim>>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    let setup = match M::parse(&body) {
        Ok(setup) => setup,
        Err((status, problem)) => return error(status, problem),
    };
    let Some(cluster) = sim.cluster(&name) else {
        return error(StatusCode::NOT_FOUND, format!("cluster {name} not found"));
    };
    let api = Api {
        sim: &sim,
        cluster,
        agent: M::AGENT,
    };
    let mut objects = Vec::new();
    for object in M::setup_objects(&setup) {
        if let Err(problem) = api.apply(&object, M::SETUP_MANAGER).await {
            return error(StatusCode::INTERNAL_SERVER_ERROR, problem);
        }
        objects.push(described(&object));
    }
    let mut answer = json!({"cluster": name, "objects": objects});
    answer[M::SETUP_FIELD] = serde_json::to_value(&setup).unwrap_or(Value::Null);
    tracing::info!(cluster = %name, mode = M::MODE, "pull mode set up");
    M::modes(&sim).start(&sim, name, setup);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `POST /sim/clusters/{name}/{mode}/reconcile`: one pass now; answers when it is done.
pub async fn reconcile<M: Mode>(
    State(sim): State<Arc<Sim>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    M::modes(&sim).reconcile(&sim, &name).await
}

/// `GET /sim/clusters/{name}/{mode}`: how it was set up and what the last pass found.
pub async fn show<M: Mode>(
    State(sim): State<Arc<Sim>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    M::modes(&sim).show(&name)
}

/// `Kind/namespace/name`, or `Kind/name` when it has no namespace.
pub(crate) fn described(object: &Value) -> String {
    let kind = text(object, "/kind");
    let name = text(object, "/metadata/name");
    match text(object, "/metadata/namespace") {
        "" => format!("{kind}/{name}"),
        namespace => format!("{kind}/{namespace}/{name}"),
    }
}

/// One pull mode's state on one cluster.
#[derive(Debug)]
pub struct PullCluster<M: Mode> {
    pub(crate) cluster: String,
    pub(crate) setup: M::Setup,
    /// Serializes passes (the loop and explicit reconciles), and keeps what outlives one.
    pub(crate) pass: tokio::sync::Mutex<M::Memory>,
    /// What the last pass found.
    report: Mutex<Value>,
}

impl<M: Mode> PullCluster<M> {
    pub(crate) fn new(cluster: String, setup: M::Setup) -> Self {
        Self {
            cluster,
            setup,
            pass: tokio::sync::Mutex::default(),
            report: Mutex::new(json!({})),
        }
    }

    pub(crate) fn set_report(&self, report: Value) {
        *self
            .report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = report;
    }

    fn report(&self) -> Value {
        self.report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A pull mode on every cluster that has it: each with a loop reconciling every
/// [`crate::SimOptions::flux_interval`], stopped when the cluster goes or the mode is dropped.
#[derive(Debug)]
pub struct PullModes<M: Mode> {
    clusters: Mutex<HashMap<String, Enabled<M>>>,
}

impl<M: Mode> Default for PullModes<M> {
    fn default() -> Self {
        Self {
            clusters: Mutex::default(),
        }
    }
}

#[derive(Debug)]
struct Enabled<M: Mode> {
    state: Arc<PullCluster<M>>,
    task: tokio::task::JoinHandle<()>,
}

impl<M: Mode> Drop for Enabled<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<M: Mode> PullModes<M> {
    /// Stops the mode on a cluster (it was removed).
    pub fn forget(&self, cluster: &str) {
        self.clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(cluster);
    }

    pub(crate) fn get(&self, cluster: &str) -> Option<Arc<PullCluster<M>>> {
        self.clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(cluster)
            .map(|enabled| enabled.state.clone())
    }

    /// Starts reconciling `cluster` as `setup` says (replacing an earlier setup).
    pub(crate) fn start(&self, sim: &Arc<Sim>, cluster: String, setup: M::Setup) {
        let state = Arc::new(PullCluster::new(cluster, setup));
        let task = tokio::spawn(reconcile_loop(Arc::downgrade(sim), state.clone()));
        self.clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(state.cluster.clone(), Enabled { state, task });
    }

    /// `POST …/reconcile`: one pass now; answers with the state once it is done.
    pub(crate) async fn reconcile(&self, sim: &Sim, name: &str) -> Response {
        let Some(state) = self.get(name) else {
            return self.missing(name);
        };
        M::run_pass(sim, &state).await;
        self.show(name)
    }

    /// `GET`: how it was set up and what the last pass found.
    pub(crate) fn show(&self, name: &str) -> Response {
        let Some(state) = self.get(name) else {
            return self.missing(name);
        };
        let mut answer = json!({"cluster": name, "lastPass": state.report()});
        answer[M::SETUP_FIELD] = serde_json::to_value(&state.setup).unwrap_or(Value::Null);
        Json(answer).into_response()
    }

    fn missing(&self, name: &str) -> Response {
        error(
            StatusCode::NOT_FOUND,
            format!("{} {} on {name}", M::MODE, M::MISSING),
        )
    }
}

async fn reconcile_loop<M: Mode>(sim: Weak<Sim>, state: Arc<PullCluster<M>>) {
    let period = match sim.upgrade() {
        Some(sim) => sim.options.flux_interval.max(Duration::from_millis(10)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(sim) = sim.upgrade() else { return };
        if sim.cluster(&state.cluster).is_none() {
            tracing::info!(cluster = %state.cluster, mode = M::MODE, "cluster gone: pull mode stops");
            return;
        }
        M::run_pass(&sim, &state).await;
    }
}

/// A pull mode's setup body, read the same way by every mode: `url` (required), `branch`
/// (default `main`), one folder field (required, checked by the mode), and `username` with
/// `token` (both or neither). Errors name the field at fault.
pub(crate) struct SetupBody {
    pub url: String,
    pub branch: String,
    pub folder: String,
    pub username: Option<String>,
    pub token: Option<String>,
    /// `token` with credentials, else `none`.
    pub auth: &'static str,
}

impl SetupBody {
    pub fn parse(
        body: &[u8],
        folder_field: &str,
        check_folder: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Self, String> {
        let fields_known = ["url", "branch", folder_field, "username", "token"];
        let value: Value =
            serde_json::from_slice(body).map_err(|problem| format!("invalid JSON: {problem}"))?;
        let Value::Object(fields) = value else {
            return Err("the body must be a JSON object".into());
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !fields_known.contains(&key.as_str()))
        {
            return Err(format!(
                "unknown field `{unknown}` (expected one of {fields_known:?})"
            ));
        }
        let string = |key: &str| match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("field `{key}` must be a string")),
        };
        let url = string("url")?
            .filter(|url| !url.is_empty())
            .ok_or("field `url` is required")?;
        let branch = string("branch")?.unwrap_or_else(|| "main".into());
        if branch.is_empty() {
            return Err("field `branch` must not be empty".into());
        }
        let folder = string(folder_field)?
            .filter(|folder| !folder.is_empty())
            .ok_or_else(|| format!("field `{folder_field}` is required"))?;
        check_folder(&folder).map_err(|problem| format!("field `{folder_field}`: {problem}"))?;
        let username = string("username")?.filter(|name| !name.is_empty());
        let token = string("token")?.filter(|token| !token.is_empty());
        let auth = match (&username, &token) {
            (Some(_), Some(_)) => "token",
            (None, None) => "none",
            (None, Some(_)) => return Err("field `username` is required with `token`".into()),
            (Some(_), None) => return Err("field `token` is required with `username`".into()),
        };
        Ok(Self {
            url,
            branch,
            folder,
            username,
            token,
            auth,
        })
    }
}

/// Whether a folder path climbs out of the repository (`..`).
pub(crate) fn leaves_repository(folder: &str) -> bool {
    Path::new(folder)
        .components()
        .any(|part| matches!(part, std::path::Component::ParentDir))
}
