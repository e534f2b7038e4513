//! The run's record writer: writes from all of a run's cluster workers are queued and committed
//! together (group commit), each transaction comparing the run's operation revision, so a run's
//! many small records cost few store transactions and a superseded run cannot write.

use std::sync::Arc;
use std::time::Duration;

use emco_store::{Compare, Op, Store, Txn};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::SyncError;
use super::live::{LiveRecord, LiveRecords};
use super::records::{self, AppClusterRecord};

/// Most puts in one transaction (etcd's default limit is 128 operations).
const MAX_BATCH: usize = 64;
/// Most value bytes in one transaction (etcd's default request limit is 1.5 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

struct Write {
    key: String,
    value: Vec<u8>,
    ack: Option<oneshot::Sender<Result<(), SyncError>>>,
    /// An app-cluster record, for the run's live view once committed.
    live: Option<LiveRecord>,
}

/// A handle to queue writes; cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<Write>,
}

impl Flusher {
    /// Starts the writer task for the operation whose key `op_key` was last written at
    /// `op_rev`. `superseded` turns true when a write found the operation replaced. The task
    /// ends when every handle is dropped and the queue is written.
    ///
    /// A transaction waits up to `linger` after its first write for more: every transaction
    /// is an fsync, and during a rollout writes arrive a few at a time, so without the wait
    /// the hub spends a sixth of its CPU on commits of one or two records.
    pub fn start(
        store: Arc<dyn Store>,
        op_key: String,
        op_rev: u64,
        retry: Duration,
        linger: Duration,
        live: Arc<LiveRecords>,
        superseded: watch::Sender<bool>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            store,
            op_key,
            op_rev,
            retry,
            linger,
            live,
        };
        let task = write_loop(writer, rx, superseded);
        (Self { tx }, task)
    }

    /// Writes `value` at `key`; returns once it is durable.
    pub async fn put(&self, key: String, value: Vec<u8>) -> Result<(), SyncError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Write {
                key,
                value,
                ack: Some(ack),
                live: None,
            })
            .map_err(|_| SyncError::Superseded)?;
        done.await.unwrap_or(Err(SyncError::Superseded))
    }

    /// Writes an app-cluster record; the receiver answers once it is durable (or refused), and
    /// from then on the run's live view has it.
    pub fn put_record(
        &self,
        key: String,
        app: &str,
        cluster: &emco_core::appcontext::ClusterId,
        record: &AppClusterRecord,
    ) -> oneshot::Receiver<Result<(), SyncError>> {
        let (ack, done) = oneshot::channel();
        let _ = self.tx.send(Write {
            key,
            value: records::to_bytes(record),
            ack: Some(ack),
            live: Some(LiveRecord {
                app: app.to_owned(),
                cluster: cluster.clone(),
                record: Arc::new(record.clone()),
            }),
        });
        done
    }

    /// Queues a write without waiting for it (for facts no step depends on, such as a
    /// cluster's connectivity flipping).
    pub fn put_later(&self, key: String, value: Vec<u8>) {
        let _ = self.tx.send(Write {
            key,
            value,
            ack: None,
            live: None,
        });
    }
}

/// What the writer task writes with.
struct Writer {
    store: Arc<dyn Store>,
    op_key: String,
    op_rev: u64,
    retry: Duration,
    linger: Duration,
    live: Arc<LiveRecords>,
}

async fn write_loop(
    writer: Writer,
    mut rx: mpsc::UnboundedReceiver<Write>,
    superseded: watch::Sender<bool>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + writer.linger;
        let mut batch = vec![first];
        let mut bytes = batch[0].value.len();
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let write = match rx.try_recv() {
                Ok(write) => write,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(write)) => write,
                        // The time is up, or every handle is gone.
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            bytes += write.value.len();
            batch.push(write);
        }
        // One transaction may not put a key twice: the latest value of a key wins.
        let mut ops: Vec<Op> = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        let mut committed = Vec::new();
        for write in batch {
            committed.extend(write.live);
            match ops
                .iter_mut()
                .find(|op| matches!(op, Op::Put { key, .. } if *key == write.key))
            {
                Some(Op::Put { value, .. }) => *value = write.value,
                _ => ops.push(Op::Put {
                    key: write.key,
                    value: write.value,
                }),
            }
            acks.extend(write.ack);
        }
        let txn = Txn {
            compares: vec![Compare::ModRevision(writer.op_key.clone(), writer.op_rev)],
            ops,
        };
        let outcome = loop {
            match writer.store.txn(txn.clone()).await {
                Ok(outcome) => break outcome,
                Err(error) => {
                    // The store being away must not fail objects: the writes wait for it.
                    warn!(%error, op_key = writer.op_key, "writing synchronizer records failed; retrying");
                    tokio::time::sleep(writer.retry).await;
                }
            }
        };
        if outcome.succeeded {
            writer.live.committed(committed);
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
        } else {
            for ack in acks {
                let _ = ack.send(Err(SyncError::Superseded));
            }
            let _ = superseded.send(true);
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use emco_store::RedbStore;

    use super::*;

    #[tokio::test]
    async fn writes_are_batched_durable_and_refused_once_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let op_rev = store.put("op", b"instantiate".to_vec()).await.unwrap();
        let (superseded_tx, superseded) = watch::channel(false);
        let live = Arc::new(LiveRecords::default());
        live.seed(Default::default());
        let cluster = emco_core::appcontext::ClusterId::new("p", "c");
        let record = AppClusterRecord {
            op_rev,
            ..AppClusterRecord::default()
        };
        let (flusher, task) = Flusher::start(
            store.clone(),
            "op".into(),
            op_rev,
            Duration::from_millis(10),
            Duration::from_millis(5),
            live.clone(),
            superseded_tx,
        );
        let writer = tokio::spawn(task);
        let before = store.revision().await.unwrap();
        let writes = (0..200).map(|n| flusher.put(format!("k/{n}"), n.to_string().into_bytes()));
        futures::future::try_join_all(writes).await.unwrap();
        // The same key twice in one batch: the later value wins.
        flusher.put_later("k/0".into(), b"first".to_vec());
        flusher.put("k/0".into(), b"second".to_vec()).await.unwrap();
        assert_eq!(store.list("k/").await.unwrap().len(), 200);
        assert_eq!(store.get("k/0").await.unwrap().unwrap().value, b"second");
        // A record reaches the live view once committed, as stored.
        flusher
            .put_record("ac/web/c".into(), "web", &cluster, &record)
            .await
            .unwrap()
            .unwrap();
        let stored: AppClusterRecord =
            serde_json::from_slice(&store.get("ac/web/c").await.unwrap().unwrap().value).unwrap();
        let seen = live.read(|view| view["web"][&cluster].clone()).unwrap();
        assert_eq!((*seen).clone(), stored);
        let transactions = store.revision().await.unwrap() - before;
        assert!(
            transactions < 200,
            "{transactions} transactions for 201 writes"
        );

        // A newer operation: the run's writes are refused and it learns so.
        store.put("op", b"terminate".to_vec()).await.unwrap();
        let refused = flusher.put("k/late".into(), b"x".to_vec()).await;
        assert!(matches!(refused, Err(SyncError::Superseded)), "{refused:?}");
        // A refused record does not reach the view.
        let refused_record = AppClusterRecord {
            op_rev: op_rev + 100,
            ..AppClusterRecord::default()
        };
        let refused = flusher
            .put_record("ac/web/c".into(), "web", &cluster, &refused_record)
            .await;
        assert!(!matches!(refused, Ok(Ok(()))), "{refused:?}");
        assert_eq!(
            live.read(|view| view["web"][&cluster].op_rev).unwrap(),
            op_rev
        );
        assert!(*superseded.borrow());
        assert!(store.get("k/late").await.unwrap().is_none());
        writer.await.unwrap();
    }
}
