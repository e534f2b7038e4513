//! Azure Arc client for GitOps (upstream EMCO's `azurearcv2` plugin): a service principal's
//! token, the `microsoft.flux` extension on an Arc-connected cluster, and one Flux
//! configuration per deployment that makes the cluster pull its resources from Git.
//!
//! Requests follow Azure's REST reference (Microsoft.KubernetesConfiguration `extensions`
//! 2021-09-01, `fluxConfigurations` 2022-03-01). Unlike upstream, HTTP statuses are judged:
//! [`ArcError::retryable`] tells throttling, server faults and transport failures from refusals,
//! and long-running operations (201/202 with `Azure-AsyncOperation`) are polled to their end.
//!
//! The workspace's `reqwest` is built without TLS, so this client only speaks plain HTTP
//! (a local stand-in, or a proxy); [`ArcClient::new`] refuses `https` endpoints rather than
//! failing every request later.

use std::error::Error as _;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Azure public cloud's login (Microsoft Entra ID) base.
pub const PUBLIC_LOGIN: &str = "https://login.microsoftonline.com";
/// Azure public cloud's Resource Manager base.
pub const PUBLIC_MANAGEMENT: &str = "https://management.azure.com";
/// The resource a management token is asked for.
pub const MANAGEMENT_RESOURCE: &str = "https://management.core.windows.net/";
/// API version of `Microsoft.KubernetesConfiguration/extensions` requests.
pub const EXTENSION_API_VERSION: &str = "2021-09-01";
/// API version of every `Microsoft.KubernetesConfiguration/fluxConfigurations` request.
pub const FLUX_API_VERSION: &str = "2022-03-01";

/// A cached token is renewed this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Seconds used for `timeOut`, `syncInterval` and `retryInterval` when not given.
const DEFAULT_INTERVAL_S: u64 = 60;

/// The Arc cluster and the service principal that manages it (upstream's `clientID`,
/// `tenantID`, ... key-values of the cluster's GitOps reference).
#[derive(Clone, PartialEq, Eq)]
pub struct ArcSettings {
    pub client_id: String,
    pub tenant_id: String,
    pub client_secret: String,
    pub subscription_id: String,
    pub arc_cluster: String,
    pub arc_resource_group: String,
    pub timeout_s: u64,
    pub sync_interval_s: u64,
    pub retry_interval_s: u64,
}

impl fmt::Debug for ArcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArcSettings")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("client_secret", &"<redacted>")
            .field("subscription_id", &self.subscription_id)
            .field("arc_cluster", &self.arc_cluster)
            .field("arc_resource_group", &self.arc_resource_group)
            .field("timeout_s", &self.timeout_s)
            .field("sync_interval_s", &self.sync_interval_s)
            .field("retry_interval_s", &self.retry_interval_s)
            .finish()
    }
}

impl ArcSettings {
    /// Reads upstream's keys: `clientID`, `tenantID`, `clientSecret`, `subscriptionID`,
    /// `arcCluster`, `arcResourceGroup` (required, non-empty) and `timeOut`, `syncInterval`,
    /// `retryInterval` (seconds, 60 when absent or empty). The first occurrence of a key counts.
    pub fn from_kv(kv: &[(String, String)]) -> Result<Self, ArcError> {
        let get = |key: &str| kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let required = |key: &str| match get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v.to_owned()),
            _ => Err(ArcError::Config(format!("missing required key {key}"))),
        };
        let seconds = |key: &str| match get(key).map(str::trim) {
            None | Some("") => Ok(DEFAULT_INTERVAL_S),
            Some(v) => v.parse::<u64>().map_err(|_| {
                ArcError::Config(format!("key {key}: {v:?} is not a number of seconds"))
            }),
        };
        Ok(Self {
            client_id: required("clientID")?,
            tenant_id: required("tenantID")?,
            client_secret: required("clientSecret")?,
            subscription_id: required("subscriptionID")?,
            arc_cluster: required("arcCluster")?,
            arc_resource_group: required("arcResourceGroup")?,
            timeout_s: seconds("timeOut")?,
            sync_interval_s: seconds("syncInterval")?,
            retry_interval_s: seconds("retryInterval")?,
        })
    }
}

/// Where the login and Resource Manager services are; [`Default`] is the Azure public cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArcEndpoints {
    pub login: String,
    pub management: String,
    /// A CA (PEM) trusted besides the system's roots: a private cloud's (Azure Stack Hub) or a
    /// stand-in's.
    pub ca_pem: Option<String>,
}

impl Default for ArcEndpoints {
    fn default() -> Self {
        Self {
            login: PUBLIC_LOGIN.to_owned(),
            management: PUBLIC_MANAGEMENT.to_owned(),
            ca_pem: None,
        }
    }
}

/// A Flux configuration's scope: the whole cluster, or one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FluxScope {
    Cluster,
    Namespace,
}

impl FluxScope {
    /// The value of the configuration's `scope` property.
    pub fn as_str(self) -> &'static str {
        match self {
            FluxScope::Cluster => "cluster",
            FluxScope::Namespace => "namespace",
        }
    }
}

/// One Flux configuration: which Git branch and folder a cluster reconciles.
#[derive(Clone, PartialEq, Eq)]
pub struct FluxConfiguration {
    pub name: String,
    pub scope: FluxScope,
    pub namespace: String,
    pub url: String,
    pub branch: String,
    pub path: String,
    /// Git user for HTTPS basic authentication (`gitRepository.httpsUser`).
    pub https_user: Option<String>,
    /// Git password or token, sent base64-encoded as the protected setting `httpsKey`.
    pub https_key: Option<String>,
}

impl fmt::Debug for FluxConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FluxConfiguration")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("namespace", &self.namespace)
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("path", &self.path)
            .field("https_user", &self.https_user)
            .field("https_key", &self.https_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl FluxConfiguration {
    /// Upstream's configuration of deployment context `cid` on cluster `provider+cluster`:
    /// named `config-{cid}` with cluster scope in an admin logical cloud (level `"0"`), else
    /// named after the cloud's namespace with namespace scope; installed in namespace
    /// `config-{cid}`, reconciling `./clusters/{provider}+{cluster}/context/{cid}`.
    pub fn for_context(
        cid: &str,
        provider: &str,
        cluster: &str,
        level: &str,
        cloud_namespace: &str,
        url: &str,
        branch: &str,
    ) -> Self {
        let namespace = format!("config-{cid}");
        let (name, scope) = if level == "0" {
            (namespace.clone(), FluxScope::Cluster)
        } else {
            (cloud_namespace.to_owned(), FluxScope::Namespace)
        };
        Self {
            name,
            scope,
            namespace,
            url: url.to_owned(),
            branch: branch.to_owned(),
            path: format!("./clusters/{provider}+{cluster}/context/{cid}"),
            https_user: None,
            https_key: None,
        }
    }
}

/// The body of the `fluxConfigurations` PUT (2022-03-01): a Git repository source and one
/// kustomization of `config.path` timed by `settings`; credentials, when known, as
/// `gitRepository.httpsUser` and the protected setting `httpsKey` (base64, as Azure expects).
pub fn flux_configuration_body(config: &FluxConfiguration, settings: &ArcSettings) -> Value {
    let mut git = json!({
        "url": config.url,
        "repositoryRef": {"branch": config.branch},
    });
    if let (Some(user), Some(map)) = (&config.https_user, git.as_object_mut()) {
        map.insert("httpsUser".to_owned(), Value::from(user.as_str()));
    }
    let mut properties = json!({
        "scope": config.scope.as_str(),
        "namespace": config.namespace,
        "sourceKind": "GitRepository",
        "suspend": false,
        "gitRepository": git,
        "kustomizations": {
            "kustomization-1": {
                "path": config.path,
                "timeoutInSeconds": settings.timeout_s,
                "syncIntervalInSeconds": settings.sync_interval_s,
                "retryIntervalInSeconds": settings.retry_interval_s,
                "prune": true,
                "force": false,
            }
        },
    });
    if let (Some(key), Some(map)) = (&config.https_key, properties.as_object_mut()) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        map.insert(
            "configurationProtectedSettings".to_owned(),
            json!({"httpsKey": encoded}),
        );
    }
    json!({"properties": properties})
}

/// The body of the `extensions/flux` PUT: Azure's documented `identity` (upstream sent an
/// undocumented top-level `aksIdentityType`).
fn flux_extension_body() -> Value {
    json!({
        "identity": {"type": "SystemAssigned"},
        "properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": true},
    })
}

/// What went wrong talking to Azure.
#[derive(Debug, thiserror::Error)]
pub enum ArcError {
    /// Bad or missing settings or endpoints.
    #[error("azure arc settings: {0}")]
    Config(String),
    /// Azure answered an HTTP error status; `code` and `message` come from its error body.
    #[error("{operation}: HTTP {status}{}", detail(.code, .message))]
    Status {
        operation: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or broken, or the request timed out.
    #[error("{operation}: {detail}")]
    Transport { operation: String, detail: String },
    /// A success status with a body that is not what Azure documents.
    #[error("{operation}: unexpected answer: {detail}")]
    Answer { operation: String, detail: String },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("{operation}: operation {status}{}", detail(.code, .message))]
    OperationFailed {
        operation: String,
        status: String,
        code: Option<String>,
        message: Option<String>,
    },
    /// A long-running operation still had not ended after the configured polls.
    #[error("{operation}: operation still {status} after {polls} polls")]
    OperationPending {
        operation: String,
        status: String,
        polls: u32,
    },
}

fn detail(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!(" ({code}: {message})"),
        (Some(one), None) | (None, Some(one)) => format!(" ({one})"),
        (None, None) => String::new(),
    }
}

impl ArcError {
    /// Whether trying again later may succeed: throttling (429), timeouts (408), server
    /// faults (5xx), transport failures and operations still running. Refusals (401, 403,
    /// other 4xx), bad settings and failed operations are not.
    pub fn retryable(&self) -> bool {
        match self {
            ArcError::Status { status, .. } => matches!(*status, 408 | 429) || *status >= 500,
            ArcError::Transport { .. } | ArcError::OperationPending { .. } => true,
            ArcError::Config(_) | ArcError::Answer { .. } | ArcError::OperationFailed { .. } => {
                false
            }
        }
    }

    /// How long Azure asked to wait (its `Retry-After` seconds), when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArcError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `code` and `message` of an Azure error body: Resource Manager's
/// `{"error":{"code","message"}}`, or the login service's `{"error","error_description"}`;
/// a body that is not JSON becomes the message (shortened).
fn azure_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error") {
            Some(Value::Object(e)) => (text(e.get("code")), text(e.get("message"))),
            Some(Value::String(code)) => (Some(code.clone()), text(v.get("error_description"))),
            _ => (None, None),
        },
        Err(_) => {
            let body = String::from_utf8_lossy(body);
            let body = body.trim();
            let short: String = body.chars().take(200).collect();
            (None, (!short.is_empty()).then_some(short))
        }
    }
}

/// `Retry-After` in seconds (Azure's form; an HTTP date is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A token's remaining lifetime from `expires_in` (seconds) or else `expires_on` (Unix
/// seconds); Azure sends either as a number or a string.
fn token_lifetime(answer: &Value, now_unix: u64) -> Option<Duration> {
    let number = |key: &str| {
        answer.get(key).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
    };
    if let Some(seconds) = number("expires_in") {
        return Some(Duration::from_secs(seconds));
    }
    number("expires_on").map(|on| Duration::from_secs(on.saturating_sub(now_unix)))
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// What came back from one request.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self, operation: &str) -> ArcError {
        let (code, message) = azure_error(&self.body);
        ArcError::Status {
            operation: operation.to_owned(),
            status: self.status.as_u16(),
            code,
            message,
            retry_after: retry_after(&self.headers),
        }
    }

    fn json(&self, operation: &str) -> Result<Value, ArcError> {
        serde_json::from_slice(&self.body).map_err(|e| ArcError::Answer {
            operation: operation.to_owned(),
            detail: format!("body is not JSON: {e}"),
        })
    }

    fn async_operation(&self) -> Option<String> {
        let value = self.headers.get("azure-asyncoperation")?.to_str().ok()?;
        Some(value.to_owned())
    }
}

/// A client of one Arc cluster's flux extension and Flux configurations.
pub struct ArcClient {
    http: reqwest::Client,
    settings: ArcSettings,
    endpoints: ArcEndpoints,
    token: Mutex<Option<CachedToken>>,
    poll_interval: Duration,
    poll_attempts: u32,
}

impl ArcClient {
    /// A client whose every request gives up after `request_timeout`; long-running
    /// operations are polled every 5 s, at most 60 times (see [`ArcClient::with_polling`]).
    pub fn new(
        settings: ArcSettings,
        endpoints: ArcEndpoints,
        request_timeout: Duration,
    ) -> Result<Self, ArcError> {
        for base in [&endpoints.login, &endpoints.management] {
            parse_url(base)?;
        }
        let mut builder = reqwest::Client::builder().timeout(request_timeout);
        if let Some(pem) = &endpoints.ca_pem {
            let not_pem = |why: String| {
                ArcError::Config(format!("the extra CA is not a PEM certificate: {why}"))
            };
            let cas = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| not_pem(e.to_string()))?;
            if cas.is_empty() {
                return Err(not_pem("no CERTIFICATE block".into()));
            }
            for ca in cas {
                builder = builder.add_root_certificate(ca);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ArcError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            settings,
            endpoints,
            token: Mutex::new(None),
            poll_interval: Duration::from_secs(5),
            poll_attempts: 60,
        })
    }

    /// Polls long-running operations every `interval`, at most `attempts` times.
    pub fn with_polling(mut self, interval: Duration, attempts: u32) -> Self {
        self.poll_interval = interval;
        self.poll_attempts = attempts;
        self
    }

    /// Ensures the cluster's `flux` extension, then creates or updates `config`; each
    /// long-running PUT is followed to its end.
    pub async fn apply(&self, config: &FluxConfiguration) -> Result<(), ArcError> {
        let token = self.token().await?;
        let extension = self.resource_url(&["extensions", "flux"], EXTENSION_API_VERSION)?;
        self.put(
            &token,
            "PUT extensions/flux",
            extension,
            &flux_extension_body(),
        )
        .await?;
        let url = self.resource_url(&["fluxConfigurations", &config.name], FLUX_API_VERSION)?;
        let body = flux_configuration_body(config, &self.settings);
        let operation = format!("PUT fluxConfigurations/{}", config.name);
        self.put(&token, &operation, url, &body).await
    }

    /// Deletes Flux configuration `name`; one already gone is no error.
    pub async fn delete(&self, name: &str) -> Result<(), ArcError> {
        let operation = format!("DELETE fluxConfigurations/{name}");
        let token = self.token().await?;
        let url = self.resource_url(&["fluxConfigurations", name], FLUX_API_VERSION)?;
        let answer = self
            .call(&operation, self.http.delete(url).bearer_auth(&token))
            .await?;
        match answer.status.as_u16() {
            200 | 204 | 404 => Ok(()),
            202 => match answer.async_operation() {
                Some(status_url) => self.poll(&token, &operation, &status_url).await,
                None => Ok(()),
            },
            _ => Err(self.refused(&operation, &answer).await),
        }
    }

    async fn put(
        &self,
        token: &str,
        operation: &str,
        url: Url,
        body: &Value,
    ) -> Result<(), ArcError> {
        let request = self
            .http
            .put(url)
            .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
            .bearer_auth(token)
            .body(body.to_string());
        let answer = self.call(operation, request).await?;
        match answer.status.as_u16() {
            200 => Ok(()),
            201 | 202 => match answer.async_operation() {
                Some(status_url) => self.poll(token, operation, &status_url).await,
                None => Ok(()),
            },
            _ => Err(self.refused(operation, &answer).await),
        }
    }

    /// Follows an `Azure-AsyncOperation` URL until its `status` is terminal.
    async fn poll(&self, token: &str, operation: &str, status_url: &str) -> Result<(), ArcError> {
        let url = parse_url(status_url)?;
        let mut last = String::from("unknown");
        for _ in 0..self.poll_attempts {
            tokio::time::sleep(self.poll_interval).await;
            let answer = self
                .call(operation, self.http.get(url.clone()).bearer_auth(token))
                .await?;
            if !answer.status.is_success() {
                return Err(self.refused(operation, &answer).await);
            }
            let v = answer.json(operation)?;
            let Some(status) = v.get("status").and_then(Value::as_str) else {
                return Err(ArcError::Answer {
                    operation: operation.to_owned(),
                    detail: "operation status without `status`".to_owned(),
                });
            };
            match status.to_ascii_lowercase().as_str() {
                "succeeded" => return Ok(()),
                "failed" | "canceled" | "cancelled" => {
                    let (code, message) = azure_error(&answer.body);
                    return Err(ArcError::OperationFailed {
                        operation: operation.to_owned(),
                        status: status.to_owned(),
                        code,
                        message,
                    });
                }
                _ => last = status.to_owned(),
            }
        }
        Err(ArcError::OperationPending {
            operation: operation.to_owned(),
            status: last,
            polls: self.poll_attempts,
        })
    }

    /// The error of an answer with a failure status; a 401 also drops the cached token.
    async fn refused(&self, operation: &str, answer: &Answer) -> ArcError {
        if answer.status == StatusCode::UNAUTHORIZED {
            *self.token.lock().await = None;
        }
        answer.error(operation)
    }

    /// A management token, from the cache while it has more than a few minutes left.
    async fn token(&self) -> Result<String, ArcError> {
        const OPERATION: &str = "token request";
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let mut url = parse_url(&self.endpoints.login)?;
        push_segments(&mut url, &[&self.settings.tenant_id, "oauth2", "token"])?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
            ("resource", MANAGEMENT_RESOURCE),
            ("client_secret", self.settings.client_secret.as_str()),
        ];
        let answer = self
            .call(OPERATION, self.http.post(url).form(&form))
            .await?;
        if !answer.status.is_success() {
            return Err(answer.error(OPERATION));
        }
        let v = answer.json(OPERATION)?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ArcError::Answer {
                operation: OPERATION.to_owned(),
                detail: "no access_token".to_owned(),
            })?
            .to_owned();
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *cached = token_lifetime(&v, now_unix)
            .and_then(|life| life.checked_sub(TOKEN_REFRESH_MARGIN))
            .filter(|left| !left.is_zero())
            .map(|left| CachedToken {
                value: token.clone(),
                renew_at: Instant::now() + left,
            });
        Ok(token)
    }

    /// `{management}/subscriptions/…/connectedClusters/{arc}/providers/
    /// Microsoft.KubernetesConfiguration/{tail}?api-version={version}`.
    fn resource_url(&self, tail: &[&str], api_version: &str) -> Result<Url, ArcError> {
        let s = &self.settings;
        let mut url = parse_url(&self.endpoints.management)?;
        let mut segments = vec![
            "subscriptions",
            s.subscription_id.as_str(),
            "resourceGroups",
            s.arc_resource_group.as_str(),
            "providers",
            "Microsoft.Kubernetes",
            "connectedClusters",
            s.arc_cluster.as_str(),
            "providers",
            "Microsoft.KubernetesConfiguration",
        ];
        segments.extend_from_slice(tail);
        push_segments(&mut url, &segments)?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    async fn call(
        &self,
        operation: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ArcError> {
        let response = request.send().await.map_err(|e| transport(operation, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(operation, &e))?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// An endpoint or operation URL this client can reach (https, or http for a local stand-in).
fn parse_url(text: &str) -> Result<Url, ArcError> {
    let url = Url::parse(text).map_err(|e| ArcError::Config(format!("URL {text:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(ArcError::Config(format!(
            "URL {text:?}: unsupported scheme {other}"
        ))),
    }
}

/// Appends percent-encoded path segments to a base URL (keeping any path it has).
fn push_segments(url: &mut Url, segments: &[&str]) -> Result<(), ArcError> {
    let text = url.to_string();
    let mut path = url
        .path_segments_mut()
        .map_err(|()| ArcError::Config(format!("URL {text:?} cannot have a path")))?;
    path.pop_if_empty().extend(segments);
    Ok(())
}

fn transport(operation: &str, err: &reqwest::Error) -> ArcError {
    let mut detail = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    ArcError::Transport {
        operation: operation.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn required() -> Vec<(String, String)> {
        kv(&[
            ("clientID", "cid"),
            ("tenantID", "tid"),
            ("clientSecret", "secret"),
            ("subscriptionID", "sub"),
            ("arcCluster", "arc1"),
            ("arcResourceGroup", "rg1"),
        ])
    }

    fn settings() -> ArcSettings {
        ArcSettings::from_kv(&required()).expect("settings")
    }

    #[test]
    fn settings_read_upstream_keys_with_default_intervals() {
        let s = settings();
        assert_eq!(
            (
                s.client_id.as_str(),
                s.tenant_id.as_str(),
                s.client_secret.as_str()
            ),
            ("cid", "tid", "secret")
        );
        assert_eq!(
            (
                s.subscription_id.as_str(),
                s.arc_cluster.as_str(),
                s.arc_resource_group.as_str()
            ),
            ("sub", "arc1", "rg1")
        );
        assert_eq!(
            (s.timeout_s, s.sync_interval_s, s.retry_interval_s),
            (60, 60, 60)
        );
        assert!(!format!("{s:?}").contains("secret\""));

        let mut given = required();
        given.extend(kv(&[
            ("timeOut", "30"),
            ("syncInterval", " 120 "),
            ("retryInterval", ""),
        ]));
        let s = ArcSettings::from_kv(&given).expect("settings");
        assert_eq!(
            (s.timeout_s, s.sync_interval_s, s.retry_interval_s),
            (30, 120, 60)
        );
    }

    #[test]
    fn settings_name_the_missing_or_bad_key() {
        for key in [
            "clientID",
            "tenantID",
            "clientSecret",
            "subscriptionID",
            "arcCluster",
            "arcResourceGroup",
        ] {
            let without: Vec<_> = required().into_iter().filter(|(k, _)| k != key).collect();
            let err = ArcSettings::from_kv(&without).expect_err("missing key");
            assert!(err.to_string().contains(key), "{err}");
            assert!(!err.retryable());
            let mut empty = without.clone();
            empty.push((key.to_owned(), " ".to_owned()));
            let err = ArcSettings::from_kv(&empty).expect_err("empty key");
            assert!(err.to_string().contains(key), "{err}");
        }
        let mut bad = required();
        bad.push(("syncInterval".to_owned(), "1m".to_owned()));
        let err = ArcSettings::from_kv(&bad).expect_err("bad number");
        assert!(err.to_string().contains("syncInterval"), "{err}");
    }

    #[test]
    fn admin_cloud_configuration_body_is_upstreams() {
        let config = FluxConfiguration::for_context(
            "123",
            "prov",
            "c1",
            "0",
            "ignored",
            "https://git.example/r.git",
            "main",
        );
        assert_eq!(config.name, "config-123");
        assert_eq!(config.scope, FluxScope::Cluster);
        assert_eq!(
            flux_configuration_body(&config, &settings()),
            json!({"properties": {
                "scope": "cluster", "namespace": "config-123", "sourceKind": "GitRepository",
                "suspend": false,
                "gitRepository": {"url": "https://git.example/r.git", "repositoryRef": {"branch": "main"}},
                "kustomizations": {"kustomization-1": {
                    "path": "./clusters/prov+c1/context/123", "timeoutInSeconds": 60,
                    "syncIntervalInSeconds": 60, "retryIntervalInSeconds": 60,
                    "prune": true, "force": false}},
            }})
        );
    }

    #[test]
    fn credentials_go_where_azure_documents_them() {
        let mut config = FluxConfiguration::for_context("7", "p", "c", "1", "ns1", "u", "b");
        assert_eq!(config.name, "ns1");
        assert_eq!(config.scope, FluxScope::Namespace);
        config.https_user = Some("git".to_owned());
        config.https_key = Some("tok:en".to_owned());
        assert!(!format!("{config:?}").contains("tok:en"));
        let mut s = settings();
        s.timeout_s = 5;
        let body = flux_configuration_body(&config, &s);
        assert_eq!(
            body,
            json!({"properties": {
                "scope": "namespace", "namespace": "config-7", "sourceKind": "GitRepository",
                "suspend": false,
                "gitRepository": {"url": "u", "repositoryRef": {"branch": "b"}, "httpsUser": "git"},
                "kustomizations": {"kustomization-1": {
                    "path": "./clusters/p+c/context/7", "timeoutInSeconds": 5,
                    "syncIntervalInSeconds": 60, "retryIntervalInSeconds": 60,
                    "prune": true, "force": false}},
                "configurationProtectedSettings": {"httpsKey": "dG9rOmVu"},
            }})
        );
    }

    #[test]
    fn extension_body_uses_the_documented_identity() {
        assert_eq!(
            flux_extension_body(),
            json!({"identity": {"type": "SystemAssigned"},
                "properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": true}})
        );
    }

    #[test]
    fn azure_error_bodies_of_both_services_and_plain_text() {
        assert_eq!(
            azure_error(br#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#),
            (
                Some("AuthorizationFailed".to_owned()),
                Some("no".to_owned())
            )
        );
        assert_eq!(
            azure_error(br#"{"error":"invalid_client","error_description":"AADSTS7000215"}"#),
            (
                Some("invalid_client".to_owned()),
                Some("AADSTS7000215".to_owned())
            )
        );
        assert_eq!(
            azure_error(b"  bad gateway \n"),
            (None, Some("bad gateway".to_owned()))
        );
        assert_eq!(azure_error(b""), (None, None));
        assert_eq!(azure_error(b"{}"), (None, None));
    }

    #[test]
    fn statuses_are_classified() {
        let status = |status: u16, retry_after: Option<Duration>| ArcError::Status {
            operation: "op".to_owned(),
            status,
            code: Some("Code".to_owned()),
            message: None,
            retry_after,
        };
        for s in [400, 401, 403, 404, 409] {
            assert!(!status(s, None).retryable(), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s, None).retryable(), "{s}");
        }
        let wait = Some(Duration::from_secs(9));
        assert_eq!(status(429, wait).retry_after(), wait);
        assert_eq!(status(401, None).to_string(), "op: HTTP 401 (Code)");
        let transport = ArcError::Transport {
            operation: "op".to_owned(),
            detail: "timed out".to_owned(),
        };
        assert!(transport.retryable());
        assert_eq!(transport.retry_after(), None);
    }

    #[test]
    fn retry_after_is_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("17"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(17)));
        headers.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn token_lifetime_from_either_field() {
        let now = 1_000_000;
        assert_eq!(
            token_lifetime(&json!({"expires_in": "3599", "expires_on": "1"}), now),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(
            token_lifetime(&json!({"expires_in": 100}), now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            token_lifetime(&json!({"expires_on": "1003600"}), now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            token_lifetime(&json!({"expires_on": 5}), now),
            Some(Duration::ZERO)
        );
        assert_eq!(token_lifetime(&json!({}), now), None);
    }

    #[test]
    fn endpoints_are_checked_and_resource_urls_encoded() {
        // Azure's public cloud (https, the system's roots) is the default.
        ArcClient::new(settings(), ArcEndpoints::default(), Duration::from_secs(5))
            .expect("https endpoints");
        let ftp = ArcEndpoints {
            login: "ftp://127.0.0.1:1".to_owned(),
            ..ArcEndpoints::default()
        };
        let err = ArcClient::new(settings(), ftp, Duration::from_secs(5))
            .err()
            .expect("ftp refused");
        assert!(err.to_string().contains("unsupported scheme ftp"), "{err}");
        assert!(!err.retryable());
        let bad_ca = ArcEndpoints {
            ca_pem: Some("not a certificate".to_owned()),
            ..ArcEndpoints::default()
        };
        let err = ArcClient::new(settings(), bad_ca, Duration::from_secs(5))
            .err()
            .expect("bad CA refused");
        assert!(err.to_string().contains("extra CA"), "{err}");
        let local = ArcEndpoints {
            login: "http://127.0.0.1:1".to_owned(),
            management: "http://127.0.0.1:1/prefix/".to_owned(),
            ca_pem: None,
        };
        let client = ArcClient::new(settings(), local, Duration::from_secs(5)).expect("client");
        let url = client
            .resource_url(&["fluxConfigurations", "a b"], FLUX_API_VERSION)
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/prefix/subscriptions/sub/resourceGroups/rg1/providers/\
             Microsoft.Kubernetes/connectedClusters/arc1/providers/\
             Microsoft.KubernetesConfiguration/fluxConfigurations/a%20b?api-version=2022-03-01"
        );
    }
}
