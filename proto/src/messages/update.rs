//! §5.3 Update room state.

use crate::codec::{Bytes, DecodeError, ErrorKind, Reader, Seg, Uri, Utf8, Wire};
use crate::mls::{
    ContentType, Expect, Extension, GroupInfo, HashReference, MlsMessage, RatchetTree, Welcome,
};
use crate::{wire_enum, wire_struct};

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

pub(super) fn decode_handshakes(
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
