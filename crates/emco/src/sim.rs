//! `emco sim`: serves many simulated Kubernetes clusters (see the `emco-sim` crate and
//! docs/sim.md) and writes a kubeconfig for each, until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use emco_sim::{Sim, SimOptions};

#[derive(clap::Args)]
pub struct SimArgs {
    /// How many clusters to start with ({prefix}1 … {prefix}N).
    #[arg(long, default_value_t = 1)]
    clusters: usize,
    /// Address to serve on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory for the `{name}.kubeconfig` files (created if missing).
    #[arg(long)]
    kubeconfig_dir: Option<PathBuf>,
    /// Prefix of the cluster names.
    #[arg(long, default_value = "edge-")]
    prefix: String,
    /// Changes kept per cluster for watches resuming from a resourceVersion.
    #[arg(long, default_value_t = 1000)]
    watch_history: usize,
    /// Seconds between watch bookmarks (for clients that allow them).
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// How long workloads take to become ready after a change (`0`: at once; `200ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = emco_sim::workloads::parse_duration)]
    ready_after: Duration,
    /// Simulated nodes per cluster (pods per DaemonSet).
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Serve HTTPS with a throw-away CA; the kubeconfigs carry the CA
    /// (`certificate-authority-data`), so clients verify the server.
    #[arg(long)]
    tls: bool,
    /// Directory of the Git server's bare repositories (`/git/{repo}.git`); by default a
    /// directory of this process, removed when it stops (Ctrl-C).
    #[arg(long)]
    git_root: Option<PathBuf>,
    /// A Git user, `NAME:TOKEN` (HTTP Basic); repeatable. With any, Git requires one of them.
    #[arg(long = "git-user", value_name = "NAME:TOKEN")]
    git_users: Vec<emco_sim::git::GitUser>,
    /// Milliseconds between pull-mode reconciles (Flux, Config Sync, Argo CD) of each cluster.
    #[arg(long, default_value_t = 1000)]
    flux_interval_ms: u64,
}

impl SimArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let options = SimOptions {
            kubeconfig_dir: self.kubeconfig_dir.clone(),
            watch_history: self.watch_history,
            bookmark_interval: Duration::from_secs(self.bookmark_interval.max(1)),
            ready_after: self.ready_after,
            nodes: self.nodes,
            tls: self.tls,
            git_root: self.git_root.clone(),
            git_users: self.git_users.clone(),
            flux_interval: Duration::from_millis(self.flux_interval_ms.max(10)),
            ..SimOptions::default()
        };
        let sim = Sim::new(options);
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        let local = listener.local_addr()?;
        let url = sim.listen_url(local);
        sim.set_base_url(url.clone());
        sim.add_clusters(&self.prefix, self.clusters)
            .context("adding the clusters")?;
        tracing::info!(%url, clusters = self.clusters, "simulated clusters serving");
        println!("emco sim: {} clusters ready on {url}", self.clusters);
        emco_sim::serve(listener, sim, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the simulated clusters")
    }
}
