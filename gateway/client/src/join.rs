//! External joins: GroupInfo requests and external commits.

use mimi_proto::codec::{Bytes, Uri, Wire};
use mimi_proto::components::{ParticipantListUpdate, UserRolePair, ids};
use mimi_proto::messages::{
    GroupInfoCode, GroupInfoOption, GroupInfoRatchetTreeTbe, GroupInfoRequest, GroupInfoResponse,
    HandshakeBundle, Protocol, RatchetTreeOption,
};
use mimi_proto::mls::MlsMessage;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

use crate::room::stage_app_data;
use crate::{CIPHERSUITE, ClientError, GroupInfoKey, Member, capabilities, join_config, mls};

impl Member {
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

    /// Joins `room` by external commit from the hub's GroupInfoResponse, as a new device of a
    /// participant; returns the UpdateRequest body (then [`Member::commit_accepted`]).
    ///
    /// # Errors
    /// [`ClientError`] (refused, bad signature, undecryptable).
    pub fn external_join(
        &mut self,
        room: &str,
        response: &[u8],
        key: &GroupInfoKey,
    ) -> Result<Vec<u8>, ClientError> {
        self.join_by_external_commit(room, response, key, None)
    }

    /// Joins an open room (role 0 may open-join) by external commit that also adds this
    /// member's user to the participant list with `role`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn open_join(
        &mut self,
        room: &str,
        response: &[u8],
        key: &GroupInfoKey,
        role: u32,
    ) -> Result<Vec<u8>, ClientError> {
        self.join_by_external_commit(room, response, key, Some(role))
    }

    fn join_by_external_commit(
        &mut self,
        room: &str,
        response: &[u8],
        key: &GroupInfoKey,
        self_add: Option<u32>,
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
        let tree = ratchet_tree
            .to_openmls()
            .map_err(|e| ClientError::Mls(e.to_string()))?;
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
        let mut builder = MlsGroup::external_commit_builder()
            .with_config(join_config())
            .with_ratchet_tree(tree)
            .with_proposals(proposals)
            .build_group(&self.provider, vgi, self.cwk())
            .map_err(mls)?
            .leaf_node_parameters(
                LeafNodeParameters::builder()
                    .with_capabilities(capabilities())
                    .build(),
            );
        if let Some(role) = self_add {
            let update = ParticipantListUpdate {
                changed_role_participants: vec![],
                removed_indices: vec![],
                added_participants: vec![UserRolePair {
                    user: Uri::from(self.user.as_str()),
                    role_index: role,
                }],
            };
            builder = builder.add_app_data_update_proposal(AppDataUpdateProposal::update(
                ids::PARTICIPANT_LIST,
                update.to_bytes(),
            ));
        }
        let mut stage = builder
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .create_group_info(true);
        stage_app_data(&mut stage)?;
        let (group, bundle) = stage
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
}
