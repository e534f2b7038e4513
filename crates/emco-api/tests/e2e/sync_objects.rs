//! Cluster sync objects' secrets: sealed at rest, never answered in clear (in process).

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::Hub;
use emco_core::key::ResourceKey;
use emco_store::seal::{REDACTED, Sealer, open_kv};
use serde_json::{Value, json};

const OBJECTS: &str = "/v2/cluster-providers/prov/cluster-sync-objects";
const OBJECT: &str = "/v2/cluster-providers/prov/cluster-sync-objects/so";
const TOKEN: &str = "ghp_s3cr3tT0kenValue";
const URL: &str = "https://git.example/org/repo";

fn sync_object(token: &str) -> Value {
    json!({"metadata": {"name": "so"}, "spec": {"kv": [
        {"userName": "u"}, {"gitToken": token}, {"repoName": "r"},
        {"branch": "main"}, {"url": URL}
    ]}})
}

fn key() -> ResourceKey {
    ResourceKey::new(
        "clusterSyncObject",
        vec![
            ("clusterProvider".into(), "prov".into()),
            ("clusterSyncObject".into(), "so".into()),
        ],
    )
}

async fn sealed_hub() -> (Hub, Arc<Sealer>) {
    let sealer = Arc::new(Sealer::new(&[42; 32]).unwrap());
    let hub = Hub::with_state(emco_api::DEFAULT_MAX_BODY, {
        let sealer = sealer.clone();
        move |state| state.with_sealer(sealer)
    })
    .await;
    hub.ok(
        "POST",
        "/v2/cluster-providers",
        Some(json!({"metadata": {"name": "prov"}})),
    )
    .await;
    (hub, sealer)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Every byte the store holds, keys and values.
async fn everything_stored(hub: &Hub) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in hub.repo.store().list("").await.unwrap() {
        out.extend_from_slice(entry.key.as_bytes());
        out.extend_from_slice(&entry.value);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// What the store opens the stored token to.
async fn stored_token(hub: &Hub, sealer: &Sealer) -> String {
    let stored = hub.repo.get(&key()).await.unwrap();
    let pairs = open_kv(sealer, "prov", "so", &stored.data).unwrap();
    pairs
        .into_iter()
        .find(|(k, _)| k == "gitToken")
        .map(|(_, v)| v)
        .unwrap()
}

#[tokio::test]
async fn git_tokens_are_sealed_at_rest_and_redacted_in_every_answer() {
    let (hub, sealer) = sealed_hub().await;
    let (status, text) = hub.call("POST", OBJECTS, Some(sync_object(TOKEN))).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(json_of(&text)["spec"]["kv"][1]["gitToken"], REDACTED);

    // Nothing the store holds, nor the store's files, carries the token.
    let raw = hub.repo.get(&key()).await.unwrap().data;
    let sealed = raw["spec"]["kv"][1]["gitToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sealed.starts_with("sealed:"), "{sealed}");
    assert_eq!(raw["spec"]["kv"][4]["url"], URL);
    let stored = everything_stored(&hub).await;
    assert!(contains(&stored, URL), "the scan sees the document");
    assert!(!contains(&stored, TOKEN));
    for file in std::fs::read_dir(hub.data_dir()).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            assert!(!contains(&std::fs::read(&path).unwrap(), TOKEN), "{path:?}");
        }
    }
    assert_eq!(stored_token(&hub, &sealer).await, TOKEN);

    // GET, list and the key query all redact.
    let one = hub.ok("GET", OBJECT, None).await;
    assert!(!one.contains(TOKEN) && !one.contains("sealed:"), "{one}");
    let one = json_of(&one);
    assert_eq!(one["spec"]["kv"][1]["gitToken"], REDACTED);
    assert_eq!(one["spec"]["kv"][0]["userName"], "u");
    let list = hub.ok("GET", OBJECTS, None).await;
    assert!(!list.contains(TOKEN) && !list.contains("sealed:"), "{list}");
    assert_eq!(json_of(&list)[0]["spec"]["kv"][1]["gitToken"], REDACTED);
    let value = hub.ok("GET", &format!("{OBJECT}?key=gitToken"), None).await;
    assert_eq!(json_of(&value), json!({"value": REDACTED}));
    let value = hub.ok("GET", &format!("{OBJECT}?key=url"), None).await;
    assert_eq!(json_of(&value), json!({"value": URL}));
    let (status, text) = hub
        .call("GET", &format!("{OBJECT}?key=nothing"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        text.contains("Cluster Sync Object key value not found"),
        "{text}"
    );

    // PUT back what GET showed keeps the secret (the very sealed value).
    let (status, text) = hub.call("PUT", OBJECT, Some(one.clone())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json_of(&text)["spec"]["kv"][1]["gitToken"], REDACTED);
    let raw = hub.repo.get(&key()).await.unwrap().data;
    assert_eq!(raw["spec"]["kv"][1]["gitToken"], sealed.as_str());
    assert_eq!(stored_token(&hub, &sealer).await, TOKEN);

    // A new token replaces it, sealed.
    let (status, text) = hub
        .call("PUT", OBJECT, Some(sync_object("ghp_newT0ken")))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains("ghp_newT0ken"), "{text}");
    assert_eq!(stored_token(&hub, &sealer).await, "ghp_newT0ken");
    assert!(!contains(&everything_stored(&hub).await, "ghp_newT0ken"));
}

#[tokio::test]
async fn redacted_secrets_need_a_stored_one() {
    let (hub, _) = sealed_hub().await;
    let (status, text) = hub.call("POST", OBJECTS, Some(sync_object(REDACTED))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("gitToken"), "{text}");
    // PUT creating one is refused the same way, and nothing is stored.
    let (status, text) = hub.call("PUT", OBJECT, Some(sync_object(REDACTED))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(hub.call("GET", OBJECT, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn gitops_clusters_refer_to_sync_objects_as_before() {
    let (hub, sealer) = sealed_hub().await;
    hub.ok("POST", OBJECTS, Some(sync_object(TOKEN))).await;
    let cluster = json!({"metadata": {"name": "c1"}, "spec": {"gitOps": {
        "gitOpsType": "fluxcd", "gitOpsReferenceObject": "so", "gitOpsResourceObject": "so"
    }}});
    let reply = hub
        .multipart(
            "POST",
            "/v2/cluster-providers/prov/clusters",
            &cluster,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let got = json_of(
        &hub.ok("GET", "/v2/cluster-providers/prov/clusters/c1", None)
            .await,
    );
    assert_eq!(got["spec"]["gitOps"]["gitOpsReferenceObject"], "so");
    // The object the cluster names gives its credentials to the hub, in clear.
    let stored = hub.repo.get(&key()).await.unwrap().data;
    let pairs = open_kv(&sealer, "prov", "so", &stored).unwrap();
    assert_eq!(pairs[1], ("gitToken".to_owned(), TOKEN.to_owned()));
    assert_eq!(pairs[4], ("url".to_owned(), URL.to_owned()));
}

#[tokio::test]
async fn without_a_sealer_secrets_are_stored_as_given_and_still_redacted() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    hub.ok(
        "POST",
        "/v2/cluster-providers",
        Some(json!({"metadata": {"name": "prov"}})),
    )
    .await;
    let created = hub.ok("POST", OBJECTS, Some(sync_object(TOKEN))).await;
    assert!(!created.contains(TOKEN), "{created}");
    let raw = hub.repo.get(&key()).await.unwrap().data;
    assert_eq!(raw["spec"]["kv"][1]["gitToken"], TOKEN);
    let one = hub.ok("GET", OBJECT, None).await;
    assert!(!one.contains(TOKEN), "{one}");
    let list = hub.ok("GET", OBJECTS, None).await;
    assert!(!list.contains(TOKEN), "{list}");
    let value = hub.ok("GET", &format!("{OBJECT}?key=gitToken"), None).await;
    assert_eq!(json_of(&value), json!({"value": REDACTED}));
    // Sent back as shown, the stored value stays.
    hub.ok("PUT", OBJECT, Some(json_of(&one))).await;
    let raw = hub.repo.get(&key()).await.unwrap().data;
    assert_eq!(raw["spec"]["kv"][1]["gitToken"], TOKEN);
}
