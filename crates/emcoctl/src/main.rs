//! emcoctl binary: parse the command line and run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use emcoctl::commands::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMCOCTL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    Cli::parse().run().await
}
