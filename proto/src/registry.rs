//! Every named wire type, for tools: decode bytes to JSON and JSON back to bytes
//! (`mimi inspect`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{DecodeError, Wire};
use crate::components::*;
use crate::franking::{FrankingIntegrityTbs, ServerFrankingContext};
use crate::messages::*;
use crate::mls::{Credential, GroupInfo, KeyPackage, MlsMessage, PrivateMessage, Welcome};

/// A named type.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    /// Name as in the drafts.
    pub name: &'static str,
    /// What it is.
    pub about: &'static str,
    decode: fn(&[u8]) -> Result<serde_json::Value, DecodeError>,
    encode: fn(&serde_json::Value) -> Result<Vec<u8>, String>,
}

impl TypeInfo {
    /// Decodes exactly `bytes` and renders JSON.
    ///
    /// # Errors
    /// The [`DecodeError`] (path and byte offset).
    pub fn decode_json(&self, bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
        (self.decode)(bytes)
    }

    /// Encodes JSON in this type's form; the result is decoded again to prove it is valid.
    ///
    /// # Errors
    /// What is wrong with the JSON, or why the encoding does not decode.
    pub fn encode_json(&self, json: &serde_json::Value) -> Result<Vec<u8>, String> {
        (self.encode)(json)
    }
}

fn dec<T: Wire + Serialize>(bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
    let v = T::from_bytes(bytes)?;
    Ok(serde_json::to_value(&v).unwrap_or(serde_json::Value::Null))
}

fn enc<T: Wire + DeserializeOwned>(json: &serde_json::Value) -> Result<Vec<u8>, String> {
    let v: T =
        serde_json::from_value(json.clone()).map_err(|e| format!("JSON does not match: {e}"))?;
    let bytes = v.to_bytes();
    T::from_bytes(&bytes).map_err(|e| format!("the encoding would not decode: {e}"))?;
    Ok(bytes)
}

macro_rules! types {
    ($( $name:literal => $t:ty : $about:literal ),* $(,)?) => {
        /// Every named type, in a stable order.
        pub const TYPES: &[TypeInfo] = &[
            $( TypeInfo { name: $name, about: $about, decode: dec::<$t>, encode: enc::<$t> }, )*
        ];
    };
}

types! {
    "KeyMaterialRequest" => KeyMaterialRequest: "POST /keyMaterial body",
    "KeyMaterialResponse" => KeyMaterialResponse: "POST /keyMaterial response",
    "UpdateRequest" => HandshakeBundle: "POST /update body (HandshakeBundle)",
    "UpdateRoomResponse" => UpdateRoomResponse: "POST /update response",
    "SubmitMessageRequest" => SubmitMessageRequest: "POST /submitMessage body",
    "SubmitMessageResponse" => SubmitMessageResponse: "POST /submitMessage response",
    "FanoutMessage" => FanoutMessage: "one /notify message",
    "NotifyBody" => FanoutBatch: "POST /notify body (one or more FanoutMessages)",
    "GroupInfoRequest" => GroupInfoRequest: "POST /groupInfo body",
    "GroupInfoResponse" => GroupInfoResponse: "POST /groupInfo response",
    "GroupInfoRatchetTreeTBE" => GroupInfoRatchetTreeTbe: "decrypted GroupInfo response payload",
    "ConsentEntry" => ConsentEntry: "POST /requestConsent and /updateConsent body",
    "ConsentScope" => ConsentScope: "consent scope",
    "IdentifierRequest" => IdentifierRequest: "POST /identifierQuery body",
    "IdentifierResponse" => IdentifierResponse: "POST /identifierQuery response",
    "AbuseReport" => AbuseReport: "POST /reportAbuse body",
    "Frank" => Frank: "hub frank",
    "ServerFrankingContext" => ServerFrankingContext: "franking context",
    "FrankingIntegrityTBS" => FrankingIntegrityTbs: "signed franking content",
    "RatchetTreeOption" => RatchetTreeOption: "ratchet tree conveyance",
    "GroupInfoOption" => GroupInfoOption: "GroupInfo conveyance",
    "PartialGroupInfo" => PartialGroupInfo: "partial GroupInfo",
    "AppDataDictionary" => AppDataDictionary: "MLS app_data_dictionary",
    "SafeAAD" => SafeAad: "SafeAAD in authenticated_data",
    "FrankAAD" => FrankAad: "frank_aad component (0x0020)",
    "FrankingAgentData" => FrankingAgentData: "franking_agent component (0x0021)",
    "ParticipantListData" => ParticipantListData: "participant_list component (0x0022)",
    "ParticipantListUpdate" => ParticipantListUpdate: "participant_list AppDataUpdate payload",
    "RoomMetaData" => RoomMetaData: "room_metadata component (0x0023)",
    "OperationalParameters" => OperationalParameters: "mls_operational_policy component (0x0024)",
    "RoleData" => RoleData: "roles_list component (0x0025)",
    "PreAuthData" => PreAuthData: "preauth_list component (0x0026)",
    "BaseRoomPolicy" => BaseRoomPolicy: "base_room_policy component (0x0027)",
    "StatusNotificationPolicy" => StatusNotificationPolicy: "status_notification_policy component (0x0028)",
    "AssetPolicy" => AssetPolicy: "asset_policy component (0x002C)",
    "MessageExpiration" => MessageExpiration: "message_expiration_policy component (0x0030)",
    "MLSMessage" => MlsMessage: "RFC 9420 MLSMessage",
    "KeyPackage" => KeyPackage: "RFC 9420 KeyPackage",
    "Welcome" => Welcome: "RFC 9420 Welcome",
    "GroupInfo" => GroupInfo: "RFC 9420 GroupInfo",
    "PrivateMessage" => PrivateMessage: "RFC 9420 PrivateMessage",
    "Credential" => Credential: "RFC 9420 Credential",
}

/// The type called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}
