//! Pull mode: per cluster, what Argo CD's application controller does for directory-type
//! Applications.
//!
//! `POST /sim/clusters/{name}/argocd` leaves in the cluster what installing Argo CD and adding a
//! repository leave (the Application and AppProject CRDs, namespace `argocd`, AppProject
//! `default`, a repository Secret, and a root "app of apps" Application `root`) and starts a
//! loop that, every [`crate::SimOptions::flux_interval`], reconciles every Application in
//! `argocd`: a checkout by the real git CLI, the directory's manifests read by Argo CD's rules,
//! compared with the live objects, synced (server-side apply through the cluster's own API,
//! prune) when automated, Argo CD's status written; a deleted Application with Argo CD's
//! resources finalizer takes its objects along before it goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::pull::{self, Api, Entry, text};
use crate::{Sim, catalog, meta};

/// The field manager of everything a sync applies (Argo CD's `ArgoCDSSAManager`).
pub const FIELD_MANAGER: &str = "argocd-controller";
/// Where Argo CD lives; Applications elsewhere are ignored.
pub const NAMESPACE: &str = "argocd";
/// Argo CD's default resource tracking: this label names the Application.
pub const TRACKING_LABEL: &str = "app.kubernetes.io/instance";
/// The label that makes a Secret in `argocd` a repository (`repository`) or a credential
/// template (`repo-creds`).
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// The finalizer that makes deleting an Application delete its objects first.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// The same, with explicit propagation policies.
const POLICY_FINALIZERS: [&str; 3] = [
    RESOURCES_FINALIZER,
    "resources-finalizer.argocd.argoproj.io/foreground",
    "resources-finalizer.argocd.argoproj.io/background",
];
/// The field manager of what the setup leaves (Argo CD's API server creates the default
/// project and repository Secrets).
const SETUP_MANAGER: &str = "argocd-server";
/// The User-Agent of the controller's API requests.
const AGENT: &str = "argocd-application-controller/emco-sim";
const APPLICATIONS: &str = "argoproj.io/applications";
const PROJECTS: &str = "argoproj.io/appprojects";
const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
const IN_CLUSTER_NAME: &str = "in-cluster";
const SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
const HELM_POLICY_ANNOTATION: &str = "helm.sh/resource-policy";
/// A file holding this is not read (Argo CD's `skipFileRenderingMarker`).
const SKIP_MARKER: &str = "+argocd:skip-file-rendering";
/// The repository Secret the setup writes when given a token.
const ROOT_SECRET: &str = "root-repo";
/// Successful syncs kept in `status.history` (Argo CD's default `revisionHistoryLimit`).
const HISTORY_LIMIT: usize = 10;

/// One problem of an Application, reported as a condition of Argo CD's type for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// The spec cannot be acted on: project, destination, source.
    #[error("{0}")]
    InvalidSpec(String),
    /// The target state could not be loaded: fetch, credentials, path, a file.
    #[error(
        "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = {code} desc = {message}"
    )]
    Comparison {
        /// The gRPC code Argo CD's repo-server answers with.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
    /// An automated sync was refused, or failed and will not be retried.
    #[error("{0}")]
    Sync(String),
}

impl AppError {
    /// Argo CD's condition type.
    pub fn condition_type(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpecError",
            Self::Comparison { .. } => "ComparisonError",
            Self::Sync(_) => "SyncError",
        }
    }

    fn unknown(message: impl Into<String>) -> Self {
        Self::Comparison {
            code: "Unknown",
            message: message.into(),
        }
    }

    fn precondition(message: impl Into<String>) -> Self {
        Self::Comparison {
            code: "FailedPrecondition",
            message: message.into(),
        }
    }

    fn to_condition(&self) -> Value {
        json!({"type": self.condition_type(), "message": self.to_string()})
    }
}

/// What `POST /sim/clusters/{name}/argocd` takes (the token is never shown).
#[derive(Debug, Clone, Serialize)]
pub struct ArgoCdSetup {
    /// The repository URL.
    pub url: String,
    /// The root Application's `targetRevision`.
    pub branch: String,
    /// The folder the root Application reads (not recursively).
    pub path: String,
    /// HTTP Basic user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its token.
    #[serde(skip)]
    pub token: Option<String>,
    /// `token` with credentials, else `none`.
    pub auth: String,
}

impl ArgoCdSetup {
    /// Reads a request body; an error names the field at fault.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let body = pull::SetupBody::parse(body, "path", check_path)?;
        Ok(Self {
            url: body.url,
            branch: body.branch,
            path: body.folder,
            username: body.username,
            token: body.token,
            auth: body.auth.into(),
        })
    }
}

/// Argo CD's checks of an app path: relative and inside the repository.
fn check_path(path: &str) -> Result<(), String> {
    if Path::new(path).is_absolute() {
        return Err(format!("{path}: app path is absolute"));
    }
    if pull::leaves_repository(path) {
        return Err(format!("{path}: app path outside root"));
    }
    Ok(())
}

/// Argo CD of every cluster that has it.
pub type ArgoCd = pull::PullModes<ArgoCdMode>;

/// Argo CD's application controller.
#[derive(Debug)]
pub enum ArgoCdMode {}

/// One cluster's Argo CD.
pub type ArgoCluster = pull::PullCluster<ArgoCdMode>;

impl pull::Mode for ArgoCdMode {
    const MODE: &'static str = "argo cd";
    const MISSING: &'static str = "is not set up";
    const SETUP_FIELD: &'static str = "setup";
    type Setup = ArgoCdSetup;
    type Memory = u64;
    const SETUP_MANAGER: &'static str = SETUP_MANAGER;
    const AGENT: &'static str = AGENT;

    fn modes(sim: &Sim) -> &pull::PullModes<Self> {
        &sim.argocd
    }

    fn parse(body: &[u8]) -> Result<ArgoCdSetup, (StatusCode, String)> {
        ArgoCdSetup::parse(body).map_err(|problem| (StatusCode::BAD_REQUEST, problem))
    }

    fn setup_objects(setup: &ArgoCdSetup) -> Vec<Value> {
        setup_objects(setup)
    }

    fn run_pass<'a>(
        sim: &'a Sim,
        state: &'a ArgoCluster,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        run_pass(sim, state)
    }
}

/// One of Argo CD's CRDs: `v1alpha1` only, and no subresources, as Argo CD ships them (the
/// controller writes status with the object).
fn argo_crd(names: (&str, &str, &str, &[&str]), columns: Value) -> Value {
    let (kind, plural, singular, short_names) = names;
    let mut version = json!({
        "name": "v1alpha1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "subresources": {},
    });
    if columns
        .as_array()
        .is_some_and(|columns| !columns.is_empty())
    {
        version["additionalPrinterColumns"] = columns;
    }
    let name = format!("{plural}.argoproj.io");
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "argocd"}},
        "spec": {
            "group": "argoproj.io",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular, "shortNames": short_names},
            "scope": "Namespaced",
            "versions": [version],
        },
    })
}

/// What installing Argo CD, adding the repository and the root Application leave.
fn setup_objects(setup: &ArgoCdSetup) -> Vec<Value> {
    let column = |name: &str, path: &str, priority: i64| json!({"name": name, "type": "string", "jsonPath": path, "priority": priority});
    let mut objects = vec![
        argo_crd(
            (
                "Application",
                "applications",
                "application",
                &["app", "apps"],
            ),
            json!([
                column("Sync Status", ".status.sync.status", 0),
                column("Health Status", ".status.health.status", 0),
                column("Revision", ".status.sync.revision", 10),
                column("Project", ".spec.project", 10),
            ]),
        ),
        argo_crd(
            (
                "AppProject",
                "appprojects",
                "appproject",
                &["appproj", "appprojs"],
            ),
            json!([]),
        ),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": "*", "server": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}),
    ];
    if let (Some(username), Some(token)) = (&setup.username, &setup.token) {
        objects.push(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": ROOT_SECRET, "namespace": NAMESPACE,
                "labels": {SECRET_TYPE_LABEL: "repository"}},
            "data": {"type": STANDARD.encode("git"), "url": STANDARD.encode(&setup.url),
                "username": STANDARD.encode(username), "password": STANDARD.encode(token)}}),
        );
    }
    // allowEmpty: when the last deployment leaves the cluster, its Application must still be
    // pruned (Argo CD otherwise refuses to sync a source that would wipe out everything).
    objects.push(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "root", "namespace": NAMESPACE},
        "spec": {"project": "default",
            "source": {"repoURL": setup.url, "targetRevision": setup.branch, "path": setup.path},
            "destination": {"server": IN_CLUSTER_SERVER, "namespace": NAMESPACE},
            "syncPolicy": {"automated": {"prune": true, "allowEmpty": true}}}}),
    );
    objects
}

fn terminating(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// The value of `option` (`Prune`, `Delete`, …) in an object's sync-options annotation.
fn sync_option(object: &Value, option: &str) -> Option<String> {
    let options = object
        .pointer("/metadata/annotations")?
        .get(SYNC_OPTIONS_ANNOTATION)?
        .as_str()?;
    options.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == option).then(|| value.trim().to_owned())
    })
}

// ---- one pass ----

/// One pass over a cluster.
struct Pass<'a> {
    api: Api<'a>,
    cache: PathBuf,
    /// Checkouts made this pass, by repository, revision and whose credentials: Applications of
    /// one repository share a fetch, as they share Argo CD's repo-server.
    checkouts: HashMap<u64, Result<(PathBuf, String), String>>,
}

impl Pass<'_> {
    async fn checkout(&mut self, source: &Source) -> Result<(PathBuf, String), String> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        // The Secret and user, not the password: the key names a directory.
        (&source.repo, &source.revision, &source.credentials).hash(&mut hasher);
        let key = hasher.finish();
        if let Some(done) = self.checkouts.get(&key) {
            return done.clone();
        }
        let dir = self.cache.join(format!("{key:016x}"));
        let done = pull::checkout(
            &dir,
            &source.repo,
            &source.revision,
            Some(&source.revision),
            source.header.as_deref(),
        )
        .await
        .map(|sha| (dir, sha));
        self.checkouts.insert(key, done.clone());
        done
    }
}

async fn run_pass(sim: &Sim, state: &ArgoCluster) {
    let mut passes = state.pass.lock().await;
    let Some(cluster) = sim.cluster(&state.cluster) else {
        return;
    };
    let mut pass = Pass {
        api: Api {
            sim,
            cluster,
            agent: AGENT,
        },
        cache: sim.work_dir().join("argocd").join(&state.cluster),
        checkouts: HashMap::new(),
    };
    let mut reports: BTreeMap<String, Value> = BTreeMap::new();
    let mut synced = HashSet::new();
    let mut finalized = HashSet::new();
    // An Application may apply Applications (app of apps) or prune them: those are handled in
    // the same pass, and so is a deletion that waited for another one.
    for _round in 0..8 {
        let mut progressed = false;
        for name in application_names(&pass.api) {
            // Read it again: one handled before may have changed or deleted it.
            let Some(app) = pass.api.object_of(APPLICATIONS, NAMESPACE, &name) else {
                continue;
            };
            if terminating(&app) {
                if finalized.contains(&name) {
                    continue;
                }
                let deletion = finalize(&pass.api, &app).await;
                progressed |= deletion.done || deletion.acted;
                if deletion.done {
                    finalized.insert(name.clone());
                }
                reports.insert(name, deletion.report);
            } else if synced.insert(name.clone()) {
                let report = reconcile_one(&mut pass, &app).await;
                reports.insert(name, report);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    *passes += 1;
    state.set_report(json!({
        "pass": *passes,
        "finished": meta::now_timestamp(),
        "applications": reports.into_values().collect::<Vec<_>>(),
    }));
}

/// The Applications in `argocd`, by name.
fn application_names(api: &Api<'_>) -> Vec<String> {
    let mut names: Vec<String> = api
        .objects_of(APPLICATIONS)
        .iter()
        .filter(|app| text(app, "/metadata/namespace") == NAMESPACE)
        .map(|app| text(app, "/metadata/name").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One object an Application manages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resource {
    group: String,
    version: String,
    kind: String,
    namespace: String,
    name: String,
}

impl Resource {
    fn from_status(value: &Value) -> Option<Self> {
        let resource = Self {
            group: text(value, "/group").to_owned(),
            version: text(value, "/version").to_owned(),
            kind: text(value, "/kind").to_owned(),
            namespace: text(value, "/namespace").to_owned(),
            name: text(value, "/name").to_owned(),
        };
        (!resource.kind.is_empty() && !resource.name.is_empty()).then_some(resource)
    }

    fn entry(&self) -> Entry {
        Entry {
            id: format!(
                "{}_{}_{}_{}",
                self.namespace, self.name, self.group, self.kind
            ),
            v: self.version.clone(),
        }
    }

    /// The same object, whatever the version.
    fn same(&self, other: &Self) -> bool {
        self.group == other.group
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }

    fn described(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// Its fields in `status.resources` and `syncResult.resources` (empty ones left out, as Argo
    /// CD's `omitempty` does).
    fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        if !self.group.is_empty() {
            fields.insert("group".into(), json!(self.group));
        }
        fields.insert("version".into(), json!(self.version));
        fields.insert("kind".into(), json!(self.kind));
        if !self.namespace.is_empty() {
            fields.insert("namespace".into(), json!(self.namespace));
        }
        fields.insert("name".into(), json!(self.name));
        fields
    }

    /// The Application itself (an app path may hold its own file).
    fn is_app(&self, app: &Value) -> bool {
        self.group == "argoproj.io"
            && self.kind == "Application"
            && self.namespace == text(app, "/metadata/namespace")
            && self.name == text(app, "/metadata/name")
    }
}

/// A resource as the last comparison saw it.
#[derive(Debug, Clone)]
struct Tracked {
    resource: Resource,
    synced: bool,
    requires_pruning: bool,
}

/// What one reconcile of an Application found and did.
#[derive(Debug)]
struct Outcome {
    /// The commit checked out, when the fetch worked.
    revision: Option<String>,
    /// `Synced`, `OutOfSync`, or `Unknown` when the target state could not be loaded.
    sync_status: &'static str,
    /// What `status.resources` lists.
    resources: Vec<Tracked>,
    conditions: Vec<AppError>,
    /// The `operationState` of a sync run by this reconcile.
    operation: Option<Value>,
    applied: Vec<String>,
    pruned: Vec<String>,
}

async fn reconcile_one(pass: &mut Pass<'_>, app: &Value) -> Value {
    let name = text(app, "/metadata/name").to_owned();
    let outcome = sync(pass, app).await;
    let health = write_status(&pass.api, app, &outcome);
    for problem in &outcome.conditions {
        tracing::warn!(cluster = %pass.api.cluster.name(), application = %name, kind = problem.condition_type(), %problem, "application error");
    }
    json!({
        "name": name,
        "revision": outcome.revision,
        "sync": outcome.sync_status,
        "health": health,
        "operation": outcome.operation.as_ref().map(|operation| operation["phase"].clone()),
        "applied": outcome.applied,
        "pruned": outcome.pruned,
        "resources": outcome.resources.len(),
        "conditions": outcome.conditions.iter().map(AppError::to_condition).collect::<Vec<_>>(),
    })
}

/// Where and how to fetch an Application's source, and how to read it.
struct Source {
    repo: String,
    /// `targetRevision`, `HEAD` when unset.
    revision: String,
    path: String,
    recurse: bool,
    include: String,
    exclude: String,
    header: Option<String>,
    /// `Secret argocd/name (user "…")`, to name refused credentials.
    credentials: Option<String>,
}

/// Argo CD's checks of project and destination; only the cluster itself is a destination.
fn check_spec(api: &Api<'_>, app: &Value) -> Result<(), AppError> {
    if app
        .pointer("/spec/sources")
        .and_then(Value::as_array)
        .is_some_and(|sources| !sources.is_empty())
    {
        return Err(AppError::InvalidSpec(
            "multiple sources (spec.sources) are not simulated: use spec.source".into(),
        ));
    }
    let project = text(app, "/spec/project");
    if project.is_empty() || api.object_of(PROJECTS, NAMESPACE, project).is_none() {
        return Err(AppError::InvalidSpec(format!(
            "Application referencing project {project} which does not exist"
        )));
    }
    let server = text(app, "/spec/destination/server").trim_end_matches('/');
    let cluster_name = text(app, "/spec/destination/name");
    let invalid = |problem: String| {
        AppError::InvalidSpec(format!(
            "application destination spec for {} is invalid: {problem}",
            text(app, "/metadata/name")
        ))
    };
    match (server, cluster_name) {
        ("", "") => Err(AppError::InvalidSpec(
            "Destination server missing from app spec".into(),
        )),
        (server, name) if !server.is_empty() && !name.is_empty() => Err(invalid(format!(
            "application destination can't have both name and server defined: {name} {server}"
        ))),
        (IN_CLUSTER_SERVER, _) | ("", IN_CLUSTER_NAME) => Ok(()),
        ("", name) => Err(invalid(format!(
            "unable to find destination server: there are no clusters with this name: {name}"
        ))),
        (server, _) => Err(invalid(format!(
            "unable to find destination server: there are no clusters with this URL: {server}"
        ))),
    }
}

fn source_of(api: &Api<'_>, app: &Value) -> Result<Source, AppError> {
    let repo = text(app, "/spec/source/repoURL");
    let path = text(app, "/spec/source/path");
    if !text(app, "/spec/source/chart").is_empty() {
        return Err(AppError::unknown(
            "Helm repository sources (spec.source.chart) are not simulated",
        ));
    }
    if repo.is_empty() || path.is_empty() {
        return Err(AppError::InvalidSpec(
            "spec.source.repoURL and either spec.source.path, spec.source.chart, or spec.source.ref are required".into(),
        ));
    }
    for other in ["helm", "kustomize", "plugin"] {
        if app
            .pointer(&format!("/spec/source/{other}"))
            .is_some_and(|value| !value.is_null())
        {
            return Err(AppError::unknown(format!(
                "spec.source.{other} is not simulated (directory sources only)"
            )));
        }
    }
    check_path(path).map_err(AppError::unknown)?;
    let revision = match text(app, "/spec/source/targetRevision") {
        "" => "HEAD",
        revision => revision,
    };
    let (header, credentials) = match repository_credentials(api, repo) {
        Some((secret, username, password)) => (
            Some(pull::basic_auth(&username, &password)),
            Some(format!("Secret {NAMESPACE}/{secret} (user {username:?})")),
        ),
        None => (None, None),
    };
    Ok(Source {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        path: path.to_owned(),
        recurse: app
            .pointer("/spec/source/directory/recurse")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        include: text(app, "/spec/source/directory/include").to_owned(),
        exclude: text(app, "/spec/source/directory/exclude").to_owned(),
        header,
        credentials,
    })
}

/// Argo CD's normalization of repository URLs for comparison.
fn normalize_url(url: &str) -> String {
    let lower = url.trim().to_lowercase();
    lower.strip_suffix(".git").unwrap_or(&lower).to_owned()
}

/// The credentials for `repo`: a repository Secret in `argocd` of the same URL that has a
/// password, else the credential template (`repo-creds`) with the longest URL prefix of it.
/// Answers the Secret's name, the user name and the password.
fn repository_credentials(api: &Api<'_>, repo: &str) -> Option<(String, String, String)> {
    let secrets_key = catalog::builtin_by_kind("", "Secret")?.store_key.clone();
    let mut secrets: Vec<Value> = api
        .objects_of(&secrets_key)
        .into_iter()
        .filter(|secret| text(secret, "/metadata/namespace") == NAMESPACE)
        .collect();
    secrets.sort_by(|a, b| text(a, "/metadata/name").cmp(text(b, "/metadata/name")));
    let of_type = |secret: &Value, wanted: &str| {
        secret
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(SECRET_TYPE_LABEL))
            .and_then(Value::as_str)
            == Some(wanted)
            && pull::secret_value(secret, "type").is_none_or(|kind| kind == "git")
    };
    let credentials = |secret: &Value| {
        let password = pull::secret_value(secret, "password").filter(|p| !p.is_empty())?;
        Some((
            text(secret, "/metadata/name").to_owned(),
            pull::secret_value(secret, "username").unwrap_or_default(),
            password,
        ))
    };
    let wanted = normalize_url(repo);
    let repository = secrets.iter().find(|secret| {
        of_type(secret, "repository")
            && pull::secret_value(secret, "url").is_some_and(|url| normalize_url(&url) == wanted)
    });
    if let Some(found) = repository.and_then(credentials) {
        return Some(found);
    }
    secrets
        .iter()
        .filter(|secret| of_type(secret, "repo-creds"))
        .filter_map(|secret| {
            let prefix = normalize_url(&pull::secret_value(secret, "url")?);
            (!prefix.is_empty() && wanted.starts_with(&prefix))
                .then(|| Some((prefix.len(), credentials(secret)?)))
                .flatten()
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, found)| found)
}

/// Compares, and syncs when automated: what one reconcile of an Application does.
async fn sync(pass: &mut Pass<'_>, app: &Value) -> Outcome {
    let previous: Vec<Tracked> = app
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .map(|resources| {
            resources
                .iter()
                .filter_map(|value| {
                    Some(Tracked {
                        resource: Resource::from_status(value)?,
                        synced: text(value, "/status") == "Synced",
                        requires_pruning: value
                            .get("requiresPruning")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut outcome = Outcome {
        revision: None,
        sync_status: "Unknown",
        resources: previous.clone(),
        conditions: Vec::new(),
        operation: None,
        applied: Vec::new(),
        pruned: Vec::new(),
    };
    if let Err(problem) = check_spec(&pass.api, app) {
        outcome.conditions.push(problem);
        return outcome;
    }
    let source = match source_of(&pass.api, app) {
        Ok(source) => source,
        Err(problem) => {
            outcome.conditions.push(problem);
            return outcome;
        }
    };
    let (checkout, revision) = match pass.checkout(&source).await {
        Ok(done) => done,
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
            outcome
                .conditions
                .push(AppError::unknown(format!("failed to list refs: {problem}")));
            return outcome;
        }
    };
    outcome.revision = Some(revision.clone());
    let explicit_directory = app
        .pointer("/spec/source/directory")
        .is_some_and(Value::is_object);
    let files = match read_source(&checkout, &source, explicit_directory) {
        Ok(files) => files,
        Err(problem) => {
            // Like Argo CD: nothing is compared, applied or pruned while the source is broken.
            outcome.conditions.push(problem);
            return outcome;
        }
    };
    let desired = match prepare(&pass.api, app, files) {
        Ok(desired) => desired,
        Err(problem) => {
            outcome.conditions.push(problem);
            return outcome;
        }
    };
    // Compare: a resource is synced when the live object has everything the file says.
    let mut tracked: Vec<Tracked> = Vec::new();
    for (resource, object) in &desired {
        if tracked.iter().any(|known| known.resource.same(resource)) {
            continue;
        }
        let synced = pass
            .api
            .get(&resource.entry())
            .is_some_and(|live| in_sync(&live, object));
        tracked.push(Tracked {
            resource: resource.clone(),
            synced,
            requires_pruning: false,
        });
    }
    let extras: Vec<Resource> = previous
        .iter()
        .map(|known| &known.resource)
        .filter(|old| !old.is_app(app))
        .filter(|old| !desired.iter().any(|(resource, _)| resource.same(old)))
        .filter(|old| pass.api.get(&old.entry()).is_some())
        .cloned()
        .collect();
    tracked.extend(extras.iter().map(|resource| Tracked {
        resource: resource.clone(),
        synced: false,
        requires_pruning: true,
    }));
    outcome.resources = tracked;
    outcome.sync_status = sync_status(&outcome.resources);
    let Some(plan) = auto_sync(app, &outcome, &revision) else {
        return outcome;
    };
    match plan {
        Err(problem) => outcome.conditions.push(problem),
        Ok(retry_count) => {
            run_sync(
                &pass.api,
                app,
                &source,
                &revision,
                (&desired, &extras),
                retry_count,
                &mut outcome,
            )
            .await;
        }
    }
    outcome.sync_status = sync_status(&outcome.resources);
    outcome
}

fn sync_status(resources: &[Tracked]) -> &'static str {
    if resources.iter().all(|tracked| tracked.synced) {
        "Synced"
    } else {
        "OutOfSync"
    }
}

/// Argo CD's automated sync decision: `None` when it does not sync, `Some(Err)` when it refuses
/// with a SyncError, `Some(Ok(retries))` when it syncs (`retries` of this revision so far).
fn auto_sync(app: &Value, outcome: &Outcome, revision: &str) -> Option<Result<i64, AppError>> {
    let automated = app
        .pointer("/spec/syncPolicy/automated")
        .filter(|automated| automated.is_object())?;
    if automated.get("enabled").and_then(Value::as_bool) == Some(false)
        || outcome.sync_status != "OutOfSync"
    {
        return None;
    }
    let flag = |name: &str| {
        automated
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let resources = &outcome.resources;
    if !flag("prune")
        && resources
            .iter()
            .all(|tracked| tracked.synced || tracked.requires_pruning)
    {
        // Only pruning is left to do, and pruning is not automated.
        return None;
    }
    if flag("prune")
        && !flag("allowEmpty")
        && resources.iter().all(|tracked| tracked.requires_pruning)
    {
        return Some(Err(AppError::Sync(format!(
            "Skipping sync attempt to [{revision}]: auto-sync will wipe out all resources"
        ))));
    }
    let last = app.pointer("/status/operationState");
    let attempted = last.is_some_and(|last| {
        text(last, "/syncResult/revision") == revision
            && last.pointer("/syncResult/source") == app.pointer("/spec/source")
    });
    if !attempted {
        return Some(Ok(0));
    }
    let last = last?;
    if text(last, "/phase") == "Succeeded" {
        // The same revision again: only self-heal syncs it once more.
        return flag("selfHeal").then_some(Ok(0));
    }
    let limit = retry_limit(app);
    let retries = last.get("retryCount").and_then(Value::as_i64).unwrap_or(0);
    if limit < 0 || retries < limit {
        return Some(Ok(retries + 1));
    }
    Some(Err(AppError::Sync(format!(
        "Failed last sync attempt to [{revision}]: {}",
        text(last, "/message")
    ))))
}

/// How often a failed sync is retried: `spec.syncPolicy.retry.limit` (0 when unset, negative
/// for ever), 5 without a retry policy (Argo CD's default for automated syncs).
fn retry_limit(app: &Value) -> i64 {
    match app.pointer("/spec/syncPolicy/retry") {
        Some(retry) if retry.is_object() => retry.get("limit").and_then(Value::as_i64).unwrap_or(0),
        _ => 5,
    }
}

/// One step of a sync.
enum Task<'a> {
    Apply(&'a Resource, &'a Value),
    Prune(&'a Resource),
}

/// Runs a sync: `tasks` are what to apply and what to prune.
async fn run_sync(
    api: &Api<'_>,
    app: &Value,
    source: &Source,
    revision: &str,
    tasks: (&[(Resource, Value)], &[Resource]),
    retry_count: i64,
    outcome: &mut Outcome,
) {
    let (desired, extras) = tasks;
    let started = meta::now_timestamp();
    let prune = app
        .pointer("/spec/syncPolicy/automated/prune")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let options: Vec<String> = app
        .pointer("/spec/syncPolicy/syncOptions")
        .and_then(Value::as_array)
        .map(|options| {
            options
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let destination = text(app, "/spec/destination/namespace");
    if options
        .iter()
        .any(|option| option == "CreateNamespace=true")
        && !destination.is_empty()
    {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": destination}});
        if let Err(problem) = api.apply(&namespace, FIELD_MANAGER).await {
            tracing::warn!(cluster = %api.cluster.name(), %problem, "namespace not created");
        }
    }
    // Waves in order (prunes, then applies in kind order, within each); a failed wave stops
    // the sync, as Argo CD's sync does.
    let mut tasks: Vec<(i64, u8, usize, Task<'_>)> = Vec::new();
    for (index, (resource, object)) in desired.iter().enumerate() {
        tasks.push((
            wave(object),
            kind_rank(&resource.kind),
            index,
            Task::Apply(resource, object),
        ));
    }
    for (index, resource) in extras.iter().enumerate().rev() {
        let live_wave = api.get(&resource.entry()).map_or(0, |live| wave(&live));
        tasks.push((live_wave, 0, usize::MAX - index, Task::Prune(resource)));
    }
    tasks.sort_by_key(|(wave, rank, index, task)| {
        (*wave, matches!(task, Task::Apply(..)), *rank, *index)
    });
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut failed_wave = None;
    let mark = |resources: &mut Vec<Tracked>, resource: &Resource, synced: bool| {
        if let Some(tracked) = resources
            .iter_mut()
            .find(|tracked| tracked.resource.same(resource))
        {
            tracked.synced = synced;
        }
    };
    for (wave, _, _, task) in &tasks {
        if failed_wave.is_some_and(|failed| failed < *wave) {
            break;
        }
        match task {
            Task::Apply(resource, object) => {
                let (status, message) = match api.apply(object, FIELD_MANAGER).await {
                    Ok(_) => {
                        outcome.applied.push(resource.described());
                        mark(&mut outcome.resources, resource, true);
                        (
                            "Synced",
                            format!(
                                "{}/{} serverside-applied",
                                resource.kind.to_lowercase(),
                                resource.name
                            ),
                        )
                    }
                    Err(problem) => {
                        failures.push(problem.clone());
                        failed_wave = Some(*wave);
                        mark(&mut outcome.resources, resource, false);
                        ("SyncFailed", problem)
                    }
                };
                results.push(task_result(resource, status, &message));
            }
            Task::Prune(resource) => {
                let live = api.get(&resource.entry());
                let keep = live
                    .as_ref()
                    .and_then(|live| sync_option(live, "Prune"))
                    .is_some_and(|value| value == "false");
                if !prune || keep {
                    let message = if prune {
                        "ignored (no prune)"
                    } else {
                        "ignored (requires pruning)"
                    };
                    results.push(task_result(resource, "PruneSkipped", message));
                    continue;
                }
                if live.is_none() {
                    outcome
                        .resources
                        .retain(|tracked| !tracked.resource.same(resource));
                    continue;
                }
                tracing::info!(cluster = %api.cluster.name(), application = %text(app, "/metadata/name"), object = %resource.described(), "pruning");
                match api.delete(&resource.entry()).await {
                    Ok(()) => {
                        outcome.pruned.push(resource.described());
                        outcome
                            .resources
                            .retain(|tracked| !tracked.resource.same(resource));
                        results.push(task_result(resource, "Pruned", "pruned"));
                    }
                    Err(problem) => {
                        failures.push(problem.clone());
                        failed_wave = Some(*wave);
                        results.push(task_result(resource, "SyncFailed", &problem));
                    }
                }
            }
        }
    }
    let limit = retry_limit(app);
    let (phase, message) = if failures.is_empty() {
        (
            "Succeeded",
            "successfully synced (all tasks run)".to_owned(),
        )
    } else {
        let failed = format!(
            "one or more objects failed to apply, reason: {}",
            failures.join(",")
        );
        if limit < 0 || retry_count < limit {
            (
                "Running",
                format!("Retrying attempt #{}: {failed}", retry_count + 1),
            )
        } else {
            ("Failed", failed)
        }
    };
    let mut sync = json!({"revision": revision, "prune": prune});
    if !options.is_empty() {
        sync["syncOptions"] = json!(options);
    }
    let mut operation = json!({
        "operation": {
            "sync": sync,
            "initiatedBy": {"automated": true},
            "retry": app.pointer("/spec/syncPolicy/retry").cloned().unwrap_or_else(|| json!({"limit": 5})),
        },
        "phase": phase,
        "message": message,
        "startedAt": started,
        "finishedAt": meta::now_timestamp(),
        "syncResult": {
            "revision": revision,
            "source": app.pointer("/spec/source").cloned().unwrap_or(Value::Null),
            "resources": results,
        },
    });
    if retry_count > 0 {
        operation["retryCount"] = json!(retry_count);
    }
    tracing::info!(cluster = %api.cluster.name(), application = %text(app, "/metadata/name"), repo = %source.repo, %revision, phase, "synced");
    outcome.operation = Some(operation);
}

fn task_result(resource: &Resource, status: &str, message: &str) -> Value {
    let mut fields = resource.fields();
    fields.insert("status".into(), json!(status));
    fields.insert("message".into(), json!(message));
    fields.insert(
        "hookPhase".into(),
        json!(if status == "SyncFailed" {
            "Failed"
        } else {
            "Succeeded"
        }),
    );
    fields.insert("syncPhase".into(), json!("Sync"));
    Value::Object(fields)
}

/// An object's sync wave (annotation `argocd.argoproj.io/sync-wave`, 0 by default).
fn wave(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(SYNC_WAVE_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|wave| wave.trim().parse().ok())
        .unwrap_or(0)
}

/// Namespaces and CRDs before what lives in them.
fn kind_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    }
}

/// Places the objects of the source for `app`: namespace, tracking label.
fn prepare(
    api: &Api<'_>,
    app: &Value,
    files: Vec<(String, Value)>,
) -> Result<Vec<(Resource, Value)>, AppError> {
    let app_name = text(app, "/metadata/name");
    let destination = match text(app, "/spec/destination/namespace") {
        "" => "default",
        namespace => namespace,
    };
    let mut desired = Vec::new();
    for (path, mut object) in files {
        let api_version = text(&object, "/apiVersion").to_owned();
        let kind = text(&object, "/kind").to_owned();
        let name = text(&object, "/metadata/name").to_owned();
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(AppError::precondition(format!(
                "{path}: an object without apiVersion, kind or metadata.name"
            )));
        }
        let (group, version) = api_version
            .rsplit_once('/')
            .unwrap_or(("", api_version.as_str()));
        let (group, version) = (group.to_owned(), version.to_owned());
        // An unknown kind counts as namespaced; syncing it reports the missing type.
        let namespaced = api
            .resolve_kind(&api_version, &kind)
            .is_none_or(|def| def.namespaced);
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(AppError::precondition(format!(
                "{path}: {kind} without metadata"
            )));
        };
        if !namespaced {
            metadata.remove("namespace");
        } else if metadata
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            metadata.insert("namespace".into(), json!(destination));
        }
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Label tracking: the instance label names the Application (Argo CD overwrites a value
        // the file gives it); the file's other labels stay.
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(TRACKING_LABEL.into(), json!(app_name));
        }
        desired.push((
            Resource {
                group,
                version,
                kind,
                namespace,
                name,
            },
            object,
        ));
    }
    Ok(desired)
}

/// Whether `live` has everything `desired` says (`status` aside, as Argo CD's diff ignores it):
/// a cheap stand-in for Argo CD's diff, blind to fields the server rewrites.
fn in_sync(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(have), Value::Object(want)) => want
            .iter()
            .filter(|(key, _)| key.as_str() != "status")
            .all(|(key, value)| {
                value.is_null() || have.get(key).is_some_and(|live| contains(live, value))
            }),
        _ => contains(live, desired),
    }
}

fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(have), Value::Object(want)) => want.iter().all(|(key, value)| {
            value.is_null() || have.get(key).is_some_and(|live| contains(live, value))
        }),
        (Value::Array(have), Value::Array(want)) => {
            have.len() == want.len()
                && have
                    .iter()
                    .zip(want)
                    .all(|(live, value)| contains(live, value))
        }
        (Value::Number(have), Value::Number(want)) => have.as_f64() == want.as_f64(),
        _ => live == desired,
    }
}

// ---- reading a directory source ----

/// The objects of `source.path` by Argo CD's rules for directory sources, with the file each
/// came from.
fn read_source(
    checkout: &Path,
    source: &Source,
    explicit_directory: bool,
) -> Result<Vec<(String, Value)>, AppError> {
    let path = source.path.trim_start_matches("./");
    let root = if path.is_empty() || path == "." {
        checkout.to_path_buf()
    } else {
        checkout.join(path)
    };
    if !root.exists() {
        return Err(AppError::unknown(format!(
            "{}: app path does not exist",
            source.path
        )));
    }
    if !root.is_dir() {
        return Err(AppError::unknown(format!(
            "{}: app path is not a directory",
            source.path
        )));
    }
    if !explicit_directory {
        // Argo CD detects the tool of a source without `directory`: those are not simulated.
        for (marker, tool) in [
            ("kustomization.yaml", "Kustomize"),
            ("kustomization.yml", "Kustomize"),
            ("Kustomization", "Kustomize"),
            ("Chart.yaml", "Helm"),
        ] {
            if root.join(marker).is_file() {
                return Err(AppError::unknown(format!(
                    "{}: a {tool} source ({marker}) is not simulated (directory sources only)",
                    source.path
                )));
            }
        }
    }
    let mut files = Vec::new();
    walk(checkout, &root, &root, source, &mut files, 0)?;
    let mut objects = Vec::new();
    for file in files {
        let shown = pull::shown(checkout, &file);
        for object in read_file(&file)? {
            objects.push((shown.clone(), object));
        }
    }
    Ok(objects)
}

/// Collects the files Argo CD reads under `root`: `*.yaml`, `*.yml`, `*.json` (and `*.jsonnet`,
/// refused later), lexically, subdirectories only with `recurse`, filtered by `include` and
/// `exclude` (globs of the path relative to `root`).
fn walk(
    checkout: &Path,
    root: &Path,
    dir: &Path,
    source: &Source,
    files: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), AppError> {
    if depth > 32 {
        return Err(AppError::unknown(format!(
            "{}: too deeply nested",
            pull::shown(checkout, dir)
        )));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|problem| AppError::unknown(format!("{}: {problem}", pull::shown(checkout, dir))))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(metadata) = std::fs::symlink_metadata(&entry) else {
            continue;
        };
        if metadata.is_dir() {
            // The checkout's own `.git` is no part of any source.
            if source.recurse && name != ".git" {
                walk(checkout, root, &entry, source, files, depth + 1)?;
            }
            continue;
        }
        let manifest = [".yaml", ".yml", ".json", ".jsonnet"]
            .iter()
            .any(|extension| name.ends_with(extension));
        if !manifest {
            continue;
        }
        let relative = entry
            .strip_prefix(root)
            .unwrap_or(&entry)
            .to_string_lossy()
            .into_owned();
        if metadata.file_type().is_symlink() {
            let inside = std::fs::canonicalize(&entry)
                .ok()
                .zip(std::fs::canonicalize(checkout).ok());
            match inside {
                Some((target, top)) if target.starts_with(&top) => {
                    if !target.is_file() {
                        continue;
                    }
                }
                Some(_) => {
                    return Err(AppError::unknown(format!(
                        "invalid manifest file {relative:?}: illegal filepath in symlink at {relative:?}"
                    )));
                }
                None => continue, // a dangling link is skipped
            }
        } else if !metadata.is_file() {
            continue;
        }
        if !source.exclude.is_empty() && glob_match(&source.exclude, &relative) {
            continue;
        }
        if !source.include.is_empty() && !glob_match(&source.include, &relative) {
            continue;
        }
        files.push(entry);
    }
    Ok(())
}

/// The objects of one file, by Argo CD's rules: a `.json` file holds one object; a `.yaml` or
/// `.yml` file YAML documents or JSON values, and one that does not parse is ignored unless it
/// looks like a manifest; `List`s are unpacked.
fn read_file(file: &Path) -> Result<Vec<Value>, AppError> {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::read(file)
        .map_err(|problem| AppError::precondition(format!("Failed to read {name:?}: {problem}")))?;
    let content = String::from_utf8_lossy(&bytes);
    let content = content.trim_start_matches('\u{feff}');
    if content.contains(SKIP_MARKER) {
        return Ok(Vec::new());
    }
    let unmarshal = |problem: String| {
        AppError::precondition(format!("Failed to unmarshal {name:?}: {problem}"))
    };
    let documents = if name.ends_with(".jsonnet") {
        return Err(AppError::precondition(format!(
            "{name:?}: Jsonnet is not simulated"
        )));
    } else if name.ends_with(".json") {
        let mut values = serde_json::Deserializer::from_str(content).into_iter::<Value>();
        let first = values
            .next()
            .unwrap_or_else(|| Ok(Value::Null))
            .map_err(|problem| unmarshal(problem.to_string()))?;
        if values.next().is_some() {
            return Err(AppError::precondition(format!(
                "Found multiple objects in {name:?}. Only single objects are allowed in JSON files."
            )));
        }
        if !first.is_object() {
            return Err(unmarshal("not a Kubernetes object".into()));
        }
        vec![first]
    } else {
        let (documents, problem) = split_yaml_or_json(content);
        if let Some(problem) = problem {
            let looks_like_manifest = ["apiVersion:", "kind:", "metadata:"]
                .iter()
                .all(|key| content.contains(key));
            if !documents.is_empty() || looks_like_manifest {
                return Err(unmarshal(problem));
            }
            // Some other YAML file (values, configuration): not a manifest, so not read.
            return Ok(Vec::new());
        }
        documents
    };
    let mut objects = Vec::new();
    for document in documents {
        let is_list = text(&document, "/kind").ends_with("List");
        match document.get("items") {
            Some(Value::Array(items)) if is_list => objects.extend(items.iter().cloned()),
            _ => objects.push(document),
        }
    }
    Ok(objects)
}

/// YAML documents, or JSON values when the content starts with `{`, as Kubernetes' YAML-or-JSON
/// decoder reads them: the objects read before a problem, and the problem.
fn split_yaml_or_json(content: &str) -> (Vec<Value>, Option<String>) {
    let mut objects = Vec::new();
    let documents: Vec<Result<Value, String>> = if content.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(content)
            .into_iter::<Value>()
            .map(|value| value.map_err(|problem| problem.to_string()))
            .collect()
    } else {
        match serde_saphyr::from_multiple::<Value>(content) {
            Ok(documents) => documents.into_iter().map(Ok).collect(),
            Err(problem) => vec![Err(problem.to_string())],
        }
    };
    for document in documents {
        match document {
            Ok(Value::Null) => {}
            Ok(Value::Object(fields)) if fields.get("kind").and_then(Value::as_str).is_some() => {
                objects.push(Value::Object(fields));
            }
            Ok(_) => return (objects, Some("Object 'Kind' is missing".into())),
            Err(problem) => return (objects, Some(problem)),
        }
    }
    (objects, None)
}

/// A glob as Argo CD's (gobwas) without separators: `*` any text (`/` too), `?` one character,
/// `[abc]`, `[a-z]`, `[!a]`, `{one,other}`, `\` escapes.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    expand_braces(pattern)
        .iter()
        .any(|alternative| glob_chars(&alternative.chars().collect::<Vec<_>>(), &text))
}

/// Every pattern `{a,b}` stands for (at most 256 of them).
fn expand_braces(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut open = None;
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        match chars[index] {
            '\\' => index += 1,
            '{' => {
                if depth == 0 {
                    open = Some(index);
                    commas.clear();
                }
                depth += 1;
            }
            ',' if depth == 1 => commas.push(index),
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some(start) = open
                {
                    let prefix: String = chars[..start].iter().collect();
                    let suffix: String = chars[index + 1..].iter().collect();
                    let mut bounds = vec![start];
                    bounds.extend(&commas);
                    bounds.push(index);
                    let mut expanded = Vec::new();
                    for pair in bounds.windows(2) {
                        let alternative: String = chars[pair[0] + 1..pair[1]].iter().collect();
                        for pattern in expand_braces(&format!("{prefix}{alternative}{suffix}")) {
                            if expanded.len() < 256 {
                                expanded.push(pattern);
                            }
                        }
                    }
                    return expanded;
                }
            }
            _ => {}
        }
        index += 1;
    }
    vec![pattern.to_owned()]
}

fn glob_chars(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    while p < pattern.len() && pattern[p] == '*' {
                        p += 1;
                    }
                    star = Some((p, t));
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

/// A `[…]` class at `start`: whether `c` is in it and where the pattern goes on; `None` when
/// it is not closed (then `[` is a plain character).
fn class(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut index = start + 1;
    let negated = pattern.get(index) == Some(&'!');
    if negated {
        index += 1;
    }
    let mut matched = false;
    let mut first = true;
    while index < pattern.len() {
        let current = pattern[index];
        if current == ']' && !first {
            return Some((matched != negated, index + 1));
        }
        first = false;
        if pattern.get(index + 1) == Some(&'-')
            && pattern.get(index + 2).is_some_and(|end| *end != ']')
        {
            let end = pattern[index + 2];
            matched |= current <= c && c <= end;
            index += 3;
        } else {
            matched |= current == c;
            index += 1;
        }
    }
    None
}

// ---- health ----

/// Argo CD's health statuses, best first.
const HEALTH_ORDER: [&str; 6] = [
    "Healthy",
    "Suspended",
    "Progressing",
    "Missing",
    "Degraded",
    "Unknown",
];

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|condition| text(condition, "/type") == kind)
}

/// Argo CD's built-in health check of a live object (status and message), `None` for kinds it
/// has none for.
fn health_of(group: &str, kind: &str, live: &Value) -> Option<(&'static str, String)> {
    if terminating(live) {
        return Some(("Progressing", "Pending deletion".into()));
    }
    let name = text(live, "/metadata/name");
    let generation = int(live, "/metadata/generation");
    let observed = int(live, "/status/observedGeneration");
    let wanted = live.pointer("/spec/replicas").and_then(Value::as_i64);
    let healthy = Some(("Healthy", String::new()));
    match (group, kind) {
        ("apps", "Deployment") => {
            if live.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                return Some(("Suspended", "Deployment is paused".into()));
            }
            if generation > observed {
                return Some((
                    "Progressing",
                    "Waiting for rollout to finish: observed deployment generation less than desired generation".into(),
                ));
            }
            let updated = int(live, "/status/updatedReplicas");
            let replicas = int(live, "/status/replicas");
            let available = int(live, "/status/availableReplicas");
            if condition(live, "Progressing")
                .is_some_and(|condition| text(condition, "/reason") == "ProgressDeadlineExceeded")
            {
                Some((
                    "Degraded",
                    format!("Deployment {name:?} exceeded its progress deadline"),
                ))
            } else if let Some(wanted) = wanted.filter(|wanted| updated < *wanted) {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated..."
                    ),
                ))
            } else if replicas > updated {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for rollout to finish: {} old replicas are pending termination...",
                        replicas - updated
                    ),
                ))
            } else if available < updated {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
                    ),
                ))
            } else {
                healthy
            }
        }
        ("apps", "StatefulSet") => {
            if observed == 0 || generation > observed {
                return Some((
                    "Progressing",
                    "Waiting for statefulset spec update to be observed...".into(),
                ));
            }
            let ready = int(live, "/status/readyReplicas");
            if let Some(wanted) = wanted.filter(|wanted| ready < *wanted) {
                return Some((
                    "Progressing",
                    format!("Waiting for {} pods to be ready...", wanted - ready),
                ));
            }
            if text(live, "/spec/updateStrategy/type") != "OnDelete"
                && text(live, "/status/updateRevision") != text(live, "/status/currentRevision")
            {
                return Some((
                    "Progressing",
                    "waiting for statefulset rolling update to complete".into(),
                ));
            }
            healthy
        }
        ("apps", "DaemonSet") => {
            let desired = int(live, "/status/desiredNumberScheduled");
            if generation > observed {
                Some(("Progressing", "Waiting for rollout to finish: observed daemon set generation less than desired generation".into()))
            } else if text(live, "/spec/updateStrategy/type") == "OnDelete" {
                healthy
            } else if int(live, "/status/updatedNumberScheduled") < desired {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {} out of {desired} new pods have been updated...",
                        int(live, "/status/updatedNumberScheduled")
                    ),
                ))
            } else if int(live, "/status/numberAvailable") < desired {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {} of {desired} updated pods are available...",
                        int(live, "/status/numberAvailable")
                    ),
                ))
            } else {
                healthy
            }
        }
        ("apps", "ReplicaSet") => {
            if generation > observed {
                return Some(("Progressing", "Waiting for rollout to finish: observed replica set generation less than desired generation".into()));
            }
            let available = int(live, "/status/availableReplicas");
            if let Some(failure) = condition(live, "ReplicaFailure")
                .filter(|condition| text(condition, "/status") == "True")
            {
                Some(("Degraded", text(failure, "/message").to_owned()))
            } else if let Some(wanted) = wanted.filter(|wanted| available < *wanted) {
                Some((
                    "Progressing",
                    format!(
                        "Waiting for rollout to finish: {available} out of {wanted} new replicas are available..."
                    ),
                ))
            } else {
                healthy
            }
        }
        ("batch", "Job") => {
            if let Some(failed) = condition(live, "Failed") {
                Some(("Degraded", text(failed, "/message").to_owned()))
            } else if let Some(suspended) = condition(live, "Suspended") {
                let status = if text(suspended, "/status") == "True" {
                    "Suspended"
                } else {
                    "Healthy"
                };
                Some((status, text(suspended, "/message").to_owned()))
            } else if let Some(complete) = condition(live, "Complete") {
                Some(("Healthy", text(complete, "/message").to_owned()))
            } else {
                Some(("Progressing", String::new()))
            }
        }
        ("", "Pod") => Some(pod_health(live)),
        ("", "PersistentVolumeClaim") => Some(match text(live, "/status/phase") {
            "Bound" => ("Healthy", String::new()),
            "Pending" => ("Progressing", String::new()),
            "Lost" => ("Degraded", String::new()),
            _ => ("Unknown", String::new()),
        }),
        ("", "Service") if text(live, "/spec/type") != "LoadBalancer" => healthy,
        ("", "Service") | ("networking.k8s.io" | "extensions", "Ingress") => {
            let ingress = live
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|ingress| !ingress.is_empty());
            Some(if ingress {
                ("Healthy", String::new())
            } else {
                ("Progressing", String::new())
            })
        }
        ("apiregistration.k8s.io", "APIService") => match condition(live, "Available") {
            Some(available) if text(available, "/status") == "True" => healthy,
            Some(available) => Some(("Progressing", text(available, "/message").to_owned())),
            None => Some(("Progressing", String::new())),
        },
        _ => None,
    }
}

fn pod_health(live: &Value) -> (&'static str, String) {
    let message = text(live, "/status/message").to_owned();
    let policy = match text(live, "/spec/restartPolicy") {
        "" => "Always",
        policy => policy,
    };
    if policy == "Always" {
        let waiting: Vec<String> = live
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|status| {
                let reason = text(status, "/state/waiting/reason");
                reason.starts_with("Err")
                    || reason.ends_with("Error")
                    || reason.ends_with("BackOff")
            })
            .map(|status| text(status, "/state/waiting/message").to_owned())
            .collect();
        if !waiting.is_empty() {
            return ("Degraded", waiting.join(", "));
        }
    }
    match text(live, "/status/phase") {
        "Pending" => ("Progressing", message),
        "Succeeded" => ("Healthy", message),
        "Failed" => ("Degraded", message),
        "Running" if policy == "Always" => {
            let ready =
                condition(live, "Ready").is_some_and(|ready| text(ready, "/status") == "True");
            (if ready { "Healthy" } else { "Progressing" }, message)
        }
        "Running" => ("Progressing", message),
        _ => ("Unknown", message),
    }
}

// ---- status ----

/// The status timestamps, which alone do not warrant a write.
fn without_times(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| {
                    !matches!(
                        key.as_str(),
                        "reconciledAt"
                            | "startedAt"
                            | "finishedAt"
                            | "lastTransitionTime"
                            | "deployedAt"
                            | "deployStartedAt"
                    )
                })
                .map(|(key, value)| (key.clone(), without_times(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// Writes Argo CD's status (`sync`, `health`, `resources`, `conditions`, `operationState`,
/// `history`, …) unless only timestamps would change; answers the Application's health.
fn write_status(api: &Api<'_>, app: &Value, outcome: &Outcome) -> &'static str {
    let old = app
        .get("status")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let now = meta::now_timestamp();
    let mut resources = Vec::new();
    let mut worst = 0;
    for tracked in &outcome.resources {
        let mut fields = tracked.resource.fields();
        fields.insert(
            "status".into(),
            json!(if tracked.synced {
                "Synced"
            } else {
                "OutOfSync"
            }),
        );
        let health = match api.get(&tracked.resource.entry()) {
            None => Some(("Missing", String::new())),
            Some(live) => health_of(&tracked.resource.group, &tracked.resource.kind, &live),
        };
        if let Some((status, message)) = health {
            let mut health = json!({"status": status});
            if !message.is_empty() {
                health["message"] = json!(message);
            }
            fields.insert("health".into(), health);
            if !tracked.requires_pruning
                && let Some(rank) = HEALTH_ORDER.iter().position(|known| *known == status)
            {
                worst = worst.max(rank);
            }
        }
        if tracked.requires_pruning {
            fields.insert("requiresPruning".into(), json!(true));
        }
        resources.push(Value::Object(fields));
    }
    let health = HEALTH_ORDER[worst];
    let mut status = old.clone();
    let mut sync = json!({
        "status": outcome.sync_status,
        "comparedTo": {
            "source": app.pointer("/spec/source").cloned().unwrap_or(Value::Null),
            "destination": app.pointer("/spec/destination").cloned().unwrap_or(Value::Null),
        },
    });
    let revision = outcome.revision.clone().or_else(|| {
        old.pointer("/sync/revision")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if let Some(revision) = &revision {
        sync["revision"] = json!(revision);
    }
    status["sync"] = sync;
    let since = match old.pointer("/health/status") {
        Some(previous) if previous == health => old
            .pointer("/health/lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(now)),
        _ => json!(now),
    };
    status["health"] = json!({"status": health, "lastTransitionTime": since});
    status["resources"] = json!(resources);
    let conditions: Vec<Value> = outcome
        .conditions
        .iter()
        .map(|problem| {
            let mut condition = problem.to_condition();
            let kept = old
                .pointer("/conditions")
                .and_then(Value::as_array)
                .and_then(|old| {
                    old.iter().find(|known| {
                        known.get("type") == condition.get("type")
                            && known.get("message") == condition.get("message")
                    })
                })
                .and_then(|known| known.get("lastTransitionTime").cloned());
            condition["lastTransitionTime"] = kept.unwrap_or_else(|| json!(now));
            condition
        })
        .collect();
    if let Some(fields) = status.as_object_mut() {
        if conditions.is_empty() {
            fields.remove("conditions");
        } else {
            fields.insert("conditions".into(), json!(conditions));
        }
    }
    if let Some(operation) = &outcome.operation {
        if text(operation, "/phase") == "Succeeded" {
            let mut history: Vec<Value> = old
                .get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let id = history
                .last()
                .and_then(|last| last.get("id"))
                .and_then(Value::as_i64)
                .unwrap_or(-1)
                + 1;
            history.push(json!({
                "id": id,
                "revision": text(operation, "/syncResult/revision"),
                "source": operation.pointer("/syncResult/source").cloned().unwrap_or(Value::Null),
                "deployStartedAt": operation["startedAt"],
                "deployedAt": operation["finishedAt"],
                "initiatedBy": {"automated": true},
            }));
            let excess = history.len().saturating_sub(HISTORY_LIMIT);
            history.drain(..excess);
            status["history"] = json!(history);
        }
        status["operationState"] = operation.clone();
    }
    status["reconciledAt"] = json!(now);
    status["sourceType"] = json!("Directory");
    status["controllerNamespace"] = json!(NAMESPACE);
    if without_times(&old) != without_times(&status) {
        api.write_status(APPLICATIONS, app, status);
    }
    health
}

// ---- deletion ----

/// What handling a deleted Application did.
struct Deletion {
    report: Value,
    /// Its finalizers are done: nothing more to do for it.
    done: bool,
    /// Something was deleted or written.
    acted: bool,
}

/// Deletes what a deleted Application with Argo CD's resources finalizer manages (waiting for
/// objects that are being deleted), then lifts the finalizer, as Argo CD does.
async fn finalize(api: &Api<'_>, app: &Value) -> Deletion {
    let name = text(app, "/metadata/name").to_owned();
    let finalizers: Vec<String> = app
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|finalizers| {
            finalizers
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut report = json!({"name": name, "deleting": true, "deleted": [], "waitingFor": []});
    if !finalizers
        .iter()
        .any(|finalizer| POLICY_FINALIZERS.contains(&finalizer.as_str()))
    {
        // Not cascading: its objects stay; other finalizers are someone else's.
        report["done"] = json!(true);
        return Deletion {
            report,
            done: true,
            acted: false,
        };
    }
    let resources: Vec<Resource> = app
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .map(|resources| resources.iter().filter_map(Resource::from_status).collect())
        .unwrap_or_default();
    let mut doomed = Vec::new();
    let mut waiting = Vec::new();
    for resource in resources {
        if resource.is_app(app)
            || (resource.group == "apiextensions.k8s.io"
                && resource.kind == "CustomResourceDefinition")
        {
            continue; // Argo CD never deletes CRDs, or the Application itself, this way
        }
        let Some(live) = api.get(&resource.entry()) else {
            continue;
        };
        let kept = sync_option(&live, "Delete").is_some_and(|value| value == "false")
            || live
                .pointer("/metadata/annotations")
                .and_then(|annotations| annotations.get(HELM_POLICY_ANNOTATION))
                .and_then(Value::as_str)
                == Some("keep");
        if kept {
            continue;
        }
        if terminating(&live) {
            waiting.push(resource.described());
        }
        doomed.push(resource);
    }
    if !waiting.is_empty() {
        report["waitingFor"] = json!(waiting);
        report["done"] = json!(false);
        return Deletion {
            report,
            done: false,
            acted: false,
        };
    }
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for resource in doomed.iter().rev() {
        match api.delete(&resource.entry()).await {
            Ok(()) => deleted.push(resource.described()),
            Err(problem) => errors.push(problem),
        }
    }
    tracing::info!(cluster = %api.cluster.name(), application = %name, deleted = deleted.len(), "application deleted: deleting its resources");
    report["deleted"] = json!(deleted);
    let acted = !deleted.is_empty();
    // Objects with finalizers of their own live on until those are done: wait for them.
    let remaining: Vec<String> = doomed
        .iter()
        .filter(|resource| api.get(&resource.entry()).is_some())
        .map(Resource::described)
        .collect();
    if !remaining.is_empty() || !errors.is_empty() {
        report["waitingFor"] = json!(remaining);
        report["errors"] = json!(errors);
        report["done"] = json!(false);
        return Deletion {
            report,
            done: false,
            acted,
        };
    }
    let Some(current) = api.object_of(APPLICATIONS, NAMESPACE, &name) else {
        report["done"] = json!(true);
        return Deletion {
            report,
            done: true,
            acted,
        };
    };
    let rest: Vec<Value> = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|finalizer| {
            finalizer
                .as_str()
                .is_none_or(|finalizer| !POLICY_FINALIZERS.contains(&finalizer))
        })
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": rest,
        "resourceVersion": text(&current, "/metadata/resourceVersion")}});
    match api.merge_patch(&current, &patch).await {
        Ok(()) => {
            report["done"] = json!(true);
            Deletion {
                report,
                done: true,
                acted: true,
            }
        }
        Err(problem) => {
            report["errors"] = json!([problem]);
            report["done"] = json!(false);
            Deletion {
                report,
                done: false,
                acted,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_bodies_name_the_field_at_fault() {
        let parse = |body: Value| ArgoCdSetup::parse(body.to_string().as_bytes());
        let ok = parse(json!({"url": "http://x/git/r.git", "path": "clusters/p+c"})).unwrap();
        assert_eq!((ok.branch.as_str(), ok.auth.as_str()), ("main", "none"));
        let ok = parse(json!({"url": "u", "path": "p", "username": "n", "token": "t"})).unwrap();
        assert_eq!(ok.auth, "token");
        assert!(!serde_json::to_string(&ok).unwrap().contains("\"t\""));
        for (body, field) in [
            (json!({"path": "p"}), "url"),
            (json!({"url": "u"}), "path"),
            (json!({"url": 5, "path": "p"}), "url"),
            (json!({"url": "u", "path": "../x"}), "path"),
            (json!({"url": "u", "path": "/abs"}), "path"),
            (json!({"url": "u", "path": "p", "token": "t"}), "username"),
            (json!({"url": "u", "path": "p", "username": "n"}), "token"),
            (json!({"url": "u", "path": "p", "dir": "d"}), "dir"),
            (json!({"url": "u", "path": "p", "branch": ""}), "branch"),
        ] {
            let problem = parse(body.clone()).unwrap_err();
            assert!(problem.contains(&format!("`{field}`")), "{body}: {problem}");
        }
        assert!(ArgoCdSetup::parse(b"[1]").is_err());
    }

    #[test]
    fn globs_as_argo_cd_matches_them() {
        assert!(glob_match("*.yaml", "a/b.yaml"));
        assert!(glob_match("{*.yml,*.yaml}", "x.yml"));
        assert!(!glob_match("{*.yml,*.yaml}", "x.json"));
        assert!(glob_match("{config.json,env-usw2/*}", "env-usw2/a.yaml"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx") && !glob_match("[!a-c]x", "bx"));
        assert!(glob_match("\\*", "*") && !glob_match("\\*", "a"));
        assert!(glob_match("[", "["));
    }

    fn source(path: &str, recurse: bool) -> Source {
        Source {
            repo: String::new(),
            revision: "HEAD".into(),
            path: path.into(),
            recurse,
            include: String::new(),
            exclude: String::new(),
            header: None,
            credentials: None,
        }
    }

    #[test]
    fn reads_directories_by_argo_cd_rules() {
        let root = std::env::temp_dir().join(format!("emco-sim-argo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d/nested")).unwrap();
        std::fs::write(
            root.join("d/a.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("d/b.yaml"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#,
        )
        .unwrap();
        std::fs::write(root.join("d/values.yaml"), "replicas: 3\nimage: x\n").unwrap();
        std::fs::write(root.join("d/deployed"), [0u8, 159, 146, 150]).unwrap();
        std::fs::write(
            root.join("d/skipped.yaml"),
            "# +argocd:skip-file-rendering\nkind: [\n",
        )
        .unwrap();
        std::fs::write(
            root.join("d/nested/c.yml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: d\n",
        )
        .unwrap();
        let names = |objects: Vec<(String, Value)>| -> Vec<String> {
            objects
                .iter()
                .map(|(path, object)| format!("{path}:{}", text(object, "/metadata/name")))
                .collect()
        };
        let flat = read_source(&root, &source("d", false), true).unwrap();
        assert_eq!(names(flat), vec!["d/a.json:a", "d/b.yaml:b"]);
        let deep = read_source(&root, &source("./d", true), true).unwrap();
        assert_eq!(
            names(deep),
            vec![
                "d/a.json:a",
                "d/b.yaml:b",
                "d/nested/c.yml:c",
                "d/nested/c.yml:d"
            ]
        );
        let mut filtered = source("d", true);
        filtered.include = "{*.yml,*.json}".into();
        filtered.exclude = "a.json".into();
        assert_eq!(
            names(read_source(&root, &filtered, true).unwrap()),
            vec!["d/nested/c.yml:c", "d/nested/c.yml:d"]
        );
        let missing = read_source(&root, &source("gone", true), true).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("gone: app path does not exist"),
            "{missing}"
        );
        assert_eq!(missing.condition_type(), "ComparisonError");

        std::fs::write(root.join("d/two.json"), r#"{"kind":"A"} {"kind":"B"}"#).unwrap();
        let two = read_source(&root, &source("d", false), true).unwrap_err();
        assert!(
            two.to_string()
                .contains("Found multiple objects in \"two.json\""),
            "{two}"
        );
        std::fs::remove_file(root.join("d/two.json")).unwrap();
        std::fs::write(
            root.join("d/broken.yaml"),
            "apiVersion: v1\nkind: [\nmetadata:\n",
        )
        .unwrap();
        let broken = read_source(&root, &source("d", false), true).unwrap_err();
        assert!(
            broken
                .to_string()
                .contains("Failed to unmarshal \"broken.yaml\""),
            "{broken}"
        );
        std::fs::remove_file(root.join("d/broken.yaml")).unwrap();
        std::fs::write(root.join("d/kustomization.yaml"), "resources: []\n").unwrap();
        assert!(read_source(&root, &source("d", false), false).is_err());
        assert!(read_source(&root, &source("d", false), true).is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn comparison_and_health() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}, "status": {"s": 1}});
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}, "creationTimestamp": null},
            "spec": {"ports": [{"port": 80.0}]}, "status": {"other": 2}});
        assert!(in_sync(&live, &desired));
        let drifted = json!({"metadata": {"labels": {"x": "2"}}});
        assert!(!in_sync(&live, &drifted));

        let rolling = json!({"metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2}, "status": {"observedGeneration": 1}});
        assert_eq!(
            health_of("apps", "Deployment", &rolling).unwrap().0,
            "Progressing"
        );
        let done = json!({"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(health_of("apps", "Deployment", &done).unwrap().0, "Healthy");
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "boom"}]}});
        assert_eq!(
            health_of("batch", "Job", &failed).unwrap(),
            ("Degraded", "boom".to_owned())
        );
        assert!(health_of("", "ConfigMap", &json!({})).is_none());
        assert_eq!(normalize_url(" HTTP://x/Repo.git"), "http://x/repo");
    }
}
