//! A GitOps cluster as the synchronizer sees it: applies and deletes become files of the
//! cluster's folder in its repository (committed when the worker flushes), reads come from what
//! the cluster's agent (`emco agent`) last reported to the hub.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use emco_core::appcontext::{ClusterId, ContextHeader, decode_header, meta_key};
use emco_core::gitops::{self, Deployment, GitOpsType, GitSettings, SyncTimes};
use emco_store::Store;
use serde_json::Value;

use super::azure::{ArcClient, ArcError, FluxConfiguration};
use super::repo::{Change, Derived, GitRepo};

/// Azure's refusals as the synchronizer's errors: retryable ones retried (after Azure's
/// `Retry-After`), others final.
fn arc_error(cluster: &str, error: ArcError) -> ClusterError {
    if error.retryable() {
        ClusterError::Api {
            cluster: cluster.to_owned(),
            code: 503,
            reason: "AzureUnavailable".into(),
            message: error.to_string(),
            retry_after: error.retry_after(),
        }
    } else {
        ClusterError::Api {
            cluster: cluster.to_owned(),
            code: 400,
            reason: "AzureRefused".into(),
            message: error.to_string(),
            retry_after: None,
        }
    }
}
use crate::cluster::{ApplyRequest, ClusterApi, ClusterError, Deleted};
use crate::engine::DEPLOYMENT_ID_LABEL;

/// How long an agent may stay silent before its last report is no longer trusted: four of its
/// 30-second heartbeats (`emco agent` reports at least that often).
pub const AGENT_SILENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Changes not committed yet, and what they are about (for the commit message). Kept by the
/// connector per cluster, not per client: the synchronizer drops a client after an error and
/// connects again, and what was staged must survive that until it is committed.
#[derive(Default, Clone)]
pub struct Staged {
    files: BTreeMap<String, Option<Vec<u8>>>,
    contexts: BTreeMap<String, ()>,
    apps: BTreeMap<String, ()>,
    written: usize,
    removed: usize,
    /// The cluster's files on the branch, listed by the first delete since the last commit:
    /// the deletes of one terminate then cost one walk of the clone, not one each (every walk
    /// waits for the repository's writer). Only this hub writes the cluster's folders, through
    /// this state, so the listing holds until its next commit; what is staged meanwhile is
    /// looked up in `files`.
    committed: Option<Arc<Vec<String>>>,
    /// Commits made through this state. The workers of several deployments on this cluster
    /// share it: a listing walked while another one committed may miss that commit's files,
    /// so it serves its own delete but is not kept.
    commits: u64,
}

pub struct GitCluster {
    id: ClusterId,
    name: String,
    kind: GitOpsType,
    repo: GitRepo,
    git: GitSettings,
    times: SyncTimes,
    store: Arc<dyn Store>,
    staged: Arc<Mutex<Staged>>,
    /// Azure Arc clusters: where their Flux configurations are made.
    arc: Option<Arc<ArcClient>>,
    /// Each context's stored header (its cloud and namespace), read once: contexts never
    /// change. `None` for a context no longer stored.
    headers: Mutex<BTreeMap<String, Option<Arc<ContextHeader>>>>,
}

impl GitCluster {
    pub fn new(
        id: ClusterId,
        kind: GitOpsType,
        repo: GitRepo,
        git: GitSettings,
        times: SyncTimes,
        store: Arc<dyn Store>,
        staged: Arc<Mutex<Staged>>,
    ) -> Self {
        Self {
            name: id.to_string(),
            id,
            kind,
            repo,
            git,
            times,
            store,
            staged,
            arc: None,
            headers: Mutex::default(),
        }
    }

    /// A context's header: where its files go depends on its cloud and namespace.
    async fn header_of(&self, context: &str) -> Result<Option<Arc<ContextHeader>>, ClusterError> {
        let known = self
            .headers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(context)
            .cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let entry = self.store.get(&meta_key(context)).await.map_err(|error| {
            ClusterError::Unavailable {
                cluster: self.name.clone(),
                message: format!("reading context {context}: {error}"),
            }
        })?;
        let header = match entry {
            Some(entry) => Some(Arc::new(decode_header(&entry.value).map_err(|error| {
                ClusterError::InvalidObject(format!(
                    "context {context} has an unreadable header: {error}"
                ))
            })?)),
            None => None,
        };
        self.headers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(context.to_owned(), header.clone());
        Ok(header)
    }

    fn deployment<'a>(
        &'a self,
        context: &'a str,
        header: Option<&'a ContextHeader>,
    ) -> Deployment<'a> {
        Deployment {
            kind: self.kind,
            provider: &self.id.provider,
            cluster: &self.id.cluster,
            context,
            cloud: header.and_then(|header| header.cloud.as_ref()),
            namespace: header.and_then(|header| header.namespace.as_deref()),
        }
    }

    /// An Azure Arc cluster: each deployment also gets a Flux configuration through Azure's
    /// REST API (made with the deployment's first files, removed with its last).
    pub fn with_arc(mut self, arc: Arc<ArcClient>) -> Self {
        self.arc = Some(arc);
        self
    }

    /// Makes or removes each touched deployment's Azure Flux configuration to match the
    /// repository.
    async fn sync_arc(&self, contexts: &[&str]) -> Result<(), ClusterError> {
        let Some(arc) = &self.arc else {
            return Ok(());
        };
        for context in contexts {
            let mut config = FluxConfiguration::for_context(
                context,
                &self.id.provider,
                &self.id.cluster,
                "0",
                "",
                &self.git.url,
                &self.git.branch,
            );
            config.https_user = Some(self.git.user_name.clone());
            config.https_key = Some(self.git.token.clone());
            let dir = format!(
                "{}/app",
                gitops::context_dir(&self.id.provider, &self.id.cluster, context)
            );
            let deployed = self
                .repo
                .has_files(&dir)
                .await
                .map_err(|error| self.git_error(error))?;
            let result = if deployed {
                arc.apply(&config).await
            } else {
                arc.delete(&config.name).await
            };
            result.map_err(|error| arc_error(&self.name, error))?;
        }
        Ok(())
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, Staged> {
        self.staged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn git_error(&self, error: impl std::fmt::Display) -> ClusterError {
        ClusterError::Git {
            cluster: self.name.clone(),
            message: error.to_string(),
        }
    }

    /// The objects the agent reported last (none before its first report).
    async fn reported(&self) -> Result<Vec<Value>, ClusterError> {
        let entry = self
            .store
            .get(&gitops::report_key(&self.id.provider, &self.id.cluster))
            .await
            .map_err(|error| ClusterError::Unavailable {
                cluster: self.name.clone(),
                message: format!("reading the agent's report: {error}"),
            })?;
        let Some(entry) = entry else {
            return Ok(Vec::new());
        };
        let report: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
        let reported_ms = report
            .get("reportedMs")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let silent_ms = now_ms.saturating_sub(reported_ms);
        if silent_ms > AGENT_SILENCE.as_millis() as u64 {
            return Err(ClusterError::AgentSilent {
                cluster: self.name.clone(),
                message: format!(
                    "the cluster's agent (emco agent) last reported {} s ago; what the cluster \
                     has is unknown until it reports again",
                    silent_ms / 1000
                ),
            });
        }
        Ok(report
            .get("objects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// Whether a reported object is the one asked for (any version of the kind's group).
fn is_object(
    object: &Value,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> bool {
    text(object, "/kind") == Some(kind)
        && text(object, "/metadata/name") == Some(name)
        && text(object, "/metadata/namespace") == namespace
        && text(object, "/apiVersion").map(group_of) == Some(group_of(api_version))
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => {
                object
                    .pointer("/metadata/labels")
                    .and_then(|labels| labels.get(key))
                    .and_then(Value::as_str)
                    == Some(value)
            }
            None => object
                .pointer("/metadata/labels")
                .and_then(|labels| labels.get(term))
                .is_some(),
        })
}

#[async_trait]
impl ClusterApi for GitCluster {
    fn name(&self) -> &str {
        &self.name
    }

    fn pulls(&self) -> bool {
        true
    }

    async fn apply_request(&self, request: &ApplyRequest) -> Result<Option<Value>, ClusterError> {
        let object: Value = serde_json::from_slice(request.body())
            .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
        let label = object
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(DEPLOYMENT_ID_LABEL))
            .and_then(Value::as_str)
            .and_then(gitops::split_deployment_id)
            .ok_or_else(|| {
                ClusterError::InvalidObject(format!(
                    "{} {}: an object without a valid {DEPLOYMENT_ID_LABEL} label has no place \
                     in a GitOps cluster's repository",
                    request.kind, request.name
                ))
            })?;
        let (context, app) = label;
        let header = self.header_of(context).await?;
        let path = self.deployment(context, header.as_deref()).object_path(
            app,
            &request.name,
            &request.kind,
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
        );
        // Refused here, this object fails alone; in the repository's writer it would fail
        // every cluster sharing the repository.
        gitops::plain_repo_path(&path).map_err(|problem| {
            ClusterError::InvalidObject(format!("{} {}: {problem}", request.kind, request.name))
        })?;
        let mut content = serde_json::to_vec_pretty(&object)
            .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
        content.push(b'\n');
        let mut staged = self.staged();
        staged.files.insert(path, Some(content));
        staged.contexts.insert(context.to_owned(), ());
        staged.apps.insert(app.to_owned(), ());
        staged.written += 1;
        Ok(request.wants_answer().then_some(object))
    }

    async fn delete(
        &self,
        _api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClusterError> {
        let (provider, cluster) = (&self.id.provider, &self.id.cluster);
        let prefix = format!("{}/context", gitops::cluster_dir(provider, cluster));
        // The object's file is named plainly or with its namespace (see `object_path`).
        let mut names = vec![format!("{name}+{kind}.yaml")];
        if let Some(namespace) = namespace {
            names.push(format!("{name}+{kind}+{namespace}.yaml"));
        }
        // The cluster's own folders only; apps of an Anthos level-1 cloud live under
        // `namespaces/{ns}/`.
        let mut prefixes = vec![prefix];
        if self.kind == GitOpsType::Anthos {
            prefixes.push(format!("namespaces/*/{provider}+{cluster}/context"));
        }
        let (listed, commits) = {
            let staged = self.staged();
            (staged.committed.clone(), staged.commits)
        };
        let committed = match listed {
            Some(committed) => committed,
            None => {
                let committed = Arc::new(
                    self.repo
                        .files_under(&prefixes)
                        .await
                        .map_err(|error| self.git_error(error))?,
                );
                let mut staged = self.staged();
                if staged.commits == commits {
                    staged.committed = Some(committed.clone());
                }
                committed
            }
        };
        let named = |path: &&String| names.iter().any(|file| path.ends_with(&format!("/{file}")));
        let mut candidates: Vec<String> = committed.iter().filter(named).cloned().collect();
        // Written in this batch and not committed yet.
        candidates.extend(
            self.staged()
                .files
                .iter()
                .filter(|(path, content)| content.is_some() && named(path))
                .map(|(path, _)| path.clone()),
        );
        candidates.sort();
        candidates.dedup();
        // Keep the files that are this object's in their deployment: a plain name in a
        // deployment whose group namespace is another is another object's.
        let mut paths = Vec::new();
        for path in candidates {
            let Some(context) = gitops::context_of_path(provider, cluster, &path) else {
                continue;
            };
            let header = self.header_of(context).await?;
            let expected = match self
                .deployment(context, header.as_deref())
                .namespace_suffix(namespace)
            {
                Some(namespace) => format!("/{name}+{kind}+{namespace}.yaml"),
                None => format!("/{name}+{kind}.yaml"),
            };
            if path.ends_with(&expected) {
                paths.push((context.to_owned(), path));
            }
        }
        if paths.is_empty() {
            return Ok(Deleted::NotFound);
        }
        let mut staged = self.staged();
        for (context, path) in paths {
            staged.contexts.insert(context, ());
            if staged.files.insert(path, None) != Some(None) {
                staged.removed += 1;
            }
        }
        // The agent prunes it; gone once its report no longer has it.
        Ok(Deleted::Deleting)
    }

    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        Ok(self
            .reported()
            .await?
            .into_iter()
            .find(|object| is_object(object, api_version, kind, namespace, name)))
    }

    async fn approve(&self, name: &str, _reason: &str, _message: &str) -> Result<(), ClusterError> {
        Err(ClusterError::InvalidObject(format!(
            "CertificateSigningRequest {name}: a GitOps cluster's requests are approved on the \
             cluster, not by the hub"
        )))
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        Ok(self
            .reported()
            .await?
            .into_iter()
            .filter(|object| {
                text(object, "/kind") == Some(kind)
                    && text(object, "/apiVersion").map(group_of) == Some(group_of(api_version))
                    && (namespace.is_none() || text(object, "/metadata/namespace") == namespace)
                    && matches_selector(object, label_selector)
            })
            .collect())
    }

    async fn flush(&self) -> Result<(), ClusterError> {
        let staged = self.staged().clone();
        if staged.files.is_empty() {
            return Ok(());
        }
        let cluster_name = format!("{}+{}", self.id.provider, self.id.cluster);
        let mut derived = Vec::new();
        for context in staged.contexts.keys() {
            let header = self.header_of(context).await?;
            let deployment = self.deployment(context, header.as_deref());
            let files = deployment.agent_files(&self.git, &self.times);
            let mut encoded = Vec::new();
            for (path, value) in files {
                let mut bytes = serde_json::to_vec_pretty(&value)
                    .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
                bytes.push(b'\n');
                encoded.push((path, bytes));
            }
            derived.push(Derived {
                when_dir_has_files: format!("{}/app", deployment.dir()),
                files: encoded,
            });
        }
        let mut files = staged.files.clone();
        for (path, value) in gitops::cluster_files(self.kind, &self.id.provider, &self.id.cluster) {
            let mut bytes = serde_json::to_vec_pretty(&value)
                .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
            bytes.push(b'\n');
            files.insert(path, Some(bytes));
        }
        let apps: Vec<&str> = staged.apps.keys().map(String::as_str).collect();
        let contexts: Vec<&str> = staged.contexts.keys().map(String::as_str).collect();
        let mut message = format!(
            "emco: {cluster_name}: {} written, {} removed",
            staged.written, staged.removed
        );
        if !apps.is_empty() {
            message.push_str(&format!(" (app {})", apps.join(", ")));
        }
        message.push_str(&format!("\n\ncontext {}\n", contexts.join(", ")));
        for (path, content) in &staged.files {
            let verb = if content.is_some() { "write" } else { "remove" };
            message.push_str(&format!("{verb} {path}\n"));
        }
        self.repo
            .commit(Change {
                message,
                files,
                derived,
            })
            .await
            .map_err(|error| self.git_error(error))?;
        {
            // Whatever follows, the listing of the cluster's files predates this commit.
            let mut now = self.staged();
            now.commits += 1;
            now.committed = None;
        }
        self.sync_arc(&contexts).await?;
        // Only what was committed: the worker of another deployment on this cluster may have
        // staged more meanwhile.
        let mut now = self.staged();
        for (path, content) in &staged.files {
            if now.files.get(path) == Some(content) {
                now.files.remove(path);
            }
        }
        if now.files.is_empty() {
            *now = Staged {
                commits: now.commits,
                ..Staged::default()
            };
        }
        Ok(())
    }
}
