//! Resource synchronizer: talks to member clusters (server-side apply, get, delete, list),
//! judges whether what was applied is ready, and (`engine`) carries out a context's instantiate
//! and terminate on all its clusters, durably and resumably.

pub mod agent;
pub mod cluster;
pub mod discovery;
pub mod engine;
pub mod gitops;
pub mod readiness;

pub use cluster::{
    ApplyRequest, ClusterApi, ClusterError, ClusterOptions, Deleted, KubeCluster, Retry,
};
pub use engine::{
    AppClusterState, AppReport, ClusterReport, Connector, ContextReport, ContextTally,
    DEPLOYMENT_ID_LABEL, HookEvent, OpKind, ResourceReport, RunStatus, StoreConnector, SyncConfig,
    SyncError, Synchronizer,
};
pub use readiness::{Readiness, readiness};
