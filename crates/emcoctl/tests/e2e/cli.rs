//! Black-box tests: the built `emcoctl` binary runs in a temp directory against small in-test HTTP servers (one
//! per EMCO service in the config) that record every request and answer scripted statuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------------------
// The recording fake EMCO.

#[derive(Debug, Clone)]
struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Recorded {
    service: String,
    method: String,
    /// Path and query.
    path: String,
    content_type: Option<String>,
    accept: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
    parts: Vec<Part>,
}

impl Recorded {
    fn line(&self) -> String {
        format!("{} {} {}", self.service, self.method, self.path)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn part(&self, name: &str) -> &Part {
        self.parts.iter().find(|p| p.name == name).unwrap()
    }
}

/// A scripted answer: the first rule matching method and path wins.
#[derive(Debug, Clone)]
struct Rule {
    method: &'static str,
    path: String,
    status: u16,
    body: String,
}

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Recorded>>,
    rules: Mutex<Vec<Rule>>,
}

struct FakeEmco {
    shared: Arc<Shared>,
    ports: BTreeMap<&'static str, u16>,
}

const SERVICES: &[&str] = &[
    "orchestrator",
    "clm",
    "ncm",
    "dcm",
    "ovnaction",
    "gac",
    "dtc",
];

impl FakeEmco {
    /// One listener per service, each on its own loopback port.
    async fn start() -> FakeEmco {
        let shared = Arc::new(Shared::default());
        let mut ports = BTreeMap::new();
        for service in SERVICES {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.insert(*service, listener.local_addr().unwrap().port());
            let app = Router::new()
                .fallback(handle)
                .with_state((shared.clone(), *service));
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
        }
        FakeEmco { shared, ports }
    }

    fn config_yaml(&self) -> String {
        self.ports
            .iter()
            .map(|(service, port)| format!("{service}:\n  host: 127.0.0.1\n  port: {port}\n"))
            .collect()
    }

    fn answer(&self, method: &'static str, path: &str, status: u16, body: &str) {
        self.shared.rules.lock().unwrap().push(Rule {
            method,
            path: path.to_string(),
            status,
            body: body.to_string(),
        });
    }

    fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.shared.records.lock().unwrap())
    }
}

async fn handle(
    State((shared, service)): State<(Arc<Shared>, &'static str)>,
    request: Request,
) -> Response {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let text = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = text(&headers, header::CONTENT_TYPE);
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap();
    let mut parts = Vec::new();
    if content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("multipart/form-data"))
    {
        let mut rebuilt = Request::new(Body::from(body.clone()));
        *rebuilt.headers_mut() = headers.clone();
        let mut multipart = Multipart::from_request(rebuilt, &()).await.unwrap();
        while let Some(field) = multipart.next_field().await.unwrap() {
            let name = field.name().unwrap_or_default().to_string();
            let filename = field.file_name().map(str::to_string);
            let data = field.bytes().await.unwrap().to_vec();
            parts.push(Part {
                name,
                filename,
                data,
            });
        }
    }
    let recorded = Recorded {
        service: service.to_string(),
        method: method.clone(),
        path: path.clone(),
        content_type,
        accept: text(&headers, header::ACCEPT),
        authorization: text(&headers, header::AUTHORIZATION),
        body: body.to_vec(),
        parts,
    };
    let echo = if let Some(metadata) = recorded.parts.iter().find(|p| p.name == "metadata") {
        String::from_utf8_lossy(&metadata.data).into_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    shared.records.lock().unwrap().push(recorded);

    let rule = shared
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|rule| rule.method == method && rule.path == path)
        .cloned();
    if let Some(rule) = rule {
        return (StatusCode::from_u16(rule.status).unwrap(), rule.body).into_response();
    }
    let lifecycle = [
        "instantiate",
        "terminate",
        "approve",
        "apply",
        "update",
        "rollback",
        "stop",
    ]
    .iter()
    .any(|action| path.ends_with(&format!("/{action}")));
    match method.as_str() {
        "POST" if lifecycle => StatusCode::ACCEPTED.into_response(),
        "POST" => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            echo,
        )
            .into_response(),
        "PUT" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            echo,
        )
            .into_response(),
        "GET" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"metadata":{"name":"got"}}"#,
        )
            .into_response(),
        "DELETE" => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

// ------------------------------------------------------------------------------------------------------------
// Running the binary.

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn emcoctl(dir: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_emcoctl"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("EMCOCTL_CONFIG")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn reference(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/emco-reference")
        .join(relative)
}

/// A temp directory with `emco-cfg.yaml` pointing at `emco`.
fn workdir(emco: &FakeEmco) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("emco-cfg.yaml"), emco.config_yaml()).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn lines(records: &[Recorded]) -> Vec<String> {
    records.iter().map(Recorded::line).collect()
}

// ------------------------------------------------------------------------------------------------------------
// The upstream single-cluster example, end to end.

/// Sets up the single-cluster example: the generated values with the kubeconfig placeholder replaced by a real
/// temp file, and every `output/*.tar.gz` the values name created with recognisable contents.
fn single_cluster(dir: &Path) -> (PathBuf, PathBuf) {
    let values = std::fs::read_to_string(reference(
        "generated-from-jacobtrvl-emco/examples/single-cluster/values.yaml",
    ))
    .unwrap();
    let kubeconfig = write(dir, "cluster1.kubeconfig", "apiVersion: v1\nkind: Config\n");
    let values = values.replace(
        "/path/to/cluster1.kubeconfig",
        &kubeconfig.display().to_string(),
    );
    for line in values.lines() {
        if let Some((_, path)) = line.split_once(": output/") {
            write(
                dir,
                &format!("output/{}", path.trim()),
                &format!("archive {}", path.trim()),
            );
        }
    }
    let values_path = write(dir, "values.yaml", &values);
    (
        values_path,
        reference("jacobtrvl-emco/examples/single-cluster"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_example_applies_and_deletes_in_upstream_order() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    let (_values, example) = single_cluster(dir.path());
    let prerequisites =
        reference("generated-from-jacobtrvl-emco/examples/single-cluster/prerequisites.yaml");
    let prerequisites = prerequisites.to_str().unwrap();
    let instantiate_lc = example.join("instantiate-lc.yaml");
    let deployment = example.join("test-prometheus-collectd-deployment.yaml");
    let instantiate = example.join("test-prometheus-collectd-instantiate.yaml");
    let file = |p: &Path| p.to_str().unwrap().to_string();

    // Apply, as upstream's apply.sh runs it.
    for input in [
        prerequisites.to_string(),
        file(&instantiate_lc),
        file(&deployment),
        file(&instantiate),
    ] {
        let run = emcoctl(
            dir.path(),
            &[
                "--config",
                "emco-cfg.yaml",
                "apply",
                "-f",
                &input,
                "-v",
                "values.yaml",
                "-s",
            ],
        )
        .await;
        assert_eq!(
            run.code, 0,
            "{input}\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    }
    let applied = emco.take();
    let dig = "/v2/projects/proj1/composite-apps/prometheus-collectd-composite-app/v1/deployment-intent-groups/collection-deployment-intent-group";
    let cap = "/v2/projects/proj1/composite-apps/prometheus-collectd-composite-app/v1";
    assert_eq!(
        lines(&applied),
        [
            "orchestrator POST /v2/projects".to_string(),
            "orchestrator POST /v2/controllers".into(),
            "orchestrator POST /v2/controllers".into(),
            "dtc POST /v2/dtc-controllers".into(),
            "clm POST /v2/cluster-providers".into(),
            "clm POST /v2/cluster-providers/provider1/clusters".into(),
            "clm POST /v2/cluster-providers/provider1/clusters/cluster1/labels".into(),
            "dcm POST /v2/projects/proj1/logical-clouds".into(),
            "dcm POST /v2/projects/proj1/logical-clouds/lc1/cluster-references".into(),
            "dcm POST /v2/projects/proj1/logical-clouds/lc1/instantiate".into(),
            "orchestrator POST /v2/projects/proj1/composite-apps".into(),
            format!("orchestrator POST {cap}/apps"),
            format!("orchestrator POST {cap}/apps"),
            format!("orchestrator POST {cap}/composite-profiles"),
            format!(
                "orchestrator POST {cap}/composite-profiles/collection-composite-profile/profiles"
            ),
            format!(
                "orchestrator POST {cap}/composite-profiles/collection-composite-profile/profiles"
            ),
            format!("orchestrator POST {cap}/deployment-intent-groups"),
            format!("orchestrator POST {dig}/intents"),
            format!("orchestrator POST {dig}/generic-placement-intents"),
            format!(
                "orchestrator POST {dig}/generic-placement-intents/collection-placement-intent/app-intents"
            ),
            format!(
                "orchestrator POST {dig}/generic-placement-intents/collection-placement-intent/app-intents"
            ),
            format!("orchestrator POST {dig}/approve"),
            format!("orchestrator POST {dig}/instantiate"),
        ]
    );

    // Bodies: JSON documents exactly as upstream marshals them.
    assert_eq!(applied[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(applied[0].json(), json!({"metadata": {"name": "proj1"}}));
    assert_eq!(
        String::from_utf8(applied[1].body.clone()).unwrap(),
        r#"{"metadata":{"name":"rsync"},"spec":{"host":"192.0.2.10","port":9031}}"#
    );
    assert_eq!(
        applied[6].json(),
        json!({"metadata": {"name": ""}, "clusterLabel": "edge-cluster"})
    );
    assert_eq!(
        applied[7].json(),
        json!({"metadata": {"name": "lc1"}, "spec": {"level": "0"}})
    );
    // The cluster is multipart: metadata first, then the kubeconfig as part `file` named "filename".
    let cluster = &applied[5];
    assert!(
        cluster
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("multipart/form-data")
    );
    assert_eq!(
        cluster
            .parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["metadata", "file"]
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&cluster.part("metadata").data).unwrap(),
        json!({"metadata": {"name": "cluster1"}})
    );
    assert_eq!(cluster.part("file").filename.as_deref(), Some("filename"));
    assert_eq!(cluster.part("file").data, b"apiVersion: v1\nkind: Config\n");
    // Apps and profiles upload the archives the values name.
    assert_eq!(
        applied[11].part("file").data,
        b"archive kube-prometheus-stack.tar.gz"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&applied[11].part("metadata").data).unwrap(),
        json!({"metadata": {"name": "kube-prometheus-stack", "description": "description for app"}})
    );
    assert_eq!(
        applied[15].part("file").data,
        b"archive collectd_profile.tar.gz"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&applied[15].part("metadata").data).unwrap(),
        json!({"metadata": {"name": "profile2", "description": "test"}, "spec": {"app": "collectd"}})
    );
    assert_eq!(
        applied[16].json(),
        json!({"metadata": {"name": "collection-deployment-intent-group", "description": "description"},
               "spec": {"compositeProfile": "collection-composite-profile", "logicalCloud": "lc1", "overrideValues": [], "version": "r1"}})
    );
    // Lifecycle actions post an empty-named body.
    assert_eq!(applied[21].json(), json!({"metadata": {"name": ""}}));

    // Delete, as upstream's delete.sh runs it: files in reverse, documents in reverse within each.
    for input in [
        file(&instantiate),
        file(&deployment),
        file(&instantiate_lc),
        prerequisites.to_string(),
    ] {
        let run = emcoctl(
            dir.path(),
            &[
                "--config",
                "emco-cfg.yaml",
                "delete",
                "-f",
                &input,
                "-v",
                "values.yaml",
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{input}\n{}\n{}", run.stdout, run.stderr);
    }
    let deleted = emco.take();
    assert_eq!(
        lines(&deleted),
        [
            format!("orchestrator POST {dig}/terminate"),
            format!(
                "orchestrator DELETE {dig}/generic-placement-intents/collection-placement-intent/app-intents/collectd-placement-intent"
            ),
            format!(
                "orchestrator DELETE {dig}/generic-placement-intents/collection-placement-intent/app-intents/prometheus-placement-intent"
            ),
            format!(
                "orchestrator DELETE {dig}/generic-placement-intents/collection-placement-intent"
            ),
            format!("orchestrator DELETE {dig}/intents/collection-deployment-intent"),
            format!("orchestrator DELETE {dig}"),
            format!(
                "orchestrator DELETE {cap}/composite-profiles/collection-composite-profile/profiles/profile2"
            ),
            format!(
                "orchestrator DELETE {cap}/composite-profiles/collection-composite-profile/profiles/profile1"
            ),
            format!("orchestrator DELETE {cap}/composite-profiles/collection-composite-profile"),
            format!("orchestrator DELETE {cap}/apps/collectd"),
            format!("orchestrator DELETE {cap}/apps/kube-prometheus-stack"),
            format!("orchestrator DELETE {cap}"),
            "dcm POST /v2/projects/proj1/logical-clouds/lc1/terminate".to_string(),
            "dcm DELETE /v2/projects/proj1/logical-clouds/lc1/cluster-references/cluster1-ref"
                .into(),
            "dcm DELETE /v2/projects/proj1/logical-clouds/lc1".into(),
            "clm DELETE /v2/cluster-providers/provider1/clusters/cluster1/labels/edge-cluster"
                .into(),
            "clm DELETE /v2/cluster-providers/provider1/clusters/cluster1".into(),
            "clm DELETE /v2/cluster-providers/provider1".into(),
            "dtc DELETE /v2/dtc-controllers/nps".into(),
            "orchestrator DELETE /v2/controllers/dtc".into(),
            "orchestrator DELETE /v2/controllers/rsync".into(),
            "orchestrator DELETE /v2/projects/proj1".into(),
        ]
    );
    // Terminate is an empty JSON post; deletes carry no body.
    assert_eq!(deleted[0].content_type.as_deref(), Some("application/json"));
    assert!(deleted[0].body.is_empty());
    assert!(deleted[1].body.is_empty() && deleted[1].content_type.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_shows_each_call_and_pretty_json() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(
        dir.path(),
        "p.yaml",
        "version: emco/v2\nresourceContext:\n  anchor: projects\nmetadata:\n  name: p1\n---\nversion: emco/v2\nresourceContext:\n  anchor: projects/p1/composite-apps/c/v1/deployment-intent-groups/d/instantiate\n",
    );
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "apply", "-f", "p.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "POST /v2/projects --> 201 Created\n{\n  \"metadata\": {\n    \"name\": \"p1\"\n  }\n}\nPOST /v2/projects/p1/composite-apps/c/v1/deployment-intent-groups/d/instantiate --> 202 Accepted\n"
    );
    assert!(
        run.stderr.contains("Using config file: emco-cfg.yaml"),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------------------------------------------------
// Failure handling.

const THREE_PROJECTS: &str = "resourceContext: {anchor: projects}\nmetadata: {name: a}\n---\nresourceContext: {anchor: projects}\nmetadata: {name: b}\n---\nresourceContext: {anchor: projects}\nmetadata: {name: c}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_is_reported_and_the_run_continues_without_stop() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(dir.path(), "p.yaml", THREE_PROJECTS);
    emco.answer("POST", "/v2/projects", 409, "project already exists");
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "apply", "-f", "p.yaml"],
    )
    .await;
    assert_eq!(run.code, 1);
    // Upstream does not fall back to PUT on 409: three POSTs, nothing else.
    assert_eq!(lines(&emco.take()), ["orchestrator POST /v2/projects"; 3]);
    assert_eq!(
        run.stdout
            .matches("POST /v2/projects --> 409 Conflict\nproject already exists\n")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flag_ends_the_run_at_the_first_failure() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(dir.path(), "p.yaml", THREE_PROJECTS);
    emco.answer("DELETE", "/v2/projects/b", 409, r#"{"error":"in use"}"#);
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "delete", "-f", "p.yaml", "-s"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(
        lines(&emco.take()),
        [
            "orchestrator DELETE /v2/projects/c",
            "orchestrator DELETE /v2/projects/b"
        ]
    );
    assert!(
        run.stdout
            .contains("DELETE /v2/projects/b --> 409 Conflict\n{\n  \"error\": \"in use\"\n}\n"),
        "{}",
        run.stdout
    );
    // Without -s the failed delete is passed over.
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "delete", "-f", "p.yaml"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(lines(&emco.take()).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service_stops_the_run() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(
        dir.path(),
        "down.yaml",
        &format!("orchestrator:\n  host: 127.0.0.1\n  port: {port}\n"),
    );
    write(dir.path(), "p.yaml", THREE_PROJECTS);
    let run = emcoctl(
        dir.path(),
        &["--config", "down.yaml", "apply", "-f", "p.yaml"],
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("POST /v2/projects --> error: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("http://127.0.0.1:{port}/v2/projects")),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_before_any_request() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    let d = dir.path();
    let cfg = ["--config", "emco-cfg.yaml"];
    let with =
        |rest: &[&'static str]| -> Vec<&'static str> { cfg.iter().chain(rest).copied().collect() };

    let run = emcoctl(d, &with(&["apply", "-f", "missing.yaml"])).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("error: cannot read missing.yaml"),
        "{}",
        run.stderr
    );

    write(
        d,
        "bad.yaml",
        "resourceContext: {anchor: projects}\nmetadata: {name: a}\n---\n# two\nresourceContext: {anchor: projects}\nmetadata: {name: [b\n",
    );
    let run = emcoctl(d, &with(&["apply", "-f", "bad.yaml"])).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("error: bad.yaml: document 2 (line "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("invalid YAML"), "{}", run.stderr);

    write(
        d,
        "t.yaml",
        "resourceContext: {anchor: projects}\nmetadata:\n  name: {{ .Project.Name }}\n",
    );
    write(d, "v.yaml", "Project: proj1\n");
    let run = emcoctl(d, &with(&["apply", "-f", "t.yaml", "-v", "v.yaml"])).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("template t.yaml:3: can't evaluate field Name in type string"),
        "{}",
        run.stderr
    );

    write(
        d,
        "app.yaml",
        "resourceContext: {anchor: projects/p/composite-apps/c/v1/apps}\nmetadata: {name: a}\nfile: output/none.tgz\n",
    );
    let run = emcoctl(d, &with(&["apply", "-f", "app.yaml"])).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot read upload file output/none.tgz"),
        "{}",
        run.stderr
    );

    write(
        d,
        "gac.yaml",
        "resourceContext: {anchor: projects/p/composite-apps/c/v1/deployment-intent-groups/d/hpa-intents}\nmetadata: {name: h}\n",
    );
    let run = emcoctl(d, &with(&["apply", "-f", "gac.yaml"])).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("no hpaplacement information in config file emco-cfg.yaml"),
        "{}",
        run.stderr
    );

    let run = emcoctl(d, &with(&["update", "projects/p"])).await;
    assert_eq!(run.code, 2);
    let run = emcoctl(d, &["--config", "nope.yaml", "get", "projects"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read config file nope.yaml"),
        "{}",
        run.stderr
    );

    assert!(emco.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_template_keys_render_no_value_with_a_warning() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(
        dir.path(),
        "t.yaml",
        "resourceContext: {anchor: projects}\nmetadata:\n  name: {{.Name}}\n  description: {{.Missing}}\n",
    );
    write(dir.path(), "v.yaml", "Name: p\n");
    let run = emcoctl(
        dir.path(),
        &[
            "--config",
            "emco-cfg.yaml",
            "apply",
            "-f",
            "t.yaml",
            "-v",
            "v.yaml",
        ],
    )
    .await;
    assert_eq!(run.code, 0);
    assert!(
        run.stderr
            .contains("warning: t.yaml:4: no value for .Missing"),
        "{}",
        run.stderr
    );
    assert_eq!(
        emco.take()[0].json(),
        json!({"metadata": {"name": "p", "description": "<no value>"}})
    );
}

// ------------------------------------------------------------------------------------------------------------
// Other commands and flags.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_files_upload_as_files_parts_with_base_names() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(dir.path(), "data/info.json", "{\"fruit\": \"berry\"}");
    write(dir.path(), "dummy.yaml", "kind: x\n");
    let anchor = "projects/p/composite-apps/c/v1/deployment-intent-groups/d/generic-k8s-intents/g/resources/cm/customizations";
    write(
        dir.path(),
        "c.yaml",
        &format!(
            "version: emco/v2\nresourceContext:\n  anchor: {anchor}\nmetadata:\n  name: cz\nspec:\n  clusterSpecific: \"false\"\nfiles:\n  - data/info.json\n  - dummy.yaml\n"
        ),
    );
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "apply", "-f", "c.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "update", "-f", "c.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = emco.take();
    assert_eq!(
        lines(&records),
        [
            format!("gac POST /v2/{anchor}"),
            format!("gac PUT /v2/{anchor}/cz")
        ]
    );
    for record in &records {
        let parts: Vec<(&str, Option<&str>)> = record
            .parts
            .iter()
            .map(|p| (p.name.as_str(), p.filename.as_deref()))
            .collect();
        assert_eq!(
            parts,
            [
                ("metadata", None),
                ("files", Some("info.json")),
                ("files", Some("dummy.yaml"))
            ]
        );
        assert_eq!(record.parts[1].data, b"{\"fruit\": \"berry\"}");
        assert_eq!(
            serde_json::from_slice::<Value>(&record.part("metadata").data).unwrap(),
            json!({"metadata": {"name": "cz"}, "spec": {"clusterSpecific": "false"}})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_update_address_each_resource() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(dir.path(), "app.tgz", "x");
    write(
        dir.path(),
        "r.yaml",
        "resourceContext: {anchor: projects/p/composite-apps}\nmetadata: {name: ca}\nspec: {compositeAppVersion: v2}\n---\nresourceContext: {anchor: projects/p/composite-apps/ca/v2/apps}\nmetadata: {name: a}\nfile: app.tgz\n---\nresourceContext: {anchor: projects/p/composite-apps/ca/v2/deployment-intent-groups/d/approve}\n",
    );
    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "get", "-f", "r.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "GET /v2/projects/p/composite-apps/ca/v2/deployment-intent-groups/d/approve --> skipped"
        ),
        "{}",
        run.stdout
    );
    let gets = emco.take();
    assert_eq!(
        lines(&gets),
        [
            "orchestrator GET /v2/projects/p/composite-apps/ca/v2",
            "orchestrator GET /v2/projects/p/composite-apps/ca/v2/apps/a"
        ]
    );
    assert_ne!(gets[0].accept.as_deref(), Some("application/json"));
    assert_eq!(gets[1].accept.as_deref(), Some("application/json"));

    let run = emcoctl(
        dir.path(),
        &["--config", "emco-cfg.yaml", "update", "-f", "r.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let puts = emco.take();
    assert_eq!(
        lines(&puts),
        [
            "orchestrator PUT /v2/projects/p/composite-apps/ca/v2",
            "orchestrator PUT /v2/projects/p/composite-apps/ca/v2/apps/a"
        ]
    );
    assert_eq!(
        puts[0].json(),
        json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v2"}})
    );
    assert_eq!(puts[1].part("file").data, b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_on_the_command_line() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    let cfg = ["--config", "emco-cfg.yaml"];
    let status = "projects/p/composite-apps/c/v1/deployment-intent-groups/d/status?output=summary&cluster=provider1%2Bcluster1";
    for args in [
        vec![
            "apply",
            "projects/p/composite-apps/c/v1/deployment-intent-groups/d/instantiate",
        ],
        vec!["get", status],
        vec!["get", "/v2/cluster-providers/cp/clusters/c1"],
        vec!["delete", "projects/p"],
    ] {
        let all: Vec<&str> = cfg.iter().copied().chain(args).collect();
        let run = emcoctl(dir.path(), &all).await;
        assert_eq!(run.code, 0, "{:?}\n{}", all, run.stderr);
    }
    let records = emco.take();
    assert_eq!(
        lines(&records),
        [
            "orchestrator POST /v2/projects/p/composite-apps/c/v1/deployment-intent-groups/d/instantiate".to_string(),
            format!("orchestrator GET /v2/{status}"),
            "clm GET /v2/cluster-providers/cp/clusters/c1".into(),
            "orchestrator DELETE /v2/projects/p".into(),
        ]
    );
    assert_eq!(records[0].content_type.as_deref(), Some("application/json"));
    assert!(records[0].body.is_empty());
    assert_eq!(records[2].accept.as_deref(), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_may_precede_the_command_and_token_is_sent() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(
        dir.path(),
        "t.yaml",
        "resourceContext: {anchor: projects}\nmetadata: {name: '{{.P}}'}\n",
    );
    write(dir.path(), "v.yaml", "P: from-values\n");
    let run = emcoctl(
        dir.path(),
        &[
            "--config",
            "emco-cfg.yaml",
            "-v",
            "v.yaml",
            "apply",
            "-f",
            "t.yaml",
            "-t",
            "secret-token",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let records = emco.take();
    assert_eq!(
        records[0].json(),
        json!({"metadata": {"name": "from-values"}})
    );
    assert_eq!(
        records[0].authorization.as_deref(),
        Some("Bearer secret-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_time_pauses_after_accepted_calls() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    write(
        dir.path(),
        "i.yaml",
        "resourceContext: {anchor: projects/p/logical-clouds/lc/instantiate}\n---\nresourceContext: {anchor: projects/p/logical-clouds/lc/status}\n",
    );
    let started = Instant::now();
    let run = emcoctl(
        dir.path(),
        &[
            "--config",
            "emco-cfg.yaml",
            "apply",
            "-f",
            "i.yaml",
            "-w",
            "1",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Only the 202 answer waits; the second call (201) does not.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        run.stdout
            .contains("--> 202 Accepted\nAccepted; waiting 1 s\n"),
        "{}",
        run.stdout
    );
    assert_eq!(lines(&emco.take()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_section_sends_everything_to_one_port() {
    let emco = FakeEmco::start().await;
    let dir = workdir(&emco);
    let port = emco.ports["orchestrator"];
    write(
        dir.path(),
        "ingress.yaml",
        &format!("ingress:\n  host: 127.0.0.1\n  port: {port}\n"),
    );
    write(
        dir.path(),
        "r.yaml",
        "resourceContext: {anchor: cluster-providers}\nmetadata: {name: cp}\n---\nresourceContext: {anchor: projects/p/logical-clouds}\nmetadata: {name: lc}\n",
    );
    let run = emcoctl(
        dir.path(),
        &["--config", "ingress.yaml", "apply", "-f", "r.yaml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        lines(&emco.take()),
        [
            "orchestrator POST /v2/cluster-providers",
            "orchestrator POST /v2/projects/p/logical-clouds"
        ]
    );
}
