//! Fault injection: every Kubernetes API request of a cluster passes through
//! [`before_request`] first, which consults the cluster's [`FaultSlot`].
//!
//! A [`FaultPlan`] combines the modes a cluster suffers:
//!
//! - `unreachable`: [`Unreachable::Refuse`] drops the TCP connection without an answer (one
//!   listener serves every cluster, so a connection cannot be refused per cluster; the client
//!   sees its connection reset, the closest faithful behaviour), [`Unreachable::Hang`] never
//!   answers until the fault is cleared or the client gives up. Setting either also ends the
//!   cluster's open watches, as a crashed or partitioned server would.
//! - `latency`: every request waits a fixed or uniformly drawn time before it is served.
//! - `errors`: a fraction of requests fail with 500 (`InternalError`) or 429
//!   (`TooManyRequests`, with `Retry-After`), as `Status` objects.
//! - `neverReady`: workloads never become ready (read by [`crate::controllers`]).
//!
//! Restarts ([`restart`]) are one-off actions rather than standing faults: they end every watch
//! and may drop all state. Random draws come from a small xorshift generator per plan, seeded
//! from `seed` when given (for reproducible tests).
//!
//! Dropping a connection needs the server's help: [`serve`](crate::serve) accepts through a
//! [`ConnectionListener`], whose connections carry a [`ConnectionHandle`], and
//! [`drop_refused_connections`] kills the connection of any answer marked [`DropConnection`].
//! Served any other way, a refused request gets a `503` with `Connection: close` instead.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::Sim;
use crate::cluster::Cluster;
use crate::error::{ApiError, SimError};

/// How an unreachable cluster behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unreachable {
    /// The connection is dropped without an answer (the client sees a reset connection).
    Refuse,
    /// The request is never answered while the fault lasts.
    Hang,
}

/// Added latency, drawn uniformly from `min_ms..=max_ms` (equal for a fixed delay).
///
/// JSON: `{"ms": 200}` (fixed) or `{"minMs": 100, "maxMs": 300}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LatencyWire", into = "LatencyWire")]
pub struct Latency {
    /// Shortest delay, in milliseconds.
    pub min_ms: u64,
    /// Longest delay, in milliseconds.
    pub max_ms: u64,
}

impl Latency {
    /// Always `ms` milliseconds.
    pub fn fixed(ms: u64) -> Self {
        Self {
            min_ms: ms,
            max_ms: ms,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LatencyWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_ms: Option<u64>,
}

impl TryFrom<LatencyWire> for Latency {
    type Error = String;

    fn try_from(wire: LatencyWire) -> Result<Self, String> {
        match (wire.ms, wire.min_ms, wire.max_ms) {
            (Some(ms), None, None) => Ok(Self::fixed(ms)),
            (None, Some(min_ms), Some(max_ms)) if min_ms <= max_ms => Ok(Self { min_ms, max_ms }),
            (None, Some(_), Some(_)) => Err("latency: minMs must not exceed maxMs".into()),
            _ => Err("latency: give either \"ms\" or both \"minMs\" and \"maxMs\"".into()),
        }
    }
}

impl From<Latency> for LatencyWire {
    fn from(latency: Latency) -> Self {
        if latency.min_ms == latency.max_ms {
            Self {
                ms: Some(latency.min_ms),
                ..Self::default()
            }
        } else {
            Self {
                ms: None,
                min_ms: Some(latency.min_ms),
                max_ms: Some(latency.max_ms),
            }
        }
    }
}

/// A fraction of requests failing.
///
/// JSON: `{"fraction": 0.5, "code": 429, "retryAfterSeconds": 2}` (`code` defaults to 500,
/// `retryAfterSeconds` to 1 and only matters for 429).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ErrorRateWire", into = "ErrorRateWire")]
pub struct ErrorRate {
    /// Share of requests that fail, from 0.0 to 1.0.
    pub fraction: f64,
    /// 429, or a 5xx code (500 unless told).
    pub code: u16,
    /// The `Retry-After` of 429 answers, in seconds.
    pub retry_after_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ErrorRateWire {
    fraction: f64,
    #[serde(default = "default_error_code")]
    code: u16,
    #[serde(default = "default_retry_after")]
    retry_after_seconds: u64,
}

fn default_error_code() -> u16 {
    500
}

fn default_retry_after() -> u64 {
    1
}

impl TryFrom<ErrorRateWire> for ErrorRate {
    type Error = String;

    fn try_from(wire: ErrorRateWire) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&wire.fraction) {
            return Err(format!(
                "errors: fraction must be between 0 and 1, not {}",
                wire.fraction
            ));
        }
        if wire.code != 429 && !(500..=599).contains(&wire.code) {
            return Err(format!(
                "errors: code must be 429 or 5xx, not {}",
                wire.code
            ));
        }
        Ok(Self {
            fraction: wire.fraction,
            code: wire.code,
            retry_after_seconds: wire.retry_after_seconds,
        })
    }
}

impl From<ErrorRate> for ErrorRateWire {
    fn from(rate: ErrorRate) -> Self {
        Self {
            fraction: rate.fraction,
            code: rate.code,
            retry_after_seconds: rate.retry_after_seconds,
        }
    }
}

/// What faults a cluster currently suffers; the default is none.
///
/// JSON (all fields optional): `{"unreachable": "refuse"|"hang", "latency": {…}, "errors":
/// {…}, "neverReady": true, "seed": 42}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPlan {
    /// Workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs) never become
    /// ready: the controllers read this and leave their status unready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never_ready: bool,
    /// The cluster cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<Unreachable>,
    /// Delay added to every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// A share of requests failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorRate>,
    /// Seed of the random draws (latency, errors); unseeded plans draw differently each time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A plan in force, with its random state and a signal for requests hanging on it.
#[derive(Debug)]
struct ActiveFaults {
    plan: Arc<FaultPlan>,
    random: AtomicU64,
    replaced: Notify,
}

/// A cluster's current fault plan; `None` (the default, one pointer wide) means healthy.
#[derive(Debug, Default)]
pub struct FaultSlot(Mutex<Option<Arc<ActiveFaults>>>);

impl FaultSlot {
    fn active(&self) -> Option<Arc<ActiveFaults>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The plan in force, if any.
    pub fn current(&self) -> Option<Arc<FaultPlan>> {
        self.active().map(|active| active.plan.clone())
    }

    /// Installs (or, with `None`, clears) a plan. Requests hanging on the previous plan look
    /// again at the new one.
    pub fn set(&self, plan: Option<FaultPlan>) {
        let next = plan.map(|plan| {
            let seed = plan.seed.unwrap_or_else(unseeded);
            Arc::new(ActiveFaults {
                plan: Arc::new(plan),
                random: AtomicU64::new(scramble(seed)),
                replaced: Notify::new(),
            })
        });
        let previous = std::mem::replace(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            next,
        );
        if let Some(previous) = previous {
            previous.replaced.notify_waiters();
        }
    }
}

/// A seed for plans without one: the clock mixed with a counter, so two plans set in the same
/// instant still differ.
fn unseeded() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Spreads a seed over all bits (splitmix64's finaliser); xorshift needs a non-zero state.
fn scramble(seed: u64) -> u64 {
    let mut value = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^= value >> 31;
    if value == 0 { 1 } else { value }
}

fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

impl ActiveFaults {
    /// The next draw of this plan's generator (xorshift64*).
    fn next_random(&self) -> u64 {
        let previous = self
            .random
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                Some(xorshift(state))
            })
            .unwrap_or_else(|state| state);
        xorshift(previous).wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A draw uniform in `[0, 1)`.
    fn next_unit(&self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Marks an answer whose connection must be dropped instead of answered (a refused request).
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

fn refused() -> Response {
    let mut response = ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message: "connection refused (simulated)".into(),
        details: None,
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response.extensions_mut().insert(DropConnection);
    response
}

fn injected_error(rate: &ErrorRate) -> Response {
    if rate.code == 429 {
        let mut response = ApiError {
            code: 429,
            reason: "TooManyRequests",
            message: "Too many requests: please try again later".into(),
            details: Some(json!({"retryAfterSeconds": rate.retry_after_seconds})),
        }
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(rate.retry_after_seconds),
        );
        return response;
    }
    let (reason, message) = match rate.code {
        500 => ("InternalError", "Internal error occurred: injected fault"),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        _ => (
            "InternalError",
            "an error on the server (injected fault) has prevented the request from succeeding",
        ),
    };
    ApiError {
        code: rate.code,
        reason,
        message: message.into(),
        details: Some(json!({"causes": [{"message": "injected fault"}]})),
    }
    .into_response()
}

/// Called before a request to `path` (relative to the cluster's URL) is served: `Some` answers
/// it instead (an injected failure), `None` lets it through, possibly after a delay. A hanging
/// cluster holds the request here until its plan changes.
pub async fn before_request(slot: &FaultSlot, _method: &Method, _path: &str) -> Option<Response> {
    loop {
        // Healthy clusters take the fast path without locking anything else.
        let active = slot.active()?;
        match active.plan.unreachable {
            Some(Unreachable::Refuse) => return Some(refused()),
            Some(Unreachable::Hang) => {
                let replaced = active.replaced.notified();
                tokio::pin!(replaced);
                replaced.as_mut().enable();
                // The plan may have changed between reading it and listening for changes.
                if slot.active().is_some_and(|now| Arc::ptr_eq(&now, &active)) {
                    replaced.await;
                }
                continue;
            }
            None => {}
        }
        if let Some(latency) = active.plan.latency {
            let spread = latency.max_ms - latency.min_ms;
            let extra = if spread == 0 {
                0
            } else {
                active.next_random() % (spread + 1)
            };
            tokio::time::sleep(Duration::from_millis(latency.min_ms + extra)).await;
        }
        if let Some(rate) = active.plan.errors
            && rate.fraction > 0.0
            && active.next_unit() < rate.fraction
        {
            return Some(injected_error(&rate));
        }
        return None;
    }
}

/// Installs `plan` on one cluster (or clears its faults with `None`). An unreachable plan also
/// ends the cluster's open watches.
pub fn set_faults(cluster: &Cluster, plan: Option<FaultPlan>) {
    let unreachable = plan.as_ref().is_some_and(|plan| plan.unreachable.is_some());
    cluster.faults.set(plan);
    if unreachable {
        cluster.restart(false);
    }
}

/// Restarts a cluster's API server: every watch ends (clients re-watch); with `lose_state`
/// every object, CRD and the watch history are gone too, and resourceVersions continue above
/// the old ones, so a watch from an old resourceVersion gets `410 Expired` and clients re-list.
pub fn restart(cluster: &Cluster, lose_state: bool) {
    cluster.restart(lose_state);
}

/// Which clusters a bulk fault operation affects: exactly one of `names`, `prefix` or `all`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSelector {
    /// These clusters (each must exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// Clusters whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Every cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Why a selector selects nothing sensible.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// None or more than one of `names`, `prefix`, `all` was given.
    #[error("select clusters with exactly one of \"names\", \"prefix\" or \"all\": true")]
    Ambiguous,
    /// A named cluster does not exist.
    #[error(transparent)]
    Missing(#[from] SimError),
}

impl ClusterSelector {
    /// Every cluster.
    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Clusters named with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// The named clusters.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: Some(names.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// The selected clusters, in natural name order; nothing is selected when a named cluster
    /// is missing.
    pub fn select(&self, sim: &Sim) -> Result<Vec<(String, Arc<Cluster>)>, SelectorError> {
        match (&self.names, &self.prefix, self.all) {
            (Some(names), None, false) => names
                .iter()
                .map(|name| {
                    sim.cluster(name)
                        .map(|cluster| (name.clone(), cluster))
                        .ok_or_else(|| SimError::ClusterNotFound(name.clone()).into())
                })
                .collect(),
            (None, Some(prefix), false) => Ok(sim
                .cluster_names()
                .into_iter()
                .filter(|name| name.starts_with(prefix.as_str()))
                .filter_map(|name| sim.cluster(&name).map(|cluster| (name, cluster)))
                .collect()),
            (None, None, true) => Ok(sim
                .cluster_names()
                .into_iter()
                .filter_map(|name| sim.cluster(&name).map(|cluster| (name, cluster)))
                .collect()),
            _ => Err(SelectorError::Ambiguous),
        }
    }
}

/// Installs `plan` (or clears faults with `None`) on the selected clusters; returns their names.
pub fn set_faults_on(
    sim: &Sim,
    selector: &ClusterSelector,
    plan: Option<FaultPlan>,
) -> Result<Vec<String>, SelectorError> {
    let selected = selector.select(sim)?;
    for (_, cluster) in &selected {
        set_faults(cluster, plan.clone());
    }
    Ok(selected.into_iter().map(|(name, _)| name).collect())
}

/// Restarts the selected clusters; returns their names.
pub fn restart_on(
    sim: &Sim,
    selector: &ClusterSelector,
    lose_state: bool,
) -> Result<Vec<String>, SelectorError> {
    let selected = selector.select(sim)?;
    for (_, cluster) in &selected {
        restart(cluster, lose_state);
    }
    Ok(selected.into_iter().map(|(name, _)| name).collect())
}

/// Accepts TCP connections whose requests can be answered by dropping the connection.
#[derive(Debug)]
pub struct ConnectionListener(TcpListener);

impl ConnectionListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl axum::serve::Listener for ConnectionListener {
    type Io = KillableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.0).await;
        // Small answers should leave at once, as from a Go server.
        let _ = stream.set_nodelay(true);
        let stream = KillableStream {
            stream,
            handle: ConnectionHandle::new(),
            reset: false,
        };
        (stream, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A way to drop one served connection, available to handlers as `ConnectInfo`; it also
/// carries who the connection authenticated as (a TLS client certificate), if anyone.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    killed: Arc<AtomicBool>,
    user: Option<Arc<crate::rbac::UserInfo>>,
}

impl Default for ConnectionHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionHandle {
    /// A live connection of no one in particular.
    pub fn new() -> Self {
        Self {
            killed: Arc::new(AtomicBool::new(false)),
            user: None,
        }
    }

    /// The same connection, authenticated as `user`.
    pub fn with_user(&self, user: Option<crate::rbac::UserInfo>) -> Self {
        Self {
            killed: self.killed.clone(),
            user: user.map(Arc::new),
        }
    }

    /// Who the connection authenticated as.
    pub fn user(&self) -> Option<&Arc<crate::rbac::UserInfo>> {
        self.user.as_ref()
    }

    /// Drops the connection: its next read or write fails and it is closed with a reset.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ConnectionListener>>
    for ConnectionHandle
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ConnectionListener>) -> Self {
        stream.io().handle.clone()
    }
}

/// A TCP connection that fails all I/O once its [`ConnectionHandle`] is killed.
#[derive(Debug)]
pub struct KillableStream {
    stream: TcpStream,
    handle: ConnectionHandle,
    reset: bool,
}

impl KillableStream {
    /// The handle that drops this connection.
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    /// The error to report once killed; the first time, arranges for a reset on close, as a
    /// peer that is not listening answers.
    fn killed(&mut self) -> Option<io::Error> {
        if !self.handle.killed.load(Ordering::Acquire) {
            return None;
        }
        if !self.reset {
            self.reset = true;
            let _ = self.stream.set_zero_linger();
        }
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection dropped by a simulated fault",
        ))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(error) = self.killed() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// Middleware: when an answer is marked [`DropConnection`] and the connection came through a
/// [`ConnectionListener`], drops the connection instead of answering.
pub async fn drop_refused_connections(request: Request, next: Next) -> Response {
    let connection = request
        .extensions()
        .get::<ConnectInfo<ConnectionHandle>>()
        .map(|ConnectInfo(handle)| handle.clone());
    let response = next.run(request).await;
    if response.extensions().get::<DropConnection>().is_some()
        && let Some(connection) = connection
    {
        connection.kill();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_read_the_documented_json() {
        let plan: FaultPlan = serde_json::from_value(json!({
            "unreachable": "hang",
            "latency": {"minMs": 10, "maxMs": 20},
            "errors": {"fraction": 0.25, "code": 429},
            "neverReady": true,
            "seed": 7
        }))
        .unwrap();
        assert_eq!(
            plan,
            FaultPlan {
                never_ready: true,
                unreachable: Some(Unreachable::Hang),
                latency: Some(Latency {
                    min_ms: 10,
                    max_ms: 20
                }),
                errors: Some(ErrorRate {
                    fraction: 0.25,
                    code: 429,
                    retry_after_seconds: 1
                }),
                seed: Some(7),
            }
        );
        let fixed: FaultPlan = serde_json::from_value(json!({"latency": {"ms": 5}})).unwrap();
        assert_eq!(fixed.latency, Some(Latency::fixed(5)));
        assert_eq!(
            serde_json::to_value(&fixed).unwrap(),
            json!({"latency": {"ms": 5}})
        );
        assert_eq!(
            serde_json::to_value(FaultPlan::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn bad_plans_are_refused() {
        for bad in [
            json!({"errors": {"fraction": 1.5}}),
            json!({"errors": {"fraction": 0.5, "code": 404}}),
            json!({"latency": {"minMs": 30, "maxMs": 20}}),
            json!({"latency": {"ms": 5, "maxMs": 20}}),
            json!({"unreachable": "sometimes"}),
            json!({"latency_ms": 5}),
        ] {
            assert!(
                serde_json::from_value::<FaultPlan>(bad.clone()).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn seeded_draws_repeat_and_spread() {
        let draws = |seed| {
            let slot = FaultSlot::default();
            slot.set(Some(FaultPlan {
                seed: Some(seed),
                ..FaultPlan::default()
            }));
            let active = slot.active().unwrap();
            (0..1000).map(|_| active.next_unit()).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let below_half = draws(3).iter().filter(|&&draw| draw < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half} of 1000");
        assert!(draws(0).iter().all(|draw| (0.0..1.0).contains(draw)));
    }

    #[tokio::test]
    async fn error_fraction_fails_about_that_share() {
        let slot = FaultSlot::default();
        slot.set(Some(FaultPlan {
            errors: Some(ErrorRate {
                fraction: 0.3,
                code: 500,
                retry_after_seconds: 1,
            }),
            seed: Some(11),
            ..FaultPlan::default()
        }));
        let mut failed = 0;
        for _ in 0..1000 {
            if let Some(response) = before_request(&slot, &Method::GET, "/api").await {
                assert_eq!(response.status().as_u16(), 500);
                failed += 1;
            }
        }
        assert!((250..350).contains(&failed), "{failed} of 1000 failed");
    }

    #[tokio::test]
    async fn hanging_requests_resume_when_cleared() {
        let slot = Arc::new(FaultSlot::default());
        slot.set(Some(FaultPlan {
            unreachable: Some(Unreachable::Hang),
            ..FaultPlan::default()
        }));
        let waiting = {
            let slot = slot.clone();
            tokio::spawn(async move { before_request(&slot, &Method::GET, "/api").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        slot.set(None);
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.is_none());
    }

    #[tokio::test]
    async fn refusals_are_marked_for_dropping() {
        let slot = FaultSlot::default();
        slot.set(Some(FaultPlan {
            unreachable: Some(Unreachable::Refuse),
            ..FaultPlan::default()
        }));
        let response = before_request(&slot, &Method::GET, "/api").await.unwrap();
        assert!(response.extensions().get::<DropConnection>().is_some());
    }
}
