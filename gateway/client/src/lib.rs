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

use mimi_content::{Message, MessageId, builder::Builder};
use mimi_proto::codec::{Bytes, Uri, Wire};
use mimi_proto::components::{
    AppDataOp, BaseRoomPolicy, FrankingAgentData, ParticipantListData, ParticipantListUpdate, Role,
    RoleData, RoomMetaData, SingleSourceRoleChangeTargets, UserIndexRolePair, UserRolePair,
    capability, ids,
};
use mimi_proto::messages::{
    FanoutExtra, FanoutMessage, Frank, GroupInfoCode, GroupInfoOption, GroupInfoRatchetTreeTbe,
    GroupInfoRequest, GroupInfoResponse, HandshakeBundle, KeyMaterialRequest, Protocol,
    RatchetTreeOption, SubmitMessageRequest,
};
use mimi_proto::mls::{MlsMessage, MlsMessageBody, RequiredCapabilities};
use openmls::component::ComponentData;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

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

fn mls<E: std::fmt::Debug>(e: E) -> ClientError {
    ClientError::Mls(format!("{e:?}"))
}

fn role_def(
    index: u32,
    name: &str,
    caps: &[u16],
    changes: &[(u32, &[u32])],
    min: u32,
    max_active: Option<u32>,
) -> Role {
    Role {
        role_index: index,
        role_name: Bytes(name.as_bytes().to_vec()),
        role_description: Bytes::default(),
        role_capabilities: caps.to_vec(),
        minimum_participants_constraint: min,
        maximum_participants_constraint: None,
        minimum_active_participants_constraint: 0,
        maximum_active_participants_constraint: max_active,
        authorized_role_changes: changes
            .iter()
            .map(|(f, t)| SingleSourceRoleChangeTargets {
                from_role_index: *f,
                target_role_indexes: t.to_vec(),
            })
            .collect(),
    }
}

/// Roles for a moderated room: banned (1), member (2: may talk, manage its own clients, leave,
/// and invite members), admin (3: everything, at least one).
pub fn default_roles() -> RoleData {
    use capability::*;
    let member = [
        CAN_SEND_MESSAGE,
        CAN_RECEIVE_MESSAGE,
        CAN_REACT_TO_MESSAGE,
        CAN_EDIT_OWN_MESSAGE,
        CAN_DELETE_OWN_MESSAGE,
        CAN_ADD_OWN_CLIENT,
        CAN_REMOVE_OWN_CLIENT,
        CAN_REMOVE_SELF,
        CAN_REPORT_ABUSE,
        CAN_ADD_PARTICIPANT,
    ];
    let mut admin = member.to_vec();
    admin.extend([
        CAN_REMOVE_PARTICIPANT,
        CAN_BAN,
        CAN_UNBAN,
        CAN_KICK,
        CAN_CHANGE_USER_ROLE,
        CAN_DELETE_OTHER_MESSAGE,
        CAN_CHANGE_ROOM_NAME,
        CAN_CHANGE_ROOM_DESCRIPTION,
        CAN_CHANGE_ROLE_DEFINITIONS,
        CAN_CHANGE_ROOM_MEMBERSHIP_STYLE,
    ]);
    RoleData {
        roles: vec![
            role_def(role::BANNED, "banned", &[], &[], 0, Some(0)),
            role_def(
                role::MEMBER,
                "member",
                &member,
                &[(0, &[role::MEMBER])],
                0,
                None,
            ),
            role_def(
                role::ADMIN,
                "admin",
                &admin,
                &[
                    (0, &[role::MEMBER, role::ADMIN]),
                    (role::MEMBER, &[0, role::BANNED, role::ADMIN]),
                    (role::BANNED, &[0, role::MEMBER]),
                    (role::ADMIN, &[role::MEMBER, 0]),
                ],
                1,
                None,
            ),
        ],
    }
}

/// How a new room is set up.
#[derive(Debug, Clone)]
pub struct RoomSetup {
    /// Display name.
    pub name: String,
    /// DM-style fixed membership.
    pub fixed_membership: bool,
    /// Anyone may join by external commit (role 0 gets canOpenJoin into `member`).
    pub open_join: bool,
    /// The hub franks messages (franking_agent and safe_aad components).
    pub franking: bool,
    /// Roles.
    pub roles: RoleData,
    /// The creator's role.
    pub creator_role: u32,
    /// Users (and roles) in the participant list from the start (fixed-membership rooms).
    pub initial_participants: Vec<(String, u32)>,
}

impl RoomSetup {
    /// A moderated room named `name`, creator admin, franked.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fixed_membership: false,
            open_join: false,
            franking: true,
            roles: default_roles(),
            creator_role: role::ADMIN,
            initial_participants: vec![],
        }
    }
}

/// The room creation bodies for the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedRoom {
    /// Raw RFC 9420 GroupInfo (no ratchet_tree extension).
    pub group_info: Vec<u8>,
    /// The `ratchet_tree` vector.
    pub ratchet_tree: Vec<u8>,
}

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

/// One MLS client of a MIMI user.
pub struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    domain: String,
    user: String,
    client_uri: String,
    groups: BTreeMap<String, MlsGroup>,
    joining: BTreeMap<String, MlsGroup>,
    own_messages: BTreeSet<Vec<u8>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("client", &self.client_uri)
            .field("rooms", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::AppDataDictionary]),
        Some(&[ProposalType::AppDataUpdate, ProposalType::SelfRemove]),
        None,
    )
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(4)
        .use_ratchet_tree_extension(false)
        .build()
}

fn participant_list(dict: Option<&AppDataDictionaryExtension>) -> ParticipantListData {
    dict.and_then(|d| d.dictionary().get(&ids::PARTICIPANT_LIST))
        .and_then(|b| ParticipantListData::from_bytes(b).ok())
        .unwrap_or_default()
}

fn user_of_credential(c: &Credential) -> Option<String> {
    let id = BasicCredential::try_from(c.clone())
        .ok()?
        .identity()
        .to_vec();
    let s = String::from_utf8(id).ok()?;
    let rest = s.strip_prefix("mimi://")?;
    let mut it = rest.split('/');
    let (domain, kind, name) = (it.next()?, it.next()?, it.next()?);
    match kind {
        "d" | "u" => Some(format!("mimi://{domain}/u/{name}")),
        _ => None,
    }
}

/// Raw RFC 9420 structure inside an MLSMessage (drops the 4-byte version/wire-format header).
fn mls_body(bytes: &[u8]) -> Vec<u8> {
    bytes.get(4..).map(<[u8]>::to_vec).unwrap_or_default()
}

impl Member {
    /// A new client `mimi://domain/d/user/device` with a fresh signature key.
    ///
    /// # Panics
    /// If the platform has no usable randomness for key generation.
    pub fn new(domain: &str, user: &str, device: &str) -> Self {
        let provider = OpenMlsRustCrypto::default();
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

    /// `n` fresh KeyPackages (raw RFC 9420 encodings) to publish.
    ///
    /// # Errors
    /// [`ClientError::Mls`].
    pub fn key_packages(&self, n: usize) -> Result<Vec<Vec<u8>>, ClientError> {
        (0..n)
            .map(|_| {
                let b = KeyPackage::builder()
                    .leaf_node_capabilities(capabilities())
                    .build(CIPHERSUITE, &self.provider, &self.signer, self.cwk())
                    .map_err(mls)?;
                b.key_package().tls_serialize_detached().map_err(mls)
            })
            .collect()
    }

    /// Creates `room` (hosted by the provider whose external-sender entry is given) with the
    /// MIMI components; returns what the hub needs.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn create_room(
        &mut self,
        room: &str,
        hub_external_sender: &[u8],
        setup: &RoomSetup,
    ) -> Result<CreatedRoom, ClientError> {
        let es = ExternalSender::tls_deserialize_exact(hub_external_sender).map_err(mls)?;
        let hub_es = mimi_proto::mls::ExternalSender::from_bytes(hub_external_sender)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut participants = vec![UserRolePair {
            user: Uri::from(self.user.as_str()),
            role_index: setup.creator_role,
        }];
        participants.extend(
            setup
                .initial_participants
                .iter()
                .filter(|(u, _)| *u != self.user)
                .map(|(u, r)| UserRolePair {
                    user: Uri::from(u.as_str()),
                    role_index: *r,
                }),
        );
        let mut roles = setup.roles.clone();
        if setup.open_join {
            roles.roles.retain(|r| r.role_index != 0);
            roles.roles.insert(
                0,
                role_def(
                    0,
                    "no_role",
                    &[capability::CAN_OPEN_JOIN],
                    &[(0, &[role::MEMBER])],
                    0,
                    None,
                ),
            );
        }
        let base = BaseRoomPolicy {
            fixed_membership: setup.fixed_membership,
            parent_dependant: false,
            parent_room: vec![],
            multi_device: true,
            max_clients: None,
            max_users: None,
            pseudonyms_allowed: false,
            persistent_room: true,
            discoverable: false,
            policy_component_ids: vec![ids::ROLES_LIST, ids::BASE_ROOM_POLICY],
        };
        let meta = RoomMetaData {
            room_uri: Uri::from(room),
            room_name: setup.name.as_str().into(),
            room_descriptions: vec![],
            room_avatar: Uri::default(),
            room_subject: Default::default(),
            room_mood: Default::default(),
        };
        let mut dict = AppDataDictionary::new();
        dict.insert(
            ids::PARTICIPANT_LIST,
            ParticipantListData { participants }.to_bytes(),
        );
        dict.insert(ids::ROOM_METADATA, meta.to_bytes());
        dict.insert(ids::ROLES_LIST, roles.to_bytes());
        dict.insert(ids::BASE_ROOM_POLICY, base.to_bytes());
        if setup.franking {
            dict.insert(ids::SAFE_AAD, vec![0x02, 0x00, 0x20]);
            dict.insert(
                ids::FRANKING_AGENT,
                FrankingAgentData {
                    franking_signature_key: hub_es.signature_key.clone(),
                    credential: hub_es.credential,
                }
                .to_bytes(),
            );
        }
        let gce = Extensions::from_vec(vec![
            Extension::ExternalSenders(vec![es]),
            Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
                &[ExtensionType::AppDataDictionary],
                &[ProposalType::AppDataUpdate],
                &[],
            )),
            Extension::AppDataDictionary(AppDataDictionaryExtension::new(dict)),
        ])
        .map_err(mls)?;
        let cfg = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .capabilities(capabilities())
            .use_ratchet_tree_extension(false)
            .max_past_epochs(4)
            .with_group_context_extensions(gce)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &cfg,
            GroupId::from_slice(room.as_bytes()),
            self.cwk(),
        )
        .map_err(mls)?;
        let gi = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(mls)?
            .to_bytes()
            .map_err(mls)?;
        let tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(mls)?;
        self.groups.insert(room.to_owned(), group);
        Ok(CreatedRoom {
            group_info: mls_body(&gi),
            ratchet_tree: tree,
        })
    }

    /// A signed KeyMaterialRequest for `target_user`'s KeyPackages, for use in `room`.
    pub fn key_material_request(&self, target_user: &str, room: &str) -> Vec<u8> {
        let mut req = KeyMaterialRequest {
            protocol: Protocol::Mls10,
            requesting_user: Uri::from(self.user.as_str()),
            target_user: Uri::from(target_user),
            room_id: Uri::from(room),
            acceptable_ciphersuites: vec![u16::from(CIPHERSUITE)],
            required_capabilities: RequiredCapabilities {
                extension_types: vec![u16::from(ExtensionType::AppDataDictionary)],
                proposal_types: vec![u16::from(ProposalType::AppDataUpdate)],
                credential_types: vec![],
            },
            requester_signature_key: Bytes(self.signer.public().to_vec()),
            requester_credential: mimi_proto::mls::Credential::basic(self.client_uri.as_bytes()),
            key_material_request_signature: Bytes::default(),
        };
        req.key_material_request_signature = Bytes(
            mimi_proto::crypto::sign_with_label(
                &self.signer,
                KeyMaterialRequest::LABEL,
                &req.tbs(),
            )
            .unwrap_or_default(),
        );
        req.to_bytes()
    }

    /// KeyPackages of a KeyMaterialResponse (validated), for [`Member::add_participants`].
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the response does not decode.
    pub fn key_packages_from_response(&self, response: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        let r = mimi_proto::messages::KeyMaterialResponse::from_bytes(response)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(r.clients
            .into_iter()
            .filter_map(|c| match c {
                mimi_proto::messages::ClientKeyMaterial::Success { key_package, .. } => {
                    Some(key_package.to_bytes())
                }
                _ => None,
            })
            .collect())
    }

    /// Commits the addition of users (participant list, role) and of their clients'
    /// KeyPackages. Call [`Member::commit_accepted`] or [`Member::commit_refused`] with the
    /// hub's answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn add_participants(
        &mut self,
        room: &str,
        users: &[(String, u32)],
        key_packages: &[Vec<u8>],
    ) -> Result<Vec<u8>, ClientError> {
        let update = ParticipantListUpdate {
            changed_role_participants: vec![],
            removed_indices: vec![],
            added_participants: users
                .iter()
                .map(|(u, r)| UserRolePair {
                    user: Uri::from(u.as_str()),
                    role_index: *r,
                })
                .collect(),
        };
        let kps = key_packages
            .iter()
            .map(|b| {
                KeyPackageIn::tls_deserialize_exact(b)
                    .map_err(mls)?
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(mls)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let list = if users.is_empty() { None } else { Some(update) };
        self.commit(room, kps, vec![], list, false)
    }

    /// Commits adding more clients of existing participants (e.g. a new device of oneself).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn add_clients(
        &mut self,
        room: &str,
        key_packages: &[Vec<u8>],
    ) -> Result<Vec<u8>, ClientError> {
        self.add_participants(room, &[], key_packages)
    }

    fn leaves_of(&self, room: &str, user: &str) -> Vec<LeafNodeIndex> {
        self.groups
            .get(room)
            .map(|g| {
                g.members()
                    .filter(|m| user_of_credential(&m.credential).as_deref() == Some(user))
                    .map(|m| m.index)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn index_of(&self, room: &str, user: &str) -> Result<u32, ClientError> {
        let list = self
            .groups
            .get(room)
            .map(|g| participant_list(g.extensions().app_data_dictionary()))
            .unwrap_or_default();
        list.participants
            .iter()
            .position(|p| p.user.as_str() == user)
            .map(|i| i as u32)
            .ok_or_else(|| ClientError::Invalid(format!("{user} is not a participant of {room}")))
    }

    /// Commits removing users from the participant list together with all their clients.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn remove_participants(
        &mut self,
        room: &str,
        users: &[String],
    ) -> Result<Vec<u8>, ClientError> {
        let mut removed_indices = Vec::new();
        let mut leaves = Vec::new();
        for u in users {
            removed_indices.push(self.index_of(room, u)?);
            leaves.extend(self.leaves_of(room, u));
        }
        let update = ParticipantListUpdate {
            changed_role_participants: vec![],
            removed_indices,
            added_participants: vec![],
        };
        self.commit(room, vec![], leaves, Some(update), false)
    }

    /// Commits a role change (banning is a change to role 1 and removes the user's clients).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn change_role(
        &mut self,
        room: &str,
        user: &str,
        new_role: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let idx = self.index_of(room, user)?;
        let leaves = if new_role == role::BANNED {
            self.leaves_of(room, user)
        } else {
            vec![]
        };
        let update = ParticipantListUpdate {
            changed_role_participants: vec![UserIndexRolePair {
                user_index: idx,
                role_index: new_role,
            }],
            removed_indices: vec![],
            added_participants: vec![],
        };
        self.commit(room, vec![], leaves, Some(update), false)
    }

    /// Commits removing a user's clients without touching the participant list (kick).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn kick(&mut self, room: &str, user: &str) -> Result<Vec<u8>, ClientError> {
        let leaves = self.leaves_of(room, user);
        self.commit(room, vec![], leaves, None, false)
    }

    /// Commits the proposals queued in this member's view (e.g. a participant's leave).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn commit_pending(&mut self, room: &str) -> Result<Vec<u8>, ClientError> {
        self.commit(room, vec![], vec![], None, true)
    }

    /// Proposals to leave `room`: a Remove of this client and the removal of its user from the
    /// participant list. Another member commits them.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn leave(&mut self, room: &str) -> Result<Vec<u8>, ClientError> {
        let idx = self.index_of(room, &self.user.clone())?;
        let update = ParticipantListUpdate {
            changed_role_participants: vec![],
            removed_indices: vec![idx],
            added_participants: vec![],
        };
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self
            .groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?;
        let (list, _) = group
            .propose_app_data_update(
                provider,
                signer,
                ids::PARTICIPANT_LIST,
                AppDataUpdateOperation::Update(update.to_bytes().into()),
            )
            .map_err(mls)?;
        let remove = group.leave_group(provider, signer).map_err(mls)?;
        let first = MlsMessage::from_bytes(&list.to_bytes().map_err(mls)?)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let more = MlsMessage::from_bytes(&remove.to_bytes().map_err(mls)?)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.own_messages.insert(first.to_bytes());
        self.own_messages.insert(more.to_bytes());
        Ok(HandshakeBundle::Proposal {
            proposal: first,
            more_proposals: vec![more],
        }
        .to_bytes())
    }

    fn commit(
        &mut self,
        room: &str,
        adds: Vec<KeyPackage>,
        removes: Vec<LeafNodeIndex>,
        list: Option<ParticipantListUpdate>,
        pending: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self
            .groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?;
        let mut builder = group
            .commit_builder()
            .consume_proposal_store(pending)
            .propose_adds(adds)
            .propose_removals(removes);
        if let Some(u) = &list {
            builder = builder.add_proposal(Proposal::AppDataUpdate(Box::new(
                AppDataUpdateProposal::update(ids::PARTICIPANT_LIST, u.to_bytes()),
            )));
        }
        let mut stage = builder
            .load_psks(provider.storage())
            .map_err(mls)?
            .create_group_info(true);
        let ops: Vec<(u16, AppDataOp)> = stage
            .app_data_update_proposals()
            .map(|p| {
                (
                    p.component_id(),
                    match p.operation() {
                        AppDataUpdateOperation::Update(d) => {
                            AppDataOp::Update(d.as_slice().to_vec())
                        }
                        AppDataUpdateOperation::Remove => AppDataOp::Remove,
                    },
                )
            })
            .collect();
        let changes = if ops.is_empty() {
            None
        } else {
            let mut updater = stage.app_data_dictionary_updater();
            let resolved = mimi_proto::components::resolve_app_data(
                |id| updater.old_value(id).map(<[u8]>::to_vec),
                &ops,
            )
            .map_err(ClientError::Invalid)?;
            for (id, v) in resolved.changes {
                match v {
                    Some(d) => updater.set(ComponentData::from_parts(id, d.into())),
                    None => updater.remove(&id),
                }
            }
            updater.changes()
        };
        stage.with_app_data_dictionary_updates(changes);
        let bundle = stage
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(mls)?
            .stage_commit(provider)
            .map_err(mls)?;
        let (commit, welcome, group_info) = bundle.into_contents();
        let commit = MlsMessage::from_bytes(&commit.to_bytes().map_err(mls)?)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let welcome = welcome
            .map(|w| w.tls_serialize_detached().map_err(mls))
            .transpose()?
            .map(|b| <mimi_proto::mls::Welcome as Wire>::from_bytes(&b))
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let gi = group_info
            .ok_or_else(|| ClientError::Mls("no GroupInfo for the new epoch".into()))?
            .tls_serialize_detached()
            .map_err(mls)?;
        let group_info = mimi_proto::mls::GroupInfo::from_bytes(&gi)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.own_messages.insert(commit.to_bytes());
        Ok(HandshakeBundle::Commit {
            commit,
            welcome,
            group_info_option: GroupInfoOption::Full { group_info },
            ratchet_tree_option: RatchetTreeOption::DistributionService,
        }
        .to_bytes())
    }

    /// The hub accepted this member's pending commit (or external join): apply it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn commit_accepted(&mut self, room: &str) -> Result<(), ClientError> {
        if let Some(mut g) = self.joining.remove(room) {
            g.merge_pending_commit(&self.provider).map_err(mls)?;
            self.groups.insert(room.to_owned(), g);
            return Ok(());
        }
        let provider = &self.provider;
        self.groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?
            .merge_pending_commit(provider)
            .map_err(mls)
    }

    /// The hub refused this member's pending commit: discard it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn commit_refused(&mut self, room: &str) -> Result<(), ClientError> {
        if self.joining.remove(room).is_some() {
            return Ok(());
        }
        let provider = &self.provider;
        self.groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?
            .clear_pending_commit(provider.storage())
            .map_err(mls)
    }

    /// Encrypts a MIMI content message built by `build(sender_uri, room_uri, salt)`; returns
    /// the SubmitMessageRequest body and the message.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn send(
        &mut self,
        room: &str,
        build: impl FnOnce(&str, &str, [u8; 16]) -> Builder,
    ) -> Result<(Vec<u8>, Message), ClientError> {
        let salt: [u8; 16] = rand::random();
        let msg = build(&self.user, room, salt)
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let body = self.send_message(room, &msg)?;
        Ok((body, msg))
    }

    /// Encrypts an already built MIMI message (e.g. translated by a bridge) for `room`; returns
    /// the SubmitMessageRequest. The message's sender must be this member's user.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn send_message(&mut self, room: &str, msg: &Message) -> Result<Vec<u8>, ClientError> {
        if msg
            .content()
            .extensions
            .sender_uri()
            .is_some_and(|s| s != self.user)
        {
            return Err(ClientError::Invalid(format!(
                "the message's senderUri is not {}",
                self.user
            )));
        }
        let salt = msg.content().salt;
        let franking = self.groups.get(room).is_some_and(|g| {
            g.extensions()
                .app_data_dictionary()
                .is_some_and(|d| d.dictionary().get(&ids::SAFE_AAD).is_some())
        });
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self
            .groups
            .get_mut(room)
            .ok_or_else(|| ClientError::NoSuchRoom(room.to_owned()))?;
        if franking {
            let tag = mimi_proto::franking::franking_tag(&salt, msg.bytes());
            group
                .set_safe_aad(vec![SafeAadItem::new(ids::FRANK_AAD, tag.to_vec())])
                .map_err(mls)?;
        }
        let out = group
            .create_message(provider, signer, msg.bytes())
            .map_err(mls)?
            .to_bytes()
            .map_err(mls)?;
        let app_message =
            MlsMessage::from_bytes(&out).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if self.own_messages.len() > 10_000 {
            self.own_messages.clear();
        }
        self.own_messages.insert(out);
        let req = SubmitMessageRequest {
            protocol: Protocol::Mls10,
            app_message,
            sending_uri: Uri::from(self.user.as_str()),
        };
        Ok(req.to_bytes())
    }

    /// The member's whole state (signature key, MLS storage, rooms) for persistence; restore
    /// it with [`Member::import`]. Contains private keys: store it like one.
    pub fn export(&self) -> Vec<u8> {
        let storage: Vec<(String, String)> = self
            .provider
            .storage()
            .values
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (hex::encode(k), hex::encode(v)))
                    .collect()
            })
            .unwrap_or_default();
        let rooms: BTreeMap<String, String> = self
            .groups
            .iter()
            .map(|(r, g)| (r.clone(), hex::encode(g.group_id().as_slice())))
            .collect();
        let v = serde_json::json!({
            "domain": self.domain,
            "user": self.user,
            "client_uri": self.client_uri,
            "signer": hex::encode(self.signer.tls_serialize_detached().unwrap_or_default()),
            "rooms": rooms,
            "storage": storage,
        });
        v.to_string().into_bytes()
    }

    /// Restores a member from [`Member::export`].
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for malformed state.
    pub fn import(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = |w: &str| ClientError::Invalid(format!("member state: {w}"));
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| bad(k));
        let provider = OpenMlsRustCrypto::default();
        {
            let mut values = provider.storage().values.write().map_err(|_| bad("lock"))?;
            for kv in v["storage"].as_array().ok_or_else(|| bad("storage"))? {
                let k =
                    hex::decode(kv[0].as_str().unwrap_or("")).map_err(|_| bad("storage key"))?;
                let val =
                    hex::decode(kv[1].as_str().unwrap_or("")).map_err(|_| bad("storage value"))?;
                values.insert(k, val);
            }
        }
        let signer = SignatureKeyPair::tls_deserialize_exact(
            hex::decode(s("signer")?).map_err(|_| bad("signer"))?,
        )
        .map_err(|_| bad("signer"))?;
        let mut groups = BTreeMap::new();
        for (room, gid) in v["rooms"].as_object().ok_or_else(|| bad("rooms"))? {
            let gid = GroupId::from_slice(
                &hex::decode(gid.as_str().unwrap_or("")).map_err(|_| bad("group id"))?,
            );
            let g = MlsGroup::load(provider.storage(), &gid)
                .map_err(|e| bad(&format!("{e:?}")))?
                .ok_or_else(|| bad(&format!("group of {room} missing from storage")))?;
            groups.insert(room.clone(), g);
        }
        Ok(Self {
            provider,
            signer,
            domain: s("domain")?,
            user: s("user")?,
            client_uri: s("client_uri")?,
            groups,
            joining: BTreeMap::new(),
            own_messages: BTreeSet::new(),
        })
    }

    /// A signed GroupInfoRequest for `room` and the key its answer is encrypted to.
    pub fn group_info_request(&self) -> (Vec<u8>, GroupInfoKey) {
        let ikm: [u8; 32] = rand::random();
        let kp = self
            .provider
            .crypto()
            .derive_hpke_keypair(CIPHERSUITE.hpke_config(), &ikm)
            .unwrap_or_else(|_| unreachable!("X25519 key derivation from 32 bytes cannot fail"));
        let mut req = GroupInfoRequest {
            protocol: Protocol::Mls10,
            cipher_suite: u16::from(CIPHERSUITE),
            requesting_signature_key: Bytes(self.signer.public().to_vec()),
            requesting_credential: mimi_proto::mls::Credential::basic(self.client_uri.as_bytes()),
            group_info_public_key: Bytes(kp.public.clone()),
            joining_code: Bytes::default(),
            signature: Bytes::default(),
        };
        req.signature = Bytes(
            mimi_proto::crypto::sign_with_label(&self.signer, GroupInfoRequest::LABEL, &req.tbs())
                .unwrap_or_default(),
        );
        (
            req.to_bytes(),
            GroupInfoKey {
                private: kp.private.to_vec(),
            },
        )
    }

    /// Joins `room` by external commit from the hub's GroupInfoResponse; returns the
    /// UpdateRequest body (then [`Member::commit_accepted`]).
    ///
    /// # Errors
    /// [`ClientError`] (refused, bad signature, undecryptable).
    pub fn external_join(
        &mut self,
        room: &str,
        response: &[u8],
        key: &GroupInfoKey,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = GroupInfoResponse::from_bytes(response)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if resp.status != GroupInfoCode::Success {
            return Err(ClientError::Invalid(format!(
                "the hub answered {}",
                resp.status.name()
            )));
        }
        let s = resp
            .success
            .as_ref()
            .ok_or_else(|| ClientError::Protocol("success without payload".into()))?;
        let hub_domain = room
            .strip_prefix("mimi://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        if s.hub_sender.credential.basic_identity() != Some(hub_domain.as_bytes()) {
            return Err(ClientError::Invalid(
                "the GroupInfo response is not signed by the room's hub".into(),
            ));
        }
        mimi_proto::crypto::verify_with_label(
            self.provider.crypto(),
            s.cipher_suite,
            &s.hub_sender.signature_key,
            GroupInfoResponse::LABEL,
            &resp.tbs(),
            &s.signature,
        )
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let plain = mimi_proto::crypto::decrypt_with_label(
            self.provider.crypto(),
            s.cipher_suite,
            &key.private,
            GroupInfoResponse::ENCRYPT_LABEL,
            room.as_bytes(),
            &s.encrypted_groupinfo_and_tree,
        )
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let tbe = GroupInfoRatchetTreeTbe::from_bytes(&plain)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let vgi = group_info::VerifiableGroupInfo::tls_deserialize_exact(tbe.group_info.to_bytes())
            .map_err(mls)?;
        let RatchetTreeOption::Full { ratchet_tree } = &tbe.ratchet_tree_option else {
            return Err(ClientError::Invalid(
                "the hub did not send the ratchet tree".into(),
            ));
        };
        let tree = ratchet_tree.to_openmls().map_err(ClientError::Mls)?;
        let mut proposals = Vec::new();
        for p in &tbe.pending_proposals {
            let MlsMessageBodyIn::PublicMessage(pm) =
                MlsMessageIn::tls_deserialize_exact(p.proposal.to_bytes())
                    .map_err(mls)?
                    .extract()
            else {
                continue;
            };
            proposals.push(pm);
        }
        let (group, bundle) = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .with_ratchet_tree(tree)
            .with_proposals(proposals)
            .build_group(&self.provider, vgi, self.cwk())
            .map_err(mls)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities())
                    .build(),
            )
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .create_group_info(true)
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(mls)?
            .finalize(&self.provider)
            .map_err(mls)?;
        let (commit, _, group_info) = bundle.into_contents();
        let commit = MlsMessage::from_bytes(&commit.to_bytes().map_err(mls)?)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let gi = group_info
            .ok_or_else(|| ClientError::Mls("no GroupInfo".into()))?
            .tls_serialize_detached()
            .map_err(mls)?;
        let group_info = mimi_proto::mls::GroupInfo::from_bytes(&gi)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.own_messages.insert(commit.to_bytes());
        self.joining.insert(room.to_owned(), group);
        Ok(HandshakeBundle::Commit {
            commit,
            welcome: None,
            group_info_option: GroupInfoOption::Full { group_info },
            ratchet_tree_option: RatchetTreeOption::DistributionService,
        }
        .to_bytes())
    }

    /// Processes one delivery (`kind` and FanoutMessage bytes from the gateway).
    pub fn process(&mut self, room: &str, body: &[u8]) -> Vec<Event> {
        let ignored = |reason: String| {
            vec![Event::Ignored {
                room: room.to_owned(),
                reason,
            }]
        };
        let fm = match FanoutMessage::from_bytes(body) {
            Ok(m) => m,
            Err(e) => return ignored(format!("not a FanoutMessage: {e}")),
        };
        if self.own_messages.remove(&fm.message.to_bytes()) {
            // Our own commit came back in the fan-out: the hub accepted it, even if its answer
            // never reached us.
            let own_commit =
                fm.message.content_type() == Some(mimi_proto::mls::ContentType::Commit);
            let pending = self.joining.contains_key(room)
                || self
                    .groups
                    .get(room)
                    .is_some_and(|g| g.pending_commit().is_some());
            if own_commit && pending {
                return match self.commit_accepted(room) {
                    Ok(()) => vec![Event::Committed {
                        room: room.to_owned(),
                        epoch: self.epoch(room).unwrap_or_default(),
                    }],
                    Err(e) => ignored(e.to_string()),
                };
            }
            return ignored("own message".into());
        }
        match (&fm.message.body, &fm.extra) {
            (
                MlsMessageBody::Welcome(_),
                FanoutExtra::Welcome {
                    ratchet_tree_option,
                },
            ) => self.process_welcome(room, &fm.message, ratchet_tree_option),
            _ => self.process_group_message(room, &fm),
        }
    }

    fn process_welcome(
        &mut self,
        room: &str,
        msg: &MlsMessage,
        tree: &RatchetTreeOption,
    ) -> Vec<Event> {
        if self.groups.contains_key(room) {
            return vec![Event::Ignored {
                room: room.to_owned(),
                reason: "already in the room".into(),
            }];
        }
        let result = (|| {
            let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(msg.to_bytes())
                .map_err(mls)?
                .extract()
            else {
                return Err(ClientError::Protocol("not a Welcome".into()));
            };
            let tree = match tree {
                RatchetTreeOption::Full { ratchet_tree } => {
                    Some(ratchet_tree.to_openmls().map_err(ClientError::Mls)?)
                }
                _ => None,
            };
            let g = StagedWelcome::new_from_welcome(&self.provider, &join_config(), w, tree)
                .map_err(mls)?
                .into_group(&self.provider)
                .map_err(mls)?;
            Ok(g)
        })();
        match result {
            Ok(g) => {
                self.groups.insert(room.to_owned(), g);
                vec![Event::Joined {
                    room: room.to_owned(),
                }]
            }
            // A Welcome for another client of the same provider lands here too.
            Err(e) => vec![Event::Ignored {
                room: room.to_owned(),
                reason: format!("Welcome not for this client: {e}"),
            }],
        }
    }

    fn process_group_message(&mut self, room: &str, fm: &FanoutMessage) -> Vec<Event> {
        let ignored = |reason: String| {
            vec![Event::Ignored {
                room: room.to_owned(),
                reason,
            }]
        };
        let Some(group) = self.groups.get(room) else {
            return ignored("not a member".into());
        };
        if let (Some(e), MlsMessageBody::PublicMessage(_)) = (fm.message.epoch(), &fm.message.body)
            && e < group.epoch().as_u64()
        {
            return ignored(format!("handshake for past epoch {e}"));
        }
        let franking_key = group
            .extensions()
            .app_data_dictionary()
            .and_then(|d| d.dictionary().get(&ids::FRANKING_AGENT))
            .and_then(|b| FrankingAgentData::from_bytes(b).ok())
            .map(|f| f.franking_signature_key.0);
        let protocol = match fm
            .message
            .to_openmls()
            .and_then(|m| m.try_into_protocol_message().map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => return ignored(e),
        };
        let (provider, signer) = (&self.provider, &self.signer);
        let _ = signer;
        let Some(group) = self.groups.get_mut(room) else {
            return ignored("not a member".into());
        };
        let processed = match group.process_message(provider, protocol) {
            Ok(p) => p,
            Err(e) => return ignored(format!("MLS: {e}")),
        };
        let sender = user_of_credential(processed.credential()).unwrap_or_default();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let bytes = app.into_bytes();
                let message = match Message::decode(bytes) {
                    Ok(m) => m,
                    Err(e) => return ignored(format!("not MIMI content: {e}")),
                };
                let id = match message.id_with(&sender, room) {
                    Ok(id) => id,
                    Err(e) => return ignored(e.to_string()),
                };
                let ext = &message.content().extensions;
                if ext.sender_uri().is_some_and(|s| s != sender)
                    || ext.room_uri().is_some_and(|r| r != room)
                {
                    return ignored(
                        "senderUri or roomUri does not match the MLS sender and group".into(),
                    );
                }
                let frank_ok = match (&fm.extra, &franking_key) {
                    (FanoutExtra::Application { frank: Some(f) }, Some(key)) => {
                        Some(check_frank(provider, key, f, &sender, room, fm.timestamp))
                    }
                    (FanoutExtra::Application { frank: Some(_) }, None) => Some(false),
                    _ => None,
                };
                vec![Event::Message {
                    room: room.to_owned(),
                    sender,
                    message,
                    id,
                    timestamp: fm.timestamp,
                    frank_ok,
                }]
            }
            ProcessedMessageContent::ProposalMessage(qp) => {
                match group.store_pending_proposal(provider.storage(), *qp) {
                    Ok(()) => vec![Event::Proposed {
                        room: room.to_owned(),
                    }],
                    Err(e) => ignored(format!("cannot store proposal: {e:?}")),
                }
            }
            ProcessedMessageContent::StagedCommitMessage(sc) => self.merge(room, *sc),
            ProcessedMessageContent::UnresolvedAppDataCommit(u) => {
                let ops: Vec<(u16, AppDataOp)> = u
                    .app_data_update_proposals()
                    .map(|p| {
                        (
                            p.component_id(),
                            match p.operation() {
                                AppDataUpdateOperation::Update(d) => {
                                    AppDataOp::Update(d.as_slice().to_vec())
                                }
                                AppDataUpdateOperation::Remove => AppDataOp::Remove,
                            },
                        )
                    })
                    .collect();
                let Some(group) = self.groups.get(room) else {
                    return ignored("not a member".into());
                };
                let mut updater = group.app_data_dictionary_updater();
                let resolved = match mimi_proto::components::resolve_app_data(
                    |id| updater.old_value(id).map(<[u8]>::to_vec),
                    &ops,
                ) {
                    Ok(r) => r,
                    Err(e) => return ignored(e),
                };
                for (id, v) in resolved.changes {
                    match v {
                        Some(d) => updater.set(ComponentData::from_parts(id, d.into())),
                        None => updater.remove(&id),
                    }
                }
                let changes = updater.changes();
                match group.stage_app_data_commit(&self.provider, *u, changes) {
                    Ok(sc) => self.merge(room, sc),
                    Err(e) => ignored(format!("cannot stage commit: {e}")),
                }
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                ignored("external join proposals are not used".into())
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => ignored("own message".into()),
        }
    }

    fn merge(&mut self, room: &str, sc: StagedCommit) -> Vec<Event> {
        let removed = sc.self_removed();
        let provider = &self.provider;
        let Some(group) = self.groups.get_mut(room) else {
            return vec![];
        };
        if let Err(e) = group.merge_staged_commit(provider, sc) {
            return vec![Event::Ignored {
                room: room.to_owned(),
                reason: format!("cannot merge: {e:?}"),
            }];
        }
        if removed {
            self.groups.remove(room);
            return vec![Event::Removed {
                room: room.to_owned(),
            }];
        }
        vec![Event::Committed {
            room: room.to_owned(),
            epoch: group.epoch().as_u64(),
        }]
    }
}

fn check_frank(
    provider: &OpenMlsRustCrypto,
    key: &[u8],
    frank: &Frank,
    sender: &str,
    room: &str,
    ts: u64,
) -> bool {
    let ctx = mimi_proto::franking::ServerFrankingContext {
        sender_uri: Uri::from(sender),
        room_uri: Uri::from(room),
        accepted_timestamp: ts,
    };
    mimi_proto::franking::verify_frank(provider.crypto(), key, frank, &ctx).is_ok()
}
