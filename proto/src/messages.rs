//! Request and response bodies of draft-ietf-mimi-protocol-06 §5.
//!
//! Where the draft is ambiguous the decision taken is noted on the type and collected in
//! `docs/protocol-decisions.md` (D1, D2, ...).

use crate::codec::{Bytes, DecodeError, ErrorKind, Fixed32, Reader, Seg, Uri, Utf8, Wire};
use crate::components::AppDataDictionary;
use crate::mls::{
    Capabilities, ContentType, Credential, Expect, Extension, ExternalSender, GroupInfo,
    HashReference, HpkeCiphertext, KeyPackage, MlsMessage, RatchetTree, RequiredCapabilities,
    Welcome,
};
use crate::{wire_enum, wire_struct};

wire_enum! {
    /// `Protocol`: the end-to-end protocol of a room.
    pub enum Protocol: u8 as "Protocol" {
        /// MLS 1.0.
        Mls10 = 1 as "mls10",
    }
    reserved [0]
}

// ------------------------------------------------------------------------------------------
// §5.2 Fetch key material

wire_struct! {
    /// `KeyMaterialRequest` (POST /keyMaterial/{targetUser}).
    pub struct KeyMaterialRequest as "KeyMaterialRequest" {
        /// Always mls10.
        pub protocol: Protocol as "protocol",
        /// Who asks (must belong to the requesting provider).
        pub requesting_user: Uri as "requestingUser",
        /// Whose KeyPackages are claimed.
        pub target_user: Uri as "targetUser",
        /// The room they are for (empty when not adding to a room, decision D11).
        pub room_id: Uri as "roomId",
        /// Non-empty list of acceptable cipher suites.
        pub acceptable_ciphersuites: Vec<u16> as "acceptableCiphersuites",
        /// Required capabilities of the room.
        pub required_capabilities: RequiredCapabilities as "requiredCapabilities",
        /// The requester's signature key.
        pub requester_signature_key: Bytes as "requesterSignatureKey",
        /// The requester's credential.
        pub requester_credential: Credential as "requesterCredential",
        /// SignWithLabel(requesterSignatureKey, "KeyMaterialRequestTBS", KeyMaterialRequestTBS).
        pub key_material_request_signature: Bytes as "key_material_request_signature",
    }
}

impl KeyMaterialRequest {
    /// `KeyMaterialRequestTBS`: every field but the signature.
    pub fn tbs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.protocol.encode(&mut out);
        self.requesting_user.encode(&mut out);
        self.target_user.encode(&mut out);
        self.room_id.encode(&mut out);
        self.acceptable_ciphersuites.encode(&mut out);
        self.required_capabilities.encode(&mut out);
        self.requester_signature_key.encode(&mut out);
        self.requester_credential.encode(&mut out);
        out
    }

    /// The cipher suite whose signature scheme signs the request (decision D12: the first
    /// acceptable one).
    pub fn signing_suite(&self) -> Option<u16> {
        self.acceptable_ciphersuites.first().copied()
    }

    /// Signature label.
    pub const LABEL: &'static str = "KeyMaterialRequestTBS";
}

wire_enum! {
    /// `KeyMaterialUserCode`.
    pub enum KeyMaterialUserCode: u8 as "KeyMaterialUserCode" {
        /// Material for every client.
        Success = 0 as "success",
        /// Material for some clients.
        PartialSuccess = 1 as "partialSuccess",
        /// No common protocol.
        IncompatibleProtocol = 2 as "incompatibleProtocol",
        /// Nothing matches the required capabilities.
        NoCompatibleMaterial = 3 as "noCompatibleMaterial",
        /// Unknown user.
        UserUnknown = 4 as "userUnknown",
        /// No consent.
        NoConsent = 5 as "noConsent",
        /// No consent for this room.
        NoConsentForThisRoom = 6 as "noConsentForThisRoom",
        /// The user was deleted.
        UserDeleted = 7 as "userDeleted",
    }
}

wire_enum! {
    /// `KeyMaterialClientCode`.
    pub enum KeyMaterialClientCode: u8 as "KeyMaterialClientCode" {
        /// A KeyPackage follows.
        Success = 0 as "success",
        /// The client has none left.
        KeyMaterialExhausted = 1 as "keyMaterialExhausted",
        /// None compatible; capabilities may follow.
        NothingCompatible = 2 as "nothingCompatible",
    }
}

/// `ClientKeyMaterial`: one client's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "clientStatus")]
#[allow(clippy::large_enum_variant)] // one short-lived value per decoded body; boxing buys nothing
pub enum ClientKeyMaterial {
    /// A KeyPackage for the client.
    #[serde(rename = "success")]
    Success {
        /// The client.
        #[serde(rename = "clientUri")]
        client_uri: Uri,
        /// Its KeyPackage (never handed out twice).
        #[serde(rename = "keyPackage")]
        key_package: KeyPackage,
    },
    /// No KeyPackage left.
    #[serde(rename = "keyMaterialExhausted")]
    KeyMaterialExhausted {
        /// The client.
        #[serde(rename = "clientUri")]
        client_uri: Uri,
    },
    /// Nothing compatible with the required capabilities.
    #[serde(rename = "nothingCompatible")]
    NothingCompatible {
        /// The client.
        #[serde(rename = "clientUri")]
        client_uri: Uri,
        /// Its capabilities, unless withheld for privacy.
        #[serde(rename = "clientCapabilities")]
        client_capabilities: Option<Capabilities>,
    },
}

impl ClientKeyMaterial {
    /// The client's URI.
    pub fn client_uri(&self) -> &Uri {
        match self {
            Self::Success { client_uri, .. }
            | Self::KeyMaterialExhausted { client_uri }
            | Self::NothingCompatible { client_uri, .. } => client_uri,
        }
    }

    /// The status code.
    pub fn status(&self) -> KeyMaterialClientCode {
        match self {
            Self::Success { .. } => KeyMaterialClientCode::Success,
            Self::KeyMaterialExhausted { .. } => KeyMaterialClientCode::KeyMaterialExhausted,
            Self::NothingCompatible { .. } => KeyMaterialClientCode::NothingCompatible,
        }
    }
}

impl Wire for ClientKeyMaterial {
    fn encode(&self, out: &mut Vec<u8>) {
        self.status().encode(out);
        self.client_uri().encode(out);
        match self {
            Self::Success { key_package, .. } => key_package.encode(out),
            Self::KeyMaterialExhausted { .. } => {}
            Self::NothingCompatible {
                client_capabilities,
                ..
            } => client_capabilities.encode(out),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("ClientKeyMaterial"), |r| {
            let status: KeyMaterialClientCode = r.field("clientStatus")?;
            let client_uri = r.field("clientUri")?;
            Ok(match status {
                KeyMaterialClientCode::Success => Self::Success {
                    client_uri,
                    key_package: r.field("keyPackage")?,
                },
                KeyMaterialClientCode::KeyMaterialExhausted => {
                    Self::KeyMaterialExhausted { client_uri }
                }
                KeyMaterialClientCode::NothingCompatible => Self::NothingCompatible {
                    client_uri,
                    client_capabilities: r.field("clientCapabilities")?,
                },
            })
        })
    }
}

/// `KeyMaterialResponse`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMaterialResponse {
    /// Always mls10.
    pub protocol: Protocol,
    /// The user-level result.
    #[serde(rename = "userStatus")]
    pub user_status: KeyMaterialUserCode,
    /// The target user.
    #[serde(rename = "userUri")]
    pub user_uri: Uri,
    /// Per-client results (only for success, partialSuccess and noCompatibleMaterial).
    pub clients: Vec<ClientKeyMaterial>,
}

impl Wire for KeyMaterialResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        self.protocol.encode(out);
        self.user_status.encode(out);
        self.user_uri.encode(out);
        self.clients.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("KeyMaterialResponse"), |r| {
            let protocol = r.field("protocol")?;
            let user_status: KeyMaterialUserCode = r.field("userStatus")?;
            let user_uri = r.field("userUri")?;
            let at = r.pos();
            let clients: Vec<ClientKeyMaterial> = r.field("clients")?;
            let may_list = matches!(
                user_status,
                KeyMaterialUserCode::Success
                    | KeyMaterialUserCode::PartialSuccess
                    | KeyMaterialUserCode::NoCompatibleMaterial
            );
            if !may_list && !clients.is_empty() {
                return Err(r.err(
                    at,
                    ErrorKind::Invalid(format!(
                        "clients must be empty when userStatus is {}",
                        user_status.name()
                    )),
                ));
            }
            Ok(Self {
                protocol,
                user_status,
                user_uri,
                clients,
            })
        })
    }
}

// ------------------------------------------------------------------------------------------
// §5.3 Update room state

wire_enum! {
    /// `RatchetTreeRepresentation` (draft-mahy-mls-ratchet-tree-options-03).
    pub enum RatchetTreeRepresentation: u8 as "RatchetTreeRepresentation" {
        /// The tree inline.
        Full = 1 as "full",
        /// At an HTTPS URL.
        HttpsUri = 2 as "httpsUri",
        /// Out of band.
        OutOfBand = 3 as "outOfBand",
        /// Rebuilt by the distribution service (the hub).
        DistributionService = 4 as "distributionService",
    }
    reserved [0]
}

/// `RatchetTreeOption` (draft-mahy-mls-ratchet-tree-options-03 §3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "representation")]
pub enum RatchetTreeOption {
    /// The whole `ratchet_tree` (decision D13: the RFC 9420 `optional<Node>` vector).
    #[serde(rename = "full")]
    Full {
        /// The tree.
        ratchet_tree: RatchetTree,
    },
    /// Download from an HTTPS URL.
    #[serde(rename = "httpsUri")]
    HttpsUri {
        /// The URL.
        ratchet_tree_url: Uri,
        /// Signature over the tree.
        tree_signature: Bytes,
    },
    /// Conveyed out of band.
    #[serde(rename = "outOfBand")]
    OutOfBand {
        /// Signature over the tree.
        tree_signature: Bytes,
    },
    /// The hub rebuilds it from the public handshakes.
    #[serde(rename = "distributionService")]
    DistributionService,
}

impl Wire for RatchetTreeOption {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Full { ratchet_tree } => {
                out.push(1);
                ratchet_tree.encode(out);
            }
            Self::HttpsUri {
                ratchet_tree_url,
                tree_signature,
            } => {
                out.push(2);
                ratchet_tree_url.encode(out);
                tree_signature.encode(out);
            }
            Self::OutOfBand { tree_signature } => {
                out.push(3);
                tree_signature.encode(out);
            }
            Self::DistributionService => out.push(4),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("RatchetTreeOption"), |r| {
            Ok(
                match r.field::<RatchetTreeRepresentation>("representation")? {
                    RatchetTreeRepresentation::Full => Self::Full {
                        ratchet_tree: r.field("ratchet_tree")?,
                    },
                    RatchetTreeRepresentation::HttpsUri => Self::HttpsUri {
                        ratchet_tree_url: r.field("ratchet_tree_url")?,
                        tree_signature: r.field("tree_signature")?,
                    },
                    RatchetTreeRepresentation::OutOfBand => Self::OutOfBand {
                        tree_signature: r.field("tree_signature")?,
                    },
                    RatchetTreeRepresentation::DistributionService => Self::DistributionService,
                },
            )
        })
    }
}

wire_enum! {
    /// `RatchetTreePresence`.
    pub enum RatchetTreePresence: u8 as "RatchetTreePresence" {
        /// In neither epoch.
        NoRatchetTree = 0 as "no_ratchet_tree",
        /// In both epochs.
        Present = 1 as "present",
        /// In the previous epoch only.
        Removed = 2 as "removed",
        /// In the current epoch only.
        Added = 3 as "added",
    }
}

wire_struct! {
    /// `PartialGroupInfo`: what the hub needs to rebuild a GroupInfo.
    pub struct PartialGroupInfo as "PartialGroupInfo" {
        /// Whether a ratchet_tree extension is present across the epochs.
        pub ratchet_tree_presence: RatchetTreePresence as "ratchet_tree_presence",
        /// GroupInfo extensions other than ratchet_tree.
        pub group_info_extensions: Vec<Extension> as "group_info_extensions",
        /// The committer's GroupInfo signature.
        pub signature: Bytes as "signature",
    }
}

/// `GroupInfoOption`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "representation")]
pub enum GroupInfoOption {
    /// The complete GroupInfo.
    #[serde(rename = "full")]
    Full {
        /// It.
        #[serde(rename = "groupInfo")]
        group_info: GroupInfo,
    },
    /// A PartialGroupInfo for the hub to complete.
    #[serde(rename = "partial")]
    Partial {
        /// It.
        #[serde(rename = "partialGroupInfo")]
        partial_group_info: PartialGroupInfo,
    },
}

impl Wire for GroupInfoOption {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Full { group_info } => {
                out.push(1);
                group_info.encode(out);
            }
            Self::Partial { partial_group_info } => {
                out.push(2);
                partial_group_info.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("GroupInfoOption"), |r| {
            let representation = r.at(Seg::Field("representation"), |r| {
                let at = r.pos();
                match u8::decode(r)? {
                    0 => Err(r.err(
                        at,
                        ErrorKind::Reserved {
                            name: "GroupInfoRepresentation",
                            value: 0,
                        },
                    )),
                    v @ 1..=2 => Ok(v),
                    v => Err(r.err(
                        at,
                        ErrorKind::UnknownValue {
                            name: "GroupInfoRepresentation",
                            value: u64::from(v),
                        },
                    )),
                }
            })?;
            if representation == 1 {
                Ok(Self::Full {
                    group_info: r.field("groupInfo")?,
                })
            } else {
                Ok(Self::Partial {
                    partial_group_info: r.field("partialGroupInfo")?,
                })
            }
        })
    }
}

/// `HandshakeBundle`, the body of `UpdateRequest` (POST /update/{roomId}); the `select
/// (room.protocol)` has no bytes on the wire (decision D6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "content_type")]
#[allow(clippy::large_enum_variant)] // one short-lived value per decoded body; boxing buys nothing
pub enum HandshakeBundle {
    /// A commit with what the hub needs to route and serve it.
    #[serde(rename = "commit")]
    Commit {
        /// The commit (a PublicMessage).
        #[serde(rename = "proposalOrCommit")]
        commit: MlsMessage,
        /// The Welcome for added members, without ratchet_tree.
        welcome: Option<Welcome>,
        /// The new epoch's GroupInfo.
        #[serde(rename = "groupInfoOption")]
        group_info_option: GroupInfoOption,
        /// How to get the new epoch's tree.
        #[serde(rename = "ratchetTreeOption")]
        ratchet_tree_option: RatchetTreeOption,
    },
    /// One or more proposals.
    #[serde(rename = "proposal")]
    Proposal {
        /// The first proposal.
        #[serde(rename = "proposalOrCommit")]
        proposal: MlsMessage,
        /// Further proposals.
        #[serde(rename = "moreProposals")]
        more_proposals: Vec<MlsMessage>,
    },
}

/// `UpdateRequest`: for MLS 1.0 exactly a [`HandshakeBundle`].
pub type UpdateRequest = HandshakeBundle;

impl HandshakeBundle {
    /// The commit or first proposal.
    pub fn proposal_or_commit(&self) -> &MlsMessage {
        match self {
            Self::Commit { commit, .. } => commit,
            Self::Proposal { proposal, .. } => proposal,
        }
    }
}

fn decode_handshakes(
    r: &mut Reader<'_>,
    want: ContentType,
) -> Result<Vec<MlsMessage>, DecodeError> {
    let (len, _) = r.bounded_length(crate::codec::MAX_VECTOR_LEN)?;
    r.within(len, |r| {
        let mut out = Vec::new();
        while !r.is_empty() {
            let m = r.at(Seg::Index(out.len()), |r| {
                let at = r.pos();
                let m = MlsMessage::decode_expecting(r, Expect::Handshake)?;
                if m.content_type() != Some(want) {
                    return Err(r.err(
                        at,
                        ErrorKind::WrongContentType {
                            expected: want.name(),
                            found: m.content_type().map_or(0, ContentType::value),
                        },
                    ));
                }
                Ok(m)
            })?;
            out.push(m);
        }
        Ok(out)
    })
}

impl Wire for HandshakeBundle {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Commit {
                commit,
                welcome,
                group_info_option,
                ratchet_tree_option,
            } => {
                commit.encode(out);
                welcome.encode(out);
                group_info_option.encode(out);
                ratchet_tree_option.encode(out);
            }
            Self::Proposal {
                proposal,
                more_proposals,
            } => {
                proposal.encode(out);
                more_proposals.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("HandshakeBundle"), |r| {
            let m = r.at(Seg::Field("proposalOrCommit"), |r| {
                MlsMessage::decode_expecting(r, Expect::Handshake)
            })?;
            Ok(match m.content_type() {
                Some(ContentType::Commit) => Self::Commit {
                    commit: m,
                    welcome: r.field("welcome")?,
                    group_info_option: r.field("groupInfoOption")?,
                    ratchet_tree_option: r.field("ratchetTreeOption")?,
                },
                _ => Self::Proposal {
                    proposal: m,
                    more_proposals: r.at(Seg::Field("moreProposals"), |r| {
                        decode_handshakes(r, ContentType::Proposal)
                    })?,
                },
            })
        })
    }
}

wire_enum! {
    /// `UpdateResponseCode`.
    pub enum UpdateResponseCode: u8 as "UpdateResponseCode" {
        /// Accepted; will be distributed.
        Success = 0 as "success",
        /// The hub is at another epoch.
        WrongEpoch = 1 as "wrongEpoch",
        /// Refused by policy.
        NotAllowed = 2 as "notAllowed",
        /// Some proposals are invalid.
        InvalidProposal = 3 as "invalidProposal",
    }
}

/// The outcome in an [`UpdateRoomResponse`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "responseCode")]
pub enum UpdateOutcome {
    /// Accepted at this hub time (ms).
    #[serde(rename = "success")]
    Success {
        /// Hub acceptance time, ms since the UNIX epoch.
        accepted_timestamp: u64,
    },
    /// The hub's current epoch.
    #[serde(rename = "wrongEpoch")]
    WrongEpoch {
        /// The room's MLS epoch.
        #[serde(rename = "currentEpoch")]
        current_epoch: u64,
    },
    /// Refused by policy.
    #[serde(rename = "notAllowed")]
    NotAllowed,
    /// These proposals are invalid.
    #[serde(rename = "invalidProposal")]
    InvalidProposal {
        /// Their ProposalRefs.
        #[serde(rename = "invalidProposals")]
        invalid_proposals: Vec<HashReference>,
    },
}

/// `UpdateRoomResponse`; `string errorDescription` is `opaque<V>` UTF-8 (decision D8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdateRoomResponse {
    /// Human-readable detail (may be empty).
    #[serde(rename = "errorDescription")]
    pub error_description: Utf8,
    /// The result.
    #[serde(flatten)]
    pub outcome: UpdateOutcome,
}

impl UpdateRoomResponse {
    /// The response code.
    pub fn code(&self) -> UpdateResponseCode {
        match self.outcome {
            UpdateOutcome::Success { .. } => UpdateResponseCode::Success,
            UpdateOutcome::WrongEpoch { .. } => UpdateResponseCode::WrongEpoch,
            UpdateOutcome::NotAllowed => UpdateResponseCode::NotAllowed,
            UpdateOutcome::InvalidProposal { .. } => UpdateResponseCode::InvalidProposal,
        }
    }
}

impl Wire for UpdateRoomResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        self.code().encode(out);
        self.error_description.encode(out);
        match &self.outcome {
            UpdateOutcome::Success { accepted_timestamp } => accepted_timestamp.encode(out),
            UpdateOutcome::WrongEpoch { current_epoch } => current_epoch.encode(out),
            UpdateOutcome::NotAllowed => {}
            UpdateOutcome::InvalidProposal { invalid_proposals } => invalid_proposals.encode(out),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("UpdateRoomResponse"), |r| {
            let code: UpdateResponseCode = r.field("responseCode")?;
            let error_description = r.field("errorDescription")?;
            let outcome = match code {
                UpdateResponseCode::Success => UpdateOutcome::Success {
                    accepted_timestamp: r.field("accepted_timestamp")?,
                },
                UpdateResponseCode::WrongEpoch => UpdateOutcome::WrongEpoch {
                    current_epoch: r.field("currentEpoch")?,
                },
                UpdateResponseCode::NotAllowed => UpdateOutcome::NotAllowed,
                UpdateResponseCode::InvalidProposal => UpdateOutcome::InvalidProposal {
                    invalid_proposals: r.field("invalidProposals")?,
                },
            };
            Ok(Self {
                error_description,
                outcome,
            })
        })
    }
}

// ------------------------------------------------------------------------------------------
// §5.4 Submit a message

/// `SubmitMessageRequest` (POST /submitMessage/{roomId}).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitMessageRequest {
    /// Always mls10.
    pub protocol: Protocol,
    /// A PrivateMessage with application content.
    #[serde(rename = "appMessage")]
    pub app_message: MlsMessage,
    /// The sender's user URI (an active participant).
    #[serde(rename = "sendingUri")]
    pub sending_uri: Uri,
}

impl Wire for SubmitMessageRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        self.protocol.encode(out);
        self.app_message.encode(out);
        self.sending_uri.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("SubmitMessageRequest"), |r| {
            Ok(Self {
                protocol: r.field("protocol")?,
                app_message: r.at(Seg::Field("appMessage"), |r| {
                    MlsMessage::decode_expecting(r, Expect::Application)
                })?,
                sending_uri: r.field("sendingUri")?,
            })
        })
    }
}

wire_struct! {
    /// `Frank`: the hub's stamp on an application message.
    pub struct Frank as "Frank" {
        /// HMAC_SHA256(hub_key, franking_tag || context).
        pub server_frank: Fixed32 as "server_frank",
        /// The room's cipher suite when franked.
        pub franking_signature_ciphersuite: u16 as "franking_signature_ciphersuite",
        /// SignWithLabel(franking key, "FrankingIntegrityTBS", FrankingIntegrityTBS).
        pub franking_integrity_signature: Bytes as "franking_integrity_signature",
    }
}

wire_enum! {
    /// `SubmitResponseCode`.
    pub enum SubmitResponseCode: u8 as "SubmitResponseCode" {
        /// Accepted (the draft's `case success`, decision D9).
        Accepted = 0 as "accepted",
        /// Refused by policy (also for nonsense input).
        NotAllowed = 1 as "notAllowed",
        /// The hub is at a newer epoch.
        EpochTooOld = 2 as "epochTooOld",
    }
}

/// The outcome in a [`SubmitMessageResponse`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "statusCode")]
pub enum SubmitOutcome {
    /// Accepted at this hub time.
    #[serde(rename = "accepted")]
    Accepted {
        /// Hub acceptance time, ms since the UNIX epoch.
        accepted_timestamp: u64,
        /// The frank, when the message carried a franking tag.
        frank: Option<Frank>,
    },
    /// Refused.
    #[serde(rename = "notAllowed")]
    NotAllowed,
    /// The epoch is too old.
    #[serde(rename = "epochTooOld")]
    EpochTooOld {
        /// The room's MLS epoch.
        #[serde(rename = "currentEpoch")]
        current_epoch: u64,
    },
}

/// `SubmitMessageResponse`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmitMessageResponse {
    /// Always mls10.
    pub protocol: Protocol,
    /// The result.
    #[serde(flatten)]
    pub outcome: SubmitOutcome,
}

impl Wire for SubmitMessageResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        self.protocol.encode(out);
        match &self.outcome {
            SubmitOutcome::Accepted {
                accepted_timestamp,
                frank,
            } => {
                SubmitResponseCode::Accepted.encode(out);
                accepted_timestamp.encode(out);
                frank.encode(out);
            }
            SubmitOutcome::NotAllowed => SubmitResponseCode::NotAllowed.encode(out),
            SubmitOutcome::EpochTooOld { current_epoch } => {
                SubmitResponseCode::EpochTooOld.encode(out);
                current_epoch.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("SubmitMessageResponse"), |r| {
            let protocol = r.field("protocol")?;
            let outcome = match r.field::<SubmitResponseCode>("statusCode")? {
                SubmitResponseCode::Accepted => SubmitOutcome::Accepted {
                    accepted_timestamp: r.field("accepted_timestamp")?,
                    frank: r.field("frank")?,
                },
                SubmitResponseCode::NotAllowed => SubmitOutcome::NotAllowed,
                SubmitResponseCode::EpochTooOld => SubmitOutcome::EpochTooOld {
                    current_epoch: r.field("currentEpoch")?,
                },
            };
            Ok(Self { protocol, outcome })
        })
    }
}

// ------------------------------------------------------------------------------------------
// §5.5 Fanout

/// What follows the message in a [`FanoutMessage`], selected by the message's wire format and
/// content type (decision D7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
pub enum FanoutExtra {
    /// An application PrivateMessage and its optional frank.
    #[serde(rename = "application")]
    Application {
        /// The hub's frank.
        frank: Option<Frank>,
    },
    /// A Welcome and how to get the tree.
    #[serde(rename = "welcome")]
    Welcome {
        /// How the new member gets the ratchet tree.
        #[serde(rename = "ratchetTreeOption")]
        ratchet_tree_option: RatchetTreeOption,
    },
    /// Proposals: the same list as the HandshakeBundle's moreProposals.
    #[serde(rename = "proposal")]
    Proposal {
        /// Further proposals.
        #[serde(rename = "moreProposals")]
        more_proposals: Vec<MlsMessage>,
    },
    /// A commit, with the hub's regenerated proposals stapled to an external commit.
    #[serde(rename = "commit")]
    Commit {
        /// Regenerated hub proposals.
        #[serde(rename = "externalProposals")]
        external_proposals: Vec<MlsMessage>,
    },
}

/// `FanoutMessage` (POST /notify/{roomId}); no protocol field on the wire (decision D6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FanoutMessage {
    /// Hub acceptance time, ms since the UNIX epoch.
    pub timestamp: u64,
    /// The application message, handshake or Welcome.
    pub message: MlsMessage,
    /// The selected trailer.
    #[serde(flatten)]
    pub extra: FanoutExtra,
}

impl Wire for FanoutMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        self.timestamp.encode(out);
        self.message.encode(out);
        match &self.extra {
            FanoutExtra::Application { frank } => frank.encode(out),
            FanoutExtra::Welcome {
                ratchet_tree_option,
            } => ratchet_tree_option.encode(out),
            FanoutExtra::Proposal { more_proposals } => more_proposals.encode(out),
            FanoutExtra::Commit { external_proposals } => external_proposals.encode(out),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("FanoutMessage"), |r| {
            let timestamp = r.field("timestamp")?;
            let at = r.pos();
            let message: MlsMessage = r.field("message")?;
            let extra = match (message.wire_format(), message.content_type()) {
                (2, Some(ContentType::Application)) => FanoutExtra::Application { frank: r.field("frank")? },
                (3, _) => FanoutExtra::Welcome { ratchet_tree_option: r.field("ratchetTreeOption")? },
                (1, Some(ContentType::Proposal)) => FanoutExtra::Proposal { more_proposals: r.at(Seg::Field("moreProposals"), |r| decode_handshakes(r, ContentType::Proposal))? },
                (1, Some(ContentType::Commit)) => FanoutExtra::Commit { external_proposals: r.at(Seg::Field("externalProposals"), |r| decode_handshakes(r, ContentType::Proposal))? },
                (wf, _) => {
                    return Err(r.err(at, ErrorKind::WrongWireFormat { expected: "an application PrivateMessage, a Welcome, or a proposal or commit PublicMessage", found: wf }));
                }
            };
            Ok(Self { timestamp, message, extra })
        })
    }
}

/// A `/notify` body: one or more concatenated FanoutMessages for the same room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FanoutBatch(pub Vec<FanoutMessage>);

impl Wire for FanoutBatch {
    fn encode(&self, out: &mut Vec<u8>) {
        for m in &self.0 {
            m.encode(out);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut out = Vec::new();
        loop {
            out.push(r.at(Seg::Index(out.len()), FanoutMessage::decode)?);
            if r.is_empty() {
                return Ok(Self(out));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// §5.6 GroupInfo

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

// ------------------------------------------------------------------------------------------
// §5.7 Consent

wire_enum! {
    /// `ConsentOperation`.
    pub enum ConsentOperation: u8 as "ConsentOperation" {
        /// Withdraw an earlier request.
        Cancel = 0 as "cancel",
        /// Ask for consent.
        Request = 1 as "request",
        /// Grant consent (KeyPackages may follow).
        Grant = 2 as "grant",
        /// Revoke or pre-emptively deny.
        Revoke = 3 as "revoke",
    }
}

/// `ConsentEntry` (POST /requestConsent/..., /updateConsent/...). `RoomId` is an
/// IdentifierUri (decision D8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentEntry {
    /// What is asked or said.
    #[serde(rename = "consentOperation")]
    pub consent_operation: ConsentOperation,
    /// The user who will request KeyPackages.
    #[serde(rename = "requesterUri")]
    pub requester_uri: Uri,
    /// The user whose consent it is.
    #[serde(rename = "targetUri")]
    pub target_uri: Uri,
    /// Only for this room (absent = any room).
    #[serde(rename = "roomId")]
    pub room_id: Option<Uri>,
    /// With a grant: KeyPackages of the target (may be empty); ignored otherwise.
    #[serde(
        rename = "clientKeyPackages",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub client_key_packages: Vec<KeyPackage>,
    /// Extension point.
    pub consent_extensions: AppDataDictionary,
}

impl ConsentEntry {
    /// The scope this entry is about.
    pub fn scope(&self) -> ConsentScope {
        ConsentScope {
            requester_uri: self.requester_uri.clone(),
            target_uri: self.target_uri.clone(),
            room_id: self.room_id.clone(),
        }
    }
}

impl Wire for ConsentEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.consent_operation.encode(out);
        self.requester_uri.encode(out);
        self.target_uri.encode(out);
        self.room_id.encode(out);
        if self.consent_operation == ConsentOperation::Grant {
            self.client_key_packages.encode(out);
        }
        self.consent_extensions.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("ConsentEntry"), |r| {
            let consent_operation: ConsentOperation = r.field("consentOperation")?;
            let requester_uri = r.field("requesterUri")?;
            let target_uri = r.field("targetUri")?;
            let room_id = r.field("roomId")?;
            let client_key_packages = if consent_operation == ConsentOperation::Grant {
                r.field("clientKeyPackages")?
            } else {
                Vec::new()
            };
            Ok(Self {
                consent_operation,
                requester_uri,
                target_uri,
                room_id,
                client_key_packages,
                consent_extensions: r.field("consent_extensions")?,
            })
        })
    }
}

wire_struct! {
    /// `ConsentScope`.
    pub struct ConsentScope as "ConsentScope" {
        /// The requester.
        pub requester_uri: Uri as "requesterUri",
        /// The target.
        pub target_uri: Uri as "targetUri",
        /// One room, or any.
        pub room_id: Option<Uri> as "roomId",
    }
}

// ------------------------------------------------------------------------------------------
// §5.8 Identifier query

wire_enum! {
    /// `SearchIdentifierType`.
    pub enum SearchIdentifierType: u8 as "SearchIdentifierType" {
        /// The whole handle URI.
        Handle = 1 as "handle",
        /// The handle's user part.
        Nick = 2 as "nick",
        /// RFC 5322 addr-spec.
        Email = 3 as "email",
        /// "+E.164".
        Phone = 4 as "phone",
        /// Case-insensitive substring of name fields.
        PartialName = 5 as "partialName",
        /// Substring of any searchable field.
        WholeProfile = 6 as "wholeProfile",
        /// An OIDC standard claim (named).
        OidcStdClaim = 7 as "oidcStdClaim",
        /// A vCard property (named).
        VcardField = 8 as "vcardField",
    }
    reserved [0]
}

/// `QueryElement`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryElement {
    /// What to match.
    #[serde(rename = "searchType")]
    pub search_type: SearchIdentifierType,
    /// `claimName` (oidcStdClaim) or `propertyName` (vcardField); ignored otherwise.
    #[serde(rename = "fieldName", default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<Utf8>,
    /// The value to match (UTF-8).
    #[serde(rename = "searchValue")]
    pub search_value: Utf8,
}

impl Wire for QueryElement {
    fn encode(&self, out: &mut Vec<u8>) {
        self.search_type.encode(out);
        if matches!(
            self.search_type,
            SearchIdentifierType::OidcStdClaim | SearchIdentifierType::VcardField
        ) {
            self.field_name.clone().unwrap_or_default().encode(out);
        }
        self.search_value.encode(out);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("QueryElement"), |r| {
            let search_type: SearchIdentifierType = r.field("searchType")?;
            let field_name = match search_type {
                SearchIdentifierType::OidcStdClaim => Some(r.field("claimName")?),
                SearchIdentifierType::VcardField => Some(r.field("propertyName")?),
                _ => None,
            };
            Ok(Self {
                search_type,
                field_name,
                search_value: r.field("searchValue")?,
            })
        })
    }
}

wire_struct! {
    /// `IdentifierRequest` (POST /identifierQuery/{domain}); all elements must match.
    pub struct IdentifierRequest as "IdentifierRequest" {
        /// The query.
        pub query_elements: Vec<QueryElement> as "query_elements",
        /// Extension point.
        pub id_request_extensions: AppDataDictionary as "id_request_extensions",
    }
}

wire_enum! {
    /// `IdentifierQueryCode`.
    pub enum IdentifierQueryCode: u8 as "IdentifierQueryCode" {
        /// At least one match.
        Success = 0 as "success",
        /// No match.
        NotFound = 1 as "notFound",
        /// Query not specific enough.
        Ambiguous = 2 as "ambiguous",
        /// Not allowed.
        Forbidden = 3 as "forbidden",
        /// A field is not supported.
        UnsupportedField = 4 as "unsupportedField",
    }
}

wire_enum! {
    /// `FieldSource`.
    pub enum FieldSource: u8 as "FieldSource" {
        /// An OIDC standard claim.
        OidcStdClaim = 7 as "oidcStdClaim",
        /// A vCard property.
        VcardField = 8 as "vcardField",
    }
    reserved [0]
}

wire_struct! {
    /// `ProfileField`.
    pub struct ProfileField as "ProfileField" {
        /// Where the field name comes from.
        pub field_source: FieldSource as "fieldSource",
        /// The field's name (`string`, decision D8).
        pub field_name: Utf8 as "fieldName",
        /// Its value.
        pub field_value: Bytes as "fieldValue",
    }
}

wire_struct! {
    /// `UserProfile`.
    pub struct UserProfile as "UserProfile" {
        /// The user's stable URI.
        pub stable_uri: Uri as "stableUri",
        /// Disclosed fields.
        pub fields: Vec<ProfileField> as "fields",
    }
}

wire_struct! {
    /// `IdentifierResponse`.
    pub struct IdentifierResponse as "IdentifierResponse" {
        /// The result.
        pub response_code: IdentifierQueryCode as "responseCode",
        /// Matching URIs.
        pub uri: Vec<Uri> as "uri",
        /// Matching profiles.
        pub found_profiles: Vec<UserProfile> as "foundProfiles",
        /// Extension point.
        pub id_response_extensions: AppDataDictionary as "id_response_extensions",
    }
}

// ------------------------------------------------------------------------------------------
// §5.9 Report abuse

wire_struct! {
    /// `AbusiveMessage`.
    pub struct AbusiveMessage as "AbusiveMessage" {
        /// The decrypted content (e.g. MIMI content bytes).
        pub message_content: Bytes as "message_content",
        /// Its frank.
        pub frank: Frank as "frank",
        /// Its accepted timestamp.
        pub accepted_timestamp: u64 as "accepted_timestamp",
    }
}

wire_struct! {
    /// `AbuseReport` (POST /reportAbuse/{roomId}). `reportingUser` may be empty (anonymous);
    /// `reasonCode` is any octet, 0 = unspecified (decision D14).
    pub struct AbuseReport as "AbuseReport" {
        /// The reporter (empty for an anonymous report).
        pub reporting_user: Uri as "reportingUser",
        /// The alleged abuser.
        pub alleged_abuser_uri: Uri as "allegedAbuserUri",
        /// `AbuseType` (taxonomy TBD in the draft).
        pub reason_code: u8 as "reasonCode",
        /// UTF-8 note, may be empty.
        pub note: Utf8 as "note",
        /// Franked messages offered as evidence.
        pub messages: Vec<AbusiveMessage> as "messages",
        /// Extension point.
        pub abuse_extensions: AppDataDictionary as "abuse_extensions",
    }
}

crate::impl_tls_codec!(
    KeyMaterialRequest,
    KeyMaterialResponse,
    ClientKeyMaterial,
    RatchetTreeOption,
    PartialGroupInfo,
    GroupInfoOption,
    HandshakeBundle,
    UpdateRoomResponse,
    SubmitMessageRequest,
    Frank,
    SubmitMessageResponse,
    FanoutMessage,
    FanoutBatch,
    GroupInfoRequest,
    PendingProposal,
    GroupInfoRatchetTreeTbe,
    GroupInfoResponse,
    ConsentEntry,
    ConsentScope,
    QueryElement,
    IdentifierRequest,
    IdentifierResponse,
    AbusiveMessage,
    AbuseReport,
);
