//! Placement: which clusters each app of a deployment intent group goes to, from its generic
//! placement intents, the cluster inventory and the group's logical cloud. Pure: the caller loads
//! everything from the store and passes plain data in.
//!
//! Resolution happens in two steps, so placement controllers can work in between:
//!
//! 1. [`resolve`] turns every app's intents into an [`AppPlacement`]: the clusters the app must be
//!    on (`allOf` targets) and the groups of alternatives (each `anyOf`, top-level or nested in an
//!    `allOf`), with labels expanded to cluster names and everything limited to the logical cloud.
//!    Controllers may then prune the alternatives ([`AppPlacement::retain_candidates`]).
//! 2. [`choose`] picks the final clusters: all mandatory ones plus, for every group that no chosen
//!    cluster satisfies yet, exactly one of its candidates (rule documented on [`choose`]).
//!
//! Where this differs from upstream, on purpose:
//! - upstream drops an `anyOf` nested inside an `allOf` item; here it is a group of its own;
//! - upstream reads only one of an app's intents when there are several; here they add up (every
//!   mandatory cluster of every intent, every group of every intent);
//! - upstream keeps the first cluster of each group in store-key order, so every app with the
//!   same `anyOf` lands on the same cluster; here the pick spreads apps by a stable hash.
//!
//! Kept as upstream: a target naming a cluster outside the logical cloud is an error, a label
//! matching no cluster of its provider is an error, a label's clusters outside the logical cloud
//! are skipped (an error when none is left), a logical cloud without clusters places nothing, and
//! every app of the composite app needs an intent.

mod intent;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

pub use intent::{AllOfEntry, AppIntent, Target, parse_app_intent};

/// One cluster, named by its provider and its name. Cheap to clone (shared strings), because a
/// label over thousands of clusters is copied into every app placed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterRef {
    provider: Arc<str>,
    cluster: Arc<str>,
}

impl ClusterRef {
    pub fn new(provider: &str, cluster: &str) -> Self {
        Self {
            provider: Arc::from(provider),
            cluster: Arc::from(cluster),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

/// `provider+cluster`, the cluster's name in upstream's AppContext.
impl fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.provider, self.cluster)
    }
}

/// Every known cluster provider, its clusters and their labels, indexed for label lookups.
#[derive(Debug, Clone, Default)]
pub struct ClusterInventory {
    providers: BTreeMap<String, ProviderClusters>,
}

#[derive(Debug, Clone, Default)]
struct ProviderClusters {
    clusters: BTreeMap<String, ClusterRef>,
    by_label: BTreeMap<String, BTreeSet<ClusterRef>>,
}

impl ClusterInventory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a provider (one without clusters is still known, so targets on it fail as "no such
    /// cluster" rather than "no such provider").
    pub fn add_provider(&mut self, provider: &str) {
        self.providers.entry(provider.to_string()).or_default();
    }

    /// Records a cluster (and its provider). Adding it again changes nothing.
    pub fn add_cluster(&mut self, provider: &str, cluster: &str) -> ClusterRef {
        let entry = self.providers.entry(provider.to_string()).or_default();
        entry
            .clusters
            .entry(cluster.to_string())
            .or_insert_with(|| ClusterRef::new(provider, cluster))
            .clone()
    }

    /// Records a label on a cluster (adding the cluster if it is new).
    pub fn add_label(&mut self, provider: &str, cluster: &str, label: &str) {
        let cluster_ref = self.add_cluster(provider, cluster);
        if let Some(entry) = self.providers.get_mut(provider) {
            entry
                .by_label
                .entry(label.to_string())
                .or_default()
                .insert(cluster_ref);
        }
    }

    pub fn has_provider(&self, provider: &str) -> bool {
        self.providers.contains_key(provider)
    }

    /// The cluster, if the inventory has it.
    pub fn cluster(&self, provider: &str, cluster: &str) -> Option<&ClusterRef> {
        self.providers.get(provider)?.clusters.get(cluster)
    }

    /// The labels of a cluster, in name order.
    pub fn labels_of(&self, provider: &str, cluster: &str) -> Vec<&str> {
        self.providers
            .get(provider)
            .map(|entry| {
                entry
                    .by_label
                    .iter()
                    .filter(|(_, clusters)| clusters.iter().any(|known| known.cluster() == cluster))
                    .map(|(label, _)| label.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every cluster of the provider carrying the label, in name order.
    pub fn clusters_with_label<'a>(
        &'a self,
        provider: &str,
        label: &str,
    ) -> impl Iterator<Item = &'a ClusterRef> + 'a {
        self.providers
            .get(provider)
            .and_then(|entry| entry.by_label.get(label))
            .into_iter()
            .flatten()
    }

    /// Every cluster, in (provider, name) order.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterRef> + '_ {
        self.providers
            .values()
            .flat_map(|entry| entry.clusters.values())
    }
}

/// Where a group of alternatives came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupOrigin {
    /// The intent's name.
    pub intent: String,
    /// `Some(i)` for the `anyOf` nested in `allOf[i]`; `None` for the intent's top-level `anyOf`.
    pub all_of_index: Option<usize>,
}

impl fmt::Display for GroupOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.all_of_index {
            Some(index) => write!(f, "intent {:?} allOf[{index}].anyOf", self.intent),
            None => write!(f, "intent {:?} anyOf", self.intent),
        }
    }
}

/// A set of alternative clusters of which the app must be on at least one (upstream's "group").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyOfGroup {
    pub origin: GroupOrigin,
    /// The eligible clusters the group's targets resolved to (never empty after [`resolve`]).
    pub candidates: BTreeSet<ClusterRef>,
}

/// Where one app may go: the resolved candidates, before the final pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlacement {
    pub app: String,
    /// Clusters the app must be on (every `allOf` target, labels expanded).
    pub mandatory: BTreeSet<ClusterRef>,
    /// Groups of alternatives, in intent order (within an intent: nested `anyOf`s in `allOf`
    /// order, then the top-level `anyOf`).
    pub groups: Vec<AnyOfGroup>,
}

impl AppPlacement {
    /// Seam for placement controllers: keeps only the alternatives `keep` accepts, in every group.
    /// Mandatory clusters are not touched. A group left empty makes [`choose`] fail.
    pub fn retain_candidates(&mut self, mut keep: impl FnMut(&ClusterRef) -> bool) {
        for group in &mut self.groups {
            group.candidates.retain(&mut keep);
        }
    }

    /// Seam for placement controllers that decide where an app may run at all (capacity, say):
    /// keeps only the clusters `keep` accepts, mandatory ones and alternatives alike. A
    /// mandatory cluster dropped is not deployed to; a group left empty makes [`choose`] fail.
    pub fn retain_clusters(&mut self, mut keep: impl FnMut(&ClusterRef) -> bool) {
        self.mandatory.retain(&mut keep);
        self.retain_candidates(keep);
    }

    /// Every cluster the app could end up on (mandatory ones and all alternatives).
    pub fn candidate_clusters(&self) -> BTreeSet<ClusterRef> {
        let mut all = self.mandatory.clone();
        for group in &self.groups {
            all.extend(group.candidates.iter().cloned());
        }
        all
    }
}

/// Why placement failed. Every variant names the intent, app or cluster at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("placement intent {intent:?}: {path} {reason}")]
    InvalidIntent {
        intent: String,
        path: String,
        reason: String,
    },
    #[error(
        "placement intent {intent:?} is for app {app:?}, which the composite app does not have"
    )]
    IntentForUnknownApp { intent: String, app: String },
    #[error("app {app:?} has no placement intent")]
    AppWithoutIntent { app: String },
    #[error("the placement intents of app {app:?} name no cluster (allOf and anyOf are empty)")]
    AppWithoutTargets { app: String },
    #[error("placement intent {intent:?}: cluster provider {provider:?} does not exist")]
    UnknownClusterProvider { intent: String, provider: String },
    #[error("placement intent {intent:?}: cluster {provider:?}/{cluster:?} does not exist")]
    UnknownCluster {
        intent: String,
        provider: String,
        cluster: String,
    },
    #[error(
        "placement intent {intent:?}: cluster {provider:?}/{cluster:?} is not part of the deployment intent group's logical cloud"
    )]
    ClusterNotInLogicalCloud {
        intent: String,
        provider: String,
        cluster: String,
    },
    #[error("placement intent {intent:?}: no cluster of provider {provider:?} has label {label:?}")]
    LabelMatchesNothing {
        intent: String,
        provider: String,
        label: String,
    },
    #[error(
        "placement intent {intent:?}: no cluster of provider {provider:?} with label {label:?} is part of the deployment intent group's logical cloud"
    )]
    LabelMatchesNothingInLogicalCloud {
        intent: String,
        provider: String,
        label: String,
    },
    #[error("the deployment intent group's logical cloud references no cluster")]
    LogicalCloudWithoutClusters,
    #[error("app {app:?}: {origin} has no candidate cluster left")]
    GroupWithoutCandidates { app: String, origin: GroupOrigin },
}

/// All apps' placements, by app name.
pub type Placement = BTreeMap<String, AppPlacement>;

/// Resolves the placement intents of a deployment intent group.
///
/// `apps` are the composite app's apps: each needs at least one intent naming at least one target,
/// and every intent must be for one of them. Several intents for one app add up. `logical_cloud`
/// is the set of clusters the group's logical cloud references; only those are eligible. `None`
/// means no restriction (every inventory cluster is eligible); `Some` of an empty set is an error,
/// as upstream refuses a logical cloud without cluster references.
///
/// Errors come in a stable order: intents in the given order, then apps in the given order.
pub fn resolve<S: AsRef<str>>(
    apps: &[S],
    intents: &[AppIntent],
    inventory: &ClusterInventory,
    logical_cloud: Option<&BTreeSet<ClusterRef>>,
) -> Result<Placement, PlacementError> {
    if logical_cloud.is_some_and(BTreeSet::is_empty) {
        return Err(PlacementError::LogicalCloudWithoutClusters);
    }
    let resolver = Resolver {
        inventory,
        logical_cloud,
    };
    let mut placements: Placement = apps
        .iter()
        .map(|app| {
            let app = app.as_ref().to_string();
            let placement = AppPlacement {
                app: app.clone(),
                mandatory: BTreeSet::new(),
                groups: Vec::new(),
            };
            (app, placement)
        })
        .collect();
    let mut has_intent = BTreeSet::new();

    for intent in intents {
        let placement =
            placements
                .get_mut(&intent.app)
                .ok_or_else(|| PlacementError::IntentForUnknownApp {
                    intent: intent.name.clone(),
                    app: intent.app.clone(),
                })?;
        has_intent.insert(intent.app.as_str());
        for (index, entry) in intent.all_of.iter().enumerate() {
            match entry {
                AllOfEntry::Target(target) => {
                    resolver.expand(intent, target, &mut placement.mandatory)?;
                }
                AllOfEntry::AnyOf(targets) => {
                    let group = resolver.group(intent, Some(index), targets)?;
                    placement.groups.push(group);
                }
            }
        }
        if !intent.any_of.is_empty() {
            let group = resolver.group(intent, None, &intent.any_of)?;
            placement.groups.push(group);
        }
    }

    for app in apps {
        let app = app.as_ref();
        if !has_intent.contains(app) {
            return Err(PlacementError::AppWithoutIntent {
                app: app.to_string(),
            });
        }
        if placements
            .get(app)
            .is_some_and(|p| p.mandatory.is_empty() && p.groups.is_empty())
        {
            return Err(PlacementError::AppWithoutTargets {
                app: app.to_string(),
            });
        }
    }
    Ok(placements)
}

/// Checks one intent's targets against the inventory and the logical cloud, as upstream does when
/// an app intent is created: the same errors as [`resolve`] for unknown names, labels matching
/// nothing and clusters outside the logical cloud. An intent naming no target passes here (upstream
/// accepts it at creation; instantiate refuses it later).
pub fn check_intent(
    intent: &AppIntent,
    inventory: &ClusterInventory,
    logical_cloud: Option<&BTreeSet<ClusterRef>>,
) -> Result<(), PlacementError> {
    if logical_cloud.is_some_and(BTreeSet::is_empty) {
        return Err(PlacementError::LogicalCloudWithoutClusters);
    }
    let resolver = Resolver {
        inventory,
        logical_cloud,
    };
    let mut scratch = BTreeSet::new();
    let nested = intent.all_of.iter().flat_map(|entry| match entry {
        AllOfEntry::Target(target) => std::slice::from_ref(target),
        AllOfEntry::AnyOf(targets) => targets.as_slice(),
    });
    for target in nested.chain(&intent.any_of) {
        resolver.expand(intent, target, &mut scratch)?;
    }
    Ok(())
}

struct Resolver<'a> {
    inventory: &'a ClusterInventory,
    logical_cloud: Option<&'a BTreeSet<ClusterRef>>,
}

impl Resolver<'_> {
    fn eligible(&self, cluster: &ClusterRef) -> bool {
        self.logical_cloud.is_none_or(|set| set.contains(cluster))
    }

    fn group(
        &self,
        intent: &AppIntent,
        all_of_index: Option<usize>,
        targets: &[Target],
    ) -> Result<AnyOfGroup, PlacementError> {
        let mut candidates = BTreeSet::new();
        for target in targets {
            self.expand(intent, target, &mut candidates)?;
        }
        Ok(AnyOfGroup {
            origin: GroupOrigin {
                intent: intent.name.clone(),
                all_of_index,
            },
            candidates,
        })
    }

    /// Adds the eligible clusters the target stands for; fails when it stands for none.
    fn expand(
        &self,
        intent: &AppIntent,
        target: &Target,
        into: &mut BTreeSet<ClusterRef>,
    ) -> Result<(), PlacementError> {
        let provider = match target {
            Target::Cluster { provider, .. } | Target::Label { provider, .. } => provider,
        };
        if !self.inventory.has_provider(provider) {
            return Err(PlacementError::UnknownClusterProvider {
                intent: intent.name.clone(),
                provider: provider.clone(),
            });
        }
        match target {
            Target::Cluster { provider, cluster } => {
                let found = self.inventory.cluster(provider, cluster).ok_or_else(|| {
                    PlacementError::UnknownCluster {
                        intent: intent.name.clone(),
                        provider: provider.clone(),
                        cluster: cluster.clone(),
                    }
                })?;
                if !self.eligible(found) {
                    return Err(PlacementError::ClusterNotInLogicalCloud {
                        intent: intent.name.clone(),
                        provider: provider.clone(),
                        cluster: cluster.clone(),
                    });
                }
                into.insert(found.clone());
            }
            Target::Label { provider, label } => {
                let mut matched_any = false;
                let mut added_any = false;
                for cluster in self.inventory.clusters_with_label(provider, label) {
                    matched_any = true;
                    if self.eligible(cluster) {
                        added_any = true;
                        into.insert(cluster.clone());
                    }
                }
                if !matched_any {
                    return Err(PlacementError::LabelMatchesNothing {
                        intent: intent.name.clone(),
                        provider: provider.clone(),
                        label: label.clone(),
                    });
                }
                if !added_any {
                    return Err(PlacementError::LabelMatchesNothingInLogicalCloud {
                        intent: intent.name.clone(),
                        provider: provider.clone(),
                        label: label.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Picks the final clusters of one app: every mandatory cluster, then one cluster for each group
/// that the clusters picked so far do not already satisfy.
///
/// The rule, deterministic and independent of the order of intents and groups:
/// 1. groups are taken smallest first (ties: by their candidate sets), because the most
///    constrained choice should not be spoiled by an earlier, freer one;
/// 2. a group with a candidate already picked (a mandatory cluster, or the pick of an earlier
///    group) is satisfied: the app is never placed twice to satisfy overlapping groups;
/// 3. otherwise the pick is made among the candidates in `preferred` if there are any (pass the
///    app's clusters of the previous revision so an update does not move it), else among all;
/// 4. among those, a candidate that also satisfies the most still-unsatisfied groups wins;
/// 5. remaining ties go to the highest rendezvous hash of (app, provider, cluster): different apps
///    spread over a label's clusters, and adding or removing one candidate moves only the apps
///    whose pick it wins or was. The hash is fixed here (not std's), so picks survive upgrades.
pub fn choose(
    placement: &AppPlacement,
    preferred: &BTreeSet<ClusterRef>,
) -> Result<BTreeSet<ClusterRef>, PlacementError> {
    if let Some(empty) = placement.groups.iter().find(|g| g.candidates.is_empty()) {
        return Err(PlacementError::GroupWithoutCandidates {
            app: placement.app.clone(),
            origin: empty.origin.clone(),
        });
    }
    let mut chosen = placement.mandatory.clone();
    let mut open: Vec<&BTreeSet<ClusterRef>> = placement
        .groups
        .iter()
        .map(|group| &group.candidates)
        .collect();
    open.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));

    for (position, candidates) in open.iter().enumerate() {
        if candidates.iter().any(|c| chosen.contains(c)) {
            continue;
        }
        let preferred_here: Vec<&ClusterRef> = candidates
            .iter()
            .filter(|c| preferred.contains(*c))
            .collect();
        let pool: Vec<&ClusterRef> = if preferred_here.is_empty() {
            candidates.iter().collect()
        } else {
            preferred_here
        };
        // How many later groups, still unsatisfied, each pool member would satisfy too.
        let mut coverage: HashMap<&ClusterRef, usize> = HashMap::new();
        if pool.len() > 1 {
            for later in &open[position + 1..] {
                if later.iter().any(|c| chosen.contains(c)) {
                    continue;
                }
                for cluster in &pool {
                    if later.contains(*cluster) {
                        *coverage.entry(cluster).or_default() += 1;
                    }
                }
            }
        }
        let pick = pool.into_iter().max_by(|a, b| {
            let count = |c: &ClusterRef| coverage.get(c).copied().unwrap_or(0);
            count(a)
                .cmp(&count(b))
                .then_with(|| {
                    rendezvous_score(&placement.app, a).cmp(&rendezvous_score(&placement.app, b))
                })
                // Equal scores are astronomically rare; the smaller name wins then.
                .then_with(|| b.cmp(a))
        });
        if let Some(pick) = pick {
            chosen.insert(pick.clone());
        }
    }
    Ok(chosen)
}

/// [`choose`] for every app; `previous` holds each app's clusters of the previous revision.
pub fn choose_all(
    placement: &Placement,
    previous: &BTreeMap<String, BTreeSet<ClusterRef>>,
) -> Result<BTreeMap<String, BTreeSet<ClusterRef>>, PlacementError> {
    let none = BTreeSet::new();
    placement
        .iter()
        .map(|(app, app_placement)| {
            let preferred = previous.get(app).unwrap_or(&none);
            Ok((app.clone(), choose(app_placement, preferred)?))
        })
        .collect()
}

/// A fixed 64-bit hash (FNV-1a with a final avalanche mix) of the app and the cluster. The parts
/// are separated by 0xff, a byte UTF-8 never contains, so ("ab","c") and ("a","bc") differ.
fn rendezvous_score(app: &str, cluster: &ClusterRef) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for part in [app, cluster.provider(), cluster.cluster()] {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    // splitmix64's finaliser, so names differing only in the last byte still score far apart.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}
