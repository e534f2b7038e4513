//! What the strategic merge patch needs to know about object types: per field, its patch
//! strategy, merge key, list type and value shape; [`BuiltinSchema`] answers for Kubernetes'
//! built-in kinds from `k8s_patch_metadata.json`, generated from the Kubernetes v1.33 OpenAPI
//! definitions by `python3 scripts/gen-patch-metadata.py` (run from the repository root; it
//! pip-downloads the pinned `kubernetes-validate` wheel, or takes `--wheel PATH`; `--check`
//! reports whether the checked-in file is current).

use crate::GroupVersionKind;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The shape of a value, as far as patching cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ValueShape {
    /// An object with named fields, described by [`PatchSchema::field`] under this type name.
    Struct(String),
    /// A list whose items have the inner shape.
    List(Box<ValueShape>),
    /// A map (string keys) whose values have the inner shape.
    Map(Box<ValueShape>),
    /// A string, number or boolean (also Quantity, Time, IntOrString).
    Scalar,
    /// Nothing known: a free-form object, a field the schema does not list, or an unknown kind.
    /// Maps under it merge recursively and lists are replaced.
    #[default]
    Untyped,
}

/// `x-kubernetes-patch-strategy` (without `retainKeys`, see [`FieldMeta::retain_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatchStrategy {
    /// No strategy: maps merge, lists are replaced.
    #[default]
    Default,
    /// Lists merge: by [`FieldMeta::merge_keys`] for lists of maps, as a union for scalars.
    Merge,
    /// The value is replaced as a whole, even when it is a map.
    Replace,
}

/// `x-kubernetes-list-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value.
    Atomic,
    /// Scalar items, each at most once.
    Set,
    /// Map items identified by [`FieldMeta::list_map_keys`].
    Map,
}

/// Everything the patch functions need to know about one field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMeta {
    /// What the field holds.
    pub shape: ValueShape,
    /// How a patch combines with the current value.
    pub strategy: PatchStrategy,
    /// `retainKeys` was among the strategies: a two-way diff sends `$retainKeys` for this field
    /// (for lists: for each item). Applying a patch honours `$retainKeys` wherever it appears.
    pub retain_keys: bool,
    /// Keys identifying the items of a merge list of maps (`x-kubernetes-patch-merge-key`; the
    /// built-in types always have exactly one). With several keys, items are the same when all
    /// keys have equal values, a missing key matching only a missing key.
    pub merge_keys: Vec<String>,
    /// `x-kubernetes-list-type`, informational for strategic merge patch (kubectl ignores it).
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`, informational for strategic merge patch.
    pub list_map_keys: Vec<String>,
}

impl FieldMeta {
    /// A field nothing is known about.
    pub fn untyped() -> Self {
        Self::default()
    }

    /// A field of the given shape with no patch metadata.
    pub fn of_shape(shape: ValueShape) -> Self {
        Self {
            shape,
            ..Self::default()
        }
    }

    /// The field is a list merged item by item (rather than replaced).
    pub fn merges_list(&self) -> bool {
        self.strategy == PatchStrategy::Merge
    }
}

/// Answers the strategic merge patch's questions about types. Implement it for other schemas
/// (e.g. a CRD's OpenAPI with `x-kubernetes-list-type: map` mapped to [`PatchStrategy::Merge`]
/// with several [`FieldMeta::merge_keys`]).
pub trait PatchSchema {
    /// The shape of a whole object of this kind; [`ValueShape::Untyped`] for kinds the schema
    /// does not know (their maps merge and lists are replaced, like a JSON merge patch).
    fn root_shape(&self, gvk: &GroupVersionKind) -> ValueShape;

    /// The metadata of `field` in the struct type `type_name` (a name from a
    /// [`ValueShape::Struct`]); `None` when the type does not list the field, which then counts
    /// as untyped.
    fn field(&self, type_name: &str, field: &str) -> Option<FieldMeta>;
}

/// The metadata of the field `name` in a value of shape `parent`.
pub(crate) fn child_meta(schema: &dyn PatchSchema, parent: &ValueShape, name: &str) -> FieldMeta {
    match parent {
        ValueShape::Struct(type_name) => schema.field(type_name, name).unwrap_or_default(),
        ValueShape::Map(values) => FieldMeta::of_shape((**values).clone()),
        ValueShape::List(_) | ValueShape::Scalar | ValueShape::Untyped => FieldMeta::untyped(),
    }
}

/// Looks up the field at `path` (field names from the object's root, list items skipped: e.g.
/// `["spec", "template", "spec", "containers", "ports"]`) of a `gvk` object. `None` for an empty
/// path; fields the schema does not know come back untyped.
pub fn lookup_path(
    schema: &dyn PatchSchema,
    gvk: &GroupVersionKind,
    path: &[&str],
) -> Option<FieldMeta> {
    let mut shape = schema.root_shape(gvk);
    let mut meta = None;
    for name in path {
        while let ValueShape::List(items) = shape {
            shape = *items;
        }
        let field = child_meta(schema, &shape, name);
        shape = field.shape.clone();
        meta = Some(field);
    }
    meta
}

/// The Kubernetes built-in types (v1.33 OpenAPI, via `k8s_patch_metadata.json`), with the
/// patch strategies and merge keys kubectl and the API server use for them. Kinds it does not
/// know (custom resources) are untyped.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinSchema;

impl BuiltinSchema {
    /// The OpenAPI definition name for a kind, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn definition_of(&self, gvk: &GroupVersionKind) -> Option<&'static str> {
        let key = format!("{}/{}", gvk.api_version(), gvk.kind);
        BUILTIN.kinds.get(&key).map(String::as_str)
    }

    /// Every kind the schema knows, as `apiVersion/kind` (`apps/v1/Deployment`, `v1/Pod`).
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> {
        BUILTIN.kinds.keys().map(String::as_str)
    }

    /// The fields of a definition that carry patch-relevant facts (lists, maps, nested structs).
    pub fn fields_of(&self, type_name: &str) -> Option<&'static HashMap<String, FieldMeta>> {
        BUILTIN.types.get(type_name)
    }
}

impl PatchSchema for BuiltinSchema {
    fn root_shape(&self, gvk: &GroupVersionKind) -> ValueShape {
        match self.definition_of(gvk) {
            Some(name) if BUILTIN.types.contains_key(name) => ValueShape::Struct(name.to_owned()),
            _ => ValueShape::Untyped,
        }
    }

    fn field(&self, type_name: &str, field: &str) -> Option<FieldMeta> {
        BUILTIN.types.get(type_name)?.get(field).cloned()
    }
}

/// The embedded metadata, parsed once.
struct BuiltinMetadata {
    kinds: BTreeMap<String, String>,
    types: HashMap<String, HashMap<String, FieldMeta>>,
}

const BUILTIN_JSON: &str = include_str!("k8s_patch_metadata.json");

static BUILTIN: LazyLock<BuiltinMetadata> = LazyLock::new(|| {
    // The file is generated and checked in; `builtin_metadata_is_consistent` parses it in tests.
    let raw: RawMetadata = serde_json::from_str(BUILTIN_JSON)
        .expect("k8s_patch_metadata.json is valid (checked by tests)");
    raw.into_metadata()
});

#[derive(Deserialize)]
struct RawMetadata {
    kinds: BTreeMap<String, String>,
    types: BTreeMap<String, BTreeMap<String, RawField>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawField {
    #[serde(rename = "type")]
    shape: RawShape,
    patch_strategy: Option<String>,
    patch_merge_key: Option<String>,
    list_type: Option<String>,
    #[serde(default)]
    list_map_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawShape {
    Named(String),
    Items { items: Box<RawShape> },
    Values { values: Box<RawShape> },
}

impl RawMetadata {
    fn into_metadata(self) -> BuiltinMetadata {
        let known: Vec<String> = self.types.keys().cloned().collect();
        let types = self
            .types
            .into_iter()
            .map(|(name, fields)| {
                let fields = fields
                    .into_iter()
                    .map(|(field, raw)| (field, raw.into_meta(&known)))
                    .collect();
                (name, fields)
            })
            .collect();
        BuiltinMetadata {
            kinds: self.kinds,
            types,
        }
    }
}

impl RawField {
    fn into_meta(self, known: &[String]) -> FieldMeta {
        let strategies: Vec<&str> = self
            .patch_strategy
            .as_deref()
            .map(|strategies| strategies.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let strategy = if strategies.contains(&"merge") {
            PatchStrategy::Merge
        } else if strategies.contains(&"replace") {
            PatchStrategy::Replace
        } else {
            PatchStrategy::Default
        };
        FieldMeta {
            shape: self.shape.into_shape(known),
            strategy,
            retain_keys: strategies.contains(&"retainKeys"),
            merge_keys: self.patch_merge_key.into_iter().collect(),
            list_type: match self.list_type.as_deref() {
                Some("atomic") => Some(ListType::Atomic),
                Some("set") => Some(ListType::Set),
                Some("map") => Some(ListType::Map),
                _ => None,
            },
            list_map_keys: self.list_map_keys,
        }
    }
}

impl RawShape {
    fn into_shape(self, known: &[String]) -> ValueShape {
        match self {
            RawShape::Named(name) if name == "scalar" => ValueShape::Scalar,
            RawShape::Named(name) if known.binary_search(&name).is_ok() => ValueShape::Struct(name),
            RawShape::Named(_) => ValueShape::Untyped,
            RawShape::Items { items } => ValueShape::List(Box::new(items.into_shape(known))),
            RawShape::Values { values } => ValueShape::Map(Box::new(values.into_shape(known))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> GroupVersionKind {
        GroupVersionKind::new("apps", "v1", "Deployment")
    }

    #[test]
    fn builtin_metadata_is_consistent() {
        let raw: RawMetadata = serde_json::from_str(BUILTIN_JSON).unwrap();
        // Every kind names an OpenAPI definition, and every struct reference resolves.
        for (kind, definition) in &raw.kinds {
            assert!(definition.starts_with("io.k8s."), "{kind} -> {definition}");
        }
        fn refs(shape: &RawShape, out: &mut Vec<String>) {
            match shape {
                RawShape::Named(name) => out.push(name.clone()),
                RawShape::Items { items } => refs(items, out),
                RawShape::Values { values } => refs(values, out),
            }
        }
        for (type_name, fields) in &raw.types {
            for (field, meta) in fields {
                let mut names = Vec::new();
                refs(&meta.shape, &mut names);
                for name in names {
                    assert!(
                        name == "scalar" || name == "any" || raw.types.contains_key(&name),
                        "{type_name}.{field} refers to unknown {name}"
                    );
                }
                if meta
                    .patch_strategy
                    .as_deref()
                    .is_some_and(|s| s.contains("merge"))
                {
                    let items_are_maps = matches!(&meta.shape, RawShape::Items { items } if !matches!(&**items, RawShape::Named(n) if n == "scalar"));
                    assert_eq!(
                        meta.patch_merge_key.is_some(),
                        items_are_maps,
                        "{type_name}.{field}: merge lists of maps need a merge key"
                    );
                }
            }
        }
        assert!(raw.kinds.len() > 100, "kinds table looks truncated");
    }

    #[test]
    fn knows_the_common_merge_lists() {
        let schema = BuiltinSchema;
        let containers = lookup_path(
            &schema,
            &deployment(),
            &["spec", "template", "spec", "containers"],
        )
        .unwrap();
        assert_eq!(containers.strategy, PatchStrategy::Merge);
        assert_eq!(containers.merge_keys, vec!["name"]);
        assert_eq!(
            containers.shape,
            ValueShape::List(Box::new(ValueShape::Struct(
                "io.k8s.api.core.v1.Container".into()
            )))
        );
        let ports = lookup_path(
            &schema,
            &deployment(),
            &["spec", "template", "spec", "containers", "ports"],
        )
        .unwrap();
        assert_eq!(ports.merge_keys, vec!["containerPort"]);
        assert_eq!(ports.list_map_keys, vec!["containerPort", "protocol"]);
        let env = lookup_path(
            &schema,
            &deployment(),
            &["spec", "template", "spec", "containers", "env"],
        )
        .unwrap();
        assert_eq!(env.merge_keys, vec!["name"]);
        let volumes = lookup_path(
            &schema,
            &deployment(),
            &["spec", "template", "spec", "volumes"],
        )
        .unwrap();
        assert!(volumes.retain_keys && volumes.merges_list());
        let finalizers = lookup_path(&schema, &deployment(), &["metadata", "finalizers"]).unwrap();
        assert_eq!(
            (finalizers.strategy, finalizers.list_type),
            (PatchStrategy::Merge, Some(ListType::Set))
        );
        assert!(finalizers.merge_keys.is_empty());
        let strategy = lookup_path(&schema, &deployment(), &["spec", "strategy"]).unwrap();
        assert!(strategy.retain_keys);
        assert_eq!(strategy.strategy, PatchStrategy::Default);
        let tolerations = lookup_path(
            &schema,
            &deployment(),
            &["spec", "template", "spec", "tolerations"],
        )
        .unwrap();
        assert_eq!(
            (tolerations.strategy, tolerations.list_type),
            (PatchStrategy::Default, Some(ListType::Atomic))
        );
        let labels = lookup_path(&schema, &deployment(), &["metadata", "labels"]).unwrap();
        assert_eq!(labels.shape, ValueShape::Map(Box::new(ValueShape::Scalar)));
    }

    #[test]
    fn service_ports_merge_on_port_only_and_pdb_selector_replaces() {
        let schema = BuiltinSchema;
        let service = GroupVersionKind::new("", "v1", "Service");
        let ports = lookup_path(&schema, &service, &["spec", "ports"]).unwrap();
        assert_eq!(ports.merge_keys, vec!["port"]);
        assert_eq!(ports.list_map_keys, vec!["port", "protocol"]);
        let pdb = GroupVersionKind::new("policy", "v1", "PodDisruptionBudget");
        let selector = lookup_path(&schema, &pdb, &["spec", "selector"]).unwrap();
        assert_eq!(selector.strategy, PatchStrategy::Replace);
    }

    #[test]
    fn unknown_kinds_and_fields_are_untyped() {
        let schema = BuiltinSchema;
        let crd_kind = GroupVersionKind::new("example.com", "v1", "Widget");
        assert_eq!(schema.root_shape(&crd_kind), ValueShape::Untyped);
        assert_eq!(
            lookup_path(&schema, &crd_kind, &["spec", "items"]),
            Some(FieldMeta::untyped())
        );
        assert_eq!(
            lookup_path(&schema, &deployment(), &["spec", "noSuchField"]),
            Some(FieldMeta::untyped())
        );
        assert_eq!(lookup_path(&schema, &deployment(), &[]), None);
        assert_eq!(
            schema.definition_of(&GroupVersionKind::new("", "v1", "ConfigMap")),
            Some("io.k8s.api.core.v1.ConfigMap")
        );
        assert!(schema.kinds().any(|kind| kind == "apps/v1/Deployment"));
    }
}
