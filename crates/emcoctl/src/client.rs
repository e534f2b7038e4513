//! HTTP calls to EMCO: routes an anchor to its service's base URL and sends JSON or multipart bodies the way
//! upstream emcoctl does (multipart: a `metadata` form field first, then the file parts).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode, Url};

use crate::config::{Config, ConfigError};
use crate::routing::{RoutingError, service_for};

/// What a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No body and no content type (GET, DELETE).
    None,
    /// A JSON body, possibly empty (upstream posts lifecycle actions with an empty JSON body).
    Json(String),
    /// `multipart/form-data`: the `metadata` field, then each file part in order.
    Multipart {
        metadata: String,
        parts: Vec<FilePart>,
    },
}

/// One file part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The form field name: `file` or `files`.
    pub field: String,
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// One call to EMCO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub anchor: String,
    pub payload: Payload,
    /// Ask for JSON explicitly; upstream does for resources that otherwise answer with multipart content.
    pub accept_json: bool,
}

/// What EMCO answered.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot create the HTTP client: {0}")]
    Build(String),
    #[error("{message} ({url})")]
    Transport { url: String, message: String },
}

/// Talks to the services named in a [`Config`].
pub struct Client {
    http: reqwest::Client,
    config: Config,
    token: Option<String>,
}

/// How long to wait for a TCP connection before calling the service unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(config: Config, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| ClientError::Build(error_chain(&err)))?;
        Ok(Client {
            http,
            config,
            token,
        })
    }

    /// The full URL for an anchor: the owning service's base URL, `/`, the anchor.
    pub fn url(&self, anchor: &str) -> Result<Url, ClientError> {
        let service = service_for(anchor)?;
        let text = format!("{}/{anchor}", self.config.base_url(service)?);
        Url::parse(&text).map_err(|err| ClientError::Url {
            url: text,
            message: err.to_string(),
        })
    }

    pub async fn send(&self, request: &Request) -> Result<Response, ClientError> {
        let url = self.url(&request.anchor)?;
        self.send_to(url, request).await
    }

    /// Sends `request` to `url` rather than to the URL its anchor routes to (a URL the user gave in full).
    pub async fn send_to(&self, url: Url, request: &Request) -> Result<Response, ClientError> {
        let mut builder = self.http.request(request.method.clone(), url.clone());
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if request.accept_json {
            builder = builder.header(ACCEPT, "application/json");
        }
        builder = match &request.payload {
            Payload::None => builder,
            Payload::Json(body) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone()),
            Payload::Multipart { metadata, parts } => {
                let mut form = Form::new().text("metadata", metadata.clone());
                for part in parts {
                    let file = Part::bytes(part.bytes.clone())
                        .file_name(part.filename.clone())
                        .mime_str(sniff_content_type(&part.bytes))
                        .map_err(|err| ClientError::Build(error_chain(&err)))?;
                    form = form.part(part.field.clone(), file);
                }
                builder.multipart(form)
            }
        };
        tracing::debug!(method = %request.method, %url, "sending");
        let transport = |err: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            message: transport_message(err),
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(transport)?;
        Ok(Response {
            status,
            content_type,
            body,
        })
    }
}

/// The content type upstream's HTTP library would detect for an upload: gzip archives, text, or bytes.
pub fn sniff_content_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        "application/x-gzip"
    } else if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok_and(|s| !s.contains('\0')) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A transport failure as a person wants it: "cannot connect: Connection refused (os error 111)" rather than
/// reqwest's layered wrapping (the URL is shown separately).
fn transport_message(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut innermost: &dyn std::error::Error = &err;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    if err.is_connect() {
        format!("cannot connect: {innermost}")
    } else if err.is_timeout() {
        format!("timed out: {innermost}")
    } else {
        error_chain(&err)
    }
}

/// An error and its causes on one line; reqwest's own message alone hides "connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Service};
    use std::path::Path;

    #[test]
    fn urls_follow_routing_and_config() {
        let config = Config::from_yaml(
            "orchestrator: {host: o, port: 1}\nclm: {host: c, port: 2}\ndcm: {host: d, port: 3}\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        let client = Client::new(config, None).unwrap();
        assert_eq!(
            client.url("projects/p").unwrap().as_str(),
            "http://o:1/v2/projects/p"
        );
        assert_eq!(
            client.url("cluster-providers/cp").unwrap().as_str(),
            "http://c:2/v2/cluster-providers/cp"
        );
        assert_eq!(
            client
                .url("projects/p/logical-clouds/l/status?output=summary")
                .unwrap()
                .as_str(),
            "http://d:3/v2/projects/p/logical-clouds/l/status?output=summary"
        );
        let err = client
            .url("projects/p/composite-apps/c/v1/deployment-intent-groups/d/generic-k8s-intents")
            .unwrap_err();
        assert!(err.to_string().contains("no gac information"), "{err}");
        assert!(matches!(client.url("bogus"), Err(ClientError::Routing(_))));
    }

    #[test]
    fn ingress_sends_everything_to_one_place() {
        let mut config = Config::defaults();
        config.ingress = Some(Endpoint {
            host: "127.0.0.1".into(),
            port: 8080,
            status_port: None,
        });
        config.services.remove(&Service::Gac);
        let client = Client::new(config, None).unwrap();
        let url = client
            .url("projects/p/composite-apps/c/v1/deployment-intent-groups/d/generic-k8s-intents");
        assert_eq!(url.unwrap().host_str(), Some("127.0.0.1"));
    }

    #[test]
    fn upload_content_types() {
        assert_eq!(
            sniff_content_type(&[0x1f, 0x8b, 0x08, 0]),
            "application/x-gzip"
        );
        assert_eq!(
            sniff_content_type(b"{\"a\": 1}"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(&[0, 159, 146, 150]),
            "application/octet-stream"
        );
    }
}
