//! The AppContext: the immutable revision that instantiating (or updating, or rolling back) a
//! deployment intent group builds, holding per app the rendered objects, their install order, the
//! app's dependencies and which clusters receive which set of objects. Pure: no I/O.
//!
//! Vocabulary follows upstream EMCO's AppContext (apps, clusters, resources, `resorder`,
//! app-level `dependency` instructions with `opStatus` and `wait`), with one structural change:
//! upstream stores every resource once per cluster; here an app stores each distinct object list
//! once, as a [`Variant`] named by its content hash ([`VariantId`]), and every cluster points at
//! one variant. An app deployed unchanged to 10,000 clusters stores its manifests once.
//!
//! Building: [`AppContextBuilder`] takes per app the chosen clusters (from
//! [`crate::placement::choose`]) and the objects rendered once for the app, and optionally a
//! [`ClusterModifier`] (action controllers, generic action controller customisations) that may
//! replace the object list for individual clusters; equal results share one variant.
//!
//! Emco-core does not depend on emco-helm. The caller converts a rendered helm release into
//! [`ContextObject`]s: every `release.crds` object becomes [`Phase::Crd`]; every
//! `release.resources[i]` becomes [`Phase::Resource`] with `order: i`; every hook that runs on
//! install or delete becomes one [`Phase::Hook`] with its weight and [`HookEvents`] (one object,
//! even when it runs at several events), with the hook's effective delete policies mapped one to
//! one onto [`DeletePolicy`]; `keep_on_uninstall` copies `RenderedObject::keep_on_uninstall()`.
//!
//! Mutable state (per-object and per-cluster status, the synchronizer's progress) is deliberately
//! not part of the context: the context never changes once written, status is stored by the
//! resource synchronizer under its own keys, referencing the context id.

mod diff;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::placement::{AppPlacement, ClusterRef};

pub use diff::{ClusterChange, ClusterChangeKind, ObjectChange, ObjectOp, diff};
pub use storage::{
    CLUSTERS_PER_CHUNK, ContextHeader, StorageError, decode_header, encode, key_prefix, load,
    meta_key,
};

/// The deployment intent group a context belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigRef {
    pub project: String,
    pub composite_app: String,
    pub composite_app_version: String,
    pub deployment_intent_group: String,
}

impl DigRef {
    pub fn new(project: &str, composite_app: &str, version: &str, dig: &str) -> Self {
        Self {
            project: project.to_owned(),
            composite_app: composite_app.to_owned(),
            composite_app_version: version.to_owned(),
            deployment_intent_group: dig.to_owned(),
        }
    }
}

/// A cluster as the context names it. Serialized as upstream's `provider+cluster` (neither part
/// may contain `+`: resource names match `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`), which
/// also lets it be a JSON map key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId {
    pub provider: String,
    pub cluster: String,
}

impl ClusterId {
    pub fn new(provider: &str, cluster: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            cluster: cluster.to_owned(),
        }
    }
}

impl From<&ClusterRef> for ClusterId {
    fn from(cluster: &ClusterRef) -> Self {
        Self::new(cluster.provider(), cluster.cluster())
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.provider, self.cluster)
    }
}

impl Serialize for ClusterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClusterId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.split_once('+') {
            Some((provider, cluster))
                if !provider.is_empty() && !cluster.is_empty() && !cluster.contains('+') =>
            {
                Ok(ClusterId::new(provider, cluster))
            }
            _ => Err(serde::de::Error::custom(format!(
                "cluster {text:?} is not of the form provider+cluster"
            ))),
        }
    }
}

/// The state a dependency must reach before the dependent app is deployed (upstream's
/// app-dependency `spec.opStatus`, matched case-insensitively there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpStatus {
    /// Every resource of the dependency is ready on its clusters.
    Ready,
    /// Every resource of the dependency was applied to its clusters.
    Deployed,
}

/// One app-dependency of an app: deploy after `app` reached `op_status`, then wait
/// `wait_seconds` (upstream `spec.wait`, 0..=4096, default 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub app: String,
    pub op_status: OpStatus,
    #[serde(default)]
    pub wait_seconds: u32,
}

impl Dependency {
    /// Reads an app-dependency resource's `spec` (`{"app", "opStatus", "wait"}`).
    pub fn from_spec(spec: &Value) -> Result<Self, AppContextError> {
        let invalid = |reason: &str| AppContextError::InvalidDependencySpec {
            reason: reason.to_owned(),
        };
        let app = spec
            .get("app")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("spec.app must be a string"))?;
        let op_status = match spec.get("opStatus").and_then(Value::as_str) {
            Some(status) if status.eq_ignore_ascii_case("ready") => OpStatus::Ready,
            Some(status) if status.eq_ignore_ascii_case("deployed") => OpStatus::Deployed,
            _ => return Err(invalid("spec.opStatus must be Ready or Deployed")),
        };
        let wait_seconds = match spec.get("wait") {
            None | Some(Value::Null) => 0,
            Some(wait) => wait
                .as_u64()
                .filter(|wait| *wait <= 4096)
                .and_then(|wait| u32::try_from(wait).ok())
                .ok_or_else(|| invalid("spec.wait must be an integer in 0..=4096"))?,
        };
        Ok(Self {
            app: app.to_owned(),
            op_status,
            wait_seconds,
        })
    }
}

/// When an object is applied relative to the others (and, for hooks, how it is cleaned up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Phase {
    /// A CustomResourceDefinition, applied first.
    Crd,
    /// An ordinary resource; `order` is its position in the install order.
    Resource { order: u32 },
    /// A Helm hook, run at each of its `events`; lower weights run first. Hooks are not part of
    /// the release's resources: uninstalling does not delete them (their delete policies do).
    Hook { weight: i64, events: HookEvents },
}

/// The lifecycle events a hook runs at (test hooks never reach a context). Upgrade hooks run
/// when an update changes the app on a cluster, rollback hooks when a rollback does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookEvents {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_install: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_install: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_delete: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_delete: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_upgrade: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_upgrade: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_rollback: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_rollback: bool,
}

impl HookEvents {
    pub fn is_empty(self) -> bool {
        !(self.pre_install
            || self.post_install
            || self.pre_delete
            || self.post_delete
            || self.pre_upgrade
            || self.post_upgrade
            || self.pre_rollback
            || self.post_rollback)
    }
}

impl Phase {
    /// Sort key giving the install order: CRDs, pre-install hooks, resources, post-install hooks,
    /// then hooks that only run on delete.
    fn install_rank(self) -> (u8, i64) {
        match self {
            Phase::Crd => (0, 0),
            Phase::Hook { weight, events } if events.pre_install => (1, weight),
            Phase::Resource { order } => (2, i64::from(order)),
            Phase::Hook { weight, events } if events.post_install => (3, weight),
            Phase::Hook { weight, .. } => (4, weight),
        }
    }

    /// The hook's weight and events, or `None` for CRDs and resources.
    pub fn hook(self) -> Option<(i64, HookEvents)> {
        match self {
            Phase::Hook { weight, events } => Some((weight, events)),
            _ => None,
        }
    }
}

/// When a hook's objects are deleted (Helm's `helm.sh/hook-delete-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

/// Identity of an object on a cluster: two objects with equal identity are the same object in a
/// diff. The API version is reduced to its group, so `apps/v1` → `apps/v2` is an update.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectIdentity {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        match &self.namespace {
            Some(namespace) => write!(f, "{group}/{}/{namespace}/{}", self.kind, self.name),
            None => write!(f, "{group}/{}/{}", self.kind, self.name),
        }
    }
}

/// One object of an app, as the context stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub phase: Phase,
    /// Hook delete policies; empty for non-hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<DeletePolicy>,
    /// `helm.sh/resource-policy: keep`: leave the object in place when the app is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_on_uninstall: bool,
    /// The full object to apply.
    pub object: Value,
}

impl ContextObject {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        match self.api_version.rsplit_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    pub fn identity(&self) -> ObjectIdentity {
        ObjectIdentity {
            group: self.group().to_owned(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Upstream's resource name in an AppContext: `<name>+<kind>`.
    pub fn upstream_key(&self) -> String {
        format!("{}+{}", self.name, self.kind)
    }
}

/// Content hash naming a [`Variant`]: `<16 hex digits of FNV-1a 64>-<canonical byte length>`
/// over the canonical JSON of its objects (object keys sorted, so key order never matters).
///
/// FNV is not cryptographic. An accidental collision needs two different object lists of one app
/// with equal 64-bit hash *and* equal length (a few variants per app: negligible), and the builder
/// compares the contents whenever two lists hash alike, failing with
/// [`AppContextError::VariantHashCollision`] rather than sharing a variant wrongly; [`diff`] also
/// compares contents, never just ids. So a collision (even a crafted one) can fail a build but
/// cannot deploy the wrong manifests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VariantId(String);

impl VariantId {
    /// The id of this object list.
    pub fn of(objects: &[ContextObject]) -> Self {
        let mut hasher = CanonicalHasher::new();
        hasher.write(b"[");
        for (index, object) in objects.iter().enumerate() {
            if index > 0 {
                hasher.write(b",");
            }
            // Serializing our own derive-only type cannot fail; fall back to null to stay total.
            let value = serde_json::to_value(object).unwrap_or(Value::Null);
            hasher.value(&value);
        }
        hasher.write(b"]");
        Self(format!("{:016x}-{}", hasher.hash, hasher.len))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts only ids of the form [`VariantId::of`] produces (they become store keys).
    pub fn parse(text: &str) -> Option<Self> {
        let (hash, len) = text.split_once('-')?;
        let valid = hash.len() == 16
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| Self(text.to_owned()))
    }
}

impl fmt::Display for VariantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a 64 over canonical JSON, fed directly without building the text.
struct CanonicalHasher {
    hash: u64,
    len: u64,
}

impl CanonicalHasher {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self {
            hash: Self::OFFSET,
            len: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(Self::PRIME);
        }
        self.len += bytes.len() as u64;
    }

    fn string(&mut self, text: &str) {
        // JSON string escaping of a str cannot fail.
        let quoted = serde_json::to_string(text).unwrap_or_default();
        self.write(quoted.as_bytes());
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.write(b"null"),
            Value::Bool(true) => self.write(b"true"),
            Value::Bool(false) => self.write(b"false"),
            Value::Number(number) => self.write(number.to_string().as_bytes()),
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.write(b"[");
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.write(b",");
                    }
                    self.value(item);
                }
                self.write(b"]");
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                self.write(b"{");
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    if index > 0 {
                        self.write(b",");
                    }
                    self.string(key);
                    self.write(b":");
                    self.value(item);
                }
                self.write(b"}");
            }
        }
    }
}

/// One distinct object list of an app, in install order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub objects: Vec<ContextObject>,
}

/// Which variant a cluster receives, and which `anyOf` group (index into the app's
/// [`AppPlacement::groups`]) it was picked for, if it was not mandatory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAssignment {
    pub variant: VariantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of_group: Option<usize>,
}

/// One app of a context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppContextApp {
    pub name: String,
    pub dependencies: Vec<Dependency>,
    pub variants: BTreeMap<VariantId, Variant>,
    pub clusters: BTreeMap<ClusterId, ClusterAssignment>,
}

impl AppContextApp {
    /// The objects a cluster receives, in install order; `None` if the app is not on it.
    pub fn objects_for(&self, cluster: &ClusterId) -> Option<&[ContextObject]> {
        let assignment = self.clusters.get(cluster)?;
        self.variants
            .get(&assignment.variant)
            .map(|variant| variant.objects.as_slice())
    }
}

/// Service discovery across clusters (the traffic controller's `sds`): once the `server` app
/// is ready on all its clusters, its Service `service` (NodePort or LoadBalancer) is looked up
/// there, and every cluster of each client app that does not run the server itself gets a
/// selector-less Service of the same name in `namespace` with Endpoints at the server's node
/// or load-balancer address, so clients reach the server by name. The objects depend on what
/// the clusters report, so they are not part of the immutable context: the synchronizer
/// derives and records them (`emco-rsync`'s `discovery`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDiscovery {
    pub server: String,
    pub service: String,
    pub namespace: String,
    pub clients: Vec<String>,
}

/// The standard or privileged (level-1) logical cloud a context belongs to. Targets that keep
/// tenants apart use it: Anthos Config Sync syncs a level-1 cloud's deployments through a
/// `RepoSync` of the cloud's namespace. Admin (level-0) clouds have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudScope {
    pub logical_cloud: String,
    pub namespace: String,
    /// The context puts the cloud itself on its clusters (namespace, RBAC, quotas, the user's
    /// certificate request), rather than apps into it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instantiates_cloud: bool,
}

/// An immutable revision of a deployment intent group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppContext {
    pub id: String,
    pub dig: DigRef,
    pub revision: u64,
    pub created_at: String,
    /// In the order the composite app lists them (see [`AppContext::deploy_order`] for waves).
    pub apps: Vec<AppContextApp>,
    /// Services to make reachable from other clusters once their server is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discoveries: Vec<ServiceDiscovery>,
    /// The level-1 logical cloud the context deploys into or instantiates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudScope>,
    /// The namespace the group's apps go to (its logical cloud's; `default` for an admin cloud
    /// without one). Unknown for contexts stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl AppContext {
    pub fn app(&self, name: &str) -> Option<&AppContextApp> {
        self.apps.iter().find(|app| app.name == name)
    }

    /// Checks the invariants the builder establishes (also run on [`load`]): app names unique,
    /// every app placed, every cluster's variant present, no unused variant, object identities
    /// unique within a variant, dependencies on known apps only and acyclic.
    pub fn validate(&self) -> Result<(), AppContextError> {
        let mut names = BTreeSet::new();
        for app in &self.apps {
            if !names.insert(app.name.as_str()) {
                return Err(AppContextError::DuplicateApp {
                    app: app.name.clone(),
                });
            }
            if app.clusters.is_empty() {
                return Err(AppContextError::EmptyPlacement {
                    app: app.name.clone(),
                });
            }
            let mut used = BTreeSet::new();
            for (cluster, assignment) in &app.clusters {
                if !app.variants.contains_key(&assignment.variant) {
                    return Err(AppContextError::MissingVariant {
                        app: app.name.clone(),
                        cluster: cluster.clone(),
                        variant: assignment.variant.clone(),
                    });
                }
                used.insert(&assignment.variant);
            }
            for (id, variant) in &app.variants {
                if !used.contains(id) {
                    return Err(AppContextError::UnusedVariant {
                        app: app.name.clone(),
                        variant: id.clone(),
                    });
                }
                check_unique_identities(&app.name, &variant.objects)?;
            }
        }
        for discovery in &self.discoveries {
            for app in std::iter::once(&discovery.server).chain(&discovery.clients) {
                if !names.contains(app.as_str()) {
                    return Err(AppContextError::UnknownDiscoveryApp {
                        service: discovery.service.clone(),
                        app: app.clone(),
                    });
                }
            }
        }
        self.deploy_order().map(|_| ())
    }

    /// The apps in deployment waves: every app's dependencies are in earlier waves; apps of one
    /// wave may deploy in parallel. Names within a wave are sorted.
    pub fn deploy_order(&self) -> Result<Vec<Vec<String>>, AppContextError> {
        let graph: BTreeMap<&str, Vec<&str>> = self
            .apps
            .iter()
            .map(|app| {
                let deps = app.dependencies.iter().map(|d| d.app.as_str()).collect();
                (app.name.as_str(), deps)
            })
            .collect();
        deploy_waves(&graph)
    }
}

fn check_unique_identities(app: &str, objects: &[ContextObject]) -> Result<(), AppContextError> {
    let mut seen = BTreeSet::new();
    for object in objects {
        let identity = object.identity();
        if !seen.insert(identity.clone()) {
            return Err(AppContextError::DuplicateObject {
                app: app.to_owned(),
                object: identity,
            });
        }
    }
    Ok(())
}

/// Waves by Kahn's algorithm; on a cycle, names one found by depth-first search.
fn deploy_waves(graph: &BTreeMap<&str, Vec<&str>>) -> Result<Vec<Vec<String>>, AppContextError> {
    for (app, deps) in graph {
        if let Some(unknown) = deps.iter().find(|dep| !graph.contains_key(*dep)) {
            return Err(AppContextError::UnknownDependency {
                app: (*app).to_owned(),
                dependency: (*unknown).to_owned(),
            });
        }
    }
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::new();
    while placed.len() < graph.len() {
        let wave: Vec<&str> = graph
            .iter()
            .filter(|(app, deps)| {
                !placed.contains(*app) && deps.iter().all(|dep| placed.contains(dep))
            })
            .map(|(app, _)| *app)
            .collect();
        if wave.is_empty() {
            return Err(AppContextError::DependencyCycle {
                cycle: find_cycle(graph, &placed),
            });
        }
        placed.extend(wave.iter().copied());
        waves.push(wave.into_iter().map(str::to_owned).collect());
    }
    Ok(waves)
}

/// A cycle among the apps not yet `placed`, as `[a, b, …, a]`. Every unplaced app has an
/// unplaced dependency, so following first unplaced dependencies must revisit an app.
fn find_cycle(graph: &BTreeMap<&str, Vec<&str>>, placed: &BTreeSet<&str>) -> Vec<String> {
    let Some(start) = graph.keys().find(|app| !placed.contains(*app)) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start];
    let mut current = *start;
    loop {
        let next = graph
            .get(current)
            .and_then(|deps| deps.iter().find(|dep| !placed.contains(*dep)));
        let Some(next) = next else {
            return path.into_iter().map(str::to_owned).collect();
        };
        if let Some(position) = path.iter().position(|app| app == next) {
            let mut cycle: Vec<String> = path[position..].iter().map(|a| (*a).to_owned()).collect();
            cycle.push((*next).to_owned());
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

/// Why a context could not be built or is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppContextError {
    #[error("app {app:?} appears twice")]
    DuplicateApp { app: String },
    #[error("app {app:?} is placed on no cluster")]
    EmptyPlacement { app: String },
    #[error("app {app:?} depends on app {dependency:?}, which the context does not have")]
    UnknownDependency { app: String, dependency: String },
    #[error("app dependencies form a cycle: {}", cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },
    #[error("app {app:?} has two objects {object}")]
    DuplicateObject { app: String, object: ObjectIdentity },
    #[error("app {app:?}: cluster {cluster} refers to variant {variant}, which is missing")]
    MissingVariant {
        app: String,
        cluster: ClusterId,
        variant: VariantId,
    },
    #[error("app {app:?}: variant {variant} is used by no cluster")]
    UnusedVariant { app: String, variant: VariantId },
    #[error("app {app:?}: two different object lists hash to variant {variant}")]
    VariantHashCollision { app: String, variant: VariantId },
    #[error("app {app:?}: customising for cluster {cluster} failed: {reason}")]
    Modifier {
        app: String,
        cluster: ClusterId,
        reason: String,
    },
    #[error("invalid app-dependency spec: {reason}")]
    InvalidDependencySpec { reason: String },
    #[error("service discovery of {service:?} names app {app:?}, which the context does not have")]
    UnknownDiscoveryApp { service: String, app: String },
}

/// Per-cluster customisation (action controllers, later generic action controller intents).
/// Returns `Ok(None)` to keep the app's objects for that cluster, `Ok(Some(list))` to replace
/// them. Any closure `Fn(&str, &ClusterId, &[ContextObject]) -> Result<Option<Vec<_>>, String>`
/// is one.
pub trait ClusterModifier {
    fn modify(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String>;
}

impl<F> ClusterModifier for F
where
    F: Fn(&str, &ClusterId, &[ContextObject]) -> Result<Option<Vec<ContextObject>>, String>,
{
    fn modify(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        self(app, cluster, objects)
    }
}

/// What the builder needs to know about one app.
#[derive(Debug, Clone)]
pub struct AppInput {
    pub name: String,
    pub dependencies: Vec<Dependency>,
    /// The chosen clusters and, for clusters picked to satisfy an `anyOf`, the group index.
    pub clusters: BTreeMap<ClusterId, Option<usize>>,
    /// The objects rendered once for the app (any order; the builder sorts by [`Phase`]).
    pub objects: Vec<ContextObject>,
}

impl AppInput {
    /// An app on `clusters` (no `anyOf` group information).
    pub fn new<'a>(
        name: &str,
        clusters: impl IntoIterator<Item = &'a ClusterRef>,
        objects: Vec<ContextObject>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            dependencies: Vec::new(),
            clusters: clusters
                .into_iter()
                .map(|cluster| (ClusterId::from(cluster), None))
                .collect(),
            objects,
        }
    }

    /// An app on the clusters `choose` picked from `placement`: a chosen cluster that is not
    /// mandatory records the first group (in `placement.groups` order) it is a candidate of.
    pub fn from_placement(
        placement: &AppPlacement,
        chosen: &BTreeSet<ClusterRef>,
        objects: Vec<ContextObject>,
    ) -> Self {
        let clusters = chosen
            .iter()
            .map(|cluster| {
                let group = if placement.mandatory.contains(cluster) {
                    None
                } else {
                    placement
                        .groups
                        .iter()
                        .position(|group| group.candidates.contains(cluster))
                };
                (ClusterId::from(cluster), group)
            })
            .collect();
        Self {
            name: placement.app.clone(),
            dependencies: Vec::new(),
            clusters,
            objects,
        }
    }

    pub fn with_dependencies(mut self, dependencies: Vec<Dependency>) -> Self {
        self.dependencies = dependencies;
        self
    }
}

/// Builds an [`AppContext`]; see the module documentation.
pub struct AppContextBuilder<'m> {
    dig: DigRef,
    revision: u64,
    created_at: String,
    id: Option<String>,
    apps: Vec<AppInput>,
    discoveries: Vec<ServiceDiscovery>,
    cloud: Option<CloudScope>,
    namespace: Option<String>,
    modifier: Option<&'m dyn ClusterModifier>,
}

impl<'m> AppContextBuilder<'m> {
    /// `created_at` is the caller's timestamp (RFC 3339); the builder reads no clock.
    pub fn new(dig: DigRef, revision: u64, created_at: &str) -> Self {
        Self {
            dig,
            revision,
            created_at: created_at.to_owned(),
            id: None,
            apps: Vec::new(),
            discoveries: Vec::new(),
            cloud: None,
            namespace: None,
            modifier: None,
        }
    }

    /// Uses `id` instead of the derived one (see [`context_id`]).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    pub fn app(mut self, app: AppInput) -> Self {
        self.apps.push(app);
        self
    }

    pub fn discovery(mut self, discovery: ServiceDiscovery) -> Self {
        self.discoveries.push(discovery);
        self
    }

    /// The level-1 logical cloud the context belongs to (see [`CloudScope`]).
    pub fn cloud(mut self, cloud: CloudScope) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// The namespace the group's apps go to (see [`AppContext::namespace`]).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    pub fn modifier(mut self, modifier: &'m dyn ClusterModifier) -> Self {
        self.modifier = Some(modifier);
        self
    }

    /// Validates and assembles the context. The modifier runs once per (app, cluster); clusters
    /// whose lists are equal share one variant.
    pub fn build(self) -> Result<AppContext, AppContextError> {
        let mut apps = Vec::with_capacity(self.apps.len());
        for input in self.apps {
            apps.push(build_app(input, self.modifier)?);
        }
        let id = self
            .id
            .unwrap_or_else(|| context_id(&self.dig, self.revision, &self.created_at));
        let context = AppContext {
            id,
            dig: self.dig,
            revision: self.revision,
            created_at: self.created_at,
            apps,
            discoveries: self.discoveries,
            cloud: self.cloud,
            namespace: self.namespace,
        };
        context.validate()?;
        Ok(context)
    }
}

/// The derived context id: 16 hex digits of FNV-1a 64 over the group, revision and creation
/// time, so rebuilding the same revision gives the same id while a group deleted and recreated
/// (same revision number, another timestamp) gets a new one.
pub fn context_id(dig: &DigRef, revision: u64, created_at: &str) -> String {
    let mut hasher = CanonicalHasher::new();
    for part in [
        dig.project.as_str(),
        &dig.composite_app,
        &dig.composite_app_version,
        &dig.deployment_intent_group,
        &revision.to_string(),
        created_at,
    ] {
        hasher.write(part.as_bytes());
        hasher.write(&[0xff]);
    }
    format!("{:016x}", hasher.hash)
}

fn sort_install_order(objects: &mut [ContextObject]) {
    objects.sort_by_key(|object| object.phase.install_rank());
}

fn build_app(
    input: AppInput,
    modifier: Option<&dyn ClusterModifier>,
) -> Result<AppContextApp, AppContextError> {
    if input.clusters.is_empty() {
        return Err(AppContextError::EmptyPlacement { app: input.name });
    }
    let mut base = input.objects;
    sort_install_order(&mut base);
    check_unique_identities(&input.name, &base)?;
    let base_id = VariantId::of(&base);

    let mut variants: BTreeMap<VariantId, Variant> = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    for (cluster, any_of_group) in input.clusters {
        let custom = match modifier {
            Some(modifier) => modifier
                .modify(&input.name, &cluster, &base)
                .map_err(|reason| AppContextError::Modifier {
                    app: input.name.clone(),
                    cluster: cluster.clone(),
                    reason,
                })?,
            None => None,
        };
        let variant = match custom {
            None => {
                if !variants.contains_key(&base_id) {
                    variants.insert(
                        base_id.clone(),
                        Variant {
                            objects: base.clone(),
                        },
                    );
                }
                base_id.clone()
            }
            Some(mut objects) => {
                sort_install_order(&mut objects);
                let id = VariantId::of(&objects);
                if id == base_id && objects != base {
                    return Err(AppContextError::VariantHashCollision {
                        app: input.name,
                        variant: id,
                    });
                }
                match variants.get(&id) {
                    Some(existing) if existing.objects != objects => {
                        return Err(AppContextError::VariantHashCollision {
                            app: input.name,
                            variant: id,
                        });
                    }
                    Some(_) => {}
                    None => {
                        check_unique_identities(&input.name, &objects)?;
                        variants.insert(id.clone(), Variant { objects });
                    }
                }
                id
            }
        };
        clusters.insert(
            cluster,
            ClusterAssignment {
                variant,
                any_of_group,
            },
        );
    }
    Ok(AppContextApp {
        name: input.name,
        dependencies: input.dependencies,
        variants,
        clusters,
    })
}
