//! The Kubernetes API semantics over raw HTTP: concurrency, subresources, watches, selectors,
//! errors and discovery.

use crate::common;

use std::time::Duration;

use common::Harness;
use serde_json::{Value, json};

const JSON: &str = "application/json";

fn deployment(name: &str, replicas: u64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    })
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// Reads watch events (one JSON document per line) from a streaming response.
struct WatchReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchReader {
    async fn open(url: &str) -> Self {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ends (or nothing comes within 5 seconds).
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(position) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=position).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            match tokio::time::timeout(Duration::from_secs(5), self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// (type, object name) of the next event.
    async fn next_summary(&mut self) -> Option<(String, String)> {
        let event = self.next().await?;
        Some((
            event["type"].as_str().unwrap().to_owned(),
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

fn summary(kind: &str, name: &str) -> Option<(String, String)> {
    Some((kind.to_owned(), name.to_owned()))
}

#[tokio::test]
async fn optimistic_concurrency_status_subresource_and_generation() {
    let harness = Harness::start(1).await;
    let collection = harness.url("edge-1", "/apis/apps/v1/namespaces/default/deployments");
    let (code, created) = harness
        .http("POST", &collection, JSON, Some(deployment("web", 1)))
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["status"], json!({}));
    let item = format!("{collection}/web");

    // A stale resourceVersion is a conflict.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["spec"]["replicas"] = json!(2);
    let (code, status) = harness.http("PUT", &item, JSON, Some(stale)).await;
    assert_eq!(code, 409);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        r#"Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again"#
    );

    // The main resource ignores status; a spec change bumps the generation.
    let mut update = created.clone();
    update["spec"]["replicas"] = json!(3);
    update["status"] = json!({"replicas": 99});
    let (code, updated) = harness.http("PUT", &item, JSON, Some(update)).await;
    assert_eq!(code, 200);
    assert_eq!(updated["spec"]["replicas"], 3);
    assert_eq!(updated["status"], json!({}));
    assert_eq!(updated["metadata"]["generation"], 2);
    let before: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after: u64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > before);

    // /status changes only status, and not the generation.
    let mut status_update = updated.clone();
    status_update["status"] = json!({"replicas": 3, "readyReplicas": 3});
    status_update["spec"]["replicas"] = json!(7);
    let (code, with_status) = harness
        .http("PUT", &format!("{item}/status"), JSON, Some(status_update))
        .await;
    assert_eq!(code, 200);
    assert_eq!(with_status["status"]["readyReplicas"], 3);
    assert_eq!(with_status["spec"]["replicas"], 3);
    assert_eq!(with_status["metadata"]["generation"], 2);

    // Merge patch of /status; the scale subresource reads and writes spec.replicas.
    let (code, patched) = harness
        .http(
            "PATCH",
            &format!("{item}/status"),
            "application/merge-patch+json",
            Some(json!({"status": {"availableReplicas": 3}})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(patched["status"]["availableReplicas"], 3);
    let (code, scale) = harness
        .http("GET", &format!("{item}/scale"), JSON, None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, scaled) = harness
        .http(
            "PATCH",
            &format!("{item}/scale"),
            "application/merge-patch+json",
            Some(json!({"spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!((code, &scaled["spec"]["replicas"]), (200, &json!(5)));
    let (_, current) = harness.http("GET", &item, JSON, None).await;
    assert_eq!(current["spec"]["replicas"], 5);
    assert_eq!(current["metadata"]["generation"], 3);

    // An unchanged write stores nothing new.
    let (_, again) = harness
        .http("PUT", &item, JSON, Some(current.clone()))
        .await;
    assert_eq!(
        again["metadata"]["resourceVersion"],
        current["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_expires_old_ones() {
    let harness = Harness::start_with(1, |options| options.watch_history = 8).await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/default/configmaps");
    let (_, list) = harness.http("GET", &collection, JSON, None).await;
    let listed_at = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    harness
        .http("POST", &collection, JSON, Some(configmap("a")))
        .await;
    harness
        .http("POST", &collection, JSON, Some(configmap("b")))
        .await;
    harness
        .http(
            "PATCH",
            &format!("{collection}/a"),
            "application/merge-patch+json",
            Some(json!({"data": {"k": "w"}})),
        )
        .await;
    harness
        .http("DELETE", &format!("{collection}/b"), JSON, None)
        .await;

    // From the list's resourceVersion: exactly the changes since, in order.
    let mut watch =
        WatchReader::open(&format!("{collection}?watch=1&resourceVersion={listed_at}")).await;
    assert_eq!(watch.next_summary().await, summary("ADDED", "a"));
    assert_eq!(watch.next_summary().await, summary("ADDED", "b"));
    assert_eq!(watch.next_summary().await, summary("MODIFIED", "a"));
    assert_eq!(watch.next_summary().await, summary("DELETED", "b"));
    // Then live.
    harness
        .http("POST", &collection, JSON, Some(configmap("c")))
        .await;
    assert_eq!(watch.next_summary().await, summary("ADDED", "c"));

    // From "0": the current objects as ADDED.
    let mut from_zero =
        WatchReader::open(&format!("{collection}?watch=true&resourceVersion=0")).await;
    assert_eq!(from_zero.next_summary().await, summary("ADDED", "a"));
    assert_eq!(from_zero.next_summary().await, summary("ADDED", "c"));

    // Push the early events out of the 8-event history: resuming there is 410 Expired.
    for index in 0..10 {
        harness
            .http(
                "POST",
                &collection,
                JSON,
                Some(configmap(&format!("filler-{index}"))),
            )
            .await;
    }
    let mut expired =
        WatchReader::open(&format!("{collection}?watch=1&resourceVersion={listed_at}")).await;
    let error = expired.next().await.unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(
        expired.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn watch_selectors_bookmarks_and_timeouts() {
    let harness = Harness::start_with(1, |options| {
        options.bookmark_interval = Duration::from_millis(200)
    })
    .await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/default/configmaps");
    let mut watch = WatchReader::open(&format!(
        "{collection}?watch=1&labelSelector=app%3Dweb&allowWatchBookmarks=true&timeoutSeconds=3"
    ))
    .await;
    harness
        .http("POST", &collection, JSON, Some(configmap("plain")))
        .await;
    harness
        .http(
            "PATCH",
            &format!("{collection}/plain"),
            "application/merge-patch+json",
            Some(json!({"metadata": {"labels": {"app": "web"}}})),
        )
        .await;
    let mut seen: Vec<String> = Vec::new();
    let mut unlabelled = false;
    while let Some(event) = watch.next().await {
        let kind = event["type"].as_str().unwrap().to_owned();
        if kind == "BOOKMARK" {
            assert!(
                event["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .is_ok()
            );
            // After the first bookmark, unlabel: the object leaves the selection.
            if !unlabelled && seen == ["ADDED plain"] {
                seen.push(kind);
                unlabelled = true;
                harness
                    .http(
                        "PATCH",
                        &format!("{collection}/plain"),
                        "application/merge-patch+json",
                        Some(json!({"metadata": {"labels": null}})),
                    )
                    .await;
            }
            continue;
        }
        seen.push(format!(
            "{kind} {}",
            event["object"]["metadata"]["name"].as_str().unwrap()
        ));
    }
    // Labelling brought the object into the selection (ADDED), unlabelling took it out
    // (DELETED); the creation of the unlabelled object was never seen; the stream ended at
    // the timeout.
    assert_eq!(seen, vec!["ADDED plain", "BOOKMARK", "DELETED plain"]);
}

#[tokio::test]
async fn selectors_limits_and_generate_name() {
    let harness = Harness::start(1).await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/default/configmaps");
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front"), ("d", "")] {
        let mut object = configmap(name);
        if !tier.is_empty() {
            object["metadata"]["labels"] = json!({"tier": tier});
        }
        harness.http("POST", &collection, JSON, Some(object)).await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let query = |selector: &str| {
        format!(
            "{collection}?labelSelector={}",
            selector
                .replace(' ', "%20")
                .replace('=', "%3D")
                .replace('!', "%21")
        )
    };
    let (_, list) = harness.http("GET", &query("tier=front"), JSON, None).await;
    assert_eq!(names(&list), vec!["a", "c"]);
    assert_eq!(list["kind"], "ConfigMapList");
    let (_, list) = harness
        .http("GET", &query("tier notin (front)"), JSON, None)
        .await;
    assert_eq!(names(&list), vec!["b", "d"]);
    let (_, list) = harness.http("GET", &query("!tier"), JSON, None).await;
    assert_eq!(names(&list), vec!["d"]);
    let (_, list) = harness
        .http(
            "GET",
            &format!("{collection}?fieldSelector=metadata.name%21%3Db"),
            JSON,
            None,
        )
        .await;
    assert_eq!(names(&list), vec!["a", "c", "d"]);
    let (code, _) = harness
        .http("GET", &query("tier in front"), JSON, None)
        .await;
    assert_eq!(code, 400);

    // Pages of two, then the rest.
    let (_, first) = harness
        .http("GET", &format!("{collection}?limit=2"), JSON, None)
        .await;
    assert_eq!(names(&first), vec!["a", "b"]);
    let token = first["metadata"]["continue"].as_str().unwrap();
    assert_eq!(first["metadata"]["remainingItemCount"], 2);
    let (_, second) = harness
        .http(
            "GET",
            &format!("{collection}?limit=2&continue={token}"),
            JSON,
            None,
        )
        .await;
    assert_eq!(names(&second), vec!["c", "d"]);
    assert!(second["metadata"].get("continue").is_none());

    // All namespaces.
    let (_, all) = harness
        .http(
            "GET",
            &harness.url("edge-1", "/api/v1/configmaps"),
            JSON,
            None,
        )
        .await;
    assert_eq!(names(&all).len(), 4);

    let (code, generated) = harness
        .http(
            "POST",
            &collection,
            JSON,
            Some(json!({"metadata": {"generateName": "job-"}})),
        )
        .await;
    assert_eq!(code, 201);
    let name = generated["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn errors_are_status_objects_with_the_right_codes() {
    let harness = Harness::start(1).await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/default/configmaps");
    let (code, status) = harness
        .http("GET", &format!("{collection}/nope"), JSON, None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "configmaps \"nope\" not found", "reason": "NotFound",
               "details": {"name": "nope", "kind": "configmaps"}, "code": 404})
    );
    let (code, status) = harness
        .http("POST", &collection, JSON, Some(json!({"metadata": {}})))
        .await;
    assert_eq!(code, 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueRequired"
    );
    let mut elsewhere = configmap("x");
    elsewhere["metadata"]["namespace"] = json!("kube-system");
    let (code, status) = harness
        .http("POST", &collection, JSON, Some(elsewhere))
        .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    harness
        .http("POST", &collection, JSON, Some(configmap("x")))
        .await;
    let (code, status) = harness
        .http("POST", &collection, JSON, Some(configmap("x")))
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let (code, status) = harness
        .http("PUT", &collection, JSON, Some(configmap("x")))
        .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, _) = harness
        .http(
            "PATCH",
            &format!("{collection}/x"),
            "text/plain",
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 415);
    let (code, _) = harness
        .http(
            "GET",
            &harness.url("edge-1", "/apis/nope.io/v1/things"),
            JSON,
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (code, status) = harness
        .http(
            "POST",
            &harness.url("edge-1", "/api/v1/namespaces/ghost/configmaps"),
            JSON,
            Some(configmap("y")),
        )
        .await;
    assert_eq!(
        (code, status["message"].as_str()),
        (404, Some("namespaces \"ghost\" not found"))
    );
    let (code, status) = harness
        .http(
            "POST",
            &harness.url("edge-1", "/api/v1/namespaces"),
            JSON,
            Some(json!({"metadata": {"name": "has.dot"}})),
        )
        .await;
    assert_eq!(code, 422, "{status}");

    // Unknown fields: warned about by default (and dropped), refused under Strict.
    let mut extra = configmap("extra");
    extra["surprise"] = json!(true);
    let response = reqwest::Client::new()
        .post(&collection)
        .header("content-type", JSON)
        .body(extra.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response.headers()["warning"],
        r#"299 - "unknown field \"surprise\"""#
    );
    let stored: Value = response.json().await.unwrap();
    assert!(stored.get("surprise").is_none());
    extra["metadata"]["name"] = json!("strict");
    let (code, status) = harness
        .http(
            "POST",
            &format!("{collection}?fieldValidation=Strict"),
            JSON,
            Some(extra),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "surprise""#
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_namespaces_wait_for_them() {
    let harness = Harness::start(1).await;
    let namespaces = harness.url("edge-1", "/api/v1/namespaces");
    harness
        .http(
            "POST",
            &namespaces,
            JSON,
            Some(json!({"metadata": {"name": "team"}})),
        )
        .await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/team/configmaps");
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    harness.http("POST", &collection, JSON, Some(held)).await;
    harness
        .http("POST", &collection, JSON, Some(configmap("free")))
        .await;

    let (code, namespace) = harness
        .http("DELETE", &format!("{namespaces}/team"), JSON, None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(namespace["status"]["phase"], "Terminating");
    let (code, _) = harness
        .http("GET", &format!("{collection}/free"), JSON, None)
        .await;
    assert_eq!(code, 404, "objects without finalizers go at once");
    let (_, terminating) = harness
        .http("GET", &format!("{collection}/held"), JSON, None)
        .await;
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    let (code, status) = harness
        .http("POST", &collection, JSON, Some(configmap("late")))
        .await;
    assert_eq!((code, status["reason"].as_str()), (403, Some("Forbidden")));

    // Removing the last finalizer completes the deletion, and the empty namespace goes too.
    let (code, _) = harness
        .http(
            "PATCH",
            &format!("{collection}/held"),
            "application/merge-patch+json",
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = harness
        .http("GET", &format!("{collection}/held"), JSON, None)
        .await;
    assert_eq!(code, 404);
    let (code, _) = harness
        .http("GET", &format!("{namespaces}/team"), JSON, None)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn owner_references_cascade_unless_orphaned() {
    let harness = Harness::start(1).await;
    let collection = harness.url("edge-1", "/api/v1/namespaces/default/configmaps");
    let (_, owner) = harness
        .http("POST", &collection, JSON, Some(configmap("owner")))
        .await;
    for name in ["child-1", "child-2"] {
        let mut child = configmap(name);
        child["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
        harness.http("POST", &collection, JSON, Some(child)).await;
    }
    harness
        .http(
            "DELETE",
            &format!("{collection}/child-2?propagationPolicy=Orphan"),
            JSON,
            None,
        )
        .await;
    harness
        .http(
            "DELETE",
            &format!("{collection}/owner"),
            JSON,
            Some(json!({"propagationPolicy": "Background"})),
        )
        .await;
    let (_, list) = harness.http("GET", &collection, JSON, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn discovery_and_openapi_documents() {
    let harness = Harness::start(1).await;
    let client = reqwest::Client::new();
    let aggregated = client
        .get(harness.url("edge-1", "/apis"))
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        aggregated.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let aggregated: Value = aggregated.json().await.unwrap();
    let apps = aggregated["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["metadata"]["name"] == "apps")
        .unwrap();
    let deployments = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deployments["scope"], "Namespaced");
    assert_eq!(deployments["shortNames"], json!(["deploy"]));

    let (_, legacy) = harness
        .http("GET", &harness.url("edge-1", "/apis"), JSON, None)
        .await;
    assert_eq!(legacy["kind"], "APIGroupList");
    let (_, core) = harness
        .http("GET", &harness.url("edge-1", "/api"), JSON, None)
        .await;
    assert_eq!(core["versions"], json!(["v1"]));
    let (_, resources) = harness
        .http(
            "GET",
            &harness.url("edge-1", "/apis/certificates.k8s.io/v1"),
            JSON,
            None,
        )
        .await;
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "certificatesigningrequests",
            "certificatesigningrequests/status",
            "certificatesigningrequests/approval"
        ]
    );
    let (_, version) = harness
        .http("GET", &harness.url("edge-1", "/version"), JSON, None)
        .await;
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("32"))
    );
    let (_, index) = harness
        .http("GET", &harness.url("edge-1", "/openapi/v3"), JSON, None)
        .await;
    let relative = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    assert!(relative.starts_with("/clusters/edge-1/openapi/v3/apis/apps/v1?hash="));
    let (code, document) = harness
        .http(
            "GET",
            &format!("{}{relative}", harness.running.url),
            JSON,
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert!(
        document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
            .is_object()
    );
}

#[tokio::test]
async fn csr_approval_subresource_and_tables() {
    let harness = Harness::start(1).await;
    let collection = harness.url(
        "edge-1",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
    );
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "edge-agent"},
        "spec": {"request": "LS0t", "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}
    });
    let (code, created) = harness.http("POST", &collection, JSON, Some(csr)).await;
    assert_eq!(code, 201);
    let mut approval = created.clone();
    approval["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]});
    approval["spec"]["signerName"] = json!("changed/ignored");
    let (code, approved) = harness
        .http(
            "PUT",
            &format!("{collection}/edge-agent/approval"),
            JSON,
            Some(approval),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(
        approved["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );

    let table: Value = reqwest::Client::new()
        .get(&collection)
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        vec!["Name", "SignerName", "Requestor", "Condition", "Age"]
    );
    assert_eq!(table["rows"][0]["cells"][3], "Approved");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}
