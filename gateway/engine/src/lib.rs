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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mimi_proto::client_api::{HubInfo, Published, Registered, RoomCreated, Subscribed};
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::{ClientUri, Domain, UserUri};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::crypto::OpenMlsCrypto;

mod cache;
mod follower;
mod hub;
mod outbox;
pub mod policy;
mod refusal;
pub mod store;
#[cfg(test)]
mod testing;

pub use follower::ClaimQuotas;
pub use hub::{RoomInfo, hosted_rooms, parse_asset_url, room_info};
pub use outbox::FollowerBudget;
pub use refusal::Refusal;
use store::{QueueCap, Store, StoreError, WriteBatch};

/// Identifies a request or call so its response can be matched. The top 16 bits of ids the
/// engine chooses for its own sends name the shard ([`shard_of`]).
pub type RequestId = u64;

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

/// A local client, as the shell authenticated it from its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// `<user>/<device>`.
    pub id: String,
    /// Its user.
    pub user: UserUri,
    /// Its URI (its MLS credential identity).
    pub uri: ClientUri,
}

/// Who makes a client call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No (valid) credential.
    Anonymous,
    /// A registered client (its bearer token).
    Client(ClientRecord),
    /// The operator (the admin token).
    Admin,
    /// The provider vouches for this user (a verified provider-issued token).
    Provider {
        /// User name (local part).
        user: String,
    },
}

/// A call from a local client (the shell serves event reads and acknowledgements itself,
/// straight from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCall {
    /// Register a client.
    Register {
        /// User name.
        user: String,
        /// Device name.
        device: String,
        /// Display name of a new user.
        display_name: String,
        /// SHA-256 of the new client's bearer token.
        new_token_hash: [u8; 32],
    },
    /// Publish KeyPackages (raw RFC 9420 encodings) and optionally a last-resort one.
    PublishKeyPackages {
        /// Consumed once each.
        key_packages: Vec<Vec<u8>>,
        /// Never consumed (carries the `last_resort` extension).
        last_resort: Option<Vec<u8>>,
    },
    /// The hub's external-sender entry and domain.
    HubInfo,
    /// Create a room hosted here from the creator's GroupInfo and ratchet tree.
    CreateRoom {
        /// Room URI.
        room: String,
        /// The creator's GroupInfo (raw, without ratchet_tree).
        group_info: Vec<u8>,
        /// The `ratchet_tree` vector.
        ratchet_tree: Vec<u8>,
    },
    /// A protocol request to a room's hub (local or remote) or, for `/keyMaterial`, to the
    /// target user's provider.
    Room {
        /// Which endpoint.
        endpoint: Endpoint,
        /// Room URI (for keyMaterial: the target user URI).
        target: String,
        /// The MIMI body.
        body: Bytes,
    },
    /// A ConsentEntry about a local user.
    Consent(Bytes),
    /// An identifier query to `domain`.
    IdentifierQuery {
        /// Target provider.
        domain: String,
        /// IdentifierRequest.
        body: Bytes,
    },
    /// Start or stop receiving a room's events.
    Subscribe {
        /// Room URI.
        room: String,
        /// Subscribe (true) or unsubscribe.
        on: bool,
    },
}

/// Why a request to a peer got no HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// An input to the engine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A federation request from the authenticated provider `peer`.
    Peer {
        /// Correlates the response.
        id: RequestId,
        /// Authenticated peer domain.
        peer: Domain,
        /// Endpoint.
        endpoint: Endpoint,
        /// The decoded path variable (room URI, user URI, domain or URL).
        target: String,
        /// Request body.
        body: Bytes,
    },
    /// A local client API call.
    Client {
        /// Correlates the response.
        id: RequestId,
        /// Who calls.
        auth: Auth,
        /// The call.
        call: ClientCall,
    },
    /// The outcome of an earlier [`Output::Send`].
    Reply {
        /// The id given in the Send.
        id: RequestId,
        /// HTTP status and body, or why no response arrived.
        result: Result<Reply, SendError>,
    },
    /// Time has passed (retry timers, expiry sweeps).
    Tick,
}

/// A peer's HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Bytes,
    /// Retry-After, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// What a client-API call answers (serialized by the shell, JSON or binary).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientReply {
    /// `POST /register` (the shell adds the token).
    Registered(Registered),
    /// `GET /hub`.
    HubInfo(HubInfo),
    /// `POST /key-packages`.
    Published(Published),
    /// `POST /rooms`.
    RoomCreated(RoomCreated),
    /// `POST /subscribe`.
    Subscribed(Subscribed),
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// None.
    Empty,
    /// A MIMI (TLS-PL) body.
    Mimi(Bytes),
    /// A client-API answer.
    Client(ClientReply),
    /// A refusal: one sentence saying what was wrong.
    Refused(Refusal),
    /// An asset relayed by `/proxyDownload`.
    Asset(Bytes),
}

/// A response the shell sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Body,
    /// Retry-After, in seconds.
    pub retry_after_s: Option<u64>,
}

impl Response {
    /// A MIMI body with status 200.
    pub fn mimi(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            body: Body::Mimi(Bytes::from(body)),
            retry_after_s: None,
        }
    }

    /// A status with no body (201 for notify, consent, abuse).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: Body::Empty,
            retry_after_s: None,
        }
    }

    /// A client-API answer.
    pub fn client(status: u16, r: ClientReply) -> Self {
        Self {
            status,
            body: Body::Client(r),
            retry_after_s: None,
        }
    }

    /// A refusal, with the one status its kind maps to.
    pub fn refused(r: Refusal) -> Self {
        Self {
            status: r.status(),
            retry_after_s: r.retry_after_s(),
            body: Body::Refused(r),
        }
    }

    /// Relays a peer's reply as-is.
    pub fn relay(r: &Reply) -> Self {
        Self {
            status: r.status,
            body: Body::Mimi(r.body.clone()),
            retry_after_s: r.retry_after_ms.map(|ms| ms.div_ceil(1000)),
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer request `id`.
    Respond {
        /// The request or call.
        id: RequestId,
        /// The response.
        response: Response,
    },
    /// Send a request to a peer; its outcome comes back as [`Input::Reply`] with this `id`.
    Send {
        /// Correlation id (engine-chosen; names this shard).
        id: RequestId,
        /// Peer domain.
        to: Domain,
        /// Endpoint.
        endpoint: Endpoint,
        /// Path variable.
        target: String,
        /// Body.
        body: Bytes,
    },
    /// Fetch `url` (an allowed asset of `peer`) and answer request `id` with its body.
    Fetch {
        /// The request to answer.
        id: RequestId,
        /// The peer whose asset host it is.
        peer: Domain,
        /// The https URL.
        url: String,
    },
    /// New deliveries wait for local client `client`.
    Wake {
        /// Client id.
        client: String,
    },
}

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

/// Which shard of `shards` handles `input`: rooms by room URI, users by user name, the rest
/// shard 0; replies go back to the shard whose id they carry; ticks go to every shard.
pub fn shard_of(input: &Input, shards: u16) -> u16 {
    let shards = shards.max(1);
    let key = match input {
        Input::Reply { id, .. } => return ((id >> 48) as u16) % shards,
        Input::Tick => return 0,
        Input::Peer {
            endpoint, target, ..
        } => match endpoint {
            Endpoint::Update
            | Endpoint::SubmitMessage
            | Endpoint::GroupInfo
            | Endpoint::ReportAbuse
            | Endpoint::Notify
            | Endpoint::KeyMaterial => target.as_str(),
            _ => "",
        },
        Input::Client { call, auth, .. } => match call {
            ClientCall::CreateRoom { room, .. } | ClientCall::Subscribe { room, .. } => {
                room.as_str()
            }
            ClientCall::Room { target, .. } => target.as_str(),
            ClientCall::Register { user, .. } => user.as_str(),
            ClientCall::PublishKeyPackages { .. } | ClientCall::Consent(_) => match auth {
                Auth::Client(c) => c.user.as_str(),
                _ => "",
            },
            ClientCall::HubInfo | ClientCall::IdentifierQuery { .. } => "",
        },
    };
    if key.is_empty() {
        return 0;
    }
    (fnv1a(key.as_bytes()) % u64::from(shards)) as u16
}

/// FNV-1a: a stable hash (the shard of a room must not change between runs).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// What the shards of one gateway share: per-follower outbox byte totals (the cap is per
/// follower, whichever shard queues for it) and KeyPackage claim quotas.
#[derive(Debug, Default)]
pub struct Shared {
    pub(crate) budget: Mutex<FollowerBudget>,
    pub(crate) claims: Mutex<ClaimQuotas>,
}

impl Shared {
    /// Followers marked out of sync, with the time since when.
    pub fn out_of_sync(&self) -> BTreeMap<String, u64> {
        self.budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .out_of_sync
            .clone()
    }
}

/// The shard of `shards` that orders `room`.
pub fn room_shard(room: &mimi_proto::uri::RoomUri, shards: u16) -> u16 {
    (fnv1a(room.as_str().as_bytes()) % u64::from(shards.max(1))) as u16
}

/// SHA-256.
pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
