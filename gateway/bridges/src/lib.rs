//! Bridges: Matrix (an application service) and XMPP (an external component).
//!
//! Each bridged user of the other system is a MIMI client of this provider: an MLS member
//! registered on this gateway's client API, whose state (openmls storage, signature key,
//! delivery cursor) is kept in the gateway's store and restored at start. What a bridged user
//! receives in MIMI rooms is translated (`mimi-adapters`) and posted into the mirrored room by
//! puppets of the MIMI senders; what the bridged user sends in the other system is translated
//! into MIMI content and sent to the room's hub as that user.
//!
//! **End-to-end encryption ends at the bridge** for bridged users: the gateway holds their MLS
//! keys and sees their messages in clear text while translating, and the other system's own
//! encryption (Megolm, OMEMO) is between its clients and the bridge at best. Native MIMI users
//! keep end-to-end encryption among themselves; docs/bridges.md says the same.

pub mod config;
pub mod matrix;
pub mod xmpp;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use mimi_adapters::{Context, IdMap, Provider, UriScheme};
use mimi_client::{Event, Member};
use serde_json::json;
use tokio::sync::mpsc;

use mimi_session::{ApiClient, Session};
use tokio::sync::watch;

/// Where a bridge keeps its state (bridged users' MLS state and tokens, the ID map): the
/// gateway's store implements it.
pub trait BridgeStore: Send + Sync + std::fmt::Debug {
    /// A record.
    ///
    /// # Errors
    /// Storage failures, as text.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Writes records in one transaction.
    ///
    /// # Errors
    /// Storage failures, as text.
    fn put(&self, records: &[(String, Vec<u8>)]) -> Result<(), String>;
}

/// Encrypted attachments (MIMI assets): the gateway stores this provider's own and fetches
/// peers' over the federation links.
pub trait Assets: Send + Sync + std::fmt::Debug {
    /// Downloads an asset URL.
    fn fetch(
        &self,
        url: &str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>>;
    /// Stores an encrypted asset; returns its URL.
    fn store(
        &self,
        bytes: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// Resolves once `stop` says the gateway is stopping (or its sender is gone).
pub async fn stopping(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// KeyPackages published for each bridged user.
const KEY_PACKAGES: usize = 20;

/// One bridged user.
pub struct Bridged {
    /// The native identity (`@bob:matrix.test`, `carol@xmpp.test`).
    pub native: String,
    /// The MIMI client acting for them.
    pub session: Session,
    token: String,
}

impl std::fmt::Debug for Bridged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridged")
            .field("native", &self.native)
            .finish_non_exhaustive()
    }
}

/// Deliveries of one bridged user, for the bridge's outbound loop.
#[derive(Debug)]
pub struct Delivered {
    /// The bridged user's native identity.
    pub native: String,
    /// What the MLS member made of the deliveries.
    pub events: Vec<Event>,
}

/// State shared by a bridge's tasks.
pub struct Core {
    /// Which system.
    pub provider: Provider,
    /// This gateway's domain.
    pub domain: String,
    /// This gateway's client API.
    pub api: SocketAddr,
    store: Arc<dyn BridgeStore>,
    /// Canonical URIs.
    pub uris: UriScheme,
    /// The ID map (persisted after each change).
    pub ids: Mutex<IdMap>,
    users: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Bridged>>>>,
    deliveries: mpsc::Sender<Delivered>,
    stop: watch::Receiver<bool>,
    /// Attachments.
    pub assets: Arc<dyn Assets>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("provider", &self.provider)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Loads the bridge state of `provider` from the store.
    ///
    /// # Errors
    /// Unreadable stored state.
    pub fn new(
        provider: Provider,
        domain: &str,
        api: SocketAddr,
        store: Arc<dyn BridgeStore>,
        stop: watch::Receiver<bool>,
        assets: Arc<dyn Assets>,
    ) -> anyhow::Result<(Arc<Self>, mpsc::Receiver<Delivered>)> {
        let ids = match store
            .get(&format!("ids/{}", provider.name()))
            .map_err(anyhow::Error::msg)?
        {
            Some(b) => IdMap::from_bytes(&b).context("stored ID map")?,
            None => IdMap::new(),
        };
        let (tx, rx) = mpsc::channel(1024);
        Ok((
            Arc::new(Self {
                provider,
                domain: domain.to_owned(),
                api,
                store,
                uris: UriScheme::new(domain),
                ids: Mutex::new(ids),
                users: tokio::sync::Mutex::new(HashMap::new()),
                deliveries: tx,
                stop,
                assets,
            }),
            rx,
        ))
    }

    fn key(&self, native: &str) -> String {
        format!("user/{}/{native}", self.provider.name())
    }

    /// The MIMI user URI of a native user.
    pub fn user_uri(&self, native: &str) -> String {
        self.uris.user(self.provider, native)
    }

    /// Persists the ID map.
    pub fn save_ids(&self) {
        let bytes = self.ids.lock().map(|m| m.to_bytes()).unwrap_or_default();
        if let Err(e) = self
            .store
            .put(&[(format!("ids/{}", self.provider.name()), bytes)])
        {
            tracing::error!(error = %e, "cannot persist the bridge ID map");
        }
    }

    /// Persists a bridged user's MLS state and cursor.
    pub fn persist(&self, b: &Bridged) {
        let v = json!({"member": hex::encode(b.session.member.export()), "token": b.token, "cursor": b.session.cursor});
        if let Err(e) = self
            .store
            .put(&[(self.key(&b.native), v.to_string().into_bytes())])
        {
            tracing::error!(error = %e, user = %b.native, "cannot persist a bridged user");
        }
    }

    /// A bridged user (None if not provisioned).
    pub async fn user(&self, native: &str) -> Option<Arc<tokio::sync::Mutex<Bridged>>> {
        self.users.lock().await.get(native).cloned()
    }

    /// Every bridged user's native identity.
    pub async fn natives(&self) -> Vec<String> {
        self.users.lock().await.keys().cloned().collect()
    }

    /// Restores or registers a bridged user, and starts its delivery loop.
    ///
    /// # Errors
    /// Client API failures.
    pub async fn provision(
        self: &Arc<Self>,
        native: &str,
    ) -> anyhow::Result<Arc<tokio::sync::Mutex<Bridged>>> {
        if let Some(u) = self.user(native).await {
            return Ok(u);
        }
        let name = self.uris.user_name(self.provider, native);
        let bridged = match self
            .store
            .get(&self.key(native))
            .map_err(anyhow::Error::msg)?
        {
            Some(raw) => {
                let v: serde_json::Value = serde_json::from_slice(&raw)?;
                let member = Member::import(&hex::decode(v["member"].as_str().unwrap_or(""))?)?;
                let token = v["token"].as_str().unwrap_or("").to_owned();
                let session = Session {
                    member,
                    api: ApiClient::with_token(self.api, &token),
                    cursor: v["cursor"].as_u64().unwrap_or(0),
                    views: Default::default(),
                };
                Bridged {
                    native: native.to_owned(),
                    session,
                    token,
                }
            }
            None => {
                let member = Member::new(&self.domain, &name, "bridge");
                let mut api = ApiClient::new(self.api);
                api.register(&name, "bridge", native)
                    .await
                    .with_context(|| format!("registering {native} as {name}"))?;
                api.publish(&member.key_packages(KEY_PACKAGES)?).await?;
                let token = api.token().unwrap_or_default().to_owned();
                let b = Bridged {
                    native: native.to_owned(),
                    session: Session {
                        member,
                        api,
                        cursor: 0,
                        views: Default::default(),
                    },
                    token,
                };
                self.persist(&b);
                b
            }
        };
        tracing::info!(user = %native, mimi = %bridged.session.user(), "bridged user ready");
        let token = bridged.token.clone();
        let u = Arc::new(tokio::sync::Mutex::new(bridged));
        self.users
            .lock()
            .await
            .insert(native.to_owned(), Arc::clone(&u));
        tokio::spawn(deliver(
            Arc::clone(self),
            native.to_owned(),
            Arc::clone(&u),
            ApiClient::with_token(self.api, &token),
        ));
        Ok(u)
    }
}

/// Long-polls a bridged user's deliveries (without holding its session), processes them with
/// its MLS member, persists, and hands the events to the bridge.
async fn deliver(
    core: Arc<Core>,
    native: String,
    user: Arc<tokio::sync::Mutex<Bridged>>,
    poller: ApiClient,
) {
    let mut stop = core.stop.clone();
    loop {
        let cursor = user.lock().await.session.cursor;
        // Ends with the gateway: the loop holds the bridge state and its storage.
        let polled = tokio::select! {
            p = poller.events(cursor, 200, 20) => p,
            () = stopping(&mut stop) => return,
        };
        let page = match polled {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(user = %native, error = %e, "delivery poll failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if page.events.is_empty() {
            continue;
        }
        let (events, cursor) = {
            let mut u = user.lock().await;
            let events = u.session.apply(page);
            core.persist(&u);
            (events, u.session.cursor)
        };
        let _ = poller.ack(cursor).await;
        if core
            .deliveries
            .send(Delivered {
                native: native.clone(),
                events,
            })
            .await
            .is_err()
        {
            return;
        }
    }
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

impl Core {
    /// Runs `f` with a translation context for `room` / `native_room` (the ID map locked).
    ///
    /// # Errors
    /// A poisoned lock.
    pub fn translate<R>(
        &self,
        room: &str,
        native_room: &str,
        media: Option<&mut dyn mimi_adapters::attachments::Media>,
        f: impl FnOnce(&mut Context<'_>) -> R,
    ) -> anyhow::Result<R> {
        let mut ids = self
            .ids
            .lock()
            .map_err(|_| anyhow::anyhow!("ID map lock"))?;
        let mut salt = mimi_adapters::random_salt;
        let mut ctx = Context {
            room,
            native_room,
            ids: &mut ids,
            uris: &self.uris,
            salt: &mut salt,
            media: media.map(|m| {
                let m: &mut dyn mimi_adapters::attachments::Media = &mut *m;
                m
            }),
        };
        Ok(f(&mut ctx))
    }

    /// Runs an async transfer from the adapters' synchronous `Media` calls (the gateway runs on
    /// tokio's multi-threaded runtime).
    ///
    /// # Errors
    /// The transfer's error, or a runtime that cannot block in place.
    pub fn block_on<T>(
        fut: impl Future<Output = Result<T, String>>,
    ) -> Result<T, mimi_adapters::attachments::MediaError> {
        use mimi_adapters::attachments::MediaError;
        let h = tokio::runtime::Handle::try_current()
            .map_err(|e| MediaError::Transfer(e.to_string()))?;
        if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(MediaError::Transfer(
                "attachments need a multi-threaded runtime".into(),
            ));
        }
        tokio::task::block_in_place(|| h.block_on(fut)).map_err(MediaError::Transfer)
    }
}

/// Which bridged user relays each MIMI room into the other system: one per room (the first in
/// order), so that a message several bridged users receive is posted once.
#[derive(Debug, Default)]
pub struct Relays {
    joined: tokio::sync::Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Relays {
    /// `native` is in `room`.
    pub async fn join(&self, room: &str, native: &str) {
        self.joined
            .lock()
            .await
            .entry(room.to_owned())
            .or_default()
            .insert(native.to_owned());
    }

    /// Tracks joins and removals; returns `(room, sender, message)` when `native` relays the
    /// room and the sender is not a user of `provider` (whose messages are there already).
    pub async fn filter(
        &self,
        core: &Core,
        native: &str,
        ev: Event,
    ) -> Option<(String, String, mimi_content::Message)> {
        match ev {
            Event::Joined { room } => {
                self.join(&room, native).await;
                None
            }
            Event::Removed { room } => {
                if let Some(s) = self.joined.lock().await.get_mut(&room) {
                    s.remove(native);
                }
                None
            }
            Event::Message {
                room,
                sender,
                message,
                ..
            } => {
                let relay = self
                    .joined
                    .lock()
                    .await
                    .get(&room)
                    .and_then(|s| s.iter().next().cloned());
                let native_sender =
                    matches!(core.uris.native_user(&sender), Some((p, _)) if p == core.provider);
                (relay.as_deref() == Some(native) && !native_sender)
                    .then_some((room, sender, message))
            }
            _ => None,
        }
    }
}
