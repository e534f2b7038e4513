//! Helm hook annotations, read as Helm 3.17.1 reads them (`releaseutil.SortManifests`).
//!
//! * `helm.sh/hook`: comma-separated events, each trimmed and lower-cased; `test-success` is the
//!   Helm 2 name of `test`. If any listed event is unknown, Helm drops the whole object (it is
//!   neither a hook nor a resource) and only logs it.
//! * `helm.sh/hook-weight`: a decimal integer (Go `strconv.Atoi`: optional sign, no spaces);
//!   anything else is weight 0.
//! * `helm.sh/hook-delete-policy`: comma-separated, trimmed and lower-cased. Helm keeps unknown
//!   policies, which then never match; when none is given at all, Helm applies
//!   `before-hook-creation` when it runs the hook.
//!
//! An object with annotations but without `helm.sh/hook` is an ordinary resource.

use serde_json::{Map, Value};

/// Annotation naming a hook's events.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";
/// Annotation giving a hook's weight.
pub const HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// Annotation giving a hook's delete policies.
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";
/// Annotation that keeps a resource when the release is uninstalled (`keep`).
pub const RESOURCE_POLICY_ANNOTATION: &str = "helm.sh/resource-policy";

/// When a hook runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookEvent {
    /// Before any resource is created.
    PreInstall,
    /// After all resources are created.
    PostInstall,
    /// Before any resource is deleted.
    PreDelete,
    /// After all resources are deleted.
    PostDelete,
    /// Before an upgrade.
    PreUpgrade,
    /// After an upgrade.
    PostUpgrade,
    /// Before a rollback.
    PreRollback,
    /// After a rollback.
    PostRollback,
    /// `helm test` (also written `test-success`).
    Test,
}

impl HookEvent {
    /// Every event, in the order above.
    pub const ALL: [HookEvent; 9] = [
        HookEvent::PreInstall,
        HookEvent::PostInstall,
        HookEvent::PreDelete,
        HookEvent::PostDelete,
        HookEvent::PreUpgrade,
        HookEvent::PostUpgrade,
        HookEvent::PreRollback,
        HookEvent::PostRollback,
        HookEvent::Test,
    ];

    /// The annotation spelling (`pre-install`), also used as upstream's dependency key.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PostInstall => "post-install",
            HookEvent::PreDelete => "pre-delete",
            HookEvent::PostDelete => "post-delete",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostUpgrade => "post-upgrade",
            HookEvent::PreRollback => "pre-rollback",
            HookEvent::PostRollback => "post-rollback",
            HookEvent::Test => "test",
        }
    }

    /// Reads one already trimmed and lower-cased event name.
    fn from_annotation(name: &str) -> Option<HookEvent> {
        if name == "test-success" {
            return Some(HookEvent::Test);
        }
        HookEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == name)
    }
}

impl std::fmt::Display for HookEvent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// When a hook's objects are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookDeletePolicy {
    /// Delete the previous copy before creating the hook again.
    BeforeHookCreation,
    /// Delete after the hook (and every other hook of the event) succeeded.
    HookSucceeded,
    /// Delete when the hook failed.
    HookFailed,
}

impl HookDeletePolicy {
    /// The annotation spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HookDeletePolicy::BeforeHookCreation => "before-hook-creation",
            HookDeletePolicy::HookSucceeded => "hook-succeeded",
            HookDeletePolicy::HookFailed => "hook-failed",
        }
    }

    fn from_annotation(name: &str) -> Option<HookDeletePolicy> {
        [
            HookDeletePolicy::BeforeHookCreation,
            HookDeletePolicy::HookSucceeded,
            HookDeletePolicy::HookFailed,
        ]
        .into_iter()
        .find(|policy| policy.as_str() == name)
    }
}

/// The parsed hook annotations of one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookSpec {
    /// The events, in annotation order (duplicates kept, as Helm keeps them).
    pub events: Vec<HookEvent>,
    /// Execution weight; lower runs first.
    pub weight: i64,
    /// The known delete policies given, in annotation order.
    pub delete_policies: Vec<HookDeletePolicy>,
    /// Delete policies Helm does not know; they never take effect, but their presence stops the
    /// `before-hook-creation` default from applying.
    pub unknown_delete_policies: Vec<String>,
}

impl HookSpec {
    /// The policies Helm applies when it runs the hook: the given ones, or
    /// `before-hook-creation` when the annotation is absent.
    pub fn effective_delete_policies(&self) -> Vec<HookDeletePolicy> {
        if self.delete_policies.is_empty() && self.unknown_delete_policies.is_empty() {
            vec![HookDeletePolicy::BeforeHookCreation]
        } else {
            self.delete_policies.clone()
        }
    }

    /// Whether the hook fires on `event`.
    pub fn runs_on(&self, event: HookEvent) -> bool {
        self.events.contains(&event)
    }

    /// Whether the hook only runs for `helm test` (upstream EMCO leaves these out).
    pub fn is_test_only(&self) -> bool {
        self.events.iter().all(|event| *event == HookEvent::Test)
    }
}

/// What an object's annotations make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookClass {
    /// No `helm.sh/hook` annotation: an ordinary resource.
    Resource,
    /// A hook.
    Hook(HookSpec),
    /// `helm.sh/hook` names an event Helm does not know: Helm drops the object.
    UnknownEvent {
        /// The annotation's value as written.
        annotation: String,
    },
}

/// Classifies an object by its `metadata.annotations` (string values; others are ignored).
pub fn classify(annotations: Option<&Map<String, Value>>) -> HookClass {
    let annotation = |name: &str| annotations.and_then(|map| map.get(name)?.as_str());
    let Some(hook_types) = annotation(HOOK_ANNOTATION) else {
        return HookClass::Resource;
    };
    let mut events = Vec::new();
    for name in hook_types.split(',') {
        match HookEvent::from_annotation(&name.trim().to_lowercase()) {
            Some(event) => events.push(event),
            None => {
                return HookClass::UnknownEvent {
                    annotation: hook_types.to_owned(),
                };
            }
        }
    }
    let weight = annotation(HOOK_WEIGHT_ANNOTATION)
        .and_then(|weight| weight.parse::<i64>().ok())
        .unwrap_or(0);
    let mut delete_policies = Vec::new();
    let mut unknown_delete_policies = Vec::new();
    if let Some(policies) = annotation(HOOK_DELETE_POLICY_ANNOTATION) {
        for name in policies.split(',') {
            let name = name.trim().to_lowercase();
            match HookDeletePolicy::from_annotation(&name) {
                Some(policy) => delete_policies.push(policy),
                None => unknown_delete_policies.push(name),
            }
        }
    }
    HookClass::Hook(HookSpec {
        events,
        weight,
        delete_policies,
        unknown_delete_policies,
    })
}

/// Whether `helm.sh/resource-policy` asks Helm to keep the object on uninstall.
pub fn keeps_on_uninstall(annotations: Option<&Map<String, Value>>) -> bool {
    annotations
        .and_then(|map| map.get(RESOURCE_POLICY_ANNOTATION)?.as_str())
        .is_some_and(|policy| policy.trim().eq_ignore_ascii_case("keep"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn classify_json(annotations: Value) -> HookClass {
        classify(annotations.as_object())
    }

    fn spec(annotations: Value) -> HookSpec {
        match classify_json(annotations) {
            HookClass::Hook(spec) => spec,
            other => panic!("expected a hook, got {other:?}"),
        }
    }

    #[test]
    fn objects_without_the_hook_annotation_are_resources() {
        assert_eq!(classify(None), HookClass::Resource);
        assert_eq!(classify_json(json!({})), HookClass::Resource);
        assert_eq!(
            classify_json(json!({"helm.sh/hook-weight": "3", "team": "a"})),
            HookClass::Resource
        );
    }

    #[test]
    fn events_are_trimmed_lower_cased_and_test_success_is_test() {
        let hook = spec(json!({"helm.sh/hook": " Pre-Install , post-upgrade,test-success"}));
        assert_eq!(
            hook.events,
            [
                HookEvent::PreInstall,
                HookEvent::PostUpgrade,
                HookEvent::Test
            ]
        );
        assert!(hook.runs_on(HookEvent::PreInstall));
        assert!(!hook.runs_on(HookEvent::PostInstall));
        assert!(!hook.is_test_only());
        assert!(spec(json!({"helm.sh/hook": "test"})).is_test_only());
        for event in HookEvent::ALL {
            let parsed = spec(json!({"helm.sh/hook": event.as_str()}));
            assert_eq!(parsed.events, [event]);
        }
    }

    #[test]
    fn an_unknown_event_drops_the_object_like_helm() {
        assert_eq!(
            classify_json(json!({"helm.sh/hook": "pre-install,bogus"})),
            HookClass::UnknownEvent {
                annotation: "pre-install,bogus".to_owned()
            }
        );
        // An empty annotation is an unknown (empty) event name.
        assert!(matches!(
            classify_json(json!({"helm.sh/hook": ""})),
            HookClass::UnknownEvent { .. }
        ));
        assert!(matches!(
            classify_json(json!({"helm.sh/hook": "pre-install,"})),
            HookClass::UnknownEvent { .. }
        ));
    }

    #[test]
    fn weight_parses_like_go_atoi() {
        let weight = |text: &str| {
            spec(json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": text})).weight
        };
        assert_eq!(weight("5"), 5);
        assert_eq!(weight("-10"), -10);
        assert_eq!(weight("+3"), 3);
        assert_eq!(weight(" 5"), 0);
        assert_eq!(weight("1.5"), 0);
        assert_eq!(weight("ten"), 0);
        assert_eq!(weight(""), 0);
        assert_eq!(spec(json!({"helm.sh/hook": "pre-install"})).weight, 0);
    }

    #[test]
    fn delete_policies_are_parsed_and_defaulted_like_helm() {
        let hook = spec(json!({
            "helm.sh/hook": "pre-install",
            "helm.sh/hook-delete-policy": "before-hook-creation, Hook-Succeeded,hook-failed"
        }));
        assert_eq!(
            hook.delete_policies,
            [
                HookDeletePolicy::BeforeHookCreation,
                HookDeletePolicy::HookSucceeded,
                HookDeletePolicy::HookFailed
            ]
        );
        assert_eq!(hook.effective_delete_policies(), hook.delete_policies);

        let none = spec(json!({"helm.sh/hook": "post-install"}));
        assert!(none.delete_policies.is_empty());
        assert_eq!(
            none.effective_delete_policies(),
            [HookDeletePolicy::BeforeHookCreation]
        );

        // A misspelt policy is kept aside and suppresses the default, so nothing is deleted.
        let typo = spec(json!({
            "helm.sh/hook": "post-install",
            "helm.sh/hook-delete-policy": "hook-suceeded"
        }));
        assert_eq!(typo.unknown_delete_policies, ["hook-suceeded"]);
        assert!(typo.effective_delete_policies().is_empty());
    }

    #[test]
    fn resource_policy_keep() {
        assert!(keeps_on_uninstall(
            json!({"helm.sh/resource-policy": " Keep "}).as_object()
        ));
        assert!(!keeps_on_uninstall(
            json!({"helm.sh/resource-policy": "delete"}).as_object()
        ));
        assert!(!keeps_on_uninstall(None));
    }

    #[test]
    fn hook_types_serialize_with_annotation_spelling() {
        assert_eq!(
            serde_json::to_value(HookEvent::PreInstall).unwrap(),
            json!("pre-install")
        );
        assert_eq!(
            serde_json::to_value(HookDeletePolicy::HookSucceeded).unwrap(),
            json!("hook-succeeded")
        );
        assert_eq!(HookEvent::PostDelete.to_string(), "post-delete");
    }
}
