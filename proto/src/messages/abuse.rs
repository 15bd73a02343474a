//! §5.9 Report abuse.

use super::*;
use crate::codec::{Bytes, Uri, Utf8};
use crate::components::AppDataDictionary;
use crate::wire_struct;

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
