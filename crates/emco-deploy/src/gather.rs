//! Reading everything one instantiate needs from the store: the deployment intent group, its
//! composite app's apps (charts, dependencies), the composite profile's app profiles, the generic
//! placement intents, the logical cloud (namespace, clusters) and the cluster inventory. Each
//! missing or unusable piece is refused with a message naming it, before anything is rendered.

use std::collections::BTreeSet;

use emco_core::appcontext::{CloudScope, Dependency, DigRef};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{CloudState, CloudStatus};
use emco_core::placement::{AppIntent, ClusterInventory, ClusterRef, parse_app_intent};
use emco_helm::archive::{ArchiveLimits, Chart, Profile, read_chart, read_profile};
use emco_store::repository::Repository;
use serde_json::Value;

use crate::DeployError;

/// One app of the composite app, ready to render.
#[derive(Debug)]
pub struct AppSource {
    pub name: String,
    pub chart: Chart,
    pub profile: Option<Profile>,
    pub dependencies: Vec<Dependency>,
}

/// A controller named by the group's intents (`.../intents`: `spec.intent` maps controller
/// names to intent names), with the priority and type of its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedController {
    pub name: String,
    pub intent: String,
    /// `placement` or `action`; empty when the controller is not registered.
    pub kind: String,
    pub priority: i64,
    /// `http://{spec.host}:{spec.port}` of its registration, when it has both.
    pub endpoint: Option<String>,
}

/// Everything an instantiate of one group reads.
#[derive(Debug)]
pub struct GroupInputs {
    pub key: ResourceKey,
    pub dig: DigRef,
    pub doc: Value,
    /// Helm release name: the group's `spec.version`.
    pub release_name: String,
    /// The logical cloud's namespace (`default` for an admin cloud without one).
    pub namespace: String,
    pub logical_cloud: String,
    /// The logical cloud when it is a standard or privileged (level-1) one.
    pub cloud_scope: Option<CloudScope>,
    /// In the composite app's order.
    pub apps: Vec<AppSource>,
    pub intents: Vec<AppIntent>,
    pub inventory: ClusterInventory,
    /// The clusters the logical cloud references.
    pub cloud_clusters: BTreeSet<ClusterRef>,
    /// Controllers the group's intents name, in priority order (lowest number first).
    pub controllers: Vec<NamedController>,
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

fn parent(of: &ResourceKey) -> ResourceKey {
    ResourceKey::new("parent", of.elements.clone())
}

fn str_at<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The uploaded file of a stored attachment.
fn attachment(blob: Option<Vec<u8>>) -> Option<Vec<u8>> {
    emco_store::attachment::file_contents(&blob?)
}

fn bad(message: impl Into<String>) -> DeployError {
    DeployError::BadRequest(message.into())
}

/// Loads the inputs of the deployment intent group `dig_key`.
pub async fn gather(
    repo: &Repository,
    dig_key: &ResourceKey,
    limits: &ArchiveLimits,
) -> Result<GroupInputs, DeployError> {
    let dig_doc = repo.get(dig_key).await?.data;
    let project = dig_key.get("project").unwrap_or_default().to_owned();
    let composite_app = dig_key.get("compositeApp").unwrap_or_default().to_owned();
    let version = dig_key
        .get("compositeAppVersion")
        .unwrap_or_default()
        .to_owned();
    let dig = DigRef::new(&project, &composite_app, &version, dig_key.name());
    let ca = [
        ("project", project.as_str()),
        ("compositeApp", composite_app.as_str()),
        ("compositeAppVersion", version.as_str()),
    ];

    let release_name = str_at(&dig_doc, "/spec/version").to_owned();
    if release_name.is_empty() {
        return Err(bad(format!(
            "{dig_key}: spec.version is empty; it names the Helm release"
        )));
    }

    // Logical cloud: it must exist and be instantiated; its clusters bound the placement.
    let logical_cloud = str_at(&dig_doc, "/spec/logicalCloud").to_owned();
    if logical_cloud.is_empty() {
        return Err(bad(format!("{dig_key}: spec.logicalCloud is empty")));
    }
    let cloud_key = key(
        "logicalCloud",
        &[("project", &project), ("logicalCloud", &logical_cloud)],
    );
    let cloud = match repo.get(&cloud_key).await {
        Ok(stored) => stored.data,
        Err(emco_store::repository::RepoError::NotFound(_)) => {
            return Err(bad(format!(
                "{dig_key}: logical cloud {logical_cloud:?} (spec.logicalCloud) does not exist"
            )));
        }
        Err(other) => return Err(other.into()),
    };
    let cloud_state: CloudStatus = match repo.get_state(&cloud_key).await? {
        Some((value, _)) => serde_json::from_value(value)
            .map_err(|e| DeployError::Internal(format!("state of {cloud_key} is corrupt: {e}")))?,
        None => CloudStatus::default(),
    };
    if cloud_state.state != CloudState::Instantiated {
        return Err(DeployError::Conflict(format!(
            "logical cloud {logical_cloud:?} is not instantiated ({:?}); instantiate it first",
            cloud_state.state
        )));
    }
    let namespace = match str_at(&cloud, "/spec/namespace") {
        "" => "default".to_owned(),
        namespace => namespace.to_owned(),
    };
    let cloud_scope = (!emco_core::lifecycle::is_admin_cloud(&cloud)).then(|| CloudScope {
        logical_cloud: logical_cloud.clone(),
        namespace: namespace.clone(),
        instantiates_cloud: false,
    });
    let mut cloud_clusters = BTreeSet::new();
    for reference in repo.list("clusterReference", &parent(&cloud_key)).await? {
        let provider = str_at(&reference.data, "/spec/clusterProvider");
        let cluster = str_at(&reference.data, "/spec/cluster");
        if !provider.is_empty() && !cluster.is_empty() {
            cloud_clusters.insert(ClusterRef::new(provider, cluster));
        }
    }

    let inventory = inventory(repo).await?;

    // Apps, charts and dependencies.
    let ca_key = key("compositeAppVersion", &ca);
    let mut apps = Vec::new();
    let profiles = app_profiles(repo, &dig_doc, &ca, limits).await?;
    for app in repo.list("app", &parent(&ca_key)).await? {
        let name = app.key.name().to_owned();
        let archive = attachment(repo.get_blob(&app.key).await?).ok_or_else(|| {
            bad(format!(
                "app {name:?} has no Helm chart archive; upload one with the app"
            ))
        })?;
        let chart = read_chart(&archive, limits)
            .map_err(|e| bad(format!("the Helm chart of app {name:?} is unusable: {e}")))?;
        let mut dependencies = Vec::new();
        for dependency in repo.list("appDependency", &parent(&app.key)).await? {
            let spec = dependency.data.get("spec").cloned().unwrap_or(Value::Null);
            dependencies.push(Dependency::from_spec(&spec).map_err(|e| {
                bad(format!(
                    "app dependency {} of app {name:?}: {e}",
                    dependency.key.name()
                ))
            })?);
        }
        let profile = match &profiles {
            None => None,
            Some((profile_name, list)) => {
                let found = list.iter().position(|(app_name, _)| *app_name == name);
                match found {
                    Some(index) => Some(list[index].1.clone()),
                    None => {
                        return Err(bad(format!(
                            "app {name:?} has no profile in composite profile {profile_name:?}"
                        )));
                    }
                }
            }
        };
        apps.push(AppSource {
            name,
            chart,
            profile,
            dependencies,
        });
    }
    if apps.is_empty() {
        return Err(bad(format!(
            "composite app {composite_app:?} version {version:?} has no apps"
        )));
    }

    // Generic placement intents and their app intents.
    let mut intents = Vec::new();
    for placement in repo
        .list("genericPlacementIntent", &parent(dig_key))
        .await?
    {
        for app_intent in repo
            .list("genericAppPlacementIntent", &parent(&placement.key))
            .await?
        {
            intents.push(parse_app_intent(&app_intent.data).map_err(|e| {
                bad(format!(
                    "placement intent {}/{}: {e}",
                    placement.key.name(),
                    app_intent.key.name()
                ))
            })?);
        }
    }

    let controllers = named_controllers(repo, dig_key).await?;

    Ok(GroupInputs {
        key: dig_key.clone(),
        dig,
        doc: dig_doc,
        release_name,
        namespace,
        logical_cloud,
        cloud_scope,
        apps,
        intents,
        inventory,
        cloud_clusters,
        controllers,
    })
}

/// The composite profile named by `spec.compositeProfile` and its app profiles (`None` when the
/// group names none).
async fn app_profiles(
    repo: &Repository,
    dig_doc: &Value,
    ca: &[(&str, &str); 3],
    limits: &ArchiveLimits,
) -> Result<Option<(String, Vec<(String, Profile)>)>, DeployError> {
    let profile_name = str_at(dig_doc, "/spec/compositeProfile");
    if profile_name.is_empty() {
        return Ok(None);
    }
    let mut elements = ca.to_vec();
    elements.push(("compositeProfile", profile_name));
    let profile_key = key("compositeProfile", &elements);
    if !repo.exists(&profile_key).await? {
        return Err(bad(format!(
            "composite profile {profile_name:?} (spec.compositeProfile) does not exist"
        )));
    }
    let mut list = Vec::new();
    for app_profile in repo.list("appProfile", &parent(&profile_key)).await? {
        let app = str_at(&app_profile.data, "/spec/app").to_owned();
        let archive = attachment(repo.get_blob(&app_profile.key).await?).ok_or_else(|| {
            bad(format!(
                "profile {:?} of app {app:?} has no archive",
                app_profile.key.name()
            ))
        })?;
        let profile = read_profile(&archive, limits).map_err(|e| {
            bad(format!(
                "profile {:?} of app {app:?} is unusable: {e}",
                app_profile.key.name()
            ))
        })?;
        list.push((app, profile));
    }
    Ok(Some((profile_name.to_owned(), list)))
}

/// Every cluster and cluster label, read with two key scans (names and labels live in the keys).
async fn inventory(repo: &Repository) -> Result<ClusterInventory, DeployError> {
    let store = repo.store();
    let mut inventory = ClusterInventory::new();
    let root = ResourceKey::new("root", Vec::new());
    for data_key in store
        .list_keys(&root.child_prefix("clusterProvider"), None)
        .await?
    {
        if let Some(values) = ResourceKey::values_from_data_key("clusterProvider", &data_key)
            && let [provider] = values.as_slice()
        {
            inventory.add_provider(provider);
        }
    }
    for data_key in store.list_keys(&root.child_prefix("cluster"), None).await? {
        if let Some(values) = ResourceKey::values_from_data_key("cluster", &data_key)
            && let [provider, cluster] = values.as_slice()
        {
            inventory.add_cluster(provider, cluster);
        }
    }
    for data_key in store
        .list_keys(&root.child_prefix("clusterLabel"), None)
        .await?
    {
        if let Some(values) = ResourceKey::values_from_data_key("clusterLabel", &data_key)
            && let [provider, cluster, label] = values.as_slice()
        {
            inventory.add_label(provider, cluster, label);
        }
    }
    Ok(inventory)
}

/// The controllers the group's intents name, with their registrations, by priority.
async fn named_controllers(
    repo: &Repository,
    dig_key: &ResourceKey,
) -> Result<Vec<NamedController>, DeployError> {
    let mut named = Vec::new();
    for group_intent in repo.list("groupIntent", &parent(dig_key)).await? {
        let Some(map) = group_intent
            .data
            .pointer("/spec/intent")
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (controller, intent) in map {
            let registration = key(
                "controller",
                &[
                    ("controllerGroup", "orchestrator"),
                    ("controller", controller),
                ],
            );
            let (kind, priority, endpoint) = match repo.get(&registration).await {
                Ok(stored) => {
                    let host = str_at(&stored.data, "/spec/host");
                    let port = stored.data.pointer("/spec/port").and_then(|port| {
                        port.as_u64()
                            .or_else(|| port.as_str().and_then(|text| text.parse().ok()))
                    });
                    (
                        str_at(&stored.data, "/spec/type").to_owned(),
                        stored
                            .data
                            .pointer("/spec/priority")
                            .and_then(Value::as_i64)
                            .unwrap_or(0),
                        port.filter(|_| !host.is_empty())
                            .map(|port| format!("http://{host}:{port}")),
                    )
                }
                Err(emco_store::repository::RepoError::NotFound(_)) => (String::new(), 0, None),
                Err(other) => return Err(other.into()),
            };
            named.push(NamedController {
                name: controller.clone(),
                intent: intent.as_str().unwrap_or_default().to_owned(),
                kind,
                priority,
                endpoint,
            });
        }
    }
    named.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
    Ok(named)
}
