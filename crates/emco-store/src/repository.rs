//! The resource repository: stores EMCO resources in a [`Store`] and enforces referential
//! integrity inside the same transaction as each write.
//!
//! - create/update: the parent and every referenced resource must exist (compared in the txn);
//! - delete: refused while children, referrers, or a blocking lifecycle state exist.
//!
//! A delete reads children and referrers outside the transaction, so every write of a child or a
//! referrer also rewrites the target's *guard* key; the delete compares the guard's revision and
//! retries when it moved. That closes the race without locking the whole store.

use std::sync::{Arc, RwLock};

use emco_core::key::ResourceKey;
use emco_core::kinds::base_segment;
use emco_core::refschema::{RefSchema, SchemaError, SchemaSegment};
use serde_json::{Value, json};

use crate::{Compare, Op, Store, Txn};

/// Where registered schema segments are kept.
const SCHEMA_PREFIX: &str = "schema/";
/// How often a write is retried when a concurrent write moved what it compared.
const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    #[error("cannot write {key}: parent {parent} does not exist")]
    ParentMissing {
        key: ResourceKey,
        parent: ResourceKey,
    },
    #[error("cannot write {key}: referenced {target} does not exist")]
    ReferenceMissing {
        key: ResourceKey,
        target: ResourceKey,
    },
    #[error("cannot delete {key}: child {child} exists; delete it first")]
    HasChildren { key: ResourceKey, child: String },
    #[error("cannot delete {key}: it is referenced by {referrer}")]
    Referenced { key: ResourceKey, referrer: String },
    #[error("cannot delete {key}: {reason}")]
    Blocked { key: ResourceKey, reason: String },
    #[error("{key} was modified concurrently; try again")]
    Contended { key: ResourceKey },
    #[error("resource kind {0:?} is not in the referential schema")]
    UnknownKind(String),
    #[error("key {0} does not match its kind's key elements")]
    BadKey(ResourceKey),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("stored document {key:?} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

pub type RepoResult<T> = Result<T, RepoError>;

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub key: ResourceKey,
    /// The resource document as the user wrote it (plus hub-added fields, if any).
    pub data: Value,
    pub mod_revision: u64,
}

/// Whether an upsert created or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
}

/// What to do with a resource's binary attachment on update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobChange {
    Keep,
    Replace(Vec<u8>),
}

/// What a write does when a resource it refers to does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DanglingReferences {
    /// Refuse the write (EMCO-rs default).
    #[default]
    Refuse,
    /// Store it anyway, as upstream EMCO does (it only logs a warning); the reference is still
    /// recorded, so the target cannot be deleted once it exists.
    Allow,
}

pub struct Repository {
    store: Arc<dyn Store>,
    schema: RwLock<Arc<RefSchema>>,
    dangling: DanglingReferences,
}

impl Repository {
    /// Opens the repository, merging the base schema with every segment registered earlier.
    pub async fn open(store: Arc<dyn Store>) -> RepoResult<Self> {
        let repo = Self {
            store,
            schema: RwLock::new(Arc::new(RefSchema::build(vec![base_segment()])?)),
            dangling: DanglingReferences::Refuse,
        };
        repo.reload_schema().await?;
        Ok(repo)
    }

    /// Sets the policy for references to missing resources.
    pub fn with_dangling_references(mut self, policy: DanglingReferences) -> Self {
        self.dangling = policy;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The schema in force.
    pub fn schema(&self) -> Arc<RefSchema> {
        match self.schema.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_schema(&self, schema: RefSchema) {
        let mut guard = match self.schema.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(schema);
    }

    /// Re-reads registered segments (another hub sharing the store may have added some).
    pub async fn reload_schema(&self) -> RepoResult<()> {
        let mut segments = vec![base_segment()];
        for entry in self.store.list(SCHEMA_PREFIX).await? {
            let segment: SchemaSegment =
                serde_json::from_slice(&entry.value).map_err(|e| RepoError::Corrupt {
                    key: entry.key.clone(),
                    message: e.to_string(),
                })?;
            segments.push(segment);
        }
        self.set_schema(RefSchema::build(segments)?);
        Ok(())
    }

    /// Registers a controller's schema segment. Registering an identical segment again is a no-op
    /// (controllers re-register on every start); a different segment under a taken name is refused.
    pub async fn register_segment(&self, segment: SchemaSegment) -> RepoResult<bool> {
        for _ in 0..MAX_ATTEMPTS {
            self.reload_schema().await?;
            let current = self.schema();
            if let Some(existing) = current.segments().iter().find(|s| s.name == segment.name) {
                if existing == &segment {
                    return Ok(false);
                }
                return Err(SchemaError::DuplicateSegment(segment.name).into());
            }
            let merged = current.with_segment(segment.clone())?;
            let key = format!("{SCHEMA_PREFIX}{}", segment.name);
            let value = serde_json::to_vec(&segment).map_err(|e| RepoError::Corrupt {
                key: key.clone(),
                message: e.to_string(),
            })?;
            let out = self
                .store
                .txn(Txn {
                    compares: vec![Compare::Absent(key.clone())],
                    ops: vec![Op::Put { key, value }],
                })
                .await?;
            if out.succeeded {
                self.set_schema(merged);
                return Ok(true);
            }
        }
        Err(RepoError::Contended {
            key: ResourceKey::new("schema", vec![("segment".into(), segment.name)]),
        })
    }

    /// Removes a registered segment; refused while resources of its kinds exist.
    pub async fn unregister_segment(&self, name: &str) -> RepoResult<()> {
        self.reload_schema().await?;
        let schema = self.schema();
        let Some(segment) = schema.segments().iter().find(|s| s.name == name).cloned() else {
            return Err(RepoError::NotFound(ResourceKey::new(
                "schema",
                vec![("segment".into(), name.into())],
            )));
        };
        if name == emco_core::kinds::BASE_SEGMENT {
            return Err(RepoError::Blocked {
                key: ResourceKey::new("schema", vec![("segment".into(), name.into())]),
                reason: "the built-in segment cannot be removed".into(),
            });
        }
        let remaining: Vec<SchemaSegment> = schema
            .segments()
            .iter()
            .filter(|s| s.name != name)
            .cloned()
            .collect();
        RefSchema::build(remaining.clone())?;
        for resource in &segment.resources {
            let stored = resource.name.rsplit('.').next().unwrap_or(&resource.name);
            let prefix = format!("{}{stored}/", emco_core::key::DATA_PREFIX);
            if let Some(k) = self
                .store
                .list_keys(&prefix, Some(1))
                .await?
                .into_iter()
                .next()
            {
                return Err(RepoError::Blocked {
                    key: ResourceKey::new("schema", vec![("segment".into(), name.into())]),
                    reason: format!("resource {k} of this segment still exists"),
                });
            }
        }
        self.store.delete(&format!("{SCHEMA_PREFIX}{name}")).await?;
        self.set_schema(RefSchema::build(remaining)?);
        Ok(())
    }

    fn check_key(&self, schema: &RefSchema, key: &ResourceKey) -> RepoResult<()> {
        let node = schema
            .node(&key.kind)
            .ok_or_else(|| RepoError::UnknownKind(key.kind.clone()))?;
        let names_match = node.key_elements.len() == key.elements.len()
            && node
                .key_elements
                .iter()
                .zip(&key.elements)
                .all(|(a, (b, _))| a == b);
        if !node.stored || !names_match {
            return Err(RepoError::BadKey(key.clone()));
        }
        Ok(())
    }

    pub async fn get(&self, key: &ResourceKey) -> RepoResult<Stored> {
        let schema = self.schema();
        self.check_key(&schema, key)?;
        let entry = self
            .store
            .get(&key.data_key())
            .await?
            .ok_or_else(|| RepoError::NotFound(key.clone()))?;
        let record = decode(&entry.key, &entry.value)?;
        Ok(Stored {
            key: key.clone(),
            data: record.data,
            mod_revision: entry.mod_revision,
        })
    }

    pub async fn exists(&self, key: &ResourceKey) -> RepoResult<bool> {
        Ok(self.store.get(&key.data_key()).await?.is_some())
    }

    /// The binary attachment of a resource, if it has one.
    pub async fn get_blob(&self, key: &ResourceKey) -> RepoResult<Option<Vec<u8>>> {
        Ok(self.store.get(&key.blob_key()).await?.map(|e| e.value))
    }

    /// Every resource of `kind` under `parent` (the parent's full key; an empty key for roots).
    pub async fn list(&self, kind: &str, parent: &ResourceKey) -> RepoResult<Vec<Stored>> {
        let schema = self.schema();
        let node = schema
            .node(kind)
            .ok_or_else(|| RepoError::UnknownKind(kind.to_owned()))?;
        let mut entries = self.store.list(&parent.child_prefix(kind)).await?;
        // Upstream lists in creation order, and clients rely on it.
        entries.sort_by_key(|e| e.create_revision);
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(values) = ResourceKey::values_from_data_key(kind, &entry.key) else {
                continue;
            };
            if values.len() != node.key_elements.len() {
                continue;
            }
            let elements = node
                .key_elements
                .iter()
                .cloned()
                .zip(values.into_iter().map(str::to_owned))
                .collect();
            let record = decode(&entry.key, &entry.value)?;
            out.push(Stored {
                key: ResourceKey::new(kind, elements),
                data: record.data,
                mod_revision: entry.mod_revision,
            });
        }
        Ok(out)
    }

    /// Creates a resource; fails if it exists or its parent or a reference is missing.
    pub async fn create(
        &self,
        key: &ResourceKey,
        data: Value,
        blob: Option<Vec<u8>>,
    ) -> RepoResult<Stored> {
        let schema = self.schema();
        self.check_key(&schema, key)?;
        let plan = WritePlan::new(&schema, key, &data, self.dangling);
        let mut compares = vec![Compare::Absent(key.data_key())];
        let mut ops = vec![Op::Put {
            key: key.data_key(),
            value: encode(&data, &plan.ref_entries),
        }];
        if let Some(blob) = blob {
            ops.push(Op::Put {
                key: key.blob_key(),
                value: blob,
            });
        }
        plan.extend(&mut compares, &mut ops, &[]);
        let out = self.store.txn(Txn { compares, ops }).await?;
        if !out.succeeded {
            return Err(plan.explain(key, out.failed_compare, true));
        }
        Ok(Stored {
            key: key.clone(),
            data,
            mod_revision: out.revision,
        })
    }

    /// Replaces a resource, creating it when it does not exist.
    pub async fn upsert(
        &self,
        key: &ResourceKey,
        data: Value,
        blob: BlobChange,
    ) -> RepoResult<(Stored, Upserted)> {
        let schema = self.schema();
        self.check_key(&schema, key)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(existing) = self.store.get(&key.data_key()).await? else {
                let blob = match &blob {
                    BlobChange::Replace(b) => Some(b.clone()),
                    BlobChange::Keep => None,
                };
                match self.create(key, data.clone(), blob).await {
                    Ok(stored) => return Ok((stored, Upserted::Created)),
                    Err(RepoError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                }
            };
            let old = decode(&existing.key, &existing.value)?;
            let plan = WritePlan::new(&schema, key, &data, self.dangling);
            let mut compares = vec![Compare::ModRevision(key.data_key(), existing.mod_revision)];
            let mut ops = vec![Op::Put {
                key: key.data_key(),
                value: encode(&data, &plan.ref_entries),
            }];
            if let BlobChange::Replace(b) = &blob {
                ops.push(Op::Put {
                    key: key.blob_key(),
                    value: b.clone(),
                });
            }
            let stale: Vec<String> = old
                .refs
                .iter()
                .filter(|r| !plan.ref_entries.contains(r))
                .cloned()
                .collect();
            plan.extend(&mut compares, &mut ops, &stale);
            let out = self.store.txn(Txn { compares, ops }).await?;
            if out.succeeded {
                return Ok((
                    Stored {
                        key: key.clone(),
                        data,
                        mod_revision: out.revision,
                    },
                    Upserted::Updated,
                ));
            }
            if out.failed_compare != Some(0) {
                return Err(plan.explain(key, out.failed_compare, false));
            }
        }
        Err(RepoError::Contended { key: key.clone() })
    }

    /// Deletes a resource; refused while it has children or referrers or a blocking state.
    pub async fn delete(&self, key: &ResourceKey) -> RepoResult<()> {
        let schema = self.schema();
        self.check_key(&schema, key)?;
        let node = schema
            .node(&key.kind)
            .ok_or_else(|| RepoError::UnknownKind(key.kind.clone()))?;
        for _ in 0..MAX_ATTEMPTS {
            let entry = self
                .store
                .get(&key.data_key())
                .await?
                .ok_or_else(|| RepoError::NotFound(key.clone()))?;
            let record = decode(&entry.key, &entry.value)?;
            let guard_rev = self
                .store
                .get(&key.guard_key())
                .await?
                .map_or(0, |e| e.mod_revision);
            for child in &node.children {
                if let Some(k) = self
                    .store
                    .list_keys(&key.child_prefix(child), Some(1))
                    .await?
                    .into_iter()
                    .next()
                {
                    return Err(RepoError::HasChildren {
                        key: key.clone(),
                        child: describe(&k),
                    });
                }
            }
            if let Some(k) = self
                .store
                .list_keys(&key.referrers_prefix(), Some(1))
                .await?
                .into_iter()
                .next()
            {
                let referrer = k
                    .strip_prefix(&key.referrers_prefix())
                    .unwrap_or(&k)
                    .to_owned();
                return Err(RepoError::Referenced {
                    key: key.clone(),
                    referrer,
                });
            }
            let state = self.store.get(&key.state_key()).await?;
            let state_rev = state.as_ref().map_or(0, |e| e.mod_revision);
            if let Some(reason) = state.as_ref().and_then(|s| blocking_reason(&s.value)) {
                return Err(RepoError::Blocked {
                    key: key.clone(),
                    reason,
                });
            }
            let compares = vec![
                Compare::ModRevision(key.data_key(), entry.mod_revision),
                Compare::ModRevision(key.guard_key(), guard_rev),
                Compare::ModRevision(key.state_key(), state_rev),
            ];
            let mut ops = vec![
                Op::Delete {
                    key: key.data_key(),
                },
                Op::Delete {
                    key: key.blob_key(),
                },
                Op::Delete {
                    key: key.guard_key(),
                },
                Op::Delete {
                    key: key.state_key(),
                },
            ];
            ops.extend(record.refs.iter().map(|r| Op::Delete { key: r.clone() }));
            if self.store.txn(Txn { compares, ops }).await?.succeeded {
                return Ok(());
            }
        }
        Err(RepoError::Contended { key: key.clone() })
    }

    /// The lifecycle state document of a resource, with its revision.
    pub async fn get_state(&self, key: &ResourceKey) -> RepoResult<Option<(Value, u64)>> {
        match self.store.get(&key.state_key()).await? {
            None => Ok(None),
            Some(e) => {
                let v = serde_json::from_slice(&e.value).map_err(|err| RepoError::Corrupt {
                    key: e.key.clone(),
                    message: err.to_string(),
                })?;
                Ok(Some((v, e.mod_revision)))
            }
        }
    }

    /// Writes a state document if the resource exists and the state is still at `expected_revision`
    /// (0: no state yet). A state with a string member `deleteBlocked` makes deletes fail with it.
    /// Returns false when the compare failed (re-read and retry).
    pub async fn put_state(
        &self,
        key: &ResourceKey,
        state: &Value,
        expected_revision: u64,
    ) -> RepoResult<bool> {
        self.put_state_with(key, state, expected_revision, Vec::new())
            .await
    }

    /// [`Repository::put_state`] plus `extra` writes in the same transaction, so a decision
    /// recorded elsewhere (e.g. the synchronizer's work order) is durable exactly when the state
    /// change is. `extra` must not touch the state key.
    pub async fn put_state_with(
        &self,
        key: &ResourceKey,
        state: &Value,
        expected_revision: u64,
        extra: Vec<Op>,
    ) -> RepoResult<bool> {
        self.put_states_with(&[(key, state, expected_revision)], extra)
            .await
    }

    /// Like [`Repository::put_state_with`] for the states of several resources at once (a
    /// migrate moves two groups): all are written, with `extra`, or none. `Err(NotFound)`
    /// names the first resource that is gone.
    pub async fn put_states_with(
        &self,
        states: &[(&ResourceKey, &Value, u64)],
        extra: Vec<Op>,
    ) -> RepoResult<bool> {
        let mut compares = Vec::with_capacity(states.len() * 2);
        let mut ops = Vec::with_capacity(states.len() + extra.len());
        for (key, state, expected_revision) in states {
            let value = serde_json::to_vec(state).map_err(|e| RepoError::Corrupt {
                key: key.state_key(),
                message: e.to_string(),
            })?;
            compares.push(Compare::Exists(key.data_key()));
            compares.push(Compare::ModRevision(key.state_key(), *expected_revision));
            ops.push(Op::Put {
                key: key.state_key(),
                value,
            });
        }
        ops.extend(extra);
        let out = self.store.txn(Txn { compares, ops }).await?;
        if !out.succeeded
            && let Some(failed) = out.failed_compare
            && failed % 2 == 0
            && let Some((key, _, _)) = states.get(failed / 2)
        {
            return Err(RepoError::NotFound((*key).clone()));
        }
        Ok(out.succeeded)
    }
}

/// The integrity part of a create or update: parent and reference checks, index entries, guards.
struct WritePlan {
    parent: Option<ResourceKey>,
    references: Vec<ResourceKey>,
    ref_entries: Vec<String>,
    dangling: DanglingReferences,
}

impl WritePlan {
    fn new(
        schema: &RefSchema,
        key: &ResourceKey,
        data: &Value,
        dangling: DanglingReferences,
    ) -> Self {
        let parent = schema.parent_key(key);
        let references: Vec<ResourceKey> = schema
            .references_of(key, data)
            .into_iter()
            .filter(|r| schema.node(&r.kind).is_some_and(|n| n.stored) && r != key)
            .collect();
        let mut ref_entries: Vec<String> =
            references.iter().map(|t| t.referrer_entry(key)).collect();
        ref_entries.dedup();
        Self {
            parent,
            references,
            ref_entries,
            dangling,
        }
    }

    /// Appends the checks (after the caller's own first compare) and the index/guard writes.
    fn extend(&self, compares: &mut Vec<Compare>, ops: &mut Vec<Op>, stale_entries: &[String]) {
        let mut guards: Vec<String> = Vec::new();
        if let Some(p) = &self.parent {
            compares.push(Compare::Exists(p.data_key()));
            guards.push(p.guard_key());
        }
        for r in &self.references {
            if self.dangling == DanglingReferences::Refuse {
                compares.push(Compare::Exists(r.data_key()));
            }
            guards.push(r.guard_key());
        }
        for e in &self.ref_entries {
            ops.push(Op::Put {
                key: e.clone(),
                value: Vec::new(),
            });
        }
        for e in stale_entries {
            ops.push(Op::Delete { key: e.clone() });
        }
        guards.sort();
        guards.dedup();
        // Each guard write bumps its revision, which is what a concurrent delete compares.
        ops.extend(guards.into_iter().map(|key| Op::Put {
            key,
            value: Vec::new(),
        }));
    }

    fn explain(&self, key: &ResourceKey, failed: Option<usize>, creating: bool) -> RepoError {
        let parent_slots = usize::from(self.parent.is_some());
        match failed {
            Some(0) if creating => RepoError::AlreadyExists(key.clone()),
            Some(i) if i >= 1 && i < 1 + parent_slots => match &self.parent {
                Some(parent) => RepoError::ParentMissing {
                    key: key.clone(),
                    parent: parent.clone(),
                },
                None => RepoError::Contended { key: key.clone() },
            },
            Some(i) => match self.references.get(i - 1 - parent_slots) {
                Some(target) => RepoError::ReferenceMissing {
                    key: key.clone(),
                    target: target.clone(),
                },
                None => RepoError::Contended { key: key.clone() },
            },
            None => RepoError::Contended { key: key.clone() },
        }
    }
}

struct Record {
    data: Value,
    refs: Vec<String>,
}

fn encode(data: &Value, refs: &[String]) -> Vec<u8> {
    // Serializing a `Value` cannot fail.
    serde_json::to_vec(&json!({ "data": data, "refs": refs })).unwrap_or_default()
}

fn decode(key: &str, bytes: &[u8]) -> RepoResult<Record> {
    let corrupt = |message: String| RepoError::Corrupt {
        key: key.to_owned(),
        message,
    };
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let data = v
        .get_mut("data")
        .map(Value::take)
        .ok_or_else(|| corrupt("no data member".into()))?;
    let refs = match v.get("refs") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Record { data, refs })
}

fn blocking_reason(state: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(state).ok()?;
    v.get("deleteBlocked")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A readable form of a storage key (`d/app/p/ca/v1/a1` -> `app p/ca/v1/a1`).
fn describe(storage_key: &str) -> String {
    let rest = storage_key
        .strip_prefix(emco_core::key::DATA_PREFIX)
        .unwrap_or(storage_key);
    match rest.split_once('/') {
        Some((kind, values)) => format!("{kind} {values}"),
        None => rest.to_owned(),
    }
}
