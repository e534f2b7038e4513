//! The traffic controller (upstream's DTC, named `dtc` in a group's intents) and its
//! sub-controllers, registered at `/v2/dtc-controllers` and run in priority order. A traffic
//! group intent holds inbound (server) intents, each with the clients allowed to reach it.
//!
//! Sub-controllers this hub runs:
//! - `nps`: a NetworkPolicy per inbound intent, named `{traffic group intent}-{inbound intent}`,
//!   on every cluster of the server app that carries the `networkpolicy-supported` label (as
//!   upstream): the server's pods (its `appLabel`) admit ingress on its port and protocol from
//!   exactly the declared clients: their pods (`appLabel`; in each of their `namespaces` when
//!   given) and, with the server's `externalSupport`, their `cidrs`.
//!
//! - `sds`: service discovery. For each inbound intent naming its server app and Service, and
//!   each client naming its app, the revision carries a
//!   [`ServiceDiscovery`](emco_core::appcontext::ServiceDiscovery): once the server is ready,
//!   the synchronizer gives each client cluster that does not run the server a Service of that
//!   name with Endpoints at the server's node port or load balancer (upstream's sds does the
//!   same in a child context after rsync's ready notification).
//!
//! Differences from upstream, on purpose: upstream also admits `0.0.0.0/0` whenever
//! `externalSupport` is off (so every source gets in) and writes the port and the protocol as
//! two separate port entries; here only the declared clients get in, on the declared port and
//! protocol. Sub-controllers registered but not run here (`its`, ...) are skipped with a
//! warning.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use emco_core::appcontext::{ClusterId, ContextObject, ServiceDiscovery};
use emco_core::key::ResourceKey;
use emco_store::repository::{RepoError, Repository};
use serde_json::{Value, json};

use crate::controllers::{ActionController, Customiser};
use crate::gather::GroupInputs;

/// The name a group's intents give the controller (`spec.intent.dtc`).
pub const NAME: &str = "dtc";
/// The cluster label that says a cluster enforces NetworkPolicies (upstream's).
pub const NETWORK_POLICY_LABEL: &str = "networkpolicy-supported";

pub struct DtcController {
    repo: Arc<Repository>,
}

impl DtcController {
    pub fn new(repo: Arc<Repository>) -> Self {
        Self { repo }
    }
}

fn parent(of: &ResourceKey) -> ResourceKey {
    ResourceKey::new("parent", of.elements.clone())
}

fn text<'a>(doc: &'a Value, pointer: &str) -> &'a str {
    doc.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `key=value` as one label.
fn label(field: &str, owner: &str, value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() && !value.contains('=') => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "{owner}: {field} {value:?} is not a key=value label"
        )),
    }
}

/// One inbound intent with its clients, as a NetworkPolicy to add to the server app.
#[derive(Debug, Clone, PartialEq)]
struct InboundPolicy {
    app: String,
    policy: Value,
}

/// The `nps` sub-controller's work for one traffic group intent.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicies {
    namespace: String,
    supported: BTreeSet<ClusterId>,
    policies: Vec<InboundPolicy>,
}

#[async_trait]
impl ActionController for DtcController {
    async fn prepare(
        &self,
        group: &GroupInputs,
        intent: &str,
    ) -> Result<Box<dyn Customiser>, String> {
        let mut subcontrollers: Vec<(i64, String)> = self
            .repo
            .list("dtcController", &ResourceKey::new("parent", Vec::new()))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|stored| {
                let priority = stored
                    .data
                    .pointer("/spec/priority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                (priority, stored.key.name().to_owned())
            })
            .collect();
        subcontrollers.sort();
        let mut steps: Vec<Box<dyn Customiser>> = Vec::new();
        for (_, name) in subcontrollers {
            match name.as_str() {
                "nps" => steps.push(Box::new(
                    network_policies(&self.repo, group, intent)
                        .await
                        .map_err(|e| format!("nps: {e}"))?,
                )),
                "sds" => steps.push(Box::new(
                    service_discoveries(&self.repo, group, intent)
                        .await
                        .map_err(|e| format!("sds: {e}"))?,
                )),
                other => tracing::warn!(
                    subcontroller = other,
                    group = %group.key,
                    "the traffic controller has no implementation of this sub-controller here; skipped"
                ),
            }
        }
        Ok(Box::new(Chain(steps)))
    }
}

/// Sub-controllers one after the other.
struct Chain(Vec<Box<dyn Customiser>>);

impl Customiser for Chain {
    fn customise(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        let mut current: Option<Vec<ContextObject>> = None;
        for step in &self.0 {
            let base = current.as_deref().unwrap_or(objects);
            if let Some(next) = step.customise(app, cluster, base)? {
                current = Some(next);
            }
        }
        Ok(current)
    }

    fn discoveries(&self) -> Vec<ServiceDiscovery> {
        self.0.iter().flat_map(|step| step.discoveries()).collect()
    }
}

/// The inbound intents of traffic group intent `intent`, each with its clients.
async fn inbound_intents(
    repo: &Repository,
    group: &GroupInputs,
    intent: &str,
) -> Result<Vec<(Value, Vec<Value>)>, String> {
    let mut elements = group.key.elements.clone();
    elements.push(("trafficGroupIntent".to_owned(), intent.to_owned()));
    let intent_key = ResourceKey::new("trafficGroupIntent", elements);
    match repo.get(&intent_key).await {
        Ok(_) => {}
        Err(RepoError::NotFound(_)) => {
            return Err(format!("traffic group intent {intent:?} does not exist"));
        }
        Err(other) => return Err(other.to_string()),
    }
    let mut inbound = Vec::new();
    for server in repo
        .list("inboundServerIntent", &parent(&intent_key))
        .await
        .map_err(|e| e.to_string())?
    {
        let clients = repo
            .list("inboundClientsIntent", &parent(&server.key))
            .await
            .map_err(|e| e.to_string())?;
        inbound.push((
            server.data,
            clients.into_iter().map(|stored| stored.data).collect(),
        ));
    }
    Ok(inbound)
}

/// The `sds` sub-controller's work: the revision's service discoveries (see the module
/// documentation). It changes no object.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDiscoveries(Vec<ServiceDiscovery>);

impl Customiser for ServiceDiscoveries {
    fn customise(
        &self,
        _: &str,
        _: &ClusterId,
        _: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        Ok(None)
    }

    fn discoveries(&self) -> Vec<ServiceDiscovery> {
        self.0.clone()
    }
}

async fn service_discoveries(
    repo: &Repository,
    group: &GroupInputs,
    intent: &str,
) -> Result<ServiceDiscoveries, String> {
    let apps: BTreeSet<&str> = group.apps.iter().map(|app| app.name.as_str()).collect();
    let mut discoveries = Vec::new();
    for (server, clients) in inbound_intents(repo, group, intent).await? {
        if let Some(discovery) = service_discovery(&group.namespace, &server, &clients, &apps)? {
            discoveries.push(discovery);
        }
    }
    Ok(ServiceDiscoveries(discoveries))
}

/// One inbound intent's discovery: `None` when it names no Service, no server app or no
/// client app (as upstream, which skips such intents).
fn service_discovery(
    namespace: &str,
    server: &Value,
    clients: &[Value],
    apps: &BTreeSet<&str>,
) -> Result<Option<ServiceDiscovery>, String> {
    let owner = format!("inbound intent {:?}", text(server, "/metadata/name"));
    let (server_app, service) = (text(server, "/spec/app"), text(server, "/spec/serviceName"));
    if server_app.is_empty() || service.is_empty() {
        return Ok(None);
    }
    let known = |field: &str, owner: &str, app: &str| {
        if apps.contains(app) {
            Ok(())
        } else {
            Err(format!(
                "{owner}: {field} {app:?} is not an app of the composite app"
            ))
        }
    };
    known("spec.app", &owner, server_app)?;
    let mut client_apps = Vec::new();
    for client in clients {
        let app = text(client, "/spec/app");
        if app.is_empty() {
            continue;
        }
        let client_owner = format!("client {:?} of {owner}", text(client, "/metadata/name"));
        known("spec.app", &client_owner, app)?;
        if !client_apps.iter().any(|known: &String| known == app) {
            client_apps.push(app.to_owned());
        }
    }
    if client_apps.is_empty() {
        return Ok(None);
    }
    Ok(Some(ServiceDiscovery {
        server: server_app.to_owned(),
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        clients: client_apps,
    }))
}

/// Reads the traffic group intent `intent` and builds its NetworkPolicies.
async fn network_policies(
    repo: &Repository,
    group: &GroupInputs,
    intent: &str,
) -> Result<NetworkPolicies, String> {
    let mut policies = Vec::new();
    for (server, clients) in inbound_intents(repo, group, intent).await? {
        if let Some(policy) = inbound_policy(intent, &server, &clients)? {
            policies.push(policy);
        }
    }
    let mut supported = BTreeSet::new();
    let providers: BTreeSet<&str> = group
        .inventory
        .clusters()
        .map(|cluster| cluster.provider())
        .collect();
    for provider in providers {
        supported.extend(
            group
                .inventory
                .clusters_with_label(provider, NETWORK_POLICY_LABEL)
                .map(ClusterId::from),
        );
    }
    Ok(NetworkPolicies {
        namespace: group.namespace.clone(),
        supported,
        policies,
    })
}

/// The NetworkPolicy of one inbound intent; `None` when it declares no clients (as upstream).
fn inbound_policy(
    traffic_intent: &str,
    server: &Value,
    clients: &[Value],
) -> Result<Option<InboundPolicy>, String> {
    let server_name = text(server, "/metadata/name");
    let owner = format!("inbound intent {server_name:?}");
    if clients.is_empty() {
        return Ok(None);
    }
    let (key, value) = label("spec.appLabel", &owner, text(server, "/spec/appLabel"))?;
    let external = match server.pointer("/spec/externalSupport") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(flag)) => flag.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let mut from = Vec::new();
    for client in clients {
        let client_owner = format!("client {:?} of {owner}", text(client, "/metadata/name"));
        let app_label = text(client, "/spec/appLabel");
        if !app_label.is_empty() {
            let (key, value) = label("spec.appLabel", &client_owner, app_label)?;
            let pods = json!({"matchLabels": {key: value}});
            let namespaces: Vec<&str> = client
                .pointer("/spec/namespaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if namespaces.is_empty() {
                from.push(json!({"podSelector": pods}));
            }
            for namespace in namespaces {
                from.push(json!({
                    "podSelector": pods,
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                }));
            }
        }
        if external {
            for cidr in client
                .pointer("/spec/cidrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                from.push(json!({"ipBlock": {"cidr": cidr}}));
            }
        }
    }
    let mut port = serde_json::Map::new();
    let protocol = text(server, "/spec/protocol");
    port.insert(
        "protocol".into(),
        json!(if protocol.is_empty() { "TCP" } else { protocol }),
    );
    if let Some(number) = server.pointer("/spec/port").filter(|p| !p.is_null()) {
        port.insert("port".into(), number.clone());
    }
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{traffic_intent}-{server_name}")},
        "spec": {
            "podSelector": {"matchLabels": {key: value}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from, "ports": [Value::Object(port)]}],
        },
    });
    Ok(Some(InboundPolicy {
        app: text(server, "/spec/app").to_owned(),
        policy,
    }))
}

impl Customiser for NetworkPolicies {
    fn customise(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String> {
        if !self.supported.contains(cluster) {
            return Ok(None);
        }
        let mut out = objects.to_vec();
        let mut changed = false;
        for inbound in self.policies.iter().filter(|p| p.app == app) {
            let policy =
                crate::objects::from_manifest(inbound.policy.clone(), &out, &self.namespace)?;
            let identity = policy.identity();
            match out.iter().position(|o| o.identity() == identity) {
                Some(index) => out[index] = policy,
                None => out.push(policy),
            }
            changed = true;
        }
        Ok(changed.then_some(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn server(external: bool) -> Value {
        json!({"metadata": {"name": "serverin"}, "spec": {
            "app": "http-server", "appLabel": "app=http-server", "serviceName": "http-service",
            "port": 3333, "protocol": "TCP", "externalSupport": external}})
    }

    fn client(namespaces: Value) -> Value {
        json!({"metadata": {"name": "client1"}, "spec": {
            "app": "http-client", "appLabel": "app=http-client", "serviceName": "http-client",
            "namespaces": namespaces, "cidrs": ["10.1.0.0/16"]}})
    }

    #[test]
    fn the_policy_admits_exactly_the_declared_clients() {
        let policy = inbound_policy("testdtc", &server(false), &[client(json!([]))])
            .unwrap()
            .unwrap();
        assert_eq!(policy.app, "http-server");
        assert_eq!(
            policy.policy,
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "testdtc-serverin"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "http-server"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{
                        "from": [{"podSelector": {"matchLabels": {"app": "http-client"}}}],
                        "ports": [{"protocol": "TCP", "port": 3333}],
                    }],
                },
            })
        );
        // Other namespaces, and address ranges when the server accepts external clients.
        let policy = inbound_policy("t", &server(true), &[client(json!(["team-a"]))])
            .unwrap()
            .unwrap();
        assert_eq!(
            policy.policy["spec"]["ingress"][0]["from"],
            json!([
                {"podSelector": {"matchLabels": {"app": "http-client"}},
                 "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}},
                {"ipBlock": {"cidr": "10.1.0.0/16"}},
            ])
        );
        assert_eq!(inbound_policy("t", &server(false), &[]).unwrap(), None);
        let mut bad = server(false);
        bad["spec"]["appLabel"] = json!("http-server");
        let error = inbound_policy("t", &bad, &[client(json!([]))]).unwrap_err();
        assert!(
            error.contains("serverin") && error.contains("appLabel"),
            "{error}"
        );
    }

    #[test]
    fn each_inbound_intent_with_a_service_and_client_apps_is_one_discovery() {
        let apps: BTreeSet<&str> = ["http-server", "http-client", "other"].into();
        let discovery = service_discovery("ns1", &server(false), &[client(json!([]))], &apps)
            .unwrap()
            .unwrap();
        assert_eq!(
            discovery,
            ServiceDiscovery {
                server: "http-server".into(),
                service: "http-service".into(),
                namespace: "ns1".into(),
                clients: vec!["http-client".into()],
            }
        );
        // No clients, or no service name: nothing to discover (as upstream).
        assert_eq!(
            service_discovery("ns1", &server(false), &[], &apps).unwrap(),
            None
        );
        let mut nameless = server(false);
        nameless["spec"]["serviceName"] = json!("");
        assert_eq!(
            service_discovery("ns1", &nameless, &[client(json!([]))], &apps).unwrap(),
            None
        );
        // A client app the composite app lacks is named.
        let mut stranger = client(json!([]));
        stranger["spec"]["app"] = json!("elsewhere");
        let error = service_discovery("ns1", &server(false), &[stranger], &apps).unwrap_err();
        assert!(
            error.contains("client1") && error.contains("elsewhere") && error.contains("spec.app"),
            "{error}"
        );
    }

    #[test]
    fn policies_go_to_the_servers_supported_clusters_only() {
        let policy = inbound_policy("testdtc", &server(false), &[client(json!([]))])
            .unwrap()
            .unwrap();
        let supported = ClusterId::new("p", "c1");
        let nps = NetworkPolicies {
            namespace: "default".into(),
            supported: [supported.clone()].into(),
            policies: vec![policy],
        };
        let out = nps
            .customise("http-server", &supported, &[])
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].namespace.as_deref(), Some("default"));
        assert_eq!(out[0].object["metadata"]["namespace"], "default");
        assert_eq!(nps.customise("http-client", &supported, &[]).unwrap(), None);
        assert_eq!(
            nps.customise("http-server", &ClusterId::new("p", "c2"), &[])
                .unwrap(),
            None
        );
    }
}
