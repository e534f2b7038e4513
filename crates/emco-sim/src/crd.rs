//! CustomResourceDefinitions: validating one, the resource types it serves (one per served
//! version, all sharing one store), and the status the API server's controllers give it
//! (`NamesAccepted` and `Established`, so `kubectl wait --for=condition=established` works).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalog::{PrinterColumn, ResourceDef};
use crate::error::FieldCause;
use crate::meta;

/// The store key of the custom resources a CRD defines.
pub fn store_key(crd: &Value) -> Option<Arc<str>> {
    let group = crd.pointer("/spec/group")?.as_str()?;
    let plural = crd.pointer("/spec/names/plural")?.as_str()?;
    Some(ResourceDef::store_key_for(group, plural))
}

/// Checks a CRD the way the API server does (the parts clients rely on).
pub fn validate(crd: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let text = |pointer: &str| {
        crd.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    if group.is_empty() {
        causes.push(FieldCause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(FieldCause::invalid(
            "spec.group",
            &Value::String(group.to_owned()),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(FieldCause::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(FieldCause::required("spec.names.kind", ""));
    }
    let name = text("/metadata/name");
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(FieldCause::invalid(
            "metadata.name",
            &Value::String(name.to_owned()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match text("/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => causes.push(FieldCause::invalid(
            "spec.scope",
            &Value::String(other.to_owned()),
            "supported values: \"Cluster\", \"Namespaced\"",
        )),
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    match versions {
        Some(versions) if !versions.is_empty() => {
            let storage = versions
                .iter()
                .filter(|version| version.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                causes.push(FieldCause::invalid(
                    "spec.versions",
                    &Value::from(storage),
                    "must have exactly one version marked as storage version",
                ));
            }
        }
        _ => causes.push(FieldCause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        )),
    }
    causes
}

/// The resource types a (valid) CRD serves: one per served version.
pub fn served_types(crd: &Value) -> Vec<Arc<ResourceDef>> {
    let text = |pointer: &str| {
        crd.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let strings = |pointer: &str| -> Vec<String> {
        crd.pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(store_key) = store_key(crd) else {
        return Vec::new();
    };
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    let singular = match text("/spec/names/singular") {
        singular if singular.is_empty() => kind.to_lowercase(),
        singular => singular,
    };
    let namespaced = text("/spec/scope") != "Cluster";
    let versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|version| version.get("served").and_then(Value::as_bool) != Some(false))
                .collect()
        })
        .unwrap_or_default();
    let multi_version = versions.len() > 1;
    versions
        .into_iter()
        .filter_map(|version| {
            let name = version.get("name")?.as_str()?.to_owned();
            let printer_columns = version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|columns| {
                    columns
                        .iter()
                        .filter_map(|column| {
                            Some(PrinterColumn {
                                name: column.get("name")?.as_str()?.to_owned(),
                                column_type: column
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .unwrap_or("string")
                                    .to_owned(),
                                json_path: column.get("jsonPath")?.as_str()?.to_owned(),
                                priority: column
                                    .get("priority")
                                    .and_then(Value::as_i64)
                                    .unwrap_or(0),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Arc::new(ResourceDef {
                group: group.clone(),
                version: name,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: strings("/spec/names/shortNames"),
                categories: strings("/spec/names/categories"),
                status: version.pointer("/subresources/status").is_some(),
                scale: version.pointer("/subresources/scale").is_some(),
                approval: false,
                generation: true,
                multi_version,
                printer_columns,
                store_key: store_key.clone(),
            }))
        })
        .collect()
}

/// The status the API server's CRD controllers set: names accepted, established.
pub fn established_status(crd: &Value) -> Value {
    let now = meta::now_timestamp();
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|version| version.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|version| version.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut accepted_names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(names) = accepted_names.as_object_mut()
        && !names.contains_key("singular")
        && let Some(kind) = names.get("kind").and_then(Value::as_str)
    {
        let singular = kind.to_lowercase();
        names.insert("singular".into(), Value::String(singular));
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "acceptedNames": accepted_names,
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1alpha1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn a_crd_serves_each_served_version() {
        let crd = widget_crd();
        assert!(validate(&crd).is_empty());
        let types = served_types(&crd);
        let versions: Vec<&str> = types.iter().map(|def| def.version.as_str()).collect();
        assert_eq!(versions, vec!["v1", "v1beta1"]);
        assert!(types[0].status && !types[1].status);
        assert!(
            types
                .iter()
                .all(|def| def.multi_version && &*def.store_key == "example.com/widgets")
        );
        assert_eq!(types[0].printer_columns[0].json_path, ".spec.size");
        assert_eq!(types[0].singular, "widget");
        let status = established_status(&crd);
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["conditions"][1]["type"], "Established");
    }

    #[test]
    fn crd_names_must_match_plural_and_group() {
        let mut crd = widget_crd();
        crd["metadata"]["name"] = json!("gadgets.example.com");
        let causes = validate(&crd);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata.name");
    }
}
