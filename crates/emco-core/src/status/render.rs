//! Rendering of status facts in upstream's JSON shape. Field order follows upstream's Go
//! structs (the workspace's serde_json preserves insertion order) and omitted fields follow
//! their `omitempty` tags.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::input::{ClusterInput, ContextInput, ReadyStatus, ResourceInput, StatusInput};
use super::query::{ListQuery, OutputLevel, StatusKind, StatusQuery, StatusQueryError};

/// Per-status counts; a BTreeMap because Go's encoder sorts map keys.
type Counts = BTreeMap<&'static str, u64>;

const NOT_PRESENT: &str = "NotPresent";

fn ready_label(ready: ReadyStatus) -> &'static str {
    match ready {
        ReadyStatus::Ready => "Ready",
        ReadyStatus::NotReady => "NotReady",
    }
}

fn deployed_label(status: super::DeployedStatus) -> &'static str {
    use super::DeployedStatus as D;
    match status {
        D::Pending => "Pending",
        D::Applied => "Applied",
        D::Failed => "Failed",
        D::Retrying => "Retrying",
        D::Deleted => "Deleted",
    }
}

fn insert_nonempty(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_owned(), Value::from(value));
    }
}

/// Renders `query` over `input`: the status tree (upstream `DeploymentStatus`) or, for list
/// queries, just the list (`DeploymentAppsListStatus`, `DeploymentClustersByAppStatus`,
/// `DeploymentResourcesByAppStatus`). `input.context` must be the context selected with
/// [`StatusInput::context_to_load`]; an `app=` filter naming an app the context lacks is
/// refused as upstream does (status tree only).
pub fn render(query: &StatusQuery, input: &StatusInput) -> Result<Value, StatusQueryError> {
    match query.list {
        Some(ListQuery::Apps) => Ok(render_apps_list(input)),
        Some(ListQuery::Clusters) => Ok(render_clusters_by_app(query, input)),
        Some(ListQuery::Resources) => Ok(render_resources_by_app(query, input)),
        None => render_status(query, input),
    }
}

/// The identity fields every variant starts with (all `omitempty` upstream).
fn identity(input: &StatusInput) -> Map<String, Value> {
    let mut map = Map::new();
    insert_nonempty(&mut map, "project", &input.project);
    insert_nonempty(&mut map, "compositeApp", &input.composite_app);
    insert_nonempty(
        &mut map,
        "compositeAppVersion",
        &input.composite_app_version,
    );
    insert_nonempty(&mut map, "compositeProfile", &input.composite_profile);
    insert_nonempty(&mut map, "name", &input.name);
    map
}

/// Upstream `state.StateInfo`.
fn states(input: &StatusInput) -> Value {
    let actions: Vec<Value> = input
        .lifecycle
        .actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            json!({
                "state": action.state,
                "instance": input.action_instances.get(index).map_or("", String::as_str),
                "time": action.time,
                "revision": action.revision,
            })
        })
        .collect();
    json!({ "statusctxid": input.status_context_id, "actions": actions })
}

fn app_selected(query: &StatusQuery, app: &str) -> bool {
    query.apps.is_empty() || query.apps.iter().any(|a| a == app)
}

fn cluster_selected(query: &StatusQuery, cluster: &ClusterInput) -> bool {
    // Compared part by part to spare an allocation per cluster at fleet scale.
    query.clusters.is_empty()
        || query.clusters.iter().any(|c| {
            c.split_once('+') == Some((cluster.provider.as_str(), cluster.cluster.as_str()))
        })
}

fn resource_selected(query: &StatusQuery, resource: &ResourceInput) -> bool {
    query.resources.is_empty() || query.resources.contains(&resource.name)
}

/// Whether the resource appears for this kind of query: deployed queries show what the
/// synchronizer handled, ready queries also what only the cluster reports.
fn resource_visible(kind: StatusKind, resource: &ResourceInput) -> bool {
    resource.deployed.is_some() || (kind.reports_readiness() && resource.ready.is_some())
}

/// The status label of one resource for this query, counted into `deployed` or `ready`.
fn resource_label(
    kind: StatusKind,
    resource: &ResourceInput,
    deployed: &mut Counts,
    ready: &mut Counts,
) -> &'static str {
    let label = if kind.reports_readiness() {
        resource.ready.map_or(NOT_PRESENT, ready_label)
    } else {
        resource.deployed.map_or("Pending", deployed_label)
    };
    let counts = if kind.reports_readiness() {
        ready
    } else {
        deployed
    };
    *counts.entry(label).or_default() += 1;
    label
}

/// Upstream's group-level `readyStatus`: `Ready` when nothing is NotReady or NotPresent (ready
/// queries only), `NotPresent` when nothing was reported at all, else `NotReady`.
fn group_ready_status(kind: StatusKind, ready: &Counts) -> Option<&'static str> {
    let count = |key: &str| ready.get(key).copied().unwrap_or(0);
    let (ready_count, not_ready, not_present) =
        (count("Ready"), count("NotReady"), count(NOT_PRESENT));
    if not_ready == 0 && not_present == 0 {
        kind.reports_readiness().then_some("Ready")
    } else if ready_count == 0 && not_ready == 0 {
        Some(NOT_PRESENT)
    } else {
        Some("NotReady")
    }
}

/// Upstream `schema.GroupVersionKind`, built by hand: this runs once per resource.
fn gvk_json(gvk: &super::Gvk) -> Value {
    let mut map = Map::with_capacity(3);
    map.insert("Group".to_owned(), Value::from(gvk.group.as_str()));
    map.insert("Version".to_owned(), Value::from(gvk.version.as_str()));
    map.insert("Kind".to_owned(), Value::from(gvk.kind.as_str()));
    Value::Object(map)
}

/// Upstream `ResourceStatus`.
fn resource_json(query: &StatusQuery, resource: &ResourceInput, label: &str) -> Value {
    let mut map = Map::with_capacity(4);
    map.insert("GVK".to_owned(), gvk_json(&resource.gvk));
    insert_nonempty(&mut map, "name", &resource.name);
    if query.output == OutputLevel::Detail
        && let Some(detail) = &resource.detail
    {
        map.insert("detail".to_owned(), detail.clone());
    }
    let key = match query.kind {
        StatusKind::LegacyRsync => "rsyncStatus",
        StatusKind::LegacyCluster => "clusterStatus",
        StatusKind::Deployed => "deployedStatus",
        StatusKind::Ready => "readyStatus",
    };
    map.insert(key.to_owned(), Value::from(label));
    Value::Object(map)
}

fn counts_json(counts: &Counts) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(key, count)| ((*key).to_owned(), Value::from(*count)))
            .collect(),
    )
}

fn render_status(query: &StatusQuery, input: &StatusInput) -> Result<Value, StatusQueryError> {
    // `digId` precedes the identity: upstream's tag `json:"digId",omitempty` is malformed, so
    // its omitempty never applies.
    let mut map = Map::new();
    map.insert("digId".to_owned(), Value::from(input.dig_id.as_str()));
    map.extend(identity(input));
    map.insert("states".to_owned(), states(input));
    let Some(context) = &input.context else {
        return Ok(Value::Object(map));
    };
    if let Some(unknown) = query
        .apps
        .iter()
        .find(|app| !context.apps.iter().any(|a| a.name == **app))
    {
        return Err(StatusQueryError::UnknownApp {
            app: unknown.clone(),
            composite_app: input.composite_app.clone(),
        });
    }

    let mut deployed_counts = Counts::new();
    let mut ready_counts = Counts::new();
    let apps = status_tree(query, context, &mut deployed_counts, &mut ready_counts);

    let status_key = if query.kind.is_legacy() {
        "status"
    } else {
        "deployedStatus"
    };
    map.insert(status_key.to_owned(), json!(context.status));
    if let Some(ready) = group_ready_status(query.kind, &ready_counts) {
        map.insert("readyStatus".to_owned(), Value::from(ready));
    }
    let (deployed_key, ready_key) = if query.kind.is_legacy() {
        ("rsyncStatus", "clusterStatus")
    } else {
        ("deployedCounts", "readyCounts")
    };
    for (key, counts) in [(deployed_key, &deployed_counts), (ready_key, &ready_counts)] {
        if !counts.is_empty() {
            map.insert(key.to_owned(), counts_json(counts));
        }
    }
    if !apps.is_empty() {
        map.insert("apps".to_owned(), Value::Array(apps));
    }
    Ok(Value::Object(map))
}

/// Counts every selected resource and, unless the output is a summary, builds upstream's
/// `[]AppStatus`; clusters and apps left without resources by the filters are dropped.
fn status_tree(
    query: &StatusQuery,
    context: &ContextInput,
    deployed_counts: &mut Counts,
    ready_counts: &mut Counts,
) -> Vec<Value> {
    let build = query.output != OutputLevel::Summary;
    let mut apps = Vec::new();
    for app in context.apps.iter().filter(|a| app_selected(query, &a.name)) {
        let mut clusters = Vec::new();
        for cluster in app.clusters.iter().filter(|c| cluster_selected(query, c)) {
            let mut resources = Vec::new();
            let mut resource_count = 0usize;
            for resource in cluster
                .resources
                .iter()
                .filter(|r| resource_visible(query.kind, r) && resource_selected(query, r))
            {
                let label = resource_label(query.kind, resource, deployed_counts, ready_counts);
                resource_count += 1;
                if build {
                    resources.push(resource_json(query, resource, label));
                }
            }
            if build && resource_count > 0 {
                let mut map = Map::new();
                insert_nonempty(&mut map, "clusterProvider", &cluster.provider);
                insert_nonempty(&mut map, "cluster", &cluster.cluster);
                // The legacy queries call connectivity `readyStatus`.
                let key = if query.kind.is_legacy() {
                    "readyStatus"
                } else {
                    "connectivity"
                };
                map.insert(key.to_owned(), json!(cluster.connectivity));
                map.insert("resources".to_owned(), Value::Array(resources));
                clusters.push(Value::Object(map));
            }
        }
        if !clusters.is_empty() {
            apps.push(json!({ "name": app.name, "clusters": clusters }));
        }
    }
    apps
}

/// Upstream `DeploymentAppsListStatus`: every app of the context, no filters.
fn render_apps_list(input: &StatusInput) -> Value {
    let mut map = identity(input);
    let apps: Vec<&str> = input
        .context
        .iter()
        .flat_map(|c| c.apps.iter().map(|a| a.name.as_str()))
        .collect();
    map.insert("apps".to_owned(), json!(apps));
    Value::Object(map)
}

/// Upstream `DeploymentClustersByAppStatus`: the clusters of each app (filter `app`).
fn render_clusters_by_app(query: &StatusQuery, input: &StatusInput) -> Value {
    let mut map = identity(input);
    let entries: Vec<Value> = input
        .context
        .iter()
        .flat_map(|c| c.apps.iter())
        .filter(|a| app_selected(query, &a.name))
        .map(|app| {
            let clusters: Vec<Value> = app
                .clusters
                .iter()
                .map(|c| json!({ "clusterProvider": c.provider, "cluster": c.cluster }))
                .collect();
            json!({ "app": app.name, "clusters": clusters })
        })
        .collect();
    map.insert("clustersByApp".to_owned(), Value::Array(entries));
    Value::Object(map)
}

/// Upstream `DeploymentResourcesByAppStatus`: one entry per selected app and cluster (filters
/// `app`, `cluster`), listing resource names and GVKs; ready queries include resources only
/// the cluster reports.
fn render_resources_by_app(query: &StatusQuery, input: &StatusInput) -> Value {
    let mut map = identity(input);
    let mut entries = Vec::new();
    for app in input
        .context
        .iter()
        .flat_map(|c| c.apps.iter())
        .filter(|a| app_selected(query, &a.name))
    {
        for cluster in app.clusters.iter().filter(|c| cluster_selected(query, c)) {
            let resources: Vec<Value> = cluster
                .resources
                .iter()
                .filter(|r| resource_visible(query.kind, r))
                .map(|r| json!({ "name": r.name, "GVK": gvk_json(&r.gvk) }))
                .collect();
            let mut entry = Map::new();
            insert_nonempty(&mut entry, "app", &app.name);
            insert_nonempty(&mut entry, "clusterProvider", &cluster.provider);
            insert_nonempty(&mut entry, "cluster", &cluster.cluster);
            entry.insert("resources".to_owned(), Value::Array(resources));
            entries.push(Value::Object(entry));
        }
    }
    map.insert("resourcesByApp".to_owned(), Value::Array(entries));
    Value::Object(map)
}
