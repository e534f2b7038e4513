//! One run of a context's operation: loads the context and the records of earlier runs of the
//! same operation, starts a worker per cluster and, for instantiate, a gate per app that
//! releases the app to its clusters' workers once its dependencies are met; then writes the run
//! status when every app-cluster reached its end.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emco_core::appcontext::{
    self, AppContext, ClusterChangeKind, ClusterId, ContextObject, ObjectOp, OpStatus,
    StorageError, VariantId,
};
use emco_core::status::{Connectivity, DeployedStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::flush::Flusher;
use super::link::{Link, stopped};
use super::live::{LiveRecords, RecordsByApp};
use super::prepare::{PreparedVariant, deployment_id, prepare};
use super::records::{
    self, AppClusterRecord, AppClusterState, ClusterRecord, LastAction, ObjectRecord, OpKind,
    StatusRecord,
};
use super::worker::{Slot, SlotMode, Worker};
use super::{SyncError, Synchronizer};

/// What a gate tells a cluster's worker about one app.
#[derive(Debug, Clone)]
pub enum Job {
    Apply(usize),
    Skip(usize, Skip),
}

#[derive(Debug, Clone)]
pub enum Skip {
    Stopped,
    DependencyFailed(String),
}

/// One app's progress over all its clusters, for its dependents.
pub struct AppRun {
    pub name: String,
    pub label: String,
    pub cluster_count: usize,
    /// App-clusters applied without failure.
    pub applied: AtomicUsize,
    /// App-clusters whose objects were all seen ready.
    pub ready: AtomicUsize,
    /// Some app-cluster failed or was stopped.
    pub failed: AtomicBool,
    /// Bumped on every change of the counters above.
    pub changed: watch::Sender<()>,
}

impl AppRun {
    pub fn new(name: String, label: String, cluster_count: usize) -> Self {
        Self {
            name,
            label,
            cluster_count,
            applied: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            changed: watch::channel(()).0,
        }
    }
}

/// What an update starts from: the source context, its records (what is on the clusters)
/// and, per app and cluster, what changes.
struct Source {
    id: String,
    context: Arc<AppContext>,
    records: HashMap<String, AppClusterRecord>,
    changes: HashMap<(String, ClusterId), ClusterChangeKind>,
}

/// A stored context, retrying while the store is away; `Err` says why it cannot be used.
async fn load_context_retrying(sync: &Synchronizer, id: &str) -> Result<Arc<AppContext>, String> {
    loop {
        match load_context(sync.store.as_ref(), &sync.contexts, id).await {
            Ok(loaded) => return loaded,
            Err(error) => {
                warn!(ctx = id, %error, "reading the app context failed; retrying");
                tokio::time::sleep(sync.config.store_retry).await;
            }
        }
    }
}

/// Loads an update's source context and records against the (loaded) `target`; `Err` says
/// why the update cannot run.
async fn load_source(
    sync: &Synchronizer,
    from: &str,
    target: &AppContext,
) -> Result<Source, String> {
    if from == target.id {
        return Err(format!("app context {from} cannot be updated to itself"));
    }
    let context = load_context_retrying(sync, from)
        .await
        .map_err(|reason| format!("the update's source: {reason}"))?;
    let mut records = HashMap::new();
    for entry in list_retrying(sync, &records::app_cluster_prefix(from)).await {
        if let Ok(record) = serde_json::from_slice::<AppClusterRecord>(&entry.value) {
            records.insert(entry.key, record);
        }
    }
    let changes = appcontext::diff(&context, target)
        .into_iter()
        .map(|change| ((change.app, change.cluster), change.change))
        .collect();
    Ok(Source {
        id: from.to_owned(),
        context,
        records,
        changes,
    })
}

impl Source {
    fn record(&self, app: &str, cluster: &ClusterId) -> Option<&AppClusterRecord> {
        self.records
            .get(&records::app_cluster_key(&self.id, app, cluster))
    }

    /// The slot of an app-cluster of the update's target: its own record when this operation
    /// already worked on it, else the source's record carried over to the new objects.
    #[allow(clippy::too_many_arguments)]
    fn slot(
        &self,
        app_index: usize,
        app: &appcontext::AppContextApp,
        app_label: &str,
        cluster: &ClusterId,
        variant: &Arc<PreparedVariant>,
        key: String,
        stored: Option<AppClusterRecord>,
        op_rev: u64,
    ) -> Slot {
        let count = variant.objects.len();
        let own = stored.filter(|record| record.op_rev == op_rev && record.objects.len() == count);
        let new_objects = app.objects_for(cluster).unwrap_or_default();
        let change = self.changes.get(&(app.name.clone(), cluster.clone()));
        let old_app = self.context.app(&app.name);
        let old_objects = old_app
            .and_then(|old| old.objects_for(cluster))
            .unwrap_or_default();
        let mode = match change {
            Some(ClusterChangeKind::Update { objects, .. }) => {
                let retired: Vec<usize> = objects
                    .iter()
                    .filter(|change| change.op == ObjectOp::Delete)
                    .filter_map(|change| {
                        old_objects.iter().position(|object| {
                            object.identity() == change.object && !object.keep_on_uninstall
                        })
                    })
                    .collect();
                // Only deleted: the label they are prepared with is never sent.
                let retired =
                    (!retired.is_empty()).then(|| (prepare(old_objects, app_label), retired));
                SlotMode::Upgrade {
                    hooks: true,
                    retired,
                }
            }
            Some(ClusterChangeKind::Unchanged { .. }) => SlotMode::Upgrade {
                hooks: false,
                retired: None,
            },
            _ => SlotMode::Install,
        };
        let record = match own {
            Some(record) => record,
            None if matches!(mode, SlotMode::Install) => AppClusterRecord {
                op_rev,
                objects: vec![created(); count],
                ..AppClusterRecord::default()
            },
            None => carried_record(
                op_rev,
                new_objects,
                old_objects,
                self.record(&app.name, cluster),
            ),
        };
        Slot::new(app_index, variant.clone(), key, record).with_mode(mode)
    }

    /// Every (app, cluster) the update takes the app off, with the source's objects there.
    fn removals(&self) -> Vec<(String, ClusterId, appcontext::Variant)> {
        let mut removals = Vec::new();
        for ((app, cluster), change) in &self.changes {
            if let ClusterChangeKind::Delete { variant } = change
                && let Some(objects) = self
                    .context
                    .app(app)
                    .and_then(|old| old.variants.get(variant))
            {
                removals.push((app.clone(), cluster.clone(), objects.clone()));
            }
        }
        removals.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        removals
    }

    /// The source's apps in reverse dependency order (dependents are removed first).
    fn uninstall_order(&self) -> Vec<String> {
        let waves = self.context.deploy_order().unwrap_or_default();
        waves.into_iter().rev().flatten().collect()
    }
}

/// A pending object an update brings to a cluster.
fn created() -> ObjectRecord {
    ObjectRecord {
        action: Some(LastAction::Created),
        ..ObjectRecord::default()
    }
}

/// The record an update starts an app-cluster from when the app stays on it: objects
/// identical to the source's keep the source's record if applied there (they are not sent
/// again); new and changed objects, and any not applied, start pending. Hooks keep the record
/// of their last run.
fn carried_record(
    op_rev: u64,
    new_objects: &[ContextObject],
    old_objects: &[ContextObject],
    old_record: Option<&AppClusterRecord>,
) -> AppClusterRecord {
    let old_record = old_record.filter(|record| record.objects.len() == old_objects.len());
    let objects = new_objects
        .iter()
        .map(|object| {
            let identity = object.identity();
            let Some(index) = old_objects
                .iter()
                .position(|old| old.identity() == identity)
            else {
                return created();
            };
            // An update runs no install hook: a hook's record is the outcome of its last run
            // (an upgrade hook that runs now is recorded afresh).
            if object.phase.hook().is_some()
                && let Some(record) = old_record.map(|record| &record.objects[index])
            {
                return record.clone();
            }
            if old_objects[index] != *object {
                return ObjectRecord {
                    action: Some(LastAction::Updated),
                    ..ObjectRecord::default()
                };
            }
            // Unchanged: what the source did stands, if it got there.
            match old_record.map(|record| &record.objects[index]) {
                Some(record) if record.deployed == DeployedStatus::Applied => record.clone(),
                Some(record) => ObjectRecord {
                    action: record.action,
                    ..ObjectRecord::default()
                },
                None => ObjectRecord::default(),
            }
        })
        .collect();
    AppClusterRecord {
        op_rev,
        connectivity: old_record
            .map(|record| record.connectivity)
            .unwrap_or_default(),
        objects,
        ..AppClusterRecord::default()
    }
}

/// What a run's workers share.
pub struct RunShared {
    pub op: OpKind,
    /// An update that is a rollback: rollback hooks instead of upgrade hooks.
    pub rollback: bool,
    pub apps: Vec<AppRun>,
    pub flusher: Flusher,
    /// App-clusters not yet at their end state.
    pub outstanding: watch::Sender<usize>,
    pub failed: AtomicBool,
    /// What a terminate left behind, for the status message.
    pub leftovers: Mutex<Vec<String>>,
    /// Objects of earlier revisions still on clusters when the run ends (`rsync/left/`).
    pub left_behind: Mutex<Vec<super::records::LeftObject>>,
}

/// The operation a run carries out, as read from the store.
pub struct RunSpec {
    pub ctx: String,
    pub op: OpKind,
    /// The context id the objects' `emco/deployment-id` label carries.
    pub label: String,
    /// An update's source context.
    pub from: Option<String>,
    pub rollback: bool,
    pub op_rev: u64,
    pub status: StatusRecord,
    /// Where the run's committed records are kept for status summaries.
    pub live: Arc<LiveRecords>,
}

/// How many leftovers a failed terminate names in its status message.
const LEFTOVERS_NAMED: usize = 20;

pub async fn run(sync: Arc<Synchronizer>, spec: RunSpec, stop: watch::Receiver<bool>, run_id: u64) {
    let ctx = spec.ctx.clone();
    info!(ctx, op = ?spec.op, op_rev = spec.op_rev, "run starts");
    match execute(&sync, spec, stop).await {
        Ok(()) => debug!(ctx, "run ends"),
        Err(error) => warn!(ctx, %error, "run ends early"),
    }
    sync.run_ended(&ctx, run_id);
}

/// Reads everything under `prefix`, retrying while the store is away.
async fn list_retrying(sync: &Synchronizer, prefix: &str) -> Vec<emco_store::Entry> {
    loop {
        match sync.store.list(prefix).await {
            Ok(entries) => return entries,
            Err(error) => {
                warn!(prefix, %error, "reading the store failed; retrying");
                tokio::time::sleep(sync.config.store_retry).await;
            }
        }
    }
}

/// How many loaded contexts a synchronizer keeps (status queries of a few deployments at a
/// time, and the runs going on).
pub const CONTEXTS_CACHED: usize = 16;

/// Parsed app-cluster records by key, with the store revision each was parsed at.
pub type ParsedRecords = HashMap<String, (u64, Arc<AppClusterRecord>)>;

struct CachedContext {
    id: String,
    meta_revision: u64,
    context: Arc<AppContext>,
    /// The records the last status query parsed (a record whose revision did not move is not
    /// parsed again).
    records: Arc<ParsedRecords>,
}

/// Contexts loaded lately, each with the store revision of its `meta` key. A context is
/// immutable once `meta` exists, so a cached one is good for as long as `meta` keeps that
/// revision (a context deleted and stored again under the same id has a new one).
pub struct ContextCache {
    capacity: usize,
    /// Least recently used first.
    entries: Mutex<VecDeque<CachedContext>>,
}

impl ContextCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<CachedContext>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, ctx: &str, meta_revision: u64) -> Option<Arc<AppContext>> {
        let mut entries = self.lock();
        let position = entries.iter().position(|entry| entry.id == ctx)?;
        let entry = entries.remove(position)?;
        if entry.meta_revision != meta_revision {
            return None;
        }
        let context = entry.context.clone();
        entries.push_back(entry);
        Some(context)
    }

    fn insert(&self, ctx: &str, meta_revision: u64, context: Arc<AppContext>) {
        let mut entries = self.lock();
        entries.retain(|entry| entry.id != ctx);
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(CachedContext {
            id: ctx.to_owned(),
            meta_revision,
            context,
            records: Arc::default(),
        });
    }

    /// Takes the records parsed for `ctx` last time (empty when none are kept).
    pub fn take_records(&self, ctx: &str) -> ParsedRecords {
        let taken = self
            .lock()
            .iter_mut()
            .find(|entry| entry.id == ctx)
            .map(|entry| std::mem::take(&mut entry.records))
            .unwrap_or_default();
        // Shared only while a concurrent query still reads the previous set.
        Arc::try_unwrap(taken).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Keeps `records` for the next status query of `ctx` (while its context is cached).
    pub fn keep_records(&self, ctx: &str, records: Arc<ParsedRecords>) {
        if let Some(entry) = self.lock().iter_mut().find(|entry| entry.id == ctx) {
            entry.records = records;
        }
    }

    /// How many contexts are kept now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The context (from `cache` when its `meta` was not rewritten since), or why it cannot be used.
pub async fn load_context(
    store: &dyn emco_store::Store,
    cache: &ContextCache,
    ctx: &str,
) -> Result<Result<Arc<AppContext>, String>, SyncError> {
    let missing = || format!("app context {ctx} is not stored (or incomplete)");
    let meta_key = appcontext::meta_key(ctx);
    let Some(meta) = store.get(&meta_key).await? else {
        return Ok(Err(missing()));
    };
    if let Some(context) = cache.get(ctx, meta.mod_revision) {
        return Ok(Ok(context));
    }
    let entries = store.list(&appcontext::key_prefix(ctx)).await?;
    let meta_revision = entries
        .iter()
        .find(|entry| entry.key == meta_key)
        .map(|entry| entry.mod_revision);
    let context = match appcontext::load(
        ctx,
        entries.into_iter().map(|entry| (entry.key, entry.value)),
    ) {
        Ok(context) => Arc::new(context),
        Err(StorageError::MissingMeta { .. }) => return Ok(Err(missing())),
        Err(error) => return Ok(Err(error.to_string())),
    };
    if let Some(revision) = meta_revision {
        cache.insert(ctx, revision, context.clone());
    }
    Ok(Ok(context))
}

/// The record a run starts from: its own operation's progress, or only the object statuses of
/// another operation's.
fn starting_record(
    found: Option<AppClusterRecord>,
    op_rev: u64,
    objects: usize,
) -> AppClusterRecord {
    match found {
        Some(record) if record.op_rev == op_rev && record.objects.len() == objects => record,
        Some(record) if record.objects.len() == objects => AppClusterRecord {
            op_rev,
            connectivity: record.connectivity,
            objects: record.objects,
            ..AppClusterRecord::default()
        },
        _ => AppClusterRecord {
            op_rev,
            objects: vec![records::ObjectRecord::default(); objects],
            ..AppClusterRecord::default()
        },
    }
}

async fn execute(
    sync: &Arc<Synchronizer>,
    spec: RunSpec,
    stop: watch::Receiver<bool>,
) -> Result<(), SyncError> {
    let RunSpec {
        ctx,
        op,
        label,
        from,
        rollback,
        op_rev,
        status,
        live,
    } = spec;
    let config = sync.config.clone();
    let (superseded_tx, mut superseded) = watch::channel(false);
    let (flusher, flush_task) = Flusher::start(
        sync.store.clone(),
        records::op_key(&ctx),
        op_rev,
        config.store_retry,
        config.record_linger,
        live.clone(),
        superseded_tx,
    );
    let mut flushing = JoinSet::new();
    flushing.spawn(flush_task);
    let already_final = records::is_finished(status.status);

    let loaded = match load_context_retrying(sync, &ctx).await {
        Ok(context) => match (op, &from) {
            // An update starts from what its source context deployed.
            (OpKind::Update, Some(from)) => load_source(sync, from, &context)
                .await
                .map(|source| (context, Some(source))),
            _ => Ok((context, None)),
        },
        Err(reason) => Err(reason),
    };
    let (context, source) = match loaded {
        Ok(loaded) => loaded,
        Err(reason) => {
            error!(ctx, %reason, "cannot run");
            let record = StatusRecord {
                status: op.final_status(false),
                message: Some(reason),
                // Nothing was applied, so nothing is left to track.
                all_ready: true,
                updated_ms: records::now_ms(),
            };
            flusher
                .put(records::status_key(&ctx), records::to_bytes(&record))
                .await?;
            return Ok(());
        }
    };

    let mut found: HashMap<String, AppClusterRecord> = HashMap::new();
    for entry in list_retrying(sync, &records::app_cluster_prefix(&ctx)).await {
        match serde_json::from_slice(&entry.value) {
            Ok(record) => {
                found.insert(entry.key, record);
            }
            Err(error) => warn!(key = entry.key, %error, "ignoring an unreadable record"),
        }
    }
    let mut cluster_records: HashMap<String, ClusterRecord> = HashMap::new();
    for entry in list_retrying(sync, &records::cluster_prefix(&ctx)).await {
        if let Ok(record) = serde_json::from_slice(&entry.value) {
            cluster_records.insert(entry.key, record);
        }
    }

    // Prepare each variant once; every cluster using it shares it.
    let mut apps = Vec::with_capacity(context.apps.len());
    let mut prepared: Vec<BTreeMap<&VariantId, Arc<PreparedVariant>>> = Vec::new();
    for app in &context.apps {
        let app_label = deployment_id(&label, &app.name);
        prepared.push(
            app.variants
                .iter()
                .map(|(id, variant)| (id, prepare(&variant.objects, &app_label)))
                .collect(),
        );
        apps.push(AppRun::new(app.name.clone(), app_label, app.clusters.len()));
    }

    let mut seen: RecordsByApp = HashMap::new();
    let mut clusters: BTreeMap<ClusterId, Vec<Slot>> = BTreeMap::new();
    for (app_index, app) in context.apps.iter().enumerate() {
        for (cluster, assignment) in &app.clusters {
            let Some(variant) = prepared[app_index].get(&assignment.variant) else {
                continue; // `load` validated that every assignment's variant exists.
            };
            let key = records::app_cluster_key(&ctx, &app.name, cluster);
            let stored = found.remove(&key);
            if let Some(stored) = &stored {
                seen.entry(app.name.clone())
                    .or_default()
                    .insert(cluster.clone(), Arc::new(stored.clone()));
            }
            let slot = match &source {
                None => {
                    let record = starting_record(stored, op_rev, variant.objects.len());
                    Slot::new(app_index, variant.clone(), key, record)
                }
                Some(source) => {
                    let app_label = apps[app_index].label.clone();
                    source.slot(
                        app_index, app, &app_label, cluster, variant, key, stored, op_rev,
                    )
                }
            };
            clusters.entry(cluster.clone()).or_default().push(slot);
        }
    }
    // Apps an update takes off clusters: uninstalled with the source's objects.
    let mut removal_rank: HashMap<String, usize> = HashMap::new();
    if let Some(source) = &source {
        for (rank, app) in source.uninstall_order().into_iter().enumerate() {
            removal_rank.insert(app, rank);
        }
        for (app_name, cluster, variant) in source.removals() {
            let app_index = match apps.iter().position(|run| run.name == app_name) {
                Some(index) => index,
                None => {
                    apps.push(AppRun::new(
                        app_name.clone(),
                        deployment_id(&label, &app_name),
                        0,
                    ));
                    apps.len() - 1
                }
            };
            let prepared = prepare(&variant.objects, &apps[app_index].label);
            let key = records::app_cluster_key(&ctx, &app_name, &cluster);
            let stored = found
                .remove(&key)
                .filter(|record| record.op_rev == op_rev)
                .or_else(|| source.record(&app_name, &cluster).cloned());
            let record = starting_record(stored, op_rev, prepared.objects.len());
            let slot = Slot::new(app_index, prepared, key, record).with_mode(SlotMode::Remove);
            clusters.entry(cluster).or_default().push(slot);
        }
    }

    // Objects earlier revisions left behind: an update removes its source's, a terminate its
    // own context's (each cluster's as one more removal).
    let left_from = match op {
        OpKind::Update => from.as_deref(),
        OpKind::Terminate => Some(ctx.as_str()),
        OpKind::Instantiate => None,
    };
    if let Some(left_from) = left_from {
        let mut left = read_objects(sync, &records::left_key(left_from)).await;
        if op == OpKind::Terminate {
            // What service discovery gave client clusters goes with the context.
            left.objects.extend(
                read_objects(sync, &records::discovered_key(&ctx))
                    .await
                    .objects,
            );
            left.objects.sort();
            left.objects.dedup();
        }
        if !left.objects.is_empty() {
            let app_index = apps.len();
            apps.push(AppRun::new(
                records::LEFT_APP.to_owned(),
                deployment_id(&label, records::LEFT_APP),
                0,
            ));
            let mut by_cluster: BTreeMap<ClusterId, Vec<ContextObject>> = BTreeMap::new();
            for object in left.objects {
                by_cluster
                    .entry(object.cluster.clone())
                    .or_default()
                    .push(left_object(&object));
            }
            for (cluster, objects) in by_cluster {
                let prepared = prepare(&objects, &apps[app_index].label);
                let key = records::app_cluster_key(&ctx, records::LEFT_APP, &cluster);
                let stored = found.remove(&key).filter(|record| record.op_rev == op_rev);
                let record = starting_record(stored, op_rev, prepared.objects.len());
                let slot = Slot::new(app_index, prepared, key, record).with_mode(SlotMode::Remove);
                clusters.entry(cluster).or_default().push(slot);
            }
        }
    }

    let mut outstanding = 0;
    let mut failed = false;
    let mut leftovers = Vec::new();
    let mut left_behind = Vec::new();
    for (cluster, slots) in &clusters {
        for slot in slots {
            let app = &apps[slot.app];
            match slot.record.state {
                AppClusterState::Pending => outstanding += 1,
                AppClusterState::Applied => {
                    app.applied.fetch_add(1, Ordering::SeqCst);
                    if slot.record.ready_ms.is_some() {
                        app.ready.fetch_add(1, Ordering::SeqCst);
                    }
                }
                AppClusterState::Deleted => {}
                AppClusterState::Failed | AppClusterState::Stopped => {
                    if !slot.is_removal() {
                        app.failed.store(true, Ordering::SeqCst);
                    }
                    failed = true;
                }
            }
            if (op == OpKind::Terminate || slot.is_removal()) && slot.record.state.is_terminal() {
                leftovers.extend(super::worker::leftovers(&app.name, cluster, slot));
            }
            if slot.record.state.is_terminal() {
                left_behind.extend(super::worker::left_objects(cluster, slot));
            }
        }
    }

    // From here on, status summaries of the context count the run's records in memory.
    live.seed(seen);

    let shared = Arc::new(RunShared {
        op,
        rollback,
        apps,
        flusher: flusher.clone(),
        outstanding: watch::channel(outstanding).0,
        failed: AtomicBool::new(failed),
        leftovers: Mutex::new(leftovers),
        left_behind: Mutex::new(left_behind),
    });
    let permits = sync.permits.clone();
    let make_link = |cluster: &ClusterId, slots: &[Slot]| {
        let recorded = cluster_records.get(&records::cluster_key(&ctx, cluster));
        let seen = slots
            .iter()
            .any(|slot| slot.record.connectivity == Connectivity::Available);
        Link::new(
            &ctx,
            cluster.clone(),
            sync.connector.clone(),
            config.clone(),
            permits.clone(),
            flusher.clone(),
            stop.clone(),
            recorded.map(|record| record.connectivity),
            seen,
        )
    };

    let mut tasks = JoinSet::new();
    match op {
        OpKind::Instantiate | OpKind::Update => {
            let mut senders: Vec<Vec<mpsc::UnboundedSender<Job>>> =
                vec![Vec::new(); context.apps.len()];
            for (cluster, slots) in clusters {
                let (tx, rx) = mpsc::unbounded_channel();
                for slot in slots.iter().filter(|slot| !slot.is_removal()) {
                    senders[slot.app].push(tx.clone());
                }
                let mut removals: Vec<usize> = (0..slots.len())
                    .filter(|&index| slots[index].is_removal())
                    .collect();
                removals.sort_by_key(|&index| {
                    removal_rank
                        .get(&shared.apps[slots[index].app].name)
                        .copied()
                        .unwrap_or(usize::MAX)
                });
                let link = make_link(&cluster, &slots);
                let worker = Worker::new(shared.clone(), link, slots);
                tasks.spawn(worker.deploy(removals, rx));
            }
            for (app_index, (app, senders)) in context.apps.iter().zip(senders).enumerate() {
                let dependencies: Vec<(usize, OpStatus, u32)> = app
                    .dependencies
                    .iter()
                    .filter_map(|dependency| {
                        let index = context.apps.iter().position(|a| a.name == dependency.app)?;
                        Some((index, dependency.op_status, dependency.wait_seconds))
                    })
                    .collect();
                tasks.spawn(gate(
                    shared.clone(),
                    app_index,
                    dependencies,
                    senders,
                    stop.clone(),
                ));
            }
        }
        OpKind::Terminate => {
            // Reverse dependency order: apps of later waves go first.
            let waves = context.deploy_order().unwrap_or_default();
            let rank: HashMap<&str, usize> = waves
                .iter()
                .rev()
                .flatten()
                .enumerate()
                .map(|(rank, app)| (app.as_str(), rank))
                .collect();
            for (cluster, slots) in clusters {
                let mut order: Vec<usize> = (0..slots.len()).collect();
                order.sort_by_key(|&index| {
                    rank.get(shared.apps[slots[index].app].name.as_str())
                        .copied()
                        .unwrap_or(usize::MAX)
                });
                let link = make_link(&cluster, &slots);
                let worker = Worker::new(shared.clone(), link, slots);
                tasks.spawn(worker.terminate(order));
            }
        }
    }

    // Until every app-cluster reached its end.
    let mut remaining = shared.outstanding.subscribe();
    loop {
        let event = tokio::select! {
            done = async { remaining.wait_for(|count| *count == 0).await.is_ok() } => {
                if done { Progress::AllDone } else { Progress::Superseded }
            }
            () = superseded_signal(&mut superseded) => Progress::Superseded,
            joined = tasks.join_next() => match joined {
                Some(Err(failure)) if failure.is_panic() => Progress::Panicked,
                Some(_) => Progress::TaskEnded,
                None if *shared.outstanding.borrow() > 0 => Progress::Superseded,
                None => Progress::AllDone,
            },
        };
        match event {
            Progress::AllDone => break,
            Progress::TaskEnded => {}
            Progress::Superseded => return Err(SyncError::Superseded),
            Progress::Panicked => {
                error!(ctx, "a worker panicked; the run ends");
                let record = StatusRecord {
                    status: op.final_status(false),
                    message: Some("internal error: a cluster worker panicked".into()),
                    all_ready: true,
                    updated_ms: records::now_ms(),
                };
                flusher
                    .put(records::status_key(&ctx), records::to_bytes(&record))
                    .await?;
                return Ok(());
            }
        }
    }

    let was_stopped = *stop.borrow();
    let (mut final_record, status_write) = if already_final {
        (status, None)
    } else {
        let clean = !shared.failed.load(Ordering::SeqCst) && !was_stopped;
        let message = final_message(&shared, op, clean, was_stopped);
        let record = StatusRecord {
            status: op.final_status(clean),
            message,
            all_ready: false,
            updated_ms: records::now_ms(),
        };
        (record.clone(), Some(record))
    };
    // Every app-cluster's record of this operation is durable. With the final status, in one
    // transaction: what is still left behind, for the next operation, and the removal of an
    // update's source records (its starting point).
    // An update takes over what its source discovered (its discovery step then keeps, moves or
    // deletes it); a terminate removed it with the rest.
    let discovered = match (op, from.as_deref()) {
        (OpKind::Update, Some(from)) => {
            let mut objects = read_objects(sync, &records::discovered_key(&ctx))
                .await
                .objects;
            objects.extend(
                read_objects(sync, &records::discovered_key(from))
                    .await
                    .objects,
            );
            objects.sort();
            objects.dedup();
            Some(objects)
        }
        (OpKind::Terminate, _) => Some(Vec::new()),
        _ => None,
    };
    let (source, left) = if op == OpKind::Instantiate {
        (None, None)
    } else {
        let mut left = shared
            .left_behind
            .lock()
            .map(|left| left.clone())
            .unwrap_or_default();
        left.sort();
        left.dedup();
        (from.as_deref().filter(|_| op == OpKind::Update), Some(left))
    };
    settle(
        sync,
        &ctx,
        op_rev,
        status_write.as_ref(),
        source,
        left,
        discovered,
    )
    .await?;
    if status_write.is_some() {
        info!(ctx, status = ?final_record.status, "run finished");
    }
    sync.run_finished(&ctx, op_rev);

    // Readiness tracking goes on in the workers until everything applied is ready; service
    // discovery waits for its servers to be ready, then gives their clients the way to them.
    let discovery = super::discover::DiscoveryStep {
        sync: sync.clone(),
        ctx: ctx.clone(),
        label: label.clone(),
        context: context.clone(),
        shared: shared.clone(),
        flusher: flusher.clone(),
        stop: stop.clone(),
    };
    let discovering = op != OpKind::Terminate && !was_stopped;
    let mut discovery = std::pin::pin!(async move {
        if discovering {
            discovery.run().await
        } else {
            Ok(Vec::new())
        }
    });
    let (mut tracking, mut discovered) = (true, false);
    let mut problems = Vec::new();
    while tracking || !discovered {
        tokio::select! {
            joined = tasks.join_next(), if tracking => if joined.is_none() { tracking = false },
            outcome = &mut discovery, if !discovered => {
                discovered = true;
                problems = outcome?;
            }
            () = superseded_signal(&mut superseded) => return Err(SyncError::Superseded),
        }
    }
    if op != OpKind::Terminate && !*stop.borrow() && !final_record.all_ready {
        if !problems.is_empty() {
            let mut message = final_record.message.take().unwrap_or_default();
            for problem in problems {
                if !message.is_empty() {
                    message.push_str("; ");
                }
                message.push_str(&problem);
            }
            final_record.message = Some(message);
        }
        final_record.all_ready = true;
        final_record.updated_ms = records::now_ms();
        flusher
            .put(records::status_key(&ctx), records::to_bytes(&final_record))
            .await?;
        info!(ctx, "every applied object is ready");
    }
    drop(shared);
    drop(flusher);
    // Let queued writes (connectivity flips) reach the store.
    while flushing.join_next().await.is_some() {}
    Ok(())
}

/// Ends a run durably, in one transaction that holds only while the run's operation is
/// current: its final `status`, what it leaves behind (`rsync/left/{ctx}`, or nothing; `None`
/// for an instantiate, which has no earlier revision) and the removal of an update's `source`
/// records. A crash can come before or after, never in between.
async fn settle(
    sync: &Synchronizer,
    ctx: &str,
    op_rev: u64,
    status: Option<&StatusRecord>,
    source: Option<&str>,
    left: Option<Vec<records::LeftObject>>,
    discovered: Option<Vec<records::LeftObject>>,
) -> Result<(), SyncError> {
    let mut ops = Vec::new();
    match discovered {
        None => {}
        Some(objects) if objects.is_empty() => ops.push(emco_store::Op::Delete {
            key: records::discovered_key(ctx),
        }),
        Some(objects) => ops.push(emco_store::Op::Put {
            key: records::discovered_key(ctx),
            value: records::to_bytes(&records::LeftRecord { objects }),
        }),
    }
    if let Some(status) = status {
        ops.push(emco_store::Op::Put {
            key: records::status_key(ctx),
            value: records::to_bytes(status),
        });
    }
    if let Some(from) = source {
        ops.push(emco_store::Op::DeletePrefix {
            prefix: records::app_cluster_prefix(from),
        });
        ops.push(emco_store::Op::DeletePrefix {
            prefix: records::cluster_prefix(from),
        });
        ops.push(emco_store::Op::Delete {
            key: records::left_key(from),
        });
        ops.push(emco_store::Op::Delete {
            key: records::discovered_key(from),
        });
    }
    match left {
        None => {}
        Some(left) if left.is_empty() => ops.push(emco_store::Op::Delete {
            key: records::left_key(ctx),
        }),
        Some(left) => {
            warn!(
                ctx,
                objects = left.len(),
                "objects of earlier revisions are left behind"
            );
            ops.push(emco_store::Op::Put {
                key: records::left_key(ctx),
                value: records::to_bytes(&records::LeftRecord { objects: left }),
            });
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    let txn = emco_store::Txn {
        compares: vec![emco_store::Compare::ModRevision(
            records::op_key(ctx),
            op_rev,
        )],
        ops,
    };
    loop {
        match sync.store.txn(txn.clone()).await {
            Ok(outcome) if outcome.succeeded => return Ok(()),
            Ok(_) => return Err(SyncError::Superseded),
            Err(error) => {
                warn!(ctx, %error, "writing the end of the run failed; retrying");
                tokio::time::sleep(sync.config.store_retry).await;
            }
        }
    }
}

/// The objects earlier revisions left behind for `ctx` (none when unreadable).
/// The objects recorded at `key` (`rsync/left/…`, `rsync/discovered/…`); none when unreadable.
pub(super) async fn read_objects(sync: &Synchronizer, key: &str) -> records::LeftRecord {
    loop {
        match sync.store.get(key).await {
            Ok(Some(entry)) => {
                return serde_json::from_slice(&entry.value).unwrap_or_else(|error| {
                    warn!(key, %error, "ignoring an unreadable record");
                    records::LeftRecord::default()
                });
            }
            Ok(None) => return records::LeftRecord::default(),
            Err(error) => {
                warn!(key, %error, "reading the store failed; retrying");
                tokio::time::sleep(sync.config.store_retry).await;
            }
        }
    }
}

/// A left-behind object as a context object to delete.
fn left_object(object: &records::LeftObject) -> ContextObject {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), object.name.clone().into());
    if let Some(namespace) = &object.namespace {
        metadata.insert("namespace".into(), namespace.clone().into());
    }
    ContextObject {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        name: object.name.clone(),
        namespace: object.namespace.clone(),
        phase: appcontext::Phase::Resource { order: 0 },
        delete_policies: Vec::new(),
        keep_on_uninstall: false,
        object: serde_json::json!({
            "apiVersion": object.api_version,
            "kind": object.kind,
            "metadata": metadata,
        }),
    }
}

enum Progress {
    AllDone,
    TaskEnded,
    Superseded,
    Panicked,
}

/// Resolves when the flusher found the operation replaced.
async fn superseded_signal(superseded: &mut watch::Receiver<bool>) {
    if superseded.wait_for(|gone| *gone).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn final_message(shared: &RunShared, op: OpKind, clean: bool, stopped: bool) -> Option<String> {
    if clean {
        return None;
    }
    let leftovers = shared
        .leftovers
        .lock()
        .map(|list| list.clone())
        .unwrap_or_default();
    let mut message = match (op, stopped) {
        (_, true) => "stopped".to_owned(),
        (OpKind::Instantiate, false) => {
            "some objects or apps failed; see the status of each cluster".to_owned()
        }
        (OpKind::Update, false) => {
            "some objects or apps failed to update; see the status of each cluster".to_owned()
        }
        (OpKind::Terminate, false) => "some objects were not deleted".to_owned(),
    };
    if !leftovers.is_empty() {
        message.push_str("; left behind: ");
        let named: Vec<&str> = leftovers
            .iter()
            .take(LEFTOVERS_NAMED)
            .map(String::as_str)
            .collect();
        message.push_str(&named.join(", "));
        if leftovers.len() > LEFTOVERS_NAMED {
            message.push_str(&format!(" and {} more", leftovers.len() - LEFTOVERS_NAMED));
        }
    }
    Some(message)
}

/// Waits for the app's dependencies (all of them, concurrently: each met, then its `wait`),
/// then releases the app to its clusters' workers.
async fn gate(
    shared: Arc<RunShared>,
    app: usize,
    dependencies: Vec<(usize, OpStatus, u32)>,
    senders: Vec<mpsc::UnboundedSender<Job>>,
    stop: watch::Receiver<bool>,
) {
    let waits = dependencies.iter().map(|&(dependency, op_status, wait)| {
        wait_dependency(&shared, dependency, op_status, wait, stop.clone())
    });
    let job = match futures::future::try_join_all(waits).await {
        Ok(_) => Job::Apply(app),
        Err(skip) => Job::Skip(app, skip),
    };
    debug!(app = shared.apps[app].name, ?job, "released");
    for sender in senders {
        let _ = sender.send(job.clone());
    }
}

pub(super) async fn wait_dependency(
    shared: &RunShared,
    dependency: usize,
    op_status: OpStatus,
    wait_seconds: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Skip> {
    let target = &shared.apps[dependency];
    let mut changed = target.changed.subscribe();
    loop {
        if *stop.borrow() {
            return Err(Skip::Stopped);
        }
        if target.failed.load(Ordering::SeqCst) {
            return Err(Skip::DependencyFailed(format!(
                "dependency {} failed",
                target.name
            )));
        }
        let met = match op_status {
            OpStatus::Deployed => target.applied.load(Ordering::SeqCst) >= target.cluster_count,
            OpStatus::Ready => target.ready.load(Ordering::SeqCst) >= target.cluster_count,
        };
        if met {
            break;
        }
        tokio::select! {
            result = changed.changed() => if result.is_err() { return Err(Skip::Stopped) },
            () = stopped(&mut stop) => {}
        }
    }
    if wait_seconds > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(u64::from(wait_seconds))) => {}
            () = stopped(&mut stop) => return Err(Skip::Stopped),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use emco_core::appcontext::{AppContextBuilder, AppInput, DigRef, Phase};
    use emco_store::{Op, RedbStore, Store, Txn};
    use serde_json::json;

    use super::*;

    fn context(id: &str, app: &str) -> AppContext {
        let object = ContextObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "cm".into(),
            namespace: Some("default".into()),
            phase: Phase::Resource { order: 0 },
            delete_policies: vec![],
            keep_on_uninstall: false,
            object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
        };
        AppContextBuilder::new(
            DigRef::new("p", "ca", "v1", "dig"),
            1,
            "2026-01-01T00:00:00Z",
        )
        .id(id)
        .app(AppInput {
            name: app.to_owned(),
            dependencies: vec![],
            clusters: [(ClusterId::new("p", "c"), None)].into(),
            objects: vec![object],
        })
        .build()
        .unwrap()
    }

    async fn store_context(store: &dyn Store, context: &AppContext) {
        let ops = appcontext::encode(context)
            .unwrap()
            .into_iter()
            .map(|(key, value)| Op::Put { key, value })
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
    }

    fn object_named(name: &str, data: &str, phase: Phase) -> ContextObject {
        ContextObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            namespace: Some("default".into()),
            phase,
            delete_policies: vec![],
            keep_on_uninstall: false,
            object: json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name}, "data": {"v": data}}),
        }
    }

    #[test]
    fn an_update_carries_what_it_does_not_change() {
        use emco_core::appcontext::HookEvents;
        use emco_core::status::ReadyStatus;
        let resource = Phase::Resource { order: 0 };
        let hook = Phase::Hook {
            weight: 0,
            events: HookEvents {
                pre_install: true,
                ..HookEvents::default()
            },
        };
        let old = vec![
            object_named("same", "1", resource),
            object_named("changed", "1", resource),
            object_named("failed", "1", resource),
            object_named("setup", "1", hook),
            object_named("gone", "1", resource),
        ];
        let new = vec![
            object_named("setup", "2", hook),
            object_named("same", "1", resource),
            object_named("changed", "2", resource),
            object_named("failed", "1", resource),
            object_named("added", "1", resource),
        ];
        let applied = ObjectRecord {
            deployed: DeployedStatus::Applied,
            ready: Some(ReadyStatus::Ready),
            ..ObjectRecord::default()
        };
        let hook_done = ObjectRecord {
            deployed: DeployedStatus::Deleted,
            ready: Some(ReadyStatus::Ready),
            ..ObjectRecord::default()
        };
        let failed = ObjectRecord {
            deployed: DeployedStatus::Failed,
            message: Some("refused".into()),
            ..ObjectRecord::default()
        };
        let old_record = AppClusterRecord {
            op_rev: 3,
            objects: vec![
                applied.clone(),
                applied.clone(),
                failed,
                hook_done.clone(),
                applied.clone(),
            ],
            ..AppClusterRecord::default()
        };
        let carried = carried_record(9, &new, &old, Some(&old_record));
        assert_eq!(carried.op_rev, 9);
        assert_eq!(carried.state, AppClusterState::Pending);
        assert!(
            carried.hooks_done.is_empty(),
            "hooks run anew per operation"
        );
        let pending = |action| ObjectRecord {
            action,
            ..ObjectRecord::default()
        };
        assert_eq!(
            carried.objects,
            [
                hook_done,
                applied,
                pending(Some(LastAction::Updated)),
                pending(None),
                pending(Some(LastAction::Created)),
            ]
        );
        // Without the source's record (it never reached the cluster) everything is sent.
        let fresh = carried_record(9, &new, &old, None);
        assert!(
            fresh
                .objects
                .iter()
                .all(|object| object.deployed == DeployedStatus::Pending)
        );
    }

    #[tokio::test]
    async fn loaded_contexts_are_reused_until_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let cache = ContextCache::new(2);
        assert_eq!(
            load_context(&store, &cache, "a")
                .await
                .unwrap()
                .unwrap_err(),
            "app context a is not stored (or incomplete)"
        );
        store_context(&store, &context("a", "web")).await;
        let first = load_context(&store, &cache, "a").await.unwrap().unwrap();
        let again = load_context(&store, &cache, "a").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from the cache");

        // Deleted and stored again under the same id: the new one is loaded.
        store
            .txn(Txn {
                compares: vec![],
                ops: vec![Op::DeletePrefix {
                    prefix: appcontext::key_prefix("a"),
                }],
            })
            .await
            .unwrap();
        store_context(&store, &context("a", "db")).await;
        let renewed = load_context(&store, &cache, "a").await.unwrap().unwrap();
        assert_eq!(renewed.apps[0].name, "db");

        // The least recently used one goes first.
        store_context(&store, &context("b", "web")).await;
        store_context(&store, &context("c", "web")).await;
        load_context(&store, &cache, "b").await.unwrap().unwrap();
        load_context(&store, &cache, "a").await.unwrap().unwrap();
        load_context(&store, &cache, "c").await.unwrap().unwrap();
        assert_eq!(cache.len(), 2);
        // Parsed records are kept with their context, and go with it.
        let record = Arc::new(AppClusterRecord::default());
        cache.keep_records(
            "a",
            Arc::new([("k".to_owned(), (7, record.clone()))].into()),
        );
        cache.keep_records("gone", Arc::new([("k".to_owned(), (7, record))].into()));
        assert_eq!(cache.take_records("a")["k"].0, 7);
        assert!(cache.take_records("a").is_empty(), "taken");
        assert!(cache.take_records("gone").is_empty(), "not cached");
        let entries = cache.lock();
        let kept: Vec<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
        assert_eq!(kept, ["a", "c"]);
    }
}
