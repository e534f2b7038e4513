//! End to end, deploying: upstream's example files, unchanged, applied with the real `emcoctl` to
//! the real hub (`emco serve`, real Helm) whose clusters are served by a real `emco sim`; what
//! lands on the clusters is checked with `kubectl`, the independent client.
//!
//! - `examples/single-cluster`, the prometheus + collectd composite app, from prerequisites to
//!   instantiate, `emcoctl status --watch`, terminate (`emcoctl delete` of the instantiate file)
//!   and the deletes.
//! - `examples/test-dependency`: collectd waits for operator Ready + 10 s, operator for nginx
//!   Ready + 10 s; the order is checked with the simulator's own timestamps.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Api, Emcoctl, Kubectl, Sim, generated, unix_seconds, upstream_example, wait_for};

/// `Kind` (core group) or `Kind.group`, as kubectl takes a type.
fn kubectl_type(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

/// (group, kind, name) of an object as kubectl printed it.
fn identity(item: &Value) -> (String, String, String) {
    let api_version = item["apiVersion"].as_str().unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group)
        .to_owned();
    (
        group,
        item["kind"].as_str().unwrap_or_default().to_owned(),
        item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// One resource of the hub's `status=deployed&output=all` answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HubResource {
    app: String,
    cluster: String,
    group: String,
    kind: String,
    name: String,
    deployed: String,
}

fn hub_resources(status: &Value) -> Vec<HubResource> {
    let mut out = Vec::new();
    for app in status["apps"].as_array().into_iter().flatten() {
        for cluster in app["clusters"].as_array().into_iter().flatten() {
            for resource in cluster["resources"].as_array().into_iter().flatten() {
                out.push(HubResource {
                    app: app["name"].as_str().unwrap_or_default().to_owned(),
                    cluster: cluster["cluster"].as_str().unwrap_or_default().to_owned(),
                    group: resource["GVK"]["Group"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    kind: resource["GVK"]["Kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    name: resource["name"].as_str().unwrap_or_default().to_owned(),
                    deployed: resource["deployedStatus"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
            }
        }
    }
    out
}

/// The kubectl types of every kind the hub deployed.
fn types_of(resources: &[HubResource]) -> String {
    let types: BTreeSet<String> = resources
        .iter()
        .map(|r| kubectl_type(&r.group, &r.kind))
        .collect();
    types.into_iter().collect::<Vec<_>>().join(",")
}

/// Checks, with kubectl on `cluster`, that every object the hub reports Applied there exists and
/// carries `emco/deployment-id: {context}-{app}`, and that nothing else carries the label.
/// Returns the labelled objects.
fn check_cluster_matches_hub(
    kubectl: &Kubectl,
    cluster: &str,
    context: &str,
    resources: &[HubResource],
) -> anyhow::Result<Vec<Value>> {
    let applied: Vec<&HubResource> = resources
        .iter()
        .filter(|r| r.cluster == cluster && r.deployed == "Applied")
        .collect();
    ensure!(!applied.is_empty(), "the hub applied nothing on {cluster}");
    let items = kubectl.labelled(&types_of(resources))?;
    let mut labels: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for item in &items {
        let label = item["metadata"]["labels"]["emco/deployment-id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        labels.insert(identity(item), label);
    }
    for resource in &applied {
        let key = (
            resource.group.clone(),
            resource.kind.clone(),
            resource.name.clone(),
        );
        let label = labels.get(&key).with_context(|| {
            format!("{cluster}: kubectl does not list {key:?} with label emco/deployment-id")
        })?;
        ensure!(
            *label == format!("{context}-{}", resource.app),
            "{cluster}: {key:?} has emco/deployment-id {label:?}, expected {context}-{}",
            resource.app
        );
    }
    let expected: BTreeSet<(String, String, String)> = applied
        .iter()
        .map(|r| (r.group.clone(), r.kind.clone(), r.name.clone()))
        .collect();
    for key in labels.keys() {
        ensure!(
            expected.contains(key),
            "{cluster}: {key:?} is labelled but the hub does not report it applied"
        );
    }
    Ok(items)
}

/// The `applied A/B, ready C/D` counts of every line `emcoctl status` printed whose part is larger
/// than its whole.
fn counts_beyond_totals(stdout: &str) -> Vec<&str> {
    let fraction = |text: &str| -> Option<(u64, u64)> {
        let digits: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '/')
            .collect();
        let (part, whole) = digits.split_once('/')?;
        Some((part.parse().ok()?, whole.parse().ok()?))
    };
    stdout
        .lines()
        .filter(|line| {
            ["applied ", "ready "].iter().any(|word| {
                line.match_indices(word)
                    .filter_map(|(at, _)| fraction(&line[at + word.len()..]))
                    .any(|(part, whole)| part > whole)
            })
        })
        .collect()
}

fn group_state(status: &Value) -> String {
    status["deployedStatus"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls the group's status until its deployed status is `wanted`.
async fn wait_deployed_status(
    api: &Api,
    group: &str,
    wanted: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{group} deployedStatus {wanted}"),
        timeout,
        Duration::from_millis(250),
        || async {
            let status = api.status(group, "status=deployed&output=summary").await?;
            let state = group_state(&status);
            Ok(if state == wanted { Ok(()) } else { Err(state) })
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// examples/single-cluster: prometheus + collectd
// ---------------------------------------------------------------------------------------------

const SINGLE_CLUSTER_GROUP: &str = "/v2/projects/proj1/composite-apps/prometheus-collectd-composite-app/v1/deployment-intent-groups/collection-deployment-intent-group";

/// The kube-prometheus-stack profile: upstream's chart (0.52) renders PodSecurityPolicies
/// (`policy/v1beta1`) unconditionally, a kind Kubernetes removed in 1.25; the simulated clusters
/// are 1.32, like a current real cluster. Upstream's generated profile only sets a service type
/// the chart ignores, so this one (what a user of a 1.25+ cluster would upload) turns the
/// PodSecurityPolicies off instead.
const KUBE_PROMETHEUS_PROFILE: &str = "global:\n  rbac:\n    pspEnabled: false\n\
grafana:\n  rbac:\n    pspEnabled: false\n\
kube-state-metrics:\n  podSecurityPolicy:\n    enabled: false\n\
prometheus-node-exporter:\n  rbac:\n    pspEnabled: false\n";

/// Upstream's generated values with `output/X` and `/path/to/...` made real: the archives the
/// setup script generated, the simulator's kubeconfig, and the profile above.
fn single_cluster_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let kube_prometheus_profile = scratch.join("kube-prometheus-stack_profile.tar.gz");
    std::fs::write(
        &kube_prometheus_profile,
        support::profile(KUBE_PROMETHEUS_PROFILE)?,
    )?;
    let profile = kube_prometheus_profile.display().to_string();
    let source = generated("examples/single-cluster/values.yaml");
    let text = support::example_values(
        &source,
        true,
        |c| sim.kubeconfig(c),
        |key| (key == "ProfileApp1").then(|| profile.clone()),
    )?;
    support::write_file(scratch.join("values.yaml"), &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_prometheus_collectd_example_deploys_and_terminates() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let scratch = scratch.path();
    let client = support::http_client()?;
    let sim = Sim::start(scratch, 1, "cluster", "1s").await?;
    let hub = support::start_hub(scratch, &client).await?;
    let api = Api {
        client: client.clone(),
        base_url: hub.base_url.clone(),
    };
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = single_cluster_values(scratch, &sim)?;
    let kubectl = Kubectl::new(sim.kubeconfig("cluster1"), scratch);

    let prerequisites = generated("examples/single-cluster/prerequisites.yaml");
    let instantiate_lc = upstream_example("single-cluster/instantiate-lc.yaml");
    let deployment = upstream_example("single-cluster/test-prometheus-collectd-deployment.yaml");
    let instantiate = upstream_example("single-cluster/test-prometheus-collectd-instantiate.yaml");

    ctl.file("apply", &prerequisites, &values, &[])?;
    let out = ctl.file("apply", &instantiate_lc, &values, &[])?;
    assert!(
        out.stdout.contains("/lc1/instantiate --> 202"),
        "{}",
        out.stdout
    );
    ctl.file("apply", &deployment, &values, &[])?;
    let out = ctl.file("apply", &instantiate, &values, &[])?;
    assert!(out.stdout.contains("/approve --> 202"), "{}", out.stdout);
    assert!(
        out.stdout.contains("/instantiate --> 202"),
        "{}",
        out.stdout
    );

    let group = SINGLE_CLUSTER_GROUP.trim_start_matches("/v2/");
    let watch = ctl.watch(group, "50s")?;
    assert_eq!(
        watch.code,
        Some(0),
        "emcoctl status --watch:\n{}\n{}\nhub:\n{}",
        watch.stdout,
        watch.stderr,
        hub.stderr()
    );
    assert!(
        watch.stdout.contains("all resources ready"),
        "{}",
        watch.stdout
    );
    // Hook objects deleted by their policy count neither as ready nor in the total.
    assert_eq!(
        counts_beyond_totals(&watch.stdout),
        Vec::<&str>::new(),
        "{}",
        watch.stdout
    );

    // What the hub says it applied is what kubectl finds, every object labelled.
    let status = api
        .status(SINGLE_CLUSTER_GROUP, "status=deployed&output=all")
        .await?;
    assert_eq!(group_state(&status), "Instantiated", "{status}");
    let context = status["states"]["statusctxid"]
        .as_str()
        .context("statusctxid")?
        .to_owned();
    let resources = hub_resources(&status);
    let apps: BTreeSet<&str> = resources.iter().map(|r| r.app.as_str()).collect();
    assert_eq!(
        apps,
        BTreeSet::from(["collectd", "kube-prometheus-stack"]),
        "{status}"
    );
    let items = check_cluster_matches_hub(&kubectl, "cluster1", &context, &resources)?;
    let found: BTreeSet<(String, String, String)> = items.iter().map(identity).collect();
    for (group, kind, name) in [
        ("apps", "DaemonSet", "r1-collectd"),
        ("", "ConfigMap", "r1-collectd-config"),
        ("", "Service", "collectd"),
        ("apps", "Deployment", "r1-kube-prometheus-stack-operator"),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "prometheuses.monitoring.coreos.com",
        ),
        (
            "monitoring.coreos.com",
            "Prometheus",
            "r1-kube-prometheus-stack-prometheus",
        ),
    ] {
        assert!(
            found.contains(&(group.to_owned(), kind.to_owned(), name.to_owned())),
            "kubectl does not show {kind} {name}: {found:?}"
        );
    }
    // The collectd DaemonSet is up as the cluster reports it.
    let daemonsets = kubectl.get_json(&["daemonsets", "-n", "default"])?;
    let collectd = daemonsets
        .iter()
        .find(|d| d["metadata"]["name"] == "r1-collectd")
        .context("r1-collectd")?;
    assert_eq!(collectd["status"]["numberReady"], 1, "{collectd}");

    // emcoctl turns the instantiate file's instantiate into terminate (and skips approve).
    let out = ctl.file("delete", &instantiate, &values, &[])?;
    assert!(out.stdout.contains("/terminate --> 202"), "{}", out.stdout);
    let types = types_of(&resources);
    // Helm keeps the CRDs of a chart's crds/ directory on uninstall; everything else goes.
    let kept = wait_for(
        "terminate removes the objects",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let left = kubectl.labelled(&types)?;
            let others: Vec<(String, String, String)> = left
                .iter()
                .map(identity)
                .filter(|(_, kind, _)| kind != "CustomResourceDefinition")
                .collect();
            Ok(if others.is_empty() {
                Ok(left)
            } else {
                Err(format!("{} objects left: {others:?}", others.len()))
            })
        },
    )
    .await?;
    let kept: BTreeSet<String> = kept.iter().map(|item| identity(item).2).collect();
    assert_eq!(kept.len(), 8, "{kept:?}");
    assert!(
        kept.iter()
            .all(|name| name.ends_with(".monitoring.coreos.com")),
        "{kept:?}"
    );
    wait_deployed_status(
        &api,
        SINGLE_CLUSTER_GROUP,
        "Terminated",
        Duration::from_secs(10),
    )
    .await?;

    // The rest deletes cleanly, in reverse.
    ctl.file("delete", &deployment, &values, &[])?;
    let out = ctl.file("delete", &instantiate_lc, &values, &[])?;
    assert!(
        out.stdout.contains("/lc1/terminate --> 202"),
        "{}",
        out.stdout
    );
    ctl.file("delete", &prerequisites, &values, &[])?;
    for collection in ["/v2/projects", "/v2/cluster-providers"] {
        let list = api
            .get(collection)
            .await?
            .expect(StatusCode::OK, collection)?
            .json()?;
        assert_eq!(
            list,
            serde_json::json!([]),
            "{collection} after the deletes"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// examples/test-dependency: nginx <- operator <- collectd
// ---------------------------------------------------------------------------------------------

const DEPENDENCY_GROUP: &str = "/v2/projects/proj-depend-1/composite-apps/test-composite-app/v1/deployment-intent-groups/test-deployment-intent";

/// How long the simulator takes to make a workload ready (`emco sim --ready-after`).
const READY_AFTER_SECS: i64 = 2;

/// The dependency waits of upstream's apps.yaml (kept as the file says: 2 x 10 s).
const WAIT_SECS: i64 = 10;

/// What upstream's `setup.sh create` writes, with the simulator's kubeconfigs for KUBE_PATH1/2
/// and its generated archives (`collectd`, `operator`, `nginx` and their `_profile`s) as the
/// packages directory.
fn dependency_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/test-dependency/values.yaml");
    let text = support::example_values(&source, true, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

/// The time (Unix seconds) of condition `kind` with status True of `object`.
fn condition_time(object: &Value, kind: &str) -> Option<i64> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| unix_seconds(t).ok())
}

/// When a run-to-completion pod (a hook) finished: its containers' `finishedAt`.
fn finished_time(pod: &Value) -> Option<i64> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .filter_map(|c| c["state"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| unix_seconds(t).ok())
        .max()
}

fn created(object: &Value) -> anyhow::Result<i64> {
    unix_seconds(
        object["metadata"]["creationTimestamp"]
            .as_str()
            .context("creationTimestamp")?,
    )
}

/// Objects of `app` (by their emco/deployment-id label) among `items`.
fn of_app<'a>(items: &'a [Value], context: &str, app: &str) -> Vec<&'a Value> {
    let label = format!("{context}-{app}");
    items
        .iter()
        .filter(|item| item["metadata"]["labels"]["emco/deployment-id"] == label.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_example_deploys_each_app_after_its_dependency_is_ready_and_waited_for()
-> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let scratch = scratch.path();
    let client = support::http_client()?;
    let sim = Sim::start(scratch, 2, "cluster", &format!("{READY_AFTER_SECS}s")).await?;
    let hub = support::start_hub(scratch, &client).await?;
    let api = Api {
        client: client.clone(),
        base_url: hub.base_url.clone(),
    };
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = dependency_values(scratch, &sim)?;
    let file = |name: &str| upstream_example(&format!("test-dependency/{name}"));

    // apply.sh, in its order.
    ctl.file("apply", &file("controllers.yaml"), &values, &[])?;
    // Upstream's projects.yaml instantiates the logical cloud before logicalclouds.yaml created
    // it (apply.sh ignores the failure; upstream's hub answers 404 as well).
    let out = ctl.file(
        "apply",
        &file("projects.yaml"),
        &values,
        &["POST /v2/projects/proj-depend-1/logical-clouds/default/instantiate --> 404"],
    )?;
    assert_eq!(out.failures().len(), 1, "{}", out.stdout);
    for name in [
        "clusters.yaml",
        "logicalclouds.yaml",
        "instantiatelc.yaml",
        "apps.yaml",
        "intents.yaml",
        "instantiate.yaml",
    ] {
        ctl.file("apply", &file(name), &values, &[])?;
    }
    let group = DEPENDENCY_GROUP.trim_start_matches("/v2/");
    let watch = ctl.watch(group, "55s")?;
    assert_eq!(
        watch.code,
        Some(0),
        "emcoctl status --watch:\n{}\n{}\nhub:\n{}",
        watch.stdout,
        watch.stderr,
        hub.stderr()
    );

    let status = api
        .status(DEPENDENCY_GROUP, "status=deployed&output=all")
        .await?;
    let context = status["states"]["statusctxid"]
        .as_str()
        .context("statusctxid")?
        .to_owned();
    let resources = hub_resources(&status);
    let placed: BTreeSet<(&str, &str)> = resources
        .iter()
        .map(|r| (r.app.as_str(), r.cluster.as_str()))
        .collect();
    assert_eq!(
        placed,
        BTreeSet::from([
            ("collectd", "cluster1"),
            ("collectd", "cluster2"),
            ("nginx", "cluster1"),
            ("nginx", "cluster2"),
            ("operator", "cluster1"),
        ]),
        "placement as values.yaml's Applist says"
    );
    let kubectls = [
        Kubectl::new(sim.kubeconfig("cluster1"), scratch),
        Kubectl::new(sim.kubeconfig("cluster2"), scratch),
    ];
    let mut items = Vec::new();
    for (cluster, kubectl) in ["cluster1", "cluster2"].iter().zip(&kubectls) {
        items.extend(check_cluster_matches_hub(
            kubectl, cluster, &context, &resources,
        )?);
    }

    // nginx: the group's override (service.type NodePort) reached the cluster; its pre-install
    // hook ran (to completion) before its resources; it is ready when its Deployment is
    // Available and its post-install hook pod has finished (the simulator's own times).
    let nginx = of_app(&items, &context, "nginx");
    let mut nginx_ready = 0;
    let mut nginx_deployments = 0;
    for object in &nginx {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        match (object["kind"].as_str().unwrap_or_default(), name) {
            ("Service", "r1-nginx") => {
                assert_eq!(object["spec"]["type"], "NodePort", "{object}")
            }
            ("Deployment", _) => {
                nginx_deployments += 1;
                let available = condition_time(object, "Available").context("Available")?;
                nginx_ready = nginx_ready.max(available);
            }
            ("Pod", "post-install-hook-pod") => {
                nginx_ready = nginx_ready.max(finished_time(object).context("hook finished")?);
            }
            _ => {}
        }
    }
    assert_eq!(nginx_deployments, 2, "one nginx Deployment per cluster");
    for kubectl in &kubectls {
        let pods = kubectl.get_json(&["pods", "-n", "default"])?;
        let deployments = kubectl.get_json(&["deployments", "-n", "default"])?;
        let hook = pods
            .iter()
            .find(|p| p["metadata"]["name"] == "pre-install-hook-pod")
            .context("pre-install-hook-pod")?;
        let hook_done = finished_time(hook).context("hook finished")?;
        let deployment = deployments
            .iter()
            .find(|d| d["metadata"]["name"] == "r1-nginx")
            .context("r1-nginx")?;
        assert!(
            created(deployment)? >= hook_done,
            "nginx's Deployment was created before its pre-install hook was done"
        );
    }

    // operator (cluster1 only) starts no earlier than nginx ready + 10 s.
    let operator = of_app(&items, &context, "operator");
    ensure!(!operator.is_empty(), "kubectl shows no operator objects");
    let operator_first = operator
        .iter()
        .map(|o| created(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let operator_start = operator_first.iter().copied().min().unwrap_or_default();
    let operator_last = operator_first.iter().copied().max().unwrap_or_default();
    assert!(
        operator_start >= nginx_ready + WAIT_SECS,
        "operator created at {operator_start}, nginx ready at {nginx_ready}: less than {WAIT_SECS} s apart"
    );
    // Its StatefulSets carry no ready time; the simulator makes them ready READY_AFTER_SECS after
    // they changed, so that is the earliest operator can have been ready.
    let operator_ready_at_least = operator_last + READY_AFTER_SECS;
    let collectd = of_app(&items, &context, "collectd");
    assert_eq!(
        collectd.iter().filter(|o| o["kind"] == "DaemonSet").count(),
        2,
        "collectd's DaemonSet on both clusters"
    );
    let collectd_start = collectd
        .iter()
        .map(|o| created(o))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .min()
        .unwrap_or_default();
    assert!(
        collectd_start >= operator_ready_at_least + WAIT_SECS,
        "collectd created at {collectd_start}, operator ready at {operator_ready_at_least} at the \
         earliest: less than {WAIT_SECS} s apart"
    );
    println!(
        "nginx ready at +0 s, operator created at +{} s, operator ready at +{} s at the earliest, \
         collectd created at +{} s",
        operator_start - nginx_ready,
        operator_ready_at_least - nginx_ready,
        collectd_start - nginx_ready
    );

    // delete.sh, in its order.
    let out = ctl.file("apply", &file("terminate.yaml"), &values, &[])?;
    assert!(out.stdout.contains("/terminate --> 202"), "{}", out.stdout);
    wait_deployed_status(
        &api,
        DEPENDENCY_GROUP,
        "Terminated",
        Duration::from_secs(30),
    )
    .await?;
    let types = types_of(&resources);
    // Nothing stays, nginx's two hook Pods included: like upstream's rsync, the hub deletes every
    // hook object at terminate (`helm uninstall` would keep hooks without a delete policy).
    for kubectl in &kubectls {
        let left: BTreeSet<(String, String, String)> =
            kubectl.labelled(&types)?.iter().map(identity).collect();
        assert!(left.is_empty(), "left after terminate: {left:?}");
    }
    ctl.file("delete", &file("intents.yaml"), &values, &[])?;
    ctl.file("delete", &file("apps.yaml"), &values, &[])?;
    let out = ctl.file("apply", &file("terminatelc.yaml"), &values, &[])?;
    assert!(
        out.stdout.contains("/default/terminate --> 202"),
        "{}",
        out.stdout
    );
    ctl.file("delete", &file("logicalclouds.yaml"), &values, &[])?;
    ctl.file("delete", &file("clusters.yaml"), &values, &[])?;
    // projects.yaml holds only the logical cloud's instantiate, which delete turns into a
    // terminate of the cloud deleted above.
    ctl.file(
        "delete",
        &file("projects.yaml"),
        &values,
        &["POST /v2/projects/proj-depend-1/logical-clouds/default/terminate --> 404"],
    )?;
    ctl.file("delete", &file("controllers.yaml"), &values, &[])?;
    for collection in ["/v2/projects", "/v2/cluster-providers", "/v2/controllers"] {
        let list = api
            .get(collection)
            .await?
            .expect(StatusCode::OK, collection)?
            .json()?;
        assert_eq!(
            list,
            serde_json::json!([]),
            "{collection} after the deletes"
        );
    }
    Ok(())
}

#[test]
fn counts_beyond_totals_finds_a_part_larger_than_its_whole() {
    let stdout = "[5.8s] g kube-prometheus-stack @ p+c1: Available, applied 116/117, ready 118/117\n\
                  [7.3s] g collectd @ p+c1: Available, applied 3/3, ready 3/3\n";
    assert_eq!(
        counts_beyond_totals(stdout),
        ["[5.8s] g kube-prometheus-stack @ p+c1: Available, applied 116/117, ready 118/117"]
    );
}
