//! The resource synchronizer engine: carries out a context's instantiate, update (from another
//! context: only the differences, see [`Synchronizer::update_ops`]) or terminate on its
//! clusters, durably and resumably, and reports what it did.
//!
//! How a deployment intent group uses it:
//! 1. the caller adds [`Synchronizer::instantiate_ops`] (or [`Synchronizer::terminate_ops`]) to
//!    the same transaction that moves the group's state, so the decision to act is durable with
//!    the state change;
//! 2. after that commit, [`Synchronizer::kick`] starts the run (a terminate kicked while an
//!    instantiate of the same context runs replaces it);
//! 3. [`Synchronizer::context_status`] reports progress; [`Synchronizer::stop`] ends retries;
//!    at hub start [`Synchronizer::resume_all`] restarts every unfinished run.
//!
//! A run ([`run`]) has one worker per cluster ([`worker`]): work for one cluster is serialized,
//! clusters run in parallel under [`SyncConfig::max_concurrent_clusters`]. Instantiate releases
//! each app to its clusters once its dependencies are met everywhere (upstream semantics: the
//! dependency app is applied, or ready, on all its clusters, then `wait` seconds pass); per
//! cluster it applies CRDs, pre-install hooks, resources and post-install hooks, then tracks
//! readiness. Terminate goes through the apps in reverse dependency order: pre-delete hooks,
//! deletes in reverse install order, waiting until the objects are gone, post-delete hooks.
//!
//! Durability: the store layout is described in [`records`]. A record is written (in batches,
//! see [`flush`]) before the step it describes counts as done, and applies are idempotent
//! (server-side apply of objects with names fixed by the context), so a run interrupted anywhere
//! converges when it is started again; hooks completed in the operation are not run again, and a
//! hook applied in the operation (recorded right after its apply) is waited for again, never
//! replaced by its `before-hook-creation` policy.
//!
//! Differences from Helm worth knowing: terminate deletes everything the hub applied, as upstream
//! EMCO does: CRDs of a chart's templates like the other objects, and, once the post-delete hooks
//! ran, every hook object of the app, install and delete hooks alike (`helm uninstall` keeps hooks
//! without a delete policy). Objects marked to be kept on uninstall stay, as Helm keeps them:
//! `helm.sh/resource-policy: keep`, and CRDs from a chart's `crds/` directory (the orchestrator
//! marks those). A failed pre-delete hook does not keep the app's objects from being deleted (Helm
//! would stop): the run ends `TerminateFailed` naming the hook.

mod connector;
mod discover;
mod flush;
mod link;
mod live;
mod prepare;
pub mod records;
mod report;
mod run;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use emco_core::appcontext::{AppContext, ClusterId};
use emco_core::status::{AppContextStatus, DeployedStatus, StatusQuery, Tally};
use emco_store::{Compare, Op, Store, Txn};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;
use tracing::{info, warn};

pub use connector::{
    Connector, DEFAULT_CLIENT_CAPACITY, StoreConnector, kubeconfig_from_blob, kubeconfig_key,
};
pub use prepare::{DEPLOYMENT_ID_LABEL, deployment_id};
pub use records::{AppClusterState, HookEvent, LastAction, OpKind};
pub use report::{AppReport, ClusterReport, ContextReport, ResourceReport};

use records::{AppClusterRecord, ClusterRecord, OpRecord, StatusRecord, StopRecord};

/// Tunables of the synchronizer.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Clusters worked on at once, over all runs (a worker waiting — backoff, a hook, readiness
    /// polling interval — does not hold a slot).
    pub max_concurrent_clusters: usize,
    /// First retry delay after a retryable error; doubles per attempt (with jitter: each delay
    /// is drawn from [d/2, d)) up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Readiness polling (and hook / deletion waits) start at this interval and double up to
    /// `ready_poll_max`.
    pub ready_poll_initial: Duration,
    pub ready_poll_max: Duration,
    /// How long a hook may take to complete (and an old copy to go away); Helm's default.
    pub hook_timeout: Duration,
    /// How long deleted objects may take to disappear before terminate reports them.
    pub delete_timeout: Duration,
    /// Outer bound of any one cluster call (the clients have their own request timeout).
    pub call_timeout: Duration,
    /// Attempts for a kind the cluster does not serve (a CRD not established yet) before the
    /// object fails.
    pub unknown_kind_attempts: u32,
    /// Pause before retrying a failed store read or write.
    pub store_retry: Duration,
    /// How long a run's record transaction waits after its first write for more (group
    /// commit: fewer fsyncs, at the price of this much latency for steps that wait for their
    /// record, such as hooks and dependent apps).
    pub record_linger: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_concurrent_clusters: 64,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            ready_poll_initial: Duration::from_millis(500),
            ready_poll_max: Duration::from_secs(15),
            hook_timeout: Duration::from_secs(300),
            delete_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(60),
            unknown_kind_attempts: 8,
            store_retry: Duration::from_secs(1),
            record_linger: Duration::from_millis(5),
        }
    }
}

/// Why a synchronizer call failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("store: {0}")]
    Store(#[from] emco_store::Error),
    #[error("record {key} is unreadable: {message}")]
    Record { key: String, message: String },
    #[error("app context {id}: {message}")]
    Context { id: String, message: String },
    /// The run's operation was replaced (or forgotten) while it ran.
    #[error("the operation was superseded")]
    Superseded,
}

/// What a status summary needs of a context: see [`Synchronizer::context_tally`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextTally {
    pub status: AppContextStatus,
    /// Every app of the context, in its order.
    pub apps: Vec<String>,
    /// The first `cluster=` filter of the query naming no cluster of the context (upstream
    /// answers 404).
    pub unknown_cluster: Option<String>,
    pub tally: Tally,
}

/// Live views of ended runs kept for status summaries (each holds its context's records).
const ENDED_VIEWS_KEPT: usize = 8;

/// A context's run status alone (see [`ContextReport`] for the details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    pub op: OpKind,
    pub status: AppContextStatus,
    pub message: Option<String>,
    pub stop_requested: bool,
    /// An instantiate's readiness tracking finished: every applied object was seen ready.
    pub all_ready: bool,
}

struct RunHandle {
    id: u64,
    op_rev: u64,
    stop: watch::Sender<bool>,
    abort: AbortHandle,
    /// The run status is final (only readiness tracking may go on).
    finished: bool,
    /// The records the run committed, for status summaries.
    live: Arc<live::LiveRecords>,
}

/// The resource synchronizer.
pub struct Synchronizer {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    config: Arc<SyncConfig>,
    permits: Arc<Semaphore>,
    runs: Mutex<HashMap<String, RunHandle>>,
    /// The live views of runs that ended, newest last: their records are final, so summaries
    /// keep counting them in memory (a new run of the context drops its old view).
    ended_views: Mutex<std::collections::VecDeque<(String, Arc<live::LiveRecords>)>>,
    next_run: AtomicU64,
    /// Contexts loaded for runs and status queries.
    contexts: run::ContextCache,
    me: Weak<Synchronizer>,
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, SyncError> {
    serde_json::from_slice(value).map_err(|error| SyncError::Record {
        key: key.to_owned(),
        message: error.to_string(),
    })
}

fn put<T: serde::Serialize>(key: String, record: &T) -> Op {
    Op::Put {
        key,
        value: records::to_bytes(record),
    }
}

impl Synchronizer {
    pub fn new(
        store: Arc<dyn Store>,
        connector: Arc<dyn Connector>,
        config: SyncConfig,
    ) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_clusters.max(1)));
        Arc::new_cyclic(|me| Self {
            store,
            connector,
            config: Arc::new(config),
            permits,
            runs: Mutex::new(HashMap::new()),
            ended_views: Mutex::new(std::collections::VecDeque::new()),
            next_run: AtomicU64::new(1),
            contexts: run::ContextCache::new(run::CONTEXTS_CACHED),
            me: me.clone(),
        })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    fn start_ops(context_id: &str, op: OpRecord) -> Vec<Op> {
        let status = StatusRecord {
            status: op.op.running_status(),
            message: None,
            all_ready: false,
            updated_ms: records::now_ms(),
        };
        vec![
            put(records::op_key(context_id), &op),
            put(records::status_key(context_id), &status),
            Op::Delete {
                key: records::stop_key(context_id),
            },
        ]
    }

    /// Store ops recording "instantiate `context_id`" (status `Instantiating`), for the
    /// caller's own transaction; then [`Synchronizer::kick`].
    pub fn instantiate_ops(context_id: &str) -> Vec<Op> {
        Self::start_ops(context_id, OpRecord::new(OpKind::Instantiate))
    }

    /// Store ops recording "update the deployment of context `from` to context `to`" (status
    /// `Updating`), objects labelled with `label_context`'s id; then kick `to` (and `from`, to
    /// end its readiness tracking). The records of `from` are the update's starting point
    /// (what is on the clusters); its operation and status go, and the finished update
    /// removes its records. Earlier records of `to` (a rollback's target) are dropped.
    pub fn update_ops(from: &str, to: &str, label_context: &str, rollback: bool) -> Vec<Op> {
        let op = OpRecord {
            op: OpKind::Update,
            from: Some(from.to_owned()),
            label: (label_context != to).then(|| label_context.to_owned()),
            rollback,
        };
        let mut ops = vec![
            Op::DeletePrefix {
                prefix: records::app_cluster_prefix(to),
            },
            Op::DeletePrefix {
                prefix: records::cluster_prefix(to),
            },
        ];
        ops.extend(Self::start_ops(to, op));
        for key in [
            records::op_key(from),
            records::status_key(from),
            records::stop_key(from),
        ] {
            ops.push(Op::Delete { key });
        }
        ops
    }

    /// Store ops recording "terminate `context_id`" (status `Terminating`), objects labelled
    /// with `label_context`'s id (hooks it applies); a running instantiate of the context is
    /// replaced when the terminate is kicked (its records are the terminate's starting point).
    pub fn terminate_ops(context_id: &str, label_context: &str) -> Vec<Op> {
        let mut op = OpRecord::new(OpKind::Terminate);
        op.label = (label_context != context_id).then(|| label_context.to_owned());
        Self::start_ops(context_id, op)
    }

    /// Store ops deleting every record of `context_id` (when its deployment intent group is
    /// deleted). A run still going ends at its next write; [`Synchronizer::kick`] after the
    /// commit ends it at once.
    pub fn forget_ops(context_id: &str) -> Vec<Op> {
        vec![
            Op::Delete {
                key: records::op_key(context_id),
            },
            Op::Delete {
                key: records::status_key(context_id),
            },
            Op::Delete {
                key: records::stop_key(context_id),
            },
            Op::Delete {
                key: records::left_key(context_id),
            },
            Op::Delete {
                key: records::discovered_key(context_id),
            },
            Op::DeletePrefix {
                prefix: records::app_cluster_prefix(context_id),
            },
            Op::DeletePrefix {
                prefix: records::cluster_prefix(context_id),
            },
        ]
    }

    /// Reads one object from `cluster` as it is now (`None` when it does not exist).
    pub async fn read_object(
        &self,
        cluster: &ClusterId,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, crate::ClusterError> {
        let client = self.connector.connect(cluster).await?;
        tokio::time::timeout(
            self.config.call_timeout,
            client.get(api_version, kind, namespace, name),
        )
        .await
        .unwrap_or_else(|_| {
            Err(crate::ClusterError::Timeout {
                cluster: cluster.to_string(),
                timeout: self.config.call_timeout,
            })
        })
    }

    /// Starts (or restarts) the work recorded for `context_id`, in the background. Does nothing
    /// when the recorded operation is already running here or finished; ends a run whose
    /// operation was replaced or forgotten.
    pub fn kick(self: &Arc<Self>, context_id: &str) {
        let me = self.clone();
        let context_id = context_id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = me.start(&context_id).await {
                warn!(ctx = context_id, %error, "could not start the run");
            }
        });
    }

    /// Reads the recorded operation and starts its run unless it is running or done.
    async fn start(self: &Arc<Self>, ctx: &str) -> Result<(), SyncError> {
        let op_key = records::op_key(ctx);
        let Some(op_entry) = self.store.get(&op_key).await? else {
            self.end_run(ctx);
            return Ok(());
        };
        let op: OpRecord = parse(&op_key, &op_entry.value)?;
        let op_rev = op_entry.mod_revision;
        let status_key = records::status_key(ctx);
        let status = match self.store.get(&status_key).await? {
            Some(entry) => parse::<StatusRecord>(&status_key, &entry.value)?,
            None => StatusRecord {
                status: op.op.running_status(),
                message: None,
                all_ready: false,
                updated_ms: 0,
            },
        };
        let stopped = self.stop_requested(ctx, op_rev).await?;
        if !needs_work(op.op, &status, stopped) {
            return Ok(());
        }
        let mut runs = self.lock_runs();
        if let Some(running) = runs.get(ctx) {
            if running.op_rev >= op_rev && !running.abort.is_finished() {
                return Ok(());
            }
            running.abort.abort();
        }
        self.lock_ended_views()
            .retain(|(context, _)| context != ctx);
        let id = self.next_run.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, stop_rx) = watch::channel(stopped);
        let live = Arc::new(live::LiveRecords::default());
        let spec = run::RunSpec {
            ctx: ctx.to_owned(),
            op: op.op,
            label: op.label_context(ctx).to_owned(),
            from: op.from.clone(),
            rollback: op.rollback,
            op_rev,
            status,
            live: live.clone(),
        };
        let task = tokio::spawn(run::run(self.clone(), spec, stop_rx, id));
        runs.insert(
            ctx.to_owned(),
            RunHandle {
                id,
                op_rev,
                stop: stop_tx,
                abort: task.abort_handle(),
                finished: false,
                live,
            },
        );
        Ok(())
    }

    async fn stop_requested(&self, ctx: &str, op_rev: u64) -> Result<bool, SyncError> {
        let key = records::stop_key(ctx);
        Ok(match self.store.get(&key).await? {
            Some(entry) => parse::<StopRecord>(&key, &entry.value)?.op_rev == op_rev,
            None => false,
        })
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunHandle>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn end_run(&self, ctx: &str) {
        if let Some(running) = self.lock_runs().remove(ctx) {
            running.abort.abort();
        }
        self.lock_ended_views()
            .retain(|(context, _)| context != ctx);
    }

    fn run_ended(&self, ctx: &str, id: u64) {
        let mut runs = self.lock_runs();
        if runs.get(ctx).is_some_and(|running| running.id == id)
            && let Some(ended) = runs.remove(ctx)
        {
            let mut views = self.lock_ended_views();
            views.retain(|(context, _)| context != ctx);
            views.push_back((ctx.to_owned(), ended.live));
            while views.len() > ENDED_VIEWS_KEPT {
                views.pop_front();
            }
        }
    }

    fn lock_ended_views(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(String, Arc<live::LiveRecords>)>>
    {
        self.ended_views
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The in-memory records of `context_id`: its running run's, else those of its run that
    /// ended last (if still kept).
    fn live_view(&self, context_id: &str) -> Option<Arc<live::LiveRecords>> {
        if let Some(running) = self.lock_runs().get(context_id) {
            return Some(running.live.clone());
        }
        self.lock_ended_views()
            .iter()
            .find(|(context, _)| context == context_id)
            .map(|(_, view)| view.clone())
    }

    fn run_finished(&self, ctx: &str, op_rev: u64) {
        if let Some(running) = self.lock_runs().get_mut(ctx)
            && running.op_rev == op_rev
        {
            running.finished = true;
        }
    }

    /// Durably asks the running operation of `context_id` to stop: retries end, waits end, and
    /// the run finishes as `InstantiateFailed` / `TerminateFailed`, leaving what it had not done
    /// as it was (the status says what). `Ok(false)` when no operation is in progress.
    pub async fn stop(&self, context_id: &str) -> Result<bool, SyncError> {
        let op_key = records::op_key(context_id);
        let status_key = records::status_key(context_id);
        loop {
            let Some(op_entry) = self.store.get(&op_key).await? else {
                return Ok(false);
            };
            let op_rev = op_entry.mod_revision;
            if let Some(entry) = self.store.get(&status_key).await?
                && records::is_finished(parse::<StatusRecord>(&status_key, &entry.value)?.status)
            {
                return Ok(false);
            }
            let outcome = self
                .store
                .txn(Txn {
                    compares: vec![Compare::ModRevision(op_key.clone(), op_rev)],
                    ops: vec![put(records::stop_key(context_id), &StopRecord { op_rev })],
                })
                .await?;
            if !outcome.succeeded {
                continue; // A new operation was recorded meanwhile: judge that one.
            }
            info!(ctx = context_id, "stop requested");
            let signalled = match self.lock_runs().get(context_id) {
                Some(running) if running.op_rev == op_rev && !running.abort.is_finished() => {
                    running.stop.send_replace(true);
                    true
                }
                _ => false,
            };
            if !signalled && let Some(me) = self.me.upgrade() {
                // Not running here (yet): a run that starts with the flag set finishes at once.
                me.kick(context_id);
            }
            return Ok(true);
        }
    }

    /// At hub start: kicks every context whose operation is unfinished, or whose instantiate
    /// finished with objects not yet seen ready. Returns how many.
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, SyncError> {
        let mut kicked = 0;
        for entry in self.store.list(records::STATUS_PREFIX).await? {
            let Some(ctx) = entry.key.strip_prefix(records::STATUS_PREFIX) else {
                continue;
            };
            let status: StatusRecord = match parse(&entry.key, &entry.value) {
                Ok(status) => status,
                Err(error) => {
                    warn!(%error, "skipping an unreadable run status");
                    continue;
                }
            };
            let op_key = records::op_key(ctx);
            let Some(op_entry) = self.store.get(&op_key).await? else {
                continue;
            };
            let op: OpRecord = parse(&op_key, &op_entry.value)?;
            let stopped = self.stop_requested(ctx, op_entry.mod_revision).await?;
            if needs_work(op.op, &status, stopped) {
                self.kick(ctx);
                kicked += 1;
            }
        }
        info!(kicked, "resumed synchronizer runs");
        Ok(kicked)
    }

    /// Only the run status of `context_id` (a few key reads, whatever the fleet size); `None`
    /// when no operation was ever recorded for it.
    pub async fn run_status(&self, context_id: &str) -> Result<Option<RunStatus>, SyncError> {
        let op_key = records::op_key(context_id);
        let Some(op_entry) = self.store.get(&op_key).await? else {
            return Ok(None);
        };
        let op: OpRecord = parse(&op_key, &op_entry.value)?;
        let status_key = records::status_key(context_id);
        let status = match self.store.get(&status_key).await? {
            Some(entry) => parse::<StatusRecord>(&status_key, &entry.value)?,
            None => StatusRecord {
                status: op.op.running_status(),
                message: None,
                all_ready: false,
                updated_ms: 0,
            },
        };
        Ok(Some(RunStatus {
            op: op.op,
            status: status.status,
            message: status.message,
            stop_requested: self
                .stop_requested(context_id, op_entry.mod_revision)
                .await?,
            all_ready: status.all_ready,
        }))
    }

    /// The run status, the context and its app-cluster records by record key; `None` when no
    /// operation was ever recorded for the context.
    async fn read_records(
        &self,
        context_id: &str,
    ) -> Result<Option<(RunStatus, Arc<AppContext>, Arc<run::ParsedRecords>)>, SyncError> {
        let Some(run) = self.run_status(context_id).await? else {
            return Ok(None);
        };
        let context =
            match run::load_context(self.store.as_ref(), &self.contexts, context_id).await? {
                Ok(context) => context,
                Err(message) => {
                    return Err(SyncError::Context {
                        id: context_id.to_owned(),
                        message,
                    });
                }
            };
        let prefix = records::app_cluster_prefix(context_id);
        let listed = self.store.list(&prefix).await?;
        // Records whose revision did not move since the last query are not parsed again.
        let mut parsed_before = self.contexts.take_records(context_id);
        let mut parsed = run::ParsedRecords::with_capacity(listed.len());
        for entry in listed {
            let record = match parsed_before.remove(&entry.key) {
                Some((revision, record)) if revision == entry.mod_revision => record,
                _ => Arc::new(parse::<AppClusterRecord>(&entry.key, &entry.value)?),
            };
            parsed.insert(entry.key, (entry.mod_revision, record));
        }
        let parsed = Arc::new(parsed);
        self.contexts.keep_records(context_id, parsed.clone());
        Ok(Some((run, context, parsed)))
    }

    /// The counts a status summary shows for `query` (its `app=` and `cluster=` filters
    /// apply), made from the records without building the per-resource report: a summary
    /// polled during a large rollout stays cheap. `None` when no operation was ever recorded
    /// for the context.
    pub async fn context_tally(
        &self,
        context_id: &str,
        query: &StatusQuery,
    ) -> Result<Option<ContextTally>, SyncError> {
        // A context run by this synchronizer: its records are in memory, as committed.
        if let Some(live) = self.live_view(context_id)
            && let Some(run) = self.run_status(context_id).await?
            && let Ok(context) =
                run::load_context(self.store.as_ref(), &self.contexts, context_id).await?
            && let Some(tally) = live.read(|records| {
                tally_of(&context, query, |app, cluster| {
                    records.get(app).and_then(|clusters| clusters.get(cluster))
                })
            })
        {
            return Ok(Some(context_tally(run, &context, query, tally)));
        }
        let Some((run, context, records)) = self.read_records(context_id).await? else {
            return Ok(None);
        };
        let tally = tally_of(&context, query, |app, cluster| {
            records
                .get(&records::app_cluster_key(context_id, app, cluster))
                .map(|(_, record)| record)
        });
        Ok(Some(context_tally(run, &context, query, tally)))
    }

    /// The run status of `context_id` and, per app and cluster, what was done; `None` when no
    /// operation was ever recorded for it.
    pub async fn context_status(
        &self,
        context_id: &str,
    ) -> Result<Option<ContextReport>, SyncError> {
        let Some((run, context, by_key)) = self.read_records(context_id).await? else {
            return Ok(None);
        };
        let prefix = records::app_cluster_prefix(context_id);
        let mut app_clusters = HashMap::with_capacity(by_key.len());
        for (key, (_, record)) in by_key.iter() {
            let Some((app, cluster)) = key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Ok(cluster) = serde_json::from_value::<ClusterId>(cluster.into()) else {
                continue;
            };
            app_clusters.insert((app.to_owned(), cluster), record.clone());
        }

        let prefix = records::cluster_prefix(context_id);
        let mut clusters = HashMap::new();
        for entry in self.store.list(&prefix).await? {
            let Some(cluster) = entry.key.strip_prefix(&prefix) else {
                continue;
            };
            let Ok(cluster) = serde_json::from_value::<ClusterId>(cluster.into()) else {
                continue;
            };
            let record: ClusterRecord = parse(&entry.key, &entry.value)?;
            clusters.insert(cluster, record);
        }
        Ok(Some(report::build(
            &context,
            report::Facts {
                op: run.op,
                status: run.status,
                message: run.message,
                stop_requested: run.stop_requested,
                all_ready: run.all_ready,
                records: app_clusters,
                clusters,
            },
        )))
    }

    /// Whether status summaries of `context_id` are counted from its run's records in memory
    /// (this synchronizer runs the context, or ran it recently, and the run had loaded the
    /// stored records) rather than from the store.
    pub fn counts_in_memory(&self, context_id: &str) -> bool {
        self.live_view(context_id)
            .is_some_and(|view| view.read(|_| ()).is_some())
    }

    /// Whether a run of `context_id` is in progress in this synchronizer (readiness tracking
    /// after the run finished does not count).
    pub fn is_running(&self, context_id: &str) -> bool {
        self.lock_runs()
            .get(context_id)
            .is_some_and(|running| !running.finished && !running.abort.is_finished())
    }

    /// Ends every run at once, as a crash would (records stay; `resume_all` on a new
    /// synchronizer continues them). For hub shutdown and tests.
    pub fn shutdown(&self) {
        for (_, running) in self.lock_runs().drain() {
            running.abort.abort();
        }
    }
}

/// Counts the objects of the apps and clusters `query` selects, each app-cluster's from its
/// record (`record_of(app, cluster)`); a missing record, or one that does not match the
/// context's objects (as in the full report), counts as nothing done yet.
fn tally_of<'r>(
    context: &AppContext,
    query: &StatusQuery,
    record_of: impl Fn(&str, &ClusterId) -> Option<&'r Arc<AppClusterRecord>>,
) -> Tally {
    let mut tally = Tally::default();
    for app in context
        .apps
        .iter()
        .filter(|app| query.selects_app(&app.name))
    {
        for (cluster, assignment) in app
            .clusters
            .iter()
            .filter(|(cluster, _)| query.selects_cluster(&cluster.provider, &cluster.cluster))
        {
            let objects = app
                .variants
                .get(&assignment.variant)
                .map_or(0, |variant| variant.objects.len());
            match record_of(&app.name, cluster).filter(|record| record.objects.len() == objects) {
                Some(record) => {
                    for object in &record.objects {
                        tally.add(query.kind, Some(object.deployed), object.ready);
                    }
                }
                None => {
                    for _ in 0..objects {
                        tally.add(query.kind, Some(DeployedStatus::Pending), None);
                    }
                }
            }
        }
    }
    tally
}

fn context_tally(
    run: RunStatus,
    context: &AppContext,
    query: &StatusQuery,
    tally: Tally,
) -> ContextTally {
    let unknown_cluster = query
        .clusters
        .iter()
        .find(|wanted| {
            let cluster = match wanted.split_once('+') {
                Some((provider, cluster)) => ClusterId::new(provider, cluster),
                None => return true,
            };
            !context
                .apps
                .iter()
                .any(|app| app.clusters.contains_key(&cluster))
        })
        .cloned();
    ContextTally {
        status: run.status,
        apps: context.apps.iter().map(|app| app.name.clone()).collect(),
        unknown_cluster,
        tally,
    }
}

/// Whether a context in this state has work left: an unfinished operation, or readiness
/// tracking after an instantiate that was not stopped.
fn needs_work(op: OpKind, status: &StatusRecord, stopped: bool) -> bool {
    if !records::is_finished(status.status) {
        return true;
    }
    op != OpKind::Terminate
        && !stopped
        && !status.all_ready
        && matches!(
            status.status,
            AppContextStatus::Instantiated
                | AppContextStatus::InstantiateFailed
                | AppContextStatus::Updated
                | AppContextStatus::UpdateFailed
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: AppContextStatus, all_ready: bool) -> StatusRecord {
        StatusRecord {
            status,
            message: None,
            all_ready,
            updated_ms: 0,
        }
    }

    #[test]
    fn work_is_left_while_unfinished_or_not_yet_ready() {
        use AppContextStatus::*;
        assert!(needs_work(
            OpKind::Instantiate,
            &status(Instantiating, false),
            false
        ));
        assert!(
            needs_work(OpKind::Instantiate, &status(Instantiating, false), true),
            "a stopped run still has to finish"
        );
        assert!(needs_work(
            OpKind::Terminate,
            &status(Terminating, false),
            false
        ));
        assert!(
            needs_work(OpKind::Instantiate, &status(Instantiated, false), false),
            "readiness tracking"
        );
        assert!(!needs_work(
            OpKind::Instantiate,
            &status(Instantiated, true),
            false
        ));
        assert!(!needs_work(
            OpKind::Instantiate,
            &status(InstantiateFailed, false),
            true
        ));
        assert!(!needs_work(
            OpKind::Terminate,
            &status(Terminated, false),
            false
        ));
        assert!(!needs_work(
            OpKind::Terminate,
            &status(TerminateFailed, false),
            false
        ));
    }

    #[test]
    fn operations_are_recorded_for_the_callers_transaction() {
        let ops = Synchronizer::instantiate_ops("ctx");
        let keys: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
                Op::DeletePrefix { prefix } => prefix.as_str(),
            })
            .collect();
        assert_eq!(keys, ["rsync/op/ctx", "rsync/status/ctx", "rsync/stop/ctx"]);
        let Op::Put { value, .. } = &Synchronizer::terminate_ops("ctx", "ctx")[1] else {
            panic!("status first is a put");
        };
        let record: StatusRecord = serde_json::from_slice(value)
            .unwrap_or_else(|_| status(AppContextStatus::Created, false));
        assert_eq!(record.status, AppContextStatus::Terminating);
        assert_eq!(Synchronizer::forget_ops("ctx").len(), 7);
    }
}
