//! Service discovery across clusters (the traffic controller's `sds`), as pure functions: what
//! a server's Service and the cluster's Nodes say about where other clusters can reach it
//! ([`observe`]), and the Service and Endpoints each client cluster gets ([`client_objects`]).
//! The synchronizer's `engine::discover` does the reading, recording and applying.
//!
//! Upstream's `sds` gives client clusters a headless Service whose Endpoints port is the
//! server's Service port, which works only while a NodePort equals its port. Here the client's
//! Service gets a ClusterIP and maps the server's Service port to the address's port (the node
//! port, or the load balancer's port), so clients use the server's usual `name:port` and reach
//! it whichever port the node exposes.

use std::collections::{BTreeMap, BTreeSet};

use emco_core::appcontext::{ClusterId, ServiceDiscovery};
use serde_json::{Value, json};

/// One port of a server's Service as reachable from other clusters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReachablePort {
    /// The Service's port: what clients connect to.
    pub port: i64,
    /// Where the address listens: the node port for NodePort Services, else the port.
    pub target: i64,
    pub protocol: String,
}

/// Where other clusters reach a server on one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub ip: String,
    pub ports: Vec<ReachablePort>,
}

/// What a server's cluster says about its Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Reachable(ServerAddress),
    /// Not yet (no load-balancer address, no node address): look again later.
    Pending(String),
    /// Never, as the Service is (no Service, a ClusterIP Service, no ports).
    Unreachable(String),
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The address of the first node that has one, preferring InternalIP, then ExternalIP (as a
/// node's own addresses list them, the first address is what upstream takes).
fn node_address(nodes: &[Value]) -> Option<String> {
    for wanted in ["InternalIP", "ExternalIP"] {
        for node in nodes {
            let addresses = node.pointer("/status/addresses").and_then(Value::as_array);
            if let Some(address) = addresses.into_iter().flatten().find_map(|address| {
                (text(address, "/type") == Some(wanted))
                    .then(|| text(address, "/address"))
                    .flatten()
            }) {
                return Some(address.to_owned());
            }
        }
    }
    None
}

/// Where other clusters reach `service` (`None`: the cluster has no such Service), given the
/// cluster's `nodes`.
pub fn observe(name: &str, service: Option<&Value>, nodes: &[Value]) -> Observation {
    let Some(service) = service else {
        return Observation::Unreachable(format!("the server's cluster has no Service {name:?}"));
    };
    let service_type = text(service, "/spec/type").unwrap_or("ClusterIP");
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return Observation::Unreachable(format!("Service {name:?} has no ports"));
    }
    let mut reachable = Vec::with_capacity(ports.len());
    for port in &ports {
        let Some(number) = port.get("port").and_then(Value::as_i64) else {
            return Observation::Unreachable(format!(
                "Service {name:?} has a port without a number"
            ));
        };
        let target = if service_type == "NodePort" {
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => node_port,
                None => {
                    return Observation::Pending(format!(
                        "Service {name:?} has no node port for port {number} yet"
                    ));
                }
            }
        } else {
            number
        };
        reachable.push(ReachablePort {
            port: number,
            target,
            protocol: text(port, "/protocol").unwrap_or("TCP").to_owned(),
        });
    }
    let ip = match service_type {
        "NodePort" => match node_address(nodes) {
            Some(ip) => ip,
            None => {
                return Observation::Pending(
                    "no node of the server's cluster has an address".into(),
                );
            }
        },
        "LoadBalancer" => {
            let ingress = service
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array);
            match ingress
                .into_iter()
                .flatten()
                .find_map(|entry| text(entry, "/ip"))
            {
                Some(ip) => ip.to_owned(),
                None => {
                    return Observation::Pending(format!(
                        "Service {name:?} has no load-balancer ingress IP yet"
                    ));
                }
            }
        }
        other => {
            return Observation::Unreachable(format!(
                "Service {name:?} is of type {other}; only NodePort and LoadBalancer Services \
                 can be reached from other clusters"
            ));
        }
    };
    Observation::Reachable(ServerAddress {
        ip,
        ports: reachable,
    })
}

fn port_name(port: &ReachablePort) -> String {
    format!("{}-{}", port.protocol.to_ascii_lowercase(), port.port)
}

/// The objects each client cluster gets for `discovery`: Endpoints, then a Service of the
/// server's Service name (the synchronizer labels them as it labels every object). `servers` are the server's clusters that answered;
/// `clients` every cluster of a client app. A cluster that runs the server itself gets nothing
/// (its own Service already answers the name).
pub fn client_objects(
    discovery: &ServiceDiscovery,
    servers: &BTreeMap<ClusterId, ServerAddress>,
    clients: &BTreeSet<ClusterId>,
) -> Vec<(ClusterId, Vec<Value>)> {
    if servers.is_empty() {
        return Vec::new();
    }
    // One subset per distinct port set: servers with the same ports share it.
    let mut subsets: BTreeMap<Vec<ReachablePort>, BTreeSet<String>> = BTreeMap::new();
    for address in servers.values() {
        let mut ports = address.ports.clone();
        ports.sort();
        subsets.entry(ports).or_default().insert(address.ip.clone());
    }
    let mut service_ports: BTreeMap<String, &ReachablePort> = BTreeMap::new();
    for ports in subsets.keys() {
        for port in ports {
            service_ports.entry(port_name(port)).or_insert(port);
        }
    }
    let metadata = json!({
        "name": discovery.service,
        "namespace": discovery.namespace,
    });
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": metadata,
        "subsets": subsets.iter().map(|(ports, ips)| json!({
            "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": ports.iter().map(|port| json!({
                "name": port_name(port),
                "port": port.target,
                "protocol": port.protocol,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ports": service_ports.iter().map(|(name, port)| json!({
                "name": name,
                "port": port.port,
                "targetPort": port.target,
                "protocol": port.protocol,
            })).collect::<Vec<_>>(),
        },
    });
    clients
        .iter()
        .filter(|cluster| !servers.contains_key(*cluster))
        .map(|cluster| (cluster.clone(), vec![endpoints.clone(), service.clone()]))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn service(service_type: &str, ports: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "http-service", "namespace": "default"},
            "spec": {"type": service_type, "ports": ports}, "status": status})
    }

    fn node(addresses: Value) -> Value {
        json!({"kind": "Node", "metadata": {"name": "n"}, "status": {"addresses": addresses}})
    }

    #[test]
    fn a_node_port_service_is_reached_at_a_nodes_internal_ip_and_its_node_port() {
        let svc = service(
            "NodePort",
            json!([{"port": 30083, "nodePort": 30083, "protocol": "TCP"}, {"port": 80, "nodePort": 31000}]),
            json!({}),
        );
        let nodes = [
            node(json!([{"type": "Hostname", "address": "n0"}])),
            node(json!([{"type": "ExternalIP", "address": "203.0.113.5"},
                {"type": "InternalIP", "address": "172.16.0.10"}])),
        ];
        assert_eq!(
            observe("http-service", Some(&svc), &nodes),
            Observation::Reachable(ServerAddress {
                ip: "172.16.0.10".into(),
                ports: vec![
                    ReachablePort {
                        port: 30083,
                        target: 30083,
                        protocol: "TCP".into()
                    },
                    ReachablePort {
                        port: 80,
                        target: 31000,
                        protocol: "TCP".into()
                    },
                ],
            })
        );
        assert!(matches!(
            observe("http-service", Some(&svc), &[]),
            Observation::Pending(_)
        ));
    }

    #[test]
    fn a_load_balancer_is_reached_at_its_ingress_ip_once_it_has_one() {
        let ports = json!([{"port": 443, "nodePort": 31443, "protocol": "TCP"}]);
        let waiting = service("LoadBalancer", ports.clone(), json!({"loadBalancer": {}}));
        let Observation::Pending(why) = observe("web", Some(&waiting), &[]) else {
            panic!("no ingress yet")
        };
        assert!(why.contains("ingress"), "{why}");
        let ready = service(
            "LoadBalancer",
            ports,
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "198.18.0.10"}]}}),
        );
        assert_eq!(
            observe("web", Some(&ready), &[]),
            Observation::Reachable(ServerAddress {
                ip: "198.18.0.10".into(),
                ports: vec![ReachablePort {
                    port: 443,
                    target: 443,
                    protocol: "TCP".into()
                }],
            })
        );
    }

    #[test]
    fn cluster_ip_services_and_missing_services_are_unreachable_and_say_why() {
        let internal = service("ClusterIP", json!([{"port": 80}]), json!({}));
        let Observation::Unreachable(why) = observe("web", Some(&internal), &[]) else {
            panic!("a ClusterIP service cannot be reached from outside")
        };
        assert!(
            why.contains("ClusterIP") && why.contains("NodePort"),
            "{why}"
        );
        let Observation::Unreachable(why) = observe("web", None, &[]) else {
            panic!("missing")
        };
        assert!(why.contains("no Service \"web\""), "{why}");
    }

    #[test]
    fn clients_on_other_clusters_get_endpoints_and_a_service_mapping_the_port() {
        let discovery = ServiceDiscovery {
            server: "http-server".into(),
            service: "http-service".into(),
            namespace: "ns1".into(),
            clients: vec!["http-client".into()],
        };
        let port = ReachablePort {
            port: 8080,
            target: 30080,
            protocol: "TCP".into(),
        };
        let servers: BTreeMap<ClusterId, ServerAddress> = [
            (
                ClusterId::new("p", "east"),
                ServerAddress {
                    ip: "172.16.1.10".into(),
                    ports: vec![port.clone()],
                },
            ),
            (
                ClusterId::new("p", "west"),
                ServerAddress {
                    ip: "172.16.2.10".into(),
                    ports: vec![port],
                },
            ),
        ]
        .into();
        let clients: BTreeSet<ClusterId> =
            [ClusterId::new("p", "east"), ClusterId::new("p", "edge")].into();
        let objects = client_objects(&discovery, &servers, &clients);
        assert_eq!(objects.len(), 1, "east runs the server itself");
        let (cluster, objects) = &objects[0];
        assert_eq!(cluster, &ClusterId::new("p", "edge"));
        assert_eq!(
            objects[0],
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "http-service", "namespace": "ns1"},
                "subsets": [{"addresses": [{"ip": "172.16.1.10"}, {"ip": "172.16.2.10"}],
                    "ports": [{"name": "tcp-8080", "port": 30080, "protocol": "TCP"}]}]})
        );
        assert_eq!(
            objects[1]["spec"],
            json!({"type": "ClusterIP", "sessionAffinity": "None",
                "ports": [{"name": "tcp-8080", "port": 8080, "targetPort": 30080, "protocol": "TCP"}]})
        );
        assert!(client_objects(&discovery, &BTreeMap::new(), &clients).is_empty());
    }
}
