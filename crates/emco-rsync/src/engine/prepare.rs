//! Objects made ready to apply: each gets the `emco/deployment-id` label (on the object and on
//! the pod templates of workloads, so their pods can be found by it too) and its namespace, once
//! per app variant; every cluster receiving the variant shares the result.

use std::sync::Arc;

use emco_core::appcontext::{ContextObject, DeletePolicy, Phase};
use serde_json::{Map, Value};

use crate::cluster::ApplyRequest;
use crate::readiness::reads_status;

/// The label every applied object carries.
pub const DEPLOYMENT_ID_LABEL: &str = "emco/deployment-id";

/// Longest label value Kubernetes accepts.
const LABEL_VALUE_MAX: usize = 63;

/// The `emco/deployment-id` value of an app of a context: `{ctx}-{app}`, as upstream.
///
/// Label values are limited to 63 characters. A longer value is shortened to its first 46
/// characters, a `-` and 16 hex digits of the FNV-1a 64 hash of the full value (63 in all), so
/// it stays unique per (context, app) and still starts with the context id.
pub fn deployment_id(context_id: &str, app: &str) -> String {
    let full = format!("{context_id}-{app}");
    if full.len() <= LABEL_VALUE_MAX {
        return full;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in full.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut cut = LABEL_VALUE_MAX - 17;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    // A label value must end (and the kept part may not end awkwardly before the hash) with an
    // alphanumeric character; the hash supplies the end.
    format!("{}-{hash:016x}", &full[..cut])
}

/// How a hook's copies are cleaned up (Helm's `helm.sh/hook-delete-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookPolicy {
    /// Delete an existing copy (and wait until it is gone) before creating the hook; Helm's
    /// default when a hook names no policy.
    pub before_creation: bool,
    pub delete_on_success: bool,
    pub delete_on_failure: bool,
}

impl HookPolicy {
    fn from_policies(policies: &[DeletePolicy]) -> Self {
        if policies.is_empty() {
            return Self {
                before_creation: true,
                delete_on_success: false,
                delete_on_failure: false,
            };
        }
        Self {
            before_creation: policies.contains(&DeletePolicy::BeforeHookCreation),
            delete_on_success: policies.contains(&DeletePolicy::HookSucceeded),
            delete_on_failure: policies.contains(&DeletePolicy::HookFailed),
        }
    }
}

/// One object ready to apply.
#[derive(Debug)]
pub struct PreparedObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// `Some` for hooks.
    pub hook: Option<HookPolicy>,
    /// Whether a hook of this kind runs to completion (Jobs, Pods) and is waited for; other
    /// hook kinds are done once they exist.
    pub runs_to_completion: bool,
    /// The apply of the object, labelled and serialized once for every cluster; the answer is
    /// read only where readiness or a hook's outcome needs the object's status.
    pub apply: ApplyRequest,
    /// For a CertificateSigningRequest annotated [`APPROVE_ANNOTATION`]: the reason to approve
    /// it with once applied.
    pub approve: Option<String>,
}

/// Annotation asking the synchronizer to approve the CertificateSigningRequest it applies; its
/// value is the approval's reason (a logical cloud's user certificate: `LogicalCloud`).
pub const APPROVE_ANNOTATION: &str = "emco/approve";

impl PreparedObject {
    /// `Kind/namespace/name` for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}/{namespace}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    pub fn is_hook(&self) -> bool {
        self.hook.is_some()
    }
}

/// One variant of an app, prepared, with the application order of each step as indices into
/// `objects` (the variant's install order).
#[derive(Debug)]
pub struct PreparedVariant {
    pub objects: Vec<PreparedObject>,
    pub crds: Vec<usize>,
    pub pre_install: Vec<usize>,
    pub resources: Vec<usize>,
    pub post_install: Vec<usize>,
    pub pre_delete: Vec<usize>,
    pub post_delete: Vec<usize>,
    pub pre_upgrade: Vec<usize>,
    pub post_upgrade: Vec<usize>,
    pub pre_rollback: Vec<usize>,
    pub post_rollback: Vec<usize>,
    /// Non-hook objects to delete on terminate, in reverse install order, without the ones
    /// kept on uninstall.
    pub uninstall: Vec<usize>,
    /// Hook objects to delete at the end of a terminate (after the post-delete hooks), in
    /// reverse order, without the ones kept on uninstall.
    pub hook_uninstall: Vec<usize>,
}

impl PreparedVariant {
    /// Every object a terminate deletes: resources, then hooks.
    pub fn to_delete(&self) -> impl Iterator<Item = usize> + '_ {
        self.uninstall.iter().chain(&self.hook_uninstall).copied()
    }

    /// Whether the object at `index` counts for the app's readiness (hooks do not).
    pub fn tracks_readiness(&self, index: usize) -> bool {
        self.objects
            .get(index)
            .is_some_and(|object| !object.is_hook())
    }
}

/// Prepares a variant's objects (already in install order) for the app labelled `label`.
pub fn prepare(objects: &[ContextObject], label: &str) -> Arc<PreparedVariant> {
    let mut prepared = PreparedVariant {
        objects: Vec::with_capacity(objects.len()),
        crds: Vec::new(),
        pre_install: Vec::new(),
        resources: Vec::new(),
        post_install: Vec::new(),
        pre_delete: Vec::new(),
        post_delete: Vec::new(),
        pre_upgrade: Vec::new(),
        post_upgrade: Vec::new(),
        pre_rollback: Vec::new(),
        post_rollback: Vec::new(),
        uninstall: Vec::new(),
        hook_uninstall: Vec::new(),
    };
    let mut hook_weights: Vec<(usize, i64)> = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let hook = match object.phase {
            Phase::Crd => {
                prepared.crds.push(index);
                None
            }
            Phase::Resource { .. } => {
                prepared.resources.push(index);
                None
            }
            Phase::Hook { weight, .. } => {
                hook_weights.push((index, weight));
                Some(HookPolicy::from_policies(&object.delete_policies))
            }
        };
        if !object.keep_on_uninstall {
            match hook {
                None => prepared.uninstall.push(index),
                Some(_) => prepared.hook_uninstall.push(index),
            }
        }
        let runs_to_completion = matches!(
            (object.group(), object.kind.as_str()),
            ("batch", "Job") | ("", "Pod")
        );
        let labelled_object = labelled(object, label);
        let apply = ApplyRequest::at(
            &object.api_version,
            &object.kind,
            &object.name,
            object.namespace.as_deref(),
            &labelled_object,
        )
        .with_answer(reads_status(&object.api_version, &object.kind));
        prepared.objects.push(PreparedObject {
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            name: object.name.clone(),
            namespace: object.namespace.clone(),
            hook,
            runs_to_completion,
            apply,
            approve: (object.group() == "certificates.k8s.io"
                && object.kind == "CertificateSigningRequest")
                .then(|| {
                    object
                        .object
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(APPROVE_ANNOTATION))
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                })
                .flatten(),
        });
    }
    prepared.uninstall.reverse();
    prepared.hook_uninstall.reverse();
    // Each event's hooks by weight; equal weights keep the variant's order (stable sort).
    hook_weights.sort_by_key(|(_, weight)| *weight);
    for (index, _) in hook_weights {
        let Phase::Hook { events, .. } = objects[index].phase else {
            continue;
        };
        if events.pre_install {
            prepared.pre_install.push(index);
        }
        if events.post_install {
            prepared.post_install.push(index);
        }
        if events.pre_delete {
            prepared.pre_delete.push(index);
        }
        if events.post_delete {
            prepared.post_delete.push(index);
        }
        if events.pre_upgrade {
            prepared.pre_upgrade.push(index);
        }
        if events.post_upgrade {
            prepared.post_upgrade.push(index);
        }
        if events.pre_rollback {
            prepared.pre_rollback.push(index);
        }
        if events.post_rollback {
            prepared.post_rollback.push(index);
        }
    }
    Arc::new(prepared)
}

/// `map[key]` as an object, created (or replaced, when it is not an object) as needed.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("just made an object"),
    }
}

fn add_label(metadata: &mut Map<String, Value>, label: &str) {
    object_at(metadata, "labels").insert(DEPLOYMENT_ID_LABEL.to_owned(), Value::from(label));
}

/// The object with the label on it and on its pod template(s), and its namespace set.
fn labelled(object: &ContextObject, label: &str) -> Value {
    let mut value = object.object.clone();
    let Some(root) = value.as_object_mut() else {
        return value;
    };
    let metadata = object_at(root, "metadata");
    add_label(metadata, label);
    if let Some(namespace) = &object.namespace
        && !metadata.contains_key("namespace")
    {
        metadata.insert("namespace".into(), Value::from(namespace.as_str()));
    }
    let template_paths: &[&[&str]] = match (object.group(), object.kind.as_str()) {
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => &[&["spec", "template"]],
        ("batch", "CronJob") => &[&["spec", "jobTemplate", "spec", "template"]],
        _ => &[],
    };
    for path in template_paths {
        let mut cursor = Some(&mut *root);
        for step in *path {
            cursor = cursor
                .and_then(|map| map.get_mut(*step))
                .and_then(Value::as_object_mut);
        }
        if let Some(template) = cursor {
            add_label(object_at(template, "metadata"), label);
        }
    }
    value
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use emco_core::appcontext::HookEvents;
    use serde_json::json;

    use super::*;

    fn object(
        kind: &str,
        api_version: &str,
        name: &str,
        phase: Phase,
        body: Value,
    ) -> ContextObject {
        ContextObject {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: Some("demo".into()),
            phase,
            delete_policies: vec![],
            keep_on_uninstall: false,
            object: body,
        }
    }

    #[test]
    fn short_ids_are_kept_and_long_ones_shortened_uniquely() {
        assert_eq!(
            deployment_id("0123456789abcdef", "web"),
            "0123456789abcdef-web"
        );
        let long_app = "a".repeat(60);
        let one = deployment_id("0123456789abcdef", &long_app);
        let other = deployment_id("0123456789abcdef", &format!("{long_app}b"));
        assert_eq!(one.len(), 63);
        assert_ne!(one, other);
        assert!(one.starts_with("0123456789abcdef-aaa"));
        assert!(one.chars().last().unwrap().is_ascii_alphanumeric());
        assert_eq!(
            one,
            deployment_id("0123456789abcdef", &long_app),
            "deterministic"
        );
    }

    #[test]
    fn labels_reach_objects_and_pod_templates() {
        let deployment = object(
            "Deployment",
            "apps/v1",
            "web",
            Phase::Resource { order: 0 },
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}}}),
        );
        let cron = object(
            "CronJob",
            "batch/v1",
            "tick",
            Phase::Resource { order: 1 },
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "other"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}),
        );
        let prepared = prepare(&[deployment, cron], "ctx-web");
        let body = |index: usize| -> Value {
            serde_json::from_slice(prepared.objects[index].apply.body()).unwrap()
        };
        let web = &body(0);
        assert_eq!(web["metadata"]["labels"][DEPLOYMENT_ID_LABEL], "ctx-web");
        assert_eq!(web["metadata"]["namespace"], "demo");
        assert_eq!(web["spec"]["template"]["metadata"]["labels"]["app"], "web");
        assert_eq!(
            web["spec"]["template"]["metadata"]["labels"][DEPLOYMENT_ID_LABEL],
            "ctx-web"
        );
        let tick = &body(1);
        // Only workloads' apply answers are read (for their status).
        assert!(prepared.objects[0].apply.wants_answer());
        assert!(!prepared.objects[1].apply.wants_answer());
        assert_eq!(
            tick["metadata"]["namespace"], "other",
            "the object's own namespace wins"
        );
        assert_eq!(
            tick["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
                [DEPLOYMENT_ID_LABEL],
            "ctx-web"
        );
    }

    #[test]
    fn steps_follow_phases_weights_and_policies() {
        let hook = |name: &str, weight: i64, events: HookEvents, policies: Vec<DeletePolicy>| {
            let mut hook = object(
                "Job",
                "batch/v1",
                name,
                Phase::Hook { weight, events },
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}}),
            );
            hook.delete_policies = policies;
            hook
        };
        let both = HookEvents {
            pre_install: true,
            post_install: true,
            ..HookEvents::default()
        };
        let delete = HookEvents {
            pre_delete: true,
            ..HookEvents::default()
        };
        let mut kept = object(
            "ConfigMap",
            "v1",
            "kept",
            Phase::Resource { order: 1 },
            json!({}),
        );
        kept.keep_on_uninstall = true;
        let objects = vec![
            object(
                "CustomResourceDefinition",
                "apiextensions.k8s.io/v1",
                "w",
                Phase::Crd,
                json!({}),
            ),
            hook("late", 5, both, vec![DeletePolicy::HookSucceeded]),
            hook("early", -1, both, vec![]),
            object(
                "ConfigMap",
                "v1",
                "a",
                Phase::Resource { order: 0 },
                json!({}),
            ),
            kept,
            hook("cleanup", 0, delete, vec![DeletePolicy::HookFailed]),
            {
                let mut kept_hook = hook("kept-hook", 0, delete, vec![]);
                kept_hook.keep_on_uninstall = true;
                kept_hook
            },
        ];
        let prepared = prepare(&objects, "l");
        assert_eq!(prepared.crds, [0]);
        assert_eq!(prepared.pre_install, [2, 1]);
        assert_eq!(prepared.post_install, [2, 1]);
        assert_eq!(prepared.pre_delete, [5, 6]);
        assert_eq!(
            prepared.hook_uninstall,
            [5, 2, 1],
            "every hook but the kept one, reverse order"
        );
        assert_eq!(prepared.resources, [3, 4]);
        assert_eq!(
            prepared.uninstall,
            [3, 0],
            "reverse order, hooks and kept objects skipped"
        );
        assert!(
            prepared.objects[2].hook.unwrap().before_creation,
            "default policy"
        );
        let late = prepared.objects[1].hook.unwrap();
        assert!(!late.before_creation && late.delete_on_success && !late.delete_on_failure);
        assert!(prepared.objects[5].hook.unwrap().delete_on_failure);
        assert!(prepared.objects[1].runs_to_completion);
        assert!(!prepared.objects[3].runs_to_completion);
        assert!(!prepared.tracks_readiness(1) && prepared.tracks_readiness(3));
    }
}
