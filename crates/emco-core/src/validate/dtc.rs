//! Distributed traffic controller kinds: traffic group intents, inbound server and client intents,
//! client access points, and the controllers registered with the DTC.
//!
//! Upstream's DTC handlers also apply Kubernetes' label-value rule to the intent names, so those
//! names are at most 63 characters.

use super::common::{NAME, metadata, metadata_k8s_name, name};
use super::dsl::{Schema, array, boolean, integer, kept, pattern, string, structure};

pattern!(APP_LABEL = "^([A-Za-z0-9][-A-Za-z0-9_.=]*)?[A-Za-z0-9]$");
pattern!(URL_PATH = "^(/)([A-Za-z0-9][-A-Za-z0-9_./]*)?[A-Za-z0-9*]$");
// Upstream writes `"oneOf": [{"pattern": "action"}]`: the type must contain "action".
pattern!(ACTION = "action");

pub(super) fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        (
            "trafficGroupIntent",
            structure([metadata_k8s_name()]).into(),
        ),
        ("inboundServerIntent", inbound_server()),
        ("inboundClientsIntent", inbound_clients()),
        ("inboundClientsAccessIntent", inbound_clients_access()),
        ("dtcController", dtc_controller()),
    ]
}

fn app_label() -> super::dsl::StringRule {
    string().max_chars(128).pattern(&APP_LABEL)
}

/// `inbound-server.json`. Go encodes every spec field, so the required ones must be non-empty
/// (a port of 0 is below the minimum). Its `external` rules describe members that Go nests one
/// level deeper (`external.externalCerts`), so upstream never applies them.
fn inbound_server() -> Schema {
    structure([
        metadata_k8s_name(),
        kept(
            "spec",
            structure([
                kept("app", name()).required(),
                kept("appLabel", app_label()).required(),
                kept("serviceName", name()).required(),
                kept("externalName", string().max_chars(128)),
                kept("port", integer().min(1).max(65535)).required(),
                kept("protocol", string().max_chars(5).pattern(&NAME)).required(),
                kept("externalSupport", boolean()),
                kept("serviceMesh", string().max_chars(128)),
                kept("edgeCNF", string().max_chars(128)),
                kept(
                    "management",
                    structure([
                        kept("sidecarProxy", string().max_chars(4)),
                        kept("tlsType", string().max_chars(8)),
                    ]),
                )
                .required(),
            ]),
        ),
    ])
    .into()
}

/// `inbound-clients.json`: both lists are typed arrays on Go slices, so they must be given.
fn inbound_clients() -> Schema {
    structure([
        metadata_k8s_name(),
        kept(
            "spec",
            structure([
                kept("app", name()).required(),
                kept("appLabel", app_label()).required(),
                kept("serviceName", name()).required(),
                kept("namespaces", array(string())).required(),
                kept("cidrs", array(string())).required(),
            ]),
        ),
    ])
    .into()
}

/// `inbound-clients-access.json`.
fn inbound_clients_access() -> Schema {
    structure([
        metadata_k8s_name(),
        kept(
            "spec",
            structure([
                kept("action", string().one_of(&["ALLOW"])).required(),
                kept("url", array(string().max_chars(4096).pattern(&URL_PATH))).required(),
                kept(
                    "access",
                    array(string().one_of(&["GET", "PUT", "POST", "DELETE"])),
                )
                .required(),
            ]),
        ),
    ])
    .into()
}

/// `dtc/controller.json`, on the orchestrator's controller struct (every field encoded), so port
/// and priority must be given and non-zero.
fn dtc_controller() -> Schema {
    structure([
        metadata(),
        kept(
            "spec",
            structure([
                kept("host", string().max_chars(128)).required(),
                kept("port", integer().min(1).max(65535)).required(),
                kept("type", string().max_chars(48).pattern(&ACTION)).required(),
                kept("priority", integer().min(1).max(100)).required(),
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
    fn dtc_controller_type_must_mention_action() {
        let body = |kind: &str| json!({"metadata": {"name": "nps"}, "spec": {"host": "h", "port": 9033, "type": kind, "priority": 1}});
        assert_eq!(validate("dtcController", &body("action")), Ok(()));
        let err = validate("dtcController", &body("placement")).unwrap_err();
        assert_eq!(err.to_string(), "spec.type: does not match pattern action");
    }

    #[test]
    fn intent_names_are_at_most_63_characters() {
        let body = json!({"metadata": {"name": "a".repeat(64)}});
        assert_eq!(
            validate("trafficGroupIntent", &body).unwrap_err().message,
            "longer than 63 characters"
        );
    }

    #[test]
    fn access_urls_are_absolute_paths() {
        let body = |url: &str| json!({"metadata": {"name": "ap"}, "spec": {"action": "ALLOW", "url": [url], "access": ["GET"]}});
        assert_eq!(
            validate("inboundClientsAccessIntent", &body("/api/v1/*")),
            Ok(())
        );
        assert_eq!(
            validate("inboundClientsAccessIntent", &body("api"))
                .unwrap_err()
                .path,
            "spec.url[0]"
        );
    }
}
