//! `meta.k8s.io/v1` Tables, what `kubectl get` asks for: NAME, a few kind-specific columns,
//! AGE (custom resources: their CRD's `additionalPrinterColumns`), and per row the object, its
//! metadata or nothing (`includeObject`).

use serde_json::{Value, json};

use crate::catalog::ResourceDef;
use crate::meta;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

type CellFn = fn(&Value) -> Value;

struct Column {
    name: &'static str,
    column_type: &'static str,
    description: &'static str,
    cell: CellFn,
}

fn text_at(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int_at(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn count_entries(object: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|field| object.get(*field).and_then(Value::as_object))
        .map(serde_json::Map::len)
        .sum()
}

fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".into()
    } else {
        text
    })
}

fn service_ports(object: &Value) -> Value {
    let ports: Vec<String> = object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|port| {
                    let protocol = port
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP");
                    match port.get("nodePort").and_then(Value::as_i64) {
                        Some(node_port) => {
                            format!("{}:{node_port}/{protocol}", int_at(port, "/port"))
                        }
                        None => format!("{}/{protocol}", int_at(port, "/port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

fn external_ip(object: &Value) -> Value {
    let ingress: Vec<String> = object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    item.get("ip")
                        .or_else(|| item.get("hostname"))
                        .and_then(Value::as_str)
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !ingress.is_empty() {
        return json!(ingress.join(","));
    }
    match text_at(object, "/spec/type").as_str() {
        "LoadBalancer" => json!("<pending>"),
        "ExternalName" => json!(text_at(object, "/spec/externalName")),
        _ => json!("<none>"),
    }
}

fn pod_ready(object: &Value) -> Value {
    let total = object
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |statuses| {
            statuses
                .iter()
                .filter(|status| status.get("ready").and_then(Value::as_bool) == Some(true))
                .count()
        });
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(object: &Value) -> Value {
    let restarts: i64 = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |statuses| {
            statuses
                .iter()
                .map(|status| int_at(status, "/restartCount"))
                .sum()
        });
    json!(restarts)
}

fn csr_condition(object: &Value) -> Value {
    let mut conditions: Vec<String> = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("type").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if conditions.is_empty() {
        conditions.push("Pending".into());
    } else if object.pointer("/status/certificate").is_some() {
        conditions.push("Issued".into());
    }
    json!(conditions.join(","))
}

fn kind_columns(def: &ResourceDef) -> Vec<Column> {
    let column = |name, column_type, description, cell| Column {
        name,
        column_type,
        description,
        cell,
    };
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => vec![column(
            "Status",
            "string",
            "The status of the namespace",
            |o| json!(text_at(o, "/status/phase")),
        )],
        ("", "configmaps") => vec![column("Data", "string", "Number of data entries", |o| {
            json!(count_entries(o, &["data", "binaryData"]))
        })],
        ("", "secrets") => vec![
            column("Type", "string", "The type of the secret", |o| {
                json!(text_at(o, "/type"))
            }),
            column("Data", "string", "Number of data entries", |o| {
                json!(count_entries(o, &["data"]))
            }),
        ],
        ("", "services") => vec![
            column("Type", "string", "The type of the service", |o| {
                json!(text_at(o, "/spec/type"))
            }),
            column("Cluster-IP", "string", "The cluster IP", |o| {
                or_none(text_at(o, "/spec/clusterIP"))
            }),
            column("External-IP", "string", "External addresses", external_ip),
            column("Port(s)", "string", "The ports", service_ports),
        ],
        ("", "pods") => vec![
            column("Ready", "string", "Ready containers", pod_ready),
            column("Status", "string", "The pod phase", |o| {
                json!(text_at(o, "/status/phase"))
            }),
            column("Restarts", "string", "Container restarts", pod_restarts),
        ],
        ("", "persistentvolumeclaims") => vec![
            column("Status", "string", "The claim phase", |o| {
                json!(text_at(o, "/status/phase"))
            }),
            column("Volume", "string", "The bound volume", |o| {
                json!(text_at(o, "/spec/volumeName"))
            }),
        ],
        ("apps", "deployments") => vec![
            column("Ready", "string", "Ready replicas / desired", |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }),
            column("Up-to-date", "integer", "Updated replicas", |o| {
                json!(int_at(o, "/status/updatedReplicas"))
            }),
            column("Available", "integer", "Available replicas", |o| {
                json!(int_at(o, "/status/availableReplicas"))
            }),
        ],
        ("apps", "statefulsets") => {
            vec![column("Ready", "string", "Ready replicas / desired", |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            })]
        }
        ("apps", "replicasets") => vec![
            column("Desired", "integer", "Desired replicas", |o| {
                json!(int_at(o, "/spec/replicas"))
            }),
            column("Current", "integer", "Current replicas", |o| {
                json!(int_at(o, "/status/replicas"))
            }),
            column("Ready", "integer", "Ready replicas", |o| {
                json!(int_at(o, "/status/readyReplicas"))
            }),
        ],
        ("apps", "daemonsets") => vec![
            column("Desired", "integer", "Desired pods", |o| {
                json!(int_at(o, "/status/desiredNumberScheduled"))
            }),
            column("Current", "integer", "Scheduled pods", |o| {
                json!(int_at(o, "/status/currentNumberScheduled"))
            }),
            column("Ready", "integer", "Ready pods", |o| {
                json!(int_at(o, "/status/numberReady"))
            }),
        ],
        ("batch", "jobs") => vec![column("Completions", "string", "Succeeded / wanted", |o| {
            let wanted = o
                .pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(format!("{}/{wanted}", int_at(o, "/status/succeeded")))
        })],
        ("batch", "cronjobs") => vec![
            column("Schedule", "string", "The schedule", |o| {
                json!(text_at(o, "/spec/schedule"))
            }),
            column("Suspend", "boolean", "Suspended", |o| {
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }),
            column("Active", "integer", "Running jobs", |o| {
                json!(
                    o.pointer("/status/active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                )
            }),
        ],
        ("certificates.k8s.io", "certificatesigningrequests") => vec![
            column("SignerName", "string", "The signer", |o| {
                json!(text_at(o, "/spec/signerName"))
            }),
            column("Requestor", "string", "Who asked", |o| {
                json!(text_at(o, "/spec/username"))
            }),
            column("Condition", "string", "Approval state", csr_condition),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![column("Created At", "date", "When it was created", |o| {
                json!(text_at(o, "/metadata/creationTimestamp"))
            })]
        }
        _ => Vec::new(),
    }
}

/// Evaluates a simple printer-column JSON path (`.spec.replicas`, `.status.conditions[0].type`).
fn json_path(object: &Value, path: &str) -> Value {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    let mut current = object;
    for segment in path.split('.').filter(|segment| !segment.is_empty()) {
        let (field, index) = match segment.split_once('[') {
            Some((field, rest)) => (field, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some(next) = current.get(field) else {
            return Value::Null;
        };
        current = match index {
            Some(index) => match next.get(index) {
                Some(item) => item,
                None => return Value::Null,
            },
            None => next,
        };
    }
    current.clone()
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of `objects` of type `def`.
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    resource_version: u64,
    include: IncludeObject,
) -> Value {
    let kind_columns = kind_columns(def);
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    for column in &kind_columns {
        definitions.push(json!({"name": column.name, "type": column.column_type, "format": "", "priority": 0, "description": column.description}));
    }
    for column in &def.printer_columns {
        definitions.push(json!({"name": column.name, "type": column.column_type, "format": "", "priority": column.priority, "description": ""}));
    }
    // As the API server does, a CRD that lists its own columns gets no Age unless it lists one.
    let age = def.printer_columns.is_empty();
    if age {
        definitions.push(json!({
            "name": "Age", "type": "string", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![json!(text_at(object, "/metadata/name"))];
            cells.extend(kind_columns.iter().map(|column| (column.cell)(object)));
            cells.extend(def.printer_columns.iter().map(|column| {
                let value = json_path(object, &column.json_path);
                if column.column_type == "date" {
                    json!(meta::age_of(value.as_str()))
                } else {
                    value
                }
            }));
            if age {
                cells.push(json!(meta::age_of(
                    object
                        .pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                )));
            }
            let mut row = json!({ "cells": cells });
            let carried = match include {
                IncludeObject::None => None,
                IncludeObject::Metadata => Some(partial_metadata(object)),
                IncludeObject::Object => Some(object.clone()),
            };
            if let (Some(carried), Some(row)) = (carried, row.as_object_mut()) {
                row.insert("object".into(), carried);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn deployment_tables_have_ready_columns() {
        let deployments = catalog::builtin("apps", "v1", "deployments").unwrap();
        let object = json!({
            "metadata": {"name": "web", "creationTimestamp": meta::now_timestamp()},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2}
        });
        let table = table(&deployments, &[object], 7, IncludeObject::Metadata);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(table["rows"][0]["cells"][1], "2/3");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn printer_column_paths() {
        let object = json!({"spec": {"size": 3, "items": [{"name": "a"}]}});
        assert_eq!(json_path(&object, ".spec.size"), json!(3));
        assert_eq!(json_path(&object, ".spec.items[0].name"), json!("a"));
        assert_eq!(json_path(&object, ".spec.missing"), Value::Null);
    }
}
