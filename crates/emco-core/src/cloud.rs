//! What a standard or privileged logical cloud puts on each of its clusters, and the kubeconfig
//! its user gets, as pure functions (upstream's dcm; names as upstream gives them).
//!
//! On every cluster the cloud references, in this order:
//! - the Namespace `spec.namespace`, with the cloud's `spec.labels`;
//! - per user permission `i` (in creation order): a Role `{lc}-role{i}` in the permission's
//!   namespace, or, for a permission without a namespace (what makes a cloud privileged), a
//!   ClusterRole `{lc}-clusterRole{i}`; each with one rule of the permission's apiGroups,
//!   resources and verbs;
//! - per permission a RoleBinding `{lc}-roleBinding{i}` (or ClusterRoleBinding
//!   `{lc}-clusterRoleBinding{i}`) of the cloud's user to it;
//! - per cluster quota a ResourceQuota of the quota's name in the namespace, `spec.hard` being
//!   the quota's spec;
//! - the CertificateSigningRequest `{lc}-{namespace}-user-csr` for the user (CN = user name;
//!   signer `kubernetes.io/kube-apiserver-client`; usages digital signature, key encipherment,
//!   client auth), which the synchronizer approves (`emco/approve: LogicalCloud`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The annotation (and its value) asking the synchronizer to approve a CSR.
pub const APPROVE_ANNOTATION: (&str, &str) = ("emco/approve", "LogicalCloud");

/// What a logical cloud document says that matters on the clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSpec {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub user: String,
}

fn text<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Reads a standard or privileged cloud's document; the error names the missing field.
pub fn cloud_spec(doc: &Value) -> Result<CloudSpec, String> {
    let name = text(doc, "/metadata/name").to_owned();
    let namespace = text(doc, "/spec/namespace").to_owned();
    if namespace.is_empty() {
        return Err(format!(
            "logical cloud {name:?}: spec.namespace is required for a standard or privileged cloud"
        ));
    }
    let user = text(doc, "/spec/user/userName").to_owned();
    if user.is_empty() {
        return Err(format!(
            "logical cloud {name:?}: spec.user.userName is required for a standard or privileged cloud"
        ));
    }
    let labels = doc
        .pointer("/spec/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(CloudSpec {
        name,
        namespace,
        labels,
        user,
    })
}

/// The name of the user's CertificateSigningRequest on each cluster.
pub fn csr_name(spec: &CloudSpec) -> String {
    format!("{}-{}-user-csr", spec.name, spec.namespace)
}

fn strings(doc: &Value, pointer: &str) -> Vec<Value> {
    doc.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether a cloud with these permissions is privileged (some permission is cluster-wide).
pub fn is_privileged(permissions: &[Value]) -> bool {
    permissions
        .iter()
        .any(|permission| text(permission, "/spec/namespace").is_empty())
}

/// Every object one cluster of the cloud gets, in apply order (see the module documentation).
/// `csr_pem` is the user's certificate request.
pub fn cluster_objects(
    spec: &CloudSpec,
    permissions: &[Value],
    quotas: &[Value],
    csr_pem: &str,
) -> Vec<Value> {
    let mut objects = Vec::new();
    let mut namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace},
    });
    if !spec.labels.is_empty() {
        namespace["metadata"]["labels"] = json!(spec.labels);
    }
    objects.push(namespace);
    let mut bindings = Vec::new();
    for (index, permission) in permissions.iter().enumerate() {
        let rule = json!({
            "apiGroups": strings(permission, "/spec/apiGroups"),
            "resources": strings(permission, "/spec/resources"),
            "verbs": strings(permission, "/spec/verbs"),
        });
        let permission_namespace = text(permission, "/spec/namespace");
        let subject = json!([{
            "kind": "User",
            "name": spec.user,
            "apiGroup": "rbac.authorization.k8s.io",
        }]);
        if permission_namespace.is_empty() {
            let role = format!("{}-clusterRole{index}", spec.name);
            objects.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": [rule],
            }));
            bindings.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{}-clusterRoleBinding{index}", spec.name)},
                "subjects": subject,
                "roleRef": {"kind": "ClusterRole", "name": role,
                    "apiGroup": "rbac.authorization.k8s.io"},
            }));
        } else {
            let role = format!("{}-role{index}", spec.name);
            objects.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": role, "namespace": permission_namespace},
                "rules": [rule],
            }));
            bindings.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": format!("{}-roleBinding{index}", spec.name),
                    "namespace": permission_namespace},
                "subjects": subject,
                "roleRef": {"kind": "Role", "name": role,
                    "apiGroup": "rbac.authorization.k8s.io"},
            }));
        }
    }
    objects.extend(bindings);
    for quota in quotas {
        let hard: Map<String, Value> = quota
            .get("spec")
            .and_then(Value::as_object)
            .map(|spec| {
                spec.iter()
                    .map(|(key, value)| {
                        let value = match value {
                            Value::String(text) => Value::String(text.clone()),
                            other => Value::String(other.to_string()),
                        };
                        (key.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": text(quota, "/metadata/name"), "namespace": spec.namespace},
            "spec": {"hard": hard},
        }));
    }
    use base64::Engine as _;
    objects.push(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {
            "name": csr_name(spec),
            "annotations": {APPROVE_ANNOTATION.0: APPROVE_ANNOTATION.1},
        },
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "key encipherment", "client auth"],
        },
    }));
    objects
}

/// The kubeconfig of the cloud's user for one cluster: the cluster's API server and CA (from
/// its registered kubeconfig), the user's certificate and key, the cloud's namespace.
pub fn user_kubeconfig(
    spec: &CloudSpec,
    cluster: &str,
    server: &str,
    certificate_authority_data: Option<&str>,
    certificate_pem: &str,
    key_pem: &str,
) -> String {
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let authority = match certificate_authority_data {
        Some(data) => format!("    certificate-authority-data: {data}\n"),
        None => String::new(),
    };
    let context = format!("{}-{cluster}", spec.user);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n{authority}    server: {server}\n\
         contexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    namespace: {namespace}\n    user: {user}\n\
         current-context: {context}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n\
         \x20   client-certificate-data: {certificate}\n    client-key-data: {key}\n",
        namespace = spec.namespace,
        user = spec.user,
        certificate = b64(certificate_pem),
        key = b64(key_pem),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn cloud() -> Value {
        json!({"metadata": {"name": "lc1"}, "spec": {"namespace": "ns1",
            "labels": {"team": "a"}, "user": {"userName": "user-1", "type": "certificate"}}})
    }

    #[test]
    fn a_standard_cloud_gets_its_namespace_roles_bindings_quota_and_csr_in_order() {
        let spec = cloud_spec(&cloud()).unwrap();
        let permissions = [
            json!({"metadata": {"name": "p"}, "spec": {"namespace": "ns1",
            "apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "list"]}}),
        ];
        let quotas = [json!({"metadata": {"name": "quota-1"},
            "spec": {"limits.cpu": "40", "pods": 500}})];
        let objects = cluster_objects(&spec, &permissions, &quotas, "PEM");
        let names: Vec<(&str, &str)> = objects
            .iter()
            .map(|o| (text(o, "/kind"), text(o, "/metadata/name")))
            .collect();
        assert_eq!(
            names,
            [
                ("Namespace", "ns1"),
                ("Role", "lc1-role0"),
                ("RoleBinding", "lc1-roleBinding0"),
                ("ResourceQuota", "quota-1"),
                ("CertificateSigningRequest", "lc1-ns1-user-csr"),
            ]
        );
        assert_eq!(objects[0]["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(objects[1]["metadata"]["namespace"], "ns1");
        assert_eq!(
            objects[2]["subjects"][0],
            json!({"kind": "User", "name": "user-1", "apiGroup": "rbac.authorization.k8s.io"})
        );
        assert_eq!(
            objects[3]["spec"]["hard"],
            json!({"limits.cpu": "40", "pods": "500"})
        );
        assert_eq!(
            objects[4]["metadata"]["annotations"]["emco/approve"],
            "LogicalCloud"
        );
        assert!(!is_privileged(&permissions));
    }

    #[test]
    fn a_permission_without_namespace_makes_the_cloud_privileged() {
        let spec = cloud_spec(&cloud()).unwrap();
        let permissions =
            [json!({"spec": {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}})];
        assert!(is_privileged(&permissions));
        let objects = cluster_objects(&spec, &permissions, &[], "PEM");
        assert_eq!(objects[1]["kind"], "ClusterRole");
        assert_eq!(objects[1]["metadata"]["name"], "lc1-clusterRole0");
        assert!(objects[1]["metadata"]["namespace"].is_null());
        assert_eq!(objects[2]["kind"], "ClusterRoleBinding");
        assert_eq!(objects[2]["roleRef"]["name"], "lc1-clusterRole0");
    }

    #[test]
    fn missing_namespace_or_user_is_named() {
        let mut doc = cloud();
        doc["spec"]["user"] = json!({});
        assert!(cloud_spec(&doc).unwrap_err().contains("spec.user.userName"));
        doc["spec"]["namespace"] = json!("");
        assert!(cloud_spec(&doc).unwrap_err().contains("spec.namespace"));
    }

    #[test]
    fn the_users_kubeconfig_names_the_namespace_and_carries_the_credentials() {
        let spec = cloud_spec(&cloud()).unwrap();
        let config = user_kubeconfig(
            &spec,
            "cluster1",
            "https://h:6443/c",
            Some("Q0E="),
            "CERT",
            "KEY",
        );
        assert!(config.contains("server: https://h:6443/c"));
        assert!(config.contains("certificate-authority-data: Q0E="));
        assert!(config.contains("namespace: ns1"));
        assert!(config.contains("client-certificate-data: Q0VSVA=="));
        assert!(config.contains("client-key-data: S0VZ"));
        assert!(config.contains("current-context: user-1-cluster1"));
    }
}
