//! Cluster manager kinds: cluster providers, clusters, their labels, key-value pairs and sync
//! objects, and the placement controllers registered with it.

use super::common::{metadata, name};
use super::dsl::{Schema, array, integer, kept, map, omitempty, string, structure};

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("clusterProvider", cluster_provider()),
        ("cluster", cluster()),
        ("clusterLabel", cluster_label()),
        ("clusterKv", key_value_pairs()),
        ("clusterSyncObject", key_value_pairs()),
        ("clmController", clm_controller()),
    ]
}

/// `metadata.json`.
fn cluster_provider() -> Schema {
    structure([metadata()]).into()
}

/// `cluster-gitops.json` on the cluster's `metadata` part. Its GitOps rules are written for a
/// member `spec.gitops` while the body (and Go) use `spec.gitOps`, and `spec.gitOps` is a struct Go
/// always encodes, so upstream enforces only the metadata; so do we.
fn cluster() -> Schema {
    structure([metadata()]).into()
}

/// `cluster-label.json`.
fn cluster_label() -> Schema {
    structure([kept("clusterLabel", name()).required()]).into()
}

/// `cluster-kv.json`, used for both cluster key-value pairs and cluster sync objects:
/// `spec.kv` is a list of objects whose values are short strings.
fn key_value_pairs() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([kept("kv", array(map(string().max_chars(128)))).required()]),
        ),
    ])
    .into()
}

/// `clm/controller.json` on a Go struct whose spec fields have `omitempty`: host and port must be
/// given (a zero port counts as missing).
fn clm_controller() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                omitempty("host", string().max_chars(128)).required(),
                omitempty("port", integer().min(0).max(50000)).required(),
                omitempty("priority", integer().min(0).max(100)),
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
    fn cluster_gitops_spec_is_not_checked_as_upstream_does_not() {
        let body = json!({"metadata": {"name": "c1"}, "spec": {"gitOps": {"gitOpsType": "other"}}});
        assert_eq!(validate("cluster", &body), Ok(()));
    }

    #[test]
    fn kv_values_must_be_short_strings() {
        let body = json!({"metadata": {"name": "kv"}, "spec": {"kv": [{"a": "b"}, {"c": 1}]}});
        let err = validate("clusterKv", &body).unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.message.as_str()),
            ("spec.kv[1].c", "must be a string")
        );
        let body = json!({"metadata": {"name": "kv"}, "spec": {"kv": []}});
        assert_eq!(validate("clusterSyncObject", &body), Ok(()));
    }

    #[test]
    fn clm_controller_needs_host_and_nonzero_port() {
        let ok = json!({"metadata": {"name": "hpa"}, "spec": {"host": "h", "port": 9091}});
        assert_eq!(validate("clmController", &ok), Ok(()));
        let zero = json!({"metadata": {"name": "hpa"}, "spec": {"host": "h", "port": 0}});
        assert_eq!(
            validate("clmController", &zero).unwrap_err().to_string(),
            "spec.port: is required"
        );
    }
}
