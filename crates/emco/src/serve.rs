//! `emco serve`: opens the store, builds the API and serves it until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::ServiceExt;
use std::time::Duration;

use emco_api::{AppState, DEFAULT_MAX_BODY, router};
use emco_deploy::{ControllerSet, Deployer, SyncEngine};
use emco_helm::{HelmConfig, HelmRenderer};
use emco_rsync::ClusterOptions;
use emco_rsync::engine::{StoreConnector, SyncConfig, Synchronizer};
use emco_store::repository::{DanglingReferences, Repository};
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Dangling {
    Refuse,
    Allow,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the HTTP API (every /v2 service).
    #[arg(long, env = "EMCO_LISTEN", default_value = "127.0.0.1:9015")]
    listen: SocketAddr,
    /// Directory of the embedded store (used unless --store names etcd).
    #[arg(long, env = "EMCO_DATA", default_value = "./emco-data")]
    data: PathBuf,
    /// The hub's secret key (32 random bytes, base64), sealing secrets at rest such as logical
    /// cloud users' private keys; created (mode 0600) when missing. Defaults to `secret.key` in
    /// the data directory. Hubs sharing one etcd must share this file.
    #[arg(long, env = "EMCO_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// Azure's login endpoint for Azure Arc (GitOps) clusters (a stand-in, or a sovereign
    /// cloud's).
    #[arg(long, env = "EMCO_AZURE_LOGIN_URL", default_value = emco_rsync::gitops::azure::PUBLIC_LOGIN)]
    azure_login_url: String,
    /// Azure Resource Manager's endpoint for Azure Arc clusters.
    #[arg(long, env = "EMCO_AZURE_MANAGEMENT_URL", default_value = emco_rsync::gitops::azure::PUBLIC_MANAGEMENT)]
    azure_management_url: String,
    /// A CA certificate (PEM file) trusted for Azure's endpoints besides the system's roots
    /// (a private cloud's, or a stand-in's).
    #[arg(long, env = "EMCO_AZURE_CA_FILE")]
    azure_ca_file: Option<PathBuf>,
    /// `etcd://host:port[,host:port...]` to keep all state in etcd instead.
    #[arg(long, env = "EMCO_STORE")]
    store: Option<String>,
    /// What a write naming a resource that does not exist gets: `refuse` (409), or `allow` to
    /// store it anyway as upstream EMCO does (the reference is still recorded).
    #[arg(long, env = "EMCO_DANGLING_REFERENCES", value_enum, default_value_t = Dangling::Refuse)]
    dangling_references: Dangling,
    /// Largest accepted request body in bytes (bigger ones get 413).
    #[arg(long, env = "EMCO_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    max_body: usize,
    /// The `helm` binary that renders charts (default: `helm` on PATH).
    #[arg(long, env = "EMCO_HELM")]
    helm: Option<PathBuf>,
    /// Clusters the resource synchronizer works on at once.
    #[arg(long, env = "EMCO_MAX_CONCURRENT_CLUSTERS", default_value_t = SyncConfig::default().max_concurrent_clusters)]
    max_concurrent_clusters: usize,
    /// First retry delay for an unreachable or failing cluster, in milliseconds (doubles up to
    /// --max-backoff-ms, with jitter).
    #[arg(long, env = "EMCO_BACKOFF_MS", default_value_t = 1000)]
    backoff_ms: u64,
    #[arg(long, env = "EMCO_MAX_BACKOFF_MS", default_value_t = 30_000)]
    max_backoff_ms: u64,
    /// How long the synchronizer's record writes wait for company before committing, in
    /// milliseconds (group commit: fewer fsyncs during large rollouts).
    #[arg(long, env = "EMCO_RECORD_LINGER_MS", default_value_t = SyncConfig::default().record_linger.as_millis() as u64)]
    record_linger_ms: u64,
    /// First readiness poll of an applied app, in milliseconds after it was applied; later
    /// polls back off (doubling) to 15 s.
    #[arg(long, env = "EMCO_READY_POLL_MS", default_value_t = SyncConfig::default().ready_poll_initial.as_millis() as u64)]
    ready_poll_ms: u64,
}

impl ServeArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let address = self.store.clone().unwrap_or_default();
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("creating data directory {}", self.data.display()))?;
        let store = emco_store::open(&address, &self.data)
            .await
            .with_context(|| {
                format!(
                    "opening store {:?}",
                    if address.is_empty() {
                        "embedded"
                    } else {
                        &address
                    }
                )
            })?;
        let policy = match self.dangling_references {
            Dangling::Refuse => DanglingReferences::Refuse,
            Dangling::Allow => DanglingReferences::Allow,
        };
        let repo = Repository::open(store)
            .await
            .context("loading the referential schema")?;
        let repo = Arc::new(repo.with_dangling_references(policy));
        let key_file = self
            .secret_key_file
            .clone()
            .unwrap_or_else(|| self.data.join("secret.key"));
        let sealer = Arc::new(
            emco_store::seal::Sealer::from_key_file(&key_file)
                .with_context(|| format!("reading the secret key {}", key_file.display()))?,
        );
        let deployer = self.deployer(&repo, sealer.clone()).await?;
        let state = AppState::new(repo)
            .with_deployer(deployer)
            .with_sealer(sealer);
        let app = router(state, self.max_body);
        // Upstream accepts `/collection/` and `/collection` alike.
        let app = NormalizePathLayer::trim_trailing_slash().layer(app);
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        let local = listener.local_addr()?;
        tracing::info!(address = %local, store = if address.is_empty() { "redb" } else { "etcd" }, "hub listening");
        println!("emco hub listening on http://{local}");
        axum::serve(
            listener,
            ServiceExt::<axum::extract::Request>::into_make_service(app),
        )
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    }

    /// The deploy path: real Helm, the resource synchronizer on the same store (resuming every
    /// run a previous process left unfinished).
    async fn deployer(
        &self,
        repo: &Arc<Repository>,
        sealer: Arc<emco_store::seal::Sealer>,
    ) -> anyhow::Result<Arc<Deployer>> {
        let helm = match &self.helm {
            Some(path) => path.clone(),
            None => emco_helm::find_helm().unwrap_or_else(|| PathBuf::from("helm")),
        };
        let renderer = Arc::new(HelmRenderer::new(HelmConfig::new(helm)));
        let store = repo.store().clone();
        let azure_ca = match &self.azure_ca_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --azure-ca-file {}", path.display()))?,
            ),
            None => None,
        };
        let connector = Arc::new(
            StoreConnector::new(store.clone(), ClusterOptions::default())
                .with_git_dir(self.data.join("gitops"))
                .with_azure_endpoints(emco_rsync::gitops::azure::ArcEndpoints {
                    login: self.azure_login_url.clone(),
                    management: self.azure_management_url.clone(),
                    ca_pem: azure_ca,
                })
                .with_sealer(sealer.clone()),
        );
        let config = SyncConfig {
            max_concurrent_clusters: self.max_concurrent_clusters,
            backoff_initial: Duration::from_millis(self.backoff_ms),
            backoff_max: Duration::from_millis(self.max_backoff_ms.max(self.backoff_ms)),
            record_linger: Duration::from_millis(self.record_linger_ms),
            ready_poll_initial: Duration::from_millis(self.ready_poll_ms.max(1)),
            ..SyncConfig::default()
        };
        let synchronizer = Synchronizer::new(store, connector, config);
        let resumed = synchronizer
            .resume_all()
            .await
            .context("resuming unfinished deployments")?;
        if resumed > 0 {
            tracing::info!(
                resumed,
                "resumed unfinished instantiate/update/terminate runs"
            );
        }
        // Built-in action controllers, by the name a group's intents give them.
        let controllers = ControllerSet::default()
            .with_action(
                emco_deploy::gac::NAME,
                Arc::new(emco_deploy::gac::GacController::new(repo.clone())),
            )
            .with_action(
                emco_deploy::dtc::NAME,
                Arc::new(emco_deploy::dtc::DtcController::new(repo.clone())),
            );
        Ok(Arc::new(
            Deployer::new(repo.clone(), renderer, Arc::new(SyncEngine(synchronizer)))
                .with_controllers(controllers)
                .with_sealer(sealer),
        ))
    }
}
