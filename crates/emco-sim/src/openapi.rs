//! OpenAPI v3, as much as kubectl needs: the index (`/openapi/v3`) and one document per group
//! version whose operations say which kind they serve (`x-kubernetes-group-version-kind`) and that
//! they take `fieldValidation`. kubectl uses these to decide that the server validates fields
//! (otherwise it wants `/openapi/v2` in protobuf for client-side validation).
//!
//! Schemas are left out on purpose: the PATCH operations do not list
//! `application/strategic-merge-patch+json`, so client-side `kubectl apply` computes strategic
//! merge patches from its built-in types instead of from (missing) OpenAPI schemas.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::catalog::{self, ResourceDef};

fn path_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions(custom: &[Arc<ResourceDef>]) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for def in catalog::BUILTINS.iter().chain(custom.iter()) {
        let key = (def.group.clone(), def.version.clone());
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen
}

fn content_hash(group: &str, version: &str, custom: &[Arc<ResourceDef>]) -> String {
    let mut hasher = DefaultHasher::new();
    for def in catalog::BUILTINS
        .iter()
        .chain(custom.iter())
        .filter(|def| def.group == group && def.version == version)
    {
        (
            &def.kind,
            &def.plural,
            def.namespaced,
            def.status,
            def.scale,
        )
            .hash(&mut hasher);
    }
    format!("{:016X}", hasher.finish())
}

/// `/openapi/v3`: where each group version's document is, relative to the server root (so the
/// cluster's path prefix, e.g. `/clusters/edge-1`, is part of each URL).
pub fn index(prefix: &str, custom: &[Arc<ResourceDef>]) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions(custom) {
        let path = path_of(&group, &version);
        let hash = content_hash(&group, &version, custom);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("{prefix}/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({ "paths": paths })
}

fn operation(def: &ResourceDef, action: &str, verb_name: &str, body: Option<&[&str]>) -> Value {
    let mut parameters =
        vec![json!({"name": "pretty", "in": "query", "schema": {"type": "string"}})];
    if matches!(action, "post" | "put" | "patch") {
        for name in ["dryRun", "fieldManager", "fieldValidation"] {
            parameters.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
        }
    }
    if action == "patch" {
        parameters.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let capitalized = |text: &str| {
        let mut chars = text.chars();
        chars
            .next()
            .map(|first| first.to_uppercase().chain(chars).collect::<String>())
            .unwrap_or_default()
    };
    let group_words: String = def
        .group
        .split('.')
        .next()
        .map(capitalized)
        .unwrap_or_else(|| "Core".into());
    let mut operation = json!({
        "operationId": format!("{verb_name}{group_words}{}{}", capitalized(&def.version), def.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": def.group, "version": def.version, "kind": def.kind},
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
    });
    if let (Some(types), Some(map)) = (body, operation.as_object_mut()) {
        let content: Map<String, Value> = types
            .iter()
            .map(|media_type| {
                (
                    (*media_type).to_owned(),
                    json!({"schema": {"type": "object"}}),
                )
            })
            .collect();
        map.insert("requestBody".into(), json!({"content": content}));
    }
    operation
}

const PATCH_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// The OpenAPI v3 document of one group version (`None` if nothing is served there).
pub fn document(group: &str, version: &str, custom: &[Arc<ResourceDef>]) -> Option<Value> {
    let mut paths = Map::new();
    let defs: Vec<&Arc<ResourceDef>> = catalog::BUILTINS
        .iter()
        .chain(custom.iter())
        .filter(|def| def.group == group && def.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for def in defs {
        let collection = if def.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", def.plural)
        } else {
            format!("{base}/{}", def.plural)
        };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(def, "list", "list", None),
                "post": operation(def, "post", "create", Some(&["application/json", "application/yaml"])),
                "delete": operation(def, "deletecollection", "deleteCollection", None),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(def, "get", "read", None),
                "put": operation(def, "put", "replace", Some(&["application/json", "application/yaml"])),
                "patch": operation(def, "patch", "patch", Some(&PATCH_TYPES)),
                "delete": operation(def, "delete", "delete", None),
            }),
        );
        for subresource in def
            .subresources()
            .into_iter()
            .filter(|sub| *sub != "finalize")
        {
            paths.insert(
                format!("{collection}/{{name}}/{subresource}"),
                json!({
                    "get": operation(def, "get", "read", None),
                    "put": operation(def, "put", "replace", Some(&["application/json"])),
                    "patch": operation(def, "patch", "patch", Some(&PATCH_TYPES)),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_points_into_the_cluster_prefix() {
        let index = index("/clusters/edge-1", &[]);
        let apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(apps.starts_with("/clusters/edge-1/openapi/v3/apis/apps/v1?hash="));
        assert!(index["paths"]["api/v1"].is_object());
    }

    #[test]
    fn patch_operations_take_field_validation_but_not_strategic_merge() {
        let apps = document("apps", "v1", &[]).unwrap();
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        assert!(document("apps", "v9", &[]).is_none());
    }
}
