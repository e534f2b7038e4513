//! Who is asking, and may they: client-certificate identities and Kubernetes RBAC.
//!
//! Over TLS a client may present a certificate signed by the simulator's CA (see [`crate::tls`]);
//! its subject's CommonName is the user and its Organizations are the groups, as the real API
//! server's x509 authenticator reads them. Such a request is authorized as the RBAC authorizer
//! does: allowed when a ClusterRoleBinding (anywhere) or a RoleBinding in the request's
//! namespace binds the user, one of its groups or `system:authenticated` to a Role or ClusterRole
//! with a rule matching the verb, API group, resource (or `resource/subresource`) and, if the
//! rule names any, the object name. Members of `system:masters` may do everything. Requests that
//! are not resource requests (discovery, OpenAPI, version) are allowed to every authenticated
//! user, as the default `system:discovery` binding does.
//!
//! A request without a client certificate (plain HTTP, or a kubeconfig without one) is the
//! cluster's administrator: the simulator's own kubeconfigs carry no credentials.

use serde_json::Value;

use crate::catalog;
use crate::cluster::ClusterState;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity in a client certificate (DER): CN is the user, each O a group.
    pub fn from_certificate(der: &[u8]) -> Option<UserInfo> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = certificate.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        Some(UserInfo { name, groups })
    }
}

/// What a resource request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'a str,
    pub group: &'a str,
    /// The plural resource.
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    /// `None` for cluster-scoped resources and requests across all namespaces.
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Attributes<'_> {
    /// The API server's message for a refusal.
    pub fn refusal(&self, user: &UserInfo) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_owned(),
        };
        let qualified = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let subject = match self.name {
            Some(name) => format!("{qualified} \"{name}\""),
            None => qualified,
        };
        let scope = match self.namespace {
            Some(namespace) => format!(" in the namespace \"{namespace}\""),
            None => " at the cluster scope".to_owned(),
        };
        format!(
            "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
            user.name, self.verb, self.group
        )
    }
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn contains(list: &[String], wanted: &str) -> bool {
    list.iter().any(|item| item == "*" || item == wanted)
}

fn rule_allows(rule: &Value, attributes: &Attributes<'_>) -> bool {
    let verbs = strings(rule, "verbs");
    let groups = strings(rule, "apiGroups");
    let resources = strings(rule, "resources");
    let names = strings(rule, "resourceNames");
    let resource_matches = match attributes.subresource {
        None => contains(&resources, attributes.resource),
        Some(sub) => resources.iter().any(|item| {
            item == "*"
                || *item == format!("{}/{sub}", attributes.resource)
                || *item == format!("*/{sub}")
                || *item == format!("{}/*", attributes.resource)
        }),
    };
    contains(&verbs, attributes.verb)
        && contains(&groups, attributes.group)
        && resource_matches
        && (names.is_empty()
            || attributes
                .name
                .is_some_and(|name| names.iter().any(|n| n == name)))
}

fn binds(binding: &Value, user: &UserInfo) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|subject| {
            let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
            match subject.get("kind").and_then(Value::as_str) {
                Some("User") => name == user.name,
                Some("Group") => {
                    name == "system:authenticated" || user.groups.iter().any(|g| g == name)
                }
                _ => false,
            }
        })
}

fn stored_objects(state: &ClusterState, plural: &str, namespace: Option<&str>) -> Vec<Value> {
    let Some(def) = catalog::builtin("rbac.authorization.k8s.io", "v1", plural) else {
        return Vec::new();
    };
    state
        .list(&def, namespace)
        .filter_map(|(_, stored)| serde_json::from_slice(&stored.json).ok())
        .collect()
}

fn role_rules(state: &ClusterState, role_ref: &Value, namespace: Option<&str>) -> Vec<Value> {
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let (plural, namespace) = match role_ref.get("kind").and_then(Value::as_str) {
        Some("ClusterRole") => ("clusterroles", None),
        Some("Role") => match namespace {
            Some(namespace) => ("roles", Some(namespace)),
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    stored_objects(state, plural, namespace)
        .into_iter()
        .find(|role| role.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        .and_then(|role| role.get("rules").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Whether `user` may do what `attributes` describe on the cluster in `state`.
pub fn allowed(state: &ClusterState, user: &UserInfo, attributes: &Attributes<'_>) -> bool {
    if user.groups.iter().any(|group| group == "system:masters") {
        return true;
    }
    let mut bindings: Vec<(Value, Option<&str>)> =
        stored_objects(state, "clusterrolebindings", None)
            .into_iter()
            .map(|binding| (binding, None))
            .collect();
    if let Some(namespace) = attributes.namespace {
        bindings.extend(
            stored_objects(state, "rolebindings", Some(namespace))
                .into_iter()
                .map(|binding| (binding, Some(namespace))),
        );
    }
    bindings.iter().any(|(binding, namespace)| {
        binds(binding, user)
            && binding.get("roleRef").is_some_and(|role_ref| {
                role_rules(state, role_ref, *namespace)
                    .iter()
                    .any(|rule| rule_allows(rule, attributes))
            })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::Cluster;

    fn put(state: &mut ClusterState, plural: &str, mut object: Value) {
        let def = catalog::builtin("rbac.authorization.k8s.io", "v1", plural).unwrap();
        state.commit(&def.store_key, &mut object);
    }

    fn attributes<'a>(
        verb: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            subresource: None,
            namespace,
            name: None,
        }
    }

    #[test]
    fn roles_bind_users_and_groups_within_their_namespace_and_cluster_roles_everywhere() {
        let cluster = Cluster::new("edge-1", 64);
        let mut state = cluster.lock();
        put(
            &mut state,
            "roles",
            json!({"metadata": {"name": "reader", "namespace": "ns1"},
            "rules": [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments"],
                "verbs": ["get", "list"]}]}),
        );
        put(
            &mut state,
            "rolebindings",
            json!({"metadata": {"name": "b", "namespace": "ns1"},
            "subjects": [{"kind": "User", "name": "user-1", "apiGroup": "rbac.authorization.k8s.io"}],
            "roleRef": {"kind": "Role", "name": "reader", "apiGroup": "rbac.authorization.k8s.io"}}),
        );
        let user = UserInfo {
            name: "user-1".into(),
            groups: vec![],
        };
        let other = UserInfo {
            name: "user-2".into(),
            groups: vec!["team".into()],
        };
        assert!(allowed(
            &state,
            &user,
            &attributes("list", "pods", Some("ns1"))
        ));
        assert!(!allowed(
            &state,
            &user,
            &attributes("create", "pods", Some("ns1"))
        ));
        assert!(!allowed(
            &state,
            &user,
            &attributes("list", "pods", Some("default"))
        ));
        assert!(!allowed(&state, &user, &attributes("list", "pods", None)));
        assert!(!allowed(
            &state,
            &other,
            &attributes("list", "pods", Some("ns1"))
        ));

        put(
            &mut state,
            "clusterroles",
            json!({"metadata": {"name": "node-reader"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"]}]}),
        );
        put(
            &mut state,
            "clusterrolebindings",
            json!({"metadata": {"name": "nb"},
            "subjects": [{"kind": "Group", "name": "team"}],
            "roleRef": {"kind": "ClusterRole", "name": "node-reader"}}),
        );
        assert!(allowed(
            &state,
            &other,
            &attributes("delete", "nodes", None)
        ));
        assert!(!allowed(&state, &user, &attributes("get", "nodes", None)));
        let admin = UserInfo {
            name: "root".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(allowed(
            &state,
            &admin,
            &attributes("delete", "namespaces", None)
        ));
    }

    #[test]
    fn subresources_and_resource_names_narrow_a_rule() {
        let rule = json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"],
            "resourceNames": ["web"]});
        let mut asked = attributes("get", "pods", Some("ns"));
        assert!(!rule_allows(&rule, &asked), "the pod itself is not its log");
        asked.subresource = Some("log");
        assert!(!rule_allows(&rule, &asked), "no name given");
        asked.name = Some("web");
        assert!(rule_allows(&rule, &asked));
        assert_eq!(
            attributes("list", "pods", Some("ns1")).refusal(&UserInfo {
                name: "u".into(),
                groups: vec![]
            }),
            "pods is forbidden: User \"u\" cannot list resource \"pods\" in API group \"\" in the namespace \"ns1\""
        );
    }
}
