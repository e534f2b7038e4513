//! Whether an applied object is ready, judged from the object alone (no I/O): workloads by
//! their status, everything else once it exists.

use serde_json::Value;

/// How far an object is from serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Serving (or, for kinds without a status to wait for, existing).
    Ready,
    /// Not yet; the reason says what is missing.
    NotReady(String),
    /// Will not become ready without a change (a failed Job or Pod, a stalled rollout).
    Failed(String),
}

/// The workload kinds whose readiness is read from their status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    Pod,
    CertificateSigningRequest,
}

fn workload(api_version: &str, kind: &str) -> Option<Workload> {
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => Some(Workload::Deployment),
        ("apps", "StatefulSet") => Some(Workload::StatefulSet),
        ("apps" | "extensions", "DaemonSet") => Some(Workload::DaemonSet),
        ("batch", "Job") => Some(Workload::Job),
        ("", "Pod") => Some(Workload::Pod),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            Some(Workload::CertificateSigningRequest)
        }
        _ => None,
    }
}

/// Whether readiness of this kind is read from the object's status. Objects of other kinds are
/// ready once they exist, so the synchronizer need not read their apply answers.
pub fn reads_status(api_version: &str, kind: &str) -> bool {
    workload(api_version, kind).is_some()
}

/// The readiness of `obj` as read back from a cluster: Deployments when `Available` and
/// observed at their generation, StatefulSets and DaemonSets when all replicas are ready, Jobs
/// when complete, Pods when ready, CertificateSigningRequests once signed; other kinds as soon
/// as they exist.
pub fn readiness(obj: &Value) -> Readiness {
    let text = |key| obj.get(key).and_then(Value::as_str).unwrap_or_default();
    match workload(text("apiVersion"), text("kind")) {
        Some(Workload::Deployment) => deployment(obj),
        Some(Workload::StatefulSet) => stateful_set(obj),
        Some(Workload::DaemonSet) => daemon_set(obj),
        Some(Workload::Job) => job(obj),
        Some(Workload::Pod) => pod(obj),
        Some(Workload::CertificateSigningRequest) => certificate_request(obj),
        None => Readiness::Ready,
    }
}

/// A CertificateSigningRequest is ready once its certificate is issued; denied or failed is
/// for good.
fn certificate_request(obj: &Value) -> Readiness {
    let conditions = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for condition in &conditions {
        let kind = condition.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(kind, "Denied" | "Failed")
            && condition.get("status").and_then(Value::as_str) != Some("False")
        {
            let why = condition
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or(kind);
            return Readiness::Failed(format!("the certificate request was {kind}: {why}"));
        }
    }
    let signed = obj
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|certificate| !certificate.is_empty());
    if signed {
        Readiness::Ready
    } else if conditions
        .iter()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("Approved"))
    {
        Readiness::NotReady("approved, waiting for the certificate".into())
    } else {
        Readiness::NotReady("waiting for approval".into())
    }
}

fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// The condition of `type_` in `status.conditions`, if any.
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|condition| condition.get("type").and_then(Value::as_str) == Some(type_))
}

fn is_true(condition: Option<&Value>) -> bool {
    condition
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// The reason and message of a condition, for people.
fn explain(condition: &Value, fallback: &str) -> String {
    let text = |key| {
        condition
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match (text("reason"), text("message")) {
        ("", "") => fallback.to_owned(),
        (reason, "") => reason.to_owned(),
        ("", message) => message.to_owned(),
        (reason, message) => format!("{reason}: {message}"),
    }
}

/// NotReady while the controller has not yet seen the latest spec.
fn observed(obj: &Value) -> Result<(), Readiness> {
    let generation = int(obj, "/metadata/generation").unwrap_or(0);
    match int(obj, "/status/observedGeneration") {
        Some(observed) if observed >= generation => Ok(()),
        Some(observed) => Err(Readiness::NotReady(format!(
            "generation {generation} not yet observed (at {observed})"
        ))),
        None => Err(Readiness::NotReady("no status yet".into())),
    }
}

fn deployment(obj: &Value) -> Readiness {
    if let Some(progressing) = condition(obj, "Progressing")
        && progressing.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        return Readiness::Failed(explain(progressing, "ProgressDeadlineExceeded"));
    }
    if let Err(not_yet) = observed(obj) {
        return not_yet;
    }
    let available = condition(obj, "Available");
    if is_true(available) {
        Readiness::Ready
    } else {
        Readiness::NotReady(available.map_or_else(
            || "not yet Available".to_owned(),
            |condition| explain(condition, "not yet Available"),
        ))
    }
}

fn stateful_set(obj: &Value) -> Readiness {
    if let Err(not_yet) = observed(obj) {
        return not_yet;
    }
    let wanted = int(obj, "/spec/replicas").unwrap_or(1);
    let ready = int(obj, "/status/readyReplicas").unwrap_or(0);
    if ready >= wanted {
        Readiness::Ready
    } else {
        Readiness::NotReady(format!("{ready} of {wanted} replicas ready"))
    }
}

fn daemon_set(obj: &Value) -> Readiness {
    if let Err(not_yet) = observed(obj) {
        return not_yet;
    }
    let (Some(desired), ready) = (
        int(obj, "/status/desiredNumberScheduled"),
        int(obj, "/status/numberReady").unwrap_or(0),
    ) else {
        return Readiness::NotReady("not yet scheduled".into());
    };
    if ready >= desired {
        Readiness::Ready
    } else {
        Readiness::NotReady(format!("{ready} of {desired} pods ready"))
    }
}

fn job(obj: &Value) -> Readiness {
    if let Some(failed) = condition(obj, "Failed").filter(|c| is_true(Some(c))) {
        return Readiness::Failed(explain(failed, "Job failed"));
    }
    if is_true(condition(obj, "Complete")) {
        Readiness::Ready
    } else {
        Readiness::NotReady("not yet complete".into())
    }
}

fn pod(obj: &Value) -> Readiness {
    match obj.pointer("/status/phase").and_then(Value::as_str) {
        // A pod that ran to completion (a hook, a test) has done its job.
        Some("Succeeded") => return Readiness::Ready,
        Some("Failed") => {
            let reason = obj
                .pointer("/status/reason")
                .and_then(Value::as_str)
                .unwrap_or("Pod failed");
            return Readiness::Failed(reason.to_owned());
        }
        _ => {}
    }
    if is_true(condition(obj, "Ready")) {
        Readiness::Ready
    } else {
        Readiness::NotReady("not yet Ready".into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn not_ready(readiness: &Readiness) -> bool {
        matches!(readiness, Readiness::NotReady(_))
    }

    #[test]
    fn deployments_need_available_at_their_generation() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2},
        });
        assert_eq!(
            readiness(&deployment),
            Readiness::NotReady("no status yet".into())
        );
        deployment["status"] = json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Available", "status": "True"}],
        });
        assert!(not_ready(&readiness(&deployment)), "old generation");
        deployment["status"] = json!({
            "observedGeneration": 2,
            "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}],
        });
        assert_eq!(
            readiness(&deployment),
            Readiness::NotReady("MinimumReplicasUnavailable".into())
        );
        deployment["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(readiness(&deployment), Readiness::Ready);
        deployment["status"]["conditions"] = json!([
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet web-1 has timed out progressing."},
        ]);
        assert_eq!(
            readiness(&deployment),
            Readiness::Failed(
                "ProgressDeadlineExceeded: ReplicaSet web-1 has timed out progressing.".into()
            )
        );
    }

    #[test]
    fn stateful_sets_need_all_replicas_ready() {
        let mut set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 2},
        });
        assert_eq!(
            readiness(&set),
            Readiness::NotReady("2 of 3 replicas ready".into())
        );
        set["status"]["readyReplicas"] = json!(3);
        assert_eq!(readiness(&set), Readiness::Ready);
        set["metadata"]["generation"] = json!(2);
        assert!(not_ready(&readiness(&set)));
        // Scaled to zero: nothing to wait for.
        let empty = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 0}, "status": {"observedGeneration": 1},
        });
        assert_eq!(readiness(&empty), Readiness::Ready);
    }

    #[test]
    fn daemon_sets_need_every_scheduled_pod_ready() {
        let mut set = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberReady": 1},
        });
        assert_eq!(
            readiness(&set),
            Readiness::NotReady("1 of 3 pods ready".into())
        );
        set["status"]["numberReady"] = json!(3);
        assert_eq!(readiness(&set), Readiness::Ready);
        set["status"] = json!({"observedGeneration": 1});
        assert!(not_ready(&readiness(&set)));
    }

    #[test]
    fn jobs_complete_or_fail() {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate"}, "status": {"active": 1},
        });
        assert!(not_ready(&readiness(&job)));
        job["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        assert_eq!(readiness(&job), Readiness::Ready);
        job["status"]["conditions"] = json!([
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
        ]);
        assert_eq!(
            readiness(&job),
            Readiness::Failed("BackoffLimitExceeded".into())
        );
    }

    #[test]
    fn pods_need_the_ready_condition() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"phase": "Pending"},
        });
        assert!(not_ready(&readiness(&pod)));
        pod["status"] =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(readiness(&pod), Readiness::Ready);
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(readiness(&pod), Readiness::Ready);
        pod["status"] = json!({"phase": "Failed", "reason": "Evicted"});
        assert_eq!(readiness(&pod), Readiness::Failed("Evicted".into()));
    }

    #[test]
    fn other_kinds_are_ready_once_they_exist() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
            json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"}}),
        ] {
            assert_eq!(readiness(&obj), Readiness::Ready, "{obj}");
            let text = |key: &str| obj[key].as_str().unwrap_or_default().to_owned();
            assert!(!reads_status(&text("apiVersion"), &text("kind")), "{obj}");
        }
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("extensions/v1beta1", "DaemonSet"),
            ("apps/v1", "StatefulSet"),
            ("batch/v1", "Job"),
            ("v1", "Pod"),
        ] {
            assert!(reads_status(api_version, kind), "{kind}");
        }
    }
}
