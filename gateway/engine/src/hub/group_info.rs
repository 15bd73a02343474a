//! `/groupInfo`: the GroupInfo, ratchet tree and pending proposals of the current epoch,
//! encrypted to the requester's key and signed by the hub, for external joins. Only for a
//! participant that may add its own clients, or anyone when the room is open; an unknown room
//! and a forbidden one get the same answer.

use bytes::Bytes;
use mimi_proto::codec::{Bytes as WireBytes, Uri, Wire};
use mimi_proto::messages::{
    GroupInfoCode, GroupInfoRatchetTreeTbe, GroupInfoRequest, GroupInfoResponse, GroupInfoSuccess,
    PendingProposal, Protocol, RatchetTreeOption,
};
use mimi_proto::mls::{GroupInfo, MlsMessage, RatchetTree};
use mimi_proto::uri::{ClientUri, RoomUri};
use openmls::prelude::tls_codec::Serialize as _;
use openmls_traits::crypto::OpenMlsCrypto;

use super::{Caller, group_info_code};
use crate::{Engine, Refusal, RequestId, Response};

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_group_info(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        body: &Bytes,
    ) {
        let req = match GroupInfoRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::malformed("GroupInfoRequest", e)),
        };
        if mimi_proto::crypto::verify_with_label(
            &self.crypto,
            req.cipher_suite,
            &req.requesting_signature_key,
            GroupInfoRequest::LABEL,
            &req.tbs(),
            &req.signature,
        )
        .is_err()
        {
            return self.refuse(id, Refusal::BadSignature("GroupInfoRequest"));
        }
        let client = match req
            .requesting_credential
            .basic_identity()
            .ok_or(mimi_proto::uri::UriError::NotMimi(String::new()))
            .and_then(ClientUri::from_credential_identity)
        {
            Ok(c) => c,
            Err(e) => return self.refuse(id, Refusal::uri("requestingCredential", e)),
        };
        let user = client.user();
        if !caller.speaks_for(&user) {
            return self.refuse(id, caller.not_yours(user.as_str(), "request a GroupInfo"));
        }
        let Some(r) = self.hub.rooms.get_ref(room) else {
            return;
        };
        let policy = r.effective_policy().unwrap_or_default();
        let cap = mimi_proto::components::capability::CAN_OPEN_JOIN;
        let allowed = if policy.role_of(user.as_str()) == 0 {
            policy.roles.role(0).is_some_and(|r0| r0.can(cap))
        } else {
            !policy.is_banned(user.as_str())
                && policy.can(
                    user.as_str(),
                    mimi_proto::components::capability::CAN_ADD_OWN_CLIENT,
                )
        };
        let group_info = GroupInfo::from_bytes(&r.row.group_info);
        let (true, Ok(group_info)) = (allowed, group_info) else {
            return self.respond(
                id,
                group_info_code(room.as_str(), GroupInfoCode::NotAuthorized),
            );
        };
        let pending = r
            .pending
            .iter()
            .filter_map(|p| {
                MlsMessage::from_bytes(&p.message)
                    .ok()
                    .map(|proposal| PendingProposal {
                        proposal,
                        hub_accepted_time: p.accepted_ms,
                    })
            })
            .collect();
        let tree = r
            .group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .ok()
            .and_then(|b| RatchetTree::from_openmls_bytes(&b).ok())
            .unwrap_or_else(|| RatchetTree(WireBytes::default()));
        let tbe = GroupInfoRatchetTreeTbe {
            group_info,
            ratchet_tree_option: RatchetTreeOption::Full { ratchet_tree: tree },
            pending_proposals: pending,
        };
        let ct = match mimi_proto::crypto::encrypt_with_label(
            &self.crypto,
            req.cipher_suite,
            &req.group_info_public_key,
            GroupInfoResponse::ENCRYPT_LABEL,
            room.as_str().as_bytes(),
            &tbe.to_bytes(),
        ) {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(
                    id,
                    Refusal::Invalid(format!("cannot encrypt to groupInfoPublicKey: {e}")),
                );
            }
        };
        let mut resp = GroupInfoResponse {
            version: Protocol::Mls10,
            room_id: Uri::from(room),
            status: GroupInfoCode::Success,
            success: Some(GroupInfoSuccess {
                cipher_suite: req.cipher_suite,
                hub_sender: self.external_sender(),
                encrypted_groupinfo_and_tree: ct,
                signature: WireBytes::default(),
            }),
        };
        match mimi_proto::crypto::sign_with_label(
            &self.cfg.hub_signer,
            GroupInfoResponse::LABEL,
            &resp.tbs(),
        ) {
            Ok(sig) => {
                if let Some(s) = &mut resp.success {
                    s.signature = WireBytes(sig);
                }
                self.respond(id, Response::mimi(resp.to_bytes()));
            }
            Err(e) => self.internal_error(id, format!("signing a GroupInfoResponse: {e}")),
        }
    }
}
