//! §5.5 Fanout.

use super::update::decode_handshakes;
use super::*;
use crate::codec::{DecodeError, ErrorKind, Reader, Seg, Wire};
use crate::mls::{ContentType, MlsMessage};

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
