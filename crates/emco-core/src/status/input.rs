//! The status facts the synchronizer gathers for one deployment intent group; `render` turns
//! them into upstream's JSON. Enum spellings are upstream's wire values.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StatusQueryError;
use crate::lifecycle::DigStatus;

/// How the synchronizer reaches a cluster (upstream `appcontext.ClusterReadyStatusEnum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Connectivity {
    Available,
    Retrying,
    #[default]
    Unknown,
}

/// What the synchronizer did with one resource (upstream `resourcestatus.RsyncStatusEnum`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployedStatus {
    /// Upstream's value when no status has been recorded yet.
    #[default]
    Pending,
    Applied,
    Failed,
    Retrying,
    Deleted,
}

/// What the cluster reports about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// The overall state of one app context (upstream `appcontext.AppContextStatusEnum`); this,
/// not a roll-up of resource states, is what upstream serves as `deployedStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppContextStatus {
    Created,
    Instantiating,
    Instantiated,
    InstantiateFailed,
    Terminating,
    Terminated,
    TerminateFailed,
    Updating,
    Updated,
    /// Upstream's wire value really is misspelt `UpdatedFailed`.
    #[serde(rename = "UpdatedFailed")]
    UpdateFailed,
}

/// Kubernetes group/version/kind, serialized as upstream's `schema.GroupVersionKind` (which has
/// no JSON tags, hence the capitalized keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gvk {
    #[serde(rename = "Group")]
    pub group: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Kind")]
    pub kind: String,
}

/// One resource on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceInput {
    pub name: String,
    pub gvk: Gvk,
    /// The synchronizer's status; `None` for a resource only observed on the cluster (a pod
    /// created by a deployment, say), which upstream shows in ready queries only.
    pub deployed: Option<DeployedStatus>,
    /// The cluster's report; `None` while the cluster has not reported it (`NotPresent`).
    pub ready: Option<ReadyStatus>,
    /// The body shown by `output=detail` (the cluster's copy for ready queries upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// One cluster an app is placed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInput {
    pub provider: String,
    pub cluster: String,
    pub connectivity: Connectivity,
    pub resources: Vec<ResourceInput>,
}

impl ClusterInput {
    /// The `provider+cluster` form upstream's `cluster=` filter compares against.
    pub fn qualified_name(&self) -> String {
        format!("{}+{}", self.provider, self.cluster)
    }
}

/// One app of the composite app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInput {
    pub name: String,
    pub clusters: Vec<ClusterInput>,
}

/// The app context selected by the query (the latest one unless `instance=` names another).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextInput {
    pub context_id: String,
    pub status: AppContextStatus,
    pub apps: Vec<AppInput>,
}

/// Everything `render` needs for one deployment intent group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusInput {
    /// The group's `spec.id` (upstream `DeploymentStatus.DigId`; emitted even when empty).
    pub dig_id: String,
    pub project: String,
    pub composite_app: String,
    pub composite_app_version: String,
    pub composite_profile: String,
    /// The deployment intent group's name.
    pub name: String,
    /// Lifecycle state and action history; rendered as upstream's `states.actions`.
    pub lifecycle: DigStatus,
    /// The app context id of each entry of `lifecycle.actions`, by index (upstream
    /// `ActionEntry.ContextId`, served as `instance`; empty for Created/Approved).
    pub action_instances: Vec<String>,
    /// The context that tracks status from instantiation to termination (`statusctxid`).
    pub status_context_id: String,
    /// `None` before the first instantiation: then only the identity and `states` are served.
    pub context: Option<ContextInput>,
}

impl StatusInput {
    /// The app context the caller must load for `instance` (upstream: it must appear in the
    /// action history; without it, the most recent action's context). `Ok(None)` means no
    /// context exists yet.
    pub fn context_to_load<'a>(
        &'a self,
        instance: Option<&'a str>,
    ) -> Result<Option<&'a str>, StatusQueryError> {
        match instance {
            Some(id) if self.action_instances.iter().any(|known| known == id) => Ok(Some(id)),
            Some(id) => Err(StatusQueryError::UnknownInstance(id.to_owned())),
            None => Ok(self
                .action_instances
                .last()
                .map(String::as_str)
                .filter(|id| !id.is_empty())),
        }
    }
}
