//! `emco agent`: runs beside a pull (GitOps) cluster, reads the objects EMCO deployed there (those
//! labelled `emco/deployment-id`, of every kind the cluster serves) and reports them to the hub,
//! whose synchronizer judges their readiness exactly as for clusters it reaches itself.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{Discovery, verbs};
use kube::{Client, Config};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::engine::DEPLOYMENT_ID_LABEL;

/// Why the agent could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cluster: {0}")]
    Cluster(#[from] kube::Error),
    #[error("hub: {0}")]
    Hub(String),
}

/// Where the agent reads and whom it tells.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The hub's base URL (`http://hub:9015`).
    pub hub: String,
    pub provider: String,
    pub cluster: String,
    pub interval: Duration,
    /// A report is sent at least this often even when nothing changed (the hub may have
    /// restarted on an empty store, or the report expired).
    pub refresh: Duration,
}

/// Builds the agent's cluster client from a kubeconfig file's bytes.
pub async fn client_from_kubeconfig(bytes: &[u8]) -> Result<Client, AgentError> {
    let text = String::from_utf8_lossy(bytes);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|error| AgentError::Kubeconfig(error.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|error| AgentError::Kubeconfig(error.to_string()))?;
    Client::try_from(config).map_err(AgentError::Cluster)
}

/// Every object labelled by EMCO, of every listable kind, `managedFields` left out.
pub async fn collect(client: &Client, discovery: &Discovery) -> Result<Vec<Value>, AgentError> {
    let params = ListParams::default().labels(DEPLOYMENT_ID_LABEL);
    let mut objects = Vec::new();
    for group in discovery.groups() {
        // The preferred version only: one object is listed once.
        for (resource, capabilities) in group.recommended_resources() {
            if !capabilities.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let list = match api.list(&params).await {
                Ok(list) => list,
                Err(error) => {
                    debug!(kind = %resource.kind, %error, "listing failed");
                    continue;
                }
            };
            for mut item in list.items {
                item.metadata.managed_fields = None;
                let mut value = serde_json::to_value(&item).unwrap_or(Value::Null);
                if let Some(map) = value.as_object_mut() {
                    map.insert(
                        "apiVersion".into(),
                        Value::from(resource.api_version.clone()),
                    );
                    map.insert("kind".into(), Value::from(resource.kind.clone()));
                }
                objects.push(value);
            }
        }
    }
    objects.sort_by_cached_key(Value::to_string);
    Ok(objects)
}

/// Sends one report.
pub async fn report(
    http: &reqwest::Client,
    config: &AgentConfig,
    objects: &[Value],
) -> Result<(), AgentError> {
    let url = format!(
        "{}/v2/cluster-providers/{}/clusters/{}/agent-report",
        config.hub.trim_end_matches('/'),
        config.provider,
        config.cluster
    );
    let answer = http
        .put(&url)
        .json(&json!({"objects": objects}))
        .send()
        .await
        .map_err(|error| AgentError::Hub(error.to_string()))?;
    if !answer.status().is_success() {
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        return Err(AgentError::Hub(format!("{status}: {}", text.trim())));
    }
    Ok(())
}

/// Reports until the process ends: every `interval`, a report when the objects changed (or
/// `refresh` passed); failures are logged and retried on the next round.
pub async fn run(client: Client, config: AgentConfig) -> Result<(), AgentError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| AgentError::Hub(error.to_string()))?;
    let mut discovery: Option<(Discovery, Instant)> = None;
    let mut last: Option<(u64, Instant)> = None;
    info!(hub = %config.hub, provider = %config.provider, cluster = %config.cluster, "agent reporting");
    loop {
        // Kinds come and go with CRDs: discovery again now and then.
        let stale = discovery
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(10));
        if stale {
            match Discovery::new(client.clone()).run().await {
                Ok(found) => discovery = Some((found, Instant::now())),
                Err(error) => warn!(%error, "discovery failed"),
            }
        }
        if let Some((found, _)) = &discovery {
            match collect(&client, found).await {
                Ok(objects) => {
                    let mut hasher = DefaultHasher::new();
                    for object in &objects {
                        object.to_string().hash(&mut hasher);
                    }
                    let hash = hasher.finish();
                    let due = last.is_none_or(|(previous, at)| {
                        previous != hash || at.elapsed() >= config.refresh
                    });
                    if due {
                        match report(&http, &config, &objects).await {
                            Ok(()) => {
                                debug!(objects = objects.len(), "reported");
                                last = Some((hash, Instant::now()));
                            }
                            Err(error) => warn!(%error, "report failed"),
                        }
                    }
                }
                Err(error) => warn!(%error, "reading the cluster failed"),
            }
        }
        tokio::time::sleep(config.interval).await;
    }
}
