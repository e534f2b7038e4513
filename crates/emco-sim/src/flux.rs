//! Pull mode: per cluster, what Flux v2's source-controller and kustomize-controller do.
//!
//! `POST /sim/clusters/{name}/flux` leaves in the cluster what `flux bootstrap` leaves (the two
//! CRDs, namespace, secret, GitRepository and Kustomization `flux-system`) and starts a loop
//! that, every [`crate::SimOptions::flux_interval`], reconciles every GitRepository (a checkout
//! by the real git CLI) and every Kustomization (build the path, server-side apply through the
//! cluster's own API, prune what left the inventory) in that cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{self, ApiRequest};
use crate::catalog::{self, ResourceDef};
use crate::cluster::Cluster;
use crate::{Sim, meta};

/// The field manager of everything a Kustomization applies.
pub const FIELD_MANAGER: &str = "kustomize-controller";
const SOURCES: &str = "source.toolkit.fluxcd.io/gitrepositories";
const KUSTOMIZATIONS: &str = "kustomize.toolkit.fluxcd.io/kustomizations";
const NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
const NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";

/// Why one object could not be reconciled (kept per object, shown in its Ready condition).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FluxError {
    /// The source could not be fetched.
    #[error("{0}")]
    Fetch(String),
    /// The Kustomization's source is missing or not ready.
    #[error("source {0} is not ready: {1}")]
    SourceNotReady(String, String),
    /// The path could not be built.
    #[error("kustomization build failed: {0}")]
    Build(String),
    /// An object was refused by the cluster.
    #[error("{0}")]
    Apply(String),
}

/// What `POST /sim/clusters/{name}/flux` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FluxBootstrap {
    /// The repository URL.
    pub url: String,
    /// Its branch.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Path in the repository the `flux-system` Kustomization builds.
    #[serde(default = "default_path")]
    pub path: String,
    /// HTTP Basic user name (none: anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// Its token.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
}

fn default_branch() -> String {
    "main".into()
}

fn default_path() -> String {
    "./".into()
}

/// Pull mode of every cluster that has it.
#[derive(Debug, Default)]
pub struct Flux {
    clusters: Mutex<HashMap<String, Enabled>>,
}

#[derive(Debug)]
struct Enabled {
    state: Arc<FluxCluster>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Enabled {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One cluster's pull mode.
#[derive(Debug)]
pub struct FluxCluster {
    cluster: String,
    bootstrap: FluxBootstrap,
    /// Serializes passes (the loop and explicit reconciles), and keeps what outlives one.
    pass: tokio::sync::Mutex<Memory>,
    report: Mutex<Value>,
}

/// What a cluster's reconciler remembers between passes.
#[derive(Debug, Default)]
struct Memory {
    passes: u64,
    /// Kustomizations last seen: whether they prune, and their inventory.
    kustomizations: BTreeMap<(String, String), (bool, Vec<Entry>)>,
}

/// One inventory entry, `{ns}_{name}_{group}_{kind}` and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: String,
    v: String,
}

impl Flux {
    /// Stops pull mode on a cluster (it was removed).
    pub fn forget(&self, cluster: &str) {
        self.clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(cluster);
    }

    fn get(&self, cluster: &str) -> Option<Arc<FluxCluster>> {
        self.clusters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(cluster)
            .map(|enabled| enabled.state.clone())
    }
}

fn error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, Json(json!({"error": message.to_string()}))).into_response()
}

/// `POST /sim/clusters/{name}/flux`: bootstrap and start reconciling.
pub async fn bootstrap(
    State(sim): State<Arc<Sim>>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    let bootstrap: FluxBootstrap = match serde_json::from_slice(&body) {
        Ok(bootstrap) => bootstrap,
        Err(problem) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid body: {problem}"),
            );
        }
    };
    let Some(cluster) = sim.cluster(&name) else {
        return error(StatusCode::NOT_FOUND, format!("cluster {name} not found"));
    };
    for object in bootstrap_objects(&bootstrap) {
        if let Err(problem) = apply_object(&sim, &cluster, &object, "flux").await {
            return error(StatusCode::INTERNAL_SERVER_ERROR, problem);
        }
    }
    let state = Arc::new(FluxCluster {
        cluster: name.clone(),
        bootstrap: bootstrap.clone(),
        pass: tokio::sync::Mutex::new(Memory::default()),
        report: Mutex::new(json!({})),
    });
    let task = tokio::spawn(reconcile_loop(Arc::downgrade(&sim), state.clone()));
    sim.flux
        .clusters
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(name.clone(), Enabled { state, task });
    tracing::info!(cluster = %name, url = %bootstrap.url, "flux bootstrapped");
    (
        StatusCode::CREATED,
        Json(json!({"cluster": name, "bootstrap": bootstrap})),
    )
        .into_response()
}

/// `POST /sim/clusters/{name}/flux/reconcile`: one pass now; answers when it is done.
pub async fn reconcile(State(sim): State<Arc<Sim>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(state) = sim.flux.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("flux is not bootstrapped on {name}"),
        );
    };
    run_pass(&sim, &state).await;
    show(State(sim), UrlPath(name)).await
}

/// `GET /sim/clusters/{name}/flux`.
pub async fn show(State(sim): State<Arc<Sim>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(state) = sim.flux.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("flux is not bootstrapped on {name}"),
        );
    };
    let report = state
        .report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    Json(json!({"cluster": name, "bootstrap": state.bootstrap, "lastPass": report})).into_response()
}

async fn reconcile_loop(sim: Weak<Sim>, state: Arc<FluxCluster>) {
    let period = match sim.upgrade() {
        Some(sim) => sim
            .options
            .flux_interval
            .max(std::time::Duration::from_millis(10)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(sim) = sim.upgrade() else { return };
        if sim.cluster(&state.cluster).is_none() {
            tracing::info!(cluster = %state.cluster, "cluster gone: flux stops");
            return;
        }
        run_pass(&sim, &state).await;
    }
}

fn crd(group: &str, kind: &str, plural: &str, singular: &str, short: &str) -> Value {
    let version = |name: &str, storage: bool| {
        json!({
            "name": name,
            "served": true,
            "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "subresources": {"status": {}},
        })
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "labels": {"app.kubernetes.io/part-of": "flux"}},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular, "shortNames": [short]},
            "scope": "Namespaced",
            "versions": [version("v1", true), version("v1beta2", false), version("v1beta1", false)],
        },
    })
}

/// What `flux bootstrap` leaves in a cluster.
fn bootstrap_objects(bootstrap: &FluxBootstrap) -> Vec<Value> {
    let mut secret_data = serde_json::Map::new();
    if let Some(username) = &bootstrap.username {
        secret_data.insert("username".into(), json!(STANDARD.encode(username)));
    }
    if let Some(token) = &bootstrap.token {
        secret_data.insert("password".into(), json!(STANDARD.encode(token)));
    }
    vec![
        crd(
            "source.toolkit.fluxcd.io",
            "GitRepository",
            "gitrepositories",
            "gitrepository",
            "gitrepo",
        ),
        crd(
            "kustomize.toolkit.fluxcd.io",
            "Kustomization",
            "kustomizations",
            "kustomization",
            "ks",
        ),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "flux-system", "namespace": "flux-system"}, "data": secret_data}),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"url": bootstrap.url, "ref": {"branch": bootstrap.branch}, "interval": "1m0s",
                "secretRef": {"name": "flux-system"}}}),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"path": bootstrap.path, "prune": true, "interval": "10m0s",
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}}),
    ]
}

// ---- talking to the cluster through its own API ----

async fn call(
    sim: &Sim,
    cluster: &Arc<Cluster>,
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
        user_agent: "kustomize-controller/emco-sim".into(),
        body: Bytes::from(body),
        user: None,
    };
    let response = api::serve(
        cluster,
        &sim.options,
        &format!("/clusters/{}", cluster.name()),
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

/// The type of `apiVersion`/`kind`: built-in first, then what the cluster's CRDs serve.
fn resolve_kind(cluster: &Cluster, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
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

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Server-side applies `object` as `manager` (forcing conflicts, as Flux does).
async fn apply_object(
    sim: &Sim,
    cluster: &Arc<Cluster>,
    object: &Value,
    manager: &str,
) -> Result<Entry, String> {
    let api_version = text(object, "/apiVersion");
    let kind = text(object, "/kind");
    let name = text(object, "/metadata/name");
    let namespace = text(object, "/metadata/namespace");
    let described = format!("{kind}/{name}");
    let def = resolve_kind(cluster, api_version, kind)
        .ok_or_else(|| format!("{described}: no matches for kind {kind:?} in {api_version:?}"))?;
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let path = object_path(&def, version, namespace, name);
    let body = serde_json::to_vec(object).map_err(|problem| problem.to_string())?;
    call(
        sim,
        cluster,
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
async fn delete_entry(sim: &Sim, cluster: &Arc<Cluster>, entry: &Entry) -> Result<(), String> {
    let mut parts = entry.id.splitn(4, '_');
    let (Some(namespace), Some(name), Some(group), Some(kind)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad inventory id {:?}", entry.id));
    };
    let api_version = if group.is_empty() {
        entry.v.clone()
    } else {
        format!("{group}/{}", entry.v)
    };
    let Some(def) = resolve_kind(cluster, &api_version, kind) else {
        return Ok(()); // Its type is gone, so is the object.
    };
    let path = object_path(&def, &entry.v, namespace, name);
    match call(
        sim,
        cluster,
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

/// Objects stored under `store_key` (all versions), as JSON.
fn objects_of(cluster: &Cluster, store_key: &str) -> Vec<Value> {
    let state = cluster.lock();
    state
        .objects_of_key(store_key)
        .into_iter()
        .flat_map(|objects| objects.values())
        .filter_map(|stored| serde_json::from_slice(&stored.json).ok())
        .collect()
}

fn object_of(cluster: &Cluster, store_key: &str, namespace: &str, name: &str) -> Option<Value> {
    let state = cluster.lock();
    let stored = state
        .objects_of_key(store_key)?
        .get(&(namespace.to_owned(), name.to_owned()))?;
    serde_json::from_slice(&stored.json).ok()
}

/// Writes `status` unless only timestamps would change (a write wakes every watcher).
fn write_status(cluster: &Cluster, store_key: &str, object: &Value, mut status: Value) {
    let namespace = text(object, "/metadata/namespace").to_owned();
    let name = text(object, "/metadata/name").to_owned();
    let mut state = cluster.lock();
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

fn ready(ok: bool, reason: &str, message: &str, generation: &Value) -> Value {
    json!({
        "type": "Ready",
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": meta::now_timestamp(),
    })
}

// ---- one pass ----

/// A fetched source: revision and checkout directory, or why not.
type Fetched = Result<(String, PathBuf), String>;

struct Pass<'a> {
    sim: &'a Sim,
    cluster: Arc<Cluster>,
    cache: PathBuf,
    sources: HashMap<(String, String), Fetched>,
    report_sources: Vec<Value>,
    report_kustomizations: Vec<Value>,
}

async fn run_pass(sim: &Sim, state: &FluxCluster) {
    let mut memory = state.pass.lock().await;
    let Some(cluster) = sim.cluster(&state.cluster) else {
        return;
    };
    let mut pass = Pass {
        sim,
        cluster,
        cache: sim.work_dir().join("flux").join(&state.cluster),
        sources: HashMap::new(),
        report_sources: Vec::new(),
        report_kustomizations: Vec::new(),
    };
    for repository in objects_of(&pass.cluster, SOURCES) {
        let key = (
            text(&repository, "/metadata/namespace").to_owned(),
            text(&repository, "/metadata/name").to_owned(),
        );
        // Errors are in its status and the report.
        let _ = pass.source(&key).await;
    }
    // Kustomizations may apply Kustomizations: reconcile new ones in the same pass.
    let mut done = HashSet::new();
    for _round in 0..8 {
        let todo: Vec<Value> = objects_of(&pass.cluster, KUSTOMIZATIONS)
            .into_iter()
            .filter(|object| !done.contains(&key_of(object)))
            .collect();
        if todo.is_empty() {
            break;
        }
        for kustomization in todo {
            let key = key_of(&kustomization);
            pass.kustomization(&kustomization, &mut memory).await;
            done.insert(key);
        }
    }
    // Kustomizations deleted since (pruned by a parent, or by hand) take their objects along.
    let present: HashSet<_> = objects_of(&pass.cluster, KUSTOMIZATIONS)
        .iter()
        .map(key_of)
        .collect();
    let gone: Vec<_> = memory
        .kustomizations
        .keys()
        .filter(|key| !present.contains(*key))
        .cloned()
        .collect();
    for key in gone {
        if let Some((true, inventory)) = memory.kustomizations.remove(&key) {
            tracing::info!(cluster = %state.cluster, namespace = %key.0, name = %key.1, "kustomization gone: pruning its objects");
            for entry in inventory.iter().rev() {
                if let Err(problem) = delete_entry(sim, &pass.cluster, entry).await {
                    tracing::warn!(cluster = %state.cluster, %problem, "prune failed");
                }
            }
        }
    }
    memory.passes += 1;
    *state
        .report
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = json!({
        "pass": memory.passes,
        "finished": meta::now_timestamp(),
        "gitRepositories": pass.report_sources,
        "kustomizations": pass.report_kustomizations,
    });
}

fn key_of(object: &Value) -> (String, String) {
    (
        text(object, "/metadata/namespace").to_owned(),
        text(object, "/metadata/name").to_owned(),
    )
}

impl Pass<'_> {
    /// Fetches the GitRepository at `key` once per pass and writes its status.
    async fn source(&mut self, key: &(String, String)) -> Fetched {
        if let Some(fetched) = self.sources.get(key) {
            return fetched.clone();
        }
        let fetched = match object_of(&self.cluster, SOURCES, &key.0, &key.1) {
            None => Err(format!("GitRepository {}/{} not found", key.0, key.1)),
            Some(repository) => {
                let fetched = self.fetch(&repository).await;
                let generation = repository
                    .pointer("/metadata/generation")
                    .cloned()
                    .unwrap_or(Value::Null);
                let old_artifact = repository.pointer("/status/artifact").cloned();
                let mut status = match &fetched {
                    Ok((revision, _)) => json!({
                        "observedGeneration": generation,
                        "conditions": [ready(true, "Succeeded", &format!("stored artifact for revision '{revision}'"), &generation)],
                        "artifact": {"revision": revision, "lastUpdateTime": meta::now_timestamp()},
                    }),
                    Err(message) => {
                        let mut status = json!({
                            "observedGeneration": generation,
                            "conditions": [ready(false, "GitOperationFailed", message, &generation)],
                        });
                        if let Some(artifact) = old_artifact {
                            status["artifact"] = artifact;
                        }
                        status
                    }
                };
                if let Some(artifact) = status.get_mut("artifact")
                    && let Some(old) = repository.pointer("/status/artifact")
                    && artifact.get("revision") == old.get("revision")
                {
                    *artifact = old.clone();
                }
                write_status(&self.cluster, SOURCES, &repository, status);
                if let Err(message) = &fetched {
                    tracing::warn!(cluster = %self.cluster.name(), namespace = %key.0, name = %key.1, %message, "git fetch failed");
                }
                fetched
            }
        };
        self.report_sources.push(json!({
            "namespace": key.0, "name": key.1,
            "ready": fetched.is_ok(),
            "revision": fetched.as_ref().ok().map(|(revision, _)| revision),
            "message": fetched.as_ref().err(),
        }));
        self.sources.insert(key.clone(), fetched.clone());
        fetched
    }

    /// Clones once, then fetches and resets: the checkout is the artifact.
    async fn fetch(&self, repository: &Value) -> Fetched {
        let url = text(repository, "/spec/url");
        if url.is_empty() {
            return Err("spec.url is empty".into());
        }
        let branch = match text(repository, "/spec/ref/branch") {
            "" => "master", // Flux's default
            branch => branch,
        };
        let namespace = text(repository, "/metadata/namespace");
        let name = text(repository, "/metadata/name");
        let mut header = None;
        let secret_name = text(repository, "/spec/secretRef/name");
        if !secret_name.is_empty() {
            let secrets = catalog::builtin_by_kind("", "Secret")
                .ok_or_else(|| "no Secret type".to_owned())?;
            let secret = {
                let state = self.cluster.lock();
                state
                    .get(&secrets, namespace, secret_name)
                    .and_then(|stored| serde_json::from_slice::<Value>(&stored.json).ok())
            }
            .ok_or_else(|| format!("secret '{namespace}/{secret_name}' not found"))?;
            let field = |key: &str| {
                secret
                    .pointer(&format!("/data/{key}"))
                    .and_then(Value::as_str)
                    .and_then(|encoded| STANDARD.decode(encoded).ok())
                    .and_then(|decoded| String::from_utf8(decoded).ok())
                    .unwrap_or_default()
            };
            let (username, password) = (field("username"), field("password"));
            if !username.is_empty() || !password.is_empty() {
                header = Some(format!(
                    "Authorization: Basic {}",
                    STANDARD.encode(format!("{username}:{password}"))
                ));
            }
        }
        let dir = self.cache.join(format!("{namespace}_{name}"));
        let dir_text = dir.to_string_lossy().into_owned();
        if !dir.join(".git").exists() {
            git(&["init", "--quiet", &dir_text], None).await?;
        }
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
            header.as_deref(),
        )
        .await?;
        let target = format!("refs/remotes/origin/{branch}");
        git(
            &["-C", &dir_text, "reset", "--quiet", "--hard", &target],
            None,
        )
        .await?;
        git(&["-C", &dir_text, "clean", "--quiet", "-fdx"], None).await?;
        let sha = git(&["-C", &dir_text, "rev-parse", "HEAD"], None).await?;
        Ok((format!("{branch}@sha1:{}", sha.trim()), dir))
    }

    async fn kustomization(&mut self, object: &Value, memory: &mut Memory) {
        let key = key_of(object);
        let generation = object
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(Value::Null);
        let prune = object
            .pointer("/spec/prune")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let previous = memory
            .kustomizations
            .get(&key)
            .map(|(_, inventory)| inventory.clone())
            .or_else(|| {
                object
                    .pointer("/status/inventory/entries")
                    .and_then(|entries| serde_json::from_value(entries.clone()).ok())
            })
            .unwrap_or_default();
        let outcome = self
            .apply_kustomization(object, &key, prune, &previous)
            .await;
        let mut status = object
            .get("status")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        status["observedGeneration"] = generation.clone();
        let (inventory, result) = match outcome {
            Ok((revision, inventory)) => {
                status["conditions"] = json!([ready(
                    true,
                    "ReconciliationSucceeded",
                    &format!("Applied revision: {revision}"),
                    &generation
                )]);
                status["lastAppliedRevision"] = json!(revision);
                status["lastAttemptedRevision"] = json!(revision);
                (inventory, Ok(revision))
            }
            Err((inventory, problem)) => {
                let reason = match problem {
                    FluxError::SourceNotReady(..) | FluxError::Fetch(_) => "ArtifactFailed",
                    FluxError::Build(_) => "BuildFailed",
                    FluxError::Apply(_) => "ReconciliationFailed",
                };
                status["conditions"] =
                    json!([ready(false, reason, &problem.to_string(), &generation)]);
                tracing::warn!(cluster = %self.cluster.name(), namespace = %key.0, name = %key.1, %problem, "kustomization failed");
                (inventory, Err(problem.to_string()))
            }
        };
        status["inventory"] = json!({"entries": inventory});
        write_status(&self.cluster, KUSTOMIZATIONS, object, status);
        self.report_kustomizations.push(json!({
            "namespace": key.0, "name": key.1,
            "ready": result.is_ok(),
            "revision": result.as_ref().ok(),
            "message": result.as_ref().err(),
            "objects": inventory.len(),
        }));
        memory.kustomizations.insert(key, (prune, inventory));
    }

    /// Builds, applies and prunes; on failure the inventory to keep and why.
    #[allow(clippy::type_complexity)]
    async fn apply_kustomization(
        &mut self,
        object: &Value,
        key: &(String, String),
        prune: bool,
        previous: &[Entry],
    ) -> Result<(String, Vec<Entry>), (Vec<Entry>, FluxError)> {
        let keep = || previous.to_vec();
        let source_kind = text(object, "/spec/sourceRef/kind");
        if source_kind != "GitRepository" {
            return Err((
                keep(),
                FluxError::SourceNotReady(
                    format!("{source_kind}/{}", text(object, "/spec/sourceRef/name")),
                    "only GitRepository sources are simulated".into(),
                ),
            ));
        }
        let source_key = (
            match text(object, "/spec/sourceRef/namespace") {
                "" => key.0.clone(),
                namespace => namespace.to_owned(),
            },
            text(object, "/spec/sourceRef/name").to_owned(),
        );
        let (revision, checkout) = self.source(&source_key).await.map_err(|message| {
            (
                keep(),
                FluxError::SourceNotReady(
                    format!("GitRepository/{}/{}", source_key.0, source_key.1),
                    message,
                ),
            )
        })?;
        let path = text(object, "/spec/path");
        let mut objects = build(&checkout, path).map_err(|problem| (keep(), problem))?;
        let target_namespace = text(object, "/spec/targetNamespace").to_owned();
        // Namespaces and CRDs first, so what lives in them can be applied.
        objects.sort_by_key(|object| match text(object, "/kind") {
            "CustomResourceDefinition" => 0,
            "Namespace" => 1,
            _ => 2,
        });
        let mut inventory = Vec::new();
        let mut failures = Vec::new();
        for mut object in objects {
            let api_version = text(&object, "/apiVersion").to_owned();
            let kind = text(&object, "/kind").to_owned();
            if api_version.is_empty() || kind.is_empty() {
                failures.push(format!(
                    "object {:?} has no apiVersion or kind",
                    text(&object, "/metadata/name")
                ));
                continue;
            }
            let namespaced =
                resolve_kind(&self.cluster, &api_version, &kind).is_none_or(|def| def.namespaced);
            let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
                failures.push(format!("{kind} without metadata"));
                continue;
            };
            if namespaced {
                if !target_namespace.is_empty() {
                    metadata.insert("namespace".into(), json!(target_namespace));
                } else if !metadata.contains_key("namespace") {
                    metadata.insert("namespace".into(), json!("default"));
                }
            } else {
                metadata.remove("namespace");
            }
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(NAME_LABEL.into(), json!(key.1));
                labels.insert(NAMESPACE_LABEL.into(), json!(key.0));
            }
            match apply_object(self.sim, &self.cluster, &object, FIELD_MANAGER).await {
                Ok(entry) => {
                    if !inventory.contains(&entry) {
                        inventory.push(entry);
                    }
                }
                Err(problem) => failures.push(problem),
            }
        }
        if !failures.is_empty() {
            // Like kustomize-controller: nothing is pruned after a failed apply.
            let mut kept = previous.to_vec();
            for entry in inventory {
                if !kept.contains(&entry) {
                    kept.push(entry);
                }
            }
            return Err((kept, FluxError::Apply(failures.join("; "))));
        }
        if prune {
            let applied: HashSet<&str> = inventory.iter().map(|entry| entry.id.as_str()).collect();
            for stale in previous.iter().rev() {
                if applied.contains(stale.id.as_str()) {
                    continue;
                }
                tracing::info!(cluster = %self.cluster.name(), kustomization = %key.1, id = %stale.id, "pruning");
                if let Err(problem) = delete_entry(self.sim, &self.cluster, stale).await {
                    return Err((inventory, FluxError::Apply(problem)));
                }
            }
        }
        Ok((revision, inventory))
    }
}

/// Runs git with credentials as an `http.extraHeader` in the environment, never on disk or in
/// the arguments, and without prompting.
async fn git(args: &[&str], header: Option<&str>) -> Result<String, String> {
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

// ---- building a path like kustomize-controller ----

/// Builds `path` of a checkout: a kustomization.yaml's resources, or every manifest below.
pub fn build(checkout: &Path, path: &str) -> Result<Vec<Value>, FluxError> {
    let relative = path.trim_start_matches("./").trim_start_matches('/');
    if Path::new(relative)
        .components()
        .any(|part| matches!(part, std::path::Component::ParentDir))
    {
        return Err(FluxError::Build(format!(
            "path {path:?} leaves the repository"
        )));
    }
    let dir = checkout.join(relative);
    if !dir.is_dir() {
        return Err(FluxError::Build(format!(
            "kustomization path not found: {path:?}"
        )));
    }
    let mut objects = Vec::new();
    build_dir(checkout, &dir, &mut objects, 0)?;
    Ok(objects)
}

fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn build_dir(
    checkout: &Path,
    dir: &Path,
    objects: &mut Vec<Value>,
    depth: usize,
) -> Result<(), FluxError> {
    if depth > 32 {
        return Err(FluxError::Build(format!(
            "{}: too deeply nested",
            shown(checkout, dir)
        )));
    }
    if let Some(file) = kustomization_file(dir) {
        return build_kustomization(checkout, dir, &file, objects, depth);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|problem| FluxError::Build(format!("{}: {problem}", shown(checkout, dir))))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            build_dir(checkout, &entry, objects, depth + 1)?;
        } else if is_manifest(&entry) {
            objects.extend(read_manifests(checkout, &entry)?);
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn build_kustomization(
    checkout: &Path,
    dir: &Path,
    file: &Path,
    objects: &mut Vec<Value>,
    depth: usize,
) -> Result<(), FluxError> {
    let content = std::fs::read_to_string(file)
        .map_err(|problem| FluxError::Build(format!("{}: {problem}", shown(checkout, file))))?;
    let spec: Value = serde_saphyr::from_str(&content)
        .map_err(|problem| FluxError::Build(format!("{}: {problem}", shown(checkout, file))))?;
    let namespace = text_of(&spec, "namespace");
    let mut built = Vec::new();
    let resources = spec
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for resource in resources {
        let Some(resource) = resource.as_str() else {
            continue;
        };
        let target = dir.join(resource);
        if Path::new(resource)
            .components()
            .any(|part| matches!(part, std::path::Component::ParentDir))
        {
            return Err(FluxError::Build(format!(
                "{}: resource {resource:?} leaves the repository",
                shown(checkout, file)
            )));
        }
        if target.is_dir() {
            build_dir(checkout, &target, &mut built, depth + 1)?;
        } else if target.is_file() {
            built.extend(read_manifests(checkout, &target)?);
        } else {
            return Err(FluxError::Build(format!(
                "{}: resource {resource:?} not found",
                shown(checkout, file)
            )));
        }
    }
    if let Some(namespace) = namespace {
        for object in &mut built {
            if text(object, "/kind") != "Namespace"
                && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
            {
                metadata.insert("namespace".into(), json!(namespace));
            }
        }
    }
    objects.extend(built);
    Ok(())
}

fn text_of(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

fn shown(checkout: &Path, path: &Path) -> String {
    path.strip_prefix(checkout)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The objects of one file: JSON, or YAML with any number of documents; `List`s are unpacked.
fn read_manifests(checkout: &Path, file: &Path) -> Result<Vec<Value>, FluxError> {
    let fail = |problem: String| FluxError::Build(format!("{}: {problem}", shown(checkout, file)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_directories_and_kustomizations() {
        let dir = tempfile_dir();
        let root = dir.as_path();
        std::fs::create_dir_all(root.join("apps/nested")).unwrap();
        std::fs::create_dir_all(root.join("apps/kust")).unwrap();
        std::fs::write(
            root.join("apps/a.yaml"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("apps/nested/b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        )
        .unwrap();
        std::fs::write(
            root.join("apps/kust/kustomization.yaml"),
            "namespace: team\nresources:\n- d.yaml\n",
        )
        .unwrap();
        std::fs::write(
            root.join("apps/kust/d.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n",
        )
        .unwrap();
        std::fs::write(root.join("apps/kust/ignored.yaml"), "kind: x\n").unwrap();
        let objects = build(root, "./apps").unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|object| text(object, "/metadata/name"))
            .collect();
        assert_eq!(names, vec!["a", "d", "b", "c"]);
        assert_eq!(text(&objects[1], "/metadata/namespace"), "team");
        std::fs::write(root.join("apps/bad.yaml"), "kind: [").unwrap();
        let problem = build(root, "apps").unwrap_err().to_string();
        assert!(problem.contains("apps/bad.yaml"), "{problem}");
        assert!(build(root, "../x").is_err());
        let _ = std::fs::remove_dir_all(root);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emco-sim-flux-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
