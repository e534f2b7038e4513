//! Lifecycle endpoints of deployment intent groups and logical clouds.
//!
//! The state machine lives in `emco_core::lifecycle`; this module loads and stores the state next
//! to the resource. Deploying (instantiate, terminate, update, rollback, migrate) needs the
//! resource synchronizer, which arrives with the deploy issue (#4); until then those actions
//! answer 501 after the state checks, so a caller learns both what is wrong and what is missing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{Action, DigStatus};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::resources::{PathParams, key_from_path};

fn dig_key(params: &[(String, String)]) -> ApiResult<ResourceKey> {
    let kind = emco_core::kinds::rest_kind("deploymentIntentGroup")
        .ok_or_else(|| ApiError::Internal("deploymentIntentGroup kind missing".into()))?;
    key_from_path(kind, params, &[])
}

async fn load(state: &AppState, key: &ResourceKey) -> ApiResult<(DigStatus, u64)> {
    // The group itself must exist: 404 otherwise.
    state.repo.get(key).await?;
    match state.repo.get_state(key).await? {
        Some((v, rev)) => {
            let status: DigStatus = serde_json::from_value(v).map_err(|e| {
                ApiError::Internal(format!("stored state of {key} is corrupt: {e}"))
            })?;
            Ok((status, rev))
        }
        None => Ok((DigStatus::default(), 0)),
    }
}

/// Applies `action` to the group's state machine and stores the result; retries on races.
async fn transition(state: &AppState, key: &ResourceKey, action: Action) -> ApiResult<DigStatus> {
    for _ in 0..8 {
        let (mut status, rev) = load(state, key).await?;
        status
            .apply(action, now())
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
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
    transition(&state, &key, Action::Approve).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Instantiate, terminate, stop, update, rollback, migrate: state checks now, deploying with #4.
pub async fn deploy_action(
    state: AppState,
    params: Vec<(String, String)>,
    action: Action,
) -> ApiResult<Response> {
    let key = dig_key(&params)?;
    let (status, _) = load(&state, &key).await?;
    let mut probe = status.clone();
    probe
        .apply(action, String::new())
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    Err(ApiError::NotImplemented(format!(
        "{action:?} of {key}: deploying to clusters is not available in this build yet (EMCO-rs issue #4); the state ({:?}) is unchanged",
        status.state
    )))
}

pub async fn status(
    State(state): State<AppState>,
    Path(params): PathParams,
) -> ApiResult<Response> {
    let key = dig_key(&params)?;
    let dig = state.repo.get(&key).await?;
    let (status, _) = load(&state, &key).await?;
    let value = emco_core::lifecycle::status_document(&key, &dig.data, &status);
    Ok(axum::Json(value).into_response())
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
