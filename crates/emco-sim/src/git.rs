//! A Git server for pull-mode tests: smart HTTP under `/git/{repo}.git/…`, served by the real
//! `git http-backend` run as a CGI program per request (so clients see exactly what a real
//! Git host answers), with optional HTTP Basic authentication and a switch that takes it down.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::Sim;

/// What can go wrong serving Git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A repository name that is not a plain name.
    #[error("invalid repository name {0:?} (letters, digits, '-', '_', '.')")]
    InvalidName(String),
    /// Running git failed.
    #[error("{command}: {message}")]
    Command {
        /// What was run.
        command: String,
        /// Why it failed (its standard error, or the spawn error).
        message: String,
    },
    /// The CGI answer could not be read.
    #[error("git http-backend answered without CGI headers")]
    BadCgi,
}

/// One Git user: HTTP Basic name and password (a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUser {
    /// User name.
    pub name: String,
    /// Its token (the Basic password).
    pub token: String,
}

impl std::str::FromStr for GitUser {
    type Err = String;

    /// `NAME:TOKEN`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((name, token)) if !name.is_empty() && !token.is_empty() => Ok(Self {
                name: name.to_owned(),
                token: token.to_owned(),
            }),
            _ => Err(format!("expected NAME:TOKEN, got {text:?}")),
        }
    }
}

/// The Git server's state: where repositories live, who may use them, whether it is up.
#[derive(Debug)]
pub struct GitServer {
    root: PathBuf,
    users: Vec<GitUser>,
    down: AtomicBool,
}

impl GitServer {
    /// A server for the repositories under `root` (created on first use).
    pub fn new(root: PathBuf, users: Vec<GitUser>) -> Self {
        Self {
            root,
            users,
            down: AtomicBool::new(false),
        }
    }

    /// Where the bare repositories live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the server down (every Git request gets 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether the server is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Creates the bare repository `{name}.git` with initial branch `main`, unless it exists.
    pub async fn create_repo(&self, name: &str) -> Result<PathBuf, GitError> {
        if !valid_repo_name(name) {
            return Err(GitError::InvalidName(name.to_owned()));
        }
        let path = self.root.join(format!("{name}.git"));
        if path.join("HEAD").exists() {
            return Ok(path);
        }
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|error| GitError::Command {
                command: format!("mkdir {}", self.root.display()),
                message: error.to_string(),
            })?;
        run_git(&[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            &path.to_string_lossy(),
        ])
        .await?;
        Ok(path)
    }

    /// Names of the repositories (without `.git`), sorted.
    pub fn repos(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".git").map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// The user a request's `Authorization` header names, if its token is right. `Ok(None)`:
    /// no users are configured, so everyone is let in anonymously.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        if self.users.is_empty() {
            return Ok(None);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .ok_or(())?;
        let (name, token) = presented.split_once(':').ok_or(())?;
        self.users
            .iter()
            .find(|user| user.name == name && user.token == token)
            .map(|user| Some(user.name.clone()))
            .ok_or(())
    }
}

fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Runs `git` with `args`, failing with its standard error.
pub(crate) async fn run_git(args: &[&str]) -> Result<String, GitError> {
    let output = tokio::process::Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| GitError::Command {
            command: format!("git {}", args.first().copied().unwrap_or_default()),
            message: error.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(GitError::Command {
            command: format!("git {}", args.first().copied().unwrap_or_default()),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn plain(code: StatusCode, text: &str) -> Response {
    (code, text.to_owned()).into_response()
}

/// `ANY /git/{*path}`: one Git smart-HTTP request, handed to `git http-backend`.
pub async fn serve(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let git = sim.git();
    if git.is_down() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "git server is down\n");
    }
    let user = match git.authenticate(&headers) {
        Ok(user) => user,
        Err(()) => {
            let mut response = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"emco-sim git\""),
            );
            return response;
        }
    };
    let path_info = uri.path().strip_prefix("/git").unwrap_or_default();
    // http-backend refuses such paths too; refusing here keeps them away from the file system.
    if path_info.split('/').any(|segment| segment == "..") {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    match run_backend(git, &method, path_info, &uri, &headers, user, body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, path = path_info, "git http-backend failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n"))
        }
    }
}

async fn run_backend(
    git: &GitServer,
    method: &Method,
    path_info: &str,
    uri: &Uri,
    headers: &HeaderMap,
    user: Option<String>,
    body: Bytes,
) -> Result<Response, GitError> {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // Asked once: every request would otherwise spawn an extra git.
    static BACKEND: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    let backend = BACKEND
        .get_or_try_init(|| async {
            let exec_path = run_git(&["--exec-path"]).await?;
            Ok::<_, GitError>(Path::new(exec_path.trim()).join("git-http-backend"))
        })
        .await?;
    let mut command = tokio::process::Command::new(backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &git.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_text(header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            header_text(header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_ADDR", "127.0.0.1")
        // Pushing is for authenticated users, or for everyone when no users are configured.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env(
            "GIT_CONFIG_VALUE_0",
            if user.is_some() || git.users.is_empty() {
                "true"
            } else {
                "false"
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = &user {
        command.env("REMOTE_USER", user);
    }
    let mut child = command.spawn().map_err(|error| GitError::Command {
        command: backend.display().to_string(),
        message: error.to_string(),
    })?;
    // Feed the body while reading the answer: a large push would otherwise fill both pipes.
    let writer = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        })
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| GitError::Command {
            command: "git http-backend".into(),
            message: error.to_string(),
        })?;
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    if !output.stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "git http-backend");
    }
    cgi_response(&output.stdout)
}

/// Turns a CGI answer (headers, a blank line, the body) into an HTTP response.
fn cgi_response(output: &[u8]) -> Result<Response, GitError> {
    let (head_end, body_start) = find_blank_line(output).ok_or(GitError::BadCgi)?;
    let head = String::from_utf8_lossy(&output[..head_end]);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .status(status)
        .body(Body::from(output[body_start..].to_vec()))
        .map_err(|_| GitError::BadCgi)
}

fn find_blank_line(output: &[u8]) -> Option<(usize, usize)> {
    for index in 0..output.len() {
        if output[index..].starts_with(b"\r\n\r\n") {
            return Some((index, index + 4));
        }
        if output[index..].starts_with(b"\n\n") {
            return Some((index, index + 2));
        }
    }
    None
}

/// `POST /sim/git/repos/{name}`: creates `{name}.git` (idempotent).
pub async fn create_repo(State(sim): State<Arc<Sim>>, UrlPath(name): UrlPath<String>) -> Response {
    match sim.git().create_repo(&name).await {
        Ok(_) => (
            StatusCode::CREATED,
            Json(json!({"name": name, "url": format!("{}/git/{name}.git", sim.base_url())})),
        )
            .into_response(),
        Err(error @ GitError::InvalidName(_)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /sim/git/repos`.
pub async fn list_repos(State(sim): State<Arc<Sim>>) -> Response {
    let base = sim.base_url();
    let repos: Vec<_> = sim
        .git()
        .repos()
        .into_iter()
        .map(|name| json!({"name": name, "url": format!("{base}/git/{name}.git")}))
        .collect();
    Json(json!({"repos": repos, "down": sim.git().is_down()})).into_response()
}

/// `POST /sim/git/down`.
pub async fn down(State(sim): State<Arc<Sim>>) -> Response {
    tracing::info!("git server down");
    sim.git().set_down(true);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/git/up`.
pub async fn up(State(sim): State<Arc<Sim>>) -> Response {
    tracing::info!("git server up");
    sim.git().set_down(false);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_headers_become_a_response() {
        let response =
            cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(cgi_response(b"no blank line").is_err());
        assert!(valid_repo_name("gitrepo"));
        assert!(!valid_repo_name("../x"));
        assert_eq!(
            "u:t".parse::<GitUser>().unwrap(),
            GitUser {
                name: "u".into(),
                token: "t".into()
            }
        );
    }
}
