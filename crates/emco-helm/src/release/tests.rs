use serde_json::json;

use super::*;
use crate::hooks::HookDeletePolicy;

/// Shaped like `helm template --include-crds` output: a two-document file from `crds/`, templates
/// sorted by kind, then hooks.
const STREAM: &str = r#"---
# Source: demo/crds/widgets.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgets}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Gadget, plural: gadgets}

---
# Source: demo/templates/main.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: rel-cm
data:
  text: |
    before
    ---
    after
---
# Source: demo/templates/main.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: d1, namespace: elsewhere}
spec: {}
---
# Source: demo/templates/main.yaml
# only a comment
---
# Source: demo/templates/rbac.yaml
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
---
# Source: demo/templates/main.yaml
apiVersion: example.com/v1
kind: Gadget
metadata:
  name: g1
---
# Source: demo/templates/main.yaml
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
---
# Source: demo/templates/jobs.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: rel-setup
  annotations:
    "helm.sh/hook": pre-install
    "helm.sh/hook-weight": "-1"
data: {a: b}
---
# Source: demo/templates/jobs.yaml
apiVersion: v1
kind: Pod
metadata:
  name: rel-test
  annotations:
    "helm.sh/hook": test
spec: {}
---
# Source: demo/templates/jobs.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: rel-migrate
  annotations:
    "helm.sh/hook": pre-install,pre-upgrade
    "helm.sh/hook-weight": "5"
    "helm.sh/hook-delete-policy": before-hook-creation,hook-succeeded
spec: {}
"#;

fn release() -> Release {
    Release::from_rendered(STREAM, "rel", "team").unwrap()
}

fn names(objects: &[RenderedObject]) -> Vec<&str> {
    objects.iter().map(|object| object.name.as_str()).collect()
}

#[test]
fn classifies_crds_resources_and_hooks() {
    let release = release();
    assert_eq!(release.name, "rel");
    assert_eq!(release.namespace, "team");
    assert_eq!(
        names(&release.crds),
        ["widgets.example.com", "gadgets.example.com"]
    );
    assert!(release.crds.iter().all(RenderedObject::from_crds_dir));
    assert_eq!(
        names(&release.resources),
        ["rel-cm", "reader", "d1", "g1", "w1"]
    );
    let hook_names: Vec<_> = release
        .hooks
        .iter()
        .map(|hook| hook.object.name.as_str())
        .collect();
    // The test-only hook is left out, as upstream leaves it out.
    assert_eq!(hook_names, ["rel-setup", "rel-migrate"]);
    assert_eq!(release.object_count(), 9);
    assert_eq!(release.objects().count(), 9);
}

#[test]
fn sources_and_upstream_keys_are_kept() {
    let release = release();
    assert_eq!(
        release.crds[1].source.as_deref(),
        Some("demo/crds/widgets.yaml")
    );
    assert_eq!(
        release.resources[0].source.as_deref(),
        Some("demo/templates/main.yaml")
    );
    assert_eq!(release.resources[0].upstream_key(), "rel-cm+ConfigMap");
    assert_eq!(
        release.resources[0].object["data"]["text"],
        "before\n---\nafter\n"
    );
}

#[test]
fn namespaces_are_defaulted_only_for_namespaced_kinds() {
    let release = release();
    let by_name = |name: &str| {
        release
            .objects()
            .find(|object| object.name == name)
            .unwrap()
            .clone()
    };
    let config_map = by_name("rel-cm");
    assert_eq!(config_map.namespace.as_deref(), Some("team"));
    assert_eq!(config_map.object["metadata"]["namespace"], "team");
    // An explicit namespace is kept.
    let deployment = by_name("d1");
    assert_eq!(deployment.namespace.as_deref(), Some("elsewhere"));
    assert_eq!(deployment.object["metadata"]["namespace"], "elsewhere");
    // Built-in cluster-scoped kinds get none.
    let role = by_name("reader");
    assert_eq!(role.namespace, None);
    assert!(role.object["metadata"].get("namespace").is_none());
    assert_eq!(by_name("widgets.example.com").namespace, None);
    // Kinds defined by CRDs in the same render follow the CRD's scope.
    assert_eq!(by_name("w1").namespace, None);
    assert_eq!(by_name("g1").namespace.as_deref(), Some("team"));
    // Hooks are objects too.
    assert_eq!(by_name("rel-migrate").namespace.as_deref(), Some("team"));
}

#[test]
fn empty_namespace_means_default() {
    let release = Release::from_rendered(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}",
        "r",
        "",
    )
    .unwrap();
    assert_eq!(release.namespace, "default");
    assert_eq!(release.resources[0].namespace.as_deref(), Some("default"));
}

#[test]
fn hooks_are_typed_and_ordered_for_execution() {
    let release = release();
    let pre_install: Vec<_> = release
        .hooks_for(HookEvent::PreInstall)
        .into_iter()
        .map(|hook| (hook.object.name.as_str(), hook.spec.weight))
        .collect();
    assert_eq!(pre_install, [("rel-setup", -1), ("rel-migrate", 5)]);
    let migrate = release.hooks_for(HookEvent::PreUpgrade)[0];
    assert_eq!(migrate.object.kind, "Job");
    assert_eq!(
        migrate.spec.delete_policies,
        [
            HookDeletePolicy::BeforeHookCreation,
            HookDeletePolicy::HookSucceeded
        ]
    );
    assert!(release.hooks_for(HookEvent::PostDelete).is_empty());
    assert!(release.hooks_for(HookEvent::Test).is_empty());
}

#[test]
fn resources_are_put_in_install_order_whatever_the_input_order() {
    let stream = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
                  apiVersion: x.io/v1\nkind: Zeta\nmetadata: {name: z}\n---\n\
                  apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n\
                  apiVersion: x.io/v1\nkind: Alpha\nmetadata: {name: a}\n---\n\
                  apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c2}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}";
    let release = Release::from_rendered(stream, "r", "ns").unwrap();
    assert_eq!(
        names(&release.resources),
        ["ns1", "c2", "c1", "s", "d", "a", "z"]
    );
}

#[test]
fn uninstall_order_follows_helm() {
    let stream = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c2}\n---\n\
                  apiVersion: v1\nkind: Secret\nmetadata:\n  name: kept\n  annotations: {helm.sh/resource-policy: keep}\n---\n\
                  apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n\
                  apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
                  apiVersion: x.io/v1\nkind: Custom\nmetadata: {name: x}\n---\n\
                  # Source: demo/templates/crd.yaml\n\
                  apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: t.x.io}\n---\n\
                  # Source: demo/charts/sub/crds/crd.yaml\n\
                  apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: c.x.io}";
    let release = Release::from_rendered(stream, "r", "ns").unwrap();
    let order: Vec<_> = release
        .uninstall_order()
        .into_iter()
        .map(|object| object.name.as_str())
        .collect();
    // Service before Deployment, CRDs from templates after workloads, crds/ CRDs and kept
    // objects never, unknown kinds last; same kind in reverse install order.
    assert_eq!(order, ["s", "d", "t.x.io", "c2", "c1", "ns1", "x"]);
}

#[test]
fn crds_dir_detection_covers_subcharts_only_at_chart_level() {
    assert!(source_is_crds_dir("app/crds/a.yaml"));
    assert!(source_is_crds_dir("app/crds/nested/a.yaml"));
    assert!(source_is_crds_dir("app/charts/sub/crds/a.yaml"));
    assert!(source_is_crds_dir(
        "app/charts/sub/charts/deeper/crds/a.yaml"
    ));
    assert!(!source_is_crds_dir("app/templates/crds/a.yaml"));
    assert!(!source_is_crds_dir("app/templates/crd.yaml"));
    assert!(!source_is_crds_dir("crds/a.yaml"));
    assert!(!source_is_crds_dir("app/charts"));
}

#[test]
fn yaml_1_1_booleans_are_booleans_as_in_kubernetes() {
    // go-yaml v2 (Kubernetes, and Helm's own manifest reader) reads `n` as false, so this object
    // has no string name; it is reported rather than silently renamed.
    let error = Release::from_rendered(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}",
        "r",
        "x",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("metadata.name is a boolean"),
        "{error}"
    );
}

#[test]
fn documents_without_kind_and_name_are_skipped() {
    let stream = "---\n# Source: a/templates/empty.yaml\n---\n# Source: a/templates/x.yaml\n# nothing\n\
                  ---\n{}\n---\nfoo: bar\n---\nmetadata: {labels: {a: b}}\n---\n\
                  apiVersion: v1\nkind: ConfigMap\nmetadata: {name: real}";
    let release = Release::from_rendered(stream, "r", "ns").unwrap();
    assert_eq!(names(&release.resources), ["real"]);
}

#[test]
fn unknown_hook_events_are_dropped_like_helm() {
    let stream = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: odd\n  annotations:\n    helm.sh/hook: pre-install,bogus\n\
                  ---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: both\n  annotations:\n    helm.sh/hook: test,post-install";
    let release = Release::from_rendered(stream, "r", "ns").unwrap();
    assert!(release.resources.is_empty());
    assert_eq!(release.hooks.len(), 1);
    assert_eq!(release.hooks[0].object.name, "both");
    assert_eq!(release.hooks_for(HookEvent::PostInstall).len(), 1);
}

#[test]
fn malformed_objects_are_reported_with_their_source() {
    let error = |stream: &str| Release::from_rendered(stream, "r", "ns").unwrap_err();
    let cases = [
        (
            "# Source: a/templates/x.yaml\nkind: ConfigMap\napiVersion: v1",
            "metadata.name is missing",
        ),
        (
            "# Source: a/templates/x.yaml\nmetadata: {name: x}\napiVersion: v1",
            "kind is missing",
        ),
        (
            "# Source: a/templates/x.yaml\nkind: ConfigMap\nmetadata: {name: x}",
            "apiVersion is missing",
        ),
        (
            "# Source: a/templates/x.yaml\n- a\n- b",
            "is a sequence, not a mapping",
        ),
        (
            "# Source: a/templates/x.yaml\njust text",
            "is a string, not a mapping",
        ),
        (
            "# Source: a/templates/x.yaml\nkind: 5\nmetadata: {name: x}",
            "kind is a number",
        ),
        (
            "# Source: a/templates/x.yaml\nkind: A\napiVersion: v1\nmetadata: [1]",
            "metadata is a sequence",
        ),
        (
            "# Source: a/templates/x.yaml\nkind: A\napiVersion: v1\nmetadata: {name: x, annotations: {w: 5}}",
            "annotation \"w\" is a number",
        ),
    ];
    for (stream, expected) in cases {
        let message = error(stream).to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(message.contains("a/templates/x.yaml"), "{message:?}");
    }
    let yaml = error("---\n# Source: a/templates/bad.yaml\nkind: [unclosed");
    assert!(
        matches!(yaml, ManifestError::Yaml { index: 0, .. }),
        "{yaml:?}"
    );
    assert!(yaml.to_string().contains("a/templates/bad.yaml"));
}

#[test]
fn the_same_object_twice_is_an_error_but_same_name_elsewhere_is_not() {
    let twice = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
                 # Source: x/templates/b.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}";
    match Release::from_rendered(twice, "r", "ns").unwrap_err() {
        ManifestError::DuplicateObject {
            kind,
            name,
            first,
            second,
            ..
        } => {
            assert_eq!(
                (kind.as_str(), name.as_str(), first, second),
                ("ConfigMap", "a", 0, 1)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let distinct = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: other}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {helm.sh/hook: post-install}";
    let release = Release::from_rendered(distinct, "r", "ns").unwrap();
    assert_eq!(release.resources.len(), 3);
    assert_eq!(release.hooks.len(), 1);
}

#[test]
fn release_round_trips_through_json() {
    let release = release();
    let text = serde_json::to_string(&release).unwrap();
    let back: Release = serde_json::from_str(&text).unwrap();
    assert_eq!(back, release);
    let value = serde_json::to_value(&release.hooks[1].spec).unwrap();
    assert_eq!(
        value,
        json!({"events": ["pre-install", "pre-upgrade"], "weight": 5,
               "delete_policies": ["before-hook-creation", "hook-succeeded"],
               "unknown_delete_policies": []})
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_streams_never_panic(stream in "\\PC{0,400}") {
        let _ = Release::from_rendered(&stream, "r", "ns");
    }

    #[test]
    fn yaml_shaped_streams_never_panic(
        pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("---\n".to_owned()),
                proptest::strategy::Just("# Source: a/templates/x.yaml\n".to_owned()),
                proptest::strategy::Just("apiVersion: v1\nkind: ConfigMap\n".to_owned()),
                proptest::strategy::Just("metadata:\n  name: x\n".to_owned()),
                proptest::strategy::Just("  annotations: {helm.sh/hook: pre-install}\n".to_owned()),
                proptest::strategy::Just("kind: CustomResourceDefinition\n".to_owned()),
                "[ -~\n]{0,30}",
            ],
            0..20,
        )
    ) {
        let stream = pieces.concat();
        if let Ok(release) = Release::from_rendered(&stream, "r", "ns") {
            // Whatever was accepted is a complete object.
            for object in release.objects() {
                proptest::prop_assert!(!object.kind.is_empty() && !object.name.is_empty());
                proptest::prop_assert!(!object.api_version.is_empty());
            }
        }
    }
}
