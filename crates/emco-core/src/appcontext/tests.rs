//! Unit tests of the AppContext: variant deduplication, dependency waves and cycles, diffs,
//! the storage round trip, determinism, and a scale measurement.

#![allow(clippy::unwrap_used)] // Tests may unwrap (house rule).

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::placement::{AnyOfGroup, GroupOrigin};

const CREATED: &str = "2026-11-23T12:00:00Z";

fn dig() -> DigRef {
    DigRef::new("proj", "capp", "v1", "dig")
}

fn object(kind: &str, name: &str, order: u32, replicas: u64) -> ContextObject {
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    ContextObject {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: Some("default".to_owned()),
        phase: Phase::Resource { order },
        delete_policies: Vec::new(),
        keep_on_uninstall: false,
        object: json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas},
        }),
    }
}

fn objects(count: u32) -> Vec<ContextObject> {
    (0..count)
        .map(|i| object("ConfigMap", &format!("cm-{i}"), i, 1))
        .collect()
}

fn clusters(count: usize) -> Vec<ClusterRef> {
    (0..count)
        .map(|i| ClusterRef::new("prov", &format!("c{i:05}")))
        .collect()
}

fn app(name: &str, cluster_count: usize, deps: &[&str]) -> AppInput {
    AppInput::new(name, &clusters(cluster_count), objects(3)).with_dependencies(
        deps.iter()
            .map(|dep| Dependency {
                app: (*dep).to_owned(),
                op_status: OpStatus::Ready,
                wait_seconds: 0,
            })
            .collect(),
    )
}

fn build(apps: Vec<AppInput>) -> Result<AppContext, AppContextError> {
    apps.into_iter()
        .fold(AppContextBuilder::new(dig(), 1, CREATED), |builder, app| {
            builder.app(app)
        })
        .build()
}

#[test]
fn thousand_clusters_share_one_variant_stored_once() {
    let context = build(vec![app("web", 1000, &[])]).unwrap();
    let web = context.app("web").unwrap();
    assert_eq!(web.clusters.len(), 1000);
    assert_eq!(web.variants.len(), 1);
    let variant_keys = encode(&context)
        .unwrap()
        .into_iter()
        .filter(|(key, _)| key.contains("/variant/"))
        .count();
    assert_eq!(variant_keys, 1);
    let first = ClusterId::new("prov", "c00000");
    assert_eq!(web.objects_for(&first).unwrap().len(), 3);
    assert!(web.objects_for(&ClusterId::new("prov", "nope")).is_none());
}

#[test]
fn modifier_touching_three_clusters_makes_a_second_shared_variant() {
    let touched: BTreeSet<&str> = ["c00003", "c00500", "c00999"].into();
    let modifier = |_: &str, cluster: &ClusterId, objects: &[ContextObject]| {
        if !touched.contains(cluster.cluster.as_str()) {
            return Ok(None);
        }
        let mut custom = objects.to_vec();
        custom[0].object["data"] = json!({"region": "edge"});
        Ok(Some(custom))
    };
    let context = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("web", 1000, &[]))
        .modifier(&modifier)
        .build()
        .unwrap();
    let web = context.app("web").unwrap();
    assert_eq!(web.variants.len(), 2);
    let custom_variant = &web.clusters[&ClusterId::new("prov", "c00500")].variant;
    let users = web
        .clusters
        .values()
        .filter(|assignment| &assignment.variant == custom_variant)
        .count();
    assert_eq!(users, 3);
    let custom = web.objects_for(&ClusterId::new("prov", "c00003")).unwrap();
    assert_eq!(custom[0].object["data"]["region"], "edge");
    let plain = web.objects_for(&ClusterId::new("prov", "c00004")).unwrap();
    assert!(plain[0].object.get("data").is_none());
}

#[test]
fn modifier_returning_the_same_objects_does_not_add_a_variant() {
    let modifier = |_: &str, _: &ClusterId, objects: &[ContextObject]| Ok(Some(objects.to_vec()));
    let context = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("web", 10, &[]))
        .modifier(&modifier)
        .build()
        .unwrap();
    assert_eq!(context.app("web").unwrap().variants.len(), 1);
}

#[test]
fn modifier_error_names_app_and_cluster() {
    let modifier = |_: &str, _: &ClusterId, _: &[ContextObject]| Err("no quota".to_owned());
    let error = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("web", 2, &[]))
        .modifier(&modifier)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "app \"web\": customising for cluster prov+c00000 failed: no quota"
    );
}

/// A hook running before (`pre`) or after install.
fn hook(weight: i64, pre: bool) -> Phase {
    Phase::Hook {
        weight,
        events: HookEvents {
            pre_install: pre,
            post_install: !pre,
            ..HookEvents::default()
        },
    }
}

#[test]
fn builder_sorts_objects_into_install_order() {
    let mut list = vec![
        object("ConfigMap", "post", 0, 1),
        object("ConfigMap", "res1", 1, 1),
        object("ConfigMap", "res0", 0, 1),
        object("ConfigMap", "pre5", 0, 1),
        object("ConfigMap", "pre-2", 0, 1),
        object("CustomResourceDefinition", "crd", 0, 1),
        object("ConfigMap", "on-delete", 0, 1),
    ];
    list[6].phase = Phase::Hook {
        weight: -9,
        events: HookEvents {
            pre_delete: true,
            ..HookEvents::default()
        },
    };
    list[0].phase = hook(0, false);
    list[3].phase = hook(5, true);
    list[4].phase = hook(-2, true);
    list[5].phase = Phase::Crd;
    let context = build(vec![AppInput::new("a", &clusters(1), list)]).unwrap();
    let names: Vec<&str> = context.apps[0]
        .variants
        .values()
        .next()
        .unwrap()
        .objects
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["crd", "pre-2", "pre5", "res0", "res1", "post", "on-delete"]
    );
}

#[test]
fn duplicate_object_identity_is_rejected() {
    let list = vec![
        object("ConfigMap", "x", 0, 1),
        object("ConfigMap", "x", 1, 2),
    ];
    let error = build(vec![AppInput::new("a", &clusters(1), list)]).unwrap_err();
    assert!(
        matches!(error, AppContextError::DuplicateObject { .. }),
        "{error}"
    );
}

#[test]
fn deploy_order_gives_dependency_waves() {
    let context = build(vec![
        app("web", 1, &["db", "cache"]),
        app("db", 1, &[]),
        app("cache", 1, &["db"]),
        app("monitor", 1, &[]),
        app("frontend", 1, &["web"]),
    ])
    .unwrap();
    assert_eq!(
        context.deploy_order().unwrap(),
        vec![
            vec!["db".to_owned(), "monitor".to_owned()],
            vec!["cache".to_owned()],
            vec!["web".to_owned()],
            vec!["frontend".to_owned()],
        ]
    );
    // Apps keep the composite app's order; waves are separate.
    let names: Vec<&str> = context.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["web", "db", "cache", "monitor", "frontend"]);
}

#[test]
fn dependency_cycle_is_rejected_and_named() {
    let error = build(vec![
        app("a", 1, &["b"]),
        app("b", 1, &["c"]),
        app("c", 1, &["a"]),
        app("d", 1, &[]),
    ])
    .unwrap_err();
    assert_eq!(
        error,
        AppContextError::DependencyCycle {
            cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }
    );
    assert_eq!(
        error.to_string(),
        "app dependencies form a cycle: a -> b -> c -> a"
    );
}

#[test]
fn cycle_behind_a_dependent_app_is_found() {
    // "x" waits on the cycle b <-> c but is not part of it.
    let error = build(vec![
        app("x", 1, &["b"]),
        app("b", 1, &["c"]),
        app("c", 1, &["b"]),
    ])
    .unwrap_err();
    assert_eq!(
        error,
        AppContextError::DependencyCycle {
            cycle: vec!["b".into(), "c".into(), "b".into()]
        }
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    let error = build(vec![app("a", 1, &["a"])]).unwrap_err();
    assert_eq!(
        error,
        AppContextError::DependencyCycle {
            cycle: vec!["a".into(), "a".into()]
        }
    );
}

#[test]
fn unknown_dependency_and_empty_placement_and_duplicate_app_are_rejected() {
    assert_eq!(
        build(vec![app("a", 1, &["ghost"])]).unwrap_err(),
        AppContextError::UnknownDependency {
            app: "a".into(),
            dependency: "ghost".into()
        }
    );
    assert_eq!(
        build(vec![app("a", 0, &[])]).unwrap_err(),
        AppContextError::EmptyPlacement { app: "a".into() }
    );
    assert_eq!(
        build(vec![app("a", 1, &[]), app("a", 1, &[])]).unwrap_err(),
        AppContextError::DuplicateApp { app: "a".into() }
    );
}

#[test]
fn dependency_reads_upstream_spec() {
    let dep =
        Dependency::from_spec(&json!({"app": "db", "opStatus": "deployed", "wait": 5})).unwrap();
    assert_eq!(
        dep,
        Dependency {
            app: "db".into(),
            op_status: OpStatus::Deployed,
            wait_seconds: 5
        }
    );
    let dep = Dependency::from_spec(&json!({"app": "db", "opStatus": "READY"})).unwrap();
    assert_eq!((dep.op_status, dep.wait_seconds), (OpStatus::Ready, 0));
    assert!(Dependency::from_spec(&json!({"app": "db", "opStatus": "Running"})).is_err());
    assert!(
        Dependency::from_spec(&json!({"app": "db", "opStatus": "Ready", "wait": 5000})).is_err()
    );
    assert!(Dependency::from_spec(&json!({"opStatus": "Ready"})).is_err());
}

#[test]
fn from_placement_records_any_of_group() {
    let mandatory = ClusterRef::new("p", "m");
    let alternative = ClusterRef::new("p", "alt");
    let placement = AppPlacement {
        app: "web".into(),
        mandatory: [mandatory.clone()].into(),
        groups: vec![AnyOfGroup {
            origin: GroupOrigin {
                intent: "i".into(),
                all_of_index: None,
            },
            candidates: [alternative.clone(), ClusterRef::new("p", "other")].into(),
        }],
    };
    let chosen: BTreeSet<ClusterRef> = [mandatory, alternative].into();
    let input = AppInput::from_placement(&placement, &chosen, objects(1));
    assert_eq!(input.clusters[&ClusterId::new("p", "m")], None);
    assert_eq!(input.clusters[&ClusterId::new("p", "alt")], Some(0));
    let context = build(vec![input]).unwrap();
    let web = context.app("web").unwrap();
    assert_eq!(
        web.clusters[&ClusterId::new("p", "alt")].any_of_group,
        Some(0)
    );
    let loaded = load(&context.id, encode(&context).unwrap()).unwrap();
    assert_eq!(loaded, context, "the anyOf group survives storage");
}

fn change_of<'a>(changes: &'a [ClusterChange], app: &str, cluster: &str) -> &'a ClusterChangeKind {
    &changes
        .iter()
        .find(|c| c.app == app && c.cluster.cluster == cluster)
        .unwrap()
        .change
}

#[test]
fn diff_reports_cluster_and_object_changes() {
    let old = build(vec![
        AppInput::new("web", &clusters(3), objects(3)),
        AppInput::new("gone", &clusters(1), objects(1)),
    ])
    .unwrap();
    // New revision: web leaves c00000, joins c00003; on c00001 cm-0 changes, cm-2 is dropped and
    // a Deployment is added; c00002 is customised back to the old objects (unchanged).
    let mut new_objects = objects(2);
    new_objects[0].object["spec"]["replicas"] = json!(2);
    new_objects.push(object("Deployment", "api", 2, 1));
    let old_objects = objects(3);
    let modifier = move |_: &str, cluster: &ClusterId, _: &[ContextObject]| {
        Ok((cluster.cluster == "c00002").then(|| old_objects.clone()))
    };
    let moved: Vec<ClusterRef> = clusters(4).into_iter().skip(1).collect();
    let new = AppContextBuilder::new(dig(), 2, CREATED)
        .app(AppInput::new("web", &moved, new_objects))
        .app(AppInput::new("added", &clusters(1), objects(1)))
        .modifier(&modifier)
        .build()
        .unwrap();

    let changes = diff(&old, &new);
    let order: Vec<(String, String)> = changes
        .iter()
        .map(|c| (c.app.clone(), c.cluster.cluster.clone()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "changes come sorted by app then cluster");
    assert_eq!(changes.len(), 6);

    assert!(matches!(
        change_of(&changes, "added", "c00000"),
        ClusterChangeKind::Create { .. }
    ));
    assert!(matches!(
        change_of(&changes, "gone", "c00000"),
        ClusterChangeKind::Delete { .. }
    ));
    assert!(matches!(
        change_of(&changes, "web", "c00000"),
        ClusterChangeKind::Delete { .. }
    ));
    assert!(matches!(
        change_of(&changes, "web", "c00003"),
        ClusterChangeKind::Create { .. }
    ));
    assert!(matches!(
        change_of(&changes, "web", "c00002"),
        ClusterChangeKind::Unchanged { .. }
    ));
    let ClusterChangeKind::Update { objects, .. } = change_of(&changes, "web", "c00001") else {
        panic!("web on c00001 should be an update");
    };
    let ops: Vec<(String, ObjectOp)> = objects
        .iter()
        .map(|c| (c.object.to_string(), c.op))
        .collect();
    assert_eq!(
        ops,
        [
            ("core/ConfigMap/default/cm-0".to_owned(), ObjectOp::Update),
            ("apps/Deployment/default/api".to_owned(), ObjectOp::Create),
            ("core/ConfigMap/default/cm-2".to_owned(), ObjectOp::Delete),
        ]
    );
}

#[test]
fn diff_of_a_context_with_itself_is_all_unchanged() {
    let context = build(vec![app("web", 50, &[])]).unwrap();
    let changes = diff(&context, &context);
    assert_eq!(changes.len(), 50);
    assert!(
        changes
            .iter()
            .all(|c| matches!(c.change, ClusterChangeKind::Unchanged { .. }))
    );
}

#[test]
fn api_version_change_within_a_group_is_an_update_not_a_replace() {
    let old = build(vec![AppInput::new(
        "a",
        &clusters(1),
        vec![object("Deployment", "d", 0, 1)],
    )])
    .unwrap();
    let mut moved = object("Deployment", "d", 0, 1);
    moved.api_version = "apps/v2".into();
    let new = build(vec![AppInput::new("a", &clusters(1), vec![moved])]).unwrap();
    let ClusterChangeKind::Update { objects, .. } = &diff(&old, &new)[0].change else {
        panic!("expected an update");
    };
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].op, ObjectOp::Update);
}

#[test]
fn service_discoveries_are_kept_and_must_name_the_contexts_apps() {
    let discovery = |server: &str, client: &str| ServiceDiscovery {
        server: server.into(),
        service: "http-service".into(),
        namespace: "default".into(),
        clients: vec![client.into()],
    };
    let context = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("server", 2, &[]))
        .app(app("client", 2, &[]))
        .discovery(discovery("server", "client"))
        .build()
        .unwrap();
    let loaded = load(&context.id, encode(&context).unwrap()).unwrap();
    assert_eq!(loaded.discoveries, vec![discovery("server", "client")]);

    let unknown = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("server", 2, &[]))
        .discovery(discovery("server", "nowhere"))
        .build()
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "service discovery of \"http-service\" names app \"nowhere\", which the context does not have"
    );
    // A context without discoveries stores the meta it always did.
    let plain = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("server", 2, &[]))
        .build()
        .unwrap();
    let pairs = encode(&plain).unwrap();
    let meta = String::from_utf8(pairs.last().unwrap().1.clone()).unwrap();
    assert!(!meta.contains("discoveries"), "{meta}");
}

#[test]
fn a_cloud_scope_round_trips_and_its_header_reads_alone() {
    let scope = CloudScope {
        logical_cloud: "lc1".into(),
        namespace: "privileged-lc-ns".into(),
        instantiates_cloud: false,
    };
    let context = AppContextBuilder::new(dig(), 3, CREATED)
        .app(app("server", 2, &[]))
        .cloud(scope.clone())
        .namespace("privileged-lc-ns")
        .build()
        .unwrap();
    let pairs = encode(&context).unwrap();
    let (key, meta) = pairs.last().unwrap();
    assert_eq!(key, &meta_key(&context.id));
    let header = decode_header(meta).unwrap();
    assert_eq!(header.id, context.id);
    assert_eq!(header.dig, dig());
    assert_eq!(header.revision, 3);
    assert_eq!(header.cloud.as_ref(), Some(&scope));
    assert_eq!(header.namespace.as_deref(), Some("privileged-lc-ns"));
    let loaded = load(&context.id, pairs).unwrap();
    assert_eq!(loaded, context);
    // Without a scope the meta is what it always was, and reads back without one.
    let plain = AppContextBuilder::new(dig(), 1, CREATED)
        .app(app("server", 2, &[]))
        .build()
        .unwrap();
    let pairs = encode(&plain).unwrap();
    let meta = pairs.last().unwrap().1.clone();
    assert!(!String::from_utf8_lossy(&meta).contains("cloud"));
    assert!(!String::from_utf8_lossy(&meta).contains("namespace"));
    assert_eq!(decode_header(&meta).unwrap().cloud, None);
    assert_eq!(decode_header(&meta).unwrap().namespace, None);
}

#[test]
fn encode_then_load_round_trips_with_meta_last() {
    let touched = |_: &str, cluster: &ClusterId, objects: &[ContextObject]| {
        Ok((cluster.cluster == "c01500").then(|| objects[..1].to_vec()))
    };
    let context = AppContextBuilder::new(dig(), 7, CREATED)
        .app(app("db", 2500, &[]))
        .app(app("web", 3, &["db"]))
        .modifier(&touched)
        .build()
        .unwrap();
    let pairs = encode(&context).unwrap();
    assert_eq!(pairs.last().unwrap().0, meta_key(&context.id));
    let chunks = pairs
        .iter()
        .filter(|(key, _)| key.starts_with(&format!("ctx/{}/app/db/clusters/", context.id)))
        .count();
    assert_eq!(chunks, 3, "2500 clusters in chunks of {CLUSTERS_PER_CHUNK}");
    assert!(
        pairs
            .iter()
            .all(|(key, _)| key.starts_with(&key_prefix(&context.id)))
    );

    let mut shuffled = pairs.clone();
    shuffled.reverse();
    shuffled.push(("ctx/other/meta".into(), b"ignored".to_vec()));
    assert_eq!(load(&context.id, shuffled).unwrap(), context);

    let without_meta: Vec<_> = pairs[..pairs.len() - 1].to_vec();
    assert_eq!(
        load(&context.id, without_meta).unwrap_err(),
        StorageError::MissingMeta {
            id: context.id.clone()
        }
    );
    let mut stray = pairs.clone();
    stray.push((format!("ctx/{}/status/x", context.id), b"{}".to_vec()));
    assert!(matches!(
        load(&context.id, stray).unwrap_err(),
        StorageError::UnexpectedKey { .. }
    ));
    let without_variants: Vec<_> = pairs
        .into_iter()
        .filter(|(key, _)| !key.contains("/variant/"))
        .collect();
    let StorageError::Invalid { source, .. } = load(&context.id, without_variants).unwrap_err()
    else {
        panic!("a context without variants must be invalid");
    };
    assert!(matches!(*source, AppContextError::MissingVariant { .. }));
}

#[test]
fn unsafe_app_name_cannot_become_a_key() {
    let context = build(vec![AppInput::new("a/b", &clusters(1), objects(1))]).unwrap();
    assert!(matches!(
        encode(&context).unwrap_err(),
        StorageError::UnsafeKeyPart { .. }
    ));
}

#[test]
fn ids_and_hashes_are_deterministic_and_key_order_independent() {
    let first = build(vec![app("web", 5, &[])]).unwrap();
    let second = build(vec![app("web", 5, &[])]).unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(first, second);
    assert_eq!(encode(&first).unwrap(), encode(&second).unwrap());
    assert_eq!(first.id, context_id(&dig(), 1, CREATED));
    assert_eq!(first.id, "4f32e329a1f39f16");
    assert_ne!(first.id, context_id(&dig(), 2, CREATED));
    assert_ne!(first.id, context_id(&dig(), 1, "2026-11-24T00:00:00Z"));

    // Pinned value: the hash must survive upgrades (stored ids refer to it).
    let pinned = VariantId::of(&[object("ConfigMap", "cm", 0, 1)]);
    assert_eq!(pinned.as_str(), "8be4e8c7cd55c733-229");
    assert_eq!(VariantId::parse(pinned.as_str()), Some(pinned.clone()));
    assert_eq!(VariantId::parse("ZZ-1"), None);

    let mut reordered = object("ConfigMap", "cm", 0, 1);
    let Value::Object(map) = &reordered.object else {
        unreachable!()
    };
    let mut entries: Vec<(String, Value)> = map.clone().into_iter().collect();
    entries.reverse();
    reordered.object = Value::Object(entries.into_iter().collect());
    assert_eq!(VariantId::of(&[reordered]), pinned);
    assert_ne!(VariantId::of(&[object("ConfigMap", "cm", 0, 2)]), pinned);
}

#[test]
fn cluster_id_serializes_as_upstream_name() {
    let id = ClusterId::new("prov", "edge-1");
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"prov+edge-1\"");
    assert_eq!(
        serde_json::from_str::<ClusterId>("\"prov+edge-1\"").unwrap(),
        id
    );
    assert!(serde_json::from_str::<ClusterId>("\"noplus\"").is_err());
    assert!(serde_json::from_str::<ClusterId>("\"a+b+c\"").is_err());
}

/// Not an assertion: prints build time, encode time and stored size at fleet scale.
#[test]
fn measure_five_apps_ten_objects_ten_thousand_clusters() {
    let fleet = clusters(10_000);
    let started = Instant::now();
    let mut builder = AppContextBuilder::new(dig(), 1, CREATED);
    for index in 0..5 {
        let list = (0..10)
            .map(|i| object("ConfigMap", &format!("app{index}-cm-{i}"), i, 1))
            .collect();
        builder = builder.app(AppInput::new(&format!("app{index}"), &fleet, list));
    }
    let context = builder.build().unwrap();
    let built = started.elapsed();
    let started = Instant::now();
    let pairs = encode(&context).unwrap();
    let encoded = started.elapsed();
    let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let variant_bytes: usize = pairs
        .iter()
        .filter(|(k, _)| k.contains("/variant/"))
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let started = Instant::now();
    let loaded = load(&context.id, pairs.clone()).unwrap();
    let load_time = started.elapsed();
    let started = Instant::now();
    let changes = diff(&context, &loaded);
    let diff_time = started.elapsed();
    assert_eq!(changes.len(), 50_000);
    println!(
        "5 apps x 10 objects x 10,000 clusters: build {built:?}, encode {encoded:?} \
         ({} keys, {bytes} bytes, of which variants {variant_bytes}), load {load_time:?}, \
         diff {diff_time:?}",
        pairs.len()
    );
}
