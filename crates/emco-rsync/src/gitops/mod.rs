//! GitOps clusters: the synchronizer's Git target. `repo` writes one repository (commits,
//! pushes, retries when others pushed first); `cluster` is the `ClusterApi` of a cluster whose
//! agent pulls from it; `azure` makes and removes Azure Arc's Flux configurations.

pub mod azure;
pub mod cluster;
pub mod repo;
