//! What the deploy path needs from the resource synchronizer, as a trait so the orchestration
//! is testable on its own and the synchronizer stays a separate crate.

use async_trait::async_trait;
use emco_core::status::{
    AppContextStatus, AppInput, ClusterInput, DeployedStatus, ResourceInput, StatusQuery, Tally,
};
use emco_store::Op;

use crate::DeployError;

/// The synchronizer's view of one context's run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub status: AppContextStatus,
    /// Per app and cluster what was recorded so far (apps, clusters or objects not yet touched
    /// may be missing: status fills them in as pending from the context).
    pub apps: Vec<AppInput>,
}

/// What a status summary needs of a context's run (see [`Engine::tally`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTally {
    pub status: AppContextStatus,
    /// Every app of the context.
    pub apps: Vec<String>,
    /// The first `cluster=` filter naming no cluster of the context (upstream answers 404).
    pub unknown_cluster: Option<String>,
    /// The query's counts over the apps and clusters its filters select.
    pub tally: Tally,
}

#[async_trait]
pub trait Engine: Send + Sync {
    /// Writes to add to the transaction that instantiates (the durable work order).
    fn instantiate_ops(&self, context: &str) -> Vec<Op>;
    /// Writes to add to the transaction that updates (or rolls back, or migrates) the
    /// deployment of context `from` to context `to`, objects labelled with `label_context`.
    fn update_ops(&self, from: &str, to: &str, label_context: &str, rollback: bool) -> Vec<Op>;
    /// Writes to add to the transaction that terminates.
    fn terminate_ops(&self, context: &str, label_context: &str) -> Vec<Op>;
    /// Writes that remove the context's run records.
    fn forget_ops(&self, context: &str) -> Vec<Op>;
    /// Starts (or restarts) the recorded work of a context; returns at once.
    fn kick(&self, context: &str);
    /// Ends the retries of a running context; `false` when nothing was running.
    async fn stop(&self, context: &str) -> Result<bool, DeployError>;
    /// The run's status and per-object facts, `None` when the synchronizer has no record of the
    /// context.
    async fn report(&self, context: &str) -> Result<Option<RunReport>, DeployError>;
    /// Reads one object from a cluster as it is now; `None` when it does not exist.
    async fn read_object(
        &self,
        cluster: &emco_core::appcontext::ClusterId,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, DeployError> {
        let _ = (api_version, kind, namespace, name);
        Err(DeployError::Internal(format!(
            "this engine cannot read objects from cluster {cluster}"
        )))
    }
    /// Just the run's status (cheap: no per-object facts).
    async fn run_status(&self, context: &str) -> Result<Option<AppContextStatus>, DeployError>;
    /// The counts of a summary query ([`StatusQuery::is_plain_summary`]), `None` when the
    /// synchronizer has no record of the context. By default counted over [`Engine::report`];
    /// an engine that can count without building the report should.
    async fn tally(
        &self,
        context: &str,
        query: &StatusQuery,
    ) -> Result<Option<RunTally>, DeployError> {
        Ok(self.report(context).await?.map(|report| {
            let tally = Tally::of_apps(query, &report.apps);
            RunTally {
                status: report.status,
                apps: report.apps.iter().map(|app| app.name.clone()).collect(),
                unknown_cluster: query
                    .clusters
                    .iter()
                    .find(|wanted| {
                        !report
                            .apps
                            .iter()
                            .flat_map(|app| &app.clusters)
                            .any(|cluster| cluster.qualified_name() == **wanted)
                    })
                    .cloned(),
                tally,
            }
        }))
    }
}

/// The real resource synchronizer behind [`Engine`].
pub struct SyncEngine(pub std::sync::Arc<emco_rsync::engine::Synchronizer>);

fn sync_error(e: emco_rsync::engine::SyncError) -> DeployError {
    DeployError::Internal(format!("resource synchronizer: {e}"))
}

#[async_trait]
impl Engine for SyncEngine {
    fn instantiate_ops(&self, context: &str) -> Vec<Op> {
        emco_rsync::engine::Synchronizer::instantiate_ops(context)
    }

    fn update_ops(&self, from: &str, to: &str, label_context: &str, rollback: bool) -> Vec<Op> {
        emco_rsync::engine::Synchronizer::update_ops(from, to, label_context, rollback)
    }

    fn terminate_ops(&self, context: &str, label_context: &str) -> Vec<Op> {
        emco_rsync::engine::Synchronizer::terminate_ops(context, label_context)
    }

    fn forget_ops(&self, context: &str) -> Vec<Op> {
        emco_rsync::engine::Synchronizer::forget_ops(context)
    }

    fn kick(&self, context: &str) {
        self.0.kick(context);
    }

    async fn stop(&self, context: &str) -> Result<bool, DeployError> {
        self.0.stop(context).await.map_err(sync_error)
    }

    async fn read_object(
        &self,
        cluster: &emco_core::appcontext::ClusterId,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, DeployError> {
        self.0
            .read_object(cluster, api_version, kind, namespace, name)
            .await
            .map_err(|e| DeployError::Conflict(format!("reading from cluster {cluster}: {e}")))
    }

    async fn run_status(&self, context: &str) -> Result<Option<AppContextStatus>, DeployError> {
        Ok(self
            .0
            .run_status(context)
            .await
            .map_err(sync_error)?
            .map(|run| run.status))
    }

    async fn tally(
        &self,
        context: &str,
        query: &StatusQuery,
    ) -> Result<Option<RunTally>, DeployError> {
        Ok(self
            .0
            .context_tally(context, query)
            .await
            .map_err(sync_error)?
            .map(|counted| RunTally {
                status: counted.status,
                apps: counted.apps,
                unknown_cluster: counted.unknown_cluster,
                tally: counted.tally,
            }))
    }

    async fn report(&self, context: &str) -> Result<Option<RunReport>, DeployError> {
        Ok(self
            .0
            .context_status(context)
            .await
            .map_err(sync_error)?
            .map(|report| RunReport {
                status: report.status,
                apps: with_messages(report),
            }))
    }
}

/// The report's facts, with each failure's reason (the object's own, else the app's on that
/// cluster) and what the last update did to it (`lastAction`: `created` or `updated`) as the
/// resource's `detail`, so `output=detail` says why and what changed.
fn with_messages(report: emco_rsync::engine::ContextReport) -> Vec<AppInput> {
    report
        .apps
        .into_iter()
        .map(|app| AppInput {
            name: app.name,
            clusters: app
                .clusters
                .into_iter()
                .map(|cluster| {
                    let app_error = cluster.error;
                    ClusterInput {
                        provider: cluster.cluster.provider,
                        cluster: cluster.cluster.cluster,
                        connectivity: cluster.connectivity,
                        resources: cluster
                            .resources
                            .into_iter()
                            .map(|resource| {
                                let message = resource.message.or_else(|| {
                                    (resource.deployed != DeployedStatus::Applied)
                                        .then(|| app_error.clone())
                                        .flatten()
                                });
                                let mut detail = serde_json::Map::new();
                                if let Some(message) = message {
                                    detail.insert("message".into(), message.into());
                                }
                                if let Some(action) = resource.last_action {
                                    detail.insert("lastAction".into(), serde_json::json!(action));
                                }
                                ResourceInput {
                                    name: resource.name,
                                    gvk: resource.gvk,
                                    deployed: Some(resource.deployed),
                                    ready: resource.ready,
                                    detail: (!detail.is_empty())
                                        .then_some(serde_json::Value::Object(detail)),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect()
}
