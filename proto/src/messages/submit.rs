//! §5.4 Submit a message.

use super::*;
use crate::codec::{Bytes, DecodeError, Fixed32, Reader, Seg, Uri, Wire};
use crate::mls::{Expect, MlsMessage};
use crate::{wire_enum, wire_struct};

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
