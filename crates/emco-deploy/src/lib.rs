//! The orchestrator's deploy path, between the REST API and the resource synchronizer.
//!
//! Instantiate: [`gather`] reads the group and everything it names → every app's chart is
//! rendered once with the real Helm ([`emco_helm::Renderer`]) → [`objects`] turns each release
//! into phased objects → placement resolves the intents within the logical cloud, placement
//! controllers narrow it, `choose` picks clusters → action controllers customise per cluster →
//! the AppContext is built and stored (`meta` last) → ONE transaction moves the group's state and
//! records the synchronizer's work order → the synchronizer is kicked. A failure before that
//! transaction leaves the group as it was and nothing is applied; after it, a crash is recovered
//! by the synchronizer's `resume_all` at the next start.
//!
//! Terminate and stop follow the same rule (state change and work order in one transaction).
//! Status joins the group's lifecycle, the stored context and the synchronizer's report into
//! upstream's status-query format ([`emco_core::status`]).

pub mod clm;
pub mod cloud;
pub mod controllers;
pub mod dtc;
pub mod engine;
pub mod external;
pub mod gac;
pub mod gather;
pub mod objects;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use emco_core::appcontext::{
    self, AppContext, AppContextBuilder, AppInput, ClusterId, ContextObject,
};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{Action, DigState, DigStatus};
use emco_core::placement::{self, ClusterRef};
use emco_core::status::AppContextStatus;
use emco_helm::archive::ArchiveLimits;
use emco_helm::{RenderRequest, Renderer, override_values_for_app};
use emco_store::repository::{RepoError, Repository};
use emco_store::{Op, Txn};
use serde_json::Value;

pub use controllers::{ActionController, ControllerSet, Customiser, PlacementController};
pub use engine::{Engine, RunReport, RunTally, SyncEngine};

/// How an action controller named by a group's intents is run.
enum ActionStep<'a> {
    /// Implemented in the hub.
    Local(&'a dyn ActionController),
    /// Called over gRPC at this endpoint.
    External(&'a str),
}

/// Largest number of writes per transaction when storing a context (etcd allows 128).
const OPS_PER_TXN: usize = 64;

/// Why a deploy action was refused or failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] emco_store::Error),
}

/// What an accepted instantiate did (for logs and the API's answer).
#[derive(Debug, Clone)]
pub struct Instantiated {
    pub context_id: String,
    pub revision: u64,
    /// Controllers the group's intents name that this hub has no implementation of.
    pub skipped_controllers: Vec<String>,
}

/// The deploy service of one hub.
pub struct Deployer {
    /// One lock per group: lifecycle calls on a group are serialised in this hub (across hubs
    /// the state's revision check refuses the later one with 409).
    group_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    repo: Arc<Repository>,
    renderer: Arc<dyn Renderer>,
    engine: Arc<dyn Engine>,
    controllers: ControllerSet,
    limits: ArchiveLimits,
    /// Seals secrets before they are stored (a logical cloud user's key).
    sealer: Option<Arc<emco_store::seal::Sealer>>,
}

impl Deployer {
    pub fn new(
        repo: Arc<Repository>,
        renderer: Arc<dyn Renderer>,
        engine: Arc<dyn Engine>,
    ) -> Self {
        Self {
            group_locks: std::sync::Mutex::new(HashMap::new()),
            repo,
            renderer,
            engine,
            controllers: ControllerSet::default(),
            limits: ArchiveLimits::default(),
            sealer: None,
        }
    }

    pub fn with_controllers(mut self, controllers: ControllerSet) -> Self {
        self.controllers = controllers;
        self
    }

    /// Seals secrets with the hub's secret key (without one, standard and privileged logical
    /// clouds cannot be instantiated).
    pub fn with_sealer(mut self, sealer: Arc<emco_store::seal::Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    pub fn with_archive_limits(mut self, limits: ArchiveLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Holds the lifecycle lock of the group `key` (see `group_locks`).
    async fn lock_group(&self, key: &ResourceKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .group_locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    async fn load_state(&self, key: &ResourceKey) -> Result<(DigStatus, u64), DeployError> {
        self.repo.get(key).await?;
        match self.repo.get_state(key).await? {
            Some((value, rev)) => Ok((
                serde_json::from_value(value).map_err(|e| {
                    DeployError::Internal(format!("stored state of {key} is corrupt: {e}"))
                })?,
                rev,
            )),
            None => Ok((DigStatus::default(), 0)),
        }
    }

    async fn run_status(
        &self,
        context: Option<&str>,
    ) -> Result<Option<AppContextStatus>, DeployError> {
        match context {
            None => Ok(None),
            Some(id) => self.engine.run_status(id).await,
        }
    }

    /// `POST .../instantiate`.
    pub async fn instantiate(&self, key: &ResourceKey) -> Result<Instantiated, DeployError> {
        let _serialised = self.lock_group(key).await;
        let (status, rev) = self.load_state(key).await?;
        let mut next = status.clone();
        next.apply(Action::Instantiate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        if let Some(AppContextStatus::Terminating) =
            self.run_status(status.current_context()).await?
        {
            return Err(DeployError::Conflict(format!(
                "{key} is still terminating; wait for it (or stop it) before instantiating"
            )));
        }

        let inputs = gather::gather(&self.repo, key, &self.limits).await?;
        let rendered = self.render_all(&inputs).await?;
        let revision = status.revision + 1;
        let (context, skipped) = self.build_context(&inputs, rendered, revision).await?;
        self.store_context(&context).await?;

        next.set_instance(&context.id, revision);
        let doc = serde_json::to_value(&next).map_err(|e| DeployError::Internal(e.to_string()))?;
        let ops = self.engine.instantiate_ops(&context.id);
        if !self.repo.put_state_with(key, &doc, rev, ops).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being instantiated; try again"
            )));
        }
        self.engine.kick(&context.id);
        tracing::info!(group = %key, context = %context.id, revision, "instantiated");
        Ok(Instantiated {
            context_id: context.id,
            revision,
            skipped_controllers: skipped,
        })
    }

    /// Renders every app once (concurrently: each is a `helm template` process).
    async fn render_all(
        &self,
        inputs: &gather::GroupInputs,
    ) -> Result<Vec<Vec<ContextObject>>, DeployError> {
        let overrides = inputs
            .doc
            .pointer("/spec/overrideValues")
            .cloned()
            .unwrap_or(Value::Null);
        let renders = inputs.apps.iter().map(|app| {
            let values = override_values_for_app(&overrides, &app.name);
            async move {
                let request = RenderRequest {
                    chart: &app.chart,
                    profile: app.profile.as_ref(),
                    release_name: &inputs.release_name,
                    namespace: &inputs.namespace,
                    override_values: &values,
                };
                let release = self.renderer.render_release(&request).await.map_err(|e| {
                    DeployError::BadRequest(format!(
                        "app {:?}: the chart does not render: {e}",
                        app.name
                    ))
                })?;
                Ok::<_, DeployError>(objects::from_release(&release))
            }
        });
        futures::future::try_join_all(renders).await
    }

    async fn build_context(
        &self,
        inputs: &gather::GroupInputs,
        rendered: Vec<Vec<ContextObject>>,
        revision: u64,
    ) -> Result<(AppContext, Vec<String>), DeployError> {
        let app_names: Vec<&str> = inputs.apps.iter().map(|a| a.name.as_str()).collect();
        let mut resolved = placement::resolve(
            &app_names,
            &inputs.intents,
            &inputs.inventory,
            Some(&inputs.cloud_clusters),
        )
        .map_err(|e| DeployError::BadRequest(format!("placement: {e}")))?;

        let mut skipped = Vec::new();
        let mut actions = Vec::new();
        for named in &inputs.controllers {
            if controllers::is_builtin(named) {
                continue;
            }
            match self.controllers.resolve(named) {
                controllers::Resolved::Placement(controller) => controller
                    .filter(inputs, &named.intent, &mut resolved)
                    .await
                    .map_err(|e| {
                        DeployError::BadRequest(format!(
                            "placement controller {:?}: {e}",
                            named.name
                        ))
                    })?,
                controllers::Resolved::Action(controller) => {
                    actions.push((named, ActionStep::Local(controller)));
                }
                controllers::Resolved::Missing => match (&named.endpoint, named.kind.as_str()) {
                    (Some(endpoint), "placement") => external::GrpcPlacement {
                        repo: &self.repo,
                        name: &named.name,
                        endpoint,
                    }
                    .filter(inputs, &named.intent, revision, &mut resolved)
                    .await
                    .map_err(|e| {
                        DeployError::BadRequest(format!(
                            "placement controller {:?}: {e}",
                            named.name
                        ))
                    })?,
                    (Some(endpoint), "action") => {
                        actions.push((named, ActionStep::External(endpoint)));
                    }
                    _ => {
                        tracing::warn!(controller = %named.name, group = %inputs.key,
                            "the group's intents name a controller this hub does not run; skipped");
                        skipped.push(named.name.clone());
                    }
                },
            }
        }
        let chosen = placement::choose_all(&resolved, &BTreeMap::new())
            .map_err(|e| DeployError::BadRequest(format!("placement: {e}")))?;

        // Action controllers in priority order, each seeing what the earlier ones changed: an
        // in-hub one reads its intent once, then customises per app and cluster; an external one
        // gets every app-cluster in one call. The results feed the builder's modifier.
        let mut customised: HashMap<(String, ClusterId), Vec<ContextObject>> = HashMap::new();
        let mut discoveries = Vec::new();
        let pairs: Vec<(usize, ClusterId)> = inputs
            .apps
            .iter()
            .enumerate()
            .flat_map(|(index, app)| {
                chosen
                    .get(&app.name)
                    .into_iter()
                    .flatten()
                    .map(move |cluster| (index, ClusterId::from(cluster)))
            })
            .collect();
        for (named, step) in &actions {
            match step {
                ActionStep::Local(controller) => {
                    let customiser =
                        controller
                            .prepare(inputs, &named.intent)
                            .await
                            .map_err(|e| {
                                DeployError::BadRequest(format!(
                                    "action controller {:?} (intent {:?}): {e}",
                                    named.name, named.intent
                                ))
                            })?;
                    discoveries.extend(customiser.discoveries());
                    for (index, id) in &pairs {
                        let app = &inputs.apps[*index].name;
                        let key = (app.clone(), id.clone());
                        let base = customised
                            .get(&key)
                            .map_or(rendered[*index].as_slice(), Vec::as_slice);
                        if let Some(list) = customiser.customise(app, id, base).map_err(|e| {
                            DeployError::BadRequest(format!(
                                "action controller {:?} for app {app:?} on {id}: {e}",
                                named.name
                            ))
                        })? {
                            customised.insert(key, list);
                        }
                    }
                }
                ActionStep::External(endpoint) => {
                    let batch: Vec<external::AppClusterInput<'_>> = pairs
                        .iter()
                        .map(|(index, id)| {
                            let app = inputs.apps[*index].name.as_str();
                            external::AppClusterInput {
                                app,
                                cluster: id,
                                objects: customised
                                    .get(&(app.to_owned(), id.clone()))
                                    .map_or(rendered[*index].as_slice(), Vec::as_slice),
                            }
                        })
                        .collect();
                    let changed = external::GrpcAction {
                        name: &named.name,
                        endpoint,
                    }
                    .customise(inputs, &named.intent, revision, &batch)
                    .await
                    .map_err(|e| {
                        DeployError::BadRequest(format!("action controller {:?}: {e}", named.name))
                    })?;
                    drop(batch);
                    for (app, cluster, objects) in changed {
                        customised.insert((app, cluster), objects);
                    }
                }
            }
        }
        let modifier = |app: &str, cluster: &ClusterId, _: &[ContextObject]| {
            Ok(customised.get(&(app.to_owned(), cluster.clone())).cloned())
        };

        let mut builder = AppContextBuilder::new(inputs.dig.clone(), revision, &now())
            .namespace(&inputs.namespace);
        if let Some(scope) = &inputs.cloud_scope {
            builder = builder.cloud(scope.clone());
        }
        for (app, objects) in inputs.apps.iter().zip(rendered) {
            let empty = BTreeSet::new();
            let clusters: &BTreeSet<ClusterRef> = chosen.get(&app.name).unwrap_or(&empty);
            let placement = resolved.get(&app.name);
            let input = match placement {
                Some(placement) => AppInput::from_placement(placement, clusters, objects),
                None => AppInput::new(&app.name, clusters, objects),
            };
            builder = builder.app(input.with_dependencies(app.dependencies.clone()));
        }
        for discovery in discoveries {
            builder = builder.discovery(discovery);
        }
        if !customised.is_empty() {
            builder = builder.modifier(&modifier);
        }
        let context = builder
            .build()
            .map_err(|e| DeployError::BadRequest(format!("cannot build the app context: {e}")))?;
        Ok((context, skipped))
    }

    /// Writes the context in bounded transactions, `meta` last (the commit marker).
    async fn store_context(&self, context: &AppContext) -> Result<(), DeployError> {
        let mut pairs = appcontext::encode(context)
            .map_err(|e| DeployError::BadRequest(format!("cannot store the app context: {e}")))?;
        let meta = pairs
            .pop()
            .ok_or_else(|| DeployError::Internal("an encoded context has no meta".into()))?;
        let store = self.repo.store();
        for chunk in pairs.chunks(OPS_PER_TXN) {
            let ops = chunk
                .iter()
                .map(|(key, value)| Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            store
                .txn(Txn {
                    compares: Vec::new(),
                    ops,
                })
                .await?;
        }
        store.put(&meta.0, meta.1).await?;
        Ok(())
    }

    /// Loads a stored context.
    pub async fn load_context(&self, id: &str) -> Result<Option<AppContext>, DeployError> {
        let entries = self.repo.store().list(&appcontext::key_prefix(id)).await?;
        if entries.is_empty() {
            return Ok(None);
        }
        appcontext::load(id, entries.into_iter().map(|e| (e.key, e.value)))
            .map(Some)
            .map_err(|e| DeployError::Internal(e.to_string()))
    }

    /// `POST .../terminate`.
    pub async fn terminate(&self, key: &ResourceKey) -> Result<(), DeployError> {
        let _serialised = self.lock_group(key).await;
        let (status, rev) = self.load_state(key).await?;
        let mut next = status.clone();
        next.apply(Action::Terminate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let context = status
            .current_context()
            .ok_or_else(|| DeployError::Conflict(format!("{key} has no deployed context")))?
            .to_owned();
        if let Some(AppContextStatus::Updating) = self.run_status(Some(&context)).await? {
            return Err(DeployError::Conflict(format!(
                "{key} is being updated; wait for the update (or stop it) before terminating"
            )));
        }
        let doc = serde_json::to_value(&next).map_err(|e| DeployError::Internal(e.to_string()))?;
        let ops = self
            .engine
            .terminate_ops(&context, label_context(&status, &context));
        if !self.repo.put_state_with(key, &doc, rev, ops).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being terminated; try again"
            )));
        }
        self.engine.kick(&context);
        tracing::info!(group = %key, context = %context, "terminating");
        Ok(())
    }

    /// `POST .../stop`: ends the retries of a running instantiate or terminate.
    pub async fn stop(&self, key: &ResourceKey) -> Result<(), DeployError> {
        let _serialised = self.lock_group(key).await;
        let (status, rev) = self.load_state(key).await?;
        let mut next = status.clone();
        next.apply(Action::Stop, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let context = status.current_context().map(str::to_owned);
        match self.run_status(context.as_deref()).await? {
            Some(
                AppContextStatus::Instantiating
                | AppContextStatus::Updating
                | AppContextStatus::Terminating,
            ) => {}
            other => {
                return Err(DeployError::Conflict(format!(
                    "{key} is not instantiating, updating or terminating ({})",
                    other.map_or("no run".to_owned(), |s| format!("{s:?}"))
                )));
            }
        }
        let doc = serde_json::to_value(&next).map_err(|e| DeployError::Internal(e.to_string()))?;
        if !self.repo.put_state_with(key, &doc, rev, Vec::new()).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being stopped; try again"
            )));
        }
        if let Some(context) = context {
            self.engine.stop(&context).await?;
        }
        Ok(())
    }

    /// The deployed context of a group an update may start from: refused while a run of it
    /// is still going (an update never interleaves with another operation).
    async fn update_source(
        &self,
        key: &ResourceKey,
        status: &DigStatus,
        action: Action,
    ) -> Result<String, DeployError> {
        status
            .next_state(action)
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let current = status
            .current_context()
            .ok_or_else(|| DeployError::Conflict(format!("{key} has no deployed context")))?
            .to_owned();
        match self.run_status(Some(&current)).await? {
            Some(
                running @ (AppContextStatus::Instantiating
                | AppContextStatus::Updating
                | AppContextStatus::Terminating),
            ) => Err(DeployError::Conflict(format!(
                "{key} is still {}; wait for it (or stop it) first",
                format!("{running:?}").to_lowercase()
            ))),
            _ => Ok(current),
        }
    }

    /// Builds and stores the context of the group `key` as it is defined now.
    async fn build_revision(
        &self,
        key: &ResourceKey,
        revision: u64,
    ) -> Result<(AppContext, Vec<String>), DeployError> {
        let inputs = gather::gather(&self.repo, key, &self.limits).await?;
        let rendered = self.render_all(&inputs).await?;
        let (context, skipped) = self.build_context(&inputs, rendered, revision).await?;
        self.store_context(&context).await?;
        Ok((context, skipped))
    }

    /// `POST .../update`: a new revision from the group as it is defined now (charts, apps,
    /// profiles, overrides, placement, action intents); the synchronizer applies only the
    /// difference to the deployed revision. Returns the new revision.
    pub async fn update(&self, key: &ResourceKey) -> Result<Instantiated, DeployError> {
        let _serialised = self.lock_group(key).await;
        let (status, rev) = self.load_state(key).await?;
        let current = self.update_source(key, &status, Action::Update).await?;
        let (context, skipped) = self.build_revision(key, status.revision + 1).await?;
        let mut next = status.clone();
        let revision = next
            .update_to(Action::Update, &context.id, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let ops = self.engine.update_ops(
            &current,
            &context.id,
            label_context(&status, &current),
            false,
        );
        self.commit_update(key, &next, rev, ops, &context.id, &current)
            .await?;
        tracing::info!(group = %key, from = %current, to = %context.id, revision, "updating");
        Ok(Instantiated {
            context_id: context.id,
            revision,
            skipped_controllers: skipped,
        })
    }

    /// `POST .../rollback`: back to the objects of an earlier `revision` (its context is
    /// deployed again as the next revision, as upstream).
    pub async fn rollback(
        &self,
        key: &ResourceKey,
        revision: u64,
    ) -> Result<Instantiated, DeployError> {
        let _serialised = self.lock_group(key).await;
        let (status, rev) = self.load_state(key).await?;
        let current = self.update_source(key, &status, Action::Rollback).await?;
        let target = status
            .context_of_revision(revision)
            .ok_or_else(|| {
                DeployError::BadRequest(format!(
                    "spec.revision: {key} has no revision {revision} (its revisions are 1 to {})",
                    status.revision
                ))
            })?
            .to_owned();
        if target == current {
            return Err(DeployError::Conflict(format!(
                "{key} already runs the objects of revision {revision}"
            )));
        }
        if self.load_context(&target).await?.is_none() {
            return Err(DeployError::Internal(format!(
                "the app context {target} of revision {revision} is no longer stored"
            )));
        }
        let mut next = status.clone();
        let new_revision = next
            .update_to(Action::Rollback, &target, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let ops = self
            .engine
            .update_ops(&current, &target, label_context(&status, &current), true);
        self.commit_update(key, &next, rev, ops, &target, &current)
            .await?;
        tracing::info!(group = %key, from = %current, to = %target, revision, new_revision, "rolling back");
        Ok(Instantiated {
            context_id: target,
            revision: new_revision,
            skipped_controllers: Vec::new(),
        })
    }

    async fn commit_update(
        &self,
        key: &ResourceKey,
        next: &DigStatus,
        rev: u64,
        ops: Vec<Op>,
        to: &str,
        from: &str,
    ) -> Result<(), DeployError> {
        let doc = serde_json::to_value(next).map_err(|e| DeployError::Internal(e.to_string()))?;
        if !self.repo.put_state_with(key, &doc, rev, ops).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being updated; try again"
            )));
        }
        self.engine.kick(to);
        // Ends the source's readiness tracking (its operation is gone).
        self.engine.kick(from);
        Ok(())
    }

    /// `POST .../migrate`: moves the deployment of the group `key` to the approved group
    /// `target_group` of version `target_version` of the same composite app. The target's
    /// first revision is built from its own definition and reconciled against what the source
    /// deployed (objects keep the source's `emco/deployment-id`, so unchanged ones are not sent
    /// again); the source ends Updated, the target Instantiated.
    pub async fn migrate(
        &self,
        key: &ResourceKey,
        target_version: &str,
        target_group: &str,
    ) -> Result<Instantiated, DeployError> {
        let target_key = ResourceKey::new(
            "deploymentIntentGroup",
            key.elements
                .iter()
                .map(|(name, value)| {
                    let value = match name.as_str() {
                        "compositeAppVersion" => target_version,
                        "deploymentIntentGroup" => target_group,
                        _ => value,
                    };
                    (name.clone(), value.to_owned())
                })
                .collect(),
        );
        if target_key == *key {
            return Err(DeployError::BadRequest(
                "spec.targetDeploymentIntentGroup: a group cannot be migrated to itself".into(),
            ));
        }
        // Both groups' locks, in one order whoever asks.
        let (_first, _second) = if key.to_string() < target_key.to_string() {
            let first = self.lock_group(key).await;
            (first, self.lock_group(&target_key).await)
        } else {
            let first = self.lock_group(&target_key).await;
            (first, self.lock_group(key).await)
        };
        let (status, rev) = self.load_state(key).await?;
        let current = self.update_source(key, &status, Action::Migrate).await?;
        let (target_status, target_rev) = match self.load_state(&target_key).await {
            Err(DeployError::Repo(RepoError::NotFound(_))) => {
                return Err(DeployError::NotFound(format!(
                    "the migrate's target deployment intent group {target_key} does not exist"
                )));
            }
            other => other?,
        };
        let mut target_next = target_status.clone();
        let status_context = label_context(&status, &current).to_owned();
        // Checked before building: the target must be approved.
        target_next
            .clone()
            .migrate_in("", &status_context, now())
            .map_err(|e| DeployError::Conflict(format!("{target_key}: {e}")))?;
        let (context, skipped) = self
            .build_revision(&target_key, target_status.revision + 1)
            .await?;
        let revision = target_next
            .migrate_in(&context.id, &status_context, now())
            .map_err(|e| DeployError::Conflict(format!("{target_key}: {e}")))?;
        let mut next = status.clone();
        next.apply(Action::Migrate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let ops = self
            .engine
            .update_ops(&current, &context.id, &status_context, false);
        let doc = serde_json::to_value(&next).map_err(|e| DeployError::Internal(e.to_string()))?;
        let target_doc =
            serde_json::to_value(&target_next).map_err(|e| DeployError::Internal(e.to_string()))?;
        if !self
            .repo
            .put_states_with(
                &[(key, &doc, rev), (&target_key, &target_doc, target_rev)],
                ops,
            )
            .await?
        {
            return Err(DeployError::Conflict(format!(
                "{key} or {target_key} changed while migrating; try again"
            )));
        }
        self.engine.kick(&context.id);
        self.engine.kick(&current);
        tracing::info!(group = %key, target = %target_key, from = %current, to = %context.id, "migrating");
        Ok(Instantiated {
            context_id: context.id,
            revision,
            skipped_controllers: skipped,
        })
    }

    /// Refuses deleting a group whose terminate is still running (upstream: "has not completed
    /// terminating"); instantiated groups are refused by the repository's delete guard.
    pub async fn check_deletable(&self, key: &ResourceKey) -> Result<(), DeployError> {
        let (status, _) = self.load_state(key).await?;
        if matches!(
            status.state,
            DigState::Terminated | DigState::TerminateStopped
        ) && let Some(AppContextStatus::Terminating) =
            self.run_status(status.current_context()).await?
        {
            return Err(DeployError::Conflict(format!(
                "{key} has not completed terminating; wait for it or stop it"
            )));
        }
        Ok(())
    }

    /// After a group is deleted: drop its contexts and run records (best effort: leftovers
    /// are unreferenced and harmless).
    pub async fn forget(&self, status: &DigStatus) {
        let contexts: BTreeSet<&str> = status
            .actions
            .iter()
            .map(|a| a.instance.as_str())
            .filter(|i| !i.is_empty())
            .collect();
        for context in contexts {
            let mut ops = vec![Op::DeletePrefix {
                prefix: appcontext::key_prefix(context),
            }];
            ops.extend(self.engine.forget_ops(context));
            if let Err(e) = self
                .repo
                .store()
                .txn(Txn {
                    compares: Vec::new(),
                    ops,
                })
                .await
            {
                tracing::warn!(context, error = %e, "could not remove a deleted group's context");
            }
        }
    }

    /// The group's state document (what status needs first, and what `forget` takes).
    pub async fn state(&self, key: &ResourceKey) -> Result<DigStatus, DeployError> {
        Ok(self.load_state(key).await?.0)
    }

    /// `GET .../status?...`: upstream's status-query format.
    pub async fn status(
        &self,
        key: &ResourceKey,
        params: &HashMap<String, Vec<String>>,
    ) -> Result<Value, DeployError> {
        status::status(self, key, params).await
    }
}

/// The context whose id labels a group's objects: its status context (kept from the first
/// instantiate over updates), else `current`.
fn label_context<'a>(status: &'a DigStatus, current: &'a str) -> &'a str {
    if status.status_context_id.is_empty() {
        current
    } else {
        &status.status_context_id
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    emco_core::lifecycle::format_rfc3339(secs)
}
