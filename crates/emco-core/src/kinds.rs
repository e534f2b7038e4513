//! The resource kinds the hub serves: the base referential schema (parents and references, as
//! upstream EMCO declares them) and, per kind, where it lives in the `/v2` REST API and how its
//! bodies look.
//!
//! Adding a stored resource to the API is one entry in [`REST_KINDS`] plus, if it is new to the
//! schema, one line in [`base_schema`].

use std::sync::LazyLock;

use crate::refschema::{
    RefSchema, ReferenceCondition, ReferenceSchema, ReferenceType, ResourceSchema, SchemaSegment,
};

/// Name of the schema segment holding the hub's own resources.
pub const BASE_SEGMENT: &str = "emco-base";

/// How the name of a new resource is found in its create body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// `metadata.name` (almost every kind).
    Metadata,
    /// A top-level string field (cluster labels: `clusterLabel`).
    TopLevel(&'static str),
}

/// How bodies travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// `multipart/form-data` with a JSON part `metadata` and a file part `file`.
    Multipart {
        /// Whether the `file` part must be present on create.
        file_required: bool,
    },
}

/// One resource kind of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestKind {
    /// Schema name of the stored resource (also its last key element).
    pub name: &'static str,
    /// Collection path under `/v2`, with `{element}` placeholders for the parent's key elements.
    pub collection: &'static str,
    /// Key elements that the item path adds after the collection (usually just `name`).
    pub own_elements: &'static [&'static str],
    /// Values of key elements fixed by the kind (not in the URL).
    pub fixed: &'static [(&'static str, &'static str)],
    pub name_field: NameField,
    pub body: BodyFormat,
    /// Name given to [`crate::validate::validate`].
    pub validation: &'static str,
    /// Whether `DELETE` on the collection removes every item of it.
    pub delete_collection: bool,
    /// Whether updating (`PUT`) an item that does not exist creates it (answering 201).
    pub put_creates: bool,
}

impl RestKind {
    const fn json(name: &'static str, collection: &'static str) -> Self {
        Self {
            name,
            collection,
            own_elements: &[],
            fixed: &[],
            name_field: NameField::Metadata,
            body: BodyFormat::Json,
            validation: name,
            delete_collection: false,
            put_creates: true,
        }
    }

    const fn multipart(mut self, file_required: bool) -> Self {
        self.body = BodyFormat::Multipart { file_required };
        self
    }

    const fn named_by(mut self, field: &'static str) -> Self {
        self.name_field = NameField::TopLevel(field);
        self
    }

    const fn deletable_collection(mut self) -> Self {
        self.delete_collection = true;
        self
    }

    /// The item path template under `/v2`.
    pub fn item_path(&self) -> String {
        let mut path = self.collection.to_owned();
        if self.own_elements.is_empty() {
            path.push_str(&format!("/{{{}}}", self.name));
        } else {
            for e in self.own_elements {
                path.push_str(&format!("/{{{e}}}"));
            }
        }
        path
    }

    /// Key elements named in the item path, in order.
    pub fn path_elements(&self) -> Vec<String> {
        placeholders(&self.item_path())
    }
}

/// `{x}` placeholders of a path template, in order.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_owned());
        rest = &rest[start + len + 1..];
    }
    out
}

const CA: &str = "projects/{project}/composite-apps/{compositeApp}/{compositeAppVersion}";
const DIG: &str = "projects/{project}/composite-apps/{compositeApp}/{compositeAppVersion}/deployment-intent-groups/{deploymentIntentGroup}";

macro_rules! path {
    ($base:expr, $rest:literal) => {
        const_format_concat!($base, $rest)
    };
}

/// `concat!` only takes literals; this joins two `&'static str` constants at compile time.
macro_rules! const_format_concat {
    ($a:expr, $b:literal) => {{
        const A: &str = $a;
        const B: &str = $b;
        const LEN: usize = A.len() + B.len();
        const BYTES: [u8; LEN] = {
            let mut out = [0u8; LEN];
            let (a, b) = (A.as_bytes(), B.as_bytes());
            let mut i = 0;
            while i < a.len() {
                out[i] = a[i];
                i += 1;
            }
            let mut j = 0;
            while j < b.len() {
                out[a.len() + j] = b[j];
                j += 1;
            }
            out
        };
        match std::str::from_utf8(&BYTES) {
            Ok(s) => s,
            Err(_) => panic!("path constants are ASCII"),
        }
    }};
}

/// Every stored kind the REST API serves.
pub static REST_KINDS: &[RestKind] = &[
    // Cluster manager.
    RestKind::json("clusterProvider", "cluster-providers"),
    RestKind::json("cluster", "cluster-providers/{clusterProvider}/clusters").multipart(true),
    RestKind::json(
        "clusterLabel",
        "cluster-providers/{clusterProvider}/clusters/{cluster}/labels",
    )
    .named_by("clusterLabel"),
    RestKind::json(
        "clusterKv",
        "cluster-providers/{clusterProvider}/clusters/{cluster}/kv-pairs",
    ),
    RestKind::json(
        "clusterSyncObject",
        "cluster-providers/{clusterProvider}/cluster-sync-objects",
    ),
    RestKind::json("clmController", "clm-controllers"),
    // Networks (ncm).
    RestKind::json(
        "network",
        "cluster-providers/{clusterProvider}/clusters/{cluster}/networks",
    ),
    RestKind::json(
        "providerNetwork",
        "cluster-providers/{clusterProvider}/clusters/{cluster}/provider-networks",
    ),
    // Orchestrator.
    RestKind {
        fixed: &[("controllerGroup", "orchestrator")],
        ..RestKind::json("controller", "controllers")
    },
    RestKind::json("project", "projects"),
    RestKind {
        own_elements: &["compositeApp", "compositeAppVersion"],
        validation: "compositeApp",
        ..RestKind::json("compositeAppVersion", "projects/{project}/composite-apps")
    },
    RestKind::json("app", path!(CA, "/apps")).multipart(true),
    RestKind::json("appDependency", path!(CA, "/apps/{app}/dependency")),
    RestKind::json("compositeProfile", path!(CA, "/composite-profiles")),
    RestKind::json(
        "appProfile",
        path!(CA, "/composite-profiles/{compositeProfile}/profiles"),
    )
    .multipart(true),
    RestKind::json(
        "deploymentIntentGroup",
        path!(CA, "/deployment-intent-groups"),
    ),
    RestKind::json("groupIntent", path!(DIG, "/intents")),
    RestKind::json(
        "genericPlacementIntent",
        path!(DIG, "/generic-placement-intents"),
    ),
    RestKind::json(
        "genericAppPlacementIntent",
        path!(
            DIG,
            "/generic-placement-intents/{genericPlacementIntent}/app-intents"
        ),
    ),
    // Distributed cloud manager (logical clouds).
    RestKind::json("logicalCloud", "projects/{project}/logical-clouds"),
    RestKind::json(
        "clusterReference",
        "projects/{project}/logical-clouds/{logicalCloud}/cluster-references",
    ),
    RestKind::json(
        "userPermission",
        "projects/{project}/logical-clouds/{logicalCloud}/user-permissions",
    ),
    RestKind::json(
        "clusterQuota",
        "projects/{project}/logical-clouds/{logicalCloud}/cluster-quotas",
    ),
    RestKind::json(
        "logicalCloudKv",
        "projects/{project}/logical-clouds/{logicalCloud}/kv-pairs",
    ),
    // Generic action controller.
    RestKind::json("genericK8sIntent", path!(DIG, "/generic-k8s-intents")),
    RestKind::json(
        "genericResource",
        path!(DIG, "/generic-k8s-intents/{genericK8sIntent}/resources"),
    )
    .multipart(false),
    RestKind::json(
        "customization",
        path!(
            DIG,
            "/generic-k8s-intents/{genericK8sIntent}/resources/{genericResource}/customizations"
        ),
    )
    .multipart(false),
    // Distributed traffic controller.
    RestKind::json("trafficGroupIntent", path!(DIG, "/traffic-group-intents")),
    RestKind::json(
        "inboundServerIntent",
        path!(
            DIG,
            "/traffic-group-intents/{trafficGroupIntent}/inbound-intents"
        ),
    ),
    RestKind::json(
        "inboundClientsIntent",
        path!(
            DIG,
            "/traffic-group-intents/{trafficGroupIntent}/inbound-intents/{inboundServerIntent}/clients"
        ),
    ),
    RestKind::json(
        "inboundClientsAccessIntent",
        path!(
            DIG,
            "/traffic-group-intents/{trafficGroupIntent}/inbound-intents/{inboundServerIntent}/clients/{inboundClientsIntent}/access-points"
        ),
    ),
    RestKind::json("dtcController", "dtc-controllers"),
    // OVN action controller (network interfaces of workloads).
    RestKind::json(
        "netControllerIntent",
        path!(DIG, "/network-controller-intent"),
    ),
    RestKind::json(
        "workloadIntent",
        path!(
            DIG,
            "/network-controller-intent/{netControllerIntent}/workload-intents"
        ),
    ),
    RestKind::json(
        "interfaceIntent",
        path!(
            DIG,
            "/network-controller-intent/{netControllerIntent}/workload-intents/{workloadIntent}/interfaces"
        ),
    ),
    // HPA placement controller.
    RestKind::json("hpaIntent", path!(DIG, "/hpa-intents")).deletable_collection(),
    RestKind::json(
        "hpaConsumer",
        path!(DIG, "/hpa-intents/{hpaIntent}/hpa-resource-consumers"),
    )
    .deletable_collection(),
    RestKind::json(
        "hpaResource",
        path!(
            DIG,
            "/hpa-intents/{hpaIntent}/hpa-resource-consumers/{hpaConsumer}/resource-requirements"
        ),
    )
    .deletable_collection(),
];

/// The REST kind with this schema name.
pub fn rest_kind(name: &str) -> Option<&'static RestKind> {
    REST_KINDS.iter().find(|k| k.name == name)
}

fn res(name: &str, parent: Option<&str>, references: Vec<ReferenceSchema>) -> ResourceSchema {
    ResourceSchema {
        name: name.to_owned(),
        parent: parent.map(str::to_owned),
        references,
    }
}

fn to(name: &str) -> ReferenceSchema {
    ReferenceSchema {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn many(name: &str) -> ReferenceSchema {
    ReferenceSchema {
        kind: ReferenceType::Many,
        ..to(name)
    }
}

/// The hub's own segment: the resources of every built-in service, related as upstream relates them.
pub fn base_segment() -> SchemaSegment {
    let p = Some;
    let resources = vec![
        // Cluster manager.
        res("clusterProvider", None, vec![]),
        res("cluster", p("clusterProvider"), vec![]),
        res("clusterLabel", p("cluster"), vec![]),
        res("clusterKv", p("cluster"), vec![]),
        res("clusterSyncObject", p("clusterProvider"), vec![]),
        res("clmController", None, vec![]),
        // Logical clouds.
        res("logicalCloud", p("project"), vec![]),
        res("clusterReference", p("logicalCloud"), vec![to("cluster")]),
        res("clusterQuota", p("logicalCloud"), vec![]),
        res("logicalCloudKv", p("logicalCloud"), vec![]),
        res("userPermission", p("logicalCloud"), vec![]),
        // Traffic controller.
        res("trafficGroupIntent", p("deploymentIntentGroup"), vec![]),
        res(
            "inboundServerIntent",
            p("trafficGroupIntent"),
            vec![to("app")],
        ),
        res(
            "inboundClientsIntent",
            p("inboundServerIntent"),
            vec![to("app")],
        ),
        res(
            "inboundClientsAccessIntent",
            p("inboundClientsIntent"),
            vec![to("app")],
        ),
        res("dtcController", None, vec![]),
        // Generic action controller.
        res("genericK8sIntent", p("deploymentIntentGroup"), vec![]),
        res("genericResource", p("genericK8sIntent"), vec![to("app")]),
        // The cluster is a reference only for name-scoped customizations: upstream's test-gac
        // names a `dummy` cluster in label-scoped ones.
        res(
            "customization",
            p("genericResource"),
            vec![ReferenceSchema {
                when: Some(ReferenceCondition {
                    field: "clusterInfo.scope".into(),
                    value: "name".into(),
                }),
                ..to("cluster")
            }],
        ),
        // HPA placement.
        res("hpaIntent", p("deploymentIntentGroup"), vec![to("app")]),
        res("hpaConsumer", p("hpaIntent"), vec![]),
        res("hpaResource", p("hpaConsumer"), vec![]),
        // OVN action controller.
        res("netControllerIntent", p("deploymentIntentGroup"), vec![]),
        res("workloadIntent", p("netControllerIntent"), vec![to("app")]),
        res("interfaceIntent", p("workloadIntent"), vec![]),
        // Networks.
        res("providerNetwork", p("cluster"), vec![]),
        res("network", p("cluster"), vec![]),
        // Orchestrator.
        res("controllerGroup.controller", None, vec![]),
        res("project", None, vec![]),
        res("compositeApp.compositeAppVersion", p("project"), vec![]),
        res("app", p("compositeAppVersion"), vec![]),
        res("compositeProfile", p("compositeAppVersion"), vec![]),
        res("appProfile", p("compositeProfile"), vec![to("app")]),
        res(
            "deploymentIntentGroup",
            p("compositeAppVersion"),
            vec![to("logicalCloud"), to("compositeProfile")],
        ),
        res(
            "groupIntent",
            p("deploymentIntentGroup"),
            vec![ReferenceSchema {
                kind: ReferenceType::Map,
                map: Some("intent".into()),
                fixed_kv: [("controllerGroup".to_owned(), "orchestrator".to_owned())].into(),
                filter_keys: vec!["genericPlacementIntent".into()],
                ..to("controller")
            }],
        ),
        res("genericPlacementIntent", p("deploymentIntentGroup"), vec![]),
        res(
            "genericAppPlacementIntent",
            p("genericPlacementIntent"),
            vec![to("app"), many("cluster"), many("clusterLabel")],
        ),
        res("appDependency", p("app"), vec![]),
    ];
    SchemaSegment {
        name: BASE_SEGMENT.to_owned(),
        resources,
    }
}

static BASE_SCHEMA: LazyLock<RefSchema> =
    LazyLock::new(|| match RefSchema::build(vec![base_segment()]) {
        Ok(s) => s,
        // The base segment is a constant of this crate; the unit tests prove it builds.
        Err(e) => panic!("the built-in referential schema is inconsistent: {e}"),
    });

/// The merged schema holding only the base segment.
pub fn base_schema() -> RefSchema {
    BASE_SCHEMA.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rest_kind_is_stored_in_the_schema_with_matching_path_elements() {
        let schema = base_schema();
        for kind in REST_KINDS {
            let node = schema
                .node(kind.name)
                .unwrap_or_else(|| panic!("{} not in schema", kind.name));
            assert!(node.stored, "{}", kind.name);
            let mut from_path = kind.path_elements();
            for (fixed, _) in kind.fixed {
                from_path.insert(0, (*fixed).to_owned());
            }
            assert_eq!(from_path, node.key_elements, "{}", kind.name);
        }
    }

    #[test]
    fn item_paths() {
        assert_eq!(
            rest_kind("project").unwrap().item_path(),
            "projects/{project}"
        );
        assert_eq!(
            rest_kind("compositeAppVersion").unwrap().item_path(),
            "projects/{project}/composite-apps/{compositeApp}/{compositeAppVersion}"
        );
        assert_eq!(
            rest_kind("app").unwrap().collection,
            "projects/{project}/composite-apps/{compositeApp}/{compositeAppVersion}/apps"
        );
    }

    #[test]
    fn placeholder_parsing() {
        assert_eq!(placeholders("a/{x}/b/{y}"), ["x", "y"]);
        assert!(placeholders("plain").is_empty());
    }
}
