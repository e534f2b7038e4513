//! The status view, kept pure: the hub's two status answers (`status=deployed` and `status=ready`, both
//! `output=all`) → one view model per deployment intent group → the lines a person reads, and the verdict a
//! watch waits on.
//!
//! The JSON is upstream's `DeploymentStatus`: `states.actions[]` (the lifecycle history; its last entry is the
//! group's state), `deployedStatus` (the app context's state, absent before the first instantiation),
//! `readyStatus`, and `apps[].clusters[]` with `connectivity` and `resources[]` carrying `deployedStatus` or
//! `readyStatus`. The legacy field names (`status`, `rsyncStatus`, `clusterStatus`) are read too, so an older
//! hub still shows something.

use serde::Deserialize;

/// Why a status answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the {query} status answer is not the expected JSON: {message}")]
    Json {
        query: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    #[serde(default)]
    states: Option<StatesBody>,
    #[serde(default, alias = "status")]
    deployed_status: Option<String>,
    #[serde(default)]
    apps: Vec<AppBody>,
}

#[derive(Debug, Default, Deserialize)]
struct StatesBody {
    #[serde(default)]
    actions: Vec<ActionBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ActionBody {
    #[serde(default)]
    state: String,
}

#[derive(Debug, Default, Deserialize)]
struct AppBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    clusters: Vec<ClusterBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterBody {
    #[serde(default)]
    cluster_provider: String,
    #[serde(default)]
    cluster: String,
    /// The legacy queries call connectivity `readyStatus` at this level.
    #[serde(default, alias = "readyStatus")]
    connectivity: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceBody {
    #[serde(default, rename = "GVK")]
    gvk: GvkBody,
    #[serde(default)]
    name: String,
    #[serde(default, alias = "rsyncStatus")]
    deployed_status: Option<String>,
    #[serde(default, alias = "clusterStatus")]
    ready_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct GvkBody {
    #[serde(default, rename = "Group")]
    group: String,
    #[serde(default, rename = "Kind")]
    kind: String,
}

/// One resource on one cluster, as both answers together describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    /// `Kind/name`, what a person recognises.
    pub label: String,
    /// The group half of the identity; two kinds may share a name across API groups.
    pub group: String,
    /// What the synchronizer did (`Pending`, `Applied`, `Failed`, `Retrying`, `Deleted`); `None` for a resource
    /// only the cluster reports (a pod of a deployment, say).
    pub deployed: Option<String>,
    /// What the cluster reports (`Ready`, `NotReady`, `NotPresent`); `None` when the ready answer lacks it.
    pub ready: Option<String>,
}

impl ResourceState {
    fn is_applied(&self) -> bool {
        self.deployed.as_deref() == Some("Applied")
    }

    fn is_ready(&self) -> bool {
        self.ready.as_deref() == Some("Ready")
    }

    /// Removed on purpose (an update dropped it): counted nowhere, waited on by nobody.
    fn is_deleted(&self) -> bool {
        self.deployed.as_deref() == Some("Deleted")
    }

    /// Whether this resource still holds the group back: deployed but not applied, or reported but not ready.
    fn is_waiting(&self) -> bool {
        !self.is_deleted()
            && ((self.deployed.is_some() && !self.is_applied())
                || (self.ready.is_some() && !self.is_ready()))
    }

    /// `Kind/name (Applied, NotReady)`: the label and whichever statuses are known.
    fn describe(&self) -> String {
        let statuses: Vec<&str> = [self.deployed.as_deref(), self.ready.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        format!("{} ({})", self.label, statuses.join(", "))
    }
}

/// One app on one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub app: String,
    pub provider: String,
    pub cluster: String,
    /// `Available`, `Retrying` or `Unknown`; `Unknown` when neither answer says.
    pub connectivity: String,
    pub resources: Vec<ResourceState>,
}

impl ClusterStatus {
    /// `provider+cluster`, the form upstream's `cluster=` filter uses.
    pub fn qualified_name(&self) -> String {
        format!("{}+{}", self.provider, self.cluster)
    }

    /// `app @ provider+cluster`: the row's name.
    pub fn title(&self) -> String {
        format!("{} @ {}", self.app, self.qualified_name())
    }

    pub fn applied(&self) -> usize {
        self.resources.iter().filter(|r| r.is_applied()).count()
    }

    /// How many resources the synchronizer deploys here.
    pub fn deployed_total(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.deployed.is_some() && !r.is_deleted())
            .count()
    }

    pub fn ready(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.is_ready() && !r.is_deleted())
            .count()
    }

    /// How many resources the ready answer lists here (including those only the cluster reports).
    pub fn ready_total(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.ready.is_some() && !r.is_deleted())
            .count()
    }

    /// Labels of the resources the synchronizer gave up on.
    pub fn failed(&self) -> Vec<&str> {
        self.resources
            .iter()
            .filter(|r| r.deployed.as_deref() == Some("Failed"))
            .map(|r| r.label.as_str())
            .collect()
    }

    /// What a row says after its name: connectivity, counts, failed resources.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}, applied {}/{}, ready {}/{}",
            self.connectivity,
            self.applied(),
            self.deployed_total(),
            self.ready(),
            self.ready_total()
        );
        let failed = self.failed();
        if !failed.is_empty() {
            text.push_str(", failed: ");
            text.push_str(&name_list(&failed, MAX_NAMED));
        }
        text
    }
}

/// At most this many resources are named on one line.
const MAX_NAMED: usize = 5;

fn name_list(names: &[&str], max: usize) -> String {
    let mut text = names
        .iter()
        .take(max)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        text.push_str(&format!(" and {} more", names.len() - max));
    }
    text
}

/// One deployment intent group, from both answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The last lifecycle action's state (`Created`, `Approved`, `Instantiated`, `Terminated`, ...).
    pub lifecycle: Option<String>,
    /// The app context's state (`Instantiating`, `Instantiated`, `InstantiateFailed`, ...); `None` before the
    /// first instantiation.
    pub deployed: Option<String>,
    /// In the order the deployed answer lists them, then any only the ready answer has.
    pub clusters: Vec<ClusterStatus>,
    /// `--cluster` values that matched no row (only tracked once something is deployed).
    pub unmatched_clusters: Vec<String>,
}

/// Whether a watch is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deployed (`Instantiated` or `Updated`), every resource applied and every resource ready.
    Ready,
    /// Still on its way; each entry names one thing that is not there yet.
    Waiting(Vec<String>),
    /// Will not become ready without someone acting: terminated, stopped, or a failed deploy.
    Failed(String),
}

/// App context states after which nothing more gets deployed.
const FAILED_DEPLOYS: &[&str] = &["InstantiateFailed", "UpdatedFailed", "TerminateFailed"];
const TERMINATING: &[&str] = &["Terminating", "Terminated"];
const DEPLOYED: &[&str] = &["Instantiated", "Updated"];
/// Lifecycle states in which the group is not (or no longer) being deployed.
const STOPPED_LIFECYCLE: &[&str] = &["Terminated", "InstantiateStopped", "TerminateStopped"];

fn parse_body(query: &'static str, bytes: &[u8]) -> Result<StatusBody, BodyError> {
    serde_json::from_slice(bytes).map_err(|err| BodyError::Json {
        query,
        message: err.to_string(),
    })
}

/// Whether a `--cluster` value names this row: `provider+cluster`, or just the cluster's name.
fn cluster_matches(filter: &str, row: &ClusterStatus) -> bool {
    match filter.split_once('+') {
        Some((provider, cluster)) => provider == row.provider && cluster == row.cluster,
        None => filter == row.cluster,
    }
}

impl GroupStatus {
    /// Merges the `status=deployed` and `status=ready` answers (both `output=all`) into one view, keeping only
    /// the clusters `cluster_filters` names (all when empty).
    pub fn from_answers(
        deployed_answer: &[u8],
        ready_answer: &[u8],
        cluster_filters: &[String],
    ) -> Result<GroupStatus, BodyError> {
        let deployed_body = parse_body("deployed", deployed_answer)?;
        let ready_body = parse_body("ready", ready_answer)?;
        // The two answers are read moments apart; the later (ready) one wins on group-level facts.
        let lifecycle = [&ready_body, &deployed_body]
            .iter()
            .find_map(|body| body.states.as_ref()?.actions.last())
            .map(|action| action.state.clone())
            .filter(|state| !state.is_empty());
        let deployed = ready_body
            .deployed_status
            .clone()
            .or_else(|| deployed_body.deployed_status.clone());

        let mut clusters: Vec<ClusterStatus> = Vec::new();
        for (body, from_ready) in [(&deployed_body, false), (&ready_body, true)] {
            for app in &body.apps {
                for cluster in &app.clusters {
                    merge_cluster(&mut clusters, &app.name, cluster, from_ready);
                }
            }
        }
        for row in &mut clusters {
            if row.connectivity.is_empty() {
                row.connectivity = "Unknown".to_owned();
            }
        }
        if !cluster_filters.is_empty() {
            clusters.retain(|row| cluster_filters.iter().any(|f| cluster_matches(f, row)));
        }
        let unmatched_clusters = if deployed.is_some() {
            cluster_filters
                .iter()
                .filter(|f| !clusters.iter().any(|row| cluster_matches(f, row)))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Ok(GroupStatus {
            lifecycle,
            deployed,
            clusters,
            unmatched_clusters,
        })
    }

    /// Ready, still waiting (and on what), or failed (and why).
    pub fn verdict(&self) -> Verdict {
        let lifecycle = self.lifecycle.as_deref().unwrap_or("unknown");
        if STOPPED_LIFECYCLE.contains(&lifecycle) {
            return Verdict::Failed(format!("the group's state is {lifecycle}"));
        }
        let Some(deployed) = self.deployed.as_deref() else {
            return Verdict::Waiting(vec![format!("not instantiated yet (state {lifecycle})")]);
        };
        if FAILED_DEPLOYS.contains(&deployed) {
            return Verdict::Failed(format!("the deploy failed (deployed status {deployed})"));
        }
        if TERMINATING.contains(&deployed) {
            return Verdict::Failed(format!(
                "the group is being terminated (deployed status {deployed})"
            ));
        }
        let mut waiting = Vec::new();
        if !DEPLOYED.contains(&deployed) {
            waiting.push(format!("deployed status is {deployed}"));
        }
        for filter in &self.unmatched_clusters {
            waiting.push(format!("no resources on cluster {filter}"));
        }
        for row in &self.clusters {
            for resource in row.resources.iter().filter(|r| r.is_waiting()) {
                waiting.push(format!("{}: {}", row.title(), resource.describe()));
            }
        }
        if waiting.is_empty() {
            Verdict::Ready
        } else {
            Verdict::Waiting(waiting)
        }
    }

    /// `state Instantiated, deployed Instantiating`, or `state Approved, not deployed yet`.
    pub fn state_text(&self) -> String {
        let lifecycle = self.lifecycle.as_deref().unwrap_or("unknown");
        match &self.deployed {
            Some(deployed) => format!("state {lifecycle}, deployed {deployed}"),
            None => format!("state {lifecycle}, not deployed yet"),
        }
    }

    pub fn applied(&self) -> usize {
        self.clusters.iter().map(ClusterStatus::applied).sum()
    }

    pub fn deployed_total(&self) -> usize {
        self.clusters
            .iter()
            .map(ClusterStatus::deployed_total)
            .sum()
    }

    pub fn ready(&self) -> usize {
        self.clusters.iter().map(ClusterStatus::ready).sum()
    }

    pub fn ready_total(&self) -> usize {
        self.clusters.iter().map(ClusterStatus::ready_total).sum()
    }

    /// `total: 3 clusters, applied 3/4, ready 3/5 (not ready)`.
    pub fn total_text(&self) -> String {
        let verdict = match self.verdict() {
            Verdict::Ready => "ready".to_owned(),
            Verdict::Waiting(_) => "not ready".to_owned(),
            Verdict::Failed(reason) => format!("failed: {reason}"),
        };
        if self.clusters.is_empty() {
            return format!("total: no resources yet ({verdict})");
        }
        let clusters = self.clusters.len();
        format!(
            "total: {clusters} cluster{}, applied {}/{}, ready {}/{} ({verdict})",
            if clusters == 1 { "" } else { "s" },
            self.applied(),
            self.deployed_total(),
            self.ready(),
            self.ready_total()
        )
    }

    /// The view as keyed lines: the state, one row per app and cluster, the total.
    pub fn lines(&self) -> Vec<ViewLine> {
        let mut lines = vec![ViewLine {
            key: LineKey::State,
            text: self.state_text(),
        }];
        for row in &self.clusters {
            lines.push(ViewLine {
                key: LineKey::Cluster {
                    app: row.app.clone(),
                    cluster: row.qualified_name(),
                },
                text: format!("{}: {}", row.title(), row.summary()),
            });
        }
        lines.push(ViewLine {
            key: LineKey::Total,
            text: self.total_text(),
        });
        lines
    }
}

fn merge_cluster(
    clusters: &mut Vec<ClusterStatus>,
    app: &str,
    body: &ClusterBody,
    from_ready: bool,
) {
    let position = clusters.iter().position(|row| {
        row.app == app && row.provider == body.cluster_provider && row.cluster == body.cluster
    });
    let index = match position {
        Some(index) => index,
        None => {
            clusters.push(ClusterStatus {
                app: app.to_owned(),
                provider: body.cluster_provider.clone(),
                cluster: body.cluster.clone(),
                connectivity: String::new(),
                resources: Vec::new(),
            });
            clusters.len() - 1
        }
    };
    let Some(row) = clusters.get_mut(index) else {
        return;
    };
    if let Some(connectivity) = &body.connectivity {
        row.connectivity = connectivity.clone();
    }
    for resource in &body.resources {
        let label = format!("{}/{}", resource.gvk.kind, resource.name);
        let existing = row
            .resources
            .iter_mut()
            .find(|r| r.label == label && r.group == resource.gvk.group);
        let state = match existing {
            Some(state) => state,
            None => {
                row.resources.push(ResourceState {
                    label,
                    group: resource.gvk.group.clone(),
                    deployed: None,
                    ready: None,
                });
                match row.resources.last_mut() {
                    Some(state) => state,
                    None => continue,
                }
            }
        };
        if from_ready {
            state.ready = resource.ready_status.clone();
        } else {
            state.deployed = resource.deployed_status.clone();
        }
    }
}

/// What a line is about, so a watch can tell which lines changed between two polls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineKey {
    State,
    Cluster {
        app: String,
        cluster: String,
    },
    Total,
    /// Why the last poll got no answer (watch only).
    Problem,
}

/// One line of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLine {
    pub key: LineKey,
    pub text: String,
}

/// The lines `emcoctl status` prints once for a group: `name: state ...`, then the rows and the total indented.
pub fn snapshot_lines(name: &str, status: &GroupStatus) -> Vec<String> {
    status
        .lines()
        .into_iter()
        .map(|line| match line.key {
            LineKey::State => format!("{name}: {}", line.text),
            _ => format!("  {}", line.text),
        })
        .collect()
}

/// Remembers what a watch printed for one group, so each poll prints only the lines that changed.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    last: std::collections::BTreeMap<LineKey, String>,
}

impl ChangeTracker {
    /// The lines of `current` that differ from (or were absent in) the previous call, in view order. A key that
    /// disappears (say, a problem that cleared) is forgotten, so it prints again if it comes back.
    pub fn changes(&mut self, current: Vec<ViewLine>) -> Vec<ViewLine> {
        let mut next = std::collections::BTreeMap::new();
        let mut changed = Vec::new();
        for line in current {
            if self.last.get(&line.key) != Some(&line.text) {
                changed.push(line.clone());
            }
            next.insert(line.key, line.text);
        }
        self.last = next;
        changed
    }
}

/// One watch line: `[elapsed] name: state ...` for the state, `[elapsed] name row...` for the others.
pub fn watch_line(elapsed: &str, name: &str, line: &ViewLine) -> String {
    match line.key {
        LineKey::State | LineKey::Problem => format!("[{elapsed}] {name}: {}", line.text),
        _ => format!("[{elapsed}] {name} {}", line.text),
    }
}

/// A short human duration: `850ms`, `4.2s`, `3m05s`, `1h02m`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    if seconds < 60 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    if seconds < 3600 {
        return format!("{}m{:02}s", seconds / 60, seconds % 60);
    }
    format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
}

/// A watch line's time since the start: `0.4s`, `12.0s`, `3m05s` (tenths below a minute, so the stamps of
/// one run line up).
pub fn format_stamp(elapsed: std::time::Duration) -> String {
    if elapsed.as_secs() < 60 {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else {
        format_duration(elapsed)
    }
}

/// Parses `500ms`, `2s`, `10m`, `1h`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` lacks a unit after the last number (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration like 500ms, 2s, 10m or 1h"
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..digits]))?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let scale = match &after[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
                ));
            }
        };
        total += std::time::Duration::try_from_secs_f64(number * scale)
            .map_err(|err| format!("`{text}`: {err}"))?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use emco_core::lifecycle::{DigState, DigStatus};
    use emco_core::status::{
        AppContextStatus, AppInput, ClusterInput, Connectivity, ContextInput, DeployedStatus, Gvk,
        ReadyStatus, ResourceInput, StatusInput, StatusQuery, render,
    };

    use super::*;

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
            detail: None,
        }
    }

    fn cluster(
        name: &str,
        connectivity: Connectivity,
        resources: Vec<ResourceInput>,
    ) -> ClusterInput {
        ClusterInput {
            provider: "p".to_owned(),
            cluster: name.to_owned(),
            connectivity,
            resources,
        }
    }

    fn lifecycle(states: &[DigState]) -> DigStatus {
        // Built through the stored document's serde form, which keeps working as the struct grows fields.
        let actions: Vec<serde_json::Value> = states
            .iter()
            .map(|state| serde_json::json!({ "state": state, "time": "2026-01-01T00:00:00Z", "revision": 0 }))
            .collect();
        serde_json::from_value(serde_json::json!({
            "state": states.last().copied().unwrap_or_default(),
            "actions": actions,
            "revision": 1,
        }))
        .unwrap()
    }

    /// firewall on p+edge01 (an applied, ready ConfigMap and an applied, not-ready Deployment) and p+edge02
    /// (a failed ConfigMap the cluster has not reported); sink on p+edge01 (an applied, ready Service and a
    /// ready Pod only the cluster reports).
    fn input(status: AppContextStatus) -> StatusInput {
        use DeployedStatus::{Applied, Failed};
        use ReadyStatus::{NotReady, Ready};
        StatusInput {
            project: "proj".to_owned(),
            composite_app: "ca".to_owned(),
            composite_app_version: "v1".to_owned(),
            composite_profile: "prof".to_owned(),
            name: "dig".to_owned(),
            lifecycle: lifecycle(&[
                DigState::Created,
                DigState::Approved,
                DigState::Instantiated,
            ]),
            action_instances: vec![String::new(), String::new(), "100".to_owned()],
            status_context_id: "100".to_owned(),
            context: Some(ContextInput {
                context_id: "100".to_owned(),
                status,
                apps: vec![
                    AppInput {
                        name: "firewall".to_owned(),
                        clusters: vec![
                            cluster(
                                "edge01",
                                Connectivity::Available,
                                vec![
                                    resource(
                                        "fw-cm",
                                        gvk("", "ConfigMap"),
                                        Some(Applied),
                                        Some(Ready),
                                    ),
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
                                vec![resource("fw-cm", gvk("", "ConfigMap"), Some(Failed), None)],
                            ),
                        ],
                    },
                    AppInput {
                        name: "sink".to_owned(),
                        clusters: vec![cluster(
                            "edge01",
                            Connectivity::Available,
                            vec![
                                resource(
                                    "sink-svc",
                                    gvk("", "Service"),
                                    Some(Applied),
                                    Some(Ready),
                                ),
                                resource("sink-pod", gvk("", "Pod"), None, Some(Ready)),
                            ],
                        )],
                    },
                ],
            }),
            ..StatusInput::default()
        }
    }

    /// The hub's two answers for `input`, rendered by emco-core exactly as the hub serves them.
    fn answers(input: &StatusInput) -> (Vec<u8>, Vec<u8>) {
        let body = |status: &str| {
            let mut params: HashMap<String, Vec<String>> = HashMap::new();
            params.insert("status".to_owned(), vec![status.to_owned()]);
            params.insert("output".to_owned(), vec!["all".to_owned()]);
            let query = StatusQuery::parse(&params).unwrap();
            serde_json::to_vec(&render(&query, input).unwrap()).unwrap()
        };
        (body("deployed"), body("ready"))
    }

    fn view(input: &StatusInput, clusters: &[&str]) -> GroupStatus {
        let (deployed, ready) = answers(input);
        let filters: Vec<String> = clusters.iter().map(|c| (*c).to_owned()).collect();
        GroupStatus::from_answers(&deployed, &ready, &filters).unwrap()
    }

    #[test]
    fn answers_merge_into_rows_per_app_and_cluster() {
        let status = view(&input(AppContextStatus::Instantiating), &[]);
        assert_eq!(status.lifecycle.as_deref(), Some("Instantiated"));
        assert_eq!(status.deployed.as_deref(), Some("Instantiating"));
        let titles: Vec<String> = status.clusters.iter().map(ClusterStatus::title).collect();
        assert_eq!(
            titles,
            [
                "firewall @ p+edge01",
                "firewall @ p+edge02",
                "sink @ p+edge01"
            ]
        );

        let edge01 = &status.clusters[0];
        assert_eq!(edge01.connectivity, "Available");
        assert_eq!((edge01.applied(), edge01.deployed_total()), (2, 2));
        assert_eq!((edge01.ready(), edge01.ready_total()), (1, 2));
        assert_eq!(
            edge01.resources[1],
            ResourceState {
                label: "Deployment/fw".to_owned(),
                group: "apps".to_owned(),
                deployed: Some("Applied".to_owned()),
                ready: Some("NotReady".to_owned()),
            }
        );
        // A resource the cluster has not reported is NotPresent in the ready answer.
        let edge02 = &status.clusters[1];
        assert_eq!(edge02.connectivity, "Retrying");
        assert_eq!(edge02.resources[0].ready.as_deref(), Some("NotPresent"));
        assert_eq!(edge02.failed(), ["ConfigMap/fw-cm"]);
        // The pod only the cluster reports counts toward ready, not toward applied.
        let sink = &status.clusters[2];
        assert_eq!((sink.applied(), sink.deployed_total()), (1, 1));
        assert_eq!((sink.ready(), sink.ready_total()), (2, 2));
        assert_eq!((status.applied(), status.deployed_total()), (3, 4));
        assert_eq!((status.ready(), status.ready_total()), (3, 5));
    }

    #[test]
    fn lines_show_state_rows_and_total() {
        let status = view(&input(AppContextStatus::Instantiating), &[]);
        assert_eq!(
            snapshot_lines("dig", &status),
            [
                "dig: state Instantiated, deployed Instantiating",
                "  firewall @ p+edge01: Available, applied 2/2, ready 1/2",
                "  firewall @ p+edge02: Retrying, applied 0/1, ready 0/1, failed: ConfigMap/fw-cm",
                "  sink @ p+edge01: Available, applied 1/1, ready 2/2",
                "  total: 3 clusters, applied 3/4, ready 3/5 (not ready)",
            ]
        );
    }

    #[test]
    fn waiting_names_every_resource_holding_the_group_back() {
        let status = view(&input(AppContextStatus::Instantiating), &[]);
        assert_eq!(
            status.verdict(),
            Verdict::Waiting(vec![
                "deployed status is Instantiating".to_owned(),
                "firewall @ p+edge01: Deployment/fw (Applied, NotReady)".to_owned(),
                "firewall @ p+edge02: ConfigMap/fw-cm (Failed, NotPresent)".to_owned(),
            ])
        );
    }

    #[test]
    fn ready_when_deployed_and_everything_applied_and_ready() {
        let mut ready = input(AppContextStatus::Instantiated);
        for app in &mut ready.context.as_mut().unwrap().apps {
            for cluster in &mut app.clusters {
                cluster.connectivity = Connectivity::Available;
                for resource in &mut cluster.resources {
                    if resource.deployed.is_some() {
                        resource.deployed = Some(DeployedStatus::Applied);
                    }
                    resource.ready = Some(ReadyStatus::Ready);
                }
            }
        }
        let status = view(&ready, &[]);
        assert_eq!(status.verdict(), Verdict::Ready);
        assert_eq!(
            status.total_text(),
            "total: 3 clusters, applied 4/4, ready 5/5 (ready)"
        );
        // All resources ready but the context still Instantiating: not done yet.
        ready.context.as_mut().unwrap().status = AppContextStatus::Instantiating;
        assert_eq!(
            view(&ready, &[]).verdict(),
            Verdict::Waiting(vec!["deployed status is Instantiating".to_owned()])
        );
        // Updated counts as deployed, as upstream's status notifications treat it.
        ready.context.as_mut().unwrap().status = AppContextStatus::Updated;
        assert_eq!(view(&ready, &[]).verdict(), Verdict::Ready);
    }

    #[test]
    fn deleted_resources_are_neither_counted_nor_waited_on() {
        let mut updated = input(AppContextStatus::Updated);
        let edge02 = &mut updated.context.as_mut().unwrap().apps[0].clusters[1];
        edge02.resources[0].deployed = Some(DeployedStatus::Deleted);
        let status = view(&updated, &["p+edge02"]);
        assert_eq!(
            status.clusters[0].summary(),
            "Retrying, applied 0/0, ready 0/0"
        );
        assert_eq!(status.verdict(), Verdict::Ready);
    }

    #[test]
    fn before_instantiation_only_the_state_is_known() {
        let mut approved = input(AppContextStatus::Instantiated);
        approved.context = None;
        approved.lifecycle = lifecycle(&[DigState::Created, DigState::Approved]);
        approved.action_instances.truncate(2);
        let status = view(&approved, &["edge01"]);
        assert_eq!(status.deployed, None);
        assert!(status.clusters.is_empty());
        assert!(status.unmatched_clusters.is_empty());
        assert_eq!(
            status.verdict(),
            Verdict::Waiting(vec!["not instantiated yet (state Approved)".to_owned()])
        );
        assert_eq!(
            snapshot_lines("dig", &status),
            [
                "dig: state Approved, not deployed yet",
                "  total: no resources yet (not ready)",
            ]
        );
    }

    #[test]
    fn failed_deploys_and_termination_end_a_watch() {
        let failed = view(&input(AppContextStatus::InstantiateFailed), &[]);
        assert_eq!(
            failed.verdict(),
            Verdict::Failed("the deploy failed (deployed status InstantiateFailed)".to_owned())
        );
        assert!(
            failed
                .total_text()
                .ends_with("(failed: the deploy failed (deployed status InstantiateFailed))")
        );
        assert_eq!(
            view(&input(AppContextStatus::Terminating), &[]).verdict(),
            Verdict::Failed(
                "the group is being terminated (deployed status Terminating)".to_owned()
            )
        );
        let mut terminated = input(AppContextStatus::Terminated);
        terminated.lifecycle = lifecycle(&[
            DigState::Created,
            DigState::Approved,
            DigState::Instantiated,
            DigState::Terminated,
        ]);
        assert_eq!(
            view(&terminated, &[]).verdict(),
            Verdict::Failed("the group's state is Terminated".to_owned())
        );
    }

    #[test]
    fn cluster_filters_accept_qualified_and_plain_names() {
        let input = input(AppContextStatus::Instantiated);
        let plain = view(&input, &["edge01"]);
        assert_eq!(plain.clusters.len(), 2);
        assert!(plain.clusters.iter().all(|row| row.cluster == "edge01"));
        let qualified = view(&input, &["p+edge02"]);
        assert_eq!(qualified.clusters.len(), 1);
        assert_eq!(qualified.clusters[0].title(), "firewall @ p+edge02");
        let missing = view(&input, &["edge09", "other+edge01"]);
        assert!(missing.clusters.is_empty());
        assert_eq!(missing.unmatched_clusters, ["edge09", "other+edge01"]);
        assert_eq!(
            missing.verdict(),
            Verdict::Waiting(vec![
                "no resources on cluster edge09".to_owned(),
                "no resources on cluster other+edge01".to_owned(),
            ])
        );
    }

    #[test]
    fn app_filtered_answers_show_only_that_app() {
        let input = input(AppContextStatus::Instantiated);
        let body = |status: &str| {
            let mut params: HashMap<String, Vec<String>> = HashMap::new();
            params.insert("status".to_owned(), vec![status.to_owned()]);
            params.insert("app".to_owned(), vec!["sink".to_owned()]);
            serde_json::to_vec(&render(&StatusQuery::parse(&params).unwrap(), &input).unwrap())
                .unwrap()
        };
        let status = GroupStatus::from_answers(&body("deployed"), &body("ready"), &[]).unwrap();
        assert_eq!(status.clusters.len(), 1);
        assert_eq!(status.clusters[0].app, "sink");
        assert_eq!(status.verdict(), Verdict::Ready);
    }

    #[test]
    fn legacy_field_names_are_read_too() {
        let body = |kind: &str| {
            let mut params: HashMap<String, Vec<String>> = HashMap::new();
            params.insert("type".to_owned(), vec![kind.to_owned()]);
            serde_json::to_vec(
                &render(
                    &StatusQuery::parse(&params).unwrap(),
                    &input(AppContextStatus::Instantiated),
                )
                .unwrap(),
            )
            .unwrap()
        };
        let status = GroupStatus::from_answers(&body("rsync"), &body("cluster"), &[]).unwrap();
        assert_eq!(status.deployed.as_deref(), Some("Instantiated"));
        assert_eq!(status.clusters[1].connectivity, "Retrying");
        assert_eq!(status.clusters[0].ready(), 1);
        assert_eq!(status.clusters[0].applied(), 2);
    }

    #[test]
    fn unreadable_answers_are_errors_naming_the_query() {
        let (deployed, _) = answers(&input(AppContextStatus::Instantiated));
        let error = GroupStatus::from_answers(&deployed, b"<html>", &[]).unwrap_err();
        assert!(
            matches!(error, BodyError::Json { query: "ready", .. }),
            "{error}"
        );
        let error = GroupStatus::from_answers(b"[1]", &deployed, &[]).unwrap_err();
        assert!(
            matches!(
                error,
                BodyError::Json {
                    query: "deployed",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn many_failures_are_named_up_to_a_limit() {
        let mut many = input(AppContextStatus::Instantiating);
        let apps = &mut many.context.as_mut().unwrap().apps;
        apps[0].clusters[1].resources = (0..7)
            .map(|i| {
                resource(
                    &format!("cm{i}"),
                    gvk("", "ConfigMap"),
                    Some(DeployedStatus::Failed),
                    None,
                )
            })
            .collect();
        let status = view(&many, &[]);
        assert_eq!(
            status.clusters[1].summary(),
            "Retrying, applied 0/7, ready 0/7, failed: ConfigMap/cm0, ConfigMap/cm1, ConfigMap/cm2, \
             ConfigMap/cm3, ConfigMap/cm4 and 2 more"
        );
    }

    #[test]
    fn change_tracker_prints_only_what_changed() {
        let mut tracker = ChangeTracker::default();
        let first = view(&input(AppContextStatus::Instantiating), &[]);
        assert_eq!(tracker.changes(first.lines()).len(), 5);
        assert!(tracker.changes(first.lines()).is_empty());

        let mut later = input(AppContextStatus::Instantiating);
        later.context.as_mut().unwrap().apps[0].clusters[0].resources[1].ready =
            Some(ReadyStatus::Ready);
        let changed = tracker.changes(view(&later, &[]).lines());
        let keys: Vec<&LineKey> = changed.iter().map(|line| &line.key).collect();
        assert_eq!(
            keys,
            [
                &LineKey::Cluster {
                    app: "firewall".to_owned(),
                    cluster: "p+edge01".to_owned()
                },
                &LineKey::Total
            ]
        );
        assert_eq!(
            watch_line("1.0s", "dig", &changed[0]),
            "[1.0s] dig firewall @ p+edge01: Available, applied 2/2, ready 2/2"
        );

        // A problem line appears once, and again only after it cleared.
        let mut with_problem = view(&later, &[]).lines();
        with_problem.push(ViewLine {
            key: LineKey::Problem,
            text: "cannot connect".to_owned(),
        });
        assert_eq!(tracker.changes(with_problem.clone()).len(), 1);
        assert!(tracker.changes(with_problem.clone()).is_empty());
        assert!(tracker.changes(view(&later, &[]).lines()).is_empty());
        assert_eq!(tracker.changes(with_problem).len(), 1);
        assert_eq!(
            watch_line(
                "2.0s",
                "dig",
                &ViewLine {
                    key: LineKey::Problem,
                    text: "x".to_owned()
                }
            ),
            "[2.0s] dig: x"
        );
    }

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["", "s", "5x", "1m30", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(format_stamp(Duration::from_millis(2)), "0.0s");
        assert_eq!(format_stamp(Duration::from_millis(12_040)), "12.0s");
        assert_eq!(format_stamp(Duration::from_secs(185)), "3m05s");
    }
}
