//! `emco agent`: beside a pull (GitOps) cluster, reports the objects EMCO deployed there to the
//! hub (see `emco_rsync::agent`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct AgentArgs {
    /// The hub's URL.
    #[arg(long, env = "EMCO_HUB", default_value = "http://127.0.0.1:9015")]
    hub: String,
    /// The cluster's provider, as registered at the hub.
    #[arg(long)]
    cluster_provider: String,
    /// The cluster's name, as registered at the hub.
    #[arg(long)]
    cluster: String,
    /// The kubeconfig of the cluster the agent runs beside.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How often the cluster is read.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

impl AgentArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.kubeconfig)
            .with_context(|| format!("reading {}", self.kubeconfig.display()))?;
        let client = emco_rsync::agent::client_from_kubeconfig(&bytes).await?;
        let config = emco_rsync::agent::AgentConfig {
            hub: self.hub,
            provider: self.cluster_provider,
            cluster: self.cluster,
            interval: Duration::from_millis(self.interval_ms.max(50)),
            refresh: Duration::from_secs(30),
        };
        emco_rsync::agent::run(client, config).await?;
        Ok(())
    }
}
