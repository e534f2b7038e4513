//! Embedded [`Store`] backend: one `redb` file imitating etcd's revisions, with a bounded change
//! log that serves watches.
//!
//! Tables:
//! - `kv`: key -> `create_revision (u64 BE) | mod_revision (u64 BE) | value`;
//! - `changes`: `(revision, index within the revision)` -> one encoded [`WatchEvent`]; it keeps
//!   about [`RedbOptions::change_log_limit`] events, dropping whole revisions, oldest first;
//! - `meta`: the store `revision` and `compacted`, the newest revision dropped from `changes`.
//!
//! Every write goes through one writer thread, which applies all queued transactions in one
//! redb write transaction (group commit), commits it durably, and only then publishes the new
//! revision on a `tokio::sync::watch` channel and answers the callers.
//!
//! A watcher is a cursor into `changes`: whenever the published revision passes its position it
//! reads the next events from a read snapshot. Replay and live delivery are thus the same code
//! path, so no event is lost or duplicated at the switch, and a slow watcher only ever reads,
//! never holding up writers. A watcher whose position has been dropped from the log ends with
//! [`Error::Compacted`].

use std::collections::VecDeque;
use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    Compare, Entry, Error, Op, Result, Store, Txn, TxnOutcome, WatchEvent, WatchStream,
    check_txn_keys,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const CHANGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// File name of the database inside the data directory.
const FILE_NAME: &str = "emco.redb";
/// Most transactions folded into one redb commit.
const MAX_BATCH: usize = 256;
/// Most change-log entries a watcher reads per snapshot (bounds its memory and read time).
const WATCH_READ_CHUNK: usize = 1024;
/// Length of the queue in front of the writer thread.
const WRITE_QUEUE: usize = 1024;

/// Default number of events kept in the change log for watches that start in the past.
pub const DEFAULT_CHANGE_LOG_LIMIT: u64 = 100_000;

/// Tuning of a [`RedbStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// About how many events the change log keeps (whole revisions are dropped, and never the
    /// newest one). A watch starting before the oldest kept revision gets [`Error::Compacted`].
    pub change_log_limit: u64,
    /// Bytes of page cache. redb's own default (1 GiB) would let the cache alone exceed the
    /// hub's memory budget; hot data (contexts being deployed, records) is far smaller.
    pub cache_bytes: usize,
}

/// The page cache the embedded store keeps by default.
pub const DEFAULT_CACHE_BYTES: usize = 128 * 1024 * 1024;

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            change_log_limit: DEFAULT_CHANGE_LOG_LIMIT,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// The embedded store: a single `redb` file, `emco.redb`, in a data directory.
///
/// Dropping it waits for the writer thread to finish its current commit, then closes the file
/// (watch streams of a dropped store end).
pub struct RedbStore {
    db: Arc<Database>,
    writes: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    /// The newest revision that is committed and whose callers may be answered.
    published: watch::Receiver<u64>,
}

/// One transaction waiting for the writer thread.
struct WriteRequest {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnOutcome>>,
}

impl RedbStore {
    /// Opens (or creates) `dir/emco.redb` with default options, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, RedbOptions::default())
    }

    /// Opens (or creates) `dir/emco.redb` with the given options.
    pub fn open_with(dir: &Path, options: RedbOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Backend(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .map_err(|e| Error::Backend(format!("opening {}: {e}", path.display())))?;
        let revision = init_tables(&db).map_err(backend)?;
        let db = Arc::new(db);
        let (publish, published) = watch::channel(revision);
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("emco-redb-writer".to_owned())
            .spawn(move || run_writer(&writer_db, queue, &publish, options.change_log_limit))
            .map_err(|e| Error::Backend(format!("starting the redb writer thread: {e}")))?;
        tracing::debug!(path = %path.display(), revision, "opened redb store");
        Ok(Self {
            db,
            writes: Some(writes),
            writer: Some(writer),
            published,
        })
    }

    /// Runs `read` on a read snapshot, off the async runtime.
    async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || read(&db.begin_read().map_err(backend)?))
            .await
            .map_err(|e| Error::Backend(format!("redb read task failed: {e}")))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue stops the writer after it has answered what was queued; joining it
        // releases its handle on the file so the directory can be reopened right away.
        self.writes.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the redb writer thread panicked");
        }
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        // A point read is one B-tree descent, mostly through redb's page cache: done in place,
        // it costs microseconds, less than handing it to the blocking pool and back (which
        // showed in the synchronizer's profile, one read per cluster connection).
        let rtx = self.db.begin_read().map_err(backend)?;
        let kv = rtx.open_table(KV).map_err(backend)?;
        let Some(record) = kv.get(key).map_err(backend)? else {
            return Ok(None);
        };
        let (create_revision, mod_revision, value) = decode_record(record.value())?;
        Ok(Some(Entry {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision,
            mod_revision,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let prefix = prefix.to_owned();
        self.read(move |rtx| {
            let kv = rtx.open_table(KV).map_err(backend)?;
            let mut entries = Vec::new();
            for item in kv.range(prefix.as_str()..).map_err(backend)? {
                let (key, record) = item.map_err(backend)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                let (create_revision, mod_revision, value) = decode_record(record.value())?;
                entries.push(Entry {
                    key: key.value().to_owned(),
                    value: value.to_vec(),
                    create_revision,
                    mod_revision,
                });
            }
            Ok(entries)
        })
        .await
    }

    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>> {
        let prefix = prefix.to_owned();
        let limit = limit.unwrap_or(usize::MAX);
        self.read(move |rtx| {
            let kv = rtx.open_table(KV).map_err(backend)?;
            let mut keys = Vec::new();
            for item in kv.range(prefix.as_str()..).map_err(backend)?.take(limit) {
                let (key, _) = item.map_err(backend)?;
                if !key.value().starts_with(prefix.as_str()) {
                    break;
                }
                keys.push(key.value().to_owned());
            }
            Ok(keys)
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        check_txn_keys(&txn)?;
        let closed = || Error::Backend("the redb store is closed".to_owned());
        let writes = self.writes.as_ref().ok_or_else(closed)?;
        let (reply, outcome) = oneshot::channel();
        writes
            .send(WriteRequest { txn, reply })
            .await
            .map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    async fn revision(&self) -> Result<u64> {
        Ok(*self.published.borrow())
    }

    async fn watch(&self, prefix: &str, after_revision: Option<u64>) -> Result<WatchStream> {
        let after = match after_revision {
            Some(after) => {
                let compacted = self
                    .read(|rtx| meta_value(&rtx.open_table(META).map_err(backend)?, META_COMPACTED))
                    .await?;
                if after < compacted {
                    return Err(Error::Compacted {
                        requested: after,
                        compacted,
                    });
                }
                after
            }
            None => *self.published.borrow(),
        };
        let cursor = WatchCursor {
            db: Arc::downgrade(&self.db),
            prefix: prefix.to_owned(),
            next: (after.saturating_add(1), 0),
            published: self.published.clone(),
            pending: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            cursor,
            WatchCursor::next_item,
        )))
    }
}

/// Creates the tables if missing; returns the current revision.
fn init_tables(db: &Database) -> Result<u64, redb::Error> {
    let wtx = db.begin_write()?;
    let revision = {
        wtx.open_table(KV)?;
        wtx.open_table(CHANGES)?;
        let meta = wtx.open_table(META)?;
        meta.get(META_REVISION)?.map_or(0, |v| v.value())
    };
    wtx.commit()?;
    Ok(revision)
}

/// The writer thread: applies queued transactions in batches, one durable commit per batch.
fn run_writer(
    db: &Database,
    mut queue: mpsc::Receiver<WriteRequest>,
    publish: &watch::Sender<u64>,
    change_log_limit: u64,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        match commit_batch(db, &batch, change_log_limit) {
            Ok((outcomes, revision)) => {
                // Publish before answering, so a caller that saw Ok also sees the revision in
                // `revision()` and in watches it starts afterwards.
                publish.send_if_modified(|published| {
                    let advanced = *published != revision;
                    *published = revision;
                    advanced
                });
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, "redb write transaction failed");
                for request in batch {
                    let _ = request.reply.send(Err(Error::Backend(error.to_string())));
                }
            }
        }
    }
}

/// Applies `batch` in one redb write transaction; returns each outcome and the new revision.
fn commit_batch(
    db: &Database,
    batch: &[WriteRequest],
    change_log_limit: u64,
) -> Result<(Vec<TxnOutcome>, u64), redb::Error> {
    let wtx = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let (start, revision) = {
        let mut tables = WriteTables {
            kv: wtx.open_table(KV)?,
            changes: wtx.open_table(CHANGES)?,
        };
        let mut meta = wtx.open_table(META)?;
        let start = meta.get(META_REVISION)?.map_or(0, |v| v.value());
        let mut revision = start;
        for request in batch {
            outcomes.push(tables.apply(&request.txn, &mut revision)?);
        }
        if revision != start {
            meta.insert(META_REVISION, revision)?;
            if let Some(compacted) = tables.trim_changes(change_log_limit, revision)? {
                meta.insert(META_COMPACTED, compacted)?;
            }
        }
        (start, revision)
    };
    if revision == start {
        // Nothing was written (only failed compares or no-op deletes): skip the fsync.
        wtx.abort()?;
    } else {
        wtx.commit()?;
    }
    Ok((outcomes, revision))
}

/// The tables a write transaction changes.
struct WriteTables<'txn> {
    kv: Table<'txn, &'static str, &'static [u8]>,
    changes: Table<'txn, (u64, u32), &'static [u8]>,
}

impl WriteTables<'_> {
    /// Evaluates `txn`'s compares and, if all hold, applies its ops at `*revision + 1`.
    fn apply(&mut self, txn: &Txn, revision: &mut u64) -> Result<TxnOutcome, redb::Error> {
        for (index, compare) in txn.compares.iter().enumerate() {
            if !self.holds(compare)? {
                return Ok(TxnOutcome {
                    succeeded: false,
                    revision: *revision,
                    failed_compare: Some(index),
                });
            }
        }
        let next = *revision + 1;
        let mut events = 0u32;
        for op in &txn.ops {
            match op {
                Op::Put { key, value } => {
                    let create_revision = self.revisions(key)?.map_or(next, |(create, _)| create);
                    let record = encode_record(create_revision, next, value);
                    self.kv.insert(key.as_str(), record.as_slice())?;
                    let event = encode_put_event(key, create_revision, value);
                    self.changes.insert((next, events), event.as_slice())?;
                    events += 1;
                }
                Op::Delete { key } => {
                    if self.kv.remove(key.as_str())?.is_some() {
                        self.log_delete(next, &mut events, key)?;
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let mut keys = Vec::new();
                    for item in self.kv.range(prefix.as_str()..)? {
                        let (key, _) = item?;
                        if !key.value().starts_with(prefix.as_str()) {
                            break;
                        }
                        keys.push(key.value().to_owned());
                    }
                    for key in keys {
                        self.kv.remove(key.as_str())?;
                        self.log_delete(next, &mut events, &key)?;
                    }
                }
            }
        }
        if events > 0 {
            *revision = next;
        }
        Ok(TxnOutcome {
            succeeded: true,
            revision: *revision,
            failed_compare: None,
        })
    }

    fn holds(&self, compare: &Compare) -> Result<bool, redb::Error> {
        Ok(match compare {
            Compare::Exists(key) => self.revisions(key)?.is_some(),
            Compare::Absent(key) => self.revisions(key)?.is_none(),
            Compare::ModRevision(key, expected) => {
                self.revisions(key)?.map_or(0, |(_, modified)| modified) == *expected
            }
        })
    }

    /// `(create_revision, mod_revision)` of a key, when it exists.
    fn revisions(&self, key: &str) -> Result<Option<(u64, u64)>, redb::Error> {
        let Some(record) = self.kv.get(key)? else {
            return Ok(None);
        };
        let (create, modified, _) = decode_record(record.value()).map_err(corrupt)?;
        Ok(Some((create, modified)))
    }

    fn log_delete(
        &mut self,
        revision: u64,
        events: &mut u32,
        key: &str,
    ) -> Result<(), redb::Error> {
        self.changes
            .insert((revision, *events), encode_delete_event(key).as_slice())?;
        *events += 1;
        Ok(())
    }

    /// Drops the oldest whole revisions while the log holds more than `limit` events, never the
    /// `newest` one; returns the newest dropped revision, if any was dropped.
    fn trim_changes(&mut self, limit: u64, newest: u64) -> Result<Option<u64>, redb::Error> {
        let mut compacted = None;
        while self.changes.len()? > limit {
            let Some(oldest) = self.oldest_change_revision()? else {
                break;
            };
            if oldest >= newest {
                break;
            }
            while self.oldest_change_revision()? == Some(oldest) {
                self.changes.pop_first()?;
            }
            compacted = Some(oldest);
        }
        Ok(compacted)
    }

    fn oldest_change_revision(&self) -> Result<Option<u64>, redb::Error> {
        Ok(self
            .changes
            .first()?
            .map(|(position, _)| position.value().0))
    }
}

/// A watcher's position in the change log plus the events read but not yet handed out.
struct WatchCursor {
    db: Weak<Database>,
    prefix: String,
    /// The next change-log position to read: `(revision, index within the revision)`.
    next: (u64, u32),
    published: watch::Receiver<u64>,
    pending: VecDeque<WatchEvent>,
    finished: bool,
}

/// What one read of the change log found.
struct ChangeChunk {
    events: Vec<WatchEvent>,
    next: (u64, u32),
}

impl WatchCursor {
    /// The stream step: hand out a pending event, or wait for and read the next changes.
    async fn next_item(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            let wanted = self.next.0;
            // Ends quietly when the store (and so its writer) is gone.
            self.published
                .wait_for(|&published| published >= wanted)
                .await
                .ok()?;
            let db = self.db.upgrade()?;
            let (prefix, next) = (self.prefix.clone(), self.next);
            let chunk = tokio::task::spawn_blocking(move || read_changes(&db, &prefix, next)).await;
            match chunk {
                Ok(Ok(chunk)) => {
                    self.pending.extend(chunk.events);
                    self.next = chunk.next;
                }
                Ok(Err(error)) => {
                    self.finished = true;
                    return Some((Err(error), self));
                }
                Err(join_error) => {
                    self.finished = true;
                    let error = Error::Backend(format!("redb watch read failed: {join_error}"));
                    return Some((Err(error), self));
                }
            }
        }
    }
}

/// Reads up to [`WATCH_READ_CHUNK`] change-log entries from `next` on, keeping those under
/// `prefix`. Fails with [`Error::Compacted`] when entries from `next` on were dropped.
fn read_changes(db: &Database, prefix: &str, next: (u64, u32)) -> Result<ChangeChunk> {
    let rtx = db.begin_read().map_err(backend)?;
    let meta = rtx.open_table(META).map_err(backend)?;
    let compacted = meta_value(&meta, META_COMPACTED)?;
    if next.0 <= compacted {
        return Err(Error::Compacted {
            requested: next.0 - 1,
            compacted,
        });
    }
    let changes = rtx.open_table(CHANGES).map_err(backend)?;
    let mut events = Vec::new();
    let mut last = None;
    let mut read = 0;
    for item in changes
        .range(next..)
        .map_err(backend)?
        .take(WATCH_READ_CHUNK)
    {
        let (position, encoded) = item.map_err(backend)?;
        let (revision, index) = position.value();
        read += 1;
        last = Some((revision, index));
        if let Some(event) = decode_event(encoded.value(), prefix, revision)? {
            events.push(event);
        }
    }
    let next = match last {
        // More may follow in this snapshot: resume right after the last entry read.
        Some((revision, index)) if read == WATCH_READ_CHUNK => (revision, index + 1),
        // Read everything this snapshot has: resume at the first revision it does not have.
        _ => next.max((meta_value(&meta, META_REVISION)? + 1, 0)),
    };
    Ok(ChangeChunk { events, next })
}

fn meta_value(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64> {
    Ok(meta.get(name).map_err(backend)?.map_or(0, |v| v.value()))
}

fn encode_record(create_revision: u64, mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(16 + value.len());
    record.extend_from_slice(&create_revision.to_be_bytes());
    record.extend_from_slice(&mod_revision.to_be_bytes());
    record.extend_from_slice(value);
    record
}

/// Splits a `kv` record into `(create_revision, mod_revision, value)`.
fn decode_record(record: &[u8]) -> Result<(u64, u64, &[u8])> {
    let (create, rest) = split_u64(record)?;
    let (modified, value) = split_u64(rest)?;
    Ok((create, modified, value))
}

const EVENT_DELETE: u8 = 0;
const EVENT_PUT: u8 = 1;

/// Change-log encoding of a put: `1 | create_revision | key length (u32 BE) | key | value`.
fn encode_put_event(key: &str, create_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(13 + key.len() + value.len());
    event.push(EVENT_PUT);
    event.extend_from_slice(&create_revision.to_be_bytes());
    push_key(&mut event, key);
    event.extend_from_slice(value);
    event
}

/// Change-log encoding of a deletion: `0 | key length (u32 BE) | key`.
fn encode_delete_event(key: &str) -> Vec<u8> {
    let mut event = Vec::with_capacity(5 + key.len());
    event.push(EVENT_DELETE);
    push_key(&mut event, key);
    event
}

fn push_key(buffer: &mut Vec<u8>, key: &str) {
    // Keys are far below 4 GiB (etcd caps whole requests at a few MiB).
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&len.to_be_bytes());
    buffer.extend_from_slice(key.as_bytes());
}

/// Decodes a change-log entry written at `revision`, or `None` when its key is not under `prefix`.
fn decode_event(encoded: &[u8], prefix: &str, revision: u64) -> Result<Option<WatchEvent>> {
    let (&kind, rest) = encoded
        .split_first()
        .ok_or_else(|| corrupt_data("empty change"))?;
    let (create_revision, rest) = match kind {
        EVENT_PUT => split_u64(rest)?,
        EVENT_DELETE => (0, rest),
        other => return Err(corrupt_data(format!("unknown change kind {other}"))),
    };
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt_data("short change"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(corrupt_data)?;
    if rest.len() < len {
        return Err(corrupt_data("short change key"));
    }
    let (key, value) = rest.split_at(len);
    if !key.starts_with(prefix.as_bytes()) {
        return Ok(None);
    }
    let key = String::from_utf8(key.to_vec()).map_err(corrupt_data)?;
    Ok(Some(match kind {
        EVENT_PUT => WatchEvent::Put(Entry {
            key,
            value: value.to_vec(),
            create_revision,
            mod_revision: revision,
        }),
        _ => WatchEvent::Delete {
            key,
            mod_revision: revision,
        },
    }))
}

fn split_u64(bytes: &[u8]) -> Result<(u64, &[u8])> {
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt_data("short record"))?;
    Ok((u64::from_be_bytes(*head), rest))
}

fn backend(error: impl Display) -> Error {
    Error::Backend(error.to_string())
}

fn corrupt_data(detail: impl Display) -> Error {
    Error::Backend(format!("corrupt redb store data: {detail}"))
}

/// Carries a decoding failure out of code that returns redb errors.
fn corrupt(error: Error) -> redb::Error {
    redb::Error::Corrupted(error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = encode_record(3, 7, b"value");
        assert_eq!(decode_record(&record).unwrap(), (3, 7, &b"value"[..]));
        assert!(decode_record(&record[..15]).is_err());
    }

    #[test]
    fn change_events_round_trip_and_filter_by_prefix() {
        let put = encode_put_event("a/b", 4, b"\x00\xff");
        let expected = WatchEvent::Put(Entry {
            key: "a/b".to_owned(),
            value: vec![0, 255],
            create_revision: 4,
            mod_revision: 9,
        });
        assert_eq!(decode_event(&put, "a/", 9).unwrap(), Some(expected));
        assert_eq!(decode_event(&put, "a/bc", 9).unwrap(), None);
        let delete = encode_delete_event("a/b");
        let expected = WatchEvent::Delete {
            key: "a/b".to_owned(),
            mod_revision: 9,
        };
        assert_eq!(decode_event(&delete, "", 9).unwrap(), Some(expected));
        assert!(decode_event(&delete[..3], "", 9).is_err());
        assert!(decode_event(&[7], "", 9).is_err());
    }
}
