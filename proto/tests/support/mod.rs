//! Real openmls groups producing the MLS artifacts MIMI bodies carry: KeyPackages, a Welcome,
//! a commit, proposals, a GroupInfo, a ratchet tree and an application message whose
//! authenticated data carries a MIMI franking tag.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

pub const CS: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// A member: provider, signer and credential.
pub struct Member {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub cwk: CredentialWithKey,
}

impl Member {
    pub fn new(identity: &str) -> Self {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CS.signature_algorithm()).unwrap();
        signer.store(provider.storage()).unwrap();
        let cwk = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self {
            provider,
            signer,
            cwk,
        }
    }

    pub fn key_package(&self) -> KeyPackageBundle {
        KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .build(CS, &self.provider, &self.signer, self.cwk.clone())
            .unwrap()
    }
}

/// Leaf capabilities every member of a MIMI room advertises.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        None,
        Some(&[ExtensionType::AppDataDictionary]),
        Some(&[ProposalType::AppDataUpdate]),
        None,
    )
}

/// GroupContext extensions of a MIMI room: AppDataUpdate required, and an app-data dictionary
/// with the participant list and `safe_aad` listing `frank_aad`.
pub fn group_context_extensions() -> Extensions<GroupContext> {
    let mut dict = AppDataDictionary::new();
    dict.insert(0x0002, vec![0x02, 0x00, 0x20]); // ComponentsList [frank_aad]
    let mut list = vec![];
    let user = b"mimi://a.example/u/alice";
    let mut entry = vec![user.len() as u8];
    entry.extend_from_slice(user);
    entry.extend_from_slice(&3u32.to_be_bytes());
    list.push(entry.len() as u8);
    list.extend(entry);
    dict.insert(0x0022, list);
    Extensions::from_vec(vec![
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::AppDataDictionary],
            &[ProposalType::AppDataUpdate],
            &[],
        )),
        Extension::AppDataDictionary(AppDataDictionaryExtension::new(dict)),
    ])
    .unwrap()
}

/// Every artifact, as bytes.
pub struct Artifacts {
    /// Raw `KeyPackage` (not MLSMessage-wrapped).
    pub key_package: Vec<u8>,
    /// MLSMessage(Welcome).
    pub welcome_msg: Vec<u8>,
    /// Raw `Welcome`.
    pub welcome: Vec<u8>,
    /// MLSMessage(PublicMessage commit) adding Bob.
    pub commit: Vec<u8>,
    /// MLSMessage(GroupInfo) without the ratchet tree.
    pub group_info_msg: Vec<u8>,
    /// Raw `GroupInfo`.
    pub group_info: Vec<u8>,
    /// `ratchet_tree` vector (with its length).
    pub ratchet_tree: Vec<u8>,
    /// MLSMessage(PrivateMessage) application message with a frank_aad SafeAAD item.
    pub application: Vec<u8>,
    /// MLSMessage(PublicMessage) Update proposal by Bob.
    pub proposal_update: Vec<u8>,
    /// MLSMessage(PublicMessage) Remove proposal by Alice.
    pub proposal_remove: Vec<u8>,
    /// The franking tag put in the application message.
    pub franking_tag: [u8; 32],
}

pub fn generate() -> Artifacts {
    let alice = Member::new("mimi://a.example/u/alice");
    let bob = Member::new("mimi://b.example/u/bob");
    let carol = Member::new("mimi://c.example/u/carol");
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CS)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .capabilities(capabilities())
        .with_group_context_extensions(group_context_extensions())
        .build();
    let mut group =
        MlsGroup::new(&alice.provider, &alice.signer, &config, alice.cwk.clone()).unwrap();

    let bob_kp = bob.key_package();
    let key_package = bob_kp.key_package().tls_serialize_detached().unwrap();
    let carol_kp = carol.key_package();
    let (commit, welcome, _) = group
        .add_members(
            &alice.provider,
            &alice.signer,
            &[bob_kp.key_package().clone(), carol_kp.key_package().clone()],
        )
        .unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    let welcome_msg = welcome.to_bytes().unwrap();
    let MlsMessageBodyIn::Welcome(welcome_in) = MlsMessageIn::tls_deserialize_exact(&welcome_msg)
        .unwrap()
        .extract()
    else {
        panic!()
    };
    let welcome_raw = welcome_in.tls_serialize_detached().unwrap();

    let mut bob_group =
        StagedWelcome::new_from_welcome(&bob.provider, config.join_config(), welcome_in, None)
            .unwrap()
            .into_group(&bob.provider)
            .unwrap();

    let gi = group
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .unwrap();
    let group_info_msg = gi.to_bytes().unwrap();
    let MlsMessageBodyIn::GroupInfo(vgi) = MlsMessageIn::tls_deserialize_exact(&group_info_msg)
        .unwrap()
        .extract()
    else {
        panic!()
    };
    let group_info = vgi.tls_serialize_detached().unwrap();
    let ratchet_tree = group
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap();

    let franking_tag = [0x5a; 32];
    let mut frank_aad = Vec::new();
    frank_aad.extend_from_slice(&franking_tag);
    group
        .set_safe_aad(vec![SafeAadItem::new(0x0020, frank_aad)])
        .unwrap();
    let application = group
        .create_message(
            &alice.provider,
            &alice.signer,
            b"\x87 a MIMI content message",
        )
        .unwrap()
        .to_bytes()
        .unwrap();

    let (update, _) = bob_group
        .propose_self_update(&bob.provider, &bob.signer, LeafNodeParameters::default())
        .unwrap();
    let (remove, _) = group
        .propose_remove_member(&alice.provider, &alice.signer, LeafNodeIndex::new(2))
        .unwrap();

    Artifacts {
        key_package,
        welcome_msg,
        welcome: welcome_raw,
        commit: commit.to_bytes().unwrap(),
        group_info_msg,
        group_info,
        ratchet_tree,
        application,
        proposal_update: update.to_bytes().unwrap(),
        proposal_remove: remove.to_bytes().unwrap(),
        franking_tag,
    }
}

/// The artifact files captured in `tests/vectors/mls/` (name, bytes).
pub fn files(a: &Artifacts) -> Vec<(&'static str, &Vec<u8>)> {
    vec![
        ("key_package.bin", &a.key_package),
        ("welcome_msg.bin", &a.welcome_msg),
        ("welcome.bin", &a.welcome),
        ("commit.bin", &a.commit),
        ("group_info_msg.bin", &a.group_info_msg),
        ("group_info.bin", &a.group_info),
        ("ratchet_tree.bin", &a.ratchet_tree),
        ("application.bin", &a.application),
        ("proposal_update.bin", &a.proposal_update),
        ("proposal_remove.bin", &a.proposal_remove),
    ]
}

/// Loads the captured artifacts.
pub fn captured() -> Artifacts {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/mls");
    let r = |n: &str| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    Artifacts {
        key_package: r("key_package.bin"),
        welcome_msg: r("welcome_msg.bin"),
        welcome: r("welcome.bin"),
        commit: r("commit.bin"),
        group_info_msg: r("group_info_msg.bin"),
        group_info: r("group_info.bin"),
        ratchet_tree: r("ratchet_tree.bin"),
        application: r("application.bin"),
        proposal_update: r("proposal_update.bin"),
        proposal_remove: r("proposal_remove.bin"),
        franking_tag: [0x5a; 32],
    }
}
