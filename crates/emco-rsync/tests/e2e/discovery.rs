//! Service discovery (the traffic controller's `sds`) in the synchronizer, against simulated
//! clusters: once the server is ready, client clusters get a Service and Endpoints pointing at
//! the server's node port or load balancer; an update moves them, a terminate removes them.

use crate::common;

use std::time::Duration;

use common::*;
use emco_core::appcontext::{AppContext, AppContextBuilder, DigRef, ServiceDiscovery};
use emco_core::status::AppContextStatus;
use emco_rsync::ClusterApi;
use emco_rsync::engine::DEPLOYMENT_ID_LABEL;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

fn server_service(service_type: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "http-service", "namespace": "default"},
        "spec": {"type": service_type, "selector": {"app": "http-server"},
            "ports": [{"port": 8080, "targetPort": 3333, "protocol": "TCP"}]},
    })
}

/// `http-server` (Deployment and a Service of `service_type`) on `server_on`, `http-client`
/// on `clients_on`, and the discovery of `http-service` when `discover`.
fn revision(
    id: &str,
    server_on: &[usize],
    service_type: &str,
    clients_on: &[usize],
    discover: bool,
) -> AppContext {
    let mut builder = AppContextBuilder::new(
        DigRef::new("proj", "capp", "v1", "dig"),
        1,
        "2026-01-01T00:00:00Z",
    )
    .id(id)
    .app(app(
        "http-server",
        server_on,
        resources(vec![
            deployment("default", "http-server"),
            server_service(service_type),
        ]),
    ))
    .app(app(
        "http-client",
        clients_on,
        resources(vec![deployment("default", "http-client")]),
    ));
    if discover {
        builder = builder.discovery(ServiceDiscovery {
            server: "http-server".into(),
            service: "http-service".into(),
            namespace: "default".into(),
            clients: vec!["http-client".into()],
        });
    }
    builder.build().unwrap()
}

async fn get(hub: &Hub, index: usize, kind: &str, name: &str) -> Option<Value> {
    hub.client(index)
        .await
        .get("v1", kind, Some("default"), name)
        .await
        .unwrap()
}

async fn node_ip(hub: &Hub, index: usize) -> String {
    let nodes = hub
        .client(index)
        .await
        .list("v1", "Node", None, "")
        .await
        .unwrap();
    nodes[0]["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until edge-`index`'s discovered Endpoints satisfy `check`.
async fn wait_endpoints(
    hub: &Hub,
    index: usize,
    what: &str,
    check: impl Fn(Option<&Value>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let endpoints = get(hub, index, "Endpoints", "http-service").await;
        if check(endpoints.as_ref()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "edge-{index}: {what}; endpoints are {endpoints:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clients_get_the_servers_address_which_follows_updates_and_goes_with_terminate() {
    let hub = hub(3, Duration::from_millis(100)).await;
    // The server on edge-1 behind a NodePort; clients on edge-1 (beside it) and edge-2.
    let first = revision("r1", &[1], "NodePort", &[1, 2], true);
    hub.instantiate(&first).await;
    let report = hub
        .wait_for("r1", LONG, "instantiated and ready", |report| {
            report.status == AppContextStatus::Instantiated && report.all_ready
        })
        .await;
    assert_eq!(report.message, None);

    let own = get(&hub, 1, "Service", "http-service").await.unwrap();
    assert_eq!(
        own["spec"]["type"], "NodePort",
        "edge-1 keeps the server's own Service"
    );
    let node_port = own["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!(get(&hub, 1, "Endpoints", "http-service").await.is_none());
    assert!(
        get(&hub, 3, "Service", "http-service").await.is_none(),
        "edge-3 has no client"
    );

    let endpoints = get(&hub, 2, "Endpoints", "http-service").await.unwrap();
    assert_eq!(
        endpoints["subsets"],
        json!([{"addresses": [{"ip": node_ip(&hub, 1).await}],
            "ports": [{"name": "tcp-8080", "port": node_port, "protocol": "TCP"}]}])
    );
    let service = get(&hub, 2, "Service", "http-service").await.unwrap();
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["ports"][0]["port"], 8080,
        "clients keep the server's port"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], node_port);
    assert!(service["spec"]["selector"].is_null());
    for object in [&endpoints, &service] {
        assert_eq!(
            object["metadata"]["labels"][DEPLOYMENT_ID_LABEL],
            "r1-service-discovery"
        );
    }

    // The server moves to edge-3 behind a load balancer: edge-2's endpoints follow, and edge-1
    // (a client now on another cluster than the server) gets them too.
    let second = revision("r2", &[3], "LoadBalancer", &[1, 2], true);
    hub.update("r1", &second, "r1", false).await;
    hub.wait_for("r2", LONG, "updated and ready", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;
    let balancer = get(&hub, 3, "Service", "http-service").await.unwrap();
    let ingress = balancer["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    for index in [1, 2] {
        let endpoints = get(&hub, index, "Endpoints", "http-service").await.unwrap();
        assert_eq!(
            endpoints["subsets"],
            json!([{"addresses": [{"ip": ingress}],
                "ports": [{"name": "tcp-8080", "port": 8080, "protocol": "TCP"}]}]),
            "edge-{index}"
        );
        let service = get(&hub, index, "Service", "http-service").await.unwrap();
        assert_eq!(service["spec"]["type"], "ClusterIP", "edge-{index}");
    }

    // A revision without the discovery takes the objects away again.
    let third = revision("r3", &[3], "LoadBalancer", &[1, 2], false);
    hub.update("r2", &third, "r1", false).await;
    hub.wait_for("r3", LONG, "updated and ready", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;
    for index in [1, 2] {
        wait_endpoints(&hub, index, "the discovery is gone", |e| e.is_none()).await;
        assert!(get(&hub, index, "Service", "http-service").await.is_none());
    }

    // Back to a discovering revision, then terminate: everything goes.
    let fourth = revision("r4", &[3], "LoadBalancer", &[2], true);
    hub.update("r3", &fourth, "r1", false).await;
    hub.wait_for("r4", LONG, "updated and ready", |report| {
        report.status == AppContextStatus::Updated && report.all_ready
    })
    .await;
    assert!(get(&hub, 2, "Endpoints", "http-service").await.is_some());
    hub.terminate("r4").await;
    hub.wait_status("r4", AppContextStatus::Terminated).await;
    for index in [1, 2, 3] {
        assert!(
            get(&hub, index, "Endpoints", "http-service")
                .await
                .is_none(),
            "edge-{index}"
        );
        assert!(
            get(&hub, index, "Service", "http-service").await.is_none(),
            "edge-{index}"
        );
    }
}

#[tokio::test]
async fn a_server_service_other_clusters_cannot_reach_is_reported_and_nothing_is_sent() {
    let hub = hub(2, Duration::from_millis(50)).await;
    let context = revision("c1", &[1], "ClusterIP", &[2], true);
    hub.instantiate(&context).await;
    let report = hub
        .wait_for("c1", LONG, "instantiated and ready", |report| {
            report.status == AppContextStatus::Instantiated && report.all_ready
        })
        .await;
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("http-service") && message.contains("NodePort and LoadBalancer"),
        "{message}"
    );
    assert!(get(&hub, 2, "Service", "http-service").await.is_none());
    assert!(get(&hub, 2, "Endpoints", "http-service").await.is_none());
}

#[tokio::test]
async fn a_hub_killed_before_discovery_discovers_after_restart() {
    // Workloads take a while to be ready, so the run ends (Instantiated) long before its
    // discovery step can begin.
    let hub = hub(2, Duration::from_millis(1500)).await;
    let context = revision("k1", &[1], "NodePort", &[2], true);
    hub.instantiate(&context).await;
    hub.wait_status("k1", AppContextStatus::Instantiated).await;
    hub.sync.shutdown();
    assert!(!hub.report("k1").await.all_ready);
    assert!(get(&hub, 2, "Endpoints", "http-service").await.is_none());

    let (resumed, _) = synchronizer(hub.store.clone(), fast_config());
    assert_eq!(resumed.resume_all().await.unwrap(), 1);
    wait_report(&resumed, "k1", LONG, "ready after restart", |report| {
        report.all_ready
    })
    .await;
    let endpoints = get(&hub, 2, "Endpoints", "http-service").await.unwrap();
    assert_eq!(
        endpoints["subsets"][0]["addresses"],
        json!([{"ip": node_ip(&hub, 1).await}])
    );
    let recorded = hub.store.get("rsync/discovered/k1").await.unwrap().unwrap();
    let recorded: Value = serde_json::from_slice(&recorded.value).unwrap();
    assert_eq!(
        recorded["objects"].as_array().unwrap().len(),
        2,
        "{recorded}"
    );

    // The resumed hub's terminate removes them, and the record.
    let outcome = hub
        .store
        .txn(emco_store::Txn {
            compares: vec![],
            ops: emco_rsync::Synchronizer::terminate_ops("k1", "k1"),
        })
        .await
        .unwrap();
    assert!(outcome.succeeded);
    resumed.kick("k1");
    wait_report(&resumed, "k1", LONG, "terminated", |report| {
        report.status == AppContextStatus::Terminated
    })
    .await;
    assert!(get(&hub, 2, "Endpoints", "http-service").await.is_none());
    assert!(get(&hub, 2, "Service", "http-service").await.is_none());
    assert!(
        hub.store
            .get("rsync/discovered/k1")
            .await
            .unwrap()
            .is_none()
    );
}
