//! The resource types a simulated cluster serves: the built-in ones (one shared table) and
//! those its CustomResourceDefinitions add (per cluster, see [`crate::crd`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Everything the simulator needs to know about one resource type in one version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// API group; empty for the core group.
    pub group: String,
    /// Version served, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Lower-case plural resource name used in URLs.
    pub plural: String,
    /// Lower-case singular name.
    pub singular: String,
    /// Objects live in a namespace.
    pub namespaced: bool,
    /// `kubectl` short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Has a `/status` subresource: the main endpoint ignores status changes.
    pub status: bool,
    /// Has a `/scale` subresource (`spec.replicas`).
    pub scale: bool,
    /// CertificateSigningRequest's `/approval` subresource.
    pub approval: bool,
    /// `metadata.generation` is kept and bumped when anything but metadata and status changes.
    pub generation: bool,
    /// Other versions of the same resource are served too (objects are stored once, in the
    /// version they were written in, and relabelled when read in another).
    pub multi_version: bool,
    /// Extra table columns (CRD `additionalPrinterColumns`): (name, type, JSON path).
    pub printer_columns: Vec<PrinterColumn>,
    /// Key under which a cluster stores these objects: `group/plural`, shared by all versions.
    pub store_key: Arc<str>,
}

/// One extra column in `kubectl get` output.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `date`, …
    pub column_type: String,
    /// Simple JSON path such as `.spec.replicas`.
    pub json_path: String,
    /// Above 0, kubectl shows it only with `-o wide`.
    pub priority: i64,
}

impl ResourceDef {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `configmaps` for the core group (as error messages name them).
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, or `ConfigMap` for the core group (as `Invalid` messages name them).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The list kind, `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The subresources served besides the main resource.
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subresources = Vec::new();
        if self.status {
            subresources.push("status");
        }
        if self.scale {
            subresources.push("scale");
        }
        if self.approval {
            subresources.push("approval");
        }
        if self.kind == "Namespace" && self.group.is_empty() {
            subresources.push("finalize");
        }
        subresources
    }

    /// The store key for a group and plural.
    pub fn store_key_for(group: &str, plural: &str) -> Arc<str> {
        Arc::from(format!("{group}/{plural}"))
    }
}

/// Verbs every resource serves.
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const STATUS: u8 = 1;
const SCALE: u8 = 2;
const APPROVAL: u8 = 4;
const GENERATION: u8 = 8;

/// (group, version, kind, plural, namespaced, short names, categories, flags)
type BuiltinRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    u8,
);

const ALL: &[&str] = &["all"];

#[rustfmt::skip]
const BUILTIN_ROWS: &[BuiltinRow] = &[
    ("", "v1", "Namespace", "namespaces", false, &["ns"], &[], STATUS),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"], &[], 0),
    ("", "v1", "Secret", "secrets", true, &[], &[], 0),
    ("", "v1", "Service", "services", true, &["svc"], ALL, STATUS),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], &[], 0),
    ("", "v1", "Pod", "pods", true, &["po"], ALL, STATUS),
    ("", "v1", "ResourceQuota", "resourcequotas", true, &["quota"], &[], STATUS),
    ("", "v1", "LimitRange", "limitranges", true, &["limits"], &[], 0),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"], &[], STATUS),
    ("", "v1", "PersistentVolume", "persistentvolumes", false, &["pv"], &[], STATUS),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"], &[], 0),
    ("", "v1", "Event", "events", true, &["ev"], &[], 0),
    ("", "v1", "Node", "nodes", false, &["no"], &[], STATUS),
    ("", "v1", "ReplicationController", "replicationcontrollers", true, &["rc"], ALL, STATUS | SCALE | GENERATION),
    ("apps", "v1", "Deployment", "deployments", true, &["deploy"], ALL, STATUS | SCALE | GENERATION),
    ("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"], ALL, STATUS | SCALE | GENERATION),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], ALL, STATUS | GENERATION),
    ("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"], ALL, STATUS | SCALE | GENERATION),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", true, &[], &[], 0),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", true, &["hpa"], ALL, STATUS),
    ("batch", "v1", "Job", "jobs", true, &[], ALL, STATUS | GENERATION),
    ("batch", "v1", "CronJob", "cronjobs", true, &["cj"], ALL, STATUS | GENERATION),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", false, &["csr"], &[], STATUS | APPROVAL),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"], &[], GENERATION),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true, &["ing"], &[], STATUS | GENERATION),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, &[], &[], GENERATION),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"], &[], STATUS | GENERATION),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], &[], 0),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[], &[], 0),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[], &[], 0),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[], &[], 0),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", false, &["sc"], &[], 0),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false, &[], &[], GENERATION),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false, &[], &[], GENERATION),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"], &[], STATUS | GENERATION),
    ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", false, &["pc"], &[], 0),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, &[], &[], 0),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &[], &[], 0),
];

/// The built-in resource types, in discovery order.
pub static BUILTINS: LazyLock<Vec<Arc<ResourceDef>>> = LazyLock::new(|| {
    BUILTIN_ROWS
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, short_names, categories, flags)| {
                Arc::new(ResourceDef {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                    singular: kind.to_lowercase(),
                    namespaced,
                    short_names: short_names.iter().map(|name| (*name).to_owned()).collect(),
                    categories: categories.iter().map(|name| (*name).to_owned()).collect(),
                    status: flags & STATUS != 0,
                    scale: flags & SCALE != 0,
                    approval: flags & APPROVAL != 0,
                    generation: flags & GENERATION != 0,
                    multi_version: false,
                    printer_columns: Vec::new(),
                    store_key: ResourceDef::store_key_for(group, plural),
                })
            },
        )
        .collect()
});

/// Built-in types by (group, version, plural).
static BUILTIN_INDEX: LazyLock<HashMap<(String, String, String), Arc<ResourceDef>>> =
    LazyLock::new(|| {
        BUILTINS
            .iter()
            .map(|def| {
                (
                    (def.group.clone(), def.version.clone(), def.plural.clone()),
                    def.clone(),
                )
            })
            .collect()
    });

/// The built-in type served at `group/version/plural`.
pub fn builtin(group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
    BUILTIN_INDEX
        .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
        .cloned()
}

/// The built-in type of a (group, kind), whatever its version.
pub fn builtin_by_kind(group: &str, kind: &str) -> Option<Arc<ResourceDef>> {
    BUILTINS
        .iter()
        .find(|def| def.group == group && def.kind == kind)
        .cloned()
}

/// The built-in Namespace type.
/// The built-in Node type.
pub fn nodes() -> Arc<ResourceDef> {
    builtin("", "v1", "nodes").unwrap_or_else(|| unreachable_builtin("nodes"))
}

pub fn namespaces() -> Arc<ResourceDef> {
    builtin("", "v1", "namespaces").unwrap_or_else(|| unreachable_builtin("namespaces"))
}

/// The built-in CustomResourceDefinition type.
pub fn crds() -> Arc<ResourceDef> {
    builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap_or_else(|| unreachable_builtin("customresourcedefinitions"))
}

/// The table above always has these rows; the `builtin_table_has_the_special_rows` test says so.
fn unreachable_builtin(plural: &str) -> Arc<ResourceDef> {
    tracing::error!(plural, "built-in resource table lost a row");
    Arc::new(ResourceDef {
        group: String::new(),
        version: "v1".into(),
        kind: String::new(),
        plural: plural.into(),
        singular: String::new(),
        namespaced: false,
        short_names: Vec::new(),
        categories: Vec::new(),
        status: false,
        scale: false,
        approval: false,
        generation: false,
        multi_version: false,
        printer_columns: Vec::new(),
        store_key: ResourceDef::store_key_for("", plural),
    })
}

/// The groups of the built-in types, in discovery order, each with its versions.
pub fn builtin_groups() -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for def in BUILTINS.iter() {
        match groups.iter_mut().find(|(group, _)| *group == def.group) {
            Some((_, versions)) if !versions.contains(&def.version) => {
                versions.push(def.version.clone())
            }
            Some(_) => {}
            None => groups.push((def.group.clone(), vec![def.version.clone()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_the_special_rows() {
        assert_eq!(namespaces().kind, "Namespace");
        assert_eq!(crds().kind, "CustomResourceDefinition");
        let deployments = builtin("apps", "v1", "deployments").unwrap();
        assert_eq!(deployments.qualified_resource(), "deployments.apps");
        assert_eq!(deployments.qualified_kind(), "Deployment.apps");
        assert_eq!(deployments.subresources(), vec!["status", "scale"]);
        assert_eq!(
            builtin("", "v1", "configmaps")
                .unwrap()
                .qualified_resource(),
            "configmaps"
        );
        assert!(
            builtin_groups()
                .iter()
                .any(|(group, versions)| group == "autoscaling" && versions == &["v2"])
        );
    }
}
