//! Object validation the API server does for every kind: names (DNS-1123 subdomain, label or
//! path segment, depending on the kind), label keys and values, and the type-specific checks
//! clients commonly trip over. Failures become `422 Invalid` with field causes.

use serde_json::Value;

use crate::catalog::ResourceDef;
use crate::error::FieldCause;

const SUBDOMAIN_HELP: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_HELP: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_HELP: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: labels joined by dots, at most 253 characters.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(name: &str) -> bool {
    is_dns1123_label(name) && name.as_bytes()[0].is_ascii_lowercase()
}

/// What a kind's names must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

fn name_rule(def: &ResourceDef) -> NameRule {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Checks a proposed name for `def`; with `generated`, only the prefix is known (validated
/// leniently, as the API server does before appending the suffix).
pub fn check_name(def: &ResourceDef, name: &str) -> Option<FieldCause> {
    let value = Value::String(name.to_owned());
    let (ok, help) = match name_rule(def) {
        NameRule::Subdomain => (is_dns1123_subdomain(name), SUBDOMAIN_HELP),
        NameRule::Label => (is_dns1123_label(name), LABEL_HELP),
        NameRule::Dns1035 => (is_dns1035_label(name), DNS1035_HELP),
        NameRule::PathSegment => {
            let ok = name != "." && name != ".." && !name.contains('/') && !name.contains('%');
            (ok, "may not contain '/' or '%', and may not be '.' or '..'")
        }
    };
    (!ok).then(|| FieldCause::invalid("metadata.name", &value, help))
}

fn check_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(is_dns1123_subdomain)
}

fn check_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Validates what the API server validates for every object of every kind: name and labels.
pub fn check_object(def: &ResourceDef, object: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(FieldCause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Some(cause) = check_name(def, name) {
        causes.push(cause);
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(labels) => {
                for (key, value) in labels {
                    if !check_qualified_name(key) {
                        causes.push(FieldCause::invalid(
                            "metadata.labels",
                            &Value::String(key.clone()),
                            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                        ));
                    }
                    match value.as_str() {
                        Some(text) if check_label_value(text) => {}
                        _ => causes.push(FieldCause::invalid(
                            "metadata.labels",
                            value,
                            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push(FieldCause::invalid(
                "metadata.labels",
                labels,
                "must be a map of strings",
            )),
        }
    }
    if let Some(annotations) = object.pointer("/metadata/annotations")
        && let Some(annotations) = annotations.as_object()
    {
        for (key, value) in annotations {
            if !check_qualified_name(key) || !value.is_string() {
                causes.push(FieldCause::invalid(
                    "metadata.annotations",
                    &Value::String(key.clone()),
                    "annotations must be a map of qualified names to strings",
                ));
            }
        }
    }
    causes.extend(check_kind_specific(def, object));
    causes
}

/// The handful of type-specific rules that clients hit in practice.
fn check_kind_specific(def: &ResourceDef, object: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    match (def.group.as_str(), def.plural.as_str()) {
        ("apps", "deployments" | "statefulsets" | "daemonsets" | "replicasets") => {
            if object.pointer("/spec/selector").is_none() {
                causes.push(FieldCause::required("spec.selector", ""));
            }
            if object
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                causes.push(FieldCause::required("spec.template.spec.containers", ""));
            }
        }
        ("", "pods")
            if object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty) =>
        {
            causes.push(FieldCause::required("spec.containers", ""));
        }
        ("", "configmaps" | "secrets") => {
            for section in ["data", "binaryData", "stringData"] {
                if let Some(map) = object.get(section).and_then(Value::as_object) {
                    for (key, value) in map {
                        let key_ok = !key.is_empty()
                            && key.len() <= 253
                            && key
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                        if !key_ok {
                            causes.push(FieldCause::invalid(
                                &format!("{section}[{key}]"),
                                &Value::String(key.clone()),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                        if !value.is_string() {
                            causes.push(FieldCause::invalid(
                                &format!("{section}[{key}]"),
                                value,
                                "must be a string",
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use serde_json::json;

    #[test]
    fn names_follow_the_kind_rule() {
        let configmaps = catalog::builtin("", "v1", "configmaps").unwrap();
        let namespaces = catalog::namespaces();
        let services = catalog::builtin("", "v1", "services").unwrap();
        let roles = catalog::builtin("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert!(check_name(&configmaps, "my.config-1").is_none());
        assert!(check_name(&configmaps, "Bad_Name").is_some());
        assert!(check_name(&namespaces, "has.dot").is_some());
        assert!(check_name(&services, "1abc").is_some());
        assert!(check_name(&roles, "system:controller:foo").is_none());
        assert!(check_name(&roles, "a/b").is_some());
    }

    #[test]
    fn object_checks_report_field_causes() {
        let configmaps = catalog::builtin("", "v1", "configmaps").unwrap();
        let causes = check_object(&configmaps, &json!({"metadata": {}}));
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(causes[0].reason, "FieldValueRequired");
        let causes = check_object(
            &configmaps,
            &json!({"metadata": {"name": "ok", "labels": {"app": "bad value"}}}),
        );
        assert_eq!(causes.len(), 1);
        let deployments = catalog::builtin("apps", "v1", "deployments").unwrap();
        let causes = check_object(
            &deployments,
            &json!({"metadata": {"name": "web"}, "spec": {}}),
        );
        let fields: Vec<&str> = causes.iter().map(|cause| cause.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.selector", "spec.template.spec.containers"]
        );
    }
}
