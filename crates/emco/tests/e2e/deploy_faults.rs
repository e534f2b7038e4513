//! End to end, deploying when things go wrong: the real hub (`emco serve`, real Helm, retries
//! from 200 ms to 1 s) with clusters from a real `emco sim`, driven through its REST API (and
//! `emcoctl status`), checked with `kubectl`.
//!
//! - A cluster that refuses every request is retried (`Retrying`) while the others converge, and
//!   converges once the fault is cleared.
//! - `stop` ends a terminate stuck on a cluster that went away; the group can then be deleted.
//! - Bad input: a chart that does not render, an app without a profile, a placement on a cluster
//!   that does not exist, instantiate before approve, delete of an instantiated group.

use crate::support;

use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Answer, Api, Emcoctl, Kubectl, Sim, wait_for};
use tempfile::TempDir;

const PROVIDER: &str = "sim";
const LABEL: &str = "edge";
const PROJECT: &str = "faults";
const LOGICAL_CLOUD: &str = "admin";
const COMPOSITE_APP: &str = "shop";
const PROFILE: &str = "shop-profile";
const GROUP: &str = "shop-dig";
const PLACEMENT: &str = "shop-placement";
/// The kubectl types the test charts render.
const CHART_TYPES: &str = "ConfigMap,Deployment.apps";

fn composite_app_path() -> String {
    format!("/v2/projects/{PROJECT}/composite-apps/{COMPOSITE_APP}/v1")
}

fn group_path() -> String {
    format!("{}/deployment-intent-groups/{GROUP}", composite_app_path())
}

fn app_intent(app: &str, intent: Value) -> Value {
    json!({"metadata": {"name": format!("{app}-placement")}, "spec": {"app": app, "intent": intent}})
}

/// Every app on every labelled cluster.
fn by_label() -> Value {
    json!({"allOf": [{"clusterProvider": PROVIDER, "clusterLabel": LABEL}]})
}

/// A simulator with clusters `edge-1..N`, a hub, and the clusters onboarded into an instantiated
/// admin logical cloud.
struct Fixture {
    api: Api,
    hub: support::hub::Hub,
    sim: Sim,
    clusters: Vec<String>,
    scratch: TempDir,
}

impl Fixture {
    async fn start(clusters: usize) -> anyhow::Result<Fixture> {
        Self::start_with(clusters, &[]).await
    }

    /// [`Fixture::start`] with more `emco serve` arguments.
    async fn start_with(clusters: usize, hub_args: &[&str]) -> anyhow::Result<Fixture> {
        let scratch = tempfile::tempdir()?;
        let client = support::http_client()?;
        let sim = Sim::start(scratch.path(), clusters, "edge-", "200ms").await?;
        let hub = support::start_hub_with(scratch.path(), &client, hub_args).await?;
        let api = Api {
            client,
            base_url: hub.base_url.clone(),
        };
        let names: Vec<String> = (1..=clusters).map(|i| format!("edge-{i}")).collect();
        let created = StatusCode::CREATED;
        api.post_json(
            "/v2/cluster-providers",
            &json!({"metadata": {"name": PROVIDER}}),
        )
        .await?
        .expect(created, "provider")?;
        for name in &names {
            let kubeconfig = std::fs::read(sim.kubeconfig(name))?;
            api.post_file(
                &format!("/v2/cluster-providers/{PROVIDER}/clusters"),
                &json!({"metadata": {"name": name}}),
                kubeconfig,
            )
            .await?
            .expect(created, "cluster")?;
            api.post_json(
                &format!("/v2/cluster-providers/{PROVIDER}/clusters/{name}/labels"),
                &json!({"clusterLabel": LABEL}),
            )
            .await?
            .expect(created, "label")?;
        }
        api.post_json("/v2/projects", &json!({"metadata": {"name": PROJECT}}))
            .await?
            .expect(created, "project")?;
        let cloud = format!("/v2/projects/{PROJECT}/logical-clouds");
        api.post_json(
            &cloud,
            &json!({"metadata": {"name": LOGICAL_CLOUD}, "spec": {"level": "0"}}),
        )
        .await?
        .expect(created, "logical cloud")?;
        for name in &names {
            api.post_json(
                &format!("{cloud}/{LOGICAL_CLOUD}/cluster-references"),
                &json!({
                    "metadata": {"name": name},
                    "spec": {"clusterProvider": PROVIDER, "cluster": name, "loadbalancerIp": "0.0.0.0"}
                }),
            )
            .await?
            .expect(created, "cluster reference")?;
        }
        api.action(&format!("{cloud}/{LOGICAL_CLOUD}/instantiate"))
            .await?
            .expect(StatusCode::ACCEPTED, "logical cloud instantiate")?;
        Ok(Fixture {
            api,
            hub,
            sim,
            clusters: names,
            scratch,
        })
    }

    /// The composite app with `apps` (name, chart), profiles for the apps in `profiled`, the
    /// group and its generic placement intent (no app intents yet).
    async fn group(&self, apps: &[(&str, Vec<u8>)], profiled: &[&str]) -> anyhow::Result<()> {
        let created = StatusCode::CREATED;
        let api = &self.api;
        api.post_json(
            &format!("/v2/projects/{PROJECT}/composite-apps"),
            &json!({"metadata": {"name": COMPOSITE_APP}, "spec": {"compositeAppVersion": "v1"}}),
        )
        .await?
        .expect(created, "composite app")?;
        for (name, chart) in apps {
            api.post_file(
                &format!("{}/apps", composite_app_path()),
                &json!({"metadata": {"name": name}}),
                chart.clone(),
            )
            .await?
            .expect(created, "app")?;
        }
        api.post_json(
            &format!("{}/composite-profiles", composite_app_path()),
            &json!({"metadata": {"name": PROFILE}}),
        )
        .await?
        .expect(created, "composite profile")?;
        for app in profiled {
            api.post_file(
                &format!(
                    "{}/composite-profiles/{PROFILE}/profiles",
                    composite_app_path()
                ),
                &json!({"metadata": {"name": format!("{app}-profile")}, "spec": {"app": app}}),
                support::profile(&format!("greeting: hello from the {app} profile\n"))?,
            )
            .await?
            .expect(created, "app profile")?;
        }
        api.post_json(
            &format!("{}/deployment-intent-groups", composite_app_path()),
            &json!({
                "metadata": {"name": GROUP},
                "spec": {"compositeProfile": PROFILE, "version": "r1", "logicalCloud": LOGICAL_CLOUD, "overrideValues": []}
            }),
        )
        .await?
        .expect(created, "group")?;
        api.post_json(
            &format!("{}/generic-placement-intents", group_path()),
            &json!({"metadata": {"name": PLACEMENT}, "spec": {"logicalCloud": LOGICAL_CLOUD}}),
        )
        .await?
        .expect(created, "generic placement intent")?;
        api.post_json(
            &format!("{}/intents", group_path()),
            &json!({"metadata": {"name": "intents"}, "spec": {"intent": {"genericPlacementIntent": PLACEMENT}}}),
        )
        .await?
        .expect(created, "group intents")?;
        Ok(())
    }

    /// `POST` of an app intent; the answer as it came.
    async fn place(&self, app: &str, intent: Value) -> anyhow::Result<Answer> {
        self.api
            .post_json(
                &format!(
                    "{}/generic-placement-intents/{PLACEMENT}/app-intents",
                    group_path()
                ),
                &app_intent(app, intent),
            )
            .await
    }

    async fn approve(&self) -> anyhow::Result<()> {
        self.api
            .action(&format!("{}/approve", group_path()))
            .await?
            .expect(StatusCode::ACCEPTED, "approve")?;
        Ok(())
    }

    /// One app `web` (ConfigMap + Deployment) on every cluster, approved and instantiated.
    async fn deploy_web(&self) -> anyhow::Result<()> {
        self.group(&[("web", support::web_chart("web")?)], &["web"])
            .await?;
        self.place("web", by_label())
            .await?
            .expect(StatusCode::CREATED, "app intent")?;
        self.approve().await?;
        self.action("instantiate")
            .await?
            .expect(StatusCode::ACCEPTED, "instantiate")?;
        Ok(())
    }

    /// `POST {group}/{action}`.
    async fn action(&self, action: &str) -> anyhow::Result<Answer> {
        self.api.action(&format!("{}/{action}", group_path())).await
    }

    fn kubectl(&self, cluster: &str) -> Kubectl {
        Kubectl::new(self.sim.kubeconfig(cluster), self.scratch.path())
    }

    /// Labelled objects of the test charts on every cluster, as kubectl lists them.
    fn labelled_everywhere(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for cluster in &self.clusters {
            for item in self.kubectl(cluster).labelled(CHART_TYPES)? {
                found.push((
                    cluster.clone(),
                    format!(
                        "{}/{}",
                        item["kind"].as_str().unwrap_or_default(),
                        item["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(found)
    }

    fn emcoctl(&self) -> anyhow::Result<Emcoctl> {
        Emcoctl::new(&self.hub.base_url, self.scratch.path())
    }

    async fn status(&self, query: &str) -> anyhow::Result<Value> {
        self.api.status(&group_path(), query).await
    }

    /// The group's lifecycle state (the last action's), as the status answer shows it.
    async fn lifecycle_state(&self) -> anyhow::Result<String> {
        let status = self.status("status=deployed&output=summary").await?;
        Ok(status["states"]["actions"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|a| a["state"].as_str())
            .unwrap_or_default()
            .to_owned())
    }
}

/// Per cluster of the `output=all` answer: (connectivity, resources' `field` values).
fn per_cluster(status: &Value, field: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for app in status["apps"].as_array().into_iter().flatten() {
        for cluster in app["clusters"].as_array().into_iter().flatten() {
            let values = cluster["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r[field].as_str().unwrap_or_default().to_owned())
                .collect();
            out.push((
                cluster["cluster"].as_str().unwrap_or_default().to_owned(),
                cluster["connectivity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                values,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_cluster_is_retried_while_the_others_converge_and_converges_once_cleared()
-> anyhow::Result<()> {
    let fx = Fixture::start(3).await?;
    let client = fx.api.client.clone();
    fx.sim
        .set_faults(&client, "edge-2", json!({"unreachable": "refuse"}))
        .await?;
    fx.deploy_web().await?;

    // edge-1 and edge-3 become ready; edge-2 is retried, nothing applied there.
    let seen = wait_for(
        "edge-1 and edge-3 ready, edge-2 retrying",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let status = fx.status("status=ready&output=all").await?;
            let clusters = per_cluster(&status, "readyStatus");
            let good = clusters.iter().filter(|(cluster, connectivity, ready)| {
                cluster != "edge-2"
                    && connectivity == "Available"
                    && ready.len() == 2
                    && ready.iter().all(|r| r == "Ready")
            });
            let retrying = clusters.iter().any(|(cluster, connectivity, _)| {
                cluster == "edge-2" && connectivity == "Retrying"
            });
            Ok(if good.count() == 2 && retrying {
                Ok(status)
            } else {
                Err(format!("{clusters:?}"))
            })
        },
    )
    .await?;
    assert_eq!(seen["deployedStatus"], "Instantiating", "{seen}");
    let deployed = fx.status("status=deployed&output=all").await?;
    for (cluster, _, statuses) in per_cluster(&deployed, "deployedStatus") {
        if cluster == "edge-2" {
            assert!(
                statuses.iter().all(|s| s != "Applied"),
                "edge-2 refuses every request, yet: {statuses:?}"
            );
        } else {
            assert_eq!(statuses, ["Applied", "Applied"], "{cluster}");
        }
    }
    let shown = fx.emcoctl()?.run(&[
        "status".as_ref(),
        group_path().trim_start_matches("/v2/").as_ref(),
    ])?;
    assert!(
        shown.stdout.contains("web @ sim+edge-2: Retrying"),
        "{}",
        shown.stdout
    );
    assert!(fx.kubectl("edge-1").labelled(CHART_TYPES)?.len() == 2);
    assert!(fx.kubectl("edge-3").labelled(CHART_TYPES)?.len() == 2);

    // The cluster comes back: the hub's retries converge it.
    fx.sim.clear_faults(&client, "edge-2").await?;
    let watch = fx
        .emcoctl()?
        .watch(group_path().trim_start_matches("/v2/"), "30s")?;
    assert_eq!(
        watch.code,
        Some(0),
        "{}\n{}\n{}",
        watch.stdout,
        watch.stderr,
        fx.hub.stderr()
    );
    let on_edge_2 = fx.kubectl("edge-2").labelled(CHART_TYPES)?;
    assert_eq!(on_edge_2.len(), 2, "{on_edge_2:?}");
    let status = fx.status("status=deployed&output=summary").await?;
    assert_eq!(status["deployedStatus"], "Instantiated", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_terminate_stuck_on_a_cluster_that_went_away_and_the_group_deletes()
-> anyhow::Result<()> {
    let fx = Fixture::start(2).await?;
    let client = fx.api.client.clone();
    fx.deploy_web().await?;
    let watch = fx
        .emcoctl()?
        .watch(group_path().trim_start_matches("/v2/"), "30s")?;
    assert_eq!(watch.code, Some(0), "{}\n{}", watch.stdout, watch.stderr);

    // edge-2 goes away (its API no longer answers), then the group is terminated.
    fx.sim
        .set_faults(&client, "edge-2", json!({"unreachable": "refuse"}))
        .await?;
    fx.action("terminate")
        .await?
        .expect(StatusCode::ACCEPTED, "terminate")?;
    wait_for(
        "edge-1 emptied",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || async {
            let left = fx.kubectl("edge-1").labelled(CHART_TYPES)?;
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} objects left", left.len()))
            })
        },
    )
    .await?;
    // Still terminating a second later: edge-2 is retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = fx.status("status=deployed&output=all").await?;
    assert_eq!(status["deployedStatus"], "Terminating", "{status}");
    let edge_2 = per_cluster(&status, "deployedStatus")
        .into_iter()
        .find(|(cluster, _, _)| cluster == "edge-2")
        .context("edge-2 in the status")?;
    assert_eq!(edge_2.1, "Retrying", "{status}");

    // The group cannot go while it terminates.
    let refused = fx.api.delete(&group_path()).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("terminat"), "{}", refused.body);

    fx.action("stop")
        .await?
        .expect(StatusCode::ACCEPTED, "stop")?;
    let stopped = wait_for(
        "the terminate ends",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let status = fx.status("status=deployed&output=summary").await?;
            let deployed = status["deployedStatus"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok(if deployed == "Terminating" {
                Err(deployed)
            } else {
                Ok(status)
            })
        },
    )
    .await?;
    assert_eq!(stopped["deployedStatus"], "TerminateFailed", "{stopped}");
    assert_eq!(fx.lifecycle_state().await?, "TerminateStopped");
    // edge-1 stays empty; edge-2 keeps what it had (nobody can reach it).
    assert!(fx.kubectl("edge-1").labelled(CHART_TYPES)?.is_empty());

    // Now the group and everything under it deletes.
    for path in [
        format!(
            "{}/generic-placement-intents/{PLACEMENT}/app-intents/web-placement",
            group_path()
        ),
        format!("{}/intents/intents", group_path()),
        format!("{}/generic-placement-intents/{PLACEMENT}", group_path()),
        group_path(),
    ] {
        let answer = fx.api.delete(&path).await?;
        ensure!(
            answer.status.is_success(),
            "DELETE {path}: {} {}",
            answer.status,
            answer.body
        );
    }
    let groups = fx
        .api
        .get(&format!(
            "{}/deployment-intent-groups",
            composite_app_path()
        ))
        .await?
        .expect(StatusCode::OK, "groups")?
        .json()?;
    assert_eq!(groups, json!([]));
    Ok(())
}

/// A chart whose template fails to render: `required` with Helm's message.
fn broken_chart() -> anyhow::Result<Vec<u8>> {
    support::chart(
        "broken",
        "replicas: 1\n",
        &[(
            "configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  \
             colour: {{ required \"the broken chart needs .Values.colour\" .Values.colour }}\n",
        )],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiate_with_a_chart_that_does_not_render_is_refused_with_helms_message()
-> anyhow::Result<()> {
    let fx = Fixture::start(2).await?;
    fx.group(
        &[
            ("web", support::web_chart("web")?),
            ("broken", broken_chart()?),
        ],
        &["web", "broken"],
    )
    .await?;
    for app in ["web", "broken"] {
        fx.place(app, by_label())
            .await?
            .expect(StatusCode::CREATED, "app intent")?;
    }
    fx.approve().await?;
    let refused = fx.action("instantiate").await?;
    println!("instantiate: {} {}", refused.status, refused.body);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("the broken chart needs .Values.colour"),
        "Helm's message: {}",
        refused.body
    );
    assert!(refused.body.contains("\"broken\""), "{}", refused.body);

    // Nothing applied anywhere, and the group is still only approved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fx.labelled_everywhere()?, Vec::<(String, String)>::new());
    assert_eq!(fx.lifecycle_state().await?, "Approved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiate_with_an_app_without_profile_is_refused_naming_the_app() -> anyhow::Result<()> {
    let fx = Fixture::start(1).await?;
    fx.group(
        &[
            ("web", support::web_chart("web")?),
            ("cart", support::web_chart("cart")?),
        ],
        &["web"],
    )
    .await?;
    for app in ["web", "cart"] {
        fx.place(app, by_label())
            .await?
            .expect(StatusCode::CREATED, "app intent")?;
    }
    fx.approve().await?;
    let refused = fx.action("instantiate").await?;
    println!("instantiate: {} {}", refused.status, refused.body);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("\"cart\"") && refused.body.contains("profile"),
        "{}",
        refused.body
    );
    assert_eq!(fx.labelled_everywhere()?, Vec::<(String, String)>::new());
    assert_eq!(fx.lifecycle_state().await?, "Approved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_naming_an_unknown_cluster_is_refused_at_write_or_at_instantiate()
-> anyhow::Result<()> {
    let unknown = json!({"allOf": [{"clusterProvider": PROVIDER, "cluster": "edge-9"}]});

    // The default hub refuses the write: the intent names a cluster that does not exist.
    let fx = Fixture::start(1).await?;
    fx.group(&[("web", support::web_chart("web")?)], &["web"])
        .await?;
    let refused = fx.place("web", unknown.clone()).await?;
    println!(
        "app intent naming edge-9: {} {}",
        refused.status, refused.body
    );
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("edge-9"), "{}", refused.body);
    drop(fx);

    // Upstream stores such a reference (`--dangling-references allow`); then instantiate says
    // which cluster is missing, and nothing is applied.
    let fx = Fixture::start_with(1, &["--dangling-references", "allow"]).await?;
    fx.group(&[("web", support::web_chart("web")?)], &["web"])
        .await?;
    fx.place("web", unknown)
        .await?
        .expect(StatusCode::CREATED, "app intent (dangling allowed)")?;
    fx.approve().await?;
    let refused = fx.action("instantiate").await?;
    println!("instantiate: {} {}", refused.status, refused.body);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.body.contains("edge-9"), "{}", refused.body);
    assert_eq!(fx.lifecycle_state().await?, "Approved");
    assert_eq!(fx.labelled_everywhere()?, Vec::<(String, String)>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiate_before_approve_is_a_conflict() -> anyhow::Result<()> {
    let fx = Fixture::start(1).await?;
    fx.group(&[("web", support::web_chart("web")?)], &["web"])
        .await?;
    fx.place("web", by_label())
        .await?
        .expect(StatusCode::CREATED, "app intent")?;
    let refused = fx.action("instantiate").await?;
    println!("instantiate: {} {}", refused.status, refused.body);
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(fx.labelled_everywhere()?, Vec::<(String, String)>::new());
    // Approved, the same group instantiates.
    fx.approve().await?;
    fx.action("instantiate")
        .await?
        .expect(StatusCode::ACCEPTED, "instantiate after approve")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_an_instantiated_group_is_a_conflict() -> anyhow::Result<()> {
    let fx = Fixture::start(1).await?;
    fx.deploy_web().await?;
    // Children first (upstream allows deleting them while instantiated; the deployed context
    // keeps what was deployed), so only the group's state can stand in the way.
    for path in [
        format!(
            "{}/generic-placement-intents/{PLACEMENT}/app-intents/web-placement",
            group_path()
        ),
        format!("{}/intents/intents", group_path()),
        format!("{}/generic-placement-intents/{PLACEMENT}", group_path()),
    ] {
        fx.api
            .delete(&path)
            .await?
            .expect(StatusCode::NO_CONTENT, &path)?;
    }
    let refused = fx.api.delete(&group_path()).await?;
    println!(
        "DELETE of the instantiated group: {} {}",
        refused.status, refused.body
    );
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body.to_lowercase().contains("instantiated")
            || refused.body.to_lowercase().contains("terminate"),
        "the refusal should say why: {}",
        refused.body
    );
    // Still there, still deployed.
    fx.api
        .get(&group_path())
        .await?
        .expect(StatusCode::OK, "group")?;
    assert_eq!(fx.lifecycle_state().await?, "Instantiated");
    Ok(())
}

#[tokio::test]
async fn a_logical_cloud_under_a_deployed_group_cannot_be_terminated() -> anyhow::Result<()> {
    let fx = Fixture::start(1).await?;
    fx.deploy_web().await?;
    let cloud = format!("/v2/projects/{PROJECT}/logical-clouds/{LOGICAL_CLOUD}");
    let refused = fx.api.action(&format!("{cloud}/terminate")).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.body.contains("terminate it first"),
        "{}",
        refused.body
    );
    fx.action("terminate")
        .await?
        .expect(StatusCode::ACCEPTED, "terminate the group")?;
    fx.api.action(&format!("{cloud}/terminate")).await?.expect(
        StatusCode::ACCEPTED,
        "terminate the cloud once the group is",
    )?;
    Ok(())
}
