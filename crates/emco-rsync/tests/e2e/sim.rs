//! `KubeCluster` against an in-process `emco sim`: apply (built-in kinds, a CRD and its custom
//! resource), idempotence, readiness read back, delete, and the retry class of each fault.

use std::time::{Duration, Instant};

use emco_rsync::{
    ClusterApi, ClusterError, ClusterOptions, Deleted, KubeCluster, Readiness, Retry, readiness,
};
use emco_sim::faults::{ErrorRate, FaultPlan, Unreachable, set_faults};
use emco_sim::{RunningSim, Sim, SimOptions};
use serde_json::{Value, json};

async fn start_sim() -> RunningSim {
    let sim = Sim::new(SimOptions {
        ready_after: Duration::from_millis(100),
        ..SimOptions::default()
    });
    sim.add_clusters("edge-", 1).unwrap();
    emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn cluster(running: &RunningSim, timeout: Duration) -> KubeCluster {
    let kubeconfig = running.sim.kubeconfig("edge-1");
    KubeCluster::from_kubeconfig_with(
        "edge-1",
        kubeconfig.as_bytes(),
        ClusterOptions {
            request_timeout: timeout,
        },
    )
    .await
    .unwrap()
}

fn faults(running: &RunningSim, plan: Option<FaultPlan>) {
    set_faults(&running.sim.cluster("edge-1").unwrap(), plan);
}

fn resource_version(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"].as_str().unwrap()
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "demo", "labels": {"emco/deployment-id": "ctx-app"}},
        "data": {"key": "value"},
    })
}

fn manifests() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "demo", "labels": {"emco/deployment-id": "ctx-app"}},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        }),
        config_map("settings"),
    ]
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    })
}

fn widget() -> Value {
    json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "demo"},
        "spec": {"size": 3},
    })
}

#[tokio::test]
async fn applies_idempotently_reads_readiness_and_deletes() {
    let running = start_sim().await;
    let cluster = cluster(&running, Duration::from_secs(5)).await;

    let mut first = Vec::new();
    for obj in manifests() {
        let applied = cluster.apply(&obj).await.unwrap();
        assert_eq!(applied["metadata"]["name"], obj["metadata"]["name"]);
        first.push(applied);
    }
    // Applying the same objects again changes nothing. (The simulated controller may have
    // written the Deployment's status meanwhile, which moves its resourceVersion: compare its
    // generation instead.)
    for (obj, before) in manifests().iter().zip(&first) {
        let again = cluster.apply(obj).await.unwrap();
        if obj["kind"] == "Deployment" {
            assert_eq!(
                again["metadata"]["generation"],
                before["metadata"]["generation"]
            );
        } else {
            assert_eq!(resource_version(&again), resource_version(before), "{obj}");
        }
    }
    let stored = cluster
        .get("v1", "ConfigMap", Some("demo"), "settings")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["data"]["key"], "value");
    assert_eq!(
        stored["metadata"]["labels"]["emco/deployment-id"],
        "ctx-app"
    );
    // The client reads objects without their managed fields; the cluster's copy has them.
    assert!(stored["metadata"].get("managedFields").is_none());
    let on_cluster: Value = {
        let cluster = running.sim.cluster("edge-1").unwrap();
        let state = cluster.lock();
        let key = state
            .store_keys()
            .into_iter()
            .find(|key| key.contains("configmaps"))
            .unwrap();
        let stored = &state.objects_of_key(&key).unwrap()[&("demo".into(), "settings".into())];
        serde_json::from_slice(&stored.json).unwrap()
    };
    let managers: Vec<&str> = on_cluster["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert_eq!(managers, ["emco"]);

    // A kind the cluster does not serve yet is unknown; once its CRD is applied it resolves
    // (the earlier miss was not cached).
    let error = cluster.apply(&widget()).await.unwrap_err();
    assert!(matches!(error, ClusterError::UnknownKind { .. }), "{error}");
    cluster.apply(&crd()).await.unwrap();
    let applied = cluster.apply(&widget()).await.unwrap();
    assert_eq!(applied["spec"]["size"], 3);
    assert_eq!(
        readiness(
            &cluster
                .get("example.com/v1", "Widget", Some("demo"), "w1")
                .await
                .unwrap()
                .unwrap()
        ),
        Readiness::Ready
    );

    // The Deployment becomes ready once the simulated controller reports it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let deployment = cluster
            .get("apps/v1", "Deployment", Some("demo"), "web")
            .await
            .unwrap()
            .unwrap();
        match readiness(&deployment) {
            Readiness::Ready => break,
            Readiness::Failed(reason) => panic!("deployment failed: {reason}"),
            Readiness::NotReady(reason) => {
                assert!(Instant::now() < deadline, "never ready: {reason}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    assert_eq!(
        cluster
            .delete("v1", "ConfigMap", Some("demo"), "settings")
            .await
            .unwrap(),
        Deleted::Gone
    );
    assert_eq!(
        cluster
            .get("v1", "ConfigMap", Some("demo"), "settings")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cluster
            .delete("v1", "ConfigMap", Some("demo"), "settings")
            .await
            .unwrap(),
        Deleted::NotFound
    );
    assert_eq!(
        cluster
            .delete("example.com/v1", "Widget", Some("demo"), "w1")
            .await
            .unwrap(),
        Deleted::Gone
    );
    // A finalizer holds the object: the delete starts and reports it; releasing the finalizer
    // lets it go.
    let mut held = config_map("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    cluster.apply(&held).await.unwrap();
    assert_eq!(
        cluster
            .delete("v1", "ConfigMap", Some("demo"), "held")
            .await
            .unwrap(),
        Deleted::Deleting
    );
    held["metadata"]["finalizers"] = json!([]);
    cluster.apply(&held).await.unwrap();
    assert_eq!(
        cluster
            .get("v1", "ConfigMap", Some("demo"), "held")
            .await
            .unwrap(),
        None
    );

    let namespace = cluster
        .delete("v1", "Namespace", None, "demo")
        .await
        .unwrap();
    assert!(
        matches!(namespace, Deleted::Gone | Deleted::Deleting),
        "{namespace:?}"
    );
}

#[tokio::test]
async fn invalid_objects_are_never_retried() {
    let running = start_sim().await;
    let cluster = cluster(&running, Duration::from_secs(5)).await;
    cluster.apply(&manifests()[0]).await.unwrap();

    let error = cluster.apply(&config_map("Bad_Name")).await.unwrap_err();
    assert!(matches!(error.status_code(), Some(400..=499)), "{error}");
    assert_eq!(error.retry(), Retry::Never, "{error}");

    let error = cluster
        .apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}))
        .await
        .unwrap_err();
    assert!(matches!(error, ClusterError::InvalidObject(_)), "{error}");
    assert_eq!(error.retry(), Retry::Never);
}

#[tokio::test]
async fn unreachable_and_overloaded_clusters_are_retryable() {
    let running = start_sim().await;
    let timeout = Duration::from_millis(300);
    let cluster = cluster(&running, timeout).await;
    cluster.apply(&manifests()[0]).await.unwrap();
    cluster.apply(&config_map("warm")).await.unwrap(); // resolves ConfigMap before the faults

    faults(
        &running,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }),
    );
    let error = cluster.apply(&config_map("refused")).await.unwrap_err();
    assert!(matches!(error, ClusterError::Transport { .. }), "{error}");
    assert_eq!(error.retry(), Retry::Backoff);

    faults(
        &running,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Hang),
            ..FaultPlan::default()
        }),
    );
    let started = Instant::now();
    let error = cluster.apply(&config_map("held")).await.unwrap_err();
    assert!(matches!(error, ClusterError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    assert_eq!(error.retry(), Retry::Backoff);

    faults(
        &running,
        Some(FaultPlan {
            errors: Some(ErrorRate {
                fraction: 1.0,
                code: 429,
                retry_after_seconds: 2,
            }),
            ..FaultPlan::default()
        }),
    );
    let error = cluster.apply(&config_map("throttled")).await.unwrap_err();
    assert_eq!(error.status_code(), Some(429), "{error}");
    assert_eq!(error.retry(), Retry::After(Duration::from_secs(2)));

    faults(
        &running,
        Some(FaultPlan {
            errors: Some(ErrorRate {
                fraction: 1.0,
                code: 503,
                retry_after_seconds: 1,
            }),
            ..FaultPlan::default()
        }),
    );
    let error = cluster
        .get("v1", "ConfigMap", Some("demo"), "warm")
        .await
        .unwrap_err();
    assert_eq!(error.status_code(), Some(503), "{error}");
    assert!(
        matches!(error.retry(), Retry::Backoff | Retry::After(_)),
        "{error}"
    );

    // Healthy again: the same client recovers.
    faults(&running, None);
    cluster.apply(&config_map("recovered")).await.unwrap();
}

/// Not a benchmark: a figure for the report, sequential applies of small ConfigMaps.
#[tokio::test]
async fn apply_latency_against_the_sim() {
    let running = start_sim().await;
    let cluster = cluster(&running, Duration::from_secs(5)).await;
    cluster.apply(&manifests()[0]).await.unwrap();
    let mut latencies = Vec::new();
    for index in 0..200 {
        let started = Instant::now();
        cluster
            .apply(&config_map(&format!("cm-{index}")))
            .await
            .unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!("apply latency over 200 ConfigMaps: p50 {p50:?}, p99 {p99:?}");
    assert!(p50 < Duration::from_secs(1), "p50 {p50:?}");
}
