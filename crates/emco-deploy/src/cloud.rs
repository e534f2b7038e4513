//! Standard and privileged logical clouds (upstream's dcm): instantiate puts the cloud's
//! namespace, roles, bindings, quotas and its user's certificate request on every referenced
//! cluster through the synchronizer (one context, app `logical-cloud`); terminate removes them;
//! the user's kubeconfig per cluster carries the certificate the cluster signed.
//!
//! The user's private key is made here (ECDSA P-256), sealed with the hub's secret key and kept
//! in the cloud's state; upstream keeps an RSA key in clear.

use std::sync::Arc;

use emco_core::appcontext::{
    AppContext, AppContextBuilder, AppInput, CloudScope, ClusterId, ContextObject, DigRef, Phase,
};
use emco_core::cloud::{self, CloudSpec};
use emco_core::key::ResourceKey;
use emco_core::lifecycle::{CloudAction, CloudState, CloudStatus};
use emco_core::placement::ClusterRef;
use emco_store::seal::Sealer;
use serde_json::Value;

use crate::{DeployError, Deployer, now};

/// The app name of a cloud's objects in its context (upstream's).
pub const CLOUD_APP: &str = "logical-cloud";

fn parent(of: &ResourceKey) -> ResourceKey {
    ResourceKey::new("parent", of.elements.clone())
}

/// A cloud's sealed secrets are bound to its state key.
fn seal_context(key: &ResourceKey) -> String {
    key.state_key()
}

impl Deployer {
    fn sealer(&self) -> Result<&Arc<Sealer>, DeployError> {
        self.sealer.as_ref().ok_or_else(|| {
            DeployError::Internal("this hub has no secret key to seal the cloud user's key".into())
        })
    }

    async fn cloud_state(&self, key: &ResourceKey) -> Result<(CloudStatus, u64), DeployError> {
        match self.repo.get_state(key).await? {
            Some((value, rev)) => Ok((
                serde_json::from_value(value).map_err(|e| {
                    DeployError::Internal(format!("stored state of {key} is corrupt: {e}"))
                })?,
                rev,
            )),
            None => Ok((CloudStatus::default(), 0)),
        }
    }

    /// `POST .../logical-clouds/{lc}/instantiate` of a standard or privileged cloud.
    pub async fn instantiate_cloud(&self, key: &ResourceKey) -> Result<String, DeployError> {
        let _serialised = self.lock_group(key).await;
        let stored = self.repo.get(key).await?;
        let spec = cloud::cloud_spec(&stored.data).map_err(DeployError::BadRequest)?;
        let (mut status, rev) = self.cloud_state(key).await?;
        // Refuse before doing anything, so a refused call changes nothing.
        status
            .clone()
            .apply(CloudAction::Instantiate, String::new())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        let (clusters, permissions, quotas) = self.cloud_inputs(key).await?;
        let (key_pem, request_pem) = user_credentials(&spec)?;
        let sealed = self
            .sealer()?
            .seal(&seal_context(key), key_pem.as_bytes())
            .map_err(|e| DeployError::Internal(e.to_string()))?;
        let objects = cloud::cluster_objects(&spec, &permissions, &quotas, &request_pem);
        status.revision += 1;
        let context = cloud_context(key, &spec, &clusters, objects, status.revision)?;
        self.store_context(&context).await?;

        status
            .apply(CloudAction::Instantiate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        if let Some(action) = status.actions.last_mut() {
            action.instance = context.id.clone();
        }
        status.context = Some(context.id.clone());
        status.label_context = Some(context.id.clone());
        status.user_key = Some(sealed);
        status.user_request = Some(request_pem);
        let doc =
            serde_json::to_value(&status).map_err(|e| DeployError::Internal(e.to_string()))?;
        if !self
            .repo
            .put_state_with(key, &doc, rev, self.engine.instantiate_ops(&context.id))
            .await?
        {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being instantiated; try again"
            )));
        }
        self.engine.kick(&context.id);
        tracing::info!(cloud = %key, context = %context.id, privileged = cloud::is_privileged(&permissions), "logical cloud instantiated");
        Ok(context.id)
    }

    /// The cloud's clusters (at least one), user permissions and quotas, in creation order.
    async fn cloud_inputs(
        &self,
        key: &ResourceKey,
    ) -> Result<(Vec<ClusterRef>, Vec<Value>, Vec<Value>), DeployError> {
        let references = self.repo.list("clusterReference", &parent(key)).await?;
        if references.is_empty() {
            return Err(DeployError::BadRequest(format!(
                "{key} has no cluster references: add clusters to it first"
            )));
        }
        let mut clusters = Vec::with_capacity(references.len());
        for reference in &references {
            let text = |pointer: &str| {
                reference
                    .data
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            clusters.push(ClusterRef::new(
                &text("/spec/clusterProvider"),
                &text("/spec/cluster"),
            ));
        }
        let permissions: Vec<Value> = self
            .repo
            .list("userPermission", &parent(key))
            .await?
            .into_iter()
            .map(|stored| stored.data)
            .collect();
        let quotas: Vec<Value> = self
            .repo
            .list("clusterQuota", &parent(key))
            .await?
            .into_iter()
            .map(|stored| stored.data)
            .collect();

        Ok((clusters, permissions, quotas))
    }

    /// `POST .../logical-clouds/{lc}/update` of an instantiated standard or privileged cloud:
    /// what its cluster references, permissions and quotas say now reaches the clusters; a
    /// cluster added gets everything (with the same user certificate request), one removed
    /// loses it, the others get only what changed.
    pub async fn update_cloud(&self, key: &ResourceKey) -> Result<String, DeployError> {
        let _serialised = self.lock_group(key).await;
        let stored = self.repo.get(key).await?;
        let spec = cloud::cloud_spec(&stored.data).map_err(DeployError::BadRequest)?;
        let (mut status, rev) = self.cloud_state(key).await?;
        let (Some(from), Some(request_pem), CloudState::Instantiated) = (
            status.context.clone(),
            status.user_request.clone(),
            status.state,
        ) else {
            return Err(DeployError::Conflict(format!(
                "{key} is not instantiated: instantiate it instead of updating it"
            )));
        };
        let (clusters, permissions, quotas) = self.cloud_inputs(key).await?;
        let objects = cloud::cluster_objects(&spec, &permissions, &quotas, &request_pem);
        status.revision += 1;
        let context = cloud_context(key, &spec, &clusters, objects, status.revision)?;
        self.store_context(&context).await?;
        let label = status.label_context.clone().unwrap_or_else(|| from.clone());
        status.context = Some(context.id.clone());
        let doc =
            serde_json::to_value(&status).map_err(|e| DeployError::Internal(e.to_string()))?;
        let ops = self.engine.update_ops(&from, &context.id, &label, false);
        if !self.repo.put_state_with(key, &doc, rev, ops).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being updated; try again"
            )));
        }
        self.engine.kick(&context.id);
        self.engine.kick(&from);
        tracing::info!(cloud = %key, from, to = %context.id, "logical cloud updated");
        Ok(context.id)
    }

    /// `POST .../logical-clouds/{lc}/terminate` of a standard or privileged cloud (the caller
    /// checked that no group deployed to it is running).
    pub async fn terminate_cloud(&self, key: &ResourceKey) -> Result<(), DeployError> {
        let _serialised = self.lock_group(key).await;
        self.repo.get(key).await?;
        let (mut status, rev) = self.cloud_state(key).await?;
        status
            .apply(CloudAction::Terminate, now())
            .map_err(|e| DeployError::Conflict(e.to_string()))?;
        if let (Some(action), Some(context)) = (status.actions.last_mut(), &status.context) {
            action.instance = context.clone();
        }
        let ops = match &status.context {
            Some(context) => {
                let label = status.label_context.as_deref().unwrap_or(context);
                self.engine.terminate_ops(context, label)
            }
            None => Vec::new(),
        };
        let doc =
            serde_json::to_value(&status).map_err(|e| DeployError::Internal(e.to_string()))?;
        if !self.repo.put_state_with(key, &doc, rev, ops).await? {
            return Err(DeployError::Conflict(format!(
                "{key} changed while it was being terminated; try again"
            )));
        }
        if let Some(context) = &status.context {
            self.engine.kick(context);
        }
        Ok(())
    }

    /// `POST .../logical-clouds/{lc}/stop`: ends the retries of the cloud's running
    /// instantiate, update or terminate (a cluster that cannot be reached); the run then
    /// finishes as failed, and what it did stays recorded.
    pub async fn stop_cloud(&self, key: &ResourceKey) -> Result<(), DeployError> {
        let _serialised = self.lock_group(key).await;
        self.repo.get(key).await?;
        let (status, _) = self.cloud_state(key).await?;
        let running = match &status.context {
            Some(context) => self.engine.run_status(context).await?,
            None => None,
        };
        match (running, &status.context) {
            (
                Some(
                    emco_core::status::AppContextStatus::Instantiating
                    | emco_core::status::AppContextStatus::Updating
                    | emco_core::status::AppContextStatus::Terminating,
                ),
                Some(context),
            ) => {
                self.engine.stop(context).await?;
                Ok(())
            }
            (other, _) => Err(DeployError::Conflict(format!(
                "{key} is not instantiating, updating or terminating ({})",
                other.map_or("nothing running".to_owned(), |s| format!("{s:?}"))
            ))),
        }
    }

    /// `GET .../logical-clouds/{lc}/status`, in upstream's status format (the same queries as a
    /// group's: `status=ready|deployed`, `output=summary|all|detail`, `instance`, `cluster`,
    /// `resource`, `apps`/`clusters`/`resources` lists), headed by `project` and
    /// `logicalCloud`. An admin cloud has no context: its states only.
    pub async fn cloud_status(
        &self,
        key: &ResourceKey,
        params: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Value, DeployError> {
        use emco_core::lifecycle::{ActionRecord, DigState, DigStatus};
        use emco_core::status::{ContextInput, StatusInput, StatusQuery};
        let query =
            StatusQuery::parse(params).map_err(|e| DeployError::BadRequest(e.to_string()))?;
        self.repo.get(key).await?;
        let (cloud_status, _) = self.cloud_state(key).await?;
        let state_of = |state: CloudState| match state {
            CloudState::Created => DigState::Created,
            CloudState::Instantiated => DigState::Instantiated,
            CloudState::Terminated => DigState::Terminated,
        };
        let lifecycle = DigStatus {
            state: state_of(cloud_status.state),
            actions: cloud_status
                .actions
                .iter()
                .enumerate()
                .map(|(index, action)| ActionRecord {
                    state: state_of(action.state),
                    time: action.time.clone(),
                    revision: index as u64 + 1,
                    instance: action.instance.clone(),
                })
                .collect(),
            revision: cloud_status.revision,
            delete_blocked: None,
            status_context_id: cloud_status.label_context.clone().unwrap_or_default(),
        };
        let mut input = StatusInput {
            dig_id: String::new(),
            project: key.get("project").unwrap_or_default().to_owned(),
            composite_app: String::new(),
            composite_app_version: String::new(),
            composite_profile: String::new(),
            name: String::new(),
            action_instances: lifecycle
                .actions
                .iter()
                .map(|a| a.instance.clone())
                .collect(),
            status_context_id: lifecycle.status_context_id.clone(),
            lifecycle,
            context: None,
        };
        let selected = match &query.instance {
            Some(_) => input
                .context_to_load(query.instance.as_deref())
                .map_err(|e| DeployError::NotFound(e.to_string()))?
                .map(str::to_owned),
            None => cloud_status.context.clone(),
        };
        if let Some(id) = selected {
            input.context = match self.engine.report(&id).await? {
                Some(report) => Some(ContextInput {
                    context_id: id,
                    status: report.status,
                    apps: report.apps,
                }),
                None => None,
            };
        }
        let mut rendered = emco_core::status::render(&query, &input)
            .map_err(|e| DeployError::BadRequest(e.to_string()))?;
        if let Some(fields) = rendered.as_object_mut() {
            // Upstream's LogicalCloudStatus: project and logicalCloud first, then the result.
            let mut headed = serde_json::Map::new();
            if let Some(project) = fields.remove("project") {
                headed.insert("project".into(), project);
            }
            headed.insert("logicalCloud".into(), Value::String(key.name().to_owned()));
            fields.remove("digId");
            headed.extend(std::mem::take(fields));
            *fields = headed;
        }
        Ok(rendered)
    }

    /// The status of a standard or privileged cloud's context run, if it has one.
    pub async fn cloud_run(
        &self,
        key: &ResourceKey,
    ) -> Result<Option<crate::engine::RunReport>, DeployError> {
        let (status, _) = self.cloud_state(key).await?;
        match status.context {
            Some(context) => self.engine.report(&context).await,
            None => Ok(None),
        }
    }

    /// `GET .../logical-clouds/{lc}/cluster-references/{ref}/kubeconfig`: the cloud user's
    /// kubeconfig for the referenced cluster, once the cluster signed the user's certificate.
    pub async fn cloud_kubeconfig(
        &self,
        key: &ResourceKey,
        reference: &str,
    ) -> Result<String, DeployError> {
        let stored = self.repo.get(key).await?;
        let mut elements = key.elements.clone();
        elements.push(("clusterReference".to_owned(), reference.to_owned()));
        let reference_doc = self
            .repo
            .get(&ResourceKey::new("clusterReference", elements))
            .await?;
        if emco_core::lifecycle::is_admin_cloud(&stored.data) {
            return Err(DeployError::BadRequest(format!(
                "{key} is an admin (level-0) cloud: its users use the cluster's own kubeconfig"
            )));
        }
        let spec = cloud::cloud_spec(&stored.data).map_err(DeployError::BadRequest)?;
        let (status, _) = self.cloud_state(key).await?;
        let (Some(sealed), true) = (&status.user_key, status.state == CloudState::Instantiated)
        else {
            return Err(DeployError::Conflict(format!(
                "{key} is not instantiated: instantiate it, then ask for its kubeconfig"
            )));
        };
        let text = |pointer: &str| {
            reference_doc
                .data
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let cluster = ClusterId::new(&text("/spec/clusterProvider"), &text("/spec/cluster"));
        let csr = self
            .engine
            .read_object(
                &cluster,
                "certificates.k8s.io/v1",
                "CertificateSigningRequest",
                None,
                &cloud::csr_name(&spec),
            )
            .await?;
        let certificate = csr
            .as_ref()
            .and_then(|csr| csr.pointer("/status/certificate"))
            .and_then(Value::as_str)
            .filter(|certificate| !certificate.is_empty())
            .ok_or_else(|| {
                DeployError::Conflict(format!(
                    "cluster {cluster} has not signed the user certificate of {key} yet; try again shortly"
                ))
            })?;
        use base64::Engine as _;
        let certificate = base64::engine::general_purpose::STANDARD
            .decode(certificate)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                DeployError::Internal(format!(
                    "cluster {cluster} returned an unreadable certificate"
                ))
            })?;
        let key_pem = self
            .sealer()?
            .open(&seal_context(key), sealed)
            .map_err(|e| DeployError::Internal(format!("the user key of {key}: {e}")))
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|e| DeployError::Internal(e.to_string()))
            })?;
        let (server, authority) = self.cluster_endpoint(&cluster).await?;
        Ok(cloud::user_kubeconfig(
            &spec,
            &cluster.cluster,
            &server,
            authority.as_deref(),
            &certificate,
            &key_pem,
        ))
    }

    /// The API server URL and CA (base64) of a registered cluster, from its kubeconfig.
    async fn cluster_endpoint(
        &self,
        cluster: &ClusterId,
    ) -> Result<(String, Option<String>), DeployError> {
        let blob_key = emco_rsync::engine::kubeconfig_key(cluster);
        let blob = self.repo.store().get(&blob_key).await?.ok_or_else(|| {
            DeployError::BadRequest(format!("cluster {cluster} has no kubeconfig"))
        })?;
        let kubeconfig = emco_rsync::engine::kubeconfig_from_blob(&blob.value)
            .map_err(|e| DeployError::BadRequest(format!("cluster {cluster}: {e}")))?;
        let text = String::from_utf8_lossy(&kubeconfig);
        let parsed: Value = serde_saphyr::from_str(&text).map_err(|e| {
            DeployError::BadRequest(format!(
                "cluster {cluster}: its kubeconfig is not YAML: {e}"
            ))
        })?;
        let current = parsed
            .get("current-context")
            .and_then(Value::as_str)
            .unwrap_or("");
        let contexts = parsed.get("contexts").and_then(Value::as_array);
        let cluster_name = contexts
            .into_iter()
            .flatten()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(current))
            .and_then(|c| c.pointer("/context/cluster"))
            .and_then(Value::as_str);
        let clusters = parsed.get("clusters").and_then(Value::as_array);
        let entry = clusters
            .into_iter()
            .flatten()
            .find(|c| {
                cluster_name.is_none() || c.get("name").and_then(Value::as_str) == cluster_name
            })
            .and_then(|c| c.get("cluster"))
            .ok_or_else(|| {
                DeployError::BadRequest(format!(
                    "cluster {cluster}: its kubeconfig names no cluster"
                ))
            })?;
        let server = entry.get("server").and_then(Value::as_str).ok_or_else(|| {
            DeployError::BadRequest(format!("cluster {cluster}: its kubeconfig has no server"))
        })?;
        let authority = entry
            .get("certificate-authority-data")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((server.to_owned(), authority))
    }
}

/// The user's private key (PKCS#8 PEM) and certificate request (PEM, CN = the user).
fn user_credentials(spec: &CloudSpec) -> Result<(String, String), DeployError> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| DeployError::Internal(format!("making the user's key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, spec.user.as_str());
    let request = params
        .serialize_request(&key)
        .and_then(|request| request.pem())
        .map_err(|e| {
            DeployError::Internal(format!("making the user's certificate request: {e}"))
        })?;
    Ok((key.serialize_pem(), request))
}

/// The cloud's context: one app on every referenced cluster.
fn cloud_context(
    key: &ResourceKey,
    spec: &CloudSpec,
    clusters: &[ClusterRef],
    objects: Vec<Value>,
    revision: u64,
) -> Result<AppContext, DeployError> {
    let objects = objects
        .into_iter()
        .enumerate()
        .map(|(order, object)| context_object(object, order as u32))
        .collect::<Vec<_>>();
    let dig = DigRef::new(
        key.get("project").unwrap_or(""),
        CLOUD_APP,
        "v1",
        &spec.name,
    );
    let placed: std::collections::BTreeSet<ClusterRef> = clusters.iter().cloned().collect();
    AppContextBuilder::new(dig, revision + 1, &now())
        .app(AppInput::new(CLOUD_APP, &placed, objects))
        .cloud(CloudScope {
            logical_cloud: spec.name.clone(),
            namespace: spec.namespace.clone(),
            instantiates_cloud: true,
        })
        .namespace(&spec.namespace)
        .build()
        .map_err(|e| DeployError::BadRequest(format!("cannot build the cloud's context: {e}")))
}

fn context_object(object: Value, order: u32) -> ContextObject {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let namespace = Some(text("/metadata/namespace")).filter(|ns| !ns.is_empty());
    ContextObject {
        api_version: text("/apiVersion"),
        kind: text("/kind"),
        name: text("/metadata/name"),
        namespace,
        phase: Phase::Resource { order },
        delete_policies: Vec::new(),
        keep_on_uninstall: false,
        object,
    }
}
