//! Update and rollback of a running deployment: the synchronizer reconciles the difference
//! between two contexts cluster by cluster, sending only what changed.

use crate::common;

use std::time::Duration;

use common::*;
use emco_core::appcontext::{AppContext, DeletePolicy};
use emco_core::status::AppContextStatus;
use emco_rsync::engine::{AppClusterState, DEPLOYMENT_ID_LABEL, LastAction};
use emco_rsync::{ClusterApi, ContextReport};
use emco_sim::faults::{FaultPlan, Unreachable, set_faults};

const LONG: Duration = Duration::from_secs(30);

fn state(report: &ContextReport, app: &str, index: usize) -> AppClusterState {
    report
        .app(app)
        .unwrap()
        .cluster(&cluster(index))
        .unwrap()
        .state
}

fn deployment_with_image(name: &str, image: &str) -> serde_json::Value {
    let mut value = deployment("default", name);
    value["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
    value
}

/// Revision 1: `web` (ConfigMap, Deployment, Service) on edge-1..3, `db` on edge-1 and 2.
fn revision_one(id: &str) -> AppContext {
    context(
        id,
        vec![
            app(
                "web",
                &[1, 2, 3],
                resources(vec![
                    config_map("default", "web-conf"),
                    deployment_with_image("web", "nginx:1.27"),
                    service("default", "web"),
                ]),
            ),
            app("db", &[1, 2], resources(vec![config_map("default", "db")])),
        ],
    )
}

/// Revision 2: web's image changes, its Service goes, a ConfigMap is added; `db` moves from
/// edge-1 to edge-3 (stays on edge-2); a new app `cache` on edge-1.
fn revision_two(id: &str) -> AppContext {
    context(
        id,
        vec![
            app(
                "web",
                &[1, 2, 3],
                resources(vec![
                    config_map("default", "web-conf"),
                    deployment_with_image("web", "nginx:1.28"),
                    config_map("default", "web-extra"),
                ]),
            ),
            app("db", &[2, 3], resources(vec![config_map("default", "db")])),
            app(
                "cache",
                &[1],
                resources(vec![config_map("default", "cache")]),
            ),
        ],
    )
}

/// (verb, kind, name) of the calls that changed cluster `edge-{index}`, sorted.
fn changes(hub: &Hub, index: usize) -> Vec<(&'static str, String, String)> {
    let mut calls: Vec<_> = hub
        .calls(&format!("edge-{index}"))
        .into_iter()
        .map(|call| (call.verb, call.kind, call.name))
        .collect();
    calls.sort();
    calls
}

fn call(verb: &'static str, kind: &str, name: &str) -> (&'static str, String, String) {
    (verb, kind.to_owned(), name.to_owned())
}

async fn image_and_label(hub: &Hub, index: usize) -> (String, String) {
    let web = hub
        .client(index)
        .await
        .get("apps/v1", "Deployment", Some("default"), "web")
        .await
        .unwrap()
        .unwrap();
    (
        web["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned(),
        web["metadata"]["labels"][DEPLOYMENT_ID_LABEL]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

async fn exists(hub: &Hub, index: usize, api_version: &str, kind: &str, name: &str) -> bool {
    hub.client(index)
        .await
        .get(api_version, kind, Some("default"), name)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn an_update_sends_only_what_changed_and_a_rollback_undoes_it() {
    let hub = hub(3, Duration::from_millis(50)).await;
    let first = revision_one("r1");
    hub.instantiate(&first).await;
    hub.wait_for("r1", LONG, "instantiated and ready", |report| {
        report.status == AppContextStatus::Instantiated && report.all_ready
    })
    .await;
    hub.log.lock().unwrap().clear();

    let second = revision_two("r2");
    hub.update("r1", &second, "r1", false).await;
    let report = hub
        .wait_for("r2", LONG, "updated and ready", |report| {
            report.status == AppContextStatus::Updated && report.all_ready
        })
        .await;
    for index in 1..=3 {
        assert_eq!(state(&report, "web", index), AppClusterState::Applied);
    }
    assert_eq!(state(&report, "db", 2), AppClusterState::Applied);
    assert_eq!(state(&report, "db", 3), AppClusterState::Applied);
    assert_eq!(state(&report, "cache", 1), AppClusterState::Applied);
    let last_action = |app: &str, index: usize, kind: &str, name: &str| {
        report
            .app(app)
            .unwrap()
            .cluster(&cluster(index))
            .unwrap()
            .resource(kind, name)
            .unwrap()
            .last_action
    };
    assert_eq!(last_action("web", 2, "ConfigMap", "web-conf"), None);
    assert_eq!(
        last_action("web", 2, "Deployment", "web"),
        Some(LastAction::Updated)
    );
    assert_eq!(
        last_action("web", 2, "ConfigMap", "web-extra"),
        Some(LastAction::Created)
    );
    assert_eq!(
        last_action("db", 3, "ConfigMap", "db"),
        Some(LastAction::Created)
    );
    assert_eq!(last_action("db", 2, "ConfigMap", "db"), None);

    // Only the differences reached each cluster.
    let web_changes = [
        call("apply", "ConfigMap", "web-extra"),
        call("apply", "Deployment", "web"),
        call("delete", "Service", "web"),
    ];
    let mut edge1 = web_changes.to_vec();
    edge1.extend([
        call("apply", "ConfigMap", "cache"),
        call("delete", "ConfigMap", "db"),
    ]);
    edge1.sort();
    assert_eq!(changes(&hub, 1), edge1);
    assert_eq!(changes(&hub, 2), web_changes.to_vec(), "db stays untouched");
    let mut edge3 = web_changes.to_vec();
    edge3.push(call("apply", "ConfigMap", "db"));
    edge3.sort();
    assert_eq!(changes(&hub, 3), edge3);

    for index in 1..=3 {
        // The label stays the first context's, so unchanged objects stay identical.
        assert_eq!(
            image_and_label(&hub, index).await,
            ("nginx:1.28".to_owned(), "r1-web".to_owned())
        );
        assert!(!exists(&hub, index, "v1", "Service", "web").await);
        assert!(exists(&hub, index, "v1", "ConfigMap", "web-extra").await);
    }
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "db").await);
    assert!(exists(&hub, 3, "v1", "ConfigMap", "db").await);

    // The source's run is gone, and so are its records once the update finished.
    assert!(hub.sync.run_status("r1").await.unwrap().is_none());
    assert!(hub.store.list("rsync/ac/r1/").await.unwrap().is_empty());

    // Rollback: back to revision one's objects (its context is run again as the target).
    hub.log.lock().unwrap().clear();
    hub.update("r2", &first, "r1", true).await;
    let report = hub
        .wait_for("r1", LONG, "rolled back and ready", |report| {
            report.status == AppContextStatus::Updated && report.all_ready
        })
        .await;
    assert_eq!(state(&report, "db", 1), AppClusterState::Applied);
    let mut edge1 = vec![
        call("apply", "Deployment", "web"),
        call("apply", "Service", "web"),
        call("delete", "ConfigMap", "web-extra"),
        call("delete", "ConfigMap", "cache"),
        call("apply", "ConfigMap", "db"),
    ];
    edge1.sort();
    assert_eq!(changes(&hub, 1), edge1);
    for index in 1..=3 {
        assert_eq!(
            image_and_label(&hub, index).await,
            ("nginx:1.27".to_owned(), "r1-web".to_owned())
        );
        assert!(exists(&hub, index, "v1", "Service", "web").await);
    }
    assert!(!exists(&hub, 3, "v1", "ConfigMap", "db").await);
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "cache").await);
    assert!(hub.store.list("rsync/ac/r2/").await.unwrap().is_empty());

    // Terminate removes what the rolled-back revision has.
    hub.terminate("r1").await;
    hub.wait_status("r1", AppContextStatus::Terminated).await;
    for index in 1..=3 {
        assert!(!exists(&hub, index, "apps/v1", "Deployment", "web").await);
    }
}

#[tokio::test]
async fn upgrade_hooks_run_around_a_changed_app_only() {
    let hub = hub(2, Duration::from_millis(50)).await;
    let objects = |image: &str, conf: &str| {
        let mut objects = resources(vec![
            deployment_with_image("web", image),
            config_map("default", conf),
        ]);
        objects.push(hook(
            job("default", "migrate", false),
            0,
            pre_upgrade(),
            vec![DeletePolicy::BeforeHookCreation],
        ));
        objects.push(hook(
            config_map("default", "after-upgrade"),
            0,
            post_upgrade(),
            vec![],
        ));
        objects.push(hook(
            job("default", "undo", false),
            0,
            pre_rollback(),
            vec![DeletePolicy::HookSucceeded],
        ));
        objects
    };
    let first = context(
        "h1",
        vec![
            app("web", &[1, 2], objects("nginx:1.27", "conf")),
            app(
                "other",
                &[1],
                resources(vec![config_map("default", "other")]),
            ),
        ],
    );
    hub.instantiate(&first).await;
    hub.wait_status("h1", AppContextStatus::Instantiated).await;
    let names: Vec<String> = hub.calls("edge-1").into_iter().map(|c| c.name).collect();
    assert!(
        !names
            .iter()
            .any(|name| name == "migrate" || name == "after-upgrade"),
        "upgrade hooks do not run at install: {names:?}"
    );
    hub.log.lock().unwrap().clear();

    // web's Deployment changes everywhere; `other` stays as it is.
    let second = context(
        "h2",
        vec![
            app("web", &[1, 2], objects("nginx:1.28", "conf")),
            app(
                "other",
                &[1],
                resources(vec![config_map("default", "other")]),
            ),
        ],
    );
    hub.update("h1", &second, "h1", false).await;
    hub.wait_status("h2", AppContextStatus::Updated).await;
    for index in 1..=2 {
        let calls: Vec<(&str, String)> = hub
            .calls(&format!("edge-{index}"))
            .into_iter()
            .filter(|call| call.verb == "apply")
            .map(|call| (call.verb, call.name))
            .collect();
        assert_eq!(
            calls,
            [
                ("apply", "migrate".to_owned()),
                ("apply", "web".to_owned()),
                ("apply", "after-upgrade".to_owned()),
            ],
            "pre-upgrade hook, the changed Deployment, post-upgrade hook on edge-{index}"
        );
    }
    assert!(
        !hub.calls("edge-1").iter().any(|call| call.name == "other"),
        "an unchanged app is left alone"
    );

    // A rollback runs the rollback hooks, not the upgrade ones.
    hub.log.lock().unwrap().clear();
    hub.update("h2", &first, "h1", true).await;
    hub.wait_status("h1", AppContextStatus::Updated).await;
    let applied: Vec<String> = hub
        .calls("edge-1")
        .into_iter()
        .filter(|call| call.verb == "apply")
        .map(|call| call.name)
        .collect();
    assert_eq!(applied, ["undo", "web"]);
}

#[tokio::test]
async fn a_hub_killed_during_an_update_converges_to_the_target_after_restart() {
    let hub = hub(3, Duration::from_millis(50)).await;
    hub.instantiate(&revision_one("k1")).await;
    hub.wait_for("k1", LONG, "ready", |report| {
        report.status == AppContextStatus::Instantiated && report.all_ready
    })
    .await;
    // edge-3 cannot be reached: the update finishes the others and keeps retrying it.
    let edge3 = hub.sim.sim.cluster("edge-3").unwrap();
    set_faults(
        &edge3,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }),
    );
    hub.update("k1", &revision_two("k2"), "k1", false).await;
    hub.wait_for("k2", LONG, "edge-1 and edge-2 updated", |report| {
        state(report, "web", 1) == AppClusterState::Applied
            && state(report, "web", 2) == AppClusterState::Applied
            && state(report, "cache", 1) == AppClusterState::Applied
    })
    .await;
    hub.sync.shutdown();
    assert_eq!(
        hub.sync.run_status("k2").await.unwrap().unwrap().status,
        AppContextStatus::Updating
    );

    set_faults(&edge3, None);
    let (resumed, log) = synchronizer(hub.store.clone(), fast_config());
    assert_eq!(resumed.resume_all().await.unwrap(), 1);
    let report = wait_report(&resumed, "k2", LONG, "updated after restart", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;
    assert_eq!(state(&report, "db", 3), AppClusterState::Applied);
    for index in 1..=3 {
        assert_eq!(image_and_label(&hub, index).await.0, "nginx:1.28");
        assert!(!exists(&hub, index, "v1", "Service", "web").await);
    }
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "db").await);
    // Clusters finished before the crash were not worked on again.
    let calls = log.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .all(|call| call.cluster == "edge-3" && call.verb != "get"),
        "the resumed update touched finished clusters: {calls:?}"
    );
    assert!(hub.store.list("rsync/ac/k1/").await.unwrap().is_empty());
}

#[tokio::test]
async fn what_a_stopped_update_left_behind_goes_with_the_next_update_or_the_terminate() {
    let hub = hub(2, Duration::from_millis(50)).await;
    let first = context(
        "s1",
        vec![
            app(
                "web",
                &[1, 2],
                resources(vec![
                    config_map("default", "web-conf"),
                    deployment_with_image("web", "nginx:1.27"),
                ]),
            ),
            app("db", &[1], resources(vec![config_map("default", "db")])),
        ],
    );
    hub.instantiate(&first).await;
    hub.wait_status("s1", AppContextStatus::Instantiated).await;
    // Revision 2 drops web's ConfigMap and the db app; edge-1 cannot be reached, and the
    // update is stopped before it gets there.
    let edge1 = hub.sim.sim.cluster("edge-1").unwrap();
    set_faults(
        &edge1,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }),
    );
    let without = |id: &str, image: &str| {
        context(
            id,
            vec![app(
                "web",
                &[1, 2],
                resources(vec![deployment_with_image("web", image)]),
            )],
        )
    };
    hub.update("s1", &without("s2", "nginx:1.28"), "s1", false)
        .await;
    hub.wait_for("s2", LONG, "edge-2 updated", |report| {
        state(report, "web", 2) == AppClusterState::Applied
    })
    .await;
    assert!(hub.sync.stop("s2").await.unwrap());
    hub.wait_status("s2", AppContextStatus::UpdateFailed).await;
    set_faults(&edge1, None);
    assert!(
        hub.store.get("rsync/left/s2").await.unwrap().is_some(),
        "what edge-1 still holds of revision 1 is recorded"
    );

    // The next update removes it, though its own diff (2 -> 3) does not mention it.
    hub.update("s2", &without("s3", "nginx:1.29"), "s1", false)
        .await;
    hub.wait_status("s3", AppContextStatus::Updated).await;
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "db").await);
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "web-conf").await);
    assert_eq!(image_and_label(&hub, 1).await.0, "nginx:1.29");
    assert!(hub.store.get("rsync/left/s2").await.unwrap().is_none());
    assert!(hub.store.get("rsync/left/s3").await.unwrap().is_none());

    // Again stopped short of edge-1, then terminated: the terminate removes the leftovers too.
    let third = context(
        "s4",
        vec![
            app(
                "web",
                &[1, 2],
                resources(vec![deployment_with_image("web", "nginx:1.29")]),
            ),
            app(
                "cache",
                &[1, 2],
                resources(vec![config_map("default", "cache")]),
            ),
        ],
    );
    hub.update("s3", &third, "s1", false).await;
    hub.wait_status("s4", AppContextStatus::Updated).await;
    set_faults(
        &edge1,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }),
    );
    hub.update("s4", &without("s5", "nginx:1.29"), "s1", false)
        .await;
    hub.wait_for("s5", LONG, "edge-2 updated", |report| {
        state(report, "web", 2) == AppClusterState::Applied
    })
    .await;
    assert!(hub.sync.stop("s5").await.unwrap());
    hub.wait_status("s5", AppContextStatus::UpdateFailed).await;
    assert!(!exists(&hub, 2, "v1", "ConfigMap", "cache").await);
    set_faults(&edge1, None);
    assert!(exists(&hub, 1, "v1", "ConfigMap", "cache").await);
    hub.terminate("s5").await;
    hub.wait_status("s5", AppContextStatus::Terminated).await;
    assert!(!exists(&hub, 1, "v1", "ConfigMap", "cache").await);
    assert!(!exists(&hub, 1, "apps/v1", "Deployment", "web").await);
    assert!(hub.store.get("rsync/left/s5").await.unwrap().is_none());
}
