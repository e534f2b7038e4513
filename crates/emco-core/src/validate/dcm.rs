//! Distributed cloud manager kinds: logical clouds and what hangs off them (cluster references,
//! user permissions, quotas, key-value pairs).

use super::common::metadata;
use super::dsl::{Schema, any, array, kept, map, string, structure};

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("logicalCloud", logical_cloud()),
        ("clusterReference", cluster_reference()),
        ("userPermission", user_permission()),
        ("clusterQuota", cluster_quota()),
        ("logicalCloudKv", key_value_pairs()),
    ]
}

/// `logical-cloud.json`. Its `labels` has no `type`, so a missing (nil) map passes.
fn logical_cloud() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("namespace", string().max_chars(128)),
                kept("labels", map(string().max_chars(128)).null_allowed()),
                kept("level", string().max_chars(2)),
                kept(
                    "user",
                    structure([
                        kept("userName", string().max_chars(20)),
                        kept("type", string().max_chars(128)),
                    ]),
                ),
            ]),
        ),
    ])
    .into()
}

/// `cluster-reference.json`. Its `required` names fields Go always encodes, so they may be empty.
fn cluster_reference() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("clusterProvider", string().max_chars(128)),
                kept("cluster", string().max_chars(128)),
                kept("loadBalancerIP", string().max_chars(16)),
            ]),
        ),
    ])
    .into()
}

/// `user-permission.json`: the three lists are typed arrays on Go slices without `omitempty`,
/// so each must be given (an empty list is fine).
fn user_permission() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("namespace", string().max_chars(128)),
                kept("apiGroups", array(string())),
                kept("resources", array(string())),
                kept("verbs", array(string())),
            ]),
        ),
    ])
    .into()
}

/// The quota names `cluster-quota.json` bounds; any other member of `spec` is kept unchecked
/// (the spec is a Go map of strings).
const QUOTA_NAMES: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.ephemeral-storage",
    "persistentvolumeclaims",
    "pods",
    "configmaps",
    "replicationcontrollers",
    "resourcequotas",
    "services",
    "services.loadbalancers",
    "services.nodeports",
    "secrets",
    "count/replicationcontrollers",
    "count/deployments.apps",
    "count/replicasets.apps",
    "count/statefulsets.apps",
    "count/jobs.batch",
    "count/cronjobs.batch",
    "count/deployments.extensions",
];

/// `cluster-quota.json`.
fn cluster_quota() -> Schema {
    let spec = QUOTA_NAMES
        .iter()
        .fold(map(string()).null_allowed(), |spec, &quota| {
            spec.member(quota, string().max_chars(128))
        });
    structure([metadata(), kept("spec", spec)]).into()
}

/// `kv-pair.json`. Upstream's file nests its metadata rules inside `spec`, where they never
/// apply, and gives `spec.kv` no `type`; its handler still demands a name. We apply the common
/// metadata rule, since the name becomes a key and a URL segment, and leave `kv` free.
fn key_value_pairs() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([kept("kv", array(map(any())).null_allowed())]),
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
    fn logical_cloud_needs_only_a_name() {
        assert_eq!(
            validate("logicalCloud", &json!({"metadata": {"name": "lc1"}})),
            Ok(())
        );
        let err = validate(
            "logicalCloud",
            &json!({"metadata": {"name": "lc1"}, "spec": {"level": "100"}}),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "spec.level: longer than 2 characters");
    }

    #[test]
    fn quota_bounds_known_members_and_keeps_others() {
        let ok = json!({"metadata": {"name": "q"}, "spec": {"limits.cpu": "400", "custom": "x"}});
        assert_eq!(validate("clusterQuota", &ok), Ok(()));
        let long = json!({"metadata": {"name": "q"}, "spec": {"pods": "9".repeat(129)}});
        assert_eq!(
            validate("clusterQuota", &long).unwrap_err().path,
            "spec.pods"
        );
        let not_string = json!({"metadata": {"name": "q"}, "spec": {"custom": 5}});
        assert_eq!(
            validate("clusterQuota", &not_string).unwrap_err().message,
            "must be a string"
        );
    }

    #[test]
    fn user_permission_lists_must_be_given() {
        let body =
            json!({"metadata": {"name": "up"}, "spec": {"apiGroups": [], "resources": ["pods"]}});
        assert_eq!(
            validate("userPermission", &body).unwrap_err().to_string(),
            "spec.verbs: is required"
        );
    }

    #[test]
    fn logical_cloud_kv_names_follow_the_common_rule() {
        let body = json!({"metadata": {"name": "a/b"}, "spec": {"kv": [{"k": 1}]}});
        assert_eq!(
            validate("logicalCloudKv", &body).unwrap_err().path,
            "metadata.name"
        );
        let body = json!({"metadata": {"name": "kv1"}, "spec": {"kv": [{"k": 1}]}});
        assert_eq!(validate("logicalCloudKv", &body), Ok(()));
    }
}
