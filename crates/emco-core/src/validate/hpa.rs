//! HPA placement controller kinds: HPA intents, resource consumers and resource requirements.
//!
//! Upstream's Go structs give every spec field `omitempty`, so an empty string or a zero number
//! counts as missing.

use serde_json::Value;

use super::common::{NAME, metadata};
use super::dsl::{
    Branch, CheckError, Fields, Schema, boolean, integer, kept, omitempty, pointer, string,
    structure,
};

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("hpaIntent", hpa_intent()),
        ("hpaConsumer", hpa_consumer()),
        ("hpaResource", hpa_resource()),
    ]
}

/// `placement-hpa-intent.json`.
fn hpa_intent() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([omitempty("app", string().pattern(&NAME)).required()]),
        ),
    ])
    .into()
}

/// `placement-hpa-consumer.json`.
fn hpa_consumer() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                // The schema's `minLength: 1` cannot fail: `omitempty` drops an empty string,
                // so empty counts as missing (and only `name` is required).
                omitempty("apiVersion", string()),
                omitempty("kind", string()),
                omitempty("replicas", integer().min(1)),
                omitempty("name", string()).required(),
                omitempty("container", string()),
            ]),
        ),
    ])
    .into()
}

/// `placement-hpa-resource.json`, plus the body checks upstream's handler makes after it: the
/// resource must be of the kind `allocatable` says, and requests may not exceed a given limit.
fn hpa_resource() -> Schema {
    // Go flattens both resource kinds into one struct, every field `omitempty`; the schema's
    // `oneOf` tells them apart.
    let resource = structure([
        omitempty("name", string()),
        omitempty("requests", integer()),
        omitempty("limits", integer()),
        omitempty("units", string()),
        omitempty("key", string()),
        omitempty("value", string()),
    ])
    .one_of([
        Branch::new("an allocatable resource (name and requests)")
            .requires(["name", "requests"])
            .rule("requests", integer().min(1))
            .rule("limits", integer().min(1))
            .rule("units", string().pattern(&NAME)),
        Branch::new("a non-allocatable resource (key and value)").requires(["key", "value"]),
    ])
    .check("requestsWithinLimits", requests_within_limits);
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                pointer("allocatable", boolean()).required(),
                omitempty("mandatory", boolean()),
                // A Go int32.
                omitempty("weight", integer().min(1).max(i64::from(i32::MAX))),
                kept("resource", resource).required(),
            ])
            .check("resourceMatchesAllocatable", resource_matches_allocatable),
        ),
    ])
    .into()
}

fn is_given(resource: &Value, member: &str) -> bool {
    match resource.get(member) {
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        _ => false,
    }
}

/// `allocatable: true` needs an allocatable resource, `false` a non-allocatable one.
fn resource_matches_allocatable(spec: &Fields<'_>) -> Result<(), CheckError> {
    let Some(resource) = spec.get("resource") else {
        return Ok(());
    };
    let allocatable_given = ["name", "requests", "limits", "units"]
        .iter()
        .any(|m| is_given(resource, m));
    let non_allocatable_given = ["key", "value"].iter().any(|m| is_given(resource, m));
    match spec.bool("allocatable") {
        Some(true) if !allocatable_given => Err(CheckError::new(
            "resource",
            "must be an allocatable resource (name and requests) when allocatable is true",
        )),
        Some(false) if !non_allocatable_given => Err(CheckError::new(
            "resource",
            "must be a non-allocatable resource (key and value) when allocatable is false",
        )),
        _ => Ok(()),
    }
}

fn requests_within_limits(resource: &Fields<'_>) -> Result<(), CheckError> {
    match (resource.i64("requests"), resource.i64("limits")) {
        (Some(requests), Some(limits)) if limits > 0 && requests > limits => Err(CheckError::new(
            "requests",
            format!("must not exceed limits ({limits})"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use serde_json::{Value, json};

    use crate::validate::validate;

    fn resource(allocatable: bool, resource: Value) -> Value {
        json!({"metadata": {"name": "r"}, "spec": {"allocatable": allocatable, "mandatory": true, "weight": 1,
            "resource": resource}})
    }

    #[test]
    fn allocatable_and_non_allocatable_resources() {
        let cpu = json!({"name": "cpu", "requests": 1, "limits": 2});
        assert_eq!(validate("hpaResource", &resource(true, cpu)), Ok(()));
        let label = json!({"key": "vpu", "value": "yes"});
        assert_eq!(
            validate("hpaResource", &resource(false, label.clone())),
            Ok(())
        );
        let err = validate("hpaResource", &resource(true, label)).unwrap_err();
        assert_eq!(err.path, "spec.resource");
    }

    #[test]
    fn zero_requests_count_as_missing() {
        let err = validate(
            "hpaResource",
            &resource(true, json!({"name": "cpu", "requests": 0})),
        )
        .unwrap_err();
        assert_eq!(err.path, "spec.resource");
        assert!(
            err.message.starts_with("must match exactly one of"),
            "{}",
            err.message
        );
    }

    #[test]
    fn negative_requests_report_the_minimum() {
        let err = validate(
            "hpaResource",
            &resource(true, json!({"name": "cpu", "requests": -1})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.resource.requests: must be at least 1"
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let err = validate(
            "hpaResource",
            &resource(true, json!({"name": "cpu", "requests": 3, "limits": 2})),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.resource.requests: must not exceed limits (2)"
        );
    }

    #[test]
    fn allocatable_false_is_given_but_null_is_missing() {
        let mut body = resource(false, json!({"key": "k", "value": "v"}));
        body["spec"]["allocatable"] = Value::Null;
        assert_eq!(
            validate("hpaResource", &body).unwrap_err().to_string(),
            "spec.allocatable: is required"
        );
    }
}
