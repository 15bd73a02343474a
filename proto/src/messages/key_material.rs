//! §5.2 Fetch key material.

use super::*;
use crate::codec::{Bytes, DecodeError, ErrorKind, Reader, Seg, Uri, Wire};
use crate::mls::{Capabilities, Credential, KeyPackage, RequiredCapabilities};
use crate::{wire_enum, wire_struct};

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
