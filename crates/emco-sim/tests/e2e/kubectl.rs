//! The real `kubectl` against an in-process simulator: what users and scripts do.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{Harness, stderr, stdout};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  mode: edge
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_multi_document_manifest_then_get_json_and_tables() {
    let harness = Harness::start(2).await;
    let created = harness.apply("edge-1", APP, &[]).await;
    assert_eq!(
        created.lines().collect::<Vec<_>>(),
        vec![
            "namespace/demo created",
            "deployment.apps/web created",
            "service/web created",
            "configmap/settings created"
        ]
    );
    let again = harness.apply("edge-1", APP, &[]).await;
    assert!(
        again.lines().all(|line| line.ends_with(" unchanged")),
        "{again}"
    );

    let deployment = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "deployment", "web", "-n", "demo", "-o", "json"],
            )
            .await,
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["metadata"]["generation"], 1);
    assert!(deployment["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(
        deployment["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );

    let service = json(
        &harness
            .kubectl_ok("edge-1", &["get", "svc", "web", "-n", "demo", "-o", "json"])
            .await,
    );
    assert!(
        service["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96.")
    );

    let table = harness
        .kubectl_ok(
            "edge-1",
            &["get", "deployments,services,configmaps", "-n", "demo"],
        )
        .await;
    assert!(table.contains("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("deployment.apps/web") && line.contains("0/2")),
        "{table}"
    );
    assert!(
        table.lines().any(|line| line.starts_with("service/web")
            && line.contains("ClusterIP")
            && line.contains("80/TCP")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("configmap/settings")
                && line.split_whitespace().nth(1) == Some("1")),
        "{table}"
    );

    let namespaces = harness.kubectl_ok("edge-1", &["get", "namespaces"]).await;
    for name in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "demo",
    ] {
        assert!(
            namespaces
                .lines()
                .any(|line| line.starts_with(name) && line.contains("Active")),
            "{namespaces}"
        );
    }
    // The other cluster is independent.
    let other = harness.kubectl("edge-2", &["get", "ns", "demo"]).await;
    assert!(
        stderr(&other).contains(r#"namespaces "demo" not found"#),
        "{}",
        stderr(&other)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_strategic_merge_and_json() {
    let harness = Harness::start(1).await;
    harness.apply("edge-1", APP, &[]).await;
    let deploy = ["-n", "demo", "deployment", "web"];
    let patch = |kind: &'static str, body: &'static str| {
        let mut args = vec!["patch"];
        args.extend_from_slice(&deploy);
        args.extend_from_slice(&["--type", kind, "-p", body]);
        args
    };
    harness
        .kubectl_ok("edge-1", &patch("strategic", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"envoy"}]}}}}"#))
        .await;
    harness
        .kubectl_ok("edge-1", &patch("merge", r#"{"spec":{"replicas":5}}"#))
        .await;
    harness
        .kubectl_ok(
            "edge-1",
            &patch(
                "json",
                r#"[{"op":"replace","path":"/metadata/labels/app","value":"frontend"}]"#,
            ),
        )
        .await;
    let deployment = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "-n", "demo", "deployment", "web", "-o", "json"],
            )
            .await,
    );
    let mut names: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|container| container["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["sidecar", "web"],
        "strategic merge keeps the existing container"
    );
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(deployment["metadata"]["labels"]["app"], "frontend");
    // Two spec changes bumped the generation twice; the label change did not.
    assert_eq!(deployment["metadata"]["generation"], 3);
    // A failing JSON patch test is rejected and changes nothing.
    let failed = harness
        .kubectl(
            "edge-1",
            &patch(
                "json",
                r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
            ),
        )
        .await;
    assert!(!failed.status.success());
    // Client-side apply after the patches reconciles back to the manifest.
    let applied = harness.apply("edge-1", APP, &[]).await;
    assert!(
        applied.contains("deployment.apps/web configured"),
        "{applied}"
    );
    let deployment = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "-n", "demo", "deployment", "web", "-o", "json"],
            )
            .await,
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
}

const SERVER_SIDE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: default
spec:
  replicas: REPLICAS
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    let harness = Harness::start(1).await;
    let two = SERVER_SIDE.replace("REPLICAS", "2");
    let three = SERVER_SIDE.replace("REPLICAS", "3");
    let out = harness.apply("edge-1", &two, &["--server-side"]).await;
    assert_eq!(out.trim(), "deployment.apps/api serverside-applied");
    harness.apply("edge-1", &two, &["--server-side"]).await;

    let conflict = harness
        .kubectl_stdin(
            "edge-1",
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "other",
                "-f",
                "-",
            ],
            &three,
        )
        .await;
    assert!(!conflict.status.success());
    let message = stderr(&conflict);
    assert!(
        message.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas"#
        ),
        "{message}"
    );

    harness
        .apply(
            "edge-1",
            &three,
            &[
                "--server-side",
                "--field-manager",
                "other",
                "--force-conflicts",
            ],
        )
        .await;
    let deployment = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &[
                    "get",
                    "deployment",
                    "api",
                    "-o",
                    "json",
                    "--show-managed-fields",
                ],
            )
            .await,
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    let managers: Vec<(String, String, bool)> = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["manager"].as_str().unwrap().to_owned(),
                entry["operation"].as_str().unwrap().to_owned(),
                entry["fieldsV1"]["f:spec"].get("f:replicas").is_some(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        vec![
            ("kubectl".into(), "Apply".into(), false),
            ("other".into(), "Apply".into(), true)
        ]
    );

    // Server-side dry run reports success but stores nothing.
    let four = SERVER_SIDE.replace("REPLICAS", "4");
    harness
        .apply(
            "edge-1",
            &four,
            &[
                "--server-side",
                "--field-manager",
                "other",
                "--dry-run=server",
            ],
        )
        .await;
    let replicas = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "deployment",
                "api",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        )
        .await;
    assert_eq!(replicas, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_delete_and_namespace_deletion_removes_contents() {
    let harness = Harness::start(1).await;
    harness.apply("edge-1", APP, &[]).await;
    harness
        .kubectl_ok(
            "edge-1",
            &["label", "-n", "demo", "configmap", "settings", "tier=edge"],
        )
        .await;
    let selected = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "configmaps",
                "-n",
                "demo",
                "-l",
                "tier in (edge,core)",
                "-o",
                "name",
            ],
        )
        .await;
    assert_eq!(selected.trim(), "configmap/settings");
    let none = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "configmaps",
                "-n",
                "demo",
                "-l",
                "tier!=edge",
                "-o",
                "name",
            ],
        )
        .await;
    assert_eq!(none.trim(), "");

    let deleted = harness
        .kubectl_ok("edge-1", &["delete", "-n", "demo", "service", "web"])
        .await;
    assert_eq!(deleted.trim(), r#"service "web" deleted"#);
    let gone = harness
        .kubectl("edge-1", &["get", "-n", "demo", "service", "web"])
        .await;
    assert!(
        stderr(&gone).contains(r#"services "web" not found"#),
        "{}",
        stderr(&gone)
    );

    let deleted = harness
        .kubectl_ok("edge-1", &["delete", "namespace", "demo"])
        .await;
    assert_eq!(deleted.trim(), r#"namespace "demo" deleted"#);
    let left = harness
        .kubectl_ok(
            "edge-1",
            &["get", "deployments,configmaps", "-A", "-o", "name"],
        )
        .await;
    assert!(
        !left.contains("web") && !left.contains("settings"),
        "{left}"
    );
    let namespace = harness
        .kubectl("edge-1", &["get", "namespace", "demo"])
        .await;
    assert!(!namespace.status.success());

    let protected = harness
        .kubectl("edge-1", &["delete", "namespace", "default"])
        .await;
    assert!(
        stderr(&protected).contains("forbidden"),
        "{}",
        stderr(&protected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_changes() {
    let harness = Harness::start(1).await;
    harness
        .apply(
            "edge-1",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n",
            &[],
        )
        .await;
    let cache = harness.dir.path().join("kube-cache");
    let mut watcher = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(harness.kubeconfig("edge-1"))
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "configmaps", "--watch", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a watch line within 10s")
            .unwrap()
            .unwrap()
    };
    let header = next().await;
    assert!(
        header.starts_with("EVENT") && header.contains("NAME"),
        "{header}"
    );
    let initial = next().await;
    assert!(
        initial.starts_with("ADDED") && initial.contains("first"),
        "{initial}"
    );
    harness
        .apply(
            "edge-1",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n",
            &[],
        )
        .await;
    let added = next().await;
    assert!(
        added.starts_with("ADDED") && added.contains("second"),
        "{added}"
    );
    harness
        .kubectl_ok("edge-1", &["label", "configmap", "first", "x=y"])
        .await;
    let modified = next().await;
    assert!(
        modified.starts_with("MODIFIED") && modified.contains("first"),
        "{modified}"
    );
    harness
        .kubectl_ok("edge-1", &["delete", "configmap", "second"])
        .await;
    let deleted = next().await;
    assert!(
        deleted.starts_with("DELETED") && deleted.contains("second"),
        "{deleted}"
    );
    watcher.kill().await.unwrap();
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_then_custom_resource() {
    let harness = Harness::start(1).await;
    // Warm kubectl's discovery cache first: the new type must still be found.
    harness.kubectl_ok("edge-1", &["get", "configmaps"]).await;
    harness.apply("edge-1", CRD, &[]).await;
    let established = harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=condition=established",
                "crd/widgets.example.com",
                "--timeout=10s",
            ],
        )
        .await;
    assert!(established.contains("condition met"), "{established}");
    let widget =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: gear}\nspec: {size: 3}\n";
    assert_eq!(
        harness.apply("edge-1", widget, &[]).await.trim(),
        "widget.example.com/gear created"
    );
    let table = harness.kubectl_ok("edge-1", &["get", "wd"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SIZE"]);
    assert!(
        table.lines().nth(1).unwrap().starts_with("gear")
            && table.lines().nth(1).unwrap().trim_end().ends_with(" 3"),
        "{table}"
    );
    // Moving from client-side to server-side apply takes the fields over without conflict, and
    // kubectl migrates the managed fields afterwards.
    harness
        .apply(
            "edge-1",
            &widget.replace("size: 3", "size: 4"),
            &["--server-side"],
        )
        .await;
    let migrated = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "wd", "gear", "-o", "json", "--show-managed-fields"],
            )
            .await,
    );
    let managers: Vec<&str> = migrated["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["manager"].as_str().unwrap())
        .collect();
    assert_eq!(
        managers,
        vec!["kubectl", "kubectl-last-applied"],
        "{migrated}"
    );
    assert!(
        migrated["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
            .get("f:size")
            .is_some()
    );
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "patch",
                "widget",
                "gear",
                "--type=merge",
                "-p",
                r#"{"spec":{"size":5}}"#,
            ],
        )
        .await;
    let object = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "widgets.example.com", "gear", "-o", "json"],
            )
            .await,
    );
    assert_eq!(object["spec"]["size"], 5);
    assert_eq!(object["metadata"]["generation"], 3);
    let strategic = harness
        .kubectl(
            "edge-1",
            &[
                "patch",
                "widget",
                "gear",
                "--type=strategic",
                "-p",
                r#"{"spec":{"size":6}}"#,
            ],
        )
        .await;
    assert!(
        !strategic.status.success(),
        "strategic merge patch is refused for custom resources"
    );

    harness
        .kubectl_ok("edge-1", &["delete", "crd", "widgets.example.com"])
        .await;
    let listed = harness
        .kubectl(
            "edge-1",
            &[
                "get",
                "--raw",
                "/apis/example.com/v1/namespaces/default/widgets",
            ],
        )
        .await;
    assert!(
        !listed.status.success(),
        "custom resources go with their CRD: {}",
        stdout(&listed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_like_a_real_cluster() {
    let harness = Harness::start(1).await;
    let missing = harness
        .kubectl("edge-1", &["get", "configmap", "missing"])
        .await;
    assert_eq!(
        stderr(&missing).trim(),
        r#"Error from server (NotFound): configmaps "missing" not found"#
    );
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: once}\n";
    let first = harness
        .kubectl_stdin("edge-1", &["create", "-f", "-"], manifest)
        .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let second = harness
        .kubectl_stdin("edge-1", &["create", "-f", "-"], manifest)
        .await;
    assert!(
        stderr(&second).contains(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "once" already exists"#),
        "{}",
        stderr(&second)
    );
    let invalid = harness
        .kubectl_stdin(
            "edge-1",
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
        )
        .await;
    assert!(
        stderr(&invalid).contains(
            r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#
        ),
        "{}",
        stderr(&invalid)
    );
    let no_namespace = harness
        .kubectl_stdin("edge-1", &["create", "-n", "nowhere", "-f", "-"], manifest)
        .await;
    assert!(
        stderr(&no_namespace).contains(r#"namespaces "nowhere" not found"#),
        "{}",
        stderr(&no_namespace)
    );
    let dry = harness
        .kubectl_stdin(
            "edge-1",
            &["create", "--dry-run=server", "-o", "name", "-f", "-"],
            &manifest.replace("once", "dry"),
        )
        .await;
    assert_eq!(stdout(&dry).trim(), "configmap/dry");
    let not_stored = harness
        .kubectl("edge-1", &["get", "configmap", "dry"])
        .await;
    assert!(!not_stored.status.success());

    // kubectl asks for strict field validation: a typo is refused, as by a real server.
    let typo = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: typo}\nspec:\n  replica: 2\n  selector: {matchLabels: {app: t}}\n  template:\n    metadata: {labels: {app: t}}\n    spec: {containers: [{name: t, image: nginx}]}\n";
    let strict = harness
        .kubectl_stdin("edge-1", &["apply", "-f", "-"], typo)
        .await;
    assert!(
        stderr(&strict).contains(
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replica""#
        ),
        "{}",
        stderr(&strict)
    );
    let server_side = harness
        .kubectl_stdin("edge-1", &["apply", "--server-side", "-f", "-"], typo)
        .await;
    assert!(
        stderr(&server_side).contains(".spec.replica: field not declared in schema"),
        "{}",
        stderr(&server_side)
    );
    // Without validation the unknown field is dropped, as decoding into the real type does.
    harness.apply("edge-1", typo, &["--validate=false"]).await;
    let stored = json(
        &harness
            .kubectl_ok("edge-1", &["get", "deployment", "typo", "-o", "json"])
            .await,
    );
    assert!(stored["spec"].get("replica").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_commands_send_protobuf_and_work() {
    let harness = Harness::start(1).await;
    // These kubectl commands use client-go's typed clients, which send protobuf bodies.
    for args in [
        vec!["create", "namespace", "team"],
        vec![
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal=mode=edge",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "token",
            "-n",
            "team",
            "--from-literal=password=hunter2",
        ],
        vec![
            "create",
            "deployment",
            "web",
            "-n",
            "team",
            "--image=nginx",
            "--replicas=2",
            "--port=80",
        ],
        vec!["create", "serviceaccount", "robot", "-n", "team"],
    ] {
        harness.kubectl_ok("edge-1", &args).await;
    }
    let duplicate = harness
        .kubectl("edge-1", &["create", "configmap", "settings", "-n", "team"])
        .await;
    assert!(
        stderr(&duplicate).contains(r#"configmaps "settings" already exists"#),
        "{}",
        stderr(&duplicate)
    );

    let configmap = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "cm", "settings", "-n", "team", "-o", "json"],
            )
            .await,
    );
    assert_eq!(configmap["data"], serde_json::json!({"mode": "edge"}));
    let secret = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "secret", "token", "-n", "team", "-o", "json"],
            )
            .await,
    );
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    let deployment = json(
        &harness
            .kubectl_ok(
                "edge-1",
                &["get", "deploy", "web", "-n", "team", "-o", "json"],
            )
            .await,
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["ports"][0]["containerPort"], 80);

    harness
        .kubectl_ok(
            "edge-1",
            &["scale", "deployment", "web", "-n", "team", "--replicas=5"],
        )
        .await;
    let replicas = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "team",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        )
        .await;
    assert_eq!(replicas, "5");

    let csr = "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: agent}\nspec:\n  request: LS0tCg==\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n";
    harness.apply("edge-1", csr, &[]).await;
    harness
        .kubectl_ok("edge-1", &["certificate", "approve", "agent"])
        .await;
    let table = harness.kubectl_ok("edge-1", &["get", "csr", "agent"]).await;
    assert!(
        table.lines().nth(1).unwrap().contains("Approved"),
        "{table}"
    );
}
