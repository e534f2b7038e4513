//! What the synchronizer stores, and where. Every key lives under `rsync/`:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `rsync/op/{ctx}` | [`OpRecord`]: the operation asked for (instantiate, update from another context, or terminate) | the caller's own transaction ([`instantiate_ops`](super::Synchronizer::instantiate_ops) / [`terminate_ops`](super::Synchronizer::terminate_ops)); never by a run |
//! | `rsync/status/{ctx}` | [`StatusRecord`]: the run status (`Instantiating` → `Instantiated`, ...) | the caller's transaction (the starting status), then the run |
//! | `rsync/stop/{ctx}` | [`StopRecord`]: `stop` was asked for the operation of revision `opRev` | [`stop`](super::Synchronizer::stop); deleted by the next operation |
//! | `rsync/ac/{ctx}/{app}/{provider+cluster}` | [`AppClusterRecord`]: per object deployed status and readiness, hooks applied and completed, connectivity | the cluster's worker, once per step (never once per object; a hook's apply is one step) |
//! | `rsync/cl/{ctx}/{provider+cluster}` | [`ClusterRecord`]: connectivity, written only when it flips between `Available` and `Retrying` | the cluster's worker |
//! | `rsync/left/{ctx}` | [`LeftRecord`]: objects of earlier revisions an update of `ctx` (or a terminate) could not remove (stopped, failed): the next update from `ctx`, or its terminate, removes them | the run, when it ends |
//!
//! | `rsync/discovered/{ctx}` | [`LeftRecord`]: the Services and Endpoints service discovery gave client clusters (every object whose apply may have begun); an update moves it to its target context, a terminate removes them | the run's discovery step; an update's end |
//!
//! The removal of such objects is recorded as app `~left` (not a valid app name) of the context
//! that removes them: `rsync/ac/{ctx}/~left/{cluster}`.
//!
//! A run belongs to one operation, identified by the store revision that last wrote
//! `rsync/op/{ctx}` (its `mod_revision`, called `opRev` here). Every write of a run compares that
//! revision in the same transaction, so a run superseded by a newer operation (terminate after
//! instantiate) or by [`forget_ops`](super::Synchronizer::forget_ops) can never overwrite the
//! newer state: its first refused write ends it. App-cluster records carry the `opRev` that wrote
//! them; a run treats the progress (`state`, hooks applied and run) of a record from another
//! operation as not begun, while keeping its object statuses as the starting point of what is on
//! the cluster.
//!
//! Status listing scans `rsync/status/` only (one key per context), never the per-cluster
//! records.

use emco_core::appcontext::ClusterId;
use emco_core::status::{AppContextStatus, Connectivity, DeployedStatus, ReadyStatus};
use serde::{Deserialize, Serialize};

/// Root of every synchronizer key.
pub const ROOT: &str = "rsync/";
/// Prefix of the run status records (one per context), scanned by `resume_all`.
pub const STATUS_PREFIX: &str = "rsync/status/";

pub fn op_key(ctx: &str) -> String {
    format!("rsync/op/{ctx}")
}

pub fn status_key(ctx: &str) -> String {
    format!("{STATUS_PREFIX}{ctx}")
}

pub fn stop_key(ctx: &str) -> String {
    format!("rsync/stop/{ctx}")
}

/// Prefix of a context's app-cluster records.
pub fn app_cluster_prefix(ctx: &str) -> String {
    format!("rsync/ac/{ctx}/")
}

pub fn app_cluster_key(ctx: &str, app: &str, cluster: &ClusterId) -> String {
    format!("rsync/ac/{ctx}/{app}/{cluster}")
}

/// Objects left behind by earlier revisions (see the layout above).
pub fn left_key(ctx: &str) -> String {
    format!("rsync/left/{ctx}")
}

/// Objects service discovery put on client clusters (see the layout above).
pub fn discovered_key(ctx: &str) -> String {
    format!("rsync/discovered/{ctx}")
}

/// The app name of service discovery's objects in their `emco/deployment-id` label, as
/// upstream names the composite app of its discovery contexts.
pub const DISCOVERY_APP: &str = "service-discovery";

/// The app name under which a run records the removal of objects left behind.
pub const LEFT_APP: &str = "~left";

/// One object an earlier revision left on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftObject {
    pub cluster: ClusterId,
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// `rsync/left/{ctx}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeftRecord {
    pub objects: Vec<LeftObject>,
}

/// Prefix of a context's cluster connectivity records.
pub fn cluster_prefix(ctx: &str) -> String {
    format!("rsync/cl/{ctx}/")
}

pub fn cluster_key(ctx: &str, cluster: &ClusterId) -> String {
    format!("rsync/cl/{ctx}/{cluster}")
}

/// The operation a context's run carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpKind {
    Instantiate,
    /// Reconcile the clusters from what the context [`OpRecord::from`] deployed to this
    /// context: only what differs is applied or deleted.
    Update,
    Terminate,
}

impl OpKind {
    /// The status a run of this operation starts in.
    pub fn running_status(self) -> AppContextStatus {
        match self {
            OpKind::Instantiate => AppContextStatus::Instantiating,
            OpKind::Update => AppContextStatus::Updating,
            OpKind::Terminate => AppContextStatus::Terminating,
        }
    }

    /// The status a finished run ends in.
    pub fn final_status(self, clean: bool) -> AppContextStatus {
        match (self, clean) {
            (OpKind::Instantiate, true) => AppContextStatus::Instantiated,
            (OpKind::Instantiate, false) => AppContextStatus::InstantiateFailed,
            (OpKind::Update, true) => AppContextStatus::Updated,
            (OpKind::Update, false) => AppContextStatus::UpdateFailed,
            (OpKind::Terminate, true) => AppContextStatus::Terminated,
            (OpKind::Terminate, false) => AppContextStatus::TerminateFailed,
        }
    }
}

/// `rsync/op/{ctx}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpRecord {
    pub op: OpKind,
    /// An update's source: the context whose deployment it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The context whose id labels the objects (`emco/deployment-id`), when not this one: a
    /// group's status context, kept over updates so unchanged objects stay identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// An update that is a rollback (runs rollback hooks instead of upgrade hooks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

impl OpRecord {
    pub fn new(op: OpKind) -> Self {
        Self {
            op,
            from: None,
            label: None,
            rollback: false,
        }
    }

    /// The context id in the objects' `emco/deployment-id` label.
    pub fn label_context<'a>(&'a self, ctx: &'a str) -> &'a str {
        self.label.as_deref().unwrap_or(ctx)
    }
}

/// `rsync/status/{ctx}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRecord {
    pub status: AppContextStatus,
    /// Why a run failed (leftovers of a failed terminate, a context that cannot be loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every applied object was seen ready (only meaningful once an instantiate finished):
    /// `resume_all` restarts readiness tracking of finished instantiates without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_ready: bool,
    /// Unix milliseconds of the write.
    #[serde(default)]
    pub updated_ms: u64,
}

/// Whether a run in this status has more to do than readiness tracking.
pub fn is_finished(status: AppContextStatus) -> bool {
    matches!(
        status,
        AppContextStatus::Instantiated
            | AppContextStatus::InstantiateFailed
            | AppContextStatus::Updated
            | AppContextStatus::UpdateFailed
            | AppContextStatus::Terminated
            | AppContextStatus::TerminateFailed
    )
}

/// `rsync/stop/{ctx}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopRecord {
    pub op_rev: u64,
}

/// Where the work for one app on one cluster stands, within the record's operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppClusterState {
    /// Not finished (or not begun).
    #[default]
    Pending,
    /// Instantiate finished: every object applied.
    Applied,
    /// Finished with failures (an object refused, a hook failed, the cluster unusable, a
    /// dependency failed, objects left behind by a terminate).
    Failed,
    /// `stop` ended the work before it finished; objects are as the record says.
    Stopped,
    /// Terminate finished: every object deleted (or kept by policy).
    Deleted,
}

impl AppClusterState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, AppClusterState::Pending)
    }
}

/// The hook events a record remembers runs of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookEvent {
    PreInstall,
    PostInstall,
    PreDelete,
    PostDelete,
    PreUpgrade,
    PostUpgrade,
    PreRollback,
    PostRollback,
}

/// One completed hook run: the hook at `index` of the variant, at `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    #[serde(rename = "e")]
    pub event: HookEvent,
    #[serde(rename = "i")]
    pub index: u32,
}

/// What the last update did to an object (instantiate leaves it unset: created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LastAction {
    /// An update brought the object to the cluster.
    Created,
    /// An update changed the object.
    Updated,
}

/// One object's status (kept short: there is one per object per cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    #[serde(rename = "d", default)]
    pub deployed: DeployedStatus,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyStatus>,
    /// Why it failed or is not ready.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the last update did to it (kept while later updates leave it unchanged).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<LastAction>,
}

/// `rsync/ac/{ctx}/{app}/{cluster}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppClusterRecord {
    /// The operation (its `opRev`) whose run wrote the record.
    pub op_rev: u64,
    pub state: AppClusterState,
    pub connectivity: Connectivity,
    /// Why the whole app failed on the cluster (unusable kubeconfig, failed hook, failed
    /// dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hooks that completed in this operation (never run again by it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_done: Vec<HookRun>,
    /// Hooks applied in this operation that have not completed yet: a resumed run re-applies
    /// such a hook and waits for the copy on the cluster instead of replacing it
    /// (`before-hook-creation` is for copies left by earlier operations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks_applied: Vec<HookRun>,
    /// By index of the cluster's variant, in install order.
    pub objects: Vec<ObjectRecord>,
    /// Unix milliseconds when every object was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_ms: Option<u64>,
    /// Unix milliseconds when every applied object was first seen ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<u64>,
    /// Unix milliseconds of the write.
    #[serde(default)]
    pub updated_ms: u64,
}

impl AppClusterRecord {
    pub fn hook_done(&self, event: HookEvent, index: usize) -> bool {
        self.hooks_done
            .iter()
            .any(|run| run.event == event && run.index as usize == index)
    }

    pub fn hook_applied(&self, event: HookEvent, index: usize) -> bool {
        self.hooks_applied
            .iter()
            .any(|run| run.event == event && run.index as usize == index)
    }
}

/// `rsync/cl/{ctx}/{cluster}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub connectivity: Connectivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub updated_ms: u64,
}

/// Unix milliseconds now.
/// Now, as Kubernetes writes times (RFC 3339, seconds).
pub fn rfc3339_now() -> String {
    emco_core::lifecycle::format_rfc3339(now_ms() / 1000)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// JSON of a record (our own types: serializing cannot fail, but stay total).
pub fn to_bytes<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let cluster = ClusterId::new("p", "c1");
        assert_eq!(op_key("abc"), "rsync/op/abc");
        assert_eq!(status_key("abc"), "rsync/status/abc");
        assert_eq!(stop_key("abc"), "rsync/stop/abc");
        assert_eq!(
            app_cluster_key("abc", "web", &cluster),
            "rsync/ac/abc/web/p+c1"
        );
        assert!(app_cluster_key("abc", "web", &cluster).starts_with(&app_cluster_prefix("abc")));
        assert_eq!(cluster_key("abc", &cluster), "rsync/cl/abc/p+c1");
        assert!(cluster_key("abc", &cluster).starts_with(&cluster_prefix("abc")));
    }

    #[test]
    fn object_records_are_compact() {
        let record = AppClusterRecord {
            op_rev: 7,
            objects: vec![
                ObjectRecord {
                    deployed: DeployedStatus::Applied,
                    ready: Some(ReadyStatus::Ready),
                    message: None,
                    action: None,
                },
                ObjectRecord::default(),
            ],
            ..AppClusterRecord::default()
        };
        let text = String::from_utf8(to_bytes(&record)).unwrap();
        assert!(
            text.contains(r#""objects":[{"d":"Applied","r":"Ready"},{"d":"Pending"}]"#),
            "{text}"
        );
        let back: AppClusterRecord = serde_json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, record);
    }
}
