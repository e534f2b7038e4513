//! The Kubernetes REST API of one simulated cluster: path parsing, content negotiation,
//! discovery and OpenAPI documents, and the verbs (get, list, watch, create, update, patch,
//! delete, deletecollection) with their subresources (`status`, `scale`, `approval`,
//! `finalize`).
//!
//! Every verb runs with the cluster's lock held from the read of the current object to the
//! commit of the new one, so writes are atomic and resourceVersions strictly increase.
//!
//! This module routes and holds what the verbs share (request parameters, body parsing, field
//! validation, rendering); `read`, `write` and `delete` hold the verbs themselves.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use emco_patch::{BuiltinSchema, GroupVersionKind, PatchError};
use serde_json::{Map, Value, json};

use crate::apply::{self, Scope, Writer};
use crate::catalog::{self, ResourceDef};
use crate::cluster::{Cluster, ClusterState, EventType, to_bytes};
use crate::controllers::{self, Operation};
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};
use crate::{SimOptions, crd, discovery, meta, openapi, proto, validation, watch};

mod delete;
mod read;
mod write;

use delete::{after_removal, delete, delete_collection};
use read::{get, list};
use write::{create, patch, update};

/// The parts of an HTTP request the API looks at.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// Path below the cluster's URL, e.g. `/apis/apps/v1/namespaces/default/deployments`.
    pub path: String,
    /// Decoded query parameters (the last of repeated ones wins).
    pub query: HashMap<String, String>,
    /// `Accept` header.
    pub accept: String,
    /// `Content-Type` header.
    pub content_type: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Request body.
    pub body: Bytes,
    /// Who sent it (a TLS client certificate); `None` is the cluster's administrator.
    pub user: Option<Arc<crate::rbac::UserInfo>>,
}

/// What representation the client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The objects themselves.
    Json,
    /// `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Picks the first media type in `Accept` the simulator can produce.
pub fn negotiate(accept: &str) -> Result<Output, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        let as_kind = parts
            .filter_map(|part| part.split_once('='))
            .find(|(key, _)| *key == "as");
        match as_kind.map(|(_, value)| value) {
            None => return Ok(Output::Json),
            Some("Table") => return Ok(Output::Table),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                return Ok(Output::Metadata);
            }
            Some(_) => continue,
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// Which aggregated discovery version `Accept` asks for, if any.
fn aggregated_discovery(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        if !params.contains(&"g=apidiscovery.k8s.io")
            || !params.contains(&"as=APIGroupDiscoveryList")
        {
            continue;
        }
        if params.contains(&"v=v2") {
            return Some("v2");
        }
        if params.contains(&"v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

/// A JSON response.
pub fn json_response(code: StatusCode, body: Bytes) -> Response {
    json_response_typed(code, body, "application/json")
}

fn json_response_typed(code: StatusCode, body: Bytes, content_type: &'static str) -> Response {
    let mut response = (code, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn value_response(code: StatusCode, value: &Value) -> Response {
    json_response(code, to_bytes(value))
}

/// Decodes `%XX` escapes in a path segment.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(value) = segment
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(value);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Query parameters the verbs use.
#[derive(Debug, Clone, Default)]
struct Params {
    watch: bool,
    resource_version: Option<String>,
    label_selector: String,
    field_selector: String,
    limit: Option<usize>,
    continue_token: Option<String>,
    timeout_seconds: Option<u64>,
    allow_bookmarks: bool,
    send_initial_events: bool,
    dry_run: bool,
    field_manager: Option<String>,
    force: bool,
    propagation_policy: Option<String>,
    include_object: IncludeObject,
}

fn truthy(value: Option<&String>) -> bool {
    value.is_some_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

impl Params {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dry run value: {other:?}: supported values: \"All\""
                )));
            }
        };
        let number = |name: &str| -> Result<Option<u64>, ApiError> {
            match query.get(name).filter(|value| !value.is_empty()) {
                None => Ok(None),
                Some(value) => value
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("invalid {name}: {value:?}"))),
            }
        };
        Ok(Self {
            watch: truthy(query.get("watch")),
            resource_version: query.get("resourceVersion").cloned(),
            label_selector: query.get("labelSelector").cloned().unwrap_or_default(),
            field_selector: query.get("fieldSelector").cloned().unwrap_or_default(),
            limit: number("limit")?
                .and_then(|limit| usize::try_from(limit).ok())
                .filter(|limit| *limit > 0),
            continue_token: query
                .get("continue")
                .filter(|token| !token.is_empty())
                .cloned(),
            timeout_seconds: number("timeoutSeconds")?,
            allow_bookmarks: truthy(query.get("allowWatchBookmarks")),
            send_initial_events: truthy(query.get("sendInitialEvents")),
            dry_run,
            field_manager: query
                .get("fieldManager")
                .filter(|manager| !manager.is_empty())
                .cloned(),
            force: truthy(query.get("force")),
            propagation_policy: query.get("propagationPolicy").cloned(),
            include_object: IncludeObject::parse(query.get("includeObject").map(String::as_str)),
        })
    }
}

/// Serves one request to `cluster`. `prefix` is the cluster's path below the server root
/// (`/clusters/edge-1`), needed for the server-relative URLs of the OpenAPI index.
pub fn serve(
    cluster: &Arc<Cluster>,
    options: &SimOptions,
    prefix: &str,
    request: ApiRequest,
) -> Response {
    match route(cluster, options, prefix, &request) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn route(
    cluster: &Arc<Cluster>,
    options: &SimOptions,
    prefix: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let decoded: Vec<String> = request
        .path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let read_only = request.method == Method::GET || request.method == Method::HEAD;
    let is_resource = matches!(
        segments.as_slice(),
        ["api", "v1", _, ..] | ["apis", _, _, _, ..]
    );
    if !is_resource && !read_only {
        return Err(ApiError::method_not_allowed());
    }
    if !read_only {
        cluster.count_write();
    }
    match segments.as_slice() {
        [] => Ok(value_response(StatusCode::OK, &root_paths())),
        ["version"] => Ok(value_response(StatusCode::OK, &version())),
        ["healthz" | "livez" | "readyz", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["openapi", "v3"] => {
            let custom = cluster.lock().custom_types().to_vec();
            Ok(value_response(
                StatusCode::OK,
                &openapi::index(prefix, &custom),
            ))
        }
        ["openapi", "v3", "api", version] => openapi_document(cluster, "", version),
        ["openapi", "v3", "apis", group, version] => openapi_document(cluster, group, version),
        ["api"] => match aggregated_discovery(&request.accept) {
            Some(version) => Ok(aggregated_response(
                discovery::aggregated(true, &[], version),
                version,
            )),
            None => Ok(value_response(StatusCode::OK, &discovery::api_versions())),
        },
        ["apis"] => {
            let custom = cluster.lock().custom_types().to_vec();
            match aggregated_discovery(&request.accept) {
                Some(version) => Ok(aggregated_response(
                    discovery::aggregated(false, &custom, version),
                    version,
                )),
                None => Ok(value_response(
                    StatusCode::OK,
                    &discovery::api_group_list(&custom),
                )),
            }
        }
        ["apis", group] => {
            let custom = cluster.lock().custom_types().to_vec();
            discovery::api_group_document(group, &custom)
                .map(|document| value_response(StatusCode::OK, &document))
                .ok_or_else(ApiError::no_such_path)
        }
        ["api", "v1"] => resource_list_response(cluster, "", "v1"),
        ["apis", group, version] => resource_list_response(cluster, group, version),
        ["api", "v1", rest @ ..] => {
            authorize(cluster, "", rest, request)?;
            resource(cluster, options, "", "v1", rest, request)
        }
        ["apis", group, version, rest @ ..] => {
            authorize(cluster, group, rest, request)?;
            resource(cluster, options, group, version, rest, request)
        }
        _ => Err(ApiError::no_such_path()),
    }
}

fn root_paths() -> Value {
    let mut paths = vec!["/api".to_owned(), "/api/v1".to_owned(), "/apis".to_owned()];
    for (group, versions) in catalog::builtin_groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
    {
        paths.push(format!("/apis/{group}"));
        paths.extend(
            versions
                .iter()
                .map(|version| format!("/apis/{group}/{version}")),
        );
    }
    paths.extend(["/healthz", "/livez", "/openapi/v3", "/readyz", "/version"].map(str::to_owned));
    json!({ "paths": paths })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-emco-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn aggregated_response(document: Value, version: &str) -> Response {
    let content_type = if version == "v2" {
        discovery::AGGREGATED_V2
    } else {
        discovery::AGGREGATED_V2BETA1
    };
    json_response_typed(StatusCode::OK, to_bytes(&document), content_type)
}

fn openapi_document(cluster: &Cluster, group: &str, version: &str) -> Result<Response, ApiError> {
    let custom = cluster.lock().custom_types().to_vec();
    openapi::document(group, version, &custom)
        .map(|document| value_response(StatusCode::OK, &document))
        .ok_or_else(ApiError::no_such_path)
}

fn resource_list_response(
    cluster: &Cluster,
    group: &str,
    version: &str,
) -> Result<Response, ApiError> {
    let custom = cluster.lock().custom_types().to_vec();
    discovery::resource_list(group, version, &custom)
        .map(|document| value_response(StatusCode::OK, &document))
        .ok_or_else(ApiError::no_such_path)
}

/// Refuses a resource request its authenticated user may not make (see [`crate::rbac`]).
fn authorize(
    cluster: &Cluster,
    group: &str,
    rest: &[&str],
    request: &ApiRequest,
) -> Result<(), ApiError> {
    let Some(user) = &request.user else {
        return Ok(());
    };
    let Some(target) = parse_target(rest) else {
        return Ok(()); // answered 404 by `resource`
    };
    let watching = request
        .query
        .get("watch")
        .is_some_and(|value| value == "true" || value == "1");
    let verb = match (&request.method, target.name) {
        (&Method::GET | &Method::HEAD, _) if watching => "watch",
        (&Method::GET | &Method::HEAD, Some(_)) => "get",
        (&Method::GET | &Method::HEAD, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => return Ok(()),
    };
    // A namespace is itself named by the path `namespaces/{name}`.
    let (resource, namespace, name) = match (target.plural, target.namespace, target.name) {
        ("namespaces", None, name) => ("namespaces", None, name),
        (plural, namespace, name) => (plural, namespace, name),
    };
    let attributes = crate::rbac::Attributes {
        verb,
        group,
        resource,
        subresource: target.subresource,
        namespace,
        name,
    };
    if crate::rbac::allowed(&cluster.lock(), user, &attributes) {
        Ok(())
    } else {
        Err(ApiError::unauthorized_request(
            attributes.refusal(user),
            resource,
            name,
            group,
        ))
    }
}

/// What a resource path names.
struct Target<'a> {
    plural: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

fn parse_target<'a>(rest: &[&'a str]) -> Option<Target<'a>> {
    let target = |plural, namespace, name, subresource| Target {
        plural,
        namespace,
        name,
        subresource,
    };
    Some(match *rest {
        [plural] => target(plural, None, None, None),
        ["namespaces", namespace, plural] if plural != "status" && plural != "finalize" => {
            target(plural, Some(namespace), None, None)
        }
        ["namespaces", namespace, plural, name] => {
            target(plural, Some(namespace), Some(name), None)
        }
        ["namespaces", namespace, plural, name, subresource] => {
            target(plural, Some(namespace), Some(name), Some(subresource))
        }
        [plural, name] => target(plural, None, Some(name), None),
        [plural, name, subresource] => target(plural, None, Some(name), Some(subresource)),
        _ => return None,
    })
}

/// One write in progress: the type, where, and who writes.
struct Write<'a> {
    def: &'a Arc<ResourceDef>,
    namespace: &'a str,
    manager: String,
    dry_run: bool,
    gvk: GroupVersionKind,
    validation: FieldValidation,
    /// `Warning` headers for the response (unknown fields under `fieldValidation=Warn`).
    warnings: std::cell::RefCell<Vec<String>>,
}

/// `fieldValidation`: what unknown fields in a built-in object lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum FieldValidation {
    Ignore,
    /// The API server's default.
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Checks `object` for fields its (built-in) type does not declare: refused under `Strict`,
/// otherwise dropped (as decoding into the Go type does), with a warning under `Warn`. `apply`
/// words the error as server-side apply does.
fn check_fields(write: &Write, object: &mut Value, apply: bool) -> Result<(), ApiError> {
    let def = write.def;
    let Some(unknown) = proto::prune_unknown(&def.api_version(), &def.kind, &mut *object) else {
        return Ok(());
    };
    if unknown.is_empty() {
        return Ok(());
    }
    if write.validation == FieldValidation::Ignore {
        return Ok(());
    }
    if write.validation == FieldValidation::Warn {
        write.warnings.borrow_mut().extend(
            unknown
                .iter()
                .map(|field| format!("unknown field \"{field}\"")),
        );
        return Ok(());
    }
    if apply {
        let name = text(object, "/metadata/name");
        let location = if def.namespaced {
            format!("{}/{name}", write.namespace)
        } else {
            name.to_owned()
        };
        let fields: Vec<String> = unknown
            .iter()
            .map(|field| format!(".{field}: field not declared in schema"))
            .collect();
        return Err(ApiError::bad_request(format!(
            "failed to create typed patch object ({location}; {}, Kind={}): {}",
            def.api_version(),
            def.kind,
            fields.join(", ")
        )));
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = def.kind,
        version = def.version
    )))
}

impl Write<'_> {
    fn writer(&self, scope: Scope) -> Writer<'_> {
        Writer {
            manager: &self.manager,
            api_version: "",
            scope,
            gvk: &self.gvk,
            schema: &BuiltinSchema,
        }
    }
}

/// Whether managed fields still need recording (ordinary writes) or were set by an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Managed {
    Track,
    Done,
}

fn main_scope(def: &ResourceDef) -> Scope {
    Scope::Main {
        exclude_status: def.status,
    }
}

fn default_manager(user_agent: &str) -> String {
    let prefix = user_agent.split('/').next().unwrap_or_default().trim();
    if prefix.is_empty() {
        "unknown".to_owned()
    } else {
        prefix.chars().take(128).collect()
    }
}

fn resource(
    cluster: &Arc<Cluster>,
    options: &SimOptions,
    group: &str,
    version: &str,
    rest: &[&str],
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let target = parse_target(rest).ok_or_else(ApiError::no_such_path)?;
    let params = Params::parse(&request.query)?;
    let mut state = cluster.lock();
    let def = state
        .resolve(group, version, target.plural)
        .ok_or_else(ApiError::no_such_path)?;
    if (!def.namespaced && target.namespace.is_some())
        || (def.namespaced && target.name.is_some() && target.namespace.is_none())
    {
        return Err(ApiError::no_such_path());
    }
    if let Some(subresource) = target.subresource
        && !def.subresources().contains(&subresource)
    {
        return Err(ApiError::no_such_path());
    }
    let namespace = target.namespace.unwrap_or_default();
    let output = negotiate(&request.accept)?;
    let write = Write {
        def: &def,
        namespace,
        manager: params
            .field_manager
            .clone()
            .unwrap_or_else(|| default_manager(&request.user_agent)),
        dry_run: params.dry_run,
        gvk: GroupVersionKind::new(def.group.clone(), def.version.clone(), def.kind.clone()),
        validation: FieldValidation::parse(
            request.query.get("fieldValidation").map(String::as_str),
        )?,
        warnings: std::cell::RefCell::new(Vec::new()),
    };
    let result = match (&request.method, target.name) {
        (&Method::GET, None) if params.watch => {
            return watch::start(
                &mut state,
                options,
                watch_spec(&def, target.namespace, None, &params, output)?,
            );
        }
        (&Method::GET, Some(name)) if params.watch => {
            return watch::start(
                &mut state,
                options,
                watch_spec(&def, target.namespace, Some(name), &params, output)?,
            );
        }
        (&Method::GET, None) => return list(&state, &def, target.namespace, &params, output),
        (&Method::GET, Some(name)) => get(
            &state,
            &def,
            namespace,
            name,
            target.subresource,
            &params,
            output,
        ),
        (&Method::POST, None) => {
            let object = parse_body(request)?;
            create(&mut state, &write, object, Managed::Track)
        }
        (&Method::PUT, Some(name)) => {
            let object = parse_body(request)?;
            update(&mut state, &write, name, object, target.subresource)
        }
        (&Method::PATCH, Some(name)) => patch(
            &mut state,
            &write,
            name,
            request,
            &params,
            target.subresource,
        ),
        (&Method::DELETE, Some(name)) if target.subresource.is_none() => {
            delete(&mut state, &write, name, request, &params)
        }
        (&Method::DELETE, None) => {
            delete_collection(&mut state, &write, target.namespace, request, &params)
        }
        _ => Err(ApiError::method_not_allowed()),
    }?;
    let (code, body) = result;
    let mut response = json_response(
        code,
        render(
            &def,
            body,
            output,
            state.resource_version(),
            params.include_object,
        )?,
    );
    for warning in write.warnings.borrow().iter() {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

fn parse_object(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let value: Value = if media.ends_with("yaml") {
        let text =
            std::str::from_utf8(bytes).map_err(|error| ApiError::bad_request(error.to_string()))?;
        serde_json::from_str(text).or_else(|_| {
            serde_saphyr::from_str(text).map_err(|error| {
                ApiError::bad_request(format!("error converting YAML to JSON: {error}"))
            })
        })?
    } else {
        serde_json::from_slice(bytes).map_err(|error| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded: {error}"
            ))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}

fn parse_body(request: &ApiRequest) -> Result<Value, ApiError> {
    let media = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if media == proto::MEDIA_TYPE {
        return decode_protobuf(&request.body);
    }
    if !(media.is_empty() || media == "application/json" || media.ends_with("yaml")) {
        return Err(ApiError::unsupported_media_type(&request.content_type));
    }
    parse_object(&request.body, media)
}

fn decode_protobuf(body: &[u8]) -> Result<Value, ApiError> {
    proto::decode_body(body).map_err(|error| match error {
        proto::ProtoError::UnknownKind(_) => {
            ApiError::unsupported_media_type(&format!("{} ({error})", proto::MEDIA_TYPE))
        }
        other => ApiError::bad_request(format!(
            "the body of the request could not be decoded: {other}"
        )),
    })
}

fn parse_stored(json: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(json)
        .map_err(|error| ApiError::internal(format!("stored object does not parse: {error}")))
}

/// Renders an object's stored JSON for the client: relabelled to the requested version of a
/// multi-version custom resource, as a Table, or as metadata only.
pub fn render(
    def: &ResourceDef,
    json: Bytes,
    output: Output,
    resource_version: u64,
    include: IncludeObject,
) -> Result<Bytes, ApiError> {
    let is_object_of_def =
        |object: &Value| object.get("kind").and_then(Value::as_str) == Some(def.kind.as_str());
    match output {
        Output::Json if !def.multi_version => Ok(json),
        Output::Json => {
            let mut object = parse_stored(&json)?;
            if is_object_of_def(&object)
                && let Some(map) = object.as_object_mut()
            {
                map.insert("apiVersion".into(), Value::String(def.api_version()));
            }
            Ok(to_bytes(&object))
        }
        Output::Table | Output::Metadata => {
            let object = parse_stored(&json)?;
            if !is_object_of_def(&object) {
                // Status objects and lists are not turned into tables.
                return Ok(json);
            }
            if output == Output::Table {
                Ok(to_bytes(&table::table(
                    def,
                    &[object],
                    resource_version,
                    include,
                )))
            } else {
                Ok(to_bytes(&table::partial_metadata(&object)))
            }
        }
    }
}

fn watch_spec(
    def: &Arc<ResourceDef>,
    namespace: Option<&str>,
    name: Option<&str>,
    params: &Params,
    output: Output,
) -> Result<watch::WatchSpec, ApiError> {
    let mut field_selector = FieldSelector::parse(&params.field_selector)?;
    if let Some(name) = name {
        field_selector =
            FieldSelector::parse(&format!("metadata.name={name},{}", params.field_selector))?;
    }
    Ok(watch::WatchSpec {
        def: def.clone(),
        namespace: namespace.map(str::to_owned),
        labels: LabelSelector::parse(&params.label_selector)?,
        fields: field_selector,
        output,
        include: params.include_object,
        bookmarks: params.allow_bookmarks,
        resource_version: params.resource_version.clone(),
        send_initial_events: params.send_initial_events,
        timeout_seconds: params.timeout_seconds,
    })
}

/// Fills in or checks `apiVersion` and `kind` of a request body.
fn check_type_meta(def: &ResourceDef, object: &mut Value) -> Result<(), ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request must be a JSON object"))?;
    let expected = def.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(expected));
        }
        Some(api_version) if api_version != expected => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        Some(_) => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(def.kind.clone()));
        }
        Some(kind) if kind != def.kind => {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data does not match the resource",
                def.version, def.kind
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request must be a JSON object"))?;
    let metadata = map.entry("metadata").or_insert_with(|| json!({}));
    if metadata.is_null() {
        *metadata = json!({});
    }
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_terminating(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|value| !value.is_null())
}

fn check_namespace_writable(
    state: &ClusterState,
    def: &ResourceDef,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let namespaces = catalog::namespaces();
    let stored = state
        .get(&namespaces, "", namespace)
        .ok_or_else(|| ApiError::namespace_not_found(namespace))?;
    let object = parse_stored(&stored.json)?;
    if is_terminating(&object) {
        return Err(ApiError::forbidden(
            def,
            name,
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

fn is_crd(def: &ResourceDef) -> bool {
    def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions"
}

fn validate(def: &ResourceDef, object: &Value) -> Result<(), ApiError> {
    let mut causes = validation::check_object(def, object);
    if is_crd(def) {
        causes.extend(crd::validate(object));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            def,
            text(object, "/metadata/name"),
            causes,
        ))
    }
}

/// Replaces the status of an object from inside the simulator (controllers): no managed-field
/// manager, no preconditions. Returns the new resourceVersion, or `None` if the object is gone.
pub fn internal_update_status(
    state: &mut ClusterState,
    def: &Arc<ResourceDef>,
    namespace: &str,
    name: &str,
    status: Value,
) -> Option<u64> {
    let stored = state.get(def, namespace, name)?.json.clone();
    let mut object: Value = serde_json::from_slice(&stored).ok()?;
    object.as_object_mut()?.insert("status".into(), status);
    state.commit(&def.store_key, &mut object);
    Some(state.resource_version())
}

#[cfg(test)]
mod tests {
    use super::read::{decode_continue, encode_continue};
    use super::*;

    #[test]
    fn accept_headers_pick_tables_metadata_or_json() {
        assert_eq!(negotiate("").unwrap(), Output::Json);
        assert_eq!(
            negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").unwrap(),
            Output::Table
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").unwrap(),
            Output::Metadata
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*").unwrap(),
            Output::Json
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            406
        );
        assert_eq!(
            aggregated_discovery(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            Some("v2")
        );
        assert_eq!(aggregated_discovery("application/json"), None);
    }

    #[test]
    fn paths_parse_into_targets() {
        let target = parse_target(&["namespaces", "default", "configmaps", "x"]).unwrap();
        assert_eq!(
            (target.plural, target.namespace, target.name),
            ("configmaps", Some("default"), Some("x"))
        );
        let target = parse_target(&["namespaces", "team", "status"]).unwrap();
        assert_eq!(
            (target.plural, target.name, target.subresource),
            ("namespaces", Some("team"), Some("status"))
        );
        let target = parse_target(&["namespaces", "team", "deployments"]).unwrap();
        assert_eq!(
            (target.plural, target.namespace, target.name),
            ("deployments", Some("team"), None)
        );
        assert!(parse_target(&["a", "b", "c", "d"]).is_none());
        assert_eq!(percent_decode("system%3Acontroller"), "system:controller");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue("default", "web");
        assert_eq!(
            decode_continue(&token).unwrap(),
            ("default".to_owned(), "web".to_owned())
        );
        assert!(decode_continue("zz").is_err());
    }
}
