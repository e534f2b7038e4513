//! The referential-integrity schema: which resource is the parent of which, and which resources a
//! resource refers to from inside its `spec`.
//!
//! The model follows upstream EMCO's `ref-schemas` format (a list of resources with `parent` and
//! `references`), so controllers can register their own segments in the same shape. From the
//! segments we derive, per resource, its key elements (its parent chain), its children and how to
//! find its references in a body. Everything here is pure: the repository turns the answers into
//! store transactions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::key::ResourceKey;

/// How the referenced resource's key is found in the referring body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceType {
    /// One reference, its key elements found anywhere in `spec` (missing ones are taken from the
    /// referring resource's own key).
    #[default]
    #[serde(alias = "")]
    One,
    /// Several references: every JSON object inside `spec` holding key elements yields one.
    Many,
    /// The keys of the object `spec.{map}` are the names of the referenced resources.
    Map,
}

/// One reference from a resource to another, as declared in a schema segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceSchema {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: ReferenceType,
    /// With `One`: key elements shared with the referring resource that must come from its key
    /// (the name of a resource whose key elements are not searched in the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_key: Option<String>,
    /// With `Map`: the name of the object inside `spec` whose keys are the references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// Key elements of the referenced resource with fixed values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fixed_kv: BTreeMap<String, String>,
    /// With `Map`: names that are not references (skipped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_keys: Vec<String>,
    /// Only a reference when the body's `spec` holds `value` at `field` (a dotted path,
    /// compared case-insensitively): a GAC customization names a cluster only when its
    /// `clusterInfo.scope` is `name`. An EMCO-rs extension of upstream's schema format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ReferenceCondition>,
}

/// See [`ReferenceSchema::when`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceCondition {
    pub field: String,
    pub value: String,
}

impl ReferenceCondition {
    fn holds(&self, spec: &Value) -> bool {
        let mut at = spec;
        for step in self.field.split('.') {
            match at.get(step) {
                Some(next) => at = next,
                None => return false,
            }
        }
        at.as_str()
            .is_some_and(|text| text.eq_ignore_ascii_case(&self.value))
    }
}

/// One resource of a schema segment. `name` may be `first.second` for resources whose identity is
/// two key elements (`compositeApp.compositeAppVersion`): only the second is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSchema {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceSchema>,
}

/// A named group of resources, registered by one service or controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSegment {
    pub name: String,
    pub resources: Vec<ResourceSchema>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema resource name {0:?} is invalid: expected `name` or `first.second`")]
    BadName(String),
    #[error("resource {0:?} is declared twice")]
    Duplicate(String),
    #[error("resource {resource:?} names parent {parent:?}, which no segment declares")]
    MissingParent { resource: String, parent: String },
    #[error("resource {resource:?} refers to {target:?}, which no segment declares")]
    MissingReference { resource: String, target: String },
    #[error("resource {resource:?} has a reference of type map without `map`")]
    MapWithoutField { resource: String },
    #[error("the parent chain of {0:?} is a cycle")]
    Cycle(String),
    #[error("a segment named {0:?} is already registered")]
    DuplicateSegment(String),
}

/// What the schema knows about one resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The resource that must exist for this one to exist (`None` for roots).
    pub stored_parent: Option<String>,
    /// Key element names from the root down to this resource.
    pub key_elements: Vec<String>,
    /// Whether documents of this resource are stored (false for the first half of `a.b` names).
    pub stored: bool,
    pub children: BTreeSet<String>,
    pub references: Vec<ReferenceSchema>,
    /// Resources that may refer to this one.
    pub referenced_by: BTreeSet<String>,
    /// The segment that declared it.
    pub segment: String,
}

/// The merged schema of all registered segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefSchema {
    segments: Vec<SchemaSegment>,
    nodes: BTreeMap<String, Node>,
}

impl RefSchema {
    /// Builds the merged schema; fails if any segment is inconsistent with the others.
    pub fn build(segments: Vec<SchemaSegment>) -> Result<Self, SchemaError> {
        let mut declared: BTreeMap<String, (Option<String>, bool, Vec<ReferenceSchema>, String)> =
            BTreeMap::new();
        let mut seen_segments = BTreeSet::new();
        for segment in &segments {
            if !seen_segments.insert(segment.name.clone()) {
                return Err(SchemaError::DuplicateSegment(segment.name.clone()));
            }
            for r in &segment.resources {
                let parts: Vec<&str> = r.name.split('.').collect();
                if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                    return Err(SchemaError::BadName(r.name.clone()));
                }
                let mut insert =
                    |name: &str, parent: Option<String>, stored: bool, refs: Vec<_>| {
                        if declared.contains_key(name) {
                            return Err(SchemaError::Duplicate(name.to_owned()));
                        }
                        declared.insert(
                            name.to_owned(),
                            (parent, stored, refs, segment.name.clone()),
                        );
                        Ok(())
                    };
                if let [first, second] = parts[..] {
                    insert(first, r.parent.clone(), false, vec![])?;
                    insert(second, Some(first.to_owned()), true, r.references.clone())?;
                } else {
                    insert(&r.name, r.parent.clone(), true, r.references.clone())?;
                }
            }
        }

        let mut nodes = BTreeMap::new();
        for (name, (parent, stored, references, segment)) in &declared {
            // Walk up the declared parents to collect key elements, root first.
            let mut chain = vec![name.clone()];
            let mut cursor = parent.clone();
            while let Some(p) = cursor {
                if chain.contains(&p) || chain.len() > 64 {
                    return Err(SchemaError::Cycle(name.clone()));
                }
                let Some(entry) = declared.get(&p) else {
                    return Err(SchemaError::MissingParent {
                        resource: name.clone(),
                        parent: p,
                    });
                };
                chain.push(p.clone());
                cursor = entry.0.clone();
            }
            chain.reverse();
            // The stored parent skips unstored halves of combined names.
            let mut stored_parent = parent.clone();
            while let Some(p) = &stored_parent {
                match declared.get(p) {
                    Some((grand, false, _, _)) => stored_parent = grand.clone(),
                    _ => break,
                }
            }
            for reference in references {
                if !declared.contains_key(&reference.name) {
                    return Err(SchemaError::MissingReference {
                        resource: name.clone(),
                        target: reference.name.clone(),
                    });
                }
                if reference.kind == ReferenceType::Map && reference.map.is_none() {
                    return Err(SchemaError::MapWithoutField {
                        resource: name.clone(),
                    });
                }
            }
            nodes.insert(
                name.clone(),
                Node {
                    stored_parent,
                    key_elements: chain,
                    stored: *stored,
                    children: BTreeSet::new(),
                    references: references.clone(),
                    referenced_by: BTreeSet::new(),
                    segment: segment.clone(),
                },
            );
        }
        let links: Vec<(String, Option<String>, Vec<String>)> = nodes
            .iter()
            .map(|(n, node)| {
                let targets = node.references.iter().map(|r| r.name.clone()).collect();
                (n.clone(), node.stored_parent.clone(), targets)
            })
            .collect();
        for (name, parent, targets) in links {
            if let Some(p) = parent.and_then(|p| nodes.get_mut(&p)) {
                p.children.insert(name.clone());
            }
            for t in targets {
                if let Some(target) = nodes.get_mut(&t) {
                    target.referenced_by.insert(name.clone());
                }
            }
        }
        Ok(Self { segments, nodes })
    }

    /// The schema with one more segment, or an error leaving `self` unchanged.
    pub fn with_segment(&self, segment: SchemaSegment) -> Result<Self, SchemaError> {
        let mut segments = self.segments.clone();
        segments.push(segment);
        Self::build(segments)
    }

    pub fn segments(&self) -> &[SchemaSegment] {
        &self.segments
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// The key of the stored parent of `key` (`None` for roots).
    pub fn parent_key(&self, key: &ResourceKey) -> Option<ResourceKey> {
        let node = self.nodes.get(&key.kind)?;
        let parent = node.stored_parent.as_ref()?;
        let parent_node = self.nodes.get(parent)?;
        let n = parent_node.key_elements.len();
        if key.elements.len() < n {
            return None;
        }
        Some(ResourceKey::new(parent.clone(), key.elements[..n].to_vec()))
    }

    /// The keys of every resource `body` (a resource document with `spec`) refers to, following
    /// the reference rules of `key.kind`. Only fully determined keys are returned, like upstream:
    /// an empty or absent element that the referring key cannot fill means "no reference".
    pub fn references_of(&self, key: &ResourceKey, body: &Value) -> Vec<ResourceKey> {
        let Some(node) = self.nodes.get(&key.kind) else {
            return vec![];
        };
        let spec = body.get("spec").unwrap_or(&Value::Null);
        let mut out: Vec<ResourceKey> = Vec::new();
        for reference in &node.references {
            let Some(target) = self.nodes.get(&reference.name) else {
                continue;
            };
            if reference
                .when
                .as_ref()
                .is_some_and(|condition| !condition.holds(spec))
            {
                continue;
            }
            let elements = &target.key_elements;
            let candidates: Vec<BTreeMap<String, String>> = match reference.kind {
                ReferenceType::Map => {
                    let field = reference.map.as_deref().unwrap_or_default();
                    let names = find_object(spec, field)
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default();
                    names
                        .into_iter()
                        .filter(|n| !reference.filter_keys.contains(n))
                        .map(|n| {
                            let mut m: BTreeMap<String, String> = elements
                                .iter()
                                .map(|e| (e.clone(), String::new()))
                                .collect();
                            m.insert(reference.name.clone(), n);
                            m
                        })
                        .collect()
                }
                ReferenceType::Many => {
                    let mut found = Vec::new();
                    collect_objects_with_elements(spec, elements, &mut found);
                    found
                }
                ReferenceType::One => {
                    let excluded: BTreeSet<String> = reference
                        .common_key
                        .as_ref()
                        .and_then(|c| self.nodes.get(c))
                        .map(|n| n.key_elements.iter().cloned().collect())
                        .unwrap_or_default();
                    let mut m: BTreeMap<String, String> = elements
                        .iter()
                        .map(|e| (e.clone(), String::new()))
                        .collect();
                    find_elements_anywhere(spec, &excluded, &mut m);
                    vec![m]
                }
            };
            for mut candidate in candidates {
                for (k, v) in &reference.fixed_kv {
                    candidate.insert(k.clone(), v.clone());
                }
                let mut complete = true;
                let mut resolved = Vec::with_capacity(elements.len());
                for element in elements {
                    let value = match candidate.get(element) {
                        Some(v) if !v.is_empty() => v.clone(),
                        _ => match key.get(element) {
                            Some(v) => v.to_owned(),
                            None => {
                                complete = false;
                                break;
                            }
                        },
                    };
                    resolved.push((element.clone(), value));
                }
                if !complete {
                    continue;
                }
                let target_key = ResourceKey::new(reference.name.clone(), resolved);
                if !out.contains(&target_key) {
                    out.push(target_key);
                }
            }
        }
        out
    }
}

/// The first object named `field` among the direct members of `spec`.
fn find_object<'a>(spec: &'a Value, field: &str) -> Option<&'a serde_json::Map<String, Value>> {
    spec.as_object()?.get(field)?.as_object()
}

/// Fills `m` with string members anywhere in `v` whose names are key elements, skipping `excluded`.
fn find_elements_anywhere(
    v: &Value,
    excluded: &BTreeSet<String>,
    m: &mut BTreeMap<String, String>,
) {
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                match child {
                    Value::String(s) if m.contains_key(k) && !excluded.contains(k) => {
                        m.insert(k.clone(), s.clone());
                    }
                    Value::Object(_) | Value::Array(_) => {
                        find_elements_anywhere(child, excluded, m)
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| find_elements_anywhere(i, excluded, m)),
        _ => {}
    }
}

/// One candidate per JSON object (at any depth) that directly holds at least one key element.
fn collect_objects_with_elements(
    v: &Value,
    elements: &[String],
    out: &mut Vec<BTreeMap<String, String>>,
) {
    match v {
        Value::Object(obj) => {
            let mut m = BTreeMap::new();
            for (k, child) in obj {
                if let Value::String(s) = child
                    && elements.contains(k)
                {
                    m.insert(k.clone(), s.clone());
                }
            }
            if !m.is_empty() {
                out.push(m);
            }
            for child in obj.values() {
                collect_objects_with_elements(child, elements, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_objects_with_elements(i, elements, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::base_schema;

    fn key(kind: &str, elements: &[(&str, &str)]) -> ResourceKey {
        ResourceKey::new(
            kind,
            elements
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn dig() -> ResourceKey {
        key(
            "deploymentIntentGroup",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("deploymentIntentGroup", "d"),
            ],
        )
    }

    #[test]
    fn base_schema_builds_with_key_chains() {
        let s = base_schema();
        let app = s.node("app").unwrap();
        assert_eq!(
            app.key_elements,
            ["project", "compositeApp", "compositeAppVersion", "app"]
        );
        assert_eq!(app.stored_parent.as_deref(), Some("compositeAppVersion"));
        let cav = s.node("compositeAppVersion").unwrap();
        assert_eq!(cav.stored_parent.as_deref(), Some("project"));
        assert!(!s.node("compositeApp").unwrap().stored);
        assert!(
            s.node("project")
                .unwrap()
                .children
                .contains("compositeAppVersion")
        );
        assert!(
            s.node("logicalCloud")
                .unwrap()
                .referenced_by
                .contains("deploymentIntentGroup")
        );
    }

    #[test]
    fn parent_of_combined_name_skips_the_unstored_half() {
        let s = base_schema();
        let cav = key(
            "compositeAppVersion",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
            ],
        );
        assert_eq!(
            s.parent_key(&cav),
            Some(key("project", &[("project", "p")]))
        );
        let controller = key(
            "controller",
            &[("controllerGroup", "orchestrator"), ("controller", "rsync")],
        );
        assert_eq!(s.parent_key(&controller), None);
    }

    #[test]
    fn single_references_fill_missing_elements_from_the_own_key() {
        let s = base_schema();
        let body =
            json!({"spec": {"compositeProfile": "prof", "logicalCloud": "lc", "version": "r1"}});
        let refs = s.references_of(&dig(), &body);
        assert!(refs.contains(&key(
            "logicalCloud",
            &[("project", "p"), ("logicalCloud", "lc")]
        )));
        assert!(refs.contains(&key(
            "compositeProfile",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("compositeProfile", "prof")
            ]
        )));
    }

    #[test]
    fn empty_reference_values_mean_no_reference() {
        let s = base_schema();
        let custom = key(
            "customization",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("deploymentIntentGroup", "d"),
                ("genericK8sIntent", "g"),
                ("genericResource", "r"),
                ("customization", "c"),
            ],
        );
        let body = json!({"spec": {"clusterInfo": {"clusterProvider": "prov", "cluster": "", "clusterLabel": "edge"}}});
        assert!(s.references_of(&custom, &body).is_empty());
    }

    #[test]
    fn a_customization_names_a_cluster_only_when_scoped_by_name() {
        let s = base_schema();
        let custom = key(
            "customization",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("deploymentIntentGroup", "d"),
                ("genericK8sIntent", "g"),
                ("genericResource", "r"),
                ("customization", "c"),
            ],
        );
        let by_label = json!({"spec": {"clusterInfo": {"scope": "label", "clusterProvider": "prov", "cluster": "dummy", "clusterLabel": "edge"}}});
        assert!(s.references_of(&custom, &by_label).is_empty());
        let by_name = json!({"spec": {"clusterInfo": {"scope": "Name", "clusterProvider": "prov", "cluster": "c1"}}});
        assert_eq!(
            s.references_of(&custom, &by_name),
            vec![key(
                "cluster",
                &[("clusterProvider", "prov"), ("cluster", "c1")]
            )]
        );
    }

    #[test]
    fn many_references_come_from_each_object() {
        let s = base_schema();
        let mut elements = dig().elements;
        elements.push(("genericPlacementIntent".into(), "gpi".into()));
        elements.push(("genericAppPlacementIntent".into(), "ai".into()));
        let k = ResourceKey::new("genericAppPlacementIntent", elements);
        let body = json!({"spec": {"app": "a1", "intent": {"allOf": [
            {"clusterProvider": "prov", "cluster": "c1"},
            {"clusterProvider": "prov", "clusterLabel": "edge"},
            {"clusterProvider": "prov", "cluster": "c1"}
        ]}}});
        let refs = s.references_of(&k, &body);
        let clusters: Vec<_> = refs.iter().filter(|r| r.kind == "cluster").collect();
        assert_eq!(
            clusters,
            vec![&key(
                "cluster",
                &[("clusterProvider", "prov"), ("cluster", "c1")]
            )]
        );
        assert!(refs.iter().any(|r| r.kind == "app" && r.name() == "a1"));
    }

    #[test]
    fn map_references_use_fixed_values_and_filters() {
        let s = base_schema();
        let mut elements = dig().elements;
        elements.push(("groupIntent".into(), "gi".into()));
        let k = ResourceKey::new("groupIntent", elements);
        let body = json!({"spec": {"intent": {"genericPlacementIntent": "x", "dtc": "y"}}});
        let refs = s.references_of(&k, &body);
        assert_eq!(
            refs,
            vec![key(
                "controller",
                &[("controllerGroup", "orchestrator"), ("controller", "dtc")]
            )]
        );
    }

    #[test]
    fn bad_segments_are_refused() {
        let s = base_schema();
        let dup = SchemaSegment {
            name: "x".into(),
            resources: vec![ResourceSchema {
                name: "project".into(),
                ..Default::default()
            }],
        };
        assert_eq!(
            s.with_segment(dup),
            Err(SchemaError::Duplicate("project".into()))
        );
        let orphan = SchemaSegment {
            name: "y".into(),
            resources: vec![ResourceSchema {
                name: "thing".into(),
                parent: Some("nope".into()),
                references: vec![],
            }],
        };
        assert!(matches!(
            s.with_segment(orphan),
            Err(SchemaError::MissingParent { .. })
        ));
        let again = SchemaSegment {
            name: "emco-base".into(),
            resources: vec![],
        };
        assert_eq!(
            s.with_segment(again),
            Err(SchemaError::DuplicateSegment("emco-base".into()))
        );
    }
}
