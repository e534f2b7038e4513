//! CertificateSigningRequests the synchronizer approves (a logical cloud's user certificate):
//! applied, approved through the `approval` subresource, ready once the cluster signed them.

use crate::common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use emco_core::status::AppContextStatus;
use emco_rsync::ClusterApi;
use serde_json::{Value, json};

fn csr(name: &str, approve: bool) -> Value {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "user-1");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let mut object = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": STANDARD.encode(request),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "key encipherment", "client auth"]},
    });
    if approve {
        object["metadata"]["annotations"] = json!({"emco/approve": "LogicalCloud"});
    }
    object
}

#[tokio::test]
async fn annotated_requests_are_approved_and_ready_once_signed_others_wait() {
    let hub = hub(1, Duration::from_millis(50)).await;
    let approved = context(
        "c1",
        vec![app(
            "cloud",
            &[1],
            resources(vec![csr("lc1-ns1-user-csr", true)]),
        )],
    );
    hub.instantiate(&approved).await;
    hub.wait_for("c1", Duration::from_secs(30), "ready", |report| {
        report.status == AppContextStatus::Instantiated && report.all_ready
    })
    .await;
    let signed = hub
        .client(1)
        .await
        .get(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            None,
            "lc1-ns1-user-csr",
        )
        .await
        .unwrap()
        .unwrap();
    let condition = &signed["status"]["conditions"][0];
    assert_eq!(condition["type"], "Approved");
    assert_eq!(condition["reason"], "LogicalCloud");
    let certificate = STANDARD
        .decode(signed["status"]["certificate"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8(certificate)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // Without the annotation nobody approves it: applied, not ready.
    let waiting = context(
        "c2",
        vec![app("other", &[1], resources(vec![csr("plain", false)]))],
    );
    hub.instantiate(&waiting).await;
    let report = hub.wait_status("c2", AppContextStatus::Instantiated).await;
    assert!(!report.all_ready);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plain = hub
        .client(1)
        .await
        .get(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            None,
            "plain",
        )
        .await
        .unwrap()
        .unwrap();
    assert!(plain["status"]["certificate"].is_null(), "{plain}");
    assert!(!hub.report("c2").await.all_ready);
}
