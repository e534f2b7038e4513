//! The protocol between the hub and external controllers, generated from
//! `proto/emco/controller/v1/controller.proto` (read it for the contract): the hub uses the
//! clients, a controller implements the servers.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("emco.controller.v1");
}
