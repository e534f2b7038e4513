//! The integrity-enforcing repository on both backends, including races between deletes of a
//! parent (or referenced resource) and concurrent creates of its children (or referrers).

use crate::common;

use std::sync::Arc;

use emco_core::key::ResourceKey;
use emco_store::repository::{BlobChange, RepoError, Repository};
use serde_json::json;

fn key(kind: &str, elements: &[(&str, &str)]) -> ResourceKey {
    ResourceKey::new(
        kind,
        elements
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn project(name: &str) -> ResourceKey {
    key("project", &[("project", name)])
}

fn composite_app(project: &str, name: &str) -> ResourceKey {
    key(
        "compositeAppVersion",
        &[
            ("project", project),
            ("compositeApp", name),
            ("compositeAppVersion", "v1"),
        ],
    )
}

fn logical_cloud(project: &str, name: &str) -> ResourceKey {
    key(
        "logicalCloud",
        &[("project", project), ("logicalCloud", name)],
    )
}

fn meta(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name}})
}

async fn basics(repo: Arc<Repository>) {
    let p = project("p");
    repo.create(&p, meta("p"), None).await.unwrap();
    assert!(matches!(
        repo.create(&p, meta("p"), None).await,
        Err(RepoError::AlreadyExists(_))
    ));
    assert!(matches!(
        repo.create(&composite_app("ghost", "ca"), meta("ca"), None)
            .await,
        Err(RepoError::ParentMissing { .. })
    ));
    for i in 0..5 {
        repo.create(
            &composite_app("p", &format!("ca{}", 4 - i)),
            meta("x"),
            None,
        )
        .await
        .unwrap();
    }
    // Lists come back in creation order, not key order.
    let names: Vec<String> = repo
        .list(
            "compositeAppVersion",
            &ResourceKey::new("parent", vec![("project".into(), "p".into())]),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key.get("compositeApp").unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ca4", "ca3", "ca2", "ca1", "ca0"]);
    // Blobs stay when an update says keep.
    let app = key(
        "app",
        &[
            ("project", "p"),
            ("compositeApp", "ca0"),
            ("compositeAppVersion", "v1"),
            ("app", "a"),
        ],
    );
    repo.create(&app, meta("a"), Some(b"chart".to_vec()))
        .await
        .unwrap();
    repo.upsert(
        &app,
        json!({"metadata": {"name": "a", "description": "d"}}),
        BlobChange::Keep,
    )
    .await
    .unwrap();
    assert_eq!(
        repo.get_blob(&app).await.unwrap().as_deref(),
        Some(&b"chart"[..])
    );
    repo.delete(&app).await.unwrap();
    assert_eq!(
        repo.get_blob(&app).await.unwrap(),
        None,
        "the blob goes with its resource"
    );
}

/// Many tasks create children of a project while another deletes the project: afterwards either
/// the project exists, or none of its children do. Never an orphan.
async fn delete_racing_creates_never_orphans(repo: Arc<Repository>) {
    for round in 0..8 {
        let name = format!("race{round}");
        repo.create(&project(&name), meta(&name), None)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let repo = repo.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let _ = repo
                    .create(&composite_app(&name, &format!("ca{i}")), meta("ca"), None)
                    .await;
                let _ = repo
                    .create(&logical_cloud(&name, &format!("lc{i}")), meta("lc"), None)
                    .await;
            }));
        }
        let deleter = {
            let repo = repo.clone();
            let name = name.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    match repo.delete(&project(&name)).await {
                        Ok(()) => return true,
                        Err(RepoError::HasChildren { .. }) => {
                            // Remove what exists and try again, racing the creators.
                            let parent =
                                ResourceKey::new("parent", vec![("project".into(), name.clone())]);
                            for kind in ["compositeAppVersion", "logicalCloud"] {
                                for item in repo.list(kind, &parent).await.unwrap() {
                                    let _ = repo.delete(&item.key).await;
                                }
                            }
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                false
            })
        };
        for t in tasks {
            t.await.unwrap();
        }
        let deleted = deleter.await.unwrap();
        let parent = ResourceKey::new("parent", vec![("project".into(), name.clone())]);
        let children = repo
            .list("compositeAppVersion", &parent)
            .await
            .unwrap()
            .len()
            + repo.list("logicalCloud", &parent).await.unwrap().len();
        let exists = repo.exists(&project(&name)).await.unwrap();
        assert_eq!(exists, !deleted);
        assert!(
            exists || children == 0,
            "round {round}: project deleted but {children} children remain"
        );
    }
}

/// A referrer created while its target is being deleted: either the delete is refused or the
/// referrer is refused; never a reference to a missing resource.
async fn delete_racing_referrers_never_dangles(repo: Arc<Repository>) {
    repo.create(&project("p"), meta("p"), None).await.unwrap();
    repo.create(&composite_app("p", "ca"), meta("ca"), None)
        .await
        .unwrap();
    repo.create(
        &key(
            "compositeProfile",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("compositeProfile", "prof"),
            ],
        ),
        meta("prof"),
        None,
    )
    .await
    .unwrap();
    for round in 0..10 {
        let lc = format!("lc{round}");
        repo.create(&logical_cloud("p", &lc), meta(&lc), None)
            .await
            .unwrap();
        let dig = key(
            "deploymentIntentGroup",
            &[
                ("project", "p"),
                ("compositeApp", "ca"),
                ("compositeAppVersion", "v1"),
                ("deploymentIntentGroup", &format!("d{round}")),
            ],
        );
        let body = json!({"metadata": {"name": format!("d{round}")}, "spec": {"logicalCloud": lc, "compositeProfile": "prof"}});
        let (r1, r2) = (repo.clone(), repo.clone());
        let (dig2, lc2) = (dig.clone(), lc.clone());
        let creating = tokio::spawn(async move { r1.create(&dig2, body, None).await.is_ok() });
        let deleting =
            tokio::spawn(async move { r2.delete(&logical_cloud("p", &lc2)).await.is_ok() });
        let (created, deleted) = (creating.await.unwrap(), deleting.await.unwrap());
        assert!(
            !(created && deleted),
            "round {round}: both the referrer and the deletion of its target succeeded"
        );
        assert_eq!(repo.exists(&dig).await.unwrap(), created);
        assert_eq!(
            repo.exists(&logical_cloud("p", &lc)).await.unwrap(),
            !deleted
        );
    }
}

macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod redb {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fixture = common::redb().await.unwrap();
                    super::$name(Arc::new(Repository::open(fixture.store.clone()).await.unwrap())).await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(fixture) = common::etcd().await else { return };
                    super::$name(Arc::new(Repository::open(fixture.store.clone()).await.unwrap())).await;
                }
            )*
        }
    };
}

on_both_backends!(
    basics,
    delete_racing_creates_never_orphans,
    delete_racing_referrers_never_dangles
);
