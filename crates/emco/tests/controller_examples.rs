//! End to end, action controllers beyond GAC (see `update_examples.rs` for it): upstream's
//! `examples/dtc/network_policy` unchanged through the real `emcoctl`, the real hub and two
//! simulated clusters; `kubectl` shows the NetworkPolicy the traffic controller's `nps`
//! sub-controller generated.

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use support::{Api, Emcoctl, Kubectl, Sim, generated, upstream_example, wait_for};

const DTC_GROUP: &str = "/v2/projects/proj1/composite-apps/collection-composite-app/v1/deployment-intent-groups/collection-deployment-intent-group";

/// Upstream's generated values with the simulator's kubeconfigs.
fn dtc_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/dtc/network_policy/values.yaml");
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.split_once(": /path/to/") {
            Some((key, file)) => {
                let cluster = file.trim_end_matches(".kubeconfig");
                format!("{key}: {}", sim.kubeconfig(cluster).display())
            }
            None => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let path = scratch.join("values.yaml");
    std::fs::write(&path, out)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_example_admits_the_declared_client_on_the_servers_cluster()
-> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let scratch = scratch.path();
    let client = support::http_client()?;
    let sim = Sim::start(scratch, 2, "cluster", "1s").await?;
    let hub = support::start_hub(scratch, &client).await?;
    let api = Api {
        client: client.clone(),
        base_url: hub.base_url.clone(),
    };
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = dtc_values(scratch, &sim)?;
    // apps.yaml names its archives `output/…` relative to where apply.sh runs (setup.sh puts
    // them there): run emcoctl where `output` is the generated archives.
    let workdir = scratch.join("dtc");
    std::fs::create_dir_all(&workdir)?;
    std::os::unix::fs::symlink(generated("tarballs"), workdir.join("output"))?;
    let file = |name: &str| upstream_example(&format!("dtc/network_policy/{name}"));

    // apply.sh, in its order.
    for name in [
        "controllers.yaml",
        "projects.yaml",
        "clusters.yaml",
        "logicalclouds.yaml",
        "instantiatelc.yaml",
        "apps.yaml",
        "intents.yaml",
        "instantiate.yaml",
    ] {
        ctl.file_in(Some(&workdir), "apply", &file(name), &values, &[])?;
    }
    wait_for(
        "the group is Instantiated",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let status = api
                .status(DTC_GROUP, "status=deployed&output=summary")
                .await?;
            Ok(if status["deployedStatus"] == "Instantiated" {
                Ok(())
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;

    // The server runs on cluster2 (KubeConfig2 is set), the client on cluster1.
    let cluster1 = Kubectl::new(sim.kubeconfig("cluster1"), scratch);
    let cluster2 = Kubectl::new(sim.kubeconfig("cluster2"), scratch);
    let policies = cluster2.get_json(&["networkpolicies", "-A"])?;
    let names: Vec<&str> = policies
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["testdtc-serverin"], "as upstream's README shows");
    let policy: &Value = &policies[0];
    assert_eq!(
        policy["spec"]["podSelector"],
        json!({"matchLabels": {"app": "http-server"}})
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "from": [{"podSelector": {"matchLabels": {"app": "http-client"}}}],
            "ports": [{"protocol": "TCP", "port": 3333}],
        }]),
        "only the declared client, on the declared port: {policy}"
    );
    ensure!(
        cluster1.get_json(&["networkpolicies", "-A"])?.is_empty(),
        "the client's cluster gets no policy"
    );
    let servers = cluster2.get_json(&["deployments", "-n", "default"])?;
    ensure!(
        servers
            .iter()
            .any(|d| d["metadata"]["name"] == "r1-http-server"),
        "the server runs on cluster2"
    );

    // Terminate removes the policy with the app.
    ctl.file_in(
        Some(&workdir),
        "apply",
        &file("terminate.yaml"),
        &values,
        &[],
    )?;
    wait_for(
        "the policy is gone",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let left = cluster2.get_json(&["networkpolicies", "-A"])?;
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} left", left.len()))
            })
        },
    )
    .await?;
    Ok(())
}
