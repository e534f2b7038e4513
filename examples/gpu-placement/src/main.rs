//! `gpu-placement --listen 127.0.0.1:9030 --hub http://127.0.0.1:9015`: registers its schema
//! with the hub, then serves the placement controller protocol.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Example EMCO-rs placement controller: apps go where enough GPUs are free")]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:9030")]
    listen: std::net::SocketAddr,
    /// The hub's REST base URL.
    #[arg(long, default_value = "http://127.0.0.1:9015")]
    hub: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = reqwest::Client::builder().no_proxy().build()?;
    gpu_placement::register_schema(&client, &args.hub).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, hub = args.hub, "serving");
    gpu_placement::serve(
        listener,
        gpu_placement::GpuPlacement::new(&args.hub, client),
    )
    .await
}
