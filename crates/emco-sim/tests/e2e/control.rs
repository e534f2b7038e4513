//! The `/sim` control API: listing, adding and removing clusters at run time.

use crate::common;

use std::time::Duration;

use common::Harness;
use serde_json::{Value, json};

#[tokio::test]
async fn clusters_are_listed_added_and_removed() {
    let harness = Harness::start(3).await;
    let base = harness.running.url.clone();
    let (code, listed) = harness
        .http("GET", &format!("{base}/sim/clusters"), "", None)
        .await;
    assert_eq!(code, 200);
    let names: Vec<&str> = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["edge-1", "edge-2", "edge-3"]);
    assert_eq!(
        listed["clusters"][0]["server"],
        format!("{base}/clusters/edge-1")
    );
    let kubeconfig = harness.kubeconfig("edge-1");
    assert_eq!(listed["clusters"][0]["kubeconfig"], json!(kubeconfig));
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains(&format!("server: {base}/clusters/edge-1\n")),
        "{text}"
    );

    let (code, added) = harness
        .http(
            "POST",
            &format!("{base}/sim/clusters"),
            "application/json",
            Some(json!({"name": "edge-99"})),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(added["server"], format!("{base}/clusters/edge-99"));
    assert!(harness.kubeconfig("edge-99").exists());
    let (code, namespaces) = harness
        .http(
            "GET",
            &harness.url("edge-99", "/api/v1/namespaces"),
            "",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(namespaces["items"].as_array().unwrap().len(), 4);

    let (code, error) = harness
        .http(
            "POST",
            &format!("{base}/sim/clusters"),
            "application/json",
            Some(json!({"name": "edge-99"})),
        )
        .await;
    assert_eq!(code, 409);
    assert!(error["error"].as_str().unwrap().contains("already exists"));
    let (code, _) = harness
        .http(
            "POST",
            &format!("{base}/sim/clusters"),
            "application/json",
            Some(json!({"name": "Not_Valid"})),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = harness
        .http(
            "POST",
            &format!("{base}/sim/clusters"),
            "application/json",
            Some(json!({"nom": "x"})),
        )
        .await;
    assert_eq!(code, 400);

    let (code, shown) = harness
        .http("GET", &format!("{base}/sim/clusters/edge-99"), "", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(shown["objects"], 5, "4 namespaces and a node");
    let (_, untouched) = harness
        .http("GET", &format!("{base}/sim/clusters/edge-2"), "", None)
        .await;
    assert_eq!(untouched["objects"], 0);

    let (code, _) = harness
        .http("DELETE", &format!("{base}/sim/clusters/edge-99"), "", None)
        .await;
    assert_eq!(code, 204);
    assert!(!harness.kubeconfig("edge-99").exists());
    let (code, _) = harness
        .http("DELETE", &format!("{base}/sim/clusters/edge-99"), "", None)
        .await;
    assert_eq!(code, 404);
    let (code, status) = harness
        .http(
            "GET",
            &harness.url("edge-99", "/api/v1/namespaces"),
            "",
            None,
        )
        .await;
    assert_eq!((code, status["kind"].as_str()), (404, Some("Status")));
    let (code, _) = harness
        .http("GET", &format!("{base}/sim/healthz"), "", None)
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn removing_a_cluster_ends_its_watches() {
    let harness = Harness::start(1).await;
    let mut response = reqwest::get(harness.url("edge-1", "/api/v1/namespaces?watch=1"))
        .await
        .unwrap();
    // The four built-in namespaces arrive first.
    let mut received = Vec::new();
    while received.iter().filter(|byte| **byte == b'\n').count() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        received.extend_from_slice(&chunk);
    }
    let first: Value =
        serde_json::from_slice(received.split(|byte| *byte == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    harness.sim().remove_cluster("edge-1").unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "the watch ends with its cluster");
}

#[tokio::test]
async fn write_requests_are_counted_per_cluster_and_in_total() {
    let harness = Harness::start(2).await;
    let base = harness.running.url.clone();
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "counted", "namespace": "default"},
    });
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, _) = harness
        .http(
            "POST",
            &harness.url("edge-1", path),
            "application/json",
            Some(config_map.clone()),
        )
        .await;
    assert_eq!(code, 201);
    // A refused write counts too: it reached the API.
    let (code, _) = harness
        .http(
            "POST",
            &harness.url("edge-1", path),
            "application/json",
            Some(config_map),
        )
        .await;
    assert_eq!(code, 409);
    let (code, _) = harness
        .http("GET", &harness.url("edge-1", path), "", None)
        .await;
    assert_eq!(code, 200, "reads are not counted");
    let (_, edge1) = harness
        .http("GET", &format!("{base}/sim/clusters/edge-1"), "", None)
        .await;
    assert_eq!(edge1["writes"], 2);
    let (_, edge2) = harness
        .http("GET", &format!("{base}/sim/clusters/edge-2"), "", None)
        .await;
    assert_eq!(edge2["writes"], 0);
    let (code, stats) = harness
        .http("GET", &format!("{base}/sim/stats"), "", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(stats, json!({"clusters": 2, "writes": 2}));
}
