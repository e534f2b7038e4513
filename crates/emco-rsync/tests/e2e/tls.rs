//! `KubeCluster` over HTTPS, as real clusters are reached: against an `emco sim` serving TLS it
//! verifies the server with the kubeconfig's `certificate-authority-data`, applies and reads
//! objects, and refuses a server its CA did not sign. Also a rough cost of TLS per client.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use emco_rsync::{ClusterApi, ClusterError, ClusterOptions, KubeCluster, Retry};
use emco_sim::csr::ClusterCa;
use emco_sim::{RunningSim, Sim, SimOptions};
use serde_json::{Value, json};

async fn start_sim(tls: bool) -> RunningSim {
    let sim = Sim::new(SimOptions {
        tls,
        ..SimOptions::default()
    });
    sim.add_clusters("edge-", 1).unwrap();
    emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// edge-1's kubeconfig, trusting `ca_pem` instead of the simulator's CA.
fn kubeconfig_trusting(running: &RunningSim, ca_pem: &str) -> String {
    let sim_ca = running.sim.tls_ca().unwrap().unwrap();
    let original = running.sim.kubeconfig("edge-1");
    let replaced = original.replace(
        &STANDARD.encode(sim_ca.certificate_pem()),
        &STANDARD.encode(ca_pem),
    );
    assert_ne!(original, replaced);
    replaced
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"transport": "tls"},
    })
}

/// An error and all its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn applies_and_reads_over_verified_tls() {
    let running = start_sim(true).await;
    let kubeconfig = running.sim.kubeconfig("edge-1");
    assert!(kubeconfig.contains("server: https://127.0.0.1:"));
    assert!(kubeconfig.contains("certificate-authority-data: "));
    let cluster = KubeCluster::from_kubeconfig("edge-1", kubeconfig.as_bytes())
        .await
        .unwrap();

    let applied = cluster.apply(&config_map("over-tls")).await.unwrap();
    assert_eq!(applied["data"]["transport"], "tls");
    let stored = cluster
        .get("v1", "ConfigMap", Some("default"), "over-tls")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["data"]["transport"], "tls");
    assert_eq!(
        stored["metadata"]["uid"], applied["metadata"]["uid"],
        "{stored}"
    );
    assert!(running.sim.cluster("edge-1").unwrap().is_touched());
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused() {
    let running = start_sim(true).await;
    let stranger = ClusterCa::new("stranger").unwrap();
    let kubeconfig = kubeconfig_trusting(&running, stranger.certificate_pem());
    // The client is built without contacting the server: the refusal comes with the first call.
    let cluster = KubeCluster::from_kubeconfig_with(
        "edge-1",
        kubeconfig.as_bytes(),
        ClusterOptions {
            request_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let error = cluster.apply(&config_map("refused")).await.unwrap_err();
    let chain = error_chain(&error);
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );
    // Retrying cannot help: the synchronizer fails the cluster with the reason at once.
    assert!(
        matches!(error, ClusterError::Certificate { .. }),
        "{error:?}"
    );
    assert_eq!(error.retry(), Retry::Never);
    assert!(!error.is_connectivity());
    assert!(
        error.to_string().contains("untrusted server certificate"),
        "{error}"
    );
    // No request reached the cluster.
    assert!(!running.sim.cluster("edge-1").unwrap().is_touched());
}

/// Connect + first apply (discovery, then server-side apply) of fresh clients, TLS and plain:
/// run with `cargo test -p emco-rsync --release --test e2e -- tls:: --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_connect_and_first_apply() {
    const CLIENTS: u32 = 50;
    for tls in [false, true] {
        let running = start_sim(tls).await;
        let kubeconfig = running.sim.kubeconfig("edge-1");
        let mut build = Duration::ZERO;
        let mut first_apply = Duration::ZERO;
        let mut second_apply = Duration::ZERO;
        for index in 0..CLIENTS {
            let started = Instant::now();
            let cluster = KubeCluster::from_kubeconfig("edge-1", kubeconfig.as_bytes())
                .await
                .unwrap();
            build += started.elapsed();
            let started = Instant::now();
            cluster
                .apply(&config_map(&format!("first-{index}")))
                .await
                .unwrap();
            first_apply += started.elapsed();
            let started = Instant::now();
            cluster
                .apply(&config_map(&format!("second-{index}")))
                .await
                .unwrap();
            second_apply += started.elapsed();
        }
        println!(
            "{}: client {:?}, first apply {:?}, second apply {:?} (mean of {CLIENTS})",
            if tls { "https" } else { "http " },
            build / CLIENTS,
            first_apply / CLIENTS,
            second_apply / CLIENTS,
        );
    }
}
