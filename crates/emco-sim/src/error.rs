//! Errors: [`ApiError`] is what a Kubernetes client sees (a `Status` object with the HTTP code,
//! reason and message the real API server would use); [`SimError`] is what the library's own
//! operations (adding clusters, writing kubeconfigs, serving) return.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::catalog::ResourceDef;

/// A failed Kubernetes API request, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also the Status' `code`.
    pub code: u16,
    /// The Status' `reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, …).
    pub reason: &'static str,
    /// Human-readable message, worded like the real API server's.
    pub message: String,
    /// The Status' `details`, when the real server sends some.
    pub details: Option<Value>,
}

/// One `details.causes` entry of an `Invalid` error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`, …
    pub reason: &'static str,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// What is wrong, e.g. `Required value: name or generateName is required`.
    pub message: String,
}

impl FieldCause {
    /// A required field is missing.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message,
        }
    }

    /// A field has a value the API rejects.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    /// A field may not be changed or set.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.to_owned(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

fn resource_details(def: &ResourceDef, name: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), Value::String(name.to_owned()));
    if !def.group.is_empty() {
        details.insert("group".into(), Value::String(def.group.clone()));
    }
    details.insert("kind".into(), Value::String(def.plural.clone()));
    Value::Object(details)
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a named object: `deployments.apps "web" not found`.
    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified_resource()),
        )
        .with_details(resource_details(def, name))
    }

    /// 404 for a namespace that a namespaced request names.
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// 404 for a path that names no resource.
    pub fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 on create: `configmaps "x" already exists`.
    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified_resource()),
        )
        .with_details(resource_details(def, name))
    }

    /// 409 on a stale `resourceVersion` (or failed UID precondition).
    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                def.qualified_resource()
            ),
        )
        .with_details(resource_details(def, name))
    }

    /// 409 for the optimistic-concurrency failure clients retry on.
    pub fn stale(def: &ResourceDef, name: &str) -> Self {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 from server-side apply: other managers own fields the request changes.
    pub fn apply_conflicts(conflicts: &[(String, String)], api_version: &str) -> Self {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| {
                format!("conflict with \"{manager}\" using {api_version}: {field}")
            })
            .collect();
        let message = if lines.len() == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!(
                "Apply failed with {} conflicts: {}",
                lines.len(),
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\" using {api_version}"),
                    "field": field,
                })
            })
            .collect();
        Self::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
    }

    /// 422: the object fails validation.
    pub fn invalid(def: &ResourceDef, name: &str, causes: Vec<FieldCause>) -> Self {
        let described: Vec<String> = causes
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect();
        let summary = if described.len() == 1 {
            described[0].clone()
        } else {
            format!("[{}]", described.join(", "))
        };
        let mut details = Map::new();
        details.insert("name".into(), Value::String(name.to_owned()));
        if !def.group.is_empty() {
            details.insert("group".into(), Value::String(def.group.clone()));
        }
        details.insert("kind".into(), Value::String(def.kind.clone()));
        details.insert(
            "causes".into(),
            Value::Array(
                causes
                    .iter()
                    .map(|cause| json!({"reason": cause.reason, "message": cause.message, "field": cause.field}))
                    .collect(),
            ),
        );
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {summary}", def.qualified_kind()),
        )
        .with_details(Value::Object(details))
    }

    /// 422 whose message is given whole (patch failures).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 403: refused (e.g. creating content in a terminating namespace).
    pub fn forbidden(def: &ResourceDef, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: {why}",
                def.qualified_resource()
            ),
        )
        .with_details(resource_details(def, name))
    }

    /// 403: the authenticated user may not make this request (RBAC).
    pub fn unauthorized_request(
        message: String,
        resource: &str,
        name: Option<&str>,
        group: &str,
    ) -> Self {
        let mut details = serde_json::Map::new();
        if let Some(name) = name {
            details.insert("name".into(), Value::String(name.to_owned()));
        }
        if !group.is_empty() {
            details.insert("group".into(), Value::String(group.to_owned()));
        }
        details.insert("kind".into(), Value::String(resource.to_owned()));
        Self::new(403, "Forbidden", message).with_details(Value::Object(details))
    }

    /// 405: the verb is not served on this path.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 406: none of the accepted media types can be produced.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (asked for {accept})"
            ),
        )
    }

    /// 415: the body's media type is not one this verb takes.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 410 for a watch from a resourceVersion older than the kept history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 500: the simulator itself failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let (Some(details), Some(object)) = (&self.details, status.as_object_mut()) {
            object.insert("details".into(), details.clone());
        }
        if let Some(object) = status.as_object_mut() {
            object.insert("code".into(), Value::from(self.code));
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut response = (code, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Failures of the simulator's own operations.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A cluster of that name is already served.
    #[error("cluster {0:?} already exists")]
    ClusterExists(String),
    /// No cluster of that name is served.
    #[error("cluster {0:?} not found")]
    ClusterNotFound(String),
    /// The name cannot be a cluster name (a DNS-1123 label: lower case, digits, `-`).
    #[error("invalid cluster name {0:?}: must be a lowercase RFC 1123 label")]
    InvalidClusterName(String),
    /// Writing or removing a kubeconfig failed.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig's path.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Binding or serving the HTTP listener failed.
    #[error("serving on {address}: {source}")]
    Serve {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Creating the simulator's CA or its serving certificate failed (`tls`).
    #[error("TLS certificate: {0}")]
    Certificate(#[from] crate::csr::SignError),
    /// rustls refused the server configuration (`tls`).
    #[error("TLS configuration: {0}")]
    TlsConfig(tokio_rustls::rustls::Error),
}
