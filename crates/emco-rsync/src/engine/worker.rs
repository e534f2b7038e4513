//! One cluster's worker within a run: everything done to one cluster is done here, one step at
//! a time (apps as their dependencies release them; readiness polls in between), while other
//! clusters' workers run in parallel under the global bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use emco_core::appcontext::ClusterId;
use emco_core::status::{DeployedStatus, ReadyStatus};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use super::link::{CallError, Link, stopped};
use super::prepare::{DEPLOYMENT_ID_LABEL, PreparedObject, PreparedVariant};
use super::records::{self, AppClusterRecord, AppClusterState, HookEvent, HookRun, ObjectRecord};
use super::run::{Job, RunShared, Skip};
use crate::cluster::Deleted;
use crate::readiness::{Readiness, readiness};

/// Why an app's work on the cluster ended early.
#[derive(Debug)]
enum Halt {
    Stopped,
    /// The app fails on this cluster (a hook failed, the cluster is unusable).
    Failed(String),
    /// The run was replaced; stop at once without writing.
    Superseded,
}

impl From<CallError> for Halt {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Stopped => Halt::Stopped,
            CallError::Unusable(reason) | CallError::Refused(reason) => Halt::Failed(reason),
        }
    }
}

/// Readiness tracking of an applied app.
struct Tracking {
    due: Instant,
    interval: Duration,
}

/// What a run does with one app on one cluster.
#[derive(Debug, Clone)]
pub enum SlotMode {
    /// Install every object (instantiate, or an app an update brings to the cluster); a
    /// terminate uninstalls such slots.
    Install,
    /// An update of an app that stays on the cluster: apply the objects not applied yet (new
    /// and changed ones start pending, unchanged ones keep their applied record and are not
    /// sent), then delete `retired` (objects of the old variant the new one lacks); with
    /// `hooks`, the upgrade (or rollback) hooks run around it. Without changes nothing is sent.
    Upgrade {
        hooks: bool,
        retired: Option<(Arc<PreparedVariant>, Vec<usize>)>,
    },
    /// An update took the app off the cluster: uninstall it (the slot's variant is the old
    /// one), as a terminate would.
    Remove,
}

/// One app on this cluster.
pub struct Slot {
    pub app: usize,
    pub variant: Arc<PreparedVariant>,
    pub key: String,
    pub record: AppClusterRecord,
    pub mode: SlotMode,
    tracking: Option<Tracking>,
}

impl Slot {
    pub fn new(
        app: usize,
        variant: Arc<PreparedVariant>,
        key: String,
        record: AppClusterRecord,
    ) -> Self {
        Self {
            app,
            variant,
            key,
            record,
            mode: SlotMode::Install,
            tracking: None,
        }
    }

    pub fn with_mode(mut self, mode: SlotMode) -> Self {
        self.mode = mode;
        self
    }

    pub fn is_removal(&self) -> bool {
        matches!(self.mode, SlotMode::Remove)
    }

    /// Every applied object that counts for readiness is ready.
    pub fn all_ready(&self) -> bool {
        self.record
            .objects
            .iter()
            .enumerate()
            .filter(|(index, object)| {
                self.variant.tracks_readiness(*index) && object.deployed == DeployedStatus::Applied
            })
            .all(|(_, object)| object.ready == Some(ReadyStatus::Ready))
    }
}

pub struct Worker {
    shared: Arc<RunShared>,
    link: Link,
    slots: Vec<Slot>,
    /// Records of finished app-clusters being written: the slot counts as finished (and its
    /// dependents may go) only once its write is durable, but the worker goes on meanwhile.
    pending: Vec<(usize, oneshot::Receiver<Result<(), super::SyncError>>)>,
}

fn ready_record(readiness: Readiness) -> (Option<ReadyStatus>, Option<String>) {
    match readiness {
        Readiness::Ready => (Some(ReadyStatus::Ready), None),
        Readiness::NotReady(reason) | Readiness::Failed(reason) => {
            (Some(ReadyStatus::NotReady), Some(reason))
        }
    }
}

impl Worker {
    pub fn new(shared: Arc<RunShared>, link: Link, slots: Vec<Slot>) -> Self {
        Self {
            shared,
            link,
            slots,
            pending: Vec::new(),
        }
    }

    /// Finishes the slots whose records are durable; with `wait`, waits for all of them.
    async fn settle(&mut self, wait: bool) -> Result<(), Halt> {
        let mut index = 0;
        while index < self.pending.len() {
            let outcome = if wait {
                Some((&mut self.pending[index].1).await)
            } else {
                match self.pending[index].1.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    Ok(result) => Some(Ok(result)),
                    Err(oneshot::error::TryRecvError::Closed) => {
                        Some(Ok(Err(super::SyncError::Superseded)))
                    }
                }
            };
            match outcome {
                None => index += 1,
                Some(Ok(Ok(()))) => {
                    let (slot, _) = self.pending.remove(index);
                    self.finish(slot);
                    let record = &self.slots[slot].record;
                    if record.state == AppClusterState::Applied && record.ready_ms.is_none() {
                        self.start_tracking(slot);
                    }
                }
                Some(_) => return Err(Halt::Superseded),
            }
        }
        Ok(())
    }

    fn slot_of(&self, app: usize) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.app == app && !slot.is_removal())
    }

    /// Instantiate or update: first uninstalls the apps an update took off the cluster (in
    /// `removals` order), then takes one job per app from the gates, then tracks readiness
    /// until every applied object is ready (or `stop`).
    pub async fn deploy(mut self, removals: Vec<usize>, mut jobs: mpsc::UnboundedReceiver<Job>) {
        for index in removals {
            if !self.slots[index].record.state.is_terminal() && !self.remove(index).await {
                return;
            }
        }
        // Apps finished by an earlier run of this operation only need readiness tracking.
        for index in 0..self.slots.len() {
            if self.slots[index].record.state == AppClusterState::Applied
                && !self.slots[index].all_ready()
            {
                self.start_tracking(index);
            }
        }
        let mut expected = self.slots.iter().filter(|slot| !slot.is_removal()).count();
        let mut stop = self.link.stop_receiver();
        loop {
            if self.settle(false).await.is_err() {
                return;
            }
            let is_stopped = self.link.stopped();
            let due = if is_stopped {
                None
            } else {
                self.slots
                    .iter()
                    .filter_map(|slot| slot.tracking.as_ref().map(|tracking| tracking.due))
                    .min()
            };
            if expected == 0 && due.is_none() && self.pending.is_empty() {
                break;
            }
            // Work that is ready now keeps the slot and the client: a cluster's queued apps go
            // one after the other instead of queueing again behind every other cluster.
            let ready_now = if expected > 0 {
                match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                None
            };
            let result = if let Some(job) = ready_now {
                expected -= 1;
                self.handle(job).await
            } else if due.is_some_and(|due| due <= Instant::now()) {
                self.poll_due().await
            } else if !self.pending.is_empty() {
                // Nothing else to do: give back the slot while the records commit.
                self.link.release();
                self.settle(true).await
            } else {
                // Idle: give back the slot and the client while waiting.
                self.link.release();
                let far = Instant::now() + Duration::from_secs(3600);
                tokio::select! {
                    job = jobs.recv(), if expected > 0 => {
                        let Some(job) = job else { break };
                        expected -= 1;
                        self.handle(job).await
                    }
                    () = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => {
                        self.poll_due().await
                    }
                    () = stopped(&mut stop), if !is_stopped => Ok(()),
                }
            };
            if let Err(Halt::Superseded) = result {
                return;
            }
        }
        self.link.release();
    }

    async fn handle(&mut self, job: Job) -> Result<(), Halt> {
        let (app, skip) = match job {
            Job::Apply(app) => (app, None),
            Job::Skip(app, reason) => (app, Some(reason)),
        };
        let Some(index) = self.slot_of(app) else {
            return Ok(());
        };
        if self.slots[index].record.state.is_terminal() {
            return Ok(());
        }
        let outcome = match skip {
            Some(Skip::Stopped) => Err(Halt::Stopped),
            Some(Skip::DependencyFailed(reason)) => Err(Halt::Failed(reason)),
            None => match self.install(index).await {
                // A GitOps cluster's changes go out as one commit per app.
                Ok(()) => self.link.flush().await.map_err(Halt::from),
                Err(halt) => Err(halt),
            },
        };
        let slot = &mut self.slots[index];
        match outcome {
            Ok(()) => {
                let failed = slot
                    .record
                    .objects
                    .iter()
                    .any(|object| object.deployed == DeployedStatus::Failed);
                slot.record.state = if failed {
                    AppClusterState::Failed
                } else {
                    AppClusterState::Applied
                };
                let now = records::now_ms();
                slot.record.applied_ms = Some(now);
                if slot.all_ready() {
                    slot.record.ready_ms = Some(now);
                }
            }
            Err(Halt::Superseded) => return Err(Halt::Superseded),
            Err(Halt::Stopped) => slot.record.state = AppClusterState::Stopped,
            Err(Halt::Failed(reason)) => {
                slot.record.state = AppClusterState::Failed;
                slot.record.error = Some(reason);
            }
        }
        let slot = &mut self.slots[index];
        slot.record.connectivity = self.link.connectivity;
        slot.record.updated_ms = records::now_ms();
        let ack = self.shared.flusher.put_record(
            slot.key.clone(),
            &self.shared.apps[slot.app].name,
            &self.link.cluster,
            &slot.record,
        );
        self.pending.push((index, ack));
        Ok(())
    }

    /// CRDs, pre-install hooks, resources, post-install hooks; for an update's app staying on
    /// the cluster, see [`SlotMode::Upgrade`].
    async fn install(&mut self, index: usize) -> Result<(), Halt> {
        if let SlotMode::Upgrade { hooks, retired } = self.slots[index].mode.clone() {
            return self.upgrade(index, hooks, retired).await;
        }
        let variant = self.slots[index].variant.clone();
        for &object in &variant.crds {
            self.apply_object(index, object).await?;
        }
        for &hook in &variant.pre_install {
            self.run_hook(index, hook, HookEvent::PreInstall).await?;
        }
        for &object in &variant.resources {
            self.apply_object(index, object).await?;
        }
        for &hook in &variant.post_install {
            self.run_hook(index, hook, HookEvent::PostInstall).await?;
        }
        Ok(())
    }

    /// Pre-upgrade (or pre-rollback) hooks, the objects not applied yet, deleting the retired
    /// objects, post-upgrade (or post-rollback) hooks.
    async fn upgrade(
        &mut self,
        index: usize,
        hooks: bool,
        retired: Option<(Arc<PreparedVariant>, Vec<usize>)>,
    ) -> Result<(), Halt> {
        let variant = self.slots[index].variant.clone();
        let (pre, post, pre_event, post_event) = if self.shared.rollback {
            (
                &variant.pre_rollback,
                &variant.post_rollback,
                HookEvent::PreRollback,
                HookEvent::PostRollback,
            )
        } else {
            (
                &variant.pre_upgrade,
                &variant.post_upgrade,
                HookEvent::PreUpgrade,
                HookEvent::PostUpgrade,
            )
        };
        if hooks {
            for &hook in pre {
                self.run_hook(index, hook, pre_event).await?;
            }
        }
        for &object in variant.crds.iter().chain(&variant.resources) {
            if self.slots[index].record.objects[object].deployed != DeployedStatus::Applied {
                self.apply_object(index, object).await?;
            }
        }
        if let Some((old, objects)) = retired {
            let problems = self.delete_retired(&old, &objects).await?;
            if !problems.is_empty() {
                return Err(Halt::Failed(format!(
                    "objects the update removes were not deleted: {}",
                    problems.join("; ")
                )));
            }
        }
        if hooks {
            for &hook in post {
                self.run_hook(index, hook, post_event).await?;
            }
        }
        Ok(())
    }

    /// Deletes objects of an old variant (in that order) and waits until they are gone, up
    /// to the delete timeout; returns what could not be deleted, and why.
    async fn delete_retired(
        &mut self,
        variant: &PreparedVariant,
        objects: &[usize],
    ) -> Result<Vec<String>, Halt> {
        let mut problems = Vec::new();
        let mut deleting = Vec::new();
        for &object in objects {
            let prepared = &variant.objects[object];
            let result = if prepared.is_hook() {
                self.link.delete_if_served(prepared).await
            } else {
                self.delete(prepared).await
            };
            match result {
                Ok(Deleted::Gone | Deleted::NotFound) => {}
                Ok(Deleted::Deleting) => deleting.push(object),
                Err(CallError::Refused(reason)) => {
                    problems.push(format!(
                        "{} (delete refused: {reason})",
                        prepared.describe()
                    ));
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.link.flush().await?;
        let deadline = Instant::now() + self.link.config().delete_timeout;
        let mut interval = self.link.config().ready_poll_initial;
        while !deleting.is_empty() {
            self.link.pause(interval).await?;
            interval = (interval * 2).min(self.link.config().ready_poll_max);
            let mut still = Vec::new();
            for object in deleting {
                match self.get(&variant.objects[object]).await {
                    Ok(None) => {}
                    Ok(Some(_)) | Err(CallError::Refused(_)) => still.push(object),
                    Err(error) => return Err(error.into()),
                }
            }
            deleting = still;
            if !deleting.is_empty() && Instant::now() >= deadline {
                let timeout = self.link.config().delete_timeout;
                for &object in &deleting {
                    problems.push(format!(
                        "{} (still being deleted after {timeout:?})",
                        variant.objects[object].describe()
                    ));
                }
                break;
            }
        }
        Ok(problems)
    }

    /// Applies one object; a refusal marks it Failed and the work goes on.
    async fn apply_object(&mut self, index: usize, object: usize) -> Result<(), Halt> {
        let variant = self.slots[index].variant.clone();
        let prepared = &variant.objects[object];
        let mut result = self.link.apply(&prepared.apply).await;
        let pulls = self.link.pulls();
        // The hub cannot reach a cluster that pulls: its requests are approved there.
        if let (Ok(applied), Some(reason), false) = (&result, &prepared.approve, pulls) {
            let approved = applied.as_ref().is_some_and(|answer| {
                answer
                    .pointer("/status/conditions")
                    .and_then(serde_json::Value::as_array)
                    .is_some_and(|conditions| {
                        conditions.iter().any(|c| {
                            c.get("type").and_then(serde_json::Value::as_str) == Some("Approved")
                        })
                    })
            });
            if !approved {
                let message = format!("Approved by EMCO ({reason})");
                result = match self.link.approve(&prepared.name, reason, &message).await {
                    // Read it again: the answer before the approval is stale.
                    Ok(()) => self
                        .link
                        .get(prepared)
                        .await
                        .map(|found| found.or(applied.clone())),
                    Err(error) => Err(error),
                };
            }
        }
        let record = &mut self.slots[index].record.objects[object];
        match result {
            Ok(applied) => {
                // Without an answer the kind has no status to wait for: it is ready. On a
                // cluster that pulls, nothing is there yet: its agent's reports tell.
                let (ready, message) = if pulls {
                    ready_record(Readiness::NotReady(match prepared.approve {
                        Some(_) => format!(
                            "committed to Git; approve it on the cluster (kubectl certificate \
                             approve {})",
                            prepared.name
                        ),
                        None => "committed to Git; waiting for the cluster's agent".into(),
                    }))
                } else {
                    ready_record(applied.as_ref().map_or(Readiness::Ready, readiness))
                };
                *record = ObjectRecord {
                    deployed: DeployedStatus::Applied,
                    ready,
                    message,
                    action: record.action,
                };
                Ok(())
            }
            Err(CallError::Refused(reason)) => {
                debug!(cluster = %self.link.cluster, object = %prepared.describe(), %reason, "apply refused");
                *record = ObjectRecord {
                    deployed: DeployedStatus::Failed,
                    ready: None,
                    message: Some(reason),
                    action: record.action,
                };
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Runs a hook (unless this operation already completed it): delete an old copy when the
    /// policy says so, apply, wait for Jobs and Pods to finish, record the run durably, then
    /// clean up by policy. `Err(Failed)` when the hook failed.
    async fn run_hook(&mut self, index: usize, hook: usize, event: HookEvent) -> Result<(), Halt> {
        let variant = self.slots[index].variant.clone();
        let prepared = &variant.objects[hook];
        let Some(policy) = prepared.hook else {
            return Ok(());
        };
        if self.slots[index].record.hook_done(event, hook) {
            // The run is recorded before its cleanup: a crash in between leaves the cleanup
            // (deleting again is harmless).
            if policy.delete_on_success
                && self.slots[index].record.objects[hook].deployed == DeployedStatus::Applied
            {
                self.clean_up_hook(index, hook, prepared).await?;
            }
            return Ok(());
        }
        let failed = |reason: String| format!("hook {} failed: {reason}", prepared.describe());
        // Applied by this operation before the hub went down: the copy on the cluster is this
        // operation's own, so it is waited for, not replaced.
        let resumed = self.slots[index].record.hook_applied(event, hook);
        if policy.before_creation && !resumed {
            match self.delete(prepared).await {
                Ok(Deleted::Deleting) => {
                    self.link.flush().await?;
                    let timeout = self.link.config().hook_timeout;
                    if let Some(why) = self.wait_gone(prepared, timeout).await? {
                        return Err(self.fail_hook(index, hook, why));
                    }
                }
                Ok(Deleted::Gone | Deleted::NotFound) => {}
                Err(CallError::Refused(reason)) => {
                    return Err(self.fail_hook(
                        index,
                        hook,
                        format!("deleting its previous copy: {reason}"),
                    ));
                }
                Err(error) => return Err(error.into()),
            }
        }
        let applied = match self.link.apply(&prepared.apply).await {
            Ok(applied) => applied,
            Err(CallError::Refused(reason)) => return Err(self.fail_hook(index, hook, reason)),
            Err(error) => return Err(error.into()),
        };
        self.link.flush().await?;
        // What a pulling cluster answers is what was written: wait for the agent's report.
        let applied = if self.link.pulls() { None } else { applied };
        let record = &mut self.slots[index].record;
        record.objects[hook] = ObjectRecord {
            deployed: DeployedStatus::Applied,
            ready: Some(ReadyStatus::NotReady),
            message: None,
            action: None,
        };
        if !resumed {
            // Durable before the wait: a hook completing while the hub is down must be found
            // by the resumed run, not deleted and run again.
            record.hooks_applied.push(HookRun {
                event,
                index: u32::try_from(hook).unwrap_or(u32::MAX),
            });
            self.write(index).await?;
        }
        let outcome = if prepared.runs_to_completion {
            self.wait_complete(prepared, applied.as_ref()).await?
        } else {
            Ok(())
        };
        let record = &mut self.slots[index].record;
        match &outcome {
            Ok(()) => {
                record.objects[hook].ready = Some(ReadyStatus::Ready);
            }
            Err(reason) => {
                record.objects[hook] = ObjectRecord {
                    deployed: DeployedStatus::Failed,
                    ready: Some(ReadyStatus::NotReady),
                    message: Some(reason.clone()),
                    action: None,
                };
            }
        }
        if let Err(reason) = outcome {
            if policy.delete_on_failure {
                self.clean_up_hook(index, hook, prepared).await?;
            }
            return Err(Halt::Failed(failed(reason)));
        }
        // Durable before the cleanup: once the hook's copy may be gone from the cluster, only
        // the record can tell a resumed run that the hook already ran.
        let record = &mut self.slots[index].record;
        let run = HookRun {
            event,
            index: u32::try_from(hook).unwrap_or(u32::MAX),
        };
        record.hooks_applied.retain(|applied| *applied != run);
        record.hooks_done.push(run);
        self.write(index).await?;
        if policy.delete_on_success {
            self.clean_up_hook(index, hook, prepared).await?;
        }
        Ok(())
    }

    /// Records the hook as failed for `reason` (what the cluster said) and returns the app's
    /// failure.
    fn fail_hook(&mut self, index: usize, hook: usize, reason: String) -> Halt {
        let slot = &mut self.slots[index];
        let describe = slot.variant.objects[hook].describe();
        slot.record.objects[hook] = ObjectRecord {
            deployed: DeployedStatus::Failed,
            ready: None,
            message: Some(reason.clone()),
            action: None,
        };
        Halt::Failed(format!("hook {describe} failed: {reason}"))
    }

    /// Deletes a finished hook's copy as its policy asks (best effort: the hook's own outcome
    /// stands); a hook that succeeded is then recorded Deleted.
    async fn clean_up_hook(
        &mut self,
        index: usize,
        hook: usize,
        prepared: &PreparedObject,
    ) -> Result<(), Halt> {
        match self.delete(prepared).await {
            Ok(_) => {
                let object = &mut self.slots[index].record.objects[hook];
                // A hook removed by its policy after it completed keeps its readiness: it ran
                // to the end, and status counts it with the app.
                if object.deployed == DeployedStatus::Applied {
                    object.deployed = DeployedStatus::Deleted;
                }
                Ok(())
            }
            Err(CallError::Refused(reason)) => {
                debug!(cluster = %self.link.cluster, hook = %prepared.describe(), %reason, "hook cleanup refused");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn delete(&mut self, prepared: &PreparedObject) -> Result<Deleted, CallError> {
        self.link.delete(prepared).await
    }

    async fn get(&mut self, prepared: &PreparedObject) -> Result<Option<Value>, CallError> {
        self.link.get(prepared).await
    }

    /// Polls until a hook's previous copy is gone; `Ok(Some(why))` when it is still there after
    /// `timeout` or cannot be read.
    async fn wait_gone(
        &mut self,
        prepared: &PreparedObject,
        timeout: Duration,
    ) -> Result<Option<String>, Halt> {
        let deadline = Instant::now() + timeout;
        let mut interval = self.link.config().ready_poll_initial;
        loop {
            match self.get(prepared).await {
                Ok(None) => return Ok(None),
                Ok(Some(_)) => {}
                Err(CallError::Refused(reason)) => {
                    return Ok(Some(format!("reading its previous copy: {reason}")));
                }
                Err(error) => return Err(error.into()),
            }
            if Instant::now() >= deadline {
                return Ok(Some(format!(
                    "its previous copy was still being deleted after {timeout:?}"
                )));
            }
            self.link.pause(interval).await?;
            interval = (interval * 2).min(self.link.config().ready_poll_max);
        }
    }

    /// Waits for a Job or Pod hook to finish; the inner `Err` says why it failed.
    async fn wait_complete(
        &mut self,
        prepared: &PreparedObject,
        applied: Option<&Value>,
    ) -> Result<Result<(), String>, Halt> {
        let timeout = self.link.config().hook_timeout;
        let deadline = Instant::now() + timeout;
        let mut interval = self.link.config().ready_poll_initial;
        // Jobs and Pods are always applied with their answer; without one, poll for it.
        let mut current = applied.map_or_else(
            || Readiness::NotReady("not read back yet".into()),
            |applied| hook_outcome(prepared, applied),
        );
        loop {
            match current {
                Readiness::Ready => return Ok(Ok(())),
                Readiness::Failed(reason) => return Ok(Err(reason)),
                Readiness::NotReady(reason) if Instant::now() >= deadline => {
                    return Ok(Err(format!("not complete after {timeout:?}: {reason}")));
                }
                Readiness::NotReady(_) => {}
            }
            self.link.pause(interval).await?;
            interval = (interval * 2).min(self.link.config().ready_poll_max);
            current = match self.get(prepared).await {
                Ok(Some(object)) => hook_outcome(prepared, &object),
                Ok(None) => return Ok(Err("it disappeared before completing".into())),
                Err(CallError::Refused(reason)) => return Ok(Err(reason)),
                Err(error) => return Err(error.into()),
            };
        }
    }

    fn start_tracking(&mut self, index: usize) {
        let interval = self.link.config().ready_poll_initial;
        self.slots[index].tracking = Some(Tracking {
            due: Instant::now() + interval,
            interval,
        });
    }

    /// Reads back the objects not ready yet of every app whose poll is due (or nearly due, so
    /// apps applied together are polled together): per kind, one list by the deployment-id
    /// labels of those apps (a get when only one object of the kind is waiting). Records what
    /// changed, all in one batch.
    async fn poll_due(&mut self) -> Result<(), Halt> {
        let horizon = Instant::now() + self.link.config().ready_poll_initial / 2;
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&index| {
                self.slots[index]
                    .tracking
                    .as_ref()
                    .is_some_and(|tracking| tracking.due <= horizon)
            })
            .collect();
        if due.is_empty() || self.link.stopped() {
            return Ok(());
        }
        self.link.acquire().await;
        // (apiVersion, kind) -> (slot, object index)
        let mut waiting: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
        for &index in &due {
            let slot = &self.slots[index];
            for (object, record) in slot.record.objects.iter().enumerate() {
                if slot.variant.tracks_readiness(object)
                    && record.deployed == DeployedStatus::Applied
                    && record.ready != Some(ReadyStatus::Ready)
                {
                    let prepared = &slot.variant.objects[object];
                    waiting
                        .entry((prepared.api_version.clone(), prepared.kind.clone()))
                        .or_default()
                        .push((index, object));
                }
            }
        }
        let mut changed = vec![false; self.slots.len()];
        for ((api_version, kind), objects) in waiting {
            let found: Vec<((usize, usize), Option<Value>)> = if let [(index, object)] =
                objects.as_slice()
            {
                let variant = self.slots[*index].variant.clone();
                match self.link.get_once(&variant.objects[*object]).await {
                    Ok(value) => vec![((*index, *object), value)],
                    Err(_) => continue,
                }
            } else {
                let mut labels: Vec<&str> = objects
                    .iter()
                    .map(|(index, _)| self.shared.apps[self.slots[*index].app].label.as_str())
                    .collect();
                labels.sort_unstable();
                labels.dedup();
                let selector = match labels.as_slice() {
                    [label] => format!("{DEPLOYMENT_ID_LABEL}={label}"),
                    _ => format!("{DEPLOYMENT_ID_LABEL} in ({})", labels.join(",")),
                };
                let listed = match self.link.list_once(&api_version, &kind, &selector).await {
                    Ok(listed) => listed,
                    // Listing across namespaces may be forbidden where reading each object is
                    // not: read them one by one.
                    Err(error) if error.status_code().is_some_and(|code| code < 500) => {
                        let mut found = Vec::with_capacity(objects.len());
                        for &(index, object) in &objects {
                            let variant = self.slots[index].variant.clone();
                            if let Ok(value) = self.link.get_once(&variant.objects[object]).await {
                                found.push(((index, object), value));
                            }
                        }
                        self.note_readiness(found, &mut changed);
                        continue;
                    }
                    Err(_) => continue,
                };
                objects
                    .iter()
                    .map(|&(index, object)| {
                        let slot = &self.slots[index];
                        let label = self.shared.apps[slot.app].label.as_str();
                        let prepared = &slot.variant.objects[object];
                        let text = |item: &Value, pointer: &str| {
                            item.pointer(pointer)
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        };
                        let hit = listed.iter().find(|item| {
                            text(item, "/metadata/name").as_deref() == Some(prepared.name.as_str())
                                && item
                                    .pointer("/metadata/labels")
                                    .and_then(|labels| labels.get(DEPLOYMENT_ID_LABEL))
                                    .and_then(Value::as_str)
                                    == Some(label)
                                && prepared.namespace.as_deref().is_none_or(|namespace| {
                                    text(item, "/metadata/namespace").as_deref() == Some(namespace)
                                })
                        });
                        ((index, object), hit.cloned())
                    })
                    .collect()
            };
            self.note_readiness(found, &mut changed);
        }
        let max = self.link.config().ready_poll_max;
        let mut to_write = Vec::new();
        let mut now_ready = Vec::new();
        for &index in &due {
            if self.slots[index].all_ready() {
                let slot = &mut self.slots[index];
                slot.tracking = None;
                slot.record.ready_ms = Some(records::now_ms());
                to_write.push(index);
                now_ready.push(index);
            } else {
                if changed[index] {
                    to_write.push(index);
                }
                if let Some(tracking) = self.slots[index].tracking.as_mut() {
                    tracking.interval = (tracking.interval * 2).min(max);
                    tracking.due = Instant::now() + tracking.interval;
                }
            }
        }
        // The records commit in company (group commit): no need to hold a slot meanwhile.
        self.link.release_slot();
        self.write_all(&to_write).await?;
        for index in now_ready {
            let app = &self.shared.apps[self.slots[index].app];
            app.ready.fetch_add(1, Ordering::SeqCst);
            app.changed.send_modify(|_| ());
        }
        Ok(())
    }

    /// Records the readiness of objects read back (`None`: not found).
    fn note_readiness(
        &mut self,
        found: Vec<((usize, usize), Option<Value>)>,
        changed: &mut [bool],
    ) {
        for ((index, object), value) in found {
            let (ready, message) = match value {
                Some(value) => ready_record(readiness(&value)),
                None => (
                    Some(ReadyStatus::NotReady),
                    Some("not found on the cluster".to_owned()),
                ),
            };
            let entry = &mut self.slots[index].record.objects[object];
            changed[index] |= entry.ready != ready;
            entry.ready = ready;
            entry.message = message;
        }
    }

    /// Writes several slots' records durably, in one batch.
    async fn write_all(&mut self, indices: &[usize]) -> Result<(), Halt> {
        let now = records::now_ms();
        let mut writes = Vec::with_capacity(indices.len());
        for &index in indices {
            let slot = &mut self.slots[index];
            slot.record.connectivity = self.link.connectivity;
            slot.record.updated_ms = now;
            writes.push(self.shared.flusher.put_record(
                slot.key.clone(),
                &self.shared.apps[slot.app].name,
                &self.link.cluster,
                &slot.record,
            ));
        }
        for write in writes {
            if !matches!(write.await, Ok(Ok(()))) {
                return Err(Halt::Superseded);
            }
        }
        Ok(())
    }

    /// Writes the slot's record durably.
    async fn write(&mut self, index: usize) -> Result<(), Halt> {
        let slot = &mut self.slots[index];
        slot.record.connectivity = self.link.connectivity;
        slot.record.updated_ms = records::now_ms();
        let write = self.shared.flusher.put_record(
            slot.key.clone(),
            &self.shared.apps[slot.app].name,
            &self.link.cluster,
            &slot.record,
        );
        match write.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Halt::Superseded),
        }
    }

    /// Counts a slot that reached its end state in this run.
    fn finish(&self, index: usize) {
        let slot = &self.slots[index];
        let app = &self.shared.apps[slot.app];
        match slot.record.state {
            AppClusterState::Applied => {
                app.applied.fetch_add(1, Ordering::SeqCst);
                if slot.record.ready_ms.is_some() {
                    app.ready.fetch_add(1, Ordering::SeqCst);
                }
            }
            AppClusterState::Deleted | AppClusterState::Pending => {}
            AppClusterState::Failed | AppClusterState::Stopped => {
                // An app left behind where an update removes it does not hold up dependents.
                if !slot.is_removal() {
                    app.failed.store(true, Ordering::SeqCst);
                }
                self.shared.failed.store(true, Ordering::SeqCst);
            }
        }
        if self.shared.op == super::records::OpKind::Terminate || slot.is_removal() {
            self.note_leftovers(index);
        }
        let left = left_objects(&self.link.cluster, slot);
        if !left.is_empty() {
            self.shared
                .left_behind
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend(left);
        }
        app.changed.send_modify(|_| ());
        self.shared
            .outstanding
            .send_modify(|count| *count = count.saturating_sub(1));
    }

    fn note_leftovers(&self, index: usize) {
        let slot = &self.slots[index];
        let notes = leftovers(&self.shared.apps[slot.app].name, &self.link.cluster, slot);
        if !notes.is_empty() {
            let mut all = self
                .shared
                .leftovers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            all.extend(notes);
        }
    }

    /// Terminate: apps in `order` (reverse dependency order), each: pre-delete hooks, delete the
    /// app's objects in reverse install order and wait until they are gone (bounded),
    /// post-delete hooks.
    pub async fn terminate(mut self, order: Vec<usize>) {
        for index in order {
            if self.slots[index].record.state.is_terminal() {
                continue;
            }
            if !self.remove(index).await {
                return;
            }
        }
        self.link.release();
    }

    /// Uninstalls one app and records the outcome; `false` when the run was superseded.
    async fn remove(&mut self, index: usize) -> bool {
        {
            let outcome = self.uninstall(index).await;
            let slot = &mut self.slots[index];
            match outcome {
                Ok(problems) => {
                    let clean = problems.is_empty()
                        && slot.variant.to_delete().all(|object| {
                            slot.record.objects[object].deployed == DeployedStatus::Deleted
                        });
                    slot.record.state = if clean {
                        AppClusterState::Deleted
                    } else {
                        AppClusterState::Failed
                    };
                    if !problems.is_empty() {
                        slot.record.error = Some(problems.join("; "));
                    }
                }
                Err(Halt::Superseded) => return false,
                Err(Halt::Stopped) => slot.record.state = AppClusterState::Stopped,
                Err(Halt::Failed(reason)) => {
                    slot.record.state = AppClusterState::Failed;
                    slot.record.error = Some(reason);
                }
            }
            if self.write(index).await.is_err() {
                return false;
            }
            self.finish(index);
        }
        true
    }

    /// Returns the hook failures (the deletion goes on after a failed pre-delete hook: an
    /// orchestrator asked to remove an app should not leave it running because a hook failed).
    async fn uninstall(&mut self, index: usize) -> Result<Vec<String>, Halt> {
        let variant = self.slots[index].variant.clone();
        let mut problems = Vec::new();
        for &hook in &variant.pre_delete {
            match self.run_hook(index, hook, HookEvent::PreDelete).await {
                Ok(()) => {}
                Err(Halt::Failed(reason)) => problems.push(reason),
                Err(other) => return Err(other),
            }
        }
        self.delete_all(index, &variant.uninstall, false).await?;
        for &hook in &variant.post_delete {
            match self.run_hook(index, hook, HookEvent::PostDelete).await {
                Ok(()) => {}
                Err(Halt::Failed(reason)) => problems.push(reason),
                Err(other) => return Err(other),
            }
        }
        // Then every hook object, install and delete hooks alike: terminate leaves nothing the
        // hub applied (as upstream EMCO; `helm uninstall` would keep hooks without a delete
        // policy). A hook of a kind the cluster does not serve was never applied there.
        self.delete_all(index, &variant.hook_uninstall, true)
            .await?;
        Ok(problems)
    }

    /// Deletes `objects` (in that order) and waits until they are gone, up to the delete
    /// timeout; records each as Deleted, or Failed with the cluster's refusal or the timeout.
    /// With `unserved_is_gone`, a kind the cluster does not serve counts as deleted.
    async fn delete_all(
        &mut self,
        index: usize,
        objects: &[usize],
        unserved_is_gone: bool,
    ) -> Result<(), Halt> {
        let variant = self.slots[index].variant.clone();
        let gone = ObjectRecord {
            deployed: DeployedStatus::Deleted,
            ready: None,
            message: None,
            action: None,
        };
        let mut deleting = Vec::new();
        for &object in objects {
            let prepared = &variant.objects[object];
            let result = if unserved_is_gone {
                self.link.delete_if_served(prepared).await
            } else {
                self.delete(prepared).await
            };
            let record = &mut self.slots[index].record.objects[object];
            match result {
                Ok(Deleted::Gone | Deleted::NotFound) => *record = gone.clone(),
                Ok(Deleted::Deleting) => deleting.push(object),
                Err(CallError::Refused(reason)) => {
                    *record = ObjectRecord {
                        deployed: DeployedStatus::Failed,
                        ready: record.ready,
                        message: Some(format!("delete refused: {reason}")),
                        action: None,
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.link.flush().await?;
        let deadline = Instant::now() + self.link.config().delete_timeout;
        let mut interval = self.link.config().ready_poll_initial;
        while !deleting.is_empty() {
            self.link.pause(interval).await?;
            interval = (interval * 2).min(self.link.config().ready_poll_max);
            let mut still = Vec::new();
            for object in deleting {
                let prepared = &variant.objects[object];
                match self.get(prepared).await {
                    Ok(None) => self.slots[index].record.objects[object] = gone.clone(),
                    Ok(Some(_)) => still.push(object),
                    Err(CallError::Refused(reason)) => {
                        self.slots[index].record.objects[object].message = Some(reason);
                        still.push(object);
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            deleting = still;
            if !deleting.is_empty() && Instant::now() >= deadline {
                let timeout = self.link.config().delete_timeout;
                for &object in &deleting {
                    let record = &mut self.slots[index].record.objects[object];
                    record.deployed = DeployedStatus::Failed;
                    record.message = Some(format!("still being deleted after {timeout:?}"));
                }
                break;
            }
        }
        Ok(())
    }
}

/// How far a hook that runs to completion got: Jobs by their conditions; Pods only once they
/// ran to the end (a running Pod is ready, not done).
fn hook_outcome(prepared: &PreparedObject, object: &Value) -> Readiness {
    if prepared.kind != "Pod" {
        return readiness(object);
    }
    match object.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => Readiness::Ready,
        Some("Failed") => readiness(object),
        Some(phase) => Readiness::NotReady(format!("pod is {phase}")),
        None => Readiness::NotReady("pod has no status yet".into()),
    }
}

/// Objects of an earlier revision a finished slot leaves on its cluster: what an uninstall of an
/// update's removal did not delete, or every retired object of an upgrade that did not finish
/// (deleting one again is harmless). A terminate's own objects are not among them: the
/// context still names those.
pub fn left_objects(cluster: &ClusterId, slot: &Slot) -> Vec<super::records::LeftObject> {
    let object = |prepared: &super::prepare::PreparedObject| super::records::LeftObject {
        cluster: cluster.clone(),
        api_version: prepared.api_version.clone(),
        kind: prepared.kind.clone(),
        namespace: prepared.namespace.clone(),
        name: prepared.name.clone(),
    };
    match &slot.mode {
        SlotMode::Remove if slot.record.state != AppClusterState::Deleted => slot
            .variant
            .to_delete()
            .filter(|&index| slot.record.objects[index].deployed != DeployedStatus::Deleted)
            .map(|index| object(&slot.variant.objects[index]))
            .collect(),
        SlotMode::Upgrade {
            retired: Some((old, retired)),
            ..
        } if slot.record.state != AppClusterState::Applied => retired
            .iter()
            .map(|&index| object(&old.objects[index]))
            .collect(),
        _ => Vec::new(),
    }
}

/// What a terminate left of an app on a cluster, for the status message.
pub fn leftovers(app: &str, cluster: &ClusterId, slot: &Slot) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(error) = &slot.record.error {
        notes.push(format!("{app} on {cluster}: {error}"));
    }
    for object in slot.variant.to_delete() {
        let record = &slot.record.objects[object];
        if record.deployed != DeployedStatus::Deleted {
            let why = record.message.as_deref().unwrap_or("not deleted");
            notes.push(format!(
                "{app} on {cluster}: {} ({why})",
                slot.variant.objects[object].describe()
            ));
        }
    }
    notes
}
