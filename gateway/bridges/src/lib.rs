//! Bridges: Matrix (an application service) and XMPP (an external component), serving every
//! user of the homeserver or XMPP domain that the operator allows.
//!
//! Each bridged user of the other system is a MIMI client of this provider, registered on
//! first use: an MLS member whose state lives in the gateway's store, row by row, with its
//! token and delivery cursor. What a bridged user receives in MIMI rooms is translated
//! (`mimi-adapters`) and posted into the matching portal by puppets of the MIMI senders; what
//! the bridged user sends in the other system is translated into MIMI content and sent to the
//! room's hub as that user. Portals (Matrix rooms, MUC rooms, one-to-one chats) are made on
//! demand: a direct message to a puppet, a room alias or MUC address naming a MIMI room, a bot
//! command, or a MIMI user adding a bridged user.
//!
//! Durability: a bridged user's MLS state, the ID map rows of a translation and the pending
//! submission are committed in one store transaction **before** a message leaves for the hub
//! (a crash never reuses a ratchet generation, and a retry resubmits the same bytes); Matrix
//! transaction IDs are recorded after their events were processed, and a failure answers the
//! homeserver non-2xx so it retries; deliveries are acknowledged only after what they changed
//! is committed.
//!
//! **End-to-end encryption ends at the bridge** for bridged users: the gateway holds their MLS
//! keys and sees their messages in clear text while translating, and the other system's own
//! encryption (Megolm, OMEMO) is between its clients and the bridge at best. Native MIMI users
//! keep end-to-end encryption among themselves; docs/bridges.md says the same.

pub mod access;
pub mod config;
pub mod db;
pub mod deliveries;
pub mod matrix;
pub mod uploads;
pub mod users;
pub mod xmpp;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

/// A row change: the value, or `None` to delete.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A row and its key.
pub type Row = (Vec<u8>, Vec<u8>);

/// A storage failure as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge storage: {0}")]
pub struct StoreError(pub String);

/// Where the bridges keep their state: the gateway's store (its bridge table).
pub trait BridgeStore: Send + Sync + std::fmt::Debug {
    /// A committed row.
    ///
    /// # Errors
    /// Storage failures.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Committed rows whose key starts with `prefix` and is greater than `after`, ascending,
    /// at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError>;
    /// Applies changes in one durable transaction (all or nothing).
    ///
    /// # Errors
    /// Storage failures (then nothing was applied).
    fn apply(&self, changes: &[Change]) -> Result<(), StoreError>;
}

/// An attachment transfer failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("asset: {0}")]
pub struct AssetError(pub String);

/// A boxed future of an asset transfer.
pub type AssetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AssetError>> + Send + 'a>>;

/// Encrypted attachments (MIMI assets): the gateway stores this provider's own and fetches
/// peers' over the federation links.
pub trait Assets: Send + Sync + std::fmt::Debug {
    /// Downloads an asset URL.
    fn fetch(&self, url: &str) -> AssetFuture<'_, Vec<u8>>;
    /// Stores an encrypted asset; returns its URL.
    fn store(&self, bytes: Vec<u8>) -> AssetFuture<'_, String>;
}

/// What a bridge gets from the gateway that runs it.
#[derive(Clone)]
pub struct Host {
    /// This gateway's domain.
    pub domain: String,
    /// Its client API (loopback).
    pub api: std::net::SocketAddr,
    /// A token that may register clients when registration is closed (the client API's
    /// admin token), if configured.
    pub admin_token: Option<String>,
    /// Rows.
    pub store: std::sync::Arc<dyn BridgeStore>,
    /// Attachments.
    pub assets: std::sync::Arc<dyn Assets>,
    /// Client IDs (`<user>/bridge`) with new deliveries, as the engine stores them.
    pub wakes: tokio::sync::broadcast::Sender<String>,
    /// Where the bridges keep files (XMPP uploads).
    pub data_dir: std::path::PathBuf,
    /// Ends the bridges.
    pub stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("domain", &self.domain)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// Resolves once `stop` says the gateway is stopping (or its sender is gone).
pub async fn stopping(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Seconds since the Unix epoch (the bridges are the IO shell: they read the clock).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A short display name of a MIMI user URI: `alice (a.example)`, or the native identity of a
/// bridged user (`@bob:matrix.test`).
pub fn display(uri: &str) -> String {
    if let Some((_, native)) = mimi_adapters::uris::any_native_user(uri) {
        return native;
    }
    uri.strip_prefix("mimi://")
        .and_then(|r| r.split_once("/u/"))
        .map_or_else(|| uri.to_owned(), |(d, u)| format!("{u} ({d})"))
}

/// A short display name of a MIMI room URI: `name (provider)`.
pub fn display_room(uri: &str) -> String {
    uri.strip_prefix("mimi://")
        .and_then(|r| r.split_once("/r/"))
        .map_or_else(|| uri.to_owned(), |(d, r)| format!("{r} ({d})"))
}
