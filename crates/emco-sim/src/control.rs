//! The control API under `/sim`: which clusters exist, adding and removing them at run time.
//!
//! | method and path              | body                 | answer                                  |
//! |------------------------------|----------------------|-----------------------------------------|
//! | `GET /sim/healthz`           |                      | `200 ok`                                |
//! | `GET /sim/clusters`          |                      | `200 {"clusters": [ClusterInfo, …]}`    |
//! | `POST /sim/clusters`         | `{"name": "edge-7"}` | `201 ClusterInfo`; 409 exists; 422 name |
//! | `GET /sim/clusters/{name}`   |                      | `200 ClusterInfo`; 404                  |
//! | `DELETE /sim/clusters/{name}`|                      | `204`; 404                              |
//!
//! `ClusterInfo` is `{"name", "server", "kubeconfig"}` (`kubeconfig`: the file written for it,
//! or `null` without `--kubeconfig-dir`); the single-cluster GET adds `objects` (stored object
//! count, `0` for a cluster never used) and `resourceVersion`. Errors are
//! `{"error": "…"}`. Removing a cluster ends its watches and deletes its kubeconfig.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Sim;
use crate::error::SimError;

fn error_response(error: &SimError) -> Response {
    let code = match error {
        SimError::ClusterExists(_) => StatusCode::CONFLICT,
        SimError::ClusterNotFound(_) => StatusCode::NOT_FOUND,
        SimError::InvalidClusterName(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SimError::Kubeconfig { .. } | SimError::Serve { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, Json(json!({"error": error.to_string()}))).into_response()
}

/// `GET /sim/clusters`.
pub async fn list(State(sim): State<Arc<Sim>>) -> Response {
    let clusters: Vec<_> = sim
        .cluster_names()
        .iter()
        .map(|name| sim.cluster_info(name))
        .collect();
    Json(json!({ "clusters": clusters })).into_response()
}

/// The body of `POST /sim/clusters`.
#[derive(Debug, Deserialize)]
pub struct AddCluster {
    /// The new cluster's name (a DNS-1123 label).
    pub name: String,
}

/// `POST /sim/clusters`.
pub async fn add(
    State(sim): State<Arc<Sim>>,
    body: Result<Json<AddCluster>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "expected a JSON body {\"name\": \"…\"}"})),
        )
            .into_response();
    };
    match sim.add_cluster(&body.name) {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(error) => error_response(&error),
    }
}

/// `GET /sim/clusters/{name}`.
pub async fn show(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    let Some(cluster) = sim.cluster(&name) else {
        return error_response(&SimError::ClusterNotFound(name));
    };
    let mut info = serde_json::to_value(sim.cluster_info(&name)).unwrap_or_else(|_| json!({}));
    let (objects, resource_version) = if cluster.is_touched() {
        let state = cluster.lock();
        (state.object_count(), state.resource_version())
    } else {
        (0, 0)
    };
    if let Some(map) = info.as_object_mut() {
        map.insert("objects".into(), json!(objects));
        map.insert(
            "resourceVersion".into(),
            json!(resource_version.to_string()),
        );
    }
    Json(info).into_response()
}

/// `DELETE /sim/clusters/{name}`.
pub async fn remove(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    match sim.remove_cluster(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error),
    }
}
