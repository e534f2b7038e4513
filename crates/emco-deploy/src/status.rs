//! Status queries: the group's lifecycle, the selected context (as stored) and the
//! synchronizer's report, joined and rendered in upstream's format.

use std::collections::HashMap;

use emco_core::appcontext::AppContext;
use emco_core::key::ResourceKey;
use emco_core::lifecycle::DigState;
use emco_core::status::{
    self, AppContextStatus, AppInput, ClusterInput, Connectivity, ContextInput, DeployedStatus,
    Gvk, ResourceInput, StatusInput, StatusQuery, StatusQueryError,
};
use serde_json::Value;

use crate::{DeployError, Deployer};

fn query_error(e: StatusQueryError) -> DeployError {
    match e {
        StatusQueryError::UnknownApp { .. } | StatusQueryError::UnknownInstance(_) => {
            DeployError::NotFound(e.to_string())
        }
        other => DeployError::BadRequest(other.to_string()),
    }
}

pub(crate) async fn status(
    deployer: &Deployer,
    key: &ResourceKey,
    params: &HashMap<String, Vec<String>>,
) -> Result<Value, DeployError> {
    let query = StatusQuery::parse(params).map_err(query_error)?;
    let dig = deployer.repo.get(key).await?.data;
    let lifecycle = deployer.state(key).await?;
    let mut input = StatusInput {
        dig_id: dig
            .pointer("/spec/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        project: key.get("project").unwrap_or_default().to_owned(),
        composite_app: key.get("compositeApp").unwrap_or_default().to_owned(),
        composite_app_version: key
            .get("compositeAppVersion")
            .unwrap_or_default()
            .to_owned(),
        composite_profile: dig
            .pointer("/spec/compositeProfile")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        name: key.name().to_owned(),
        action_instances: lifecycle
            .actions
            .iter()
            .map(|a| a.instance.clone())
            .collect(),
        status_context_id: lifecycle.status_context_id.clone(),
        lifecycle,
        context: None,
    };
    let selected = input
        .context_to_load(query.instance.as_deref())
        .map_err(query_error)?
        .map(str::to_owned)
        // A group migrated away deploys nothing: its last context went to the target.
        .filter(|_| query.instance.is_some() || input.lifecycle.state != DigState::Updated);
    if let Some(id) = &selected
        && query.is_plain_summary()
        && let Some(counted) = deployer.engine.tally(id, &query).await?
    {
        // Counted from the synchronizer's records: no per-resource report to build.
        if let Some(wanted) = &counted.unknown_cluster {
            return Err(unknown_cluster(wanted));
        }
        let apps = counted.apps.iter().map(String::as_str);
        return status::render_summary(&query, &input, counted.status, apps, &counted.tally)
            .map_err(query_error);
    }
    if let Some(id) = selected {
        // The synchronizer's report covers every object of the context; before it has a
        // record of the context (never, once instantiate returned) everything is pending.
        input.context = match deployer.engine.report(&id).await? {
            Some(report) => Some(ContextInput {
                context_id: id,
                status: report.status,
                apps: report.apps,
            }),
            None => deployer
                .load_context(&id)
                .await?
                .map(|context| pending(&context)),
        };
    }
    if let Some(context) = &input.context {
        check_filters(&query, context)?;
    }
    status::render(&query, &input).map_err(query_error)
}

/// Upstream answers 404 when a `cluster=` or `resource=` filter matches nothing in the context.
fn check_filters(query: &StatusQuery, context: &ContextInput) -> Result<(), DeployError> {
    for wanted in &query.clusters {
        let known = context
            .apps
            .iter()
            .flat_map(|a| &a.clusters)
            .any(|c| c.qualified_name() == *wanted);
        if !known {
            return Err(unknown_cluster(wanted));
        }
    }
    for wanted in &query.resources {
        let known = context
            .apps
            .iter()
            .flat_map(|a| &a.clusters)
            .flat_map(|c| &c.resources)
            .any(|r| r.name == *wanted);
        if !known {
            return Err(DeployError::NotFound(format!(
                "resource {wanted:?} is not part of this deployment intent group"
            )));
        }
    }
    Ok(())
}

fn unknown_cluster(wanted: &str) -> DeployError {
    DeployError::NotFound(format!(
        "cluster {wanted:?} has no app of this deployment intent group"
    ))
}

fn gvk(api_version: &str, kind: &str) -> Gvk {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    Gvk {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
    }
}

/// Every object of the context as pending, on clusters not contacted yet.
fn pending(context: &AppContext) -> ContextInput {
    let apps = context
        .apps
        .iter()
        .map(|app| AppInput {
            name: app.name.clone(),
            clusters: app
                .clusters
                .keys()
                .map(|cluster| ClusterInput {
                    provider: cluster.provider.clone(),
                    cluster: cluster.cluster.clone(),
                    connectivity: Connectivity::Unknown,
                    resources: app
                        .objects_for(cluster)
                        .unwrap_or_default()
                        .iter()
                        .map(|object| ResourceInput {
                            name: object.name.clone(),
                            gvk: gvk(&object.api_version, &object.kind),
                            deployed: Some(DeployedStatus::Pending),
                            ready: None,
                            detail: None,
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    ContextInput {
        context_id: context.id.clone(),
        status: AppContextStatus::Instantiating,
        apps,
    }
}
