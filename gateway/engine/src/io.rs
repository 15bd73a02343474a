//! The engine's inputs and outputs: client calls, federation requests and replies, responses and effects.

use super::*;
use bytes::Bytes;
use mimi_proto::client_api::{HubInfo, Published, Registered, RoomCreated, Subscribed};
use mimi_proto::directory::Endpoint;
use mimi_proto::uri::{ClientUri, Domain, UserUri};

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
    /// An operator's action (needs [`Auth::Admin`]).
    Admin(AdminCall),
}

/// What an operator can do to queues (the admin listener; reads are served from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCall {
    /// Puts `follower`'s dead letters of `room` back at the end of its outbox.
    RetryDeadLetters {
        /// Follower domain.
        follower: Domain,
        /// Room URI.
        room: mimi_proto::uri::RoomUri,
    },
    /// Deletes `follower`'s dead letters of `room`.
    DropDeadLetters {
        /// Follower domain.
        follower: Domain,
        /// Room URI.
        room: mimi_proto::uri::RoomUri,
    },
    /// Clears `follower`'s out-of-sync mark (its users have resynced).
    Resynced {
        /// Follower domain.
        follower: Domain,
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
    /// An operator's action: how many entries it affected.
    Admin {
        /// Entries retried, dropped or marks cleared.
        affected: u64,
    },
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
