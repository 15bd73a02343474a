//! The records stored in the tables, in a compact binary encoding (MessagePack, fields by
//! position). Bytes are stored as bytes: no hex, no JSON.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{StoreError, Table};

/// Encodes a record.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Every record here is plain data: encoding into a Vec cannot fail.
    rmp_serde::to_vec(v).unwrap_or_default()
}

/// Decodes a record of `table`.
///
/// # Errors
/// [`StoreError::Corrupt`].
pub fn decode<T: for<'de> Deserialize<'de>>(table: Table, b: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(b).map_err(|e| StoreError::Corrupt {
        table: table.name(),
        detail: e.to_string(),
    })
}

/// A local client (a native MIMI client or a bridge's MLS member). Its id is `<user>/<device>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    /// User name (local part).
    pub user: String,
    /// Device name.
    pub device: String,
    /// SHA-256 of its bearer token.
    pub token_hash: [u8; 32],
    /// Registration time.
    pub created_ms: u64,
}

/// A local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// Display name.
    pub display_name: String,
    /// Whether identifier queries may find it.
    pub discoverable: bool,
    /// Creation time.
    pub created_ms: u64,
}

/// A published KeyPackage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackageRow {
    /// The RFC 9420 KeyPackage.
    #[serde(with = "serde_bytes_vec")]
    pub key_package: Vec<u8>,
    /// Its cipher suite.
    pub cipher_suite: u16,
    /// Its lifetime's end (s).
    pub not_after: u64,
    /// A last-resort KeyPackage (RFC 9420 §16.8 `last_resort`): handed out, never consumed.
    pub last_resort: bool,
}

/// Who published a KeyPackage (for Welcome routing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpOwnerRow {
    /// Client id.
    pub client: String,
    /// Its lifetime's end (s); the row is dropped after.
    pub not_after: u64,
}

/// A consent decision of a local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRow {
    /// Granted or revoked.
    pub granted: bool,
    /// When.
    pub updated_ms: u64,
}

/// One delivery waiting for a local client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// Room URI (empty for consent).
    pub room: String,
    /// `mimi_proto::client_api::DeliveryKind::value`.
    pub kind: u8,
    /// Hub acceptance time (ms).
    pub timestamp: u64,
    /// The body (in [`Table::Bodies`]).
    pub body: [u8; 32],
    /// Its size.
    pub bytes: u32,
}

/// Bookkeeping of one client's delivery queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMeta {
    /// Last sequence number assigned.
    pub last_seq: u64,
    /// Entries queued.
    pub count: u64,
    /// Bytes of their bodies.
    pub bytes: u64,
    /// Highest acknowledged sequence number.
    pub acked: u64,
    /// Entries were dropped because the queue overflowed: the client must resync.
    pub gap: bool,
}

/// The MIMI (non-MLS) state of a hosted room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRoomRow {
    /// The MLS group ID.
    #[serde(with = "serde_bytes_vec")]
    pub group_id: Vec<u8>,
    /// Creation time.
    pub created_ms: u64,
    /// The latest full GroupInfo of the current epoch (raw, without ratchet_tree); empty when
    /// the last commit did not provide one.
    #[serde(with = "serde_bytes_vec")]
    pub group_info: Vec<u8>,
    /// Providers that have ever had participants (they receive removals too).
    pub followers: BTreeSet<String>,
}

/// A proposal accepted this epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRow {
    /// The MLSMessage.
    #[serde(with = "serde_bytes_vec")]
    pub message: Vec<u8>,
    /// Hub acceptance time.
    pub accepted_ms: u64,
    /// The ParticipantListUpdate it carries, if any.
    pub list_update: Option<Vec<u8>>,
}

/// Where a KeyPackage proxied by this hub came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpRouteRow {
    /// The provider that served it.
    pub domain: String,
    /// The KeyPackage's lifetime end (s): the route is useless after.
    pub not_after: u64,
}

/// One FanoutMessage waiting to reach a follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// The body (in [`Table::Bodies`]).
    pub body: [u8; 32],
    /// Its size.
    pub bytes: u32,
}

/// Bookkeeping of one (follower, room) outbox; the row exists while the queue is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMetaRow {
    /// Last sequence number used.
    pub last_seq: u64,
    /// Entries queued.
    pub count: u64,
    /// Bytes queued.
    pub bytes: u64,
}

/// State kept per follower provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerRow {
    /// Since when its queues overflowed their byte cap and new events were dropped for it
    /// (its users must resync by external join); 0 when in sync.
    pub out_of_sync_since_ms: u64,
    /// Events dropped for it while out of sync.
    pub dropped: u64,
    /// Last dead-letter number used.
    pub last_dead_letter: u64,
}

/// A FanoutMessage a follower refused for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRow {
    /// Room URI.
    pub room: String,
    /// The body (in [`Table::Bodies`]).
    pub body: [u8; 32],
    /// Its size.
    pub bytes: u32,
    /// The follower's status.
    pub status: u16,
    /// The follower's sentence.
    pub reason: String,
    /// When.
    pub at_ms: u64,
}

/// A stored abuse report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbuseRow {
    /// Who sent it (`provider d` or `client uri`).
    pub reporter: String,
    /// The AbuseReport.
    #[serde(with = "serde_bytes_vec")]
    pub report: Vec<u8>,
    /// When.
    pub received_ms: u64,
}

/// An uploaded asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRow {
    /// Size in bytes.
    pub bytes: u64,
    /// Upload time.
    pub created_ms: u64,
}

/// Byte vectors as MessagePack `bin` (not arrays of integers).
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_compactly() {
        let d = DeliveryRow {
            room: "mimi://a.example/r/x".into(),
            kind: 4,
            timestamp: 1,
            body: [7; 32],
            bytes: 1024,
        };
        let b = encode(&d);
        assert!(b.len() < 80, "{} bytes", b.len());
        assert_eq!(decode::<DeliveryRow>(Table::Deliveries, &b).unwrap(), d);
        let kp = KeyPackageRow {
            key_package: vec![1; 300],
            cipher_suite: 1,
            not_after: 5,
            last_resort: false,
        };
        let b = encode(&kp);
        assert!(b.len() < 320, "bytes are stored as bytes: {}", b.len());
        assert_eq!(decode::<KeyPackageRow>(Table::KeyPackages, &b).unwrap(), kp);
        assert!(matches!(
            decode::<KeyPackageRow>(Table::KeyPackages, b"\xc1"),
            Err(StoreError::Corrupt {
                table: "key_packages",
                ..
            })
        ));
    }
}
