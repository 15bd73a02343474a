//! What the shell configures: the provider, registration and consent rules, and limits.

use super::*;
use mimi_proto::uri::Domain;
use openmls_basic_credential::SignatureKeyPair;
use std::collections::{BTreeMap, BTreeSet};

/// How the engine treats KeyPackage requests for its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentPolicy {
    /// Any authenticated provider may claim KeyPackages (within the claim quotas).
    Open,
    /// Only requesters the target user granted consent to.
    Required,
}

/// Who may register clients without any credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone reaching the client API may create a **new** user (development); a new device of
    /// an existing user always needs one of that user's tokens, the admin token or a provider
    /// token.
    OpenNewUsers,
    /// Only the admin token or a provider-issued token registers.
    Closed,
}

/// Static configuration of an engine (shared by every shard of a gateway).
#[derive(Debug)]
pub struct EngineConfig {
    /// This provider's domain.
    pub domain: Domain,
    /// The hub's signing key: its external-sender key in every hosted room, the signer of
    /// GroupInfo responses and of franks.
    pub hub_signer: SignatureKeyPair,
    /// Secret for server franks.
    pub franking_key: Vec<u8>,
    /// KeyPackage consent policy.
    pub consent: ConsentPolicy,
    /// Asset hosts `/proxyDownload` may fetch from (per peer).
    pub asset_domains: BTreeMap<String, BTreeSet<String>>,
    /// Who may register.
    pub registration: Registration,
    /// Whether identifier queries may search display names by substring (off: exact handles
    /// and nicks only).
    pub partial_name_search: bool,
    /// Limits.
    pub limits: Limits,
}

/// Bounds on every queue, cache and quota (docs/config.md lists the defaults).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A local client's delivery queue; past it the oldest are dropped and the client resyncs.
    pub delivery_queue: QueueCap,
    /// Bytes queued for one follower over all rooms; past it new events for that follower are
    /// dropped and it is marked out of sync (never blocking the room).
    pub outbox_bytes_per_follower: u64,
    /// FanoutMessages per `/notify` body.
    pub notify_batch_messages: usize,
    /// Bytes per `/notify` body.
    pub notify_batch_bytes: usize,
    /// `/notify` requests in flight per follower (one per room at most, rooms in parallel).
    pub notify_parallel_per_follower: usize,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// FanoutMessage hashes remembered per room for deduplication.
    pub notify_dedup_window: u64,
    /// KeyPackages a client may have published at once.
    pub max_key_packages_per_client: usize,
    /// Past epochs an application message may use.
    pub epoch_tolerance: u64,
    /// Hosted rooms and followed rooms kept in memory per shard (the rest load on demand).
    pub room_cache_entries: usize,
    /// KeyPackages one peer may claim per minute from this provider's users.
    pub claims_per_peer_per_minute: u32,
    /// KeyPackages of one user that may be claimed per minute, by anyone.
    pub claims_per_user_per_minute: u32,
    /// Abuse reports stored per room (older ones are kept; newer refused with 429).
    pub abuse_reports_per_room: u64,
    /// Largest abuse report body.
    pub abuse_report_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            delivery_queue: QueueCap {
                count: 100_000,
                bytes: 256 << 20,
            },
            outbox_bytes_per_follower: 256 << 20,
            notify_batch_messages: 64,
            notify_batch_bytes: 1 << 20,
            notify_parallel_per_follower: 16,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            notify_dedup_window: 4096,
            max_key_packages_per_client: 1_000,
            epoch_tolerance: 1,
            room_cache_entries: 1024,
            claims_per_peer_per_minute: 600,
            claims_per_user_per_minute: 60,
            abuse_reports_per_room: 1000,
            abuse_report_bytes: 256 << 10,
        }
    }
}
