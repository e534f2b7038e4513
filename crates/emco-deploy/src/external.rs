//! External controllers: a controller registered at `/v2/controllers` with a host and port,
//! and no implementation inside the hub, is called over gRPC with the protocol of
//! `emco-controller` (`proto/emco/controller/v1/controller.proto`).
//!
//! Placement controllers get every app's candidate clusters (with their labels and kv-pairs)
//! and answer the ones they keep. Action controllers get every app on every cluster with its
//! objects, in one call per revision, and answer the app-clusters they changed. A controller
//! the hub cannot reach, or whose answer does not fit, fails the instantiate (or update) with a
//! message naming it; nothing is stored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use emco_controller::v1::{self, placement_controller_client::PlacementControllerClient};
use emco_core::key::ResourceKey;
use emco_core::placement::{ClusterRef, Placement};
use emco_store::repository::Repository;
use serde_json::Value;

use crate::gather::GroupInputs;

/// How long connecting to and hearing back from a controller may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A placement controller at `endpoint` (`http://host:port`).
pub struct GrpcPlacement<'a> {
    pub repo: &'a Repository,
    pub name: &'a str,
    pub endpoint: &'a str,
}

/// Every pair of every kv-pairs resource of a cluster (`spec.kv: [{key: value}, ...]`).
async fn kv_pairs(repo: &Repository, cluster: &ClusterRef) -> Result<Vec<v1::KvPair>, String> {
    let parent = ResourceKey::new(
        "parent",
        vec![
            ("clusterProvider".to_owned(), cluster.provider().to_owned()),
            ("cluster".to_owned(), cluster.cluster().to_owned()),
        ],
    );
    let mut pairs = Vec::new();
    for stored in repo
        .list("clusterKv", &parent)
        .await
        .map_err(|e| e.to_string())?
    {
        for entry in stored
            .data
            .pointer("/spec/kv")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            for (key, value) in entry {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                pairs.push(v1::KvPair {
                    key: key.clone(),
                    value,
                });
            }
        }
    }
    Ok(pairs)
}

impl GrpcPlacement<'_> {
    /// Asks the controller which candidates to keep and narrows `placement` to them.
    pub async fn filter(
        &self,
        group: &GroupInputs,
        intent: &str,
        revision: u64,
        placement: &mut Placement,
    ) -> Result<(), String> {
        let mut described: BTreeMap<ClusterRef, v1::Cluster> = BTreeMap::new();
        let mut apps = Vec::with_capacity(placement.len());
        for (app, app_placement) in placement.iter() {
            let mut clusters = Vec::new();
            for cluster in app_placement.candidate_clusters() {
                if !described.contains_key(&cluster) {
                    let description = v1::Cluster {
                        provider: cluster.provider().to_owned(),
                        name: cluster.cluster().to_owned(),
                        labels: group
                            .inventory
                            .labels_of(cluster.provider(), cluster.cluster())
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                        kv: kv_pairs(self.repo, &cluster).await?,
                    };
                    described.insert(cluster.clone(), description);
                }
                if let Some(description) = described.get(&cluster) {
                    clusters.push(description.clone());
                }
            }
            apps.push(v1::AppCandidates {
                app: app.clone(),
                clusters,
            });
        }
        let request = v1::FilterRequest {
            group: Some(v1::Group {
                project: group.dig.project.clone(),
                composite_app: group.dig.composite_app.clone(),
                composite_app_version: group.dig.composite_app_version.clone(),
                deployment_intent_group: group.dig.deployment_intent_group.clone(),
                intent: intent.to_owned(),
                revision,
            }),
            apps,
        };
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint.to_owned())
            .map_err(|e| format!("endpoint {}: {e}", self.endpoint))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let answer = PlacementControllerClient::new(channel)
            .filter_clusters(request)
            .await
            .map_err(|status| format!("{} answered {status}", self.endpoint))?
            .into_inner();
        for kept in answer.apps {
            let Some(app_placement) = placement.get_mut(&kept.app) else {
                return Err(format!(
                    "controller {:?} answered for app {:?}, which the group does not place",
                    self.name, kept.app
                ));
            };
            let keep: BTreeSet<ClusterRef> = kept
                .clusters
                .iter()
                .map(|cluster| ClusterRef::new(&cluster.provider, &cluster.name))
                .collect();
            let candidates = app_placement.candidate_clusters();
            if let Some(stranger) = keep.iter().find(|cluster| !candidates.contains(*cluster)) {
                return Err(format!(
                    "controller {:?} kept {stranger} for app {:?}, which was not a candidate",
                    self.name, kept.app
                ));
            }
            app_placement.retain_clusters(|cluster| keep.contains(cluster));
        }
        Ok(())
    }
}

/// An action controller at `endpoint` (`http://host:port`).
pub struct GrpcAction<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
}

/// One app on one cluster with its objects, as the hub holds them during a build.
pub struct AppClusterInput<'a> {
    pub app: &'a str,
    pub cluster: &'a emco_core::appcontext::ClusterId,
    pub objects: &'a [emco_core::appcontext::ContextObject],
}

impl GrpcAction<'_> {
    /// Sends every app-cluster's objects; returns the changed ones' new object lists.
    pub async fn customise(
        &self,
        group: &GroupInputs,
        intent: &str,
        revision: u64,
        inputs: &[AppClusterInput<'_>],
    ) -> Result<
        Vec<(
            String,
            emco_core::appcontext::ClusterId,
            Vec<emco_core::appcontext::ContextObject>,
        )>,
        String,
    > {
        use emco_core::appcontext::ClusterId;
        let request = v1::CustomiseRequest {
            group: Some(v1::Group {
                project: group.dig.project.clone(),
                composite_app: group.dig.composite_app.clone(),
                composite_app_version: group.dig.composite_app_version.clone(),
                deployment_intent_group: group.dig.deployment_intent_group.clone(),
                intent: intent.to_owned(),
                revision,
            }),
            namespace: group.namespace.clone(),
            apps: inputs
                .iter()
                .map(|input| v1::AppClusterObjects {
                    app: input.app.to_owned(),
                    cluster: Some(v1::ClusterName {
                        provider: input.cluster.provider.clone(),
                        name: input.cluster.cluster.clone(),
                    }),
                    objects: input
                        .objects
                        .iter()
                        .map(|object| object.object.to_string())
                        .collect(),
                })
                .collect(),
        };
        let channel = tonic::transport::Endpoint::from_shared(self.endpoint.to_owned())
            .map_err(|e| format!("endpoint {}: {e}", self.endpoint))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let answer = v1::action_controller_client::ActionControllerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
            .customise(request)
            .await
            .map_err(|status| format!("{} answered {status}", self.endpoint))?
            .into_inner();
        let mut changed = Vec::with_capacity(answer.changed.len());
        for entry in answer.changed {
            let cluster = entry
                .cluster
                .map(|cluster| ClusterId::new(&cluster.provider, &cluster.name))
                .ok_or_else(|| format!("an answer for app {:?} names no cluster", entry.app))?;
            let Some(input) = inputs
                .iter()
                .find(|input| input.app == entry.app && *input.cluster == cluster)
            else {
                return Err(format!(
                    "the answer names app {:?} on {cluster}, which the revision does not have",
                    entry.app
                ));
            };
            let mut objects = Vec::with_capacity(entry.objects.len());
            for text in &entry.objects {
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    format!(
                        "app {:?} on {cluster}: an object is not JSON: {e}",
                        entry.app
                    )
                })?;
                objects.push(
                    crate::objects::from_manifest(value, input.objects, &group.namespace)
                        .map_err(|e| format!("app {:?} on {cluster}: {e}", entry.app))?,
                );
            }
            changed.push((entry.app, cluster, objects));
        }
        Ok(changed)
    }
}
