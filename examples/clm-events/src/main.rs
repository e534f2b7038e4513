//! `clm-events --listen 127.0.0.1:9061`: serves the cluster-manager controller protocol and
//! prints every cluster event as a JSON line. Register it with the hub:
//! `POST /v2/clm-controllers {"metadata": {"name": "events"}, "spec": {"host": "127.0.0.1", "port": 9061}}`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:9061")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("clm-events: listening on {}", listener.local_addr()?);
    let controller = clm_events::ClmEvents::default().with_callback(|event| {
        println!(
            "{}",
            serde_json::json!({"provider": event.provider, "cluster": event.cluster, "event": event.event})
        );
    });
    clm_events::serve(listener, controller).await
}
