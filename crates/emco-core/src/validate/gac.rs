//! Generic action controller kinds: generic Kubernetes intents, their resources and the
//! customizations of those resources.
//!
//! Besides its schemas, upstream's handler refuses empty values for several fields before the
//! schema runs; those become `min_chars(1)` here.

use super::common::metadata_without_description_limit;
use super::dsl::{Schema, StructRule, any, array, kept, map, omitempty, string, structure};

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        (
            "genericK8sIntent",
            structure([metadata_without_description_limit()]).into(),
        ),
        ("genericResource", resource()),
        ("customization", customization()),
    ]
}

const TRUE_FALSE: &[&str] = &["true", "false"];

/// A string that must be given (the handler's "may not be empty") and is at most 128 characters.
fn given_short_string() -> super::dsl::StringRule {
    string().min_chars(1).max_chars(128)
}

/// `resource.json`.
fn resource() -> Schema {
    structure([
        metadata_without_description_limit(),
        kept(
            "spec",
            structure([
                kept("app", given_short_string()).required(),
                kept("newObject", string().min_chars(1).one_of(TRUE_FALSE)).required(),
                kept(
                    "resourceGVK",
                    structure([
                        kept("apiVersion", given_short_string()).required(),
                        kept("kind", given_short_string()).required(),
                        kept("name", given_short_string()).required(),
                    ]),
                ),
            ]),
        ),
    ])
    .into()
}

/// `#/definitions/dataKeyOptions`, on a Go struct whose fields have `omitempty`.
fn data_key_options() -> StructRule {
    structure([
        omitempty("fileName", string().max_chars(128)).required(),
        omitempty("keyName", string().max_chars(128)).required(),
        omitempty("mergePatch", string().one_of(TRUE_FALSE)),
    ])
}

/// `#/definitions/patchJson`: one RFC 6902 operation, kept by Go as a plain map.
fn patch_operation() -> Schema {
    map(any())
        .member(
            "op",
            string().one_of(&["add", "remove", "replace", "move", "copy", "test"]),
        )
        .member("path", string().max_chars(128))
        .member("value", any())
        .require(["op", "path", "value"])
        .into()
}

/// `customization.json`.
fn customization() -> Schema {
    structure([
        metadata_without_description_limit(),
        kept(
            "spec",
            structure([
                kept("clusterSpecific", string().min_chars(1).one_of(TRUE_FALSE)).required(),
                kept(
                    "clusterInfo",
                    structure([
                        kept("scope", string().min_chars(1).one_of(&["label", "name"])).required(),
                        kept("clusterProvider", given_short_string()).required(),
                        kept("cluster", string().max_chars(128)),
                        kept("clusterLabel", string().max_chars(128)),
                        kept("mode", string().min_chars(1).one_of(&["allow", "deny"])).required(),
                    ]),
                )
                .required(),
                omitempty("patchType", string().one_of(&["json", "merge", ""])),
                omitempty("patchJson", array(patch_operation())),
                kept(
                    "configMapOptions",
                    structure([omitempty("dataKeyOptions", array(data_key_options()))]),
                ),
                kept(
                    "secretOptions",
                    structure([omitempty("dataKeyOptions", array(data_key_options()))]),
                ),
            ]),
        ),
    ])
    .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::json;

    use crate::validate::validate;

    #[test]
    fn customization_patch_operations_need_op_path_and_value() {
        let body = |patch| {
            json!({"metadata": {"name": "c"}, "spec": {"clusterSpecific": "false",
                "clusterInfo": {"scope": "label", "clusterProvider": "p", "clusterLabel": "l", "mode": "allow"},
                "patchType": "json", "patchJson": patch}})
        };
        assert_eq!(
            validate(
                "customization",
                &body(json!([{"op": "replace", "path": "/x", "value": 1}]))
            ),
            Ok(())
        );
        assert_eq!(
            validate(
                "customization",
                &body(json!([{"op": "add", "path": "/x", "value": null}]))
            ),
            Ok(())
        );
        let err = validate(
            "customization",
            &body(json!([{"op": "remove", "path": "/x"}])),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "spec.patchJson[0].value: is required");
    }

    #[test]
    fn resource_needs_its_gvk_even_for_existing_objects() {
        let body = json!({"metadata": {"name": "r"}, "spec": {"app": "a", "newObject": "false",
            "resourceGVK": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        assert_eq!(
            validate("genericResource", &body).unwrap_err().to_string(),
            "spec.resourceGVK.name: is required"
        );
    }
}
