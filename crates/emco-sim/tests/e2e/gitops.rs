//! The Git server (real `git http-backend`) and pull mode (Flux emulation), driven by the real
//! git CLI over loopback.

use crate::common;

use common::Harness;
use common::git::{Work, get_object, git, git_ok, post};
use emco_sim::git::GitUser;
use serde_json::{Value, json};

fn ready(object: &Value) -> (String, String) {
    let condition = &object["status"]["conditions"][0];
    (
        condition["status"].as_str().unwrap_or_default().to_owned(),
        condition["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_pulls_applies_updates_and_prunes_from_the_sims_git_server() {
    let harness = Harness::start_with(2, |options| {
        options.git_users = vec![GitUser {
            name: "emco".into(),
            token: "s3cret".into(),
        }];
        // Only explicit reconciles matter here; the loop must not race the assertions badly.
        options.flux_interval = std::time::Duration::from_secs(3600);
    })
    .await;
    let base = harness.running.url.clone();
    let (code, _) = post(&format!("{base}/sim/git/repos/gitrepo"), None).await;
    assert_eq!(code, 201);
    let (code, _) = post(&format!("{base}/sim/git/repos/gitrepo"), None).await;
    assert_eq!(code, 201, "creating a repository is idempotent");
    let listed: Value = reqwest::get(format!("{base}/sim/git/repos"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["repos"][0]["name"], "gitrepo");

    let host = base.strip_prefix("http://").unwrap();
    let url = format!("{base}/git/gitrepo.git");

    // A wrong token: 401 with the realm, and git fails.
    let anonymous = reqwest::get(format!("{url}/info/refs?service=git-upload-pack"))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"emco-sim git\""
    );
    let wrong = git(
        harness.dir.path(),
        &[
            "ls-remote",
            &format!("http://emco:wrong@{host}/git/gitrepo.git"),
        ],
    );
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("Authentication failed") || stderr.contains("401"),
        "{stderr}"
    );

    // Push with the token: JSON in a .yaml file, multi-document YAML in a nested directory.
    let work = Work::new(
        harness.dir.path(),
        "gitrepo",
        &format!("http://emco:s3cret@{host}/git/gitrepo.git"),
    );
    let root = "clusters/provider-flux+cluster2";
    work.write(
        &format!("{root}/context/0/ns.yaml"),
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}"#,
    );
    work.write(
        &format!("{root}/context/0/cm.yaml"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-json","namespace":"team"},"data":{"k":"1"}}"#,
    );
    work.write(
        &format!("{root}/context/0/deep/more.yml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yaml-a\n  namespace: team\ndata:\n  k: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yaml-b\n  namespace: team\ndata:\n  k: b\n",
    );
    work.push("first");
    let sha = git_ok(&work.dir, &["rev-parse", "HEAD"]).trim().to_owned();

    // Bootstrap flux on edge-2.
    let flux = format!("{base}/sim/clusters/edge-2/flux");
    let (code, answer) = post(
        &flux,
        Some(
            json!({"url": url, "branch": "main", "path": format!("./{root}"),
            "username": "emco", "token": "s3cret"}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert!(answer["bootstrap"].get("token").is_none());
    let (code, report) = post(&format!("{flux}/reconcile"), None).await;
    assert_eq!(code, 200, "{report}");

    let source = get_object(
        &harness,
        "edge-2",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system",
    )
    .await
    .unwrap();
    assert_eq!(ready(&source).0, "True", "{source}");
    assert_eq!(
        source["status"]["artifact"]["revision"],
        format!("main@sha1:{sha}")
    );
    let kustomization = get_object(
        &harness,
        "edge-2",
        "/apis/kustomize.toolkit.fluxcd.io/v1beta2/namespaces/flux-system/kustomizations/flux-system",
    )
    .await
    .unwrap();
    assert_eq!(
        ready(&kustomization),
        ("True".into(), format!("Applied revision: main@sha1:{sha}")),
        "{kustomization}"
    );
    let entries = kustomization["status"]["inventory"]["entries"]
        .as_array()
        .unwrap();
    assert!(entries.contains(&json!({"id": "team_from-json__ConfigMap", "v": "v1"})));
    assert!(entries.contains(&json!({"id": "_team__Namespace", "v": "v1"})));
    for name in ["from-json", "yaml-a", "yaml-b"] {
        let object = get_object(
            &harness,
            "edge-2",
            &format!("/api/v1/namespaces/team/configmaps/{name}"),
        )
        .await
        .unwrap_or_else(|| panic!("{name} applied"));
        assert_eq!(
            object["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"],
            "flux-system"
        );
        assert_eq!(
            object["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"],
            "flux-system"
        );
        assert!(
            object["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|field| field["manager"] == "kustomize-controller")
        );
    }
    // The other cluster is untouched.
    assert!(
        get_object(&harness, "edge-1", "/api/v1/namespaces/team")
            .await
            .is_none()
    );
    // kubectl sees it too.
    let data = harness
        .kubectl_ok(
            "edge-2",
            &[
                "get",
                "configmap",
                "yaml-b",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.k}",
            ],
        )
        .await;
    assert_eq!(data, "b");
    let ks = harness
        .kubectl_ok(
            "edge-2",
            &["get", "kustomizations.kustomize.toolkit.fluxcd.io", "-A"],
        )
        .await;
    assert!(ks.contains("flux-system"), "{ks}");

    // A changed file updates, a removed file is pruned, a second Kustomization (v1beta2) in the
    // bootstrap path applies its own path.
    work.write(
        &format!("{root}/context/0/cm.yaml"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-json","namespace":"team"},"data":{"k":"2"}}"#,
    );
    work.remove(&format!("{root}/context/0/deep/more.yml"));
    work.write(
        &format!("{root}/context/ks-1.yaml"),
        r#"{"apiVersion":"kustomize.toolkit.fluxcd.io/v1beta2","kind":"Kustomization","metadata":{"name":"context-1","namespace":"flux-system"},"spec":{"interval":"1m","path":"clusters/x/context/1","prune":true,"sourceRef":{"kind":"GitRepository","name":"flux-system","namespace":"flux-system"}}}"#,
    );
    work.write(
        "clusters/x/context/1/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-1\n  namespace: default\ndata:\n  k: x\n",
    );
    work.push("second");
    let (code, report) = post(&format!("{flux}/reconcile"), None).await;
    assert_eq!(code, 200, "{report}");
    let updated = get_object(
        &harness,
        "edge-2",
        "/api/v1/namespaces/team/configmaps/from-json",
    )
    .await
    .unwrap();
    assert_eq!(updated["data"]["k"], "2");
    assert!(
        get_object(
            &harness,
            "edge-2",
            "/api/v1/namespaces/team/configmaps/yaml-a"
        )
        .await
        .is_none(),
        "removed file pruned"
    );
    let app = get_object(
        &harness,
        "edge-2",
        "/api/v1/namespaces/default/configmaps/app-1",
    )
    .await
    .expect("the second Kustomization applied its path");
    assert_eq!(
        app["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"],
        "context-1"
    );
    let child = get_object(
        &harness,
        "edge-2",
        "/apis/kustomize.toolkit.fluxcd.io/v1beta2/namespaces/flux-system/kustomizations/context-1",
    )
    .await
    .unwrap();
    assert_eq!(ready(&child).0, "True", "{child}");

    // Removing the child Kustomization from git prunes it and, with it, its objects.
    work.remove(&format!("{root}/context/ks-1.yaml"));
    work.push("third");
    let (code, report) = post(&format!("{flux}/reconcile"), None).await;
    assert_eq!(code, 200, "{report}");
    assert!(
        get_object(
            &harness,
            "edge-2",
            "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/context-1"
        )
        .await
        .is_none()
    );
    assert!(
        get_object(
            &harness,
            "edge-2",
            "/api/v1/namespaces/default/configmaps/app-1"
        )
        .await
        .is_none(),
        "the pruned Kustomization's objects are pruned"
    );

    // The git server down: the source is not ready, with a message; then it recovers.
    let (code, _) = post(&format!("{base}/sim/git/down"), None).await;
    assert_eq!(code, 204);
    let (_, report) = post(&format!("{flux}/reconcile"), None).await;
    assert_eq!(report["lastPass"]["gitRepositories"][0]["ready"], false);
    let source = get_object(
        &harness,
        "edge-2",
        "/apis/source.toolkit.fluxcd.io/v1beta1/namespaces/flux-system/gitrepositories/flux-system",
    )
    .await
    .unwrap();
    let (status, message) = ready(&source);
    assert_eq!(status, "False");
    assert!(message.contains("503"), "{message}");
    let kustomization = get_object(
        &harness,
        "edge-2",
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/flux-system",
    )
    .await
    .unwrap();
    assert_eq!(ready(&kustomization).0, "False");
    // Objects stay while the source is unavailable.
    assert!(
        get_object(
            &harness,
            "edge-2",
            "/api/v1/namespaces/team/configmaps/from-json"
        )
        .await
        .is_some()
    );
    let (code, _) = post(&format!("{base}/sim/git/up"), None).await;
    assert_eq!(code, 204);
    let (_, report) = post(&format!("{flux}/reconcile"), None).await;
    assert_eq!(
        report["lastPass"]["gitRepositories"][0]["ready"], true,
        "{report}"
    );
    let source = get_object(
        &harness,
        "edge-2",
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system",
    )
    .await
    .unwrap();
    assert_eq!(ready(&source).0, "True");

    // A wrong token in the cluster's secret: the source names the authentication failure.
    let secret_path = "/api/v1/namespaces/flux-system/secrets/flux-system";
    let client = reqwest::Client::new();
    let patched = client
        .patch(format!(
            "{}{secret_path}",
            harness.sim().server_url("edge-2")
        ))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"data": {"password": "d3Jvbmc="}}).to_string())
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
    let (_, report) = post(&format!("{flux}/reconcile"), None).await;
    let message = report["lastPass"]["gitRepositories"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("Authentication failed")
            || message.contains("401")
            || message.contains("Username"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_loop_runs_by_itself() {
    let harness = Harness::start_with(1, |options| {
        options.flux_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let base = harness.running.url.clone();
    post(&format!("{base}/sim/git/repos/loop"), None).await;
    let host = base.strip_prefix("http://").unwrap();
    let work = Work::new(
        harness.dir.path(),
        "loop",
        &format!("http://{host}/git/loop.git"),
    );
    work.write(
        "apps/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: looped\n  namespace: default\n",
    );
    work.push("first");
    let (code, answer) = post(
        &format!("{base}/sim/clusters/edge-1/flux"),
        Some(json!({"url": format!("{base}/git/loop.git"), "path": "apps"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    for _ in 0..100 {
        if get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/looped",
        )
        .await
        .is_some()
        {
            let shown: Value = reqwest::get(format!("{base}/sim/clusters/edge-1/flux"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(shown["lastPass"]["kustomizations"][0]["ready"], true);
            // A file that does not parse: Ready False naming it; the objects stay.
            work.write("apps/broken.yaml", "kind: [\n");
            work.push("broken");
            let (_, report) =
                post(&format!("{base}/sim/clusters/edge-1/flux/reconcile"), None).await;
            let message = report["lastPass"]["kustomizations"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains("apps/broken.yaml"), "{report}");
            let kustomization = get_object(
                &harness,
                "edge-1",
                "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/flux-system",
            )
            .await
            .unwrap();
            assert_eq!(
                kustomization["status"]["conditions"][0]["reason"],
                "BuildFailed"
            );
            assert!(
                get_object(
                    &harness,
                    "edge-1",
                    "/api/v1/namespaces/default/configmaps/looped"
                )
                .await
                .is_some()
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the loop did not apply the ConfigMap");
}
