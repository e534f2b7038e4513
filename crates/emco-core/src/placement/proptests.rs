//! Property tests: on random inventories, logical clouds and intents (including unknown names),
//! resolution never panics, and every chosen cluster is eligible and the choice satisfies every
//! intent, checked against an independent reading of the intents.

#![allow(clippy::unwrap_used)] // Tests may unwrap (house rule).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const PROVIDERS: [&str; 2] = ["p0", "p1"];
const CLUSTERS_PER_PROVIDER: usize = 6;
const LABELS: [&str; 3] = ["l0", "l1", "l2"];
const APPS: [&str; 3] = ["a0", "a1", "a2"];

#[derive(Debug, Clone)]
struct World {
    /// labels[provider][cluster] = which of LABELS the cluster carries.
    labels: Vec<Vec<Vec<bool>>>,
    /// `None`: no logical cloud; `Some(mask)`: eligible[provider][cluster].
    cloud: Option<Vec<Vec<bool>>>,
    intents: Vec<Value>,
    /// Random per-cluster verdicts of a pretend placement controller.
    controller_keeps: Vec<Vec<bool>>,
    /// Clusters of a pretend previous revision.
    previous: Vec<Vec<bool>>,
}

fn grid<T: std::fmt::Debug>(
    cell: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = Vec<Vec<T>>> {
    prop::collection::vec(
        prop::collection::vec(cell, CLUSTERS_PER_PROVIDER),
        PROVIDERS.len(),
    )
}

/// A target that is once in a while unknown: provider p2, clusters c6/c7 and label l3 do not exist.
fn target() -> impl Strategy<Value = Value> {
    let provider = prop_oneof![150 => 0..2usize, 1 => Just(2usize)].prop_map(|p| format!("p{p}"));
    let by_name = (
        provider.clone(),
        prop_oneof![150 => 0..6usize, 1 => 6..8usize],
    )
        .prop_map(|(p, c)| json!({"clusterProvider": p, "cluster": format!("c{c}")}));
    let by_label = (provider, prop_oneof![150 => 0..3usize, 1 => Just(3usize)])
        .prop_map(|(p, l)| json!({"clusterProvider": p, "clusterLabel": format!("l{l}")}));
    prop_oneof![by_name, by_label]
}

fn intent_body() -> impl Strategy<Value = Value> {
    let all_of_item = prop_oneof![
        3 => target(),
        1 => prop::collection::vec(target(), 1..4).prop_map(|alts| json!({"anyOf": alts})),
    ];
    (
        0..APPS.len(),
        prop::collection::vec(all_of_item, 0..3),
        prop::collection::vec(target(), 0..3),
        any::<u16>(),
    )
        .prop_map(|(app, all_of, any_of, id)| {
            json!({
                "metadata": {"name": format!("intent-{id}")},
                "spec": {"app": APPS[app], "intent": {"allOf": all_of, "anyOf": any_of}}
            })
        })
}

fn world() -> impl Strategy<Value = World> {
    (
        grid(prop::collection::vec(any::<bool>(), LABELS.len())),
        prop::option::weighted(0.5, grid(prop::bool::weighted(0.9))),
        prop::collection::vec(intent_body(), 1..6),
        grid(prop::bool::weighted(0.7)),
        grid(prop::bool::weighted(0.2)),
    )
        .prop_map(
            |(labels, cloud, intents, controller_keeps, previous)| World {
                labels,
                cloud,
                intents,
                controller_keeps,
                previous,
            },
        )
}

fn cluster_name(index: usize) -> String {
    format!("c{index}")
}

fn mask_to_set(mask: &[Vec<bool>]) -> BTreeSet<ClusterRef> {
    let mut set = BTreeSet::new();
    for (p, row) in mask.iter().enumerate() {
        for (c, on) in row.iter().enumerate() {
            if *on {
                set.insert(ClusterRef::new(PROVIDERS[p], &cluster_name(c)));
            }
        }
    }
    set
}

fn build_inventory(world: &World) -> ClusterInventory {
    let mut inv = ClusterInventory::new();
    for (p, clusters) in world.labels.iter().enumerate() {
        for (c, labels) in clusters.iter().enumerate() {
            inv.add_cluster(PROVIDERS[p], &cluster_name(c));
            for (l, on) in labels.iter().enumerate() {
                if *on {
                    inv.add_label(PROVIDERS[p], &cluster_name(c), LABELS[l]);
                }
            }
        }
    }
    inv
}

/// The independent reading: the eligible clusters one target stands for, straight from the world.
fn oracle_matches(world: &World, target: &Target) -> BTreeSet<ClusterRef> {
    let eligible = |p: usize, c: usize| world.cloud.as_ref().is_none_or(|mask| mask[p][c]);
    let mut out = BTreeSet::new();
    for (p, clusters) in world.labels.iter().enumerate() {
        for (c, labels) in clusters.iter().enumerate() {
            let hit = match target {
                Target::Cluster { provider, cluster } => {
                    provider == PROVIDERS[p] && *cluster == cluster_name(c)
                }
                Target::Label { provider, label } => {
                    provider == PROVIDERS[p]
                        && LABELS
                            .iter()
                            .position(|l| l == label)
                            .is_some_and(|l| labels[l])
                }
            };
            if hit && eligible(p, c) {
                out.insert(ClusterRef::new(PROVIDERS[p], &cluster_name(c)));
            }
        }
    }
    out
}

fn union_of(world: &World, targets: &[Target]) -> BTreeSet<ClusterRef> {
    targets
        .iter()
        .flat_map(|t| oracle_matches(world, t))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resolution_never_panics_and_choices_satisfy_every_intent(world in world()) {
        let inventory = build_inventory(&world);
        let cloud = world.cloud.as_ref().map(|mask| mask_to_set(mask));
        let intents: Vec<AppIntent> = world
            .intents
            .iter()
            .map(|body| parse_app_intent(body).unwrap())
            .collect();

        // Apps without any intent are an error covered by the unit tests; leave them out here so
        // most random worlds resolve.
        let apps: Vec<&str> = APPS
            .iter()
            .copied()
            .filter(|app| intents.iter().any(|i| i.app == *app))
            .collect();
        let Ok(placement) = resolve(&apps, &intents, &inventory, cloud.as_ref()) else {
            // An error is a fine outcome for random input; not panicking is the property.
            return Ok(());
        };

        // Success means every target stood for at least one eligible cluster.
        for intent in &intents {
            prop_assert_eq!(check_intent(intent, &inventory, cloud.as_ref()), Ok(()));
            for entry in &intent.all_of {
                let targets = match entry {
                    AllOfEntry::Target(t) => std::slice::from_ref(t),
                    AllOfEntry::AnyOf(ts) => ts.as_slice(),
                };
                for t in targets {
                    prop_assert!(!oracle_matches(&world, t).is_empty(), "{t:?}");
                }
            }
            for t in &intent.any_of {
                prop_assert!(!oracle_matches(&world, t).is_empty(), "{t:?}");
            }
        }

        let previous = BTreeMap::from_iter(
            APPS.iter().map(|app| (app.to_string(), mask_to_set(&world.previous))),
        );
        let picks = choose_all(&placement, &previous).unwrap();
        // The same inputs in reverse intent order give the same choice.
        let mut reversed = intents.clone();
        reversed.reverse();
        let again = choose_all(
            &resolve(&apps, &reversed, &inventory, cloud.as_ref()).unwrap(),
            &previous,
        )
        .unwrap();
        prop_assert_eq!(&picks, &again);

        for (app, chosen) in &picks {
            let mut reachable = BTreeSet::new();
            for cluster in chosen {
                if let Some(cloud) = &cloud {
                    prop_assert!(cloud.contains(cluster), "{cluster} not eligible");
                }
                prop_assert!(inventory.cluster(cluster.provider(), cluster.cluster()).is_some());
            }
            for intent in intents.iter().filter(|i| &i.app == app) {
                for entry in &intent.all_of {
                    match entry {
                        AllOfEntry::Target(t) => {
                            let needed = oracle_matches(&world, t);
                            prop_assert!(chosen.is_superset(&needed), "{app}: {t:?}");
                            reachable.extend(needed);
                        }
                        AllOfEntry::AnyOf(ts) => {
                            let alternatives = union_of(&world, ts);
                            prop_assert!(!chosen.is_disjoint(&alternatives), "{app}: {ts:?}");
                            reachable.extend(alternatives);
                        }
                    }
                }
                if !intent.any_of.is_empty() {
                    let alternatives = union_of(&world, &intent.any_of);
                    prop_assert!(!chosen.is_disjoint(&alternatives), "{app}: {:?}", intent.any_of);
                    reachable.extend(alternatives);
                }
            }
            // Nothing the intents did not ask for.
            prop_assert!(reachable.is_superset(chosen), "{app}: extra clusters");
        }

        // After a pretend placement controller prunes alternatives, a successful choice uses only
        // mandatory clusters and kept alternatives; a failure names a group it emptied.
        let kept = mask_to_set(&world.controller_keeps);
        let mut pruned = placement.clone();
        for app_placement in pruned.values_mut() {
            app_placement.retain_candidates(|c| kept.contains(c));
        }
        for (app, app_placement) in &pruned {
            match choose(app_placement, &BTreeSet::new()) {
                Ok(chosen) => {
                    for cluster in &chosen {
                        prop_assert!(app_placement.mandatory.contains(cluster) || kept.contains(cluster));
                    }
                    for group in &app_placement.groups {
                        prop_assert!(!chosen.is_disjoint(&group.candidates), "{app}");
                    }
                }
                Err(PlacementError::GroupWithoutCandidates { app: failed, origin }) => {
                    prop_assert_eq!(&failed, app);
                    prop_assert!(app_placement
                        .groups
                        .iter()
                        .any(|g| g.origin == origin && g.candidates.is_empty()));
                }
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
    }

    #[test]
    fn parsing_arbitrary_json_never_panics(body in arbitrary_json()) {
        let _ = parse_app_intent(&body);
        let wrapped = json!({"metadata": {"name": "x"}, "spec": {"app": "a", "intent": body}});
        let _ = parse_app_intent(&wrapped);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("".to_string()),
            Just("p0".to_string()),
            "[a-z]{0,4}".prop_map(|s| s)
        ]
        .prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("allOf".to_string()),
        Just("anyOf".to_string()),
        Just("clusterProvider".to_string()),
        Just("cluster".to_string()),
        Just("clusterLabel".to_string()),
        Just("spec".to_string()),
        Just("app".to_string()),
        Just("intent".to_string()),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
