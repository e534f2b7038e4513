//! The seam where placement and action controllers join an instantiate. The orchestrator calls
//! the controllers a group's intents name, in the priority order of their registrations:
//! placement controllers narrow the candidate clusters between resolving and choosing, action
//! controllers customise each app's objects per cluster. The built-in generic placement needs no
//! controller; in-process implementations (and the gRPC client for external controllers) register
//! here by name.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use emco_core::appcontext::{ClusterId, ContextObject, ServiceDiscovery};
use emco_core::placement::Placement;

use crate::gather::{GroupInputs, NamedController};

/// Narrows placement (e.g. by cluster capacity, HPA intents).
#[async_trait]
pub trait PlacementController: Send + Sync {
    async fn filter(
        &self,
        group: &GroupInputs,
        intent: &str,
        placement: &mut Placement,
    ) -> Result<(), String>;
}

/// Customises objects per app and cluster (generic K8s intents, network, traffic, ...): reads
/// what its intent asks for once per revision built ([`ActionController::prepare`]), then the
/// returned [`Customiser`] runs for every app and cluster without I/O (a fleet has thousands).
#[async_trait]
pub trait ActionController: Send + Sync {
    async fn prepare(
        &self,
        group: &GroupInputs,
        intent: &str,
    ) -> Result<Box<dyn Customiser>, String>;
}

/// One intent's customisation, ready to run per app and cluster. `Ok(None)` keeps the objects
/// as they are.
pub trait Customiser: Send + Sync {
    fn customise(
        &self,
        app: &str,
        cluster: &ClusterId,
        objects: &[ContextObject],
    ) -> Result<Option<Vec<ContextObject>>, String>;

    /// Services the revision makes reachable from other clusters once deployed (what depends
    /// on the clusters' answers is the synchronizer's to derive; see
    /// [`emco_core::appcontext::ServiceDiscovery`]).
    fn discoveries(&self) -> Vec<ServiceDiscovery> {
        Vec::new()
    }
}

/// Controller implementations by registered name.
#[derive(Default, Clone)]
pub struct ControllerSet {
    placement: HashMap<String, Arc<dyn PlacementController>>,
    action: HashMap<String, Arc<dyn ActionController>>,
}

/// What the set does with one named controller.
pub enum Resolved<'a> {
    Placement(&'a dyn PlacementController),
    Action(&'a dyn ActionController),
    /// Named by the intents but with no implementation here: skipped, and reported.
    Missing,
}

impl ControllerSet {
    pub fn with_placement(mut self, name: &str, c: Arc<dyn PlacementController>) -> Self {
        self.placement.insert(name.to_owned(), c);
        self
    }

    pub fn with_action(mut self, name: &str, c: Arc<dyn ActionController>) -> Self {
        self.action.insert(name.to_owned(), c);
        self
    }

    pub fn resolve(&self, named: &NamedController) -> Resolved<'_> {
        if let Some(c) = self.placement.get(&named.name) {
            Resolved::Placement(c.as_ref())
        } else if let Some(c) = self.action.get(&named.name) {
            Resolved::Action(c.as_ref())
        } else {
            Resolved::Missing
        }
    }
}

/// Intents the built-in placement handles (no controller to call).
pub fn is_builtin(named: &NamedController) -> bool {
    named.name == "genericPlacementIntent" || named.name == "generic-placement-intents"
}
