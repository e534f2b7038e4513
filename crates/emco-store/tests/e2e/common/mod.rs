//! Test fixtures: stores on a fresh redb directory or on a throw-away `etcd` process.

pub mod suite;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use emco_store::testing::EtcdServer;
use emco_store::{EtcdStore, RedbStore, Store};
use tempfile::TempDir;

/// A store under test plus whatever must live as long as it (its directory, its etcd process).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub dir: TempDir,
    pub etcd: Option<EtcdServer>,
}

/// A store on a new, empty redb directory.
pub async fn redb() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    Some(Fixture {
        store: Arc::new(store),
        dir,
        etcd: None,
    })
}

/// A store on a new etcd process, under a namespace unique to this test; `None` when etcd is
/// missing and `EMCO_SKIP_ETCD=1` says that is fine.
pub async fn etcd() -> Option<Fixture> {
    let server = EtcdServer::start()?;
    let store = EtcdStore::connect_with_namespace(
        std::slice::from_ref(&server.endpoint),
        &unique_namespace(),
    )
    .await
    .unwrap();
    Some(Fixture {
        store: Arc::new(store),
        dir: tempfile::tempdir().unwrap(),
        etcd: Some(server),
    })
}

/// A namespace no other test in this process uses.
pub fn unique_namespace() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/emco-test/{}-{}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
