//! The app-cluster records of a running context as its run last committed them. Status
//! summaries of a running context count these instead of listing and parsing the store: during
//! a rollout at fleet scale, thousands of records change between two queries, and reading them
//! back from the store made summaries cost more than 100 ms at 500,000 objects.
//!
//! The view holds exactly what is durable: the run seeds it with the records it loaded from the
//! store, and its record writer adds each record once its transaction has committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use emco_core::appcontext::ClusterId;

use super::records::AppClusterRecord;

/// Records by app name, then cluster.
pub type RecordsByApp = HashMap<String, HashMap<ClusterId, Arc<AppClusterRecord>>>;

/// One committed record, for the view.
#[derive(Debug, Clone)]
pub struct LiveRecord {
    pub app: String,
    pub cluster: ClusterId,
    pub record: Arc<AppClusterRecord>,
}

/// A run's view; empty (`None`) until the run has loaded the stored records.
#[derive(Debug, Default)]
pub struct LiveRecords {
    records: Mutex<Option<RecordsByApp>>,
}

impl LiveRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RecordsByApp>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the view with the records the run found in the store.
    pub fn seed(&self, records: RecordsByApp) {
        *self.lock() = Some(records);
    }

    /// Adds committed records, in commit order (a later record of an app-cluster wins).
    pub fn committed(&self, records: impl IntoIterator<Item = LiveRecord>) {
        if let Some(view) = self.lock().as_mut() {
            for LiveRecord {
                app,
                cluster,
                record,
            } in records
            {
                view.entry(app).or_default().insert(cluster, record);
            }
        }
    }

    /// Runs `read` over the view; `None` before the run seeded it.
    pub fn read<R>(&self, read: impl FnOnce(&RecordsByApp) -> R) -> Option<R> {
        self.lock().as_ref().map(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_empty_until_seeded_and_later_commits_win() {
        let live = LiveRecords::default();
        let cluster = ClusterId::new("p", "c1");
        let record = |state| {
            Arc::new(AppClusterRecord {
                state,
                ..AppClusterRecord::default()
            })
        };
        let update = |state| LiveRecord {
            app: "web".into(),
            cluster: cluster.clone(),
            record: record(state),
        };
        live.committed([update(super::super::AppClusterState::Applied)]);
        assert!(
            live.read(|_| ()).is_none(),
            "not seeded: commits are not kept"
        );
        live.seed(RecordsByApp::new());
        live.committed([
            update(super::super::AppClusterState::Pending),
            update(super::super::AppClusterState::Applied),
        ]);
        let state = live.read(|view| view["web"][&cluster].state).unwrap();
        assert_eq!(state, super::super::AppClusterState::Applied);
    }
}
