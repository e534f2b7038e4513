//! Request-body validation for every stored resource kind, with the rules of upstream EMCO's JSON
//! schemas (and the few body checks its handlers make besides), written in a small Rust schema
//! language ([`dsl`]) instead of shipping upstream's schema files.
//!
//! A body is accepted exactly when upstream would accept it: see [`dsl`] for how upstream's
//! decode-then-validate order is reproduced. Type mismatches (a number where a string belongs) are
//! reported here too; upstream answers those with 422 while decoding, before any schema runs, so an
//! API layer that wants upstream's status codes decodes first and validates second.

pub mod dsl;

mod clm;
mod common;
mod dcm;
mod dtc;
mod gac;
mod hpa;
mod ncm;
mod orchestrator;
mod ovn;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod conformance_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod example_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod rule_tests;

use std::sync::LazyLock;

use serde_json::Value;

use dsl::{Failure, Schema};

/// Why a body (or a name) was refused: which field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field, with `[i]` for array elements, e.g.
    /// `spec.intent.allOf[0].cluster`; `(root)` for the body itself.
    pub path: String,
    pub message: String,
}

impl From<Failure> for ValidationError {
    fn from(failure: Failure) -> Self {
        Self {
            path: failure.path,
            message: failure.message,
        }
    }
}

/// One kind's rules.
struct KindSchema {
    kind: &'static str,
    schema: Schema,
}

/// Every kind with rules, built once.
static SCHEMAS: LazyLock<Vec<KindSchema>> = LazyLock::new(|| {
    [
        clm::schemas(),
        ncm::schemas(),
        orchestrator::schemas(),
        dcm::schemas(),
        gac::schemas(),
        dtc::schemas(),
        hpa::schemas(),
        ovn::schemas(),
    ]
    .into_iter()
    .flatten()
    .map(|(kind, schema)| KindSchema { kind, schema })
    .collect()
});

static KNOWN_KINDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| SCHEMAS.iter().map(|k| k.kind).collect());

fn schema_of(kind: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|k| k.kind == kind).map(|k| &k.schema)
}

/// Checks a create or update body of `kind` (a referential-schema name such as `project` or
/// `genericAppPlacementIntent`). A kind without rules accepts every body.
pub fn validate(kind: &str, body: &Value) -> Result<(), ValidationError> {
    check(kind, body).map_err(ValidationError::from)
}

/// Like [`validate`], keeping which rule failed (for tests that account for every rule).
fn check(kind: &str, body: &Value) -> Result<(), Failure> {
    match schema_of(kind) {
        Some(schema) => schema.check_body(body),
        None => Ok(()),
    }
}

/// The kinds [`validate`] has rules for.
pub fn known_kinds() -> &'static [&'static str] {
    KNOWN_KINDS.as_slice()
}

/// Checks a resource name taken from a URL path with the rule for `metadata.name`; `field` names
/// it in the error (say, `project`).
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    common::name_rule()
        .check_body(&Value::String(name.to_owned()))
        .map_err(|failure| ValidationError {
            path: field.to_owned(),
            message: failure.message,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_kind_accepts_anything() {
        assert_eq!(validate("noSuchKind", &json!(42)), Ok(()));
        assert!(!known_kinds().contains(&"noSuchKind"));
    }

    #[test]
    fn every_kind_of_the_brief_has_rules() {
        let expected = [
            "clusterProvider",
            "cluster",
            "clusterLabel",
            "clusterKv",
            "clusterSyncObject",
            "clmController",
            "project",
            "compositeApp",
            "app",
            "appDependency",
            "compositeProfile",
            "appProfile",
            "deploymentIntentGroup",
            "groupIntent",
            "genericPlacementIntent",
            "genericAppPlacementIntent",
            "controller",
            "logicalCloud",
            "clusterReference",
            "userPermission",
            "clusterQuota",
            "logicalCloudKv",
            "genericK8sIntent",
            "genericResource",
            "customization",
            "trafficGroupIntent",
            "inboundServerIntent",
            "inboundClientsIntent",
            "inboundClientsAccessIntent",
            "dtcController",
            "hpaIntent",
            "hpaConsumer",
            "hpaResource",
            "providerNetwork",
            "network",
            "service",
        ];
        for kind in expected {
            assert!(known_kinds().contains(&kind), "{kind} has no rules");
        }
        let mut sorted = known_kinds().to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            known_kinds().len(),
            "a kind is registered twice"
        );
    }

    #[test]
    fn error_displays_path_then_message() {
        let err = validate("project", &json!({"metadata": {}})).unwrap_err();
        assert_eq!(err.to_string(), "metadata.name: is required");
    }

    #[test]
    fn url_names_follow_the_metadata_name_rule() {
        assert_eq!(validate_name("project", "proj-1.a_b"), Ok(()));
        assert_eq!(validate_name("project", "a"), Ok(()));
        let err = validate_name("project", "-bad").unwrap_err();
        assert_eq!(err.path, "project");
        assert!(
            err.message.starts_with("does not match pattern"),
            "{}",
            err.message
        );
        assert_eq!(
            validate_name("project", "").unwrap_err().message,
            "must not be empty"
        );
        assert_eq!(
            validate_name("cluster", &"a".repeat(129))
                .unwrap_err()
                .message,
            "longer than 128 characters"
        );
        assert_eq!(validate_name("cluster", &"a".repeat(128)), Ok(()));
        assert!(validate_name("cluster", "a/b").is_err());
        assert!(validate_name("cluster", "a b").is_err());
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9 ._/=-]{0,12}".prop_map(Value::String),
            // Names the schemas look for, so that random bodies reach deep into them.
            prop::sample::select(vec![
                "metadata",
                "spec",
                "name",
                "app",
                "intent",
                "allOf",
                "anyOf",
                "resource",
                "kv",
                "vlan",
                "ipv4Subnets",
                "clusterInfo",
                "patchJson",
                "allocatable",
                "requests",
                "limits",
                "key",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            let key = prop::sample::select(vec![
                "metadata",
                "spec",
                "name",
                "description",
                "app",
                "intent",
                "allOf",
                "anyOf",
                "cluster",
                "clusterProvider",
                "clusterLabel",
                "selector",
                "resource",
                "allocatable",
                "requests",
                "limits",
                "key",
                "value",
                "kv",
                "vlan",
                "ipv4Subnets",
                "ipv6Subnets",
                "subnet",
                "nodeLabelList",
                "clusterInfo",
                "patchJson",
                "op",
                "path",
                "overrideValues",
                "values",
                "port",
                "priority",
                "host",
                "type",
                "url",
                "access",
                "digs",
                "x",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key, inner), 0..6).prop_map(|members| Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn validate_never_panics(body in arbitrary_json()) {
            for kind in known_kinds() {
                let _ = validate(kind, &body);
                let _ = validate(kind, &json!({"metadata": {"name": "a"}, "spec": body.clone()}));
            }
        }

        #[test]
        fn validate_name_never_panics(name in ".{0,200}") {
            let _ = validate_name("name", &name);
        }
    }
}
