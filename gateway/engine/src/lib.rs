//! Deterministic MIMI hub and follower logic. This crate performs no IO: it never opens a
//! socket, reads a clock or touches a disk. It reads committed state through the synchronous
//! [`store::Store`] trait (as openmls reads its storage provider) and describes every change
//! as a typed [`store::WriteBatch`].
//!
//! ```text
//!  peer request ─► Input::Peer   ─┐                         ┌─► WriteBatch ─► store (one txn, first!)
//!  client call  ─► Input::Client ─┼─► Engine (one shard) ───┤
//!  reply        ─► Input::Reply  ─┤   bounded caches of     ├─► Output::Respond ─► HTTP response
//!  timer        ─► Input::Tick   ─┘   rooms over the store  ├─► Output::Send    ─► request to a peer
//!                                                           └─► Output::Wake    ─► client streams
//! ```
//!
//! A step: [`Engine::handle`] each input of a batch, commit [`Engine::take_writes`], then
//! [`Engine::committed`] (or [`Engine::reset`] when the commit failed: nothing of the step
//! leaves and the caches reload from the store), then drain [`Engine::poll_output`].
//!
//! Rooms are spread over shards by [`shard_of`]: a room's handshakes and messages are ordered by
//! one shard, shards run in parallel, and their batches can be committed together.
//!
//! As **hub** the engine tracks each hosted room with an openmls `PublicGroup` (no group
//! secrets) whose storage rows are the store's ([`mimi_mls_storage`]), enforces the room policy
//! of draft-ietf-mimi-room-policy on every handshake, stamps accepted timestamps and queues
//! every event for each follower. As **follower** it accepts `/notify` only from a room's hub,
//! deduplicates, routes Welcomes by KeyPackageRef and queues deliveries for local clients; it
//! serves its users' KeyPackages, consent and identifier queries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::Domain;
use openmls_traits::crypto::OpenMlsCrypto;

mod admin;
mod cache;
mod config;
mod follower;
mod hub;
mod io;
mod outbox;
pub mod policy;
mod refusal;
mod shard;
pub mod store;
#[cfg(test)]
mod testing;

pub use config::*;
pub use follower::ClaimQuotas;
pub use hub::{RoomInfo, hosted_rooms, parse_asset_url, room_info};
pub use io::*;
pub use outbox::FollowerBudget;
pub use refusal::Refusal;
pub use shard::*;
use store::{QueueCap, Store, StoreError, WriteBatch};

/// Identifies a request or call so its response can be matched. The top 16 bits of ids the
/// engine chooses for its own sends name the shard ([`shard_of`]).
pub type RequestId = u64;

/// What an outstanding Send is for.
#[derive(Debug, Clone)]
enum Pending {
    /// Relay the reply to this request.
    Relay {
        reply_to: RequestId,
        endpoint: Endpoint,
        room: Option<mimi_proto::uri::RoomUri>,
        target_domain: Domain,
        /// A local client whose accepted commit makes it a member (it then receives the room).
        member: Option<String>,
    },
    /// An outbox batch to a follower.
    Notify {
        follower: Domain,
        room: mimi_proto::uri::RoomUri,
        seqs: Vec<u64>,
    },
}

/// Counters for observability (monotonic over the engine's life).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events accepted as hub.
    pub hub_accepted: u64,
    /// Handshakes or messages refused as hub.
    pub hub_refused: u64,
    /// Submissions retried with the same bytes, answered again without a second fan-out.
    pub hub_duplicates: u64,
    /// `/notify` bodies processed as follower.
    pub notify_processed: u64,
    /// Duplicate `/notify` bodies or messages ignored.
    pub notify_duplicates: u64,
    /// Deliveries queued for local clients.
    pub deliveries: u64,
    /// Outbox entries a follower refused for good (dead-lettered).
    pub dead_letters: u64,
    /// Events dropped for followers past their byte cap.
    pub outbox_dropped: u64,
    /// Refusals of peer and client requests, by kind.
    pub refusals: BTreeMap<&'static str, u64>,
}

/// The MIMI engine: one shard of one provider's gateway.
pub struct Engine<C: OpenMlsCrypto = openmls_rust_crypto::RustCrypto> {
    cfg: Arc<EngineConfig>,
    crypto: C,
    store: Arc<dyn Store>,
    shard: u16,
    shards: u16,
    now_ms: u64,
    next_send: u64,
    outputs: VecDeque<Output>,
    writes: WriteBatch,
    /// Submissions accepted in this step, not yet committed ([`store::Table::SubmitSeen`]
    /// keys and answers): a retry in the same step is answered from here.
    step_submissions: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    pending: BTreeMap<RequestId, Pending>,
    stats: Stats,
    hub: hub::HubState,
    follower: follower::FollowerState,
    outboxes: outbox::Outboxes,
    shared: Arc<Shared>,
    /// Storage errors met while reading during this step: the step must not commit.
    poisoned: Option<StoreError>,
    /// Where the expiry sweep continues.
    sweep_cursor: Option<Vec<u8>>,
}

impl<C: OpenMlsCrypto> std::fmt::Debug for Engine<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("domain", &self.cfg.domain)
            .field("shard", &self.shard)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<C: OpenMlsCrypto> Engine<C> {
    /// Shard `shard` of `shards` over `store`, with the crypto provider `crypto` (inject a
    /// seeded one for reproducible simulations). Resumes the outboxes of its rooms from the
    /// store; nothing else is loaded until used.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn new(
        cfg: Arc<EngineConfig>,
        crypto: C,
        store: Arc<dyn Store>,
        shard: u16,
        shards: u16,
        shared: Arc<Shared>,
    ) -> Result<Self, StoreError> {
        let mut e = Self {
            hub: hub::HubState::new(cfg.limits.room_cache_entries),
            follower: follower::FollowerState::new(cfg.limits.room_cache_entries),
            outboxes: outbox::Outboxes::default(),
            cfg,
            crypto,
            store,
            shard,
            shards: shards.max(1),
            now_ms: 0,
            next_send: 1,
            outputs: VecDeque::new(),
            writes: WriteBatch::default(),
            step_submissions: std::collections::HashMap::new(),
            pending: BTreeMap::new(),
            stats: Stats::default(),
            shared,
            poisoned: None,
            sweep_cursor: None,
        };
        e.load_outboxes()?;
        Ok(e)
    }

    /// This provider's domain.
    pub fn domain(&self) -> &Domain {
        &self.cfg.domain
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Bytes and entries queued per follower by this shard.
    pub fn outbox_depths(&self) -> BTreeMap<String, (u64, u64)> {
        self.outboxes.depths()
    }

    /// Hosted rooms in this shard's cache.
    pub fn cached_rooms(&self) -> usize {
        self.hub.cached() + self.follower.cached()
    }

    /// Advances the state machine by one input. Never blocks and never fails: refusals are
    /// responses. Sends of outboxes wait for [`Engine::committed`].
    pub fn handle(&mut self, now_ms: u64, input: Input) {
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Peer {
                id,
                peer,
                endpoint,
                target,
                body,
            } => self.handle_peer(id, &peer, endpoint, &target, &body),
            Input::Client { id, auth, call } => self.handle_client(id, auth, call),
            Input::Reply { id, result } => self.handle_reply(id, result),
            Input::Tick => self.tick(),
        }
    }

    /// The writes of everything handled since the last call; commit them before performing any
    /// output.
    ///
    /// # Errors
    /// A read of the store failed during the step: do not commit; call [`Engine::reset`].
    pub fn take_writes(&mut self) -> Result<WriteBatch, StoreError> {
        let w = std::mem::take(&mut self.writes);
        self.step_submissions.clear();
        match self.poisoned.take() {
            Some(e) => Err(e),
            None => Ok(w),
        }
    }

    /// The step's writes are durable: start the sends they allow and trim the caches.
    pub fn committed(&mut self) {
        self.pump_outboxes();
        self.hub.trim();
        self.follower.trim();
    }

    /// The step's commit failed: drop every output and write of it, forget cached state (it
    /// reloads from the store, which holds the truth) and the outbox sends in flight (they
    /// are sent again; followers deduplicate).
    pub fn reset(&mut self) {
        self.outputs.clear();
        self.writes = WriteBatch::default();
        self.step_submissions.clear();
        self.poisoned = None;
        self.hub.clear();
        self.follower.clear();
        self.pending
            .retain(|_, p| !matches!(p, Pending::Notify { .. }));
        self.outboxes = outbox::Outboxes::default();
        if let Err(e) = self.load_outboxes() {
            self.poisoned = Some(e);
        }
    }

    /// The next action, in the order it must be performed (after committing the writes).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest time at which [`Input::Tick`] must be handled (outbox retries).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outboxes.next_wakeup()
    }

    fn respond(&mut self, id: RequestId, response: Response) {
        self.outputs.push_back(Output::Respond { id, response });
    }

    fn refuse(&mut self, id: RequestId, r: Refusal) {
        *self.stats.refusals.entry(r.kind()).or_default() += 1;
        self.respond(id, Response::refused(r));
    }

    /// A failure that cannot happen unless this code or openmls is wrong: the request gets
    /// 503, the step is abandoned (nothing of it committed) and the caches reload.
    fn internal_error(&mut self, id: RequestId, what: String) {
        self.store_failed(
            Some(id),
            StoreError::Backend(format!("internal error: {what}")),
        );
    }

    /// Records a storage read failure: the step's outputs must not leave.
    fn store_failed(&mut self, id: Option<RequestId>, e: StoreError) {
        if let Some(id) = id {
            self.refuse(id, Refusal::Unavailable(e.to_string()));
        }
        self.poisoned.get_or_insert(e);
    }

    fn send(
        &mut self,
        to: &Domain,
        endpoint: Endpoint,
        target: &str,
        body: Bytes,
        why: Pending,
    ) -> RequestId {
        let id = (u64::from(self.shard) << 48) | (self.next_send & ((1 << 48) - 1));
        self.next_send += 1;
        self.pending.insert(id, why);
        self.outputs.push_back(Output::Send {
            id,
            to: to.clone(),
            endpoint,
            target: target.to_owned(),
            body,
        });
        id
    }

    fn handle_peer(
        &mut self,
        id: RequestId,
        peer: &Domain,
        endpoint: Endpoint,
        target: &str,
        body: &Bytes,
    ) {
        if *peer == self.cfg.domain {
            return self.refuse(id, Refusal::FromSelf);
        }
        let caller = hub::Caller::Peer(peer.clone());
        match endpoint {
            Endpoint::Notify => self.follower_notify(id, peer, target, body),
            Endpoint::KeyMaterial => self.key_material(id, &caller, target, body),
            Endpoint::RequestConsent => self.follower_request_consent(id, peer, body),
            Endpoint::UpdateConsent => self.follower_update_consent(id, peer, body),
            Endpoint::IdentifierQuery => self.follower_identifier_query(id, target, body),
            Endpoint::Update
            | Endpoint::SubmitMessage
            | Endpoint::GroupInfo
            | Endpoint::ReportAbuse => self.hub_request(id, &caller, endpoint, target, body),
            Endpoint::ProxyDownload => self.proxy_download(id, peer, target),
        }
    }

    fn handle_reply(&mut self, id: RequestId, result: Result<Reply, SendError>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match p {
            Pending::Relay {
                reply_to,
                endpoint,
                room,
                target_domain,
                member,
            } => self.relay_reply(
                reply_to,
                endpoint,
                room.as_ref(),
                &target_domain,
                member.as_deref(),
                result,
            ),
            Pending::Notify {
                follower,
                room,
                seqs,
            } => self.notify_reply(&follower, &room, &seqs, result),
        }
    }

    fn tick(&mut self) {
        if self.shard == 0 {
            self.sweep_expired();
        }
    }

    /// Drops expired KeyPackage owner rows, a bounded slice per tick.
    fn sweep_expired(&mut self) {
        let now_s = self.now_ms / 1000;
        let after = self.sweep_cursor.clone();
        let Ok(rows) = self
            .store
            .scan(store::Table::KpOwners, b"", after.as_deref(), 256)
        else {
            return;
        };
        self.sweep_cursor = rows.last().map(|(k, _)| k.clone());
        for (k, v) in rows {
            if store::rows::decode::<store::rows::KpOwnerRow>(store::Table::KpOwners, &v)
                .is_ok_and(|r| r.not_after < now_s)
            {
                self.writes.delete(store::Table::KpOwners, k);
            }
        }
    }
}

/// The client record behind a bearer token's SHA-256, if any.
///
/// # Errors
/// Storage failures.
pub fn authenticate(
    store: &dyn Store,
    domain: &Domain,
    token_hash: &[u8; 32],
) -> Result<Option<ClientRecord>, StoreError> {
    follower::client_by_token(store, domain, token_hash)
}

/// SHA-256.
pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
