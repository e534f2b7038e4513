//! A cluster worker's link to its cluster: the client (got from the connector when needed and
//! let go when idle), the worker's share of the global concurrency bound, the retry policy
//! (exponential backoff with jitter, the server's `Retry-After`, `stop`), and the cluster's
//! connectivity as the calls find it.

use std::sync::Arc;
use std::time::Duration;

use emco_core::appcontext::ClusterId;
use emco_core::status::Connectivity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, warn};

use super::SyncConfig;
use super::connector::Connector;
use super::flush::Flusher;
use super::records::{self, ClusterRecord};
use serde_json::Value;

use super::prepare::PreparedObject;
use crate::cluster::{ApplyRequest, ClusterApi, ClusterError, Deleted, Retry};

/// Why a call gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The cluster refused this request for good (`Retry::Never`): the object fails.
    Refused(String),
    /// The cluster cannot be used at all (no or a broken kubeconfig): the app fails there.
    Unusable(String),
    /// `stop` was asked for.
    Stopped,
}

pub struct Link {
    pub cluster: ClusterId,
    connector: Arc<dyn Connector>,
    config: Arc<SyncConfig>,
    permits: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    client: Option<Arc<dyn ClusterApi>>,
    unusable: Option<String>,
    pub connectivity: Connectivity,
    /// Whether `rsync/cl/...` was written (it is only written on flips to and from Retrying).
    cluster_record_written: bool,
    flusher: Flusher,
    cluster_key: String,
    stop: watch::Receiver<bool>,
    jitter_state: u64,
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        context_id: &str,
        cluster: ClusterId,
        connector: Arc<dyn Connector>,
        config: Arc<SyncConfig>,
        permits: Arc<Semaphore>,
        flusher: Flusher,
        stop: watch::Receiver<bool>,
        recorded: Option<Connectivity>,
        seen_available: bool,
    ) -> Self {
        let cluster_key = records::cluster_key(context_id, &cluster);
        // Seed the jitter per cluster so clusters failing together do not retry in step.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ records::now_ms();
        for byte in cluster_key.bytes() {
            seed = (seed ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            cluster,
            connector,
            config,
            permits,
            permit: None,
            client: None,
            unusable: None,
            // A cluster record, once written, must follow every later flip.
            connectivity: recorded.unwrap_or(if seen_available {
                Connectivity::Available
            } else {
                Connectivity::Unknown
            }),
            cluster_record_written: recorded.is_some(),
            flusher,
            cluster_key,
            stop,
            jitter_state: seed | 1,
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A receiver of the stop flag, for `select!`s outside the link.
    pub fn stop_receiver(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Takes a slot of the global concurrency bound (held until [`Link::release`]).
    pub async fn acquire(&mut self) {
        if self.permit.is_none() {
            self.permit = self.permits.clone().acquire_owned().await.ok();
        }
    }

    /// Gives the slot back and lets go of the client while the worker is idle.
    pub fn release(&mut self) {
        self.permit = None;
        self.client = None;
    }

    /// Gives the slot back, keeping the client (the worker is about to wait for its records).
    pub fn release_slot(&mut self) {
        self.permit = None;
    }

    /// Sleeps without holding a slot; `Err(Stopped)` as soon as `stop` is asked for.
    pub async fn pause(&mut self, duration: Duration) -> Result<(), CallError> {
        self.permit = None;
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = stopped(&mut stop) => return Err(CallError::Stopped),
        }
        self.acquire().await;
        Ok(())
    }

    async fn client(&mut self) -> Result<Arc<dyn ClusterApi>, ClusterError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = self.connector.connect(&self.cluster).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// One attempt, bounded by the call timeout; connectivity follows the outcome.
    async fn attempt(&mut self, request: &Request<'_>) -> Result<Reply, ClusterError> {
        let client = self.client().await?;
        let timeout = self.config.call_timeout;
        let result = match tokio::time::timeout(timeout, request.send(client.as_ref())).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Timeout {
                cluster: self.cluster.to_string(),
                timeout,
            }),
        };
        match &result {
            Ok(_) => self.reached(),
            Err(error) if error.is_connectivity() => self.unreachable(error),
            // A refusal is an answer: the cluster is there.
            Err(error) if error.status_code().is_some() => self.reached(),
            Err(_) => {}
        }
        result
    }

    /// Retries `request` as the error says until it succeeds, is refused for good, or `stop`.
    async fn call(&mut self, request: &Request<'_>) -> Result<Reply, CallError> {
        let mut backoff = self.config.backoff_initial;
        let mut unknown_kind_attempts = 0;
        loop {
            if self.stopped() {
                return Err(CallError::Stopped);
            }
            if let Some(reason) = &self.unusable {
                return Err(CallError::Unusable(reason.clone()));
            }
            self.acquire().await;
            let error = match self.client().await {
                Ok(_) => match self.attempt(request).await {
                    Ok(reply) => return Ok(reply),
                    Err(error) => error,
                },
                Err(error) => {
                    if error.retry() == Retry::Never {
                        warn!(cluster = %self.cluster, %error, "cluster cannot be used");
                        let reason = error.to_string();
                        self.unusable = Some(reason.clone());
                        return Err(CallError::Unusable(reason));
                    }
                    self.unreachable(&error);
                    error
                }
            };
            if matches!(error, ClusterError::UnknownKind { .. }) {
                if let Request::DeleteIfServed(_) = request {
                    return Ok(Reply::Deleted(Deleted::NotFound));
                }
                // A CRD applied moments ago may not be served yet, but not for ever.
                unknown_kind_attempts += 1;
                if unknown_kind_attempts >= self.config.unknown_kind_attempts {
                    return Err(CallError::Refused(error.to_string()));
                }
            }
            let delay = match error.retry() {
                Retry::Never => return Err(CallError::Refused(error.to_string())),
                Retry::After(delay) => delay.min(self.config.backoff_max),
                Retry::Backoff => {
                    let delay = self.jittered(backoff);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    delay
                }
            };
            debug!(cluster = %self.cluster, %error, ?delay, "retrying");
            // A new client next time: the old one's connections may be the problem.
            self.client = None;
            self.pause(delay).await?;
        }
    }

    /// Server-side applies a prepared object (retrying); returns it as stored when the request
    /// asks for the answer.
    pub async fn apply(&mut self, apply: &ApplyRequest) -> Result<Option<Value>, CallError> {
        match self.call(&Request::Apply(apply)).await? {
            Reply::Object(value) => Ok(value),
            _ => Err(mismatch()),
        }
    }

    /// Approves a CertificateSigningRequest (retrying).
    pub async fn approve(
        &mut self,
        name: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), CallError> {
        match self
            .call(&Request::Approve {
                name,
                reason,
                message,
            })
            .await?
        {
            Reply::Approved => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// Deletes the object (retrying).
    pub async fn delete(&mut self, object: &PreparedObject) -> Result<Deleted, CallError> {
        match self.call(&Request::Delete(object)).await? {
            Reply::Deleted(deleted) => Ok(deleted),
            _ => Err(mismatch()),
        }
    }

    /// Deletes the object (retrying), taking a kind the cluster does not serve as nothing to
    /// delete (no object of it can exist there).
    pub async fn delete_if_served(
        &mut self,
        object: &PreparedObject,
    ) -> Result<Deleted, CallError> {
        match self.call(&Request::DeleteIfServed(object)).await? {
            Reply::Deleted(deleted) => Ok(deleted),
            _ => Err(mismatch()),
        }
    }

    /// Makes what was applied and deleted so far reach the cluster (retrying): a GitOps
    /// cluster commits and pushes here.
    pub async fn flush(&mut self) -> Result<(), CallError> {
        match self.call(&Request::Flush).await? {
            Reply::Flushed => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// Whether the cluster pulls what is applied (see [`ClusterApi::pulls`]); known once a
    /// call made the client.
    pub fn pulls(&self) -> bool {
        self.client.as_ref().is_some_and(|client| client.pulls())
    }

    /// Reads the object (retrying); `None` when it does not exist.
    pub async fn get(&mut self, object: &PreparedObject) -> Result<Option<Value>, CallError> {
        match self.call(&Request::Get(object)).await? {
            Reply::Found(value) => Ok(value),
            _ => Err(mismatch()),
        }
    }

    /// Reads the object once (for readiness polls, which come back anyway).
    pub async fn get_once(
        &mut self,
        object: &PreparedObject,
    ) -> Result<Option<Value>, ClusterError> {
        match self.attempt(&Request::Get(object)).await? {
            Reply::Found(value) => Ok(value),
            _ => Ok(None),
        }
    }

    /// Lists a kind by label selector in all namespaces, once.
    pub async fn list_once(
        &mut self,
        api_version: &str,
        kind: &str,
        selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let request = Request::List {
            api_version,
            kind,
            selector,
        };
        match self.attempt(&request).await? {
            Reply::Listed(items) => Ok(items),
            _ => Ok(Vec::new()),
        }
    }

    /// `delay` scaled by a random factor in [0.5, 1).
    fn jittered(&mut self, delay: Duration) -> Duration {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let fraction = 0.5 + (x % 1000) as f64 / 2000.0;
        delay.mul_f64(fraction)
    }

    fn reached(&mut self) {
        if self.connectivity == Connectivity::Available {
            return;
        }
        self.connectivity = Connectivity::Available;
        if self.cluster_record_written {
            self.write_cluster_record(None);
        }
    }

    fn unreachable(&mut self, error: &ClusterError) {
        if self.connectivity == Connectivity::Retrying {
            return;
        }
        self.connectivity = Connectivity::Retrying;
        self.cluster_record_written = true;
        self.write_cluster_record(Some(error.to_string()));
    }

    fn write_cluster_record(&self, message: Option<String>) {
        let record = ClusterRecord {
            connectivity: self.connectivity,
            message,
            updated_ms: records::now_ms(),
        };
        self.flusher
            .put_later(self.cluster_key.clone(), records::to_bytes(&record));
    }
}

/// Resolves once the stop flag is set; never when its sender is gone (the run is ending and
/// will be torn down).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A request to a cluster (an enum rather than closures: the futures must be `Send` for every
/// borrow, which async closures cannot yet promise).
enum Request<'a> {
    Apply(&'a ApplyRequest),
    Delete(&'a PreparedObject),
    DeleteIfServed(&'a PreparedObject),
    Get(&'a PreparedObject),
    List {
        api_version: &'a str,
        kind: &'a str,
        selector: &'a str,
    },
    Approve {
        name: &'a str,
        reason: &'a str,
        message: &'a str,
    },
    Flush,
}

enum Reply {
    Object(Option<Value>),
    Deleted(Deleted),
    Found(Option<Value>),
    Listed(Vec<Value>),
    Approved,
    Flushed,
}

impl Request<'_> {
    async fn send(&self, cluster: &dyn ClusterApi) -> Result<Reply, ClusterError> {
        Ok(match self {
            Request::Apply(apply) => Reply::Object(cluster.apply_request(apply).await?),
            Request::Approve {
                name,
                reason,
                message,
            } => {
                cluster.approve(name, reason, message).await?;
                Reply::Approved
            }
            Request::Flush => {
                cluster.flush().await?;
                Reply::Flushed
            }
            Request::Delete(object) | Request::DeleteIfServed(object) => Reply::Deleted(
                cluster
                    .delete(
                        &object.api_version,
                        &object.kind,
                        object.namespace.as_deref(),
                        &object.name,
                    )
                    .await?,
            ),
            Request::Get(object) => Reply::Found(
                cluster
                    .get(
                        &object.api_version,
                        &object.kind,
                        object.namespace.as_deref(),
                        &object.name,
                    )
                    .await?,
            ),
            Request::List {
                api_version,
                kind,
                selector,
            } => Reply::Listed(cluster.list(api_version, kind, None, selector).await?),
        })
    }
}

fn mismatch() -> CallError {
    CallError::Refused("internal error: a reply of another kind".into())
}
