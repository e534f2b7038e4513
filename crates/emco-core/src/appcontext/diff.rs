//! What changes per (app, cluster) between two revisions of a deployment intent group: the
//! work list that update and rollback reconcile.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{AppContext, AppContextApp, ClusterId, ContextObject, ObjectIdentity, VariantId};

/// What happens to one object on one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectOp {
    /// Present only in the new revision.
    Create,
    /// Present in both with different content (JSON, phase, delete policies or keep flag).
    Update,
    /// Present only in the old revision.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    pub object: ObjectIdentity,
    pub op: ObjectOp,
}

/// The change of one app on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ClusterChangeKind {
    /// The app is new on the cluster: apply the new variant.
    Create { variant: VariantId },
    /// The app left the cluster: remove the old variant.
    Delete { variant: VariantId },
    /// The app stays; `objects` lists the object operations (never empty), deletions last and
    /// in reverse install order, the rest in the new install order.
    Update {
        from: VariantId,
        to: VariantId,
        objects: Vec<ObjectChange>,
    },
    /// The app stays with identical objects.
    Unchanged { variant: VariantId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterChange {
    pub app: String,
    pub cluster: ClusterId,
    pub change: ClusterChangeKind,
}

/// Every (app, cluster) of either revision, sorted by app name then cluster. Contents are
/// compared, not just variant ids, and each pair of variants is compared once however many
/// clusters share it.
pub fn diff(old: &AppContext, new: &AppContext) -> Vec<ClusterChange> {
    let names: BTreeSet<&str> = old
        .apps
        .iter()
        .chain(&new.apps)
        .map(|app| app.name.as_str())
        .collect();
    let mut changes = Vec::new();
    for name in names {
        diff_app(name, old.app(name), new.app(name), &mut changes);
    }
    changes
}

fn diff_app(
    name: &str,
    old: Option<&AppContextApp>,
    new: Option<&AppContextApp>,
    changes: &mut Vec<ClusterChange>,
) {
    let clusters: BTreeSet<&ClusterId> = old
        .iter()
        .chain(new.iter())
        .flat_map(|app| app.clusters.keys())
        .collect();
    let mut compared: BTreeMap<(&VariantId, &VariantId), Vec<ObjectChange>> = BTreeMap::new();
    for cluster in clusters {
        let before = old.and_then(|app| Some((app, &app.clusters.get(cluster)?.variant)));
        let after = new.and_then(|app| Some((app, &app.clusters.get(cluster)?.variant)));
        let change = match (before, after) {
            (None, None) => continue,
            (None, Some((_, variant))) => ClusterChangeKind::Create {
                variant: variant.clone(),
            },
            (Some((_, variant)), None) => ClusterChangeKind::Delete {
                variant: variant.clone(),
            },
            (Some((old_app, from)), Some((new_app, to))) => {
                let objects = compared.entry((from, to)).or_insert_with(|| {
                    diff_objects(objects_of(old_app, from), objects_of(new_app, to))
                });
                if objects.is_empty() {
                    ClusterChangeKind::Unchanged {
                        variant: to.clone(),
                    }
                } else {
                    ClusterChangeKind::Update {
                        from: from.clone(),
                        to: to.clone(),
                        objects: objects.clone(),
                    }
                }
            }
        };
        changes.push(ClusterChange {
            app: name.to_owned(),
            cluster: cluster.clone(),
            change,
        });
    }
}

/// A variant's objects; a context that passed validation always has them.
fn objects_of<'a>(app: &'a AppContextApp, id: &VariantId) -> &'a [ContextObject] {
    app.variants
        .get(id)
        .map(|variant| variant.objects.as_slice())
        .unwrap_or_default()
}

/// Object operations turning `old` into `new`, matched by [`ObjectIdentity`].
fn diff_objects(old: &[ContextObject], new: &[ContextObject]) -> Vec<ObjectChange> {
    let old_by_identity: BTreeMap<ObjectIdentity, &ContextObject> = old
        .iter()
        .map(|object| (object.identity(), object))
        .collect();
    let new_identities: BTreeSet<ObjectIdentity> = new.iter().map(|o| o.identity()).collect();
    let mut changes = Vec::new();
    for object in new {
        let identity = object.identity();
        let op = match old_by_identity.get(&identity) {
            None => ObjectOp::Create,
            Some(previous) if *previous != object => ObjectOp::Update,
            Some(_) => continue,
        };
        changes.push(ObjectChange {
            object: identity,
            op,
        });
    }
    for object in old.iter().rev() {
        let identity = object.identity();
        if !new_identities.contains(&identity) {
            changes.push(ObjectChange {
                object: identity,
                op: ObjectOp::Delete,
            });
        }
    }
    changes
}
