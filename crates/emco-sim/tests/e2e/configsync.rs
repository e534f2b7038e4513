//! Pull mode as Google Config Sync (root and namespace reconcilers), against the simulator's own
//! Git server, driven by the real git CLI and kubectl.

use crate::common;

use std::time::{Duration, Instant};

use common::Harness;
use common::git::{Work, check_setup_refusals, get_object, post};
use common::send;
use emco_sim::git::GitUser;
use serde_json::{Value, json};

const ROOT_SYNC: &str =
    "/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs/root-sync";
const REPO_SYNC: &str = "/apis/configsync.gke.io/v1beta1/namespaces/team/reposyncs/repo-sync";

/// `code` of every error in `status.{stage}.errors`, and their messages joined.
fn errors(sync: &Value, stage: &str) -> (Vec<String>, String) {
    let errors = sync["status"][stage]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        errors
            .iter()
            .map(|error| error["code"].as_str().unwrap_or_default().to_owned())
            .collect(),
        errors
            .iter()
            .map(|error| error["errorMessage"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_namespace_reconcilers_apply_refuse_and_prune() {
    let harness = Harness::start_with(2, |options| {
        options.git_users = vec![GitUser {
            name: "emco".into(),
            token: "s3cret".into(),
        }];
        // Only explicit reconciles matter here.
        options.flux_interval = Duration::from_secs(3600);
    })
    .await;
    let base = harness.running.url.clone();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    for repo in ["root", "team"] {
        let (code, _) = post(&format!("{base}/sim/git/repos/{repo}"), None).await;
        assert_eq!(code, 201);
    }
    let root_url = format!("{base}/git/root.git");
    let team_url = format!("{base}/git/team.git");

    // The root repository: a Namespace, a RepoSync for it, a .json file without a namespace,
    // JSON in a .yaml file, a binary file EMCO leaves beside them, and a directory of another
    // cluster that must not be read.
    let root = Work::new(
        harness.dir.path(),
        "root",
        &format!("http://emco:s3cret@{host}/git/root.git"),
    );
    let dir = "clusters/edge-1";
    root.write(
        &format!("{dir}/namespaces/team.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    root.write(
        &format!("{dir}/team/reposync.yaml"),
        json!({"apiVersion": "configsync.gke.io/v1beta1", "kind": "RepoSync",
            "metadata": {"name": "repo-sync", "namespace": "team", "annotations":
                {"configsync.gke.io/deletion-propagation-policy": "Foreground"}},
            "spec": {"sourceFormat": "unstructured", "git": {"repo": team_url, "branch": "main",
                "dir": "/apps", "revision": "HEAD", "auth": "token",
                "secretRef": {"name": "git-creds"}}}})
        .to_string(),
    );
    root.write(
        &format!("{dir}/config/settings.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","labels":{"tier":"x"}},"data":{"k":"1"}}"#,
    );
    root.write(
        &format!("{dir}/config/reader.yaml"),
        r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"team-reader"},"rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]}"#,
    );
    root.write(&format!("{dir}/config/deployed"), [0u8, 159, 146, 150, 255]);
    root.write(
        "clusters/edge-2/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: elsewhere\n  namespace: default\n",
    );
    let root_sha = root.push("root");

    // The team repository: namespaced objects (one without a namespace), one cluster-scoped
    // and one in another namespace, both refused.
    let team = Work::new(
        harness.dir.path(),
        "team",
        &format!("http://emco:s3cret@{host}/git/team.git"),
    );
    team.write(
        "apps/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-a\ndata:\n  k: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-b\n  namespace: team\n  labels:\n    keep: me\ndata:\n  k: b\n",
    );
    team.write(
        "apps/extra.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-c\n",
    );
    team.write(
        "apps/cluster.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: team-wide\n",
    );
    team.write(
        "apps/elsewhere.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sneaky","namespace":"default"}}"#,
    );
    let team_sha = team.push("team");

    // Bad bodies name the field; unknown clusters are 404.
    check_setup_refusals(&base, "configsync", &root_url, "dir", dir).await;
    let setup = format!("{base}/sim/clusters/edge-1/configsync");

    let (code, answer) = post(
        &setup,
        Some(json!({"url": root_url, "dir": format!("/{dir}"), "username": "emco", "token": "s3cret"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["setup"]["auth"], "token");
    assert_eq!(answer["setup"]["branch"], "main");
    assert!(answer["setup"].get("token").is_none(), "{answer}");
    assert!(
        answer["objects"]
            .as_array()
            .unwrap()
            .contains(&json!("RootSync/config-management-system/root-sync"))
    );
    let root_sync = get_object(&harness, "edge-1", ROOT_SYNC).await.unwrap();
    assert_eq!(
        root_sync["spec"],
        json!({"sourceFormat": "unstructured", "git": {"repo": root_url, "branch": "main",
            "dir": format!("/{dir}"), "revision": "HEAD", "auth": "token",
            "secretRef": {"name": "git-creds"}}})
    );
    let creds = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/config-management-system/secrets/git-creds",
    )
    .await
    .unwrap();
    assert_eq!(creds["data"]["username"], "ZW1jbw==");

    // First pass: the root reconciler applies its directory; the RepoSync it applied is
    // reconciled in the same pass and reports its missing Secret.
    let (code, report) = post(&format!("{setup}/reconcile"), None).await;
    assert_eq!(code, 200, "{report}");
    let root_sync = get_object(&harness, "edge-1", ROOT_SYNC).await.unwrap();
    let status = &root_sync["status"];
    assert_eq!(status["source"]["commit"], root_sha, "{root_sync}");
    assert_eq!(status["sync"]["commit"], root_sha);
    assert_eq!(status["lastSyncedCommit"], root_sha);
    assert_eq!(status["conditions"][0]["type"], "Syncing");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["message"], "Sync Completed");
    assert!(status["source"].get("errors").is_none(), "{root_sync}");
    let settings = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/default/configmaps/settings",
    )
    .await
    .expect("a namespaced object without a namespace goes to default");
    assert_eq!(
        settings["metadata"]["annotations"]["configsync.gke.io/manager"],
        ":root"
    );
    assert_eq!(
        settings["metadata"]["labels"],
        json!({"tier": "x", "app.kubernetes.io/managed-by": "configmanagement.gke.io"})
    );
    assert!(
        settings["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|field| field["manager"] == "configsync.gke.io")
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/team-reader"
        )
        .await
        .is_some(),
        "JSON in a .yaml file"
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/elsewhere"
        )
        .await
        .is_none(),
        "only the RootSync's directory is read"
    );
    assert!(
        get_object(&harness, "edge-2", "/api/v1/namespaces/team")
            .await
            .is_none(),
        "the other cluster is untouched"
    );
    let repo_sync = get_object(&harness, "edge-1", REPO_SYNC).await.unwrap();
    let (codes, message) = errors(&repo_sync, "source");
    assert_eq!(codes, vec!["2004"], "{repo_sync}");
    assert!(message.contains("team/git-creds"), "{message}");
    assert_eq!(repo_sync["status"]["conditions"][0]["reason"], "Source");
    let syncs = report["lastPass"]["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), 2, "{report}");
    assert_eq!(syncs[0]["kind"], "RootSync");
    assert_eq!(syncs[0]["synced"], true);
    assert!(
        syncs[0]["applied"]
            .as_array()
            .unwrap()
            .contains(&json!("RepoSync/team/repo-sync"))
    );
    assert_eq!(syncs[1]["kind"], "RepoSync");
    assert_eq!(syncs[1]["errors"][0]["code"], "2004");

    // kubectl lists them.
    let listed = harness
        .kubectl_ok(
            "edge-1",
            &["get", "rootsyncs", "-n", "config-management-system"],
        )
        .await;
    assert!(
        listed.contains("root-sync") && listed.contains(&root_sha),
        "{listed}"
    );
    let listed = harness
        .kubectl_ok("edge-1", &["get", "reposyncs", "-A"])
        .await;
    assert!(listed.contains("repo-sync"), "{listed}");
    let groups = harness
        .kubectl_ok("edge-1", &["get", "resourcegroups", "-A"])
        .await;
    assert!(groups.contains("root-sync"), "{groups}");

    // A Secret with a wrong token (plain, in stringData): the fetch is refused, in status.
    let secrets = harness.url("edge-1", "/api/v1/namespaces/team/secrets");
    let (code, created) = send(
        "POST",
        &secrets,
        "application/json",
        Some(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "git-creds", "namespace": "team"},
            "stringData": {"username": "emco", "token": "wrong"}})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let repo_sync = get_object(&harness, "edge-1", REPO_SYNC).await.unwrap();
    let (codes, message) = errors(&repo_sync, "source");
    assert_eq!(codes, vec!["2004"], "{repo_sync}");
    assert!(
        message.contains("refused the credentials of Secret team/git-creds (user \"emco\")"),
        "{message}"
    );
    assert_eq!(report["lastPass"]["syncs"][1]["synced"], false);
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/team/configmaps/team-a"
        )
        .await
        .is_none()
    );

    // The right token: the namespaced objects are applied, the other two refused by name.
    let (code, patched) = send(
        "PATCH",
        &format!("{secrets}/git-creds"),
        "application/merge-patch+json",
        Some(json!({"stringData": {"token": "s3cret"}})),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let repo_sync = get_object(&harness, "edge-1", REPO_SYNC).await.unwrap();
    assert_eq!(repo_sync["status"]["source"]["commit"], team_sha);
    assert_eq!(repo_sync["status"]["sync"]["commit"], team_sha);
    let (codes, message) = errors(&repo_sync, "source");
    assert_eq!(codes, vec!["1058", "1058"], "{repo_sync}");
    assert!(
        message.contains("KNV1058") && message.contains("team-wide"),
        "{message}"
    );
    assert!(
        message.contains("metadata.name: sneaky") && message.contains("namespace=\"team\""),
        "{message}"
    );
    assert_eq!(
        repo_sync["status"]["source"]["errorSummary"]["totalCount"],
        2
    );
    assert_eq!(repo_sync["status"]["reconciler"], "ns-reconciler-team");
    for name in ["team-a", "team-b", "team-c"] {
        let object = get_object(
            &harness,
            "edge-1",
            &format!("/api/v1/namespaces/team/configmaps/{name}"),
        )
        .await
        .unwrap_or_else(|| panic!("{name} applied in the RepoSync's namespace"));
        assert_eq!(
            object["metadata"]["annotations"]["configsync.gke.io/manager"],
            "team"
        );
    }
    let team_b = get_object(
        &harness,
        "edge-1",
        "/api/v1/namespaces/team/configmaps/team-b",
    )
    .await
    .unwrap();
    assert_eq!(team_b["metadata"]["labels"]["keep"], "me");
    for path in [
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/team-wide",
        "/api/v1/namespaces/default/configmaps/sneaky",
    ] {
        assert!(
            get_object(&harness, "edge-1", path).await.is_none(),
            "{path} refused"
        );
    }
    let team_report = &report["lastPass"]["syncs"][1];
    assert_eq!(team_report["commit"], team_sha);
    assert_eq!(team_report["objects"], 3, "{report}");

    // Removing a file prunes its object (in either repository).
    team.remove("apps/extra.yml");
    team.push("drop extra");
    root.remove(&format!("{dir}/config/settings.json"));
    let root_sha = root.push("drop settings");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    assert_eq!(report["lastPass"]["syncs"][0]["commit"], root_sha);
    for path in [
        "/api/v1/namespaces/team/configmaps/team-c",
        "/api/v1/namespaces/default/configmaps/settings",
    ] {
        assert!(
            get_object(&harness, "edge-1", path).await.is_none(),
            "{path} pruned"
        );
    }
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/team/configmaps/team-a"
        )
        .await
        .is_some()
    );

    // Removing the RepoSync's file prunes the RepoSync, and with it (`Foreground`) what it
    // applied.
    root.remove(&format!("{dir}/team/reposync.yaml"));
    root.push("drop the repo sync");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    assert_eq!(
        report["lastPass"]["syncs"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(get_object(&harness, "edge-1", REPO_SYNC).await.is_none());
    for name in ["team-a", "team-b"] {
        assert!(
            get_object(
                &harness,
                "edge-1",
                &format!("/api/v1/namespaces/team/configmaps/{name}")
            )
            .await
            .is_none(),
            "{name} pruned with its RepoSync"
        );
    }
    assert!(
        get_object(&harness, "edge-1", "/api/v1/namespaces/team")
            .await
            .is_some(),
        "the Namespace is still declared"
    );
    let shown: Value = reqwest::get(&setup).await.unwrap().json().await.unwrap();
    // Five explicit passes, and the loop's first one, which starts with it.
    assert!(shown["lastPass"]["pass"].as_u64().unwrap() >= 5, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_syncs_an_anonymous_repository_by_itself() {
    let harness = Harness::start_with(1, |options| {
        options.flux_interval = Duration::from_millis(100);
    })
    .await;
    let base = harness.running.url.clone();
    post(&format!("{base}/sim/git/repos/open"), None).await;
    let host = base.strip_prefix("http://").unwrap();
    let work = Work::new(
        harness.dir.path(),
        "open",
        &format!("http://{host}/git/open.git"),
    );
    work.write(
        "sync/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: looped\n  namespace: default\n",
    );
    let sha = work.push("first");
    let setup = format!("{base}/sim/clusters/edge-1/configsync");
    let (code, answer) = post(
        &setup,
        Some(json!({"url": format!("{base}/git/open.git"), "dir": "sync"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["setup"]["auth"], "none");
    let root_sync = get_object(&harness, "edge-1", ROOT_SYNC).await.unwrap();
    assert_eq!(root_sync["spec"]["git"]["auth"], "none");
    assert!(root_sync["spec"]["git"].get("secretRef").is_none());
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/config-management-system/secrets/git-creds"
        )
        .await
        .is_none()
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let synced = get_object(&harness, "edge-1", ROOT_SYNC)
            .await
            .is_some_and(|sync| sync["status"]["lastSyncedCommit"] == sha);
        if synced {
            break;
        }
        assert!(Instant::now() < deadline, "the loop did not sync {sha}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/looped"
        )
        .await
        .is_some()
    );
    let listed = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "rootsyncs",
                "-n",
                "config-management-system",
                "-o",
                "jsonpath={.items[0].status.sync.commit}",
            ],
        )
        .await;
    assert_eq!(listed, sha);
    let shown: Value = reqwest::get(&setup).await.unwrap().json().await.unwrap();
    assert_eq!(shown["lastPass"]["syncs"][0]["commit"], sha, "{shown}");

    // A file that does not parse: a source error naming it; nothing applied is touched.
    work.write("sync/broken.yaml", "kind: [\n");
    work.remove("sync/cm.yaml");
    work.push("broken");
    let (_, report) = post(&format!("{setup}/reconcile"), None).await;
    let sync = &report["lastPass"]["syncs"][0];
    assert_eq!(sync["errors"][0]["code"], "1006", "{report}");
    assert!(
        sync["errors"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("sync/broken.yaml")
    );
    assert!(
        get_object(
            &harness,
            "edge-1",
            "/api/v1/namespaces/default/configmaps/looped"
        )
        .await
        .is_some(),
        "nothing is pruned while the source does not parse"
    );

    // Removing the cluster forgets its Config Sync.
    let (code, _) = send("DELETE", &format!("{base}/sim/clusters/edge-1"), "", None).await;
    assert!(code < 300, "{code}");
    let response = reqwest::get(&setup).await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}
