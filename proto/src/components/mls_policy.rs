//! MLS operational policy (room-policy §7).

use crate::codec::{Bytes, DecodeError, ErrorKind, Reader, Seg, Wire};
use crate::wire_struct;

// MLS operational policy (room-policy §7)

wire_struct! {
    /// `Parameter` of a MediaType (mls-extensions).
    pub struct MediaTypeParameter as "Parameter" {
        /// Name.
        pub parameter_name: Bytes as "parameter_name",
        /// Value (without quotes).
        pub parameter_value: Bytes as "parameter_value",
    }
}

wire_struct! {
    /// `MediaType` (mls-extensions §6.2).
    pub struct MediaType as "MediaType" {
        /// `type/subtype`.
        pub media_type: Bytes as "media_type",
        /// Parameters.
        pub parameters: Vec<MediaTypeParameter> as "parameters",
    }
}

wire_struct! {
    /// `ExtendedCapabilities`.
    pub struct ExtendedCapabilities as "ExtendedCapabilities" {
        /// Protocol versions.
        pub versions: Vec<u16> as "versions",
        /// Cipher suites.
        pub cipher_suites: Vec<u16> as "cipher_suites",
        /// Extension types.
        pub extensions: Vec<u16> as "extensions",
        /// Proposal types.
        pub proposals: Vec<u16> as "proposals",
        /// Credential types.
        pub credentials: Vec<u16> as "credentials",
        /// Wire formats.
        pub wire_formats: Vec<u16> as "wire_formats",
        /// Component IDs.
        pub component_ids: Vec<u16> as "component_ids",
        /// SafeAAD component IDs.
        pub safe_aad_types: Vec<u16> as "safe_aad_types",
        /// Media types.
        pub media_types: Vec<MediaType> as "media_types",
        /// MLS content types.
        pub content_types: Vec<u8> as "content_types",
    }
}

/// `PendingProposalPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "pending_proposal_strategy", rename_all = "snake_case")]
pub enum PendingProposalPolicy {
    /// 0
    Unspecified,
    /// 1
    ImmediateCommit,
    /// 2
    RandomDelay {
        /// Minimum delay.
        minimum_delay_ms: u64,
        /// Maximum delay.
        maximum_delay_ms: u64,
    },
}

impl Wire for PendingProposalPolicy {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Unspecified => out.push(0),
            Self::ImmediateCommit => out.push(1),
            Self::RandomDelay {
                minimum_delay_ms,
                maximum_delay_ms,
            } => {
                out.push(2);
                minimum_delay_ms.encode(out);
                maximum_delay_ms.encode(out);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.at(Seg::Struct("PendingProposalPolicy"), |r| {
            let strategy = r.at(Seg::Field("pending_proposal_strategy"), |r| {
                let at = r.pos();
                match u8::decode(r)? {
                    v @ 0..=2 => Ok(v),
                    v => Err(r.err(
                        at,
                        ErrorKind::UnknownValue {
                            name: "PendingProposalStrategy",
                            value: u64::from(v),
                        },
                    )),
                }
            })?;
            Ok(match strategy {
                0 => Self::Unspecified,
                1 => Self::ImmediateCommit,
                _ => Self::RandomDelay {
                    minimum_delay_ms: r.field("minimum_delay_ms")?,
                    maximum_delay_ms: r.field("maximum_delay_ms")?,
                },
            })
        })
    }
}

wire_struct! {
    /// `MinDefaultMaxTime`.
    pub struct MinDefaultMaxTime as "MinDefaultMaxTime" {
        /// Minimum.
        pub minimum_time: u64 as "minimum_time",
        /// Default.
        pub default_time: u64 as "default_time",
        /// Maximum.
        pub maximum_time: u64 as "maximum_time",
    }
}

wire_struct! {
    /// `AppMessagePolicy`.
    pub struct AppMessagePolicy as "AppMessagePolicy" {
        /// How many old epochs application messages may use.
        pub epoch_tolerance: u8 as "epoch_tolerance",
        /// Padding target.
        pub pad_to_size: u16 as "pad_to_size",
        /// Ratchet skip-ahead limit.
        pub max_generations_skipahead: u32 as "max_generations_skipahead",
    }
}

wire_struct! {
    /// `OperationalParameters` (component 0x0024).
    pub struct OperationalParameters as "OperationalParameters" {
        /// Must be supported.
        pub mandatory_capabilities: ExtendedCapabilities as "mandatory_capabilities",
        /// Default.
        pub default_capabilities: ExtendedCapabilities as "default_capabilities",
        /// Must not be used.
        pub forbidden_capabilities: ExtendedCapabilities as "forbidden_capabilities",
        /// Allowed handshake wire formats.
        pub handshake_formats: Vec<u16> as "handshake_formats",
        /// External proposals allowed.
        pub external_proposal_allowed: bool as "external_proposal_allowed",
        /// External commits (joins) allowed.
        pub external_commit_allowed: bool as "external_commit_allowed",
        /// When to commit pending proposals.
        pub pending_proposal_policy: PendingProposalPolicy as "pending_proposal_policy",
        /// LeafNode update interval.
        pub leaf_node_update_time: MinDefaultMaxTime as "LeafNode_update_time",
        /// Application message handling.
        pub app_message_policy: AppMessagePolicy as "app_message_policy",
        /// Longest KeyPackage lifetime (the draft's `unit64` is a typo for uint64).
        pub max_kp_lifetime: u64 as "max_kp_lifetime",
        /// Longest credential lifetime.
        pub max_credential_lifetime: u64 as "max_credential_lifetime",
        /// Resumption PSK lifetime.
        pub resumption_psk_lifetime: u64 as "resumption_psk_lifetime",
        /// Sender nonce/key pair lifetime.
        pub sender_nonce_keypair_lifetime: MinDefaultMaxTime as "sender_nonce_keypair_lifetime",
        /// Maximum unused key pairs.
        pub max_keypairs: u32 as "max_keypairs",
        /// How long to buffer out-of-order messages.
        pub buffer_incoming_message_time: MinDefaultMaxTime as "buffer_incoming_message_time",
        /// How many to buffer.
        pub max_buffered_messages: u32 as "max_buffered_messages",
    }
}
