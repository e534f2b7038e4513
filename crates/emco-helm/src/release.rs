//! A rendered release as typed objects: CustomResourceDefinitions, ordinary resources in Helm's
//! install order, and hooks, each with its identity, namespace and source template.
//!
//! [`Release::from_rendered`] takes what `helm template` prints (or what a test renderer
//! produces) and classifies every document the way upstream EMCO does after rendering:
//!
//! * Empty and comment-only documents are skipped, and so are documents with neither `kind` nor
//!   `metadata.name` (upstream's "`+`" resource name check).
//! * Objects with a `helm.sh/hook` annotation are hooks (see [`crate::hooks`]); hooks that only
//!   run for `helm test` are left out, as upstream leaves them out; objects naming an unknown hook
//!   event are dropped, as Helm drops them.
//! * Other objects of kind `CustomResourceDefinition` are CRDs (whether from the chart's `crds/`
//!   directory or its templates), which upstream creates before anything else.
//! * Everything else is a resource, kept in Helm's install order.
//!
//! Namespaced objects without `metadata.namespace` get the release namespace written into the
//! object, which is what upstream's resource synchronizer does when it applies them.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::hooks::{self, HookClass, HookEvent, HookSpec};
use crate::manifest::{self, ManifestDocument};
use crate::order::{self, INSTALL_ORDER, UNINSTALL_ORDER};
use crate::scope::{self, CRD_GROUP, CRD_KIND, Scope, ScopeTable};

/// One object of a rendered release.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenderedObject {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The namespace the object lives in: its own `metadata.namespace`, or the release namespace
    /// for namespaced kinds; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The chart-relative template path it was rendered from (`app/templates/service.yaml`).
    pub source: Option<String>,
    /// The full object, with the defaulted namespace written into `metadata.namespace`.
    pub object: Value,
}

impl RenderedObject {
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        scope::api_group(&self.api_version)
    }

    /// Upstream EMCO's resource name in an AppContext: `<metadata.name>+<kind>`.
    pub fn upstream_key(&self) -> String {
        format!("{}+{}", self.name, self.kind)
    }

    /// Whether this is a CustomResourceDefinition.
    pub fn is_crd(&self) -> bool {
        self.kind == CRD_KIND && self.group() == CRD_GROUP
    }

    /// Whether it comes from a chart's (or subchart's) `crds/` directory rather than a template;
    /// Helm installs those CRDs before rendering and never deletes them.
    pub fn from_crds_dir(&self) -> bool {
        self.source.as_deref().is_some_and(source_is_crds_dir)
    }

    /// Whether `helm.sh/resource-policy: keep` asks for it to survive an uninstall.
    pub fn keep_on_uninstall(&self) -> bool {
        hooks::keeps_on_uninstall(self.annotations())
    }

    /// `metadata.annotations`, if present.
    pub fn annotations(&self) -> Option<&Map<String, Value>> {
        self.object.get("metadata")?.get("annotations")?.as_object()
    }
}

/// A hook object and its parsed annotations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    /// Events, weight and delete policies.
    pub spec: HookSpec,
    /// The object to apply when the hook runs.
    pub object: RenderedObject,
}

/// A rendered chart, classified and ordered.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    /// The release name (upstream: the deployment intent group's `spec.version`).
    pub name: String,
    /// The release namespace (upstream: the logical cloud's namespace).
    pub namespace: String,
    /// CustomResourceDefinitions that are not hooks, in rendered order (`crds/` first).
    pub crds: Vec<RenderedObject>,
    /// Every other non-hook object, in Helm's install order.
    pub resources: Vec<RenderedObject>,
    /// Hooks, sorted by kind as Helm keeps them; see [`Release::hooks_for`] for run order.
    pub hooks: Vec<Hook>,
}

/// Why a rendered stream could not be turned into a [`Release`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A document is not valid YAML.
    #[error("rendered document {index} (from {template}) is not valid YAML: {reason}")]
    Yaml {
        /// Position of the document in the stream.
        index: usize,
        /// Its source template, or `unknown source`.
        template: String,
        /// What the parser reported.
        reason: String,
    },
    /// A document is YAML but not a usable Kubernetes object.
    #[error("rendered document {index} (from {template}) is not a Kubernetes object: {problem}")]
    NotAnObject {
        /// Position of the document in the stream.
        index: usize,
        /// Its source template, or `unknown source`.
        template: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two non-hook documents render the same object.
    #[error(
        "{kind} {name:?}{namespace} is rendered twice (documents {first} and {second} from \
         {template})"
    )]
    DuplicateObject {
        /// The kind.
        kind: String,
        /// The name.
        name: String,
        /// ` in namespace "x"`, or empty for cluster-scoped objects.
        namespace: String,
        /// Position of the first copy.
        first: usize,
        /// Position of the second copy.
        second: usize,
        /// Source template of the second copy, or `unknown source`.
        template: String,
    },
}

/// Namespace used when none is given, as upstream does.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Release {
    /// Classifies and orders a rendered stream for release `name` in `namespace` (empty means
    /// [`DEFAULT_NAMESPACE`]).
    pub fn from_rendered(stream: &str, name: &str, namespace: &str) -> Result<Self, ManifestError> {
        let namespace = if namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            namespace
        };
        let parsed = parse_all(&manifest::split_documents(stream))?;

        let mut scopes = ScopeTable::default();
        for document in &parsed {
            scopes.learn(&document.api_version, &document.kind, &document.object);
        }

        let mut crds = Vec::new();
        let mut resources = Vec::new();
        let mut hooks = Vec::new();
        let mut seen = HashMap::new();
        for document in parsed {
            let class = hooks::classify(annotations_of(&document.object));
            let index = document.index;
            let object = document.into_object(&scopes, namespace);
            match class {
                HookClass::UnknownEvent { annotation } => {
                    tracing::info!(
                        kind = %object.kind,
                        name = %object.name,
                        annotation = %annotation,
                        "dropping an object with an unknown helm.sh/hook event, as Helm does"
                    );
                }
                HookClass::Hook(spec) if spec.is_test_only() => {
                    tracing::debug!(kind = %object.kind, name = %object.name, "skipping test hook");
                }
                HookClass::Hook(spec) => hooks.push(Hook { spec, object }),
                HookClass::Resource => {
                    check_unique(&mut seen, &object, index)?;
                    if object.is_crd() {
                        crds.push(object);
                    } else {
                        resources.push(object);
                    }
                }
            }
        }
        order::sort_by_kind(&mut resources, INSTALL_ORDER, |object| &object.kind);
        order::sort_by_kind(&mut hooks, INSTALL_ORDER, |hook| &hook.object.kind);
        Ok(Release {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            crds,
            resources,
            hooks,
        })
    }

    /// The hooks of `event`, in the order Helm runs them (weight, then name).
    pub fn hooks_for(&self, event: HookEvent) -> Vec<&Hook> {
        let mut selected: Vec<&Hook> = self
            .hooks
            .iter()
            .filter(|hook| hook.spec.runs_on(event))
            .collect();
        order::sort_hooks_for_execution(
            &mut selected,
            |hook| hook.spec.weight,
            |hook| &hook.object.name,
        );
        selected
    }

    /// What Helm's uninstall deletes, in its order: the resources and the CRDs rendered from
    /// templates (not those from `crds/`, which Helm never deletes), minus those marked
    /// `helm.sh/resource-policy: keep`, sorted by [`UNINSTALL_ORDER`]. Helm deletes objects of
    /// one kind concurrently; here they come in reverse install order.
    pub fn uninstall_order(&self) -> Vec<&RenderedObject> {
        let mut doomed: Vec<&RenderedObject> = self
            .crds
            .iter()
            .filter(|crd| !crd.from_crds_dir())
            .chain(&self.resources)
            .filter(|object| !object.keep_on_uninstall())
            .collect();
        doomed.reverse();
        order::sort_by_kind(&mut doomed, UNINSTALL_ORDER, |object| &object.kind);
        doomed
    }

    /// Number of CRDs, resources and hooks.
    pub fn object_count(&self) -> usize {
        self.crds.len() + self.resources.len() + self.hooks.len()
    }

    /// Every object: CRDs, then resources, then hooks.
    pub fn objects(&self) -> impl Iterator<Item = &RenderedObject> {
        self.crds
            .iter()
            .chain(&self.resources)
            .chain(self.hooks.iter().map(|hook| &hook.object))
    }
}

/// A parsed document with its identity fields checked.
struct ParsedDocument<'a> {
    index: usize,
    source: Option<&'a str>,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    object: Value,
}

impl ParsedDocument<'_> {
    fn into_object(self, scopes: &ScopeTable, release_namespace: &str) -> RenderedObject {
        let mut object = self.object;
        let namespace = match scopes.scope_of(scope::api_group(&self.api_version), &self.kind) {
            Scope::Cluster => None,
            Scope::Namespaced => Some(match self.namespace {
                Some(namespace) => namespace,
                None => {
                    if let Some(metadata) =
                        object.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        metadata.insert(
                            "namespace".to_owned(),
                            Value::String(release_namespace.to_owned()),
                        );
                    }
                    release_namespace.to_owned()
                }
            }),
        };
        RenderedObject {
            api_version: self.api_version,
            kind: self.kind,
            name: self.name,
            namespace,
            source: self.source.map(str::to_owned),
            object,
        }
    }
}

fn parse_all<'a>(
    documents: &[ManifestDocument<'a>],
) -> Result<Vec<ParsedDocument<'a>>, ManifestError> {
    let mut parsed = Vec::with_capacity(documents.len());
    for document in documents {
        let source = || document.source.unwrap_or("unknown source").to_owned();
        let value =
            manifest::parse_document(document.body).map_err(|error| ManifestError::Yaml {
                index: document.index,
                template: source(),
                reason: error.to_string(),
            })?;
        let Some(value) = value else {
            continue;
        };
        let not_an_object = |problem: String| ManifestError::NotAnObject {
            index: document.index,
            template: source(),
            problem,
        };
        let Value::Object(fields) = &value else {
            return Err(not_an_object(format!(
                "the document is a {}, not a mapping",
                json_type(&value)
            )));
        };
        let metadata = match fields.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(metadata)) => Some(metadata),
            Some(other) => {
                return Err(not_an_object(format!(
                    "metadata is a {}, not a mapping",
                    json_type(other)
                )));
            }
        };
        let kind = optional_string(fields.get("kind"), "kind").map_err(not_an_object)?;
        let name = optional_string(metadata.and_then(|m| m.get("name")), "metadata.name")
            .map_err(not_an_object)?;
        let (kind, name) = match (kind, name) {
            (None, None) => {
                // Upstream skips these too ("the rendered file just has some comments").
                tracing::debug!(index = document.index, source = ?document.source,
                    "skipping a rendered document with neither kind nor name");
                continue;
            }
            (None, Some(_)) => return Err(not_an_object("kind is missing".to_owned())),
            (Some(_), None) => return Err(not_an_object("metadata.name is missing".to_owned())),
            (Some(kind), Some(name)) => (kind, name),
        };
        let api_version = optional_string(fields.get("apiVersion"), "apiVersion")
            .map_err(not_an_object)?
            .ok_or_else(|| not_an_object("apiVersion is missing".to_owned()))?;
        let namespace = optional_string(
            metadata.and_then(|m| m.get("namespace")),
            "metadata.namespace",
        )
        .map_err(not_an_object)?;
        if let Some(annotations) = metadata.and_then(|m| m.get("annotations")) {
            check_annotations(annotations).map_err(not_an_object)?;
        }
        parsed.push(ParsedDocument {
            index: document.index,
            source: document.source,
            api_version,
            kind,
            name,
            namespace,
            object: value,
        });
    }
    Ok(parsed)
}

/// A string field: absent, null and `""` are all "missing", as in Kubernetes.
fn optional_string(value: Option<&Value>, field: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("{field} is a {}, not a string", json_type(other))),
    }
}

/// Kubernetes (and Helm, which reads them as `map[string]string`) require string annotations.
fn check_annotations(annotations: &Value) -> Result<(), String> {
    match annotations {
        Value::Null => Ok(()),
        Value::Object(map) => match map.iter().find(|(_, value)| !value.is_string()) {
            Some((key, value)) => Err(format!(
                "annotation {key:?} is a {}, not a string",
                json_type(value)
            )),
            None => Ok(()),
        },
        other => Err(format!(
            "metadata.annotations is a {}, not a mapping",
            json_type(other)
        )),
    }
}

fn annotations_of(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.get("annotations")?.as_object()
}

/// Identity of an object in a cluster: (group, kind, namespace, name).
type ObjectIdentity = (String, String, Option<String>, String);

fn check_unique(
    seen: &mut HashMap<ObjectIdentity, usize>,
    object: &RenderedObject,
    index: usize,
) -> Result<(), ManifestError> {
    let identity = (
        object.group().to_owned(),
        object.kind.clone(),
        object.namespace.clone(),
        object.name.clone(),
    );
    let first = *seen.entry(identity).or_insert(index);
    if first == index {
        return Ok(());
    }
    Err(ManifestError::DuplicateObject {
        kind: object.kind.clone(),
        name: object.name.clone(),
        namespace: object
            .namespace
            .as_ref()
            .map(|namespace| format!(" in namespace {namespace:?}"))
            .unwrap_or_default(),
        first,
        second: index,
        template: object
            .source
            .clone()
            .unwrap_or_else(|| "unknown source".to_owned()),
    })
}

fn source_is_crds_dir(source: &str) -> bool {
    // `<chart>/crds/...`, or `<chart>/charts/<sub>/crds/...` for subcharts.
    let mut parts = source.split('/').skip(1);
    loop {
        match parts.next() {
            Some("charts") => {
                if parts.next().is_none() {
                    return false;
                }
            }
            Some("crds") => return true,
            _ => return false,
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

#[cfg(test)]
mod tests;
