//! A run's service discovery step (the traffic controller's `sds`; the rules are in
//! [`crate::discovery`]). After the run's final status, for each of the context's
//! discoveries: wait until the server app is ready on all its clusters, read its Service (and,
//! for a NodePort, the Nodes) there, and give every client cluster that does not run the server
//! a Service and Endpoints pointing at it. Objects an earlier revision discovered and this one
//! does not are deleted.
//!
//! Crash safety: `rsync/discovered/{ctx}` lists every object whose apply may have begun (the
//! union of the recorded and the new set is written before any apply), then only what remains.
//! The run writes `all ready` after this step, so a hub killed during it runs it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use emco_core::appcontext::{self, AppContext, ClusterId, ContextObject, OpStatus};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::flush::Flusher;
use super::link::{CallError, Link};
use super::prepare::{deployment_id, prepare};
use super::records::{self, LeftObject, LeftRecord};
use super::run::{RunShared, read_objects, wait_dependency};
use super::{SyncError, Synchronizer};
use crate::discovery::{self, Observation, ServerAddress};

/// What the step needs from its run.
pub struct DiscoveryStep {
    pub sync: Arc<Synchronizer>,
    pub ctx: String,
    /// The context whose id labels the objects (the group's first).
    pub label: String,
    pub context: Arc<AppContext>,
    pub shared: Arc<RunShared>,
    pub flusher: Flusher,
    pub stop: watch::Receiver<bool>,
}

fn context_object(object: Value, order: u32) -> ContextObject {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let namespace = Some(text("/metadata/namespace")).filter(|ns| !ns.is_empty());
    ContextObject {
        api_version: text("/apiVersion"),
        kind: text("/kind"),
        name: text("/metadata/name"),
        namespace,
        phase: appcontext::Phase::Resource { order },
        delete_policies: Vec::new(),
        keep_on_uninstall: false,
        object,
    }
}

fn placed(cluster: &ClusterId, object: &ContextObject) -> LeftObject {
    LeftObject {
        cluster: cluster.clone(),
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
    }
}

fn identity_object(object: &LeftObject) -> ContextObject {
    let mut metadata = json!({"name": object.name});
    if let Some(namespace) = &object.namespace {
        metadata["namespace"] = json!(namespace);
    }
    context_object(
        json!({"apiVersion": object.api_version, "kind": object.kind, "metadata": metadata}),
        0,
    )
}

impl DiscoveryStep {
    fn link(&self, cluster: &ClusterId) -> Link {
        Link::new(
            &self.ctx,
            cluster.clone(),
            self.sync.connector.clone(),
            self.sync.config.clone(),
            self.sync.permits.clone(),
            self.flusher.clone(),
            self.stop.clone(),
            None,
            false,
        )
    }

    /// Runs the step; returns what kept a discovery from working (for the run's message).
    /// `Ok` with nothing done when stopped or when a server app failed (what earlier revisions
    /// discovered then stays).
    pub async fn run(self) -> Result<Vec<String>, SyncError> {
        let key = records::discovered_key(&self.ctx);
        let recorded = read_objects(&self.sync, &key).await;
        if self.context.discoveries.is_empty() && recorded.objects.is_empty() {
            return Ok(Vec::new());
        }
        let mut problems = Vec::new();
        // The objects each client cluster gets, in apply order, one per identity.
        let mut desired: BTreeMap<ClusterId, Vec<ContextObject>> = BTreeMap::new();
        for discovery in &self.context.discoveries {
            let Some(server) = self.context.app(&discovery.server) else {
                continue; // `AppContext::validate` refuses this.
            };
            let Some(index) = self
                .shared
                .apps
                .iter()
                .position(|app| app.name == discovery.server)
            else {
                continue;
            };
            if let Err(skip) =
                wait_dependency(&self.shared, index, OpStatus::Ready, 0, self.stop.clone()).await
            {
                info!(
                    ctx = self.ctx,
                    service = discovery.service,
                    ?skip,
                    "service discovery waits for a later revision: its server is not ready"
                );
                return Ok(Vec::new());
            }
            let mut servers: BTreeMap<ClusterId, ServerAddress> = BTreeMap::new();
            for cluster in server.clusters.keys() {
                match self
                    .observe(cluster, &discovery.service, &discovery.namespace)
                    .await
                {
                    Ok(Some(address)) => {
                        servers.insert(cluster.clone(), address);
                    }
                    Ok(None) => return Ok(Vec::new()), // stopped
                    Err(why) => problems.push(format!(
                        "service discovery of {:?} on {cluster}: {why}",
                        discovery.service
                    )),
                }
            }
            let clients: BTreeSet<ClusterId> = discovery
                .clients
                .iter()
                .filter_map(|client| self.context.app(client))
                .flat_map(|app| app.clusters.keys().cloned())
                .collect();
            for (cluster, objects) in discovery::client_objects(discovery, &servers, &clients) {
                let list = desired.entry(cluster).or_default();
                for object in objects {
                    let object = context_object(object, list.len() as u32);
                    list.retain(|other| other.identity() != object.identity());
                    list.push(object);
                }
            }
        }

        let wanted: BTreeSet<LeftObject> = desired
            .iter()
            .flat_map(|(cluster, objects)| objects.iter().map(move |o| placed(cluster, o)))
            .collect();
        let stale: Vec<&LeftObject> = recorded
            .objects
            .iter()
            .filter(|object| !wanted.contains(*object))
            .collect();
        // Before any apply: everything that may be on a cluster once this step begins.
        let mut union: BTreeSet<LeftObject> = recorded.objects.iter().cloned().collect();
        union.extend(wanted.iter().cloned());
        self.write(&key, union.into_iter().collect()).await?;

        let mut work: BTreeMap<ClusterId, (Vec<ContextObject>, Vec<ContextObject>)> =
            BTreeMap::new();
        for (cluster, objects) in desired {
            work.entry(cluster).or_default().0 = objects;
        }
        for object in stale {
            work.entry(object.cluster.clone())
                .or_default()
                .1
                .push(identity_object(object));
        }
        let label = deployment_id(&self.label, records::DISCOVERY_APP);
        let mut tasks = JoinSet::new();
        for (cluster, (apply, remove)) in work {
            let link = self.link(&cluster);
            tasks.spawn(sync_cluster(link, label.clone(), apply, remove));
        }
        let mut remaining: BTreeSet<LeftObject> = wanted;
        let mut stopped = false;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => {
                    remaining.extend(outcome.not_removed);
                    problems.extend(outcome.problems);
                    stopped |= outcome.stopped;
                }
                Err(failure) => {
                    problems.push(format!(
                        "service discovery: a cluster task failed: {failure}"
                    ));
                    // What it was removing may still be there.
                    stopped = true;
                }
            }
        }
        if stopped {
            // Keep the union: what a stopped removal did not get to is still on its cluster.
            return Ok(problems);
        }
        self.write(&key, remaining.into_iter().collect()).await?;
        if problems.is_empty() {
            info!(ctx = self.ctx, "service discovery done");
        } else {
            warn!(ctx = self.ctx, ?problems, "service discovery incomplete");
        }
        Ok(problems)
    }

    async fn write(&self, key: &str, objects: Vec<LeftObject>) -> Result<(), SyncError> {
        self.flusher
            .put(key.to_owned(), records::to_bytes(&LeftRecord { objects }))
            .await
    }

    /// Where other clusters reach the Service on `cluster`: `Ok(None)` when stopped, `Err`
    /// when they never can as the Service is. Waits (polling with backoff) while it is not yet
    /// known (no load-balancer address yet).
    async fn observe(
        &self,
        cluster: &ClusterId,
        service: &str,
        namespace: &str,
    ) -> Result<Option<ServerAddress>, String> {
        let mut link = self.link(cluster);
        let wanted = prepare(
            &[identity_object(&LeftObject {
                cluster: cluster.clone(),
                api_version: "v1".into(),
                kind: "Service".into(),
                namespace: Some(namespace.to_owned()),
                name: service.to_owned(),
            })],
            "",
        );
        let Some(wanted) = wanted.objects.first() else {
            return Err("internal error: nothing to read".into());
        };
        let config = self.sync.config.clone();
        let mut poll = config.ready_poll_initial;
        loop {
            let found = match link.get(wanted).await {
                Ok(found) => found,
                Err(CallError::Stopped) => return Ok(None),
                Err(CallError::Refused(why) | CallError::Unusable(why)) => return Err(why),
            };
            let node_port = found
                .as_ref()
                .and_then(|service| service.pointer("/spec/type"))
                .and_then(Value::as_str)
                == Some("NodePort");
            let nodes = if node_port {
                match link.list_once("v1", "Node", "").await {
                    Ok(nodes) => nodes,
                    Err(error) => {
                        warn!(%cluster, %error, "listing nodes failed; trying again");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            match discovery::observe(service, found.as_ref(), &nodes) {
                Observation::Reachable(address) => return Ok(Some(address)),
                Observation::Unreachable(why) => return Err(why),
                Observation::Pending(why) => {
                    info!(%cluster, service, why, "service discovery waits");
                    if link.pause(poll).await.is_err() {
                        return Ok(None);
                    }
                    poll = (poll * 2).min(config.ready_poll_max);
                }
            }
        }
    }
}

struct ClusterOutcome {
    /// Stale objects still on the cluster.
    not_removed: Vec<LeftObject>,
    problems: Vec<String>,
    stopped: bool,
}

/// Applies `apply` in order, then deletes `remove`, on one cluster.
async fn sync_cluster(
    mut link: Link,
    label: String,
    apply: Vec<ContextObject>,
    remove: Vec<ContextObject>,
) -> ClusterOutcome {
    let cluster = link.cluster.clone();
    let mut outcome = ClusterOutcome {
        not_removed: Vec::new(),
        problems: Vec::new(),
        stopped: false,
    };
    let applies = prepare(&apply, &label);
    for object in &applies.objects {
        match link.apply(&object.apply).await {
            Ok(_) => {}
            Err(CallError::Stopped) => {
                outcome.stopped = true;
                return outcome;
            }
            Err(CallError::Refused(why) | CallError::Unusable(why)) => {
                outcome.problems.push(format!(
                    "service discovery: {} on {cluster}: {why}",
                    object.describe()
                ))
            }
        }
    }
    let removals = prepare(&remove, &label);
    for (object, original) in removals.objects.iter().zip(&remove) {
        match link.delete_if_served(object).await {
            Ok(_) => {}
            Err(CallError::Stopped) => {
                outcome.stopped = true;
                outcome.not_removed.push(placed(&cluster, original));
            }
            Err(CallError::Refused(why) | CallError::Unusable(why)) => {
                outcome.problems.push(format!(
                    "service discovery: removing {} on {cluster}: {why}",
                    object.describe()
                ));
                outcome.not_removed.push(placed(&cluster, original));
            }
        }
    }
    link.release();
    outcome
}
