//! Durable key-value storage for the hub: the [`Store`] trait and its backends.
//!
//! Every backend offers the same small contract, modelled on etcd v3 so that the etcd backend is a
//! thin adapter and the embedded `redb` backend can imitate it exactly:
//! - keys are UTF-8 strings, ordered bytewise; values are opaque bytes;
//! - every successful write advances one store-wide `revision` (a `u64`, starting at 1);
//!   each key remembers the revision that created it and the one that last modified it;
//! - [`Store::txn`] evaluates all [`Compare`]s atomically and, only if all hold, applies every
//!   [`Op`] in one write at one new revision; otherwise nothing is written;
//! - a call that returns `Ok` after a write means the write is durable (fsynced / committed by
//!   the etcd quorum);
//! - [`Store::watch`] streams every change under a prefix, in revision order, starting after a
//!   given revision (or from now).
//!
//! Backends: [`RedbStore`] (embedded, one file in the data directory; the default) and
//! [`EtcdStore`] (an etcd v3 cluster, keys under a namespace prefix). [`open`] picks one from an
//! address such as `etcd://h1:2379,h2:2379`.

pub mod attachment;
pub mod repository;
pub mod seal;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

mod etcd_store;
mod redb_store;

pub use etcd_store::{DEFAULT_NAMESPACE, EtcdStore};
pub use redb_store::{DEFAULT_CACHE_BYTES, DEFAULT_CHANGE_LOG_LIMIT, RedbOptions, RedbStore};

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, without any backend namespace prefix.
    pub key: String,
    /// The stored bytes (empty in [`Store::list_keys`]-style key-only reads).
    pub value: Vec<u8>,
    /// Store revision of the write that created this key (since its last deletion).
    pub create_revision: u64,
    /// Store revision of the write that last modified this key.
    pub mod_revision: u64,
}

/// A condition checked inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key exists.
    Exists(String),
    /// The key does not exist.
    Absent(String),
    /// The key's `mod_revision` equals the given one (0 means: the key does not exist).
    ModRevision(String, u64),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite one key.
    Put { key: String, value: Vec<u8> },
    /// Delete one key (a no-op when it does not exist).
    Delete { key: String },
    /// Delete every key starting with the prefix.
    DeletePrefix { prefix: String },
}

/// An atomic compare-then-write.
///
/// As in etcd, one transaction may not put the same key twice, nor put a key that one of its
/// deletes covers: backends reject such a transaction with [`Error::Backend`] before writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions that must all hold for `ops` to be applied.
    pub compares: Vec<Compare>,
    /// Writes applied, in order, at one new revision when every compare holds.
    pub ops: Vec<Op>,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether all compares held (and so the ops were applied).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it did not succeed or wrote nothing).
    pub revision: u64,
    /// Index (into `compares`) of the first compare that failed, when `succeeded` is false.
    pub failed_compare: Option<usize>,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or overwritten; the entry is its new state.
    Put(Entry),
    /// A deletion; `mod_revision` is the revision of the deleting write.
    Delete { key: String, mod_revision: u64 },
}

/// The events of one watch; an `Err` item (e.g. [`Error::Compacted`] when the watcher fell too
/// far behind) is always the last one, after which the client should re-list and watch again.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed (I/O, connection, corrupt data, rejected request, store closed).
    #[error("store backend error: {0}")]
    Backend(String),
    /// The history needed by a watch is gone; re-list, then watch after the listed revision.
    #[error("watch from revision {requested} is no longer available (compacted up to {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// [`open`] was given a malformed `etcd://` address.
    #[error("invalid store address {0:?}: expected etcd://host:port[,host:port...]")]
    BadAddress(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage contract every backend implements (see the module docs for the semantics).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current entry, or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// All keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>>;
    /// Keys only (values left empty), in key order; cheaper than `list` for existence checks.
    async fn list_keys(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<String>>;
    /// Runs one atomic compare-then-write (see [`Txn`]); `Ok` means applied and durable, or
    /// refused because a compare did not hold (see [`TxnOutcome::succeeded`]).
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;
    /// The current store revision.
    async fn revision(&self) -> Result<u64>;
    /// Changes under `prefix` with revision > `after_revision` (or from now when `None`).
    ///
    /// When that history is gone, [`Error::Compacted`] comes either from this call or as the
    /// stream's first item, depending on the backend.
    async fn watch(&self, prefix: &str, after_revision: Option<u64>) -> Result<WatchStream>;

    /// Creates or overwrites one key; returns the revision of the write.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        let out = self
            .txn(Txn {
                compares: vec![],
                ops: vec![Op::Put {
                    key: key.to_owned(),
                    value,
                }],
            })
            .await?;
        Ok(out.revision)
    }

    /// Deletes one key; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool> {
        let out = self
            .txn(Txn {
                compares: vec![Compare::Exists(key.to_owned())],
                ops: vec![Op::Delete {
                    key: key.to_owned(),
                }],
            })
            .await?;
        Ok(out.succeeded)
    }
}

/// Opens the store named by `address`.
///
/// `etcd://host:port[,host:port...]` connects to an etcd cluster (namespace
/// [`DEFAULT_NAMESPACE`]); anything else, including an empty address, opens (or creates) the
/// embedded [`RedbStore`] in `data_dir`.
pub async fn open(address: &str, data_dir: &Path) -> Result<Arc<dyn Store>> {
    if let Some(endpoints) = parse_etcd_address(address)? {
        tracing::info!(?endpoints, "using the etcd store");
        return Ok(Arc::new(EtcdStore::connect(&endpoints).await?));
    }
    let dir = data_dir.to_owned();
    tracing::info!(dir = %dir.display(), "using the embedded redb store");
    let store = tokio::task::spawn_blocking(move || RedbStore::open(&dir))
        .await
        .map_err(|e| Error::Backend(format!("opening the redb store panicked: {e}")))??;
    Ok(Arc::new(store))
}

/// Splits `etcd://h1:2379,h2:2379` into endpoint URLs (`http://h1:2379`, ...).
///
/// Returns `Ok(None)` when `address` is not an `etcd://` address, and [`Error::BadAddress`] when
/// it is one but an endpoint is not `host:port`.
pub fn parse_etcd_address(address: &str) -> Result<Option<Vec<String>>> {
    let Some(list) = address.trim().strip_prefix("etcd://") else {
        return Ok(None);
    };
    let bad = || Error::BadAddress(address.to_owned());
    let endpoints = list
        .split(',')
        .map(|endpoint| {
            let endpoint = endpoint.trim();
            let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
            let host_ok = !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@');
            if !host_ok || !port.parse::<u16>().is_ok_and(|p| p != 0) {
                return Err(bad());
            }
            Ok(format!("http://{endpoint}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(endpoints))
}

/// Rejects a transaction that etcd would refuse as "duplicate key": two puts of one key, or a put
/// of a key that a delete in the same transaction covers. Both backends apply this rule so that
/// code tested against one behaves the same on the other.
pub(crate) fn check_txn_keys(txn: &Txn) -> Result<()> {
    let mut put_keys: Vec<&str> = Vec::new();
    for op in &txn.ops {
        if let Op::Put { key, .. } = op {
            if put_keys.contains(&key.as_str()) {
                return Err(duplicate_key(key));
            }
            put_keys.push(key);
        }
    }
    for op in &txn.ops {
        let covered = |key: &str| match op {
            Op::Put { .. } => false,
            Op::Delete { key: deleted } => deleted == key,
            Op::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
        };
        if let Some(key) = put_keys.iter().find(|key| covered(key)) {
            return Err(duplicate_key(key));
        }
    }
    Ok(())
}

fn duplicate_key(key: &str) -> Error {
    Error::Backend(format!("transaction writes key {key:?} more than once"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn etcd_addresses_become_http_endpoints() {
        let endpoints = parse_etcd_address("etcd://h1:2379, 10.0.0.2:2380").unwrap();
        assert_eq!(
            endpoints,
            Some(vec![
                "http://h1:2379".to_owned(),
                "http://10.0.0.2:2380".to_owned()
            ])
        );
        let ipv6 = parse_etcd_address("etcd://[::1]:2379").unwrap();
        assert_eq!(ipv6, Some(vec!["http://[::1]:2379".to_owned()]));
    }

    #[test]
    fn other_addresses_mean_the_embedded_store() {
        for address in ["", "redb", "/var/lib/emco", "mongodb://x:27017"] {
            assert_eq!(parse_etcd_address(address).unwrap(), None, "{address}");
        }
    }

    #[test]
    fn malformed_etcd_addresses_are_rejected() {
        for address in [
            "etcd://",
            "etcd://host",
            "etcd://host:",
            "etcd://:2379",
            "etcd://host:port",
            "etcd://host:0",
            "etcd://host:70000",
            "etcd://h1:2379,",
            "etcd://h1:2379,,h2:2379",
            "etcd://user@h1:2379",
            "etcd://h1:2379/path",
        ] {
            let err = parse_etcd_address(address).unwrap_err();
            assert!(
                matches!(err, Error::BadAddress(ref a) if a == address),
                "{address}: {err}"
            );
        }
    }

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.to_owned(),
            value: vec![],
        }
    }

    #[test]
    fn txn_key_rule_matches_etcd() {
        let txn = |ops: Vec<Op>| Txn {
            compares: vec![],
            ops,
        };
        assert!(check_txn_keys(&txn(vec![put("a"), put("b")])).is_ok());
        assert!(check_txn_keys(&txn(vec![put("a"), put("a")])).is_err());
        let delete = |key: &str| Op::Delete {
            key: key.to_owned(),
        };
        assert!(check_txn_keys(&txn(vec![delete("a"), delete("a")])).is_ok());
        assert!(check_txn_keys(&txn(vec![delete("a"), put("a")])).is_err());
        assert!(check_txn_keys(&txn(vec![put("a"), delete("a")])).is_err());
        let delete_prefix = |prefix: &str| Op::DeletePrefix {
            prefix: prefix.to_owned(),
        };
        assert!(check_txn_keys(&txn(vec![delete_prefix("p/"), put("p/x")])).is_err());
        assert!(check_txn_keys(&txn(vec![delete_prefix("p/"), put("q/x")])).is_ok());
    }
}
