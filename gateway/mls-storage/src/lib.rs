//! openmls storage over rows, with change tracking.
//!
//! openmls persists a group through its `StorageProvider` (a member's `MlsGroup`) or
//! `PublicStorageProvider` (a hub's `PublicGroup`) trait: one call per piece of state (tree,
//! group context, secrets, queued proposals, keys). [`KvStorage`] implements the whole trait
//! over an in-memory map of rows and records every row it writes or deletes since the last
//! [`KvStorage::take_changes`]. The gateway loads the rows of one group from its store, lets
//! openmls work on them, and puts exactly the changed rows into the same storage transaction as
//! the rest of that step: a commit writes what openmls writes, not a copy of the whole group.
//!
//! Rows are laid out exactly as openmls' reference `MemoryStorage` lays them out
//! (`label ‖ json(key) ‖ version` → `json(value)`), so a state written by that provider (and by
//! earlier releases of this gateway, which kept it) is read as is, and the format is tied to
//! openmls' `CURRENT_VERSION` as openmls intends. These rows change on commits and proposals
//! only, never per application message.
//!
//! What it does **not** do: no IO and no transactions of its own; the caller commits the
//! changes (or drops them, and the rows, when the step fails).
//!
//! ```
//! use mimi_mls_storage::KvStorage;
//!
//! let s = KvStorage::default();
//! assert!(s.take_changes().is_empty());
//! let copy = KvStorage::from_rows(s.rows());
//! assert!(copy.rows().is_empty());
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use openmls_traits::storage::CURRENT_VERSION;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod provider;

/// A row that could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A value openmls handed over does not encode (a bug in openmls or here).
    #[error("cannot encode the {0} row")]
    Encode(&'static str),
    /// A stored row does not decode: the store is corrupt or from another openmls version.
    #[error("the stored {0} row does not decode (corrupt store or another openmls version)")]
    Decode(&'static str),
}

/// One changed row: its key and new value (`None`: deleted).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Default)]
struct Inner {
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// openmls storage over an in-memory map of rows that records what changes.
#[derive(Debug, Default)]
pub struct KvStorage {
    inner: Mutex<Inner>,
}

const KEY_PACKAGE: &[u8] = b"KeyPackage";
const PSK: &[u8] = b"Psk";
const ENCRYPTION_KEY_PAIR: &[u8] = b"EncryptionKeyPair";
const SIGNATURE_KEY_PAIR: &[u8] = b"SignatureKeyPair";
const EPOCH_KEY_PAIRS: &[u8] = b"EpochKeyPairs";
const TREE: &[u8] = b"Tree";
const GROUP_CONTEXT: &[u8] = b"GroupContext";
const APPLICATION_EXPORT_TREE: &[u8] = b"ApplicationExportTree";
const INTERIM_TRANSCRIPT_HASH: &[u8] = b"InterimTranscriptHash";
const CONFIRMATION_TAG: &[u8] = b"ConfirmationTag";
const JOIN_CONFIG: &[u8] = b"MlsGroupJoinConfig";
const OWN_LEAF_NODES: &[u8] = b"OwnLeafNodes";
const GROUP_STATE: &[u8] = b"GroupState";
const QUEUED_PROPOSAL: &[u8] = b"QueuedProposal";
const PROPOSAL_QUEUE_REFS: &[u8] = b"ProposalQueueRefs";
const OWN_LEAF_NODE_INDEX: &[u8] = b"OwnLeafNodeIndex";
const EPOCH_SECRETS: &[u8] = b"EpochSecrets";
const RESUMPTION_PSK_STORE: &[u8] = b"ResumptionPsk";
const MESSAGE_SECRETS: &[u8] = b"MessageSecrets";

fn encode<T: Serialize + ?Sized>(v: &T, what: &'static str) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|_| StorageError::Encode(what))
}

fn row_key_raw(label: &'static [u8], k: &[u8]) -> Vec<u8> {
    let mut key = label.to_vec();
    key.extend_from_slice(k);
    key.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    key
}

fn row_key<K: Serialize + ?Sized>(label: &'static [u8], k: &K) -> Result<Vec<u8>, StorageError> {
    Ok(row_key_raw(label, &encode(k, "key")?))
}

impl KvStorage {
    /// Storage holding `rows` (as [`KvStorage::rows`] returned them), with no changes recorded.
    pub fn from_rows(rows: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rows: rows.into_iter().collect(),
                changes: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every operation is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every row.
    pub fn rows(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.lock()
            .rows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The rows written or deleted since the last call, in key order; clears the record.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut self.lock().changes)
            .into_iter()
            .collect()
    }

    /// Forgets the recorded changes and undoes them (the step that made them failed).
    pub fn discard_changes(&self, committed: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let mut g = self.lock();
        g.changes.clear();
        g.rows = committed.into_iter().collect();
    }

    /// Total bytes of keys and values held (for cache accounting).
    pub fn size(&self) -> usize {
        self.lock()
            .rows
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    fn set(&self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut g = self.lock();
        match &value {
            Some(v) => {
                g.rows.insert(key.clone(), v.clone());
            }
            None => {
                g.rows.remove(&key);
            }
        }
        g.changes.insert(key, value);
    }

    fn put<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &'static [u8],
        k: &K,
        v: &V,
    ) -> Result<(), StorageError> {
        let value = encode(v, "value")?;
        self.set(row_key(label, k)?, Some(value));
        Ok(())
    }

    fn get<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        label: &'static [u8],
        k: &K,
    ) -> Result<Option<V>, StorageError> {
        let key = row_key(label, k)?;
        let g = self.lock();
        g.rows
            .get(&key)
            .map(|b| serde_json::from_slice(b).map_err(|_| StorageError::Decode(label_name(label))))
            .transpose()
    }

    fn del<K: Serialize + ?Sized>(&self, label: &'static [u8], k: &K) -> Result<(), StorageError> {
        self.set(row_key(label, k)?, None);
        Ok(())
    }

    /// A list row (a JSON vector of encoded items), keyed by already-encoded key bytes.
    fn list(&self, label: &'static [u8], key: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let g = self.lock();
        g.rows
            .get(&row_key_raw(label, key))
            .map(|b| serde_json::from_slice(b).map_err(|_| StorageError::Decode(label_name(label))))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn put_list(
        &self,
        label: &'static [u8],
        key: &[u8],
        l: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        let v = encode(l, "list")?;
        self.set(row_key_raw(label, key), Some(v));
        Ok(())
    }

    fn del_raw(&self, label: &'static [u8], key: &[u8]) {
        self.set(row_key_raw(label, key), None);
    }

    fn list_items<V: DeserializeOwned>(
        &self,
        label: &'static [u8],
        key: &[u8],
    ) -> Result<Vec<V>, StorageError> {
        self.list(label, key)?
            .iter()
            .map(|b| serde_json::from_slice(b).map_err(|_| StorageError::Decode(label_name(label))))
            .collect()
    }

    fn list_push<V: Serialize>(
        &self,
        label: &'static [u8],
        key: &[u8],
        item: &V,
    ) -> Result<(), StorageError> {
        let mut l = self.list(label, key)?;
        l.push(encode(item, "list item")?);
        self.put_list(label, key, &l)
    }

    fn list_remove<V: Serialize>(
        &self,
        label: &'static [u8],
        key: &[u8],
        item: &V,
    ) -> Result<(), StorageError> {
        let mut l = self.list(label, key)?;
        let item = encode(item, "list item")?;
        if let Some(i) = l.iter().position(|x| *x == item) {
            l.remove(i);
        }
        self.put_list(label, key, &l)
    }
}

fn label_name(label: &[u8]) -> &'static str {
    match label {
        KEY_PACKAGE => "KeyPackage",
        PSK => "Psk",
        ENCRYPTION_KEY_PAIR => "EncryptionKeyPair",
        SIGNATURE_KEY_PAIR => "SignatureKeyPair",
        EPOCH_KEY_PAIRS => "EpochKeyPairs",
        TREE => "Tree",
        GROUP_CONTEXT => "GroupContext",
        APPLICATION_EXPORT_TREE => "ApplicationExportTree",
        INTERIM_TRANSCRIPT_HASH => "InterimTranscriptHash",
        CONFIRMATION_TAG => "ConfirmationTag",
        JOIN_CONFIG => "MlsGroupJoinConfig",
        OWN_LEAF_NODES => "OwnLeafNodes",
        GROUP_STATE => "GroupState",
        QUEUED_PROPOSAL => "QueuedProposal",
        PROPOSAL_QUEUE_REFS => "ProposalQueueRefs",
        OWN_LEAF_NODE_INDEX => "OwnLeafNodeIndex",
        EPOCH_SECRETS => "EpochSecrets",
        RESUMPTION_PSK_STORE => "ResumptionPsk",
        MESSAGE_SECRETS => "MessageSecrets",
        _ => "openmls",
    }
}

fn gid<G: Serialize>(g: &G) -> Result<Vec<u8>, StorageError> {
    encode(g, "group id")
}

fn epoch_key<G: Serialize, E: Serialize>(g: &G, e: &E, leaf: u32) -> Result<Vec<u8>, StorageError> {
    let mut k = encode(g, "group id")?;
    k.extend_from_slice(&encode(e, "epoch")?);
    k.extend_from_slice(&encode(&leaf, "leaf index")?);
    Ok(k)
}
