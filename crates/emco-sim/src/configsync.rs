//! Pull mode: per cluster, what Google Config Sync's root and namespace reconcilers do.
//!
//! `POST /sim/clusters/{name}/configsync` leaves in the cluster what installing Config Sync and
//! configuring the cluster in the GKE console leave (the RootSync, RepoSync and ResourceGroup
//! CRDs, namespace `config-management-system`, Secret `git-creds`, RootSync `root-sync`) and
//! starts a loop that, every [`crate::SimOptions::flux_interval`], reconciles every RootSync
//! (in `config-management-system`) and every RepoSync in that cluster: a checkout by the real
//! git CLI, every manifest under `spec.git.dir` (unstructured format) server-side applied
//! through the cluster's own API, what left the source pruned, Config Sync's status written.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};

use crate::pull::{self, Api, Entry, described, text};
use crate::{Sim, meta};

/// The field manager of everything a reconciler applies (Config Sync's `configsync.FieldManager`).
pub const FIELD_MANAGER: &str = "configsync.gke.io";
/// Where Config Sync lives; RootSyncs elsewhere are ignored.
pub const SYSTEM_NAMESPACE: &str = "config-management-system";
/// The field manager of what the setup leaves (the installation, not a reconciler).
const SETUP_MANAGER: &str = "config-management-operator";
/// The User-Agent of the reconcilers' API requests.
const AGENT: &str = "reconciler/emco-sim";
const ROOT_SYNCS: &str = "configsync.gke.io/rootsyncs";
const REPO_SYNCS: &str = "configsync.gke.io/reposyncs";
const RESOURCE_GROUPS: &str = "kpt.dev/resourcegroups";
const MANAGER_ANNOTATION: &str = "configsync.gke.io/manager";
const MANAGEMENT_ANNOTATION: &str = "configmanagement.gke.io/managed";
const RESOURCE_ID_ANNOTATION: &str = "configsync.gke.io/resource-id";
const DELETION_POLICY_ANNOTATION: &str = "configsync.gke.io/deletion-propagation-policy";
const LOCAL_CONFIG_ANNOTATION: &str = "config.kubernetes.io/local-config";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "configmanagement.gke.io";
/// Namespaces a reconciler never deletes when they leave its source.
const PROTECTED_NAMESPACES: [&str; 5] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    SYSTEM_NAMESPACE,
];

/// One error of a sync object, reported as Config Sync does (`{code, errorMessage}`, the
/// message starting with `KNV{code}`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The source could not be fetched: no credentials, a refused fetch, a bad spec.
    #[error("KNV2004: {0}")]
    Source(String),
    /// A manifest could not be read.
    #[error("KNV1006: {0}")]
    Parse(String),
    /// A RepoSync declares something outside its namespace (not applied).
    #[error("KNV1058: {0}")]
    Scope(String),
    /// The cluster refused an apply or a prune.
    #[error("KNV2009: {0}")]
    Apply(String),
}

impl SyncError {
    /// Config Sync's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Source(_) => "2004",
            Self::Parse(_) => "1006",
            Self::Scope(_) => "1058",
            Self::Apply(_) => "2009",
        }
    }

    /// Reported in `status.source.errors` (else `status.sync.errors`).
    fn in_source(&self) -> bool {
        !matches!(self, Self::Apply(_))
    }

    fn to_status(&self) -> Value {
        json!({"code": self.code(), "errorMessage": self.to_string()})
    }
}

/// What `POST /sim/clusters/{name}/configsync` takes (the token is never shown).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSyncSetup {
    /// The repository URL.
    pub url: String,
    /// Its branch.
    pub branch: String,
    /// The directory of the repository the RootSync syncs.
    pub dir: String,
    /// HTTP Basic user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its token.
    #[serde(skip)]
    pub token: Option<String>,
    /// `token` with credentials, else `none`.
    pub auth: String,
}

impl ConfigSyncSetup {
    /// Reads a request body; an error names the field at fault.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let body = pull::SetupBody::parse(body, "dir", |dir| {
            if pull::leaves_repository(dir) {
                Err(format!("{dir:?} leaves the repository"))
            } else {
                Ok(())
            }
        })?;
        Ok(Self {
            url: body.url,
            branch: body.branch,
            dir: body.folder,
            username: body.username,
            token: body.token,
            auth: body.auth.into(),
        })
    }
}

/// Config Sync of every cluster that has it.
pub type ConfigSync = pull::PullModes<ConfigSyncMode>;

/// Config Sync's root and namespace reconcilers.
#[derive(Debug)]
pub enum ConfigSyncMode {}

/// One cluster's Config Sync.
pub type SyncCluster = pull::PullCluster<ConfigSyncMode>;

/// Which reconciler a sync object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Scope {
    Root,
    Repo,
}

impl Scope {
    fn kind(self) -> &'static str {
        match self {
            Self::Root => "RootSync",
            Self::Repo => "RepoSync",
        }
    }

    fn store_key(self) -> &'static str {
        match self {
            Self::Root => ROOT_SYNCS,
            Self::Repo => REPO_SYNCS,
        }
    }
}

/// A sync object: scope, namespace, name.
type SyncKey = (Scope, String, String);

/// What a cluster's reconcilers remember between passes.
#[derive(Debug, Default)]
pub struct Memory {
    passes: u64,
    syncs: BTreeMap<SyncKey, Remembered>,
}

#[derive(Debug)]
struct Remembered {
    /// Its objects stay when it is deleted (unless `deletion-propagation-policy: Foreground`).
    orphan: bool,
    inventory: Vec<Entry>,
}

impl pull::Mode for ConfigSyncMode {
    const MODE: &'static str = "config sync";
    const MISSING: &'static str = "is not set up";
    const SETUP_FIELD: &'static str = "setup";
    type Setup = ConfigSyncSetup;
    type Memory = Memory;
    const SETUP_MANAGER: &'static str = SETUP_MANAGER;
    const AGENT: &'static str = AGENT;

    fn modes(sim: &Sim) -> &pull::PullModes<Self> {
        &sim.configsync
    }

    fn parse(body: &[u8]) -> Result<ConfigSyncSetup, (StatusCode, String)> {
        ConfigSyncSetup::parse(body).map_err(|problem| (StatusCode::BAD_REQUEST, problem))
    }

    fn setup_objects(setup: &ConfigSyncSetup) -> Vec<Value> {
        setup_objects(setup)
    }

    fn run_pass<'a>(
        sim: &'a Sim,
        state: &'a SyncCluster,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        run_pass(sim, state)
    }
}

fn sync_crd(kind: &str, plural: &str, singular: &str) -> Value {
    let column =
        |name: &str, kind: &str, path: &str| json!({"name": name, "type": kind, "jsonPath": path});
    pull::crd(
        "configsync.gke.io",
        (kind, plural, singular, &[]),
        &["v1beta1", "v1alpha1"],
        json!({"configmanagement.gke.io/system": "true"}),
        json!([
            column("SourceCommit", "string", ".status.source.commit"),
            column(
                "SourceErrorCount",
                "integer",
                ".status.source.errorSummary.totalCount"
            ),
            column("SyncCommit", "string", ".status.sync.commit"),
            column(
                "SyncErrorCount",
                "integer",
                ".status.sync.errorSummary.totalCount"
            ),
        ]),
    )
}

/// What installing Config Sync and configuring the cluster in the GKE console leave.
fn setup_objects(setup: &ConfigSyncSetup) -> Vec<Value> {
    let mut objects = vec![
        sync_crd("RootSync", "rootsyncs", "rootsync"),
        sync_crd("RepoSync", "reposyncs", "reposync"),
        pull::crd(
            "kpt.dev",
            ("ResourceGroup", "resourcegroups", "resourcegroup", &["rg"]),
            &["v1alpha1"],
            json!({"configmanagement.gke.io/system": "true"}),
            json!([]),
        ),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE,
            "labels": {"configmanagement.gke.io/system": "true"}}}),
    ];
    let mut git = json!({"repo": setup.url, "branch": setup.branch, "dir": setup.dir,
        "revision": "HEAD", "auth": setup.auth});
    if let (Some(username), Some(token)) = (&setup.username, &setup.token) {
        objects.push(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "git-creds", "namespace": SYSTEM_NAMESPACE},
            "data": {"username": STANDARD.encode(username), "token": STANDARD.encode(token)}}),
        );
        git["secretRef"] = json!({"name": "git-creds"});
    }
    objects.push(
        json!({"apiVersion": "configsync.gke.io/v1beta1", "kind": "RootSync",
        "metadata": {"name": "root-sync", "namespace": SYSTEM_NAMESPACE},
        "spec": {"sourceFormat": "unstructured", "git": git}}),
    );
    objects
}

// ---- one pass ----

async fn run_pass(sim: &Sim, state: &SyncCluster) {
    let mut memory = state.pass.lock().await;
    let Some(cluster) = sim.cluster(&state.cluster) else {
        return;
    };
    let api = Api {
        sim,
        cluster,
        agent: AGENT,
    };
    let cache = sim.work_dir().join("configsync").join(&state.cluster);
    let mut reports = Vec::new();
    // A RootSync may apply RepoSyncs: reconcile new ones in the same pass.
    let mut done = HashSet::new();
    for _round in 0..8 {
        let todo: Vec<SyncKey> = sync_keys(&api)
            .into_iter()
            .filter(|key| !done.contains(key))
            .collect();
        if todo.is_empty() {
            break;
        }
        for key in todo {
            // Read it again: one reconciled before may have changed or pruned it.
            if let Some(object) = api.object_of(key.0.store_key(), &key.1, &key.2) {
                reports.push(reconcile_one(&api, &cache, &key, &object, &mut memory).await);
            }
            done.insert(key);
        }
    }
    // Sync objects deleted since (pruned by a RootSync, or by hand) take their objects along.
    let present: HashSet<SyncKey> = sync_keys(&api).into_iter().collect();
    let gone: Vec<SyncKey> = memory
        .syncs
        .keys()
        .filter(|key| !present.contains(*key))
        .cloned()
        .collect();
    for key in gone {
        let Some(remembered) = memory.syncs.remove(&key) else {
            continue;
        };
        if let Err(problem) = api.delete(&resource_group_entry(&key)).await {
            tracing::warn!(cluster = %state.cluster, %problem, "resource group delete failed");
        }
        if remembered.orphan {
            tracing::info!(cluster = %state.cluster, kind = key.0.kind(), namespace = %key.1, name = %key.2, "sync object gone: its objects are orphaned");
            continue;
        }
        tracing::info!(cluster = %state.cluster, kind = key.0.kind(), namespace = %key.1, name = %key.2, "sync object gone: pruning its objects");
        for entry in remembered.inventory.iter().rev() {
            if protected(entry) {
                continue;
            }
            if let Err(problem) = api.delete(entry).await {
                tracing::warn!(cluster = %state.cluster, %problem, "prune failed");
            }
        }
    }
    memory.passes += 1;
    state.set_report(json!({
        "pass": memory.passes,
        "finished": meta::now_timestamp(),
        "syncs": reports,
    }));
}

/// Every RootSync in `config-management-system`, then every RepoSync.
fn sync_keys(api: &Api<'_>) -> Vec<SyncKey> {
    let mut keys = Vec::new();
    for scope in [Scope::Root, Scope::Repo] {
        for object in api.objects_of(scope.store_key()) {
            let namespace = text(&object, "/metadata/namespace");
            if scope == Scope::Root && namespace != SYSTEM_NAMESPACE {
                continue;
            }
            keys.push((
                scope,
                namespace.to_owned(),
                text(&object, "/metadata/name").to_owned(),
            ));
        }
    }
    keys
}

fn resource_group_entry(key: &SyncKey) -> Entry {
    Entry {
        id: format!("{}_{}_kpt.dev_ResourceGroup", key.1, key.2),
        v: "v1alpha1".into(),
    }
}

/// A Namespace no reconciler deletes.
fn protected(entry: &Entry) -> bool {
    entry.parts().is_some_and(|(_, name, group, kind)| {
        group.is_empty() && kind == "Namespace" && PROTECTED_NAMESPACES.contains(&name)
    })
}

/// What one reconcile of a sync object did.
#[derive(Debug, Default)]
struct Outcome {
    /// The commit checked out, when the fetch worked.
    commit: Option<String>,
    /// The manifests were read and applied (the source stage passed).
    synced: bool,
    /// What it manages now.
    inventory: Vec<Entry>,
    /// What this reconcile applied, `Kind/namespace/name`.
    applied: Vec<String>,
    errors: Vec<SyncError>,
}

async fn reconcile_one(
    api: &Api<'_>,
    cache: &Path,
    key: &SyncKey,
    object: &Value,
    memory: &mut Memory,
) -> Value {
    let remembered = memory.syncs.get(key).map(|known| known.inventory.clone());
    let previous = remembered
        .clone()
        .unwrap_or_else(|| load_inventory(api, key));
    let outcome = sync(api, cache, key, object, previous.clone()).await;
    if remembered.is_none() || outcome.inventory != previous {
        write_resource_group(api, key, &outcome.inventory).await;
    }
    write_status(api, key, object, &outcome);
    for problem in &outcome.errors {
        tracing::warn!(cluster = %api.cluster.name(), kind = key.0.kind(), namespace = %key.1, name = %key.2, %problem, "sync error");
    }
    // Config Sync's default is `Orphan`: only `Foreground` deletes what the object applied.
    let orphan = object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(DELETION_POLICY_ANNOTATION))
        .and_then(Value::as_str)
        != Some("Foreground");
    let report = json!({
        "kind": key.0.kind(), "namespace": key.1, "name": key.2,
        "commit": outcome.commit,
        "synced": outcome.synced && outcome.errors.is_empty(),
        "applied": outcome.applied,
        "objects": outcome.inventory.len(),
        "errors": outcome.errors.iter().map(SyncError::to_status).collect::<Vec<_>>(),
    });
    memory.syncs.insert(
        key.clone(),
        Remembered {
            orphan,
            inventory: outcome.inventory,
        },
    );
    report
}

/// The inventory a sync object's ResourceGroup lists (after a restart of the pull mode).
fn load_inventory(api: &Api<'_>, key: &SyncKey) -> Vec<Entry> {
    let resources = api
        .object_of(RESOURCE_GROUPS, &key.1, &key.2)
        .and_then(|group| group.pointer("/spec/resources").cloned())
        .and_then(|resources| match resources {
            Value::Array(resources) => Some(resources),
            _ => None,
        })
        .unwrap_or_default();
    resources
        .iter()
        .filter_map(|resource| {
            let (group, kind) = (text(resource, "/group"), text(resource, "/kind"));
            let (namespace, name) = (text(resource, "/namespace"), text(resource, "/name"));
            // No version is listed: any the type serves will do.
            let api_version = if group.is_empty() {
                "v1".to_owned()
            } else {
                format!("{group}/")
            };
            let def = api.resolve_kind(&api_version, kind)?;
            Some(Entry {
                id: format!(
                    "{}_{name}_{group}_{kind}",
                    if def.namespaced { namespace } else { "" }
                ),
                v: def.version.clone(),
            })
        })
        .collect()
}

/// Lists the inventory in the ResourceGroup named as the sync object, as Config Sync does.
async fn write_resource_group(api: &Api<'_>, key: &SyncKey, inventory: &[Entry]) {
    let resources: Vec<Value> = inventory
        .iter()
        .filter_map(Entry::parts)
        .map(|(namespace, name, group, kind)| {
            json!({"group": group, "kind": kind, "namespace": namespace, "name": name})
        })
        .collect();
    let group = json!({"apiVersion": "kpt.dev/v1alpha1", "kind": "ResourceGroup",
        "metadata": {"name": key.2, "namespace": key.1},
        "spec": {"resources": resources}});
    if let Err(problem) = api.apply(&group, FIELD_MANAGER).await {
        tracing::warn!(cluster = %api.cluster.name(), %problem, "resource group not written");
    }
}

/// Where and how to fetch a sync object's source.
struct Source {
    repo: String,
    branch: String,
    revision: Option<String>,
    dir: String,
    header: Option<String>,
    /// `Secret namespace/name (user "…")`, to name refused credentials.
    credentials: Option<String>,
}

fn source_of(api: &Api<'_>, key: &SyncKey, object: &Value) -> Result<Source, SyncError> {
    match text(object, "/spec/sourceType") {
        "" | "git" => {}
        other => {
            return Err(SyncError::Source(format!(
                "spec.sourceType {other:?} is not simulated (only git)"
            )));
        }
    }
    match text(object, "/spec/sourceFormat") {
        "" | "unstructured" => {}
        other => {
            return Err(SyncError::Source(format!(
                "spec.sourceFormat {other:?} is not simulated (only unstructured)"
            )));
        }
    }
    let repo = text(object, "/spec/git/repo");
    if repo.is_empty() {
        return Err(SyncError::Source("spec.git.repo is required".into()));
    }
    let branch = match text(object, "/spec/git/branch") {
        "" => "master", // Config Sync's default
        branch => branch,
    };
    let revision = match text(object, "/spec/git/revision") {
        "" | "HEAD" => None,
        revision => Some(revision.to_owned()),
    };
    let raw_dir = text(object, "/spec/git/dir");
    if pull::leaves_repository(raw_dir) {
        return Err(SyncError::Source(format!(
            "spec.git.dir {raw_dir:?} leaves the repository"
        )));
    }
    let dir = raw_dir.trim_start_matches('/').trim_start_matches("./");
    let mut credentials = None;
    let header = match text(object, "/spec/git/auth") {
        "" | "none" => None,
        "token" => {
            let secret_name = text(object, "/spec/git/secretRef/name");
            if secret_name.is_empty() {
                return Err(SyncError::Source(
                    "spec.git.secretRef.name is required with spec.git.auth: token".into(),
                ));
            }
            let namespace = &key.1;
            let secret = api.secret(namespace, secret_name).ok_or_else(|| {
                SyncError::Source(format!(
                    "Secret {namespace}/{secret_name} not found: spec.git.auth token needs it, with keys username and token"
                ))
            })?;
            let field = |field: &str| {
                pull::secret_value(&secret, field).ok_or_else(|| {
                    SyncError::Source(format!(
                        "Secret {namespace}/{secret_name} has no {field:?} key"
                    ))
                })
            };
            let username = field("username")?;
            credentials = Some(format!(
                "Secret {namespace}/{secret_name} (user {username:?})"
            ));
            Some(pull::basic_auth(&username, &field("token")?))
        }
        other => {
            return Err(SyncError::Source(format!(
                "spec.git.auth {other:?} is not simulated (token, none)"
            )));
        }
    };
    Ok(Source {
        repo: repo.to_owned(),
        branch: branch.to_owned(),
        revision,
        dir: dir.to_owned(),
        header,
        credentials,
    })
}

/// Fetches, reads, applies and prunes; `previous` is what it managed before.
async fn sync(
    api: &Api<'_>,
    cache: &Path,
    key: &SyncKey,
    object: &Value,
    previous: Vec<Entry>,
) -> Outcome {
    let mut outcome = Outcome {
        inventory: previous,
        ..Outcome::default()
    };
    let source = match source_of(api, key, object) {
        Ok(source) => source,
        Err(problem) => {
            outcome.errors.push(problem);
            return outcome;
        }
    };
    let checkout = cache.join(format!("{}_{}_{}", key.0.kind(), key.1, key.2));
    let commit = match pull::checkout(
        &checkout,
        &source.repo,
        &source.branch,
        source.revision.as_deref(),
        source.header.as_deref(),
    )
    .await
    {
        Ok(commit) => commit,
        Err(mut problem) => {
            // git only says it wanted to prompt: say whose credentials were refused.
            if let Some(credentials) = &source.credentials
                && ["could not read Username", "Authentication failed", "401"]
                    .iter()
                    .any(|sign| problem.contains(sign))
            {
                problem = format!(
                    "{} refused the credentials of {credentials}: {problem}",
                    source.repo
                );
            }
            outcome.errors.push(SyncError::Source(problem));
            return outcome;
        }
    };
    outcome.commit = Some(commit);
    let mut objects = match read_source(&checkout, &source.dir) {
        Ok(objects) => objects,
        Err(problems) => {
            // Like Config Sync: nothing of a source that does not parse is applied or pruned.
            outcome.errors.extend(problems);
            return outcome;
        }
    };
    outcome.synced = true;
    // Namespaces and CRDs first, so what lives in them can be applied.
    objects.sort_by_key(|(_, object)| match text(object, "/kind") {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        _ => 2,
    });
    let mut inventory = Vec::new();
    let mut apply_failed = false;
    for (path, mut object) in objects {
        let prepared = declare(api, key, &path, &mut object);
        if let Err(problem) = prepared {
            outcome.errors.push(problem);
            continue;
        }
        match api.apply(&object, FIELD_MANAGER).await {
            Ok(entry) => {
                if !inventory.contains(&entry) {
                    inventory.push(entry);
                }
                outcome.applied.push(described(&object));
            }
            Err(problem) => {
                apply_failed = true;
                outcome.errors.push(SyncError::Apply(problem));
            }
        }
    }
    let previous = std::mem::take(&mut outcome.inventory);
    if apply_failed {
        // Nothing is pruned after a refused apply: a passing problem must not delete anything.
        outcome.inventory = previous;
        for entry in inventory {
            if !outcome.inventory.contains(&entry) {
                outcome.inventory.push(entry);
            }
        }
        return outcome;
    }
    let declared: HashSet<String> = inventory.iter().map(|entry| entry.id.clone()).collect();
    outcome.inventory = inventory;
    for stale in previous.iter().rev() {
        if declared.contains(&stale.id) || protected(stale) {
            continue;
        }
        tracing::info!(cluster = %api.cluster.name(), kind = key.0.kind(), namespace = %key.1, name = %key.2, id = %stale.id, "pruning");
        if let Err(problem) = api.delete(stale).await {
            outcome.errors.push(SyncError::Apply(problem));
            outcome.inventory.push(stale.clone());
        }
    }
    outcome
}

/// Places `object` for the reconciler of `key` (namespace, annotations, label), or refuses it
/// as Config Sync's namespace reconcilers do.
fn declare(api: &Api<'_>, key: &SyncKey, path: &str, object: &mut Value) -> Result<(), SyncError> {
    let api_version = text(object, "/apiVersion").to_owned();
    let kind = text(object, "/kind").to_owned();
    let name = text(object, "/metadata/name").to_owned();
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or(("", api_version.as_str()));
    // An unknown kind counts as namespaced; applying it reports the missing type.
    let namespaced = api
        .resolve_kind(&api_version, &kind)
        .is_none_or(|def| def.namespaced);
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(SyncError::Parse(format!("{path}: {kind} without metadata")));
    };
    let declared = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let details = |namespace: &str| {
        let namespace = if namespace.is_empty() {
            String::new()
        } else {
            format!("namespace: {namespace}\n")
        };
        format!(
            "\n\nsource: {path}\n{namespace}metadata.name: {name}\ngroup: {group}\nversion: {version}\nkind: {kind}"
        )
    };
    match key.0 {
        Scope::Root => {
            if !namespaced {
                metadata.remove("namespace");
            } else if declared.is_empty() {
                metadata.insert("namespace".into(), json!("default"));
            }
        }
        Scope::Repo => {
            if !namespaced {
                return Err(SyncError::Scope(format!(
                    "Resources in namespace Repos must be Namespace-scoped type, but objects of type {group}/{version}, Kind={kind} are Cluster-scoped. Move {name} to the Root repo.{}",
                    details(&declared)
                )));
            }
            if declared.is_empty() {
                metadata.insert("namespace".into(), json!(key.1));
            } else if declared != key.1 {
                return Err(SyncError::Scope(format!(
                    "Resources in the {:?} repo must either omit metadata.namespace or declare metadata.namespace={:?}{}",
                    key.1,
                    key.1,
                    details(&declared)
                )));
            }
        }
    }
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let resource_id = if namespace.is_empty() {
        format!("{group}_{}_{name}", kind.to_lowercase())
    } else {
        format!("{group}_{}_{namespace}_{name}", kind.to_lowercase())
    };
    let manager = match (key.0, key.2.as_str()) {
        (Scope::Root, "root-sync") => ":root".to_owned(),
        (Scope::Root, name) => format!(":root_{name}"),
        (Scope::Repo, "repo-sync") => key.1.clone(),
        (Scope::Repo, name) => format!("{}_{name}", key.1),
    };
    if let Some(annotations) = metadata
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        annotations.insert(MANAGER_ANNOTATION.into(), json!(manager));
        annotations.insert(MANAGEMENT_ANNOTATION.into(), json!("enabled"));
        annotations.insert(RESOURCE_ID_ANNOTATION.into(), json!(resource_id));
    }
    // The file's own labels win: a label is added, never replaced or removed.
    if let Some(labels) = metadata
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        labels
            .entry(MANAGED_BY_LABEL)
            .or_insert_with(|| json!(MANAGED_BY));
    }
    Ok(())
}

/// Every object in the manifests under `dir`, with the file it came from; or every file that
/// does not parse.
fn read_source(checkout: &Path, dir: &str) -> Result<Vec<(String, Value)>, Vec<SyncError>> {
    let root = checkout.join(dir);
    if !root.is_dir() {
        return Err(vec![SyncError::Source(format!(
            "spec.git.dir {dir:?} is not a directory at this commit"
        ))]);
    }
    let mut files = Vec::new();
    list_manifests(checkout, &root, &mut files, 0).map_err(|problem| vec![problem])?;
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let path = pull::shown(checkout, &file);
        match pull::read_manifests(checkout, &file) {
            Ok(read) => {
                for object in read {
                    if text(&object, "/apiVersion").is_empty() || text(&object, "/kind").is_empty()
                    {
                        problems.push(SyncError::Parse(format!(
                            "{path}: {:?} has no apiVersion or kind",
                            text(&object, "/metadata/name")
                        )));
                        continue;
                    }
                    let local = object
                        .pointer("/metadata/annotations")
                        .and_then(|annotations| annotations.get(LOCAL_CONFIG_ANNOTATION))
                        .and_then(Value::as_str)
                        .is_some_and(|value| value != "false");
                    if !local {
                        objects.push((path.clone(), object));
                    }
                }
            }
            Err(problem) => problems.push(SyncError::Parse(problem)),
        }
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(problems)
    }
}

/// Collects `*.yaml`, `*.yml`, `*.json` below `dir` (sorted; hidden entries and kustomization
/// files skipped: an unstructured repository is read as it is, not built).
fn list_manifests(
    checkout: &Path,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), SyncError> {
    if depth > 32 {
        return Err(SyncError::Source(format!(
            "{}: too deeply nested",
            pull::shown(checkout, dir)
        )));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|problem| SyncError::Source(format!("{}: {problem}", pull::shown(checkout, dir))))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for entry in entries {
        let file_name = entry
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with('.') {
            continue;
        }
        if entry.is_dir() {
            list_manifests(checkout, &entry, files, depth + 1)?;
        } else if pull::is_manifest(&entry)
            && !matches!(
                file_name.as_str(),
                "kustomization.yaml" | "kustomization.yml"
            )
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// The status timestamps, which alone do not warrant a write.
fn without_times(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| {
                    !matches!(
                        key.as_str(),
                        "lastUpdate" | "lastUpdateTime" | "lastTransitionTime"
                    )
                })
                .map(|(key, value)| (key.clone(), without_times(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

fn error_summary(count: usize) -> Value {
    if count == 0 {
        json!({})
    } else {
        json!({"totalCount": count, "truncated": false, "errorCountAfterTruncation": count})
    }
}

/// Writes Config Sync's status: `source`, `sync`, `lastSyncedCommit`, the `Syncing` condition.
fn write_status(api: &Api<'_>, key: &SyncKey, object: &Value, outcome: &Outcome) {
    let old = object
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let now = meta::now_timestamp();
    let generation = object
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(Value::Null);
    let git = json!({
        "repo": text(object, "/spec/git/repo"),
        "branch": match text(object, "/spec/git/branch") { "" => "master", branch => branch },
        "revision": match text(object, "/spec/git/revision") { "" => "HEAD", revision => revision },
        "dir": match text(object, "/spec/git/dir") { "" => ".", dir => dir },
    });
    let commit = outcome.commit.clone().or_else(|| {
        old.pointer("/source/commit")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let (source_errors, sync_errors): (Vec<&SyncError>, Vec<&SyncError>) = outcome
        .errors
        .iter()
        .partition(|problem| problem.in_source());
    let listed = |errors: &[&SyncError]| {
        errors
            .iter()
            .map(|problem| problem.to_status())
            .collect::<Vec<_>>()
    };
    let mut status = old.clone();
    status["observedGeneration"] = generation;
    status["reconciler"] = json!(match (key.0, key.2.as_str()) {
        (Scope::Root, "root-sync") => "root-reconciler".to_owned(),
        (Scope::Root, name) => format!("root-reconciler-{name}"),
        (Scope::Repo, "repo-sync") => format!("ns-reconciler-{}", key.1),
        (Scope::Repo, name) => format!("ns-reconciler-{}-{name}-{}", key.1, name.len()),
    });
    let mut source =
        json!({"git": git, "lastUpdate": now, "errorSummary": error_summary(source_errors.len())});
    if let Some(commit) = &commit {
        source["commit"] = json!(commit);
    }
    if !source_errors.is_empty() {
        source["errors"] = json!(listed(&source_errors));
    }
    status["source"] = source;
    if outcome.synced {
        let mut sync = json!({"git": git, "commit": commit, "lastUpdate": now,
            "errorSummary": error_summary(sync_errors.len())});
        if sync_errors.is_empty() {
            status["lastSyncedCommit"] = json!(commit);
        } else {
            sync["errors"] = json!(listed(&sync_errors));
        }
        status["sync"] = sync;
    }
    let (reason, message) = match (outcome.synced, outcome.errors.is_empty()) {
        (false, _) => ("Source", "Source"),
        (true, true) => ("Sync", "Sync Completed"),
        (true, false) => ("Sync", "Sync Completed with errors"),
    };
    let mut condition = json!({
        "type": "Syncing", "status": "False", "reason": reason, "message": message,
        "errorSummary": error_summary(outcome.errors.len()),
        "lastUpdateTime": now, "lastTransitionTime": now,
    });
    if let Some(commit) = &commit {
        condition["commit"] = json!(commit);
    }
    status["conditions"] = json!([condition]);
    if without_times(&old) == without_times(&status) {
        return;
    }
    api.write_status(key.0.store_key(), object, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_bodies_name_the_field_at_fault() {
        let parse = |body: Value| ConfigSyncSetup::parse(body.to_string().as_bytes());
        let ok = parse(json!({"url": "http://x/git/r.git", "dir": "/clusters/a"})).unwrap();
        assert_eq!((ok.branch.as_str(), ok.auth.as_str()), ("main", "none"));
        let ok = parse(json!({"url": "u", "dir": "d", "username": "n", "token": "t"})).unwrap();
        assert_eq!(ok.auth, "token");
        assert!(
            serde_json::to_string(&ok)
                .unwrap()
                .contains("\"auth\":\"token\"")
        );
        assert!(!serde_json::to_string(&ok).unwrap().contains("\"t\""));
        for (body, field) in [
            (json!({"dir": "d"}), "url"),
            (json!({"url": "u"}), "dir"),
            (json!({"url": 5, "dir": "d"}), "url"),
            (json!({"url": "u", "dir": "../x"}), "dir"),
            (json!({"url": "u", "dir": "d", "token": "t"}), "username"),
            (json!({"url": "u", "dir": "d", "path": "p"}), "path"),
            (json!({"url": "u", "dir": "d", "branch": ""}), "branch"),
        ] {
            let problem = parse(body.clone()).unwrap_err();
            assert!(problem.contains(&format!("`{field}`")), "{body}: {problem}");
        }
        assert!(ConfigSyncSetup::parse(b"[1]").is_err());
    }

    #[test]
    fn reads_unstructured_sources() {
        let root = std::env::temp_dir().join(format!("emco-sim-cs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d/nested/.hidden")).unwrap();
        std::fs::write(
            root.join("d/a.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("d/nested/b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n  annotations:\n    config.kubernetes.io/local-config: \"true\"\n",
        )
        .unwrap();
        std::fs::write(root.join("d/nested/.hidden/c.yaml"), "kind: [").unwrap();
        std::fs::write(root.join("d/kustomization.yaml"), "resources: []\n").unwrap();
        std::fs::write(root.join("d/deployed"), [0u8, 159, 146, 150]).unwrap();
        let objects = read_source(&root, "d").unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|(path, object)| format!("{path}:{}", text(object, "/metadata/name")))
            .collect();
        assert_eq!(names, vec!["d/a.json:a", "d/nested/b.yaml:b"]);
        std::fs::write(root.join("d/bad.yml"), "kind: [").unwrap();
        let problems = read_source(&root, "d").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().starts_with("KNV1006: d/bad.yml"));
        assert_eq!(problems[0].code(), "1006");
        assert!(read_source(&root, "missing").is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
