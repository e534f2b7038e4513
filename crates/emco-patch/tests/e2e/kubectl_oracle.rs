//! Oracle tests: a fixed table of objects and patches, applied by emco-patch and by the real
//! `kubectl patch --local` (strategic, merge and json types); the results must be equal, or both
//! must fail.

use crate::common;

use common::{kubectl_patch, parallel_map};
use emco_patch::{BuiltinSchema, GroupVersionKind, json_patch, merge_patch, strategic_merge_patch};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    patch_type: &'static str,
    object: Value,
    patch: Value,
    /// kubectl rejects the patch (so must we); guards against both failing for a wrong reason.
    fails: bool,
}

/// A case kubectl applies.
fn case(name: &'static str, patch_type: &'static str, object: Value, patch: Value) -> Case {
    Case {
        name,
        patch_type,
        object,
        patch,
        fails: false,
    }
}

/// A case kubectl rejects.
fn failing(name: &'static str, patch_type: &'static str, object: Value, patch: Value) -> Case {
    Case {
        fails: true,
        ..case(name, patch_type, object, patch)
    }
}

fn ours(case: &Case) -> Result<Value, String> {
    match case.patch_type {
        "strategic" => {
            let gvk = GroupVersionKind::of_object(&case.object)
                .expect("test objects have apiVersion and kind");
            strategic_merge_patch(&case.object, &case.patch, &BuiltinSchema, &gvk)
                .map_err(|error| error.to_string())
        }
        "merge" => Ok(merge_patch(&case.object, &case.patch)),
        "json" => json_patch(&case.object, &case.patch).map_err(|error| error.to_string()),
        other => panic!("unknown patch type {other}"),
    }
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.25",
                            "args": ["--a", "--b"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}],
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]
                        },
                        {"name": "sidecar", "image": "busybox:1", "command": ["sleep", "3600"]},
                        {"name": "log", "image": "fluentd:1"}
                    ],
                    "initContainers": [{"name": "init", "image": "busybox:1"}],
                    "volumes": [
                        {"name": "cfg", "configMap": {"name": "web-cfg"}},
                        {"name": "data", "emptyDir": {}}
                    ],
                    "imagePullSecrets": [{"name": "regcred"}],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                    "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]
                }
            }
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "finalizers": ["example.com/a", "example.com/b", "example.com/c"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1"}]
        },
        "spec": {
            "containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}, {"name": "c3", "image": "i3"}],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
        }
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "selector": {"app": "web", "tier": "front"},
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
            ]
        }
    })
}

fn config_map() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "annotations": {"a": "1"}},
        "data": {"k1": "v1", "k2": "v2"}
    })
}

fn pdb() -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "pdb"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web", "tier": "front"}}}
    })
}

fn containers(patch: Value) -> Value {
    json!({"spec": {"template": {"spec": {"containers": patch}}}})
}

fn pod_spec(patch: Value) -> Value {
    json!({"spec": {"template": {"spec": patch}}})
}

fn strategic_cases() -> Vec<Case> {
    let s = "strategic";
    vec![
        case(
            "labels: add, change, delete",
            s,
            deployment(),
            json!({"metadata": {"labels": {"tier": null, "app": "web2", "new": "x"}}}),
        ),
        case(
            "annotations: new map drops nulls",
            s,
            deployment(),
            json!({"metadata": {"annotations": {"a": "1", "gone": null}}}),
        ),
        case(
            "replicas: scalar replace",
            s,
            deployment(),
            json!({"spec": {"replicas": 5}}),
        ),
        case(
            "replicas: type change",
            s,
            deployment(),
            json!({"spec": {"replicas": "five"}}),
        ),
        case(
            "containers: change image by name",
            s,
            deployment(),
            containers(json!([{"name": "sidecar", "image": "busybox:2"}])),
        ),
        case(
            "containers: new container goes first",
            s,
            deployment(),
            containers(json!([{"name": "extra", "image": "x:1"}])),
        ),
        case(
            "containers: patch existing and add new",
            s,
            deployment(),
            containers(
                json!([{"name": "log", "image": "fluentd:2"}, {"name": "extra", "image": "x:1"}, {"name": "app", "image": "nginx:1.26"}]),
            ),
        ),
        case(
            "containers: $patch delete",
            s,
            deployment(),
            containers(json!([{"name": "app", "$patch": "delete"}])),
        ),
        case(
            "containers: $patch replace",
            s,
            deployment(),
            containers(json!([{"$patch": "replace"}, {"name": "only", "image": "o:1"}])),
        ),
        failing(
            "containers: missing merge key",
            s,
            deployment(),
            containers(json!([{"image": "nameless"}])),
        ),
        failing(
            "containers: $patch merge in list is an error",
            s,
            deployment(),
            containers(json!([{"name": "app", "$patch": "merge"}])),
        ),
        case(
            "env: change, add, delete",
            s,
            deployment(),
            containers(
                json!([{"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "D", "value": "4"}, {"name": "C", "$patch": "delete"}]}]),
            ),
        ),
        case(
            "env: null removes a member of an item",
            s,
            deployment(),
            containers(
                json!([{"name": "app", "env": [{"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]),
            ),
        ),
        case(
            "ports: merge by containerPort",
            s,
            deployment(),
            containers(
                json!([{"name": "app", "ports": [{"containerPort": 443, "name": "tls"}, {"containerPort": 8080, "name": "alt"}]}]),
            ),
        ),
        case(
            "volumeMounts: merge by mountPath",
            s,
            deployment(),
            containers(
                json!([{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"mountPath": "/etc/cfg", "readOnly": true}]}]),
            ),
        ),
        case(
            "resources: nested map merge",
            s,
            deployment(),
            containers(
                json!([{"name": "app", "resources": {"limits": {"cpu": "2", "memory": null}, "requests": {"cpu": "500m"}}}]),
            ),
        ),
        case(
            "args: primitive list replaced",
            s,
            deployment(),
            containers(json!([{"name": "app", "args": ["--c"]}])),
        ),
        case(
            "args: $deleteFromPrimitiveList on a non-merge list",
            s,
            deployment(),
            containers(json!([{"name": "app", "$deleteFromPrimitiveList/args": ["--a"]}])),
        ),
        case(
            "volumes: add and $retainKeys switch source",
            s,
            deployment(),
            pod_spec(
                json!({"volumes": [{"name": "cfg", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}, {"name": "tmp", "emptyDir": {"medium": "Memory"}}]}),
            ),
        ),
        failing(
            "volumes: $retainKeys not listing a patched key",
            s,
            deployment(),
            pod_spec(
                json!({"volumes": [{"name": "cfg", "$retainKeys": ["name"], "secret": {"secretName": "s"}}]}),
            ),
        ),
        case(
            "strategy: $retainKeys drops rollingUpdate",
            s,
            deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        ),
        case(
            "strategy: explicit null",
            s,
            deployment(),
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}),
        ),
        case(
            "initContainers and containers together",
            s,
            deployment(),
            pod_spec(
                json!({"initContainers": [{"name": "init2", "image": "b:2"}], "containers": [{"name": "app", "image": "n:2"}]}),
            ),
        ),
        case(
            "imagePullSecrets merge by name",
            s,
            deployment(),
            pod_spec(json!({"imagePullSecrets": [{"name": "other"}]})),
        ),
        case(
            "tolerations: atomic list replaced",
            s,
            deployment(),
            pod_spec(json!({"tolerations": [{"key": "k2", "operator": "Exists"}]})),
        ),
        case(
            "topologySpreadConstraints merge by topologyKey",
            s,
            deployment(),
            pod_spec(
                json!({"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}, {"topologyKey": "host", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]}),
            ),
        ),
        case(
            "$setElementOrder/containers: reorder only",
            s,
            deployment(),
            pod_spec(
                json!({"$setElementOrder/containers": [{"name": "log"}, {"name": "app"}, {"name": "sidecar"}]}),
            ),
        ),
        case(
            "$setElementOrder/containers: with add and delete",
            s,
            deployment(),
            pod_spec(
                json!({"$setElementOrder/containers": [{"name": "log"}, {"name": "new"}, {"name": "app"}], "containers": [{"name": "new", "image": "n:1"}, {"name": "sidecar", "$patch": "delete"}]}),
            ),
        ),
        failing(
            "$setElementOrder/containers: order mismatch",
            s,
            deployment(),
            pod_spec(
                json!({"$setElementOrder/containers": [{"name": "app"}, {"name": "log"}], "containers": [{"name": "log", "image": "l:2"}, {"name": "app", "image": "a:2"}]}),
            ),
        ),
        case(
            "new container keeps nulls and directives",
            s,
            deployment(),
            containers(
                json!([{"name": "raw", "image": null, "$setElementOrder/env": [{"name": "A"}], "env": [{"name": "A", "value": null}]}]),
            ),
        ),
        case(
            "finalizers: union, new first",
            s,
            pod(),
            json!({"metadata": {"finalizers": ["example.com/z"]}}),
        ),
        case(
            "finalizers: union interleaves",
            s,
            pod(),
            json!({"metadata": {"finalizers": ["example.com/c", "example.com/x", "example.com/a"]}}),
        ),
        case(
            "finalizers: $deleteFromPrimitiveList",
            s,
            pod(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/b"], "finalizers": ["example.com/d"]}}),
        ),
        case(
            "finalizers: $setElementOrder",
            s,
            pod(),
            json!({"metadata": {"$setElementOrder/finalizers": ["example.com/d", "example.com/c", "example.com/a", "example.com/b"], "finalizers": ["example.com/d"]}}),
        ),
        failing(
            "finalizers: mixed types",
            s,
            pod(),
            json!({"metadata": {"finalizers": ["example.com/a", 1]}}),
        ),
        case(
            "ownerReferences merge by uid",
            s,
            pod(),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u2"}, {"uid": "u1", "controller": true}]}}),
        ),
        case(
            "pod tolerations replaced",
            s,
            pod(),
            json!({"spec": {"tolerations": []}}),
        ),
        case(
            "hostAliases merge by ip",
            s,
            pod(),
            json!({"spec": {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}, {"ip": "10.0.0.2", "hostnames": ["c"]}]}}),
        ),
        case(
            "pod containers: $patch delete of absent list",
            s,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}),
            json!({"spec": {"containers": [{"name": "x", "$patch": "delete"}]}}),
        ),
        case(
            "service ports: merge by port",
            s,
            service(),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "metrics", "port": 9100, "protocol": "TCP"}]}}),
        ),
        case(
            "service ports: same port UDP merges into TCP entry",
            s,
            service(),
            json!({"spec": {"ports": [{"name": "dns", "port": 80, "protocol": "UDP"}]}}),
        ),
        case(
            "service selector: null removes",
            s,
            service(),
            json!({"spec": {"selector": {"tier": null}}}),
        ),
        case(
            "configmap data merge and delete",
            s,
            config_map(),
            json!({"data": {"k1": null, "k3": "v3"}}),
        ),
        case(
            "configmap data $patch replace",
            s,
            config_map(),
            json!({"data": {"$patch": "replace", "only": "x"}}),
        ),
        case(
            "annotations $patch delete",
            s,
            config_map(),
            json!({"metadata": {"annotations": {"$patch": "delete"}}}),
        ),
        failing(
            "map $patch merge is an error",
            s,
            config_map(),
            json!({"metadata": {"annotations": {"$patch": "merge", "b": "2"}}}),
        ),
        case(
            "top-level $patch replace",
            s,
            config_map(),
            json!({"$patch": "replace", "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"z": "z"}}),
        ),
        case(
            "pdb selector: replace strategy",
            s,
            pdb(),
            json!({"spec": {"selector": {"matchLabels": {"app": "api"}}}}),
        ),
        case(
            "unknown map field on known kind, absent in doc",
            s,
            deployment(),
            json!({"spec": {"extra": {"a": 1, "b": null}}}),
        ),
    ]
}

fn merge_cases() -> Vec<Case> {
    let m = "merge";
    vec![
        case(
            "merge: labels and null",
            m,
            deployment(),
            json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
        ),
        case(
            "merge: lists replace",
            m,
            deployment(),
            containers(json!([{"name": "only", "image": "o:1"}])),
        ),
        case(
            "merge: nulls pruned in new values",
            m,
            config_map(),
            json!({"x": {"a": null, "b": [{"c": null, "d": 1}, null]}, "data": {"k1": null}}),
        ),
        case(
            "merge: object replaced by list keeps nulls",
            m,
            config_map(),
            json!({"data": [{"a": null}]}),
        ),
        case(
            "merge: scalar replaced by object prunes",
            m,
            service(),
            json!({"spec": {"selector": {"app": {"deep": null, "x": 1}}}}),
        ),
    ]
}

fn json_cases() -> Vec<Case> {
    let j = "json";
    vec![
        case(
            "json: add, replace, remove",
            j,
            deployment(),
            json!([
                {"op": "add", "path": "/metadata/labels/new", "value": "x"},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "remove", "path": "/spec/template/spec/containers/1"}
            ]),
        ),
        case(
            "json: append with -",
            j,
            deployment(),
            json!([{"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "z", "image": "z"}}]),
        ),
        case(
            "json: move, copy, test",
            j,
            config_map(),
            json!([
                {"op": "test", "path": "/data/k1", "value": "v1"},
                {"op": "copy", "from": "/data/k1", "path": "/data/k3"},
                {"op": "move", "from": "/data/k2", "path": "/data/k4"}
            ]),
        ),
        failing(
            "json: failing test",
            j,
            config_map(),
            json!([{"op": "test", "path": "/data/k1", "value": "nope"}]),
        ),
        failing(
            "json: missing parent",
            j,
            config_map(),
            json!([{"op": "add", "path": "/metadata/x/y", "value": 1}]),
        ),
        case(
            "json: escaped pointer",
            j,
            config_map(),
            json!([{"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "y"}]),
        ),
    ]
}

fn run_table(cases: Vec<Case>) {
    let results = parallel_map(&cases, |case| {
        (
            ours(case),
            kubectl_patch(&case.object, &case.patch, case.patch_type),
        )
    });
    let mut failures = Vec::new();
    for (case, (ours, theirs)) in cases.iter().zip(results) {
        if case.fails != theirs.is_err() {
            failures.push(format!(
                "{}: the table expects kubectl to {}, it gave {theirs:?}",
                case.name,
                if case.fails { "fail" } else { "succeed" }
            ));
            continue;
        }
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) if ours == theirs => {}
            (Err(_), Err(_)) => {}
            _ => failures.push(format!(
                "{} ({}):\n  patch:   {}\n  ours:    {:?}\n  kubectl: {:?}",
                case.name, case.patch_type, case.patch, ours, theirs
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from kubectl:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn strategic_merge_patch_matches_kubectl() {
    let cases = strategic_cases();
    assert!(cases.len() >= 40);
    run_table(cases);
}

#[test]
fn merge_patch_matches_kubectl() {
    run_table(merge_cases());
}

#[test]
fn json_patch_matches_kubectl() {
    run_table(json_cases());
}

/// Documented differences: kubectl rejects these, emco-patch does not. The test pins both
/// behaviours so a change on either side is noticed.
#[test]
fn known_differences_from_kubectl() {
    // A field the Go type lacks, holding a map on both sides: kubectl fails, we merge untyped.
    let mut object = config_map();
    object["metadata"]["extra"] = json!({"a": 1});
    let patch = json!({"metadata": {"extra": {"b": 2}}});
    let theirs = kubectl_patch(&object, &patch, "strategic");
    assert!(
        theirs
            .as_ref()
            .is_err_and(|error| error.contains("unable to find api field")),
        "{theirs:?}"
    );
    let gvk = GroupVersionKind::of_object(&object).unwrap();
    let patched = strategic_merge_patch(&object, &patch, &BuiltinSchema, &gvk).unwrap();
    assert_eq!(patched["metadata"]["extra"], json!({"a": 1, "b": 2}));

    // Kinds kubectl does not know locally (custom resources): kubectl refuses strategic patches,
    // we patch them untyped (maps merge, lists replace).
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"l": [1, 2], "m": {"a": 1}}});
    let patch = json!({"spec": {"l": [3], "m": {"b": 2}}});
    assert!(kubectl_patch(&widget, &patch, "strategic").is_err());
    let gvk = GroupVersionKind::of_object(&widget).unwrap();
    let patched = strategic_merge_patch(&widget, &patch, &BuiltinSchema, &gvk).unwrap();
    assert_eq!(patched["spec"], json!({"l": [3], "m": {"a": 1, "b": 2}}));

    // JSON patch negative indices: kubectl's library accepts them, RFC 6902 (and we) do not.
    let patch = json!([{"op": "remove", "path": "/spec/template/spec/containers/-1"}]);
    assert!(kubectl_patch(&deployment(), &patch, "json").is_ok());
    assert!(json_patch(&deployment(), &patch).is_err());
}
