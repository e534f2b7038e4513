//! The protocols between the hub and external controllers (read the protos for the contracts;
//! the hub uses the clients, a controller implements the servers):
//! - [`v1`]: placement and action controllers (`proto/emco/controller/v1/controller.proto`);
//! - [`clm`]: cluster-manager controllers told of cluster changes
//!   (`proto/clm/clm_controller_events.proto`, wire-compatible with upstream's).

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("emco.controller.v1");
}

/// The cluster manager's event channel (no protobuf package, as upstream's).
#[allow(clippy::all, missing_docs)]
pub mod clm {
    tonic::include_proto!("_");
}
