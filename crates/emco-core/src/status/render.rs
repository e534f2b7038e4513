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
    query.selects_cluster(&cluster.provider, &cluster.cluster)
}

fn resource_selected(query: &StatusQuery, resource: &ResourceInput) -> bool {
    query.resources.is_empty() || query.resources.contains(&resource.name)
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
    let Some(context) = &input.context else {
        return Ok(Value::Object(status_head(input)));
    };
    check_apps(
        query,
        input,
        context.apps.iter().map(|app| app.name.as_str()),
    )?;
    let mut tally = Tally::default();
    let apps = status_tree(query, context, &mut tally);
    Ok(status_body(query, input, context.status, &tally, apps))
}

/// `digId`, the identity and `states`.
fn status_head(input: &StatusInput) -> Map<String, Value> {
    // `digId` precedes the identity: upstream's tag `json:"digId",omitempty` is malformed, so
    // its omitempty never applies.
    let mut map = Map::new();
    map.insert("digId".to_owned(), Value::from(input.dig_id.as_str()));
    map.extend(identity(input));
    map.insert("states".to_owned(), states(input));
    map
}

/// Refuses an `app=` filter naming an app the context lacks, as upstream does.
fn check_apps<'a>(
    query: &StatusQuery,
    input: &StatusInput,
    apps: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), StatusQueryError> {
    match query
        .apps
        .iter()
        .find(|wanted| !apps.clone().any(|app| app == wanted.as_str()))
    {
        Some(unknown) => Err(StatusQueryError::UnknownApp {
            app: unknown.clone(),
            composite_app: input.composite_app.clone(),
        }),
        None => Ok(()),
    }
}

fn status_body(
    query: &StatusQuery,
    input: &StatusInput,
    context_status: super::AppContextStatus,
    tally: &Tally,
    apps: Vec<Value>,
) -> Value {
    let mut map = status_head(input);
    let status_key = if query.kind.is_legacy() {
        "status"
    } else {
        "deployedStatus"
    };
    map.insert(status_key.to_owned(), json!(context_status));
    let (deployed_counts, ready_counts) = (tally.deployed_counts(), tally.ready_counts());
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
    Value::Object(map)
}

/// The counts of a status query, gathered resource by resource: what a summary shows. A
/// caller holding the facts in another shape (the synchronizer's records) can count them
/// without building [`ResourceInput`]s, and render with [`render_summary`].
///
/// Counted in fixed arrays (a summary at fleet scale adds hundreds of thousands of resources).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// By [`DEPLOYED_LABELS`].
    deployed: [u64; 5],
    /// By [`READY_LABELS`].
    ready: [u64; 3],
}

/// The labels of deployed queries, in the order of [`deployed_index`].
const DEPLOYED_LABELS: [&str; 5] = ["Pending", "Applied", "Failed", "Retrying", "Deleted"];
/// The labels of ready queries, in the order of [`ready_index`].
const READY_LABELS: [&str; 3] = ["Ready", "NotReady", NOT_PRESENT];

fn deployed_index(status: Option<super::DeployedStatus>) -> usize {
    use super::DeployedStatus as D;
    match status {
        None | Some(D::Pending) => 0,
        Some(D::Applied) => 1,
        Some(D::Failed) => 2,
        Some(D::Retrying) => 3,
        Some(D::Deleted) => 4,
    }
}

fn ready_index(ready: Option<ReadyStatus>) -> usize {
    match ready {
        Some(ReadyStatus::Ready) => 0,
        Some(ReadyStatus::NotReady) => 1,
        None => 2,
    }
}

fn counts_of(labels: &[&'static str], counts: &[u64]) -> Counts {
    labels
        .iter()
        .zip(counts)
        .filter(|(_, count)| **count > 0)
        .map(|(label, count)| (*label, *count))
        .collect()
}

impl Tally {
    /// The counts of `query` over facts gathered as [`AppInput`](super::AppInput)s (its `app=`
    /// and `cluster=` filters apply; a `resource=` filter does not).
    pub fn of_apps(query: &StatusQuery, apps: &[super::AppInput]) -> Self {
        let mut tally = Self::default();
        for app in apps.iter().filter(|app| query.selects_app(&app.name)) {
            for cluster in app.clusters.iter().filter(|c| cluster_selected(query, c)) {
                for resource in &cluster.resources {
                    tally.add(query.kind, resource.deployed, resource.ready);
                }
            }
        }
        tally
    }

    fn deployed_counts(&self) -> Counts {
        counts_of(&DEPLOYED_LABELS, &self.deployed)
    }

    fn ready_counts(&self) -> Counts {
        counts_of(&READY_LABELS, &self.ready)
    }

    /// Counts one resource selected by the query's app and cluster filters.
    pub fn add(
        &mut self,
        kind: StatusKind,
        deployed: Option<super::DeployedStatus>,
        ready: Option<ReadyStatus>,
    ) {
        let resource = Facts { deployed, ready };
        if resource.visible(kind) {
            resource.label(kind, self);
        }
    }
}

/// What counting needs of a resource.
struct Facts {
    deployed: Option<super::DeployedStatus>,
    ready: Option<ReadyStatus>,
}

impl Facts {
    fn of(resource: &ResourceInput) -> Self {
        Self {
            deployed: resource.deployed,
            ready: resource.ready,
        }
    }

    /// Whether the resource appears for this kind of query: deployed queries show what the
    /// synchronizer handled, ready queries also what only the cluster reports.
    fn visible(&self, kind: StatusKind) -> bool {
        self.deployed.is_some() || (kind.reports_readiness() && self.ready.is_some())
    }

    /// The status label of the resource for this query, counted into the tally.
    fn label(&self, kind: StatusKind, tally: &mut Tally) -> &'static str {
        if kind.reports_readiness() {
            let index = ready_index(self.ready);
            tally.ready[index] += 1;
            READY_LABELS[index]
        } else {
            let index = deployed_index(self.deployed);
            tally.deployed[index] += 1;
            DEPLOYED_LABELS[index]
        }
    }
}

/// A summary (`output=summary`, no `resource=` filter, not a list query) from counts made
/// with [`Tally::add`] over the resources of the selected apps and clusters; the same answer
/// [`render`] gives over the full facts. `apps` are the context's app names, for the check of
/// `app=` filters.
pub fn render_summary<'a>(
    query: &StatusQuery,
    input: &StatusInput,
    context_status: super::AppContextStatus,
    apps: impl Iterator<Item = &'a str> + Clone,
    tally: &Tally,
) -> Result<Value, StatusQueryError> {
    check_apps(query, input, apps)?;
    Ok(status_body(query, input, context_status, tally, Vec::new()))
}

impl StatusQuery {
    /// Whether [`render_summary`] answers this query.
    pub fn is_plain_summary(&self) -> bool {
        self.output == OutputLevel::Summary && self.list.is_none() && self.resources.is_empty()
    }

    /// Whether the `app=` filters select `app`.
    pub fn selects_app(&self, app: &str) -> bool {
        app_selected(self, app)
    }

    /// Whether the `cluster=` filters select the cluster.
    pub fn selects_cluster(&self, provider: &str, cluster: &str) -> bool {
        self.clusters.is_empty()
            || self
                .clusters
                .iter()
                .any(|c| c.split_once('+') == Some((provider, cluster)))
    }
}

/// Counts every selected resource and, unless the output is a summary, builds upstream's
/// `[]AppStatus`; clusters and apps left without resources by the filters are dropped.
fn status_tree(query: &StatusQuery, context: &ContextInput, tally: &mut Tally) -> Vec<Value> {
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
                .filter(|r| Facts::of(r).visible(query.kind) && resource_selected(query, r))
            {
                let label = Facts::of(resource).label(query.kind, tally);
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
                .filter(|r| Facts::of(r).visible(query.kind))
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
