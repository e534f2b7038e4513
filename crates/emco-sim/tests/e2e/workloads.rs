//! Workloads come alive and CSRs get signed: the real `kubectl` (wait, rollout status, scale,
//! certificate approve) against an in-process simulator with a short readiness delay.

use crate::common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Harness, stderr};
use emco_sim::faults::FaultPlan;
use serde_json::Value;

const READY_AFTER: Duration = Duration::from_millis(200);

async fn harness() -> Harness {
    Harness::start_with(1, |options| {
        options.ready_after = READY_AFTER;
        options.nodes = 2;
    })
    .await
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

async fn get_json(harness: &Harness, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&harness.kubectl_ok("edge-1", &all).await).unwrap()
}

fn condition<'a>(object: &'a Value, kind: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn deployments_become_available_roll_out_and_follow_scale() {
    let harness = harness().await;
    harness.apply("edge-1", DEPLOYMENT, &[]).await;
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "--timeout=20s",
            ],
        )
        .await;
    let rollout = harness
        .kubectl_ok(
            "edge-1",
            &["rollout", "status", "deployment/web", "--timeout=20s"],
        )
        .await;
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    let deployment = get_json(&harness, &["deployment", "web"]).await;
    let status = &deployment["status"];
    assert_eq!(status["observedGeneration"], 1);
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(status[field], 2, "{field}: {status}");
    }
    assert_eq!(
        condition(&deployment, "Available")["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        condition(&deployment, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );

    // Scaling bumps the generation; the status catches up after the delay.
    harness
        .kubectl_ok("edge-1", &["scale", "deployment/web", "--replicas=5"])
        .await;
    let scaled = get_json(&harness, &["deployment", "web"]).await;
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(
        scaled["status"]["observedGeneration"], 1,
        "not yet observed"
    );
    harness
        .kubectl_ok(
            "edge-1",
            &["rollout", "status", "deployment/web", "--timeout=20s"],
        )
        .await;
    let scaled = get_json(&harness, &["deployment", "web"]).await;
    assert_eq!(scaled["status"]["observedGeneration"], 2);
    assert_eq!(scaled["status"]["readyReplicas"], 5);
    assert_eq!(scaled["status"]["availableReplicas"], 5);
    let table = harness
        .kubectl_ok("edge-1", &["get", "deployment", "web"])
        .await;
    assert!(table.contains("5/5"), "{table}");
}

#[tokio::test]
async fn statefulsets_and_daemonsets_report_ready_counts() {
    let harness = harness().await;
    let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: fluent-bit:3}]}
"#;
    harness.apply("edge-1", manifest, &[]).await;
    for target in ["statefulset/db", "daemonset/agent"] {
        let output = harness
            .kubectl_ok("edge-1", &["rollout", "status", target, "--timeout=20s"])
            .await;
        assert!(output.contains("roll"), "{output}");
    }
    let statefulset = get_json(&harness, &["statefulset", "db"]).await;
    let status = &statefulset["status"];
    assert_eq!(status["replicas"], 3);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["availableReplicas"], 3);
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    let daemonset = get_json(&harness, &["daemonset", "agent"]).await;
    let status = &daemonset["status"];
    assert_eq!(status["desiredNumberScheduled"], 2);
    assert_eq!(status["numberReady"], 2);
    assert_eq!(status["numberAvailable"], 2);
    assert_eq!(status["observedGeneration"], 1);
}

#[tokio::test]
async fn jobs_complete_or_fail_when_told_and_pods_run() {
    let harness = harness().await;
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: ok, namespace: default}
spec:
  completions: 2
  template:
    spec: {containers: [{name: run, image: busybox:1.36}]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: bad
  namespace: default
  annotations: {sim.emco.io/fail: "true"}
spec:
  backoffLimit: 1
  template:
    spec: {containers: [{name: run, image: busybox:1.36}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shell, namespace: default}
spec:
  containers: [{name: shell, image: busybox:1.36}]
---
apiVersion: v1
kind: Pod
metadata: {name: once, namespace: default}
spec:
  restartPolicy: Never
  containers: [{name: once, image: busybox:1.36}]
"#;
    harness.apply("edge-1", manifest, &[]).await;
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=condition=complete",
                "job/ok",
                "--timeout=20s",
            ],
        )
        .await;
    harness
        .kubectl_ok(
            "edge-1",
            &["wait", "--for=condition=failed", "job/bad", "--timeout=20s"],
        )
        .await;
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=condition=Ready",
                "pod/shell",
                "--timeout=20s",
            ],
        )
        .await;
    let ok = get_json(&harness, &["job", "ok"]).await;
    assert_eq!(ok["status"]["succeeded"], 2);
    assert!(ok["status"]["completionTime"].is_string());
    let bad = get_json(&harness, &["job", "bad"]).await;
    assert_eq!(bad["status"]["failed"], 2);
    assert_eq!(condition(&bad, "Failed")["reason"], "BackoffLimitExceeded");
    assert!(bad["status"].get("completionTime").is_none());
    let pod = get_json(&harness, &["pod", "shell"]).await;
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], true);
    // A pod that is not restarted runs to completion; kubectl's own jsonpath wait agrees.
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=jsonpath={.status.phase}=Succeeded",
                "pod/once",
                "--timeout=20s",
            ],
        )
        .await;
    let once = get_json(&harness, &["pod", "once"]).await;
    let container = &once["status"]["containerStatuses"][0];
    assert_eq!(container["state"]["terminated"]["exitCode"], 0);
    assert_eq!(condition(&once, "Ready")["reason"], "PodCompleted");
}

#[tokio::test]
async fn the_never_ready_fault_holds_deployments_unavailable_until_lifted() {
    let harness = harness().await;
    let cluster = harness.sim().cluster("edge-1").unwrap();
    cluster.faults.set(Some(FaultPlan {
        never_ready: true,
        ..FaultPlan::default()
    }));
    harness.apply("edge-1", DEPLOYMENT, &[]).await;
    let waited = harness
        .kubectl(
            "edge-1",
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "--timeout=1s",
            ],
        )
        .await;
    assert!(!waited.status.success(), "{}", stderr(&waited));
    let deployment = get_json(&harness, &["deployment", "web"]).await;
    assert_eq!(deployment["status"]["observedGeneration"], 1);
    assert_eq!(deployment["status"]["unavailableReplicas"], 2);
    assert!(deployment["status"].get("readyReplicas").is_none());
    assert_eq!(condition(&deployment, "Available")["status"], "False");
    assert_eq!(
        condition(&deployment, "Progressing")["reason"],
        "ReplicaSetUpdated"
    );

    cluster.faults.set(None);
    harness
        .kubectl_ok(
            "edge-1",
            &[
                "wait",
                "--for=condition=Available",
                "deployment/web",
                "--timeout=20s",
            ],
        )
        .await;
}

#[tokio::test]
async fn no_delay_means_ready_in_the_same_request() {
    let harness = Harness::start_with(1, |options| options.ready_after = Duration::ZERO).await;
    harness.apply("edge-1", DEPLOYMENT, &[]).await;
    let deployment = get_json(&harness, &["deployment", "web"]).await;
    assert_eq!(deployment["status"]["availableReplicas"], 2);
    assert_eq!(condition(&deployment, "Available")["status"], "True");
}

fn csr_manifest(name: &str, request_pem: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [digital signature, key encipherment, client auth]\n",
        STANDARD.encode(request_pem)
    )
}

#[tokio::test]
async fn approved_csrs_are_signed_by_the_cluster_ca_and_denied_ones_are_not() {
    let harness = harness().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge-admin");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "emco");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let manifest = format!(
        "{}---\n{}",
        csr_manifest("admin", &request),
        csr_manifest("intruder", &request)
    );
    harness.apply("edge-1", &manifest, &[]).await;
    harness
        .kubectl_ok("edge-1", &["certificate", "approve", "admin"])
        .await;
    harness
        .kubectl_ok("edge-1", &["certificate", "deny", "intruder"])
        .await;

    let mut encoded = String::new();
    for _ in 0..100 {
        encoded = harness
            .kubectl_ok(
                "edge-1",
                &[
                    "get",
                    "csr",
                    "admin",
                    "-o",
                    "jsonpath={.status.certificate}",
                ],
            )
            .await;
        if !encoded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let certificate = STANDARD.decode(encoded.trim()).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&certificate).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    let certificate = pem.parse_x509().unwrap();
    assert_eq!(certificate.subject().to_string(), "CN=edge-admin, O=emco");
    assert_eq!(
        certificate.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&key)
    );
    let extended = certificate.extended_key_usage().unwrap().unwrap().value;
    assert!(extended.client_auth);
    let validity = certificate.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        86400 + 300
    );

    let cluster = harness.sim().cluster("edge-1").unwrap();
    let ca_pem = emco_sim::controllers::cluster_ca_pem(&mut cluster.lock()).unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    assert_eq!(certificate.issuer(), ca.subject());
    certificate.verify_signature(Some(ca.public_key())).unwrap();

    let table = harness.kubectl_ok("edge-1", &["get", "csr"]).await;
    let admin_row = table
        .lines()
        .find(|line| line.starts_with("admin"))
        .unwrap();
    assert!(admin_row.contains("Approved,Issued"), "{table}");
    let denied = get_json(&harness, &["csr", "intruder"]).await;
    assert_eq!(condition(&denied, "Denied")["status"], "True");
    assert!(denied["status"].get("certificate").is_none());
}
