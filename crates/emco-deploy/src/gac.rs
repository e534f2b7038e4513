//! The generic action controller (upstream's GAC, named `gac` in a group's intents). A generic
//! K8s intent holds resources, each for one app: a new object the app gets (from the resource's
//! file; a ConfigMap or Secret may also be built from data files) or an object the app's charts
//! render (`newObject: "false"`). Each resource's customizations say on which of the app's
//! clusters it applies (`clusterSpecific`, `clusterInfo`: by label or name, allow or deny) and
//! how: a JSON patch (`patchType: json`), strategic merge patch files (`merge`), data files for
//! ConfigMaps and Secrets (`configMapOptions`/`secretOptions` name their keys).
//!
//! [`GacController::prepare`] reads the intent once per revision built; [`GacIntent`] then
//! customises each app and cluster without I/O.
//!
//! Differences from upstream, on purpose: the customizations of a new object that select a
//! cluster all apply, in creation order (upstream creates the object once per customization,
//! and the last one wins); a new ConfigMap or Secret keeps every field of its template (upstream
//! re-serializes only apiVersion, kind, metadata, type and data). Patch values from an external
//! service (`$(http…)$`) are fetched when the intent is read; a query of the cluster kv-pairs
//! API is answered from this hub's own store whatever host it names (see
//! [`resolve_external_values`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use emco_core::appcontext::{ClusterId, ContextObject};
use emco_core::key::ResourceKey;
use emco_patch::{BuiltinSchema, GroupVersionKind};
use emco_store::repository::{RepoError, Repository};
use serde_json::{Map, Value, json};

use crate::controllers::{ActionController, Customiser};
use crate::gather::GroupInputs;

/// The name a group's intents give the controller (`spec.intent.gac`).
pub const NAME: &str = "gac";

/// The controller: reads intents from the hub's repository.
pub struct GacController {
    repo: Arc<Repository>,
}

impl GacController {
    pub fn new(repo: Arc<Repository>) -> Self {
        Self { repo }
    }
}

#[async_trait]
impl ActionController for GacController {
    async fn prepare(
        &self,
        group: &GroupInputs,
        intent: &str,
    ) -> Result<Box<dyn Customiser>, String> {
        Ok(Box::new(
            load(&self.repo, group, intent)
                .await
                .map_err(|e| e.to_string())?,
        ))
    }
}

/// Why a generic K8s intent cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GacError {
    #[error("generic K8s intent {0:?} does not exist")]
    MissingIntent(String),
    #[error("resource {resource:?}: {message}")]
    Resource { resource: String, message: String },
    #[error("resource {resource:?}, customization {customization:?}: {message}")]
    Customization {
        resource: String,
        customization: String,
        message: String,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Which of an app's clusters a customization applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClusterFilter {
    All,
    Only(BTreeSet<ClusterId>),
    Except(BTreeSet<ClusterId>),
}

impl ClusterFilter {
    fn selects(&self, cluster: &ClusterId) -> bool {
        match self {
            ClusterFilter::All => true,
            ClusterFilter::Only(set) => set.contains(cluster),
            ClusterFilter::Except(set) => !set.contains(cluster),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Patch {
    None,
    /// RFC 6902 operations.
    Json(Value),
    /// Strategic merge patches: the customization's files (for ConfigMaps and Secrets, those
    /// their data key options mark `mergePatch: "true"`).
    Merge,
}

/// One uploaded customization file.
#[derive(Debug, Clone, PartialEq)]
struct DataFile {
    /// The data key it becomes in a new ConfigMap or Secret.
    key: String,
    contents: Vec<u8>,
    /// A strategic merge patch rather than data.
    merge_patch: bool,
    file_name: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Customization {
    name: String,
    clusters: ClusterFilter,
    patch: Patch,
    files: Vec<DataFile>,
}

#[derive(Debug, Clone, PartialEq)]
struct GacResource {
    name: String,
    app: String,
    new_object: bool,
    api_version: String,
    kind: String,
    object_name: String,
    /// The resource's file, parsed (the new object's template).
    template: Option<Value>,
    customizations: Vec<Customization>,
}

/// One generic K8s intent, read and ready to customise apps per cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct GacIntent {
    /// Where namespaced new objects go (the logical cloud's namespace).
    namespace: String,
    resources: Vec<GacResource>,
}

fn parent(of: &ResourceKey) -> ResourceKey {
    ResourceKey::new("parent", of.elements.clone())
}

fn text<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `"true"` (any case) or a JSON `true`.
fn flag(doc: &Value, pointer: &str) -> bool {
    match doc.pointer(pointer) {
        Some(Value::Bool(value)) => *value,
        Some(Value::String(value)) => value.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Reads the intent `intent` of `group` with its resources, files and customizations.
pub async fn load(
    repo: &Repository,
    group: &GroupInputs,
    intent: &str,
) -> Result<GacIntent, GacError> {
    let mut elements = group.key.elements.clone();
    elements.push(("genericK8sIntent".to_owned(), intent.to_owned()));
    let intent_key = ResourceKey::new("genericK8sIntent", elements);
    match repo.get(&intent_key).await {
        Ok(_) => {}
        Err(RepoError::NotFound(_)) => return Err(GacError::MissingIntent(intent.to_owned())),
        Err(other) => return Err(other.into()),
    }
    let mut resources = Vec::new();
    for stored in repo.list("genericResource", &parent(&intent_key)).await? {
        let name = stored.key.name().to_owned();
        let spec = &stored.data["spec"];
        let template = match repo.get_blob(&stored.key).await? {
            Some(blob) => match emco_store::attachment::file_contents(&blob) {
                Some(file) => parse_yaml(&file).map_err(|message| GacError::Resource {
                    resource: name.clone(),
                    message: format!("its file: {message}"),
                })?,
                None => None,
            },
            None => None,
        };
        let kind = text(spec, "/resourceGVK/kind").to_owned();
        let mut customizations = Vec::new();
        for stored in repo.list("customization", &parent(&stored.key)).await? {
            let files = match repo.get_blob(&stored.key).await? {
                Some(blob) => emco_store::attachment::unpack(&blob),
                None => Vec::new(),
            };
            let error = |message| GacError::Customization {
                resource: name.clone(),
                customization: stored.key.name().to_owned(),
                message,
            };
            let mut built = customization(group, &kind, &stored.data, files).map_err(error)?;
            if let Patch::Json(ops) = &mut built.patch {
                resolve_external_values(repo, &stored.data["spec"], ops)
                    .await
                    .map_err(error)?;
            }
            customizations.push(built);
        }
        resources.push(GacResource {
            name,
            app: text(spec, "/app").to_owned(),
            new_object: flag(spec, "/newObject"),
            api_version: text(spec, "/resourceGVK/apiVersion").to_owned(),
            kind,
            object_name: text(spec, "/resourceGVK/name").to_owned(),
            template,
            customizations,
        });
    }
    Ok(GacIntent {
        namespace: group.namespace.clone(),
        resources,
    })
}

/// A JSON patch value to fetch: `$(URL)$`.
fn external_url(value: &Value) -> Option<&str> {
    value
        .as_str()?
        .strip_prefix("$(")?
        .strip_suffix(")$")
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
}

/// Replaces every `$(URL)$` value of a JSON patch with what the URL answers (`{"value": …}`),
/// as upstream: `{clusterProvider}` and `{cluster}` in the URL are the customization's
/// `clusterInfo` values. A URL of the cluster kv-pairs API (upstream's clm,
/// `/v2/cluster-providers/{p}/clusters/{c}/kv-pairs/{kv}?key={k}`) is answered by this hub from
/// its own store whatever its host: the hub serves clm's API (upstream files carry clm's
/// address). Other URLs are fetched.
async fn resolve_external_values(
    repo: &Repository,
    spec: &Value,
    ops: &mut Value,
) -> Result<(), String> {
    let Some(ops) = ops.as_array_mut() else {
        return Ok(());
    };
    for op in ops {
        let Some(url) = op.get("value").and_then(external_url) else {
            continue;
        };
        let url = url
            .replace(
                "{clusterProvider}",
                text(spec, "/clusterInfo/clusterProvider"),
            )
            .replace("{cluster}", text(spec, "/clusterInfo/cluster"));
        let value = match kv_pair_query(&url) {
            Some((provider, cluster, kv, key)) => {
                let kv_key = ResourceKey::new(
                    "clusterKv",
                    vec![
                        ("clusterProvider".to_owned(), provider.clone()),
                        ("cluster".to_owned(), cluster.clone()),
                        ("clusterKv".to_owned(), kv.clone()),
                    ],
                );
                let stored = repo.get(&kv_key).await.map_err(|e| format!("{url}: {e}"))?;
                stored
                    .data
                    .pointer("/spec/kv")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|pair| pair.get(&key))
                    .cloned()
                    .ok_or_else(|| {
                        format!("{url}: kv-pairs {kv:?} of cluster {provider}+{cluster} have no key {key:?}")
                    })?
            }
            None => fetch_value(&url).await?,
        };
        op["value"] = value;
    }
    Ok(())
}

/// `(provider, cluster, kv-pairs, key)` of a cluster kv-pairs query URL.
fn kv_pair_query(url: &str) -> Option<(String, String, String, String)> {
    let rest = url.split_once("://")?.1;
    let path_and_query = &rest[rest.find('/')?..];
    let (path, query) = path_and_query.split_once('?')?;
    let key = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))?
        .to_owned();
    match path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        [
            "v2",
            "cluster-providers",
            provider,
            "clusters",
            cluster,
            "kv-pairs",
            kv,
        ] => Some((
            (*provider).to_owned(),
            (*cluster).to_owned(),
            (*kv).to_owned(),
            key,
        )),
        _ => None,
    }
}

/// `GET url`, expecting `{"value": …}` (upstream's contract for external patch values).
async fn fetch_value(url: &str) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let mut body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: not JSON: {e}"))?;
    body.get_mut("value")
        .map(Value::take)
        .ok_or_else(|| format!("{url} answered no \"value\""))
}

/// A YAML (or JSON) document; `None` when it is empty.
fn parse_yaml(bytes: &[u8]) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())?;
    emco_helm::manifest::parse_document(text).map_err(|e| e.to_string())
}

fn customization(
    group: &GroupInputs,
    kind: &str,
    doc: &Value,
    files: Vec<emco_store::attachment::FilePart>,
) -> Result<Customization, String> {
    let spec = &doc["spec"];
    let clusters = if flag(spec, "/clusterSpecific") {
        let provider = text(spec, "/clusterInfo/clusterProvider");
        let selected: BTreeSet<ClusterId> = match text(spec, "/clusterInfo/scope")
            .to_ascii_lowercase()
            .as_str()
        {
            "label" => group
                .inventory
                .clusters_with_label(provider, text(spec, "/clusterInfo/clusterLabel"))
                .map(ClusterId::from)
                .collect(),
            "name" => [ClusterId::new(provider, text(spec, "/clusterInfo/cluster"))].into(),
            other => return Err(format!("clusterInfo.scope {other:?} is not label or name")),
        };
        match text(spec, "/clusterInfo/mode")
            .to_ascii_lowercase()
            .as_str()
        {
            "allow" => ClusterFilter::Only(selected),
            "deny" => ClusterFilter::Except(selected),
            other => return Err(format!("clusterInfo.mode {other:?} is not allow or deny")),
        }
    } else {
        ClusterFilter::All
    };
    let patch = match text(spec, "/patchType").to_ascii_lowercase().as_str() {
        "" => Patch::None,
        "json" => match spec.get("patchJson") {
            Some(Value::Array(ops)) if !ops.is_empty() => Patch::Json(Value::Array(ops.clone())),
            _ => return Err("patchType json needs a non-empty patchJson list".into()),
        },
        "merge" => Patch::Merge,
        other => return Err(format!("patchType {other:?} is not json or merge")),
    };
    let options = match kind.to_ascii_lowercase().as_str() {
        "configmap" => spec.pointer("/configMapOptions/dataKeyOptions"),
        "secret" => spec.pointer("/secretOptions/dataKeyOptions"),
        _ => None,
    }
    .and_then(Value::as_array)
    .cloned()
    .unwrap_or_default();
    let is_data_kind = matches!(kind.to_ascii_lowercase().as_str(), "configmap" | "secret");
    let files = files
        .into_iter()
        .map(|part| {
            let file_name = part
                .filename
                .as_deref()
                .map(|name| name.rsplit('/').next().unwrap_or(name).to_owned())
                .unwrap_or_else(|| part.field.clone());
            let option = options
                .iter()
                .find(|option| text(option, "/fileName") == file_name);
            let key = option
                .map(|option| text(option, "/keyName"))
                .filter(|key| !key.is_empty())
                .unwrap_or(&file_name)
                .to_owned();
            DataFile {
                key,
                merge_patch: if is_data_kind {
                    option.is_some_and(|option| flag(option, "/mergePatch"))
                } else {
                    true
                },
                contents: part.contents,
                file_name,
            }
        })
        .collect();
    Ok(Customization {
        name: doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        clusters,
        patch,
        files,
    })
}

impl GacResource {
    fn is(&self, kind: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind)
    }

    fn error(&self, customization: &Customization, message: impl Into<String>) -> String {
        format!(
            "resource {:?}, customization {:?}: {}",
            self.name,
            customization.name,
            message.into()
        )
    }

    /// The new object before customizations: its file, or an empty ConfigMap or Secret.
    fn base_object(&self) -> Result<Value, String> {
        if let Some(template) = &self.template {
            return Ok(template.clone());
        }
        let empty = if self.is("configmap") {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": self.object_name}, "data": {}})
        } else if self.is("secret") {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": self.object_name}, "data": {}})
        } else {
            return Err(format!(
                "resource {:?} is a new {} but has no file",
                self.name, self.kind
            ));
        };
        Ok(empty)
    }

    /// Adds a customization's data files to a new ConfigMap or Secret.
    fn add_data(&self, customization: &Customization, object: &mut Value) -> Result<(), String> {
        let secret = self.is("secret");
        if !secret && !self.is("configmap") {
            return Ok(());
        }
        if secret && object.get("type").is_none() {
            object["type"] = json!("Opaque");
        }
        let map = object
            .as_object_mut()
            .ok_or_else(|| self.error(customization, "the template is not an object"))?
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if map.is_null() {
            *map = Value::Object(Map::new());
        }
        let data = map
            .as_object_mut()
            .ok_or_else(|| self.error(customization, "the template's data is not a map"))?;
        for file in customization.files.iter().filter(|file| !file.merge_patch) {
            if !valid_data_key(&file.key) {
                return Err(self.error(
                    customization,
                    format!(
                        "{:?} (from file {:?}) is not a valid data key",
                        file.key, file.file_name
                    ),
                ));
            }
            if data.contains_key(&file.key) {
                return Err(self.error(
                    customization,
                    format!("data key {:?} exists already", file.key),
                ));
            }
            let value = if secret {
                base64::engine::general_purpose::STANDARD.encode(&file.contents)
            } else {
                String::from_utf8(file.contents.clone()).map_err(|_| {
                    self.error(
                        customization,
                        format!("file {:?} is not UTF-8 text", file.file_name),
                    )
                })?
            };
            data.insert(file.key.clone(), Value::String(value));
        }
        Ok(())
    }

    /// Applies a customization's patch to `object`.
    fn patch(&self, customization: &Customization, object: Value) -> Result<Value, String> {
        match &customization.patch {
            Patch::None => Ok(object),
            Patch::Json(ops) => emco_patch::json_patch(&object, ops)
                .map_err(|e| self.error(customization, format!("JSON patch: {e}"))),
            Patch::Merge => {
                let api_version = object
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.api_version)
                    .to_owned();
                let kind = object
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.kind)
                    .to_owned();
                let gvk = GroupVersionKind::from_api_version(&api_version, kind);
                let mut patched = object;
                let mut any = false;
                for file in customization.files.iter().filter(|file| file.merge_patch) {
                    any = true;
                    let patch = parse_yaml(&file.contents)
                        .map_err(|e| {
                            self.error(customization, format!("file {:?}: {e}", file.file_name))
                        })?
                        .unwrap_or(Value::Null);
                    patched =
                        emco_patch::strategic_merge_patch(&patched, &patch, &BuiltinSchema, &gvk)
                            .map_err(|e| {
                            self.error(
                                customization,
                                format!("strategic merge patch {:?}: {e}", file.file_name),
                            )
                        })?;
                }
                if !any {
                    return Err(self.error(customization, "patchType merge needs a patch file"));
                }
                Ok(patched)
            }
        }
    }
}

/// A ConfigMap or Secret data key: alphanumerics, `-`, `_`, `.`; at most 253 characters.
fn valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Customiser for GacIntent {
    fn customise(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        let mut out = objects.to_vec();
        let mut changed = false;
        for resource in self.resources.iter().filter(|r| r.app == app) {
            let applicable: Vec<&Customization> = resource
                .customizations
                .iter()
                .filter(|c| c.clusters.selects(cluster))
                .collect();
            // As upstream: a resource reaches a cluster through a customization that selects it.
            if applicable.is_empty() {
                continue;
            }
            if resource.new_object {
                let mut object = resource.base_object()?;
                for customization in &applicable {
                    resource.add_data(customization, &mut object)?;
                    object = resource.patch(customization, object)?;
                }
                let context_object = self.new_context_object(resource, object, &out)?;
                let identity = context_object.identity();
                match out.iter().position(|o| o.identity() == identity) {
                    Some(index) => out[index] = context_object,
                    None => out.push(context_object),
                }
                changed = true;
            } else {
                let Some(index) = out.iter().position(|o| {
                    o.kind.eq_ignore_ascii_case(&resource.kind) && o.name == resource.object_name
                }) else {
                    // As upstream: an object the app does not render on this cluster is skipped.
                    continue;
                };
                let mut object = out[index].object.clone();
                for customization in &applicable {
                    if customization.patch == Patch::None {
                        return Err(resource.error(
                            customization,
                            "changing an object the app renders needs a patchType",
                        ));
                    }
                    object = resource.patch(customization, object)?;
                }
                if object != out[index].object {
                    out[index].object = object;
                    changed = true;
                }
            }
        }
        Ok(changed.then_some(out))
    }
}

impl GacIntent {
    /// The context object of a new resource: its apiVersion, kind and name default to the
    /// resource's `resourceGVK`; then as any object a controller adds
    /// ([`crate::objects::from_manifest`]).
    fn new_context_object(
        &self,
        resource: &GacResource,
        mut object: Value,
        existing: &[ContextObject],
    ) -> Result<ContextObject, String> {
        let root = object
            .as_object_mut()
            .ok_or_else(|| format!("resource {:?}: the object is not a map", resource.name))?;
        for (field, fallback) in [
            ("apiVersion", &resource.api_version),
            ("kind", &resource.kind),
        ] {
            if root
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                root.insert(field.into(), Value::String(fallback.clone()));
            }
        }
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        if metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            metadata["name"] = Value::String(resource.object_name.clone());
        }
        crate::objects::from_manifest(object, existing, &self.namespace)
            .map_err(|e| format!("resource {:?}: {e}", resource.name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use emco_core::appcontext::Phase;

    fn cluster(name: &str) -> ClusterId {
        ClusterId::new("prov", name)
    }

    fn statefulset() -> ContextObject {
        ContextObject {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "etcd".into(),
            namespace: Some("default".into()),
            phase: Phase::Resource { order: 3 },
            delete_policies: vec![],
            keep_on_uninstall: false,
            object: json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "etcd", "namespace": "default"},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [
                    {"name": "etcd", "image": "etcd:3.5"}]}}}}),
        }
    }

    fn file(name: &str, contents: &str, merge_patch: bool) -> DataFile {
        DataFile {
            key: name.into(),
            contents: contents.as_bytes().to_vec(),
            merge_patch,
            file_name: name.into(),
        }
    }

    fn customization(clusters: ClusterFilter, patch: Patch, files: Vec<DataFile>) -> Customization {
        Customization {
            name: "c".into(),
            clusters,
            patch,
            files,
        }
    }

    fn intent(resources: Vec<GacResource>) -> GacIntent {
        GacIntent {
            namespace: "apps".into(),
            resources,
        }
    }

    fn resource(
        new_object: bool,
        kind: &str,
        name: &str,
        customizations: Vec<Customization>,
    ) -> GacResource {
        GacResource {
            name: format!("r-{name}"),
            app: "operator".into(),
            new_object,
            api_version: if kind == "StatefulSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.into(),
            object_name: name.into(),
            template: None,
            customizations,
        }
    }

    #[test]
    fn an_existing_object_is_patched_on_the_selected_clusters_only() {
        let labelled = ClusterFilter::Only([cluster("c1")].into());
        let gac = intent(vec![resource(
            false,
            "statefulset",
            "etcd",
            vec![customization(
                labelled,
                Patch::Json(json!([{"op": "replace", "path": "/spec/replicas", "value": 1}])),
                vec![file("customization-dummy.yaml", "value: dummy", true)],
            )],
        )]);
        let objects = vec![statefulset()];
        let out = gac
            .customise("operator", &cluster("c1"), &objects)
            .unwrap()
            .unwrap();
        assert_eq!(out[0].object["spec"]["replicas"], 1);
        assert_eq!(
            gac.customise("operator", &cluster("c2"), &objects).unwrap(),
            None
        );
        assert_eq!(
            gac.customise("other-app", &cluster("c1"), &objects)
                .unwrap(),
            None
        );
        // A strategic merge patch merges containers by name.
        let merge = intent(vec![resource(
            false,
            "StatefulSet",
            "etcd",
            vec![customization(
                ClusterFilter::Except([cluster("c9")].into()),
                Patch::Merge,
                vec![file(
                    "patch.yaml",
                    "spec:\n  template:\n    spec:\n      containers:\n      - name: etcd\n        image: etcd:3.6\n",
                    true,
                )],
            )],
        )]);
        let out = merge
            .customise("operator", &cluster("c1"), &objects)
            .unwrap()
            .unwrap();
        assert_eq!(
            out[0].object["spec"]["template"]["spec"]["containers"],
            json!([{"name": "etcd", "image": "etcd:3.6"}])
        );
        // Without a patch type nothing can change a rendered object.
        let bad = intent(vec![resource(
            false,
            "StatefulSet",
            "etcd",
            vec![customization(ClusterFilter::All, Patch::None, vec![])],
        )]);
        assert!(
            bad.customise("operator", &cluster("c1"), &objects)
                .unwrap_err()
                .contains("patchType")
        );
    }

    #[test]
    fn new_configmaps_and_secrets_get_their_data_files() {
        let mut cm = resource(
            true,
            "ConfigMap",
            "cm-team",
            vec![customization(
                ClusterFilter::All,
                Patch::Json(json!([{"op": "replace", "path": "/data/team_size", "value": "10"}])),
                vec![DataFile {
                    key: "game.properties".into(),
                    ..file("data-game.yaml", "lives=3\n", false)
                }],
            )],
        );
        cm.template = Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm-team"}, "data": {"team_size": "5"}}));
        let secret = resource(
            true,
            "Secret",
            "secret-user",
            vec![customization(
                ClusterFilter::Only([cluster("c1")].into()),
                Patch::None,
                vec![file("expiry.yaml", "30d", false)],
            )],
        );
        let gac = intent(vec![cm, secret]);
        let objects = vec![statefulset()];
        let out = gac
            .customise("operator", &cluster("c1"), &objects)
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].name, "cm-team");
        assert_eq!(out[1].namespace.as_deref(), Some("apps"));
        assert_eq!(out[1].phase, Phase::Resource { order: 4 });
        assert_eq!(
            out[1].object["data"],
            json!({"team_size": "10", "game.properties": "lives=3\n"})
        );
        assert_eq!(out[1].object["metadata"]["namespace"], "apps");
        assert_eq!(out[2].object["type"], "Opaque");
        assert_eq!(out[2].object["data"]["expiry.yaml"], "MzBk");
        // The secret's customization selects c1 only.
        let out = gac
            .customise("operator", &cluster("c2"), &objects)
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn kv_pair_queries_are_recognised() {
        assert_eq!(
            kv_pair_query(
                "http://192.0.2.10:30461/v2/cluster-providers/p1/clusters/c1/kv-pairs/gw?key=port"
            ),
            Some(("p1".into(), "c1".into(), "gw".into(), "port".into()))
        );
        assert_eq!(
            kv_pair_query("http://x/v2/cluster-providers/p1/clusters/c1/kv-pairs/gw"),
            None
        );
        assert_eq!(kv_pair_query("http://x/other?key=a"), None);
        assert_eq!(external_url(&json!("$(http://a/b)$")), Some("http://a/b"));
        assert_eq!(external_url(&json!("$(ftp://a)$")), None);
        assert_eq!(external_url(&json!("plain")), None);
    }

    #[test]
    fn bad_customizations_are_named() {
        let duplicate = resource(
            true,
            "ConfigMap",
            "cm",
            vec![customization(
                ClusterFilter::All,
                Patch::None,
                vec![file("a", "1", false), file("a", "2", false)],
            )],
        );
        let error = intent(vec![duplicate])
            .customise("operator", &cluster("c1"), &[])
            .unwrap_err();
        assert!(
            error.contains(r#"resource "r-cm", customization "c""#),
            "{error}"
        );
        assert!(error.contains("exists already"), "{error}");
        let no_file = resource(
            true,
            "NetworkPolicy",
            "np",
            vec![customization(ClusterFilter::All, Patch::None, vec![])],
        );
        let error = intent(vec![no_file])
            .customise("operator", &cluster("c1"), &[])
            .unwrap_err();
        assert!(error.contains("has no file"), "{error}");
        assert!(!valid_data_key("a/b"));
        assert!(valid_data_key("game.properties"));
    }
}
