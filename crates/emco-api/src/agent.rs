//! What a pull cluster's agent (`emco agent`) reports: the objects EMCO deployed there, as the
//! cluster has them. The synchronizer reads the last report for a GitOps cluster's readiness
//! and deletes, so status is the same for pull and push clusters. (Not an upstream route:
//! upstream's monitor wrote the same into Git.)

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use emco_core::key::ResourceKey;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// The route, below `/v2`.
pub const PATH: &str = "/v2/cluster-providers/{clusterProvider}/clusters/{cluster}/agent-report";

fn cluster_key(provider: &str, cluster: &str) -> ResourceKey {
    ResourceKey::new(
        "cluster",
        vec![
            ("clusterProvider".into(), provider.to_owned()),
            ("cluster".into(), cluster.to_owned()),
        ],
    )
}

/// `PUT …/agent-report` with `{"objects": [...]}`: replaces the cluster's report.
pub async fn put(
    State(state): State<AppState>,
    Path((provider, cluster)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let objects = body
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("objects: an array of objects is required".into()))?;
    for (index, object) in objects.iter().enumerate() {
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            if object.pointer(field).and_then(Value::as_str).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "objects[{index}]{}: a string is required",
                    field.replace('/', ".")
                )));
            }
        }
    }
    if !state.repo.exists(&cluster_key(&provider, &cluster)).await? {
        return Err(ApiError::NotFound("Cluster not found".into()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let report = json!({"objects": objects, "reportedMs": now});
    let bytes =
        serde_json::to_vec(&report).map_err(|error| ApiError::Internal(error.to_string()))?;
    state
        .repo
        .store()
        .put(&emco_core::gitops::report_key(&provider, &cluster), bytes)
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/agent-report`: the last report (404 before the first).
pub async fn get(
    State(state): State<AppState>,
    Path((provider, cluster)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let entry = state
        .repo
        .store()
        .get(&emco_core::gitops::report_key(&provider, &cluster))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .ok_or_else(|| ApiError::NotFound("no agent report for the cluster".into()))?;
    let report: Value = serde_json::from_slice(&entry.value)
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(Json(report))
}
