//! End to end, controllers beyond GAC (see `update_examples.rs` for it):
//! - upstream's `examples/dtc/network_policy` unchanged through the real `emcoctl`, the real hub
//!   and two simulated clusters; `kubectl` shows the NetworkPolicy the traffic controller's
//!   `nps` sub-controller generated;
//! - upstream's `examples/dtc/service_discovery` (logical cloud level 0; the private-cluster
//!   NodePort and the public-cluster LoadBalancer scenarios): `sds` gives the client's cluster
//!   the server's Service, and kubectl shows it pointing at the server's cluster;
//! - `examples/gpu-placement`, an external placement controller the hub calls over gRPC,
//!   registered through `/v2/controllers` with its own schema and resources;
//! - an external action controller (served by the test) changing and adding objects per cluster;
//! - `examples/clm-events`, cluster-manager controllers told of clusters created, updated and
//!   deleted, in priority order, a controller that is down stopping nothing.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use support::{Emcoctl, Kubectl, Sim, generated, upstream_example, wait_for};

const DTC_GROUP: &str = "/v2/projects/proj1/composite-apps/collection-composite-app/v1/deployment-intent-groups/collection-deployment-intent-group";

/// Upstream's generated values with the simulator's kubeconfigs.
fn dtc_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/dtc/network_policy/values.yaml");
    let text = support::example_values(&source, true, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_example_admits_the_declared_client_on_the_servers_cluster()
-> anyhow::Result<()> {
    let bed = support::Bed::start(2, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = dtc_values(scratch, sim)?;
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

// ---------------------------------------------------------------------------------------------
// Service discovery: examples/dtc/service_discovery
// ---------------------------------------------------------------------------------------------

/// The working directory `apply.sh` would leave: `values.yaml` (what `setup.sh create` writes,
/// with the simulator's kubeconfigs) and `output/` with the charts and the service discovery
/// profiles of the private (NodePort) or public (LoadBalancer) scenario.
fn service_discovery_workdir(
    scratch: &Path,
    sim: &Sim,
    public: bool,
    cloud: &str,
) -> anyhow::Result<PathBuf> {
    let workdir = scratch.join("sds");
    let output = workdir.join("output");
    std::fs::create_dir_all(&output)?;
    for chart in ["http-server.tgz", "http-client.tgz"] {
        std::os::unix::fs::symlink(generated(&format!("tarballs/{chart}")), output.join(chart))?;
    }
    let scenario = if public {
        "public_cluster"
    } else {
        "private_cluster"
    };
    for app in ["http-server", "http-client"] {
        let profile = upstream_example(&format!(
            "helm_charts/{app}/profile/service_discovery_overrides/{scenario}/{app}-profile"
        ));
        let archive = output.join(format!("{app}-profile.tar.gz"));
        let status = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&profile)
            .arg(".")
            .status()?;
        ensure!(status.success(), "tar of {}", profile.display());
    }
    let values = format!(
        "KubeConfig1: {}\nKubeConfig2: {}\nProjectName: proj1\nCompositeApp: collection-composite-app\n\
         DeploymentIntentGroup: collection-deployment-intent-group\nHostIP: 192.0.2.10\n\
         RsyncPort: 30431\nDtcPort: 30448\nNpsPort: 30438\nSdsPort: 30439\n\
         HttpServerImageRepository: registry.example.com/my-custom-httptest-server\n\
         HttpClientImageRepository: registry.example.com/my-custom-httptest-client\n\
         PublicCluster2: {public}\nLogicalCloud: {cloud}\n",
        sim.kubeconfig("cluster1").display(),
        sim.kubeconfig("cluster2").display(),
    );
    std::fs::write(workdir.join("values.yaml"), values)?;
    Ok(workdir)
}

/// `apply.sh` for logical cloud level 0, then the checks of upstream's README: the client's
/// cluster has the server's Service by name, pointing where the server's cluster exposes it.
/// `level1`: the `LC_LEVEL=1` scenario, a standard logical cloud `lc1` (namespace `ns1`, a
/// permission, quotas) instead of the admin cloud `default`.
async fn service_discovery_example(public: bool, level1: bool) -> anyhow::Result<()> {
    let (cloud, namespace) = if level1 {
        ("lc1", "ns1")
    } else {
        ("default", "default")
    };
    let bed = support::Bed::start(2, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let (sim, hub, api) = (&bed.sim, &bed.hub, &bed.api);
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let workdir = service_discovery_workdir(scratch, sim, public, cloud)?;
    let values = workdir.join("values.yaml");
    let file = |name: &str| upstream_example(&format!("dtc/service_discovery/{name}"));
    for name in [
        "controllers.yaml",
        "projects.yaml",
        "clusters.yaml",
        if level1 {
            "l1_logical_cloud/logicalclouds.yaml"
        } else {
            "l0_logical_cloud/logicalclouds.yaml"
        },
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

    // The client runs on cluster1 (label edge-cluster), the server on cluster2.
    let cluster1 = Kubectl::new(sim.kubeconfig("cluster1"), scratch);
    let cluster2 = Kubectl::new(sim.kubeconfig("cluster2"), scratch);
    let server_service = cluster2
        .get_json(&["services", "-n", namespace])?
        .into_iter()
        .find(|s| s["metadata"]["name"] == "http-service")
        .context("the server's own Service")?;
    let expected_type = if public { "LoadBalancer" } else { "NodePort" };
    assert_eq!(server_service["spec"]["type"], expected_type);
    let address = if public {
        server_service["status"]["loadBalancer"]["ingress"][0]["ip"].clone()
    } else {
        let nodes = cluster2.get_json(&["nodes"])?;
        nodes[0]["status"]["addresses"][0]["address"].clone()
    };
    ensure!(
        address.is_string(),
        "the server's cluster gives an address: {server_service}"
    );
    let endpoints = wait_for(
        "the client's cluster has the server's endpoints",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let found = cluster1.get_json(&["endpoints", "-n", namespace])?;
            Ok(found
                .into_iter()
                .find(|e| e["metadata"]["name"] == "http-service")
                .ok_or_else(|| "no endpoints yet".to_owned()))
        },
    )
    .await?;
    // The chart's Service: port 30083, node port 30083, TCP.
    assert_eq!(
        endpoints["subsets"],
        json!([{"addresses": [{"ip": address}],
            "ports": [{"name": "tcp-30083", "port": 30083, "protocol": "TCP"}]}])
    );
    let client_services = cluster1.get_json(&["services", "-n", namespace])?;
    let service = client_services
        .iter()
        .find(|s| s["metadata"]["name"] == "http-service")
        .context("the client's cluster has the Service")?;
    assert_eq!(
        service["spec"]["type"], "ClusterIP",
        "as upstream's README shows"
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 30083);
    // What `kubectl get svc` prints, as in upstream's README.
    let printed = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(sim.kubeconfig("cluster1"))
        .args([
            "get",
            "svc",
            "http-service",
            "--no-headers",
            "-n",
            namespace,
        ])
        .output()?;
    let printed = String::from_utf8_lossy(&printed.stdout);
    ensure!(
        printed.contains("http-service")
            && printed.contains("ClusterIP")
            && printed.contains("30083/TCP"),
        "kubectl get svc: {printed}"
    );
    if level1 {
        // The cloud's quota and the user's role are on both clusters, in its namespace.
        for admin in [&cluster1, &cluster2] {
            let quotas = admin.get_json(&["resourcequotas", "-n", namespace])?;
            ensure!(
                quotas
                    .iter()
                    .any(|q| q["metadata"]["name"] == "quota-1"
                        && q["spec"]["hard"]["pods"] == "500"),
                "the cloud's quota: {quotas:?}"
            );
            let roles = admin.get_json(&["roles", "-n", namespace])?;
            ensure!(roles.iter().any(|r| r["metadata"]["name"] == "lc1-role0"));
        }
    }
    // nps runs too (priority 1, before sds): the server's policy, on the server's cluster.
    let policies = cluster2.get_json(&["networkpolicies", "-A"])?;
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0]["metadata"]["name"], "testdtc-serverin");

    // delete.sh's first step: terminate takes the discovered objects away with the apps.
    ctl.file_in(
        Some(&workdir),
        "apply",
        &file("terminate.yaml"),
        &values,
        &[],
    )?;
    wait_for(
        "the discovered Service and Endpoints are gone",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let left: Vec<String> = cluster1
                .get_json(&["services,endpoints", "-n", namespace])?
                .iter()
                .filter(|o| o["metadata"]["name"] == "http-service")
                .map(|o| o["kind"].to_string())
                .collect();
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(left.join(", "))
            })
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_example_reaches_a_node_port_server_from_the_clients_cluster()
-> anyhow::Result<()> {
    service_discovery_example(false, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_example_reaches_a_load_balanced_server_from_the_clients_cluster()
-> anyhow::Result<()> {
    service_discovery_example(true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_example_works_in_a_standard_logical_cloud() -> anyhow::Result<()> {
    service_discovery_example(false, true).await
}

// ---------------------------------------------------------------------------------------------
// An external placement controller over gRPC: examples/gpu-placement
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_placement_controller_keeps_the_app_off_clusters_without_free_gpus()
-> anyhow::Result<()> {
    let bed = support::Bed::start(3, "edge", "200ms").await?;
    let scratch = bed.scratch();
    let client = &bed.client;
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;

    // The controller, served over gRPC on loopback (in this process), registers its schema.
    gpu_placement::register_schema(client, &hub.base_url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let controller = gpu_placement::GpuPlacement::new(&hub.base_url, client.clone());
    let serving = tokio::spawn(gpu_placement::serve(listener, controller));
    api.create(
        "/v2/controllers",
        &json!({"metadata": {"name": "gpu"},
                "spec": {"host": "127.0.0.1", "port": port, "type": "placement", "priority": 1}}),
    )
    .await?;

    // Three labelled clusters advertising 4, 1 and 8 free GPUs.
    api.clusters(sim, "prov", &["edge1", "edge2", "edge3"], Some("edge"))
        .await?;
    for (name, free) in [("edge1", "4"), ("edge2", "1"), ("edge3", "8")] {
        api.create(
            &format!("/v2/cluster-providers/prov/clusters/{name}/kv-pairs"),
            &json!({"metadata": {"name": "gpu"}, "spec": {"kv": [{"gpus-free": free}]}}),
        )
        .await?;
    }
    api.project_with_admin_cloud("p", "prov", &["edge1", "edge2", "edge3"])
        .await?;
    let base = api
        .composite_app("p", "ml", "v1", "trainer", support::web_chart("trainer")?)
        .await?;
    let group = api
        .group(
            &base,
            "dig",
            "trainer",
            json!([{"clusterProvider": "prov", "clusterLabel": "edge"}]),
            json!({"gpu": "needs-2"}),
        )
        .await?;
    // The controller's own resource, through the generic resource API: integrity applies (an
    // intent for an app the composite app does not have is refused).
    let gpu_intents = "/v2/resources/gpuIntent/p/ml/v1/dig";
    let answer = api
        .post_json(
            gpu_intents,
            &json!({"metadata": {"name": "bad"}, "spec": {"app": "nope", "gpus": 2}}),
        )
        .await?;
    assert_eq!(
        answer.status,
        reqwest::StatusCode::CONFLICT,
        "{}",
        answer.body
    );
    api.create(
        gpu_intents,
        &json!({"metadata": {"name": "needs-2"}, "spec": {"app": "trainer", "gpus": 2}}),
    )
    .await?;
    api.accepted(&format!("{group}/approve")).await?;
    api.accepted(&format!("{group}/instantiate")).await?;
    let status = wait_for(
        "Instantiated",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let status = api.status(&group, "status=deployed&output=all").await?;
            Ok(if status["deployedStatus"] == "Instantiated" {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    let clusters: Vec<&str> = status["apps"][0]["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cluster"].as_str())
        .collect();
    assert_eq!(clusters, ["edge1", "edge3"], "{status}");
    for (index, expected) in [(1, true), (2, false), (3, true)] {
        let kubectl = Kubectl::new(sim.kubeconfig(&format!("edge{index}")), scratch);
        let deployments = kubectl.get_json(&["deployments", "-n", "default"])?;
        assert_eq!(
            deployments
                .iter()
                .any(|d| d["metadata"]["name"] == "r1-trainer"),
            expected,
            "edge{index}"
        );
    }

    // With the controller down, an update is refused naming it, and nothing changes.
    serving.abort();
    let answer = api.action(&format!("{group}/update")).await?;
    assert_eq!(
        answer.status,
        reqwest::StatusCode::BAD_REQUEST,
        "{}",
        answer.body
    );
    ensure!(answer.body.contains("\"gpu\""), "{}", answer.body);
    let status = api.status(&group, "status=deployed&output=summary").await?;
    assert_eq!(status["deployedStatus"], "Instantiated");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// An external action controller over gRPC
// ---------------------------------------------------------------------------------------------

/// Annotates every Deployment with the cluster it goes to, and adds a ConfigMap naming it.
struct Stamp;

#[tonic::async_trait]
impl emco_controller::v1::action_controller_server::ActionController for Stamp {
    async fn customise(
        &self,
        request: tonic::Request<emco_controller::v1::CustomiseRequest>,
    ) -> Result<tonic::Response<emco_controller::v1::CustomiseResponse>, tonic::Status> {
        let request = request.into_inner();
        let intent = request.group.map(|group| group.intent).unwrap_or_default();
        let mut changed = Vec::new();
        for mut entry in request.apps {
            let cluster = entry
                .cluster
                .as_ref()
                .map(|cluster| cluster.name.clone())
                .unwrap_or_default();
            let mut objects = Vec::with_capacity(entry.objects.len() + 1);
            for text in &entry.objects {
                let mut object: Value = serde_json::from_str(text)
                    .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
                if object["kind"] == "Deployment" {
                    object["metadata"]["annotations"]["example.com/cluster"] = json!(cluster);
                }
                objects.push(object.to_string());
            }
            objects.push(
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": format!("{}-stamp", entry.app)},
                       "data": {"cluster": cluster, "intent": intent}})
                .to_string(),
            );
            entry.objects = objects;
            changed.push(entry);
        }
        Ok(tonic::Response::new(
            emco_controller::v1::CustomiseResponse { changed },
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_action_controller_changes_and_adds_objects_per_cluster() -> anyhow::Result<()>
{
    let bed = support::Bed::start(2, "edge", "200ms").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let api = &bed.api;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                emco_controller::v1::action_controller_server::ActionControllerServer::new(Stamp),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    api.create(
        "/v2/controllers",
        &json!({"metadata": {"name": "stamp"},
                "spec": {"host": "127.0.0.1", "port": port, "type": "action", "priority": 1}}),
    )
    .await?;
    api.clusters(sim, "prov", &["edge1", "edge2"], None).await?;
    api.project_with_admin_cloud("p", "prov", &["edge1", "edge2"])
        .await?;
    let base = api
        .composite_app("p", "web", "v1", "site", support::web_chart("site")?)
        .await?;
    let group = api
        .group(
            &base,
            "dig",
            "site",
            json!([
                {"clusterProvider": "prov", "cluster": "edge1"},
                {"clusterProvider": "prov", "cluster": "edge2"}
            ]),
            json!({"stamp": "blue"}),
        )
        .await?;
    api.accepted(&format!("{group}/approve")).await?;
    api.accepted(&format!("{group}/instantiate")).await?;
    wait_for(
        "Instantiated",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let status = api.status(&group, "status=deployed&output=summary").await?;
            Ok(if status["deployedStatus"] == "Instantiated" {
                Ok(())
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    for index in 1..=2 {
        let kubectl = Kubectl::new(sim.kubeconfig(&format!("edge{index}")), scratch);
        let deployments = kubectl.get_json(&["deployments", "-n", "default"])?;
        let site = deployments
            .iter()
            .find(|d| d["metadata"]["name"] == "r1-site")
            .context("r1-site")?;
        assert_eq!(
            site["metadata"]["annotations"]["example.com/cluster"],
            format!("edge{index}")
        );
        let maps = kubectl.get_json(&["configmaps", "-n", "default"])?;
        let stamp = maps
            .iter()
            .find(|m| m["metadata"]["name"] == "site-stamp")
            .context("site-stamp")?;
        assert_eq!(
            stamp["data"],
            json!({"cluster": format!("edge{index}"), "intent": "blue"})
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cluster-manager controllers: examples/clm-events
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manager_controllers_are_told_of_cluster_changes_in_priority_order()
-> anyhow::Result<()> {
    let bed = support::Bed::start(1, "edge-", "1s").await?;
    let api = &bed.api;
    // Two example controllers, and one registered controller that is down.
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut controllers = Vec::new();
    for (name, priority) in [("second", 2), ("first", 1)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let seen = order.clone();
        let controller = clm_events::ClmEvents::default().with_callback(move |event| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(format!("{name}:{}:{}", event.event, event.cluster));
            }
        });
        tokio::spawn(clm_events::serve(listener, controller.clone()));
        api.create(
            "/v2/clm-controllers",
            &json!({"metadata": {"name": name}, "spec": {"host": "127.0.0.1", "port": port, "priority": priority}}),
        )
        .await?;
        controllers.push(controller);
    }
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dead_port = closed.local_addr()?.port();
    drop(closed);
    api.create(
        "/v2/clm-controllers",
        &json!({"metadata": {"name": "down"}, "spec": {"host": "127.0.0.1", "port": dead_port, "priority": 0}}),
    )
    .await?;

    // Created (the controller that is down does not stop it), updated, deleted.
    api.clusters(&bed.sim, "provider1", &["edge-1"], None)
        .await?;
    let cluster = "/v2/cluster-providers/provider1/clusters/edge-1";
    let updated = bed
        .client
        .put(format!("{}{cluster}", api.base_url))
        .json(&json!({"metadata": {"name": "edge-1", "description": "moved to rack 2"}}))
        .send()
        .await?;
    ensure!(
        updated.status() == reqwest::StatusCode::OK,
        "PUT: {}",
        updated.status()
    );
    api.delete(cluster)
        .await?
        .expect(reqwest::StatusCode::NO_CONTENT, "delete")?;

    let seen = order.lock().map(|seen| seen.clone()).unwrap_or_default();
    assert_eq!(
        seen,
        [
            "first:CLUSTER_CREATED:edge-1",
            "second:CLUSTER_CREATED:edge-1",
            "first:CLUSTER_UPDATED:edge-1",
            "second:CLUSTER_UPDATED:edge-1",
            "first:CLUSTER_DELETED:edge-1",
            "second:CLUSTER_DELETED:edge-1",
        ],
        "each event once per controller, lowest priority number first"
    );
    assert_eq!(controllers[0].events()[0].provider, "provider1");
    Ok(())
}
