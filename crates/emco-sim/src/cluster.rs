//! One simulated cluster: its objects, its resource-version counter, the types its CRDs add and
//! the watch fan-out, all behind one lock per cluster.
//!
//! An idle cluster costs a name, a mutex and a few empty collections: nothing is allocated until
//! the first request (which materialises the four built-in namespaces), and the watch channel
//! exists only while someone watches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::catalog::{self, ResourceDef};
use crate::faults::FaultSlot;
use crate::meta;

/// Namespaces every cluster has from the start.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// A small stable hash of a cluster's name, so its simulated addresses differ from other
/// clusters' and stay the same across restarts (FNV-1a).
pub fn name_hash(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The InternalIP of a cluster's node `index`: in 172.16.0.0/12, one /24 per cluster name.
pub fn node_address(cluster: &str, index: u32) -> String {
    let hash = name_hash(cluster);
    format!(
        "172.{}.{}.{}",
        16 + (hash >> 8 & 0x0f),
        hash & 0xff,
        10 + index % 240
    )
}

/// Node `index` of a simulated cluster, Ready, as a kubelet registers it: the first one is
/// the control plane. Nodes are what service discovery reads a NodePort's address from.
fn simulated_node(cluster: &str, index: u32, created: &str) -> Value {
    let name = format!("{cluster}-node-{index}");
    let mut labels = json!({
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    });
    if index == 0 {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": meta::new_uid(),
            "creationTimestamp": created,
            "labels": labels,
        },
        "spec": {"podCIDR": format!("10.244.{index}.0/24"), "podCIDRs": [format!("10.244.{index}.0/24")]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": node_address(cluster, index)},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": created,
                "lastTransitionTime": created,
            }],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v1.32.0",
                "containerRuntimeVersion": "containerd://1.7.0",
            },
        },
    })
}

/// Events a lagging watcher may fall behind before its watch is ended (it then re-lists).
const WATCH_BUFFER: usize = 256;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept for replay and sent to watchers.
#[derive(Debug)]
pub struct WatchEvent {
    /// What happened.
    pub event_type: EventType,
    /// The resource's store key (`apps/deployments`).
    pub store_key: Arc<str>,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The resourceVersion this change produced.
    pub resource_version: u64,
    /// The object after the change (for deletions: its last state, with the deletion's RV).
    pub object: Bytes,
    /// The object before the change, for modifications (selector transitions need it).
    pub previous: Option<Bytes>,
}

/// A stored object: its JSON and its resourceVersion.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The serialized object, exactly as served.
    pub json: Bytes,
    /// Its `metadata.resourceVersion`.
    pub resource_version: u64,
}

/// (namespace, name); the namespace is empty for cluster-scoped objects. Ordered as the real
/// API server lists: by namespace, then name.
pub type ObjectKey = (String, String);

/// A simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    created: i64,
    state: Mutex<ClusterState>,
    /// Fault injection for this cluster (none by default).
    pub faults: FaultSlot,
    /// Write requests (create, update, patch, apply, delete) its API answered, whatever the
    /// outcome: what a hub sent it, for tests and benchmarks.
    writes: std::sync::atomic::AtomicU64,
}

/// Everything mutable about a cluster, guarded by its lock.
#[derive(Debug)]
pub struct ClusterState {
    resource_version: u64,
    initialized: bool,
    objects: HashMap<Arc<str>, BTreeMap<ObjectKey, StoredObject>>,
    custom_types: Vec<Arc<ResourceDef>>,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    compacted_through: u64,
    watchers: Option<broadcast::Sender<Arc<WatchEvent>>>,
    /// Next ClusterIP to hand out (an offset into 10.96.0.0/12).
    pub next_service_ip: u32,
    /// Next node port to hand out (an offset into 30000-32767).
    pub next_node_port: u32,
    /// Next load-balancer ingress address to hand out.
    pub next_load_balancer_ip: u32,
    /// What the simulated controllers keep for this cluster (timer queue, CA).
    pub controllers: crate::controllers::ClusterControllers,
}

impl Cluster {
    /// A new, empty cluster keeping up to `history_limit` events for watch replay.
    pub fn new(name: impl Into<String>, history_limit: usize) -> Self {
        Self {
            name: name.into(),
            created: meta::unix_now(),
            state: Mutex::new(ClusterState {
                resource_version: 0,
                initialized: false,
                objects: HashMap::new(),
                custom_types: Vec::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted_through: 0,
                watchers: None,
                next_service_ip: 10,
                next_node_port: 0,
                next_load_balancer_ip: 0,
                controllers: Default::default(),
            }),
            faults: FaultSlot::default(),
            writes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one write request.
    pub fn count_write(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Write requests answered so far (see the field).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Attaches the simulated controllers (see [`crate::controllers`]).
    pub fn with_controllers(mut self, controllers: crate::controllers::ClusterControllers) -> Self {
        self.state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .controllers = controllers;
        self
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Locks the cluster, materialising its built-in namespaces on first use.
    pub fn lock(&self) -> MutexGuard<'_, ClusterState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.initialized {
            state.initialized = true;
            let namespaces = catalog::namespaces();
            let created = meta::format_timestamp(self.created);
            for name in BUILTIN_NAMESPACES {
                let mut namespace = json!({
                    "kind": "Namespace",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": name,
                        "uid": meta::new_uid(),
                        "creationTimestamp": created,
                        "labels": {"kubernetes.io/metadata.name": name},
                    },
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                });
                state.commit(&namespaces.store_key, &mut namespace);
            }
            let nodes = catalog::nodes();
            for index in 0..state.controllers.nodes() {
                let mut node = simulated_node(&self.name, index, &created);
                state.commit(&nodes.store_key, &mut node);
            }
        }
        state
    }

    /// An API server restart: every watch ends (the streams close; clients re-watch). With
    /// `lose_state` the cluster also forgets every object, CRD type and its watch history, as
    /// if freshly created; resourceVersions continue above the old ones and everything before
    /// counts as compacted, so a watch from an old resourceVersion gets `410 Expired` and
    /// clients re-list.
    pub fn restart(&self, lose_state: bool) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.watchers = None;
        if lose_state {
            let resource_version = state.resource_version + 1;
            let history_limit = state.history_limit;
            *state = ClusterState {
                resource_version,
                initialized: false,
                objects: HashMap::new(),
                custom_types: Vec::new(),
                history: VecDeque::new(),
                history_limit,
                compacted_through: resource_version,
                watchers: None,
                next_service_ip: 10,
                next_node_port: 0,
                next_load_balancer_ip: 0,
                // The controllers (timer queue, CA) belong to the cluster, not its objects.
                controllers: std::mem::take(&mut state.controllers),
            };
        }
    }

    /// Whether the cluster was ever used (its namespaces materialised).
    pub fn is_touched(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .initialized
    }
}

impl ClusterState {
    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// The object of `def` at (namespace, name).
    pub fn get(&self, def: &ResourceDef, namespace: &str, name: &str) -> Option<&StoredObject> {
        self.objects
            .get(&def.store_key)?
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    /// All objects of `def`, in list order.
    pub fn all(&self, def: &ResourceDef) -> impl Iterator<Item = (&ObjectKey, &StoredObject)> {
        self.objects.get(&def.store_key).into_iter().flatten()
    }

    /// Objects of `def` in one namespace (or all, for `None`), in list order.
    pub fn list<'a>(
        &'a self,
        def: &ResourceDef,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a StoredObject)> {
        self.all(def).filter(move |((object_namespace, _), _)| {
            namespace.is_none_or(|wanted| wanted == object_namespace)
        })
    }

    /// Number of objects stored, over all types.
    pub fn object_count(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Store keys that hold objects (for namespace deletion and cascades).
    pub fn store_keys(&self) -> Vec<Arc<str>> {
        self.objects.keys().cloned().collect()
    }

    /// Objects under a store key, for cascades that do not know the type's version.
    pub fn objects_of_key(&self, key: &str) -> Option<&BTreeMap<ObjectKey, StoredObject>> {
        self.objects.get(key)
    }

    /// Stores `object` (a create or an update): stamps the next resourceVersion, serializes,
    /// records and publishes the event. Returns the stored JSON.
    pub fn commit(&mut self, store_key: &Arc<str>, object: &mut Value) -> Bytes {
        let resource_version = self.bump();
        set_resource_version(object, resource_version);
        let (namespace, name) = object_key(object);
        let json = to_bytes(object);
        let previous = self.objects.entry(store_key.clone()).or_default().insert(
            (namespace.clone(), name.clone()),
            StoredObject {
                json: json.clone(),
                resource_version,
            },
        );
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(WatchEvent {
            event_type,
            store_key: store_key.clone(),
            namespace,
            name,
            resource_version,
            object: json.clone(),
            previous: previous.map(|stored| stored.json),
        });
        json
    }

    /// Removes the object at (namespace, name) of store key `key`; `last` is its final state,
    /// which the DELETED event carries with a fresh resourceVersion. Returns that JSON.
    pub fn remove(
        &mut self,
        key: &Arc<str>,
        namespace: &str,
        name: &str,
        last: &mut Value,
    ) -> Option<Bytes> {
        let objects = self.objects.get_mut(key)?;
        objects.remove(&(namespace.to_owned(), name.to_owned()))?;
        if objects.is_empty() {
            self.objects.remove(key);
        }
        let resource_version = self.bump();
        set_resource_version(last, resource_version);
        let json = to_bytes(last);
        self.publish(WatchEvent {
            event_type: EventType::Deleted,
            store_key: key.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            resource_version,
            object: json.clone(),
            previous: None,
        });
        Some(json)
    }

    fn bump(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn publish(&mut self, event: WatchEvent) {
        let event = Arc::new(event);
        if self.history.len() >= self.history_limit
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted_through = dropped.resource_version;
        }
        self.history.push_back(event.clone());
        if let Some(sender) = &self.watchers
            && sender.send(event).is_err()
        {
            // Nobody listens any more: free the channel until the next watch.
            self.watchers = None;
        }
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&mut self) -> broadcast::Receiver<Arc<WatchEvent>> {
        match &self.watchers {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(WATCH_BUFFER);
                self.watchers = Some(sender);
                receiver
            }
        }
    }

    /// Kept events after `resource_version`, or `Err(oldest replayable)` when some of them were
    /// already dropped from the history.
    pub fn events_since(&self, resource_version: u64) -> Result<Vec<Arc<WatchEvent>>, u64> {
        if resource_version < self.compacted_through {
            return Err(self.compacted_through);
        }
        Ok(self
            .history
            .iter()
            .filter(|event| event.resource_version > resource_version)
            .cloned()
            .collect())
    }

    /// The types this cluster's CRDs serve.
    pub fn custom_types(&self) -> &[Arc<ResourceDef>] {
        &self.custom_types
    }

    /// Replaces the types served for one CRD (identified by its store key).
    pub fn set_custom_types(&mut self, store_key: &str, defs: Vec<Arc<ResourceDef>>) {
        self.custom_types.retain(|def| &*def.store_key != store_key);
        self.custom_types.extend(defs);
    }

    /// The type served at `group/version/plural`: built-in first, then CRD-defined.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        catalog::builtin(group, version, plural).or_else(|| {
            self.custom_types
                .iter()
                .find(|def| def.group == group && def.version == version && def.plural == plural)
                .cloned()
        })
    }

    /// Whether any type (built-in or CRD) is served in `group/version`.
    pub fn serves_group_version(&self, group: &str, version: &str) -> bool {
        catalog::BUILTINS
            .iter()
            .chain(self.custom_types.iter())
            .any(|def| def.group == group && def.version == version)
    }
}

fn set_resource_version(object: &mut Value, resource_version: u64) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "resourceVersion".into(),
            Value::String(resource_version.to_string()),
        );
    }
}

/// (namespace, name) of an object.
pub fn object_key(object: &Value) -> ObjectKey {
    let field = |name: &str| {
        object
            .pointer(&format!("/metadata/{name}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("namespace"), field("name"))
}

/// Serializes a JSON value (cannot fail for `Value`: its keys are strings).
pub fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lock_materialises_builtin_namespaces() {
        let cluster = Cluster::new("edge-1", 16);
        assert!(!cluster.is_touched());
        let state = cluster.lock();
        let names: Vec<String> = state
            .all(&catalog::namespaces())
            .map(|((_, name), _)| name.clone())
            .collect();
        assert_eq!(
            names,
            vec!["default", "kube-node-lease", "kube-public", "kube-system"]
        );
        // And its one node, Ready, with an address of its own.
        let nodes: Vec<Value> = state
            .all(&catalog::nodes())
            .map(|(_, stored)| serde_json::from_slice(&stored.json).unwrap())
            .collect();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0]["metadata"]["name"], "edge-1-node-0");
        assert_eq!(
            nodes[0]["status"]["addresses"][0],
            json!({"type": "InternalIP", "address": node_address("edge-1", 0)})
        );
        assert_eq!(nodes[0]["status"]["conditions"][0]["status"], "True");
        assert_ne!(node_address("edge-1", 0), node_address("edge-2", 0));
        assert_eq!(state.resource_version(), 5);
    }

    #[test]
    fn history_replays_and_expires() {
        let cluster = Cluster::new("edge-1", 4);
        let mut state = cluster.lock();
        let configmaps = catalog::builtin("", "v1", "configmaps").unwrap();
        for index in 0..3 {
            state.commit(
                &configmaps.store_key,
                &mut json!({"metadata": {"name": format!("cm-{index}"), "namespace": "default"}}),
            );
        }
        // 4 namespaces + 1 node + 3 configmaps: the first four events fell out of a history
        // of 4.
        assert_eq!(state.events_since(3).unwrap_err(), 4);
        let replay = state.events_since(6).unwrap();
        assert_eq!(
            replay
                .iter()
                .map(|event| event.resource_version)
                .collect::<Vec<_>>(),
            vec![7, 8]
        );
        assert!(
            replay
                .iter()
                .all(|event| event.event_type == EventType::Added)
        );
    }
}
