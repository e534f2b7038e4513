//! How the synchronizer gets a client for a cluster: the [`Connector`] seam, and
//! [`StoreConnector`], which builds [`KubeCluster`]s from the kubeconfigs the hub stored when
//! the clusters were registered, keeping a bounded number of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use emco_core::appcontext::ClusterId;
use emco_core::key::ResourceKey;
use emco_store::Store;
use serde_json::Value;

use std::path::PathBuf;

use emco_core::gitops::{ClusterGitOps, GitSettings, SyncTimes};
use emco_store::seal::Sealer;

use crate::cluster::{ClusterApi, ClusterError, ClusterOptions, KubeCluster};
use crate::gitops::azure::{ArcClient, ArcEndpoints, ArcSettings};
use crate::gitops::cluster::{GitCluster, Staged};
use crate::gitops::repo::{GitRepo, RepoSpec};

/// A folder name for a repository's clone: readable, and distinct per (url, branch, user).
fn repo_dir_name((url, branch, user): &(String, String, String)) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in url
        .bytes()
        .chain([0])
        .chain(branch.bytes())
        .chain([0])
        .chain(user.bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let tail: String = url
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    format!("{tail}-{hash:016x}")
}

/// Gives the synchronizer a client for a cluster.
#[async_trait]
pub trait Connector: Send + Sync {
    /// A client for `cluster`. An error that [`ClusterError::retry`] calls `Never` (a missing or
    /// unusable kubeconfig) fails the cluster's work for the run; others are retried.
    async fn connect(&self, cluster: &ClusterId) -> Result<Arc<dyn ClusterApi>, ClusterError>;
}

/// Where the hub keeps a cluster's kubeconfig: the attachment of the `cluster` resource.
pub fn kubeconfig_key(cluster: &ClusterId) -> String {
    ResourceKey::new(
        "cluster",
        vec![
            ("clusterProvider".into(), cluster.provider.clone()),
            ("cluster".into(), cluster.cluster.clone()),
        ],
    )
    .blob_key()
}

/// The kubeconfig in a stored attachment.
///
/// The REST API stores a resource's multipart file parts as one JSON list of
/// `{"field", "filename", "content"}` with base64 contents; a cluster's kubeconfig is the part
/// named `file` (or the only part). A blob that is not such a list is taken as the kubeconfig
/// itself. A kubeconfig that was itself uploaded base64-encoded (as some upstream scripts do) is
/// decoded once more.
pub fn kubeconfig_from_blob(blob: &[u8]) -> Result<Vec<u8>, String> {
    let contents = match serde_json::from_slice::<Vec<Value>>(blob) {
        Ok(_) => emco_store::attachment::file_contents(blob).ok_or(
            "the cluster has no `file` part (kubeconfig) with base64 content among its uploads",
        )?,
        Err(_) => blob.to_vec(),
    };
    let text = String::from_utf8_lossy(&contents);
    let trimmed = text.trim();
    let looks_like_yaml = trimmed.contains(':') || trimmed.starts_with('{');
    let b64 = base64::engine::general_purpose::STANDARD;
    if !looks_like_yaml && let Ok(decoded) = b64.decode(trimmed.replace(['\n', '\r'], "")) {
        return Ok(decoded);
    }
    Ok(contents)
}

struct Cached {
    client: Arc<dyn ClusterApi>,
    /// The `mod_revision` of the kubeconfig it was built from: a re-registered cluster gets a
    /// new client.
    revision: u64,
    last_used: u64,
}

/// A [`Connector`] reading kubeconfigs from the store (see [`kubeconfig_key`]). It keeps up to
/// `capacity` clients (least recently used ones are dropped, closing their connections), so a
/// fleet of idle clusters does not hold a connection pool each.
pub struct StoreConnector {
    store: Arc<dyn Store>,
    options: ClusterOptions,
    capacity: usize,
    cache: Mutex<(u64, HashMap<ClusterId, Cached>)>,
    gitops: GitOpsClients,
}

/// What GitOps clusters need: one writer per repository (shared by the clusters in it), local
/// clones under `dir`, and the hub's sealer to open sync objects' secrets.
struct GitOpsClients {
    dir: PathBuf,
    repos: Mutex<HashMap<(String, String, String), GitRepo>>,
    /// What each cluster staged and has not committed yet (outlives its clients).
    staged: Mutex<HashMap<ClusterId, Arc<Mutex<Staged>>>>,
    sealer: Option<Arc<Sealer>>,
    azure: ArcEndpoints,
    /// One Azure client per cluster (its token is cached inside).
    arc_clients: Mutex<HashMap<ClusterId, (ArcSettings, Arc<ArcClient>)>>,
}

/// Where the hub keeps a cluster's document.
fn cluster_doc_key(cluster: &ClusterId) -> String {
    ResourceKey::new(
        "cluster",
        vec![
            ("clusterProvider".into(), cluster.provider.clone()),
            ("cluster".into(), cluster.cluster.clone()),
        ],
    )
    .data_key()
}

fn sync_object_key(provider: &str, name: &str) -> String {
    ResourceKey::new(
        "clusterSyncObject",
        vec![
            ("clusterProvider".into(), provider.to_owned()),
            ("clusterSyncObject".into(), name.to_owned()),
        ],
    )
    .data_key()
}

/// The body a stored resource document holds (`{"data": <body>, "refs": [...]}`).
fn stored_body(bytes: &[u8]) -> Option<Value> {
    let mut doc: Value = serde_json::from_slice(bytes).ok()?;
    Some(doc.get_mut("data")?.take())
}

/// Clients kept by default: enough that the clusters of a large rollout are still cached when
/// their readiness is polled (building a client parses the kubeconfig, a cost that showed in
/// profiles when 256 were kept for 1,000 clusters).
pub const DEFAULT_CLIENT_CAPACITY: usize = 1024;

impl StoreConnector {
    pub fn new(store: Arc<dyn Store>, options: ClusterOptions) -> Self {
        Self {
            store,
            options,
            capacity: DEFAULT_CLIENT_CAPACITY,
            cache: Mutex::new((0, HashMap::new())),
            gitops: GitOpsClients {
                dir: std::env::temp_dir().join(format!("emco-gitops-{}", std::process::id())),
                repos: Mutex::new(HashMap::new()),
                staged: Mutex::new(HashMap::new()),
                sealer: None,
                azure: ArcEndpoints::default(),
                arc_clients: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Keeps GitOps clusters' repository clones under `dir` (the hub's data directory).
    pub fn with_git_dir(mut self, dir: PathBuf) -> Self {
        self.gitops.dir = dir;
        self
    }

    /// Reaches Azure (for Azure Arc clusters) at these endpoints instead of Azure's public
    /// cloud.
    pub fn with_azure_endpoints(mut self, endpoints: ArcEndpoints) -> Self {
        self.gitops.azure = endpoints;
        self
    }

    /// Opens sealed secrets of cluster sync objects with the hub's sealer.
    pub fn with_sealer(mut self, sealer: Arc<Sealer>) -> Self {
        self.gitops.sealer = Some(sealer);
        self
    }

    /// The kv pairs of a cluster sync object, secrets opened.
    async fn sync_object(
        &self,
        cluster: &ClusterId,
        name: &str,
    ) -> Result<Vec<(String, String)>, ClusterError> {
        let unavailable = |message: String| ClusterError::Unavailable {
            cluster: cluster.to_string(),
            message,
        };
        let entry = self
            .store
            .get(&sync_object_key(&cluster.provider, name))
            .await
            .map_err(|error| unavailable(format!("reading cluster sync object {name}: {error}")))?
            .ok_or_else(|| ClusterError::Kubeconfig {
                cluster: cluster.to_string(),
                message: format!("cluster sync object {name} does not exist"),
            })?;
        let body = stored_body(&entry.value).unwrap_or(Value::Null);
        match &self.gitops.sealer {
            Some(sealer) => emco_store::seal::open_kv(sealer, &cluster.provider, name, &body)
                .map_err(|error| ClusterError::Kubeconfig {
                    cluster: cluster.to_string(),
                    message: format!("cluster sync object {name}: {error}"),
                }),
            None => Ok(emco_core::gitops::kv_pairs(&body)),
        }
    }

    /// The client of a GitOps cluster.
    async fn gitops_client(
        &self,
        cluster: &ClusterId,
        settings: &ClusterGitOps,
    ) -> Result<Arc<dyn ClusterApi>, ClusterError> {
        let unusable = |error: emco_core::gitops::GitOpsError| ClusterError::Kubeconfig {
            cluster: cluster.to_string(),
            message: error.to_string(),
        };
        let reference = self
            .sync_object(cluster, &settings.reference_object)
            .await?;
        let git = GitSettings::from_kv(&settings.reference_object, &reference).map_err(unusable)?;
        let resource = if settings.resource_object == settings.reference_object {
            reference
        } else {
            self.sync_object(cluster, &settings.resource_object).await?
        };
        let times = SyncTimes::from_kv(&settings.resource_object, &resource).map_err(unusable)?;
        let repo = {
            let mut repos = self
                .gitops
                .repos
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (git.url.clone(), git.branch.clone(), git.user_name.clone());
            match repos.get(&key) {
                Some(repo) if repo.spec().token == git.token => repo.clone(),
                _ => {
                    let dir = self.gitops.dir.join(repo_dir_name(&key));
                    let repo = GitRepo::start(
                        RepoSpec {
                            url: git.url.clone(),
                            branch: git.branch.clone(),
                            user: git.user_name.clone(),
                            token: git.token.clone(),
                        },
                        dir,
                    );
                    repos.insert(key, repo.clone());
                    repo
                }
            }
        };
        let staged = self
            .gitops
            .staged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(cluster.clone())
            .or_default()
            .clone();
        let mut client = GitCluster::new(
            cluster.clone(),
            settings.kind,
            repo,
            git,
            times,
            self.store.clone(),
            staged,
        );
        if settings.kind == emco_core::gitops::GitOpsType::AzureArc {
            let unusable = |message: String| ClusterError::Kubeconfig {
                cluster: cluster.to_string(),
                message,
            };
            let arc_settings = ArcSettings::from_kv(&resource)
                .map_err(|error| unusable(format!("{}: {error}", settings.resource_object)))?;
            let mut clients = self
                .gitops
                .arc_clients
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let arc = match clients.get(cluster) {
                Some((known, arc)) if *known == arc_settings => arc.clone(),
                _ => {
                    let arc = Arc::new(
                        ArcClient::new(
                            arc_settings.clone(),
                            self.gitops.azure.clone(),
                            self.options.request_timeout,
                        )
                        .map_err(|error| unusable(error.to_string()))?,
                    );
                    clients.insert(cluster.clone(), (arc_settings, arc.clone()));
                    arc
                }
            };
            client = client.with_arc(arc);
        }
        Ok(Arc::new(client))
    }

    /// Keeps at most `capacity` clients (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How many clients are kept now.
    pub fn cached(&self) -> usize {
        self.lock().1.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<ClusterId, Cached>)> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Connector for StoreConnector {
    async fn connect(&self, cluster: &ClusterId) -> Result<Arc<dyn ClusterApi>, ClusterError> {
        let name = cluster.to_string();
        let document = self
            .store
            .get(&cluster_doc_key(cluster))
            .await
            .map_err(|error| ClusterError::Unavailable {
                cluster: name.clone(),
                message: format!("reading the cluster: {error}"),
            })?;
        if let Some(body) = document
            .as_ref()
            .and_then(|entry| stored_body(&entry.value))
        {
            let settings =
                ClusterGitOps::of_cluster(&body).map_err(|error| ClusterError::Kubeconfig {
                    cluster: name.clone(),
                    message: error.to_string(),
                })?;
            if let Some(settings) = settings {
                return self.gitops_client(cluster, &settings).await;
            }
        }
        let entry = self
            .store
            .get(&kubeconfig_key(cluster))
            .await
            .map_err(|error| ClusterError::Unavailable {
                cluster: name.clone(),
                message: format!("reading its kubeconfig: {error}"),
            })?
            .ok_or_else(|| ClusterError::Kubeconfig {
                cluster: name.clone(),
                message: "no kubeconfig is stored for the cluster".into(),
            })?;
        {
            let mut guard = self.lock();
            let (clock, clients) = &mut *guard;
            *clock += 1;
            if let Some(cached) = clients.get_mut(cluster)
                && cached.revision == entry.mod_revision
            {
                cached.last_used = *clock;
                return Ok(cached.client.clone());
            }
        }
        let kubeconfig =
            kubeconfig_from_blob(&entry.value).map_err(|message| ClusterError::Kubeconfig {
                cluster: name.clone(),
                message,
            })?;
        let client: Arc<dyn ClusterApi> = Arc::new(
            KubeCluster::from_kubeconfig_with(&name, &kubeconfig, self.options.clone()).await?,
        );
        let mut guard = self.lock();
        let (clock, clients) = &mut *guard;
        *clock += 1;
        if clients.len() >= self.capacity && !clients.contains_key(cluster) {
            let oldest = clients
                .iter()
                .min_by_key(|(_, cached)| cached.last_used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        clients.insert(
            cluster.clone(),
            Cached {
                client: client.clone(),
                revision: entry.mod_revision,
                last_used: *clock,
            },
        );
        Ok(client)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters: []\n";

    #[test]
    fn kubeconfigs_come_out_of_the_api_attachment_format() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let blob = json!([{"field": "file", "filename": "edge.kubeconfig", "content": b64.encode(KUBECONFIG)}]);
        let bytes = serde_json::to_vec(&blob).unwrap();
        assert_eq!(kubeconfig_from_blob(&bytes).unwrap(), KUBECONFIG.as_bytes());
        // An upload that was itself base64.
        let double = json!([{"field": "file", "content": b64.encode(b64.encode(KUBECONFIG))}]);
        let bytes = serde_json::to_vec(&double).unwrap();
        assert_eq!(kubeconfig_from_blob(&bytes).unwrap(), KUBECONFIG.as_bytes());
        // A raw kubeconfig blob.
        assert_eq!(
            kubeconfig_from_blob(KUBECONFIG.as_bytes()).unwrap(),
            KUBECONFIG.as_bytes()
        );
        let other = serde_json::to_vec(&json!([{"field": "a"}, {"field": "b"}])).unwrap();
        assert!(
            kubeconfig_from_blob(&other)
                .unwrap_err()
                .contains("no `file` part")
        );
    }

    fn kubeconfig(port: u16) -> Vec<u8> {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn clients_are_cached_bounded_and_renewed_with_their_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(emco_store::RedbStore::open(dir.path()).unwrap());
        for index in 1..=3 {
            let id = ClusterId::new("p", &format!("c{index}"));
            store
                .put(&kubeconfig_key(&id), kubeconfig(1000 + index))
                .await
                .unwrap();
        }
        let connector =
            StoreConnector::new(store.clone(), ClusterOptions::default()).with_capacity(2);
        let first = ClusterId::new("p", "c1");
        let one = connector.connect(&first).await.unwrap();
        let again = connector.connect(&first).await.unwrap();
        assert!(Arc::ptr_eq(&one, &again), "cached");
        assert_eq!(one.name(), "p+c1");
        connector.connect(&ClusterId::new("p", "c2")).await.unwrap();
        connector.connect(&ClusterId::new("p", "c3")).await.unwrap();
        assert_eq!(
            connector.cached(),
            2,
            "the least recently used one was dropped"
        );
        // A re-registered cluster gets a client from its new kubeconfig.
        let second = ClusterId::new("p", "c2");
        let before = connector.connect(&second).await.unwrap();
        store
            .put(&kubeconfig_key(&second), kubeconfig(2000))
            .await
            .unwrap();
        let after = connector.connect(&second).await.unwrap();
        assert!(!Arc::ptr_eq(&before, &after));

        let missing = connector
            .connect(&ClusterId::new("p", "none"))
            .await
            .err()
            .unwrap();
        assert_eq!(missing.retry(), crate::cluster::Retry::Never);
        assert!(missing.to_string().contains("no kubeconfig"), "{missing}");
        store
            .put(&kubeconfig_key(&first), b"clusters: [".to_vec())
            .await
            .unwrap();
        let broken = connector.connect(&first).await.err().unwrap();
        assert!(
            matches!(broken, ClusterError::Kubeconfig { .. }),
            "{broken}"
        );
    }

    #[test]
    fn the_key_is_the_cluster_resource_attachment() {
        assert_eq!(
            kubeconfig_key(&ClusterId::new("prov", "edge-1")),
            "b/cluster/prov/edge-1"
        );
    }
}
