//! Runs the shared `Store` conformance suite against every backend, plus backend-specific tests.
//!
//! The etcd tests start a real `etcd` per test; without one on PATH they fail unless
//! `EMCO_SKIP_ETCD=1`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::suite::{self, next_event, watch_error};
use emco_store::{Error, EtcdStore, RedbOptions, RedbStore, Store, WatchEvent};
use futures::StreamExt;

/// One `#[tokio::test]` per suite function, each on a fresh store from `$fixture`.
macro_rules! conformance_tests {
    ($fixture:path => $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $fixture().await else { return };
                suite::$name(Arc::clone(&fixture.store)).await;
            }
        )*
    };
}

macro_rules! all_conformance_tests {
    ($fixture:path) => {
        conformance_tests!($fixture =>
            get_put_delete_round_trip,
            values_are_opaque_bytes,
            list_is_ordered_and_respects_prefix_boundaries,
            list_keys_honours_the_limit,
            txn_applies_all_ops_at_one_revision,
            failed_txn_writes_nothing_and_names_the_failed_compare,
            each_compare_kind_can_pass,
            revisions_advance_only_on_writes,
            delete_prefix_removes_only_keys_under_the_prefix,
            txn_touching_a_key_twice_is_rejected,
            watch_from_now_sees_later_changes_in_order,
            watch_from_a_past_revision_replays_then_follows,
            watch_switches_from_replay_to_live_without_gaps,
            watch_of_a_prefix_ignores_neighbouring_prefixes,
            racing_txns_on_one_key_have_exactly_one_winner,
            watch_delivers_large_revisions_whole,
        );
    };
}

mod redb {
    use super::*;

    all_conformance_tests!(common::redb);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_revisions_and_history_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let first = store.put("k/1", b"one".to_vec()).await.unwrap();
        store.put("k/2", b"two".to_vec()).await.unwrap();
        store.delete("k/2").await.unwrap();
        let revision = store.revision().await.unwrap();
        let entries = store.list("").await.unwrap();
        drop(store);

        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.revision().await.unwrap(), revision);
        assert_eq!(store.list("").await.unwrap(), entries);
        let mut replay = store.watch("k/", Some(first)).await.unwrap();
        assert!(matches!(next_event(&mut replay).await, WatchEvent::Put(e) if e.key == "k/2"));
        assert!(
            matches!(next_event(&mut replay).await, WatchEvent::Delete { key, .. } if key == "k/2")
        );
        assert_eq!(store.put("k/3", vec![]).await.unwrap(), revision + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_before_the_kept_change_log_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(
            dir.path(),
            RedbOptions {
                change_log_limit: 10,
                ..RedbOptions::default()
            },
        )
        .unwrap();
        for i in 0..30 {
            store.put(&format!("c/{i}"), vec![]).await.unwrap();
        }
        let revision = store.revision().await.unwrap();
        let error = watch_error(&store, "c/", 0).await;
        assert!(
            matches!(error, Error::Compacted { requested: 0, compacted } if compacted == revision - 10),
            "{error}"
        );
        let mut recent = store.watch("c/", Some(revision - 10)).await.unwrap();
        for i in 20..30 {
            let event = next_event(&mut recent).await;
            assert!(matches!(event, WatchEvent::Put(e) if e.key == format!("c/{i}")));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_watcher_ends_with_compacted_and_never_blocks_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(
            dir.path(),
            RedbOptions {
                change_log_limit: 20,
                ..RedbOptions::default()
            },
        )
        .unwrap();
        let mut idle = store.watch("", None).await.unwrap();
        store.put("lag/first", vec![]).await.unwrap();
        assert!(matches!(next_event(&mut idle).await, WatchEvent::Put(e) if e.key == "lag/first"));
        // The watcher stops reading while writers go far past what the log keeps.
        let writes = async {
            for i in 0..100 {
                store.put(&format!("lag/{i}"), vec![]).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), writes)
            .await
            .expect("writers were held up");
        let outcome = tokio::time::timeout(Duration::from_secs(10), idle.next())
            .await
            .unwrap();
        assert!(
            matches!(outcome, Some(Err(Error::Compacted { .. }))),
            "{outcome:?}"
        );
        assert!(
            idle.next().await.is_none(),
            "the stream ends after the error"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_picks_redb_for_non_etcd_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let store = emco_store::open("", dir.path()).await.unwrap();
        store.put("k", b"v".to_vec()).await.unwrap();
        drop(store);
        assert!(dir.path().join("emco.redb").is_file());
        let reopened = emco_store::open("redb", dir.path()).await.unwrap();
        assert_eq!(reopened.get("k").await.unwrap().unwrap().value, b"v");
        let bad = emco_store::open("etcd://nohost", dir.path()).await;
        assert!(matches!(bad, Err(Error::BadAddress(_))));
    }
}

mod etcd {
    use super::*;

    all_conformance_tests!(common::etcd);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compacted_history_ends_the_watch() {
        let Some(fixture) = common::etcd().await else {
            return;
        };
        let store = &fixture.store;
        let start = store.revision().await.unwrap();
        for i in 0..5 {
            store.put(&format!("c/{i}"), vec![]).await.unwrap();
        }
        let revision = store.revision().await.unwrap();
        let server = fixture.etcd.as_ref().unwrap();
        let mut client = etcd_client::Client::connect([&server.endpoint], None)
            .await
            .unwrap();
        client
            .compact(i64::try_from(revision).unwrap(), None)
            .await
            .unwrap();
        let error = watch_error(store.as_ref(), "c/", start).await;
        assert!(
            matches!(error, Error::Compacted { requested, compacted } if requested == start && compacted == revision),
            "{error}"
        );
        // Watching from the compaction point on still works.
        let mut stream = store.watch("c/", Some(revision)).await.unwrap();
        let next = store.put("c/new", vec![]).await.unwrap();
        assert!(
            matches!(next_event(&mut stream).await, WatchEvent::Put(e) if e.mod_revision == next)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn namespaces_isolate_stores_on_one_etcd() {
        let Some(fixture) = common::etcd().await else {
            return;
        };
        let endpoints = [fixture.etcd.as_ref().unwrap().endpoint.clone()];
        let other = EtcdStore::connect_with_namespace(&endpoints, &common::unique_namespace())
            .await
            .unwrap();
        let mut other_watch = other.watch("", None).await.unwrap();
        fixture.store.put("shared", b"mine".to_vec()).await.unwrap();
        assert_eq!(other.get("shared").await.unwrap(), None);
        assert!(other.list("").await.unwrap().is_empty());
        other.put("shared", b"theirs".to_vec()).await.unwrap();
        assert_eq!(
            fixture.store.get("shared").await.unwrap().unwrap().value,
            b"mine"
        );
        let event = next_event(&mut other_watch).await;
        assert!(matches!(event, WatchEvent::Put(e) if e.key == "shared" && e.value == b"theirs"));
        assert_eq!(fixture.store.list_keys("", None).await.unwrap(), ["shared"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_picks_etcd_for_etcd_addresses() {
        let Some(fixture) = common::etcd().await else {
            return;
        };
        let endpoint = &fixture.etcd.as_ref().unwrap().endpoint;
        let address = endpoint.replace("http://", "etcd://");
        let store = emco_store::open(&address, fixture.dir.path())
            .await
            .unwrap();
        store.put("via-open", b"v".to_vec()).await.unwrap();
        let direct = EtcdStore::connect(std::slice::from_ref(endpoint))
            .await
            .unwrap();
        assert_eq!(direct.namespace(), emco_store::DEFAULT_NAMESPACE);
        assert_eq!(direct.get("via-open").await.unwrap().unwrap().value, b"v");
        assert!(
            !fixture.dir.path().join("emco.redb").exists(),
            "no redb file for etcd addresses"
        );
    }
}
