//! A whole group lifecycle on `KvStorage`, persisting only the recorded changes after every
//! operation and reloading each party from those rows alone: members (`MlsGroup`) and a hub
//! (`PublicGroup`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use mimi_mls_storage::KvStorage;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

const CS: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A party whose durable state is only what `take_changes` reported.
struct Party {
    crypto: RustCrypto,
    storage: KvStorage,
    disk: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl OpenMlsProvider for Party {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = KvStorage;
    fn storage(&self) -> &KvStorage {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

impl Party {
    fn new() -> Self {
        Self {
            crypto: RustCrypto::default(),
            storage: KvStorage::default(),
            disk: BTreeMap::new(),
        }
    }

    /// Commits the recorded changes to `disk`, then reloads the storage from `disk` only.
    fn persist_and_reload(&mut self) {
        for (k, v) in self.storage.take_changes() {
            match v {
                Some(v) => self.disk.insert(k, v),
                None => self.disk.remove(&k),
            };
        }
        self.storage = KvStorage::from_rows(self.disk.clone());
    }
}

fn identity(name: &str, p: &Party) -> (CredentialWithKey, SignatureKeyPair) {
    let signer = SignatureKeyPair::new(CS.signature_algorithm()).unwrap();
    signer.store(p.storage()).unwrap();
    let cwk = CredentialWithKey {
        credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    };
    (cwk, signer)
}

fn process(p: &Party, g: &mut MlsGroup, bytes: &[u8]) -> ProcessedMessageContent {
    let m = MlsMessageIn::tls_deserialize_exact(bytes).unwrap();
    let pm = m.try_into_protocol_message().unwrap();
    g.process_message(p, pm).unwrap().into_content()
}

#[test]
fn members_and_hub_survive_reloads_from_changed_rows_only() {
    let mut alice = Party::new();
    let mut bob = Party::new();
    let mut hub = Party::new();
    let (a_cwk, a_signer) = identity("alice", &alice);
    let (b_cwk, b_signer) = identity("bob", &bob);
    let cfg = MlsGroupCreateConfig::builder()
        .ciphersuite(CS)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    let ag = MlsGroup::new(&alice, &a_signer, &cfg, a_cwk).unwrap();
    let gid = ag.group_id().clone();
    alice.persist_and_reload();
    let mut ag = MlsGroup::load(alice.storage(), &gid).unwrap().unwrap();

    // The hub follows from Alice's GroupInfo and tree.
    let gi = ag
        .export_group_info(alice.crypto(), &a_signer, false)
        .unwrap();
    let MlsMessageBodyIn::GroupInfo(vgi) =
        MlsMessageIn::tls_deserialize_exact(gi.tls_serialize_detached().unwrap())
            .unwrap()
            .extract()
    else {
        panic!("not a GroupInfo")
    };
    let tree: RatchetTreeIn = ag.export_ratchet_tree().into();
    PublicGroup::from_external(hub.crypto(), hub.storage(), tree, vgi, ProposalStore::new())
        .unwrap();
    hub.persist_and_reload();
    let mut hg = PublicGroup::load(hub.storage(), &gid).unwrap().unwrap();

    // Alice adds Bob.
    let kp = KeyPackage::builder()
        .build(CS, &bob, &b_signer, b_cwk)
        .unwrap();
    bob.persist_and_reload();
    let (commit, welcome, _) = ag
        .add_members(&alice, &a_signer, &[kp.key_package().clone()])
        .unwrap();
    let commit_bytes = commit.tls_serialize_detached().unwrap();
    // The hub validates and merges the commit, then reloads.
    let pm = MlsMessageIn::tls_deserialize_exact(&commit_bytes)
        .unwrap()
        .try_into_protocol_message()
        .unwrap();
    let processed = hg.process_message(hub.crypto(), pm).unwrap();
    let ProcessedMessageContent::StagedCommitMessage(sc) = processed.into_content() else {
        panic!("not a commit")
    };
    hg.merge_commit(hub.storage(), *sc).unwrap();
    let changed = hub.storage.take_changes();
    assert!(!changed.is_empty(), "a merge writes rows");
    for (k, v) in changed {
        match v {
            Some(v) => hub.disk.insert(k, v),
            None => hub.disk.remove(&k),
        };
    }
    hub.storage = KvStorage::from_rows(hub.disk.clone());
    let hg = PublicGroup::load(hub.storage(), &gid).unwrap().unwrap();
    assert_eq!(hg.members().count(), 2);

    ag.merge_pending_commit(&alice).unwrap();
    alice.persist_and_reload();
    let mut ag = MlsGroup::load(alice.storage(), &gid).unwrap().unwrap();
    let welcome =
        MlsMessageIn::tls_deserialize_exact(welcome.tls_serialize_detached().unwrap()).unwrap();
    let MlsMessageBodyIn::Welcome(w) = welcome.extract() else {
        panic!("not a Welcome")
    };
    let join = MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    StagedWelcome::new_from_welcome(&bob, &join, w, None)
        .unwrap()
        .into_group(&bob)
        .unwrap();
    bob.persist_and_reload();
    let mut bg = MlsGroup::load(bob.storage(), &gid).unwrap().unwrap();

    // Messages both ways, with reloads between every step (ratchet state must persist).
    for i in 0..5 {
        let m = ag
            .create_message(&alice, &a_signer, format!("hi {i}").as_bytes())
            .unwrap();
        alice.persist_and_reload();
        ag = MlsGroup::load(alice.storage(), &gid).unwrap().unwrap();
        let ProcessedMessageContent::ApplicationMessage(am) =
            process(&bob, &mut bg, &m.tls_serialize_detached().unwrap())
        else {
            panic!("not an application message")
        };
        assert_eq!(am.into_bytes(), format!("hi {i}").into_bytes());
        bob.persist_and_reload();
        bg = MlsGroup::load(bob.storage(), &gid).unwrap().unwrap();
    }
    // Bob updates his leaf; Alice processes it after a reload.
    let bundle = bg
        .self_update(&bob, &b_signer, LeafNodeParameters::default())
        .unwrap();
    bg.merge_pending_commit(&bob).unwrap();
    bob.persist_and_reload();
    let bg = MlsGroup::load(bob.storage(), &gid).unwrap().unwrap();
    let ProcessedMessageContent::StagedCommitMessage(sc) = process(
        &alice,
        &mut ag,
        &bundle.commit().tls_serialize_detached().unwrap(),
    ) else {
        panic!("not a commit")
    };
    ag.merge_staged_commit(&alice, *sc).unwrap();
    alice.persist_and_reload();
    let ag = MlsGroup::load(alice.storage(), &gid).unwrap().unwrap();
    assert_eq!(ag.epoch(), bg.epoch());
    assert_eq!(
        ag.epoch_authenticator().as_slice(),
        bg.epoch_authenticator().as_slice()
    );
}

#[test]
fn rows_written_by_openmls_memory_storage_are_read_as_is() {
    use openmls_memory_storage::MemoryStorage;
    struct Mem {
        crypto: RustCrypto,
        storage: MemoryStorage,
    }
    impl OpenMlsProvider for Mem {
        type CryptoProvider = RustCrypto;
        type RandProvider = RustCrypto;
        type StorageProvider = MemoryStorage;
        fn storage(&self) -> &MemoryStorage {
            &self.storage
        }
        fn crypto(&self) -> &RustCrypto {
            &self.crypto
        }
        fn rand(&self) -> &RustCrypto {
            &self.crypto
        }
    }
    let old = Mem {
        crypto: RustCrypto::default(),
        storage: MemoryStorage::default(),
    };
    let signer = SignatureKeyPair::new(CS.signature_algorithm()).unwrap();
    signer.store(old.storage()).unwrap();
    let cwk = CredentialWithKey {
        credential: BasicCredential::new(b"alice".to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let cfg = MlsGroupCreateConfig::builder()
        .ciphersuite(CS)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    let mut g = MlsGroup::new(&old, &signer, &cfg, cwk).unwrap();
    g.self_update(&old, &signer, LeafNodeParameters::default())
        .unwrap();
    g.merge_pending_commit(&old).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = old
        .storage
        .values
        .read()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let new = Party {
        crypto: RustCrypto::default(),
        storage: KvStorage::from_rows(rows),
        disk: BTreeMap::new(),
    };
    let mut loaded = MlsGroup::load(new.storage(), g.group_id())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.epoch(), g.epoch());
    // And it keeps working on the new storage, writing the same layout.
    loaded
        .self_update(&new, &signer, LeafNodeParameters::default())
        .unwrap();
    loaded.merge_pending_commit(&new).unwrap();
    assert_eq!(loaded.epoch().as_u64(), g.epoch().as_u64() + 1);
    let written = new.storage.take_changes();
    assert!(
        written
            .iter()
            .all(|(k, _)| k.ends_with(&1u16.to_be_bytes()))
    );
}
