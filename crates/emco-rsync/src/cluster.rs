//! One member cluster reached through its Kubernetes API: server-side apply, get, delete and list
//! of untyped objects, with errors classified for the synchronizer's retry policy. Where a kind
//! lives comes from a table of well-known kinds (no request), else from discovery, one request
//! per group-version (all its kinds are kept).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kube::Resource as _;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GetParams, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersion;
use kube::discovery::{self, Scope};
use kube::{Client, Config};
use serde_json::Value;
use tracing::debug;

/// The field manager every apply uses, so the hub owns the fields it sets.
pub const FIELD_MANAGER: &str = "emco";

/// How long a request may take when the caller does not say.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the caller should do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying cannot help (the object or the credentials are wrong).
    Never,
    /// Retry after exactly this long (the server said so).
    After(Duration),
    /// Retry with the caller's exponential backoff and jitter.
    Backoff,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The stored kubeconfig cannot be read or used.
    #[error("cluster {cluster}: invalid kubeconfig: {message}")]
    Kubeconfig { cluster: String, message: String },
    /// The object lacks what every Kubernetes object needs (apiVersion, kind, metadata.name).
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// The cluster does not serve this kind (yet: a CRD may still be getting established).
    #[error("cluster {cluster}: no resource for kind {kind} in {api_version}")]
    UnknownKind {
        cluster: String,
        api_version: String,
        kind: String,
    },
    /// The API server answered with an error status.
    #[error("cluster {cluster}: {code} {reason}: {message}")]
    Api {
        cluster: String,
        code: u16,
        reason: String,
        message: String,
        /// `details.retryAfterSeconds` of the answer (the body twin of `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    #[error("cluster {cluster}: no answer within {timeout:?}")]
    Timeout { cluster: String, timeout: Duration },
    /// The connection failed (refused, reset, DNS, ...).
    #[error("cluster {cluster}: connection failed: {source}")]
    Transport {
        cluster: String,
        #[source]
        source: kube::Error,
    },
    /// Anything else the client reported (a malformed answer, a request it could not build).
    #[error("cluster {cluster}: {source}")]
    Client {
        cluster: String,
        #[source]
        source: kube::Error,
    },
    /// The cluster's certificate is not trusted by the kubeconfig (unknown CA, wrong name,
    /// expired): retrying cannot help until the kubeconfig (or the server) is fixed.
    #[error("cluster {cluster}: untrusted server certificate: {message}")]
    Certificate { cluster: String, message: String },
    /// What is needed to reach the cluster could not be read right now (the hub's store
    /// failed); worth retrying.
    #[error("cluster {cluster}: unavailable: {message}")]
    Unavailable { cluster: String, message: String },
    /// A GitOps cluster's repository could not be written or read (refused credentials, a
    /// server that is down): retried, and the cluster shows as Retrying meanwhile.
    #[error("cluster {cluster}: git: {message}")]
    Git { cluster: String, message: String },
    /// A GitOps cluster's agent has stopped reporting: what the cluster has is unknown until it
    /// reports again, so readiness and deletes wait (the cluster shows as Retrying).
    #[error("cluster {cluster}: {message}")]
    AgentSilent { cluster: String, message: String },
}

impl ClusterError {
    /// The retry policy of this error: unreachable clusters, timeouts, 5xx and 429 are worth
    /// retrying (429 and 5xx after the server's `retryAfterSeconds` when it gives one); other
    /// 4xx are not. A 409 Conflict reaching the caller was already retried once by `apply`
    /// (forced apply should not conflict), so it is final too.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Kubeconfig { .. }
            | Self::InvalidObject(_)
            | Self::Client { .. }
            | Self::Certificate { .. } => Retry::Never,
            // A CRD applied moments ago may not be served yet; the caller's attempt limit or
            // `stop` ends a kind that never appears.
            Self::UnknownKind { .. } => Retry::Backoff,
            Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Unavailable { .. }
            | Self::Git { .. }
            | Self::AgentSilent { .. } => Retry::Backoff,
            Self::Api {
                code, retry_after, ..
            } => match code {
                408 | 429 | 500..=599 => retry_after.map_or(Retry::Backoff, Retry::After),
                _ => Retry::Never,
            },
        }
    }

    /// Whether the error says the cluster itself cannot be reached or is overloaded (as opposed
    /// to refusing one object): the synchronizer reports such a cluster as `Retrying`.
    pub fn is_connectivity(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Git { .. }
            | Self::AgentSilent { .. } => true,
            Self::Api { code, .. } => matches!(code, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn from_kube(cluster: &str, error: kube::Error) -> Self {
        let cluster = cluster.to_owned();
        match error {
            kube::Error::Api(status) => {
                let retry_after = status
                    .details
                    .as_ref()
                    .map(|details| details.retry_after_seconds)
                    .filter(|seconds| *seconds > 0)
                    .map(|seconds| Duration::from_secs(u64::from(seconds)));
                Self::Api {
                    cluster,
                    code: status.code,
                    reason: status.reason,
                    message: status.message,
                    retry_after,
                }
            }
            source @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                match certificate_problem(&source) {
                    Some(message) => Self::Certificate { cluster, message },
                    None => Self::Transport { cluster, source },
                }
            }
            source => Self::Client { cluster, source },
        }
    }
}

/// rustls's refusal of the server's certificate, if that is what failed the connection (it
/// arrives wrapped in hyper's and tower's errors, so the chain is searched).
fn certificate_problem(error: &kube::Error) -> Option<String> {
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(err) = current {
        let text = err.to_string();
        if let Some(position) = text.find("invalid peer certificate") {
            return Some(text[position..].to_owned());
        }
        current = err.source();
    }
    None
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The object is gone.
    Gone,
    /// Deletion started; finalizers or dependents still hold the object.
    Deleting,
    /// There was nothing to delete.
    NotFound,
}

/// A server-side apply made once and sent to any number of clusters: where the object goes and
/// its JSON body, serialized once (the synchronizer sends one variant's objects to every
/// cluster that gets the variant).
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    body: Vec<u8>,
    wants_answer: bool,
}

impl ApplyRequest {
    /// The apply of `obj`, whose answer is wanted; an object without `apiVersion`, `kind` or
    /// `metadata.name` is refused.
    pub fn new(obj: &Value) -> Result<Self, ClusterError> {
        let missing = |what: &str| ClusterError::InvalidObject(format!("no {what}"));
        let api_version = field(obj, "/apiVersion").ok_or_else(|| missing("apiVersion"))?;
        let kind = field(obj, "/kind").ok_or_else(|| missing("kind"))?;
        let name = field(obj, "/metadata/name").ok_or_else(|| missing("metadata.name"))?;
        let body = serde_json::to_vec(obj)
            .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
        Ok(Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: field(obj, "/metadata/namespace").map(str::to_owned),
            body,
            wants_answer: true,
        })
    }

    /// The apply of `obj` at the given coordinates (already known to the caller), answer
    /// wanted.
    pub fn at(
        api_version: &str,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            // Serializing a `Value` into memory cannot fail.
            body: serde_json::to_vec(obj).unwrap_or_default(),
            wants_answer: true,
        }
    }

    /// Whether the caller reads the object as stored. Without, the answer is checked for
    /// success and not parsed: most kinds need nothing from it, and reading every answer of
    /// a large rollout costs the hub more than sending the objects.
    pub fn with_answer(mut self, wants_answer: bool) -> Self {
        self.wants_answer = wants_answer;
        self
    }

    pub fn wants_answer(&self) -> bool {
        self.wants_answer
    }

    /// The JSON body sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// The cluster operations the synchronizer needs; a fake implements it in tests.
#[async_trait]
pub trait ClusterApi: Send + Sync {
    /// The cluster's name, for logs and errors.
    fn name(&self) -> &str;
    /// Server-side applies a prepared request (field manager `emco`, forced); returns the
    /// object as stored when the request asks for it ([`ApplyRequest::wants_answer`]).
    async fn apply_request(&self, request: &ApplyRequest) -> Result<Option<Value>, ClusterError>;
    /// Server-side applies `obj` (field manager `emco`, forced); returns the object as stored.
    async fn apply(&self, obj: &Value) -> Result<Value, ClusterError> {
        let request = ApplyRequest::new(obj)?;
        self.apply_request(&request)
            .await?
            .ok_or_else(|| ClusterError::InvalidObject("the apply had no answer".into()))
    }
    /// Deletes an object (in the background for its dependents).
    async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClusterError>;
    /// Reads an object; `None` when it does not exist.
    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError>;
    /// Approves the CertificateSigningRequest `name` (its `approval` subresource) with
    /// `reason` and `message`; approving one already approved changes nothing.
    async fn approve(&self, name: &str, reason: &str, message: &str) -> Result<(), ClusterError>;
    /// Whether the cluster pulls what is applied (a GitOps cluster: an apply is a file in its
    /// repository, its agent applies it later): nothing applied counts as ready until a read
    /// shows it so.
    fn pulls(&self) -> bool {
        false
    }
    /// Makes everything applied or deleted so far reach the cluster (a GitOps cluster commits
    /// and pushes); nothing to do for a cluster whose calls act at once.
    async fn flush(&self) -> Result<(), ClusterError> {
        Ok(())
    }
    /// Lists the objects of a kind matching `label_selector` (`key=value,...`), in `namespace`
    /// or, when `None`, in all namespaces. Every item carries its `apiVersion` and `kind`.
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ClusterError>;
}

/// Tunables of a cluster client.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Longest wait for any one request (discovery included), so a hanging cluster cannot
    /// hold a worker.
    pub request_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Kinds every conformant cluster serves at a fixed place, so a fresh client applies them
/// without asking discovery: (apiVersion, kind, plural, namespaced). All are GA APIs served by
/// every supported Kubernetes release; should a cluster not serve one after all, the apply's
/// 404 sends the client to discovery (see [`KubeCluster::apply`]).
#[rustfmt::skip]
const WELL_KNOWN_KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1",                           "ConfigMap",                "configmaps",                true),
    ("v1",                           "Endpoints",                "endpoints",                 true),
    ("v1",                           "Event",                    "events",                    true),
    ("v1",                           "LimitRange",               "limitranges",               true),
    ("v1",                           "Namespace",                "namespaces",                false),
    ("v1",                           "PersistentVolume",         "persistentvolumes",         false),
    ("v1",                           "PersistentVolumeClaim",    "persistentvolumeclaims",    true),
    ("v1",                           "Pod",                      "pods",                      true),
    ("v1",                           "ReplicationController",    "replicationcontrollers",    true),
    ("v1",                           "ResourceQuota",            "resourcequotas",            true),
    ("v1",                           "Secret",                   "secrets",                   true),
    ("v1",                           "Service",                  "services",                  true),
    ("v1",                           "ServiceAccount",           "serviceaccounts",           true),
    ("apps/v1",                      "ControllerRevision",       "controllerrevisions",       true),
    ("apps/v1",                      "DaemonSet",                "daemonsets",                true),
    ("apps/v1",                      "Deployment",               "deployments",               true),
    ("apps/v1",                      "ReplicaSet",               "replicasets",               true),
    ("apps/v1",                      "StatefulSet",              "statefulsets",              true),
    ("batch/v1",                     "CronJob",                  "cronjobs",                  true),
    ("batch/v1",                     "Job",                      "jobs",                      true),
    ("rbac.authorization.k8s.io/v1", "ClusterRole",              "clusterroles",              false),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",       "clusterrolebindings",       false),
    ("rbac.authorization.k8s.io/v1", "Role",                     "roles",                     true),
    ("rbac.authorization.k8s.io/v1", "RoleBinding",              "rolebindings",              true),
    ("apiextensions.k8s.io/v1",      "CustomResourceDefinition", "customresourcedefinitions", false),
    ("networking.k8s.io/v1",         "Ingress",                  "ingresses",                 true),
    ("networking.k8s.io/v1",         "NetworkPolicy",            "networkpolicies",           true),
    ("policy/v1",                    "PodDisruptionBudget",      "poddisruptionbudgets",      true),
    ("storage.k8s.io/v1",            "StorageClass",             "storageclasses",            false),
];

/// The well-known place of `kind` in `api_version`, if it has one.
fn well_known(
    table: &[(&str, &str, &str, bool)],
    api_version: &str,
    kind: &str,
) -> Option<Resolved> {
    let &(_, _, plural, namespaced) = table.iter().find(|(known_version, known_kind, _, _)| {
        *known_version == api_version && *known_kind == kind
    })?;
    let (group, version) = split_api_version(api_version);
    Some(Resolved {
        resource: ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        },
        namespaced,
        source: Source::WellKnown,
    })
}

/// `(group, version)` of an apiVersion (`v1` is the core group's).
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Where a resolution came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// [`WELL_KNOWN_KINDS`]: not confirmed by this cluster.
    WellKnown,
    /// The cluster's discovery answer.
    Discovered,
}

/// A resolved kind: where its objects live and whether they are namespaced.
#[derive(Debug, Clone)]
struct Resolved {
    resource: ApiResource,
    namespaced: bool,
    source: Source,
}

/// apiVersion → kind → resolution. Only hits are kept, so a kind missing now (a CRD not yet
/// established) is looked up again next time.
type KindCache = HashMap<String, HashMap<String, Resolved>>;

/// A member cluster reached with kube-rs from its kubeconfig.
pub struct KubeCluster {
    name: String,
    client: Client,
    options: ClusterOptions,
    kinds: Mutex<KindCache>,
    /// The table of kinds resolved without discovery (replaced by tests).
    well_known: &'static [(&'static str, &'static str, &'static str, bool)],
    /// Discovery requests sent so far.
    discovery_requests: AtomicU64,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// A client for `name` from its kubeconfig (current context), with default options.
    pub async fn from_kubeconfig(name: &str, kubeconfig: &[u8]) -> Result<Self, ClusterError> {
        Self::from_kubeconfig_with(name, kubeconfig, ClusterOptions::default()).await
    }

    /// Same, with `options`.
    pub async fn from_kubeconfig_with(
        name: &str,
        kubeconfig: &[u8],
        options: ClusterOptions,
    ) -> Result<Self, ClusterError> {
        let invalid = |message: String| ClusterError::Kubeconfig {
            cluster: name.to_owned(),
            message,
        };
        let text = std::str::from_utf8(kubeconfig)
            .map_err(|error| invalid(format!("not UTF-8: {error}")))?;
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|error| invalid(error.to_string()))?;
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|error| invalid(error.to_string()))?;
        config.connect_timeout = Some(options.request_timeout);
        // The synchronizer owns the retry policy (backoff, `stop`); kube's built-in retry of
        // 429/503/504 would hide those answers and sleep past the request timeout.
        config.default_retry = false;
        // A plain-HTTP server needs no trust roots; without this, every client would load the
        // platform's root store (milliseconds and ~120 KiB each), which matters with thousands
        // of clusters.
        if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
            config.root_cert = Some(Vec::new());
        }
        let client = Client::try_from(config).map_err(|error| invalid(error.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            client,
            options,
            kinds: Mutex::new(HashMap::new()),
            well_known: WELL_KNOWN_KINDS,
            discovery_requests: AtomicU64::new(0),
        })
    }

    /// How many discovery requests this client sent (one per group-version it had to look up).
    pub fn discovery_requests(&self) -> u64 {
        self.discovery_requests.load(Ordering::Relaxed)
    }

    /// Runs one request under the request timeout, mapping its error.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.options.request_timeout, request).await {
            Ok(result) => result.map_err(|error| ClusterError::from_kube(&self.name, error)),
            Err(_) => Err(ClusterError::Timeout {
                cluster: self.name.clone(),
                timeout: self.options.request_timeout,
            }),
        }
    }

    /// A built request, or why it could not be built.
    fn built<T>(&self, request: Result<T, kube::core::request::Error>) -> Result<T, ClusterError> {
        request.map_err(|error| ClusterError::Client {
            cluster: self.name.clone(),
            source: kube::Error::BuildRequest(error),
        })
    }

    fn unknown_kind(&self, api_version: &str, kind: &str) -> ClusterError {
        ClusterError::UnknownKind {
            cluster: self.name.clone(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// Where `kind` of `api_version` lives: from the cache, else the well-known table, else
    /// discovery.
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, ClusterError> {
        if let Some(hit) = self
            .cache()
            .get(api_version)
            .and_then(|kinds| kinds.get(kind))
        {
            return Ok(hit.clone());
        }
        if let Some(known) = well_known(self.well_known, api_version, kind) {
            self.cache()
                .entry(api_version.to_owned())
                .or_default()
                .insert(kind.to_owned(), known.clone());
            return Ok(known);
        }
        self.discover(api_version, kind).await
    }

    /// Asks the cluster which kinds `api_version` serves (one request for all of them), caches
    /// them all in place of what was known of the group-version, and returns `kind`'s.
    async fn discover(&self, api_version: &str, kind: &str) -> Result<Resolved, ClusterError> {
        let (group, version) = split_api_version(api_version);
        self.discovery_requests.fetch_add(1, Ordering::Relaxed);
        let group_version = GroupVersion::gv(group, version);
        let served = match self
            .call(discovery::pinned_group(&self.client, &group_version))
            .await
        {
            Ok(found) => found.versioned_resources(version),
            Err(ClusterError::Api { code: 404, .. })
            | Err(ClusterError::Client {
                source: kube::Error::Discovery(_),
                ..
            }) => {
                self.cache().remove(api_version);
                return Err(self.unknown_kind(api_version, kind));
            }
            Err(error) => return Err(error),
        };
        let kinds: HashMap<String, Resolved> = served
            .into_iter()
            .map(|(resource, capabilities)| {
                let resolved = Resolved {
                    namespaced: capabilities.scope == Scope::Namespaced,
                    resource,
                    source: Source::Discovered,
                };
                (resolved.resource.kind.clone(), resolved)
            })
            .collect();
        debug!(cluster = %self.name, api_version, kinds = kinds.len(), "discovered a group-version");
        let found = kinds.get(kind).cloned();
        self.cache().insert(api_version.to_owned(), kinds);
        found.ok_or_else(|| self.unknown_kind(api_version, kind))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KindCache> {
        self.kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request builder for a kind's objects in `namespace` (the client's default namespace
    /// when a namespaced object names none; ignored for cluster-scoped kinds), or in every
    /// namespace when `all_namespaces` and none is named.
    fn collection(
        &self,
        resolved: &Resolved,
        namespace: Option<&str>,
        all_namespaces: bool,
    ) -> kube::core::Request {
        let namespace = namespace.filter(|namespace| !namespace.is_empty());
        let namespace = match (resolved.namespaced, namespace) {
            (false, _) => None,
            (true, Some(namespace)) => Some(namespace),
            (true, None) if all_namespaces => None,
            (true, None) => Some(self.client.default_namespace()),
        };
        kube::core::Request::new(DynamicObject::url_path(&resolved.resource, namespace))
    }

    /// One server-side apply (retried once on a conflict); the answer when wanted.
    async fn patch(
        &self,
        resolved: &Resolved,
        apply: &ApplyRequest,
    ) -> Result<Option<Value>, ClusterError> {
        let collection = self.collection(resolved, apply.namespace.as_deref(), false);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        // kube builds the path, query and headers; the body is the one serialized in advance.
        let request = || {
            self.built(collection.patch(&apply.name, &params, &Patch::Apply(())))
                .map(|request| request.map(|_| apply.body.clone()))
        };
        let answer = match self.call(self.client.request_text(request()?)).await {
            // A forced apply takes over conflicting fields, so a 409 is a race with another
            // writer (e.g. a resourceVersion in the object): one more try settles it.
            Err(error) if error.status_code() == Some(409) => {
                debug!(cluster = %self.name, kind = %resolved.resource.kind, name = %apply.name, "apply conflicted; retrying once");
                self.call(self.client.request_text(request()?)).await
            }
            result => result,
        }?;
        if !apply.wants_answer {
            return Ok(None);
        }
        serde_json::from_str::<WithoutManagedFields>(&answer)
            .map(|object| Some(object.0))
            .map_err(|error| ClusterError::Client {
                cluster: self.name.clone(),
                source: kube::Error::SerdeError(error),
            })
    }
}

/// An apply answer without `metadata.managedFields`: for a small object those are the bulk of
/// the answer and nothing reads them, so they are skipped while parsing (no allocation) instead
/// of being parsed and dropped.
struct WithoutManagedFields(Value);

impl<'de> serde::Deserialize<'de> for WithoutManagedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        use serde_json::Map;

        /// A map whose `managedFields` member (at this level only) is skipped.
        struct Skipping {
            skip_managed_fields: bool,
        }
        impl<'de> Visitor<'de> for Skipping {
            type Value = Map<String, Value>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if self.skip_managed_fields && key == "managedFields" {
                        map.next_value::<IgnoredAny>()?;
                    } else if !self.skip_managed_fields && key == "metadata" {
                        let metadata = map.next_value::<Metadata>()?;
                        out.insert(key, Value::Object(metadata.0));
                    } else {
                        out.insert(key, map.next_value::<Value>()?);
                    }
                }
                Ok(out)
            }
        }
        struct Metadata(Map<String, Value>);
        impl<'de> serde::Deserialize<'de> for Metadata {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(Skipping {
                    skip_managed_fields: true,
                })
                .map(Metadata)
            }
        }
        deserializer
            .deserialize_map(Skipping {
                skip_managed_fields: false,
            })
            .map(|map| WithoutManagedFields(Value::Object(map)))
    }
}

fn field<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

#[async_trait]
impl ClusterApi for KubeCluster {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply_request(&self, apply: &ApplyRequest) -> Result<Option<Value>, ClusterError> {
        let resolved = self.resolve(&apply.api_version, &apply.kind).await?;
        match self.patch(&resolved, apply).await {
            // An apply creates what is missing, so a 404 says the path itself is not served
            // (or the namespace is missing): a well-known guess is checked with discovery
            // once, which then has the last word for the group-version.
            Err(error)
                if error.status_code() == Some(404) && resolved.source == Source::WellKnown =>
            {
                debug!(cluster = %self.name, api_version = %apply.api_version, kind = %apply.kind, "well-known kind not found; asking discovery");
                let resolved = self.discover(&apply.api_version, &apply.kind).await?;
                self.patch(&resolved, apply).await
            }
            result => result,
        }
    }

    async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClusterError> {
        let resolved = self.resolve(api_version, kind).await?;
        let collection = self.collection(&resolved, namespace, false);
        let request = self.built(collection.delete(name, &DeleteParams::background()))?;
        match self.call(self.client.request::<Value>(request)).await {
            // The server answers with a Status when it removed the object at once, and with
            // the object marked for deletion when finalizers or a grace period hold it.
            Ok(answer) => Ok(
                if answer.get("kind").and_then(Value::as_str) != Some("Status")
                    && answer.pointer("/metadata/deletionTimestamp").is_some()
                {
                    Deleted::Deleting
                } else {
                    Deleted::Gone
                },
            ),
            Err(error) if error.status_code() == Some(404) => Ok(Deleted::NotFound),
            Err(error) => Err(error),
        }
    }

    async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let resolved = self.resolve(api_version, kind).await?;
        let collection = self.collection(&resolved, namespace, false);
        let request = self.built(collection.get(name, &GetParams::default()))?;
        match self
            .call(self.client.request::<WithoutManagedFields>(request))
            .await
        {
            Ok(object) => Ok(Some(object.0)),
            Err(error) if error.status_code() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn approve(&self, name: &str, reason: &str, message: &str) -> Result<(), ClusterError> {
        const API_VERSION: &str = "certificates.k8s.io/v1";
        const KIND: &str = "CertificateSigningRequest";
        let Some(mut csr) = self.get(API_VERSION, KIND, None, name).await? else {
            return Err(ClusterError::InvalidObject(format!(
                "cluster {}: no CertificateSigningRequest {name} to approve",
                self.name
            )));
        };
        let approved = csr
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.get("type").and_then(Value::as_str) == Some("Approved"))
            });
        if approved {
            return Ok(());
        }
        let condition = serde_json::json!({
            "type": "Approved",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": crate::engine::records::rfc3339_now(),
        });
        let Some(fields) = csr.as_object_mut() else {
            return Err(ClusterError::InvalidObject(format!(
                "cluster {}: CertificateSigningRequest {name} is not an object",
                self.name
            )));
        };
        let status = fields
            .entry("status")
            .or_insert_with(|| serde_json::json!({}));
        if !status.is_object() {
            *status = serde_json::json!({});
        }
        if let Some(status) = status.as_object_mut() {
            let conditions = status
                .entry("conditions")
                .or_insert_with(|| serde_json::json!([]));
            match conditions.as_array_mut() {
                Some(list) => list.push(condition),
                None => *conditions = serde_json::json!([condition]),
            }
        }
        let resolved = self.resolve(API_VERSION, KIND).await?;
        let collection = self.collection(&resolved, None, false);
        let body = serde_json::to_vec(&csr)
            .map_err(|error| ClusterError::InvalidObject(error.to_string()))?;
        let request = self.built(collection.replace_subresource(
            "approval",
            name,
            &kube::api::PostParams::default(),
            body,
        ))?;
        self.call(self.client.request::<Value>(request))
            .await
            .map(|_| ())
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let resolved = self.resolve(api_version, kind).await?;
        let collection = self.collection(&resolved, namespace, true);
        let params = ListParams::default().labels(label_selector);
        let request = self.built(collection.list(&params))?;
        /// A list answer: only its items matter, read without their managed fields (readiness
        /// polls list every Deployment of an app, and those fields are most of each).
        #[derive(serde::Deserialize)]
        struct Listed {
            items: Option<Vec<WithoutManagedFields>>,
        }
        let listed: Listed = self.call(self.client.request(request)).await?;
        Ok(listed
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|WithoutManagedFields(mut item)| {
                // List items may come without their type (the list carries it); readiness
                // rules need it.
                if let Some(fields) = item.as_object_mut() {
                    fields.insert("apiVersion".into(), Value::from(api_version));
                    fields.insert("kind".into(), Value::from(kind));
                }
                item
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {

    #[test]
    fn apply_answers_are_read_without_managed_fields() {
        let answer = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "c",
                "generation": 2,
                "managedFields": [{"manager": "emco", "fieldsV1": {"f:data": {}}}],
                "labels": {"managedFields": "a label may be called that"}
            },
            "data": {"managedFields": "so may a key"}
        });
        let parsed: WithoutManagedFields =
            serde_json::from_slice(&serde_json::to_vec(&answer).unwrap()).unwrap();
        let mut expected = answer.clone();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(parsed.0, expected);
    }

    use super::*;

    fn api_error(code: u16, retry_after: Option<u64>) -> ClusterError {
        ClusterError::Api {
            cluster: "c".into(),
            code,
            reason: String::new(),
            message: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn statuses_classify_as_the_synchronizer_needs() {
        assert_eq!(
            api_error(429, Some(3)).retry(),
            Retry::After(Duration::from_secs(3))
        );
        assert_eq!(api_error(429, None).retry(), Retry::Backoff);
        assert_eq!(api_error(500, None).retry(), Retry::Backoff);
        assert_eq!(
            api_error(503, Some(1)).retry(),
            Retry::After(Duration::from_secs(1))
        );
        for code in [400, 401, 403, 404, 409, 422] {
            assert_eq!(api_error(code, None).retry(), Retry::Never, "{code}");
        }
        let timeout = ClusterError::Timeout {
            cluster: "c".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.retry(), Retry::Backoff);
        assert_eq!(
            ClusterError::InvalidObject("x".into()).retry(),
            Retry::Never
        );
    }

    /// The synchronizer holds clusters as `Arc<dyn ClusterApi>`, fakes included.
    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<&dyn ClusterApi>) {}
        takes(None);
    }

    async fn sim_cluster() -> (emco_sim::RunningSim, KubeCluster) {
        let sim = emco_sim::Sim::new(emco_sim::SimOptions::default());
        sim.add_clusters("edge-", 1).unwrap();
        let running = emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let kubeconfig = running.sim.kubeconfig("edge-1");
        let cluster = KubeCluster::from_kubeconfig("edge-1", kubeconfig.as_bytes())
            .await
            .unwrap();
        (running, cluster)
    }

    fn object(api_version: &str, kind: &str, name: &str) -> Value {
        serde_json::json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": "default"},
        })
    }

    fn crd(kind: &str, plural: &str) -> Value {
        serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.example.com")},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }],
            },
        })
    }

    /// A request without answer applies all the same and returns nothing; errors still come
    /// back; a request made from an object without a name is refused before anything is sent.
    #[tokio::test]
    async fn applies_without_answer_are_applied_and_still_checked() {
        let (_running, cluster) = sim_cluster().await;
        let mut config_map = object("v1", "ConfigMap", "quiet");
        config_map["data"] = serde_json::json!({"k": "v"});
        let apply = ApplyRequest::new(&config_map).unwrap().with_answer(false);
        assert_eq!(cluster.apply_request(&apply).await.unwrap(), None);
        let stored = cluster
            .get("v1", "ConfigMap", Some("default"), "quiet")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored["data"]["k"], "v");
        // Reads come without managed fields (nothing here reads them).
        assert!(
            stored["metadata"].get("managedFields").is_none(),
            "{stored}"
        );
        assert_eq!(stored["metadata"]["name"], "quiet");
        let listed = cluster.list("v1", "ConfigMap", None, "").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0]["metadata"].get("managedFields").is_none());
        assert_eq!(listed[0]["kind"], "ConfigMap");

        let bad = ApplyRequest::new(&object("v1", "ConfigMap", "Not_A_Name"))
            .unwrap()
            .with_answer(false);
        let error = cluster.apply_request(&bad).await.unwrap_err();
        assert_eq!(error.status_code(), Some(422), "{error}");

        let nameless = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        let error = ApplyRequest::new(&nameless).unwrap_err();
        assert!(error.to_string().contains("metadata.name"), "{error}");
    }

    /// The deploy bench's kinds (seven kinds in three group-versions) need no discovery on a
    /// fresh client; other kinds cost one discovery request per group-version, whatever the
    /// number of its kinds used.
    #[tokio::test]
    async fn well_known_kinds_need_no_discovery_and_others_one_request_per_group_version() {
        let (_running, cluster) = sim_cluster().await;
        let mut role = object("rbac.authorization.k8s.io/v1", "Role", "reader");
        role["rules"] =
            serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        let mut binding = object("rbac.authorization.k8s.io/v1", "RoleBinding", "reader");
        binding["roleRef"] = serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"});
        let mut deployment = object("apps/v1", "Deployment", "web");
        deployment["spec"] = serde_json::json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        });
        for obj in [
            object("v1", "ServiceAccount", "sa"),
            object("v1", "Secret", "secret"),
            object("v1", "ConfigMap", "cm"),
            role,
            binding,
            object("v1", "Service", "web"),
            deployment,
        ] {
            cluster.apply(&obj).await.unwrap();
        }
        assert!(
            cluster
                .get("v1", "Secret", Some("default"), "secret")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            cluster
                .get("v1", "Secret", Some("default"), "none")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            cluster
                .list("apps/v1", "Deployment", None, "")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(cluster.discovery_requests(), 0);

        cluster.apply(&crd("Gadget", "gadgets")).await.unwrap();
        cluster.apply(&crd("Gizmo", "gizmos")).await.unwrap();
        assert_eq!(cluster.discovery_requests(), 0, "CRDs are well known");
        cluster
            .apply(&object("example.com/v1", "Gadget", "g"))
            .await
            .unwrap();
        cluster
            .apply(&object("example.com/v1", "Gizmo", "g"))
            .await
            .unwrap();
        assert!(
            cluster
                .get("example.com/v1", "Gizmo", Some("default"), "g")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            cluster.discovery_requests(),
            1,
            "one request listed both kinds of example.com/v1"
        );
        let error = cluster
            .apply(&object("example.com/v1", "Doohickey", "d"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClusterError::UnknownKind { .. }), "{error}");
        assert_eq!(cluster.discovery_requests(), 2, "a miss asks again");
    }

    /// A well-known place the cluster does not serve sends the apply to discovery, which then
    /// decides for the group-version.
    #[tokio::test]
    async fn an_apply_the_well_known_place_refuses_falls_back_to_discovery() {
        static WRONG: &[(&str, &str, &str, bool)] = &[
            ("v1", "ConfigMap", "configmapz", true),
            ("v1", "Secret", "secrets", true),
            (
                "policy/v1beta1",
                "PodSecurityPolicy",
                "podsecuritypolicies",
                false,
            ),
        ];
        let (_running, mut cluster) = sim_cluster().await;
        cluster.well_known = WRONG;
        cluster
            .apply(&object("v1", "ConfigMap", "cm"))
            .await
            .unwrap();
        assert_eq!(cluster.discovery_requests(), 1);
        // Discovery answered for all of v1: Secret is now known from it, not the table.
        cluster.apply(&object("v1", "Secret", "s")).await.unwrap();
        cluster
            .apply(&object("v1", "ConfigMap", "cm"))
            .await
            .unwrap();
        assert_eq!(cluster.discovery_requests(), 1);
        let error = cluster
            .apply(&object("policy/v1beta1", "PodSecurityPolicy", "psp"))
            .await
            .unwrap_err();
        assert!(matches!(error, ClusterError::UnknownKind { .. }), "{error}");
        assert_eq!(cluster.discovery_requests(), 2);
    }

    #[test]
    fn the_well_known_table_is_consistent() {
        for (index, (api_version, kind, plural, _)) in WELL_KNOWN_KINDS.iter().enumerate() {
            assert_eq!(*plural, plural.to_lowercase(), "{kind}");
            assert!(
                WELL_KNOWN_KINDS[index + 1..]
                    .iter()
                    .all(|(v, k, _, _)| (v, k) != (api_version, kind)),
                "{api_version} {kind} twice"
            );
        }
        let namespace = well_known(WELL_KNOWN_KINDS, "v1", "Namespace").unwrap();
        assert!(!namespace.namespaced);
        assert_eq!(namespace.resource.group, "");
        let role = well_known(WELL_KNOWN_KINDS, "rbac.authorization.k8s.io/v1", "Role").unwrap();
        assert_eq!(role.resource.group, "rbac.authorization.k8s.io");
        assert_eq!(role.resource.plural, "roles");
        assert!(well_known(WELL_KNOWN_KINDS, "apps/v1beta1", "Deployment").is_none());
    }

    #[tokio::test]
    async fn bad_kubeconfigs_are_rejected() {
        let error = KubeCluster::from_kubeconfig("c", b"clusters: [")
            .await
            .unwrap_err();
        assert!(matches!(error, ClusterError::Kubeconfig { .. }), "{error}");
        assert_eq!(error.retry(), Retry::Never);
        let error = KubeCluster::from_kubeconfig("c", &[0xff, 0xfe])
            .await
            .unwrap_err();
        assert!(matches!(error, ClusterError::Kubeconfig { .. }), "{error}");
    }
}
