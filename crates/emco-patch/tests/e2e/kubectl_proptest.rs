//! Property test: random Deployment-like objects and strategic merge patches (containers by
//! name, env by name, ports by containerPort, finalizers as a set, labels, `$patch` directives,
//! `$deleteFromPrimitiveList`, `$setElementOrder`), applied by emco-patch and by
//! `kubectl patch --local`; the results must be equal, or both must fail. 64 cases (one kubectl
//! run each) keep it to a few seconds; `EMCO_PATCH_SOAK_CASES=N` runs N instead.
//! A second property computes two-way patches between random Deployments and checks that
//! kubectl, applying them, gets the modified object.

use crate::common;

use common::kubectl_patch;
use emco_patch::{
    BuiltinSchema, GroupVersionKind, create_two_way_merge_patch, strategic_merge_patch,
};
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::{Config, TestCaseError};
use serde_json::{Map, Value, json};

const CONTAINER_NAMES: [&str; 5] = ["app", "web", "log", "side", "proxy"];
const ENV_NAMES: [&str; 4] = ["A", "B", "C", "D"];
const PORTS: [u16; 3] = [80, 443, 8080];
const FINALIZERS: [&str; 5] = ["f/a", "f/b", "f/c", "f/d", "f/e"];
const LABEL_KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// Some of `pool`, each at most once, in random order.
fn shuffled_subset<T: Clone + std::fmt::Debug + 'static>(
    pool: &[T],
    max: usize,
) -> impl Strategy<Value = Vec<T>> {
    subsequence(pool.to_vec(), 0..=max.min(pool.len())).prop_shuffle()
}

fn env_item() -> impl Strategy<Value = Value> {
    prop_oneof![Just("1"), Just("2")].prop_map(|value| json!(value))
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("img:1"), Just("img:2")],
        shuffled_subset(&ENV_NAMES, 3),
        proptest::collection::vec(env_item(), 3),
        shuffled_subset(&PORTS, 2),
    )
        .prop_map(move |(image, env_names, env_values, ports)| {
            let mut container = json!({"name": name, "image": image});
            if !env_names.is_empty() {
                let env: Vec<Value> = env_names
                    .iter()
                    .zip(&env_values)
                    .map(|(env_name, value)| json!({"name": env_name, "value": value}))
                    .collect();
                container["env"] = json!(env);
            }
            if !ports.is_empty() {
                let ports: Vec<Value> = ports
                    .iter()
                    .map(|port| json!({"containerPort": port}))
                    .collect();
                container["ports"] = json!(ports);
            }
            container
        })
}

fn deployment() -> impl Strategy<Value = Value> {
    (
        shuffled_subset(&CONTAINER_NAMES, 4).prop_flat_map(|names| names.into_iter().map(container).collect::<Vec<_>>()),
        shuffled_subset(&FINALIZERS[..4], 3),
        proptest::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("c")], prop_oneof![Just("1"), Just("2")], 0..3),
    )
        .prop_map(|(containers, finalizers, labels)| {
            let mut metadata = json!({"name": "d", "labels": labels});
            if !finalizers.is_empty() {
                metadata["finalizers"] = json!(finalizers);
            }
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": metadata,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}
                }
            })
        })
}

/// A patch item for one env entry: set a value, drop the value (null), or `$patch: delete`.
fn env_patch(name: &'static str) -> impl Strategy<Value = Value> {
    prop_oneof![
        env_item().prop_map(move |value| json!({"name": name, "value": value})),
        Just(json!({"name": name, "value": null})),
        Just(json!({"name": name, "$patch": "delete"})),
    ]
}

/// A patch item for one container: delete it, or change image / env / ports.
fn container_patch(name: &'static str) -> impl Strategy<Value = Value> {
    let change = (
        proptest::option::of(prop_oneof![Just("img:2"), Just("img:3")]),
        shuffled_subset(&ENV_NAMES, 2)
            .prop_flat_map(|names| names.into_iter().map(env_patch).collect::<Vec<_>>()),
        shuffled_subset(&PORTS, 2),
        any::<bool>(),
    )
        .prop_map(move |(image, env, ports, name_ports)| {
            let mut item = json!({"name": name});
            if let Some(image) = image {
                item["image"] = json!(image);
            }
            if !env.is_empty() {
                item["env"] = json!(env);
            }
            if !ports.is_empty() {
                let ports: Vec<Value> = ports
                    .iter()
                    .map(|port| {
                        if name_ports {
                            json!({"containerPort": port, "name": format!("p{port}")})
                        } else {
                            json!({"containerPort": port})
                        }
                    })
                    .collect();
                item["ports"] = json!(ports);
            }
            item
        });
    prop_oneof![1 => Just(json!({"name": name, "$patch": "delete"})), 4 => change]
}

#[derive(Debug, Clone)]
struct PatchPlan {
    labels: Vec<(&'static str, Option<&'static str>)>,
    finalizers: Vec<&'static str>,
    delete_finalizers: Vec<&'static str>,
    containers: Option<Vec<Value>>,
    /// Random order of all container names: used (restricted to the resulting containers) as
    /// `$setElementOrder/containers`, the patch items sorted to agree with it.
    element_order: Option<Vec<&'static str>>,
    replicas: Option<u8>,
}

fn patch_plan() -> impl Strategy<Value = PatchPlan> {
    (
        proptest::collection::vec(
            (
                proptest::sample::select(LABEL_KEYS.to_vec()),
                proptest::option::of(prop_oneof![Just("x"), Just("y")]),
            ),
            0..3,
        ),
        shuffled_subset(&FINALIZERS, 2),
        shuffled_subset(&FINALIZERS, 2),
        proptest::option::of(
            shuffled_subset(&CONTAINER_NAMES, 3)
                .prop_flat_map(|names| names.into_iter().map(container_patch).collect::<Vec<_>>()),
        ),
        proptest::option::of(Just(CONTAINER_NAMES.to_vec()).prop_shuffle()),
        proptest::option::of(0u8..5),
    )
        .prop_map(
            |(labels, finalizers, delete_finalizers, containers, element_order, replicas)| {
                PatchPlan {
                    labels,
                    finalizers,
                    delete_finalizers,
                    containers,
                    element_order,
                    replicas,
                }
            },
        )
}

fn container_name(item: &Value) -> &str {
    item["name"].as_str().unwrap_or_default()
}

/// Builds the patch; the `$setElementOrder` list covers the containers the patched object will
/// have (current and added, minus deleted), as `kubectl apply` computes it.
fn build_patch(object: &Value, plan: &PatchPlan) -> Value {
    let mut patch = json!({});
    if !plan.labels.is_empty() {
        let labels: Map<String, Value> = plan
            .labels
            .iter()
            .map(|(key, value)| {
                (
                    (*key).to_owned(),
                    value.map_or(Value::Null, |value| json!(value)),
                )
            })
            .collect();
        patch["metadata"] = json!({"labels": labels});
    }
    if !plan.finalizers.is_empty() {
        patch["metadata"]["finalizers"] = json!(plan.finalizers);
    }
    // A finalizer both added and deleted gives kubectl a random result (Go map order): skip those.
    let deletions: Vec<&str> = plan
        .delete_finalizers
        .iter()
        .copied()
        .filter(|finalizer| !plan.finalizers.contains(finalizer))
        .collect();
    if !deletions.is_empty() {
        patch["metadata"]["$deleteFromPrimitiveList/finalizers"] = json!(deletions);
    }
    if let Some(replicas) = plan.replicas {
        patch["spec"]["replicas"] = json!(replicas);
    }
    let Some(items) = &plan.containers else {
        return patch;
    };
    let mut items = items.clone();
    let mut pod_spec = json!({});
    if let Some(order) = &plan.element_order {
        let current: Vec<&str> = object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|containers| containers.iter().map(container_name).collect())
            .unwrap_or_default();
        let deleted: Vec<&str> = items
            .iter()
            .filter(|item| item.get("$patch").is_some())
            .map(container_name)
            .collect();
        let kept: Vec<Value> = order
            .iter()
            .filter(|name| !deleted.contains(name))
            .filter(|name| {
                current.contains(name) || items.iter().any(|item| container_name(item) == **name)
            })
            .map(|name| json!({"name": name}))
            .collect();
        items.sort_by_key(|item| order.iter().position(|name| *name == container_name(item)));
        pod_spec["$setElementOrder/containers"] = json!(kept);
    }
    pod_spec["containers"] = json!(items);
    patch["spec"]["template"]["spec"] = pod_spec;
    patch
}

proptest! {
    #![proptest_config(Config {
        // EMCO_PATCH_SOAK_CASES=2000 runs a longer soak against kubectl.
        cases: std::env::var("EMCO_PATCH_SOAK_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(64),
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn strategic_merge_patch_agrees_with_kubectl(object in deployment(), plan in patch_plan()) {
        let patch = build_patch(&object, &plan);
        let gvk = GroupVersionKind::of_object(&object).expect("generated objects have a kind");
        let ours = strategic_merge_patch(&object, &patch, &BuiltinSchema, &gvk).map_err(|error| error.to_string());
        let theirs = kubectl_patch(&object, &patch, "strategic");
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs, "object {}\npatch {}", object, patch),
            (Err(_), Err(_)) => {}
            _ => return Err(TestCaseError::fail(format!("object {object}\npatch {patch}\nours {ours:?}\nkubectl {theirs:?}"))),
        }
    }
}

proptest! {
    #![proptest_config(Config {
        cases: std::env::var("EMCO_PATCH_SOAK_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(32),
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn two_way_patches_turn_original_into_modified_under_kubectl(original in deployment(), modified in deployment()) {
        let gvk = GroupVersionKind::of_object(&original).expect("generated objects have a kind");
        let patch = create_two_way_merge_patch(&original, &modified, &BuiltinSchema, &gvk)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let ours = strategic_merge_patch(&original, &patch, &BuiltinSchema, &gvk)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&ours, &modified, "patch {}", patch);
        let theirs = kubectl_patch(&original, &patch, "strategic").map_err(TestCaseError::fail)?;
        prop_assert_eq!(&theirs, &modified, "patch {}", patch);
    }
}
