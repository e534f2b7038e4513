//! Pull mode: per cluster, what Flux v2's source-controller and kustomize-controller do.
//!
//! `POST /sim/clusters/{name}/flux` leaves in the cluster what `flux bootstrap` leaves (the two
//! CRDs, namespace, secret, GitRepository and Kustomization `flux-system`) and starts a loop
//! that, every [`crate::SimOptions::flux_interval`], reconciles every GitRepository (a checkout
//! by the real git CLI) and every Kustomization (build the path, server-side apply through the
//! cluster's own API, prune what left the inventory) in that cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::pull::{self, Api, Entry, is_manifest, read_manifests, shown, text};
use crate::{Sim, meta};

/// The field manager of everything a Kustomization applies.
pub const FIELD_MANAGER: &str = "kustomize-controller";
const SOURCES: &str = "source.toolkit.fluxcd.io/gitrepositories";
const KUSTOMIZATIONS: &str = "kustomize.toolkit.fluxcd.io/kustomizations";
const NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
const NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
/// The User-Agent of its API requests.
const AGENT: &str = "kustomize-controller/emco-sim";

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
pub type Flux = pull::PullModes<FluxMode>;

/// Flux's source and kustomize controllers.
#[derive(Debug)]
pub enum FluxMode {}

/// One cluster's pull mode.
pub type FluxCluster = pull::PullCluster<FluxMode>;

/// What a cluster's reconciler remembers between passes.
#[derive(Debug, Default)]
pub struct Memory {
    passes: u64,
    /// Kustomizations last seen: whether they prune, and their inventory.
    kustomizations: BTreeMap<(String, String), (bool, Vec<Entry>)>,
}

impl pull::Mode for FluxMode {
    const MODE: &'static str = "flux";
    const MISSING: &'static str = "is not bootstrapped";
    const SETUP_FIELD: &'static str = "bootstrap";
    type Setup = FluxBootstrap;
    type Memory = Memory;
    const SETUP_MANAGER: &'static str = "flux";
    const AGENT: &'static str = AGENT;

    fn modes(sim: &Sim) -> &pull::PullModes<Self> {
        &sim.flux
    }

    fn parse(body: &[u8]) -> Result<FluxBootstrap, (StatusCode, String)> {
        serde_json::from_slice(body).map_err(|problem| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid body: {problem}"),
            )
        })
    }

    fn setup_objects(setup: &FluxBootstrap) -> Vec<Value> {
        bootstrap_objects(setup)
    }

    fn run_pass<'a>(
        sim: &'a Sim,
        state: &'a FluxCluster,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        run_pass(sim, state)
    }
}

fn crd(group: &str, kind: &str, plural: &str, singular: &str, short: &str) -> Value {
    pull::crd(
        group,
        (kind, plural, singular, &[short]),
        &["v1", "v1beta2", "v1beta1"],
        json!({"app.kubernetes.io/part-of": "flux"}),
        json!([]),
    )
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
    api: Api<'a>,
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
        api: Api {
            sim,
            cluster,
            agent: AGENT,
        },
        cache: sim.work_dir().join("flux").join(&state.cluster),
        sources: HashMap::new(),
        report_sources: Vec::new(),
        report_kustomizations: Vec::new(),
    };
    for repository in pass.api.objects_of(SOURCES) {
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
        let todo: Vec<Value> = pass
            .api
            .objects_of(KUSTOMIZATIONS)
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
    let present: HashSet<_> = pass
        .api
        .objects_of(KUSTOMIZATIONS)
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
                if let Err(problem) = pass.api.delete(entry).await {
                    tracing::warn!(cluster = %state.cluster, %problem, "prune failed");
                }
            }
        }
    }
    memory.passes += 1;
    state.set_report(json!({
        "pass": memory.passes,
        "finished": meta::now_timestamp(),
        "gitRepositories": pass.report_sources,
        "kustomizations": pass.report_kustomizations,
    }));
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
        let fetched = match self.api.object_of(SOURCES, &key.0, &key.1) {
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
                self.api.write_status(SOURCES, &repository, status);
                if let Err(message) = &fetched {
                    tracing::warn!(cluster = %self.api.cluster.name(), namespace = %key.0, name = %key.1, %message, "git fetch failed");
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
            let secret = self
                .api
                .secret(namespace, secret_name)
                .ok_or_else(|| format!("secret '{namespace}/{secret_name}' not found"))?;
            let field = |key: &str| pull::secret_data(&secret, key).unwrap_or_default();
            let (username, password) = (field("username"), field("password"));
            if !username.is_empty() || !password.is_empty() {
                header = Some(pull::basic_auth(&username, &password));
            }
        }
        let dir = self.cache.join(format!("{namespace}_{name}"));
        let sha = pull::checkout(&dir, url, branch, None, header.as_deref()).await?;
        Ok((format!("{branch}@sha1:{sha}"), dir))
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
                tracing::warn!(cluster = %self.api.cluster.name(), namespace = %key.0, name = %key.1, %problem, "kustomization failed");
                (inventory, Err(problem.to_string()))
            }
        };
        status["inventory"] = json!({"entries": inventory});
        self.api.write_status(KUSTOMIZATIONS, object, status);
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
            let namespaced = self
                .api
                .resolve_kind(&api_version, &kind)
                .is_none_or(|def| def.namespaced);
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
            match self.api.apply(&object, FIELD_MANAGER).await {
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
                tracing::info!(cluster = %self.api.cluster.name(), kustomization = %key.1, id = %stale.id, "pruning");
                if let Err(problem) = self.api.delete(stale).await {
                    return Err((inventory, FluxError::Apply(problem)));
                }
            }
        }
        Ok((revision, inventory))
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
            objects.extend(read_manifests(checkout, &entry).map_err(FluxError::Build)?);
        }
    }
    Ok(())
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
            built.extend(read_manifests(checkout, &target).map_err(FluxError::Build)?);
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
