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

use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

type R<T> = Result<T, StorageError>;

impl StorageProvider<CURRENT_VERSION> for KvStorage {
    type Error = StorageError;

    fn write_mls_join_config<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        config: &MlsGroupJoinConfig,
    ) -> R<()> {
        self.put(JOIN_CONFIG, group_id, config)
    }

    fn append_own_leaf_node<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        LeafNode: traits::LeafNode<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        leaf_node: &LeafNode,
    ) -> R<()> {
        self.list_push(OWN_LEAF_NODES, &gid(group_id)?, leaf_node)
    }

    fn queue_proposal<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
        proposal: &QueuedProposal,
    ) -> R<()> {
        self.put(QUEUED_PROPOSAL, &(group_id, proposal_ref), proposal)?;
        self.list_push(PROPOSAL_QUEUE_REFS, &gid(group_id)?, proposal_ref)
    }

    fn write_tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        TreeSync: traits::TreeSync<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        tree: &TreeSync,
    ) -> R<()> {
        self.put(TREE, group_id, tree)
    }

    fn write_interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        interim_transcript_hash: &InterimTranscriptHash,
    ) -> R<()> {
        self.put(INTERIM_TRANSCRIPT_HASH, group_id, interim_transcript_hash)
    }

    fn write_context<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupContext: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        group_context: &GroupContext,
    ) -> R<()> {
        self.put(GROUP_CONTEXT, group_id, group_context)
    }

    fn write_confirmation_tag<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ConfirmationTag: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        confirmation_tag: &ConfirmationTag,
    ) -> R<()> {
        self.put(CONFIRMATION_TAG, group_id, confirmation_tag)
    }

    fn write_group_state<
        GroupState: traits::GroupState<CURRENT_VERSION>,
        GroupId: traits::GroupId<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        group_state: &GroupState,
    ) -> R<()> {
        self.put(GROUP_STATE, group_id, group_state)
    }

    fn write_message_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MessageSecrets: traits::MessageSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        message_secrets: &MessageSecrets,
    ) -> R<()> {
        self.put(MESSAGE_SECRETS, group_id, message_secrets)
    }

    fn write_resumption_psk_store<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: traits::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        resumption_psk_store: &ResumptionPskStore,
    ) -> R<()> {
        self.put(RESUMPTION_PSK_STORE, group_id, resumption_psk_store)
    }

    fn write_own_leaf_index<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        LeafNodeIndex: traits::LeafNodeIndex<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        own_leaf_index: &LeafNodeIndex,
    ) -> R<()> {
        self.put(OWN_LEAF_NODE_INDEX, group_id, own_leaf_index)
    }

    fn write_group_epoch_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: traits::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        group_epoch_secrets: &GroupEpochSecrets,
    ) -> R<()> {
        self.put(EPOCH_SECRETS, group_id, group_epoch_secrets)
    }

    fn write_application_export_tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ApplicationExportTree: traits::ApplicationExportTree<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        application_export_tree: &ApplicationExportTree,
    ) -> R<()> {
        self.put(APPLICATION_EXPORT_TREE, group_id, application_export_tree)
    }

    fn write_signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
        signature_key_pair: &SignatureKeyPair,
    ) -> R<()> {
        self.put(SIGNATURE_KEY_PAIR, public_key, signature_key_pair)
    }

    fn write_encryption_key_pair<
        EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
        key_pair: &HpkeKeyPair,
    ) -> R<()> {
        self.put(ENCRYPTION_KEY_PAIR, public_key, key_pair)
    }

    fn write_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
        key_pairs: &[HpkeKeyPair],
    ) -> R<()> {
        let v = encode(key_pairs, "epoch key pairs")?;
        self.set(
            row_key_raw(EPOCH_KEY_PAIRS, &epoch_key(group_id, epoch, leaf_index)?),
            Some(v),
        );
        Ok(())
    }

    fn write_key_package<
        HashReference: traits::HashReference<CURRENT_VERSION>,
        KeyPackage: traits::KeyPackage<CURRENT_VERSION>,
    >(
        &self,
        hash_ref: &HashReference,
        key_package: &KeyPackage,
    ) -> R<()> {
        self.put(KEY_PACKAGE, hash_ref, key_package)
    }

    fn write_psk<
        PskId: traits::PskId<CURRENT_VERSION>,
        PskBundle: traits::PskBundle<CURRENT_VERSION>,
    >(
        &self,
        psk_id: &PskId,
        psk: &PskBundle,
    ) -> R<()> {
        self.put(PSK, psk_id, psk)
    }

    fn mls_group_join_config<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<MlsGroupJoinConfig>> {
        self.get(JOIN_CONFIG, group_id)
    }

    fn own_leaf_nodes<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        LeafNode: traits::LeafNode<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Vec<LeafNode>> {
        self.list_items(OWN_LEAF_NODES, &gid(group_id)?)
    }

    fn queued_proposal_refs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Vec<ProposalRef>> {
        self.list_items(PROPOSAL_QUEUE_REFS, &gid(group_id)?)
    }

    fn queued_proposals<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
        QueuedProposal: traits::QueuedProposal<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Vec<(ProposalRef, QueuedProposal)>> {
        let refs: Vec<ProposalRef> = self.list_items(PROPOSAL_QUEUE_REFS, &gid(group_id)?)?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let p = self
                .get(QUEUED_PROPOSAL, &(group_id, &r))?
                .ok_or(StorageError::Decode("QueuedProposal"))?;
            out.push((r, p));
        }
        Ok(out)
    }

    fn tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        TreeSync: traits::TreeSync<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<TreeSync>> {
        self.get(TREE, group_id)
    }

    fn group_context<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupContext: traits::GroupContext<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<GroupContext>> {
        self.get(GROUP_CONTEXT, group_id)
    }

    fn interim_transcript_hash<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        InterimTranscriptHash: traits::InterimTranscriptHash<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<InterimTranscriptHash>> {
        self.get(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn confirmation_tag<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ConfirmationTag: traits::ConfirmationTag<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<ConfirmationTag>> {
        self.get(CONFIRMATION_TAG, group_id)
    }

    fn group_state<
        GroupState: traits::GroupState<CURRENT_VERSION>,
        GroupId: traits::GroupId<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<GroupState>> {
        self.get(GROUP_STATE, group_id)
    }

    fn message_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        MessageSecrets: traits::MessageSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<MessageSecrets>> {
        self.get(MESSAGE_SECRETS, group_id)
    }

    fn resumption_psk_store<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ResumptionPskStore: traits::ResumptionPskStore<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<ResumptionPskStore>> {
        self.get(RESUMPTION_PSK_STORE, group_id)
    }

    fn own_leaf_index<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        LeafNodeIndex: traits::LeafNodeIndex<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<LeafNodeIndex>> {
        self.get(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn group_epoch_secrets<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        GroupEpochSecrets: traits::GroupEpochSecrets<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<GroupEpochSecrets>> {
        self.get(EPOCH_SECRETS, group_id)
    }

    fn signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>,
        SignatureKeyPair: traits::SignatureKeyPair<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
    ) -> R<Option<SignatureKeyPair>> {
        self.get(SIGNATURE_KEY_PAIR, public_key)
    }

    fn encryption_key_pair<
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
        EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>,
    >(
        &self,
        public_key: &EncryptionKey,
    ) -> R<Option<HpkeKeyPair>> {
        self.get(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
        HpkeKeyPair: traits::HpkeKeyPair<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> R<Vec<HpkeKeyPair>> {
        let key = row_key_raw(EPOCH_KEY_PAIRS, &epoch_key(group_id, epoch, leaf_index)?);
        let g = self.lock();
        g.rows
            .get(&key)
            .map(|b| serde_json::from_slice(b).map_err(|_| StorageError::Decode("EpochKeyPairs")))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    fn key_package<
        KeyPackageRef: traits::HashReference<CURRENT_VERSION>,
        KeyPackage: traits::KeyPackage<CURRENT_VERSION>,
    >(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> R<Option<KeyPackage>> {
        self.get(KEY_PACKAGE, hash_ref)
    }

    fn psk<PskBundle: traits::PskBundle<CURRENT_VERSION>, PskId: traits::PskId<CURRENT_VERSION>>(
        &self,
        psk_id: &PskId,
    ) -> R<Option<PskBundle>> {
        self.get(PSK, psk_id)
    }

    fn application_export_tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ApplicationExportTree: traits::ApplicationExportTree<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<Option<ApplicationExportTree>> {
        self.get(APPLICATION_EXPORT_TREE, group_id)
    }

    fn remove_proposal<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
    ) -> R<()> {
        self.list_remove(PROPOSAL_QUEUE_REFS, &gid(group_id)?, proposal_ref)?;
        self.del(QUEUED_PROPOSAL, &(group_id, proposal_ref))
    }

    fn delete_own_leaf_nodes<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del_raw(OWN_LEAF_NODES, &gid(group_id)?);
        Ok(())
    }

    fn delete_group_config<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(JOIN_CONFIG, group_id)
    }

    fn delete_tree<GroupId: traits::GroupId<CURRENT_VERSION>>(&self, group_id: &GroupId) -> R<()> {
        self.del(TREE, group_id)
    }

    fn delete_confirmation_tag<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(CONFIRMATION_TAG, group_id)
    }

    fn delete_group_state<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(GROUP_STATE, group_id)
    }

    fn delete_context<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(GROUP_CONTEXT, group_id)
    }

    fn delete_interim_transcript_hash<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn delete_message_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(MESSAGE_SECRETS, group_id)
    }

    fn delete_all_resumption_psk_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(RESUMPTION_PSK_STORE, group_id)
    }

    fn delete_own_leaf_index<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn delete_group_epoch_secrets<GroupId: traits::GroupId<CURRENT_VERSION>>(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(EPOCH_SECRETS, group_id)
    }

    fn clear_proposal_queue<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ProposalRef: traits::ProposalRef<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        let refs: Vec<ProposalRef> = self.list_items(PROPOSAL_QUEUE_REFS, &gid(group_id)?)?;
        for r in &refs {
            self.del(QUEUED_PROPOSAL, &(group_id, r))?;
        }
        self.del_raw(PROPOSAL_QUEUE_REFS, &gid(group_id)?);
        Ok(())
    }

    fn delete_signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<CURRENT_VERSION>,
    >(
        &self,
        public_key: &SignaturePublicKey,
    ) -> R<()> {
        self.del(SIGNATURE_KEY_PAIR, public_key)
    }

    fn delete_encryption_key_pair<EncryptionKey: traits::EncryptionKey<CURRENT_VERSION>>(
        &self,
        public_key: &EncryptionKey,
    ) -> R<()> {
        self.del(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn delete_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        EpochKey: traits::EpochKey<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> R<()> {
        self.del_raw(EPOCH_KEY_PAIRS, &epoch_key(group_id, epoch, leaf_index)?);
        Ok(())
    }

    fn delete_key_package<KeyPackageRef: traits::HashReference<CURRENT_VERSION>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> R<()> {
        self.del(KEY_PACKAGE, hash_ref)
    }

    fn delete_psk<PskKey: traits::PskId<CURRENT_VERSION>>(&self, psk_id: &PskKey) -> R<()> {
        self.del(PSK, psk_id)
    }

    fn delete_application_export_tree<
        GroupId: traits::GroupId<CURRENT_VERSION>,
        ApplicationExportTree: traits::ApplicationExportTree<CURRENT_VERSION>,
    >(
        &self,
        group_id: &GroupId,
    ) -> R<()> {
        self.del(APPLICATION_EXPORT_TREE, group_id)
    }
}
