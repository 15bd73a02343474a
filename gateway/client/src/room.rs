//! Creating rooms, claiming KeyPackages, and the commits that change membership and roles.

use mimi_proto::codec::{Bytes, Uri, Wire};
use mimi_proto::components::{
    AppDataOp, BaseRoomPolicy, FrankingAgentData, ParticipantListData, ParticipantListUpdate,
    RoomMetaData, UserIndexRolePair, UserRolePair, capability, ids,
};
use mimi_proto::messages::{
    GroupInfoOption, HandshakeBundle, KeyMaterialRequest, Protocol, RatchetTreeOption,
};
use mimi_proto::mls::{MlsMessage, RequiredCapabilities};
use openmls::component::ComponentData;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

use crate::roles::role_def;
use crate::{
    CIPHERSUITE, ClientError, CreatedRoom, Member, RoomSetup, capabilities, mls, mls_body,
    participant_list, role, user_of_credential,
};

impl Member {
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

    /// A last-resort KeyPackage (RFC 9420 §16.8, the `last_resort` extension): the gateway
    /// hands it out when no other is left and never consumes it, so this client stays
    /// reachable however many KeyPackages others claim.
    ///
    /// # Errors
    /// [`ClientError::Mls`].
    pub fn last_resort_key_package(&self) -> Result<Vec<u8>, ClientError> {
        let b = KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .mark_as_last_resort()
            .build(CIPHERSUITE, &self.provider, &self.signer, self.cwk())
            .map_err(mls)?;
        b.key_package().tls_serialize_detached().map_err(mls)
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
    /// [`ClientError::Protocol`] when the response does not decode;
    /// [`ClientError::Invalid`] when the target's provider gave no KeyPackage (unknown user,
    /// no consent, nothing compatible), with its answer.
    pub fn key_packages_from_response(&self, response: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        use mimi_proto::messages::KeyMaterialUserCode as Code;
        let r = mimi_proto::messages::KeyMaterialResponse::from_bytes(response)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !matches!(r.user_status, Code::Success | Code::PartialSuccess) {
            return Err(ClientError::Invalid(format!(
                "{}: {} (no KeyPackage)",
                r.user_uri,
                r.user_status.name()
            )));
        }
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
        stage_app_data(&mut stage)?;
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
}

/// Computes the dictionary changes of a commit's AppDataUpdate proposals (the rule is
/// `mimi_proto::components::resolve_app_data`, the hub's too) and sets them on the stage.
pub(crate) fn stage_app_data<G: std::borrow::BorrowMut<MlsGroup>>(
    stage: &mut CommitBuilder<'_, LoadedPsks, G>,
) -> Result<(), ClientError> {
    let ops: Vec<(u16, AppDataOp)> = stage
        .app_data_update_proposals()
        .map(|p| {
            (
                p.component_id(),
                match p.operation() {
                    AppDataUpdateOperation::Update(d) => AppDataOp::Update(d.as_slice().to_vec()),
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
    Ok(())
}
