//! Which kinds are cluster-scoped, so a rendered object without a namespace gets the release
//! namespace only when Kubernetes would give it one.
//!
//! The hub renders without talking to a cluster, so it cannot ask an API server's discovery as
//! `kubectl` and upstream's resource synchronizer do. Built-in cluster-scoped kinds come from a
//! table keyed by API group and kind (a CRD may reuse a built-in kind name in its own group);
//! kinds defined by a CustomResourceDefinition in the same render take that CRD's `spec.scope`;
//! every other kind is treated as namespaced.

use std::collections::HashMap;

use serde_json::Value;

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// The object belongs to a namespace.
    Namespaced,
    /// The object is cluster-wide; a namespace on it is meaningless.
    Cluster,
}

/// Built-in cluster-scoped kinds of Kubernetes (through 1.33), as (API group, kind). The core
/// group is `""`. `List` is no resource at all, and is kept out of namespace defaulting.
const BUILTIN_CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "ComponentStatus"),
    ("", "List"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authentication.k8s.io", "TokenReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("extensions", "PodSecurityPolicy"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "RuntimeClass"),
    ("policy", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRoleBindingList"),
    ("rbac.authorization.k8s.io", "ClusterRoleList"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "ResourceSlice"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("storagemigration.k8s.io", "StorageVersionMigration"),
];

/// The API group of the CustomResourceDefinition kind.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";

/// The CustomResourceDefinition kind.
pub const CRD_KIND: &str = "CustomResourceDefinition";

/// The API group part of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> the core group `""`).
pub fn api_group(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map_or("", |(group, _version)| group)
}

/// Whether (group, kind) is a built-in cluster-scoped kind.
pub fn is_builtin_cluster_scoped(group: &str, kind: &str) -> bool {
    BUILTIN_CLUSTER_SCOPED
        .iter()
        .any(|(listed_group, listed_kind)| *listed_group == group && *listed_kind == kind)
}

/// Scopes of the kinds that CustomResourceDefinitions in one render define.
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    defined: HashMap<(String, String), Scope>,
}

impl ScopeTable {
    /// Records the kind a CustomResourceDefinition defines; anything else is ignored, and so is a
    /// CRD without `spec.group` or `spec.names.kind`. A CRD without `spec.scope` (only possible
    /// in the old `v1beta1` API) defines a namespaced kind, the old API's default.
    pub fn learn(&mut self, api_version: &str, kind: &str, object: &Value) {
        if api_group(api_version) != CRD_GROUP || kind != CRD_KIND {
            return;
        }
        let spec = &object["spec"];
        let (Some(group), Some(defined_kind)) =
            (spec["group"].as_str(), spec["names"]["kind"].as_str())
        else {
            return;
        };
        let scope = match spec["scope"].as_str() {
            Some("Cluster") => Scope::Cluster,
            _ => Scope::Namespaced,
        };
        self.defined
            .insert((group.to_owned(), defined_kind.to_owned()), scope);
    }

    /// The scope of objects of `kind` in `group`.
    pub fn scope_of(&self, group: &str, kind: &str) -> Scope {
        if is_builtin_cluster_scoped(group, kind) {
            return Scope::Cluster;
        }
        self.defined
            .get(&(group.to_owned(), kind.to_owned()))
            .copied()
            .unwrap_or(Scope::Namespaced)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn api_group_of_core_and_named_groups() {
        assert_eq!(api_group("v1"), "");
        assert_eq!(api_group("apps/v1"), "apps");
        assert_eq!(
            api_group("rbac.authorization.k8s.io/v1"),
            "rbac.authorization.k8s.io"
        );
        assert_eq!(api_group(""), "");
    }

    #[test]
    fn builtin_kinds_are_matched_by_group_and_kind() {
        let table = ScopeTable::default();
        assert_eq!(table.scope_of("", "Namespace"), Scope::Cluster);
        assert_eq!(
            table.scope_of("rbac.authorization.k8s.io", "ClusterRole"),
            Scope::Cluster
        );
        assert_eq!(
            table.scope_of("storage.k8s.io", "StorageClass"),
            Scope::Cluster
        );
        assert_eq!(table.scope_of(CRD_GROUP, CRD_KIND), Scope::Cluster);
        assert_eq!(table.scope_of("", "ConfigMap"), Scope::Namespaced);
        assert_eq!(table.scope_of("apps", "Deployment"), Scope::Namespaced);
        assert_eq!(
            table.scope_of("rbac.authorization.k8s.io", "Role"),
            Scope::Namespaced
        );
        // The same kind name in another group is not the built-in one.
        assert_eq!(
            table.scope_of("example.com", "Namespace"),
            Scope::Namespaced
        );
        // Unknown kinds default to namespaced.
        assert_eq!(table.scope_of("example.com", "Widget"), Scope::Namespaced);
    }

    #[test]
    fn crds_in_the_render_define_their_kinds_scope() {
        let mut table = ScopeTable::default();
        let crd = |group: &str, kind: &str, scope: Option<&str>| {
            let mut spec = json!({"group": group, "names": {"kind": kind, "plural": "x"}});
            if let Some(scope) = scope {
                spec["scope"] = json!(scope);
            }
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": CRD_KIND, "spec": spec})
        };
        table.learn(
            "apiextensions.k8s.io/v1",
            CRD_KIND,
            &crd("example.com", "Widget", Some("Cluster")),
        );
        table.learn(
            "apiextensions.k8s.io/v1",
            CRD_KIND,
            &crd("example.com", "Gadget", Some("Namespaced")),
        );
        table.learn(
            "apiextensions.k8s.io/v1beta1",
            CRD_KIND,
            &crd("example.com", "Gizmo", None),
        );
        // Not a CRD: ignored even though it looks like one.
        table.learn(
            "example.com/v1",
            CRD_KIND,
            &crd("example.com", "Fake", Some("Cluster")),
        );
        assert_eq!(table.scope_of("example.com", "Widget"), Scope::Cluster);
        assert_eq!(table.scope_of("example.com", "Gadget"), Scope::Namespaced);
        assert_eq!(table.scope_of("example.com", "Gizmo"), Scope::Namespaced);
        assert_eq!(table.scope_of("example.com", "Fake"), Scope::Namespaced);
        assert_eq!(table.scope_of("other.com", "Widget"), Scope::Namespaced);
    }
}
