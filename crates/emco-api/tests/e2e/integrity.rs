//! Referential integrity through the REST API, in process (router + real redb store).

use crate::common;

use axum::http::StatusCode;
use common::Hub;
use serde_json::{Value, json};

fn meta(name: &str) -> Value {
    json!({"metadata": {"name": name, "description": "", "userData1": "", "userData2": ""}})
}

const CA: &str = "/v2/projects/p1/composite-apps/ca/v1";
const DIG: &str = "/v2/projects/p1/composite-apps/ca/v1/deployment-intent-groups/dig1";

async fn with_dig(hub: &Hub) {
    hub.ok("POST", "/v2/projects", Some(meta("p1"))).await;
    hub.ok(
        "POST",
        "/v2/projects/p1/composite-apps",
        Some(json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v1"}})),
    )
    .await;
    hub.ok(
        "POST",
        "/v2/projects/p1/logical-clouds",
        Some(json!({"metadata": {"name": "lc"}, "spec": {"level": "0"}})),
    )
    .await;
    hub.ok(
        "POST",
        &format!("{CA}/composite-profiles"),
        Some(meta("prof")),
    )
    .await;
    let dig = json!({"metadata": {"name": "dig1"}, "spec": {"compositeProfile": "prof", "version": "r1", "logicalCloud": "lc", "overrideValues": []}});
    hub.ok("POST", &format!("{CA}/deployment-intent-groups"), Some(dig))
        .await;
}

#[tokio::test]
async fn missing_parent_is_404_and_nothing_is_stored() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    let (status, text) = hub
        .call(
            "POST",
            "/v2/projects/nope/composite-apps",
            Some(json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("Project not found"), "{text}");
    hub.ok("POST", "/v2/projects", Some(meta("nope"))).await;
    let (_, list) = hub
        .call("GET", "/v2/projects/nope/composite-apps", None)
        .await;
    assert_eq!(list, "[]");
}

#[tokio::test]
async fn references_must_exist_and_block_deletes() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_dig(&hub).await;
    // A group referring to a logical cloud that does not exist is refused, and not stored.
    let bad = json!({"metadata": {"name": "dig2"}, "spec": {"compositeProfile": "prof", "version": "r1", "logicalCloud": "ghost", "overrideValues": []}});
    let (status, text) = hub
        .call("POST", &format!("{CA}/deployment-intent-groups"), Some(bad))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains("logicalCloud") && text.contains("ghost"),
        "{text}"
    );
    assert_eq!(
        hub.call("GET", &format!("{CA}/deployment-intent-groups/dig2"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // The referenced logical cloud and profile cannot be deleted while the group refers to them.
    let (status, text) = hub
        .call("DELETE", "/v2/projects/p1/logical-clouds/lc", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains("referenced by deploymentIntentGroup"),
        "{text}"
    );
    assert_eq!(
        hub.call("DELETE", &format!("{CA}/composite-profiles/prof"), None)
            .await
            .0,
        StatusCode::CONFLICT
    );

    // Updating the group to drop the reference releases it.
    hub.ok(
        "POST",
        "/v2/projects/p1/logical-clouds",
        Some(json!({"metadata": {"name": "lc2"}, "spec": {"level": "0"}})),
    )
    .await;
    let moved = json!({"metadata": {"name": "dig1"}, "spec": {"compositeProfile": "prof", "version": "r1", "logicalCloud": "lc2", "overrideValues": []}});
    let (status, _) = hub.call("PUT", DIG, Some(moved)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        hub.call("DELETE", "/v2/projects/p1/logical-clouds/lc", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hub.call("DELETE", "/v2/projects/p1/logical-clouds/lc2", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn children_block_deletes_until_removed() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_dig(&hub).await;
    let (status, text) = hub.call("DELETE", "/v2/projects/p1", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(text.contains("child"), "{text}");
    hub.ok("DELETE", DIG, None).await;
    hub.ok("DELETE", &format!("{CA}/composite-profiles/prof"), None)
        .await;
    hub.ok("DELETE", CA, None).await;
    hub.ok("DELETE", "/v2/projects/p1/logical-clouds/lc", None)
        .await;
    assert_eq!(
        hub.call("DELETE", "/v2/projects/p1", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hub.call("GET", "/v2/projects/p1", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn approved_group_lifecycle_and_state_do_not_touch_the_document() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_dig(&hub).await;
    let before = hub.ok("GET", DIG, None).await;
    let (status, text) = hub.call("POST", &format!("{DIG}/instantiate"), None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "instantiate before approve: {text}"
    );
    assert_eq!(
        hub.call("POST", &format!("{DIG}/approve"), None).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(hub.ok("GET", DIG, None).await, before);
    let status_doc: Value =
        serde_json::from_str(&hub.ok("GET", &format!("{DIG}/status"), None).await).unwrap();
    assert_eq!(status_doc["status"], "Approved");
    assert_eq!(
        hub.call("POST", &format!("{DIG}/terminate"), None).await.0,
        StatusCode::CONFLICT
    );
}

async fn state(hub: &Hub) -> String {
    let doc: Value =
        serde_json::from_str(&hub.ok("GET", &format!("{DIG}/status"), None).await).unwrap();
    doc["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn changing_an_approved_group_or_its_intents_needs_a_new_approval() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_dig(&hub).await;
    hub.ok("POST", &format!("{DIG}/approve"), None).await;
    assert_eq!(state(&hub).await, "Approved");
    // A new intent of the group revokes the approval...
    hub.ok(
        "POST",
        &format!("{DIG}/generic-placement-intents"),
        Some(meta("gpi")),
    )
    .await;
    assert_eq!(state(&hub).await, "Created");
    let (status, text) = hub.call("POST", &format!("{DIG}/instantiate"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    // ... and so do replacing the group itself and deleting an intent.
    hub.ok("POST", &format!("{DIG}/approve"), None).await;
    let dig = json!({"metadata": {"name": "dig1"}, "spec": {"compositeProfile": "prof", "version": "r2", "logicalCloud": "lc", "overrideValues": []}});
    hub.ok("PUT", DIG, Some(dig)).await;
    assert_eq!(state(&hub).await, "Created");
    hub.ok("POST", &format!("{DIG}/approve"), None).await;
    let (status, _) = hub
        .call(
            "DELETE",
            &format!("{DIG}/generic-placement-intents/gpi"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(state(&hub).await, "Created");
    // An action controller's intent does not (upstream's test-gac adds them after approval).
    hub.ok("POST", &format!("{DIG}/approve"), None).await;
    hub.ok(
        "POST",
        &format!("{DIG}/generic-k8s-intents"),
        Some(meta("gac-intent")),
    )
    .await;
    assert_eq!(state(&hub).await, "Approved");
}

#[tokio::test]
async fn controller_schema_registered_at_run_time_gets_the_same_guarantees() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_dig(&hub).await;
    // A controller whose intents live under deployment intent groups, and whose policies (under
    // projects) refer to a deployment intent group by name.
    let segment = json!({
        "name": "emco-example-controller",
        "resources": [
            {"name": "exampleIntent", "parent": "deploymentIntentGroup"},
            {"name": "examplePolicy", "parent": "project", "references": [{"name": "deploymentIntentGroup"}]}
        ]
    });
    let (status, text) = hub
        .call("POST", "/v2/schema/segments", Some(segment.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(
        hub.call("POST", "/v2/schema/segments", Some(segment))
            .await
            .0,
        StatusCode::OK,
        "re-registering is idempotent"
    );

    // Parent must exist.
    let (status, _) = hub
        .call(
            "POST",
            "/v2/resources/exampleIntent/p1/ca/v1/ghost",
            Some(meta("i1")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = hub
        .call(
            "POST",
            "/v2/resources/exampleIntent/p1/ca/v1/dig1",
            Some(meta("i1")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let (status, text) = hub
        .call("GET", "/v2/resources/exampleIntent/p1/ca/v1/dig1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()[0]["metadata"]["name"],
        "i1"
    );

    // References must exist: the group's key elements come from `spec` and the policy's own key.
    let policy = |dig: &str| json!({"metadata": {"name": "pol"}, "spec": {"compositeApp": "ca", "compositeAppVersion": "v1", "deploymentIntentGroup": dig}});
    assert_eq!(
        hub.call(
            "POST",
            "/v2/resources/examplePolicy/p1",
            Some(policy("ghost"))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        hub.call(
            "POST",
            "/v2/resources/examplePolicy/p1",
            Some(policy("dig1"))
        )
        .await
        .0,
        StatusCode::CREATED
    );

    // Both directions: the group cannot go while its child intent or the referring policy exist.
    let (status, text) = hub.call("DELETE", DIG, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(text.contains("exampleIntent"), "{text}");
    hub.ok(
        "DELETE",
        "/v2/resources/exampleIntent/p1/ca/v1/dig1/i1",
        None,
    )
    .await;
    let (status, text) = hub.call("DELETE", DIG, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(text.contains("examplePolicy"), "{text}");
    // The segment cannot be removed while its resources exist.
    assert_eq!(
        hub.call(
            "DELETE",
            "/v2/schema/segments/emco-example-controller",
            None
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    hub.ok("DELETE", "/v2/resources/examplePolicy/p1/pol", None)
        .await;
    assert_eq!(
        hub.call("DELETE", DIG, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hub.call(
            "DELETE",
            "/v2/schema/segments/emco-example-controller",
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hub.call("GET", "/v2/resources/exampleIntent/p1/ca/v1/dig1", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn inconsistent_segments_are_refused() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    let orphan = json!({"name": "bad", "resources": [{"name": "thing", "parent": "nothing"}]});
    let (status, text) = hub.call("POST", "/v2/schema/segments", Some(orphan)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("nothing"), "{text}");
    let dup = json!({"name": "bad2", "resources": [{"name": "project"}]});
    assert_eq!(
        hub.call("POST", "/v2/schema/segments", Some(dup)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        hub.call("GET", "/v2/schema/segments/bad", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn openapi_covers_every_route() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    let doc: Value = serde_json::from_str(&hub.ok("GET", "/v2/openapi.json", None).await).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for route in emco_api::route_table() {
        let item = paths
            .get(&route.path)
            .unwrap_or_else(|| panic!("{} missing", route.path));
        assert!(
            item.get(route.method.to_lowercase()).is_some(),
            "{} {}",
            route.method,
            route.path
        );
        // And the router really serves it: fill placeholders, expect anything but the fallback.
        let concrete = route.path.replace(['{', '}'], "");
        let (status, text) = hub.call(route.method, &concrete, None).await;
        assert!(
            !(status == StatusCode::NOT_FOUND && text == "404 page not found\n")
                && status != StatusCode::METHOD_NOT_ALLOWED,
            "{} {} is documented but not routed ({status})",
            route.method,
            route.path
        );
    }
}

#[tokio::test]
async fn unknown_routes_answer_like_upstream() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    let (status, text) = hub.call("POST", "/v2/project", Some(meta("x"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(text, "404 page not found\n");
}

#[tokio::test]
async fn admin_logical_cloud_lifecycle() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    hub.ok("POST", "/v2/projects", Some(meta("p1"))).await;
    let lc = "/v2/projects/p1/logical-clouds/admin";
    hub.ok(
        "POST",
        "/v2/projects/p1/logical-clouds",
        Some(json!({"metadata": {"name": "admin"}, "spec": {"level": "0", "namespace": ""}})),
    )
    .await;
    let (status, text) = hub.call("POST", &format!("{lc}/instantiate"), None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "needs cluster references: {text}"
    );
    hub.ok("POST", "/v2/cluster-providers", Some(meta("prov")))
        .await;
    // A cluster reference to a cluster that does not exist is refused (strict references).
    let reference = json!({"metadata": {"name": "r1"}, "spec": {"clusterProvider": "prov", "cluster": "c1", "loadBalancerIp": "0.0.0.0"}});
    let (status, _) = hub
        .call("POST", &format!("{lc}/cluster-references"), Some(reference))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A GitOps cluster needs no kubeconfig upload.
    let gitops = json!({"metadata": {"name": "c1"}, "spec": {"gitOps": {"gitOpsType": "fluxcd", "gitOpsReferenceObject": "r", "gitOpsResourceObject": "r"}}});
    let reply = hub
        .multipart("POST", "/v2/cluster-providers/prov/clusters", &gitops, None)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let reference = json!({"metadata": {"name": "r1"}, "spec": {"clusterProvider": "prov", "cluster": "c1", "loadBalancerIp": "0.0.0.0"}});
    hub.ok("POST", &format!("{lc}/cluster-references"), Some(reference))
        .await;

    assert_eq!(
        hub.call("POST", &format!("{lc}/instantiate"), None).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        hub.call("POST", &format!("{lc}/instantiate"), None).await.0,
        StatusCode::CONFLICT
    );
    let cloud: Value = serde_json::from_str(&hub.ok("GET", lc, None).await).unwrap();
    assert_eq!(
        cloud["spec"]["namespace"], "default",
        "admin clouds get the default namespace"
    );
    let status: Value =
        serde_json::from_str(&hub.ok("GET", &format!("{lc}/status"), None).await).unwrap();
    assert_eq!(status["logicalCloud"], "admin");
    assert_eq!(status["states"]["actions"][0]["state"], "Instantiated");
    let (status, text) = hub.call("DELETE", lc, None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an instantiated cloud cannot be deleted: {text}"
    );
    assert_eq!(
        hub.call("POST", &format!("{lc}/terminate"), None).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        hub.call("POST", &format!("{lc}/terminate"), None).await.0,
        StatusCode::CONFLICT
    );
    hub.ok("DELETE", &format!("{lc}/cluster-references/r1"), None)
        .await;
    assert_eq!(hub.call("DELETE", lc, None).await.0, StatusCode::NO_CONTENT);

    // Standard clouds put objects on their clusters: a hub without a deployer says so.
    hub.ok("POST", "/v2/projects/p1/logical-clouds", Some(json!({"metadata": {"name": "std"}, "spec": {"level": "1", "namespace": "ns1", "user": {"userName": "u", "type": "certificate"}}}))).await;
    assert_eq!(
        hub.call(
            "POST",
            "/v2/projects/p1/logical-clouds/std/instantiate",
            None
        )
        .await
        .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
