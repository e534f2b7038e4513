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
//!
//! Faults (see [`crate::faults`] and docs/sim.md for the plan's JSON):
//!
//! | method and path                      | body                                 | answer                          |
//! |--------------------------------------|--------------------------------------|---------------------------------|
//! | `GET /sim/clusters/{name}/faults`    |                                      | `200 {"name", "faults"}`; 404   |
//! | `PUT /sim/clusters/{name}/faults`    | `FaultPlan`                          | `200 {"name", "faults"}`; 404   |
//! | `DELETE /sim/clusters/{name}/faults` |                                      | `204`; 404                      |
//! | `POST /sim/clusters/{name}/restart`  | optional `{"loseState": true}`       | `204`; 404                      |
//! | `GET /sim/faults`                    |                                      | `200 {"clusters": [{"name", "faults"}, …]}` (faulty ones) |
//! | `PUT /sim/faults`                    | `{"clusters": Selector, "faults": FaultPlan}` | `200 {"clusters": [names]}` |
//! | `DELETE /sim/faults`                 | optional `{"clusters": Selector}` (all without) | `200 {"clusters": [names]}` |
//! | `POST /sim/restart`                  | `{"clusters": Selector, "loseState": bool}` | `200 {"clusters": [names]}` |
//!
//! A `Selector` is `{"names": […]}`, `{"prefix": "edge-"}` or `{"all": true}`. A malformed body
//! is 400, a plan or selector that does not make sense 422, a named cluster that does not exist
//! 404 (and nothing changes).
//!
//! `ClusterInfo` is `{"name", "server", "kubeconfig"}` (`kubeconfig`: the file written for it,
//! or `null` without `--kubeconfig-dir`); the single-cluster GET adds `objects` (stored object
//! count, `0` for a cluster never used), `resourceVersion` and `writes` (write requests its API
//! answered: creates, updates, patches, applies, deletes). `GET /sim/stats` answers
//! `{"clusters": n, "writes": total}` over every cluster. Errors are
//! `{"error": "…"}`. Removing a cluster ends its watches and deletes its kubeconfig.
//!
//! The Git server's endpoints (`/sim/git/…`) are in [`crate::git`], the pull modes'
//! (`/sim/clusters/{name}/flux…`, `…/configsync…`, `…/argocd…`) in [`crate::flux`],
//! [`crate::configsync`] and [`crate::argocd`]; docs/sim.md lists them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Sim;
use crate::error::SimError;
use crate::faults::{self, ClusterSelector, FaultPlan, SelectorError};

fn error_response(error: &SimError) -> Response {
    let code = match error {
        SimError::ClusterExists(_) => StatusCode::CONFLICT,
        SimError::ClusterNotFound(_) => StatusCode::NOT_FOUND,
        SimError::InvalidClusterName(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SimError::Kubeconfig { .. }
        | SimError::Serve { .. }
        | SimError::Certificate(_)
        | SimError::TlsConfig(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
        map.insert("writes".into(), json!(cluster.writes()));
    }
    Json(info).into_response()
}

/// `GET /sim/stats`: totals over every cluster.
pub async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let names = sim.cluster_names();
    let writes: u64 = names
        .iter()
        .filter_map(|name| sim.cluster(name))
        .map(|cluster| cluster.writes())
        .sum();
    Json(json!({"clusters": names.len(), "writes": writes})).into_response()
}

/// `DELETE /sim/clusters/{name}`.
pub async fn remove(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    match sim.remove_cluster(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error_response(&error),
    }
}

fn fault_error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, Json(json!({"error": message.to_string()}))).into_response()
}

fn selector_error(error: &SelectorError) -> Response {
    match error {
        SelectorError::Ambiguous => fault_error(StatusCode::UNPROCESSABLE_ENTITY, error),
        SelectorError::Missing(error) => error_response(error),
    }
}

/// Parses a JSON body; an empty body is `T::default()` when `optional`. Syntax errors are 400,
/// well-formed bodies that do not fit are 422.
#[allow(clippy::result_large_err)] // The error is the answer itself.
fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &Bytes,
    optional: bool,
) -> Result<T, Response> {
    if optional && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| {
        let code = match error.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        fault_error(code, format!("invalid body: {error}"))
    })
}

fn cluster_faults(name: &str, plan: Option<&FaultPlan>) -> serde_json::Value {
    json!({"name": name, "faults": plan})
}

/// `GET /sim/clusters/{name}/faults`.
pub async fn show_cluster_faults(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
) -> Response {
    let Some(cluster) = sim.cluster(&name) else {
        return error_response(&SimError::ClusterNotFound(name));
    };
    Json(cluster_faults(&name, cluster.faults.current().as_deref())).into_response()
}

/// `PUT /sim/clusters/{name}/faults`.
pub async fn set_cluster_faults(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let plan: FaultPlan = match parse_body(&body, false) {
        Ok(plan) => plan,
        Err(response) => return response,
    };
    let Some(cluster) = sim.cluster(&name) else {
        return error_response(&SimError::ClusterNotFound(name));
    };
    tracing::info!(cluster = %name, ?plan, "faults set");
    let answer = cluster_faults(&name, Some(&plan));
    faults::set_faults(&cluster, Some(plan));
    Json(answer).into_response()
}

/// `DELETE /sim/clusters/{name}/faults`.
pub async fn clear_cluster_faults(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
) -> Response {
    let Some(cluster) = sim.cluster(&name) else {
        return error_response(&SimError::ClusterNotFound(name));
    };
    tracing::info!(cluster = %name, "faults cleared");
    faults::set_faults(&cluster, None);
    StatusCode::NO_CONTENT.into_response()
}

/// The body of the restart endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartRequest {
    /// Which clusters (only for `POST /sim/restart`).
    #[serde(default)]
    pub clusters: Option<ClusterSelector>,
    /// Whether all state is lost as well.
    #[serde(default)]
    pub lose_state: bool,
}

/// `POST /sim/clusters/{name}/restart`.
pub async fn restart_cluster(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let request: RestartRequest = match parse_body(&body, true) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.clusters.is_some() {
        return fault_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "\"clusters\" belongs in POST /sim/restart; this path names the cluster",
        );
    }
    let Some(cluster) = sim.cluster(&name) else {
        return error_response(&SimError::ClusterNotFound(name));
    };
    tracing::info!(cluster = %name, lose_state = request.lose_state, "restart");
    faults::restart(&cluster, request.lose_state);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/restart`.
pub async fn restart_clusters(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let request: RestartRequest = match parse_body(&body, false) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let Some(selector) = request.clusters else {
        return fault_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected {\"clusters\": {\"names\"|\"prefix\"|\"all\": …}, \"loseState\": bool}",
        );
    };
    match faults::restart_on(&sim, &selector, request.lose_state) {
        Ok(names) => {
            tracing::info!(
                clusters = names.len(),
                lose_state = request.lose_state,
                "restart"
            );
            Json(json!({ "clusters": names })).into_response()
        }
        Err(error) => selector_error(&error),
    }
}

/// The body of `PUT /sim/faults`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetFaults {
    /// Which clusters.
    pub clusters: Option<ClusterSelector>,
    /// What they suffer.
    pub faults: Option<FaultPlan>,
}

/// `PUT /sim/faults`.
pub async fn set_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let request: SetFaults = match parse_body(&body, false) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let (Some(selector), Some(plan)) = (request.clusters, request.faults) else {
        return fault_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected {\"clusters\": {\"names\"|\"prefix\"|\"all\": …}, \"faults\": {…}}",
        );
    };
    tracing::info!(?selector, ?plan, "faults set");
    match faults::set_faults_on(&sim, &selector, Some(plan)) {
        Ok(names) => Json(json!({ "clusters": names })).into_response(),
        Err(error) => selector_error(&error),
    }
}

/// The body of `DELETE /sim/faults` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClearFaults {
    /// Which clusters; all without.
    pub clusters: Option<ClusterSelector>,
}

/// `DELETE /sim/faults`.
pub async fn clear_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let request: ClearFaults = match parse_body(&body, true) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let selector = request.clusters.unwrap_or_else(ClusterSelector::all);
    tracing::info!(?selector, "faults cleared");
    match faults::set_faults_on(&sim, &selector, None) {
        Ok(names) => Json(json!({ "clusters": names })).into_response(),
        Err(error) => selector_error(&error),
    }
}

/// `GET /sim/faults`: the clusters that currently suffer faults.
pub async fn list_faults(State(sim): State<Arc<Sim>>) -> Response {
    let clusters: Vec<_> = sim
        .cluster_names()
        .iter()
        .filter_map(|name| {
            let plan = sim.cluster(name)?.faults.current()?;
            Some(cluster_faults(name, Some(&plan)))
        })
        .collect();
    Json(json!({ "clusters": clusters })).into_response()
}
