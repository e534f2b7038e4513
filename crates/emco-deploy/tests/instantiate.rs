//! The deploy path on its own: a real store, the real Helm, and a recording engine in place of
//! the synchronizer (which has its own suite): what instantiate reads, renders, places, stores
//! and hands over — and that a refused instantiate leaves nothing behind.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use emco_core::appcontext::{ClusterId, ContextObject};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{Action, CloudAction, CloudStatus, DigStatus};
use emco_core::placement::Placement;
use emco_core::status::AppContextStatus;
use emco_deploy::gather::GroupInputs;
use emco_deploy::{
    ActionController, ControllerSet, Customiser, DeployError, Deployer, Engine,
    PlacementController, RunReport,
};
use emco_helm::{HelmConfig, HelmRenderer};
use emco_store::Op;
use emco_store::attachment::{FilePart, pack};
use emco_store::repository::{DanglingReferences, Repository};
use serde_json::{Value, json};

/// Remembers what the deployer asked of the synchronizer.
#[derive(Default)]
struct RecordingEngine {
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Engine for RecordingEngine {
    fn instantiate_ops(&self, context: &str) -> Vec<Op> {
        vec![Op::Put {
            key: format!("test/order/{context}"),
            value: b"instantiate".to_vec(),
        }]
    }
    fn update_ops(&self, from: &str, to: &str, _: &str, _: bool) -> Vec<Op> {
        vec![Op::Put {
            key: format!("test/order/{to}"),
            value: format!("update from {from}").into_bytes(),
        }]
    }
    fn terminate_ops(&self, context: &str, _: &str) -> Vec<Op> {
        vec![Op::Put {
            key: format!("test/order/{context}"),
            value: b"terminate".to_vec(),
        }]
    }
    fn forget_ops(&self, _: &str) -> Vec<Op> {
        Vec::new()
    }
    fn kick(&self, context: &str) {
        self.calls.lock().unwrap().push(format!("kick {context}"));
    }
    async fn stop(&self, _: &str) -> Result<bool, DeployError> {
        Ok(false)
    }
    async fn report(&self, _: &str) -> Result<Option<RunReport>, DeployError> {
        Ok(None)
    }
    async fn run_status(&self, _: &str) -> Result<Option<AppContextStatus>, DeployError> {
        Ok(None)
    }
}

fn key(kind: &str, elements: &[(&str, &str)]) -> ResourceKey {
    ResourceKey::new(
        kind,
        elements
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

const CA: [(&str, &str); 3] = [
    ("project", "p"),
    ("compositeApp", "ca"),
    ("compositeAppVersion", "v1"),
];

fn under(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut elements = CA.to_vec();
    elements.extend_from_slice(extra);
    elements
}

fn meta(name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": spec})
}

/// A .tgz of `files` (path, contents).
fn tgz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, contents.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn upload(bytes: Vec<u8>) -> Option<Vec<u8>> {
    Some(pack(&[FilePart {
        field: "file".into(),
        filename: Some("upload.tgz".into()),
        contents: bytes,
    }]))
}

fn chart(name: &str, templates: &[(&str, &str)]) -> Vec<u8> {
    let mut files = vec![(
        format!("{name}/Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n").into_bytes(),
    )];
    for (file, text) in templates {
        files.push((format!("{name}/templates/{file}"), text.as_bytes().to_vec()));
    }
    tgz(&files)
}

fn profile() -> Vec<u8> {
    tgz(&[
        (
            "manifest.yaml".into(),
            b"version: v1\ntype:\n  values: override_values.yaml\n".to_vec(),
        ),
        ("override_values.yaml".into(), b"{}\n".to_vec()),
    ])
}

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  a: b\n";

struct Hub {
    repo: Arc<Repository>,
    engine: Arc<RecordingEngine>,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// A project with an instantiated admin cloud over edge-1..3 (label `edge`), a composite app
    /// `ca` v1 with one app `web` (chart `templates`), its profile (unless `with_profile` is
    /// false), and an approved group `dig` placing `web` on the label.
    async fn new(templates: &[(&str, &str)], with_profile: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = emco_store::open("", dir.path()).await.unwrap();
        let repo = Arc::new(
            Repository::open(store)
                .await
                .unwrap()
                .with_dangling_references(DanglingReferences::Allow),
        );
        let create = |k: ResourceKey, data: Value, blob: Option<Vec<u8>>| {
            let repo = repo.clone();
            async move { repo.create(&k, data, blob).await.unwrap() }
        };
        create(
            key("clusterProvider", &[("clusterProvider", "prov")]),
            meta("prov", json!({})),
            None,
        )
        .await;
        for cluster in ["edge-1", "edge-2", "edge-3"] {
            let c = [("clusterProvider", "prov"), ("cluster", cluster)];
            create(key("cluster", &c), meta(cluster, json!({})), None).await;
            let mut l = c.to_vec();
            l.push(("clusterLabel", "edge"));
            create(
                key("clusterLabel", &l),
                json!({"clusterLabel": "edge"}),
                None,
            )
            .await;
        }
        create(
            key("project", &[("project", "p")]),
            meta("p", json!({})),
            None,
        )
        .await;
        let cloud = key("logicalCloud", &[("project", "p"), ("logicalCloud", "lc")]);
        create(cloud.clone(), meta("lc", json!({"level": "0"})), None).await;
        for cluster in ["edge-1", "edge-2", "edge-3"] {
            create(
                key(
                    "clusterReference",
                    &[
                        ("project", "p"),
                        ("logicalCloud", "lc"),
                        ("clusterReference", cluster),
                    ],
                ),
                meta(
                    cluster,
                    json!({"clusterProvider": "prov", "cluster": cluster}),
                ),
                None,
            )
            .await;
        }
        let mut cloud_state = CloudStatus::default();
        cloud_state
            .apply(CloudAction::Instantiate, "t".into())
            .unwrap();
        repo.put_state(&cloud, &serde_json::to_value(&cloud_state).unwrap(), 0)
            .await
            .unwrap();

        create(
            key("compositeAppVersion", &CA),
            meta("ca", json!({"compositeAppVersion": "v1"})),
            None,
        )
        .await;
        create(
            key("app", &under(&[("app", "web")])),
            meta("web", json!({})),
            upload(chart("web", templates)),
        )
        .await;
        create(
            key("compositeProfile", &under(&[("compositeProfile", "cp")])),
            meta("cp", json!({})),
            None,
        )
        .await;
        if with_profile {
            create(
                key(
                    "appProfile",
                    &under(&[("compositeProfile", "cp"), ("appProfile", "web-profile")]),
                ),
                meta("web-profile", json!({"app": "web"})),
                upload(profile()),
            )
            .await;
        }
        let dig = dig_key();
        create(
            dig.clone(),
            meta(
                "dig",
                json!({"compositeProfile": "cp", "version": "r1", "logicalCloud": "lc"}),
            ),
            None,
        )
        .await;
        create(
            key(
                "genericPlacementIntent",
                &under(&[
                    ("deploymentIntentGroup", "dig"),
                    ("genericPlacementIntent", "gpi"),
                ]),
            ),
            meta("gpi", json!({})),
            None,
        )
        .await;
        create(
            key(
                "genericAppPlacementIntent",
                &under(&[
                    ("deploymentIntentGroup", "dig"),
                    ("genericPlacementIntent", "gpi"),
                    ("genericAppPlacementIntent", "web-placement"),
                ]),
            ),
            meta(
                "web-placement",
                json!({"app": "web", "intent": {"allOf": [{"clusterProvider": "prov", "clusterLabel": "edge"}]}}),
            ),
            None,
        )
        .await;
        let mut state = DigStatus::default();
        state.apply(Action::Approve, "t".into()).unwrap();
        repo.put_state(&dig, &serde_json::to_value(&state).unwrap(), 0)
            .await
            .unwrap();
        Self {
            repo,
            engine: Arc::new(RecordingEngine::default()),
            _dir: dir,
        }
    }

    fn deployer(&self) -> Deployer {
        let helm = emco_helm::find_helm()
            .or_else(|| {
                let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
                local.exists().then_some(local)
            })
            .expect("helm (scripts/ensure-deps.sh installs it)");
        Deployer::new(
            self.repo.clone(),
            Arc::new(HelmRenderer::new(HelmConfig::new(helm))),
            self.engine.clone(),
        )
    }

    async fn state(&self) -> DigStatus {
        let (value, _) = self.repo.get_state(&dig_key()).await.unwrap().unwrap();
        serde_json::from_value(value).unwrap()
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.repo.store().list_keys(prefix, None).await.unwrap()
    }
}

fn dig_key() -> ResourceKey {
    key(
        "deploymentIntentGroup",
        &under(&[("deploymentIntentGroup", "dig")]),
    )
}

/// Adds an annotation naming itself, after checking the ones it expects to see already.
struct Annotate {
    name: &'static str,
    expects: &'static [&'static str],
}

#[async_trait]
impl ActionController for Annotate {
    async fn prepare(&self, _: &GroupInputs, intent: &str) -> Result<Box<dyn Customiser>, String> {
        Ok(Box::new(Annotation {
            name: self.name,
            expects: self.expects,
            intent: intent.to_owned(),
        }))
    }
}

struct Annotation {
    name: &'static str,
    expects: &'static [&'static str],
    intent: String,
}

impl Customiser for Annotation {
    fn customise(
        &self,
        _: &str,
        _: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        let mut objects = objects.to_vec();
        for object in &mut objects {
            let annotations = object.object["metadata"]
                .as_object_mut()
                .ok_or("no metadata")?
                .entry("annotations")
                .or_insert_with(|| json!({}));
            for earlier in self.expects {
                if annotations.get(*earlier).is_none() {
                    return Err(format!("{} ran before {earlier}", self.name));
                }
            }
            annotations[self.name] = json!(self.intent);
        }
        Ok(Some(objects))
    }
}

/// Keeps the app off one cluster.
struct Exclude(&'static str);

#[async_trait]
impl PlacementController for Exclude {
    async fn filter(
        &self,
        _: &GroupInputs,
        _: &str,
        placement: &mut Placement,
    ) -> Result<(), String> {
        for app in placement.values_mut() {
            app.mandatory.retain(|c| c.cluster() != self.0);
        }
        Ok(())
    }
}

#[tokio::test]
async fn controllers_run_in_priority_order_around_placement() {
    let hub = Hub::new(&[("configmap.yaml", CONFIGMAP)], true).await;
    let group = under(&[("deploymentIntentGroup", "dig"), ("groupIntent", "intents")]);
    hub.repo
        .create(
            &key("groupIntent", &group),
            meta(
                "intents",
                json!({"intent": {"genericPlacementIntent": "gpi", "second": "i2", "first": "i1", "trim": "t1", "ghost": "g1"}}),
            ),
            None,
        )
        .await
        .unwrap();
    for (name, kind, priority) in [
        ("first", "action", 1),
        ("second", "action", 2),
        ("trim", "placement", 0),
    ] {
        hub.repo
            .create(
                &key(
                    "controller",
                    &[("controllerGroup", "orchestrator"), ("controller", name)],
                ),
                meta(
                    name,
                    json!({"host": "localhost", "port": 9000, "type": kind, "priority": priority}),
                ),
                None,
            )
            .await
            .unwrap();
    }
    let controllers = ControllerSet::default()
        .with_action(
            "second",
            Arc::new(Annotate {
                name: "second",
                expects: &["first"],
            }),
        )
        .with_action(
            "first",
            Arc::new(Annotate {
                name: "first",
                expects: &[],
            }),
        )
        .with_placement("trim", Arc::new(Exclude("edge-3")));
    let deployer = hub.deployer().with_controllers(controllers);

    let done = deployer.instantiate(&dig_key()).await.unwrap();
    assert_eq!(done.skipped_controllers, ["ghost"]);
    assert_eq!(done.revision, 1);

    let context = deployer
        .load_context(&done.context_id)
        .await
        .unwrap()
        .unwrap();
    let web = context.app("web").unwrap();
    let clusters: BTreeSet<String> = web.clusters.keys().map(|c| c.cluster.clone()).collect();
    assert_eq!(clusters, BTreeSet::from(["edge-1".into(), "edge-2".into()]));
    assert_eq!(
        web.variants.len(),
        1,
        "equal customisations share one variant"
    );
    let object = &web.variants.values().next().unwrap().objects[0];
    assert_eq!(object.name, "r1-settings");
    assert_eq!(object.namespace.as_deref(), Some("default"));
    assert_eq!(object.object["metadata"]["annotations"]["first"], "i1");
    assert_eq!(object.object["metadata"]["annotations"]["second"], "i2");

    // The state and the work order went in together; then the engine was kicked.
    let state = hub.state().await;
    assert_eq!(state.status_context_id, done.context_id);
    assert_eq!(state.current_context(), Some(done.context_id.as_str()));
    assert_eq!(
        hub.keys("test/order/").await,
        [format!("test/order/{}", done.context_id)]
    );
    assert_eq!(
        *hub.engine.calls.lock().unwrap(),
        [format!("kick {}", done.context_id)]
    );
}

#[tokio::test]
async fn a_chart_that_does_not_render_changes_nothing() {
    let broken = "{{ fail \"the chart needs .Values.mandatory\" }}\n";
    let hub = Hub::new(
        &[("configmap.yaml", CONFIGMAP), ("broken.yaml", broken)],
        true,
    )
    .await;
    let error = hub.deployer().instantiate(&dig_key()).await.unwrap_err();
    assert!(matches!(error, DeployError::BadRequest(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("app \"web\""), "{message}");
    assert!(
        message.contains("the chart needs .Values.mandatory"),
        "{message}"
    );
    assert_eq!(
        hub.state().await.state,
        emco_core::lifecycle::DigState::Approved
    );
    assert!(hub.keys("ctx/").await.is_empty());
    assert!(hub.keys("test/order/").await.is_empty());
    assert!(hub.engine.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_profile_is_named() {
    let hub = Hub::new(&[("configmap.yaml", CONFIGMAP)], false).await;
    let error = hub.deployer().instantiate(&dig_key()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "app \"web\" has no profile in composite profile \"cp\""
    );
    assert!(hub.keys("ctx/").await.is_empty());
}

#[tokio::test]
async fn instantiating_twice_is_refused_and_terminate_records_its_order() {
    let hub = Hub::new(&[("configmap.yaml", CONFIGMAP)], true).await;
    let deployer = hub.deployer();
    let done = deployer.instantiate(&dig_key()).await.unwrap();
    let again = deployer.instantiate(&dig_key()).await.unwrap_err();
    assert!(matches!(again, DeployError::Conflict(_)), "{again:?}");
    deployer.terminate(&dig_key()).await.unwrap();
    let order = hub
        .repo
        .store()
        .get(&format!("test/order/{}", done.context_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.value, b"terminate");
    let state = hub.state().await;
    assert_eq!(state.state, emco_core::lifecycle::DigState::Terminated);
    assert_eq!(state.actions.last().unwrap().instance, done.context_id);
}
