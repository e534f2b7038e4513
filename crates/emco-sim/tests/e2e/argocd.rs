//! Pull mode as Argo CD (an app of apps and directory Applications), against the simulator's own
//! Git server with authentication, driven by the real git CLI and kubectl.

use crate::common;

use std::time::{Duration, Instant};

use common::Harness;
use common::git::{Work, check_setup_refusals, get_object, post};
use common::send;
use emco_sim::git::GitUser;
use serde_json::{Value, json};

fn app_path(name: &str) -> String {
    format!("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/{name}")
}

async fn app(harness: &Harness, name: &str) -> Value {
    get_object(harness, "edge-1", &app_path(name))
        .await
        .unwrap_or_else(|| panic!("Application {name}"))
}

/// The Application EMCO writes for a deployment (`app{context}.yaml`).
fn emco_application(context: &str, url: &str) -> String {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": format!("emco-{context}"), "namespace": "argocd",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": {"project": "default",
            "source": {"repoURL": url, "targetRevision": "main",
                "path": format!("clusters/p+c/context/{context}"), "directory": {"recurse": true}},
            "destination": {"server": "https://kubernetes.default.svc"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                "retry": {"backoff": {"duration": "1m0s"}}}}})
    .to_string()
}

/// `{kind}/{name}` of every entry of `status.resources`.
fn resources(app: &Value) -> Vec<String> {
    app["status"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| {
            format!(
                "{}/{}",
                resource["kind"].as_str().unwrap(),
                resource["name"]
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_app_brings_applications_that_sync_prune_and_cascade() {
    let harness = Harness::start_with(2, |options| {
        options.git_users = vec![GitUser {
            name: "emco".into(),
            token: "s3cret".into(),
        }];
        // Only explicit reconciles matter here.
        options.flux_interval = Duration::from_secs(3600);
        options.ready_after = Duration::ZERO;
    })
    .await;
    let base = harness.running.url.clone();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    let (code, _) = post(&format!("{base}/sim/git/repos/gitops"), None).await;
    assert_eq!(code, 201);
    let url = format!("{base}/git/gitops.git");
    let work = Work::new(
        harness.dir.path(),
        "gitops",
        &format!("http://emco:s3cret@{host}/git/gitops.git"),
    );

    // The cluster folder: two Applications as EMCO writes them, a stray object in a subfolder
    // the root app does not read, and each deployment's objects (JSON in .yaml, a .json, a
    // binary and a YAML file that is no manifest beside them).
    let cluster = "clusters/p+c";
    work.write(&format!("{cluster}/app1.yaml"), emco_application("1", &url));
    work.write(&format!("{cluster}/app2.yaml"), emco_application("2", &url));
    work.write(
        &format!("{cluster}/sub/stray+ConfigMap.yaml"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"stray","namespace":"default"}}"#,
    );
    let web = format!("{cluster}/context/1/app/web");
    work.write(
        &format!("{web}/settings+ConfigMap.yaml"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","labels":{"tier":"x"}},"data":{"k":"1"}}"#,
    );
    work.write(
        &format!("{web}/reader+ClusterRole.yaml"),
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"web-reader","namespace":"ignored"},"rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]}"#,
    );
    work.write(
        &format!("{web}/extra.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"extra","namespace":"default"}}"#,
    );
    work.write(&format!("{web}/deployed"), [0u8, 159, 146, 150, 255]);
    work.write(&format!("{web}/values.yaml"), "replicas: 3\nimage: web\n");
    let db = format!("{cluster}/context/2/app/db");
    work.write(
        &format!("{db}/db+Deployment.yaml"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}})
        .to_string(),
    );
    work.write(
        &format!("{db}/db-config+ConfigMap.yaml"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"db-config","namespace":"default"}}"#,
    );
    let sha = work.push("two deployments");

    // Bad bodies name the field; unknown clusters are 404.
    check_setup_refusals(&base, "argocd", &url, "path", cluster).await;
    let setup = format!("{base}/sim/clusters/edge-1/argocd");

    let (code, answer) = post(
        &setup,
        Some(json!({"url": url, "path": cluster, "username": "emco", "token": "s3cret"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["setup"]["auth"], "token");
    assert_eq!(answer["setup"]["branch"], "main");
    assert!(answer["setup"].get("token").is_none(), "{answer}");
    let objects = answer["objects"].as_array().unwrap();
    for object in [
        "CustomResourceDefinition/applications.argoproj.io",
        "Namespace/argocd",
        "Secret/argocd/root-repo",
        "Application/argocd/root",
    ] {
        assert!(objects.contains(&json!(object)), "{object}: {answer}");
    }
    let root = app(&harness, "root").await;
    assert_eq!(
        root["spec"]["source"],
        json!({"repoURL": url, "targetRevision": "main", "path": cluster})
    );
    assert_eq!(
        root["spec"]["destination"]["server"],
        "https://kubernetes.default.svc"
    );
    assert_eq!(root["spec"]["syncPolicy"]["automated"]["prune"], true);
    let secret = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/argocd/secrets/root-repo",
    )
    .await
    .unwrap();
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "repository"
    );
    assert_eq!(secret["data"]["type"], "Z2l0");
    assert_eq!(secret["data"]["username"], "ZW1jbw==");

    // One pass: the root app applies both Applications, which sync in the same pass.
    let (code, report) = post(&format!("{setup}/reconcile"), None).await;
    assert_eq!(code, 200, "{report}");
    let names: Vec<&str> = report["lastPass"]["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| app["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["emco-1", "emco-2", "root"], "{report}");
    let root = app(&harness, "root").await;
    assert_eq!(root["status"]["sync"]["status"], "Synced", "{root}");
    assert_eq!(root["status"]["sync"]["revision"], sha);
    assert_eq!(root["status"]["health"]["status"], "Healthy");
    assert_eq!(root["status"]["operationState"]["phase"], "Succeeded");
    assert_eq!(
        resources(&root),
        vec!["Application/\"emco-1\"", "Application/\"emco-2\""],
        "the root app reads only its folder's files"
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/stray"
        )
        .await
        .is_none(),
        "no recursion for the root app"
    );
    let emco_1 = app(&harness, "emco-1").await;
    assert_eq!(
        emco_1["metadata"]["labels"]["app.kubernetes.io/instance"],
        "root"
    );
    assert_eq!(emco_1["status"]["sync"]["status"], "Synced", "{emco_1}");
    assert_eq!(emco_1["status"]["sync"]["revision"], sha);
    assert_eq!(emco_1["status"]["operationState"]["phase"], "Succeeded");
    assert_eq!(
        emco_1["status"]["operationState"]["message"],
        "successfully synced (all tasks run)"
    );
    let mut listed = resources(&emco_1);
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "ClusterRole/\"web-reader\"",
            "ConfigMap/\"extra\"",
            "ConfigMap/\"settings\""
        ]
    );
    let settings = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/default/configmaps/settings",
    )
    .await
    .expect("a namespaced object without a namespace goes to default");
    assert_eq!(
        settings["metadata"]["labels"],
        json!({"tier": "x", "app.kubernetes.io/instance": "emco-1"})
    );
    assert!(
        settings["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|field| field["manager"] == "argocd-controller")
    );
    let reader = get_object(
        &harness,
        "edge-1",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/web-reader",
    )
    .await
    .unwrap();
    assert_eq!(
        reader["metadata"]["labels"]["app.kubernetes.io/instance"],
        "emco-1"
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/extra"
        )
        .await
        .is_some(),
        "a .json file"
    );
    assert!(
        get_object(&harness, "edge-2", "/api/v1/namespaces/argocd")
            .await
            .is_none(),
        "the other cluster is untouched"
    );

    // The Deployment's health follows its rollout.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let emco_2 = app(&harness, "emco-2").await;
        let deployment = emco_2["status"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|resource| resource["kind"] == "Deployment")
            .cloned()
            .unwrap();
        if emco_2["status"]["health"]["status"] == "Healthy" {
            assert_eq!(deployment["health"]["status"], "Healthy");
            break;
        }
        assert_eq!(
            emco_2["status"]["health"]["status"], "Progressing",
            "{emco_2}"
        );
        assert!(
            Instant::now() < deadline,
            "emco-2 never got healthy: {emco_2}"
        );
        post(&format!("{setup}/reconcile"), None).await;
    }

    // kubectl lists them with Argo CD's columns.
    let table = harness
        .kubectl_ok("edge-1", &["get", "applications", "-n", "argocd"])
        .await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "SYNC", "STATUS", "HEALTH", "STATUS"],
        "{table}"
    );
    for name in ["emco-1", "emco-2", "root"] {
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(row, vec![name, "Synced", "Healthy"], "{table}");
    }
    let wide = harness
        .kubectl_ok("edge-1", &["get", "apps", "-n", "argocd", "-o", "wide"])
        .await;
    assert!(wide.contains("REVISION") && wide.contains(&sha), "{wide}");

    // Drift is healed (selfHeal); removing an object's file prunes the object.
    let (code, _) = send(
        "PATCH",
        &harness.url("edge-1", "/api/v1/namespaces/default/configmaps/settings"),
        "application/merge-patch+json",
        Some(json!({"data": {"k": "changed by hand"}})),
    )
    .await;
    assert_eq!(code, 200);
    work.remove(&format!("{web}/extra.json"));
    let sha = work.push("drop extra");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let emco_1_report = &report["lastPass"]["applications"][0];
    assert_eq!(
        emco_1_report["pruned"],
        json!(["ConfigMap/default/extra"]),
        "{report}"
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/extra"
        )
        .await
        .is_none()
    );
    let settings = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/default/configmaps/settings",
    )
    .await
    .unwrap();
    assert_eq!(settings["data"]["k"], "1", "self-healed");
    let emco_1 = app(&harness, "emco-1").await;
    assert_eq!(emco_1["status"]["sync"]["revision"], sha);
    assert_eq!(emco_1["status"]["sync"]["status"], "Synced");
    let pruned: Vec<&Value> = emco_1["status"]["operationState"]["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["status"] == "Pruned")
        .collect();
    assert_eq!(pruned.len(), 1, "{emco_1}");
    assert_eq!(pruned[0]["name"], "extra");
    assert!(emco_1["status"]["history"].as_array().unwrap().len() >= 2);

    // Removing an Application's file: the root app prunes it, and its finalizer takes what it
    // applied along.
    work.remove(&format!("{cluster}/app2.yaml"));
    work.push("drop deployment 2");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let emco_2_report = report["lastPass"]["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["name"] == "emco-2")
        .cloned()
        .unwrap();
    assert_eq!(emco_2_report["deleting"], true, "{report}");
    assert_eq!(emco_2_report["done"], true, "{report}");
    assert!(
        get_object(&harness, "edge-1", &app_path("emco-2"))
            .await
            .is_none(),
        "pruned by the root app"
    );
    for path in [
        "/apis/apps/v1/namespaces/default/deployments/db",
        "/api/v1/namespaces/default/configmaps/db-config",
    ] {
        assert!(
            get_object(&harness, "edge-1", path).await.is_none(),
            "{path} deleted with its Application"
        );
    }
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/settings"
        )
        .await
        .is_some(),
        "the other Application keeps its objects"
    );
    assert_eq!(
        resources(&app(&harness, "root").await),
        vec!["Application/\"emco-1\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_secrets_prune_policies_and_destinations() {
    let harness = Harness::start_with(1, |options| {
        options.git_users = vec![GitUser {
            name: "emco".into(),
            token: "s3cret".into(),
        }];
        options.flux_interval = Duration::from_millis(100);
    })
    .await;
    let base = harness.running.url.clone();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    post(&format!("{base}/sim/git/repos/gitops"), None).await;
    let url = format!("{base}/git/gitops.git");
    let work = Work::new(
        harness.dir.path(),
        "gitops",
        &format!("http://emco:s3cret@{host}/git/gitops.git"),
    );
    let application = |name: &str, path: &str, destination: &str, automated: Value| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default",
                "source": {"repoURL": url, "targetRevision": "HEAD", "path": path},
                "destination": {"server": destination, "namespace": "team"},
                "syncPolicy": {"automated": automated, "syncOptions": ["CreateNamespace=true"]}}})
        .to_string()
    };
    work.write(
        "root/app-manual.yaml",
        application(
            "manual",
            "apps/manual",
            "https://kubernetes.default.svc",
            json!({"prune": false}),
        ),
    );
    work.write(
        "root/app-elsewhere.yaml",
        application(
            "elsewhere",
            "apps/manual",
            "https://elsewhere.example:6443",
            json!({"prune": true}),
        ),
    );
    work.write(
        "apps/manual/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m2\n",
    );
    let sha = work.push("first");

    // A wrong token: the root app reports whose credentials were refused.
    let setup = format!("{base}/sim/clusters/edge-1/argocd");
    let (code, answer) = post(
        &setup,
        Some(json!({"url": url, "path": "root", "username": "emco", "token": "wrong"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = loop {
        let root = app(&harness, "root").await;
        if root["status"]["conditions"].is_array() {
            break root;
        }
        assert!(Instant::now() < deadline, "no condition: {root}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let condition = &root["status"]["conditions"][0];
    assert_eq!(condition["type"], "ComparisonError", "{root}");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.starts_with("Failed to load target state")
            && message
                .contains("refused the credentials of Secret argocd/root-repo (user \"emco\")"),
        "{message}"
    );
    assert_eq!(root["status"]["sync"]["status"], "Unknown");
    assert!(root["status"].get("operationState").is_none());

    // The right password in the repository Secret: everything syncs by itself.
    let (code, patched) = send(
        "PATCH",
        &harness.url("edge-1", "/api/v1/namespaces/argocd/secrets/root-repo"),
        "application/merge-patch+json",
        Some(json!({"data": {"password": "czNjcmV0"}})),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let manual = get_object(&harness, "edge-1", &app_path("manual")).await;
        if manual.is_some_and(|manual| manual["status"]["sync"]["status"] == "Synced") {
            break;
        }
        assert!(Instant::now() < deadline, "manual never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = app(&harness, "root").await;
    assert!(root["status"].get("conditions").is_none(), "{root}");
    assert_eq!(root["status"]["sync"]["revision"], sha);
    for name in ["m1", "m2"] {
        let object = get_object(
            &harness,
            "edge-1",
            &format!("/api/v1/namespaces/team/configmaps/{name}"),
        )
        .await
        .unwrap_or_else(|| panic!("{name} in the destination namespace, created"));
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"],
            "manual"
        );
    }

    // Only the cluster itself is a destination.
    let elsewhere = app(&harness, "elsewhere").await;
    assert_eq!(
        elsewhere["status"]["conditions"][0]["type"],
        "InvalidSpecError"
    );
    assert!(
        elsewhere["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("there are no clusters with this URL: https://elsewhere.example:6443"),
        "{elsewhere}"
    );
    assert_eq!(elsewhere["status"]["sync"]["status"], "Unknown");

    // Without automated prune, what left the source stays, reported OutOfSync.
    work.write(
        "apps/manual/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m1\n",
    );
    let sha = work.push("drop m2");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let manual = app(&harness, "manual").await;
    assert_eq!(manual["status"]["sync"]["revision"], sha, "{report}");
    assert_eq!(manual["status"]["sync"]["status"], "OutOfSync");
    let m2 = manual["status"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["name"] == "m2")
        .cloned()
        .unwrap();
    assert_eq!(m2["requiresPruning"], true);
    assert_eq!(m2["status"], "OutOfSync");
    assert!(
        get_object(&harness, "edge-1", "/api/v1/namespaces/team/configmaps/m2")
            .await
            .is_some(),
        "not pruned"
    );

    // Removing the cluster forgets its Argo CD.
    let (code, _) = send("DELETE", &format!("{base}/sim/clusters/edge-1"), "", None).await;
    assert!(code < 300, "{code}");
    let response = reqwest::get(&setup).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}
