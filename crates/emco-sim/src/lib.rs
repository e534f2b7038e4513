//! Many simulated Kubernetes clusters in one process, for tests, benchmarks and the quick start.
//!
//! Each cluster serves the Kubernetes REST API under `{base}/clusters/{name}`, faithfully enough
//! that `kubectl` and kube-rs work against it unchanged: discovery (legacy and aggregated),
//! OpenAPI v3 stubs, the built-in types EMCO deploys plus whatever CRDs add, and the verbs with
//! their real semantics (resourceVersions, watches, optimistic concurrency, the three patch
//! types, server-side apply with managed fields, finalizers, namespace deletion, `Status`
//! errors). Nothing runs per cluster while it is idle: a cluster is a name, a lock and empty
//! collections until first used.
//!
//! ```no_run
//! # async fn example() -> Result<(), emco_sim::SimError> {
//! let sim = emco_sim::Sim::new(emco_sim::SimOptions::default());
//! sim.add_clusters("edge-", 3)?;
//! let running = emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}", running.sim.server_url("edge-1")); // http://127.0.0.1:PORT/clusters/edge-1
//! # Ok(()) }
//! ```
//!
//! With [`SimOptions::tls`] the simulator serves HTTPS with a throw-away CA that its
//! kubeconfigs carry ([`tls`]).
//!
//! The control API under `/sim` is described in [`control`]. Seams for later work:
//! [`controllers`] (what happens after writes), [`faults`] (checked before each request) and
//! [`apply`] (server-side apply and managed fields).

pub mod api;
pub mod apply;
pub mod argocd;
pub mod catalog;
pub mod cluster;
pub mod configsync;
pub mod control;
pub mod controllers;
pub mod crd;
pub mod csr;
pub mod discovery;
pub mod error;
pub mod faults;
pub mod flux;
pub mod git;
pub mod meta;
pub mod openapi;
pub mod proto;
mod pull;
pub mod rbac;
pub mod selector;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;
pub mod workloads;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cluster::Cluster;
pub use error::{ApiError, SimError};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to write `{name}.kubeconfig` for each cluster (none written when `None`).
    pub kubeconfig_dir: Option<PathBuf>,
    /// Changes kept per cluster for watches that resume from a resourceVersion; older ones get
    /// `410 Expired`.
    pub watch_history: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// How long workloads take to report ready after a change (zero: at once).
    pub ready_after: Duration,
    /// Simulated nodes per cluster (how many pods a DaemonSet runs).
    pub nodes: u32,
    /// Serve HTTPS with a throw-away CA (see [`tls`]); kubeconfigs then carry the CA.
    pub tls: bool,
    /// Where the Git server keeps its bare repositories (see [`git`]); by default `git/` in a
    /// directory of this process (under the kubeconfig directory when there is one).
    pub git_root: Option<PathBuf>,
    /// Git users (HTTP Basic); when any are set, every Git request must name one of them.
    pub git_users: Vec<git::GitUser>,
    /// How often the pull modes ([`flux`], [`configsync`], [`argocd`]) reconcile each cluster,
    /// instead of the objects' own intervals (so tests are fast).
    pub flux_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            kubeconfig_dir: None,
            watch_history: 1000,
            bookmark_interval: Duration::from_secs(60),
            max_body: 16 * 1024 * 1024,
            ready_after: Duration::from_secs(1),
            nodes: 1,
            tls: false,
            git_root: None,
            git_users: Vec::new(),
            flux_interval: Duration::from_millis(1000),
        }
    }
}

/// A cluster as the control API describes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterInfo {
    /// Cluster name.
    pub name: String,
    /// Its API server URL (empty until the simulator listens).
    pub server: String,
    /// Its kubeconfig file, when one was written.
    pub kubeconfig: Option<PathBuf>,
}

/// The simulator: a set of named clusters.
#[derive(Debug)]
pub struct Sim {
    options: SimOptions,
    clusters: RwLock<HashMap<String, Arc<Cluster>>>,
    base_url: RwLock<String>,
    reactor: Arc<workloads::Reactor>,
    /// The CA of a TLS simulator, created on first use.
    tls_ca: Mutex<Option<Arc<csr::ClusterCa>>>,
    /// Files of this process: the default Git root and pull mode's checkouts.
    work_dir: WorkDir,
    git: git::GitServer,
    flux: flux::Flux,
    configsync: configsync::ConfigSync,
    argocd: argocd::ArgoCd,
}

/// A directory of this simulator, removed with it when the simulator made it up itself.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    owned: bool,
}

impl WorkDir {
    fn new(options: &SimOptions) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = format!(
            "emco-sim-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        match &options.kubeconfig_dir {
            Some(dir) => Self {
                path: dir.join(format!(".{unique}")),
                owned: true,
            },
            None => Self {
                path: std::env::temp_dir().join(unique),
                owned: true,
            },
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Compares `edge-2` before `edge-10`.
fn natural_order(a: &str, b: &str) -> Ordering {
    let split = |name: &str| {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = name.split_at(name.len() - digits);
        (stem.to_owned(), number.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

impl Sim {
    /// An empty simulator.
    pub fn new(options: SimOptions) -> Arc<Self> {
        let reactor = workloads::Reactor::new(workloads::WorkloadSettings {
            ready_after: options.ready_after,
            nodes: options.nodes,
        });
        let work_dir = WorkDir::new(&options);
        let git_root = options
            .git_root
            .clone()
            .unwrap_or_else(|| work_dir.path.join("git"));
        let git = git::GitServer::new(git_root, options.git_users.clone());
        Arc::new(Self {
            options,
            clusters: RwLock::new(HashMap::new()),
            base_url: RwLock::new(String::new()),
            reactor,
            tls_ca: Mutex::new(None),
            work_dir,
            git,
            flux: flux::Flux::default(),
            configsync: configsync::ConfigSync::default(),
            argocd: argocd::ArgoCd::default(),
        })
    }

    /// Its options.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// The Git server (see [`git`]).
    pub fn git(&self) -> &git::GitServer {
        &self.git
    }

    /// Pull mode (see [`flux`]).
    pub fn flux(&self) -> &flux::Flux {
        &self.flux
    }

    /// Pull mode as Config Sync (see [`configsync`]).
    pub fn configsync(&self) -> &configsync::ConfigSync {
        &self.configsync
    }

    /// Pull mode as Argo CD (see [`argocd`]).
    pub fn argocd(&self) -> &argocd::ArgoCd {
        &self.argocd
    }

    /// A directory private to this simulator (removed with it).
    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir.path
    }

    /// `http://host:port` (`https://` with TLS), once listening.
    pub fn base_url(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets where the simulator is reachable (used in kubeconfigs and `server` URLs).
    pub fn set_base_url(&self, url: impl Into<String>) {
        *self
            .base_url
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = url.into();
    }

    /// The base URL of a simulator listening on `address`: `https://` with TLS.
    pub fn listen_url(&self, address: SocketAddr) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{address}")
    }

    /// The CA of a TLS simulator (created on first use; `None` without TLS): it issues the
    /// serving certificate, kubeconfigs carry it, and every cluster's CertificateSigningRequests
    /// are signed by it.
    pub fn tls_ca(&self) -> Result<Option<Arc<csr::ClusterCa>>, SimError> {
        if !self.options.tls {
            return Ok(None);
        }
        let mut shared = self
            .tls_ca
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ca) = shared.as_ref() {
            return Ok(Some(ca.clone()));
        }
        let ca = Arc::new(csr::ClusterCa::new("sim")?);
        *shared = Some(ca.clone());
        Ok(Some(ca))
    }

    /// The API server URL of a cluster.
    pub fn server_url(&self, name: &str) -> String {
        format!("{}/clusters/{name}", self.base_url())
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .cloned()
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.clusters
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether there are no clusters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All cluster names, `edge-2` before `edge-10`.
    pub fn cluster_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .clusters
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort_by(|a, b| natural_order(a, b));
        names
    }

    /// Where `name`'s kubeconfig goes (with a kubeconfig directory).
    pub fn kubeconfig_path(&self, name: &str) -> Option<PathBuf> {
        self.options
            .kubeconfig_dir
            .as_ref()
            .map(|dir| dir.join(format!("{name}.kubeconfig")))
    }

    /// How the control API describes `name`.
    pub fn cluster_info(&self, name: &str) -> ClusterInfo {
        let base = self.base_url();
        ClusterInfo {
            name: name.to_owned(),
            server: if base.is_empty() {
                String::new()
            } else {
                self.server_url(name)
            },
            kubeconfig: self.kubeconfig_path(name).filter(|_| !base.is_empty()),
        }
    }

    /// A kubeconfig for `name`: one cluster, one context, a token user (any token works).
    /// With TLS the cluster carries the CA as `certificate-authority-data`.
    pub fn kubeconfig(&self, name: &str) -> String {
        let authority = match self.tls_ca() {
            Ok(Some(ca)) => format!(
                "    certificate-authority-data: {}\n",
                STANDARD.encode(ca.certificate_pem())
            ),
            Ok(None) => String::new(),
            Err(error) => {
                // Clients will refuse the server rather than trust it blindly.
                tracing::warn!(%error, cluster = name, "kubeconfig written without its CA");
                String::new()
            }
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n{authority}    server: {server}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\npreferences: {{}}\nusers:\n- name: {name}\n  user:\n    token: sim-token-{name}\n",
            server = self.server_url(name)
        )
    }

    fn write_kubeconfig(&self, name: &str) -> Result<(), SimError> {
        let Some(path) = self.kubeconfig_path(name) else {
            return Ok(());
        };
        if self.base_url().is_empty() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| SimError::Kubeconfig {
                path: dir.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, self.kubeconfig(name))
            .map_err(|source| SimError::Kubeconfig { path, source })
    }

    /// Adds an empty cluster (and writes its kubeconfig once the simulator listens).
    pub fn add_cluster(&self, name: &str) -> Result<ClusterInfo, SimError> {
        if !validation::is_dns1123_label(name) {
            return Err(SimError::InvalidClusterName(name.to_owned()));
        }
        let shared_ca = self.tls_ca()?;
        {
            let mut clusters = self
                .clusters
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if clusters.contains_key(name) {
                return Err(SimError::ClusterExists(name.to_owned()));
            }
            let cluster = Arc::new_cyclic(|me| {
                let controllers =
                    controllers::ClusterControllers::new(self.reactor.clone(), me.clone());
                let controllers = match shared_ca {
                    Some(ca) => controllers.with_ca(ca),
                    None => controllers,
                };
                Cluster::new(name, self.options.watch_history).with_controllers(controllers)
            });
            clusters.insert(name.to_owned(), cluster);
        }
        self.write_kubeconfig(name)?;
        Ok(self.cluster_info(name))
    }

    /// Adds `{prefix}1` … `{prefix}{count}`.
    pub fn add_clusters(&self, prefix: &str, count: usize) -> Result<(), SimError> {
        for index in 1..=count {
            self.add_cluster(&format!("{prefix}{index}"))?;
        }
        Ok(())
    }

    /// Removes a cluster: its state is dropped, its watches end, its kubeconfig is deleted.
    pub fn remove_cluster(&self, name: &str) -> Result<(), SimError> {
        let removed = self
            .clusters
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
        if removed.is_none() {
            return Err(SimError::ClusterNotFound(name.to_owned()));
        }
        self.flux.forget(name);
        self.configsync.forget(name);
        self.argocd.forget(name);
        if let Some(path) = self.kubeconfig_path(name) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SimError::Kubeconfig { path, source }),
            }
        }
        Ok(())
    }

    /// Writes the kubeconfigs of all clusters (after the base URL became known).
    pub fn write_kubeconfigs(&self) -> Result<(), SimError> {
        for name in self.cluster_names() {
            self.write_kubeconfig(&name)?;
        }
        Ok(())
    }
}

/// The HTTP router: `/clusters/{name}/…` (the Kubernetes API of each cluster) and `/sim/…`
/// (the control API).
pub fn router(sim: Arc<Sim>) -> Router {
    let max_body = sim.options.max_body;
    Router::new()
        .route("/clusters/{cluster}", any(kube_api))
        .route("/clusters/{cluster}/{*path}", any(kube_api))
        .route("/sim/healthz", get(|| async { "ok" }))
        .route("/sim/stats", get(control::stats))
        .route("/sim/clusters", get(control::list).post(control::add))
        .route(
            "/sim/clusters/{name}",
            get(control::show).delete(control::remove),
        )
        .route(
            "/sim/faults",
            get(control::list_faults)
                .put(control::set_faults)
                .delete(control::clear_faults),
        )
        .route("/sim/restart", post(control::restart_clusters))
        .route(
            "/sim/clusters/{name}/faults",
            get(control::show_cluster_faults)
                .put(control::set_cluster_faults)
                .delete(control::clear_cluster_faults),
        )
        .route(
            "/sim/clusters/{name}/restart",
            post(control::restart_cluster),
        )
        .route("/git/{*path}", any(git::serve))
        .route("/sim/git/repos", get(git::list_repos))
        .route("/sim/git/repos/{name}", post(git::create_repo))
        .route("/sim/git/down", post(git::down))
        .route("/sim/git/up", post(git::up))
        .route(
            "/sim/clusters/{name}/flux",
            get(pull::show::<flux::FluxMode>).post(pull::setup::<flux::FluxMode>),
        )
        .route(
            "/sim/clusters/{name}/flux/reconcile",
            post(pull::reconcile::<flux::FluxMode>),
        )
        .route(
            "/sim/clusters/{name}/configsync",
            get(pull::show::<configsync::ConfigSyncMode>)
                .post(pull::setup::<configsync::ConfigSyncMode>),
        )
        .route(
            "/sim/clusters/{name}/configsync/reconcile",
            post(pull::reconcile::<configsync::ConfigSyncMode>),
        )
        .route(
            "/sim/clusters/{name}/argocd",
            get(pull::show::<argocd::ArgoCdMode>).post(pull::setup::<argocd::ArgoCdMode>),
        )
        .route(
            "/sim/clusters/{name}/argocd/reconcile",
            post(pull::reconcile::<argocd::ArgoCdMode>),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(sim)
}

async fn kube_api(
    State(sim): State<Arc<Sim>>,
    connection: Option<axum::Extension<axum::extract::ConnectInfo<faults::ConnectionHandle>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/clusters/").unwrap_or_default();
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    let Some(cluster) = sim.cluster(name) else {
        return ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("no simulated cluster named {name:?}"),
            details: None,
        }
        .into_response();
    };
    let rest = format!("/{rest}");
    if let Some(response) = faults::before_request(&cluster.faults, &method, &rest).await {
        return response;
    }
    let query: HashMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|Query(pairs)| pairs.into_iter().collect())
        .unwrap_or_default();
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let request = api::ApiRequest {
        method,
        path: rest,
        query,
        accept: header_text(header::ACCEPT),
        content_type: header_text(header::CONTENT_TYPE),
        user_agent: header_text(header::USER_AGENT),
        body,
        user: connection
            .and_then(|axum::Extension(axum::extract::ConnectInfo(handle))| handle.user().cloned()),
    };
    api::serve(
        &cluster,
        &sim.options,
        &format!("/clusters/{name}"),
        request,
    )
}

/// Serves the simulator on `listener` until `shutdown` completes: plain HTTP, or HTTPS with
/// [`SimOptions::tls`]. Sets the base URL from the listener's address (kubeconfigs are written
/// as clusters are added once it is set; see [`Sim::write_kubeconfigs`] for clusters added
/// before).
pub async fn serve(
    listener: TcpListener,
    sim: Arc<Sim>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let address = listener.local_addr().map_err(|source| SimError::Serve {
        address: "listener".into(),
        source,
    })?;
    sim.set_base_url(sim.listen_url(address));
    let tls = tls_config(&sim, address)?;
    serve_prepared(listener, address, sim, tls, shutdown).await
}

/// The TLS configuration for a simulator listening on `address` (`None` without TLS).
fn tls_config(
    sim: &Sim,
    address: SocketAddr,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, SimError> {
    sim.tls_ca()?
        .map(|ca| tls::server_config(&ca, address))
        .transpose()
}

async fn serve_prepared(
    listener: TcpListener,
    address: SocketAddr,
    sim: Arc<Sim>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let serve_error = |source| SimError::Serve {
        address: address.to_string(),
        source,
    };
    // The listeners and middleware let a refused request drop its connection (see `faults`).
    let app = router(sim).layer(axum::middleware::from_fn(faults::drop_refused_connections));
    let connections = app.into_make_service_with_connect_info::<faults::ConnectionHandle>();
    match tls {
        Some(config) => {
            let listener =
                tls::TlsConnectionListener::new(listener, config).map_err(serve_error)?;
            axum::serve(listener, connections)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(faults::ConnectionListener::new(listener), connections)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(serve_error)
}

/// A simulator serving in the background; dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    /// The simulator (add or remove clusters, inspect state).
    pub sim: Arc<Sim>,
    /// `http://host:port` (`https://` with TLS).
    pub url: String,
    /// The bound address.
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), SimError>>>,
}

impl RunningSim {
    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) -> Result<(), SimError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Watches would hold a graceful shutdown open: end everything now.
            task.abort();
        }
    }
}

/// Binds `listen` (port 0 picks a free one), sets the base URL, writes kubeconfigs and serves
/// (HTTPS with [`SimOptions::tls`]) in a background task.
pub async fn spawn(sim: Arc<Sim>, listen: SocketAddr) -> Result<RunningSim, SimError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Serve {
            address: listen.to_string(),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| SimError::Serve {
        address: listen.to_string(),
        source,
    })?;
    let url = sim.listen_url(address);
    sim.set_base_url(url.clone());
    let tls = tls_config(&sim, address)?;
    sim.write_kubeconfigs()?;
    let (shutdown, on_shutdown) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_prepared(
        listener,
        address,
        sim.clone(),
        tls,
        async move {
            let _ = on_shutdown.await;
        },
    ));
    Ok(RunningSim {
        sim,
        url,
        address,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_naturally() {
        let mut names = vec!["edge-10", "edge-2", "edge-1", "core"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, vec!["core", "edge-1", "edge-2", "edge-10"]);
    }

    #[test]
    fn clusters_are_added_once_and_removed() {
        let sim = Sim::new(SimOptions::default());
        sim.add_clusters("edge-", 3).unwrap();
        assert_eq!(sim.cluster_names(), vec!["edge-1", "edge-2", "edge-3"]);
        assert!(matches!(
            sim.add_cluster("edge-1"),
            Err(SimError::ClusterExists(_))
        ));
        assert!(matches!(
            sim.add_cluster("Edge_1"),
            Err(SimError::InvalidClusterName(_))
        ));
        sim.remove_cluster("edge-2").unwrap();
        assert!(matches!(
            sim.remove_cluster("edge-2"),
            Err(SimError::ClusterNotFound(_))
        ));
        assert_eq!(sim.len(), 2);
    }
}
