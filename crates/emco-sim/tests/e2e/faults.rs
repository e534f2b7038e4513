//! Fault injection through the `/sim` control API: unreachable clusters (refused and hanging),
//! latency, error rates, never-ready workloads, restarts with and without state loss, and
//! faults on sets of clusters; with raw HTTP and the real `kubectl`.

use crate::common;

use std::time::{Duration, Instant};

use common::{Harness, stderr};
use serde_json::{Value, json};

async fn set_faults(harness: &Harness, cluster: &str, plan: Value) {
    let url = format!("{}/sim/clusters/{cluster}/faults", harness.running.url);
    let (code, answer) = harness
        .http("PUT", &url, "application/json", Some(plan.clone()))
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["name"], cluster);
    // The answer shows the plan with its defaults filled in.
    for (field, value) in plan.as_object().unwrap() {
        if !value.is_object() {
            assert_eq!(&answer["faults"][field], value, "{answer}");
        }
    }
}

async fn clear_faults(harness: &Harness, cluster: &str) {
    let url = format!("{}/sim/clusters/{cluster}/faults", harness.running.url);
    let (code, _) = harness.http("DELETE", &url, "", None).await;
    assert_eq!(code, 204);
}

/// A GET of `/api/v1/namespaces` in `cluster` with a client-side timeout.
async fn get_namespaces(
    harness: &Harness,
    cluster: &str,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
        .get(harness.url(cluster, "/api/v1/namespaces"))
        .send()
        .await
}

async fn status_of(harness: &Harness, cluster: &str) -> u16 {
    get_namespaces(harness, cluster, Duration::from_secs(5))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn refused_clusters_drop_connections_until_cleared() {
    let harness = Harness::start(2).await;
    harness.kubectl_ok("edge-1", &["get", "ns"]).await; // warms kubectl's discovery cache
    let watch = reqwest::get(harness.url("edge-1", "/api/v1/configmaps?watch=1"))
        .await
        .unwrap();
    set_faults(&harness, "edge-1", json!({"unreachable": "refuse"})).await;

    // Setting the fault ended the open watch, as a crashed server would.
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.bytes()).await;
    assert!(ended.is_ok(), "the watch stayed open");

    let error = get_namespaces(&harness, "edge-1", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(!error.is_timeout() && error.is_request(), "{error:?}");
    assert!(
        format!("{error:?}").contains("ConnectionReset"),
        "{error:?}"
    );
    assert_eq!(status_of(&harness, "edge-2").await, 200);

    // kubectl retries a reset GET until its timeout, then reports the reset.
    let output = harness
        .kubectl("edge-1", &["get", "ns", "--request-timeout=1s"])
        .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("connection reset by peer"),
        "{}",
        stderr(&output)
    );

    clear_faults(&harness, "edge-1").await;
    assert_eq!(status_of(&harness, "edge-1").await, 200);
    let listed = harness.kubectl_ok("edge-1", &["get", "ns"]).await;
    assert!(listed.contains("kube-system"), "{listed}");
}

#[tokio::test]
async fn hanging_clusters_answer_nothing_until_cleared() {
    let harness = Harness::start(2).await;
    harness.kubectl_ok("edge-1", &["get", "ns"]).await;
    set_faults(&harness, "edge-1", json!({"unreachable": "hang"})).await;

    let started = Instant::now();
    let error = get_namespaces(&harness, "edge-1", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status_of(&harness, "edge-2").await, 200);

    let output = harness
        .kubectl("edge-1", &["get", "ns", "--request-timeout=1s"])
        .await;
    assert!(!output.status.success());
    // Depending on where the deadline strikes: "Client.Timeout exceeded while awaiting
    // headers" or "context deadline exceeded".
    let message = stderr(&output);
    assert!(
        message.contains("Unable to connect to the server")
            && (message.contains("Timeout exceeded") || message.contains("deadline exceeded")),
        "{message}"
    );

    // A request held by the hang is answered once the fault is cleared.
    let waiting = {
        let url = harness.url("edge-1", "/api/v1/namespaces");
        tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    clear_faults(&harness, "edge-1").await;
    let code = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200);
    harness.kubectl_ok("edge-1", &["get", "ns"]).await;
}

#[tokio::test]
async fn latency_delays_every_request() {
    let harness = Harness::start(2).await;
    assert_eq!(status_of(&harness, "edge-1").await, 200); // connections and lazy state warm
    set_faults(&harness, "edge-1", json!({"latency": {"ms": 300}})).await;
    let started = Instant::now();
    assert_eq!(status_of(&harness, "edge-1").await, 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let started = Instant::now();
    assert_eq!(status_of(&harness, "edge-2").await, 200);
    assert!(started.elapsed() < Duration::from_millis(300));

    set_faults(
        &harness,
        "edge-1",
        json!({"latency": {"minMs": 100, "maxMs": 200}, "seed": 5}),
    )
    .await;
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(status_of(&harness, "edge-1").await, 200);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
    clear_faults(&harness, "edge-1").await;
    let started = Instant::now();
    assert_eq!(status_of(&harness, "edge-1").await, 200);
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn error_rates_answer_status_objects() {
    let harness = Harness::start(1).await;
    harness.kubectl_ok("edge-1", &["get", "ns"]).await;

    set_faults(&harness, "edge-1", json!({"errors": {"fraction": 1.0}})).await;
    let (code, status) = harness
        .http(
            "GET",
            &harness.url("edge-1", "/api/v1/namespaces"),
            "",
            None,
        )
        .await;
    assert_eq!(code, 500);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(status["code"], 500);
    let output = harness.kubectl("edge-1", &["get", "ns"]).await;
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output).trim(),
        "Error from server (InternalError): Internal error occurred: injected fault"
    );

    set_faults(
        &harness,
        "edge-1",
        json!({"errors": {"fraction": 1.0, "code": 429, "retryAfterSeconds": 3}}),
    )
    .await;
    let response = get_namespaces(&harness, "edge-1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 3);

    // A seeded fraction fails about that share, and the same seed the same requests.
    let outcomes = || async {
        set_faults(
            &harness,
            "edge-1",
            json!({"errors": {"fraction": 0.5, "code": 503}, "seed": 42}),
        )
        .await;
        let mut codes = Vec::new();
        for _ in 0..100 {
            codes.push(status_of(&harness, "edge-1").await);
        }
        codes
    };
    let first = outcomes().await;
    let failed = first.iter().filter(|&&code| code == 503).count();
    assert!((30..=70).contains(&failed), "{failed} of 100 failed");
    assert!(first.iter().all(|&code| code == 200 || code == 503));
    assert_eq!(outcomes().await, first);

    clear_faults(&harness, "edge-1").await;
    harness.kubectl_ok("edge-1", &["get", "ns"]).await;
}

#[tokio::test]
async fn never_ready_is_part_of_the_plan() {
    let harness = Harness::start(1).await;
    set_faults(&harness, "edge-1", json!({"neverReady": true})).await;
    let cluster = harness.sim().cluster("edge-1").unwrap();
    assert!(cluster.faults.current().unwrap().never_ready);
    // The API itself keeps answering.
    assert_eq!(status_of(&harness, "edge-1").await, 200);
    let url = format!("{}/sim/clusters/edge-1/faults", harness.running.url);
    let (_, shown) = harness.http("GET", &url, "", None).await;
    assert_eq!(
        shown,
        json!({"name": "edge-1", "faults": {"neverReady": true}})
    );
    clear_faults(&harness, "edge-1").await;
    assert!(cluster.faults.current().is_none());
    let (_, shown) = harness.http("GET", &url, "", None).await;
    assert_eq!(shown, json!({"name": "edge-1", "faults": null}));
}

async fn create_configmap(harness: &Harness, cluster: &str, name: &str) -> u64 {
    let (code, created) = harness
        .http(
            "POST",
            &harness.url(cluster, "/api/v1/namespaces/default/configmaps"),
            "application/json",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn configmap_names(harness: &Harness, cluster: &str) -> Vec<String> {
    let (code, list) = harness
        .http(
            "GET",
            &harness.url(cluster, "/api/v1/namespaces/default/configmaps"),
            "",
            None,
        )
        .await;
    assert_eq!(code, 200);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn restart_ends_watches_and_keeps_state() {
    let harness = Harness::start(2).await;
    let resource_version = create_configmap(&harness, "edge-1", "kept").await;
    let mut watch =
        reqwest::get(harness.url("edge-1", "/api/v1/namespaces/default/configmaps?watch=1"))
            .await
            .unwrap();
    let other = reqwest::get(harness.url("edge-2", "/api/v1/configmaps?watch=1"))
        .await
        .unwrap();
    let first = watch.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"ADDED\""));

    let url = format!("{}/sim/clusters/edge-1/restart", harness.running.url);
    let (code, _) = harness.http("POST", &url, "", None).await;
    assert_eq!(code, 204);
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rest = Vec::new();
        while let Some(chunk) = watch.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await
    .expect("the watch ended");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

    // Only edge-1 restarted: edge-2's watch is still open.
    let still_open = tokio::time::timeout(Duration::from_millis(200), other.bytes()).await;
    assert!(still_open.is_err());

    // State survived, and a watch resumes from the last resourceVersion.
    assert_eq!(configmap_names(&harness, "edge-1").await, vec!["kept"]);
    let mut resumed = reqwest::get(harness.url(
        "edge-1",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={resource_version}"
        ),
    ))
    .await
    .unwrap();
    assert_eq!(resumed.status().as_u16(), 200);
    create_configmap(&harness, "edge-1", "after").await;
    let event = resumed.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&event).contains("\"after\""));
}

#[tokio::test]
async fn restart_losing_state_empties_the_cluster() {
    let harness = Harness::start(2).await;
    let old_version = create_configmap(&harness, "edge-1", "lost").await;
    create_configmap(&harness, "edge-2", "kept").await;
    let base = harness.running.url.clone();
    let (code, _) = harness
        .http(
            "POST",
            &format!("{base}/sim/clusters/edge-1/restart"),
            "application/json",
            Some(json!({"loseState": true})),
        )
        .await;
    assert_eq!(code, 204);

    assert!(configmap_names(&harness, "edge-1").await.is_empty());
    assert_eq!(configmap_names(&harness, "edge-2").await, vec!["kept"]);
    let namespaces = harness
        .kubectl_ok("edge-1", &["get", "ns", "-o", "name"])
        .await;
    assert_eq!(
        namespaces.lines().collect::<Vec<_>>(),
        vec![
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system"
        ]
    );
    // The history starts over above the old resourceVersions: old ones are expired.
    let new_version = create_configmap(&harness, "edge-1", "fresh").await;
    assert!(new_version > old_version);
    let stale = reqwest::get(harness.url(
        "edge-1",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_version}"),
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let event: Value = serde_json::from_str(stale.trim()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);

    // Bulk restarts answer the names they hit.
    let (code, answer) = harness
        .http(
            "POST",
            &format!("{base}/sim/restart"),
            "application/json",
            Some(json!({"clusters": {"names": ["edge-2"]}, "loseState": true})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(answer, json!({"clusters": ["edge-2"]}));
    assert!(configmap_names(&harness, "edge-2").await.is_empty());
    assert_eq!(configmap_names(&harness, "edge-1").await, vec!["fresh"]);
}

#[tokio::test]
async fn selectors_fault_only_the_chosen_clusters() {
    let harness = Harness::start(3).await;
    harness.sim().add_cluster("core-1").unwrap();
    let base = harness.running.url.clone();
    let failing = json!({"errors": {"fraction": 1.0, "code": 500, "retryAfterSeconds": 1}});
    let harness = &harness;
    let put = |selector: Value| {
        let body = json!({"clusters": selector, "faults": failing.clone()});
        let url = format!("{base}/sim/faults");
        async move {
            harness
                .http("PUT", &url, "application/json", Some(body))
                .await
        }
    };
    let codes = || async {
        let mut codes = Vec::new();
        for cluster in ["edge-1", "edge-2", "edge-3", "core-1"] {
            codes.push(status_of(harness, cluster).await);
        }
        codes
    };

    let (code, answer) = put(json!({"prefix": "edge-"})).await;
    assert_eq!(code, 200);
    assert_eq!(answer, json!({"clusters": ["edge-1", "edge-2", "edge-3"]}));
    assert_eq!(codes().await, vec![500, 500, 500, 200]);
    let (_, listed) = harness
        .http("GET", &format!("{base}/sim/faults"), "", None)
        .await;
    assert_eq!(listed["clusters"].as_array().unwrap().len(), 3);
    assert_eq!(
        listed["clusters"][0],
        json!({"name": "edge-1", "faults": failing})
    );

    // Clearing a subset, then everything.
    let (code, answer) = harness
        .http(
            "DELETE",
            &format!("{base}/sim/faults"),
            "application/json",
            Some(json!({"clusters": {"names": ["edge-2"]}})),
        )
        .await;
    assert_eq!((code, answer), (200, json!({"clusters": ["edge-2"]})));
    assert_eq!(codes().await, vec![500, 200, 500, 200]);
    let (code, _) = harness
        .http("DELETE", &format!("{base}/sim/faults"), "", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(codes().await, vec![200, 200, 200, 200]);

    let (code, answer) = put(json!({"names": ["edge-3", "core-1"]})).await;
    assert_eq!(
        (code, answer),
        (200, json!({"clusters": ["edge-3", "core-1"]}))
    );
    assert_eq!(codes().await, vec![200, 200, 500, 500]);
    let (code, _) = put(json!({"all": true})).await;
    assert_eq!(code, 200);
    assert_eq!(codes().await, vec![500, 500, 500, 500]);
    harness
        .http("DELETE", &format!("{base}/sim/faults"), "", None)
        .await;

    // Nothing changes when a named cluster is missing or the request makes no sense.
    let (code, answer) = put(json!({"names": ["edge-1", "edge-9"]})).await;
    assert_eq!(code, 404, "{answer}");
    let (code, _) = put(json!({"prefix": "edge-", "all": true})).await;
    assert_eq!(code, 422);
    let (code, _) = harness
        .http(
            "PUT",
            &format!("{base}/sim/clusters/edge-1/faults"),
            "application/json",
            Some(json!({"errors": {"fraction": 2.0}})),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = harness
        .http(
            "PUT",
            &format!("{base}/sim/clusters/edge-9/faults"),
            "application/json",
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(codes().await, vec![200, 200, 200, 200]);
}
