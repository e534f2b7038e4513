//! The API's one error type and the single place that maps failures to HTTP statuses.
//!
//! Upstream EMCO answers errors as `text/plain` messages; we keep that shape (clients and the
//! conformance corpus match on substrings) and make each message name the field or resource.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use emco_store::repository::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route takes (bad JSON, bad multipart): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// The body breaks a validation rule: 400.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NotImplemented(String),
    /// The hub runs without a part this request needs: 503.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Repo(e) => match e {
                RepoError::NotFound(_) | RepoError::ParentMissing { .. } => StatusCode::NOT_FOUND,
                RepoError::AlreadyExists(_)
                | RepoError::ReferenceMissing { .. }
                | RepoError::HasChildren { .. }
                | RepoError::Referenced { .. }
                | RepoError::Blocked { .. }
                | RepoError::Contended { .. } => StatusCode::CONFLICT,
                RepoError::UnknownKind(_) | RepoError::BadKey(_) => StatusCode::NOT_FOUND,
                RepoError::Schema(_) => StatusCode::BAD_REQUEST,
                RepoError::Corrupt { .. } | RepoError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    /// The message a user sees. Existence errors use upstream's wording (`Project already exists`,
    /// `Project not found`) so scripts matching on it keep working.
    pub fn message(&self) -> String {
        match self {
            ApiError::Repo(RepoError::AlreadyExists(k)) => {
                format!("{} already exists: {}", display_kind(&k.kind), k)
            }
            ApiError::Repo(RepoError::NotFound(k)) => {
                format!("{} not found: {}", display_kind(&k.kind), k)
            }
            ApiError::Repo(RepoError::ParentMissing { key, parent }) => format!(
                "{} not found: {} (parent of {})",
                display_kind(&parent.kind),
                parent,
                key.kind
            ),
            other => other.to_string(),
        }
    }
}

/// `clusterProvider` -> `ClusterProvider`.
pub fn display_kind(kind: &str) -> String {
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message()),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<emco_deploy::DeployError> for ApiError {
    fn from(e: emco_deploy::DeployError) -> Self {
        use emco_deploy::DeployError as D;
        match e {
            D::NotFound(m) => ApiError::NotFound(m),
            D::Conflict(m) => ApiError::Conflict(m),
            D::BadRequest(m) => ApiError::BadRequest(m),
            D::Internal(m) => ApiError::Internal(m),
            D::Repo(e) => ApiError::Repo(e),
            D::Store(e) => ApiError::Repo(RepoError::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use emco_core::key::ResourceKey;

    use super::*;

    #[test]
    fn statuses_follow_the_upstream_contract() {
        let k = ResourceKey::new(
            "clusterProvider",
            vec![("clusterProvider".into(), "p".into())],
        );
        let exists = ApiError::Repo(RepoError::AlreadyExists(k.clone()));
        assert_eq!(exists.status(), StatusCode::CONFLICT);
        assert!(
            exists
                .message()
                .starts_with("ClusterProvider already exists")
        );
        let missing_parent = ApiError::Repo(RepoError::ParentMissing {
            key: k.clone(),
            parent: k.clone(),
        });
        assert_eq!(missing_parent.status(), StatusCode::NOT_FOUND);
        let referenced = ApiError::Repo(RepoError::Referenced {
            key: k,
            referrer: "x".into(),
        });
        assert_eq!(referenced.status(), StatusCode::CONFLICT);
        assert_eq!(
            ApiError::Unprocessable("x".into()).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
