//! Server-side apply and `metadata.managedFields`.
//!
//! Field ownership is tracked as sets of paths in the `fieldsV1` vocabulary (`f:spec`,
//! `k:{"name":"web"}` for an item of a keyed list, `v:"x"` for an item of a set). Lists are
//! keyed, sets or atomic as the built-in schema of `emco-patch` says (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, or the patch merge key); custom resources are untyped: their
//! maps are granular and their lists atomic.
//!
//! * Every write that is not an apply ([`track_update`]) gives its manager (operation `Update`)
//!   the fields it changed, taking them away from other managers, as the API server does.
//! * An apply ([`apply`]) conflicts when it sets a field another manager owns to a different
//!   value; `force` takes such fields over. Fields the manager applied before but leaves out now
//!   are removed unless another manager also owns them. The configuration is merged into the
//!   live object: maps field by field, keyed lists item by item, sets as unions, the rest
//!   replaced.

use std::collections::BTreeSet;

use emco_patch::{FieldMeta, GroupVersionKind, ListType, PatchSchema, PatchStrategy, ValueShape};
use serde_json::{Map, Value};

use crate::meta;

/// One owned path, in `fieldsV1` elements.
pub type FieldPath = Vec<String>;

/// A set of owned paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` excluded when the kind has a status subresource.
    Main {
        /// The kind has a status subresource.
        exclude_status: bool,
    },
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    /// The managedFields `subresource` for this scope.
    pub fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
        }
    }

    fn includes(self, top_level: &str) -> bool {
        match self {
            Scope::Main { exclude_status } => !(exclude_status && top_level == "f:status"),
            Scope::Status => top_level == "f:status",
        }
    }
}

/// Metadata fields that identify or are maintained by the server, never owned by a manager.
const SERVER_METADATA: [&str; 10] = [
    "f:name",
    "f:namespace",
    "f:uid",
    "f:resourceVersion",
    "f:generation",
    "f:creationTimestamp",
    "f:managedFields",
    "f:deletionTimestamp",
    "f:deletionGracePeriodSeconds",
    "f:selfLink",
];

/// How a list's items are identified.
#[derive(Debug, Clone, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    Keyed(Vec<String>),
}

fn list_kind(meta: &FieldMeta, items: &[Value]) -> ListKind {
    let keys = match meta.list_type {
        Some(ListType::Map) if !meta.list_map_keys.is_empty() => meta.list_map_keys.clone(),
        Some(ListType::Set) => return ListKind::Set,
        Some(ListType::Atomic) => return ListKind::Atomic,
        _ if meta.strategy == PatchStrategy::Merge && !meta.merge_keys.is_empty() => {
            meta.merge_keys.clone()
        }
        _ if meta.strategy == PatchStrategy::Merge => return ListKind::Set,
        _ => return ListKind::Atomic,
    };
    // Items without the first key cannot be told apart: own the list whole.
    let all_keyed = items.iter().all(|item| {
        item.as_object()
            .is_some_and(|map| map.contains_key(&keys[0]))
    });
    if all_keyed {
        ListKind::Keyed(keys)
    } else {
        ListKind::Atomic
    }
}

/// Walks value shapes with a patch schema.
struct Typer<'a> {
    schema: &'a dyn PatchSchema,
}

impl Typer<'_> {
    fn child(&self, parent: &ValueShape, field: &str) -> FieldMeta {
        match parent {
            ValueShape::Struct(type_name) => {
                self.schema.field(type_name, field).unwrap_or_default()
            }
            ValueShape::Map(values) => FieldMeta::of_shape((**values).clone()),
            _ => FieldMeta::untyped(),
        }
    }
}

fn item_meta(list: &FieldMeta) -> FieldMeta {
    match &list.shape {
        ValueShape::List(items) => FieldMeta::of_shape((**items).clone()),
        _ => FieldMeta::untyped(),
    }
}

/// A key field of a list item; `protocol` defaults to `TCP` (ports are keyed by port and
/// protocol, and the API server defaults the protocol before keying, as here).
fn key_field(item: &Value, name: &str) -> Option<Value> {
    item.get(name)
        .cloned()
        .or_else(|| (name == "protocol" && item.is_object()).then(|| Value::String("TCP".into())))
}

fn key_element(item: &Value, keys: &[String]) -> String {
    let mut key = Map::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for name in sorted {
        if let Some(value) = key_field(item, name) {
            key.insert(name.clone(), value);
        }
    }
    format!("k:{}", Value::Object(key))
}

/// Whether a list item has the key fields of a `k:` element.
fn has_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(name, value)| key_field(item, name).as_ref() == Some(value))
}

fn same_key(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter()
        .all(|key| key_field(a, key) == key_field(b, key))
}

fn collect(
    typer: &Typer,
    value: &Value,
    shape: &ValueShape,
    path: &mut FieldPath,
    out: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                let meta = typer.child(shape, name);
                path.push(format!("f:{name}"));
                collect_field(typer, child, &meta, path, out);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

fn collect_field(
    typer: &Typer,
    value: &Value,
    meta: &FieldMeta,
    path: &mut FieldPath,
    out: &mut FieldSet,
) {
    match value {
        Value::Array(items) => match list_kind(meta, items) {
            ListKind::Atomic => {
                out.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Keyed(keys) => {
                let item_shape = item_meta(meta).shape;
                for item in items {
                    path.push(key_element(item, &keys));
                    out.insert(path.clone());
                    collect(typer, item, &item_shape, path, out);
                    path.pop();
                }
            }
        },
        _ => collect(typer, value, &meta.shape, path, out),
    }
}

/// The paths of `object` a manager of `scope` can own.
pub fn field_set(
    object: &Value,
    gvk: &GroupVersionKind,
    scope: Scope,
    schema: &dyn PatchSchema,
) -> FieldSet {
    let typer = Typer { schema };
    let mut all = FieldSet::new();
    collect(
        &typer,
        object,
        &schema.root_shape(gvk),
        &mut Vec::new(),
        &mut all,
    );
    all.retain(|path| {
        let top = path[0].as_str();
        if top == "f:apiVersion" || top == "f:kind" || !scope.includes(top) {
            return false;
        }
        !(top == "f:metadata"
            && path
                .get(1)
                .is_none_or(|field| SERVER_METADATA.contains(&field.as_str())))
    });
    all
}

/// The value at `path`, if the object has one there.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = object;
    for element in path {
        current = if let Some(field) = element.strip_prefix("f:") {
            current.as_object()?.get(field)?
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).ok()?;
            current
                .as_array()?
                .iter()
                .find(|item| has_key(item, &key))?
        } else if let Some(wanted) = element.strip_prefix("v:") {
            let wanted: Value = serde_json::from_str(wanted).ok()?;
            current.as_array()?.iter().find(|item| **item == wanted)?
        } else {
            return None;
        };
    }
    Some(current)
}

/// Removes whatever is at `path` (a map field or a list item).
fn remove_path(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for element in parents {
        let next = if let Some(field) = element.strip_prefix("f:") {
            current.as_object_mut().and_then(|map| map.get_mut(field))
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Option<Map<String, Value>> = serde_json::from_str(key).ok();
            key.and_then(|key| {
                current
                    .as_array_mut()?
                    .iter_mut()
                    .find(|item| has_key(item, &key))
            })
        } else {
            None
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = current.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        if let (Ok(key), Some(items)) = (
            serde_json::from_str::<Map<String, Value>>(key),
            current.as_array_mut(),
        ) {
            items.retain(|item| !has_key(item, &key));
        }
    } else if let Some(wanted) = last.strip_prefix("v:")
        && let (Ok(wanted), Some(items)) = (
            serde_json::from_str::<Value>(wanted),
            current.as_array_mut(),
        )
    {
        items.retain(|item| *item != wanted);
    }
}

/// `.spec.template.spec.containers[name="web"].image`, as conflict messages show a path.
pub fn display_path(path: &[String]) -> String {
    let mut text = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(key)
                .map(|key| {
                    key.iter()
                        .map(|(name, value)| format!("{name}={value}"))
                        .collect()
                })
                .unwrap_or_default();
            text.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            text.push_str(&format!("[={value}]"));
        }
    }
    text
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager used.
    pub api_version: String,
    /// When the entry last changed.
    pub time: String,
    /// `""` or `status`.
    pub subresource: String,
    /// The owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields` (entries that do not parse are dropped).
pub fn read_entries(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let text = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let manager = text("manager");
            let mut fields = FieldSet::new();
            if let Some(tree) = entry.get("fieldsV1") {
                parse_fields_v1(tree, &mut Vec::new(), &mut fields);
            }
            (!manager.is_empty()).then(|| ManagedEntry {
                manager,
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: text("subresource"),
                fields,
            })
        })
        .collect()
}

fn parse_fields_v1(tree: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(map) = tree.as_object() else {
        return;
    };
    for (element, child) in map {
        if element == "." {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            continue;
        }
        path.push(element.clone());
        if child.as_object().is_none_or(Map::is_empty) {
            out.insert(path.clone());
        } else {
            parse_fields_v1(child, path, out);
        }
        path.pop();
    }
}

/// The `fieldsV1` tree of a field set.
pub fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        insert_path(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let child = node
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(child) = child.as_object_mut() else {
        return;
    };
    if !rest.is_empty() {
        insert_path(child, rest);
    } else if first.starts_with("k:") {
        // A keyed item owned as a whole is marked with ".".
        child.insert(".".into(), Value::Object(Map::new()));
    }
}

/// Writes entries into `metadata.managedFields` (removing the field when there are none).
pub fn write_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
        return;
    }
    let rendered: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut rendered = Map::new();
            rendered.insert("manager".into(), Value::String(entry.manager.clone()));
            rendered.insert("operation".into(), Value::String(entry.operation.clone()));
            rendered.insert(
                "apiVersion".into(),
                Value::String(entry.api_version.clone()),
            );
            rendered.insert("time".into(), Value::String(entry.time.clone()));
            rendered.insert("fieldsType".into(), Value::String("FieldsV1".into()));
            rendered.insert("fieldsV1".into(), fields_v1(&entry.fields));
            if !entry.subresource.is_empty() {
                rendered.insert(
                    "subresource".into(),
                    Value::String(entry.subresource.clone()),
                );
            }
            Value::Object(rendered)
        })
        .collect();
    metadata.insert("managedFields".into(), Value::Array(rendered));
}

/// Who writes, and how, for managed-field bookkeeping.
#[derive(Clone)]
pub struct Writer<'a> {
    /// Field manager name.
    pub manager: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// Main resource or status.
    pub scope: Scope,
    /// Type of the object, for list semantics.
    pub gvk: &'a GroupVersionKind,
    /// The schema answering list semantics.
    pub schema: &'a dyn PatchSchema,
}

impl<'a> Writer<'a> {
    /// The same writer, recording `api_version` in its entries.
    pub fn with_api_version(mut self, api_version: &'a str) -> Self {
        self.api_version = api_version;
        self
    }
}

/// Records a non-apply write of `new` (replacing `old`, `None` for creates) into `new`'s
/// managedFields, starting from `old`'s entries.
pub fn track_update(old: Option<&Value>, new: &mut Value, writer: &Writer) {
    // Managed fields sent by the client replace the live ones (kubectl's migration from
    // client-side to server-side apply does this); without any, the live ones carry on.
    let proposed = read_entries(new);
    let mut entries = if proposed.is_empty() {
        old.map(read_entries).unwrap_or_default()
    } else {
        proposed
    };
    let new_set = field_set(new, writer.gvk, writer.scope, writer.schema);
    let changed: FieldSet = new_set
        .iter()
        .filter(|path| old.is_none_or(|old| value_at(old, path) != value_at(new, path)))
        .cloned()
        .collect();
    let removed: FieldSet = match old {
        Some(old) => field_set(old, writer.gvk, writer.scope, writer.schema)
            .difference(&new_set)
            .cloned()
            .collect(),
        None => FieldSet::new(),
    };
    let subresource = writer.scope.subresource();
    let is_mine = |entry: &ManagedEntry| {
        entry.manager == writer.manager
            && entry.operation == "Update"
            && entry.subresource == subresource
    };
    for entry in entries.iter_mut() {
        entry.fields.retain(|path| !removed.contains(path));
        if !is_mine(entry) {
            entry.fields.retain(|path| !changed.contains(path));
        }
    }
    if !changed.is_empty() {
        let now = meta::now_timestamp();
        match entries.iter_mut().find(|entry| is_mine(entry)) {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now;
                entry.api_version = writer.api_version.to_owned();
            }
            None => entries.push(ManagedEntry {
                manager: writer.manager.to_owned(),
                operation: "Update".into(),
                api_version: writer.api_version.to_owned(),
                time: now,
                subresource: subresource.to_owned(),
                fields: changed,
            }),
        }
    }
    entries.retain(|entry| !entry.fields.is_empty());
    write_entries(new, &entries);
}

/// Fields another manager owns with a different value: (manager, displayed path).
pub type Conflicts = Vec<(String, String)>;

/// Server-side apply of `config` by `writer.manager` onto `current` (`None`: the object does
/// not exist yet). Returns the merged object with its managedFields, or the conflicts.
pub fn apply(
    current: Option<&Value>,
    config: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Conflicts> {
    apply_forgiving(current, config, writer, force, &FieldSet::new())
}

/// The fields a server-side apply may take over from client-side apply without conflict: those
/// of the `last-applied-configuration` annotation, provided the live object still agrees with
/// it (the API server's rule for moving from `kubectl apply` to `kubectl apply --server-side`).
pub fn last_applied_takeover(current: &Value, writer: &Writer) -> FieldSet {
    let Some(annotation) = current
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
    else {
        return FieldSet::new();
    };
    let Ok(last_applied) = serde_json::from_str::<Value>(annotation) else {
        return FieldSet::new();
    };
    let fields = field_set(&last_applied, writer.gvk, writer.scope, writer.schema);
    // Leaves only: list items and (empty) maps are containers the live object may have filled.
    let agrees = fields
        .iter()
        .all(|path| match value_at(&last_applied, path) {
            Some(Value::Object(_)) | None => true,
            applied => {
                path.last().is_some_and(|element| element.starts_with("k:"))
                    || value_at(current, path) == applied
            }
        });
    if agrees { fields } else { FieldSet::new() }
}

/// [`apply`], where conflicts on `forgiven` fields are taken over as if forced.
pub fn apply_forgiving(
    current: Option<&Value>,
    config: &Value,
    writer: &Writer,
    force: bool,
    forgiven: &FieldSet,
) -> Result<Value, Conflicts> {
    let mut config = config.clone();
    if let Some(metadata) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    let applied = field_set(&config, writer.gvk, writer.scope, writer.schema);
    let subresource = writer.scope.subresource();
    let Some(current) = current else {
        let mut created = config;
        let entry = ManagedEntry {
            manager: writer.manager.to_owned(),
            operation: "Apply".into(),
            api_version: writer.api_version.to_owned(),
            time: meta::now_timestamp(),
            subresource: subresource.to_owned(),
            fields: applied,
        };
        write_entries(&mut created, &[entry]);
        return Ok(created);
    };
    let mut entries = read_entries(current);
    let is_mine = |entry: &ManagedEntry| {
        entry.manager == writer.manager
            && entry.operation == "Apply"
            && entry.subresource == subresource
    };
    // Conflicts: leaves another manager owns whose value the configuration changes.
    let mut conflicts = Vec::new();
    for entry in entries
        .iter()
        .filter(|entry| entry.manager != writer.manager)
    {
        for path in entry.fields.intersection(&applied) {
            let is_item_node = path.last().is_some_and(|element| element.starts_with("k:"));
            if !is_item_node && value_at(current, path) != value_at(&config, path) {
                conflicts.push((entry.manager.clone(), path.clone()));
            }
        }
    }
    let unforgiven: Vec<&(String, FieldPath)> = conflicts
        .iter()
        .filter(|(_, path)| !forgiven.contains(path))
        .collect();
    if !unforgiven.is_empty() && !force {
        return Err(unforgiven
            .into_iter()
            .map(|(manager, path)| (manager.clone(), display_path(path)))
            .collect());
    }
    for (manager, path) in &conflicts {
        for entry in entries.iter_mut().filter(|entry| &entry.manager == manager) {
            entry.fields.remove(path);
        }
    }
    // Fields this manager applied before and no longer applies go, unless someone else owns
    // them (or something beneath them).
    let previous: FieldSet = entries
        .iter()
        .find(|entry| is_mine(entry))
        .map(|entry| entry.fields.clone())
        .unwrap_or_default();
    let mut merged = current.clone();
    for path in previous.difference(&applied) {
        let owned_elsewhere = entries
            .iter()
            .filter(|entry| !is_mine(entry))
            .any(|entry| entry.fields.iter().any(|owned| owned.starts_with(path)));
        if !owned_elsewhere {
            remove_path(&mut merged, path);
        }
    }
    let typer = Typer {
        schema: writer.schema,
    };
    merge_into(
        &typer,
        &mut merged,
        &config,
        &writer.schema.root_shape(writer.gvk),
    );
    let now = meta::now_timestamp();
    match entries.iter_mut().find(|entry| is_mine(entry)) {
        Some(entry) => {
            if entry.fields != applied {
                entry.time = now;
            }
            entry.fields = applied;
            entry.api_version = writer.api_version.to_owned();
        }
        None => entries.push(ManagedEntry {
            manager: writer.manager.to_owned(),
            operation: "Apply".into(),
            api_version: writer.api_version.to_owned(),
            time: now,
            subresource: subresource.to_owned(),
            fields: applied,
        }),
    }
    entries.retain(|entry| !entry.fields.is_empty());
    write_entries(&mut merged, &entries);
    Ok(merged)
}

fn merge_into(typer: &Typer, target: &mut Value, config: &Value, shape: &ValueShape) {
    let (Some(target), Some(config)) = (target.as_object_mut(), config.as_object()) else {
        return;
    };
    for (name, value) in config {
        if value.is_null() {
            continue;
        }
        let meta = typer.child(shape, name);
        match target.get_mut(name) {
            Some(existing) => merge_field(typer, existing, value, &meta),
            None => {
                target.insert(name.clone(), value.clone());
            }
        }
    }
}

fn merge_field(typer: &Typer, target: &mut Value, config: &Value, meta: &FieldMeta) {
    match (&mut *target, config) {
        (Value::Object(_), Value::Object(_)) if meta.strategy != PatchStrategy::Replace => {
            merge_into(typer, target, config, &meta.shape);
        }
        (Value::Array(existing), Value::Array(items)) => match list_kind(meta, items) {
            ListKind::Atomic => *target = config.clone(),
            ListKind::Set => {
                for item in items {
                    if !existing.contains(item) {
                        existing.push(item.clone());
                    }
                }
            }
            ListKind::Keyed(keys) => {
                let item_meta = item_meta(meta);
                for item in items {
                    match existing
                        .iter_mut()
                        .find(|current| same_key(current, item, &keys))
                    {
                        Some(current) => merge_field(typer, current, item, &item_meta),
                        None => existing.push(item.clone()),
                    }
                }
            }
        },
        _ => *target = config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emco_patch::BuiltinSchema;
    use serde_json::json;

    fn deployment_gvk() -> GroupVersionKind {
        GroupVersionKind::new("apps", "v1", "Deployment")
    }

    fn writer<'a>(manager: &'a str, gvk: &'a GroupVersionKind) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            scope: Scope::Main {
                exclude_status: true,
            },
            gvk,
            schema: &BuiltinSchema,
        }
    }

    fn deployment(replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                ]}}
            },
            "status": {"replicas": 1}
        })
    }

    #[test]
    fn field_sets_key_containers_and_skip_identity_and_status() {
        let gvk = deployment_gvk();
        let set = field_set(
            &deployment(1, "nginx"),
            &gvk,
            Scope::Main {
                exclude_status: true,
            },
            &BuiltinSchema,
        );
        let shown: Vec<String> = set.iter().map(|path| display_path(path)).collect();
        assert!(shown.contains(&".spec.replicas".to_owned()), "{shown:?}");
        assert!(shown.contains(&".metadata.labels.app".to_owned()));
        assert!(shown.contains(&".spec.template.spec.containers[name=\"web\"].image".to_owned()));
        assert!(shown.contains(
            &".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]".to_owned()
        ));
        assert!(
            !shown
                .iter()
                .any(|path| path.starts_with(".status") || path == ".metadata.name")
        );
        // fieldsV1 round trip.
        let tree = fields_v1(&set);
        let mut parsed = FieldSet::new();
        parse_fields_v1(&tree, &mut Vec::new(), &mut parsed);
        assert_eq!(parsed, set);
        assert!(
            tree.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/.")
                .is_some()
        );
    }

    #[test]
    fn second_manager_conflicts_unless_forced() {
        let gvk = deployment_gvk();
        let first = apply(None, &deployment(2, "nginx"), &writer("alice", &gvk), false).unwrap();
        // Same values: shared ownership, no conflict.
        let shared = apply(
            Some(&first),
            &deployment(2, "nginx"),
            &writer("bob", &gvk),
            false,
        )
        .unwrap();
        assert_eq!(read_entries(&shared).len(), 2);
        // Different replicas: conflict with alice.
        let conflicts = apply(
            Some(&first),
            &deployment(3, "nginx"),
            &writer("bob", &gvk),
            false,
        )
        .unwrap_err();
        assert_eq!(
            conflicts,
            vec![("alice".to_owned(), ".spec.replicas".to_owned())]
        );
        let forced = apply(
            Some(&first),
            &deployment(3, "nginx"),
            &writer("bob", &gvk),
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let alice = read_entries(&forced)
            .into_iter()
            .find(|entry| entry.manager == "alice")
            .unwrap();
        assert!(
            !alice
                .fields
                .contains(&vec!["f:spec".to_owned(), "f:replicas".to_owned()])
        );
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_removed() {
        let gvk = deployment_gvk();
        let first = apply(None, &deployment(2, "nginx"), &writer("alice", &gvk), false).unwrap();
        let mut smaller = deployment(2, "nginx");
        smaller["metadata"]["labels"] = json!({});
        smaller["spec"].as_object_mut().unwrap().remove("replicas");
        let second = apply(Some(&first), &smaller, &writer("alice", &gvk), false).unwrap();
        assert!(second["spec"].get("replicas").is_none());
        assert!(second["metadata"]["labels"].get("app").is_none());
        // Status is kept: nobody applies it from the main resource.
        assert_eq!(second["status"]["replicas"], 1);
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let gvk = deployment_gvk();
        let applied = apply(None, &deployment(2, "nginx"), &writer("alice", &gvk), false).unwrap();
        let mut edited = applied.clone();
        edited["spec"]["replicas"] = json!(5);
        track_update(Some(&applied), &mut edited, &writer("kubectl-edit", &gvk));
        let entries = read_entries(&edited);
        let editor = entries
            .iter()
            .find(|entry| entry.manager == "kubectl-edit")
            .unwrap();
        assert_eq!(editor.operation, "Update");
        assert_eq!(editor.fields.len(), 1);
        // Now alice re-applying replicas=2 conflicts with the editor.
        let conflicts = apply(
            Some(&edited),
            &deployment(2, "nginx"),
            &writer("alice", &gvk),
            false,
        )
        .unwrap_err();
        assert_eq!(conflicts[0].0, "kubectl-edit");
    }

    #[test]
    fn server_side_apply_takes_over_from_client_side_apply() {
        let gvk = deployment_gvk();
        let mut live = deployment(2, "nginx");
        let annotation = serde_json::to_string(&deployment(2, "nginx")).unwrap();
        live["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": annotation});
        let mut created = live.clone();
        track_update(
            None,
            &mut created,
            &writer("kubectl-client-side-apply", &gvk),
        );
        let takeover = last_applied_takeover(&created, &writer("kubectl", &gvk));
        assert!(takeover.contains(&vec!["f:spec".to_owned(), "f:replicas".to_owned()]));
        let applied = apply_forgiving(
            Some(&created),
            &deployment(3, "nginx"),
            &writer("kubectl", &gvk),
            false,
            &takeover,
        )
        .unwrap();
        assert_eq!(applied["spec"]["replicas"], 3);
        // Once the live object drifts from the annotation, the takeover no longer applies.
        let mut drifted = created.clone();
        drifted["spec"]["replicas"] = json!(7);
        assert!(last_applied_takeover(&drifted, &writer("kubectl", &gvk)).is_empty());
    }

    #[test]
    fn keyed_lists_merge_item_by_item() {
        let gvk = deployment_gvk();
        let first = apply(None, &deployment(1, "nginx"), &writer("alice", &gvk), false).unwrap();
        let mut sidecar = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}
        });
        let merged = apply(Some(&first), &sidecar, &writer("mesh", &gvk), false).unwrap();
        let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|container| container["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["web", "proxy"]);
        // The mesh manager withdrawing its container removes only that one.
        sidecar["spec"]["template"]["spec"]["containers"] = json!([]);
        let withdrawn = apply(Some(&merged), &sidecar, &writer("mesh", &gvk), false).unwrap();
        assert_eq!(
            withdrawn["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
