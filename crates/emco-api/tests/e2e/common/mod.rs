//! The in-process hub the API tests drive: the real router on a real redb store in a temp dir.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use emco_api::{AppState, router};
use emco_store::repository::Repository;
use serde_json::Value;
use tower::ServiceExt;

pub struct Hub {
    app: axum::Router,
    /// The hub's repository (and through it, its store), for checks behind the API.
    pub repo: Arc<Repository>,
    dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Hub {
    pub async fn new(max_body: usize) -> Self {
        Self::with_state(max_body, |state| state).await
    }

    /// A hub whose state `configure` completes (a sealer, say).
    pub async fn with_state(max_body: usize, configure: impl FnOnce(AppState) -> AppState) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = emco_store::open("", dir.path()).await.unwrap();
        let repo = Arc::new(Repository::open(store).await.unwrap());
        Self {
            app: router(configure(AppState::new(repo.clone())), max_body),
            repo,
            dir,
        }
    }

    /// The directory of the hub's embedded store.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub async fn json(&self, method: &str, path: &str, body: Value) -> Reply {
        self.send(
            method,
            path,
            Some("application/json"),
            None,
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, None, vec![]).await
    }

    pub async fn multipart(
        &self,
        method: &str,
        path: &str,
        metadata: &Value,
        file: Option<(&str, &[u8])>,
    ) -> Reply {
        let mut body = Vec::new();
        write!(
            body,
            "--B0und\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n"
        )
        .unwrap();
        if let Some((name, contents)) = file {
            write!(
                body,
                "--B0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .unwrap();
            body.extend_from_slice(contents);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--B0und--\r\n");
        self.send(
            method,
            path,
            Some("multipart/form-data; boundary=B0und"),
            None,
            body,
        )
        .await
    }

    /// GET with `Accept: application/octet-stream` (a resource's uploaded file).
    pub async fn raw(&self, path: &str) -> Reply {
        self.send("GET", path, None, Some("application/octet-stream"), vec![])
            .await
    }

    /// A JSON call (or a bodiless one) answering status and text.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let reply = match body {
            Some(v) => self.json(method, path, v).await,
            None => self.send(method, path, None, None, vec![]).await,
        };
        (reply.status, reply.text())
    }

    /// Like `call`, asserting success.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> String {
        let (status, text) = self.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        text
    }
}
