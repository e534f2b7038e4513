//! The conformance suite every `Store` backend must pass; each function is one test.

use std::sync::Arc;
use std::time::Duration;

use emco_store::{Compare, Entry, Error, Op, Store, Txn, TxnOutcome, WatchEvent, WatchStream};
use futures::StreamExt;

/// Longest wait for a watch event that should come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a watch must stay silent to count as having nothing more to say.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

fn key(name: &str) -> String {
    name.to_owned()
}

/// The next event of `stream`, failing the test on an error, an end, or a timeout.
pub async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// Fails the test if `stream` yields anything within [`QUIET_PERIOD`].
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(QUIET_PERIOD, stream.next()).await {
        panic!("expected no more watch items, got {item:?}");
    }
}

/// The error a watch from `after` reports, whether `watch` itself or its first item carries it.
pub async fn watch_error(store: &dyn Store, prefix: &str, after: u64) -> Error {
    match store.watch(prefix, Some(after)).await {
        Err(error) => error,
        Ok(mut stream) => match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Err(error))) => error,
            other => panic!("expected the watch from {after} to fail, got {other:?}"),
        },
    }
}

fn put_event(key: &str, value: &str, create_revision: u64, mod_revision: u64) -> WatchEvent {
    WatchEvent::Put(Entry {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        create_revision,
        mod_revision,
    })
}

fn delete_event(key: &str, mod_revision: u64) -> WatchEvent {
    WatchEvent::Delete {
        key: key.to_owned(),
        mod_revision,
    }
}

pub async fn get_put_delete_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get("k").await.unwrap(), None);
    let created = store.put("k", b"v1".to_vec()).await.unwrap();
    let expected = Entry {
        key: key("k"),
        value: b"v1".to_vec(),
        create_revision: created,
        mod_revision: created,
    };
    assert_eq!(store.get("k").await.unwrap(), Some(expected));

    let modified = store.put("k", b"v2".to_vec()).await.unwrap();
    assert!(modified > created);
    let entry = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (entry.create_revision, entry.mod_revision),
        (created, modified)
    );
    assert_eq!(entry.value, b"v2");

    assert!(store.delete("k").await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(
        !store.delete("k").await.unwrap(),
        "deleting a missing key reports false"
    );

    let recreated = store.put("k", b"v3".to_vec()).await.unwrap();
    assert!(recreated > modified);
    let entry = store.get("k").await.unwrap().unwrap();
    assert_eq!(
        (entry.create_revision, entry.mod_revision),
        (recreated, recreated)
    );
}

pub async fn values_are_opaque_bytes(store: Arc<dyn Store>) {
    let binary = vec![0u8, 255, 10, 13, 0, 128];
    store.put("bin", binary.clone()).await.unwrap();
    store.put("empty", Vec::new()).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap().unwrap().value, binary);
    let empty = store
        .get("empty")
        .await
        .unwrap()
        .expect("an empty value still exists");
    assert!(empty.value.is_empty());
}

pub async fn list_is_ordered_and_respects_prefix_boundaries(store: Arc<dyn Store>) {
    let keys = [
        "a/bc", "a/b/d", "b", "a/b", "a/b/c", "A", "a/c", "a/b0", "a/b/c/e",
    ];
    for name in keys {
        store
            .put(name, format!("value of {name}").into_bytes())
            .await
            .unwrap();
    }
    let listed = |entries: Vec<Entry>| -> Vec<String> {
        for entry in &entries {
            assert_eq!(entry.value, format!("value of {}", entry.key).into_bytes());
        }
        entries.into_iter().map(|entry| entry.key).collect()
    };
    assert_eq!(
        listed(store.list("a/b/").await.unwrap()),
        ["a/b/c", "a/b/c/e", "a/b/d"]
    );
    let under_a_b = ["a/b", "a/b/c", "a/b/c/e", "a/b/d", "a/b0", "a/bc"];
    assert_eq!(listed(store.list("a/b").await.unwrap()), under_a_b);
    let mut everything: Vec<String> = keys.iter().map(|k| key(k)).collect();
    everything.sort();
    assert_eq!(listed(store.list("").await.unwrap()), everything);
    assert!(store.list("zzz").await.unwrap().is_empty());
    assert!(store.list("a/b/c/e/").await.unwrap().is_empty());

    assert_eq!(store.list_keys("a/b", None).await.unwrap(), under_a_b);
    assert_eq!(store.list_keys("", None).await.unwrap(), everything);
}

pub async fn list_keys_honours_the_limit(store: Arc<dyn Store>) {
    for i in (0..10).rev() {
        store.put(&format!("p/{i}"), vec![1]).await.unwrap();
    }
    store.put("q/x", vec![1]).await.unwrap();
    assert_eq!(
        store.list_keys("p/", Some(3)).await.unwrap(),
        ["p/0", "p/1", "p/2"]
    );
    assert_eq!(
        store.list_keys("p/", Some(0)).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.list_keys("p/", Some(100)).await.unwrap().len(), 10);
    let all = store.list_keys("p/", None).await.unwrap();
    assert_eq!(all, (0..10).map(|i| format!("p/{i}")).collect::<Vec<_>>());
}

pub async fn txn_applies_all_ops_at_one_revision(store: Arc<dyn Store>) {
    store.put("t/old", b"old".to_vec()).await.unwrap();
    let before = store.revision().await.unwrap();
    let outcome = store
        .txn(Txn {
            compares: vec![Compare::Absent(key("t/a")), Compare::Exists(key("t/old"))],
            ops: vec![
                put("t/a", "A"),
                put("t/b", "B"),
                Op::Delete { key: key("t/old") },
            ],
        })
        .await
        .unwrap();
    let revision = before + 1;
    assert_eq!(
        outcome,
        TxnOutcome {
            succeeded: true,
            revision,
            failed_compare: None
        }
    );
    for (name, value) in [("t/a", "A"), ("t/b", "B")] {
        let entry = store.get(name).await.unwrap().unwrap();
        assert_eq!(entry.value, value.as_bytes());
        assert_eq!(
            (entry.create_revision, entry.mod_revision),
            (revision, revision)
        );
    }
    assert_eq!(store.get("t/old").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), revision);
}

pub async fn failed_txn_writes_nothing_and_names_the_failed_compare(store: Arc<dyn Store>) {
    let present_revision = store.put("f/present", b"kept".to_vec()).await.unwrap();
    store.put("h/1", b"kept".to_vec()).await.unwrap();
    let before = store.revision().await.unwrap();
    let cases: Vec<(Vec<Compare>, usize)> = vec![
        (vec![Compare::Exists(key("f/missing"))], 0),
        (vec![Compare::Absent(key("f/present"))], 0),
        (
            vec![Compare::ModRevision(
                key("f/present"),
                present_revision + 100,
            )],
            0,
        ),
        (vec![Compare::ModRevision(key("f/present"), 0)], 0),
        (
            vec![Compare::ModRevision(key("f/missing"), present_revision)],
            0,
        ),
        (
            vec![
                Compare::Exists(key("f/present")),
                Compare::Exists(key("f/missing")),
            ],
            1,
        ),
        (
            vec![
                Compare::Exists(key("f/present")),
                Compare::Absent(key("f/missing")),
                Compare::ModRevision(key("f/present"), present_revision),
                Compare::ModRevision(key("f/missing"), 0),
                Compare::Absent(key("f/present")),
            ],
            4,
        ),
    ];
    for (compares, failing) in cases {
        let txn = Txn {
            compares: compares.clone(),
            ops: vec![
                put("g/new", "new"),
                Op::Delete {
                    key: key("f/present"),
                },
                Op::DeletePrefix { prefix: key("h/") },
            ],
        };
        let outcome = store.txn(txn).await.unwrap();
        let expected = TxnOutcome {
            succeeded: false,
            revision: before,
            failed_compare: Some(failing),
        };
        assert_eq!(outcome, expected, "compares {compares:?}");
    }
    assert_eq!(store.get("g/new").await.unwrap(), None);
    let present = store.get("f/present").await.unwrap().unwrap();
    assert_eq!(
        (present.value.as_slice(), present.mod_revision),
        (&b"kept"[..], present_revision)
    );
    assert!(store.get("h/1").await.unwrap().is_some());
    assert_eq!(store.revision().await.unwrap(), before);
}

pub async fn each_compare_kind_can_pass(store: Arc<dyn Store>) {
    let claim = |compare: Compare, target: &str| Txn {
        compares: vec![compare],
        ops: vec![put(target, "claimed")],
    };
    let absent = store
        .txn(claim(Compare::ModRevision(key("z"), 0), "z"))
        .await
        .unwrap();
    assert!(absent.succeeded, "mod revision 0 matches a missing key");
    let again = store
        .txn(claim(Compare::ModRevision(key("z"), 0), "z"))
        .await
        .unwrap();
    assert_eq!(
        again.failed_compare,
        Some(0),
        "mod revision 0 does not match an existing key"
    );

    let exact = store
        .txn(claim(Compare::ModRevision(key("z"), absent.revision), "z"))
        .await;
    assert!(exact.unwrap().succeeded);
    assert!(
        store
            .txn(claim(Compare::Exists(key("z")), "y"))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        store
            .txn(claim(Compare::Absent(key("x")), "x"))
            .await
            .unwrap()
            .succeeded
    );
}

pub async fn revisions_advance_only_on_writes(store: Arc<dyn Store>) {
    let start = store.revision().await.unwrap();
    let mut last = start;
    for i in 0..5 {
        let revision = store.put(&format!("r/{i}"), vec![]).await.unwrap();
        assert!(revision > last, "revision {revision} after {last}");
        last = revision;
    }
    assert_eq!(store.revision().await.unwrap(), last);

    let failed = Txn {
        compares: vec![Compare::Exists(key("r/none"))],
        ops: vec![put("r/x", "")],
    };
    assert_eq!(store.txn(failed).await.unwrap().revision, last);
    let empty = store.txn(Txn::default()).await.unwrap();
    assert_eq!(
        empty,
        TxnOutcome {
            succeeded: true,
            revision: last,
            failed_compare: None
        }
    );
    assert!(!store.delete("r/none").await.unwrap());
    let no_op_deletes = Txn {
        compares: vec![],
        ops: vec![
            Op::Delete { key: key("r/none") },
            Op::DeletePrefix {
                prefix: key("none/"),
            },
        ],
    };
    let outcome = store.txn(no_op_deletes).await.unwrap();
    assert_eq!(
        outcome,
        TxnOutcome {
            succeeded: true,
            revision: last,
            failed_compare: None
        }
    );
    assert_eq!(store.revision().await.unwrap(), last);

    let next = store.put("r/0", vec![1]).await.unwrap();
    assert!(next > last);
}

pub async fn delete_prefix_removes_only_keys_under_the_prefix(store: Arc<dyn Store>) {
    for name in ["d/x/1", "d/x/2", "d/x/3/4", "d/x", "d/xy", "e/x/1"] {
        store.put(name, vec![]).await.unwrap();
    }
    let before = store.revision().await.unwrap();
    let txn = Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: key("d/x/"),
        }],
    };
    let outcome = store.txn(txn).await.unwrap();
    assert_eq!(
        outcome.revision,
        before + 1,
        "one deletion of many keys is one revision"
    );
    assert_eq!(
        store.list_keys("", None).await.unwrap(),
        ["d/x", "d/xy", "e/x/1"]
    );
}

pub async fn txn_touching_a_key_twice_is_rejected(store: Arc<dyn Store>) {
    let twice = Txn {
        compares: vec![],
        ops: vec![put("dup", "1"), put("dup", "2")],
    };
    assert!(matches!(store.txn(twice).await, Err(Error::Backend(_))));
    let covered = Txn {
        compares: vec![],
        ops: vec![
            Op::DeletePrefix {
                prefix: key("dup/"),
            },
            put("dup/x", "1"),
        ],
    };
    assert!(matches!(store.txn(covered).await, Err(Error::Backend(_))));
    assert_eq!(store.get("dup").await.unwrap(), None);
    assert_eq!(store.get("dup/x").await.unwrap(), None);

    store.put("dup", b"1".to_vec()).await.unwrap();
    let deleted_twice = Txn {
        compares: vec![],
        ops: vec![
            Op::Delete { key: key("dup") },
            Op::Delete { key: key("dup") },
        ],
    };
    assert!(store.txn(deleted_twice).await.unwrap().succeeded);
    assert_eq!(store.get("dup").await.unwrap(), None);
}

pub async fn watch_from_now_sees_later_changes_in_order(store: Arc<dyn Store>) {
    store.put("w/before", b"old".to_vec()).await.unwrap();
    let mut stream = store.watch("w/", None).await.unwrap();
    let r1 = store.put("w/1", "one".into()).await.unwrap();
    store.put("other/1", b"x".to_vec()).await.unwrap();
    store.put("w", b"x".to_vec()).await.unwrap();
    assert!(store.delete("w/1").await.unwrap());
    let r2 = store.revision().await.unwrap();
    let both = Txn {
        compares: vec![],
        ops: vec![put("w/2", "two"), put("w/3", "three")],
    };
    let r3 = store.txn(both).await.unwrap().revision;
    let prefix = Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix { prefix: key("w/") }],
    };
    let r4 = store.txn(prefix).await.unwrap().revision;

    let expected = [
        put_event("w/1", "one", r1, r1),
        delete_event("w/1", r2),
        put_event("w/2", "two", r3, r3),
        put_event("w/3", "three", r3, r3),
        delete_event("w/2", r4),
        delete_event("w/3", r4),
        delete_event("w/before", r4),
    ];
    for want in expected {
        assert_eq!(next_event(&mut stream).await, want);
    }
    assert_quiet(&mut stream).await;
}

pub async fn watch_from_a_past_revision_replays_then_follows(store: Arc<dyn Store>) {
    let start = store.revision().await.unwrap();
    let r1 = store.put("h/1", b"1".to_vec()).await.unwrap();
    let r2 = store.put("h/2", b"2".to_vec()).await.unwrap();
    store.put("x/1", b"x".to_vec()).await.unwrap();
    let r3 = store.put("h/1", b"1b".to_vec()).await.unwrap();
    store.delete("h/2").await.unwrap();
    let r4 = store.revision().await.unwrap();

    let mut stream = store.watch("h/", Some(start)).await.unwrap();
    assert_eq!(next_event(&mut stream).await, put_event("h/1", "1", r1, r1));
    assert_eq!(next_event(&mut stream).await, put_event("h/2", "2", r2, r2));
    assert_eq!(
        next_event(&mut stream).await,
        put_event("h/1", "1b", r1, r3)
    );
    assert_eq!(next_event(&mut stream).await, delete_event("h/2", r4));
    let r5 = store.put("h/3", b"3".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut stream).await, put_event("h/3", "3", r5, r5));
    assert_quiet(&mut stream).await;

    // Starting after a revision skips exactly the changes up to it.
    let mut later = store.watch("h/", Some(r3)).await.unwrap();
    assert_eq!(next_event(&mut later).await, delete_event("h/2", r4));
    assert_eq!(next_event(&mut later).await, put_event("h/3", "3", r5, r5));
    assert_quiet(&mut later).await;
}

pub async fn watch_switches_from_replay_to_live_without_gaps(store: Arc<dyn Store>) {
    const WRITES: usize = 300;
    let start = store.revision().await.unwrap();
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(WRITES);
            for i in 0..WRITES {
                revisions.push(store.put(&format!("s/{i:04}"), vec![]).await.unwrap());
                store.put(&format!("noise/{i}"), vec![]).await.unwrap();
            }
            revisions
        })
    };
    // Join while the writer is part-way through, so both replay and live delivery are needed.
    while store.revision().await.unwrap() < start + 50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut stream = store.watch("s/", Some(start)).await.unwrap();
    let mut seen = Vec::with_capacity(WRITES);
    for _ in 0..WRITES {
        seen.push(next_event(&mut stream).await);
    }
    let revisions = writer.await.unwrap();
    for (i, (event, revision)) in seen.iter().zip(&revisions).enumerate() {
        assert_eq!(
            event,
            &put_event(&format!("s/{i:04}"), "", *revision, *revision)
        );
    }
    assert_quiet(&mut stream).await;
}

pub async fn watch_of_a_prefix_ignores_neighbouring_prefixes(store: Arc<dyn Store>) {
    let mut stream = store.watch("a/b/", None).await.unwrap();
    for name in ["a/bc", "a/b", "a/c/x", "a/b0/x", "b/a/b/x"] {
        store.put(name, vec![]).await.unwrap();
    }
    let revision = store.put("a/b/x", vec![]).await.unwrap();
    assert_eq!(
        next_event(&mut stream).await,
        put_event("a/b/x", "", revision, revision)
    );
    assert_quiet(&mut stream).await;
}

pub async fn racing_txns_on_one_key_have_exactly_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 8;
    let base = store.put("race", b"start".to_vec()).await.unwrap();
    let run = |make: fn(u64, usize) -> Txn| {
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.txn(make(base, i)).await.unwrap() })
            })
            .collect();
        async move {
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            outcomes
        }
    };

    let update = |base: u64, i: usize| Txn {
        compares: vec![Compare::ModRevision(key("race"), base)],
        ops: vec![Op::Put {
            key: key("race"),
            value: format!("racer {i}").into_bytes(),
        }],
    };
    let outcomes = run(update).await;
    let winners: Vec<usize> = (0..RACERS).filter(|&i| outcomes[i].succeeded).collect();
    assert_eq!(winners.len(), 1, "outcomes {outcomes:?}");
    for outcome in outcomes.iter().filter(|outcome| !outcome.succeeded) {
        assert_eq!(outcome.failed_compare, Some(0));
    }
    let entry = store.get("race").await.unwrap().unwrap();
    assert_eq!(entry.value, format!("racer {}", winners[0]).into_bytes());
    assert_eq!(entry.mod_revision, outcomes[winners[0]].revision);

    let create = |_: u64, i: usize| Txn {
        compares: vec![Compare::Absent(key("claim"))],
        ops: vec![Op::Put {
            key: key("claim"),
            value: format!("racer {i}").into_bytes(),
        }],
    };
    let outcomes = run(create).await;
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.succeeded).count(),
        1
    );
}

pub async fn watch_delivers_large_revisions_whole(store: Arc<dyn Store>) {
    // More events than one read of the redb change log takes, most of them in one revision.
    const KEYS: usize = 1500;
    const PER_TXN: usize = 100;
    let start = store.revision().await.unwrap();
    for chunk in 0..KEYS / PER_TXN {
        let ops = (chunk * PER_TXN..(chunk + 1) * PER_TXN)
            .map(|i| put(&format!("big/{i:05}"), "v"))
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .unwrap();
    }
    let deletion = Txn {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: key("big/"),
        }],
    };
    let deleted_at = store.txn(deletion).await.unwrap().revision;

    let mut stream = store.watch("big/", Some(start)).await.unwrap();
    for i in 0..KEYS {
        let event = next_event(&mut stream).await;
        let revision = start + 1 + (i / PER_TXN) as u64;
        assert_eq!(
            event,
            put_event(&format!("big/{i:05}"), "v", revision, revision)
        );
    }
    for i in 0..KEYS {
        assert_eq!(
            next_event(&mut stream).await,
            delete_event(&format!("big/{i:05}"), deleted_at)
        );
    }
    assert_quiet(&mut stream).await;
}
