//! API discovery: the legacy documents (`/api`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`)
//! and the aggregated `apidiscovery.k8s.io/v2` lists that kubectl 1.32 asks for first.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalog::{self, ResourceDef, VERBS};

/// Content type of an aggregated discovery response.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// The older beta content type of aggregated discovery.
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Built-in types followed by the cluster's custom ones.
fn all_types(custom: &[Arc<ResourceDef>]) -> impl Iterator<Item = &Arc<ResourceDef>> {
    catalog::BUILTINS.iter().chain(custom.iter())
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn rank(version: &str) -> (u8, u64, u64, String) {
        let parse = |text: &str| -> Option<(u64, u8, u64)> {
            let rest = text.strip_prefix('v')?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let major = digits.parse().ok()?;
            let tail = &rest[digits.len()..];
            if tail.is_empty() {
                return Some((major, 3, 0));
            }
            for (label, level) in [("beta", 2), ("alpha", 1)] {
                if let Some(number) = tail.strip_prefix(label) {
                    return Some((major, level, number.parse().ok()?));
                }
            }
            None
        };
        match parse(version) {
            Some((major, level, minor)) => (level, major, minor, String::new()),
            None => (0, 0, 0, version.to_owned()),
        }
    }
    let (a, b) = (rank(a), rank(b));
    b.0.cmp(&a.0)
        .then(b.1.cmp(&a.1))
        .then(b.2.cmp(&a.2))
        .then(a.3.cmp(&b.3))
}

/// The non-core groups, in discovery order, each with its versions by priority.
fn groups(custom: &[Arc<ResourceDef>]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for def in all_types(custom).filter(|def| !def.group.is_empty()) {
        match groups.iter_mut().find(|(group, _)| *group == def.group) {
            Some((_, versions)) => {
                if !versions.contains(&def.version) {
                    versions.push(def.version.clone());
                }
            }
            None => groups.push((def.group.clone(), vec![def.version.clone()])),
        }
    }
    for (_, versions) in &mut groups {
        versions.sort_by(|a, b| compare_versions(a, b));
    }
    groups
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": group_version(group, version), "version": version}))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or_else(|| json!({})),
    })
}

/// `/api`.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// `/apis`.
pub fn api_group_list(custom: &[Arc<ResourceDef>]) -> Value {
    let groups: Vec<Value> = groups(custom)
        .iter()
        .map(|(group, versions)| api_group(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn api_group_document(group: &str, custom: &[Arc<ResourceDef>]) -> Option<Value> {
    let (_, versions) = groups(custom).into_iter().find(|(name, _)| name == group)?;
    let mut document = api_group(group, &versions);
    if let Some(map) = document.as_object_mut() {
        map.insert("kind".into(), json!("APIGroup"));
        map.insert("apiVersion".into(), json!("v1"));
    }
    Some(document)
}

fn subresource_kind(def: &ResourceDef, subresource: &str) -> (String, String, String) {
    if subresource == "scale" {
        ("autoscaling".into(), "v1".into(), "Scale".into())
    } else {
        (def.group.clone(), def.version.clone(), def.kind.clone())
    }
}

fn subresource_verbs(subresource: &str) -> Vec<&'static str> {
    if subresource == "finalize" {
        vec!["update"]
    } else {
        vec!["get", "patch", "update"]
    }
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList.
pub fn resource_list(group: &str, version: &str, custom: &[Arc<ResourceDef>]) -> Option<Value> {
    let mut resources = Vec::new();
    for def in all_types(custom).filter(|def| def.group == group && def.version == version) {
        let mut resource = json!({
            "name": def.plural,
            "singularName": def.singular,
            "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": VERBS,
        });
        if let Some(map) = resource.as_object_mut() {
            if !def.short_names.is_empty() {
                map.insert("shortNames".into(), json!(def.short_names));
            }
            if !def.categories.is_empty() {
                map.insert("categories".into(), json!(def.categories));
            }
        }
        resources.push(resource);
        for subresource in def.subresources() {
            let (sub_group, sub_version, sub_kind) = subresource_kind(def, subresource);
            let mut entry = json!({
                "name": format!("{}/{subresource}", def.plural),
                "singularName": "",
                "namespaced": def.namespaced,
                "kind": sub_kind,
                "verbs": subresource_verbs(subresource),
            });
            if subresource == "scale"
                && let Some(map) = entry.as_object_mut()
            {
                map.insert("group".into(), json!(sub_group));
                map.insert("version".into(), json!(sub_version));
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

fn aggregated_resource(def: &ResourceDef) -> Value {
    let mut resource = json!({
        "resource": def.plural,
        "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": def.singular,
        "verbs": VERBS,
    });
    if let Some(map) = resource.as_object_mut() {
        if !def.short_names.is_empty() {
            map.insert("shortNames".into(), json!(def.short_names));
        }
        if !def.categories.is_empty() {
            map.insert("categories".into(), json!(def.categories));
        }
        let subresources: Vec<Value> = def
            .subresources()
            .into_iter()
            .map(|subresource| {
                let (group, version, kind) = subresource_kind(def, subresource);
                json!({
                    "subresource": subresource,
                    "responseKind": {"group": group, "version": version, "kind": kind},
                    "verbs": subresource_verbs(subresource),
                })
            })
            .collect();
        if !subresources.is_empty() {
            map.insert("subresources".into(), Value::Array(subresources));
        }
    }
    resource
}

/// Aggregated discovery for `/api` (`core`) or `/apis`, in `apidiscovery.k8s.io/{version}`.
pub fn aggregated(core: bool, custom: &[Arc<ResourceDef>], discovery_version: &str) -> Value {
    let group_list: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_owned()])]
    } else {
        groups(custom)
    };
    let items: Vec<Value> = group_list
        .iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = all_types(custom)
                        .filter(|def| def.group == *group && def.version == *version)
                        .map(|def| aggregated_resource(def))
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut versions = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            versions,
            vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn resource_lists_include_subresources() {
        let apps = resource_list("apps", "v1", &[]).unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"deployments")
                && names.contains(&"deployments/status")
                && names.contains(&"deployments/scale")
        );
        assert!(resource_list("apps", "v9", &[]).is_none());
        let core = resource_list("", "v1", &[]).unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let groups = api_group_list(&[]);
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "rbac.authorization.k8s.io")
        );
        let aggregated = aggregated(false, &[], "v2");
        assert_eq!(aggregated["kind"], "APIGroupDiscoveryList");
        assert!(
            aggregated["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|item| item["metadata"]["name"] != "")
        );
    }
}
