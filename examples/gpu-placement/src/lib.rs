//! An external placement controller: an app goes only to clusters whose kv-pairs advertise at
//! least the free GPUs its `gpuIntent` asks for.
//!
//! How it plugs into the hub (see README.md beside this crate):
//! 1. at start it registers the schema of its resources (`POST /v2/schema/segments`): a
//!    `gpuIntent` lives under a deployment intent group and names an app (`spec.app`), and asks
//!    for `spec.gpus` free GPUs; the hub then enforces its referential integrity;
//! 2. it is registered as a placement controller (`POST /v2/controllers` with its host, port and
//!    `type: placement`), and a group's intents name it (`spec.intent.gpu: {gpuIntent}`);
//! 3. at instantiate (and update) the hub calls `FilterClusters` with every app's candidate
//!    clusters and their kv-pairs; this controller reads the intent from the hub
//!    (`GET /v2/resources/gpuIntent/...`) and keeps, for the intent's app, the clusters whose
//!    `gpus-free` pair is at least `spec.gpus`. Other apps keep their candidates.

use emco_controller::v1::placement_controller_server::{
    PlacementController, PlacementControllerServer,
};
use emco_controller::v1::{AppClusters, ClusterName, FilterRequest, FilterResponse};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// The kv-pair key a cluster advertises its free GPUs with.
pub const FREE_GPUS_KEY: &str = "gpus-free";

/// The schema segment of this controller's resources.
pub fn schema_segment() -> Value {
    json!({
        "name": "gpu-placement",
        "resources": [
            {"name": "gpuIntent", "parent": "deploymentIntentGroup",
             "references": [{"name": "app"}]}
        ]
    })
}

/// Registers [`schema_segment`] with the hub at `hub` (`http://host:port`); registering again
/// is fine.
pub async fn register_schema(client: &reqwest::Client, hub: &str) -> anyhow::Result<()> {
    let response = client
        .post(format!("{hub}/v2/schema/segments"))
        .json(&schema_segment())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "registering the schema: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// The controller: reads its intents from the hub.
pub struct GpuPlacement {
    hub: String,
    client: reqwest::Client,
}

impl GpuPlacement {
    pub fn new(hub: &str, client: reqwest::Client) -> Self {
        Self {
            hub: hub.trim_end_matches('/').to_owned(),
            client,
        }
    }

    pub fn into_service(self) -> PlacementControllerServer<Self> {
        PlacementControllerServer::new(self)
    }
}

/// The free GPUs a cluster advertises (0 when it does not, or not as a number).
fn free_gpus(cluster: &emco_controller::v1::Cluster) -> u64 {
    cluster
        .kv
        .iter()
        .rev()
        .find(|pair| pair.key == FREE_GPUS_KEY)
        .and_then(|pair| pair.value.trim().parse().ok())
        .unwrap_or(0)
}

#[tonic::async_trait]
impl PlacementController for GpuPlacement {
    async fn filter_clusters(
        &self,
        request: Request<FilterRequest>,
    ) -> Result<Response<FilterResponse>, Status> {
        let request = request.into_inner();
        let group = request
            .group
            .ok_or_else(|| Status::invalid_argument("no group"))?;
        let url = format!(
            "{}/v2/resources/gpuIntent/{}/{}/{}/{}/{}",
            self.hub,
            group.project,
            group.composite_app,
            group.composite_app_version,
            group.deployment_intent_group,
            group.intent
        );
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| Status::unavailable(format!("reading {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(Status::failed_precondition(format!(
                "gpu intent {:?}: the hub answered {}",
                group.intent,
                response.status()
            )));
        }
        let intent: Value = response
            .json()
            .await
            .map_err(|e| Status::internal(format!("reading {url}: {e}")))?;
        let app = intent
            .pointer("/spec/app")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wanted = intent
            .pointer("/spec/gpus")
            .and_then(|gpus| gpus.as_u64().or_else(|| gpus.as_str()?.parse().ok()))
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "gpu intent {:?}: spec.gpus must be a number",
                    group.intent
                ))
            })?;
        let apps = request
            .apps
            .into_iter()
            .filter(|candidates| candidates.app == app)
            .map(|candidates| AppClusters {
                app: candidates.app,
                clusters: candidates
                    .clusters
                    .iter()
                    .filter(|cluster| free_gpus(cluster) >= wanted)
                    .map(|cluster| ClusterName {
                        provider: cluster.provider.clone(),
                        name: cluster.name.clone(),
                    })
                    .collect(),
            })
            .collect();
        tracing::info!(
            group = group.deployment_intent_group,
            app,
            wanted,
            "filtered"
        );
        Ok(Response::new(FilterResponse { apps }))
    }
}

/// Serves the controller on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    controller: GpuPlacement,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(controller.into_service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use emco_controller::v1::{Cluster, KvPair};

    #[test]
    fn free_gpus_come_from_the_last_advertised_pair() {
        let cluster = |pairs: &[(&str, &str)]| Cluster {
            provider: "p".into(),
            name: "c".into(),
            labels: vec![],
            kv: pairs
                .iter()
                .map(|(key, value)| KvPair {
                    key: (*key).into(),
                    value: (*value).into(),
                })
                .collect(),
        };
        assert_eq!(free_gpus(&cluster(&[])), 0);
        assert_eq!(free_gpus(&cluster(&[("gpus-free", "4")])), 4);
        assert_eq!(
            free_gpus(&cluster(&[("gpus-free", "4"), ("gpus-free", "1")])),
            1
        );
        assert_eq!(free_gpus(&cluster(&[("gpus-free", "many")])), 0);
    }
}
