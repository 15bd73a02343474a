//! Deterministic MIMI hub and follower logic. This crate performs no IO: it never opens a
//! socket, reads a clock or touches a disk. Feed [`Input`]s stamped with the current time,
//! commit [`Engine::take_writes`], then drain [`Engine::poll_output`] until it returns `None`.
//!
//! ```text
//!  peer request ─► Input::Peer   ─┐             ┌─► WriteBatch      ─► one storage transaction
//!  client call  ─► Input::Client ─┼─► Engine ───┤   (first!)
//!  reply        ─► Input::Reply  ─┤  (in memory) ├─► Output::Respond ─► HTTP response
//!  timer        ─► Input::Tick   ─┘             ├─► Output::Send    ─► request to a peer
//!                                               └─► Output::Wake    ─► wake a client's stream
//! ```
//!
//! As **hub** the engine tracks each hosted room with an openmls `PublicGroup` (no group
//! secrets), enforces the room policy of draft-ietf-mimi-room-policy on every handshake,
//! stamps accepted timestamps and keeps a durable outbox per follower. As **follower** it
//! accepts `/notify` only from a room's hub, deduplicates, routes Welcomes by KeyPackageRef and
//! queues deliveries per local client; it serves its users' KeyPackages, consent and identifier
//! queries. Local clients reach rooms hosted elsewhere through their own gateway.
//!
//! The one durability rule: an accepted event, its room state and every follower's outbox
//! entry are in the same write batch, and no response leaves before that batch is committed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mimi_proto::directory::Endpoint;
use openmls_basic_credential::SignatureKeyPair;

mod follower;
mod hub;
pub mod ids;
mod outbox;
mod policy;
mod state;

pub use state::{Delivery, WriteBatch};

/// Identifies a request or call so its response can be matched.
pub type RequestId = u64;

/// How the engine treats KeyPackage requests for its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentPolicy {
    /// Any authenticated provider may claim KeyPackages (development, open federations).
    Open,
    /// Only requesters the target user granted consent to.
    Required,
}

/// Static configuration.
#[derive(Debug)]
pub struct EngineConfig {
    /// This provider's domain.
    pub domain: String,
    /// The hub's signing key: its external-sender key in every hosted room, the signer of
    /// GroupInfo responses and of franks.
    pub hub_signer: SignatureKeyPair,
    /// Secret for server franks.
    pub franking_key: Vec<u8>,
    /// KeyPackage consent policy.
    pub consent: ConsentPolicy,
    /// Asset hosts `/proxyDownload` may fetch from (peer asset domains).
    pub asset_domains: BTreeSet<String>,
    /// Whether any caller may register a client (development) or only with the admin token.
    pub open_registration: bool,
    /// Limits.
    pub limits: Limits,
}

/// Bounds on every queue.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deliveries kept per client before the oldest are dropped (the client must resync).
    pub max_deliveries_per_client: usize,
    /// Outbox entries per follower before the hub refuses new events for rooms it follows.
    pub max_outbox_per_follower: usize,
    /// FanoutMessages per `/notify` body.
    pub notify_batch_messages: usize,
    /// Bytes per `/notify` body.
    pub notify_batch_bytes: usize,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// `/notify` body hashes remembered per hub for deduplication.
    pub notify_dedup_window: usize,
    /// KeyPackages a client may have published at once.
    pub max_key_packages_per_client: usize,
    /// Past epochs an application message may use.
    pub epoch_tolerance: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_deliveries_per_client: 100_000,
            max_outbox_per_follower: 100_000,
            notify_batch_messages: 64,
            notify_batch_bytes: 1 << 20,
            backoff_base_ms: 200,
            backoff_max_ms: 30_000,
            notify_dedup_window: 100_000,
            max_key_packages_per_client: 1_000,
            epoch_tolerance: 1,
        }
    }
}

/// A call from a local client (authenticated by the shell with its bearer token, whose
/// SHA-256 is `token_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCall {
    /// Register a client of `user` (creating the user if new).
    Register {
        /// User name (local part).
        user: String,
        /// Device name.
        device: String,
        /// Display name of the user.
        display_name: String,
        /// SHA-256 of the new client's bearer token.
        new_token_hash: [u8; 32],
    },
    /// Publish KeyPackages (raw RFC 9420 KeyPackage encodings).
    PublishKeyPackages(Vec<Vec<u8>>),
    /// The hub's external-sender entry and domain (what a room creator puts in its group).
    HubInfo,
    /// Create a room hosted here from the creator's GroupInfo and ratchet tree.
    CreateRoom {
        /// Room URI (`mimi://<this domain>/r/<id>`).
        room: String,
        /// The creator's GroupInfo, raw RFC 9420 encoding (without ratchet_tree).
        group_info: Vec<u8>,
        /// The `ratchet_tree` vector.
        ratchet_tree: Vec<u8>,
    },
    /// A protocol request to a room's hub (local or remote): `/update`, `/submitMessage`,
    /// `/groupInfo`, `/keyMaterial`, `/reportAbuse`.
    Room {
        /// Which endpoint.
        endpoint: Endpoint,
        /// Room URI (for keyMaterial: the target user URI).
        target: String,
        /// The MIMI body.
        body: Vec<u8>,
    },
    /// A ConsentEntry about a local user: request/cancel go to the target's provider,
    /// grant/revoke are recorded and sent to the requester's provider.
    Consent(Vec<u8>),
    /// An identifier query to `domain` (IdentifierRequest body).
    IdentifierQuery {
        /// Target provider.
        domain: String,
        /// IdentifierRequest.
        body: Vec<u8>,
    },
    /// Deliveries after sequence number `after`.
    Events {
        /// Last sequence number seen.
        after: u64,
        /// At most this many.
        limit: usize,
    },
    /// Everything up to `upto` was processed and may be dropped.
    Ack {
        /// Highest processed sequence number.
        upto: u64,
    },
    /// Who the token belongs to: `{client_id, user, client_uri}` (the shell uses it to
    /// authenticate uploads and to route wake-ups).
    Whoami,
    /// Start or stop receiving a room's events (after an external join, or leaving).
    Subscribe {
        /// Room URI.
        room: String,
        /// Subscribe (true) or unsubscribe.
        on: bool,
    },
}

/// An input to the engine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A federation request from the authenticated provider `peer` (the certificate's domain,
    /// already checked against `From` by the shell).
    Peer {
        /// Correlates the response.
        id: RequestId,
        /// Authenticated peer domain.
        peer: String,
        /// Endpoint.
        endpoint: Endpoint,
        /// The decoded path variable (room URI, user URI, domain or URL).
        target: String,
        /// Request body.
        body: Vec<u8>,
    },
    /// A local client API call.
    Client {
        /// Correlates the response.
        id: RequestId,
        /// SHA-256 of the presented bearer token (None: no token).
        token_hash: Option<[u8; 32]>,
        /// The call.
        call: ClientCall,
    },
    /// The outcome of an earlier [`Output::Send`].
    Reply {
        /// The id given in the Send.
        id: RequestId,
        /// HTTP status and body, or why no response arrived.
        result: Result<Reply, String>,
    },
    /// Time has passed (retry timers).
    Tick,
}

/// A peer's HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// Retry-After, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// A response the shell sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Media type of `body`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Retry-After, in seconds.
    pub retry_after_s: Option<u64>,
}

impl Response {
    /// A MIMI (TLS-PL) body with status 200.
    pub fn mimi(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: mimi_proto::media::BODY,
            body,
            retry_after_s: None,
        }
    }

    /// A status with no body (201 for notify, consent, abuse).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
            retry_after_s: None,
        }
    }

    /// A status with a one-line explanation.
    pub fn text(status: u16, msg: impl Into<String>) -> Self {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            retry_after_s: None,
        }
    }

    /// A JSON body (client API).
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_default(),
            retry_after_s: None,
        }
    }

    /// Relays a peer's reply as-is.
    pub fn relay(r: &Reply) -> Self {
        Self {
            status: r.status,
            content_type: mimi_proto::media::BODY,
            body: r.body.clone(),
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
        /// Correlation id (engine-chosen).
        id: RequestId,
        /// Peer domain.
        to: String,
        /// Endpoint.
        endpoint: Endpoint,
        /// Path variable.
        target: String,
        /// Body.
        body: Vec<u8>,
    },
    /// Fetch `url` (an allowed asset) and answer request `id` with its body (`/proxyDownload`).
    Fetch {
        /// The request to answer.
        id: RequestId,
        /// The https URL.
        url: String,
    },
    /// New deliveries are waiting for local client `client_id`.
    Wake {
        /// The client.
        client_id: String,
    },
}

/// What an outstanding Send is for.
#[derive(Debug, Clone)]
enum Pending {
    /// Relay the reply to this request.
    Relay {
        reply_to: RequestId,
        endpoint: Endpoint,
        room: Option<String>,
        target_domain: String,
    },
    /// An outbox batch to a follower.
    Notify { follower: String, seqs: Vec<u64> },
}

/// Counters for observability.
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
}

/// The MIMI engine of one provider.
pub struct Engine {
    cfg: EngineConfig,
    crypto: openmls_rust_crypto::RustCrypto,
    now_ms: u64,
    next_send_id: RequestId,
    outputs: VecDeque<Output>,
    writes: WriteBatch,
    pending: BTreeMap<RequestId, Pending>,
    stats: Stats,
    follower: follower::FollowerState,
    hub: hub::HubState,
    outboxes: outbox::Outboxes,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("domain", &self.cfg.domain)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A fresh engine with no state.
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            crypto: openmls_rust_crypto::RustCrypto::default(),
            now_ms: 0,
            // Send ids live in a separate range from the shell's request ids.
            next_send_id: 1 << 62,
            outputs: VecDeque::new(),
            writes: WriteBatch::default(),
            pending: BTreeMap::new(),
            stats: Stats::default(),
            follower: follower::FollowerState::default(),
            hub: hub::HubState::default(),
            outboxes: outbox::Outboxes::default(),
        }
    }

    /// An engine with the state the shell stored (every key/value pair ever written and not
    /// deleted). Unknown keys are ignored; broken records are reported.
    ///
    /// # Errors
    /// The keys whose records could not be restored (the rest is still loaded).
    pub fn restore(
        cfg: EngineConfig,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> (Self, Vec<String>) {
        let mut e = Self::new(cfg);
        let mut broken = Vec::new();
        let mut hub_mls = Vec::new();
        for (k, v) in entries {
            let Ok(key) = String::from_utf8(k) else {
                continue;
            };
            let ok = if key.starts_with(state::keys::HUB_MLS) {
                hub_mls.push((key.clone(), v));
                true
            } else if key.starts_with(state::keys::OUTBOX)
                || key.starts_with(state::keys::OUTBOX_META)
            {
                e.outboxes.restore(&key, &v)
            } else if key.starts_with(state::keys::HUB_ROOM) || key.starts_with(state::keys::ABUSE)
            {
                e.hub.restore_record(&key, &v)
            } else {
                e.follower.restore(&key, &v)
            };
            if !ok {
                broken.push(key);
            }
        }
        for (key, blob) in hub_mls {
            if let Err(err) = e.hub.restore_mls(&key, &blob) {
                broken.push(format!("{key}: {err}"));
            }
        }
        (e, broken)
    }

    /// This provider's domain.
    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries waiting per follower (queue depths, for metrics).
    pub fn outbox_depths(&self) -> BTreeMap<String, usize> {
        self.outboxes.depths()
    }

    /// Rooms this provider hosts.
    pub fn hosted_rooms(&self) -> Vec<String> {
        self.hub.rooms.keys().cloned().collect()
    }

    /// Advances the state machine by one input. Never blocks and never fails: refusals are
    /// responses.
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
            Input::Client {
                id,
                token_hash,
                call,
            } => self.handle_client(id, token_hash, call),
            Input::Reply { id, result } => self.handle_reply(id, result),
            Input::Tick => {}
        }
        self.pump_outboxes();
    }

    /// The next action, in the order it must be performed (after committing the writes).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The writes of everything handled since the last call; commit them before performing any
    /// output.
    pub fn take_writes(&mut self) -> WriteBatch {
        std::mem::take(&mut self.writes)
    }

    /// The earliest time at which [`Input::Tick`] must be handled (outbox retries).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outboxes.next_wakeup()
    }

    fn respond(&mut self, id: RequestId, response: Response) {
        self.outputs.push_back(Output::Respond { id, response });
    }

    fn send(
        &mut self,
        to: &str,
        endpoint: Endpoint,
        target: &str,
        body: Vec<u8>,
        why: Pending,
    ) -> RequestId {
        let id = self.next_send_id;
        self.next_send_id += 1;
        self.pending.insert(id, why);
        self.outputs.push_back(Output::Send {
            id,
            to: to.to_owned(),
            endpoint,
            target: target.to_owned(),
            body,
        });
        id
    }

    fn handle_peer(
        &mut self,
        id: RequestId,
        peer: &str,
        endpoint: Endpoint,
        target: &str,
        body: &[u8],
    ) {
        if peer == self.cfg.domain {
            return self.respond(
                id,
                Response::text(403, "a provider cannot send federation requests to itself"),
            );
        }
        let caller = hub::Caller::Peer(peer.to_owned());
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

    fn handle_reply(&mut self, id: RequestId, result: Result<Reply, String>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match p {
            Pending::Relay {
                reply_to,
                endpoint,
                room,
                target_domain,
            } => self.relay_reply(reply_to, endpoint, room, &target_domain, result),
            Pending::Notify { follower, seqs } => self.notify_reply(&follower, &seqs, result),
        }
    }
}

/// SHA-256, hex.
pub(crate) fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
