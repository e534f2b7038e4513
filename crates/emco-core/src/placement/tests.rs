//! Unit tests of placement resolution: each intent form, nesting, overlaps, the logical cloud,
//! errors, the choice rule and a scale measurement.

#![allow(clippy::unwrap_used)] // Tests may unwrap (house rule).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::{Value, json};

use super::*;

/// p1: c1 c2 (east), c3 c4 (west), c5 c6 (edge, and c6 also east); p2: d1 (east); p3: no clusters.
fn inventory() -> ClusterInventory {
    let mut inv = ClusterInventory::new();
    for (cluster, labels) in [
        ("c1", &["east"][..]),
        ("c2", &["east"]),
        ("c3", &["west"]),
        ("c4", &["west"]),
        ("c5", &["edge"]),
        ("c6", &["edge", "east"]),
    ] {
        inv.add_cluster("p1", cluster);
        for label in labels {
            inv.add_label("p1", cluster, label);
        }
    }
    inv.add_label("p2", "d1", "east");
    inv.add_provider("p3");
    inv
}

fn refs(items: &[(&str, &str)]) -> BTreeSet<ClusterRef> {
    items.iter().map(|(p, c)| ClusterRef::new(p, c)).collect()
}

fn p1(clusters: &[&str]) -> BTreeSet<ClusterRef> {
    clusters.iter().map(|c| ClusterRef::new("p1", c)).collect()
}

fn body(name: &str, app: &str, intent: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"app": app, "intent": intent}})
}

fn intent(name: &str, app: &str, intent: Value) -> AppIntent {
    parse_app_intent(&body(name, app, intent)).unwrap()
}

fn by_name(cluster: &str) -> Value {
    json!({"clusterProvider": "p1", "cluster": cluster})
}

fn by_label(label: &str) -> Value {
    json!({"clusterProvider": "p1", "clusterLabel": label})
}

fn resolve_one(intents: &[AppIntent]) -> Result<AppPlacement, PlacementError> {
    let mut placement = resolve(&["a"], intents, &inventory(), None)?;
    Ok(placement.remove("a").unwrap())
}

fn chosen(placement: &AppPlacement) -> BTreeSet<ClusterRef> {
    choose(placement, &BTreeSet::new()).unwrap()
}

// ---------- parsing ----------

#[test]
fn parse_reads_every_form() {
    let parsed = intent(
        "i1",
        "a",
        json!({
            "selector": "label",
            "allOf": [by_name("c1"), by_label("east"), {"anyOf": [by_name("c3"), by_label("edge")]}],
            "anyOf": [by_name("c4")]
        }),
    );
    let cluster = |c: &str| Target::Cluster {
        provider: "p1".into(),
        cluster: c.into(),
    };
    let label = |l: &str| Target::Label {
        provider: "p1".into(),
        label: l.into(),
    };
    assert_eq!(
        parsed,
        AppIntent {
            name: "i1".into(),
            app: "a".into(),
            all_of: vec![
                AllOfEntry::Target(cluster("c1")),
                AllOfEntry::Target(label("east")),
                AllOfEntry::AnyOf(vec![cluster("c3"), label("edge")]),
            ],
            any_of: vec![cluster("c4")],
        }
    );
}

#[test]
fn parse_treats_empty_strings_nulls_and_empty_lists_as_absent() {
    let parsed = intent(
        "i",
        "a",
        json!({
            "allOf": [
                {"clusterProvider": "p1", "cluster": "c1", "clusterLabel": ""},
                {"clusterProvider": "p1", "clusterLabel": "east", "cluster": null, "anyOf": []}
            ],
            "anyOf": null
        }),
    );
    assert_eq!(parsed.all_of.len(), 2);
    assert!(parsed.any_of.is_empty());
    assert!(intent("i", "a", json!({})).is_empty());
}

#[test]
fn parse_rejects_malformed_entries_with_their_path() {
    let cases = [
        (
            json!({"allOf": [{"clusterProvider": "p1", "cluster": "c", "clusterLabel": "l"}]}),
            "spec.intent.allOf[0]",
            "both",
        ),
        (
            json!({"anyOf": [by_name("c1"), {"cluster": "c"}]}),
            "spec.intent.anyOf[1]",
            "clusterProvider is required",
        ),
        (
            json!({"anyOf": [{"clusterProvider": "p1"}]}),
            "spec.intent.anyOf[0]",
            "needs cluster or clusterLabel",
        ),
        (
            json!({"allOf": [{"anyOf": [by_name("c1")], "cluster": "c2", "clusterProvider": "p1"}]}),
            "spec.intent.allOf[0]",
            "nested anyOf",
        ),
        (
            json!({"allOf": [{"anyOf": [by_name("c1"), {"clusterProvider": "p1"}]}]}),
            "spec.intent.allOf[0].anyOf[1]",
            "needs cluster",
        ),
        (
            json!({"allOf": [{"anyOf": "c1"}]}),
            "spec.intent.allOf[0].anyOf",
            "must be a list",
        ),
        (
            json!({"allOf": [{"clusterProvider": 7, "cluster": "c1"}]}),
            "spec.intent.allOf[0]",
            "must be a string",
        ),
        (json!({"allOf": {}}), "spec.intent.allOf", "must be a list"),
        (json!({"anyOf": ["c1"]}), "spec.intent.anyOf[0]", "object"),
    ];
    for (bad, want_path, want_reason) in cases {
        let err = parse_app_intent(&body("bad", "a", bad.clone())).unwrap_err();
        match err {
            PlacementError::InvalidIntent {
                intent,
                path,
                reason,
            } => {
                assert_eq!(intent, "bad");
                assert_eq!(path, want_path, "{bad}");
                assert!(reason.contains(want_reason), "{bad}: {reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn parse_needs_app_and_intent() {
    let no_app = json!({"metadata": {"name": "i"}, "spec": {"intent": {}}});
    let no_intent = json!({"metadata": {"name": "i"}, "spec": {"app": "a"}});
    let no_spec = json!({"metadata": {"name": "i"}});
    for (input, want) in [
        (no_app, "spec.app"),
        (no_intent, "spec.intent"),
        (no_spec, "spec"),
    ] {
        assert!(
            matches!(parse_app_intent(&input), Err(PlacementError::InvalidIntent { path, .. }) if path == want),
            "{input}"
        );
    }
}

// ---------- each form ----------

#[test]
fn all_of_by_name_is_mandatory() {
    let placement = resolve_one(&[intent("i", "a", json!({"allOf": [by_name("c1")]}))]).unwrap();
    assert_eq!(placement.mandatory, p1(&["c1"]));
    assert!(placement.groups.is_empty());
    assert_eq!(chosen(&placement), p1(&["c1"]));
}

#[test]
fn all_of_by_label_takes_every_labelled_cluster_of_that_provider_only() {
    let placement = resolve_one(&[intent("i", "a", json!({"allOf": [by_label("east")]}))]).unwrap();
    // d1 of p2 is also "east" but belongs to another provider.
    assert_eq!(placement.mandatory, p1(&["c1", "c2", "c6"]));
    assert_eq!(chosen(&placement), p1(&["c1", "c2", "c6"]));
}

#[test]
fn top_level_any_of_is_one_group_across_all_its_entries() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"anyOf": [by_name("c1"), by_label("west")]}),
    )])
    .unwrap();
    assert!(placement.mandatory.is_empty());
    assert_eq!(placement.groups.len(), 1);
    assert_eq!(placement.groups[0].candidates, p1(&["c1", "c3", "c4"]));
    assert_eq!(
        placement.groups[0].origin,
        GroupOrigin {
            intent: "i".into(),
            all_of_index: None
        }
    );
    let picked = chosen(&placement);
    assert_eq!(picked.len(), 1);
    assert!(placement.groups[0].candidates.is_superset(&picked));
}

#[test]
fn nested_any_of_inside_all_of_is_a_group_of_its_own() {
    // Deploy on c5, one of {c1, c2}, and one of {c3, c4}: upstream would drop both nested groups.
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [
            by_name("c5"),
            {"anyOf": [by_name("c1"), by_name("c2")]},
            {"anyOf": [by_label("west")]}
        ]}),
    )])
    .unwrap();
    assert_eq!(placement.mandatory, p1(&["c5"]));
    let groups: Vec<_> = placement
        .groups
        .iter()
        .map(|g| (g.origin.all_of_index, g.candidates.clone()))
        .collect();
    assert_eq!(
        groups,
        vec![(Some(1), p1(&["c1", "c2"])), (Some(2), p1(&["c3", "c4"]))]
    );
    let picked = chosen(&placement);
    assert_eq!(picked.len(), 3);
    assert!(picked.contains(&ClusterRef::new("p1", "c5")));
    assert_eq!(picked.intersection(&p1(&["c1", "c2"])).count(), 1);
    assert_eq!(picked.intersection(&p1(&["c3", "c4"])).count(), 1);
}

#[test]
fn upstream_documented_example_labels_all_of_and_any_of() {
    // allOf east and west, anyOf edge: every east and west cluster plus one edge cluster. c6 is
    // both east and edge, so it already satisfies the edge group: nothing else is added.
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_label("east"), by_label("west")], "anyOf": [by_label("edge")]}),
    )])
    .unwrap();
    assert_eq!(placement.mandatory, p1(&["c1", "c2", "c3", "c4", "c6"]));
    assert_eq!(chosen(&placement), p1(&["c1", "c2", "c3", "c4", "c6"]));

    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_label("west")], "anyOf": [by_name("c5"), by_name("c1")]}),
    )])
    .unwrap();
    let picked = chosen(&placement);
    assert_eq!(picked.len(), 3);
    assert!(picked.is_superset(&p1(&["c3", "c4"])));
}

#[test]
fn targets_of_several_providers_mix() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_name("c1"), {"clusterProvider": "p2", "clusterLabel": "east"}]}),
    )])
    .unwrap();
    assert_eq!(placement.mandatory, refs(&[("p1", "c1"), ("p2", "d1")]));
}

// ---------- overlaps and duplicates ----------

#[test]
fn duplicate_targets_place_once() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_name("c1"), by_name("c1"), by_label("east")]}),
    )])
    .unwrap();
    assert_eq!(placement.mandatory, p1(&["c1", "c2", "c6"]));
}

#[test]
fn a_group_containing_a_mandatory_cluster_adds_nothing() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_name("c1")], "anyOf": [by_name("c1"), by_name("c2")]}),
    )])
    .unwrap();
    assert_eq!(chosen(&placement), p1(&["c1"]));
}

#[test]
fn overlapping_groups_share_a_pick_when_one_cluster_satisfies_both() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [
            {"anyOf": [by_name("c1"), by_name("c2")]},
            {"anyOf": [by_name("c2"), by_name("c3")]}
        ]}),
    )])
    .unwrap();
    assert_eq!(chosen(&placement), p1(&["c2"]));
}

#[test]
fn several_intents_for_one_app_add_up() {
    let intents = [
        intent("first", "a", json!({"allOf": [by_name("c1")]})),
        intent(
            "second",
            "a",
            json!({"allOf": [by_name("c2")], "anyOf": [by_label("west")]}),
        ),
        intent("empty", "a", json!({})),
    ];
    let placement = resolve_one(&intents).unwrap();
    assert_eq!(placement.mandatory, p1(&["c1", "c2"]));
    assert_eq!(placement.groups.len(), 1);
    assert_eq!(placement.groups[0].origin.intent, "second");
    assert_eq!(chosen(&placement).len(), 3);
}

#[test]
fn apps_are_resolved_independently() {
    let intents = [
        intent("ia", "a", json!({"allOf": [by_name("c1")]})),
        intent("ib", "b", json!({"allOf": [by_label("west")]})),
    ];
    let placement = resolve(&["a", "b"], &intents, &inventory(), None).unwrap();
    assert_eq!(placement["a"].mandatory, p1(&["c1"]));
    assert_eq!(placement["b"].mandatory, p1(&["c3", "c4"]));
}

// ---------- logical cloud ----------

#[test]
fn labels_are_limited_to_the_logical_cloud() {
    let cloud = p1(&["c1", "c3", "c4", "c5"]);
    let intents = [intent(
        "i",
        "a",
        json!({"allOf": [by_label("east")], "anyOf": [by_label("edge")]}),
    )];
    let placement = resolve(&["a"], &intents, &inventory(), Some(&cloud)).unwrap();
    assert_eq!(placement["a"].mandatory, p1(&["c1"]));
    assert_eq!(placement["a"].groups[0].candidates, p1(&["c5"]));
    assert_eq!(chosen(&placement["a"]), p1(&["c1", "c5"]));
}

#[test]
fn a_named_cluster_outside_the_logical_cloud_is_refused_in_all_of_and_any_of() {
    let cloud = p1(&["c1"]);
    for form in [
        json!({"allOf": [by_name("c2")]}),
        json!({"anyOf": [by_name("c1"), by_name("c2")]}),
        json!({"allOf": [{"anyOf": [by_name("c2")]}]}),
    ] {
        let err = resolve(
            &["a"],
            &[intent("i", "a", form.clone())],
            &inventory(),
            Some(&cloud),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PlacementError::ClusterNotInLogicalCloud {
                intent: "i".into(),
                provider: "p1".into(),
                cluster: "c2".into()
            },
            "{form}"
        );
    }
}

#[test]
fn a_label_with_no_cluster_in_the_logical_cloud_is_refused() {
    let cloud = p1(&["c1"]);
    let err = resolve(
        &["a"],
        &[intent(
            "i",
            "a",
            json!({"anyOf": [by_name("c1"), by_label("west")]}),
        )],
        &inventory(),
        Some(&cloud),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlacementError::LabelMatchesNothingInLogicalCloud {
            intent: "i".into(),
            provider: "p1".into(),
            label: "west".into()
        }
    );
}

#[test]
fn a_logical_cloud_without_clusters_places_nothing() {
    let err = resolve(
        &["a"],
        &[intent("i", "a", json!({"allOf": [by_name("c1")]}))],
        &inventory(),
        Some(&BTreeSet::new()),
    )
    .unwrap_err();
    assert_eq!(err, PlacementError::LogicalCloudWithoutClusters);
}

#[test]
fn no_logical_cloud_means_every_inventory_cluster_is_eligible() {
    let placement = resolve(
        &["a"],
        &[intent(
            "i",
            "a",
            json!({"allOf": [by_label("edge"), {"clusterProvider": "p2", "cluster": "d1"}]}),
        )],
        &inventory(),
        None,
    )
    .unwrap();
    assert_eq!(
        placement["a"].mandatory,
        refs(&[("p1", "c5"), ("p1", "c6"), ("p2", "d1")])
    );
}

// ---------- errors ----------

#[test]
fn unknown_names_are_errors_naming_them() {
    let cases = [
        (
            json!({"allOf": [{"clusterProvider": "nope", "cluster": "c1"}]}),
            PlacementError::UnknownClusterProvider {
                intent: "i".into(),
                provider: "nope".into(),
            },
        ),
        (
            json!({"anyOf": [by_name("c1"), by_name("c9")]}),
            PlacementError::UnknownCluster {
                intent: "i".into(),
                provider: "p1".into(),
                cluster: "c9".into(),
            },
        ),
        (
            json!({"allOf": [{"clusterProvider": "p3", "cluster": "c1"}]}),
            PlacementError::UnknownCluster {
                intent: "i".into(),
                provider: "p3".into(),
                cluster: "c1".into(),
            },
        ),
        (
            json!({"allOf": [{"anyOf": [by_label("north")]}]}),
            PlacementError::LabelMatchesNothing {
                intent: "i".into(),
                provider: "p1".into(),
                label: "north".into(),
            },
        ),
    ];
    for (form, want) in cases {
        let err = resolve_one(&[intent("i", "a", form.clone())]).unwrap_err();
        assert_eq!(err, want, "{form}");
    }
    let message = PlacementError::UnknownCluster {
        intent: "i".into(),
        provider: "p1".into(),
        cluster: "c9".into(),
    }
    .to_string();
    assert!(
        message.contains("\"i\"") && message.contains("\"c9\""),
        "{message}"
    );
}

#[test]
fn every_app_needs_an_intent_with_a_target() {
    let inv = inventory();
    let only_a = [intent("i", "a", json!({"allOf": [by_name("c1")]}))];
    assert_eq!(
        resolve(&["a", "b"], &only_a, &inv, None).unwrap_err(),
        PlacementError::AppWithoutIntent { app: "b".into() }
    );
    let empty = [intent("i", "a", json!({}))];
    assert_eq!(
        resolve(&["a"], &empty, &inv, None).unwrap_err(),
        PlacementError::AppWithoutTargets { app: "a".into() }
    );
    let stray = [
        intent("i", "a", json!({"allOf": [by_name("c1")]})),
        intent("j", "ghost", json!({"allOf": [by_name("c1")]})),
    ];
    assert_eq!(
        resolve(&["a"], &stray, &inv, None).unwrap_err(),
        PlacementError::IntentForUnknownApp {
            intent: "j".into(),
            app: "ghost".into()
        }
    );
}

#[test]
fn check_intent_validates_one_intent_as_upstream_does_at_creation() {
    let inv = inventory();
    let cloud = p1(&["c1", "c2"]);
    assert_eq!(
        check_intent(&intent("i", "a", json!({})), &inv, Some(&cloud)),
        Ok(())
    );
    assert_eq!(
        check_intent(
            &intent("i", "a", json!({"allOf": [by_label("east")]})),
            &inv,
            Some(&cloud)
        ),
        Ok(())
    );
    assert_eq!(
        check_intent(
            &intent(
                "i",
                "a",
                json!({"allOf": [by_name("c1"), {"anyOf": [by_name("c3")]}]})
            ),
            &inv,
            Some(&cloud)
        ),
        Err(PlacementError::ClusterNotInLogicalCloud {
            intent: "i".into(),
            provider: "p1".into(),
            cluster: "c3".into()
        })
    );
    assert_eq!(
        check_intent(
            &intent("i", "a", json!({"anyOf": [by_label("north")]})),
            &inv,
            None
        ),
        Err(PlacementError::LabelMatchesNothing {
            intent: "i".into(),
            provider: "p1".into(),
            label: "north".into()
        })
    );
}

// ---------- the choice ----------

#[test]
fn choice_is_deterministic_and_independent_of_intent_order() {
    let intents = vec![
        intent(
            "one",
            "a",
            json!({"anyOf": [by_label("east"), by_label("west")]}),
        ),
        intent(
            "two",
            "a",
            json!({"allOf": [{"anyOf": [by_label("edge")]}]}),
        ),
        intent(
            "three",
            "a",
            json!({"allOf": [{"anyOf": [by_name("c3"), by_name("c5")]}]}),
        ),
    ];
    let forward = chosen(&resolve_one(&intents).unwrap());
    let mut reversed_intents = intents.clone();
    reversed_intents.reverse();
    let reversed = chosen(&resolve_one(&reversed_intents).unwrap());
    assert_eq!(forward, reversed);
    for _ in 0..5 {
        assert_eq!(chosen(&resolve_one(&intents).unwrap()), forward);
    }
    // The smallest group {c3, c5} picks first; one of them also satisfies another group.
    assert!(forward.len() <= 2, "{forward:?}");
}

#[test]
fn choice_keeps_the_previous_clusters_when_still_candidates() {
    let placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"anyOf": [by_label("east"), by_label("west")]}),
    )])
    .unwrap();
    for previous in ["c1", "c2", "c3", "c4", "c6"] {
        assert_eq!(
            choose(&placement, &p1(&[previous])).unwrap(),
            p1(&[previous])
        );
    }
    // A previous cluster that is no longer a candidate is ignored.
    assert_eq!(
        choose(&placement, &p1(&["c5"])).unwrap(),
        chosen(&placement)
    );
}

#[test]
fn choice_spreads_apps_over_a_label() {
    let mut inv = ClusterInventory::new();
    for index in 0..8 {
        inv.add_label("p", &format!("edge-{index}"), "edge");
    }
    let apps: Vec<String> = (0..40).map(|i| format!("app-{i}")).collect();
    let intents: Vec<AppIntent> = apps
        .iter()
        .map(|app| {
            intent(
                app,
                app,
                json!({"anyOf": [{"clusterProvider": "p", "clusterLabel": "edge"}]}),
            )
        })
        .collect();
    let picks = choose_all(
        &resolve(&apps, &intents, &inv, None).unwrap(),
        &BTreeMap::new(),
    )
    .unwrap();
    let used: BTreeSet<_> = picks.values().flatten().collect();
    assert!(picks.values().all(|set| set.len() == 1));
    assert!(used.len() >= 6, "40 apps landed on only {used:?}");
}

#[test]
fn removing_a_candidate_that_was_not_picked_changes_nothing() {
    let mut inv = ClusterInventory::new();
    for index in 0..20 {
        inv.add_label("p", &format!("k{index:02}"), "zone");
    }
    let apps: Vec<String> = (0..30).map(|i| format!("app{i}")).collect();
    let intents: Vec<AppIntent> = apps
        .iter()
        .map(|app| {
            intent(
                app,
                app,
                json!({"anyOf": [{"clusterProvider": "p", "clusterLabel": "zone"}]}),
            )
        })
        .collect();
    let mut placement = resolve(&apps, &intents, &inv, None).unwrap();
    let before = choose_all(&placement, &BTreeMap::new()).unwrap();
    let removed = ClusterRef::new("p", "k07");
    for app_placement in placement.values_mut() {
        app_placement.retain_candidates(|c| *c != removed);
    }
    let after = choose_all(&placement, &BTreeMap::new()).unwrap();
    for app in &apps {
        if before[app].contains(&removed) {
            assert!(!after[app].contains(&removed));
        } else {
            assert_eq!(before[app], after[app], "{app} moved");
        }
    }
}

#[test]
fn pruning_a_group_empty_fails_the_choice_naming_the_group() {
    let mut placement = resolve_one(&[intent(
        "i",
        "a",
        json!({"allOf": [by_name("c1"), {"anyOf": [by_label("west")]}]}),
    )])
    .unwrap();
    placement.retain_candidates(|c| c.cluster() != "c3");
    assert_eq!(chosen(&placement), p1(&["c1", "c4"]));
    placement.retain_candidates(|c| c.cluster() != "c4");
    // Mandatory clusters are never pruned.
    assert_eq!(placement.mandatory, p1(&["c1"]));
    let err = choose(&placement, &BTreeSet::new()).unwrap_err();
    assert_eq!(
        err,
        PlacementError::GroupWithoutCandidates {
            app: "a".into(),
            origin: GroupOrigin {
                intent: "i".into(),
                all_of_index: Some(1)
            }
        }
    );
    assert!(err.to_string().contains("allOf[1].anyOf"), "{err}");
}

#[test]
fn choose_all_uses_each_apps_previous_clusters() {
    let intents = [
        intent("ia", "a", json!({"anyOf": [by_label("west")]})),
        intent("ib", "b", json!({"anyOf": [by_label("west")]})),
    ];
    let placement = resolve(&["a", "b"], &intents, &inventory(), None).unwrap();
    let previous = BTreeMap::from([
        ("a".to_string(), p1(&["c3"])),
        ("b".to_string(), p1(&["c4"])),
    ]);
    let picks = choose_all(&placement, &previous).unwrap();
    assert_eq!(picks["a"], p1(&["c3"]));
    assert_eq!(picks["b"], p1(&["c4"]));
    assert_eq!(placement["a"].candidate_clusters(), p1(&["c3", "c4"]));
}

#[test]
fn cluster_ref_displays_as_upstream_names_it() {
    assert_eq!(ClusterRef::new("p1", "c1").to_string(), "p1+c1");
    let inv = inventory();
    assert_eq!(inv.clusters().count(), 7);
    assert!(inv.cluster("p1", "c1").is_some());
    assert!(inv.cluster("p3", "c1").is_none());
}

// ---------- scale ----------

/// 10,000 clusters in 10 providers of 1,000, each with a region (10 per provider), a tier (4) and a
/// rack (100) label; a logical cloud of 8,571 of them; 50 apps, each with a tier label in allOf (a
/// fifth of the apps: a whole provider), a rack in a nested anyOf, and a top-level anyOf of a region
/// and another provider's rack. Prints the time; not asserted (run with `--release -- --nocapture`).
#[test]
fn scale_ten_thousand_clusters_fifty_apps() {
    let mut inv = ClusterInventory::new();
    let mut cloud = BTreeSet::new();
    for index in 0..10_000 {
        let provider = format!("prov{}", index % 10);
        let local = index / 10;
        let cluster = format!("cluster-{index:05}");
        inv.add_label(&provider, &cluster, "all");
        inv.add_label(&provider, &cluster, &format!("region-{}", local % 10));
        inv.add_label(&provider, &cluster, &format!("tier-{}", local % 4));
        inv.add_label(&provider, &cluster, &format!("rack-{}", local % 100));
        if index % 7 != 3 {
            cloud.insert(ClusterRef::new(&provider, &cluster));
        }
    }
    let apps: Vec<String> = (0..50).map(|i| format!("app-{i:02}")).collect();
    let intents: Vec<AppIntent> = apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let provider = format!("prov{}", i % 10);
            let other = format!("prov{}", (i + 3) % 10);
            let mandatory = if i % 5 == 0 {
                "all".to_string()
            } else {
                format!("tier-{}", i % 4)
            };
            intent(
                app,
                app,
                json!({
                    "allOf": [
                        {"clusterProvider": provider, "clusterLabel": mandatory},
                        {"anyOf": [{"clusterProvider": provider, "clusterLabel": format!("rack-{}", (i * 7) % 100)}]}
                    ],
                    "anyOf": [
                        {"clusterProvider": provider, "clusterLabel": format!("region-{}", i % 10)},
                        {"clusterProvider": other, "clusterLabel": format!("rack-{}", i % 100)}
                    ]
                }),
            )
        })
        .collect();

    let started = Instant::now();
    let placement = resolve(&apps, &intents, &inv, Some(&cloud)).unwrap();
    let resolved = started.elapsed();
    let picks = choose_all(&placement, &BTreeMap::new()).unwrap();
    let total = started.elapsed();

    let placed: usize = picks.values().map(BTreeSet::len).sum();
    for (app, clusters) in &picks {
        assert!(clusters.iter().all(|c| cloud.contains(c)), "{app}");
        assert!(clusters.is_superset(&placement[app].mandatory));
    }
    eprintln!(
        "placement scale: 10000 clusters, 50 apps, {placed} app placements: resolve {resolved:?}, resolve+choose {total:?}"
    );
}
