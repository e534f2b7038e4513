//! The proposed key/value layout of a stored context, as pure encode and load functions.
//!
//! Under `ctx/{id}/`:
//! - `app/{app}/meta`: `{"dependencies": [...]}`;
//! - `app/{app}/variant/{variantId}`: one [`Variant`](super::Variant), stored once however many
//!   clusters use it;
//! - `app/{app}/clusters/{chunk}`: up to [`CLUSTERS_PER_CHUNK`] clusters, as a list of
//!   `{"variant", "anyOfGroup"?, "clusters": ["provider+cluster", ...]}` (chunks numbered from
//!   `000000`), so no value grows with the fleet beyond a few tens of kilobytes (etcd's default
//!   request limit is 1.5 MiB);
//! - `meta`: id, group, revision, creation time, the app names in order and the service
//!   discoveries, if any.
//!
//! Crash safety: [`encode`] returns `meta` last. Writers put everything else first (in one or
//! several transactions) and `meta` last; a context whose `meta` is missing is incomplete, never
//! acted on, and its keys may be garbage-collected. Once `meta` is written nothing under the
//! prefix changes again.
//!
//! Mutable status (per object, per cluster, the synchronizer's progress, upstream's
//! `statusctxid`) is not stored here: the resource synchronizer keeps it under its own keys
//! referencing the context id, so the context stays immutable and shareable between revisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    AppContext, AppContextApp, AppContextError, CloudScope, ClusterAssignment, ClusterId,
    Dependency, DigRef, ServiceDiscovery, Variant, VariantId,
};

/// How many clusters one `clusters/{chunk}` value holds.
pub const CLUSTERS_PER_CHUNK: usize = 1000;

/// Why a context could not be encoded or loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {name:?} cannot be part of a store key (empty or containing '/')")]
    UnsafeKeyPart { what: &'static str, name: String },
    #[error("context {id}: no meta key (the context is incomplete)")]
    MissingMeta { id: String },
    #[error("context {id}: app {app:?} is listed but has no meta key")]
    MissingAppMeta { id: String, app: String },
    #[error("context {id}: unexpected key {key:?}")]
    UnexpectedKey { id: String, key: String },
    #[error("context {id}: value of {key:?} is invalid: {reason}")]
    InvalidValue {
        id: String,
        key: String,
        reason: String,
    },
    #[error("context {id}: cluster {cluster} of app {app:?} appears in two chunks")]
    DuplicateCluster {
        id: String,
        app: String,
        cluster: ClusterId,
    },
    #[error("context {id} is inconsistent: {source}")]
    Invalid {
        id: String,
        #[source]
        source: Box<AppContextError>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextMeta {
    id: String,
    dig: DigRef,
    revision: u64,
    created_at: String,
    apps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    discoveries: Vec<ServiceDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cloud: Option<CloudScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

/// The first lines of a stored context: enough to know what it belongs to without loading its
/// apps (the GitOps target reads it to place files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextHeader {
    pub id: String,
    pub dig: DigRef,
    pub revision: u64,
    #[serde(default)]
    pub cloud: Option<CloudScope>,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Reads the header from the value at [`meta_key`].
pub fn decode_header(meta: &[u8]) -> Result<ContextHeader, serde_json::Error> {
    serde_json::from_slice(meta)
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppMeta {
    dependencies: Vec<Dependency>,
}

/// `ctx/{id}/`: every key of the context starts with it (for range reads and deletion).
pub fn key_prefix(id: &str) -> String {
    format!("ctx/{id}/")
}

/// `ctx/{id}/meta`, the key whose presence marks the context complete.
pub fn meta_key(id: &str) -> String {
    format!("ctx/{id}/meta")
}

fn key_safe(what: &'static str, name: &str) -> Result<(), StorageError> {
    if name.is_empty() || name.contains('/') {
        return Err(StorageError::UnsafeKeyPart {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn to_json<T: Serialize>(id: &str, key: &str, value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|error| StorageError::InvalidValue {
        id: id.to_owned(),
        key: key.to_owned(),
        reason: error.to_string(),
    })
}

/// The key/value pairs to write, `meta` last (see the module documentation).
pub fn encode(context: &AppContext) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let id = context.id.as_str();
    key_safe("context id", id)?;
    let prefix = key_prefix(id);
    let mut pairs = Vec::new();
    for app in &context.apps {
        key_safe("app name", &app.name)?;
        let app_prefix = format!("{prefix}app/{}/", app.name);
        let key = format!("{app_prefix}meta");
        let meta = AppMeta {
            dependencies: app.dependencies.clone(),
        };
        pairs.push((key.clone(), to_json(id, &key, &meta)?));
        for (variant_id, variant) in &app.variants {
            let key = format!("{app_prefix}variant/{variant_id}");
            pairs.push((key.clone(), to_json(id, &key, variant)?));
        }
        let entries: Vec<(&ClusterId, &ClusterAssignment)> = app.clusters.iter().collect();
        for (number, chunk) in entries.chunks(CLUSTERS_PER_CHUNK).enumerate() {
            let key = format!("{app_prefix}clusters/{number:06}");
            let mut grouped: BTreeMap<(&VariantId, Option<usize>), Vec<&ClusterId>> =
                BTreeMap::new();
            for (cluster, assignment) in chunk {
                grouped
                    .entry((&assignment.variant, assignment.any_of_group))
                    .or_default()
                    .push(cluster);
            }
            let value: Vec<ClusterGroup<&VariantId, &ClusterId>> = grouped
                .into_iter()
                .map(|((variant, any_of_group), clusters)| ClusterGroup {
                    variant,
                    any_of_group,
                    clusters,
                })
                .collect();
            pairs.push((key.clone(), to_json(id, &key, &value)?));
        }
    }
    let meta = ContextMeta {
        id: context.id.clone(),
        dig: context.dig.clone(),
        revision: context.revision,
        created_at: context.created_at.clone(),
        apps: context.apps.iter().map(|app| app.name.clone()).collect(),
        discoveries: context.discoveries.clone(),
        cloud: context.cloud.clone(),
        namespace: context.namespace.clone(),
    };
    let key = meta_key(id);
    pairs.push((key.clone(), to_json(id, &key, &meta)?));
    Ok(pairs)
}

/// One entry of a `clusters/{chunk}` value: the clusters sharing a variant and `anyOf` group.
/// Grouping writes each variant id once per chunk instead of once per cluster.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterGroup<V, C> {
    variant: V,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any_of_group: Option<usize>,
    clusters: Vec<C>,
}

#[derive(Default)]
struct LoadedApp {
    meta: Option<AppMeta>,
    variants: BTreeMap<VariantId, Variant>,
    clusters: BTreeMap<ClusterId, ClusterAssignment>,
}

/// Reassembles context `id` from stored pairs (keys outside `ctx/{id}/` are ignored, so a range
/// read over more is fine) and validates it.
pub fn load(
    id: &str,
    pairs: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<AppContext, StorageError> {
    let prefix = key_prefix(id);
    let mut meta: Option<ContextMeta> = None;
    let mut apps: BTreeMap<String, LoadedApp> = BTreeMap::new();
    for (key, value) in pairs {
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue;
        };
        let parse_error = |reason: String| StorageError::InvalidValue {
            id: id.to_owned(),
            key: key.clone(),
            reason,
        };
        let unexpected = || StorageError::UnexpectedKey {
            id: id.to_owned(),
            key: key.clone(),
        };
        if rest == "meta" {
            meta = Some(serde_json::from_slice(&value).map_err(|e| parse_error(e.to_string()))?);
            continue;
        }
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["app", app, "meta"] => {
                let parsed =
                    serde_json::from_slice(&value).map_err(|e| parse_error(e.to_string()))?;
                apps.entry((*app).to_owned()).or_default().meta = Some(parsed);
            }
            ["app", app, "variant", variant] => {
                let variant_id = VariantId::parse(variant).ok_or_else(unexpected)?;
                let parsed =
                    serde_json::from_slice(&value).map_err(|e| parse_error(e.to_string()))?;
                apps.entry((*app).to_owned())
                    .or_default()
                    .variants
                    .insert(variant_id, parsed);
            }
            ["app", app, "clusters", chunk] if chunk.bytes().all(|b| b.is_ascii_digit()) => {
                let parsed: Vec<ClusterGroup<VariantId, ClusterId>> =
                    serde_json::from_slice(&value).map_err(|e| parse_error(e.to_string()))?;
                let loaded = apps.entry((*app).to_owned()).or_default();
                for group in parsed {
                    for cluster in group.clusters {
                        if loaded.clusters.contains_key(&cluster) {
                            return Err(StorageError::DuplicateCluster {
                                id: id.to_owned(),
                                app: (*app).to_owned(),
                                cluster,
                            });
                        }
                        let assignment = ClusterAssignment {
                            variant: group.variant.clone(),
                            any_of_group: group.any_of_group,
                        };
                        loaded.clusters.insert(cluster, assignment);
                    }
                }
            }
            _ => return Err(unexpected()),
        }
    }
    let meta = meta.ok_or_else(|| StorageError::MissingMeta { id: id.to_owned() })?;
    if meta.id != id {
        return Err(StorageError::InvalidValue {
            id: id.to_owned(),
            key: meta_key(id),
            reason: format!("it names context {:?}", meta.id),
        });
    }
    let mut context_apps = Vec::with_capacity(meta.apps.len());
    for name in &meta.apps {
        let loaded = apps.remove(name).unwrap_or_default();
        let app_meta = loaded.meta.ok_or_else(|| StorageError::MissingAppMeta {
            id: id.to_owned(),
            app: name.clone(),
        })?;
        context_apps.push(AppContextApp {
            name: name.clone(),
            dependencies: app_meta.dependencies,
            variants: loaded.variants,
            clusters: loaded.clusters,
        });
    }
    if let Some(stray) = apps.keys().next() {
        return Err(StorageError::UnexpectedKey {
            id: id.to_owned(),
            key: format!("{prefix}app/{stray}/"),
        });
    }
    let context = AppContext {
        id: meta.id,
        dig: meta.dig,
        revision: meta.revision,
        created_at: meta.created_at,
        apps: context_apps,
        discoveries: meta.discoveries,
        cloud: meta.cloud,
        namespace: meta.namespace,
    };
    context.validate().map_err(|source| StorageError::Invalid {
        id: id.to_owned(),
        source: Box::new(source),
    })?;
    Ok(context)
}
