//! The generic create/read/update/delete handlers shared by every stored kind of the `/v2` API.
//!
//! Each route is built from one [`RestKind`] entry; the handler turns path parameters into a
//! [`ResourceKey`], decodes and validates the body, and lets the repository enforce integrity.
//! Order of checks, as upstream's corpus expects: decode (422), validate (400), parents (404),
//! conflicts (409).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use emco_core::key::ResourceKey;
use emco_core::kinds::{BodyFormat, NameField, RestKind};
use emco_store::repository::{BlobChange, RepoError, Stored, Upserted};
use emco_store::seal::{self, REDACTED, SealError};
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{self, Body, FilePart};
use crate::error::{ApiError, ApiResult};

/// Path parameters in route order.
pub type PathParams = Path<Vec<(String, String)>>;

/// Builds the key of `kind` from path parameters (and the new resource's own names on create).
pub fn key_from_path(
    kind: &RestKind,
    params: &[(String, String)],
    own: &[String],
) -> ApiResult<ResourceKey> {
    let mut elements: Vec<(String, String)> = kind
        .fixed
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (name, value) in params {
        if !plausible_name(value) {
            return Err(ApiError::NotFound(format!("{name} {value:?} not found")));
        }
        elements.push((name.clone(), value.clone()));
    }
    let path_elements = kind.path_elements();
    for (name, value) in path_elements.iter().skip(params.len()).zip(own) {
        elements.push((name.clone(), value.clone()));
    }
    Ok(ResourceKey::new(kind.name, elements))
}

/// Names are validated on create, so a path value that breaks the rule names nothing; refusing it
/// early also stops `/` (from `%2F`) from shifting key boundaries.
fn plausible_name(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && !value.contains('/')
}

/// The parent's key for a collection path (no own elements).
fn parent_key(kind: &RestKind, params: &[(String, String)]) -> ApiResult<ResourceKey> {
    let key = key_from_path(kind, params, &[])?;
    Ok(ResourceKey::new("parent", key.elements))
}

/// The new resource's own key values, from its body.
fn own_names(kind: &RestKind, json: &Value) -> ApiResult<Vec<String>> {
    let name = match kind.name_field {
        NameField::Metadata => json.pointer("/metadata/name"),
        NameField::TopLevel(field) => json.get(field),
    }
    .and_then(Value::as_str)
    .unwrap_or("");
    let field = match kind.name_field {
        NameField::Metadata => "metadata.name",
        NameField::TopLevel(f) => f,
    };
    if name.is_empty() {
        return Err(ApiError::BadRequest(format!("{field}: is required")));
    }
    if kind.own_elements.len() == 2 {
        // Composite apps: the version comes from the spec.
        let version = json
            .pointer("/spec/compositeAppVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if version.is_empty() {
            return Err(ApiError::BadRequest(
                "spec.compositeAppVersion: is required".into(),
            ));
        }
        return Ok(vec![name.to_owned(), version.to_owned()]);
    }
    Ok(vec![name.to_owned()])
}

fn validate(kind: &RestKind, json: &Value) -> ApiResult<()> {
    emco_core::validate::validate(kind.validation, json)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Checks and packs uploaded files: charts and profiles must be safe archives.
fn attachment(
    state: &AppState,
    kind: &RestKind,
    body: &Body,
    creating: bool,
) -> ApiResult<Option<Vec<u8>>> {
    let BodyFormat::Multipart { file_required } = kind.body else {
        if !body.files.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "{} takes a JSON body, not file parts",
                kind.name
            )));
        }
        return Ok(None);
    };
    if body.files.is_empty() {
        // Clusters managed through GitOps have no kubeconfig (as upstream).
        let gitops = kind.name == "cluster"
            && body
                .json
                .pointer("/spec/gitOps/gitOpsType")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
        if creating && file_required && !gitops {
            return Err(ApiError::BadRequest(
                "file: is required (multipart part `file`)".into(),
            ));
        }
        return Ok(None);
    }
    for f in &body.files {
        check_file(state, kind, f)?;
    }
    Ok(Some(emco_store::attachment::pack(&body.files)))
}

fn check_file(state: &AppState, kind: &RestKind, f: &FilePart) -> ApiResult<()> {
    let bad = |e: String| {
        ApiError::BadRequest(format!(
            "file {:?}: {e}",
            f.filename.as_deref().unwrap_or(&f.field)
        ))
    };
    match kind.name {
        "app" => emco_helm::archive::read_chart(&f.contents, &state.archive_limits)
            .map(|_| ())
            .map_err(|e| bad(e.to_string())),
        "appProfile" => emco_helm::archive::read_profile(&f.contents, &state.archive_limits)
            .map(|_| ())
            .map_err(|e| bad(e.to_string())),
        _ if f.contents.is_empty() => Err(bad("is empty".into())),
        _ => Ok(()),
    }
}

/// Attachments are stored as one JSON document listing every uploaded part.
pub async fn create(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Response> {
    let body = body::decode(&headers, bytes).await?;
    validate(kind, &body.json)?;
    let own = own_names(kind, &body.json)?;
    let key = key_from_path(kind, &params, &own)?;
    let blob = attachment(&state, kind, &body, true)?;
    let mut json = body.json;
    seal_secrets(&state, &key, &mut json, None)?;
    let stored = state.repo.create(&key, json, blob).await?;
    if key.kind != "deploymentIntentGroup" {
        crate::lifecycle::revoke_approval(&state, &key).await?;
    }
    tell_cluster_controllers(&state, &key, emco_deploy::clm::ClusterEvent::Created).await;
    Ok((StatusCode::CREATED, axum::Json(shown(kind, stored.data))).into_response())
}

pub async fn update(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<Response> {
    let body = body::decode(&headers, bytes).await?;
    validate(kind, &body.json)?;
    let key = key_from_path(kind, &params, &[])?;
    check_names_match(kind, &body.json, &key)?;
    let blob = match attachment(&state, kind, &body, false)? {
        Some(b) => BlobChange::Replace(b),
        None => BlobChange::Keep,
    };
    if !kind.put_creates && !state.repo.exists(&key).await? {
        return Err(RepoError::NotFound(key).into());
    }
    let mut json = body.json;
    if has_secrets(kind.name) {
        // The stored secrets, for the values sent back as they were shown (REDACTED).
        let previous = match state.repo.get(&key).await {
            Ok(stored) => Some(stored.data),
            Err(RepoError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        seal_secrets(&state, &key, &mut json, previous.as_ref())?;
    }
    let (stored, how) = state.repo.upsert(&key, json, blob).await?;
    crate::lifecycle::revoke_approval(&state, &key).await?;
    let (status, event) = match how {
        Upserted::Created => (StatusCode::CREATED, emco_deploy::clm::ClusterEvent::Created),
        Upserted::Updated => (StatusCode::OK, emco_deploy::clm::ClusterEvent::Updated),
    };
    tell_cluster_controllers(&state, &key, event).await;
    Ok((status, axum::Json(shown(kind, stored.data))).into_response())
}

/// Whether documents of `kind` hold secrets (sealed when stored, redacted when shown).
fn has_secrets(kind: &str) -> bool {
    kind == "clusterSyncObject"
}

/// Seals the secrets of a cluster sync object about to be stored (`previous`: the stored
/// document, whose sealed values are kept where the client sent [`REDACTED`] back). A hub without
/// a sealer stores them as given, keeping the stored value for a REDACTED one all the same.
fn seal_secrets(
    state: &AppState,
    key: &ResourceKey,
    doc: &mut Value,
    previous: Option<&Value>,
) -> ApiResult<()> {
    if !has_secrets(&key.kind) {
        return Ok(());
    }
    let result = match &state.sealer {
        Some(sealer) => seal::seal_kv_document(
            sealer,
            key.get("clusterProvider").unwrap_or_default(),
            key.name(),
            doc,
            previous,
        ),
        None => keep_redacted_in_clear(doc, previous),
    };
    result.map_err(|e| match e {
        SealError::NothingToKeep(_) | SealError::NotText(_) => ApiError::BadRequest(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    })
}

/// Without a sealer: a secret sent back as [`REDACTED`] keeps the stored value.
fn keep_redacted_in_clear(doc: &mut Value, previous: Option<&Value>) -> Result<(), SealError> {
    let Some(items) = doc.pointer_mut("/spec/kv").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (key, value) in items
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|m| m.iter_mut())
    {
        if !seal::is_secret_kv_key(key) || value.as_str() != Some(REDACTED) {
            continue;
        }
        *value = previous
            .and_then(|p| p.pointer("/spec/kv"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|item| item.get(key.as_str()))
            .cloned()
            .ok_or_else(|| SealError::NothingToKeep(key.clone()))?;
    }
    Ok(())
}

/// A stored document as answers show it: secrets redacted.
fn shown(kind: &RestKind, mut doc: Value) -> Value {
    if has_secrets(kind.name) {
        seal::redact_kv_document(&mut doc);
    }
    doc
}

/// On PUT the URL names the resource; the body must not name another one. A composite app's
/// version may be left out of the body (upstream's clients do), but must match when given.
fn check_names_match(kind: &RestKind, json: &Value, key: &ResourceKey) -> ApiResult<()> {
    let own = match own_names(kind, json) {
        Err(ApiError::BadRequest(m)) if m.starts_with("spec.compositeAppVersion") => {
            vec![
                json.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                key.name().to_owned(),
            ]
        }
        other => other?,
    };
    let from_url: Vec<&str> = key
        .elements
        .iter()
        .rev()
        .take(own.len())
        .rev()
        .map(|(_, v)| v.as_str())
        .collect();
    if from_url != own.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(ApiError::BadRequest(format!(
            "name in body ({}) does not match the name in the URL ({})",
            own.join("/"),
            from_url.join("/")
        )));
    }
    Ok(())
}

pub async fn get(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = key_from_path(kind, &params, &[])?;
    let stored = state.repo.get(&key).await?;
    if let Some(wanted) = query.get("key").filter(|_| kind.name == "clusterKv") {
        return kv_value(&stored, wanted);
    }
    if has_secrets(kind.name) {
        let data = shown(kind, stored.data);
        if let Some(wanted) = query.get("key") {
            return sync_object_value(&data, wanted);
        }
        return Ok((StatusCode::OK, axum::Json(data)).into_response());
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if matches!(kind.body, BodyFormat::Multipart { .. })
        && (accept.contains("multipart/form-data") || accept.contains("application/octet-stream"))
    {
        let files = match state.repo.get_blob(&key).await? {
            Some(blob) => emco_store::attachment::unpack(&blob),
            None => Vec::new(),
        };
        if accept.contains("application/octet-stream") {
            let Some(first) = files.into_iter().next() else {
                return Err(ApiError::NotFound(format!("{key} has no file")));
            };
            return Ok((
                [(header::CONTENT_TYPE, "application/octet-stream")],
                first.contents,
            )
                .into_response());
        }
        return Ok(multipart_response(&stored.data, &files));
    }
    Ok((StatusCode::OK, axum::Json(stored.data)).into_response())
}

/// `GET .../kv-pairs/{kv}?key=K`: the value of one pair.
fn kv_value(stored: &Stored, wanted: &str) -> ApiResult<Response> {
    let pairs = stored
        .data
        .pointer("/spec/kv")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for pair in pairs {
        if let Some(v) = pair.get(wanted) {
            return Ok(axum::Json(json!({ "value": v })).into_response());
        }
    }
    Err(ApiError::NotFound(format!(
        "key {wanted:?} not found in {}",
        stored.key
    )))
}

/// `GET .../cluster-sync-objects/{name}?key=K` (upstream's form): `{"value": v}` of the first
/// pair named K, from the redacted document.
fn sync_object_value(shown: &Value, wanted: &str) -> ApiResult<Response> {
    shown
        .pointer("/spec/kv")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|pair| pair.get(wanted))
        .map(|v| axum::Json(json!({ "value": v })).into_response())
        .ok_or_else(|| ApiError::NotFound("Cluster Sync Object key value not found".into()))
}

fn multipart_response(metadata: &Value, files: &[FilePart]) -> Response {
    let boundary = "emco-boundary-7d3c1a";
    let mut out: Vec<u8> = Vec::new();
    out.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n").as_bytes());
    out.extend_from_slice(metadata.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for f in files {
        let filename = f.filename.as_deref().unwrap_or(&f.field);
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                f.field,
                filename.replace('"', "")
            )
            .as_bytes(),
        );
        out.extend_from_slice(&f.contents);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        [(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )],
        out,
    )
        .into_response()
}

pub async fn list(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
    query: HashMap<String, String>,
) -> ApiResult<Response> {
    let parent = parent_key(kind, &params)?;
    let mut items = list_checked(&state, kind, &parent).await?;
    for item in &mut items {
        item.data = shown(kind, std::mem::take(&mut item.data));
    }
    Ok(axum::Json(list_view(&state, kind, &parent, &query, items).await?).into_response())
}

/// Lists a collection, answering 404 when the parent itself does not exist.
async fn list_checked(
    state: &AppState,
    kind: &RestKind,
    parent: &ResourceKey,
) -> ApiResult<Vec<Stored>> {
    let schema = state.repo.schema();
    if let Some(parent_kind) = schema.node(kind.name).and_then(|n| n.stored_parent.clone()) {
        let parent_key = ResourceKey::new(parent_kind, parent.elements.clone());
        if !state.repo.exists(&parent_key).await? {
            return Err(RepoError::NotFound(parent_key).into());
        }
    }
    Ok(state.repo.list(kind.name, parent).await?)
}

/// The collection's JSON, including upstream's query forms.
async fn list_view(
    state: &AppState,
    kind: &RestKind,
    parent: &ResourceKey,
    query: &HashMap<String, String>,
    items: Vec<Stored>,
) -> ApiResult<Value> {
    let by_spec = |field: &str, wanted: &str| -> Vec<Stored> {
        items
            .iter()
            .filter(|s| {
                s.data
                    .pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_str)
                    == Some(wanted)
            })
            .cloned()
            .collect()
    };
    match kind.name {
        "cluster" => {
            let label = query.get("label");
            let with_labels = query.get("withLabels").is_some_and(|v| v == "true");
            if label.is_some() || with_labels {
                // One prefix scan for every label of the provider, not one read per cluster.
                let mut labels: HashMap<String, Vec<Stored>> = HashMap::new();
                for l in state.repo.list("clusterLabel", parent).await? {
                    let cluster = l.key.get("cluster").unwrap_or_default().to_owned();
                    labels.entry(cluster).or_default().push(l);
                }
                let labels_of = |s: &Stored| {
                    labels
                        .get(s.key.name())
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                };
                if let Some(label) = label {
                    let names: Vec<Value> = items
                        .iter()
                        .filter(|s| labels_of(s).iter().any(|l| l.key.name() == label))
                        .map(|s| Value::String(s.key.name().to_owned()))
                        .collect();
                    if names.is_empty() {
                        return Err(ApiError::NotFound(format!(
                            "no cluster has label {label:?}"
                        )));
                    }
                    return Ok(Value::Array(names));
                }
                let out = items
                    .iter()
                    .map(|s| {
                        let mut v = s.data.clone();
                        if let Value::Object(m) = &mut v {
                            let list = labels_of(s).iter().map(|l| l.data.clone()).collect();
                            m.insert("labels".into(), Value::Array(list));
                        }
                        v
                    })
                    .collect();
                return Ok(Value::Array(out));
            }
        }
        "genericAppPlacementIntent" | "appProfile" => {
            if let Some(app) = query.get("app").or_else(|| query.get("app-name")) {
                let matched = by_spec("app", app);
                let Some(first) = matched.into_iter().next() else {
                    return Err(ApiError::NotFound(format!(
                        "no {} for app {app:?}",
                        kind.name
                    )));
                };
                return Ok(if kind.name == "appProfile" {
                    first.data
                } else {
                    first.data.get("spec").cloned().unwrap_or(Value::Null)
                });
            }
        }
        "groupIntent" => {
            let wanted = query.get("intent");
            let intents: Vec<Value> = items
                .iter()
                .filter(|s| wanted.is_none_or(|w| s.key.name() == w))
                .map(|s| {
                    s.data
                        .pointer("/spec/intent")
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect();
            if wanted.is_some() && intents.is_empty() {
                return Err(ApiError::NotFound("intent not found".into()));
            }
            return Ok(json!({ "intent": intents }));
        }
        _ => {}
    }
    if let Some(field) = name_query(kind.name)
        && let Some(wanted) = query.get(field)
    {
        let matched: Vec<Value> = items
            .into_iter()
            .filter(|s| s.key.name() == wanted)
            .map(|s| s.data)
            .collect();
        if matched.is_empty() {
            return Err(ApiError::NotFound(format!(
                "{} {wanted:?} not found",
                kind.name
            )));
        }
        return Ok(Value::Array(matched));
    }
    Ok(Value::Array(items.into_iter().map(|s| s.data).collect()))
}

/// The query parameter that selects one item of a collection by name, where upstream has one.
fn name_query(kind: &str) -> Option<&'static str> {
    match kind {
        "hpaIntent" => Some("intent"),
        "hpaConsumer" => Some("consumer"),
        "hpaResource" => Some("resource"),
        _ => None,
    }
}

pub async fn delete(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
) -> ApiResult<Response> {
    let key = key_from_path(kind, &params, &[])?;
    delete_one(&state, &key).await?;
    tell_cluster_controllers(&state, &key, emco_deploy::clm::ClusterEvent::Deleted).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A cluster was stored or deleted: the cluster-manager controllers registered at
/// `/v2/clm-controllers` are told (see `emco_deploy::clm`); what they could not be told is
/// logged, and the change stands.
async fn tell_cluster_controllers(
    state: &AppState,
    key: &ResourceKey,
    event: emco_deploy::clm::ClusterEvent,
) {
    if key.kind != "cluster" {
        return;
    }
    let (Some(provider), Some(cluster)) = (key.get("clusterProvider"), key.get("cluster")) else {
        return;
    };
    for problem in emco_deploy::clm::publish(&state.repo, provider, cluster, event).await {
        tracing::warn!(%problem, "cluster-manager controller not told");
    }
}

/// Deletes one resource. A deployment intent group must also have finished terminating, and its
/// app contexts go with it; deleting one of a group's intents revokes the group's approval.
async fn delete_one(state: &AppState, key: &ResourceKey) -> ApiResult<()> {
    let deployer = state.deployer.as_deref();
    if key.kind == "deploymentIntentGroup"
        && let Some(deployer) = deployer
    {
        deployer.check_deletable(key).await?;
        let status = deployer.state(key).await?;
        state.repo.delete(key).await?;
        deployer.forget(&status).await;
        return Ok(());
    }
    state.repo.delete(key).await?;
    crate::lifecycle::revoke_approval(state, key).await
}

/// `DELETE` on a collection (where upstream offers it): deletes every item, leaf rules still apply.
pub async fn delete_all(
    state: AppState,
    kind: &'static RestKind,
    params: Vec<(String, String)>,
) -> ApiResult<Response> {
    let parent = parent_key(kind, &params)?;
    for item in list_checked(&state, kind, &parent).await? {
        delete_one(&state, &item.key).await?;
        tell_cluster_controllers(&state, &item.key, emco_deploy::clm::ClusterEvent::Deleted).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Path parameters in route order; empty for root collections (where axum's `Path` refuses).
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = axum::extract::rejection::PathRejection;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match Path::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(Params(p)),
            Err(PathRejection::MissingPathParams(_)) => Ok(Params(Vec::new())),
            Err(e) => Err(e),
        }
    }
}

type Q = Query<HashMap<String, String>>;

/// The collection and item method routers of one kind.
pub fn routes(
    kind: &'static RestKind,
) -> (
    axum::routing::MethodRouter<AppState>,
    axum::routing::MethodRouter<AppState>,
) {
    use axum::routing::{delete as del, get as getr, post};
    let mut collection = post(
        move |State(s): State<AppState>, Params(p): Params, h: HeaderMap, b: Bytes| async move {
            create(s, kind, p, h, b).await
        },
    )
    .get(
        move |State(s): State<AppState>, Params(p): Params, Query(q): Q| async move {
            list(s, kind, p, q).await
        },
    );
    if kind.delete_collection {
        collection = collection.merge(del(
            move |State(s): State<AppState>, Params(p): Params| async move {
                delete_all(s, kind, p).await
            },
        ));
    }
    let item = getr(
        move |State(s): State<AppState>, Params(p): Params, Query(q): Q, h: HeaderMap| async move {
            get(s, kind, p, q, h).await
        },
    )
    .put(
        move |State(s): State<AppState>, Params(p): Params, h: HeaderMap, b: Bytes| async move {
            update(s, kind, p, h, b).await
        },
    )
    .delete(
        move |State(s): State<AppState>, Params(p): Params| async move { delete(s, kind, p).await },
    );
    (collection, item)
}
