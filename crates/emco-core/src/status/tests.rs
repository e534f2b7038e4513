//! Unit tests of the status query: parsing, each output level, filters, list queries, counts.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::lifecycle::{ActionRecord, DigState, DigStatus};

fn params(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in pairs {
        map.entry((*key).to_owned())
            .or_default()
            .push((*value).to_owned());
    }
    map
}

fn query(pairs: &[(&str, &str)]) -> StatusQuery {
    StatusQuery::parse(&params(pairs)).unwrap()
}

fn gvk(group: &str, kind: &str) -> Gvk {
    Gvk {
        group: group.to_owned(),
        version: "v1".to_owned(),
        kind: kind.to_owned(),
    }
}

fn resource(
    name: &str,
    gvk: Gvk,
    deployed: Option<DeployedStatus>,
    ready: Option<ReadyStatus>,
) -> ResourceInput {
    ResourceInput {
        name: name.to_owned(),
        gvk,
        deployed,
        ready,
        detail: Some(json!({ "metadata": { "name": name } })),
    }
}

fn cluster(name: &str, connectivity: Connectivity, resources: Vec<ResourceInput>) -> ClusterInput {
    ClusterInput {
        provider: "p".to_owned(),
        cluster: name.to_owned(),
        connectivity,
        resources,
    }
}

fn lifecycle() -> DigStatus {
    let record = |state, time: &str, revision| ActionRecord {
        state,
        time: time.to_owned(),
        revision,
        instance: String::new(),
    };
    DigStatus {
        state: DigState::Instantiated,
        actions: vec![
            record(DigState::Created, "2026-01-01T00:00:00Z", 0),
            record(DigState::Approved, "2026-01-01T00:00:01Z", 0),
            record(DigState::Instantiated, "2026-01-01T00:00:02Z", 1),
        ],
        revision: 1,
        delete_blocked: None,
        status_context_id: String::new(),
    }
}

/// firewall on p+edge01 (a ready ConfigMap, a not-ready Deployment) and p+edge02 (a pending
/// ConfigMap the cluster has not reported); sink on p+edge01 (a ready Service and a Pod only the
/// cluster reports).
fn fixture() -> StatusInput {
    use DeployedStatus::{Applied, Pending};
    use ReadyStatus::{NotReady, Ready};
    StatusInput {
        dig_id: String::new(),
        project: "proj1".to_owned(),
        composite_app: "ca".to_owned(),
        composite_app_version: "v1".to_owned(),
        composite_profile: "prof".to_owned(),
        name: "dig".to_owned(),
        lifecycle: lifecycle(),
        action_instances: vec![String::new(), String::new(), "100".to_owned()],
        status_context_id: "100".to_owned(),
        context: Some(ContextInput {
            context_id: "100".to_owned(),
            status: AppContextStatus::Instantiated,
            apps: vec![
                AppInput {
                    name: "firewall".to_owned(),
                    clusters: vec![
                        cluster(
                            "edge01",
                            Connectivity::Available,
                            vec![
                                resource("fw-cm", gvk("", "ConfigMap"), Some(Applied), Some(Ready)),
                                resource(
                                    "fw",
                                    gvk("apps", "Deployment"),
                                    Some(Applied),
                                    Some(NotReady),
                                ),
                            ],
                        ),
                        cluster(
                            "edge02",
                            Connectivity::Retrying,
                            vec![resource("fw-cm", gvk("", "ConfigMap"), Some(Pending), None)],
                        ),
                    ],
                },
                AppInput {
                    name: "sink".to_owned(),
                    clusters: vec![cluster(
                        "edge01",
                        Connectivity::Available,
                        vec![
                            resource("sink-svc", gvk("", "Service"), Some(Applied), Some(Ready)),
                            resource("sink-pod", gvk("", "Pod"), None, Some(Ready)),
                        ],
                    )],
                },
            ],
        }),
    }
}

fn states_json() -> Value {
    json!({
        "statusctxid": "100",
        "actions": [
            { "state": "Created", "instance": "", "time": "2026-01-01T00:00:00Z", "revision": 0 },
            { "state": "Approved", "instance": "", "time": "2026-01-01T00:00:01Z", "revision": 0 },
            { "state": "Instantiated", "instance": "100", "time": "2026-01-01T00:00:02Z", "revision": 1 },
        ]
    })
}

fn cm_gvk() -> Value {
    json!({ "Group": "", "Version": "v1", "Kind": "ConfigMap" })
}

#[test]
fn deployed_all_renders_upstream_shape_exactly() {
    let rendered = render(&query(&[("status", "deployed")]), &fixture()).unwrap();
    let expected = json!({
        "digId": "",
        "project": "proj1",
        "compositeApp": "ca",
        "compositeAppVersion": "v1",
        "compositeProfile": "prof",
        "name": "dig",
        "states": states_json(),
        "deployedStatus": "Instantiated",
        "deployedCounts": { "Applied": 3, "Pending": 1 },
        "apps": [
            { "name": "firewall", "clusters": [
                { "clusterProvider": "p", "cluster": "edge01", "connectivity": "Available",
                  "resources": [
                    { "GVK": cm_gvk(), "name": "fw-cm", "deployedStatus": "Applied" },
                    { "GVK": { "Group": "apps", "Version": "v1", "Kind": "Deployment" },
                      "name": "fw", "deployedStatus": "Applied" },
                  ] },
                { "clusterProvider": "p", "cluster": "edge02", "connectivity": "Retrying",
                  "resources": [
                    { "GVK": cm_gvk(), "name": "fw-cm", "deployedStatus": "Pending" },
                  ] },
            ] },
            { "name": "sink", "clusters": [
                { "clusterProvider": "p", "cluster": "edge01", "connectivity": "Available",
                  "resources": [
                    { "GVK": { "Group": "", "Version": "v1", "Kind": "Service" },
                      "name": "sink-svc", "deployedStatus": "Applied" },
                  ] },
            ] },
        ],
    });
    assert_eq!(rendered, expected);
    // Field order is part of the format (serde_json preserves insertion order here).
    assert_eq!(
        serde_json::to_string(&rendered).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
}

#[test]
fn summary_has_counts_but_no_apps() {
    let rendered = render(
        &query(&[("status", "deployed"), ("output", "summary")]),
        &fixture(),
    )
    .unwrap();
    assert_eq!(
        rendered["deployedCounts"],
        json!({ "Applied": 3, "Pending": 1 })
    );
    assert!(rendered.get("apps").is_none());
    assert!(rendered.get("readyStatus").is_none());
    assert!(rendered.get("readyCounts").is_none());
}

#[test]
fn ready_query_counts_not_present_and_cluster_only_resources() {
    let rendered = render(&query(&[("status", "ready")]), &fixture()).unwrap();
    assert_eq!(rendered["deployedStatus"], "Instantiated");
    assert_eq!(rendered["readyStatus"], "NotReady");
    assert_eq!(
        rendered["readyCounts"],
        json!({ "NotPresent": 1, "NotReady": 1, "Ready": 3 })
    );
    assert!(rendered.get("deployedCounts").is_none());
    let edge02 = &rendered["apps"][0]["clusters"][1]["resources"][0];
    assert_eq!(edge02["readyStatus"], "NotPresent");
    assert!(edge02.get("deployedStatus").is_none());
    let sink = &rendered["apps"][1]["clusters"][0]["resources"];
    assert_eq!(sink.as_array().unwrap().len(), 2);
    assert_eq!(sink[1]["name"], "sink-pod");
    assert_eq!(sink[1]["readyStatus"], "Ready");
}

#[test]
fn group_ready_status_rules() {
    let mut input = fixture();
    let mut ready_only = query(&[("status", "ready"), ("cluster", "p+edge01")]);
    ready_only.resources = vec!["fw-cm".to_owned(), "sink-svc".to_owned()];
    assert_eq!(render(&ready_only, &input).unwrap()["readyStatus"], "Ready");

    let not_present = query(&[("status", "ready"), ("cluster", "p+edge02")]);
    assert_eq!(
        render(&not_present, &input).unwrap()["readyStatus"],
        "NotPresent"
    );

    // Nothing selected: no NotReady and no NotPresent, so upstream says Ready.
    if let Some(context) = input.context.as_mut() {
        context.apps.clear();
    }
    let empty = render(&query(&[("status", "ready")]), &input).unwrap();
    assert_eq!(empty["readyStatus"], "Ready");
    assert!(empty.get("readyCounts").is_none());
    assert!(empty.get("apps").is_none());
}

#[test]
fn detail_includes_resource_bodies_and_all_omits_them() {
    let detail = render(
        &query(&[("status", "deployed"), ("output", "detail")]),
        &fixture(),
    )
    .unwrap();
    let first = &detail["apps"][0]["clusters"][0]["resources"][0];
    assert_eq!(first["detail"], json!({ "metadata": { "name": "fw-cm" } }));
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["GVK", "name", "detail", "deployedStatus"]);

    let all = render(&query(&[("status", "deployed")]), &fixture()).unwrap();
    assert!(
        all["apps"][0]["clusters"][0]["resources"][0]
            .get("detail")
            .is_none()
    );
}

#[test]
fn legacy_rsync_is_the_default_and_uses_legacy_names() {
    let rendered = render(&query(&[]), &fixture()).unwrap();
    assert_eq!(rendered["status"], "Instantiated");
    assert!(rendered.get("deployedStatus").is_none());
    assert_eq!(
        rendered["rsyncStatus"],
        json!({ "Applied": 3, "Pending": 1 })
    );
    assert!(rendered.get("readyStatus").is_none());
    let cluster = &rendered["apps"][0]["clusters"][0];
    assert_eq!(cluster["readyStatus"], "Available");
    assert!(cluster.get("connectivity").is_none());
    assert_eq!(cluster["resources"][0]["rsyncStatus"], "Applied");
}

#[test]
fn legacy_cluster_type_uses_cluster_status_names() {
    let rendered = render(&query(&[("type", "cluster")]), &fixture()).unwrap();
    assert_eq!(rendered["status"], "Instantiated");
    assert_eq!(
        rendered["clusterStatus"],
        json!({ "NotPresent": 1, "NotReady": 1, "Ready": 3 })
    );
    assert_eq!(rendered["readyStatus"], "NotReady");
    assert_eq!(
        rendered["apps"][0]["clusters"][0]["resources"][1]["clusterStatus"],
        "NotReady"
    );
}

#[test]
fn filters_narrow_tree_and_counts() {
    let by_app = render(
        &query(&[("status", "deployed"), ("app", "sink")]),
        &fixture(),
    )
    .unwrap();
    assert_eq!(by_app["apps"].as_array().unwrap().len(), 1);
    assert_eq!(by_app["apps"][0]["name"], "sink");
    assert_eq!(by_app["deployedCounts"], json!({ "Applied": 1 }));

    let by_cluster = render(
        &query(&[("status", "deployed"), ("cluster", "p+edge02")]),
        &fixture(),
    )
    .unwrap();
    // sink has no cluster left, so the app is dropped.
    assert_eq!(by_cluster["apps"].as_array().unwrap().len(), 1);
    assert_eq!(by_cluster["apps"][0]["clusters"][0]["cluster"], "edge02");
    assert_eq!(by_cluster["deployedCounts"], json!({ "Pending": 1 }));

    let by_resource = render(
        &query(&[
            ("status", "deployed"),
            ("resource", "fw"),
            ("resource", "sink-svc"),
        ]),
        &fixture(),
    )
    .unwrap();
    assert_eq!(by_resource["deployedCounts"], json!({ "Applied": 2 }));
    // edge02 held only fw-cm, so it is dropped.
    assert_eq!(
        by_resource["apps"][0]["clusters"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        by_resource["apps"][0]["clusters"][0]["resources"][0]["name"],
        "fw"
    );
}

#[test]
fn filtering_on_an_unknown_app_is_refused() {
    let error = render(&query(&[("app", "nosuchApp")]), &fixture()).unwrap_err();
    assert_eq!(
        error,
        StatusQueryError::UnknownApp {
            app: "nosuchApp".to_owned(),
            composite_app: "ca".to_owned()
        }
    );
}

#[test]
fn before_instantiation_only_identity_and_states_are_served() {
    let mut input = fixture();
    input.context = None;
    input.status_context_id.clear();
    input.action_instances = vec![String::new(), String::new()];
    input.lifecycle.actions.truncate(2);
    assert_eq!(input.context_to_load(None).unwrap(), None);
    let rendered = render(&query(&[("type", "cluster"), ("app", "monitor")]), &input).unwrap();
    let keys: Vec<&str> = rendered
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "digId",
            "project",
            "compositeApp",
            "compositeAppVersion",
            "compositeProfile",
            "name",
            "states"
        ]
    );
    assert_eq!(rendered["states"]["actions"][1]["state"], "Approved");
    assert_eq!(
        render(&query(&[("apps", "")]), &input).unwrap()["apps"],
        json!([])
    );
    assert_eq!(
        render(&query(&[("clusters", "")]), &input).unwrap()["clustersByApp"],
        json!([])
    );
    assert_eq!(
        render(&query(&[("resources", "")]), &input).unwrap()["resourcesByApp"],
        json!([])
    );
}

#[test]
fn apps_list_query_returns_just_the_app_names() {
    let rendered = render(&query(&[("apps", ""), ("app", "sink")]), &fixture()).unwrap();
    assert_eq!(
        rendered,
        json!({
            "project": "proj1", "compositeApp": "ca", "compositeAppVersion": "v1",
            "compositeProfile": "prof", "name": "dig", "apps": ["firewall", "sink"],
        })
    );
}

#[test]
fn clusters_list_query_groups_clusters_by_app_and_honours_the_app_filter() {
    let rendered = render(&query(&[("clusters", ""), ("app", "firewall")]), &fixture()).unwrap();
    assert_eq!(
        rendered["clustersByApp"],
        json!([{ "app": "firewall", "clusters": [
            { "clusterProvider": "p", "cluster": "edge01" },
            { "clusterProvider": "p", "cluster": "edge02" },
        ] }])
    );
    assert!(rendered.get("apps").is_none());
}

#[test]
fn resources_list_query_lists_per_app_and_cluster() {
    let deployed = render(
        &query(&[
            ("resources", ""),
            ("status", "deployed"),
            ("cluster", "p+edge01"),
        ]),
        &fixture(),
    )
    .unwrap();
    assert_eq!(
        deployed["resourcesByApp"],
        json!([
            { "app": "firewall", "clusterProvider": "p", "cluster": "edge01", "resources": [
                { "name": "fw-cm", "GVK": cm_gvk() },
                { "name": "fw", "GVK": { "Group": "apps", "Version": "v1", "Kind": "Deployment" } },
            ] },
            { "app": "sink", "clusterProvider": "p", "cluster": "edge01", "resources": [
                { "name": "sink-svc", "GVK": { "Group": "", "Version": "v1", "Kind": "Service" } },
            ] },
        ])
    );
    // Ready queries also list what only the cluster reports.
    let ready = render(
        &query(&[("resources", ""), ("status", "ready"), ("app", "sink")]),
        &fixture(),
    )
    .unwrap();
    assert_eq!(
        ready["resourcesByApp"][0]["resources"][1]["name"],
        "sink-pod"
    );
}

#[test]
fn list_queries_take_precedence_in_upstream_order() {
    let all = query(&[("resources", ""), ("clusters", ""), ("apps", "")]);
    assert_eq!(all.list, Some(ListQuery::Apps));
    let two = query(&[("resources", ""), ("clusters", "")]);
    assert_eq!(two.list, Some(ListQuery::Clusters));
    assert_eq!(query(&[]).list, None);
}

#[test]
fn parse_defaults_and_overrides() {
    let defaults = query(&[]);
    assert_eq!(defaults.kind, StatusKind::LegacyRsync);
    assert_eq!(defaults.output, OutputLevel::All);
    assert_eq!(defaults.instance, None);
    let overridden = query(&[
        ("type", "cluster"),
        ("status", "deployed"),
        ("instance", "42"),
    ]);
    assert_eq!(overridden.kind, StatusKind::Deployed);
    assert_eq!(overridden.instance.as_deref(), Some("42"));
    let repeated = query(&[("app", "a"), ("app", "b"), ("cluster", "p+c1")]);
    assert_eq!(repeated.apps, ["a", "b"]);
    assert_eq!(repeated.clusters, ["p+c1"]);
}

#[test]
fn parse_errors_name_the_parameter() {
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("status", "rsync")], "status"),
        (&[("type", "deployed")], "type"),
        (&[("type", "bogus"), ("status", "ready")], "type"),
        (&[("output", "full")], "output"),
        (&[("instance", "")], "instance"),
        (&[("app", "bad name")], "app"),
        (&[("cluster", "cluster")], "cluster"),
        (&[("resource", "-x")], "resource"),
    ];
    for (pairs, parameter) in cases {
        match StatusQuery::parse(&params(pairs)) {
            Err(StatusQueryError::InvalidParameter { parameter: got, .. }) => {
                assert_eq!(got, parameter, "{pairs:?}")
            }
            other => panic!("{pairs:?} gave {other:?}"),
        }
    }
    assert!(StatusQuery::parse(&params(&[("cluster", "a+b+c")])).is_err());
    assert!(StatusQuery::parse(&params(&[("cluster", "a+")])).is_err());
}

#[test]
fn instance_selection_follows_the_action_history() {
    let input = fixture();
    assert_eq!(input.context_to_load(None).unwrap(), Some("100"));
    assert_eq!(input.context_to_load(Some("100")).unwrap(), Some("100"));
    assert_eq!(
        input.context_to_load(Some("7")).unwrap_err(),
        StatusQueryError::UnknownInstance("7".to_owned())
    );
}

#[test]
fn update_failed_keeps_upstreams_wire_spelling() {
    assert_eq!(
        json!(AppContextStatus::UpdateFailed),
        json!("UpdatedFailed")
    );
}

/// Fleet measurement: `cargo test -p emco-core --release status::tests::summary_at_fleet_scale
/// -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run in release"]
fn summary_at_fleet_scale() {
    let resources: Vec<ResourceInput> = (0..10)
        .map(|i| {
            resource(
                &format!("r{i}"),
                gvk("apps", "Deployment"),
                Some(DeployedStatus::Applied),
                Some(ReadyStatus::Ready),
            )
        })
        .collect();
    let clusters: Vec<ClusterInput> = (0..10_000)
        .map(|c| cluster(&format!("c{c}"), Connectivity::Available, resources.clone()))
        .collect();
    let mut input = fixture();
    input.context = Some(ContextInput {
        context_id: "100".to_owned(),
        status: AppContextStatus::Instantiated,
        apps: (0..5)
            .map(|a| AppInput {
                name: format!("app{a}"),
                clusters: clusters.clone(),
            })
            .collect(),
    });
    for (status, key) in [("deployed", "deployedCounts"), ("ready", "readyCounts")] {
        let summary = query(&[("status", status), ("output", "summary")]);
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let rendered = render(&summary, &input).unwrap();
            times.push(start.elapsed());
            let total = rendered[key].as_object().unwrap().values().next().cloned();
            assert_eq!(total, Some(json!(500_000)));
        }
        times.sort();
        println!(
            "status={status} summary over 500000 resources: min {:?}, median {:?}, max {:?}",
            times[0], times[10], times[19]
        );
    }
    let all = query(&[("status", "deployed")]);
    let start = Instant::now();
    let rendered = render(&all, &input).unwrap();
    let built = start.elapsed();
    let bytes = serde_json::to_vec(&rendered).unwrap().len();
    println!(
        "status=deployed output=all: build {built:?}, total with encoding {:?}, {bytes} bytes",
        start.elapsed()
    );
}

/// The summary counted without building the tree (as the synchronizer does) is the answer
/// `render` gives, for every kind of status, with and without app and cluster filters.
#[test]
fn summaries_from_a_tally_match_the_full_render() {
    let input = fixture();
    let context = input.context.as_ref().unwrap();
    for filters in [
        vec![],
        vec![("app", "sink")],
        vec![("cluster", "p+edge01")],
        vec![("app", "nosuchApp")],
    ] {
        for kind in [
            ("status", "deployed"),
            ("status", "ready"),
            ("type", "rsync"),
            ("type", "cluster"),
        ] {
            let mut pairs = vec![kind, ("output", "summary")];
            pairs.extend(filters.iter().copied());
            let query = query(&pairs);
            assert!(query.is_plain_summary());
            let tally = Tally::of_apps(&query, &context.apps);
            let apps = context.apps.iter().map(|a| a.name.as_str());
            assert_eq!(
                render_summary(&query, &input, context.status, apps, &tally),
                render(&query, &input),
                "{pairs:?}"
            );
        }
    }
    assert!(!query(&[("output", "all")]).is_plain_summary());
    assert!(!query(&[("output", "summary"), ("resource", "x")]).is_plain_summary());
    assert!(!query(&[("output", "summary"), ("apps", "")]).is_plain_summary());
}
