//! Parsing a stored `genericAppPlacementIntent` body into the typed placement rules of one app.

use serde_json::{Map, Value};

use super::PlacementError;

/// One placement target: a single named cluster, or every cluster of a provider carrying a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Cluster { provider: String, cluster: String },
    Label { provider: String, label: String },
}

/// One item of an `allOf` list: a target the app must be on in full, or a nested `anyOf` from
/// which one cluster must be picked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllOfEntry {
    Target(Target),
    AnyOf(Vec<Target>),
}

/// The placement rules of one `genericAppPlacementIntent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIntent {
    /// The intent's `metadata.name` (empty when the body has none); used to name it in errors.
    pub name: String,
    /// The app this intent places (`spec.app`).
    pub app: String,
    /// `spec.intent.allOf`: every target is required; a nested `anyOf` requires one of its clusters.
    pub all_of: Vec<AllOfEntry>,
    /// `spec.intent.anyOf`: the app goes to exactly one cluster out of all these targets together.
    pub any_of: Vec<Target>,
}

impl AppIntent {
    /// Whether the intent names no target at all (allowed by the schema, useless at instantiate).
    pub fn is_empty(&self) -> bool {
        self.all_of.is_empty() && self.any_of.is_empty()
    }
}

/// Reads a whole `genericAppPlacementIntent` resource body (`{"metadata": .., "spec": {"app": ..,
/// "intent": {"allOf": [..], "anyOf": [..]}}}`).
///
/// Field rules follow upstream's Go structs, whose fields are all `omitempty`: an empty string, a
/// `null` or an empty list counts as absent. A target needs `clusterProvider` and exactly one of
/// `cluster` and `clusterLabel`; an `allOf` item is either such a target or a non-empty `anyOf`
/// list of targets (upstream's `selector` field is accepted and ignored).
pub fn parse_app_intent(body: &Value) -> Result<AppIntent, PlacementError> {
    let name = body
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |path: &str, reason: &str| PlacementError::InvalidIntent {
        intent: name.clone(),
        path: path.to_string(),
        reason: reason.to_string(),
    };

    let spec = object(body.get("spec")).ok_or_else(|| invalid("spec", "must be an object"))?;
    let app = optional_string(spec, "app")
        .map_err(|reason| invalid("spec.app", reason))?
        .ok_or_else(|| invalid("spec.app", "is required"))?
        .to_string();
    let intent = object(spec.get("intent"))
        .ok_or_else(|| invalid("spec.intent", "is required and must be an object"))?;

    let mut all_of = Vec::new();
    for (index, item) in list(intent, "allOf")
        .map_err(|reason| invalid("spec.intent.allOf", reason))?
        .iter()
        .enumerate()
    {
        let path = format!("spec.intent.allOf[{index}]");
        let item = item
            .as_object()
            .ok_or_else(|| invalid(&path, "must be an object"))?;
        let nested =
            list(item, "anyOf").map_err(|reason| invalid(&format!("{path}.anyOf"), reason))?;
        if nested.is_empty() {
            all_of.push(AllOfEntry::Target(
                parse_target(item).map_err(|reason| invalid(&path, reason))?,
            ));
            continue;
        }
        if has_field(item, "cluster") || has_field(item, "clusterLabel") {
            return Err(invalid(
                &path,
                "gives both a nested anyOf and a cluster or clusterLabel",
            ));
        }
        let mut alternatives = Vec::with_capacity(nested.len());
        for (nested_index, target) in nested.iter().enumerate() {
            let nested_path = format!("{path}.anyOf[{nested_index}]");
            let target = target
                .as_object()
                .ok_or_else(|| invalid(&nested_path, "must be an object"))?;
            alternatives
                .push(parse_target(target).map_err(|reason| invalid(&nested_path, reason))?);
        }
        all_of.push(AllOfEntry::AnyOf(alternatives));
    }

    let mut any_of = Vec::new();
    for (index, target) in list(intent, "anyOf")
        .map_err(|reason| invalid("spec.intent.anyOf", reason))?
        .iter()
        .enumerate()
    {
        let path = format!("spec.intent.anyOf[{index}]");
        let target = target
            .as_object()
            .ok_or_else(|| invalid(&path, "must be an object"))?;
        any_of.push(parse_target(target).map_err(|reason| invalid(&path, reason))?);
    }

    Ok(AppIntent {
        name,
        app,
        all_of,
        any_of,
    })
}

fn parse_target(fields: &Map<String, Value>) -> Result<Target, &'static str> {
    let provider =
        optional_string(fields, "clusterProvider")?.ok_or("clusterProvider is required")?;
    let cluster = optional_string(fields, "cluster")?;
    let label = optional_string(fields, "clusterLabel")?;
    match (cluster, label) {
        (Some(cluster), None) => Ok(Target::Cluster {
            provider: provider.to_string(),
            cluster: cluster.to_string(),
        }),
        (None, Some(label)) => Ok(Target::Label {
            provider: provider.to_string(),
            label: label.to_string(),
        }),
        (Some(_), Some(_)) => Err("gives both cluster and clusterLabel; give exactly one"),
        (None, None) => Err("needs cluster or clusterLabel"),
    }
}

fn object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value.and_then(Value::as_object)
}

/// A string field, `None` when absent, `null` or empty (Go's `omitempty`).
fn optional_string<'a>(
    fields: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, &'static str> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err("must be a string"),
    }
}

fn has_field(fields: &Map<String, Value>, field: &str) -> bool {
    matches!(optional_string(fields, field), Ok(Some(_)) | Err(_))
}

/// A list field, empty when absent or `null`.
fn list<'a>(fields: &'a Map<String, Value>, field: &str) -> Result<&'a [Value], &'static str> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err("must be a list"),
    }
}
