//! A MIMI client: one MLS member (openmls) that speaks MIMI content.
//!
//! [`Member`] builds every body a client sends through its provider's gateway (room creation,
//! KeyMaterial requests, commits with participant-list updates, proposals, application
//! messages with franking tags, GroupInfo requests and external commits) and processes every
//! delivery (Welcome, commit, proposal, application message) into [`Event`]s. It performs no
//! network IO: the caller carries the bodies (over the gateway's client API, or in-process in a
//! bridge).
//!
//! ```text
//!  Member ──bodies──► gateway client API ──► hub (/update, /submitMessage, ...)
//!    ▲                                          │
//!    └──── process(kind, FanoutMessage) ◄── deliveries (Welcome, commits, messages)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use mimi_content::{Message, MessageId};
use mimi_mls_storage::KvStorage;
use mimi_proto::codec::Wire;
use mimi_proto::components::{ParticipantListData, ids};
use mimi_proto::uri::ClientUri;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

/// The cipher suite MIMI rooms use here (the RFC 9420 mandatory-to-implement suite).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Role indexes of [`default_roles`].
pub mod role {
    /// Not in the participant list.
    pub const NONE: u32 = 0;
    /// Banned (no capabilities, no clients).
    pub const BANNED: u32 = 1;
    /// An ordinary participant.
    pub const MEMBER: u32 = 2;
    /// An administrator.
    pub const ADMIN: u32 = 3;
}

/// A client operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// openmls refused.
    #[error("MLS: {0}")]
    Mls(String),
    /// A MIMI body does not decode or is inconsistent.
    #[error("protocol: {0}")]
    Protocol(String),
    /// This member is not in the room.
    #[error("not a member of {0}")]
    NoSuchRoom(String),
    /// The operation is not possible in the room's current state.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn mls<E: std::fmt::Debug>(e: E) -> ClientError {
    ClientError::Mls(format!("{e:?}"))
}

mod join;
mod process;
mod roles;
mod room;
mod send;
mod state;

pub use roles::{CreatedRoom, RoomSetup, default_roles};
pub use state::MemberChanges;

/// What a processed delivery meant.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // events are consumed one by one; boxing buys nothing
pub enum Event {
    /// This member joined `room` through a Welcome.
    Joined {
        /// The room.
        room: String,
    },
    /// A MIMI content message.
    Message {
        /// The room.
        room: String,
        /// The sender's user URI (from its MLS credential).
        sender: String,
        /// The message and its bytes.
        message: Message,
        /// Its ID.
        id: MessageId,
        /// The hub's accepted timestamp.
        timestamp: u64,
        /// Whether the hub's frank verified (None: not franked).
        frank_ok: Option<bool>,
    },
    /// A commit was applied.
    Committed {
        /// The room.
        room: String,
        /// The new epoch.
        epoch: u64,
    },
    /// A proposal was queued for the next commit.
    Proposed {
        /// The room.
        room: String,
    },
    /// This member was removed from `room`.
    Removed {
        /// The room.
        room: String,
    },
    /// The delivery was not for this member or could not be used.
    Ignored {
        /// The room.
        room: String,
        /// Why.
        reason: String,
    },
}

/// An HPKE key for one GroupInfo request.
#[derive(Debug, Clone)]
pub struct GroupInfoKey {
    private: Vec<u8>,
}

/// A member's openmls provider: RustCrypto, and rows that record what changes (so a bridge
/// persists exactly what each operation changed, [`Member::take_changes`]).
#[derive(Debug, Default)]
pub(crate) struct Provider {
    crypto: RustCrypto,
    storage: KvStorage,
}

impl OpenMlsProvider for Provider {
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

/// One MLS client of a MIMI user.
pub struct Member {
    provider: Provider,
    signer: SignatureKeyPair,
    domain: String,
    user: String,
    client_uri: String,
    groups: BTreeMap<String, MlsGroup>,
    joining: BTreeMap<String, MlsGroup>,
    own_messages: BTreeSet<Vec<u8>>,
    /// The meta record last handed out by [`Member::take_changes`].
    persisted_meta: Option<Vec<u8>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("client", &self.client_uri)
            .field("rooms", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(crate) fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::AppDataDictionary, ExtensionType::LastResort]),
        Some(&[ProposalType::AppDataUpdate, ProposalType::SelfRemove]),
        None,
    )
}

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(4)
        .use_ratchet_tree_extension(false)
        .build()
}

pub(crate) fn participant_list(dict: Option<&AppDataDictionaryExtension>) -> ParticipantListData {
    dict.and_then(|d| d.dictionary().get(&ids::PARTICIPANT_LIST))
        .and_then(|b| ParticipantListData::from_bytes(b).ok())
        .unwrap_or_default()
}

/// The user (D27, `mimi_proto::uri`) of an MLS credential.
pub(crate) fn user_of_credential(c: &Credential) -> Option<String> {
    let b = BasicCredential::try_from(c.clone()).ok()?;
    ClientUri::from_credential_identity(b.identity())
        .ok()
        .map(|c| c.user().to_string())
}

/// Raw RFC 9420 structure inside an MLSMessage (drops the 4-byte version/wire-format header).
pub(crate) fn mls_body(bytes: &[u8]) -> Vec<u8> {
    bytes.get(4..).map(<[u8]>::to_vec).unwrap_or_default()
}

impl Member {
    /// A new client `mimi://domain/d/user/device` with a fresh signature key.
    ///
    /// # Panics
    /// If the platform has no usable randomness for key generation.
    pub fn new(domain: &str, user: &str, device: &str) -> Self {
        let provider = Provider::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .expect("signature key generation");
        signer
            .store(provider.storage())
            .expect("in-memory key storage");
        Self {
            provider,
            signer,
            domain: domain.to_owned(),
            user: format!("mimi://{domain}/u/{user}"),
            client_uri: format!("mimi://{domain}/d/{user}/{device}"),
            groups: BTreeMap::new(),
            joining: BTreeMap::new(),
            own_messages: BTreeSet::new(),
            persisted_meta: None,
        }
    }

    /// The user URI.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client URI (its MLS credential identity).
    pub fn client_uri(&self) -> &str {
        &self.client_uri
    }

    /// The provider domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn cwk(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.client_uri.as_bytes().to_vec()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    /// Rooms this member is in.
    pub fn rooms(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// The current epoch in `room`.
    pub fn epoch(&self, room: &str) -> Option<u64> {
        self.groups.get(room).map(|g| g.epoch().as_u64())
    }

    /// The participant list of `room` as this member sees it (user, role).
    pub fn participants(&self, room: &str) -> Vec<(String, u32)> {
        self.groups
            .get(room)
            .map(|g| {
                participant_list(g.extensions().app_data_dictionary())
                    .participants
                    .into_iter()
                    .map(|p| (p.user.0, p.role_index))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ratchet tree of `room` (the RFC 9420 `ratchet_tree` extension content).
    pub fn ratchet_tree(&self, room: &str) -> Option<Vec<u8>> {
        use openmls::prelude::tls_codec::Serialize as _;
        self.groups
            .get(room)
            .and_then(|g| g.export_ratchet_tree().tls_serialize_detached().ok())
    }

    /// The MLS members of `room` (client URIs).
    pub fn members(&self, room: &str) -> Vec<String> {
        self.groups
            .get(room)
            .map(|g| {
                g.members()
                    .filter_map(|m| {
                        BasicCredential::try_from(m.credential)
                            .ok()
                            .and_then(|b| String::from_utf8(b.identity().to_vec()).ok())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
