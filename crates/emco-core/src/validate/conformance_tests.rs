//! Runs every request body of upstream's REST conformance inputs (`full_api_test`) through
//! [`validate`]: a body upstream answered with 2xx, 404 or 409 must pass, one it refused with 400
//! must not (except the few refused for reasons outside the body, listed below).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{known_kinds, validate};

/// The collection segments of the `/v2` API and the kinds they hold.
const COLLECTIONS: &[(&str, &str)] = &[
    ("cluster-providers", "clusterProvider"),
    ("clusters", "cluster"),
    ("labels", "clusterLabel"),
    ("cluster-sync-objects", "clusterSyncObject"),
    ("clm-controllers", "clmController"),
    ("networks", "network"),
    ("provider-networks", "providerNetwork"),
    ("controllers", "controller"),
    ("dtc-controllers", "dtcController"),
    ("projects", "project"),
    ("composite-apps", "compositeApp"),
    ("apps", "app"),
    ("dependency", "appDependency"),
    ("composite-profiles", "compositeProfile"),
    ("profiles", "appProfile"),
    ("deployment-intent-groups", "deploymentIntentGroup"),
    ("intents", "groupIntent"),
    ("generic-placement-intents", "genericPlacementIntent"),
    ("app-intents", "genericAppPlacementIntent"),
    ("logical-clouds", "logicalCloud"),
    ("cluster-references", "clusterReference"),
    ("user-permissions", "userPermission"),
    ("cluster-quotas", "clusterQuota"),
    ("generic-k8s-intents", "genericK8sIntent"),
    ("resources", "genericResource"),
    ("customizations", "customization"),
    ("traffic-group-intents", "trafficGroupIntent"),
    ("inbound-intents", "inboundServerIntent"),
    ("clients", "inboundClientsIntent"),
    ("access-points", "inboundClientsAccessIntent"),
    ("hpa-intents", "hpaIntent"),
    ("hpa-resource-consumers", "hpaConsumer"),
    ("resource-requirements", "hpaResource"),
    ("network-controller-intent", "netControllerIntent"),
    ("workload-intents", "workloadIntent"),
    ("interfaces", "interfaceIntent"),
    ("services", "service"),
];

/// The kind a request writes, from its URL below `/v2` and whether it is a `POST` (to the
/// collection) or a `PUT` (to an item); `None` for a URL no route serves.
pub(super) fn kind_of(anchor: &str, post: bool) -> Option<&'static str> {
    let segments: Vec<&str> = anchor.trim_end_matches('/').split('/').collect();
    let collection_at = |from_end: usize| segments.len().checked_sub(from_end).map(|i| segments[i]);
    let collection = if post {
        collection_at(1)?
    } else if collection_at(3) == Some("composite-apps") {
        // A composite app is addressed by name and version.
        "composite-apps"
    } else {
        collection_at(2)?
    };
    let parent = segments
        .len()
        .checked_sub(if post { 3 } else { 4 })
        .map(|i| segments[i]);
    match (collection, parent) {
        ("kv-pairs", Some("clusters")) => Some("clusterKv"),
        ("kv-pairs", Some("logical-clouds")) => Some("logicalCloudKv"),
        _ => COLLECTIONS
            .iter()
            .find(|(segment, _)| *segment == collection)
            .map(|(_, kind)| *kind),
    }
}

/// 400 answers upstream gives for something other than the body's content.
const REFUSED_FOR_OTHER_REASONS: &[(&str, &str)] = &[];

/// 404 answers upstream gives before it reads the body, so the body may be invalid.
const ANSWERED_BEFORE_THE_BODY: &[(&str, &str)] = &[(
    "test_postInboundClientIntentTrafficControllerIntentNeg404NoCompAppVer.json",
    "DTC's create handlers look up the deployment intent group first; this body uses `appName` for `app`",
)];

struct Case {
    file: String,
    kind: &'static str,
    body: Value,
    status: u64,
}

pub(super) fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/emco-reference")
}

fn corpus_dir() -> PathBuf {
    reference_dir().join("jacobtrvl-emco/scripts/integration_test/inputs/data/full_api_test")
}

/// The input files upstream's test list runs (`full_api_test_list`), relative to [`corpus_dir`].
/// The corpus holds more files than the list runs; some of those are stale (bodies in an older
/// field naming, with answers the current upstream does not give), so only listed ones count.
fn listed_inputs() -> Vec<String> {
    let list = reference_dir()
        .join("generated-from-jacobtrvl-emco/scripts/integration_test/test_sequence.tsv");
    let text =
        fs::read_to_string(&list).unwrap_or_else(|e| panic!("cannot read {}: {e}", list.display()));
    text.lines()
        .filter_map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            match columns[..] {
                ["full_api_test_list", _, dir, _, input] => Some(format!("{dir}/{input}")),
                _ => None,
            }
        })
        .collect()
}

/// Every body a `POST` or `PUT` of the listed inputs sends to a served URL, with its kind and
/// upstream's answer.
fn cases() -> Vec<Case> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    for file in listed_inputs() {
        let name = file.rsplit('/').next().unwrap_or_default();
        let post = name.starts_with("test_post");
        if !post && !name.starts_with("test_put") {
            continue;
        }
        let path = dir.join(&file);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let items: Vec<Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for item in &items {
            let anchor = item["anchor"].as_str().unwrap();
            for exchange in item["type-metadata"].as_array().into_iter().flatten() {
                let Some(body) = exchange.get("RequestBody") else {
                    continue;
                };
                let status = exchange["ResponseCode"].as_u64().unwrap();
                match kind_of(anchor, post) {
                    Some(kind) => cases.push(Case {
                        file: file.clone(),
                        kind,
                        body: body.clone(),
                        status,
                    }),
                    // No route: the router answers 404 (or 405) before any handler reads the body.
                    None => assert!(
                        status == 404 || status == 405,
                        "{file}: no kind for {anchor}"
                    ),
                }
            }
        }
    }
    cases
}

#[test]
fn conformance_bodies_are_judged_as_upstream_judged_them() {
    let cases = cases();
    assert!(cases.len() > 150, "only {} cases found", cases.len());
    let mut wrong = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for case in &cases {
        assert!(
            known_kinds().contains(&case.kind),
            "{} has no rules ({})",
            case.kind,
            case.file
        );
        let outcome = validate(case.kind, &case.body);
        match case.status {
            200 | 201 | 204 | 404 | 409 => {
                accepted += 1;
                let body_unread = ANSWERED_BEFORE_THE_BODY
                    .iter()
                    .any(|(file, _)| case.file.ends_with(file));
                if let (Err(err), false) = (outcome, body_unread) {
                    wrong.push(format!(
                        "{} ({}, {}): refused: {err}",
                        case.file, case.kind, case.status
                    ));
                }
            }
            400 => {
                refused += 1;
                let other_reason = REFUSED_FOR_OTHER_REASONS
                    .iter()
                    .any(|(file, _)| case.file.ends_with(file));
                match (outcome, other_reason) {
                    (Ok(()), false) => wrong.push(format!(
                        "{} ({}): accepted, upstream said 400",
                        case.file, case.kind
                    )),
                    (Err(err), true) => wrong.push(format!(
                        "{} ({}): refused ({err}), listed as a non-body 400",
                        case.file, case.kind
                    )),
                    _ => {}
                }
            }
            // 422 is Go's decoder refusing the body (or the request) before any schema runs.
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases judged differently:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert!(
        accepted > 60 && refused > 60,
        "accepted {accepted}, refused {refused}"
    );
}

/// Files the test list does not run still must not upset the validator.
#[test]
fn every_corpus_body_is_judged_without_panicking() {
    let mut files = Vec::new();
    json_files(&corpus_dir(), &mut files);
    assert!(files.len() > 500, "only {} corpus files", files.len());
    let mut judged = 0;
    for path in files {
        let Ok(Value::Array(items)) =
            serde_json::from_str::<Value>(&fs::read_to_string(&path).unwrap())
        else {
            continue; // A few upstream inputs are not valid JSON.
        };
        for exchange in items
            .iter()
            .flat_map(|item| item["type-metadata"].as_array().into_iter().flatten())
        {
            if let Some(body) = exchange.get("RequestBody") {
                for kind in known_kinds() {
                    let _ = validate(kind, body);
                }
                judged += 1;
            }
        }
    }
    assert!(judged > 250, "only {judged} bodies");
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn urls_map_to_kinds() {
    assert_eq!(
        kind_of("cluster-providers/p/clusters/c/labels", true),
        Some("clusterLabel")
    );
    assert_eq!(
        kind_of("cluster-providers/p/clusters/c/kv-pairs/kv", false),
        Some("clusterKv")
    );
    assert_eq!(
        kind_of("projects/p/logical-clouds/lc/kv-pairs", true),
        Some("logicalCloudKv")
    );
    assert_eq!(
        kind_of("projects/p/composite-apps/ca/v1", false),
        Some("compositeApp")
    );
    assert_eq!(
        kind_of("projects/p/composite-apps/ca/v1/apps/a", false),
        Some("app")
    );
    assert_eq!(
        kind_of("cluster-providers/p/clusters/c/kv-pair", true),
        None
    );
}
