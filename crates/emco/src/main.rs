//! `emco`: the hub and its tools. `main` only parses arguments and dispatches.

mod agent;
mod serve;
mod sim;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: the hub and the simulator make many small,
/// short-lived allocations per request (JSON values, HTTP heads), and glibc's malloc took a
/// fifth of their CPU in the deploy benchmark's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "emco",
    version,
    about = "EMCO-rs: the Edge Multi-Cluster Orchestrator hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: every EMCO service behind one HTTP port.
    Serve(serve::ServeArgs),
    /// Serve simulated Kubernetes clusters (for tests, benchmarks and the quick start).
    Sim(sim::SimArgs),
    /// Beside a pull (GitOps) cluster: report what EMCO deployed there to the hub.
    Agent(agent::AgentArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's client logs every failed request at ERROR; the synchronizer already reports
            // each retry (and the cluster's state in status), so by default it stays quiet.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => args.run().await,
        Command::Sim(args) => args.run().await,
        Command::Agent(args) => args.run().await,
    }
}
