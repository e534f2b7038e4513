//! The seam for simulated controllers: what the API server's admission defaults and the
//! cluster's controllers do to objects.
//!
//! * [`admit`] runs inside every create and update, before the object is stored, with the
//!   cluster's state locked: defaults a real cluster applies synchronously (Namespaces are
//!   `Active`, Services get a ClusterIP, CRDs are `Established`).
//! * [`after_commit`] runs after every stored change, still under the lock: the hook for
//!   reactions. Workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, Pods) get
//!   their status after a delay from [`crate::workloads`] (one timer queue per simulator,
//!   writing through [`crate::api::internal_update_status`]); approved CertificateSigningRequests
//!   are signed at once by the cluster's CA ([`crate::csr`]).
//!
//! Each cluster's state holds a [`ClusterControllers`]: the simulator's timer queue, a weak
//! reference back to the cluster (for its fault plan) and its CA once created.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value, json};

use crate::catalog::ResourceDef;
use crate::cluster::{Cluster, ClusterState, EventType};
use crate::crd;
use crate::csr::{self, ClusterCa};
use crate::workloads::{self, Pending, Reactor, WorkloadKind};

/// What a cluster's controllers keep: cheap until used (a pointer and a weak reference), the
/// CA only after the first signature (or the simulator's shared CA when it serves TLS).
#[derive(Debug, Default)]
pub struct ClusterControllers {
    reactor: Option<Arc<Reactor>>,
    cluster: Weak<Cluster>,
    ca: Option<Arc<ClusterCa>>,
}

impl ClusterControllers {
    /// Controllers for `cluster`, timed by `reactor`. Without a reactor (the default) workloads
    /// are left alone; CSRs are signed either way.
    pub fn new(reactor: Arc<Reactor>, cluster: Weak<Cluster>) -> Self {
        Self {
            reactor: Some(reactor),
            cluster,
            ca: None,
        }
    }

    /// Signs with `ca` instead of a CA of its own: a simulator serving TLS shares one CA
    /// between its serving certificate and every cluster, as a real cluster's CA signs both
    /// its API server's certificate and its clients'.
    pub fn with_ca(mut self, ca: Arc<ClusterCa>) -> Self {
        self.ca = Some(ca);
        self
    }

    pub fn cluster_name(&self) -> String {
        self.cluster
            .upgrade()
            .map(|cluster| cluster.name().to_owned())
            .unwrap_or_default()
    }

    /// How many nodes the cluster has (one without a reactor).
    pub fn nodes(&self) -> u32 {
        self.reactor
            .as_ref()
            .map_or(1, |reactor| reactor.settings().nodes)
            .max(1)
    }

    /// The cluster's CA, created on first use.
    pub fn ca(&mut self) -> Result<&ClusterCa, csr::SignError> {
        let ca = match self.ca.take() {
            Some(ca) => ca,
            None => Arc::new(ClusterCa::new(&self.cluster_name())?),
        };
        Ok(self.ca.insert(ca))
    }
}

/// The PEM certificate of the CA that signs `state`'s CertificateSigningRequests (created on
/// first use).
pub fn cluster_ca_pem(state: &mut ClusterState) -> Result<String, csr::SignError> {
    Ok(state.controllers.ca()?.certificate_pem().to_owned())
}

/// Whether an object is being created or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create (POST, or apply of a missing object).
    Create,
    /// An update (PUT, PATCH, apply of an existing object).
    Update,
}

fn object_field<'a>(object: &'a mut Value, name: &str) -> Option<&'a mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    let field = map.entry(name.to_owned()).or_insert_with(|| json!({}));
    if !field.is_object() {
        *field = json!({});
    }
    field.as_object_mut()
}

/// Applies the synchronous defaults of a real cluster to `object` before it is stored.
pub fn admit(
    def: &ResourceDef,
    operation: Operation,
    object: &mut Value,
    state: &mut ClusterState,
) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(metadata) = object_field(object, "metadata") {
                let labels = metadata.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
                }
            }
            if operation == Operation::Create {
                if let Some(spec) = object_field(object, "spec") {
                    spec.entry("finalizers")
                        .or_insert_with(|| json!(["kubernetes"]));
                }
                if let Some(status) = object_field(object, "status") {
                    status.insert("phase".into(), json!("Active"));
                }
            }
        }
        ("", "services") => default_service(operation, object, state),
        ("", "secrets") => {
            if let Some(map) = object.as_object_mut()
                && map
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        ("", "pods") => {
            if let Some(spec) = object.get_mut("spec") {
                default_pod_spec(spec, "Always");
            }
            if operation == Operation::Create
                && let Some(status) = object_field(object, "status")
            {
                status.insert("phase".into(), json!("Pending"));
                status.insert("qosClass".into(), json!("BestEffort"));
            }
        }
        ("apps", "deployments" | "statefulsets" | "replicasets" | "daemonsets") => {
            default_workload(def, object);
            if operation == Operation::Create {
                object_field(object, "status");
            }
        }
        ("batch", "jobs") => {
            if let Some(spec) = object_field(object, "spec") {
                spec.entry("backoffLimit").or_insert_with(|| json!(6));
                spec.entry("completionMode")
                    .or_insert_with(|| json!("NonIndexed"));
                spec.entry("suspend").or_insert_with(|| json!(false));
                if let Some(template) = spec.get_mut("template") {
                    default_pod_template(template, "Never");
                }
            }
            if operation == Operation::Create {
                object_field(object, "status");
            }
        }
        ("batch", "cronjobs") => {
            if let Some(spec) = object_field(object, "spec") {
                spec.entry("concurrencyPolicy")
                    .or_insert_with(|| json!("Allow"));
                spec.entry("suspend").or_insert_with(|| json!(false));
                spec.entry("successfulJobsHistoryLimit")
                    .or_insert_with(|| json!(3));
                spec.entry("failedJobsHistoryLimit")
                    .or_insert_with(|| json!(1));
                if let Some(template) = spec
                    .get_mut("jobTemplate")
                    .and_then(|job| job.get_mut("spec"))
                    .and_then(|job| job.get_mut("template"))
                {
                    default_pod_template(template, "Never");
                }
            }
            if operation == Operation::Create {
                object_field(object, "status");
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let status = crd::established_status(object);
            if let Some(map) = object.as_object_mut() {
                map.insert("status".into(), status);
            }
        }
        _ => {
            // Built-in kinds start with an empty status; custom resources without one.
            if operation == Operation::Create
                && def.status
                && crate::catalog::builtin(&def.group, &def.version, &def.plural).is_some()
            {
                object_field(object, "status");
            }
        }
    }
}

/// The API server's defaults for Deployments, StatefulSets, ReplicaSets and DaemonSets.
fn default_workload(def: &ResourceDef, object: &mut Value) {
    let Some(spec) = object_field(object, "spec") else {
        return;
    };
    let rolling = |extra: Value| {
        let mut strategy = json!({"type": "RollingUpdate"});
        if let Some(map) = strategy.as_object_mut() {
            map.insert("rollingUpdate".into(), extra);
        }
        strategy
    };
    match def.plural.as_str() {
        "deployments" => {
            spec.entry("replicas").or_insert_with(|| json!(1));
            spec.entry("strategy")
                .or_insert_with(|| rolling(json!({"maxUnavailable": "25%", "maxSurge": "25%"})));
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
            spec.entry("progressDeadlineSeconds")
                .or_insert_with(|| json!(600));
        }
        "statefulsets" => {
            spec.entry("replicas").or_insert_with(|| json!(1));
            spec.entry("podManagementPolicy")
                .or_insert_with(|| json!("OrderedReady"));
            spec.entry("updateStrategy")
                .or_insert_with(|| rolling(json!({"partition": 0})));
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
        }
        "daemonsets" => {
            spec.entry("updateStrategy")
                .or_insert_with(|| rolling(json!({"maxUnavailable": 1, "maxSurge": 0})));
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
        }
        _ => {
            spec.entry("replicas").or_insert_with(|| json!(1));
        }
    }
    if let Some(template) = spec.get_mut("template") {
        default_pod_template(template, "Always");
    }
}

fn default_pod_template(template: &mut Value, restart_policy: &str) {
    if let Some(spec) = template.get_mut("spec") {
        default_pod_spec(spec, restart_policy);
    }
}

/// Pod spec defaults: restart and DNS policy, scheduler, grace period, and per container the
/// termination message, pull policy and port protocol.
fn default_pod_spec(spec: &mut Value, restart_policy: &str) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    spec.entry("restartPolicy")
        .or_insert_with(|| json!(restart_policy));
    spec.entry("dnsPolicy")
        .or_insert_with(|| json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert_with(|| json!("default-scheduler"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert_with(|| json!(30));
    spec.entry("securityContext").or_insert_with(|| json!({}));
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            container
                .entry("terminationMessagePath")
                .or_insert_with(|| json!("/dev/termination-log"));
            container
                .entry("terminationMessagePolicy")
                .or_insert_with(|| json!("File"));
            container.entry("resources").or_insert_with(|| json!({}));
            let image = container
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let tag = image
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'))
                .map(|(_, tag)| tag);
            let always = !image.contains('@') && tag.is_none_or(|tag| tag == "latest");
            container
                .entry("imagePullPolicy")
                .or_insert_with(|| json!(if always { "Always" } else { "IfNotPresent" }));
            if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    port.entry("protocol").or_insert_with(|| json!("TCP"));
                }
            }
        }
    }
}

fn default_service(operation: Operation, object: &mut Value, state: &mut ClusterState) {
    let Some(spec) = object_field(object, "spec") else {
        return;
    };
    let service_type = spec
        .entry("type")
        .or_insert_with(|| json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    spec.entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol").or_insert_with(|| json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                port.entry("targetPort").or_insert(number);
            }
        }
    }
    let wants_ip = service_type != "ExternalName"
        && spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
    if operation == Operation::Create && wants_ip {
        let offset = state.next_service_ip;
        state.next_service_ip += 1;
        // 10.96.0.0/12, skipping .0 and the API server's .1.
        let address = format!(
            "10.{}.{}.{}",
            96 + (offset >> 16 & 0x0f),
            offset >> 8 & 0xff,
            offset & 0xff
        );
        spec.insert("clusterIP".into(), json!(address));
        spec.insert("clusterIPs".into(), json!([address]));
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
        spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
        spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
    }
    // NodePort and LoadBalancer services get a node port for every port that names none, from
    // the default range, as the API server allocates them.
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer")
        && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut)
    {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if port.get("nodePort").and_then(Value::as_i64).is_none() {
                let allocated = NODE_PORT_FIRST + state.next_node_port % NODE_PORT_COUNT;
                state.next_node_port += 1;
                port.insert("nodePort".into(), json!(allocated));
            }
        }
    }
    let cluster_name = state.controllers.cluster_name();
    if let Some(status) = object_field(object, "status") {
        if service_type == "LoadBalancer" {
            // A load-balancer controller (MetalLB, a cloud's) hands out one ingress address.
            let has_ingress = status
                .get("loadBalancer")
                .and_then(|lb| lb.get("ingress"))
                .and_then(Value::as_array)
                .is_some_and(|ingress| !ingress.is_empty());
            if !has_ingress {
                let offset = state.next_load_balancer_ip;
                state.next_load_balancer_ip += 1;
                let hash = crate::cluster::name_hash(&cluster_name);
                let address = format!(
                    "198.{}.{}.{}",
                    18 + (hash >> 8 & 1),
                    hash & 0xff,
                    10 + offset % 240
                );
                status.insert(
                    "loadBalancer".into(),
                    json!({"ingress": [{"ip": address, "ipMode": "VIP"}]}),
                );
            }
        } else if operation == Operation::Create {
            status.insert("loadBalancer".into(), json!({}));
        }
    }
}

/// The API server's default node port range, 30000-32767.
const NODE_PORT_FIRST: u32 = 30000;
const NODE_PORT_COUNT: u32 = 2768;

/// Called after every stored change (under the cluster's lock): queues workloads for their
/// controllers (or, with no delay, brings them up at once) and signs approved CSRs.
pub fn after_commit(def: &ResourceDef, event: EventType, object: &Value, state: &mut ClusterState) {
    if event == EventType::Deleted {
        return;
    }
    if let Some(kind) = WorkloadKind::of(def) {
        if workloads::needs_reconcile(kind, object) {
            workload_changed(kind, object, state);
        }
    } else if def.group == "certificates.k8s.io"
        && def.plural == "certificatesigningrequests"
        && csr::wants_signing(object)
    {
        sign(def, object, state);
    }
}

fn workload_changed(kind: WorkloadKind, object: &Value, state: &mut ClusterState) {
    let Some(reactor) = state.controllers.reactor.clone() else {
        return;
    };
    let cluster = state.controllers.cluster.clone();
    let pending = Pending::new(cluster.clone(), kind, object);
    let settings = *reactor.settings();
    if !settings.ready_after.is_zero() && reactor.schedule(pending.clone(), settings.ready_after) {
        return;
    }
    // No delay (or no runtime to wait in): the controller acts within this request.
    let fault = cluster
        .upgrade()
        .is_some_and(|cluster| workloads::fault_never_ready(&cluster));
    if let Some(parked) = workloads::reconcile(state, pending, fault, &settings) {
        reactor.schedule(parked, workloads::RECHECK);
    }
}

fn sign(def: &ResourceDef, object: &Value, state: &mut ClusterState) {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let status = state
        .controllers
        .ca()
        .and_then(|ca| csr::signed_status(ca, object));
    match status {
        Ok(status) => {
            if let Some(def) = crate::catalog::builtin(&def.group, &def.version, &def.plural) {
                crate::api::internal_update_status(state, &def, "", &name, status);
            }
        }
        Err(error) => {
            tracing::warn!(csr = %name, %error, "not signing CertificateSigningRequest");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::cluster::Cluster;

    #[test]
    fn services_get_cluster_ips_and_port_defaults() {
        let cluster = Cluster::new("edge-1", 8);
        let mut state = cluster.lock();
        let services = catalog::builtin("", "v1", "services").unwrap();
        let mut first = json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}});
        let mut second = json!({"metadata": {"name": "b"}, "spec": {"clusterIP": "None"}});
        admit(&services, Operation::Create, &mut first, &mut state);
        admit(&services, Operation::Create, &mut second, &mut state);
        assert_eq!(first["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            first["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(first["spec"]["type"], "ClusterIP");
        assert_eq!(second["spec"]["clusterIP"], "None");
    }

    #[test]
    fn node_port_and_load_balancer_services_get_ports_and_an_ingress_address() {
        let cluster = Cluster::new("edge-1", 8);
        let mut state = cluster.lock();
        let services = catalog::builtin("", "v1", "services").unwrap();
        let mut node_port = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80}, {"port": 81, "nodePort": 30083}]}});
        let mut balanced = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer",
            "ports": [{"port": 443}]}});
        admit(&services, Operation::Create, &mut node_port, &mut state);
        admit(&services, Operation::Create, &mut balanced, &mut state);
        assert_eq!(node_port["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(
            node_port["spec"]["ports"][1]["nodePort"], 30083,
            "kept as asked"
        );
        assert_eq!(node_port["status"]["loadBalancer"], json!({}));
        assert_eq!(balanced["spec"]["ports"][0]["nodePort"], 30001);
        let ingress = balanced["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(ingress.starts_with("198.1"), "{ingress}");
        // An update keeps the address it was given.
        admit(&services, Operation::Update, &mut balanced, &mut state);
        assert_eq!(
            balanced["status"]["loadBalancer"]["ingress"][0]["ip"],
            ingress.as_str()
        );
    }

    #[test]
    fn workloads_get_the_api_server_defaults() {
        let cluster = Cluster::new("edge-1", 8);
        let mut state = cluster.lock();
        let deployments = catalog::builtin("apps", "v1", "deployments").unwrap();
        let mut deployment = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "registry:5000/envoy"}
        ]}}}});
        admit(&deployments, Operation::Create, &mut deployment, &mut state);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(deployment["status"], json!({}));
    }

    #[test]
    fn namespaces_are_active_and_labelled() {
        let cluster = Cluster::new("edge-1", 8);
        let mut state = cluster.lock();
        let mut namespace = json!({"metadata": {"name": "team-a"}});
        admit(
            &catalog::namespaces(),
            Operation::Create,
            &mut namespace,
            &mut state,
        );
        assert_eq!(namespace["status"]["phase"], "Active");
        assert_eq!(
            namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
    }
}
