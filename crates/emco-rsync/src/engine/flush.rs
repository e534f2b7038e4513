//! The run's record writer: writes from all of a run's cluster workers are queued and committed
//! together (group commit), each transaction comparing the run's operation revision, so a run's
//! many small records cost few store transactions and a superseded run cannot write.

use std::sync::Arc;
use std::time::Duration;

use emco_store::{Compare, Op, Store, Txn};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::SyncError;

/// Most puts in one transaction (etcd's default limit is 128 operations).
const MAX_BATCH: usize = 64;
/// Most value bytes in one transaction (etcd's default request limit is 1.5 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;

struct Write {
    key: String,
    value: Vec<u8>,
    ack: Option<oneshot::Sender<Result<(), SyncError>>>,
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
        superseded: watch::Sender<bool>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = write_loop(store, op_key, op_rev, retry, linger, rx, superseded);
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
            })
            .map_err(|_| SyncError::Superseded)?;
        done.await.unwrap_or(Err(SyncError::Superseded))
    }

    /// Queues a write; the receiver answers once it is durable (or refused). Lets a worker go
    /// on with other work while the write commits.
    pub fn put_detached(
        &self,
        key: String,
        value: Vec<u8>,
    ) -> oneshot::Receiver<Result<(), SyncError>> {
        let (ack, done) = oneshot::channel();
        // A closed queue drops `ack`, which the receiver reports as refused.
        let _ = self.tx.send(Write {
            key,
            value,
            ack: Some(ack),
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
        });
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    op_key: String,
    op_rev: u64,
    retry: Duration,
    linger: Duration,
    mut rx: mpsc::UnboundedReceiver<Write>,
    superseded: watch::Sender<bool>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + linger;
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
        for write in batch {
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
            compares: vec![Compare::ModRevision(op_key.clone(), op_rev)],
            ops,
        };
        let outcome = loop {
            match store.txn(txn.clone()).await {
                Ok(outcome) => break outcome,
                Err(error) => {
                    // The store being away must not fail objects: the writes wait for it.
                    warn!(%error, op_key, "writing synchronizer records failed; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        };
        if outcome.succeeded {
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
        let (flusher, task) = Flusher::start(
            store.clone(),
            "op".into(),
            op_rev,
            Duration::from_millis(10),
            Duration::from_millis(5),
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
        let transactions = store.revision().await.unwrap() - before;
        assert!(
            transactions < 200,
            "{transactions} transactions for 201 writes"
        );

        // A newer operation: the run's writes are refused and it learns so.
        store.put("op", b"terminate".to_vec()).await.unwrap();
        let refused = flusher.put("k/late".into(), b"x".to_vec()).await;
        assert!(matches!(refused, Err(SyncError::Superseded)), "{refused:?}");
        assert!(*superseded.borrow());
        assert!(store.get("k/late").await.unwrap().is_none());
        writer.await.unwrap();
    }
}
