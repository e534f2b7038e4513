//! Run-time registration of controller schemas, and the generic resource API through which
//! registered kinds are stored with the same integrity guarantees as the built-in ones.
//!
//! - `POST /v2/schema/segments` (a segment in upstream's ref-schema shape, as JSON) registers;
//!   `GET /v2/schema/segments[/{name}]` reads; `DELETE /v2/schema/segments/{name}` removes a
//!   segment none of whose resources exist.
//! - `/v2/resources/{kind}/{v1}/.../{vn}`: POST on the parent's values creates (name from
//!   `metadata.name`), GET on the parent's values lists, GET/PUT/DELETE on the full values act on
//!   one resource. Only kinds from registered (non built-in) segments are served here; built-in
//!   kinds have their upstream routes.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use emco_core::key::ResourceKey;
use emco_core::kinds::BASE_SEGMENT;
use emco_core::refschema::SchemaSegment;
use emco_store::repository::{BlobChange, RepoError, Upserted};
use serde_json::Value;

use crate::AppState;
use crate::body;
use crate::error::{ApiError, ApiResult};

pub async fn register(State(state): State<AppState>, bytes: Bytes) -> ApiResult<Response> {
    let segment: SchemaSegment = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Unprocessable(format!("body is not a schema segment: {e}")))?;
    if segment.name.is_empty() {
        return Err(ApiError::BadRequest("name: is required".into()));
    }
    match state.repo.register_segment(segment.clone()).await {
        Ok(true) => Ok((StatusCode::CREATED, axum::Json(segment)).into_response()),
        Ok(false) => Ok((StatusCode::OK, axum::Json(segment)).into_response()),
        Err(RepoError::Schema(e @ emco_core::refschema::SchemaError::DuplicateSegment(_))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    state.repo.reload_schema().await?;
    Ok(axum::Json(state.repo.schema().segments().to_vec()).into_response())
}

pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    state.repo.reload_schema().await?;
    let schema = state.repo.schema();
    let segment = schema.segments().iter().find(|s| s.name == name).cloned();
    segment
        .map(|s| axum::Json(s).into_response())
        .ok_or_else(|| ApiError::NotFound(format!("schema segment {name:?} not found")))
}

pub async fn unregister(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    state.repo.unregister_segment(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which resource a generic path names.
enum Target {
    /// The collection of `kind` under the parent key.
    Collection {
        kind: String,
        parent: ResourceKey,
    },
    Item(ResourceKey),
}

async fn resolve(state: &AppState, kind: &str, rest: &str) -> ApiResult<Target> {
    let mut schema = state.repo.schema();
    if schema.node(kind).is_none() {
        // Another hub may have registered it.
        state.repo.reload_schema().await?;
        schema = state.repo.schema();
    }
    let node = schema
        .node(kind)
        .filter(|n| n.stored && n.segment != BASE_SEGMENT)
        .ok_or_else(|| ApiError::NotFound(format!("no registered resource kind {kind:?}")))?;
    let values: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let n = node.key_elements.len();
    if values.len() == n {
        let elements = node
            .key_elements
            .iter()
            .cloned()
            .zip(values.iter().map(|v| (*v).to_owned()))
            .collect();
        return Ok(Target::Item(ResourceKey::new(kind, elements)));
    }
    if values.len() + 1 == n {
        let elements = node
            .key_elements
            .iter()
            .cloned()
            .zip(values.iter().map(|v| (*v).to_owned()))
            .collect();
        return Ok(Target::Collection {
            kind: kind.to_owned(),
            parent: ResourceKey::new("parent", elements),
        });
    }
    Err(ApiError::NotFound(format!(
        "{kind} is addressed by {} values ({}), got {}",
        n,
        node.key_elements.join("/"),
        values.len()
    )))
}

fn check_name(json: &Value) -> ApiResult<String> {
    let name = json
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    emco_core::validate::validate_name("metadata.name", name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(name.to_owned())
}

pub async fn generic_get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (kind, rest) = kind_and_rest(&params);
    match resolve(&state, &kind, &rest).await? {
        Target::Item(key) => Ok(axum::Json(state.repo.get(&key).await?.data).into_response()),
        Target::Collection { kind, parent } => {
            let items = state.repo.list(&kind, &parent).await?;
            Ok(axum::Json(items.into_iter().map(|s| s.data).collect::<Vec<_>>()).into_response())
        }
    }
}

pub async fn generic_post(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Response> {
    let (kind, rest) = kind_and_rest(&params);
    let body = body::decode(&headers, bytes).await?;
    let name = check_name(&body.json)?;
    match resolve(&state, &kind, &rest).await? {
        Target::Collection { kind, parent } => {
            let mut elements = parent.elements;
            let own = state
                .repo
                .schema()
                .node(&kind)
                .and_then(|n| n.key_elements.last().cloned())
                .unwrap_or_default();
            elements.push((own, name));
            let stored = state
                .repo
                .create(&ResourceKey::new(kind, elements), body.json, None)
                .await?;
            Ok((StatusCode::CREATED, axum::Json(stored.data)).into_response())
        }
        Target::Item(_) => Err(ApiError::NotFound(
            "POST goes to the collection (the parent's values)".into(),
        )),
    }
}

pub async fn generic_put(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Response> {
    let (kind, rest) = kind_and_rest(&params);
    let body = body::decode(&headers, bytes).await?;
    let name = check_name(&body.json)?;
    let Target::Item(key) = resolve(&state, &kind, &rest).await? else {
        return Err(ApiError::NotFound(
            "PUT goes to an item (all key values)".into(),
        ));
    };
    if key.name() != name {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {name:?} does not match the URL ({})",
            key.name()
        )));
    }
    let (stored, how) = state.repo.upsert(&key, body.json, BlobChange::Keep).await?;
    let status = if how == Upserted::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stored.data)).into_response())
}

pub async fn generic_delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (kind, rest) = kind_and_rest(&params);
    let Target::Item(key) = resolve(&state, &kind, &rest).await? else {
        return Err(ApiError::NotFound(
            "DELETE goes to an item (all key values)".into(),
        ));
    };
    state.repo.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn kind_and_rest(params: &HashMap<String, String>) -> (String, String) {
    (
        params.get("kind").cloned().unwrap_or_default(),
        params.get("rest").cloned().unwrap_or_default(),
    )
}
