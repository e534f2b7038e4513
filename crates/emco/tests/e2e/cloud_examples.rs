//! End to end, logical clouds (the distributed cloud manager): upstream's
//! `examples/dcm-advanced` unchanged through the real `emcoctl` against `emco sim --tls`
//! clusters. A standard cloud puts its namespace, Role, RoleBinding and the user's approved
//! certificate request on its cluster; the kubeconfig the hub hands out is accepted by the
//! cluster and limited to what the cloud's permission grants; a group deploys into the cloud's
//! namespace; the cloud cannot be terminated under a running group, and its terminate removes
//! what it created.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Bed, Emcoctl, Kubectl, Sim, generated, upstream_example, wait_for};

const CLOUD: &str = "/v2/projects/proj1/logical-clouds/lc1";
const GROUP: &str = "/v2/projects/proj1/composite-apps/test-collectd/v1/deployment-intent-groups/collectd-deployment-intent-group";
const NAMESPACE: &str = "standard-lc-ns";

/// Upstream's generated values with the simulator's kubeconfigs; the archives stay relative.
fn values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/dcm-advanced/values.yaml");
    let text = support::example_values(&source, false, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

/// `kubectl` with the kubeconfig at `path`: (success, stdout, stderr).
fn kubectl_as(path: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(path)
        .arg("--request-timeout=10s")
        .args(args)
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Write requests cluster `name` answered so far (the simulator counts them), from the
/// control API on the same HTTPS server, trusting the CA its kubeconfigs carry.
async fn sim_writes(bed: &Bed, name: &str) -> anyhow::Result<u64> {
    let ca = bed.scratch().join("sim-ca.pem");
    let script = format!(
        "grep certificate-authority-data {kubeconfig} | awk '{{print $2}}' | base64 -d > {ca} && \
         curl -sS --fail --cacert {ca} {base}/sim/clusters/{name}",
        kubeconfig = bed.sim.kubeconfig(name).display(),
        ca = ca.display(),
        base = bed.sim.base_url,
    );
    let output = Command::new("sh").args(["-c", &script]).output()?;
    ensure!(
        output.status.success(),
        "reading the simulator's counts: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: Value = serde_json::from_slice(&output.stdout)?;
    info["writes"].as_u64().context("a write count")
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcm_advanced_standard_cloud_gives_its_user_a_namespace_and_a_working_kubeconfig()
-> anyhow::Result<()> {
    let bed = Bed::start_with(2, "cluster", "1s", &["--tls"]).await?;
    let scratch = bed.scratch();
    let (sim, api) = (&bed.sim, &bed.api);
    let ctl = Emcoctl::new(&bed.hub.base_url, scratch)?;
    let values = values(scratch, sim)?;
    let workdir = scratch.join("dcm");
    std::fs::create_dir_all(&workdir)?;
    std::os::unix::fs::symlink(generated("tarballs"), workdir.join("output"))?;
    let file = |name: &str| upstream_example(&format!("dcm-advanced/{name}"));

    // The README's first steps: prerequisites, the first cluster, instantiate the cloud.
    for name in [
        "prerequisites.yaml",
        "1stcluster.yaml",
        "instantiate-lc.yaml",
    ] {
        ctl.file_in(Some(&workdir), "apply", &file(name), &values, &[])?;
    }
    let status = wait_for(
        "the logical cloud is Ready",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let status = api
                .get(&format!("{CLOUD}/status?status=ready"))
                .await?
                .expect(StatusCode::OK, "cloud status")?
                .json()?;
            Ok(if status["readyStatus"] == "Ready" {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    assert_eq!(status["project"], "proj1");
    assert_eq!(status["logicalCloud"], "lc1");
    assert_eq!(status["deployedStatus"], "Instantiated", "{status}");
    // The same queries as a group's status: one cluster's resources, counted.
    let summary = api
        .get(&format!(
            "{CLOUD}/status?status=deployed&output=all&cluster=provider1%2Bcluster1"
        ))
        .await?
        .expect(StatusCode::OK, "cloud status")?
        .json()?;
    assert_eq!(summary["deployedCounts"]["Applied"], 4, "{summary}");
    let resources: Vec<&str> = summary["apps"][0]["clusters"][0]["resources"]
        .as_array()
        .context("resources")?
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        resources,
        [
            NAMESPACE,
            "lc1-role0",
            "lc1-roleBinding0",
            "lc1-standard-lc-ns-user-csr"
        ]
    );

    // What the cloud put on cluster1, as the administrator sees it; cluster2 is not in it.
    let admin1 = Kubectl::new(sim.kubeconfig("cluster1"), scratch);
    let admin2 = Kubectl::new(sim.kubeconfig("cluster2"), scratch);
    ensure!(
        names(&admin1.get_json(&["namespaces"])?).contains(&NAMESPACE.to_owned()),
        "the cloud's namespace"
    );
    assert_eq!(
        names(&admin1.get_json(&["roles", "-n", NAMESPACE])?),
        ["lc1-role0"]
    );
    let bindings = admin1.get_json(&["rolebindings", "-n", NAMESPACE])?;
    assert_eq!(names(&bindings), ["lc1-roleBinding0"]);
    assert_eq!(bindings[0]["subjects"][0]["name"], "user-1");
    let requests = admin1.get_json(&["certificatesigningrequests"])?;
    assert_eq!(names(&requests), [format!("lc1-{NAMESPACE}-user-csr")]);
    assert_eq!(requests[0]["status"]["conditions"][0]["type"], "Approved");
    ensure!(requests[0]["status"]["certificate"].is_string(), "signed");
    ensure!(
        !names(&admin2.get_json(&["namespaces"])?).contains(&NAMESPACE.to_owned()),
        "cluster2 is not referenced yet"
    );

    // The user's kubeconfig works on cluster1, within the cloud's permission only.
    let kubeconfig = api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster1-ref/kubeconfig"
        ))
        .await?
        .expect(StatusCode::OK, "kubeconfig")?
        .body;
    ensure!(
        kubeconfig.contains("client-certificate-data"),
        "{kubeconfig}"
    );
    let user_config = scratch.join("user-1.kubeconfig");
    std::fs::write(&user_config, &kubeconfig)?;
    let (ok, _, err) = kubectl_as(
        &user_config,
        &["create", "configmap", "from-user", "--from-literal=a=b"],
    )?;
    ensure!(
        ok,
        "the user creates in the cloud's namespace (its context's): {err}"
    );
    let (ok, out, err) = kubectl_as(&user_config, &["get", "configmaps"])?;
    ensure!(ok && out.contains("from-user"), "{out} {err}");
    let (ok, _, err) = kubectl_as(&user_config, &["get", "pods", "-n", "default"])?;
    ensure!(
        !ok && err.contains("forbidden"),
        "outside the namespace: {err}"
    );
    let (ok, _, err) = kubectl_as(&user_config, &["get", "namespaces"])?;
    ensure!(!ok && err.contains("forbidden"), "cluster scope: {err}");
    // Not referenced by the cloud yet: no kubeconfig for cluster2.
    let missing = api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster2-ref/kubeconfig"
        ))
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);

    // The user's private key is sealed in the store, never in clear.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(scratch.join("hub-data"))? {
        let path = entry?.path();
        if path.is_file() {
            stored.extend(std::fs::read(&path)?);
        }
    }
    let clear = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    ensure!(!clear(b"PRIVATE KEY"), "a private key is stored in clear");

    // The README's next step: a second cluster reference, then update the cloud. cluster2 gets
    // the same objects (and its own signed certificate); cluster1 gets no new write.
    let writes_before = sim_writes(&bed, "cluster1").await?;
    for name in ["2ndcluster.yaml", "update-lc.yaml"] {
        ctl.file_in(Some(&workdir), "apply", &file(name), &values, &[])?;
    }
    wait_for(
        "cluster2's user certificate is signed",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let requests = admin2.get_json(&["certificatesigningrequests"])?;
            Ok(
                if requests
                    .iter()
                    .any(|r| r["status"]["certificate"].is_string())
                {
                    Ok(())
                } else {
                    Err(format!("{} requests, none signed", requests.len()))
                },
            )
        },
    )
    .await?;
    assert_eq!(
        names(&admin2.get_json(&["roles", "-n", NAMESPACE])?),
        ["lc1-role0"]
    );
    assert_eq!(
        sim_writes(&bed, "cluster1").await?,
        writes_before,
        "the update sends nothing to the cluster that already had everything"
    );
    let kubeconfig2 = api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster2-ref/kubeconfig"
        ))
        .await?
        .expect(StatusCode::OK, "cluster2's kubeconfig")?
        .body;
    let user_config2 = scratch.join("user-1-cluster2.kubeconfig");
    std::fs::write(&user_config2, &kubeconfig2)?;
    let (ok, _, err) = kubectl_as(&user_config2, &["get", "configmaps"])?;
    ensure!(ok, "the user works on cluster2 too: {err}");

    // A group deploys into the cloud's namespace, on both clusters.
    for name in [
        "deployment-intent.yaml",
        "instantiate-deployment-intent.yaml",
    ] {
        ctl.file_in(Some(&workdir), "apply", &file(name), &values, &[])?;
    }
    wait_for(
        "the group is Instantiated",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let status = api.status(GROUP, "status=deployed&output=summary").await?;
            Ok(if status["deployedStatus"] == "Instantiated" {
                Ok(())
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    for admin in [&admin1, &admin2] {
        let deployed =
            admin.get_json(&["configmaps", "-n", NAMESPACE, "-l", "emco/deployment-id"])?;
        ensure!(
            !deployed.is_empty(),
            "the chart's objects are in the cloud's namespace"
        );
    }

    // Not under a running group.
    let refused = api
        .post_json(&format!("{CLOUD}/terminate"), &Value::Null)
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);

    // The README's last steps, in its order: terminate and delete the group, terminate the
    // cloud, delete its cluster references and the prerequisites.
    let delete = |name: &str, wait: bool| -> anyhow::Result<()> {
        let file = file(name);
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "delete".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
            "-v".as_ref(),
            values.as_os_str(),
        ];
        if wait {
            args.push(std::ffi::OsStr::new("-w"));
            args.push(std::ffi::OsStr::new("5"));
        }
        let out = ctl.run_in(Some(&workdir), &args)?;
        ensure!(
            out.code == Some(0),
            "emcoctl delete -f {name}: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    };
    delete("instantiate-deployment-intent.yaml", true)?;
    delete("deployment-intent.yaml", false)?;
    delete("instantiate-lc.yaml", true)?;
    // What the cloud put on the clusters is gone with its terminate.
    let mut left = Vec::new();
    for admin in [&admin1, &admin2] {
        left.extend(names(&admin.get_json(&["certificatesigningrequests"])?));
        left.extend(names(&admin.get_json(&["roles", "-A"])?));
        left.extend(
            names(&admin.get_json(&["namespaces"])?)
                .into_iter()
                .filter(|name| name == NAMESPACE),
        );
    }
    ensure!(left.is_empty(), "left on the clusters: {left:?}");
    let gone = api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster1-ref/kubeconfig"
        ))
        .await?;
    assert_eq!(gone.status, StatusCode::CONFLICT, "{}", gone.body);
    delete("2ndcluster.yaml", false)?;
    delete("1stcluster.yaml", false)?;
    delete("prerequisites.yaml", false)?;
    let cloud = api.get(CLOUD).await?;
    assert_eq!(cloud.status, StatusCode::NOT_FOUND, "{}", cloud.body);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// examples/single-cluster: the prerequisites of each logical cloud kind
// ---------------------------------------------------------------------------------------------

/// Upstream's generated single-cluster values with the simulator's kubeconfig.
fn single_cluster_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/single-cluster/values.yaml");
    let text = support::example_values(&source, true, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

/// `templates/prerequisites-common.yaml`, `templates/prerequisites-lc-{kind}.yaml` and
/// `instantiate-lc.yaml`, unchanged; returns the bed, once the cloud is Instantiated.
async fn single_cluster_cloud(kind: &str) -> anyhow::Result<(Bed, PathBuf)> {
    let bed = Bed::start_with(1, "cluster", "1s", &["--tls"]).await?;
    let values = single_cluster_values(bed.scratch(), &bed.sim)?;
    let ctl = Emcoctl::new(&bed.hub.base_url, bed.scratch())?;
    for name in [
        "templates/prerequisites-common.yaml",
        &format!("templates/prerequisites-lc-{kind}.yaml"),
        "instantiate-lc.yaml",
    ] {
        ctl.file_in(
            None,
            "apply",
            &upstream_example(&format!("single-cluster/{name}")),
            &values,
            &[],
        )?;
    }
    Ok((bed, values))
}

async fn user_kubeconfig(bed: &Bed) -> anyhow::Result<PathBuf> {
    let kubeconfig = wait_for(
        "the user's kubeconfig",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let answer = bed
                .api
                .get(&format!(
                    "{CLOUD}/cluster-references/cluster1-ref/kubeconfig"
                ))
                .await?;
            Ok(if answer.status == StatusCode::OK {
                Ok(answer.body)
            } else {
                Err(format!("{}: {}", answer.status, answer.body))
            })
        },
    )
    .await?;
    let path = bed.scratch().join("user-1.kubeconfig");
    std::fs::write(&path, kubeconfig)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_privileged_cloud_grants_its_namespaces_and_the_cluster()
-> anyhow::Result<()> {
    let (bed, _) = single_cluster_cloud("privileged").await?;
    let user = user_kubeconfig(&bed).await?;
    let admin = Kubectl::new(bed.sim.kubeconfig("cluster1"), bed.scratch());
    assert_eq!(
        names(&admin.get_json(&["roles", "-n", "privileged-lc-ns"])?),
        ["lc1-role0"]
    );
    assert_eq!(
        names(&admin.get_json(&["roles", "-n", "kube-system"])?),
        ["lc1-role1"]
    );
    ensure!(
        names(&admin.get_json(&["clusterroles"])?).contains(&"lc1-clusterRole2".to_owned()),
        "the cluster-wide permission is a ClusterRole"
    );
    let bindings = admin.get_json(&["clusterrolebindings"])?;
    let binding = bindings
        .iter()
        .find(|b| b["metadata"]["name"] == "lc1-clusterRoleBinding2")
        .context("the ClusterRoleBinding")?;
    assert_eq!(binding["roleRef"]["name"], "lc1-clusterRole2");
    // Cluster-wide: the user lists namespaces and works in kube-system.
    let (ok, out, err) = kubectl_as(&user, &["get", "namespaces"])?;
    ensure!(ok && out.contains("privileged-lc-ns"), "{out} {err}");
    let (ok, _, err) = kubectl_as(
        &user,
        &[
            "create",
            "configmap",
            "x",
            "-n",
            "kube-system",
            "--from-literal=a=b",
        ],
    )?;
    ensure!(ok, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_standard_cloud_keeps_its_user_in_its_namespace() -> anyhow::Result<()> {
    let (bed, _) = single_cluster_cloud("standard").await?;
    let user = user_kubeconfig(&bed).await?;
    let admin = Kubectl::new(bed.sim.kubeconfig("cluster1"), bed.scratch());
    assert_eq!(
        names(&admin.get_json(&["roles", "-n", "standard-lc-ns"])?),
        ["lc1-role0"]
    );
    ensure!(
        !names(&admin.get_json(&["clusterroles"])?)
            .iter()
            .any(|name| name.starts_with("lc1-")),
        "a standard cloud has no cluster-wide role"
    );
    let (ok, _, err) = kubectl_as(&user, &["get", "deployments"])?;
    ensure!(ok, "in its namespace: {err}");
    let (ok, _, err) = kubectl_as(&user, &["get", "configmaps", "-n", "kube-system"])?;
    ensure!(!ok && err.contains("forbidden"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_admin_cloud_creates_nothing_and_has_no_user_kubeconfig()
-> anyhow::Result<()> {
    let (bed, _) = single_cluster_cloud("admin").await?;
    let status = bed
        .api
        .get(&format!("{CLOUD}/status"))
        .await?
        .expect(StatusCode::OK, "status")?
        .json()?;
    assert_eq!(status["logicalCloud"], "lc1");
    assert_eq!(
        status["states"]["actions"][0]["state"], "Instantiated",
        "{status}"
    );
    ensure!(
        status.get("deployedStatus").is_none(),
        "nothing deployed: {status}"
    );
    let admin = Kubectl::new(bed.sim.kubeconfig("cluster1"), bed.scratch());
    ensure!(admin.get_json(&["certificatesigningrequests"])?.is_empty());
    let answer = bed
        .api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster1-ref/kubeconfig"
        ))
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_whose_cluster_cannot_be_reached_can_be_stopped() -> anyhow::Result<()> {
    let bed = Bed::start(1, "cluster", "1s").await?;
    let api = &bed.api;
    api.create(
        "/v2/projects",
        &serde_json::json!({"metadata": {"name": "proj1"}}),
    )
    .await?;
    api.clusters(&bed.sim, "provider1", &["cluster1"], None)
        .await?;
    api.create(
        "/v2/projects/proj1/logical-clouds",
        &serde_json::json!({"metadata": {"name": "lc1"},
            "spec": {"namespace": "ns1", "user": {"userName": "user-1", "type": "certificate"}}}),
    )
    .await?;
    api.create(
        &format!("{CLOUD}/cluster-references"),
        &serde_json::json!({"metadata": {"name": "cluster1-ref"},
            "spec": {"clusterProvider": "provider1", "cluster": "cluster1", "loadbalancerIp": "0.0.0.0"}}),
    )
    .await?;
    let nothing = api
        .post_json(&format!("{CLOUD}/stop"), &Value::Null)
        .await?;
    assert_eq!(nothing.status, StatusCode::CONFLICT, "{}", nothing.body);

    bed.sim
        .set_faults(
            &bed.client,
            "cluster1",
            serde_json::json!({"unreachable": "refuse"}),
        )
        .await?;
    api.post_json(&format!("{CLOUD}/instantiate"), &Value::Null)
        .await?
        .expect(StatusCode::ACCEPTED, "instantiate")?;
    let status = api
        .get(&format!("{CLOUD}/status?status=deployed"))
        .await?
        .expect(StatusCode::OK, "status")?
        .json()?;
    assert_eq!(status["deployedStatus"], "Instantiating", "{status}");
    api.post_json(&format!("{CLOUD}/stop"), &Value::Null)
        .await?
        .expect(StatusCode::ACCEPTED, "stop")?;
    wait_for(
        "the stopped instantiate ends failed",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let status = api
                .get(&format!("{CLOUD}/status?status=deployed"))
                .await?
                .expect(StatusCode::OK, "status")?
                .json()?;
            Ok(if status["deployedStatus"] == "InstantiateFailed" {
                Ok(())
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    // Nothing reached the cluster, so the user has no certificate yet.
    let answer = api
        .get(&format!(
            "{CLOUD}/cluster-references/cluster1-ref/kubeconfig"
        ))
        .await?;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    Ok(())
}
