//! A rendered Helm release as the AppContext's objects: CRDs first, resources in Helm's install
//! order, hooks with their install/delete events, weights and delete policies.

use emco_core::appcontext::{ContextObject, DeletePolicy, HookEvents, Phase};
use emco_helm::{HookDeletePolicy, HookEvent, Release, RenderedObject};

fn context_object(object: &RenderedObject, phase: Phase) -> ContextObject {
    ContextObject {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        name: object.name.clone(),
        namespace: object.namespace.clone(),
        phase,
        delete_policies: Vec::new(),
        keep_on_uninstall: object.keep_on_uninstall(),
        object: object.object.clone(),
    }
}

/// The objects of `release`. Hooks that only run at test are left out; CRDs from a chart's
/// `crds/` directory are kept on uninstall, as Helm keeps them.
pub fn from_release(release: &Release) -> Vec<ContextObject> {
    let mut objects = Vec::with_capacity(release.crds.len() + release.resources.len());
    for crd in &release.crds {
        let mut object = context_object(crd, Phase::Crd);
        object.keep_on_uninstall |= crd.from_crds_dir();
        objects.push(object);
    }
    for (order, resource) in release.resources.iter().enumerate() {
        let order = u32::try_from(order).unwrap_or(u32::MAX);
        objects.push(context_object(resource, Phase::Resource { order }));
    }
    for hook in &release.hooks {
        let events = HookEvents {
            pre_install: hook.spec.runs_on(HookEvent::PreInstall),
            post_install: hook.spec.runs_on(HookEvent::PostInstall),
            pre_delete: hook.spec.runs_on(HookEvent::PreDelete),
            post_delete: hook.spec.runs_on(HookEvent::PostDelete),
            pre_upgrade: hook.spec.runs_on(HookEvent::PreUpgrade),
            post_upgrade: hook.spec.runs_on(HookEvent::PostUpgrade),
            pre_rollback: hook.spec.runs_on(HookEvent::PreRollback),
            post_rollback: hook.spec.runs_on(HookEvent::PostRollback),
        };
        if events.is_empty() {
            continue;
        }
        let mut object = context_object(
            &hook.object,
            Phase::Hook {
                weight: hook.spec.weight,
                events,
            },
        );
        object.delete_policies = hook
            .spec
            .effective_delete_policies()
            .into_iter()
            .map(|policy| match policy {
                HookDeletePolicy::BeforeHookCreation => DeletePolicy::BeforeHookCreation,
                HookDeletePolicy::HookSucceeded => DeletePolicy::HookSucceeded,
                HookDeletePolicy::HookFailed => DeletePolicy::HookFailed,
            })
            .collect();
        object.delete_policies.dedup();
        objects.push(object);
    }
    objects
}

/// An object a controller handed back (a Kubernetes manifest) as a context object: one that
/// matches an object of `existing` (API group, kind, namespace, name) keeps its place, phase
/// and policies; a new one is installed after the app's resources, namespaced objects in
/// `namespace` unless they name their own.
pub fn from_manifest(
    mut object: serde_json::Value,
    existing: &[ContextObject],
    namespace: &str,
) -> Result<ContextObject, String> {
    let text = |object: &serde_json::Value, pointer: &str| {
        object
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let api_version = text(&object, "/apiVersion");
    let kind = text(&object, "/kind");
    let name = text(&object, "/metadata/name");
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err("an object without apiVersion, kind or metadata.name".into());
    }
    let group = emco_helm::scope::api_group(&api_version).to_owned();
    let namespace = if emco_helm::scope::is_builtin_cluster_scoped(&group, &kind) {
        None
    } else {
        let given = text(&object, "/metadata/namespace");
        let namespace = if given.is_empty() {
            namespace.to_owned()
        } else {
            given
        };
        object["metadata"]["namespace"] = serde_json::Value::String(namespace.clone());
        Some(namespace)
    };
    if let Some(known) = existing.iter().find(|known| {
        known.group() == group
            && known.kind == kind
            && known.name == name
            && known.namespace == namespace
    }) {
        return Ok(ContextObject {
            api_version,
            object,
            ..known.clone()
        });
    }
    let order = existing
        .iter()
        .filter_map(|known| match known.phase {
            Phase::Resource { order } => Some(order),
            _ => None,
        })
        .max()
        .map_or(0, |max| max.saturating_add(1));
    Ok(ContextObject {
        api_version,
        kind,
        name,
        namespace,
        phase: Phase::Resource { order },
        delete_policies: Vec::new(),
        keep_on_uninstall: false,
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"---
# Source: app/crds/widget.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
---
# Source: app/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  annotations:
    helm.sh/resource-policy: keep
---
# Source: app/templates/hook.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    helm.sh/hook: pre-install,pre-delete
    helm.sh/hook-weight: "-3"
    helm.sh/hook-delete-policy: hook-succeeded
---
# Source: app/templates/upgrade.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: on-upgrade
  annotations:
    helm.sh/hook: pre-upgrade
---
# Source: app/templates/test.yaml
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  annotations:
    helm.sh/hook: test
"#;

    #[test]
    fn a_release_becomes_phased_objects() {
        let release = Release::from_rendered(RENDERED, "r1", "apps").unwrap();
        let objects = from_release(&release);
        let summary: Vec<(&str, Phase, bool)> = objects
            .iter()
            .map(|o| (o.name.as_str(), o.phase, o.keep_on_uninstall))
            .collect();
        let hook = Phase::Hook {
            weight: -3,
            events: HookEvents {
                pre_install: true,
                pre_delete: true,
                ..HookEvents::default()
            },
        };
        let upgrade = Phase::Hook {
            weight: 0,
            events: HookEvents {
                pre_upgrade: true,
                ..HookEvents::default()
            },
        };
        assert_eq!(
            summary,
            [
                ("widgets.example.com", Phase::Crd, true),
                ("settings", Phase::Resource { order: 0 }, true),
                ("web", Phase::Resource { order: 1 }, false),
                ("migrate", hook, false),
                ("on-upgrade", upgrade, false),
            ]
        );
        assert_eq!(objects[3].delete_policies, [DeletePolicy::HookSucceeded]);
        assert_eq!(objects[2].namespace.as_deref(), Some("apps"));
        assert_eq!(objects[2].object["metadata"]["namespace"], "apps");
    }
}
