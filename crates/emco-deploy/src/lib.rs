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

pub mod controllers;
pub mod engine;
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

pub use controllers::{ActionController, ControllerSet, PlacementController};
pub use engine::{Engine, RunReport, RunTally, SyncEngine};

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
    repo: Arc<Repository>,
    renderer: Arc<dyn Renderer>,
    engine: Arc<dyn Engine>,
    controllers: ControllerSet,
    limits: ArchiveLimits,
}

impl Deployer {
    pub fn new(
        repo: Arc<Repository>,
        renderer: Arc<dyn Renderer>,
        engine: Arc<dyn Engine>,
    ) -> Self {
        Self {
            repo,
            renderer,
            engine,
            controllers: ControllerSet::default(),
            limits: ArchiveLimits::default(),
        }
    }

    pub fn with_controllers(mut self, controllers: ControllerSet) -> Self {
        self.controllers = controllers;
        self
    }

    pub fn with_archive_limits(mut self, limits: ArchiveLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
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
                controllers::Resolved::Action(controller) => actions.push((named, controller)),
                controllers::Resolved::Missing => {
                    tracing::warn!(controller = %named.name, group = %inputs.key,
                        "the group's intents name a controller this hub does not run; skipped");
                    skipped.push(named.name.clone());
                }
            }
        }
        let chosen = placement::choose_all(&resolved, &BTreeMap::new())
            .map_err(|e| DeployError::BadRequest(format!("placement: {e}")))?;

        // Action controllers run here (async), their results feed the builder's modifier.
        let mut customised: HashMap<(String, ClusterId), Vec<ContextObject>> = HashMap::new();
        for (app, objects) in inputs.apps.iter().zip(&rendered) {
            let Some(clusters) = chosen.get(&app.name) else {
                continue;
            };
            for cluster in clusters {
                let id = ClusterId::from(cluster);
                let mut current: Option<Vec<ContextObject>> = None;
                for (named, controller) in &actions {
                    let base = current.as_deref().unwrap_or(objects);
                    if let Some(list) = controller
                        .customise(inputs, &named.intent, &app.name, &id, base)
                        .await
                        .map_err(|e| {
                            DeployError::BadRequest(format!(
                                "action controller {:?} for app {:?} on {id}: {e}",
                                named.name, app.name
                            ))
                        })?
                    {
                        current = Some(list);
                    }
                }
                if let Some(list) = current {
                    customised.insert((app.name.clone(), id), list);
                }
            }
        }
        let modifier = |app: &str, cluster: &ClusterId, _: &[ContextObject]| {
            Ok(customised.get(&(app.to_owned(), cluster.clone())).cloned())
        };

        let mut builder = AppContextBuilder::new(inputs.dig.clone(), revision, &now());
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
        let (status, rev) = self.load_state(key).await?;
        let mut next = status.clone();
        next.apply(Action::Terminate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let context = status
            .current_context()
            .ok_or_else(|| DeployError::Conflict(format!("{key} has no deployed context")))?
            .to_owned();
        let doc = serde_json::to_value(&next).map_err(|e| DeployError::Internal(e.to_string()))?;
        let ops = self.engine.terminate_ops(&context);
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
        let (status, rev) = self.load_state(key).await?;
        let mut next = status.clone();
        next.apply(Action::Stop, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let context = status.current_context().map(str::to_owned);
        match self.run_status(context.as_deref()).await? {
            Some(AppContextStatus::Instantiating | AppContextStatus::Terminating) => {}
            other => {
                return Err(DeployError::Conflict(format!(
                    "{key} is not instantiating or terminating ({})",
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

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    emco_core::lifecycle::format_rfc3339(secs)
}
