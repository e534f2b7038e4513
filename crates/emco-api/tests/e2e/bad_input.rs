//! Bad input gets a clear answer and loses nothing; uploads come back as they went in.

use crate::common;

use axum::http::StatusCode;
use common::Hub;
use serde_json::{Value, json};

/// A gzipped tar with the given entries (`(path, contents)`; contents `None` = symlink to /etc/passwd).
fn tgz(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, contents) in entries {
        let mut header = tar::Header::new_gnu();
        match contents {
            Some(c) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(c.len() as u64);
                header.set_mode(0o644);
                // `set_path` refuses `..`; write the raw name to build hostile archives.
                let name = &mut header.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_cksum();
                tar.append(&header, *c).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                tar.append_link(&mut header, path, "/etc/passwd").unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn chart() -> Vec<u8> {
    tgz(&[
        (
            "web/Chart.yaml",
            Some(b"apiVersion: v2\nname: web\nversion: 0.1.0\n"),
        ),
        ("web/values.yaml", Some(b"replicas: 1\n")),
        (
            "web/templates/cm.yaml",
            Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
        ),
    ])
}

const APPS: &str = "/v2/projects/p/composite-apps/ca/v1/apps";

async fn with_composite_app(hub: &Hub) {
    assert_eq!(
        hub.json("POST", "/v2/projects", json!({"metadata": {"name": "p"}}))
            .await
            .status,
        StatusCode::CREATED
    );
    let ca = json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v1"}});
    assert_eq!(
        hub.json("POST", "/v2/projects/p/composite-apps", ca)
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn hostile_chart_archives_are_refused_and_nothing_is_stored() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_composite_app(&hub).await;
    let meta = json!({"metadata": {"name": "web"}});
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not an archive", b"just text".to_vec()),
        (
            "parent directory",
            tgz(&[
                ("web/Chart.yaml", Some(b"name: web\n")),
                ("web/../../evil", Some(b"x")),
            ]),
        ),
        (
            "absolute path",
            tgz(&[("/web/Chart.yaml", Some(b"name: web\n"))]),
        ),
        (
            "symlink",
            tgz(&[
                ("web/Chart.yaml", Some(b"name: web\n")),
                ("web/passwd", None),
            ]),
        ),
        (
            "no Chart.yaml",
            tgz(&[("web/values.yaml", Some(b"a: 1\n"))]),
        ),
    ];
    for (what, archive) in cases {
        let reply = hub
            .multipart("POST", APPS, &meta, Some(("web.tgz", &archive)))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.text()
        );
        assert!(
            reply.text().contains("file"),
            "{what}: message names the file: {}",
            reply.text()
        );
        assert_eq!(hub.get(APPS).await.text(), "[]", "{what}: nothing stored");
    }
    let reply = hub.multipart("POST", APPS, &meta, None).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a chart is required: {}",
        reply.text()
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_and_nothing_is_stored() {
    let hub = Hub::new(64 * 1024).await;
    with_composite_app(&hub).await;
    let big = vec![b'x'; 100 * 1024];
    let reply = hub
        .multipart(
            "POST",
            APPS,
            &json!({"metadata": {"name": "web"}}),
            Some(("web.tgz", &big)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(hub.get(APPS).await.text(), "[]");
    let huge_description =
        json!({"metadata": {"name": "p2", "description": "d".repeat(100 * 1024)}});
    assert_eq!(
        hub.json("POST", "/v2/projects", huge_description)
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        hub.get("/v2/projects/p2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn malformed_and_invalid_bodies_name_the_problem() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    let reply = hub
        .send(
            "POST",
            "/v2/projects",
            Some("application/json"),
            None,
            b"{\"metadata\": ".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = hub
        .json(
            "POST",
            "/v2/projects",
            json!({"metadata": {"name": "bad name!"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("metadata.name"), "{}", reply.text());
    let reply = hub
        .json("POST", "/v2/projects", json!({"meta-data": {"name": "p"}}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("metadata"), "{}", reply.text());
    assert_eq!(hub.get("/v2/projects").await.text(), "[]");
    // PUT with a name that disagrees with the URL.
    assert_eq!(
        hub.json("POST", "/v2/projects", json!({"metadata": {"name": "p"}}))
            .await
            .status,
        StatusCode::CREATED
    );
    let reply = hub
        .json("PUT", "/v2/projects/p", json!({"metadata": {"name": "q"}}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("does not match"), "{}", reply.text());
    // Names that cannot exist in a path are simply not found (and cannot alias other keys).
    assert_eq!(
        hub.get("/v2/projects/p%2Fx").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn uploads_round_trip_and_get_honours_accept() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    assert_eq!(
        hub.json(
            "POST",
            "/v2/cluster-providers",
            json!({"metadata": {"name": "prov"}})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let kubeconfig = b"apiVersion: v1\nkind: Config\nclusters: []\n";
    let meta = json!({"metadata": {"name": "c1"}, "spec": {"gitOps": {"gitOpsType": ""}}});
    let reply = hub
        .multipart(
            "POST",
            "/v2/cluster-providers/prov/clusters",
            &meta,
            Some(("config", kubeconfig)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(serde_json::from_slice::<Value>(&reply.body).unwrap(), meta);

    let path = "/v2/cluster-providers/prov/clusters/c1";
    let plain = hub
        .send("GET", path, None, Some("application/json"), vec![])
        .await;
    assert_eq!(serde_json::from_slice::<Value>(&plain.body).unwrap(), meta);
    let raw = hub.raw(path).await;
    assert_eq!(raw.body, kubeconfig);
    let multi = hub
        .send("GET", path, None, Some("multipart/form-data"), vec![])
        .await;
    assert!(
        multi
            .content_type
            .starts_with("multipart/form-data; boundary="),
        "{}",
        multi.content_type
    );
    let text = multi.text();
    assert!(
        text.contains("name=\"metadata\"") && text.contains("name=\"file\"; filename=\"config\""),
        "{text}"
    );
    assert!(text.contains("clusters: []"), "{text}");

    // A chart upload comes back byte for byte.
    with_composite_app(&hub).await;
    let archive = chart();
    let reply = hub
        .multipart(
            "POST",
            APPS,
            &json!({"metadata": {"name": "web"}}),
            Some(("web.tgz", &archive)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let raw = hub.raw(&format!("{APPS}/web")).await;
    assert_eq!(raw.body, archive);
    // Updating the metadata alone keeps the chart.
    let reply = hub
        .multipart(
            "PUT",
            &format!("{APPS}/web"),
            &json!({"metadata": {"name": "web", "description": "new"}}),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let raw = hub.raw(&format!("{APPS}/web")).await;
    assert_eq!(raw.body, archive);
}

#[tokio::test]
async fn cluster_label_queries_and_gitops_clusters() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    assert_eq!(
        hub.json(
            "POST",
            "/v2/cluster-providers",
            json!({"metadata": {"name": "prov"}})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let clusters = "/v2/cluster-providers/prov/clusters";
    for name in ["c3", "c1", "c2"] {
        let reply = hub
            .multipart(
                "POST",
                clusters,
                &json!({"metadata": {"name": name}}),
                Some(("config", b"kube")),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    // A cluster without a kubeconfig is refused unless GitOps manages it.
    let reply = hub
        .multipart("POST", clusters, &json!({"metadata": {"name": "c4"}}), None)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let gitops = json!({"metadata": {"name": "g1"}, "spec": {"gitOps": {"gitOpsType": "fluxcd", "gitOpsReferenceObject": "repo", "gitOpsResourceObject": "repo"}}});
    assert_eq!(
        hub.multipart("POST", clusters, &gitops, None).await.status,
        StatusCode::CREATED
    );
    for (cluster, label) in [
        ("c3", "edge"),
        ("c1", "edge"),
        ("c1", "gpu"),
        ("c2", "core"),
    ] {
        let path = format!("{clusters}/{cluster}/labels");
        assert_eq!(
            hub.json("POST", &path, json!({"clusterLabel": label}))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let edge: Value =
        serde_json::from_slice(&hub.get(&format!("{clusters}?label=edge")).await.body).unwrap();
    assert_eq!(edge, json!(["c3", "c1"]), "names, in creation order");
    assert_eq!(
        hub.get(&format!("{clusters}?label=none")).await.status,
        StatusCode::NOT_FOUND
    );
    let with: Value =
        serde_json::from_slice(&hub.get(&format!("{clusters}?withLabels=true")).await.body)
            .unwrap();
    assert_eq!(with[0]["metadata"]["name"], "c3");
    assert_eq!(
        with[1]["labels"],
        json!([{"clusterLabel": "edge"}, {"clusterLabel": "gpu"}])
    );
    assert_eq!(with[3]["labels"], json!([]));
}

#[tokio::test]
async fn composite_app_put_may_leave_the_version_out_but_not_contradict_the_url() {
    let hub = Hub::new(emco_api::DEFAULT_MAX_BODY).await;
    with_composite_app(&hub).await;
    let path = "/v2/projects/p/composite-apps/ca/v1";
    let reply = hub
        .json(
            "PUT",
            path,
            json!({"metadata": {"name": "ca", "description": "d"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = hub
        .json(
            "PUT",
            path,
            json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v2"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let reply = hub
        .json("PUT", path, json!({"metadata": {"name": "other"}}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
}
