//! End to end, updating a running deployment: the real `emcoctl`, the real hub (`emco serve`,
//! real Helm), clusters served by a real `emco sim`, `kubectl` as the independent client.
//!
//! - `examples/test-update`, unchanged and in its README's order: collectd instantiated on
//!   cluster1; the placement intent updated to cluster2 (`emcoctl update`), `update` moves the app;
//!   `rollback` to revision 1 brings it back; terminate.
//! - A chart update through the REST API (one Deployment's image changes: one write per
//!   cluster), concurrent lifecycle calls, and `migrate` to another version of the composite app.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Api, Emcoctl, Kubectl, Sim, generated, upstream_example, wait_for};

/// Upstream's generated values for test-update, with the simulator's kubeconfigs and the
/// generated archives as the packages directory.
fn update_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/test-update/values.yaml");
    let text = support::example_values(&source, true, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

const UPDATE_GROUP: &str = "/v2/projects/proj-update-1/composite-apps/test-composite-app/v1/deployment-intent-groups/test-deployment-intent";

/// Names of the objects labelled `emco/deployment-id={label}` that kubectl lists on a cluster.
fn labelled_names(kubectl: &Kubectl, label: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(kubectl
        .get_json(&[
            "daemonsets,configmaps,services",
            "-A",
            "-l",
            &format!("emco/deployment-id={label}"),
        ])?
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or_default(),
                item["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// (state, revision, instance) of every action of the group's status.
fn actions(status: &Value) -> Vec<(String, u64, String)> {
    status["states"]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|action| {
            (
                action["state"].as_str().unwrap_or_default().to_owned(),
                action["revision"].as_u64().unwrap_or_default(),
                action["instance"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until kubectl finds exactly `expected` (by `Kind/name`, labelled `label`) on each of
/// the clusters.
async fn wait_objects(
    what: &str,
    kubectls: &[(&str, &Kubectl)],
    label: &str,
    expected: &[(&str, &BTreeSet<String>)],
) -> anyhow::Result<()> {
    wait_for(
        what,
        Duration::from_secs(40),
        Duration::from_millis(300),
        || async {
            for ((cluster, kubectl), (_, want)) in kubectls.iter().zip(expected) {
                let found = labelled_names(kubectl, label)?;
                if found != **want {
                    return Ok(Err(format!("{cluster}: {found:?}, expected {want:?}")));
                }
            }
            Ok(Ok(()))
        },
    )
    .await
}

/// Polls the group's summary until the deploy run's status (`deployedStatus`) is `wanted` and
/// everything applied is ready.
async fn wait_run(api: &Api, group: &str, wanted: &str) -> anyhow::Result<Value> {
    wait_for(
        &format!("{group} {wanted}"),
        Duration::from_secs(40),
        Duration::from_millis(250),
        || async {
            let status = api.status(group, "status=deployed&output=summary").await?;
            let state = status["deployedStatus"].as_str().unwrap_or_default();
            Ok(if state == wanted {
                Ok(status)
            } else {
                Err(format!("{state}: {status}"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_example_moves_collectd_to_cluster2_and_rollback_brings_it_back()
-> anyhow::Result<()> {
    let bed = support::Bed::start(2, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = update_values(scratch, sim)?;
    let file = |name: &str| upstream_example(&format!("test-update/{name}"));
    let cluster1 = Kubectl::new(sim.kubeconfig("cluster1"), scratch);
    let cluster2 = Kubectl::new(sim.kubeconfig("cluster2"), scratch);
    let kubectls = [("cluster1", &cluster1), ("cluster2", &cluster2)];

    for name in [
        "00-controllers.yaml",
        "01-prerequisites.yaml",
        "02-deployment-intent.yaml",
        "03-instantiation.yaml",
    ] {
        ctl.file("apply", &file(name), &values, &[])?;
    }
    let status = wait_run(api, UPDATE_GROUP, "Instantiated").await?;
    let first = status["states"]["statusctxid"]
        .as_str()
        .context("statusctxid")?
        .to_owned();
    let label = format!("{first}-collectd");
    let collectd = labelled_names(&cluster1, &label)?;
    ensure!(
        collectd.contains("DaemonSet/update-test-1-collectd"),
        "collectd on cluster1: {collectd:?}"
    );
    let nothing = BTreeSet::new();
    wait_objects(
        "collectd on cluster1 only",
        &kubectls,
        &label,
        &[("cluster1", &collectd), ("cluster2", &nothing)],
    )
    .await?;

    // The README's update: the placement intent now names cluster2, then `update`.
    let out = ctl.file(
        "update",
        &file("04-update-deployment-intent.yaml"),
        &values,
        &[],
    )?;
    ensure!(out.stdout.contains("--> 200"), "{}", out.stdout);
    let out = ctl.file("apply", &file("05-update.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("/update --> 202"), "{}", out.stdout);
    wait_objects(
        "collectd moved to cluster2",
        &kubectls,
        &label,
        &[("cluster1", &nothing), ("cluster2", &collectd)],
    )
    .await?;
    let status = wait_run(api, UPDATE_GROUP, "Updated").await?;
    // Without the creation entry (upstream records one; this hub does not).
    let history: Vec<_> = actions(&status)
        .into_iter()
        .filter(|(state, _, _)| state != "Created")
        .collect();
    let second = history.last().context("an action")?.2.clone();
    ensure!(
        second != first,
        "the update made a new context: {history:?}"
    );
    assert_eq!(
        history
            .iter()
            .map(|(state, revision, _)| (state.as_str(), *revision))
            .collect::<Vec<_>>(),
        [
            ("Approved", 0),
            ("Instantiated", 1),
            ("Updated", 1),
            ("Instantiated", 2),
        ],
        "{status}"
    );
    assert_eq!(status["states"]["statusctxid"], first.as_str());

    // Rollback to revision 1: collectd goes back to cluster1, as the first context had it.
    let out = ctl.file("apply", &file("06-rollback.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("/rollback --> 202"), "{}", out.stdout);
    wait_objects(
        "collectd back on cluster1",
        &kubectls,
        &label,
        &[("cluster1", &collectd), ("cluster2", &nothing)],
    )
    .await?;
    let status = wait_run(api, UPDATE_GROUP, "Updated").await?;
    let history: Vec<_> = actions(&status)
        .into_iter()
        .filter(|(state, _, _)| state != "Created")
        .collect();
    assert_eq!(
        history[4..]
            .iter()
            .map(|(state, revision, instance)| (state.as_str(), *revision, instance.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Updated", 2, second.as_str()),
            ("Instantiated", 3, first.as_str()),
        ],
        "{status}"
    );
    // Per-resource detail says what the rollback did.
    let detail = api
        .status(
            UPDATE_GROUP,
            "status=deployed&output=detail&resource=update-test-1-collectd",
        )
        .await?;
    ensure!(
        detail.to_string().contains(r#""lastAction":"created""#),
        "{detail}"
    );

    // Rolling back to the running revision, or to one that never was, is refused.
    let rollback = format!("{UPDATE_GROUP}/rollback");
    let answer = api
        .post_json(&rollback, &json!({"spec": {"revision": "3"}}))
        .await?;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let answer = api
        .post_json(&rollback, &json!({"spec": {"revision": "9"}}))
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    ensure!(answer.body.contains("spec.revision"), "{}", answer.body);
    let answer = api.post_json(&rollback, &json!({"spec": {}})).await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    // Delete in reverse, as the README says: terminate removes collectd.
    let out = ctl.file("delete", &file("03-instantiation.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("/terminate --> 202"), "{}", out.stdout);
    wait_objects(
        "terminate removes collectd",
        &kubectls,
        &label,
        &[("cluster1", &nothing), ("cluster2", &nothing)],
    )
    .await?;
    wait_run(api, UPDATE_GROUP, "Terminated").await?;
    ctl.file("delete", &file("02-deployment-intent.yaml"), &values, &[])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A chart update, concurrent calls and migrate, through the REST API
// ---------------------------------------------------------------------------------------------

const PROJECT: &str = "/v2/projects/p";

fn web_chart(image: &str) -> anyhow::Result<Vec<u8>> {
    support::chart(
        "web",
        "replicas: 1\n",
        &[
            (
                "configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-conf\ndata:\n  greeting: hello\n",
            ),
            (
                "service.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
            ),
            (
                "deployment.yaml",
                &format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n\
                     spec:\n  replicas: {{{{ .Values.replicas }}}}\n  selector:\n    matchLabels: {{app: web}}\n\
                     \x20 template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n\
                     \x20     containers:\n      - name: web\n        image: {image}\n"
                ),
            ),
        ],
    )
}

/// Version `version` of composite app `ca` with app `web` (chart with `image`) and group `dig`
/// placing web on every cluster of the provider labelled `edge`.
async fn define_version(api: &Api, version: &str, dig: &str, image: &str) -> anyhow::Result<()> {
    let base = api
        .composite_app("p", "ca", version, "web", web_chart(image)?)
        .await?;
    api.group(
        &base,
        dig,
        "web",
        json!([{"clusterProvider": "prov", "clusterLabel": "edge"}]),
        json!({}),
    )
    .await?;
    Ok(())
}

/// Write requests the simulated clusters answered so far.
async fn sim_writes(client: &reqwest::Client, sim: &Sim) -> anyhow::Result<u64> {
    let stats: Value = client
        .get(format!("{}/sim/stats", sim.base_url))
        .send()
        .await?
        .json()
        .await?;
    stats["writes"].as_u64().context("writes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_update_sends_one_object_per_cluster_and_migrate_moves_the_deployment()
-> anyhow::Result<()> {
    let bed = support::Bed::start(3, "edge", "200ms").await?;
    let scratch = bed.scratch();
    let client = &bed.client;
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    api.clusters(sim, "prov", &["edge1", "edge2", "edge3"], Some("edge"))
        .await?;
    api.project_with_admin_cloud("p", "prov", &["edge1", "edge2", "edge3"])
        .await?;
    define_version(api, "v1", "dig", "nginx:1.27").await?;
    let group = format!("{PROJECT}/composite-apps/ca/v1/deployment-intent-groups/dig");
    api.accepted(&format!("{group}/approve")).await?;
    api.accepted(&format!("{group}/instantiate")).await?;
    wait_run(api, &group, "Instantiated").await?;

    // A new chart for web: only its Deployment's image differs.
    let writes_before = sim_writes(client, sim).await?;
    let answer = client
        .put(format!(
            "{}{PROJECT}/composite-apps/ca/v1/apps/web",
            hub.base_url
        ))
        .multipart(
            reqwest::multipart::Form::new()
                .text("metadata", json!({"metadata": {"name": "web"}}).to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(web_chart("nginx:1.28")?).file_name("web.tgz"),
                ),
        )
        .send()
        .await?;
    ensure!(answer.status().is_success(), "PUT app: {}", answer.status());

    // Concurrent updates: serialised, never interleaved; the later one is refused (409) while
    // the first runs, or runs after it.
    let update = format!("{}{group}/update", hub.base_url);
    let (a, b) = tokio::join!(client.post(&update).send(), client.post(&update).send());
    let (a, b) = (a?, b?);
    let statuses = [a.status(), b.status()];
    ensure!(
        statuses.contains(&StatusCode::ACCEPTED)
            && statuses
                .iter()
                .all(|s| *s == StatusCode::ACCEPTED || *s == StatusCode::CONFLICT),
        "concurrent updates answered {statuses:?}"
    );
    let accepted = if a.status() == StatusCode::ACCEPTED {
        a
    } else {
        b
    };
    let revision: Value = accepted.json().await?;
    assert_eq!(revision, json!(2), "update answers the new revision");
    let status = wait_run(api, &group, "Updated").await?;
    let updates = if statuses.iter().all(|s| *s == StatusCode::ACCEPTED) {
        2
    } else {
        1
    };
    assert_eq!(
        status["states"]["actions"].as_array().map(Vec::len),
        Some(2 + 2 * updates),
        "{status}"
    );
    // One Deployment per cluster changed, so one write per cluster (a second, empty update
    // sends nothing).
    let writes = sim_writes(client, sim).await? - writes_before;
    assert_eq!(writes, 3, "write requests the update sent to 3 clusters");
    let kubectl = Kubectl::new(sim.kubeconfig("edge2"), scratch);
    let deployments = kubectl.get_json(&["deployments", "-n", "default"])?;
    let web = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == "web")
        .context("web")?;
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );

    // A cluster that loses the placement's label loses the app at the next update; the
    // others are left alone.
    let answer = api
        .delete("/v2/cluster-providers/prov/clusters/edge3/labels/edge")
        .await?;
    ensure!(answer.status.is_success(), "label delete: {}", answer.body);
    let writes_before = sim_writes(client, sim).await?;
    let answer = api.action(&format!("{group}/update")).await?;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let edge3 = Kubectl::new(sim.kubeconfig("edge3"), scratch);
    wait_for(
        "web leaves edge3",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let left = edge3.labelled("deployments,configmaps,services")?;
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} objects left", left.len()))
            })
        },
    )
    .await?;
    wait_run(api, &group, "Updated").await?;
    assert_eq!(
        sim_writes(client, sim).await? - writes_before,
        3,
        "three deletes on edge3, nothing elsewhere"
    );
    // Labelled again: the next revision (the migrate's) brings it back.
    api.create(
        "/v2/cluster-providers/prov/clusters/edge3/labels",
        &json!({"clusterLabel": "edge"}),
    )
    .await?;

    // Migrate to version v2 (the Service is gone there), an approved group of its own.
    let v2_chart_without_service = support::chart(
        "web",
        "replicas: 1\n",
        &[
            (
                "configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-conf\ndata:\n  greeting: hello\n",
            ),
            (
                "deployment.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n\
                 spec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n\
                 \x20 template:\n    metadata:\n      labels: {app: web}\n    spec:\n\
                 \x20     containers:\n      - name: web\n        image: nginx:1.28\n",
            ),
        ],
    )?;
    define_version(api, "v2", "dig2", "unused").await?;
    let answer = client
        .put(format!(
            "{}{PROJECT}/composite-apps/ca/v2/apps/web",
            hub.base_url
        ))
        .multipart(
            reqwest::multipart::Form::new()
                .text("metadata", json!({"metadata": {"name": "web"}}).to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(v2_chart_without_service).file_name("web.tgz"),
                ),
        )
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "PUT v2 app: {}",
        answer.status()
    );
    let target = format!("{PROJECT}/composite-apps/ca/v2/deployment-intent-groups/dig2");
    let migrate = format!("{group}/migrate");
    let body = json!({"spec": {"targetCompositeAppVersion": "v2",
                               "targetDeploymentIntentGroup": "dig2"}});
    let answer = api.post_json(&migrate, &body).await?;
    assert_eq!(
        answer.status,
        StatusCode::CONFLICT,
        "the target is not approved yet: {}",
        answer.body
    );
    api.accepted(&format!("{target}/approve")).await?;
    let answer = api
        .post_json(
            &migrate,
            &json!({"spec": {"targetCompositeAppVersion": "v2"}}),
        )
        .await?;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    ensure!(
        answer.body.contains("spec.targetDeploymentIntentGroup"),
        "{}",
        answer.body
    );
    api.post_json(&migrate, &body)
        .await?
        .expect(StatusCode::ACCEPTED, "migrate")?;
    let target_status = wait_run(api, &target, "Updated").await?;
    let source_status = api.status(&group, "status=deployed&output=summary").await?;
    assert_eq!(
        source_status["states"]["actions"]
            .as_array()
            .and_then(|a| a.last())
            .map(|a| a["state"].clone()),
        Some(json!("Updated")),
        "{source_status}"
    );
    assert_eq!(
        target_status["states"]["statusctxid"], source_status["states"]["statusctxid"],
        "the target tracks status where the source did"
    );
    for index in 1..=3 {
        let kubectl = Kubectl::new(sim.kubeconfig(&format!("edge{index}")), scratch);
        let services = kubectl.get_json(&["services", "-n", "default"])?;
        ensure!(
            !services.iter().any(|s| s["metadata"]["name"] == "web"),
            "edge{index}: v2 has no Service"
        );
        let deployments = kubectl.get_json(&["deployments", "-n", "default"])?;
        let web = deployments
            .iter()
            .find(|d| d["metadata"]["name"] == "web")
            .context("web")?;
        assert_eq!(web["spec"]["replicas"], 2, "edge{index}");
    }
    // The source deploys nothing any more: it may be deleted; the target terminates.
    let answer = api.action(&format!("{group}/terminate")).await?;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    api.accepted(&format!("{target}/terminate")).await?;
    wait_run(api, &target, "Terminated").await?;
    let kubectl = Kubectl::new(sim.kubeconfig("edge1"), scratch);
    let left = kubectl.labelled("deployments,configmaps,services")?;
    ensure!(left.is_empty(), "left after terminate: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// examples/test-gac: generic K8s intents, then test-gac-update, update and rollback
// ---------------------------------------------------------------------------------------------

const GAC_GROUP: &str = "/v2/projects/proj1/composite-apps/gac-composite-app/v1/deployment-intent-groups/collection-deployment-intent-group";

/// Upstream's generated values for test-gac with the simulator's kubeconfig and the generated
/// archives.
fn gac_values(scratch: &Path, sim: &Sim) -> anyhow::Result<PathBuf> {
    let source = generated("examples/test-gac/values.yaml");
    let text = support::example_values(&source, true, |c| sim.kubeconfig(c), |_| None)?;
    support::write_file(scratch.join("values.yaml"), &text)
}

/// upstream's test-gac `apply.sh {test_file}`: prerequisites, the test's resources, instantiate.
fn apply_gac_example(ctl: &Emcoctl, values: &Path, test_file: &str) -> anyhow::Result<()> {
    for name in [
        "controllers.yaml",
        "projects.yaml",
        "clusters.yaml",
        "logicalclouds.yaml",
        "instantiatelc.yaml",
        "apps.yaml",
        "intents.yaml",
        test_file,
        "instantiate.yaml",
    ] {
        ctl.file(
            "apply",
            &upstream_example(&format!("test-gac/{name}")),
            values,
            &[],
        )?;
    }
    Ok(())
}

/// `kubectl get KIND NAME -n default -o json`.
fn kubectl_object(kubectl: &Kubectl, kind: &str, name: &str) -> anyhow::Result<Value> {
    kubectl
        .get_json(&[
            kind,
            "-n",
            "default",
            "--field-selector",
            &format!("metadata.name={name}"),
        ])?
        .into_iter()
        .next()
        .with_context(|| format!("kubectl finds no {kind} {name}"))
}

/// Waits until kubectl shows the etcd StatefulSet with `replicas`.
async fn wait_replicas(kubectl: &Kubectl, replicas: u64) -> anyhow::Result<()> {
    wait_for(
        &format!("etcd with {replicas} replicas"),
        Duration::from_secs(40),
        Duration::from_millis(300),
        || async {
            let etcd = kubectl_object(kubectl, "statefulsets", "etcd")?;
            let found = etcd["spec"]["replicas"].as_u64().unwrap_or_default();
            Ok(if found == replicas {
                Ok(())
            } else {
                Err(format!("{found} replicas"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gac_example_customises_the_operator_then_updates_and_rolls_back() -> anyhow::Result<()> {
    let bed = support::Bed::start(1, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = gac_values(scratch, sim)?;
    let file = |name: &str| upstream_example(&format!("test-gac/{name}"));
    let kubectl = Kubectl::new(sim.kubeconfig("cluster1"), scratch);

    apply_gac_example(&ctl, &values, "test-gac.yaml")?;
    wait_run(api, GAC_GROUP, "Instantiated").await?;

    // What the README shows on the edge cluster.
    let netpol = kubectl_object(&kubectl, "networkpolicies", "netpol-db")?;
    assert_eq!(
        netpol["spec"]["podSelector"]["matchLabels"]["role"], "database",
        "{netpol}"
    );
    kubectl_object(&kubectl, "networkpolicies", "netpol-web")?;
    let team = kubectl_object(&kubectl, "configmaps", "cm-team")?;
    let keys: BTreeSet<&str> = team["data"]
        .as_object()
        .map(|data| data.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        BTreeSet::from([
            "game.properties",
            "team_size",
            "ui_properties_file_name",
            "user-interface.properties"
        ]),
        "{team}"
    );
    assert_eq!(team["data"]["team_size"], "10");
    let game = kubectl_object(&kubectl, "configmaps", "cm-game")?;
    assert_eq!(game["data"].as_object().map(|d| d.len()), Some(5), "{game}");
    ensure!(
        game["data"]["info.json"]
            .as_str()
            .is_some_and(|info| info.contains("berry"))
    );
    let auth = kubectl_object(&kubectl, "secrets", "secret-auth")?;
    for key in ["extra", "USER_NAME", "PASSWORD", "EXPIRATION"] {
        ensure!(
            auth["data"].get(key).is_some(),
            "secret-auth has no {key}: {auth}"
        );
    }
    let user = kubectl_object(&kubectl, "secrets", "secret-user")?;
    ensure!(
        user["data"].get("data-userexpiration.yaml").is_some(),
        "{user}"
    );
    wait_replicas(&kubectl, 1).await?;

    // The README's update: the customization now asks for two replicas.
    let out = ctl.file("update", &file("test-gac-update.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("--> 200"), "{}", out.stdout);
    let out = ctl.file("apply", &file("update.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("/update --> 202"), "{}", out.stdout);
    wait_replicas(&kubectl, 2).await?;
    wait_run(api, GAC_GROUP, "Updated").await?;
    // Only the StatefulSet changed.
    let detail = api
        .status(GAC_GROUP, "status=deployed&output=detail&resource=etcd")
        .await?;
    ensure!(
        detail.to_string().contains(r#""lastAction":"updated""#),
        "{detail}"
    );

    let out = ctl.file("apply", &file("rollback.yaml"), &values, &[])?;
    ensure!(out.stdout.contains("/rollback --> 202"), "{}", out.stdout);
    wait_replicas(&kubectl, 1).await?;
    wait_run(api, GAC_GROUP, "Updated").await?;

    ctl.file("apply", &file("terminate.yaml"), &values, &[])?;
    wait_run(api, GAC_GROUP, "Terminated").await?;
    let left = kubectl.labelled("configmaps,secrets,networkpolicies,statefulsets")?;
    ensure!(left.is_empty(), "left after terminate: {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gac_strategic_merge_example_merges_containers_and_host_aliases() -> anyhow::Result<()> {
    let bed = support::Bed::start(1, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = gac_values(scratch, sim)?;
    let kubectl = Kubectl::new(sim.kubeconfig("cluster1"), scratch);

    apply_gac_example(&ctl, &values, "test-strategic-merge.yaml")?;
    wait_run(api, GAC_GROUP, "Instantiated").await?;

    // The new Deployment has the patch's container beside its own (merged by name; new items
    // first, as `kubectl patch --local --type strategic` orders them).
    let web = kubectl_object(&kubectl, "deployments", "deploy-web")?;
    let containers: Vec<(&str, &str)> = web["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["image"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        containers,
        [("redis-ctr", "redis"), ("nginx-ctr", "nginx")],
        "{web}"
    );
    // The chart's etcd StatefulSet got the host alias and kept its containers.
    let etcd = kubectl_object(&kubectl, "statefulsets", "etcd")?;
    assert_eq!(
        etcd["spec"]["template"]["spec"]["hostAliases"],
        json!([{"ip": "1.2.3.4", "hostnames": ["host1"]}]),
        "{etcd}"
    );
    assert_eq!(
        etcd["spec"]["template"]["spec"]["containers"][0]["name"], "etcd",
        "{etcd}"
    );
    assert_eq!(etcd["spec"]["replicas"], 3, "the chart's replicas stay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gac_external_url_example_fills_patch_values_from_cluster_kv_pairs() -> anyhow::Result<()> {
    let bed = support::Bed::start(1, "cluster", "1s").await?;
    let scratch = bed.scratch();
    let sim = &bed.sim;
    let hub = &bed.hub;
    let api = &bed.api;
    let ctl = Emcoctl::new(&hub.base_url, scratch)?;
    let values = gac_values(scratch, sim)?;
    let kubectl = Kubectl::new(sim.kubeconfig("cluster1"), scratch);

    apply_gac_example(&ctl, &values, "test-gac-patch-with-external-url.yaml")?;
    wait_run(api, GAC_GROUP, "Instantiated").await?;
    let istio = kubectl_object(&kubectl, "configmaps", "cm-istio")?;
    assert_eq!(
        istio["data"]["istioingressgatewayaddress"], "192.168.121.26",
        "{istio}"
    );
    assert_eq!(istio["data"]["istioingressgatewayport"], "32001");
    assert_eq!(istio["data"]["dns"], "https://example.dns.com");
    ensure!(istio["data"].get("info.json").is_some(), "{istio}");
    let db = kubectl_object(&kubectl, "secrets", "secret-db")?;
    assert_eq!(db["data"]["user"], "aGVsbG8=", "{db}");
    assert_eq!(db["data"]["password"], "MWYyZDFlMmU2N2Rm");
    ensure!(db["data"].get("expiration").is_some(), "{db}");

    // A patch that does not apply: the update is refused naming the resource and the
    // customization, and nothing changes.
    let customizations = format!(
        "{GAC_GROUP}/generic-k8s-intents/operator-gac-intent/resources/cm-istio/customizations"
    );
    let bad = json!({"metadata": {"name": "bad-patch"}, "spec": {
        "clusterSpecific": "false",
        "clusterInfo": {"scope": "label", "clusterProvider": "provider1", "cluster": "",
                        "clusterLabel": "edge-cluster1", "mode": "allow"},
        "patchType": "json",
        "patchJson": [{"op": "replace", "path": "/data/no-such-key", "value": "x"}]}});
    let answer = api
        .post_file(&customizations, &bad, b"ignored".to_vec())
        .await?;
    ensure!(answer.status.is_success(), "{}", answer.body);
    let before = api
        .status(GAC_GROUP, "status=deployed&output=summary")
        .await?;
    let answer = api.action(&format!("{GAC_GROUP}/update")).await?;
    assert_eq!(
        answer.status,
        reqwest::StatusCode::BAD_REQUEST,
        "{}",
        answer.body
    );
    for part in ["\"gac\"", "cm-istio", "bad-patch"] {
        ensure!(answer.body.contains(part), "{part} not in {}", answer.body);
    }
    let after = api
        .status(GAC_GROUP, "status=deployed&output=summary")
        .await?;
    assert_eq!(
        before["states"], after["states"],
        "a refused update records nothing"
    );
    Ok(())
}
