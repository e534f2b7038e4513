//! The seam for fault injection: every Kubernetes API request of a cluster passes through
//! [`before_request`] first, which consults the cluster's [`FaultSlot`].
//!
//! Today no faults are defined, so the slot is always empty and every request proceeds. Fault
//! modes (unreachable, latency, error rates, restarts) plug in here: put their configuration in
//! [`FaultPlan`], set it through the control API, and act on it in [`before_request`] (which is
//! async so it can delay or hang a request).

use std::sync::{Arc, Mutex};

use axum::http::Method;
use axum::response::Response;

/// What faults a cluster currently suffers. Empty for now: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {}

/// A cluster's current fault plan; `None` (the default, one pointer wide) means healthy.
#[derive(Debug, Default)]
pub struct FaultSlot(Mutex<Option<Arc<FaultPlan>>>);

impl FaultSlot {
    /// The plan in force, if any.
    pub fn current(&self) -> Option<Arc<FaultPlan>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Installs (or, with `None`, clears) a plan.
    pub fn set(&self, plan: Option<FaultPlan>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = plan.map(Arc::new);
    }
}

/// Called before a request to `path` (relative to the cluster's URL) is served: `Some` answers
/// it instead (an injected failure), `None` lets it through.
pub async fn before_request(slot: &FaultSlot, _method: &Method, _path: &str) -> Option<Response> {
    // Healthy clusters take the fast path without locking anything else.
    let _plan = slot.current()?;
    None
}
