//! Orchestrator kinds: projects, composite apps and their apps, profiles, deployment intent
//! groups and their intents, placement intents, controllers and services.

use super::common::{metadata, metadata_omitempty, name, name_rule};
use super::dsl::{
    Branch, Schema, StructRule, array, integer, kept, map, omitempty, pattern, string, structure,
};

pattern!(OP_STATUS = "^([Rr][Ee][Aa][Dd][Yy]|[Dd][Ee][Pp][Ll][Oo][Yy][Ee][Dd])$");

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("project", metadata_only()),
        ("compositeApp", composite_app()),
        ("app", metadata_only()),
        ("appDependency", app_dependency()),
        ("compositeProfile", metadata_only()),
        // Upstream checks app profiles with `metadata.json` only: `spec.app` is left to the
        // reference check.
        ("appProfile", metadata_only()),
        ("deploymentIntentGroup", deployment_intent_group()),
        ("groupIntent", group_intent()),
        ("genericPlacementIntent", metadata_only()),
        ("genericAppPlacementIntent", app_placement_intent()),
        ("controller", controller()),
        ("service", service()),
    ]
}

/// `metadata.json`.
fn metadata_only() -> Schema {
    structure([metadata()]).into()
}

/// `composite-app.json`. Upstream's file puts the version rule beside `properties` instead of
/// inside it, so it never runs, and a composite-app update body may leave the version out. We
/// check the version when one is given, since it becomes a key and a URL segment.
fn composite_app() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([omitempty("compositeAppVersion", name())]),
        ),
    ])
    .into()
}

/// `app-dependency.json` on a spec whose fields have `omitempty`.
fn app_dependency() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                omitempty("app", name()).required(),
                omitempty("opStatus", string().max_chars(128).pattern(&OP_STATUS)).required(),
                omitempty("wait", integer().min(0).max(4096)),
            ]),
        ),
    ])
    .into()
}

/// `deployment-group-intent.json`. `overrideValues` and each override's `values` are typed on Go
/// slices and maps without `omitempty`, so both must be given (possibly empty).
fn deployment_intent_group() -> Schema {
    let override_values = structure([
        kept("app", string()),
        kept("values", map(string().max_chars(128))),
    ]);
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("compositeProfile", name()).required(),
                kept("version", name()).required(),
                kept("logicalCloud", name()).required(),
                kept("overrideValues", array(override_values)),
            ]),
        ),
    ])
    .into()
}

/// `deployment-intent.json`: `spec.intent` maps controller names to intent names.
fn group_intent() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([kept("intent", map(string().max_chars(128))).required()]),
        ),
    ])
    .into()
}

/// The three members naming clusters in a placement entry, all `omitempty`.
fn cluster_members() -> [super::dsl::Field; 3] {
    [
        omitempty("clusterProvider", string().max_chars(128)),
        omitempty("clusterLabel", string().max_chars(128)),
        omitempty("cluster", string().max_chars(128)),
    ]
}

fn by_name() -> Branch {
    Branch::new("clusterProvider and cluster, without clusterLabel")
        .requires(["clusterProvider", "cluster"])
        .forbids(["clusterLabel"])
}

fn by_label() -> Branch {
    Branch::new("clusterProvider and clusterLabel, without cluster")
        .requires(["clusterProvider", "clusterLabel"])
        .forbids(["cluster"])
}

/// `#/definitions/clusterSpecific`: one cluster, by name or by label.
fn cluster_specific() -> StructRule {
    structure(cluster_members()).one_of([by_name(), by_label()])
}

/// `#/definitions/allOfItem`: one cluster by name or by label, or a nested `anyOf` list.
fn all_of_item() -> StructRule {
    let [provider, label, cluster] = cluster_members();
    structure([
        provider,
        label,
        cluster,
        omitempty("anyOf", array(cluster_specific())),
    ])
    .one_of([
        by_name(),
        Branch::new("anyOf").requires(["anyOf"]),
        by_label(),
    ])
}

/// `generic-placement-intent-app.json`, on Go structs whose fields all have `omitempty`.
fn app_placement_intent() -> Schema {
    structure([
        metadata_omitempty(),
        kept(
            "spec",
            structure([
                omitempty("app", string().max_chars(128)).required(),
                kept(
                    "intent",
                    structure([
                        omitempty("selector", string().one_of(&["name", "label"])),
                        omitempty("anyOf", array(cluster_specific())),
                        omitempty("allOf", array(all_of_item())),
                    ]),
                )
                .required(),
            ]),
        ),
    ])
    .into()
}

/// `orchestrator/controller.json`. Go encodes every spec field, so a missing port or priority is
/// zero, which the bounds allow (the rsync registration in upstream's examples relies on it).
fn controller() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("host", string().max_chars(128)).required(),
                kept("port", integer().min(0).max(50000)).required(),
                kept("type", string().max_chars(48)).required(),
                kept("priority", integer().min(0).max(100)).required(),
            ]),
        ),
    ])
    .into()
}

/// `service.json`: a name and the list of deployment intent groups (which must be given).
fn service() -> Schema {
    structure([
        kept(
            "metadata",
            structure([kept("name", name_rule()).required()]),
        )
        .required(),
        kept("spec", structure([kept("digs", array(string()))])).required(),
    ])
    .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::{Value, json};

    use crate::validate::validate;

    fn app_intent(intent: Value) -> Value {
        json!({"metadata": {"name": "ai"}, "spec": {"app": "a", "intent": intent}})
    }

    #[test]
    fn placement_by_name_label_or_nested_any_of() {
        for intent in [
            json!({"allOf": [{"clusterProvider": "p", "cluster": "c"}]}),
            json!({"allOf": [{"clusterProvider": "p", "clusterLabel": "l"}]}),
            json!({"allOf": [{"anyOf": [{"clusterProvider": "p", "cluster": "c"}]}]}),
            json!({"anyOf": [{"clusterProvider": "p", "clusterLabel": "l"}]}),
            json!({}),
        ] {
            assert_eq!(
                validate("genericAppPlacementIntent", &app_intent(intent.clone())),
                Ok(()),
                "{intent}"
            );
        }
    }

    #[test]
    fn placement_entry_must_pick_exactly_one_way() {
        let both = app_intent(
            json!({"allOf": [{"clusterProvider": "p", "cluster": "c", "clusterLabel": "l"}]}),
        );
        let err = validate("genericAppPlacementIntent", &both).unwrap_err();
        assert_eq!(err.path, "spec.intent.allOf[0]");
        assert!(
            err.message.starts_with("must match exactly one of"),
            "{}",
            err.message
        );
        let nothing = app_intent(json!({"anyOf": [{"cluster": "c"}]}));
        assert_eq!(
            validate("genericAppPlacementIntent", &nothing)
                .unwrap_err()
                .path,
            "spec.intent.anyOf[0]"
        );
        // Empty strings are dropped by `omitempty`, so they do not count as given.
        let empty_label = app_intent(
            json!({"allOf": [{"clusterProvider": "p", "cluster": "c", "clusterLabel": ""}]}),
        );
        assert_eq!(validate("genericAppPlacementIntent", &empty_label), Ok(()));
    }

    #[test]
    fn controller_without_port_or_priority_is_accepted_as_upstream_does() {
        let rsync =
            json!({"metadata": {"name": "rsync"}, "spec": {"host": "10.0.0.1", "port": 9031}});
        assert_eq!(validate("controller", &rsync), Ok(()));
        let too_high = json!({"metadata": {"name": "gac"}, "spec": {"host": "h", "port": 9033, "priority": 101}});
        assert_eq!(
            validate("controller", &too_high).unwrap_err().to_string(),
            "spec.priority: must be at most 100"
        );
    }

    #[test]
    fn composite_app_version_is_checked_only_when_given() {
        let update = json!({"metadata": {"name": "ca"}, "spec": {"version": "v1"}});
        assert_eq!(validate("compositeApp", &update), Ok(()));
        let bad = json!({"metadata": {"name": "ca"}, "spec": {"compositeAppVersion": "v1/x"}});
        assert_eq!(
            validate("compositeApp", &bad).unwrap_err().path,
            "spec.compositeAppVersion"
        );
    }

    #[test]
    fn app_dependency_op_status_is_ready_or_deployed_in_any_case() {
        for status in ["Ready", "DEPLOYED", "ready"] {
            let body = json!({"metadata": {"name": "d"}, "spec": {"app": "a", "opStatus": status, "wait": 5}});
            assert_eq!(validate("appDependency", &body), Ok(()), "{status}");
        }
        let body = json!({"metadata": {"name": "d"}, "spec": {"app": "a", "opStatus": "Running"}});
        assert_eq!(
            validate("appDependency", &body).unwrap_err().path,
            "spec.opStatus"
        );
    }

    #[test]
    fn deployment_intent_group_needs_override_values_list() {
        let body = json!({"metadata": {"name": "dig"}, "spec": {"compositeProfile": "p", "version": "r1", "logicalCloud": "lc"}});
        assert_eq!(
            validate("deploymentIntentGroup", &body)
                .unwrap_err()
                .to_string(),
            "spec.overrideValues: is required"
        );
    }
}
