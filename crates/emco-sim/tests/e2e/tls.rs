//! A simulator serving HTTPS (`SimOptions::tls`): kubectl 1.32 and kube-rs verify it with the
//! CA its kubeconfigs carry, refuse it with any other CA, speak HTTP/2 when they offer it, and
//! faults still drop connections.

use crate::common;

use std::process::Output;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Harness, stderr, stdout};
use emco_sim::csr::ClusterCa;
use emco_sim::faults::{FaultPlan, Unreachable, set_faults};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

async fn tls_harness() -> Harness {
    Harness::start_with(1, |options| options.tls = true).await
}

/// The CA of the harness' simulator, PEM.
fn sim_ca_pem(harness: &Harness) -> String {
    harness
        .sim()
        .tls_ca()
        .unwrap()
        .unwrap()
        .certificate_pem()
        .to_owned()
}

/// Writes `{name}.kubeconfig` beside the simulator's: edge-1's, trusting `ca_pem` instead.
fn kubeconfig_trusting(harness: &Harness, name: &str, ca_pem: &str) {
    let original = std::fs::read_to_string(harness.kubeconfig("edge-1")).unwrap();
    let replaced = original.replace(
        &STANDARD.encode(sim_ca_pem(harness)),
        &STANDARD.encode(ca_pem),
    );
    assert_ne!(original, replaced);
    std::fs::write(harness.kubeconfig(name), replaced).unwrap();
}

/// Runs kubectl with the kubeconfig written for `cluster` and extra environment variables.
async fn kubectl_with_env(
    harness: &Harness,
    cluster: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(harness.kubeconfig(cluster))
            .arg("--cache-dir")
            .arg(harness.dir.path().join(format!("kube-cache-{cluster}")))
            .args(args)
            .env("HOME", harness.dir.path())
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn kubeconfigs_point_at_https_and_carry_the_ca() {
    let harness = tls_harness().await;
    assert!(harness.running.url.starts_with("https://127.0.0.1:"));
    let kubeconfig = std::fs::read_to_string(harness.kubeconfig("edge-1")).unwrap();
    assert!(kubeconfig.contains(&format!(
        "    server: {}/clusters/edge-1\n",
        harness.running.url
    )));
    assert!(kubeconfig.contains(&format!(
        "    certificate-authority-data: {}\n",
        STANDARD.encode(sim_ca_pem(&harness))
    )));
    assert!(!kubeconfig.contains("insecure-skip-tls-verify"));
    // One CA for the whole simulator: it also signs the clusters' CertificateSigningRequests.
    let cluster = harness.sim().cluster("edge-1").unwrap();
    let signing_ca = emco_sim::controllers::cluster_ca_pem(&mut cluster.lock()).unwrap();
    assert_eq!(signing_ca, sim_ca_pem(&harness));
    // Clusters added later share it.
    harness.sim().add_cluster("edge-2").unwrap();
    let later = std::fs::read_to_string(harness.kubeconfig("edge-2")).unwrap();
    assert!(later.contains(&STANDARD.encode(sim_ca_pem(&harness))));
}

#[tokio::test]
async fn plain_simulators_stay_plain() {
    let harness = Harness::start(1).await;
    assert!(harness.running.url.starts_with("http://"));
    assert!(harness.sim().tls_ca().unwrap().is_none());
    let kubeconfig = std::fs::read_to_string(harness.kubeconfig("edge-1")).unwrap();
    assert!(!kubeconfig.contains("certificate-authority"));
}

#[tokio::test]
async fn kubectl_verifies_the_server_and_works_over_tls() {
    let harness = tls_harness().await;
    let namespaces = harness
        .kubectl_ok("edge-1", &["get", "ns", "-o", "name"])
        .await;
    assert!(namespaces.contains("namespace/default"), "{namespaces}");

    let applied = harness
        .apply(
            "edge-1",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-tls\n  namespace: default\ndata:\n  greeting: hello\n",
            &[],
        )
        .await;
    assert!(applied.contains("configmap/over-tls created"), "{applied}");

    let json = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "configmap",
                "over-tls",
                "-n",
                "default",
                "-o",
                "json",
            ],
        )
        .await;
    let object: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(object["data"]["greeting"], "hello");
    assert_eq!(object["metadata"]["name"], "over-tls");
}

#[tokio::test]
async fn kubectl_negotiates_http2_over_tls() {
    let harness = tls_harness().await;
    // Go's HTTP/2 transport logs its frames with this setting; HTTP/1.1 logs nothing.
    let output = kubectl_with_env(
        &harness,
        "edge-1",
        &[("GODEBUG", "http2debug=1")],
        &["get", "ns", "default", "-o", "name"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "namespace/default");
    assert!(
        stderr(&output).contains("http2: Transport"),
        "no HTTP/2 traffic: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn kubectl_refuses_a_server_its_ca_did_not_sign() {
    let harness = tls_harness().await;
    let stranger = ClusterCa::new("stranger").unwrap();
    kubeconfig_trusting(&harness, "wrong-ca", stranger.certificate_pem());
    let output = kubectl_with_env(
        &harness,
        "wrong-ca",
        &[],
        &["get", "ns", "--request-timeout=10s"],
    )
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("x509: certificate signed by unknown authority"),
        "{message}"
    );
    assert!(stdout(&output).is_empty());
}

#[tokio::test]
async fn kube_rs_verifies_the_server_and_faults_still_drop_connections() {
    let harness = tls_harness().await;
    let kubeconfig = Kubeconfig::read_from(harness.kubeconfig("edge-1")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.scheme_str(), Some("https"));
    let client = Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|namespace| namespace.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_owned()), "{names:?}");

    let cluster = harness.sim().cluster("edge-1").unwrap();
    set_faults(
        &cluster,
        Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }),
    );
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        namespaces.list(&ListParams::default()),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            refused,
            Err(kube::Error::HyperError(_) | kube::Error::Service(_))
        ),
        "{refused:?}"
    );
    set_faults(&cluster, None);
    assert!(namespaces.list(&ListParams::default()).await.is_ok());
}

#[tokio::test]
async fn kube_rs_refuses_a_server_its_ca_did_not_sign() {
    let harness = tls_harness().await;
    let stranger = ClusterCa::new("stranger").unwrap();
    kubeconfig_trusting(&harness, "wrong-ca", stranger.certificate_pem());
    let kubeconfig = Kubeconfig::read_from(harness.kubeconfig("wrong-ca")).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let error = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    let chain = error_chain(&error);
    assert!(chain.contains("UnknownIssuer"), "{chain}");
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

/// A kubeconfig for edge-1 that authenticates with a client certificate instead of the token.
fn kubeconfig_as(harness: &Harness, name: &str, certificate_pem: &str, key_pem: &str) {
    let original = std::fs::read_to_string(harness.kubeconfig("edge-1")).unwrap();
    let replaced = original.replace(
        "    token: sim-token-edge-1\n",
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(certificate_pem),
            STANDARD.encode(key_pem)
        ),
    );
    assert_ne!(original, replaced);
    std::fs::write(harness.kubeconfig(name), replaced).unwrap();
}

#[tokio::test]
async fn a_certificate_from_an_approved_csr_authenticates_its_user_and_rbac_limits_it() {
    let harness = tls_harness().await;
    // What a logical cloud gives its user: a namespace and a Role bound to the user.
    let rbac = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n---\n\
        apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: lc1-role0\n  namespace: ns1\n\
        rules:\n- apiGroups: [\"\", \"apps\"]\n  resources: [configmaps, deployments]\n  verbs: [get, list, watch, create]\n---\n\
        apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: lc1-roleBinding0\n  namespace: ns1\n\
        subjects:\n- kind: User\n  name: user-1\n  apiGroup: rbac.authorization.k8s.io\n\
        roleRef:\n  kind: Role\n  name: lc1-role0\n  apiGroup: rbac.authorization.k8s.io\n";
    let applied = harness
        .kubectl_stdin("edge-1", &["apply", "-f", "-"], rbac)
        .await;
    assert!(applied.status.success(), "{}", stderr(&applied));

    // The user's key and request, signed through the CSR API as the administrator.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "user-1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "lc1");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: lc1-user-csr\n\
         spec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n",
        STANDARD.encode(&request)
    );
    let created = harness
        .kubectl_stdin("edge-1", &["apply", "-f", "-"], &csr)
        .await;
    assert!(created.status.success(), "{}", stderr(&created));
    harness
        .kubectl_ok("edge-1", &["certificate", "approve", "lc1-user-csr"])
        .await;
    let signed = harness
        .kubectl_ok(
            "edge-1",
            &[
                "get",
                "csr",
                "lc1-user-csr",
                "-o",
                "jsonpath={.status.certificate}",
            ],
        )
        .await;
    let certificate = String::from_utf8(STANDARD.decode(signed.trim()).unwrap()).unwrap();
    kubeconfig_as(&harness, "user-1", &certificate, &key.serialize_pem());

    // As user-1: what the Role grants in ns1, nothing elsewhere.
    let allowed = kubectl_with_env(
        &harness,
        "user-1",
        &[],
        &[
            "create",
            "configmap",
            "mine",
            "-n",
            "ns1",
            "--from-literal=a=b",
        ],
    )
    .await;
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let listed =
        kubectl_with_env(&harness, "user-1", &[], &["get", "configmaps", "-n", "ns1"]).await;
    assert!(stdout(&listed).contains("mine"), "{}", stderr(&listed));
    let elsewhere = kubectl_with_env(
        &harness,
        "user-1",
        &[],
        &["get", "configmaps", "-n", "default"],
    )
    .await;
    assert!(!elsewhere.status.success());
    assert!(
        stderr(&elsewhere).contains(
            "configmaps is forbidden: User \"user-1\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        stderr(&elsewhere)
    );
    let delete = kubectl_with_env(
        &harness,
        "user-1",
        &[],
        &["delete", "configmap", "mine", "-n", "ns1"],
    )
    .await;
    assert!(!delete.status.success(), "the Role does not grant delete");
    assert!(
        stderr(&delete).contains("Forbidden") || stderr(&delete).contains("forbidden"),
        "{}",
        stderr(&delete)
    );
    // The administrator's kubeconfig (no client certificate) still does everything.
    harness
        .kubectl_ok("edge-1", &["delete", "configmap", "mine", "-n", "ns1"])
        .await;
}
