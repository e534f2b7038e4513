//! Upstream EMCO's deployment-intent-group status query: parsing the query string, the status
//! facts the synchronizer gathers, and rendering them in upstream's exact JSON shape.
//!
//! Upstream sources read for behaviour: `orchestrator/api/instantiation_handler.go`
//! (`statusHandler`), `orchestrator/pkg/status/{types,status_helper}.go` and
//! `orchestrator/pkg/module/instantiation.go` (`DeploymentStatus` and friends).

mod input;
mod query;
mod render;

pub use input::{
    AppContextStatus, AppInput, ClusterInput, Connectivity, ContextInput, DeployedStatus, Gvk,
    ReadyStatus, ResourceInput, StatusInput,
};
pub use query::{ListQuery, OutputLevel, StatusKind, StatusQuery, StatusQueryError};
pub use render::{Tally, render, render_summary};

#[cfg(test)]
mod tests;
