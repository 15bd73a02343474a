//! The operator's API on the admin listener (`/admin/v1/…`, `Authorization: Bearer <admin
//! token>`), shared by the gateway and `mimi admin`. Reads come from the store and the
//! gateway's link state; actions go through the engine like every other change.

use serde::{Deserialize, Serialize};

/// The path prefix.
pub const PREFIX: &str = "/admin/v1";

/// `GET /admin/v1/cluster[?room=URI]`: this node's view of its cluster (404 on a gateway
/// with embedded storage, which is no cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node.
    pub node: String,
    /// Slots rooms and users are spread over.
    pub slots: u16,
    /// Slots this node orders, with the fencing token of its lease on each.
    pub held: std::collections::BTreeMap<u16, u64>,
    /// For each slot, the node that orders it as this node sees it (none: a failover is
    /// under way).
    pub owners: Vec<Option<String>>,
    /// Live nodes with the HTTPS address the others reach them at.
    pub nodes: std::collections::BTreeMap<String, String>,
    /// Milliseconds since this node last reached the database.
    pub since_last_round_ms: Option<u64>,
    /// The last database error this node saw.
    pub last_error: Option<String>,
    /// The slot of the room given as `?room=`.
    pub room_slot: Option<u16>,
}

/// `GET /admin/v1/status`: the readiness summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This provider.
    pub domain: String,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// Why not, when not.
    pub problem: Option<String>,
    /// Engine shards.
    pub shards: u16,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Storage commits that failed since start.
    pub failed_commits: u64,
    /// Rooms hosted (up to 10 000 counted).
    pub rooms_hosted: u64,
    /// Entries waiting in every outbox.
    pub queued_entries: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// Followers marked out of sync.
    pub out_of_sync: Vec<String>,
}

/// `GET /admin/v1/peers`: one configured peer and its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its domain.
    pub domain: String,
    /// Configured QUIC address.
    pub quic: Option<String>,
    /// Configured HTTPS address.
    pub https: String,
    /// `h3`, `https` or `auto`.
    pub transport: String,
    /// An HTTP/3 connection is open.
    pub h3_open: bool,
    /// An HTTPS connection is open.
    pub https_open: bool,
    /// HTTP/3 is skipped for this long after it failed (s).
    pub quic_backoff_s: Option<u64>,
    /// Seconds since a request to it last got an answer.
    pub last_answer_s_ago: Option<u64>,
    /// The last transport error, if the last request failed.
    pub last_error: Option<String>,
    /// Requests that got no answer in a row.
    pub failures_in_a_row: u64,
    /// Entries queued for it.
    pub queued_entries: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Dead letters kept for it.
    pub dead_letters: u64,
    /// Since when it is out of sync (ms since the epoch).
    pub out_of_sync_since_ms: Option<u64>,
}

/// `GET /admin/v1/rooms`: one hosted room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Room URI.
    pub room: String,
    /// MLS epoch.
    pub epoch: u64,
    /// Clients in the group.
    pub members: u64,
    /// Users in the participant list.
    pub participants: u64,
    /// Providers it fans out to.
    pub followers: Vec<String>,
    /// Proposals accepted this epoch.
    pub pending_proposals: u64,
}

/// `GET /admin/v1/queues`: one outbox (follower, room) that is not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Follower.
    pub follower: String,
    /// Room.
    pub room: String,
    /// Entries.
    pub entries: u64,
    /// Bytes.
    pub bytes: u64,
}

/// `GET /admin/v1/dead-letters?follower=…`: one entry a follower refused for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Follower.
    pub follower: String,
    /// Number (per follower).
    pub seq: u64,
    /// Room.
    pub room: String,
    /// Body bytes.
    pub bytes: u64,
    /// The follower's status.
    pub status: u16,
    /// Its sentence.
    pub reason: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// `POST /admin/v1/dead-letters/retry` and `/drop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterAction {
    /// Follower.
    pub follower: String,
    /// Room.
    pub room: String,
}

/// `POST /admin/v1/followers/resynced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resynced {
    /// Follower.
    pub follower: String,
}

/// The answer to an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Entries or marks affected.
    pub affected: u64,
}

/// `POST /admin/v1/reload`: what the certificate reload found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// The DNS names of the certificate now served.
    pub names: Vec<String>,
    /// SHA-256 of the leaf certificate (hex), to tell which one is served.
    pub fingerprint: String,
}

/// A refusal: what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The sentence.
    pub error: String,
}
