//! Cluster-manager controllers (`/v2/clm-controllers`): told over gRPC when a cluster is
//! created, updated or deleted (`emco_controller::clm`, wire-compatible with upstream's clm
//! event channel). The hub calls each registered controller in priority order (lowest first,
//! then by name) once the change is stored; a controller that refuses, fails or does not answer
//! in time is reported (logged by the caller), and the change stands.

use std::time::Duration;

use emco_controller::clm::{
    ClmControllerEventRequest, ClmControllerEventType,
    clm_controller_event_channel_client::ClmControllerEventChannelClient,
};
use emco_core::key::ResourceKey;
use emco_store::repository::Repository;
use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    Created,
    Updated,
    Deleted,
}

impl ClusterEvent {
    fn wire(self) -> ClmControllerEventType {
        match self {
            ClusterEvent::Created => ClmControllerEventType::ClusterCreated,
            ClusterEvent::Updated => ClmControllerEventType::ClusterUpdated,
            ClusterEvent::Deleted => ClmControllerEventType::ClusterDeleted,
        }
    }
}

/// Registered controllers as (priority, name, endpoint), in call order.
async fn controllers(repo: &Repository) -> Result<Vec<(i64, String, String)>, String> {
    let mut found: Vec<(i64, String, String)> = repo
        .list("clmController", &ResourceKey::new("parent", Vec::new()))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|stored| {
            let spec = stored.data.get("spec")?;
            let host = spec.get("host").and_then(Value::as_str)?;
            let port = spec.get("port").and_then(Value::as_i64)?;
            let priority = spec.get("priority").and_then(Value::as_i64).unwrap_or(0);
            Some((
                priority,
                stored.key.name().to_owned(),
                format!("http://{host}:{port}"),
            ))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Tells every registered controller that `cluster` of `provider` was `event`; returns one
/// line per controller that did not take it.
pub async fn publish(
    repo: &Repository,
    provider: &str,
    cluster: &str,
    event: ClusterEvent,
) -> Vec<String> {
    let targets = match controllers(repo).await {
        Ok(targets) => targets,
        Err(error) => return vec![format!("listing clm controllers: {error}")],
    };
    let mut problems = Vec::new();
    for (_, name, endpoint) in targets {
        let request = ClmControllerEventRequest {
            provider_name: provider.to_owned(),
            cluster_name: cluster.to_owned(),
            event: event.wire() as i32,
        };
        let outcome = async {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .map_err(|e| format!("endpoint {endpoint}: {e}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .connect()
                .await
                .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
            let answer = ClmControllerEventChannelClient::new(channel)
                .publish(request)
                .await
                .map_err(|status| format!("{endpoint} answered {status}"))?
                .into_inner();
            if answer.status {
                Ok(())
            } else {
                Err(format!("refused: {}", answer.message))
            }
        }
        .await;
        if let Err(why) = outcome {
            problems.push(format!(
                "clm controller {name:?} was not told {event:?} of {provider}/{cluster}: {why}"
            ));
        }
    }
    problems
}
