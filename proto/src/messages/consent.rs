//! §5.7 Consent.

use crate::codec::{DecodeError, Reader, Seg, Uri, Wire};
use crate::components::AppDataDictionary;
use crate::mls::KeyPackage;
use crate::{wire_enum, wire_struct};

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
