//! Watches: a chunked stream of `{"type": …, "object": …}` lines.
//!
//! Started under the cluster's lock, so nothing is missed or doubled between the initial events
//! and the live ones: from `resourceVersion` `""`/`"0"` (or with `sendInitialEvents`) the
//! current objects come first as `ADDED`; from a given resourceVersion the kept history after it
//! is replayed, or an `ERROR` event with a `410 Expired` Status is sent when that history is
//! gone. Label selector transitions turn into `ADDED`/`DELETED` as on a real server. Bookmarks
//! are sent when asked for; the stream ends after `timeoutSeconds`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::SimOptions;
use crate::api::{Output, render};
use crate::catalog::ResourceDef;
use crate::cluster::{ClusterState, EventType, WatchEvent, to_bytes};
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::IncludeObject;

/// How long a watch lasts when the client does not say (the real server picks 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a watch is about.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// The type watched.
    pub def: Arc<ResourceDef>,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector (a watch of one object pins `metadata.name`).
    pub fields: FieldSelector,
    /// Representation of the objects.
    pub output: Output,
    /// Table rows' objects.
    pub include: IncludeObject,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `resourceVersion` to start from.
    pub resource_version: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
}

fn line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn error_line(error: &ApiError) -> Bytes {
    line("ERROR", &to_bytes(&error.to_status()))
}

impl WatchSpec {
    fn in_scope(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }

    fn render_line(
        &self,
        event_type: EventType,
        object: Bytes,
        resource_version: u64,
    ) -> Option<Bytes> {
        let rendered = render(
            &self.def,
            object,
            self.output,
            resource_version,
            self.include,
        )
        .ok()?;
        Some(line(event_type.as_str(), &rendered))
    }

    /// The line a stored object contributes to the initial events, if it matches.
    fn initial_line(&self, json: &Bytes, resource_version: u64) -> Option<Bytes> {
        if !self.labels.is_empty() || !self.fields.is_empty() {
            let object: Value = serde_json::from_slice(json).ok()?;
            if !self.in_scope(&object) {
                return None;
            }
        }
        self.render_line(EventType::Added, json.clone(), resource_version)
    }

    /// The line an event produces for this watch, if any.
    fn event_line(&self, event: &WatchEvent) -> Option<Bytes> {
        if event.store_key != self.def.store_key {
            return None;
        }
        if self
            .namespace
            .as_ref()
            .is_some_and(|namespace| *namespace != event.namespace)
        {
            return None;
        }
        if self.labels.is_empty() && self.fields.is_empty() {
            return self.render_line(
                event.event_type,
                event.object.clone(),
                event.resource_version,
            );
        }
        let now: Value = serde_json::from_slice(&event.object).ok()?;
        let matches_now = self.in_scope(&now);
        let matched_before = event
            .previous
            .as_ref()
            .and_then(|previous| serde_json::from_slice::<Value>(previous).ok())
            .is_some_and(|previous| self.in_scope(&previous));
        let event_type = match (event.event_type, matched_before, matches_now) {
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Added | EventType::Deleted, _, true) => event.event_type,
            _ => return None,
        };
        self.render_line(event_type, event.object.clone(), event.resource_version)
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata =
            json!({"resourceVersion": resource_version.to_string(), "creationTimestamp": null});
        if initial_events_end && let Some(map) = metadata.as_object_mut() {
            map.insert(
                "annotations".into(),
                json!({"k8s.io/initial-events-end": "true"}),
            );
        }
        let object = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": metadata});
        line("BOOKMARK", &to_bytes(&object))
    }
}

/// A running watch's state, advanced by [`futures::stream::unfold`].
struct WatchStream {
    spec: WatchSpec,
    pending: VecDeque<Bytes>,
    receiver: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    deadline: Instant,
    bookmark_interval: Duration,
    next_bookmark: Instant,
    last_resource_version: u64,
}

impl WatchStream {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some((Ok(line), self));
            }
            let receiver = self.receiver.as_mut()?;
            tokio::select! {
                received = receiver.recv() => match received {
                    Ok(event) => {
                        self.last_resource_version = event.resource_version;
                        if let Some(line) = self.spec.event_line(&event) {
                            self.pending.push_back(line);
                        }
                    }
                    // A watcher that fell behind is closed, as the real server does; the
                    // client re-watches from the last resourceVersion it saw.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                        self.receiver = None;
                    }
                },
                () = tokio::time::sleep_until(self.deadline) => {
                    self.receiver = None;
                }
                () = tokio::time::sleep_until(self.next_bookmark), if self.spec.bookmarks => {
                    self.pending.push_back(self.spec.bookmark(self.last_resource_version, false));
                    self.next_bookmark += self.bookmark_interval;
                }
            }
        }
    }
}

/// Starts a watch (under the cluster's lock) and returns the streaming response.
pub fn start(
    state: &mut ClusterState,
    options: &SimOptions,
    spec: WatchSpec,
) -> Result<Response, ApiError> {
    let from = spec
        .resource_version
        .as_deref()
        .filter(|version| !version.is_empty() && *version != "0");
    let from = from
        .map(|version| {
            version.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {version:?}"))
            })
        })
        .transpose()?;
    let current = state.resource_version();
    let mut pending = VecDeque::new();
    let mut receiver = Some(state.subscribe());
    match from {
        Some(from) if !spec.send_initial_events => match state.events_since(from) {
            Ok(events) => pending.extend(events.iter().filter_map(|event| spec.event_line(event))),
            Err(oldest) => {
                pending.push_back(error_line(&ApiError::expired(from, oldest)));
                receiver = None;
            }
        },
        _ => {
            for (_, stored) in state.list(&spec.def, spec.namespace.as_deref()) {
                if let Some(line) = spec.initial_line(&stored.json, stored.resource_version) {
                    pending.push_back(line);
                }
            }
            if spec.send_initial_events && spec.bookmarks {
                pending.push_back(spec.bookmark(current, true));
            }
        }
    }
    let timeout = spec
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let now = Instant::now();
    let stream = WatchStream {
        spec,
        pending,
        receiver,
        deadline: now + timeout,
        bookmark_interval: options.bookmark_interval,
        next_bookmark: now + options.bookmark_interval,
        last_resource_version: current,
    };
    let body = Body::from_stream(futures::stream::unfold(stream, WatchStream::next));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
