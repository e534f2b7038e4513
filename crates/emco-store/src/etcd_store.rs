//! etcd v3 [`Store`] backend: a thin adapter that keeps every key under a namespace prefix.
//!
//! Revisions are etcd's own (`create_revision`, `mod_revision`, header `revision`). Compares map
//! to etcd compares on `create_revision` (`Exists` is `> 0`, `Absent` is `== 0`) and
//! `mod_revision` (etcd compares a missing key as revision 0, as the trait wants). etcd does not
//! say which compare failed, so the failure branch of every transaction reads the compared keys
//! (in the same atomic step) and the first failing compare is found from those.
//!
//! etcd's limits apply: at most `--max-txn-ops` (default 128) ops or compares per transaction
//! and `--max-request-bytes` (default 1.5 MiB) per request.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KeyValue, KvClient, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchClient,
    WatchOptions,
};

use crate::{
    Compare, Entry, Error, Op, Result, Store, Txn, TxnOutcome, WatchEvent, WatchStream,
    check_txn_keys,
};

/// Prefix put in front of every key unless another namespace is chosen.
pub const DEFAULT_NAMESPACE: &str = "/emco/";

/// Largest gRPC message accepted from etcd: listing 10k resources easily passes tonic's 4 MiB.
const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// How long one unary request may take before it fails (etcd-client waits forever by default,
/// e.g. while no endpoint is reachable).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`EtcdStore::connect`] waits for a first answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`] on an etcd v3 cluster; every key lives under [`EtcdStore::namespace`].
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    namespace: String,
}

impl EtcdStore {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`) with the [`DEFAULT_NAMESPACE`],
    /// failing unless one of them answers within a few seconds.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with_namespace(endpoints, DEFAULT_NAMESPACE).await
    }

    /// Like [`EtcdStore::connect`], keeping all keys under `namespace` instead (so that several
    /// hubs, or tests, can share one etcd without seeing each other).
    pub async fn connect_with_namespace(endpoints: &[String], namespace: &str) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::BadAddress(String::new()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(etcd_error)?;
        let store = Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            namespace: namespace.to_owned(),
        };
        tokio::time::timeout(PROBE_TIMEOUT, store.revision())
            .await
            .map_err(|_| {
                Error::Backend(format!(
                    "no etcd endpoint of {endpoints:?} answered in {PROBE_TIMEOUT:?}"
                ))
            })??;
        tracing::debug!(?endpoints, namespace, "connected to etcd");
        Ok(store)
    }

    /// The prefix in front of every key this store reads or writes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    fn entry(&self, kv: &KeyValue) -> Result<Entry> {
        Ok(Entry {
            key: self.user_key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: revision_from_etcd(kv.create_revision()),
            mod_revision: revision_from_etcd(kv.mod_revision()),
        })
    }

    fn user_key(&self, key: &[u8]) -> Result<String> {
        let key = key.strip_prefix(self.namespace.as_bytes()).ok_or_else(|| {
            Error::Backend(format!("etcd returned a key outside {:?}", self.namespace))
        })?;
        String::from_utf8(key.to_vec())
            .map_err(|e| Error::Backend(format!("etcd returned a non-UTF-8 key: {e}")))
    }

    async fn range(&self, key: &str, options: GetOptions) -> Result<etcd_client::GetResponse> {
        let mut kv = self.kv.clone();
        let key = self.full_key(key);
        with_timeout(async move { kv.get(key, Some(options)).await }).await
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let response = self.range(key, GetOptions::new()).await?;
        response.kvs().first().map(|kv| self.entry(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let response = self.range(prefix, GetOptions::new().with_prefix()).await?;
        response.kvs().iter().map(|kv| self.entry(kv)).collect()
    }

    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>> {
        let mut options = GetOptions::new().with_prefix().with_keys_only();
        match limit {
            // etcd reads a limit of 0 as "no limit".
            Some(0) => return Ok(Vec::new()),
            Some(limit) => options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX)),
            None => {}
        }
        let response = self.range(prefix, options).await?;
        response
            .kvs()
            .iter()
            .map(|kv| self.user_key(kv.key()))
            .collect()
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        check_txn_keys(&txn)?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|compare| match compare {
                Compare::Exists(key) => {
                    EtcdCompare::create_revision(self.full_key(key), CompareOp::Greater, 0)
                }
                Compare::Absent(key) => {
                    EtcdCompare::create_revision(self.full_key(key), CompareOp::Equal, 0)
                }
                Compare::ModRevision(key, revision) => EtcdCompare::mod_revision(
                    self.full_key(key),
                    CompareOp::Equal,
                    // No key has a revision this large, so the compare fails as it should.
                    i64::try_from(*revision).unwrap_or(i64::MAX),
                ),
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.full_key(key), value.clone(), None),
                Op::Delete { key } => TxnOp::delete(self.full_key(key), None),
                Op::DeletePrefix { prefix } => TxnOp::delete(
                    self.full_key(prefix),
                    Some(DeleteOptions::new().with_prefix()),
                ),
            })
            .collect();
        // Read the compared keys when the compares fail, to tell which one did.
        let reads: Vec<TxnOp> = txn
            .compares
            .iter()
            .map(|compare| {
                let key = match compare {
                    Compare::Exists(key) | Compare::Absent(key) | Compare::ModRevision(key, _) => {
                        key
                    }
                };
                TxnOp::get(self.full_key(key), Some(GetOptions::new().with_keys_only()))
            })
            .collect();
        let request = EtcdTxn::new().when(compares).and_then(ops).or_else(reads);
        let mut kv = self.kv.clone();
        let response = with_timeout(async move { kv.txn(request).await }).await?;
        let revision = response
            .header()
            .map_or(0, |h| revision_from_etcd(h.revision()));
        if response.succeeded() {
            return Ok(TxnOutcome {
                succeeded: true,
                revision,
                failed_compare: None,
            });
        }
        let found = response.op_responses().into_iter().map(|read| match read {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| {
                (
                    revision_from_etcd(kv.create_revision()),
                    revision_from_etcd(kv.mod_revision()),
                )
            }),
            _ => None,
        });
        let failed = txn
            .compares
            .iter()
            .zip(found)
            .position(|(compare, revisions)| {
                let holds = match compare {
                    Compare::Exists(_) => revisions.is_some_and(|(created, _)| created > 0),
                    Compare::Absent(_) => revisions.is_none_or(|(created, _)| created == 0),
                    Compare::ModRevision(_, expected) => {
                        revisions.map_or(0, |(_, modified)| modified) == *expected
                    }
                };
                !holds
            });
        if failed.is_none() {
            tracing::warn!("etcd refused a transaction whose compares all hold on re-reading");
        }
        Ok(TxnOutcome {
            succeeded: false,
            revision,
            failed_compare: Some(failed.unwrap_or(0)),
        })
    }

    async fn revision(&self) -> Result<u64> {
        // Any key will do; etcd refuses an empty one, which an empty namespace would give.
        let probe = if self.namespace.is_empty() { "\0" } else { "" };
        let response = self
            .range(probe, GetOptions::new().with_count_only())
            .await?;
        response
            .header()
            .map(|header| revision_from_etcd(header.revision()))
            .ok_or_else(|| Error::Backend("etcd response without header".to_owned()))
    }

    async fn watch(&self, prefix: &str, after_revision: Option<u64>) -> Result<WatchStream> {
        // "From now" is pinned to the current revision so that every write made after this call
        // returns is seen, whenever etcd gets round to registering the watcher.
        let after = match after_revision {
            Some(after) => after,
            None => self.revision().await?,
        };
        let start = i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut client = self.watch.clone();
        let key = self.full_key(prefix);
        let stream = with_timeout(async move { client.watch(key, Some(options)).await }).await?;
        let watch = EtcdWatch {
            stream,
            store: self.clone(),
            after,
            pending: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watch,
            EtcdWatch::next_item,
        )))
    }
}

/// One etcd watch being turned into a [`WatchStream`].
struct EtcdWatch {
    /// Also owns the request side: dropping it cancels the watch on the server.
    stream: etcd_client::WatchStream,
    store: EtcdStore,
    after: u64,
    pending: VecDeque<WatchEvent>,
    finished: bool,
}

impl EtcdWatch {
    /// The stream step: hand out a pending event, or wait for etcd's next response.
    async fn next_item(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            let failure = match self.stream.message().await {
                Ok(Some(response)) if response.compact_revision() > 0 => Error::Compacted {
                    requested: self.after,
                    compacted: revision_from_etcd(response.compact_revision()),
                },
                Ok(Some(response)) if response.canceled() => Error::Backend(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                )),
                Ok(Some(response)) => {
                    for event in response.events() {
                        match self.convert(event) {
                            Ok(Some(event)) => self.pending.push_back(event),
                            Ok(None) => {}
                            Err(error) => {
                                self.finished = true;
                                return Some((Err(error), self));
                            }
                        }
                    }
                    continue;
                }
                // A stream that just stops would look like "no more changes"; say it broke.
                Ok(None) => Error::Backend("etcd closed the watch".to_owned()),
                Err(error) => etcd_error(error),
            };
            self.finished = true;
            return Some((Err(failure), self));
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Option<WatchEvent>> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        Ok(Some(match event.event_type() {
            EventType::Put => WatchEvent::Put(self.store.entry(kv)?),
            EventType::Delete => WatchEvent::Delete {
                key: self.store.user_key(kv.key())?,
                mod_revision: revision_from_etcd(kv.mod_revision()),
            },
        }))
    }
}

/// Runs one etcd request, failing it after [`REQUEST_TIMEOUT`].
async fn with_timeout<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(etcd_error),
        Err(_) => Err(Error::Backend(format!(
            "etcd request timed out after {REQUEST_TIMEOUT:?}"
        ))),
    }
}

/// etcd revisions are never negative; a corrupt one reads as 0 rather than wrapping around.
fn revision_from_etcd(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn etcd_error(error: impl Display) -> Error {
    Error::Backend(format!("etcd: {error}"))
}
