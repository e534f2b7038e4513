//! kube-rs against an in-process simulator, from the kubeconfig it wrote: discovery, typed and
//! dynamic objects, server-side apply, and the runtime watcher.

use crate::common;

use std::time::Duration;

use common::Harness;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;

async fn client(harness: &Harness, cluster: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(harness.kubeconfig(cluster)).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn discovery_typed_and_dynamic_objects() {
    let harness = Harness::start(1).await;
    let client = client(&harness, "edge-1").await;

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (deployments, capabilities) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(deployments.plural, "deployments");
    assert!(
        capabilities
            .subresources
            .iter()
            .any(|(resource, _)| resource.plural == "deployments/status"
                || resource.plural == "status")
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|namespace| namespace.metadata.name)
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let configmaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let mut object = DynamicObject::new("settings", &resource);
    object.metadata.labels = Some([("app".to_owned(), "edge".to_owned())].into());
    object.data = json!({"data": {"mode": "edge"}});
    let created = configmaps
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let fetched = configmaps.get("settings").await.unwrap();
    assert_eq!(fetched.data["data"]["mode"], "edge");
    let selected = configmaps
        .list(&ListParams::default().labels("app=edge"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    let duplicate = configmaps
        .create(&PostParams::default(), &object)
        .await
        .unwrap_err();
    match duplicate {
        kube::Error::Api(status) => assert_eq!(
            (status.code, status.reason.as_str()),
            (409, "AlreadyExists")
        ),
        other => panic!("expected an API error, got {other}"),
    }

    // Server-side apply of a Deployment, twice with different managers.
    let deployment_resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    let deployments: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &deployment_resource);
    let manifest = |replicas: u32| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
            }
        })
    };
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply("emco"),
            &Patch::Apply(manifest(2)),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["replicas"], 2);
    let conflict = deployments
        .patch(
            "web",
            &PatchParams::apply("intruder"),
            &Patch::Apply(manifest(3)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, kube::Error::Api(ref status) if status.code == 409),
        "{conflict}"
    );
    let forced = deployments
        .patch(
            "web",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(manifest(3)),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["replicas"], 3);

    configmaps
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    assert!(configmaps.get_opt("settings").await.unwrap().is_none());
}

#[tokio::test]
async fn runtime_watcher_sees_initial_state_and_changes() {
    let harness = Harness::start(1).await;
    let client = client(&harness, "edge-1").await;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let configmaps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let mut first = DynamicObject::new("first", &resource);
    first.data = json!({"data": {"a": "1"}});
    configmaps
        .create(&PostParams::default(), &first)
        .await
        .unwrap();

    let mut events = watcher(configmaps.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("a watcher event within 10s")
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, watcher::Event::Init));
    match next().await {
        watcher::Event::InitApply(object) => {
            assert_eq!(object.metadata.name.as_deref(), Some("first"))
        }
        other => panic!("expected the existing object, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::InitDone));

    let mut second = DynamicObject::new("second", &resource);
    second.data = json!({"data": {"b": "2"}});
    configmaps
        .create(&PostParams::default(), &second)
        .await
        .unwrap();
    match next().await {
        watcher::Event::Apply(object) => {
            assert_eq!(object.metadata.name.as_deref(), Some("second"))
        }
        other => panic!("expected the new object, got {other:?}"),
    }
    configmaps
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    match next().await {
        watcher::Event::Delete(object) => {
            assert_eq!(object.metadata.name.as_deref(), Some("first"))
        }
        other => panic!("expected the deletion, got {other:?}"),
    }
}
