//! §5.6 GroupInfo.

use super::*;
use crate::codec::{Bytes, DecodeError, Reader, Seg, Uri, Wire};
use crate::mls::{Credential, Expect, ExternalSender, GroupInfo, HpkeCiphertext, MlsMessage};
use crate::{wire_enum, wire_struct};

wire_struct! {
    /// `GroupInfoRequest` (POST /groupInfo/{roomId}). `joiningCode` is `opaque<V>`, empty when
    /// absent, in the request and its TBS alike (decision D10).
    pub struct GroupInfoRequest as "GroupInfoRequest" {
        /// Always mls10.
        pub protocol: Protocol as "protocol",
        /// A suite shared with the hub; signs request and response.
        pub cipher_suite: u16 as "cipher_suite",
        /// The requester's signature key.
        pub requesting_signature_key: Bytes as "requestingSignatureKey",
        /// The requester's (possibly pseudonymous) credential.
        pub requesting_credential: Credential as "requestingCredential",
        /// HPKE key the response is encrypted to.
        pub group_info_public_key: Bytes as "groupInfoPublicKey",
        /// Optional joining code.
        pub joining_code: Bytes as "joiningCode",
        /// SignWithLabel(requestingSignatureKey, "GroupInfoRequestTBS", GroupInfoRequestTBS).
        pub signature: Bytes as "signature",
    }
}

impl GroupInfoRequest {
    /// Signature label.
    pub const LABEL: &'static str = "GroupInfoRequestTBS";

    /// `GroupInfoRequestTBS`.
    pub fn tbs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.protocol.encode(&mut out);
        self.cipher_suite.encode(&mut out);
        self.requesting_signature_key.encode(&mut out);
        self.requesting_credential.encode(&mut out);
        self.group_info_public_key.encode(&mut out);
        self.joining_code.encode(&mut out);
        out
    }
}

wire_enum! {
    /// `GroupInfoCode`.
    pub enum GroupInfoCode: u8 as "GroupInfoCode" {
        /// GroupInfo provided.
        Success = 1 as "success",
        /// Not authorized.
        NotAuthorized = 2 as "notAuthorized",
        /// No such room.
        NoSuchRoom = 3 as "noSuchRoom",
    }
    reserved [0]
}

/// `PendingProposal`: a proposal the hub accepted this epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingProposal {
    /// The proposal (PublicMessage).
    pub proposal: MlsMessage,
    /// When the hub accepted it.
    pub hub_accepted_time: u64,
}

impl Wire for PendingProposal {
    fn encode(&self, out: &mut Vec<u8>) {
        self.proposal.encode(out);
        self.hub_accepted_time.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("PendingProposal"), |r| {
            Ok(Self {
                proposal: r.at(Seg::Field("proposal"), |r| {
                    MlsMessage::decode_expecting(r, Expect::Handshake)
                })?,
                hub_accepted_time: r.field("hub_accepted_time")?,
            })
        })
    }
}

wire_struct! {
    /// `GroupInfoRatchetTreeTBE`: the plaintext of the encrypted GroupInfo response.
    pub struct GroupInfoRatchetTreeTbe as "GroupInfoRatchetTreeTBE" {
        /// The GroupInfo without ratchet_tree.
        pub group_info: GroupInfo as "groupInfo",
        /// How to get the tree.
        pub ratchet_tree_option: RatchetTreeOption as "ratchetTreeOption",
        /// Proposals accepted this epoch.
        pub pending_proposals: Vec<PendingProposal> as "pending_proposals",
    }
}

/// The successful part of a [`GroupInfoResponse`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInfoSuccess {
    /// Suite of the signature and HPKE.
    pub cipher_suite: u16,
    /// The hub as external sender (its key signs the response).
    pub hub_sender: ExternalSender,
    /// EncryptWithLabel(groupInfoPublicKey, "GroupInfo and ratchet_tree encryption", room_id, TBE).
    pub encrypted_groupinfo_and_tree: HpkeCiphertext,
    /// SignWithLabel(hub_sender.signature_key, "GroupInfoResponseTBS", TBS).
    pub signature: Bytes,
}

/// `GroupInfoResponse`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInfoResponse {
    /// Always mls10.
    pub version: Protocol,
    /// The room (its URI, decision D8).
    pub room_id: Uri,
    /// The result.
    pub status: GroupInfoCode,
    /// Present exactly when `status` is success.
    pub success: Option<GroupInfoSuccess>,
}

impl GroupInfoResponse {
    /// Signature label.
    pub const LABEL: &'static str = "GroupInfoResponseTBS";
    /// EncryptWithLabel label.
    pub const ENCRYPT_LABEL: &'static str = "GroupInfo and ratchet_tree encryption";

    /// `GroupInfoResponseTBS` (for a successful response).
    pub fn tbs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.version.encode(&mut out);
        self.room_id.encode(&mut out);
        self.status.encode(&mut out);
        if let Some(s) = &self.success {
            s.cipher_suite.encode(&mut out);
            s.hub_sender.encode(&mut out);
            s.encrypted_groupinfo_and_tree.encode(&mut out);
        }
        out
    }
}

impl Wire for GroupInfoResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tbs());
        if let Some(s) = &self.success {
            s.signature.encode(out);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("GroupInfoResponse"), |r| {
            let version = r.field("version")?;
            let room_id = r.field("room_id")?;
            let status: GroupInfoCode = r.field("status")?;
            let success = match status {
                GroupInfoCode::Success => Some(GroupInfoSuccess {
                    cipher_suite: r.field("cipher_suite")?,
                    hub_sender: r.field("hub_sender")?,
                    encrypted_groupinfo_and_tree: r.field("encrypted_groupinfo_and_tree")?,
                    signature: r.field("signature")?,
                }),
                _ => None,
            };
            Ok(Self {
                version,
                room_id,
                status,
                success,
            })
        })
    }
}
