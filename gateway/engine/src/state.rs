//! Persistent state: the records the engine keeps, their storage keys, and the write batch.
//!
//! The engine holds all state in memory. Every input that changes state appends key/value
//! writes to a [`WriteBatch`]; the shell commits each batch in one storage transaction
//! **before** it performs any output of that input ("durable before visible"). On start the
//! shell hands every stored pair back to [`crate::Engine::restore`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Key/value writes to commit atomically; `None` deletes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// The writes, in order.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub(crate) fn put<T: Serialize>(&mut self, key: String, value: &T) {
        // Serializing these plain records cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.writes.push((key.into_bytes(), Some(bytes)));
    }

    pub(crate) fn put_raw(&mut self, key: String, value: Vec<u8>) {
        self.writes.push((key.into_bytes(), Some(value)));
    }

    pub(crate) fn delete(&mut self, key: String) {
        self.writes.push((key.into_bytes(), None));
    }

    /// Appends another batch.
    pub fn extend(&mut self, other: Self) {
        self.writes.extend(other.writes);
    }
}

/// Storage key prefixes (one place).
pub(crate) mod keys {
    pub(crate) const CLIENT: &str = "c/";
    pub(crate) const USER: &str = "u/";
    pub(crate) const KEY_PACKAGE: &str = "kp/";
    pub(crate) const KP_ROUTE: &str = "kr/";
    pub(crate) const CONSENT: &str = "cs/";
    pub(crate) const CONSENT_REQUEST: &str = "cq/";
    pub(crate) const DELIVERY: &str = "dq/";
    pub(crate) const DELIVERY_META: &str = "dm/";
    pub(crate) const FOLLOWED: &str = "fr/";
    pub(crate) const NOTIFY_SEEN: &str = "nd/";
    pub(crate) const HUB_ROOM: &str = "hr/";
    pub(crate) const HUB_MLS: &str = "hm/";
    pub(crate) const OUTBOX: &str = "ob/";
    pub(crate) const OUTBOX_META: &str = "om/";
    pub(crate) const ABUSE: &str = "ab/";

    /// A sequence number as a fixed-width, order-preserving key component.
    pub(crate) fn seq(n: u64) -> String {
        format!("{n:020}")
    }
}

/// A local client of this provider (a native MIMI client or a bridge's MLS member).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ClientRecord {
    pub(crate) client_id: String,
    pub(crate) user: String,
    pub(crate) client_uri: String,
    /// SHA-256 of the client's bearer token, hex.
    pub(crate) token_hash: String,
    /// Rooms whose events are delivered to this client.
    pub(crate) rooms: BTreeSet<String>,
}

/// A local user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct UserRecord {
    pub(crate) user: String,
    pub(crate) display_name: String,
    pub(crate) discoverable: bool,
}

/// A published KeyPackage, not yet handed out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KeyPackageRecord {
    pub(crate) client_id: String,
    pub(crate) key_package: String,
    pub(crate) cipher_suite: u16,
    pub(crate) not_after: u64,
}

/// One delivery waiting for a local client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    /// Position in the client's queue.
    pub seq: u64,
    /// The room.
    pub room: String,
    /// Hub acceptance time.
    pub timestamp: u64,
    /// `application`, `commit`, `proposal`, `welcome` or `consent`.
    pub kind: String,
    /// The FanoutMessage (or ConsentEntry) bytes, hex.
    pub body: String,
}

/// Queue bookkeeping of one client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeliveryMeta {
    pub(crate) next_seq: u64,
    pub(crate) acked: u64,
    /// Deliveries were dropped because the queue overflowed (the client must resync).
    pub(crate) gap: bool,
}

/// A room hosted elsewhere that local clients follow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FollowedRoom {
    pub(crate) hub: String,
}

/// Outbox bookkeeping of one follower.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OutboxMeta {
    pub(crate) next_seq: u64,
}

/// One FanoutMessage waiting to reach a follower.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OutboxEntry {
    pub(crate) room: String,
    pub(crate) body: String,
}

/// A consent decision by a local target user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ConsentRecord {
    pub(crate) granted: bool,
    pub(crate) updated_ms: u64,
}

/// The MIMI (non-MLS) state of a hosted room.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HubRoomRecord {
    pub(crate) room_id: String,
    pub(crate) group_id: String,
    pub(crate) created_ms: u64,
    /// Proposals accepted this epoch (MLSMessage bytes hex, acceptance time), to be committed.
    pub(crate) pending: Vec<(String, u64)>,
    /// Participant-list updates carried by those proposals (ParticipantListUpdate hex), in order.
    #[serde(default)]
    pub(crate) pending_list_updates: Vec<String>,
    /// The latest full GroupInfo (raw, without ratchet_tree), hex.
    pub(crate) group_info: String,
    /// KeyPackageRef (hex) → provider domain, from proxied key material.
    pub(crate) kp_routes: BTreeMap<String, String>,
    /// Providers that have ever had participants (they receive removals too).
    pub(crate) followers: BTreeSet<String>,
    /// Accepted events so far (for metrics and tests).
    pub(crate) accepted: u64,
}

/// A stored abuse report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AbuseRecord {
    pub(crate) room: String,
    pub(crate) reporter_domain: String,
    pub(crate) report: String,
    pub(crate) received_ms: u64,
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}
