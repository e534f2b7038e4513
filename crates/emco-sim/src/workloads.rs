//! Workload controllers: Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and Pods
//! reach the status their real controllers would report, after a configurable delay.
//!
//! A write that leaves a workload unobserved (a new generation, an unfinished Job, a pending
//! Pod) queues a [`Pending`] entry on the simulator's one [`Reactor`]: a priority queue of
//! (due time, cluster, object) drained by a single tokio task, which exists only while
//! entries are queued. When an entry falls due, the object's status is rewritten through
//! [`crate::api::internal_update_status`], unless the object changed generation or identity
//! meanwhile (a newer entry covers it).
//!
//! Workloads stay unready while their cluster's fault plan says `never_ready`, or when they
//! carry the annotation [`NEVER_READY_ANNOTATION`]; such entries are re-checked every
//! [`RECHECK`] (without touching the cluster while the fault lasts) and become ready once it
//! is lifted. A Job annotated [`FAIL_ANNOTATION`] `"true"` fails with `BackoffLimitExceeded`
//! instead of completing.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::catalog::{self, ResourceDef};
use crate::cluster::{Cluster, ClusterState};
use crate::meta;

/// Annotation that makes a Job fail (`"true"`) instead of completing.
pub const FAIL_ANNOTATION: &str = "sim.emco.io/fail";

/// Annotation that keeps one workload unready (`"true"`), like the cluster-wide fault.
pub const NEVER_READY_ANNOTATION: &str = "sim.emco.io/never-ready";

/// How often a workload held unready is checked again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Due entries handled per turn of the timer task before it yields to other tasks.
const BATCH: usize = 256;

/// The kinds whose status the simulated controllers maintain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// batch/v1 Job.
    Job,
    /// v1 Pod.
    Pod,
}

impl WorkloadKind {
    /// The kind `def` serves, if a controller looks after it.
    pub fn of(def: &ResourceDef) -> Option<Self> {
        if def.version != "v1" {
            return None;
        }
        Some(match (def.group.as_str(), def.plural.as_str()) {
            ("apps", "deployments") => Self::Deployment,
            ("apps", "statefulsets") => Self::StatefulSet,
            ("apps", "daemonsets") => Self::DaemonSet,
            ("apps", "replicasets") => Self::ReplicaSet,
            ("batch", "jobs") => Self::Job,
            ("", "pods") => Self::Pod,
            _ => return None,
        })
    }

    fn def(self) -> Option<Arc<ResourceDef>> {
        let (group, plural) = match self {
            Self::Deployment => ("apps", "deployments"),
            Self::StatefulSet => ("apps", "statefulsets"),
            Self::DaemonSet => ("apps", "daemonsets"),
            Self::ReplicaSet => ("apps", "replicasets"),
            Self::Job => ("batch", "jobs"),
            Self::Pod => ("", "pods"),
        };
        catalog::builtin(group, "v1", plural)
    }
}

/// How the workload controllers behave (from [`crate::SimOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// Time from a change to the workload reporting ready (zero: at once, in the same request).
    pub ready_after: Duration,
    /// Simulated nodes: how many pods a DaemonSet schedules.
    pub nodes: u32,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        Self {
            ready_after: Duration::from_secs(1),
            nodes: 1,
        }
    }
}

/// Parses a duration such as `1s`, `200ms`, `1.5s`, `2m`, `1h` or `0` (a bare number is in
/// seconds), as `emco sim --ready-after` takes it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 1s, 200ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

/// Whether a stored change leaves `object` for its controller to act on: a generation not yet
/// observed, a Job not finished (nor suspended), a Pod not yet running.
pub fn needs_reconcile(kind: WorkloadKind, object: &Value) -> bool {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    match kind {
        WorkloadKind::Job => {
            object.pointer("/spec/suspend").and_then(Value::as_bool) != Some(true)
                && !job_finished(object)
        }
        WorkloadKind::Pod => object
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .is_none_or(|phase| phase == "Pending"),
        _ => Some(generation(object)) != observed_generation(object),
    }
}

fn generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn observed_generation(object: &Value) -> Option<i64> {
    object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn annotated(object: &Value, annotation: &str) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(annotation))
        .and_then(Value::as_str)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

fn job_finished(object: &Value) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                matches!(text(condition, "/type"), "Complete" | "Failed")
                    && text(condition, "/status") == "True"
            })
        })
}

/// Where a workload's rollout stands when its status is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Everything is up (or, for Jobs, done).
    Ready,
    /// Held unready (a fault); `deadline_exceeded` once a Deployment's progress deadline passed.
    Stuck {
        /// The Deployment's `progressDeadlineSeconds` passed without progress.
        deadline_exceeded: bool,
    },
}

/// A non-negative `spec.replicas` (default 1).
fn replicas(object: &Value) -> i64 {
    object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

/// Kubernetes' "safe" encoding of a 32-bit FNV-1a hash: no vowels, no look-alike digits.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    });
    hash.to_string()
        .bytes()
        .map(|digit| char::from(ALPHABET[usize::from(digit) % ALPHABET.len()]))
        .collect()
}

/// Resolves an int-or-percent rollout bound against `total` (percentages round up or down).
fn int_or_percent(value: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Some(Value::Number(number)) => number.as_i64().unwrap_or(default),
        Some(Value::String(text)) => match text
            .strip_suffix('%')
            .and_then(|percent| percent.parse::<i64>().ok())
        {
            Some(percent) if round_up => (total * percent + 99) / 100,
            Some(percent) => total * percent / 100,
            None => default,
        },
        _ => default,
    }
}

/// Pods a Deployment needs available to count as `Available`.
fn deployment_min_available(object: &Value, replicas: i64) -> i64 {
    if text(object, "/spec/strategy/type") != "RollingUpdate" || replicas == 0 {
        return replicas;
    }
    let rolling = object.pointer("/spec/strategy/rollingUpdate");
    let field = |name: &str| rolling.and_then(|rolling| rolling.get(name));
    let surge = int_or_percent(field("maxSurge"), replicas, true, 0);
    let mut unavailable = int_or_percent(field("maxUnavailable"), replicas, false, 0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (replicas - unavailable.min(replicas)).max(0)
}

/// A status condition, keeping the previous transition (and update) times when unchanged,
/// as the real controllers do.
struct ConditionStamp<'a> {
    previous: Option<&'a Value>,
    now: &'a str,
}

impl ConditionStamp<'_> {
    fn previous_condition(&self, kind: &str) -> Option<&Value> {
        self.previous?
            .get("conditions")?
            .as_array()?
            .iter()
            .find(|condition| text(condition, "/type") == kind)
    }

    /// Apps-style condition: `lastUpdateTime` and `lastTransitionTime`.
    fn apps(&self, kind: &str, status: bool, reason: &str, message: &str) -> Value {
        let status = if status { "True" } else { "False" };
        let previous = self.previous_condition(kind);
        let same_status = previous.is_some_and(|old| text(old, "/status") == status);
        let same = same_status
            && previous.is_some_and(|old| {
                text(old, "/reason") == reason && text(old, "/message") == message
            });
        let keep = |field: &str, keep: bool| match previous.and_then(|old| old.get(field)) {
            Some(value) if keep => value.clone(),
            _ => json!(self.now),
        };
        json!({
            "type": kind,
            "status": status,
            "lastUpdateTime": keep("lastUpdateTime", same),
            "lastTransitionTime": keep("lastTransitionTime", same_status),
            "reason": reason,
            "message": message,
        })
    }

    /// Job- and Pod-style condition: `lastProbeTime` and `lastTransitionTime`.
    fn probed(&self, kind: &str, reason: Option<&str>, message: Option<&str>) -> Value {
        let previous = self
            .previous_condition(kind)
            .filter(|old| text(old, "/status") == "True");
        let transition = previous
            .and_then(|old| old.get("lastTransitionTime"))
            .cloned()
            .unwrap_or_else(|| json!(self.now));
        let mut condition = json!({
            "type": kind,
            "status": "True",
            "lastProbeTime": if reason.is_some() { json!(self.now) } else { Value::Null },
            "lastTransitionTime": transition,
        });
        if let (Some(map), Some(reason)) = (condition.as_object_mut(), reason) {
            map.insert("reason".into(), json!(reason));
            map.insert("message".into(), json!(message.unwrap_or_default()));
        }
        if let (Some(map), Some(old)) = (condition.as_object_mut(), previous) {
            // Probe times are kept across identical rewrites so a re-check writes nothing.
            if let Some(probe) = old.get("lastProbeTime") {
                map.insert("lastProbeTime".into(), probe.clone());
            }
        }
        condition
    }
}

/// Inserts the counters that are not zero (Go's `omitempty` for the optional ones).
fn counters(status: &mut Map<String, Value>, fields: &[(&str, i64)]) {
    for (name, value) in fields {
        if *value != 0 {
            status.insert((*name).to_owned(), json!(value));
        }
    }
}

/// The status `kind`'s controller reports for `object` at `progress`. `now` is a unix time;
/// `since` when the controller first saw the current generation (Jobs' and Pods' start).
pub fn desired_status(
    kind: WorkloadKind,
    object: &Value,
    progress: Progress,
    settings: &WorkloadSettings,
    now: i64,
    since: i64,
) -> Value {
    let previous = object.get("status").filter(|status| status.is_object());
    let now_text = meta::format_timestamp(now);
    let stamp = ConditionStamp {
        previous,
        now: &now_text,
    };
    let ready = progress == Progress::Ready;
    let observed = generation(object);
    let name = text(object, "/metadata/name");
    let mut status = Map::new();
    match kind {
        WorkloadKind::Deployment => {
            let replicas = replicas(object);
            let available = if ready { replicas } else { 0 };
            status.insert("observedGeneration".into(), json!(observed));
            counters(
                &mut status,
                &[
                    ("replicas", replicas),
                    ("updatedReplicas", replicas),
                    ("readyReplicas", available),
                    ("availableReplicas", available),
                    ("unavailableReplicas", replicas - available),
                ],
            );
            let replica_set = format!(
                "{name}-{}",
                template_hash(object.pointer("/spec/template").unwrap_or(&Value::Null))
            );
            let is_available = available >= deployment_min_available(object, replicas);
            let available_condition = if is_available {
                stamp.apps(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                stamp.apps(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            let progressing = match progress {
                Progress::Ready => stamp.apps(
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{replica_set}\" has successfully progressed."),
                ),
                Progress::Stuck {
                    deadline_exceeded: false,
                } => stamp.apps(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{replica_set}\" is progressing."),
                ),
                Progress::Stuck {
                    deadline_exceeded: true,
                } => stamp.apps(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{replica_set}\" has timed out progressing."),
                ),
            };
            status.insert(
                "conditions".into(),
                json!([available_condition, progressing]),
            );
        }
        WorkloadKind::StatefulSet => {
            let wanted = replicas(object);
            // OrderedReady starts one pod at a time: a pod that never gets ready stops the rest.
            let created = if ready || text(object, "/spec/podManagementPolicy") == "Parallel" {
                wanted
            } else {
                wanted.min(1)
            };
            let ready_count = if ready { wanted } else { 0 };
            let revision = format!(
                "{name}-{}",
                template_hash(object.pointer("/spec/template").unwrap_or(&Value::Null))
            );
            status.insert("observedGeneration".into(), json!(observed));
            status.insert("replicas".into(), json!(created));
            counters(
                &mut status,
                &[
                    ("readyReplicas", ready_count),
                    ("currentReplicas", created),
                    ("updatedReplicas", created),
                ],
            );
            status.insert("currentRevision".into(), json!(revision));
            status.insert("updateRevision".into(), json!(revision));
            status.insert("collisionCount".into(), json!(0));
            status.insert("availableReplicas".into(), json!(ready_count));
        }
        WorkloadKind::DaemonSet => {
            let nodes = i64::from(settings.nodes);
            let ready_count = if ready { nodes } else { 0 };
            status.insert("currentNumberScheduled".into(), json!(nodes));
            status.insert("numberMisscheduled".into(), json!(0));
            status.insert("desiredNumberScheduled".into(), json!(nodes));
            status.insert("numberReady".into(), json!(ready_count));
            status.insert("observedGeneration".into(), json!(observed));
            counters(
                &mut status,
                &[
                    ("updatedNumberScheduled", nodes),
                    ("numberAvailable", ready_count),
                    ("numberUnavailable", nodes - ready_count),
                ],
            );
        }
        WorkloadKind::ReplicaSet => {
            let replicas = replicas(object);
            let ready_count = if ready { replicas } else { 0 };
            status.insert("replicas".into(), json!(replicas));
            counters(
                &mut status,
                &[
                    ("fullyLabeledReplicas", replicas),
                    ("readyReplicas", ready_count),
                    ("availableReplicas", ready_count),
                ],
            );
            status.insert("observedGeneration".into(), json!(observed));
        }
        WorkloadKind::Job => {
            let start = previous
                .and_then(|status| status.get("startTime"))
                .cloned()
                .unwrap_or_else(|| json!(meta::format_timestamp(since)));
            status.insert("startTime".into(), start);
            if !ready {
                let parallelism = object
                    .pointer("/spec/parallelism")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                counters(&mut status, &[("active", parallelism)]);
            } else if annotated(object, FAIL_ANNOTATION) {
                let backoff = object
                    .pointer("/spec/backoffLimit")
                    .and_then(Value::as_i64)
                    .unwrap_or(6);
                let message = "Job has reached the specified backoff limit";
                status.insert(
                    "conditions".into(),
                    json!([
                        stamp.probed("FailureTarget", Some("BackoffLimitExceeded"), Some(message)),
                        stamp.probed("Failed", Some("BackoffLimitExceeded"), Some(message)),
                    ]),
                );
                status.insert("failed".into(), json!(backoff + 1));
            } else {
                let completions = object
                    .pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let message = "Reached expected number of succeeded pods";
                status.insert(
                    "conditions".into(),
                    json!([
                        stamp.probed(
                            "SuccessCriteriaMet",
                            Some("CompletionsReached"),
                            Some(message)
                        ),
                        stamp.probed("Complete", Some("CompletionsReached"), Some(message)),
                    ]),
                );
                status.insert("completionTime".into(), json!(now_text));
                status.insert("succeeded".into(), json!(completions));
            }
            status.insert("terminating".into(), json!(0));
            status.insert("uncountedTerminatedPods".into(), json!({}));
            status.insert("ready".into(), json!(0));
        }
        WorkloadKind::Pod => return pod_status(object, ready, &stamp, since),
    }
    Value::Object(status)
}

/// A running pod (or one still pending, scheduled but not started).
fn pod_status(object: &Value, ready: bool, stamp: &ConditionStamp<'_>, since: i64) -> Value {
    let started = meta::format_timestamp(since);
    let mut status = object
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !ready {
        status.insert("phase".into(), json!("Pending"));
        status.insert(
            "conditions".into(),
            json!([stamp.probed("PodScheduled", None, None)]),
        );
        return Value::Object(status);
    }
    let hash = template_hash(object.pointer("/metadata/uid").unwrap_or(&Value::Null));
    // A pod that is not restarted runs to completion: its containers exit 0 once they ran,
    // which is what hook and one-shot pods are waited for.
    let runs_to_completion = matches!(
        object
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str),
        Some("Never" | "OnFailure")
    );
    if runs_to_completion {
        return completed_pod_status(object, status, &hash, &started, stamp);
    }
    let octet =
        |index: usize| u32::from(hash.as_bytes().get(index).copied().unwrap_or(0)) % 250 + 2;
    let pod_ip = format!("10.244.{}.{}", octet(0), octet(1));
    let containers: Vec<Value> = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|container| {
            let image = text(container, "/image");
            json!({
                "name": text(container, "/name"),
                "state": {"running": {"startedAt": started}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": image,
                "imageID": format!("{image}@sha256:{}", "0".repeat(64)),
                "containerID": format!("containerd://{}", hash.repeat(6)),
                "started": true,
            })
        })
        .collect();
    status.insert("phase".into(), json!("Running"));
    status.insert(
        "conditions".into(),
        json!([
            stamp.probed("PodReadyToStartContainers", None, None),
            stamp.probed("Initialized", None, None),
            stamp.probed("Ready", None, None),
            stamp.probed("ContainersReady", None, None),
            stamp.probed("PodScheduled", None, None),
        ]),
    );
    status.insert("hostIP".into(), json!("10.0.0.1"));
    status.insert("hostIPs".into(), json!([{"ip": "10.0.0.1"}]));
    status.insert("podIP".into(), json!(pod_ip));
    status.insert("podIPs".into(), json!([{ "ip": pod_ip }]));
    status.entry("startTime").or_insert_with(|| json!(started));
    status.insert("containerStatuses".into(), json!(containers));
    Value::Object(status)
}

/// A pod whose containers ran and exited 0 (phase `Succeeded`, as the kubelet reports it).
fn completed_pod_status(
    object: &Value,
    mut status: serde_json::Map<String, Value>,
    hash: &str,
    started: &str,
    stamp: &ConditionStamp<'_>,
) -> Value {
    let containers: Vec<Value> = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|container| {
            let image = text(container, "/image");
            json!({
                "name": text(container, "/name"),
                "state": {"terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started,
                    "finishedAt": stamp.now,
                    "containerID": format!("containerd://{}", hash.repeat(6)),
                }},
                "lastState": {},
                "ready": false,
                "restartCount": 0,
                "image": image,
                "imageID": format!("{image}@sha256:{}", "0".repeat(64)),
                "started": false,
            })
        })
        .collect();
    let completed = |kind: &str| {
        json!({
            "type": kind,
            "status": "False",
            "lastProbeTime": null,
            "lastTransitionTime": stamp.now,
            "reason": "PodCompleted",
        })
    };
    status.insert("phase".into(), json!("Succeeded"));
    status.insert(
        "conditions".into(),
        json!([
            stamp.probed("Initialized", Some("PodCompleted"), None),
            completed("Ready"),
            completed("ContainersReady"),
            stamp.probed("PodScheduled", None, None),
        ]),
    );
    status.insert("hostIP".into(), json!("10.0.0.1"));
    status.entry("startTime").or_insert_with(|| json!(started));
    status.insert("containerStatuses".into(), json!(containers));
    Value::Object(status)
}

/// One object waiting for its controller.
#[derive(Debug, Clone)]
pub struct Pending {
    cluster: Weak<Cluster>,
    kind: WorkloadKind,
    namespace: String,
    name: String,
    uid: String,
    generation: i64,
    /// When the controller first saw this generation (unix seconds).
    since: i64,
    /// Set once the unready status is written: the entry only waits for the fault to lift.
    parked: Option<Parked>,
}

#[derive(Debug, Clone, Copy)]
struct Parked {
    /// Held by the object's own annotation (needs reading the object to re-check).
    by_annotation: bool,
    /// When a Deployment's progress deadline passes (unix seconds), if it has not yet.
    deadline_at: Option<i64>,
}

impl Pending {
    /// An entry for `object` of `kind` in `cluster`, first seen now.
    pub fn new(cluster: Weak<Cluster>, kind: WorkloadKind, object: &Value) -> Self {
        Self {
            cluster,
            kind,
            namespace: text(object, "/metadata/namespace").to_owned(),
            name: text(object, "/metadata/name").to_owned(),
            uid: text(object, "/metadata/uid").to_owned(),
            generation: generation(object),
            since: meta::unix_now(),
            parked: None,
        }
    }
}

/// Whether the cluster's fault plan holds its workloads unready.
pub fn fault_never_ready(cluster: &Cluster) -> bool {
    cluster
        .faults
        .current()
        .is_some_and(|plan| plan.never_ready)
}

/// Brings the object of `pending` to the status its controller reports now. Returns the entry
/// to queue again when the workload is held unready.
pub fn reconcile(
    state: &mut ClusterState,
    pending: Pending,
    fault: bool,
    settings: &WorkloadSettings,
) -> Option<Pending> {
    let def = pending.kind.def()?;
    let stored = state.get(&def, &pending.namespace, &pending.name)?;
    let object: Value = serde_json::from_slice(&stored.json).ok()?;
    if text(&object, "/metadata/uid") != pending.uid
        || generation(&object) != pending.generation
        || (!needs_reconcile(pending.kind, &object) && pending.parked.is_none())
    {
        // Replaced, changed (a newer entry covers it) or already reconciled.
        return None;
    }
    if pending.kind == WorkloadKind::Job && job_finished(&object) {
        return None;
    }
    let by_annotation = annotated(&object, NEVER_READY_ANNOTATION);
    let stuck = fault || by_annotation;
    let now = meta::unix_now();
    let deadline = (pending.kind == WorkloadKind::Deployment)
        .then(|| {
            object
                .pointer("/spec/progressDeadlineSeconds")
                .and_then(Value::as_i64)
        })
        .flatten()
        .map(|seconds| pending.since.saturating_add(seconds));
    let progress = if stuck {
        Progress::Stuck {
            deadline_exceeded: deadline.is_some_and(|at| now >= at),
        }
    } else {
        Progress::Ready
    };
    let status = desired_status(
        pending.kind,
        &object,
        progress,
        settings,
        now,
        pending.since,
    );
    if object.get("status") != Some(&status) {
        crate::api::internal_update_status(state, &def, &pending.namespace, &pending.name, status);
    }
    stuck.then(|| Pending {
        parked: Some(Parked {
            by_annotation,
            deadline_at: deadline.filter(|at| now < *at),
        }),
        ..pending
    })
}

/// One queued entry, ordered by due time, then by arrival.
#[derive(Debug)]
struct Timer {
    due: Instant,
    sequence: u64,
    pending: Pending,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.sequence).cmp(&(other.due, other.sequence))
    }
}

#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Timer>>,
    sequence: u64,
    task: Option<JoinHandle<()>>,
}

/// The simulator's one timer queue for all clusters' workload controllers.
#[derive(Debug)]
pub struct Reactor {
    settings: WorkloadSettings,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Reactor {
    /// A reactor with nothing queued (and no task running).
    pub fn new(settings: WorkloadSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        })
    }

    /// Its settings.
    pub fn settings(&self) -> &WorkloadSettings {
        &self.settings
    }

    /// Entries waiting.
    pub fn queued(&self) -> usize {
        self.lock().heap.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `pending` to be handled after `delay`, starting the timer task if needed.
    /// `false` (nothing queued) outside a tokio runtime.
    pub fn schedule(self: &Arc<Self>, pending: Pending, delay: Duration) -> bool {
        let mut queue = self.lock();
        let running = queue.task.as_ref().is_some_and(|task| !task.is_finished());
        if !running {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return false;
            };
            queue.task = Some(runtime.spawn(run(self.clone())));
        }
        let due = Instant::now() + delay;
        let earliest = queue
            .heap
            .peek()
            .is_none_or(|Reverse(first)| due < first.due);
        queue.sequence += 1;
        let sequence = queue.sequence;
        queue.heap.push(Reverse(Timer {
            due,
            sequence,
            pending,
        }));
        drop(queue);
        if earliest {
            self.wake.notify_one();
        }
        true
    }

    /// Takes up to [`BATCH`] due entries; `Err(next due)` when none is due, `Err(None)` (and the
    /// task ends) when nothing is queued.
    fn take_due(&self) -> Result<Vec<Pending>, Option<Instant>> {
        let mut queue = self.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        while due.len() < BATCH {
            match queue.heap.peek() {
                Some(Reverse(first)) if first.due <= now => {}
                Some(Reverse(first)) if due.is_empty() => return Err(Some(first.due)),
                Some(_) => break,
                None if due.is_empty() => {
                    queue.task = None;
                    return Err(None);
                }
                None => break,
            }
            if let Some(Reverse(timer)) = queue.heap.pop() {
                due.push(timer.pending);
            }
        }
        Ok(due)
    }

    fn fire(self: &Arc<Self>, pending: Pending) {
        let Some(cluster) = pending.cluster.upgrade() else {
            return; // The cluster was removed.
        };
        let fault = fault_never_ready(&cluster);
        if let Some(parked) = pending.parked
            && fault
            && !parked.by_annotation
            && parked.deadline_at.is_none_or(|at| meta::unix_now() < at)
        {
            // Still held by the fault and nothing new to report: check again later.
            self.schedule(pending, RECHECK);
            return;
        }
        let requeue = {
            let mut state = cluster.lock();
            reconcile(&mut state, pending, fault, &self.settings)
        };
        if let Some(requeue) = requeue {
            self.schedule(requeue, RECHECK);
        }
    }
}

/// The timer task: fires due entries, sleeps until the next one (or an earlier arrival), and
/// ends when the queue is empty.
async fn run(reactor: Arc<Reactor>) {
    loop {
        match reactor.take_due() {
            Ok(due) => {
                for pending in due {
                    reactor.fire(pending);
                }
                tokio::task::yield_now().await;
            }
            Err(Some(next)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = reactor.wake.notified() => {}
                }
            }
            Err(None) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 3, "uid": "u"},
            "spec": {
                "replicas": replicas,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}},
            },
            "status": {},
        })
    }

    #[test]
    fn ready_deployments_report_every_counter_and_both_conditions() {
        let settings = WorkloadSettings::default();
        let status = desired_status(
            WorkloadKind::Deployment,
            &deployment(3),
            Progress::Ready,
            &settings,
            1_700_000_000,
            1_700_000_000,
        );
        assert_eq!(status["observedGeneration"], 3);
        for field in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            assert_eq!(status[field], 3, "{field}");
        }
        assert!(status.get("unavailableReplicas").is_none());
        assert_eq!(status["conditions"][0]["type"], "Available");
        assert_eq!(
            status["conditions"][0]["reason"],
            "MinimumReplicasAvailable"
        );
        assert_eq!(status["conditions"][1]["reason"], "NewReplicaSetAvailable");
        let message = status["conditions"][1]["message"].as_str().unwrap();
        assert!(message.starts_with("ReplicaSet \"web-"), "{message}");
    }

    #[test]
    fn stuck_deployments_are_unavailable_then_time_out() {
        let settings = WorkloadSettings::default();
        let stuck = desired_status(
            WorkloadKind::Deployment,
            &deployment(4),
            Progress::Stuck {
                deadline_exceeded: false,
            },
            &settings,
            1_700_000_000,
            1_700_000_000,
        );
        assert_eq!(stuck["unavailableReplicas"], 4);
        assert!(stuck.get("availableReplicas").is_none());
        assert_eq!(stuck["conditions"][0]["status"], "False");
        assert_eq!(stuck["conditions"][1]["reason"], "ReplicaSetUpdated");
        let mut object = deployment(4);
        object["status"] = stuck.clone();
        let timed_out = desired_status(
            WorkloadKind::Deployment,
            &object,
            Progress::Stuck {
                deadline_exceeded: true,
            },
            &settings,
            1_700_000_700,
            1_700_000_000,
        );
        assert_eq!(timed_out["conditions"][1]["status"], "False");
        assert_eq!(
            timed_out["conditions"][1]["reason"],
            "ProgressDeadlineExceeded"
        );
        // Available did not change: its times are kept.
        assert_eq!(timed_out["conditions"][0], stuck["conditions"][0]);
    }

    #[test]
    fn rewriting_an_unchanged_status_is_identical() {
        let settings = WorkloadSettings::default();
        let mut object = deployment(2);
        object["status"] = desired_status(
            WorkloadKind::Deployment,
            &object,
            Progress::Ready,
            &settings,
            1_700_000_000,
            1_700_000_000,
        );
        let again = desired_status(
            WorkloadKind::Deployment,
            &object,
            Progress::Ready,
            &settings,
            1_700_000_100,
            1_700_000_000,
        );
        assert_eq!(again, object["status"]);
    }

    #[test]
    fn jobs_complete_or_fail_when_annotated() {
        let settings = WorkloadSettings::default();
        let mut job = json!({"metadata": {"name": "j", "generation": 1}, "spec": {"completions": 2, "backoffLimit": 2}});
        let done = desired_status(WorkloadKind::Job, &job, Progress::Ready, &settings, 10, 5);
        assert_eq!(done["succeeded"], 2);
        assert_eq!(done["conditions"][1]["type"], "Complete");
        assert_eq!(done["startTime"], meta::format_timestamp(5));
        assert_eq!(done["completionTime"], meta::format_timestamp(10));
        job["metadata"]["annotations"] = json!({FAIL_ANNOTATION: "true"});
        let failed = desired_status(WorkloadKind::Job, &job, Progress::Ready, &settings, 10, 5);
        assert_eq!(failed["failed"], 3);
        assert_eq!(failed["conditions"][1]["type"], "Failed");
        assert_eq!(failed["conditions"][1]["reason"], "BackoffLimitExceeded");
        assert!(failed.get("completionTime").is_none());
        job["status"] = failed;
        assert!(!needs_reconcile(WorkloadKind::Job, &job));
    }

    #[test]
    fn daemonsets_schedule_one_pod_per_node() {
        let settings = WorkloadSettings {
            nodes: 3,
            ..WorkloadSettings::default()
        };
        let daemonset = json!({"metadata": {"name": "agent", "generation": 2}, "spec": {}});
        let status = desired_status(
            WorkloadKind::DaemonSet,
            &daemonset,
            Progress::Ready,
            &settings,
            0,
            0,
        );
        assert_eq!(status["desiredNumberScheduled"], 3);
        assert_eq!(status["numberReady"], 3);
        assert_eq!(status["numberAvailable"], 3);
        assert_eq!(status["updatedNumberScheduled"], 3);
        assert_eq!(status["observedGeneration"], 2);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn min_available_follows_the_rolling_update_bounds() {
        assert_eq!(deployment_min_available(&deployment(4), 4), 3);
        assert_eq!(deployment_min_available(&deployment(1), 1), 1);
        let recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        assert_eq!(deployment_min_available(&recreate, 2), 2);
        assert_eq!(
            template_hash(&json!({"a": 1})),
            template_hash(&json!({"a": 1}))
        );
        assert!(
            template_hash(&json!({"a": 1}))
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }
}
