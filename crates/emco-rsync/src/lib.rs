//! Resource synchronizer: talks to member clusters (server-side apply, get, delete) and judges
//! whether what was applied is ready.

pub mod cluster;
pub mod readiness;

pub use cluster::{ClusterApi, ClusterError, ClusterOptions, Deleted, KubeCluster, Retry};
pub use readiness::{Readiness, readiness};
