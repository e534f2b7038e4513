//! Lifecycle endpoints of deployment intent groups and logical clouds.
//!
//! The state machine lives in `emco_core::lifecycle`; this module loads and stores the state next
//! to the resource. Instantiate, terminate, stop, update, rollback, migrate and status go to
//! `emco_deploy::Deployer`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{Action, CloudAction, CloudStatus, DigStatus};
use emco_store::repository::BlobChange;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::resources::{PathParams, key_from_path};

fn key_of(kind: &str, params: &[(String, String)]) -> ApiResult<ResourceKey> {
    let rest = emco_core::kinds::rest_kind(kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} kind missing")))?;
    key_from_path(rest, params, &[])
}

fn dig_key(params: &[(String, String)]) -> ApiResult<ResourceKey> {
    key_of("deploymentIntentGroup", params)
}

/// The state document stored beside `key` (the resource itself must exist: 404 otherwise).
async fn load<S: DeserializeOwned + Default>(
    state: &AppState,
    key: &ResourceKey,
) -> ApiResult<(S, u64)> {
    state.repo.get(key).await?;
    match state.repo.get_state(key).await? {
        Some((v, rev)) => {
            let status: S = serde_json::from_value(v).map_err(|e| {
                ApiError::Internal(format!("stored state of {key} is corrupt: {e}"))
            })?;
            Ok((status, rev))
        }
        None => Ok((S::default(), 0)),
    }
}

/// Moves the state beside `key` with `step` (a refusal is a 409) and stores it; retries on races.
async fn transition<S, E>(
    state: &AppState,
    key: &ResourceKey,
    step: impl Fn(&mut S) -> Result<(), E>,
) -> ApiResult<S>
where
    S: DeserializeOwned + Serialize + Default,
    E: std::fmt::Display,
{
    for _ in 0..8 {
        let (mut status, rev) = load::<S>(state, key).await?;
        step(&mut status).map_err(|e| ApiError::Conflict(e.to_string()))?;
        let doc = serde_json::to_value(&status).map_err(|e| ApiError::Internal(e.to_string()))?;
        if state.repo.put_state(key, &doc, rev).await? {
            return Ok(status);
        }
    }
    Err(ApiError::Conflict(format!(
        "{key} is being changed concurrently; try again"
    )))
}

pub async fn approve(
    State(state): State<AppState>,
    Path(params): PathParams,
) -> ApiResult<Response> {
    let key = dig_key(&params)?;
    transition(&state, &key, |s: &mut DigStatus| {
        s.apply(Action::Approve, now())
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

fn deployer(state: &AppState) -> ApiResult<&emco_deploy::Deployer> {
    state.deployer.as_deref().ok_or_else(|| {
        ApiError::Unavailable("this hub runs without a deployer (no resource synchronizer)".into())
    })
}

/// Instantiate, terminate, stop, update, rollback and migrate go to the deployer. `body` is
/// read by rollback and migrate (as upstream: empty is a 400, not JSON a 422, a bad field a
/// 400 naming it). Update answers the new revision number, as upstream.
pub async fn deploy_action(
    state: AppState,
    params: Vec<(String, String)>,
    action: Action,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    let key = dig_key(&params)?;
    let request = match action {
        Action::Rollback | Action::Migrate => Some(crate::body::decode(&headers, body).await?.json),
        _ => None,
    };
    // The state rules first, so a refused action is a 409 whatever this hub can deploy.
    let (status, _) = load::<DigStatus>(&state, &key).await?;
    status
        .next_state(action)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let bad = |e: emco_core::validate::ValidationError| ApiError::BadRequest(e.to_string());
    match action {
        Action::Instantiate => {
            deployer(&state)?.instantiate(&key).await?;
        }
        Action::Terminate => deployer(&state)?.terminate(&key).await?,
        Action::Stop => deployer(&state)?.stop(&key).await?,
        Action::Approve => {
            return Err(ApiError::Internal(
                "approve is routed to its own handler".into(),
            ));
        }
        Action::Update => {
            let updated = deployer(&state)?.update(&key).await?;
            return Ok((StatusCode::ACCEPTED, axum::Json(updated.revision)).into_response());
        }
        Action::Rollback => {
            let revision = emco_core::lifecycle::rollback_revision(
                request.as_ref().unwrap_or(&serde_json::Value::Null),
            )
            .map_err(bad)?;
            deployer(&state)?.rollback(&key, revision).await?;
        }
        Action::Migrate => {
            let (version, group) = emco_core::lifecycle::migrate_target(
                request.as_ref().unwrap_or(&serde_json::Value::Null),
            )
            .map_err(bad)?;
            deployer(&state)?.migrate(&key, &version, &group).await?;
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET .../status` with upstream's query parameters.
pub async fn status(
    State(state): State<AppState>,
    Path(params): PathParams,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let key = dig_key(&params)?;
    let Some(deployer) = state.deployer.as_deref() else {
        let dig = state.repo.get(&key).await?;
        let (status, _) = load::<DigStatus>(&state, &key).await?;
        let value = emco_core::lifecycle::status_document(&key, &dig.data, &status);
        return Ok(axum::Json(value).into_response());
    };
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in query {
        params.entry(name).or_default().push(value);
    }
    let value = deployer.status(&key, &params).await?;
    Ok(axum::Json(value).into_response())
}

/// The orchestrator's own parts of a group: changing one after approval revokes it. Action
/// controllers' intents (generic K8s, network, traffic, ...) do not: upstream keeps them in
/// other services, and its examples add them to approved groups (`test-gac`).
const APPROVED_PARTS: &[&str] = &[
    "deploymentIntentGroup",
    "groupIntent",
    "genericPlacementIntent",
    "genericAppPlacementIntent",
];

/// After a deployment intent group or its placement intents changed: an approved group goes
/// back to Created (it must be approved again).
pub async fn revoke_approval(state: &AppState, changed: &ResourceKey) -> ApiResult<()> {
    if changed.get("deploymentIntentGroup").is_none()
        || !APPROVED_PARTS.contains(&changed.kind.as_str())
    {
        return Ok(());
    }
    let elements: Vec<(String, String)> = changed
        .elements
        .iter()
        .take_while(|(name, _)| name != "deploymentIntentGroup")
        .chain(
            changed
                .elements
                .iter()
                .filter(|(name, _)| name == "deploymentIntentGroup"),
        )
        .cloned()
        .collect();
    let key = ResourceKey::new("deploymentIntentGroup", elements);
    if !state.repo.exists(&key).await? {
        return Ok(());
    }
    for _ in 0..8 {
        let (mut status, rev) = load::<DigStatus>(state, &key).await?;
        if !status.revoke_approval(now()) {
            return Ok(());
        }
        let doc = serde_json::to_value(&status).map_err(|e| ApiError::Internal(e.to_string()))?;
        if state.repo.put_state(&key, &doc, rev).await? {
            return Ok(());
        }
    }
    Err(ApiError::Conflict(format!(
        "{key} is being changed concurrently; try again"
    )))
}

/// `POST .../logical-clouds/{lc}/instantiate|terminate`. Admin (level-0) clouds create nothing
/// on the clusters; instantiating gives the cloud the `default` namespace when it has none (as
/// upstream) and needs at least one cluster reference. Standard and privileged clouds go to the
/// deployer, which puts their namespace, RBAC, quotas and user certificate on the clusters.
pub async fn cloud_action(
    state: AppState,
    params: Vec<(String, String)>,
    action: CloudAction,
) -> ApiResult<Response> {
    let key = key_of("logicalCloud", &params)?;
    let cloud = state.repo.get(&key).await?;
    if !emco_core::lifecycle::is_admin_cloud(&cloud.data) {
        match action {
            CloudAction::Instantiate => {
                deployer(&state)?.instantiate_cloud(&key).await?;
            }
            CloudAction::Terminate => {
                refuse_while_deployed_to(&state, &key).await?;
                deployer(&state)?.terminate_cloud(&key).await?;
            }
        }
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    if action == CloudAction::Instantiate {
        let parent = ResourceKey::new("parent", key.elements.clone());
        if state
            .repo
            .list("clusterReference", &parent)
            .await?
            .is_empty()
        {
            return Err(ApiError::BadRequest(format!(
                "{key} has no cluster references: add clusters to it before instantiating"
            )));
        }
        let (current, _) = load::<CloudStatus>(&state, &key).await?;
        // Refuse before touching the document, so a refused call changes nothing.
        current
            .clone()
            .apply(action, String::new())
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        if let Some(updated) = emco_core::lifecycle::admin_cloud_on_instantiate(&cloud.data) {
            state.repo.upsert(&key, updated, BlobChange::Keep).await?;
        }
    }
    if action == CloudAction::Terminate {
        refuse_while_deployed_to(&state, &key).await?;
    }
    transition(&state, &key, |s: &mut CloudStatus| s.apply(action, now())).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A logical cloud cannot be terminated under a deployment intent group deployed to it (upstream
/// does not check; its groups would then point at a cloud that is gone).
async fn refuse_while_deployed_to(state: &AppState, cloud: &ResourceKey) -> ApiResult<()> {
    let prefix = cloud.referrers_prefix();
    let referrers = state
        .repo
        .store()
        .list_keys(&prefix, None)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    for entry in referrers {
        let Some(values) = entry
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_prefix("deploymentIntentGroup/"))
        else {
            continue;
        };
        let names = [
            "project",
            "compositeApp",
            "compositeAppVersion",
            "deploymentIntentGroup",
        ];
        let parts: Vec<&str> = values.split('/').collect();
        if parts.len() != names.len() {
            continue;
        }
        let dig = ResourceKey::new(
            "deploymentIntentGroup",
            names
                .iter()
                .zip(parts)
                .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
                .collect(),
        );
        let status: DigStatus = match state.repo.get_state(&dig).await? {
            Some((value, _)) => serde_json::from_value(value).unwrap_or_default(),
            None => continue,
        };
        if status.state.is_deployed() {
            return Err(ApiError::Conflict(format!(
                "{cloud} is used by {dig}, which is {:?}; terminate it first",
                status.state
            )));
        }
    }
    Ok(())
}

/// `GET .../logical-clouds/{lc}/status`: upstream's status format (the queries of a group's
/// status), headed by `project` and `logicalCloud`.
pub async fn cloud_status(
    State(state): State<AppState>,
    Path(params): PathParams,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let key = key_of("logicalCloud", &params)?;
    let mut query: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in pairs {
        query.entry(name).or_default().push(value);
    }
    match state.deployer.as_deref() {
        Some(deployer) => {
            Ok(axum::Json(deployer.cloud_status(&key, &query).await?).into_response())
        }
        None => {
            let (status, _) = load::<CloudStatus>(&state, &key).await?;
            Ok(axum::Json(json!({
                "project": key.get("project"),
                "logicalCloud": key.name(),
                "states": { "actions": status.actions },
            }))
            .into_response())
        }
    }
}

/// `POST .../logical-clouds/{lc}/update`: a standard or privileged cloud's clusters are brought
/// in line with its references, permissions and quotas (clusters added get everything, removed
/// ones lose it). An admin cloud creates nothing on its clusters: its update only checks it is
/// instantiated and still has clusters.
pub async fn cloud_update(
    State(state): State<AppState>,
    Path(params): PathParams,
) -> ApiResult<Response> {
    let key = key_of("logicalCloud", &params)?;
    let cloud = state.repo.get(&key).await?;
    if emco_core::lifecycle::is_admin_cloud(&cloud.data) {
        let (status, _) = load::<CloudStatus>(&state, &key).await?;
        if status.state != emco_core::lifecycle::CloudState::Instantiated {
            return Err(ApiError::Conflict(format!(
                "{key} is not instantiated: instantiate it instead of updating it"
            )));
        }
        let parent = ResourceKey::new("parent", key.elements.clone());
        if state
            .repo
            .list("clusterReference", &parent)
            .await?
            .is_empty()
        {
            return Err(ApiError::BadRequest(format!(
                "{key} has no cluster references: add clusters to it first"
            )));
        }
    } else {
        deployer(&state)?.update_cloud(&key).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST .../logical-clouds/{lc}/stop`: ends the retries of a standard or privileged cloud's
/// running instantiate, update or terminate (an admin cloud never has one: 409).
pub async fn cloud_stop(
    State(state): State<AppState>,
    Path(params): PathParams,
) -> ApiResult<Response> {
    let key = key_of("logicalCloud", &params)?;
    let cloud = state.repo.get(&key).await?;
    if emco_core::lifecycle::is_admin_cloud(&cloud.data) {
        return Err(ApiError::Conflict(format!(
            "{key} is an admin cloud: nothing of it runs on the clusters to stop"
        )));
    }
    deployer(&state)?.stop_cloud(&key).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET .../logical-clouds/{lc}/cluster-references/{ref}/kubeconfig`: the cloud user's
/// kubeconfig (YAML) for that cluster.
pub async fn cloud_kubeconfig(
    State(state): State<AppState>,
    Path(params): PathParams,
) -> ApiResult<Response> {
    let reference = params
        .iter()
        .find(|(name, _)| name == "clusterReference")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let cloud_params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(name, _)| name != "clusterReference")
        .collect();
    let key = key_of("logicalCloud", &cloud_params)?;
    let kubeconfig = deployer(&state)?.cloud_kubeconfig(&key, &reference).await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        kubeconfig,
    )
        .into_response())
}

/// Actions on a resource whose implementation has not landed yet: 404 if the resource is missing,
/// otherwise 501 naming what is missing (`what`).
pub async fn unavailable_action(
    state: AppState,
    kind: &'static str,
    params: Vec<(String, String)>,
    action: &'static str,
    what: &'static str,
) -> ApiResult<Response> {
    let kind = emco_core::kinds::rest_kind(kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} kind missing")))?;
    let key = key_from_path(kind, &params, &[])?;
    state.repo.get(&key).await?;
    Err(ApiError::NotImplemented(format!(
        "{action} of {key}: {what} is not available in this build yet"
    )))
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    emco_core::lifecycle::format_rfc3339(secs)
}
