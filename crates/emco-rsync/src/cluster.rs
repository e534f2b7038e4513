//! One member cluster reached through its Kubernetes API: server-side apply, get and delete of
//! untyped objects, with errors classified for the synchronizer's retry policy.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
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
    /// What is needed to reach the cluster could not be read right now (the hub's store
    /// failed); worth retrying.
    #[error("cluster {cluster}: unavailable: {message}")]
    Unavailable { cluster: String, message: String },
}

impl ClusterError {
    /// The retry policy of this error: unreachable clusters, timeouts, 5xx and 429 are worth
    /// retrying (429 and 5xx after the server's `retryAfterSeconds` when it gives one); other
    /// 4xx are not. A 409 Conflict reaching the caller was already retried once by `apply`
    /// (forced apply should not conflict), so it is final too.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Kubeconfig { .. } | Self::InvalidObject(_) | Self::Client { .. } => Retry::Never,
            // A CRD applied moments ago may not be served yet; the caller's attempt limit or
            // `stop` ends a kind that never appears.
            Self::UnknownKind { .. } => Retry::Backoff,
            Self::Timeout { .. } | Self::Transport { .. } | Self::Unavailable { .. } => {
                Retry::Backoff
            }
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
            Self::Timeout { .. } | Self::Transport { .. } => true,
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
                Self::Transport { cluster, source }
            }
            source => Self::Client { cluster, source },
        }
    }
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

/// The cluster operations the synchronizer needs; a fake implements it in tests.
#[async_trait]
pub trait ClusterApi: Send + Sync {
    /// The cluster's name, for logs and errors.
    fn name(&self) -> &str;
    /// Server-side applies `obj` (field manager `emco`, forced); returns the object as stored.
    async fn apply(&self, obj: &Value) -> Result<Value, ClusterError>;
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

/// A resolved kind: where its objects live and whether they are namespaced.
#[derive(Debug, Clone)]
struct Resolved {
    resource: ApiResource,
    namespaced: bool,
}

/// A member cluster reached with kube-rs from its kubeconfig.
pub struct KubeCluster {
    name: String,
    client: Client,
    options: ClusterOptions,
    /// (apiVersion, kind) → resource; only hits are kept, so a kind missing now (a CRD not yet
    /// applied) is looked up again next time.
    kinds: Mutex<HashMap<(String, String), Resolved>>,
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
        })
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

    /// The resource serving `kind` in `api_version`, from the cache or else from discovery.
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, ClusterError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(hit) = self.cache().get(&key) {
            return Ok(hit.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let unknown = || ClusterError::UnknownKind {
            cluster: self.name.clone(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
        let (resource, capabilities) =
            match self.call(discovery::pinned_kind(&self.client, &gvk)).await {
                Ok(found) => found,
                Err(ClusterError::Api { code: 404, .. }) => return Err(unknown()),
                Err(ClusterError::Client {
                    source: kube::Error::Discovery(_),
                    ..
                }) => return Err(unknown()),
                Err(error) => return Err(error),
            };
        let resolved = Resolved {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        };
        debug!(cluster = %self.name, api_version, kind, plural = %resolved.resource.plural, "discovered kind");
        self.cache().insert(key, resolved.clone());
        Ok(resolved)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Resolved>> {
        self.kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The dynamic API for a kind in a namespace (the client's default namespace when a
    /// namespaced object names none; ignored for cluster-scoped kinds).
    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, ClusterError> {
        let resolved = self.resolve(api_version, kind).await?;
        Ok(if resolved.namespaced {
            let namespace = namespace
                .filter(|namespace| !namespace.is_empty())
                .unwrap_or(self.client.default_namespace());
            Api::namespaced_with(self.client.clone(), namespace, &resolved.resource)
        } else {
            Api::all_with(self.client.clone(), &resolved.resource)
        })
    }
}

fn to_value(cluster: &str, object: DynamicObject) -> Result<Value, ClusterError> {
    serde_json::to_value(object).map_err(|error| ClusterError::Client {
        cluster: cluster.to_owned(),
        source: kube::Error::SerdeError(error),
    })
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

    async fn apply(&self, obj: &Value) -> Result<Value, ClusterError> {
        let missing = |what: &str| ClusterError::InvalidObject(format!("no {what}"));
        let api_version = field(obj, "/apiVersion").ok_or_else(|| missing("apiVersion"))?;
        let kind = field(obj, "/kind").ok_or_else(|| missing("kind"))?;
        let name = field(obj, "/metadata/name").ok_or_else(|| missing("metadata.name"))?;
        let namespace = field(obj, "/metadata/namespace");
        let api = self.api(api_version, kind, namespace).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(obj);
        let applied = match self.call(api.patch(name, &params, &patch)).await {
            // A forced apply takes over conflicting fields, so a 409 is a race with another
            // writer (e.g. a resourceVersion in the object): one more try settles it.
            Err(error) if error.status_code() == Some(409) => {
                debug!(cluster = %self.name, kind, name, "apply conflicted; retrying once");
                self.call(api.patch(name, &params, &patch)).await?
            }
            result => result?,
        };
        to_value(&self.name, applied)
    }

    async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Deleted, ClusterError> {
        let api = self.api(api_version, kind, namespace).await?;
        match self
            .call(api.delete(name, &DeleteParams::background()))
            .await
        {
            // The server answers with the object's last state when it removed it at once and
            // with the object marked for deletion when finalizers or a grace period hold it.
            Ok(answer) => Ok(match answer.left() {
                Some(object) if object.metadata.deletion_timestamp.is_some() => Deleted::Deleting,
                _ => Deleted::Gone,
            }),
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
        let api = self.api(api_version, kind, namespace).await?;
        self.call(api.get_opt(name))
            .await?
            .map(|object| to_value(&self.name, object))
            .transpose()
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let resolved = self.resolve(api_version, kind).await?;
        let api: Api<DynamicObject> = match namespace.filter(|namespace| !namespace.is_empty()) {
            Some(namespace) if resolved.namespaced => {
                Api::namespaced_with(self.client.clone(), namespace, &resolved.resource)
            }
            _ => Api::all_with(self.client.clone(), &resolved.resource),
        };
        let params = ListParams::default().labels(label_selector);
        let listed = self.call(api.list(&params)).await?;
        listed
            .items
            .into_iter()
            .map(|object| {
                let mut value = to_value(&self.name, object)?;
                // List items may come without their type (the list carries it); readiness
                // rules need it.
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("apiVersion".into(), Value::from(api_version));
                    fields.insert("kind".into(), Value::from(kind));
                }
                Ok(value)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
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
