//! Table-driven proof that every rule has a rejecting example: one valid body per kind, a table
//! of edits that each break exactly one rule (checked by path and rule), and a test that every rule
//! a kind's schema lists ([`Schema::rule_sites`]) is broken by some row.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::dsl::{Rule, RuleSite, Schema};
use super::{check, known_kinds, schema_of};

fn meta(name: &str) -> Value {
    json!({"name": name, "description": "some description", "userData1": "data 1", "userData2": "data 2"})
}

/// A body of `kind` that follows every rule.
fn valid_body(kind: &str) -> Value {
    let ipv4 = json!([{"subnet": "172.16.30.0/24", "name": "subnet1", "gateway": "172.16.30.1/24",
        "excludeIps": "172.16.30.2 172.16.30.5..172.16.30.10"}]);
    let ipv6 = json!([{"subnet": "2001:db8:1::/64", "name": "subnet6", "gateway": "2001:db8:1::1/64",
        "excludeIps": "2001:db8:1::2"}]);
    let spec = match kind {
        "clusterLabel" => return json!({"clusterLabel": "edge-cluster"}),
        "service" => {
            return json!({"metadata": {"name": "svc", "description": "d"}, "spec": {"digs": ["dig1"]}});
        }
        "clusterKv" | "clusterSyncObject" | "logicalCloudKv" => json!({"kv": [{"key1": "value1"}]}),
        "clmController" => json!({"host": "10.0.0.1", "port": 9091, "priority": 1}),
        "providerNetwork" => json!({"cniType": "ovn4nfv", "ipv4Subnets": ipv4, "ipv6Subnets": ipv6,
            "providerNetType": "VLAN",
            "vlan": {"vlanID": "102", "providerInterfaceName": "eth1", "logicalInterfaceName": "eth1.102",
                "vlanNodeSelector": "specific", "nodeLabelList": ["kubernetes.io/hostname=node1"]}}),
        "network" => json!({"cniType": "ovn4nfv", "ipv4Subnets": ipv4, "ipv6Subnets": ipv6}),
        "compositeApp" => json!({"compositeAppVersion": "v1"}),
        "appDependency" => json!({"app": "app1", "opStatus": "Ready", "wait": 10}),
        "deploymentIntentGroup" => {
            json!({"compositeProfile": "profile1", "version": "r1", "logicalCloud": "lc1",
            "overrideValues": [{"app": "app1", "values": {"replicaCount": "2"}}]})
        }
        "groupIntent" => json!({"intent": {"genericPlacementIntent": "gpi"}}),
        "genericAppPlacementIntent" => json!({"app": "app1", "intent": {"selector": "name",
            "allOf": [{"clusterProvider": "p", "cluster": "c1"},
                {"anyOf": [{"clusterProvider": "p", "clusterLabel": "edge"}]}],
            "anyOf": [{"clusterProvider": "p", "cluster": "c2"}]}}),
        "controller" => json!({"host": "10.0.0.1", "port": 9031, "type": "action", "priority": 1}),
        "logicalCloud" => json!({"namespace": "ns1", "labels": {"team": "a"}, "level": "1",
            "user": {"userName": "user1", "type": "certificate"}}),
        "clusterReference" => {
            json!({"clusterProvider": "p", "cluster": "c1", "loadBalancerIP": "10.0.0.9"})
        }
        "userPermission" => {
            json!({"namespace": "ns1", "apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})
        }
        "clusterQuota" => Value::Object(
            QUOTAS
                .iter()
                .map(|q| ((*q).to_owned(), json!("10")))
                .collect(),
        ),
        "genericResource" => json!({"app": "app1", "newObject": "true",
            "resourceGVK": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm1"}}),
        "customization" => json!({"clusterSpecific": "true",
            "clusterInfo": {"scope": "label", "clusterProvider": "p", "cluster": "", "clusterLabel": "edge", "mode": "allow"},
            "patchType": "json", "patchJson": [{"op": "replace", "path": "/data/x", "value": 1}],
            "configMapOptions": {"dataKeyOptions": [{"fileName": "f.yaml", "keyName": "k", "mergePatch": "false"}]},
            "secretOptions": {"dataKeyOptions": [{"fileName": "s.yaml", "keyName": "k"}]}}),
        "inboundServerIntent" => {
            json!({"app": "server", "appLabel": "app=server", "serviceName": "svc",
            "externalName": "", "port": 80, "protocol": "TCP", "externalSupport": false, "serviceMesh": "istio",
            "edgeCNF": "", "management": {"sidecarProxy": "yes", "tlsType": "MUTUAL"}})
        }
        "inboundClientsIntent" => {
            json!({"app": "client", "appLabel": "app=client", "serviceName": "svc",
            "namespaces": [], "cidrs": []})
        }
        "inboundClientsAccessIntent" => {
            json!({"action": "ALLOW", "url": ["/api/*"], "access": ["GET"]})
        }
        "dtcController" => {
            json!({"host": "10.0.0.1", "port": 9040, "type": "action", "priority": 1})
        }
        "hpaIntent" => json!({"app": "app1"}),
        "hpaConsumer" => {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "replicas": 1, "name": "d1",
            "container": "c1"})
        }
        "hpaResource" => json!({"allocatable": true, "mandatory": true, "weight": 1,
            "resource": {"name": "cpu", "requests": 1, "limits": 2, "units": "m"}}),
        "workloadIntent" => {
            json!({"app": "app1", "workloadResource": "r1-app1", "type": "Deployment"})
        }
        "interfaceIntent" => json!({"interface": "eth1", "name": "net1", "defaultGateway": "false",
            "ipAddress": "10.0.0.5", "macAddress": "52:54:00:4e:4f:2b"}),
        _ => return json!({"metadata": meta("res1")}),
    };
    json!({"metadata": meta("res1"), "spec": spec})
}

const QUOTAS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.ephemeral-storage",
    "persistentvolumeclaims",
    "pods",
    "configmaps",
    "replicationcontrollers",
    "resourcequotas",
    "services",
    "services.loadbalancers",
    "services.nodeports",
    "secrets",
    "count/replicationcontrollers",
    "count/deployments.apps",
    "count/replicasets.apps",
    "count/statefulsets.apps",
    "count/jobs.batch",
    "count/cronjobs.batch",
    "count/deployments.extensions",
];

/// One rejecting example: edits to the kind's valid body and the rule they must break.
struct Row {
    kind: &'static str,
    /// JSON pointer and new value (`None` removes the member).
    edits: Vec<(String, Option<Value>)>,
    path: String,
    rule: Rule,
}

impl Row {
    fn new(kind: &'static str, path: &str, rule: Rule) -> Self {
        Self {
            kind,
            edits: Vec::new(),
            path: path.to_owned(),
            rule,
        }
    }
    fn set(mut self, pointer: &str, value: Value) -> Self {
        self.edits.push((pointer.to_owned(), Some(value)));
        self
    }
    fn remove(mut self, pointer: &str) -> Self {
        self.edits.push((pointer.to_owned(), None));
        self
    }
    fn body(&self) -> Value {
        let mut body = valid_body(self.kind);
        for (pointer, value) in &self.edits {
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/").replace("~0", "~");
            let parent = body
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("{}: no {parent}", self.kind));
            match (parent, value) {
                (Value::Object(members), Some(value)) => {
                    members.insert(last, value.clone());
                }
                (Value::Object(members), None) => {
                    members.remove(&last);
                }
                (Value::Array(items), Some(value)) => {
                    items[last.parse::<usize>().unwrap()] = value.clone()
                }
                (other, _) => panic!("{}: cannot edit {pointer} in {other}", self.kind),
            }
        }
        body
    }
}

fn long(chars: usize) -> Value {
    Value::String("a".repeat(chars))
}

/// Rows for a name-like string: missing, too long, not a name.
fn name_rows(rows: &mut Vec<Row>, kind: &'static str, pointer: &str, path: &str) {
    rows.push(Row::new(kind, path, Rule::Required).remove(pointer));
    rows.push(Row::new(kind, path, Rule::MaxChars).set(pointer, long(300)));
    rows.push(Row::new(kind, path, Rule::Pattern).set(pointer, json!("-not-a-name")));
}

fn too_long(rows: &mut Vec<Row>, kind: &'static str, pointer: &str, path: &str, chars: usize) {
    rows.push(Row::new(kind, path, Rule::MaxChars).set(pointer, long(chars)));
}

fn missing(rows: &mut Vec<Row>, kind: &'static str, pointer: &str, path: &str) {
    rows.push(Row::new(kind, path, Rule::Required).remove(pointer));
}

fn metadata_rows(rows: &mut Vec<Row>) {
    for &kind in known_kinds() {
        if kind == "clusterLabel" {
            continue;
        }
        name_rows(rows, kind, "/metadata/name", "metadata.name");
        if kind == "service" {
            continue;
        }
        if !matches!(
            kind,
            "genericK8sIntent" | "genericResource" | "customization"
        ) {
            too_long(
                rows,
                kind,
                "/metadata/description",
                "metadata.description",
                1025,
            );
        }
        too_long(rows, kind, "/metadata/userData1", "metadata.userData1", 513);
        too_long(rows, kind, "/metadata/userData2", "metadata.userData2", 513);
    }
}

fn cluster_manager_rows(rows: &mut Vec<Row>) {
    name_rows(rows, "clusterLabel", "/clusterLabel", "clusterLabel");
    for kind in ["clusterKv", "clusterSyncObject"] {
        missing(rows, kind, "/spec/kv", "spec.kv");
        rows.push(
            Row::new(kind, "spec.kv[0].key1", Rule::MaxChars)
                .set("/spec/kv/0", json!({"key1": long(129)})),
        );
    }
    let kind = "clmController";
    missing(rows, kind, "/spec/host", "spec.host");
    too_long(rows, kind, "/spec/host", "spec.host", 129);
    missing(rows, kind, "/spec/port", "spec.port");
    rows.push(Row::new(kind, "spec.port", Rule::Minimum).set("/spec/port", json!(-1)));
    rows.push(Row::new(kind, "spec.port", Rule::Maximum).set("/spec/port", json!(50001)));
    rows.push(Row::new(kind, "spec.priority", Rule::Minimum).set("/spec/priority", json!(-1)));
    rows.push(Row::new(kind, "spec.priority", Rule::Maximum).set("/spec/priority", json!(101)));
}

fn network_rows(rows: &mut Vec<Row>) {
    for kind in ["providerNetwork", "network"] {
        rows.push(
            Row::new(kind, "spec", Rule::AnyOf)
                .set("/spec/ipv4Subnets", json!([]))
                .remove("/spec/ipv6Subnets"),
        );
        name_rows(rows, kind, "/spec/cniType", "spec.cniType");
        rows.push(Row::new(kind, "spec.cniType", Rule::Enum).set("/spec/cniType", json!("calico")));
        for family in ["ipv4Subnets", "ipv6Subnets"] {
            let at = |member: &str| format!("/spec/{family}/0/{member}");
            let path = |member: &str| format!("spec.{family}[0].{member}");
            too_long(rows, kind, &at("excludeIps"), &path("excludeIps"), 2000);
            too_long(rows, kind, &at("gateway"), &path("gateway"), 200);
            name_rows(rows, kind, &at("name"), &path("name"));
            missing(rows, kind, &at("subnet"), &path("subnet"));
            too_long(rows, kind, &at("subnet"), &path("subnet"), 200);
            rows.push(
                Row::new(kind, &path("subnet"), Rule::Pattern)
                    .set(&at("subnet"), json!("10.0.0.0/24.")),
            );
            if family == "ipv4Subnets" {
                rows.push(
                    Row::new(kind, &path("subnet"), Rule::Format)
                        .set(&at("subnet"), json!("subnet")),
                );
                rows.push(
                    Row::new(kind, &path("gateway"), Rule::Format)
                        .set(&at("gateway"), json!("10.0.0.1")),
                );
                rows.push(
                    Row::new(kind, &path("excludeIps"), Rule::Format)
                        .set(&at("excludeIps"), json!("1.1.1.1-2")),
                );
            }
        }
    }
    let kind = "providerNetwork";
    name_rows(rows, kind, "/spec/providerNetType", "spec.providerNetType");
    rows.push(
        Row::new(kind, "spec.providerNetType", Rule::Format)
            .set("/spec/providerNetType", json!("VXLAN")),
    );
    rows.push(
        Row::new(
            kind,
            "spec.vlan.nodeLabelList",
            Rule::Check("nodeLabelsForSpecificNodes"),
        )
        .set("/spec/vlan/nodeLabelList", json!([])),
    );
    too_long(
        rows,
        kind,
        "/spec/vlan/logicalInterfaceName",
        "spec.vlan.logicalInterfaceName",
        129,
    );
    too_long(
        rows,
        kind,
        "/spec/vlan/providerInterfaceName",
        "spec.vlan.providerInterfaceName",
        129,
    );
    missing(
        rows,
        kind,
        "/spec/vlan/nodeLabelList",
        "spec.vlan.nodeLabelList",
    );
    rows.push(
        Row::new(kind, "spec.vlan.nodeLabelList[0]", Rule::MaxChars)
            .set("/spec/vlan/nodeLabelList", json!([long(129)])),
    );
    rows.push(
        Row::new(kind, "spec.vlan.nodeLabelList[0]", Rule::Format)
            .set("/spec/vlan/nodeLabelList", json!(["a="])),
    );
    missing(rows, kind, "/spec/vlan/vlanID", "spec.vlan.vlanID");
    rows.push(
        Row::new(kind, "spec.vlan.vlanID", Rule::MaxChars)
            .set("/spec/vlan/vlanID", json!("1".repeat(129))),
    );
    rows.push(
        Row::new(kind, "spec.vlan.vlanID", Rule::Format).set("/spec/vlan/vlanID", json!("5000")),
    );
    missing(
        rows,
        kind,
        "/spec/vlan/vlanNodeSelector",
        "spec.vlan.vlanNodeSelector",
    );
    too_long(
        rows,
        kind,
        "/spec/vlan/vlanNodeSelector",
        "spec.vlan.vlanNodeSelector",
        129,
    );
    rows.push(
        Row::new(kind, "spec.vlan.vlanNodeSelector", Rule::Format)
            .set("/spec/vlan/vlanNodeSelector", json!("some")),
    );
}

fn orchestrator_rows(rows: &mut Vec<Row>) {
    too_long(
        rows,
        "compositeApp",
        "/spec/compositeAppVersion",
        "spec.compositeAppVersion",
        129,
    );
    rows.push(
        Row::new("compositeApp", "spec.compositeAppVersion", Rule::Pattern)
            .set("/spec/compositeAppVersion", json!("v1/")),
    );

    let kind = "appDependency";
    name_rows(rows, kind, "/spec/app", "spec.app");
    missing(rows, kind, "/spec/opStatus", "spec.opStatus");
    too_long(rows, kind, "/spec/opStatus", "spec.opStatus", 129);
    rows.push(
        Row::new(kind, "spec.opStatus", Rule::Pattern).set("/spec/opStatus", json!("Running")),
    );
    rows.push(Row::new(kind, "spec.wait", Rule::Minimum).set("/spec/wait", json!(-1)));
    rows.push(Row::new(kind, "spec.wait", Rule::Maximum).set("/spec/wait", json!(4097)));

    let kind = "deploymentIntentGroup";
    for member in ["compositeProfile", "logicalCloud", "version"] {
        name_rows(
            rows,
            kind,
            &format!("/spec/{member}"),
            &format!("spec.{member}"),
        );
    }
    missing(rows, kind, "/spec/overrideValues", "spec.overrideValues");
    missing(
        rows,
        kind,
        "/spec/overrideValues/0/values",
        "spec.overrideValues[0].values",
    );
    too_long(
        rows,
        kind,
        "/spec/overrideValues/0/values/replicaCount",
        "spec.overrideValues[0].values.replicaCount",
        129,
    );

    missing(rows, "groupIntent", "/spec/intent", "spec.intent");
    too_long(
        rows,
        "groupIntent",
        "/spec/intent/genericPlacementIntent",
        "spec.intent.genericPlacementIntent",
        129,
    );

    let kind = "genericAppPlacementIntent";
    missing(rows, kind, "/spec/app", "spec.app");
    too_long(rows, kind, "/spec/app", "spec.app", 129);
    rows.push(
        Row::new(kind, "spec.intent.selector", Rule::Enum)
            .set("/spec/intent/selector", json!("zone")),
    );
    for (at, path) in [
        ("/spec/intent/allOf/0", "spec.intent.allOf[0]"),
        (
            "/spec/intent/allOf/1/anyOf/0",
            "spec.intent.allOf[1].anyOf[0]",
        ),
        ("/spec/intent/anyOf/0", "spec.intent.anyOf[0]"),
    ] {
        rows.push(Row::new(kind, path, Rule::OneOf).set(at, json!({"clusterProvider": "p"})));
        for member in ["cluster", "clusterLabel", "clusterProvider"] {
            too_long(
                rows,
                kind,
                &format!("{at}/{member}"),
                &format!("{path}.{member}"),
                129,
            );
        }
    }

    let kind = "controller";
    too_long(rows, kind, "/spec/host", "spec.host", 129);
    too_long(rows, kind, "/spec/type", "spec.type", 49);
    rows.push(Row::new(kind, "spec.port", Rule::Minimum).set("/spec/port", json!(-1)));
    rows.push(Row::new(kind, "spec.port", Rule::Maximum).set("/spec/port", json!(50001)));
    rows.push(Row::new(kind, "spec.priority", Rule::Minimum).set("/spec/priority", json!(-1)));
    rows.push(Row::new(kind, "spec.priority", Rule::Maximum).set("/spec/priority", json!(101)));

    missing(rows, "service", "/spec/digs", "spec.digs");
}

fn logical_cloud_rows(rows: &mut Vec<Row>) {
    let kind = "logicalCloud";
    too_long(rows, kind, "/spec/labels/team", "spec.labels.team", 129);
    too_long(rows, kind, "/spec/level", "spec.level", 3);
    too_long(rows, kind, "/spec/namespace", "spec.namespace", 129);
    too_long(rows, kind, "/spec/user/type", "spec.user.type", 129);
    too_long(rows, kind, "/spec/user/userName", "spec.user.userName", 21);

    let kind = "clusterReference";
    too_long(rows, kind, "/spec/cluster", "spec.cluster", 129);
    too_long(
        rows,
        kind,
        "/spec/clusterProvider",
        "spec.clusterProvider",
        129,
    );
    too_long(
        rows,
        kind,
        "/spec/loadBalancerIP",
        "spec.loadBalancerIP",
        17,
    );

    let kind = "userPermission";
    for list in ["apiGroups", "resources", "verbs"] {
        missing(
            rows,
            kind,
            &format!("/spec/{list}"),
            &format!("spec.{list}"),
        );
    }
    too_long(rows, kind, "/spec/namespace", "spec.namespace", 129);

    for quota in QUOTAS {
        too_long(
            rows,
            "clusterQuota",
            &format!("/spec/{}", quota.replace('/', "~1")),
            &format!("spec.{quota}"),
            129,
        );
    }
}

/// Rows for a string the generic action controller demands be non-empty.
fn given_rows(
    rows: &mut Vec<Row>,
    kind: &'static str,
    pointer: &str,
    path: &str,
    bad: Option<Value>,
) {
    missing(rows, kind, pointer, path);
    rows.push(Row::new(kind, path, Rule::MinChars).set(pointer, json!("")));
    match bad {
        Some(value) => rows.push(Row::new(kind, path, Rule::Enum).set(pointer, value)),
        None => too_long(rows, kind, pointer, path, 129),
    }
}

fn generic_action_rows(rows: &mut Vec<Row>) {
    let kind = "genericResource";
    given_rows(rows, kind, "/spec/app", "spec.app", None);
    given_rows(
        rows,
        kind,
        "/spec/newObject",
        "spec.newObject",
        Some(json!("yes")),
    );
    for member in ["apiVersion", "kind", "name"] {
        given_rows(
            rows,
            kind,
            &format!("/spec/resourceGVK/{member}"),
            &format!("spec.resourceGVK.{member}"),
            None,
        );
    }

    let kind = "customization";
    given_rows(
        rows,
        kind,
        "/spec/clusterSpecific",
        "spec.clusterSpecific",
        Some(json!("maybe")),
    );
    given_rows(
        rows,
        kind,
        "/spec/clusterInfo/scope",
        "spec.clusterInfo.scope",
        Some(json!("zone")),
    );
    given_rows(
        rows,
        kind,
        "/spec/clusterInfo/clusterProvider",
        "spec.clusterInfo.clusterProvider",
        None,
    );
    given_rows(
        rows,
        kind,
        "/spec/clusterInfo/mode",
        "spec.clusterInfo.mode",
        Some(json!("permit")),
    );
    too_long(
        rows,
        kind,
        "/spec/clusterInfo/cluster",
        "spec.clusterInfo.cluster",
        129,
    );
    too_long(
        rows,
        kind,
        "/spec/clusterInfo/clusterLabel",
        "spec.clusterInfo.clusterLabel",
        129,
    );
    rows.push(
        Row::new(kind, "spec.patchType", Rule::Enum).set("/spec/patchType", json!("strategic")),
    );
    missing(rows, kind, "/spec/patchJson/0/op", "spec.patchJson[0].op");
    rows.push(
        Row::new(kind, "spec.patchJson[0].op", Rule::Enum)
            .set("/spec/patchJson/0/op", json!("merge")),
    );
    missing(
        rows,
        kind,
        "/spec/patchJson/0/path",
        "spec.patchJson[0].path",
    );
    too_long(
        rows,
        kind,
        "/spec/patchJson/0/path",
        "spec.patchJson[0].path",
        129,
    );
    missing(
        rows,
        kind,
        "/spec/patchJson/0/value",
        "spec.patchJson[0].value",
    );
    for options in ["configMapOptions", "secretOptions"] {
        let at = |member: &str| format!("/spec/{options}/dataKeyOptions/0/{member}");
        let path = |member: &str| format!("spec.{options}.dataKeyOptions[0].{member}");
        for member in ["fileName", "keyName"] {
            missing(rows, kind, &at(member), &path(member));
            too_long(rows, kind, &at(member), &path(member), 129);
        }
        rows.push(
            Row::new(kind, &path("mergePatch"), Rule::Enum).set(&at("mergePatch"), json!("yes")),
        );
    }
}

fn traffic_rows(rows: &mut Vec<Row>) {
    for kind in ["inboundServerIntent", "inboundClientsIntent"] {
        for member in ["app", "appLabel", "serviceName"] {
            name_rows(
                rows,
                kind,
                &format!("/spec/{member}"),
                &format!("spec.{member}"),
            );
        }
    }
    let kind = "inboundServerIntent";
    for member in ["edgeCNF", "externalName", "serviceMesh"] {
        too_long(
            rows,
            kind,
            &format!("/spec/{member}"),
            &format!("spec.{member}"),
            129,
        );
    }
    too_long(
        rows,
        kind,
        "/spec/management/sidecarProxy",
        "spec.management.sidecarProxy",
        5,
    );
    too_long(
        rows,
        kind,
        "/spec/management/tlsType",
        "spec.management.tlsType",
        9,
    );
    missing(rows, kind, "/spec/port", "spec.port");
    rows.push(Row::new(kind, "spec.port", Rule::Minimum).set("/spec/port", json!(-1)));
    rows.push(Row::new(kind, "spec.port", Rule::Maximum).set("/spec/port", json!(65536)));
    missing(rows, kind, "/spec/protocol", "spec.protocol");
    rows.push(
        Row::new(kind, "spec.protocol", Rule::MaxChars).set("/spec/protocol", json!("NonTCP")),
    );
    rows.push(Row::new(kind, "spec.protocol", Rule::Pattern).set("/spec/protocol", json!("-TCP")));

    for list in ["cidrs", "namespaces"] {
        missing(
            rows,
            "inboundClientsIntent",
            &format!("/spec/{list}"),
            &format!("spec.{list}"),
        );
    }

    let kind = "inboundClientsAccessIntent";
    missing(rows, kind, "/spec/access", "spec.access");
    rows.push(Row::new(kind, "spec.access[0]", Rule::Enum).set("/spec/access", json!(["PATCH"])));
    missing(rows, kind, "/spec/action", "spec.action");
    rows.push(Row::new(kind, "spec.action", Rule::Enum).set("/spec/action", json!("DENY")));
    missing(rows, kind, "/spec/url", "spec.url");
    rows.push(
        Row::new(kind, "spec.url[0]", Rule::MaxChars)
            .set("/spec/url", json!([format!("/{}", "a".repeat(4096))])),
    );
    rows.push(Row::new(kind, "spec.url[0]", Rule::Pattern).set("/spec/url", json!(["api"])));

    let kind = "dtcController";
    too_long(rows, kind, "/spec/host", "spec.host", 129);
    missing(rows, kind, "/spec/port", "spec.port");
    rows.push(Row::new(kind, "spec.port", Rule::Minimum).set("/spec/port", json!(0)));
    rows.push(Row::new(kind, "spec.port", Rule::Maximum).set("/spec/port", json!(65536)));
    missing(rows, kind, "/spec/priority", "spec.priority");
    rows.push(Row::new(kind, "spec.priority", Rule::Minimum).set("/spec/priority", json!(0)));
    rows.push(Row::new(kind, "spec.priority", Rule::Maximum).set("/spec/priority", json!(101)));
    missing(rows, kind, "/spec/type", "spec.type");
    rows.push(
        Row::new(kind, "spec.type", Rule::MaxChars)
            .set("/spec/type", json!(format!("action{}", "a".repeat(43)))),
    );
    rows.push(Row::new(kind, "spec.type", Rule::Pattern).set("/spec/type", json!("placement")));
}

fn hpa_rows(rows: &mut Vec<Row>) {
    missing(rows, "hpaIntent", "/spec/app", "spec.app");
    rows.push(Row::new("hpaIntent", "spec.app", Rule::Pattern).set("/spec/app", json!("-app")));

    missing(rows, "hpaConsumer", "/spec/name", "spec.name");
    rows.push(Row::new("hpaConsumer", "spec.name", Rule::Required).set("/spec/name", json!("")));
    rows.push(
        Row::new("hpaConsumer", "spec.replicas", Rule::Minimum).set("/spec/replicas", json!(-1)),
    );

    let kind = "hpaResource";
    missing(rows, kind, "/spec/allocatable", "spec.allocatable");
    rows.push(Row::new(kind, "spec.weight", Rule::Minimum).set("/spec/weight", json!(-1)));
    rows.push(
        Row::new(kind, "spec.weight", Rule::Maximum).set("/spec/weight", json!(2_147_483_648_i64)),
    );
    rows.push(
        Row::new(kind, "spec.resource", Rule::OneOf).set("/spec/resource", json!({"units": "m"})),
    );
    rows.push(
        Row::new(kind, "spec.resource.requests", Rule::Minimum)
            .set("/spec/resource/requests", json!(-1)),
    );
    rows.push(
        Row::new(kind, "spec.resource.limits", Rule::Minimum)
            .set("/spec/resource/limits", json!(-1)),
    );
    rows.push(
        Row::new(kind, "spec.resource.units", Rule::Pattern)
            .set("/spec/resource/units", json!("-m")),
    );
    rows.push(
        Row::new(
            kind,
            "spec.resource.requests",
            Rule::Check("requestsWithinLimits"),
        )
        .set("/spec/resource/requests", json!(3)),
    );
    rows.push(
        Row::new(
            kind,
            "spec.resource",
            Rule::Check("resourceMatchesAllocatable"),
        )
        .set("/spec/allocatable", json!(false)),
    );
}

fn ovn_rows(rows: &mut Vec<Row>) {
    let kind = "workloadIntent";
    for member in ["app", "type", "workloadResource"] {
        name_rows(
            rows,
            kind,
            &format!("/spec/{member}"),
            &format!("spec.{member}"),
        );
    }
    let kind = "interfaceIntent";
    for member in ["interface", "name"] {
        name_rows(
            rows,
            kind,
            &format!("/spec/{member}"),
            &format!("spec.{member}"),
        );
    }
    too_long(
        rows,
        kind,
        "/spec/defaultGateway",
        "spec.defaultGateway",
        129,
    );
    rows.push(
        Row::new(kind, "spec.defaultGateway", Rule::Format)
            .set("/spec/defaultGateway", json!("-eth0")),
    );
    too_long(rows, kind, "/spec/ipAddress", "spec.ipAddress", 129);
    rows.push(
        Row::new(kind, "spec.ipAddress", Rule::Format).set("/spec/ipAddress", json!("10.0.0")),
    );
    too_long(rows, kind, "/spec/macAddress", "spec.macAddress", 129);
    rows.push(
        Row::new(kind, "spec.macAddress", Rule::Format).set("/spec/macAddress", json!("52:54:00")),
    );
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    metadata_rows(&mut rows);
    cluster_manager_rows(&mut rows);
    network_rows(&mut rows);
    orchestrator_rows(&mut rows);
    logical_cloud_rows(&mut rows);
    generic_action_rows(&mut rows);
    traffic_rows(&mut rows);
    hpa_rows(&mut rows);
    ovn_rows(&mut rows);
    rows
}

fn schema(kind: &str) -> &'static Schema {
    schema_of(kind).unwrap_or_else(|| panic!("{kind} has no schema"))
}

#[test]
fn every_kind_accepts_its_valid_body() {
    for kind in known_kinds() {
        assert_eq!(check(kind, &valid_body(kind)), Ok(()), "{kind}");
    }
}

#[test]
fn every_row_breaks_the_rule_it_names() {
    let mut wrong = Vec::new();
    for row in rows() {
        match check(row.kind, &row.body()) {
            Ok(()) => wrong.push(format!(
                "{} {} {:?}: accepted",
                row.kind, row.path, row.rule
            )),
            Err(failure) if failure.path != row.path || failure.rule != row.rule => {
                wrong.push(format!(
                    "{} {} {:?}: got {} {:?} ({})",
                    row.kind, row.path, row.rule, failure.path, failure.rule, failure.message
                ))
            }
            Err(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows broke something else:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_rule_has_a_rejecting_example() {
    let mut covered: BTreeSet<(&str, RuleSite)> = BTreeSet::new();
    for row in rows() {
        if let Err(failure) = check(row.kind, &row.body()) {
            covered.insert((
                row.kind,
                RuleSite {
                    schema_path: failure.schema_path,
                    rule: failure.rule,
                },
            ));
        }
    }
    let mut uncovered = Vec::new();
    let mut total = 0;
    for &kind in known_kinds() {
        for site in schema(kind).rule_sites() {
            total += 1;
            if !covered.contains(&(kind, site.clone())) {
                uncovered.push(format!("{kind}: {site}"));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "{} of {total} rules have no rejecting example:\n{}",
        uncovered.len(),
        uncovered.join("\n")
    );
    assert!(total > 400, "only {total} rules");
}

#[test]
fn messages_name_the_problem() {
    let cases = [
        (
            Row::new("project", "", Rule::Required).remove("/metadata/name"),
            "metadata.name: is required",
        ),
        (
            Row::new("project", "", Rule::MaxChars).set("/metadata/description", long(1025)),
            "metadata.description: longer than 1024 characters",
        ),
        (
            Row::new("project", "", Rule::Pattern).set("/metadata/name", json!("a b")),
            "metadata.name: does not match pattern ^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$",
        ),
        (
            Row::new("project", "", Rule::Pattern).set("/metadata/name", json!("")),
            "metadata.name: must not be empty",
        ),
        (
            Row::new("genericAppPlacementIntent", "", Rule::Enum)
                .set("/spec/intent/selector", json!("zone")),
            r#"spec.intent.selector: must be one of "name", "label""#,
        ),
        (
            Row::new("controller", "", Rule::Minimum).set("/spec/port", json!(-1)),
            "spec.port: must be at least 0",
        ),
        (
            Row::new("interfaceIntent", "", Rule::Format).set("/spec/ipAddress", json!("x")),
            "spec.ipAddress: is not a valid IP address",
        ),
        (
            Row::new("project", "", Rule::Type).set("/metadata", json!("p")),
            "metadata: must be an object",
        ),
    ];
    for (row, expected) in cases {
        let err = super::validate(row.kind, &row.body()).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}
