//! The status of a context as the synchronizer's records tell it, for status queries.

use std::collections::HashMap;
use std::sync::Arc;

use emco_core::appcontext::{AppContext, ClusterId};
use emco_core::status::{self, AppContextStatus, Connectivity, DeployedStatus, Gvk, ReadyStatus};
use serde::Serialize;

use super::records::{
    AppClusterRecord, AppClusterState, ClusterRecord, HookEvent, LastAction, OpKind,
};

/// A context's run and, per app and cluster, what was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextReport {
    pub context_id: String,
    /// The operation last asked for.
    pub op: OpKind,
    pub status: AppContextStatus,
    /// Why the run failed (what a terminate left behind, a context that cannot be loaded).
    pub message: Option<String>,
    /// `stop` was asked for this operation.
    pub stop_requested: bool,
    /// An instantiate's readiness tracking finished: every applied object was seen ready.
    pub all_ready: bool,
    /// In the context's app order.
    pub apps: Vec<AppReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppReport {
    pub name: String,
    /// In cluster order.
    pub clusters: Vec<ClusterReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub cluster: ClusterId,
    pub connectivity: Connectivity,
    /// Where the app stands on the cluster in the operation that last touched it.
    pub state: AppClusterState,
    /// Why the app failed there as a whole (kubeconfig, hook, dependency).
    pub error: Option<String>,
    /// Unix milliseconds when every object was applied / first seen ready.
    pub applied_ms: Option<u64>,
    pub ready_ms: Option<u64>,
    /// In install order.
    pub resources: Vec<ResourceReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceReport {
    pub name: String,
    pub namespace: Option<String>,
    pub gvk: Gvk,
    pub deployed: DeployedStatus,
    pub ready: Option<ReadyStatus>,
    /// Why it failed or is not ready.
    pub message: Option<String>,
    /// For hooks: the events at which the hook completed in the current operation.
    pub hook: Option<Vec<HookEvent>>,
    /// What the last update did to the object (`None`: created by the instantiate).
    pub last_action: Option<LastAction>,
}

impl ContextReport {
    pub fn app(&self, name: &str) -> Option<&AppReport> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// The per-app facts of `emco_core::status` (its `ContextInput::apps`).
    pub fn app_inputs(&self) -> Vec<status::AppInput> {
        self.apps
            .iter()
            .map(|app| status::AppInput {
                name: app.name.clone(),
                clusters: app
                    .clusters
                    .iter()
                    .map(|cluster| status::ClusterInput {
                        provider: cluster.cluster.provider.clone(),
                        cluster: cluster.cluster.cluster.clone(),
                        connectivity: cluster.connectivity,
                        resources: cluster
                            .resources
                            .iter()
                            .map(|resource| status::ResourceInput {
                                name: resource.name.clone(),
                                gvk: resource.gvk.clone(),
                                deployed: Some(resource.deployed),
                                ready: resource.ready,
                                detail: None,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// `emco_core::status::ContextInput` of this context.
    pub fn context_input(&self) -> status::ContextInput {
        status::ContextInput {
            context_id: self.context_id.clone(),
            status: self.status,
            apps: self.app_inputs(),
        }
    }
}

impl AppReport {
    pub fn cluster(&self, cluster: &ClusterId) -> Option<&ClusterReport> {
        self.clusters
            .iter()
            .find(|report| &report.cluster == cluster)
    }
}

impl ClusterReport {
    pub fn resource(&self, kind: &str, name: &str) -> Option<&ResourceReport> {
        self.resources
            .iter()
            .find(|resource| resource.gvk.kind == kind && resource.name == name)
    }
}

fn gvk(api_version: &str, kind: &str) -> Gvk {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Gvk {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
    }
}

/// What [`build`] reads besides the context.
pub struct Facts {
    pub op: OpKind,
    pub status: AppContextStatus,
    pub message: Option<String>,
    pub stop_requested: bool,
    pub all_ready: bool,
    /// App-cluster records by `(app, cluster)`.
    pub records: HashMap<(String, ClusterId), Arc<AppClusterRecord>>,
    /// Cluster connectivity records.
    pub clusters: HashMap<ClusterId, ClusterRecord>,
}

/// The report of `context` from the synchronizer's records.
pub fn build(context: &AppContext, facts: Facts) -> ContextReport {
    let none = AppClusterRecord::default();
    let apps = context
        .apps
        .iter()
        .map(|app| AppReport {
            name: app.name.clone(),
            clusters: app
                .clusters
                .keys()
                .map(|cluster| {
                    let objects = app.objects_for(cluster).unwrap_or_default();
                    let record = facts
                        .records
                        .get(&(app.name.clone(), cluster.clone()))
                        .map(Arc::as_ref)
                        .filter(|record| record.objects.len() == objects.len())
                        .unwrap_or(&none);
                    let known = facts.clusters.get(cluster);
                    let connectivity =
                        known.map_or(record.connectivity, |known| known.connectivity);
                    // A cluster being retried says why (what its last call met).
                    let retrying = known
                        .filter(|known| known.connectivity == Connectivity::Retrying)
                        .and_then(|known| known.message.clone());
                    let resources = objects
                        .iter()
                        .enumerate()
                        .map(|(index, object)| {
                            let status = record.objects.get(index).cloned().unwrap_or_default();
                            let hook = object.phase.hook().map(|_| {
                                record
                                    .hooks_done
                                    .iter()
                                    .filter(|run| run.index as usize == index)
                                    .map(|run| run.event)
                                    .collect()
                            });
                            ResourceReport {
                                name: object.name.clone(),
                                namespace: object.namespace.clone(),
                                gvk: gvk(&object.api_version, &object.kind),
                                deployed: status.deployed,
                                ready: status.ready,
                                message: status.message,
                                hook,
                                last_action: status.action,
                            }
                        })
                        .collect();
                    ClusterReport {
                        cluster: cluster.clone(),
                        connectivity,
                        state: record.state,
                        error: record.error.clone().or(retrying),
                        applied_ms: record.applied_ms,
                        ready_ms: record.ready_ms,
                        resources,
                    }
                })
                .collect(),
        })
        .collect();
    ContextReport {
        context_id: context.id.clone(),
        op: facts.op,
        status: facts.status,
        message: facts.message,
        stop_requested: facts.stop_requested,
        all_ready: facts.all_ready,
        apps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(gvk("apps/v1", "Deployment").group, "apps");
        let core = gvk("v1", "ConfigMap");
        assert_eq!((core.group.as_str(), core.version.as_str()), ("", "v1"));
    }
}
