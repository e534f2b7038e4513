//! The synchronizer engine against in-process simulated clusters and a redb store: instantiate,
//! dependencies, hooks, faults, stop, terminate, and resuming after a crash.

use crate::common;

use std::time::Duration;

use common::*;
use emco_core::appcontext::{ClusterId, ContextObject, DeletePolicy, OpStatus};
use emco_core::status::{AppContextStatus, Connectivity, DeployedStatus, ReadyStatus};
use emco_rsync::{
    AppClusterState, ClusterApi, ContextReport, DEPLOYMENT_ID_LABEL, HookEvent, Readiness,
    StoreConnector, SyncConfig, Synchronizer, readiness,
};
use emco_sim::faults::{FaultPlan, Unreachable, set_faults};
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

fn fault(hub: &Hub, index: usize, unreachable: Option<Unreachable>) {
    let plan = unreachable.map(|mode| FaultPlan {
        unreachable: Some(mode),
        ..FaultPlan::default()
    });
    set_faults(
        &hub.sim.sim.cluster(&format!("edge-{index}")).unwrap(),
        plan,
    );
}

fn state(report: &ContextReport, app: &str, index: usize) -> AppClusterState {
    report
        .app(app)
        .unwrap()
        .cluster(&cluster(index))
        .unwrap()
        .state
}

/// Names of objects carrying `label` of one kind on a cluster.
async fn labelled(
    hub: &Hub,
    index: usize,
    api_version: &str,
    kind: &str,
    label: &str,
) -> Vec<String> {
    let client = hub.client(index).await;
    let mut names: Vec<String> = client
        .list(
            api_version,
            kind,
            None,
            &format!("{DEPLOYMENT_ID_LABEL}={label}"),
        )
        .await
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn two_apps(id: &str, clusters: &[usize]) -> emco_core::appcontext::AppContext {
    context(
        id,
        vec![
            app(
                "web",
                clusters,
                resources(vec![
                    namespace("web"),
                    config_map("web", "settings"),
                    deployment("web", "frontend"),
                ]),
            ),
            app(
                "db",
                clusters,
                resources(vec![
                    namespace("db"),
                    config_map("db", "schema"),
                    service("db", "postgres"),
                    deployment("db", "migrator"),
                ]),
            ),
        ],
    )
}

#[tokio::test]
async fn instantiates_two_apps_on_three_clusters_then_terminates() {
    let hub = hub(3, Duration::from_millis(400)).await;
    assert!(hub.sync.context_status("c1").await.unwrap().is_none());
    let context = two_apps("c1", &[1, 2, 3]);
    hub.instantiate(&context).await;

    let report = hub.wait_status("c1", AppContextStatus::Instantiated).await;
    assert_eq!(report.op, emco_rsync::OpKind::Instantiate);
    // While the run tracks readiness, summaries are counted from its records in memory, and
    // agree with the store's view (compared when no record moved in between).
    assert!(hub.sync.counts_in_memory("c1"));
    for pairs in [vec![("status", "deployed")], vec![("status", "ready")]] {
        let query = summary_query(&pairs);
        loop {
            let before = hub.report("c1").await;
            let counted = hub.sync.context_tally("c1", &query).await.unwrap().unwrap();
            if hub.report("c1").await == before {
                assert_eq!(
                    counted.tally,
                    emco_core::status::Tally::of_apps(&query, &before.context_input().apps),
                    "{pairs:?}"
                );
                break;
            }
        }
    }
    for app in ["web", "db"] {
        for index in 1..=3 {
            let cluster = report.app(app).unwrap().cluster(&cluster(index)).unwrap();
            assert_eq!(cluster.state, AppClusterState::Applied);
            assert_eq!(cluster.connectivity, Connectivity::Available);
            assert!(cluster.applied_ms.is_some());
            assert!(
                cluster
                    .resources
                    .iter()
                    .all(|resource| resource.deployed == DeployedStatus::Applied),
                "{cluster:#?}"
            );
        }
    }
    // The Deployment takes 400ms to become Available: it was applied before it was ready.
    let frontend = report.app("web").unwrap().cluster(&cluster(1)).unwrap();
    let deployment = frontend.resource("Deployment", "frontend").unwrap();
    assert_eq!(deployment.gvk.group, "apps");
    let ready = hub
        .wait_for("c1", LONG, "everything ready", |report| report.all_ready)
        .await;
    for app in ["web", "db"] {
        for index in 1..=3 {
            let cluster = ready.app(app).unwrap().cluster(&cluster(index)).unwrap();
            assert!(
                cluster
                    .resources
                    .iter()
                    .all(|resource| resource.ready == Some(ReadyStatus::Ready)),
                "{cluster:#?}"
            );
            let (applied, ready) = (cluster.applied_ms.unwrap(), cluster.ready_ms.unwrap());
            assert!(ready >= applied);
            if app == "web" {
                assert!(
                    ready - applied >= 200,
                    "the Deployment needed its time: {applied} {ready}"
                );
            }
        }
    }
    // The status query's view.
    let inputs = ready.context_input();
    assert_eq!(inputs.status, AppContextStatus::Instantiated);
    assert_eq!(inputs.apps.len(), 2);
    assert_eq!(inputs.apps[0].clusters.len(), 3);
    assert_eq!(inputs.apps[0].clusters[0].resources.len(), 3);
    assert_eq!(inputs.apps[1].clusters[0].resources.len(), 4);
    let stranger = summary_query(&[("status", "deployed"), ("cluster", "prov+nosuch")]);
    let counted = hub
        .sync
        .context_tally("c1", &stranger)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.unknown_cluster.as_deref(), Some("prov+nosuch"));
    // Once the run has ended (everything ready), summaries still count its final records in
    // memory; a synchronizer that did not run the context (a restarted hub) reads the store.
    let deadline = std::time::Instant::now() + LONG;
    while hub.sync.is_running("c1") {
        assert!(std::time::Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // (The run's task ends right after its last record; then its view is an ended run's.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hub.sync.counts_in_memory("c1"));
    let fresh = Synchronizer::new(
        hub.store.clone(),
        std::sync::Arc::new(StoreConnector::new(hub.store.clone(), Default::default())),
        SyncConfig::default(),
    );
    assert!(!fresh.counts_in_memory("c1"));
    for pairs in [vec![("status", "deployed")], vec![("status", "ready")]] {
        let query = summary_query(&pairs);
        assert_eq!(
            fresh.context_tally("c1", &query).await.unwrap().unwrap(),
            hub.sync.context_tally("c1", &query).await.unwrap().unwrap(),
            "{pairs:?}"
        );
    }
    // Summaries are counted from the records without the report, with the same result.
    for (pairs, expected) in [
        (vec![("status", "deployed")], json!({"Applied": 21})),
        (vec![("status", "ready")], json!({"Ready": 21})),
        (
            vec![("status", "deployed"), ("app", "web")],
            json!({"Applied": 9}),
        ),
        (
            vec![("status", "ready"), ("cluster", "prov+edge-2")],
            json!({"Ready": 7}),
        ),
    ] {
        let query = summary_query(&pairs);
        let counted = hub.sync.context_tally("c1", &query).await.unwrap().unwrap();
        assert_eq!(counted.status, AppContextStatus::Instantiated);
        assert_eq!(counted.apps, ["web", "db"]);
        assert_eq!(counted.unknown_cluster, None);
        let from_report = emco_core::status::Tally::of_apps(&query, &inputs.apps);
        assert_eq!(counted.tally, from_report, "{pairs:?}");
        let input = emco_core::status::StatusInput::default();
        let rendered = emco_core::status::render_summary(
            &query,
            &input,
            counted.status,
            counted.apps.iter().map(String::as_str),
            &counted.tally,
        )
        .unwrap();
        let key = if pairs[0].1 == "ready" {
            "readyCounts"
        } else {
            "deployedCounts"
        };
        assert_eq!(rendered[key], expected, "{pairs:?}");
    }

    // On the clusters, labelled with {ctx}-{app}, pod templates too.
    for index in 1..=3 {
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c1-web").await,
            ["settings"]
        );
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c1-db").await,
            ["schema"]
        );
        assert_eq!(
            labelled(&hub, index, "v1", "Service", "c1-db").await,
            ["postgres"]
        );
        assert_eq!(
            labelled(&hub, index, "v1", "Namespace", "c1-web").await,
            ["web"]
        );
        let client = hub.client(index).await;
        let live = client
            .get("apps/v1", "Deployment", Some("web"), "frontend")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            live["spec"]["template"]["metadata"]["labels"][DEPLOYMENT_ID_LABEL],
            "c1-web"
        );
        assert_eq!(readiness(&live), Readiness::Ready);
    }
    assert!(
        !hub.sync.stop("c1").await.unwrap(),
        "nothing in progress to stop"
    );

    hub.terminate("c1").await;
    let report = hub.wait_status("c1", AppContextStatus::Terminated).await;
    assert_eq!(report.message, None);
    for app in ["web", "db"] {
        for index in 1..=3 {
            let cluster = report.app(app).unwrap().cluster(&cluster(index)).unwrap();
            assert_eq!(cluster.state, AppClusterState::Deleted);
            assert!(
                cluster
                    .resources
                    .iter()
                    .all(|resource| resource.deployed == DeployedStatus::Deleted
                        && resource.ready.is_none()),
                "{cluster:#?}"
            );
        }
    }
    for index in 1..=3 {
        let client = hub.client(index).await;
        assert!(
            client
                .get("v1", "ConfigMap", Some("web"), "settings")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .get("v1", "Service", Some("db"), "postgres")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .get("apps/v1", "Deployment", Some("web"), "frontend")
                .await
                .unwrap()
                .is_none()
        );
    }

    // Forgetting the context removes every record.
    let ops = Synchronizer::forget_ops("c1");
    hub.store
        .txn(emco_store::Txn {
            compares: vec![],
            ops,
        })
        .await
        .unwrap();
    assert!(hub.sync.context_status("c1").await.unwrap().is_none());
    assert!(hub.store.list("rsync/").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_app_waits_for_its_dependency_to_be_ready_then_the_wait() {
    let hub = hub(2, Duration::from_millis(1200)).await;
    let context = context(
        "c2",
        vec![
            app(
                "backend",
                &[1, 2],
                resources(vec![namespace("be"), deployment("be", "api")]),
            ),
            depends(
                app(
                    "frontend",
                    &[2],
                    resources(vec![config_map("default", "ui")]),
                ),
                "backend",
                OpStatus::Ready,
                1,
            ),
        ],
    );
    hub.instantiate(&context).await;

    // While the run goes on, the frontend's object may only appear once the backend's
    // Deployment is Available on every cluster.
    let client_1 = hub.client(1).await;
    let client_2 = hub.client(2).await;
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if client_2
            .get("v1", "ConfigMap", Some("default"), "ui")
            .await
            .unwrap()
            .is_some()
        {
            for client in [&client_1, &client_2] {
                let api = client
                    .get("apps/v1", "Deployment", Some("be"), "api")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    readiness(&api),
                    Readiness::Ready,
                    "frontend came before backend was ready"
                );
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "frontend never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let report = hub.wait_status("c2", AppContextStatus::Instantiated).await;
    let backend_ready = (1..=2)
        .map(|index| {
            report
                .app("backend")
                .unwrap()
                .cluster(&cluster(index))
                .unwrap()
                .ready_ms
                .unwrap()
        })
        .max()
        .unwrap();
    let backend_applied = report
        .app("backend")
        .unwrap()
        .cluster(&cluster(1))
        .unwrap()
        .applied_ms
        .unwrap();
    let frontend_applied = report
        .app("frontend")
        .unwrap()
        .cluster(&cluster(2))
        .unwrap()
        .applied_ms
        .unwrap();
    assert!(
        backend_ready >= backend_applied + 1000,
        "{backend_applied} {backend_ready}"
    );
    assert!(
        frontend_applied >= backend_ready + 1000,
        "frontend at {frontend_applied}, backend ready at {backend_ready}: the 1s wait was skipped"
    );
}

#[tokio::test]
async fn hooks_run_in_order_and_are_cleaned_up_by_policy() {
    let hub = hub(2, Duration::from_millis(300)).await;
    let mut objects = resources(vec![
        config_map("default", "first"),
        deployment("default", "web"),
    ]);
    objects.push(hook(
        job("default", "migrate", false),
        0,
        pre_install(),
        vec![DeletePolicy::HookSucceeded],
    ));
    objects.push(hook(
        config_map("default", "pre-marker"),
        -5,
        pre_install(),
        vec![],
    ));
    objects.push(hook(
        config_map("default", "announce"),
        0,
        post_install(),
        vec![],
    ));
    objects.push(hook(
        job("default", "goodbye", false),
        0,
        pre_delete(),
        vec![DeletePolicy::HookSucceeded],
    ));
    objects.push(hook(
        config_map("default", "farewell"),
        0,
        post_delete(),
        vec![],
    ));
    let context = context("c3", vec![app("hooked", &[1, 2], objects)]);
    hub.instantiate(&context).await;
    let report = hub.wait_status("c3", AppContextStatus::Instantiated).await;

    for index in 1..=2 {
        let calls: Vec<(String, String, String)> = hub
            .calls(&format!("edge-{index}"))
            .into_iter()
            .map(|call| (call.verb.to_owned(), call.kind, call.name))
            .collect();
        let position = |verb: &str, name: &str| {
            calls
                .iter()
                .position(|(v, _, n)| v == verb && n == name)
                .unwrap_or_else(|| panic!("no {verb} of {name} in {calls:?}"))
        };
        // Lower weight first; before-hook-creation (the default) deletes an old copy first.
        assert!(position("delete", "pre-marker") < position("apply", "pre-marker"));
        assert!(position("apply", "pre-marker") < position("apply", "migrate"));
        // The Job ran to completion and was deleted (hook-succeeded) before any resource.
        assert!(position("apply", "migrate") < position("delete", "migrate"));
        assert!(position("delete", "migrate") < position("apply", "first"));
        assert!(position("apply", "first") < position("apply", "web"));
        assert!(position("apply", "web") < position("apply", "announce"));
        // Delete hooks do not run on install.
        assert!(
            !calls
                .iter()
                .any(|(_, _, name)| name == "goodbye" || name == "farewell")
        );

        let cluster = report
            .app("hooked")
            .unwrap()
            .cluster(&cluster(index))
            .unwrap();
        let migrate = cluster.resource("Job", "migrate").unwrap();
        assert_eq!(migrate.deployed, DeployedStatus::Deleted);
        assert_eq!(
            migrate.ready,
            Some(ReadyStatus::Ready),
            "a hook removed by its policy after completing stays counted as ready"
        );
        assert_eq!(migrate.hook.as_deref(), Some(&[HookEvent::PreInstall][..]));
        let announce = cluster.resource("ConfigMap", "announce").unwrap();
        assert_eq!(
            announce.hook.as_deref(),
            Some(&[HookEvent::PostInstall][..])
        );
        let client = hub.client(index).await;
        assert!(
            client
                .get("batch/v1", "Job", Some("default"), "migrate")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .get("v1", "ConfigMap", Some("default"), "announce")
                .await
                .unwrap()
                .is_some()
        );
    }

    hub.log.lock().unwrap().clear();
    hub.terminate("c3").await;
    let report = hub.wait_status("c3", AppContextStatus::Terminated).await;
    for index in 1..=2 {
        let calls: Vec<(String, String)> = hub
            .calls(&format!("edge-{index}"))
            .into_iter()
            .map(|call| (call.verb.to_owned(), call.name))
            .collect();
        let position = |verb: &str, name: &str| {
            calls
                .iter()
                .position(|(v, n)| v == verb && n == name)
                .unwrap_or_else(|| panic!("no {verb} of {name} in {calls:?}"))
        };
        assert!(position("apply", "goodbye") < position("delete", "goodbye"));
        assert!(position("delete", "goodbye") < position("delete", "web"));
        assert!(
            position("delete", "web") < position("delete", "first"),
            "reverse install order"
        );
        assert!(position("delete", "first") < position("apply", "farewell"));
        // Then every hook object goes, the post-delete one included.
        let last = |verb: &str, name: &str| {
            calls
                .iter()
                .rposition(|(v, n)| v == verb && n == name)
                .unwrap_or_else(|| panic!("no {verb} of {name} in {calls:?}"))
        };
        assert!(position("apply", "farewell") < last("delete", "farewell"));
        assert!(position("apply", "farewell") < last("delete", "announce"));
        let cluster = report
            .app("hooked")
            .unwrap()
            .cluster(&cluster(index))
            .unwrap();
        assert_eq!(cluster.state, AppClusterState::Deleted);
        assert_eq!(
            cluster.resource("Job", "goodbye").unwrap().hook.as_deref(),
            Some(&[HookEvent::PreDelete][..])
        );
        let client = hub.client(index).await;
        assert!(
            client
                .get("v1", "ConfigMap", Some("default"), "first")
                .await
                .unwrap()
                .is_none()
        );
        for (api_version, kind, name) in [
            ("v1", "ConfigMap", "farewell"),
            ("v1", "ConfigMap", "announce"),
            ("v1", "ConfigMap", "pre-marker"),
            ("batch/v1", "Job", "goodbye"),
        ] {
            assert!(
                client
                    .get(api_version, kind, Some("default"), name)
                    .await
                    .unwrap()
                    .is_none(),
                "{name} left after terminate"
            );
        }
    }
}

#[tokio::test]
async fn a_failing_pre_install_hook_fails_the_app_on_that_cluster_only() {
    let hub = hub(2, Duration::from_millis(200)).await;
    let base = |fail: bool| {
        let mut objects = resources(vec![config_map("default", "after-hook")]);
        objects.push(hook(
            job("default", "check", fail),
            0,
            pre_install(),
            vec![DeletePolicy::HookFailed],
        ));
        objects
    };
    let failing: Vec<ContextObject> = base(true);
    let modifier = move |_app: &str, cluster: &ClusterId, _objects: &[ContextObject]| {
        Ok((cluster.cluster == "edge-2").then(|| failing.clone()))
    };
    let context = emco_core::appcontext::AppContextBuilder::new(
        emco_core::appcontext::DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id("c4")
    .modifier(&modifier)
    .app(app("checked", &[1, 2], base(false)))
    .app(depends(
        app(
            "later",
            &[1],
            resources(vec![config_map("default", "later")]),
        ),
        "checked",
        OpStatus::Deployed,
        0,
    ))
    .build()
    .unwrap();
    hub.instantiate(&context).await;
    let report = hub
        .wait_status("c4", AppContextStatus::InstantiateFailed)
        .await;

    assert_eq!(state(&report, "checked", 1), AppClusterState::Applied);
    let failed = report.app("checked").unwrap().cluster(&cluster(2)).unwrap();
    assert_eq!(failed.state, AppClusterState::Failed);
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains("hook Job/default/check failed") && error.contains("BackoffLimitExceeded"),
        "{error}"
    );
    assert_eq!(
        failed.resource("Job", "check").unwrap().deployed,
        DeployedStatus::Failed
    );
    assert_eq!(
        failed.resource("ConfigMap", "after-hook").unwrap().deployed,
        DeployedStatus::Pending
    );
    // The dependent app fails without being applied.
    let later = report.app("later").unwrap().cluster(&cluster(1)).unwrap();
    assert_eq!(later.state, AppClusterState::Failed);
    assert!(
        later
            .error
            .as_deref()
            .unwrap()
            .contains("dependency checked failed")
    );
    let client = hub.client(2).await;
    assert!(
        client
            .get("v1", "ConfigMap", Some("default"), "after-hook")
            .await
            .unwrap()
            .is_none()
    );
    // hook-failed: the failed Job was deleted.
    assert!(
        client
            .get("batch/v1", "Job", Some("default"), "check")
            .await
            .unwrap()
            .is_none()
    );
    let client = hub.client(1).await;
    assert!(
        client
            .get("v1", "ConfigMap", Some("default"), "after-hook")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        client
            .get("batch/v1", "Job", Some("default"), "check")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        client
            .get("v1", "ConfigMap", Some("default"), "later")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unreachable_cluster_retries_while_others_converge_then_converges() {
    let hub = hub(3, Duration::from_millis(100)).await;
    fault(&hub, 3, Some(Unreachable::Refuse));
    hub.instantiate(&two_apps("c5", &[1, 2, 3])).await;

    let report = hub
        .wait_for("c5", LONG, "two clusters applied, one retrying", |report| {
            ["web", "db"].iter().all(|app| {
                state(report, app, 1) == AppClusterState::Applied
                    && state(report, app, 2) == AppClusterState::Applied
            }) && report
                .app("web")
                .unwrap()
                .cluster(&cluster(3))
                .unwrap()
                .connectivity
                == Connectivity::Retrying
        })
        .await;
    assert_eq!(report.status, AppContextStatus::Instantiating);
    assert_eq!(state(&report, "web", 3), AppClusterState::Pending);

    fault(&hub, 3, None);
    let report = hub.wait_status("c5", AppContextStatus::Instantiated).await;
    for app in ["web", "db"] {
        let third = report.app(app).unwrap().cluster(&cluster(3)).unwrap();
        assert_eq!(third.state, AppClusterState::Applied);
        assert_eq!(third.connectivity, Connectivity::Available);
    }
    assert_eq!(
        labelled(&hub, 3, "v1", "ConfigMap", "c5-web").await,
        ["settings"]
    );
}

#[tokio::test]
async fn stop_ends_the_retries_of_a_hanging_cluster() {
    let hub = hub(2, Duration::from_millis(100)).await;
    fault(&hub, 2, Some(Unreachable::Hang));
    hub.instantiate(&two_apps("c6", &[1, 2])).await;
    hub.wait_for(
        "c6",
        LONG,
        "cluster 1 applied, cluster 2 retrying",
        |report| {
            state(report, "web", 1) == AppClusterState::Applied
                && state(report, "db", 1) == AppClusterState::Applied
                && report
                    .app("web")
                    .unwrap()
                    .cluster(&cluster(2))
                    .unwrap()
                    .connectivity
                    == Connectivity::Retrying
        },
    )
    .await;
    assert!(hub.sync.is_running("c6"));

    let started = std::time::Instant::now();
    assert!(hub.sync.stop("c6").await.unwrap());
    let report = hub
        .wait_status("c6", AppContextStatus::InstantiateFailed)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(report.stop_requested);
    assert_eq!(report.message.as_deref(), Some("stopped"));
    for app in ["web", "db"] {
        assert_eq!(state(&report, app, 1), AppClusterState::Applied);
        let second = report.app(app).unwrap().cluster(&cluster(2)).unwrap();
        assert_eq!(second.state, AppClusterState::Stopped);
        assert!(
            second
                .resources
                .iter()
                .all(|r| r.deployed == DeployedStatus::Pending)
        );
    }
    assert!(!hub.sync.stop("c6").await.unwrap(), "already finished");
    // Resuming does not restart a stopped run.
    assert_eq!(hub.sync.resume_all().await.unwrap(), 0);
    fault(&hub, 2, None);
}

#[tokio::test]
async fn terminating_with_an_unreachable_cluster_completes_after_stop() {
    let hub = hub(2, Duration::from_millis(50)).await;
    hub.instantiate(&two_apps("c7", &[1, 2])).await;
    hub.wait_status("c7", AppContextStatus::Instantiated).await;

    fault(&hub, 2, Some(Unreachable::Refuse));
    hub.terminate("c7").await;
    let report = hub
        .wait_for(
            "c7",
            LONG,
            "cluster 1 deleted, cluster 2 retrying",
            |report| {
                state(report, "web", 1) == AppClusterState::Deleted
                    && state(report, "db", 1) == AppClusterState::Deleted
                    && report
                        .app("web")
                        .unwrap()
                        .cluster(&cluster(2))
                        .unwrap()
                        .connectivity
                        == Connectivity::Retrying
            },
        )
        .await;
    assert_eq!(report.status, AppContextStatus::Terminating);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hub.report("c7").await.status,
        AppContextStatus::Terminating,
        "it keeps retrying"
    );

    assert!(hub.sync.stop("c7").await.unwrap());
    let report = hub
        .wait_status("c7", AppContextStatus::TerminateFailed)
        .await;
    let message = report.message.unwrap();
    assert!(message.starts_with("stopped; left behind: "), "{message}");
    assert!(
        message.contains("web on prov+edge-2: Deployment/web/frontend"),
        "{message}"
    );
    assert!(
        message.contains("db on prov+edge-2: Service/db/postgres"),
        "{message}"
    );
    assert!(!message.contains("edge-1"), "{message}");
    // Still there, as reported.
    fault(&hub, 2, None);
    let client = hub.client(2).await;
    assert!(
        client
            .get("v1", "Service", Some("db"), "postgres")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_refused_object_fails_with_the_servers_message_and_the_rest_is_applied() {
    let hub = hub(1, Duration::from_millis(50)).await;
    let context = context(
        "c8",
        vec![app(
            "mixed",
            &[1],
            resources(vec![
                config_map("default", "good-before"),
                config_map("default", "Bad_Name"),
                config_map("default", "good-after"),
            ]),
        )],
    );
    hub.instantiate(&context).await;
    let report = hub
        .wait_status("c8", AppContextStatus::InstantiateFailed)
        .await;
    let cluster = report.app("mixed").unwrap().cluster(&cluster(1)).unwrap();
    assert_eq!(cluster.state, AppClusterState::Failed);
    let bad = cluster.resource("ConfigMap", "Bad_Name").unwrap();
    assert_eq!(bad.deployed, DeployedStatus::Failed);
    let message = bad.message.as_deref().unwrap();
    assert!(
        message.contains("422") && message.contains("Bad_Name"),
        "{message}"
    );
    for name in ["good-before", "good-after"] {
        assert_eq!(
            cluster.resource("ConfigMap", name).unwrap().deployed,
            DeployedStatus::Applied
        );
    }
    assert_eq!(
        labelled(&hub, 1, "v1", "ConfigMap", "c8-mixed").await,
        ["good-after", "good-before"]
    );
}

#[tokio::test]
async fn a_cluster_without_kubeconfig_fails_permanently_with_the_reason() {
    let hub = hub(2, Duration::from_millis(50)).await;
    hub.store
        .delete(&emco_rsync::engine::kubeconfig_key(&cluster(2)))
        .await
        .unwrap();
    hub.instantiate(&two_apps("c9", &[1, 2])).await;
    let report = hub
        .wait_status("c9", AppContextStatus::InstantiateFailed)
        .await;
    assert_eq!(state(&report, "web", 1), AppClusterState::Applied);
    let second = report.app("web").unwrap().cluster(&cluster(2)).unwrap();
    assert_eq!(second.state, AppClusterState::Failed);
    assert!(
        second.error.as_deref().unwrap().contains("no kubeconfig"),
        "{second:#?}"
    );
}

#[tokio::test]
async fn a_crashed_instantiate_resumes_without_rerunning_completed_hooks() {
    let hub = hub(3, Duration::from_millis(1500)).await;
    let mut first = resources(vec![
        namespace("app"),
        config_map("app", "conf"),
        deployment("app", "server"),
    ]);
    // No delete policy: before-hook-creation, so running it again would replace the Job.
    first.push(hook(
        job("default", "setup", false),
        0,
        pre_install(),
        vec![],
    ));
    let context = context(
        "c10",
        vec![
            app("first", &[1, 2, 3], first),
            depends(
                app(
                    "second",
                    &[1, 2, 3],
                    resources(vec![config_map("default", "second")]),
                ),
                "first",
                OpStatus::Ready,
                0,
            ),
        ],
    );
    hub.instantiate(&context).await;
    // Crash once the hook completed everywhere (the Deployment is not ready yet, so the second
    // app has not started).
    let report = hub
        .wait_for("c10", LONG, "hooks done", |report| {
            (1..=3).all(|index| {
                report
                    .app("first")
                    .unwrap()
                    .cluster(&cluster(index))
                    .unwrap()
                    .resource("Job", "setup")
                    .unwrap()
                    .hook
                    .as_deref()
                    == Some(&[HookEvent::PreInstall][..])
            })
        })
        .await;
    hub.sync.shutdown();
    assert_eq!(report.status, AppContextStatus::Instantiating);
    let mut uids = Vec::new();
    for index in 1..=3 {
        let client = hub.client(index).await;
        let setup = client
            .get("batch/v1", "Job", Some("default"), "setup")
            .await
            .unwrap()
            .unwrap();
        uids.push(setup["metadata"]["uid"].clone());
    }

    let (resumed, log) = synchronizer(hub.store.clone(), fast_config());
    assert_eq!(resumed.resume_all().await.unwrap(), 1);
    let report = wait_report(&resumed, "c10", LONG, "resumed to all ready", |report| {
        report.status == AppContextStatus::Instantiated && report.all_ready
    })
    .await;
    for index in 1..=3 {
        assert_eq!(state(&report, "first", index), AppClusterState::Applied);
        assert_eq!(state(&report, "second", index), AppClusterState::Applied);
        let client = hub.client(index).await;
        let setup = client
            .get("batch/v1", "Job", Some("default"), "setup")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            setup["metadata"]["uid"],
            uids[index - 1],
            "the hook ran again"
        );
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c10-first").await,
            ["conf"]
        );
        assert_eq!(
            labelled(&hub, index, "apps/v1", "Deployment", "c10-first").await,
            ["server"]
        );
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c10-second").await,
            ["second"]
        );
    }
    let calls = log.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|call| call.name == "setup"),
        "the resumed run touched the completed hook: {calls:?}"
    );
    // Nothing left to resume.
    assert_eq!(resumed.resume_all().await.unwrap(), 0);
}

#[tokio::test]
async fn a_crashed_terminate_resumes_without_rerunning_completed_hooks() {
    let hub = hub(2, Duration::from_millis(100)).await;
    let mut held = config_map("default", "held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let mut objects = resources(vec![config_map("default", "plain"), held]);
    objects.push(hook(
        job("default", "drain", false),
        0,
        pre_delete(),
        vec![],
    ));
    let context = context("c11", vec![app("guarded", &[1, 2], objects)]);
    hub.instantiate(&context).await;
    hub.wait_status("c11", AppContextStatus::Instantiated).await;

    hub.terminate("c11").await;
    // The finalizer holds the deletion: the run waits there, after the pre-delete hook.
    hub.wait_for("c11", LONG, "pre-delete hooks done", |report| {
        (1..=2).all(|index| {
            report
                .app("guarded")
                .unwrap()
                .cluster(&cluster(index))
                .unwrap()
                .resource("Job", "drain")
                .unwrap()
                .hook
                .as_deref()
                == Some(&[HookEvent::PreDelete][..])
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    hub.sync.shutdown();
    let mut uids = Vec::new();
    for index in 1..=2 {
        let client = hub.client(index).await;
        let drain = client
            .get("batch/v1", "Job", Some("default"), "drain")
            .await
            .unwrap()
            .unwrap();
        uids.push(drain["metadata"]["uid"].clone());
        let held = client
            .get("v1", "ConfigMap", Some("default"), "held")
            .await
            .unwrap()
            .unwrap();
        assert!(held["metadata"]["deletionTimestamp"].is_string());
    }

    let (resumed, log) = synchronizer(hub.store.clone(), fast_config());
    assert_eq!(resumed.resume_all().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        resumed.context_status("c11").await.unwrap().unwrap().status,
        AppContextStatus::Terminating
    );
    for index in 1..=2 {
        let drain = hub
            .client(index)
            .await
            .get("batch/v1", "Job", Some("default"), "drain")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            drain["metadata"]["uid"],
            uids[index - 1],
            "the hook ran again"
        );
    }
    // Release the finalizers: the deletions finish.
    for index in 1..=2 {
        let client = hub.client(index).await;
        let mut release = config_map("default", "held");
        release["metadata"]["finalizers"] = json!([]);
        client.apply(&release).await.unwrap();
    }
    let report = wait_report(&resumed, "c11", LONG, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
    for index in 1..=2 {
        assert_eq!(state(&report, "guarded", index), AppClusterState::Deleted);
        let client = hub.client(index).await;
        assert!(
            client
                .get("v1", "ConfigMap", Some("default"), "plain")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .get("v1", "ConfigMap", Some("default"), "held")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            client
                .get("batch/v1", "Job", Some("default"), "drain")
                .await
                .unwrap()
                .is_none(),
            "hook objects go at the end of a terminate"
        );
    }
    let calls = log.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .filter(|call| call.name == "drain")
            .all(|call| call.verb == "delete"),
        "the resumed run applied the completed hook again: {calls:?}"
    );
}

/// A hook with Helm's default policy (before-hook-creation) whose Job completed while the hub
/// was down, before the run saw it complete: the resumed run waits for that Job instead of
/// deleting it and running the hook again.
#[tokio::test]
async fn a_hook_that_completed_while_the_hub_was_down_is_not_run_again() {
    let hub = hub(2, Duration::from_millis(200)).await;
    hub.sync.shutdown();
    let mut objects = resources(vec![config_map("default", "after-setup")]);
    objects.push(hook(
        job("default", "setup", false),
        0,
        pre_install(),
        vec![],
    ));
    let context = context("c13", vec![app("seeded", &[1, 2], objects)]);
    // The crashing hub looks at its hooks rarely, so they complete unseen.
    let slow = emco_rsync::SyncConfig {
        ready_poll_initial: Duration::from_secs(10),
        ready_poll_max: Duration::from_secs(10),
        ..fast_config()
    };
    let (crashing, _) = synchronizer(hub.store.clone(), slow);
    hub.store_context(&context).await;
    let outcome = hub
        .store
        .txn(emco_store::Txn {
            compares: vec![],
            ops: Synchronizer::instantiate_ops("c13"),
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    crashing.kick("c13");
    let mut uids = Vec::new();
    for index in 1..=2 {
        let client = hub.client(index).await;
        let deadline = std::time::Instant::now() + LONG;
        let setup = loop {
            if let Some(setup) = client
                .get("batch/v1", "Job", Some("default"), "setup")
                .await
                .unwrap()
                && readiness(&setup) == Readiness::Ready
            {
                break setup;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the hook never completed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        uids.push(setup["metadata"]["uid"].clone());
    }
    let report = crashing.context_status("c13").await.unwrap().unwrap();
    assert_eq!(report.status, AppContextStatus::Instantiating);
    for index in 1..=2 {
        let cluster = report
            .app("seeded")
            .unwrap()
            .cluster(&cluster(index))
            .unwrap();
        let setup = cluster.resource("Job", "setup").unwrap();
        assert_eq!(
            setup.hook.as_deref(),
            Some(&[][..]),
            "not seen complete yet"
        );
        assert_eq!(
            setup.deployed,
            DeployedStatus::Applied,
            "its apply is recorded"
        );
    }
    crashing.shutdown();

    let (resumed, log) = synchronizer(hub.store.clone(), fast_config());
    assert_eq!(resumed.resume_all().await.unwrap(), 1);
    let report = wait_report(&resumed, "c13", LONG, "instantiated", |report| {
        report.status == AppContextStatus::Instantiated
    })
    .await;
    for index in 1..=2 {
        let cluster = report
            .app("seeded")
            .unwrap()
            .cluster(&cluster(index))
            .unwrap();
        assert_eq!(cluster.state, AppClusterState::Applied);
        let setup = cluster.resource("Job", "setup").unwrap();
        assert_eq!(setup.hook.as_deref(), Some(&[HookEvent::PreInstall][..]));
        let live = hub
            .client(index)
            .await
            .get("batch/v1", "Job", Some("default"), "setup")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            live["metadata"]["uid"],
            uids[index - 1],
            "the hook ran again"
        );
    }
    let calls = log.lock().unwrap().clone();
    assert!(
        !calls
            .iter()
            .any(|call| call.name == "setup" && call.verb == "delete"),
        "the resumed run replaced the hook's Job: {calls:?}"
    );

    // A later operation's hook still replaces the copy an earlier operation left.
    resumed.shutdown();
    let (again, log) = synchronizer(hub.store.clone(), fast_config());
    let outcome = hub
        .store
        .txn(emco_store::Txn {
            compares: vec![],
            ops: Synchronizer::instantiate_ops("c13"),
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    again.kick("c13");
    wait_report(&again, "c13", LONG, "instantiated again", |report| {
        report.status == AppContextStatus::Instantiated
    })
    .await;
    let calls = log.lock().unwrap().clone();
    for index in 1..=2 {
        let cluster = format!("edge-{index}");
        let position = |verb: &str| {
            calls
                .iter()
                .position(|call| {
                    call.cluster == cluster && call.name == "setup" && call.verb == verb
                })
                .unwrap_or_else(|| panic!("no {verb} of setup on {cluster}: {calls:?}"))
        };
        assert!(position("delete") < position("apply"));
    }
}

/// A hook whose previous copy cannot be deleted (its kind is not served, as a chart's
/// `policy/v1beta1` PodSecurityPolicy hook on Kubernetes 1.25+) fails with the cluster's
/// message, and the app fails there; terminate then has nothing of that kind to delete.
#[tokio::test]
async fn a_refused_delete_of_a_hooks_previous_copy_fails_the_hook_with_the_message() {
    let hub = hub(1, Duration::from_millis(50)).await;
    let mut objects = resources(vec![config_map("default", "after-policy")]);
    objects.push(hook(
        json!({
            "apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy",
            "metadata": {"name": "restricted"},
            "spec": {"privileged": false},
        }),
        0,
        pre_install(),
        vec![],
    ));
    let context = context("c14", vec![app("legacy", &[1], objects)]);
    hub.instantiate(&context).await;
    let report = hub
        .wait_status("c14", AppContextStatus::InstantiateFailed)
        .await;
    let cluster = report.app("legacy").unwrap().cluster(&cluster(1)).unwrap();
    assert_eq!(cluster.state, AppClusterState::Failed);
    let error = cluster.error.as_deref().unwrap();
    assert!(
        error.contains("hook PodSecurityPolicy/restricted failed")
            && error.contains("no resource for kind PodSecurityPolicy in policy/v1beta1"),
        "{error}"
    );
    let policy = cluster.resource("PodSecurityPolicy", "restricted").unwrap();
    assert_eq!(policy.deployed, DeployedStatus::Failed, "{policy:#?}");
    let message = policy.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("no resource for kind PodSecurityPolicy in policy/v1beta1"),
        "{policy:#?}"
    );
    assert_eq!(
        cluster
            .resource("ConfigMap", "after-policy")
            .unwrap()
            .deployed,
        DeployedStatus::Pending
    );

    hub.terminate("c14").await;
    let report = hub.wait_status("c14", AppContextStatus::Terminated).await;
    assert_eq!(report.message, None);
    assert_eq!(state(&report, "legacy", 1), AppClusterState::Deleted);
}

/// Terminate deletes every hook object of the app once its post-delete hooks ran, whatever the
/// hooks' events and delete policies, and keeps only objects marked to be kept on uninstall.
#[tokio::test]
async fn terminate_deletes_every_hook_object_but_kept_ones() {
    let hub = hub(2, Duration::from_millis(100)).await;
    let mut objects = resources(vec![config_map("default", "plain")]);
    objects.push(hook(
        job("default", "setup", false),
        0,
        pre_install(),
        vec![],
    ));
    objects.push(hook(
        config_map("default", "announce"),
        0,
        post_install(),
        vec![DeletePolicy::BeforeHookCreation],
    ));
    let mut kept = hook(config_map("default", "kept"), 1, pre_install(), vec![]);
    kept.keep_on_uninstall = true;
    objects.push(kept);
    objects.push(hook(
        job("default", "drain", false),
        0,
        pre_delete(),
        vec![DeletePolicy::HookFailed],
    ));
    objects.push(hook(
        config_map("default", "farewell"),
        0,
        post_delete(),
        vec![],
    ));
    let context = context("c15", vec![app("hooked", &[1, 2], objects)]);
    hub.instantiate(&context).await;
    hub.wait_status("c15", AppContextStatus::Instantiated).await;
    for index in 1..=2 {
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c15-hooked").await,
            ["announce", "kept", "plain"]
        );
    }

    hub.log.lock().unwrap().clear();
    hub.terminate("c15").await;
    let report = hub.wait_status("c15", AppContextStatus::Terminated).await;
    assert_eq!(report.message, None);
    for index in 1..=2 {
        assert_eq!(
            labelled(&hub, index, "v1", "ConfigMap", "c15-hooked").await,
            ["kept"],
            "only the kept hook stays"
        );
        assert!(
            labelled(&hub, index, "batch/v1", "Job", "c15-hooked")
                .await
                .is_empty()
        );
        let cluster = report
            .app("hooked")
            .unwrap()
            .cluster(&cluster(index))
            .unwrap();
        assert_eq!(cluster.state, AppClusterState::Deleted);
        for (kind, name) in [
            ("ConfigMap", "plain"),
            ("Job", "setup"),
            ("ConfigMap", "announce"),
            ("Job", "drain"),
            ("ConfigMap", "farewell"),
        ] {
            let resource = cluster.resource(kind, name).unwrap();
            assert_eq!(resource.deployed, DeployedStatus::Deleted, "{resource:#?}");
            assert_eq!(resource.ready, None, "{resource:#?}");
        }
        assert_eq!(
            cluster.resource("ConfigMap", "kept").unwrap().deployed,
            DeployedStatus::Applied
        );
        let calls: Vec<(String, String)> = hub
            .calls(&format!("edge-{index}"))
            .into_iter()
            .map(|call| (call.verb.to_owned(), call.name))
            .collect();
        let position = |verb: &str, name: &str| {
            calls
                .iter()
                .position(|(v, n)| v == verb && n == name)
                .unwrap_or_else(|| panic!("no {verb} of {name} in {calls:?}"))
        };
        let last_delete = |name: &str| {
            calls
                .iter()
                .rposition(|(v, n)| v == "delete" && n == name)
                .unwrap_or_else(|| panic!("no delete of {name} in {calls:?}"))
        };
        assert!(position("delete", "plain") < position("apply", "farewell"));
        for name in ["setup", "announce", "drain", "farewell"] {
            assert!(
                position("apply", "farewell") < last_delete(name),
                "{name} deleted before the post-delete hook ran: {calls:?}"
            );
        }
        assert!(!calls.iter().any(|(_, name)| name == "kept"), "{calls:?}");
    }
}

#[tokio::test]
async fn terminate_replaces_a_running_instantiate() {
    let hub = hub(2, Duration::from_millis(100)).await;
    fault(&hub, 2, Some(Unreachable::Refuse));
    hub.instantiate(&two_apps("c12", &[1, 2])).await;
    hub.wait_for("c12", LONG, "cluster 1 applied", |report| {
        state(report, "web", 1) == AppClusterState::Applied
            && state(report, "db", 1) == AppClusterState::Applied
    })
    .await;
    hub.terminate("c12").await;
    fault(&hub, 2, None);
    let report = hub.wait_status("c12", AppContextStatus::Terminated).await;
    assert_eq!(report.op, emco_rsync::OpKind::Terminate);
    for index in 1..=2 {
        assert_eq!(state(&report, "web", index), AppClusterState::Deleted);
        let client = hub.client(index).await;
        assert!(
            client
                .get("v1", "ConfigMap", Some("web"), "settings")
                .await
                .unwrap()
                .is_none()
        );
    }
    // The replaced instantiate wrote nothing after the terminate began.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.report("c12").await.status, AppContextStatus::Terminated);
}

#[tokio::test]
async fn runs_on_etcd_too() {
    let Some(etcd) = emco_store::testing::EtcdServer::start() else {
        return;
    };
    let store = emco_store::EtcdStore::connect_with_namespace(
        std::slice::from_ref(&etcd.endpoint),
        "rsync-test",
    )
    .await
    .unwrap();
    let hub = hub_on(
        std::sync::Arc::new(store),
        tempfile::tempdir().unwrap(),
        2,
        Duration::from_millis(100),
    )
    .await;
    hub.instantiate(&two_apps("e1", &[1, 2])).await;
    hub.wait_for("e1", LONG, "instantiated and ready", |report| {
        report.status == AppContextStatus::Instantiated && report.all_ready
    })
    .await;
    assert_eq!(
        labelled(&hub, 2, "v1", "Service", "e1-db").await,
        ["postgres"]
    );
    hub.terminate("e1").await;
    let report = hub.wait_status("e1", AppContextStatus::Terminated).await;
    assert_eq!(state(&report, "db", 2), AppClusterState::Deleted);
    assert!(
        hub.client(1)
            .await
            .get("v1", "ConfigMap", Some("web"), "settings")
            .await
            .unwrap()
            .is_none()
    );
}

/// A summary status query with these parameters.
fn summary_query(pairs: &[(&str, &str)]) -> emco_core::status::StatusQuery {
    let mut params: std::collections::HashMap<String, Vec<String>> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), vec![(*value).to_owned()]))
        .collect();
    params.insert("output".into(), vec!["summary".into()]);
    emco_core::status::StatusQuery::parse(&params).unwrap()
}
