//! `emco serve`: opens the store, builds the API and serves it until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::ServiceExt;
use emco_api::{AppState, DEFAULT_MAX_BODY, router};
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
        let app = router(AppState::new(repo), self.max_body);
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
}
