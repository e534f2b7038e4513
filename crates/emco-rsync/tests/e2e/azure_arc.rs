//! The Azure Arc GitOps client against a local stand-in of Azure's login and Resource Manager
//! services: the stand-in checks each request (method, path, api-version, headers, exact form
//! or JSON body), records it, and answers as Azure does, including long-running operations,
//! refusals, throttling and a configuration already gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use emco_rsync::gitops::azure::{
    ArcClient, ArcEndpoints, ArcError, ArcSettings, FluxConfiguration, FluxScope,
};
use serde_json::{Value, json};

const TENANT: &str = "tenant-1";
const CLUSTER_PATH: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/\
    Microsoft.Kubernetes/connectedClusters/arc-1/providers/Microsoft.KubernetesConfiguration";
/// The client secret has characters the form encoding must escape.
const SECRET: &str = "s3cr+t/=&";
const TOKEN_FORM: &str = "grant_type=client_credentials&client_id=app-1\
    &resource=https%3A%2F%2Fmanagement.core.windows.net%2F&client_secret=s3cr%2Bt%2F%3D%26";

/// How the stand-in answers a request: status, extra headers, JSON body.
type Canned = (u16, Vec<(&'static str, String)>, Value);

#[derive(Default)]
struct Azure {
    /// Requests seen: "METHOD path?query".
    seen: Vec<String>,
    /// What was wrong with requests; a test ends by asserting there is nothing.
    problems: Vec<String>,
    tokens_issued: u32,
    /// `expires_in` of issued tokens; an hour when unset.
    token_seconds: Option<&'static str>,
    /// The body each PUT path must carry.
    expected_bodies: HashMap<String, Value>,
    /// Answers by "METHOD path", used in order; without one a PUT answers 200 and a DELETE 404.
    answers: HashMap<String, VecDeque<Canned>>,
}

type Shared = Arc<Mutex<Azure>>;

async fn azure(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut az = state.lock().unwrap();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    az.seen.push(format!("{method} {path}?{query}"));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };

    if path == format!("/{TENANT}/oauth2/token") {
        if method != Method::POST {
            az.problems.push(format!("token request with {method}"));
        }
        if header("content-type") != "application/x-www-form-urlencoded" {
            az.problems
                .push(format!("token content-type {:?}", header("content-type")));
        }
        if body.as_ref() != TOKEN_FORM.as_bytes() {
            az.problems
                .push(format!("token form {:?}", String::from_utf8_lossy(&body)));
        }
        if let Some((status, _, answer)) = next_answer(&mut az, "POST", &path) {
            return reply(status, vec![], answer);
        }
        az.tokens_issued += 1;
        let token = format!("token-{}", az.tokens_issued);
        let seconds = az.token_seconds.unwrap_or("3599");
        return reply(
            200,
            vec![],
            json!({"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds,
                "resource": "https://management.core.windows.net/", "access_token": token}),
        );
    }

    let bearer = format!("Bearer token-{}", az.tokens_issued);
    if az.tokens_issued == 0 || header("authorization") != bearer {
        az.problems.push(format!(
            "{method} {path}: authorization {:?}, issued {bearer:?}",
            header("authorization")
        ));
    }

    if let Some(operation) = path.strip_prefix("/operations/") {
        if method != Method::GET {
            az.problems.push(format!("operation status with {method}"));
        }
        let key = format!("GET /operations/{operation}");
        return match az.answers.get_mut(&key).and_then(VecDeque::pop_front) {
            Some((status, extra, answer)) => reply(status, extra, answer),
            None => {
                az.problems.push(format!("unexpected poll {key}"));
                reply(404, vec![], json!({}))
            }
        };
    }

    let Some(resource) = path.strip_prefix(CLUSTER_PATH) else {
        az.problems.push(format!("unknown path {path}"));
        return reply(404, vec![], json!({}));
    };
    let version = if resource.starts_with("/extensions/") {
        "2021-09-01"
    } else {
        "2022-03-01"
    };
    if query != format!("api-version={version}") {
        az.problems
            .push(format!("{method} {path}: query {query:?}"));
    }
    if method == Method::PUT {
        if header("content-type") != "application/json; charset=UTF-8" {
            az.problems
                .push(format!("{path}: content-type {:?}", header("content-type")));
        }
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match az.expected_bodies.get(&path) {
            Some(expected) if *expected == sent => {}
            _ => az.problems.push(format!("{path}: body {sent}")),
        }
    }
    let m = method.as_str().to_owned();
    if let Some((status, extra, answer)) = next_answer(&mut az, &m, &path) {
        return reply(status, extra, answer);
    }
    match method {
        Method::PUT => reply(
            200,
            vec![],
            json!({"properties": {"provisioningState": "Succeeded"}}),
        ),
        Method::DELETE => reply(
            404,
            vec![],
            json!({"error": {"code": "ResourceNotFound", "message": "gone"}}),
        ),
        _ => {
            az.problems.push(format!("unexpected {method} {path}"));
            reply(405, vec![], json!({}))
        }
    }
}

fn next_answer(az: &mut Azure, method: &str, path: &str) -> Option<Canned> {
    az.answers
        .get_mut(&format!("{method} {path}"))
        .and_then(VecDeque::pop_front)
}

fn reply(status: u16, extra: Vec<(&'static str, String)>, body: Value) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

struct StandIn {
    state: Shared,
    base: String,
    /// The CA of its certificate, when it serves HTTPS.
    ca_pem: Option<String>,
}

impl StandIn {
    async fn start() -> Self {
        let state = Shared::default();
        let app = Router::new().fallback(azure).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            state,
            base,
            ca_pem: None,
        }
    }

    /// Serves HTTPS with a certificate from a throw-away CA (as Azure serves, with its own).
    async fn start_tls() -> Self {
        let state = Shared::default();
        let app = Router::new().fallback(azure).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let ca = emco_sim::csr::ClusterCa::new("azure-stand-in").unwrap();
        let config = emco_sim::tls::server_config(&ca, address).unwrap();
        let tls = emco_sim::tls::TlsConnectionListener::new(listener, config).unwrap();
        tokio::spawn(async move { axum::serve(tls, app).await.unwrap() });
        Self {
            state,
            base: format!("https://{address}"),
            ca_pem: Some(ca.certificate_pem().to_owned()),
        }
    }

    fn client(&self) -> ArcClient {
        self.client_trusting(self.ca_pem.clone())
    }

    fn client_trusting(&self, ca_pem: Option<String>) -> ArcClient {
        let endpoints = ArcEndpoints {
            login: self.base.clone(),
            management: format!("{}/", self.base),
            ca_pem,
        };
        ArcClient::new(settings(), endpoints, Duration::from_secs(5))
            .unwrap()
            .with_polling(Duration::from_millis(10), 5)
    }

    fn expect_body(&self, path: String, body: Value) {
        self.state
            .lock()
            .unwrap()
            .expected_bodies
            .insert(path, body);
    }

    fn answer(&self, key: String, answers: Vec<Canned>) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(key, answers.into());
    }

    fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }

    fn tokens_issued(&self) -> u32 {
        self.state.lock().unwrap().tokens_issued
    }

    fn assert_no_problems(&self) {
        let problems = self.state.lock().unwrap().problems.clone();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

fn settings() -> ArcSettings {
    let kv: Vec<(String, String)> = [
        ("clientID", "app-1"),
        ("tenantID", TENANT),
        ("clientSecret", SECRET),
        ("subscriptionID", "sub-1"),
        ("arcCluster", "arc-1"),
        ("arcResourceGroup", "rg-1"),
        ("syncInterval", "30"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    ArcSettings::from_kv(&kv).unwrap()
}

fn extension_path() -> String {
    format!("{CLUSTER_PATH}/extensions/flux")
}

fn flux_path(name: &str) -> String {
    format!("{CLUSTER_PATH}/fluxConfigurations/{name}")
}

fn admin_config() -> FluxConfiguration {
    FluxConfiguration::for_context(
        "42",
        "prov",
        "edge1",
        "0",
        "unused",
        "https://git.example/emco.git",
        "main",
    )
}

/// The stand-in expects the extension body and `admin_config`'s body, as Azure documents them.
fn expect_admin_bodies(azure: &StandIn) {
    azure.expect_body(
        extension_path(),
        json!({"identity": {"type": "SystemAssigned"},
            "properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": true}}),
    );
    azure.expect_body(
        flux_path("config-42"),
        json!({"properties": {
            "scope": "cluster", "namespace": "config-42", "sourceKind": "GitRepository",
            "suspend": false,
            "gitRepository": {"url": "https://git.example/emco.git",
                "repositoryRef": {"branch": "main"}},
            "kustomizations": {"kustomization-1": {
                "path": "./clusters/prov+edge1/context/42", "timeoutInSeconds": 60,
                "syncIntervalInSeconds": 30, "retryIntervalInSeconds": 60,
                "prune": true, "force": false}},
        }}),
    );
}

fn put(path: &str, version: &str) -> String {
    format!("PUT {path}?api-version={version}")
}

#[tokio::test]
async fn apply_gets_a_token_ensures_flux_and_puts_the_configuration_once_per_token() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    let client = azure.client();

    client.apply(&admin_config()).await.unwrap();
    client.apply(&admin_config()).await.unwrap();

    let token = format!("POST /{TENANT}/oauth2/token?");
    let extension = put(&extension_path(), "2021-09-01");
    let flux = put(&flux_path("config-42"), "2022-03-01");
    assert_eq!(
        azure.seen(),
        vec![token, extension.clone(), flux.clone(), extension, flux]
    );
    assert_eq!(
        azure.tokens_issued(),
        1,
        "the second apply reuses the token"
    );
    azure.assert_no_problems();
}

#[tokio::test]
async fn azure_over_https_is_reached_when_its_ca_is_trusted() {
    let azure = StandIn::start_tls().await;
    expect_admin_bodies(&azure);
    azure.client().apply(&admin_config()).await.unwrap();
    assert_eq!(azure.tokens_issued(), 1);
    azure.assert_no_problems();
    // Trusting only the system's roots, the stand-in's certificate is refused: nothing is sent.
    let error = azure
        .client_trusting(None)
        .apply(&admin_config())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    assert_eq!(azure.tokens_issued(), 1);
}

#[tokio::test]
async fn token_about_to_expire_is_renewed() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    azure.state.lock().unwrap().token_seconds = Some("120");
    let client = azure.client();

    client.apply(&admin_config()).await.unwrap();
    client.apply(&admin_config()).await.unwrap();

    assert_eq!(
        azure.tokens_issued(),
        2,
        "a token with two minutes left is not reused"
    );
    assert_eq!(azure.seen().len(), 6);
    azure.assert_no_problems();
}

#[tokio::test]
async fn namespace_scoped_configuration_carries_git_credentials() {
    let azure = StandIn::start().await;
    let mut config = FluxConfiguration::for_context(
        "43",
        "prov",
        "edge1",
        "1",
        "cloud-ns",
        "https://git.example/emco.git",
        "dev",
    );
    assert_eq!(
        (config.name.as_str(), config.scope),
        ("cloud-ns", FluxScope::Namespace)
    );
    config.https_user = Some("emco".to_owned());
    config.https_key = Some("ghp_token".to_owned());
    azure.expect_body(
        extension_path(),
        json!({"identity": {"type": "SystemAssigned"},
            "properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": true}}),
    );
    azure.expect_body(
        flux_path("cloud-ns"),
        json!({"properties": {
            "scope": "namespace", "namespace": "config-43", "sourceKind": "GitRepository",
            "suspend": false,
            "gitRepository": {"url": "https://git.example/emco.git",
                "repositoryRef": {"branch": "dev"}, "httpsUser": "emco"},
            "kustomizations": {"kustomization-1": {
                "path": "./clusters/prov+edge1/context/43", "timeoutInSeconds": 60,
                "syncIntervalInSeconds": 30, "retryIntervalInSeconds": 60,
                "prune": true, "force": false}},
            "configurationProtectedSettings": {"httpsKey": "Z2hwX3Rva2Vu"},
        }}),
    );

    azure.client().apply(&config).await.unwrap();
    assert_eq!(azure.seen().len(), 3);
    azure.assert_no_problems();
}

#[tokio::test]
async fn created_configuration_is_polled_until_its_operation_succeeds() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    let status_url = format!("{}/operations/op-1?api-version=2022-03-01", azure.base);
    azure.answer(
        format!("PUT {}", flux_path("config-42")),
        vec![(
            201,
            vec![("Azure-AsyncOperation", status_url)],
            json!({"properties": {"provisioningState": "Creating"}}),
        )],
    );
    let running = json!({"name": "op-1", "status": "InProgress"});
    azure.answer(
        "GET /operations/op-1".to_owned(),
        vec![
            (200, vec![], running.clone()),
            (200, vec![], running),
            (200, vec![], json!({"name": "op-1", "status": "Succeeded"})),
        ],
    );

    azure.client().apply(&admin_config()).await.unwrap();

    let seen = azure.seen();
    let polls: Vec<_> = seen.iter().filter(|r| r.starts_with("GET ")).collect();
    assert_eq!(
        polls,
        vec!["GET /operations/op-1?api-version=2022-03-01"; 3]
    );
    assert_eq!(seen.len(), 6);
    azure.assert_no_problems();
}

#[tokio::test]
async fn failed_operation_reports_azures_reason_and_is_not_retried() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    let status_url = format!("{}/operations/op-2", azure.base);
    azure.answer(
        format!("PUT {}", extension_path()),
        vec![(201, vec![("Azure-AsyncOperation", status_url)], json!({}))],
    );
    azure.answer(
        "GET /operations/op-2".to_owned(),
        vec![(
            200,
            vec![],
            json!({"status": "Failed",
                "error": {"code": "ExtensionOperationFailed", "message": "helm install failed"}}),
        )],
    );

    let err = azure.client().apply(&admin_config()).await.unwrap_err();
    assert!(matches!(err, ArcError::OperationFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("ExtensionOperationFailed") && text.contains("helm install failed"),
        "{text}"
    );
    assert!(!err.retryable());
    assert_eq!(
        azure.seen().len(),
        3,
        "the configuration is not put after a failed extension"
    );
    azure.assert_no_problems();
}

#[tokio::test]
async fn operation_still_running_after_the_polls_is_retryable() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    let status_url = format!("{}/operations/op-3", azure.base);
    azure.answer(
        format!("PUT {}", flux_path("config-42")),
        vec![(202, vec![("Azure-AsyncOperation", status_url)], json!({}))],
    );
    azure.answer(
        "GET /operations/op-3".to_owned(),
        vec![(200, vec![], json!({"status": "Updating"})); 5],
    );

    let err = azure.client().apply(&admin_config()).await.unwrap_err();
    assert!(
        matches!(err, ArcError::OperationPending { polls: 5, .. }),
        "{err:?}"
    );
    assert!(err.retryable());
    azure.assert_no_problems();
}

#[tokio::test]
async fn unauthorized_names_azures_code_is_not_retryable_and_drops_the_token() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    azure.answer(
        format!("PUT {}", flux_path("config-42")),
        vec![(
            401,
            vec![],
            json!({"error": {"code": "InvalidAuthenticationToken",
                "message": "The access token is invalid."}}),
        )],
    );
    let client = azure.client();

    let err = client.apply(&admin_config()).await.unwrap_err();
    assert!(
        matches!(err, ArcError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("InvalidAuthenticationToken"),
        "{err}"
    );
    assert!(
        err.to_string().contains("The access token is invalid."),
        "{err}"
    );
    assert!(!err.retryable());
    assert_eq!(err.retry_after(), None);

    client.apply(&admin_config()).await.unwrap();
    assert_eq!(azure.tokens_issued(), 2, "a refused token is not reused");
    azure.assert_no_problems();
}

#[tokio::test]
async fn forbidden_and_bad_requests_are_not_retryable() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    azure.answer(
        format!("PUT {}", extension_path()),
        vec![
            (
                403,
                vec![],
                json!({"error": {"code": "AuthorizationFailed", "message": "denied"}}),
            ),
            (
                400,
                vec![],
                json!({"error": {"code": "InvalidRequestContent", "message": "bad"}}),
            ),
        ],
    );
    let client = azure.client();
    for code in ["AuthorizationFailed", "InvalidRequestContent"] {
        let err = client.apply(&admin_config()).await.unwrap_err();
        assert!(!err.retryable(), "{err}");
        assert!(err.to_string().contains(code), "{err}");
    }
    assert_eq!(azure.tokens_issued(), 1);
    azure.assert_no_problems();
}

#[tokio::test]
async fn unavailable_is_retryable_after_azures_delay() {
    let azure = StandIn::start().await;
    expect_admin_bodies(&azure);
    azure.answer(
        format!("PUT {}", flux_path("config-42")),
        vec![
            (
                503,
                vec![("Retry-After", "7".to_owned())],
                json!({"error": {"code": "ServiceUnavailable", "message": "busy"}}),
            ),
            (
                429,
                vec![("Retry-After", "3".to_owned())],
                json!({"error": {"code": "TooManyRequests", "message": "slow down"}}),
            ),
        ],
    );
    let client = azure.client();

    let err = client.apply(&admin_config()).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("ServiceUnavailable"), "{err}");
    let err = client.apply(&admin_config()).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    client.apply(&admin_config()).await.unwrap();
    azure.assert_no_problems();
}

#[tokio::test]
async fn refused_credentials_name_the_login_error() {
    let azure = StandIn::start().await;
    azure.answer(
        format!("POST /{TENANT}/oauth2/token"),
        vec![(
            401,
            vec![],
            json!({"error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided."}),
        )],
    );
    let err = azure.client().apply(&admin_config()).await.unwrap_err();
    assert!(!err.retryable());
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    assert_eq!(
        azure.seen().len(),
        1,
        "nothing is sent to Resource Manager without a token"
    );
    azure.assert_no_problems();
}

#[tokio::test]
async fn delete_accepts_a_missing_configuration_and_follows_a_running_one() {
    let azure = StandIn::start().await;
    let client = azure.client();

    client.delete("config-9").await.unwrap();

    let status_url = format!("{}/operations/op-4", azure.base);
    azure.answer(
        format!("DELETE {}", flux_path("config-8")),
        vec![(202, vec![("Azure-AsyncOperation", status_url)], Value::Null)],
    );
    azure.answer(
        "GET /operations/op-4".to_owned(),
        vec![(200, vec![], json!({"status": "Succeeded"}))],
    );
    client.delete("config-8").await.unwrap();

    azure.answer(
        format!("DELETE {}", flux_path("config-7")),
        vec![
            (204, vec![], Value::Null),
            (
                500,
                vec![],
                json!({"error": {"code": "InternalServerError", "message": "oops"}}),
            ),
        ],
    );
    client.delete("config-7").await.unwrap();
    let err = client.delete("config-7").await.unwrap_err();
    assert!(
        err.retryable() && err.to_string().contains("InternalServerError"),
        "{err}"
    );

    assert_eq!(
        azure.seen(),
        vec![
            format!("POST /{TENANT}/oauth2/token?"),
            format!("DELETE {}?api-version=2022-03-01", flux_path("config-9")),
            format!("DELETE {}?api-version=2022-03-01", flux_path("config-8")),
            "GET /operations/op-4?".to_owned(),
            format!("DELETE {}?api-version=2022-03-01", flux_path("config-7")),
            format!("DELETE {}?api-version=2022-03-01", flux_path("config-7")),
        ]
    );
    azure.assert_no_problems();
}

#[tokio::test]
async fn unreachable_azure_is_retryable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let endpoints = ArcEndpoints {
        login: base.clone(),
        management: base,
        ca_pem: None,
    };
    let client = ArcClient::new(settings(), endpoints, Duration::from_secs(2)).unwrap();
    let err = client.apply(&admin_config()).await.unwrap_err();
    assert!(matches!(err, ArcError::Transport { .. }), "{err:?}");
    assert!(err.retryable());
}
